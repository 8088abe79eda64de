"""Retrieval and classification metrics: hand-worked cases and the official itm_eval / torchnet goldens."""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from internvideo2.errors import ConfigError
from internvideo2.eval import metrics as M

DATA = Path(__file__).parent / "data" / "eval"


# ------------------------------------------------------------------------------------------ retrieval

def test_retrieval_metrics_hand_worked():
    scores = [
        [0.9, 0.1, 0.5, 0.3],  # gt 2: order 0,2,3,1 -> rank 1
        [0.2, 0.8, 0.1, 0.7],  # gt {3, 0}: order 1,3,0,2 -> 3 at 1, 0 at 2 -> best 1
        [0.1, 0.2, 0.3, 0.4],  # gt 0: order 3,2,1,0 -> rank 3
        [1.0, 0.0, 0.5, 0.2],  # gt 0: rank 0
    ]
    gt = [2, [3, 0], 0, 0]
    assert M.retrieval_ranks(scores, gt).tolist() == [1, 1, 3, 0]
    res = M.retrieval_metrics(scores, gt, ks=(1, 2, 5))
    assert res["R@1"] == 25.0            # 1 of 4 at rank 0
    assert res["R@2"] == 75.0            # ranks 1, 1, 0
    assert res["R@5"] == 100.0
    assert res["MdR"] == 2.0             # median of rank+1 = [2, 2, 4, 1]
    assert res["MnR"] == 2.25            # 9 / 4
    assert res["num_queries"] == 4


def test_itm_eval_hand_worked_both_directions():
    # 2 videos, 3 texts; video 0 has texts {0, 1}, video 1 has text 2.
    v2t = np.array([[0.9, 0.8, 0.1], [0.2, 0.3, 0.7]], dtype=np.float32)
    t2v = np.array([[0.6, 0.4], [0.1, 0.9], [0.3, 0.8]], dtype=np.float32)
    res = M.itm_eval(v2t, t2v, txt2vid=[0, 0, 1], vid2txt=[[0, 1], 2])
    # v2t: both videos rank a ground truth first. t2v: text 1 ranks video 0 second.
    assert res["v2t_r1"] == 100.0 and res["v2t_r_mean"] == 100.0
    assert res["t2v_r1"] == 66.67                      # 2/3, rounded like the official code
    assert res["t2v_r5"] == 100.0 and res["t2v_r10"] == 100.0
    assert res["t2v_r_mean"] == 88.89                  # (66.67 + 100 + 100) / 3
    assert res["r_mean"] == 94.44
    assert res["t2v_MdR"] == 1.0 and res["t2v_MnR"] == 1.33
    raw = M.itm_eval(v2t, t2v, [0, 0, 1], [[0, 1], 2], round_digits=None)
    assert raw["t2v_r1"] == pytest.approx(200 / 3)
    clip = M.itm_eval(v2t, t2v, [0, 0, 1], [[0, 1], 2], key_style="clip")
    assert clip["img_r1"] == 66.67 and clip["txt_r1"] == 100.0 and "r_mean" in clip


def test_itm_eval_matches_official_goldens():
    """Goldens: the official itm_eval run on random float32 matrices with single and multiple GTs."""
    g = json.loads((DATA / "retrieval_golden.json").read_text())
    for case in g["itm_cases"]:
        v2t = np.asarray(case["v2t"], dtype=np.float32)
        t2v = np.asarray(case["t2v"], dtype=np.float32)
        ours = M.itm_eval(v2t, t2v, case["txt2vid"], case["vid2txt"])
        for k, v in case["itm_eval"].items():
            assert ours[k] == v, k
        # torch input gives the same numbers
        assert M.itm_eval(torch.from_numpy(v2t), torch.from_numpy(t2v), case["txt2vid"],
                          case["vid2txt"]) == ours


