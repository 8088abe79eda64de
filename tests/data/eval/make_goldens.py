"""Regenerate the golden inputs/outputs in this folder from the public reference evaluators.

Not run by the tests. It needs local copies of the reference code (never committed here):

    REF=/tmp/ref python tests/data/eval/make_goldens.py [tal] [moments] [retrieval]

with, under $REF:
  anet/eval_detection.py, anet/utils.py   activitynet/ActivityNet Evaluation/ (commit ebc8aebb), ported
                                          to Python 3 (print(), .items(), float, no joblib/network)
  mdetr/standalone_eval/{eval,eval_raw,utils}.py   jayleicn/moment_detr standalone_eval/ (commit 2fa9e32);
                                          eval_raw.py = eval.py with the 4 output roundings removed
  iv2/itm_eval_ref.py                     itm_eval of OpenGVLab/InternVideo InternVideo2/multi_modality/
                                          tasks/retrieval_utils.py
  iv2/apmeter_ref.py                      torchnet.meter.APMeter.value() (pytorch/tnt), torch.range ->
                                          arange, byte mask -> bool
The reference needs numpy, pandas, scikit-learn (and torch for the APMeter).
"""

from __future__ import annotations

import contextlib
import importlib
import io
import json
import os
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
REF = Path(os.environ.get("REF", "/tmp/ref"))


def dump(name, obj, compact=False):
    text = json.dumps(obj, separators=(",", ":")) if compact else json.dumps(obj, indent=1)
    (HERE / name).write_text(text + "\n")


def f32(a):
    """float32 matrix as short JSON numbers that parse back to the same float32 values."""
    return [[float(str(np.float32(v))) for v in row] for row in np.asarray(a, dtype=np.float32)]


def r(x, d=3):
    return float(round(float(x), d))


# ------------------------------------------------------------------ TAL (ActivityNet)
def make_tal_case(seed, n_cls, n_vid, subsets, extra):
    rng = np.random.default_rng(seed)
    labels = [f"Action {c}" for c in range(n_cls)]
    db, res = {}, {}
    for v in range(n_vid):
        vid = f"v_{seed}_{v:03d}"
        dur = float(rng.integers(40, 200))
        anns = []
        for _ in range(int(rng.integers(1, 5))):
            s = r(rng.uniform(0, dur - 10))
            e = r(min(dur, s + rng.uniform(2, 60)))
            anns.append({"segment": [s, e], "label": labels[int(rng.integers(n_cls))]})
        db[vid] = {"subset": subsets[v % len(subsets)], "duration": dur, "url": "", "annotations": anns}
        if rng.random() < 0.15:  # some videos get no predictions at all
            continue
        preds = []
        for a in anns:  # jittered true positives, sometimes with the wrong label
            for _ in range(int(rng.integers(0, 3))):
                s, e = a["segment"]
                L = e - s
                ps = r(max(0, s + rng.normal(0, 0.15 * L)))
                pe = r(max(ps + 0.5, e + rng.normal(0, 0.15 * L)))
                lab = a["label"] if rng.random() < 0.8 else labels[int(rng.integers(n_cls))]
                preds.append({"segment": [ps, pe], "label": lab, "score": r(rng.random(), 6)})
        for _ in range(int(rng.integers(0, 4))):  # random false positives
            s = r(rng.uniform(0, dur - 5))
            e = r(s + rng.uniform(1, 40))
            preds.append(
                {"segment": [s, e], "label": labels[int(rng.integers(n_cls))], "score": r(rng.random(), 6)}
            )
        if preds and rng.random() < 0.4:  # exact duplicate
            preds.append(dict(preds[int(rng.integers(len(preds)))]))
        res[vid] = preds
    # predictions for videos that are not in the ground truth
    res["v_not_in_gt"] = [
        {"segment": [1.0, 9.0], "label": labels[0], "score": 0.987654},
        {"segment": [3.0, 20.0], "label": labels[-1], "score": 0.123457},
    ]
    extra(db, res, labels)
    gt = {"version": "VERSION 1.3", "taxonomy": [{"nodeName": name} for name in labels], "database": db}
    pred = {"version": "VERSION 1.3", "external_data": {"used": False, "details": ""}, "results": res}
    return gt, pred


