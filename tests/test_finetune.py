"""Fine-tuning and probing (official-spec §6): Mixup/CutMix targets, probing freezes, the multi-view test,
the linear probe and one tiny `finetune` engine run on the synthetic world."""
from __future__ import annotations

import logging
import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from internvideo2.errors import ConfigError
from internvideo2.eval.classification import attentive_probe, evaluate_multiview, linear_probe, multiview_clips
from internvideo2.models.config import vision_config
from internvideo2.train.config import config_from_dict
from internvideo2.train.finetune import FinetuneOptions, FinetuneTask, mix_batch


@pytest.fixture(autouse=True)
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


MIX = {"label_smoothing": 0.0, "mixup": 0.8, "cutmix": 1.0, "mixup_prob": 1.0, "mixup_switch_prob": 0.5}


def _mix(x, y, k, o, gen):
    return mix_batch(x, y, k, FinetuneOptions(**o), gen)


def _batch(B=4, T=3, H=12, W=10):
    """Sample i is the constant i + 1 everywhere, so every output pixel says which sample it came from."""
    x = torch.arange(1, B + 1, dtype=torch.float32).view(B, 1, 1, 1, 1).expand(B, 3, T, H, W).contiguous()
    return x, torch.tensor([0, 1, 2, 3][:B])


# ---------------------------------------------------------------------------------------------------------
# mix_batch
# ---------------------------------------------------------------------------------------------------------
def test_label_smoothing_without_mixing():
    x, y = _batch()
    o = {**MIX, "label_smoothing": 0.1, "mixup_prob": 0.0}
    out, t = _mix(x, y, 5, o, np.random.default_rng(0))
    assert torch.equal(out, x)
    expected = torch.full((4, 5), 0.1 / 5)
    expected[torch.arange(4), y] = 0.9 + 0.1 / 5
    torch.testing.assert_close(t, expected)
    torch.testing.assert_close(t.sum(1), torch.ones(4))


def test_mixup_mixes_pixels_and_targets_with_one_lambda():
    x, y = _batch()
    for seed in range(5):
        out, t = _mix(x, y, 4, {**MIX, "cutmix": 0.0}, np.random.default_rng(seed))
        lam = t[0, 0].item()  # sample 0: weight lam on its own class, 1 - lam on its partner's (B-1-0 = 3)
        assert 0.0 < lam < 1.0
        torch.testing.assert_close(t.sum(1), torch.ones(4))
        for i in range(4):
            j = 3 - i
            assert t[i, y[i]].item() == pytest.approx(lam, abs=1e-6)
            assert t[i, y[j]].item() == pytest.approx(1 - lam, abs=1e-6)
            torch.testing.assert_close(out[i], torch.full_like(out[i], lam * (i + 1) + (1 - lam) * (j + 1)))


def test_cutmix_lambda_is_one_minus_the_box_area_and_the_box_is_shared_over_time():
    x, y = _batch(T=3, H=12, W=10)
    o = {**MIX, "mixup": 0.0, "label_smoothing": 0.1}
    boxes = 0
    for seed in range(20):
        out, t = _mix(x, y, 4, o, np.random.default_rng(seed))
        torch.testing.assert_close(t.sum(1), torch.ones(4))
        changed = out != x  # [B, 3, T, H, W]: pixels pasted from the partner sample
        for i in range(4):
            j = 3 - i
            assert torch.all((out[i] == i + 1) | (out[i] == j + 1))
            box = changed[i, 0, 0]
            assert torch.equal(changed[i], box.expand_as(changed[i])), "one box for every frame and channel"
            if box.any():  # a rectangle
                rows, cols = box.any(1).nonzero().flatten(), box.any(0).nonzero().flatten()
                assert box[rows.min():rows.max() + 1, cols.min():cols.max() + 1].all()
            lam = 1.0 - box.float().mean().item()
            # soft targets: lam of the (smoothed) own label, 1 - lam of the partner's
            on, off = 0.9 + 0.1 / 4, 0.1 / 4
            assert t[i, y[i]].item() == pytest.approx(lam * on + (1 - lam) * off, abs=1e-6)
            assert t[i, y[j]].item() == pytest.approx((1 - lam) * on + lam * off, abs=1e-6)
        boxes += bool(changed.any())
    assert boxes >= 10, "most draws paste a non-empty box"


