"""The run: :func:`embed_videos` checks its arguments, prepares the model, and a :class:`_Job` embeds the
pending chunks of the output folder (resuming the committed ones) and assembles the final files."""
from __future__ import annotations

import dataclasses
import hashlib
import logging
import math
import os
import shutil
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import ConfigError
from ..utils.io import jsonable
from .encoder import VideoEncoder, model_fingerprint
from .planning import Group, find_videos, make_groups
from .settings import DTYPES, FORMAT, FORMAT_VERSION, VIDEO_EXTENSIONS, EmbedSettings
from .storage import ChunkState, EmbedResult, EmbedStore, FolderLock, count, load_result
from .stream import PacketStream, make_loader

log = logging.getLogger("internvideo2.embed")


def _resolve_device(device: str | torch.device | None, model: nn.Module) -> torch.device:
    if device is None:
        try:
            return next(model.parameters()).device
        except StopIteration:
            return torch.device("cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device", f"{device!r} asked but CUDA is not available")
    return dev


def _cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def default_workers() -> int:
    """Decoding workers: one per core left after the model's, at least 1, at most 4."""
    return max(1, min(4, _cpu_count() - 1))


def embed_videos(
    paths: Iterable[str | os.PathLike] | str | os.PathLike,
    model: nn.Module | str | os.PathLike,
    *,
    out_dir: str | os.PathLike | None = None,
    mode: str = "clip",
    frames: int | None = None,
    window: float | None = None,
    stride: float | None = None,
    feature: str = "auto",
    normalize: bool = False,
    tokens: bool = False,
    batch_size: int = 8,
    chunk_size: int = 64,
    workers: int | None = None,
    threads: int | None = None,
    device: str | torch.device | None = None,
    dtype: str = "fp32",
    overwrite: bool = False,
    max_bad_fraction: float = 0.2,
    bad_check_after: int = 20,
    timeout: float = 120.0,
    progress: bool = True,
    model_source: str | None = None,
    **more: Any,
) -> EmbedResult:
    """Embed videos (files and/or folders) with an InternVideo2 model; see the package doc.

    Args:
        paths: files and/or folders (see :func:`find_videos`).
        model: a loaded model, or anything :func:`internvideo2.load_model` accepts.
        out_dir: output folder (resumable); None runs in a temporary folder and returns arrays in memory.
        mode, frames, window, stride, feature, normalize, tokens, batch_size, chunk_size, dtype: see
            :class:`EmbedSettings`; further :class:`EmbedSettings` fields (``size``, ``resize``,
            ``shot_*``, ``tokens_dtype``) go in ``**more``.
        workers: DataLoader worker processes decoding in parallel with the model (0 = decode in this
            process, no overlap; default :func:`default_workers`).
        threads: torch threads of the model on CPU during the run (default: the cores left to the
            workers, at least 1); restored afterwards.
        device: where the model runs (default: where its parameters are). The model is moved and cast
            in place (as ``nn.Module.to`` does); its train/eval mode is restored at the end.
        overwrite: delete the outputs of an earlier run in ``out_dir`` and start over.
        max_bad_fraction / bad_check_after: raise :class:`~internvideo2.data.datasets.DataQualityError`
            once more than this fraction of at least ``bad_check_after`` videos were unusable.
        timeout: decoding time limit per call, seconds.
        progress: show a tqdm progress bar (stderr).
        model_source: recorded in ``meta.json`` (the CLI passes ``--model``).

    Raises ConfigError / CheckpointError on bad arguments, DataQualityError past the bad-file limit.
    """
    unknown = sorted(set(more) - {f.name for f in dataclasses.fields(EmbedSettings)})
    if unknown:
        raise ConfigError(unknown[0], "unknown option of embed_videos")
    settings = EmbedSettings(mode=mode, frames=frames, window=window, stride=stride, feature=feature,
                             normalize=normalize, tokens=tokens, batch_size=batch_size, chunk_size=chunk_size,
                             dtype=dtype, **more).validate()
    workers = default_workers() if workers is None else int(workers)
    if workers < 0:
        raise ConfigError("workers", f"must be >= 0, got {workers}")
    if not 0.0 <= max_bad_fraction <= 1.0:
        raise ConfigError("max_bad_fraction", f"must be in [0, 1], got {max_bad_fraction}")
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    videos = find_videos(paths)
    if not videos:
        raise ConfigError("videos", "no video files found in the inputs (extensions: "
                                    f"{' '.join(VIDEO_EXTENSIONS)})")

    torch_dtype = DTYPES[settings.dtype]
    if not isinstance(model, nn.Module):
        from ..checkpoint.loader import load_model

        model_source = model_source or os.fspath(model)
        model = load_model(model, device=device or "cpu")
    dev = _resolve_device(device, model)
    if dev.type == "cpu" and torch_dtype == torch.float16:
        raise ConfigError("dtype", "fp16 is for GPUs; use fp32 (default) or bf16 on CPU")
    if dev.type == "cpu" and torch_dtype != torch.float32:
        log.warning("bf16 on CPU is slow and less exact than fp32; it is meant for GPUs")
    was_training = model.training
    # like nn.Module.to: the caller's model is moved / cast in place (a copy of a 6B model would not fit)
    model = model.to(device=dev, dtype=torch_dtype).eval()
    encoder = VideoEncoder(model, settings, dev, torch_dtype)

    tmp_root = None
    if out_dir is None:
        tmp_root = tempfile.mkdtemp(prefix="internvideo2-embed-")
        out = Path(tmp_root)
    else:
        out = Path(out_dir)
    old_threads = torch.get_num_threads()
    if dev.type == "cpu":
        torch.set_num_threads(int(threads) if threads else max(1, _cpu_count() - workers))
    try:
        job = _Job(out, videos, settings, encoder, model, model_source, workers, timeout, max_bad_fraction,
                   bad_check_after, progress, overwrite)
        job.run()
        res = load_result(out, in_memory=tmp_root is not None)
        res.status = job.status
        return res
    finally:
        torch.set_num_threads(old_threads)
        model.train(was_training)
        if tmp_root is not None:
            shutil.rmtree(tmp_root, ignore_errors=True)


