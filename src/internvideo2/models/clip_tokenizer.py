"""CLIP byte-level BPE tokenizer for the MobileCLIP text tower (:mod:`.mobileclip_text`), with the semantics of
open_clip's ``SimpleTokenizer`` (``open_clip.get_tokenizer("ViT-B-16")``, context 77, ``clean="lower"``), which
is what the official InternVideo2-CLIP S/B/L models use (spec section 3.3).

A text becomes ``<start_of_text> BPE(clean(text)) <end_of_text>``, truncated to ``context_length`` with
``<end_of_text>`` forced into the last slot, then padded with id 0. Steps:

1. ``clean``: ``ftfy.fix_text`` -> ``html.unescape`` twice -> strip -> collapse whitespace -> lower case.
2. Pre-tokenisation with open_clip's pattern ``<start_of_text>|<end_of_text>|'s|'t|'re|'ve|'m|'ll|'d|
   [\\p{L}]+|[\\p{N}]|[^\\s\\p{L}\\p{N}]+`` (case-insensitive); the special strings written in a text become
   the special ids, as in open_clip.
3. Each piece's UTF-8 bytes are mapped to printable characters (GPT-2/CLIP ``bytes_to_unicode``), the last one
   gets ``</w>``, and the lowest-ranked adjacent pair is merged (every occurrence, left to right) until no
   pair has a rank. Results are cached per piece.

Vocabulary sources (never downloaded):

* a folder with the Hugging Face CLIP files ``vocab.json`` + ``merges.txt`` (ids from ``vocab.json``,
  specials ``<|startoftext|>`` / ``<|endoftext|>`` or open_clip's names; inside texts only open_clip's
  special strings are recognised, whatever the source, as the official tokenizer is open_clip's);
* open_clip's ``bpe_simple_vocab_16e6.txt.gz`` (or the same text uncompressed): ids are built as open_clip
  does (256 byte symbols, the same with ``</w>``, the merges in order, then the two specials: 49408 ids,
  ``<start_of_text>`` 49406, ``<end_of_text>`` 49407);
* nothing: the gz inside an installed ``open_clip`` package, located without importing it (importing
  open_clip pulls in torchvision).

Both files keep merge lines ``[1, 48895)`` (line 0 is a header), as open_clip and HF ``CLIPTokenizer`` do.

Checked against open_clip 3.3.0's ``SimpleTokenizer`` (with ftfy) on the released gz: identical ids on 636
texts (captions, punctuation, HTML, curly quotes, full-width forms, emoji, CJK, control characters, random
Unicode), with ``regex`` and with the standard-library fallback; without ftfy, all but the one mojibake sample.

Differences from open_clip (documented, deliberate):

* Without the ``ftfy`` package, step 1 uses :func:`fix_text_lite`: every deterministic ``ftfy.fix_text`` step
  (HTML entities, C1 controls as Windows-1252, Latin ligatures, full/half-width forms, curly quotes, line
  breaks, surrogates, terminal escapes, control characters, NFC) but not its mojibake repair
  (``fix_encoding``), so only text that is itself mis-decoded (``"sÃ³"``) tokenizes differently. With
  ``ftfy`` installed, ``ftfy.fix_text`` itself is used.
* Without the ``regex`` package, ``\\p{L}`` / ``\\p{N}`` are built from Python's ``unicodedata`` (its Unicode
  version may lag ``regex``'s for newly assigned characters).
* Blank lines of a merges file are skipped (open_clip turns a trailing blank line of a short file into an
  empty vocabulary entry; the released files are long enough for it never to matter).
"""

from __future__ import annotations

import gzip
import html
import html.entities
import importlib.util
import json
import re
import sys
import unicodedata
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

import torch

from internvideo2.errors import ConfigError

OPEN_CLIP_BPE = "bpe_simple_vocab_16e6.txt.gz"
SOT, EOT = "<start_of_text>", "<end_of_text>"  # open_clip's special strings (also matched inside texts)
HF_SOT, HF_EOT = "<|startoftext|>", "<|endoftext|>"  # their names in a Hugging Face vocab.json
MERGE_LINES = slice(1, 49152 - 256 - 2 + 1)  # 48894 merges after the header line (open_clip and HF)
DEFAULT_CONTEXT_LENGTH = 77