def test_switch_probability_chooses_between_mixup_and_cutmix():
    x, y = _batch()
    kinds = set()
    for seed in range(20):
        out, _ = _mix(x, y, 4, MIX, np.random.default_rng(seed))
        values = set(out[0].unique().tolist())
        kinds.add("cutmix" if values <= {1.0, 4.0} else "mixup")
    assert kinds == {"cutmix", "mixup"}
    for seed in range(5):  # switch prob 1: always cutmix
        out, _ = _mix(x, y, 4, {**MIX, "mixup_switch_prob": 1.0}, np.random.default_rng(seed))
        assert set(out[0].unique().tolist()) <= {1.0, 4.0}


def test_batch_of_one_passes_through():
    x, y = _batch(B=1)
    out, t = _mix(x, y, 3, {**MIX, "label_smoothing": 0.3}, np.random.default_rng(0))
    assert torch.equal(out, x)
    torch.testing.assert_close(t, torch.tensor([[0.7 + 0.1, 0.1, 0.1]]))


# ---------------------------------------------------------------------------------------------------------
# probing modes
# ---------------------------------------------------------------------------------------------------------
def _cfg(tmp_path, **options):
    return config_from_dict({
        "output_dir": str(tmp_path / "run"),
        "task": {"name": "finetune", "options": {"num_classes": 5, **options}},
        "model": {"preset": "tiny", "overrides": {"drop_path_rate": 0.0}},
        "data": {"options": {"synthetic": True, "num_frames": 2, "image_res": 28}},
        "train": {"global_batch_size": 4, "max_steps": 2, "device": "cpu", "precision": "fp32"},
    })


@pytest.mark.parametrize("mode, head, trainable", [
    ("linear", "linear", {"fc_norm", "head"}),
    ("attentive", "linear", {"fc_norm", "head", "clip_projector"}),
    ("linear", "ap", {"fc_norm", "head", "extra_mlp"}),
])
def test_probing_freezes_everything_but_the_head(tmp_path, mode, head, trainable):
    task = FinetuneTask()
    cfg = _cfg(tmp_path, mode=mode, head=head)
    task.validate(cfg)
    model = task.build_model(cfg)
    assert {n.split(".")[0] for n, p in model.named_parameters() if p.requires_grad} == trainable
    logits = model(torch.randn(2, 3, 2, 28, 28))
    assert logits.shape == (2, 5)
    logits.sum().backward()
    for name, p in model.named_parameters():
        assert (p.grad is not None) == (name.split(".")[0] in trainable), name


def test_full_mode_trains_everything(tmp_path):
    model = FinetuneTask().build_model(_cfg(tmp_path, mode="full"))
    assert all(p.requires_grad for p in model.parameters())


def _saved(model, folder):
    import internvideo2

    torch.manual_seed(len(str(folder)))
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    return internvideo2.save_pretrained(model, folder), model.state_dict()


