"""The audio-visual stage-2 model (official ``InternVideo2_Stage2_audiovisual``, spec §4.2; the class of the
released 6B stage-2 model) and its training objective.

It is the visual stage-2 model (:class:`~.stage2.InternVideo2Stage2`: ``vision_encoder``, BERT
``text_encoder``, ``vision_proj``, ``text_proj``, ``temp``, ``itm_head``) plus:

* ``av_concat_vision_proj`` = ``Sequential(Linear(C_vision -> av_concat_dim), LayerNorm)`` on ALL vision tokens
  before BERT reads them (video-only ITM and MLM too), so BERT's ``encoder_width`` is ``av_concat_dim``;
* ``audio_encoder`` (:class:`~.audio.BEATs`), ``audio_proj`` (pooled audio -> the shared space) and
  ``av_concat_audio_proj`` (Linear + LayerNorm on the audio tokens); the pooled audio is the mean of the raw
  BEATs tokens, taken BEFORE ``av_concat_audio_proj``;
* ``av_fusion`` = ``Linear(2 D -> D)`` on ``[audio_proj ; vision_proj]`` (unnormalised, audio first);
* ``atm_head`` / ``avtm_head``: audio-text and audio+video-text matching, ``Linear(H -> 2)``.

The optional modules exist exactly when the official constructor builds them (:attr:`Stage2AVConfig.use_audio`
and the weights of AVTC/AVTM/ATM), so an official state dict loads strictly; the released 6B file has no
``atm_head``.

Shapes: video ``[B, 3, T, H, W]`` (channels before time, like every model of this package; T = 1 takes the
image path: the cls row plus the mean over frames of ``pos_embed`` when there is no image table); audio = the
official fbank ``[B, T_f = 998, F = 64]`` (``internvideo2.data.audio.beats_fbank``) -> 248 BEATs tokens; text =
token ids / mask ``[N, L]``.

Losses per batch media type (official ``forward``; weights in :class:`Stage2AVConfig`): ``video``/``image``:
UTA, VTC, VTM, MLM; ``audio``: ATC, ATM, AMLM; ``audio_video``: UTA, VTC, ATC, AVC, AVTC, VTM, ATM, AVTM, MLM,
AMLM, AVMLM, where the matching losses and MLMs read the memories ``vision``, ``audio`` and ``[audio ; vision]``
(after their av_concat projections) and the contrastive ones the projections (AVC: audio vs video; AVTC: the
fused audio-video embedding vs text).
"""
from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import ConfigError, ShapeError
from ..objectives.losses import mlm_loss, pool_text, uta_loss, visible_targets, vtc_loss, vtm_loss
from ..utils.typed import check_fields
from .api import AudioEmbedding, VideoEmbedding
from .audio import BEATs, BEATsConfig
from .config import PretrainConfig, VisionConfig, vision_config
from .stage2 import InternVideo2Stage2, Stage2Config, stage2_config_from_official
from .text import BertConfig, bert_config

#: every loss of the audio-visual objective, in the official order of ``forward_audio_video``
LOSSES = ("uta", "vtc", "atc", "avc", "avtc", "vtm", "atm", "avtm", "mlm", "amlm", "avmlm")
#: the losses that read a caption (official ``criterion.loss_caption`` keys)
CAPTION_LOSSES = ("vtc", "atc", "avtc", "vtm", "atm", "avtm", "mlm", "amlm", "avmlm")
#: the loss weights whose nonzero value makes the official class build its audio modules (``use_audio()``)
AUDIO_LOSSES = ("atc", "avc", "avtc", "atm", "avtm", "amlm", "avmlm")
#: the losses each batch media type computes (official ``forward`` dispatch), in the official order
MEDIA_LOSSES = {
    "video": ("uta", "vtc", "vtm", "mlm"),
    "image": ("uta", "vtc", "vtm", "mlm"),
    "audio": ("atc", "atm", "amlm"),
    "audio_video": LOSSES,
}

#: BEATs settings of the released iter3 encoders that shapes cannot tell (spec §3.4); the released stage-2 6B
#: file's audio encoder has them (detection assumes them)
RELEASED_BEATS_SETTINGS: dict[str, Any] = dict(
    conv_bias=False, activation_fn="gelu", layer_norm_first=False, deep_norm=True, relative_position_embedding=True,
    num_buckets=320, max_distance=800, gru_rel_pos=True)
