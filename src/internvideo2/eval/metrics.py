"""Retrieval and classification metrics, with the official InternVideo2 conventions.

Pure torch/numpy; nothing here imports a model or a training extra.

Scales: every rate (R@K, top-k, accuracy, mAP) is a **percentage** in [0, 100], as the official code
reports it. Ranks (MdR, MnR) are 1-based positions.

Which reference each function follows, and where we differ, is written down in ``docs/metrics.md``.
"""
from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch

from internvideo2.errors import ConfigError

__all__ = [
    "retrieval_ranks",
    "retrieval_metrics",
    "itm_eval",
    "dual_softmax",
    "topk_indices",
    "itm_rerank_merge",
    "ensemble_templates",
    "topk_accuracy",
    "mean_class_accuracy",
    "confusion_matrix",
    "ViewAggregate",
    "aggregate_views",
    "views_label",
    "multiple_choice_accuracy",
    "multi_hot",
    "average_precision_per_class",
    "multilabel_map",
    "MultiChoiceMetrics",
    "multiple_choice_metrics",
]


# --------------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------------

def _to_numpy(x, name: str, ndim: int | None = None) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu()
        if x.dtype == torch.bfloat16 or x.dtype == torch.float16:
            x = x.float()
        x = x.numpy()
    else:
        x = np.asarray(x)
    if ndim is not None and x.ndim != ndim:
        raise ConfigError(name, f"expected a {ndim}-D array, got shape {tuple(x.shape)}")
    return x


def _to_tensor(x, name: str, ndim: int | None = None) -> torch.Tensor:
    t = x if isinstance(x, torch.Tensor) else torch.as_tensor(np.asarray(x))
    if ndim is not None and t.dim() != ndim:
        raise ConfigError(name, f"expected a {ndim}-D tensor, got shape {tuple(t.shape)}")
    return t


def _gt_list(gt, n_queries: int, n_candidates: int, name: str) -> list[list[int]]:
    """Normalise ground truth to one non-empty list of candidate indices per query."""
    if len(gt) != n_queries:
        raise ConfigError(name, f"has {len(gt)} entries but the score matrix has {n_queries} queries")
    out: list[list[int]] = []
    for i, g in enumerate(gt):
        if isinstance(g, (int, np.integer)) or (isinstance(g, torch.Tensor) and g.dim() == 0):
            ids = [int(g)]
        else:
            ids = [int(v) for v in g]
        if not ids:
            raise ConfigError(f"{name}[{i}]", "empty ground-truth list")
        for v in ids:
            if not 0 <= v < n_candidates:
                raise ConfigError(f"{name}[{i}]", f"index {v} outside [0, {n_candidates})")
        out.append(ids)
    return out


# --------------------------------------------------------------------------------------------------
# retrieval
# --------------------------------------------------------------------------------------------------

def retrieval_ranks(scores, gt: Sequence[int | Sequence[int]]) -> np.ndarray:
    """0-based rank of the best-ranked ground truth of each query.

    ``scores`` is ``[Nq, Nc]`` (higher = better). Candidates are ordered as the official ``itm_eval``
    orders them, ``np.argsort(row)[::-1]``, so exact ties break the same way it does. For a query with
    several ground truths the smallest rank counts (spec §7.5 point 7).

    Returns an int64 array ``[Nq]``.
    """
    s = _to_numpy(scores, "scores", ndim=2)
    nq, nc = s.shape
    gts = _gt_list(gt, nq, nc, "gt")
    order = np.argsort(s, axis=1)[:, ::-1]          # [Nq, Nc] candidate ids, best first
    pos = np.empty_like(order)
    rows = np.arange(nq)[:, None]
    pos[rows, order] = np.arange(nc)[None, :]       # pos[q, c] = position of candidate c
    return np.array([min(pos[q, g] for g in ids) for q, ids in enumerate(gts)], dtype=np.int64)