def test_k710_head_transfer_and_extra_checkpoint(tmp_path):
    """Official K710 head transfer (K400: the first 400 rows; K600/K700: the shipped index maps) and
    --finetune_extra (a second checkpoint's vision weights over the first's)."""
    from internvideo2.checkpoint.heads import k710_rows
    from internvideo2.errors import CheckpointError
    from internvideo2.models.config import ClassifierConfig
    from internvideo2.models.variants import InternVideo2Classifier
    from internvideo2.models.vision import VisionTransformer

    vis = vision_config("tiny", num_frames=2, img_size=28)
    k710, k710_sd = _saved(InternVideo2Classifier(ClassifierConfig(vision=vis, num_classes=710)), tmp_path / "k710")
    rows600 = k710_rows(600)
    assert len(set(rows600)) == 600 and max(rows600) < 710 and rows600[:3] == [121, 562, 518]
    assert len(set(k710_rows(700))) == 700 and k710_rows(700)[:3] == [363, 481, 594]
    for n, rows in ((400, list(range(400))), (600, rows600)):
        cfg = _cfg(tmp_path, k710_head_transfer=True, num_classes=n)
        cfg.model.pretrained = str(k710)
        model = FinetuneTask().build_model(cfg)
        torch.testing.assert_close(model.head.weight, k710_sd["head.weight"][rows], rtol=0, atol=0)
        torch.testing.assert_close(model.head.bias, k710_sd["head.bias"][rows], rtol=0, atol=0)
    torch.testing.assert_close(model.blocks[1].mlp.fc1.weight, k710_sd["blocks.1.mlp.fc1.weight"], rtol=0, atol=0)
    cfg.task.options["k710_head_transfer"] = False  # a 710-way head does not fit a 600-way model
    with pytest.raises(CheckpointError, match="head.weight"):
        FinetuneTask().build_model(cfg)
    bad = _cfg(tmp_path, k710_head_transfer=True, num_classes=5)
    bad.model.pretrained = str(k710)
    with pytest.raises(ConfigError, match="400, 600 or 700"):
        FinetuneTask().build_model(bad)
    rows = rows600

    extra, extra_sd = _saved(VisionTransformer(vis), tmp_path / "stage2_vision")
    cfg.task.options.update(k710_head_transfer=True, pretrained_extra=str(extra))
    model = FinetuneTask().build_model(cfg)
    for key in ("blocks.0.attn.qkv.weight", "pos_embed", "clip_projector.cross_attn.k.weight"):
        torch.testing.assert_close(model.state_dict()[key], extra_sd[key], rtol=0, atol=0)
    torch.testing.assert_close(model.head.weight, k710_sd["head.weight"][rows], rtol=0, atol=0)
    torch.testing.assert_close(model.fc_norm.weight, k710_sd["fc_norm.weight"], rtol=0, atol=0)


# ---------------------------------------------------------------------------------------------------------
# multi-view test
# ---------------------------------------------------------------------------------------------------------
def _coded_video(n_frames=10, H=8, W=14, video_id=0):
    """uint8 [N, H, W, 3]: channel 0 = 16 * frame + column, channel 1 = 50 * video_id, channel 2 = 0."""
    f = torch.arange(n_frames).view(-1, 1, 1)
    c = torch.arange(W).view(1, 1, -1)
    v = torch.zeros(n_frames, H, W, 3, dtype=torch.uint8)
    v[..., 0] = (16 * f + c).expand(n_frames, H, W).to(torch.uint8)
    v[..., 1] = 50 * video_id
    return v