#: BEATs sizes: the released iter3 encoder (patch 16, 512 -> 768 wide, 12 layers) and a test-scale one
BEATS_PRESETS: dict[str, dict[str, Any]] = {
    "beats_iter3": dict(input_patch_size=16, embed_dim=512, encoder_layers=12, encoder_embed_dim=768,
                        encoder_ffn_embed_dim=3072, encoder_attention_heads=12, conv_pos=128, conv_pos_groups=16,
                        **RELEASED_BEATS_SETTINGS),
    "beats_tiny": dict(input_patch_size=16, embed_dim=32, encoder_layers=2, encoder_embed_dim=64,
                       encoder_ffn_embed_dim=128, encoder_attention_heads=4, conv_pos=16, conv_pos_groups=4,
                       **RELEASED_BEATS_SETTINGS),
}


def beats_config(name: str, **overrides: Any) -> BEATsConfig:
    """The :class:`BEATsConfig` of a preset in :data:`BEATS_PRESETS`, with overrides."""
    if name not in BEATS_PRESETS:
        raise ConfigError("audio", f"unknown BEATs preset {name!r}; known: {', '.join(BEATS_PRESETS)}")
    return BEATsConfig(**{**BEATS_PRESETS[name], **overrides})


def default_audio_tower(vision_width: int) -> str:
    """The BEATs preset a model gets when none is named: the released one beside the InternVideo2 encoders,
    the test-scale one beside the toy presets (vision width < 256)."""
    return "beats_iter3" if vision_width >= 256 else "beats_tiny"


def _released_vision() -> PretrainConfig:
    # the released 6B stage-2 vision encoder: 4 frames, 6 CLIP decoders, no separate image tables
    return PretrainConfig(vision=vision_config("internvideo2-6b", num_frames=4), clip_teacher_embed_dim=3200,
                          clip_teacher_final_dim=768, clip_return_layer=6, sep_image_video_pos_embed=False)


