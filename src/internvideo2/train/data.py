"""Deterministic data order for the engine.

* :class:`GlobalBatchSampler`: the epoch's sample order is ``randperm(n)`` seeded by (seed, epoch). Global
  step k uses positions ``[k*G, (k+1)*G)``; micro-step a of rank r takes the contiguous chunk
  ``[k*G + (a*W + r)*b, ... + b)``. Hence W ranks together see exactly the global batches of one process,
  in the same order (rank 0's chunk first), and a resumed run can start at any step of an epoch.
* :func:`grouped_permutation`: the same contract with hard-negative batches: runs of ``group_size``
  consecutive positions share a group key (e.g. the appearance of the main object), so a contrastive loss
  must separate samples that differ only in what the key does not fix (motion, order of events).
Orders are seeded by the package's one seed rule (:mod:`internvideo2.utils.seeding`): the permutation of epoch
``e`` by ``derive_generator(seed, e, -1)``, the grouped one by ``derive_generator(seed, e, -2)``; per-sample
augmentation uses ``derive_generator(seed, epoch, index)`` / ``derive_rng(seed, epoch, index, purpose)``, which
do not depend on worker processes or their RNG state.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch
from torch.utils.data import Sampler

from internvideo2.utils.seeding import derive_generator

__all__ = ["GlobalBatchSampler", "epoch_permutation", "grouped_permutation",
           "worker_init_fn"]


def epoch_permutation(n: int, seed: int, epoch: int, shuffle: bool = True) -> torch.Tensor:
    """The epoch's sample order: ``[n]`` int64."""
    if not shuffle:
        return torch.arange(n)
    g = derive_generator(seed, epoch, -1)
    return torch.randperm(n, generator=g)


def grouped_permutation(groups: Sequence[int], group_size: int, seed: int, epoch: int) -> torch.Tensor:
    """An epoch order of ``len(groups)`` samples made of runs of ``group_size`` samples with the same group
    id: each group is shuffled and cut into runs (its last run may be shorter), the runs are shuffled.
    A pure function of (groups, group_size, seed, epoch). Returns ``[n]`` int64."""
    if group_size < 1:
        raise ValueError(f"group_size must be >= 1, got {group_size}")
    g = derive_generator(seed, epoch, -2)
    ids = torch.as_tensor(list(groups), dtype=torch.long)
    runs: list[torch.Tensor] = []
    for gid in torch.unique(ids).tolist():  # sorted: the order does not depend on dict/set iteration
        members = torch.nonzero(ids == gid).flatten()
        members = members[torch.randperm(len(members), generator=g)]
        runs.extend(members.split(group_size))
    order = torch.randperm(len(runs), generator=g).tolist()
    return torch.cat([runs[i] for i in order]) if runs else torch.zeros(0, dtype=torch.long)


class GlobalBatchSampler(Sampler[list[int]]):
    """Yields this rank's micro-batches (lists of indices) for one epoch, from global step ``start_step``.

    dataset_len: number of samples; global_batch: G = batch * world * accum; the tail that does not fill a
    whole global batch is dropped (every rank must see equal batch sizes for the gathers). ``groups`` (one
    id per sample) with ``group_size`` switches the epoch order to :func:`grouped_permutation`.
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
        groups: Sequence[int] | None = None,
        group_size: int = 1,
    ):
        self.n = int(dataset_len)
        if groups is not None and len(groups) != self.n:
            raise ValueError(f"groups has {len(groups)} ids for {self.n} samples")
        self.groups, self.group_size = groups, int(group_size)
        self.b, self.w, self.r, self.a = int(batch_size), int(world_size), int(rank), int(grad_accum)
        self.g = self.b * self.w * self.a
        self.seed, self.epoch, self.shuffle, self.start_step = seed, epoch, shuffle, int(start_step)

    @property
    def steps_per_epoch(self) -> int:
        return self.n // self.g

    def __len__(self) -> int:
        return max(0, self.steps_per_epoch - self.start_step) * self.a

    def __iter__(self) -> Iterator[list[int]]:
        if self.groups is not None and self.shuffle:
            perm = grouped_permutation(self.groups, self.group_size, self.seed, self.epoch).tolist()
        else:
            perm = epoch_permutation(self.n, self.seed, self.epoch, self.shuffle).tolist()
        for k in range(self.start_step, self.steps_per_epoch):
            base = k * self.g
            for a in range(self.a):
                lo = base + (a * self.w + self.r) * self.b
                yield perm[lo : lo + self.b]


def worker_init_fn(worker_id: int) -> None:
    """Keep worker processes single-threaded (the main process owns the cores)."""
    torch.set_num_threads(1)
