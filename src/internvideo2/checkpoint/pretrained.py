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

from ..errors import CheckpointError, ConfigError
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
        meta["weights_sha256"] = file_sha256(tmp)  # lets `internvideo2 info` tell a damaged file from a good one
    write_text(directory / CONFIG_FILE, json.dumps(meta, indent=2))
    return directory


def file_sha256(path: str | os.PathLike, chunk: int = 1 << 22) -> str:
    import hashlib

    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def inspect_pretrained(directory: str | os.PathLike, verify: bool = True) -> dict:
    """Check a saved folder without loading its weights into a model: ``config.json`` parses into the model
    type's typed config, ``model.safetensors`` has a valid header whose tensors are exactly the model's keys
    and shapes, and (``verify``) its SHA-256 matches the one recorded at save time. Returns a summary; raises
    :class:`CheckpointError` naming the file and the first problem."""
    from safetensors import safe_open

    from ..models.registry import build_model, model_class
    from ..utils.typed import build_dataclass

    directory = Path(directory)
    meta = read_config(directory)
    weights = directory / WEIGHTS_FILE
    if not weights.is_file():
        raise CheckpointError(f"{weights}: missing weights file")
    if not os.access(weights, os.R_OK):
        raise CheckpointError(f"{weights}: permission denied")
    try:
        config = build_dataclass(model_class(meta["model_type"]).config_class, meta["config"], "config")
    except ConfigError as e:
        raise CheckpointError(f"{directory / CONFIG_FILE}: field {e.field!r}: {e.reason}") from None
    except KeyError as e:
        raise CheckpointError(f"{directory / CONFIG_FILE}: {e.args[0]}") from None
    try:
        with safe_open(str(weights), framework="pt") as f:
            shapes = {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}
    except PermissionError:
        raise CheckpointError(f"{weights}: permission denied") from None
    except Exception as e:  # safetensors raises its own error types for a bad header or a short file
        raise CheckpointError(f"{weights}: damaged or not a safetensors file ({e})") from None
    try:
        with torch.device("meta"):
            model = build_model(meta["model_type"], config)
    except ConfigError as e:  # checks across fields (e.g. widths that must divide)
        raise CheckpointError(f"{directory / CONFIG_FILE}: field {e.field!r}: {e.reason}") from None
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    # safetensors stores one copy of tied weights: a key the file lacks is fine if its tensor is shared
    aliases: dict[int, list[str]] = {}
    for name, t in [*model.named_parameters(remove_duplicate=False), *model.named_buffers(remove_duplicate=False)]:
        aliases.setdefault(id(t), []).append(name)
    shared = {n for names in aliases.values() if len(names) > 1 and any(x in shapes for x in names) for n in names}
    missing = sorted(set(expected) - set(shapes) - shared)
    unexpected = sorted(set(shapes) - set(expected))
    wrong = sorted(k for k in set(shapes) & set(expected) if shapes[k] != expected[k])
    if missing or unexpected or wrong:
        raise CheckpointError(
            f"{weights} does not fit its config ({meta['model_type']}): missing {missing[:10]}, unexpected "
            f"{unexpected[:10]}, wrong shapes {[(k, shapes[k], expected[k]) for k in wrong[:10]]}")
    out = {"path": str(directory), "format": f"{FORMAT_NAME} (safetensors + config.json)",
           "model_type": meta["model_type"], "tensors": len(shapes),
           "parameters_M": round(sum(int(torch.Size(v).numel()) for v in shapes.values()) / 1e6, 2),
           "weights_bytes": weights.stat().st_size, "config": meta["config"]}
    recorded = meta.get("weights_sha256")
    if verify and recorded:
        actual = file_sha256(weights)
        if actual != recorded:
            raise CheckpointError(f"{weights}: damaged: its SHA-256 {actual[:16]}... differs from the one recorded "
                                  f"at save time {recorded[:16]}... (re-save or re-copy the model)")
    out["checksum"] = ("verified" if recorded else "none recorded") if verify else "not checked"
    return out


