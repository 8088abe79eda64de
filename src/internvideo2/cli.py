"""Command-line entry point: ``internvideo2 <command> ...``.

Each command lives in its own module, imported only when that command runs, so ``internvideo2 probe``
never pays for training imports. A command module exposes ``configure_parser(parser)`` and
``run(args) -> int``.

Errors are answered here, the same way for every command: one line ``internvideo2 CMD: error: ...`` naming
the flag, field or file and the reason, and the exit code says what happened:

====  =====================================================================================================
0     done, the output is complete
1     the work failed or is incomplete (an unusable file, a checkpoint that does not fit, a full disk...)
2     usage: a bad flag, value or config field, a missing input, an unwritable output (nothing was done)
3     training diverged (``train``: non-finite losses past the guard)
4     stopped by SIGTERM after a checkpoint (``train`` / ``demo``; run again to resume)
130   interrupted (Ctrl-C)
====  =====================================================================================================

A Python traceback is printed only for an unexpected error and only with ``--debug`` (anywhere on the
command line) or ``INTERNVIDEO2_DEBUG=1``.
"""
from __future__ import annotations

import argparse
import importlib
import os
import sys

from .utils.argparsing import flag_for

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
    "index": ("internvideo2.search.build", "index videos for text search (incremental, resumable, torchrun)"),
    "search": ("internvideo2.search.cli", "search an index by text"),
    "serve": ("internvideo2.search.server", "browse and search an index in a web page"),
    "info": ("internvideo2.info", "list presets and released models, inspect checkpoints"),
    "convert": ("internvideo2.checkpoint.convert", "convert a released checkpoint to our format (safetensors)"),
}

EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 1, 2, 130

def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="internvideo2", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (_module, help_text) in COMMANDS.items():
        sub.add_parser(name, help=help_text, add_help=False)
    parser.add_argument("--debug", action="store_true", help="print tracebacks of unexpected errors")
    return parser


def describe(exc: BaseException, parser: argparse.ArgumentParser | None = None) -> str:
    """One line about an error a user can act on."""
    from .errors import ConfigError

    if isinstance(exc, ConfigError):
        where = flag_for(parser, exc.field) if parser is not None else exc.field
        return f"{where}: {exc.reason}"
    if isinstance(exc, OSError) and exc.filename is not None:
        return f"{exc.filename}: {exc.strerror or exc}"
    return str(exc)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv or os.environ.get("INTERNVIDEO2_DEBUG", "") not in ("", "0")
    argv = [a for a in argv if a != "--debug"]
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in COMMANDS:
        parser = build_parser()
        if argv and argv[0] not in ("-h", "--help"):
            parser.error(f"unknown command {argv[0]!r}; choose from {', '.join(COMMANDS)}")
        parser.print_help()
        return 0
    name, rest = argv[0], argv[1:]
    prog = f"internvideo2 {name}"
    module = importlib.import_module(COMMANDS[name][0])
    parser = argparse.ArgumentParser(prog=prog, description=COMMANDS[name][1])
    module.configure_parser(parser)
    # intermixed: options may follow positional overrides (``train cfg.yaml a=1 --smoke``); commands that
    # forward the rest of the line to a sub-parser (nargs=REMAINDER) cannot be parsed that way
    if any(a.nargs == argparse.REMAINDER for a in parser._actions):
        args = parser.parse_args(rest)
    else:
        args = parser.parse_intermixed_args(rest)
    try:
        return int(module.run(args) or 0)
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr, flush=True)
        return EXIT_INTERRUPTED
    except Exception as e:
        from .errors import ConfigError, InternVideo2Error

        if isinstance(e, ConfigError):
            print(f"{prog}: error: {describe(e, parser)}", file=sys.stderr, flush=True)
            return EXIT_USAGE
        if isinstance(e, (InternVideo2Error, OSError)):
            if debug:
                raise
            print(f"{prog}: error: {describe(e, parser)}", file=sys.stderr, flush=True)
            return EXIT_FAILED
        if debug:
            raise
        print(f"{prog}: internal error: {type(e).__name__}: {e} (pass --debug or set INTERNVIDEO2_DEBUG=1 for the "
              "traceback, and please report it)", file=sys.stderr, flush=True)
        return EXIT_FAILED


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
