"""Deterministic data order for the engine.

* :class:`GlobalBatchSampler`: the epoch's sample order is ``randperm(n)`` seeded by (seed, epoch). Global
  step k uses positions ``[k*G, (k+1)*G)``; micro-step a of rank r takes the contiguous chunk
  ``[k*G + (a*W + r)*b, ... + b)``. Hence W ranks together see exactly the global batches of one process,
  in the same order (rank 0's chunk first), and a resumed run can start at any step of an epoch.
* :func:`sample_generator`: a ``torch.Generator`` that is a pure function of (seed, epoch, index), for
  per-sample augmentation that does not depend on worker processes or their RNG state.
"""

from __future__ import annotations

import hashlib
from typing import Iterator

import torch
from torch.utils.data import Sampler

__all__ = ["GlobalBatchSampler", "sample_seed", "sample_generator", "epoch_permutation", "worker_init_fn"]


def sample_seed(seed: int, epoch: int, index: int) -> int:
    """A 63-bit seed that is a pure function of (seed, epoch, index) (a hash, so neighbours decorrelate)."""
    h = hashlib.blake2b(f"{int(seed)}/{int(epoch)}/{int(index)}".encode(), digest_size=8).digest()
    return int.from_bytes(h, "little") & ((1 << 63) - 1)


def sample_generator(seed: int, epoch: int, index: int) -> torch.Generator:
    """CPU generator for the random augmentation of sample ``index`` in ``epoch``."""
    return torch.Generator().manual_seed(sample_seed(seed, epoch, index))


def epoch_permutation(n: int, seed: int, epoch: int, shuffle: bool = True) -> torch.Tensor:
    """The epoch's sample order: ``[n]`` int64."""
    if not shuffle:
        return torch.arange(n)
    g = torch.Generator().manual_seed(sample_seed(seed, epoch, -1))
    return torch.randperm(n, generator=g)


class GlobalBatchSampler(Sampler[list[int]]):
    """Yields this rank's micro-batches (lists of indices) for one epoch, from global step ``start_step``.

    dataset_len: number of samples; global_batch: G = batch * world * accum; the tail that does not fill a
    whole global batch is dropped (every rank must see equal batch sizes for the gathers).
    """

    def __init__(
        self,
        dataset_len: int,
        batch_size: int,
        world_size: int,
        rank: int,
        grad_accum: int,
        seed: int,
        epoch: int,
        shuffle: bool = True,
        start_step: int = 0,
    ):
        self.n = int(dataset_len)
        self.b, self.w, self.r, self.a = int(batch_size), int(world_size), int(rank), int(grad_accum)
        self.g = self.b * self.w * self.a
        self.seed, self.epoch, self.shuffle, self.start_step = seed, epoch, shuffle, int(start_step)

    @property
    def steps_per_epoch(self) -> int:
        return self.n // self.g

    def __len__(self) -> int:
        return max(0, self.steps_per_epoch - self.start_step) * self.a

    def __iter__(self) -> Iterator[list[int]]:
        perm = epoch_permutation(self.n, self.seed, self.epoch, self.shuffle).tolist()
        for k in range(self.start_step, self.steps_per_epoch):
            base = k * self.g
            for a in range(self.a):
                lo = base + (a * self.w + self.r) * self.b
                yield perm[lo : lo + self.b]


def worker_init_fn(worker_id: int) -> None:
    """Keep worker processes single-threaded (the main process owns the cores)."""
    torch.set_num_threads(1)
