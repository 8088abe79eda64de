"""Typed task/data options (one parser refuses unknown keys and wrong types for every task) and the one
place that resolves a run's frames and input size (``train.common.resolve_input``)."""
from __future__ import annotations

import pytest

from internvideo2.errors import ConfigError
from internvideo2.train.config import config_from_dict
from internvideo2.train.tasks import KNOWN_TASK_MODULES, get_task

# the smallest valid options of each task that needs some
REQUIRED = {"stage1": {"random_teachers": True}, "distill": {"random_teachers": True}}


def _cfg(task: str, tmp_path, task_options=None, data=None, overrides=None, preset="tiny"):
    return config_from_dict({
        "output_dir": str(tmp_path),
        "task": {"name": task, "options": {**REQUIRED.get(task, {}), **(task_options or {})}},
        "model": {"preset": preset, "overrides": overrides or {}},
        "data": {"options": {"synthetic": True, **(data or {})}},
        "train": {"global_batch_size": 2, "max_steps": 1},
    })


VIDEO_TASKS = ["clip_teacher", "mae_teacher", "stage1", "distill", "stage2", "clip", "finetune"]


def test_every_known_task_is_covered():
    assert set(KNOWN_TASK_MODULES) == set(VIDEO_TASKS) | {"toy_contrastive"}


@pytest.mark.parametrize("task", VIDEO_TASKS + ["toy_contrastive"])
def test_unknown_and_mistyped_task_options_are_refused_naming_the_field(task, tmp_path):
    t = get_task(task)
    t.validate(_cfg(task, tmp_path, preset="videomae-g14" if task == "mae_teacher" else "tiny")
               if task != "toy_contrastive" else config_from_dict({"output_dir": str(tmp_path),
                                                                   "task": {"name": task},
                                                                   "train": {"global_batch_size": 2, "max_steps": 1}}))
    with pytest.raises(ConfigError) as ei:
        t.validate(config_from_dict({"output_dir": str(tmp_path), "task": {"name": task, "options": {
            **REQUIRED.get(task, {}), "no_such_option": 1}}, "train": {"global_batch_size": 2, "max_steps": 1}}))
    assert ei.value.field == "task.options.no_such_option" and "unknown key" in ei.value.reason
    # a wrong type names the field too (every task has a float option)
    name = {"clip_teacher": "temp", "mae_teacher": "mask_ratio", "stage1": "mask_ratio", "distill": "mask_ratio",
            "stage2": "temp", "clip": "temp", "finetune": "mixup", "toy_contrastive": "noise"}[task]
    with pytest.raises(ConfigError) as ei:
        t.validate(_cfg(task, tmp_path, {name: "lots"}))
    assert ei.value.field == f"task.options.{name}" and "number" in ei.value.reason


@pytest.mark.parametrize("task", VIDEO_TASKS)
def test_unknown_data_options_are_refused_with_a_suggestion(task, tmp_path):
    with pytest.raises(ConfigError) as ei:
        get_task(task).validate(_cfg(task, tmp_path, data={"num_frame": 4}))
    assert ei.value.field == "data.options.num_frame" and "num_frames" in ei.value.reason


def test_nested_and_union_options_are_typed(tmp_path):
    t = get_task("stage2")
    o = t.options(_cfg("stage2", tmp_path, {"loss_weight": {"vtm": 0}, "text_pretrained": "/some/bert"}))
    assert (o.loss_weight.vtc, o.loss_weight.vtm, o.loss_weight.uta) == (1.0, 0.0, 0.0)  # merged over defaults
    assert o.text_pretrained == "/some/bert"
    with pytest.raises(ConfigError, match="task.options.loss_weight.vtm"):
        t.options(_cfg("stage2", tmp_path, {"loss_weight": {"vtm": -1}}))
    with pytest.raises(ConfigError, match="task.options.loss_weight.itc"):
        t.options(_cfg("stage2", tmp_path, {"loss_weight": {"itc": 1}}))
    with pytest.raises(ConfigError, match="task.options.text_pretrained"):
        t.options(_cfg("stage2", tmp_path, {"text_pretrained": 3}))


# ---------------------------------------------------------------------------------------------------------
# frames and size: resolved once
# ---------------------------------------------------------------------------------------------------------
def _resolve(task, tmp_path, **kw):
    t = get_task(task)
    out = t.resolve(_cfg(task, tmp_path, **kw))
    vis = out[2]
    inp = out[-1]
    return vis, inp


