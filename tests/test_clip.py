"""InternVideo2-CLIP (official-spec §4.3): freezing, temperature clamp, encoders, save/load, engine run."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import internvideo2
from internvideo2.errors import ConfigError
from internvideo2.models.clip import CLIPConfig, InternVideo2CLIP
from internvideo2.models.config import vision_config
from internvideo2.train.common import text_config


@pytest.fixture(autouse=True)
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def tiny_clip(**kw) -> InternVideo2CLIP:
    torch.manual_seed(0)
    vis = vision_config("tiny", num_frames=2, img_size=28)  # pooled width clip_embed_dim = 64
    text = text_config("bert_tiny", vis.embed_dim)
    kw.setdefault("embed_dim", kw.get("align_dim") or vis.clip_embed_dim)
    return InternVideo2CLIP(CLIPConfig(vision=vis, text=text, max_txt_len=16, **kw))


def trainable(model) -> set[str]:
    return {n for n, p in model.named_parameters() if p.requires_grad}


def _inputs(model, B=3):
    g = torch.Generator().manual_seed(1)
    video = torch.randn(B, 3, 2, 28, 28, generator=g)
    texts = ["a red ball moves to the left", "two squares", "a blue circle in the top right corner"]
    tok = model.tokenizer(texts[:B])
    return video, tok["input_ids"], tok["attention_mask"], torch.arange(B)


def test_default_freezing_trains_only_the_attention_pool_and_temp():
    m = tiny_clip()
    pool = {f"vision_encoder.clip_projector.{n}" for n, _ in
            m.vision_encoder.clip_projector.named_parameters()}
    assert pool and trainable(m) == pool | {"temp"}
    assert not m.text_projection.requires_grad
    m.eval()
    m(*_inputs(m))["loss"].backward()
    for name, p in m.named_parameters():
        assert (p.grad is not None) == (name in pool | {"temp"}), name


def test_small_models_also_train_vision_align():
    m = tiny_clip(align_dim=32)
    assert m.vision_align is not None
    align = {f"vision_align.{n}" for n, _ in m.vision_align.named_parameters()}
    pool = {n for n in trainable(m) if n.startswith("vision_encoder.")}
    assert trainable(m) == pool | align | {"temp"} and all(".clip_projector." in n for n in pool)
    assert m.forward_video(torch.randn(2, 3, 2, 28, 28)).embeds.shape == (2, 32)


def test_freezing_switches():
    assert trainable(tiny_clip(open_vision_clip_projector=False)) == {"temp"}
    m = tiny_clip(freeze_vision=False, freeze_text=False)
    assert trainable(m) == {n for n, _ in m.named_parameters()}


def test_embedding_width_must_match_the_video_embedding():
    with pytest.raises(ConfigError) as ei:
        tiny_clip(embed_dim=48)  # the pooled video feature is 64 wide
    assert ei.value.field == "embed_dim"


def test_temperature_is_clamped_to_temp_min_in_forward():
    m = tiny_clip(temp=0.01, temp_min=0.05).eval()
    video, ids, att, idx = _inputs(m)
    loss = m(video, ids, att, idx)["loss"]
    assert m.temp.item() == pytest.approx(0.05)
    # the loss is the symmetric InfoNCE at the clamped temperature
    with torch.no_grad():
        v = m.forward_video(video).embeds
        t = m.forward_text(ids, att).embeds
        s = v @ t.T / 0.05
        y = torch.arange(3)
        expected = (F.cross_entropy(s, y) + F.cross_entropy(s.T, y)) / 2
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)
    with torch.no_grad():
        m.temp.fill_(0.2)  # above the floor: left alone
    m(video, ids, att, idx)
    assert m.temp.item() == pytest.approx(0.2)


def test_encoders_give_unit_vectors():
    m = tiny_clip().eval()
    frames = torch.randint(0, 256, (2, 2, 40, 52, 3), dtype=torch.uint8)  # raw frames, any size
    emb = m.encode_video(frames)
    v = emb.embeds
    assert v.shape == (2, 64) and emb.pooled.shape == (2, 64) and emb.tokens.shape == (2, 1 + 2 * 4, 96)
    torch.testing.assert_close(v.norm(dim=-1), torch.ones(2))
    x = torch.randn(2, 3, 2, 28, 28)
    # embeds = normalize(pooled) for the 1B/6B layout (no vision_align); pooled = the attention pool
    torch.testing.assert_close(m.encode_video(x).embeds, F.normalize(m.vision_encoder(x), dim=-1))
    te = m.encode_texts(["a dog", "a red ball moves to the left", "x"])
    t = te.embeds
    assert t.shape == (3, 64) and te.pooled.shape == (3, te.hidden.shape[-1])
    torch.testing.assert_close(t, F.normalize(te.pooled @ m.text_projection, dim=-1))
    torch.testing.assert_close(t.norm(dim=-1), torch.ones(3))
    assert not torch.allclose(t[0], t[1])


def test_save_pretrained_load_model_round_trip(tmp_path):
    m = tiny_clip(align_dim=32, temp=0.03).eval()
    with torch.no_grad():
        for p in m.parameters():  # make every tensor distinctive (the pool's fresh init has zeros)
            p.add_(torch.randn_like(p) * 0.01)
    folder = internvideo2.save_pretrained(m, tmp_path / "clip")
    back = internvideo2.load_model(folder)
    assert isinstance(back, InternVideo2CLIP) and back.config == m.config
    sd, sd2 = m.state_dict(), back.state_dict()
    assert sd.keys() == sd2.keys() and all(torch.equal(sd[k], sd2[k]) for k in sd)
    assert trainable(back) == trainable(m)
    video, ids, att, idx = _inputs(m)
    torch.testing.assert_close(back.encode_video(video).embeds, m.encode_video(video).embeds, rtol=0, atol=0)
    torch.testing.assert_close(back.encode_texts(["a dog"]).embeds, m.encode_texts(["a dog"]).embeds, rtol=0, atol=0)


def test_clip_engine_run_on_the_synthetic_world(tmp_path):
    from internvideo2.train.config import config_from_dict
    from internvideo2.train.engine import Callback, Trainer

    class Snapshot(Callback):
        def on_train_start(self, trainer):
            self.before = {k: v.detach().clone() for k, v in trainer.unwrapped.state_dict().items()}

    cfg = config_from_dict({
        "output_dir": str(tmp_path / "run"),
        "task": {"name": "clip", "options": {"text_encoder": "bert_tiny", "text_pretrained": False,
                                             "max_txt_l": 16, "eval_num": 4}},
        "model": {"preset": "tiny", "overrides": {"drop_path_rate": 0.0}},
        "data": {"options": {"synthetic": True, "num_frames": 2, "image_res": 28, "synth_train": 8,
                             "synth_heldout": 4}},
        "optim": {"lr": 1e-2},
        "train": {"global_batch_size": 4, "max_steps": 2, "device": "cpu", "precision": "fp32"},
        "checkpoint": {"save_final": False, "export_model": True},
        "log": {"tensorboard": False, "plot": False, "progress": False},
    })
    snap = Snapshot()
    trainer = Trainer(cfg, callbacks=[snap])
    summary = trainer.fit()
    assert summary["steps"] == 2 and summary["skipped_steps"] == 0
    assert set(summary["eval"]) == {f"eval/{s}_{d}_r1" for s in ("sim", "dsl") for d in ("t2v", "v2t")}
    after = trainer.unwrapped.state_dict()
    changed = {k for k in after if not torch.equal(after[k], snap.before[k])}
    assert "temp" in changed and changed <= trainable(trainer.unwrapped)
    assert any(k.startswith("vision_encoder.clip_projector.") for k in changed)
    exported = internvideo2.load_model(summary["model"])  # the engine's export is a loadable CLIP model
    assert isinstance(exported, InternVideo2CLIP)
    assert torch.equal(exported.temp, trainer.unwrapped.temp.detach())


def test_clip_task_text_weights_from_a_path(tmp_path):
    """`text_pretrained` may name HF BERT weights (official text_encoder.pretrained); `true` is the shipped
    MiniLM, a missing path is a config error naming the field."""
    from internvideo2.models.tokenizer import default_vocab_path
    from internvideo2.train.config import config_from_dict
    from internvideo2.train.tasks import get_task

    def build(text_pretrained):
        cfg = config_from_dict({
            "output_dir": str(tmp_path / "run"),
            "task": {"name": "clip", "options": {"text_encoder": "minilm", "text_pretrained": text_pretrained}},
            "model": {"preset": "tiny"},
            "data": {"options": {"synthetic": True, "num_frames": 2, "image_res": 28}},
            "train": {"global_batch_size": 2, "max_steps": 1},
        })
        task = get_task("clip")
        task.validate(cfg)
        return task.build_model(cfg)

    key = "text_encoder.encoder.layer.0.attention.self.query.weight"
    a, b = build(str(default_vocab_path().parent)), build(True)
    assert torch.equal(a.state_dict()[key], b.state_dict()[key])
    assert not torch.equal(a.state_dict()[key], build(False).state_dict()[key])
    assert not any(p.requires_grad for p in a.text_encoder.parameters())  # still frozen after loading
    with pytest.raises(ConfigError) as ei:
        build(str(tmp_path / "no_such_bert"))
    assert ei.value.field == "task.options.text_pretrained"
    with pytest.raises(ConfigError) as ei:
        build(3)
    assert ei.value.field == "task.options.text_pretrained"
