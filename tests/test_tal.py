"""Temporal action localisation mAP: hand-worked cases, ActivityNet reference goldens, and the CLI."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from internvideo2.errors import AnnotationError, ConfigError
from internvideo2.eval import tal

DATA = Path(__file__).parent / "data" / "eval"
GOLDEN = ["tal_anet", "tal_anet_nopred", "tal_thumos"]


def _gt(db):
    return {"version": "v", "taxonomy": [], "database": db}


def _pred(res):
    return {"version": "v", "external_data": {}, "results": res}


def test_hand_worked_ap():
    gt = _gt({"a": {"subset": "validation", "annotations": [{"segment": [0, 10], "label": "run"},
                                                             {"segment": [20, 30], "label": "run"}]}})
    pred = _pred({
        "a": [{"segment": [0, 10], "label": "run", "score": 0.9},    # TP (IoU 1)
              {"segment": [1, 9], "label": "run", "score": 0.8},     # IoU 0.8 with a taken GT -> FP
              {"segment": [20, 28], "label": "run", "score": 0.6}],  # IoU 0.8 -> TP at 0.5, FP at 0.85
        "b": [{"segment": [0, 5], "label": "run", "score": 0.7}],    # video without GT -> FP
    })
    # tIoU 0.5: tp 1 0 0 1, precision 1 .5 .33 .5, recall .5 .5 .5 1
    #   envelope: 1 at recall .5, .5 at recall 1 -> AP = .5*1 + .5*.5 = 0.75
    # tIoU 0.85: only the first prediction is a TP -> AP = .5*1 = 0.5
    res = tal.evaluate_detection(gt, pred, tiou_thresholds=[0.5, 0.85])
    assert res["mAP"] == {"0.50": pytest.approx(75.0), "0.85": pytest.approx(50.0)}
    assert res["average_mAP"] == pytest.approx(62.5)
    assert res["num_ground_truth"] == 2 and res["num_predictions"] == 4 and res["num_videos"] == 1


def test_tiou_equal_to_threshold_counts():
    gt = _gt({"a": {"subset": "validation", "annotations": [{"segment": [10, 20], "label": "x"}]}})
    pred = _pred({"a": [{"segment": [10, 16], "label": "x", "score": 1.0}]})        # tIoU exactly 0.6
    res = tal.evaluate_detection(gt, pred)
    assert res["mAP"]["0.60"] == 100.0 and res["mAP"]["0.65"] == 0.0
    assert res["average_mAP"] == pytest.approx(30.0)                               # 0.5, 0.55, 0.6


def test_subset_filter_and_class_without_predictions():
    gt = _gt({"a": {"subset": "validation", "annotations": [{"segment": [0, 10], "label": "x"}]},
              "b": {"subset": "training", "annotations": [{"segment": [0, 10], "label": "y"}]},
              "c": {"subset": "validation", "annotations": [{"segment": [0, 10], "label": "z"}]}})
    pred = _pred({"a": [{"segment": [0, 10], "label": "x", "score": 0.5}],
                  "b": [{"segment": [0, 10], "label": "x", "score": 0.9}]})  # training video: an FP
    res = tal.evaluate_detection(gt, pred, tiou_thresholds="thumos")
    # class x: FP (b) then TP (a): precision .5 at recall 1 -> AP .5; class z: no prediction -> 0
    assert res["ap_per_class"] == {"x": [50.0] * 5, "z": [0.0] * 5}
    assert res["classes_without_predictions"] == ["z"] and res["num_classes"] == 2
    # "y" lives only in the training subset: a prediction with it is unknown here
    bad = _pred({"a": [{"segment": [0, 10], "label": "y", "score": 0.5}]})
    with pytest.raises(AnnotationError, match="'y'"):
        tal.evaluate_detection(gt, bad)
    assert tal.evaluate_detection(gt, bad, unknown_labels="ignore")["dropped_predictions"] == 1
    everything = tal.evaluate_detection(gt, bad, subset=None)
    assert everything["num_classes"] == 3 and everything["num_videos"] == 3


@pytest.mark.parametrize("name", GOLDEN)
def test_matches_activitynet_reference(name):
    """Goldens: activitynet/ActivityNet Evaluation/eval_detection.py on the same files."""
    g = json.loads((DATA / f"{name}_golden.json").read_text())
    res = tal.evaluate_detection_files(DATA / f"{name}_gt.json", DATA / f"{name}_pred.json",
                                       subset=g["subset"], tiou_thresholds=g["tiou_thresholds"])
    np.testing.assert_allclose(np.array(list(res["mAP"].values())) / 100, g["mAP"], rtol=0, atol=1e-9)
    assert res["average_mAP"] / 100 == pytest.approx(g["average_mAP"], abs=1e-9)
    assert set(res["ap_per_class"]) == set(g["ap_per_class"])
    for label, ap in g["ap_per_class"].items():
        np.testing.assert_allclose(np.array(res["ap_per_class"][label]) / 100, ap, rtol=0, atol=1e-9)
    assert 0 < g["average_mAP"] < 1           # a non-trivial case


def test_parse_tiou():
    np.testing.assert_array_equal(tal.parse_tiou("activitynet"), np.linspace(0.5, 0.95, 10))
    np.testing.assert_allclose(tal.parse_tiou("0.5:0.05:0.95"), np.linspace(0.5, 0.95, 10))
    assert tal.parse_tiou("thumos").tolist() == [0.3, 0.4, 0.5, 0.6, 0.7]
    assert tal.parse_tiou("0.3,0.5").tolist() == [0.3, 0.5]
    with pytest.raises(ConfigError, match="tiou"):
        tal.parse_tiou("half")


def test_bad_files_raise_typed_errors(tmp_path):
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(AnnotationError, match="invalid JSON"):
        tal.evaluate_detection_files(tmp_path / "bad.json", tmp_path / "bad.json")
    gt = _gt({"a": {"subset": "validation", "annotations": [{"segment": [5, 1], "label": "x"}]}})
    with pytest.raises(AnnotationError, match=r"database\.a\.annotations\[0\].*end >= start"):
        tal.evaluate_detection(gt, _pred({}))
    with pytest.raises(AnnotationError, match="results"):
        tal.evaluate_detection(_gt({"a": {"subset": "validation", "annotations": [
            {"segment": [0, 1], "label": "x"}]}}), {"version": 1})
    with pytest.raises(AnnotationError, match="no annotated video"):
        tal.evaluate_detection(gt, _pred({}), subset="testing")


def test_cli_writes_json_matching_reference(tmp_path):
    name = "tal_anet"
    out = tmp_path / "res.json"
    proc = subprocess.run([sys.executable, "-m", "internvideo2.cli", "eval", "tal", "--gt",
                           str(DATA / f"{name}_gt.json"), "--pred", str(DATA / f"{name}_pred.json"),
                           "--subset", "validation", "-o", str(out)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "mAP" in proc.stdout and "0.95" in proc.stdout
    res = json.loads(out.read_text())
    g = json.loads((DATA / f"{name}_golden.json").read_text())
    assert res["average_mAP"] / 100 == pytest.approx(g["average_mAP"], abs=1e-9)
    bad = subprocess.run([sys.executable, "-m", "internvideo2.cli", "eval", "tal", "--gt", str(out),
                          "--pred", str(out)], capture_output=True, text=True, timeout=120)
    assert bad.returncode == 1 and "database" in bad.stderr


def test_eval_help_lists_tasks():
    proc = subprocess.run([sys.executable, "-m", "internvideo2.cli", "eval", "--help"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0
    assert "tal " in proc.stdout and "moments " in proc.stdout
    proc = subprocess.run([sys.executable, "-m", "internvideo2.cli", "eval", "tal", "--help"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and "--tiou" in proc.stdout
