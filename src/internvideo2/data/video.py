"""Video reading on PyAV: metadata, frame reading by index, clip sampling, sliding windows.

Conventions
-----------
- Frame index ``i`` is the ``i``-th frame the decoder outputs, i.e. the ``i``-th frame in presentation
  order, counted from 0. Timestamps are seconds from the first frame of the stream.
- Frames come back as ``uint8 [T, H, W, 3]`` RGB tensors, in the order of the requested indices
  (duplicates allowed).
- Every failure on a file raises :class:`~internvideo2.errors.MediaError` with ``path``, a short
  ``reason`` code (see ``REASONS``) and a human ``detail``. Nothing is silently replaced.

Decoding strategy (``read_frames``)
-----------------------------------
Only sampled frames are converted to RGB (``to_ndarray``); the others are decoded and dropped, which is
what makes one sequential pass cheap. Seeking costs a re-start from the previous keyframe, so a cost model
(in decoded frames) decides per target frame whether to keep decoding forward or to seek: with one
keyframe (``bigbuckbunny.mp4``) it never seeks, with dense keyframes and far-apart targets it does. The
keyframe positions come from one demux pass over the packets (no decoding), cached per file.
When a target size is known, frames are resized by swscale during the RGB conversion. Without a ``meta``,
one container serves the probe, the packet scan and the decode (rewound, and checked to be on frame 0,
after a scan). Decoder threads: see :func:`decoder_threads` (fewer per process in DataLoader workers).

Time limits
-----------
``timeout`` is a deadline for the whole call, checked between packets and frames; exceeding it raises
``MediaError(reason='timeout')``. Absurd declared dimensions are refused from the header, before any frame
is decoded (``max_pixels``).
"""
from __future__ import annotations

import logging
import os
import random
from collections.abc import Sequence

import numpy as np
import torch

from ..errors import ConfigError, MediaError
from ..utils.env import check_memory
from .video_meta import (
    MAX_PIXELS,
    REASONS,
    SWS_THREADS,
    VideoMetadata,
    _av_msg,
    _cached_scan,
    _check_deadline,
    _check_meta,
    _deadline,
    _get_scan,
    _Handle,
    _open,
    _probe,
    _set_threads,
    _usable_cpus,
    decoder_threads,
    has_decord,
    probe_video,
)

log = logging.getLogger("internvideo2.data.video")

# Seeking costs about this many decoded frames on top of decoding from the keyframe (measured: demuxer
# seek + decoder flush + the lost pipelining of frame threads). Only affects speed, never the result.
_SEEK_COST_FRAMES = 6
# Below this target index, sequential decoding is never worse enough to justify the packet scan.
_MIN_SCAN_INDEX = 48

__all__ = [
    "VideoMetadata",
    "MAX_PIXELS",
    "REASONS",
    "probe_video",
    "read_frames",
    "read_clip",
    "sliding_windows",
    "frame_range",
    "frame_timestamps",
    "has_decord",
    "decoder_threads",
]


# ----------------------------------------------------------------------------------------------------------
# frame reading
# ----------------------------------------------------------------------------------------------------------
def _check_size(size) -> tuple[int, int] | None:
    if size is None:
        return None
    try:
        h, w = (int(size[0]), int(size[1]))
    except Exception:
        raise ConfigError("size", f"expected (height, width), got {size!r}") from None
    if h <= 0 or w <= 0:
        raise ConfigError("size", f"height and width must be > 0, got {size!r}")
    return h, w


def _plan(targets: Sequence[int], key_idx: np.ndarray | None, force_seek: bool) -> list[tuple[int, bool]]:
    """For each sorted unique target: ``(target, seek_first)``.

    Greedy on decoded-frame cost: from the last decoded index ``pos``, continuing costs ``t - pos``
    frames; seeking to the keyframe ``k <= t`` costs ``t - k + 1 + _SEEK_COST_FRAMES``. A seek is only
    possible when ``k > pos`` (otherwise we are already past that keyframe). ``force_seek`` seeks whenever
    it is possible (for tests and benchmarks).
    """
    plan = []
    pos = -1
    for t in targets:
        seek = False
        if key_idx is not None:
            k = int(key_idx[np.searchsorted(key_idx, t, side="right") - 1])
            if k > pos + 1:
                seek = force_seek or (t - k + 1 + _SEEK_COST_FRAMES) < (t - pos)
        plan.append((int(t), seek))
        pos = t
    return plan


