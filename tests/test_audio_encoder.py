"""BEATs audio encoder: official fixture parity, weight norm, relative position buckets, strict loading."""

from __future__ import annotations

import json
import logging

import pytest
import torch
from conftest import FIXTURES

from internvideo2.checkpoint.beats import load_beats_checkpoint
from internvideo2.errors import CheckpointError, ConfigError
from internvideo2.models.audio import BEATs, BEATsConfig, relative_position_bucket


def _fixture():
    d = FIXTURES / "beats_audio"
    if not (d / "manifest.json").is_file():
        pytest.skip(f"parity fixture {d} is absent (it is not part of the repository)")
    from safetensors.torch import load_file

    return d, json.loads((d / "manifest.json").read_text()), load_file(str(d / "tensors.safetensors"))


def tiny_cfg(**kw) -> BEATsConfig:
    base = dict(
        input_patch_size=4,
        embed_dim=8,
        encoder_layers=2,
        encoder_embed_dim=16,
        encoder_ffn_embed_dim=24,
        encoder_attention_heads=2,
        conv_pos=6,
        conv_pos_groups=4,
        relative_position_embedding=True,
        num_buckets=32,
        max_distance=64,
        gru_rel_pos=True,
        deep_norm=True,
    )
    base.update(kw)
    return BEATsConfig(**base)


def test_fixture_features_and_pooled():
    d, man, t = _fixture()
    model, report = load_beats_checkpoint(d / "checkpoint.pth")
    model.eval()
    ck = torch.load(d / "checkpoint.pth", map_location="cpu", weights_only=True)
    assert sorted(report.loaded) == sorted(ck["model"]) and not report.aliased
    assert {k: model.cfg.to_dict()[k] for k in ck["cfg"]} == ck["cfg"]
    with torch.no_grad():
        feats = model(t["output.fbank"])
    assert feats.shape == t["output.features"].shape  # [2, 248, 96]: 62 x 4 patches, token = 4 t + f
    for name, got in (("features", feats), ("pooled", feats.mean(1))):
        tol = man["tolerances"]["per_output"][name]
        torch.testing.assert_close(got, t[f"output.{name}"], rtol=tol["rtol"], atol=tol["atol"])


def test_fixture_relative_bias_is_one_tensor_and_only_layer0_computes_it():
    d, _, t = _fixture()
    model, _ = load_beats_checkpoint(d / "checkpoint.pth")
    layers = model.encoder.layers
    assert all(
        layer.self_attn.relative_attention_bias is layers[0].self_attn.relative_attention_bias
        for layer in layers
    )
    calls = []
    for i, lay in enumerate(layers):
        orig = lay.self_attn.compute_bias
        lay.self_attn.compute_bias = lambda n, dev, orig=orig, i=i: (calls.append(i), orig(n, dev))[1]
    with torch.no_grad():
        model.eval()(t["output.fbank"][:1])
    assert calls == [0]


def test_weight_norm_matches_torch():
    model = BEATs(tiny_cfg())
    conv = model.encoder.pos_conv[0]
    with torch.no_grad():
        conv.weight_g.uniform_(0.5, 2.0)
    ref = torch.nn.Conv1d(16, 16, 6, padding=3, groups=4)
    ref = torch.nn.utils.parametrizations.weight_norm(ref, dim=2)
    with torch.no_grad():
        ref.parametrizations.weight.original0.copy_(conv.weight_g)
        ref.parametrizations.weight.original1.copy_(conv.weight_v)
    torch.testing.assert_close(conv.weight(), ref.weight, rtol=1e-6, atol=1e-7)
    # per kernel tap: ||weight[:, :, k]|| == g[k]
    torch.testing.assert_close(conv.weight().norm(dim=(0, 1)), conv.weight_g.flatten(), rtol=1e-5, atol=1e-6)
    x = torch.randn(2, 16, 10)
    assert model.encoder.pos_conv(x).shape == (2, 16, 10)  # SamePad drops the extra step of the even kernel


