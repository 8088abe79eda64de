"""Issue 18: every mistake a user can make gets a clear, typed answer, and nothing is silently wrong.

Each test reproduces one reported failure with real files, real processes and (where permissions matter)
a process that file permissions bind; the embed-specific items live in ``test_embed_updates.py``."""
from __future__ import annotations

import json
import math
import os
import shutil
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import ROOT, asset, foreign, unprivileged

from internvideo2.checkpoint import load_model
from internvideo2.checkpoint.io import read_checkpoint
from internvideo2.checkpoint.pretrained import CONFIG_FILE, WEIGHTS_FILE, from_pretrained, save_pretrained
from internvideo2.data.annotations import read_classification
from internvideo2.errors import AnnotationError, CheckpointError, ConfigError, ShapeError
from internvideo2.models import create_model, model_types
from internvideo2.utils.io import default_file_mode


def _cli(*args, timeout: float = 300, cmd_prefix=None, **kw) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "internvideo2.cli", *map(str, args)]
    if cmd_prefix is not None:
        cmd = cmd_prefix(cmd)
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=kw.pop("cwd", ROOT), **kw)


def _one_line_error(p: subprocess.CompletedProcess, rc: int, *needles: str) -> str:
    err = p.stderr.strip()
    assert p.returncode == rc, (p.returncode, p.stdout[-2000:], err[-4000:])
    assert "Traceback" not in err, err
    lines = err.splitlines()
    assert len(lines) == 1, err
    for n in needles:
        assert n in lines[0], (n, lines[0])
    return lines[0]


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    from internvideo2.data.synth import SynthConfig, generate_world

    out = tmp_path_factory.mktemp("world")
    generate_world(out, 6, seed=3, cfg=SynthConfig(audio=False), progress=False)
    return out


# ------------------------------------------------------------------------------------------------------------
# 4. eval cls: mixed labels are an error naming the row; --classes fixes the class list
# ------------------------------------------------------------------------------------------------------------
def test_mixed_integer_and_name_labels_name_the_row(tmp_path):
    p = tmp_path / "mixed.csv"
    p.write_text("path,label\na.mp4,3\nb.mp4,walking\nc.mp4,1\n")
    with pytest.raises(AnnotationError) as ei:
        read_classification(p)
    assert ei.value.row == 3 and "walking" in str(ei.value)  # the header is line 1
    # with the class list (--classes) names map through it and integers are class ids, as the error says
    ann = read_classification(p, label_map={"running": 0, "walking": 1, "a": 2, "b": 3})
    assert [r.label for r in ann.records] == [3, 1, 1]


def test_named_labels_follow_the_class_file_not_the_file_order(tmp_path):
    p = tmp_path / "named.csv"
    p.write_text("path,label\na.mp4,running\nb.mp4,walking\nc.mp4,running\n")
    ann = read_classification(p, label_map={"walking": 0, "running": 1})
    assert [r.label for r in ann.records] == [1, 0, 1]
    with pytest.raises(AnnotationError, match="unknown class 'running'"):
        read_classification(tmp_path / "named.csv", label_map={"walking": 0, "jumping": 1})


