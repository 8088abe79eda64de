"""AdamW parameter groups (layer-wise lr decay, weight-decay exclusions) and per-iteration lr schedules.

Official rules (spec §5.4, §6.2, §7.1):

* no weight decay for 1-D parameters, names ending in ``.bias`` and the model's ``no_weight_decay()``
  names (exact match). We also exempt 0-D parameters (a scalar temperature); the official code relies on
  listing them in ``no_weight_decay()`` (``temp``), which gives the same result for every official model.
* layer-wise decay: a parameter with layer id ``i`` (0..L+1) gets ``lr_scale = layer_decay ** (L + 1 - i)``.
* the schedule sets ``group["lr"] = lr(step) * group["lr_scale"]`` at every optimizer step.
"""

from __future__ import annotations

import fnmatch
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

import torch
from torch import nn

from internvideo2.errors import ConfigError

__all__ = [
    "build_param_groups",
    "build_optimizer",
    "lr_scale_factor",
    "Schedule",
    "CosineSchedule",
    "CosineMultiSchedule",
    "ConstantSchedule",
    "build_schedule",
    "cosine_scheduler",
]


def build_param_groups(
    named_params: Iterable[tuple[str, nn.Parameter]],
    weight_decay: float,
    layer_decay: float = 1.0,
    layer_id: Callable[[str], int] | None = None,
    num_layers: int | None = None,
    no_weight_decay: Iterable[str] = (),
    lr_scales: Mapping[str, float] | None = None,
) -> list[dict]:
    """Split trainable parameters into optimizer groups.

    Each group: ``params``, ``names``, ``weight_decay``, ``lr_scale``, ``group_name``
    (``layer_<id>_{decay,no_decay}`` or ``{decay,no_decay}``). Order follows ``named_params``.
    ``lr_scales`` maps glob patterns of parameter names to an extra lr multiplier (the official
    ``different_lr``, e.g. ``{"text_encoder.*": 0.05}`` for a pretrained text tower); the matching
    pattern applies (the longest, i.e. most specific, when several match), and its group name gets an
    ``@pattern`` suffix.
    """
    patterns = list((lr_scales or {}).items())
    skip = set(no_weight_decay)
    use_layers = layer_id is not None and num_layers is not None
    groups: dict[str, dict] = {}
    for name, p in named_params:
        if not p.requires_grad:
            continue
        if p.ndim <= 1 or name.endswith(".bias") or name in skip:
            kind, wd = "no_decay", 0.0
        else:
            kind, wd = "decay", float(weight_decay)
        if use_layers:
            lid = int(layer_id(name))
            if not 0 <= lid <= num_layers + 1:
                raise ValueError(f"layer id {lid} of {name!r} is outside [0, {num_layers + 1}]")
            scale = float(layer_decay) ** (num_layers + 1 - lid)
            gname = f"layer_{lid}_{kind}"
        else:
            scale, gname = 1.0, kind
        hits = [(len(p), p, x) for p, x in patterns if fnmatch.fnmatchcase(name, p)]
        if hits:  # the most specific (longest) matching pattern applies, whatever the order of the mapping
            _, pattern, extra = max(hits, key=lambda h: h[0])
            scale, gname = scale * float(extra), f"{gname}@{pattern}"
        g = groups.setdefault(
            gname, {"group_name": gname, "weight_decay": wd, "lr_scale": scale, "params": [], "names": []}
        )
        g["params"].append(p)
        g["names"].append(name)
    return list(groups.values())


def build_optimizer(
    groups: list[dict], lr: float, betas: tuple[float, float], eps: float
) -> torch.optim.AdamW:
    """AdamW over ``groups`` (decoupled weight decay, as DeepSpeed Adam with adam_w_mode)."""
    clean = [{k: v for k, v in g.items() if k != "names"} for g in groups]
    for g in clean:
        g["lr"] = lr * g["lr_scale"]
    return torch.optim.AdamW(clean, lr=lr, betas=tuple(betas), eps=eps)


def lr_scale_factor(rule: str, global_batch_size: int, num_sample: int, base: int) -> float:
    """Official linear scaling ``global_batch * num_sample / base`` (``rule='linear'``), else 1."""
    return global_batch_size * num_sample / base if rule == "linear" else 1.0


