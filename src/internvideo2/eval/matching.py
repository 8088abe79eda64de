"""Interval matching shared by temporal action localisation (:mod:`.tal`) and moment retrieval
(:mod:`.moments`): the ActivityNet greedy tIoU matcher and the interpolated average precision."""
from __future__ import annotations

import numpy as np

__all__ = ["greedy_match", "interpolated_ap"]


def greedy_match(iou: np.ndarray, thresholds: np.ndarray, taken: np.ndarray, candidates: np.ndarray) -> np.ndarray:
    """Match one prediction, at every threshold at once, the way the ActivityNet reference evaluator does.

    ``iou [G]`` is the prediction's tIoU with ``G`` ground truths whose columns in ``taken [T, G_all]`` are
    ``candidates [G]``. Per threshold the ground truths are walked by decreasing tIoU (``argsort()[::-1]``,
    NaN first like the reference), stopping at the first one below the threshold (``~(x < t)`` keeps the
    reference's treatment of NaN) and skipping those already taken; the first one left is matched and marked
    in ``taken`` (in place). Returns ``hit [T]`` bool.
    """
    thr = np.asarray(thresholds, dtype=np.float64)
    srt = iou.argsort()[::-1]
    cand = candidates[srt]
    ok = ~(iou[srt][None, :] < thr[:, None])  # [T, G]
    ok &= np.logical_and.accumulate(ok, axis=1)
    ok &= ~taken[:, cand]
    hit = ok.any(axis=1)
    first = ok.argmax(axis=1)
    for t in np.flatnonzero(hit):
        taken[t, cand[first[t]]] = True
    return hit


def interpolated_ap(precision: np.ndarray, recall: np.ndarray) -> float:
    """VOC-2011 interpolated AP: area under the precision envelope (max precision at recall >= r),
    summed over the recall steps, with the curve closed at recall 0 and 1."""
    p = np.concatenate([[0.0], precision, [0.0]])
    r = np.concatenate([[0.0], recall, [1.0]])
    p = np.maximum.accumulate(p[::-1])[::-1]        # envelope from the right
    step = np.flatnonzero(r[1:] != r[:-1]) + 1
    return float(np.sum((r[step] - r[step - 1]) * p[step]))
