"""Trainable teachers for stage 1 at toy scale (the real ones are InternVL-C and VideoMAEv2-g).

* :class:`ImageTextTeacher` — an InternVL-C-style image CLIP: a per-frame 2D vision transformer
  (:class:`~internvideo2.models.variants.TeacherModel`, kind ``internvl_clip``) aligned with a text tower
  by a contrastive loss on (frame, caption) pairs. After training, ``.vision`` is the CLIP teacher of
  stage 1 (intermediate tokens, pooled feature, pooling attention for masking).
* :class:`VideoMAETeacher` — a VideoMAEv2-style masked autoencoder: the encoder (kind ``videomae``: no
  cls token, LayerNorm blocks, tubelet 2, final norm) sees a tube-masked video and a light decoder
  reconstructs the normalised pixels of the masked tubelets. After training, ``.encoder`` is the MAE
  teacher of stage 1.

Any module with the same output contract (:class:`TeacherOutput`) can serve as a teacher; see
:class:`~internvideo2.train.stage1.Stage1Task`.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import ConfigError
from ..objectives.losses import pool_text, vtc_loss
from ..utils.typed import check_fields
from .api import EmbeddingModel, TextEmbedding, VideoEmbedding
from .config import TeacherConfig, VisionConfig, vision_config
from .layers import Block, init_vit_weights
from .pos_embed import sincos_1d_interleaved
from .text import BertConfig, BertModel, TokenizerMixin
from .variants import TeacherModel


@dataclass
class ImageTextTeacherConfig:
    """Attributes:
        vision: the per-frame teacher (kind ``internvl_clip``; its ``vision.num_frames`` must be 1).
        text: the text tower (a plain BERT; no cross-attention).
        embed_dim: contrastive space width.
        temp: initial temperature (learnable, clamped to [0.01, 0.5]).
        text_pool: ``mean`` (sentence-transformer towers such as MiniLM) or ``cls``.
        max_txt_len / vocab / add_sep: tokenisation.
    """

    vision: TeacherConfig = field(default_factory=lambda: TeacherConfig(
        vision=vision_config("internvl-c-6b", embed_dim=128, depth=4, num_heads=4, img_size=56, clip_embed_dim=128,
                             attn_pool_heads=4), kind="internvl_clip", return_layer=2))
    text: BertConfig = field(default_factory=BertConfig)
    embed_dim: int = 256
    temp: float = 0.07
    text_pool: str = "mean"
    max_txt_len: int = 32
    vocab: str = "default"
    add_sep: bool = True

    def __post_init__(self):
        check_fields(self, positive=("embed_dim", "temp", "max_txt_len"))
        if isinstance(self.vision, dict):
            self.vision = TeacherConfig(**self.vision)
        if isinstance(self.text, dict):
            self.text = BertConfig(**self.text)
        if self.vision.kind != "internvl_clip":
            raise ConfigError("vision.kind", "the image-text teacher is per-frame: kind must be 'internvl_clip'")
        if self.text_pool not in ("mean", "cls"):
            raise ConfigError("text_pool", "must be 'mean' or 'cls'")

    @classmethod
    def from_vision(cls, vision: VisionConfig, text: str | BertConfig | None = None,
                    **overrides: Any) -> ImageTextTeacherConfig:
        """An image-text teacher around a backbone, made per-frame (1 frame, tubelet 1); ``text`` a BERT preset
        name or config (default :func:`~internvideo2.models.text.default_text_tower`)."""
        from .text import bert_config, default_text_tower

        if not isinstance(text, BertConfig):
            text = bert_config(text or default_text_tower(vision.embed_dim))
        frame = TeacherConfig(vision=vision.replace(num_frames=1, tubelet_size=1), kind="internvl_clip")
        return cls(vision=frame, text=text, **overrides)


class ImageTextTeacher(EmbeddingModel, TokenizerMixin, nn.Module):
    """``forward(frames [B, 3, 1, H, W], input_ids, attention_mask) -> {"loss"}`` (symmetric InfoNCE).

    Embedding API (:mod:`.api`): a video is embedded frame by frame, CLIP-style: ``pooled`` and ``embeds``
    are the means over frames (``embeds`` re-normalised), ``tokens`` the teacher's stage-1 layout (cls
    averaged over frames, then every frame's patches)."""

    model_type = "image_text_teacher"
    config_class = ImageTextTeacherConfig
    has_text = True

    def __init__(self, cfg: ImageTextTeacherConfig):
        super().__init__()
        self.config = cfg
        self.vision = TeacherModel(cfg.vision)
        text = dataclasses.replace(cfg.text, fusion_layer=cfg.text.num_hidden_layers)
        self.text_encoder = BertModel(text)
        self.vision_proj = nn.Linear(cfg.vision.vision.clip_embed_dim, cfg.embed_dim)
        self.text_proj = nn.Linear(cfg.text.hidden_size, cfg.embed_dim)
        self.temp = nn.Parameter(torch.tensor(cfg.temp))


    def no_weight_decay(self) -> set[str]:
        return {"temp"} | {"vision." + n for n in self.vision.no_weight_decay()}

    def train(self, mode: bool = True):
        """A frozen text tower always runs in eval mode (no dropout): its features are then fixed per
        caption, which is what lets the training task compute each caption once."""
        super().train(mode)
        if not any(p.requires_grad for p in self.text_encoder.parameters()):
            self.text_encoder.eval()
        return self

    @property
    def vision_backbone(self) -> TeacherModel:
        return self.vision

    @property
    def projection_dim(self) -> int:
        return self.config.embed_dim

    def forward_video(self, video: Tensor, *, use_image: bool | None = None) -> VideoEmbedding:
        """``[B, 3, T, H, W]`` -> per-frame features averaged over the ``T`` frames."""
        B, C3, T, H, W = video.shape
        frames = video.permute(0, 2, 1, 3, 4).reshape(B * T, C3, 1, H, W)
        feats = self.vision.forward_features(frames)
        pooled = self.vision.pool(feats.tokens)  # [B*T, D]
        per_frame = F.normalize(self.vision_proj(pooled), dim=-1).view(B, T, -1)
        tok = feats.tokens.view(B, T, *feats.tokens.shape[1:])
        tokens = torch.cat([tok[:, :, :1].mean(1), tok[:, :, 1:].reshape(B, -1, tok.shape[-1])], dim=1)
        return VideoEmbedding(pooled=pooled.view(B, T, -1).mean(1), tokens=tokens,
                              embeds=F.normalize(per_frame.mean(1), dim=-1), grid=(T, *feats.grid[1:]))

    def forward_text(self, input_ids: Tensor, attention_mask: Tensor) -> TextEmbedding:
        h = self.text_encoder(input_ids, attention_mask, mode="text")
        pooled = pool_text(h, attention_mask, self.config.text_pool)
        return TextEmbedding(pooled=pooled, embeds=F.normalize(self.text_proj(pooled), dim=-1), hidden=h,
                             attention_mask=attention_mask)

    def image_features(self, frames: Tensor) -> Tensor:
        """``[B, 3, 1, H, W] -> [B, embed_dim]`` unit vectors."""
        pooled = self.vision.pool(self.vision.forward_features(frames).tokens)
        return F.normalize(self.vision_proj(pooled), dim=-1)

    def text_pooled(self, input_ids: Tensor, attention_mask: Tensor) -> Tensor:
        """The text tower's pooled feature ``[N, H]`` (before the projection)."""
        return pool_text(self.text_encoder(input_ids, attention_mask, mode="text"), attention_mask,
                         self.config.text_pool)

    def text_features(self, input_ids: Tensor, attention_mask: Tensor, pooled: Tensor | None = None) -> Tensor:
        feat = self.text_pooled(input_ids, attention_mask) if pooled is None else pooled
        return F.normalize(self.text_proj(feat), dim=-1)

    def forward(self, frames: Tensor, input_ids: Tensor | None, attention_mask: Tensor | None,
                idx: Tensor | None = None, gather=None, text_pooled: Tensor | None = None) -> dict[str, Tensor]:
        """``text_pooled``: precomputed :meth:`text_pooled` features (a frozen text tower's cache)."""
        with torch.no_grad():
            self.temp.clamp_(0.01, 0.5)
        v = self.image_features(frames)
        t = self.text_features(input_ids, attention_mask, text_pooled)
        idx = torch.arange(len(v), device=v.device) if idx is None else idx
        loss = vtc_loss(v, t, idx, self.temp, gather)
        return {"loss_itc": loss, "loss": loss}


