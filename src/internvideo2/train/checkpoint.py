"""Atomic training checkpoints with a ``latest`` pointer and keep-last-N retention.

Layout of ``checkpoint.dir``::

    step_00000020.pt      one file per checkpoint (torch.save, loadable with weights_only=True)
    latest                text file naming the newest complete checkpoint
    .NAME.tmpPID          leftovers of an interrupted write (ignored, removed by the next save)

Writing (:func:`internvideo2.utils.io.atomic_write`): the payload goes to a temporary file in the same
folder, which is flushed and fsync'ed, then ``os.replace``'d to its final name, then the folder is fsync'ed;
only then is ``latest`` rewritten the same way. A crash at any moment leaves ``latest`` naming a complete file
(or absent before the first save).
DeepSpeed checkpoints are folders (``step_XXXXXXXX/``) written under a temporary name and renamed.

Payload (a dict of tensors and plain Python values): ``format``, ``step``, ``epoch``, ``step_in_epoch``,
``model``, ``optimizer`` (``torch.distributed.checkpoint.state_dict`` format: keyed by parameter name),
``scaler``, ``schedule``, ``rng`` (one entry per rank), ``guards``, ``counters``, ``world_size``, ``config``.
"""

from __future__ import annotations

import logging
import random
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch

from internvideo2.errors import CheckpointError
from internvideo2.utils.io import atomic_write, is_tmp_name, write_text

log = logging.getLogger("internvideo2.train.checkpoint")

FORMAT = "internvideo2.train/1"
LATEST = "latest"
_STEP_RE = re.compile(r"^step_(\d+)(\.pt)?$")

__all__ = [
    "FORMAT",
    "checkpoint_name",
    "atomic_torch_save",
    "save_checkpoint_file",
    "update_latest",
    "read_latest",
    "list_checkpoints",
    "apply_retention",
    "resolve_resume",
    "load_checkpoint_file",
    "rng_state",
    "set_rng_state",
]


def checkpoint_name(step: int, folder: bool = False) -> str:
    return f"step_{step:08d}" + ("" if folder else ".pt")


def atomic_torch_save(obj: Any, path: Path) -> None:
    atomic_write(path, lambda f: torch.save(obj, f))


def update_latest(ckpt_dir: Path, name: str) -> None:
    write_text(Path(ckpt_dir) / LATEST, name + "\n")


def read_latest(ckpt_dir: Path) -> Path | None:
    """The checkpoint ``latest`` names, or None when there is no pointer."""
    p = Path(ckpt_dir) / LATEST
    if not p.is_file():
        return None
    name = p.read_text().strip()
    if not _STEP_RE.match(name):
        raise CheckpointError(f"{p}: does not name a checkpoint (got {name!r})")
    target = Path(ckpt_dir) / name
    if not target.exists():
        raise CheckpointError(f"{p}: names {name!r}, which does not exist")
    return target


def list_checkpoints(ckpt_dir: Path) -> list[tuple[int, Path]]:
    """Complete checkpoints in ``ckpt_dir`` sorted by step."""
    d = Path(ckpt_dir)
    if not d.is_dir():
        return []
    out = []
    for p in d.iterdir():
        m = _STEP_RE.match(p.name)
        if m:
            out.append((int(m.group(1)), p))
    return sorted(out)


def _remove(p: Path) -> None:
    if p.is_dir():
        shutil.rmtree(p, ignore_errors=True)
    else:
        p.unlink(missing_ok=True)


def apply_retention(ckpt_dir: Path, keep_last_n: int) -> list[Path]:
    """Delete all but the newest ``keep_last_n`` checkpoints (never the one ``latest`` names) and stale
    temp files. Returns the removed paths."""
    d = Path(ckpt_dir)
    removed = []
    for p in d.iterdir() if d.is_dir() else ():
        if is_tmp_name(p.name):
            _remove(p)
            removed.append(p)
    if keep_last_n <= 0:
        return removed
    latest = read_latest(d)
    ckpts = list_checkpoints(d)
    for _, p in ckpts[:-keep_last_n]:
        if latest is not None and p.resolve() == latest.resolve():
            continue
        _remove(p)
        removed.append(p)
    return removed


def save_checkpoint_file(payload: dict, ckpt_dir: Path, step: int, keep_last_n: int) -> Path:
    """Write ``payload`` atomically as ``step_XXXXXXXX.pt``, point ``latest`` at it, apply retention."""
    d = Path(ckpt_dir)
    d.mkdir(parents=True, exist_ok=True)
    final = d / checkpoint_name(step)
    atomic_torch_save(payload, final)
    update_latest(d, final.name)
    apply_retention(d, keep_last_n)
    return final


def resolve_resume(resume: str, ckpt_dir: Path) -> Path | None:
    """``none`` -> None; ``auto`` -> ``latest`` (None when there is none yet); a path -> that file/folder
    (a folder holding a ``latest`` pointer resolves through it)."""
    if resume in ("none", "", None):
        return None
    if resume == "auto":
        latest = read_latest(ckpt_dir)
        if latest is None and list_checkpoints(ckpt_dir):
            raise CheckpointError(f"{ckpt_dir}: checkpoints exist but no '{LATEST}' pointer; pass a path")
        return latest
    p = Path(resume).expanduser()
    if p.is_dir() and (p / LATEST).is_file():
        return read_latest(p)
    if not p.exists():
        raise CheckpointError(f"{p}: resume checkpoint does not exist")
    return p


def load_checkpoint_file(path: Path) -> dict:
    """Load a checkpoint file (memory-mapped, weights_only) and check its format."""
    try:
        obj = torch.load(str(path), map_location="cpu", weights_only=True, mmap=True)
    except Exception as exc:
        raise CheckpointError(f"{path}: cannot be loaded ({type(exc).__name__}: {exc})") from None
    if not isinstance(obj, dict) or obj.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not an internvideo2 training checkpoint (format {FORMAT!r} expected)")
    return obj


# ----------------------------------------------------------------------------------------------------------
# RNG state (weights_only-safe: tensors, ints, tuples, lists)
# ----------------------------------------------------------------------------------------------------------
def rng_state() -> dict:
    """This process's python, numpy, torch CPU and CUDA RNG states."""
    np_state = np.random.get_state()
    st = {
        "python": random.getstate(),
        "numpy": [
            str(np_state[0]),
            torch.from_numpy(np_state[1].astype(np.int64)),
            int(np_state[2]),
            int(np_state[3]),
            float(np_state[4]),
        ],
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }
    return st


def set_rng_state(st: dict) -> None:
    random.setstate(_tuplify(st["python"]))
    kind, keys, pos, has_gauss, cached = st["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), int(pos), int(has_gauss), float(cached)))
    torch.set_rng_state(st["torch"])
    if torch.cuda.is_available() and st.get("cuda"):
        torch.cuda.set_rng_state_all(st["cuda"])


def _tuplify(x: Any) -> Any:
    if isinstance(x, (list, tuple)):
        return tuple(_tuplify(v) for v in x)
    return x
