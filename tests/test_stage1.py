"""Stage 1: the toy teachers, their official checkpoint layouts, exact caches, and the stage-1/distill tasks."""
from __future__ import annotations

import pytest
import torch

from internvideo2.checkpoint import load_model
from internvideo2.errors import CheckpointError, ConfigError
from internvideo2.models import TeacherConfig, TeacherModel, vision_config
from internvideo2.models.teachers import VideoMAETeacher, VideoMAETeacherConfig

VMAE = "single_modality/models/videomae.py :: VisionTransformer"
INTERNVL = "single_modality/models/internvl_clip_vision.py :: InternVL_CLIP"


def tiny_vmae(**kw):
    return TeacherModel(TeacherConfig(vision=vision_config("videomae-g14", embed_dim=32, depth=2, num_heads=4,
                                                           img_size=28, num_frames=4, **kw), kind="videomae",
                                      return_layer=2))


def test_videomae_official_layout_loads_strictly_with_named_drops(tmp_path):
    """``vit_g_hybrid_1200e_pre.pth`` style: {'model': {encoder.*, decoder.*, encoder_to_decoder, mask_token}}."""
    torch.manual_seed(0)
    ref = tiny_vmae().eval()
    sd = {"encoder." + k: v for k, v in ref.state_dict().items()}
    sd.update({"decoder.blocks.0.mlp.fc1.weight": torch.zeros(4, 4), "encoder_to_decoder.weight": torch.zeros(4, 32),
               "mask_token": torch.zeros(1, 1, 4)})
    torch.save({"model": sd}, tmp_path / "vmae.pth")
    kw = dict(img_size=28, all_frames=4, tubelet_size=2, embed_dim=32, depth=2, num_heads=4, mae_return_layer=2)
    with pytest.raises(CheckpointError, match="unexpected keys"):
        load_model(tmp_path / "vmae.pth", official_class=VMAE, official_kwargs=kw)
    m = load_model(tmp_path / "vmae.pth", official_class=VMAE, official_kwargs=kw,
                   drop=["decoder.*", "encoder_to_decoder.*", "mask_token"])
    x = torch.randn(2, 3, 4, 28, 28)
    torch.testing.assert_close(m(x).features, ref(x).features, rtol=0, atol=0)
    # the released file is 16 frames / tubelet 2 with a 2-frame kernel; a tubelet-1 model pools it in time
    one = load_model(tmp_path / "vmae.pth", official_class=VMAE, official_kwargs={**kw, "tubelet_size": 1},
                     drop=["decoder.*", "encoder_to_decoder.*", "mask_token"])
    assert one.patch_embed.proj.weight.shape[2] == 1 and one.load_report.inflated


def test_internvl_official_layout_with_text_keys_and_resized_positions(tmp_path):
    """``internvl_c_13b_224px.pth`` style: {'module': vision keys + the text tower's keys}; a checkpoint
    made at another resolution has its per-frame table resized bicubically (official process_checkpoint)."""
    torch.manual_seed(0)
    base = dict(embed_dim=64, depth=2, num_heads=4, clip_embed_dim=32, attn_pool_num_heads=4)
    ref = TeacherModel(TeacherConfig(vision=vision_config("internvl-c-6b", **{**base, "attn_pool_num_heads": 4}
                                                          if False else dict(embed_dim=64, depth=2, num_heads=4,
                                                                             clip_embed_dim=32, attn_pool_heads=4,
                                                                             img_size=28)),
                                     return_layer=2)).eval()
    sd = dict(ref.state_dict())
    sd.update({"transformer.layers.0.weight": torch.zeros(3), "text_projection": torch.zeros(4, 4)})
    torch.save({"module": sd}, tmp_path / "internvl.pth")
    kw = dict(img_size=28, clip_return_layer=2, **base)
    m = load_model(tmp_path / "internvl.pth", official_class=INTERNVL, official_kwargs=kw,
                   drop=["transformer.*", "text_projection"])
    x = torch.randn(1, 3, 2, 28, 28)
    torch.testing.assert_close(m(x).features, ref(x).features, rtol=0, atol=0)
    big = load_model(tmp_path / "internvl.pth", official_class=INTERNVL, official_kwargs={**kw, "img_size": 56},
                     drop=["transformer.*", "text_projection"])
    assert big.load_report.resampled["pos_embed"] == ((1, 2, 2), (1, 4, 4))
    assert not big.pos_embed.requires_grad  # the InternVL-C table is frozen