def boundary_extra(db, res, labels):
    # tIoU exactly on the thresholds (0.5, 0.6, 0.75, 0.7, 0.9); a tIoU equal to the threshold counts.
    db["v_edge"] = {
        "subset": "validation",
        "annotations": [
            {"segment": [10.0, 20.0], "label": labels[0]},
            {"segment": [50.0, 70.0], "label": labels[0]},
        ],
    }
    res["v_edge"] = [
        {"segment": [10.0, 15.0], "label": labels[0], "score": 0.91},
        {"segment": [10.0, 16.0], "label": labels[0], "score": 0.92},
        {"segment": [50.0, 65.0], "label": labels[0], "score": 0.93},
        {"segment": [50.0, 64.0], "label": labels[0], "score": 0.94},
        {"segment": [10.0, 19.0], "label": labels[0], "score": 0.95},
    ]


def no_pred_class_extra(db, res, labels):
    db["v_lonely"] = {
        "subset": "validation",
        "annotations": [{"segment": [0.0, 5.0], "label": "Never predicted"}],
    }


def check_no_ties(pred, gt):
    """Score ties between different predictions of a class would make the reference's argsort order
    machine-dependent; refuse such inputs."""
    by = {}
    for v, items in pred["results"].items():
        for it in items:
            by.setdefault(it["label"], {}).setdefault(it["score"], set()).add((v, tuple(it["segment"])))
    for lab, d in by.items():
        for sc, rows in d.items():
            assert len(rows) == 1, (lab, sc, rows)


def run_anet(gt, pred, subset, tiou):
    sys.path.insert(0, str(REF / "anet"))
    ed = importlib.import_module("eval_detection")
    (HERE / "_tmp_gt.json").write_text(json.dumps(gt))
    (HERE / "_tmp_pred.json").write_text(json.dumps(pred))
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            a = ed.ANETdetection(
                str(HERE / "_tmp_gt.json"),
                str(HERE / "_tmp_pred.json"),
                subset=subset,
                tiou_thresholds=tiou,
                check_status=False,
            )
            a.evaluate()
    finally:
        (HERE / "_tmp_gt.json").unlink()
        (HERE / "_tmp_pred.json").unlink()
    inv = {c: name for name, c in a.activity_index.items()}
    return {
        "mAP": [float(x) for x in a.mAP],
        "average_mAP": float(a.average_mAP),
        "ap_per_class": {str(inv[c]): [float(x) for x in a.ap[:, c]] for c in range(a.ap.shape[1])},
        "tiou_thresholds": [float(t) for t in tiou],
    }


def tal():
    cases = [
        (
            "tal_anet",
            make_tal_case(1, 4, 30, ["validation", "validation", "training"], boundary_extra),
            "validation",
            np.linspace(0.5, 0.95, 10),
        ),
        (
            "tal_anet_nopred",
            make_tal_case(2, 3, 16, ["validation", "testing"], no_pred_class_extra),
            "validation",
            np.linspace(0.5, 0.95, 10),
        ),
        (
            "tal_thumos",
            make_tal_case(3, 5, 40, ["test", "validation"], boundary_extra),
            "test",
            np.array([0.3, 0.4, 0.5, 0.6, 0.7]),
        ),
    ]
    for name, (gt, pred), subset, tiou in cases:
        check_no_ties(pred, gt)
        if name == "tal_thumos":  # boundary video lives in 'validation'; move it to the evaluated subset
            gt["database"]["v_edge"]["subset"] = "test"
        ref = run_anet(gt, pred, subset, tiou)
        dump(f"{name}_gt.json", gt)
        dump(f"{name}_pred.json", pred)
        dump(
            f"{name}_golden.json",
            {
                "reference": "activitynet/ActivityNet Evaluation/eval_detection.py@ebc8aebb "
                "(Python 3 port, check_status=False)",
                "subset": subset,
                **ref,
            },
        )
        print(name, ref["average_mAP"])