def test_model_overrides_num_frames_works_as_documented(tmp_path):
    vis, inp = _resolve("stage2", tmp_path, overrides={"num_frames": 2}, data={"image_res": 28})
    assert vis.num_frames == 2 and inp.data_frames == 2 and vis.img_size == inp.img_size == 28
    vis, inp = _resolve("finetune", tmp_path, overrides={"num_frames": 6, "img_size": 42})
    assert (vis.num_frames, inp.data_frames, vis.img_size) == (6, 6, 42)


def test_data_options_set_the_size_when_the_model_does_not(tmp_path):
    vis, inp = _resolve("stage2", tmp_path, data={"num_frames": 2, "image_res": 28})
    assert (vis.num_frames, inp.data_frames, vis.img_size, inp.img_size) == (2, 2, 28, 28)


def test_neither_set_takes_the_preset(tmp_path):
    for task in ("stage2", "finetune", "distill", "clip"):
        vis, inp = _resolve(task, tmp_path)  # preset tiny: 4 frames at 56
        assert (vis.num_frames, inp.data_frames, vis.img_size) == (4, 4, 56), task


@pytest.mark.parametrize("task", ["stage2", "clip", "finetune", "distill", "mae_teacher"])
def test_two_places_that_disagree_fail_naming_both(task, tmp_path):
    preset = "videomae-g14" if task == "mae_teacher" else "tiny"
    with pytest.raises(ConfigError) as ei:
        get_task(task).validate(_cfg(task, tmp_path, overrides={"num_frames": 2}, data={"num_frames": 4},
                                     preset=preset))
    assert ei.value.field == "data.options.num_frames" and "model.overrides.num_frames=2" in ei.value.reason
    with pytest.raises(ConfigError) as ei:
        get_task(task).validate(_cfg(task, tmp_path, overrides={"img_size": 28}, data={"image_res": 56},
                                     preset=preset))
    assert ei.value.field == "data.options.image_res" and "model.overrides.img_size=28" in ei.value.reason
    # agreeing values are fine
    get_task(task).validate(_cfg(task, tmp_path, overrides={"num_frames": 2, "img_size": 28},
                                 data={"num_frames": 2, "image_res": 28}, preset=preset))


def test_stage1_data_gives_twice_the_student_frames(tmp_path):
    vis, inp = _resolve("stage1", tmp_path, data={"num_frames": 8})
    assert (vis.num_frames, inp.data_frames) == (4, 8)
    vis, inp = _resolve("stage1", tmp_path, overrides={"num_frames": 2})
    assert (vis.num_frames, inp.data_frames) == (2, 4)
    with pytest.raises(ConfigError, match="2 x 2 = 4"):
        _resolve("stage1", tmp_path, overrides={"num_frames": 2}, data={"num_frames": 2})
    with pytest.raises(ConfigError, match="not a multiple of 2"):  # was silently floored
        _resolve("stage1", tmp_path, data={"num_frames": 5})


def test_the_per_frame_clip_teacher_keeps_one_frame(tmp_path):
    vis, inp = _resolve("clip_teacher", tmp_path, data={"num_frames": 4, "image_res": 28}, preset="internvl-c-6b")
    assert (vis.num_frames, vis.tubelet_size, inp.data_frames, vis.img_size) == (1, 1, 4, 28)
    with pytest.raises(ConfigError, match="model.overrides.num_frames"):
        _resolve("clip_teacher", tmp_path, overrides={"num_frames": 4}, preset="internvl-c-6b")


def test_the_built_model_and_dataset_use_the_resolved_input(tmp_path):
    cfg = _cfg("stage2", tmp_path, {"text_encoder": "bert_tiny", "text_pretrained": False, "max_txt_l": 8},
               overrides={"num_frames": 2, "img_size": 28}, data={"synth_train": 4, "synth_heldout": 0})
    t = get_task("stage2")
    model = t.build_model(cfg)
    ds = t.build_train_dataset(cfg)
    assert model.vision_backbone.cfg.num_frames == 2 and model.vision_backbone.cfg.img_size == 28
    assert tuple(ds[0]["video"].shape) == (2, 3, 28, 28)