def test_eval_cls_cli_class_names(world, tmp_path):
    classes = json.loads((world / "classes.json").read_text())
    model = tmp_path / "cls"
    save_pretrained(create_model("tiny", "classifier", num_classes=len(classes)), model)
    rows = [ln.split(",") for ln in (world / "train_cls.csv").read_text().splitlines()[1:]]
    names = {c["label"]: c["name"] for c in classes}
    named = tmp_path / "named.csv"
    named.write_text("path,label\n" + "".join(f"{p},{names[int(y)]}\n" for p, y in rows))
    p = _cli("eval", "cls", "--model", model, "--data", named, "--videos", world)
    _one_line_error(p, 2, "--classes", "class names")
    (tmp_path / "names.txt").write_text("".join(c["name"] + "\n" for c in classes))
    by_id = _cli("eval", "cls", "--model", model, "--data", world / "train_cls.csv", "--videos", world, "-o",
                 tmp_path / "ids.json")
    by_name = _cli("eval", "cls", "--model", model, "--data", named, "--videos", world, "--classes",
                   tmp_path / "names.txt", "-o", tmp_path / "names.json")
    assert by_id.returncode == 0 and by_name.returncode == 0, by_id.stderr + by_name.stderr
    a, b = (json.loads((tmp_path / f).read_text()) for f in ("ids.json", "names.json"))
    assert a["top1"] == b["top1"] and a["num_videos"] == b["num_videos"] == len(rows)
    (tmp_path / "short.txt").write_text("".join(c["name"] + "\n" for c in classes[:-1]))
    p = _cli("eval", "cls", "--model", model, "--data", named, "--videos", world, "--classes", tmp_path / "short.txt")
    _one_line_error(p, 2, "--classes", f"{len(classes) - 1} classes")


# ------------------------------------------------------------------------------------------------------------
# 5. load_model(folder, num_frames=, img_size=) rebuilds a saved model, as for official files
# ------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("model_type", ["vision", "classifier", "stage2"])
def test_saved_folder_is_rebuilt_for_another_input(tmp_path, model_type):
    torch.manual_seed(0)
    m = create_model("tiny", model_type, **({"num_classes": 5} if model_type == "classifier" else {}))
    save_pretrained(m, tmp_path / "m")
    v0 = m.vision_backbone.cfg
    r = load_model(tmp_path / "m", num_frames=v0.num_frames * 2, img_size=v0.img_size * 2)
    v = r.vision_backbone.cfg
    assert (v.num_frames, v.img_size) == (v0.num_frames * 2, v0.img_size * 2)
    g0, g = m.vision_backbone.cfg.grid, v.grid
    assert g == (g0[0] * 2, g0[1] * 2, g0[2] * 2)
    emb = r.encode_video(torch.randint(0, 256, (1, v.num_frames, 32, 40, 3), dtype=torch.uint8))
    assert emb.tokens.shape[1] == int(v.cls_token) + g[0] * g[1] * g[2]
    # the weights that do not depend on the input size are the saved ones
    sd0, sd = m.state_dict(), r.state_dict()
    same = [k for k in sd0 if "pos_embed" not in k and sd0[k].shape == sd[k].shape]
    assert same and all(torch.equal(sd0[k], sd[k]) for k in same)
    assert any("pos_embed" in k and sd0[k].shape != sd[k].shape for k in sd0)
    # unchanged sizes give the saved model itself
    same_size = from_pretrained(tmp_path / "m", num_frames=v0.num_frames, img_size=v0.img_size)
    assert all(torch.equal(sd0[k], same_size.state_dict()[k]) for k in sd0)


# ------------------------------------------------------------------------------------------------------------
# 6. create_model works for every registered model type
# ------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("model_type", model_types())
def test_create_model_every_registered_type(tmp_path, model_type):
    m = create_model("tiny", model_type).eval()
    assert m.model_type == model_type
    cfg = m.vision_backbone.cfg
    e = m.encode_video(torch.randint(0, 256, (1, cfg.num_frames, 24, 24, 3), dtype=torch.uint8))
    assert e.pooled.shape[0] == 1 and torch.isfinite(e.pooled).all()
    save_pretrained(m, tmp_path / "m")
    r = load_model(tmp_path / "m")
    assert type(r) is type(m) and r.config == m.config


def test_create_model_names_a_bad_override():
    with pytest.raises(ConfigError) as ei:
        create_model("tiny", "stage2", embed_dimm=3)
    assert ei.value.field == "embed_dimm"


