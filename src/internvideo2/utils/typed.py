"""Typed mappings -> dataclasses, with errors that name the dotted field.

The training recipes (:mod:`internvideo2.train.config`) and every task's options are plain mappings read
from YAML; :func:`build_dataclass` turns one into its documented dataclass in one place: unknown keys are
refused (with a did-you-mean), values are checked against the field annotations (``int``, ``float``,
``bool``, ``str``, ``Literal``, ``Optional``, unions, lists, tuples, dicts, nested dataclasses) and only
lossless spellings are converted (``"1e-4"`` -> float, ``2.0`` -> int). Errors are
:class:`~internvideo2.errors.ConfigError` naming ``prefix.field``.
"""
from __future__ import annotations

import copy
import dataclasses
import difflib
import math
import types
import typing
from typing import Any, Literal, Union

from ..errors import ConfigError

__all__ = ["build_dataclass", "coerce", "field_types", "is_optional", "type_name"]

_HINTS: dict[type, dict[str, Any]] = {}


def field_types(cls: type) -> dict[str, Any]:
    if cls not in _HINTS:
        _HINTS[cls] = typing.get_type_hints(cls)
    return _HINTS[cls]


def is_optional(tp: Any) -> tuple[bool, Any]:
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1 and len(typing.get_args(tp)) == 2:
            return True, args[0]
    return False, tp


def type_name(tp: Any) -> str:
    opt, inner = is_optional(tp)
    if opt:
        return f"{type_name(inner)} or null"
    origin = typing.get_origin(tp)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(tp))
    if origin in (Union, types.UnionType):
        return " or ".join(type_name(a) if a is not type(None) else "null" for a in typing.get_args(tp))
    if origin in (list, tuple, dict):
        return f"{origin.__name__}"
    return getattr(tp, "__name__", str(tp))


