"""The LLaMA text tower of InternVideo2-CLIP 1B/6B (official ``internvideo2_clip_text.py``, spec §3.2, §4.3).

The released tower is InternVL-C's text encoder (chinese-alpaca-lora-7B, a LLaMA-7B with a 49954-token
vocabulary) with peft LoRA on ``q_proj`` / ``v_proj`` (r 16, alpha 32, dropout 0.1), and a
``text_projection`` matrix ``[4096, 768]``. The feature of a caption is the last hidden state of its last
non-pad token (the EOS), projected.

Three parts, all usable without the rest of the package:

* :class:`LlamaTextConfig` / :class:`LlamaTextEncoder`: the tower (``transformers.LlamaModel`` with LoRA
  injected by peft, random init; real weights come from a checkpoint);
* :func:`released_to_module_keys` / :func:`module_to_released_keys`: the exact key maps between the released
  (old peft, <= 0.6) layout and this module's (current peft) layout, generic over the LoRA-wrapped module
  names (pitfall P28), so the checkpoint layer can load strictly and save back in the released layout;
* :class:`LlamaTextTokenizer`: the official tokenisation (``"summarize:"`` prefix, BOS ... EOS, right-padded
  with id 0 to exactly 80 tokens; pitfall P44) from a user-given local tokenizer folder.

``transformers`` and ``peft`` are imported lazily (extra ``internvideo2[llm]``), so importing this module
needs neither.
"""
from __future__ import annotations

import importlib.util
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from ..errors import CheckpointError, ConfigError, ShapeError
from ..utils.typed import check_fields

__all__ = [
    "ARCH_FIELDS",
    "KeyMapError",
    "LlamaTextConfig",
    "LlamaTextEncoder",
    "LlamaTextTokenizer",
    "derived_buffer_keys",
    "module_to_released_keys",
    "read_llama_architecture",
    "released_to_module_keys",
]

_INSTALL_HINT = "pip install 'internvideo2[llm]'  (transformers>=4.40, peft>=0.10)"

# The LlamaConfig fields this config carries (all a LlamaModel needs for the released tower).
ARCH_FIELDS = ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
               "num_key_value_heads", "hidden_act", "max_position_embeddings", "rms_norm_eps", "rope_theta",
               "attention_bias", "mlp_bias", "pad_token_id")


