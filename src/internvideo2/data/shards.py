"""WebDataset-style tar shards, written and streamed with the standard ``tarfile`` module.

Layout (the WebDataset convention, so shards are interchangeable with that ecosystem): a shard is a plain
tar file; a sample is the group of consecutive members sharing a *key*, the member name up to the first
dot of its base name; the rest is the *extension*: ``000001.mp4``, ``000001.json``, ``000001.txt`` form the
sample ``000001`` with files ``mp4``, ``json``, ``txt``.

:func:`write_shards` writes samples into numbered shards; :class:`ShardedVideoDataset` streams them
(``IterableDataset``), splitting the shards over distributed ranks and DataLoader workers without
duplicates, decoding video from the in-memory bytes and applying the bad-sample policy of
:mod:`internvideo2.data.datasets` (markers that :func:`~internvideo2.data.datasets.collate_skip_bad` counts).
"""
from __future__ import annotations

import glob
import io
import json
import logging
import os
import random
import re
import tarfile
import tempfile
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import IterableDataset, get_worker_info

from ..errors import ConfigError, MediaError
from ..utils.io import commit, tmp_name
from ..utils.seeding import derive_rng
from .audio import BEATS_TARGET_FRAMES, load_beats_fbank
from .datasets import BadSample, _dist_info, _to_float_video, read_image
from .text import pre_text, sample_caption

logger = logging.getLogger("internvideo2.data")

__all__ = [
    "AUDIO_EXTS",
    "IMAGE_EXTS",
    "VIDEO_EXTS",
    "ShardedVideoDataset",
    "expand_urls",
    "iter_shard",
    "split_shards",
    "write_shards",
]

VIDEO_EXTS = ("mp4", "webm", "mkv", "avi", "mov", "m4v", "mpg", "mpeg", "gif")
AUDIO_EXTS = ("wav", "flac", "ogg", "mp3", "m4a", "aac", "opus")
IMAGE_EXTS = ("jpg", "jpeg", "png", "webp", "bmp")

_KEY_RE = re.compile(r"^((?:.*/)?[^./]+)\.([^/]+)$")


# ---------------------------------------------------------------------------------------------------------
# writing
# ---------------------------------------------------------------------------------------------------------


def _sample_items(sample: Any) -> tuple[str, dict[str, Any]]:
    """Normalise one sample to ``(key, {ext: data})``.

    Accepted forms: ``{"__key__": key, ext: data, ...}``; ``(key, {ext: data})``;
    ``(key, {"key.ext": data})``.
    """
    if isinstance(sample, Mapping):
        if "__key__" not in sample:
            raise ConfigError("samples", "a sample mapping needs a '__key__' entry")
        key = sample["__key__"]
        files = {k: v for k, v in sample.items() if k != "__key__"}
    elif isinstance(sample, (tuple, list)) and len(sample) == 2 and isinstance(sample[1], Mapping):
        key, files = sample
    else:
        raise ConfigError(
            "samples", f"a sample is a mapping with '__key__' or a (key, files) pair, got {sample!r:.80}"
        )
    key = str(key)
    if not key or "." in key.rsplit("/", 1)[-1] or key.endswith("/"):
        raise ConfigError(
            "samples", f"bad sample key {key!r}: it must be non-empty and have no '.' in its base name"
        )
    out: dict[str, Any] = {}
    for name, data in files.items():
        ext = name[len(key) + 1:] if name.startswith(key + ".") else name
        ext = ext.lstrip(".")
        if not ext or "/" in ext:
            raise ConfigError("samples", f"sample {key!r}: bad file name {name!r}")
        out[ext] = data
    if not out:
        raise ConfigError("samples", f"sample {key!r} has no files")
    return key, out


def _to_bytes(data: Any, what: str) -> bytes:
    """Bytes of a sample file: bytes as is; ``Path`` read from disk; str UTF-8 text; dict/list/number JSON."""
    if isinstance(data, (bytes, bytearray, memoryview)):
        return bytes(data)
    if isinstance(data, Path):
        try:
            return data.read_bytes()
        except OSError as e:
            raise MediaError(
                str(data), "not_found" if isinstance(e, FileNotFoundError) else "unreadable", str(e)
            ) from e
    if isinstance(data, str):
        return data.encode("utf-8")
    if isinstance(data, (dict, list, int, float, bool)) or data is None:
        return json.dumps(data, ensure_ascii=False).encode("utf-8")
    raise ConfigError(
        "samples", f"{what}: cannot store a {type(data).__name__} (use bytes, Path, str or JSON data)"
    )


