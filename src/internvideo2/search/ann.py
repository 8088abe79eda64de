"""Vector search over an index's embeddings: exact (one matrix product) for small indexes, an approximate
nearest-neighbour index (FAISS ``IndexIVFFlat``, inner product) above :data:`ANN_THRESHOLD` items.

**Why IVF-Flat.** Measured on this 2-core machine with 256-d unit vectors (``benchmarks/bench_search.py``):
an IVF-Flat index of 1M vectors builds in about 40 s (spherical k-means on a sample, then one assignment
pass), an HNSW graph (M=32) in several minutes and about 25% more memory; both answer a query in 1-3 ms at
recall@10 >= 0.95 on clustered data. The build matters because the index is rebuilt whenever the store
changes (:func:`load_or_build`); IVF also keeps the exact inner products (its lists hold the full vectors: no
compression error, nothing to re-score) and degrades gracefully: ``nprobe = nlist`` *is* exact search, which
is the fallback when a query needs more results than the probed lists hold. IVF-PQ would cut memory 8-32x at
a recall cost; not needed below tens of millions of items.

**Parameters** (:meth:`AnnParams.for_size`): ``nlist = 2 sqrt(N)`` lists (at most ``N / 39``: k-means wants
39 training points per centroid), spherical k-means (centroids normalised, so inner-product assignment is
consistent) on a seeded sample of ``50 nlist`` vectors, 10 iterations; ``nprobe = max(16, 3% of nlist)``.

**The cache.** The built index is written to ``INDEX/ann/ivf-<key>.faiss`` with a sidecar ``.json`` (the key,
the file's size and BLAKE2b), both atomically (:func:`internvideo2.utils.io.atomic_path`), the sidecar last.
The key is a digest of the store's ``version`` (it increases with every committed change), its item count
and id range/sum, the vector width, the model's weights digest and the parameters: a changed store never
matches an old file. A cache file is used only when its sidecar matches, its checksum is right, FAISS reads
it, its type/width/count/metric are the store's, and 16 stored vectors (read from the store) are found in it
under their ids with their exact scores; anything else is logged and the index rebuilt. A folder that
cannot be written keeps the index in memory only.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ConfigError
from ..utils.io import atomic_path, write_json
from .store import IndexStore

log = logging.getLogger("internvideo2.search")

#: items above which ``Index.search`` uses the ANN index (exact search at or below). On this 2-core machine
#: exact search costs about 5 ms per 100k 256-d vectors (memory bound); above this it is no longer cheap.
#: Override per index with ``Index(..., ann_threshold=N)``.
ANN_THRESHOLD = 200_000
#: lists per square root of the item count
NLIST_PER_SQRT = 2.0
#: fraction of the lists probed per query (at least :data:`MIN_NPROBE`)
NPROBE_FRACTION = 0.03
MIN_NPROBE = 16
#: k-means sample: this many vectors per list (FAISS warns below 39)
TRAIN_PER_LIST = 50
KMEANS_ITERS = 10
SEED = 0
#: the cache folder inside an index folder
CACHE_DIR = "ann"
#: bumped when the cache file's meaning changes (old files then never match)
CACHE_FORMAT = 1
#: stored vectors checked against a cache file before it is trusted
SPOT_CHECKS = 16


def faiss_available() -> bool:
    """Whether ``faiss`` (the ``search`` extra: ``pip install 'internvideo2[search]'``) can be imported."""
    try:
        import faiss  # noqa: F401
    except ImportError:
        return False
    return True


def _faiss():
    try:
        import faiss
    except ImportError:
        raise ConfigError("exact", "approximate search needs faiss: pip install 'internvideo2[search]' "
                                   "(or search exactly)") from None
    return faiss


# ---------------------------------------------------------------------------------------------- exact search
def exact_search(vectors: np.ndarray, ids: np.ndarray, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-``k`` by inner product: ``vectors float32 [N, D]``, ``ids int64 [N]``, ``queries float32
    [Q, D]`` (or ``[D]``) -> ``(ids int64 [Q, k'], scores float32 [Q, k'])``, ``k' = min(k, N)``, best first;
    equal scores ordered by id (deterministic)."""
    q = np.atleast_2d(np.asarray(queries, dtype=np.float32))
    k = min(int(k), len(ids))
    out_ids = np.empty((len(q), k), np.int64)
    out_scores = np.empty((len(q), k), np.float32)
    if k == 0:
        return out_ids, out_scores
    block = max(1, (1 << 26) // max(1, len(ids)))  # queries per product: scores of at most 256 MB at a time
    for b in range(0, len(q), block):
        scores = q[b:b + block] @ vectors.T  # [Qb, N]: one matrix product
        top = np.argpartition(-scores, k - 1, axis=1)[:, :k] if k < len(ids) else \
            np.broadcast_to(np.arange(len(ids)), scores.shape)
        for r in range(len(scores)):
            s = scores[r, top[r]]
            order = np.lexsort((ids[top[r]], -s))  # best first, equal scores by id
            out_ids[b + r] = ids[top[r][order]]
            out_scores[b + r] = s[order]
    return out_ids, out_scores


# ------------------------------------------------------------------------------------------------ parameters
@dataclass(frozen=True)
class AnnParams:
    """IVF-Flat parameters: ``nlist`` lists, ``nprobe`` probed per query, k-means ``train_size`` /
    ``niter`` / ``seed``."""

    nlist: int
    nprobe: int
    train_size: int
    niter: int = KMEANS_ITERS
    seed: int = SEED

    @classmethod
    def for_size(cls, n: int) -> AnnParams:
        """The defaults for ``n`` vectors (module doc)."""
        if n < 1:
            raise ConfigError("index", "an ANN index needs at least one vector")
        nlist = max(1, min(int(round(NLIST_PER_SQRT * math.sqrt(n))), n // 39, 65536))
        nprobe = min(nlist, max(MIN_NPROBE, math.ceil(NPROBE_FRACTION * nlist)))
        return cls(nlist=nlist, nprobe=nprobe, train_size=min(n, TRAIN_PER_LIST * nlist))


# ----------------------------------------------------------------------------------------------- the index
class IVFIndex:
    """A FAISS ``IndexIVFFlat`` (inner product) over the store's vectors, keyed by the store's ids."""

    def __init__(self, index: Any, params: AnnParams, key: dict[str, Any] | None = None):
        self.index = index
        self.params = params
        self.key = key

    @property
    def ntotal(self) -> int:
        return int(self.index.ntotal)

    @property
    def dim(self) -> int:
        return int(self.index.d)

    @classmethod
    def build(cls, ids: np.ndarray, vectors: np.ndarray, params: AnnParams | None = None,
              key: dict[str, Any] | None = None) -> IVFIndex:
        """Train (spherical k-means on a seeded sample) and fill: ``ids int64 [N]``, ``vectors float32 [N, D]``."""
        faiss = _faiss()
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        n, d = vectors.shape
        params = params or AnnParams.for_size(n)
        quantizer = faiss.IndexFlatIP(d)
        index = faiss.IndexIVFFlat(quantizer, d, params.nlist, faiss.METRIC_INNER_PRODUCT)
        index.own_fields = True  # the IVF index frees its quantizer
        quantizer.this.disown()
        index.cp.niter = params.niter
        index.cp.seed = params.seed
        index.cp.spherical = True  # unit-norm centroids: assignment by inner product picks the closest cone
        index.cp.max_points_per_centroid = max(1, -(-params.train_size // params.nlist))
        rows = np.random.default_rng(params.seed).choice(n, params.train_size, replace=False) \
            if params.train_size < n else np.arange(n)
        index.train(vectors[np.sort(rows)])
        index.add_with_ids(vectors, np.ascontiguousarray(ids, dtype=np.int64))
        index.nprobe = params.nprobe
        return cls(index, params, key)

    def search(self, queries: np.ndarray, k: int, nprobe: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """``queries float32 [Q, D]`` -> ``(ids int64 [Q, k], scores float32 [Q, k])``, best first; ids are -1
        where the probed lists held fewer than ``k`` vectors (``nprobe = nlist`` scans everything)."""
        faiss = _faiss()
        q = np.ascontiguousarray(np.atleast_2d(queries), dtype=np.float32)
        sp = faiss.SearchParametersIVF(nprobe=int(min(nprobe or self.params.nprobe, self.params.nlist)))
        scores, ids = self.index.search(q, int(k), params=sp)
        return ids.astype(np.int64, copy=False), scores.astype(np.float32, copy=False)

    def search_complete(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`search`, then again probing every list (exact) for queries that came back short."""
        ids, scores = self.search(queries, k)
        short = (ids < 0).any(axis=1)
        if short.any():
            ids[short], scores[short] = self.search(np.atleast_2d(queries)[short], k, nprobe=self.params.nlist)
        return ids, scores

    def write(self, path: str | os.PathLike) -> None:
        faiss = _faiss()
        with atomic_path(path) as tmp:
            faiss.write_index(self.index, str(tmp))

    @classmethod
    def read(cls, path: str | os.PathLike, params: AnnParams, key: dict[str, Any] | None = None) -> IVFIndex:
        faiss = _faiss()
        index = faiss.read_index(str(path))  # already the concrete class (a downcast copy would dangle)
        if not isinstance(index, faiss.IndexIVFFlat):
            raise ValueError(f"a {type(index).__name__}, not an IndexIVFFlat")
        index.nprobe = params.nprobe
        return cls(index, params, key)


# ----------------------------------------------------------------------------------------------- the cache
def store_key(store: IndexStore, params: AnnParams | None = None) -> dict[str, Any]:
    """What a cache file must match: the store's version, count, id range and sum, a digest of its videos
    table (paths, sizes, mtimes, content hashes: what the items were made from), the vector width, the
    model's weights and the item settings, and the ANN parameters (``params=None``: the defaults for the
    count). The version alone could repeat in a store deleted and built again."""
    version = store.version
    n, lo, hi, total = store.db.execute("SELECT COUNT(*), MIN(id), MAX(id), TOTAL(id) FROM items").fetchone()
    h = hashlib.sha256()
    for row in store.db.execute("SELECT path, size, mtime_ns, sha256, status FROM videos ORDER BY path"):
        h.update(json.dumps(row).encode())
    meta = store.meta()
    model = meta.get("model") if isinstance(meta.get("model"), dict) else {}
    settings = hashlib.sha256(json.dumps(meta.get("settings"), sort_keys=True).encode()).hexdigest()
    params = params or (AnnParams.for_size(n) if n else None)
    return {"format": CACHE_FORMAT, "version": version, "count": int(n), "id_min": lo, "id_max": hi,
            "id_sum": float(total), "videos": h.hexdigest(), "dim": meta.get("dim"),
            "model": model.get("weights_sha256"), "settings": settings,
            "params": asdict(params) if params else None}


def _digest(key: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:20]


def _file_digest(path: Path) -> str:
    h = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as f:
        while chunk := f.read(1 << 23):
            h.update(chunk)
    return h.hexdigest()


def cache_paths(index_dir: str | os.PathLike, key: dict[str, Any]) -> tuple[Path, Path]:
    """``(index file, sidecar)`` of ``key`` in an index folder."""
    base = Path(index_dir) / CACHE_DIR / f"ivf-{_digest(key)}"
    return base.with_suffix(".faiss"), base.with_suffix(".json")


def _vectors_at(store: IndexStore, ids: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """The stored items at or after each of ``ids`` (the first id >= each): ``(ids [n], vectors [n, D])``.
    Reads the fixed schema directly (``items.embedding`` is float32 little-endian)."""
    got: dict[int, np.ndarray] = {}
    for i in ids:
        row = store.db.execute("SELECT id, embedding FROM items WHERE id >= ? ORDER BY id LIMIT 1",
                               (int(i),)).fetchone()
        if row is not None:
            got[int(row[0])] = np.frombuffer(row[1], dtype="<f4").astype(np.float32)
    keys = sorted(got)
    return np.array(keys, np.int64), np.stack([got[i] for i in keys]) if keys else np.zeros((0, 0), np.float32)


def verify(ann: IVFIndex, store: IndexStore, key: dict[str, Any]) -> str | None:
    """Why ``ann`` is not an index of ``store`` (None when it is): width, count, metric, list count, and
    :data:`SPOT_CHECKS` stored vectors found under their ids with their exact scores."""
    faiss = _faiss()
    if ann.dim != int(key["dim"] or -1):
        return f"width {ann.dim}, the store's is {key['dim']}"
    if ann.ntotal != key["count"]:
        return f"{ann.ntotal} vectors, the store has {key['count']}"
    if ann.index.metric_type != faiss.METRIC_INNER_PRODUCT or ann.index.nlist != ann.params.nlist:
        return "not an inner-product index with the expected lists"
    rng = np.random.default_rng(int(key["version"]))
    probe_ids, vecs = _vectors_at(store, rng.integers(int(key["id_min"]), int(key["id_max"]) + 1, SPOT_CHECKS).tolist())
    if len(probe_ids) == 0:
        return "no stored vector to check"
    found, scores = ann.search(vecs, 4, nprobe=min(4, ann.params.nlist))
    for i, v, f, s in zip(probe_ids, vecs, found, scores):
        own = float(v @ v)
        hit = np.nonzero(f == i)[0]
        # a vector's own list is probed first (same quantizer); an exact duplicate may take its place
        if len(hit) == 0 and not abs(float(s[0]) - own) <= 1e-4 * max(1.0, own):
            return f"stored item {i} is not in it"
        if len(hit) and abs(float(s[hit[0]]) - own) > 1e-4 * max(1.0, own):
            return f"item {i} has another vector in it"
    return None


def _try_load(store: IndexStore, key: dict[str, Any], params: AnnParams) -> IVFIndex | None:
    path, side = cache_paths(store.dir, key)
    if not path.is_file() and not side.is_file():
        return None
    try:
        info = json.loads(side.read_text())
        if info.get("key") != key:
            raise ValueError("its sidecar describes another store state")
        if info.get("size") != path.stat().st_size or info.get("blake2b") != _file_digest(path):
            raise ValueError("its checksum does not match (a damaged file)")
        ann = IVFIndex.read(path, params, key)
        why = verify(ann, store, key)
        if why:
            raise ValueError(why)
        return ann
    except Exception as e:  # a cache is never trusted: any doubt means a rebuild
        log.warning("%s: ANN cache not used (%s: %s); rebuilding it", path, type(e).__name__, e)
        return None


def _write_cache(store: IndexStore, ann: IVFIndex, key: dict[str, Any]) -> bool:
    path, side = cache_paths(store.dir, key)
    try:
        path.parent.mkdir(exist_ok=True)
        ann.write(path)
        write_json(side, {"key": key, "size": path.stat().st_size, "blake2b": _file_digest(path)})
    except OSError as e:
        log.warning("%s: cannot write the ANN cache (%s); keeping the index in memory only", path.parent, e)
        return False
    # older states' files are dead weight (a reader still on an older state rebuilds in memory)
    for p in path.parent.glob("ivf-*"):
        if p not in (path, side) and p.suffix in (".faiss", ".json"):
            with contextlib.suppress(OSError):
                p.unlink()
    return True


def load_or_build(store: IndexStore, *, params: AnnParams | None = None, cache: bool = True,
                  retries: int = 3) -> tuple[IVFIndex, np.ndarray | None, np.ndarray | None, str]:
    """The ANN index of the store's current state: from the cache when a valid one exists, else built from
    the stored vectors (and cached when ``cache`` and the folder is writable).

    Returns ``(index, ids, vectors, how)``: ``ids int64 [N]`` / ``vectors float32 [N, D]`` when they were
    read to build it (None when loaded), ``how`` in ``cached`` / ``built``. Raises :class:`ConfigError` for an
    empty store or without faiss.
    """
    _faiss()
    for _ in range(max(1, retries)):
        key = store_key(store, params)
        if key["count"] == 0:
            raise ConfigError("index", f"{store.dir}: the index is empty")
        p = params or AnnParams.for_size(key["count"])
        if cache:
            ann = _try_load(store, key, p)
            if ann is not None:
                return ann, None, None, "cached"
        ids, vecs = store.embeddings()
        if store_key(store, params) != key:  # a writer committed while we read: read the new state
            continue
        ann = IVFIndex.build(ids, vecs, p, key)
        if cache:
            _write_cache(store, ann, key)
        return ann, ids, vecs, "built"
    raise ConfigError("index", f"{store.dir}: the store keeps changing while its ANN index is built; retry "
                               "when the indexing run is done")


__all__ = ["ANN_THRESHOLD", "AnnParams", "IVFIndex", "exact_search", "faiss_available", "load_or_build",
           "store_key", "verify", "cache_paths"]