# ------------------------------------------------------------------------------------------------------------
# 7. encode_video takes NumPy and torch frames in the documented layouts; anything else is a ShapeError
# ------------------------------------------------------------------------------------------------------------
def test_encode_video_layouts():
    torch.manual_seed(0)
    m = create_model("tiny", "vision").eval()
    t = m.cfg.num_frames
    rng = np.random.default_rng(0)
    u8 = rng.integers(0, 256, (t, 30, 34, 3), dtype=np.uint8)
    ref = m.encode_video(torch.from_numpy(u8)[None]).pooled
    for frames in (u8, u8[None], torch.from_numpy(u8), list(u8)):
        out = m.encode_video(frames).pooled
        assert out.shape == ref.shape and torch.allclose(out, ref, atol=1e-6), type(frames)
    x = m.prepare_video(torch.from_numpy(u8)[None])  # [B, 3, T, H, W] float, as the model takes it
    assert torch.allclose(m.encode_video(x.numpy()).pooled, ref, atol=1e-6)
    assert torch.allclose(m.encode_video(x[0]).pooled, ref, atol=1e-6)
    for bad in (np.zeros((0, 30, 34, 3), np.uint8), torch.zeros(1, 0, 3, 30, 34), np.zeros((t, 30, 34), np.uint8),
                np.zeros((t, 30, 34, 4), np.uint8), "video.mp4"):
        with pytest.raises(ShapeError, match=r"T, H, W, 3"):
            m.encode_video(bad)


# ------------------------------------------------------------------------------------------------------------
# 8. saved files get the normal mode; unreadable ones say "permission denied"
# ------------------------------------------------------------------------------------------------------------
def test_saved_files_have_the_umask_mode(tmp_path):
    save_pretrained(create_model("tiny", "vision"), tmp_path / "m")
    for name in (CONFIG_FILE, WEIGHTS_FILE):
        assert stat.S_IMODE((tmp_path / "m" / name).stat().st_mode) == default_file_mode(), name


def test_unreadable_weights_say_permission_denied(tmp_path):
    save_pretrained(create_model("tiny", "vision"), tmp_path / "m")
    foreign(tmp_path / "m" / WEIGHTS_FILE, 0o600)
    os.chmod(tmp_path, 0o755)
    code = ("import sys\nfrom internvideo2.checkpoint import load_model\nfrom internvideo2.errors import "
            "CheckpointError\ntry:\n    load_model(sys.argv[1])\nexcept CheckpointError as e:\n    print(e)\n")
    p = subprocess.run(unprivileged([sys.executable, "-c", code, str(tmp_path / "m")]), capture_output=True,
                       text=True, timeout=120)
    assert p.returncode == 0 and "permission denied" in p.stdout and "No such file" not in p.stdout, p.stdout + p.stderr
    p = _cli("info", tmp_path / "m", cmd_prefix=unprivileged)
    _one_line_error(p, 1, "permission denied")


# ------------------------------------------------------------------------------------------------------------
# 9. a stopped demo stage stops the demo, is never marked done, and resumes on the next run
# ------------------------------------------------------------------------------------------------------------
def _demo_until(out: Path, needle: str, then_wait: float) -> tuple[subprocess.Popen, str]:
    cmd = [sys.executable, "-m", "internvideo2.cli", "demo", "--quick", "--steps", "500", "--no-finetune",
           "--no-scratch", "--out", str(out)]
    metrics = out / "clip_teacher" / "metrics.jsonl"
    logged = metrics.stat().st_size if metrics.is_file() else 0
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    seen = ""
    deadline = time.monotonic() + 600
    while needle not in seen:
        line = proc.stdout.readline()
        assert line or proc.poll() is None, seen + proc.stderr.read()
        assert time.monotonic() < deadline, seen
        seen += line
    ckpts = out / "clip_teacher" / "checkpoints"
    t0 = time.monotonic()  # wait for training to be under way (a new logged step)
    while (metrics.stat().st_size if metrics.is_file() else 0) <= logged and time.monotonic() - t0 < 120:
        time.sleep(0.2)
    time.sleep(then_wait)
    proc.send_signal(signal.SIGTERM)
    rest, err = proc.communicate(timeout=300)
    assert ckpts.is_dir(), seen + rest + err
    return proc, seen + rest + err


