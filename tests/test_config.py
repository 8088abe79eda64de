"""Run-config loading: _base_ inheritance, overrides with type checks, errors naming the field, recipes."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from internvideo2.errors import ConfigError
from internvideo2.train.config import (
    RunConfig,
    TrainConfig,
    config_from_dict,
    config_to_dict,
    dump_config,
    load_config,
    parse_override,
    resolve_batch,
)

ROOT = Path(__file__).resolve().parents[1]
OFFICIAL = sorted(p for p in (ROOT / "configs" / "official").glob("*.yaml") if not p.name.startswith("_"))
TINY = ROOT / "configs" / "tiny" / "engine.yaml"


def _write(tmp: Path, name: str, data: dict | str) -> Path:
    p = tmp / name
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(data if isinstance(data, str) else yaml.safe_dump(data))
    return p


def _field(exc_info) -> str:
    return exc_info.value.field


def test_base_inheritance_chain_and_overrides(tmp_path):
    _write(
        tmp_path,
        "base/root.yaml",
        {
            "optim": {"lr": 1e-3, "betas": [0.9, 0.98]},
            "train": {"batch_size": 4, "max_steps": 10},
            "task": {"options": {"a": 1, "nested": {"x": 1, "y": 2}}},
        },
    )
    _write(
        tmp_path,
        "mid.yaml",
        {
            "_base_": "base/root.yaml",
            "optim": {"weight_decay": 0.1},
            "task": {"options": {"nested": {"y": 3}}},
        },
    )
    leaf = _write(tmp_path, "leaf.yaml", {"_base_": ["mid.yaml"], "optim.lr": 2e-4, "train": {"seed": 7}})
    cfg = load_config(leaf)
    assert cfg.optim.lr == 2e-4  # leaf wins (dotted key at top level)
    assert cfg.optim.betas == (0.9, 0.98)  # from the root, converted to a tuple
    assert cfg.optim.weight_decay == 0.1  # from the middle file
    assert cfg.train.seed == 7 and cfg.train.batch_size == 4 and cfg.train.max_steps == 10
    assert cfg.task.options == {"a": 1, "nested": {"x": 1, "y": 3}}  # mappings merge key by key

    cfg = load_config(
        leaf,
        [
            "optim.lr=1e-4",
            "train.precision=bf16",
            "task.options.nested.x=[1, 2]",
            "output_dir=007",
            "checkpoint.dir=null",
        ],
    )
    assert cfg.optim.lr == pytest.approx(1e-4) and isinstance(cfg.optim.lr, float)
    assert cfg.train.precision == "bf16"
    assert cfg.task.options["nested"] == {"x": [1, 2], "y": 3}
    assert cfg.output_dir == "007"  # string fields keep the raw text
    assert cfg.checkpoint.dir is None


def test_roundtrip_dump_and_reload(tmp_path):
    cfg = load_config(TINY)
    p = _write(tmp_path, "dump.yaml", dump_config(cfg))
    assert config_to_dict(load_config(p)) == config_to_dict(cfg)


@pytest.mark.parametrize(
    "override, field",
    [
        ("optim.lrr=1", "optim.lrr"),  # unknown key
        ("optim.lr=abc", "optim.lr"),  # bad type
        ("optim.lr=-1", "optim.lr"),  # out of range (validation)
        ("train.precision=fp8", "train.precision"),  # not a choice
        ("train.batch_size=2.5", "train.batch_size"),
        ("optim.betas=[0.9]", "optim.betas"),
        ("optim.betas=[0.9, 1.5]", "optim.betas[1]"),
        ("optim.layer_decay=0", "optim.layer_decay"),
        ("log.tensorboard=maybe", "log.tensorboard"),
        ("guards.max_consecutive_nonfinite=0", "guards.max_consecutive_nonfinite"),
        ("dist.zero_stage=3", "dist.zero_stage"),
        ("dist.strategy=fsdp", "dist.strategy"),
        ("nosuchsection.x=1", "nosuchsection"),
        ("optim.lr.x=1", "optim.lr.x"),  # a scalar is not a mapping
        ("no-equals-sign", "no-equals-sign"),
    ],
)
def test_bad_override_names_the_field(override, field):
    with pytest.raises(ConfigError) as ei:
        load_config(TINY, [override])
    assert _field(ei) == field
    assert field in str(ei.value)


def test_unknown_key_in_yaml_suggests(tmp_path):
    p = _write(tmp_path, "bad.yaml", {"train": {"batch_size": 2, "max_stepz": 3}})
    with pytest.raises(ConfigError) as ei:
        load_config(p)
    assert _field(ei) == "train.max_stepz" and "max_steps" in ei.value.reason


def test_file_errors(tmp_path):
    with pytest.raises(ConfigError, match="no such file"):
        load_config(tmp_path / "missing.yaml")
    p = _write(tmp_path, "a.yaml", {"_base_": "missing_base.yaml"})
    with pytest.raises(ConfigError) as ei:
        load_config(p)
    assert _field(ei) == "_base_" and "missing_base.yaml" in str(ei.value)
    _write(tmp_path, "c1.yaml", {"_base_": "c2.yaml"})
    p = _write(tmp_path, "c2.yaml", {"_base_": "c1.yaml"})
    with pytest.raises(ConfigError, match="cycle"):
        load_config(p)
    p = _write(tmp_path, "broken.yaml", "train: [unclosed\n")
    with pytest.raises(ConfigError, match="invalid YAML"):
        load_config(p)
    p = _write(tmp_path, "nolen.yaml", {"train": {"batch_size": 2}})
    with pytest.raises(ConfigError) as ei:
        load_config(p)
    assert _field(ei) == "train.max_steps"


def test_smoke_section(tmp_path):
    p = _write(
        tmp_path,
        "r.yaml",
        {
            "train": {"batch_size": 64, "max_steps": 1000},
            "smoke": {"train.batch_size": 2, "train": {"max_steps": 3}},
        },
    )
    assert load_config(p).train.max_steps == 1000
    cfg = load_config(p, smoke=True)
    assert (cfg.train.batch_size, cfg.train.max_steps) == (2, 3)
    assert load_config(p, ["train.max_steps=5"], smoke=True).train.max_steps == 5  # CLI wins over smoke
    bad = _write(
        tmp_path, "b.yaml", {"train": {"batch_size": 2, "max_steps": 3}, "smoke": {"train.seeed": 1}}
    )
    with pytest.raises(ConfigError) as ei:
        load_config(bad, smoke=True)
    assert _field(ei) == "smoke.train.seeed"
    nosmoke = _write(tmp_path, "n.yaml", {"train": {"batch_size": 2, "max_steps": 3}})
    with pytest.raises(ConfigError) as ei:
        load_config(nosmoke, smoke=True)
    assert _field(ei) == "smoke"


@pytest.mark.parametrize(
    "g, b, a, w, expect",
    [
        (16, None, None, 2, (16, 8, 1)),
        (16, 4, None, 2, (16, 4, 2)),
        (None, 4, 3, 2, (24, 4, 3)),
        (16, None, 2, 2, (16, 4, 2)),
        (16, 4, 2, 2, (16, 4, 2)),
    ],
)
def test_resolve_batch(g, b, a, w, expect):
    plan = resolve_batch(TrainConfig(global_batch_size=g, batch_size=b, grad_accum=a, max_steps=1), w)
    assert (plan.global_batch_size, plan.batch_size, plan.grad_accum) == expect


@pytest.mark.parametrize("g, b, a, w", [(16, None, None, 3), (16, 3, None, 2), (16, 4, 3, 2)])
def test_resolve_batch_errors(g, b, a, w):
    with pytest.raises(ConfigError) as ei:
        resolve_batch(TrainConfig(global_batch_size=g, batch_size=b, grad_accum=a, max_steps=1), w)
    assert _field(ei) == "train.global_batch_size"


def test_defaults_validate():
    cfg = config_from_dict({"train": {"batch_size": 1, "max_steps": 1}})
    assert isinstance(cfg, RunConfig) and cfg.dist.strategy == "auto"
    assert parse_override("schedule.warmup_steps=null") == ("schedule.warmup_steps", None)


def test_tiny_recipe_validates():
    cfg = load_config(TINY)
    assert cfg.task.name == "toy_contrastive" and cfg.meta.kind == "local"
    assert load_config(TINY, smoke=True).train.max_steps == 4


def test_official_recipes_exist():
    names = {p.stem for p in OFFICIAL}
    for needed in (
        "stage1_1b",
        "stage1_6b",
        "stage2_1b",
        "stage2_6b",
        "clip_1b",
        "clip_6b",
        "distill_s14",
        "distill_b14",
        "distill_l14",
        "finetune_1b_k710",
        "finetune_1b_k400",
        "finetune_1b_ssv2",
        "finetune_6b_k710",
        "finetune_6b_k400",
        "finetune_6b_ssv2",
        "probe_linear_k400",
        "probe_attentive_k710",
    ):
        assert needed in names, f"configs/official/{needed}.yaml is missing"


@pytest.mark.parametrize("path", OFFICIAL, ids=lambda p: p.stem)
def test_official_recipe_parses_and_validates(path):
    """Every published recipe and its smoke variant load against the dataclasses (task-specific options
    stay in free-form mappings until the tasks are registered)."""
    cfg = load_config(path)
    assert cfg.meta.kind == "gpu-cluster", "official recipes are marked as GPU-cluster recipes"
    assert cfg.meta.reference, "official recipes cite their source"
    assert cfg.task.name in ("stage1", "stage2", "clip", "distill", "finetune")
    assert cfg.model.preset
    assert cfg.train.global_batch_size and (cfg.train.epochs or cfg.train.max_steps)
    smoke = load_config(path, smoke=True)
    assert smoke.train.max_steps is not None and smoke.train.max_steps <= 10
    assert smoke.train.precision == "fp32" and smoke.train.device == "cpu"
    assert smoke.train.global_batch_size <= 8
    assert smoke.model.preset == "tiny" != cfg.model.preset
    assert smoke.model.pretrained is None and smoke.data.options.get("synthetic") is True
    assert smoke.checkpoint.every_n_steps == 0
    assert smoke.log.tensorboard is False or smoke.log.tensorboard is True


@pytest.mark.parametrize("path", OFFICIAL, ids=lambda p: p.stem)
def test_official_recipe_options_validate_against_the_task(path):
    """The real recipe (not only its smoke variant) passes its task's option check, as `--check` does, and
    names no smoke-only switch; the published teacher / checkpoint / annotation files stay named."""
    from internvideo2.train.tasks import get_task

    cfg = load_config(path)
    get_task(cfg.task.name, cfg.task.module).validate(cfg)
    opts, data = cfg.task.options, cfg.data.options
    assert not opts.get("random_teachers") and not data.get("synthetic")
    if data.get("corpora"):  # stage 2's mixed image + video corpora: each names its annotation file
        assert all(c.get("annotation") and c.get("corpus", "json") == "json" for c in data["corpora"])
    elif cfg.task.name in ("stage1", "distill", "finetune", "stage2", "clip"):
        assert data.get("annotation"), "the real recipe names its annotation file"
        assert data.get("corpus") not in (None, "synth"), "the real recipe reads its annotation, not synthetic data"
    if cfg.task.name == "stage1":
        assert opts["clip_teacher"] and opts["mae_teacher"]
    if cfg.task.name == "distill":
        assert opts["teacher"]
    if cfg.task.name in ("finetune", "stage2", "clip"):
        assert cfg.model.pretrained, "the real recipe names the checkpoint it starts from"
    from internvideo2.cli import main as cli_main

    assert cli_main(["train", str(path), "--check", "--quiet"]) == 0


def _meta_teacher(path, field, kind=None, return_layer=None, return_interval=None):
    """The official teachers' architectures (InternVL-C 6B, VideoMAEv2-g, stage-2 1B at 8 frames), on the
    meta device: what the recipes' teacher folders hold, without weights."""
    from internvideo2.models.config import TeacherConfig, vision_config
    from internvideo2.models.variants import TeacherModel

    if kind == "internvl_clip":
        tc = TeacherConfig(vision=vision_config("internvl-c-6b"), kind="internvl_clip", return_layer=1)
    elif kind == "videomae":
        tc = TeacherConfig(vision=vision_config("videomae-g14"), kind="videomae", return_layer=1)
    else:
        tc = TeacherConfig(vision=vision_config("internvideo2-1b", num_frames=8), kind="internvideo2",
                           return_layer=return_layer, return_interval=return_interval)
    return TeacherModel(tc).eval().requires_grad_(False)


