"""Recognise a released InternVideo2 file from its key names and shapes, without reading its values.

:func:`detect_checkpoint` works on any mapping of names to tensors, including meta-device tensors, so a
6B file's layout can be checked without allocating its weights. It returns a :class:`Detected`: the
official class the file belongs to, our model type and config for it (every size read from a shape), how
its keys map onto our module names, and a one-line summary (preset, frames, resolution).

Kinds (``Detected.kind``) and what they load as:

==================  =====================================================  =====================================
kind                official class                                          our model type
==================  =====================================================  =====================================
``classifier``      ``single_modality/.../internvideo2.py :: InternVideo2``  ``classifier`` (fine-tuned heads)
``stage1``          ``PretrainInternVideo2`` (single-modality)              ``pretrain`` (with the MAE branch)
``distill``         ``DistInternVideo2``                                    ``pretrain`` (no MAE branch)
``stage2``          ``InternVideo2_Stage2_visual``                          ``stage2`` (vision + BERT + ITM)
``stage2_vision``   stage-2 ``PretrainInternVideo2`` alone                  ``pretrain``
``stage2_av``       ``InternVideo2_Stage2_audiovisual`` (the released 6B)   ``stage2_av`` (+ BEATs, fusion heads)
``clip``            ``InternVideo2_CLIP`` / ``InternVideo2_CLIP_small``     ``clip`` (LLaMA / MobileCLIP tower)
``clip_overlay``    the trained part of a CLIP model alone                  needs its parts (see ``zoo``)
``clip_vision``     ``internvideo2_clip_vision.py :: InternVideo2``         ``vision``
``chat``            InternVideo2-Chat (VideoChat2 with Mistral)             not built yet: ``vision_only=True``
``vision``          the bare core (+ attention pool)                        ``vision``
==================  =====================================================  =====================================

``vision_only=True`` narrows any multi-part file to its vision encoder explicitly (never by default).
"""
from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch

from ..errors import CheckpointError
from ..models.config import ClassifierConfig, PretrainConfig, VisionConfig, vision_config

# presets whose core matches a released file, by (width, depth); the tiny ones let tests build files in
# the released layout at test scale
_CORE_PRESETS = ("internvideo2-s14", "internvideo2-b14", "internvideo2-l14", "internvideo2-1b", "internvideo2-6b",
                 "tiny", "toy")

CLASS_NAMES = {
    "classifier": "single_modality/models/internvideo2.py :: InternVideo2",
    "stage1": "single_modality/models/internvideo2_pretrain.py :: PretrainInternVideo2",
    "distill": "single_modality/models/internvideo2_distill.py :: DistInternVideo2",
    "stage2": "multi_modality/models/internvideo2_stage2_visual.py :: InternVideo2_Stage2_visual",
    "stage2_vision": "multi_modality/models/backbones/internvideo2/internvideo2.py :: PretrainInternVideo2",
    "stage2_av": "multi_modality/models/internvideo2_stage2_audiovisual.py :: InternVideo2_Stage2_audiovisual",
    "clip": "multi_modality/models/internvideo2_clip.py :: InternVideo2_CLIP",
    "clip_small": "multi_modality/models/internvideo2_clip_small.py :: InternVideo2_CLIP_small",
    "clip_overlay": "multi_modality/models/internvideo2_clip{,_small}.py (trained part only)",
    "clip_vision": "multi_modality/models/backbones/internvideo2/internvideo2_clip_vision.py :: InternVideo2",
    "chat": "InternVideo2-Chat-8B :: InternVideo2_VideoChat2 (HF remote code)",
    "vision": "single_modality/models/internvideo2.py :: InternVideo2 (num_classes=0)",
}

KeyMap = Callable[[dict[str, torch.Tensor]], dict[str, torch.Tensor]]


