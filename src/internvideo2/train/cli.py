"""``internvideo2 train CONFIG.yaml [key=value ...] [--resume [PATH]] [--smoke]``.

The same command under ``torchrun --nproc_per_node N`` (or ``python -m torch.distributed.run``) runs
distributed. Exit codes: 0 done, 2 bad config or checkpoint, 3 the non-finite guard stopped the run,
4 stopped by SIGTERM after writing a checkpoint (run again with ``--resume``).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys

log = logging.getLogger("internvideo2.train.cli")


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", help="recipe YAML (e.g. configs/tiny/engine.yaml)")
    parser.add_argument(
        "overrides",
        nargs="*",
        metavar="key=value",
        help="config overrides, e.g. optim.lr=1e-4 train.max_steps=10",
    )
    parser.add_argument(
        "--resume",
        nargs="?",
        const="auto",
        default=None,
        metavar="PATH",
        help="continue from the latest checkpoint of the run (or from PATH)",
    )
    parser.add_argument(
        "--smoke",
        action="store_true",
        help="apply the recipe's 'smoke:' overrides (tiny CPU variant, a few steps)",
    )
    parser.add_argument("--print-config", action="store_true", help="print the resolved config and exit")
    parser.add_argument(
        "--check",
        action="store_true",
        help="validate the config (and that its task is available) without training",
    )
    parser.add_argument("--quiet", action="store_true", help="only warnings on the console")


def run(args: argparse.Namespace) -> int:
    from internvideo2.train.config import dump_config, load_config

    rank = int(os.environ.get("RANK", "0"))
    logging.basicConfig(
        level=logging.WARNING if (args.quiet or rank != 0) else logging.INFO,
        format=f"%(asctime)s [rank{rank}] %(name)s %(levelname)s: %(message)s",
        stream=sys.stderr,
    )
    if args.resume and "=" in args.resume and not os.path.exists(args.resume):
        # `--resume key=value`: the optional PATH swallowed an override
        args.overrides = [*args.overrides, args.resume]
        args.resume = "auto"
    # ConfigError / CheckpointError go to the CLI's handler: exit 2 naming the field / 1 naming the file
    cfg = load_config(args.config, args.overrides, smoke=args.smoke)
    if args.print_config:
        sys.stdout.write(dump_config(cfg))
        return 0
    if args.check:
        from internvideo2.train.tasks import get_task

        get_task(cfg.task.name, cfg.task.module).validate(cfg)
        print(f"{args.config}: ok (task {cfg.task.name!r})")
        return 0
    from internvideo2.train.engine import TrainingDiverged, train
    from internvideo2.utils.paths import output_dir

    output_dir(cfg.output_dir, "output_dir", create=False)  # before any work: exit 2 naming the field
    try:
        summary = train(cfg, resume=args.resume)
    except TrainingDiverged as exc:
        print(f"internvideo2 train: error: {exc}", file=sys.stderr)
        return 3
    if rank == 0:
        print(json.dumps(summary, indent=2))
        if summary.get("interrupted"):
            print(f"internvideo2 train: interrupted at step {summary['steps']} of {summary['total_steps']}; the "
                  f"checkpoint is in {summary['checkpoint'] or summary['output_dir']}: run the same command with "
                  "--resume to go on", file=sys.stderr)
    return 4 if summary.get("interrupted") else 0
