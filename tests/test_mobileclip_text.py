"""MobileCLIP text tower (official-spec section 3.3) and the CLIP BPE tokenizer (open_clip ``SimpleTokenizer``)
on tiny configs and a tiny hand-made vocabulary. The released vocabulary is used only when available."""
from __future__ import annotations

import gzip
import importlib
import json
import os
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from internvideo2.errors import ConfigError, ShapeError
from internvideo2.models import clip_tokenizer as ct
from internvideo2.models.clip_tokenizer import CLIPTokenizer, bytes_to_unicode, fix_text_lite, load_vocab
from internvideo2.models.mobileclip_text import LayerNormFP32, MobileCLIPTextConfig, MobileCLIPTextEncoder


@pytest.fixture(autouse=True)
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


# ------------------------------------------------------------------------------------------------------------
# tiny vocabulary: 512 byte symbols + 6 merges + 2 specials = 520 ids (sot 518, eot 519)
# ------------------------------------------------------------------------------------------------------------
MERGES = ["t h", "th e</w>", "c a", "ca t</w>", "s a", "sa t</w>"]
THE, CAT, SAT = 513, 515, 517
SOT_ID, EOT_ID = 518, 519
BANG = 256  # "!</w>": "!" is the first byte symbol


def write_gz(folder: Path, merges=MERGES, header="bpe_simple_vocab_16e6.txt#version: 0.2") -> Path:
    path = folder / "bpe.txt.gz"
    path.write_bytes(gzip.compress(("\n".join([header, *merges]) + "\n").encode()))
    return path


def write_hf(folder: Path, gz: Path, drop: str | None = None) -> Path:
    """A Hugging Face style folder (vocab.json with <|startoftext|>/<|endoftext|>, merges.txt) of the same ids."""
    enc, _, _, _, _ = load_vocab(gz)
    names = {ct.SOT: ct.HF_SOT, ct.EOT: ct.HF_EOT}
    vocab = {names.get(k, k): v for k, v in enc.items() if names.get(k, k) != drop}
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(MERGES) + "\n")
    return folder


@pytest.fixture
def tok(tmp_path) -> CLIPTokenizer:
    return CLIPTokenizer(write_gz(tmp_path), context_length=8)


def tiny_cfg(**kw) -> MobileCLIPTextConfig:
    base = dict(vocab_size=520, context_length=8, dim=32, ffn_multiplier=4.0, num_heads=4, num_layers=2,
                projection_dim=24)
    return MobileCLIPTextConfig(**{**base, **kw})


def tiny_encoder(seed: int = 0, **kw) -> MobileCLIPTextEncoder:
    torch.manual_seed(seed)
    m = MobileCLIPTextEncoder(tiny_cfg(**kw)).eval()
    with torch.no_grad():  # non-trivial LayerNorm affine terms, so that fp32-vs-bf16 paths differ
        for p in m.parameters():
            if p.dim() == 1:
                p.add_(torch.randn_like(p) * 0.1)
    return m


# ------------------------------------------------------------------------------------------------------------
# encoder: structure
# ------------------------------------------------------------------------------------------------------------
def expected_keys(num_layers: int) -> list[str]:
    # a module's own Parameters come before its children's: the released order starts with projection_layer
    keys = ["projection_layer", "embedding_layer.weight", "positional_embedding.pos_embed.pos_embed"]
    for i in range(num_layers):
        p = f"transformer.{i}."
        keys += [p + f"pre_norm_mha.0.{t}" for t in ("weight", "bias")]
        keys += [p + f"pre_norm_mha.1.{n}.{t}" for n in ("qkv_proj", "out_proj") for t in ("weight", "bias")]
        keys += [p + f"pre_norm_ffn.{j}.{t}" for j in (0, 1, 4) for t in ("weight", "bias")]
    return keys + ["final_layer_norm.weight", "final_layer_norm.bias"]


def test_state_dict_keys_and_shapes_are_the_released_ones():
    m = tiny_encoder()
    sd = m.state_dict()
    assert list(sd) == expected_keys(2)
    assert not list(m.buffers())
    d, f, p = 32, 128, 24
    shapes = {"embedding_layer.weight": (520, d), "positional_embedding.pos_embed.pos_embed": (1, 1, 8, d),
              "transformer.1.pre_norm_mha.1.qkv_proj.weight": (3 * d, d), "transformer.1.pre_norm_mha.1.qkv_proj.bias":
              (3 * d,), "transformer.1.pre_norm_mha.1.out_proj.weight": (d, d), "transformer.0.pre_norm_ffn.1.weight":
              (f, d), "transformer.0.pre_norm_ffn.4.weight": (d, f), "projection_layer": (d, p)}
    for k, shape in shapes.items():
        assert tuple(sd[k].shape) == shape, k
    assert m.hidden_size == d and m.output_dim == p


