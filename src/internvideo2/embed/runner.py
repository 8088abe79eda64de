"""The run: :func:`embed_videos` checks its arguments, prepares the model, and a :class:`_Job` embeds the
pending chunks of the output folder (resuming the committed ones) and assembles the final files."""
from __future__ import annotations

import dataclasses
import hashlib
import logging
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
from .planning import Group, Scan, make_groups, scan_inputs
from .settings import DTYPES, FORMAT, FORMAT_VERSION, VIDEO_EXTENSIONS, EmbedSettings
from .storage import ChunkState, EmbedResult, EmbedStore, FolderLock, count, load
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
    retry_bad: bool = False,
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
        overwrite: delete the outputs of an earlier run in ``out_dir`` and start over. Without it, an
            earlier output of the same model and settings is brought up to date with the inputs: new videos and
            videos changed on disk (size, mtime) are embedded, removed ones dropped, failures that can change
            (timeouts, memory, I/O, unexpected errors) tried again, and everything else kept.
        retry_bad: also try again the videos that failed for a reason that cannot change by itself (a corrupt
            file that is still the same on disk).
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
    if not (isinstance(timeout, (int, float)) and timeout > 0):
        raise ConfigError("timeout", f"must be > 0 seconds, got {timeout!r}")
    if threads is not None and int(threads) < 1:
        raise ConfigError("threads", f"must be >= 1, got {threads}")
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    scan = scan_inputs(paths)
    if not scan.videos and not scan.problems:
        raise ConfigError("videos", "no video files found in the inputs (extensions: "
                                    f"{' '.join(VIDEO_EXTENSIONS)})")
    if not scan.videos:
        p = scan.problems[0]
        raise ConfigError("videos", f"{p['video']}: {p['detail']}")

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
        job = _Job(out, scan, settings, encoder, model, model_source, workers, timeout, max_bad_fraction,
                   bad_check_after, progress, overwrite, retry_bad)
        job.run()
        res = load(out, in_memory=tmp_root is not None)
        res.status = job.status
        if tmp_root is not None:
            res.out_dir = None
        return res
    finally:
        torch.set_num_threads(old_threads)
        model.train(was_training)
        if tmp_root is not None:
            shutil.rmtree(tmp_root, ignore_errors=True)


