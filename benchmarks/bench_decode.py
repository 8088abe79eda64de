"""Decode throughput: clips per second for sampling frames at 224x224 from each real asset (issue 3 target).

For every video of ``../shared/assets/video`` and every sampling policy, the time from a file path to
``uint8 [T, 224, 224, 3]`` frames, with each method:

- ``naive``: decode every frame and convert every frame to RGB at 224, then keep the sampled ones (the
  baseline a first implementation would write);
- ``sequential``: our reader with ``strategy='sequential'``: one forward pass, only the sampled frames
  converted to RGB, resized by swscale during the conversion;
- ``seek``: ``strategy='seek'``: seek to the keyframe before each target whenever one lies in between;
- ``auto``: the default cost model, default BICUBIC resize: what ``read_clip`` and the datasets do;
- ``auto-bilinear``: the same with ``interpolation='BILINEAR'``, the swscale filter decord resizes with
  (its frames come within 0.1-0.2 grey levels of decord's): the like-for-like comparison with decord;
- ``decord``: the official reader, when the optional package is installed: ``VideoReader(width=224,
  height=224)``, its own ``len``/``get_avg_fps`` for the sampler, ``get_batch``.

Every PyAV method does what ``read_clip`` does (one container for probe, time range and decode) and
starts with an empty packet-scan cache: the cost of the first read of a file in an epoch. Policies:
``middle`` 8 (test), ``rand`` 8 (train; the seed is the repeat number), ``fps1`` (one frame per second,
centred: the count follows the duration), ``windows`` (sliding windows of ``--window`` s every
``--stride`` s, ``middle`` 8 in each, all windows of a file in one call, as ``internvideo2 embed``
does). A cell is the median of ``--repeats`` runs; the methods take turns inside each repeat so that a
load change on a shared machine hits all of them alike. Process CPU time (all threads) is stored next
to the wall time. Before timing, the PyAV methods are checked to return identical frames.

    .venv/bin/python benchmarks/bench_decode.py                       # writes runs/bench/decode.json
    .venv/bin/python benchmarks/bench_decode.py --repeats 1 --policies middle --out /tmp/decode.json
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from internvideo2.data import video as V  # noqa: E402  (internals: one container per call, as read_clip)
from internvideo2.data import video_meta as VM  # noqa: E402
from internvideo2.data.sampling import sample_indices  # noqa: E402
from internvideo2.data.video import has_decord, probe_video, sliding_windows  # noqa: E402

POLICIES = ("middle", "rand", "fps1", "windows")
METHODS = ("naive", "sequential", "seek", "auto", "auto-bilinear", "decord")
TIMEOUT = 120.0


def window_indices(meta, times_range, window: float, stride: float, frames: int) -> list[int]:
    """``middle`` ``frames`` in each sliding window; ``times_range(s, e) -> (first, stop)``."""
    out = []
    for s, e in sliding_windows(meta, window, stride):
        first, stop = times_range(s, e)
        out += [first + i for i in sample_indices("middle", frames, stop - first)]
    return out


def pyav_clip(path: str, policy: str, seed: int, args, strategy: str = "auto",
              interpolation: str = "BICUBIC") -> np.ndarray:
    """``read_clip`` with a choice of strategy and interpolation: one container for everything."""
    VM._SCAN_CACHE.clear()  # first read of the file in an epoch: no cached packet table
    deadline = V._deadline(TIMEOUT)
    h = V._Handle(V._open(path, TIMEOUT))
    try:
        meta = V._probe(h, path, deadline)
        if policy == "windows":
            idx = window_indices(meta, lambda s, e: V._frame_range(meta, s, e, h), args.window, args.stride,
                                 args.frames)
        else:
            idx = sample_indices(policy, args.frames, meta.num_frames, fps=meta.fps, rng=random.Random(seed))
        out = V._read_frames(path, idx, meta, (args.size, args.size), deadline, TIMEOUT, "pyav", strategy,
                             interpolation, V.decoder_threads(args.threads), h)
        return out.numpy()
    finally:
        h.close()


def naive(path: str, policy: str, seed: int, args) -> np.ndarray:
    import av

    meta = probe_video(path)
    if policy == "windows":
        idx = window_indices(meta, lambda s, e: V.frame_range(meta, s, e), args.window, args.stride,
                             args.frames)
    else:
        idx = sample_indices(policy, args.frames, meta.num_frames, fps=meta.fps, rng=random.Random(seed))
    rgb = []
    with av.open(path) as c:
        vs = c.streams.video[0]
        vs.thread_type = "AUTO"
        vs.thread_count = V.decoder_threads(args.threads)
        for f in c.decode(vs):
            rgb.append(f.to_ndarray(format="rgb24", width=args.size, height=args.size,
                                    interpolation="BICUBIC"))
    return np.stack([rgb[i] for i in idx])


def with_decord(path: str, policy: str, seed: int, args) -> np.ndarray:
    import decord

    vr = decord.VideoReader(path, ctx=decord.cpu(0), width=args.size, height=args.size,
                            num_threads=V.decoder_threads(args.threads))
    n, fps = len(vr), float(vr.get_avg_fps())
    if policy == "windows":  # from decord's own numbers: frame i at i / fps (the assets are CFR)
        meta = V.VideoMetadata(path, "", "", args.size, args.size, fps, n, n / fps, False, None, None, None,
                               None, "decord")
        times = np.arange(n) / fps

        def rng_(s, e):
            return int(np.searchsorted(times, s - 1e-6)), min(n, int(np.searchsorted(times, e - 1e-6)))

        idx = window_indices(meta, rng_, args.window, args.stride, args.frames)
    else:
        idx = sample_indices(policy, args.frames, n, fps=fps, rng=random.Random(seed))
    return vr.get_batch(idx).asnumpy()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--assets", default=str(ROOT.parent / "shared" / "assets" / "video"),
                    help="folder of video files (default ../shared/assets/video)")
    ap.add_argument("--out", default=str(ROOT / "runs" / "bench" / "decode.json"), help="JSON output path")
    ap.add_argument("--repeats", type=int, default=5, help="timed runs per cell; the median is reported")
    ap.add_argument("--size", type=int, default=224, help="output side (frames squashed to size x size)")
    ap.add_argument("--frames", type=int, default=8, help="frames per clip / per window")
    ap.add_argument("--window", type=float, default=4.0, help="window length in s (windows policy)")
    ap.add_argument("--stride", type=float, default=2.0, help="window stride in s (windows policy)")
    ap.add_argument("--threads", type=int, default=None,
                    help="decoder threads for every method (default: the library's choice; 0 = one per core)")
    ap.add_argument("--policies", nargs="+", default=list(POLICIES), choices=POLICIES)
    ap.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    ap.add_argument("--note", default="", help="free text stored in the JSON (e.g. the machine's load)")
    args = ap.parse_args(argv)

    exts = (".mp4", ".webm", ".mkv", ".avi", ".mov")
    files = sorted(p for p in Path(args.assets).glob("*") if p.suffix in exts)
    if not files:
        print(f"no video files in {args.assets} (the real assets live in ../shared/assets)", file=sys.stderr)
        return 2
    methods = [m for m in args.methods if m != "decord" or has_decord()]
    if "decord" in args.methods and "decord" not in methods:
        print("decord is not installed: its column is left out", file=sys.stderr)
    fns = {
        "naive": lambda p, pol, r: naive(p, pol, r, args),
        "sequential": lambda p, pol, r: pyav_clip(p, pol, r, args, "sequential"),
        "seek": lambda p, pol, r: pyav_clip(p, pol, r, args, "seek"),
        "auto": lambda p, pol, r: pyav_clip(p, pol, r, args, "auto"),
        "auto-bilinear": lambda p, pol, r: pyav_clip(p, pol, r, args, "auto", "BILINEAR"),
        "decord": lambda p, pol, r: with_decord(p, pol, r, args),
    }

    results = []
    for f in files:
        path = str(f)
        meta = probe_video(path)
        for pol in args.policies:
            ref = fns["sequential"](path, pol, 0)  # also warms the OS file cache
            for m in ("seek", "auto", "naive"):
                if m in methods and not np.array_equal(fns[m](path, pol, 0), ref):
                    print(f"MISMATCH: {f.name} {pol}: {m} differs from sequential", file=sys.stderr)
                    return 1
            if "decord" in methods:
                fns["decord"](path, pol, 0)  # warm-up
            wall = {m: [] for m in methods}
            cpu = {m: [] for m in methods}
            nfr = {}
            for r in range(args.repeats):
                for m in methods:
                    c0, t0 = time.process_time(), time.perf_counter()
                    nfr[m] = len(fns[m](path, pol, r))
                    wall[m].append(time.perf_counter() - t0)
                    cpu[m].append(time.process_time() - c0)
            for m in methods:
                med, cmed = statistics.median(wall[m]), statistics.median(cpu[m])
                results.append({"asset": f.name, "policy": pol, "method": m, "frames": nfr[m],
                                "video_frames": meta.num_frames, "seconds_median": round(med, 5),
                                "cpu_seconds_median": round(cmed, 5),
                                "seconds": [round(x, 5) for x in wall[m]],
                                "clips_per_s": round(1.0 / med, 3)})
                print(f"{f.name:28s} {pol:8s} {m:13s} {nfr[m]:4d} frames {med * 1000:8.1f} ms wall "
                      f"{cmed * 1000:8.1f} ms cpu {1 / med:7.2f} clips/s", file=sys.stderr, flush=True)

    def cell(a, p, m, key="clips_per_s"):
        return next((r[key] for r in results if (r["asset"], r["policy"], r["method"]) == (a, p, m)), None)

    summary = []
    head = f"{'asset':28s} {'policy':8s} " + " ".join(f"{m:>13s}" for m in methods) + f" {'auto/naive':>10s}"
    if "decord" in methods:
        head += f" {'auto/decord':>11s} {'bilin/decord':>12s}"
    print("clips/s (median wall time)")
    print(head)
    print("-" * len(head))
    for f in files:
        for pol in args.policies:
            row = {m: cell(f.name, pol, m) for m in methods}
            s = {"asset": f.name, "policy": pol, **{f"{m}_clips_per_s": row[m] for m in methods}}
            line = f"{f.name:28s} {pol:8s} " + " ".join(f"{row[m]:13.2f}" for m in methods)
            if row.get("auto") and row.get("naive"):
                s["auto_over_naive"] = round(row["auto"] / row["naive"], 3)
                line += f" {s['auto_over_naive']:10.2f}"
            if row.get("decord"):
                for key, m in (("auto_over_decord", "auto"), ("auto_bilinear_over_decord", "auto-bilinear")):
                    if row.get(m):
                        s[key] = round(row[m] / row["decord"], 3)
                # and on CPU time (less sensitive to other processes on a shared machine)
                cd = cell(f.name, pol, "decord", "cpu_seconds_median")
                for key, m in (("auto_over_decord_cpu", "auto"),
                               ("auto_bilinear_over_decord_cpu", "auto-bilinear")):
                    cm = cell(f.name, pol, m, "cpu_seconds_median")
                    if cm and cd:
                        s[key] = round(cd / cm, 3)
                nan = float("nan")
                line += f" {s.get('auto_over_decord', nan):11.2f}"
                line += f" {s.get('auto_bilinear_over_decord', nan):12.2f}"
            summary.append(s)
            print(line)

    import av
    import torch

    rec = {
        "benchmark": "decode",
        "units": "clips_per_s = 1 / median wall seconds from a file path to uint8 [T, size, size, 3] frames; "
                 "*_over_decord_cpu = decord CPU seconds / ours",
        "settings": {k: v for k, v in vars(args).items() if k not in ("assets", "out")},
        "machine": {"platform": platform.platform(), "python": platform.python_version(),
                    "cpus": os.cpu_count(),
                    "usable_cpus": V._usable_cpus(), "load_avg_at_end": list(os.getloadavg()),
                    "torch": torch.__version__, "av": av.__version__, "decord": _decord_version()},
        "note": args.note,
        "summary": summary,
        "results": results,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(rec, indent=1))
    print(f"wrote {out}")
    return 0


def _decord_version():
    if not has_decord():
        return None
    import decord

    return getattr(decord, "__version__", "unknown")


if __name__ == "__main__":
    sys.exit(main())