@dataclass
class LlamaTextConfig:
    """The LLaMA text tower. Defaults = the released InternVL-C text tower, i.e. the ``config.json`` of
    ``chinese_alpaca_lora_7b`` shipped in OpenGVLab/InternVL
    (``clip_benchmark/clip_benchmark/models/internvl_c_pytorch/chinese_alpaca_lora_7b/config.json``:
    vocab 49954, hidden 4096, intermediate 11008, 32 layers, 32 heads, rms eps 1e-6, 2048 positions,
    pad id 0; rope theta / kv heads / biases are the LlamaConfig defaults of that file's transformers 4.28),
    plus the official tower's LoRA and tokenisation settings (``internvideo2_clip_text.py``).

    Attributes:
        vocab_size ... pad_token_id: the ``transformers.LlamaConfig`` architecture (:data:`ARCH_FIELDS`).
            ``pad_token_id`` only makes ``embed_tokens`` a padding-index embedding (zero row at init, no
            gradient), as the official ``LlamaConfig`` does.
        attn_implementation: ``"sdpa"`` or ``"eager"`` (same numbers up to rounding).
        projection_dim: width of ``text_projection`` (768, the CLIP embedding).
        use_lora / lora_r / lora_alpha / lora_dropout / lora_targets: peft LoRA on the named Linear
            modules (``q_proj``, ``v_proj``: peft's default for LLaMA, which the official code relies on;
            a list, as the typed config reader has no variadic tuples). The scale is ``alpha / r`` = 2.
        max_length / prefix / tokenizer: tokenisation (:class:`LlamaTextTokenizer`): always 80 tokens,
            ``"summarize:"`` prepended without a space, and a local tokenizer folder (None: none is built).
        llama_path: optional local folder whose HF ``config.json`` gives the architecture; when set, the
            file's values replace the architecture fields (never downloaded). A config to save should
            drop it: ``dataclasses.replace(cfg, llama_path=None)`` keeps the resolved fields.
    """

    vocab_size: int = 49954
    hidden_size: int = 4096
    intermediate_size: int = 11008
    num_hidden_layers: int = 32
    num_attention_heads: int = 32
    num_key_value_heads: int = 32
    hidden_act: str = "silu"
    max_position_embeddings: int = 2048
    rms_norm_eps: float = 1e-6
    rope_theta: float = 10000.0
    attention_bias: bool = False
    mlp_bias: bool = False
    pad_token_id: int | None = 0
    attn_implementation: str = "sdpa"
    projection_dim: int = 768
    use_lora: bool = True
    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.1
    lora_targets: list[str] = field(default_factory=lambda: ["q_proj", "v_proj"])
    max_length: int = 80
    prefix: str = "summarize:"
    tokenizer: str | None = None
    llama_path: str | None = None

    def __post_init__(self):
        check_fields(self, positive=("vocab_size", "hidden_size", "intermediate_size", "num_attention_heads",
                                     "num_key_value_heads", "max_position_embeddings", "rms_norm_eps",
                                     "rope_theta", "projection_dim", "lora_r", "lora_alpha"),
                     nonneg=("pad_token_id",), unit=("lora_dropout",), layers=("num_hidden_layers",))
        if self.llama_path is not None:
            for name, value in read_llama_architecture(self.llama_path).items():
                object.__setattr__(self, name, value)
            check_fields(self, positive=("vocab_size", "hidden_size", "intermediate_size", "num_attention_heads",
                                         "num_key_value_heads", "max_position_embeddings", "rms_norm_eps",
                                         "rope_theta"), nonneg=("pad_token_id",), layers=("num_hidden_layers",))
        if self.hidden_size % self.num_attention_heads:
            raise ConfigError("num_attention_heads", f"must divide hidden_size {self.hidden_size}, "
                                                     f"got {self.num_attention_heads}")
        if self.num_attention_heads % self.num_key_value_heads:
            raise ConfigError("num_key_value_heads", f"must divide num_attention_heads {self.num_attention_heads},"
                                                     f" got {self.num_key_value_heads}")
        if (self.hidden_size // self.num_attention_heads) % 2:
            raise ConfigError("num_attention_heads", "the head width (hidden_size / heads) must be even (RoPE)")
        if self.pad_token_id is not None and self.pad_token_id >= self.vocab_size:
            raise ConfigError("pad_token_id", f"must be < vocab_size {self.vocab_size}, got {self.pad_token_id}")
        if self.attn_implementation not in ("sdpa", "eager"):
            raise ConfigError("attn_implementation", f"must be 'sdpa' or 'eager', got {self.attn_implementation!r}")
        if self.use_lora and (not self.lora_targets or any(not t or "." in t for t in self.lora_targets)):
            raise ConfigError("lora_targets", f"must be non-empty module names without dots, got "
                                              f"{self.lora_targets!r}")
        if self.max_length < 3:  # BOS + at least one token + EOS
            raise ConfigError("max_length", f"must be >= 3, got {self.max_length}")

    @property
    def lora_scaling(self) -> float:
        """peft's LoRA scale ``alpha / r`` (no rsLoRA), 2.0 for the released tower."""
        return self.lora_alpha / self.lora_r

    def llama_config(self) -> Any:
        """The ``transformers.LlamaConfig`` of the architecture fields (``rope_theta`` as a keyword works on
        transformers 4.40 and, folded into ``rope_parameters``, on 5.x)."""
        try:
            from transformers import LlamaConfig
        except ImportError as e:
            raise ImportError(f"the LLaMA text tower needs transformers: {_INSTALL_HINT}") from e
        kw = {name: getattr(self, name) for name in ARCH_FIELDS}
        return LlamaConfig(**kw, use_cache=False, tie_word_embeddings=False,
                           attn_implementation=self.attn_implementation)


def read_llama_architecture(folder: str | Path) -> dict[str, Any]:
    """The :data:`ARCH_FIELDS` of a local HF LLaMA folder's ``config.json`` (read as JSON: nothing is ever
    downloaded). Missing optional keys take the LlamaConfig defaults; RoPE scaling, a head width other than
    hidden / heads and non-LLaMA models are refused (``ConfigError("llama_path")``)."""
    path = Path(folder) / "config.json"
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise ConfigError("llama_path", f"{path}: cannot read a HF config.json ({e})") from None
    if not isinstance(raw, dict) or raw.get("model_type", "llama") != "llama":
        raise ConfigError("llama_path", f"{path}: not a LLaMA config (model_type {raw.get('model_type')!r})"
                          if isinstance(raw, dict) else f"{path}: not a JSON object")
    rope = raw.get("rope_parameters") or {}  # transformers 5.x spelling
    scaling = raw.get("rope_scaling") or {}
    if scaling or rope.get("rope_type", "default") != "default":
        raise ConfigError("llama_path", f"{path}: RoPE scaling {scaling or rope} is not supported")
    required = ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads")
    missing = [k for k in required if k not in raw]
    if missing:
        raise ConfigError("llama_path", f"{path}: lacks {missing}")
    arch = {k: raw[k] for k in required}
    arch.update(num_key_value_heads=raw.get("num_key_value_heads") or raw["num_attention_heads"],
                hidden_act=raw.get("hidden_act", "silu"),
                max_position_embeddings=raw.get("max_position_embeddings", 2048),
                rms_norm_eps=raw.get("rms_norm_eps", 1e-6),
                rope_theta=rope.get("rope_theta", raw.get("rope_theta", 10000.0)),
                attention_bias=raw.get("attention_bias", False), mlp_bias=raw.get("mlp_bias", False),
                pad_token_id=raw.get("pad_token_id"))
    if isinstance(arch["pad_token_id"], int) and arch["pad_token_id"] < 0:  # old LLaMA configs say -1: none
        arch["pad_token_id"] = None
    head_dim = raw.get("head_dim")
    if head_dim is not None and head_dim * raw["num_attention_heads"] != raw["hidden_size"]:
        raise ConfigError("llama_path", f"{path}: head_dim {head_dim} != hidden_size / num_attention_heads")
    return arch


# ---------------------------------------------------------------------------------------------- the tower
class LlamaTextEncoder(nn.Module):
    """``encode(input_ids [N, L], attention_mask [N, L]) -> (hidden [N, L, H], pooled [N, H], features [N, D])``.

    ``self.transformer`` is the ``LlamaModel`` (LoRA layers injected in place when ``use_lora``, base weights
    frozen as peft does), ``self.text_projection`` a Parameter ``[H, D]``; the state-dict keys are therefore
    ``transformer.*`` and ``text_projection`` as released, with current peft's ``base_layer`` inside LoRA
    modules (see :func:`released_to_module_keys`). Weights are random until a checkpoint is loaded.

    Attributes:
        hidden_size: H (4096). output_dim: D (768). config: the :class:`LlamaTextConfig`.
        has_lora: True while LoRA layers are present (False without LoRA or after :meth:`merge_lora`).
    """

    def __init__(self, cfg: LlamaTextConfig):
        super().__init__()
        try:
            from transformers import LlamaModel
        except ImportError as e:
            raise ImportError(f"the LLaMA text tower needs transformers: {_INSTALL_HINT}") from e
        self.config = cfg
        self.hidden_size = cfg.hidden_size
        self.output_dim = cfg.projection_dim
        # The official code builds LlamaForCausalLM and keeps only its .model; the lm_head is never used
        # and LoRA does not target it, so building the LlamaModel alone gives the same keys and numbers.
        self.transformer = LlamaModel(cfg.llama_config())
        self.has_lora = False
        if cfg.use_lora:
            self._inject_lora()
        # official: torch.empty (the checkpoint fills it); a defined init keeps untrained runs reproducible
        self.text_projection = nn.Parameter(torch.empty(cfg.hidden_size, cfg.projection_dim))
        nn.init.normal_(self.text_projection, std=cfg.hidden_size ** -0.5)

    def _inject_lora(self) -> None:
        try:
            from peft import LoraConfig, inject_adapter_in_model
        except ImportError as e:
            raise ImportError(f"LoRA in the LLaMA text tower needs peft: {_INSTALL_HINT}") from e
        cfg = self.config
        # The official LoraConfig(task_type=CAUSAL_LM, r=16, lora_alpha=32, lora_dropout=0.1): bias "none",
        # kaiming-uniform A and zero B, so the tower equals the base model until B is trained/loaded.
        lora = LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout,
                          target_modules=list(cfg.lora_targets), bias="none")
        try:
            self.transformer = inject_adapter_in_model(lora, self.transformer)
        except ValueError as e:  # e.g. "Target modules {...} not found in the base model"
            raise ConfigError("lora_targets", str(e)) from None
        self.has_lora = True

    @torch.no_grad()
    def merge_lora(self) -> None:
        """Fold every LoRA adapter into its base weight (``W += B @ A * alpha / r``, peft's own ``merge``) and
        put the base layers back in place, as peft's ``merge_and_unload``: afterwards the keys are plain
        ``LlamaModel`` keys (the released names without ``lora_*``) and the outputs are unchanged."""
        if not self.has_lora:
            return
        from peft.tuners.tuners_utils import BaseTunerLayer

        wrapped = [(name, m) for name, m in self.transformer.named_modules() if isinstance(m, BaseTunerLayer)]
        for name, m in wrapped:
            m.merge()
            parent_name, _, child = name.rpartition(".")
            parent = self.transformer.get_submodule(parent_name) if parent_name else self.transformer
            setattr(parent, child, m.get_base_layer())
        self.has_lora = False

    def encode(self, input_ids: Tensor, attention_mask: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor]:
        """``input_ids`` int ``[N, L]`` (right-padded with 0) -> ``(hidden [N, L, H], pooled [N, H],
        features [N, D] = pooled @ text_projection)``, ``pooled`` = the hidden state of the last non-pad token
        (the EOS).

        As in the official code the mask is ``input_ids > 0``, **not** ``attention_mask`` (accepted for the
        common text-tower interface, checked for shape, otherwise unused): an id 0 anywhere (pad, or an
        unknown piece inside a caption) is masked out as a key, and the pooled position is ``count(ids > 0)
        - 1``, i.e. the EOS only for right-padded rows (an all-pad row pools its last position). The mask
        only matters for keys: real tokens come before the pads, so causal attention hides the pads anyway.
        """
        if input_ids.ndim != 2 or input_ids.dtype.is_floating_point or input_ids.dtype == torch.bool:
            raise ShapeError(f"input_ids must be an integer [N, L] tensor, got {input_ids.dtype} "
                             f"{tuple(input_ids.shape)}")
        if attention_mask is not None and attention_mask.shape != input_ids.shape:
            raise ShapeError(f"attention_mask {tuple(attention_mask.shape)} != input_ids "
                             f"{tuple(input_ids.shape)}")
        if input_ids.numel() and (int(input_ids.min()) < 0 or int(input_ids.max()) >= self.config.vocab_size):
            raise ShapeError(f"input_ids must lie in [0, {self.config.vocab_size}), got "
                             f"[{int(input_ids.min())}, {int(input_ids.max())}]")
        mask = input_ids > 0
        hidden = self.transformer(input_ids=input_ids, attention_mask=mask, use_cache=False).last_hidden_state
        rows = torch.arange(hidden.shape[0], device=hidden.device)
        pooled = hidden[rows, mask.sum(1) - 1]
        return hidden, pooled, pooled @ self.text_projection

    forward = encode


