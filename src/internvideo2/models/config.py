"""Typed configurations of the vision models and the preset registry (official-spec §1.1).

A preset is defined once here; model variants and recipes refer to it by name and override only what
differs (``vision_config("internvideo2-1b", num_frames=4)``).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field, fields
from typing import Any

from ..errors import ConfigError
from ..utils.typed import check_fields

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


@dataclass
class VisionConfig:
    """Architecture of one vision transformer. Input ``[B, in_chans, T, H, W]``.

    Attributes:
        embed_dim: token width C.
        depth: number of blocks.
        num_heads: attention heads (head dim = C / heads).
        mlp_ratio: MLP hidden width is ``int(embed_dim * mlp_ratio)`` (1B: 48/11 -> 6144).
        patch_size: spatial patch (14 for every InternVideo2 preset).
        img_size: input side the model (and its position table) is built for; other sizes are
            resampled at run time.
        num_frames: input frames the position table is built for (tokens in time = num_frames /
            tubelet_size); other counts are resampled at run time.
        tubelet_size: temporal patch.
        in_chans: input channels.
        qkv_bias: ``"none"`` (InternVideo2), ``"qkv"``, or ``"qv"`` (VideoMAE q_bias/v_bias).
        qk_norm: RMSNorm of q and k over the full width before the head split.
        norm: ``"rmsnorm"`` (InternVideo2) or ``"layernorm"`` (VideoMAE) in the blocks.
        norm_eps: epsilon of the block norms.
        init_values: LayerScale init; 0 disables LayerScale (VideoMAE).
        layerscale_force_fp32: compute LayerScale in fp32 (official stage 1/2 default; only matters
            under bf16 autocast).
        act: MLP activation, ``"gelu_tanh"`` (what the released checkpoints were trained with, via
            flash-attn's fused MLP) or ``"gelu"`` (exact erf; the official non-fused fallback).
        drop_path_rate: stochastic depth, linearly increasing over blocks from 0.
        cls_token: prepend a learnable cls token.
        pos_embed: ``"joint"`` (learnable joint 3D sin-cos, the default), ``"separable"``
            (spatial + temporal + cls tables) or ``"sincos_fixed"`` (VideoMAE: fixed 1D table over the
            flattened token index, not stored in checkpoints).
        pos_embed_learnable: False freezes the position table (InternVL-C teacher).
        final_norm: a norm after the last block (VideoMAE).
        attn_pool_heads: heads of the attention-pool projector ``clip_projector``; 0 removes it.
        clip_embed_dim: output width of the attention pool.
        attn_layout_bug: reproduce the official VideoMAE teacher attention layout bug (spec P1).
        mean, std: pixel normalisation this model expects (ImageNet for every InternVideo2 release).
    """

    embed_dim: int = 1408
    depth: int = 40
    num_heads: int = 16
    mlp_ratio: float = 48 / 11
    patch_size: int = 14
    img_size: int = 224
    num_frames: int = 8
    tubelet_size: int = 1
    in_chans: int = 3
    qkv_bias: str = "none"
    qk_norm: bool = True
    norm: str = "rmsnorm"
    norm_eps: float = 1e-6
    init_values: float = 1e-5
    layerscale_force_fp32: bool = True
    act: str = "gelu_tanh"
    drop_path_rate: float = 0.0
    cls_token: bool = True
    pos_embed: str = "joint"
    pos_embed_learnable: bool = True
    final_norm: bool = False
    attn_pool_heads: int = 16
    clip_embed_dim: int = 768
    attn_layout_bug: bool = False
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD

    def __post_init__(self):
        check_fields(self, positive=("embed_dim", "depth", "num_heads", "mlp_ratio", "patch_size", "img_size",
                                     "num_frames", "tubelet_size", "in_chans", "norm_eps"),
                     nonneg=("init_values", "attn_pool_heads", "clip_embed_dim", "drop_path_rate"), layers=("depth",))
        self.mean, self.std = tuple(self.mean), tuple(self.std)
        _check(all(v > 0 for v in self.std), "std", f"must be positive, got {self.std}")
        _check(self.embed_dim > 0 and self.depth > 0 and self.num_heads > 0, "embed_dim", "sizes must be positive")
        _check(self.embed_dim % self.num_heads == 0, "num_heads",
               f"embed_dim {self.embed_dim} is not divisible by num_heads {self.num_heads}")
        _check(self.num_frames % self.tubelet_size == 0, "num_frames",
               f"{self.num_frames} frames are not divisible by tubelet_size {self.tubelet_size}")
        _check(self.img_size % self.patch_size == 0, "img_size",
               f"{self.img_size} is not divisible by patch_size {self.patch_size}")
        _check(self.qkv_bias in ("none", "qkv", "qv"), "qkv_bias", "must be 'none', 'qkv' or 'qv'")
        _check(self.norm in ("rmsnorm", "layernorm"), "norm", "must be 'rmsnorm' or 'layernorm'")
        _check(self.act in ("gelu_tanh", "gelu"), "act", "must be 'gelu_tanh' or 'gelu'")
        _check(self.pos_embed in ("joint", "separable", "sincos_fixed"), "pos_embed",
               "must be 'joint', 'separable' or 'sincos_fixed'")
        _check(self.pos_embed != "joint" or self.embed_dim % 16 == 0, "embed_dim",
               "the joint 3D sin-cos table needs embed_dim divisible by 16")
        _check(0.0 <= self.drop_path_rate < 1.0, "drop_path_rate", "must be in [0, 1)")
        _check(self.attn_pool_heads == 0 or self.embed_dim % self.attn_pool_heads == 0, "attn_pool_heads",
               f"embed_dim {self.embed_dim} is not divisible by {self.attn_pool_heads} pool heads")

    @property
    def mlp_hidden(self) -> int:
        return int(self.embed_dim * self.mlp_ratio)

    @property
    def grid(self) -> tuple[int, int, int]:
        """Token grid ``(T', H', W')`` the model is built for."""
        g = self.img_size // self.patch_size
        return (self.num_frames // self.tubelet_size, g, g)

    def replace(self, **overrides: Any) -> VisionConfig:
        return dataclasses.replace(self, **_checked_overrides(type(self), overrides))

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _check(ok: bool, name: str, reason: str) -> None:
    if not ok:
        raise ConfigError(name, reason)


def _checked_overrides(cls, overrides: dict[str, Any]) -> dict[str, Any]:
    names = {f.name for f in fields(cls)}
    unknown = sorted(set(overrides) - names)
    if unknown:
        raise ConfigError(unknown[0], f"unknown field of {cls.__name__}; known: {', '.join(sorted(names))}")
    return overrides


# --------------------------------------------------------------------------------------------------
# Presets (spec §1.1). drop_path_rate is a training choice and stays 0 here; recipes set it.
# --------------------------------------------------------------------------------------------------
_PRESETS: dict[str, VisionConfig] = {
    "internvideo2-s14": VisionConfig(embed_dim=384, depth=12, num_heads=6, mlp_ratio=4.0),
    "internvideo2-b14": VisionConfig(embed_dim=768, depth=12, num_heads=12, mlp_ratio=4.0),
    "internvideo2-l14": VisionConfig(embed_dim=1024, depth=24, num_heads=16, mlp_ratio=4.0),
    "internvideo2-1b": VisionConfig(embed_dim=1408, depth=40, num_heads=16, mlp_ratio=48 / 11),
    "internvideo2-6b": VisionConfig(embed_dim=3200, depth=48, num_heads=25, mlp_ratio=4.0),
    # Teachers (spec §2.6-2.7). InternVL-C is per-frame 2D: built for one frame; its position table
    # is frozen; LayerScale init 0.1.
    "internvl-c-6b": VisionConfig(embed_dim=3200, depth=48, num_heads=25, mlp_ratio=4.0, num_frames=1,
                                  init_values=0.1, pos_embed_learnable=False),
    "videomae-g14": VisionConfig(embed_dim=1408, depth=40, num_heads=16, mlp_ratio=48 / 11, num_frames=16,
                                 tubelet_size=2, qkv_bias="qv", qk_norm=False, norm="layernorm",
                                 init_values=0.0, act="gelu", cls_token=False, pos_embed="sincos_fixed",
                                 final_norm=True, attn_pool_heads=0),
    # Tiny presets for tests and the CPU demo.
    "tiny": VisionConfig(embed_dim=96, depth=2, num_heads=6, mlp_ratio=4.0, img_size=56, num_frames=4,
                         clip_embed_dim=64),
    "toy": VisionConfig(embed_dim=192, depth=6, num_heads=6, mlp_ratio=4.0, img_size=56, num_frames=8,
                        attn_pool_heads=6, clip_embed_dim=192),
}
_ALIASES = {"s/14": "internvideo2-s14", "b/14": "internvideo2-b14", "l/14": "internvideo2-l14",
            "1b/14": "internvideo2-1b", "6b/14": "internvideo2-6b", "s14": "internvideo2-s14",
            "b14": "internvideo2-b14", "l14": "internvideo2-l14", "1b": "internvideo2-1b",
            "6b": "internvideo2-6b"}


def list_presets() -> list[str]:
    return sorted(_PRESETS)


def vision_config(preset: str | VisionConfig | dict, **overrides: Any) -> VisionConfig:
    """The :class:`VisionConfig` of a preset name (or alias like ``"L/14"``), with overrides."""
    if isinstance(preset, VisionConfig):
        base = preset
    elif isinstance(preset, dict):
        base = VisionConfig(**_checked_overrides(VisionConfig, dict(preset)))
    else:
        key = _ALIASES.get(preset.lower(), preset.lower())
        if key not in _PRESETS:
            raise ConfigError("preset", f"unknown vision preset {preset!r}; known: {', '.join(list_presets())}")
        base = _PRESETS[key]
    return base.replace(**overrides) if overrides else dataclasses.replace(base)


def find_vision(config: Any) -> VisionConfig:
    """The :class:`VisionConfig` inside any model config (depth-first through dataclass fields)."""
    if isinstance(config, VisionConfig):
        return config
    if dataclasses.is_dataclass(config):
        for f in fields(config):
            v = getattr(config, f.name)
            if isinstance(v, VisionConfig) or dataclasses.is_dataclass(v):
                try:
                    return find_vision(v)
                except ConfigError:
                    continue
    raise ConfigError("vision", f"{type(config).__name__} holds no VisionConfig")


def replace_vision(config: Any, **changes: Any) -> Any:
    """A copy of any model config with its :class:`VisionConfig` changed (e.g. ``num_frames`` / ``img_size``
    to rebuild a saved model for another input). Nested configs are copied, the others shared."""
    if isinstance(config, VisionConfig):
        return config.replace(**changes)
    if not dataclasses.is_dataclass(config):
        raise ConfigError("vision", f"{type(config).__name__} is not a model config")
    for f in fields(config):
        v = getattr(config, f.name)
        if dataclasses.is_dataclass(v):
            try:
                find_vision(v)
            except ConfigError:
                continue
            return dataclasses.replace(config, **{f.name: replace_vision(v, **changes)})
    raise ConfigError("vision", f"{type(config).__name__} holds no VisionConfig")


@dataclass
class ClassifierConfig:
    """Action classifier (spec §2.1-2.2): core -> clip_projector -> fc_norm -> dropout -> head.

    Attributes:
        vision: the backbone.
        num_classes: head outputs; 0 gives pooled features only (no fc_norm/head).
        head: ``"linear"`` (``internvideo2_*``), ``"ap"`` (``internvideo2_ap_*``: a residual
            LayerNorm+MLP on the pooled feature before fc_norm) or ``"cat"`` (``internvideo2_cat_*``: the
            head also reads the cls token and averaged patch tokens, see ``merge_method``).
        merge_method: (``cat``) ``proj`` (pooled feature only), ``cls_avg1`` / ``cls_avgN`` ([cls, mean of all
            patches] / [cls, per-frame means] after ``down``), or those ``_proj`` with the pooled feature too.
        merge_norm: (``cat``) ``down_norm``: ``kaiming_BN`` (BatchNorm, no affine, eps 1e-6), ``BN`` or ``LN``.
        fc_drop_rate: dropout before the head.
        init_scale: the head is initialised then scaled by this (official 0.001).
    """

    vision: VisionConfig = field(default_factory=VisionConfig)
    num_classes: int = 400
    head: str = "linear"
    fc_drop_rate: float = 0.0
    init_scale: float = 0.001
    merge_method: str = "proj"
    merge_norm: str = "kaiming_BN"

    def __post_init__(self):
        check_fields(self, nonneg=("num_classes", "init_scale"), unit=("fc_drop_rate",))
        if isinstance(self.vision, dict):
            self.vision = VisionConfig(**self.vision)
        _check(self.head in ("linear", "ap", "cat"), "head", "must be 'linear', 'ap' or 'cat'")
        _check(self.merge_method in ("proj", "cls_avg1", "cls_avgN", "cls_avg1_proj", "cls_avgN_proj"),
               "merge_method", "must be proj, cls_avg1, cls_avgN, cls_avg1_proj or cls_avgN_proj")
        _check(self.merge_norm in ("kaiming_BN", "BN", "LN"), "merge_norm", "must be kaiming_BN, BN or LN")

    @classmethod
    def from_vision(cls, vision: VisionConfig, **overrides: Any) -> ClassifierConfig:
        """The default classifier around a backbone (``create_model(preset, "classifier", ...)``)."""
        return cls(vision=vision, **overrides)


@dataclass
class PretrainConfig:
    """Vision encoder with teacher-alignment decoders: the stage-1 student (spec §2.3), the
    distillation student (§2.4) and the stage-2 vision encoder (§2.8) are all this, configured.

    Attributes:
        vision: the backbone.
        clip_teacher_embed_dim: width of the CLIP-teacher tokens the ``clip_decoder.{k}`` predict.
        clip_teacher_final_dim: width of the teacher's pooled feature predicted by
            ``final_clip_decoder``; 0 disables it.
        clip_return_layer: number of student layers aligned to the CLIP teacher (>= 1).
        clip_return_interval: student layers are ``depth-1-int(i*interval)``, i < clip_return_layer.
        clip_return_index: explicit student layer list (distillation); overrides the interval rule.
        clip_decoder: ``"linear"`` (Linear_Decoder) or ``"mlp"`` (MLP_Decoder, distillation).
        clip_norm_type: ``"l2"`` or ``"none"``.
        mae_teacher_embed_dim: width of the MAE-teacher tokens.
        mae_return_layer: number of layers aligned to the MAE teacher; 0 removes the MAE branch
            (distillation and stage 2).
        mae_return_interval: as for CLIP.
        mae_norm_type: ``"l2"`` or ``"none"``.
        sep_image_video_pos_embed: separate learnable ``img_pos_embed`` / ``clip_img_pos_embed``
            tables for images (the released stage-2 1B uses True).
    """

    vision: VisionConfig = field(default_factory=VisionConfig)
    clip_teacher_embed_dim: int = 3200
    clip_teacher_final_dim: int = 768
    clip_return_layer: int = 1
    clip_return_interval: float = 1.0
    clip_return_index: list[int] | None = None
    clip_decoder: str = "linear"
    clip_norm_type: str = "l2"
    mae_teacher_embed_dim: int = 1408
    mae_return_layer: int = 0
    mae_return_interval: float = 1.0
    mae_norm_type: str = "l2"
    sep_image_video_pos_embed: bool = False

    def __post_init__(self):
        check_fields(self, nonneg=("clip_teacher_embed_dim", "clip_teacher_final_dim", "clip_return_layer",
                                   "mae_teacher_embed_dim", "mae_return_layer"),
                     positive=("clip_return_interval", "mae_return_interval"))
        if isinstance(self.vision, dict):
            self.vision = VisionConfig(**self.vision)
        _check(self.clip_return_layer >= 1 or self.clip_return_index, "clip_return_layer",
               "at least one student layer must be aligned (the official forward always runs the decoders)")
        _check(self.clip_decoder in ("linear", "mlp"), "clip_decoder", "must be 'linear' or 'mlp'")
        for name in ("clip_norm_type", "mae_norm_type"):
            _check(getattr(self, name) in ("l2", "none"), name, "must be 'l2' or 'none'")
        depth = self.vision.depth
        for name, idx in (("clip_return_index", self.clip_student_index),
                          ("mae_return_layer", self.mae_student_index)):
            _check(all(0 <= i < depth for i in idx), name, f"layer indices {idx} outside 0..{depth - 1}")
        _check(self.vision.cls_token, "vision.cls_token", "the pretraining encoder needs a cls token")

    @classmethod
    def from_vision(cls, vision: VisionConfig, **overrides: Any) -> PretrainConfig:
        """The default stage-1 student around a backbone (the spec's teacher widths)."""
        return cls(vision=vision, **overrides)

    @property
    def clip_student_index(self) -> list[int]:
        """Student layers aligned to the CLIP teacher, ascending (decoder k pairs with the k-th)."""
        if self.clip_return_index:
            return sorted(self.clip_return_index)
        return return_indices(self.vision.depth, self.clip_return_layer, self.clip_return_interval)

    @property
    def mae_student_index(self) -> list[int]:
        return return_indices(self.vision.depth, self.mae_return_layer, self.mae_return_interval)


def return_indices(depth: int, num: int, interval: float) -> list[int]:
    """Official rule ``depth - 1 - int(i * interval)`` for i < num, returned ascending."""
    return sorted(depth - 1 - int(i * interval) for i in range(num))


@dataclass
class TeacherConfig:
    """A frozen teacher (spec §2.5-2.7) returning l2-normalised features of chosen layers.

    Attributes:
        vision: the backbone (``internvl-c-6b``, ``videomae-g14``, or a stage-2 InternVideo2).
        kind: ``"internvl_clip"`` (per-frame 2D, cls averaged over frames), ``"videomae"``
            (no cls, final norm) or ``"internvideo2"`` (whole-video teacher for distillation).
        return_layer: number of returned layers.
        return_interval: layers ``depth-1-int(i*interval)``.
        norm_type: ``"l2"`` or ``"none"``.
    """

    vision: VisionConfig = field(default_factory=lambda: vision_config("internvl-c-6b"))
    kind: str = "internvl_clip"
    return_layer: int = 1
    return_interval: float = 1.0
    norm_type: str = "l2"

    def __post_init__(self):
        check_fields(self, positive=("return_interval",))
        if isinstance(self.vision, dict):
            self.vision = VisionConfig(**self.vision)
        _check(self.kind in ("internvl_clip", "videomae", "internvideo2"), "kind",
               "must be 'internvl_clip', 'videomae' or 'internvideo2'")
        _check(self.norm_type in ("l2", "none"), "norm_type", "must be 'l2' or 'none'")
        _check(self.return_layer >= 1, "return_layer", "must be >= 1")

    @classmethod
    def from_vision(cls, vision: VisionConfig, **overrides: Any) -> TeacherConfig:
        """A teacher around a backbone; ``kind`` follows the backbone unless given: per-frame (1 frame)
        ``internvl_clip``, no cls token ``videomae``, otherwise the whole-video ``internvideo2`` teacher."""
        if "kind" not in overrides:
            overrides["kind"] = ("internvl_clip" if vision.num_frames == 1 else
                                 "videomae" if not vision.cls_token else "internvideo2")
        return cls(vision=vision, **overrides)

    @property
    def return_index(self) -> list[int]:
        return return_indices(self.vision.depth, self.return_layer, self.return_interval)
