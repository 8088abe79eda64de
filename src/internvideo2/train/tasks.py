"""Task interface and registry: what a training recipe plugs into the engine.

A task says *what* to train (model, data, loss); the engine owns *how* (devices, distribution, precision,
accumulation, optimiser, schedule, checkpoints, guards, logging). Minimal task::

    from internvideo2.train.tasks import Task, register_task

    @register_task("my_task")
    class MyTask(Task):
        def build_model(self, cfg):            # -> nn.Module, built identically on every rank
            ...
        def build_train_dataset(self, cfg):    # -> map-style Dataset (len + __getitem__)
            ...
        def training_step(self, model, batch, ctx):   # -> {"loss": scalar tensor, other terms...}
            out = model(batch["x"])
            return {"loss": out.mean()}

Contract
--------
* ``build_model`` runs after ``torch.manual_seed(cfg.train.seed)`` on every rank; it must create the same
  weights everywhere (FSDP2 does not broadcast). Load ``cfg.model.pretrained`` here if the task uses it.
* ``build_train_dataset`` returns a map-style dataset. The engine builds the sampler: the sample order is a
  pure function of (seed, epoch); global step k of an epoch takes positions ``[k*G, (k+1)*G)`` of that
  epoch's permutation, split into contiguous per-(micro-step, rank) chunks, so a run on W ranks sees the
  same global batches as a run on one. Random augmentation must depend only on (seed, epoch, index): use
  :func:`internvideo2.utils.seeding.derive_generator` ``(seed, epoch, index)``. If the dataset has
  ``set_epoch(epoch)`` the engine calls it before each epoch's loader is created.
* ``collate(samples)`` is optional (default: ``torch.utils.data.default_collate``). Batches are moved to
  the device by the engine (tensors inside dicts/lists/tuples).
* ``training_step(model, batch, ctx)`` returns a dict of scalar tensors; ``"loss"`` is the objective for this
  rank's micro-batch (the engine divides by grad_accum and calls backward). Other entries are logged.
  ``model`` is the wrapped model (DDP/FSDP2/DeepSpeed): call it, do not reach into ``.module``; use
  ``ctx.unwrapped`` for attributes. Cross-rank terms gather with ``ctx.gather(x)`` (differentiable; see
  :func:`internvideo2.train.distributed.all_gather_with_grad` for the gradient contract: the objective is
  the mean over ranks of the per-rank losses). Logged values are averaged over ranks.
* ``evaluate(model, ctx)`` is optional (return None to skip); it runs on every rank under ``no_grad`` in
  ``eval()`` mode and returns floats that rank 0 logs with an ``eval/`` prefix.
* ``param_group_fn(model, cfg)`` gives layer ids for layer-wise lr decay: ``(layer_id(name) -> int,
  num_layers)``. The default uses ``model.get_layer_id(name)`` and ``model.get_num_layers()`` when present,
  else the official ViT rule when only ``get_num_layers`` exists, else None (``optim.layer_decay`` must
  then be 1). ``no_weight_decay(model)`` defaults to ``model.no_weight_decay()``.
* ``build_batch_sampler(...)`` optionally replaces the engine's sampler (same determinism contract).
* ``fsdp_units(model)`` lists the submodules FSDP2 shards separately (default: every module called
  ``blocks.<i>``, i.e. transformer blocks); the root is always sharded last.
* ``options_class`` / ``data_options_class``: documented dataclasses of ``task.options`` / ``data.options``.
  :meth:`Task.options` / :meth:`Task.data_options` parse them through :func:`parse_options` (the one place
  that refuses unknown keys and checks types, naming ``task.options.<key>``). ``validate(cfg)`` parses both
  and adds the task's own checks, raising ``ConfigError("task.options.<key>", reason)``; it runs before
  anything is built.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from internvideo2.errors import ConfigError
from internvideo2.train import distributed as D
from internvideo2.utils.typed import build_dataclass

if TYPE_CHECKING:  # pragma: no cover
    from internvideo2.train.config import RunConfig

log = logging.getLogger("internvideo2.train.tasks")

__all__ = [
    "parse_options",
    "Task",
    "StepContext",
    "register_task",
    "get_task",
    "available_tasks",
    "KNOWN_TASK_MODULES",
    "vit_layer_id",
]

# Task name -> module that registers it, imported on first use. Extend this dict (or set task.module in the
# config) to make more tasks known without importing them up front.
KNOWN_TASK_MODULES: dict[str, str] = {
    "toy_contrastive": "internvideo2.train.toy",
    "stage1": "internvideo2.train.stage1",
    "distill": "internvideo2.train.stage1",
    "stage2": "internvideo2.train.stage2",
    "clip": "internvideo2.train.stage2",
    "finetune": "internvideo2.train.finetune",
    "clip_teacher": "internvideo2.train.teachers",
    "mae_teacher": "internvideo2.train.teachers",
}

_REGISTRY: dict[str, type[Task]] = {}


@dataclass
class StepContext:
    """What a task sees besides the model and the batch.

    step: 0-based index of the optimizer step being computed (0 at the first step, after resume the
        resumed step); epoch: current epoch; micro_step / grad_accum: position inside accumulation.
    rank / world_size / device: this process. autocast_dtype: bf16/fp16 under autocast, else None.
    unwrapped: the bare model (for attributes and methods other than forward).
    """

    step: int
    epoch: int
    micro_step: int
    grad_accum: int
    rank: int
    world_size: int
    device: torch.device
    cfg: RunConfig
    unwrapped: nn.Module | None = None
    autocast_dtype: torch.dtype | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @staticmethod
    def gather(x: torch.Tensor) -> torch.Tensor:
        """Differentiable all-gather along dim 0 (identity on one process)."""
        return D.all_gather_with_grad(x)

    @staticmethod
    def gather_nograd(x: torch.Tensor) -> torch.Tensor:
        return D.all_gather_nograd(x)

    @staticmethod
    def all_reduce_mean(x: torch.Tensor) -> torch.Tensor:
        return D.all_reduce_mean(x)


def vit_layer_id(name: str, num_layers: int) -> int:
    """Official ViT layer id (spec §6.2): 0 for ``cls_token``, ``mask_token``, ``pos_embed`` and
    ``patch_embed.*``; ``i+1`` for ``blocks.i.*``; ``num_layers+1`` for everything else."""
    if name in ("cls_token", "mask_token", "pos_embed") or name.startswith("patch_embed"):
        return 0
    if name.startswith("blocks."):
        return int(name.split(".")[1]) + 1
    return num_layers + 1


def parse_options(cls: type, options: Any, prefix: str) -> Any:
    """A free-form options mapping -> its documented dataclass ``cls``: unknown keys, wrong types and the
    dataclass's own checks raise :class:`ConfigError` naming ``prefix.<key>``."""
    if options is None:
        options = {}
    return build_dataclass(cls, dict(options), prefix)


