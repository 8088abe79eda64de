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


@dataclass(frozen=True)
class VideoRef:
    """One input video. ``path``: as found (normalised); ``abspath``: its absolute path (the key that matches
    it across runs); ``root``: the input it was found under (a folder given, or the folder of a file given);
    ``rel``: its path relative to ``root`` (what outputs record, so that they do not depend on the current
    directory); ``size`` / ``mtime_ns``: its identity on disk (None when it cannot be read)."""

    path: str
    abspath: str
    root: str
    rel: str
    size: int | None
    mtime_ns: int | None

    def identity(self) -> list:
        return [self.size, self.mtime_ns]


@dataclass
class Scan:
    """The inputs expanded: ``videos`` in processing order and ``problems`` (``{"video", "reason", "detail"}``
    for every path that could not be walked: an unreadable folder, a broken link, a symlink loop)."""

    videos: list[VideoRef]
    problems: list[dict]

    @property
    def roots(self) -> list[str]:
        return sorted({v.root for v in self.videos})


def _ref(path: str, root: str) -> VideoRef:
    ab = os.path.abspath(path)
    try:
        st = os.stat(ab)
        size, mtime = st.st_size, st.st_mtime_ns
    except OSError:
        size = mtime = None
    rel = os.path.relpath(ab, root).replace(os.sep, "/")
    return VideoRef(os.path.normpath(path), ab, root, rel, size, mtime)


def scan_inputs(inputs: Iterable[str | os.PathLike], extensions: Sequence[str] = VIDEO_EXTENSIONS) -> Scan:
    """Expand files and folders into the ordered list of videos, listing every path that cannot be walked.

    Files named explicitly are kept whatever their extension (a bad one is reported, not dropped); folders
    are walked recursively in sorted order, following symbolic links (a link back to a folder already being
    walked is a loop: listed, not followed), keeping files whose name ends with one of ``extensions``
    (case-insensitive) and skipping hidden files and folders. Inputs keep their order; a file reached twice
    is listed once. A path that does not exist raises :class:`ConfigError`.
    """
    exts = tuple(e.lower() for e in extensions)
    out: list[VideoRef] = []
    problems: list[dict] = []
    seen: set[str] = set()

    def add(p: str, root: str) -> None:
        key = os.path.realpath(p)
        if key not in seen:
            seen.add(key)
            out.append(_ref(p, root))

    def problem(path: str, reason: str, detail: str) -> None:
        problems.append({"video": os.path.normpath(path), "reason": reason, "detail": detail})

    for raw in inputs:
        p = os.path.normpath(os.fspath(raw))
        if os.path.isdir(p):
            root = os.path.abspath(p)
            if not os.access(p, os.R_OK | os.X_OK):
                problem(p, "unreadable", "permission denied: the folder cannot be listed")
                continue
            walked: set[str] = set()

            def onerror(err: OSError, top: str = p) -> None:
                problem(err.filename or top, "unreadable", f"{err.strerror or err}: the folder cannot be listed")

            for dirpath, dirs, files in os.walk(p, onerror=onerror, followlinks=True):
                here = os.path.realpath(dirpath)
                walked.add(here)
                keep = []
                for d in sorted(dirs):
                    if d.startswith("."):
                        continue
                    full = os.path.join(dirpath, d)
                    real = os.path.realpath(full)
                    if os.path.islink(full) and (here == real or here.startswith(real.rstrip(os.sep) + os.sep)):
                        problem(full, "symlink_loop", f"links to {real}, a folder it is inside of")
                        continue
                    if real in walked:  # another name of a folder already walked: its files are listed
                        continue
                    keep.append(d)
                dirs[:] = keep
                for name in sorted(files):
                    if name.startswith(".") or not name.lower().endswith(exts):
                        continue
                    full = os.path.join(dirpath, name)
                    if os.path.islink(full) and not os.path.exists(full):
                        problem(full, "broken_link", f"the link points to {os.readlink(full)}, which does not exist")
                        continue
                    add(full, root)
        elif os.path.lexists(p):
            add(p, os.path.dirname(os.path.abspath(p)))
        else:
            raise ConfigError("videos", f"{p}: no such file or folder")
    return Scan(out, problems)


def find_videos(inputs: Iterable[str | os.PathLike], extensions: Sequence[str] = VIDEO_EXTENSIONS) -> list[str]:
    """The paths of :func:`scan_inputs` (in processing order). Paths that cannot be walked raise
    :class:`ConfigError` naming them (embed lists them as unusable instead)."""
    scan = scan_inputs(inputs, extensions)
    if scan.problems:
        first = scan.problems[0]
        more = f" (and {len(scan.problems) - 1} more)" if len(scan.problems) > 1 else ""
        raise ConfigError("videos", f"{first['video']}: {first['detail']}{more}")
    return [v.path for v in scan.videos]


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
