"""Strict loading of BEATs audio encoders: the release format ``{'cfg': dict, 'model': state_dict}`` or the
``audio_encoder.*`` part of a stage-2 audio-visual checkpoint."""
from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..errors import CheckpointError
from ..models.audio import BEATs, BEATsConfig
from .io import LoadReport, load_state_dict_strict, read_checkpoint

__all__ = ["load_beats_checkpoint"]


def load_beats_checkpoint(
    src: str | Path | Mapping[str, Any],
    *,
    cfg: BEATsConfig | Mapping[str, Any] | None = None,
    prefix: str = "",
) -> tuple[BEATs, LoadReport]:
    """Build :class:`BEATs` from the release format ``{'cfg': dict, 'model': state_dict}`` and load it
    strictly.

    Args:
        src: a file (read with ``torch.load(weights_only=True)``) or the loaded object.
        cfg: the config, when ``src`` has no ``'cfg'`` (e.g. a stage-2 audio-visual state dict).
        prefix: key prefix to select and strip (``"audio_encoder."`` inside a stage-2 checkpoint); with a
            prefix, other keys are ignored.

    Returns the model (in training mode, like any fresh module; call ``.eval()``) and the :class:`LoadReport`.
    Missing, unexpected or mis-shaped keys raise :class:`CheckpointError`. The per-layer copies of the shared
    ``relative_attention_bias.weight`` must be equal.
    """
    where = "BEATs checkpoint"
    obj: Any = src
    if not isinstance(src, Mapping):
        where = str(src)
        obj = read_checkpoint(src)
    if not isinstance(obj, Mapping):
        raise CheckpointError(f"{where}: expected a dict, got {type(obj).__name__}")
    if cfg is None:
        if "cfg" not in obj:
            raise CheckpointError(f"{where}: no 'cfg' entry (keys: {sorted(obj)[:10]}); pass cfg=")
        cfg = obj["cfg"]
    if not isinstance(cfg, BEATsConfig):
        if not isinstance(cfg, Mapping):
            raise CheckpointError(f"{where}: 'cfg' must be a dict, got {type(cfg).__name__}")
        cfg = BEATsConfig.from_dict(cfg, source=f"{where}: cfg")
    sd = obj
    for key in ("model", "module"):
        if key in obj and isinstance(obj[key], Mapping):
            sd = obj[key]
            break
    else:
        if "cfg" in obj:
            raise CheckpointError(f"{where}: has 'cfg' but no 'model' state dict")
    model = BEATs(cfg)
    return model, load_state_dict_strict(model, sd, source=where, prefix=prefix)
