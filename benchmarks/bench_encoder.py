"""Encoder forward throughput (issue 2 target): clips/s of the InternVideo2 vision encoder at 8x224, fp32.

For each preset (default B/14 and L/14, randomly initialised: speed does not depend on the weights), in one
run on the same machine, the same weights through these paths (``--device cuda`` and ``--dtype bf16`` run it on a GPU):

- ``sdpa``: this package's default inference path: ``scaled_dot_product_attention`` and the fused kernels
  of :func:`internvideo2.models.layers.fused_kernels` (norms, LayerScale-residual, GELU-in-fc1, head-major q/k/v);
- ``naive``: the official code as it runs without flash-attn, op for op: the explicit attention matrix
  ``softmax(q k^T / sqrt(d)) v`` and separate RMSNorm / LayerScale / residual / GELU passes (fused kernels
  off). The 1.8x target compares ``sdpa`` with this path;
- ``naive_fused``: the explicit attention matrix with everything else as in ``sdpa``: isolates what the
  attention kernel alone is worth;
- ``sdpa_whole_batch`` (with ``--batch`` > 1): ``sdpa`` without the blocks' micro-batching
  (:func:`internvideo2.models.layers.micro_batch_bytes`), every op on the whole batch at once.

Also measured in the same run: the fp32 matrix-multiply rate of this machine (square 2048 matrices),
against which the encoder's achieved GFLOP/s is compared, and the attention operation alone at the model's
shape (``[1, heads, tokens, head_dim]``, times depth) through SDPA and through the explicit matrix. From
that, ``bound_if_attention_free`` = naive seconds / (naive seconds - its attention seconds): the speed-up
over the naive path that even a zero-cost attention could not exceed.

Model FLOPs are counted analytically (2 per multiply-add): patch embedding, q/k/v and output projections, the
two attention products, the MLP; the attention pool and norms are left out (under 1%). Each cell is the
median of ``--repeats`` timed forwards after one warm-up, the paths taking turns.

    .venv/bin/python benchmarks/bench_encoder.py                      # writes runs/bench/encoder.json
    .venv/bin/python benchmarks/bench_encoder.py --presets tiny --frames 4 --size 56 --out /tmp/enc.json
    .venv/bin/python benchmarks/bench_encoder.py --batch 8 --paths sdpa sdpa_whole_batch \
        --out runs/bench/encoder_batch8.json                         # what micro-batching is worth
"""
from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import platform
import statistics
import time
from pathlib import Path

import torch

from internvideo2.models import create_model
from internvideo2.models.layers import attention_impl, fused_kernels, micro_batch_bytes


def encoder_flops(cfg) -> float:
    """Multiply-add FLOPs (x2) of one clip of the model's frame count and size through the patch embedding
    and the blocks."""
    p, t = cfg.patch_size, cfg.tubelet_size
    n_patches = math.prod(cfg.grid)
    n = n_patches + 1  # + cls token
    c, m = cfg.embed_dim, cfg.mlp_hidden
    patch = 2 * n_patches * (3 * t * p * p) * c
    per_block = 2 * n * c * 3 * c + 2 * n * c * c + 2 * 2 * n * n * c + 2 * 2 * n * c * m
    return float(patch + cfg.depth * per_block)


DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}


def _timed(fn, device: torch.device) -> float:
    """Wall seconds of ``fn()``, waiting for queued GPU work before and after."""
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    sync()
    t0 = time.perf_counter()
    fn()
    sync()
    return time.perf_counter() - t0


def matmul_gflops(device: torch.device, dtype: torch.dtype, n: int = 2048, repeats: int = 10) -> float:
    a, b = (torch.randn(n, n, device=device, dtype=dtype) for _ in range(2))
    torch.mm(a, b)
    times = [_timed(lambda: torch.mm(a, b), device) for _ in range(repeats)]
    return 2 * n ** 3 / statistics.median(times) / 1e9


# path -> (attention implementation, fused kernels, micro-batching)
PATHS = {"sdpa": ("sdpa", True, True), "naive": ("naive", False, True), "naive_fused": ("naive", True, True),
         "sdpa_whole_batch": ("sdpa", True, False)}


def time_forward(model, x, path: str) -> float:
    impl, fused, micro = PATHS[path]
    whole_batch = contextlib.nullcontext() if micro else micro_batch_bytes(None)
    with torch.inference_mode(), attention_impl(impl), fused_kernels(fused), whole_batch:
        return _timed(lambda: model.forward_features(x), x.device)