# ------------------------------------------------------------------------------------ peft key mapping
class KeyMapError(CheckpointError, ValueError):
    """Keys that are not a consistent LoRA layout (an adapter without its base weight, half an A/B pair,
    a key already in the other layout ...). The message lists every offending key."""


# peft's adapter sub-keys: ``<module>.<part>.<adapter>.<param...>`` (lora_embedding_* are Parameters:
# ``<module>.<part>.<adapter>``); the same names in old (<= 0.6) and current peft.
_LORA_PARTS = ("lora_A", "lora_B", "lora_embedding_A", "lora_embedding_B")
_PAIRS = {"lora_A": "lora_B", "lora_B": "lora_A", "lora_embedding_A": "lora_embedding_B",
          "lora_embedding_B": "lora_embedding_A"}
_BASE = "base_layer"
# buffers a checkpoint saved by transformers <= 4.30 may hold; recomputed from rope_theta, never loaded
_DERIVED_SUFFIXES = ("rotary_emb.inv_freq",)


def _adapter_part(key: str) -> tuple[str, str, str] | None:
    """``(module, part, adapter)`` of a LoRA adapter key, else None; an adapter key without an adapter name
    (peft < 0.3) gives adapter ""."""
    parts = key.split(".")
    for i, p in enumerate(parts[1:], start=1):
        if p in _LORA_PARTS:
            rest = parts[i + 1:]
            # lora_A/B: ``<adapter>.<param>`` follows; lora_embedding_A/B: ``<adapter>`` (a ParameterDict)
            named = len(rest) >= 1 if p.startswith("lora_embedding") else len(rest) >= 2
            return ".".join(parts[:i]), p, rest[0] if named else ""
    return None


