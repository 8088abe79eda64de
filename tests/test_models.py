"""The vision core: presets, run-time position resampling, masks, image path, attention maths,
checkpointing, teachers."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from internvideo2.errors import ConfigError, ShapeError
from internvideo2.models import (
    ClassifierConfig,
    InternVideo2Classifier,
    InternVideo2Pretrain,
    PretrainConfig,
    TeacherConfig,
    TeacherModel,
    VisionTransformer,
    create_model,
    vision_config,
)
from internvideo2.models.layers import Attention
from internvideo2.models.pos_embed import resample_pos_embed, sincos_3d

# spec §1.1 / §2: parameter counts in millions (cls model 8 frames 400 classes; CLIP towers; others)
CLS_PARAMS = {"internvideo2-s14": 23.35, "internvideo2-b14": 89.75, "internvideo2-l14": 309.24,
              "internvideo2-1b": 1021.02, "internvideo2-6b": 5942.04}
CLIP_PARAMS = {"internvideo2-s14": 23.04, "internvideo2-b14": 89.44, "internvideo2-l14": 308.93,
               "internvideo2-1b": 1020.71, "internvideo2-6b": 5941.74}


def n_params(m):
    return sum(p.numel() for p in m.parameters()) / 1e6


@pytest.mark.parametrize("preset", sorted(CLS_PARAMS))
def test_preset_parameter_counts_on_meta(preset):
    with torch.device("meta"):
        cls = InternVideo2Classifier(ClassifierConfig(vision=vision_config(preset), num_classes=400))
        clip = VisionTransformer(vision_config(preset))
    assert all(p.is_meta for p in cls.parameters())
    assert round(n_params(cls), 2) == CLS_PARAMS[preset]
    assert round(n_params(clip), 2) == CLIP_PARAMS[preset]


def test_teacher_and_pretrain_parameter_counts_on_meta():
    with torch.device("meta"):
        internvl = TeacherModel(TeacherConfig())
        vmae = TeacherModel(TeacherConfig(vision=vision_config("videomae-g14"), kind="videomae"))
        s1 = InternVideo2Pretrain(PretrainConfig(vision=vision_config("internvideo2-1b"), clip_return_layer=6,
                                                 mae_return_layer=4))
        s2 = InternVideo2Pretrain(PretrainConfig(vision=vision_config("internvideo2-1b", num_frames=4),
                                                 clip_return_layer=6, sep_image_video_pos_embed=True))
        dist = InternVideo2Pretrain(PretrainConfig(vision=vision_config("internvideo2-s14"), clip_decoder="mlp",
                                                   clip_teacher_embed_dim=1408, clip_return_layer=6))
    assert round(n_params(internvl), 2) == 5936.00
    assert round(n_params(vmae), 2) == 1011.61
    assert round(n_params(s1), 2) == 1070.04
    assert round(n_params(s2), 2) == 1049.12
    assert round(n_params(dist), 2) == 29.17
    assert s1.clip_index == [34, 35, 36, 37, 38, 39] and s1.mae_index == [36, 37, 38, 39]


def test_preset_aliases_and_bad_overrides():
    assert vision_config("L/14").embed_dim == 1024
    assert vision_config("1B").mlp_hidden == 6144
    with pytest.raises(ConfigError, match="preset"):
        vision_config("internvideo2-huge")
    with pytest.raises(ConfigError, match="num_heads"):
        vision_config("tiny", num_heads=7)
    with pytest.raises(ConfigError, match="frames_per_second"):
        vision_config("tiny", frames_per_second=3)


def test_sincos_table_layout():
    t = sincos_3d(32, (2, 2, 3))  # C=32: temporal 8 | column 12 | row 12
    assert t.shape == (1 + 12, 32)
    assert torch.all(t[0] == 0)
    tok = t[1:].view(2, 2, 3, 32)
    # temporal part depends only on t; column part only on j; row part only on i
    assert torch.allclose(tok[:, 0, 0, :8], tok[:, 1, 2, :8])
    assert (torch.allclose(tok[0, :, 1, 8:20], tok[1, :, 1, 8:20])
            and torch.allclose(tok[0, 0, 1, 8:20], tok[0, 1, 1, 8:20]))
    assert (torch.allclose(tok[0, 1, :, 20:], tok[1, 1, :, 20:])
            and not torch.allclose(tok[0, 0, 0, 20:], tok[0, 1, 0, 20:]))


def test_runtime_resampling_equals_load_time_resampling():
    """A 4-frame 56px model on an 8-frame 84px input == an 8-frame 84px model loaded from it."""
    small = create_model("tiny", "classifier", num_classes=5).eval()
    with torch.no_grad():
        small.pos_embed.add_(0.1 * torch.randn_like(small.pos_embed))
    big = create_model("tiny", "classifier", num_classes=5, num_frames=8, img_size=84).eval()
    from internvideo2.checkpoint import load_state_dict_strict
    from internvideo2.errors import CheckpointError

    with pytest.raises(CheckpointError, match="cannot tell"):  # frames and size both differ: ambiguous
        load_state_dict_strict(big, small.state_dict())
    rep = load_state_dict_strict(big, small.state_dict(), orig_num_frames=4, orig_img_size=56)
    assert rep.resampled["pos_embed"] == ((4, 4, 4), (8, 6, 6))
    x = torch.randn(2, 3, 8, 84, 84)
    with torch.no_grad():
        torch.testing.assert_close(small(x), big(x), rtol=0, atol=0)
    # and non-square inputs work too
    assert small(torch.randn(1, 3, 4, 56, 98)).shape == (1, 5)


def test_resample_identity_and_cls_row_kept():
    pe = torch.randn(1, 1 + 4 * 9, 16)
    assert resample_pos_embed(pe, (4, 3, 3), (4, 3, 3)) is pe
    out = resample_pos_embed(pe, (4, 3, 3), (2, 5, 5))
    assert out.shape == (1, 1 + 50, 16) and torch.equal(out[:, 0], pe[:, 0])


def test_image_path_uses_mean_table_or_dedicated_table():
    m = create_model("tiny").eval()
    with torch.no_grad():
        m.pos_embed.add_(torch.randn_like(m.pos_embed))
    T, H, W = m.cfg.grid
    table = m.position_table((1, H, W), use_image=True)
    expect = torch.cat([m.pos_embed[:, :1], m.pos_embed[:, 1:].view(1, T, H * W, -1).mean(1)], 1)
    torch.testing.assert_close(table, expect)
    s2 = create_model("tiny", "pretrain", clip_teacher_embed_dim=32, sep_image_video_pos_embed=True).eval()
    assert torch.equal(s2.position_table((1, H, W), use_image=True), s2.img_pos_embed)
    x = torch.randn(2, 3, 1, 56, 56)
    f = s2.forward_features(x)
    assert f.use_image and f.tokens.shape == (2, 1 + H * W, 96)


def test_mask_keeps_visible_tokens_in_order_and_validates():
    m = create_model("tiny").eval()
    x = torch.randn(2, 3, 4, 56, 56)
    full = m.forward_features(x).tokens
    none_dropped = torch.zeros(2, 65, dtype=torch.bool)
    assert torch.equal(m.forward_features(x, mask=none_dropped).tokens, full)
    bad = none_dropped.clone()
    bad[:, 0] = True
    with pytest.raises(ShapeError, match="cls"):
        m.forward_features(x, mask=bad)
    uneven = none_dropped.clone()
    uneven[0, 3] = True
    with pytest.raises(ShapeError, match="same number"):
        m.forward_features(x, mask=uneven)
    with pytest.raises(ShapeError):
        m.forward_features(x, mask=torch.zeros(2, 64, dtype=torch.bool))


def test_bad_input_shapes():
    m = create_model("tiny")
    with pytest.raises(ShapeError, match="divisible by the patch"):
        m(torch.randn(1, 3, 4, 50, 56))
    with pytest.raises(ShapeError, match=r"\[B, 3, T, H, W\]"):
        m(torch.randn(3, 4, 56, 56))
    with pytest.raises(ShapeError):
        m.encode_video(torch.zeros(4, 56, 56, 4, dtype=torch.uint8))


def reference_attention(attn: Attention, x):
    """Hand-written softmax attention (the official non-fused path)."""
    B, N, C = x.shape
    h, d = attn.num_heads, C // attn.num_heads
    q, k, v = attn.qkv(x).split(C, -1)
    if attn.q_norm is not None:
        q, k = attn.q_norm(q), attn.k_norm(k)
    q, k, v = (t.reshape(B, N, h, d).permute(0, 2, 1, 3) for t in (q, k, v))
    a = ((q * d**-0.5) @ k.transpose(-2, -1)).softmax(-1)
    return attn.proj((a @ v).transpose(1, 2).reshape(B, N, C))


def test_sdpa_attention_matches_explicit_softmax():
    attn = Attention(64, 4, qk_norm=True)
    x = torch.randn(2, 17, 64)
    torch.testing.assert_close(attn(x), reference_attention(attn, x), rtol=1e-5, atol=1e-6)


def test_videomae_layout_bug_option():
    """The bug computes attention across heads per token (flash-attn given (B,h,N,d) as (B,S,H,d))."""
    ok = Attention(32, 4, qkv_bias="qv", qk_norm=False, norm="layernorm")
    bug = Attention(32, 4, qkv_bias="qv", qk_norm=False, norm="layernorm", layout_bug=True)
    bug.load_state_dict(ok.state_dict())
    x = torch.randn(2, 6, 32)
    B, N, C, h, d = 2, 6, 32, 4, 8
    bias = torch.cat([ok.q_bias, torch.zeros_like(ok.q_bias), ok.v_bias])
    qkv = F.linear(x, ok.qkv.weight, bias).reshape(B, N, 3, h, d).permute(2, 0, 3, 1, 4)
    q, k, v = qkv[0], qkv[1], qkv[2]  # (B, h, N, d), read by flash as (B, S=h, H=N, d)
    scores = torch.einsum("bshd,bthd->bhst", q, k) * d**-0.5  # per "head" n: attention over s,t in h
    o = torch.einsum("bhst,bthd->bshd", scores.softmax(-1), v)  # (B, S=h, H=N, d)
    expect = ok.proj(o.reshape(B, N, C))
    torch.testing.assert_close(bug(x), expect, rtol=1e-5, atol=1e-6)
    assert not torch.allclose(bug(x), ok(x), atol=1e-3)


def test_grad_checkpointing_same_loss_and_grads():
    torch.manual_seed(1)
    m = create_model("tiny", "classifier", num_classes=3, drop_path_rate=0.0)
    x = torch.randn(2, 3, 4, 56, 56)
    m.train()
    m(x).square().sum().backward()
    g0 = [p.grad.clone() for p in m.parameters()]
    m.zero_grad()
    m.set_grad_checkpointing(True)
    m(x).square().sum().backward()
    for a, p in zip(g0, m.parameters()):
        torch.testing.assert_close(a, p.grad, rtol=1e-5, atol=1e-7)


def test_drop_path_rates_and_train_eval():
    m = create_model("tiny", drop_path_rate=0.3)
    rates = [getattr(b.drop_path, "p", 0.0) for b in m.blocks]
    assert rates == pytest.approx([0.0, 0.3])
    x = torch.randn(8, 3, 4, 56, 56)
    m.eval()
    assert torch.equal(m(x), m(x))
    m.train()
    torch.manual_seed(0)
    a = m(x)
    torch.manual_seed(1)
    assert not torch.allclose(a, m(x))


def test_return_layers_and_stop_at():
    m = create_model("internvideo2-s14", depth=4, embed_dim=64, num_heads=4, img_size=28, num_frames=2,
                     clip_embed_dim=32).eval()
    x = torch.randn(1, 3, 2, 28, 28)
    f = m.forward_features(x, return_layers=[-1, 1])
    assert len(f.intermediates) == 2 and torch.equal(f.intermediates[1], f.tokens)
    pen = m.forward_features(x, stop_at=-2)
    assert torch.equal(pen.tokens, m.forward_features(x, return_layers=[2]).intermediates[0])
    with pytest.raises(ValueError):
        m.forward_features(x, return_layers=[3], stop_at=-2)


def test_layer_ids_and_no_weight_decay():
    m = create_model("tiny", "classifier", num_classes=3)
    assert m.get_layer_id("cls_token") == 0 and m.get_layer_id("patch_embed.proj.weight") == 0
    assert m.get_layer_id("blocks.1.attn.qkv.weight") == 2
    assert m.get_layer_id("head.weight") == m.get_layer_id("clip_projector.proj.weight") == 3
    assert m.no_weight_decay() == {"cls_token", "pos_embed"}


def test_separable_position_embedding():
    m = create_model("tiny", pos_embed="separable").eval()
    T, H, W = m.cfg.grid
    table = m.position_table((T, H, W))
    expect = m.pos_embed_spatial[:, None] + m.pos_embed_temporal[:, :, None]
    torch.testing.assert_close(table[:, 1:], expect.reshape(1, T * H * W, -1))
    assert m(torch.randn(1, 3, 8, 56, 56)).shape == (1, 64)
    assert "pos_embed_spatial" in m.no_weight_decay()


def test_bf16_close_to_fp32():
    m = create_model("tiny").eval()
    x = torch.randn(2, 3, 4, 56, 56)
    a = m(x)
    b = m.to(torch.bfloat16)(x.bfloat16()).float()
    assert F.cosine_similarity(a, b).min() > 0.99


def test_internvl_teacher_is_per_frame():
    cfg = TeacherConfig(vision=vision_config("internvl-c-6b", embed_dim=64, depth=2, num_heads=4, img_size=28,
                                             clip_embed_dim=32), return_layer=2)
    t = TeacherModel(cfg).eval()
    x = torch.randn(2, 3, 3, 28, 28)
    out = t(x)
    assert out.features.shape == (2, 2, 1 + 3 * 4, 64) and out.pooled.shape == (2, 32) and out.attn.shape == (6, 4)
    # frame 1 of sample 0 run alone gives the same patch features
    single = t.forward_features(x[:1, :, 1:2], return_layers=[0, 1]).intermediates[1][0, 1:]
    torch.testing.assert_close(out.features[1, 0, 1 + 4:1 + 8], single / single.norm(dim=-1, keepdim=True))
    torch.testing.assert_close(out.features.norm(dim=-1), torch.ones(2, 2, 13))
    assert (out.attn.sum(-1) < 1).all()  # the softmax included the cls key (spec P38)


def test_videomae_teacher_no_cls_final_norm():
    cfg = TeacherConfig(vision=vision_config("videomae-g14", embed_dim=32, depth=3, num_heads=4, img_size=28,
                                             num_frames=4), kind="videomae", return_layer=2)
    t = TeacherModel(cfg).eval()
    assert "pos_table" not in t.state_dict() and "norm.weight" in t.state_dict()
    out = t(torch.randn(2, 3, 4, 28, 28))
    assert out.features.shape == (2, 2, 2 * 4, 32) and out.pooled is None


def test_encode_video_on_real_clip(assets):
    import av

    with av.open(str(assets / "video" / "example1.mp4")) as c:
        frames = [f.to_ndarray(format="rgb24") for i, f in enumerate(c.decode(video=0)) if i in (4, 14, 24, 34)]
    video = torch.from_numpy(__import__("numpy").stack(frames))  # [4, 480, 640, 3]
    m = create_model("tiny").eval()
    e1 = m.encode_video(video)
    assert e1.pooled.shape == (1, 64) and e1.tokens.shape == (1, 65, 96)
    assert torch.equal(e1.pooled, m.encode_video(video[None]).pooled)
    assert torch.isfinite(e1.pooled).all() and e1.pooled.abs().sum() > 0
    # different content -> different embedding
    assert not torch.allclose(e1.pooled, m.encode_video(video.flip(0)).pooled)
    assert math.isfinite(float(e1.pooled.norm()))


@pytest.mark.parametrize("norm", ["kaiming_BN", "LN"])
def test_cat_head_matches_hand_computation(norm):
    """``internvideo2_cat``: [cls, per-frame patch means] -> Linear+GELU -> norm -> flatten (BatchNorm:
    channel-major, LayerNorm: token-major) ++ fc_norm(pool) -> head."""
    torch.manual_seed(0)
    m = create_model("tiny", "classifier", num_classes=5, head="cat", merge_method="cls_avgN_proj", merge_norm=norm)
    with torch.no_grad():
        m.head.weight.normal_()
        if norm == "kaiming_BN":
            m.down_norm.running_mean.normal_()
            m.down_norm.running_var.uniform_(0.5, 2.0)
    m.eval()
    x = torch.randn(2, 3, 4, 56, 56)
    with torch.no_grad():
        f = m.forward_features(x)
        tok = f.tokens
        cls, avg = tok[:, :1], tok[:, 1:].reshape(2, 4, 16, 96).mean(2)
        merged = F.gelu(torch.cat([cls, avg], 1) @ m.down[0].weight.T + m.down[0].bias)  # [2, 5, 64]
        if norm == "LN":
            flat = F.layer_norm(merged, (64,), m.down_norm.weight, m.down_norm.bias).reshape(2, -1)
        else:
            rm, rv = m.down_norm.running_mean, m.down_norm.running_var
            flat = ((merged.permute(0, 2, 1) - rm[:, None]) / torch.sqrt(rv[:, None] + 1e-6)).reshape(2, -1)
        want = m.head(torch.cat([flat, m.fc_norm(m.pool(tok))], 1))
        torch.testing.assert_close(m(x), want, rtol=1e-5, atol=1e-5)


def test_cat_head_shapes_of_the_ssv2_linear_probe():
    """Spec §2.2: 1B, 16 frames, cls_avgN_proj + LN -> down.0 [768,1408], down_norm [768], head [174,13824]."""
    with torch.device("meta"):
        m = create_model("internvideo2-1b", "classifier", num_classes=174, num_frames=16, head="cat",
                         merge_method="cls_avgN_proj", merge_norm="LN")
    sd = m.state_dict()
    assert sd["down.0.weight"].shape == (768, 1408) and sd["down_norm.weight"].shape == (768,)
    assert sd["head.weight"].shape == (174, 13824)


def test_naive_attention_path_equals_sdpa():
    """The benchmark's reference path (explicit attention matrix, as the official code runs without
    flash-attn) computes the same function as the default SDPA path, on the same weights."""
    from internvideo2.models.layers import attention_impl

    torch.manual_seed(0)
    model = create_model("tiny", "vision").eval()
    x = torch.randn(2, 3, model.cfg.num_frames, model.cfg.img_size, model.cfg.img_size)
    with torch.no_grad():
        ref = model.forward_features(x).tokens
        with attention_impl("naive"):
            naive = model.forward_features(x).tokens
        again = model.forward_features(x).tokens  # the context restores the default
    torch.testing.assert_close(naive, ref, rtol=1e-5, atol=1e-5)
    assert torch.equal(again, ref)
    with pytest.raises(ValueError, match="sdpa"):
        with attention_impl("flash"):
            pass


def _ops_called(fn):
    """Run ``fn`` and return (its result, the set of aten/mkldnn ops dispatched)."""
    from torch.utils._python_dispatch import TorchDispatchMode

    class Recorder(TorchDispatchMode):
        def __init__(self):
            super().__init__()
            self.ops = set()

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            self.ops.add(str(func.overloadpacket))
            return func(*args, **(kwargs or {}))

    with Recorder() as rec:
        out = fn()
    return out, rec.ops


def _randomised(model):
    """LayerScale and norm weights away from their init (1e-5 LayerScale would hide every branch)."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith(("gamma", "norm.weight", "norm1.weight", "norm2.weight", "q_norm.weight",
                              "k_norm.weight")):
                p.copy_(1 + 0.3 * torch.randn_like(p))
    return model


