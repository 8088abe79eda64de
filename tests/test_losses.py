"""Losses against hand-computed values, and the masking generators."""
from __future__ import annotations

import json
import math

import pytest
import torch
import torch.nn.functional as F
from conftest import FIXTURES

from internvideo2.objectives.losses import (
    cosine_alignment_loss,
    get_sim,
    mlm_mask,
    sample_negatives,
    stage1_loss,
    uta_loss,
    visible_targets,
    vtc_loss,
    vtm_loss,
)
from internvideo2.objectives.masking import attention_mask, random_mask, tube_mask


def test_vtc_hand_computed():
    v = torch.tensor([[1.0, 0.0], [0.0, 2.0]])          # normalised: e1, e2
    t = torch.tensor([[3.0, 0.0], [0.6, 0.8]])          # normalised: e1, (0.6, 0.8)
    idx = torch.tensor([0, 1])
    temp = 0.5
    # S = [[1, .6], [0, .8]] / .5 = [[2, 1.2], [0, 1.6]]
    lv2t = -(math.log(math.exp(2) / (math.exp(2) + math.exp(1.2))) + math.log(math.exp(1.6) / (1 + math.exp(1.6)))) / 2
    # S^T = [[2, 0], [1.2, 1.6]]
    lt2v = -(math.log(math.exp(2) / (math.exp(2) + 1)) + math.log(math.exp(1.6) / (math.exp(1.2) + math.exp(1.6)))) / 2
    assert vtc_loss(v, t, idx, temp).item() == pytest.approx((lv2t + lt2v) / 2, rel=1e-6)


def test_vtc_shared_index_counts_as_positive():
    v = torch.tensor([[1.0, 0.0], [1.0, 0.1]])
    t = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    S = get_sim(v, t, 1.0)[0]
    same = vtc_loss(v, t, torch.tensor([7, 7]), 1.0)
    # Y = [[.5, .5], [.5, .5]]
    ref_v2t = -(0.5 * F.log_softmax(S, 1)).sum(1).mean()
    ref_t2v = -(0.5 * F.log_softmax(S.T, 1)).sum(1).mean()
    torch.testing.assert_close(same, (ref_v2t + ref_t2v) / 2)


def test_vtc_matches_official_fixture_value():
    d = FIXTURES / "stage2_visual_full"
    if not d.is_dir():
        pytest.skip(f"fixture {d} is absent")
    from safetensors.torch import load_file

    t = load_file(str(d / "tensors.safetensors"))
    man = json.loads((d / "manifest.json").read_text())
    temp = torch.load(d / "checkpoint.pth", weights_only=True)["module"]["temp"]
    got = vtc_loss(t["output.vision_proj"], t["output.text_proj"], t["input.idx"], temp)
    tol = man["tolerances"]["per_output"]["vtc_loss"]
    torch.testing.assert_close(got, t["output.vtc_loss"], rtol=tol["rtol"], atol=tol["atol"])
    s, _ = get_sim(t["output.vision_proj"], t["output.text_proj"], temp)
    torch.testing.assert_close(s, t["output.sim_v2t"], rtol=1e-5, atol=1e-5)


def test_get_sim_multi_vector_mean_and_max():
    v = torch.randn(3, 4, 8)
    t = torch.randn(5, 8)
    s_mean, s_t2v = get_sim(v, t, 2.0)
    ref = torch.stack([get_sim(v[:, k], t, 2.0)[0] for k in range(4)], -1)
    torch.testing.assert_close(s_mean, ref.mean(-1))
    torch.testing.assert_close(get_sim(v, t, 2.0, agg="max")[0], ref.amax(-1))
    assert s_t2v.shape == (5, 3)


