"""Atomic files and JSON: the one implementation every writer of the package uses.

A file written with :func:`atomic_write` goes to a temporary name next to its target (``.NAME.tmpPID``),
is fsync'ed, renamed onto the target and the folder is fsync'ed: a reader (or a run resumed after a kill)
sees the old file or the whole new one, never a torn one. Temporary names start with a dot, so folder
listings that skip hidden files never take one for data; :func:`clean_tmp` removes leftovers.
"""
from __future__ import annotations

import contextlib
import dataclasses
import json
import numbers
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, BinaryIO

__all__ = ["tmp_name", "is_tmp_name", "fsync_dir", "default_file_mode", "commit", "atomic_path", "atomic_write",
           "write_bytes", "write_text", "write_json", "clean_tmp", "jsonable"]


def tmp_name(path: str | os.PathLike) -> Path:
    """The temporary name :func:`atomic_write` uses for ``path`` in this process."""
    path = Path(path)
    return path.with_name(f".{path.name}.tmp{os.getpid()}")


def is_tmp_name(name: str) -> bool:
    """Whether a file name is one of :func:`tmp_name`'s (left behind by a killed writer)."""
    return name.startswith(".") and ".tmp" in name


def fsync_dir(path: str | os.PathLike) -> None:
    """fsync a folder, so that a rename inside it survives a power cut (no-op where folders cannot be
    opened)."""
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def default_file_mode() -> int:
    """The mode ``open()`` gives a new file here: ``0o666`` minus the process umask."""
    try:
        with open("/proc/self/status") as f:  # read without changing it (os.umask has no getter)
            for line in f:
                if line.startswith("Umask:"):
                    return 0o666 & ~int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    old = os.umask(0o022)
    os.umask(old)
    return 0o666 & ~old


def commit(tmp: str | os.PathLike, path: str | os.PathLike) -> Path:
    """Make a finished temporary file the real one: give it the normal mode of a new file (some libraries
    write 0600 temporaries, which other users could then not read), fsync it, rename it onto ``path``, fsync
    the folder."""
    os.chmod(tmp, default_file_mode())
    fd = os.open(tmp, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    fsync_dir(Path(path).parent)
    return Path(path)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """``with atomic_path(p) as tmp:`` write the file ``tmp`` by any means (a library that wants a file
    name); on leaving the block it is committed onto ``p`` (:func:`commit`), on an error it is removed and
    ``p`` is untouched."""
    path = Path(path)
    tmp = tmp_name(path)
    try:
        yield tmp
        commit(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


def atomic_write(path: str | os.PathLike, write: Callable[[BinaryIO], Any]) -> Path:
    """Call ``write(binary file)`` on a temporary file next to ``path`` and commit it onto ``path``. On any
    error the temporary file is removed and the old ``path`` is untouched."""
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            write(f)
    return Path(path)


def write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    return atomic_write(path, lambda f: f.write(data))


def write_text(path: str | os.PathLike, text: str) -> Path:
    return write_bytes(path, text.encode("utf-8"))


def write_json(path: str | os.PathLike, obj: Any, indent: int | None = 2, **dumps: Any) -> Path:
    """``json.dumps(jsonable(obj))`` + newline, atomically."""
    return write_text(path, json.dumps(jsonable(obj), indent=indent, **dumps) + "\n")


def clean_tmp(folder: str | os.PathLike) -> int:
    """Remove the temporary files killed writers left in ``folder``; returns how many."""
    n = 0
    folder = Path(folder)
    if folder.is_dir():
        for p in folder.iterdir():
            if p.is_file() and is_tmp_name(p.name):
                p.unlink()
                n += 1
    return n


def jsonable(obj: Any) -> Any:
    """A JSON-serialisable (and YAML/pickle-safe) copy: dataclasses become dicts, tuples lists, mapping keys
    strings; numbers, strings, booleans and None stay; anything else becomes ``str(obj)``."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: jsonable(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (str, int, float, bool)) or obj is None:
        return obj
    if isinstance(obj, numbers.Integral):  # numpy / torch integer scalars
        return int(obj)
    if isinstance(obj, numbers.Real):
        return float(obj)
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    return str(obj)
