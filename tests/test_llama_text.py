"""The LLaMA text tower of InternVideo2-CLIP 1B/6B (official-spec §3.2, pitfalls P28 and P44): keys, the
old-peft <-> current-peft key maps, EOS pooling on the ``ids > 0`` mask, LoRA, merging and the tokenizer."""
from __future__ import annotations

import copy
import json

import pytest
import torch

pytest.importorskip("transformers")
pytest.importorskip("peft")

from internvideo2.checkpoint.io import load_state_dict_strict
from internvideo2.errors import ConfigError, ShapeError
from internvideo2.models.llama_text import (
    KeyMapError,
    LlamaTextConfig,
    LlamaTextEncoder,
    LlamaTextTokenizer,
    derived_buffer_keys,
    module_to_released_keys,
    released_to_module_keys,
)

TINY = dict(vocab_size=100, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
            num_key_value_heads=2, projection_dim=16, lora_r=4, lora_alpha=8)
IDS = torch.tensor([[1, 5, 6, 2, 0, 0, 0],    # right-padded: EOS (2) at position 3
                    [1, 5, 6, 7, 8, 9, 2],    # full
                    [1, 9, 2, 0, 0, 0, 0]])


@pytest.fixture(autouse=True)
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def tiny(seed: int = 0, **kw) -> LlamaTextEncoder:
    torch.manual_seed(seed)
    return LlamaTextEncoder(LlamaTextConfig(**{**TINY, **kw})).eval()


