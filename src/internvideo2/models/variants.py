"""Model variants built on the one vision core, with the official state-dict names.

* :class:`InternVideo2Classifier` — ``single_modality/models/internvideo2.py`` (and ``_ap``), §2.1-2.2.
* :class:`InternVideo2Pretrain` — the stage-1 student (§2.3), the distillation student (§2.4) and the
  stage-2 vision encoder (§2.8): one class, configured by :class:`PretrainConfig`.
* :class:`TeacherModel` — InternVL-C (per-frame 2D, §2.6), VideoMAEv2 (§2.7) and the InternVideo2
  distillation teacher (§2.5).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch
from torch import nn

from ..errors import ConfigError
from .config import ClassifierConfig, PretrainConfig, TeacherConfig
from .layers import DECODERS, Mlp, MLPDecoder, init_vit_weights
from .pos_embed import resample_pos_embed
from .vision import VisionTransformer


class InternVideo2Classifier(VisionTransformer):
    """Action classifier: core -> attention pool -> (AP: residual MLP) -> fc_norm -> dropout -> head.

    ``forward(video [B,3,T,H,W]) -> logits [B, num_classes]``. Extra keys ``fc_norm.*``, ``head.*``
    (and ``extra_mlp.*`` for the ``ap`` head).
    """

    model_type = "classifier"
    config_class = ClassifierConfig

    def __init__(self, cfg: ClassifierConfig):
        super().__init__(cfg.vision, _init=False)
        self.config = cfg
        if cfg.vision.attn_pool_heads == 0:
            raise ValueError("the classifier needs the attention-pool projector (attn_pool_heads > 0)")
        self._build_head()
        self.reset_parameters()

    def _build_head(self) -> None:
        """The modules after the attention pool, per ``config.head`` / ``num_classes`` (official names)."""
        cfg = self.config
        D = cfg.vision.clip_embed_dim
        for name in ("down", "down_norm"):  # the cat head's, rebuilt by _head_width when needed
            if name in self._modules:
                del self._modules[name]
        self.extra_mlp = (nn.Sequential(nn.LayerNorm(D), Mlp(D, 4 * D, act="gelu"))
                          if cfg.head == "ap" and cfg.num_classes else None)
        self.fc_norm = nn.LayerNorm(D, eps=1e-5) if cfg.num_classes else None
        self.head_drop = nn.Dropout(cfg.fc_drop_rate)
        self.merge = cfg.merge_method if cfg.head == "cat" and cfg.num_classes else "proj"
        self.head = nn.Linear(self._head_width(), cfg.num_classes) if cfg.num_classes else None

    def _head_modules(self) -> list[nn.Module]:
        return [m for m in (self.extra_mlp, self.fc_norm, getattr(self, "down", None),
                            getattr(self, "down_norm", None), self.head) if m is not None]

    def _head_width(self) -> int:
        """Head input width; for the ``cat`` head also builds ``down`` and ``down_norm`` (official names)."""
        cfg, C, D = self.config, self.cfg.embed_dim, self.cfg.clip_embed_dim
        if self.merge == "proj":
            return D
        T = self.cfg.grid[0]
        avg_n = "avgN" in self.merge
        self.down = nn.Sequential(nn.Linear(C, D), nn.GELU()) if avg_n else nn.Identity()
        width = D if avg_n else C
        if cfg.merge_norm == "kaiming_BN":
            self.down_norm = nn.BatchNorm1d(width, affine=False, eps=1e-6)
        elif cfg.merge_norm == "BN":
            self.down_norm = nn.BatchNorm1d(width)
        else:
            self.down_norm = nn.LayerNorm(width)
        merged = width * ((T + 1) if avg_n else 2)
        return merged + (D if self.merge.endswith("_proj") else 0)

    def _merge_tokens(self, tokens: torch.Tensor, grid) -> torch.Tensor:
        """``cat`` head: [cls, patch means] -> down -> down_norm -> flatten. BatchNorm runs on the
        transposed ``[B, C', 1+T']`` tensor and is flattened without transposing back (channel-major), as
        in the official code; LayerNorm output is flattened token-major."""
        B, C = tokens.shape[0], tokens.shape[-1]
        cls, patches = tokens[:, :1], tokens[:, 1:]
        if "avg1" in self.merge:
            avg = patches.mean(1, keepdim=True)
        else:
            avg = patches.reshape(B, grid[0], grid[1] * grid[2], C).mean(2)
        merged = self.down(torch.cat([cls, avg], dim=1))
        if self.config.merge_norm in ("kaiming_BN", "BN"):
            return self.down_norm(merged.permute(0, 2, 1)).reshape(B, -1)
        return self.down_norm(merged).reshape(B, -1)

    @torch.no_grad()
    def reset_parameters(self) -> None:
        super().reset_parameters()
        self._init_head()

    @torch.no_grad()
    def _init_head(self) -> None:
        """The head's part of the official init, after the generic ViT init: the AP head's residual MLP starts
        at zero and the classifier is scaled by ``init_scale``."""
        if self.extra_mlp is not None:
            nn.init.zeros_(self.extra_mlp[1].fc2.weight)
            nn.init.zeros_(self.extra_mlp[1].fc2.bias)
        if self.head is not None:
            self.head.weight.mul_(self.config.init_scale)
            self.head.bias.mul_(self.config.init_scale)

    def forward_head(self, pooled: torch.Tensor) -> torch.Tensor:
        """``[B, clip_embed_dim] -> [B, num_classes]``."""
        if self.head is None:
            return pooled
        x = pooled
        if self.extra_mlp is not None:
            x = x + self.extra_mlp(x)
        return self.head(self.head_drop(self.fc_norm(x)))

    def forward(self, x: torch.Tensor, use_image: bool | None = None) -> torch.Tensor:
        feats = self.forward_features(x, use_image=use_image)
        pooled = self.pool(feats.tokens)
        if self.merge == "proj" or self.head is None:
            return self.forward_head(pooled)
        merged = self._merge_tokens(feats.tokens, feats.grid)
        if self.merge.endswith("_proj"):
            merged = torch.cat([merged, self.fc_norm(pooled)], dim=1)
        return self.head(self.head_drop(merged))

    def reset_classifier(self, num_classes: int, head: str | None = None) -> None:
        """Replace everything after the attention pool for ``num_classes`` classes (0: the model returns the
        pooled feature ``[B, clip_embed_dim]``), with ``head`` (``linear`` / ``ap`` / ``cat``; default: the
        current one). The new modules are initialised as in a fresh model; the backbone and the attention
        pool keep their weights. ``config`` is updated, so the model saves and reloads as it now is."""
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 0:
            raise ConfigError("num_classes", f"must be an integer >= 0, got {num_classes!r}")
        ref = next(self.clip_projector.parameters())  # the new head lives where (and as) the model does
        self.config = dataclasses.replace(self.config, num_classes=num_classes, head=head or self.config.head)
        self._build_head()
        with torch.no_grad():
            init_vit_weights(nn.ModuleList(self._head_modules()))
            self._init_head()
        for m in self._head_modules():
            m.to(device=ref.device, dtype=ref.dtype)


@dataclass
class PretrainOutput:
    """Outputs of :class:`InternVideo2Pretrain` (l2-normalised where the decoders normalise).

    Attributes:
        tokens: final visible tokens ``[B, 1+N_vis, C]`` (stage 2's ``x_vis``).
        pooled: attention-pool feature ``[B, clip_embed_dim]`` (stage 2's ``x_pool_vis``).
        clip_align: ``[K, B, 1+N_vis, D_clip_teacher]``, decoder k on the k-th smallest layer.
        final_align: ``[B, D_final]`` or None when ``clip_teacher_final_dim == 0``.
        mae_align: ``[K_mae, B, N_vis, D_mae_teacher]`` or None without the MAE branch.
    """

    tokens: torch.Tensor
    pooled: torch.Tensor
    clip_align: torch.Tensor
    final_align: torch.Tensor | None
    mae_align: torch.Tensor | None


class InternVideo2Pretrain(VisionTransformer):
    """Vision encoder with CLIP (and optionally MAE) alignment decoders.

    Keys beyond the core: ``clip_pos_embed``, (``img_pos_embed``, ``clip_img_pos_embed``),
    (``mae_pos_embed``), ``clip_decoder.{k}.*``, ``final_clip_decoder.*``, (``mae_decoder.{k}.*``).
    """

    model_type = "pretrain"
    config_class = PretrainConfig

    def __init__(self, cfg: PretrainConfig):
        super().__init__(cfg.vision, _init=False)
        self.config = cfg
        v = cfg.vision
        C, (T, H, W) = v.embed_dim, v.grid
        self.clip_pos_embed = nn.Parameter(torch.zeros(1, 1 + T * H * W, C))
        if cfg.sep_image_video_pos_embed:
            self.img_pos_embed = nn.Parameter(torch.zeros(1, 1 + H * W, C))
            self.clip_img_pos_embed = nn.Parameter(torch.zeros(1, 1 + H * W, C))
        decoder = DECODERS[cfg.clip_decoder]
        self.clip_index = cfg.clip_student_index
        self.clip_decoder = nn.ModuleList(
            decoder(C, cfg.clip_teacher_embed_dim, cfg.clip_norm_type) for _ in self.clip_index)
        self.final_clip_decoder = (decoder(v.clip_embed_dim, cfg.clip_teacher_final_dim, cfg.clip_norm_type)
                                   if cfg.clip_teacher_final_dim > 0 else None)
        self.mae_index = cfg.mae_student_index
        if self.mae_index:
            self.mae_pos_embed = nn.Parameter(torch.zeros(1, T * H * W, C))
            self.mae_decoder = nn.ModuleList(
                MLPDecoder(C, cfg.mae_teacher_embed_dim, cfg.mae_norm_type) for _ in self.mae_index)
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        super().reset_parameters()
        table = self.new_position_table()
        self.clip_pos_embed.copy_(table)
        if self.config.sep_image_video_pos_embed:
            _, H, W = self.cfg.grid
            img = self.new_position_table((1, H, W))
            self.img_pos_embed.copy_(img)
            self.clip_img_pos_embed.copy_(img)
        if self.mae_index:
            self.mae_pos_embed.copy_(table[:, 1:])

    def image_table(self, name: str) -> torch.Tensor | None:
        if self.config.sep_image_video_pos_embed:
            return {"pos_embed": self.img_pos_embed, "clip_pos_embed": self.clip_img_pos_embed}.get(name)
        return None

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None,
                use_image: bool | None = None, decoders: bool = True) -> PretrainOutput:
        """``x [B,3,T,H,W]``, optional ``mask [B,1+N]`` (True = dropped). ``decoders=False`` skips the
        alignment decoders (stage 2 without UTA, evaluation): ``clip_align`` / ``mae_align`` are then None."""
        if not decoders:
            feats = self.forward_features(x, mask=mask, use_image=use_image)
            pooled = self.pool(feats.tokens)
            final = self.final_clip_decoder(pooled) if self.final_clip_decoder is not None else None
            return PretrainOutput(feats.tokens, pooled, None, final, None)
        layers = sorted(set(self.clip_index) | set(self.mae_index))
        feats = self.forward_features(x, mask=mask, use_image=use_image, return_layers=layers)
        by_layer = dict(zip(layers, feats.intermediates))
        B = x.shape[0]
        pooled = self.pool(feats.tokens)
        final_align = self.final_clip_decoder(pooled) if self.final_clip_decoder is not None else None

        clip_pos = self.position_table(feats.grid, feats.use_image, name="clip_pos_embed").expand(B, -1, -1)
        if mask is not None:
            clip_pos = clip_pos[~mask].view(B, -1, clip_pos.shape[-1])
        clip_align = torch.stack([dec(by_layer[i] + clip_pos) for i, dec in zip(self.clip_index, self.clip_decoder)])

        mae_align = None
        if self.mae_index:
            mae_pos = self._mae_table(feats.grid, feats.use_image).expand(B, -1, -1)
            if mask is not None:
                mae_pos = mae_pos[~mask[:, 1:]].view(B, -1, mae_pos.shape[-1])
            mae_align = torch.stack([dec(by_layer[i][:, 1:] + mae_pos)
                                     for i, dec in zip(self.mae_index, self.mae_decoder)])
        return PretrainOutput(feats.tokens, pooled, clip_align, final_align, mae_align)

    def _mae_table(self, grid, use_image: bool) -> torch.Tensor:
        T0, H0, W0 = self.cfg.grid
        table, base = self.mae_pos_embed, (T0, H0, W0)
        if use_image:
            table, base = table.view(1, T0, H0 * W0, -1).mean(1), (1, H0, W0)
        return resample_pos_embed(table, base, grid, num_extra=0)


@dataclass
class TeacherOutput:
    """Teacher targets.

    Attributes:
        features: ``[K, B, (1+)N, C]`` outputs of the returned layers (ascending), l2-normalised
            when ``norm_type == 'l2'``. InternVL-C: cls averaged over frames, frames' patches
            concatenated. VideoMAE: no cls.
        pooled: ``[B, clip_embed_dim]`` pooled feature (averaged over frames for InternVL-C), or None.
        attn: pooling-query attention over patches: ``[B*T, L]`` per frame (InternVL-C) or ``[B, N]``
            (InternVideo2 teacher); None for VideoMAE.
    """

    features: torch.Tensor
    pooled: torch.Tensor | None
    attn: torch.Tensor | None


class TeacherModel(VisionTransformer):
    """A frozen teacher returning alignment targets (spec §2.5-2.7)."""

    model_type = "teacher"
    config_class = TeacherConfig

    def __init__(self, cfg: TeacherConfig):
        super().__init__(cfg.vision)
        self.config = cfg
        self.return_index = cfg.return_index
        if cfg.kind == "internvl_clip" and cfg.vision.grid[0] != 1:
            raise ValueError("the InternVL-C teacher is per-frame 2D: build it with num_frames=tubelet_size=1")

    def _l2(self, x: torch.Tensor) -> torch.Tensor:
        return x / x.norm(dim=-1, keepdim=True) if self.config.norm_type == "l2" else x

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None, return_attn: bool = True) -> TeacherOutput:
        """``x [B,3,T,H,W]``; ``mask`` only for the VideoMAE kind (``[B, N]``, True = dropped)."""
        kind = self.config.kind
        if kind == "internvl_clip":
            B, C3, T, H, W = x.shape
            frames = x.permute(0, 2, 1, 3, 4).reshape(B * T, C3, 1, H, W)
            f = self.forward_features(frames, return_layers=self.return_index)
            z = torch.stack(f.intermediates)  # [K, B*T, 1+L, C]
            K, _, L1, C = z.shape
            cls = z[:, :, :1].reshape(K, B, T, 1, C).mean(2)
            z = torch.cat([cls, z[:, :, 1:].reshape(K, B, T * (L1 - 1), C)], dim=2)
            pooled, attn = self.clip_projector(f.tokens, return_attn=True)
            pooled = pooled.view(B, T, -1).mean(1)
            return TeacherOutput(self._l2(z), self._l2(pooled), attn[:, 1:] if return_attn else None)
        if kind == "videomae":
            f = self.forward_features(x, mask=mask, return_layers=self.return_index)
            return TeacherOutput(self._l2(torch.stack(f.intermediates)), None, None)
        f = self.forward_features(x, return_layers=self.return_index)
        pooled, attn = self.clip_projector(f.tokens, return_attn=True)
        return TeacherOutput(self._l2(torch.stack(f.intermediates)), self._l2(pooled),
                             attn[:, 1:] if return_attn else None)


__all__ = ["InternVideo2Classifier", "InternVideo2Pretrain", "PretrainOutput", "TeacherModel", "TeacherOutput"]