def _rank_summary(ranks: np.ndarray, ks: Sequence[int]) -> dict[str, float]:
    n = len(ranks)
    out = {f"R@{k}": 100.0 * int(np.sum(ranks < k)) / n for k in ks}
    out["MdR"] = float(np.median(ranks + 1))
    out["MnR"] = float(np.mean(ranks + 1))
    return out


def retrieval_metrics(scores, gt: Sequence[int | Sequence[int]], ks: Sequence[int] = (1, 5, 10)) -> dict:
    """R@K (percent), median rank ``MdR = median(rank+1)`` and mean rank ``MnR = mean(rank+1)``.

    ``scores`` ``[Nq, Nc]``; ``gt[q]`` is the ground-truth candidate index (or a list of them) of query
    ``q``. With several ground truths the best-ranked one counts. Also returns ``num_queries``.
    """
    ranks = retrieval_ranks(scores, gt)
    out = _rank_summary(ranks, ks)
    out["num_queries"] = len(ranks)
    return out


def itm_eval(v2t_scores, t2v_scores, txt2vid, vid2txt, *, round_digits: int | None = 2,
             key_style: Literal["stage2", "clip"] = "stage2") -> dict[str, float]:
    """Both retrieval directions with the official ``itm_eval`` keys, plus MdR/MnR.

    - ``v2t_scores`` ``[Nv, Nt]``, ``t2v_scores`` ``[Nt, Nv]`` (higher = better).
    - ``vid2txt[v]``: ground-truth text index (or list) of video ``v``; ``txt2vid[t]``: video index
      (or list) of text ``t``.

    Keys: ``v2t_r1, v2t_r5, v2t_r10, v2t_r_mean, t2v_r1, ..., t2v_r_mean, r_mean`` exactly as
    ``tasks/retrieval_utils.py::itm_eval``; ``*_r_mean`` is the mean of R@1/5/10 and ``r_mean`` the mean
    of the two directions. Added (not in the official code): ``v2t_MdR, v2t_MnR, t2v_MdR, t2v_MnR``.
    ``key_style="clip"`` renames the prefixes ``v2t -> txt`` and ``t2v -> img`` as
    ``tasks_clip/retrieval_utils.py`` does. Values are rounded to ``round_digits`` like the official
    code (``None`` keeps them raw).
    """
    r_v2t = retrieval_ranks(v2t_scores, vid2txt)
    r_t2v = retrieval_ranks(t2v_scores, txt2vid)
    a = _rank_summary(r_v2t, (1, 5, 10))
    b = _rank_summary(r_t2v, (1, 5, 10))
    tr_mean = (a["R@1"] + a["R@5"] + a["R@10"]) / 3
    ir_mean = (b["R@1"] + b["R@5"] + b["R@10"]) / 3
    res = {
        "v2t_r1": a["R@1"], "v2t_r5": a["R@5"], "v2t_r10": a["R@10"], "v2t_r_mean": tr_mean,
        "t2v_r1": b["R@1"], "t2v_r5": b["R@5"], "t2v_r10": b["R@10"], "t2v_r_mean": ir_mean,
        "r_mean": (tr_mean + ir_mean) / 2,
        "v2t_MdR": a["MdR"], "v2t_MnR": a["MnR"], "t2v_MdR": b["MdR"], "t2v_MnR": b["MnR"],
    }
    if round_digits is not None:
        res = {k: round(v, round_digits) for k, v in res.items()}
    if key_style == "clip":
        res = {k.replace("v2t_", "txt_").replace("t2v_", "img_"): v for k, v in res.items()}
    elif key_style != "stage2":
        raise ConfigError("key_style", f"must be 'stage2' or 'clip', got {key_style!r}")
    return res


