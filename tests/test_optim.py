"""Optimizer groups (layer-wise lr decay, weight-decay exclusions) and lr schedules vs hand values."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from internvideo2.errors import ConfigError
from internvideo2.train.config import config_from_dict
from internvideo2.train.optim import (
    CosineMultiSchedule,
    CosineSchedule,
    build_optimizer,
    build_param_groups,
    build_schedule,
    cosine_scheduler,
    lr_scale_factor,
)
from internvideo2.train.tasks import Task, vit_layer_id
from internvideo2.train.toy import ToyOptions, ToyVideoText


def _groups_by_name(groups):
    return {n: g for g in groups for n in g["names"]}


def test_layer_decay_and_weight_decay_exclusions_on_toy_vit():
    model = ToyVideoText(ToyOptions(depth=3))
    layer_id, num_layers = Task().param_group_fn(model, None)
    assert num_layers == 3
    d = 0.8
    groups = build_param_groups(
        model.named_parameters(), 0.05, d, layer_id, num_layers, model.no_weight_decay()
    )
    by = _groups_by_name(groups)
    names = [n for n, _ in model.named_parameters()]
    assert sorted(by) == sorted(names)  # every trainable parameter exactly once

    # layer ids (official get_layer_id_for_vit): 0 for cls/pos/patch_embed, i+1 for blocks.i, L+1 otherwise
    expect_id = {
        "cls_token": 0,
        "pos_embed": 0,
        "patch_embed.proj.weight": 0,
        "patch_embed.proj.bias": 0,
        "blocks.0.qkv.weight": 1,
        "blocks.1.norm1.weight": 2,
        "blocks.2.mlp.3.bias": 3,
        "norm.weight": 4,
        "head.weight": 4,
        "text_encoder.0.weight": 4,
        "temp": 4,
    }
    for n, lid in expect_id.items():
        assert by[n]["lr_scale"] == pytest.approx(d ** (num_layers + 1 - lid)), n
        assert by[n]["group_name"].startswith(f"layer_{lid}_"), n

    # weight decay: none on 1-D params, biases and no_weight_decay() names; decay on the rest
    no_decay = {
        "cls_token",
        "pos_embed",
        "temp",
        "patch_embed.proj.bias",
        "blocks.0.norm1.weight",
        "blocks.0.norm1.bias",
        "blocks.0.qkv.bias",
        "norm.weight",
        "head.bias",
    }
    decay = {
        "patch_embed.proj.weight",
        "blocks.0.qkv.weight",
        "blocks.1.mlp.0.weight",
        "head.weight",
        "vision_proj.weight",
        "text_proj.weight",
    }
    for n in no_decay:
        assert by[n]["weight_decay"] == 0.0 and by[n]["group_name"].endswith("_no_decay"), n
    for n in decay:
        assert by[n]["weight_decay"] == 0.05 and by[n]["group_name"].endswith("_decay"), n
    # pos_embed and cls_token are 3-D: only the no_weight_decay() names exempt them
    plain = _groups_by_name(build_param_groups(model.named_parameters(), 0.05, d, layer_id, num_layers, ()))
    assert plain["pos_embed"]["weight_decay"] == 0.05 and plain["cls_token"]["weight_decay"] == 0.05

    opt = build_optimizer(groups, lr=1e-3, betas=(0.9, 0.98), eps=1e-6)
    for g in opt.param_groups:
        assert g["lr"] == pytest.approx(1e-3 * g["lr_scale"])
        assert g["betas"] == (0.9, 0.98) and g["eps"] == 1e-6


def test_frozen_params_and_model_layer_id_method():
    class M(nn.Module):
        def __init__(self):
            super().__init__()
            self.enc = nn.Linear(4, 4)
            self.dec = nn.Linear(4, 4)
            self.enc.weight.requires_grad_(False)

        def get_num_layers(self):
            return 1

        def get_layer_id(self, name):  # a model-specific rule wins over the ViT default
            return 0 if name.startswith("enc") else 2

    m = M()
    fn, n = Task().param_group_fn(m, None)
    by = _groups_by_name(build_param_groups(m.named_parameters(), 0.1, 0.5, fn, n))
    assert "enc.weight" not in by  # frozen
    assert by["enc.bias"]["lr_scale"] == pytest.approx(0.25) and by["dec.weight"]["lr_scale"] == 1.0
    assert Task().param_group_fn(nn.Linear(2, 2), None) is None
    assert vit_layer_id("mask_token", 40) == 0 and vit_layer_id("blocks.39.x", 40) == 40
    assert vit_layer_id("clip_projector.q", 40) == 41


def _official_cosine(base, final, epochs, niter, warmup_epochs=0, start_warmup_value=0.0, warmup_steps=-1):
    """Reference: the official single-modality utils.cosine_scheduler, in numpy."""
    warmup_schedule = np.array([])
    warmup_iters = warmup_epochs * niter
    if warmup_steps > 0:
        warmup_iters = warmup_steps
    if warmup_epochs > 0:
        warmup_schedule = np.linspace(start_warmup_value, base, warmup_iters)
    iters = np.arange(epochs * niter - warmup_iters)
    schedule = np.array(
        [final + 0.5 * (base - final) * (1 + math.cos(math.pi * i / (len(iters)))) for i in iters]
    )
    return np.concatenate((warmup_schedule, schedule))


def test_cosine_schedule_hand_values():
    s = CosineSchedule(base=1.0, final=0.1, total_steps=10, warmup_steps=3, start_warmup_value=0.1)
    assert [s(i) for i in range(3)] == pytest.approx([0.1, 0.55, 1.0])  # linspace, both ends included
    assert s(3) == pytest.approx(1.0)  # cosine starts at the base
    assert s(4) == pytest.approx(0.1 + 0.45 * (1 + math.cos(math.pi / 7)))  # i=1 of 7
    assert s(9) == pytest.approx(0.1 + 0.45 * (1 + math.cos(6 * math.pi / 7)))
    assert s(100) == s(9)  # clamped past the end
    no_warm = CosineSchedule(base=2.0, final=0.0, total_steps=4)
    assert no_warm.values() == pytest.approx(
        [2.0, 1.0 + math.cos(math.pi / 4), 1.0, 1.0 + math.cos(3 * math.pi / 4)]
    )


@pytest.mark.parametrize(
    "kw",
    [
        dict(epochs=5, niter=7, warmup_epochs=2, start_warmup_value=1e-6),
        dict(epochs=3, niter=4, warmup_epochs=0),
        dict(epochs=4, niter=5, warmup_epochs=1, warmup_steps=3),
    ],
)
def test_cosine_schedule_matches_official(kw):
    ours = cosine_scheduler(
        2.4e-3,
        1.6e-4,
        kw["epochs"],
        kw["niter"],
        kw.get("warmup_epochs", 0),
        kw.get("start_warmup_value", 0.0),
        kw.get("warmup_steps", -1),
    )
    ref = _official_cosine(2.4e-3, 1.6e-4, **kw)
    assert len(ours) == len(ref)
    np.testing.assert_allclose(ours, ref, rtol=1e-12, atol=0)


def test_cosine_multi_schedule_hand_values():
    s = CosineMultiSchedule(base=1.0, total_steps=10, warmup_steps=2, min_lr_multi=0.01)
    assert s(0) == pytest.approx(0.01)  # max(min_lr_multi, 0/2): starts at the floor, not 0
    assert s(1) == pytest.approx(0.5)
    assert s(2) == pytest.approx(1.0)
    assert s(6) == pytest.approx(0.5)  # progress 4/8
    assert s(9) == pytest.approx(0.5 * (1 + math.cos(7 * math.pi / 8)))
    floor = CosineMultiSchedule(base=4e-4, total_steps=10, warmup_steps=2, min_lr_multi=0.05)
    assert floor(9) == pytest.approx(4e-4 * 0.05)
    frac = CosineMultiSchedule(
        base=1.0, total_steps=10, warmup_steps=2.5, min_lr_multi=0.0
    )  # 0.6 epoch warmups
    assert frac(2) == pytest.approx(0.8)
    assert frac(3) == pytest.approx(0.5 * (1 + math.cos(math.pi * 0.5 / 7.5)))


def test_build_schedule_from_config_and_lr_scaling():
    cfg = config_from_dict(
        {
            "optim": {"lr": 1.5e-4, "lr_scaling": "linear"},
            "schedule": {"name": "cosine", "warmup_epochs": 2, "min_lr": 1e-5, "start_warmup_value": 1e-6},
            "train": {"global_batch_size": 4096, "epochs": 4},
        }
    )
    scale = lr_scale_factor("linear", 4096, 1, 256)
    assert scale == 16
    s = build_schedule(cfg, total_steps=40, steps_per_epoch=10, scale=scale)
    assert s(0) == pytest.approx(1.6e-5) and s(19) == pytest.approx(2.4e-3) and s(20) == pytest.approx(2.4e-3)
    assert s(39) == pytest.approx(1.6e-4 + 0.5 * (2.4e-3 - 1.6e-4) * (1 + math.cos(math.pi * 19 / 20)))
    assert lr_scale_factor("linear", 256, 2, 256) == 2 and lr_scale_factor("none", 4096, 2, 256) == 1
    cfg_m = config_from_dict(
        {
            "optim": {"lr": 4e-4},
            "schedule": {"name": "cosine_multi", "warmup_epochs": 0.6, "min_lr_multi": 0.01},
            "train": {"batch_size": 2, "epochs": 3},
        }
    )
    sm = build_schedule(cfg_m, total_steps=30, steps_per_epoch=10, scale=1.0)
    assert sm.warmup_steps == pytest.approx(6.0) and sm(3) == pytest.approx(4e-4 * 0.5)
    with pytest.raises(ConfigError) as ei:
        build_schedule(cfg, total_steps=10, steps_per_epoch=10, scale=1.0)  # 20 warmup steps > 10
    assert ei.value.field == "schedule.warmup_epochs"


def test_adamw_group_decay_is_decoupled():
    """The no-decay group really gets no decay: with zero gradients only decayed weights shrink."""
    a, b = nn.Parameter(torch.ones(3, 3)), nn.Parameter(torch.ones(3))
    groups = build_param_groups([("w", a), ("b", b)], 0.5)
    opt = build_optimizer(groups, lr=0.1, betas=(0.9, 0.999), eps=1e-8)
    a.grad, b.grad = torch.zeros_like(a), torch.zeros_like(b)
    opt.step()
    assert torch.allclose(a, torch.full_like(a, 1 - 0.1 * 0.5)) and torch.equal(b, torch.ones(3))


def test_lr_scales_by_name_pattern():
    """Official ``different_lr``: a pretrained tower can train at a fraction of the base lr."""
    from torch import nn

    from internvideo2.train.optim import build_param_groups

    model = nn.ModuleDict({"vision": nn.Linear(4, 4), "text_encoder": nn.ModuleDict({"layer": nn.Linear(4, 4)})})
    groups = build_param_groups(model.named_parameters(), 0.05, lr_scales={"text_encoder.*": 0.1})
    by_name = {n: g["lr_scale"] for g in groups for n in g["names"]}
    assert by_name["vision.weight"] == 1.0 and by_name["text_encoder.layer.weight"] == 0.1
    assert by_name["text_encoder.layer.bias"] == 0.1
    assert {g["group_name"] for g in groups} == {"decay", "no_decay", "decay@text_encoder.*",
                                                 "no_decay@text_encoder.*"}


def test_lr_scales_most_specific_pattern_wins():
    from torch import nn

    from internvideo2.train.optim import build_param_groups

    model = nn.ModuleDict({"text_encoder": nn.ModuleDict({"layer0": nn.Linear(2, 2), "layer4": nn.Linear(2, 2)})})
    for scales in ({"text_encoder.*": 0.05, "text_encoder.layer4.*": 1.0},
                   {"text_encoder.layer4.*": 1.0, "text_encoder.*": 0.05}):
        groups = build_param_groups(model.named_parameters(), 0.0, lr_scales=scales)
        by_name = {n: g["lr_scale"] for g in groups for n in g["names"]}
        assert by_name["text_encoder.layer4.weight"] == 1.0 and by_name["text_encoder.layer0.weight"] == 0.05