@dataclass
class VideoMAETeacherConfig:
    """Attributes:
        encoder: the teacher encoder (kind ``videomae``).
        decoder_dim / decoder_depth / decoder_heads: the light reconstruction decoder.
        mask_ratio: tube masking ratio of the encoder input (VideoMAE: 0.9).
        norm_pix_loss: per-patch normalised pixel targets.
        motion_weight: weight of moving pixels in the reconstruction loss. Each target pixel counts
            ``1 + motion_weight * d / mean(d)``, where ``d`` is its distance from the same pixel's mean over the
            clip's frames: pixels that change (moving objects) outweigh the static background, which otherwise
            dominates a small clip's loss and teaches the encoder appearance only. 0 = the plain VideoMAE loss.
    """

    encoder: TeacherConfig = field(default_factory=lambda: TeacherConfig(
        vision=vision_config("videomae-g14", embed_dim=128, depth=4, num_heads=4, img_size=56, num_frames=8),
        kind="videomae", return_layer=2))
    decoder_dim: int = 96
    decoder_depth: int = 2
    decoder_heads: int = 4
    mask_ratio: float = 0.9
    norm_pix_loss: bool = True
    motion_weight: float = 0.0

    def __post_init__(self):
        check_fields(self, positive=("decoder_dim", "decoder_depth", "decoder_heads"), layers=("decoder_depth",))
        if isinstance(self.encoder, dict):
            self.encoder = TeacherConfig(**self.encoder)
        if self.encoder.kind != "videomae":
            raise ConfigError("encoder.kind", "must be 'videomae'")
        if not 0.0 < self.mask_ratio < 1.0:
            raise ConfigError("mask_ratio", "must be in (0, 1)")
        if not self.motion_weight >= 0.0:
            raise ConfigError("motion_weight", f"must be >= 0, got {self.motion_weight}")

    @classmethod
    def from_vision(cls, vision: VisionConfig, **overrides: Any) -> VideoMAETeacherConfig:
        """A VideoMAE teacher around a backbone (``videomae-g14``-style: no cls token)."""
        return cls(encoder=TeacherConfig(vision=vision, kind="videomae"), **overrides)