_WHERE = ("get open_clip's bpe_simple_vocab_16e6.txt.gz (inside the open_clip_torch wheel, or "
          "https://github.com/openai/CLIP/raw/main/clip/bpe_simple_vocab_16e6.txt.gz), or vocab.json + merges.txt "
          "of a Hugging Face CLIP tokenizer (e.g. openai/clip-vit-base-patch16)")


# ------------------------------------------------------------------------------------------------------------
# Vocabulary files
# ------------------------------------------------------------------------------------------------------------
@lru_cache(maxsize=1)
def bytes_to_unicode() -> dict[int, str]:
    """Byte -> printable character: the 188 printable Latin-1 bytes map to themselves, the other 68 to
    ``chr(256 + k)`` in byte order (the GPT-2/CLIP table; its values in order are a vocabulary's first 256
    entries)."""
    keep = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    table = {b: chr(b) for b in keep}
    extra = 0
    for b in range(256):
        if b not in table:
            table[b] = chr(256 + extra)
            extra += 1
    return table  # insertion order = vocabulary order: the kept bytes first, then the remapped ones


def find_open_clip_bpe() -> Path | None:
    """``bpe_simple_vocab_16e6.txt.gz`` of an installed ``open_clip`` package, found through its import spec
    without importing it; None when open_clip is not installed or ships no such file."""
    try:
        spec = importlib.util.find_spec("open_clip")
    except (ImportError, ValueError):
        return None
    for loc in (spec.submodule_search_locations or []) if spec is not None else []:
        path = Path(loc) / OPEN_CLIP_BPE
        if path.is_file():
            return path
    return None


def _read_text(path: Path) -> str:
    try:
        raw = path.read_bytes()
        if raw[:2] == b"\x1f\x8b":  # gzip magic: open_clip's file; the same text uncompressed also works
            raw = gzip.decompress(raw)
        return raw.decode("utf-8")
    except (OSError, EOFError, UnicodeDecodeError) as e:
        raise ConfigError("vocab", f"{path}: cannot read the BPE merges ({e}); {_WHERE}") from None


def _parse_merges(text: str, path: Path) -> list[tuple[str, str]]:
    merges = []
    for n, line in enumerate(text.split("\n")[MERGE_LINES], start=2):
        parts = line.split()
        if not parts:
            continue  # blank line (see the module doc)
        if len(parts) != 2:
            raise ConfigError("vocab", f"{path}: line {n} is not a merge 'A B': {line[:80]!r}")
        merges.append((parts[0], parts[1]))
    return merges


