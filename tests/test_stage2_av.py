"""The audio-visual stage-2 model (official ``InternVideo2_Stage2_audiovisual``): modules built per loss weight as
the official constructor, losses dispatched per batch media type and caption field, freeze_audio, gradients,
the embedding API (video, text, audio, ITM/ATM/AVTM, fused audio-video), saving and the official config map.
Parity with the official class: tests/test_parity.py (fixture ``stage2_av_full``)."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

import internvideo2
from internvideo2.errors import ConfigError, ShapeError
from internvideo2.models import PretrainConfig, vision_config
from internvideo2.models.registry import create_model
from internvideo2.models.stage2 import Stage2Config
from internvideo2.models.stage2_av import (
    AUDIO_LOSSES,
    InternVideo2Stage2AV,
    Stage2AVConfig,
    beats_config,
    stage2_av_config_from_official,
)
from internvideo2.models.text import BertConfig
from internvideo2.objectives.losses import vtc_loss

ALL_ON = {f"loss_{n}": 1.0 for n in ("vtc", "vtm", "mlm", *AUDIO_LOSSES)}
RELEASED = dict(loss_atc=0.0, loss_avc=0.0, loss_avtc=1.0, loss_atm=0.0, loss_avtm=1.0, loss_amlm=0.0,
                loss_avmlm=1.0)


def tiny_cfg(**kw) -> Stage2AVConfig:
    vis = PretrainConfig(vision=vision_config("tiny"), clip_teacher_embed_dim=32, clip_teacher_final_dim=16)
    text = BertConfig(vocab_size=500, hidden_size=48, num_hidden_layers=3, num_attention_heads=4,
                      intermediate_size=96, max_position_embeddings=16, fusion_layer=2, encoder_width=40)
    return Stage2AVConfig(**{"vision": vis, "text": text, "audio": beats_config("beats_tiny"), "embed_dim": 24,
                             "av_concat_dim": 40, "max_txt_len": 12, **ALL_ON, **kw})


def tiny(**kw) -> InternVideo2Stage2AV:
    torch.manual_seed(0)
    return InternVideo2Stage2AV(tiny_cfg(**kw))


def text_batch(B=4, L=10, seed=1):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(200, 500, (B, L), generator=g)
    ids[:, 0] = 101
    att = torch.ones(B, L, dtype=torch.long)
    att[0, 7:] = 0
    ids[0, 7:] = 0
    return {"input_ids": ids, "attention_mask": att}


def media(B=4, T=4, frames=160):
    g = torch.Generator().manual_seed(2)
    return torch.randn(B, 3, T, 56, 56, generator=g), torch.randn(B, frames, 64, generator=g)


def official_modules(m) -> set[str]:
    return {k.split(".")[0] for k in m.state_dict()}


# --------------------------------------------------------------------------------------------------
# modules per loss weight
# --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("weights,extra", [
    (ALL_ON, {"audio_encoder", "audio_proj", "av_concat_audio_proj", "av_fusion", "atm_head", "avtm_head"}),
    (RELEASED, {"audio_encoder", "audio_proj", "av_concat_audio_proj", "av_fusion", "avtm_head"}),
    (dict.fromkeys(ALL_ON, 0.0) | {"loss_vtc": 1.0, "loss_atc": 1.0}, {"audio_encoder", "audio_proj",
                                                                       "av_concat_audio_proj"}),
    (dict.fromkeys(ALL_ON, 0.0) | {"loss_vtc": 1.0, "loss_avtc": 1.0}, {"audio_encoder", "audio_proj",
                                                                        "av_concat_audio_proj", "av_fusion"}),
    (dict.fromkeys(ALL_ON, 0.0) | {"loss_vtc": 1.0, "loss_vtm": 1.0}, set()),
], ids=["all", "released", "atc", "avtc", "visual"])
def test_modules_exist_exactly_as_the_official_constructor_builds_them(weights, extra):
    """use_audio() -> audio_encoder, audio_proj, av_concat_audio_proj; av_fusion iff avtc or avtm; atm_head iff
    atm; avtm_head iff avtm; av_concat_vision_proj, vision_proj, text_proj, itm_head and temp always."""
    m = tiny(**weights)
    always = {"vision_encoder", "text_encoder", "av_concat_vision_proj", "vision_proj", "text_proj", "itm_head", "temp"}
    assert official_modules(m) == always | extra
    if not extra:
        with pytest.raises(TypeError, match="no audio_encoder"):
            m.forward_audio(torch.zeros(1, 32, 64))


def test_bert_reads_the_av_concat_width_and_the_visual_check_is_unchanged():
    m = tiny()
    assert m.text_encoder.bert.encoder.layer[2].crossattention.self.key.weight.shape == (48, 40)
    assert m.av_concat_vision_proj[0].weight.shape == (40, 96) and m.av_concat_audio_proj[0].weight.shape == (40, 64)
    with pytest.raises(ConfigError, match="text.encoder_width.*96 must equal av_concat_dim 40"):
        tiny_cfg(text=BertConfig(hidden_size=48, num_attention_heads=4, num_hidden_layers=3, fusion_layer=2,
                                 encoder_width=96))
    # the visual model still cross-attends to the raw vision tokens
    with pytest.raises(ConfigError, match="40 must equal the vision width 96"):
        Stage2Config(vision=tiny_cfg().vision, text=tiny_cfg().text)


def test_config_validation():
    with pytest.raises(ConfigError, match="fusion_vision_norm"):
        tiny_cfg(fusion_vision_norm=True)
    with pytest.raises(ConfigError, match="loss_caption.uta"):
        tiny_cfg(loss_caption={"uta": "x"})
    with pytest.raises(ConfigError, match="loss_avmlm"):
        tiny_cfg(loss_avmlm=-1.0)
    with pytest.raises(ConfigError, match="text.fusion_layer.*ATM"):
        tiny_cfg(text=BertConfig(hidden_size=48, num_attention_heads=4, num_hidden_layers=3, fusion_layer=3,
                                 encoder_width=40), loss_vtm=0.0, loss_mlm=0.0, loss_amlm=0.0, loss_avmlm=0.0,
                 loss_avtm=0.0)


def test_defaults_are_the_released_6b_configuration():
    cfg = Stage2AVConfig()
    assert (cfg.embed_dim, cfg.av_concat_dim, cfg.text.encoder_width, cfg.text.fusion_layer) == (768, 768, 768, 19)
    assert cfg.vision.vision.embed_dim == 3200 and not cfg.vision.sep_image_video_pos_embed
    assert (cfg.audio.encoder_embed_dim, cfg.audio.encoder_layers, cfg.audio.max_distance) == (768, 12, 800)
    assert {n: cfg.weight(n) for n in AUDIO_LOSSES} == {k[5:]: v for k, v in RELEASED.items()}
    assert cfg.freeze_audio and cfg.uta_image_only and set(cfg.loss_caption.values()) == {"avs_captions"}


# --------------------------------------------------------------------------------------------------
# losses per media type
# --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("media_type,expected", [
    ("video", {"vtc", "vtm", "mlm"}), ("image", {"vtc", "vtm", "mlm"}), ("audio", {"atc", "atm", "amlm"}),
    ("audio_video", {"vtc", "atc", "avc", "avtc", "vtm", "atm", "avtm", "mlm", "amlm", "avmlm"})])
def test_losses_dispatch_on_the_media_type(media_type, expected):
    m = tiny().train()
    video, fbank = media()
    batch = {"video": video, "image": video[:, :, :1], "audio": fbank, "audio_video": (fbank, video)}[media_type]
    out = m(batch, text_batch(), torch.arange(4), media_type, generator=torch.Generator().manual_seed(0))
    assert set(out) == {f"loss_{n}" for n in expected} | {"loss"}
    assert all(torch.isfinite(v) for v in out.values())
    torch.testing.assert_close(out["loss"], sum(v for k, v in out.items() if k != "loss"))


def test_released_weights_per_media_type():
    m = tiny(**RELEASED).train()
    video, fbank = media()
    out = m((fbank, video), text_batch(), torch.arange(4), "audio_video", generator=torch.Generator().manual_seed(0))
    assert set(out) == {"loss_vtc", "loss_vtm", "loss_mlm", "loss_avtc", "loss_avtm", "loss_avmlm", "loss"}
    # an audio-only batch trains nothing with ATC = ATM = AMLM = 0: refused, not a silent zero
    with pytest.raises(ConfigError, match="audio batch trains nothing"):
        m(fbank, text_batch(), torch.arange(4), "audio")
    with pytest.raises(ConfigError, match="media_type"):
        m(video, text_batch(), torch.arange(4), "speech")


def test_loss_weights_scale_each_term():
    video, fbank = media()
    torch.manual_seed(0)
    m = tiny().eval()
    half = tiny(loss_avtc=0.5, loss_atm=2.0).eval()
    half.load_state_dict(m.state_dict())
    kw = dict(media_type="audio_video")
    a = m((fbank, video), text_batch(), torch.arange(4), generator=torch.Generator().manual_seed(3), **kw)
    b = half((fbank, video), text_batch(), torch.arange(4), generator=torch.Generator().manual_seed(3), **kw)
    torch.testing.assert_close(b["loss_avtc"], 0.5 * a["loss_avtc"])
    torch.testing.assert_close(b["loss_atm"], 2.0 * a["loss_atm"])
    torch.testing.assert_close(b["loss_vtc"], a["loss_vtc"])


def test_contrastive_terms_are_the_official_pairs():
    """VTC (video, text), ATC (audio, text), AVC (audio, video), AVTC (av_fusion([audio ; video]), text) on the
    unnormalised projections, computed on the test path (eval: no token mask)."""
    m = tiny(loss_vtm=0.0, loss_mlm=0.0, loss_atm=0.0, loss_avtm=0.0, loss_amlm=0.0, loss_avmlm=0.0).eval()
    video, fbank = media()
    text, idx = text_batch(), torch.tensor([0, 1, 1, 2])
    out = m((fbank, video), text, idx, "audio_video")
    with torch.no_grad():
        v = m.vision_proj(m.forward_video(video).pooled)
        a = m.audio_proj(m.forward_audio(fbank).pooled)
        t = m.text_proj(m.forward_text(text["input_ids"], text["attention_mask"]).pooled)
        av = m.av_fusion(torch.cat([a, v], dim=-1))
    for name, (x, y) in {"vtc": (v, t), "atc": (a, t), "avc": (a, v), "avtc": (av, t)}.items():
        torch.testing.assert_close(out[f"loss_{name}"], vtc_loss(x, y, idx, m.temp), msg=name)


def test_caption_fields_are_dispatched_per_loss():
    """A batch with several captions per sample: each loss reads the field loss_caption names; each field is
    encoded once; a field the batch lacks is named in the error."""
    on = dict.fromkeys(ALL_ON, 0.0) | {"loss_vtc": 1.0, "loss_atc": 1.0, "loss_avtc": 1.0}
    caption = {"vtc": "video_caption", "atc": "audio_caption", "avtc": "avs_captions"}
    m = tiny(**on, loss_caption=caption).eval()
    video, fbank = media()
    fields = {"video_caption": text_batch(seed=1), "audio_caption": text_batch(seed=2),
              "avs_captions": text_batch(seed=3)}
    idx = torch.arange(4)
    multi = m((fbank, video), fields, idx, "audio_video")
    for loss, name in caption.items():
        single = m((fbank, video), fields[name], idx, "audio_video")
        torch.testing.assert_close(multi[f"loss_{loss}"], single[f"loss_{loss}"], msg=loss)
    assert not torch.allclose(multi["loss_vtc"], m((fbank, video), fields["audio_caption"], idx,
                                                   "audio_video")["loss_vtc"])
    calls = []
    hook = m.text_encoder.bert.embeddings.register_forward_hook(lambda *a: calls.append(1))
    m((fbank, video), {**fields, "audio_caption": fields["avs_captions"]}, idx, "audio_video")
    hook.remove()
    assert len(calls) == 3
    with pytest.raises(ConfigError, match="no caption field 'audio_caption'"):
        m((fbank, video), {"video_caption": fields["video_caption"], "avs_captions": fields["avs_captions"]}, idx,
          "audio_video")


@pytest.mark.parametrize("select", ["first", "random"])
def test_matching_and_mlm_can_run_on_part_of_the_batch(select):
    m = tiny(vtm_batch=2, mlm_batch=3, vtm_select=select).train()
    video, fbank = media()
    out = m((fbank, video), text_batch(), torch.arange(4), "audio_video", generator=torch.Generator().manual_seed(0))
    assert all(torch.isfinite(v) for v in out.values()) and "loss_avtm" in out and "loss_avmlm" in out


def test_uta_is_for_images_only_and_needs_its_teacher():
    m = tiny(loss_uta=1.0).train()
    video, fbank = media()
    out = m(video, text_batch(), torch.arange(4), "video", generator=torch.Generator().manual_seed(0))
    assert "loss_uta" not in out  # uta_image_only (released): never on videos
    with pytest.raises(ConfigError, match="teacher"):
        m(video[:, :, :1], text_batch(), torch.arange(4), "image", generator=torch.Generator().manual_seed(0))


def test_training_is_reproducible_with_a_generator():
    m = tiny().train()
    m.text_encoder.eval()
    m.audio_encoder.eval()  # no dropout: only the generator drives randomness
    video, fbank = media()
    a = m((fbank, video), text_batch(), torch.arange(4), "audio_video", generator=torch.Generator().manual_seed(5))
    b = m((fbank, video), text_batch(), torch.arange(4), "audio_video", generator=torch.Generator().manual_seed(5))
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=0)


def test_temperature_is_clamped():
    m = tiny().train()
    with torch.no_grad():
        m.temp.fill_(3.0)
    video, _ = media()
    m(video, text_batch(), torch.arange(4), "video")
    assert m.temp.item() == pytest.approx(0.5)


# --------------------------------------------------------------------------------------------------
# freezing and gradients
# --------------------------------------------------------------------------------------------------
def _grads_after(m, batch, media_type):
    m.train().zero_grad()
    out = m(batch, text_batch(), torch.arange(4), media_type, generator=torch.Generator().manual_seed(0))
    out["loss"].backward()
    return {n for n, p in m.named_parameters() if p.grad is not None}


def test_freeze_audio_keeps_beats_fixed_and_trains_the_rest():
    video, fbank = media()
    m = tiny()  # freeze_audio=True (released)
    assert not any(p.requires_grad for p in m.audio_encoder.parameters())
    got = _grads_after(m, (fbank, video), "audio_video")
    assert not any(n.startswith("audio_encoder.") for n in got)
    assert {"audio_proj.weight", "av_concat_audio_proj.0.weight", "av_fusion.weight", "atm_head.weight",
            "avtm_head.weight", "av_concat_vision_proj.1.weight"} <= got
    unfrozen = tiny(freeze_audio=False)
    got = _grads_after(unfrozen, (fbank, video), "audio_video")
    assert "audio_encoder.encoder.layers.0.self_attn.grep_a" in got and "audio_encoder.patch_embedding.weight" in got


@pytest.mark.parametrize("weights", [ALL_ON, RELEASED], ids=["all", "released"])
def test_every_trainable_parameter_gets_a_gradient_on_an_audio_video_batch(weights):
    """What the objective cannot train is frozen (distributed training rejects parameters without gradient);
    everything else receives one from an audio_video batch."""
    m = tiny(**weights, freeze_audio=False)
    video, fbank = media()
    got = _grads_after(m, (fbank, video), "audio_video")
    trainable = {n for n, p in m.named_parameters() if p.requires_grad}
    assert trainable - got == set()
    assert not any(n.startswith("vision_encoder.clip_decoder") for n in trainable)  # UTA off


def test_objective_freezing_follows_the_weights():
    m = tiny(**dict.fromkeys(ALL_ON, 0.0) | {"loss_vtc": 1.0, "loss_atc": 1.0})
    frozen = {n.split(".")[0] for n, p in m.named_parameters() if not p.requires_grad}
    assert {"itm_head", "av_concat_vision_proj", "av_concat_audio_proj", "audio_encoder"} <= frozen
    assert not m.text_encoder.bert.encoder.layer[2].crossattention.self.key.weight.requires_grad
    assert m.audio_proj.weight.requires_grad and m.temp.requires_grad


# --------------------------------------------------------------------------------------------------
# the embedding API
# --------------------------------------------------------------------------------------------------
def test_embedding_api_video_text_audio_and_matching():
    m = tiny().eval()
    video, fbank = media(B=2)
    text = text_batch(B=2)
    ve = m.encode_video(video)
    assert ve.tokens.shape == (2, 65, 96) and ve.pooled.shape == (2, 64) and ve.embeds.shape == (2, 24)
    ae = m.encode_audio(fbank)
    assert ae.tokens.shape == (2, 40, 64) and ae.embeds.shape == (2, 24)
    torch.testing.assert_close(ae.pooled, ae.tokens.mean(1))  # pooled before av_concat_audio_proj
    torch.testing.assert_close(ae.embeds.norm(dim=-1), torch.ones(2))
    te = m.forward_text(text["input_ids"], text["attention_mask"])
    itm = m.itm_logits(ve.tokens, te.hidden, te.attention_mask)
    atm = m.atm_logits(ae.tokens, te.hidden, te.attention_mask)
    avtm = m.avtm_logits(ae.tokens, ve.tokens, te.hidden, te.attention_mask)
    assert itm.shape == atm.shape == avtm.shape == (2, 2)
    # video ITM reads the av_concat-projected tokens, like the official encode_vision
    with torch.no_grad():
        h = m.text_encoder.bert(encoder_embeds=te.hidden, attention_mask=te.attention_mask,
                                encoder_hidden_states=m.av_concat_vision_proj(ve.tokens), mode="fusion")
    torch.testing.assert_close(itm, m.itm_head(h[:, 0]))
    fused = m.av_embeds(ae, ve)
    with torch.no_grad():
        ref = F.normalize(m.av_fusion(torch.cat([m.audio_proj(ae.pooled), m.vision_proj(ve.pooled)], -1)), dim=-1)
    torch.testing.assert_close(fused, ref)
    assert m.has_audio and m.has_itm and m.projection_dim == 24
    released = tiny(**RELEASED)
    with pytest.raises(TypeError, match="no atm_head"):
        released.atm_logits(ae.tokens, te.hidden, te.attention_mask)


def test_encode_audio_from_waveforms_is_the_official_fbank():
    from internvideo2.data.audio import beats_fbank, resample

    m = tiny().eval()
    g = torch.Generator().manual_seed(0)
    waves = [torch.rand(16000, generator=g) * 2 - 1, torch.rand(12000, generator=g) * 2 - 1]
    got = m.prepare_audio(waves, sample_rate=16000)
    assert got.shape == (2, 998, 64)
    torch.testing.assert_close(got[1], beats_fbank(waves[1])[0])
    emb = m.encode_audio(waves, sample_rate=16000)
    torch.testing.assert_close(emb.embeds, m.encode_audio(got).embeds)
    w8k = torch.rand(8000, generator=g) * 2 - 1
    torch.testing.assert_close(m.prepare_audio(w8k, sample_rate=8000)[0], beats_fbank(resample(w8k, 8000, 16000))[0])
    assert m.prepare_audio(got[0]).shape == (1, 998, 64)  # one fbank [T_f, F]
    with pytest.raises(ShapeError, match="fbank"):
        m.prepare_audio(torch.zeros(998))
    with pytest.raises(ShapeError, match="mono"):
        m.prepare_audio([torch.zeros(2, 16000)], sample_rate=16000)
    video_only = create_model("tiny", "stage2")
    with pytest.raises(TypeError, match="no audio tower"):
        video_only.encode_audio(got)


def test_create_model_and_save_load_round_trip(tmp_path):
    m = create_model("tiny", "stage2_av", loss_atc=1.0, loss_atm=1.0).eval()
    assert m.config.av_concat_dim == 64 and m.config.audio.encoder_embed_dim == 64 and m.atm_head is not None
    with torch.no_grad():
        for p in m.parameters():
            p.add_(0.02 * torch.randn_like(p))
    internvideo2.save_pretrained(m, tmp_path / "av")
    m2 = internvideo2.load_model(tmp_path / "av")
    assert type(m2) is InternVideo2Stage2AV and m2.config == m.config
    assert m2.text_encoder.cls.predictions.decoder.weight is m2.text_encoder.bert.embeddings.word_embeddings.weight
    video, fbank = media(B=2)
    text = text_batch(B=2, seed=4)
    with torch.no_grad():
        torch.testing.assert_close(m2.encode_video(video).embeds, m.encode_video(video).embeds, rtol=0, atol=0)
        a, b = m.encode_audio(fbank), m2.encode_audio(fbank)
        torch.testing.assert_close(b.embeds, a.embeds, rtol=0, atol=0)
        ta = m.forward_text(text["input_ids"], text["attention_mask"])
        tb = m2.forward_text(text["input_ids"], text["attention_mask"])
        torch.testing.assert_close(tb.embeds, ta.embeds, rtol=0, atol=0)
        torch.testing.assert_close(m2.atm_logits(b.tokens, tb.hidden, tb.attention_mask),
                                   m.atm_logits(a.tokens, ta.hidden, ta.attention_mask), rtol=0, atol=0)


# --------------------------------------------------------------------------------------------------
# official config
# --------------------------------------------------------------------------------------------------
def official_kwargs(**crit):
    """The fixture's constructor arguments in miniature (official names)."""
    return {
        "config": {"model": {
            "model_cls": "InternVideo2_Stage2_audiovisual",
            "audio_encoder": {"name": "beats", "d_model": 64},
            "vision_encoder": {"name": "pretrain_internvideo2_6b_patch14_224", "img_size": 56, "num_frames": 4,
                               "clip_embed_dim": 48, "clip_teacher_embed_dim": 32, "clip_teacher_final_dim": 48,
                               "use_fused_mlp": False, "tiny_embed_dim": 64, "tiny_depth": 2, "tiny_num_heads": 4},
            "text_encoder": {"name": "bert_large", "d_model": 48, "fusion_layer": 2},
            "multimodal": {"enable": True}, "contra_dim": 32, "av_concat_dim": 40, "temp": 0.07,
            "freeze_audio": True},
            "criterion": {"loss_weight": {"vtc": 1, "mlm": 1, "vtm": 1, "uta": 0, "avtc": 1, "avtm": 1, "avmlm": 1,
                                          **crit},
                          "loss_caption": {"vtc": "avs_captions", "avtm": "avs_captions"}, "vtm_hard_neg": True,
                          "mlm_masking_prob": 0.5, "uta_image_only": True}},
        "bert_config": {"hidden_size": 48, "intermediate_size": 96, "max_position_embeddings": 32,
                        "num_attention_heads": 4, "num_hidden_layers": 4, "vocab_size": 4096, "fusion_layer": 2,
                        "encoder_width": 40},
        "audio_encoder_cfg": dict(beats_config("beats_tiny").to_dict()),
    }


