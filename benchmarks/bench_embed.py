"""Feature-extraction throughput: does ``embed`` overlap decoding with compute? (issue 7 target)

In one process and one run, on the same generated folder of clips, with the same batch size, workers
and model threads, three throughputs (clips per second):

- ``decode``: the embed DataLoader alone (workers decode, sample, transform and batch; no model);
- ``model``: the model alone on the batches the decode pass produced, already in memory;
- ``pipeline``: ``embed_videos`` end to end (DataLoader + model + chunk commits + final files), the whole
  call timed.

``ratio = pipeline / min(decode, model)``; the target is >= 0.8. Also reported: ``serial`` (the same
pipeline with ``workers=0``: decoding and the model take turns in one process), the no-overlap reference
``1 / (1/decode + 1/model)``.

The default model is sized so that model and decode cost about the same per clip on the 2-core CPU
machine (the case where overlap matters most). With ``--workers 1 --threads 1`` (default on 2 cores)
decoding has one core and the model the other: each single-stage measurement uses the same budget it
gets inside the pipeline.

    .venv/bin/python benchmarks/bench_embed.py                    # writes runs/bench/embed.json
    .venv/bin/python benchmarks/bench_embed.py --clips 50 --repeats 1    # quick look
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

import internvideo2  # noqa: E402
from internvideo2.data.synth import SynthConfig, generate_world  # noqa: E402
from internvideo2.embed import EmbedSettings, embed_videos, find_videos  # noqa: E402

# the pieces of the pipeline, timed each alone
from internvideo2.embed.encoder import VideoEncoder  # noqa: E402
from internvideo2.embed.planning import make_groups  # noqa: E402
from internvideo2.embed.stream import PacketStream, make_loader  # noqa: E402


def make_clips(folder: Path, n: int, frames: int, size: int) -> list[str]:
    vids = folder / "videos" / "train"
    have = sorted(vids.glob("*.mp4")) if vids.is_dir() else []
    if len(have) != n:
        shutil.rmtree(folder, ignore_errors=True)
        generate_world(folder, n, seed=0, cfg=SynthConfig(num_frames=frames, size=size, audio=False),
                       progress=False, workers=1)
    return find_videos([vids])


def decode_only(videos, settings, spec, workers, timeout=60.0):
    """Iterate the embed DataLoader without a model; returns (seconds, items, batches kept in memory)."""
    t0 = time.perf_counter()
    stream = PacketStream(make_groups(list(range(len(videos))), videos, 0, settings.batch_size), settings, spec,
                          timeout)
    batches, n = [], 0
    for pk in make_loader(stream, workers):
        if pk["items"]:
            batches.append(pk["video"].clone())  # out of the worker's shared memory
            n += len(pk["items"])
    return time.perf_counter() - t0, n, batches


def model_only(runner, batches):
    runner(batches[0])  # warm-up (allocator, kernels)
    t0 = time.perf_counter()
    n = 0
    for x in batches:
        emb, _ = runner(x)
        n += emb.shape[0]
    return time.perf_counter() - t0, n


def pipeline(videos, model, args, workers):
    out = Path(tempfile.mkdtemp(prefix="bench-embed-"))
    try:
        t0 = time.perf_counter()
        res = embed_videos(videos, model, out_dir=out / "o", frames=args.frames, batch_size=args.batch,
                           chunk_size=args.chunk, workers=workers, threads=args.threads, progress=False)
        dt = time.perf_counter() - t0
        return dt, int(res.meta["counts"]["items"]), float(res.meta["timing"]["embed_loop_s"])
    finally:
        shutil.rmtree(out, ignore_errors=True)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--clips", type=int, default=200, help="synthetic clips (default 200)")
    p.add_argument("--frames", type=int, default=8, help="frames per clip, and sampled per clip (default 8)")
    p.add_argument("--clip-size", type=int, default=64, help="clip side in pixels (default 64)")
    p.add_argument("--preset", default="toy", help="model preset (default toy: 192 wide, 6 blocks)")
    p.add_argument("--depth", type=int, default=None, help="override the preset's depth")
    p.add_argument("--img-size", type=int, default=70, help="model input side (default 70: 5x5 patches)")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--chunk", type=int, default=64)
    p.add_argument("--workers", type=int, default=1, help="DataLoader workers (default 1: one core each)")
    p.add_argument("--threads", type=int, default=1, help="model threads (default 1)")
    p.add_argument("--repeats", type=int, default=2, help="rounds of the three measurements (median kept)")
    p.add_argument("--no-serial", action="store_true", help="skip the workers=0 reference")
    p.add_argument("--data", default=str(ROOT / "runs" / "bench" / "embed_clips"), help="clip folder (reused)")
    p.add_argument("--out", default=str(ROOT / "runs" / "bench" / "embed.json"))
    args = p.parse_args(argv)

    videos = make_clips(Path(args.data), args.clips, args.frames, args.clip_size)
    over = {"num_frames": args.frames, "img_size": args.img_size}
    if args.depth:
        over["depth"] = args.depth
    torch.manual_seed(0)
    model = internvideo2.create_model(args.preset, **over).eval()  # random init: speed only
    settings = EmbedSettings(frames=args.frames, batch_size=args.batch, chunk_size=args.chunk).validate()
    runner = VideoEncoder(model, settings, torch.device("cpu"), torch.float32)
    old_threads = torch.get_num_threads()
    torch.set_num_threads(args.threads)

    rounds = []
    for r in range(args.repeats):
        # interleaved rounds: a slow spell of a shared machine hits all three measurements alike
        dec_s, n_dec, batches = decode_only(videos, settings, runner.spec, args.workers)
        mod_s, n_mod = model_only(runner, batches)
        del batches
        pipe_s, n_pipe, loop_s = pipeline(videos, model, args, args.workers)
        assert n_dec == n_mod == n_pipe == len(videos), (n_dec, n_mod, n_pipe)
        rec = {"decode_s": dec_s, "model_s": mod_s, "pipeline_s": pipe_s, "pipeline_loop_s": loop_s}
        if not args.no_serial and r == 0:
            rec["serial_s"] = pipeline(videos, model, args, 0)[0]
        rounds.append(rec)
        print(f"round {r + 1}: " + ", ".join(f"{k} {v:.2f}" for k, v in rec.items()), flush=True)
    torch.set_num_threads(old_threads)

    n = len(videos)
    med = {k: statistics.median(r[k] for r in rounds if k in r) for k in rounds[0]}
    thr = {k[:-2]: n / v for k, v in med.items()}
    slower = min(thr["decode"], thr["model"])
    ratio = thr["pipeline"] / slower
    no_overlap = 1.0 / (1.0 / thr["decode"] + 1.0 / thr["model"])
    result = {
        "benchmark": "embed_throughput",
        "target": "pipeline >= 0.8 x min(decode, model) (issue 7)",
        "ratio": round(ratio, 3),
        "meets_target": ratio >= 0.8,
        "clips_per_s": {k: round(v, 2) for k, v in thr.items()},
        "no_overlap_clips_per_s": round(no_overlap, 2),
        "median_seconds": {k: round(v, 3) for k, v in med.items()},
        "rounds": [{k: round(v, 3) for k, v in r.items()} for r in rounds],
        "config": {"clips": n, "frames": args.frames, "clip_size": args.clip_size, "preset": args.preset,
                   "model_overrides": over, "batch": args.batch, "chunk": args.chunk, "workers": args.workers,
                   "threads": args.threads, "repeats": args.repeats,
                   "params_M": round(sum(p.numel() for p in model.parameters()) / 1e6, 2)},
        "machine": {"cpus": len(os.sched_getaffinity(0)), "platform": platform.platform(),
                    "python": platform.python_version(), "torch": torch.__version__,
                    "load_avg_1m_at_end": round(os.getloadavg()[0], 2)},
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")

    print()
    print(f"{'measure':<24}{'seconds':>10}{'clips/s':>10}{'x min':>8}")
    rows = [("decode only", "decode"), ("model only", "model"), ("pipeline (embed)", "pipeline"),
            ("serial (workers=0)", "serial")]
    for label, k in rows:
        if k in thr:
            print(f"{label:<24}{med[k + '_s']:>10.2f}{thr[k]:>10.1f}{thr[k] / slower:>8.2f}")
    print(f"{'no-overlap reference':<24}{'':>10}{no_overlap:>10.1f}{no_overlap / slower:>8.2f}")
    print(f"\npipeline / min(decode, model) = {ratio:.2f} (target >= 0.80: {'met' if ratio >= 0.8 else 'NOT met'})"
          f"  -> {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
