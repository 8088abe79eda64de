"""What to embed: the video list (:func:`find_videos`), the items of one video (:func:`plan_items`) and the
groups of videos whose items are batched together (:func:`make_groups`)."""
from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from ..errors import ConfigError, MediaError
from .settings import VIDEO_EXTENSIONS, EmbedSettings

log = logging.getLogger("internvideo2.embed")


def find_videos(inputs: Iterable[str | os.PathLike], extensions: Sequence[str] = VIDEO_EXTENSIONS) -> list[str]:
    """Expand files and folders into the ordered list of videos to embed.

    Files named explicitly are kept whatever their extension (a bad one is reported, not dropped);
    folders are walked recursively in sorted order, keeping files whose name ends with one of
    ``extensions`` (case-insensitive) and skipping hidden files and folders. Inputs keep their order;
    a file reached twice is listed once. A path that does not exist raises :class:`ConfigError`.
    """
    exts = tuple(e.lower() for e in extensions)
    out: list[str] = []
    seen: set[str] = set()

    def add(p: str) -> None:
        key = os.path.realpath(p)
        if key not in seen:
            seen.add(key)
            out.append(p)

    for raw in inputs:
        p = os.path.normpath(os.fspath(raw))
        if os.path.isdir(p):
            for root, dirs, files in os.walk(p):
                dirs[:] = sorted(d for d in dirs if not d.startswith("."))
                for name in sorted(files):
                    if not name.startswith(".") and name.lower().endswith(exts):
                        add(os.path.join(root, name))
        elif os.path.lexists(p):
            add(p)
        else:
            raise ConfigError("videos", f"{p}: no such file or folder")
    return out


def plan_items(path: str, settings: EmbedSettings, frames: int, *, timeout: float = 120.0):
    """The items of one video: ``(meta, [{"item", "start_s", "end_s", "frame_indices"}, ...])``.

    Frame indices follow the official ``middle`` policy inside each item's frames (repeating the last
    frame when an item has fewer frames than asked, as the official sampler does). Raises
    :class:`MediaError` for an unusable file.
    """
    from ..data.sampling import sample_indices
    from ..data.video import frame_range, probe_video, sliding_windows

    meta = probe_video(path, timeout=timeout)
    if meta.num_frames < 1:
        raise MediaError(path, "no_frames", "the video stream holds no frames")
    spans: list[tuple[int, int, float, float]] = []
    if settings.mode == "clip":
        spans.append((0, meta.num_frames, 0.0, float(meta.duration)))
    elif settings.mode == "window":
        empty = 0
        for s, e in sliding_windows(meta, float(settings.window), float(settings.stride)):
            try:
                first, stop = frame_range(meta, s, e)
            except MediaError as err:
                if err.reason != "empty_range":
                    raise
                empty += 1  # a window shorter than the frame interval can fall between two frames
                continue
            spans.append((first, stop, s, e))
        if empty:
            log.warning("%s: %d window(s) of %.3f s hold no frame (%.3f fps) and were left out", path, empty,
                        settings.window, meta.fps)
    else:
        from ..data.segment import detect_shots

        shots = detect_shots(path, ratio=settings.shot_ratio, min_score=settings.shot_min_score,
                             min_shot_s=settings.shot_min_len, step=settings.shot_step,
                             timeout=max(timeout, 300.0), meta=meta)
        spans = [(s.start_frame, s.end_frame, s.start_s, s.end_s) for s in shots]
    items = []
    for j, (first, stop, s, e) in enumerate(spans):
        local = sample_indices("middle", frames, stop - first)
        items.append({"item": j, "start_s": round(float(s), 6), "end_s": round(float(e), 6),
                      "frame_indices": [int(first + i) for i in local]})
    return meta, items


@dataclass
class Group:
    """Consecutive videos of one chunk whose items are batched together (and only together)."""

    chunk: int
    group: int
    videos: list[tuple[int, str]]  # (video_index, path)


def make_groups(video_indices: Sequence[int], videos: Sequence[str], chunk: int, group_size: int,
                start_group: int = 0) -> list[Group]:
    """Cut a chunk's videos into groups of ``group_size`` consecutive videos."""
    out = []
    for k in range(0, len(video_indices), group_size):
        sel = video_indices[k:k + group_size]
        out.append(Group(chunk, start_group + k // group_size, [(i, videos[i]) for i in sel]))
    return out
