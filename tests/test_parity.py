"""Parity with the official code: every fixture folder under the fixture root (``../shared/fixtures/
official`` or ``$INTERNVIDEO2_FIXTURES``) and under ``../shared/fixtures/next`` (``$INTERNVIDEO2_NEXT_FIXTURES``:
fixtures of models that landed after the first set, e.g. the audio-visual stage 2) is loaded through the public
loader and must reproduce EVERY stored output within the manifest's per-output tolerances. Further fixture sets
in the same format dropped into those roots are picked up and must pass too.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch
from conftest import FIXTURES, SHARED, fixture_dirs

import internvideo2
from internvideo2.checkpoint import load_model


class Capture:
    """Forward hooks that record tensors by name (they do not change the computation)."""

    def __init__(self):
        self.out: dict[str, torch.Tensor] = {}
        self.handles = []

    def input_of(self, module, name):
        self.handles.append(module.register_forward_pre_hook(lambda m, a: self.out.__setitem__(name, a[0])))

    def output_of(self, module, name):
        def hook(m, a, o):
            self.out[name] = o[0] if isinstance(o, tuple) else o
        self.handles.append(module.register_forward_hook(hook))

    def close(self):
        for h in self.handles:
            h.remove()


def _load(d: Path, man: dict):
    return load_model(d / "checkpoint.pth", official_class=man["official_class"],
                      official_kwargs=man["constructor_kwargs"])


def run_classifier(d, man, inp):
    model = _load(d, man)
    cap = Capture()
    cap.input_of(model.blocks[0], "tokens_embed")
    for i, blk in enumerate(model.blocks):
        cap.output_of(blk, f"block_out.{i}")
    cap.input_of(model.clip_projector, "tokens_final")
    cap.output_of(model.clip_projector, "pooled")
    with torch.no_grad():
        cap.out["logits"] = model(inp["video"])
    cap.close()
    cap.out["pos_embed_interpolated"] = model.pos_embed.detach()
    return cap.out


def run_stage1(d, man, inp):
    model = _load(d, man)
    cap = Capture()
    cap.input_of(model.blocks[0], "tokens_embed")
    for i, blk in enumerate(model.blocks):
        cap.output_of(blk, f"block_out.{i}")
    cap.output_of(model.clip_projector, "pooled")
    with torch.no_grad():
        out = model(inp["video"], inp["mask"])
    cap.close()
    cap.out.update(x_clip_align=out.clip_align, x_align=out.final_align, x_mae_align=out.mae_align)
    return cap.out


def run_stage2_vision(d, man, inp):
    model = _load(d, man)
    cap = Capture()
    cap.input_of(model.blocks[0], "tokens_embed")
    use_image = inp["video"].shape[2] == 1
    with torch.no_grad():
        out = model(inp["video"], None, use_image=use_image)
    cap.close()
    cap.out.update(x_vis=out.tokens, x_pool_vis=out.pooled, x_clip_align=out.clip_align, x_align=out.final_align)
    return cap.out


def run_clip_vision(d, man, inp):
    model = _load(d, man)
    res = {}
    for which in ("video", "image"):
        cap = Capture()
        cap.input_of(model.blocks[0], f"{which}_tokens_embed")
        cap.input_of(model.clip_projector, f"{which}_tokens_final")
        with torch.no_grad():
            res[f"{which}_embedding"] = model(inp[which], use_image=(which == "image"))
        cap.close()
        res.update(cap.out)
    return res


def run_stage2_full(d, man, inp):
    kwargs = {"config": man["constructor_kwargs"]["config"], "bert_config": man["bert_config"]}
    model = load_model(d / "checkpoint.pth", official_class=man["official_class"], official_kwargs=kwargs)
    import torch.nn.functional as F

    from internvideo2.objectives.losses import get_sim, vtc_loss

    video = inp["video"].permute(0, 2, 1, 3, 4)  # the official stage-2 input is [B, T, 3, H, W]
    ids, att = inp["input_ids"], inp["attention_mask"]
    with torch.no_grad():
        ve, te = model.forward_video(video), model.forward_text(ids, att)
        vt, vp, th, tc = ve.tokens, ve.pooled, te.hidden, te.pooled
        v, t = model.vision_proj(vp), model.text_proj(tc)
        s_v2t, s_t2v = get_sim(v, t, model.temp)
        B, N = vt.shape[0], ids.shape[0]
        fused = torch.stack([model.text_encoder.bert(encoder_embeds=th, attention_mask=att,
                                                     encoder_hidden_states=vt[i:i + 1].expand(N, -1, -1),
                                                     mode="fusion")[:, 0] for i in range(B)])
        logits = model.itm_head(fused)
        # the model's own ITM path and embeddings must agree with the explicit ones
        torch.testing.assert_close(model.itm_logits(vt[1:2].expand(N, -1, -1), th, att), logits[1])
        torch.testing.assert_close(ve.embeds, F.normalize(v, dim=-1))
        torch.testing.assert_close(te.embeds, F.normalize(t, dim=-1))
        out = dict(vision_tokens=vt, vision_pooled=vp, vision_pooled_normalized=F.normalize(vp, dim=-1),
                   vision_proj=v, vision_proj_normalized=F.normalize(v, dim=-1), text_tokens=th, text_cls=tc,
                   text_cls_normalized=F.normalize(tc, dim=-1), text_proj=t,
                   text_proj_normalized=F.normalize(t, dim=-1), sim_v2t=s_v2t, sim_t2v=s_t2v,
                   itm_fused_cls=fused, itm_logits=logits, itm_score=logits[..., 1],
                   vtc_loss=vtc_loss(v, t, inp["idx"], model.temp))
    return out


def run_stage2_av(d, man, inp):
    """The audio-visual stage 2: every dimension from the manifest's official kwargs (config, BERT JSON, the
    BEATs file's cfg); memories for ITM / ATM / AVTM are the av_concat projections, audio first for AVTM."""
    import torch.nn.functional as F

    from internvideo2.objectives.losses import get_sim, vtc_loss

    kwargs = {"config": man["constructor_kwargs"]["config"], "bert_config": man["bert_config"],
              "audio_encoder_cfg": man["audio_encoder_cfg"]}
    model = load_model(d / "checkpoint.pth", official_class=man["official_class"], official_kwargs=kwargs)
    cap = Capture()
    cap.input_of(model.av_concat_vision_proj, "vision_tokens_backbone")  # the first call: the video
    video = inp["video"].permute(0, 2, 1, 3, 4)  # the official stage-2 input is [B, T, 3, H, W]
    image = inp["image"].permute(0, 2, 1, 3, 4)
    ids, att, idx = inp["input_ids"], inp["attention_mask"], inp["idx"]
    with torch.no_grad():
        ve = model.forward_video(video)
        vt = model.fusion_memory(ve.tokens)
        cap.close()
        ie = model.forward_video(image)
        ae = model.forward_audio(inp["audio"])
        at = model.audio_memory(ae.tokens)
        te = model.forward_text(ids, att)
        v, i, a, t = (model.vision_proj(ve.pooled), model.vision_proj(ie.pooled), model.audio_proj(ae.pooled),
                      model.text_proj(te.pooled))
        av = model.fuse(a, v)
        B, N = vt.shape[0], ids.shape[0]
        bert = model.text_encoder.bert

        def fused(memory):
            return torch.stack([bert(encoder_embeds=te.hidden, attention_mask=att,
                                     encoder_hidden_states=memory[k:k + 1].expand(N, -1, -1), mode="fusion")[:, 0]
                                for k in range(B)])

        itm, atm, avtm = fused(vt), fused(at), fused(torch.cat([at, vt], dim=1))
        out = dict(cap.out, vision_tokens=vt, vision_pooled=ve.pooled, vision_proj=v,
                   vision_proj_normalized=F.normalize(v, dim=-1), image_tokens=model.fusion_memory(ie.tokens),
                   image_pooled=ie.pooled, image_proj=i, audio_features=ae.tokens, audio_tokens=at,
                   audio_pooled=ae.pooled, audio_proj=a, audio_proj_normalized=F.normalize(a, dim=-1), av_fused=av,
                   av_fused_normalized=F.normalize(av, dim=-1), text_tokens=te.hidden, text_cls=te.pooled,
                   text_proj=t, text_proj_normalized=F.normalize(t, dim=-1),
                   sim_v2t=get_sim(v, t, model.temp)[0], sim_a2t=get_sim(a, t, model.temp)[0],
                   sim_a2v=get_sim(a, v, model.temp)[0], sim_av2t=get_sim(av, t, model.temp)[0],
                   itm_fused_cls=itm, itm_logits=model.itm_head(itm), atm_fused_cls=atm,
                   atm_logits=model.atm_head(atm), avtm_fused_cls=avtm, avtm_logits=model.avtm_head(avtm),
                   vtc_loss=vtc_loss(v, t, idx, model.temp), atc_loss=vtc_loss(a, t, idx, model.temp),
                   avc_loss=vtc_loss(a, v, idx, model.temp), avtc_loss=vtc_loss(av, t, idx, model.temp))
        # the model's own matching paths and embeddings agree with the explicit ones
        rep = lambda x, k: x[k:k + 1].expand(N, *x.shape[1:])
        torch.testing.assert_close(model.itm_logits(rep(ve.tokens, 1), te.hidden, att), out["itm_logits"][1])
        torch.testing.assert_close(model.atm_logits(rep(ae.tokens, 2), te.hidden, att), out["atm_logits"][2])
        torch.testing.assert_close(model.avtm_logits(rep(ae.tokens, 0), rep(ve.tokens, 0), te.hidden, att),
                                   out["avtm_logits"][0])
        torch.testing.assert_close(model.av_embeds(ae, ve), F.normalize(av, dim=-1))
        torch.testing.assert_close(ae.embeds, F.normalize(a, dim=-1))
        torch.testing.assert_close(ve.embeds, F.normalize(v, dim=-1))
    return out