@dataclass
class Detected:
    """What :func:`detect_checkpoint` concluded about a state dict.

    Attributes:
        kind: see the module table.
        official_class: the official class the file was saved from.
        model_type: our model type that loads it as what it is; None when the package has no such model
            yet (``unsupported`` says what to do).
        config: the config of that model, every size read from the file.
        select_prefix: keys of the model inside the file (``"vision_encoder."`` for a vision-only load).
        drop: key patterns discarded on the way (only for ``vision_only`` loads).
        key_map: renames the file's keys to our module names (None: the names are ours already).
        allow_missing: model key patterns the file may lack, with the reason (e.g. the MLM head of a
            retrieval-mode stage-2 file); they are reported as newly initialised.
        summary: preset, frames, resolution and sizes, for ``internvideo2 info`` and error messages.
        unsupported: why ``model_type`` is None.
    """

    kind: str
    official_class: str
    model_type: str | None
    config: Any
    select_prefix: str | None = None
    drop: tuple[str, ...] = ()
    key_map: KeyMap | None = None
    allow_missing: dict[str, str] = field(default_factory=dict)
    summary: dict[str, Any] = field(default_factory=dict)
    unsupported: str = ""


# --------------------------------------------------------------------------------------------------
# the vision core
# --------------------------------------------------------------------------------------------------
def _block_count(keys: list[str], prefix: str) -> int:
    idx = {int(k[len(prefix) + 7:].split(".")[0]) for k in keys if k.startswith(prefix + "blocks.")}
    return max(idx) + 1 if idx else 0


def _core(sd: Mapping[str, torch.Tensor], p: str, img_size: int | None, num_frames: int | None,
          source: str) -> tuple[VisionConfig, str, bool]:
    """The VisionConfig of the core under prefix ``p``: ``(config, preset, chat_layout)``. ``chat_layout``:
    one block fewer than the preset and raw ``ls1``/``ls2`` LayerScale tensors (InternVideo2-Chat)."""
    keys = list(sd)
    if p + "cls_token" not in sd:
        raise CheckpointError(f"{source}: not an InternVideo2 vision checkpoint (no {p}cls_token)")
    C = sd[p + "cls_token"].shape[-1]
    depth = _block_count(keys, p)
    chat = p + "blocks.0.ls1" in sd
    preset = next((n for n in _CORE_PRESETS if vision_config(n).embed_dim == C
                   and vision_config(n).depth == depth + (1 if chat else 0)), None)
    if preset is None:
        known = ", ".join(f"{n} ({vision_config(n).embed_dim}x{vision_config(n).depth})" for n in _CORE_PRESETS)
        raise CheckpointError(f"{source}: a core of width {C} and {depth} blocks matches no preset ({known}); "
                              f"build the config yourself and pass model_type= and config= to load_model")
    base = vision_config(preset)
    img_size = img_size or base.img_size  # 224 for every released preset
    kernel = sd[p + "patch_embed.proj.weight"]
    tub = kernel.shape[2] if kernel.ndim == 5 else 1
    side = img_size // base.patch_size
    over: dict[str, Any] = dict(img_size=img_size, tubelet_size=tub, depth=depth)
    if p + "pos_embed_temporal" in sd:
        over["pos_embed"] = "separable"
        t_tokens = sd[p + "pos_embed_temporal"].shape[1]
    elif p + "pos_embed" in sd:
        n = sd[p + "pos_embed"].shape[1] - 1
        if n % (side * side):
            raise CheckpointError(f"{source}: {p}pos_embed has {n} patch rows, not a multiple of the "
                                  f"{side}x{side} grid of img_size {img_size}; pass the file's image size "
                                  f"(orig_img_size=...)")
        t_tokens = n // (side * side)
    else:
        raise CheckpointError(f"{source}: no {p}pos_embed")
    over["num_frames"] = num_frames or t_tokens * tub
    proj = p + "clip_projector.cross_attn.proj.weight"
    if proj in sd:
        over["clip_embed_dim"] = sd[proj].shape[0]
    else:
        over["attn_pool_heads"] = 0
    qkv_bias = p + "blocks.0.attn.qkv.bias" in sd
    if qkv_bias:
        over["qkv_bias"] = "qkv"
    return base.replace(**over), preset, chat