def test_default_config_is_mobileclip_b_with_63_43_m_parameters():
    cfg = MobileCLIPTextConfig()
    assert (cfg.vocab_size, cfg.context_length, cfg.dim, cfg.ffn_dim, cfg.num_heads, cfg.num_layers,
            cfg.projection_dim, cfg.causal_masking, cfg.layer_norm_fp32) == (49408, 77, 512, 2048, 8, 12, 512,
                                                                              True, True)
    with torch.device("meta"):  # no memory, no init cost
        m = MobileCLIPTextEncoder(cfg)
    assert list(m.state_dict()) == expected_keys(12)
    assert sum(p.numel() for p in m.parameters()) == 63_428_096


def test_ffn_width_rounds_up_to_a_multiple_of_16_and_config_is_validated():
    assert tiny_cfg(ffn_multiplier=2.3).ffn_dim == 80  # 32 * 2.3 = 73.6 -> 80
    assert tiny_cfg(ffn_multiplier=4).ffn_dim == 128
    with pytest.raises(ConfigError) as e:
        tiny_cfg(num_heads=5)
    assert e.value.field == "num_heads"
    with pytest.raises(ConfigError) as e:
        tiny_cfg(dim=0)
    assert e.value.field == "dim"
    with pytest.raises(ConfigError) as e:
        tiny_cfg(causal_masking="yes")
    assert e.value.field == "causal_masking"


def test_state_dict_round_trip():
    a, b = tiny_encoder(0), tiny_encoder(1)
    ids = torch.tensor([[SOT_ID, 5, 9, EOT_ID, 0, 0, 0, 0]])
    assert not torch.equal(a(ids, ids > 0)[2], b(ids, ids > 0)[2])
    b.load_state_dict(a.state_dict(), strict=True)
    for x, y in zip(a(ids, ids > 0), b(ids, ids > 0)):
        assert torch.equal(x, y)


# ------------------------------------------------------------------------------------------------------------
# encoder: semantics
# ------------------------------------------------------------------------------------------------------------
def test_eot_pooling_at_argmax_and_projection(tok):
    m = tiny_encoder()
    t = tok(["the cat", "the cat sat!", ""])
    hidden, pooled, feats = m.encode(t["input_ids"], t["attention_mask"])
    assert hidden.shape == (3, 8, 32) and pooled.shape == (3, 32) and feats.shape == (3, 24)
    eot = [3, 5, 1]
    assert [int(r.argmax()) for r in t["input_ids"]] == eot  # EOT is the largest id, pads are 0
    for i, j in enumerate(eot):
        assert torch.equal(pooled[i], hidden[i, j])
    torch.testing.assert_close(feats, pooled @ m.projection_layer)
    assert torch.equal(m(t["input_ids"], t["attention_mask"])[2], feats)  # forward == encode


def test_embed_scale_is_computed_but_not_applied():
    m = tiny_encoder()
    assert m.embed_scale == 32 ** -0.5
    seen = {}
    m.transformer[0].register_forward_pre_hook(lambda mod, args: seen.setdefault("x", args[0]))
    ids = torch.tensor([[SOT_ID, 3, 4, EOT_ID, 0, 0, 0, 0]])
    m.encode(ids, ids > 0)
    torch.testing.assert_close(seen["x"], m.embedding_layer(ids) + m.positional_embedding.pos_embed.pos_embed[0])


def test_causal_mask_later_tokens_do_not_change_earlier_states():
    m = tiny_encoder()
    ids = torch.tensor([[SOT_ID, 10, 11, 12, 13, EOT_ID, 0, 0]])
    changed = ids.clone()
    changed[0, 3] = 99
    h1, h2 = m.encode(ids, ids > 0)[0], m.encode(changed, changed > 0)[0]
    assert torch.equal(h1[:, :3], h2[:, :3])
    assert not torch.allclose(h1[:, 3:], h2[:, 3:])


def test_causal_model_ignores_the_padding_mask_as_the_official_one():
    m = tiny_encoder()
    ids = torch.tensor([[SOT_ID, 10, 11, EOT_ID, 0, 0, 0, 0]])
    a = m.encode(ids, (ids > 0).long())
    b = m.encode(ids, torch.ones_like(ids))
    for x, y in zip(a, b):
        assert torch.equal(x, y)


