"""``internvideo2 demo``: the progressive InternVideo2 recipe at toy scale on the built-in synthetic world.

See :mod:`internvideo2.demo.pipeline`. ``make demo`` runs it; ``--quick`` is the CI smoke scale.
"""
from __future__ import annotations

import argparse
from pathlib import Path


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", default="runs/demo", help="output folder (default runs/demo)")
    parser.add_argument("--quick", action="store_true", help="smoke scale for CI (a minute; numbers meaningless)")
    parser.add_argument("--seeds", default=None, help="comma-separated stage-2 seeds per arm (default 0,1,2; quick: 0)")
    parser.add_argument("--configs", default=None, help="folder of the demo recipes (default configs/demo)")
    parser.add_argument("--fresh", action="store_true", help="delete the output folder first (default: reuse "
                                                             "finished stages whose recipe did not change)")
    parser.add_argument("--no-finetune", action="store_true", help="skip the fine-tuning stage")
    parser.add_argument("--no-scratch", action="store_true", help="skip the stage-2-from-scratch comparison arm")
    parser.add_argument("--steps", type=int, default=None, metavar="N",
                        help="train every stage for N steps instead of its recipe's (a faster, weaker run; with "
                             "--quick, longer than the smoke scale's 3)")


def run(args: argparse.Namespace) -> int:
    from ..errors import ConfigError
    from ..utils.paths import input_dir, output_dir
    from .pipeline import DemoOptions, run_demo

    try:
        seeds = tuple(int(s) for s in args.seeds.split(",")) if args.seeds else ((0,) if args.quick else (0, 1, 2))
    except ValueError:
        raise ConfigError("seeds", f"must be a comma list of ints, got {args.seeds!r}") from None
    if not seeds or len(set(seeds)) != len(seeds):
        raise ConfigError("seeds", f"must be distinct ints, got {args.seeds!r}")
    if args.configs:
        input_dir(args.configs, "configs")
    if args.steps is not None and args.steps < 1:
        raise ConfigError("steps", f"must be >= 1, got {args.steps}")
    output_dir(args.out, "out")
    return run_demo(DemoOptions(out=Path(args.out), quick=args.quick, seeds=seeds,
                                configs=Path(args.configs) if args.configs else None, fresh=args.fresh,
                                finetune=not args.no_finetune, scratch=not args.no_scratch, steps=args.steps))
