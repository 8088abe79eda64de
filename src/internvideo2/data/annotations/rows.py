"""The one reader skeleton: rows in, records (or bad-row problems) out.

A reader opens its file into ``(row number, row)`` items (:func:`json_items` for JSON lists, :func:`line_items`
for line formats), gives them to :func:`collect` with a ``parse(row) -> record | None`` function that raises
:class:`RowProblem` for a broken row (None = a row filtered out on purpose), and closes with
:meth:`Collector.annotations`, which applies the bad-row policy::

    col = Collector(path, on_bad)
    records, rows = collect(col, json_items(path), parse)
    return col.annotations(records, rows)
"""
from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, Literal, TypeVar

from ...errors import AnnotationError, ConfigError
from .records import Annotations

logger = logging.getLogger("internvideo2.data")

T = TypeVar("T")
OnBad = Literal["raise", "skip"]

_MAX_LISTED = 20


class RowProblem(Exception):
    """A problem in one row; collected by :class:`Collector`."""


class Collector:
    """Collects the bad rows of one file and applies the bad-row policy at the end."""

    def __init__(self, path: str | os.PathLike, on_bad: OnBad):
        if on_bad not in ("raise", "skip"):
            raise ConfigError("on_bad", f"must be 'raise' or 'skip', got {on_bad!r}")
        self.path = str(path)
        self.on_bad = on_bad
        self.problems: list[tuple[int | str, str]] = []

    def add(self, row: int | str, reason: str) -> None:
        self.problems.append((row, reason))
        if self.on_bad == "skip":
            logger.warning("%s: row %s skipped: %s", self.path, row, reason)

    def finish(self) -> int:
        """Raise one :class:`AnnotationError` for the bad rows (``on_bad="raise"``), or return their count."""
        if not self.problems:
            return 0
        if self.on_bad == "skip":
            logger.warning("%s: %d bad row(s) skipped", self.path, len(self.problems))
            return len(self.problems)
        row, reason = self.problems[0]
        if len(self.problems) > 1:
            more = "; ".join(f"row {r}: {m}" for r, m in self.problems[1:_MAX_LISTED])
            extra = len(self.problems) - _MAX_LISTED
            reason = f"{reason} ({len(self.problems)} bad rows in total; also {more}" + (
                f"; and {extra} more)" if extra > 0 else ")"
            )
        err = AnnotationError(self.path, row, reason)
        err.problems = list(self.problems)  # type: ignore[attr-defined]
        raise err

    def annotations(self, records: list[T], rows: list[int | str]) -> Annotations[T]:
        """:meth:`finish`, then the records of the file; an :class:`AnnotationError` when there are none (an
        empty list would only fail later, far from its cause)."""
        skipped = self.finish_nonempty(records)
        return Annotations(self.path, records, rows, skipped)

    def finish_nonempty(self, records: list) -> int:
        """:meth:`finish`, and an :class:`AnnotationError` when no record is left."""
        skipped = self.finish()
        if not records:
            why = f"all {skipped} rows are bad (skipped)" if skipped else "the file holds no usable rows"
            raise AnnotationError(self.path, "-", f"no annotations: {why}")
        return skipped


def collect(col: Collector, items: Iterable[tuple[int | str, Any]],
            parse: Callable[[Any], T | None]) -> tuple[list[T], list[int | str]]:
    """Parse every ``(row number, row)``: a :class:`RowProblem` goes to ``col``, None is dropped, anything
    else is a record. Returns the records and their row numbers."""
    records: list[T] = []
    rows: list[int | str] = []
    for row_no, row in items:
        try:
            rec = parse(row)
        except RowProblem as e:
            col.add(row_no, str(e))
            continue
        if rec is not None:
            records.append(rec)
            rows.append(row_no)
    return records, rows