class _Fallback(Exception):
    """Seek path could not map frames to indices; redo the read sequentially."""


def _convert(frame, out_hw: tuple[int, int], native_hw: tuple[int, int], interpolation, reformatter=None) -> np.ndarray:
    """RGB24 ``[h, w, 3]``. ``reformatter``: a ``VideoReformatter`` reused across the frames of one read —
    ``frame.to_ndarray(width=...)`` builds a new swscale context (and its filter taps) for every frame, which
    costs about a fifth of the conversion at 640x480 -> 224 (same pixels either way)."""
    h, w = out_hw
    if (h, w) == native_hw and frame.height == h and frame.width == w:
        # unscaled conversion: identical to to_ndarray(format='rgb24') (and to decord's frames)
        return frame.to_ndarray(format="rgb24", threads=SWS_THREADS)
    if reformatter is None:
        return frame.to_ndarray(format="rgb24", width=w, height=h, interpolation=interpolation, threads=SWS_THREADS)
    return reformatter.reformat(frame, format="rgb24", width=w, height=h, interpolation=interpolation,
                                threads=SWS_THREADS).to_ndarray()


class _Converter:
    """RGB conversion of the decoded frames of one read. With more than one usable thread (``threads`` 0 =
    one per core) and enough frames, conversions run on a small thread pool while the main thread keeps
    decoding: swscale releases the GIL, and at 640x480 -> 224 the conversion costs as much as decoding an
    MPEG-4 frame. Each thread reuses one reformatter. At most ``2 x workers`` decoded frames wait at once."""

    def __init__(self, out_hw, native_hw, interpolation, threads: int, num_frames: int):
        import threading

        self.args = (out_hw, native_hw, interpolation)
        workers = _usable_cpus() if threads == 0 else int(threads)
        self.local = threading.local()
        self.pool = None
        if workers > 1 and num_frames >= 4:
            from concurrent.futures import ThreadPoolExecutor

            self.pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="iv2-rgb")
        self.limit = 2 * workers
        self.pending: list = []

    def _run(self, frame) -> np.ndarray:
        from av.video.reformatter import VideoReformatter

        rf = getattr(self.local, "rf", None)
        if rf is None:
            rf = self.local.rf = VideoReformatter()
        return _convert(frame, *self.args, rf)

    def submit(self, frame):
        """An array, or a future of one when a pool runs."""
        if self.pool is None:
            return self._run(frame)
        fut = self.pool.submit(self._run, frame)
        self.pending.append(fut)
        if len(self.pending) > self.limit:
            self.pending.pop(0).result()  # bound the decoded frames held in memory
        return fut

    def collect(self, out: dict) -> dict[int, np.ndarray]:
        return {k: (v.result() if hasattr(v, "result") else v) for k, v in out.items()}

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)


