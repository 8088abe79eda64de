"""Video metadata on PyAV: the :class:`VideoMetadata` of a file (frame count and timing right for every
container), the packet scan that finds keyframes and frame times (cached per file), decoder threading, the
reason codes of :class:`~internvideo2.errors.MediaError` and the deadline helpers the readers share.

Frame reading, clip sampling and windows live in :mod:`internvideo2.data.video` (which re-exports the
public names of this module)."""
from __future__ import annotations

import logging
import math
import os
import threading
import time
from collections import OrderedDict
from dataclasses import asdict, dataclass
from fractions import Fraction

import numpy as np

from ..errors import ConfigError, MediaError

log = logging.getLogger("internvideo2.data.video")

__all__ = ["VideoMetadata", "MAX_PIXELS", "REASONS", "probe_video", "has_decord", "decoder_threads"]

#: Default refusal threshold for declared frame size (width * height). 8192 x 8192: 8K video passes
#: (7680 x 4320 = 33 Mpx); a header claiming 16000 x 16000 (1 GB per RGB frame) does not.
MAX_PIXELS = 1 << 26

#: Reason codes used in ``MediaError.reason`` by this module.
REASONS = {
    "not_found": "the path does not exist",
    "not_a_file": "the path is a directory or special file",
    "unreadable": "the file cannot be read (permissions, I/O error)",
    "empty_file": "the file has zero bytes",
    "invalid_data": "FFmpeg cannot identify or parse the container (random bytes, truncated header/index)",
    "open_failed": "FFmpeg failed to open the file for another reason",
    "no_video_stream": "the container has no video stream (e.g. an audio file, whatever its extension)",
    "unsupported_codec": "no decoder for the video codec in this FFmpeg build",
    "bad_dimensions": "the declared width or height is zero or negative",
    "dimensions_too_large": "declared width*height exceeds max_pixels; refused before decoding",
    "no_frames": "the video stream holds no frames",
    "index_out_of_range": "a requested frame index is < 0 or >= the frame count",
    "too_few_frames": "fewer frames than requested while strict=True",
    "empty_range": "the requested time range holds no frame",
    "truncated": "decoding ended before a requested frame (file cut short, or header over-counts frames)",
    "decode_error": "the decoder failed on the data",
    "timeout": "the call ran past its deadline",
}

# Decoder threading: FFmpeg 'AUTO' = frame + slice threads; the thread count is chosen by
# ``decoder_threads`` (thread_count 0 = FFmpeg's default, one per core).
DECODE_THREAD_TYPE = "AUTO"
# swscale's own slice threads, per conversion. One: the readers parallelise across frames themselves (the
# converter pool), and slice threads created by swscale can deadlock a process forked from one that used
# them (seen: a DataLoader worker stuck in avpriv_slicethread_free -> pthread_cond_destroy). Same pixels.
SWS_THREADS = 1