def dual_softmax(sim) -> tuple[torch.Tensor, torch.Tensor]:
    """Dual-softmax (DSL) re-scoring, spec §7.5 point 5.

    ``sim`` is the video→text matrix ``[Nv, Nt]``. Returns ``(v2t_dsl [Nv, Nt], t2v_dsl [Nt, Nv])`` with
    ``v2t_dsl = sim ⊙ softmax(sim, dim=0)`` (softmax over *videos*) and
    ``t2v_dsl = simᵀ ⊙ softmax(simᵀ, dim=0)`` (softmax over *texts*). No temperature. Computed in fp32
    like the official ``.float()`` path. Transductive: it normalises across the whole test set.
    """
    s = _to_tensor(sim, "sim", ndim=2).float()
    st = s.t()
    return s * s.softmax(dim=0), st * st.softmax(dim=0)


def topk_indices(sim, k: int) -> torch.Tensor:
    """Per-row top-k candidate indices ``[Nq, min(k, Nc)]``, best first (``torch.topk`` on each row, as
    the official ITM re-rank picks its candidates). Score the ITM head on exactly these pairs."""
    s = _to_tensor(sim, "sim", ndim=2)
    if k < 1:
        raise ConfigError("k", f"must be >= 1, got {k}")
    return s.topk(min(k, s.shape[1]), dim=1).indices


def itm_rerank_merge(sim, itm_scores_topk, k: int, *, topk_idx=None, fill: float = -100.0) -> torch.Tensor:
    """Build the ``_match`` matrix: ITM replaces the ITC score for each row's top-k, ``fill`` elsewhere.

    - ``sim`` ``[Nq, Nc]``: the matrix the candidates were chosen from (ITC, or DSL when
      ``use_dsl_for_match``).
    - ``itm_scores_topk`` ``[Nq, k']`` with ``k' = min(k, Nc)``: ITM logit of class 1 for each row's
      candidates in the order of :func:`topk_indices` (or of ``topk_idx`` when given).

    Returns fp32 ``[Nq, Nc]``. The ITC value is *not* added (spec §7.5 point 4, P23).
    """
    s = _to_tensor(sim, "sim", ndim=2)
    idx = topk_indices(s, k) if topk_idx is None else _to_tensor(topk_idx, "topk_idx", ndim=2).long()
    itm = _to_tensor(itm_scores_topk, "itm_scores_topk", ndim=2).float()
    if itm.shape != idx.shape:
        raise ConfigError("itm_scores_topk",
                          f"shape {tuple(itm.shape)} != top-k index shape {tuple(idx.shape)}")
    out = torch.full(s.shape, float(fill), dtype=torch.float32)
    out.scatter_(1, idx, itm)
    return out


def ensemble_templates(scores, num_templates: int, *,
                       mode: Literal["softmax_mean", "cosine_mean"] = "softmax_mean",
                       text_dim: int = 1) -> torch.Tensor:
    """Zero-shot prompt ensemble over ``num_templates`` texts per class.

    Texts are class-major: text ``c * num_templates + t`` is class ``c`` with template ``t`` (the official
    ``reshape(..., nt, np)``). ``text_dim`` says which axis holds the texts: 1 for video→text
    ``[Nv, n_cls*T]`` (gives ``[Nv, n_cls]``), 0 for text→video ``[n_cls*T, Nv]`` (gives ``[n_cls, Nv]``).

    - ``"softmax_mean"`` (stage-2 ``tasks/retrieval_utils.py``): every row of the matrix is softmaxed
      over its full width (``softmax(dim=1)``, for either direction), then probabilities are averaged
      over the templates of each class.
    - ``"cosine_mean"`` (CLIP ``tasks_clip``): the raw similarities are averaged over templates; no
      softmax. (The CLIP code then applies DSL to the averaged matrix: see :func:`dual_softmax`.)
    """
    s = _to_tensor(scores, "scores", ndim=2).float()
    if text_dim not in (0, 1):
        raise ConfigError("text_dim", f"must be 0 or 1, got {text_dim}")
    n_text = s.shape[text_dim]
    if num_templates < 1 or n_text % num_templates:
        raise ConfigError("num_templates", f"{num_templates} does not divide the {n_text} texts")
    if mode == "softmax_mean":
        s = s.softmax(dim=1)
    elif mode != "cosine_mean":
        raise ConfigError("mode", f"must be 'softmax_mean' or 'cosine_mean', got {mode!r}")
    n_cls = n_text // num_templates
    if text_dim == 1:
        return s.reshape(s.shape[0], n_cls, num_templates).mean(dim=-1)
    return s.reshape(n_cls, num_templates, s.shape[1]).mean(dim=1)


