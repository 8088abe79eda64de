"""Strict checkpoint loading: containers, key errors, unsafe pickles, corrupt files, our format,
detection of released files, kernel inflation."""
from __future__ import annotations

import json

import pytest
import torch

import internvideo2
from internvideo2.checkpoint import (
    detect_checkpoint,
    inflate_patch_kernel,
    load_model,
    load_state_dict_strict,
    save_pretrained,
)
from internvideo2.errors import CheckpointError
from internvideo2.models import create_model

CLS = "single_modality/models/internvideo2.py :: InternVideo2"
TINY_KW = dict(img_size=56, patch_size=14, embed_dim=96, depth=2, num_heads=6, mlp_ratio=4.0, attn_pool_num_heads=16,
               clip_embed_dim=64, num_frames=4, tubelet_size=1, num_classes=7, use_fused_mlp=False)


@pytest.fixture
def tiny():
    torch.manual_seed(0)
    m = create_model("tiny", "classifier", num_classes=7, act="gelu").eval()
    with torch.no_grad():
        for p in m.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return m


@pytest.mark.parametrize("container", ["bare", "module", "model", "state_dict"])
def test_containers_load_identically(tmp_path, tiny, container):
    sd = tiny.state_dict()
    obj = sd if container == "bare" else {container: sd, "epoch": 3}
    torch.save(obj, tmp_path / "c.pth")
    m = load_model(tmp_path / "c.pth", official_class=CLS, official_kwargs=TINY_KW)
    x = torch.randn(1, 3, 4, 56, 56)
    torch.testing.assert_close(m(x), tiny(x), rtol=0, atol=0)
    assert len(m.load_report.loaded) == len(sd)


def test_prefixes_backbone_and_vision_encoder(tmp_path, tiny):
    torch.save({"module": {"backbone." + k: v for k, v in tiny.state_dict().items()}}, tmp_path / "b.pth")
    load_model(tmp_path / "b.pth", official_class=CLS, official_kwargs=TINY_KW)
    vis = {k: v for k, v in tiny.state_dict().items() if not k.startswith(("head", "fc_norm"))}
    sd = {"vision_encoder." + k: v for k, v in vis.items()}
    sd.update({"text_encoder.bert.x": torch.zeros(3), "temp": torch.tensor(0.07)})
    torch.save({"module": sd}, tmp_path / "clip.pth")
    clip_cls = "multi_modality/models/backbones/internvideo2/internvideo2_clip_vision.py :: InternVideo2"
    with pytest.raises(CheckpointError, match="outside 'vision_encoder.'"):
        load_model(tmp_path / "clip.pth", official_class=clip_cls, official_kwargs=TINY_KW)
    m = load_model(tmp_path / "clip.pth", official_class=clip_cls, official_kwargs=TINY_KW,
                   drop=["text_encoder.*", "temp"])
    assert list(m.load_report.dropped) == ["text_encoder.bert.x", "temp"]


def test_missing_unexpected_misshaped_listed_together(tiny):
    sd = tiny.state_dict()
    del sd["blocks.0.ls1.gamma"]
    sd["blocks.9.attn.qkv.weight"] = torch.zeros(1)
    sd["head.weight"] = torch.zeros(5, 64)
    target = create_model("tiny", "classifier", num_classes=7)
    with pytest.raises(CheckpointError) as e:
        load_state_dict_strict(target, sd, source="x.pth")
    msg = str(e.value)
    assert "1 missing keys: blocks.0.ls1.gamma" in msg and "1 unexpected keys: blocks.9.attn.qkv.weight" in msg
    assert "head.weight: checkpoint (5, 64) vs model (7, 64)" in msg


def test_drop_and_allow_missing_are_explicit_and_checked(tiny):
    target = create_model("tiny", "classifier", num_classes=3)
    sd = tiny.state_dict()
    rep = load_state_dict_strict(target, sd, drop=["head.*"], allow_missing=["head.*"])
    assert (list(rep.dropped) == ["head.weight", "head.bias"]
            and list(rep.newly_initialised) == ["head.weight", "head.bias"])
    with pytest.raises(CheckpointError, match="matches no key"):
        load_state_dict_strict(target, sd, drop=["head.*", "decoder.*"], allow_missing=["head.*"])


def test_stage1_checkpoint_into_classifier_with_named_drops():
    s1 = create_model("tiny", "pretrain", clip_teacher_embed_dim=48, clip_return_layer=2, mae_return_layer=2,
                      mae_teacher_embed_dim=40)
    cls = create_model("tiny", "classifier", num_classes=5)
    rep = load_state_dict_strict(cls, s1.state_dict(),
                                 drop=["clip_decoder.*", "final_clip_decoder.*", "mae_decoder.*", "clip_pos_embed",
                                       "mae_pos_embed"],
                                 allow_missing=["fc_norm.*", "head.*"])
    assert torch.equal(cls.blocks[1].mlp.fc2.weight, s1.blocks[1].mlp.fc2.weight)
    assert len(rep.newly_initialised) == 4


def test_unsafe_pickle_refused(tmp_path):
    class Payload:  # anything beyond tensors/containers must not be unpickled
        def __reduce__(self):
            return (print, ("owned",))

    torch.save({"module": {"w": torch.zeros(1)}, "evil": Payload()}, tmp_path / "evil.pth")
    with pytest.raises(CheckpointError, match="refused to unpickle"):
        load_model(tmp_path / "evil.pth", official_class=CLS, official_kwargs=TINY_KW)