def write_shards(
    samples: Iterable[Any],
    out_dir: str | os.PathLike,
    samples_per_shard: int = 1000,
    *,
    prefix: str = "shard",
    digits: int = 6,
) -> list[Path]:
    """Write samples into ``out_dir/{prefix}-{000000}.tar``, ``samples_per_shard`` samples per shard.

    A sample is ``{"__key__": "000001", "mp4": Path("clip.mp4"), "json": {"caption": "..."}}`` (or
    ``("000001", {"000001.mp4": ..., "000001.json": ...})``). File data: ``bytes`` as is, a
    :class:`pathlib.Path` is read from disk, ``str`` is UTF-8 text, dicts/lists/numbers are JSON. Keys must be
    unique and contain no dot in their base name. Members are written in a fixed order with zeroed owner
    and time fields, so the same samples give byte-identical shards. Each shard is written to a temporary
    name and renamed when complete (an interrupted run leaves no half shard under a final name).

    Returns the shard paths in order.
    """
    if int(samples_per_shard) < 1:
        raise ConfigError("samples_per_shard", f"must be >= 1, got {samples_per_shard}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths: list[Path] = []
    seen: set[str] = set()
    tar: tarfile.TarFile | None = None
    tmp: Path | None = None
    count = 0

    def _close():
        nonlocal tar, tmp
        if tar is not None:
            tar.close()
            final = out / f"{prefix}-{len(paths):0{digits}d}.tar"
            commit(tmp, final)
            paths.append(final)
            tar, tmp = None, None

    try:
        for sample in samples:
            key, files = _sample_items(sample)
            if key in seen:
                raise ConfigError("samples", f"duplicate sample key {key!r}")
            seen.add(key)
            if tar is None:
                tmp = tmp_name(out / f"{prefix}-{len(paths):0{digits}d}.tar")
                tar = tarfile.open(
                    tmp, "w", format=tarfile.USTAR_FORMAT if len(key) < 90 else tarfile.PAX_FORMAT
                )
                count = 0
            for ext in sorted(files):
                data = _to_bytes(files[ext], f"sample {key!r} file {ext!r}")
                info = tarfile.TarInfo(f"{key}.{ext}")
                info.size = len(data)
                info.mtime = 0
                info.mode = 0o644
                info.uid = info.gid = 0
                info.uname = info.gname = ""
                tar.addfile(info, io.BytesIO(data))
            count += 1
            if count >= samples_per_shard:
                _close()
        _close()
    finally:
        if tar is not None:  # an exception left a shard open: drop the partial file
            tar.close()
            if tmp is not None and tmp.exists():
                tmp.unlink()
    return paths


# ---------------------------------------------------------------------------------------------------------
# reading
# ---------------------------------------------------------------------------------------------------------


def _expand_braces(s: str) -> list[str]:
    """``a-{000..003}.tar`` -> ``a-000.tar ... a-003.tar`` (numeric ranges keep the zero padding)."""
    m = re.search(r"\{(\d+)\.\.(\d+)\}", s)
    if m:
        lo, hi = m.group(1), m.group(2)
        width = len(lo) if lo.startswith("0") else 0
        return [x for i in range(int(lo), int(hi) + 1)
                for x in _expand_braces(s[: m.start()] + f"{i:0{width}d}" + s[m.end():])]
    m = re.search(r"\{([^{}]*,[^{}]*)\}", s)
    if m:
        return [
            x for alt in m.group(1).split(",") for x in _expand_braces(s[: m.start()] + alt + s[m.end() :])
        ]
    return [s]


def expand_urls(urls_or_dir: str | os.PathLike | Sequence[str | os.PathLike]) -> list[str]:
    """Shard list from a folder (its ``*.tar``, sorted), a brace pattern (``shard-{000000..000009}.tar``),
    a glob, or a list of those."""
    if isinstance(urls_or_dir, (list, tuple)):
        return [u for x in urls_or_dir for u in expand_urls(x)]
    s = os.fspath(urls_or_dir)
    if os.path.isdir(s):
        out = sorted(str(p) for p in Path(s).glob("*.tar"))
        if not out:
            raise ConfigError("urls", f"no .tar shards in folder {s}")
        return out
    out = []
    for u in _expand_braces(s):
        if any(ch in u for ch in "*?["):
            hits = sorted(glob.glob(u))
            if not hits:
                raise ConfigError("urls", f"no shard matches {u!r}")
            out += hits
        else:
            out.append(u)
    return out


def iter_shard(path: str | os.PathLike | bytes) -> Iterator[tuple[str, dict[str, bytes]]]:
    """Yield ``(key, {ext: bytes})`` for every sample of one tar shard, in file order.

    Raises :class:`MediaError` (``not_found``, ``bad_shard``) when the tar cannot be opened or breaks while
    reading; samples completed before the damage have been yielded already.
    """
    label = "<bytes>" if isinstance(path, (bytes, bytearray)) else os.fspath(path)
    try:
        if isinstance(path, (bytes, bytearray)):
            tf = tarfile.open(fileobj=io.BytesIO(bytes(path)), mode="r:*")
        else:
            if not os.path.isfile(label):
                raise MediaError(label, "not_found")
            tf = tarfile.open(label, mode="r:*")
    except MediaError:
        raise
    except (tarfile.TarError, OSError, EOFError) as e:
        raise MediaError(label, "bad_shard", f"{type(e).__name__}: {e}") from e
    key: str | None = None
    files: dict[str, bytes] = {}
    with tf:
        try:
            for member in tf:
                if not member.isfile():
                    continue
                m = _KEY_RE.match(member.name)
                if not m:
                    logger.warning("%s: member %r has no key.extension name; ignored", label, member.name)
                    continue
                k, ext = m.group(1), m.group(2)
                f = tf.extractfile(member)
                data = f.read() if f is not None else b""
                if k != key:
                    if key is not None:
                        yield key, files
                    key, files = k, {}
                files[ext] = data
        except (tarfile.TarError, OSError, EOFError) as e:
            raise MediaError(label, "bad_shard", f"{type(e).__name__}: {e}") from e
        if key is not None:
            yield key, files


def split_shards(
    shards: Sequence[str], rank: int, world_size: int, worker_id: int, num_workers: int
) -> list[str]:
    """The shards one (rank, worker) reads: rank ``r`` takes ``shards[r::world_size]``, then worker ``w``
    of that rank takes every ``num_workers``-th of those from ``w``. Disjoint and complete over all pairs."""
    return list(shards[rank::world_size][worker_id::num_workers])


# ---------------------------------------------------------------------------------------------------------
# dataset
# ---------------------------------------------------------------------------------------------------------


def _decode_json(data: bytes):
    return json.loads(data.decode("utf-8"))


class ShardedVideoDataset(IterableDataset):
    """Streams samples from tar shards.

    Args:
        urls_or_dir: a folder of ``.tar`` shards, a brace pattern / glob, or a list of shard paths.
        num_frames, sample, transform, decode_size: as in :class:`~internvideo2.data.datasets.ClipDataset`.
        seed: base seed; shard order (``shuffle_shards``) depends on ``(seed, epoch)`` and every random draw
            of a sample on ``(seed, epoch, "shard-name/key")``, so results do not depend on how the shards
            were split over ranks and workers.
        rank, world_size: this process's place (default: ``torch.distributed`` when initialised, else 0/1).
        split_by: ``"shard"`` (default): rank r reads shards ``r::world``, its worker w every
            ``num_workers``-th of those (no duplicates; aim for a shard count that is a multiple of
            ``world_size * num_workers``, otherwise some workers run dry first and ranks see different
            numbers of samples). ``"sample"``: every (rank, worker) reads every shard and keeps the
            samples ``n`` (counted over the epoch's shard order) with
            ``n % (world * workers) == worker * world + rank`` (ranks balanced to one sample; every
            process reads all the bytes).
        shuffle_shards: permute the shard list every epoch (same permutation on every rank).
        shuffle_buffer: >0 shuffles samples within a buffer of that many (per worker, deterministic).
        media_ext: file extensions to take as the media of a sample (first present wins).
        decode: ``False`` yields the raw files (``{"key", "shard", "files": {ext: bytes}}``), no decoding.
        audio: also return ``audio`` [998, 64] / ``audio_valid_frames`` (from an audio file of the sample when
            there is one, else from the video's own track).
        skip_bad: yield :class:`BadSample` markers for samples that fail (collate with ``collate_skip_bad``).

    Items: ``{"video": [T, 3, H, W], "caption": str (when the sample has one), "label": int (when it has
    one), "key": str, "shard": str}``. Captions come from ``json["caption"]`` / ``json["captions"]`` or a
    ``txt`` file, pass through ``pre_text``, and one of several is drawn per sample with ``sample="rand"``
    (the first otherwise). Labels come from ``cls`` or ``json["label"]``.
    """

    def __init__(
        self,
        urls_or_dir,
        *,
        num_frames: int = 4,
        sample: str = "rand",
        transform: Callable | None = None,
        decode_size: tuple[int, int] | None = None,
        seed: int = 0,
        rank: int | None = None,
        world_size: int | None = None,
        split_by: str = "shard",
        shuffle_shards: bool = True,
        shuffle_buffer: int = 0,
        media_ext: Sequence[str] = VIDEO_EXTS + IMAGE_EXTS,
        decode: bool = True,
        pre_process: bool = True,
        audio: bool = False,
        audio_random_crop: bool | None = None,
        zero_audio_if_missing: bool = False,
        skip_bad: bool = True,
        timeout: float = 60.0,
    ):
        super().__init__()
        self.shards = expand_urls(urls_or_dir)
        if not self.shards:
            raise ConfigError("urls", "no shards given")
        if split_by not in ("shard", "sample"):
            raise ConfigError("split_by", f"must be 'shard' or 'sample', got {split_by!r}")
        self.world_size, self.rank = _dist_info(world_size, rank)
        self.num_frames = int(num_frames)
        self.sample = sample
        self.transform = transform
        self.decode_size = decode_size
        self.seed = int(seed)
        self.epoch = 0
        self.split_by = split_by
        self.shuffle_shards = shuffle_shards
        self.shuffle_buffer = int(shuffle_buffer)
        self.media_ext = tuple(e.lower() for e in media_ext)
        self.decode = decode
        self.pre_process = pre_process
        self.audio = audio
        self.audio_random_crop = (sample == "rand") if audio_random_crop is None else audio_random_crop
        self.zero_audio_if_missing = zero_audio_if_missing
        self.skip_bad = skip_bad
        self.timeout = float(timeout)
        self._warned = False

    def set_epoch(self, epoch: int) -> None:
        """Epoch for the shard order and the per-sample draws (call before creating the iterator; with
        ``persistent_workers=True`` the workers keep the epoch they were started with)."""
        self.epoch = int(epoch)

    def epoch_shards(self, epoch: int | None = None) -> list[str]:
        """The shard order of an epoch (before splitting)."""
        shards = list(self.shards)
        if self.shuffle_shards:
            random.Random(f"shards|{self.seed}|{self.epoch if epoch is None else epoch}").shuffle(shards)
        return shards

    def _worker(self) -> tuple[int, int]:
        info = get_worker_info()
        return (0, 1) if info is None else (info.id, info.num_workers)

    def __iter__(self) -> Iterator[Any]:
        worker_id, num_workers = self._worker()
        shards = self.epoch_shards()
        slots = self.world_size * num_workers
        if self.split_by == "shard":
            mine = split_shards(shards, self.rank, self.world_size, worker_id, num_workers)
            if len(shards) < slots and not self._warned:
                logger.warning("%d shards for %d ranks x %d workers: some workers get no shard", len(shards),
                               self.world_size, num_workers)
                self._warned = True
            it = self._samples(mine, None, 0)
        else:
            # rank-minor slots: consecutive samples go to different ranks, so ranks differ by at most one
            slot = worker_id * self.world_size + self.rank
            it = self._samples(shards, slots, slot)
        if self.shuffle_buffer > 0:
            it = self._shuffled(it, worker_id)
        for key, shard, files in it:
            if isinstance(files, BadSample):
                yield files
                continue
            yield self._make(key, shard, files)

    def _samples(self, shards: Sequence[str], every: int | None, slot: int):
        n = 0
        for shard in shards:
            name = Path(shard).name
            try:
                for key, files in iter_shard(shard):
                    if every is not None:
                        take = n % every == slot
                        n += 1
                        if not take:
                            continue
                    yield key, name, files
            except MediaError as e:
                if not self.skip_bad:
                    raise
                logger.warning(
                    "bad shard %s: %s (%s); its remaining samples are lost", shard, e.reason, e.detail
                )
                # counted once, by the (rank, worker) that owns the shard (slot 0 in 'sample' mode)
                if every is None or slot == 0:
                    yield "", name, BadSample(name, e.path, e.reason, e.detail)

    def _shuffled(self, it, worker_id: int):
        rng = random.Random(f"buffer|{self.seed}|{self.epoch}|{self.rank}|{worker_id}")
        buf: list = []
        for x in it:
            buf.append(x)
            if len(buf) >= self.shuffle_buffer:
                j = rng.randrange(len(buf))
                buf[j], buf[-1] = buf[-1], buf[j]
                yield buf.pop()
        rng.shuffle(buf)
        yield from buf

    # -- one sample -----------------------------------------------------------------------------------

    def _rng(self, sid: str, purpose: str) -> random.Random:
        return derive_rng(self.seed, self.epoch, sid, purpose)

    def _make(self, key: str, shard: str, files: dict[str, bytes]):
        sid = f"{shard}/{key}"
        if not self.decode:
            return {"key": key, "shard": shard, "files": files}
        try:
            return self._decode(key, shard, sid, files)
        except MediaError as e:
            if not self.skip_bad:
                raise
            logger.warning("bad sample %s skipped: %s (%s)", sid, e.reason, e.detail)
            return BadSample(sid, sid, e.reason, e.detail)

    def _decode(self, key: str, shard: str, sid: str, files: dict[str, bytes]) -> dict:
        item: dict[str, Any] = {"key": key, "shard": shard}
        meta = None
        if "json" in files:
            try:
                meta = _decode_json(files["json"])
            except (UnicodeDecodeError, json.JSONDecodeError) as e:
                raise MediaError(f"{sid}.json", "bad_json", str(e)) from e
        ext = next((e for e in self.media_ext if e in {k.lower() for k in files}), None)
        if ext is None:
            raise MediaError(
                sid, "no_media", f"no file with extension in {self.media_ext}; has {sorted(files)}"
            )
        data = next(v for k, v in files.items() if k.lower() == ext)
        start_s = end_s = None
        if isinstance(meta, dict):
            start_s, end_s = meta.get("start"), meta.get("end")
        if ext in IMAGE_EXTS:
            frames = read_image(data, timeout=self.timeout)
        else:
            frames = _read_clip_bytes(data, ext, f"{sid}.{ext}", self.num_frames, self.sample, start_s, end_s,
                                      self.decode_size, self._rng(sid, "frames"), self.timeout)
        if self.transform is not None:
            item["video"] = self.transform(frames, rng=self._rng(sid, "transform"))
        else:
            item["video"] = _to_float_video(frames)
        caps = None
        if isinstance(meta, dict):
            caps = meta.get("captions", meta.get("caption"))
        if caps is None and "txt" in files:
            caps = files["txt"].decode("utf-8", errors="replace")
        if caps is not None:
            if isinstance(caps, list) and not caps:
                raise MediaError(f"{sid}.json", "bad_json", "empty caption list")
            c = (
                sample_caption(caps, self._rng(sid, "caption"))
                if self.sample == "rand"
                else sample_caption(caps)
            )
            item["caption"] = pre_text(c) if self.pre_process else c
        label = None
        if "cls" in files:
            label = files["cls"].decode().strip()
        elif isinstance(meta, dict) and "label" in meta:
            label = meta["label"]
        if label is not None:
            try:
                item["label"] = int(label)
            except (TypeError, ValueError):
                raise MediaError(sid, "bad_label", f"label {label!r} is not an integer") from None
        if self.audio:
            aext = next((e for e in AUDIO_EXTS if e in files), None)
            src = files[aext] if aext else data
            rng = self._rng(sid, "audio") if self.audio_random_crop else None
            try:
                item["audio"], item["audio_valid_frames"] = load_beats_fbank(
                    src, rng=rng, timeout=self.timeout, start_s=None if aext else start_s,
                    end_s=None if aext else end_s)
            except MediaError as e:
                if e.reason == "no_audio_stream" and self.zero_audio_if_missing:
                    item["audio"], item["audio_valid_frames"] = torch.zeros(BEATS_TARGET_FRAMES, 64), 0
                else:
                    raise MediaError(sid, e.reason, e.detail) from e
        return item


def _read_clip_bytes(
    data: bytes, ext: str, label: str, num_frames: int, sample: str, start_s, end_s, size, rng, timeout: float
) -> torch.Tensor:
    """Decode a clip held in memory. The video reader works on paths, so the bytes go to a temporary file
    (in ``/dev/shm`` when it exists: no disk I/O) that is removed right after; errors name the sample."""
    from .video import read_clip

    if not data:
        raise MediaError(label, "empty_file")
    tmpdir = "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None
    fd, tmp = tempfile.mkstemp(suffix="." + ext, prefix="iv2shard-", dir=tmpdir)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        try:
            frames, _, _ = read_clip(
                tmp, num_frames, sample, start_s=start_s, end_s=end_s, size=size, rng=rng, timeout=timeout
            )
        except MediaError as e:
            raise MediaError(label, e.reason, e.detail) from e
        return frames
    finally:
        try:
            os.unlink(tmp)
        except OSError:
            pass