@pytest.mark.parametrize("path", OFFICIAL, ids=lambda p: p.stem)
def test_official_recipe_builds_its_published_model(path, monkeypatch, tmp_path):
    """Every real recipe builds its full-size model (on the meta device: no memory, no weights; files that
    do not exist here are switched off) with the published layer pairing and freezing."""
    import torch

    import internvideo2.train.stage1 as stage1
    from internvideo2.train.tasks import get_task

    monkeypatch.setattr(stage1, "load_teacher", _meta_teacher)
    cfg = load_config(path, ["model.pretrained=null"])
    for key, off in (("text_pretrained", False), ("pretrained_extra", None), ("k710_head_transfer", False),
                     ("text_checkpoint", None), ("tokenizer", str(tmp_path))):
        if key in cfg.task.options:
            cfg.task.options[key] = off
    task = get_task(cfg.task.name, cfg.task.module)
    task.validate(cfg)
    with torch.device("meta"):
        model = task.build_model(cfg)
    if cfg.train.grad_checkpointing:
        model.set_grad_checkpointing(True)
    trainable = {n.split(".")[0] for n, p in model.named_parameters() if p.requires_grad}
    if cfg.task.name == "stage1":
        depth = model.config.vision.depth
        assert model.config.clip_student_index == list(range(depth - 6, depth))
        assert model.config.mae_student_index == list(range(depth - 4, depth))
        assert task.clip_teacher.return_index == [42, 43, 44, 45, 46, 47]
        assert task.mae_teacher.return_index == [36, 37, 38, 39]
        assert model.config.vision.num_frames == 8 and model.config.vision.drop_path_rate > 0
    elif cfg.task.name == "distill":
        assert task.teacher.return_index == [23, 26, 29, 33, 36, 39]
        assert model.config.clip_decoder == "mlp" and len(model.config.clip_student_index) == 6
    elif cfg.task.name == "clip":  # the attention pool, the temperature (and vision_align: CLIP S/B/L)
        assert trainable == {"vision_encoder", "temp"} | ({"vision_align"} if model.config.align_dim else set())
        pool = {n for n, _ in model.vision_encoder.named_parameters(prefix="vision_encoder")
                if n.startswith("vision_encoder.clip_projector.")}
        assert pool and {n for n, p in model.named_parameters() if p.requires_grad and n != "temp"
                         and not n.startswith("vision_align.")} == pool
    elif cfg.task.name == "finetune":
        mode = cfg.task.options.get("mode", "full")
        want = {"linear": {"fc_norm", "head"}, "attentive": {"fc_norm", "head", "clip_projector"}}.get(mode)
        if want is not None:
            assert trainable == want
        assert model.config.num_classes == cfg.task.options["num_classes"]


def test_lr_scales_patterns_keep_their_dots(tmp_path):
    """Parameter-name patterns are data: ``text_encoder.*`` must not become a nested config path."""
    from internvideo2.train.config import load_config

    base = tmp_path / "base.yaml"
    base.write_text("train: {global_batch_size: 8, max_steps: 1}\noptim:\n  lr_scales: {'text_encoder.*': 0.05}\n")
    child = tmp_path / "child.yaml"
    child.write_text("_base_: base.yaml\noptim.lr_scales: {'text_encoder.bert.encoder.layer.[45].*': 1.0}\n")
    cfg = load_config(child, ['optim.lr_scales={"text_encoder.cls.*": 1.0}'])
    assert cfg.optim.lr_scales == {"text_encoder.*": 0.05, "text_encoder.bert.encoder.layer.[45].*": 1.0,
                                   "text_encoder.cls.*": 1.0}