class Task:
    """Base class; override what the recipe needs (see the module docstring)."""

    name: str = ""
    #: dataclass of ``task.options`` (None: the task does not use the typed parser)
    options_class: type | None = None
    #: dataclass of ``data.options`` (None: the task does not use the typed parser)
    data_options_class: type | None = None

    def options(self, cfg: RunConfig) -> Any:
        """``task.options`` parsed into :attr:`options_class`."""
        if self.options_class is None:
            raise TypeError(f"task {self.name!r} declares no options_class")
        return parse_options(self.options_class, cfg.task.options, "task.options")

    def data_options(self, cfg: RunConfig) -> Any:
        """``data.options`` parsed into :attr:`data_options_class` (with ``resolved(output_dir)`` applied when
        the class has it: the synthetic smoke corpus)."""
        if self.data_options_class is None:
            raise TypeError(f"task {self.name!r} declares no data_options_class")
        d = parse_options(self.data_options_class, cfg.data.options, "data.options")
        return d.resolved(cfg.output_dir) if hasattr(d, "resolved") else d

    def validate(self, cfg: RunConfig) -> None:
        """Parse the typed options (raises ConfigError naming ``task.options.<key>`` / ``data.options.<key>``);
        subclasses add their own checks."""
        if self.options_class is not None:
            self.options(cfg)
        if self.data_options_class is not None:
            self.data_options(cfg)

    def build_model(self, cfg: RunConfig) -> nn.Module:
        raise NotImplementedError(f"task {self.name!r} must implement build_model")

    def build_train_dataset(self, cfg: RunConfig) -> torch.utils.data.Dataset:
        raise NotImplementedError(f"task {self.name!r} must implement build_train_dataset")

    collate: Callable[[list[Any]], Any] | None = None

    def training_step(self, model: nn.Module, batch: Any, ctx: StepContext) -> dict[str, torch.Tensor]:
        raise NotImplementedError(f"task {self.name!r} must implement training_step")

    def evaluate(self, model: nn.Module, ctx: StepContext) -> dict[str, float] | None:
        return None

    def param_group_fn(self, model: nn.Module, cfg: RunConfig) -> tuple[Callable[[str], int], int] | None:
        if hasattr(model, "get_num_layers"):
            n = int(model.get_num_layers())
            if hasattr(model, "get_layer_id"):
                return model.get_layer_id, n
            return (lambda name: vit_layer_id(name, n)), n
        return None

    def no_weight_decay(self, model: nn.Module) -> set[str]:
        return set(model.no_weight_decay()) if hasattr(model, "no_weight_decay") else set()

    def build_batch_sampler(
        self, cfg: RunConfig, dataset: Any, plan: Any, rank: int, epoch: int, start_step: int
    ) -> Any | None:
        """Optional custom per-rank batch sampler for one epoch (e.g. one media type per step, as the
        official stage-2 ``MetaLoader``). It must have ``steps_per_epoch``, start at global step
        ``start_step`` and yield ``plan.grad_accum`` lists of indices per step, a pure function of
        (cfg.train.seed, epoch). None: the engine's :class:`~internvideo2.train.data.GlobalBatchSampler`."""
        return None

    def fsdp_units(self, model: nn.Module) -> list[nn.Module]:
        units = []
        for name, mod in model.named_modules():
            parts = name.split(".")
            if len(parts) >= 2 and parts[-2] == "blocks" and parts[-1].isdigit():
                units.append(mod)
        return units