def test_videomae_teacher_learns_to_reconstruct():
    torch.manual_seed(0)
    enc = TeacherConfig(vision=vision_config("videomae-g14", embed_dim=48, depth=2, num_heads=4, img_size=28,
                                             num_frames=4), kind="videomae")
    # raw pixel targets: per-patch normalisation turns the flat backgrounds of synthetic clips into noise
    model = VideoMAETeacher(VideoMAETeacherConfig(encoder=enc, decoder_dim=32, decoder_depth=1, mask_ratio=0.75,
                                                  norm_pix_loss=False))
    import numpy as np

    from internvideo2.data.synth import SynthConfig, SynthWorld

    world = SynthWorld(seed=0, split="train", cfg=SynthConfig(num_frames=4, size=28, audio=False))
    clips = np.stack([world.render(i).frames for i in range(4)])  # structured content: reconstructible
    video = (torch.from_numpy(clips).permute(0, 4, 1, 2, 3).float() / 255 - 0.45) / 0.25
    assert model.patchify(video).shape == (4, 2 * 2 * 2, 2 * 14 * 14 * 3)
    from internvideo2.objectives.masking import tube_mask

    mask = tube_mask(4, 2, 4, 0.75, torch.Generator().manual_seed(0), with_cls=False)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    first = None
    for _ in range(40):
        loss = model(video, mask)["loss"]
        first = first if first is not None else loss.item()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.5 * first


def test_videomae_motion_weight_counts_changing_pixels_more():
    from internvideo2.objectives.masking import tube_mask

    enc = TeacherConfig(vision=vision_config("videomae-g14", embed_dim=48, depth=2, num_heads=4, img_size=28,
                                             num_frames=4), kind="videomae")
    torch.manual_seed(0)
    plain = VideoMAETeacher(VideoMAETeacherConfig(encoder=enc, decoder_dim=32, decoder_depth=1, mask_ratio=0.75,
                                                  norm_pix_loss=False))
    weighted = VideoMAETeacher(VideoMAETeacherConfig(encoder=enc, decoder_dim=32, decoder_depth=1, mask_ratio=0.75,
                                                     norm_pix_loss=False, motion_weight=3.0))
    weighted.load_state_dict(plain.state_dict())
    mask = tube_mask(2, 2, 4, 0.5, torch.Generator().manual_seed(0), with_cls=False)
    static = torch.randn(2, 3, 1, 28, 28).expand(2, 3, 4, 28, 28).contiguous()
    # nothing changes over the clip: every weight is 1, the plain loss
    torch.testing.assert_close(weighted(static, mask)["loss"], plain(static, mask)["loss"])
    # a bright square moving right over a static background: recompute the weighted loss by hand
    video = static.clone()
    for t in range(4):
        video[:, :, t, 8:14, 4 + 5 * t:10 + 5 * t] += 3.0
    preds = []
    hook = plain.decoder_pred.register_forward_hook(lambda mod, inp, out: preds.append(out))
    base = plain(video, mask)["loss"]
    hook.remove()
    pred, target = preds[0], plain.patchify(video)[mask].view(2, -1, 2 * 14 * 14 * 3)
    d = (video - video.mean(2, keepdim=True)).abs()
    d = d / d.mean(dim=(1, 2, 3, 4), keepdim=True)
    w = 1 + 3.0 * plain.patchify(d)[mask].view(2, -1, 2 * 14 * 14 * 3)
    expected = ((pred - target) ** 2 * w).sum() / w.sum()
    got = weighted(video, mask)["loss"]
    torch.testing.assert_close(got, expected)
    assert not torch.allclose(got, base)
    with pytest.raises(ConfigError, match="motion_weight"):
        VideoMAETeacherConfig(encoder=enc, motion_weight=-1.0)


def _cfg(tmp_path, name, options, data=None, model=None, steps=4):
    from internvideo2.train.config import config_from_dict

    return config_from_dict({
        "output_dir": str(tmp_path / name), "task": {"name": name, "options": options},
        "model": model or {"preset": "tiny", "overrides": {"embed_dim": 64, "num_heads": 4, "attn_pool_heads": 4,
                                                             "clip_embed_dim": 32, "init_values": 0.1}},
        "data": {"options": {"corpus": "synth", "synth_dir": str(tmp_path / "synth"), "synth_train": 16,
                             "synth_heldout": 4, "num_frames": 8, "image_res": 28, "augment": "none",
                             "sample_type": "middle", **(data or {})}},
        "optim": {"lr": 1e-3}, "schedule": {"name": "constant"},
        "train": {"global_batch_size": 8, "max_steps": steps, "seed": 0, "precision": "fp32", "device": "cpu"},
        "log": {"every_n_steps": 1, "progress": False, "tensorboard": False, "plot": False},
        "checkpoint": {"every_n_steps": 0, "save_final": False, "export_model": False}})