# --------------------------------------------------------------------------------------------------
# classification
# --------------------------------------------------------------------------------------------------

def _labels(labels, n: int, name: str = "labels") -> np.ndarray:
    y = _to_numpy(labels, name, ndim=1).astype(np.int64)
    if len(y) != n:
        raise ConfigError(name, f"has {len(y)} entries, expected {n}")
    return y


def topk_accuracy(scores, labels, ks: Sequence[int] = (1, 5)) -> dict[str, float]:
    """Top-k accuracy in percent, keys ``top1``, ``top5``, ...

    Top-1 is ``argmax`` (first maximum on ties) and top-k is ``label in argsort(-scores)[:k]``, the
    official ``compute_video`` rules. ``scores`` ``[N, K]`` (logits or probabilities), ``labels`` ``[N]``.
    """
    s = _to_numpy(scores, "scores", ndim=2)
    y = _labels(labels, s.shape[0])
    if s.shape[0] == 0:
        raise ConfigError("scores", "no samples")
    out = {}
    for k in ks:
        if k == 1:
            hit = np.argmax(s, axis=1) == y
        else:
            top = np.argsort(-s, axis=1)[:, :k]
            hit = (top == y[:, None]).any(axis=1)
        out[f"top{k}"] = 100.0 * float(np.mean(hit))
    return out


def confusion_matrix(preds, labels, num_classes: int | None = None) -> np.ndarray:
    """``[K, K]`` int64 counts; row = true class, column = predicted class."""
    p = _to_numpy(preds, "preds", ndim=1).astype(np.int64)
    y = _labels(labels, len(p))
    k = int(max(p.max(initial=-1), y.max(initial=-1)) + 1) if num_classes is None else num_classes
    if len(p) and (min(p.min(), y.min()) < 0 or max(p.max(), y.max()) >= k):
        raise ConfigError("num_classes", f"class index outside [0, {k})")
    cm = np.zeros((k, k), dtype=np.int64)
    np.add.at(cm, (y, p), 1)
    return cm


def mean_class_accuracy(scores, labels, num_classes: int | None = None) -> float:
    """Mean over classes of per-class top-1 accuracy (percent). Classes with no sample are skipped.

    ``scores`` may be ``[N, K]`` scores (argmax is taken) or ``[N]`` predicted labels.
    """
    s = _to_numpy(scores, "scores")
    preds = np.argmax(s, axis=1) if s.ndim == 2 else s.astype(np.int64)
    if num_classes is None and s.ndim == 2:
        num_classes = s.shape[1]
    cm = confusion_matrix(preds, labels, num_classes)
    support = cm.sum(axis=1)
    present = support > 0
    if not present.any():
        raise ConfigError("labels", "no samples")
    return 100.0 * float(np.mean(np.diag(cm)[present] / support[present]))


@dataclass
class ViewAggregate:
    """Result of :func:`aggregate_views`.

    - ``video_ids``: videos in order of first appearance.
    - ``probs``: ``[V, K]`` fp64 mean of the per-view softmax probabilities.
    - ``num_views``: views kept per video (after de-duplication).
    - ``labels``: ``[V]`` label of each video when labels were given, else ``None``.
    - ``duplicates``: number of views dropped as repeated ``(video, clip, crop)``.
    - ``num_clips`` / ``num_crops``: the view grid when every video has the same full
      clips x crops grid, else ``None``.
    """
    video_ids: list
    probs: np.ndarray
    num_views: list[int]
    labels: np.ndarray | None = None
    duplicates: int = 0
    num_clips: int | None = None
    num_crops: int | None = None

    @property
    def label(self) -> str:
        """``"4 clips x 3 crops"`` when the grid is known, else ``"N views"``."""
        if self.num_clips is not None and self.num_crops is not None:
            return views_label(self.num_clips, self.num_crops)
        return f"{max(self.num_views, default=0)} views"


