"""Typed errors. Every failure on user input names the file or field and the reason."""
from __future__ import annotations


class InternVideo2Error(Exception):
    """Base class for all errors raised on purpose by this package."""


class ConfigError(InternVideo2Error, ValueError):
    """A configuration value is invalid. The message names the field."""

    def __init__(self, field: str, reason: str):
        self.field = field
        self.reason = reason
        super().__init__(f"config field {field!r}: {reason}")


class CheckpointError(InternVideo2Error):
    """A checkpoint cannot be loaded as asked (bad file, missing/unexpected/mis-shaped keys...)."""


class MediaError(InternVideo2Error):
    """A media file cannot be used. ``path`` is the file, ``reason`` a short machine-greppable code."""

    def __init__(self, path: str, reason: str, detail: str = ""):
        self.path = str(path)
        self.reason = reason
        self.detail = detail
        msg = f"{self.path}: {reason}"
        if detail:
            msg += f" ({detail})"
        super().__init__(msg)


class AnnotationError(InternVideo2Error):
    """A row of an annotation file is broken. Names the file, the row and the field."""

    def __init__(self, path: str, row: int | str, reason: str):
        self.path = str(path)
        self.row = row
        self.reason = reason
        where = "" if row in ("-", None) else f" row {row}:"  # "-": the file as a whole
        super().__init__(f"{self.path}:{where} {reason}")


class ShapeError(InternVideo2Error, ValueError):
    """A tensor has the wrong shape, dtype or layout for the model it is given to."""


class ResourceError(InternVideo2Error):
    """The machine lacks what a request needs (memory, disk, a GPU), checked before the work starts. It can
    succeed later or elsewhere; the message says how much was needed and what is available."""