def randomize_lora(m: LlamaTextEncoder, seed: int = 1) -> None:
    """Non-zero LoRA B (peft initialises it at zero), so the adapters change the output."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in m.named_parameters():
            if ".lora_B." in name:
                p.copy_(torch.randn(p.shape, generator=g) * 0.5)


def layer_keys(i: int, lora: bool) -> set[str]:
    pre = f"transformer.layers.{i}."
    keys = {pre + s for s in ("self_attn.k_proj.weight", "self_attn.o_proj.weight", "mlp.gate_proj.weight",
                              "mlp.up_proj.weight", "mlp.down_proj.weight", "input_layernorm.weight",
                              "post_attention_layernorm.weight")}
    for proj in ("q_proj", "v_proj"):
        if lora:
            keys |= {f"{pre}self_attn.{proj}.base_layer.weight", f"{pre}self_attn.{proj}.lora_A.default.weight",
                     f"{pre}self_attn.{proj}.lora_B.default.weight"}
        else:
            keys.add(f"{pre}self_attn.{proj}.weight")
    return keys


# ------------------------------------------------------------------------------------------ keys
def test_module_keys_are_current_peft_names_and_only_lora_and_projection_train():
    m = tiny()
    expected = {"text_projection", "transformer.embed_tokens.weight", "transformer.norm.weight"}
    expected |= layer_keys(0, lora=True) | layer_keys(1, lora=True)
    assert set(m.state_dict()) == expected
    assert {n for n, p in m.named_parameters() if p.requires_grad} == \
        {"text_projection"} | {k for k in expected if ".lora_" in k}
    assert m.hidden_size == 32 and m.output_dim == 16 and m.has_lora
    assert m.transformer.layers[0].self_attn.q_proj.scaling["default"] == m.config.lora_scaling == 2.0
    assert m.text_projection.shape == (32, 16)
    plain = tiny(use_lora=False)
    assert set(plain.state_dict()) == {"text_projection", "transformer.embed_tokens.weight",
                                       "transformer.norm.weight"} | layer_keys(0, False) | layer_keys(1, False)


def test_default_config_is_the_released_tower():
    cfg = LlamaTextConfig()
    with torch.device("meta"):  # shapes only: the 6.7B parameters are never allocated
        m = LlamaTextEncoder(cfg)
    sd = m.state_dict()
    assert len(sd) == 1 + 1 + 32 * 13 + 1
    assert sd["transformer.embed_tokens.weight"].shape == (49954, 4096)
    assert sd["transformer.layers.31.self_attn.q_proj.base_layer.weight"].shape == (4096, 4096)
    assert sd["transformer.layers.31.self_attn.q_proj.lora_A.default.weight"].shape == (16, 4096)
    assert sd["transformer.layers.31.self_attn.v_proj.lora_B.default.weight"].shape == (4096, 16)
    assert sd["transformer.layers.0.mlp.gate_proj.weight"].shape == (11008, 4096)
    assert sd["transformer.norm.weight"].shape == (4096,)
    assert sd["text_projection"].shape == (4096, 768)
    assert (cfg.max_length, cfg.prefix, cfg.lora_dropout, cfg.lora_targets) == (80, "summarize:", 0.1,
                                                                                 ["q_proj", "v_proj"])


def test_released_keys_round_trip_and_load_strictly_with_identical_outputs():
    src = tiny(seed=0)
    randomize_lora(src)
    to_released = module_to_released_keys(src.state_dict())
    released = {to_released[k]: v.clone() for k, v in src.state_dict().items()}
    # the released layout: the plain LlamaModel keys under transformer. (old peft kept the base weight in
    # the LoRA Linear itself), plus the adapters and text_projection
    plain = {"transformer." + k for k in src.transformer.state_dict() if ".lora_" not in k}
    plain = {k.replace(".base_layer.", ".") for k in plain}
    assert set(released) == plain | {k for k in src.state_dict() if ".lora_" in k} | {"text_projection"}
    assert "transformer.layers.0.self_attn.q_proj.weight" in released
    assert "transformer.layers.1.self_attn.v_proj.lora_B.default.weight" in released
    assert not any("base_layer" in k for k in released)

    to_module = released_to_module_keys(released)
    assert {v: k for k, v in to_module.items()} == to_released  # exact inverse
    dst = tiny(seed=123)
    assert not torch.equal(dst.text_projection, src.text_projection)
    load_state_dict_strict(dst, {to_module[k]: v for k, v in released.items()}, source="released")
    with torch.no_grad():
        for a, b in zip(src.encode(IDS, IDS > 0), dst.encode(IDS, IDS > 0)):
            assert torch.equal(a, b)
    # the same dict with the prefix of the full CLIP model maps the same way
    full = released_to_module_keys("text_encoder." + k for k in released)
    assert full["text_encoder.transformer.layers.0.self_attn.q_proj.weight"] == \
        "text_encoder.transformer.layers.0.self_attn.q_proj.base_layer.weight"


def test_key_maps_are_generic_over_module_names():
    # a Mistral video LLM with LoRA on every projection and lm_head, old peft names
    mods = ["self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj", "mlp.gate_proj",
            "mlp.up_proj", "mlp.down_proj"]
    released = ["model.embed_tokens.weight", "model.norm.weight", "lm_head.weight",
                "lm_head.lora_A.default.weight", "lm_head.lora_B.default.weight",
                "model.layers.0.input_layernorm.weight"]
    for mod in mods:
        released += [f"model.layers.0.{mod}.weight", f"model.layers.0.{mod}.lora_A.default.weight",
                     f"model.layers.0.{mod}.lora_B.default.weight"]
    released += ["model.layers.0.self_attn.q_proj.bias"]  # a biased base moves too
    released += ["emb.weight", "emb.lora_embedding_A.default", "emb.lora_embedding_B.default"]
    m = released_to_module_keys(released)
    assert m["lm_head.weight"] == "lm_head.base_layer.weight"
    assert m["model.layers.0.mlp.down_proj.weight"] == "model.layers.0.mlp.down_proj.base_layer.weight"
    assert m["model.layers.0.self_attn.q_proj.bias"] == "model.layers.0.self_attn.q_proj.base_layer.bias"
    assert m["emb.weight"] == "emb.base_layer.weight"
    assert m["emb.lora_embedding_A.default"] == "emb.lora_embedding_A.default"
    assert m["model.norm.weight"] == "model.norm.weight"
    assert sum(".base_layer." in v for v in m.values()) == 10
    assert module_to_released_keys(m.values()) == {v: k for k, v in m.items()}
    assert released_to_module_keys(["a.weight", "b.bias"]) == {"a.weight": "a.weight", "b.bias": "b.bias"}


@pytest.mark.parametrize("keys, culprit", [
    (["q.lora_A.default.weight", "q.lora_B.default.weight"], "q.lora_A.default.weight"),  # no base weight
    (["q.weight", "q.lora_A.default.weight"], "q.lora_A.default.weight"),                  # half a pair
    (["q.weight", "q.lora_A.weight", "q.lora_B.weight"], "q.lora_A.weight"),               # peft < 0.3
    (["q.base_layer.weight", "q.lora_A.default.weight", "q.lora_B.default.weight"], "q.base_layer.weight"),
    (["layers.0.self_attn.rotary_emb.inv_freq"], "rotary_emb.inv_freq"),
])
def test_released_to_module_refuses_inconsistent_keys(keys, culprit):
    with pytest.raises(KeyMapError, match=culprit.replace(".", r"\.")) as e:
        released_to_module_keys(keys)
    assert isinstance(e.value, ValueError)


def test_derived_buffers_are_listed_for_dropping():
    keys = ["transformer.layers.0.self_attn.rotary_emb.inv_freq", "transformer.norm.weight"]
    assert derived_buffer_keys(keys) == keys[:1]
    assert released_to_module_keys(k for k in keys if k not in derived_buffer_keys(keys))


@pytest.mark.parametrize("keys, culprit", [
    (["q.base_layer.weight"], "q.base_layer.weight"),                                      # no adapters
    (["q.weight", "q.lora_A.default.weight", "q.lora_B.default.weight"], "q.lora_A"),      # old layout
    (["q.base_layer.base_layer.weight", "q.lora_A.default.weight", "q.lora_B.default.weight"], "nested"),
    (["q.weight", "q.base_layer.weight", "q.lora_A.default.weight", "q.lora_B.default.weight"], "maps to"),
])
def test_module_to_released_refuses_inconsistent_keys(keys, culprit):
    with pytest.raises(KeyMapError, match=culprit):
        module_to_released_keys(keys)


# ------------------------------------------------------------------------------------ forward
def test_eos_pooling_takes_the_last_non_pad_token_and_padding_changes_nothing():
    m = tiny()
    randomize_lora(m)
    with torch.no_grad():
        h, pooled, feats = m.encode(IDS, (IDS > 0).long())
        assert h.shape == (3, 7, 32) and pooled.shape == (3, 32) and feats.shape == (3, 16)
        for b, last in enumerate((3, 6, 2)):
            assert IDS[b, last] == 2
            assert torch.equal(pooled[b], h[b, last])
        torch.testing.assert_close(feats, pooled @ m.text_projection)
        # the right pads are invisible to the real tokens (causal + mask): row 0 alone, unpadded
        h0, p0, f0 = m.encode(IDS[:1, :4])
        torch.testing.assert_close(h0[0], h[0, :4], rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(f0[0], feats[0], rtol=1e-5, atol=1e-6)
        assert torch.equal(m(IDS, IDS > 0)[2], feats)  # forward = encode


def test_the_mask_is_ids_greater_than_zero_not_the_given_mask():
    m = tiny()
    ids = torch.tensor([[1, 5, 0, 6, 7, 2, 0, 0]])  # an unknown piece (id 0) inside the caption
    with torch.no_grad():
        h, pooled, _ = m.encode(ids, torch.ones_like(ids))
        assert torch.equal(h, m.encode(ids, (ids > 0).long())[0])
        assert torch.equal(h, m.encode(ids, None)[0])
        ref = m.transformer(input_ids=ids, attention_mask=ids > 0, use_cache=False).last_hidden_state
        assert torch.equal(h, ref)
        unmasked = m.transformer(input_ids=ids, attention_mask=torch.ones_like(ids), use_cache=False)
        assert not torch.allclose(h[0, 3:6], unmasked.last_hidden_state[0, 3:6])  # the interior 0 is masked
        # official quirk: the pooled position is count(ids > 0) - 1 = 4, not the EOS at 5
        assert torch.equal(pooled[0], h[0, 4])


def test_bad_inputs_are_shape_errors():
    m = tiny()
    with pytest.raises(ShapeError):
        m.encode(IDS.float())
    with pytest.raises(ShapeError):
        m.encode(IDS[0])
    with pytest.raises(ShapeError):
        m.encode(IDS, IDS[:, :3])
    with pytest.raises(ShapeError, match="lie in"):
        m.encode(IDS + 100)


def test_lora_starts_as_the_base_model_and_changes_it_once_b_is_nonzero():
    base = tiny(seed=0, use_lora=False)
    lora = tiny(seed=5)
    # the base weights in released names; the adapters stay at peft's init (B = 0)
    to_module = released_to_module_keys(module_to_released_keys(lora.state_dict()).values())
    sd = {to_module.get(k, k): v for k, v in base.state_dict().items()}
    load_state_dict_strict(lora, sd, allow_missing=["*.lora_A.*", "*.lora_B.*"])
    assert all(not p.detach().any() for n, p in lora.named_parameters() if ".lora_B." in n)
    assert all(p.detach().any() for n, p in lora.named_parameters() if ".lora_A." in n)
    with torch.no_grad():
        for a, b in zip(base.encode(IDS), lora.encode(IDS)):
            assert torch.equal(a, b)
        randomize_lora(lora)
        assert not torch.allclose(base.encode(IDS)[2], lora.encode(IDS)[2])


def test_lora_dropout_acts_in_training_only():
    m = tiny()
    randomize_lora(m)
    m.train()
    torch.manual_seed(0)
    a = m.encode(IDS)[2]
    torch.manual_seed(1)
    assert not torch.allclose(a, m.encode(IDS)[2])
    m.eval()
    assert torch.equal(m.encode(IDS)[2], m.encode(IDS)[2])


def test_merge_lora_keeps_the_outputs_and_gives_plain_llama_keys():
    m = tiny()
    randomize_lora(m)
    with torch.no_grad():
        before = m.encode(IDS)
        merged = copy.deepcopy(m)
        merged.merge_lora()
        after = merged.encode(IDS)
    for a, b in zip(before, after):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
    assert not merged.has_lora
    plain = {k.replace(".base_layer.", ".") for k in m.state_dict() if ".lora_" not in k}
    assert set(merged.state_dict()) == plain
    assert all(k == v for k, v in module_to_released_keys(merged.state_dict()).items())
    w = m.transformer.layers[0].self_attn.q_proj
    expected = w.base_layer.weight + (w.lora_B["default"].weight @ w.lora_A["default"].weight) * 2.0
    torch.testing.assert_close(merged.transformer.layers[0].self_attn.q_proj.weight, expected)
    merged.merge_lora()  # a no-op once merged


# ------------------------------------------------------------------------------------------ config
def test_config_validation():
    with pytest.raises(ConfigError, match="num_attention_heads"):
        LlamaTextConfig(**{**TINY, "num_attention_heads": 5})
    with pytest.raises(ConfigError, match="num_key_value_heads"):
        LlamaTextConfig(**{**TINY, "num_key_value_heads": 3})
    with pytest.raises(ConfigError, match="lora_dropout"):
        LlamaTextConfig(**{**TINY, "lora_dropout": 1.5})
    with pytest.raises(ConfigError, match="max_length"):
        LlamaTextConfig(**{**TINY, "max_length": 2})
    with pytest.raises(ConfigError, match="lora_targets"):
        LlamaTextConfig(**{**TINY, "lora_targets": []})
    with pytest.raises(ConfigError, match="lora_targets"):
        LlamaTextEncoder(LlamaTextConfig(**{**TINY, "lora_targets": ["no_such_proj"]}))


def test_llama_path_reads_the_architecture_from_a_local_config(tmp_path):
    arch = {"model_type": "llama", "vocab_size": 77, "hidden_size": 24, "intermediate_size": 40,
            "num_hidden_layers": 1, "num_attention_heads": 2, "rms_norm_eps": 1e-5, "pad_token_id": 0,
            "rope_theta": 5e5}
    (tmp_path / "config.json").write_text(json.dumps(arch))
    cfg = LlamaTextConfig(llama_path=str(tmp_path), projection_dim=8)
    assert (cfg.vocab_size, cfg.hidden_size, cfg.num_key_value_heads, cfg.rope_theta) == (77, 24, 2, 5e5)
    torch.manual_seed(0)
    m = LlamaTextEncoder(cfg)
    assert m.transformer.embed_tokens.weight.shape == (77, 24) and len(m.transformer.layers) == 1
    (tmp_path / "config.json").write_text(json.dumps({**arch, "rope_scaling": {"type": "linear", "factor": 2}}))
    with pytest.raises(ConfigError, match="llama_path"):
        LlamaTextConfig(llama_path=str(tmp_path))
    with pytest.raises(ConfigError, match="llama_path"):
        LlamaTextConfig(llama_path=str(tmp_path / "absent"))


# ---------------------------------------------------------------------------------------- tokenizer
def make_tokenizer(folder) -> str:
    """A tiny SentencePiece-style BPE (Metaspace, unk 0, BOS 1, EOS 2) saved as a HF LLaMA tokenizer."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tk = Tokenizer(models.BPE(unk_token="<unk>", fuse_unk=True))
    tk.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="first", split=False)
    tk.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="first", split=False)
    corpus = ["summarize: a red ball moves to the left", "two squares and a blue circle",
              "summarize:the cat sat on the mat"] * 5
    tk.train_from_iterator(corpus, trainers.BpeTrainer(vocab_size=90, special_tokens=["<unk>", "<s>", "</s>"],
                                                       show_progress=False))
    folder.mkdir(parents=True, exist_ok=True)
    tk.save(str(folder / "tokenizer.json"))
    (folder / "tokenizer_config.json").write_text(json.dumps(
        {"tokenizer_class": "LlamaTokenizerFast", "bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>",
         "add_bos_token": True, "add_eos_token": False}))
    return str(folder)