def read_config(directory: str | os.PathLike) -> dict:
    path = Path(directory) / CONFIG_FILE
    try:
        meta = json.loads(path.read_text())
    except FileNotFoundError:
        raise CheckpointError(f"{path}: missing (not a saved internvideo2 model folder)") from None
    except PermissionError:
        raise CheckpointError(f"{path}: permission denied") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{path}: invalid JSON ({e})") from None
    if not isinstance(meta, dict):
        raise CheckpointError(f"{path}: expected a JSON object, got {type(meta).__name__}")
    if meta.get("format") != FORMAT_NAME:
        raise CheckpointError(f"{path}: format {meta.get('format')!r} is not {FORMAT_NAME!r}")
    version = meta.get("format_version", 0)
    if isinstance(version, bool) or not isinstance(version, int):
        raise CheckpointError(f"{path}: field 'format_version' must be an integer, got {version!r:.60}")
    if version > FORMAT_VERSION:
        raise CheckpointError(f"{path}: format_version {meta['format_version']} is newer than this library "
                              f"({FORMAT_VERSION})")
    for key in ("model_type", "config"):
        if key not in meta:
            raise CheckpointError(f"{path}: field {key!r} missing")
    from ..models.registry import model_types

    if not isinstance(meta["model_type"], str) or meta["model_type"] not in model_types():
        raise CheckpointError(f"{path}: field 'model_type' must be one of {', '.join(model_types())}, got "
                              f"{meta['model_type']!r:.60}")
    sha = meta.get("weights_sha256")
    if sha is not None and not (isinstance(sha, str) and len(sha) == 64 and all(c in "0123456789abcdef" for c in sha)):
        raise CheckpointError(f"{path}: field 'weights_sha256' must be 64 hex digits, got {sha!r:.80}")
    if not isinstance(meta["config"], dict):
        raise CheckpointError(f"{path}: field 'config' must be an object, got {type(meta['config']).__name__}")
    return meta


def from_pretrained(directory: str | os.PathLike, map_location: str | torch.device = "cpu", *,
                    num_frames: int | None = None, img_size: int | None = None) -> nn.Module:
    """Build the model described by ``config.json`` and load ``model.safetensors`` strictly.

    ``num_frames`` / ``img_size`` rebuild the model for another input: its vision config is changed and the
    position tables are resampled from the saved ones (time linear, space bicubic), as for official files."""
    from safetensors.torch import load_model

    from ..models.config import find_vision, replace_vision
    from ..models.registry import build_model, model_class
    from ..utils.typed import build_dataclass

    directory = Path(directory)
    # the config and the weights' header must agree before any memory is allocated for the model
    inspect_pretrained(directory, verify=False)
    meta = read_config(directory)
    weights = directory / WEIGHTS_FILE
    config = build_dataclass(model_class(meta["model_type"]).config_class, meta["config"], "config")
    if num_frames or img_size:
        saved = find_vision(config)
        changes = {k: v for k, v in (("num_frames", num_frames), ("img_size", img_size)) if v}
        model = build_model(meta["model_type"], replace_vision(config, **changes))
        from safetensors.torch import load_file

        from .io import load_state_dict_strict

        try:
            sd = load_file(str(weights))
        except Exception as e:
            raise CheckpointError(f"{weights}: cannot be read ({type(e).__name__}: {e})") from None
        model.load_report = load_state_dict_strict(model, sd, orig_num_frames=saved.num_frames,
                                                   orig_img_size=saved.img_size, source=str(weights))
        return model.to(map_location).eval()
    model = build_model(meta["model_type"], config)
    try:
        missing, unexpected = load_model(model, str(weights), strict=False, device=str(map_location))
    except Exception as e:
        raise CheckpointError(f"{weights}: cannot load ({e})") from e
    if missing or unexpected:
        raise CheckpointError(f"{weights} does not fit {meta['model_type']}: missing {sorted(missing)[:20]}, "
                              f"unexpected {sorted(unexpected)[:20]}")
    return model.eval()
