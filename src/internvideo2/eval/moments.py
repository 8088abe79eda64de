"""Moment retrieval (MR) and highlight detection (HD) metrics, QVHighlights protocol; Charades-STA R1.

Reproduces ``jayleicn/moment_detr`` ``standalone_eval/eval.py`` (``eval_submission``) and
``standalone_eval/utils.py`` (``compute_average_precision_detection``, ``get_ap``) on the same JSONL
files, without scikit-learn. Differences are listed in ``docs/metrics.md``.

Ground truth, one JSON object per line::

    {"qid": 2579, "query": "...", "duration": 150, "vid": "...", "relevant_windows": [[26, 36]],
     "relevant_clip_ids": [13, 14, 15, 16, 17], "saliency_scores": [[4, 4, 2], ...]}

Predictions, one per line::

    {"qid": 2579, "vid": "...", "pred_relevant_windows": [[start, end, score], ...],
     "pred_saliency_scores": [one score per 2-second clip]}

Every number is a percentage, rounded to 2 decimals like the reference (``round_digits=None`` keeps
full precision).
"""
from __future__ import annotations

import json
import math
from collections import OrderedDict
from collections.abc import Hashable, Mapping, Sequence
from pathlib import Path

import numpy as np

from internvideo2.errors import AnnotationError, ConfigError
from internvideo2.eval.matching import greedy_match, interpolated_ap
from internvideo2.utils.io import write_text

#: mAP / R1 IoU thresholds: 0.5:0.05:0.95 rounded to 2 decimals, as the reference rounds them.
IOU_THRESHOLDS = tuple(float(f"{e:.2f}") for e in np.linspace(0.5, 0.95, 10))
#: QVHighlights ground-truth window length buckets (seconds), ``min < length <= max``; ``None`` = all
#: queries unfiltered (the reference's "full").
QVH_LENGTH_RANGES: dict[str, tuple[float, float] | None] = {
    "short": (0, 10), "middle": (10, 30), "long": (30, 150), "full": None}
#: Highlight "positive clip" levels: saliency >= 2 (Fair), 3 (Good), 4 (VeryGood).
HL_LEVELS = (("Fair", 2), ("Good", 3), ("VeryGood", 4))
CLIP_LENGTH = 2.0  # seconds per saliency clip in QVHighlights


def load_jsonl(path: str | Path) -> list[dict]:
    """Rows of a JSON-lines file (blank lines skipped); bad lines raise :class:`AnnotationError`."""
    rows = []
    try:
        f = open(path, encoding="utf-8")
    except FileNotFoundError:
        raise AnnotationError(str(path), "-", "file not found") from None
    with f:
        try:
            lines = list(f)
        except UnicodeDecodeError as e:
            raise AnnotationError(str(path), "-", f"not UTF-8 text ({e.reason} at byte {e.start})") from None
        for i, line in enumerate(lines, 1):
            line = line.strip()
            if not line:
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise AnnotationError(str(path), i, f"invalid JSON: {e.msg}") from None
            if not isinstance(row, dict):
                raise AnnotationError(str(path), i, "line is not a JSON object")
            rows.append(row)
    return rows


# --------------------------------------------------------------------------------------------------
# primitives
# --------------------------------------------------------------------------------------------------

