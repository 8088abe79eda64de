"""Teacher pretraining at toy scale, on the training engine (the progressive recipe's first step).

* ``clip_teacher``: an image CLIP (:class:`~internvideo2.models.teachers.ImageTextTeacher`) trained on
  (one frame of a clip, one of its captions) pairs — the stand-in for InternVL-C.
* ``mae_teacher``: a video masked autoencoder (:class:`~internvideo2.models.teachers.VideoMAETeacher`)
  trained to reconstruct tube-masked clips — the stand-in for VideoMAEv2.

Both read the synthetic world through the same data options as stage 2 (``data.options``). The vision
backbone is ``model.preset`` (``internvl-c-6b`` / ``videomae-g14`` style) + ``model.overrides``; the
teacher fields (``return_layer``, ``return_interval``) go in ``task.options``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from .common import (
    DataOptions,
    InputSize,
    build_transform,
    no_other_overrides,
    resolve_vision,
    step_generator,
    synth_corpus,
    text_config,
    to_model_layout,
)
from .tasks import StepContext, Task, register_task


@dataclass
class TeacherDataOptions(DataOptions):
    """``data.options`` of the teacher and stage-1 tasks: as :class:`DataOptions`, without augmentation by
    default."""

    augment: Literal["official", "crop", "none"] = "none"

    def resolved(self, output_dir):
        d = super().resolved(output_dir)
        d.check_annotation()
        return d


def video_dataset(cfg, d: DataOptions, inp: InputSize, train: bool = True, split: str = "train"):
    """The video-text dataset of the teacher and stage-1 tasks: ``inp.data_frames`` frames at ``inp.img_size``."""
    from ..data.datasets import VideoTextDataset

    if d.corpus == "synth":
        root = synth_corpus(d)
        ann, video_root = root / f"{split}.json", root
    else:
        ann, video_root = d.annotation, d.video_root
    return VideoTextDataset(ann, video_root, num_frames=inp.data_frames, sample=d.sample_type,
                            transform=build_transform(d, inp.img_size, train), seed=cfg.train.seed, cache=bool(d.cache))


@dataclass
class ClipTeacherOptions:
    """``task.options`` of ``clip_teacher``.

    Attributes:
        text_encoder: ``minilm`` (real weights from its package), ``bert_base`` / ``bert_large`` / ``bert_tiny``
            or a HF BERT folder; text_pretrained: load MiniLM's shipped weights (``minilm`` only).
        freeze_text: only the text projection adapts (as InternVideo2-CLIP freezes its text tower).
        embed_dim / temp / text_pool / max_txt_l: contrastive space, initial temperature, text pooling, length.
        return_layer / return_interval: the layers the teacher returns as stage-1 targets.
    """

    text_encoder: str = "minilm"
    text_pretrained: bool = True
    freeze_text: bool = False
    embed_dim: int = 256
    temp: float = 0.07
    text_pool: str = "mean"
    max_txt_l: int = 32
    return_layer: int = 2
    return_interval: float = 1.0


@dataclass
class MAETeacherOptions:
    """``task.options`` of ``mae_teacher``.

    Attributes:
        mask_ratio / mask_type: masking of the encoder input (``tube``, VideoMAE's; or ``random`` per token).
        decoder_dim / decoder_depth / decoder_heads: the light reconstruction decoder.
        norm_pix_loss / motion_weight: the reconstruction target (see ``VideoMAETeacherConfig``).
        return_layer / return_interval: the layers the teacher returns as stage-1 targets.
    """

    mask_ratio: float = 0.9
    mask_type: Literal["tube", "random"] = "tube"
    decoder_dim: int = 96
    decoder_depth: int = 2
    decoder_heads: int = 4
    norm_pix_loss: bool = True
    motion_weight: float = 0.0
    return_layer: int = 2
    return_interval: float = 1.0


@register_task("clip_teacher")
class ClipTeacherTask(Task):
    """Image-text contrastive pretraining of a per-frame CLIP teacher. The model is per-frame (1 frame,
    tubelet 1); ``data.options.num_frames`` is how many frames a clip offers to pick one from."""

    options_class = ClipTeacherOptions
    data_options_class = TeacherDataOptions

    def resolve(self, cfg):
        """``(options, data options, vision config, input size)``."""
        o, d = self.options(cfg), self.data_options(cfg)
        vis, rest, inp = resolve_vision(cfg, d, default_preset="internvl-c-6b", model_frames=1,
                                        fixed={"tubelet_size": 1})
        no_other_overrides(rest)
        return o, d, vis, inp

    def validate(self, cfg) -> None:
        self.resolve(cfg)

    def build_model(self, cfg) -> nn.Module:
        from ..models.config import TeacherConfig
        from ..models.teachers import ImageTextTeacher, ImageTextTeacherConfig

        o, _, vis, _ = self.resolve(cfg)
        tcfg = TeacherConfig(vision=vis, kind="internvl_clip", return_layer=o.return_layer,
                             return_interval=o.return_interval)
        text = text_config(o.text_encoder, vis.embed_dim)
        model = ImageTextTeacher(ImageTextTeacherConfig(vision=tcfg, text=text, embed_dim=o.embed_dim, temp=o.temp,
                                                        text_pool=o.text_pool, max_txt_len=o.max_txt_l,
                                                        add_sep=o.text_encoder == "minilm"))
        if o.text_pretrained and o.text_encoder == "minilm":
            from ..checkpoint.bert import load_hf_bert
            from ..models.tokenizer import default_vocab_path

            load_hf_bert(model.text_encoder, default_vocab_path().parent)
        if o.freeze_text:  # only the text projection adapts (as InternVideo2-CLIP freezes its text tower)
            model.text_encoder.requires_grad_(False)
        self.tokenizer = model.tokenizer
        return model

    def build_train_dataset(self, cfg):
        _, d, _, inp = self.resolve(cfg)
        return video_dataset(cfg, d, inp)

    def collate(self, samples):
        from ..data.datasets import collate_skip_bad

        return collate_skip_bad(samples)

    def training_step(self, model, batch, ctx: StepContext):
        video = batch["video"]  # [B, T, 3, H, W]: one frame per clip, chosen from (seed, step, index)
        picks = [int(torch.randint(video.shape[1], (1,), generator=step_generator(
            ctx.cfg.train.seed, ctx.step, 0, 0, f"frame/{int(i)}"))) for i in batch["idx"]]
        frames = torch.stack([video[j, t] for j, t in enumerate(picks)])[:, :, None]  # [B, 3, 1, H, W]
        captions = list(batch["caption"])
        net = ctx.unwrapped
        if not any(p.requires_grad for p in net.text_encoder.parameters()):
            # a frozen text tower gives every caption one fixed feature: compute each caption once
            cache = self.__dict__.setdefault("_text_cache", {})
            new = sorted({c for c in captions if c not in cache})
            if new:
                tok = self.tokenizer(new, padding="longest")
                with torch.no_grad():
                    feats = net.text_pooled(tok["input_ids"].to(ctx.device), tok["attention_mask"].to(ctx.device))
                cache.update(zip(new, feats))
            pooled = torch.stack([cache[c] for c in captions])
            return model(frames, None, None, batch["idx"], gather=ctx.gather, text_pooled=pooled)
        tok = self.tokenizer(captions, padding="longest")
        return model(frames, tok["input_ids"].to(ctx.device), tok["attention_mask"].to(ctx.device), batch["idx"],
                     gather=ctx.gather)


@register_task("mae_teacher")
class MAETeacherTask(Task):
    """Masked video autoencoding of a VideoMAE-style teacher (tube masking, normalised pixels; ``mask_type:
    random`` masks every token independently; ``motion_weight`` weights changing pixels up in the loss)."""

    options_class = MAETeacherOptions
    data_options_class = TeacherDataOptions

    def resolve(self, cfg):
        o, d = self.options(cfg), self.data_options(cfg)
        vis, rest, inp = resolve_vision(cfg, d, default_preset="videomae-g14")
        no_other_overrides(rest)
        return o, d, vis, inp

    def validate(self, cfg) -> None:
        self.resolve(cfg)

    def build_model(self, cfg) -> nn.Module:
        from ..models.config import TeacherConfig
        from ..models.teachers import VideoMAETeacher, VideoMAETeacherConfig

        o, _, vis, _ = self.resolve(cfg)
        self.mask_type = o.mask_type
        enc = TeacherConfig(vision=vis, kind="videomae", return_layer=o.return_layer, return_interval=o.return_interval)
        return VideoMAETeacher(VideoMAETeacherConfig(encoder=enc, decoder_dim=o.decoder_dim,
                                                     decoder_depth=o.decoder_depth,
                                                     decoder_heads=o.decoder_heads, mask_ratio=o.mask_ratio,
                                                     norm_pix_loss=o.norm_pix_loss, motion_weight=o.motion_weight))

    def build_train_dataset(self, cfg):
        _, d, _, inp = self.resolve(cfg)
        return video_dataset(cfg, d, inp)

    def collate(self, samples):
        from ..data.datasets import collate_skip_bad

        return collate_skip_bad(samples)

    def training_step(self, model, batch, ctx: StepContext):
        from ..objectives.masking import random_mask, tube_mask

        net = ctx.unwrapped
        T, H, W = net.config.encoder.vision.grid
        r = net.config.mask_ratio
        rows = []
        for i in batch["idx"]:
            g = step_generator(ctx.cfg.train.seed, ctx.step, 0, 0, f"tube/{int(i)}")
            rows.append(tube_mask(1, T, H * W, r, g, with_cls=False) if self.mask_type == "tube"
                        else random_mask(1, T * H * W, r, g, with_cls=False))
        mask = torch.cat(rows)
        return model(to_model_layout(batch["video"]), mask.to(ctx.device))
