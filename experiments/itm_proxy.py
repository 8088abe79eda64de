"""A fast proxy for issue 19's ITM question: train ONLY the fusion layers and the ITM head on frozen features.

The vision tokens come from a trained stage-2 model's encoder (frozen, no masking), the text states from the
frozen MiniLM layers below the fusion layer, the hard-negative weights from that model's contrastive
features. The fusion layers + ITM head start as a fresh stage-2 model's (MiniLM weights, new cross-attention),
then train on VTM alone with AdamW. This isolates how fast the matching head can leave the 1:2 label prior
(VTM loss 0.6365) as a function of its initialisation, the vision-token scale, the pooled feature, the lr and
the negatives, at ~0.1 s per step instead of ~1 s for the joint recipe. Decisions still go through the joint
recipe (``stage2_itm.py``); this only screens.

    python experiments/itm_proxy.py NAME [--lr 1e-4] [--init random|self] [--vnorm] [--pool mean|cls]
        [--neg hard|random] [--group] [--steps 300] [--batch 16]
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "experiments" / "results" / "itm_proxy.jsonl"
PRIOR = -(1 / 3) * math.log(1 / 3) - (2 / 3) * math.log(2 / 3)


def features(model, split_json: Path, root: Path, n: int, cache: Path):
    """Frozen features of the first ``n`` clips: vision tokens, v_feat, per-caption text states and t_feat."""
    if cache.is_file():
        return torch.load(cache)
    from internvideo2.eval.zeroshot import load_videos

    rows = json.loads(split_json.read_text())[:n]
    out = {"tokens": [], "v": [], "caps": [], "app": [r.get("appearance", "") for r in rows]}
    with torch.no_grad():
        for i in range(0, len(rows), 64):
            v = load_videos([str(root / r["video"]) for r in rows[i:i + 64]], model)
            e = model.forward_video(v)
            out["tokens"].append(e.tokens)
            out["v"].append(e.embeds)
        caps = [r["caption"] if isinstance(r["caption"], list) else [r["caption"]] for r in rows]
        out["caps"] = caps
    out["tokens"], out["v"] = torch.cat(out["tokens"]), torch.cat(out["v"])
    cache.parent.mkdir(parents=True, exist_ok=True)
    torch.save(out, cache)
    return out


def text_states(model, texts: list[str]):
    tok = model.tokenizer(texts, padding="longest")
    with torch.no_grad():
        t = model.forward_text(tok["input_ids"], tok["attention_mask"])
    return t.hidden, t.attention_mask, t.embeds


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("name")
    p.add_argument("--model", default=str(ROOT / "runs" / "demo" / "stage2" / "stage1_seed0" / "model"))
    p.add_argument("--base", default=str(ROOT / "runs" / "demo"))
    p.add_argument("--vision", default=None, help="take the vision encoder from this model (e.g. stage 1's)")
    p.add_argument("--lr", type=float, default=1e-4)
    p.add_argument("--head-lr", type=float, default=None)
    p.add_argument("--old-lr", type=float, default=None,
                   help="lr of the pretrained tensors of the fusion layers (default: --lr; the recipe: 5e-5)")
    p.add_argument("--kv-std", type=float, default=None, help="re-initialise cross-attention key/value with this std")
    p.add_argument("--init", default="random", choices=["random", "self"])
    p.add_argument("--vnorm", action="store_true")
    p.add_argument("--pool", default="mean", choices=["mean", "cls"])
    p.add_argument("--neg", default="hard", choices=["hard", "random"])
    p.add_argument("--group", action="store_true", help="batches of same-appearance runs of 8 (the demo's)")
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--eps", type=float, default=1e-8)
    p.add_argument("--clip", type=float, default=3.0)
    p.add_argument("--drop", type=float, default=0.5, help="fraction of vision tokens dropped (training masking)")
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)
    torch.manual_seed(a.seed)
    from internvideo2.checkpoint.loader import load_model
    from internvideo2.models.text import init_cross_attention_from_self
    from internvideo2.objectives.losses import vtm_loss
    from internvideo2.train.config import load_config
    from internvideo2.train.tasks import get_task

    base = Path(a.base)
    trained = load_model(a.model).eval()
    tag = ""
    if a.vision:
        from internvideo2.train.stage2 import load_vision_weights

        load_vision_weights(trained.vision_encoder, a.vision)
        tag = "_" + Path(a.vision).parent.name
    train = features(trained, base / "synth" / "train.json", base / "synth", 2000,
                     base.parent / "exp" / "_proxy" / f"train{tag}.pt")
    dev_root = base.parent / "exp" / "_dev"
    dev = features(trained, dev_root / "heldout.json", dev_root, 100, base.parent / "exp" / "_proxy" / f"dev{tag}.pt")
    # the fresh fusion layers + head of the recipe's model
    cfg = load_config(ROOT / "configs" / "demo" / "stage2.yaml",
                      [f"data.options.synth_dir={base / 'synth'}", "model.pretrained=null"])
    fresh = get_task(cfg.task.name).build_model(cfg)
    if a.init == "self":
        init_cross_attention_from_self(fresh.text_encoder.bert)
    fresh.config.itm_pool = a.pool
    fresh.config.fusion_vision_norm = a.vnorm
    bert, head = fresh.text_encoder.bert, fresh.itm_head
    if a.kv_std is not None:
        for i in range(bert.config.fusion_layer, bert.config.num_hidden_layers):
            ca = bert.encoder.layer[i].crossattention.self
            for lin in (ca.key, ca.value):
                torch.nn.init.normal_(lin.weight, std=a.kv_std)
    fusion = [p_ for n, p_ in bert.named_parameters() if n.startswith("encoder.layer.") and
              int(n.split(".")[2]) >= bert.config.fusion_layer]
    new = [p_ for n, p_ in bert.named_parameters() if ".crossattention." in n]
    old = [p_ for p_ in fusion if all(p_ is not q for q in new)]
    opt = torch.optim.AdamW([{"params": new, "lr": a.lr}, {"params": old, "lr": a.old_lr or a.lr},
                             {"params": list(head.parameters()), "lr": a.head_lr or a.lr}],
                            betas=(0.9, 0.98), eps=a.eps, weight_decay=0.05)
    bert.train()
    g = torch.Generator().manual_seed(a.seed)
    N = train["tokens"].shape[0]
    groups: dict[str, list[int]] = {}
    for i, app in enumerate(train["app"]):
        groups.setdefault(app, []).append(i)
    curve, t0 = [], time.perf_counter()
    for _ in range(a.steps):
        if a.group:
            keys = list(groups)
            idx = []
            while len(idx) < a.batch:
                grp = groups[keys[int(torch.randint(len(keys), (1,), generator=g))]]
                perm = torch.randperm(len(grp), generator=g)[:8]
                idx += [grp[int(j)] for j in perm]
            idx = torch.tensor(idx[:a.batch])
        else:
            idx = torch.randperm(N, generator=g)[:a.batch]
        caps = [train["caps"][int(i)][int(torch.randint(len(train["caps"][int(i)]), (1,), generator=g))] for i in idx]
        h, att, t_feat = text_states(trained, caps)
        tok = train["tokens"][idx]
        if a.drop > 0:  # keep a random (1 - drop) of the patch tokens, as the training mask does
            keep = int(round((tok.shape[1] - 1) * (1 - a.drop)))
            sel = torch.stack([torch.randperm(tok.shape[1] - 1, generator=g)[:keep] + 1 for _ in range(len(idx))])
            tok = torch.cat([tok[:, :1], torch.gather(tok[:, 1:], 1, (sel - 1)[..., None].expand(-1, -1,
                                                                                               tok.shape[-1]))], 1)
        loss, _, _ = vtm_loss(bert, head, fresh.fusion_memory(tok), h, att, train["v"][idx], t_feat, idx,
                              trained.temp.detach(), hard_neg=a.neg == "hard", generator=g, pool=a.pool)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(fusion + list(head.parameters()), a.clip)
        opt.step()
        curve.append(float(loss.detach()))
    # re-rank on dev: for each of 100 captions, ITM scores of all 100 clips (a harder test than top-16)
    bert.eval()
    with torch.no_grad():
        caps = [c[0] for c in dev["caps"]]
        h, att, t_feat = text_states(trained, caps)
        sim = t_feat @ dev["v"].T
        top = sim.topk(16, dim=1).indices
        hit_itm = hit_sim = 0
        for q in range(len(caps)):
            cand = top[q]
            logits = fresh.itm_logits(dev["tokens"][cand], h[q:q + 1].expand(16, -1, -1),
                                      att[q:q + 1].expand(16, -1))
            best = cand[int(logits[:, 1].argmax())]
            hit_itm += int(best == q)
            hit_sim += int(cand[0] == q)
    w = 20
    smooth = [sum(curve[max(0, i - w + 1):i + 1]) / len(curve[max(0, i - w + 1):i + 1]) for i in range(len(curve))]
    left = next((i for i, v in enumerate(smooth) if v < 0.60 and i >= w), None)
    res = {"name": a.name, "args": {k: v for k, v in vars(a).items() if k not in ("name", "model", "base")},
           "final_vtm": round(sum(curve[-w:]) / w, 4), "left_prior_at": left,
           "dev_t2v_r1_sim": hit_sim, "dev_t2v_r1_match_top16": hit_itm, "seconds": round(time.perf_counter() - t0, 1)}
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    with RESULTS.open("a") as f:
        f.write(json.dumps(res) + "\n")
    print(json.dumps(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
