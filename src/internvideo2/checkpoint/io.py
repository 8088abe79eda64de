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
import warnings
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import CheckpointError
from ..models.pos_embed import infer_grid, resample_pos_embed

log = logging.getLogger("internvideo2.checkpoint")

CONTAINER_KEYS = ("module", "model", "state_dict")


def sniff_format(path: Path) -> str:
    """What a file holds, from its first bytes (never from its name): ``safetensors``, ``torch-zip``
    (``torch.save``), ``pickle`` (legacy ``torch.save``), or a short description of something else (``an MP4
    or MOV video``, ``text``, ...). Unreadable files raise :class:`CheckpointError` (permission denied, ...)."""
    try:
        with open(path, "rb") as f:
            head = f.read(16)
    except PermissionError:
        raise CheckpointError(f"{path}: permission denied") from None
    except OSError as e:
        raise CheckpointError(f"{path}: cannot be read ({e.strerror or e})") from None
    if len(head) >= 9 and head[8:9] == b"{" and 2 <= int.from_bytes(head[:8], "little") <= 100_000_000:
        return "safetensors"
    if head.startswith(b"PK\x03\x04"):
        return "torch-zip"
    if head[:1] == b"\x80":
        return "pickle"
    if head[4:8] == b"ftyp":
        return "an MP4 or MOV video"
    if head.startswith(b"\x1aE\xdf\xa3"):
        return "a Matroska/WebM video"
    if head.startswith((b"RIFF", b"ID3", b"OggS", b"fLaC")):
        return "an audio or AVI file"
    if head.startswith((b"\x89PNG", b"\xff\xd8\xff", b"GIF8")):
        return "an image"
    if head.lstrip().startswith((b"{", b"[")):
        return "JSON text"
    return "an unknown format"


def read_checkpoint(path: str | os.PathLike) -> Any:
    """Load a checkpoint file (safetensors or a weights-only torch pickle) on CPU. The format is read from
    the file's bytes, not its name (a safetensors file named ``.pth`` loads; a video given as a checkpoint is
    named as what it is)."""
    path = Path(path)
    if path.is_dir():  # a Hugging Face style folder
        for name in ("model.safetensors", "pytorch_model.bin"):
            if (path / name).is_file():
                path = path / name
                break
        else:
            raise CheckpointError(f"{path}: no model.safetensors or pytorch_model.bin in this folder")
    if not path.exists():
        raise CheckpointError(f"{path}: checkpoint file not found")
    if not path.is_file():
        raise CheckpointError(f"{path}: not a regular file")
    if path.stat().st_size == 0:
        raise CheckpointError(f"{path}: empty file")
    kind = sniff_format(path)
    if kind == "safetensors":
        from safetensors.torch import load_file

        try:
            return load_file(str(path))
        except Exception as e:  # safetensors raises its own error types for corrupt headers
            raise CheckpointError(f"{path}: not a readable safetensors file ({e})") from None
    if kind not in ("torch-zip", "pickle"):
        raise CheckpointError(f"{path}: not a checkpoint: the file is {kind} (expected safetensors or torch.save)")
    try:
        with warnings.catch_warnings():  # torch warns about pickle protocols it may not support: we answer below
            warnings.simplefilter("ignore", UserWarning)
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        raise CheckpointError(
            f"{path}: refused to unpickle: the file needs more than tensors and plain containers "
            f"(weights_only=True; {_unpickler_reason(e)}). Convert it to safetensors on a machine you "
            "trust.") from None
    except PermissionError:
        raise CheckpointError(f"{path}: permission denied") from None
    except MemoryError:
        raise CheckpointError(f"{path}: corrupt checkpoint (it asks for more memory than there is)") from None
    except Exception as e:  # a damaged pickle or zip can fail in any of the unpickler's steps
        raise CheckpointError(f"{path}: corrupt or truncated checkpoint ({type(e).__name__}: {e})") from None


