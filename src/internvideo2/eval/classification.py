"""Action-recognition evaluation protocols (official-spec §6.4): the multi-view test and linear probing.

* :func:`multiview_logits` — every video gives ``num_clips`` temporal views (the official sparse test
  sampler) x ``num_crops`` spatial views (short side resized to the crop size, crops along the long
  side); :func:`evaluate_multiview` softmaxes each view, averages per video and reports top-1/top-5 and
  mean-class accuracy labelled "N clips x M crops".
* :func:`linear_probe` — a logistic-regression head fitted on frozen features (full-batch L-BFGS).
* :func:`attentive_probe` — InternVideo2's frozen-backbone protocol: a new attention pool + linear
  classifier trained on the frozen token features.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..utils.io import write_text
from .metrics import aggregate_views, mean_class_accuracy, topk_accuracy, views_label


def multiview_clips(frames: Tensor, num_frames: int, num_clips: int, num_crops: int, size: int,
                    mean: Sequence[float], std: Sequence[float]) -> tuple[Tensor, list[tuple[int, int]]]:
    """All test views of one video. ``frames`` uint8 ``[N, H, W, 3]`` (the whole decoded video).
    Returns ``([V, 3, num_frames, size, size], [(clip, crop), ...])``."""
    from ..data.sampling import test_view_indices
    from ..data.transforms import normalize, resize_short_side, spatial_view, to_tchw

    views, ids = [], []
    for c in range(num_clips):
        idx = test_view_indices(frames.shape[0], num_frames, num_clips, c)
        x = resize_short_side(to_tchw(frames[idx]), size)
        for k in range(num_crops):
            v = normalize(spatial_view(x, k, num_crops, size), mean, std)  # [T, 3, S, S]
            views.append(v.permute(1, 0, 2, 3))
            ids.append((c, k))
    return torch.stack(views), ids


@torch.no_grad()
def multiview_logits(model: nn.Module, videos: Sequence[Tensor], num_frames: int, num_clips: int = 1,
                     num_crops: int = 1, size: int | None = None, batch_size: int = 32):
    """Logits of every view of every video: ``(logits [sum V, K], video_ids, clip_ids, crop_ids)``.
    ``videos`` are whole decoded videos, uint8 ``[N, H, W, 3]`` each. ``model(x) -> logits``."""
    model.eval()
    vis = getattr(model, "cfg", None)
    size = size or vis.img_size
    mean, std = vis.mean, vis.std
    dev = next(model.parameters()).device
    batch, out = [], []
    vid_ids, clip_ids, crop_ids = [], [], []

    def flush():
        if batch:
            out.append(model(torch.cat(batch).to(dev)).float().cpu())
            batch.clear()

    for v, frames in enumerate(videos):
        x, ids = multiview_clips(frames, num_frames, num_clips, num_crops, size, mean, std)
        batch.append(x)
        for c, k in ids:
            vid_ids.append(v)
            clip_ids.append(c)
            crop_ids.append(k)
        if sum(b.shape[0] for b in batch) >= batch_size:
            flush()
    flush()
    return torch.cat(out), vid_ids, clip_ids, crop_ids


def evaluate_multiview(model: nn.Module, videos: Sequence[Tensor], labels: Sequence[int], num_frames: int,
                       num_clips: int = 1, num_crops: int = 1, size: int | None = None) -> dict:
    """Multi-view test: softmax per view, mean per video, top-1/top-5 and mean-class accuracy (percent)."""
    logits, vids, clips, crops = multiview_logits(model, videos, num_frames, num_clips, num_crops, size)
    agg = aggregate_views(logits, vids, clips, crops)
    probs = torch.as_tensor(agg.probs)
    labels = [int(labels[v]) for v in agg.video_ids]
    acc = topk_accuracy(probs, labels, ks=(1, 5))
    return {"top1": acc["top1"], "top5": acc["top5"],
            "mean_class_accuracy": mean_class_accuracy(probs, labels, probs.shape[1]),
            "views": views_label(num_clips, num_crops), "num_videos": len(labels), "num_classes": probs.shape[1]}


def linear_probe(train_feats: Tensor, train_labels: Sequence[int], test_feats: Tensor, test_labels: Sequence[int],
                 num_classes: int | None = None, weight_decay: float = 1e-3, max_iter: int = 200) -> dict:
    """Logistic regression on frozen features (standardised with the training statistics), fitted with
    full-batch L-BFGS; deterministic. Returns top-1 / mean-class accuracy (percent) on the test set."""
    xtr, xte = train_feats.double(), test_feats.double()
    mu, sd = xtr.mean(0), xtr.std(0).clamp_min(1e-6)
    xtr, xte = (xtr - mu) / sd, (xte - mu) / sd
    ytr = torch.as_tensor(list(train_labels), dtype=torch.long)
    k = num_classes or int(max(max(train_labels), max(test_labels)) + 1)
    head = nn.Linear(xtr.shape[1], k).double()
    nn.init.zeros_(head.weight)
    nn.init.zeros_(head.bias)
    opt = torch.optim.LBFGS(head.parameters(), lr=1.0, max_iter=max_iter, history_size=20,
                            line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = F.cross_entropy(head(xtr), ytr) + weight_decay * head.weight.pow(2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    with torch.no_grad():
        scores = head(xte).float()
        train_acc = (head(xtr).argmax(1) == ytr).double().mean().item() * 100
    yte = list(test_labels)
    return {"top1": topk_accuracy(scores, yte, ks=(1,))["top1"],
            "mean_class_accuracy": mean_class_accuracy(scores, yte, k), "train_top1": train_acc,
            "num_train": len(ytr), "num_test": len(yte), "num_classes": k}


def attentive_probe(train_tokens: Tensor, train_labels: Sequence[int], test_tokens: Tensor,
                    test_labels: Sequence[int], num_classes: int | None = None, num_heads: int = 4,
                    steps: int = 300, batch_size: int = 128, lr: float = 1e-3, weight_decay: float = 0.05,
                    seed: int = 0) -> dict:
    """Attentive probing (the paper's frozen-feature protocol): an attention pool (one query, the
    ``clip_projector`` design) + LayerNorm + linear head trained with AdamW on frozen tokens
    ``[N, L, C]``; the backbone is not touched. Deterministic in ``seed``. Returns top-1 / mean-class
    accuracy (percent) on the test tokens."""
    from ..models.layers import AttentionPool

    if train_tokens.ndim != 3 or test_tokens.ndim != 3 or train_tokens.shape[-1] != test_tokens.shape[-1]:
        raise ValueError(f"attentive_probe needs token features [N, L, C]; got {tuple(train_tokens.shape)} and "
                         f"{tuple(test_tokens.shape)}")
    ytr = torch.as_tensor(list(train_labels), dtype=torch.long)
    if len(ytr) != len(train_tokens) or len(test_labels) != len(test_tokens):
        raise ValueError("attentive_probe: one label per clip is required")
    k = num_classes or int(max(max(train_labels), max(test_labels)) + 1)
    C = train_tokens.shape[-1]
    heads = num_heads if C % num_heads == 0 else 1
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        head = nn.Sequential(AttentionPool(C, heads, C), nn.LayerNorm(C), nn.Linear(C, k))
    xtr, xte = train_tokens.detach().float(), test_tokens.detach().float()
    opt = torch.optim.AdamW(head.parameters(), lr=lr, weight_decay=weight_decay)
    g = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        idx = torch.randint(len(xtr), (min(batch_size, len(xtr)),), generator=g)
        loss = F.cross_entropy(head(xtr[idx]), ytr[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    with torch.no_grad():
        def predict(x: Tensor) -> Tensor:
            return torch.cat([head(x[i:i + 256]) for i in range(0, len(x), 256)])

        scores = predict(xte)
        train_acc = predict(xtr).argmax(1).eq(ytr)
    yte = list(test_labels)
    return {"top1": topk_accuracy(scores, yte, ks=(1,))["top1"],
            "mean_class_accuracy": mean_class_accuracy(scores, yte, k),
            "train_top1": train_acc.double().mean().item() * 100, "num_train": len(ytr), "num_test": len(yte),
            "num_classes": k, "steps": steps}


class ClassificationCLI:
    """``internvideo2 eval cls --model M --data LIST --videos DIR --clips 4 --crops 3``."""

    @staticmethod
    def configure_cli(parser):
        parser.add_argument("--model", required=True, help="a classifier (saved folder or official checkpoint)")
        parser.add_argument("--data", required=True,
                            help="classification list (path,label CSV / Kinetics lines / JSON)")
        parser.add_argument("--videos", default=None, help="folder the list's paths are relative to")
        parser.add_argument("--clips", type=int, default=1, help="temporal views per video")
        parser.add_argument("--crops", type=int, default=1, help="spatial views per clip")
        parser.add_argument("--frames", type=int, default=None, help="frames per view (default: the model's)")
        parser.add_argument("--num", type=int, default=None, help="first N videos only")
        parser.add_argument("--classes", default=None, metavar="FILE",
                            help="the class list, in the head's order (one name per line, or a classes.json): "
                                 "needed when the labels are class names")
        parser.add_argument("-o", "--out", default=None, help="write the results as JSON here")

    @staticmethod
    def run_cli(args) -> int:
        import json

        from ..checkpoint.loader import load_model
        from ..data.annotations import read_classification
        from ..data.video import probe_video, read_frames
        from ..errors import ConfigError
        from .zeroshot import read_classes

        label_map = None
        if args.classes:
            names = read_classes(args.classes, key="name")
            label_map = {n: k for k, n in enumerate(names)}
        model = load_model(args.model)
        if getattr(model, "head", None) is None:
            raise ConfigError("--model", f"{args.model}: eval cls needs a classifier with a head (model type "
                                         f"'classifier'); this is a {model.model_type!r} model")
        num_classes = model.config.num_classes
        if label_map is not None and len(label_map) != num_classes:
            raise ConfigError("--classes", f"{args.classes} lists {len(label_map)} classes, the model's head has "
                                           f"{num_classes}")
        ann = read_classification(args.data, args.videos, label_map=label_map, num_classes=num_classes,
                                  unmapped_names="error")
        recs = ann.records
        recs = recs[: args.num] if args.num else recs
        videos = []
        for r in recs:
            meta = probe_video(r.path)
            videos.append(read_frames(r.path, list(range(meta.num_frames)), meta=meta))
        res = evaluate_multiview(model, videos, [r.label for r in recs], args.frames or model.cfg.num_frames,
                                 args.clips, args.crops)
        text = json.dumps(res, indent=2)
        print(text)
        if args.out:
            write_text(args.out, text)
        return 0