def _n_modules(keys: list[str], name: str) -> int:
    return len({k[len(name) + 1:].split(".")[0] for k in keys if k.startswith(name + ".")})


def _pretrain(sd: Mapping[str, torch.Tensor], p: str, vis: VisionConfig, with_mae: bool) -> PretrainConfig:
    keys = list(sd)
    mlp = p + "clip_decoder.0.head.0.weight" in sd
    head = p + ("clip_decoder.0.head.2.weight" if mlp else "clip_decoder.0.head.weight")
    final = p + "final_clip_decoder.norm.weight"
    return PretrainConfig(
        vision=vis, clip_teacher_embed_dim=sd[head].shape[0],
        clip_teacher_final_dim=sd[final].shape[0] if final in sd else 0,
        clip_return_layer=_n_modules(keys, p + "clip_decoder"), clip_decoder="mlp" if mlp else "linear",
        mae_return_layer=_n_modules(keys, p + "mae_decoder") if with_mae else 0,
        mae_teacher_embed_dim=sd[p + "mae_decoder.0.norm.weight"].shape[0] if with_mae else 1408,
        sep_image_video_pos_embed=p + "img_pos_embed" in sd)


def _summary(vis: VisionConfig, preset: str, **extra: Any) -> dict[str, Any]:
    return {"preset": preset, "frames": vis.num_frames, "img_size": vis.img_size, "tubelet": vis.tubelet_size,
            "width": vis.embed_dim, "depth": vis.depth, **extra}


def _others(keys: list[str], prefix: str) -> tuple[str, ...]:
    """Glob patterns for the top-level groups outside ``prefix``."""
    return tuple(sorted({k.split(".")[0] + (".*" if "." in k else "") for k in keys if not k.startswith(prefix)}))


# --------------------------------------------------------------------------------------------------
# text towers
# --------------------------------------------------------------------------------------------------
def bert_config_from_keys(sd: Mapping[str, torch.Tensor], p: str, encoder_width: int) -> Any:
    """The BERT fusion encoder under ``p`` (``text_encoder.bert.``): sizes from shapes; heads = hidden / 64
    (every BERT the official code uses: base 12, large 16); ``fusion_layer`` = the first layer with
    cross-attention."""
    from ..models.text import BertConfig

    keys = list(sd)
    need = [p + n for n in ("embeddings.word_embeddings.weight", "embeddings.position_embeddings.weight",
                            "embeddings.token_type_embeddings.weight", "encoder.layer.0.intermediate.dense.weight")]
    if [n for n in need if n not in sd]:
        raise CheckpointError(f"{p}: an incomplete BERT text tower (no {', '.join(n for n in need if n not in sd)})")
    hidden = sd[p + "embeddings.word_embeddings.weight"].shape[1]
    layers = 1 + max(int(k[len(p) + 14:].split(".")[0]) for k in keys if k.startswith(p + "encoder.layer."))
    pat = re.compile(re.escape(p) + r"encoder\.layer\.(\d+)\.crossattention\.")
    cross = sorted({int(m.group(1)) for k in keys if (m := pat.match(k))})
    if cross and cross != list(range(cross[0], layers)):
        raise CheckpointError(f"{p}: cross-attention in layers {cross}, not a contiguous tail of {layers} layers")
    if hidden % 64:
        raise CheckpointError(f"{p}: hidden size {hidden} is not a multiple of the 64-wide BERT heads")
    kv = sd.get(p + f"encoder.layer.{cross[0]}.crossattention.self.key.weight") if cross else None
    if kv is not None and kv.shape[1] != encoder_width:
        raise CheckpointError(f"{p}: cross-attention reads width {kv.shape[1]}, the vision encoder gives "
                              f"{encoder_width}")
    return BertConfig(vocab_size=sd[p + "embeddings.word_embeddings.weight"].shape[0], hidden_size=hidden,
                      num_hidden_layers=layers, num_attention_heads=hidden // 64,
                      intermediate_size=sd[p + "encoder.layer.0.intermediate.dense.weight"].shape[0],
                      max_position_embeddings=sd[p + "embeddings.position_embeddings.weight"].shape[0],
                      type_vocab_size=sd[p + "embeddings.token_type_embeddings.weight"].shape[0],
                      fusion_layer=cross[0] if cross else layers, encoder_width=encoder_width)


