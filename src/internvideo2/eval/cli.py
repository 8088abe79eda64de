"""``internvideo2 eval TASK ...``: evaluation sub-commands.

Each task lives in its own module, imported only when that task runs (``eval tal`` never imports a
model). A task module exposes ``configure_cli(parser)`` and ``run_cli(args) -> int``; register it in
:data:`TASKS`.
"""
from __future__ import annotations

import argparse
import importlib
import sys

from internvideo2.errors import InternVideo2Error

# task name -> (module or "module:object", one-line help). They expose configure_cli(parser) and run_cli(args) -> int.
TASKS: dict[str, tuple[str, str]] = {
    "tal": ("internvideo2.eval.tal",
            "temporal action localisation mAP at tIoU thresholds (ActivityNet JSON)"),
    "moments": ("internvideo2.eval.moments",
                "moment retrieval / highlight detection (QVHighlights JSONL; --charades for Charades-STA)"),
    "retrieval": ("internvideo2.eval.zeroshot:RetrievalCLI",
                  "zero-shot text-video retrieval: cosine, dual-softmax and ITM re-ranking side by side"),
    "zeroshot-cls": ("internvideo2.eval.zeroshot:ZeroShotCLI",
                     "zero-shot action classification with prompt-template ensembles"),
    "mc": ("internvideo2.eval.zeroshot:MultipleChoiceCLI", "multiple-choice video-text retrieval accuracy"),
    "cls": ("internvideo2.eval.classification:ClassificationCLI",
            "action classification with the multi-view test (N clips x M crops)"),
}


def configure_parser(parser: argparse.ArgumentParser) -> None:
    lines = "\n".join(f"  {name:<10} {help_text}" for name, (_m, help_text) in TASKS.items())
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = f"tasks:\n{lines}\n\n`internvideo2 eval TASK --help` lists a task's options."
    parser.add_argument("task", metavar="TASK", choices=list(TASKS), help="one of: " + ", ".join(TASKS))
    parser.add_argument("task_args", nargs=argparse.REMAINDER, metavar="...",
                        help="the task's options (`internvideo2 eval TASK --help`)")


def run(args: argparse.Namespace) -> int:
    module_name, help_text = TASKS[args.task]
    module_name, _, attr = module_name.partition(":")
    module = importlib.import_module(module_name)
    if attr:
        module = getattr(module, attr)
    parser = argparse.ArgumentParser(prog=f"internvideo2 eval {args.task}", description=help_text)
    module.configure_cli(parser)
    task_args = parser.parse_args(args.task_args)
    try:
        return int(module.run_cli(task_args) or 0)
    except InternVideo2Error as e:
        print(f"internvideo2 eval {args.task}: error: {e}", file=sys.stderr)
        return 2