def load_vocab(vocab: str | Path | None) -> tuple[dict[str, int], list[tuple[str, str]], int, int, Path]:
    """Resolve a vocabulary source (module doc) -> ``(encoder str -> id, merges in rank order, sot id,
    eot id, the path read)``. Problems are :class:`ConfigError` on field ``vocab`` naming the path.

    ``"bytes"``: the byte-level vocabulary without merges (512 symbols + the two specials, ids 512 / 513), a
    valid tokenizer for test- and smoke-scale towers that have no vocabulary file."""
    if str(vocab) == "bytes":
        syms = list(bytes_to_unicode().values())
        encoder = {t: i for i, t in enumerate(syms + [s + "</w>" for s in syms] + [SOT, EOT])}
        return encoder, [], encoder[SOT], encoder[EOT], Path("bytes")
    if vocab is None or str(vocab) == "default":
        found = find_open_clip_bpe()
        if found is None:
            raise ConfigError("vocab", f"no vocabulary given and no installed open_clip package ships {OPEN_CLIP_BPE}; "
                                       f"pass vocab=<file or folder>: {_WHERE}")
        vocab = found
    path = Path(vocab).expanduser()
    if path.is_dir():
        vocab_json, merges_txt = path / "vocab.json", path / "merges.txt"
        for f in (vocab_json, merges_txt):
            if not f.is_file():
                raise ConfigError("vocab", f"{path}: no {f.name} (a Hugging Face CLIP tokenizer folder holds "
                                           f"vocab.json and merges.txt); {_WHERE}")
        try:
            encoder = json.loads(vocab_json.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise ConfigError("vocab", f"{vocab_json}: not a JSON vocabulary ({e})") from None
        if not isinstance(encoder, dict) or not all(isinstance(k, str) and isinstance(v, int) and not isinstance(
                v, bool) and v >= 0 for k, v in encoder.items()):
            raise ConfigError("vocab", f"{vocab_json}: must map token strings to non-negative integer ids")
        merges = _parse_merges(_read_text(merges_txt), merges_txt)
        byte_syms = list(bytes_to_unicode().values())
        missing = [t for t in byte_syms + [s + "</w>" for s in byte_syms] if t not in encoder]
        missing += ["".join(m) for m in merges if "".join(m) not in encoder]
        if missing:
            raise ConfigError("vocab", f"{vocab_json}: lacks {len(missing)} tokens its byte table / merges.txt "
                                       f"produce, e.g. {missing[:5]}")
        specials = []
        for names in ((HF_SOT, SOT), (HF_EOT, EOT)):
            ids = [encoder[n] for n in names if n in encoder]
            if not ids:
                raise ConfigError("vocab", f"{vocab_json}: lacks the special token {names[0]!r} (or {names[1]!r})")
            specials.append(ids[0])
        return encoder, merges, specials[0], specials[1], path
    if not path.is_file():
        raise ConfigError("vocab", f"{path}: no such file or folder; {_WHERE}")
    merges = _parse_merges(_read_text(path), path)
    # open_clip's construction; dict(zip(...)) lets a repeated string keep its last id, as there
    syms = list(bytes_to_unicode().values())
    tokens = syms + [s + "</w>" for s in syms] + ["".join(m) for m in merges] + [SOT, EOT]
    encoder = dict(zip(tokens, range(len(tokens))))
    return encoder, merges, encoder[SOT], encoder[EOT], path


# ------------------------------------------------------------------------------------------------------------
# Cleaning
# ------------------------------------------------------------------------------------------------------------
_HTML_ENTITY_RE = re.compile(r"&#?[0-9A-Za-z]{1,24};")
_ANSI_RE = re.compile("\033\\[((?:\\d|;)*)([a-zA-Z])")
_SURROGATE_RE = re.compile("[\ud800-\udfff]")
_SURROGATE_PAIR_RE = re.compile("[\ud800-\udbff][\udc00-\udfff]")
_SINGLE_QUOTES_RE = re.compile("[\u02bc\u2018-\u201b]")
_DOUBLE_QUOTES_RE = re.compile("[\u201c-\u201f]")
_C1_RE = re.compile("[\x80-\x9f]")
_LIGATURES = {ord(k): v for k, v in {
    "Ĳ": "IJ", "ĳ": "ij", "ŉ": "ʼn", "Ǳ": "DZ", "ǲ": "Dz", "ǳ": "dz", "Ǆ": "DŽ", "ǅ": "Dž", "ǆ": "dž", "Ǉ": "LJ",
    "ǈ": "Lj", "ǉ": "lj", "Ǌ": "NJ", "ǋ": "Nj", "ǌ": "nj", "ﬀ": "ff", "ﬁ": "fi", "ﬂ": "fl", "ﬃ": "ffi", "ﬄ": "ffl",
    "ﬅ": "ſt", "ﬆ": "st"}.items()}
_CONTROL = dict.fromkeys([*range(0x00, 0x09), 0x0B, *range(0x0E, 0x20), 0x7F, *range(0x206A, 0x2070), 0xFEFF,
                          *range(0xFFF9, 0xFFFD)])


@lru_cache(maxsize=1)
def _width_map() -> dict[int, str]:
    table = {0x3000: " "}
    for cp in range(0xFF01, 0xFFF0):
        alt = unicodedata.normalize("NFKC", chr(cp))
        if alt != chr(cp):
            table[cp] = alt
    return table


@lru_cache(maxsize=1)
def _html_entities() -> dict[str, str]:
    table = {}
    for name, char in html.entities.html5.items():
        if name.endswith(";"):
            table["&" + name] = char
            upper = "&" + name.upper()
            if name == name.lower() and html.unescape(upper) == upper:  # P&EACUTE;REZ, as ftfy decodes it
                table[upper] = char.upper()
    return table


def _unescape_entity(m: re.Match[str]) -> str:
    text = m.group(0)
    if text in _html_entities():
        return _html_entities()[text]
    if text.startswith("&#"):
        out = html.unescape(text)
        return text if ";" in out else out
    return text


def _c1_as_cp1252(m: re.Match[str]) -> str:
    try:
        return m.group(0).encode("latin-1").decode("cp1252")
    except UnicodeDecodeError:  # 0x81 0x8d 0x8f 0x90 0x9d: undefined there, kept (ftfy's sloppy codec)
        return m.group(0)


def _fix_segment(text: str, unescape: bool) -> str:
    while True:  # to a fixed point, as ftfy's fix_and_explain
        before = text
        if unescape:
            text = _HTML_ENTITY_RE.sub(_unescape_entity, text)
        text = _C1_RE.sub(_c1_as_cp1252, text)
        text = text.translate(_LIGATURES).translate(_width_map())
        text = _SINGLE_QUOTES_RE.sub("'", _DOUBLE_QUOTES_RE.sub('"', text))
        text = text.replace("\r\n", "\n").replace("\r", "\n").replace("\u2028", "\n").replace(
            "\u2029", "\n").replace("\x85", "\n")
        if _SURROGATE_RE.search(text):
            text = _SURROGATE_PAIR_RE.sub(lambda p: chr(0x10000 + (ord(p.group(0)[0]) - 0xD800) * 0x400
                                                        + ord(p.group(0)[1]) - 0xDC00), text)
            text = _SURROGATE_RE.sub("\ufffd", text)
        text = _ANSI_RE.sub("", text).translate(_CONTROL)
        text = unicodedata.normalize("NFC", text)
        if text == before:
            return text


def fix_text_lite(text: str) -> str:
    """``ftfy.fix_text`` (ftfy 6.3 defaults) without its mojibake repair (``fix_encoding``): line by line,
    HTML entities (only while no line so far held ``<``), C1 controls read as Windows-1252, Latin ligatures,
    full/half-width forms, curly quotes, line breaks, surrogates, terminal escapes, control characters, NFC."""
    out, pos, unescape = [], 0, True
    while pos < len(text):
        brk = text.find("\n", pos) + 1 or len(text)
        segment = text[pos:brk]
        unescape = unescape and "<" not in segment  # ftfy's "auto": once off, off for the rest
        out.append(_fix_segment(segment, unescape))
        pos = brk
    return "".join(out)


@lru_cache(maxsize=1)
def _fix_text():
    try:
        import ftfy
    except ImportError:
        return fix_text_lite
    return ftfy.fix_text


def clean_text(text: str) -> str:
    """open_clip's ``clean="lower"``: fix_text (``ftfy`` if installed, else :func:`fix_text_lite`), HTML
    unescape twice, strip, collapse whitespace runs to one space, lower case."""
    text = html.unescape(html.unescape(_fix_text()(text))).strip()
    return " ".join(text.split()).lower()


# ------------------------------------------------------------------------------------------------------------
# Pre-tokenisation
# ------------------------------------------------------------------------------------------------------------
def _ranges(cps: list[int]) -> str:
    """Sorted code points -> the body of a ``re`` character class (``\\Uxxxxxxxx`` ranges)."""
    parts, i = [], 0
    while i < len(cps):
        j = i
        while j + 1 < len(cps) and cps[j + 1] == cps[j] + 1:
            j += 1
        parts.append(f"\\U{cps[i]:08x}" + ("" if i == j else f"-\\U{cps[j]:08x}"))
        i = j + 1
    return "".join(parts)


@lru_cache(maxsize=1)
def _std_re_classes() -> tuple[str, str, str]:
    """``re`` class bodies for ``\\p{L}``, ``\\p{N}``, and the other characters that ``regex``'s
    case-insensitive ``[^\\s\\p{L}\\p{N}]`` leaves out because a case variant is a letter or number (U+0345,
    which open_clip therefore drops)."""
    letters, numbers, quirks = [], [], []
    for cp in range(sys.maxunicode + 1):
        c = chr(cp)
        cat = unicodedata.category(c)[0]
        if cat == "L":
            letters.append(cp)
        elif cat == "N":
            numbers.append(cp)
        elif any(len(v) == 1 and unicodedata.category(v)[0] in "LN"
                 for v in (c.lower(), c.upper(), c.casefold(), c.title())):
            quirks.append(cp)
    return _ranges(letters), _ranges(numbers), _ranges(quirks)


@lru_cache(maxsize=1)
def _pattern() -> Any:
    specials = "|".join(re.escape(s) for s in (SOT, EOT))
    rest = r"'s|'t|'re|'ve|'m|'ll|'d|"
    try:
        import regex
    except ImportError:  # the standard library lacks \p{..}: spell the classes out (about 1 s, once)
        lt, nb, qk = _std_re_classes()
        # case-insensitive literals only: re's case-insensitive classes would also take U+0345, regex's do not
        return re.compile(f"(?i:{specials}|{rest[:-1]})|[{lt}]+|[{nb}]|[^\\s{lt}{nb}{qk}]+")
    return regex.compile(f"{specials}|{rest}" + r"[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+", regex.IGNORECASE)


# ------------------------------------------------------------------------------------------------------------
# Tokenizer
# ------------------------------------------------------------------------------------------------------------
class CLIPTokenizer:
    """open_clip ``SimpleTokenizer`` semantics -> fixed-length id tensors (see the module doc).

    Args:
        vocab: a folder with ``vocab.json`` + ``merges.txt``, a ``bpe_simple_vocab_16e6.txt.gz``, or None /
            ``"default"`` for the gz of an installed open_clip. Missing or malformed files raise
            :class:`ConfigError` (field ``vocab``) naming the path and where to get the files.
        context_length: output length ``L`` with ``<start_of_text>``/``<end_of_text>`` included (77).

    ``tok(["a photo of a cat", ...])`` returns ``{"input_ids": int64 [N, L], "attention_mask": int64 [N, L]}``;
    the mask is 1 on ``<start_of_text>``, the text and ``<end_of_text>`` (id 0 is also a real token, ``"!"``,
    so the mask is kept rather than derived from the ids).
    """

    def __init__(self, vocab: str | Path | None = None, context_length: int = DEFAULT_CONTEXT_LENGTH):
        if not isinstance(context_length, int) or isinstance(context_length, bool) or context_length < 2:
            raise ConfigError("context_length", f"must be an integer >= 2, got {context_length!r}")
        self.encoder, merges, self.sot_token_id, self.eot_token_id, self.vocab_path = load_vocab(vocab)
        self.decoder = {i: t for t, i in self.encoder.items()}
        self.bpe_ranks = dict(zip(merges, range(len(merges))))  # a repeated merge keeps its last rank
        self.context_length = context_length
        self.pad_token_id = 0
        self._specials = {SOT: self.sot_token_id, EOT: self.eot_token_id}
        self._byte_encoder = bytes_to_unicode()
        self._byte_decoder = {c: b for b, c in self._byte_encoder.items()}
        self._cache: dict[str, tuple[str, ...]] = {}

    @property
    def vocab_size(self) -> int:
        return max(self.encoder.values()) + 1

    @property
    def max_length(self) -> int:
        """``context_length`` under :class:`~internvideo2.models.tokenizer.TextTokenizer`'s name."""
        return self.context_length

    def bpe(self, piece: str) -> tuple[str, ...]:
        """BPE symbols of one pre-token already mapped to byte characters (the last carries ``</w>``)."""
        cached = self._cache.get(piece)
        if cached is not None:
            return cached
        word = [*piece[:-1], piece[-1] + "</w>"]
        ranks, inf = self.bpe_ranks, float("inf")
        while len(word) > 1:
            pair = min(zip(word, word[1:]), key=lambda p: ranks.get(p, inf))
            if pair not in ranks:
                break
            first, second = pair
            merged, i = [], 0
            while i < len(word):  # every occurrence, left to right, non-overlapping
                if i + 1 < len(word) and word[i] == first and word[i + 1] == second:
                    merged.append(first + second)
                    i += 2
                else:
                    merged.append(word[i])
                    i += 1
            word = merged
        out = tuple(word)
        if len(self._cache) > 200_000:  # bounded: captions repeat words, arbitrary junk should not grow it
            self._cache.clear()
        self._cache[piece] = out
        return out

    def _pieces(self, text: str) -> list[str | int]:
        """Cleaned, pre-tokenised text -> BPE strings, with special ids for the special strings."""
        out: list[str | int] = []
        for piece in _pattern().findall(clean_text(text)):
            if piece in self._specials:
                out.append(self._specials[piece])
            else:
                out.extend(self.bpe("".join(self._byte_encoder[b] for b in piece.encode("utf-8"))))
        return out

    def encode(self, text: str) -> list[int]:
        """Ids of one text without ``<start_of_text>`` / ``<end_of_text>`` and without truncation."""
        return [p if isinstance(p, int) else self.encoder[p] for p in self._pieces(text)]

    def tokenize(self, text: str) -> list[str]:
        """BPE strings of one text with the special tokens, without truncation or padding."""
        return [SOT] + [self.decoder[p] if isinstance(p, int) else p for p in self._pieces(text)] + [EOT]

    def decode(self, ids: Sequence[int]) -> str:
        """Ids -> text (``</w>`` becomes a space; padding, i.e. ids after ``<end_of_text>``, included)."""
        text = "".join(self.decoder[int(i)] for i in ids)
        data = bytearray(self._byte_decoder[c] for c in text if c in self._byte_decoder)
        return data.decode("utf-8", errors="replace").replace("</w>", " ")

    def __call__(self, texts: Sequence[str] | str, padding: str = "max_length") -> dict[str, torch.Tensor]:
        """``texts`` (N strings; one string counts as N = 1) -> ``input_ids`` and ``attention_mask``, int64
        ``[N, context_length]``: ``[sot, ids..., eot, 0, ...]``; a text too long keeps its first
        ``context_length - 2`` ids and ends with ``<end_of_text>`` (open_clip).

        ``padding="longest"`` cuts the columns after the longest text of the batch. The MobileCLIP tower then
        resamples its position table to the shorter length (official behaviour), so its features differ from
        those of 77 columns: keep ``"max_length"`` (the default, and what open_clip does) to match the
        released models."""
        if padding not in ("max_length", "longest"):
            raise ValueError(f"padding must be 'max_length' or 'longest', got {padding!r}")
        if isinstance(texts, str):
            texts = [texts]
        texts = list(texts)
        bad = [i for i, t in enumerate(texts) if not isinstance(t, str)]
        if bad:
            raise TypeError(f"texts must be strings; items {bad[:10]} are not")
        L = self.context_length
        ids = torch.zeros(len(texts), L, dtype=torch.int64)
        mask = torch.zeros(len(texts), L, dtype=torch.int64)
        for i, text in enumerate(texts):
            row = [self.sot_token_id, *self.encode(text), self.eot_token_id]
            if len(row) > L:
                row = row[:L]
                row[-1] = self.eot_token_id
            ids[i, :len(row)] = torch.tensor(row, dtype=torch.int64)
            mask[i, :len(row)] = 1
        if padding == "longest" and texts:
            keep = int(mask.sum(1).max())
            ids, mask = ids[:, :keep].contiguous(), mask[:, :keep].contiguous()
        return {"input_ids": ids, "attention_mask": mask}


__all__ = ["CLIPTokenizer", "bytes_to_unicode", "clean_text", "find_open_clip_bpe", "fix_text_lite", "load_vocab"]