def test_non_causal_model_masks_padding():
    m = tiny_encoder(causal_masking=False)
    ids = torch.tensor([[SOT_ID, 10, 11, EOT_ID, 0, 0, 0, 0]])
    other = ids.clone()
    other[0, 5:] = 7  # different ids at padded positions
    mask = torch.tensor([[1, 1, 1, 1, 0, 0, 0, 0]])
    h1, h2 = m.encode(ids, mask)[0], m.encode(other, mask)[0]
    torch.testing.assert_close(h1[:, :4], h2[:, :4])
    h3 = m.encode(ids, torch.ones_like(ids))[0]  # attending to the pads changes the states
    assert not torch.allclose(h1[:, :4], h3[:, :4])


def _lerp_reference(table: torch.Tensor, n: int) -> torch.Tensor:
    """Linear resampling with half-pixel centres (bilinear, align_corners=False) written out: [C, D] -> [n, D]."""
    c = table.shape[0]
    out = []
    for i in range(n):
        src = min(max((i + 0.5) * c / n - 0.5, 0.0), c - 1)
        lo = int(src)
        hi = min(lo + 1, c - 1)
        w = src - lo
        out.append(table[lo] * (1 - w) + table[hi] * w)
    return torch.stack(out)


@pytest.mark.parametrize("length", [5, 8, 13])
def test_position_table_is_bilinearly_resampled_for_other_lengths(length):
    m = tiny_encoder()
    table = m.positional_embedding.pos_embed.pos_embed[0, 0].detach()  # [8, D]
    got = m.positional_embedding(length).detach()
    assert got.shape == (1, length, 32)
    if length == 8:
        assert torch.equal(got[0], table)
    else:
        torch.testing.assert_close(got[0], _lerp_reference(table, length), rtol=1e-6, atol=1e-6)
    ids = torch.randint(1, 500, (2, length))
    ids[:, -1] = EOT_ID
    hidden, pooled, feats = m.encode(ids, torch.ones_like(ids))
    assert hidden.shape == (2, length, 32) and torch.equal(pooled, hidden[:, -1])


def test_layer_norm_runs_in_fp32_under_bf16():
    ln = LayerNormFP32(32)
    with torch.no_grad():
        ln.weight.normal_()
        ln.bias.normal_()
    ln = ln.to(torch.bfloat16)
    x = (torch.randn(3, 5, 32) * 50 + 300).to(torch.bfloat16)  # a large mean: bf16 statistics would be off
    y = ln(x)
    assert y.dtype == torch.bfloat16
    ref = F.layer_norm(x.float(), (32,), ln.weight.float(), ln.bias.float(), 1e-5).to(torch.bfloat16)
    assert torch.equal(y, ref)
    assert type(MobileCLIPTextEncoder(tiny_cfg(layer_norm_fp32=False)).final_layer_norm) is torch.nn.LayerNorm


def test_bf16_tower_runs_and_keeps_its_dtype(tok):
    m = tiny_encoder()
    t = tok(["the cat sat", "cat"])
    f32 = m.encode(t["input_ids"], t["attention_mask"])[2]
    h, pooled, feats = m.to(torch.bfloat16).encode(t["input_ids"], t["attention_mask"])
    assert h.dtype == pooled.dtype == feats.dtype == torch.bfloat16
    torch.testing.assert_close(feats.float(), f32, rtol=0.05, atol=0.05)


def test_bad_inputs_raise_shape_errors():
    m = tiny_encoder()
    ids = torch.tensor([[SOT_ID, 3, EOT_ID]])
    for bad_ids, bad_mask in [(ids.float(), None), (ids[0], None), (torch.tensor([[1, 520]]), None),
                              (torch.tensor([[-1, 5]]), None), (ids, torch.ones(1, 4)),
                              (torch.zeros(0, 3, dtype=torch.long), None)]:
        with pytest.raises(ShapeError):
            m.encode(bad_ids, bad_mask if bad_mask is not None else torch.ones_like(bad_ids))


# ------------------------------------------------------------------------------------------------------------
# tokenizer on the tiny vocabulary
# ------------------------------------------------------------------------------------------------------------
def test_byte_table_is_the_clip_one():
    table = bytes_to_unicode()
    values = list(table.values())
    assert len(values) == 256 == len(set(values))
    assert values[0] == "!" and table[ord("a")] == "a" and table[32] == "Ġ"  # space -> U+0120, as GPT-2/CLIP
    assert values[188:] == [chr(256 + k) for k in range(68)]