class _Fusion(torch.nn.Module):
    """A minimal fusion stack for VTM: cross-attention pooled into the first token."""

    def __init__(self, h=8):
        super().__init__()
        self.lin = torch.nn.Linear(h, h)

    def forward(self, encoder_embeds, attention_mask, encoder_hidden_states, encoder_attention_mask, mode):
        assert mode == "fusion"
        mem = encoder_hidden_states.mean(1, keepdim=True)
        return self.lin(encoder_embeds + mem)


def test_vtm_pairs_labels_and_negatives_never_positive():
    torch.manual_seed(0)
    B = 6
    vision, text = torch.randn(B, 5, 8), torch.randn(B, 4, 8)
    atts = torch.ones(B, 4, dtype=torch.long)
    idx = torch.tensor([0, 0, 1, 2, 3, 4])  # items 0 and 1 share an index: positives of each other
    head = torch.nn.Linear(8, 2)
    g = torch.Generator().manual_seed(0)
    loss, logits, labels = vtm_loss(_Fusion(), head, vision, text, atts, torch.randn(B, 8), torch.randn(B, 8), idx,
                                    generator=g)
    assert logits.shape == (3 * B, 2) and labels.tolist() == [1] * B + [0] * (2 * B)
    torch.testing.assert_close(loss, F.cross_entropy(logits, labels))
    pos = idx[:, None] == idx[None, :]
    w = torch.rand(B, B)
    for hard in (True, False):
        for _ in range(50):
            neg, ok = sample_negatives(w, pos, g, hard)
            assert ok.all() and not (idx[neg] == idx).any()


def test_hard_negatives_follow_similarity():
    w = torch.tensor([[0.0, 0.9, 0.1], [0.05, 0.0, 0.95], [0.5, 0.5, 0.0]])
    pos = torch.eye(3, dtype=torch.bool)
    g = torch.Generator().manual_seed(0)
    draws = torch.stack([sample_negatives(w, pos, g)[0] for _ in range(2000)])
    assert (draws[:, 0] == 1).float().mean() > 0.85 and (draws[:, 1] == 2).float().mean() > 0.9
    uniform = torch.stack([sample_negatives(w, pos, g, hard=False)[0] for _ in range(2000)])
    assert 0.4 < (uniform[:, 0] == 1).float().mean() < 0.6


def test_negative_sampling_edge_cases():
    g = torch.Generator().manual_seed(0)
    idx = torch.tensor([0, 0, 1, 1])  # two videos, two captions each
    pos = idx[:, None] == idx[None, :]
    # every hard weight of row 0 underflowed to zero: the fallback must still avoid its positives (0 and 1)
    w = torch.ones(4, 4)
    w[0] = 0.0
    for hard in (True, False):
        draws = torch.stack([sample_negatives(w, pos, g, hard)[0] for _ in range(300)])
        assert set(draws[:, 0].tolist()) == {2, 3} and set(draws[:, 2].tolist()) == {0, 1}
    # uniform mode draws every non-positive, including those whose hard weight underflowed to zero
    w = torch.tensor([[0, 0, 1e-45, 0.5], [0, 0, 0.3, 0.7], [1, 1, 0, 0], [1, 1, 0, 0]]).float()
    draws = torch.stack([sample_negatives(w, pos, g, hard=False)[0] for _ in range(300)])
    assert set(draws[:, 0].tolist()) == {2, 3}
    # a batch of one video has no negative at all: flagged, and VTM drops those pairs instead of mislabelling
    same = torch.zeros(3, dtype=torch.long)
    neg, ok = sample_negatives(torch.rand(3, 3), same[:, None] == same[None, :], g)
    assert not ok.any()
    vision, text = torch.randn(3, 5, 8), torch.randn(3, 4, 8)
    loss, logits, labels = vtm_loss(_Fusion(), torch.nn.Linear(8, 2), vision, text, torch.ones(3, 4, dtype=torch.long),
                                    torch.randn(3, 8), torch.randn(3, 8), same, generator=g)
    assert labels.tolist() == [1, 1, 1] and logits.shape == (3, 2) and torch.isfinite(loss)


