"""The run state a checkpoint holds besides model and optimizer, and how a resume restores it exactly:
step and epoch position, guard counters, the logging window, every rank's RNG streams and the config the
run was started with (a changed config is named in a warning)."""
from __future__ import annotations

import logging
import random
from collections import defaultdict
from typing import Any

import numpy as np
import torch

from internvideo2.train import checkpoint as ckpt
from internvideo2.train.config import config_to_dict

log = logging.getLogger("internvideo2.train.engine")

__all__ = ["RESUME_FREE", "seed_all", "trainer_state", "restore", "changed_config_keys"]

# config sections that may change between a run and its resumption without breaking exactness
RESUME_FREE = ("checkpoint", "log", "meta", "smoke", "output_dir", "train.num_workers", "dist.timeout_s")


def seed_all(seed: int) -> None:
    """Seed Python's, numpy's and torch's global generators."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def trainer_state(tr) -> dict:
    """Everything of a :class:`~internvideo2.train.engine.Trainer` a resume needs, except weights, optimizer
    and RNG states (plain values: loadable with ``weights_only``)."""
    return {
        "format": ckpt.FORMAT,
        "step": tr.step,
        "epoch": tr.epoch,
        "step_in_epoch": tr.step_in_epoch,
        "guards": {"consecutive_nonfinite": tr.consecutive_nonfinite, "skipped_total": tr.skipped_total},
        "counters": {"samples_seen": tr.samples_seen, "window": dict(tr._window)},
        "schedule": {"step": tr.step, "total_steps": tr.total_steps},
        "scaler": None,
        "world_size": tr.info.world_size,
        "strategy": tr.strategy,
        "config": config_to_dict(tr.cfg),
    }


def restore(tr, state: dict[str, Any]) -> None:
    """Put a trainer back where ``state`` was saved (counters, data position, RNG streams)."""
    tr.step, tr.epoch, tr.step_in_epoch = int(state["step"]), int(state["epoch"]), int(state["step_in_epoch"])
    tr.consecutive_nonfinite = int(state["guards"]["consecutive_nonfinite"])
    tr.skipped_total = int(state["guards"]["skipped_total"])
    tr.samples_seen = int(state["counters"]["samples_seen"])
    tr._window = defaultdict(float, state["counters"].get("window", {}))
    if tr.step_in_epoch >= tr.steps_per_epoch:  # checkpoint at an epoch's last step
        tr.epoch, tr.step_in_epoch = tr.epoch + tr.step_in_epoch // tr.steps_per_epoch, 0
    if tr.info.is_main:
        changed = changed_config_keys(state.get("config", {}), config_to_dict(tr.cfg))
        if changed:
            log.warning("resuming with a different config for %s: the run will not reproduce the original",
                        ", ".join(changed))
    rngs = state["rng"]
    if int(state["world_size"]) == tr.info.world_size:
        ckpt.set_rng_state(rngs[tr.info.rank])
    else:
        log.warning("resuming on %d ranks a run saved on %d: data order and lr are exact, RNG streams "
                    "(dropout, masking) are re-seeded", tr.info.world_size, state["world_size"])
        seed_all(tr.cfg.train.seed + 7 * tr.info.rank + 1000 * tr.step)


def changed_config_keys(saved: dict, now: dict) -> list[str]:
    """Dotted keys whose values differ between two config dicts, ignoring :data:`RESUME_FREE` sections
    (free-form option mappings compare as a whole)."""
    if not saved:
        return []

    def flat(d: dict, prefix: str = "") -> dict:
        out = {}
        for k, v in d.items():
            key = f"{prefix}{k}"
            if isinstance(v, dict) and v and key not in ("task.options", "model.overrides", "data.options"):
                out.update(flat(v, key + "."))
            else:
                out[key] = v
        return out

    a, b = flat(saved), flat(now)
    return [k for k in sorted(set(a) | set(b))
            if a.get(k) != b.get(k) and not any(k == p or k.startswith(p + ".") for p in RESUME_FREE)]
