"""Distribution strategies: everything the engine does differently per backend, one class each.

* :class:`Plain` (``none``): one process, the bare model.
* :class:`DDP`: ``DistributedDataParallel``; gradient all-reduce skipped on non-final micro-steps (``no_sync``).
* :class:`FSDP2`: ``fully_shard`` on the task's units then the root; reduce-scatter only on the final
  micro-step; checkpoints and the exported model gather full state dicts
  (``torch.distributed.checkpoint.state_dict``).
* :class:`DeepSpeed`: the optional ZeRO 0-2 engine; it scales, accumulates, clips and steps itself and
  writes its own checkpoint folders.

The engine talks to a strategy only through :class:`Strategy`'s methods: ``wrap_model``, ``wrap_optimizer``,
``sync``, ``backward``,
``after_micro_step``, ``grad_norm``, ``step``, ``state_dicts`` / ``load_state_dicts``, ``save`` / ``load``
and ``full_model_state_dict``.
"""
from __future__ import annotations

import contextlib
import importlib.util
import logging
import math
import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from internvideo2.errors import CheckpointError, ConfigError
from internvideo2.train import checkpoint as ckpt
from internvideo2.train import distributed as D
from internvideo2.utils.io import fsync_dir

log = logging.getLogger("internvideo2.train.engine")

__all__ = ["Strategy", "Plain", "DDP", "FSDP2", "DeepSpeed", "resolve_strategy"]


def resolve_strategy(name: str, world: int) -> str:
    """The strategy a run uses: ``auto`` -> ``ddp`` on several processes, ``none`` on one; DDP/FSDP2 on
    one process run unwrapped. ConfigError for impossible combinations."""
    if name == "auto":
        name = "ddp" if world > 1 else "none"
    if name == "none" and world > 1:
        raise ConfigError("dist.strategy", f"'none' cannot run on {world} processes; use ddp or fsdp2")
    if name in ("ddp", "fsdp2") and world == 1:
        log.info("dist.strategy=%s on one process: running unwrapped", name)
        name = "none"
    if name == "deepspeed" and importlib.util.find_spec("deepspeed") is None:
        raise ConfigError("dist.strategy", "deepspeed is not installed (pip install deepspeed)")
    return name