def test_mlm_mask_statistics():
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(1000, 5000, (400, 30))
    ids[:, 0] = 101  # [CLS]
    ids[:, 25:] = 0  # pad
    masked, labels = mlm_mask(ids, 30522, prob=0.5, generator=g)
    chosen = labels != -100
    assert not chosen[:, 0].any() and not chosen[:, 25:].any()
    frac = chosen[:, 1:25].float().mean().item()
    assert 0.47 < frac < 0.53
    assert torch.equal(labels[chosen], ids[chosen])
    to_mask = (masked == 103) & chosen
    unchanged = (masked == ids) & chosen
    assert 0.77 < to_mask.sum() / chosen.sum() < 0.83
    assert 0.08 < unchanged.sum() / chosen.sum() < 0.12  # 10% kept (+ random draws equal to the id, ~0)
    assert torch.equal(masked[~chosen], ids[~chosen])


def test_alignment_losses_hand_values():
    s = F.normalize(torch.tensor([[1.0, 0.0], [1.0, 1.0]]), dim=-1)
    t = F.normalize(torch.tensor([[0.0, 1.0], [1.0, 1.0]]), dim=-1)
    # cos = [0, 1] -> 2-2cos = [2, 0] -> mean 1
    assert cosine_alignment_loss(s, t).item() == pytest.approx(1.0)
    assert uta_loss(s, t, s, s, ratios=(2.0, 1.0)).item() == pytest.approx(2.0)
    terms = stage1_loss(s[None], t[None], s, t, s[None], s[None], clip_ratio=(1.0, 0.5), mae_ratio=3.0)
    assert terms["loss_clip"].item() == pytest.approx(1.0) and terms["loss_clip_final"].item() == pytest.approx(0.5)
    assert terms["loss_mae"].item() == pytest.approx(0.0, abs=1e-6)
    assert terms["loss"].item() == pytest.approx(1.5)


def test_visible_targets_follow_mask():
    feats = torch.arange(2 * 2 * 5).float().view(1, 2, 5, 2).expand(3, -1, -1, -1)
    mask = torch.tensor([[False, True, False, True, False], [False, False, True, True, False]])
    out = visible_targets(feats, mask)
    assert out.shape == (3, 2, 3, 2)
    assert torch.equal(out[0, 0, :, 0], feats[0, 0, [0, 2, 4], 0])


def test_random_and_tube_masks():
    g = torch.Generator().manual_seed(0)
    m = random_mask(4, 64, 0.8, g)
    assert m.shape == (4, 65) and not m[:, 0].any()
    assert (m[:, 1:].sum(1) == int(0.8 * 64)).all()
    assert not torch.equal(m[0], m[1])
    tm = tube_mask(3, 4, 16, 0.75, g)
    frames = tm[:, 1:].view(3, 4, 16)
    assert (frames == frames[:, :1]).all() and (frames.sum(-1) == 12).all()


def test_attention_guided_mask_keeps_top_attended():
    B, T, L = 2, 3, 16
    attn = torch.full((B * T, L), 0.001)
    top = torch.tensor([1, 5, 9])
    attn[:, top] = 10.0
    exact = attention_mask(attn, 0.8, batch=B, sample=False)  # N_vis = 16 - 12 = 4 per frame
    frames = exact[:, 1:].view(B, T, L)
    assert ((~frames).sum(-1) == 4).all() and (~frames[:, :, top]).all()
    g = torch.Generator().manual_seed(0)
    kept = torch.zeros(L)
    for _ in range(100):
        kept += (~attention_mask(attn, 0.8, generator=g, with_cls=False)).float().mean(0)
    assert (kept[top] > 99).all() and kept[[0, 2, 3]].max() < 20
    whole = attention_mask(torch.rand(2, 40), 0.8)
    assert whole.shape == (2, 41) and ((~whole[:, 1:]).sum(1) == 40 - 32).all()
