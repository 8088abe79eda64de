"""The index store: one SQLite file (``INDEX/store.sqlite``, Python's own ``sqlite3``: no server, no extra
dependency, transactional) holding, per item, the video path, start/end seconds, a JPEG thumbnail of its
middle frame and the embedding; per indexed video, its identity on disk; and the index's metadata (the model
that made the embeddings, the settings).

Why SQLite (+ NumPy / FAISS for the vectors, see :mod:`.index`): every update is one transaction, so an index
killed at any point is either the old one or the new one, never half of each; files are found by path with a
primary key; thumbnails live beside their rows; the vectors are read once into a ``float32 [N, D]`` matrix for
exact search (an ANN index is built from it above a size threshold). A vector database with a server was not
an option (no server may be required); LanceDB would add a large dependency for what SQLite does here.

Schema (``SCHEMA_VERSION`` 1)::

    meta(key TEXT PRIMARY KEY, value TEXT)           JSON values: "format", "schema", "model" (identity),
                                                     "settings" (how items were cut and embedded), "dim"
    videos(path TEXT PRIMARY KEY, size INTEGER, mtime_ns INTEGER, sha256 TEXT, status TEXT, detail TEXT)
                                                     status "ok" or the MediaError reason of an unusable file
    items(id INTEGER PRIMARY KEY, path TEXT, start_s REAL, end_s REAL, embedding BLOB, thumbnail BLOB)
                                                     embedding: float32 little-endian [dim]; thumbnail: JPEG
                                                     items of one video are contiguous, ordered by start

``version`` (``PRAGMA user_version``) increases with every committed change; caches key on it.
"""
from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ConfigError

FORMAT = "internvideo2-index"
SCHEMA_VERSION = 1
STORE_FILE = "store.sqlite"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS videos(path TEXT PRIMARY KEY, size INTEGER NOT NULL, mtime_ns INTEGER NOT NULL,
                                  sha256 TEXT NOT NULL, status TEXT NOT NULL, detail TEXT);
CREATE TABLE IF NOT EXISTS items(id INTEGER PRIMARY KEY, path TEXT NOT NULL, start_s REAL NOT NULL,
                                 end_s REAL NOT NULL, embedding BLOB NOT NULL, thumbnail BLOB);
CREATE INDEX IF NOT EXISTS items_path ON items(path, start_s);
"""


@dataclass(frozen=True)
class Item:
    """One indexed item: ``path`` (absolute), ``start_s`` / ``end_s`` (seconds in the video), ``id``."""

    id: int
    path: str
    start_s: float
    end_s: float


@dataclass(frozen=True)
class VideoState:
    """An indexed video's identity on disk and status (``ok`` or the reason it is unusable)."""

    path: str
    size: int
    mtime_ns: int
    sha256: str
    status: str = "ok"
    detail: str | None = None


