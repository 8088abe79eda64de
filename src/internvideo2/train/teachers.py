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

from typing import Any

import torch
from torch import nn

from ..errors import ConfigError
from .common import (
    build_transform,
    data_options,
    step_generator,
    synth_corpus,
    text_config,
    to_model_layout,
    vision_from_model_cfg,
)
from .tasks import StepContext, Task, register_task

DATA_OPTIONS: dict[str, Any] = {"corpus": "synth", "num_frames": 4, "sample_type": "rand", "image_res": 56,
                                "cache": True, "augment": "none", "synthetic": False, "media": ["video"]}


def _data_options(cfg) -> dict[str, Any]:
    return data_options(cfg, DATA_OPTIONS)


def _video_dataset(cfg, train: bool = True, split: str = "train"):
    from ..data.datasets import VideoTextDataset

    d = _data_options(cfg)
    if d["corpus"] == "synth":
        root = synth_corpus(d)
        ann, video_root = root / f"{split}.json", root
    else:
        ann, video_root = d["annotation"], d.get("video_root")
    return VideoTextDataset(ann, video_root, num_frames=int(d["num_frames"]), sample=d["sample_type"],
                            transform=build_transform(d, int(d["image_res"]), train), seed=cfg.train.seed,
                            cache=bool(d["cache"]))


def _check_options(cfg, known: dict[str, Any]) -> dict[str, Any]:
    unknown = sorted(set(cfg.task.options) - set(known))
    if unknown:
        raise ConfigError(f"task.options.{unknown[0]}", f"unknown option; known: {', '.join(sorted(known))}")
    return {**known, **cfg.task.options}


CLIP_OPTIONS = {"text_encoder": "minilm", "text_pretrained": True, "freeze_text": False, "embed_dim": 256, "temp": 0.07,
                "text_pool": "mean", "max_txt_l": 32, "return_layer": 2, "return_interval": 1.0}
MAE_OPTIONS = {"mask_ratio": 0.9, "mask_type": "tube", "decoder_dim": 96, "decoder_depth": 2, "decoder_heads": 4,
               "norm_pix_loss": True, "motion_weight": 0.0, "return_layer": 2, "return_interval": 1.0}


@register_task("clip_teacher")
class ClipTeacherTask(Task):
    """Image-text contrastive pretraining of a per-frame CLIP teacher."""

    def validate(self, cfg) -> None:
        _check_options(cfg, CLIP_OPTIONS)
        _data_options(cfg)

    def build_model(self, cfg) -> nn.Module:
        from ..models.config import TeacherConfig
        from ..models.teachers import ImageTextTeacher, ImageTextTeacherConfig

        o = _check_options(cfg, CLIP_OPTIONS)
        vis, rest = vision_from_model_cfg(cfg, default_preset="internvl-c-6b")
        if rest:
            raise ConfigError(f"model.overrides.{sorted(rest)[0]}", "not a VisionConfig field")
        vis = vis.replace(num_frames=1, tubelet_size=1, img_size=int(_data_options(cfg)["image_res"]))
        tcfg = TeacherConfig(vision=vis, kind="internvl_clip", return_layer=int(o["return_layer"]),
                             return_interval=float(o["return_interval"]))
        text = text_config(o["text_encoder"], vis.embed_dim)
        model = ImageTextTeacher(ImageTextTeacherConfig(vision=tcfg, text=text, embed_dim=int(o["embed_dim"]),
                                                        temp=float(o["temp"]), text_pool=o["text_pool"],
                                                        max_txt_len=int(o["max_txt_l"]),
                                                        add_sep=o["text_encoder"] == "minilm"))
        if o["text_pretrained"] and o["text_encoder"] == "minilm":
            from ..checkpoint.bert import load_hf_bert
            from ..models.tokenizer import default_vocab_path

            load_hf_bert(model.text_encoder, default_vocab_path().parent)
        if o["freeze_text"]:  # only the text projection adapts (as InternVideo2-CLIP freezes its text tower)
            model.text_encoder.requires_grad_(False)
        self.tokenizer = model.tokenizer
        return model

    def build_train_dataset(self, cfg):
        return _video_dataset(cfg)

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

    def validate(self, cfg) -> None:
        o = _check_options(cfg, MAE_OPTIONS)
        if o["mask_type"] not in ("tube", "random"):
            raise ConfigError("task.options.mask_type", f"must be 'tube' or 'random', got {o['mask_type']!r}")
        _data_options(cfg)

    def build_model(self, cfg) -> nn.Module:
        from ..models.config import TeacherConfig
        from ..models.teachers import VideoMAETeacher, VideoMAETeacherConfig

        o = _check_options(cfg, MAE_OPTIONS)
        self.mask_type = o["mask_type"]
        vis, rest = vision_from_model_cfg(cfg, default_preset="videomae-g14")
        if rest:
            raise ConfigError(f"model.overrides.{sorted(rest)[0]}", "not a VisionConfig field")
        d = _data_options(cfg)
        vis = vis.replace(num_frames=int(d["num_frames"]), img_size=int(d["image_res"]))
        enc = TeacherConfig(vision=vis, kind="videomae", return_layer=int(o["return_layer"]),
                            return_interval=float(o["return_interval"]))
        return VideoMAETeacher(VideoMAETeacherConfig(encoder=enc, decoder_dim=int(o["decoder_dim"]),
                                                     decoder_depth=int(o["decoder_depth"]),
                                                     decoder_heads=int(o["decoder_heads"]),
                                                     mask_ratio=float(o["mask_ratio"]),
                                                     norm_pix_loss=bool(o["norm_pix_loss"]),
                                                     motion_weight=float(o["motion_weight"])))

    def build_train_dataset(self, cfg):
        return _video_dataset(cfg)

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
