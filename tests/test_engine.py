"""Training engine on one process: outputs, schedule wiring, accumulation, guards, atomic checkpoints."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch

from internvideo2.cli import main as cli_main
from internvideo2.errors import CheckpointError, ConfigError
from internvideo2.train import checkpoint as ckpt
from internvideo2.train.config import load_config
from internvideo2.train.engine import Callback, Trainer, TrainingDiverged
from internvideo2.utils.io import is_tmp_name

ROOT = Path(__file__).resolve().parents[1]
TINY = ROOT / "configs" / "tiny" / "engine.yaml"
QUIET = ["log.progress=false", "log.tensorboard=false", "log.plot=false"]
OFFICIAL = sorted(p for p in (ROOT / "configs" / "official").glob("*.yaml") if not p.name.startswith("_"))


@pytest.fixture(autouse=True)
def _one_thread():
    """The tiny models are latency-bound: one intra-op thread is faster and immune to busy cores."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def tiny(tmp_path: Path, *overrides: str, quiet: bool = True):
    return load_config(TINY, [f"output_dir={tmp_path / 'run'}", *(QUIET if quiet else []), *overrides])


def metrics(run: Path) -> list[dict]:
    return [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]


class Recorder(Callback):
    """Keeps per-step records, group lrs and parameter snapshots."""

    def __init__(self):
        self.records, self.lrs, self.params = [], [], []

    def on_step_end(self, trainer, record):
        self.records.append(record)
        self.lrs.append([(g["lr"], g["lr_scale"]) for g in trainer.optimizer.param_groups])
        self.params.append({k: v.detach().clone() for k, v in trainer.unwrapped.state_dict().items()})


