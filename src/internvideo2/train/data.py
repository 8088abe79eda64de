"""Deterministic data order for the engine.

* :class:`GlobalBatchSampler`: the epoch's sample order is ``randperm(n)`` seeded by (seed, epoch). Global
  step k uses positions ``[k*G, (k+1)*G)``; micro-step a of rank r takes the contiguous chunk
  ``[k*G + (a*W + r)*b, ... + b)``. Hence W ranks together see exactly the global batches of one process,
  in the same order (rank 0's chunk first), and a resumed run can start at any step of an epoch.
* :func:`grouped_permutation`: the same contract with hard-negative batches: runs of ``group_size``
  consecutive positions share a group key (e.g. the appearance of the main object), so a contrastive loss
  must separate samples that differ only in what the key does not fix (motion, order of events).
* Mixed image + video corpora (official stage-2 ``MetaLoader``): :class:`MixedCorpora` concatenates the
  corpora and groups them into one *stream* per media type; :class:`MetaLoaderSampler` gives every stream
  its own epoch order and batches, and interleaves whole steps of the streams in the order
  :func:`metaloader_order` draws, so every optimizer step holds one media type.
Orders are seeded by the package's one seed rule (:mod:`internvideo2.utils.seeding`): the permutation of epoch
``e`` by ``derive_generator(seed, e, -1)``, the grouped one by ``derive_generator(seed, e, -2)``, the stream
interleaving by ``derive_generator(seed, e, "metaloader")`` (a stream's own order uses the seed
``derive_seed(seed, "stream", media)``); per-sample augmentation uses ``derive_generator(seed, epoch, index)`` /
``derive_rng(seed, epoch, index, purpose)``, which do not depend on worker processes or their RNG state.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Sequence
from typing import Any

import torch
from torch.utils.data import Dataset, Sampler

from internvideo2.data.bad_samples import BadSample
from internvideo2.utils.seeding import derive_generator, derive_seed

__all__ = ["GlobalBatchSampler", "epoch_permutation", "grouped_permutation", "MixedCorpora", "MetaLoaderSampler",
           "metaloader_order", "worker_init_fn"]


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


class MixedCorpora(Dataset):
    """Several corpora as one map-style dataset, grouped into one stream per media type.

    ``datasets[i]`` holds corpus i (``len`` + ``__getitem__`` returning a dict, e.g. a
    :class:`~internvideo2.data.datasets.VideoTextDataset`), of media type ``media[i]`` (``"video"``,
    ``"image"``). Global index = offset of the corpus + its local index. Items are the corpus' own, with
    ``idx`` replaced by the global index (VTC/VTM identify positives by ``idx``: two corpora of one media type
    share batches, and their local indices would collide), and ``media`` / ``corpus`` (the name) added.

    Streams: the corpora of one media type form one stream, as the official ``create_dataset("pt_train")``
    concatenates the files of one media type into one dataset (one loader per media type). ``stream_names``
    are the media types sorted (the official loader order); ``streams[s]`` lists the global indices of
    stream s.
    """

    def __init__(self, datasets: Sequence[Any], media: Sequence[str], names: Sequence[str] | None = None):
        if not datasets or len(datasets) != len(media):
            raise ValueError(f"{len(datasets)} datasets for {len(media)} media types")
        self.datasets = list(datasets)
        self.media = [str(m) for m in media]
        self.names = [str(n) for n in names] if names is not None else [f"corpus{i}" for i in range(len(media))]
        sizes = [len(d) for d in self.datasets]
        self.offsets = [sum(sizes[:i]) for i in range(len(sizes))]
        self._n = sum(sizes)
        self.stream_names = sorted(set(self.media))
        self.streams: list[list[int]] = [
            [o + j for o, n, m in zip(self.offsets, sizes, self.media) if m == name for j in range(n)]
            for name in self.stream_names]

    def __len__(self) -> int:
        return self._n

    def locate(self, index: int) -> tuple[int, int]:
        """``(corpus, local index)`` of a global index."""
        if not 0 <= index < self._n:
            raise IndexError(f"index {index} out of range for {self._n} samples")
        c = max(i for i, o in enumerate(self.offsets) if o <= index and len(self.datasets[i]))
        return c, index - self.offsets[c]

    def set_epoch(self, epoch: int) -> None:
        for d in self.datasets:
            if hasattr(d, "set_epoch"):
                d.set_epoch(epoch)

    @property
    def records(self) -> list:
        """The records of every corpus in global order (for ``group_by``)."""
        return [r for d in self.datasets for r in d.records]

    def __getitem__(self, index):
        c, j = self.locate(int(index))
        item = self.datasets[c][j]
        if isinstance(item, dict):
            item = dict(item, idx=int(index), media=self.media[c], corpus=self.names[c])
        elif isinstance(item, BadSample):  # counted by collate_skip_bad under its global index
            item = dataclasses.replace(item, index=int(index))
        return item


def metaloader_order(num_batches: Sequence[int], seed: int, epoch: int) -> list[int]:
    """The official ``MetaLoader`` draw order of one epoch: stream i appears ``num_batches[i]`` times, the
    list shuffled. Official: ``random.shuffle`` of the global Python RNG on rank 0, broadcast to the other
    ranks; here a pure function of (seed, epoch) (``derive_generator(seed, epoch, "metaloader")``), so every
    rank computes the same order without a broadcast and a resumed run finds it again. Returns
    ``[sum(num_batches)]`` stream ids."""
    ids = torch.cat([torch.full((int(n),), i, dtype=torch.long) for i, n in enumerate(num_batches)]
                    or [torch.zeros(0, dtype=torch.long)])
    perm = torch.randperm(len(ids), generator=derive_generator(seed, epoch, "metaloader"))
    return ids[perm].tolist()


class MetaLoaderSampler(Sampler[list[int]]):
    """One media type per step, streams interleaved in proportion to their size (official ``MetaLoader``).

    ``streams[s]``: the dataset indices of stream s (one per media type, :attr:`MixedCorpora.streams`). Each
    stream is its own loader: its epoch order is :func:`epoch_permutation` (or :func:`grouped_permutation`
    with ``groups``) under the seed ``derive_seed(seed, "stream", names[s])``, cut into
    ``len(stream) // G`` global batches (G = batch * world * accum; the tail is dropped, like the official
    ``drop_last``). The epoch has ``sum_s len(stream_s) // G`` steps, whose streams follow
    :func:`metaloader_order`; global step k draws the next global batch of stream ``order[k]``, split into
    contiguous per-(micro-step, rank) chunks exactly as :class:`GlobalBatchSampler` splits it. Everything is
    a pure function of (seed, epoch), identical on every rank, and starts at any ``start_step``.

    Yields this rank's micro-batches (lists of indices) from global step ``start_step``.
    """

    def __init__(
        self,
        streams: Sequence[Sequence[int]],
        batch_size: int,
        world_size: int,
        rank: int,
        grad_accum: int,
        seed: int,
        epoch: int,
        shuffle: bool = True,
        start_step: int = 0,
        names: Sequence[str] | None = None,
        groups: Sequence[int] | None = None,
        group_size: int = 1,
    ):
        self.streams = [list(map(int, s)) for s in streams]
        self.names = [str(n) for n in names] if names is not None else [str(i) for i in range(len(self.streams))]
        if len(self.names) != len(self.streams):
            raise ValueError(f"{len(self.names)} names for {len(self.streams)} streams")
        self.b, self.w, self.r, self.a = int(batch_size), int(world_size), int(rank), int(grad_accum)
        self.g = self.b * self.w * self.a
        self.seed, self.epoch, self.shuffle, self.start_step = seed, epoch, shuffle, int(start_step)
        self.groups, self.group_size = groups, int(group_size)
        self.num_batches = [len(s) // self.g for s in self.streams]
        self.order = metaloader_order(self.num_batches, seed, epoch)

    @property
    def steps_per_epoch(self) -> int:
        return len(self.order)

    def __len__(self) -> int:
        return max(0, self.steps_per_epoch - self.start_step) * self.a

    def stream_order(self, s: int) -> list[int]:
        """The epoch's sample order of stream ``s`` (dataset indices)."""
        stream, seed = self.streams[s], derive_seed(self.seed, "stream", self.names[s])
        if self.groups is not None and self.shuffle:
            pos = grouped_permutation([self.groups[i] for i in stream], self.group_size, seed, self.epoch)
        else:
            pos = epoch_permutation(len(stream), seed, self.epoch, self.shuffle)
        return [stream[i] for i in pos.tolist()]

    def step_batches(self, k: int) -> tuple[int, int]:
        """``(stream, its batch number)`` of global step ``k``: the stream's earlier draws this epoch."""
        s = self.order[k]
        return s, self.order[:k].count(s)

    def __iter__(self) -> Iterator[list[int]]:
        perms: dict[int, list[int]] = {}
        seen = [self.order[: self.start_step].count(s) for s in range(len(self.streams))]
        for k in range(self.start_step, self.steps_per_epoch):
            s = self.order[k]
            if s not in perms:
                perms[s] = self.stream_order(s)
            base, seen[s] = seen[s] * self.g, seen[s] + 1
            for a in range(self.a):
                lo = base + (a * self.w + self.r) * self.b
                yield perms[s][lo : lo + self.b]


def worker_init_fn(worker_id: int) -> None:
    """Keep worker processes single-threaded (the main process owns the cores)."""
    torch.set_num_threads(1)
