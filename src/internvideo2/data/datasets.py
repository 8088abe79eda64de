"""Map-style datasets over the official annotation formats, a distributed sampler, and the bad-sample policy.

Determinism: nothing here uses the global RNG or the DataLoader worker RNG. Every random choice of a sample
(frame indices, augmentation, caption choice, audio crop) comes from a ``random.Random`` derived from
``(seed, epoch, index, purpose)`` (:func:`internvideo2.utils.seeding.derive_rng`, the package's one seed rule),
so a sample is the same whichever worker or rank
loads it, and a resumed run sees exactly the samples it would have seen. Call ``set_epoch`` on the dataset
(and on the sampler) every epoch, or let :class:`DistributedIndexSampler` (``with_epoch=True``) pass the
epoch along with every index, which also works with ``persistent_workers=True``.

Bad samples: a sample whose media raises :class:`MediaError` is not replaced by another one. The dataset
logs it (logger ``internvideo2.data``) and returns a :class:`BadSample` marker; :func:`collate_skip_bad`
drops the markers from the batch and records them in ``batch["num_bad"]``, ``batch["bad_paths"]``,
``batch["bad_reasons"]`` and ``batch["num_samples"]`` (good + bad); a :class:`BadSampleTracker` in the main
process adds them up and raises :class:`DataQualityError` once more than ``max_fraction`` of at least
``min_samples`` samples were bad. Because counting travels inside the batch, it works with any number of
DataLoader workers.
"""
from __future__ import annotations

import logging
import math
import os
import random
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset, Sampler

from ..errors import ConfigError, MediaError
from ..utils.seeding import derive_rng
from .annotations import (
    Annotations,
    ClassificationRecord,
    InstructionRecord,
    MultipleChoiceRecord,
    RetrievalAnnotations,
    VideoMAEMultiRecord,
    VideoTextRecord,
    read_classification,
    read_instruction,
    read_multiple_choice,
    read_retrieval,
    read_video_text,
)
from .audio import BEATS_TARGET_FRAMES, load_beats_fbank
from .bad_samples import (
    BadSample,
    BadSamplePolicy,
    BadSampleTracker,
    DataQualityError,
    collate_samples,
    collate_skip_bad,
)
from .text import pre_text, sample_caption

logger = logging.getLogger("internvideo2.data")

__all__ = [
    "BadSample",
    "BadSamplePolicy",
    "BadSampleTracker",
    "ClipDataset",
    "DataQualityError",
    "DistributedIndexSampler",
    "RetrievalEvalDataset",
    "VideoClassificationDataset",
    "VideoQADataset",
    "VideoTextDataset",
    "collate_samples",
    "collate_skip_bad",
    "flatten_repeated",
    "read_image",
]


# ---------------------------------------------------------------------------------------------------------
# seeds and sampler
# ---------------------------------------------------------------------------------------------------------


def _dist_info(num_replicas: int | None, rank: int | None) -> tuple[int, int]:
    if num_replicas is None or rank is None:
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            num_replicas = torch.distributed.get_world_size() if num_replicas is None else num_replicas
            rank = torch.distributed.get_rank() if rank is None else rank
        else:
            num_replicas = 1 if num_replicas is None else num_replicas
            rank = 0 if rank is None else rank
    if num_replicas < 1 or not 0 <= rank < num_replicas:
        raise ConfigError("rank", f"rank {rank} is not in [0, {num_replicas})")
    return int(num_replicas), int(rank)