def _lora_owners(keys: Sequence[str], bad: dict[str, str]) -> dict[str, set[tuple[str, str]]]:
    """LoRA-wrapped module name -> its ``(part, adapter)`` set; incomplete A/B pairs go to ``bad``."""
    owners: dict[str, set[tuple[str, str]]] = {}
    where: dict[tuple[str, str, str], str] = {}
    for k in keys:
        hit = _adapter_part(k)
        if hit is None:
            continue
        module, part, adapter = hit
        if not adapter:
            bad[k] = "adapter key without an adapter name (peft < 0.3 layout)"
            continue
        owners.setdefault(module, set()).add((part, adapter))
        where[(module, part, adapter)] = k
    for module, parts in owners.items():
        for part, adapter in parts:
            if (_PAIRS[part], adapter) not in parts:
                bad[where[(module, part, adapter)]] = f"{part} without its {_PAIRS[part]} (adapter {adapter!r})"
    return owners


def _owner_of(key: str, owners: dict[str, Any]) -> str | None:
    """The longest proper dotted prefix of ``key`` that is a LoRA-wrapped module."""
    parts = key.split(".")
    for i in range(len(parts) - 1, 0, -1):
        prefix = ".".join(parts[:i])
        if prefix in owners:
            return prefix
    return None


def _raise_bad(bad: dict[str, str], direction: str) -> None:
    if bad:
        lines = "\n".join(f"  {k}: {why}" for k, why in sorted(bad.items()))
        raise KeyMapError(f"{len(bad)} key(s) cannot be mapped {direction}:\n{lines}")