def _decode_pyav(path: str, targets: list[int], meta: VideoMetadata, out_hw: tuple[int, int],
                 deadline: float, timeout: float, strategy: str, interpolation,
                 threads: int = 0, handle: _Handle | None = None) -> dict[int, np.ndarray]:
    """Decode the sorted unique ``targets``; ``handle``: a container already opened by this call (its
    owner closes it). Raises :class:`_Fallback` when frames cannot be matched to indices after a seek
    or a rewind; the caller then decodes sequentially from a fresh container."""
    import av

    native = (meta.height, meta.width)
    key_idx = pts = None
    if strategy == "seek" or (strategy == "auto" and targets[-1] >= _MIN_SCAN_INDEX):
        scan = _get_scan(path, meta.stream_index, timeout, deadline, handle)
        if scan.pts is not None and scan.count == meta.num_frames:
            key_idx, pts = scan.key_idx, scan.pts
    plan = _plan(targets, key_idx, force_seek=(strategy == "seek"))
    use_pts = key_idx is not None and any(s for _, s in plan)
    wanted = set(targets)
    out: dict[int, np.ndarray] = {}

    own = handle is None
    c = _open(path, timeout) if own else handle.c
    convert = _Converter(out_hw, native, interpolation, threads, len(targets))  # closed in `finally` below
    rewind_pts = None
    try:
        vs = c.streams[meta.stream_index]
        _set_threads(vs, threads)
        if not own and handle.consumed and not plan[0][1]:  # (a first seek repositions anyway)
            # packets were demuxed already (probe / scan): go back to the first frame, and check on the
            # first decoded frame that we are there (else _Fallback -> a fresh container)
            first = _cached_scan(path, meta.stream_index)
            if first is None or first.pts is None:
                raise _Fallback("cannot rewind a container without a packet table")
            rewind_pts = int(first.pts[0])
            c.seek(rewind_pts, stream=vs, backward=True, any_frame=False)
        pts_to_idx = {int(p): i for i, p in enumerate(pts)} if use_pts else None
        gen = None
        counter = -1  # index of the last frame taken from the decoder (sequential counting)
        n_decoded = 0
        for t, seek in plan:
            if seek:
                k = int(key_idx[np.searchsorted(key_idx, t, side="right") - 1])
                c.seek(int(pts[k]), stream=vs, backward=True, any_frame=False)
                gen = c.decode(vs)
                just_seeked = True
            else:
                if gen is None:
                    gen = c.decode(vs)
                just_seeked = False
            while t not in out:
                try:
                    frame = next(gen)
                except StopIteration:
                    if use_pts:
                        raise _Fallback(f"stream ended before frame {t} after a seek") from None
                    raise MediaError(
                        path, "truncated",
                        f"decoding ended after {counter + 1} frames; frame {t} requested "
                        f"({meta.num_frames} declared, source {meta.frame_count_source})",
                    ) from None
                n_decoded += 1
                if n_decoded % 16 == 0:
                    _check_deadline(path, deadline, f"decoding (frame {t} wanted)")
                if rewind_pts is not None:
                    if frame.pts != rewind_pts:
                        raise _Fallback(f"rewind landed on pts {frame.pts}, not the first frame")
                    rewind_pts = None
                if use_pts:
                    idx = pts_to_idx.get(frame.pts) if frame.pts is not None else None
                    if idx is None:
                        raise _Fallback(f"decoded frame pts {frame.pts} not in the packet table")
                    if just_seeked and idx > t:
                        raise _Fallback(f"seek landed after frame {t}")
                    just_seeked = False
                else:
                    counter += 1
                    idx = counter
                if idx in wanted and idx not in out:
                    out[idx] = convert.submit(frame)
                elif not use_pts and idx > t:  # cannot happen with sequential counting
                    raise MediaError(path, "decode_error", f"frame {t} skipped")
        return convert.collect(out)
    except av.error.FFmpegError as e:
        if rewind_pts is not None:  # the rewind itself or the first packets after it failed
            raise _Fallback(f"rewind failed: {_av_msg(e)}") from None
        raise MediaError(path, "decode_error", _av_msg(e)) from None
    finally:
        convert.close()
        if own:
            c.close()


def _decode_decord(path: str, targets: list[int], meta: VideoMetadata, size: tuple[int, int] | None,
                   deadline: float, threads: int = 0) -> dict[int, np.ndarray]:
    import decord

    kw = {}
    if size is not None:
        kw = {"height": int(size[0]), "width": int(size[1])}
    try:
        vr = decord.VideoReader(path, ctx=decord.cpu(0), num_threads=int(threads), **kw)
        n = len(vr)
        if targets[-1] >= n:
            raise MediaError(path, "truncated", f"decord sees {n} frames; frame {targets[-1]} requested")
        arr = vr.get_batch(list(targets)).asnumpy()
    except MediaError:
        raise
    except Exception as e:  # decord raises its own DECORDError / RuntimeError
        raise MediaError(path, "decode_error", f"decord: {e}") from None
    _check_deadline(path, deadline, "decoding with decord")
    return {t: arr[i] for i, t in enumerate(targets)}