def test_tiny_vocab_specials_padding_and_mask(tok):
    assert (tok.sot_token_id, tok.eot_token_id, tok.vocab_size, tok.pad_token_id) == (SOT_ID, EOT_ID, 520, 0)
    out = tok(["the cat!", ""])
    assert out["input_ids"].dtype == out["attention_mask"].dtype == torch.int64
    assert out["input_ids"].tolist() == [[SOT_ID, THE, CAT, BANG, EOT_ID, 0, 0, 0], [SOT_ID, EOT_ID, 0, 0, 0, 0, 0, 0]]
    assert out["attention_mask"].tolist() == [[1, 1, 1, 1, 1, 0, 0, 0], [1, 1, 0, 0, 0, 0, 0, 0]]
    assert tok.tokenize("the cat!") == ["<start_of_text>", "the</w>", "cat</w>", "!</w>", "<end_of_text>"]
    assert tok.decode(out["input_ids"][0, :5].tolist()) == "<start_of_text>the cat ! <end_of_text>"
    assert torch.equal(tok("the cat!")["input_ids"], out["input_ids"][:1])  # one string = a batch of one


def test_truncation_keeps_eot_last(tok):
    out = tok(["the cat sat the cat sat the cat"])  # 8 words + 2 specials > 8
    assert out["input_ids"].tolist() == [[SOT_ID, THE, CAT, SAT, THE, CAT, SAT, EOT_ID]]
    assert out["attention_mask"].tolist() == [[1] * 8]


def test_lower_casing_whitespace_html_and_quotes(tok):
    ref = tok(["the cat sat"])["input_ids"]
    for text in ["THE Cat SAT", "  the \n\t cat   sat  ", "the&nbsp;cat sat", "the cat&amp;#32;sat"]:
        assert torch.equal(tok([text])["input_ids"], ref), text
    assert torch.equal(tok(["it\u2019s"])["input_ids"], tok(["it's"])["input_ids"])  # curly quote straightened


def test_punctuation_and_contractions_split(tok):
    assert tok.tokenize("cat,sat")[1:-1] == ["cat</w>", ",</w>", "sat</w>"]
    assert tok.tokenize("cat's")[1:-1] == ["cat</w>", "'", "s</w>"]  # "'s" is one piece; no merge joins it
    assert tok.tokenize("cat42")[1:-1] == ["cat</w>", "4</w>", "2</w>"]  # digits one by one
    assert tok.tokenize("cat...!?")[2:-1] == [".", ".", ".", "!", "?</w>"]  # a punctuation run is one piece
    assert tok.tokenize("tha")[1:-1] == ["th", "a</w>"]  # partial merges
    assert tok.encode("<start_of_text>cat") == [SOT_ID, CAT]  # special strings in a text, as open_clip


def test_longest_padding_cuts_columns(tok):
    out = tok(["the cat", "cat"], padding="longest")
    assert out["input_ids"].tolist() == [[SOT_ID, THE, CAT, EOT_ID], [SOT_ID, CAT, EOT_ID, 0]]
    with pytest.raises(ValueError):
        tok(["cat"], padding="max")
    with pytest.raises(TypeError):
        tok(["cat", 3])


def test_hf_folder_gives_the_same_ids(tmp_path):
    gz = write_gz(tmp_path)
    a, b = CLIPTokenizer(gz, 8), CLIPTokenizer(write_hf(tmp_path / "hf", gz), 8)
    texts = ["the cat sat!", "The CAT, the cat sat the cat sat", "<start_of_text>"]
    assert torch.equal(a(texts)["input_ids"], b(texts)["input_ids"])
    assert (b.sot_token_id, b.eot_token_id) == (SOT_ID, EOT_ID)


