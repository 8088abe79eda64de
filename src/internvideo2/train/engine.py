"""The training engine: one loop for every recipe, on one process or under ``torchrun``.

Usage::

    from internvideo2.train.config import load_config
    from internvideo2.train.engine import Trainer
    summary = Trainer(load_config("configs/tiny/engine.yaml")).fit()

What it does per optimizer step (see docs/training.md):

1. set every group's lr to ``schedule(step) * lr_scale``;
2. for each of ``grad_accum`` micro-batches: ``task.training_step`` under autocast (bf16 on CUDA), then
   ``backward(loss / grad_accum)``; gradient sync (DDP all-reduce / FSDP2 reduce-scatter) only on the last
   micro-step;
3. global gradient norm (clipped to ``optim.grad_clip`` when > 0);
4. one small all-reduce carries the loss terms, a non-finite flag and a stop request, so every rank takes
   the same decision: a non-finite loss or gradient norm skips the optimizer step (counted); too many in a
   row raise :class:`TrainingDiverged`;
5. logging (JSONL, TensorBoard, progress bar), periodic evaluation and checkpoints.

Strategies (:mod:`.strategies`, one class per backend): ``none`` (one process), ``ddp``, ``fsdp2``
(``fully_shard`` on ``task.fsdp_units(model)`` then the root; checkpoints gather full state dicts on rank 0
through ``torch.distributed.checkpoint.state_dict``), ``deepspeed`` (optional; ZeRO 0-2, native DeepSpeed
checkpoint folders). The run state and its exact restore live in :mod:`.runstate`, the logs and plot in
:mod:`.logs`.

Exact resume: data order is a function of (seed, epoch), augmentation of (seed, epoch, index), the
schedule of the step; checkpoints hold model, optimizer, RNG states of every rank, the data position
and the logging window, so a resumed CPU run reproduces the uninterrupted one bit for bit.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import logging
import os
import resource
import signal
import sys
import time
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
import torch.utils.deterministic
from torch import nn

from internvideo2.errors import ConfigError
from internvideo2.train import checkpoint as ckpt
from internvideo2.train import distributed as D
from internvideo2.train.config import BatchPlan, RunConfig, dump_config, resolve_batch
from internvideo2.train.data import GlobalBatchSampler, worker_init_fn
from internvideo2.train.logs import RunLog, plot_losses
from internvideo2.train.optim import build_optimizer, build_param_groups, build_schedule, lr_scale_factor
from internvideo2.train.runstate import restore, seed_all, trainer_state
from internvideo2.train.strategies import Strategy, resolve_strategy
from internvideo2.train.tasks import StepContext, Task, get_task
from internvideo2.utils.io import write_text

log = logging.getLogger("internvideo2.train.engine")

__all__ = ["Trainer", "TrainingDiverged", "Callback", "train"]


class TrainingDiverged(RuntimeError):
    """Raised after ``guards.max_consecutive_nonfinite`` skipped steps in a row."""


class Callback:
    """Optional hooks; every method receives the Trainer. Useful for tests and custom logging."""

    def on_train_start(self, trainer: Trainer) -> None: ...
    def on_after_backward(self, trainer: Trainer) -> None: ...  # before clipping and the optimizer step
    def on_step_end(self, trainer: Trainer, record: dict[str, Any]) -> None: ...  # record: this step
    def on_train_end(self, trainer: Trainer, summary: dict[str, Any]) -> None: ...


def _to_device(x: Any, device: torch.device) -> Any:
    if torch.is_tensor(x):
        return x.to(device, non_blocking=True)
    if isinstance(x, dict):
        return {k: _to_device(v, device) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return type(x)(_to_device(v, device) for v in x)
    return x


def _peak_memory_mb(device: torch.device) -> tuple[float, str]:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20, "cuda_max_allocated"
    rss_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    return rss_kb / 1024 * (1 / 1024 if sys.platform == "darwin" else 1), "max_rss"


class Trainer:
    """Runs ``cfg`` (a validated RunConfig). ``task`` overrides the registry lookup (handy in tests)."""

    def __init__(self, cfg: RunConfig, task: Task | None = None, callbacks: list[Callback] | tuple = ()):
        self.cfg = cfg
        self.task = task
        self.callbacks = list(callbacks)
        self.step = 0  # optimizer steps completed
        self.epoch = 0
        self.step_in_epoch = 0  # optimizer steps completed in the current epoch
        self.skipped_total = 0
        self.consecutive_nonfinite = 0
        self.samples_seen = 0
        self._stop_requested = False
        self._window: dict[str, float] = defaultdict(float)
        self.history: list[dict[str, Any]] = []
        self.last_eval: dict[str, float] = {}

    # ------------------------------------------------------------------------------------------------------
    # setup
    # ------------------------------------------------------------------------------------------------------
    def setup(self) -> None:
        """Everything before the loop; every config problem surfaces here as a ConfigError."""
        cfg = self.cfg
        self.info = D.init_distributed(
            cfg.dist.backend, cfg.train.device, cfg.dist.timeout_s, require_group=cfg.dist.strategy == "deepspeed"
        )
        world, dev = self.info.world_size, self.info.device
        self.strategy = resolve_strategy(cfg.dist.strategy, world)
        precision = cfg.train.precision
        if precision == "auto":
            precision = "bf16" if dev.type == "cuda" else "fp32"
        if precision == "bf16" and dev.type == "cpu":
            log.warning("bf16 autocast on CPU is much slower than fp32 unless the CPU has AMX bf16 units; "
                        "train.precision=fp32 is the safe choice")
        self.precision = precision
        self.deterministic = dev.type == "cpu" if cfg.train.deterministic is None else cfg.train.deterministic
        if self.deterministic and dev.type == "cuda":
            os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # cuBLAS' condition for determinism
        self._was_deterministic = torch.are_deterministic_algorithms_enabled()
        torch.use_deterministic_algorithms(self.deterministic)
        # not also NaN-filling every torch.empty (a debugging aid that comes with the flag): it made a
        # DeepSpeed run 5x slower on CPU, and our kernels never read memory they did not write
        self._was_filling = torch.utils.deterministic.fill_uninitialized_memory
        torch.utils.deterministic.fill_uninitialized_memory = False
        self.autocast_dtype = torch.bfloat16 if precision == "bf16" else None
        if cfg.log.tensorboard and importlib.util.find_spec("tensorboard") is None:
            raise ConfigError(
                "log.tensorboard",
                "the tensorboard package is not installed "
                "(pip install 'internvideo2[train]' or set log.tensorboard=false)",
            )
        if cfg.log.plot and importlib.util.find_spec("matplotlib") is None:
            raise ConfigError(
                "log.plot",
                "matplotlib is not installed (pip install 'internvideo2[train]' or set log.plot=false)",
            )
        self.plan: BatchPlan = resolve_batch(cfg.train, world)
        self.backend = Strategy.create(self.strategy, cfg, self.info, self.plan, precision)
        if self.task is None:
            self.task = get_task(cfg.task.name, cfg.task.module)
        self.task.validate(cfg)

        # model and data: identical on every rank (FSDP2 does not broadcast)
        seed_all(cfg.train.seed)
        model = self.task.build_model(cfg)
        if not isinstance(model, nn.Module):
            raise TypeError(
                f"task {cfg.task.name!r}: build_model must return an nn.Module, got {type(model)}"
            )
        if cfg.train.grad_checkpointing:
            if not hasattr(model, "set_grad_checkpointing"):
                raise ConfigError(
                    "train.grad_checkpointing",
                    f"{type(model).__name__} has no set_grad_checkpointing(enable)",
                )
            model.set_grad_checkpointing(True)
        self.dataset = self.task.build_train_dataset(cfg)
        n = len(self.dataset)
        self.steps_per_epoch = int(self._sampler(0, 0).steps_per_epoch)
        if self.steps_per_epoch < 1:
            raise ConfigError(
                "train.global_batch_size",
                f"{self.plan.global_batch_size} is larger than the dataset ({n} samples)",
            )
        if cfg.train.max_steps is not None:
            self.total_steps = int(cfg.train.max_steps)
        else:
            self.total_steps = max(1, int(round(cfg.train.epochs * self.steps_per_epoch)))
        self.lr_scale = lr_scale_factor(
            cfg.optim.lr_scaling, self.plan.global_batch_size, cfg.data.num_sample, cfg.optim.lr_scaling_base
        )
        self.schedule = build_schedule(cfg, self.total_steps, self.steps_per_epoch, self.lr_scale)

        # layer ids and weight-decay exclusions come from the bare model, before wrapping renames anything
        lid = self.task.param_group_fn(model, cfg)
        if cfg.optim.layer_decay != 1.0 and lid is None:
            raise ConfigError(
                "optim.layer_decay",
                f"{type(model).__name__} provides no layer ids "
                "(get_num_layers/get_layer_id); set optim.layer_decay=1",
            )
        layer_id, num_layers = lid if (lid is not None and cfg.optim.layer_decay != 1.0) else (None, None)
        no_wd = self.task.no_weight_decay(model) | set(cfg.optim.no_weight_decay)

        model.to(dev)
        self.unwrapped = model
        self.model = self.backend.wrap_model(model, self.task)
        groups = build_param_groups(
            self.unwrapped.named_parameters(),
            cfg.optim.weight_decay,
            cfg.optim.layer_decay,
            layer_id,
            num_layers,
            no_wd,
            cfg.optim.lr_scales,
        )
        if not groups:
            raise ConfigError(
                "task.name", f"task {cfg.task.name!r} built a model without trainable parameters"
            )
        self.group_names = [g["group_name"] for g in groups]
        optimizer = build_optimizer(groups, self.schedule(0), cfg.optim.betas, cfg.optim.eps)
        self.model, self.optimizer = self.backend.wrap_optimizer(self.model, optimizer)
        self.out_dir = Path(cfg.output_dir)
        self.ckpt_dir = cfg.checkpoint_dir
        if self.info.is_main:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            write_text(self.out_dir / "config.yaml", dump_config(cfg))
        D.barrier()
        log.info(
            "task %s: %d samples, %d steps/epoch, %d steps, batch %d = %d x %d ranks x %d accum, "
            "strategy %s, precision %s, deterministic %s, lr scale %.4g",
            cfg.task.name,
            n,
            self.steps_per_epoch,
            self.total_steps,
            self.plan.global_batch_size,
            self.plan.batch_size,
            world,
            self.plan.grad_accum,
            self.strategy,
            self.precision,
            self.deterministic,
            self.lr_scale,
        )

    # ------------------------------------------------------------------------------------------------------
    # data
    # ------------------------------------------------------------------------------------------------------
    def _loader(self, epoch: int, start_step: int):
        cfg = self.cfg
        if hasattr(self.dataset, "set_epoch"):
            self.dataset.set_epoch(epoch)
        sampler = self._sampler(epoch, start_step)
        # a private generator keeps DataLoader from drawing worker seeds from the global RNG, which would
        # make the global RNG stream depend on where an epoch was (re)started
        gen = torch.Generator().manual_seed(cfg.train.seed * 1000003 + epoch)
        return torch.utils.data.DataLoader(
            self.dataset,
            batch_sampler=sampler,
            num_workers=cfg.train.num_workers,
            collate_fn=self.task.collate or torch.utils.data.default_collate,
            pin_memory=self.info.device.type == "cuda",
            worker_init_fn=worker_init_fn,
            generator=gen,
            persistent_workers=False,
        )

    def _sampler(self, epoch: int, start_step: int):
        cfg = self.cfg
        custom = self.task.build_batch_sampler(
            cfg, self.dataset, self.plan, self.info.rank, epoch, start_step
        )
        if custom is not None:
            return custom
        return GlobalBatchSampler(
            len(self.dataset),
            self.plan.batch_size,
            self.info.world_size,
            self.info.rank,
            self.plan.grad_accum,
            cfg.train.seed,
            epoch,
            cfg.data.shuffle,
            start_step,
        )

    def _step_batches(self) -> Iterator[list[Any]]:
        """Yields the ``grad_accum`` micro-batches of each optimizer step, crossing epochs."""
        while True:
            loader = self._loader(self.epoch, self.step_in_epoch)
            it = iter(loader)
            try:
                for _ in range(self.step_in_epoch, self.steps_per_epoch):
                    yield [next(it) for _ in range(self.plan.grad_accum)]
            finally:
                del it
            self.epoch += 1
            self.step_in_epoch = 0

    # ------------------------------------------------------------------------------------------------------
    # the step
    # ------------------------------------------------------------------------------------------------------
    def _autocast(self):
        if self.autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.info.device.type, dtype=self.autocast_dtype)

    def _set_lr(self, lr: float) -> None:
        for g in self.optimizer.param_groups:
            g["lr"] = lr * g.get("lr_scale", 1.0)

    def _train_step(self, micro_batches: list[Any]) -> dict[str, Any]:
        cfg, a_total = self.cfg, self.plan.grad_accum
        lr = self.schedule(self.step)
        self._set_lr(lr)
        terms: dict[str, torch.Tensor] = {}
        for a, batch in enumerate(micro_batches):
            batch = _to_device(batch, self.info.device)
            ctx = StepContext(
                step=self.step,
                epoch=self.epoch,
                micro_step=a,
                grad_accum=a_total,
                rank=self.info.rank,
                world_size=self.info.world_size,
                device=self.info.device,
                cfg=cfg,
                unwrapped=self.unwrapped,
                autocast_dtype=self.autocast_dtype,
            )
            with self.backend.sync(self.model, a == a_total - 1):
                with self._autocast():
                    out = self.task.training_step(self.model, batch, ctx)
                if not isinstance(out, dict) or "loss" not in out:
                    raise TypeError(f"task {cfg.task.name!r}: training_step must return a dict with 'loss'")
                loss = out["loss"]
                if not (torch.is_tensor(loss) and loss.ndim == 0):
                    raise TypeError(f"task {cfg.task.name!r}: 'loss' must be a scalar tensor")
                self.backend.backward(self.model, loss, a_total)
            for k, v in out.items():
                v = v.detach().float().reshape(())
                terms[k] = terms[k] + v / a_total if k in terms else v / a_total
            self.backend.after_micro_step(self.model, a, a_total)
        self.backend.end_accumulation(self.model)
        for cb in self.callbacks:
            cb.on_after_backward(self)

        keys = sorted(terms)
        grad_norm = self.backend.grad_norm(self.unwrapped)
        # one small all-reduce: the loss terms, a non-finite flag and a stop request, so every rank decides alike
        loss_bad = (~torch.isfinite(terms["loss"])).float()
        vec = torch.stack(
            [terms[k] for k in keys]
            + [loss_bad, torch.tensor(float(self._stop_requested)).to(loss_bad.device)]
        )
        vec = D.all_reduce_sum(vec.to(self.info.device)).cpu().tolist()
        w = self.info.world_size
        means = {k: vec[i] / w for i, k in enumerate(keys)}
        any_loss_bad, stop = vec[len(keys)] > 0, vec[len(keys) + 1] > 0
        gnorm, nonfinite = self.backend.step(self.model, self.optimizer, self.unwrapped, float(grad_norm),
                                             any_loss_bad)
        if nonfinite:
            self.skipped_total += 1
            self.consecutive_nonfinite += 1
            if self.info.is_main:
                what = "loss" if any_loss_bad else "gradient norm"
                log.warning(
                    "step %d: non-finite %s; optimizer step skipped (%d in a row, %d in total)",
                    self.step + 1,
                    what,
                    self.consecutive_nonfinite,
                    self.skipped_total,
                )
        else:
            self.consecutive_nonfinite = 0
        self.step += 1
        self.step_in_epoch += 1
        self.samples_seen += self.plan.global_batch_size
        if stop:
            self._stop_requested = True
        rec = {
            "step": self.step,
            "epoch": self.epoch,
            "lr": lr,
            **means,
            "grad_norm": gnorm,
            "skipped": bool(nonfinite),
        }
        if self.consecutive_nonfinite >= cfg.guards.max_consecutive_nonfinite:
            raise TrainingDiverged(
                f"stopped at step {self.step}: {self.consecutive_nonfinite} consecutive steps with a "
                f"non-finite loss or gradient norm "
                f"(guards.max_consecutive_nonfinite={cfg.guards.max_consecutive_nonfinite}); "
                f"{self.skipped_total} skipped in total. The last checkpoint is in {self.ckpt_dir}."
            )
        return rec

    # ------------------------------------------------------------------------------------------------------
    # checkpoints
    # ------------------------------------------------------------------------------------------------------
    def export_model(self) -> str:
        """Write the trained model in the package format (``<output_dir>/model``: ``config.json`` +
        ``model.safetensors``), loadable with ``internvideo2.load_model``. Needs a package model (with
        ``model_type`` and ``config``); a collective under FSDP2 (the full state dict is gathered)."""
        net = self.unwrapped
        if getattr(net, "model_type", None) is None or getattr(net, "config", None) is None:
            return ""
        from internvideo2.checkpoint.pretrained import save_pretrained

        out = self.out_dir / "model"
        sd = self.backend.full_model_state_dict(net)
        if self.info.is_main:
            if sd is not None:  # sharded: rebuild a whole copy from the gathered state dict
                copy = type(net)(net.config)
                copy.load_state_dict(sd)
                net = copy
            save_pretrained(net, out)
        D.barrier()
        log.info("exported the trained model to %s", out)
        return str(out)

    def save_checkpoint(self) -> Path | None:
        """Write a checkpoint of the current state (a collective: every rank must call it)."""
        rngs = D.all_gather_object(ckpt.rng_state())
        state = trainer_state(self)
        state["rng"] = rngs
        return self.backend.save(state, self.unwrapped, self.optimizer, self.ckpt_dir, self.step)

    def load_checkpoint(self, path: Path) -> None:
        """Restore everything from ``path`` (every rank reads it; the folder must be shared)."""
        state = self.backend.load(path, self.unwrapped, self.optimizer)
        restore(self, state)
        if self.info.is_main:
            log.info("resumed from %s at step %d (epoch %d, step %d of the epoch)", path, self.step, self.epoch,
                     self.step_in_epoch)

    # ------------------------------------------------------------------------------------------------------
    # evaluation
    # ------------------------------------------------------------------------------------------------------
    def _has_eval(self) -> bool:
        return type(self.task).evaluate is not Task.evaluate

    def evaluate(self) -> dict[str, float]:
        ctx = StepContext(
            step=self.step,
            epoch=self.epoch,
            micro_step=0,
            grad_accum=1,
            rank=self.info.rank,
            world_size=self.info.world_size,
            device=self.info.device,
            cfg=self.cfg,
            unwrapped=self.unwrapped,
            autocast_dtype=self.autocast_dtype,
        )
        self.model.train(False)
        try:
            with torch.no_grad(), self._autocast():
                res = self.task.evaluate(self.model, ctx) or {}
        finally:
            self.model.train(True)
        res = {f"eval/{k}": float(v) for k, v in res.items()}
        if res:
            self.last_eval = res
            self.runlog.write({"step": self.step, "epoch": self.epoch, **res})
            if self.info.is_main:
                log.info("eval at step %d: %s", self.step, res)
        return res

    # ------------------------------------------------------------------------------------------------------
    # fit
    # ------------------------------------------------------------------------------------------------------
    def _on_sigterm(self, signum, frame):
        self._stop_requested = True

    def fit(self, resume: str | None = None) -> dict[str, Any]:
        """Train to ``total_steps``; returns the summary. ``resume`` overrides ``checkpoint.resume``."""
        ok = False
        try:
            self.setup()
            out = self._fit(resume if resume is not None else self.cfg.checkpoint.resume)
            ok = True
            return out
        finally:
            if hasattr(self, "_was_deterministic"):  # the flags are process-wide: give the caller's back
                torch.use_deterministic_algorithms(self._was_deterministic)
                torch.utils.deterministic.fill_uninitialized_memory = self._was_filling
            D.shutdown(getattr(self, "info", None), sync=ok)

    def _fit(self, resume: str) -> dict[str, Any]:
        cfg = self.cfg
        path = ckpt.resolve_resume(resume, self.ckpt_dir)
        if path is None and resume in ("none", "", None) and ckpt.list_checkpoints(self.ckpt_dir):
            raise ConfigError(
                "checkpoint.resume",
                f"{self.ckpt_dir} already holds checkpoints of a run; "
                "resume it (--resume / checkpoint.resume=auto) or choose another output_dir",
            )
        if path is not None:
            self.load_checkpoint(path)
        else:
            if resume == "auto" and self.info.is_main:
                log.info("checkpoint.resume=auto: no checkpoint in %s, starting fresh", self.ckpt_dir)
            # per-rank streams for dropout etc.; rank 0 keeps the plain seed
            seed_all(cfg.train.seed + self.info.rank)
        self.runlog = RunLog(self.out_dir, cfg.log.jsonl, cfg.log.tensorboard, enabled=self.info.is_main)
        self.runlog.open(self.step, resumed=path is not None)
        self.model.train(True)  # explicit: a model's own train() may pin frozen parts in eval mode
        start_step, t_start = self.step, time.perf_counter()
        try:  # SIGTERM (preemption, torchrun shutdown): checkpoint at the next step boundary, then exit
            old_handler = signal.signal(signal.SIGTERM, self._on_sigterm)
        except ValueError:  # not the main thread
            old_handler = None
        bar = None
        if self.info.is_main and cfg.log.progress:
            from tqdm.auto import tqdm

            bar = tqdm(
                total=self.total_steps,
                initial=self.step,
                desc=cfg.task.name,
                unit="step",
                dynamic_ncols=True,
                file=sys.stderr,
            )
        for cb in self.callbacks:
            cb.on_train_start(self)
        last_saved = self.step if path is not None else -1
        interrupted = False
        every_log, every_ck, every_ev = (
            cfg.log.every_n_steps,
            cfg.checkpoint.every_n_steps,
            cfg.train.eval_every_n_steps,
        )
        t_window = time.perf_counter()
        batches = self._step_batches()
        try:
            while self.step < self.total_steps:
                micro = next(batches)
                rec = self._train_step(micro)
                for k, v in rec.items():
                    if k.startswith("loss") or k == "grad_norm":
                        self._window[k] += v
                self._window["_n"] += 1
                for cb in self.callbacks:
                    cb.on_step_end(self, rec)
                if bar is not None:
                    bar.update(1)
                if self.step % every_log == 0 or self.step == self.total_steps:
                    n = self._window.pop("_n")
                    now = time.perf_counter()
                    out = {"step": self.step, "epoch": self.epoch, "lr": rec["lr"]}
                    out.update({k: v / n for k, v in sorted(self._window.items())})
                    out.update(
                        {
                            "samples_per_s": n * self.plan.global_batch_size / max(now - t_window, 1e-9),
                            "skipped_total": self.skipped_total,
                            "time": now - t_start,
                        }
                    )
                    self._window.clear()
                    t_window = now
                    self.history.append(out)
                    if self.info.is_main:
                        self.runlog.write(out)
                        if bar is not None:
                            bar.set_postfix(
                                loss=f"{out.get('loss', float('nan')):.4g}", lr=f"{rec['lr']:.3g}"
                            )
                if (
                    self._has_eval()
                    and every_ev
                    and self.step % every_ev == 0
                    and self.step < self.total_steps
                ):
                    self.evaluate()
                if every_ck and self.step % every_ck == 0:
                    self.save_checkpoint()
                    last_saved = self.step
                if self._stop_requested and self.step < self.total_steps:
                    log.warning("stop requested (SIGTERM): checkpointing at step %d and exiting", self.step)
                    if last_saved != self.step:
                        self.save_checkpoint()
                        last_saved = self.step
                    interrupted = True
                    break
            if not interrupted:
                if self._has_eval() and self.step > start_step:  # a finished run resumed: nothing new
                    self.evaluate()
                if cfg.checkpoint.save_final and last_saved != self.step:
                    self.save_checkpoint()
                if cfg.checkpoint.export_model:
                    self.exported = self.export_model()
        finally:
            batches.close()
            if bar is not None:
                bar.close()
            self.runlog.close()
            if old_handler is not None:
                signal.signal(signal.SIGTERM, old_handler)
        wall = time.perf_counter() - t_start
        summary = self._summary(start_step, wall, interrupted)
        for cb in self.callbacks:
            cb.on_train_end(self, summary)
        return summary

    def _summary(self, start_step: int, wall: float, interrupted: bool) -> dict[str, Any]:
        mem, kind = _peak_memory_mb(self.info.device)
        mems = D.all_gather_object(mem)
        steps_run = self.step - start_step
        summary = {
            "task": self.cfg.task.name,
            "steps": self.step,
            "total_steps": self.total_steps,
            "steps_this_run": steps_run,
            "interrupted": interrupted,
            "samples": self.samples_seen,
            "samples_per_s": steps_run * self.plan.global_batch_size / max(wall, 1e-9),
            "steps_per_s": steps_run / max(wall, 1e-9),
            "wall_s": wall,
            "skipped_steps": self.skipped_total,
            "world_size": self.info.world_size,
            "strategy": self.strategy,
            "precision": self.precision,
            "global_batch_size": self.plan.global_batch_size,
            "batch_size": self.plan.batch_size,
            "grad_accum": self.plan.grad_accum,
            f"peak_memory_mb_{kind}": max(mems),
            "peak_memory_mb_per_rank": mems,
            "final": self.history[-1] if self.history else {},
            "eval": self.last_eval,
            "output_dir": str(self.out_dir),
            "checkpoint": str(ckpt.read_latest(self.ckpt_dir) or "") if self.info.is_main else "",
            "model": getattr(self, "exported", ""),
        }
        if self.info.is_main:
            write_text(self.out_dir / "summary.json", json.dumps(summary, indent=2))
            if self.cfg.log.plot:
                png = plot_losses(self.out_dir, self.cfg.task.name)
                summary["plot"] = str(png) if png else ""
            log.info("summary: %s", json.dumps(summary))
        return summary


def train(
    cfg: RunConfig,
    resume: str | None = None,
    task: Task | None = None,
    callbacks: list[Callback] | tuple = (),
) -> dict[str, Any]:
    """Convenience wrapper: ``Trainer(cfg, task, callbacks).fit(resume)``."""
    return Trainer(cfg, task, callbacks).fit(resume)