def test_relative_position_buckets():
    rel = torch.tensor([0, -5, 5, -79, 79, 80, -80, 799, 5000, -5000])
    got = relative_position_bucket(rel, num_buckets=320, max_distance=800).tolist()
    # 160 buckets per sign (positive keys offset by 160); |d| < 80 exact; log-spaced beyond, capped at 159
    assert got[:5] == [0, 5, 165, 79, 239]
    assert got[5] == 160 + 80 and got[6] == 80
    assert got[7] == 160 + 159 and got[8] == 160 + 159 and got[9] == 159


def test_checkpoint_errors(tmp_path):
    model = BEATs(tiny_cfg())
    cfg = model.cfg.to_dict()
    good = {k: v.clone() for k, v in model.state_dict().items()}

    def load(sd, **kw):
        return load_beats_checkpoint({"cfg": cfg, "model": sd}, **kw)

    m2, rep = load(good)
    assert all(torch.equal(v, good[k]) for k, v in m2.state_dict().items())
    sd = dict(good)
    del sd["encoder.layers.1.fc2.bias"]
    sd["encoder.layers.0.self_attn.k_bias"] = torch.zeros(16)
    sd["patch_embedding.weight"] = torch.zeros(8, 1, 16, 16)
    with pytest.raises(CheckpointError) as e:
        load(sd)
    msg = str(e.value)
    assert "missing keys: encoder.layers.1.fc2.bias" in msg
    assert "unexpected keys: encoder.layers.0.self_attn.k_bias" in msg
    assert "patch_embedding.weight: checkpoint (8, 1, 16, 16) vs model (8, 1, 4, 4)" in msg
    sd = dict(good)
    sd["encoder.layers.1.self_attn.relative_attention_bias.weight"] = torch.zeros(32, 2)
    with pytest.raises(CheckpointError, match="tied"):
        load(sd)
    with pytest.raises(CheckpointError, match="no 'cfg'"):
        load_beats_checkpoint({"model": good})
    with pytest.raises(CheckpointError, match="not found"):
        load_beats_checkpoint(tmp_path / "none.pt")
    # stage-2 audio-visual layout: prefixed keys, config given separately
    prefixed = {f"audio_encoder.{k}": v for k, v in good.items()} | {"text_encoder.x": torch.zeros(1)}
    m3, _ = load_beats_checkpoint(prefixed, cfg=cfg, prefix="audio_encoder.")
    assert torch.equal(m3.encoder.layer_norm.weight, good["encoder.layer_norm.weight"])
    path = tmp_path / "beats.pt"
    torch.save({"cfg": cfg, "model": good}, path)
    m4, _ = load_beats_checkpoint(path)
    assert torch.equal(m4.patch_embedding.weight, good["patch_embedding.weight"])


def test_config_and_input_validation(caplog):
    with pytest.raises(ConfigError, match="deep_norm"):
        tiny_cfg(layer_norm_first=True)
    with pytest.raises(ConfigError, match="input_patch_size"):
        BEATsConfig.from_dict({})  # official default -1: the checkpoint must give it
    with caplog.at_level(logging.WARNING, logger="internvideo2.models.audio"):
        cfg = BEATsConfig.from_dict(dict(tiny_cfg().to_dict(), new_field=1))
    assert cfg.extra == {"new_field": 1} and "new_field" in caplog.text
    model = BEATs(tiny_cfg())
    with pytest.raises(ValueError, match=r"\[B, T_frames, mel_bins\]"):
        model(torch.zeros(20, 8))
    with pytest.raises(ValueError, match="smaller"):
        model(torch.zeros(1, 3, 8))


def test_pre_ln_variant_trains():
    model = BEATs(
        tiny_cfg(deep_norm=False, layer_norm_first=True, layer_wise_gradient_decay_ratio=0.5)
    ).train()
    out = model(torch.randn(2, 12, 8))
    assert out.shape == (2, 3 * 2, 16)
    out.pow(2).mean().backward()
    conv = model.encoder.pos_conv[0]
    assert conv.weight_g.grad is not None and conv.weight_v.grad.abs().sum() > 0
    assert model.encoder.layers[0].self_attn.grep_a.grad is not None