# ----------------------------------------------------------------------------------------------------------
# schedules
# ----------------------------------------------------------------------------------------------------------
class Schedule:
    """Learning rate as a pure function of the optimizer step (so resuming needs only the step)."""

    total_steps: int

    def __call__(self, step: int) -> float:  # pragma: no cover - interface
        raise NotImplementedError

    def values(self) -> list[float]:
        return [self(i) for i in range(self.total_steps)]


@dataclass
class CosineSchedule(Schedule):
    """Official single-modality ``utils.cosine_scheduler``: ``np.linspace(start_warmup_value, base,
    warmup)`` followed by ``final + (base - final)(1 + cos(pi i / (total - warmup))) / 2``."""

    base: float
    final: float
    total_steps: int
    warmup_steps: int = 0
    start_warmup_value: float = 0.0

    def __call__(self, step: int) -> float:
        w, t = self.warmup_steps, self.total_steps
        step = min(max(int(step), 0), t - 1)
        if step < w:
            if w == 1:
                return self.start_warmup_value
            return self.start_warmup_value + (self.base - self.start_warmup_value) * step / (w - 1)
        i, n = step - w, t - w
        return self.final + 0.5 * (self.base - self.final) * (1.0 + math.cos(math.pi * i / n))


@dataclass
class CosineMultiSchedule(Schedule):
    """Official multi-modality ``get_cosine_schedule_with_warmup`` (num_cycles 0.5): ``base * mult`` with
    ``mult = max(min_lr_multi, step / warmup)`` during warmup, then ``max(min_lr_multi, (1 + cos(pi p))/2)``,
    ``p = (step - warmup) / (total - warmup)``. ``warmup_steps`` may be fractional, as in the official code
    (``steps_per_epoch * warmup_epochs``)."""

    base: float
    total_steps: int
    warmup_steps: float = 0.0
    min_lr_multi: float = 0.0

    def multiplier(self, step: int) -> float:
        w, t = self.warmup_steps, self.total_steps
        if step < w:
            return max(self.min_lr_multi, float(step) / float(max(1.0, w)))
        progress = float(step - w) / float(max(1.0, t - w))
        return max(self.min_lr_multi, 0.5 * (1.0 + math.cos(math.pi * progress)))

    def __call__(self, step: int) -> float:
        return self.base * self.multiplier(int(step))


@dataclass
class ConstantSchedule(Schedule):
    base: float
    total_steps: int

    def __call__(self, step: int) -> float:
        return self.base


def cosine_scheduler(
    base_value: float,
    final_value: float,
    epochs: int,
    niter_per_ep: int,
    warmup_epochs: int = 0,
    start_warmup_value: float = 0.0,
    warmup_steps: int = -1,
) -> list[float]:
    """The official function's signature, for reference and tests (values from :class:`CosineSchedule`)."""
    w = warmup_steps if warmup_steps > 0 else warmup_epochs * niter_per_ep
    if warmup_epochs <= 0 and warmup_steps <= 0:
        w = 0
    return CosineSchedule(base_value, final_value, epochs * niter_per_ep, w, start_warmup_value).values()


def build_schedule(cfg, total_steps: int, steps_per_epoch: int, scale: float) -> Schedule:
    """Schedule from a RunConfig: ``cfg.schedule`` with ``optim.lr`` (and min/warmup lr) times ``scale``."""
    s = cfg.schedule
    base = cfg.optim.lr * scale
    if s.name == "constant":
        return ConstantSchedule(base, total_steps)
    if s.name == "cosine_multi":
        w = float(s.warmup_steps) if s.warmup_steps is not None else steps_per_epoch * s.warmup_epochs
        return CosineMultiSchedule(base, total_steps, w, s.min_lr_multi)
    w = int(s.warmup_steps) if s.warmup_steps is not None else int(s.warmup_epochs * steps_per_epoch)
    if w >= total_steps:
        raise ConfigError(
            "schedule.warmup_epochs" if s.warmup_steps is None else "schedule.warmup_steps",
            f"warmup ({w} steps) must be shorter than training ({total_steps} steps)",
        )
    return CosineSchedule(base, s.min_lr * scale, total_steps, w, s.start_warmup_value * scale)