class _Job:
    """One invocation on one output folder: work out what is missing or stale, embed it in chunks (each
    committed on its own), then assemble the output for the current inputs."""

    def __init__(self, out: Path, scan: Scan, settings: EmbedSettings, encoder: VideoEncoder, model: nn.Module,
                 model_source: str | None, workers: int, timeout: float, max_bad_fraction: float,
                 bad_check_after: int, progress: bool, overwrite: bool, retry_bad: bool):
        self.out, self.scan, self.settings, self.encoder = out, scan, settings, encoder
        self.refs = scan.videos
        self.workers, self.timeout, self.progress, self.overwrite = workers, timeout, progress, overwrite
        self.max_bad_fraction, self.bad_check_after, self.retry_bad = max_bad_fraction, bad_check_after, retry_bad
        self.status = "complete"
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
        }
        h = hashlib.sha256()
        for v in self.refs:
            h.update(f"{v.abspath}\t{v.size}\t{v.mtime_ns}\n".encode())
        self.inputs_sha = h.hexdigest()
        self.store = EmbedStore(out, fingerprint, encoder.dim, encoder.token_shape, settings)

    # -- what to do -----------------------------------------------------------------------------------
    def _todo(self, latest: dict[str, dict]) -> list[int]:
        """Indices of the inputs to embed: new, changed on disk since they were read, failed for a reason
        that can change (``RETRYABLE``), or failed at all with ``retry_bad``."""
        todo = []
        for k, ref in enumerate(self.refs):
            e = latest.get(ref.abspath)
            if e is None or [e.get("size"), e.get("mtime_ns")] != ref.identity():
                todo.append(k)
            elif e["status"] == "bad" and (self.retry_bad or e.get("retry")):
                todo.append(k)
        return todo

    def run(self) -> None:
        from ..data.bad_samples import BadSamplePolicy, BadSampleTracker

        t_start = time.perf_counter()
        with FolderLock(self._mkdir()):
            prev = self.store.prepare(self.overwrite)
            base = {e["path"]: e for e in self.store.base_entries()} if prev else {}
            committed = self.store.committed() if prev else {}
            latest = dict(base)
            sources = {p: {"kind": "old"} for p in base}
            for c in sorted(committed):
                for e in committed[c]["videos"]:
                    latest[e["path"]] = e
                    sources[e["path"]] = {"kind": "part", "chunk": c, "rows": committed[c]["rows"]}
            todo = self._todo(latest)
            current = [e.get("path") for e in self.store.base_entries()] if prev else None
            if prev and prev.get("complete") and not todo and not self.scan.problems \
                    and current == [r.abspath for r in self.refs]:
                missing = [n for n in ("embeddings.npy", "index.jsonl", "errors.jsonl", "meta.json")
                           if not (self.out / n).is_file()]
                if missing:
                    raise ConfigError("out_dir", f"{self.out}: the run is complete but {', '.join(missing)} "
                                                 "is missing; pass --overwrite to start over")
                shutil.rmtree(self.out / "parts", ignore_errors=True)  # left by a kill right after the end
                log.info("%s: already complete, nothing to do", self.out)
                self.status = "already_complete"
                return
            if prev and prev.get("complete"):
                self.status = "updated"
            plan = self._plan(prev, todo, committed)
            first = (prev or {}).get("first_run") or {"workers": self.workers, "threads": torch.get_num_threads()}
            if prev and first.get("threads") not in (None, torch.get_num_threads()):
                log.warning("resuming with %d model threads, the run started with %s: CPU results can differ "
                            "in the last bits between the two", torch.get_num_threads(), first.get("threads"))
            self.next_chunk = max([c for c, _ in plan] + list(committed) + [int((prev or {}).get("next_chunk", 0)) - 1]
                                  + [-1]) + 1
            self.store.write_progress({"complete": False, "inputs_sha": self.inputs_sha,
                                       "plan": [(c, [self.refs[k].abspath for k in idx]) for c, idx in plan],
                                       "next_chunk": self.next_chunk, "first_run": first, "counts": {}})
            (self.out / "parts").mkdir(exist_ok=True)
            if self.settings.tokens:
                (self.out / "tokens").mkdir(exist_ok=True)
            pending = [(c, idx) for c, idx in plan if c not in committed]
            tracker = BadSampleTracker(BadSamplePolicy(self.max_bad_fraction, self.bad_check_after), name="embed")
            waiting = {k for _, idx in pending for k in idx}  # embedded by this run; the rest is final
            kept_bad = [(r.path, latest[r.abspath]["reason"]) for k, r in enumerate(self.refs)
                        if k not in waiting and latest[r.abspath]["status"] == "bad"]
            kept_bad += [(p["video"], p["reason"]) for p in self.scan.problems]
            done_videos = len(self.refs) - len(waiting) + len(self.scan.problems)
            tracker.load_state_dict({"seen": done_videos, "bad": len(kept_bad), "examples": kept_bad[:50],
                                     "reasons": count(r for _, r in kept_bad)})
            tracker.check()
            resumed = len([c for c, _ in plan if c in committed])
            if resumed:
                log.info("%s: resuming, %d of %d chunks already done", self.out, resumed, len(plan))
            stats = {"resumed_chunks": resumed, "planned_chunks": len(plan), "embedded_items": 0,
                     "embedded_videos": 0, "kept_videos": len(self.refs) - sum(len(idx) for _, idx in plan)}
            t_loop = time.perf_counter()
            if pending:
                for c, rec in self._embed(pending, done_videos, tracker, stats).items():
                    for e in rec["videos"]:
                        latest[e["path"]] = e
                        sources[e["path"]] = {"kind": "part", "chunk": c, "rows": rec["rows"]}
            loop_s = time.perf_counter() - t_loop
            self._assemble(latest, sources, stats, loop_s, time.perf_counter() - t_start, first)

    def _mkdir(self) -> Path:
        try:
            self.out.mkdir(parents=True, exist_ok=True)
        except FileExistsError:
            raise ConfigError("out_dir", f"{self.out}: exists and is not a folder") from None
        except PermissionError:
            raise ConfigError("out_dir", f"{self.out}: permission denied (cannot create it)") from None
        return self.out

    def _plan(self, prev: dict | None, todo: list[int], committed: dict[int, dict]) -> list[tuple[int, list[int]]]:
        """Chunks of ``chunk_size`` consecutive videos to embed, as ``(chunk id, input indices)``. A run
        interrupted on the same inputs keeps its plan (same chunk ids and groups: the resumed output equals
        an uninterrupted one); otherwise new ids follow the ones in use."""
        if prev and not prev.get("complete") and prev.get("inputs_sha") == self.inputs_sha and prev.get("plan"):
            by_path = {r.abspath: k for k, r in enumerate(self.refs)}
            plan = []
            for c, paths in prev["plan"]:
                plan.append((int(c), [by_path[p] for p in paths]))
            return plan
        start = int((prev or {}).get("next_chunk", 0))
        start = max([start] + [c + 1 for c in committed])
        cs = self.settings.chunk_size
        return [(start + j, todo[k:k + cs]) for j, k in enumerate(range(0, len(todo), cs))]

    def _embed(self, pending: list[tuple[int, list[int]]], done_videos: int, tracker, stats: dict) -> dict[int, dict]:
        from tqdm import tqdm

        s = self.settings
        paths = [r.path for r in self.refs]
        groups: list[Group] = []
        states: dict[int, ChunkState] = {}
        for c, idx in pending:
            gs = make_groups(idx, paths, c, s.batch_size)
            groups.extend(gs)
            states[c] = ChunkState(groups_left=len(gs), refs=[self.refs[k] for k in idx])
        position = {(c, k): j for c, idx in pending for j, k in enumerate(idx)}  # video index -> place in chunk
        stream = PacketStream(groups, s, self.encoder.spec, self.timeout)
        loader = make_loader(stream, self.workers, pin_memory=self.encoder.device.type == "cuda")
        bar = tqdm(total=len(self.refs) + len(self.scan.problems), initial=done_videos, unit="video", desc="embed",
                   disable=not self.progress, dynamic_ncols=True)
        records: dict[int, dict] = {}
        try:
            for pk in loader:
                c = pk["chunk"]
                st = states[c]
                if pk["items"]:
                    emb, tok = self.encoder(pk["video"])
                    if emb.shape[1] != self.encoder.dim:  # the config-derived width must be right
                        raise RuntimeError(f"embedding width {emb.shape[1]} != expected {self.encoder.dim}")
                    for r, it in enumerate(pk["items"]):
                        st.items.setdefault(position[c, it["video_index"]], []).append(
                            (it, emb[r], tok[r] if tok is not None else None))
                    stats["embedded_items"] += len(pk["items"])
                for b in pk["bad"]:
                    j = position[c, b["video_index"]]
                    st.items.pop(j, None)
                    st.bad[j] = b
                n = len(pk["done"]) + len(pk["bad"])
                bar.update(n)
                stats["embedded_videos"] += n
                tracker.add(n, [(b["video"], b["reason"]) for b in pk["bad"]])
                if pk["last"]:
                    st.groups_left -= 1
                    if st.groups_left == 0:
                        records[c] = self.store.write_chunk(c, states.pop(c))
                        bar.set_postfix(items=stats["embedded_items"], bad=tracker.bad, refresh=False)
        finally:
            bar.close()
        if states:  # every group sends a last packet; anything left is a bug, never silently dropped
            raise RuntimeError(f"chunks {sorted(states)} did not complete")
        return records

    def _assemble(self, latest: dict, sources: dict, stats: dict, loop_s: float, total_s: float, first: dict) -> None:
        enc = self.encoder
        counts = self.store.assemble(self.refs, latest, sources, self.scan.problems, {
            "chunks": stats["planned_chunks"],
            "model": self.model_info,
            "settings": {**self.settings.to_dict(), "feature_used": enc.feature, "frames_used": enc.spec.frames,
                         "size_used": enc.spec.size, "sample": "middle"},
            "run": {"device": str(enc.device), "dtype": self.settings.dtype, "workers": self.workers,
                    "threads": torch.get_num_threads(), "torch": torch.__version__, "status": self.status},
            "timing": {
                "this_run_s": round(total_s, 3),
                "embed_loop_s": round(loop_s, 3),
                "resumed_chunks": stats["resumed_chunks"],
                "kept_videos": stats["kept_videos"],
                "videos_this_run": stats["embedded_videos"],
                "items_this_run": stats["embedded_items"],
                "videos_per_s": round(stats["embedded_videos"] / loop_s, 3) if loop_s > 0 else None,
                "items_per_s": round(stats["embedded_items"] / loop_s, 3) if loop_s > 0 else None,
            },
        })
        self.store.write_progress({"complete": True, "inputs_sha": self.inputs_sha, "plan": [],
                                   "next_chunk": self.next_chunk, "first_run": first,
                                   "counts": {"items": counts["items"], "bad": counts["videos_bad"]}})
        # the final files hold everything now; the parts (and their commit records) can go
        shutil.rmtree(self.out / "parts", ignore_errors=True)