@dataclass
class Stage2AVConfig(Stage2Config):
    """Audio-visual stage-2 model and objective. The fields of :class:`~.stage2.Stage2Config` keep their
    meaning; the defaults are the released 6B configuration (spec §4.2, §4.4).

    Attributes:
        vision: the stage-2 vision encoder (default: InternVideo2-6B, 4 frames, no ``img_pos_embed``).
        text: BERT; its ``encoder_width`` must be ``av_concat_dim`` (BERT reads the av_concat-projected
            tokens, never the raw vision tokens). Default: bert-large, fusion from layer 19.
        embed_dim: width of the shared space (official ``contra_dim``; 768): ``vision_proj``, ``text_proj``,
            ``audio_proj`` and ``av_fusion`` outputs.
        uta_image_only: UTA only on image batches (released: True; audio-video batches then never have it).
        audio: the BEATs audio encoder (default: the released iter3 encoder, 768 wide).
        av_concat_dim: width of the memories BERT cross-attends to (``av_concat_{vision,audio}_proj``; 768).
        loss_atc, loss_avc, loss_avtc, loss_atm, loss_avtm, loss_amlm, loss_avmlm: weights of audio-text
            contrastive, audio-video contrastive, audio+video-text contrastive, audio-text matching,
            audio+video-text matching, audio-conditioned MLM and audio+video-conditioned MLM (released: 0, 0, 1,
            0, 1, 0, 1). Any nonzero one builds the audio modules; ``av_fusion`` exists iff AVTC or AVTM,
            ``atm_head`` iff ATM, ``avtm_head`` iff AVTM (as the official constructor decides).
        loss_caption: the caption field each loss reads when a batch brings several captions per sample (a
            mapping of fields, official ``criterion.loss_caption``); released: every loss reads
            ``"avs_captions"``.
        freeze_audio: the audio encoder is not trained (released: True; as official it still runs in the
            model's mode, so its dropout follows ``train()`` / ``eval()``).
    """

    vision: PretrainConfig = field(default_factory=_released_vision)
    text: BertConfig = field(default_factory=lambda: bert_config("bert_large", encoder_width=768))
    embed_dim: int = 768
    uta_image_only: bool = True
    audio: BEATsConfig = field(default_factory=lambda: beats_config("beats_iter3"))
    av_concat_dim: int = 768
    loss_atc: float = 0.0
    loss_avc: float = 0.0
    loss_avtc: float = 1.0
    loss_atm: float = 0.0
    loss_avtm: float = 1.0
    loss_amlm: float = 0.0
    loss_avmlm: float = 1.0
    loss_caption: dict[str, str] = field(default_factory=lambda: dict.fromkeys(CAPTION_LOSSES, "avs_captions"))
    freeze_audio: bool = True

    def __post_init__(self):
        check_fields(self, positive=("av_concat_dim",), nonneg=tuple(f"loss_{n}" for n in AUDIO_LOSSES))
        super().__post_init__()
        if self.fusion_vision_norm:
            raise ConfigError("fusion_vision_norm", "must be false: the audio-visual model's memories already end "
                                                    "in the LayerNorm of av_concat_{vision,audio}_proj")
        fusion_users = [n for n in ("atm", "avtm", "amlm", "avmlm") if self.weight(n)]
        if self.text.fusion_layer >= self.text.num_hidden_layers and fusion_users:
            raise ConfigError("text.fusion_layer", f"{'/'.join(n.upper() for n in fusion_users)} need at least one "
                                                   "cross-attention layer")
        for k, v in self.loss_caption.items():
            if k not in CAPTION_LOSSES:
                raise ConfigError(f"loss_caption.{k}", f"not a loss that reads a caption ({', '.join(CAPTION_LOSSES)})")
            if not isinstance(v, str) or not v:
                raise ConfigError(f"loss_caption.{k}", f"must be a caption field name, got {v!r}")

    def fusion_memory_width(self) -> tuple[int, str, str]:
        return self.av_concat_dim, "av_concat_dim", "the av_concat-projected vision and audio tokens"

    def weight(self, loss: str) -> float:
        """The weight of ``loss`` (a name of :data:`LOSSES`)."""
        return getattr(self, f"loss_{loss}")

    @property
    def use_audio(self) -> bool:
        """Official ``use_audio()``: some audio loss has a nonzero weight (then the audio modules exist)."""
        return any(self.weight(n) for n in AUDIO_LOSSES)

    @classmethod
    def from_vision(cls, vision: VisionConfig, text: str | BertConfig | None = None,
                    audio: str | BEATsConfig | None = None, **overrides: Any) -> Stage2AVConfig:
        """The audio-visual model around a backbone: ``text`` / ``audio`` = a preset name
        (:data:`~.text.BERT_PRESETS`, :data:`BEATS_PRESETS`) or a config (default: bert-large and the released
        BEATs beside the InternVideo2 presets, test-scale towers beside ``tiny`` / ``toy``). ``av_concat_dim``
        and ``embed_dim`` default to 768 (released) beside the InternVideo2 presets and 64 beside the toy ones."""
        from .text import default_text_tower

        small = vision.embed_dim < 256
        overrides.setdefault("av_concat_dim", 64 if small else 768)
        overrides.setdefault("embed_dim", 64 if small else 768)
        if not isinstance(text, BertConfig):
            text = bert_config(text or default_text_tower(vision.embed_dim), encoder_width=overrides["av_concat_dim"])
        if not isinstance(audio, BEATsConfig):
            audio = beats_config(audio or default_audio_tower(vision.embed_dim))
        pcfg = PretrainConfig(vision=vision, clip_teacher_embed_dim=vision.clip_embed_dim, clip_teacher_final_dim=0)
        return cls(vision=pcfg, text=text, audio=audio, **overrides)


@dataclass
class _Caption:
    """One encoded caption field: ids / mask ``[B, L]``, text-mode states ``[B, L, H]``, projection ``[B, D]``."""

    ids: Tensor
    att: Tensor
    hidden: Tensor
    proj: Tensor


