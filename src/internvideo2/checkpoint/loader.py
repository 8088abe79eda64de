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
from .detect import detect_checkpoint
from .io import load_state_dict_strict, matches, read_checkpoint, select_prefix, strip_prefixes, unwrap_state_dict
from .official import OFFICIAL_CLASSES
from .pretrained import CONFIG_FILE, from_pretrained
from .zoo import check_file, find_released, released

log = logging.getLogger("internvideo2.checkpoint")


def load_model(source: str | os.PathLike | Mapping, *, model_type: str | None = None, config: Any = None,
               official_class: str | None = None, official_kwargs: Mapping[str, Any] | None = None,
               drop: Iterable[str] = (), allow_missing: Iterable[str] = (), prefix: str | None = None,
               orig_num_frames: int | None = None, orig_img_size: int | None = None,
               num_frames: int | None = None, img_size: int | None = None, center_inflate: bool = True,
               device: str | torch.device = "cpu", dtype: torch.dtype | None = None,
               vision_only: bool = False, path: str | os.PathLike | Mapping[str, Any] | None = None,
               verify_sha256: bool = True, text_tokenizer: str | os.PathLike | None = None) -> nn.Module:
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

    ``text_tokenizer`` sets the text tower's tokenizer files (``config.vocab``): a BERT ``vocab.txt``, the
    CLIP BPE (``bpe_simple_vocab_16e6.txt.gz`` or a ``vocab.json`` + ``merges.txt`` folder) or the LLaMA
    tokenizer folder. Released files record no tokenizer; the default is the package's uncased BERT vocab,
    the gz of an installed open_clip, and none for LLaMA.

    ``source`` may also be the official name or tag of a released file (``internvideo2 info --released``)
    with ``path`` = where you saved it: the file is checked to be the one named (kind, preset, frames,
    classes, and the published sha256 unless ``verify_sha256=False``). Models assembled from several
    files (the CLIP S/B/L) take ``path={"clip": ..., "vision": ..., "text": ...}``.

    A detected multi-part file loads as the whole model it is (a stage-2 file as the video-text model with
    its BERT and ITM head, the audio-visual 6B stage 2 with BEATs, a CLIP file with its text tower).
    ``vision_only=True`` asks for its vision encoder alone; files of models the package does not build yet
    (the chat model) raise an error naming their class and pointing at ``vision_only``.
    """
    if path is not None or (isinstance(source, str) and not Path(source).exists()
                            and find_released(source) is not None):
        if not isinstance(source, str):
            raise CheckpointError("path= goes with the name or tag of a released file as source")
        return load_released(source, path, verify_sha256=verify_sha256, num_frames=num_frames, img_size=img_size,
                             device=device, dtype=dtype, vision_only=vision_only, text_tokenizer=text_tokenizer)
    if isinstance(source, (str, os.PathLike)) and Path(source).is_dir():
        if not (Path(source) / CONFIG_FILE).is_file():
            raise CheckpointError(f"{source}: a folder without {CONFIG_FILE}; not a saved internvideo2 model")
        model = from_pretrained(source, map_location=device, num_frames=num_frames, img_size=img_size)
        return use_tokenizer(model.to(dtype=dtype) if dtype is not None else model, text_tokenizer)

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
        det = detect_checkpoint(sd, source=name, num_frames=orig_num_frames, img_size=orig_img_size,
                                vision_only=vision_only)
        if det.model_type is None:
            raise CheckpointError(det.unsupported)
        model_type, config = det.model_type, det.config
        prefix = prefix if prefix is not None else det.select_prefix
        if det.drop and not drop:
            log.info("%s: loading only the vision encoder of a %s file (vision_only=True); discarding %s",
                     name, det.kind, ", ".join(det.drop))
            drop = list(det.drop)
        if det.key_map is not None:
            sd = det.key_map(sd)
        if det.allow_missing and not allow_missing:
            allow_missing = lambda k, rules=det.allow_missing: next(
                (("new", why) for pat, why in rules.items() if matches(k, [pat])), None)
        log.info("%s: detected %s (%s) -> %s", name, det.kind, det.official_class, model_type)
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
    model = model.to(device=device, dtype=dtype) if dtype is not None else model.to(device)
    return use_tokenizer(model, text_tokenizer)


def _read(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    from ..utils.paths import input_file

    input_file(path, "path")
    return unwrap_state_dict(read_checkpoint(path), str(path))[0]


def load_released(name: str, path: str | os.PathLike | Mapping[str, Any] | None, *, verify_sha256: bool = True,
                  **kwargs: Any) -> nn.Module:
    """Load the released file ``name`` (official name or tag) from ``path``, checking it is that file."""
    from .pretrained import file_sha256

    entry = released(name)
    if path is None:
        raise CheckpointError(f"{entry.name} ({entry.tag}): the package never downloads; fetch it by hand from "
                              f"{entry.url} and pass path=<the local file>")
    if entry.parts:
        paths = dict(path) if isinstance(path, Mapping) else {"clip": path}
        need = {"clip", *entry.parts}
        if set(paths) != need:
            parts = ", ".join(f"{k}: {released(v).name}" for k, v in entry.parts.items())
            raise CheckpointError(f"{entry.tag} is assembled from {sorted(need)}: pass path={{part: file}} "
                                  f"with exactly those parts (clip: {entry.name}, {parts}); got {sorted(paths)}")
        if verify_sha256:
            for part, p in paths.items():
                ref = entry if part == "clip" else released(entry.parts[part])
                _check_sha(ref, p, file_sha256)
        vision_entry = released(entry.parts["vision"])
        problems = check_file(vision_entry, detect_checkpoint(_read(paths["vision"]), source=str(paths["vision"])),
                              str(paths["vision"]))
        if problems:
            raise CheckpointError(f"{paths['vision']} is not {vision_entry.name} ({vision_entry.tag}), the vision part "
                                  f"of {entry.tag}: " + "; ".join(problems))
        return load_clip_parts(vision=paths["vision"], text=paths["text"], clip=paths["clip"], **kwargs)
    if isinstance(path, Mapping):
        raise CheckpointError(f"{entry.tag} is a single file: pass path=<file>")
    if verify_sha256:
        _check_sha(entry, path, file_sha256)
    sd = _read(path)
    det = detect_checkpoint(sd, source=str(path), vision_only=kwargs.get("vision_only", False))
    problems = check_file(entry, det, str(path))
    if problems:
        raise CheckpointError(f"{path} is not {entry.name} ({entry.tag}): " + "; ".join(problems))
    return load_model(sd, **kwargs)


def _check_sha(entry, path, file_sha256) -> None:
    if entry.sha256 is None:
        return
    got = file_sha256(path)
    if got != entry.sha256:
        raise CheckpointError(f"{path}: sha256 {got} is not the published {entry.sha256} of {entry.name} "
                              f"({entry.url}); a partial download or another file (verify_sha256=False skips this)")


# keys of a vision file that a CLIP vision tower does not have (classifier heads, stage-1/distillation decoders)
_NOT_CLIP_VISION = ("head.*", "fc_norm.*", "extra_mlp.*", "clip_decoder.*", "final_clip_decoder.*", "mae_decoder.*",
                    "clip_pos_embed", "mae_pos_embed", "img_pos_embed", "clip_img_pos_embed")


def load_clip_parts(*, vision: str | os.PathLike | Mapping, text: str | os.PathLike | Mapping,
                    clip: str | os.PathLike | Mapping, num_frames: int | None = None, img_size: int | None = None,
                    device: str | torch.device = "cpu", dtype: torch.dtype | None = None,
                    vision_only: bool = False, text_tokenizer: str | os.PathLike | None = None) -> nn.Module:
    """An InternVideo2-CLIP model assembled from its released parts, as the official loader does
    (``InternVideo2_CLIP_small.load_checkpoint`` then ``pretrained_path``), but strictly:

    * ``vision``: a fine-tuned classifier, distilled or stage-1 file (core + attention pool; heads and
      decoders are dropped and listed) or a stage-2 file (its ``vision_encoder.*``);
    * ``text``: a file with the tower under ``text_encoder.*`` (``mobileclip_blt.pt``; its ``image_encoder.*``
      and ``logit_scale`` are dropped and listed) or LLaMA keys ``transformer.*`` + ``text_projection``;
    * ``clip``: the trained part (attention pool, ``vision_align``, ``temp``, ...), which overrides the same
      keys of the other parts (listed in the report).

    Every key of the model must come from exactly one rule above; anything else raises.
    """
    from ..models.clip import CLIPConfig
    from .detect import _clip_text
    from .detect import detect_checkpoint as _detect

    if vision_only:
        raise CheckpointError("vision_only: load the vision file by itself")
    name = lambda p: str(p) if isinstance(p, (str, os.PathLike)) else "state dict"
    sds = {part: (_read(p) if isinstance(p, (str, os.PathLike)) else dict(unwrap_state_dict(p, part)[0]))
           for part, p in (("vision", vision), ("text", text), ("clip", clip))}
    dropped: dict[str, str] = {}

    # vision: core + attention pool under vision_encoder.
    v = sds["vision"]
    if any(k.startswith("vision_encoder.") for k in v):
        v, outside = select_prefix(v, "vision_encoder.")
        dropped.update({k: "vision file: not part of its vision encoder" for k in outside})
    v = strip_prefixes(v, ("module.", "backbone.", "encoder."))
    det = _detect(v, source=name(vision), num_frames=None)
    merged = {}
    for k, t in v.items():
        if matches(k, _NOT_CLIP_VISION):
            dropped["vision:" + k] = f"vision file ({det.kind}): not part of a CLIP vision tower"
        else:
            merged["vision_encoder." + k] = t
    if det.model_type is None:
        raise CheckpointError(f"{name(vision)}: a {det.kind} file is not a vision file")
    vis_cfg = find_vision(det.config)

    # text: text_encoder.* (MobileCLIP) or transformer.* + text_projection (LLaMA, InternVL-C file)
    t = sds["text"]
    if not any(k.startswith("text_encoder.") for k in t):
        t = {("text_encoder." + k if k.startswith(("transformer.", "text_projection")) else k): x for k, x in t.items()}
    for k, x in t.items():
        if k.startswith("text_encoder."):
            merged[k] = x
        else:
            dropped["text:" + k] = "text file: not part of the text tower"

    # the trained part overrides
    overridden = []
    for k, x in sds["clip"].items():
        if k in merged:
            overridden.append(k)
        merged[k] = x
    tower, tcfg, key_map = _clip_text(merged, name(text))
    align = merged["vision_align.1.weight"].shape[0] if "vision_align.1.weight" in merged else 0
    cfg = CLIPConfig.for_tower(vis_cfg, tower, tcfg, align_dim=align)
    if key_map is not None:
        merged = key_map(merged)
    if num_frames or img_size:
        cfg = replace_vision(cfg, **{k: x for k, x in (("num_frames", num_frames), ("img_size", img_size)) if x})
    model = build_model("clip", cfg)
    src = f"{name(vision)} + {name(text)} + {name(clip)}"
    report = load_state_dict_strict(model, merged, orig_num_frames=vis_cfg.num_frames,
                                    orig_img_size=vis_cfg.img_size, source=src)
    report.dropped = dropped | report.dropped
    report.overridden = overridden
    if dropped:
        log.info("%s: dropped %d keys of the parts that a CLIP model does not have (%s ...)", src, len(dropped),
                 ", ".join(list(dropped)[:4]))
    if overridden:
        log.info("%s: the CLIP file overrides %d keys of the other parts (%s ...)", src, len(overridden),
                 ", ".join(overridden[:4]))
    model.load_report = report
    model.eval()
    model = model.to(device=device, dtype=dtype) if dtype is not None else model.to(device)
    return use_tokenizer(model, text_tokenizer)


def use_tokenizer(model: nn.Module, text_tokenizer: str | os.PathLike | None) -> nn.Module:
    """Point ``model``'s text tower at the tokenizer files ``text_tokenizer`` (kept in its config, so a saved
    copy remembers them); None leaves the model as it is."""
    if text_tokenizer is None:
        return model
    import dataclasses

    from ..errors import ConfigError

    if not getattr(model, "has_text", False) or not hasattr(model.config, "vocab"):
        raise ConfigError("text_tokenizer", f"a {getattr(model, 'model_type', type(model).__name__)} model has no "
                                            "text tower")
    if not Path(text_tokenizer).exists():
        raise ConfigError("text_tokenizer", f"{text_tokenizer}: no such file or folder")
    model.config = dataclasses.replace(model.config, vocab=str(text_tokenizer))
    model._tokenizer = None
    return model