def test_missing_or_bad_files_raise_config_errors(tmp_path, monkeypatch):
    def err(vocab) -> str:
        with pytest.raises(ConfigError) as e:
            CLIPTokenizer(vocab)
        assert e.value.field == "vocab"
        return str(e.value)

    missing = tmp_path / "nope.txt.gz"
    msg = err(missing)
    assert str(missing) in msg and "bpe_simple_vocab_16e6.txt.gz" in msg and "vocab.json" in msg
    (tmp_path / "empty").mkdir()
    assert "vocab.json" in err(tmp_path / "empty")
    hf = write_hf(tmp_path / "hf", write_gz(tmp_path))
    (hf / "merges.txt").unlink()
    assert "merges.txt" in err(hf)
    assert "<|endoftext|>" in err(write_hf(tmp_path / "hf2", write_gz(tmp_path), drop=ct.HF_EOT))
    assert "line 3" in err(write_gz(tmp_path, merges=["t h", "a b c"]))
    (tmp_path / "bad.gz").write_bytes(b"\x1f\x8bnot gzip")
    assert "bad.gz" in err(tmp_path / "bad.gz")
    monkeypatch.setattr(ct, "find_open_clip_bpe", lambda: None)
    assert "open_clip" in err(None) and "open_clip" in err("default")
    with pytest.raises(ConfigError) as e:
        CLIPTokenizer(write_gz(tmp_path), context_length=1)
    assert e.value.field == "context_length"


def test_open_clip_vocab_is_found_without_importing_open_clip(tmp_path, monkeypatch):
    pkg = tmp_path / "site" / "open_clip"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("raise RuntimeError('open_clip must not be imported')\n")
    write_gz(pkg).rename(pkg / ct.OPEN_CLIP_BPE)
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    monkeypatch.delitem(sys.modules, "open_clip", raising=False)
    importlib.invalidate_caches()
    assert ct.find_open_clip_bpe() == pkg / ct.OPEN_CLIP_BPE
    assert CLIPTokenizer(None, 8)("the cat")["input_ids"][0, :4].tolist() == [SOT_ID, THE, CAT, EOT_ID]
    assert "open_clip" not in sys.modules


def test_fix_text_lite_matches_ftfy_on_its_deterministic_fixes():
    cases = {
        "don\u2019t \u201cquote\u201d": "don't \"quote\"",
        "\ufb01sh \ufb02ow": "fish flow",
        "\uff26\uff55\uff4c\uff4c\u3000width": "Full width",
        "fish &amp; chips &eacute; P&EACUTE;REZ": "fish & chips é PÉREZ",
        "<b>&amp;</b>": "<b>&amp;</b>",  # a '<' in the line: entities left alone (ftfy's "auto")
        "a\x00b\x07c\ufeffd": "abcd",
        "\x1b[31mred\x1b[0m": "red",
        "\x93smart\x94": '"smart"',  # C1 controls read as cp1252 curly quotes, then uncurled
        "line\r\nbreak\u2028x": "line\nbreak\nx",
        "e\u0301": "\u00e9",  # NFC
    }
    for text, want in cases.items():
        assert fix_text_lite(text) == want, text


def test_standard_library_pattern_matches_regex(monkeypatch):
    regex = pytest.importorskip("regex")
    samples = ["it's we'LL <START_OF_TEXT>x", "émigré café 12.5%", "日本語 テキスト 😀👍🏽", "k\u0345x ⅻ½ ١٢٣",
               "a_b-c/d\\e!!? ..."]
    with_regex = [ct._pattern().findall(s) for s in samples]
    assert isinstance(ct._pattern(), regex.Pattern)
    monkeypatch.setitem(sys.modules, "regex", None)  # import regex -> ImportError
    ct._pattern.cache_clear()
    try:
        assert not isinstance(ct._pattern(), regex.Pattern)
        assert [ct._pattern().findall(s) for s in samples] == with_regex
    finally:
        ct._pattern.cache_clear()


# ------------------------------------------------------------------------------------------------------------
# the released vocabulary, when present
# ------------------------------------------------------------------------------------------------------------
def _real_bpe() -> Path:
    env = os.environ.get("INTERNVIDEO2_CLIP_BPE")
    if env:
        return Path(env)
    found = ct.find_open_clip_bpe()
    if found is None:
        pytest.skip("no open_clip installed and INTERNVIDEO2_CLIP_BPE unset: the released "
                    "bpe_simple_vocab_16e6.txt.gz is not available")
    return found


def test_real_vocab_gives_known_clip_ids():
    tok = CLIPTokenizer(_real_bpe())
    assert (tok.vocab_size, tok.sot_token_id, tok.eot_token_id) == (49408, 49406, 49407)
    out = tok(["a photo of a cat"])
    assert out["input_ids"].shape == (1, 77)
    assert out["input_ids"][0, :8].tolist() == [49406, 320, 1125, 539, 320, 2368, 49407, 0]
    assert int(out["attention_mask"].sum()) == 7
