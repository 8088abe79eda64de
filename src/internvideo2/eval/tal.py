"""Temporal action localisation (TAL) mAP at temporal-IoU thresholds, ActivityNet protocol.

Reproduces ``activitynet/ActivityNet`` ``Evaluation/eval_detection.py`` (``ANETdetection``,
``compute_average_precision_detection``) and ``Evaluation/utils.py`` (``segment_iou``,
``interpolated_prec_rec``) on the same JSON files; differences are listed in ``docs/metrics.md``.

Ground truth (ActivityNet layout)::

    {"version": ..., "taxonomy": ..., "database": {VIDEO: {"subset": "validation",
        "annotations": [{"segment": [start_s, end_s], "label": "Long jump"}, ...]}, ...}}

Predictions::

    {"version": ..., "external_data": ..., "results": {VIDEO: [{"segment": [s, e], "label": L,
        "score": x}, ...]}, ...}

Rates are reported in **percent** (the reference returns fractions).
"""
from __future__ import annotations

import json
import logging
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from internvideo2.errors import AnnotationError, ConfigError
from internvideo2.eval.matching import greedy_match, interpolated_ap
from internvideo2.utils.io import write_text

log = logging.getLogger("internvideo2.eval.tal")

#: ActivityNet / HACS / FineAction thresholds, exactly ``np.linspace(0.5, 0.95, 10)`` as the reference
#: uses them, not rounded (its 0.9 is 0.8999999999999999).
TIOU_ACTIVITYNET = np.linspace(0.5, 0.95, 10)
#: THUMOS14 thresholds.
TIOU_THUMOS = np.array([0.3, 0.4, 0.5, 0.6, 0.7])


@dataclass
class Detections:
    """Flat table of segments. ``labels`` are class indices into the ground truth's class list.

    - ``videos``: ``[N]`` video id of each row.
    - ``segments``: ``[N, 2]`` fp64 start/end seconds.
    - ``labels``: ``[N]`` int64.
    - ``scores``: ``[N]`` fp64 (predictions only).
    """
    videos: list
    segments: np.ndarray
    labels: np.ndarray
    scores: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.videos)


def segment_iou(target: np.ndarray, candidates: np.ndarray) -> np.ndarray:
    """tIoU of one segment ``[2]`` with ``[M, 2]`` segments: intersection over (len_a + len_b - inter)."""
    inter = (np.minimum(target[1], candidates[:, 1]) - np.maximum(target[0], candidates[:, 0])).clip(0)
    union = (candidates[:, 1] - candidates[:, 0]) + (target[1] - target[0]) - inter
    with np.errstate(divide="ignore", invalid="ignore"):
        return inter.astype(float) / union