@pytest.mark.slow
def test_interrupted_demo_stage_is_not_finished(tmp_path):
    out = tmp_path / "demo"
    proc, text = _demo_until(out, "== teacher 1/2", 2.0)
    assert proc.returncode == 4, text
    err = [ln for ln in text.splitlines() if ln.startswith("internvideo2 demo:")]
    assert len(err) == 1 and "stopped at step" in err[0] and "run the demo again" in err[0], text
    stage = out / "clip_teacher"
    assert not (stage / "demo_done.json").exists() and (stage / "demo_stage.json").is_file()
    assert not (out / "mae_teacher").exists(), "the demo went on after an interrupted stage"
    # the same command resumes the stage from its checkpoint (and is stopped again)
    proc, text = _demo_until(out, "resuming the interrupted stage", 1.0)
    assert proc.returncode == 4, text
    log = (out / "demo.log").read_text()
    assert "resumed from" in log and not (stage / "demo_done.json").exists()
    steps = [json.loads(ln)["step"] for ln in (stage / "metrics.jsonl").read_text().splitlines() if '"step"' in ln]
    assert steps == sorted(steps), "the resumed run started over instead of going on"


# ------------------------------------------------------------------------------------------------------------
# 10. segment ends a truncated file at its last frame; probe --frames 0; tal NaN scores
# ------------------------------------------------------------------------------------------------------------
def test_segment_truncated_file_ends_at_the_last_decodable_frame(tmp_path):
    from test_video_io import encode_video

    from internvideo2.data.segment import detect_shots
    from internvideo2.data.video import probe_video

    # a 'faststart' MP4 (index in front) of two scenes; the data stops within the second: the header still
    # promises 60 frames
    rng = np.random.default_rng(0)
    scenes = [rng.integers(0, 256, (48, 64, 3), np.uint8) for _ in range(2)]
    frames = [np.clip(scenes[i // 30].astype(int) + rng.integers(-4, 5, (48, 64, 3)), 0, 255).astype(np.uint8)
              for i in range(60)]
    full = encode_video(tmp_path / "fs.mp4", frames, fps=10, codec="libx264",
                        container_options={"movflags": "faststart"})
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(Path(full).read_bytes()[: int(os.path.getsize(full) * 0.75)])
    meta = probe_video(cut)
    shots = detect_shots(cut)
    decodable = probe_video(cut, count_frames=True)
    assert decodable.num_frames < meta.num_frames or meta.duration > decodable.num_frames / meta.fps
    assert shots[-1].end_frame == decodable.num_frames
    assert shots[-1].end_s == pytest.approx(decodable.num_frames / meta.fps, abs=1.5 / meta.fps)
    assert meta.num_frames == 60 and shots[-1].end_s < meta.duration - 0.5


@pytest.mark.parametrize("value", ["0", "-3"])
def test_probe_rejects_non_positive_frames(value):
    p = _cli("probe", asset("video/example1.mp4"), "--frames", value, timeout=60)
    _one_line_error(p, 2, "--frames", ">= 1")


def test_probe_huge_decode_checks_memory_first():
    p = _cli("probe", asset("video/example1.mp4"), "--frames", "100000", "--decode", timeout=60)
    _one_line_error(p, 1, "100000 frames", "GiB")


@pytest.mark.parametrize("score", [math.nan, math.inf, "0.5", None])
def test_tal_rejects_non_finite_or_non_numeric_scores(tmp_path, score):
    from internvideo2.eval.tal import evaluate_detection_files

    gt = {"database": {"v1": {"subset": "validation", "annotations": [{"segment": [1.0, 4.0], "label": "a"}]}}}
    pred = {"results": {"v1": [{"segment": [1.0, 4.0], "label": "a", "score": score}]}}
    (tmp_path / "gt.json").write_text(json.dumps(gt))
    (tmp_path / "pred.json").write_text(json.dumps(pred))
    with pytest.raises(AnnotationError, match="score"):
        evaluate_detection_files(tmp_path / "gt.json", tmp_path / "pred.json")


# ------------------------------------------------------------------------------------------------------------
# messages: the file, the field, the reason, in one line
# ------------------------------------------------------------------------------------------------------------
def test_config_json_typo_names_the_field(tmp_path):
    save_pretrained(create_model("tiny", "classifier", num_classes=3), tmp_path / "m")
    meta = json.loads((tmp_path / "m" / CONFIG_FILE).read_text())
    meta["config"]["num_clases"] = meta["config"].pop("num_classes")
    (tmp_path / "m" / CONFIG_FILE).write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match=r"config.json: field 'config.num_clases'"):
        load_model(tmp_path / "m")
    p = _cli("info", tmp_path / "m")
    _one_line_error(p, 1, "num_clases")


def test_safetensors_named_pth_loads(tmp_path):
    from safetensors.torch import save_file

    sd = {"a": torch.arange(6.0).view(2, 3)}
    save_file(sd, tmp_path / "weights.pth")
    assert torch.equal(read_checkpoint(tmp_path / "weights.pth")["a"], sd["a"])


def test_media_given_as_a_checkpoint(tmp_path):
    with pytest.raises(CheckpointError, match="not a checkpoint: the file is an MP4"):
        read_checkpoint(asset("video/example1.mp4"))
    shutil.copy(asset("video/example1.mp4"), tmp_path / "model.pth")
    p = _cli("info", tmp_path / "model.pth")
    _one_line_error(p, 1, "model.pth", "MP4")


def test_info_finds_damaged_weights(tmp_path):
    save_pretrained(create_model("tiny", "vision"), tmp_path / "m")
    assert _cli("info", tmp_path / "m").returncode == 0
    w = tmp_path / "m" / WEIGHTS_FILE
    data = bytearray(w.read_bytes())
    data[-200] ^= 0xFF  # one flipped byte inside a tensor: the header is still fine
    w.write_bytes(bytes(data))
    _one_line_error(_cli("info", tmp_path / "m"), 1, "damaged", "SHA-256")
    w.write_bytes(bytes(data[:-1000]))  # truncated
    _one_line_error(_cli("info", tmp_path / "m"), 1, "damaged")


def test_info_refuses_pickles_in_one_line(tmp_path):
    import pickle

    class Evil:
        def __reduce__(self):
            return (os.system, ("echo owned",))

    (tmp_path / "evil.pt").write_bytes(pickle.dumps(Evil()))
    line = _one_line_error(_cli("info", tmp_path / "evil.pt"), 1, "refused to unpickle", "safetensors")
    assert "owned" not in line


def test_empty_annotation_list_is_named(world, tmp_path):
    (tmp_path / "empty.json").write_text("[]")
    save_pretrained(create_model("tiny", "stage2"), tmp_path / "m")
    for task in ("retrieval", "mc"):
        p = _cli("eval", task, "--model", tmp_path / "m", "--data", tmp_path / "empty.json", "--videos", world)
        _one_line_error(p, 1, "empty.json", "no annotations")


def test_interrupted_synth_prints_one_line(tmp_path):
    proc = subprocess.Popen([sys.executable, "-m", "internvideo2.cli", "synth", "--out", str(tmp_path / "w"),
                             "--num", "400", "--workers", "2", "--quiet"], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    t0 = time.monotonic()
    while not any((tmp_path / "w" / "videos" / "train").glob("*.mp4")) and time.monotonic() - t0 < 120:
        time.sleep(0.1)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "Traceback" not in err and err.strip().splitlines() == ["internvideo2 synth: interrupted"], err
