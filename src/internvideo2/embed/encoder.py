"""The model side of an embed run: which feature of the one embedding API (:mod:`internvideo2.models.api`)
becomes the row, its width, and the model's fingerprint (resuming with other weights is refused)."""
from __future__ import annotations

import hashlib

import numpy as np
import torch
from torch import nn

from ..errors import ConfigError
from .settings import EmbedSettings
from .stream import InputSpec


class VideoEncoder:
    """Runs ``model.forward_video`` on ready batches ``float32 [B, 3, T, S, S]``.

    Features: ``proj`` = ``VideoEmbedding.embeds`` (the shared video-text space; models with a text side),
    ``pool`` = ``.pooled`` (attention-pool output), ``mean`` = the mean of ``.tokens``; ``auto`` = ``proj``
    when the model has a text side, else ``pool`` (``mean`` for a core without attention pool).
    """

    def __init__(self, model: nn.Module, settings: EmbedSettings, device: torch.device, dtype: torch.dtype):
        self.model = model
        backbone = getattr(model, "vision_backbone", None)
        if backbone is None:
            raise ConfigError("model", f"{type(model).__name__} has no InternVideo2 video encoder to embed with")
        self.backbone = backbone
        self.model_type = getattr(model, "model_type", type(model).__name__)
        cfg = backbone.cfg
        proj_dim = model.projection_dim
        feature = settings.feature
        if feature == "auto":
            if proj_dim is not None:
                feature = "proj"
            else:
                feature = "pool" if backbone.clip_projector is not None else "mean"
        if feature == "proj" and proj_dim is None:
            raise ConfigError("feature", f"'proj' needs a model with a text side (stage-2 or CLIP); this is a "
                                         f"{self.model_type!r} model (use 'pool' or 'mean')")
        if feature in ("pool", "proj") and backbone.clip_projector is None:
            raise ConfigError("feature", f"{feature!r} needs the attention pool, which this model lacks "
                                         "(attn_pool_heads=0); use 'mean'")
        self.feature = feature
        self.normalize = bool(settings.normalize)
        self.keep_tokens = bool(settings.tokens)
        self.device, self.dtype = device, dtype
        frames = int(settings.frames or cfg.num_frames)
        size = int(settings.size or cfg.img_size)
        if frames % cfg.tubelet_size:
            raise ConfigError("frames", f"{frames} frames are not divisible by the model's tubelet size "
                                        f"{cfg.tubelet_size}")
        if size % cfg.patch_size:
            raise ConfigError("size", f"{size} is not divisible by the model's patch size {cfg.patch_size}")
        self.spec = InputSpec(frames, size, tuple(cfg.mean), tuple(cfg.std))
        # output widths from the config (a dry run of a 1B model on CPU would cost seconds)
        self.dim = {"mean": cfg.embed_dim, "pool": cfg.clip_embed_dim}.get(feature, proj_dim)
        g = size // cfg.patch_size
        self.token_shape = (backbone.num_extra + (frames // cfg.tubelet_size) * g * g, cfg.embed_dim)

    @torch.no_grad()
    def __call__(self, x: torch.Tensor) -> tuple[np.ndarray, np.ndarray | None]:
        """``[B, 3, T, S, S]`` -> (``float32 [B, D]``, ``float32 [B, 1+N, C]`` or None)."""
        x = x.to(device=self.device, dtype=self.dtype, non_blocking=True)
        out = self.model.forward_video(x)
        if self.feature == "mean":
            emb = out.tokens.mean(1)
        else:
            emb = out.embeds if self.feature == "proj" else out.pooled
        emb = emb.float()
        if self.normalize:
            emb = torch.nn.functional.normalize(emb, dim=-1)
        tok = out.tokens.float().cpu().numpy() if self.keep_tokens else None
        return emb.cpu().numpy(), tok


def model_fingerprint(model: nn.Module) -> str:
    """blake2b of every parameter and buffer (names, dtypes, shapes, bytes)."""
    h = hashlib.blake2b(digest_size=16)
    for name, t in model.state_dict().items():
        t = t.detach()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}\n".encode())
        h.update(t.cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()
