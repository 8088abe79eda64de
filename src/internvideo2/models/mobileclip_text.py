"""MobileCLIP-B text tower of the distilled InternVideo2-CLIP S14/B14/L14 models (official
``multi_modality/models/backbones/internvideo2/mobileclip/{text_encoder,transformer}.py``, config
``mobileclip_b.json``; spec section 3.3).

A 12-layer pre-norm causal transformer over CLIP BPE ids (:mod:`.clip_tokenizer`): token embedding + a learned
position table -> ``x = x + MHA(LN(x))``, ``x = x + FFN(LN(x))`` -> final LayerNorm -> the state at the EOT
token (the largest id of each row) -> ``@ projection_layer``. Module names follow the released state dict
exactly (the ``text_encoder.*`` keys of the CLIP checkpoint, prefix removed), so it loads with no renaming.

Official details kept on purpose:

* ``embed_scale`` (``dim ** -0.5``) is computed but never applied to the token embeddings.
* A sequence length other than ``context_length`` bilinearly resamples the position table (``F.interpolate``
  on ``[1, 1, 77, D]`` to ``(L, D)``, ``align_corners=False``), so ids padded to a different length give
  different features: pad to ``context_length`` to match the released model.
* With ``causal_masking`` the padding mask is dropped (the official code sets ``key_padding_mask = None``):
  positions up to the EOT token never see the pads after it, so ``attention_mask`` changes nothing there.
* The softmax and every LayerNorm run in float32 and cast back (``LayerNormFP32``); GELU is the exact erf one.
* The EOT position is ``argmax(input_ids)`` (``<end_of_text>`` has the largest id of the vocabulary).

Shapes: ``N`` texts, ``L`` tokens, ``D`` width (``dim``), ``P`` projection width.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from internvideo2.errors import ConfigError, ShapeError
from internvideo2.utils.typed import check_fields


@dataclass
class MobileCLIPTextConfig:
    """Sizes of the MobileCLIP text transformer; the defaults are ``mobileclip_b.json`` (``text_cfg`` and
    ``embed_dim``), the tower of the released S14/B14/L14 CLIP models (63.43 M parameters).

    Attributes:
        vocab_size: CLIP BPE vocabulary size (49408: 512 byte tokens, 48894 merges, 2 specials).
        context_length: rows of the learned position table (77); other lengths resample it.
        dim: width ``D`` of every layer.
        ffn_multiplier: FFN hidden width = ``ceil(dim * ffn_multiplier / 16) * 16`` (official rounding up to a
            multiple of 16; 2048 for the defaults).
        num_heads: attention heads; must divide ``dim``.
        num_layers: transformer layers.
        causal_masking: additive ``-inf`` mask above the diagonal (True in every released model). False lets
            every token attend to every non-pad token (``attention_mask`` becomes the key padding mask).
        projection_dim: width ``P`` of ``projection_layer`` (``embed_dim`` of the official config, 512).
        layer_norm_fp32: LayerNorms compute in float32 whatever the input dtype (official
            ``layer_norm_fp32``); False = plain ``nn.LayerNorm`` in the input dtype. Same keys either way.
    """

    vocab_size: int = 49408
    context_length: int = 77
    dim: int = 512
    ffn_multiplier: float = 4.0
    num_heads: int = 8
    num_layers: int = 12
    causal_masking: bool = True
    projection_dim: int = 512
    layer_norm_fp32: bool = True

    def __post_init__(self):
        check_fields(self, positive=("vocab_size", "context_length", "dim", "ffn_multiplier", "num_heads",
                                     "projection_dim"), layers=("num_layers",))
        if self.dim % self.num_heads:
            raise ConfigError("num_heads", f"must divide dim ({self.dim}), got {self.num_heads}")

    @property
    def ffn_dim(self) -> int:
        """FFN hidden width, rounded up to a multiple of 16 as the official constructor does."""
        return int(math.ceil(self.dim * self.ffn_multiplier / 16.0) * 16.0)


class LayerNormFP32(nn.LayerNorm):
    """LayerNorm computed in float32 (input, weight and bias upcast), cast back to the input dtype
    (official ``LayerNormFP32``; the weights are upcast too so a bf16 model needs no autocast)."""

    def forward(self, x: Tensor) -> Tensor:
        w = None if self.weight is None else self.weight.float()
        b = None if self.bias is None else self.bias.float()
        return F.layer_norm(x.float(), self.normalized_shape, w, b, self.eps).to(x.dtype)


def _norm(cfg: MobileCLIPTextConfig) -> nn.LayerNorm:
    return LayerNormFP32(cfg.dim) if cfg.layer_norm_fp32 else nn.LayerNorm(cfg.dim)


class LearnablePositionalEmbedding(nn.Module):
    """``pos_embed`` ``[1, 1, context_length, D]``; ``forward(L) -> [1, L, D]``, bilinearly resampled when
    ``L != context_length`` (official; the ``[1, 1, ...]`` layout exists for ``F.interpolate``)."""

    def __init__(self, num_embeddings: int, dim: int):
        super().__init__()
        self.num_embeddings = num_embeddings
        self.dim = dim
        self.pos_embed = nn.Parameter(torch.empty(1, 1, num_embeddings, dim))
        nn.init.trunc_normal_(self.pos_embed, mean=0.0, std=dim ** -0.5)

    def forward(self, seq_len: int) -> Tensor:
        pos = self.pos_embed
        if seq_len != self.num_embeddings:
            # mode "bilinear", align_corners unset (False): along D the size is unchanged, so it is linear
            # interpolation along the sequence with half-pixel centres, exactly as the official module
            pos = F.interpolate(pos, size=(seq_len, self.dim), mode="bilinear")
        return pos.reshape(1, seq_len, self.dim)


class PositionalEmbedding(nn.Module):
    """Wrapper that gives the released key ``positional_embedding.pos_embed.pos_embed``."""

    def __init__(self, num_embeddings: int, dim: int):
        super().__init__()
        self.pos_embed = LearnablePositionalEmbedding(num_embeddings, dim)

    def forward(self, seq_len: int) -> Tensor:
        return self.pos_embed(seq_len)


class MultiHeadAttention(nn.Module):
    """Self-attention with a fused ``qkv_proj`` ``[3D, D]`` (+bias), the query scaled by ``head_dim ** -0.5``
    before ``q @ k^T``, the softmax in float32, and ``out_proj``. ``forward(x [N, L, D], attn_bias [L, L] or
    None, key_padding [N, L] bool (True = pad) or None) -> [N, L, D]``."""

    def __init__(self, dim: int, num_heads: int):
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.scaling = self.head_dim ** -0.5
        self.qkv_proj = nn.Linear(dim, 3 * dim, bias=True)
        self.out_proj = nn.Linear(dim, dim, bias=True)

    def forward(self, x: Tensor, attn_bias: Tensor | None = None, key_padding: Tensor | None = None) -> Tensor:
        n, seq, _ = x.shape
        # [N, L, 3D] -> [N, L, 3, h, d] -> [3, N, h, L, d]: the official (3, h, d) split of the fused weight
        q, k, v = self.qkv_proj(x).reshape(n, seq, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        scores = torch.matmul(q * self.scaling, k.transpose(-1, -2)).float()  # [N, h, L, L]
        if attn_bias is not None:
            scores = scores + attn_bias.float()
        if key_padding is not None:
            scores = scores.masked_fill(key_padding[:, None, None, :], float("-inf"))
        attn = scores.softmax(dim=-1).to(x.dtype)
        out = torch.matmul(attn, v).transpose(1, 2).reshape(n, seq, -1)  # [N, L, D]
        return self.out_proj(out)


class TransformerEncoder(nn.Module):
    """One pre-norm layer. ``pre_norm_mha`` = (LN, MHA, Dropout) and ``pre_norm_ffn`` = (LN, Linear D->F,
    GELU, Dropout, Linear F->D, Dropout): the Sequential indices are those of the released keys
    (``.pre_norm_ffn.1`` / ``.4`` hold the Linears). Dropouts are 0 in the released model."""

    def __init__(self, cfg: MobileCLIPTextConfig):
        super().__init__()
        self.pre_norm_mha = nn.Sequential(_norm(cfg), MultiHeadAttention(cfg.dim, cfg.num_heads), nn.Dropout(0.0))
        self.pre_norm_ffn = nn.Sequential(
            _norm(cfg), nn.Linear(cfg.dim, cfg.ffn_dim), nn.GELU(), nn.Dropout(0.0),
            nn.Linear(cfg.ffn_dim, cfg.dim), nn.Dropout(0.0),
        )

    def forward(self, x: Tensor, attn_bias: Tensor | None = None, key_padding: Tensor | None = None) -> Tensor:
        h = self.pre_norm_mha[1](self.pre_norm_mha[0](x), attn_bias, key_padding)
        x = x + self.pre_norm_mha[2](h)
        return x + self.pre_norm_ffn(x)


class MobileCLIPTextEncoder(nn.Module):
    """The MobileCLIP text tower (official ``TextTransformer``, variant ``base``).

    ``encode(input_ids [N, L] int64, attention_mask [N, L]) -> (hidden [N, L, D], pooled [N, D],
    features [N, P])``: ``hidden`` is the final-LayerNorm output of every token, ``pooled`` its row at the EOT
    token (``argmax(input_ids)``), ``features = pooled @ projection_layer`` (not normalised). ``forward`` is
    ``encode``. ``hidden_size`` = D, ``output_dim`` = P.

    State-dict keys (exactly the released ``text_encoder.*`` ones without the prefix, in the official order):
    ``projection_layer`` (the module's own Parameter comes first), ``embedding_layer.weight``,
    ``positional_embedding.pos_embed.pos_embed``, ``transformer.{i}.pre_norm_mha.0.{weight,bias}``,
    ``transformer.{i}.pre_norm_mha.1.{qkv_proj,out_proj}.{weight,bias}``,
    ``transformer.{i}.pre_norm_ffn.{0,1,4}.{weight,bias}``, ``final_layer_norm.{weight,bias}``. No buffers.
    """

    def __init__(self, cfg: MobileCLIPTextConfig | None = None):
        super().__init__()
        cfg = cfg if cfg is not None else MobileCLIPTextConfig()
        self.config = cfg
        self.hidden_size = cfg.dim
        self.output_dim = cfg.projection_dim
        self.embedding_layer = nn.Embedding(cfg.vocab_size, cfg.dim)
        # official quirk: computed, never multiplied in (kept so the attribute exists, as in the official class)
        self.embed_scale = cfg.dim ** -0.5
        self.positional_embedding = PositionalEmbedding(cfg.context_length, cfg.dim)
        self.transformer = nn.ModuleList(TransformerEncoder(cfg) for _ in range(cfg.num_layers))
        self.final_layer_norm = _norm(cfg)
        self.projection_layer = nn.Parameter(torch.empty(cfg.dim, cfg.projection_dim))
        # the official init leaves projection_layer uninitialised (weights always come from the checkpoint);
        # a fresh tower gets CLIP's scales instead so it is usable as is
        nn.init.normal_(self.embedding_layer.weight, std=cfg.dim ** -0.5)
        nn.init.normal_(self.projection_layer, std=cfg.dim ** -0.5)

    def _check(self, input_ids: Tensor, attention_mask: Tensor | None) -> None:
        if not isinstance(input_ids, Tensor) or input_ids.dim() != 2 or input_ids.dtype.is_floating_point \
                or input_ids.dtype == torch.bool or input_ids.shape[0] == 0 or input_ids.shape[1] == 0:
            got = tuple(input_ids.shape) if isinstance(input_ids, Tensor) else type(input_ids).__name__
            raise ShapeError(f"input_ids must be a non-empty integer tensor [N, L], got {got}"
                             + (f" {input_ids.dtype}" if isinstance(input_ids, Tensor) else ""))
        if attention_mask is not None and (not isinstance(attention_mask, Tensor)
                                           or tuple(attention_mask.shape) != tuple(input_ids.shape)):
            got = tuple(attention_mask.shape) if isinstance(attention_mask, Tensor) else type(attention_mask).__name__
            raise ShapeError(f"attention_mask must have the shape of input_ids {tuple(input_ids.shape)}, got {got}")
        lo, hi = int(input_ids.min()), int(input_ids.max())
        if lo < 0 or hi >= self.config.vocab_size:
            raise ShapeError(f"token ids must lie in [0, {self.config.vocab_size}), got [{lo}, {hi}]")

    def encode(self, input_ids: Tensor, attention_mask: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor]:
        """``input_ids [N, L]`` (CLIP BPE ids, ``<end_of_text>`` the largest id of each row), ``attention_mask
        [N, L]`` (1 = token; unused by the causal released model, see the module doc) -> ``(hidden [N, L, D],
        pooled [N, D], features [N, P])``."""
        self._check(input_ids, attention_mask)
        n, seq = input_ids.shape
        x = self.embedding_layer(input_ids)  # [N, L, D]; embed_scale deliberately not applied (official)
        x = x + self.positional_embedding(seq).to(x.dtype)
        attn_bias = key_padding = None
        if self.config.causal_masking:
            # additive -inf above the diagonal; the official code then drops the padding mask
            attn_bias = torch.full((seq, seq), float("-inf"), device=x.device).triu_(1)
        elif attention_mask is not None:
            key_padding = attention_mask == 0
        for layer in self.transformer:
            x = layer(x, attn_bias, key_padding)
        hidden = self.final_layer_norm(x)  # [N, L, D]
        eot = input_ids.argmax(dim=-1)  # the first position holding the largest id (EOT)
        pooled = hidden[torch.arange(n, device=hidden.device), eot]  # [N, D]
        return hidden, pooled, pooled @ self.projection_layer

    def forward(self, input_ids: Tensor, attention_mask: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor]:
        """Same as :meth:`encode`."""
        return self.encode(input_ids, attention_mask)


__all__ = ["MobileCLIPTextConfig", "MobileCLIPTextEncoder"]