def test_corrupt_empty_missing_files(tmp_path, tiny):
    torch.save({"module": tiny.state_dict()}, tmp_path / "ok.pth")
    data = (tmp_path / "ok.pth").read_bytes()
    (tmp_path / "trunc.pth").write_bytes(data[: len(data) // 2])
    (tmp_path / "empty.pth").write_bytes(b"")
    (tmp_path / "junk.safetensors").write_bytes(b"\x00garbage" * 10)
    for name, pattern in [("trunc.pth", "corrupt or truncated"), ("empty.pth", "empty file"),
                          ("junk.safetensors", "safetensors"), ("nope.pth", "not found")]:
        with pytest.raises(CheckpointError, match=pattern):
            load_model(tmp_path / name, official_class=CLS, official_kwargs=TINY_KW)
    (tmp_path / "folder").mkdir()
    with pytest.raises(CheckpointError, match="config.json"):
        load_model(tmp_path / "folder")
    torch.save({"epoch": 3, "args": {"lr": 1}}, tmp_path / "nosd.pth")
    with pytest.raises(CheckpointError, match="no state dict"):
        load_model(tmp_path / "nosd.pth", official_class=CLS, official_kwargs=TINY_KW)


def test_save_pretrained_round_trip(tmp_path, tiny):
    out = save_pretrained(tiny, tmp_path / "m")
    meta = json.loads((out / "config.json").read_text())
    assert meta["model_type"] == "classifier" and meta["config"]["num_classes"] == 7
    m = internvideo2.load_model(out)
    x = torch.randn(2, 3, 4, 56, 56)
    torch.testing.assert_close(m(x), tiny(x), rtol=0, atol=0)
    assert not list(out.glob("*.tmp"))
    (out / "config.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="invalid JSON"):
        internvideo2.load_model(out)


def test_detect_released_style_file_and_change_frames(tmp_path):
    """A file shaped like ``S14_ft_k710_f8.pth`` loads with no arguments, and at 16 frames."""
    torch.manual_seed(0)
    ref = create_model("internvideo2-s14", "classifier", num_classes=710, depth=12).eval()
    torch.save({"module": ref.state_dict()}, tmp_path / "S14_ft_k710_f8.pth")
    det = detect_checkpoint(ref.state_dict())
    assert det.kind == "classifier" and det.config.num_classes == 710 and det.config.vision.num_frames == 8
    m = load_model(tmp_path / "S14_ft_k710_f8.pth")
    x = torch.randn(1, 3, 8, 224, 224)
    with torch.no_grad():
        torch.testing.assert_close(m(x), ref(x), rtol=0, atol=0)
    m16 = load_model(tmp_path / "S14_ft_k710_f8.pth", num_frames=16)
    assert m16.pos_embed.shape == (1, 1 + 16 * 256, 384)
    assert m16.load_report.resampled["pos_embed"] == ((8, 16, 16), (16, 16, 16))


def test_detect_stage2_file_drops_text_explicitly():
    torch.manual_seed(0)
    enc = create_model("internvideo2-s14", "pretrain", num_frames=4, clip_teacher_embed_dim=48,
                       sep_image_video_pos_embed=True)
    sd = {"vision_encoder." + k: v for k, v in enc.state_dict().items()}
    sd.update({"text_encoder.bert.embeddings.word_embeddings.weight": torch.zeros(10, 4),
               "vision_proj.weight": torch.zeros(2, 768), "temp": torch.tensor(0.07)})
    with pytest.raises(CheckpointError, match="incomplete BERT text tower"):
        detect_checkpoint(sd)  # a stage-2 file loads as the whole model: its text tower must be complete
    det = detect_checkpoint(sd, vision_only=True)
    assert det.kind == "stage2" and det.select_prefix == "vision_encoder."
    assert det.drop == ("temp", "text_encoder.*", "vision_proj.*")
    m = load_model(sd, vision_only=True)
    assert list(m.load_report.dropped)[:1] == ["text_encoder.bert.embeddings.word_embeddings.weight"]
    assert m.config.sep_image_video_pos_embed and m.cfg.num_frames == 4


def test_inflate_patch_kernel():
    w = torch.randn(4, 3, 1, 14, 14)
    c = inflate_patch_kernel(w, 3, center=True)
    assert torch.equal(c[:, :, 1], w[:, :, 0]) and c[:, :, 0].abs().sum() == 0
    r = inflate_patch_kernel(w, 2, center=False)
    torch.testing.assert_close(r.sum(2), w[:, :, 0])
    torch.testing.assert_close(inflate_patch_kernel(r, 1), w / 2)
    # a 2D (T=1) image checkpoint into a tubelet-2 model through the strict loader
    img = create_model("tiny", num_frames=1)
    vid = create_model("tiny", tubelet_size=2, num_frames=4)
    rep = load_state_dict_strict(vid, img.state_dict(), orig_num_frames=1)
    assert rep.inflated and rep.resampled["pos_embed"] == ((1, 4, 4), (2, 4, 4))


def test_never_random_weights_for_a_name():
    with pytest.raises(CheckpointError):
        internvideo2.load_model("internvideo2-1b")  # a preset name is not a checkpoint
