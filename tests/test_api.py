"""The one embedding API (``internvideo2.models.api``): every registered model family answers
``encode_video`` / ``encode_texts`` with the same documented result types, and ``vision_backbone`` is the
one way to its vision core."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import internvideo2
from internvideo2.models import (
    ClassifierConfig,
    EmbeddingModel,
    PretrainConfig,
    TeacherConfig,
    TextEmbedding,
    VideoEmbedding,
    VisionTransformer,
    model_types,
    vision_config,
)
from internvideo2.models.registry import build_model
from internvideo2.models.text import BertConfig

TEXT = BertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                  intermediate_size=64, max_position_embeddings=32, fusion_layer=1, encoder_width=96)
VIS = vision_config("tiny", num_frames=4, img_size=28)  # 96 wide, 2 x 2 patches per frame, pool 64 wide


def _configs() -> dict[str, object]:
    """A tiny config of every registered model type."""
    from internvideo2.models.clip import CLIPConfig
    from internvideo2.models.stage2 import Stage2Config
    from internvideo2.models.stage2_av import Stage2AVConfig, beats_config
    from internvideo2.models.teachers import ImageTextTeacherConfig, VideoMAETeacherConfig

    frame = vision_config("internvl-c-6b", embed_dim=48, depth=2, num_heads=4, img_size=28, clip_embed_dim=32,
                          attn_pool_heads=4)
    mae = vision_config("videomae-g14", embed_dim=48, depth=2, num_heads=4, img_size=28, num_frames=4)
    return {
        "vision": VIS,
        "classifier": ClassifierConfig(vision=VIS, num_classes=5),
        "pretrain": PretrainConfig(vision=VIS, clip_teacher_embed_dim=32, clip_teacher_final_dim=16),
        "teacher": TeacherConfig(vision=VIS, kind="internvideo2", return_layer=1),
        "stage2": Stage2Config(vision=PretrainConfig(vision=VIS, clip_teacher_embed_dim=32, clip_teacher_final_dim=0),
                               text=TEXT, embed_dim=24, max_txt_len=12),
        "stage2_av": Stage2AVConfig(vision=PretrainConfig(vision=VIS, clip_teacher_embed_dim=32,
                                                          clip_teacher_final_dim=0),
                                    text=BertConfig(**{**TEXT.__dict__, "encoder_width": 40}),
                                    audio=beats_config("beats_tiny"), embed_dim=24, av_concat_dim=40, max_txt_len=12),
        "clip": CLIPConfig(vision=VIS, text=TEXT, embed_dim=64, max_txt_len=12),
        "image_text_teacher": ImageTextTeacherConfig(
            vision=TeacherConfig(vision=frame, kind="internvl_clip", return_layer=1),
            text=BertConfig(**{**TEXT.__dict__, "encoder_width": 48}), embed_dim=16, max_txt_len=12),
        "videomae_teacher": VideoMAETeacherConfig(encoder=TeacherConfig(vision=mae, kind="videomae", return_layer=1),
                                                  decoder_dim=32, decoder_depth=1),
    }


CONFIGS = _configs()


def test_every_registered_family_is_covered():
    assert sorted(CONFIGS) == model_types()


@pytest.mark.parametrize("model_type", sorted(CONFIGS))
def test_one_api_for_every_family(model_type):
    torch.manual_seed(0)
    model = build_model(model_type, CONFIGS[model_type]).eval()
    assert isinstance(model, EmbeddingModel) and model.model_type == model_type
    bb = model.vision_backbone
    assert isinstance(bb, VisionTransformer)
    cfg = bb.cfg
    frames = torch.randint(0, 256, (2, cfg.num_frames, 40, 36, 3), dtype=torch.uint8)  # raw frames, any size
    emb = model.encode_video(frames)
    assert isinstance(emb, VideoEmbedding)
    T, H, W = emb.grid
    n_tokens = bb.num_extra + T * H * W
    assert emb.tokens.shape == (2, n_tokens, cfg.embed_dim)
    width = cfg.clip_embed_dim if bb.clip_projector is not None else cfg.embed_dim
    assert emb.pooled.shape == (2, width)
    assert not emb.pooled.requires_grad  # inference API: no autograd
    if model.projection_dim is None:
        assert emb.embeds is None and not model.has_text
    else:
        assert emb.embeds.shape == (2, model.projection_dim)
        torch.testing.assert_close(emb.embeds.norm(dim=-1), torch.ones(2))
    # the inference entry point is the differentiable path on the prepared input (under no_grad both take the
    # same fused CPU kernels, so they agree bit for bit); with autograd it is differentiable
    x = bb.prepare_video(frames)
    with torch.no_grad():
        again = model.forward_video(x)
    torch.testing.assert_close(again.tokens, emb.tokens, rtol=0, atol=0)
    torch.testing.assert_close(again.pooled, emb.pooled, rtol=0, atol=0)
    assert model.forward_video(x).pooled.requires_grad
    if model.has_text:
        txt = model.encode_texts(["a red star moves to the left", "a small blue circle"])
        assert isinstance(txt, TextEmbedding)
        assert txt.embeds.shape == (2, model.projection_dim) and txt.pooled.shape[0] == 2
        torch.testing.assert_close(txt.embeds.norm(dim=-1), torch.ones(2))
        assert txt.hidden.shape[:2] == txt.attention_mask.shape
    else:
        with pytest.raises(TypeError, match="no text tower"):
            model.encode_texts(["x"])
    if model.has_itm:
        txt = model.encode_texts(["a red star moves to the left", "a small blue circle"])
        assert model.itm_logits(emb.tokens, txt.hidden, txt.attention_mask).shape == (2, 2)
    else:
        with pytest.raises(TypeError, match="no ITM head"):
            model.itm_logits(emb.tokens, emb.tokens, torch.ones(2, n_tokens, dtype=torch.long))


def test_stage2_embeds_are_its_projected_features():
    torch.manual_seed(0)
    m = build_model("stage2", CONFIGS["stage2"]).eval()
    frames = torch.randint(0, 256, (4, 28, 28, 3), dtype=torch.uint8)
    emb = m.encode_video(frames)
    torch.testing.assert_close(emb.embeds, F.normalize(m.vision_proj(emb.pooled), dim=-1))
    txt = m.encode_texts(["a dog"])
    torch.testing.assert_close(txt.embeds, F.normalize(m.text_proj(txt.pooled), dim=-1))


def test_save_and_load_keep_the_api(tmp_path):
    torch.manual_seed(0)
    m = build_model("clip", CONFIGS["clip"]).eval()
    back = internvideo2.load_model(internvideo2.save_pretrained(m, tmp_path / "m"))
    x = torch.randn(1, 3, 4, 28, 28)
    assert torch.equal(back.encode_video(x).embeds, m.encode_video(x).embeds)
