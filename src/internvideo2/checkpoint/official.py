"""Official InternVideo2 checkpoint formats: which class each file belongs to, how the official
constructor arguments map onto our configs, and explicit key maps (spec §2, §8).

Our module names *are* the official state-dict names, so the key maps are only about containers and
prefixes: ``vision_encoder.`` (stage-2 / CLIP files), ``backbone.`` / ``encoder.`` (stripped by the
official fine-tuning loader), ``encoder.`` (VideoMAEv2 release).
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from ..models.config import ClassifierConfig, PretrainConfig, TeacherConfig, VisionConfig, list_presets, vision_config

# --------------------------------------------------------------------------------------------------
# official constructor kwargs -> our configs
# --------------------------------------------------------------------------------------------------
_VISION_KEYS = {
    "img_size": "img_size", "patch_size": "patch_size", "embed_dim": "embed_dim", "depth": "depth",
    "num_heads": "num_heads", "mlp_ratio": "mlp_ratio", "attn_pool_num_heads": "attn_pool_heads",
    "clip_embed_dim": "clip_embed_dim", "num_frames": "num_frames", "tubelet_size": "tubelet_size",
    "init_values": "init_values", "drop_path_rate": "drop_path_rate", "in_chans": "in_chans",
    "qk_normalization": "qk_norm",
}
# accepted and deliberately ignored: execution details with no effect on the maths we reproduce
_IGNORED = {"use_flash_attn", "use_fused_rmsnorm", "use_fused_mlp", "fused_mlp_heuristic", "use_checkpoint",
            "checkpoint_num", "head_drop_path_rate", "with_cp", "x_vis_return_idx", "x_vis_only"}


def vision_config_from_official(kwargs: Mapping[str, Any], base: VisionConfig | None = None) -> VisionConfig:
    """Map official ``InternVideo2`` / ``PretrainInternVideo2`` constructor kwargs onto a VisionConfig.

    The activation follows the official execution path: the fused flash-attn MLP (``use_fused_mlp``)
    computes tanh-approximate GELU, the fallback exact GELU (spec §1.5).
    """
    out: dict[str, Any] = {}
    for k, v in kwargs.items():
        if k in _VISION_KEYS:
            out[_VISION_KEYS[k]] = v
        elif k == "qkv_bias":
            out["qkv_bias"] = "qkv" if v else "none"
        elif k == "layerscale_no_force_fp32":
            out["layerscale_force_fp32"] = not v
        elif k == "sep_pos_embed":
            if v:
                out["pos_embed"] = "separable"
        elif k == "use_fused_mlp":
            out["act"] = "gelu_tanh" if v else "gelu"
    return (base or VisionConfig()).replace(**out)


def classifier_config_from_official(kwargs: Mapping[str, Any], head: str = "linear") -> ClassifierConfig:
    return ClassifierConfig(vision=vision_config_from_official(kwargs), num_classes=kwargs.get("num_classes", 1000),
                            head=head, fc_drop_rate=kwargs.get("fc_drop_rate", 0.0),
                            init_scale=kwargs.get("init_scale", 0.001),
                            merge_method=kwargs.get("merge_method", "proj"),
                            merge_norm=kwargs.get("merge_norm", "kaiming_BN"))


def pretrain_config_from_official(kwargs: Mapping[str, Any], *, with_mae: bool) -> PretrainConfig:
    """Stage-1 (``with_mae``), distillation or stage-2 vision encoder kwargs -> PretrainConfig."""
    extra: dict[str, Any] = dict(
        clip_teacher_embed_dim=kwargs.get("clip_teacher_embed_dim", 3200),
        clip_teacher_final_dim=kwargs.get("clip_teacher_final_dim", 768),
        clip_return_layer=kwargs.get("clip_return_layer", 1),
        clip_return_interval=kwargs.get("clip_student_return_interval", 1),
        clip_return_index=kwargs.get("clip_student_return_index"),
        clip_norm_type=kwargs.get("clip_norm_type", "l2"),
        sep_image_video_pos_embed=kwargs.get("sep_image_video_pos_embed", False),
    )
    decoder = kwargs.get("clip_student_decoder")
    if decoder is not None:
        extra["clip_decoder"] = {"Linear_Decoder": "linear", "MLP_Decoder": "mlp"}.get(decoder, decoder)
    if with_mae:
        extra.update(mae_teacher_embed_dim=kwargs.get("mae_teacher_embed_dim", 1408),
                     mae_return_layer=kwargs.get("mae_return_layer", 1),
                     mae_return_interval=kwargs.get("mae_student_return_interval", 1),
                     mae_norm_type=kwargs.get("mae_norm_type", "l2"))
    return PretrainConfig(vision=vision_config_from_official(kwargs), **extra)


# --------------------------------------------------------------------------------------------------
# official classes -> (our model type, config builder, key prefix, prefixes to strip)
# --------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class OfficialFormat:
    model_type: str
    make_config: Callable[[Mapping[str, Any]], Any]
    select_prefix: str | None = None  # keys of this model inside a larger checkpoint
    strip: tuple[str, ...] = ()


OFFICIAL_CLASSES: dict[str, OfficialFormat] = {
    "single_modality/models/internvideo2.py :: InternVideo2": OfficialFormat(
        "classifier", classifier_config_from_official, strip=("module.", "backbone.", "encoder.")),
    "single_modality/models/internvideo2_ap.py :: InternVideo2": OfficialFormat(
        "classifier", lambda kw: classifier_config_from_official(kw, head="ap"),
        strip=("module.", "backbone.", "encoder.")),
    "single_modality/models/internvideo2_cat.py :: InternVideo2": OfficialFormat(
        "classifier", lambda kw: classifier_config_from_official(kw, head="cat"),
        strip=("module.", "backbone.", "encoder.")),
    "single_modality/models/internvideo2_pretrain.py :: PretrainInternVideo2": OfficialFormat(
        "pretrain", lambda kw: pretrain_config_from_official(kw, with_mae=True), strip=("module.",)),
    "single_modality/models/internvideo2_distill.py :: DistInternVideo2": OfficialFormat(
        "pretrain", lambda kw: pretrain_config_from_official(kw, with_mae=False), strip=("module.",)),
    "multi_modality/models/backbones/internvideo2/internvideo2.py :: PretrainInternVideo2": OfficialFormat(
        "pretrain", lambda kw: pretrain_config_from_official(kw, with_mae=False), select_prefix="vision_encoder."),
    "multi_modality/models/backbones/internvideo2/internvideo2_clip_vision.py :: InternVideo2": OfficialFormat(
        "vision", vision_config_from_official, select_prefix="vision_encoder."),
    "single_modality/models/internvideo2_teacher.py :: InternVideo2": OfficialFormat(
        "teacher", lambda kw: TeacherConfig(vision=vision_config_from_official(kw), kind="internvideo2",
                                            return_layer=kw.get("clip_return_layer", 1),
                                            return_interval=kw.get("clip_return_interval", 1),
                                            norm_type=kw.get("clip_norm_type", "l2"))),
    "single_modality/models/internvl_clip_vision.py :: InternVL_CLIP": OfficialFormat(
        "teacher", lambda kw: TeacherConfig(
            vision=vision_config_from_official(kw, base=vision_config("internvl-c-6b")), kind="internvl_clip",
            return_layer=kw.get("clip_return_layer", 1), return_interval=kw.get("clip_return_interval", 1),
            norm_type=kw.get("clip_norm_type", "l2"))),
    "single_modality/models/videomae.py :: VisionTransformer": OfficialFormat(
        "teacher", lambda kw: TeacherConfig(
            # mae_g14_hybrid fixes the g/14 sizes; other VideoMAE sizes can be given with the same names
            vision=vision_config("videomae-g14").replace(**{k: v for k, v in {
                "img_size": kw.get("img_size"), "num_frames": kw.get("all_frames"),
                "tubelet_size": kw.get("tubelet_size"), "attn_layout_bug": kw.get("attn_layout_bug"),
                "embed_dim": kw.get("embed_dim"), "depth": kw.get("depth"), "num_heads": kw.get("num_heads"),
                "mlp_ratio": kw.get("mlp_ratio"), "patch_size": kw.get("patch_size")}.items() if v is not None}),
            kind="videomae", return_layer=kw.get("mae_return_layer", 1),
            return_interval=kw.get("mae_return_interval", 1), norm_type=kw.get("mae_norm_type", "l2")),
        strip=("encoder.",)),
    "multi_modality/models/internvideo2_stage2_visual.py :: InternVideo2_Stage2_visual": OfficialFormat(
        "stage2", lambda kw: _stage2_config(kw)),
    # official_kwargs = {"config": ..., "bert_config": ..., "audio_encoder_cfg": <the BEATs file's 'cfg'>}
    "multi_modality/models/internvideo2_stage2_audiovisual.py :: InternVideo2_Stage2_audiovisual": OfficialFormat(
        "stage2_av", lambda kw: _stage2_av_config(kw)),
}


def _stage2_config(official: Mapping[str, Any]):
    from ..models.stage2 import stage2_config_from_official

    return stage2_config_from_official(dict(official))


def _stage2_av_config(official: Mapping[str, Any]):
    from ..models.stage2_av import stage2_av_config_from_official

    return stage2_av_config_from_official(dict(official))

# recognising a released file from its keys: detect.py


def known_presets() -> list[str]:
    return list_presets()
