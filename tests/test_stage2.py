"""The stage-2 video-text model: training losses, masking, freezing, saving, text path."""
from __future__ import annotations

import pytest
import torch

import internvideo2
from internvideo2.errors import ConfigError
from internvideo2.models import PretrainConfig, vision_config
from internvideo2.models.stage2 import InternVideo2Stage2, Stage2Config
from internvideo2.models.text import BertConfig


def tiny_cfg(**kw) -> Stage2Config:
    vis = PretrainConfig(vision=vision_config("tiny"), clip_teacher_embed_dim=32, clip_teacher_final_dim=16)
    text = BertConfig(vocab_size=500, hidden_size=48, num_hidden_layers=3, num_attention_heads=4,
                      intermediate_size=96, max_position_embeddings=16, fusion_layer=2, encoder_width=96)
    return Stage2Config(vision=vis, text=text, embed_dim=24, max_txt_len=12, **kw)


def batch(B=4, L=10):
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(200, 500, (B, L), generator=g)
    ids[:, 0] = 101
    att = torch.ones(B, L, dtype=torch.long)
    att[0, 7:] = 0
    ids[0, 7:] = 0
    return torch.randn(B, 3, 4, 56, 56, generator=g), ids, att, torch.arange(B)


def test_training_losses_and_gradients():
    torch.manual_seed(0)
    m = InternVideo2Stage2(tiny_cfg()).train()
    video, ids, att, idx = batch()
    out = m(video, ids, att, idx, generator=torch.Generator().manual_seed(0))
    assert set(out) == {"loss_vtc", "loss_vtm", "loss_mlm", "loss"}
    assert all(torch.isfinite(v) for v in out.values())
    out["loss"].backward()
    assert m.itm_head.weight.grad is not None and m.vision_encoder.blocks[0].attn.qkv.weight.grad is not None
    assert m.text_encoder.bert.encoder.layer[2].crossattention.self.key.weight.grad is not None


def test_training_is_reproducible_with_a_generator():
    torch.manual_seed(0)
    m = InternVideo2Stage2(tiny_cfg()).train()
    m.text_encoder.eval()  # no dropout: only the generator drives randomness
    video, ids, att, idx = batch()
    a = m(video, ids, att, idx, generator=torch.Generator().manual_seed(5))
    b = m(video, ids, att, idx, generator=torch.Generator().manual_seed(5))
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=0)


def test_masking_ratios_video_and_image():
    m = InternVideo2Stage2(tiny_cfg()).train()
    g = torch.Generator().manual_seed(0)
    vmask = m.make_mask(torch.zeros(2, 3, 4, 56, 56), g)
    assert vmask.shape == (2, 65) and (vmask[:, 1:].sum(1) == int(0.8 * 64)).all()
    imask = m.make_mask(torch.zeros(2, 3, 1, 56, 56), g)
    assert imask.shape == (2, 17) and (imask[:, 1:].sum(1) == 8).all()
    video, ids, att, idx = batch()
    out = m(video[:, :, :1], ids, att, idx, generator=g)  # images train too
    assert torch.isfinite(out["loss"])


def test_temperature_is_clamped_in_training():
    m = InternVideo2Stage2(tiny_cfg()).train()
    with torch.no_grad():
        m.temp.fill_(3.0)
    m(*batch())
    assert m.temp.item() == pytest.approx(0.5)


def test_freezing_text_layers_and_vision():
    m = InternVideo2Stage2(tiny_cfg(freeze_text_layers=1, freeze_vision=True))
    bert = m.text_encoder.bert
    assert not bert.embeddings.word_embeddings.weight.requires_grad
    assert not any(p.requires_grad for p in bert.encoder.layer[0].parameters())
    assert all(p.requires_grad for p in bert.encoder.layer[1].parameters())
    assert not any(p.requires_grad for p in m.vision_encoder.parameters())
    with pytest.raises(ConfigError, match="freeze_text_layers"):
        tiny_cfg(freeze_text_layers=3)


def test_config_validation():
    with pytest.raises(ConfigError, match="encoder_width"):
        Stage2Config(vision=tiny_cfg().vision, text=BertConfig(hidden_size=48, num_attention_heads=4,
                                                               fusion_layer=2, num_hidden_layers=3,
                                                               encoder_width=64))