def window_iou_cross(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``[N, M]`` IoU of windows ``a [N, 2]`` and ``b [M, 2]`` (intersection / (len_a + len_b - inter))."""
    right = np.minimum(a[:, None, 1], b[None, :, 1])
    inter = np.clip(right - np.maximum(a[:, None, 0], b[None, :, 0]), 0, None)
    union = (a[:, 1] - a[:, 0])[:, None] + (b[:, 1] - b[:, 0])[None, :] - inter
    with np.errstate(divide="ignore", invalid="ignore"):
        return inter / union


def window_iou_paired(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``[N]`` IoU of row-aligned windows, 0 where the hull is empty. The hull ``max(end) - min(start)``
    equals the union whenever the windows overlap, and the IoU is 0 otherwise (the reference's rule)."""
    inter = np.maximum(0, np.minimum(a[:, 1], b[:, 1]) - np.maximum(a[:, 0], b[:, 0]))
    hull = np.maximum(a[:, 1], b[:, 1]) - np.minimum(a[:, 0], b[:, 0])
    return np.divide(inter, hull, out=np.zeros_like(inter), where=hull != 0)


def query_average_precision(gt_windows: np.ndarray, pred_windows: np.ndarray, pred_scores: np.ndarray,
                            thresholds: Sequence[float] = IOU_THRESHOLDS) -> np.ndarray:
    """AP ``[T]`` (fractions) of one query's predicted windows against its ground-truth windows.

    Predictions are visited by decreasing score with ties kept in listed order (the reference's stable
    ``list.sort``); each is matched, per threshold, to the unmatched ground truth with the highest IoU
    when that IoU is not below the threshold; interpolated VOC AP as in ActivityNet.
    """
    thr = np.asarray(thresholds, dtype=np.float64)
    n_t, n_g = len(thr), len(gt_windows)
    if len(pred_windows) == 0:
        return np.zeros(n_t)
    order = np.argsort(-pred_scores, kind="stable")
    iou_all = window_iou_cross(pred_windows[order], gt_windows)        # [P, G]
    locked = np.zeros((n_t, n_g), dtype=bool)
    tp = np.zeros((n_t, len(order)))
    for r in range(len(order)):
        hit = greedy_match(iou_all[r], thr, locked, np.arange(n_g))
        tp[hit, r] = 1
    tp_c = np.cumsum(tp, axis=1)
    fp_c = np.cumsum(1 - tp, axis=1)
    recall = tp_c / float(n_g)
    precision = tp_c / (tp_c + fp_c)
    return np.array([interpolated_ap(precision[t], recall[t]) for t in range(n_t)])


def saliency_average_precision(y_true: np.ndarray, y_score: np.ndarray) -> float:
    """Highlight AP (fraction) of one query and one annotator, ``get_ap`` of the reference.

    All-negative labels give 0 and all-positive labels give 1. Otherwise, over the distinct scores in
    decreasing order, take the *interpolated* precision (best precision at this or any lower score
    threshold) at every threshold that adds a positive, and average those values: one term per distinct
    positive score, not one per positive (this is what ``np.mean(precision[np.diff(recall) != 0])`` over
    scikit-learn's ``precision_recall_curve`` computes).
    """
    y = np.asarray(y_true, dtype=np.float64)
    s = np.asarray(y_score, dtype=np.float64)
    if len(y) == 0:
        raise ConfigError("y_true", "empty")
    if np.all(y == y[0]):
        return 0.0 if y[0] == 0 else 1.0
    order = np.argsort(-s, kind="stable")
    s, y = s[order], y[order]
    last = np.r_[np.flatnonzero(np.diff(s)), len(s) - 1]   # last index of each distinct-score group
    tps = np.cumsum(y)[last]
    fps = (last + 1) - tps
    precision = tps / (tps + fps)
    interp = np.maximum.accumulate(precision[::-1])[::-1]  # max precision at this or lower thresholds
    gains = np.diff(np.r_[0.0, tps]) > 0
    return float(np.mean(interp[gains]))


# --------------------------------------------------------------------------------------------------
# evaluation
# --------------------------------------------------------------------------------------------------

def _windows(path: str, row: int | str, value, width: int, field: str) -> np.ndarray:
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise AnnotationError(path, row, f"field {field!r} is not a list of numeric windows") from None
    if arr.size == 0:
        return np.zeros((0, width))
    if arr.ndim != 2 or arr.shape[1] < width:
        raise AnnotationError(path, row, f"field {field!r} must be a list of [start, end"
                              + (", score]" if width == 3 else "]") + f" lists, got shape {arr.shape}")
    arr = arr[:, :width]
    if not np.isfinite(arr).all() or np.any(arr[:, 1] < arr[:, 0]):
        raise AnnotationError(path, row, f"field {field!r} has a non-finite window or one with end < start")
    return arr


def _index(rows: Sequence[Mapping], path: str) -> OrderedDict[Hashable, tuple[int, Mapping]]:
    out: OrderedDict = OrderedDict()
    for i, r in enumerate(rows):
        if "qid" not in r:
            raise AnnotationError(path, i + 1, "field 'qid' missing")
        q = r["qid"]
        if isinstance(q, bool) or not isinstance(q, (str, int)):
            raise AnnotationError(path, i + 1, f"field 'qid' must be a string or an integer, got {q!r:.60}")
        if q in out:
            raise AnnotationError(path, i + 1, f"qid {q!r} appears twice (first on row {out[q][0] + 1})")
        out[q] = (i, r)
    return out


def _fmt(v: float | None, digits: int | None):
    if v is None:
        return None
    v = float(v)
    return float(f"{v:.{digits}f}") if digits is not None else v


def _mr_bucket(qids, gt, sub, gt_path, sub_path, length_range, thresholds, r1_thresholds,
               max_pred_windows, digits):
    """MR-mAP and MR-R1 over the queries whose ground truth has a window in ``length_range``."""
    aps, first_ious = [], []
    for q in qids:
        gi, g = gt[q]
        gw = _windows(gt_path, gi + 1, g.get("relevant_windows", []), 2, "relevant_windows")
        if length_range is not None:
            lo, hi = length_range
            ln = gw[:, 1] - gw[:, 0]
            gw = gw[(ln > lo) & (ln <= hi)]
        if len(gw) == 0:
            continue
        si, s = sub[q]
        pw = _windows(sub_path, si + 1, s["pred_relevant_windows"], 3, "pred_relevant_windows")
        top = pw if max_pred_windows is None else pw[:max_pred_windows]
        aps.append(query_average_precision(gw, top[:, :2], top[:, 2], thresholds))
        if len(pw) == 0:
            first_ious.append(0.0)        # the reference crashes here; an empty answer is a miss
        else:
            p0 = pw[:1, :2]
            best = int(np.argmax(window_iou_cross(p0, gw)[0]))
            first_ious.append(float(window_iou_paired(p0, gw[best:best + 1])[0]))
    n = len(aps)
    if n == 0:
        m_ap = {str(t): None for t in thresholds} | {"average": None}
        r1 = {str(t): None for t in r1_thresholds}
        return {"MR-mAP": m_ap, "MR-R1": r1}, 0, None
    ap_thr = np.asarray(aps).mean(0)
    m_ap = {str(t): _fmt(100 * v, digits) for t, v in zip(thresholds, ap_thr)}
    m_ap["average"] = _fmt(100 * np.mean(ap_thr), digits)
    ious = np.asarray(first_ious)
    r1 = {str(t): _fmt(np.mean(ious >= t) * 100, digits) for t in r1_thresholds}
    return {"MR-mAP": m_ap, "MR-R1": r1}, n, float(np.mean(ious))


MAX_CLIPS = 10**6  # a highlight-detection video longer than this many clips is a broken row, not a video


def _saliency_matrix(path: str, row: int, g: Mapping, clip_length: float) -> np.ndarray:
    for f in ("duration", "relevant_clip_ids", "saliency_scores"):
        if f not in g:
            raise AnnotationError(path, row, f"field {f!r} missing (needed for highlight detection)")
    try:
        duration = float(g["duration"])
        ids = np.asarray(g["relevant_clip_ids"], dtype=np.int64).reshape(-1)
        sc = np.asarray(g["saliency_scores"], dtype=np.float64)
    except (TypeError, ValueError, OverflowError):
        raise AnnotationError(path, row, "'duration', 'relevant_clip_ids' and 'saliency_scores' must be a number, "
                              "a list of clip ids and a list of score lists") from None
    if not math.isfinite(duration) or duration / clip_length > MAX_CLIPS:
        raise AnnotationError(path, row, f"duration {g['duration']!r} is not a finite number of seconds up to "
                              f"{MAX_CLIPS * clip_length:.0f}")
    n = int(duration / clip_length)
    if sc.ndim != 2 or sc.shape[0] != len(ids):
        raise AnnotationError(path, row, f"'saliency_scores' must be one list per relevant clip, got shape "
                              f"{sc.shape} for {len(ids)} clips")
    if n < 1:
        raise AnnotationError(path, row, f"duration {g['duration']} is shorter than one {clip_length}-s clip")
    if len(ids) and (ids.min() < 0 or ids.max() >= n):
        raise AnnotationError(path, row, f"'relevant_clip_ids' outside [0, {n}) for duration {g['duration']}")
    full = np.zeros((n, sc.shape[1] if sc.size else 3))
    full[ids] = sc
    return full


def _highlight(qids, gt, sub, gt_path, sub_path, clip_length, digits) -> dict:
    mats, preds = {}, {}
    for q in qids:
        gi, g = gt[q]
        mats[q] = _saliency_matrix(gt_path, gi + 1, g, clip_length)
        si, s = sub[q]
        try:
            p = np.asarray(s["pred_saliency_scores"], dtype=np.float64).reshape(-1)
        except (TypeError, ValueError):
            raise AnnotationError(sub_path, si + 1,
                                  "'pred_saliency_scores' is not a list of numbers") from None
        if p.size == 0:
            raise AnnotationError(sub_path, si + 1, "'pred_saliency_scores' is empty")
        preds[q] = p
    out = {}
    for name, level in HL_LEVELS:
        hits, aps = [], []
        for q in qids:
            y = (mats[q] >= level).astype(np.float64)        # [clips, annotators]
            p = preds[q]
            k = int(np.argmax(p))
            hits.append(y[k].max() if k < len(y) else 0.0)
            pp = p[:len(y)] if len(p) >= len(y) else np.r_[p, np.zeros(len(y) - len(p))]
            aps.extend(saliency_average_precision(y[:, w], pp) for w in range(y.shape[1]))
        out[f"HL-min-{name}"] = {"HL-mAP": _fmt(100 * np.mean(aps), digits),
                                 "HL-Hit1": _fmt(100 * np.mean(hits), digits)}
    return out


def evaluate_moments(submission: Sequence[Mapping], ground_truth: Sequence[Mapping], *,
                     match_number: bool = True,
                     length_ranges: Mapping[str, tuple[float, float] | None] | None = None,
                     iou_thresholds: Sequence[float] = IOU_THRESHOLDS,
                     r1_thresholds: Sequence[float] | None = None,
                     max_pred_windows: int | None = 10,
                     highlight: bool | None = None,
                     clip_length: float = CLIP_LENGTH,
                     round_digits: int | None = 2,
                     gt_path: str = "<ground truth>", sub_path: str = "<predictions>") -> dict:
    """QVHighlights metrics with the reference's output layout::

        {"brief": {"MR-full-R1@0.5": .., "MR-full-R1@0.7": .., "MR-full-mAP": .., "MR-full-mAP@0.5": ..,
                   "MR-full-mAP@0.75": .., "MR-long-mAP": .., "MR-middle-mAP": .., "MR-short-mAP": ..,
                   "HL-min-Fair-mAP": .., "HL-min-Fair-Hit1": .., ..., "HL-min-VeryGood-Hit1": ..},
         "HL-min-Fair": {"HL-mAP": .., "HL-Hit1": ..}, ...,
         "full": {"MR-mAP": {"0.5": .., ..., "average": ..}, "MR-R1": {"0.5": .., ...}},
         "long": ..., "middle": ..., "short": ...,
         "counts": {...}}

    - ``match_number``: the query sets of the two files must be equal (the reference's assertion);
      ``False`` evaluates their intersection.
    - ``length_ranges``: MR buckets over ground-truth window length (default QVHighlights'
      short/middle/long/full); a bucket keeps, per query, only the ground-truth windows in range and
      drops queries left with none.
    - MR is computed when the predictions carry ``pred_relevant_windows``; HD when they carry
      ``pred_saliency_scores`` (``highlight`` forces it on or off). R1 uses each query's *first listed*
      window (sort your windows by score) against its best-overlapping ground-truth window. AP uses the
      first ``max_pred_windows`` listed windows, re-sorted by score.
    - ``counts`` (ours) gives the number of queries in each bucket; buckets with no query report
      ``None`` (the reference crashes). ``mIoU`` of the first window is added per bucket (ours).
    """
    gt = _index(ground_truth, gt_path)
    sub = _index(submission, sub_path)
    if not gt:
        raise AnnotationError(gt_path, "-", "no ground-truth rows")
    if not sub:
        raise AnnotationError(sub_path, "-", "no prediction rows")
    missing = [q for q in gt if q not in sub]
    extra = [q for q in sub if q not in gt]
    if match_number and (missing or extra):
        raise AnnotationError(sub_path, "-", f"qids differ from the ground truth: {len(missing)} missing "
                              f"(e.g. {missing[:3]}), {len(extra)} unknown (e.g. {extra[:3]}); pass "
                              "match_number=False to evaluate the intersection")
    qids = [q for q in sub if q in gt]        # submission order, as the reference iterates
    if not qids:
        raise AnnotationError(sub_path, "-", "no qid in common with the ground truth")
    thresholds = tuple(float(f"{t:.2f}") for t in iou_thresholds)
    r1_thr = thresholds if r1_thresholds is None else tuple(float(f"{t:.2f}") for t in r1_thresholds)
    ranges = dict(QVH_LENGTH_RANGES if length_ranges is None else length_ranges)
    has_mr = [("pred_relevant_windows" in sub[q][1]) for q in qids]
    has_hl = [("pred_saliency_scores" in sub[q][1]) for q in qids]
    for flags, f in ((has_mr, "pred_relevant_windows"), (has_hl, "pred_saliency_scores")):
        if any(flags) and not all(flags):
            bad = qids[flags.index(False)]
            raise AnnotationError(sub_path, sub[bad][0] + 1, f"field {f!r} missing (other rows have it)")
    do_hl = all(has_hl) if highlight is None else highlight
    if do_hl and not all(has_hl):
        raise AnnotationError(sub_path, "-",
                              "highlight=True but no 'pred_saliency_scores' in the predictions")

    metrics: dict = {}
    brief: dict = {}
    counts: dict = {"queries": len(qids)}
    if all(has_mr):
        for name, rng in ranges.items():
            res, n, miou = _mr_bucket(qids, gt, sub, gt_path, sub_path, rng, thresholds, r1_thr,
                                      max_pred_windows, round_digits)
            res["mIoU"] = _fmt(None if miou is None else 100 * miou, round_digits)
            metrics[name] = res
            counts[name] = n
        mr_brief = {}
        for name in ranges:
            mr_brief[f"MR-{name}-mAP"] = metrics[name]["MR-mAP"]["average"]
        if "full" in metrics:
            for t in (0.5, 0.75):
                if str(t) in metrics["full"]["MR-mAP"]:
                    mr_brief[f"MR-full-mAP@{t}"] = metrics["full"]["MR-mAP"][str(t)]
            for t in (0.5, 0.7):
                if str(t) in metrics["full"]["MR-R1"]:
                    mr_brief[f"MR-full-R1@{t}"] = metrics["full"]["MR-R1"][str(t)]
        brief.update(sorted(mr_brief.items()))
    if do_hl:
        hl = _highlight(qids, gt, sub, gt_path, sub_path, clip_length, round_digits)
        metrics.update(hl)
        for k, v in hl.items():
            for sk, val in v.items():
                brief[f"{k}-{sk.split('-')[1]}"] = val
    out: dict = OrderedDict()
    out["brief"] = brief
    out.update(sorted(metrics.items()))
    out["counts"] = counts
    return out


def charades_sta_metrics(submission: Sequence[Mapping], ground_truth: Sequence[Mapping], *,
                         thresholds: Sequence[float] = (0.3, 0.5, 0.7), match_number: bool = True,
                         round_digits: int | None = 2) -> dict:
    """Charades-STA: ``R1@t`` (percent of queries whose first window reaches IoU >= t with the ground
    truth) and ``mIoU``, from the same JSONL layout (no saliency, no length buckets)."""
    res = evaluate_moments(submission, ground_truth, match_number=match_number, length_ranges={"full": None},
                           r1_thresholds=thresholds, highlight=False, round_digits=round_digits)
    full = res["full"]
    out = {f"R1@{t:g}": full["MR-R1"][str(float(f'{t:.2f}'))] for t in thresholds}
    out["mIoU"] = full["mIoU"]
    out["mAP"] = full["MR-mAP"]["average"]
    out["num_queries"] = res["counts"]["full"]
    return out


def evaluate_moments_files(gt_path: str | Path, pred_path: str | Path, **kw) -> dict:
    """:func:`evaluate_moments` on two JSONL files."""
    return evaluate_moments(load_jsonl(pred_path), load_jsonl(gt_path), gt_path=str(gt_path),
                            sub_path=str(pred_path), **kw)


def format_table(res: dict) -> str:
    """Plain-text table of the ``brief`` block (or of a :func:`charades_sta_metrics` result)."""
    items = res["brief"] if "brief" in res else res
    w = max(len(k) for k in items)
    return "\n".join(f"{k:<{w}}  {'-' if v is None else v}" for k, v in items.items())


# --------------------------------------------------------------------------------------------------
# CLI (`internvideo2 eval moments`)
# --------------------------------------------------------------------------------------------------

def configure_cli(p) -> None:
    p.add_argument("--gt", required=True, help="ground-truth JSONL (QVHighlights layout)")
    p.add_argument("--pred", required=True, help="prediction JSONL")
    p.add_argument("--charades", action="store_true",
                   help="Charades-STA report: R1@0.3/0.5/0.7 and mIoU, no length buckets, no highlights")
    p.add_argument("--no-match-number", action="store_true",
                   help="evaluate the qids common to both files instead of requiring equal sets")
    p.add_argument("--raw", action="store_true", help="do not round to 2 decimals")
    p.add_argument("-o", "--output", help="write the result JSON here")


def run_cli(args) -> int:
    digits = None if args.raw else 2
    sub, gt = load_jsonl(args.pred), load_jsonl(args.gt)
    if args.charades:
        res = charades_sta_metrics(sub, gt, match_number=not args.no_match_number, round_digits=digits)
    else:
        res = evaluate_moments(sub, gt, match_number=not args.no_match_number, round_digits=digits,
                               gt_path=args.gt, sub_path=args.pred)
    print(format_table(res))
    if args.output:
        Path(args.output).parent.mkdir(parents=True, exist_ok=True)
        write_text(args.output, json.dumps(res, indent=2) + "\n")
    return 0