class Strategy:
    """Base class = the plain single-process behaviour; subclasses override what differs."""

    name = "none"

    def __init__(self, cfg, info: D.DistInfo, plan, precision: str):
        self.cfg, self.info, self.plan, self.precision = cfg, info, plan, precision

    @staticmethod
    def create(name: str, cfg, info: D.DistInfo, plan, precision: str) -> Strategy:
        cls = {"none": Plain, "ddp": DDP, "fsdp2": FSDP2, "deepspeed": DeepSpeed}[name]
        return cls(cfg, info, plan, precision)

    # -------------------------------------------------------------------------------- setup
    def wrap_model(self, model: nn.Module, task) -> nn.Module:
        """The model the loop calls, built before the optimizer (FSDP2 replaces the parameters); ``model`` is
        already on the device."""
        return model

    def wrap_optimizer(self, model: nn.Module, optimizer: torch.optim.Optimizer) -> tuple[nn.Module, Any]:
        """After the optimizer exists: the final (model, optimizer) pair (DeepSpeed wraps both)."""
        return model, optimizer

    # -------------------------------------------------------------------------------- the step
    def sync(self, model: nn.Module, sync: bool):
        """Context of one micro-step: ``sync`` is False on the non-final micro-steps of accumulation."""
        return contextlib.nullcontext()

    def backward(self, model: nn.Module, loss: torch.Tensor, grad_accum: int) -> None:
        (loss / grad_accum).backward()

    def after_micro_step(self, model: nn.Module, micro: int, grad_accum: int) -> None:
        """After each micro-step's backward (DeepSpeed counts micro-steps)."""

    def end_accumulation(self, model: nn.Module) -> None:
        """After the last micro-step of an optimizer step."""

    def grad_norm(self, unwrapped: nn.Module) -> torch.Tensor:
        """The global gradient norm (clipped to ``optim.grad_clip`` when > 0), a CPU float scalar."""
        params = [p for p in unwrapped.parameters() if p.grad is not None]
        clip = self.cfg.optim.grad_clip
        if clip > 0:
            norm = torch.nn.utils.clip_grad_norm_(params, clip, foreach=None)
        else:
            norm = torch.nn.utils.get_total_norm([p.grad for p in params], foreach=None)
        if hasattr(norm, "full_tensor"):  # DTensor under FSDP2
            norm = norm.full_tensor()
        return norm.detach().float().cpu()

    def step(self, model: nn.Module, optimizer, unwrapped: nn.Module, gnorm: float, loss_bad: bool
             ) -> tuple[float, bool]:
        """Apply the update unless the loss or gradient norm is not finite (then the gradients are dropped).
        Returns the gradient norm to log and whether the step was skipped."""
        nonfinite = loss_bad or not math.isfinite(gnorm)
        if not nonfinite:
            optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return gnorm, nonfinite

    # -------------------------------------------------------------------------------- state
    def state_dicts(self, unwrapped: nn.Module, optimizer) -> tuple[dict, dict]:
        from torch.distributed.checkpoint.state_dict import get_state_dict

        return get_state_dict(unwrapped, optimizer)

    def load_state_dicts(self, unwrapped: nn.Module, optimizer, model_sd: dict, optim_sd: dict) -> None:
        from torch.distributed.checkpoint.state_dict import (
            StateDictOptions,
            set_model_state_dict,
            set_optimizer_state_dict,
        )

        opts = StateDictOptions(full_state_dict=self.name == "fsdp2", strict=True)
        try:
            set_model_state_dict(unwrapped, model_sd, options=opts)
            set_optimizer_state_dict(unwrapped, optimizer, optim_sd, options=opts)
        except (RuntimeError, KeyError, ValueError) as exc:
            raise CheckpointError(f"checkpoint does not match the model/optimizer: {exc}") from None

    def save(self, state: dict, unwrapped: nn.Module, optimizer, ckpt_dir: Path, step: int) -> Path | None:
        """Write a checkpoint (a collective: every rank calls it); returns its path on rank 0."""
        model_sd, optim_sd = self.state_dicts(unwrapped, optimizer)
        path = None
        if self.info.is_main:
            state.update(model=model_sd, optimizer=optim_sd)
            path = ckpt.save_checkpoint_file(state, ckpt_dir, step, self.cfg.checkpoint.keep_last_n)
            log.info("checkpoint: %s", path)
        D.barrier()
        return path

    def load(self, path: Path, unwrapped: nn.Module, optimizer) -> dict:
        """Restore model and optimizer from ``path``; returns the trainer state stored with them."""
        if path.is_dir():
            raise CheckpointError(f"{path}: a DeepSpeed checkpoint folder; resume it with dist.strategy=deepspeed")
        state = ckpt.load_checkpoint_file(path)
        self.load_state_dicts(unwrapped, optimizer, state["model"], state["optimizer"])
        return state

    def full_model_state_dict(self, unwrapped: nn.Module) -> dict | None:
        """The whole model's state dict on rank 0 when the live model is sharded (None: use it as is)."""
        return None


class Plain(Strategy):
    name = "none"


class DDP(Strategy):
    name = "ddp"

    def wrap_model(self, model, task):
        from torch.nn.parallel import DistributedDataParallel

        dev = self.info.device
        return DistributedDataParallel(model, device_ids=[dev] if dev.type == "cuda" else None,
                                       find_unused_parameters=self.cfg.dist.find_unused_parameters)

    def sync(self, model, sync):
        return contextlib.nullcontext() if sync else model.no_sync()


class FSDP2(Strategy):
    name = "fsdp2"

    def wrap_model(self, model, task):
        from torch.distributed.device_mesh import init_device_mesh
        from torch.distributed.fsdp import fully_shard

        mesh = init_device_mesh(self.info.device.type, (self.info.world_size,))
        for unit in task.fsdp_units(model):
            fully_shard(unit, mesh=mesh)
        fully_shard(model, mesh=mesh)
        return model

    def sync(self, model, sync):
        model.set_requires_gradient_sync(sync)
        return contextlib.nullcontext()

    def end_accumulation(self, model):
        model.set_requires_gradient_sync(True)

    def state_dicts(self, unwrapped, optimizer):
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_state_dict

        return get_state_dict(unwrapped, optimizer, options=StateDictOptions(full_state_dict=True, cpu_offload=True))

    def full_model_state_dict(self, unwrapped):
        return _gather_full_state_dict(unwrapped)