def run_beats(d, man, inp):
    from internvideo2.checkpoint.beats import load_beats_checkpoint
    from internvideo2.data.audio import beats_fbank

    model, _ = load_beats_checkpoint(d / "checkpoint.pth")
    model.eval()
    fb = [beats_fbank(inp[f"waveform_{i}"][0]) for i in range(2)]
    fbank = torch.stack([f for f, _ in fb])
    with torch.no_grad():
        feats = model(fbank)
    return dict(fbank=fbank, fbank_valid_frames=torch.tensor([n for _, n in fb]), features=feats,
                pooled=feats.mean(1))


# official class -> (runner, "module:function" of a runner owned by another part, or None)
RUNNERS = {
    "single_modality/models/internvideo2.py :: InternVideo2": run_classifier,
    "single_modality/models/internvideo2_pretrain.py :: PretrainInternVideo2": run_stage1,
    "multi_modality/models/backbones/internvideo2/internvideo2.py :: PretrainInternVideo2": run_stage2_vision,
    "multi_modality/models/backbones/internvideo2/internvideo2_clip_vision.py :: InternVideo2": run_clip_vision,
    "multi_modality/models/internvideo2_stage2_visual.py :: InternVideo2_Stage2_visual": run_stage2_full,
    "multi_modality/models/backbones/beats/BEATs.py :: BEATs": run_beats,
    "multi_modality/models/internvideo2_stage2_audiovisual.py :: InternVideo2_Stage2_audiovisual": run_stage2_av,
}
def _runner(official_class: str):
    if official_class not in RUNNERS:
        pytest.fail(f"no runner for official class {official_class!r}: add one")
    return RUNNERS[official_class]