def _clip_text(sd: Mapping[str, torch.Tensor], source: str) -> tuple[str, Any, KeyMap | None]:
    """``(tower, tower config, key map)`` of a released CLIP text tower under ``text_encoder.``."""
    from ..models import clip as clip_mod

    if "text_encoder.embedding_layer.weight" in sd:
        return "mobileclip", clip_mod.mobileclip_config_from_keys(sd, "text_encoder."), None
    if "text_encoder.text_projection" in sd and any(k.startswith("text_encoder.transformer.layers.") for k in sd):
        cfg = clip_mod.llama_config_from_keys(sd, "text_encoder.")
        return "llama", cfg, clip_mod.llama_key_map(cfg)
    raise CheckpointError(f"{source}: a CLIP text tower in no known layout (expected MobileCLIP "
                          f"'text_encoder.embedding_layer.*' or LLaMA 'text_encoder.transformer.layers.*')")


# --------------------------------------------------------------------------------------------------
# detection
# --------------------------------------------------------------------------------------------------
def _strip_gamma_map(prefix: str) -> KeyMap:
    """InternVideo2-Chat stores LayerScale as raw ``blocks.N.ls1``; ours are ``blocks.N.ls1.gamma``."""
    pat = re.compile(re.escape(prefix) + r"blocks\.\d+\.ls[12]$")
    return lambda sd: {(k + ".gamma" if pat.match(k) else k): v for k, v in sd.items()}


