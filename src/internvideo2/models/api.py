"""The one embedding API every model family implements.

Whatever the family (vision classifier, stage-1 student, teacher, stage-2 video-text model, CLIP, ...),
callers get video and text embeddings the same way and receive the same typed results::

    emb = model.encode_video(frames)        # VideoEmbedding: .pooled, .tokens, .embeds (None if no text space)
    txt = model.encode_texts(["a red star moves to the left"])   # TextEmbedding (families with a text tower)
    score = emb.embeds @ txt.embeds.T       # cosine in the shared space
    backbone = model.vision_backbone        # the VisionTransformer core, for every family
    aud = model.encode_audio(fbank)         # AudioEmbedding (families with an audio tower, ``has_audio``)

``encode_video`` / ``encode_texts`` are the inference entry points (no autograd, eval transform for raw
frames, tokenizer for strings). ``forward_video`` / ``forward_text`` are the same computations on prepared
tensors, differentiable, for training code and for callers that batch tensors themselves. Capabilities are
class attributes (``has_text``, ``has_itm``), never guessed from attribute names or ``model_type`` strings.

Adding a family: subclass :class:`EmbeddingModel` (with ``nn.Module``), set ``model_type`` /
``config_class``, implement ``vision_backbone`` and ``forward_video`` (and the text methods when
``has_text``), register it in :mod:`internvideo2.models.registry`. See docs/ARCHITECTURE.md.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor, nn

__all__ = ["VideoEmbedding", "TextEmbedding", "AudioEmbedding", "EmbeddingModel"]


@dataclass
class VideoEmbedding:
    """What ``encode_video`` / ``forward_video`` return, for every model family.

    Attributes:
        pooled: ``[B, D_pool]`` clip-level feature of the vision backbone: its attention-pool output
            (``clip_embed_dim`` wide), or the mean of its tokens for a core without attention pool; not
            normalised. This is what classifiers and linear probes read.
        tokens: ``[B, (1+)N, C]`` final tokens of the backbone, cls first when it has one (what the ITM
            fusion layers cross-attend to).
        embeds: ``[B, D]`` the video in the model's shared video-text space, projected and L2-normalised;
            None for models without a text side.
        grid: the token grid ``(T', H', W')`` of this input.
    """

    pooled: Tensor
    tokens: Tensor
    embeds: Tensor | None = None
    grid: tuple[int, int, int] | None = None


@dataclass
class TextEmbedding:
    """What ``encode_texts`` / ``forward_text`` return.

    Attributes:
        pooled: ``[N, H]`` sentence feature of the text tower before the projection (the [CLS] state, the
            mean of real tokens or the last real token, per the model's ``text_pool``).
        embeds: ``[N, D]`` projected into the shared space and L2-normalised.
        hidden: ``[N, L, H]`` token states after the text-only layers (what ITM fusion reads); None for
            towers without fusion layers.
        attention_mask: ``[N, L]`` int64, 1 = real token (None when ``hidden`` is None).
    """

    pooled: Tensor
    embeds: Tensor
    hidden: Tensor | None = None
    attention_mask: Tensor | None = None


@dataclass
class AudioEmbedding:
    """What ``encode_audio`` / ``forward_audio`` return (families with an audio tower).

    Attributes:
        pooled: ``[B, D_audio]`` clip-level feature of the audio encoder: the mean of its tokens (official
            stage 2: taken before any projection of the tokens); not normalised.
        tokens: ``[B, N, D_audio]`` final tokens of the audio encoder (BEATs: 248 for a 998 x 64 fbank,
            token ``4 * t + f``); what the model's audio-text matching reads (after its own projection).
        embeds: ``[B, D]`` the audio in the model's shared space (with text and video), projected and
            L2-normalised; None without a shared space.
    """

    pooled: Tensor
    tokens: Tensor
    embeds: Tensor | None = None


class EmbeddingModel:
    """Mixin of every model family (see the module doc). Subclasses are ``nn.Module`` s."""

    model_type: ClassVar[str] = ""
    config_class: ClassVar[type]
    #: ``encode_texts`` / ``forward_text`` / ``tokenizer`` are available
    has_text: ClassVar[bool] = False
    #: ``itm_logits`` is available (a stage-2 ITM head over fused video-text states)
    has_itm: ClassVar[bool] = False
    #: ``encode_audio`` / ``forward_audio`` / ``prepare_audio`` are available (an audio tower)
    has_audio: ClassVar[bool] = False

    # -------------------------------------------------------------------------------- what subclasses give
    @property
    def vision_backbone(self) -> nn.Module:
        """The vision core of this model: a :class:`~internvideo2.models.vision.VisionTransformer` (patch
        embed, blocks, attention pool; ``.cfg`` is its :class:`~internvideo2.models.config.VisionConfig`)."""
        raise NotImplementedError(f"{type(self).__name__} must define vision_backbone")

    @property
    def projection_dim(self) -> int | None:
        """Width of ``embeds`` (the shared video-text space), or None without a text side."""
        return None

    def forward_video(self, video: Tensor, *, use_image: bool | None = None) -> VideoEmbedding:
        """Differentiable video path on a prepared float ``[B, 3, T, H, W]`` (normalised)."""
        raise NotImplementedError(f"{type(self).__name__} must define forward_video")

    def forward_text(self, input_ids: Tensor, attention_mask: Tensor) -> TextEmbedding:
        """Differentiable text path on token ids ``[N, L]`` and mask ``[N, L]``."""
        raise TypeError(f"{type(self).__name__} ({self.model_type!r}) has no text tower")

    def itm_logits(self, vision_tokens: Tensor, text_hidden: Tensor, text_atts: Tensor) -> Tensor:
        """ITM logits ``[N, 2]`` (class 1 = match) for aligned rows of vision tokens ``[N, (1+)M, C]`` and
        text-mode hidden states ``[N, L, H]`` with their mask ``[N, L]``."""
        raise TypeError(f"{type(self).__name__} ({self.model_type!r}) has no ITM head")

    def forward_audio(self, fbank: Tensor) -> AudioEmbedding:
        """Differentiable audio path on a prepared fbank ``[B, T_f, F]`` (families with ``has_audio``)."""
        raise TypeError(f"{type(self).__name__} ({self.model_type!r}) has no audio tower")

    def prepare_audio(self, audio, sample_rate: int | None = None) -> Tensor:
        """Audio in one of the family's documented layouts -> the fbank ``[B, T_f, F]`` ``forward_audio``
        reads, on the model's device and dtype."""
        raise TypeError(f"{type(self).__name__} ({self.model_type!r}) has no audio tower")

    # -------------------------------------------------------------------------------- shared inference API
    @torch.no_grad()
    def encode_video(self, video: Tensor, *, num_frames: int | None = None,
                     use_image: bool | None = None) -> VideoEmbedding:
        """Embed videos: raw RGB frames uint8 ``[T, H, W, 3]`` / ``[B, T, H, W, 3]`` (resized to the model's
        size and normalised with its mean/std: the official evaluation transform) or an already normalised
        float ``[B, 3, T, H, W]``. ``num_frames`` checks the frame count of raw input; ``use_image`` forces
        (or forbids) the single-frame path (default: ``T == 1`` for a multi-frame model)."""
        x = self.vision_backbone.prepare_video(video, num_frames=num_frames)
        return self.forward_video(x, use_image=use_image)

    @torch.no_grad()
    def encode_texts(self, texts: Sequence[str]) -> TextEmbedding:
        """Embed strings with the model's own tokenizer (no gradients)."""
        if not self.has_text:
            raise TypeError(f"{type(self).__name__} ({self.model_type!r}) has no text tower")
        tok = self.tokenizer(list(texts))
        dev = next(self.parameters()).device
        return self.forward_text(tok["input_ids"].to(dev), tok["attention_mask"].to(dev))

    @torch.no_grad()
    def encode_audio(self, audio, *, sample_rate: int | None = None) -> AudioEmbedding:
        """Embed audio (no gradients): an fbank ``[(B,) T_f, F]``, or with ``sample_rate`` mono waveforms
        ``[(B,) n]`` / a list of ``[n]`` at that rate, turned into the model's fbank by its official audio
        pipeline (see the family's ``prepare_audio``)."""
        if not self.has_audio:
            raise TypeError(f"{type(self).__name__} ({self.model_type!r}) has no audio tower")
        return self.forward_audio(self.prepare_audio(audio, sample_rate=sample_rate))
