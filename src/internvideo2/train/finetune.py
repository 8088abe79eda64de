"""Action recognition: full fine-tuning, linear probing and attentive probing (official-spec §6).

``task.name: finetune``. The classifier (:class:`~internvideo2.models.variants.InternVideo2Classifier`)
is built from ``model.preset`` + ``model.overrides`` and initialised from ``model.pretrained`` (any
vision model of this package or an official file; the head stays freshly initialised and is reported).

Options (``task.options``): ``mode`` = ``full`` | ``linear`` (only fc_norm + head train) | ``attentive``
(also the attention-pool projector), ``head`` = ``linear`` | ``ap``, ``label_smoothing`` (0.1),
``mixup`` (0.8), ``cutmix`` (1.0), ``mixup_prob`` (1.0), ``mixup_switch_prob`` (0.5) — the official
defaults, which no official script overrides, probing included (P37) — and the evaluation protocol
``test_num_clips`` x ``test_num_crops``. Mixup/CutMix mix within the local batch ("batch" mode), with
one box for the whole clip. Checkpoints: ``pretrained_extra`` (official ``--finetune_extra``) loads a second
checkpoint's vision weights over ``model.pretrained``'s; ``k710_head_transfer`` starts the head from the
first ``num_classes`` rows of a K710 checkpoint's head (official K710 -> K400, P39).

``open_block_num`` (official ``--open_block_num``) also trains the last k blocks when probing.

Data (``data.options``): ``corpus: synth`` (``<split>_cls.csv`` of the synthetic world) or ``annotation``
(a classification list) + ``video_root``; ``eval_split`` / ``eval_annotation`` for the test views. Training
augmentation (spec §6.2, official ``_aug_frame``): ``rand_augment`` (video RandAugment, official ``--aa``) on
the decoded frames -> the crop/flip of ``augment`` -> normalisation -> ``random_erasing`` (official
``--reprob``); both off by default, on in ``configs/official``. ``data.num_sample`` (official
``--num_sample``) > 1 augments every loaded video that many times and trains on all copies (the batch holds
``batch_size * num_sample`` clips; the lr is scaled by it, see ``optim.lr_scaling``).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..data.augment import RandomErasing, VideoRandAugment, add_augmentation, parse_rand_augment
from ..errors import ConfigError
from .common import (
    DataOptions,
    build_transform,
    load_vision_weights,
    no_other_overrides,
    resolve_vision,
    step_generator,
    synth_corpus,
    to_model_layout,
)
from .tasks import StepContext, Task, register_task

log = logging.getLogger("internvideo2.train.finetune")


@dataclass
class FinetuneOptions:
    """``task.options`` of ``finetune`` (the official defaults, which no official script overrides, P37).

    Attributes:
        num_classes: head outputs (required for an annotation corpus; the synthetic world has 14).
        mode: ``full`` | ``linear`` (only fc_norm + head train) | ``attentive`` (also the attention pool).
        head: ``linear`` | ``ap``; init_scale / fc_drop_rate: the head's init scale and dropout.
        label_smoothing / mixup / cutmix / mixup_prob / mixup_switch_prob: :func:`mix_batch`.
        test_num_clips / test_num_crops / eval_num: the multi-view test during training.
        pretrained_extra: official ``--finetune_extra``: a second checkpoint (e.g. stage 2) whose vision weights
            are loaded over ``model.pretrained``'s.
        k710_head_transfer: initialise the head from the first ``num_classes`` rows of the checkpoint's 710-class
            head (P39: K710's label order starts with the K400 classes).
        open_block_num: probing (``linear`` / ``attentive``) also trains the last ``open_block_num`` transformer
            blocks (official ``--open_block_num``; 0 = none). Counted from the model's real depth (the official
            script assumes 48 blocks for '6B' names and 40 otherwise, P12).
    """

    num_classes: int | None = None
    mode: Literal["full", "linear", "attentive"] = "full"
    head: str = "linear"
    label_smoothing: float = 0.1
    mixup: float = 0.8
    cutmix: float = 1.0
    mixup_prob: float = 1.0
    mixup_switch_prob: float = 0.5
    init_scale: float = 0.001
    fc_drop_rate: float = 0.0
    test_num_clips: int = 1
    test_num_crops: int = 1
    eval_num: int | None = None
    pretrained_extra: str | None = None
    k710_head_transfer: bool = False
    open_block_num: int = 0

    def __post_init__(self):
        for k in ("label_smoothing", "mixup_prob", "mixup_switch_prob"):
            if not 0.0 <= getattr(self, k) <= 1.0:
                raise ConfigError(k, "must be in [0, 1]")
        if self.open_block_num < 0:
            raise ConfigError("open_block_num", f"must be >= 0, got {self.open_block_num}")
        if self.open_block_num and self.mode == "full":
            raise ConfigError("open_block_num", "only for mode linear or attentive (full mode trains every block)")


@dataclass
class FinetuneDataOptions(DataOptions):
    """``data.options`` of ``finetune``: ``corpus: synth`` (``<split>_cls.csv`` of the synthetic world) or a
    classification list in ``annotation`` (+ ``eval_annotation``), and the fine-tuning augmentation.

    Attributes (besides :class:`~internvideo2.train.common.DataOptions`'):
        rand_augment: a timm RandAugment string (official ``--aa``: ``rand-m7-n4-mstd0.5-inc1`` fine-tuning,
            ``rand-m5-n2-mstd0.25-inc1`` probing; :func:`~internvideo2.data.augment.parse_rand_augment`), applied
            to the decoded frames with one draw per clip; None = off.
        rand_augment_interpolation: its geometric ops' resampling (official ``--train_interpolation`` bicubic).
        random_erasing: probability of RandomErasing on the normalised clip (official ``--reprob`` 0.25); 0 = off.
        random_erasing_mode / random_erasing_count: official ``--remode`` (``pixel``) / ``--recount`` (1).
        random_erasing_cube: True (what the official datasets get): one coin and one box for the whole clip,
            fresh noise per frame; False: a coin and a box per frame (timm's per-image erasing).
    """

    rand_augment: str | None = None
    rand_augment_interpolation: Literal["bilinear", "bicubic", "random"] = "bicubic"
    random_erasing: float = 0.0
    random_erasing_mode: Literal["const", "rand", "pixel"] = "pixel"
    random_erasing_count: int = 1
    random_erasing_cube: bool = True

    def __post_init__(self):
        super().__post_init__()
        if self.rand_augment is not None:
            parse_rand_augment(self.rand_augment, "rand_augment")
        if not 0.0 <= self.random_erasing <= 1.0:
            raise ConfigError("random_erasing", f"a probability in [0, 1], got {self.random_erasing}")
        if self.random_erasing_count < 1:
            raise ConfigError("random_erasing_count", f"must be >= 1, got {self.random_erasing_count}")

    def resolved(self, output_dir):
        d = super().resolved(output_dir)
        d.check_annotation()
        return d


def build_finetune_transform(d: FinetuneDataOptions, size: int):
    """Training transform of the official ``_aug_frame`` (spec §6.2): RandAugment on the decoded uint8
    frames -> the crop/flip of ``d.augment`` -> ImageNet normalisation -> RandomErasing. ``frames uint8
    [T, H, W, 3], rng -> float32 [T, 3, size, size]``."""
    ra = (VideoRandAugment(parse_rand_augment(d.rand_augment, "data.options.rand_augment"),
                           interpolation=d.rand_augment_interpolation) if d.rand_augment else None)
    erasing = (RandomErasing(d.random_erasing, d.random_erasing_mode, max_count=d.random_erasing_count,
                             cube=d.random_erasing_cube) if d.random_erasing > 0 else None)
    return add_augmentation(build_transform(d, size, True), ra, erasing)


def mix_batch(x: Tensor, y: Tensor, num_classes: int, o: FinetuneOptions, gen: np.random.Generator
              ) -> tuple[Tensor, Tensor]:
    """Mixup / CutMix on a video batch ``[B, 3, T, H, W]`` with label smoothing; returns soft targets
    ``[B, K]``. One lambda per batch, pairs ``i`` with ``B-1-i``; the CutMix box is shared over time and
    lambda is corrected to the box's true area."""
    off = float(o.label_smoothing) / num_classes
    onehot = F.one_hot(y, num_classes).float() * (1.0 - float(o.label_smoothing)) + off
    use_mix = (o.mixup > 0 or o.cutmix > 0) and gen.random() < float(o.mixup_prob)
    if not use_mix or x.shape[0] < 2:
        return x, onehot
    cut = o.cutmix > 0 and (o.mixup <= 0 or gen.random() < float(o.mixup_switch_prob))
    flipped = x.flip(0)
    if cut:
        lam = float(gen.beta(o.cutmix, o.cutmix))
        H, W = x.shape[-2:]
        r = np.sqrt(1.0 - lam)
        ch, cw = int(H * r), int(W * r)
        cy, cx = int(gen.integers(H)), int(gen.integers(W))
        y0, y1 = np.clip(cy - ch // 2, 0, H), np.clip(cy + ch // 2, 0, H)
        x0, x1 = np.clip(cx - cw // 2, 0, W), np.clip(cx + cw // 2, 0, W)
        x = x.clone()
        x[..., y0:y1, x0:x1] = flipped[..., y0:y1, x0:x1]
        lam = 1.0 - (y1 - y0) * (x1 - x0) / float(H * W)
    else:
        lam = float(gen.beta(o.mixup, o.mixup))
        x = x * lam + flipped * (1.0 - lam)
    return x, onehot * lam + onehot.flip(0) * (1.0 - lam)


@register_task("finetune")
class FinetuneTask(Task):
    """Fine-tuning / probing of an action classifier."""

    options_class = FinetuneOptions
    data_options_class = FinetuneDataOptions

    def resolve(self, cfg):
        """``(options, data options, vision config, input size)``."""
        o, d = self.options(cfg), self.data_options(cfg)
        vis, rest, inp = resolve_vision(cfg, d)
        no_other_overrides(rest)
        return o, d, vis, inp

    def validate(self, cfg) -> None:
        o, _, vis, _ = self.resolve(cfg)
        if o.k710_head_transfer and not cfg.model.pretrained:
            raise ConfigError("task.options.k710_head_transfer", "needs model.pretrained (a K710 classifier)")
        if o.open_block_num > vis.depth:
            raise ConfigError("task.options.open_block_num", f"{o.open_block_num} blocks, the model has {vis.depth}")

    def _num_classes(self, cfg) -> int:
        o, d = self.options(cfg), self.data_options(cfg)
        if o.num_classes:
            return o.num_classes
        if d.corpus == "synth":
            from ..data.synth import classes_table

            return len(classes_table())
        raise ConfigError("task.options.num_classes", "required for an annotation corpus")

    def build_model(self, cfg) -> nn.Module:
        from ..models.config import ClassifierConfig
        from ..models.variants import InternVideo2Classifier

        o, _, vis, _ = self.resolve(cfg)
        model = InternVideo2Classifier(ClassifierConfig(vision=vis, num_classes=self._num_classes(cfg), head=o.head,
                                                        fc_drop_rate=o.fc_drop_rate, init_scale=o.init_scale))
        if o.k710_head_transfer and not cfg.model.pretrained:
            raise ConfigError("task.options.k710_head_transfer", "needs model.pretrained (a K710 classifier)")
        if cfg.model.pretrained:
            rows = model.config.num_classes if o.k710_head_transfer else None
            self.init_report = load_vision_weights(model, cfg.model.pretrained, head_rows=rows)
        if o.pretrained_extra:
            self.extra_report = load_vision_weights(model, o.pretrained_extra, "task.options.pretrained_extra")
        if o.mode != "full":
            trainable = ("fc_norm", "head", "extra_mlp") + (("clip_projector",) if o.mode == "attentive" else ())
            depth = len(model.blocks)
            if o.open_block_num > depth:
                raise ConfigError("task.options.open_block_num", f"{o.open_block_num} blocks, the model has {depth}")
            first_open = depth - o.open_block_num  # official: blocks depth-k .. depth-1 stay trainable
            for name, p in model.named_parameters():
                parts = name.split(".")
                open_block = parts[0] == "blocks" and int(parts[1]) >= first_open
                p.requires_grad_(parts[0] in trainable or open_block)
        return model

    def _dataset(self, cfg, train: bool):
        from ..data.datasets import VideoClassificationDataset

        _, d, _, inp = self.resolve(cfg)
        if d.corpus == "synth":
            root = synth_corpus(d)
            split = "train" if train else d.eval_split
            ann, video_root = root / f"{split}_cls.csv", root
        else:
            ann = d.annotation if train else d.eval_annotation
            video_root = d.video_root
            if ann is None:
                return None
        # evaluation reads whole videos (ds.whole_video) and applies the multi-view test itself
        transform = build_finetune_transform(d, inp.img_size) if train else build_transform(d, inp.img_size, False)
        if train:
            log.info("training transform: %r, num_sample %d", transform, cfg.data.num_sample)
        return VideoClassificationDataset(ann, video_root, num_frames=inp.data_frames, sample=d.sample_type,
                                          transform=transform, seed=cfg.train.seed, cache=bool(d.cache),
                                          num_sample=cfg.data.num_sample if train else 1)

    #: repeated-augmentation copies per loaded video (``data.num_sample``), set by build_train_dataset
    num_sample: int = 1

    def build_train_dataset(self, cfg):
        self.num_sample = int(cfg.data.num_sample)
        return self._dataset(cfg, train=True)

    def collate(self, samples):
        """Drop bad samples; with ``data.num_sample`` > 1 flatten the copies into ``B * num_sample`` clips."""
        from ..data.datasets import collate_skip_bad, flatten_repeated

        return flatten_repeated(collate_skip_bad(samples), self.num_sample)

    def training_step(self, model, batch, ctx: StepContext) -> dict[str, Tensor]:
        o = self.options(ctx.cfg)
        x = to_model_layout(batch["video"])
        y = batch["label"].long()
        seed = int(step_generator(ctx.cfg.train.seed, ctx.step, ctx.rank, ctx.micro_step, "mix").initial_seed())
        x, target = mix_batch(x, y, ctx.unwrapped.config.num_classes, o, np.random.default_rng(seed))
        logits = model(x)
        loss = torch.sum(-target * F.log_softmax(logits.float(), dim=-1), dim=-1).mean()
        acc = (logits.argmax(-1) == y).float().mean()
        return {"loss": loss, "train_top1": acc.detach() * 100}

    def evaluate(self, model, ctx: StepContext) -> dict[str, float] | None:
        from ..eval.classification import evaluate_multiview

        o, _, _, inp = self.resolve(ctx.cfg)
        if getattr(self, "_eval", None) is None:
            ds = self._dataset(ctx.cfg, train=False)
            if ds is None:
                self._eval = False
                return None
            n = len(ds) if not o.eval_num else min(o.eval_num, len(ds))
            videos = [ds.whole_video(i) for i in range(n)]
            self._eval = (videos, [ds.records[i].label for i in range(n)])
        if self._eval is False:
            return None
        videos, labels = self._eval
        res = evaluate_multiview(ctx.unwrapped, videos, labels, inp.data_frames, o.test_num_clips, o.test_num_crops,
                                 inp.img_size)
        log.info("multi-view test, %s, %d videos: top-1 %.2f, top-5 %.2f, mean class accuracy %.2f", res["views"],
                 res["num_videos"], res["top1"], res["top5"], res["mean_class_accuracy"])
        return {"top1": res["top1"], "top5": res["top5"], "mean_class_accuracy": res["mean_class_accuracy"]}
