"""Building and updating an index: ``internvideo2 index VIDEOS... --model M -o INDEX`` and :func:`build_index`.

Items are shots (the package's segmenter, :func:`~internvideo2.data.segment.detect_shots`; the default), fixed
windows (``mode="window"``) or whole videos (``mode="clip"``), embedded by the ``embed`` pipeline
(:func:`~internvideo2.embed.embed_videos`: same decoding, batching, resume and bad-file policy) with the model's
text-aligned feature (``proj``: the vector its text embeddings are compared with), then written to the store
(:mod:`.store`) with a JPEG thumbnail of each item's middle frame.

An index folder::

    INDEX/store.sqlite            the index (:class:`~internvideo2.search.store.IndexStore`)
    INDEX/.lock                   one builder at a time
    INDEX/embed/                  work area of a one-process run: the embed output of the videos to (re)embed
    INDEX/embed.plan.json         what that run decided per video (identity, sha256, action), its status
    INDEX/embed.thumbs.sqlite     thumbnails made so far (resumable per video)
    INDEX/shards/rank{r}-of-{w}/  the same per rank under ``torchrun`` (or ``--shard R/W``), with
    INDEX/shards/rank{r}-of-{w}.plan.json and .thumbs.sqlite beside it

A build runs in four steps; the work areas exist only while a build is unfinished (a finished one removes them):

1. **plan**: the inputs are scanned and sorted by absolute path; each video is compared with the store: same
   size and mtime as recorded -> ``keep``; otherwise its sha256 is computed and, when it equals the recorded one,
   only the recorded identity is updated (``touch``: the content did not change, nothing is embedded), else
   it is embedded (``embed``: new or changed). Unusable files follow embed's policy: a failure that can change
   (timeout, memory, I/O) is retried by the next run, a corrupt file only when it changes (or ``retry_bad``).
   Videos of the store that are no longer among the inputs are removed. The plan is written before any work.
2. **embed**: the ``embed`` videos only go through :func:`~internvideo2.embed.embed_videos` into the work area
   (chunk commits: a killed run resumes them, with the same batches, hence the same numbers).
3. **thumbnails**: the middle frame of every new item (the frame halfway between its first and last sampled
   frames), decoded with the package's PyAV reader (one pass per video), scaled down to ``thumb_width`` px and
   encoded as JPEG by PyAV's ``mjpeg`` encoder; cached per video (a killed run does not make them again), made
   in up to ``workers + 1`` processes once the model is done.
4. **sync**: every change goes into the store in ONE SQLite transaction (killed before its commit, the index
   is the old one; after it, the new one), then the work area is removed. The transaction is idempotent:
   a video whose recorded identity already equals the plan's is left alone, so a sync repeated after a kill
   changes nothing twice and never duplicates items (the store's ``build`` meta also names the plans it merged,
   so their leftovers are recognised and removed). Items are written in path order (deterministic ids).

Several processes: under ``torchrun`` (``WORLD_SIZE > 1``) rank ``r`` of ``w`` plans, embeds and thumbnails
the videos ``r, r + w, ...`` of the sorted list in ``INDEX/shards/rank{r}-of-{w}/`` (resumable on its own),
then, after a gloo barrier, rank 0 merges every shard into the store (step 4). ``shard=(r, w)``
(``--shard R/W``) runs one shard without a process group (e.g. one job per machine on a shared filesystem)
and :func:`merge_index` (``internvideo2 index --merge INDEX``) merges them. The merged index holds the same
items, thumbnails and identities as a one-process run; embeddings agree to float rounding (about 1e-8 on CPU),
not bit for bit: a model batch holds other items when the list is cut differently, and CPU kernels may sum
in another order for another batch composition.

Refusals (:class:`~internvideo2.errors.ConfigError`, exit 2): a model without a text tower (an index is
searched by text), another model than the index's (``model_identity``: type, config and weights hashes), other
item settings (mode, window, stride, frames, size, resize, shot options, dtype): use a new index folder or
``overwrite``.
"""
from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import logging
import os
import shutil
import signal
import sqlite3
import sys
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from datetime import timedelta
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..errors import ConfigError, MediaError
from ..utils.io import clean_tmp, is_tmp_name, write_json
from .index import model_identity, same_model
from .store import FORMAT, SCHEMA_VERSION, STORE_FILE, IndexStore, VideoState

log = logging.getLogger("internvideo2.search")

PLAN_FORMAT = "internvideo2-index-plan"
PLAN_VERSION = 1
MODES = ("shots", "window", "clip")
#: fault injection for the kill tests: ``name`` or ``name:N`` SIGKILLs the process at that point (``embed``: the
#: plan is written, nothing embedded; ``thumbs:N`` after N videos' thumbnails; ``store:N`` after N videos written
#: inside the store transaction; ``cleanup``: after the commit, before the work areas are removed)
KILL_ENV = "INTERNVIDEO2_INDEX_KILL_AT"
# a rank may wait at the barrier for as long as the slowest shard embeds (hours on a large folder)
DIST_TIMEOUT = timedelta(hours=72)


def _kill_point(name: str, n: int | None = None) -> None:
    spec = os.environ.get(KILL_ENV)
    if spec:
        want, _, count = spec.partition(":")
        if want == name and (not count or n == int(count)):
            os.kill(os.getpid(), signal.SIGKILL)