class _Job:
    """One invocation on one output folder: check/resume state, embed the pending chunks, assemble."""

    def __init__(self, out: Path, videos: list[str], settings: EmbedSettings, encoder: VideoEncoder,
                 model: nn.Module, model_source: str | None, workers: int, timeout: float, max_bad_fraction: float,
                 bad_check_after: int, progress: bool, overwrite: bool):
        self.out, self.videos, self.settings, self.encoder = out, videos, settings, encoder
        self.workers, self.timeout, self.progress, self.overwrite = workers, timeout, progress, overwrite
        self.max_bad_fraction, self.bad_check_after = max_bad_fraction, bad_check_after
        self.status = "complete"
        self.num_chunks = math.ceil(len(videos) / settings.chunk_size)
        h = hashlib.sha256()
        for v in videos:
            h.update(f"{v}\t{os.path.abspath(v)}\n".encode())
        model_cfg = getattr(model, "config", None)
        self.model_info = {
            "source": model_source,
            "model_type": encoder.model_type,
            "class": type(model).__name__,
            "fingerprint": model_fingerprint(model),
            "config": jsonable(model_cfg) if model_cfg is not None else None,
        }
        fingerprint = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "model_fingerprint": self.model_info["fingerprint"],
            "settings": settings.to_dict(),
            "feature": encoder.feature,
            "frames": encoder.spec.frames,
            "size": encoder.spec.size,
            "device_type": encoder.device.type,
            "videos": {"count": len(videos), "sha256": h.hexdigest()},
        }
        self.store = EmbedStore(out, fingerprint, self.num_chunks, encoder.dim, encoder.token_shape, settings)

    def run(self) -> None:
        from ..data.datasets import BadSamplePolicy, BadSampleTracker

        t_start = time.perf_counter()
        self.out.mkdir(parents=True, exist_ok=True)
        with FolderLock(self.out):
            prev = self.store.prepare(self.videos, self.overwrite, self.workers)
            if prev is not None and prev.get("complete"):
                missing = [n for n in ("embeddings.npy", "index.jsonl", "errors.jsonl", "meta.json")
                           if not (self.out / n).is_file()]
                if missing:
                    raise ConfigError("out_dir", f"{self.out}: the run is complete but {', '.join(missing)} "
                                                 "is missing; pass --overwrite to start over")
                shutil.rmtree(self.out / "parts", ignore_errors=True)  # left by a kill right after the end
                log.info("%s: already complete, nothing to do", self.out)
                self.status = "already_complete"
                return
            first = prev.get("first_run", {}) if prev else {}
            if prev and first.get("threads") not in (None, torch.get_num_threads()):
                log.warning("resuming with %d model threads, the run started with %s: CPU results can differ "
                            "in the last bits between the two", torch.get_num_threads(), first.get("threads"))
            (self.out / "parts").mkdir(exist_ok=True)
            if self.settings.tokens:
                (self.out / "tokens").mkdir(exist_ok=True)

            done = {c: rec for c in range(self.num_chunks) if (rec := self.store.chunk_done(c)) is not None}
            pending = [c for c in range(self.num_chunks) if c not in done]
            tracker = BadSampleTracker(BadSamplePolicy(self.max_bad_fraction, self.bad_check_after), name="embed")
            bad_prev = [(e["video"], e["reason"]) for rec in done.values() for e in rec["errors"]]
            tracker.load_state_dict({"seen": sum(rec["num_videos"] for rec in done.values()), "bad": len(bad_prev),
                                     "reasons": count(r for _, r in bad_prev), "examples": bad_prev[:50]})
            tracker.check()
            if done:
                log.info("%s: resuming, %d of %d chunks already done", self.out, len(done), self.num_chunks)
            stats = {"resumed_chunks": len(done), "embedded_items": 0, "embedded_videos": 0}
            t_loop = time.perf_counter()
            if pending:
                self._embed(pending, done, tracker, stats)
            loop_s = time.perf_counter() - t_loop
            self._assemble(stats, loop_s, time.perf_counter() - t_start)

    def _embed(self, pending: list[int], done: dict, tracker, stats: dict) -> None:
        from tqdm import tqdm

        s = self.settings
        cs, B = s.chunk_size, s.batch_size
        groups: list[Group] = []
        states: dict[int, ChunkState] = {}
        for c in pending:
            idx = list(range(c * cs, min((c + 1) * cs, len(self.videos))))
            gs = make_groups(idx, self.videos, c, B)
            groups.extend(gs)
            states[c] = ChunkState(groups_left=len(gs), num_videos=len(idx))
        stream = PacketStream(groups, s, self.encoder.spec, self.timeout)
        loader = make_loader(stream, self.workers, pin_memory=self.encoder.device.type == "cuda")
        n_done_videos = sum(rec["num_videos"] for rec in done.values())
        bar = tqdm(total=len(self.videos), initial=n_done_videos, unit="video", desc="embed",
                   disable=not self.progress, dynamic_ncols=True)
        n_done = len(done)
        try:
            for pk in loader:
                st = states[pk["chunk"]]
                if pk["items"]:
                    emb, tok = self.encoder(pk["video"])
                    if emb.shape[1] != self.encoder.dim:  # the config-derived width must be right
                        raise RuntimeError(f"embedding width {emb.shape[1]} != expected {self.encoder.dim}")
                    for r, it in enumerate(pk["items"]):
                        st.items.setdefault(it["video_index"], []).append(
                            (it, emb[r], tok[r] if tok is not None else None))
                    stats["embedded_items"] += len(pk["items"])
                for b in pk["bad"]:
                    st.items.pop(b["video_index"], None)
                    st.bad[b["video_index"]] = b
                bar.update(len(pk["done"]) + len(pk["bad"]))
                stats["embedded_videos"] += len(pk["done"]) + len(pk["bad"])
                tracker.add(len(pk["done"]) + len(pk["bad"]), [(b["video"], b["reason"]) for b in pk["bad"]])
                if pk["last"]:
                    st.groups_left -= 1
                    if st.groups_left == 0:
                        counts = self.store.write_chunk(pk["chunk"], states.pop(pk["chunk"]))
                        n_done += 1
                        self.store.write_progress(n_done, False, counts=counts)
                        bar.set_postfix(items=stats["embedded_items"], bad=tracker.bad, refresh=False)
        finally:
            bar.close()
        if states:  # every group sends a last packet; anything left is a bug, never silently dropped
            raise RuntimeError(f"chunks {sorted(states)} did not complete")

    def _assemble(self, stats: dict, loop_s: float, total_s: float) -> None:
        enc = self.encoder
        self.store.assemble(len(self.videos), {
            "model": self.model_info,
            "settings": {**self.settings.to_dict(), "feature_used": enc.feature, "frames_used": enc.spec.frames,
                         "size_used": enc.spec.size, "sample": "middle"},
            "run": {"device": str(enc.device), "dtype": self.settings.dtype, "workers": self.workers,
                    "threads": torch.get_num_threads(), "torch": torch.__version__},
            "timing": {
                "this_run_s": round(total_s, 3),
                "embed_loop_s": round(loop_s, 3),
                "resumed_chunks": stats["resumed_chunks"],
                "videos_this_run": stats["embedded_videos"],
                "items_this_run": stats["embedded_items"],
                "videos_per_s": round(stats["embedded_videos"] / loop_s, 3) if loop_s > 0 else None,
                "items_per_s": round(stats["embedded_items"] / loop_s, 3) if loop_s > 0 else None,
            },
        })
