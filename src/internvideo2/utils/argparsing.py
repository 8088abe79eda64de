"""Command-line helpers shared by the top-level CLI and the commands that build their own sub-parsers."""
from __future__ import annotations

import argparse

__all__ = ["flag_for"]

# a Python-side field name -> the flag's dest where the two differ
_FIELD_DEST = {"out_dir": "out", "batch_size": "batch", "chunk_size": "chunk", "min_shot_s": "min_shot",
               "num_clips": "num", "num_frames": "frames"}


def flag_for(parser: argparse.ArgumentParser, field: str) -> str:
    """The command-line spelling of a config field (``max_bad_fraction`` -> ``--max-bad-fraction``); the
    field itself when no flag sets it."""
    for name in (field, _FIELD_DEST.get(field)):  # the field's own flag first, then its usual alias
        for action in parser._actions:
            if name is not None and action.dest == name:
                if action.option_strings:
                    return max(action.option_strings, key=len)
                return str(action.metavar if isinstance(action.metavar, str) else action.dest).upper()
    return field
