"""Moment retrieval / highlight detection metrics: hand-worked cases, moment_detr goldens, and the CLI."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from internvideo2.errors import AnnotationError
from internvideo2.eval import moments as MO

DATA = Path(__file__).parent / "data" / "eval"


def _flat(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flat(v, f"{prefix}{k}/"))
        else:
            out[f"{prefix}{k}"] = v
    return out


def _gt(qid, windows, duration=150, clip_ids=None, saliency=None):
    row = {"qid": qid, "query": "q", "duration": duration, "vid": f"v{qid}", "relevant_windows": windows}
    if clip_ids is not None:
        row["relevant_clip_ids"] = clip_ids
        row["saliency_scores"] = saliency
    return row


def test_moment_ap_and_r1_hand_worked():
    gt = [_gt(1, [[0, 10], [20, 30]])]
    sub = [{"qid": 1, "pred_relevant_windows": [[0, 10, 0.9], [21, 29, 0.8], [50, 60, 0.95]]}]
    # by score: [50,60] FP, [0,10] TP (IoU 1), [21,29] TP while IoU 0.8 >= threshold
    #   thresholds 0.50..0.80 (7): precision 0, .5, .67 at recall 0, .5, 1 -> AP = .5*.67 + .5*.67 = 2/3
    #   thresholds 0.85..0.95 (3): precision 0, .5, .33, recall 0, .5, .5 -> AP = .5*.5 = .25
    res = MO.evaluate_moments(sub, gt, length_ranges={"full": None}, highlight=False, round_digits=None)
    m_ap = res["full"]["MR-mAP"]
    assert m_ap["0.5"] == pytest.approx(200 / 3) and m_ap["0.8"] == pytest.approx(200 / 3)
    assert m_ap["0.85"] == pytest.approx(25.0)
    assert m_ap["average"] == pytest.approx((7 * 200 / 3 + 3 * 25) / 10)
    # R1 uses the first listed window ([0,10], IoU 1), not the best-scored one
    assert set(res["full"]["MR-R1"].values()) == {100.0}
    assert res["brief"]["MR-full-mAP@0.75"] == pytest.approx(200 / 3)
    assert MO.evaluate_moments(sub, gt, length_ranges={"full": None})["brief"]["MR-full-mAP"] == 54.17


def test_highlight_hand_worked():
    # 8 s -> 4 clips; clips 1 and 2 annotated by 3 workers
    gt = [_gt(1, [[2, 6]], duration=8, clip_ids=[1, 2], saliency=[[4, 2, 0], [1, 4, 0]])]
    sub = [{"qid": 1, "pred_relevant_windows": [[2, 6, 1.0]], "pred_saliency_scores": [0.1, 0.9, 0.5, 0.2]}]
    res = MO.evaluate_moments(sub, gt, round_digits=None)
    # VeryGood (>= 4): worker 0 positives {1} -> AP 1; worker 1 {2}: ranked 2nd -> AP .5; worker 2 none -> 0
    assert res["HL-min-VeryGood"]["HL-mAP"] == pytest.approx(50.0)
    # top clip 1 is VeryGood for worker 0 -> hit
    assert res["HL-min-VeryGood"]["HL-Hit1"] == 100.0
    # Fair (>= 2): worker 0 {1} -> 1, worker 1 {1, 2} -> 1, worker 2 none -> 0
    assert res["HL-min-Fair"]["HL-mAP"] == pytest.approx(200 / 3)
    assert res["brief"]["HL-min-Fair-Hit1"] == 100.0


def test_saliency_ap_with_ties_and_degenerate_labels():
    # scores .5 (pos), .5 (neg), .1 (pos): thresholds .5 -> precision .5, .1 -> precision 2/3;
    # interpolated (best at this or a lower threshold): 2/3 at both -> AP 2/3
    assert MO.saliency_average_precision([1, 0, 1], [0.5, 0.5, 0.1]) == pytest.approx(2 / 3)
    assert MO.saliency_average_precision([0, 0, 0], [0.3, 0.2, 0.1]) == 0.0
    assert MO.saliency_average_precision([1, 1], [0.3, 0.2]) == 1.0


def test_saliency_ap_matches_get_ap_golden():
    """Goldens: moment_detr get_ap (scikit-learn precision_recall_curve) on tie-heavy random cases."""
    g = json.loads((DATA / "hl_ap_golden.json").read_text())
    for c in g["cases"]:
        assert MO.saliency_average_precision(c["y_true"], c["y_score"]) == pytest.approx(c["ap"], abs=1e-12)


@pytest.mark.parametrize("name", ["mr_qvh", "mr_qvh_partial"])
def test_matches_moment_detr_reference(name):
    """Goldens: moment_detr standalone_eval eval_submission on the same JSONL files, as published
    (rounded to 2 decimals) and with its output rounding removed (raw)."""
    g = json.loads((DATA / f"{name}_golden.json").read_text())
    for key, digits in (("rounded", 2), ("raw", None)):
        res = MO.evaluate_moments_files(DATA / f"{name}_gt.jsonl", DATA / f"{name}_pred.jsonl",
                                        match_number=g["match_number"], round_digits=digits)
        ours, ref = _flat(res), _flat(g[key])
        assert len(ref) == 104
        for k, v in ref.items():
            assert ours[k] == pytest.approx(v, abs=1e-6 if digits is None else 1e-9), (key, k)
        assert list(res["brief"]) == list(g[key]["brief"])
    assert 0 < g["raw"]["brief"]["MR-full-mAP"] < 100


def test_charades_sta_matches_reference():
    g = json.loads((DATA / "mr_charades_golden.json").read_text())
    sub, gt = MO.load_jsonl(DATA / "mr_charades_pred.jsonl"), MO.load_jsonl(DATA / "mr_charades_gt.jsonl")
    res = MO.charades_sta_metrics(sub, gt, round_digits=None)
    for t in ("0.3", "0.5", "0.7"):
        assert res[f"R1@{t}"] == pytest.approx(g["r1"][t], abs=1e-9)
    full = MO.evaluate_moments(sub, gt, length_ranges={"full": None}, round_digits=None)["full"]
    for k, v in _flat(g["full_raw"]).items():
        assert _flat(full)[k] == pytest.approx(v, abs=1e-6), k
    assert 0 < res["mIoU"] < 100 and res["num_queries"] == 30


def test_empty_prediction_is_a_miss_and_buckets_can_be_empty():
    gt = [_gt(1, [[0, 10]]), _gt(2, [[0, 10]])]
    sub = [{"qid": 1, "pred_relevant_windows": [[0, 10, 0.5]]}, {"qid": 2, "pred_relevant_windows": []}]
    res = MO.evaluate_moments(sub, gt, round_digits=None)
    assert res["full"]["MR-mAP"]["average"] == pytest.approx(50.0)
    assert res["full"]["MR-R1"]["0.5"] == pytest.approx(50.0)
    # windows of 10 s are "short" (0 < l <= 10): the other buckets hold no query
    assert res["counts"] == {"queries": 2, "short": 2, "middle": 0, "long": 0, "full": 2}
    assert res["middle"]["MR-mAP"]["average"] is None and res["brief"]["MR-long-mAP"] is None


def test_query_set_checks_and_bad_rows(tmp_path):
    gt = [_gt(1, [[0, 10]]), _gt(2, [[0, 10]])]
    sub = [{"qid": 1, "pred_relevant_windows": [[0, 10, 0.5]]}]
    with pytest.raises(AnnotationError, match="1 missing"):
        MO.evaluate_moments(sub, gt)
    assert MO.evaluate_moments(sub, gt, match_number=False)["counts"]["queries"] == 1
    with pytest.raises(AnnotationError, match="appears twice"):
        MO.evaluate_moments(sub + sub, gt[:1])
    with pytest.raises(AnnotationError, match="end < start"):
        MO.evaluate_moments([{"qid": 1, "pred_relevant_windows": [[5, 1, 0.5]]}], gt[:1])
    with pytest.raises(AnnotationError, match="needed for highlight"):   # GT has no saliency
        MO.evaluate_moments([{"qid": 1, "pred_relevant_windows": [[0, 1, 1]], "pred_saliency_scores": [1]}],
                            gt[:1])
    p = tmp_path / "x.jsonl"
    p.write_text('{"qid": 1}\n[1, 2]\n')
    with pytest.raises(AnnotationError, match="row 2"):
        MO.load_jsonl(p)


def test_cli_moments_and_charades(tmp_path):
    out = tmp_path / "m.json"
    cmd = [sys.executable, "-m", "internvideo2.cli", "eval", "moments", "--gt", str(DATA / "mr_qvh_gt.jsonl"),
           "--pred", str(DATA / "mr_qvh_pred.jsonl"), "-o", str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "MR-full-R1@0.7" in proc.stdout and "HL-min-VeryGood-Hit1" in proc.stdout
    g = json.loads((DATA / "mr_qvh_golden.json").read_text())
    assert json.loads(out.read_text())["brief"] == g["rounded"]["brief"]
    cmd = [sys.executable, "-m", "internvideo2.cli", "eval", "moments", "--charades",
           "--gt", str(DATA / "mr_charades_gt.jsonl"), "--pred", str(DATA / "mr_charades_pred.jsonl")]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "R1@0.3" in proc.stdout and "mIoU" in proc.stdout
    np.testing.assert_equal(proc.stdout.count("\n"), 6)