def detect_checkpoint(sd: Mapping[str, torch.Tensor], *, img_size: int | None = None, num_frames: int | None = None,
                      source: str = "checkpoint", vision_only: bool = False) -> Detected:
    """Infer what a released InternVideo2 file is from key names and shapes (values are never read).

    Widths and depths map to presets (S 384x12, B 768x12, L 1024x24, 1B 1408x40, 6B 3200x48, and the test
    presets); the frame count comes from the position table at ``img_size`` (default: the preset's, 224 for
    every release) unless given. ``vision_only`` narrows a multi-part file (stage 2, CLIP, chat) to its vision encoder.
    """
    keys = list(sd)
    has = lambda prefix: any(k.startswith(prefix) for k in keys)
    V = "vision_encoder."

    # ---------------------------------------------------------------- multi-part files (vision_encoder.*)
    if has(V):
        if not has(V + "blocks."):
            if has(V + "clip_projector.") or "vision_align.0.weight" in sd:
                return Detected("clip_overlay", CLASS_NAMES["clip_overlay"], None, None, unsupported=(
                    f"{source} holds only the trained part of an InternVideo2-CLIP model "
                    f"({', '.join(_others(keys, ''))}); "
                    "load it together with its vision and text files: load_clip_parts(vision=..., text=..., "
                    "clip=...) or load_model('<released name>', path={...}) (see `internvideo2 info --released`)"))
            raise CheckpointError(f"{source}: keys under {V!r} but no {V}blocks.*")
        vis, preset, chat = _core(sd, V, img_size, num_frames, source)
        if chat or has("qformer.") or has("lm."):
            det_vis = vis.replace(attn_pool_heads=0)
            if vision_only:
                # the chat tower's separate image table has no place in the bare core (it reads videos)
                drop = _others(keys, V) + ((V + "img_pos_embed",) if V + "img_pos_embed" in sd else ())
                return Detected("chat", CLASS_NAMES["chat"], "vision", det_vis, V, drop,
                                key_map=_strip_gamma_map(V), summary=_summary(det_vis, preset, vision_only=True))
            return Detected("chat", CLASS_NAMES["chat"], None, det_vis, summary=_summary(det_vis, preset),
                            unsupported=f"{source} is an InternVideo2-Chat (video LLM) state dict; the package has no "
                                        "chat model yet. load_model(..., vision_only=True) loads its vision tower "
                                        f"({det_vis.depth} blocks, no attention pool)")
        if has("audio_encoder.") or has("av_concat_vision_proj.") or has("av_fusion."):
            if vision_only:
                pre = _pretrain(sd, V, vis, with_mae=False)
                return Detected("stage2_av", CLASS_NAMES["stage2_av"], "pretrain", pre, V, _others(keys, V),
                                summary=_summary(vis, preset, vision_only=True))
            return _stage2_av(sd, vis, preset, source)
        if has("text_encoder."):
            if vision_only:
                narrowed = _pretrain(sd, V, vis, with_mae=False) if has(V + "clip_decoder.") else vis
                kind = "stage2" if has("itm_head.") or has("text_encoder.bert.") else "clip"
                mtype = "pretrain" if isinstance(narrowed, PretrainConfig) else "vision"
                return Detected(kind, CLASS_NAMES[kind], mtype, narrowed, V, _others(keys, V),
                                summary=_summary(vis, preset, vision_only=True))
            if has("text_encoder.bert.") or has("text_encoder.encoder.layer."):
                return _stage2(sd, vis, preset, source)
            return _clip(sd, vis, preset, source)
        if has(V + "clip_decoder."):
            return Detected("stage2_vision", CLASS_NAMES["stage2_vision"], "pretrain",
                            _pretrain(sd, V, vis, with_mae=False), V, summary=_summary(vis, preset))
        extra = _others(keys, V)
        if extra:
            raise CheckpointError(f"{source}: a vision encoder with unknown companions {list(extra)}")
        return Detected("clip_vision", CLASS_NAMES["clip_vision"], "vision", vis, V, summary=_summary(vis, preset))

    # ---------------------------------------------------------------- single-modality files
    vis, preset, _ = _core(sd, "", img_size, num_frames, source)
    if has("mae_decoder."):
        return Detected("stage1", CLASS_NAMES["stage1"], "pretrain", _pretrain(sd, "", vis, with_mae=True),
                        summary=_summary(vis, preset))
    if has("clip_decoder."):
        return Detected("distill", CLASS_NAMES["distill"], "pretrain", _pretrain(sd, "", vis, with_mae=False),
                        summary=_summary(vis, preset))
    if "head.weight" in sd:
        cfg = ClassifierConfig(vision=vis, num_classes=sd["head.weight"].shape[0],
                               head="ap" if "extra_mlp.0.weight" in sd else "linear")
        return Detected("classifier", CLASS_NAMES["classifier"], "classifier", cfg,
                        summary=_summary(vis, preset, num_classes=cfg.num_classes, head=cfg.head))
    return Detected("vision", CLASS_NAMES["vision"], "vision", vis, summary=_summary(vis, preset))


def _bert_layout(sd: Mapping[str, torch.Tensor]) -> tuple[str, KeyMap | None, dict[str, str]]:
    """``(BERT key prefix, key map, allowed missing)`` of a stage-2 file's text tower: the pretrain layout
    (``text_encoder.bert.*`` + ``text_encoder.cls.*``) or the official retrieval ('ret') layout, which saves
    ``BertModel`` without ``bert.`` and without the MLM head."""
    if any(k.startswith("text_encoder.bert.") for k in sd):
        return "text_encoder.bert.", None, {}
    key_map = lambda s: {("text_encoder.bert." + k[13:] if k.startswith("text_encoder.") else k): v
                         for k, v in s.items()}
    return "text_encoder.", key_map, {
        "text_encoder.cls.*": "a retrieval-mode stage-2 file has no MLM head (only MLM training uses it)"}