def _check_unique(keys: Sequence[str], mapping: dict[str, str], bad: dict[str, str]) -> None:
    seen: set[str] = set()
    for k in keys:
        if k in seen:
            bad[k] = "duplicated key"
        seen.add(k)
    targets: dict[str, str] = {}
    for src, dst in mapping.items():
        if dst in targets:
            bad[src] = f"maps to {dst!r}, as {targets[dst]!r} does"
        targets[dst] = src


def derived_buffer_keys(keys: Iterable[str]) -> list[str]:
    """Keys of buffers that a released file may carry but that are recomputed from the config
    (``*.rotary_emb.inv_freq``, persistent in transformers <= 4.30): the caller drops them before
    :func:`released_to_module_keys` (which refuses them)."""
    return [k for k in keys if k.endswith(_DERIVED_SUFFIXES)]


def released_to_module_keys(keys: Iterable[str]) -> dict[str, str]:
    """``{released key: module key}`` for every key, from the old-peft layout (peft <= 0.6, the released
    files) to the current one.

    Old peft's LoRA Linear *was* the base Linear, so a wrapped module ``M`` stored ``M.weight`` (``M.bias``)
    next to ``M.lora_A.<adapter>.weight`` / ``M.lora_B.<adapter>.weight``; current peft holds the base as
    ``M.base_layer``. So every non-adapter key under a module that has adapter keys gets ``base_layer.``
    inserted after ``M``; adapter keys and all other keys are unchanged. Generic over prefixes
    (``transformer.``, ``text_encoder.transformer.``, a video LLM's ``model.``) and module names
    (``q_proj``, ``lm_head`` ...).

    Raises :class:`KeyMapError` listing every key that does not fit: a key already holding ``base_layer``,
    half an A/B pair, an adapter key without adapter name or without a base weight, a rotary ``inv_freq``
    buffer (drop those with :func:`derived_buffer_keys`), a duplicate.
    """
    keys = list(keys)
    bad: dict[str, str] = {}
    owners = _lora_owners(keys, bad)
    mapping: dict[str, str] = {}
    has_base: set[str] = set()
    for k in keys:
        if _BASE in k.split("."):
            bad[k] = "already in the current-peft layout ('base_layer'), not the released one"
            continue
        if k.endswith(_DERIVED_SUFFIXES):
            bad[k] = "derived rotary buffer: drop it first (derived_buffer_keys)"
            continue
        if _adapter_part(k) is not None:
            mapping[k] = k
            continue
        owner = _owner_of(k, owners)
        if owner is None:
            mapping[k] = k
        else:
            has_base.add(owner)
            mapping[k] = f"{owner}.{_BASE}.{k[len(owner) + 1:]}"
    for owner in owners.keys() - has_base:
        for k in keys:
            if k.startswith(owner + ".") and k not in bad:
                bad[k] = f"adapter of {owner!r}, which has no base weight ({owner}.weight)"
    _check_unique(keys, mapping, bad)
    _raise_bad(bad, "from the released layout")
    return mapping


