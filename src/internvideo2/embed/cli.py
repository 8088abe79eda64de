"""``internvideo2 embed VIDEOS... --model M -o OUT``: the command line of :func:`embed_videos`."""
from __future__ import annotations

import argparse
import os
import sys

import torch

from ..errors import ConfigError
from .planning import scan_inputs
from .runner import default_workers, embed_videos
from .settings import DTYPES, FEATURES, MODES, RESIZES, TOKEN_DTYPES, VIDEO_EXTENSIONS, EmbedSettings


def add_shot_arguments(g) -> None:
    """The shot-detection flags (``--shot-*``) of every command that cuts videos into shots (embed, index)."""
    g.add_argument("--shot-min-len", type=float, default=0.5, metavar="S", help="shortest shot (default 0.5 s)")
    g.add_argument("--shot-ratio", type=float, default=3.0, help="shot-cut contrast ratio (default 3)")
    g.add_argument("--shot-min-score", type=float, default=0.12, help="shot-cut score floor (default 0.12)")
    g.add_argument("--shot-step", type=int, default=1, help="analyse every STEP-th frame for cuts (default 1)")


def add_execution_arguments(g, device_help: str) -> None:
    """The flags of how the embed pipeline runs (batching, chunks, workers, device, bad-file policy), shared by
    every command built on it (embed, index)."""
    g.add_argument("--batch", type=int, default=8, help="items per model call (default 8)")
    g.add_argument("--chunk", type=int, default=64, metavar="N", help="videos per committed chunk (default 64)")
    g.add_argument("--workers", type=int, default=None,
                   help=f"decoding worker processes (default {default_workers()} here; 0 = no overlap)")
    g.add_argument("--threads", type=int, default=None, help="model threads on CPU (default: cores left to workers)")
    g.add_argument("--device", default="cpu", help=device_help)
    g.add_argument("--dtype", choices=sorted(DTYPES), default="fp32", help="model dtype (bf16 on GPU)")
    g.add_argument("--timeout", type=float, default=120.0, help="decoding time limit per file, seconds")
    g.add_argument("--max-bad-fraction", type=float, default=0.2,
                   help="fail once more than this fraction of videos are unusable (default 0.2; 1 = never)")
    g.add_argument("--bad-check-after", type=int, default=20, metavar="N",
                   help="no bad-fraction verdict before N videos were seen (default 20)")


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
    add_shot_arguments(g)
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
    add_execution_arguments(g, device_help="cpu (default), cuda, cuda:1 ...")
    g.add_argument("--overwrite", action="store_true", help="delete an earlier run's outputs in OUT and start over")
    g.add_argument("--retry-bad", action="store_true",
                   help="also retry videos that failed for a lasting reason (a corrupt file unchanged on disk)")
    g.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    """Exit codes: 0 every video embedded; 1 the output is incomplete (unusable videos, listed in
    ``errors.jsonl``; or too many of them: DataQualityError); 2 usage; 130 interrupted (rerun to resume)."""
    from ..data.bad_samples import DataQualityError
    from ..utils.paths import input_path, output_dir

    dtype = DTYPES[args.dtype]
    dev = torch.device(args.device)
    if dev.type == "cpu" and dtype == torch.float16:
        raise ConfigError("dtype", "fp16 is for GPUs; use fp32 (default) or bf16 on CPU")
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device", f"{args.device!r} asked but no CUDA GPU is available here (use --device cpu)")
    if args.timeout <= 0:
        raise ConfigError("timeout", f"must be > 0 seconds, got {args.timeout}")
    EmbedSettings(mode=args.mode, frames=args.frames, window=args.window, stride=args.stride).validate()
    input_path(args.model, "model")
    output_dir(args.out, "out", create=False)
    scan = scan_inputs(args.videos)  # fail on a mistyped path before loading a large model
    if not scan.videos and not scan.problems:
        raise ConfigError("videos", f"no video files found in {', '.join(map(str, args.videos))} (extensions: "
                                    f"{' '.join(VIDEO_EXTENSIONS)})")
    from ..checkpoint.loader import load_model

    model = load_model(args.model, device=args.device)
    try:
        res = embed_videos(
            args.videos, model, out_dir=args.out, mode=args.mode, frames=args.frames, window=args.window,
            stride=args.stride, feature=args.feature, normalize=args.normalize, tokens=args.tokens,
            batch_size=args.batch, chunk_size=args.chunk, workers=args.workers, threads=args.threads,
            device=args.device, dtype=args.dtype, overwrite=args.overwrite, retry_bad=args.retry_bad,
            max_bad_fraction=args.max_bad_fraction, bad_check_after=args.bad_check_after, timeout=args.timeout,
            progress=not args.no_progress, model_source=args.model, size=args.size, resize=args.resize,
            shot_ratio=args.shot_ratio, shot_min_score=args.shot_min_score, shot_min_len=args.shot_min_len,
            shot_step=args.shot_step, tokens_dtype=args.tokens_dtype,
        )
    except DataQualityError as e:
        print(f"internvideo2 embed: error: {e}\n(finished chunks are kept in {args.out}; rerun with a higher "
              "--max-bad-fraction to go on)", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"internvideo2 embed: interrupted; finished chunks are kept in {args.out}, rerun the same command "
              "to resume", file=sys.stderr)
        return 130
    c, t = res.meta["counts"], res.meta["timing"]
    if res.status == "already_complete":
        print(f"embed: {args.out} already holds this finished run ({c['videos']} videos -> {c['items']} "
              "embeddings); nothing to do (--overwrite starts over, --retry-bad retries unusable files)", flush=True)
        return 1 if c["videos_bad"] else 0
    bad = ""
    if c["videos_bad"]:
        reasons = ", ".join(f"{k}: {v}" for k, v in c["bad_reasons"].items())
        bad = f"; {c['videos_bad']} unusable ({reasons}), listed in {os.path.join(args.out, 'errors.jsonl')}"
    resumed = f"; {t['resumed_chunks']} of {c['chunks']} chunks from an earlier run" if t["resumed_chunks"] else ""
    kept = f"; {t['kept_videos']} videos kept from the earlier output" if res.status == "updated" else ""
    speed = f" ({t['videos_per_s']} videos/s)" if t["videos_this_run"] else ""
    print(f"embed: {c['videos']} videos -> {c['items']} embeddings of width {res.embeddings.shape[1]} in "
          f"{args.out} [{t['embed_loop_s']} s{speed}]{bad}{resumed}{kept}", flush=True)
    if c["videos_bad"]:
        print(f"internvideo2 embed: the output is incomplete: {c['videos_bad']} of {c['videos']} videos unusable "
              f"(see {os.path.join(args.out, 'errors.jsonl')}; a rerun retries those that can change)",
              file=sys.stderr, flush=True)
        return 1
    return 0