class InternVideo2Stage2AV(InternVideo2Stage2):
    """Vision encoder + BEATs + BERT fusion encoder + projections + ITM/ATM/AVTM heads (see the module doc).

    ``forward(media, text, idx, media_type)`` returns the weighted losses of the batch's media type; the
    embedding API (:mod:`.api`) is the evaluation path: ``forward_video`` / ``encode_video`` (tokens are the
    backbone's, ``embeds`` = normalised ``vision_proj``), ``forward_text`` / ``encode_texts``, ``itm_logits``
    (the vision tokens go through ``av_concat_vision_proj`` first), ``forward_audio`` / ``encode_audio``
    (:class:`~.api.AudioEmbedding`), and the audio-visual ``atm_logits``, ``avtm_logits``, ``av_embeds``.
    """

    model_type = "stage2_av"
    config_class = Stage2AVConfig
    has_audio = True

    def __init__(self, cfg: Stage2AVConfig):
        # the visual model's modules, with BERT reading av_concat_dim-wide memories (cfg.text.encoder_width)
        super().__init__(cfg)
        av, D = cfg.av_concat_dim, cfg.embed_dim
        self.av_concat_vision_proj = nn.Sequential(nn.Linear(cfg.vision.vision.embed_dim, av), nn.LayerNorm(av))
        self.audio_encoder = self.audio_proj = self.av_concat_audio_proj = None
        self.av_fusion = self.atm_head = self.avtm_head = None
        if cfg.use_audio:
            width = cfg.audio.encoder_embed_dim
            self.audio_encoder = BEATs(cfg.audio)
            self.audio_proj = nn.Linear(width, D)
            self.av_concat_audio_proj = nn.Sequential(nn.Linear(width, av), nn.LayerNorm(av))
            if cfg.loss_avtc or cfg.loss_avtm:
                self.av_fusion = nn.Linear(2 * D, D)
            if cfg.loss_atm:
                self.atm_head = nn.Linear(cfg.text.hidden_size, 2)
            if cfg.loss_avtm:
                self.avtm_head = nn.Linear(cfg.text.hidden_size, 2)
        self.apply_freezing()

    # ------------------------------------------------------------------ setup
    def apply_freezing(self) -> None:
        """Freeze what is configured frozen (``freeze_vision``, ``freeze_audio``, ``freeze_text_layers``) and
        what no weighted loss can train, whatever the batch media type (distributed training rejects
        parameters without a gradient): the UTA decoders, heads of zero-weight matching losses, the MLM head,
        the fusion layers, the projections only contrastive or only fusion losses read."""
        if not hasattr(self, "av_concat_vision_proj"):
            return  # called by the visual constructor, before the audio-visual modules exist
        cfg = self.config

        def on(*names: str) -> bool:
            return any(cfg.weight(n) for n in names)

        if not cfg.loss_uta:
            for name in ("clip_decoder", "final_clip_decoder", "clip_pos_embed", "clip_img_pos_embed"):
                mod = getattr(self.vision_encoder, name, None)
                if mod is not None:
                    mod.requires_grad_(False)
        bert = self.text_encoder.bert
        if not on("mlm", "amlm", "avmlm"):
            self.text_encoder.cls.requires_grad_(False)
            # the MLM decoder is tied to the word embeddings, which the text path still trains
            bert.embeddings.word_embeddings.weight.requires_grad_(True)
        if not on("vtm", "atm", "avtm", "mlm", "amlm", "avmlm"):
            for layer in bert.encoder.layer[cfg.text.fusion_layer:]:
                layer.requires_grad_(False)
        # gradients of the matching losses never reach the projections (negatives are drawn without them)
        trainable = {
            "itm_head": on("vtm"), "av_concat_vision_proj": on("vtm", "avtm", "mlm", "avmlm"),
            "vision_proj": on("vtc", "avc", "avtc"), "text_proj": on("vtc", "atc", "avtc"),
            "temp": on("vtc", "atc", "avc", "avtc"), "audio_proj": on("atc", "avc", "avtc"),
            "av_concat_audio_proj": on("atm", "avtm", "amlm", "avmlm"), "av_fusion": on("avtc"),
        }
        for name, train in trainable.items():
            part = getattr(self, name)
            if part is not None and not train:
                part.requires_grad_(False)
        if cfg.freeze_vision:
            self.vision_encoder.requires_grad_(False)
        if cfg.freeze_audio and self.audio_encoder is not None:
            self.audio_encoder.requires_grad_(False)
        if cfg.freeze_text_layers:
            bert.embeddings.requires_grad_(False)
            for i in range(cfg.freeze_text_layers):
                bert.encoder.layer[i].requires_grad_(False)

    def _need(self, name: str) -> nn.Module:
        mod = getattr(self, name)
        if mod is None:
            raise TypeError(f"this {self.model_type} model has no {name}: the official class builds it only for "
                            f"nonzero loss weights ({', '.join(f'{k}={self.config.weight(k)}' for k in AUDIO_LOSSES)})")
        return mod

    # ------------------------------------------------------------------ memories and embeddings
    def fusion_memory(self, vision_tokens: Tensor) -> Tensor:
        """Backbone vision tokens ``[N, S, C_vision]`` -> the memory BERT reads ``[N, S, av_concat_dim]``
        (``av_concat_vision_proj``: Linear + LayerNorm)."""
        return self.av_concat_vision_proj(vision_tokens)

    def audio_memory(self, audio_tokens: Tensor) -> Tensor:
        """Raw BEATs tokens ``[N, S, C_audio]`` -> the memory BERT reads ``[N, S, av_concat_dim]``."""
        return self._need("av_concat_audio_proj")(audio_tokens)

    def forward_audio(self, fbank: Tensor) -> AudioEmbedding:
        """fbank ``[B, T_f, F]`` -> BEATs tokens ``[B, N, C_audio]``, pooled = their mean ``[B, C_audio]``
        (before any projection) and ``embeds = normalize(audio_proj(pooled))`` ``[B, embed_dim]``."""
        enc = self._need("audio_encoder")
        P = enc.cfg.input_patch_size
        if fbank.ndim != 3 or fbank.shape[1] < P or fbank.shape[2] < P:
            raise ShapeError(f"the audio input is an fbank [B, T_frames, mel_bins] of at least one {P}x{P} patch, "
                             f"got {tuple(fbank.shape)}")
        tokens = enc(fbank.to(enc.patch_embedding.weight.dtype))
        pooled = tokens.mean(dim=1)
        return AudioEmbedding(pooled=pooled, tokens=tokens, embeds=F.normalize(self.audio_proj(pooled), dim=-1))

    def prepare_audio(self, audio, sample_rate: int | None = None) -> Tensor:
        """Audio -> the fbank ``[B, T_f, F]`` on the model's device and dtype.

        Without ``sample_rate``: an fbank ``[T_f, F]`` / ``[B, T_f, F]`` (float tensor or NumPy array), passed
        through. With ``sample_rate``: mono waveforms in [-1, 1], ``[n]`` / ``[B, n]`` or a list of ``[n]`` of any
        lengths, each resampled to 16 kHz, cut to its first 10 s (the official loader crops at random when
        training) and turned into the official 64-bin fbank (``internvideo2.data.audio.beats_fbank``: 998 rows,
        zero-padded after normalisation)."""
        from ..data.audio import BEATS_TARGET_FRAMES, MAX_AUDIO_SECONDS, beats_fbank, crop_waveform, resample

        ref = self._need("audio_encoder").patch_embedding.weight

        def tensor(x, what: str) -> Tensor:
            if isinstance(x, np.ndarray) and np.issubdtype(x.dtype, np.floating):
                x = torch.from_numpy(np.ascontiguousarray(x))
            if not isinstance(x, Tensor) or not x.is_floating_point():
                raise ShapeError(f"{what} must be a float tensor or NumPy array, got {type(x).__name__} "
                                 f"{getattr(x, 'dtype', '')}")
            return x.float()

        if sample_rate is None:
            x = tensor(audio, "an fbank")
            x = x[None] if x.ndim == 2 else x
            if x.ndim != 3 or min(x.shape) == 0:
                raise ShapeError(f"an fbank must be [(B,) T_frames, mel_bins] (pass sample_rate= for waveforms), got "
                                 f"{tuple(x.shape)}")
            return x.to(device=ref.device, dtype=ref.dtype)
        waves = list(audio) if isinstance(audio, (list, tuple)) else None
        if waves is None:
            x = tensor(audio, "a waveform")
            if x.ndim not in (1, 2):
                raise ShapeError(f"waveforms must be [n] or [B, n] (mono), got {tuple(x.shape)}")
            waves = list(x[None] if x.ndim == 1 else x)
        if not waves:
            raise ShapeError("no waveform given")
        banks = []
        for i, w in enumerate(waves):
            w = tensor(w, f"waveform {i}")
            if w.ndim != 1 or w.numel() < sample_rate * 0.025:
                raise ShapeError(f"waveform {i} must be mono [n] with at least one 25 ms frame, got {tuple(w.shape)}")
            w = crop_waveform(resample(w, int(sample_rate), 16000), int(MAX_AUDIO_SECONDS * 16000))
            banks.append(beats_fbank(w, BEATS_TARGET_FRAMES)[0])
        return torch.stack(banks).to(device=ref.device, dtype=ref.dtype)

    def _fusion_logits(self, head: nn.Module, memory: Tensor, text_hidden: Tensor, text_atts: Tensor) -> Tensor:
        h = self.text_encoder.bert(encoder_embeds=text_hidden, attention_mask=text_atts, encoder_hidden_states=memory,
                                   mode="fusion")
        return head(pool_text(h, text_atts, self._itm_pool))

    def atm_logits(self, audio_tokens: Tensor, text_hidden: Tensor, text_atts: Tensor) -> Tensor:
        """ATM logits ``[N, 2]`` (class 1 = match) for aligned rows of raw BEATs tokens ``[N, S, C_audio]`` and
        text-mode hidden states ``[N, L, H]`` with their mask ``[N, L]``."""
        return self._fusion_logits(self._need("atm_head"), self.audio_memory(audio_tokens), text_hidden, text_atts)

    def avtm_logits(self, audio_tokens: Tensor, vision_tokens: Tensor, text_hidden: Tensor,
                    text_atts: Tensor) -> Tensor:
        """AVTM logits ``[N, 2]``: BERT reads ``[audio memory ; vision memory]`` (audio first, as official)."""
        memory = torch.cat([self.audio_memory(audio_tokens), self.fusion_memory(vision_tokens)], dim=1)
        return self._fusion_logits(self._need("avtm_head"), memory, text_hidden, text_atts)

    def fuse(self, audio_proj: Tensor, vision_proj: Tensor) -> Tensor:
        """``av_fusion([audio_proj ; vision_proj])`` ``[B, D]`` on the unnormalised projections (audio first)."""
        return self._need("av_fusion")(torch.cat([audio_proj, vision_proj], dim=-1))

    def av_embeds(self, audio: AudioEmbedding, video: VideoEmbedding) -> Tensor:
        """The audio+video embedding ``[B, D]`` (normalised fused projections) of aligned audio and video
        embeddings: what audio_video retrieval compares with text ``embeds``."""
        return F.normalize(self.fuse(self.audio_proj(audio.pooled), self.vision_proj(video.pooled)), dim=-1)

    # ------------------------------------------------------------------ training
    def _captions(self, text: Mapping[str, Any], losses: Sequence[str]) -> dict[str, _Caption]:
        """Encode each caption field the batch's losses read once: ``text`` is one tokenised caption per sample
        (``{"input_ids", "attention_mask"}``) or a mapping of caption fields to such (``loss_caption`` picks)."""
        def encode(t: Mapping[str, Tensor]) -> _Caption:
            ids, att = t["input_ids"], t["attention_mask"]
            hidden, feat = self._text_states(ids, att)
            return _Caption(ids, att, hidden, self.text_proj(feat))

        users = [n for n in losses if n in CAPTION_LOSSES]
        if not isinstance(text, Mapping):
            raise ConfigError("text", f"must be a mapping (input_ids, attention_mask or caption fields), got "
                                      f"{type(text).__name__}")
        if "input_ids" in text:
            one = encode(text) if users else None
            return {n: one for n in users}
        fields: dict[str, _Caption] = {}
        out = {}
        for n in users:
            name = self.config.loss_caption.get(n)
            if name is None:
                raise ConfigError(f"loss_caption.{n}", "the batch has several caption fields but this loss names none")
            if name not in text:
                raise ConfigError("text", f"no caption field {name!r} (loss_caption.{n}); the batch has {sorted(text)}")
            if name not in fields:
                fields[name] = encode(text[name])
            out[n] = fields[name]
        return out

    def forward(self, media: Tensor | Sequence[Tensor], text: Mapping[str, Any], idx: Tensor,
                media_type: str = "video", *, gather: Callable[[Tensor], Tensor] | None = None,
                generator: torch.Generator | None = None, mask: Tensor | None = None, teacher=None,
                hard_negatives: bool | None = None) -> dict[str, Tensor]:
        """Weighted training losses of one batch ``{loss_<name>, ..., loss}`` (only the nonzero-weight losses of
        its media type, :data:`MEDIA_LOSSES`).

        Args:
            media: ``video`` / ``image``: ``[B, 3, T, H, W]``; ``audio``: the fbank ``[B, T_f, F]``;
                ``audio_video``: ``(fbank, video)`` (official order).
            text: ``{"input_ids": [B, L], "attention_mask": [B, L]}``, or ``{field: that}`` per caption field
                (``loss_caption`` says which field each loss reads; each field is encoded once).
            idx: ``[B]`` sample indices (equal = positives).
            gather / generator / mask / teacher / hard_negatives: as :meth:`InternVideo2Stage2.forward`
                (``mask`` masks the video; the audio is never masked).
        """
        cfg = self.config
        if media_type not in MEDIA_LOSSES:
            raise ConfigError("media_type", f"must be one of {', '.join(MEDIA_LOSSES)}, got {media_type!r}")
        with torch.no_grad():
            self.temp.clamp_(cfg.temp_min, cfg.temp_max)
        video = audio = None
        if media_type == "audio_video":
            if not isinstance(media, (list, tuple)) or len(media) != 2:
                raise ShapeError("an audio_video batch is (fbank [B, T_f, F], video [B, 3, T, H, W])")
            audio, video = media
        elif media_type == "audio":
            audio = media
        else:
            video = media
        losses_on = [n for n in MEDIA_LOSSES[media_type] if cfg.weight(n)]
        if "uta" in losses_on and (cfg.uta_image_only and (video is None or video.shape[2] > 1)):
            losses_on.remove("uta")  # official: UTA on images only (an audio_video batch is always a video)
        if not losses_on:
            raise ConfigError(f"loss_{MEDIA_LOSSES[media_type][-1]}",
                              f"a {media_type} batch trains nothing: the weights of "
                              f"{', '.join(n for n in MEDIA_LOSSES[media_type] if n != 'uta')} are all 0")
        if audio is not None and self.audio_encoder is None:
            raise ConfigError("loss_atc", f"a {media_type} batch needs the audio modules, which exist only with a "
                                          "nonzero audio loss weight")
        caps = self._captions(text, losses_on)

        v_mem = v_proj = a_mem = a_proj = fused = vout = None
        if video is not None:
            if mask is None and self.training:
                mask = self.make_mask(video, generator)
            vout = self.vision_encoder(video, mask=mask, decoders="uta" in losses_on)
            v_mem, v_proj = self.fusion_memory(vout.tokens), self.vision_proj(vout.pooled)
        if audio is not None:
            a = self.forward_audio(audio)
            a_mem, a_proj = self.audio_memory(a.tokens), self.audio_proj(a.pooled)
        if "avtc" in losses_on or "avtm" in losses_on:
            fused = self.fuse(a_proj, v_proj)
        av_mem = torch.cat([a_mem, v_mem], dim=1) if a_mem is not None and v_mem is not None else None

        out: dict[str, Tensor] = {}
        if "uta" in losses_on:
            if teacher is None:
                raise ConfigError("loss_uta", "UTA needs the CLIP teacher's outputs (forward(..., teacher=...))")
            target = teacher.features if mask is None else visible_targets(teacher.features, mask)
            out["uta"] = uta_loss(vout.clip_align, target, vout.final_align, teacher.pooled,
                                  ratios=tuple(cfg.uta_ratio))
        contrastive = {"vtc": lambda: (v_proj, caps["vtc"].proj), "atc": lambda: (a_proj, caps["atc"].proj),
                       "avc": lambda: (a_proj, v_proj), "avtc": lambda: (fused, caps["avtc"].proj)}
        for n in ("vtc", "atc", "avc", "avtc"):
            if n in losses_on:
                x, y = contrastive[n]()
                out[n] = vtc_loss(x, y, idx, self.temp, gather)

        B = idx.shape[0]
        order = None  # the samples the matching / MLM losses run on: the first N, or a random N
        matching = any(n in losses_on for n in ("vtm", "atm", "avtm")) and (cfg.vtm_batch or B) < B
        mlms = any(n in losses_on for n in ("mlm", "amlm", "avmlm")) and (cfg.mlm_batch or B) < B
        if cfg.vtm_select == "random" and (matching or mlms):
            order = torch.randperm(B, generator=generator).to(idx.device)

        def rows(n: int | None) -> Tensor | slice:
            n = min(n or B, B)
            return slice(0, n) if order is None else order[:n].sort().values

        hard = cfg.vtm_hard_neg if hard_negatives is None else hard_negatives
        match = {"vtm": (self.itm_head, v_mem, v_proj), "atm": (self.atm_head, a_mem, a_proj),
                 "avtm": (self.avtm_head, av_mem, fused)}
        for n, (head, memory, feat) in match.items():
            if n in losses_on:
                s, c = rows(cfg.vtm_batch), caps[n]
                out[n], _, _ = vtm_loss(self.text_encoder.bert, head, memory[s], c.hidden[s], c.att[s], feat[s],
                                        c.proj[s], idx[s], self.temp, hard_neg=hard, generator=generator,
                                        pool=self._itm_pool)
        for n, memory in (("mlm", v_mem), ("amlm", a_mem), ("avmlm", av_mem)):
            if n in losses_on:
                s, c = rows(cfg.mlm_batch), caps[n]
                out[n] = mlm_loss(self.text_encoder, c.ids[s], c.att[s], memory[s], cfg.mlm_prob, generator)

        losses = {f"loss_{n}": cfg.weight(n) * v for n, v in out.items()}
        losses["loss"] = sum(losses.values())
        return losses