def module_to_released_keys(keys: Iterable[str]) -> dict[str, str]:
    """``{module key: released key}`` for every key: the inverse of :func:`released_to_module_keys`
    (``M.base_layer.X`` -> ``M.X``; adapter and other keys unchanged). A merged model (no LoRA) maps to
    itself.

    Raises :class:`KeyMapError` listing every key that does not fit: ``base_layer`` without adapters (or
    nested twice), adapters without ``base_layer``, half an A/B pair, two keys with one released name.
    """
    keys = list(keys)
    bad: dict[str, str] = {}
    owners = _lora_owners(keys, bad)
    mapping: dict[str, str] = {}
    has_base: set[str] = set()
    for k in keys:
        parts = k.split(".")
        n_base = parts.count(_BASE)
        if n_base == 0:
            mapping[k] = k
            continue
        i = parts.index(_BASE)
        owner = ".".join(parts[:i])
        if n_base > 1 or i == 0 or i == len(parts) - 1:
            bad[k] = "nested or misplaced 'base_layer'"
        elif owner not in owners:
            bad[k] = f"'base_layer' of {owner!r}, which has no LoRA adapter keys"
        else:
            has_base.add(owner)
            mapping[k] = ".".join(parts[:i] + parts[i + 1:])
    for owner in owners.keys() - has_base:
        for k in keys:
            if k.startswith(owner + ".") and k not in bad:
                bad[k] = f"adapter of {owner!r}, which has no {owner}.{_BASE}.* weight"
    _check_unique(keys, mapping, bad)
    _raise_bad(bad, "to the released layout")
    return mapping


