"""The `clip` training task with the official text towers at test scale: the LLaMA tower (1B/6B recipe)
loaded from a file in InternVL-C's layout, and the MobileCLIP tower (S/B/L recipe) from a file in
mobileclip_blt.pt's layout; the frozen tower's weights are the file's, only the attention pool,
``vision_align`` and the temperature move, and the trained model saves and reloads."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
from test_llama_text import make_tokenizer

from internvideo2.checkpoint import load_model
from internvideo2.errors import ConfigError
from internvideo2.train.config import load_config
from internvideo2.train.engine import Trainer

OFFICIAL = Path(__file__).parents[1] / "configs" / "official"
TINY_LLAMA = dict(vocab_size=90, hidden_size=128, intermediate_size=64, num_hidden_layers=2, num_attention_heads=1,
                  num_key_value_heads=1, projection_dim=64)
TINY_MC = dict(vocab_size=514, dim=64, num_heads=1, num_layers=2, context_length=16, projection_dim=32)


def llama_file(tmp_path) -> Path:
    """InternVL-C's layout: the LLaMA (no LoRA) as ``transformer.*`` + ``text_projection``, beside its vision
    model (dropped when the text tower loads)."""
    from internvideo2.models.llama_text import LlamaTextConfig, LlamaTextEncoder

    torch.manual_seed(3)
    tower = LlamaTextEncoder(LlamaTextConfig(**TINY_LLAMA, use_lora=False))
    sd = {k: v for k, v in tower.state_dict().items()} | {"vision_model.embeddings.weight": torch.zeros(3)}
    torch.save({"module": sd}, tmp_path / "internvl_c_tiny.pth")
    return tmp_path / "internvl_c_tiny.pth"


def mobileclip_file(tmp_path) -> Path:
    from internvideo2.models.mobileclip_text import MobileCLIPTextConfig, MobileCLIPTextEncoder

    torch.manual_seed(4)
    tower = MobileCLIPTextEncoder(MobileCLIPTextConfig(**TINY_MC))
    sd = {"text_encoder." + k: v for k, v in tower.state_dict().items()}
    sd |= {"image_encoder.stem.weight": torch.zeros(2), "logit_scale": torch.tensor(4.6)}
    torch.save({"state_dict": sd}, tmp_path / "mobileclip_tiny.pt")
    return tmp_path / "mobileclip_tiny.pt"


def train(tmp_path, recipe: str, options: dict) -> tuple[dict, Trainer]:
    over = [f"output_dir={tmp_path / 'run'}", "log.progress=false"] + [f"task.options.{k}={v}" for k, v in
                                                                         options.items()]
    cfg = load_config(OFFICIAL / recipe, over, smoke=True)
    trainer = Trainer(cfg)
    return trainer.fit(), trainer


@pytest.mark.parametrize("tower", ["llama", "mobileclip"])
def test_clip_task_trains_with_the_official_tower(tmp_path, tower):
    from internvideo2.checkpoint.io import read_checkpoint, unwrap_state_dict

    if tower == "llama":
        ckpt = llama_file(tmp_path)
        opts = {"text_tower": "llama", "text_checkpoint": ckpt, "tokenizer": make_tokenizer(tmp_path / "tok"),
                "text_config": "{" + ", ".join(f"{k}: {v}" for k, v in TINY_LLAMA.items()) + "}", "align_dim": 0}
        recipe = "clip_1b.yaml"
    else:
        ckpt = mobileclip_file(tmp_path)
        opts = {"text_checkpoint": ckpt, "tokenizer": "bytes"}
        recipe = "clip_b14.yaml"
    summary, trainer = train(tmp_path, recipe, opts)
    assert summary["steps"] > 0 and summary["skipped_steps"] == 0 and summary["eval"]
    dropped = trainer.task.text_report.dropped
    assert ("vision_model.embeddings.weight" if tower == "llama" else "logit_scale") in dropped
    model = load_model(tmp_path / "run" / "model")  # our format: the trained model reloads
    assert model.config.text_tower == tower
    # the frozen tower holds the file's weights after training
    src, _ = unwrap_state_dict(read_checkpoint(ckpt), str(ckpt))
    if tower == "llama":
        got = model.text_encoder.transformer.layers[0].self_attn.k_proj.weight
        want = src["transformer.layers.0.self_attn.k_proj.weight"]
        assert all(".lora_" in k for k in trainer.task.text_report.newly_initialised)
    else:
        got, want = model.text_encoder.projection_layer, src["text_encoder.projection_layer"]
    torch.testing.assert_close(got, want, rtol=0, atol=0)


def test_clip_task_names_a_missing_tokenizer(tmp_path):
    with pytest.raises(ConfigError, match="task.options.tokenizer.*no such file"):
        train(tmp_path, "clip_b14.yaml", {"tokenizer": tmp_path / "nope.txt.gz"})
    with pytest.raises(ConfigError, match="task.options.tokenizer.*mobileclip tower only"):
        train(tmp_path, "clip_1b.yaml", {"text_tower": "llama", "tokenizer": "bytes"})