def _stage2(sd: Mapping[str, torch.Tensor], vis: VisionConfig, preset: str, source: str) -> Detected:
    from ..models.stage2 import Stage2Config

    V = "vision_encoder."
    pre = _pretrain(sd, V, vis, with_mae=False)
    bert_prefix, key_map, allow = _bert_layout(sd)
    bert = bert_config_from_keys(sd, bert_prefix, vis.embed_dim)
    for name in ("vision_proj.weight", "text_proj.weight", "itm_head.weight", "temp"):
        if name not in sd:
            raise CheckpointError(f"{source}: a stage-2 file without {name}")
    cfg = Stage2Config(vision=pre, text=bert, embed_dim=sd["vision_proj.weight"].shape[0], text_pool="cls",
                       add_sep=False, vocab="default")
    return Detected("stage2", CLASS_NAMES["stage2"], "stage2", cfg, key_map=key_map, allow_missing=allow,
                    summary=_summary(vis, preset, text=f"BERT {bert.num_hidden_layers}x{bert.hidden_size} "
                                                       f"(fusion from layer {bert.fusion_layer})",
                                     embed_dim=cfg.embed_dim, vocab=bert.vocab_size))


def beats_config_from_keys(sd: Mapping[str, torch.Tensor], p: str) -> Any:
    """The BEATs audio encoder under ``p`` (``audio_encoder.``): every size from shapes (patch, widths, layers,
    FFN, heads from ``grep_a`` / the relative-bias table, conv position kernel and groups, relative-bias
    buckets, the AudioSet head). What shapes cannot tell (post-LN deep norm, ``max_distance`` 800, exact GELU)
    is the released iter3 setting (spec §3.4, :data:`~internvideo2.models.stage2_av.RELEASED_BEATS_SETTINGS`)."""
    from ..models.audio import BEATsConfig
    from ..models.stage2_av import RELEASED_BEATS_SETTINGS

    need = [p + n for n in ("patch_embedding.weight", "encoder.layer_norm.weight", "encoder.pos_conv.0.weight_v",
                            "encoder.layers.0.fc1.weight")]
    absent = [n for n in need if n not in sd]
    if absent:
        raise CheckpointError(f"{p}: an incomplete BEATs audio encoder (no {', '.join(absent)})")
    patch = sd[p + "patch_embedding.weight"]  # [E, 1, P, P]
    width = sd[p + "encoder.layer_norm.weight"].shape[0]
    conv = sd[p + "encoder.pos_conv.0.weight_v"]  # [D, D / groups, K]
    layers = 1 + max(int(k[len(p) + 15:].split(".")[0]) for k in sd if k.startswith(p + "encoder.layers."))
    att = p + "encoder.layers.0.self_attn."
    rel = sd.get(att + "relative_attention_bias.weight")  # [buckets, heads]
    if att + "grep_a" in sd:
        heads = sd[att + "grep_a"].shape[1]
    elif rel is not None:
        heads = rel.shape[1]
    else:
        heads = max(width // 64, 1)  # BEATs heads are 64 wide
    settings = dict(RELEASED_BEATS_SETTINGS, relative_position_embedding=rel is not None,
                    gru_rel_pos=att + "grep_linear.weight" in sd, conv_bias=p + "patch_embedding.bias" in sd)
    if rel is not None:
        settings["num_buckets"] = rel.shape[0]
    extra: dict[str, Any] = {}
    if p + "predictor.weight" in sd:
        extra = dict(finetuned_model=True, predictor_class=sd[p + "predictor.weight"].shape[0])
    return BEATsConfig(**settings, **extra, input_patch_size=patch.shape[-1], embed_dim=patch.shape[0],
                       encoder_layers=layers, encoder_embed_dim=width,
                       encoder_ffn_embed_dim=sd[p + "encoder.layers.0.fc1.weight"].shape[0],
                       encoder_attention_heads=heads, conv_pos=conv.shape[2], conv_pos_groups=width // conv.shape[1])


def _stage2_av(sd: Mapping[str, torch.Tensor], vis: VisionConfig, preset: str, source: str) -> Detected:
    """An ``InternVideo2_Stage2_audiovisual`` state dict. The loss weights are the released 6B ones (spec
    §4.4), set so that exactly the file's optional modules exist: ``audio_encoder`` & co iff some audio
    weight, ``av_fusion`` iff AVTC or AVTM, ``atm_head`` iff ATM, ``avtm_head`` iff AVTM."""
    from ..models.stage2_av import Stage2AVConfig

    V = "vision_encoder."
    has = lambda prefix: any(k.startswith(prefix) for k in sd)
    for name in ("av_concat_vision_proj.0.weight", "vision_proj.weight", "text_proj.weight", "itm_head.weight", "temp"):
        if name not in sd:
            raise CheckpointError(f"{source}: an audio-visual stage-2 file without {name}")
    av = sd["av_concat_vision_proj.0.weight"].shape[0]
    bert_prefix, key_map, allow = _bert_layout(sd)
    bert = bert_config_from_keys(sd, bert_prefix, av)
    audio, fusion, atm, avtm = has("audio_encoder."), has("av_fusion."), has("atm_head."), has("avtm_head.")
    # the official constructor builds these together with the audio encoder, and av_fusion with AVTM
    odd = [k + "*" for k in ("audio_proj.", "av_concat_audio_proj.") if has(k) != audio]
    odd += [k + "*" for k in ("av_fusion.", "atm_head.", "avtm_head.") if has(k) and not audio]
    if avtm and not fusion:
        odd.append("avtm_head.* without av_fusion.*")
    if odd:
        raise CheckpointError(f"{source}: not a layout the official audio-visual class builds ({', '.join(odd)}; "
                              f"audio_encoder.* {'present' if audio else 'absent'})")
    # the released 6B weights (AVTC, AVTM, AVMLM on; ATC, AVC, ATM, AMLM off), fitted to the modules present
    weights = dict(loss_atc=0.0, loss_avc=0.0, loss_amlm=0.0, loss_atm=float(atm), loss_avtm=float(avtm),
                   loss_avtc=float(fusion), loss_avmlm=float(audio))
    extra: dict[str, Any] = {}
    if audio:
        extra["audio"] = beats_config_from_keys(sd, "audio_encoder.")
    cfg = Stage2AVConfig(vision=_pretrain(sd, V, vis, with_mae=False), text=bert,
                         embed_dim=sd["vision_proj.weight"].shape[0], av_concat_dim=av, text_pool="cls", add_sep=False,
                         vocab="default", **weights, **extra)
    a = cfg.audio
    return Detected("stage2_av", CLASS_NAMES["stage2_av"], "stage2_av", cfg, key_map=key_map, allow_missing=allow,
                    summary=_summary(vis, preset, text=f"BERT {bert.num_hidden_layers}x{bert.hidden_size} "
                                                       f"(fusion from layer {bert.fusion_layer})",
                                     audio=f"BEATs {a.encoder_layers}x{a.encoder_embed_dim}" if audio else None,
                                     embed_dim=cfg.embed_dim, av_concat_dim=av, vocab=bert.vocab_size,
                                     heads=[n for n in ("itm_head", "atm_head", "avtm_head") if has(n + ".")]))


def _clip(sd: Mapping[str, torch.Tensor], vis: VisionConfig, preset: str, source: str) -> Detected:
    from ..models.clip import CLIPConfig

    tower, tcfg, key_map = _clip_text(sd, source)
    align = sd["vision_align.1.weight"].shape[0] if "vision_align.1.weight" in sd else 0
    cfg = CLIPConfig.for_tower(vis, tower, tcfg, align_dim=align)
    small = tower == "mobileclip"
    return Detected("clip", CLASS_NAMES["clip_small" if small else "clip"], "clip", cfg, key_map=key_map,
                    summary=_summary(vis, preset, text=tower, embed_dim=cfg.embed_dim))


__all__ = ["Detected", "detect_checkpoint", "bert_config_from_keys", "beats_config_from_keys", "CLASS_NAMES"]