# ----------------------------------------------------------------------------------------------------------
# settings, files, thumbnails
# ----------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ItemSettings:
    """What decides an index's items and their vectors: recorded as the store's ``settings``; an update with
    other values is refused.

    Attributes:
        mode: ``shots``, ``window`` or ``clip``.
        frames / size: frames per item and input side actually used (the model's defaults resolved).
        resize: the evaluation transform (``squash``, ``center_crop``, ``decoder``).
        window / stride: seconds (``window`` mode, else None).
        shots: the :func:`~internvideo2.data.segment.detect_shots` options (``shots`` mode, else None).
        feature: always ``proj`` (the model's video-text space).
        dtype: the model dtype of the embeddings (``fp32``, ``bf16``, ``fp16``).
        sample: the frame sampler inside an item (the official ``middle``).
    """

    mode: str
    frames: int
    size: int
    resize: str
    window: float | None
    stride: float | None
    shots: dict | None
    feature: str = "proj"
    dtype: str = "fp32"
    sample: str = "middle"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def sha256_file(path: str | os.PathLike, bufsize: int = 1 << 20) -> str:
    """Hex sha256 of a file's content (read in ``bufsize`` blocks)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(bufsize):
            h.update(block)
    return h.hexdigest()


# JPEG encoders by (width, height, quality) and one reformatter, reused: a fresh encoder and scaler context cost
# more than the encoding of a thumbnail (MJPEG is intra-only: every packet is a whole JPEG, the same bytes)
_JPEG_CACHE: dict[Any, Any] = {}
_JPEG_LOCK = threading.Lock()


def encode_jpeg(rgb: np.ndarray, quality: int = 5, width: int | None = None) -> bytes:
    """JPEG bytes of a ``uint8 [H, W, 3]`` RGB image with PyAV's ``mjpeg`` encoder (no Pillow needed).

    ``quality``: the encoder's fixed quantiser, 2 (best, largest) to 31; 5 is about libjpeg's quality 85.
    ``width``: scale down to this width (never up; area averaging; the height keeps the aspect ratio; both even),
    in the same swscale pass as the conversion to the JPEG's full-range YUV 4:2:0."""
    import av
    from av.video.reformatter import VideoReformatter

    if rgb.ndim != 3 or rgb.shape[-1] != 3 or rgb.dtype != np.uint8:
        raise ConfigError("frame", f"expected uint8 [H, W, 3], got {rgb.dtype} {tuple(rgb.shape)}")
    if not 2 <= int(quality) <= 31:
        raise ConfigError("quality", f"must be in [2, 31], got {quality}")
    H, W = int(rgb.shape[0]), int(rgb.shape[1])
    w = min(W, int(width)) if width else W
    w = max(2, w - w % 2)
    h = max(2, int(round(H * w / W / 2)) * 2)
    frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
    with _JPEG_LOCK:
        if len(_JPEG_CACHE) > 64:  # many sizes (a folder of mixed videos): start again
            _JPEG_CACHE.clear()
        scaler = _JPEG_CACHE.setdefault("reformatter", VideoReformatter())
        cc = _JPEG_CACHE.get((w, h, int(quality)))
        if cc is None:
            cc = av.CodecContext.create("mjpeg", "w")
            cc.thread_count = 1  # no codec threads: nothing a forked thumbnail process could inherit half of
            cc.width, cc.height = w, h
            cc.pix_fmt = "yuvj420p"
            cc.time_base = Fraction(1, 25)
            cc.options = {"qmin": str(int(quality)), "qmax": str(int(quality))}
            _JPEG_CACHE[(w, h, int(quality))] = cc
        yuv = scaler.reformat(frame, width=w, height=h, format="yuvj420p", interpolation="AREA")
        return b"".join(bytes(p) for p in cc.encode(yuv))


def middle_frame(frame_indices: Sequence[int]) -> int:
    """The frame an item's thumbnail shows: halfway between its first and last sampled frames (``middle``
    sampling spreads them symmetrically over the item, so this is the item's middle frame)."""
    return (int(min(frame_indices)) + int(max(frame_indices))) // 2


def item_thumbnails(path: str | os.PathLike, frames: Sequence[int], *, width: int = 320, quality: int = 5,
                    timeout: float = 120.0) -> list[bytes]:
    """JPEG thumbnails of the frames ``frames`` (absolute indices) of one video, ``width`` px wide at most
    (:func:`encode_jpeg`). One container, one decoding pass for all of them (the package's PyAV reader).
    Raises :class:`~internvideo2.errors.MediaError` when the file cannot be read."""
    from ..data.video import read_frames

    uniq = sorted(set(int(i) for i in frames))
    # one decoder thread: a thumbnail pass decodes a frame or a few per video, one process per core
    rgb = read_frames(path, uniq, timeout=timeout, threads=1)  # uint8 [n, H, W, 3], native size
    jpeg = {i: encode_jpeg(rgb[k].numpy(), quality, width) for k, i in enumerate(uniq)}
    return [jpeg[int(i)] for i in frames]


def _thumbs_job(job: tuple[str, list[int], int, float]) -> tuple[list[bytes | None], str | None]:
    """One video's thumbnails (in a pool process): ``(jpegs, None)`` or ``([None...], why)``."""
    path, mids, width, timeout = job
    try:
        return list(item_thumbnails(path, mids, width=width, timeout=timeout)), None
    except (MediaError, OSError) as err:  # embedded a moment ago: rare; the items stay searchable without
        return [None] * len(mids), str(err)


class _ThumbCache:
    """The thumbnails a shard made so far (an SQLite file beside its work area): a killed run does not make
    them again. A video's thumbnails are valid for one key (its identity and items)."""

    def __init__(self, path: Path):
        self.db = sqlite3.connect(path, isolation_level=None)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")  # a process kill loses nothing committed; this is a cache
        self.db.executescript("CREATE TABLE IF NOT EXISTS videos(path TEXT PRIMARY KEY, key TEXT NOT NULL);"
                              "CREATE TABLE IF NOT EXISTS thumbs(path TEXT, item INTEGER, jpeg BLOB, "
                              "PRIMARY KEY(path, item));")

    def get(self, path: str, key: str) -> list[bytes | None] | None:
        row = self.db.execute("SELECT key FROM videos WHERE path = ?", (path,)).fetchone()
        if row is None or row[0] != key:
            return None
        return [r[0] for r in self.db.execute("SELECT jpeg FROM thumbs WHERE path = ? ORDER BY item", (path,))]

    def put(self, path: str, key: str, jpegs: Sequence[bytes | None]) -> None:
        self.db.execute("BEGIN IMMEDIATE")
        self.db.execute("DELETE FROM thumbs WHERE path = ?", (path,))
        self.db.executemany("INSERT INTO thumbs(path, item, jpeg) VALUES (?, ?, ?)",
                            [(path, k, j) for k, j in enumerate(jpegs)])
        self.db.execute("INSERT OR REPLACE INTO videos(path, key) VALUES (?, ?)", (path, key))
        self.db.execute("COMMIT")

    def close(self) -> None:
        self.db.close()


def _thumb_key(entry: dict, rows: list[dict]) -> str:
    spans = [(r["start_s"], r["end_s"], middle_frame(r["frame_indices"])) for r in rows]
    return hashlib.sha256(json.dumps([entry["size"], entry["mtime_ns"], entry["sha256"], spans]).encode()).hexdigest()


# ----------------------------------------------------------------------------------------------------------
# the index folder: work areas (parts), the lock
# ----------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Part:
    """The work area of rank ``rank`` of ``world`` (one process: ``INDEX/embed``)."""

    index: Path
    rank: int
    world: int

    @property
    def dir(self) -> Path:
        if self.world == 1:
            return self.index / "embed"
        return self.index / "shards" / f"rank{self.rank}-of-{self.world}"

    @property
    def plan(self) -> Path:
        return self.dir.with_name(self.dir.name + ".plan.json")

    @property
    def thumbs(self) -> Path:
        return self.dir.with_name(self.dir.name + ".thumbs.sqlite")

    @property
    def name(self) -> str:
        return str(self.dir.relative_to(self.index))

    def remove(self) -> None:
        """The plan first: without it, what is left is known to be garbage (removed by the next build)."""
        with contextlib.suppress(FileNotFoundError):
            self.plan.unlink()
        for suffix in ("", "-wal", "-shm"):
            with contextlib.suppress(FileNotFoundError):
                Path(str(self.thumbs) + suffix).unlink()
        shutil.rmtree(self.dir, ignore_errors=True)


def _parse_part(index: Path, plan_path: Path) -> _Part | None:
    if plan_path.parent == index and plan_path.name == "embed.plan.json":
        return _Part(index, 0, 1)
    stem = plan_path.name[:-len(".plan.json")] if plan_path.name.endswith(".plan.json") else ""
    if plan_path.parent == index / "shards" and stem.startswith("rank") and "-of-" in stem:
        r, _, w = stem[4:].partition("-of-")
        if r.isdigit() and w.isdigit() and int(r) < int(w) and int(w) > 1:
            return _Part(index, int(r), int(w))
    return None


