"""``internvideo2 probe FILE... [--frames N --sample POLICY]``: media metadata as JSON lines.

One line per file: the :class:`~internvideo2.data.video.VideoMetadata` fields (container, codecs, width,
height, fps, num_frames and where that count came from, duration, audio) and, with ``--frames``, the
sampled frame indices and their timestamps (``--decode`` also decodes them, to prove they are readable).
A file that cannot be used gives ``{"path", "error": reason, "detail"}`` instead; the exit code is 1 when
any file failed. A user's first tool on a strange file.
"""
from __future__ import annotations

import argparse
import json
import random
import sys
import time

from ..errors import ConfigError, MediaError
from .video import MAX_PIXELS, frame_range, frame_timestamps, probe_video, read_frames

_COUNT = {"header": dict(), "packets": dict(scan_packets=True), "decode": dict(count_frames=True)}


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("files", nargs="+", metavar="FILE", help="video (or any media) files")
    parser.add_argument("--frames", type=int, default=None, metavar="N",
                        help="also print the N frame indices (and timestamps) the policy samples (N >= 1)")
    parser.add_argument("--sample", default="middle", metavar="POLICY",
                        help="sampling policy: rand, middle (default), fps<X>, uniform, sparse_train, "
                             "sparse_test, ssv2_test, tsn")
    parser.add_argument("--seed", type=int, default=0, help="seed for random policies (default 0)")
    parser.add_argument("--num-clips", type=int, default=1, help="temporal views for sparse_test/ssv2_test")
    parser.add_argument("--clip-idx", type=int, default=0, help="which temporal view (0-based)")
    parser.add_argument("--start", type=float, default=None, metavar="S", help="sample from S seconds")
    parser.add_argument("--end", type=float, default=None, metavar="S", help="sample up to S seconds")
    parser.add_argument("--count", choices=sorted(_COUNT), default="packets",
                        help="frame count: 'header' (stored count when present), 'packets' (demux, no "
                             "decoding; also counts keyframes; default), 'decode' (decode everything)")
    parser.add_argument("--decode", action="store_true",
                        help="decode the sampled frames too (reports an error if they are unreadable)")
    parser.add_argument("--max-pixels", type=int, default=MAX_PIXELS,
                        help=f"refuse declared frame sizes above this many pixels (default {MAX_PIXELS}; "
                             "0 = no limit)")
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds per file (default 30)")


def _probe_one(path: str, args: argparse.Namespace) -> dict:
    max_px = args.max_pixels if args.max_pixels and args.max_pixels > 0 else None
    meta = probe_video(path, timeout=args.timeout, max_pixels=max_px, **_COUNT[args.count])
    out = meta.to_dict()
    if args.frames is not None:
        from .sampling import sample_indices

        first, stop = frame_range(meta, args.start, args.end)
        local = sample_indices(args.sample, args.frames, stop - first, fps=meta.fps,
                               rng=random.Random(args.seed), num_clips=args.num_clips, clip_idx=args.clip_idx)
        idx = [first + i for i in local]
        out["sample"] = args.sample
        out["indices"] = idx
        out["timestamps"] = [round(t, 6) for t in frame_timestamps(meta, idx)]
        if args.decode:
            t0 = time.perf_counter()
            frames = read_frames(path, idx, meta=meta, timeout=args.timeout, max_pixels=max_px)
            out["decoded"] = list(frames.shape)
            out["decode_s"] = round(time.perf_counter() - t0, 4)
    return out


def run(args: argparse.Namespace) -> int:
    if args.frames is not None and args.frames < 1:
        raise ConfigError("frames", f"must be >= 1, got {args.frames}")
    if args.decode and args.frames is None:
        raise ConfigError("decode", "needs --frames N (the frames to decode)")
    if not args.timeout > 0:
        raise ConfigError("timeout", f"must be > 0 seconds, got {args.timeout}")
    failed = 0
    for path in args.files:
        try:  # a ConfigError (a bad option, not a bad file) propagates: the CLI exits 2 at once
            rec = _probe_one(path, args)
        except MediaError as e:
            failed += 1
            rec = {"path": e.path, "error": e.reason, "detail": e.detail}
        print(json.dumps(rec), flush=True)
    if failed:
        print(f"internvideo2 probe: error: {failed} of {len(args.files)} file(s) could not be used (their JSON "
              "lines say why)", file=sys.stderr, flush=True)
    return 1 if failed else 0
