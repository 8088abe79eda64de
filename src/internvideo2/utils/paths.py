"""Checks of the paths a user names, made before any work starts.

Each raises :class:`~internvideo2.errors.ConfigError` naming the field (the command line shows it as the
flag) with the path and what is wrong with it: a missing input, a folder where a file is expected, an
output that cannot be written. Catching these up front is what lets a command exit with "usage" (2) and
nothing half-done, instead of failing an hour in.
"""
from __future__ import annotations

import errno
import os
from pathlib import Path

from ..errors import ConfigError

__all__ = ["input_file", "input_path", "input_dir", "output_dir", "output_file"]


# os.path's predicates answer False where a stat fails for any reason (Path.exists raises PermissionError
# inside a folder this process may not search): the reason is then found by walking up
_exists, _isdir = os.path.exists, os.path.isdir


def _missing(path: Path) -> str:
    if os.path.islink(path):
        return f"{path}: broken symbolic link (points to {os.readlink(path)})"
    parent = path.parent
    while not _exists(parent) and parent != parent.parent:
        parent = parent.parent
    if parent.exists() and not os.access(parent, os.X_OK):
        return f"{path}: permission denied (cannot look inside {parent})"
    return f"{path}: no such file or folder"


def input_path(path: str | os.PathLike, field: str) -> Path:
    """An existing, readable file or folder."""
    p = Path(path).expanduser()
    if not _exists(p):
        raise ConfigError(field, _missing(p))
    if not os.access(p, os.R_OK) or (_isdir(p) and not os.access(p, os.X_OK)):
        raise ConfigError(field, f"{p}: permission denied")
    return p


def input_file(path: str | os.PathLike, field: str, what: str = "file") -> Path:
    """An existing, readable regular file (``what`` names it in the message: "YAML file", "checkpoint")."""
    p = input_path(path, field)
    if _isdir(p):
        raise ConfigError(field, f"{p}: is a folder, expected a {what}")
    return p


def input_dir(path: str | os.PathLike, field: str) -> Path:
    """An existing, readable folder."""
    p = input_path(path, field)
    if not _isdir(p):
        raise ConfigError(field, f"{p}: is a file, expected a folder")
    return p


def _creatable(p: Path, field: str) -> None:
    """``p`` does not exist: its nearest existing ancestor must be a folder this process may write in."""
    parent = p.parent
    while not _exists(parent) and parent != parent.parent:
        parent = parent.parent
    if not _isdir(parent):
        raise ConfigError(field, f"{p}: cannot be created, {parent} is a file")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise ConfigError(field, f"{p}: permission denied (cannot write in {parent})")


def output_dir(path: str | os.PathLike, field: str, create: bool = True) -> Path:
    """A folder results can be written into: an existing writable folder, or one that can be created (and
    is, when ``create``)."""
    p = Path(path).expanduser()
    if _exists(p):
        if not _isdir(p):
            raise ConfigError(field, f"{p}: exists and is not a folder")
        if not os.access(p, os.W_OK | os.X_OK):
            raise ConfigError(field, f"{p}: permission denied (the folder is not writable)")
        return p
    _creatable(p, field)
    if create:
        try:
            p.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            reason = "permission denied" if e.errno in (errno.EACCES, errno.EPERM) else (e.strerror or str(e))
            raise ConfigError(field, f"{p}: {reason}") from None
    return p


def output_file(path: str | os.PathLike, field: str) -> Path:
    """A file that can be written: an existing writable file, or a new one in a folder that exists or can be
    created (it is not created here)."""
    p = Path(path).expanduser()
    if _isdir(p):
        raise ConfigError(field, f"{p}: is a folder, expected an output file name")
    if _exists(p):
        if not os.access(p, os.W_OK) or not os.access(p.parent, os.W_OK | os.X_OK):
            raise ConfigError(field, f"{p}: permission denied")
        return p
    _creatable(p, field)
    return p