# ------------------------------------------------------------------------------------------ tokenizer
class LlamaTextTokenizer:
    """The official CLIP text tokenisation from a local HF tokenizer folder (e.g. InternVL's
    ``chinese_alpaca_lora_7b``; nothing is ever downloaded).

    Each text becomes ``[BOS] pieces(prefix + text) [EOS]`` (``"summarize:" + text``, no space), the pieces
    truncated so that the row is at most ``max_length`` long with the EOS kept, then right-padded with id 0
    to exactly ``max_length`` (80). This is the official call ``tokenizer("summarize:" + t, max_length=80,
    truncation=True, padding="max_length")`` with ``add_eos_token=True`` and ``pad_token=" "``: the pad
    string is no SentencePiece piece, so it is the unknown id 0, which the model's ``ids > 0`` mask relies
    on. BOS/EOS and padding are applied here explicitly, not through the HF tokenizer's own flags, whose
    meaning changed across transformers versions (5.x ignores ``add_bos_token`` of a tokenizer.json without
    a post-processor, and pads LLaMA on the left).

    Args:
        folder: a local tokenizer folder ``AutoTokenizer`` reads (``tokenizer.model`` and/or
            ``tokenizer.json`` + ``tokenizer_config.json``). Its unknown id must be 0 and BOS/EOS defined.
        max_length / prefix: 80 / ``"summarize:"`` as released.

    ``tok(texts) -> {"input_ids": int64 [N, max_length], "attention_mask": int64 [N, max_length]}`` with
    ``attention_mask = input_ids > 0`` (what the model uses).
    """

    def __init__(self, folder: str | Path | None, max_length: int = 80, prefix: str = "summarize:"):
        if folder is None:
            raise ConfigError("tokenizer", "no tokenizer folder given (a local folder with the LLaMA tokenizer, "
                                           "e.g. InternVL's chinese_alpaca_lora_7b)")
        if not isinstance(max_length, int) or isinstance(max_length, bool) or max_length < 3:
            raise ConfigError("max_length", f"must be an integer >= 3, got {max_length!r}")
        self.folder = Path(folder)
        if not self.folder.is_dir():  # also what keeps a name from being read as a hub id
            raise ConfigError("tokenizer", f"{self.folder}: folder not found")
        try:
            from transformers import AutoTokenizer
        except ImportError as e:
            raise ImportError(f"the LLaMA tokenizer needs transformers: {_INSTALL_HINT}") from e
        try:
            tok = AutoTokenizer.from_pretrained(str(self.folder), local_files_only=True, legacy=False)
        except Exception as e:  # transformers raises OSError, ValueError, KeyError ... for a bad folder
            hint = ""
            # the released chinese_alpaca_lora_7b folder has only tokenizer.model: reading it needs sentencepiece
            if ((self.folder / "tokenizer.model").is_file() and not (self.folder / "tokenizer.json").is_file()
                    and importlib.util.find_spec("sentencepiece") is None):
                hint = "; the folder has only a SentencePiece tokenizer.model: pip install sentencepiece"
            raise ConfigError("tokenizer", f"{self.folder}: cannot be read as a HF tokenizer "
                                           f"({type(e).__name__}: {e}){hint}") from None
        pad = tok.convert_tokens_to_ids(" ")  # the official pad string
        if pad != 0:
            raise ConfigError("tokenizer", f"{self.folder}: the official pad string ' ' has id {pad!r}, not 0; "
                                           "the tower's mask (ids > 0) needs pad id 0")
        for name in ("bos_token_id", "eos_token_id"):
            v = getattr(tok, name, None)
            if not isinstance(v, int) or v <= 0:
                raise ConfigError("tokenizer", f"{self.folder}: {name} must be a positive id, got {v!r}")
        self._tok = tok
        self.max_length = max_length
        self.prefix = prefix
        self.pad_token_id = 0
        self.bos_token_id: int = tok.bos_token_id
        self.eos_token_id: int = tok.eos_token_id

    @classmethod
    def from_config(cls, cfg: LlamaTextConfig) -> LlamaTextTokenizer:
        return cls(cfg.tokenizer, max_length=cfg.max_length, prefix=cfg.prefix)

    def __len__(self) -> int:
        return len(self._tok)

    def __call__(self, texts: Sequence[str] | str) -> dict[str, Tensor]:
        """``texts`` (N strings; one string = N 1) -> ``input_ids`` / ``attention_mask`` int64 ``[N, L]``."""
        if isinstance(texts, str):
            texts = [texts]
        texts = list(texts)
        bad = [i for i, t in enumerate(texts) if not isinstance(t, str)]
        if bad:
            raise TypeError(f"texts must be strings; items {bad[:10]} are not")
        L = self.max_length
        ids = torch.zeros(len(texts), L, dtype=torch.int64)
        if texts:
            pieces = self._tok([self.prefix + t for t in texts], add_special_tokens=False)["input_ids"]
            for i, p in enumerate(pieces):
                row = [self.bos_token_id, *p[: L - 2], self.eos_token_id]  # truncation keeps BOS and EOS
                ids[i, : len(row)] = torch.tensor(row, dtype=torch.int64)
        return {"input_ids": ids, "attention_mask": (ids > 0).long()}
