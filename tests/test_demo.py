"""``internvideo2 demo --quick``: the whole progressive recipe at smoke scale, in a real subprocess, and
``internvideo2 eval`` on its saved checkpoints reproducing the reported numbers exactly."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("demo")
    proc = subprocess.run([sys.executable, "-m", "internvideo2.cli", "demo", "--quick", "--out", str(out)],
                          cwd=ROOT, capture_output=True, text=True, timeout=1200)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-6000:]
    assert "demo finished" in proc.stdout
    return out


@pytest.mark.slow
def test_quick_demo_outputs(demo: Path):
    for name in ("report.md", "metrics.json", "losses.png", "stage2_comparison.png", "similarity.png",
                 "retrieval_examples.png", "masking.png", "demo.log"):
        assert (demo / name).is_file() and (demo / name).stat().st_size > 0, name
    m = json.loads((demo / "metrics.json").read_text())
    head = m["headline"]
    for key in ("retrieval/sim/t2v_r1", "retrieval/dsl/t2v_r1", "retrieval/match/t2v_r1", "zeroshot/top1",
                "mc/accuracy", "linear_probe/top1", "linear_probe_head/top1", "attentive_probe/top1"):
        entry = head[key]
        assert {"value", "split", "items"} <= set(entry) and entry["split"] == "heldout" and entry["items"] > 0
    assert "scorer" in head["retrieval/sim/t2v_r1"] and "chance" in head["zeroshot/top1"]
    assert set(m["stage2"]) == {"stage1", "scratch"} and m["finetune"]["top1"]["items"] > 0
    assert m["comparison"]["retrieval/sim/t2v_r1"]["stage1_better_beyond_spread"] is None  # one seed: n/a
    for folder in ("clip_teacher", "mae_teacher", "stage1", "stage2/stage1_seed0", "stage2/scratch_seed0", "finetune"):
        assert (demo / folder / "model" / "config.json").is_file(), folder
    text = (demo / "report.md").read_text()
    assert "Quick mode" in text and "internvideo2 eval retrieval" in text


@pytest.mark.slow
def test_eval_cli_reproduces_the_demo_numbers(demo: Path):
    m = json.loads((demo / "metrics.json").read_text())
    head = m["headline"]
    synth = demo / "synth"
    n = head["retrieval/sim/t2v_r1"]["items"]
    out = demo / "eval_retrieval.json"
    proc = subprocess.run([sys.executable, "-m", "internvideo2.cli", "eval", "retrieval", "--model", head["model"] if
                           Path(head["model"]).is_absolute() else str(ROOT / head["model"]), "--data",
                           str(synth / "heldout.json"), "--videos", str(synth), "--num", str(n), "--captions", "first",
                           "--k-test", "16", "-o", str(out)], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    res = json.loads(out.read_text())
    for scorer in ("sim", "dsl", "match"):
        assert res[scorer]["t2v_r1"] == pytest.approx(head[f"retrieval/{scorer}/t2v_r1"]["value"], abs=1e-3)
        assert res[scorer]["v2t_r1"] == pytest.approx(head[f"retrieval/{scorer}/v2t_r1"]["value"], abs=1e-3)
