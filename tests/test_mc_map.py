"""Charades-MC: multi-hot answers, the torchnet mAPMeter mean average precision, first/any-answer accuracy.

References: ``InternVideo2/multi_modality/tasks_clip/retrieval_mc2.py`` (scores = softmax(cos / temp) over the
157 options; ``meter.mAPMeter().add(all_preds, gt)``), ``dataset/ret_dataset.py::VidTxtRetMCNewEvalDataset``
(the ``answer`` list becomes the target as it is: one 0/1 per option) and pytorch/tnt
``torchnet/meter/apmeter.py`` / ``mapmeter.py``.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from internvideo2.data.annotations import parse_mc_answer, read_multiple_choice
from internvideo2.errors import AnnotationError, ConfigError
from internvideo2.eval import metrics as M

DATA = Path(__file__).parent / "data" / "eval"


def reference_ap(scores: list[list[float]], targets: list[list[int]]) -> list[float]:
    """A straightforward per-class AP in float64: rank by decreasing score (ties in dataset order), average
    the precision at each positive; a class without positives is 0 (torchnet's ``/ max(#pos, 1)``)."""
    n, k = len(scores), len(scores[0])
    out = []
    for c in range(k):
        ranked = sorted(range(n), key=lambda i: -scores[i][c])  # sorted() is stable: ties keep dataset order
        hits, precisions = 0, []
        for rank, i in enumerate(ranked, start=1):
            if targets[i][c]:
                hits += 1
                precisions.append(hits / rank)
        out.append(sum(precisions) / max(len(precisions), 1))
    return out


# ------------------------------------------------------------------------------------------------ metric

def test_ap_hand_computed_with_ties_and_a_class_without_positives():
    scores = [[0.9, 0.5, 0.3],
              [0.7, 0.5, 0.2],
              [0.4, 0.8, 0.1],
              [0.2, 0.5, 0.6]]
    targets = [[1, 0, 0],
               [0, 1, 0],
               [1, 1, 0],
               [0, 1, 0]]
    # class 0: order 0(+) 1 2(+) 3 -> (1/1 + 2/3) / 2 = 5/6
    # class 1: order 2(+), then the tie 0.5 in dataset order 0 1(+) 3(+) -> (1/1 + 2/3 + 3/4) / 3 = 29/36
    # class 2: no positive -> 0, and it still counts in the mean (mAPMeter averages over all K)
    want = [5 / 6, 29 / 36, 0.0]
    ap = M.average_precision_per_class(scores, targets)
    np.testing.assert_allclose(ap, want, rtol=1e-7)
    np.testing.assert_allclose(ap, reference_ap(scores, targets), rtol=1e-7)
    assert M.multilabel_map(scores, targets) == pytest.approx(100 * (5 / 6 + 29 / 36) / 3, rel=1e-6)
    # the tie order matters: listing the samples as 3, 1, 2, 0 puts both tied positives before the tied
    # negative: class 1 ranks 2(+) 3(+) 1(+) 0 -> (1 + 1 + 1) / 3
    order = (3, 1, 2, 0)
    swapped = M.average_precision_per_class([scores[i] for i in order], [targets[i] for i in order])
    assert swapped[1] == 1.0 and swapped[0] == pytest.approx(5 / 6)


def test_ap_equals_the_reference_on_random_data_and_is_float32_like_the_meter():
    rng = np.random.default_rng(3)
    scores = rng.random((60, 9)).astype(np.float32)
    scores[::7, 2] = 0.5                                   # some exact ties
    targets = (rng.random((60, 9)) < 0.25).astype(np.int64)
    targets[:, 4] = 0                                      # a class without positives
    ap = M.average_precision_per_class(scores, targets)
    np.testing.assert_allclose(ap, reference_ap(scores.tolist(), targets.tolist()), rtol=2e-6, atol=1e-7)
    assert ap[4] == 0.0
    assert np.array_equal(ap, ap.astype(np.float32).astype(np.float64))  # fp32 values, like APMeter
    assert M.multilabel_map(scores, targets) == float(torch.from_numpy(ap).float().mean()) * 100


def test_ap_is_bit_equal_to_the_torchnet_golden():
    """``retrieval_golden.json`` holds APMeter.value() of pytorch/tnt on 50 x 7 scores (no ties)."""
    g = json.loads((DATA / "retrieval_golden.json").read_text())["map_case"]
    ap = M.average_precision_per_class(np.asarray(g["scores"], dtype=np.float32), g["targets"])
    assert ap.tolist() == g["ap"]


def test_ap_refuses_bad_input():
    with pytest.raises(ConfigError, match="targets"):
        M.average_precision_per_class([[0.1, 0.2]], [[2, 0]])
    with pytest.raises(ConfigError, match="targets"):
        M.average_precision_per_class([[0.1, 0.2]], [[1, 0, 0]])
    with pytest.raises(ConfigError, match="scores"):
        M.average_precision_per_class([[float("nan"), 0.2]], [[1, 0]])


def test_first_and_any_answer_accuracy_and_map():
    scores = np.array([[0.1, 0.6, 0.3],    # argmax 1: first answer 1 -> first hit, any hit
                       [0.5, 0.2, 0.3],    # argmax 0: answers [2, 0] -> first miss, any hit
                       [0.4, 0.4, 0.2],    # argmax 0 (first maximum): answer 1 -> miss both
                       [0.2, 0.3, 0.5]])   # argmax 2: answers [1, 2] -> first miss, any hit
    answers = [1, [2, 0], 1, [1, 2]]
    m = M.multiple_choice_metrics(scores, answers)
    assert m.first_answer_accuracy == 25.0 and m.any_answer_accuracy == 75.0
    assert m.num_items == 4 and m.num_multi_answer == 2
    t = M.multi_hot(answers, 3)
    assert t.tolist() == [[0, 1, 0], [1, 0, 1], [0, 1, 0], [0, 1, 1]]
    np.testing.assert_allclose(m.ap_per_option, reference_ap(scores.tolist(), t.tolist()), rtol=1e-6)
    assert m.map == M.multilabel_map(scores, t)
    # varying option counts: accuracy only, no per-class mAP
    v = M.multiple_choice_metrics([np.array([0.2, 0.8]), np.array([0.5, 0.3, 0.2])], [1, [1, 0]])
    assert (v.first_answer_accuracy, v.any_answer_accuracy, v.map) == (50.0, 100.0, None)
    with pytest.raises(ConfigError, match=r"answers\[0\]"):
        M.multiple_choice_metrics(scores[:1], [[1, 1]])


# ------------------------------------------------------------------------------------------------ reader

def _write(tmp_path: Path, rows: list) -> Path:
    p = tmp_path / "charades_mc.json"
    p.write_text(json.dumps(rows))
    return p


def test_reader_takes_official_multi_hot_answers(tmp_path):
    opts = [f"class {k}" for k in range(5)]
    p = _write(tmp_path, [{"video": "a.mp4", "option": opts, "answer": [0, 1, 0, 1, 0]},
                          {"video": "b.mp4", "option": opts, "answer": [1.0, 0.0, 0.0, 0.0, 0.0]},
                          {"video": "c.mp4", "option": opts, "answer": [3, 1]}])
    recs = read_multiple_choice(p, answer_format="auto").records
    assert [r.answer for r in recs] == [[1, 3], [0], [3, 1]]   # an index list keeps its order
    with pytest.raises(AnnotationError) as ei:
        read_multiple_choice(p, answer_format="multi_hot")      # row 2 is an index list, not multi-hot
    assert ei.value.row == 2 and ei.value.path == str(p) and "one 0/1 entry per option (5)" in ei.value.reason
    assert parse_mc_answer([0, 0, 1], 3, "multi_hot") == [2]
    assert parse_mc_answer([0, 1], 3, "index") == [0, 1]


@pytest.mark.parametrize("answer, words", [
    ([0, 1, 0, 1], "one 0/1 entry per option (5), this one has 4"),   # a multi-hot row one entry short
    ([0, 1, 0, 2, 0], "repeated option indices"),                     # not 0/1 (2), so an index list
    ([0, 0, 0, 0, 0], "marks no option as correct"),                  # all zeros
    ([0, 1, 0, 0, 7], "not an option index"),
    ([], "non-empty list"),
    ([True, False, False, False, False], "not an option index"),
    ("x", "must be an index or a non-empty list"),
])
def test_malformed_multi_hot_rows_raise_naming_file_and_row(tmp_path, answer, words):
    opts = [f"o{k}" for k in range(5)]
    p = _write(tmp_path, [{"video": "a.mp4", "option": opts, "answer": [1, 0, 0, 0, 0]},
                          {"video": "b.mp4", "option": opts, "answer": answer}])
    with pytest.raises(AnnotationError) as ei:
        read_multiple_choice(p)
    assert ei.value.path == str(p) and ei.value.row == 1
    assert words in ei.value.reason and str(p) in str(ei.value)


@pytest.mark.parametrize("answer, words", [([1, 0, 0, 0], "one 0/1 entry per option (5), got 4"),
                                           ([1, 0, 0.5, 0, 0], "entry 2 is 0.5, not 0 or 1"),
                                           (2, "must be a multi-hot list")])
def test_strict_multi_hot_format(tmp_path, answer, words):
    p = _write(tmp_path, [{"video": "a.mp4", "option": [f"o{k}" for k in range(5)], "answer": answer}])
    with pytest.raises(AnnotationError) as ei:
        read_multiple_choice(p, answer_format="multi_hot")
    assert ei.value.row == 0 and words in ei.value.reason


# ------------------------------------------------------------------------------------------------ protocol

@pytest.fixture(scope="module")
def model():
    from internvideo2 import create_model

    torch.manual_seed(0)
    return create_model("tiny", "stage2").eval()


def test_scores_are_softmax_of_cosine_over_temp(model):
    from internvideo2.eval.retrieval import encode_texts, encode_videos, evaluate_multiple_choice

    torch.manual_seed(1)
    videos = torch.randn(3, 3, 4, 56, 56)
    options = ["a red star", "a blue circle", "a green square", "a white cross"]
    answers = [[0, 2], [1], [3, 1]]
    res = evaluate_multiple_choice(model, videos, [options] * 3, answers)
    v = encode_videos(model, videos, keep_tokens=False).feats
    t = encode_texts(model, options, keep_hidden=False).feats
    temp = float(model.temp.detach())
    scores = torch.softmax((v @ t.T) / temp, dim=1)                 # [3, 4], official get_sim_for_each_question
    m = M.multiple_choice_metrics(scores.numpy(), answers)
    assert res["temperature"] == temp and res["options_shared"] is True
    assert res["map"] == pytest.approx(m.map, abs=1e-4)
    assert res["accuracy"] == res["first_answer_accuracy"] == m.first_answer_accuracy
    assert res["any_answer_accuracy"] == m.any_answer_accuracy and res["num_multi_answer"] == 2
    # the temperature changes the mAP (scores are compared across videos) but never the argmax
    hot = evaluate_multiple_choice(model, videos, [options] * 3, answers, temperature=10.0)
    assert hot["accuracy"] == res["accuracy"] and hot["temperature"] == 10.0


def test_eval_mc_command_on_a_charades_style_file(tmp_path, model):
    from internvideo2.checkpoint.pretrained import save_pretrained
    from internvideo2.cli import main
    from internvideo2.data.synth import SynthConfig, generate_world

    generate_world(tmp_path, 3, split="heldout", cfg=SynthConfig(num_frames=4, size=32, audio=False),
                   progress=False)
    save_pretrained(model, tmp_path / "m")
    opts = ["Holding a book.", "Opening a door", "Sitting (on) a chair"]   # pre_text is applied
    rows = [{"video": f"videos/heldout/{i:06d}.mp4", "option": opts, "answer": a}
            for i, a in enumerate(([1, 0, 1], [0, 1, 0], [1, 1, 1]))]
    ann = tmp_path / "mc.json"
    ann.write_text(json.dumps(rows))
    out = tmp_path / "res.json"
    args = ["eval", "mc", "--model", str(tmp_path / "m"), "--data", str(ann), "--videos", str(tmp_path),
            "--answers", "multi_hot", "-o", str(out)]
    assert main(args) == 0
    res = json.loads(out.read_text())
    assert res["num_items"] == 3 and res["num_multi_answer"] == 2 and res["options_shared"] is True
    assert 0 <= res["map"] <= 100 and 0 <= res["accuracy"] <= res["any_answer_accuracy"] <= 100
    rows[1]["answer"] = [0, 1]                                                 # one entry short
    ann.write_text(json.dumps(rows))
    assert main(args) == 1