def _choose_backend(backend: str, size, targets, meta) -> str:
    if backend == "pyav":
        return "pyav"
    if backend == "decord":
        if not has_decord():
            raise ConfigError("backend", "'decord' is not installed (pip install decord), use 'pyav' or 'auto'")
        return "decord"
    if backend != "auto":
        raise ConfigError("backend", f"unknown backend {backend!r}; use 'auto', 'pyav' or 'decord'")
    return _auto_rule(size, targets, meta)


def _auto_rule(size, targets, meta) -> str:
    # Measured in benchmarks/bench_decode.py on the real assets (docs/data-io.md): PyAV converting only
    # the sampled frames is on par with decord on the MP4 assets (within the noise of a shared 2-core
    # machine) and 1.6-1.8x faster on the WebM (keyframe seeks), so 'auto' stays on PyAV and decord is used
    # only on request. 'auto' does not even import decord (a second FFmpeg build in the process), and one
    # backend keeps resized pixels identical across machines.
    return "pyav"


def read_frames(
    path,
    indices: Sequence[int],
    *,
    size: tuple[int, int] | None = None,
    meta: VideoMetadata | None = None,
    timeout: float = 60.0,
    backend: str = "auto",
    strategy: str = "auto",
    interpolation: str = "BICUBIC",
    max_pixels: int | None = MAX_PIXELS,
    threads: int | None = None,
) -> torch.Tensor:
    """Decode the frames at ``indices``. Returns ``uint8 [T, H, W, 3]`` RGB, in the order of ``indices``.

    - ``size=(h, w)`` resizes during the RGB conversion (swscale, ``interpolation`` in PyAV's names:
      BICUBIC, BILINEAR, AREA, ...); None keeps the native size.
    - ``meta``: a previous :func:`probe_video` result (saves a probe).
    - ``backend``: 'pyav', 'decord' (optional package) or 'auto' (see ``_auto_rule``).
    - ``strategy`` (PyAV): 'auto' (cost model), 'sequential' (never seek), 'seek' (seek whenever a
      keyframe lies between targets). All give bit-identical frames.
    - ``timeout``: seconds for the whole call.
    - ``threads``: FFmpeg decoder threads (0 = one per core); None = :func:`decoder_threads`' automatic
      choice (one per core in the main process, ``cores // num_workers`` in a DataLoader worker).
    """
    path = os.fspath(path)
    deadline = _deadline(timeout)
    n_threads = decoder_threads(threads)
    if strategy not in ("auto", "sequential", "seek"):
        raise ConfigError("strategy", f"unknown strategy {strategy!r}; use 'auto', 'sequential' or 'seek'")
    hw = _check_size(size)
    if meta is not None:
        _check_meta(path, meta, max_pixels)
        return _read_frames(path, indices, meta, hw, deadline, timeout, backend, strategy, interpolation,
                            n_threads, None)
    h = _Handle(_open(path, timeout))  # one container for the probe and the decode
    try:
        meta = _probe(h, path, deadline, max_pixels=max_pixels)
        return _read_frames(path, indices, meta, hw, deadline, timeout, backend, strategy, interpolation,
                            n_threads, h)
    finally:
        h.close()


