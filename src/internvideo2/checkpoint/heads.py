"""Classification-head transfer from a Kinetics-710 classifier (official-spec §6.1, P39).

K400 keeps the first 400 rows of the K710 head (the official code assumes K710's label order starts with
the K400 classes); K600 and K700 re-index rows with the official maps ``single_modality/k710/
label_mixto{600,700}.json`` (shipped in ``internvideo2/resources``): row ``i`` of the new head is row
``map[i]`` of the K710 head.
"""
from __future__ import annotations

import json
from importlib import resources

import torch

from ..errors import ConfigError


def k710_rows(num_classes: int) -> list[int]:
    """The K710 head rows of a ``num_classes`` (400, 600 or 700) Kinetics head, in the new label order."""
    if num_classes == 400:
        return list(range(400))
    if num_classes in (600, 700):
        text = resources.files("internvideo2.resources").joinpath(f"k710_to_k{num_classes}.json").read_text()
        rows = json.loads(text)
        if len(rows) != num_classes:
            raise ConfigError("num_classes", f"the shipped K710->K{num_classes} map has {len(rows)} rows")
        return rows
    raise ConfigError("num_classes", f"a K710 head transfers to 400, 600 or 700 classes, not {num_classes}")


def slice_k710_head(state_dict: dict[str, torch.Tensor], num_classes: int, prefix: str = "") -> dict[str, torch.Tensor]:
    """Return a copy of ``state_dict`` whose ``head.weight`` [710, D] / ``head.bias`` [710] keep the rows of
    :func:`k710_rows` (``prefix`` e.g. ``"module."``)."""
    w, b = state_dict.get(prefix + "head.weight"), state_dict.get(prefix + "head.bias")
    if w is None or w.shape[0] != 710:
        raise ConfigError("head",
                          f"a 710-row head is needed, the checkpoint has {None if w is None else tuple(w.shape)}")
    rows = torch.tensor(k710_rows(num_classes))
    out = dict(state_dict)
    out[prefix + "head.weight"] = w[rows].clone()
    if b is not None:
        out[prefix + "head.bias"] = b[rows].clone()
    return out