# --------------------------------------------------------------------------------------------------
# Official configs -> ours
# --------------------------------------------------------------------------------------------------
def stage2_av_config_from_official(official: Mapping[str, Any]) -> Stage2AVConfig:
    """Official audio-visual stage-2 config -> :class:`Stage2AVConfig`.

    ``official`` = ``{"config": {model, criterion}, "bert_config": {...}, "audio_encoder_cfg": {...}}``: the
    class's ``config``, the BERT JSON, and the ``cfg`` dict of the BEATs file ``model.audio_encoder.
    audio_model_path`` names (the official constructor reads it from that file). The vision encoder, BERT sizes,
    masks, VTC/VTM/MLM/UTA weights come as for the visual class (:func:`~.stage2.stage2_config_from_official`);
    BERT's ``encoder_width`` is ``model.av_concat_dim`` and the shared width ``model.contra_dim``, as the
    official constructor passes them. Audio loss weights absent from ``criterion.loss_weight`` are 0.
    """
    cfg = official["config"]
    m, crit = cfg["model"], cfg.get("criterion", {})
    if "audio_encoder_cfg" not in official:
        raise ConfigError("audio_encoder_cfg", "the official class reads the BEATs cfg from "
                                               "model.audio_encoder.audio_model_path; pass that file's 'cfg' dict")
    audio = BEATsConfig.from_dict(official["audio_encoder_cfg"], source="audio_encoder_cfg")
    ae = m.get("audio_encoder", {})
    if ae.get("name", "beats") not in ("beats", "beats_no_weight_norm_debug"):
        raise ConfigError("config.model.audio_encoder.name", f"{ae.get('name')!r}: only BEATs is an official choice")
    if ae.get("d_model", audio.encoder_embed_dim) != audio.encoder_embed_dim:
        raise ConfigError("config.model.audio_encoder.d_model", f"{ae['d_model']} is not the BEATs width "
                                                                f"{audio.encoder_embed_dim} (audio_encoder_cfg)")
    for k in ("av_concat_dim", "contra_dim"):
        if k not in m:
            raise ConfigError(f"config.model.{k}", "missing (the official class reads it)")
    visual = {"config": {"model": {**m, "embed_dim": m["contra_dim"]}, "criterion": crit},
              "bert_config": official["bert_config"]}
    base = stage2_config_from_official(visual)
    w = crit.get("loss_weight", {})
    kw = {f.name: getattr(base, f.name) for f in dataclasses.fields(Stage2Config)}
    kw.update(text=dataclasses.replace(base.text, encoder_width=m["av_concat_dim"]),
              uta_image_only=crit.get("uta_image_only", False), freeze_vision=m.get("freeze_vision", False))
    kw.update({f"loss_{n}": float(w.get(n, 0.0)) for n in AUDIO_LOSSES})
    caption = crit.get("loss_caption")
    if caption is not None:
        kw["loss_caption"] = {k: v for k, v in caption.items() if k in CAPTION_LOSSES}
    return Stage2AVConfig(**kw, audio=audio, av_concat_dim=m["av_concat_dim"],
                          freeze_audio=m.get("freeze_audio", False))


__all__ = ["Stage2AVConfig", "InternVideo2Stage2AV", "stage2_av_config_from_official", "beats_config",
           "default_audio_tower", "BEATS_PRESETS", "RELEASED_BEATS_SETTINGS", "LOSSES", "CAPTION_LOSSES",
           "AUDIO_LOSSES", "MEDIA_LOSSES"]
