"""The decoding stream: DataLoader workers plan, decode and transform videos into ready model batches
("packets") while the main process runs the model."""
from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch

from ..errors import MediaError, ResourceError
from .planning import Group, plan_items
from .settings import EmbedSettings

log = logging.getLogger("internvideo2.embed")


@dataclass(frozen=True)
class InputSpec:
    """What the workers need to know about the model's input (picklable)."""

    frames: int
    size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]


class PacketStream(torch.utils.data.IterableDataset):
    """Yields ready model batches ("packets"), built in the worker processes.

    Worker ``w`` of ``W`` takes groups ``w, w + W, ...``. Within a group, items are packed in video order
    into packets of ``batch_size``; the last packet of a group (``last=True``) may be smaller or empty.
    A packet is a dict: ``chunk``, ``group``, ``last``, ``items`` (row dicts), ``video``
    (``float32 [n, 3, T, S, S]`` or None), ``done`` (video indices finished since the previous packet)
    and ``bad`` (error dicts; items of a bad video sent in earlier packets are dropped by the receiver).
    """

    def __init__(self, groups: list[Group], settings: EmbedSettings, spec: InputSpec, timeout: float):
        super().__init__()
        self.groups = groups
        self.settings = settings
        self.spec = spec
        self.timeout = float(timeout)

    def _transform(self):
        from ..data.transforms import build_eval_transform

        mode = "center_crop" if self.settings.resize == "center_crop" else "squash"
        return build_eval_transform(self.spec.size, mode, mean=self.spec.mean, std=self.spec.std)

    def __iter__(self) -> Iterator[dict]:
        info = torch.utils.data.get_worker_info()
        wid, nw = (info.id, info.num_workers) if info is not None else (0, 1)
        tf = self._transform()
        for g in self.groups[wid::nw]:
            yield from self._group(g, tf)

    def _decode(self, path: str, meta, items: list[dict], tf) -> list[torch.Tensor]:
        from ..data.video import read_frames

        idx = [i for it in items for i in it["frame_indices"]]
        size = (self.spec.size, self.spec.size) if self.settings.resize == "decoder" else None
        frames = read_frames(path, idx, size=size, meta=meta, timeout=self.timeout)  # [n*T, H, W, 3]
        T = self.spec.frames
        # transform per item (the official transform acts on one clip); [T, 3, S, S] -> [3, T, S, S]
        return [tf(frames[k * T:(k + 1) * T]).permute(1, 0, 2, 3) for k in range(len(items))]

    def _group(self, g: Group, tf) -> Iterator[dict]:
        B = int(self.settings.batch_size)
        items: list[dict] = []
        xs: list[torch.Tensor] = []
        done: list[int] = []
        bad: list[dict] = []

        def packet(last: bool) -> dict:
            nonlocal items, xs, done, bad
            pk = {"chunk": g.chunk, "group": g.group, "last": last, "items": items,
                  "video": torch.stack(xs) if xs else None, "done": done, "bad": bad}
            items, xs, done, bad = [], [], [], []
            return pk

        for v, (vi, path) in enumerate(g.videos):
            try:
                meta, plan = plan_items(path, self.settings, self.spec.frames, timeout=self.timeout)
                k = 0
                while k < len(plan):
                    take = plan[k:k + B - len(items)]
                    xs.extend(self._decode(path, meta, take, tf))
                    items.extend({"video": path, "video_index": vi, **it} for it in take)
                    k += len(take)
                    # a full packet goes now, unless it is the group's end (then it is the last packet)
                    if len(items) == B and (k < len(plan) or v < len(g.videos) - 1):
                        yield packet(last=False)
                done.append(vi)
            except Exception as e:  # one bad file must never end the run: it is listed
                if isinstance(e, MediaError):
                    reason, detail = e.reason, e.detail
                elif isinstance(e, (ResourceError, MemoryError)):
                    reason, detail = "resource", f"{type(e).__name__}: {e}"
                else:
                    # not a typed media error: still this file's failure, reported with its type (a
                    # systematic bug shows up as every file failing and trips the bad-fraction limit)
                    log.exception("%s: unexpected error while reading", path)
                    reason, detail = "unexpected_error", f"{type(e).__name__}: {e}"
                keep = [j for j, it in enumerate(items) if it["video_index"] != vi]
                items = [items[j] for j in keep]
                xs = [xs[j] for j in keep]
                bad.append({"video": path, "video_index": vi, "reason": reason, "detail": detail})
        yield packet(last=True)


def _identity(x):
    return x


def make_loader(stream: PacketStream, workers: int, pin_memory: bool = False):
    """The DataLoader over a packet stream (``workers`` processes; 0 = decode in this process)."""
    kw: dict[str, Any] = dict(batch_size=None, num_workers=int(workers), collate_fn=_identity,
                              pin_memory=pin_memory)
    if workers > 0:
        # batches never depend on arrival order, so a faster worker may go first
        kw.update(prefetch_factor=2, in_order=False)
    return torch.utils.data.DataLoader(stream, **kw)