def test_retrieval_rejects_bad_ground_truth():
    with pytest.raises(ConfigError, match=r"gt\[1\]"):
        M.retrieval_metrics([[1.0, 0.0], [0.0, 1.0]], [0, []])
    with pytest.raises(ConfigError, match="outside"):
        M.retrieval_metrics([[1.0, 0.0]], [2])
    with pytest.raises(ConfigError, match="entries"):
        M.retrieval_metrics([[1.0, 0.0]], [0, 1])


def test_dual_softmax_hand_worked():
    sim = torch.tensor([[2.0, 0.0], [1.0, 1.0]])            # [videos, texts]
    s1 = 1 / (1 + math.exp(-1))                              # softmax([2, 1])[0] = softmax([1, 0])[0]
    s2 = 1 / (1 + math.exp(-2))                              # softmax([2, 0])[0]
    v2t, t2v = M.dual_softmax(sim)
    # column-wise (over videos) softmax: col0 [2,1] -> [s1, 1-s1]; col1 [0,1] -> [1-s1, s1]
    expect_v2t = torch.tensor([[2 * s1, 0.0], [1 - s1, s1]])
    # t2v: sim.T = [[2,1],[0,1]], softmax over texts: col0 [2,0] -> [s2, 1-s2]; col1 [1,1] -> [.5,.5]
    expect_t2v = torch.tensor([[2 * s2, 0.5], [0.0, 0.5]])
    torch.testing.assert_close(v2t, expect_v2t)
    torch.testing.assert_close(t2v, expect_t2v)
    # video 1 ties both texts under the raw score; DSL prefers text 1 (less claimed by other videos)
    assert v2t[1].argmax().item() == 1


def test_itm_rerank_merge_replaces_topk_only():
    sim = torch.tensor([[0.1, 0.9, 0.5], [0.7, 0.2, 0.3]])
    idx = M.topk_indices(sim, 2)
    assert idx.tolist() == [[1, 2], [0, 2]]
    itm = torch.tensor([[3.0, -1.0], [0.5, 2.0]])           # ITM logits for those candidates, in order
    out = M.itm_rerank_merge(sim, itm, 2)
    assert out.tolist() == [[-100.0, 3.0, -1.0], [0.5, -100.0, 2.0]]
    # k larger than the candidate count is clipped like min(len(sims), k_test)
    assert M.topk_indices(sim, 128).shape == (2, 3)
    with pytest.raises(ConfigError, match="itm_scores_topk"):
        M.itm_rerank_merge(sim, itm[:, :1], 2)


def test_ensemble_templates_both_modes():
    ln3 = math.log(3)
    # 1 video, 2 classes x 2 templates (class-major): softmax([0,0,ln3,ln3]) = [1,1,3,3]/8
    v2t = torch.tensor([[0.0, 0.0, ln3, ln3]])
    torch.testing.assert_close(M.ensemble_templates(v2t, 2), torch.tensor([[1 / 8, 3 / 8]]))
    cos = torch.tensor([[0.1, 0.3, 0.2, 0.6]])
    torch.testing.assert_close(M.ensemble_templates(cos, 2, mode="cosine_mean"), torch.tensor([[0.2, 0.4]]))
    # text->video [4 texts, 2 videos]: each row softmaxed over videos, then templates averaged
    t2v = torch.tensor([[0.0, ln3], [ln3, 0.0], [0.0, 0.0], [0.0, ln3]])
    torch.testing.assert_close(M.ensemble_templates(t2v, 2, text_dim=0),
                               torch.tensor([[0.5, 0.5], [0.375, 0.625]]))
    with pytest.raises(ConfigError, match="num_templates"):
        M.ensemble_templates(v2t, 3)


# ------------------------------------------------------------------------------------- classification

