"""Command-line entry point: ``internvideo2 <command> ...``.

Each command lives in its own module, imported only when that command runs, so ``internvideo2 probe``
never pays for training imports. A command module exposes ``configure_parser(parser)`` and
``run(args) -> int``.
"""
from __future__ import annotations

import argparse
import importlib
import sys

# command name -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "demo": ("internvideo2.demo", "run the progressive recipe at toy scale on the synthetic world"),
    "probe": ("internvideo2.data.probe", "print media metadata (and sampled frames) as JSON lines"),
    "synth": ("internvideo2.data.synth", "generate the synthetic video world"),
    "segment": ("internvideo2.data.segment", "cut videos into shots (JSON lines with start/end times)"),
    "train": ("internvideo2.train.cli", "run a training recipe (YAML) on the training engine"),
    "finetune": ("internvideo2.train.finetune_cli", "fine-tune / probe an action classifier"),
    "eval": ("internvideo2.eval.cli", "evaluate: retrieval, zeroshot-cls, cls, tal, moments"),
    "embed": ("internvideo2.embed", "extract video embeddings from files or folders"),
    "info": ("internvideo2.info", "list presets, inspect checkpoints"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="internvideo2", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (_module, help_text) in COMMANDS.items():
        sub.add_parser(name, help=help_text, add_help=False)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in COMMANDS:
        parser = build_parser()
        if argv and argv[0] not in ("-h", "--help"):
            parser.error(f"unknown command {argv[0]!r}; choose from {', '.join(COMMANDS)}")
        parser.print_help()
        return 0
    name, rest = argv[0], argv[1:]
    module = importlib.import_module(COMMANDS[name][0])
    parser = argparse.ArgumentParser(prog=f"internvideo2 {name}", description=COMMANDS[name][1])
    module.configure_parser(parser)
    # intermixed: options may follow positional overrides (``train cfg.yaml a=1 --smoke``); commands that
    # forward the rest of the line to a sub-parser (nargs=REMAINDER) cannot be parsed that way
    if any(a.nargs == argparse.REMAINDER for a in parser._actions):
        args = parser.parse_args(rest)
    else:
        args = parser.parse_intermixed_args(rest)
    return int(module.run(args) or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