class VideoMAETeacher(EmbeddingModel, nn.Module):
    """Masked video autoencoder. ``forward(video [B,3,T,H,W], mask [B, N] True = hidden) -> {"loss"}``.
    Embedding API: the encoder's (no decoder) tokens and their mean; no text side."""

    model_type = "videomae_teacher"
    config_class = VideoMAETeacherConfig

    def __init__(self, cfg: VideoMAETeacherConfig):
        super().__init__()
        self.config = cfg
        self.encoder = TeacherModel(cfg.encoder)
        v = cfg.encoder.vision
        T, H, W = v.grid
        self.num_tokens = T * H * W
        self.patch_pixels = v.tubelet_size * v.patch_size * v.patch_size * v.in_chans
        self.encoder_to_decoder = nn.Linear(v.embed_dim, cfg.decoder_dim, bias=False)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, cfg.decoder_dim))
        self.register_buffer("decoder_pos", sincos_1d_interleaved(cfg.decoder_dim, self.num_tokens)[None],
                             persistent=False)
        self.decoder_blocks = nn.ModuleList(
            Block(cfg.decoder_dim, cfg.decoder_heads, 4 * cfg.decoder_dim, qkv_bias="qv", qk_norm=False,
                  norm="layernorm", init_values=0.0, act="gelu") for _ in range(cfg.decoder_depth))
        self.decoder_norm = nn.LayerNorm(cfg.decoder_dim, eps=1e-6)
        self.decoder_pred = nn.Linear(cfg.decoder_dim, self.patch_pixels)
        init_vit_weights(nn.ModuleList([self.encoder_to_decoder, self.decoder_blocks, self.decoder_pred]))
        nn.init.trunc_normal_(self.mask_token, std=0.02)

    def no_weight_decay(self) -> set[str]:
        return {"mask_token"}

    @property
    def vision_backbone(self) -> TeacherModel:
        return self.encoder

    def forward_video(self, video: Tensor, *, use_image: bool | None = None) -> VideoEmbedding:
        return self.encoder.forward_video(video, use_image=use_image)

    def patchify(self, video: Tensor) -> Tensor:
        """``[B, 3, T, H, W] -> [B, N, t*p*p*3]`` tubelet pixels in token order (t-major, row-major)."""
        v = self.config.encoder.vision
        t, p = v.tubelet_size, v.patch_size
        B, C, T, H, W = video.shape
        x = video.reshape(B, C, T // t, t, H // p, p, W // p, p)
        return x.permute(0, 2, 4, 6, 3, 5, 7, 1).reshape(B, (T // t) * (H // p) * (W // p), t * p * p * C)

    def forward(self, video: Tensor, mask: Tensor) -> dict[str, Tensor]:
        B = video.shape[0]
        feats = self.encoder.forward_features(video, mask=mask)
        vis = self.encoder_to_decoder(feats.tokens)  # [B, N_vis, Dd]
        Dd = vis.shape[-1]
        pos = self.decoder_pos.expand(B, -1, -1)
        n_mask = int(mask[0].sum())
        x = torch.cat([vis + pos[~mask].view(B, -1, Dd), self.mask_token + pos[mask].view(B, n_mask, Dd)], dim=1)
        for blk in self.decoder_blocks:
            x = blk(x)
        pred = self.decoder_pred(self.decoder_norm(x[:, -n_mask:]))  # [B, N_mask, pixels]
        target = self.patchify(video)[mask].view(B, n_mask, -1)
        if self.config.norm_pix_loss:
            target = ((target - target.mean(-1, keepdim=True))
                      / (target.var(-1, keepdim=True, unbiased=True) + 1e-6).sqrt())
        if self.config.motion_weight > 0:
            d = (video - video.mean(dim=2, keepdim=True)).abs()  # [B, 3, T, H, W] change over the clip
            d = d / d.mean(dim=(1, 2, 3, 4), keepdim=True).clamp_min(1e-6)
            w = 1.0 + self.config.motion_weight * self.patchify(d)[mask].view(B, n_mask, -1)
            loss = ((pred - target) ** 2 * w).sum() / w.sum()
        else:
            loss = F.mse_loss(pred, target)
        return {"loss_rec": loss, "loss": loss}


__all__ = ["ImageTextTeacher", "ImageTextTeacherConfig", "VideoMAETeacher", "VideoMAETeacherConfig", "VisionConfig"]