def views_label(num_clips: int, num_crops: int) -> str:
    """The model-zoo style view label, e.g. ``views_label(4, 3) == "4 clips x 3 crops"``."""
    c = "clip" if num_clips == 1 else "clips"
    r = "crop" if num_crops == 1 else "crops"
    return f"{num_clips} {c} x {num_crops} {r}"


def _softmax_np(x: np.ndarray) -> np.ndarray:
    z = x - x.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def aggregate_views(logits, video_ids: Sequence[Hashable], clip_ids: Sequence[int] | None = None,
                    crop_ids: Sequence[int] | None = None, labels=None) -> ViewAggregate:
    """Multi-view test merge (spec §6.4): softmax per view, then average the probabilities per video.

    - ``logits`` ``[N_views, K]``; ``video_ids[i]`` names the video of view ``i``.
    - ``clip_ids`` / ``crop_ids`` (temporal ``chunk_nb`` / spatial ``split_nb``): when given, a repeated
      ``(video, clip, crop)`` view (e.g. padded by a distributed sampler) is counted once, the first time
      it appears, as the official ``merge()`` does. Unlike the official code we key on the *tuple*, not
      the string ``chunk_nb + split_nb``, which collides for (1, 12) vs (11, 2) (spec P10).
    - ``labels`` ``[N_views]`` (optional): must agree across the views of a video.

    The softmax is computed in fp64 (the official merge parses logits into fp64 arrays).
    """
    x = _to_numpy(logits, "logits", ndim=2).astype(np.float64)
    n = x.shape[0]
    if len(video_ids) != n:
        raise ConfigError("video_ids", f"has {len(video_ids)} entries, expected {n}")
    for nm, v in (("clip_ids", clip_ids), ("crop_ids", crop_ids)):
        if v is not None and len(v) != n:
            raise ConfigError(nm, f"has {len(v)} entries, expected {n}")
    y = None if labels is None else _labels(labels, n)
    probs = _softmax_np(x)
    order: dict[Hashable, int] = {}
    sums: list[np.ndarray] = []
    counts: list[int] = []
    vlabels: list[int] = []
    seen: set = set()
    grids: list[tuple[set, set]] = []
    dups = 0
    dedupe = clip_ids is not None or crop_ids is not None
    for i in range(n):
        vid = video_ids[i]
        clip = None if clip_ids is None else int(clip_ids[i])
        crop = None if crop_ids is None else int(crop_ids[i])
        if dedupe:
            key = (vid, clip, crop)
            if key in seen:
                dups += 1
                continue
            seen.add(key)
        j = order.get(vid)
        if j is None:
            j = order[vid] = len(sums)
            sums.append(np.zeros(x.shape[1]))
            counts.append(0)
            grids.append((set(), set()))
            vlabels.append(-1 if y is None else int(y[i]))
        elif y is not None and vlabels[j] != int(y[i]):
            raise ConfigError(f"labels[{i}]", f"video {vid!r} has labels {vlabels[j]} and {int(y[i])}")
        sums[j] += probs[i]
        counts[j] += 1
        grids[j][0].add(clip)
        grids[j][1].add(crop)
    p = np.stack(sums) / np.asarray(counts, dtype=np.float64)[:, None] if sums else np.zeros((0, x.shape[1]))
    nc = nr = None
    if clip_ids is not None and crop_ids is not None and grids:
        shapes = {(len(a), len(b)) for a, b in grids}
        full = all(len(a) * len(b) == c for (a, b), c in zip(grids, counts))
        if len(shapes) == 1 and full:
            nc, nr = shapes.pop()
    return ViewAggregate(video_ids=list(order), probs=p, num_views=counts,
                         labels=None if y is None else np.asarray(vlabels, dtype=np.int64),
                         duplicates=dups, num_clips=nc, num_crops=nr)


