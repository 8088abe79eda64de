"""Stage 1 (masked video token reconstruction from two teachers, spec §5.1-5.3) and distillation (§5.5).

``stage1``: the student (:class:`~internvideo2.models.variants.InternVideo2Pretrain` with CLIP and MAE
decoders) sees a masked clip and aligns
  * its CLIP decoders' outputs on chosen layers with the CLIP teacher's tokens at the visible positions,
  * ``final_clip_decoder(pool(x))`` with the teacher's pooled feature,
  * its MAE decoders' outputs with the MAE teacher's tokens at the visible positions,
all with ``2 - 2 cos``. As in the official recipe the MAE teacher (tubelet 2) sees all ``2T`` frames while
the student and the CLIP teacher see every other frame (``T`` frames), so both token grids coincide.
Masking: ``attention`` (the official mode: the CLIP teacher's pooling attention per frame, multinomial
sampling of the visible tokens), ``tube`` or ``random``; ratio 0.8.

``distill``: a small student aligned to a larger InternVideo2 vision encoder (whole-video teacher,
attention masking over the whole clip, MLP decoders), no MAE term.

Teachers are frozen, loaded from ``task.options.clip_teacher`` / ``mae_teacher`` / ``teacher``: folders
saved by :func:`~internvideo2.save_pretrained` (a trained ``image_text_teacher`` / ``videomae_teacher`` /
``teacher`` / ``stage2`` / ``pretrain`` model) — any module returning
:class:`~internvideo2.models.variants.TeacherOutput` can serve.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from ..errors import ConfigError
from ..objectives.losses import distill_loss, stage1_loss, visible_targets
from ..objectives.masking import attention_mask, random_mask, tube_mask
from .common import pretrain_config, resolve_vision, step_generator, to_model_layout
from .tasks import StepContext, Task, register_task
from .teachers import TeacherDataOptions, video_dataset

log = logging.getLogger("internvideo2.train.stage1")


@dataclass
class _MaskOptions:
    mask_type: Literal["attention", "tube", "random"] = "attention"
    mask_ratio: float = 0.8
    clip_loss_ratio: tuple[float, float] = (1.0, 1.0)
    sample_visible: bool = True

    def __post_init__(self):
        if not 0.0 <= self.mask_ratio < 1.0:
            raise ConfigError("mask_ratio", "must be in [0, 1)")


@dataclass
class Stage1Options(_MaskOptions):
    """``task.options`` of ``stage1``.

    Attributes:
        clip_teacher / mae_teacher: folders of the trained teachers (``image_text_teacher`` /
            ``videomae_teacher``; any saved model whose backbone is a TeacherModel of that kind).
        random_teachers: smoke runs only: tiny RANDOM teachers instead of trained ones.
        mask_type / mask_ratio / sample_visible: ``attention`` (the official mode: the CLIP teacher's pooling
            attention per frame; multinomial sampling of the visible tokens unless ``sample_visible`` is
            false), ``tube`` or ``random``; ratio 0.8.
        clip_loss_ratio / mae_loss_ratio: weights of the middle-layer and final CLIP terms and of the MAE term.
        clip_return_layer / clip_teacher_return_interval / mae_return_layer / mae_teacher_return_interval:
            teacher layers returned as targets (official names); None keeps the teacher folder's own setting.
        cache_teacher_outputs: keep each clip's (frozen) teacher outputs after first use; exact only when a
            clip's input never changes (``data.options.sample_type: middle`` and ``augment: none``, checked).
    """

    clip_teacher: str | None = None
    mae_teacher: str | None = None
    random_teachers: bool = False
    mae_loss_ratio: float = 1.0
    clip_return_layer: int | None = None
    clip_teacher_return_interval: float | None = None
    mae_return_layer: int | None = None
    mae_teacher_return_interval: float | None = None
    cache_teacher_outputs: bool = False

    def __post_init__(self):
        super().__post_init__()
        for key in ("clip_teacher", "mae_teacher"):
            if not getattr(self, key) and not self.random_teachers:
                raise ConfigError(key, "a teacher checkpoint folder is required")
        for key in ("clip_return_layer", "mae_return_layer"):
            if getattr(self, key) is not None and getattr(self, key) < 1:
                raise ConfigError(key, "must be a positive integer or null")
        for key in ("clip_teacher_return_interval", "mae_teacher_return_interval"):
            if getattr(self, key) is not None and not getattr(self, key) > 0:
                raise ConfigError(key, "must be > 0 or null")


@dataclass
class DistillOptions(_MaskOptions):
    """``task.options`` of ``distill`` (spec §5.5).

    Attributes:
        teacher: folder of the InternVideo2 encoder to distil (any saved model with an attention pool).
        random_teachers: smoke runs only: a tiny RANDOM teacher instead of a trained one.
        teacher_return_layer / teacher_return_interval: the teacher layers used as targets (official 6, 3.34).
        mask_type / mask_ratio / clip_loss_ratio / sample_visible: as stage 1 (attention over the whole clip).
    """

    teacher: str | None = None
    random_teachers: bool = False
    teacher_return_layer: int = 6
    teacher_return_interval: float = 3.34

    def __post_init__(self):
        super().__post_init__()
        if not self.teacher and not self.random_teachers:
            raise ConfigError("teacher", "a teacher checkpoint folder is required")


def load_teacher(path: str, field: str, kind: str | None = None, return_layer: int | None = None,
                 return_interval: float | None = None) -> nn.Module:
    """A frozen teacher from a saved folder: an ``image_text_teacher`` gives its vision tower, a
    ``videomae_teacher`` its encoder, a ``stage2`` / ``pretrain`` / ``vision`` model is wrapped as an
    InternVideo2 whole-video teacher (core + attention pool) returning ``return_layer`` layers."""
    from ..checkpoint.io import load_state_dict_strict
    from ..checkpoint.loader import load_model
    from ..models.config import TeacherConfig
    from ..models.variants import TeacherModel

    if not path:
        raise ConfigError(field, "a teacher checkpoint folder is required")
    try:
        model = load_model(path)
    except Exception as e:
        raise ConfigError(field, f"cannot load teacher {path!r}: {e}") from e
    backbone = model.vision_backbone
    if isinstance(backbone, TeacherModel):  # a trained teacher (image_text_teacher, videomae_teacher, teacher)
        teacher = backbone
    else:  # any other InternVideo2 encoder serves as a whole-video teacher (core + attention pool)
        if backbone.clip_projector is None:
            raise ConfigError(field, f"{path!r}: its encoder has no attention pool, which a teacher needs")
        teacher = TeacherModel(TeacherConfig(vision=backbone.cfg, kind="internvideo2", return_layer=return_layer or 1,
                                             return_interval=return_interval or 1.0))
        core = {k: v for k, v in backbone.state_dict().items() if k in teacher.state_dict()}
        load_state_dict_strict(teacher, core, source=f"{path} (vision core)")
    if kind is not None and teacher.config.kind != kind:
        raise ConfigError(field, f"expected a {kind!r} teacher, {path!r} gives {teacher.config.kind!r}")
    teacher.eval().requires_grad_(False)
    return teacher


def _set_return_layers(teacher: nn.Module, layers, interval, field: str) -> nn.Module:
    """Make a loaded teacher return ``layers`` layers ``depth-1-int(i*interval)`` (None keeps its own)."""
    import dataclasses

    if layers is None and interval is None:
        return teacher
    cfg = teacher.config
    cfg = dataclasses.replace(cfg, return_layer=cfg.return_layer if layers is None else int(layers),
                              return_interval=cfg.return_interval if interval is None else float(interval))
    idx = cfg.return_index
    if min(idx) < 0:
        raise ConfigError(field, f"layers {idx} outside the teacher's {cfg.vision.depth} blocks")
    teacher.config, teacher.return_index = cfg, idx
    return teacher


def _mask(kind: str, ratio: float, B: int, grid, idx, seed: int, step: int, attn=None, sample: bool = True,
          per_frame: bool = True):
    """Per-sample masks ``[B, 1+N]`` drawn from (seed, step, sample index): rank-independent."""
    T, H, W = grid
    rows = []
    for j, i in enumerate(idx.tolist()):
        g = step_generator(seed, step, 0, 0, f"s1mask/{i}")
        if kind == "random":
            rows.append(random_mask(1, T * H * W, ratio, g))
        elif kind == "tube":
            rows.append(tube_mask(1, T, H * W, ratio, g))
        else:
            a = attn[j * T:(j + 1) * T] if per_frame else attn[j:j + 1]
            rows.append(attention_mask(a.float(), ratio, batch=1, generator=g, sample=sample))
    return torch.cat(rows)


def _random_teachers(frames: int, size: int):
    """Tiny RANDOM teachers with the right interfaces, for smoke runs of the stage-1 recipe only."""
    from ..models.config import TeacherConfig, vision_config
    from ..models.variants import TeacherModel

    log.warning("task.options.random_teachers: stage 1 from RANDOM tiny teachers (smoke runs only)")
    clip = TeacherModel(TeacherConfig(vision=vision_config("internvl-c-6b", embed_dim=64, depth=2, num_heads=4,
                                                           img_size=size, clip_embed_dim=32, attn_pool_heads=4),
                                      kind="internvl_clip", return_layer=2))
    mae = TeacherModel(TeacherConfig(vision=vision_config("videomae-g14", embed_dim=48, depth=2, num_heads=4,
                                                          img_size=size, num_frames=frames), kind="videomae",
                                     return_layer=2))
    return clip.eval().requires_grad_(False), mae.eval().requires_grad_(False)


@register_task("stage1")
class Stage1Task(Task):
    """Stage 1 with a CLIP teacher and a MAE teacher. The MAE teacher (tubelet 2) sees all
    ``data.options.num_frames`` frames, the student and the CLIP teacher every other one."""

    options_class = Stage1Options
    data_options_class = TeacherDataOptions

    def resolve(self, cfg):
        """``(options, data options, student vision config, other overrides, input size)``."""
        o, d = self.options(cfg), self.data_options(cfg)
        vis, over, inp = resolve_vision(cfg, d, frames_per_model_frame=2)
        return o, d, vis, over, inp

    def validate(self, cfg) -> None:
        o, d, _, _, _ = self.resolve(cfg)
        if o.cache_teacher_outputs and (d.sample_type != "middle" or d.augment != "none"):
            raise ConfigError("task.options.cache_teacher_outputs", "needs deterministic inputs: data.options."
                                                                    "sample_type: middle and augment: none")

    def build_model(self, cfg) -> nn.Module:
        from ..models.variants import InternVideo2Pretrain

        o, d, vis, over, inp = self.resolve(cfg)
        if o.random_teachers:
            self.clip_teacher, self.mae_teacher = _random_teachers(inp.data_frames, inp.img_size)
        else:
            self.clip_teacher = load_teacher(o.clip_teacher, "task.options.clip_teacher", "internvl_clip")
            self.mae_teacher = load_teacher(o.mae_teacher, "task.options.mae_teacher", "videomae")
        _set_return_layers(self.clip_teacher, o.clip_return_layer, o.clip_teacher_return_interval,
                           "task.options.clip_return_layer")
        _set_return_layers(self.mae_teacher, o.mae_return_layer, o.mae_teacher_return_interval,
                           "task.options.mae_return_layer")
        ct, mt = self.clip_teacher.config, self.mae_teacher.config
        if mt.vision.grid != vis.grid:
            raise ConfigError("data.options.num_frames", f"the MAE teacher's token grid {mt.vision.grid} must equal "
                                                         f"the student's {vis.grid} (teacher tubelet 2 on 2T frames)")
        pcfg = pretrain_config(vis, over, clip_teacher_embed_dim=ct.vision.embed_dim,
                               clip_teacher_final_dim=ct.vision.clip_embed_dim, clip_return_layer=ct.return_layer,
                               mae_teacher_embed_dim=mt.vision.embed_dim, mae_return_layer=mt.return_layer)
        if len(pcfg.clip_student_index) != ct.return_layer or len(pcfg.mae_student_index) != mt.return_layer:
            raise ConfigError("model.overrides", "student and teachers must return the same number of layers")
        return InternVideo2Pretrain(pcfg)

    def build_train_dataset(self, cfg):
        _, d, _, _, inp = self.resolve(cfg)
        return video_dataset(cfg, d, inp)
    def collate(self, samples):
        from ..data.datasets import collate_skip_bad

        return collate_skip_bad(samples)

    def _teacher_outputs(self, full, video, idx, use_cache: bool):
        """Teacher outputs for a batch; with ``use_cache`` each clip's outputs are kept after first use."""
        from ..models.variants import TeacherOutput

        cache = self.__dict__.setdefault("_tcache", {})
        keys = [int(i) for i in idx]
        if use_cache and all(k in cache for k in keys):
            rows = [cache[k] for k in keys]
            return (TeacherOutput(torch.stack([r[0] for r in rows], 1), torch.stack([r[1] for r in rows]),
                                  torch.cat([r[2] for r in rows])),
                    TeacherOutput(torch.stack([r[3] for r in rows], 1), None, None))
        ct, mt = self.clip_teacher(video), self.mae_teacher(full)
        if use_cache:
            T = video.shape[2]
            for j, k in enumerate(keys):
                cache[k] = (ct.features[:, j].clone(), ct.pooled[j].clone(), ct.attn[j * T:(j + 1) * T].clone(),
                            mt.features[:, j].clone())
        return ct, mt

    def training_step(self, model, batch, ctx: StepContext):
        o = self.options(ctx.cfg)
        for t in (self.clip_teacher, self.mae_teacher):
            t.to(ctx.device)
        full = to_model_layout(batch["video"])  # [B, 3, 2T, H, W]
        video = full[:, :, ::2]
        B = video.shape[0]
        with torch.no_grad():
            ct, mt = self._teacher_outputs(full, video, batch["idx"], o.cache_teacher_outputs)
            grid = ctx.unwrapped.cfg.grid
            mask = _mask(o.mask_type, o.mask_ratio, B, grid, batch["idx"], ctx.cfg.train.seed, ctx.step,
                         attn=ct.attn, sample=o.sample_visible).to(ctx.device)
            clip_target = visible_targets(ct.features, mask)
            mae_target = visible_targets(mt.features, mask[:, 1:])
        out = model(video, mask)
        return stage1_loss(out.clip_align, clip_target, out.final_align, ct.pooled, out.mae_align, mae_target,
                           clip_ratio=o.clip_loss_ratio, mae_ratio=o.mae_loss_ratio)