def test_multiview_clips_views_and_offsets():
    from internvideo2.data.sampling import test_view_indices

    video = _coded_video(n_frames=10, H=8, W=14)
    views, ids = multiview_clips(video, num_frames=3, num_clips=2, num_crops=3, size=8, mean=(0, 0, 0),
                                 std=(1, 1, 1))
    assert views.shape == (6, 3, 3, 8, 8)
    assert ids == [(c, k) for c in range(2) for k in range(3)]
    for v, (c, k) in zip(views, ids):
        code = torch.round(v[0] * 255).long()  # [T, 8, 8]
        frames = (code // 16)[:, 0, 0].tolist()
        assert frames == test_view_indices(10, 3, 2, c)
        offset = int(k * (14 - 8) / 2)  # crops along the long side at 0, 3, 6
        assert torch.equal(code % 16, (torch.arange(8) + offset).expand(3, 8, 8))
    # one crop: centred; a portrait video crops along its height
    views, _ = multiview_clips(video, 3, 1, 1, 8, (0, 0, 0), (1, 1, 1))
    assert views.shape == (1, 3, 3, 8, 8) and torch.round(views[0, 0, 0, 0, 0] * 255).item() % 16 == 3
    tall = video.permute(0, 2, 1, 3).contiguous()  # [N, 14, 8, 3]: the column code now runs down the rows
    views, _ = multiview_clips(tall, 3, 1, 3, 8, (0, 0, 0), (1, 1, 1))
    assert [int(torch.round(v[0, 0, 0, 0] * 255)) % 16 for v in views] == [0, 3, 6]


class _LookupModel(nn.Module):
    """Logits from a table indexed by (video, clip, crop), decoded from the first pixel of the view."""

    def __init__(self, table, first_frames, offsets):
        super().__init__()
        self.w = nn.Parameter(torch.zeros(1))
        self.cfg = SimpleNamespace(img_size=8, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))
        self.table, self.first_frames, self.offsets = table, first_frames, offsets

    def forward(self, x):
        rows = []
        for view in x:
            code = int(torch.round(view[0, 0, 0, 0] * 255))
            vid = int(torch.round(view[1, 0, 0, 0] * 255)) // 50
            clip, crop = self.first_frames.index(code // 16), self.offsets.index(code % 16)
            rows.append(self.table[vid][clip][crop])
        return torch.tensor(rows) + 0 * self.w


def test_evaluate_multiview_softmaxes_each_view_then_averages():
    from internvideo2.data.sampling import test_view_indices

    K = 6
    first = [test_view_indices(10, 3, 2, c)[0] for c in range(2)]
    # video 0 (label 0): five views mildly for class 0, one view extremely for class 2. Averaging logits
    # would answer 2; the official merge (softmax per view, then mean) answers 0.
    mild, extreme = [2.0, 0, 0, 0, 0, 0], [0, 0, 100.0, 0, 0, 0]
    v0 = [[mild, mild, mild], [mild, mild, extreme]]
    # video 1 (label 4): class 3 wins on every view, class 4 second everywhere -> top-1 wrong, top-5 right
    v1 = [[[0, 0, 0, 3.0, 1.0, 0]] * 3, [[0, 0, 0, 2.0, 1.5, 0]] * 3]
    model = _LookupModel([v0, v1], first, [0, 3, 6])
    videos = [_coded_video(10, 8, 14, 0), _coded_video(10, 8, 14, 1)]
    res = evaluate_multiview(model, videos, [0, 4], num_frames=3, num_clips=2, num_crops=3, size=8)
    assert res["views"] == "2 clips x 3 crops" and res["num_videos"] == 2 and res["num_classes"] == K
    assert res["top1"] == pytest.approx(50.0) and res["top5"] == pytest.approx(100.0)
    assert res["mean_class_accuracy"] == pytest.approx(50.0)  # class 0: 1/1, class 4: 0/1
    # the hand computation for video 0
    probs = torch.stack([F.softmax(torch.tensor(r, dtype=torch.float64), 0) for c in v0 for r in c]).mean(0)
    assert probs.argmax().item() == 0 and torch.tensor(v0).mean((0, 1)).argmax().item() == 2
    p0 = 5 / 6 * math.exp(2) / (math.exp(2) + 5) + 1 / 6 * 1 / (math.exp(100) + 5)
    assert probs[0].item() == pytest.approx(p0)


# ---------------------------------------------------------------------------------------------------------
# linear probe
# ---------------------------------------------------------------------------------------------------------
def test_linear_probe_separable_features_reach_100_percent():
    g = torch.Generator().manual_seed(0)
    centres = torch.randn(4, 16, generator=g) * 4
    ytr, yte = torch.arange(80) % 4, torch.arange(40) % 4
    xtr = centres[ytr] + 0.3 * torch.randn(80, 16, generator=g)
    xte = centres[yte] + 0.3 * torch.randn(40, 16, generator=g)
    res = linear_probe(xtr, ytr.tolist(), xte, yte.tolist())
    assert res["top1"] == 100.0 and res["mean_class_accuracy"] == 100.0 and res["train_top1"] == 100.0
    assert res["num_classes"] == 4 and res["num_train"] == 80 and res["num_test"] == 40


def test_linear_probe_random_labels_stay_near_chance():
    g = torch.Generator().manual_seed(1)
    xtr, xte = torch.randn(400, 16, generator=g), torch.randn(400, 16, generator=g)
    ytr = torch.randint(0, 4, (400,), generator=g).tolist()
    yte = torch.randint(0, 4, (400,), generator=g).tolist()
    res = linear_probe(xtr, ytr, xte, yte, num_classes=4)
    assert 15.0 < res["top1"] < 35.0  # chance is 25% (binomial sd ~2.2 points)


def _order_task(n: int, g: torch.Generator):
    """Two tokens per clip, content A and B in either order: the class is the order. The mean of the tokens
    is the same for both classes, so only a probe that weighs positions can solve it."""
    fixed = torch.Generator().manual_seed(0)  # the same A, B and positions for every split
    a, b = torch.randn(2, 16, generator=fixed) * 2
    p = torch.randn(2, 16, generator=fixed)
    y = torch.randint(0, 2, (n,), generator=g)
    first = torch.where(y[:, None] == 0, a, b)
    second = torch.where(y[:, None] == 0, b, a)
    x = torch.stack([first + p[0], second + p[1]], 1) + 0.05 * torch.randn(n, 2, 16, generator=g)
    return x, y.tolist()


def test_attentive_probe_solves_what_mean_pooling_cannot():
    g = torch.Generator().manual_seed(3)
    xtr, ytr = _order_task(256, g)
    xte, yte = _order_task(128, g)
    mean = linear_probe(xtr.mean(1), ytr, xte.mean(1), yte, num_classes=2)
    att = attentive_probe(xtr, ytr, xte, yte, num_classes=2, steps=200, batch_size=64, lr=3e-3)
    assert mean["top1"] < 65.0          # the mean of the two tokens carries only noise about the order
    assert att["top1"] >= 95.0 and att["num_train"] == 256 and att["num_test"] == 128
    again = attentive_probe(xtr, ytr, xte, yte, num_classes=2, steps=200, batch_size=64, lr=3e-3)
    assert again == att                 # deterministic in its seed


def test_attentive_probe_rejects_pooled_features():
    with pytest.raises(ValueError, match=r"\[N, L, C\]"):
        attentive_probe(torch.zeros(4, 8), [0, 1, 0, 1], torch.zeros(4, 8), [0, 1, 0, 1])


# ---------------------------------------------------------------------------------------------------------
# one tiny engine run
# ---------------------------------------------------------------------------------------------------------
def test_finetune_engine_run_with_multiview_test(tmp_path, caplog):
    from internvideo2.train.engine import Trainer

    cfg = config_from_dict({
        "output_dir": str(tmp_path / "run"),
        "task": {"name": "finetune", "options": {"test_num_clips": 2, "test_num_crops": 3, "eval_num": 4}},
        "model": {"preset": "tiny", "overrides": {"drop_path_rate": 0.0}},
        "data": {"options": {"synthetic": True, "num_frames": 2, "image_res": 28, "synth_train": 8,
                             "synth_heldout": 4}},
        "optim": {"lr": 1e-3},
        "train": {"global_batch_size": 4, "max_steps": 2, "device": "cpu", "precision": "fp32"},
        "checkpoint": {"save_final": False, "export_model": False},
        "log": {"tensorboard": False, "plot": False, "progress": False},
    })
    with caplog.at_level(logging.INFO, logger="internvideo2.train.finetune"):
        trainer = Trainer(cfg)
        summary = trainer.fit()
    assert summary["steps"] == 2 and summary["skipped_steps"] == 0
    assert "2 clips x 3 crops, 4 videos" in caplog.text
    ev = summary["eval"]
    assert set(ev) == {"eval/top1", "eval/top5", "eval/mean_class_accuracy"}
    # the engine's evaluation is the multi-view protocol on the held-out split
    ds = trainer.task._dataset(cfg, train=False)
    videos = [ds.whole_video(i) for i in range(4)]
    res = evaluate_multiview(trainer.unwrapped, videos, [ds.records[i].label for i in range(4)], 2, 2, 3, 28)
    assert res["top1"] == pytest.approx(ev["eval/top1"]) and res["top5"] == pytest.approx(ev["eval/top5"])
