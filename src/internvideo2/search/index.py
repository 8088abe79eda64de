"""Searching an index: :class:`Index` (the Python API behind ``internvideo2 search`` and ``serve``).

``Index(INDEX)`` opens the store read-only and loads the model recorded in it (or takes one you pass, which
must be the same model: :func:`model_identity`); ``search("a red star moving left", k=10)`` embeds the query
with the model's text tower and returns the best items as :class:`Hit` s, best first.

- **Vector search** (:mod:`.ann`): exact (one matrix product over the stored vectors) up to
  ``ann_threshold`` items (default :data:`.ann.ANN_THRESHOLD`), an IVF-Flat index above it, built once per
  store state and cached in ``INDEX/ann/``. ``exact=True`` forces exact search, ``exact=False`` the ANN index.
  The vectors (or the ANN index) are loaded on the first query, or by :meth:`Index.prepare`, and reloaded
  when the store changes (its ``version``).
- **ITM re-ranking** (``rerank=True``, models with ``has_itm``, i.e. stage 2): the top ``rerank_k``
  (default ``max(k, 16)``) items by cosine are decoded again from their files with the frames the index
  embedded (the same :func:`~internvideo2.embed.planning.plan_items` and decoding as ``embed``), run through
  ``forward_video`` and scored with ``itm_logits``; the score becomes the ITM match probability. An item whose
  file is gone, changed since indexing or no longer decodes is **skipped and reported**
  (:attr:`SearchResult.skipped`, a warning in the log): the other results stay useful, and re-running
  ``internvideo2 index`` brings the index up to date.

Thread-safe: ``serve`` calls one :class:`Index` from several threads (the model runs one call at a time).
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..errors import ConfigError, MediaError
from ..utils.io import jsonable
from . import ann as ann_mod
from .store import IndexStore, Item, VideoState

log = logging.getLogger("internvideo2.search")

#: longest query accepted (characters); the text towers read at most a few dozen tokens anyway
MAX_QUERY_CHARS = 2000
#: items re-scored by ITM when ``rerank_k`` is not given: ``max(k, DEFAULT_RERANK_K)``
DEFAULT_RERANK_K = 16
#: most candidates one re-ranking decodes (their clips are held in memory together)
MAX_RERANK_K = 256


@dataclass(frozen=True)
class Hit:
    """A search result: the item (``id``, ``path``, ``start_s``, ``end_s``) and its ``score`` (cosine in the
    model's video-text space; ITM match probability after ``rerank``)."""

    id: int
    path: str
    start_s: float
    end_s: float
    score: float

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "path": self.path, "start_s": round(self.start_s, 3), "end_s": round(self.end_s, 3),
                "score": round(float(self.score), 6)}


@dataclass(frozen=True)
class SkippedItem:
    """An item re-ranking could not score: its file is ``missing``, ``changed`` since indexing, or cannot be
    decoded (the :class:`MediaError` reason); ``detail`` says more."""

    id: int
    path: str
    reason: str
    detail: str = ""

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass
class SearchResult:
    """What :meth:`Index.search_result` returns.

    ``hits`` best first; ``method``: ``exact`` or ``ann`` (how the candidates were found); ``reranked``:
    whether scores are ITM probabilities; ``skipped``: items re-ranking left out; ``seconds``: ``encode``
    (query embedding), ``search`` (vector search, including a first load/build), ``rerank``, ``assemble``
    (reading the hits' rows), ``total``.
    """

    hits: list[Hit]
    method: str
    reranked: bool = False
    skipped: list[SkippedItem] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"hits": [h.to_json() for h in self.hits], "method": self.method, "reranked": self.reranked,
                "skipped": [s.to_json() for s in self.skipped],
                "seconds": {k: round(v, 6) for k, v in self.seconds.items()}}


def model_identity(model: nn.Module, source: str | os.PathLike | None = None) -> dict[str, Any]:
    """What makes embeddings comparable: the model type, a sha256 of its config and a sha256 of its
    weights (every tensor's name, dtype, shape and bytes, in name order); ``source`` is informative only."""
    h = hashlib.sha256()
    for name, t in sorted(model.state_dict().items()):
        t = t.detach().to("cpu").contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")  # 0-dim: reshape first
    cfg = json.dumps(jsonable(getattr(model, "config", None)), sort_keys=True, default=str)
    return {"model_type": getattr(model, "model_type", type(model).__name__),
            "config_sha256": hashlib.sha256(cfg.encode()).hexdigest(), "weights_sha256": h.hexdigest(),
            "source": str(source) if source is not None else None}


