"""``load_model``: one entry point for our saved folders and official checkpoint files."""
from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import CheckpointError
from ..models.config import find_vision, replace_vision
from ..models.registry import build_model
from .io import load_state_dict_strict, matches, read_checkpoint, select_prefix, strip_prefixes, unwrap_state_dict
from .official import OFFICIAL_CLASSES, detect_checkpoint
from .pretrained import CONFIG_FILE, from_pretrained

log = logging.getLogger("internvideo2.checkpoint")


def load_model(source: str | os.PathLike | Mapping, *, model_type: str | None = None, config: Any = None,
               official_class: str | None = None, official_kwargs: Mapping[str, Any] | None = None,
               drop: Iterable[str] = (), allow_missing: Iterable[str] = (), prefix: str | None = None,
               orig_num_frames: int | None = None, orig_img_size: int | None = None,
               num_frames: int | None = None, img_size: int | None = None, center_inflate: bool = True,
               device: str | torch.device = "cpu", dtype: torch.dtype | None = None) -> nn.Module:
    """Load a model with its weights, strictly. Never returns randomly initialised weights.

    ``source`` is one of:

    * a folder written by :func:`save_pretrained` (``config.json`` + ``model.safetensors``);
    * an official checkpoint file (``.pth``/``.pt``/``.bin``/``.safetensors``, bare or wrapped in
      ``module``/``model``/``state_dict``) or an already loaded dict.

    For official files the architecture is, in order of precedence: ``official_class`` +
    ``official_kwargs`` (the official constructor arguments, see ``OFFICIAL_CLASSES``); ``model_type``
    + ``config``; or detected from key names and shapes (released presets only). ``num_frames`` /
    ``img_size`` rebuild a saved folder's or a detected file's model for another input size (position
    tables resampled from the saved ones).

    ``drop`` names checkpoint keys (full names, globs allowed) you intend to discard, e.g. the text
    tower when loading only the vision encoder of a stage-2 file; anything else that does not fit
    raises :class:`CheckpointError` listing the keys. The returned model is in eval mode and carries
    ``model.load_report``.
    """
    if isinstance(source, (str, os.PathLike)) and Path(source).is_dir():
        if not (Path(source) / CONFIG_FILE).is_file():
            raise CheckpointError(f"{source}: a folder without {CONFIG_FILE}; not a saved internvideo2 model")
        model = from_pretrained(source, map_location=device, num_frames=num_frames, img_size=img_size)
        return model.to(dtype=dtype) if dtype is not None else model

    name = str(source) if isinstance(source, (str, os.PathLike)) else "state dict"
    obj = read_checkpoint(source) if isinstance(source, (str, os.PathLike)) else source
    sd, _container = unwrap_state_dict(obj, name)
    strip: tuple[str, ...] = ()
    drop = list(drop)

    if official_class is not None:
        if official_class not in OFFICIAL_CLASSES:
            raise CheckpointError(f"unknown official class {official_class!r}; known: {sorted(OFFICIAL_CLASSES)}")
        fmt = OFFICIAL_CLASSES[official_class]
        model_type, config = fmt.model_type, fmt.make_config(dict(official_kwargs or {}))
        prefix = prefix if prefix is not None else fmt.select_prefix
        strip = fmt.strip
    elif model_type is not None:
        if config is None:
            raise CheckpointError("model_type given without config")
    else:
        det = detect_checkpoint(sd, source=name, num_frames=orig_num_frames,
                                img_size=orig_img_size or 224)
        model_type, config = det.model_type, det.config
        prefix = prefix if prefix is not None else det.select_prefix
        if det.drop and not drop:
            log.warning("%s holds a %s checkpoint; loading only its vision encoder and dropping %s",
                        name, det.kind, ", ".join(det.drop))
            drop = list(det.drop)
        log.info("%s: detected %s (%s)", name, det.kind, model_type)
        strip = ("module.", "backbone.", "encoder.") if det.kind == "classifier" else ()
        if num_frames or img_size:
            vis = find_vision(config)
            orig_num_frames, orig_img_size = orig_num_frames or vis.num_frames, orig_img_size or vis.img_size
            config = replace_vision(config, **{k: v for k, v in (("num_frames", num_frames), ("img_size", img_size))
                                               if v})

    # discard what the caller named, then select the sub-model's keys
    dropped = [k for k in sd if matches(k, drop)]
    unmatched = [p for p in drop if not any(matches(k, [p]) for k in sd)]
    if unmatched:
        raise CheckpointError(f"{name}: drop pattern(s) {unmatched} match no key")
    sd = {k: v for k, v in sd.items() if k not in set(dropped)}
    if prefix:
        sd, outside = select_prefix(sd, prefix)
        if outside:
            raise CheckpointError(f"{name}: {len(outside)} keys outside {prefix!r} would be ignored: "
                                  f"{outside[:20]}; name them in drop=[...] if that is intended")
        if not sd:
            raise CheckpointError(f"{name}: no key starts with {prefix!r}")
    if strip:
        sd = strip_prefixes(sd, strip)

    model = build_model(model_type, config)
    report = load_state_dict_strict(model, sd, allow_missing=allow_missing, orig_num_frames=orig_num_frames,
                                    orig_img_size=orig_img_size, center_inflate=center_inflate, source=name)
    report.dropped = {k: "named by the caller" for k in dropped} | report.dropped
    model.load_report = report
    model.eval()
    return model.to(device=device, dtype=dtype) if dtype is not None else model.to(device)
