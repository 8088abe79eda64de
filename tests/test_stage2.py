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


def test_cross_attention_init_copies_the_layers_self_attention():
    from internvideo2.models.text import BertModel, init_cross_attention_from_self

    torch.manual_seed(0)
    for width in (48, 96):  # memory as wide as the text (key/value copied) or not (they stay random)
        bert = BertModel(BertConfig(vocab_size=50, hidden_size=48, num_hidden_layers=3, num_attention_heads=4,
                                    intermediate_size=96, max_position_embeddings=16, fusion_layer=1,
                                    encoder_width=width))
        before = {k: v.clone() for k, v in bert.state_dict().items()}
        copied = init_cross_attention_from_self(bert)
        after = bert.state_dict()
        for i in (1, 2):
            for name in ("self.query", "output.dense", "output.LayerNorm") + (("self.key", "self.value")
                                                                                if width == 48 else ()):
                for t in ("weight", "bias"):
                    k = f"encoder.layer.{i}.crossattention.{name}.{t}"
                    assert k in copied
                    assert torch.equal(after[k], before[f"encoder.layer.{i}.attention.{name}.{t}"])
            if width != 48:
                assert torch.equal(after[f"encoder.layer.{i}.crossattention.self.key.weight"],
                                   before[f"encoder.layer.{i}.crossattention.self.key.weight"])
        assert len(copied) == 2 * 2 * (5 if width == 48 else 3)
        changed = {k for k in after if not torch.equal(after[k], before[k])}
        assert changed <= set(copied)  # nothing outside the cross-attention moved


def test_vtm_select_random_takes_a_random_subset_and_first_is_unchanged():
    torch.manual_seed(0)
    m = InternVideo2Stage2(tiny_cfg(vtm_batch=2, mlm_batch=2)).train()
    m.text_encoder.eval()
    video, ids, att, idx = batch(B=6)
    ref = m(video, ids, att, idx, generator=torch.Generator().manual_seed(3))
    m.config.vtm_select = "random"
    outs = [m(video, ids, att, idx, generator=torch.Generator().manual_seed(s))["loss_vtm"] for s in range(6)]
    assert all(torch.isfinite(o) for o in outs) and len({round(float(o.detach()), 6) for o in outs}) > 1
    a = m(video, ids, att, idx, generator=torch.Generator().manual_seed(3))
    b = m(video, ids, att, idx, generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(a["loss_vtm"], b["loss_vtm"], rtol=0, atol=0)
    # the VTC term does not depend on the subset
    torch.testing.assert_close(a["loss_vtc"], ref["loss_vtc"], rtol=0, atol=0)
    with pytest.raises(ConfigError, match="vtm_select"):
        tiny_cfg(vtm_select="last")
    with pytest.raises(ConfigError, match="itm_pool"):
        tiny_cfg(itm_pool="max")


def test_fusion_vision_norm_and_itm_pool_change_the_itm_path_only():
    torch.manual_seed(0)
    m = InternVideo2Stage2(tiny_cfg()).eval()
    video, ids, att, idx = batch()
    with torch.no_grad():
        tokens = m.forward_video(video).tokens
        h = m.forward_text(ids, att).hidden
        base = m.itm_logits(tokens, h, att)
        m.config.fusion_vision_norm = True
        normed = m.itm_logits(tokens, h, att)
        m.config.fusion_vision_norm, m.config.itm_pool = False, "mean"
        mean = m.itm_logits(tokens, h, att)
    assert not torch.allclose(base, normed) and not torch.allclose(base, mean)
    m.config.itm_pool = None  # the option is the same as normalising the tokens by hand
    with torch.no_grad():
        by_hand = m.itm_logits(torch.nn.functional.layer_norm(tokens, tokens.shape[-1:]), h, att)
    torch.testing.assert_close(normed, by_hand, rtol=0, atol=0)


def test_hard_negatives_can_be_switched_off_for_a_step():
    torch.manual_seed(0)
    m = InternVideo2Stage2(tiny_cfg()).train()
    m.text_encoder.eval()
    video, ids, att, idx = batch(B=6)
    forced = m(video, ids, att, idx, generator=torch.Generator().manual_seed(2), hard_negatives=False)
    m.config.vtm_hard_neg = False
    uniform = m(video, ids, att, idx, generator=torch.Generator().manual_seed(2))
    torch.testing.assert_close(forced["loss_vtm"], uniform["loss_vtm"], rtol=0, atol=0)


def test_demo_recipe_lr_scales_reach_only_the_tensors_they_name():
    """configs/demo/stage2.yaml: the pretrained MiniLM tensors (layers 4-5 included) train at 0.05x, the new
    cross-attention tensors and the MLM head's own tensors at 1x; the MLM decoder weight is the (frozen) word
    embedding table."""
    from pathlib import Path

    from internvideo2.train.config import load_config
    from internvideo2.train.optim import build_param_groups
    from internvideo2.train.tasks import get_task

    root = Path(__file__).resolve().parents[1]
    cfg = load_config(root / "configs" / "demo" / "stage2.yaml", ["model.pretrained=null", "model.preset=tiny"])
    model = get_task(cfg.task.name).build_model(cfg)
    groups = build_param_groups(model.named_parameters(), 0.05, lr_scales=cfg.optim.lr_scales)
    scale = {n: g["lr_scale"] for g in groups for n in g["names"]}
    text = {n: s for n, s in scale.items() if n.startswith("text_encoder.")}
    full = {n for n, s in text.items() if s == 1.0}
    assert full and all(".crossattention." in n or n.startswith("text_encoder.cls.") for n in full), sorted(full)
    assert sum(".crossattention." in n for n in full) == 20  # 2 layers x (q, k, v, out, LN) x (w, b)
    slow = {n for n, s in text.items() if s == 0.05}
    assert any(".layer.4.attention." in n for n in slow) and any(".layer.5.output." in n for n in slow)
    assert set(text) == full | slow
    assert "text_encoder.cls.predictions.decoder.weight" not in scale  # tied to the frozen word embeddings
    assert not model.text_encoder.bert.embeddings.word_embeddings.weight.requires_grad