# ---------------------------------------------------------------------------------------------------------
# opening files
# ---------------------------------------------------------------------------------------------------------
def load_json_list(path: Path) -> list:
    label = str(path)
    if not path.is_file():
        raise AnnotationError(label, "-", "file not found")
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except UnicodeDecodeError as e:
        raise AnnotationError(label, "-", f"not UTF-8 text ({e})") from e
    except json.JSONDecodeError as e:
        raise AnnotationError(label, f"line {e.lineno}", f"invalid JSON: {e.msg} (column {e.colno})") from e
    if not isinstance(data, list):
        raise AnnotationError(label, "-", f"expected a JSON list of objects, got {type(data).__name__}")
    return data


def json_items(path: Path) -> Iterator[tuple[int, Any]]:
    """``(index, item)`` of a JSON list (row numbers are 0-based item indices, as in ``data[i]``)."""
    return enumerate(load_json_list(path))


def text_lines(path: Path) -> list[str]:
    label = str(path)
    if not path.is_file():
        raise AnnotationError(label, "-", "file not found")
    try:
        return path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as e:
        raise AnnotationError(label, "-", f"not UTF-8 text ({e})") from e


def line_items(path: Path) -> Iterator[tuple[int, str]]:
    """``(line number, line)`` of every non-blank line (1-based line numbers)."""
    for ln_no, line in enumerate(text_lines(path), start=1):
        if line.strip():
            yield ln_no, line


# ---------------------------------------------------------------------------------------------------------
# field checks
# ---------------------------------------------------------------------------------------------------------
def resolve_path(data_root: str | os.PathLike | None, p: str) -> str:
    """``data_root / p`` unless ``p`` is absolute or a URL (``scheme://...``)."""
    if "://" in p or os.path.isabs(p) or data_root is None:
        return p
    root = str(data_root)
    if "://" in root:
        return root.rstrip("/") + "/" + p
    return os.path.join(root, p)


def root_of(path: Path, data_root) -> str:
    return str(path.parent) if data_root is None else str(data_root)


def check_dict(row: Any) -> dict:
    if not isinstance(row, dict):
        raise RowProblem(f"expected an object, got {type(row).__name__}")
    return row


def req_str(row: dict, key: str) -> str:
    if key not in row:
        raise RowProblem(f"field {key!r} missing")
    v = row[key]
    if not isinstance(v, str) or not v.strip():
        raise RowProblem(f"field {key!r} must be a non-empty string, got {v!r:.80}")
    return v


def opt_num(row: dict, key: str) -> float | None:
    if key not in row or row[key] is None:
        return None
    v = row[key]
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        raise RowProblem(f"field {key!r} must be a finite number, got {v!r:.80}")
    return float(v)


def opt_int(row: dict, key: str) -> int | None:
    v = opt_num(row, key)
    if v is None:
        return None
    if v != int(v):
        raise RowProblem(f"field {key!r} must be an integer, got {row[key]!r}")
    return int(v)


def time_range(row: dict, start_key: str = "start", end_key: str = "end") -> tuple[float | None, float | None]:
    s, e = opt_num(row, start_key), opt_num(row, end_key)
    if s is not None and s < 0:
        raise RowProblem(f"field {start_key!r} must be >= 0, got {s}")
    if s is not None and e is not None and e <= s:
        raise RowProblem(f"field {end_key!r} ({e}) must be greater than {start_key!r} ({s})")
    return s, e


def captions(row: dict, keys: Sequence[str] = ("captions", "caption")) -> tuple[str, list[str]]:
    for k in keys:
        if k in row:
            v = row[k]
            if isinstance(v, str):
                if not v.strip():
                    raise RowProblem(f"field {k!r} is empty")
                return k, [v]
            if isinstance(v, list):
                if not v:
                    raise RowProblem(f"field {k!r} is an empty list")
                bad = [i for i, c in enumerate(v) if not isinstance(c, str)]
                if bad:
                    raise RowProblem(f"field {k!r}: entry {bad[0]} is not a string ({v[bad[0]]!r:.60})")
                return k, list(v)
            raise RowProblem(f"field {k!r} must be a string or a list of strings, got {type(v).__name__}")
    raise RowProblem(f"field {' or '.join(repr(k) for k in keys)} missing")


def is_int(s: str) -> bool:
    s = s.strip()
    return s.lstrip("-").isdigit()
