"""The InternVideo2 vision transformer core (official-spec §1) — the one vision core of the package.

Input video ``[B, 3, T, H, W]`` (channels before time), ImageNet-normalised. Tokens are
``[cls, then frame-major, row-major patches]``; a model built for ``num_frames`` / ``img_size``
accepts other frame counts and sizes by resampling its position tables at run time (temporal
linear, spatial bicubic, cls row kept), the same maths the official loaders apply to checkpoints.

Used directly, :class:`VisionTransformer` is the InternVideo2-CLIP vision tower (§2.9: core +
attention pool, no fc_norm). Heads and alignment decoders live in :mod:`.variants`.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from ..errors import ShapeError
from .api import EmbeddingModel, VideoEmbedding
from .config import VisionConfig
from .layers import AttentionPool, Block, init_vit_weights, make_norm, rescale_blocks, trunc_normal_
from .pos_embed import resample_pos_embed, sincos_1d, sincos_1d_interleaved, sincos_2d, sincos_3d


class PatchEmbed(nn.Module):
    """``Conv3d(3, C, (tubelet, p, p))``; ``[B, 3, T, H, W] -> [B, T', H'*W', C]`` (key ``proj.*``)."""

    def __init__(self, cfg: VisionConfig):
        super().__init__()
        k = (cfg.tubelet_size, cfg.patch_size, cfg.patch_size)
        self.proj = nn.Conv3d(cfg.in_chans, cfg.embed_dim, kernel_size=k, stride=k)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.proj(x)  # [B, C, T', H', W']
        return x.flatten(3).permute(0, 2, 3, 1)


@dataclass
class VideoFeatures:
    """Output of :meth:`VisionTransformer.forward_features`.

    Attributes:
        tokens: final tokens ``[B, (1+)N_vis, C]`` (cls first when the model has one).
        intermediates: outputs of the requested blocks, ascending block order, each ``[B, (1+)N_vis, C]``.
        grid: the token grid ``(T', H', W')`` of this input.
        mask: the token mask used (``[B, (1+)N]``, True = dropped) or None.
        use_image: whether the image position table was used.
    """

    tokens: torch.Tensor
    intermediates: list[torch.Tensor]
    grid: tuple[int, int, int]
    mask: torch.Tensor | None
    use_image: bool


class VisionTransformer(EmbeddingModel, nn.Module):
    """Core + attention pool. ``forward(video) -> pooled [B, clip_embed_dim]`` (not normalised).

    The embedding API (:mod:`.api`): ``vision_backbone`` is the model itself; ``encode_video`` /
    ``forward_video`` give ``pooled`` (attention pool, or the token mean without one) and ``tokens``; vision
    models have no text side (``embeds`` is None)."""

    model_type = "vision"
    config_class = VisionConfig

    def __init__(self, cfg: VisionConfig, _init: bool = True):
        super().__init__()
        self.cfg = cfg
        self.config = cfg  # the full (variant) config; subclasses replace it
        C = cfg.embed_dim
        self.patch_embed = PatchEmbed(cfg)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, C)) if cfg.cls_token else None
        self.num_extra = 1 if cfg.cls_token else 0
        self._init_position_tables()
        dpr = [cfg.drop_path_rate * i / max(cfg.depth - 1, 1) for i in range(cfg.depth)]
        self.blocks = nn.ModuleList(
            Block(C, cfg.num_heads, cfg.mlp_hidden, qkv_bias=cfg.qkv_bias, qk_norm=cfg.qk_norm, norm=cfg.norm,
                  norm_eps=cfg.norm_eps, init_values=cfg.init_values,
                  layerscale_force_fp32=cfg.layerscale_force_fp32, act=cfg.act, drop_path=dpr[i],
                  layout_bug=cfg.attn_layout_bug)
            for i in range(cfg.depth))
        self.norm = make_norm(cfg.norm, C, cfg.norm_eps) if cfg.final_norm else None
        self.clip_projector = (AttentionPool(C, cfg.attn_pool_heads, cfg.clip_embed_dim)
                               if cfg.attn_pool_heads else None)
        self.grad_checkpointing = 0
        if _init:  # subclasses build their extra modules first, then initialise everything
            self.reset_parameters()

    # ------------------------------------------------------------------ construction
    def _init_position_tables(self) -> None:
        cfg, C = self.cfg, self.cfg.embed_dim
        T, H, W = cfg.grid
        if cfg.pos_embed == "joint":
            self.pos_embed = nn.Parameter(torch.zeros(1, self.num_extra + T * H * W, C),
                                          requires_grad=cfg.pos_embed_learnable)
        elif cfg.pos_embed == "separable":
            self.pos_embed_spatial = nn.Parameter(torch.zeros(1, H * W, C))
            self.pos_embed_temporal = nn.Parameter(torch.zeros(1, T, C))
            self.pos_embed_cls = nn.Parameter(torch.zeros(1, 1, C)) if cfg.cls_token else None
        else:  # sincos_fixed: a plain table, not part of the state dict (VideoMAE, spec P41)
            self.register_buffer("pos_table", sincos_1d_interleaved(C, T * H * W)[None], persistent=False)

    def new_position_table(self, grid: tuple[int, int, int] | None = None) -> torch.Tensor:
        """The initial (sin-cos) joint table for a grid, ``[1, (1+)T*H*W, C]``."""
        return sincos_3d(self.cfg.embed_dim, grid or self.cfg.grid, cls_token=self.cfg.cls_token)[None]

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """Official initialisation (spec §1.7)."""
        init_vit_weights(self)
        cfg = self.cfg
        if self.cls_token is not None:
            trunc_normal_(self.cls_token)
        if cfg.pos_embed == "joint":
            self.pos_embed.copy_(self.new_position_table())
        elif cfg.pos_embed == "separable":
            T, H, W = cfg.grid
            self.pos_embed_spatial.copy_(sincos_2d(cfg.embed_dim, (H, W)).float()[None])
            self.pos_embed_temporal.copy_(sincos_1d(cfg.embed_dim, torch.arange(T)).float()[None])
        rescale_blocks(self.blocks)

    # ------------------------------------------------------------------ position tables
    def image_table(self, name: str) -> torch.Tensor | None:
        """A dedicated single-frame table for ``name`` if the model has one (stage-2 encoders)."""
        return None

    def position_table(self, grid: tuple[int, int, int], use_image: bool = False,
                       name: str = "pos_embed") -> torch.Tensor:
        """Position table ``[1, (1+)T*H*W, C]`` for an input grid, resampled if it differs from the
        built grid. ``use_image``: single-frame input, using the model's image table when it has one,
        else the cls row plus the mean of the video table over time (official image path)."""
        cfg = self.cfg
        T0, H0, W0 = cfg.grid
        C, n_extra = cfg.embed_dim, self.num_extra
        if cfg.pos_embed == "separable" and name == "pos_embed":
            spatial = self.pos_embed_spatial
            if use_image:
                tokens, base = spatial, (1, H0, W0)
            else:
                tokens = (spatial[:, None] + self.pos_embed_temporal[:, :, None]).reshape(1, T0 * H0 * W0, C)
                base = (T0, H0, W0)
            table = torch.cat([self.pos_embed_cls, tokens], 1) if self.pos_embed_cls is not None else tokens
        elif cfg.pos_embed == "sincos_fixed" and name == "pos_embed":
            table, base = self.pos_table, (T0, H0, W0)
        else:
            table, base = getattr(self, name), (T0, H0, W0)
            if use_image:
                dedicated = self.image_table(name)
                if dedicated is not None:
                    table = dedicated
                else:
                    # mean over the temporal grid (the official code reshapes with num_frames, which
                    # is wrong for tubelet > 1, spec P34; the temporal grid is what is meant)
                    tokens = table[:, n_extra:].reshape(1, T0, H0 * W0, C).mean(dim=1)
                    table = torch.cat([table[:, :n_extra], tokens], dim=1)
                base = (1, H0, W0)
        return resample_pos_embed(table, base, grid, n_extra)

    # ------------------------------------------------------------------ forward
    def embed(self, x: torch.Tensor, use_image: bool | None = None) -> tuple[torch.Tensor, tuple, bool]:
        """Patch-embed, prepend cls, add positions. ``[B,3,T,H,W] -> ([B,(1+)N,C], grid, use_image)``."""
        if x.ndim != 5 or x.shape[1] != self.cfg.in_chans:
            raise ShapeError(f"expected video [B, {self.cfg.in_chans}, T, H, W], got {tuple(x.shape)}")
        B, _, T, H, W = x.shape
        p, tub = self.cfg.patch_size, self.cfg.tubelet_size
        if H % p or W % p:
            raise ShapeError(f"input size {H}x{W} is not divisible by the patch size {p}")
        if T % tub:
            raise ShapeError(f"{T} input frames are not divisible by tubelet_size {tub}")
        if use_image is None:
            # an image is a 1-frame input to a model built for several frames (official use_image=(T==1))
            use_image = T == 1 and self.cfg.grid[0] > 1
        x = self.patch_embed(x.to(self.patch_embed.proj.weight.dtype))  # [B, T', L, C]
        grid = (x.shape[1], H // p, W // p)
        x = x.reshape(B, -1, x.shape[-1])
        if self.cls_token is not None:
            x = torch.cat([self.cls_token.expand(B, -1, -1), x], dim=1)
        x = x + self.position_table(grid, use_image)
        return x, grid, use_image

    def check_mask(self, mask: torch.Tensor, num_tokens: int) -> int:
        """Validate a token mask ``[B, (1+)N]`` (True = dropped); returns visible tokens per sample."""
        if mask.dtype != torch.bool or mask.ndim != 2 or mask.shape[1] != num_tokens:
            raise ShapeError(f"mask must be bool [B, {num_tokens}] (True = dropped), got "
                             f"{mask.dtype} {tuple(mask.shape)}")
        if self.num_extra and mask[:, 0].any():
            raise ShapeError("mask column 0 (cls) must be False: the cls token is never dropped")
        keep = (~mask).sum(dim=1)
        if (keep != keep[0]).any():
            raise ShapeError(f"every sample must keep the same number of tokens, got {keep.tolist()}")
        return int(keep[0])

    def forward_features(self, x: torch.Tensor, mask: torch.Tensor | None = None, use_image: bool | None = None,
                         return_layers: Sequence[int] = (), stop_at: int | None = None) -> VideoFeatures:
        """Run the core.

        Args:
            x: video ``[B, 3, T, H, W]``.
            mask: optional bool ``[B, (1+)N]``, True = dropped (stage-1/2 training); visible tokens
                keep their order. Every sample keeps the same number of tokens.
            use_image: single-frame path (default: auto, ``T == 1`` for a multi-frame model).
            return_layers: block indices whose outputs to return (negative counts from the end).
            stop_at: stop after this block (official ``x_vis_return_idx``; -2 = penultimate).
        """
        x, grid, use_image = self.embed(x, use_image)
        if mask is not None:
            n_vis = self.check_mask(mask, x.shape[1])
            x = x[~mask].reshape(x.shape[0], n_vis, x.shape[-1])
        depth = len(self.blocks)
        wanted = sorted({i % depth for i in return_layers})
        last = depth - 1 if stop_at is None else stop_at % depth
        feats = []
        for i, blk in enumerate(self.blocks[: last + 1]):
            if self.training and i < self.grad_checkpointing:
                x = checkpoint(blk, x, use_reentrant=False)
            else:
                x = blk(x)
            if self.norm is not None and i == depth - 1:
                x = self.norm(x)
            if i in wanted:
                feats.append(x)
        missing = [i for i in wanted if i > last]
        if missing:
            raise ValueError(f"return_layers {missing} lie after stop_at={last}")
        return VideoFeatures(x, feats, grid, mask, use_image)

    def pool(self, tokens: torch.Tensor) -> torch.Tensor:
        """Attention pool ``[B, N, C] -> [B, clip_embed_dim]``."""
        if self.clip_projector is None:
            raise RuntimeError("this model has no attention-pool projector (attn_pool_heads=0)")
        return self.clip_projector(tokens)

    def forward(self, x: torch.Tensor, use_image: bool | None = None) -> torch.Tensor:
        """CLIP vision tower output: ``pool(tokens)`` ``[B, clip_embed_dim]``, not normalised."""
        return self.pool(self.forward_features(x, use_image=use_image).tokens)

    # ------------------------------------------------------------------ training helpers
    def set_grad_checkpointing(self, enable: bool = True, num_blocks: int | None = None) -> None:
        """Activation checkpointing of the first ``num_blocks`` blocks (default: all)."""
        self.grad_checkpointing = (len(self.blocks) if num_blocks is None else num_blocks) if enable else 0

    def no_weight_decay(self) -> set[str]:
        """Parameter names excluded from weight decay beyond 1-D tensors and biases."""
        return {n for n, _ in self.named_parameters() if "pos_embed" in n or n == "cls_token"}

    def get_layer_id(self, name: str) -> int:
        """Layer id for layer-wise lr decay (spec §6.2): 0 embeddings, i+1 for block i, depth+1 rest."""
        if name in ("cls_token", "mask_token", "pos_embed") or name.startswith("patch_embed"):
            return 0
        if name.startswith("blocks."):
            return int(name.split(".")[1]) + 1
        return len(self.blocks) + 1

    @property
    def num_layers(self) -> int:
        return len(self.blocks)

    def get_num_layers(self) -> int:
        return len(self.blocks)

    # ------------------------------------------------------------------ embedding API
    @property
    def vision_backbone(self) -> VisionTransformer:
        return self

    def forward_video(self, x: torch.Tensor, *, use_image: bool | None = None) -> VideoEmbedding:
        """``[B, 3, T, H, W]`` -> pooled ``[B, clip_embed_dim]`` (the token mean ``[B, C]`` without attention
        pool) and tokens ``[B, 1+N, C]``."""
        feats = self.forward_features(x, use_image=use_image)
        pooled = self.pool(feats.tokens) if self.clip_projector is not None else feats.tokens.mean(1)
        return VideoEmbedding(pooled=pooled, tokens=feats.tokens, grid=feats.grid)

    def prepare_video(self, video, num_frames: int | None = None) -> torch.Tensor:
        """Video in one of the documented layouts -> normalised ``[B, 3, T, S, S]`` on the model's device and
        dtype. Accepted (NumPy arrays or torch tensors):

        * raw RGB frames, uint8 ``[T, H, W, 3]`` or ``[B, T, H, W, 3]``: squash-resized to the model's size and
          normalised with its mean/std (the official evaluation transform);
        * an already normalised float video ``[B, 3, T, H, W]`` or ``[3, T, H, W]``: passed through;
        * a list of uint8 ``[H, W, 3]`` frames (what a decoder yields): stacked into ``[1, T, H, W, 3]``.

        Anything else (another dtype or layout, no frames, an empty side) raises :class:`ShapeError` naming
        the layouts."""
        layouts = ("uint8 frames [(B,) T, H, W, 3] or a normalised float video [(B,) 3, T, H, W] "
                   "(NumPy or torch)")
        if isinstance(video, (list, tuple)):
            if not video:
                raise ShapeError(f"video must be {layouts}; got an empty list of frames")
            try:
                video = (torch.stack(list(video)) if all(isinstance(f, torch.Tensor) for f in video)
                         else np.stack([np.asarray(f) for f in video]))
            except (ValueError, RuntimeError, TypeError) as e:
                raise ShapeError(f"a list of frames must hold uint8 [H, W, 3] frames of one size ({e})") from None
            if video.ndim != 4:
                raise ShapeError(f"a list of frames must hold uint8 [H, W, 3] frames, got {tuple(video.shape)}")
        if isinstance(video, np.ndarray):
            if video.dtype == object or not (video.dtype == np.uint8 or np.issubdtype(video.dtype, np.floating)):
                raise ShapeError(f"video must be {layouts}; got a NumPy array of {video.dtype} {video.shape}")
            video = torch.from_numpy(np.ascontiguousarray(video))
        if not isinstance(video, torch.Tensor):
            raise ShapeError(f"video must be {layouts}; got {type(video).__name__}")
        param = next(self.parameters())
        if video.dtype == torch.uint8:
            if video.ndim == 4:
                video = video[None]
            if video.ndim != 5 or video.shape[-1] != 3:
                raise ShapeError(f"raw frames must be uint8 [(B,) T, H, W, 3], got {tuple(video.shape)}")
            if min(video.shape[:4]) == 0:
                raise ShapeError(f"raw frames [(B,) T, H, W, 3] must not be empty, got {tuple(video.shape)}")
            if num_frames is not None and video.shape[1] != num_frames:
                raise ShapeError(f"got {video.shape[1]} frames, expected {num_frames}")
            from ..data.transforms import build_eval_transform

            # the official stage-2 evaluation transform: squash to size x size (bicubic), normalise
            tf = build_eval_transform(self.cfg.img_size, mode="squash", mean=self.cfg.mean, std=self.cfg.std)
            x = torch.stack([tf(clip) for clip in video]).permute(0, 2, 1, 3, 4)  # [B, 3, T, S, S]
        elif video.is_floating_point() and video.ndim in (4, 5) and video.shape[-4] == self.cfg.in_chans:
            x = video if video.ndim == 5 else video[None]
            if min(x.shape) == 0:
                raise ShapeError(f"the video [B, 3, T, H, W] must not be empty, got {tuple(x.shape)}")
        else:
            raise ShapeError(f"video must be {layouts}; got {video.dtype} {tuple(video.shape)}")
        return x.to(device=param.device, dtype=param.dtype)
