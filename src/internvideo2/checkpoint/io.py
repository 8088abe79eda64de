"""Reading checkpoint files safely and loading state dicts strictly.

* Files: safetensors, or torch pickles read with ``weights_only=True`` — a pickle that needs arbitrary
  code is refused with :class:`CheckpointError`, never executed.
* Containers: ``{'module': sd}`` (DeepSpeed), ``{'model': sd}``, ``{'state_dict': sd}`` or a bare
  state dict (spec §8, fixtures README).
* Strict loading: missing, unexpected and mis-shaped keys are all listed in one error, unless the caller
  names the keys it intends to drop (``drop``) or to leave freshly initialised (``allow_missing``).
  Position tables are resampled (time linear, space bicubic) and 2D patch kernels inflated in time
  before the comparison. Nothing ever falls back to random weights silently.
"""
from __future__ import annotations

import fnmatch
import logging
import os
import pickle
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

import torch
from torch import nn

from ..errors import CheckpointError
from ..models.pos_embed import infer_grid, resample_pos_embed

log = logging.getLogger("internvideo2.checkpoint")

CONTAINER_KEYS = ("module", "model", "state_dict")


def read_checkpoint(path: str | os.PathLike) -> Any:
    """Load a checkpoint file (safetensors or a weights-only torch pickle) on CPU."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    if path.stat().st_size == 0:
        raise CheckpointError(f"{path}: empty file")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            return load_file(str(path))
        except Exception as e:  # safetensors raises its own error types for corrupt headers
            raise CheckpointError(f"{path}: not a readable safetensors file ({e})") from e
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        raise CheckpointError(
            f"{path}: refused to unpickle: the file needs more than tensors and plain containers "
            f"(weights_only=True). Convert it to safetensors on a machine you trust. Detail: {e}") from e
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError) as e:
        raise CheckpointError(f"{path}: corrupt or truncated checkpoint ({type(e).__name__}: {e})") from e


def unwrap_state_dict(obj: Any, source: str = "checkpoint") -> tuple[dict[str, torch.Tensor], str | None]:
    """Find the state dict inside an official container. Returns ``(state_dict, container_key)``."""
    if isinstance(obj, Mapping):
        for key in CONTAINER_KEYS:
            inner = obj.get(key)
            if isinstance(inner, Mapping) and inner and all(isinstance(v, torch.Tensor) for v in inner.values()):
                return dict(inner), key
        if obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
            return dict(obj), None
        keys = list(obj)[:10]
        raise CheckpointError(f"{source}: no state dict found; top-level keys {keys} (expected tensors, or one of "
                              f"{CONTAINER_KEYS} holding tensors)")
    raise CheckpointError(f"{source}: expected a dict, got {type(obj).__name__}")


def select_prefix(sd: Mapping[str, torch.Tensor], prefix: str) -> tuple[dict[str, torch.Tensor], list[str]]:
    """Keys under ``prefix`` (stripped) and the list of keys outside it."""
    inside = {k[len(prefix):]: v for k, v in sd.items() if k.startswith(prefix)}
    outside = [k for k in sd if not k.startswith(prefix)]
    return inside, outside


def strip_prefixes(sd: Mapping[str, torch.Tensor], prefixes: Iterable[str]) -> dict[str, torch.Tensor]:
    """Remove leading prefixes such as ``module.``, ``backbone.``, ``encoder.`` (official loaders strip
    ``backbone.`` and ``encoder.``)."""
    out = {}
    for k, v in sd.items():
        changed = True
        while changed:
            changed = False
            for p in prefixes:
                if k.startswith(p):
                    k, changed = k[len(p):], True
        out[k] = v
    return out


def matches(name: str, patterns: Iterable[str]) -> bool:
    """Glob match (``text_encoder.*``, ``clip_decoder.*``) or exact name."""
    return any(name == p or fnmatch.fnmatchcase(name, p) for p in patterns)


@dataclass
class LoadReport:
    """What a strict load did. Every non-trivial action is listed by key."""

    loaded: int = 0
    dropped: list[str] = field(default_factory=list)
    newly_initialised: list[str] = field(default_factory=list)
    resampled: dict[str, tuple] = field(default_factory=dict)
    inflated: list[str] = field(default_factory=list)
    source: str = ""

    def summary(self) -> str:
        parts = [f"loaded {self.loaded} tensors from {self.source or 'state dict'}"]
        if self.dropped:
            parts.append(f"dropped {len(self.dropped)} on request ({_short(self.dropped)})")
        if self.newly_initialised:
            parts.append(f"left {len(self.newly_initialised)} freshly initialised ({_short(self.newly_initialised)})")
        for k, (old, new) in self.resampled.items():
            parts.append(f"resampled {k} grid {old} -> {new}")
        if self.inflated:
            parts.append(f"adapted temporal patch kernel ({', '.join(self.inflated)})")
        return "; ".join(parts)


def _short(keys: list[str], n: int = 6) -> str:
    return ", ".join(keys[:n]) + (f", ... (+{len(keys) - n})" if len(keys) > n else "")


def inflate_patch_kernel(w: torch.Tensor, t_new: int, center: bool = True) -> torch.Tensor:
    """``[C, 3, t_old, p, p] -> [C, 3, t_new, p, p]`` (official ``inflate_weight`` / VideoMAE kernel
    pooling). 1 -> t: centre slice (``center``) or repeat / t; t -> 1: mean over time."""
    t_old = w.shape[2]
    if t_old == t_new:
        return w
    if t_old == 1:
        if center:
            out = torch.zeros(*w.shape[:2], t_new, *w.shape[3:], dtype=w.dtype)
            out[:, :, t_new // 2] = w[:, :, 0]
            return out
        return w.repeat(1, 1, t_new, 1, 1) / t_new
    if t_new == 1:
        return w.mean(dim=2, keepdim=True)
    raise CheckpointError(f"cannot adapt a temporal patch kernel of {t_old} frames to {t_new}")


def adapt_state_dict(model: nn.Module, sd: dict[str, torch.Tensor], *, orig_num_frames: int | None = None,
                     orig_img_size: int | None = None, center_inflate: bool = True,
                     report: LoadReport | None = None) -> dict[str, torch.Tensor]:
    """Resample position tables and inflate patch kernels so shapes fit ``model``.

    Tables are recognised by name: ``*pos_embed`` with a cls row (``pos_embed``, ``clip_pos_embed``;
    ``img_pos_embed`` / ``clip_img_pos_embed`` are single-frame), ``mae_pos_embed`` without one,
    ``pos_embed_spatial`` / ``pos_embed_temporal`` (separable). The source grid comes from the hints or
    is inferred (see :func:`~internvideo2.models.pos_embed.infer_grid`).
    """
    report = report if report is not None else LoadReport()
    target = model.state_dict()
    cfg = getattr(model, "cfg", None)
    out = dict(sd)
    # the checkpoint's own temporal patch size turns its frame count into a token count
    kernel = sd.get("patch_embed.proj.weight")
    tubelet = kernel.shape[2] if kernel is not None and kernel.ndim == 5 else getattr(cfg, "tubelet_size", 1)
    hint_t = max(orig_num_frames // tubelet, 1) if orig_num_frames else None
    patch = getattr(cfg, "patch_size", 14)
    hint_hw = (orig_img_size // patch,) * 2 if orig_img_size else None
    for key, value in sd.items():
        if key not in target or target[key].shape == value.shape:
            continue
        want = target[key].shape
        leaf = key.rsplit(".", 1)[-1]
        if leaf.endswith("pos_embed") and cfg is not None and value.ndim == 3 and value.shape[-1] == want[-1]:
            T, H, W = cfg.grid
            single = "img_pos_embed" in leaf
            n_extra = 0 if leaf == "mae_pos_embed" else 1
            new_grid = (1, H, W) if single else (T, H, W)
            try:
                old_grid = infer_grid(value.shape[1], n_extra, new_grid, 1 if single else hint_t, hint_hw)
            except ValueError as e:
                raise CheckpointError(f"{key}: {e}") from e
            out[key] = resample_pos_embed(value, old_grid, new_grid, n_extra)
            report.resampled[key] = (old_grid, new_grid)
        elif leaf == "pos_embed_spatial" and cfg is not None:
            _, H, W = cfg.grid
            side = round(value.shape[1] ** 0.5)
            out[key] = resample_pos_embed(value, (1, side, side), (1, H, W), 0)
            report.resampled[key] = ((1, side, side), (1, H, W))
        elif leaf == "pos_embed_temporal" and cfg is not None:
            T = cfg.grid[0]
            out[key] = resample_pos_embed(value, (value.shape[1], 1, 1), (T, 1, 1), 0)
            report.resampled[key] = ((value.shape[1], 1, 1), (T, 1, 1))
        elif key.endswith("patch_embed.proj.weight") and value.ndim == 5 and value.shape[:2] == want[:2] \
                and value.shape[3:] == want[3:]:
            out[key] = inflate_patch_kernel(value, want[2], center_inflate)
            report.inflated.append(f"{key}: {value.shape[2]} -> {want[2]} frames")
    return out


def load_state_dict_strict(model: nn.Module, sd: Mapping[str, torch.Tensor], *, drop: Iterable[str] = (),
                           allow_missing: Iterable[str] = (), orig_num_frames: int | None = None,
                           orig_img_size: int | None = None, center_inflate: bool = True,
                           source: str = "") -> LoadReport:
    """Load ``sd`` into ``model`` strictly.

    Args:
        drop: patterns of checkpoint keys the caller intends to discard (e.g. ``"clip_decoder.*"``).
            A pattern that matches nothing is an error (it means the caller's expectation is wrong).
        allow_missing: patterns of model keys the caller intends to leave freshly initialised (e.g. a
            new classification head). Also an error when unmatched.
        orig_num_frames / orig_img_size: the checkpoint's frame count / image size, when they cannot
            be inferred from the table shapes.
    Raises:
        CheckpointError listing every missing, unexpected and mis-shaped key.
    """
    report = LoadReport(source=source)
    drop, allow_missing = list(drop), list(allow_missing)
    sd = dict(sd)
    for pattern in drop:
        hit = [k for k in sd if matches(k, [pattern])]
        if not hit:
            raise CheckpointError(f"{source or 'checkpoint'}: drop pattern {pattern!r} matches no key")
        for k in hit:
            del sd[k]
        report.dropped += hit
    sd = adapt_state_dict(model, sd, orig_num_frames=orig_num_frames, orig_img_size=orig_img_size,
                          center_inflate=center_inflate, report=report)
    target = model.state_dict()
    missing = [k for k in target if k not in sd]
    unexpected = [k for k in sd if k not in target]
    mismatched = [f"{k}: checkpoint {tuple(sd[k].shape)} vs model {tuple(target[k].shape)}"
                  for k in sd if k in target and sd[k].shape != target[k].shape]
    for pattern in allow_missing:
        hit = [k for k in missing if matches(k, [pattern])]
        if not hit and not any(matches(k, [pattern]) for k in target):
            raise CheckpointError(f"{source or 'checkpoint'}: allow_missing pattern {pattern!r} matches no model key")
        report.newly_initialised += hit
    missing = [k for k in missing if k not in report.newly_initialised]
    if missing or unexpected or mismatched:
        lines = [f"{source or 'checkpoint'} does not fit {type(model).__name__}:"]
        for title, keys in (("missing", missing), ("unexpected", unexpected), ("mis-shaped", mismatched)):
            if keys:
                lines.append(f"  {len(keys)} {title}: " + ", ".join(keys[:40]) + (" ..." if len(keys) > 40 else ""))
        lines.append("  (name keys to discard with drop=[...], or model keys to leave initialised with "
                     "allow_missing=[...])")
        raise CheckpointError("\n".join(lines))
    result = model.load_state_dict(sd, strict=not report.newly_initialised)
    if report.newly_initialised:
        assert set(result.missing_keys) == set(report.newly_initialised) and not result.unexpected_keys
    report.loaded = len(sd)
    log.info(report.summary())
    return report
