"""Typed run configuration for the training engine, loaded from YAML recipes.

A recipe is a YAML file whose top-level keys are the fields of :class:`RunConfig`. Three layers are merged
(later wins), then converted to the dataclasses with type checks, then validated:

1. ``_base_:`` files (a path or a list of paths, relative to the including file), recursively;
2. the file itself; with ``--smoke``, its ``smoke:`` mapping of overrides (the tiny CPU variant);
3. command-line overrides ``key.sub=value`` (the value is parsed as YAML, then checked against the field
   type).

Mappings are merged key by key; lists and scalars are replaced. Keys may be written dotted anywhere
(``optim.lr: 1e-4`` at top level is the same as ``optim: {lr: 1e-4}``). Unknown keys, wrong types and
out-of-range values raise :class:`~internvideo2.errors.ConfigError` naming the dotted field, before anything
is built. Task-, model- and data-specific options live in free-form mappings (``task.options``,
``model.overrides``, ``data.options``) that the task validates itself (``Task.validate``).
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import math
import os
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from internvideo2.errors import ConfigError
from internvideo2.utils.io import jsonable
from internvideo2.utils.typed import build_dataclass, coerce, field_types, is_optional, type_name

__all__ = [
    "MetaConfig",
    "TaskConfig",
    "ModelConfig",
    "DataConfig",
    "OptimConfig",
    "ScheduleConfig",
    "TrainConfig",
    "DistConfig",
    "CheckpointConfig",
    "LogConfig",
    "GuardsConfig",
    "RunConfig",
    "load_config",
    "load_yaml_tree",
    "config_from_dict",
    "config_to_dict",
    "apply_overrides",
    "parse_override",
    "dump_config",
    "resolve_batch",
    "BatchPlan",
]


# ----------------------------------------------------------------------------------------------------------
# dataclasses
# ----------------------------------------------------------------------------------------------------------
@dataclass
class MetaConfig:
    """What the recipe is (documentation only; the engine does not act on it).

    kind: ``local`` (runs on one machine, e.g. the tiny CPU recipes) or ``gpu-cluster`` (a published recipe
        that needs many GPUs; run ``--smoke`` for its tiny CPU variant).
    description: one line about the recipe.
    reference: where the numbers come from (official script, spec section).
    hardware: the hardware the official run used (e.g. "128 x A100").
    """

    kind: Literal["local", "gpu-cluster"] = "local"
    description: str = ""
    reference: str = ""
    hardware: str = ""


@dataclass
class TaskConfig:
    """Which registered task runs (see ``internvideo2.train.tasks``).

    name: registry name (``toy_contrastive``, ``stage1``, ``stage2``, ``clip``, ``distill``, ``finetune``...).
    module: extra module imported before the lookup, so a task defined outside the package can register
        itself (``mypkg.my_task``).
    options: free-form task options (loss weights, masking, temperatures...), validated by the task.
    """

    name: str = "toy_contrastive"
    module: str | None = None
    options: dict[str, Any] = field(default_factory=dict)


@dataclass
class ModelConfig:
    """The model the task builds.

    preset: model preset name (e.g. ``internvideo2-1b``), interpreted by the task.
    pretrained: optional checkpoint the task loads before training (task-defined semantics).
    overrides: free-form constructor overrides on top of the preset (drop_path_rate, num_frames...).
    """

    preset: str | None = None
    pretrained: str | None = None
    overrides: dict[str, Any] = field(default_factory=dict)


@dataclass
class DataConfig:
    """Training data.

    options: free-form dataset description passed to the task (annotation files, frames, synthetic...).
    num_sample: repeated-augmentation copies per loaded item (official ``--num_sample``); here it enters the
        linear lr-scaling rule, and a task that supports it (``finetune``) trains on that many independently
        augmented copies of every loaded video (``global_batch_size`` counts loaded videos).
    shuffle: shuffle the sample order each epoch (a pure function of seed and epoch).
    """

    options: dict[str, Any] = field(default_factory=dict)
    num_sample: int = 1
    shuffle: bool = True


@dataclass
class OptimConfig:
    """AdamW with layer-wise lr decay and weight-decay exclusions (spec §5.4, §6.2, §7.1).

    name: only ``adamw``.
    lr: base learning rate (before ``lr_scaling``).
    betas, eps, weight_decay: AdamW hyper-parameters. No decay on 1-D/scalar parameters, ``*.bias`` and the
        model's ``no_weight_decay()`` names, plus ``no_weight_decay`` below.
    layer_decay: group lr scale ``layer_decay ** (num_layers + 1 - layer_id)``; 1.0 disables it.
    grad_clip: max global gradient L2 norm; 0 disables clipping (the norm is still computed and logged).
    lr_scaling: ``linear`` multiplies lr, schedule.min_lr and schedule.start_warmup_value by
        ``global_batch_size * data.num_sample / lr_scaling_base`` (the official single-modality rule);
        ``none`` uses them as given (the official multi-modality configs).
    lr_scaling_base: the batch size the base lr refers to (256).
    no_weight_decay: extra parameter names (exact) excluded from weight decay.
    lr_scales: ``{glob pattern: multiplier}`` on the lr of matching parameters (official ``different_lr``),
        e.g. ``{"text_encoder.*": 0.05}``; the longest (most specific) matching pattern applies.
    """

    name: Literal["adamw"] = "adamw"
    lr: float = 1e-3
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    weight_decay: float = 0.05
    layer_decay: float = 1.0
    grad_clip: float = 0.0
    lr_scaling: Literal["none", "linear"] = "none"
    lr_scaling_base: int = 256
    no_weight_decay: list[str] = field(default_factory=list)
    lr_scales: dict[str, float] = field(default_factory=dict)


@dataclass
class ScheduleConfig:
    """Per-iteration learning-rate schedule (one value per optimizer step).

    name:
        ``cosine``: official single-modality ``utils.cosine_scheduler``: linear warmup from
            ``start_warmup_value`` to lr over W steps (``np.linspace``, both ends included), then
            ``min_lr + (lr - min_lr)(1 + cos(pi i / (S - W))) / 2`` for i = 0..S-W-1.
        ``cosine_multi``: official multi-modality ``get_cosine_schedule_with_warmup``: lr times
            ``max(min_lr_multi, step / W)`` during warmup, then
            ``max(min_lr_multi, (1 + cos(pi progress)) / 2)``.
        ``constant``: lr at every step.
    warmup_epochs: warmup length in epochs (fractions allowed); ``warmup_steps`` wins when set.
    warmup_steps: warmup length in optimizer steps.
    min_lr: final lr of ``cosine`` (scaled like lr under ``optim.lr_scaling: linear``).
    start_warmup_value: first warmup lr of ``cosine`` (scaled like lr).
    min_lr_multi: floor of the multiplier in ``cosine_multi``.
    """

    name: Literal["cosine", "cosine_multi", "constant"] = "cosine"
    warmup_epochs: float = 0.0
    warmup_steps: int | None = None
    min_lr: float = 0.0
    start_warmup_value: float = 0.0
    min_lr_multi: float = 0.0


@dataclass
class TrainConfig:
    """The loop.

    global_batch_size: samples per optimizer step over all ranks and micro-steps.
    batch_size: samples per rank per micro-step. Give one or both of the two batch fields; with
        world size W and accumulation A, ``global = batch_size * W * A`` must hold exactly.
    grad_accum: micro-steps per optimizer step; derived from the two batch sizes when null.
    epochs: training length in epochs (fractions allowed); ``max_steps`` wins when both are set.
        The schedule spans the training length.
    max_steps: training length in optimizer steps.
    seed: one seed for everything (model init, data order, per-sample augmentation, dropout).
    precision: ``auto`` (bf16 autocast on CUDA, fp32 on CPU), ``fp32``, ``bf16`` (autocast) or ``fp16``
        (autocast + GradScaler, CUDA only).
    device: ``auto`` (CUDA when available), ``cpu`` or ``cuda``.
    grad_checkpointing: call ``model.set_grad_checkpointing(True)`` (the model must provide it).
    num_workers: DataLoader worker processes per rank.
    eval_every_n_steps: run ``Task.evaluate`` every N steps (0: only at the end, when the task has one).
    deterministic: ``torch.use_deterministic_algorithms`` for the run, so that one seed gives bitwise the
        same run in every process. null (default): on for CPU (measured free there; without it stage 2's
        losses drift apart at the 8th digit between processes), off for CUDA (slower kernels, and ops
        without a deterministic kernel raise).
    """

    global_batch_size: int | None = None
    batch_size: int | None = None
    grad_accum: int | None = None
    epochs: float | None = None
    max_steps: int | None = None
    seed: int = 0
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "auto"
    device: Literal["auto", "cpu", "cuda"] = "auto"
    grad_checkpointing: bool = False
    num_workers: int = 0
    eval_every_n_steps: int = 0
    deterministic: bool | None = None


@dataclass
class DistConfig:
    """Distribution strategy. The world comes from torchrun's environment (single process without it).

    strategy: ``auto`` (``ddp`` when world size > 1, else ``none``), ``none``, ``ddp``, ``fsdp2``
        (``torch.distributed.fsdp.fully_shard`` on every child module the task lists, then the root) or
        ``deepspeed`` (optional package; ZeRO stage ``zero_stage``).
    backend: ``auto`` (nccl on CUDA, gloo on CPU), ``gloo`` or ``nccl``.
    zero_stage: DeepSpeed ZeRO stage (0, 1 or 2).
    find_unused_parameters: passed to DDP.
    timeout_s: collective timeout.
    """

    strategy: Literal["auto", "none", "ddp", "fsdp2", "deepspeed"] = "auto"
    backend: Literal["auto", "gloo", "nccl"] = "auto"
    zero_stage: int = 1
    find_unused_parameters: bool = False
    timeout_s: int = 1800


@dataclass
class CheckpointConfig:
    """Checkpoints (atomic files plus a ``latest`` pointer, see ``internvideo2.train.checkpoint``).

    dir: folder; default ``<output_dir>/checkpoints``. Relative paths are relative to output_dir.
    every_n_steps: periodic checkpoint every N optimizer steps (0: only the final one).
    keep_last_n: keep only the newest N checkpoints (0: keep all).
    save_final: write a checkpoint at the end of training.
    export_model: at the end, also write the trained model as ``<output_dir>/model`` (``config.json`` +
        ``model.safetensors``, loadable with ``internvideo2.load_model``) when the task's model supports it.
    resume: ``none``, ``auto`` (continue from ``latest`` when it exists, else start fresh) or a path to a
        checkpoint file or folder.
    """

    dir: str | None = None
    every_n_steps: int = 0
    keep_last_n: int = 3
    save_final: bool = True
    export_model: bool = True
    resume: str = "none"


@dataclass
class LogConfig:
    """Observability (rank 0 writes everything).

    every_n_steps: one ``metrics.jsonl`` line / TensorBoard point per N steps (means over the window).
    jsonl: write ``metrics.jsonl``.
    tensorboard: write TensorBoard event files under ``<output_dir>/tb`` (needs the ``tensorboard`` package).
    plot: save ``loss.png`` at the end (needs ``matplotlib``).
    progress: show a tqdm progress bar.
    """

    every_n_steps: int = 10
    jsonl: bool = True
    tensorboard: bool = True
    plot: bool = True
    progress: bool = True


@dataclass
class GuardsConfig:
    """Numerical guards.

    max_consecutive_nonfinite: a step whose loss or gradient norm is not finite (on any rank) is skipped;
        the run stops with an error after this many skipped steps in a row.
    """

    max_consecutive_nonfinite: int = 5


@dataclass
class RunConfig:
    """A whole run. ``smoke`` holds the overrides applied by ``--smoke`` (already applied when loaded so)."""

    output_dir: str = "runs/default"
    meta: MetaConfig = field(default_factory=MetaConfig)
    task: TaskConfig = field(default_factory=TaskConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    dist: DistConfig = field(default_factory=DistConfig)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    log: LogConfig = field(default_factory=LogConfig)
    guards: GuardsConfig = field(default_factory=GuardsConfig)
    smoke: dict[str, Any] = field(default_factory=dict)

    def validate(self) -> RunConfig:
        """Range and consistency checks that need no knowledge of the world size. Raises ConfigError."""
        o, s, t, d, c, lg = self.optim, self.schedule, self.train, self.dist, self.checkpoint, self.log
        _check(o.lr > 0 and math.isfinite(o.lr), "optim.lr", f"must be a finite number > 0, got {o.lr}")
        for i, b in enumerate(o.betas):
            _check(0.0 <= b < 1.0, f"optim.betas[{i}]", f"must be in [0, 1), got {b}")
        _check(o.eps > 0, "optim.eps", f"must be > 0, got {o.eps}")
        _check(o.weight_decay >= 0, "optim.weight_decay", f"must be >= 0, got {o.weight_decay}")
        _check(0 < o.layer_decay <= 1, "optim.layer_decay", f"must be in (0, 1], got {o.layer_decay}")
        _check(o.grad_clip >= 0, "optim.grad_clip", f"must be >= 0 (0 disables clipping), got {o.grad_clip}")
        _check(o.lr_scaling_base > 0, "optim.lr_scaling_base", f"must be > 0, got {o.lr_scaling_base}")
        _check(s.warmup_epochs >= 0, "schedule.warmup_epochs", f"must be >= 0, got {s.warmup_epochs}")
        _check(
            s.warmup_steps is None or s.warmup_steps >= 0,
            "schedule.warmup_steps",
            f"must be >= 0, got {s.warmup_steps}",
        )
        _check(s.min_lr >= 0, "schedule.min_lr", f"must be >= 0, got {s.min_lr}")
        _check(
            s.start_warmup_value >= 0,
            "schedule.start_warmup_value",
            f"must be >= 0, got {s.start_warmup_value}",
        )
        _check(0 <= s.min_lr_multi <= 1, "schedule.min_lr_multi", f"must be in [0, 1], got {s.min_lr_multi}")
        _check(self.data.num_sample >= 1, "data.num_sample", f"must be >= 1, got {self.data.num_sample}")
        for name in ("global_batch_size", "batch_size", "grad_accum", "max_steps"):
            v = getattr(t, name)
            _check(v is None or v >= 1, f"train.{name}", f"must be >= 1 (or null), got {v}")
        _check(
            t.global_batch_size is not None or t.batch_size is not None,
            "train.batch_size",
            "set train.batch_size (per rank) or train.global_batch_size (or both)",
        )
        _check(t.epochs is None or t.epochs > 0, "train.epochs", f"must be > 0 (or null), got {t.epochs}")
        _check(
            t.epochs is not None or t.max_steps is not None,
            "train.max_steps",
            "set train.max_steps or train.epochs",
        )
        _check(t.seed >= 0, "train.seed", f"must be >= 0, got {t.seed}")
        _check(t.num_workers >= 0, "train.num_workers", f"must be >= 0, got {t.num_workers}")
        _check(
            t.eval_every_n_steps >= 0, "train.eval_every_n_steps", f"must be >= 0, got {t.eval_every_n_steps}"
        )
        _check(d.zero_stage in (0, 1, 2), "dist.zero_stage", f"must be 0, 1 or 2, got {d.zero_stage}")
        _check(d.timeout_s > 0, "dist.timeout_s", f"must be > 0, got {d.timeout_s}")
        _check(c.every_n_steps >= 0, "checkpoint.every_n_steps", f"must be >= 0, got {c.every_n_steps}")
        _check(
            c.keep_last_n >= 0, "checkpoint.keep_last_n", f"must be >= 0 (0 keeps all), got {c.keep_last_n}"
        )
        _check(bool(c.resume), "checkpoint.resume", "must be 'none', 'auto' or a path")
        _check(lg.every_n_steps >= 1, "log.every_n_steps", f"must be >= 1, got {lg.every_n_steps}")
        _check(
            self.guards.max_consecutive_nonfinite >= 1,
            "guards.max_consecutive_nonfinite",
            f"must be >= 1, got {self.guards.max_consecutive_nonfinite}",
        )
        _check(bool(self.output_dir), "output_dir", "must not be empty")
        _check(bool(self.task.name), "task.name", "must not be empty")
        return self

    # convenience paths -----------------------------------------------------------------------------------
    @property
    def checkpoint_dir(self) -> Path:
        d = Path(self.checkpoint.dir) if self.checkpoint.dir else Path("checkpoints")
        return d if d.is_absolute() else Path(self.output_dir) / d


def _check(ok: bool, fieldname: str, reason: str) -> None:
    if not ok:
        raise ConfigError(fieldname, reason)


# ----------------------------------------------------------------------------------------------------------
# batch arithmetic (needs the world size, so it runs at engine setup, still before training)
# ----------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class BatchPlan:
    """Resolved batch sizes: ``global_batch_size == batch_size * world_size * grad_accum``."""

    global_batch_size: int
    batch_size: int
    grad_accum: int
    world_size: int


def resolve_batch(train: TrainConfig, world_size: int) -> BatchPlan:
    """Derive the missing batch fields for ``world_size`` ranks; ConfigError when they cannot agree."""
    g, b, a = train.global_batch_size, train.batch_size, train.grad_accum
    w = int(world_size)
    if g is None:
        if b is None:
            raise ConfigError("train.batch_size", "set train.batch_size or train.global_batch_size")
        a = a or 1
        return BatchPlan(b * w * a, b, a, w)
    if b is None:
        a = a or 1
        if g % (w * a):
            raise ConfigError(
                "train.global_batch_size", f"{g} is not divisible by world_size {w} x grad_accum {a}"
            )
        return BatchPlan(g, g // (w * a), a, w)
    if a is None:
        if g % (b * w):
            raise ConfigError(
                "train.global_batch_size",
                f"{g} is not a multiple of batch_size {b} x world_size {w}; "
                "change train.batch_size or set train.grad_accum",
            )
        return BatchPlan(g, b, g // (b * w), w)
    if g != b * w * a:
        raise ConfigError(
            "train.global_batch_size", f"{g} != batch_size {b} x world_size {w} x grad_accum {a}"
        )
    return BatchPlan(g, b, a, w)


# ----------------------------------------------------------------------------------------------------------
# YAML loading with _base_ inheritance
# ----------------------------------------------------------------------------------------------------------
# mappings whose keys are data (parameter-name patterns), not config paths: their dots are not expanded
LITERAL_KEY_FIELDS = frozenset({"optim.lr_scales"})


def _expand_dotted(tree: Any, where: str) -> Any:
    """Turn ``{"a.b": 1}`` into ``{"a": {"b": 1}}`` recursively (merging with existing nested keys). The
    keys of :data:`LITERAL_KEY_FIELDS` mappings (e.g. ``optim.lr_scales: {"text_encoder.*": 0.05}``) are
    kept as written."""
    if not isinstance(tree, dict):
        return tree
    out: dict[str, Any] = {}
    for key, value in tree.items():
        if not isinstance(key, str):
            raise ConfigError(f"{where}{key}", "keys must be strings")
        if f"{where}{key}" not in LITERAL_KEY_FIELDS:
            value = _expand_dotted(value, f"{where}{key}.")
        parts = key.split(".")
        if any(not p for p in parts):
            raise ConfigError(f"{where}{key}", "empty component in a dotted key")
        node = out
        for p in parts[:-1]:
            nxt = node.setdefault(p, {})
            if not isinstance(nxt, dict):
                raise ConfigError(f"{where}{key}", f"{p!r} is set both as a value and as a mapping")
            node = nxt
        last = parts[-1]
        if isinstance(node.get(last), dict) and isinstance(value, dict):
            node[last] = _deep_merge(node[last], value)
        else:
            node[last] = value
    return out


def _deep_merge(base: dict, over: dict) -> dict:
    """Mappings merge key by key; anything else in ``over`` replaces the value in ``base``."""
    out = dict(base)
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = _deep_merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def load_yaml_tree(path: str | os.PathLike, _stack: tuple[Path, ...] = ()) -> dict[str, Any]:
    """Read a recipe and its ``_base_`` chain into one merged mapping (no type checks yet)."""
    try:
        p = Path(path).expanduser().resolve()
        is_file, is_dir = p.is_file(), p.is_dir()
    except (OSError, RuntimeError, ValueError) as e:  # a name too long, a symlink loop, a NUL byte
        raise ConfigError("_base_" if _stack else "config", f"{str(path)[:200]}: unusable path ({e})") from None
    if p in _stack:
        chain = " -> ".join(str(x) for x in (*_stack, p))
        raise ConfigError("_base_", f"inheritance cycle: {chain}")
    if not is_file:
        where = f" (included from {_stack[-1]})" if _stack else ""
        what = "is a folder, expected a YAML recipe" if is_dir else "no such file"
        raise ConfigError("_base_" if _stack else "config", f"{p}: {what}{where}")
    try:
        raw = yaml.safe_load(p.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(str(p), f"invalid YAML: {exc}") from None
    except PermissionError:
        raise ConfigError("_base_" if _stack else "config", f"{p}: permission denied") from None
    except UnicodeDecodeError:
        raise ConfigError(str(p), "not a text file (expected a YAML recipe)") from None
    if not isinstance(raw, dict):
        raise ConfigError(str(p), f"top level must be a mapping, got {type(raw).__name__}")
    bases = raw.pop("_base_", None)
    tree: dict[str, Any] = {}
    if bases is not None:
        if isinstance(bases, str):
            bases = [bases]
        if not isinstance(bases, list) or not all(isinstance(b, str) for b in bases):
            raise ConfigError("_base_", f"{p}: must be a path or a list of paths")
        for b in bases:
            bp = Path(b).expanduser()
            if not bp.is_absolute():
                bp = p.parent / bp
            tree = _deep_merge(tree, load_yaml_tree(bp, (*_stack, p)))
    return _deep_merge(tree, _expand_dotted(raw, ""))


def config_from_dict(tree: dict[str, Any]) -> RunConfig:
    """Build and validate a RunConfig from a merged mapping."""
    return build_dataclass(RunConfig, _expand_dotted(tree, ""), "").validate()


def config_to_dict(cfg: Any) -> Any:
    """Plain (YAML/JSON/pickle-safe) mapping of a config; tuples become lists."""
    return jsonable(cfg)


def dump_config(cfg: RunConfig) -> str:
    """The resolved config as YAML (loadable again with ``load_config``)."""
    return yaml.safe_dump(config_to_dict(cfg), sort_keys=False)


# ----------------------------------------------------------------------------------------------------------
# command-line overrides
# ----------------------------------------------------------------------------------------------------------
def _field_type(path: list[str]) -> tuple[Any, bool]:
    """Annotation of a dotted path and whether it lies inside a free-form mapping; ConfigError if unknown."""
    cls: Any = RunConfig
    for i, part in enumerate(path):
        _, cls = is_optional(cls)
        if typing.get_origin(cls) is dict or cls is Any:
            return Any, True
        if not dataclasses.is_dataclass(cls):
            raise ConfigError(".".join(path), f"{'.'.join(path[:i])} is a {type_name(cls)}, not a mapping")
        hints = field_types(cls)
        if part not in hints:
            names = list(hints)
            close = difflib.get_close_matches(part, names, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else f"; known keys: {', '.join(names)}"
            raise ConfigError(".".join(path[: i + 1]), f"unknown key{hint}")
        cls = hints[part]
    return cls, False


def parse_override(text: str) -> tuple[str, Any]:
    """``"optim.lr=1e-4"`` -> ``("optim.lr", 0.0001)``. String fields keep the raw text."""
    if "=" not in text:
        raise ConfigError(text, "a command-line override must look like key.sub=value")
    key, raw = text.split("=", 1)
    key = key.strip()
    if not key or any(not p.isidentifier() for p in key.split(".")):
        raise ConfigError(key or text, "invalid override key (expected dotted identifiers, e.g. optim.lr)")
    tp, free = _field_type(key.split("."))
    opt, inner = is_optional(tp)
    if not free and inner is str:
        if opt and raw.strip().lower() in ("null", "none", "~"):
            return key, None
        return key, raw
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError as exc:
        raise ConfigError(key, f"cannot parse value {raw!r}: {exc}") from None
    if not free:
        coerce(value, tp, key)  # type errors name the field now, before anything runs
    return key, value


def apply_overrides(tree: dict[str, Any], overrides: list[str] | tuple[str, ...]) -> dict[str, Any]:
    """Apply ``key=value`` strings to a mapping (returns a new mapping)."""
    out = copy.deepcopy(tree)
    for text in overrides:
        key, value = parse_override(text)
        # a mapping value merges into an existing mapping; anything else replaces the old value
        out = _deep_merge(out, _expand_dotted({key: value}, ""))
    return out


def load_config(
    path: str | os.PathLike,
    overrides: list[str] | tuple[str, ...] = (),
    smoke: bool = False,
) -> RunConfig:
    """Load a recipe: ``_base_`` chain, the file, its ``smoke:`` section (with ``smoke=True``), then
    ``overrides``. Everything is type-checked and validated; errors are ConfigError naming the field."""
    tree = load_yaml_tree(path)
    if smoke:
        section = tree.get("smoke") or {}
        if not isinstance(section, dict) or not section:
            raise ConfigError("smoke", f"{path}: --smoke needs a non-empty 'smoke:' mapping of overrides")
        section = _expand_dotted(section, "smoke.")
        if "smoke" in section:
            raise ConfigError("smoke.smoke", "the smoke section cannot override itself")
        # type-check the smoke keys with their own names, so errors say smoke.<field>
        try:
            build_dataclass(RunConfig, _deep_merge({k: v for k, v in tree.items() if k != "smoke"}, section), "")
        except ConfigError as exc:
            raise ConfigError(f"smoke.{exc.field}", exc.reason) from None
        tree = _deep_merge(tree, section)
    tree = apply_overrides(tree, list(overrides))
    return config_from_dict(tree)