def test_tiny_run_writes_every_output(tmp_path):
    cfg = tiny(
        tmp_path,
        "train.max_steps=8",
        "log.every_n_steps=2",
        "checkpoint.every_n_steps=4",
        "checkpoint.keep_last_n=1",
        "train.eval_every_n_steps=4",
        quiet=False,
    )
    rec = Recorder()
    t0 = time.perf_counter()
    summary = Trainer(cfg, callbacks=[rec]).fit()
    assert time.perf_counter() - t0 < 60
    run = tmp_path / "run"

    lines = metrics(run)
    train_lines = [r for r in lines if "loss" in r]
    assert [r["step"] for r in train_lines] == [2, 4, 6, 8]
    for r in train_lines:
        assert {
            "epoch",
            "lr",
            "loss",
            "loss_contrastive",
            "loss_cls",
            "grad_norm",
            "samples_per_s",
            "time",
        } <= set(r)
        assert all(isinstance(r[k], float) and r[k] == r[k] for k in ("loss", "grad_norm", "lr"))
    # the logged loss of a window is the mean of its steps
    assert train_lines[0]["loss"] == pytest.approx((rec.records[0]["loss"] + rec.records[1]["loss"]) / 2)
    evals = [r for r in lines if "eval/cls_acc" in r]
    assert [r["step"] for r in evals] == [4, 8]

    s = json.loads((run / "summary.json").read_text())
    assert s["steps"] == 8 and s["samples"] == 8 * 16 and s["samples_per_s"] > 0
    assert s["peak_memory_mb_max_rss"] > 10 and s["skipped_steps"] == 0
    assert summary["steps"] == 8 and summary["plot"].endswith("loss.png")
    assert (run / "loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (run / "config.yaml").is_file()
    assert load_config(run / "config.yaml").optim.layer_decay == 0.9

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    ea = EventAccumulator(str(run / "tb"))
    ea.Reload()
    assert [e.step for e in ea.Scalars("train/loss")] == [2, 4, 6, 8]
    assert "eval/cls_acc" in ea.Tags()["scalars"]

    # retention: only the newest checkpoint survives, `latest` names it
    names = sorted(p.name for p in (run / "checkpoints").iterdir())
    assert names == ["latest", "step_00000008.pt"]
    state = ckpt.load_checkpoint_file(ckpt.read_latest(run / "checkpoints"))
    assert state["step"] == 8 and state["epoch"] == 0 and state["step_in_epoch"] == 8
    for k, v in state["model"].items():
        assert torch.equal(v, rec.params[-1][k]), k

    # per-step lr = schedule(step) * layer scale (cosine, warmup 4 steps from 1e-6 to 1e-3)
    lrs0 = rec.lrs[0]
    assert sorted({round(sc, 6) for _, sc in lrs0}) == [round(0.9**k, 6) for k in (3, 2, 1, 0)]
    for step, groups in enumerate(rec.lrs):
        base = 1e-6 + (1e-3 - 1e-6) * step / 3 if step < 4 else None
        for lr, sc in groups:
            if base is not None:
                assert lr == pytest.approx(base * sc)
    assert rec.records[3]["lr"] == pytest.approx(1e-3)


def test_fresh_run_refuses_to_overwrite_checkpoints(tmp_path):
    Trainer(tiny(tmp_path, "train.max_steps=5")).fit()
    with pytest.raises(ConfigError) as ei:
        Trainer(tiny(tmp_path, "train.max_steps=5")).fit()
    assert ei.value.field == "checkpoint.resume"
    # resume of a finished run is a no-op that still reports the summary
    s = Trainer(tiny(tmp_path, "train.max_steps=5")).fit(resume="auto")
    assert s["steps"] == 5 and s["steps_this_run"] == 0


def test_config_errors_surface_before_training(tmp_path):
    with pytest.raises(ConfigError) as ei:
        Trainer(tiny(tmp_path, "train.global_batch_size=1024")).fit()  # larger than the 256-sample dataset
    assert ei.value.field == "train.global_batch_size"
    with pytest.raises(ConfigError) as ei:
        Trainer(tiny(tmp_path, "task.options.depht=3")).fit()
    assert ei.value.field == "task.options.depht"
    with pytest.raises(ConfigError) as ei:
        Trainer(tiny(tmp_path, "task.name=no_such_task")).fit()
    assert ei.value.field == "task.name"
    with pytest.raises(ConfigError) as ei:
        Trainer(tiny(tmp_path, "task.module=no_such_pkg.tasks")).fit()
    assert ei.value.field == "task.module"
    with pytest.raises(CheckpointError):
        Trainer(tiny(tmp_path, "checkpoint.resume=/nonexistent/ckpt.pt")).fit()
    assert not (tmp_path / "run" / "metrics.jsonl").exists()


def test_grad_accumulation_matches_full_batch(tmp_path):
    """accum 2 x 8 == 1 x 16 when the loss is a per-sample mean (classification only)."""
    common = [
        "train.max_steps=6",
        "log.every_n_steps=1",
        "task.options.contrastive_weight=0",
        "checkpoint.save_final=false",
    ]
    r1, r2 = Recorder(), Recorder()
    Trainer(tiny(tmp_path / "a", *common), callbacks=[r1]).fit()
    Trainer(tiny(tmp_path / "b", *common, "train.grad_accum=2"), callbacks=[r2]).fit()
    for a, b in zip(r1.records, r2.records):
        assert b["loss"] == pytest.approx(a["loss"], rel=1e-6)
        assert b["grad_norm"] == pytest.approx(a["grad_norm"], rel=1e-5)
    for k, v in r1.params[-1].items():
        # Adam normalises tiny gradients, so near-zero entries can differ by a few 1e-6 (lr is 1e-3)
        torch.testing.assert_close(r2.params[-1][k], v, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("where", ["loss", "grad"])
def test_nonfinite_step_is_skipped_and_counted(tmp_path, where):
    rec = Recorder()
    s = Trainer(
        tiny(
            tmp_path,
            "train.max_steps=6",
            "log.every_n_steps=1",
            "task.options.nan_at_steps=[2, 4]",
            f"task.options.nan_in={where}",
        ),
        callbacks=[rec],
    ).fit()
    assert s["skipped_steps"] == 2
    assert [r["skipped"] for r in rec.records] == [False, False, True, False, True, False]
    for i in (2, 4):  # parameters untouched by a skipped step
        for k, v in rec.params[i].items():
            assert torch.equal(v, rec.params[i - 1][k]), (i, k)
    final = rec.params[-1]
    assert all(torch.isfinite(v).all() for v in final.values())
    lines = metrics(tmp_path / "run")
    assert [r["skipped_total"] for r in lines if "loss" in r] == [0, 0, 1, 1, 2, 2]


def test_guard_stops_after_consecutive_nonfinite(tmp_path, capsys):
    cfg = tiny(
        tmp_path,
        "train.max_steps=10",
        "task.options.nan_at_steps=[3, 4, 5, 6]",
        "guards.max_consecutive_nonfinite=3",
        "checkpoint.every_n_steps=2",
    )
    with pytest.raises(TrainingDiverged, match="3 consecutive steps"):
        Trainer(cfg).fit()
    latest = ckpt.read_latest(tmp_path / "run" / "checkpoints")
    # the last checkpoint (step 4, taken mid-streak: its weights are the good ones of step 3) stays; the
    # streak count travels with it, so a resume continues counting
    assert latest.name == "step_00000004.pt"
    state = ckpt.load_checkpoint_file(latest)
    assert state["guards"] == {"consecutive_nonfinite": 1, "skipped_total": 1}
    assert all(torch.isfinite(v).all() for v in state["model"].values())
    # the CLI reports it with exit code 3 and a clear message
    rc = cli_main(
        [
            "train",
            str(TINY),
            f"output_dir={tmp_path / 'cli'}",
            *QUIET,
            "train.max_steps=10",
            "task.options.nan_at_steps=[0,1]",
            "guards.max_consecutive_nonfinite=2",
            "--quiet",
        ]
    )
    assert rc == 3
    assert "2 consecutive steps with a non-finite loss or gradient norm" in capsys.readouterr().err


def test_cli_config_error_exit_code(tmp_path, capsys):
    rc = cli_main(["train", str(TINY), f"output_dir={tmp_path}", "optim.lr=-1", "--quiet"])
    assert rc == 2 and "optim.lr" in capsys.readouterr().err
    assert cli_main(["train", str(TINY), "--check", "--quiet"]) == 0
    assert cli_main(["train", str(TINY), "--print-config", "train.seed=5", "--smoke"]) == 0
    out = capsys.readouterr().out
    assert "seed: 5" in out and "max_steps: 4" in out


_CRASH_WRITER = textwrap.dedent("""
    import sys, torch
    from internvideo2.train import checkpoint as ckpt
    d = sys.argv[1]
    ckpt.save_checkpoint_file({"format": ckpt.FORMAT, "step": 1, "w": torch.ones(4)}, d, 1, keep_last_n=0)
    print("first", flush=True)
    big = {"format": ckpt.FORMAT, "step": 2, "w": torch.randn(96 * 2**20 // 4 * 4)}  # ~384 MB
    sys.stdin.readline()
    ckpt.save_checkpoint_file(big, d, 2, keep_last_n=0)
    print("second", flush=True)
""")


def test_crash_mid_write_keeps_latest_loadable(tmp_path):
    """SIGKILL the writer while the second checkpoint is being written: `latest` still names the first,
    complete one, the partial temp file is ignored, and the next save cleans it up."""
    d = tmp_path / "ck"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.Popen(
        [sys.executable, "-c", _CRASH_WRITER, str(d)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert proc.stdout.readline().strip() == "first"
        proc.stdin.write("go\n")
        proc.stdin.flush()
        deadline = time.time() + 60
        tmp_seen = None
        while time.time() < deadline:
            tmps = [p for p in d.iterdir() if is_tmp_name(p.name) and p.stat().st_size > 1 << 20]
            if tmps:
                tmp_seen = tmps[0]
                break
            time.sleep(0.002)
        proc.kill()
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert tmp_seen is not None, "the writer finished before it could be killed mid-write"
    assert not (d / "step_00000002.pt").exists()
    latest = ckpt.read_latest(d)
    assert latest.name == "step_00000001.pt"
    assert torch.equal(ckpt.load_checkpoint_file(latest)["w"], torch.ones(4))
    assert [s for s, _ in ckpt.list_checkpoints(d)] == [1]
    assert ckpt.resolve_resume("auto", d) == latest
    assert any(is_tmp_name(p.name) for p in d.iterdir())  # the partial write is still there...
    ckpt.save_checkpoint_file({"format": ckpt.FORMAT, "step": 3}, d, 3, keep_last_n=0)
    assert not any(is_tmp_name(p.name) for p in d.iterdir())  # ...until the next save


def test_checkpoint_file_errors(tmp_path):
    bad = tmp_path / "step_00000005.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="cannot be loaded"):
        ckpt.load_checkpoint_file(bad)
    (tmp_path / "latest").write_text("step_00000009.pt\n")
    with pytest.raises(CheckpointError, match="does not exist"):
        ckpt.read_latest(tmp_path)
    torch.save({"model": {}}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="not an internvideo2 training checkpoint"):
        ckpt.load_checkpoint_file(tmp_path / "other.pt")
    # retention keeps the newest N and never the file `latest` names
    d = tmp_path / "r"
    for s in (1, 2, 3, 4):
        ckpt.save_checkpoint_file({"format": ckpt.FORMAT, "step": s}, d, s, keep_last_n=2)
    assert [s for s, _ in ckpt.list_checkpoints(d)] == [3, 4]


def test_sigterm_checkpoints_and_resumes(tmp_path):
    """SIGTERM (preemption) stops at the next step boundary with a checkpoint; --resume finishes the run."""
    out = tmp_path / "run"
    args = [
        "train",
        str(TINY),
        f"output_dir={out}",
        *QUIET,
        "train.max_steps=60",
        "task.options.sleep_s=0.02",
        "checkpoint.every_n_steps=0",
        "--quiet",
    ]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.Popen(
        [sys.executable, "-m", "internvideo2.cli", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.time() + 60
    while not (out / "metrics.jsonl").is_file() or len((out / "metrics.jsonl").read_text().splitlines()) < 2:
        assert proc.poll() is None and time.time() < deadline
        time.sleep(0.02)
    proc.terminate()
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 4, stderr
    summary = json.loads(stdout)
    assert summary["interrupted"] and 8 <= summary["steps"] < 60
    assert ckpt.read_latest(out / "checkpoints").name == f"step_{summary['steps']:08d}.pt"
    rc = cli_main([*args[:-1], "--resume", "--quiet"])
    assert rc == 0
    assert json.loads((out / "summary.json").read_text())["steps"] == 60


@pytest.mark.parametrize("path", OFFICIAL, ids=lambda p: p.stem)
def test_official_recipe_smoke_variant_runs(tmp_path, path):
    """`--smoke` turns each published GPU recipe into a few CPU steps (tiny preset, synthetic world)."""
    cfg = load_config(path, [f"output_dir={tmp_path}", "log.progress=false"], smoke=True)
    summary = Trainer(cfg).fit()
    assert summary["steps"] == cfg.train.max_steps and summary["skipped_steps"] == 0
    assert all(v == v for k, v in summary["final"].items() if isinstance(v, float)), summary["final"]
    if cfg.task.name in ("finetune", "stage2", "clip"):  # these evaluate at the end, on the held-out split
        assert summary["eval"], "the smoke run evaluates"
