"""The output folder of an embed run: the lock, the resume state (``progress.json`` and the committed
chunks under ``parts/``), the assembly of the final files, and reading a finished folder back.

Every file is written through :func:`internvideo2.utils.io.atomic_write`; a chunk is done iff its commit
record ``parts/CCCCCC.json`` exists (written last) and its arrays are intact.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import ConfigError
from ..utils.io import atomic_path, atomic_write, clean_tmp, write_bytes, write_json
from .settings import FORMAT, FORMAT_VERSION, EmbedSettings

log = logging.getLogger("internvideo2.embed")

OUR_FILES = ("embeddings.npy", "index.jsonl", "errors.jsonl", "meta.json", "progress.json", "videos.json")
OUR_DIRS = ("parts", "tokens")


def save_npy(path: Path, arr: np.ndarray) -> None:
    atomic_write(path, lambda f: np.save(f, arr, allow_pickle=False))


def sha256(arr: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(arr).tobytes()).hexdigest()


def count(values: Iterable[str]) -> dict[str, int]:
    out: dict[str, int] = {}
    for v in values:
        out[v] = out.get(v, 0) + 1
    return out


class FolderLock:
    """An exclusive POSIX record lock on ``OUT/.lock``, released by the kernel when this process dies.

    ``lockf``, not ``flock``: a ``flock`` is shared with the forked DataLoader workers, which outlive a
    SIGKILL-ed parent by a few seconds and would keep a restarted run out. Record locks belong to the
    process and are not inherited.
    """

    def __init__(self, out: Path):
        self.path = out / ".lock"
        self.fd: int | None = None

    def __enter__(self):
        import fcntl

        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.lockf(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(self.fd)
            self.fd = None
            raise ConfigError("out_dir", f"{self.path.parent}: another embed process is writing this folder") from None
        return self

    def __exit__(self, *exc):
        if self.fd is not None:
            os.close(self.fd)  # closing releases the lock
            self.fd = None


@dataclass
class ChunkState:
    """The items and failures of one chunk gathered from the stream until its last group finishes."""

    groups_left: int
    num_videos: int
    items: dict[int, list[tuple[dict, np.ndarray, np.ndarray | None]]] = field(default_factory=dict)
    bad: dict[int, dict] = field(default_factory=dict)


class EmbedStore:
    """One output folder for one run fingerprint (model, settings, inputs)."""

    def __init__(self, out: Path, fingerprint: dict, num_chunks: int, dim: int, token_shape: tuple[int, int],
                 settings: EmbedSettings):
        self.out, self.fingerprint, self.num_chunks = out, fingerprint, num_chunks
        self.dim, self.token_shape, self.settings = dim, token_shape, settings

    # -- state ----------------------------------------------------------------------------------------
    def prepare(self, videos: list[str], overwrite: bool, workers: int) -> dict | None:
        """Create/check the folder. Returns the previous progress record (None for a fresh start)."""
        out = self.out
        out.mkdir(parents=True, exist_ok=True)
        prog_path = out / "progress.json"
        if overwrite:
            for name in OUR_FILES:
                with contextlib.suppress(FileNotFoundError):
                    (out / name).unlink()
            for name in OUR_DIRS:
                shutil.rmtree(out / name, ignore_errors=True)
        for d in (out, out / "parts", out / "tokens"):
            clean_tmp(d)
        if prog_path.is_file():
            try:
                prev = json.loads(prog_path.read_text())
            except json.JSONDecodeError as e:
                raise ConfigError("out_dir", f"{prog_path}: unreadable ({e}); pass --overwrite to start over") from None
            old = prev.get("fingerprint", {})
            if old != self.fingerprint:
                diff = sorted(k for k in set(old) | set(self.fingerprint) if old.get(k) != self.fingerprint.get(k))
                if "settings" in diff:
                    os_, ns = old.get("settings", {}), self.fingerprint["settings"]
                    diff += [f"settings.{k}" for k in sorted(set(os_) | set(ns)) if os_.get(k) != ns.get(k)]
                raise ConfigError("out_dir", f"{out} holds an embed run with other inputs or settings (differs in: "
                                             f"{', '.join(diff)}); pass --overwrite to start over, or use another "
                                             "output folder")
            return prev
        others = [p.name for p in out.iterdir() if p.name != ".lock"]
        if any(n in OUR_FILES or n in OUR_DIRS for n in others):
            raise ConfigError("out_dir", f"{out} holds embed outputs without progress.json; pass --overwrite "
                                         "to start over")
        if others:
            raise ConfigError("out_dir", f"{out} is not empty and holds no embed run ({', '.join(sorted(others)[:5])}"
                                         "...); choose an empty or new folder")
        write_json(self.out / "videos.json", videos)
        self.write_progress(done=0, complete=False, first={"workers": workers, "threads": torch.get_num_threads()})
        return None

    def write_progress(self, done: int, complete: bool, first: dict | None = None, counts: dict | None = None):
        rec = {
            "fingerprint": self.fingerprint,
            "num_chunks": self.num_chunks,
            "chunks_done": done,
            "complete": complete,
            "counts": counts or {},
        }
        if first is not None:
            rec["first_run"] = first
        else:
            prev = json.loads((self.out / "progress.json").read_text())
            rec["first_run"] = prev.get("first_run", {})
        write_json(self.out / "progress.json", rec)

    def chunk_done(self, c: int) -> dict | None:
        """The commit record of chunk ``c`` when it is complete and its arrays are intact."""
        parts = self.out / "parts"
        jp = parts / f"{c:06d}.json"
        if not jp.is_file():
            return None
        try:
            rec = json.loads(jp.read_text())
            n = int(rec["num_items"])
            arr = np.load(parts / f"{c:06d}.npy", mmap_mode="r" if n else None)
            ok = arr.shape == (n, self.dim)
            if ok and self.settings.tokens and n:
                tok = np.load(self.out / "tokens" / f"{c:06d}.npy", mmap_mode="r")
                ok = tok.shape == (n, *self.token_shape)
        except (OSError, ValueError, KeyError, json.JSONDecodeError):
            ok = False
        if not ok:
            log.warning("chunk %d: commit record present but its arrays are missing or damaged; embedding "
                        "it again", c)
            return None
        return rec

    def write_chunk(self, c: int, st: ChunkState) -> dict:
        rows, embs, toks = [], [], []
        for vi in sorted(st.items):
            for it, e, t in sorted(st.items[vi], key=lambda r: r[0]["item"]):
                rows.append(it)
                embs.append(e)
                toks.append(t)
        emb = np.stack(embs).astype(np.float32) if embs else np.zeros((0, self.dim), np.float32)
        save_npy(self.out / "parts" / f"{c:06d}.npy", emb)
        if self.settings.tokens and rows:
            save_npy(self.out / "tokens" / f"{c:06d}.npy", np.stack(toks).astype(self.settings.tokens_dtype))
        errors = [st.bad[vi] for vi in sorted(st.bad)]
        rec = {"chunk": c, "num_videos": st.num_videos, "num_items": len(rows), "sha256": sha256(emb),
               "rows": rows, "errors": errors}
        # the commit record is written last: a chunk is done iff this file exists
        write_json(self.out / "parts" / f"{c:06d}.json", rec, indent=None)
        return {"chunk": c, "items": len(rows), "bad": len(errors)}

    # -- the final files ------------------------------------------------------------------------------
    def assemble(self, num_videos: int, meta_extra: dict[str, Any]) -> None:
        """Concatenate the committed chunks into ``embeddings.npy``, ``index.jsonl``, ``errors.jsonl`` and
        ``meta.json`` (``meta_extra`` holds the model, run and timing sections), mark the run complete and
        remove ``parts/``."""
        out, D = self.out, self.dim
        recs = []
        for c in range(self.num_chunks):
            rec = self.chunk_done(c)
            if rec is None:
                raise RuntimeError(f"chunk {c} is not complete; cannot assemble")
            recs.append(rec)
        M = sum(r["num_items"] for r in recs)
        # embeddings: streamed into a memory map, so a large run never needs them all in memory
        if M:
            with atomic_path(out / "embeddings.npy") as tmp:
                mm = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float32, shape=(M, D))
                off = 0
                for rec in recs:
                    n = rec["num_items"]
                    if n:
                        part = np.load(out / "parts" / f"{rec['chunk']:06d}.npy")
                        if sha256(part) != rec["sha256"]:
                            raise RuntimeError(f"parts/{rec['chunk']:06d}.npy does not match its commit record")
                        mm[off:off + n] = part
                    off += n
                mm.flush()
                del mm
        else:
            save_npy(out / "embeddings.npy", np.zeros((0, D), np.float32))

        lines, err_lines, reasons = [], [], {}
        off = 0
        for rec in recs:
            for j, r in enumerate(rec["rows"]):
                row = {"row": off + j, **r}
                if self.settings.tokens:
                    row["tokens"] = f"tokens/{rec['chunk']:06d}.npy"
                    row["tokens_row"] = j
                lines.append(json.dumps(row))
            off += rec["num_items"]
            for e in rec["errors"]:
                err_lines.append(json.dumps(e))
                reasons[e["reason"]] = reasons.get(e["reason"], 0) + 1
        write_bytes(out / "index.jsonl", "".join(x + "\n" for x in lines).encode())
        write_bytes(out / "errors.jsonl", "".join(x + "\n" for x in err_lines).encode())

        n_bad = len(err_lines)
        counts = {"videos": num_videos, "videos_ok": num_videos - n_bad, "videos_bad": n_bad,
                  "items": M, "bad_reasons": dict(sorted(reasons.items())), "chunks": self.num_chunks}
        meta = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "model": meta_extra["model"],
            "settings": meta_extra["settings"],
            "outputs": {"embeddings": "embeddings.npy", "shape": [M, D], "dtype": "float32",
                        "index": "index.jsonl", "errors": "errors.jsonl", "videos": "videos.json",
                        "tokens": "tokens/" if self.settings.tokens else None,
                        "token_shape": list(self.token_shape) if self.settings.tokens else None,
                        "tokens_dtype": self.settings.tokens_dtype if self.settings.tokens else None},
            "counts": counts,
            "run": meta_extra["run"],
            "timing": meta_extra["timing"],
        }
        write_json(out / "meta.json", meta)
        self.write_progress(self.num_chunks, True, counts={"items": M, "bad": n_bad})
        # the final files hold everything now; the parts (and their commit records) can go
        shutil.rmtree(out / "parts", ignore_errors=True)


# ----------------------------------------------------------------------------------------------------------
# reading a finished folder
# ----------------------------------------------------------------------------------------------------------
@dataclass
class EmbedResult:
    """What :func:`~internvideo2.embed.embed_videos` returns.

    Attributes:
        embeddings: ``float32 [M, D]`` (memory-mapped from ``OUT/embeddings.npy`` when an output folder
            was given).
        index: one dict per row (``row``, ``video``, ``video_index``, ``item``, ``start_s``, ``end_s``,
            ``frame_indices``; ``tokens`` / ``tokens_row`` with tokens).
        errors: one dict per unusable video (``video``, ``video_index``, ``reason``, ``detail``).
        meta: the ``meta.json`` content (model, settings, counts, timing).
        out_dir: the output folder, or None for an in-memory run.
        token_arrays: with ``tokens=True``: ``{file name: [n, 1+N, C] array}`` (see :meth:`tokens_of`).
        status: ``"complete"``, or ``"already_complete"`` when ``out_dir`` held this finished run and
            nothing was computed.
    """

    embeddings: np.ndarray
    index: list[dict]
    errors: list[dict]
    meta: dict
    out_dir: str | None = None
    token_arrays: dict[str, np.ndarray] | None = None
    status: str = "complete"

    def tokens_of(self, row: int) -> np.ndarray:
        """Tokens ``[1+N, C]`` of embedding row ``row``."""
        if self.token_arrays is None:
            raise ValueError("this run did not keep tokens (tokens=True / --tokens)")
        r = self.index[row]
        return self.token_arrays[r["tokens"]][r["tokens_row"]]

    @property
    def tokens(self) -> np.ndarray | None:
        """All tokens ``[M, 1+N, C]`` in row order (concatenated; None without tokens)."""
        if self.token_arrays is None:
            return None
        names = sorted(self.token_arrays)
        if not names:
            shape = self.meta["outputs"]["token_shape"]
            return np.zeros((0, *shape), dtype=self.meta["outputs"]["tokens_dtype"])
        return np.concatenate([self.token_arrays[n] for n in names])


def load_result(out: Path, in_memory: bool) -> EmbedResult:
    """Read a finished output folder (``in_memory``: arrays loaded, else memory-mapped)."""
    meta = json.loads((out / "meta.json").read_text())
    mmap = None if in_memory else "r"
    emb = np.load(out / "embeddings.npy", mmap_mode=mmap if meta["counts"]["items"] else None)
    index = [json.loads(line) for line in (out / "index.jsonl").read_text().splitlines() if line]
    errors = [json.loads(line) for line in (out / "errors.jsonl").read_text().splitlines() if line]
    tok = None
    if meta["settings"]["tokens"]:
        tok = {}
        for name in sorted({r["tokens"] for r in index}):
            tok[name] = np.load(out / name, mmap_mode=mmap)
    return EmbedResult(np.asarray(emb) if in_memory else emb, index, errors, meta,
                       None if in_memory else str(out), tok)