def _losses(out) -> list[float]:
    import json

    return [json.loads(x)["loss"] for x in (out / "metrics.jsonl").read_text().splitlines() if '"loss"' in x]


def test_stage1_teacher_cache_is_exact(tmp_path):
    """Cached teacher outputs give exactly the losses of recomputing them (4 steps = 2 epochs of 16 clips)."""
    from internvideo2.train.engine import Trainer

    runs = {}
    for cache in (False, True):
        cfg = _cfg(tmp_path / str(cache), "stage1", {"random_teachers": True, "cache_teacher_outputs": cache})
        Trainer(cfg).fit()
        runs[cache] = _losses(tmp_path / str(cache) / "stage1")
    assert len(runs[True]) == 4 and runs[True] == runs[False]
    with pytest.raises(ConfigError, match="cache_teacher_outputs"):
        from internvideo2.train.tasks import get_task

        get_task("stage1").validate(_cfg(tmp_path, "stage1", {"random_teachers": True, "cache_teacher_outputs": True},
                                         data={"augment": "official"}))


def test_clip_teacher_frozen_text_cache_is_exact(tmp_path):
    """A frozen text tower runs in eval mode, so each caption's feature is fixed: the task computes it once
    and the cached features equal a fresh computation."""
    from internvideo2.train.engine import Trainer
    from internvideo2.train.tasks import get_task

    opts = {"text_encoder": "bert_tiny", "text_pretrained": False, "freeze_text": True, "embed_dim": 16}
    cfg = _cfg(tmp_path, "clip_teacher", opts, data={"num_frames": 4},
               model={"overrides": {"embed_dim": 32, "depth": 1, "num_heads": 2, "attn_pool_heads": 2,
                                    "clip_embed_dim": 16}}, steps=3)
    task = get_task("clip_teacher")
    trainer = Trainer(cfg, task=task)
    trainer.fit()
    net = trainer.unwrapped
    net.train()
    assert not net.text_encoder.training and net.vision.training
    cache = task._text_cache
    assert len(cache) >= 8
    captions = sorted(cache)[:8]
    tok = task.tokenizer(captions, padding="longest")
    with torch.no_grad():
        fresh = net.text_pooled(tok["input_ids"], tok["attention_mask"])
    torch.testing.assert_close(torch.stack([cache[c] for c in captions]), fresh, rtol=1e-6, atol=1e-6)


def test_distill_from_a_saved_stage2_model(tmp_path):
    from internvideo2 import save_pretrained
    from internvideo2.models import PretrainConfig
    from internvideo2.models.stage2 import InternVideo2Stage2, Stage2Config
    from internvideo2.models.text import BertConfig
    from internvideo2.train.engine import Trainer

    vis = PretrainConfig(vision=vision_config("tiny", img_size=28, num_frames=8), clip_teacher_embed_dim=32,
                         clip_teacher_final_dim=0)
    text = BertConfig(vocab_size=300, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                      intermediate_size=64, fusion_layer=1, encoder_width=96)
    save_pretrained(InternVideo2Stage2(Stage2Config(vision=vis, text=text, embed_dim=16)), tmp_path / "s2")
    cfg = _cfg(tmp_path, "distill", {"teacher": str(tmp_path / "s2"), "teacher_return_layer": 2,
                                     "teacher_return_interval": 1},
               model={"preset": "tiny", "overrides": {"embed_dim": 32, "depth": 2, "num_heads": 2,
                                                      "attn_pool_heads": 2, "clip_embed_dim": 16}}, steps=2)
    summary = Trainer(cfg).fit()
    assert summary["steps"] == 2 and summary["final"]["loss"] == summary["final"]["loss"]


def test_mae_teacher_mask_types(tmp_path):
    """``mask_type`` tube (official) and random both train; the two masks give different losses; anything
    else is refused naming the field."""
    from internvideo2.train.engine import Trainer
    from internvideo2.train.tasks import get_task

    model = {"preset": "videomae-g14", "overrides": {"embed_dim": 32, "depth": 1, "num_heads": 2}}
    losses = {}
    for kind in ("tube", "random"):
        opts = {"mask_type": kind, "mask_ratio": 0.75, "decoder_dim": 16, "decoder_depth": 1, "decoder_heads": 2}
        cfg = _cfg(tmp_path / kind, "mae_teacher", opts, model=model, steps=2)
        Trainer(cfg).fit()
        losses[kind] = _losses(tmp_path / kind / "mae_teacher")
        assert len(losses[kind]) == 2 and all(x == x for x in losses[kind])
    assert losses["tube"] != losses["random"]
    with pytest.raises(ConfigError, match="task.options.mask_type"):
        get_task("mae_teacher").validate(_cfg(tmp_path, "mae_teacher", {"mask_type": "block"}, model=model))