def multiple_choice_accuracy(scores, answers) -> float:
    """Multiple-choice accuracy (percent): ``argmax`` over the options of each question (first maximum on
    ties, like ``score.max(1)[1]``) compared with ``answers``. ``scores`` ``[N, n_options]``."""
    s = _to_numpy(scores, "scores", ndim=2)
    a = _labels(answers, s.shape[0], "answers")
    if s.shape[0] == 0:
        raise ConfigError("scores", "no questions")
    if a.min() < 0 or a.max() >= s.shape[1]:
        raise ConfigError("answers", f"answer index outside [0, {s.shape[1]})")
    return 100.0 * float(np.mean(np.argmax(s, axis=1) == a))


def _answer_lists(answers: Sequence[int | Sequence[int]], num_options: Sequence[int]) -> list[list[int]]:
    """One non-empty list of distinct in-range option indices per question (an int is a one-item list)."""
    if len(answers) != len(num_options):
        raise ConfigError("answers", f"has {len(answers)} entries for {len(num_options)} questions")
    out = []
    for i, (a, n) in enumerate(zip(answers, num_options)):
        ids = [int(a)] if isinstance(a, (int, np.integer)) else [int(v) for v in a]
        if not ids or len(set(ids)) != len(ids) or min(ids) < 0 or max(ids) >= n:
            raise ConfigError(f"answers[{i}]", f"must be distinct option indices in [0, {n}), got {a!r:.80}")
        out.append(ids)
    return out


def multi_hot(answers: Sequence[int | Sequence[int]], num_options: int) -> np.ndarray:
    """``[N, num_options]`` int64 0/1 targets from answer indices (an int or a list per question): the
    ``torchnet`` target layout of Charades-MC (the official annotation's ``answer`` field as it is)."""
    ids = _answer_lists(answers, [num_options] * len(answers))
    t = np.zeros((len(ids), num_options), dtype=np.int64)
    for i, row in enumerate(ids):
        t[i, row] = 1
    return t


def average_precision_per_class(scores, targets) -> np.ndarray:
    """Per-class AP ``[K]`` (fractions) exactly as ``torchnet.meter.APMeter.value()`` computes it
    (Charades-MC, ``tasks_clip/retrieval_mc2.py``; spec §7.6), without sample weights.

    ``scores`` ``[N, K]`` (higher = more confident), ``targets`` ``[N, K]`` in {0, 1}. For each class k,
    in float32 like the meter (it stores scores in a ``FloatTensor``): sort the N samples by decreasing
    score, ``tp_i`` = positives among the first i, ``precision_i = tp_i / i``, and
    ``AP_k = sum(precision_i at the positive samples) / max(#positives, 1)``.

    - A class with no positive sample gets AP 0 (0 / max(0, 1)) and still counts in :func:`multilabel_map`'s
      mean, as in ``mAPMeter`` (so such classes pull the mean down).
    - Ties: samples with exactly equal scores are ranked in dataset order (a stable sort). torchnet calls
      ``torch.sort(scores, 0, True)``, whose order among ties is unspecified (PyTorch's CPU sort does not
      keep index order for ties in general); with ties the AP depends on that order, without ties the
      value is identical.
    - Non-finite scores are refused (``torch.sort`` would place NaN arbitrarily).

    Returns float64 numbers holding the float32 values.
    """
    s = _to_tensor(scores, "scores", ndim=2).detach().cpu().float()
    t = _to_tensor(targets, "targets", ndim=2).detach().cpu()
    if tuple(t.shape) != tuple(s.shape):
        raise ConfigError("targets", f"shape {tuple(t.shape)} != scores shape {tuple(s.shape)}")
    if s.shape[0] == 0:
        raise ConfigError("scores", "no samples")
    if not torch.isfinite(s).all():
        raise ConfigError("scores", "contains NaN or infinite values")
    if not ((t == 0) | (t == 1)).all():
        raise ConfigError("targets", "must contain only 0 and 1")
    t = t.long()
    rg = torch.arange(1, s.shape[0] + 1, dtype=torch.float32)   # torchnet: torch.range(1, N).float()
    ap = torch.zeros(s.shape[1], dtype=torch.float32)
    for k in range(s.shape[1]):
        order = torch.sort(s[:, k], dim=0, descending=True, stable=True).indices
        truth = t[order, k]
        precision = truth.float().cumsum(0).div(rg)
        # the meter's very expression: a masked fp32 sum over a LongTensor count (keeps the same rounding)
        ap[k] = precision[truth.bool()].sum() / max(truth.sum(), 1)
    return ap.double().numpy()