def coerce(value: Any, tp: Any, name: str) -> Any:
    """Check ``value`` against the annotation ``tp``; convert only lossless spellings ('1e-4' -> float)."""
    opt, inner = is_optional(tp)
    if value is None:
        if opt:
            return None
        raise ConfigError(name, f"must be {type_name(tp)}, got null")
    tp = inner
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):  # e.g. ``bool | str``: the first member that accepts the value
        members = [a for a in typing.get_args(tp) if a is not type(None)]
        for member in members:
            if member is str and not isinstance(value, str):
                continue  # in a union a number is never read as a string (``bool | str`` given 3)
            try:
                return coerce(value, member, name)
            except ConfigError:
                continue
        raise ConfigError(name, f"must be {type_name(tp)}, got {value!r}")
    if dataclasses.is_dataclass(tp):
        return build_dataclass(tp, value, name)
    if origin is Literal:
        choices = typing.get_args(tp)
        if value not in choices or isinstance(value, bool) != any(isinstance(c, bool) for c in choices):
            raise ConfigError(name, f"must be one of {', '.join(repr(c) for c in choices)}, got {value!r}")
        return value
    if tp is Any:
        return copy.deepcopy(value)
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(name, f"must be true or false, got {value!r}")
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
                return int(value)
            raise ConfigError(name, f"must be an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool):
            raise ConfigError(name, f"must be a number, got {value!r}")
        if isinstance(value, (int, float)):
            return float(value)
        if isinstance(value, str):  # YAML 1.1 reads "1e-4" as a string
            try:
                return float(value)
            except ValueError:
                pass
        raise ConfigError(name, f"must be a number, got {value!r}")
    if tp is str:
        if isinstance(value, str):
            return value
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return str(value)
        raise ConfigError(name, f"must be a string, got {value!r}")
    if origin is list:
        (item_tp,) = typing.get_args(tp) or (Any,)
        if not isinstance(value, (list, tuple)):
            raise ConfigError(name, f"must be a list, got {value!r}")
        return [coerce(v, item_tp, f"{name}[{i}]") for i, v in enumerate(value)]
    if origin is tuple:
        args = typing.get_args(tp)
        if not isinstance(value, (list, tuple)) or len(value) != len(args):
            raise ConfigError(name, f"must be a list of {len(args)} values, got {value!r}")
        return tuple(coerce(v, a, f"{name}[{i}]") for i, (v, a) in enumerate(zip(value, args)))
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(name, f"must be a mapping, got {value!r}")
        return copy.deepcopy(value)
    raise ConfigError(name, f"unsupported field type {tp!r}")  # pragma: no cover - programming error


def build_dataclass(cls: type, tree: Any, prefix: str = "") -> Any:
    """``cls(**tree)`` with every key known and every value of its field's type. A :class:`ConfigError`
    raised by the dataclass itself (``__post_init__`` checks) is re-raised with ``prefix.`` before its field."""
    where = prefix or "config"
    if not isinstance(tree, dict):
        raise ConfigError(where, f"must be a mapping, got {tree!r}")
    hints = field_types(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    kwargs = {}
    for key, value in tree.items():
        full = f"{prefix}.{key}" if prefix else str(key)
        if key not in names:
            close = difflib.get_close_matches(str(key), names, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else f"; known keys: {', '.join(names)}"
            raise ConfigError(full, f"unknown key{hint}")
        kwargs[key] = coerce(value, hints[key], full)
    try:
        return cls(**kwargs)
    except ConfigError as e:
        if not prefix or e.field.startswith(prefix + "."):
            raise
        raise ConfigError(f"{prefix}.{e.field}", e.reason) from None


MAX_CONFIG_INT = 2**24  # widths, depths and counts of a model config: far above any real model, far below overflow
MAX_LAYERS = 1024  # blocks of one tower (InternVideo2-6B has 48): a damaged config must not build for hours


def check_fields(obj: Any, *, positive: tuple[str, ...] = (), nonneg: tuple[str, ...] = (),
                 unit: tuple[str, ...] = (), layers: tuple[str, ...] = ()) -> None:
    """Validate a config dataclass instance in place (call it first in ``__post_init__``): every field is
    coerced to its annotation (a wrong type is a :class:`ConfigError` naming it, as from YAML), every float is
    finite, every int within :data:`MAX_CONFIG_INT`, and the named fields are ``positive`` (> 0), ``nonneg``
    (>= 0), ``unit`` (in [0, 1]) or ``layers`` (in [0, :data:`MAX_LAYERS`]); None passes
    (optional fields). Nested dataclass fields are left to their own checks."""
    hints = field_types(type(obj))
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        tp = hints[f.name]
        if dataclasses.is_dataclass(is_optional(tp)[1]) and not isinstance(value, dict):
            if value is not None and not dataclasses.is_dataclass(value):
                raise ConfigError(f.name, f"must be a mapping, got {value!r}")
            continue
        value = coerce(value, tp, f.name)
        object.__setattr__(obj, f.name, value)
        for v in value if isinstance(value, tuple) else (value,):
            if isinstance(v, float) and not math.isfinite(v):
                raise ConfigError(f.name, f"must be a finite number, got {value!r}")
            if isinstance(v, int) and not isinstance(v, bool) and abs(v) > MAX_CONFIG_INT:
                raise ConfigError(f.name, f"{v} is beyond any model size (at most {MAX_CONFIG_INT})")
    for names, ok, what in ((positive, lambda v: v > 0, "> 0"), (nonneg, lambda v: v >= 0, ">= 0"),
                            (unit, lambda v: 0 <= v <= 1, "in [0, 1]"),
                            (layers, lambda v: 0 <= v <= MAX_LAYERS, f"in [0, {MAX_LAYERS}] (layers)")):
        for name in names:
            v = getattr(obj, name)
            if v is not None and not ok(v):
                raise ConfigError(name, f"must be {what}, got {v!r}")
