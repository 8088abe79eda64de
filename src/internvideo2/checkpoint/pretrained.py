"""Our own format: a folder with ``config.json`` (model type + typed config) and ``model.safetensors``.

``save_pretrained(model, dir)`` / ``from_pretrained(dir)``; loading is strict (safetensors'
``load_model`` checks every key and shape, and knows about tied weights).
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from torch import nn

from ..errors import CheckpointError
from ..utils.io import atomic_path, jsonable, write_text

FORMAT_NAME = "internvideo2"
FORMAT_VERSION = 1
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"


def save_pretrained(model: nn.Module, directory: str | os.PathLike, extra: dict | None = None) -> Path:
    """Write ``config.json`` and ``model.safetensors`` atomically (temp names, then rename)."""
    from safetensors.torch import save_model

    model_type = getattr(model, "model_type", None)
    config = getattr(model, "config", None)
    if model_type is None or config is None:
        raise TypeError(f"{type(model).__name__} has no model_type/config; only package models can be saved")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    meta = {"format": FORMAT_NAME, "format_version": FORMAT_VERSION, "model_type": model_type,
            "config": jsonable(config)}
    if extra:
        meta["extra"] = extra
    with atomic_path(directory / WEIGHTS_FILE) as tmp:
        save_model(model, str(tmp))
    write_text(directory / CONFIG_FILE, json.dumps(meta, indent=2))
    return directory


def read_config(directory: str | os.PathLike) -> dict:
    path = Path(directory) / CONFIG_FILE
    try:
        meta = json.loads(path.read_text())
    except FileNotFoundError as e:
        raise CheckpointError(f"{path}: missing (not a saved internvideo2 model folder)") from e
    except json.JSONDecodeError as e:
        raise CheckpointError(f"{path}: invalid JSON ({e})") from e
    if meta.get("format") != FORMAT_NAME:
        raise CheckpointError(f"{path}: format {meta.get('format')!r} is not {FORMAT_NAME!r}")
    if meta.get("format_version", 0) > FORMAT_VERSION:
        raise CheckpointError(f"{path}: format_version {meta['format_version']} is newer than this library "
                              f"({FORMAT_VERSION})")
    for key in ("model_type", "config"):
        if key not in meta:
            raise CheckpointError(f"{path}: field {key!r} missing")
    return meta


def from_pretrained(directory: str | os.PathLike, map_location: str | torch.device = "cpu") -> nn.Module:
    """Build the model described by ``config.json`` and load ``model.safetensors`` strictly."""
    from safetensors.torch import load_model

    from ..models.registry import build_model

    directory = Path(directory)
    meta = read_config(directory)
    model = build_model(meta["model_type"], meta["config"])
    weights = directory / WEIGHTS_FILE
    if not weights.is_file():
        raise CheckpointError(f"{weights}: missing weights file")
    try:
        missing, unexpected = load_model(model, str(weights), strict=False, device=str(map_location))
    except Exception as e:
        raise CheckpointError(f"{weights}: cannot load ({e})") from e
    if missing or unexpected:
        raise CheckpointError(f"{weights} does not fit {meta['model_type']}: missing {sorted(missing)[:20]}, "
                              f"unexpected {sorted(unexpected)[:20]}")
    return model.eval()