def _plans(index: Path) -> dict[_Part, Path]:
    found = [index / "embed.plan.json"] + sorted((index / "shards").glob("*.plan.json"))
    out = {}
    for p in found:
        part = _parse_part(index, p)
        if part is not None and p.is_file():
            out[part] = p
    return out


def _orphans(index: Path) -> list[_Part]:
    """Work areas whose plan is gone (a build killed while removing them)."""
    cands = [index / "embed"] + sorted(p for p in (index / "shards").glob("rank*-of-*") if p.is_dir())
    out = []
    for d in cands:
        part = _parse_part(index, d.with_name(d.name + ".plan.json"))
        if part is not None and (part.dir.exists() or part.thumbs.exists()) and not part.plan.exists():
            out.append(part)
    return out


class _IndexLock:
    """An exclusive POSIX record lock on ``INDEX/.lock`` (released by the kernel when the process dies)."""

    def __init__(self, index: Path):
        self.path = index / ".lock"
        self.fd: int | None = None

    def __enter__(self) -> _IndexLock:
        import fcntl

        try:
            self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except PermissionError:
            raise ConfigError("out", f"{self.path.parent}: permission denied (cannot write there)") from None
        try:
            fcntl.lockf(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(self.fd)
            self.fd = None
            raise ConfigError("out", f"{self.path.parent}: another `internvideo2 index` is writing this index") \
                from None
        return self

    def __exit__(self, *exc) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


_OURS = (STORE_FILE, STORE_FILE + "-wal", STORE_FILE + "-shm", ".lock", "embed", "shards", "embed.plan.json",
         "embed.thumbs.sqlite", "embed.thumbs.sqlite-wal", "embed.thumbs.sqlite-shm")


def _check_out(index: Path) -> None:
    if index.exists() and not index.is_dir():
        raise ConfigError("out", f"{index}: exists and is not a folder")
    if index.is_dir():
        foreign = [p.name for p in index.iterdir() if p.name not in _OURS and not is_tmp_name(p.name)]
        if foreign and not (index / STORE_FILE).is_file():
            raise ConfigError("out", f"{index} is not empty and holds no index ({', '.join(sorted(foreign)[:5])}); "
                                     "choose an empty or new folder")


def _remove_index(index: Path) -> None:
    for name in (STORE_FILE, STORE_FILE + "-wal", STORE_FILE + "-shm"):
        with contextlib.suppress(FileNotFoundError):
            (index / name).unlink()
    for part in list(_plans(index)) + _orphans(index):
        part.remove()
    shutil.rmtree(index / "shards", ignore_errors=True)


def _plan_id(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _read_store(index: Path) -> tuple[dict[str, Any], dict[str, VideoState]]:
    """The store's meta and videos (empty when there is no store yet)."""
    if not (index / STORE_FILE).is_file():
        return {}, {}
    store = IndexStore(index, readonly=True)
    try:
        return store.meta(), store.videos()
    finally:
        store.close()


def _describe_model(ident: dict) -> str:
    return (f"{ident.get('source') or '(a model object)'}: {ident.get('model_type')}, weights sha256 "
            f"{str(ident.get('weights_sha256'))[:12]}...")


def _check_compatible(index: Path, meta: dict, identity: dict, settings: dict, dim: int) -> None:
    """Refuse to mix another model or other item settings into an existing index."""
    if meta.get("format") not in (None, FORMAT):
        raise ConfigError("out", f"{index}: not an internvideo2 index (format {meta.get('format')!r})")
    if meta.get("schema") not in (None, SCHEMA_VERSION):
        raise ConfigError("out", f"{index}: index schema {meta.get('schema')}, this version reads {SCHEMA_VERSION}; "
                                 "rebuild it with --overwrite")
    rec = meta.get("model")
    if isinstance(rec, dict) and not same_model(rec, identity):
        raise ConfigError("model", f"{index} was built with another model ({_describe_model(rec)}), not "
                                   f"{_describe_model(identity)}: their embeddings are not comparable; use a new "
                                   "index folder (-o) or --overwrite to rebuild this one")
    old = meta.get("settings")
    if isinstance(old, dict) and old != settings:
        diff = sorted(k for k in set(old) | set(settings) if old.get(k) != settings.get(k))
        what = ", ".join(f"{k}={old.get(k)!r} (now {settings.get(k)!r})" for k in diff)
        raise ConfigError(diff[0], f"{index} was built with other item settings: {what}; use a new index folder "
                                   "(-o) or --overwrite to rebuild this one")
    if meta.get("dim") not in (None, dim):
        raise ConfigError("model", f"{index} holds {meta.get('dim')}-d embeddings, the model gives {dim}-d")


# ----------------------------------------------------------------------------------------------------------
# processes
# ----------------------------------------------------------------------------------------------------------
@dataclass
class _Dist:
    """Where this process stands: rank / world, whether a process group coordinates the ranks (and whether we
    made it, then we also destroy it)."""

    rank: int = 0
    world: int = 1
    group: bool = False
    owned: bool = False

    def barrier(self) -> None:
        if self.group:
            torch.distributed.barrier()

    def close(self) -> None:
        if self.owned:
            torch.distributed.destroy_process_group()


def _dist_setup(shard: tuple[int, int] | None) -> _Dist:
    if shard is not None:
        r, w = shard
        if not (isinstance(r, int) and isinstance(w, int) and w >= 1 and 0 <= r < w):
            raise ConfigError("shard", f"must be R/W with 0 <= R < W, got {r}/{w}")
        return _Dist(r, w, False, False)
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return _Dist(dist.get_rank(), dist.get_world_size(), dist.get_world_size() > 1, False)
    world = int(os.environ.get("WORLD_SIZE", "1") or 1)
    if world <= 1:
        return _Dist()
    # gloo whatever the model runs on: the ranks only wait for each other (file-based hand-over)
    dist.init_process_group("gloo", timeout=DIST_TIMEOUT)
    return _Dist(dist.get_rank(), dist.get_world_size(), True, True)


# ----------------------------------------------------------------------------------------------------------
# building
# ----------------------------------------------------------------------------------------------------------
def build_index(
    videos: Iterable[str | os.PathLike] | str | os.PathLike,
    model: nn.Module | str | os.PathLike,
    out: str | os.PathLike,
    *,
    mode: str = "shots",
    window: float | None = None,
    stride: float | None = None,
    frames: int | None = None,
    size: int | None = None,
    resize: str = "squash",
    shot_ratio: float = 3.0,
    shot_min_score: float = 0.12,
    shot_min_len: float = 0.5,
    shot_step: int = 1,
    batch_size: int = 8,
    chunk_size: int = 64,
    workers: int | None = None,
    threads: int | None = None,
    device: str | None = None,
    dtype: str = "fp32",
    timeout: float = 120.0,
    max_bad_fraction: float = 0.2,
    bad_check_after: int = 20,
    retry_bad: bool = False,
    rehash: bool = False,
    overwrite: bool = False,
    thumb_width: int = 320,
    progress: bool = True,
    model_source: str | os.PathLike | None = None,
    shard: tuple[int, int] | None = None,
) -> dict[str, Any]:
    """Build or update the index ``out`` from video files and folders (see the module doc).

    Args:
        videos: files and/or folders (searched recursively like ``embed``); the index holds exactly these
            videos afterwards (videos it held that are no longer among them are removed).
        model: a loaded model with a text tower (stage 2, CLIP) or anything ``load_model`` accepts (its
            absolute path is then recorded as the index's model ``source``, which ``Index(out)`` loads).
        out: the index folder.
        mode / window / stride / frames / size / resize / shot_*: the items (``embed``'s options; default
            ``shots``).
        batch_size / chunk_size / workers / threads / device / dtype / timeout / max_bad_fraction /
            bad_check_after / retry_bad: passed to :func:`~internvideo2.embed.embed_videos`. Under ``torchrun``
            ``device="cuda"`` means each rank's ``cuda:LOCAL_RANK``.
        rehash: hash every video, not only those whose size or mtime changed (for filesystems whose mtimes
            cannot be trusted).
        overwrite: delete the index and start over.
        thumb_width: thumbnail width in pixels (never enlarged).
        progress: tqdm bars on stderr.
        model_source: recorded as the model's ``source`` when ``model`` is a loaded model.
        shard: ``(rank, world)``: build only that shard's work area, without a process group (merge them with
            :func:`merge_index`); None: one process, or every rank of ``torchrun``.

    Returns a JSON-serialisable summary: ``status`` (``built``, ``updated``, ``unchanged`` on the merging
    process; ``shard_done`` on the others), ``videos`` / ``items`` (the index after the build), ``added``,
    ``changed``, ``touched`` (same content, new size/mtime: not embedded), ``removed``, ``kept``,
    ``embedded_videos`` / ``embedded_items`` (model work of this process), ``unusable`` (``{path, reason,
    detail}`` for every video of the index that cannot be used and every input path that could not be read),
    ``rank`` / ``world_size``, ``timing`` (seconds: ``plan``, ``hash``, ``embed``, ``thumbs``, ``sync``,
    ``total``).

    Raises :class:`ConfigError` (bad arguments, another model or other settings than the index's),
    :class:`~internvideo2.data.bad_samples.DataQualityError` past ``max_bad_fraction``.
    """
    from ..embed import EmbedSettings, scan_inputs
    from ..embed.encoder import VideoEncoder
    from ..embed.settings import VIDEO_EXTENSIONS

    t0 = time.perf_counter()
    if mode not in MODES:
        raise ConfigError("mode", f"unknown mode {mode!r}; use one of {', '.join(MODES)}")
    es = EmbedSettings(mode=mode, frames=frames, window=window, stride=stride, size=size, resize=resize,
                       shot_ratio=shot_ratio, shot_min_score=shot_min_score, shot_min_len=shot_min_len,
                       shot_step=shot_step, feature="proj", batch_size=batch_size, chunk_size=chunk_size,
                       dtype=dtype).validate()
    if isinstance(thumb_width, bool) or not isinstance(thumb_width, int) or thumb_width < 16:
        raise ConfigError("thumb_width", f"must be an integer >= 16 pixels, got {thumb_width!r}")
    index = Path(out).expanduser()
    _check_out(index)
    if isinstance(videos, (str, os.PathLike)):
        videos = [videos]
    videos = list(videos)
    scan = scan_inputs(videos)  # a mistyped path fails before a large model is loaded
    if not scan.videos:
        if scan.problems:
            p = scan.problems[0]
            raise ConfigError("videos", f"{p['video']}: {p['detail']}")
        names = ", ".join(os.fspath(v) for v in videos)
        raise ConfigError("videos", f"no video files found in {names} (extensions: {' '.join(VIDEO_EXTENSIONS)})")

    dist = _dist_setup(shard)
    try:
        if dist.world > 1 and device is not None and str(device) == "cuda" and "LOCAL_RANK" in os.environ:
            device = f"cuda:{int(os.environ['LOCAL_RANK'])}"
        if not isinstance(model, nn.Module):
            from ..checkpoint.loader import load_model

            model_source = model_source or model
            model = load_model(model, device=device or "cpu")
        if not getattr(model, "has_text", False):
            raise ConfigError("model", f"a {getattr(model, 'model_type', type(model).__name__)!r} model has no text "
                                       "tower: an index is searched by text; use a stage-2 or CLIP model")
        source = os.path.abspath(os.fspath(model_source)) if model_source is not None else None
        # before embed_videos casts the model to dtype/device in place: the identity of the weights as loaded
        identity = model_identity(model, source)
        enc = VideoEncoder(model, es, torch.device("cpu"), torch.float32)  # resolves frames/size, checks them
        settings = ItemSettings(
            mode=mode, frames=enc.spec.frames, size=enc.spec.size, resize=resize,
            window=float(es.window) if mode == "window" else None,
            stride=float(es.stride) if mode == "window" else None,
            shots={"ratio": shot_ratio, "min_score": shot_min_score, "min_len": shot_min_len, "step": shot_step}
            if mode == "shots" else None,
            dtype=dtype).to_dict()
        job = _Build(index, scan, model, identity, settings, enc.dim, dist, progress, dict(
            mode=mode, frames=frames, window=window, stride=stride, size=size, resize=resize, shot_ratio=shot_ratio,
            shot_min_score=shot_min_score, shot_min_len=shot_min_len, shot_step=shot_step, feature="proj",
            batch_size=batch_size, chunk_size=chunk_size, workers=workers, threads=threads, device=device,
            dtype=dtype, timeout=timeout, max_bad_fraction=max_bad_fraction, bad_check_after=bad_check_after,
            retry_bad=retry_bad, model_source=source), retry_bad, rehash, thumb_width, timeout)
        summary = job.run(overwrite, standalone_shard=shard is not None)
    finally:
        dist.close()
    summary["timing"]["total"] = round(time.perf_counter() - t0, 3)
    return summary


class _Build:
    """One rank's part of a build (steps 1-3), then, on the merging process, the sync (step 4)."""

    def __init__(self, index: Path, scan, model: nn.Module, identity: dict, settings: dict, dim: int, dist: _Dist,
                 progress: bool, embed_kw: dict, retry_bad: bool, rehash: bool, thumb_width: int, timeout: float):
        self.index, self.scan, self.model, self.identity = index, scan, model, identity
        self.settings, self.dim, self.dist, self.progress = settings, dim, dist, progress
        self.embed_kw, self.retry_bad, self.rehash = embed_kw, retry_bad, rehash
        self.thumb_width, self.timeout = thumb_width, timeout
        self.part = _Part(index, dist.rank, dist.world)
        self.timing = {"plan": 0.0, "hash": 0.0, "embed": 0.0, "thumbs": 0.0, "sync": 0.0}
        # what the work area depends on besides the inputs: another value makes its resume state unusable
        # (embed's options as given: its own resume check compares them so)
        self.work_key = {"model": identity, "settings": settings, "embed": {
            k: embed_kw[k] for k in ("mode", "frames", "window", "stride", "size", "resize", "shot_ratio",
                                     "shot_min_score", "shot_min_len", "shot_step", "batch_size", "chunk_size",
                                     "dtype")}, "device_type": torch.device(embed_kw["device"] or "cpu").type}

    def run(self, overwrite: bool, standalone_shard: bool) -> dict[str, Any]:
        main = self.dist.rank == 0 and not standalone_shard
        lock = _IndexLock(self.index) if main else contextlib.nullcontext()
        if main or standalone_shard:
            self.index.mkdir(parents=True, exist_ok=True)
        with lock:
            if main:
                if overwrite:
                    _remove_index(self.index)
                self._tidy()
            elif overwrite and standalone_shard:
                raise ConfigError("overwrite", "--overwrite cannot be combined with --shard (delete the index "
                                               "folder, or run --overwrite without --shard)")
            self.dist.barrier()  # rank 0 has tidied (and overwritten) before anyone plans
            self.part.dir.parent.mkdir(parents=True, exist_ok=True)
            plan = self._plan()
            embedded = self._embed(plan)
            self._thumbnails(plan, embedded)
            plan["status"] = "done"
            plan["timing"] = {k: round(v, 3) for k, v in self.timing.items()}
            write_json(self.part.plan, plan)
            self.dist.barrier()  # every shard is done: rank 0 merges
            if not main:
                return self._shard_summary(plan, embedded, standalone_shard)
            t = time.perf_counter()
            summary = _merge(self.index, world=self.dist.world, progress=self.progress)
            self.timing["sync"] = time.perf_counter() - t
        summary.update(embedded_videos=embedded["videos"], embedded_items=embedded["items"],
                       timing={k: round(v, 3) for k, v in self.timing.items()})
        return summary

    # -- housekeeping (rank 0) -------------------------------------------------------------------------
    def _tidy(self) -> None:
        """Remove what earlier builds left and cannot be used: work areas of another process count, already
        merged or without a plan (a kill while they were removed)."""
        for d in (self.index, self.index / "shards"):
            clean_tmp(d)  # plans being written when a build was killed
        meta, _ = _read_store(self.index)
        merged = set((meta.get("build") or {}).get("merged_plans", []))
        for part, p in _plans(self.index).items():
            if _plan_id(p) in merged:
                part.remove()
            elif part.world != self.dist.world:
                log.warning("%s: removing the unfinished work of a %d-process build (this one runs %d)",
                            part.dir, part.world, self.dist.world)
                part.remove()
        for part in _orphans(self.index):
            part.remove()

    # -- step 1: plan ----------------------------------------------------------------------------------
    def _plan(self) -> dict:
        from tqdm import tqdm

        from ..embed.storage import RETRYABLE

        t = time.perf_counter()
        meta, stored = _read_store(self.index)
        _check_compatible(self.index, meta, self.identity, self.settings, self.dim)
        refs = sorted(self.scan.videos, key=lambda r: r.abspath)
        h = hashlib.sha256()
        for r in refs:
            h.update(f"{r.abspath}\t{r.size}\t{r.mtime_ns}\n".encode())
        mine = refs[self.dist.rank::self.dist.world]
        prev = self._previous_plan()
        cached = {(e["path"], e["size"], e["mtime_ns"]): e["sha256"] for e in (prev or {}).get("files", [])
                  if e.get("sha256")}
        entries: list[dict] = []
        to_hash: list[tuple[dict, VideoState | None]] = []
        for r in mine:
            e = {"path": r.abspath, "size": r.size, "mtime_ns": r.mtime_ns, "sha256": None, "action": None}
            st = stored.get(r.abspath)
            if r.size is None:  # vanished or unreadable since the scan
                e.update(size=0, mtime_ns=0, sha256="", action="bad", reason="unreadable",
                         detail="the file cannot be read (stat failed)")
            elif st is not None and (st.size, st.mtime_ns) == (r.size, r.mtime_ns) and not self.rehash \
                    and st.sha256:
                e["sha256"] = st.sha256
                retry = st.status != "ok" and (self.retry_bad or st.status in RETRYABLE)
                e["action"] = "embed" if retry else "keep"
            else:
                to_hash.append((e, st))
            entries.append(e)
        th = time.perf_counter()
        bar = tqdm(total=sum(e["size"] for e, _ in to_hash), unit="B", unit_scale=True, desc="hash",
                   disable=not self.progress or not to_hash, dynamic_ncols=True)
        try:
            for e, st in to_hash:
                key = (e["path"], e["size"], e["mtime_ns"])
                try:
                    e["sha256"] = cached.get(key) or sha256_file(e["path"])
                except OSError as err:
                    e.update(sha256="", action="bad", reason="unreadable", detail=f"{err.strerror or err}")
                    continue
                finally:
                    bar.update(e["size"])
                same = st is not None and st.sha256 == e["sha256"]
                retry = st is not None and st.status != "ok" and (self.retry_bad or st.status in RETRYABLE)
                e["action"] = "touch" if same and not retry else "embed"
        finally:
            bar.close()
        self.timing["hash"] = time.perf_counter() - th
        plan = {"format": PLAN_FORMAT, "version": PLAN_VERSION, "rank": self.dist.rank, "world_size": self.dist.world,
                "inputs_sha256": h.hexdigest(), "model": self.identity, "settings": self.settings, "dim": self.dim,
                "work": self.work_key, "files": entries, "problems": self.scan.problems, "status": "embedding"}
        write_json(self.part.plan, plan)
        self.timing["plan"] = time.perf_counter() - t - self.timing["hash"]
        return plan

    def _previous_plan(self) -> dict | None:
        """The plan of an unfinished earlier run of this work area (its hashes are reused); a work area made
        with another model or settings, or without a readable plan, is removed."""
        p = self.part.plan
        prev = None
        if p.is_file():
            try:
                prev = json.loads(p.read_text())
            except (OSError, ValueError):
                prev = None
        if prev is None or prev.get("format") != PLAN_FORMAT or prev.get("work") != self.work_key:
            if prev is not None or self.part.dir.exists():
                log.warning("%s: discarding an unfinished work area made with other settings", self.part.dir)
            self.part.remove()
            return None
        return prev

    # -- step 2: embed ---------------------------------------------------------------------------------
    def _embed(self, plan: dict) -> dict:
        from ..embed import embed_videos

        todo = [e["path"] for e in plan["files"] if e["action"] == "embed"]
        out = {"videos": 0, "items": 0, "status": None}
        if not todo:
            shutil.rmtree(self.part.dir, ignore_errors=True)  # an earlier delta's output: nothing refers to it
            return out
        _kill_point("embed")
        t = time.perf_counter()
        res = embed_videos(todo, self.model, out_dir=self.part.dir, progress=self.progress, **self.embed_kw)
        self.timing["embed"] = time.perf_counter() - t
        if res.status != "already_complete":  # (a resumed run whose embedding had finished did no model work)
            out.update(videos=res.meta["timing"]["videos_this_run"], items=res.meta["timing"]["items_this_run"])
        out["status"] = res.status
        plan["embedded"] = True
        return out

    # -- step 3: thumbnails ----------------------------------------------------------------------------
    def _thumbnails(self, plan: dict, embedded: dict) -> None:
        from tqdm import tqdm

        from ..embed import load

        if not plan.get("embedded"):
            return
        t = time.perf_counter()
        res = load(self.part.dir)
        rows = _rows_by_path(res)
        files = [e for e in plan["files"] if e["action"] == "embed" and rows.get(e["path"])]
        cache = _ThumbCache(self.part.thumbs)
        jobs = []
        for e in files:
            key = _thumb_key(e, rows[e["path"]])
            if cache.get(e["path"], key) is None:
                jobs.append((e["path"], key, [middle_frame(r["frame_indices"]) for r in rows[e["path"]]]))
        bar = tqdm(total=len(files), initial=len(files) - len(jobs), unit="video", desc="thumbnails",
                   disable=not self.progress or not files, dynamic_ncols=True)
        # the model is done: the cores embed's decoding workers and model threads used are free for this
        procs = min(_cpu_count(), int(self.embed_kw["workers"] if self.embed_kw["workers"] is not None
                                      else _default_workers()) + 1, max(1, len(jobs) // 32))
        pool = None
        try:
            args = [(p, mids, self.thumb_width, self.timeout) for p, _, mids in jobs]
            if procs > 1:
                import multiprocessing

                # fork: no re-import; children only decode (PyAV) and encode, never run torch in parallel
                pool = multiprocessing.get_context("fork").Pool(procs, initializer=_thumbs_worker_init)
                results = pool.imap(_thumbs_job, args, chunksize=4)
            else:
                results = map(_thumbs_job, args)
            for n, ((path, key, _), (jpegs, why)) in enumerate(zip(jobs, results), 1):
                if why is not None:
                    log.warning("%s: no thumbnails (%s)", path, why)
                cache.put(path, key, jpegs)
                bar.update(1)
                _kill_point("thumbs", n)
        finally:
            if pool is not None:
                pool.terminate()
            bar.close()
            cache.close()
        self.timing["thumbs"] = time.perf_counter() - t

    def _shard_summary(self, plan: dict, embedded: dict, standalone: bool) -> dict:
        bad = _embed_errors(self.part) if plan.get("embedded") else {}
        unusable = [{"path": e["path"], "reason": e.get("reason"), "detail": e.get("detail")}
                    for e in plan["files"] if e["action"] == "bad"]
        unusable += [{"path": p, "reason": r, "detail": d} for p, (r, d) in sorted(bad.items())]
        unusable += [{"path": p["video"], "reason": p["reason"], "detail": p["detail"]} for p in plan["problems"]]
        actions = [e["action"] for e in plan["files"]]
        return {"index": str(self.index), "status": "shard_done", "rank": self.dist.rank,
                "world_size": self.dist.world, "shard": self.part.name, "videos": len(plan["files"]),
                "embedded_videos": embedded["videos"], "embedded_items": embedded["items"],
                "to_embed": actions.count("embed"), "touched": actions.count("touch"), "kept": actions.count("keep"),
                "unusable": unusable, "merge_pending": standalone,
                "timing": {k: round(v, 3) for k, v in self.timing.items()}}


def _cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def _default_workers() -> int:
    from ..embed import default_workers

    return default_workers()


def _thumbs_worker_init() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent alone answers Ctrl-C
    _JPEG_CACHE.clear()  # encoder contexts of the parent: not this process's


def _rows_by_path(res) -> dict[str, list[dict]]:
    rows: dict[str, list[dict]] = {}
    for r in res.index:
        rows.setdefault(os.path.abspath(r["path"]), []).append(r)
    return rows


def _embed_errors(part: _Part) -> dict[str, tuple[str, str]]:
    from ..embed import load

    return {os.path.abspath(e["path"]): (e["reason"], e["detail"]) for e in load(part.dir).errors}


# ----------------------------------------------------------------------------------------------------------
# step 4: the sync / merge
# ----------------------------------------------------------------------------------------------------------
def merge_index(index: str | os.PathLike, *, progress: bool = True) -> dict[str, Any]:
    """Merge the finished shards of ``index`` (``INDEX/shards/rank*-of-W``, or a one-process run's work area)
    into its store in one transaction, then remove them: ``internvideo2 index --merge INDEX``. Every rank of
    the shard set must have finished (:class:`ConfigError` names those that did not). Idempotent: merging
    again, or after a kill, changes nothing twice. Returns the summary of :func:`build_index` (``status``
    ``unchanged`` when there was nothing to merge)."""
    index = Path(index).expanduser()
    if not index.is_dir():
        raise ConfigError("merge", f"{index}: no such index folder")
    t = time.perf_counter()
    with _IndexLock(index):
        summary = _merge(index, world=None, progress=progress)
    summary["timing"] = {"sync": round(time.perf_counter() - t, 3), "total": round(time.perf_counter() - t, 3)}
    return summary


def _merge(index: Path, *, world: int | None, progress: bool) -> dict[str, Any]:
    """Step 4 on the folder's plans (the caller holds the index lock). ``world``: the build's process count
    (None: whatever complete set is there)."""
    from tqdm import tqdm

    meta, _ = _read_store(index)
    merged = set((meta.get("build") or {}).get("merged_plans", []))
    plans: dict[_Part, tuple[Path, dict]] = {}
    for part, p in _plans(index).items():
        if _plan_id(p) in merged:  # merged by a run killed before it removed its work areas
            part.remove()
            continue
        try:
            plans[part] = (p, json.loads(p.read_text()))
        except (OSError, ValueError) as e:
            raise ConfigError("merge", f"{p}: unreadable plan ({e}); run that shard again") from None
    worlds = sorted({part.world for part in plans} | ({world} if world else set()))
    if not plans:
        _, stored = _read_store(index)
        return _summary(index, "unchanged", stored, {}, [], None)
    if len(worlds) > 1:
        raise ConfigError("merge", f"{index} holds shards of builds with {' and '.join(map(str, worlds))} processes; "
                                   "finish one of them (or delete the folder shards/ of the other)")
    w = worlds[0]
    for r in range(w):
        part = _Part(index, r, w)
        if part not in plans:
            raise ConfigError("merge", f"{index}: shard {part.name} has not run (no {part.plan.name}); run rank {r} "
                                       f"of {w}, then merge")
        if plans[part][1].get("status") != "done":
            raise ConfigError("merge", f"{index}: shard {part.name} has not finished; run rank {r} of {w} again (it "
                                       "resumes), then merge")
    ordered = [plans[_Part(index, r, w)] for r in range(w)]
    first = ordered[0][1]
    for p, pl in ordered[1:]:
        for key in ("inputs_sha256", "settings", "dim", "model"):
            differs = not same_model(pl[key], first[key]) if key == "model" else pl.get(key) != first.get(key)
            if differs:
                raise ConfigError("merge", f"{p} and {ordered[0][0]} differ in {key} (the ranks saw other inputs or "
                                           "ran with other options); run every rank again with the same command")
    identity, settings, dim = first["model"], first["settings"], int(first["dim"])

    store = IndexStore(index, create=True)
    try:
        _check_compatible(index, store.meta(), identity, settings, dim)
        before = store.videos()
        files = sorted((e for _, pl in ordered for e in pl["files"]), key=lambda e: e["path"])
        wanted = {e["path"] for e in files}
        problems = {p["video"]: p for _, pl in ordered for p in pl.get("problems", [])}
        counts = {"added": 0, "changed": 0, "touched": 0, "removed": 0, "kept": 0}
        removals = [p for p in before if p not in wanted]
        writes: list[tuple[dict, _Part]] = []
        touches: list[dict] = []
        part_of = {e["path"]: _Part(index, pl["rank"], pl["world_size"]) for _, pl in ordered for e in pl["files"]}
        for e in files:
            st = before.get(e["path"])
            same_id = st is not None and (st.size, st.mtime_ns, st.sha256) == (e["size"], e["mtime_ns"], e["sha256"])
            if e["action"] == "keep":
                if not same_id:
                    raise ConfigError("merge", f"{e['path']}: the index changed since the shards were planned; run "
                                               "the build again")
                counts["kept"] += 1
            elif e["action"] == "touch":
                if st is None or st.sha256 != e["sha256"]:
                    raise ConfigError("merge", f"{e['path']}: the index changed since the shards were planned; run "
                                               "the build again")
                if not same_id:
                    touches.append(e)
                    counts["touched"] += 1
                else:
                    counts["kept"] += 1
            else:  # embed / bad: written unless the store already holds this very file, usable (a repeated merge)
                if same_id and (st.status == "ok" if e["action"] == "embed" else st.status == e.get("reason")):
                    counts["kept"] += 1
                    continue
                writes.append((e, part_of[e["path"]]))
                counts["added" if st is None else "changed"] += 1
        counts["removed"] = len(removals)
        new_meta = {"format": FORMAT, "schema": SCHEMA_VERSION, "dim": dim, "settings": settings, "model": identity}
        cur = store.meta()
        meta_changed = any(cur.get(k) != v for k, v in new_meta.items())
        ids = [_plan_id(p) for p, _ in ordered]
        if writes or touches or removals or meta_changed:
            results: dict[_Part, Any] = {}
            errors: dict[_Part, dict] = {}
            thumbs: dict[_Part, _ThumbCache] = {}
            bar = tqdm(total=len(writes) + len(touches) + len(removals), unit="video", desc="store",
                       disable=not progress, dynamic_ncols=True)
            try:
                with store.transaction():  # ONE transaction: the old index or the new one, never a mix
                    store.set_meta(**new_meta, build={"merged_plans": ids, "world_size": w, "time": time.time()})
                    for p in removals:
                        store.remove_video(p)
                        bar.update(1)
                    for e in touches:
                        # same content, new identity: the items (vectors, thumbnails) stay as they are
                        store.db.execute("UPDATE videos SET size = ?, mtime_ns = ? WHERE path = ?",
                                         (e["size"], e["mtime_ns"], e["path"]))
                        bar.update(1)
                    for n, (e, part) in enumerate(writes, 1):
                        if e["action"] == "bad":
                            store.put_video(VideoState(e["path"], e["size"], e["mtime_ns"], e["sha256"],
                                                       e.get("reason") or "unreadable", e.get("detail")), [])
                        else:
                            if part not in results:
                                results[part] = _load_part(part)
                                errors[part] = {os.path.abspath(x["path"]): x for x in results[part][0].errors}
                                thumbs[part] = _ThumbCache(part.thumbs)
                            res, rows = results[part]
                            state, items = _video_items(e, res, rows, errors[part], thumbs[part], part)
                            store.put_video(state, items)
                        bar.update(1)
                        _kill_point("store", n)
            finally:
                bar.close()
                for c in thumbs.values():
                    c.close()
                results.clear()
            status = "built" if not before else "updated"
        else:
            status = "unchanged"
        _kill_point("cleanup")
        for part in plans:
            part.remove()
        with contextlib.suppress(OSError):
            (index / "shards").rmdir()  # only when empty
        after = store.videos()
    finally:
        store.close()
    return _summary(index, status, after, counts, list(problems.values()), w)


def _load_part(part: _Part):
    from ..embed import load

    if not (part.dir / "meta.json").is_file():
        raise ConfigError("merge", f"{part.dir}: the shard's embeddings are missing; run rank {part.rank} of "
                                   f"{part.world} again, then merge")
    res = load(part.dir)
    return res, _rows_by_path(res)


def _video_items(e: dict, res, rows: dict, errors: dict, cache: _ThumbCache, part: _Part):
    """The store state and items of one embedded video of a shard."""
    path = e["path"]
    if path in errors:
        err = errors[path]
        return VideoState(path, e["size"], e["mtime_ns"], e["sha256"], err["reason"], err.get("detail")), []
    rr = rows.get(path)
    if rr is None:
        # embed records every video it was given (rows or an error); a video without either was not embedded
        ok = any(v.get("path") == path for v in _videos_json(part))
        if not ok:
            raise ConfigError("merge", f"{path}: not in {part.dir}'s embeddings; run rank {part.rank} of "
                                       f"{part.world} again, then merge")
        rr = []
    jpegs = cache.get(path, _thumb_key(e, rr)) if rr else []
    if jpegs is None or len(jpegs) != len(rr):
        jpegs = [None] * len(rr)
        log.warning("%s: thumbnails missing from %s", path, part.thumbs)
    emb = res.embeddings
    items = [(r["start_s"], r["end_s"], np.asarray(emb[r["row"]], dtype=np.float32), j) for r, j in zip(rr, jpegs)]
    return VideoState(path, e["size"], e["mtime_ns"], e["sha256"], "ok", None), items


def _videos_json(part: _Part) -> list[dict]:
    try:
        return json.loads((part.dir / "videos.json").read_text())
    except (OSError, ValueError):
        return []


def _summary(index: Path, status: str, videos: dict[str, VideoState], counts: dict, problems: list[dict],
             world: int | None) -> dict[str, Any]:
    n_items = 0
    if (index / STORE_FILE).is_file():
        store = IndexStore(index, readonly=True)
        try:
            n_items = store.count()
        finally:
            store.close()
    unusable = [{"path": v.path, "reason": v.status, "detail": v.detail} for v in videos.values() if v.status != "ok"]
    unusable += [{"path": p["video"], "reason": p["reason"], "detail": p["detail"]} for p in problems]
    return {"index": str(index), "status": status, "videos": len(videos), "items": n_items,
            **{k: counts.get(k, 0) for k in ("added", "changed", "touched", "removed", "kept")},
            "embedded_videos": 0, "embedded_items": 0, "unusable": unusable, "rank": 0, "world_size": world or 1,
            "timing": {}}


# ----------------------------------------------------------------------------------------------------------
# CLI
# ----------------------------------------------------------------------------------------------------------
def configure_parser(parser: argparse.ArgumentParser) -> None:
    from ..embed.cli import add_execution_arguments, add_shot_arguments
    from ..embed.settings import RESIZES

    parser.add_argument("videos", nargs="*", metavar="VIDEO", help="video files and/or folders (recursive); the "
                        "index holds exactly these videos afterwards")
    parser.add_argument("--model", metavar="M", help="a stage-2 or CLIP model (a folder saved with save_pretrained "
                        "or an official checkpoint file); recorded in the index, which `search` then loads")
    parser.add_argument("-o", "--out", metavar="INDEX", help="the index folder (created; updated when it exists)")
    parser.add_argument("--merge", metavar="INDEX", default=None,
                        help="only merge the finished shards of INDEX (runs of --shard, or ranks on other machines) "
                             "into its store")
    parser.add_argument("--shard", metavar="R/W", default=None,
                        help="build only shard R of W (0-based) without torchrun; then run --merge INDEX")
    g = parser.add_argument_group("items")
    g.add_argument("--mode", choices=MODES, default="shots",
                   help="shots (default): one item per shot; window: fixed windows; clip: one item per video")
    g.add_argument("--window", type=float, default=None, metavar="S", help="window length in seconds")
    g.add_argument("--stride", type=float, default=None, metavar="S", help="window step in seconds (default: window)")
    g.add_argument("--frames", type=int, default=None, metavar="N",
                   help="frames per item, official 'middle' sampling (default: the model's num_frames)")
    g.add_argument("--size", type=int, default=None, help="input side (default: the model's img_size)")
    g.add_argument("--resize", choices=RESIZES, default="squash", help="the evaluation transform (default squash)")
    add_shot_arguments(g)
    g.add_argument("--thumb-width", type=int, default=320, metavar="PX", help="thumbnail width (default 320)")
    g = parser.add_argument_group("execution")
    add_execution_arguments(g, device_help="cpu (default), cuda (under torchrun: each rank's GPU), cuda:1 ...")
    g.add_argument("--retry-bad", action="store_true",
                   help="also retry videos that failed for a lasting reason (a corrupt file unchanged on disk)")
    g.add_argument("--rehash", action="store_true",
                   help="hash every video (default: only those whose size or mtime changed)")
    g.add_argument("--overwrite", action="store_true", help="delete the index and build it again")
    g.add_argument("--no-progress", action="store_true", help="no progress bars")


def _parse_shard(text: str | None) -> tuple[int, int] | None:
    if text is None:
        return None
    r, sep, w = text.partition("/")
    if not sep or not r.strip().isdigit() or not w.strip().isdigit() or not 0 <= int(r) < int(w):
        raise ConfigError("shard", f"must be R/W with 0 <= R < W (e.g. 0/4), got {text!r}")
    return int(r), int(w)


def _print_summary(s: dict, prog: str = "internvideo2 index") -> int:
    bad = s["unusable"]
    if s["status"] == "shard_done":
        head = (f"index: shard {s['shard']} of {s['index']}: {s['videos']} videos, embedded {s['embedded_videos']} "
                f"({s['embedded_items']} items)")
        tail = (f"; when every shard is done, run: internvideo2 index --merge {s['index']}" if s["merge_pending"]
                else "; rank 0 merges")
        print(head + (f"; {len(bad)} unusable" if bad else "") + tail, flush=True)
    elif s["status"] == "unchanged":
        print(f"index: {s['index']} is up to date ({s['videos']} videos, {s['items']} items); nothing to do",
              flush=True)
    else:
        what = ", ".join(f"{s[k]} {k}" for k in ("added", "changed", "touched", "removed") if s[k])
        t = s.get("timing", {})
        emb = f"; embedded {s['embedded_videos']} videos ({s['embedded_items']} items)" if s["embedded_videos"] else ""
        reasons: dict[str, int] = {}
        for b in bad:
            reasons[b["reason"]] = reasons.get(b["reason"], 0) + 1
        why = ", ".join(f"{k}: {v}" for k, v in sorted(reasons.items()))
        unusable = f"; {len(bad)} unusable ({why})" if bad else ""
        print(f"index: {s['videos']} videos -> {s['items']} items in {s['index']} ({s['status']}: "
              f"{what or 'no change'}){emb}{unusable} [{t.get('total', t.get('sync', 0))} s]", flush=True)
    if bad:
        for b in bad[:20]:
            print(f"{prog}: unusable: {b['path']}: {b['reason']}" + (f" ({b['detail']})" if b.get("detail") else ""),
                  file=sys.stderr)
        if len(bad) > 20:
            print(f"{prog}: ... and {len(bad) - 20} more unusable files", file=sys.stderr)
        print(f"{prog}: the index is incomplete: {len(bad)} unusable files (a rerun retries those that can change; "
              "--retry-bad retries all)", file=sys.stderr, flush=True)
        return 1
    return 0


def run(args: argparse.Namespace) -> int:
    """Exit codes: 0 the index holds every input; 1 some inputs are unusable (listed on stderr and in the
    summary) or too many were (``--max-bad-fraction``); 2 usage (a bad flag, another model or other settings than
    the index's, ...); 130 interrupted (run the same command again: it resumes)."""
    from ..data.bad_samples import DataQualityError
    from ..utils.paths import input_path, output_dir

    if args.merge is not None:
        if args.videos or args.out or args.model or args.shard:
            raise ConfigError("merge", "--merge INDEX takes no VIDEOS, --model, -o or --shard: it only merges the "
                                       "shards already built in INDEX")
        return _print_summary(merge_index(args.merge, progress=not args.no_progress))
    if not args.videos:
        raise ConfigError("videos", "required: the videos to index (files and/or folders), or --merge INDEX")
    if not args.model:
        raise ConfigError("model", "required: the stage-2 or CLIP model to embed with (--model M)")
    if not args.out:
        raise ConfigError("out", "required: the index folder (-o INDEX)")
    shard = _parse_shard(args.shard)
    if args.timeout <= 0:
        raise ConfigError("timeout", f"must be > 0 seconds, got {args.timeout}")
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError("device", f"{args.device!r} asked but no CUDA GPU is available here (use --device cpu)")
    input_path(args.model, "model")
    output_dir(args.out, "out", create=False)
    try:
        summary = build_index(
            args.videos, args.model, args.out, mode=args.mode, window=args.window, stride=args.stride,
            frames=args.frames, size=args.size, resize=args.resize, shot_ratio=args.shot_ratio,
            shot_min_score=args.shot_min_score, shot_min_len=args.shot_min_len, shot_step=args.shot_step,
            batch_size=args.batch, chunk_size=args.chunk, workers=args.workers, threads=args.threads,
            device=args.device, dtype=args.dtype, timeout=args.timeout, max_bad_fraction=args.max_bad_fraction,
            bad_check_after=args.bad_check_after, retry_bad=args.retry_bad, rehash=args.rehash,
            overwrite=args.overwrite, thumb_width=args.thumb_width, progress=not args.no_progress, shard=shard)
    except DataQualityError as e:
        print(f"internvideo2 index: error: {e}\n(the finished work is kept in {args.out}; rerun with a higher "
              "--max-bad-fraction to go on)", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"internvideo2 index: interrupted; the finished work is kept in {args.out}, rerun the same command "
              "to resume", file=sys.stderr)
        return 130
    return _print_summary(summary)


__all__ = ["ItemSettings", "build_index", "merge_index", "sha256_file", "encode_jpeg", "item_thumbnails",
           "middle_frame", "configure_parser", "run", "KILL_ENV"]