def _usable_cpus() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def decoder_threads(threads: int | None = None) -> int:
    """FFmpeg decoder thread count for one decode: ``threads`` when given (0 = FFmpeg's default, one per
    core), else automatic: ``0`` in the main process, ``max(1, cores // num_workers)`` inside a torch
    DataLoader worker, so that W workers decoding at once do not each start one thread per core
    (W x cores threads oversubscribe the CPU and are slower than one thread each)."""
    if threads is not None:
        if isinstance(threads, bool) or not isinstance(threads, (int, np.integer)) or threads < 0:
            raise ConfigError("threads", f"must be an integer >= 0 (0 = FFmpeg default), got {threads!r}")
        return int(threads)
    try:
        from torch.utils.data import get_worker_info

        info = get_worker_info()
    except Exception:  # pragma: no cover - torch without the data package
        info = None
    if info is None:
        return 0
    return max(1, _usable_cpus() // max(1, int(info.num_workers)))


def _set_threads(stream, threads: int) -> None:
    """Apply the decoder threading before the codec opens (the first decode)."""
    stream.thread_type = DECODE_THREAD_TYPE
    stream.thread_count = int(threads)


# ----------------------------------------------------------------------------------------------------------
# metadata
# ----------------------------------------------------------------------------------------------------------
@dataclass
class VideoMetadata:
    """What :func:`probe_video` knows about a file.

    ``num_frames``: frames in presentation order; ``frame_count_source`` says where it came from:
    ``'stream'`` (the container's per-stream count, e.g. MP4 sample table), ``'packets'`` (video packets
    counted by demuxing, no decoding) or ``'decoded'`` (every frame decoded: exact, slow).
    ``duration`` is seconds of the video stream (the container duration when the stream has none; with
    ``'packets'``, checked against the packet timestamps). ``fps`` is the average frame rate (for VFR
    files ``num_frames / duration``).
    """

    path: str
    container: str
    video_codec: str
    width: int
    height: int
    fps: float
    num_frames: int
    duration: float
    has_audio: bool
    audio_codec: str | None
    audio_sample_rate: int | None
    audio_channels: int | None
    num_keyframes: int | None
    frame_count_source: str
    stream_index: int = 0

    def to_dict(self) -> dict:
        return asdict(self)


def has_decord() -> bool:
    """True when the optional ``decord`` package imports."""
    try:
        import decord  # noqa: F401
    except Exception:  # ImportError, or a broken native library
        return False
    return True


def _deadline(timeout: float | None) -> float:
    if timeout is None:
        return math.inf
    if not timeout > 0:
        raise ConfigError("timeout", f"must be > 0 seconds, got {timeout}")
    return time.monotonic() + float(timeout)


def _check_deadline(path: str, deadline: float, what: str) -> None:
    if time.monotonic() > deadline:
        raise MediaError(path, "timeout", f"ran past the time limit while {what}")


def _check_path(path: str) -> None:
    if not os.path.exists(path):
        raise MediaError(path, "not_found", "no such file")
    if not os.path.isfile(path):
        raise MediaError(path, "not_a_file", "not a regular file")
    try:
        size = os.path.getsize(path)
    except OSError as e:
        raise MediaError(path, "unreadable", str(e)) from None
    if size == 0:
        raise MediaError(path, "empty_file", "0 bytes")
    if not os.access(path, os.R_OK):
        raise MediaError(path, "unreadable", "permission denied")


def _open(path: str, timeout: float):
    """``av.open`` with typed errors. The caller closes the container."""
    import av

    _check_path(path)
    try:
        # timeout only matters for network inputs; local files never block on I/O
        return av.open(path, mode="r", timeout=(timeout, timeout), metadata_errors="ignore")
    except av.error.InvalidDataError as e:
        raise MediaError(path, "invalid_data", _av_msg(e)) from None
    except (av.error.PermissionError, PermissionError) as e:
        raise MediaError(path, "unreadable", _av_msg(e)) from None
    except (av.error.FileNotFoundError, FileNotFoundError) as e:
        raise MediaError(path, "not_found", _av_msg(e)) from None
    except av.error.ExitError as e:  # FFmpeg's interrupt callback: the open ran past its time limit
        raise MediaError(path, "timeout", f"opening took longer than {timeout} s ({_av_msg(e)})") from None
    except av.error.FFmpegError as e:
        raise MediaError(path, "open_failed", _av_msg(e)) from None
    except OSError as e:
        raise MediaError(path, "unreadable", str(e)) from None
    except (UnicodeDecodeError, ValueError) as e:  # e.g. undecodable container metadata
        raise MediaError(path, "invalid_data", str(e)) from None


def _av_msg(e: Exception) -> str:
    s = getattr(e, "strerror", None) or str(e)
    return str(s)


def _video_stream(container, path: str):
    """First real video stream (cover-art 'attached pictures' of audio files do not count)."""
    import av

    attached = int(av.stream.Disposition.attached_pic)
    for s in container.streams.video:
        if int(s.disposition) & attached:
            continue
        return s
    kinds = ", ".join(f"{s.type}({_codec_name(s)})" for s in container.streams) or "none"
    raise MediaError(path, "no_video_stream", f"streams: {kinds}")


def _codec_name(stream) -> str:
    try:
        return stream.codec_context.name or "unknown"
    except Exception:
        return "unknown"


def _rate(stream) -> float | None:
    for attr in ("average_rate", "guessed_rate", "base_rate"):
        try:
            r = getattr(stream, attr)
        except Exception:
            r = None
        if r:
            f = float(r)
            if 0 < f < 10000:
                return f
    return None


@dataclass
class _PacketScan:
    """Demux-only pass over the video stream: presentation timestamps and keyframes.

    ``pts``: sorted int64 array (stream time base) or None when some packet has no pts / pts repeat,
    ``key_idx``: sorted frame indices of keyframes (or None), ``count``: number of video packets.
    """

    count: int
    num_keyframes: int
    pts: np.ndarray | None
    key_idx: np.ndarray | None
    time_base: Fraction


_SCAN_CACHE: OrderedDict[tuple, _PacketScan] = OrderedDict()
_SCAN_LOCK = threading.Lock()
_SCAN_CACHE_SIZE = 256


def _file_key(path: str, stream_index: int) -> tuple:
    st = os.stat(path)
    return (os.path.realpath(path), st.st_size, st.st_mtime_ns, stream_index)


def _scan_packets(container, stream, path: str, deadline: float) -> _PacketScan:
    import av

    key = _file_key(path, stream.index)
    with _SCAN_LOCK:
        hit = _SCAN_CACHE.get(key)
        if hit is not None:
            _SCAN_CACHE.move_to_end(key)
            return hit
    pts: list[int] = []
    keys: list[int] = []
    n = 0
    n_key = 0
    ok = True
    try:
        for i, pkt in enumerate(container.demux(stream)):
            if pkt.size == 0:  # flush packet at EOF
                continue
            if i % 256 == 0:
                _check_deadline(path, deadline, "counting packets")
            n += 1
            if pkt.is_keyframe:
                n_key += 1
            if pkt.pts is None:
                ok = False
            else:
                pts.append(int(pkt.pts))
                if pkt.is_keyframe:
                    keys.append(int(pkt.pts))
    except av.error.FFmpegError as e:
        # a damaged tail: what was demuxed so far is what a decoder can reach
        log.warning("%s: demuxing stopped early after %d packets (%s)", path, n, _av_msg(e))
    arr = key_arr = None
    if ok and pts:
        arr = np.asarray(sorted(pts), dtype=np.int64)
        if np.any(np.diff(arr) <= 0):  # repeated pts: indices cannot be recovered from timestamps
            arr = None
        else:
            key_arr = np.searchsorted(arr, np.asarray(sorted(keys), dtype=np.int64)).astype(np.int64)
            if key_arr.size == 0 or key_arr[0] != 0:
                # the first frame must be decodable from a keyframe; treat index 0 as one
                key_arr = np.concatenate([[0], key_arr]).astype(np.int64)
    scan = _PacketScan(n, n_key, arr, key_arr, Fraction(stream.time_base) if stream.time_base else Fraction(1))
    with _SCAN_LOCK:
        _SCAN_CACHE[key] = scan
        while len(_SCAN_CACHE) > _SCAN_CACHE_SIZE:
            _SCAN_CACHE.popitem(last=False)
    return scan


class _Handle:
    """One open input container shared by the probe, the packet scan and the decode of one call: every
    ``av.open`` runs FFmpeg's stream analysis (about 10 ms on a 720p H.264 file with audio), which would
    otherwise be paid up to three times per clip. ``consumed``: packets were demuxed from it (a packet
    scan), so a decode must rewind to the first frame first."""

    __slots__ = ("c", "consumed")

    def __init__(self, container):
        self.c = container
        self.consumed = False

    def close(self) -> None:
        self.c.close()


def _cached_scan(path: str, stream_index: int) -> _PacketScan | None:
    try:
        key = _file_key(path, stream_index)
    except OSError as e:
        raise MediaError(path, "unreadable", str(e)) from None
    with _SCAN_LOCK:
        hit = _SCAN_CACHE.get(key)
        if hit is not None:
            _SCAN_CACHE.move_to_end(key)
    return hit


def _get_scan(path: str, stream_index: int, timeout: float, deadline: float,
              handle: _Handle | None = None) -> _PacketScan:
    """The packet table of a file: from the cache, else by demuxing ``handle`` (marked consumed) or a
    container opened for it."""
    hit = _cached_scan(path, stream_index)
    if hit is not None:
        return hit
    if handle is not None:
        handle.consumed = True
        return _scan_packets(handle.c, handle.c.streams[stream_index], path, deadline)
    c = _open(path, timeout)
    try:
        return _scan_packets(c, c.streams[stream_index], path, deadline)
    finally:
        c.close()


def probe_video(
    path,
    *,
    count_frames: bool = False,
    timeout: float = 30.0,
    max_pixels: int | None = MAX_PIXELS,
    scan_packets: bool = False,
) -> VideoMetadata:
    """Read a file's metadata (no frame decoding unless ``count_frames``).

    Frame count, by preference: ``count_frames=True`` decodes every frame (``'decoded'``);
    ``scan_packets=True`` or a stream without a stored count (WebM, many MKV/VFR files) demuxes the
    packets (``'packets'``, fast: no decoding); otherwise the stream's stored count (``'stream'``). A stream
    without a single demuxable packet raises ``no_frames`` (whatever duration its header declares).
    ``max_pixels`` (None = no limit) refuses absurd declared sizes with ``dimensions_too_large``.
    """
    path = os.fspath(path)
    deadline = _deadline(timeout)
    h = _Handle(_open(path, timeout))
    try:
        return _probe(h, path, deadline, count_frames=count_frames, max_pixels=max_pixels,
                      scan_packets=scan_packets)
    finally:
        h.close()


def _probe(h: _Handle, path: str, deadline: float, *, count_frames: bool = False,
           max_pixels: int | None = MAX_PIXELS, scan_packets: bool = False) -> VideoMetadata:
    """:func:`probe_video` on an open container (see :class:`_Handle`)."""
    import av

    c = h.c
    vs = _video_stream(c, path)
    try:
        cc = vs.codec_context
        codec = cc.name
    except Exception as e:  # no decoder compiled in
        raise MediaError(path, "unsupported_codec", str(e)) from None
    if not codec:
        raise MediaError(path, "unsupported_codec", "unknown video codec")
    width, height = int(cc.width or 0), int(cc.height or 0)
    if width <= 0 or height <= 0:
        raise MediaError(path, "bad_dimensions", f"declared {width}x{height}")
    if max_pixels is not None and width * height > max_pixels:
        raise MediaError(
            path, "dimensions_too_large",
            f"declared {width}x{height} = {width * height} pixels > max_pixels={max_pixels}",
        )
    fmt = c.format.name if c.format is not None else "unknown"
    tb = Fraction(vs.time_base) if vs.time_base else None
    fps = _rate(vs)
    duration = None
    if vs.duration and tb is not None:
        duration = float(vs.duration * tb)
    elif c.duration:
        duration = float(c.duration) / av.time_base

    num_keyframes: int | None = None
    if count_frames:
        h.consumed = True
        num_frames, num_keyframes = _count_decoded(c, vs, path, deadline)
        source = "decoded"
    elif vs.frames and vs.frames > 0 and not scan_packets:
        num_frames, source = int(vs.frames), "stream"
    else:
        scan = _get_scan(path, vs.index, 0.0, deadline, h)
        if scan.count == 0:
            # a header (e.g. WebM/MKV cut after its first kilobytes) may still declare a duration, but
            # no frame can be reached: an estimate from that duration would promise frames that are
            # not there
            declared = f"; the header declares {duration:.3f} s" if duration else ""
            raise MediaError(path, "no_frames", f"no video packet could be demuxed{declared}")
        num_frames, source, num_keyframes = scan.count, "packets", scan.num_keyframes
        duration, fps = _packet_timing(scan, duration, fps)
    if num_frames <= 0:
        raise MediaError(path, "no_frames", "the video stream holds no frames")
    if duration is None or duration <= 0:
        duration = num_frames / fps if fps else float(num_frames)
    if not fps:
        fps = num_frames / duration if duration > 0 else 1.0

    aud = next(iter(c.streams.audio), None)
    a_codec = a_rate = a_ch = None
    if aud is not None:
        a_codec = _codec_name(aud)
        ctx = aud.codec_context  # None for a stream whose codec is unknown (a damaged header)
        a_rate = int(getattr(ctx, "sample_rate", 0) or 0) or None
        try:
            a_ch = int(ctx.layout.nb_channels) or None
        except Exception:
            a_ch = getattr(ctx, "channels", None)
    return VideoMetadata(
        path=path,
        container=fmt,
        video_codec=codec,
        width=width,
        height=height,
        fps=float(fps),
        num_frames=int(num_frames),
        duration=float(duration),
        has_audio=aud is not None,
        audio_codec=a_codec,
        audio_sample_rate=a_rate,
        audio_channels=a_ch,
        num_keyframes=num_keyframes,
        frame_count_source=source,
        stream_index=int(vs.index),
    )


def _packet_timing(scan: _PacketScan, duration: float | None,
                   fps: float | None) -> tuple[float | None, float | None]:
    """Duration and average rate of the video stream from its packet timestamps.

    The header's values are kept when the packets agree with them. A declared duration is replaced when
    it does not fit the packets' span (a file cut short: MKV/WebM keep the full duration in their header;
    or a container duration that covers a longer audio track). The declared rate is replaced by
    ``count / duration`` when they differ by more than 1 % (VFR Matroska reports the rate of its first
    frames, not the average)."""
    if scan.pts is None or scan.count < 2:
        return duration, fps
    span = float((int(scan.pts[-1]) - int(scan.pts[0])) * scan.time_base)
    if not span > 0:
        return duration, fps
    step = span / (scan.count - 1)  # mean frame interval
    if fps and abs(1.0 / fps - step) <= 0.01 * step:
        step = 1.0 / fps  # CFR: the exact declared interval
    # the last frame lasts about one interval: a duration within [span, span + 2 intervals] fits
    if duration is None or not (span - 1e-6 <= duration <= span + 2.0 * step + 1e-6):
        duration = span + step
    avg = scan.count / duration
    if not fps or abs(avg - fps) > 0.01 * fps:
        fps = avg
    return duration, fps


def _count_decoded(container, stream, path: str, deadline: float) -> tuple[int, int]:
    import av

    _set_threads(stream, decoder_threads())
    n = k = 0
    try:
        for frame in container.decode(stream):
            n += 1
            k += bool(frame.key_frame)
            if n % 32 == 0:
                _check_deadline(path, deadline, "counting frames")
    except av.error.FFmpegError as e:
        if n == 0:
            raise MediaError(path, "decode_error", _av_msg(e)) from None
        log.warning("%s: decoding stopped after %d frames (%s)", path, n, _av_msg(e))
    return n, k


def _check_meta(path: str, meta: VideoMetadata, max_pixels: int | None) -> None:
    if max_pixels is not None and meta.width * meta.height > max_pixels:
        raise MediaError(
            path, "dimensions_too_large",
            f"declared {meta.width}x{meta.height} = {meta.width * meta.height} pixels > max_pixels={max_pixels}",
        )