# ------------------------------------------------------------------ moments (QVHighlights)
def make_qvh(seed, nq, charades=False):
    rng = np.random.default_rng(seed)
    gts, subs = [], []
    for q in range(nq):
        qid = 1000 * seed + q
        dur = 150 if not charades else float(rng.integers(20, 40))
        nclip = int(dur // 2)
        wins = []
        n_w = 1 if charades else int(rng.integers(1, 4))
        for _ in range(n_w):
            if charades:
                s = r(rng.uniform(0, dur - 5), 2)
                e = r(min(dur, s + rng.uniform(2, 15)), 2)
            else:
                L = 2 * int(rng.choice([rng.integers(1, 6), rng.integers(6, 16), rng.integers(16, 40)]))
                s = 2 * int(rng.integers(0, (150 - L) // 2 + 1))
                e = s + L
            wins.append([s, e])
        g = {
            "qid": qid,
            "query": f"query {qid}",
            "duration": dur,
            "vid": f"vid_{qid}",
            "relevant_windows": wins,
        }
        if not charades:
            ids = sorted({c for s, e in wins for c in range(int(s // 2), int(e // 2))})
            if q == 0:  # every clip relevant -> AP 1 branch for "Fair"
                ids = list(range(nclip))
                g["saliency_scores"] = [[int(rng.integers(2, 5)) for _ in range(3)] for _ in ids]
            elif q == 1:  # never >= 3 -> AP 0 branch
                g["saliency_scores"] = [[int(rng.integers(0, 3)) for _ in range(3)] for _ in ids]
            else:
                g["saliency_scores"] = [[int(rng.integers(0, 5)) for _ in range(3)] for _ in ids]
            g["relevant_clip_ids"] = ids
        gts.append(g)
        preds = []
        for w in wins:
            for _ in range(int(rng.integers(1, 4))):
                L = w[1] - w[0]
                ps = r(max(0, w[0] + rng.normal(0, 0.2 * L)), 2)
                pe = r(min(dur, max(ps + 1, w[1] + rng.normal(0, 0.2 * L))), 2)
                preds.append([ps, pe, r(rng.random(), 3)])
        for _ in range(int(rng.integers(0, 10))):
            s = r(rng.uniform(0, dur - 2), 2)
            preds.append([s, r(min(dur, s + rng.uniform(1, 50)), 2), r(rng.random(), 3)])
        if rng.random() < 0.3:
            preds.append(list(preds[0]))  # duplicate window
        if rng.random() < 0.3:  # score tie (stable order matters)
            preds.append([preds[-1][0] + 1, preds[-1][1] + 1, preds[-1][2]])
        if q % 5 == 2 and not charades:  # exact IoU 0.5 / 0.7 / 0.75 with the first GT window
            s, e = wins[0]
            L = e - s
            preds.insert(0, [s, s + 0.75 * L, 0.999])
            preds.insert(1, [s, s + 0.5 * L, 0.5])
            preds.insert(2, [s, s + 0.7 * L, 0.7])
        if charades or q % 3 == 0:
            rng.shuffle(preds)  # first listed window is then often a bad one
        elif len(preds) > 3:
            tail = preds[3:]
            rng.shuffle(tail)
            preds[3:] = tail
        p = {"qid": qid, "query": f"query {qid}", "vid": f"vid_{qid}", "pred_relevant_windows": preds}
        if not charades:
            n = nclip + int(rng.choice([0, 0, 0, -3, 4]))  # sometimes too short / too long
            sal = np.round(rng.normal(0, 1, n), 1)  # rounding creates ties
            p["pred_saliency_scores"] = [float(x) for x in sal]
        subs.append(p)
    return gts, subs


def write_jsonl(name, rows):
    (HERE / name).write_text("".join(json.dumps(x) + "\n" for x in rows))


def moments():
    sys.path.insert(0, str(REF / "mdetr"))
    ev = importlib.import_module("standalone_eval.eval")
    ev_raw = importlib.import_module("standalone_eval.eval_raw")
    import copy

    for name, seed, nq, match in (("mr_qvh", 7, 40, True), ("mr_qvh_partial", 8, 25, False)):
        gts, subs = make_qvh(seed, nq)
        if not match:  # missing and unknown qids
            subs = subs[3:] + [dict(subs[0], qid=999999)]
        write_jsonl(f"{name}_gt.jsonl", gts)
        write_jsonl(f"{name}_pred.jsonl", subs)
        with contextlib.redirect_stdout(io.StringIO()):
            rounded = ev.eval_submission(
                copy.deepcopy(subs), copy.deepcopy(gts), verbose=False, match_number=match
            )
            raw = ev_raw.eval_submission(
                copy.deepcopy(subs), copy.deepcopy(gts), verbose=False, match_number=match
            )
        dump(
            f"{name}_golden.json",
            {
                "reference": "jayleicn/moment_detr standalone_eval/eval.py@2fa9e32",
                "match_number": match,
                "rounded": rounded,
                "raw": raw,
            },
        )
        print(name, rounded["brief"])
    # Charades-STA style: one window, no saliency; R1 at 0.3/0.5/0.7 via the reference compute_mr_r1
    gts, subs = make_qvh(9, 30, charades=True)
    write_jsonl("mr_charades_gt.jsonl", gts)
    write_jsonl("mr_charades_pred.jsonl", subs)
    with contextlib.redirect_stdout(io.StringIO()):
        r1 = ev_raw.compute_mr_r1(copy.deepcopy(subs), copy.deepcopy(gts), iou_thds=[0.3, 0.5, 0.7])
        # eval_submission itself crashes here (empty "long" bucket), so call its two MR parts directly
        full = {
            "MR-mAP": ev_raw.compute_mr_ap(copy.deepcopy(subs), copy.deepcopy(gts), num_workers=1),
            "MR-R1": ev_raw.compute_mr_r1(copy.deepcopy(subs), copy.deepcopy(gts)),
        }
    dump(
        "mr_charades_golden.json",
        {
            "reference": "jayleicn/moment_detr standalone_eval/eval.py@2fa9e32 "
            "(compute_mr_ap and compute_mr_r1 on all queries; R1 also with iou_thds [0.3, 0.5, 0.7]; raw)",
            "r1": r1,
            "full_raw": full,
        },
    )
    print("charades", r1)
    # highlight AP primitive against get_ap (scikit-learn precision_recall_curve)
    from standalone_eval.utils import get_ap

    rng = np.random.default_rng(11)
    cases = []
    for i in range(60):
        n = int(rng.integers(2, 40))
        y = (rng.random(n) < rng.uniform(0.05, 0.9)).astype(float)
        if i % 10 == 0:
            y[:] = 1.0
        if i % 10 == 1:
            y[:] = 0.0
        s = np.round(rng.normal(0, 1, n), int(rng.integers(0, 3)))  # coarse rounding -> many ties
        cases.append({"y_true": y.tolist(), "y_score": s.tolist(), "ap": float(get_ap(y, s))})
    dump(
        "hl_ap_golden.json",
        {
            "reference": "moment_detr standalone_eval/utils.py get_ap "
            f"(scikit-learn {importlib.import_module('sklearn').__version__})",
            "cases": cases,
        },
        compact=True,
    )


# ------------------------------------------------------------------ retrieval + multilabel mAP
def retrieval():
    sys.path.insert(0, str(REF / "iv2"))
    from apmeter_ref import ap_per_class
    from itm_eval_ref import itm_eval

    rng = np.random.default_rng(5)
    out = []
    for nv, nt, multi in ((23, 23, False), (17, 51, True), (40, 12, True)):
        i2t = rng.normal(0, 1, (nv, nt)).astype(np.float32)
        if multi and nt >= nv:  # each video has nt // nv captions (+ the remainder on the last ones)
            txt2img = [t * nv // nt for t in range(nt)]
        elif multi:  # several videos per text: text t matches videos v with v % nt == t
            txt2img = [[v for v in range(nv) if v % nt == t] for t in range(nt)]
        else:
            txt2img = list(range(nt))
        img2txt = [
            [t for t in range(nt) if (txt2img[t] == v if isinstance(txt2img[t], int) else v in txt2img[t])]
            for v in range(nv)
        ]
        img2txt = [ids[0] if len(ids) == 1 else ids for ids in img2txt]
        # make the ground truth likely to be ranked high
        for v in range(nv):
            for t in (img2txt[v] if isinstance(img2txt[v], list) else [img2txt[v]]):
                i2t[v, t] += rng.uniform(0, 2.5)
        t2i = np.ascontiguousarray(i2t.T + rng.normal(0, 0.3, (nt, nv)).astype(np.float32))
        res = itm_eval(i2t, t2i, txt2img, img2txt)
        out.append(
            {"v2t": f32(i2t), "t2v": f32(t2i), "txt2vid": txt2img, "vid2txt": img2txt, "itm_eval": res}
        )
    scores = rng.random((50, 7)).astype(np.float32)
    targets = (rng.random((50, 7)) < 0.2).astype(np.int64)
    targets[:, 3] = 0  # a class without positives counts as AP 0
    ap = ap_per_class(scores, targets)
    dump(
        "retrieval_golden.json",
        {
            "reference": "InternVideo2 tasks/retrieval_utils.py::itm_eval; " "torchnet APMeter",
            "itm_cases": out,
            "map_case": {"scores": f32(scores), "targets": targets.tolist(), "ap": [float(x) for x in ap]},
        },
        compact=True,
    )


if __name__ == "__main__":
    # `tal moments` need pandas + scikit-learn; `retrieval` needs torch (run it with the project venv).
    for part in sys.argv[1:] or ["tal", "moments", "retrieval"]:
        globals()[part]()