class DistributedIndexSampler(Sampler):
    """Splits ``range(len(dataset))`` over ranks, deterministic in ``(seed, epoch)``.

    Every epoch the indices are shuffled (``shuffle=True``) with a generator seeded by ``seed + epoch``
    (the same permutation on every rank), then rank ``r`` takes positions ``r, r + R, r + 2R, ...``.

    Padding (``padding``) when ``N`` is not a multiple of the world size ``R``:
      - ``"repeat"`` (default, the ``torch.utils.data.DistributedSampler`` convention): the permuted list
        is extended with its own first elements to ``ceil(N / R) * R``, so every rank gets the same number
        of indices and up to ``R - 1`` samples are seen twice per epoch;
      - ``"drop"``: the last ``N mod R`` permuted indices are dropped (each sample at most once per epoch);
      - ``"none"``: no padding, ranks get ``ceil`` or ``floor(N / R)`` indices (for evaluation, where every
        sample must be seen exactly once; the ranks then run different numbers of steps).

    ``set_epoch(epoch, start=k)`` skips the first ``k`` indices of this rank's list (resume in mid-epoch:
    ``k = steps_done * batch_size``). With ``with_epoch=True`` it yields ``(index, epoch)`` pairs, which the
    datasets here accept, so the epoch reaches the workers even with ``persistent_workers=True``.
    """

    def __init__(
        self,
        dataset_or_len: Any,
        num_replicas: int | None = None,
        rank: int | None = None,
        *,
        shuffle: bool = True,
        seed: int = 0,
        padding: str = "repeat",
        with_epoch: bool = False,
    ):
        self.n = dataset_or_len if isinstance(dataset_or_len, int) else len(dataset_or_len)
        self.num_replicas, self.rank = _dist_info(num_replicas, rank)
        if padding not in ("repeat", "drop", "none"):
            raise ConfigError("padding", f"must be 'repeat', 'drop' or 'none', got {padding!r}")
        self.shuffle = shuffle
        self.seed = int(seed)
        self.padding = padding
        self.with_epoch = with_epoch
        self.epoch = 0
        self.start = 0

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        self.epoch = int(epoch)
        self.start = int(start)

    def _rank_indices(self) -> list[int]:
        n, r = self.n, self.num_replicas
        if self.shuffle:
            g = torch.Generator()
            g.manual_seed(self.seed + self.epoch)
            order = torch.randperm(n, generator=g).tolist()
        else:
            order = list(range(n))
        if self.padding == "repeat" and n > 0:
            total = math.ceil(n / r) * r
            while len(order) < total:
                order += order[: total - len(order)]
        elif self.padding == "drop":
            order = order[: (n // r) * r]
        return order[self.rank :: r]

    def __iter__(self) -> Iterator:
        idx = self._rank_indices()[self.start :]
        if self.with_epoch:
            return iter([(i, self.epoch) for i in idx])
        return iter(idx)

    def __len__(self) -> int:
        return max(0, len(self._rank_indices()) - self.start)


# ---------------------------------------------------------------------------------------------------------
# media helpers
# ---------------------------------------------------------------------------------------------------------


def read_image(path: str | os.PathLike | bytes, *, timeout: float = 30.0) -> torch.Tensor:
    """Decode an image file (anything FFmpeg reads: JPEG, PNG, WebP, BMP...) -> uint8 ``[1, H, W, 3]``.

    Raises :class:`MediaError` (``not_found``, ``empty_file``, ``open_failed``, ``no_video_stream``,
    ``dimensions_too_large`` (declared size above the video reader's ``MAX_PIXELS``), ``decode_failed``,
    ``timeout``).
    """
    import io as _io
    import time

    import av

    from .video import MAX_PIXELS, SWS_THREADS

    label = str(path) if not isinstance(path, (bytes, bytearray)) else "<bytes>"
    if isinstance(path, (bytes, bytearray)):
        if not path:
            raise MediaError(label, "empty_file")
        src: Any = _io.BytesIO(bytes(path))
    else:
        p = Path(path)
        if not p.is_file():
            raise MediaError(label, "not_found")
        if p.stat().st_size == 0:
            raise MediaError(label, "empty_file")
        src = str(p)
    t0 = time.monotonic()
    try:
        container = av.open(src, mode="r", metadata_errors="ignore")
    except Exception as e:
        raise MediaError(label, "open_failed", str(e)) from e
    try:
        if not container.streams.video:
            raise MediaError(label, "no_video_stream")
        cc = container.streams.video[0].codec_context
        if MAX_PIXELS is not None and int(cc.width or 0) * int(cc.height or 0) > MAX_PIXELS:
            raise MediaError(label, "dimensions_too_large", f"declared {cc.width}x{cc.height}")
        frame = None
        try:
            frame = next(iter(container.decode(video=0)), None)  # an image "stream": only its first frame
        except Exception as e:
            raise MediaError(label, "decode_failed", f"{type(e).__name__}: {e}") from e
        if frame is None:
            raise MediaError(label, "decode_failed", "no frame decoded")
        if time.monotonic() - t0 > timeout:
            raise MediaError(label, "timeout", f"decoding took more than {timeout:g} s")
        return torch.from_numpy(frame.to_ndarray(format="rgb24", threads=SWS_THREADS)).unsqueeze(0)
    finally:
        container.close()


def _to_float_video(frames: torch.Tensor) -> torch.Tensor:
    """uint8 ``[T, H, W, 3]`` -> float32 ``[T, 3, H, W]`` in [0, 1] (used when no transform is given)."""
    return frames.permute(0, 3, 1, 2).float().div_(255.0)


_BOOKKEEPING = ("num_samples", "num_bad", "bad_paths", "bad_reasons", "bad_indices")


def flatten_repeated(batch: dict, num_sample: int) -> dict:
    """A collated batch of repeated-augmentation items (``"video"`` ``[B, S, T, 3, H, W]``) -> ``B * S``
    clips, copies of one video adjacent (official ``multiple_samples_collate``): ``"video"`` becomes
    ``[B * S, T, 3, H, W]`` and every other per-item entry (labels, indices, paths) is repeated ``S`` times.
    The bad-sample bookkeeping keeps counting loaded videos. ``num_sample == 1``: returned as is."""
    video = batch.get("video")
    if num_sample == 1 or video is None:
        return batch
    if video.dim() < 2 or video.shape[1] != num_sample:
        raise ConfigError("num_sample", f"batch video {tuple(video.shape)} does not hold {num_sample} copies")
    B = video.shape[0]
    out = dict(batch)
    out["video"] = video.flatten(0, 1)
    for k, v in batch.items():
        if k in _BOOKKEEPING or k == "video":
            continue
        if isinstance(v, torch.Tensor) and v.dim() >= 1 and v.shape[0] == B:
            out[k] = v.repeat_interleave(num_sample, dim=0)
        elif isinstance(v, list) and len(v) == B:
            out[k] = [x for x in v for _ in range(num_sample)]
    return out


# ---------------------------------------------------------------------------------------------------------
# datasets
# ---------------------------------------------------------------------------------------------------------


class ClipDataset(Dataset):
    """Base of the map-style datasets: frame sampling, transform, optional audio, seeds, bad samples.

    Args:
        num_frames: frames per clip (official stage 2: 4 train / 4 test; CLIP: 8).
        sample: frame policy of :func:`internvideo2.data.sampling.get_frame_indices`: ``"rand"``
            (training), ``"middle"`` (evaluation), ``"fps{X}"``.
        transform: ``callable(frames uint8 [T,H,W,3], rng) -> float [T,3,H,W]`` (e.g.
            ``build_train_transform`` / ``build_eval_transform``); ``None`` gives float [0, 1] frames.
        decode_size: optional ``(H, W)`` passed to the decoder (resize while converting, cheaper than the
            transform resizing full-size frames).
        seed: base seed; every random draw of sample ``i`` in epoch ``e`` comes from ``(seed, e, i)``.
        audio: also return ``audio`` (the official ``[998, 64]`` fbank) and ``audio_valid_frames``.
        audio_random_crop: random 10 s crop of longer audio (official training); ``None`` = when ``sample``
            is ``"rand"``. Without it the first 10 s are used.
        zero_audio_if_missing: a clip without an audio track gets a zero fbank with 0 valid frames (official
            ``zero_audio_padding_for_video``) instead of being a bad sample.
        skip_bad: return a :class:`BadSample` marker for a sample whose media raises :class:`MediaError`
            (use :func:`collate_skip_bad`); ``False`` re-raises.
        timeout: decoding time limit per file, seconds.
        cache: keep every decoded clip (all its frames, at ``decode_size``) in memory after first use and
            sample from that; for small corpora such as the synthetic world. The cache is shared by all
            datasets of the process (keyed by file, size and modification time), so successive training
            stages decode a corpus once. Memory grows with the corpus (2000 clips of 8 x 64 x 64 frames take
            200 MB); each DataLoader worker process keeps its own copy. ``ClipDataset.clear_cache()`` frees it.
        num_sample: repeated augmentation (official ``--num_sample``): the sampled frames are transformed
            ``num_sample`` times with independent draws and ``"video"`` becomes ``[num_sample, T, 3, H, W]``
            (:func:`flatten_repeated` turns a collated batch into ``B * num_sample`` clips). Copy 0 uses the
            same stream as ``num_sample=1``; copy ``k`` the purpose ``"transform-copy{k}"``.
    """

    def __init__(
        self,
        *,
        num_frames: int = 4,
        sample: str = "rand",
        transform: Callable | None = None,
        decode_size: tuple[int, int] | None = None,
        seed: int = 0,
        audio: bool = False,
        audio_random_crop: bool | None = None,
        zero_audio_if_missing: bool = False,
        skip_bad: bool = True,
        timeout: float = 60.0,
        cache: bool = False,
        num_sample: int = 1,
    ):
        if int(num_frames) < 1:
            raise ConfigError("num_frames", f"must be >= 1, got {num_frames}")
        if int(num_sample) < 1:
            raise ConfigError("num_sample", f"must be >= 1, got {num_sample}")
        self.num_frames = int(num_frames)
        self.sample = sample
        self.transform = transform
        self.decode_size = decode_size
        self.seed = int(seed)
        self.epoch = 0
        self.audio = audio
        self.audio_random_crop = (sample == "rand") if audio_random_crop is None else audio_random_crop
        self.zero_audio_if_missing = zero_audio_if_missing
        self.skip_bad = skip_bad
        self.timeout = float(timeout)
        self.cache = bool(cache)
        self.num_sample = int(num_sample)

    # -- epoch and seeds ------------------------------------------------------------------------------

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose random draws ``__getitem__(i)`` reproduces."""
        self.epoch = int(epoch)

    def rng(self, index: int, purpose: str, epoch: int | None = None) -> random.Random:
        return derive_rng(self.seed, self.epoch if epoch is None else epoch, index, purpose)

    # -- item -----------------------------------------------------------------------------------------

    def __len__(self) -> int:  # pragma: no cover - abstract
        raise NotImplementedError

    def _path_of(self, index: int) -> str:
        return self.records[index].path

    def _load(self, index: int, epoch: int) -> dict:  # pragma: no cover - abstract
        raise NotImplementedError

    def __getitem__(self, key):
        """``key``: an index, or ``(index, epoch)`` as ``DistributedIndexSampler(with_epoch=True)`` yields."""
        if isinstance(key, (tuple, list)):
            index, epoch = int(key[0]), int(key[1])
        else:
            index, epoch = int(key), self.epoch
        if not -len(self) <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} samples")
        index = index % len(self)
        try:
            return self._load(index, epoch)
        except MediaError as e:
            if not self.skip_bad:
                raise
            logger.warning("bad sample %d skipped: %s: %s%s", index, e.path, e.reason,
                           f" ({e.detail})" if e.detail else "")
            return BadSample(index, e.path, e.reason, e.detail)

    # -- media ----------------------------------------------------------------------------------------

    def load_video(
        self,
        path: str,
        index: int,
        epoch: int,
        *,
        start_s: float | None = None,
        end_s: float | None = None,
        start_frame: int | None = None,
        end_frame: int | None = None,
        media_type: str = "video",
        crop_bbox: Sequence[float] | None = None,
    ) -> tuple[torch.Tensor, list[int]]:
        """Decode, sample and transform one clip -> (``[T, 3, H, W]`` float, or ``[num_sample, T, 3, H, W]``
        with repeated augmentation, frame indices)."""
        rng_frames = self.rng(index, "frames", epoch)
        if media_type == "image":
            frames = read_image(path, timeout=self.timeout)
            indices = [0]
        elif start_frame is not None or end_frame is not None:
            frames, indices = self._read_frame_range(path, start_frame, end_frame, rng_frames)
        elif self.cache:
            frames, indices = self._sample_cached(path, start_s, end_s, rng_frames)
        else:
            from .video import read_clip

            frames, indices, _ = read_clip(
                path, self.num_frames, self.sample, start_s=start_s, end_s=end_s, size=self.decode_size,
                rng=rng_frames, timeout=self.timeout,
            )
        if crop_bbox is not None:
            x0, y0, x1, y1 = (int(round(v)) for v in crop_bbox)
            h, w = frames.shape[1:3]
            x0, y0, x1, y1 = max(0, x0), max(0, y0), min(w, x1), min(h, y1)
            if x1 <= x0 or y1 <= y0:
                raise MediaError(path, "bad_crop_bbox", f"{list(crop_bbox)} outside a {w}x{h} image")
            frames = frames[:, y0:y1, x0:x1]
        if self.num_sample > 1:  # the official dataset augments one decoded buffer num_sample times
            video = torch.stack([self._transform(frames, index, epoch, k) for k in range(self.num_sample)])
        else:
            video = self._transform(frames, index, epoch, 0)
        return video, list(indices)

    def _transform(self, frames: torch.Tensor, index: int, epoch: int, copy: int) -> torch.Tensor:
        if self.transform is None:
            return _to_float_video(frames)
        purpose = "transform" if copy == 0 else f"transform-copy{copy}"
        return self.transform(frames, rng=self.rng(index, purpose, epoch))

    _CACHE: dict[tuple, tuple[torch.Tensor, Any]] = {}  # process-wide decoded clips (see ``cache``)

    @classmethod
    def clear_cache(cls) -> None:
        cls._CACHE.clear()

    def _decoded(self, path: str):
        """``(all frames uint8 [N, H, W, 3] at decode_size, metadata)``, kept in memory with ``cache``."""
        from .video import probe_video, read_frames

        try:
            key = (os.path.abspath(path), self.decode_size, os.stat(path).st_mtime_ns)
        except OSError:
            key = None  # missing file: decoding below raises the typed error
        entry = self._CACHE.get(key) if key else None
        if entry is None:
            meta = probe_video(path, timeout=self.timeout)
            n = int(meta.num_frames or 0)
            if n <= 0:
                raise MediaError(path, "no_frames", "the video has no decodable frame")
            entry = (read_frames(path, list(range(n)), size=self.decode_size, meta=meta, timeout=self.timeout), meta)
            if self.cache and key:
                self._CACHE[key] = entry
        return entry

    def whole_video(self, index: int) -> torch.Tensor:
        """Every frame of sample ``index``, uint8 ``[N, H, W, 3]`` (for multi-view testing)."""
        return self._decoded(self._path_of(index))[0]

    def _sample_cached(self, path, start_s, end_s, rng):
        """Decode the whole clip once (kept in memory), then sample exactly as ``read_clip`` does."""
        from .sampling import sample_indices
        from .video import frame_range

        all_frames, meta = self._decoded(path)
        first, stop = frame_range(meta, start_s, end_s)
        local = sample_indices(self.sample, self.num_frames, stop - first, fps=meta.fps, rng=rng)
        indices = [first + int(i) for i in local]
        return all_frames[indices], indices

    def _read_frame_range(self, path, start_frame, end_frame, rng):
        """Official ``read_clip_from_video``: sample inside frames ``[start_frame, end_frame]`` (included)."""
        from .sampling import get_frame_indices
        from .video import probe_video, read_frames

        meta = probe_video(path, timeout=self.timeout)
        n = int(meta.num_frames or 0)
        s = 0 if start_frame is None else int(start_frame)
        e = (n - 1) if end_frame is None else min(int(end_frame), n - 1 if n > 0 else int(end_frame))
        if e < s:
            raise MediaError(
                path, "bad_frame_range", f"frames [{start_frame}, {end_frame}] of a {n}-frame video"
            )
        local = get_frame_indices(self.num_frames, e - s + 1, self.sample, input_fps=float(meta.fps or 1.0),
                                  rng=rng)
        indices = [s + i for i in local]
        frames = read_frames(path, indices, size=self.decode_size, meta=meta, timeout=self.timeout)
        return frames, indices

    def load_audio(
        self, path: str, index: int, epoch: int, start_s=None, end_s=None
    ) -> tuple[torch.Tensor, int]:
        """Official ``[998, 64]`` fbank of ``path`` (see :func:`internvideo2.data.audio.load_beats_fbank`)."""
        rng = self.rng(index, "audio", epoch) if self.audio_random_crop else None
        try:
            return load_beats_fbank(path, rng=rng, start_s=start_s, end_s=end_s, timeout=self.timeout)
        except MediaError as e:
            if e.reason == "no_audio_stream" and self.zero_audio_if_missing:
                return torch.zeros(BEATS_TARGET_FRAMES, 64), 0
            raise


def _records(src, reader, data_root, kind: type, **kw):
    if isinstance(src, (str, os.PathLike)):
        return reader(src, data_root, **kw).records
    if isinstance(src, Annotations):
        return src.records
    recs = list(src)
    bad = [i for i, r in enumerate(recs) if not isinstance(r, kind)]
    if bad:
        raise ConfigError(
            "records", f"expected {kind.__name__} items, item {bad[0]} is {type(recs[bad[0]]).__name__}"
        )
    return recs


class VideoTextDataset(ClipDataset):
    """Video-text (or image-text) pairs, as the official ``VidTxtPtTrainDataset`` / ``ImgTxtPtTrainDataset``.

    ``annotations``: a JSON file (:func:`read_video_text` with ``data_root``, ``media_key``,
    ``min_caption_length``), an :class:`Annotations`, or a list of :class:`VideoTextRecord`.

    Item: ``{"video": float [T, 3, H, W] (T = 1 for images), "caption": str, "idx": int, "path": str}``,
    plus ``"audio"`` ``[998, 64]`` and ``"audio_valid_frames"`` with ``audio=True``. With several captions one
    is drawn uniformly (official ``caption_sample_type='uniform'``) from the sample's own RNG when
    ``caption_sample="uniform"``, or the first is taken with ``"first"``. Captions go through ``pre_text``
    (``max_words`` truncates) unless ``pre_process=False``. ``idx`` is the dataset index (what VTC/VTM use).
    """

    def __init__(
        self,
        annotations,
        data_root: str | os.PathLike | None = None,
        *,
        media_key: str = "video",
        min_caption_length: int = 0,
        caption_sample: str = "uniform",
        pre_process: bool = True,
        max_words: int | None = None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.records: list[VideoTextRecord] = _records(
            annotations, read_video_text, data_root, VideoTextRecord, media_key=media_key,
            min_caption_length=min_caption_length,
        )
        if caption_sample not in ("uniform", "first"):
            raise ConfigError("caption_sample", f"must be 'uniform' or 'first', got {caption_sample!r}")
        self.caption_sample = caption_sample
        self.pre_process = pre_process
        self.max_words = max_words

    def __len__(self) -> int:
        return len(self.records)

    def caption(self, index: int, epoch: int | None = None) -> str:
        r = self.records[index]
        rng = self.rng(index, "caption", epoch) if self.caption_sample == "uniform" else None
        c = sample_caption(r.captions, rng)
        return pre_text(c, self.max_words) if self.pre_process else c

    def _load(self, index: int, epoch: int) -> dict:
        r = self.records[index]
        video, _ = self.load_video(
            r.path,
            index,
            epoch,
            start_s=r.start,
            end_s=r.end,
            start_frame=r.start_frame,
            end_frame=r.end_frame,
            media_type=r.media_type,
            crop_bbox=r.crop_bbox,
        )
        item = {"video": video, "caption": self.caption(index, epoch), "idx": index, "path": r.path}
        if self.audio:
            item["audio"], item["audio_valid_frames"] = self.load_audio(r.audio or r.path, index, epoch,
                                                                        r.start, r.end)
        return item


class VideoClassificationDataset(ClipDataset):
    """Labelled clips: a classification list (:func:`read_classification`: ``path,label`` CSV, Kinetics
    ``path label`` lines, JSON), :class:`Annotations`, or a list of :class:`ClassificationRecord` /
    :class:`VideoMAEMultiRecord` (stage-1 rows; their time range is used).

    Item: ``{"video": [T, 3, H, W], "label": int, "idx": int, "path": str}`` (+ audio with ``audio=True``).
    """

    def __init__(
        self,
        annotations,
        data_root: str | os.PathLike | None = None,
        *,
        num_classes: int | None = None,
        label_map: dict[str, int] | None = None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if isinstance(annotations, (str, os.PathLike)):
            recs = read_classification(
                annotations, data_root, num_classes=num_classes, label_map=label_map
            ).records
        else:
            recs = list(annotations.records if isinstance(annotations, Annotations) else annotations)
            recs = [r.as_classification() if isinstance(r, VideoMAEMultiRecord) else r for r in recs]
            bad = [i for i, r in enumerate(recs) if not isinstance(r, ClassificationRecord)]
            if bad:
                raise ConfigError(
                    "records", f"item {bad[0]} is {type(recs[bad[0]]).__name__}, not a classification record"
                )
        self.records: list[ClassificationRecord] = recs

    def __len__(self) -> int:
        return len(self.records)

    def _load(self, index: int, epoch: int) -> dict:
        r = self.records[index]
        video, _ = self.load_video(r.path, index, epoch, start_s=r.start, end_s=r.end)
        item = {"video": video, "label": int(r.label), "idx": index, "path": r.path}
        if self.audio:
            item["audio"], item["audio_valid_frames"] = self.load_audio(r.path, index, epoch, r.start, r.end)
        return item


class RetrievalEvalDataset(ClipDataset):
    """Retrieval / zero-shot classification evaluation (official ``VidTxtRetEvalDataset``).

    ``annotations``: a JSON file (:func:`read_retrieval`; ``paragraph``, ``multi_vision_gt``, ``is_act_rec``,
    ``max_txt_l`` are passed on) or a :class:`RetrievalAnnotations`. Items are the *videos*:
    ``{"video", "idx", "path"}``; the texts and ground truth are attributes: ``texts`` (pre-processed),
    ``txt2vid``, ``vid2txt``, ``max_txt_l`` (and ``classes``, ``num_prompts`` for action recognition).
    Defaults: ``sample="middle"``, ``num_frames=4``. ``trimmed30`` (DiDeMo) reads only the first 30 s.
    """

    def __init__(self, annotations, data_root: str | os.PathLike | None = None, *, paragraph: bool = False,
                 multi_vision_gt: bool = False, is_act_rec: bool = False, max_txt_l: int = 32,
                 trimmed30: bool = False, sample: str = "middle", **kwargs):
        super().__init__(sample=sample, **kwargs)
        if isinstance(annotations, RetrievalAnnotations):
            self.ann = annotations
        else:
            self.ann = read_retrieval(
                annotations,
                data_root,
                paragraph=paragraph,
                multi_vision_gt=multi_vision_gt,
                is_act_rec=is_act_rec,
                max_txt_l=max_txt_l,
            )
        self.trimmed30 = trimmed30

    texts = property(lambda self: self.ann.texts)
    txt2vid = property(lambda self: self.ann.txt2vid)
    vid2txt = property(lambda self: self.ann.vid2txt)
    media = property(lambda self: self.ann.media)
    max_txt_l = property(lambda self: self.ann.max_txt_l)
    classes = property(lambda self: self.ann.classes)
    num_prompts = property(lambda self: self.ann.num_prompts)

    def __len__(self) -> int:
        return len(self.ann.media)

    def _load(self, index: int, epoch: int) -> dict:
        path = self.ann.media[index]
        video, _ = self.load_video(path, index, epoch, start_s=0.0 if self.trimmed30 else None,
                                   end_s=30.0 if self.trimmed30 else None)
        item = {"video": video, "idx": index, "path": path}
        if self.audio:
            item["audio"], item["audio_valid_frames"] = self.load_audio(path, index, epoch)
        return item


class VideoQADataset(ClipDataset):
    """Video question answering.

    ``annotations``: a multiple-choice JSON (:func:`read_multiple_choice`, ``kind="mc"``), a VideoChat2
    instruction JSON (:func:`read_instruction`, ``kind="instruction"``), an :class:`Annotations` or a list of
    :class:`MultipleChoiceRecord` / :class:`InstructionRecord`. ``kind="auto"`` looks at the first row.

    Items:
      - multiple choice: ``{"video", "options": [str] (pre_text'd), "answer": int | [int], "idx", "path"}``;
      - instruction: ``{"video", "qa": [{"i", "q", "a"}], "media_type", "idx", "path"}`` (texts raw: the
        chat template decides their processing). Defaults ``sample="middle"``.
    """

    def __init__(self, annotations, data_root: str | os.PathLike | None = None, *, kind: str = "auto",
                 pre_process: bool = True, sample: str = "middle", **kwargs):
        super().__init__(sample=sample, **kwargs)
        if kind not in ("auto", "mc", "instruction"):
            raise ConfigError("kind", f"must be 'auto', 'mc' or 'instruction', got {kind!r}")
        if isinstance(annotations, (str, os.PathLike)):
            if kind == "auto":
                kind = _guess_qa_kind(annotations)
            reader = read_multiple_choice if kind == "mc" else read_instruction
            recs = reader(annotations, data_root).records
        else:
            recs = list(annotations.records if isinstance(annotations, Annotations) else annotations)
        ok = (MultipleChoiceRecord, InstructionRecord)
        bad = [i for i, r in enumerate(recs) if not isinstance(r, ok)]
        if bad:
            raise ConfigError("records", f"item {bad[0]} is {type(recs[bad[0]]).__name__}, not a QA record")
        self.records = recs
        self.pre_process = pre_process

    def __len__(self) -> int:
        return len(self.records)

    def _load(self, index: int, epoch: int) -> dict:
        r = self.records[index]
        mt = getattr(r, "media_type", "video")
        video, _ = self.load_video(r.path, index, epoch, start_s=r.start, end_s=r.end, media_type=mt)
        if isinstance(r, MultipleChoiceRecord):
            opts = [pre_text(o) for o in r.options] if self.pre_process else list(r.options)
            item = {"video": video, "options": opts, "answer": r.answer, "idx": index, "path": r.path}
        else:
            item = {"video": video, "qa": [{"i": t.i, "q": t.q, "a": t.a} for t in r.qa], "media_type": mt,
                    "idx": index, "path": r.path}
        if self.audio:
            item["audio"], item["audio_valid_frames"] = self.load_audio(r.path, index, epoch, r.start, r.end)
        return item


def _guess_qa_kind(path) -> str:
    from .annotations import read_json_list

    data = read_json_list(path)
    first = next((r for r in data if isinstance(r, dict)), {})
    return "instruction" if "QA" in first else "mc"