class DeepSpeed(Strategy):
    """ZeRO 0-2. DeepSpeed divides by ``grad_accum`` and counts micro-steps itself; ZeRO-1/2 compute the
    gradient norm inside their step and skip updates with inf/nan gradients themselves."""

    name = "deepspeed"

    def wrap_optimizer(self, model, optimizer):
        import deepspeed  # optional dependency, imported only for this strategy

        cfg = self.cfg
        ds_config = {
            "train_batch_size": self.plan.global_batch_size,
            "train_micro_batch_size_per_gpu": self.plan.batch_size,
            "gradient_accumulation_steps": self.plan.grad_accum,
            "gradient_clipping": cfg.optim.grad_clip,
            "zero_optimization": {"stage": cfg.dist.zero_stage},
            "bf16": {"enabled": self.precision == "bf16"},
            "steps_per_print": 2**31 - 1,
            "zero_allow_untested_optimizer": True,
        }
        engine, ds_opt, _, _ = deepspeed.initialize(model=model, optimizer=optimizer, config=ds_config)
        self.engine = engine
        return engine, ds_opt

    @property
    def zero_stage(self) -> int:
        return self.cfg.dist.zero_stage

    def backward(self, model, loss, grad_accum):
        model.backward(loss)  # DeepSpeed divides by grad_accum itself

    def after_micro_step(self, model, micro, grad_accum):
        if micro < grad_accum - 1:
            model.step()  # not a boundary: DeepSpeed only counts the micro-step

    def grad_norm(self, unwrapped):
        if self.zero_stage == 0:  # gradients are already averaged in p.grad; DeepSpeed clips them itself
            grads = [p.grad for p in unwrapped.parameters() if p.grad is not None]
            return torch.nn.utils.get_total_norm(grads).detach().float().cpu()
        return torch.tensor(0.0)  # ZeRO-1/2 compute the norm inside their step

    def step(self, model, optimizer, unwrapped, gnorm, loss_bad):
        nonfinite = loss_bad or not math.isfinite(gnorm)
        if self.zero_stage == 0 and nonfinite:
            # ZeRO-0 in fp32 has no overflow check: neutralise the gradient (AdamW moments still decay)
            for p in unwrapped.parameters():
                if p.grad is not None:
                    p.grad.zero_()
        model.step()  # ZeRO-1/2 skip the update themselves when gradients hold inf/nan
        if self.zero_stage > 0:
            gn = model.get_global_grad_norm()
            gnorm = float("nan") if gn is None else float(gn)
            nonfinite = loss_bad or not math.isfinite(gnorm)
        return gnorm, nonfinite

    def save(self, state, unwrapped, optimizer, ckpt_dir, step):
        name = ckpt.checkpoint_name(step, folder=True)
        # one name on every rank (each writes its shards into the same folder); a hidden ``.tmp`` name, so
        # retention removes what a killed save leaves
        tmp_tag = f".{name}.tmp"
        if self.info.is_main:
            ckpt_dir.mkdir(parents=True, exist_ok=True)
        D.barrier()
        self.engine.save_checkpoint(str(ckpt_dir), tag=tmp_tag, client_state={"trainer": state}, save_latest=False)
        D.barrier()
        final = ckpt_dir / name
        if self.info.is_main:
            os.replace(ckpt_dir / tmp_tag, final)
            fsync_dir(ckpt_dir)
            ckpt.update_latest(ckpt_dir, name)
            ckpt.apply_retention(ckpt_dir, self.cfg.checkpoint.keep_last_n)
        D.barrier()
        return final

    def load(self, path, unwrapped, optimizer):
        if not path.is_dir():
            raise CheckpointError(f"{path}: a DeepSpeed run resumes from a DeepSpeed checkpoint folder")
        _, client = self.engine.load_checkpoint(str(path.parent), tag=path.name)
        if client is None or "trainer" not in client:
            raise CheckpointError(f"{path}: not written by this engine (no trainer state)")
        return client["trainer"]

    def full_model_state_dict(self, unwrapped):
        return _gather_full_state_dict(unwrapped)


def _gather_full_state_dict(unwrapped: nn.Module) -> dict:
    """The whole model's state dict, gathered to CPU (a collective)."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    return get_model_state_dict(unwrapped, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
