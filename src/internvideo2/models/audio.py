"""BEATs audio encoder (official ``multi_modality/models/backbones/beats/``; Microsoft BEATs iter3
architecture).

``fbank [B, T_f, F] -> tokens [B, n_patches, D]``: a 16x16 patch Conv2d over the log-mel fbank, LayerNorm,
``post_extract_proj``, a weight-normed grouped conv position embedding (``x + GELU(SamePad(conv(x)))``),
LayerNorm, then post-LN "deep-norm" transformer layers with a gated relative position bias. Module and
parameter names give the official state-dict keys (prefix ``audio_encoder.`` inside a stage-2 audio-visual
checkpoint).

Spec: ``../shared/docs/official-spec.md`` section 3.4, pitfall P18; fixture ``beats_audio``.
With the stage-2 fbank (64 mel bins, 998 frames) there are 62 x 4 = 248 tokens, token index ``4 * t + f``.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from internvideo2.errors import ConfigError
from internvideo2.utils.typed import check_fields

log = logging.getLogger("internvideo2.models.audio")


def _gelu_fp32(x: Tensor) -> Tensor:
    # official BEATs "gelu": exact GELU computed in float32, cast back
    return F.gelu(x.float()).type_as(x)


_ACTIVATIONS = {
    "gelu": _gelu_fp32,
    "gelu_accurate": lambda x: F.gelu(x.float(), approximate="tanh").type_as(x),
    "relu": F.relu,
    "tanh": torch.tanh,
    "linear": lambda x: x,
}


@dataclass
class BEATsConfig:
    """The ``cfg`` dict stored in BEATs checkpoints (defaults are the official ``BEATsConfig`` defaults).

    Attributes:
        input_patch_size: side of the square fbank patch (16); -1 in the defaults means "must be given".
        embed_dim: patch-embedding width (512).
        conv_bias: bias in the patch Conv2d.
        encoder_layers, encoder_embed_dim, encoder_ffn_embed_dim, encoder_attention_heads: transformer sizes.
        activation_fn: FFN activation ("gelu" = exact GELU in float32).
        layer_wise_gradient_decay_ratio: gradient multiplier applied before every layer (1.0 = off).
        layer_norm_first: pre-LN layers (False in the released models: post-LN).
        deep_norm: residual scaled by ``alpha = (2 * encoder_layers) ** 0.25`` before the post-LN.
        dropout, attention_dropout, activation_dropout, encoder_layerdrop, dropout_input: regularisation.
        conv_pos, conv_pos_groups: kernel size and groups of the convolutional position embedding.
        relative_position_embedding, num_buckets, max_distance: bucketed relative position bias.
        gru_rel_pos: gate the relative position bias with the query (``grep_linear``, ``grep_a``).
        finetuned_model, predictor_dropout, predictor_class: AudioSet classifier head (``predictor.*``).
        extra: keys of the checkpoint cfg this implementation does not know (kept, logged, not used).
    """

    input_patch_size: int = -1
    embed_dim: int = 512
    conv_bias: bool = False
    encoder_layers: int = 12
    encoder_embed_dim: int = 768
    encoder_ffn_embed_dim: int = 3072
    encoder_attention_heads: int = 12
    activation_fn: str = "gelu"
    layer_wise_gradient_decay_ratio: float = 1.0
    layer_norm_first: bool = False
    deep_norm: bool = False
    dropout: float = 0.1
    attention_dropout: float = 0.1
    activation_dropout: float = 0.0
    encoder_layerdrop: float = 0.0
    dropout_input: float = 0.0
    conv_pos: int = 128
    conv_pos_groups: int = 16
    relative_position_embedding: bool = False
    num_buckets: int = 320
    max_distance: int = 1280
    gru_rel_pos: bool = False
    finetuned_model: bool = False
    predictor_dropout: float = 0.1
    predictor_class: int = 527
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        check_fields(self, positive=("layer_wise_gradient_decay_ratio",),
                     nonneg=("num_buckets", "max_distance", "predictor_class"),
                     unit=("dropout", "attention_dropout", "activation_dropout", "encoder_layerdrop", "dropout_input",
                           "predictor_dropout"), layers=("encoder_layers",))
        for name in (
            "input_patch_size",
            "embed_dim",
            "encoder_layers",
            "encoder_embed_dim",
            "encoder_ffn_embed_dim",
            "encoder_attention_heads",
            "conv_pos",
            "conv_pos_groups",
        ):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v <= 0:
                raise ConfigError(name, f"must be a positive integer, got {v!r}")
        if self.encoder_embed_dim % self.encoder_attention_heads:
            raise ConfigError(
                "encoder_attention_heads",
                f"{self.encoder_attention_heads} does not divide encoder_embed_dim {self.encoder_embed_dim}",
            )
        if self.encoder_embed_dim % self.conv_pos_groups:
            raise ConfigError(
                "conv_pos_groups",
                f"{self.conv_pos_groups} does not divide encoder_embed_dim {self.encoder_embed_dim}",
            )
        if self.deep_norm and self.layer_norm_first:
            raise ConfigError(
                "deep_norm", "deep_norm and layer_norm_first cannot both be set (official assert)"
            )
        if self.activation_fn not in _ACTIVATIONS:
            raise ConfigError(
                "activation_fn", f"unsupported {self.activation_fn!r}; one of {sorted(_ACTIVATIONS)}"
            )
        if self.relative_position_embedding and (
            self.num_buckets < 4 or self.max_distance <= self.num_buckets // 4
        ):
            raise ConfigError(
                "num_buckets",
                f"num_buckets {self.num_buckets} / max_distance {self.max_distance} "
                "do not give a valid bucketing",
            )

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], source: str = "cfg") -> BEATsConfig:
        """Official ``BEATsConfig(cfg)``: known fields are set; unknown keys go to ``extra`` (logged)."""
        names = {f.name for f in dataclasses.fields(cls)} - {"extra"}
        kw = {k: v for k, v in d.items() if k in names}
        extra = {k: v for k, v in d.items() if k not in names}
        if extra:
            log.warning("%s: BEATs cfg keys not used by this implementation: %s", source, sorted(extra))
        try:
            return cls(**kw, extra=extra)
        except ConfigError as e:
            raise ConfigError(f"{source}: {e.field}", e.reason) from None
        except TypeError as e:
            raise ConfigError(source, str(e)) from None

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d.update(d.pop("extra"))
        return d


class _GradMultiply(torch.autograd.Function):
    """Identity forward; gradient scaled by ``scale`` (layer-wise gradient decay)."""

    @staticmethod
    def forward(ctx, x: Tensor, scale: float) -> Tensor:
        ctx.scale = scale
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: Tensor):
        return grad * ctx.scale, None


class WeightNormConv1d(nn.Module):
    """Grouped Conv1d with weight norm over ``dim=2`` (legacy ``nn.utils.weight_norm`` names ``weight_g``,
    ``weight_v``): ``weight = weight_v * weight_g / ||weight_v||``, the norm taken over dims 0 and 1 for every
    kernel tap. ``[B, C, T] -> [B, C, T + 1 - (K % 2)]`` (padding ``K // 2``)."""

    def __init__(self, channels: int, kernel_size: int, groups: int):
        super().__init__()
        self.padding = kernel_size // 2
        self.groups = groups
        # official init: N(0, sqrt(4 / (K * C))), bias 0, then weight_g = per-tap norm of that weight
        v = torch.randn(channels, channels // groups, kernel_size) * math.sqrt(4.0 / (kernel_size * channels))
        self.weight_g = nn.Parameter(torch.linalg.vector_norm(v, dim=(0, 1), keepdim=True))
        self.weight_v = nn.Parameter(v)
        self.bias = nn.Parameter(torch.zeros(channels))

    def weight(self) -> Tensor:
        norm = torch.linalg.vector_norm(self.weight_v, dim=(0, 1), keepdim=True)
        return self.weight_v * (self.weight_g / norm)

    def forward(self, x: Tensor) -> Tensor:
        return F.conv1d(x, self.weight(), self.bias, padding=self.padding, groups=self.groups)


class SamePad(nn.Module):
    """Drop the extra last step an even kernel with padding ``K // 2`` produces."""

    def __init__(self, kernel_size: int):
        super().__init__()
        self.remove = 1 if kernel_size % 2 == 0 else 0

    def forward(self, x: Tensor) -> Tensor:
        return x[:, :, : -self.remove] if self.remove else x


def relative_position_bucket(relative: Tensor, num_buckets: int, max_distance: int) -> Tensor:
    """Bidirectional T5-style bucketing (official ``_relative_positions_bucket``): half the buckets per sign;
    distances below ``num_buckets // 4`` are exact, the rest log-spaced up to ``max_distance``."""
    half = num_buckets // 2
    buckets = (relative > 0).long() * half
    dist = relative.abs()
    max_exact = half // 2
    is_small = dist < max_exact
    large = max_exact + (
        torch.log(dist.float() / max_exact) / math.log(max_distance / max_exact) * (half - max_exact)
    ).to(torch.long)
    large = torch.clamp(large, max=half - 1)
    return buckets + torch.where(is_small, dist, large)


class BEATsAttention(nn.Module):
    """Self-attention with the BEATs numerics: ``q * scaling / 32``; ``(qk - rowmax) * 32``; ``+ gated
    relative position bias``; softmax. Keys ``{q,k,v,out}_proj``, ``grep_linear``, ``grep_a``,
    ``relative_attention_bias``."""

    ALPHA = 32.0

    def __init__(self, cfg: BEATsConfig, relative_attention_bias: nn.Embedding | None):
        super().__init__()
        d = cfg.encoder_embed_dim
        self.num_heads = cfg.encoder_attention_heads
        self.head_dim = d // self.num_heads
        self.scaling = self.head_dim**-0.5
        self.num_buckets = cfg.num_buckets
        self.max_distance = cfg.max_distance
        self.q_proj = nn.Linear(d, d)
        self.k_proj = nn.Linear(d, d)
        self.v_proj = nn.Linear(d, d)
        self.out_proj = nn.Linear(d, d)
        self.dropout = nn.Dropout(cfg.attention_dropout)
        if relative_attention_bias is not None:
            # one Embedding shared by every layer (official: created in layer 0 and aliased); every layer
            # saves the key
            self.relative_attention_bias = relative_attention_bias
        else:
            self.relative_attention_bias = None
        self.gru_rel_pos = cfg.gru_rel_pos
        if self.gru_rel_pos:
            self.grep_linear = nn.Linear(self.head_dim, 8)
            self.grep_a = nn.Parameter(torch.ones(1, self.num_heads, 1, 1))

    def compute_bias(self, length: int, device: torch.device) -> Tensor:
        """``[1, heads, T, T]`` un-gated relative position bias (bucket of key position minus query
        position)."""
        pos = torch.arange(length, device=device)
        buckets = relative_position_bucket(pos[None, :] - pos[:, None], self.num_buckets, self.max_distance)
        return self.relative_attention_bias(buckets).permute(2, 0, 1).unsqueeze(0)

    def forward(self, x: Tensor, pos_bias: Tensor | None) -> tuple[Tensor, Tensor | None]:
        """``x [B, T, D]``, ``pos_bias [1, heads, T, T]`` or None (computed here when this layer has the
        table). Returns the output ``[B, T, D]`` and the un-gated bias to hand to the next layer."""
        b, t, _ = x.shape
        if self.relative_attention_bias is not None and pos_bias is None:
            pos_bias = self.compute_bias(t, x.device)
        q_raw = self.q_proj(x)
        # same operation order as the official code (q *= scaling; q *= 1/alpha)
        q = (q_raw * self.scaling) * (1.0 / self.ALPHA)
        q = q.view(b, t, self.num_heads, self.head_dim).transpose(1, 2)
        k = self.k_proj(x).view(b, t, self.num_heads, self.head_dim).transpose(1, 2)
        v = self.v_proj(x).view(b, t, self.num_heads, self.head_dim).transpose(1, 2)
        scores = q @ k.transpose(-1, -2)
        # subtracting the row max before re-scaling keeps fp16 scores finite; softmax is unchanged by it
        scores = (scores - scores.amax(dim=-1, keepdim=True)) * self.ALPHA
        if pos_bias is not None:
            bias = pos_bias
            if self.gru_rel_pos:
                # the official code recovers the unscaled query as q * alpha / scaling
                query_layer = q * self.ALPHA / self.scaling  # [B, h, T, d]
                gates = torch.sigmoid(self.grep_linear(query_layer).view(b, self.num_heads, t, 2, 4).sum(-1))
                gate_a, gate_b = gates.chunk(2, dim=-1)  # [B, h, T, 1] each
                bias = (gate_a * (gate_b * self.grep_a - 1.0) + 2.0) * pos_bias
            scores = scores + bias
        probs = F.softmax(scores, dim=-1).type_as(scores)
        out = self.dropout(probs) @ v
        return self.out_proj(out.transpose(1, 2).reshape(b, t, -1)), pos_bias


class BEATsLayer(nn.Module):
    """Post-LN (deep-norm) or pre-LN transformer layer (official ``TransformerSentenceEncoderLayer``)."""

    def __init__(self, cfg: BEATsConfig, relative_attention_bias: nn.Embedding | None):
        super().__init__()
        d = cfg.encoder_embed_dim
        self.self_attn = BEATsAttention(cfg, relative_attention_bias)
        self.self_attn_layer_norm = nn.LayerNorm(d)
        self.fc1 = nn.Linear(d, cfg.encoder_ffn_embed_dim)
        self.fc2 = nn.Linear(cfg.encoder_ffn_embed_dim, d)
        self.final_layer_norm = nn.LayerNorm(d)
        self.act = _ACTIVATIONS[cfg.activation_fn]
        self.dropout1 = nn.Dropout(cfg.dropout)
        self.dropout2 = nn.Dropout(cfg.activation_dropout)
        self.dropout3 = nn.Dropout(cfg.dropout)
        self.layer_norm_first = cfg.layer_norm_first
        self.alpha = math.pow(2 * cfg.encoder_layers, 0.25) if cfg.deep_norm else 1.0

    def forward(self, x: Tensor, pos_bias: Tensor | None) -> tuple[Tensor, Tensor | None]:
        if self.layer_norm_first:
            a, pos_bias = self.self_attn(self.self_attn_layer_norm(x), pos_bias)
            x = x + self.dropout1(a)
            h = self.dropout2(self.act(self.fc1(self.final_layer_norm(x))))
            return x + self.dropout3(self.fc2(h)), pos_bias
        a, pos_bias = self.self_attn(x, pos_bias)
        x = self.self_attn_layer_norm(x * self.alpha + self.dropout1(a))
        h = self.dropout2(self.act(self.fc1(x)))
        return self.final_layer_norm(x * self.alpha + self.dropout3(self.fc2(h))), pos_bias


class BEATsEncoder(nn.Module):
    """Keys ``encoder.pos_conv.0.*``, ``encoder.layer_norm.*``, ``encoder.layers.{i}.*``."""

    def __init__(self, cfg: BEATsConfig):
        super().__init__()
        d = cfg.encoder_embed_dim
        self.pos_conv = nn.Sequential(
            WeightNormConv1d(d, cfg.conv_pos, cfg.conv_pos_groups), SamePad(cfg.conv_pos), nn.GELU()
        )
        rel = (
            nn.Embedding(cfg.num_buckets, cfg.encoder_attention_heads)
            if cfg.relative_position_embedding
            else None
        )
        self.layers = nn.ModuleList([BEATsLayer(cfg, rel) for _ in range(cfg.encoder_layers)])
        self.layer_norm = nn.LayerNorm(d)
        self.layer_norm_first = cfg.layer_norm_first
        self.dropout = cfg.dropout
        self.layerdrop = cfg.encoder_layerdrop
        self.grad_decay = cfg.layer_wise_gradient_decay_ratio

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.pos_conv(x.transpose(1, 2)).transpose(1, 2)
        if not self.layer_norm_first:
            x = self.layer_norm(x)
        x = F.dropout(x, p=self.dropout, training=self.training)
        pos_bias = None
        for layer in self.layers:
            if self.grad_decay != 1.0:
                x = _GradMultiply.apply(x, self.grad_decay)
            if self.training and self.layerdrop > 0 and torch.rand(()).item() <= self.layerdrop:
                continue
            x, pos_bias = layer(x, pos_bias)
        if self.layer_norm_first:
            x = self.layer_norm(x)
        return x


class BEATs(nn.Module):
    """BEATs encoder. ``forward(fbank [B, T_f, F]) -> [B, (T_f // P) * (F // P), encoder_embed_dim]``.

    The stage-2 fbank is 64 mel bins x 998 frames, normalised ``(f - 15.41663) / (2 * 6.55582)`` and
    zero-padded after normalisation (see ``internvideo2.data`` for the fbank); there is no padding mask, so
    padded rows take part in attention (as in the official model). The pooled audio feature of stage 2 is
    ``tokens.mean(1)``.
    """

    def __init__(self, cfg: BEATsConfig):
        super().__init__()
        self.cfg = cfg
        p = cfg.input_patch_size
        self.patch_embedding = nn.Conv2d(1, cfg.embed_dim, kernel_size=p, stride=p, bias=cfg.conv_bias)
        self.layer_norm = nn.LayerNorm(cfg.embed_dim)
        self.post_extract_proj = (
            nn.Linear(cfg.embed_dim, cfg.encoder_embed_dim)
            if cfg.embed_dim != cfg.encoder_embed_dim
            else None
        )
        self.dropout_input = nn.Dropout(cfg.dropout_input)
        self.encoder = BEATsEncoder(cfg)
        if cfg.finetuned_model:
            self.predictor = nn.Linear(cfg.encoder_embed_dim, cfg.predictor_class)

    def forward(self, fbank: Tensor) -> Tensor:
        if fbank.dim() != 3:
            raise ValueError(f"fbank must be [B, T_frames, mel_bins], got shape {tuple(fbank.shape)}")
        p = self.cfg.input_patch_size
        if fbank.shape[1] < p or fbank.shape[2] < p:
            raise ValueError(f"fbank {tuple(fbank.shape)} is smaller than one {p}x{p} patch")
        x = self.patch_embedding(fbank.unsqueeze(1))  # [B, E, T_f/P, F/P]
        x = x.flatten(2).transpose(1, 2)  # token = t * (F/P) + f
        x = self.layer_norm(x)
        if self.post_extract_proj is not None:
            x = self.post_extract_proj(x)
        # the official forward also applies dropout_input once before the projection and discards it (P18)
        return self.encoder(self.dropout_input(x))


__all__ = ["BEATsConfig", "BEATs", "relative_position_bucket"]
