"""The output folder of an embed run: the lock, the per-video state that lets a run resume and a later run
update only what changed, the chunk commits, the assembly of the final files, and reading a folder back.

State (format 2):

* ``videos.json``: one entry per input of the last assembled output, in output order: ``path`` (absolute),
  ``root`` / ``rel`` (the input root it was found under and the path relative to it), ``size`` /
  ``mtime_ns`` (its identity on disk when it was read), ``status`` (``ok`` or ``bad``), ``rows``
  (``[first, stop)`` of its rows in ``embeddings.npy``) or ``reason`` / ``detail`` / ``retry``;
* ``parts/CCCCCC.json`` (+ ``.npy``, and ``tokens/CCCCCC.npy``): a committed chunk: the same entries for its
  videos, their item rows and the embeddings; written last, so a chunk is done iff its record exists;
* ``progress.json``: the settings fingerprint, the plan of the run in progress (chunk id -> videos) and
  whether the folder is complete.

A video's latest entry is its entry in the newest chunk holding it, else in ``videos.json``. Every file goes
through :func:`internvideo2.utils.io.atomic_write`.
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

from ..errors import ConfigError
from ..utils.io import atomic_path, atomic_write, clean_tmp, write_bytes, write_json
from .settings import FORMAT, FORMAT_VERSION, EmbedSettings

log = logging.getLogger("internvideo2.embed")

OUR_FILES = ("embeddings.npy", "index.jsonl", "errors.jsonl", "meta.json", "progress.json", "videos.json")
OUR_DIRS = ("parts", "tokens")

#: failure reasons that can change on a later run with the same file (more time, more memory, a transient
#: I/O or permission problem, an unexpected error): retried by the next run; the others are kept until the
#: file changes on disk or ``retry_bad`` asks
RETRYABLE = frozenset({"timeout", "resource", "unreadable", "unexpected_error"})


def save_npy(path: Path, arr: np.ndarray) -> None:
    atomic_write(path, lambda f: np.save(f, arr, allow_pickle=False))


def sha256(arr: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(arr).tobytes()).hexdigest()


def count(values: Iterable[str]) -> dict[str, int]:
    out: dict[str, int] = {}
    for v in values:
        out[v] = out.get(v, 0) + 1
    return out


def chunk_name(c: int) -> str:
    return f"{c:06d}"


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

        try:
            self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except PermissionError:
            raise ConfigError("out_dir", f"{self.path.parent}: permission denied (cannot write there)") from None
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
    refs: list  # the VideoRefs of the chunk, in input order
    items: dict[int, list[tuple[dict, np.ndarray, np.ndarray | None]]] = field(default_factory=dict)
    bad: dict[int, dict] = field(default_factory=dict)


class EmbedStore:
    """One output folder for one settings fingerprint (model, settings)."""

    def __init__(self, out: Path, fingerprint: dict, dim: int, token_shape: tuple[int, int], settings: EmbedSettings):
        self.out, self.fingerprint = out, fingerprint
        self.dim, self.token_shape, self.settings = dim, token_shape, settings

    # -- state ----------------------------------------------------------------------------------------
    def prepare(self, overwrite: bool) -> dict | None:
        """Create/check the folder. Returns the previous progress record (None for a fresh folder)."""
        out = self.out
        try:
            out.mkdir(parents=True, exist_ok=True)
        except FileExistsError:
            raise ConfigError("out_dir", f"{out}: exists and is not a folder") from None
        except PermissionError:
            raise ConfigError("out_dir", f"{out}: permission denied (cannot create it)") from None
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
                raise ConfigError("out_dir", f"{out} holds an embed run of another model or settings (differs in: "
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
        return None

    def write_progress(self, rec: dict) -> None:
        write_json(self.out / "progress.json", {"fingerprint": self.fingerprint, **rec})

    def base_entries(self) -> list[dict]:
        """The entries of the last assembled output (``videos.json``), in output order."""
        p = self.out / "videos.json"
        if not p.is_file():
            return []
        data = json.loads(p.read_text())
        return [e for e in data if isinstance(e, dict)]

    def committed(self) -> dict[int, dict]:
        """The intact chunk records under ``parts/``, by chunk id."""
        parts = self.out / "parts"
        out: dict[int, dict] = {}
        if not parts.is_dir():
            return out
        for jp in sorted(parts.glob("*.json")):
            if not jp.stem.isdigit():
                continue
            rec = self.chunk_done(int(jp.stem))
            if rec is not None:
                out[int(jp.stem)] = rec
        return out

    def chunk_done(self, c: int) -> dict | None:
        """The commit record of chunk ``c`` when it is complete and its arrays are intact."""
        parts = self.out / "parts"
        jp = parts / f"{chunk_name(c)}.json"
        if not jp.is_file():
            return None
        try:
            rec = json.loads(jp.read_text())
            n = int(rec["num_items"])
            arr = np.load(parts / f"{chunk_name(c)}.npy", mmap_mode="r" if n else None)
            ok = arr.shape == (n, self.dim) and sha256(np.asarray(arr)) == rec["sha256"]
            if ok and self.settings.tokens and n:
                tok = np.load(self.out / "tokens" / f"{chunk_name(c)}.npy", mmap_mode="r")
                ok = tok.shape == (n, *self.token_shape)
        except (OSError, ValueError, KeyError, json.JSONDecodeError):
            ok = False
        if not ok:
            log.warning("chunk %d: commit record present but its arrays are missing or damaged; embedding "
                        "it again", c)
            return None
        return rec

    def write_chunk(self, c: int, st: ChunkState) -> dict:
        """Commit a finished chunk: its embeddings (and tokens), then its record (last)."""
        rows, embs, toks, entries = [], [], [], []
        for k, ref in enumerate(st.refs):
            entry = {"path": ref.abspath, "root": ref.root, "rel": ref.rel, "size": ref.size,
                     "mtime_ns": ref.mtime_ns}
            if k in st.bad:
                b = st.bad[k]
                entry.update(status="bad", reason=b["reason"], detail=b["detail"], retry=b["reason"] in RETRYABLE)
            else:
                got = sorted(st.items.get(k, []), key=lambda r: r[0]["item"])
                entry.update(status="ok", part_rows=[len(rows), len(rows) + len(got)])
                for it, e, t in got:
                    rows.append({key: it[key] for key in ("item", "start_s", "end_s", "frame_indices")})
                    embs.append(e)
                    toks.append(t)
            entries.append(entry)
        emb = np.stack(embs).astype(np.float32) if embs else np.zeros((0, self.dim), np.float32)
        name = chunk_name(c)
        save_npy(self.out / "parts" / f"{name}.npy", emb)
        if self.settings.tokens and rows:
            save_npy(self.out / "tokens" / f"{name}.npy", np.stack(toks).astype(self.settings.tokens_dtype))
        rec = {"chunk": c, "num_items": len(rows), "sha256": sha256(emb), "videos": entries, "rows": rows}
        # the commit record is written last: a chunk is done iff this file exists
        write_json(self.out / "parts" / f"{name}.json", rec, indent=None)
        return rec

    # -- the final files ------------------------------------------------------------------------------
    def assemble(self, refs: list, latest: dict[str, dict], sources: dict[str, dict], problems: list[dict],
                 meta_extra: dict[str, Any]) -> dict:
        """Write the output for the inputs ``refs`` (in order): each video's latest entry; its rows come from
        the previous output (``sources[path]["kind"] == "old"``) or from the committed chunk that holds it
        (``{"kind": "part", "chunk", "rows"}``). Returns the counts. ``problems``: paths that could not be
        walked (listed as unusable)."""
        out, D = self.out, self.dim
        old_emb = None
        if (out / "embeddings.npy").is_file():
            old_emb = np.load(out / "embeddings.npy", mmap_mode="r")
        old_index: dict[int, dict] = {}
        if (out / "index.jsonl").is_file():
            for line in (out / "index.jsonl").read_text().splitlines():
                if line:
                    r = json.loads(line)
                    old_index[r["row"]] = r
        part_emb: dict[int, np.ndarray] = {}
        roots = sorted({r.root for r in refs})
        root_id = {r: i for i, r in enumerate(roots)}
        lines, err_lines, base, reasons = [], [], [], {}
        blocks: list[tuple[str, Any, int, int]] = []  # (kind, source, first, stop) copied in order
        n_rows = 0
        for vi, ref in enumerate(refs):
            e = latest[ref.abspath]
            entry = {"path": ref.abspath, "root": ref.root, "rel": ref.rel, "size": e.get("size"),
                     "mtime_ns": e.get("mtime_ns"), "status": e["status"]}
            if e["status"] == "bad":
                entry.update(reason=e["reason"], detail=e["detail"], retry=e["retry"])
                err_lines.append(json.dumps({"video": ref.rel, "root": root_id[ref.root], "video_index": vi,
                                             "reason": e["reason"], "detail": e["detail"], "retry": e["retry"]}))
                reasons[e["reason"]] = reasons.get(e["reason"], 0) + 1
                base.append(entry)
                continue
            src = sources[ref.abspath]
            if src["kind"] == "part":
                c, (a, b) = src["chunk"], e["part_rows"]
                rows = src["rows"][a:b]
                blocks.append(("part", c, a, b))
                tok_refs = [(f"tokens/{chunk_name(c)}.npy", a + j) for j in range(b - a)]
            else:  # kept from the previous output
                a, b = e["rows"]
                prev = [old_index[i] for i in range(a, b)]
                rows = [{key: r[key] for key in ("item", "start_s", "end_s", "frame_indices")} for r in prev]
                tok_refs = [(r.get("tokens"), r.get("tokens_row")) for r in prev]
                blocks.append(("old", None, a, b))
            for j, r in enumerate(rows):
                row = {"row": n_rows + j, "video": ref.rel, "root": root_id[ref.root], "video_index": vi, **r}
                if self.settings.tokens:
                    row["tokens"], row["tokens_row"] = tok_refs[j]
                lines.append(json.dumps(row))
            entry["rows"] = [n_rows, n_rows + len(rows)]
            n_rows += len(rows)
            base.append(entry)
        for p in problems:
            err_lines.append(json.dumps({"video": p["video"], "root": None, "video_index": None,
                                         "reason": p["reason"], "detail": p["detail"], "retry": True}))
            reasons[p["reason"]] = reasons.get(p["reason"], 0) + 1
        # embeddings: streamed into a memory map, so a large run never needs them all in memory
        M = n_rows
        if M:
            with atomic_path(out / "embeddings.npy") as tmp:
                mm = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float32, shape=(M, D))
                off = 0
                for kind, c, a, b in blocks:
                    if kind == "part":
                        if c not in part_emb:
                            part_emb[c] = np.load(out / "parts" / f"{chunk_name(c)}.npy")
                        mm[off:off + b - a] = part_emb[c][a:b]
                    else:
                        mm[off:off + b - a] = old_emb[a:b]
                    off += b - a
                mm.flush()
                del mm
        else:
            save_npy(out / "embeddings.npy", np.zeros((0, D), np.float32))
        write_bytes(out / "index.jsonl", "".join(x + "\n" for x in lines).encode())
        write_bytes(out / "errors.jsonl", "".join(x + "\n" for x in err_lines).encode())
        write_json(out / "videos.json", base)
        n_bad = len(err_lines)
        counts = {"videos": len(refs) + len(problems), "videos_ok": len(refs) + len(problems) - n_bad,
                  "videos_bad": n_bad, "items": M, "bad_reasons": dict(sorted(reasons.items())),
                  "chunks": meta_extra.pop("chunks")}
        meta = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "model": meta_extra["model"],
            "settings": meta_extra["settings"],
            "inputs": {"roots": roots},
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
        if self.settings.tokens:  # token files no kept row refers to any more
            used = {json.loads(x)["tokens"] for x in lines}
            for p in (out / "tokens").glob("*.npy"):
                if f"tokens/{p.name}" not in used:
                    p.unlink()
        return counts


# ----------------------------------------------------------------------------------------------------------
# reading a finished folder
# ----------------------------------------------------------------------------------------------------------
@dataclass
class EmbedResult:
    """What :func:`~internvideo2.embed.embed_videos` and :func:`~internvideo2.embed.load` return.

    Attributes:
        embeddings: ``float32 [M, D]`` (memory-mapped from ``OUT/embeddings.npy`` when an output folder
            was given).
        index: one dict per row: ``row``, ``video`` (relative to its input root), ``root`` (its index in
            ``meta["inputs"]["roots"]``), ``path`` (absolute), ``video_index``, ``item``, ``start_s``,
            ``end_s``, ``frame_indices`` (``tokens`` / ``tokens_row`` with tokens).
        errors: one dict per unusable video or path: ``video``, ``root``, ``path``, ``video_index``, ``reason``,
            ``detail``, ``retry`` (whether the next run tries it again).
        meta: the ``meta.json`` content (model, settings, inputs, counts, timing).
        out_dir: the output folder, or None for an in-memory run.
        token_arrays: with ``tokens=True``: ``{file name: [n, 1+N, C] array}`` (see :meth:`tokens_of`).
        status: ``"complete"``, ``"updated"`` (an earlier output of these settings was brought up to date with
            the inputs) or ``"already_complete"`` (nothing to do).
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
        """All tokens ``[M, 1+N, C]`` in row order (None without tokens)."""
        if self.token_arrays is None:
            return None
        if not self.index:
            shape = self.meta["outputs"]["token_shape"]
            return np.zeros((0, *shape), dtype=self.meta["outputs"]["tokens_dtype"])
        return np.stack([self.tokens_of(r["row"]) for r in self.index])

    def to_dataframe(self):
        """The index as a pandas DataFrame with an ``embedding`` column (needs pandas)."""
        import pandas as pd

        df = pd.DataFrame(self.index)
        df["embedding"] = list(np.asarray(self.embeddings))
        return df

    def to_parquet(self, path: str | os.PathLike) -> Path:
        """Write the index and the embeddings as one Parquet file (needs pyarrow): one row per item, the
        embedding as a fixed-size list column."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        cols = {k: [r.get(k) for r in self.index] for k in ("row", "video", "path", "video_index", "item",
                                                            "start_s", "end_s")}
        emb = np.asarray(self.embeddings, dtype=np.float32)
        table = pa.table({**cols, "frame_indices": [r["frame_indices"] for r in self.index],
                          "embedding": pa.FixedSizeListArray.from_arrays(pa.array(emb.reshape(-1)), emb.shape[1])})
        with atomic_path(path) as tmp:
            pq.write_table(table, tmp)
        return Path(path)


def load(out_dir: str | os.PathLike, *, in_memory: bool = False) -> EmbedResult:
    """Read an embed output folder: embeddings (memory-mapped unless ``in_memory``), the index and errors
    with absolute ``path`` s resolved from the recorded input roots, the metadata and the tokens. Raises
    :class:`ConfigError` when the folder holds no finished run."""
    out = Path(out_dir)
    if not (out / "meta.json").is_file():
        raise ConfigError("out_dir", f"{out}: no finished embed run here (meta.json missing)")
    try:
        meta = json.loads((out / "meta.json").read_text())
    except (ValueError, UnicodeDecodeError) as e:
        raise ConfigError("out_dir", f"{out / 'meta.json'}: unreadable ({e})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise ConfigError("out_dir", f"{out}: not an embed output (format {meta.get('format')!r})")
    mmap = None if in_memory else "r"
    try:
        emb = np.load(out / "embeddings.npy", mmap_mode=mmap if meta["counts"]["items"] else None)
        roots = meta.get("inputs", {}).get("roots", [])
    except (KeyError, TypeError) as e:
        raise ConfigError("out_dir", f"{out}: incomplete embed metadata (missing {e})") from None
    except ValueError as e:  # a truncated or foreign .npy
        raise ConfigError("out_dir", f"{out / 'embeddings.npy'}: unreadable ({e})") from None

    def resolve(r: dict) -> dict:
        root = r.get("root")
        r["path"] = os.path.join(roots[root], r["video"]) if isinstance(root, int) and root < len(roots) \
            else r["video"]
        return r

    def rows(name: str) -> list[dict]:
        out_rows = []
        for k, line in enumerate((out / name).read_text().splitlines()):
            if line:
                try:
                    out_rows.append(resolve(json.loads(line)))
                except (ValueError, AttributeError) as e:
                    raise ConfigError("out_dir", f"{out / name}: line {k + 1} unreadable ({e})") from None
        return out_rows

    try:
        index, errors = rows("index.jsonl"), rows("errors.jsonl")
        if len(index) != len(emb):
            raise ConfigError("out_dir", f"{out}: index.jsonl has {len(index)} rows for {len(emb)} embeddings")
        tok = None
        if meta["settings"]["tokens"]:
            tok = {name: np.load(out / name, mmap_mode=mmap) for name in sorted({r["tokens"] for r in index})}
    except (KeyError, TypeError) as e:
        raise ConfigError("out_dir", f"{out}: incomplete embed metadata (missing {e})") from None
    return EmbedResult(np.asarray(emb) if in_memory else emb, index, errors, meta, str(out), tok)
