"""The stage-2 video-text model (official ``InternVideo2_Stage2_visual``, spec §4.1) and its training
objective: VTC + VTM + MLM (+ optional UTA), with training-time token masking of videos and images.

Keys: ``vision_encoder.*`` (:class:`InternVideo2Pretrain`), ``text_encoder.bert.*`` /
``text_encoder.cls.*`` (BERT fusion encoder with MLM head), ``vision_proj.*``, ``text_proj.*``,
``temp``, ``itm_head.*`` — exactly the released ``InternVideo2-stage2_1b-224p-f4.pt`` layout.

Video tensors are ``[B, 3, T, H, W]`` (channels before time) like every model of this package; a
single frame (T = 1) takes the image path.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import ConfigError
from ..objectives.losses import mlm_loss, pool_text, uta_loss, visible_targets, vtc_loss, vtm_loss
from ..objectives.masking import random_mask, tube_mask
from ..utils.typed import check_fields
from .api import EmbeddingModel, TextEmbedding, VideoEmbedding
from .config import PretrainConfig, VisionConfig
from .text import BertConfig, BertForMaskedLM, TokenizerMixin
from .variants import InternVideo2Pretrain


@dataclass
class Stage2Config:
    """Stage-2 model and objective.

    Attributes:
        vision: the vision encoder (stage-2 :class:`PretrainConfig`; its ``clip_decoder`` heads exist
            in the released checkpoints and are only used by UTA).
        text: BERT fusion encoder; ``fusion_layer`` splits text-only layers from cross-attention layers
            and ``encoder_width`` must equal the vision width (:meth:`fusion_memory_width`).
        embed_dim: width of the contrastive space (``vision_proj`` / ``text_proj`` outputs).
        temp: initial temperature (clamped to ``[temp_min, temp_max]`` at every training step).
        max_txt_len: text length for tokenisation.
        vocab: tokenizer vocabulary file; ``"default"`` is the uncased BERT vocab of the MiniLM package.
        add_sep: append [SEP] (off for the official tokenizer, on for MiniLM-initialised text towers).
        video_mask_ratio / image_mask_ratio: training-time random masking of vision tokens (0.8 / 0.5).
        video_mask_type: ``"random"`` or ``"tube"``.
        loss_vtc, loss_vtm, loss_mlm, loss_uta: loss weights (released: 1, 1, 1, 0). UTA aligns the vision
            encoder's ``clip_decoder`` / ``final_clip_decoder`` outputs with a frozen CLIP teacher's tokens and
            pooled feature at the visible positions (``new_UTA_Loss``); its teacher is passed to ``forward``.
        uta_ratio: (middle-layer, final) weights inside UTA (official ``clip_loss_ratio`` [1, 1]).
        uta_image_only: UTA only for image batches (the released 6B setting).
        vtm_hard_neg: sample VTM negatives from the similarities.
        mlm_prob: MLM masking probability (released: 0.5).
        vtm_batch / mlm_batch: run VTM / MLM on the first N samples of the local batch only (None = all);
            a compute saver for CPU-scale training, off in the official recipe.
        freeze_text_layers: freeze the word embeddings and the first N text layers (0 = train all).
        freeze_vision: freeze the vision encoder.
        text_pool: text feature = the [CLS] state after the text-only layers (``"cls"``, official) or the
            mean over real tokens (``"mean"``). Use ``"mean"`` for a tower initialised from a
            sentence-transformer trained with mean pooling (MiniLM), whose [CLS] state carries almost no
            information (the mean cosine between different captions' [CLS] states is 1.000).
        itm_pool: what the ITM head reads from the fused states: ``"cls"`` (official), ``"mean"``, or None =
            ``text_pool``.
        vtm_select: which samples of the local batch VTM / MLM run on when ``vtm_batch`` / ``mlm_batch`` is
            smaller than the batch: ``"first"`` (the first N) or ``"random"`` (a random N from the step's
            generator; batches grouped by appearance otherwise give VTM mostly same-object negatives).
        fusion_vision_norm: a parameter-free LayerNorm on the vision tokens before they enter the
            cross-attention (off in the official model).
    """

    vision: PretrainConfig = field(default_factory=lambda: PretrainConfig(
        vision=VisionConfig(num_frames=4), clip_return_layer=6, clip_teacher_embed_dim=3200,
        sep_image_video_pos_embed=True))
    text: BertConfig = field(default_factory=lambda: BertConfig(hidden_size=1024, num_hidden_layers=24,
                                                                num_attention_heads=16, intermediate_size=4096,
                                                                fusion_layer=19, encoder_width=1408))
    embed_dim: int = 512
    temp: float = 0.07
    temp_min: float = 0.001
    temp_max: float = 0.5
    max_txt_len: int = 32
    vocab: str = "default"
    add_sep: bool = False
    video_mask_ratio: float = 0.8
    image_mask_ratio: float = 0.5
    video_mask_type: str = "random"
    loss_vtc: float = 1.0
    loss_vtm: float = 1.0
    loss_mlm: float = 1.0
    loss_uta: float = 0.0
    uta_ratio: tuple[float, float] = (1.0, 1.0)
    uta_image_only: bool = False
    vtm_hard_neg: bool = True
    mlm_prob: float = 0.5
    vtm_batch: int | None = None
    mlm_batch: int | None = None
    freeze_text_layers: int = 0
    freeze_vision: bool = False
    text_pool: str = "cls"
    itm_pool: str | None = None
    vtm_select: str = "first"
    fusion_vision_norm: bool = False

    def __post_init__(self):
        check_fields(self, positive=("embed_dim", "temp", "temp_min", "temp_max", "max_txt_len", "vtm_batch",
                                     "mlm_batch"),
                     nonneg=("loss_vtc", "loss_vtm", "loss_mlm", "loss_uta", "freeze_text_layers"),
                     unit=("video_mask_ratio", "image_mask_ratio", "mlm_prob"))
        if isinstance(self.vision, dict):
            self.vision = PretrainConfig(**self.vision)
        if isinstance(self.text, dict):
            self.text = BertConfig(**self.text)
        width, what, reads = self.fusion_memory_width()
        if self.text.encoder_width != width:
            raise ConfigError("text.encoder_width", f"{self.text.encoder_width} must equal {what} {width} "
                                                    f"(BERT cross-attends to {reads})")
        if self.text.fusion_layer >= self.text.num_hidden_layers and (self.loss_vtm or self.loss_mlm):
            raise ConfigError("text.fusion_layer", "VTM/MLM need at least one cross-attention layer")
        if not 0 <= self.freeze_text_layers <= self.text.fusion_layer:
            raise ConfigError("freeze_text_layers", f"must be in [0, fusion_layer={self.text.fusion_layer}]")
        if self.text_pool not in ("cls", "mean"):
            raise ConfigError("text_pool", "must be 'cls' or 'mean'")
        if self.itm_pool not in (None, "cls", "mean"):
            raise ConfigError("itm_pool", "must be 'cls', 'mean' or null (= text_pool)")
        if self.vtm_select not in ("first", "random"):
            raise ConfigError("vtm_select", "must be 'first' or 'random'")
        if self.video_mask_type not in ("random", "tube"):
            raise ConfigError("video_mask_type", "must be 'random' or 'tube'")
        for name in ("video_mask_ratio", "image_mask_ratio", "mlm_prob"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ConfigError(name, "must be in [0, 1)")

    def fusion_memory_width(self) -> tuple[int, str, str]:
        """``(width, its name, what BERT reads)`` of the cross-attention memory; ``text.encoder_width`` must be
        this width. Here the raw vision tokens; a family whose memory is projected first (the audio-visual
        model's ``av_concat_dim``) overrides it."""
        return self.vision.vision.embed_dim, "the vision width", "vision tokens"

    @classmethod
    def from_vision(cls, vision: VisionConfig, text: str | BertConfig | None = None, **overrides: Any) -> Stage2Config:
        """The default stage-2 model around a backbone: the stage-2 vision encoder (no UTA decoders in use,
        its CLIP decoder sized to the backbone), ``text`` = a :data:`~internvideo2.models.text.BERT_PRESETS` name or
        a :class:`BertConfig` (default :func:`~internvideo2.models.text.default_text_tower`), cross-attending
        to the backbone's width."""
        from .text import bert_config, default_text_tower

        if not isinstance(text, BertConfig):
            text = bert_config(text or default_text_tower(vision.embed_dim), encoder_width=vision.embed_dim)
        pcfg = PretrainConfig(vision=vision, clip_teacher_embed_dim=vision.clip_embed_dim, clip_teacher_final_dim=0)
        return cls(vision=pcfg, text=text, **overrides)


class InternVideo2Stage2(EmbeddingModel, TokenizerMixin, nn.Module):
    """Vision encoder + BERT fusion encoder + projections + ITM head.

    ``forward(video [B,3,T,H,W], input_ids [B,L], attention_mask [B,L], idx [B])`` returns the weighted
    losses; the embedding API (``encode_video`` / ``encode_texts`` / ``forward_*``, :mod:`.api`) and
    ``itm_logits`` are the evaluation path.
    """

    model_type = "stage2"
    config_class = Stage2Config
    has_text = True
    has_itm = True

    def __init__(self, cfg: Stage2Config):
        super().__init__()
        self.config = cfg
        self.vision_encoder = InternVideo2Pretrain(cfg.vision)
        self.text_encoder = BertForMaskedLM(cfg.text)
        self.vision_proj = nn.Linear(cfg.vision.vision.clip_embed_dim, cfg.embed_dim)
        self.text_proj = nn.Linear(cfg.text.hidden_size, cfg.embed_dim)
        self.temp = nn.Parameter(torch.tensor(cfg.temp))
        self.itm_head = nn.Linear(cfg.text.hidden_size, 2)
        self.apply_freezing()

    # ------------------------------------------------------------------ setup
    def apply_freezing(self) -> None:
        """Freeze what is configured frozen, and what the configured objective cannot train (modules of
        zero-weight losses): they would receive no gradient, which distributed training rejects."""
        cfg = self.config
        if not cfg.loss_uta:
            for name in ("clip_decoder", "final_clip_decoder", "clip_pos_embed", "clip_img_pos_embed"):
                mod = getattr(self.vision_encoder, name, None)
                if mod is not None:
                    mod.requires_grad_(False)
        if not cfg.loss_vtm:
            self.itm_head.requires_grad_(False)
        if not cfg.loss_mlm:
            self.text_encoder.cls.requires_grad_(False)
            # the MLM decoder is tied to the word embeddings, which the text path still trains
            self.text_encoder.bert.embeddings.word_embeddings.weight.requires_grad_(True)
        if not (cfg.loss_vtm or cfg.loss_mlm):
            for layer in self.text_encoder.bert.encoder.layer[cfg.text.fusion_layer:]:
                layer.requires_grad_(False)
        if cfg.freeze_vision:
            self.vision_encoder.requires_grad_(False)
        if cfg.freeze_text_layers:
            bert = self.text_encoder.bert
            bert.embeddings.requires_grad_(False)
            for i in range(cfg.freeze_text_layers):
                bert.encoder.layer[i].requires_grad_(False)


    def no_weight_decay(self) -> set[str]:
        return {"temp"} | {"vision_encoder." + n for n in self.vision_encoder.no_weight_decay()}

    def get_layer_id(self, name: str) -> int:
        if name.startswith("vision_encoder."):
            return self.vision_encoder.get_layer_id(name[len("vision_encoder."):])
        return self.vision_encoder.num_layers + 1

    def get_num_layers(self) -> int:
        return self.vision_encoder.num_layers

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        self.vision_encoder.set_grad_checkpointing(enable)
        self.text_encoder.bert.set_gradient_checkpointing(enable)

    # ------------------------------------------------------------------ embedding API
    @property
    def vision_backbone(self) -> InternVideo2Pretrain:
        return self.vision_encoder

    @property
    def projection_dim(self) -> int:
        return self.config.embed_dim

    def forward_video(self, video: Tensor, *, use_image: bool | None = None) -> VideoEmbedding:
        """``[B,3,T,H,W]`` -> tokens ``[B, 1+N, C]``, pooled ``[B, clip_embed_dim]`` (attention pool) and
        ``embeds = normalize(vision_proj(pooled))`` ``[B, embed_dim]`` (the alignment decoders do not run)."""
        enc = self.vision_encoder
        feats = enc.forward_features(video, use_image=use_image)
        pooled = enc.pool(feats.tokens)
        return VideoEmbedding(pooled=pooled, tokens=feats.tokens, embeds=F.normalize(self.vision_proj(pooled), dim=-1),
                              grid=feats.grid)

    def _text_states(self, input_ids: Tensor, attention_mask: Tensor) -> tuple[Tensor, Tensor]:
        """Text-only layers: ``(hidden [N, L, H], feature [N, H])``; the feature is the [CLS] state after
        ``fusion_layer`` layers (spec §3.1), or the mean over real tokens with ``text_pool="mean"``."""
        h = self.text_encoder.bert(input_ids, attention_mask, mode="text")
        return h, pool_text(h, attention_mask, self.config.text_pool)

    def forward_text(self, input_ids: Tensor, attention_mask: Tensor) -> TextEmbedding:
        """Token ids ``[N, L]`` -> hidden ``[N, L, H]`` (text-only layers), pooled ``[N, H]`` and
        ``embeds = normalize(text_proj(pooled))`` ``[N, embed_dim]``."""
        h, pooled = self._text_states(input_ids, attention_mask)
        return TextEmbedding(pooled=pooled, embeds=F.normalize(self.text_proj(pooled), dim=-1), hidden=h,
                             attention_mask=attention_mask)

    @property
    def _itm_pool(self) -> str:
        return self.config.itm_pool or self.config.text_pool

    def fusion_memory(self, vision_tokens: Tensor) -> Tensor:
        """The vision tokens as the cross-attention sees them ``[N, S, C]``."""
        if self.config.fusion_vision_norm:
            return F.layer_norm(vision_tokens, vision_tokens.shape[-1:])
        return vision_tokens

    def itm_logits(self, vision_tokens: Tensor, text_hidden: Tensor, text_atts: Tensor) -> Tensor:
        """ITM logits ``[N, 2]`` for aligned rows of vision tokens and text hidden states."""
        h = self.text_encoder.bert(encoder_embeds=text_hidden, attention_mask=text_atts,
                                   encoder_hidden_states=self.fusion_memory(vision_tokens), mode="fusion")
        return self.itm_head(pool_text(h, text_atts, self._itm_pool))

    # ------------------------------------------------------------------ training
    def make_mask(self, video: Tensor, generator: torch.Generator | None = None) -> Tensor | None:
        """Random (or tube) token mask for a training batch: video ratio 0.8, image ratio 0.5."""
        cfg = self.config
        B, _, T, H, W = video.shape
        v = cfg.vision.vision
        t_tokens, side_h, side_w = T // v.tubelet_size, H // v.patch_size, W // v.patch_size
        is_image = T == 1
        ratio = cfg.image_mask_ratio if is_image else cfg.video_mask_ratio
        if ratio <= 0:
            return None
        if cfg.video_mask_type == "tube" and not is_image:
            mask = tube_mask(B, t_tokens, side_h * side_w, ratio, generator)
        else:
            mask = random_mask(B, t_tokens * side_h * side_w, ratio, generator)
        return mask.to(video.device)

    def forward(self, video: Tensor, input_ids: Tensor, attention_mask: Tensor, idx: Tensor,
                gather: Callable[[Tensor], Tensor] | None = None, generator: torch.Generator | None = None,
                mask: Tensor | None = None, teacher=None, hard_negatives: bool | None = None) -> dict[str, Tensor]:
        """Weighted training losses ``{loss_vtc, loss_vtm, loss_mlm, (loss_uta), loss}``.

        ``gather`` is a differentiable all-gather for VTC over the global batch (None: local batch);
        ``generator`` drives masking, hard-negative and MLM sampling (pass a seeded one for
        reproducible runs); ``mask`` overrides the random token mask; ``teacher`` is the frozen CLIP
        teacher's output on the unmasked input (``TeacherOutput``: features ``[K, B, 1+N, D]``, pooled
        ``[B, D']``), needed when ``loss_uta > 0``; ``hard_negatives`` overrides ``vtm_hard_neg`` for this
        step (a recipe may start VTM with uniform negatives).
        """
        cfg = self.config
        with torch.no_grad():
            self.temp.clamp_(cfg.temp_min, cfg.temp_max)
        if mask is None and self.training:
            mask = self.make_mask(video, generator)
        # the alignment decoders run only when UTA trains them
        vout = self.vision_encoder(video, mask=mask, decoders=bool(cfg.loss_uta) and self.training)
        vis_tokens, pooled = vout.tokens, vout.pooled
        text_hidden, text_cls = self._text_states(input_ids, attention_mask)
        v_feat, t_feat = self.vision_proj(pooled), self.text_proj(text_cls)
        memory = self.fusion_memory(vis_tokens)
        losses: dict[str, Tensor] = {}
        if cfg.loss_vtc:
            losses["loss_vtc"] = cfg.loss_vtc * vtc_loss(v_feat, t_feat, idx, self.temp, gather)
        B = video.shape[0]
        order = None  # the samples VTM / MLM run on: the first N, or a random N
        if cfg.vtm_select == "random" and ((cfg.loss_vtm and (cfg.vtm_batch or B) < B)
                                           or (cfg.loss_mlm and (cfg.mlm_batch or B) < B)):
            order = torch.randperm(B, generator=generator).to(video.device)

        def rows(n: int | None) -> Tensor | slice:
            n = min(n or B, B)
            return slice(0, n) if order is None else order[:n].sort().values

        if cfg.loss_vtm:
            s = rows(cfg.vtm_batch)
            loss, _, _ = vtm_loss(self.text_encoder.bert, self.itm_head, memory[s], text_hidden[s],
                                  attention_mask[s], v_feat[s], t_feat[s], idx[s], self.temp,
                                  hard_neg=cfg.vtm_hard_neg if hard_negatives is None else hard_negatives,
                                  generator=generator, pool=self._itm_pool)
            losses["loss_vtm"] = cfg.loss_vtm * loss
        if cfg.loss_mlm:
            s = rows(cfg.mlm_batch)
            losses["loss_mlm"] = cfg.loss_mlm * mlm_loss(self.text_encoder, input_ids[s], attention_mask[s],
                                                         memory[s], cfg.mlm_prob, generator)
        if cfg.loss_uta and not (cfg.uta_image_only and video.shape[2] > 1):
            if teacher is None:
                raise ValueError("loss_uta > 0 needs the CLIP teacher's outputs (forward(..., teacher=...))")
            target = teacher.features if mask is None else visible_targets(teacher.features, mask)
            losses["loss_uta"] = cfg.loss_uta * uta_loss(vout.clip_align, target, vout.final_align, teacher.pooled,
                                                         ratios=tuple(cfg.uta_ratio))
        losses["loss"] = sum(losses.values())
        return losses


# --------------------------------------------------------------------------------------------------
# Official configs -> ours
# --------------------------------------------------------------------------------------------------
_VISION_PRESET_BY_NAME = {"pretrain_internvideo2_1b_patch14_224": "internvideo2-1b",
                          "pretrain_internvideo2_6b_patch14_224": "internvideo2-6b"}


def stage2_config_from_official(official: dict[str, Any]) -> Stage2Config:
    """Official stage-2 config (the ``config`` dict of ``InternVideo2_Stage2_visual``, with the BERT
    JSON under ``bert_config``) -> :class:`Stage2Config`.

    ``official`` = ``{"config": {...model/criterion...}, "bert_config": {...}}``. The vision preset comes
    from ``vision_encoder.name``; sizes may be overridden by ``tiny_*`` fields (the fixtures' stand-in).
    """
    from .config import vision_config

    cfg = official["config"]
    m, crit = cfg["model"], cfg.get("criterion", {})
    ve = m["vision_encoder"]
    preset = _VISION_PRESET_BY_NAME.get(ve.get("name", ""), "internvideo2-1b")
    over = dict(img_size=ve.get("img_size", 224), num_frames=ve.get("num_frames", 4),
                tubelet_size=ve.get("tubelet_size", 1), patch_size=ve.get("patch_size", 14),
                clip_embed_dim=ve.get("clip_embed_dim", 768),
                act="gelu_tanh" if ve.get("use_fused_mlp", True) else "gelu")
    for k in ("embed_dim", "depth", "num_heads", "mlp_ratio"):
        if f"tiny_{k}" in ve:
            over[k] = ve[f"tiny_{k}"]
    vis = PretrainConfig(vision=vision_config(preset, **over),
                         clip_teacher_embed_dim=ve.get("clip_teacher_embed_dim", 3200),
                         clip_teacher_final_dim=ve.get("clip_teacher_final_dim", 768),
                         clip_return_layer=ve.get("clip_return_layer", 1),
                         clip_return_interval=ve.get("clip_student_return_interval", 1),
                         clip_norm_type=ve.get("clip_norm_type", "l2"),
                         sep_image_video_pos_embed=ve.get("sep_image_video_pos_embed", False))
    bert = dict(official["bert_config"])
    bert["fusion_layer"] = m["text_encoder"].get("fusion_layer", bert.get("fusion_layer"))
    if not m.get("multimodal", {}).get("enable", True):
        bert["fusion_layer"] = bert["num_hidden_layers"]
    bert["encoder_width"] = vis.vision.embed_dim
    w = crit.get("loss_weight", {})
    return Stage2Config(
        vision=vis, text=BertConfig.from_dict(bert), embed_dim=m.get("embed_dim", 512), temp=m.get("temp", 0.07),
        video_mask_ratio=ve.get("video_mask_ratio", 0.8), image_mask_ratio=ve.get("image_mask_ratio", 0.5),
        video_mask_type=ve.get("video_mask_type", "random") if ve.get("video_mask_type") in ("random", "tube")
        else "random",
        loss_vtc=w.get("vtc", 1.0), loss_vtm=w.get("vtm", 1.0), loss_mlm=w.get("mlm", 1.0), loss_uta=w.get("uta", 0.0),
        vtm_hard_neg=crit.get("vtm_hard_neg", True), mlm_prob=crit.get("mlm_masking_prob", 0.5))


def replace(cfg: Stage2Config, **kw) -> Stage2Config:
    return dataclasses.replace(cfg, **kw)