class IndexStore:
    """``IndexStore(INDEX_DIR)`` opens (``create=True``: creates) the store of an index folder.

    Reading: :meth:`meta`, :meth:`count`, :meth:`items`, :meth:`embeddings`, :meth:`thumbnail`,
    :meth:`videos`, :meth:`is_indexed`, :attr:`version`. Writing: :meth:`transaction` then
    :meth:`set_meta`, :meth:`put_video` (replaces the video's items), :meth:`remove_video`.
    """

    def __init__(self, directory: str | os.PathLike, *, create: bool = False, readonly: bool = False):
        self.dir = Path(directory)
        self.path = self.dir / STORE_FILE
        if not self.path.is_file():
            if not create:
                raise ConfigError("index", f"{self.dir}: not an index (no {STORE_FILE}); build one with "
                                           "`internvideo2 index VIDEOS --model M -o INDEX`")
            self.dir.mkdir(parents=True, exist_ok=True)
        uri = f"file:{self.path}?mode=ro" if readonly else f"file:{self.path}"
        try:
            self.db = sqlite3.connect(uri, uri=True, check_same_thread=False, isolation_level=None)
            self.db.execute("PRAGMA journal_mode=WAL" if not readonly else "PRAGMA query_only=1")
            if not readonly:
                self.db.executescript(_SCHEMA)
            fmt = self.meta().get("format")
        except sqlite3.DatabaseError as e:
            raise ConfigError("index", f"{self.path}: not a readable index store ({e})") from None
        if fmt not in (None, FORMAT):
            raise ConfigError("index", f"{self.path}: format {fmt!r}, expected {FORMAT!r}")

    # ------------------------------------------------------------------ reading
    @property
    def version(self) -> int:
        return int(self.db.execute("PRAGMA user_version").fetchone()[0])

    def meta(self) -> dict[str, Any]:
        try:
            return {k: json.loads(v) for k, v in self.db.execute("SELECT key, value FROM meta")}
        except sqlite3.OperationalError:  # an empty read-only file
            return {}

    def count(self) -> int:
        return int(self.db.execute("SELECT COUNT(*) FROM items").fetchone()[0])

    def items(self, ids: Sequence[int] | None = None) -> list[Item]:
        """Items by id (in the order given), or all of them in id order."""
        if ids is None:
            rows = self.db.execute("SELECT id, path, start_s, end_s FROM items ORDER BY id").fetchall()
            return [Item(*r) for r in rows]
        found = {}
        for chunk in _chunks(list(ids), 500):
            q = f"SELECT id, path, start_s, end_s FROM items WHERE id IN ({','.join('?' * len(chunk))})"
            found.update({r[0]: Item(*r) for r in self.db.execute(q, chunk)})
        missing = [i for i in ids if i not in found]
        if missing:
            raise KeyError(f"no item {missing[0]} in {self.path}")
        return [found[i] for i in ids]

    def embeddings(self) -> tuple[np.ndarray, np.ndarray]:
        """``(ids int64 [N], vectors float32 [N, D])`` in id order."""
        dim = int(self.meta().get("dim") or 0)
        rows = self.db.execute("SELECT id, embedding FROM items ORDER BY id").fetchall()
        ids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
        if not rows:
            return ids, np.zeros((0, dim), np.float32)
        vecs = np.frombuffer(b"".join(r[1] for r in rows), dtype="<f4").reshape(len(rows), -1)
        return ids, vecs.astype(np.float32, copy=True)

    def thumbnail(self, item_id: int) -> bytes | None:
        row = self.db.execute("SELECT thumbnail FROM items WHERE id = ?", (int(item_id),)).fetchone()
        if row is None:
            raise KeyError(f"no item {item_id} in {self.path}")
        return row[0]

    def videos(self) -> dict[str, VideoState]:
        return {r[0]: VideoState(*r) for r in self.db.execute(
            "SELECT path, size, mtime_ns, sha256, status, detail FROM videos ORDER BY path")}

    def is_indexed(self, path: str | os.PathLike) -> bool:
        """Whether ``path`` (absolute) is a video with items in this index: what ``serve`` may send."""
        row = self.db.execute("SELECT 1 FROM items WHERE path = ? LIMIT 1", (str(path),)).fetchone()
        return row is not None

    # ------------------------------------------------------------------ writing
    def transaction(self) -> _Transaction:
        """``with store.transaction():`` groups writes; they all land (and ``version`` increases) or none."""
        return _Transaction(self.db)

    def set_meta(self, **values: Any) -> None:
        self.db.executemany("INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)",
                            [(k, json.dumps(v, sort_keys=True)) for k, v in values.items()])

    def put_video(self, state: VideoState, items: Iterable[tuple[float, float, np.ndarray, bytes | None]]) -> None:
        """Record ``state`` and replace the video's items with ``(start_s, end_s, embedding [D], jpeg)``."""
        self.remove_video(state.path)
        self.db.execute("INSERT INTO videos(path, size, mtime_ns, sha256, status, detail) VALUES (?,?,?,?,?,?)",
                        (state.path, state.size, state.mtime_ns, state.sha256, state.status, state.detail))
        self.db.executemany("INSERT INTO items(path, start_s, end_s, embedding, thumbnail) VALUES (?,?,?,?,?)",
                            [(state.path, float(s), float(e), np.asarray(v, dtype="<f4").tobytes(), j)
                             for s, e, v, j in items])

    def remove_video(self, path: str) -> None:
        self.db.execute("DELETE FROM items WHERE path = ?", (path,))
        self.db.execute("DELETE FROM videos WHERE path = ?", (path,))

    def close(self) -> None:
        self.db.close()


class _Transaction:
    def __init__(self, db: sqlite3.Connection):
        self.db = db

    def __enter__(self):
        self.db.execute("BEGIN IMMEDIATE")
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:
            v = int(self.db.execute("PRAGMA user_version").fetchone()[0])
            self.db.execute(f"PRAGMA user_version = {v + 1}")
            self.db.execute("COMMIT")
        else:
            self.db.execute("ROLLBACK")
        return False


def _chunks(xs: list, n: int):
    for i in range(0, len(xs), n):
        yield xs[i:i + n]