def _unpickler_reason(exc: Exception) -> str:
    """The one informative line of torch's long weights-only refusal (e.g. ``Unsupported global: GLOBAL
    posix.system``)."""
    text = str(exc)
    _, marker, after = text.partition("WeightsUnpickler error:")
    lines = [ln.strip() for ln in (after if marker else text).splitlines() if ln.strip()]
    return (lines[0].rstrip(".") if lines else type(exc).__name__)[:200]


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
    """What a strict load did; every non-trivial action is listed by key, with a reason.

    Every model key ends up in exactly one of ``loaded``, ``aliased``, ``defaulted`` or
    ``newly_initialised``; every source key in ``loaded`` or ``dropped``.

    Attributes:
        source: where the weights came from.
        loaded: model keys copied from the source.
        aliased: model keys absent from the source but filled because they are the same tensor as a
            loaded key (tied weights: the MLM decoder, BEATs' shared relative-position bias).
        defaulted: absent model keys whose deterministic default is correct (key -> reason).
        newly_initialised: absent model keys that keep their fresh init on purpose (key -> reason).
        dropped: source keys deliberately discarded (key -> reason).
        resampled: position tables resampled (key -> (old grid, new grid)).
        inflated: patch kernels adapted in time.
        overridden: keys given by several parts of a model assembled from files, taken from the last
            (:func:`~internvideo2.checkpoint.loader.load_clip_parts`: the trained CLIP part wins).
    """

    source: str = ""
    loaded: list[str] = field(default_factory=list)
    aliased: list[str] = field(default_factory=list)
    defaulted: dict[str, str] = field(default_factory=dict)
    newly_initialised: dict[str, str] = field(default_factory=dict)
    dropped: dict[str, str] = field(default_factory=dict)
    resampled: dict[str, tuple] = field(default_factory=dict)
    inflated: list[str] = field(default_factory=list)
    overridden: list[str] = field(default_factory=list)

    def summary(self) -> str:
        parts = [f"loaded {len(self.loaded)} tensors from {self.source or 'state dict'}"]
        if self.aliased:
            parts.append(f"{len(self.aliased)} tied aliases")
        if self.defaulted:
            parts.append(f"defaulted {_short(sorted(self.defaulted))}")
        if self.dropped:
            parts.append(f"dropped {len(self.dropped)} on request ({_short(list(self.dropped))})")
        if self.newly_initialised:
            parts.append(f"NEWLY INITIALISED {len(self.newly_initialised)} ({_short(list(self.newly_initialised))})")
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


