"""``internvideo2 finetune CONFIG [key=value ...]``: the ``train`` command for fine-tuning / probing recipes
(``task.name: finetune``), e.g. ``configs/official/finetune_1b_k710.yaml`` or ``configs/demo/finetune.yaml``."""
from __future__ import annotations

import argparse


def configure_parser(parser: argparse.ArgumentParser) -> None:
    from .cli import configure_parser as train_parser

    train_parser(parser)


def run(args: argparse.Namespace) -> int:
    from ..errors import ConfigError
    from .cli import run as train_run
    from .config import load_config

    cfg = load_config(args.config, args.overrides, smoke=args.smoke)
    if cfg.task.name != "finetune":
        raise ConfigError("config", f"{args.config} is a {cfg.task.name!r} recipe; use `internvideo2 train`")
    return train_run(args)