def average_precision_detection(gt: Detections, pred: Detections,
                                tiou_thresholds: Sequence[float] = TIOU_ACTIVITYNET) -> np.ndarray:
    """AP ``[T]`` (fractions) of one class: ``gt`` and ``pred`` hold only that class's rows.

    Predictions are visited by decreasing score (``argsort()[::-1]``, as the reference). Each one is
    matched, per threshold, to the unmatched ground truth of its video with the highest tIoU, provided
    that tIoU is not below the threshold; a ground truth is matched at most once; everything else is a
    false positive. Predictions for a video without ground truth of this class are false positives.
    """
    thr = np.asarray(tiou_thresholds, dtype=np.float64)
    n_t = len(thr)
    if len(pred) == 0:
        return np.zeros(n_t)
    npos = float(len(gt))
    locked = np.zeros((n_t, len(gt)), dtype=bool)
    by_video: dict[Hashable, np.ndarray] = {}
    for i, v in enumerate(gt.videos):
        by_video.setdefault(v, []).append(i)
    by_video = {v: np.asarray(ix) for v, ix in by_video.items()}

    order = pred.scores.argsort()[::-1]
    tp = np.zeros((n_t, len(order)))
    fp = np.zeros((n_t, len(order)))
    for rank, p in enumerate(order):
        rows = by_video.get(pred.videos[p])
        if rows is None:
            fp[:, rank] = 1
            continue
        hit = greedy_match(segment_iou(pred.segments[p], gt.segments[rows]), thr, locked, rows)
        tp[hit, rank] = 1
        fp[~hit, rank] = 1
    tp_c = np.cumsum(tp, axis=1)
    fp_c = np.cumsum(fp, axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        recall = tp_c / npos
    precision = tp_c / (tp_c + fp_c)
    return np.array([interpolated_ap(precision[t], recall[t]) for t in range(n_t)])


# --------------------------------------------------------------------------------------------------
# files
# --------------------------------------------------------------------------------------------------

def _label(path: str, where: str, lab) -> str | int:
    if isinstance(lab, bool) or not isinstance(lab, (str, int)):
        raise AnnotationError(path, where, f"field 'label' must be a class name or id, got {lab!r:.60}")
    return lab


def _read_json(path: str | Path) -> dict:
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except FileNotFoundError:
        raise AnnotationError(str(path), "-", "file not found") from None
    except json.JSONDecodeError as e:
        raise AnnotationError(str(path), f"line {e.lineno}", f"invalid JSON: {e.msg}") from None
    except UnicodeDecodeError as e:
        raise AnnotationError(str(path), "-", f"not UTF-8 text ({e.reason} at byte {e.start})") from None
    if not isinstance(data, dict):
        raise AnnotationError(str(path), "-", "top level must be a JSON object")
    return data


def _segment(path: str, where: str, item) -> tuple[float, float]:
    seg = item.get("segment") if isinstance(item, dict) else None
    if not isinstance(seg, (list, tuple)) or len(seg) < 2:
        raise AnnotationError(path, where, "field 'segment' must be [start, end]")
    try:
        s, e = float(seg[0]), float(seg[1])
    except (TypeError, ValueError):
        raise AnnotationError(path, where, f"field 'segment' is not numeric: {seg!r}") from None
    if not (np.isfinite(s) and np.isfinite(e)) or e < s:
        raise AnnotationError(path, where, f"field 'segment' must be finite with end >= start, got {seg!r}")
    return s, e


def parse_ground_truth(data: dict, subset: str | None = "validation", path: str = "<ground truth>"
                       ) -> tuple[Detections, dict[Hashable, int]]:
    """Ground-truth rows of ``subset`` (``None``: every video) and the class index.

    Classes are numbered in order of first appearance among the kept videos, as the reference does.
    Only ``database`` is required; ``taxonomy`` and ``version``, which the reference insists on but never
    reads, may be absent.
    """
    db = data.get("database")
    if not isinstance(db, dict):
        raise AnnotationError(path, "database", "missing or not an object")
    for f in ("taxonomy", "version"):
        if f not in data:
            log.debug("%s: no %r field (the ActivityNet reference would refuse the file)", path, f)
    index: dict[Hashable, int] = {}
    videos, segs, labels = [], [], []
    for vid, v in db.items():
        if not isinstance(v, dict):
            raise AnnotationError(path, f"database.{vid}", "entry is not an object")
        if subset is not None:
            if "subset" not in v:
                raise AnnotationError(path, f"database.{vid}", "field 'subset' missing")
            if v["subset"] != subset:
                continue
        anns = v.get("annotations", [])
        if not isinstance(anns, list):
            raise AnnotationError(path, f"database.{vid}.annotations", "must be a list")
        for j, ann in enumerate(anns):
            where = f"database.{vid}.annotations[{j}]"
            s, e = _segment(path, where, ann)
            if "label" not in ann:
                raise AnnotationError(path, where, "field 'label' missing")
            lab = _label(path, where, ann["label"])
            if lab not in index:
                index[lab] = len(index)
            videos.append(vid)
            segs.append((s, e))
            labels.append(index[lab])
    return Detections(videos, np.asarray(segs, dtype=np.float64).reshape(-1, 2),
                      np.asarray(labels, dtype=np.int64)), index


def parse_predictions(data: dict, class_index: dict[Hashable, int], path: str = "<predictions>",
                      unknown_labels: str = "error") -> tuple[Detections, int]:
    """Prediction rows of every video (not filtered by subset: predictions for videos outside the
    evaluated ground truth count as false positives, as in the reference).

    ``unknown_labels``: a label absent from the evaluated ground truth makes the reference crash
    (``KeyError``); here it raises :class:`AnnotationError` (``"error"``) or the row is dropped
    (``"ignore"``). Returns the table and the number of dropped rows.
    """
    if unknown_labels not in ("error", "ignore"):
        raise ConfigError("unknown_labels", f"must be 'error' or 'ignore', got {unknown_labels!r}")
    res = data.get("results")
    if not isinstance(res, dict):
        raise AnnotationError(path, "results", "missing or not an object")
    videos, segs, labels, scores = [], [], [], []
    dropped = 0
    for vid, items in res.items():
        if not isinstance(items, list):
            raise AnnotationError(path, f"results.{vid}", "must be a list")
        for j, it in enumerate(items):
            where = f"results.{vid}[{j}]"
            s, e = _segment(path, where, it)
            for f in ("label", "score"):
                if f not in it:
                    raise AnnotationError(path, where, f"field {f!r} missing")
            lab = _label(path, where, it["label"])
            if lab not in class_index:
                if unknown_labels == "ignore":
                    dropped += 1
                    continue
                raise AnnotationError(path, where, f"label {lab!r} does not occur in the evaluated "
                                      "ground truth (use unknown_labels='ignore' to drop such rows)")
            raw = it["score"]
            try:
                if isinstance(raw, bool) or not isinstance(raw, (int, float)):  # "0.5" is a mistake upstream
                    raise TypeError
                sc = float(raw)
            except (TypeError, ValueError):
                raise AnnotationError(path, where, f"field 'score' is not numeric: {raw!r}") from None
            if not np.isfinite(sc):
                raise AnnotationError(path, where, f"field 'score' is not finite: {raw!r}")
            videos.append(vid)
            segs.append((s, e))
            labels.append(class_index[lab])
            scores.append(sc)
    return Detections(videos, np.asarray(segs, dtype=np.float64).reshape(-1, 2),
                      np.asarray(labels, dtype=np.int64), np.asarray(scores, dtype=np.float64)), dropped


def _subset(d: Detections, mask: np.ndarray) -> Detections:
    ix = np.flatnonzero(mask)
    return Detections([d.videos[i] for i in ix], d.segments[ix], d.labels[ix],
                      None if d.scores is None else d.scores[ix])


def parse_tiou(spec: str | Sequence[float] | None) -> np.ndarray:
    """Thresholds from ``None``/``"activitynet"`` (0.5:0.05:0.95), ``"thumos"`` (0.3..0.7), a
    ``"start:step:stop"`` range (inclusive), a comma list, or a sequence of floats."""
    if spec is None:
        return TIOU_ACTIVITYNET.copy()
    if isinstance(spec, str):
        s = spec.strip().lower()
        if s in ("activitynet", "anet", "hacs", "fineaction"):
            return TIOU_ACTIVITYNET.copy()
        if s == "thumos":
            return TIOU_THUMOS.copy()
        try:
            if ":" in s:
                a, st, b = (float(x) for x in s.split(":"))
                if st <= 0 or b < a:
                    raise ValueError
                n = int(round((b - a) / st)) + 1
                return np.linspace(a, a + (n - 1) * st, n)
            vals = [float(x) for x in s.replace(" ", ",").split(",") if x]
        except ValueError:
            raise ConfigError("tiou", f"cannot parse {spec!r}; use 'activitynet', 'thumos', "
                              "'0.5:0.05:0.95' or '0.3,0.5,0.7'") from None
    else:
        vals = [float(x) for x in spec]
    arr = np.asarray(vals, dtype=np.float64)
    if arr.size == 0 or np.any((arr < 0) | (arr > 1)):
        raise ConfigError("tiou", f"thresholds must be in [0, 1], got {vals}")
    return arr


def evaluate_detection(ground_truth: dict, predictions: dict, *, subset: str | None = "validation",
                       tiou_thresholds: str | Sequence[float] | None = None, unknown_labels: str = "error",
                       gt_path: str = "<ground truth>", pred_path: str = "<predictions>") -> dict:
    """mAP at each tIoU threshold and their average, from parsed ActivityNet-style JSON objects.

    Returns (percentages)::

        {"tiou_thresholds": [...], "mAP": {"0.50": ...}, "average_mAP": ...,
         "ap_per_class": {label: [per threshold]}, "subset": ..., "num_classes": ...,
         "num_ground_truth": ..., "num_predictions": ..., "num_videos": ..., "dropped_predictions": ...,
         "classes_without_predictions": [...]}
    """
    thr = parse_tiou(tiou_thresholds)
    gt, index = parse_ground_truth(ground_truth, subset, gt_path)
    if not index:
        raise AnnotationError(gt_path, "database",
                              f"no annotated video in subset {subset!r}" if subset is not None
                              else "no annotation at all")
    pred, dropped = parse_predictions(predictions, index, pred_path, unknown_labels)
    ap = np.zeros((len(thr), len(index)))
    empty = []
    for name, c in index.items():
        p = _subset(pred, pred.labels == c)
        if len(p) == 0:
            log.warning("no predictions of label %r", name)
            empty.append(str(name))
        ap[:, c] = average_precision_detection(_subset(gt, gt.labels == c), p, thr)
    m_ap = ap.mean(axis=1)
    return {
        "tiou_thresholds": [float(t) for t in thr],
        "mAP": {f"{t:.2f}": 100.0 * float(v) for t, v in zip(thr, m_ap)},
        "average_mAP": 100.0 * float(m_ap.mean()),
        "ap_per_class": {str(name): [100.0 * float(v) for v in ap[:, c]] for name, c in index.items()},
        "subset": subset,
        "num_classes": len(index),
        "num_ground_truth": len(gt),
        "num_predictions": len(pred),
        "num_videos": len(set(gt.videos)),
        "dropped_predictions": dropped,
        "classes_without_predictions": empty,
    }


def evaluate_detection_files(gt_path: str | Path, pred_path: str | Path, **kw) -> dict:
    """:func:`evaluate_detection` on two JSON files (keyword arguments pass through)."""
    return evaluate_detection(_read_json(gt_path), _read_json(pred_path), gt_path=str(gt_path),
                              pred_path=str(pred_path), **kw)


def format_table(res: dict) -> str:
    """Plain-text table of a :func:`evaluate_detection` result."""
    keys = list(res["mAP"])
    head = "tIoU  " + " ".join(f"{k:>6}" for k in keys) + "    avg"
    row = "mAP   " + " ".join(f"{res['mAP'][k]:6.2f}" for k in keys) + f" {res['average_mAP']:6.2f}"
    info = (f"subset={res['subset']} classes={res['num_classes']} videos={res['num_videos']} "
            f"gt={res['num_ground_truth']} predictions={res['num_predictions']}")
    return "\n".join([info, head, row])


# --------------------------------------------------------------------------------------------------
# CLI (`internvideo2 eval tal`)
# --------------------------------------------------------------------------------------------------

def configure_cli(p) -> None:
    p.add_argument("--gt", required=True, help="ActivityNet-style ground-truth JSON")
    p.add_argument("--pred", required=True, help="prediction JSON ({'results': {video: [...]}})")
    p.add_argument("--subset", default="validation",
                   help="ground-truth subset to evaluate (default: validation; 'all' = every video)")
    p.add_argument("--tiou", default="activitynet",
                   help="thresholds: activitynet (0.5:0.05:0.95, default), thumos (0.3..0.7), "
                        "START:STEP:STOP, or a comma list")
    p.add_argument("--ignore-unknown-labels", action="store_true",
                   help="drop predictions whose label is not in the evaluated ground truth (default: error)")
    p.add_argument("-o", "--output", help="write the result JSON here")


def run_cli(args) -> int:
    res = evaluate_detection_files(args.gt, args.pred, subset=None if args.subset == "all" else args.subset,
                                   tiou_thresholds=args.tiou,
                                   unknown_labels="ignore" if args.ignore_unknown_labels else "error")
    print(format_table(res))
    if args.output:
        Path(args.output).parent.mkdir(parents=True, exist_ok=True)
        write_text(args.output, json.dumps(res, indent=2) + "\n")
    return 0