def _read_frames(path: str, indices: Sequence[int], meta: VideoMetadata, hw: tuple[int, int] | None,
                 deadline: float, timeout: float, backend: str, strategy: str, interpolation: str,
                 n_threads: int, handle: _Handle | None) -> torch.Tensor:
    idx_list = []
    for i in indices:
        if isinstance(i, bool) or not isinstance(i, (int, np.integer)):
            raise ConfigError("indices", f"frame indices must be integers, got {i!r}")
        ii = int(i)
        if not 0 <= ii < meta.num_frames:
            raise MediaError(
                path, "index_out_of_range",
                f"frame {ii} requested, the video has {meta.num_frames} frames (0..{meta.num_frames - 1})",
            )
        idx_list.append(ii)
    out_hw = hw or (meta.height, meta.width)
    if not idx_list:
        return torch.empty((0, out_hw[0], out_hw[1], 3), dtype=torch.uint8)
    targets = sorted(set(idx_list))
    # the decoded frames and the output array exist at once
    check_memory((len(targets) + len(idx_list)) * out_hw[0] * out_hw[1] * 3,
                 f"{path}: reading {len(idx_list)} frames of {out_hw[1]}x{out_hw[0]}")
    chosen = _choose_backend(backend, hw, targets, meta)
    if chosen == "decord":
        got = _decode_decord(path, targets, meta, hw, deadline, n_threads)
    else:
        try:
            got = _decode_pyav(path, targets, meta, out_hw, deadline, timeout, strategy, interpolation,
                               n_threads, handle)
        except _Fallback as e:
            log.debug("%s: seek path gave up (%s); decoding sequentially", path, e)
            got = _decode_pyav(path, targets, meta, out_hw, deadline, timeout, "sequential", interpolation,
                               n_threads)
    arr = np.stack([got[i] for i in idx_list])
    return torch.from_numpy(arr)


# ----------------------------------------------------------------------------------------------------------
# time ranges, clips, windows
# ----------------------------------------------------------------------------------------------------------
def _frame_times(meta: VideoMetadata, timeout: float = 30.0, handle: _Handle | None = None) -> np.ndarray:
    """Seconds of every frame from the first one, from the packet table when usable, else ``i / fps``."""
    deadline = _deadline(timeout)
    try:
        scan = _get_scan(meta.path, meta.stream_index, timeout, deadline, handle)
    except MediaError:
        scan = None
    if scan is not None and scan.pts is not None and scan.count == meta.num_frames:
        return (scan.pts - scan.pts[0]).astype(np.float64) * float(scan.time_base)
    return np.arange(meta.num_frames, dtype=np.float64) / meta.fps


def frame_timestamps(meta: VideoMetadata, indices: Sequence[int]) -> list[float]:
    """Presentation time (s, from the first frame) of each index: exact for VFR when the packets carry
    timestamps, else ``index / fps``."""
    times = _frame_times(meta)
    return [float(times[int(i)]) for i in indices]


def frame_range(meta: VideoMetadata, start_s: float | None = None, end_s: float | None = None) -> tuple[int, int]:
    """Frames whose timestamp lies in ``[start_s, end_s)``: returns ``(first, stop)`` (``stop`` exclusive).

    ``None`` means the start / end of the video. Raises ``empty_range`` when no frame falls inside.
    """
    return _frame_range(meta, start_s, end_s)


def _frame_range(meta: VideoMetadata, start_s: float | None, end_s: float | None,
                 handle: _Handle | None = None) -> tuple[int, int]:
    if start_s is not None and start_s < 0:
        raise ConfigError("start_s", f"must be >= 0, got {start_s}")
    if start_s is not None and end_s is not None and end_s <= start_s:
        raise ConfigError("end_s", f"must be > start_s ({start_s}), got {end_s}")
    if start_s is None and end_s is None:
        return 0, meta.num_frames
    times = _frame_times(meta, handle=handle)
    eps = 1e-6
    first = 0 if start_s is None else int(np.searchsorted(times, float(start_s) - eps, side="left"))
    stop = meta.num_frames if end_s is None else int(np.searchsorted(times, float(end_s) - eps, side="left"))
    stop = min(stop, meta.num_frames)
    if stop <= first:
        raise MediaError(
            meta.path, "empty_range",
            f"no frame in [{start_s}, {end_s}) s (video: {meta.duration:.3f} s, {meta.num_frames} frames)",
        )
    return first, stop