def same_model(a: dict[str, Any], b: dict[str, Any]) -> bool:
    return all(a.get(k) == b.get(k) for k in ("model_type", "config_sha256", "weights_sha256"))


@dataclass
class _State:
    """What one store ``version`` has loaded: the exact vectors and/or the ANN index, the videos table."""

    version: int
    count: int
    ids: np.ndarray | None = None  # int64 [N]
    vectors: np.ndarray | None = None  # float32 [N, D]
    ann: ann_mod.IVFIndex | None = None
    videos: dict[str, VideoState] | None = None


class Index:
    """A searchable index folder.

    Args:
        path: the index folder (``internvideo2 index ... -o PATH``).
        model: the model to embed queries with (a loaded model or anything ``load_model`` accepts); default:
            the ``source`` recorded in the index. Another model than the one that built the index is refused.
        device: where the model runs.
        ann_threshold: item count above which searches use the ANN index (default
            :data:`internvideo2.search.ann.ANN_THRESHOLD`).
        cache_ann: keep the ANN index in ``INDEX/ann/`` across processes (False: in memory only).
    """

    def __init__(self, path: str | os.PathLike, model: nn.Module | str | os.PathLike | None = None,
                 device: str = "cpu", *, ann_threshold: int | None = None, cache_ann: bool = True):
        from ..checkpoint.loader import load_model

        self.path = Path(path)
        self.store = IndexStore(self.path, readonly=True)
        self.meta = self.store.meta()
        recorded = self.meta.get("model")
        if not isinstance(recorded, dict):
            raise ConfigError("index", f"{self.path}: the index records no model (an unfinished build?)")
        if model is None:
            if not recorded.get("source"):
                raise ConfigError("model", f"{self.path}: give the model the index was built with")
            model = recorded["source"]
        if not isinstance(model, nn.Module):
            source, model = model, load_model(model, device=device)
        else:
            source = None
        if not getattr(model, "has_text", False):
            raise ConfigError("model", f"a {getattr(model, 'model_type', '?')} model has no text tower: it cannot "
                                       "embed queries")
        mine = model_identity(model, source)
        if not same_model(mine, recorded):
            raise ConfigError("model", f"{source or 'the given model'} is not the model this index was built with "
                                       f"({recorded.get('source')}: {recorded.get('model_type')}, weights sha256 "
                                       f"{str(recorded.get('weights_sha256'))[:12]}...); its embeddings are not "
                                       "comparable")
        threshold = ann_mod.ANN_THRESHOLD if ann_threshold is None else ann_threshold
        if isinstance(threshold, bool) or not isinstance(threshold, int) or threshold < 0:
            raise ConfigError("ann_threshold", f"must be an integer >= 0, got {ann_threshold!r}")
        self.ann_threshold = threshold
        self.cache_ann = bool(cache_ann)
        self.model = model.eval()
        self.device = torch.device(device)
        self._lock = threading.RLock()  # the loaded state
        self._model_lock = threading.Lock()  # one model call at a time (threads would only share the cores)
        self._state: _State | None = None
        self._plans: OrderedDict[tuple, tuple[Any, list[dict]]] = OrderedDict()
        self._warned_no_faiss = False

    # ------------------------------------------------------------------ state
    def __len__(self) -> int:
        return self.store.count()

    def __enter__(self) -> Index:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self.store.close()

    def _current(self) -> _State:
        """The state of the store's current version (a fresh, empty one when the store changed)."""
        v = self.store.version
        if self._state is None or self._state.version != v:
            self._state = _State(v, self.store.count())
        return self._state

    def _use_ann(self, count: int, exact: bool | None) -> bool:
        if exact is not None and not isinstance(exact, bool):
            raise ConfigError("exact", f"must be True, False or None, got {exact!r}")
        if exact is not None:
            return not exact
        if count <= self.ann_threshold:
            return False
        if not ann_mod.faiss_available():
            if not self._warned_no_faiss:
                log.warning("%s: %d items but faiss is not installed: searching exactly (pip install "
                            "'internvideo2[search]' for the ANN index)", self.path, count)
                self._warned_no_faiss = True
            return False
        return True

    def _ready(self, exact: bool | None) -> tuple[_State, bool]:
        """The current state with what a search needs loaded: ``(state, use_ann)``."""
        with self._lock:
            for _ in range(3):
                st = self._current()
                use_ann = st.count > 0 and self._use_ann(st.count, exact)
                if use_ann and st.ann is None:
                    ann, _ids, _vecs, how = ann_mod.load_or_build(self.store, cache=self.cache_ann)
                    if ann.key is None or ann.key["version"] != st.version:
                        self._state = None  # the store moved on while we built: take its new state
                        continue
                    log.info("%s: ANN index %s (%d lists, %d probed)", self.path, how, ann.params.nlist,
                             ann.params.nprobe)
                    st.ann = ann  # the vectors read to build it are dropped: 1M items are 1 GB
                elif not use_ann and st.vectors is None and st.count > 0:
                    ids, vecs = self.store.embeddings()
                    if self.store.version != st.version or len(ids) != st.count:
                        self._state = None
                        continue
                    st.ids, st.vectors = ids, vecs
                return st, use_ann
        raise ConfigError("index", f"{self.path}: the store keeps changing; retry when the indexing run is done")

    def prepare(self, exact: bool | None = None) -> str:
        """Load the vectors (or load/build the ANN index) now rather than on the first query; returns the
        method the next search will use (``exact`` / ``ann``)."""
        return "ann" if self._ready(exact)[1] else "exact"

    # ------------------------------------------------------------------ queries
    def _check_query(self, query: str) -> str:
        if not isinstance(query, str) or not query.strip():
            raise ConfigError("query", "must be a non-empty text")
        if len(query) > MAX_QUERY_CHARS:
            raise ConfigError("query", f"{len(query)} characters; at most {MAX_QUERY_CHARS}")
        return query

    @torch.no_grad()
    def _encode(self, query: str):
        with self._model_lock:
            return self.model.encode_texts([self._check_query(query)])

    def embed_query(self, query: str) -> np.ndarray:
        """``float32 [D]``: the query in the index's space (L2-normalised)."""
        return self._encode(query).embeds[0].float().cpu().numpy()

    def search(self, query: str, k: int = 10, *, rerank: bool = False, rerank_k: int | None = None,
               exact: bool | None = None) -> list[Hit]:
        """The ``k`` best items for ``query``, best first. See :meth:`search_result` (this is its ``hits``; items
        re-ranking skipped are logged as warnings here)."""
        res = self.search_result(query, k, rerank=rerank, rerank_k=rerank_k, exact=exact)
        for s in res.skipped:
            log.warning("%s: re-ranking skipped item %d: %s (%s)", s.path, s.id, s.reason, s.detail)
        return res.hits

    def search_result(self, query: str, k: int = 10, *, rerank: bool = False, rerank_k: int | None = None,
                      exact: bool | None = None) -> SearchResult:
        """Search with details (:class:`SearchResult`).

        Args:
            query: the text.
            k: results wanted (fewer when the index holds fewer items, or re-ranking skipped some).
            rerank: re-score the top ``rerank_k`` by cosine with the model's ITM head (stage-2 models).
            rerank_k: candidates re-scored (default ``max(k, 16)``; from ``k`` to :data:`MAX_RERANK_K`).
            exact: True: exact search; False: the ANN index whatever the size; None: by size.
        """
        t0 = time.perf_counter()
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise ConfigError("k", f"must be an integer >= 1, got {k!r}")
        if not isinstance(rerank, bool):
            raise ConfigError("rerank", f"must be True or False, got {rerank!r}")
        if rerank:
            if not getattr(self.model, "has_itm", False):
                raise ConfigError("rerank", f"a {getattr(self.model, 'model_type', '?')} model has no ITM head "
                                            "(re-ranking needs a stage-2 model)")
            rerank_k = max(k, DEFAULT_RERANK_K) if rerank_k is None else rerank_k
            if isinstance(rerank_k, bool) or not isinstance(rerank_k, int) or not k <= rerank_k <= MAX_RERANK_K:
                raise ConfigError("rerank_k", f"must be an integer in [k, {MAX_RERANK_K}] (k = {k}), got "
                                              f"{rerank_k!r}")
        elif rerank_k is not None:
            raise ConfigError("rerank_k", "only applies with rerank")
        text = self._encode(query)
        q = text.embeds[0].float().cpu().numpy()
        t1 = time.perf_counter()
        seconds = {"encode": t1 - t0}
        for attempt in range(3):
            st, use_ann = self._ready(exact)
            method = "ann" if use_ann else "exact"
            if st.count == 0:
                seconds["total"] = time.perf_counter() - t0
                return SearchResult([], method, rerank, seconds=seconds)
            ids, scores = self._top(st, use_ann, q[None], min(rerank_k if rerank else k, st.count))
            ids, scores = ids[0], scores[0]
            t2 = time.perf_counter()
            try:
                items = self.store.items([int(i) for i in ids])
                break
            except KeyError:  # a writer removed a candidate since the vectors were loaded: search its state
                if attempt == 2:
                    raise ConfigError("index", f"{self.path}: the store keeps changing; retry when the indexing "
                                               "run is done") from None
                with self._lock:
                    self._state = None
        seconds["search"] = t2 - t1
        skipped: list[SkippedItem] = []
        if rerank:
            items, scores, skipped = self._rerank(text, items, scores, st)
            items, scores = items[:k], scores[:k]
            t3 = time.perf_counter()
            seconds["rerank"] = t3 - t2
            t2 = t3
        hits = [Hit(it.id, it.path, it.start_s, it.end_s, float(s)) for it, s in zip(items, scores)]
        seconds["assemble"] = time.perf_counter() - t2
        seconds["total"] = time.perf_counter() - t0
        return SearchResult(hits, method, rerank, skipped, seconds)

    @staticmethod
    def _top(st: _State, use_ann: bool, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        if use_ann:
            return st.ann.search_complete(queries, k)
        return ann_mod.exact_search(st.vectors, st.ids, queries, k)

    def search_vectors(self, queries: np.ndarray, k: int = 10, *, exact: bool | None = None
                       ) -> tuple[np.ndarray, np.ndarray, str]:
        """Search by vectors in the index's space (e.g. an item's own embedding: "more like this"):
        ``queries float32 [Q, D]`` (or ``[D]``) -> ``(ids int64 [Q, k'], scores float32 [Q, k'], method)``,
        ``k' = min(k, items)``, best first; ``exact`` as in :meth:`search_result`."""
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise ConfigError("k", f"must be an integer >= 1, got {k!r}")
        q = np.atleast_2d(np.asarray(queries, dtype=np.float32))
        dim = self.meta.get("dim")
        if q.ndim != 2 or (dim is not None and q.shape[1] != int(dim)):
            raise ConfigError("queries", f"expected [Q, {dim}] vectors, got shape {tuple(q.shape)}")
        st, use_ann = self._ready(exact)
        ids, scores = self._top(st, use_ann, q, min(k, st.count)) if st.count else \
            (np.zeros((len(q), 0), np.int64), np.zeros((len(q), 0), np.float32))
        return ids, scores, "ann" if use_ann else "exact"

    # ------------------------------------------------------------------ ITM re-ranking
    def _item_settings(self):
        """The :class:`~internvideo2.embed.settings.EmbedSettings` the index's items were cut with, from the
        store's ``settings``: ``build``'s ``ItemSettings`` (``shots`` options as a nested dict) or
        EmbedSettings fields (at the top or under ``embed``); other keys are ignored."""
        from ..embed.settings import EmbedSettings

        raw = self.meta.get("settings")
        if isinstance(raw, dict) and isinstance(raw.get("embed"), dict):
            raw = raw["embed"]
        if not isinstance(raw, dict):
            raise ConfigError("rerank", f"{self.path}: the index does not record how its items were cut "
                                        "(meta 'settings'); rebuild it to re-rank")
        raw = dict(raw)
        shots = raw.pop("shots", None)
        if isinstance(shots, dict):  # build's ItemSettings: {"ratio", "min_score", "min_len", "step"}
            raw.update({f"shot_{k}": v for k, v in shots.items()})
        names = {f.name for f in dataclasses.fields(EmbedSettings)}
        try:
            return EmbedSettings(**{k: v for k, v in raw.items() if k in names}).validate()
        except (ConfigError, TypeError) as e:
            raise ConfigError("rerank", f"{self.path}: the recorded item settings are not usable ({e})") from None

    def _videos(self, st: _State) -> dict[str, VideoState]:
        with self._lock:
            if st.videos is None:
                st.videos = self.store.videos()
            return st.videos

    def _plan(self, path: str, stat: os.stat_result, settings, frames: int, timeout: float):
        """``plan_items`` of one file, remembered per (path, size, mtime) (shot detection decodes the file)."""
        from ..embed.planning import plan_items

        key = (path, stat.st_size, stat.st_mtime_ns, json.dumps(settings.to_dict(), sort_keys=True), frames)
        with self._lock:
            if key in self._plans:
                self._plans.move_to_end(key)
                return self._plans[key]
        plan = plan_items(path, settings, frames, timeout=timeout)
        with self._lock:
            self._plans[key] = plan
            while len(self._plans) > 256:
                self._plans.popitem(last=False)
        return plan

    def _clips(self, items: list[Item], st: _State, timeout: float = 120.0):
        """Decode the items' frames as the index embedded them: ``(kept positions, float32 [n, 3, T, S, S],
        skipped)``."""
        from ..embed.encoder import VideoEncoder
        from ..embed.stream import PacketStream

        settings = self._item_settings()
        spec = VideoEncoder(self.model, settings, self.device, torch.float32).spec
        # the embed stream's own transform and decoding (the same pixels as the indexing run)
        stream = PacketStream([], settings, spec, timeout)
        tf = stream._transform()
        videos = self._videos(st)
        by_path: dict[str, list[int]] = {}
        for j, it in enumerate(items):
            by_path.setdefault(it.path, []).append(j)
        kept: list[int] = []
        clips: list[torch.Tensor] = []
        skipped: list[SkippedItem] = []
        for path, js in by_path.items():
            try:
                stat = os.stat(path)
                known = videos.get(path)
                if known is not None and (known.size, known.mtime_ns) != (stat.st_size, stat.st_mtime_ns):
                    raise MediaError(path, "changed", "the file changed since it was indexed; re-run "
                                                      "`internvideo2 index`")
                meta, plan = self._plan(path, stat, settings, spec.frames, timeout)
                chosen = []
                for j in js:
                    it = items[j]
                    best = min(plan, key=lambda p: abs(p["start_s"] - it.start_s) + abs(p["end_s"] - it.end_s),
                               default=None)
                    if best is None or abs(best["start_s"] - it.start_s) + abs(best["end_s"] - it.end_s) > 1e-3:
                        raise MediaError(path, "changed", f"no item {it.start_s:.3f}-{it.end_s:.3f} s in the file "
                                                          "any more; re-run `internvideo2 index`")
                    chosen.append(best)
                xs = stream._decode(path, meta, chosen, tf)  # [3, T, S, S] each
            except FileNotFoundError:
                skipped += [SkippedItem(items[j].id, path, "missing", "the file is gone since it was indexed")
                            for j in js]
                continue
            except (MediaError, OSError) as e:
                reason = e.reason if isinstance(e, MediaError) else "unreadable"
                detail = e.detail if isinstance(e, MediaError) else str(e)
                skipped += [SkippedItem(items[j].id, path, reason, detail) for j in js]
                continue
            kept += js
            clips += xs
        video = torch.stack(clips) if clips else torch.zeros((0, 3, spec.frames, spec.size, spec.size))
        return kept, video, skipped

    @torch.no_grad()
    def _rerank(self, text, items: list[Item], cos: np.ndarray, st: _State):
        """Re-score candidates with the ITM head: ``(items, scores, skipped)``, best first."""
        kept, video, skipped = self._clips(items, st)
        if not kept:
            return [], np.zeros(0, np.float32), skipped
        probs = []
        dtype = next(self.model.parameters()).dtype
        hidden, mask = text.hidden, text.attention_mask
        bs = max(1, int(self._item_settings().batch_size))
        with self._model_lock:
            for b in range(0, len(kept), bs):
                x = video[b:b + bs].to(self.device, dtype)
                tokens = self.model.forward_video(x).tokens  # [n, 1+N, C]
                n = len(x)
                logits = self.model.itm_logits(tokens, hidden.expand(n, -1, -1), mask.expand(n, -1))  # [n, 2]
                probs.append(torch.softmax(logits.float(), dim=-1)[:, 1].cpu())
        p = torch.cat(probs).numpy()
        c = np.asarray(cos, np.float32)[kept]
        ids = np.array([items[j].id for j in kept])
        order = np.lexsort((ids, -c, -p))  # match probability, then cosine, then id
        return [items[kept[o]] for o in order], p[order], skipped

    # ------------------------------------------------------------------ rows
    def item(self, item_id: int) -> Item:
        return self.store.items([int(item_id)])[0]

    def thumbnail(self, item_id: int) -> bytes | None:
        return self.store.thumbnail(item_id)

    def is_indexed(self, path: str | os.PathLike) -> bool:
        return self.store.is_indexed(path)