@pytest.mark.parametrize("overrides", [
    {},  # InternVideo2: RMSNorm, full-width q/k RMSNorm, LayerScale, tanh GELU
    {"act": "gelu", "qkv_bias": "qv"},
    {"qk_norm": False, "norm": "layernorm", "init_values": 0.0, "qkv_bias": "qv"},  # VideoMAE-style
])
def test_fused_inference_path_matches_official_eager(overrides):
    """The fused CPU inference path (default) computes what the official eager code computes, op for op
    with ``fused_kernels(False)``, and it really is a different path (the fused ops run)."""
    from internvideo2.models.layers import _onednn_gelu_ok, fused_kernels

    _onednn_gelu_ok()  # its one-off capability probe runs F.gelu: keep it out of the recorded ops
    torch.manual_seed(0)
    model = _randomised(create_model("tiny", "vision", **overrides).eval())
    x = torch.randn(2, 3, model.cfg.num_frames, model.cfg.img_size, model.cfg.img_size)
    n = 1 + math.prod(model.cfg.grid)
    mask = torch.zeros(2, n, dtype=torch.bool)
    mask[:, 1:][:, torch.randperm(n - 1)[: (n - 1) // 2]] = True
    for m in (None, mask):
        with torch.no_grad():
            fused, ops_fused = _ops_called(lambda m=m: model.forward_features(x, mask=m, return_layers=[0]))
            with fused_kernels(False):
                eager, ops_eager = _ops_called(lambda m=m: model.forward_features(x, mask=m, return_layers=[0]))
        torch.testing.assert_close(fused.tokens, eager.tokens, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(fused.intermediates[0], eager.intermediates[0], rtol=1e-5, atol=1e-5)
        expected = {"aten.linalg_vector_norm"} if overrides.get("norm", "rmsnorm") == "rmsnorm" else set()
        if _onednn_gelu_ok():
            expected.add("mkldnn._linear_pointwise")
        if overrides.get("init_values", 1e-5):
            expected.add("aten.addcmul")
        assert expected <= ops_fused, f"fused path did not run {expected - ops_fused}"
        assert not (expected & ops_eager), f"official eager path ran fused ops {expected & ops_eager}"
        if _onednn_gelu_ok():
            assert "aten.gelu" in ops_eager and "aten.gelu" not in ops_fused


def test_fused_path_leaves_training_gradients_unchanged():
    """With autograd on only the LayerScale-residual fusion applies; loss and gradients match eager."""
    from internvideo2.models.layers import fused_kernels

    torch.manual_seed(0)
    model = _randomised(create_model("tiny", "vision").train())
    x = torch.randn(2, 3, model.cfg.num_frames, model.cfg.img_size, model.cfg.img_size)
    grads = []
    for fused in (True, False):
        model.zero_grad()
        with fused_kernels(fused):
            out, ops = _ops_called(lambda: model(x))
        out.square().sum().backward()
        assert ("aten.addcmul" in ops) == fused
        assert "mkldnn._linear_pointwise" not in ops  # no autograd formula: never used while training
        grads.append({k: p.grad.clone() for k, p in model.named_parameters() if p.grad is not None})
    assert grads[0].keys() == grads[1].keys()
    for k in grads[0]:
        torch.testing.assert_close(grads[0][k], grads[1][k], rtol=1e-4, atol=1e-6, msg=k)


def test_fused_path_in_bf16_matches_eager():
    """On CPU in bf16 the fused path runs too (one-reduction RMSNorm with fp32 accumulation, head-major
    q/k normalisation, LayerScale in the residual add, oneDNN fc1+GELU); it agrees with the eager bf16 ops
    to bf16 rounding and is no further from the fp32 result than they are."""
    from internvideo2.models.layers import _onednn_gelu_ok, fused_kernels

    _onednn_gelu_ok(torch.bfloat16)  # keep the one-off probe out of the recorded ops
    torch.manual_seed(0)
    model = _randomised(create_model("tiny", "vision").eval())
    x = torch.randn(2, 3, model.cfg.num_frames, model.cfg.img_size, model.cfg.img_size)
    with torch.no_grad():
        ref = model.forward_features(x).tokens
        model.bfloat16()
        fused, ops_fused = _ops_called(lambda: model.forward_features(x.bfloat16()).tokens)
        with fused_kernels(False):
            eager, ops_eager = _ops_called(lambda: model.forward_features(x.bfloat16()).tokens)
    expected = {"aten.linalg_vector_norm", "aten.addcmul"}
    if _onednn_gelu_ok(torch.bfloat16):
        expected.add("mkldnn._linear_pointwise")
        assert "aten.gelu" not in ops_fused and "aten.gelu" in ops_eager
    assert expected <= ops_fused, f"fused path did not run {expected - ops_fused}"
    assert not (expected & ops_eager), f"official eager path ran fused ops {expected & ops_eager}"
    torch.testing.assert_close(fused.float(), eager.float(), rtol=2e-2, atol=2e-2)
    err = {name: ((out.float() - ref).norm() / ref.norm()).item() for name, out in (("fused", fused), ("eager", eager))}
    assert 1e-4 < err["eager"] < 2e-2, err  # bf16 rounding is really there
    assert err["fused"] <= 1.25 * err["eager"], err


def test_micro_batching_groups_samples_and_changes_no_result():
    """On the fused CPU inference path a block runs a large batch in groups of samples whose MLP hidden
    fits the byte limit; the output equals the whole batch at once (and the official eager path), with and
    without a token mask. With autograd on, or the limit off, the batch runs at once."""
    from internvideo2.models.layers import fused_kernels, micro_batch_bytes

    torch.manual_seed(0)
    model = _randomised(create_model("tiny", "vision").eval())
    x = torch.randn(5, 3, model.cfg.num_frames, model.cfg.img_size, model.cfg.img_size)
    n = 1 + math.prod(model.cfg.grid)
    mask = torch.zeros(5, n, dtype=torch.bool)
    mask[:, 1:][:, torch.randperm(n - 1)[: (n - 1) // 2]] = True
    calls = []
    hook = model.blocks[0].mlp.register_forward_hook(lambda mod, inp, out: calls.append(inp[0].shape[0]))
    try:
        for m in (None, mask):
            tokens = n if m is None else int((~m[0]).sum())
            per_sample = tokens * model.blocks[0].mlp.fc1.out_features * 4
            outs = {}
            for name, limit in (("groups of 2", 2 * per_sample + per_sample // 2), ("one by one", 1),
                                ("whole batch", None)):
                calls.clear()
                with torch.no_grad(), micro_batch_bytes(limit):
                    outs[name] = model.forward_features(x, mask=m).tokens
                assert calls == {"groups of 2": [2, 2, 1], "one by one": [1] * 5, "whole batch": [5]}[name], name
            with torch.no_grad(), fused_kernels(False), micro_batch_bytes(1):
                calls.clear()
                eager = model.forward_features(x, mask=m).tokens
                assert calls == [5]  # the official eager path is never regrouped
            for name, out in outs.items():
                torch.testing.assert_close(out, outs["whole batch"], rtol=1e-5, atol=1e-5, msg=name)
                torch.testing.assert_close(out, eager, rtol=1e-5, atol=1e-5, msg=name)
        calls.clear()
        with micro_batch_bytes(1):
            model(x).sum().backward()
        assert calls == [5]  # autograd: no grouping
    finally:
        hook.remove()
    with pytest.raises(ValueError, match="micro_batch_bytes"):
        with micro_batch_bytes(0):
            pass


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_fused_path_keeps_stochastic_depth_in_train_mode_without_autograd(dtype):
    """A model in train mode run under no_grad still drops paths on the fused path (it once skipped them
    in bf16): its output differs from eval mode and, in fp32, equals the official eager ops' under the
    same seed."""
    from internvideo2.models.layers import fused_kernels

    model = _randomised(create_model("tiny", "vision", drop_path_rate=0.5)).to(dtype)
    x = torch.randn(4, 3, model.cfg.num_frames, model.cfg.img_size, model.cfg.img_size).to(dtype)
    with torch.no_grad():
        kept = model.eval().forward_features(x).tokens.float()
        torch.manual_seed(1)
        dropped = model.train().forward_features(x).tokens.float()
        with fused_kernels(False):
            torch.manual_seed(1)
            eager = model.forward_features(x).tokens.float()
    assert (dropped - kept).abs().max() > 1e-2 * kept.abs().max()  # eval and train are otherwise the same ops
    if dtype == torch.float32:
        torch.testing.assert_close(dropped, eager, rtol=1e-5, atol=1e-5)


HEADS = [dict(head="linear"), dict(head="ap"), dict(head="cat", merge_method="cls_avgN_proj", merge_norm="kaiming_BN"),
         dict(head="cat", merge_method="cls_avg1", merge_norm="LN")]


@pytest.mark.parametrize("num_classes", [3, 0])
@pytest.mark.parametrize("head", HEADS, ids=lambda h: "-".join(h.values()))
def test_reset_classifier_for_every_head_type(head, num_classes):
    """A model (also one built without a head) gets the head a fresh model of the new size would have:
    the same keys and shapes, the fresh init rules, the backbone untouched; it runs, saves and reloads."""

    vis = vision_config("tiny", num_frames=4, img_size=28)
    torch.manual_seed(0)
    m = InternVideo2Classifier(ClassifierConfig(vision=vis, num_classes=num_classes, **head)).eval()
    backbone = {k: v.clone() for k, v in m.state_dict().items() if k.startswith(("blocks.", "clip_projector."))}
    m.reset_classifier(7)
    fresh = InternVideo2Classifier(ClassifierConfig(vision=vis, num_classes=7, **head))
    assert {k: v.shape for k, v in m.state_dict().items()} == {k: v.shape for k, v in fresh.state_dict().items()}
    assert all(torch.equal(m.state_dict()[k], v) for k, v in backbone.items())
    assert m.config.num_classes == 7 and m.head.out_features == 7
    assert m.head.weight.abs().max() <= 2 * 0.02 * m.config.init_scale and not m.head.bias.any()
    if head["head"] == "ap":
        assert not m.extra_mlp[1].fc2.weight.any()  # the residual MLP starts at zero, as in a fresh model
    x = torch.randn(2, 3, 4, 28, 28)
    with torch.no_grad():
        assert m(x).shape == (2, 7)
        m.reset_classifier(0)  # features only
        assert m.head is None and m.fc_norm is None
        torch.testing.assert_close(m(x), m.encode_video(x).pooled)
        m.reset_classifier(5, head="ap")  # and another head type
        assert m(x).shape == (2, 5) and m.extra_mlp is not None
    with pytest.raises(ConfigError, match="num_classes"):
        m.reset_classifier(-1)


def test_reset_classifier_keeps_device_dtype_and_round_trips(tmp_path):
    import internvideo2

    vis = vision_config("tiny", num_frames=4, img_size=28)
    m = InternVideo2Classifier(ClassifierConfig(vision=vis, num_classes=3)).to(torch.bfloat16).eval()
    m.reset_classifier(4)
    assert m.head.weight.dtype == torch.bfloat16
    m = m.float()
    internvideo2.save_pretrained(m, tmp_path / "c")
    back = internvideo2.load_model(tmp_path / "c")
    x = torch.randn(1, 3, 4, 28, 28)
    with torch.no_grad():
        assert torch.equal(back(x), m(x))