def read_clip(
    path,
    num_frames: int,
    sample: str = "middle",
    *,
    start_s: float | None = None,
    end_s: float | None = None,
    size: tuple[int, int] | None = None,
    rng: random.Random | None = None,
    timeout: float = 60.0,
    strict: bool = False,
    backend: str = "auto",
    num_clips: int = 1,
    clip_idx: int = 0,
    max_num_frames: int = -1,
    meta: VideoMetadata | None = None,
    max_pixels: int | None = MAX_PIXELS,
    threads: int | None = None,
) -> tuple[torch.Tensor, list[int], VideoMetadata]:
    """Sample ``num_frames`` frames with policy ``sample`` from ``[start_s, end_s)`` and decode them.

    Policies (see :mod:`internvideo2.data.sampling`): 'rand' (train), 'middle' (test), 'fps{X}',
    'uniform' (chat inference), 'sparse_train', 'sparse_test' (view ``clip_idx`` of ``num_clips``),
    'ssv2_test', 'tsn'. Returned indices are absolute frame indices in the file.

    Short clips: by default the official behaviour (the last index is repeated up to ``num_frames``);
    ``strict=True`` raises ``MediaError(reason='too_few_frames')`` instead.
    Returns ``(frames uint8 [T, H, W, 3], indices, meta)``. ``threads``: as in :func:`read_frames`.
    """
    path = os.fspath(path)
    deadline = _deadline(timeout)
    n_threads = decoder_threads(threads)
    h = None
    try:
        if meta is None:
            h = _Handle(_open(path, timeout))  # one container for the probe, the time range and the decode
            meta = _probe(h, path, deadline, max_pixels=max_pixels)
        else:
            _check_meta(path, meta, max_pixels)
        return _read_clip(path, num_frames, sample, meta, h, deadline, timeout, start_s=start_s, end_s=end_s,
                          size=_check_size(size), rng=rng, strict=strict, backend=backend,
                          num_clips=num_clips, clip_idx=clip_idx, max_num_frames=max_num_frames,
                          n_threads=n_threads)
    finally:
        if h is not None:
            h.close()


def _read_clip(path, num_frames, sample, meta, h, deadline, timeout, *, start_s, end_s, size, rng, strict,
               backend, num_clips, clip_idx, max_num_frames, n_threads):
    from .sampling import sample_indices

    first, stop = _frame_range(meta, start_s, end_s, h)
    vlen = stop - first
    if strict and not sample.startswith("fps") and vlen < num_frames:
        raise MediaError(
            path, "too_few_frames",
            f"{num_frames} frames requested, {vlen} available in the range (strict=True)",
        )
    local = sample_indices(sample, num_frames, vlen, fps=meta.fps, rng=rng, num_clips=num_clips,
                           clip_idx=clip_idx, max_num_frames=max_num_frames)
    if not local:
        # only fps<X> can select nothing (a range shorter than half the output interval): an empty clip
        # would only fail later, far from its cause
        raise MediaError(
            path, "too_few_frames",
            f"policy {sample!r} selects no frame in a range of {vlen} frames at {meta.fps:.3f} fps",
        )
    indices = [first + int(i) for i in local]
    frames = _read_frames(path, indices, meta, size, deadline, timeout, backend, "auto", "BICUBIC", n_threads,
                          h)
    return frames, indices, meta


def sliding_windows(meta: VideoMetadata, window_s: float, stride_s: float) -> list[tuple[float, float]]:
    """Cover ``[0, duration]`` with windows of ``window_s`` seconds every ``stride_s`` seconds.

    Windows start at 0, stride, 2*stride, ... while they fit; if the last one ends before the video does,
    one more window is aligned to the end (``[duration - window_s, duration]``), so every window has the
    full length and the tail is covered. A video shorter than the window gives one window ``[0, duration]``.
    """
    if not window_s > 0:
        raise ConfigError("window_s", f"must be > 0, got {window_s}")
    if not stride_s > 0:
        raise ConfigError("stride_s", f"must be > 0, got {stride_s}")
    dur = float(meta.duration)
    if dur <= window_s:
        return [(0.0, dur)]
    out = []
    eps = 1e-9
    k = 0
    while True:
        s = k * stride_s
        if s + window_s > dur + eps:
            break
        out.append((round(s, 6), round(s + window_s, 6)))
        k += 1
    if out[-1][1] < dur - 1e-6:
        out.append((round(dur - window_s, 6), round(dur, 6)))
    return out