def test_official_config_maps_onto_ours():
    cfg = stage2_av_config_from_official(official_kwargs(atm=1))
    assert (cfg.embed_dim, cfg.av_concat_dim, cfg.text.encoder_width, cfg.text.fusion_layer) == (32, 40, 40, 2)
    assert cfg.vision.vision.embed_dim == 64 and cfg.vision.vision.act == "gelu"
    assert {n: cfg.weight(n) for n in AUDIO_LOSSES} == dict(atc=0, avc=0, avtc=1, atm=1, avtm=1, amlm=0, avmlm=1)
    assert cfg.freeze_audio and cfg.uta_image_only and cfg.loss_caption == {"vtc": "avs_captions",
                                                                           "avtm": "avs_captions"}
    assert cfg.audio == beats_config("beats_tiny")
    with pytest.raises(ConfigError, match="audio_encoder_cfg"):
        stage2_av_config_from_official({k: v for k, v in official_kwargs().items() if k != "audio_encoder_cfg"})
    bad = official_kwargs()
    bad["config"]["model"]["audio_encoder"]["d_model"] = 768
    with pytest.raises(ConfigError, match="audio_encoder.d_model"):
        stage2_av_config_from_official(bad)


def test_official_weights_route_through_the_public_loader(tmp_path):
    """A state dict of the official layout ({'module': sd}) loads strictly through official_class=."""
    from internvideo2.checkpoint import load_model

    kw = official_kwargs()
    ref = InternVideo2Stage2AV(stage2_av_config_from_official(kw)).eval()
    torch.save({"module": ref.state_dict()}, tmp_path / "av.pth")
    cls = "multi_modality/models/internvideo2_stage2_audiovisual.py :: InternVideo2_Stage2_audiovisual"
    m = load_model(tmp_path / "av.pth", official_class=cls, official_kwargs=kw)
    assert type(m) is InternVideo2Stage2AV and not m.load_report.dropped and m.atm_head is None
    _, fbank = media(B=1)
    torch.testing.assert_close(m.encode_audio(fbank).embeds, ref.encode_audio(fbank).embeds, rtol=0, atol=0)
    assert math.isclose(m.temp.item(), ref.temp.item())