def test_tokenizer_prefix_bos_eos_and_padding_to_80(tmp_path):
    from transformers import AutoTokenizer

    folder = make_tokenizer(tmp_path / "tok")
    tok = LlamaTextTokenizer.from_config(LlamaTextConfig(**TINY, tokenizer=folder))
    texts = ["a red ball", "two squares and a blue circle " * 40, ""]
    out = tok(texts)
    ids, mask = out["input_ids"], out["attention_mask"]
    assert ids.shape == mask.shape == (3, 80) and ids.dtype == mask.dtype == torch.int64
    assert torch.equal(mask, (ids > 0).long())
    hf = AutoTokenizer.from_pretrained(folder, local_files_only=True)
    pieces = hf("summarize:a red ball", add_special_tokens=False)["input_ids"]  # prefix without a space
    n = len(pieces) + 2
    assert ids[0, :n].tolist() == [1, *pieces, 2] and ids[0, n:].eq(0).all()
    assert ids[1, 0] == 1 and ids[1, -1] == 2 and mask[1].all()  # truncated, the EOS kept
    assert ids[2, :2].tolist() == [1, hf("summarize:", add_special_tokens=False)["input_ids"][0]]
    # the official call (pad " ", add_eos_token, max_length 80, right padding as the slow tokenizer did)
    hf.pad_token, hf.add_bos_token, hf.add_eos_token, hf.padding_side = " ", True, True, "right"
    ref = hf(["summarize:" + t for t in texts], max_length=80, truncation=True, padding="max_length",
             return_tensors="pt")["input_ids"]
    assert torch.equal(ids, ref)
    # the ids drive the tower: the pooled token is each row's EOS
    m = tiny()
    with torch.no_grad():
        h, pooled, _ = m.encode(ids, mask)
    assert torch.equal(pooled[0], h[0, n - 1]) and torch.equal(pooled[1], h[1, 79])


def test_tokenizer_folder_errors_name_the_field(tmp_path):
    with pytest.raises(ConfigError, match="'tokenizer'.*not found"):
        LlamaTextTokenizer(tmp_path / "absent")
    with pytest.raises(ConfigError, match="'tokenizer'"):
        LlamaTextTokenizer.from_config(LlamaTextConfig(**TINY))  # tokenizer=None
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match="'tokenizer'"):
        LlamaTextTokenizer(tmp_path / "empty")
    with pytest.raises(ConfigError, match="max_length"):
        LlamaTextTokenizer(make_tokenizer(tmp_path / "tok"), max_length=2)