def multilabel_map(scores, targets) -> float:
    """Multi-label mAP in percent: ``mAPMeter.value() * 100``, i.e. the float32 mean over **all** K classes
    of :func:`average_precision_per_class` (classes without positives count as 0), as
    ``tasks_clip/retrieval_mc2.py`` reports it for Charades-MC before its ``round(ap, 2)``."""
    return _mean_ap(average_precision_per_class(scores, targets))


def _mean_ap(ap: np.ndarray) -> float:
    """``float(APMeter.value().mean()) * 100``: the float32 mean of the per-class APs, in percent."""
    return float(torch.from_numpy(ap).float().mean()) * 100


@dataclass
class MultiChoiceMetrics:
    """Multiple-choice results of :func:`multiple_choice_metrics` (rates in percent).

    - ``first_answer_accuracy``: argmax option (first maximum on ties) == the question's first listed
      answer; with one answer per question this is the official accuracy (``retrieval_mc.py``).
    - ``any_answer_accuracy``: argmax option is one of the question's answers (equal to the above when every
      question has one answer).
    - ``map``: :func:`multilabel_map` over the ``[N, K]`` score matrix and the multi-hot targets (official
      Charades-MC metric), when every question has the same K options; else None.
    - ``ap_per_option``: the per-class APs behind ``map`` ``[K]`` (fractions), or None.
    - ``num_items`` / ``num_multi_answer``: questions, and those with more than one right option.
    """

    first_answer_accuracy: float
    any_answer_accuracy: float
    map: float | None
    ap_per_option: np.ndarray | None
    num_items: int
    num_multi_answer: int


def multiple_choice_metrics(scores, answers: Sequence[int | Sequence[int]]) -> MultiChoiceMetrics:
    """First-answer and any-answer accuracy, and the multi-label mAP, of multiple-choice scores.

    ``scores``: ``[N, K]`` (every question with K options) or a list of N 1-D score vectors (varying
    option counts; then ``map`` is None). ``answers[i]``: an option index or a list of distinct indices,
    the first being the "first answer" (:func:`~internvideo2.data.annotations.parse_mc_answer` order).
    Official Charades-MC scores are ``softmax(cos / temp)`` over each question's options (``retrieval_mc2``).
    """
    if isinstance(scores, (np.ndarray, torch.Tensor)):
        rows = list(_to_numpy(scores, "scores", ndim=2))
    else:
        rows = [_to_numpy(r, f"scores[{i}]", ndim=1) for i, r in enumerate(scores)]
    if not rows:
        raise ConfigError("scores", "no questions")
    ids = _answer_lists(list(answers), [len(r) for r in rows])
    pred = [int(np.argmax(r)) for r in rows]                      # first maximum, like score.max(1)[1]
    first = 100.0 * float(np.mean([p == a[0] for p, a in zip(pred, ids)]))
    anyhit = 100.0 * float(np.mean([p in a for p, a in zip(pred, ids)]))
    m = ap = None
    if len({len(r) for r in rows}) == 1:
        t = multi_hot(ids, len(rows[0]))
        s = np.stack(rows)
        ap = average_precision_per_class(s, t)
        m = _mean_ap(ap)
    return MultiChoiceMetrics(first, anyhit, m, ap, len(rows), sum(len(a) > 1 for a in ids))
