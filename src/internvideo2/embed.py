"""Feature extraction: ``internvideo2 embed VIDEOS... --model M -o OUT`` and :func:`embed_videos`.

One embedding per *item*; what an item is depends on the mode:

- ``clip``: one item per video, ``--frames N`` frames sampled with the official ``middle`` policy over
  the whole video (the stage-2 / CLIP test sampler);
- ``window``: sliding windows of ``--window`` seconds every ``--stride`` seconds
  (:func:`~internvideo2.data.video.sliding_windows`; the last window is aligned to the end), ``middle``
  sampling inside each window's frames (:func:`~internvideo2.data.video.frame_range`);
- ``shots``: one item per shot of :func:`~internvideo2.data.segment.detect_shots`, ``middle`` sampling
  inside the shot.

Features (``feature``): ``auto`` is ``proj`` for stage-2 and CLIP models and ``pool`` otherwise.
``pool`` is the attention-pool output of the vision core, ``VisionTransformer.pool(tokens)``
``[clip_embed_dim]`` (the ``pooled`` of ``encode_video``; not normalised); ``proj`` is the model's
L2-normalised contrastive video feature (stage 2: ``vision_feature(pooled)`` ``[embed_dim]``; CLIP:
the normalised ``vision_align(pooled)``), the one its text embeddings are compared with; ``mean`` is the
mean of the final tokens (the only choice for a core without attention pool). ``normalize`` L2-normalises
the rows whatever the feature. ``tokens`` also keeps the final tokens ``[1+N, C]`` of every item.

Frames go through the model's evaluation transform (``resize='squash'``: bicubic squash to the model's
size, as ``encode_video`` does; ``'center_crop'``: short side + central crop; ``'decoder'``: the decoder
resizes straight to the model size, faster on large videos, pixels differ slightly from ``squash``).

Output folder (see ``docs/embed.md``)::

    OUT/embeddings.npy   float32 [M, D], one row per item
    OUT/index.jsonl      one line per row: row, video, video_index, item, start_s, end_s, frame_indices
                         (+ tokens, tokens_row with --tokens)
    OUT/tokens/CCCCCC.npy  [n, 1+N, C] per chunk (with --tokens)
    OUT/errors.jsonl     one line per unusable video: video, video_index, reason (MediaError code), detail
    OUT/videos.json      the input list, in processing order
    OUT/meta.json        model, settings, counts, timing
    OUT/progress.json    resume state

Resume: the video list is cut into chunks of ``chunk_size`` videos. A finished chunk is written as
``parts/CCCCCC.npy`` then committed by ``parts/CCCCCC.json`` (each through a temporary name and an atomic
rename); a run killed at any point and started again with the same settings skips the committed chunks.
Model batches are formed inside groups of ``batch_size`` consecutive videos of one chunk, never across
groups, so every batch (and every number) is the same whichever chunks ran before, however many
workers there are: a resumed run ends with the same arrays and index as an uninterrupted one. When every
chunk is committed the final files are assembled and ``parts/`` is removed.

Overlap: decoding, sampling and the transform run in DataLoader worker processes (an ``IterableDataset``
yielding one ready batch at a time) while the main process runs the model.
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import hashlib
import json
import logging
import math
import os
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

import numpy as np
import torch
from torch import nn

from .errors import CheckpointError, ConfigError, InternVideo2Error, MediaError

log = logging.getLogger("internvideo2.embed")

__all__ = [
    "VIDEO_EXTENSIONS",
    "MODES",
    "FEATURES",
    "EmbedSettings",
    "EmbedResult",
    "find_videos",
    "plan_items",
    "embed_videos",
    "default_workers",
    "configure_parser",
    "run",
]

#: file name endings (lower case) taken from folders; files named explicitly are always taken
VIDEO_EXTENSIONS = (".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi", ".mpg", ".mpeg", ".flv", ".wmv",
                    ".ts", ".mts", ".m2ts", ".3gp", ".ogv")
MODES = ("clip", "window", "shots")
FEATURES = ("auto", "proj", "pool", "mean")
RESIZES = ("squash", "center_crop", "decoder")
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
TOKEN_DTYPES = ("float32", "float16")

FORMAT = "internvideo2-embed"
FORMAT_VERSION = 1
_OUR_FILES = ("embeddings.npy", "index.jsonl", "errors.jsonl", "meta.json", "progress.json", "videos.json")
_OUR_DIRS = ("parts", "tokens")


# ----------------------------------------------------------------------------------------------------------
# settings
# ----------------------------------------------------------------------------------------------------------
@dataclass
class EmbedSettings:
    """Everything that decides the numbers of a run (the resume fingerprint, with the model and inputs).

    Attributes:
        mode: ``clip``, ``window`` or ``shots`` (module doc).
        frames: frames per item (None: the model's ``num_frames``); must divide by its tubelet size.
        window / stride: window length and step in seconds (``window`` mode; stride None = window).
        shot_ratio / shot_min_score / shot_min_len / shot_step: :func:`detect_shots` parameters.
        size: input side (None: the model's ``img_size``); other sizes resample the position tables.
        resize: ``squash`` (default), ``center_crop`` or ``decoder`` (module doc).
        feature: ``auto``, ``proj``, ``pool`` or ``mean`` (module doc).
        normalize: L2-normalise every embedding row.
        tokens: also write the final tokens ``[1+N, C]`` of every item; ``tokens_dtype`` float32/float16.
        batch_size: items per model call (and videos per group, see the module doc).
        chunk_size: videos per committed chunk (the unit of resume).
        dtype: model dtype ``fp32`` / ``bf16`` / ``fp16`` (fp16 only on GPU).
    """

    mode: str = "clip"
    frames: int | None = None
    window: float | None = None
    stride: float | None = None
    shot_ratio: float = 3.0
    shot_min_score: float = 0.12
    shot_min_len: float = 0.5
    shot_step: int = 1
    size: int | None = None
    resize: str = "squash"
    feature: str = "auto"
    normalize: bool = False
    tokens: bool = False
    tokens_dtype: str = "float32"
    batch_size: int = 8
    chunk_size: int = 64
    dtype: str = "fp32"

    def validate(self) -> "EmbedSettings":
        def need(ok: bool, name: str, reason: str) -> None:
            if not ok:
                raise ConfigError(name, reason)

        need(self.mode in MODES, "mode", f"unknown mode {self.mode!r}; use one of {', '.join(MODES)}")
        need(self.frames is None or int(self.frames) >= 1, "frames", f"must be >= 1, got {self.frames}")
        if self.mode == "window":
            need(self.window is not None and self.window > 0, "window",
                 f"window mode needs a window length > 0 seconds, got {self.window}")
            if self.stride is None:
                self.stride = self.window
            need(self.stride > 0, "stride", f"must be > 0 seconds, got {self.stride}")
        else:
            need(self.window is None and self.stride is None, "window",
                 f"--window/--stride only apply to --mode window (mode is {self.mode!r})")
        need(self.shot_ratio > 1, "shot_ratio", f"must be > 1, got {self.shot_ratio}")
        need(self.shot_step >= 1, "shot_step", f"must be >= 1, got {self.shot_step}")
        need(self.shot_min_len >= 0, "shot_min_len", f"must be >= 0, got {self.shot_min_len}")
        need(self.size is None or int(self.size) > 0, "size", f"must be > 0, got {self.size}")
        need(self.resize in RESIZES, "resize", f"unknown {self.resize!r}; use one of {', '.join(RESIZES)}")
        need(self.feature in FEATURES, "feature", f"unknown {self.feature!r}; use one of {', '.join(FEATURES)}")
        need(self.tokens_dtype in TOKEN_DTYPES, "tokens_dtype", f"use one of {', '.join(TOKEN_DTYPES)}")
        need(int(self.batch_size) >= 1, "batch_size", f"must be >= 1, got {self.batch_size}")
        need(int(self.chunk_size) >= 1, "chunk_size", f"must be >= 1, got {self.chunk_size}")
        need(self.dtype in DTYPES, "dtype", f"unknown {self.dtype!r}; use one of {', '.join(DTYPES)}")
        return self

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


# ----------------------------------------------------------------------------------------------------------
# inputs
# ----------------------------------------------------------------------------------------------------------
def find_videos(inputs: Iterable[str | os.PathLike], extensions: Sequence[str] = VIDEO_EXTENSIONS) -> list[str]:
    """Expand files and folders into the ordered list of videos to embed.

    Files named explicitly are kept whatever their extension (a bad one is reported, not dropped);
    folders are walked recursively in sorted order, keeping files whose name ends with one of
    ``extensions`` (case-insensitive) and skipping hidden files and folders. Inputs keep their order;
    a file reached twice is listed once. A path that does not exist raises :class:`ConfigError`.
    """
    exts = tuple(e.lower() for e in extensions)
    out: list[str] = []
    seen: set[str] = set()

    def add(p: str) -> None:
        key = os.path.realpath(p)
        if key not in seen:
            seen.add(key)
            out.append(p)

    for raw in inputs:
        p = os.path.normpath(os.fspath(raw))
        if os.path.isdir(p):
            for root, dirs, files in os.walk(p):
                dirs[:] = sorted(d for d in dirs if not d.startswith("."))
                for name in sorted(files):
                    if not name.startswith(".") and name.lower().endswith(exts):
                        add(os.path.join(root, name))
        elif os.path.lexists(p):
            add(p)
        else:
            raise ConfigError("videos", f"{p}: no such file or folder")
    return out


# ----------------------------------------------------------------------------------------------------------
# the model side
# ----------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _InputSpec:
    """What the workers need to know about the model's input (picklable)."""

    frames: int
    size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]


class _Runner:
    """Runs the vision side of a model on ready batches ``float32 [B, 3, T, S, S]``."""

    def __init__(self, model: nn.Module, settings: EmbedSettings, device: torch.device, dtype: torch.dtype):
        from .models.vision import VisionTransformer

        self.model = model
        if isinstance(model, VisionTransformer):
            backbone = model
        elif isinstance(getattr(model, "vision_encoder", None), VisionTransformer):
            backbone = model.vision_encoder
        else:
            raise ConfigError("model", f"{type(model).__name__} has no InternVideo2 video encoder to embed with")
        self.backbone = backbone
        self.model_type = getattr(model, "model_type", type(model).__name__)
        cfg = backbone.cfg
        feature = settings.feature
        if feature == "auto":
            if self.model_type in ("stage2", "clip"):
                feature = "proj"
            else:
                feature = "pool" if backbone.clip_projector is not None else "mean"
        if feature == "proj" and self.model_type not in ("stage2", "clip"):
            raise ConfigError("feature", f"'proj' needs a stage-2 or CLIP model; this is a {self.model_type!r} "
                                         "model (use 'pool' or 'mean')")
        if feature in ("pool", "proj") and backbone.clip_projector is None:
            raise ConfigError("feature", f"{feature!r} needs the attention pool, which this model lacks "
                                         "(attn_pool_heads=0); use 'mean'")
        self.feature = feature
        self.normalize = bool(settings.normalize)
        self.keep_tokens = bool(settings.tokens)
        self.device, self.dtype = device, dtype
        frames = int(settings.frames or cfg.num_frames)
        size = int(settings.size or cfg.img_size)
        if frames % cfg.tubelet_size:
            raise ConfigError("frames", f"{frames} frames are not divisible by the model's tubelet size "
                                        f"{cfg.tubelet_size}")
        if size % cfg.patch_size:
            raise ConfigError("size", f"{size} is not divisible by the model's patch size {cfg.patch_size}")
        self.spec = _InputSpec(frames, size, tuple(cfg.mean), tuple(cfg.std))
        # output widths from the config (a dry run of a 1B model on CPU would cost seconds)
        if feature == "mean":
            self.dim = cfg.embed_dim
        elif feature == "pool":
            self.dim = cfg.clip_embed_dim
        elif self.model_type == "stage2":
            self.dim = int(model.config.embed_dim)
        else:
            self.dim = int(model.config.align_dim or cfg.clip_embed_dim)
        g = size // cfg.patch_size
        self.token_shape = (backbone.num_extra + (frames // cfg.tubelet_size) * g * g, cfg.embed_dim)

    def _project(self, pooled: torch.Tensor) -> torch.Tensor:
        m = self.model
        if self.model_type == "stage2":
            return m.vision_feature(pooled)
        align = getattr(m, "vision_align", None)
        return m.vision_feature(align(pooled) if align is not None else pooled)

    @torch.no_grad()
    def __call__(self, x: torch.Tensor) -> tuple[np.ndarray, np.ndarray | None]:
        """``[B, 3, T, S, S]`` -> (``float32 [B, D]``, ``float32 [B, 1+N, C]`` or None)."""
        x = x.to(device=self.device, dtype=self.dtype, non_blocking=True)
        tokens = self.backbone.forward_features(x).tokens
        if self.feature == "mean":
            emb = tokens.mean(1)
        else:
            emb = self.backbone.pool(tokens)
            if self.feature == "proj":
                emb = self._project(emb)
        emb = emb.float()
        if self.normalize:
            emb = torch.nn.functional.normalize(emb, dim=-1)
        tok = tokens.float().cpu().numpy() if self.keep_tokens else None
        return emb.cpu().numpy(), tok


def _model_fingerprint(model: nn.Module) -> str:
    """blake2b of every parameter and buffer (names, dtypes, shapes, bytes): resuming with other weights
    is refused."""
    h = hashlib.blake2b(digest_size=16)
    for name, t in model.state_dict().items():
        t = t.detach()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}\n".encode())
        h.update(t.cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def _jsonable(obj: Any) -> Any:
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: _jsonable(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (str, int, float, bool)) or obj is None:
        return obj
    return str(obj)


# ----------------------------------------------------------------------------------------------------------
# the worker side: planning, decoding, batching
# ----------------------------------------------------------------------------------------------------------
def plan_items(path: str, settings: EmbedSettings, frames: int, *, timeout: float = 120.0):
    """The items of one video: ``(meta, [{"item", "start_s", "end_s", "frame_indices"}, ...])``.

    Frame indices follow the official ``middle`` policy inside each item's frames (repeating the last
    frame when an item has fewer frames than asked, as the official sampler does). Raises
    :class:`MediaError` for an unusable file.
    """
    from .data.sampling import sample_indices
    from .data.video import frame_range, probe_video, sliding_windows

    meta = probe_video(path, timeout=timeout)
    if meta.num_frames < 1:
        raise MediaError(path, "no_frames", "the video stream holds no frames")
    spans: list[tuple[int, int, float, float]] = []
    if settings.mode == "clip":
        spans.append((0, meta.num_frames, 0.0, float(meta.duration)))
    elif settings.mode == "window":
        empty = 0
        for s, e in sliding_windows(meta, float(settings.window), float(settings.stride)):
            try:
                first, stop = frame_range(meta, s, e)
            except MediaError as err:
                if err.reason != "empty_range":
                    raise
                empty += 1  # a window shorter than the frame interval can fall between two frames
                continue
            spans.append((first, stop, s, e))
        if empty:
            log.warning("%s: %d window(s) of %.3f s hold no frame (%.3f fps) and were left out", path, empty,
                        settings.window, meta.fps)
    else:
        from .data.segment import detect_shots

        shots = detect_shots(path, ratio=settings.shot_ratio, min_score=settings.shot_min_score,
                             min_shot_s=settings.shot_min_len, step=settings.shot_step,
                             timeout=max(timeout, 300.0), meta=meta)
        spans = [(s.start_frame, s.end_frame, s.start_s, s.end_s) for s in shots]
    items = []
    for j, (first, stop, s, e) in enumerate(spans):
        local = sample_indices("middle", frames, stop - first)
        items.append({"item": j, "start_s": round(float(s), 6), "end_s": round(float(e), 6),
                      "frame_indices": [int(first + i) for i in local]})
    return meta, items


@dataclass
class _Group:
    """Consecutive videos of one chunk whose items are batched together (and only together)."""

    chunk: int
    group: int
    videos: list[tuple[int, str]]  # (video_index, path)


class _PacketStream(torch.utils.data.IterableDataset):
    """Yields ready model batches ("packets"), built in the worker processes.

    Worker ``w`` of ``W`` takes groups ``w, w + W, ...``. Within a group, items are packed in video order
    into packets of ``batch_size``; the last packet of a group (``last=True``) may be smaller or empty.
    A packet is a dict: ``chunk``, ``group``, ``last``, ``items`` (row dicts), ``video``
    (``float32 [n, 3, T, S, S]`` or None), ``done`` (video indices finished since the previous packet)
    and ``bad`` (error dicts; items of a bad video sent in earlier packets are dropped by the receiver).
    """

    def __init__(self, groups: list[_Group], settings: EmbedSettings, spec: _InputSpec, timeout: float):
        super().__init__()
        self.groups = groups
        self.settings = settings
        self.spec = spec
        self.timeout = float(timeout)

    def _transform(self):
        from .data.transforms import build_eval_transform

        mode = "center_crop" if self.settings.resize == "center_crop" else "squash"
        return build_eval_transform(self.spec.size, mode, mean=self.spec.mean, std=self.spec.std)

    def __iter__(self) -> Iterator[dict]:
        info = torch.utils.data.get_worker_info()
        wid, nw = (info.id, info.num_workers) if info is not None else (0, 1)
        tf = self._transform()
        for g in self.groups[wid::nw]:
            yield from self._group(g, tf)

    def _decode(self, path: str, meta, items: list[dict], tf) -> list[torch.Tensor]:
        from .data.video import read_frames

        idx = [i for it in items for i in it["frame_indices"]]
        size = (self.spec.size, self.spec.size) if self.settings.resize == "decoder" else None
        frames = read_frames(path, idx, size=size, meta=meta, timeout=self.timeout)  # [n*T, H, W, 3]
        T = self.spec.frames
        # transform per item (the official transform acts on one clip); [T, 3, S, S] -> [3, T, S, S]
        return [tf(frames[k * T:(k + 1) * T]).permute(1, 0, 2, 3) for k in range(len(items))]

    def _group(self, g: _Group, tf) -> Iterator[dict]:
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
            except Exception as e:  # noqa: BLE001 - one bad file must never end the run; it is listed
                if isinstance(e, MediaError):
                    reason, detail = e.reason, e.detail
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


def _make_loader(stream: _PacketStream, workers: int, pin_memory: bool = False):
    kw: dict[str, Any] = dict(batch_size=None, num_workers=int(workers), collate_fn=_identity,
                              pin_memory=pin_memory)
    if workers > 0:
        # batches never depend on arrival order, so a faster worker may go first
        kw.update(prefetch_factor=2, in_order=False)
    return torch.utils.data.DataLoader(stream, **kw)


def _groups(video_indices: Sequence[int], videos: Sequence[str], chunk: int, group_size: int,
            start_group: int = 0) -> list[_Group]:
    out = []
    for k in range(0, len(video_indices), group_size):
        sel = video_indices[k:k + group_size]
        out.append(_Group(chunk, start_group + k // group_size, [(i, videos[i]) for i in sel]))
    return out


# ----------------------------------------------------------------------------------------------------------
# files
# ----------------------------------------------------------------------------------------------------------
def _tmp_name(path: Path) -> Path:
    return path.with_name(f".{path.name}.tmp{os.getpid()}")


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _atomic_write(path: Path, write) -> None:
    """Write through a temporary name, fsync, rename: readers see the old file or the whole new one."""
    tmp = _tmp_name(path)
    try:
        with open(tmp, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    _fsync_dir(path.parent)


def _write_json(path: Path, obj: Any, indent: int | None = 2) -> None:
    data = (json.dumps(obj, indent=indent) + "\n").encode()
    _atomic_write(path, lambda f: f.write(data))


def _save_npy(path: Path, arr: np.ndarray) -> None:
    _atomic_write(path, lambda f: np.save(f, arr, allow_pickle=False))


def _sha256(arr: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(arr).tobytes()).hexdigest()


def _clean_tmp(out: Path) -> None:
    for d in (out, out / "parts", out / "tokens"):
        if d.is_dir():
            for p in d.iterdir():
                if p.name.startswith(".") and ".tmp" in p.name:
                    p.unlink()


class _Lock:
    """An exclusive POSIX record lock on ``OUT/.lock``, released by the kernel when this process dies.

    ``lockf``, not ``flock``: a ``flock`` is shared with the forked DataLoader workers, which outlive a
    SIGKILL-ed parent by a few seconds and would keep a restarted run out. Record locks belong to the
    process and are not inherited.
    """

    def __init__(self, out: Path):
        self.path = out / ".lock"
        self.fd: int | None = None

    def __enter__(self):
        import fcntl

        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.lockf(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(self.fd)
            self.fd = None
            raise ConfigError("out_dir", f"{self.path.parent}: another embed process is writing this folder")
        return self

    def __exit__(self, *exc):
        if self.fd is not None:
            os.close(self.fd)  # closing releases the lock
            self.fd = None


# ----------------------------------------------------------------------------------------------------------
# the run
# ----------------------------------------------------------------------------------------------------------
@dataclass
class EmbedResult:
    """What :func:`embed_videos` returns.

    Attributes:
        embeddings: ``float32 [M, D]`` (memory-mapped from ``OUT/embeddings.npy`` when an output folder
            was given).
        index: one dict per row (``row``, ``video``, ``video_index``, ``item``, ``start_s``, ``end_s``,
            ``frame_indices``; ``tokens`` / ``tokens_row`` with tokens).
        errors: one dict per unusable video (``video``, ``video_index``, ``reason``, ``detail``).
        meta: the ``meta.json`` content (model, settings, counts, timing).
        out_dir: the output folder, or None for an in-memory run.
        token_arrays: with ``tokens=True``: ``{file name: [n, 1+N, C] array}`` (see :meth:`tokens_of`).
        status: ``"complete"``, or ``"already_complete"`` when ``out_dir`` held this finished run and
            nothing was computed.
    """

    embeddings: np.ndarray
    index: list[dict]
    errors: list[dict]
    meta: dict
    out_dir: str | None = None
    token_arrays: dict[str, np.ndarray] | None = None
    status: str = "complete"

    def tokens_of(self, row: int) -> np.ndarray:
        """Tokens ``[1+N, C]`` of embedding row ``row``."""
        if self.token_arrays is None:
            raise ValueError("this run did not keep tokens (tokens=True / --tokens)")
        r = self.index[row]
        return self.token_arrays[r["tokens"]][r["tokens_row"]]

    @property
    def tokens(self) -> np.ndarray | None:
        """All tokens ``[M, 1+N, C]`` in row order (concatenated; None without tokens)."""
        if self.token_arrays is None:
            return None
        names = sorted(self.token_arrays)
        if not names:
            shape = self.meta["outputs"]["token_shape"]
            return np.zeros((0, *shape), dtype=self.meta["outputs"]["tokens_dtype"])
        return np.concatenate([self.token_arrays[n] for n in names])


@dataclass
class _ChunkState:
    groups_left: int
    num_videos: int
    items: dict[int, list[tuple[dict, np.ndarray, np.ndarray | None]]] = field(default_factory=dict)
    bad: dict[int, dict] = field(default_factory=dict)


def _resolve_device(device: str | torch.device | None, model: nn.Module) -> torch.device:
    if device is None:
        try:
            return next(model.parameters()).device
        except StopIteration:
            return torch.device("cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device", f"{device!r} asked but CUDA is not available")
    return dev


def _cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def default_workers() -> int:
    """Decoding workers: one per core left after the model's, at least 1, at most 4."""
    return max(1, min(4, _cpu_count() - 1))


def embed_videos(
    paths: Iterable[str | os.PathLike] | str | os.PathLike,
    model: nn.Module | str | os.PathLike,
    *,
    out_dir: str | os.PathLike | None = None,
    mode: str = "clip",
    frames: int | None = None,
    window: float | None = None,
    stride: float | None = None,
    feature: str = "auto",
    normalize: bool = False,
    tokens: bool = False,
    batch_size: int = 8,
    chunk_size: int = 64,
    workers: int | None = None,
    threads: int | None = None,
    device: str | torch.device | None = None,
    dtype: str = "fp32",
    overwrite: bool = False,
    max_bad_fraction: float = 0.2,
    bad_check_after: int = 20,
    timeout: float = 120.0,
    progress: bool = True,
    model_source: str | None = None,
    **more: Any,
) -> EmbedResult:
    """Embed videos (files and/or folders) with an InternVideo2 model; see the module doc.

    Args:
        paths: files and/or folders (see :func:`find_videos`).
        model: a loaded model, or anything :func:`internvideo2.load_model` accepts.
        out_dir: output folder (resumable); None runs in a temporary folder and returns arrays in memory.
        mode, frames, window, stride, feature, normalize, tokens, batch_size, chunk_size, dtype: see
            :class:`EmbedSettings`; further :class:`EmbedSettings` fields (``size``, ``resize``,
            ``shot_*``, ``tokens_dtype``) go in ``**more``.
        workers: DataLoader worker processes decoding in parallel with the model (0 = decode in this
            process, no overlap; default :func:`default_workers`).
        threads: torch threads of the model on CPU during the run (default: the cores left to the
            workers, at least 1); restored afterwards.
        device: where the model runs (default: where its parameters are). The model is moved and cast
            in place (as ``nn.Module.to`` does); its train/eval mode is restored at the end.
        overwrite: delete the outputs of an earlier run in ``out_dir`` and start over.
        max_bad_fraction / bad_check_after: raise :class:`~internvideo2.data.datasets.DataQualityError`
            once more than this fraction of at least ``bad_check_after`` videos were unusable.
        timeout: decoding time limit per call, seconds.
        progress: show a tqdm progress bar (stderr).
        model_source: recorded in ``meta.json`` (the CLI passes ``--model``).

    Raises ConfigError / CheckpointError on bad arguments, DataQualityError past the bad-file limit.
    """
    unknown = sorted(set(more) - {f.name for f in dataclasses.fields(EmbedSettings)})
    if unknown:
        raise ConfigError(unknown[0], "unknown option of embed_videos")
    settings = EmbedSettings(mode=mode, frames=frames, window=window, stride=stride, feature=feature,
                             normalize=normalize, tokens=tokens, batch_size=batch_size, chunk_size=chunk_size,
                             dtype=dtype, **more).validate()
    workers = default_workers() if workers is None else int(workers)
    if workers < 0:
        raise ConfigError("workers", f"must be >= 0, got {workers}")
    if not 0.0 <= max_bad_fraction <= 1.0:
        raise ConfigError("max_bad_fraction", f"must be in [0, 1], got {max_bad_fraction}")
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    videos = find_videos(paths)
    if not videos:
        raise ConfigError("videos", "no video files found in the inputs (extensions: "
                                    f"{' '.join(VIDEO_EXTENSIONS)})")

    torch_dtype = DTYPES[settings.dtype]
    if not isinstance(model, nn.Module):
        from .checkpoint.loader import load_model

        model_source = model_source or os.fspath(model)
        model = load_model(model, device=device or "cpu")
    dev = _resolve_device(device, model)
    if dev.type == "cpu" and torch_dtype == torch.float16:
        raise ConfigError("dtype", "fp16 is for GPUs; use fp32 (default) or bf16 on CPU")
    if dev.type == "cpu" and torch_dtype != torch.float32:
        log.warning("bf16 on CPU is slow and less exact than fp32; it is meant for GPUs")
    was_training = model.training
    # like nn.Module.to: the caller's model is moved / cast in place (a copy of a 6B model would not fit)
    model = model.to(device=dev, dtype=torch_dtype).eval()
    runner = _Runner(model, settings, dev, torch_dtype)

    tmp_root = None
    if out_dir is None:
        tmp_root = tempfile.mkdtemp(prefix="internvideo2-embed-")
        out = Path(tmp_root)
    else:
        out = Path(out_dir)
    old_threads = torch.get_num_threads()
    if dev.type == "cpu":
        torch.set_num_threads(int(threads) if threads else max(1, _cpu_count() - workers))
    try:
        job = _Job(out, videos, settings, runner, model, model_source, workers, timeout, max_bad_fraction,
                   bad_check_after, progress, overwrite)
        job.run()
        res = _load_result(out, in_memory=tmp_root is not None)
        res.status = job.status
        return res
    finally:
        torch.set_num_threads(old_threads)
        model.train(was_training)
        if tmp_root is not None:
            shutil.rmtree(tmp_root, ignore_errors=True)


def _load_result(out: Path, in_memory: bool) -> EmbedResult:
    meta = json.loads((out / "meta.json").read_text())
    mmap = None if in_memory else "r"
    emb = np.load(out / "embeddings.npy", mmap_mode=mmap if meta["counts"]["items"] else None)
    index = [json.loads(line) for line in (out / "index.jsonl").read_text().splitlines() if line]
    errors = [json.loads(line) for line in (out / "errors.jsonl").read_text().splitlines() if line]
    tok = None
    if meta["settings"]["tokens"]:
        tok = {}
        for name in sorted({r["tokens"] for r in index}):
            tok[name] = np.load(out / name, mmap_mode=mmap)
    return EmbedResult(np.asarray(emb) if in_memory else emb, index, errors, meta,
                       None if in_memory else str(out), tok)


class _Job:
    """One invocation on one output folder: check/resume state, embed the pending chunks, assemble."""

    def __init__(self, out: Path, videos: list[str], settings: EmbedSettings, runner: _Runner, model: nn.Module,
                 model_source: str | None, workers: int, timeout: float, max_bad_fraction: float,
                 bad_check_after: int, progress: bool, overwrite: bool):
        self.out, self.videos, self.settings, self.runner = out, videos, settings, runner
        self.model_source = model_source
        self.workers, self.timeout, self.progress, self.overwrite = workers, timeout, progress, overwrite
        self.max_bad_fraction, self.bad_check_after = max_bad_fraction, bad_check_after
        self.status = "complete"
        self.num_chunks = math.ceil(len(videos) / settings.chunk_size)
        h = hashlib.sha256()
        for v in videos:
            h.update(f"{v}\t{os.path.abspath(v)}\n".encode())
        self.videos_sha = h.hexdigest()
        model_cfg = getattr(model, "config", None)
        self.model_info = {
            "source": model_source,
            "model_type": runner.model_type,
            "class": type(model).__name__,
            "fingerprint": _model_fingerprint(model),
            "config": _jsonable(model_cfg) if model_cfg is not None else None,
        }
        self.fingerprint = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "model_fingerprint": self.model_info["fingerprint"],
            "settings": settings.to_dict(),
            "feature": runner.feature,
            "frames": runner.spec.frames,
            "size": runner.spec.size,
            "device_type": runner.device.type,
            "videos": {"count": len(videos), "sha256": self.videos_sha},
        }

    # -- state ----------------------------------------------------------------------------------------
    def _prepare(self) -> dict | None:
        """Create/check the folder. Returns the previous progress record (None for a fresh start)."""
        out = self.out
        out.mkdir(parents=True, exist_ok=True)
        prog_path = out / "progress.json"
        if self.overwrite:
            for name in _OUR_FILES:
                with contextlib.suppress(FileNotFoundError):
                    (out / name).unlink()
            for name in _OUR_DIRS:
                shutil.rmtree(out / name, ignore_errors=True)
        _clean_tmp(out)
        if prog_path.is_file():
            try:
                prev = json.loads(prog_path.read_text())
            except json.JSONDecodeError as e:
                raise ConfigError("out_dir", f"{prog_path}: unreadable ({e}); pass --overwrite to start over") from None
            old = prev.get("fingerprint", {})
            if old != self.fingerprint:
                diff = sorted(k for k in set(old) | set(self.fingerprint) if old.get(k) != self.fingerprint.get(k))
                if "settings" in diff:
                    os_, ns = old.get("settings", {}), self.fingerprint["settings"]
                    diff += [f"settings.{k}" for k in sorted(set(os_) | set(ns)) if os_.get(k) != ns.get(k)]
                raise ConfigError("out_dir", f"{out} holds an embed run with other inputs or settings (differs in: "
                                             f"{', '.join(diff)}); pass --overwrite to start over, or use another "
                                             "output folder")
            return prev
        others = [p.name for p in out.iterdir() if p.name != ".lock"]
        if any(n in _OUR_FILES or n in _OUR_DIRS for n in others):
            raise ConfigError("out_dir", f"{out} holds embed outputs without progress.json; pass --overwrite "
                                         "to start over")
        if others:
            raise ConfigError("out_dir", f"{out} is not empty and holds no embed run ({', '.join(sorted(others)[:5])}"
                                         "...); choose an empty or new folder")
        _write_json(out / "videos.json", self.videos)
        self._write_progress(done=0, complete=False, first=True)
        return None

    def _write_progress(self, done: int, complete: bool, first: bool = False, counts: dict | None = None):
        rec = {
            "fingerprint": self.fingerprint,
            "num_chunks": self.num_chunks,
            "chunks_done": done,
            "complete": complete,
            "counts": counts or {},
        }
        if first:
            rec["first_run"] = {"workers": self.workers, "threads": torch.get_num_threads()}
        else:
            prev = json.loads((self.out / "progress.json").read_text())
            rec["first_run"] = prev.get("first_run", {})
        _write_json(self.out / "progress.json", rec)

    def _chunk_done(self, c: int) -> dict | None:
        """The commit record of chunk ``c`` when it is complete and its arrays are intact."""
        parts = self.out / "parts"
        jp = parts / f"{c:06d}.json"
        if not jp.is_file():
            return None
        try:
            rec = json.loads(jp.read_text())
            n = int(rec["num_items"])
            arr = np.load(parts / f"{c:06d}.npy", mmap_mode="r" if n else None)
            ok = arr.shape == (n, self.runner.dim)
            if ok and self.settings.tokens and n:
                tok = np.load(self.out / "tokens" / f"{c:06d}.npy", mmap_mode="r")
                ok = tok.shape == (n, *self.runner.token_shape)
        except (OSError, ValueError, KeyError, json.JSONDecodeError):
            ok = False
        if not ok:
            log.warning("chunk %d: commit record present but its arrays are missing or damaged; embedding "
                        "it again", c)
            return None
        return rec

    # -- main -----------------------------------------------------------------------------------------
    def run(self) -> None:
        from .data.datasets import BadSamplePolicy, BadSampleTracker

        t_start = time.perf_counter()
        self.out.mkdir(parents=True, exist_ok=True)
        with _Lock(self.out):
            prev = self._prepare()
            if prev is not None and prev.get("complete"):
                missing = [n for n in ("embeddings.npy", "index.jsonl", "errors.jsonl", "meta.json")
                           if not (self.out / n).is_file()]
                if missing:
                    raise ConfigError("out_dir", f"{self.out}: the run is complete but {', '.join(missing)} "
                                                 "is missing; pass --overwrite to start over")
                shutil.rmtree(self.out / "parts", ignore_errors=True)  # left by a kill right after the end
                log.info("%s: already complete, nothing to do", self.out)
                self.status = "already_complete"
                return
            first = prev.get("first_run", {}) if prev else {}
            if prev and first.get("threads") not in (None, torch.get_num_threads()):
                log.warning("resuming with %d model threads, the run started with %s: CPU results can differ "
                            "in the last bits between the two", torch.get_num_threads(), first.get("threads"))
            (self.out / "parts").mkdir(exist_ok=True)
            if self.settings.tokens:
                (self.out / "tokens").mkdir(exist_ok=True)

            cs = self.settings.chunk_size
            done = {c: rec for c in range(self.num_chunks) if (rec := self._chunk_done(c)) is not None}
            pending = [c for c in range(self.num_chunks) if c not in done]
            tracker = BadSampleTracker(BadSamplePolicy(self.max_bad_fraction, self.bad_check_after), name="embed")
            bad_prev = [(e["video"], e["reason"]) for rec in done.values() for e in rec["errors"]]
            tracker.load_state_dict({"seen": sum(rec["num_videos"] for rec in done.values()), "bad": len(bad_prev),
                                     "reasons": _count(r for _, r in bad_prev), "examples": bad_prev[:50]})
            tracker.check()
            if done:
                log.info("%s: resuming, %d of %d chunks already done", self.out, len(done), self.num_chunks)
            stats = {"resumed_chunks": len(done), "embedded_items": 0, "embedded_videos": 0}
            t_loop = time.perf_counter()
            if pending:
                self._embed(pending, done, tracker, stats)
            loop_s = time.perf_counter() - t_loop
            self._assemble(stats, loop_s, time.perf_counter() - t_start)

    def _embed(self, pending: list[int], done: dict, tracker, stats: dict) -> None:
        from tqdm import tqdm

        s = self.settings
        cs, B = s.chunk_size, s.batch_size
        groups: list[_Group] = []
        states: dict[int, _ChunkState] = {}
        for c in pending:
            idx = list(range(c * cs, min((c + 1) * cs, len(self.videos))))
            gs = _groups(idx, self.videos, c, B)
            groups.extend(gs)
            states[c] = _ChunkState(groups_left=len(gs), num_videos=len(idx))
        stream = _PacketStream(groups, s, self.runner.spec, self.timeout)
        loader = _make_loader(stream, self.workers, pin_memory=self.runner.device.type == "cuda")
        n_done_videos = sum(rec["num_videos"] for rec in done.values())
        bar = tqdm(total=len(self.videos), initial=n_done_videos, unit="video", desc="embed",
                   disable=not self.progress, dynamic_ncols=True)
        n_done = len(done)
        try:
            for pk in loader:
                st = states[pk["chunk"]]
                if pk["items"]:
                    emb, tok = self.runner(pk["video"])
                    if emb.shape[1] != self.runner.dim:  # the config-derived width must be right
                        raise RuntimeError(f"embedding width {emb.shape[1]} != expected {self.runner.dim}")
                    for r, it in enumerate(pk["items"]):
                        st.items.setdefault(it["video_index"], []).append(
                            (it, emb[r], tok[r] if tok is not None else None))
                    stats["embedded_items"] += len(pk["items"])
                for b in pk["bad"]:
                    st.items.pop(b["video_index"], None)
                    st.bad[b["video_index"]] = b
                bar.update(len(pk["done"]) + len(pk["bad"]))
                stats["embedded_videos"] += len(pk["done"]) + len(pk["bad"])
                tracker.add(len(pk["done"]) + len(pk["bad"]), [(b["video"], b["reason"]) for b in pk["bad"]])
                if pk["last"]:
                    st.groups_left -= 1
                    if st.groups_left == 0:
                        counts = self._write_chunk(pk["chunk"], states.pop(pk["chunk"]))
                        n_done += 1
                        self._write_progress(n_done, False, counts=counts)
                        bar.set_postfix(items=stats["embedded_items"], bad=tracker.bad, refresh=False)
        finally:
            bar.close()
        if states:  # every group sends a last packet; anything left is a bug, never silently dropped
            raise RuntimeError(f"chunks {sorted(states)} did not complete")

    def _write_chunk(self, c: int, st: _ChunkState) -> dict:
        rows, embs, toks = [], [], []
        for vi in sorted(st.items):
            for it, e, t in sorted(st.items[vi], key=lambda r: r[0]["item"]):
                rows.append(it)
                embs.append(e)
                toks.append(t)
        D = self.runner.dim
        emb = np.stack(embs).astype(np.float32) if embs else np.zeros((0, D), np.float32)
        _save_npy(self.out / "parts" / f"{c:06d}.npy", emb)
        if self.settings.tokens and rows:
            _save_npy(self.out / "tokens" / f"{c:06d}.npy", np.stack(toks).astype(self.settings.tokens_dtype))
        errors = [st.bad[vi] for vi in sorted(st.bad)]
        rec = {"chunk": c, "num_videos": st.num_videos, "num_items": len(rows), "sha256": _sha256(emb),
               "rows": rows, "errors": errors}
        # the commit record is written last: a chunk is done iff this file exists
        _write_json(self.out / "parts" / f"{c:06d}.json", rec, indent=None)
        return {"chunk": c, "items": len(rows), "bad": len(errors)}

    def _assemble(self, stats: dict, loop_s: float, total_s: float) -> None:
        out, D = self.out, self.runner.dim
        recs = []
        for c in range(self.num_chunks):
            rec = self._chunk_done(c)
            if rec is None:
                raise RuntimeError(f"chunk {c} is not complete; cannot assemble")
            recs.append(rec)
        M = sum(r["num_items"] for r in recs)
        # embeddings: streamed into a memory map, so a large run never needs them all in memory
        final = out / "embeddings.npy"
        tmp = _tmp_name(final)
        if M:
            mm = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float32, shape=(M, D))
            off = 0
            for rec in recs:
                n = rec["num_items"]
                if n:
                    part = np.load(out / "parts" / f"{rec['chunk']:06d}.npy")
                    if _sha256(part) != rec["sha256"]:
                        raise RuntimeError(f"parts/{rec['chunk']:06d}.npy does not match its commit record")
                    mm[off:off + n] = part
                off += n
            mm.flush()
            del mm
            with open(tmp, "rb+") as f:
                os.fsync(f.fileno())
            os.replace(tmp, final)
        else:
            _save_npy(final, np.zeros((0, D), np.float32))

        lines, err_lines, reasons = [], [], {}
        off = 0
        for rec in recs:
            for j, r in enumerate(rec["rows"]):
                row = {"row": off + j, **r}
                if self.settings.tokens:
                    row["tokens"] = f"tokens/{rec['chunk']:06d}.npy"
                    row["tokens_row"] = j
                lines.append(json.dumps(row))
            off += rec["num_items"]
            for e in rec["errors"]:
                err_lines.append(json.dumps(e))
                reasons[e["reason"]] = reasons.get(e["reason"], 0) + 1
        text = "".join(x + "\n" for x in lines).encode()
        _atomic_write(out / "index.jsonl", lambda f: f.write(text))
        etext = "".join(x + "\n" for x in err_lines).encode()
        _atomic_write(out / "errors.jsonl", lambda f: f.write(etext))

        n_bad = len(err_lines)
        counts = {"videos": len(self.videos), "videos_ok": len(self.videos) - n_bad, "videos_bad": n_bad,
                  "items": M, "bad_reasons": dict(sorted(reasons.items())), "chunks": self.num_chunks}
        meta = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "model": self.model_info,
            "settings": {**self.settings.to_dict(), "feature_used": self.runner.feature,
                         "frames_used": self.runner.spec.frames, "size_used": self.runner.spec.size,
                         "sample": "middle"},
            "outputs": {"embeddings": "embeddings.npy", "shape": [M, D], "dtype": "float32",
                        "index": "index.jsonl", "errors": "errors.jsonl", "videos": "videos.json",
                        "tokens": "tokens/" if self.settings.tokens else None,
                        "token_shape": list(self.runner.token_shape) if self.settings.tokens else None,
                        "tokens_dtype": self.settings.tokens_dtype if self.settings.tokens else None},
            "counts": counts,
            "run": {"device": str(self.runner.device), "dtype": self.settings.dtype, "workers": self.workers,
                    "threads": torch.get_num_threads(), "torch": torch.__version__},
            "timing": {
                "this_run_s": round(total_s, 3),
                "embed_loop_s": round(loop_s, 3),
                "resumed_chunks": stats["resumed_chunks"],
                "videos_this_run": stats["embedded_videos"],
                "items_this_run": stats["embedded_items"],
                "videos_per_s": round(stats["embedded_videos"] / loop_s, 3) if loop_s > 0 else None,
                "items_per_s": round(stats["embedded_items"] / loop_s, 3) if loop_s > 0 else None,
            },
        }
        _write_json(out / "meta.json", meta)
        self._write_progress(self.num_chunks, True, counts={"items": M, "bad": n_bad})
        # the final files hold everything now; the parts (and their commit records) can go
        shutil.rmtree(out / "parts", ignore_errors=True)


def _count(values: Iterable[str]) -> dict[str, int]:
    out: dict[str, int] = {}
    for v in values:
        out[v] = out.get(v, 0) + 1
    return out


# ----------------------------------------------------------------------------------------------------------
# CLI
# ----------------------------------------------------------------------------------------------------------
def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("videos", nargs="+", metavar="VIDEO", help="video files and/or folders (recursive)")
    parser.add_argument("--model", required=True, metavar="M",
                        help="a folder saved with save_pretrained or an official checkpoint file")
    parser.add_argument("-o", "--out", required=True, metavar="OUT", help="output folder (resumable)")
    g = parser.add_argument_group("items")
    g.add_argument("--mode", choices=MODES, default="clip",
                   help="clip: one embedding per video; window: sliding windows; shots: one per shot")
    g.add_argument("--frames", type=int, default=None, metavar="N",
                   help="frames per item, official 'middle' sampling (default: the model's num_frames)")
    g.add_argument("--window", type=float, default=None, metavar="S", help="window length in seconds")
    g.add_argument("--stride", type=float, default=None, metavar="S", help="window step in seconds (default: window)")
    g.add_argument("--shot-min-len", type=float, default=0.5, metavar="S", help="shortest shot (default 0.5 s)")
    g.add_argument("--shot-ratio", type=float, default=3.0, help="shot-cut contrast ratio (default 3)")
    g.add_argument("--shot-min-score", type=float, default=0.12, help="shot-cut score floor (default 0.12)")
    g.add_argument("--shot-step", type=int, default=1, help="analyse every STEP-th frame for cuts (default 1)")
    g = parser.add_argument_group("features")
    g.add_argument("--feature", choices=FEATURES, default="auto",
                   help="auto (default): proj for stage-2/CLIP models, pool otherwise; proj: normalised "
                        "contrastive video feature; pool: attention-pool output; mean: token mean")
    g.add_argument("--normalize", action="store_true", help="L2-normalise every embedding")
    g.add_argument("--tokens", action="store_true", help="also write the token features [1+N, C] per item")
    g.add_argument("--tokens-dtype", choices=TOKEN_DTYPES, default="float32")
    g.add_argument("--size", type=int, default=None, help="input side (default: the model's img_size)")
    g.add_argument("--resize", choices=RESIZES, default="squash",
                   help="squash (official stage-2 test transform, default), center_crop, or decoder "
                        "(resize while decoding: faster, pixels differ slightly)")
    g = parser.add_argument_group("execution")
    g.add_argument("--batch", type=int, default=8, help="items per model call (default 8)")
    g.add_argument("--chunk", type=int, default=64, metavar="N", help="videos per committed chunk (default 64)")
    g.add_argument("--workers", type=int, default=None,
                   help=f"decoding worker processes (default {default_workers()} here; 0 = no overlap)")
    g.add_argument("--threads", type=int, default=None, help="model threads on CPU (default: cores left to workers)")
    g.add_argument("--device", default="cpu", help="cpu (default), cuda, cuda:1 ...")
    g.add_argument("--dtype", choices=sorted(DTYPES), default="fp32", help="model dtype (bf16 on GPU)")
    g.add_argument("--timeout", type=float, default=120.0, help="decoding time limit per file, seconds")
    g.add_argument("--max-bad-fraction", type=float, default=0.2,
                   help="fail once more than this fraction of videos are unusable (default 0.2; 1 = never)")
    g.add_argument("--bad-check-after", type=int, default=20, metavar="N",
                   help="no bad-fraction verdict before N videos were seen (default 20)")
    g.add_argument("--overwrite", action="store_true", help="delete an earlier run's outputs in OUT and start over")
    g.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    from .data.datasets import DataQualityError

    try:
        dtype = DTYPES[args.dtype]
        if torch.device(args.device).type == "cpu" and dtype == torch.float16:
            raise ConfigError("dtype", "fp16 is for GPUs; use fp32 (default) or bf16 on CPU")
        EmbedSettings(mode=args.mode, frames=args.frames, window=args.window, stride=args.stride).validate()
        find_videos(args.videos)  # fail on a mistyped path before loading a large model
        from .checkpoint.loader import load_model

        model = load_model(args.model, device=args.device)
        res = embed_videos(
            args.videos, model, out_dir=args.out, mode=args.mode, frames=args.frames, window=args.window,
            stride=args.stride, feature=args.feature, normalize=args.normalize, tokens=args.tokens,
            batch_size=args.batch, chunk_size=args.chunk, workers=args.workers, threads=args.threads,
            device=args.device, dtype=args.dtype, overwrite=args.overwrite,
            max_bad_fraction=args.max_bad_fraction, bad_check_after=args.bad_check_after, timeout=args.timeout,
            progress=not args.no_progress, model_source=args.model, size=args.size, resize=args.resize,
            shot_ratio=args.shot_ratio, shot_min_score=args.shot_min_score, shot_min_len=args.shot_min_len,
            shot_step=args.shot_step, tokens_dtype=args.tokens_dtype,
        )
    except (ConfigError, CheckpointError) as e:
        print(f"internvideo2 embed: {e}", file=sys.stderr)
        return 2
    except DataQualityError as e:
        print(f"internvideo2 embed: {e}\n(finished chunks are kept in {args.out}; rerun with a higher "
              "--max-bad-fraction to go on)", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"internvideo2 embed: interrupted; finished chunks are kept in {args.out}, rerun the same command "
              "to resume", file=sys.stderr)
        return 130
    except InternVideo2Error as e:
        print(f"internvideo2 embed: {e}", file=sys.stderr)
        return 1
    c, t = res.meta["counts"], res.meta["timing"]
    if res.status == "already_complete":
        print(f"embed: {args.out} already holds this finished run ({c['videos']} videos -> {c['items']} "
              "embeddings); nothing to do (--overwrite starts over)", flush=True)
        return 0
    bad = ""
    if c["videos_bad"]:
        reasons = ", ".join(f"{k}: {v}" for k, v in c["bad_reasons"].items())
        bad = f"; {c['videos_bad']} unusable ({reasons}), listed in {os.path.join(args.out, 'errors.jsonl')}"
    resumed = f"; {t['resumed_chunks']} of {c['chunks']} chunks from an earlier run" if t["resumed_chunks"] else ""
    speed = f" ({t['videos_per_s']} videos/s)" if t["videos_this_run"] else ""
    print(f"embed: {c['videos']} videos -> {c['items']} embeddings of width {res.embeddings.shape[1]} in "
          f"{args.out} [{t['embed_loop_s']} s{speed}]{bad}{resumed}", flush=True)
    return 0


if __name__ == "__main__":  # pragma: no cover
    from .cli import main

    sys.exit(main(["embed", *sys.argv[1:]]))