def _vision_cfg_of(model: nn.Module, prefix: str) -> Any:
    """The config with a token ``grid`` of the deepest module on ``prefix`` (``"vision_encoder."``), or None."""
    parts = prefix.rstrip(".").split(".") if prefix else []
    for n in range(len(parts), -1, -1):
        try:
            mod = model.get_submodule(".".join(parts[:n]))
        except AttributeError:
            continue
        cfg = getattr(mod, "cfg", None)
        if cfg is not None and hasattr(cfg, "grid"):
            return cfg
    return None


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
    out = dict(sd)
    for key, value in sd.items():
        if key not in target or not isinstance(value, torch.Tensor) or target[key].shape == value.shape:
            continue
        want = target[key].shape
        prefix, _, leaf = key.rpartition(".")
        prefix = prefix + "." if prefix else ""
        # the vision config of the encoder that holds the table (the model itself, or e.g. a stage-2
        # model's vision_encoder), and the checkpoint's own temporal patch size beside it, which turns
        # a frame count into a token count
        cfg = _vision_cfg_of(model, prefix)
        kernel = sd.get(prefix + "patch_embed.proj.weight")
        tubelet = kernel.shape[2] if kernel is not None and kernel.ndim == 5 else getattr(cfg, "tubelet_size", 1)
        hint_t = max(orig_num_frames // tubelet, 1) if orig_num_frames else None
        patch = getattr(cfg, "patch_size", 14)
        hint_hw = (orig_img_size // patch,) * 2 if orig_img_size else None
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


DropRule = Iterable[str] | Callable[[str], str | None] | None
MissingRule = Iterable[str] | Callable[[str], tuple[str, str] | None] | None


def _drop_fn(rule: DropRule) -> tuple[Callable[[str], str | None], list[str]]:
    if rule is None:
        return (lambda k: None), []
    if callable(rule):
        return rule, []
    patterns = list(rule)
    return (lambda k: "named by the caller" if matches(k, patterns) else None), patterns


def _missing_fn(rule: MissingRule) -> tuple[Callable[[str], tuple[str, str] | None], list[str]]:
    if rule is None:
        return (lambda k: None), []
    if callable(rule):
        return rule, []
    patterns = list(rule)
    return (lambda k: ("new", "named by the caller") if matches(k, patterns) else None), patterns


def load_state_dict_strict(model: nn.Module, sd: Mapping[str, torch.Tensor], *, drop: DropRule = None,
                           allow_missing: MissingRule = None, prefix: str = "",
                           orig_num_frames: int | None = None, orig_img_size: int | None = None,
                           center_inflate: bool = True, source: str = "") -> LoadReport:
    """Copy ``sd`` into ``model`` strictly, or raise :class:`CheckpointError` listing every missing,
    unexpected, mis-shaped and non-tensor key (nothing is copied then).

    Args:
        drop: checkpoint keys the caller intends to discard: glob patterns (``"clip_decoder.*"``; a
            pattern matching nothing is an error, it means the caller's expectation is wrong) or a
            function ``key -> reason | None``.
        allow_missing: model keys that may be absent: patterns (left freshly initialised, e.g. a new
            head; an unmatched pattern is an error) or a function ``key -> ("new" | "defaulted", reason)``.
        prefix: only source keys under this prefix are considered (stripped); the rest belong to other
            modules (e.g. ``"text_encoder."`` in a full stage-2 state dict).
        orig_num_frames / orig_img_size: the checkpoint's frame count / image size when the position
            tables cannot tell them; tables are resampled and 2D kernels inflated before the comparison.

    Tied tensors (one tensor under several model keys) may appear once or several times in the source;
    when several appear they must be equal.
    """
    report = LoadReport(source=source)
    where = source or "checkpoint"
    if prefix:
        sd = {k[len(prefix):]: v for k, v in sd.items() if k.startswith(prefix)}
        if not sd:
            raise CheckpointError(f"{where}: no key starts with {prefix!r}")
    drop_fn, drop_patterns = _drop_fn(drop)
    missing_fn, missing_patterns = _missing_fn(allow_missing)
    expected = model.state_dict(keep_vars=True)
    for pattern in drop_patterns:
        if not any(matches(k, [pattern]) for k in sd):
            raise CheckpointError(f"{where}: drop pattern {pattern!r} matches no key")
    for pattern in missing_patterns:
        if not any(matches(k, [pattern]) for k in expected):
            raise CheckpointError(f"{where}: allow_missing pattern {pattern!r} matches no model key")

    kept = {}
    for k, v in sd.items():
        reason = drop_fn(k) if k not in expected or drop_patterns else None
        if reason is not None:
            report.dropped[k] = reason
        else:
            kept[k] = v
    kept = adapt_state_dict(model, kept, orig_num_frames=orig_num_frames, orig_img_size=orig_img_size,
                            center_inflate=center_inflate, report=report)

    groups: dict[int, list[str]] = {}
    for k, t in expected.items():
        groups.setdefault(id(t), []).append(k)
    unexpected, mismatched, bad_type, missing = [], [], [], []
    for k, v in kept.items():
        if k not in expected:
            unexpected.append(k)
        elif not isinstance(v, torch.Tensor):
            bad_type.append(f"{k} ({type(v).__name__})")
        elif tuple(v.shape) != tuple(expected[k].shape):
            mismatched.append(f"{k}: checkpoint {tuple(v.shape)} vs model {tuple(expected[k].shape)}")
    for k, t in expected.items():
        if k in kept:
            continue
        if any(a in kept for a in groups[id(t)]):
            report.aliased.append(k)
            continue
        allowed = missing_fn(k)
        if allowed is None:
            missing.append(k)
        elif allowed[0] == "defaulted":
            report.defaulted[k] = allowed[1]
        else:
            report.newly_initialised[k] = allowed[1]
    if missing or unexpected or mismatched or bad_type:
        lines = [f"{where} does not fit {type(model).__name__}:"]
        for title, keys in (("missing keys", missing), ("unexpected keys", unexpected),
                            ("mis-shaped keys", mismatched), ("non-tensor values", bad_type)):
            if keys:
                lines.append(f"  {len(keys)} {title}: " + ", ".join(keys[:40]) + (" ..." if len(keys) > 40 else ""))
        lines.append("  (name keys to discard with drop=[...], or model keys to leave initialised with "
                     "allow_missing=[...])")
        raise CheckpointError("\n".join(lines))
    for names in groups.values():
        present = [n for n in names if n in kept]
        for other in present[1:]:
            if not torch.equal(kept[present[0]].cpu(), kept[other].cpu()):
                raise CheckpointError(f"{where}: {present[0]} and {other} are one tied tensor in "
                                      f"{type(model).__name__} but differ in the checkpoint")
    with torch.no_grad():
        for k, v in kept.items():
            expected[k].copy_(v)
            report.loaded.append(k)
    if report.newly_initialised:
        log.warning("%s: %d keys keep their RANDOM initialisation (not in the source): %s", where,
                    len(report.newly_initialised), _short(list(report.newly_initialised), 12))
    log.info(report.summary())
    return report