def test_topk_and_mean_class_accuracy_hand_worked():
    scores = np.array([[0.1, 0.5, 0.4], [0.3, 0.2, 0.5], [0.6, 0.1, 0.3]])
    labels = [2, 0, 0]
    # top-1 predictions [1, 2, 0]: only the last is right; top-2 sets {1,2}, {2,0}, {0,2}: all right
    acc = M.topk_accuracy(scores, labels, ks=(1, 2))
    assert acc["top1"] == pytest.approx(100 / 3)
    assert acc["top2"] == 100.0
    # per class: class 0 -> 1 of 2, class 2 -> 0 of 1, class 1 has no sample -> mean 25 %
    assert M.mean_class_accuracy(scores, labels) == pytest.approx(25.0)
    cm = M.confusion_matrix([1, 2, 0], labels, 3)
    assert cm.tolist() == [[1, 0, 1], [0, 0, 0], [0, 1, 0]]
    assert M.mean_class_accuracy(np.array([1, 2, 0]), labels) == pytest.approx(25.0)


def test_aggregate_views_softmax_then_mean_with_tuple_dedupe():
    ln3 = math.log(3)
    logits = torch.tensor([
        [0.0, 0.0],     # a, clip 0 -> [.5, .5]
        [ln3, 0.0],     # a, clip 1 -> [.75, .25]
        [0.0, ln3],     # b, clip 0 -> [.25, .75]
        [ln3, ln3],     # b, clip 1 -> [.5, .5]
        [10.0, 0.0],    # b, clip 0 again (sampler padding): dropped
    ])
    agg = M.aggregate_views(logits, ["a", "a", "b", "b", "b"], clip_ids=[0, 1, 0, 1, 0],
                            crop_ids=[0, 0, 0, 0, 0], labels=[0, 0, 1, 1, 1])
    assert agg.video_ids == ["a", "b"]
    np.testing.assert_allclose(agg.probs, [[0.625, 0.375], [0.375, 0.625]])
    assert agg.num_views == [2, 2] and agg.duplicates == 1
    assert agg.labels.tolist() == [0, 1]
    assert agg.label == "2 clips x 1 crop"
    assert M.topk_accuracy(agg.probs, agg.labels, ks=(1,))["top1"] == 100.0
    # (clip 1, crop 12) and (clip 11, crop 2) are different views; the official string key "112"
    # would merge them (spec P10)
    agg2 = M.aggregate_views(torch.tensor([[0.0, ln3], [ln3, 0.0]]), ["c", "c"], clip_ids=[1, 11],
                             crop_ids=[12, 2])
    assert agg2.num_views == [2] and agg2.duplicates == 0
    np.testing.assert_allclose(agg2.probs, [[0.5, 0.5]])
    assert agg2.label == "2 views"
    assert M.views_label(4, 3) == "4 clips x 3 crops"
    with pytest.raises(ConfigError, match=r"labels\[1\]"):
        M.aggregate_views(torch.zeros(2, 3), ["a", "a"], labels=[0, 1])


def test_multiple_choice_accuracy_hand_worked():
    scores = [[0.1, 0.7, 0.2], [0.5, 0.5, 0.0], [0.0, 0.0, 1.0]]
    # predictions [1, 0 (first of the tied maxima), 2] vs answers [1, 1, 2]
    assert M.multiple_choice_accuracy(scores, [1, 1, 2]) == pytest.approx(200 / 3)
    with pytest.raises(ConfigError, match="answers"):
        M.multiple_choice_accuracy(scores, [1, 1, 3])


def test_multilabel_map_hand_worked_and_torchnet_golden():
    scores = [[0.9, 0.2], [0.8, 0.4], [0.1, 0.3]]
    targets = [[1, 0], [0, 0], [1, 0]]
    # class 0: ranking 1,0,1 -> precisions at positives 1 and 2/3 -> AP 5/6; class 1: no positive -> 0
    np.testing.assert_allclose(M.average_precision_per_class(scores, targets), [5 / 6, 0.0])
    assert M.multilabel_map(scores, targets) == pytest.approx(100 * 5 / 12)
    g = json.loads((DATA / "retrieval_golden.json").read_text())["map_case"]
    ours = M.average_precision_per_class(np.asarray(g["scores"], dtype=np.float32), g["targets"])
    np.testing.assert_allclose(ours, g["ap"], atol=1e-6)       # torchnet works in fp32
    with pytest.raises(ConfigError, match="targets"):
        M.multilabel_map(scores, [[2, 0], [0, 0], [1, 0]])