def time_attention(cfg, impl: str, repeats: int, device: torch.device, dtype: torch.dtype) -> float:
    """Seconds of the attention operation alone for one clip: ``depth`` calls at the model's shape."""
    from internvideo2.models.layers import _attend

    n, h = 1 + math.prod(cfg.grid), cfg.num_heads
    q, k, v = (torch.randn(1, h, n, cfg.embed_dim // h, device=device, dtype=dtype) for _ in range(3))
    with torch.inference_mode(), attention_impl(impl):
        _attend(q, k, v)
        times = [_timed(lambda: _attend(q, k, v), device) for _ in range(repeats)]
    return cfg.depth * statistics.median(times)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--presets", nargs="+", default=["internvideo2-b14", "internvideo2-l14"])
    ap.add_argument("--frames", type=int, default=8)
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--batch", type=int, default=1, help="clips per forward (the 1.8x target: 1)")
    ap.add_argument("--paths", nargs="+", choices=list(PATHS), default=None,
                    help="paths to time (default: sdpa, naive, naive_fused, and sdpa_whole_batch when --batch > 1)")
    ap.add_argument("--device", default="cpu", help="cpu or cuda[:N] (the fused kernels are CPU-only; on a "
                    "GPU both paths run the same non-attention ops)")
    ap.add_argument("--dtype", choices=sorted(DTYPES), default="fp32",
                    help="weights and input precision (bf16: GPUs, or CPUs with AMX bf16 units; 4-400x slower on "
                         "CPUs without them)")
    ap.add_argument("--out", default="runs/bench/encoder.json")
    args = ap.parse_args(argv)
    if args.batch < 1:
        ap.error(f"--batch must be >= 1, got {args.batch}")
    paths = args.paths or [p for p in PATHS if p != "sdpa_whole_batch" or args.batch > 1]
    if "sdpa" not in paths:
        ap.error("--paths must include sdpa (every comparison is against it)")
    device, dtype = torch.device(args.device), DTYPES[args.dtype]

    torch.manual_seed(0)
    rate = matmul_gflops(device, dtype)
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else f"{torch.get_num_threads()} threads"
    print(f"{args.dtype} matmul: {rate:.1f} GFLOP/s on {where}", flush=True)
    rows = []
    for name in args.presets:
        model = create_model(name, "vision", num_frames=args.frames, img_size=args.size).eval().to(device, dtype)
        x = torch.randn(args.batch, 3, args.frames, args.size, args.size, device=device, dtype=dtype)
        flops = args.batch * encoder_flops(model.cfg)
        for path in paths:  # warm-up
            time_forward(model, x, path)
        times = {path: [] for path in paths}
        for _ in range(args.repeats):
            for path in times:
                times[path].append(time_forward(model, x, path))
        row = {"preset": name, "frames": args.frames, "size": args.size, "batch": args.batch,
               "params_m": sum(p.numel() for p in model.parameters()) / 1e6,
               "tokens": 1 + math.prod(model.cfg.grid), "gflops_per_clip": flops / args.batch / 1e9}
        for path, ts in times.items():
            sec = statistics.median(ts)
            row[path] = {"seconds": sec, "clips_per_s": args.batch / sec, "gflops_per_s": flops / sec / 1e9,
                         "fraction_of_matmul": flops / sec / 1e9 / rate, "all_seconds": ts}
        line = (f"{name}: batch {args.batch}, {row['tokens']} tokens, {row['gflops_per_clip']:.0f} GFLOP/clip | sdpa "
                f"{row['sdpa']['clips_per_s']:.3f} clips/s ({row['sdpa']['gflops_per_s']:.1f} GFLOP/s, "
                f"{100 * row['sdpa']['fraction_of_matmul']:.0f}% of matmul)")
        row["targets"] = {"achieved >= 70% of matmul": row["sdpa"]["fraction_of_matmul"] >= 0.7}
        if "naive" in paths:
            # the attention op alone, one clip at the model's shape, times the clips in a forward
            attn = {impl: args.batch * time_attention(model.cfg, impl, max(3, args.repeats), device, dtype)
                    for impl in ("sdpa", "naive")}
            row["attention_op"] = {"sdpa_seconds": attn["sdpa"], "naive_seconds": attn["naive"],
                                   "speedup": attn["naive"] / attn["sdpa"],
                                   "share_of_naive_path": attn["naive"] / row["naive"]["seconds"]}
            row["speedup_sdpa_vs_naive"] = row["naive"]["seconds"] / row["sdpa"]["seconds"]
            row["bound_if_attention_free"] = (row["naive"]["seconds"]
                                              / max(row["naive"]["seconds"] - attn["naive"], 1e-9))
            row["targets"]["sdpa >= 1.8x naive"] = row["speedup_sdpa_vs_naive"] >= 1.8
            line += (f" | naive {row['naive']['clips_per_s']:.3f} clips/s | sdpa/naive "
                     f"{row['speedup_sdpa_vs_naive']:.2f}x (attention op {row['attention_op']['speedup']:.2f}x, "
                     f"{100 * row['attention_op']['share_of_naive_path']:.0f}% of the naive path; bound if "
                     f"attention were free {row['bound_if_attention_free']:.2f}x)")
        if "naive_fused" in paths:
            row["speedup_sdpa_vs_naive_fused"] = row["naive_fused"]["seconds"] / row["sdpa"]["seconds"]
            line += f" | attention-only swap {row['speedup_sdpa_vs_naive_fused']:.2f}x"
        if "sdpa_whole_batch" in paths:
            row["speedup_micro_batching"] = row["sdpa_whole_batch"]["seconds"] / row["sdpa"]["seconds"]
            line += (f" | whole batch at once {row['sdpa_whole_batch']['clips_per_s']:.3f} clips/s: micro-batching "
                     f"{row['speedup_micro_batching']:.2f}x")
        print(line, flush=True)
        rows.append(row)
        del model
    out = {"machine": {"platform": platform.platform(), "cpu_count": os.cpu_count(), "torch": torch.__version__,
                       "threads": torch.get_num_threads(), "device": str(device),
                       # the naive path's N^2 attention matrices are page-faulted in afresh under glibc malloc:
                       # a caching allocator (LD_PRELOAD=libjemalloc) makes that path much faster, not ours
                       "allocator": os.environ.get("LD_PRELOAD") or "default",
                       "device_name": (torch.cuda.get_device_name(device) if device.type == "cuda"
                                       else platform.processor())},
           "matmul_gflops": rate, "precision": args.dtype, "results": rows}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=2))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
