"""Encoder forward throughput (issue 2 target): clips/s of the InternVideo2 vision encoder at 8x224, fp32.

For each preset (default B/14 and L/14, randomly initialised: speed does not depend on the weights), in one
run on the same machine:

- ``sdpa``: our attention path (``torch.nn.functional.scaled_dot_product_attention``);
- ``naive``: the same weights through the explicit attention matrix ``softmax(q k^T / sqrt(d)) v``, which is
  how the official code runs when flash-attn is not installed;
- ``matmul``: the fp32 matrix-multiply rate of this machine (square 2048 matrices), measured in the same run,
  against which the encoder's achieved GFLOP/s is compared.

Model FLOPs are counted analytically (2 per multiply-add): patch embedding, q/k/v and output projections, the
two attention products, the MLP; the attention pool and norms are left out (under 1%). Each cell is the
median of ``--repeats`` timed forwards after one warm-up, the two paths taking turns.

    .venv/bin/python benchmarks/bench_encoder.py                      # writes runs/bench/encoder.json
    .venv/bin/python benchmarks/bench_encoder.py --presets tiny --frames 4 --size 56 --out /tmp/enc.json
"""
from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import time
from pathlib import Path

import torch

from internvideo2.models import create_model
from internvideo2.models.layers import attention_impl


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


def matmul_gflops(n: int = 2048, repeats: int = 10) -> float:
    a, b = torch.randn(n, n), torch.randn(n, n)
    torch.mm(a, b)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        torch.mm(a, b)
        times.append(time.perf_counter() - t0)
    return 2 * n ** 3 / statistics.median(times) / 1e9


def time_forward(model, x, impl: str) -> float:
    with torch.inference_mode(), attention_impl(impl):
        t0 = time.perf_counter()
        model.forward_features(x)
        return time.perf_counter() - t0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--presets", nargs="+", default=["internvideo2-b14", "internvideo2-l14"])
    ap.add_argument("--frames", type=int, default=8)
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", default="runs/bench/encoder.json")
    args = ap.parse_args(argv)

    torch.manual_seed(0)
    rate = matmul_gflops()
    print(f"fp32 matmul: {rate:.1f} GFLOP/s on {torch.get_num_threads()} threads", flush=True)
    rows = []
    for name in args.presets:
        model = create_model(name, "vision", num_frames=args.frames, img_size=args.size).eval()
        x = torch.randn(1, 3, args.frames, args.size, args.size)
        flops = encoder_flops(model.cfg)
        for impl in ("sdpa", "naive"):  # warm-up
            time_forward(model, x, impl)
        times = {"sdpa": [], "naive": []}
        for _ in range(args.repeats):
            for impl in times:
                times[impl].append(time_forward(model, x, impl))
        row = {"preset": name, "frames": args.frames, "size": args.size, "params_m": sum(p.numel() for p in model.parameters()) / 1e6,
               "tokens": 1 + math.prod(model.cfg.grid),
               "gflops_per_clip": flops / 1e9}
        for impl, ts in times.items():
            sec = statistics.median(ts)
            row[impl] = {"seconds": sec, "clips_per_s": 1 / sec, "gflops_per_s": flops / sec / 1e9,
                         "fraction_of_matmul": flops / sec / 1e9 / rate, "all_seconds": ts}
        row["speedup_sdpa_vs_naive"] = row["naive"]["seconds"] / row["sdpa"]["seconds"]
        row["targets"] = {"sdpa >= 1.8x naive": row["speedup_sdpa_vs_naive"] >= 1.8,
                          "achieved >= 70% of matmul": row["sdpa"]["fraction_of_matmul"] >= 0.7}
        rows.append(row)
        print(f"{name}: {row['tokens']} tokens, {row['gflops_per_clip']:.0f} GFLOP/clip | sdpa "
              f"{row['sdpa']['clips_per_s']:.3f} clips/s ({row['sdpa']['gflops_per_s']:.1f} GFLOP/s, "
              f"{100 * row['sdpa']['fraction_of_matmul']:.0f}% of matmul) | naive {row['naive']['clips_per_s']:.3f} "
              f"clips/s | sdpa/naive {row['speedup_sdpa_vs_naive']:.2f}x", flush=True)
        del model
    out = {"machine": {"platform": platform.platform(), "cpu_count": os.cpu_count(), "torch": torch.__version__,
                       "threads": torch.get_num_threads()},
           "matmul_gflops": rate, "precision": "fp32", "results": rows}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=2))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
