"""Shot-boundary detection: cut a video into visually consistent clips (the paper's "semantic
segmentation" of long videos before captioning), and ``internvideo2 segment FILE...``.

Method (our own, content-difference with an adaptive threshold):

1. Decode every ``step``-th frame once, converted straight to a small ``analysis_size`` image by swscale
   (cheap: no full-size RGB frame is ever built).
2. For each analysed frame ``i`` the change score against the previous analysed frame is
   ``0.5 * hsv_hist_distance + 0.5 * mean_abs_luma_diff``, both in [0, 1]; the histogram term is
   ``1 - intersection`` of joint-normalised H (16 bins, weighted by saturation), S (8) and V (8)
   histograms, so it reacts to a change of content and lighting but little to motion; the pixel term
   catches cuts between shots with similar colours.
3. Frame ``i`` starts a new shot when its score is at least ``min_score`` AND at least ``ratio`` times
   the mean score of the ``window`` analysed frames on each side (excluding ``i`` itself): a single spike
   stands out, fast continuous motion (high scores all around) does not. Cuts closer than
   ``min_shot_s`` to the previous one are dropped (the stronger survives).

Shots use half-open frame ranges: ``[start_frame, end_frame)``; ``start_s`` is the start frame's
timestamp, ``end_s`` the timestamp of ``end_frame`` (the video duration for the last shot).
Gradual transitions (long dissolves, fades) are not modelled: a dissolve is found only when some step
of it is abrupt enough.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from dataclasses import asdict, dataclass

import numpy as np

from ..errors import ConfigError, MediaError
from .video import (
    MAX_PIXELS,
    SWS_THREADS,
    VideoMetadata,
    _av_msg,
    _check_deadline,
    _deadline,
    _frame_times,
    _open,
    _set_threads,
    decoder_threads,
    probe_video,
)

log = logging.getLogger("internvideo2.data.segment")

__all__ = ["Shot", "frame_change_scores", "detect_shots", "configure_parser", "run"]


@dataclass
class Shot:
    """One shot: frames ``[start_frame, end_frame)`` and their time span in seconds."""

    start_frame: int
    end_frame: int
    start_s: float
    end_s: float

    @property
    def num_frames(self) -> int:
        return self.end_frame - self.start_frame

    def to_dict(self) -> dict:
        return asdict(self)


def _hsv_hist(rgb: np.ndarray) -> np.ndarray:
    """Normalised concatenated H/S/V histogram of an ``uint8 [h, w, 3]`` RGB image (sums to 3)."""
    x = rgb.reshape(-1, 3).astype(np.float32) / 255.0
    mx = x.max(axis=1)
    mn = x.min(axis=1)
    d = mx - mn
    s = np.where(mx > 0, d / np.maximum(mx, 1e-6), 0.0)
    r, g, b = x[:, 0], x[:, 1], x[:, 2]
    dd = np.maximum(d, 1e-6)
    h = np.where(mx == r, (g - b) / dd % 6.0, np.where(mx == g, (b - r) / dd + 2.0, (r - g) / dd + 4.0)) / 6.0
    h = np.where(d > 0, h, 0.0)
    # hue weighted by saturation: grey pixels have no meaningful hue
    hh = np.histogram(h, bins=16, range=(0.0, 1.0), weights=s)[0]
    hh = hh / max(hh.sum(), 1e-6) if hh.sum() > 1e-3 else np.zeros(16)
    sh = np.histogram(s, bins=8, range=(0.0, 1.0))[0] / len(s)
    vh = np.histogram(mx, bins=8, range=(0.0, 1.0))[0] / len(s)
    return np.concatenate([hh, sh, vh]).astype(np.float32)


def _luma(rgb: np.ndarray) -> np.ndarray:
    x = rgb.astype(np.float32)
    return (0.299 * x[..., 0] + 0.587 * x[..., 1] + 0.114 * x[..., 2]) / 255.0


def frame_change_scores(path, *, analysis_size: tuple[int, int] = (72, 128), step: int = 1,
                        timeout: float = 300.0, meta: VideoMetadata | None = None,
                        max_pixels: int | None = MAX_PIXELS) -> tuple[np.ndarray, np.ndarray]:
    """Decode every ``step``-th frame at ``analysis_size=(h, w)`` and score the change to the previous one.

    Returns ``(frame_indices int64 [N], scores float32 [N])``; ``scores[0] = 0``.
    """
    idx, scores, _n = _scores(path, analysis_size, step, timeout, meta, max_pixels)
    return idx, scores


def _scores(path, analysis_size, step, timeout, meta, max_pixels):
    import av

    path = os.fspath(path)
    deadline = _deadline(timeout)
    if step < 1:
        raise ConfigError("step", f"must be >= 1, got {step}")
    if meta is None:
        meta = probe_video(path, timeout=timeout, max_pixels=max_pixels)
    h, w = int(analysis_size[0]), int(analysis_size[1])
    idx: list[int] = []
    scores: list[float] = []
    n_decoded = 0
    prev_hist = prev_luma = None
    c = _open(path, timeout)
    try:
        vs = c.streams[meta.stream_index]
        _set_threads(vs, decoder_threads())
        for i, frame in enumerate(c.decode(vs)):
            n_decoded = i + 1
            if i % 16 == 0:
                _check_deadline(path, deadline, "scoring frames")
            if i % step:
                continue
            rgb = frame.to_ndarray(format="rgb24", width=w, height=h, interpolation="AREA", threads=SWS_THREADS)
            hist, luma = _hsv_hist(rgb), _luma(rgb)
            if prev_hist is None:
                sc = 0.0
            else:
                hist_d = 1.0 - float(np.minimum(hist, prev_hist).sum()) / 3.0
                pix_d = float(np.abs(luma - prev_luma).mean())
                sc = 0.5 * hist_d + 0.5 * pix_d
            idx.append(i)
            scores.append(sc)
            prev_hist, prev_luma = hist, luma
    except av.error.FFmpegError as e:
        raise MediaError(path, "decode_error", _av_msg(e)) from None
    finally:
        c.close()
    if not idx:
        raise MediaError(path, "no_frames", "no frame could be decoded")
    return np.asarray(idx, dtype=np.int64), np.asarray(scores, dtype=np.float32), n_decoded


def _pick_cuts(scores: np.ndarray, ratio: float, min_score: float, window: int, min_gap: int) -> list[int]:
    """Positions (into ``scores``) that start a new shot."""
    n = len(scores)
    cand = []
    for i in range(1, n):
        s = float(scores[i])
        if s < min_score:
            continue
        lo, hi = max(1, i - window), min(n, i + window + 1)
        nb = np.concatenate([scores[lo:i], scores[i + 1:hi]])
        base = float(nb.mean()) if nb.size else 0.0
        if s >= ratio * max(base, 1e-3):
            cand.append(i)
    # enforce the minimum shot length: keep the strongest of candidates closer than min_gap, and never
    # cut closer than min_gap to the start
    cuts: list[int] = []
    for i in sorted(cand, key=lambda j: -float(scores[j])):
        if i < min_gap or any(abs(i - j) < min_gap for j in cuts):
            continue
        cuts.append(i)
    return sorted(cuts)


def detect_shots(path, *, ratio: float = 3.0, min_score: float = 0.12, window: int = 8,
                 min_shot_s: float = 0.5, step: int = 1, analysis_size: tuple[int, int] = (72, 128),
                 timeout: float = 300.0, meta: VideoMetadata | None = None,
                 max_pixels: int | None = MAX_PIXELS) -> list[Shot]:
    """Split a video into shots. Returns at least one :class:`Shot` covering the whole video.

    ``ratio``/``min_score``/``window``: the adaptive threshold (module doc); ``min_shot_s``: shortest
    shot kept; ``step``: analyse every ``step``-th frame (faster on long videos; cuts are then placed
    within ``step`` frames).
    """
    path = os.fspath(path)
    if ratio <= 1.0:
        raise ConfigError("ratio", f"must be > 1, got {ratio}")
    if window < 1:
        raise ConfigError("window", f"must be >= 1, got {window}")
    if meta is None:
        meta = probe_video(path, timeout=timeout, max_pixels=max_pixels)
    idx, scores, n_total = _scores(path, analysis_size, step, timeout, meta, max_pixels)
    min_gap = max(1, int(round(min_shot_s * meta.fps / step)))
    cut_pos = _pick_cuts(scores, ratio, min_score, window, min_gap)
    if n_total == meta.num_frames:
        times = _frame_times(meta)
    else:
        log.warning("%s: decoded %d frames, metadata says %d", path, n_total, meta.num_frames)
        times = np.arange(n_total) / meta.fps
    if n_total == meta.num_frames:
        last_end = float(max(meta.duration, times[-1]))
    else:  # a truncated file: the video ends with its last decodable frame, not at the header's duration
        last_end = float(times[n_total - 1]) + 1.0 / meta.fps
    bounds = [0] + [int(idx[p]) for p in cut_pos] + [n_total]
    shots = []
    for a, b in zip(bounds[:-1], bounds[1:]):
        end_s = float(times[b]) if b < n_total else last_end
        shots.append(Shot(a, b, round(float(times[a]), 6), round(end_s, 6)))
    return shots


# ----------------------------------------------------------------------------------------------------------
# CLI
# ----------------------------------------------------------------------------------------------------------
def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("files", nargs="+", metavar="FILE", help="video files")
    parser.add_argument("--ratio", type=float, default=3.0,
                        help="a cut scores at least RATIO x the mean of its neighbours (default 3)")
    parser.add_argument("--min-score", type=float, default=0.12, help="absolute score floor, 0..1 (default 0.12)")
    parser.add_argument("--window", type=int, default=8, help="neighbours on each side (default 8)")
    parser.add_argument("--min-shot", type=float, default=0.5, metavar="S", help="shortest shot in s (default 0.5)")
    parser.add_argument("--step", type=int, default=1, help="analyse every STEP-th frame (default 1)")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds per file (default 600)")


def run(args: argparse.Namespace) -> int:
    failed = 0
    for path in args.files:
        t0 = time.perf_counter()
        try:
            shots = detect_shots(path, ratio=args.ratio, min_score=args.min_score, window=args.window,
                                 min_shot_s=args.min_shot, step=args.step, timeout=args.timeout)
        except MediaError as e:  # a ConfigError (a bad option) propagates: the CLI exits 2 at once
            failed += 1
            print(json.dumps({"path": e.path, "error": e.reason, "detail": e.detail}), flush=True)
            continue
        log.info("%s: %d shots in %.2f s", path, len(shots), time.perf_counter() - t0)
        for k, s in enumerate(shots):
            print(json.dumps({"path": path, "shot": k, **s.to_dict()}), flush=True)
    if failed:
        print(f"internvideo2 segment: error: {failed} of {len(args.files)} file(s) could not be used (their JSON "
              "lines say why)", file=sys.stderr, flush=True)
    return 1 if failed else 0