@register_task("distill")
class DistillTask(Task):
    """Distillation of a small student from a larger InternVideo2 vision encoder (spec §5.5)."""

    options_class = DistillOptions
    data_options_class = TeacherDataOptions

    def resolve(self, cfg):
        o, d = self.options(cfg), self.data_options(cfg)
        vis, over, inp = resolve_vision(cfg, d)
        return o, d, vis, over, inp

    def validate(self, cfg) -> None:
        self.resolve(cfg)

    def build_model(self, cfg) -> nn.Module:
        from ..models.variants import InternVideo2Pretrain

        o, d, vis, over, inp = self.resolve(cfg)
        if o.random_teachers:
            from ..models.config import TeacherConfig, vision_config
            from ..models.variants import TeacherModel

            log.warning("task.options.random_teachers: distilling from a RANDOM tiny teacher (smoke runs only)")
            self.teacher = TeacherModel(TeacherConfig(
                vision=vision_config("tiny", num_frames=inp.data_frames, img_size=inp.img_size),
                kind="internvideo2", return_layer=o.teacher_return_layer,
                return_interval=o.teacher_return_interval)).eval().requires_grad_(False)
        else:
            self.teacher = load_teacher(o.teacher, "task.options.teacher", "internvideo2", o.teacher_return_layer,
                                        o.teacher_return_interval)
        tc = self.teacher.config
        if tc.vision.grid != vis.grid:
            raise ConfigError("data.options.num_frames", f"teacher grid {tc.vision.grid} != student grid {vis.grid}")
        pcfg = pretrain_config(vis, over, clip_teacher_embed_dim=tc.vision.embed_dim,
                               clip_teacher_final_dim=tc.vision.clip_embed_dim, clip_return_layer=tc.return_layer,
                               clip_decoder="mlp")
        return InternVideo2Pretrain(pcfg)

    def build_train_dataset(self, cfg):
        _, d, _, _, inp = self.resolve(cfg)
        return video_dataset(cfg, d, inp)

    def collate(self, samples):
        from ..data.datasets import collate_skip_bad

        return collate_skip_bad(samples)

    def training_step(self, model, batch, ctx: StepContext):
        o = self.options(ctx.cfg)
        self.teacher.to(ctx.device)
        video = to_model_layout(batch["video"])
        with torch.no_grad():
            t = self.teacher(video)
            mask = _mask(o.mask_type, o.mask_ratio, video.shape[0], ctx.unwrapped.cfg.grid, batch["idx"],
                         ctx.cfg.train.seed, ctx.step, attn=t.attn, sample=o.sample_visible,
                         per_frame=False).to(ctx.device)
            target = visible_targets(t.features, mask)
        out = model(video, mask)
        return distill_loss(out.clip_align, target, out.final_align, t.pooled, ratio=o.clip_loss_ratio)