DIRS = fixture_dirs()
NEXT = Path(os.environ.get("INTERNVIDEO2_NEXT_FIXTURES", SHARED / "fixtures" / "next"))
NEXT_DIRS = sorted(p for p in NEXT.iterdir() if (p / "manifest.json").is_file()) if NEXT.is_dir() else []


def check_fixture(fixture: Path) -> None:
    from safetensors.torch import load_file

    man = json.loads((fixture / "manifest.json").read_text())
    tensors = load_file(str(fixture / "tensors.safetensors"))
    inputs = {k[len("input."):]: v for k, v in tensors.items() if k.startswith("input.")}
    expected = {k[len("output."):]: v for k, v in tensors.items() if k.startswith("output.")}
    got = _runner(man["official_class"])(fixture, man, inputs)
    missing = sorted(set(expected) - set(got))
    assert not missing, f"{fixture.name}: outputs not produced: {missing}"
    tol = man["tolerances"]["per_output"]
    for name, exp in expected.items():
        t = tol.get(name, man["tolerances"]["recommended"])
        torch.testing.assert_close(got[name].to(exp.dtype), exp, rtol=t["rtol"], atol=t["atol"],
                                   msg=lambda m, n=name: f"{fixture.name}/{n}: {m}")


@pytest.mark.skipif(not DIRS, reason=f"no parity fixtures at {FIXTURES} (they live outside the repository)")
@pytest.mark.parametrize("fixture", DIRS, ids=[d.name for d in DIRS])
def test_fixture(fixture: Path):
    check_fixture(fixture)


@pytest.mark.skipif(not NEXT_DIRS, reason=f"no parity fixtures at {NEXT} (they live outside the repository)")
@pytest.mark.parametrize("fixture", NEXT_DIRS, ids=[d.name for d in NEXT_DIRS])
def test_next_fixture(fixture: Path):
    check_fixture(fixture)


def test_fixture_runner_covers_known_classes():
    """Every official class the loader knows has a parity runner here (and vice versa for vision)."""
    from internvideo2.checkpoint.official import OFFICIAL_CLASSES

    for cls in RUNNERS:
        assert cls in OFFICIAL_CLASSES or cls.endswith(":: BEATs")
    assert internvideo2.load_model is load_model