def register_task(name: str) -> Callable[[type[Task]], type[Task]]:
    """Class decorator: ``@register_task("stage1") class Stage1(Task): ...``."""

    def deco(cls: type[Task]) -> type[Task]:
        if not (isinstance(cls, type) and issubclass(cls, Task)):
            raise TypeError(f"@register_task({name!r}) expects a Task subclass, got {cls!r}")
        old = _REGISTRY.get(name)
        if old is not None and (old.__module__, old.__qualname__) != (cls.__module__, cls.__qualname__):
            raise ValueError(f"task {name!r} is already registered by {old.__module__}.{old.__qualname__}")
        cls.name = name
        _REGISTRY[name] = cls
        return cls

    return deco


def available_tasks() -> dict[str, str]:
    """Registered and known-but-not-imported task names -> defining module."""
    out = dict(KNOWN_TASK_MODULES)
    out.update({k: v.__module__ for k, v in _REGISTRY.items()})
    return dict(sorted(out.items()))


def _import(module: str, field_name: str, what: str) -> None:
    try:
        importlib.import_module(module)
    except ModuleNotFoundError as exc:
        if exc.name and module.startswith(exc.name):
            raise ConfigError(field_name, f"{what}: module {module!r} does not exist") from None
        raise


def get_task(name: str, module: str | None = None) -> Task:
    """Instantiate a registered task, importing ``module`` and the known module for ``name`` first."""
    if module:
        _import(module, "task.module", f"cannot import task module {module!r}")
    if name not in _REGISTRY and name in KNOWN_TASK_MODULES:
        _import(
            KNOWN_TASK_MODULES[name],
            "task.name",
            f"task {name!r} is provided by {KNOWN_TASK_MODULES[name]!r}, which is not available",
        )
    if name not in _REGISTRY:
        raise ConfigError("task.name", f"unknown task {name!r}; known: {', '.join(available_tasks())}")
    return _REGISTRY[name]()
