"""``internvideo2 eval TASK ...``: evaluation sub-commands.

Each task lives in its own module, imported only when that task runs (``eval tal`` never imports a
model). A task module exposes ``configure_cli(parser)`` and ``run_cli(args) -> int``; register it in
:data:`TASKS`.
"""
from __future__ import annotations

import argparse
import importlib

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
    "mc": ("internvideo2.eval.zeroshot:MultipleChoiceCLI",
           "multiple-choice retrieval: first/any-answer accuracy, Charades-MC mAP (torchnet mAPMeter)"),
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


# the path options of the tasks, checked before any work: name -> what it must be
_INPUT_FILES = ("gt", "pred", "data", "classes")
_INPUT_DIRS = ("videos",)
_INPUT_PATHS = ("model",)  # a saved folder or a checkpoint file
_OUTPUT_FILES = ("out", "output")


def check_paths(args: argparse.Namespace) -> None:
    """Raise :class:`~internvideo2.errors.ConfigError` for a missing input, a folder given for a file (or
    the reverse) and an output that cannot be written, before a model is loaded."""
    from internvideo2.utils.paths import input_dir, input_file, input_path, output_file

    for names, check in ((_INPUT_FILES, input_file), (_INPUT_DIRS, input_dir), (_INPUT_PATHS, input_path),
                         (_OUTPUT_FILES, output_file)):
        for name in names:
            value = getattr(args, name, None)
            if value is not None:
                check(value, name)


def run(args: argparse.Namespace) -> int:
    from internvideo2.errors import ConfigError
    from internvideo2.utils.argparsing import flag_for

    module_name, help_text = TASKS[args.task]
    module_name, _, attr = module_name.partition(":")
    module = importlib.import_module(module_name)
    if attr:
        module = getattr(module, attr)
    parser = argparse.ArgumentParser(prog=f"internvideo2 eval {args.task}", description=help_text)
    module.configure_cli(parser)
    task_args = parser.parse_args(args.task_args)
    try:
        check_paths(task_args)
        return int(module.run_cli(task_args) or 0)
    except ConfigError as e:  # name the task's flag (the top-level parser does not know it)
        raise ConfigError(flag_for(parser, e.field.lstrip("-").replace("-", "_")), e.reason) from None