def test_save_and_load_round_trip_with_tied_weights(tmp_path):
    torch.manual_seed(0)
    m = InternVideo2Stage2(tiny_cfg()).eval()
    internvideo2.save_pretrained(m, tmp_path / "s2")
    m2 = internvideo2.load_model(tmp_path / "s2")
    assert m2.text_encoder.cls.predictions.decoder.weight is m2.text_encoder.bert.embeddings.word_embeddings.weight
    video, ids, att, _ = batch()
    with torch.no_grad():
        torch.testing.assert_close(m2.encode_video(video).embeds, m.encode_video(video).embeds, rtol=0, atol=0)
        a = m.forward_text(ids, att).embeds
        b = m2.forward_text(ids, att).embeds
    torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_uta_aligns_decoders_with_a_clip_teacher():
    """UTA (new_UTA_Loss): 2-2cos between the student's CLIP decoders at the visible tokens and the
    teacher's tokens, plus the final feature, weighted by uta_ratio; it trains the decoders."""
    from internvideo2.models import TeacherConfig, TeacherModel
    from internvideo2.objectives.losses import uta_loss, visible_targets

    torch.manual_seed(0)
    teacher = TeacherModel(TeacherConfig(vision=vision_config("internvl-c-6b", embed_dim=48, depth=2, num_heads=4,
                                                              img_size=56, clip_embed_dim=24, attn_pool_heads=4),
                                         return_layer=2)).eval()
    vis = PretrainConfig(vision=vision_config("tiny"), clip_teacher_embed_dim=48, clip_teacher_final_dim=24,
                         clip_return_layer=2)
    cfg = tiny_cfg(loss_uta=2.0, uta_ratio=(1.0, 0.5))
    cfg = Stage2Config(**{**cfg.__dict__, "vision": vis})
    m = InternVideo2Stage2(cfg).train()
    video, ids, att, idx = batch()
    with torch.no_grad():
        t = teacher(video)
    mask = m.make_mask(video, torch.Generator().manual_seed(3))
    out = m(video, ids, att, idx, generator=torch.Generator().manual_seed(0), mask=mask, teacher=t)
    v = m.vision_encoder(video, mask=mask)
    want = 2.0 * uta_loss(v.clip_align, visible_targets(t.features, mask), v.final_align, t.pooled, (1.0, 0.5))
    torch.testing.assert_close(out["loss_uta"], want)
    out["loss"].backward()
    assert m.vision_encoder.clip_decoder[0].head.weight.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="teacher"):
        m(video, ids, att, idx, mask=mask)


def test_misspelt_options_are_refused_naming_the_field():
    from internvideo2.train.config import load_config
    from internvideo2.train.tasks import get_task

    for bad, field in (("data.options.nmu_frames=4", "data.options.nmu_frames"),
                       ("task.options.vtm_bacth=8", "task.options.vtm_bacth")):
        cfg = load_config("configs/demo/stage2.yaml", [bad])
        with pytest.raises(ConfigError, match=field):
            get_task("stage2").validate(cfg)


def test_demo_stage2_is_bitwise_reproducible_in_one_process(tmp_path):
    """One seed, the same numbers: the demo's stage 2 gathers hard negatives with repeated indices, whose
    backward (``index_put_`` with accumulation) sums in thread order on CPU unless deterministic
    algorithms are on (``train.deterministic``, default on for CPU; measured: without it 96 of 176
    first-step gradients differ between two runs). The process-wide flag is given back after the run."""
    from pathlib import Path

    import torch.utils.deterministic

    from internvideo2.train.config import load_config
    from internvideo2.train.engine import Callback, Trainer

    class Stop(Exception):
        pass

    class FirstGradients(Callback):
        grads: dict = {}

        def on_after_backward(self, trainer):
            self.grads = {n: p.grad.clone() for n, p in trainer.unwrapped.named_parameters() if p.grad is not None}
            raise Stop

    recipe = Path(__file__).resolve().parents[1] / "configs" / "demo" / "stage2.yaml"
    before = (torch.are_deterministic_algorithms_enabled(), torch.utils.deterministic.fill_uninitialized_memory)
    runs = []
    for i in range(2):
        cb = FirstGradients()
        cfg = load_config(recipe, [f"output_dir={tmp_path / f'run{i}'}", f"data.options.synth_dir={tmp_path / 'synth'}",
                                   "data.options.synth_train=64", "data.options.synth_heldout=8",
                                   "model.pretrained=null", "train.eval_every_n_steps=0", "log.progress=false",
                                   "log.tensorboard=false", "log.plot=false"])
        with pytest.raises(Stop):
            Trainer(cfg, callbacks=[cb]).fit()
        assert (torch.are_deterministic_algorithms_enabled(),
                torch.utils.deterministic.fill_uninitialized_memory) == before
        runs.append(cb.grads)
    assert runs[0].keys() == runs[1].keys() and len(runs[0]) > 100
    differ = [n for n in runs[0] if not torch.equal(runs[0][n], runs[1][n])]
    assert not differ, f"{len(differ)} gradients differ between two runs of one seed, e.g. {differ[:3]}"
