"""Readers for the official annotation formats, with row validation.

Every reader checks every row and, on broken rows, raises one :class:`AnnotationError` naming the file, the
first bad row and the field, and listing the other bad rows (all of them are in ``err.problems``). With
``on_bad="skip"`` broken rows are logged (logger ``internvideo2.data``) and dropped instead, and the count is
kept in :attr:`Annotations.num_skipped`.

Row numbers: JSON lists use the item index (0-based, as in ``data[i]``); line formats (CSV, JSONL, space
separated lists) use the 1-based line number.

Media paths are resolved against ``data_root``: absolute paths and URLs (``scheme://``) are kept as they
are, relative ones are joined to ``data_root`` (default: the folder of the annotation file).

Formats (spec §5.1, §7.2; stage3 doc §1.4, §2.2):

========================  ==========================================================================
reader                    rows
========================  ==========================================================================
read_video_text           JSON list ``{"video", "caption": str | [str]}`` (or ``"captions"``), optional
                          ``video_start_frame``/``video_end_frame`` and ``start``/``end`` seconds
read_image_text           same with ``"image"``, optional ``crop_bbox`` [x0, y0, x1, y1]
read_retrieval            JSON list ``{"video", "caption": str | [str]}`` -> texts + txt2vid / vid2txt
read_classification       ``path,label`` CSV or ``path label`` (Kinetics style) lines; JSON list of
                          ``{"video", "label"}`` also accepted
read_videomae_multi       stage-1 ``source path total_time start_time end_time target`` lines
read_multiple_choice      ``{"video", "caption": [options], "answer"}`` (MSRVTT-MC) or
                          ``{"video", "option": [...], "answer": int | multi-hot list}`` (SSv2/Charades-MC)
read_instruction          VideoChat2 ``{"video"|"image", "QA": [{"i", "q", "a"}], "start"?, "end"?}``
read_jsonl / read_csv     generic: list of dicts, with required fields checked
========================  ==========================================================================
"""
from __future__ import annotations

import csv
import io
import json
import logging
import math
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, Literal, TypeVar

from ..errors import AnnotationError, ConfigError
from .text import ACTION_PROMPTS, filter_captions, pre_text

logger = logging.getLogger("internvideo2.data")

T = TypeVar("T")
OnBad = Literal["raise", "skip"]

__all__ = [
    "Annotations",
    "ClassificationRecord",
    "InstructionRecord",
    "MultipleChoiceRecord",
    "QATurn",
    "RetrievalAnnotations",
    "VideoMAEMultiRecord",
    "VideoTextRecord",
    "read_classification",
    "read_csv",
    "read_image_text",
    "read_instruction",
    "read_json_list",
    "read_jsonl",
    "read_multiple_choice",
    "read_retrieval",
    "read_video_text",
    "read_videomae_multi",
    "resolve_path",
]

_MAX_LISTED = 20


# ---------------------------------------------------------------------------------------------------------
# records
# ---------------------------------------------------------------------------------------------------------


@dataclass
class VideoTextRecord:
    """One media-text pair. ``captions`` holds the raw captions (one or several; pre-processing is the
    dataset's job). ``start``/``end`` are seconds; ``start_frame``/``end_frame`` the official
    ``video_start_frame``/``video_end_frame``. ``extra`` keeps every other field of the row."""

    path: str
    captions: list[str]
    media_type: str = "video"
    start: float | None = None
    end: float | None = None
    start_frame: int | None = None
    end_frame: int | None = None
    crop_bbox: tuple[float, float, float, float] | None = None
    audio: str | None = None
    extra: dict = field(default_factory=dict)


@dataclass
class ClassificationRecord:
    """A labelled clip. ``start``/``end`` in seconds restrict sampling to that range when given."""

    path: str
    label: int
    start: float | None = None
    end: float | None = None
    source: str | None = None
    extra: dict = field(default_factory=dict)


@dataclass
class VideoMAEMultiRecord:
    """A stage-1 ``VideoMAE_multi`` row. Times are -1 when absent (official convention); when none of them
    is -1, frames come only from ``[start_time, end_time]`` with ``fps = n_frames / total_time``."""

    source: str
    path: str
    total_time: float
    start_time: float
    end_time: float
    target: int

    @property
    def has_range(self) -> bool:
        return self.total_time != -1 and self.start_time != -1 and self.end_time != -1

    def as_classification(self) -> ClassificationRecord:
        """The same clip as a :class:`ClassificationRecord`. The official reader locates the range by frame
        count / ``total_time``; here it becomes ``start``/``end`` seconds (same for constant fps)."""
        if self.has_range:
            return ClassificationRecord(self.path, self.target, self.start_time, self.end_time, self.source,
                                        {"total_time": self.total_time})
        return ClassificationRecord(self.path, self.target, source=self.source)


@dataclass
class MultipleChoiceRecord:
    """A multiple-choice item: raw ``options``; ``answer`` an index, or a list of indices when several
    options are right (a Charades-MC multi-hot list is turned into the indices of its ones)."""

    path: str
    options: list[str]
    answer: int | list[int]
    start: float | None = None
    end: float | None = None
    extra: dict = field(default_factory=dict)


@dataclass
class QATurn:
    i: str  # instruction (system side)
    q: str  # question ("" for captioning items)
    a: str  # answer


@dataclass
class InstructionRecord:
    """A VideoChat2 instruction item (stage3 doc §1.4)."""

    path: str
    media_type: str  # "video" or "image"
    qa: list[QATurn]
    start: float | None = None
    end: float | None = None
    extra: dict = field(default_factory=dict)


@dataclass
class Annotations(Generic[T]):
    """Parsed rows of one file. Behaves as a sequence of records."""

    path: str
    records: list[T]
    rows: list[int | str]  # the source row of every record (for messages)
    num_skipped: int = 0

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, i: int) -> T:
        return self.records[i]

    def __iter__(self) -> Iterator[T]:
        return iter(self.records)


@dataclass
class RetrievalAnnotations:
    """Retrieval evaluation data (official ``VidTxtRetEvalDataset``).

    ``media[v]`` is a path, ``texts[t]`` a pre-processed caption. Default (one video, one or more captions):
    ``vid2txt[v]`` is the list of text ids of video v and ``txt2vid[t]`` the video id of text t. With
    ``multi_vision_gt`` (one caption, several videos) it is the other way round: ``txt2vid[t]`` is a list and
    ``vid2txt[v]`` an int. With ``is_act_rec`` ``texts`` are ``classes x prompts`` (class-major),
    ``vid2txt[v]`` is the class id of video v and ``txt2vid[c]`` the list of videos of class c.
    """

    path: str
    media: list[str]
    texts: list[str]
    txt2vid: list
    vid2txt: list
    max_txt_l: int = 32
    classes: list[str] | None = None
    num_prompts: int = 1
    rows: list[int] = field(default_factory=list)


# ---------------------------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------------------------


class _RowProblem(Exception):
    """A problem in one row; collected by :class:`_Collector`."""


class _Collector:
    """Collects bad rows of one file and applies the bad-row policy at the end."""

    def __init__(self, path: str, on_bad: OnBad):
        if on_bad not in ("raise", "skip"):
            raise ConfigError("on_bad", f"must be 'raise' or 'skip', got {on_bad!r}")
        self.path = path
        self.on_bad = on_bad
        self.problems: list[tuple[int | str, str]] = []

    def add(self, row: int | str, reason: str) -> None:
        self.problems.append((row, reason))
        if self.on_bad == "skip":
            logger.warning("%s: row %s skipped: %s", self.path, row, reason)

    def finish(self) -> int:
        if not self.problems:
            return 0
        if self.on_bad == "skip":
            logger.warning("%s: %d bad row(s) skipped", self.path, len(self.problems))
            return len(self.problems)
        row, reason = self.problems[0]
        if len(self.problems) > 1:
            more = "; ".join(f"row {r}: {m}" for r, m in self.problems[1:_MAX_LISTED])
            extra = len(self.problems) - _MAX_LISTED
            reason = f"{reason} ({len(self.problems)} bad rows in total; also {more}" + (
                f"; and {extra} more)" if extra > 0 else ")"
            )
        err = AnnotationError(self.path, row, reason)
        err.problems = list(self.problems)  # type: ignore[attr-defined]
        raise err


def resolve_path(data_root: str | os.PathLike | None, p: str) -> str:
    """``data_root / p`` unless ``p`` is absolute or a URL (``scheme://...``)."""
    if "://" in p or os.path.isabs(p) or data_root is None:
        return p
    root = str(data_root)
    if "://" in root:
        return root.rstrip("/") + "/" + p
    return os.path.join(root, p)


def _root(path: Path, data_root) -> str:
    return str(path.parent) if data_root is None else str(data_root)


def _load_json_list(path: Path) -> list:
    label = str(path)
    if not path.is_file():
        raise AnnotationError(label, "-", "file not found")
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except UnicodeDecodeError as e:
        raise AnnotationError(label, "-", f"not UTF-8 text ({e})") from e
    except json.JSONDecodeError as e:
        raise AnnotationError(label, f"line {e.lineno}", f"invalid JSON: {e.msg} (column {e.colno})") from e
    if not isinstance(data, list):
        raise AnnotationError(label, "-", f"expected a JSON list of objects, got {type(data).__name__}")
    return data


def _req_str(row: dict, key: str) -> str:
    if key not in row:
        raise _RowProblem(f"field {key!r} missing")
    v = row[key]
    if not isinstance(v, str) or not v.strip():
        raise _RowProblem(f"field {key!r} must be a non-empty string, got {v!r:.80}")
    return v


def _opt_num(row: dict, key: str) -> float | None:
    if key not in row or row[key] is None:
        return None
    v = row[key]
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        raise _RowProblem(f"field {key!r} must be a finite number, got {v!r:.80}")
    return float(v)


def _opt_int(row: dict, key: str) -> int | None:
    v = _opt_num(row, key)
    if v is None:
        return None
    if v != int(v):
        raise _RowProblem(f"field {key!r} must be an integer, got {row[key]!r}")
    return int(v)


def _time_range(
    row: dict, start_key: str = "start", end_key: str = "end"
) -> tuple[float | None, float | None]:
    s, e = _opt_num(row, start_key), _opt_num(row, end_key)
    if s is not None and s < 0:
        raise _RowProblem(f"field {start_key!r} must be >= 0, got {s}")
    if s is not None and e is not None and e <= s:
        raise _RowProblem(f"field {end_key!r} ({e}) must be greater than {start_key!r} ({s})")
    return s, e


def _captions(row: dict, keys: Sequence[str] = ("captions", "caption")) -> tuple[str, list[str]]:
    for k in keys:
        if k in row:
            v = row[k]
            if isinstance(v, str):
                if not v.strip():
                    raise _RowProblem(f"field {k!r} is empty")
                return k, [v]
            if isinstance(v, list):
                if not v:
                    raise _RowProblem(f"field {k!r} is an empty list")
                bad = [i for i, c in enumerate(v) if not isinstance(c, str)]
                if bad:
                    raise _RowProblem(f"field {k!r}: entry {bad[0]} is not a string ({v[bad[0]]!r:.60})")
                return k, list(v)
            raise _RowProblem(f"field {k!r} must be a string or a list of strings, got {type(v).__name__}")
    raise _RowProblem(f"field {' or '.join(repr(k) for k in keys)} missing")


def _check_dict(row: Any) -> dict:
    if not isinstance(row, dict):
        raise _RowProblem(f"expected an object, got {type(row).__name__}")
    return row


# ---------------------------------------------------------------------------------------------------------
# media-text
# ---------------------------------------------------------------------------------------------------------


def read_video_text(
    path: str | os.PathLike,
    data_root: str | os.PathLike | None = None,
    *,
    media_key: str = "video",
    min_caption_length: int = 0,
    on_bad: OnBad = "raise",
) -> Annotations[VideoTextRecord]:
    """Video-text (or image/audio-text with ``media_key``) JSON list of the official pre-training loaders.

    Each row: ``{media_key: path, "caption": str | [str]}`` or ``"captions": [str]``; optional
    ``video_start_frame``/``video_end_frame`` (official ``read_clip_from_video``), ``start``/``end`` seconds,
    ``audio`` (a separate audio file), ``crop_bbox``. ``min_caption_length > 0`` applies the official filter:
    captions with fewer words after ``pre_text`` are dropped, and rows with no caption left are dropped
    (that is a filter, logged, not a bad row; the official default for training is 2).
    """
    path = Path(path)
    data = _load_json_list(path)
    root = _root(path, data_root)
    col = _Collector(str(path), on_bad)
    records: list[VideoTextRecord] = []
    rows: list[int | str] = []
    filtered = 0
    for i, row in enumerate(data):
        try:
            row = _check_dict(row)
            media = _req_str(row, media_key)
            ckey, caps = _captions(row)
            start, end = _time_range(row)
            sf, ef = _opt_int(row, "video_start_frame"), _opt_int(row, "video_end_frame")
            if sf is not None and ef is not None and ef < sf:
                raise _RowProblem(f"field 'video_end_frame' ({ef}) is before 'video_start_frame' ({sf})")
            bbox = None
            if "crop_bbox" in row and row["crop_bbox"] is not None:
                b = row["crop_bbox"]
                if (not isinstance(b, (list, tuple)) or len(b) != 4
                        or not all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in b)):
                    raise _RowProblem(f"field 'crop_bbox' must be [x0, y0, x1, y1], got {b!r:.80}")
                if b[2] <= b[0] or b[3] <= b[1]:
                    raise _RowProblem(f"field 'crop_bbox' is empty: {b!r}")
                bbox = tuple(float(x) for x in b)
            audio = None
            if row.get("audio") is not None and media_key != "audio":
                audio = resolve_path(root, _req_str(row, "audio"))
        except _RowProblem as e:
            col.add(i, str(e))
            continue
        if min_caption_length > 0:
            caps = filter_captions(caps, min_caption_length)
            if not caps:
                filtered += 1
                continue
        known = {
            media_key,
            ckey,
            "start",
            "end",
            "video_start_frame",
            "video_end_frame",
            "crop_bbox",
            "audio",
        }
        records.append(VideoTextRecord(
            path=resolve_path(root, media), captions=caps, media_type=media_key, start=start, end=end,
            start_frame=sf, end_frame=ef, crop_bbox=bbox, audio=audio,
            extra={k: v for k, v in row.items() if k not in known},
        ))
        rows.append(i)
    skipped = col.finish()
    if filtered:
        logger.info("%s: %d row(s) without a caption of >= %d words dropped (official length filter)",
                    path, filtered, min_caption_length)
    return Annotations(str(path), records, rows, skipped)


def read_image_text(
    path: str | os.PathLike,
    data_root: str | os.PathLike | None = None,
    *,
    min_caption_length: int = 0,
    on_bad: OnBad = "raise",
) -> Annotations[VideoTextRecord]:
    """Image-text JSON list ``{"image", "caption": str | [str]}`` (optional ``crop_bbox``)."""
    return read_video_text(path, data_root, media_key="image", min_caption_length=min_caption_length,
                           on_bad=on_bad)


# ---------------------------------------------------------------------------------------------------------
# retrieval evaluation
# ---------------------------------------------------------------------------------------------------------


def read_retrieval(
    path: str | os.PathLike,
    data_root: str | os.PathLike | None = None,
    *,
    media_key: str = "video",
    paragraph: bool = False,
    multi_vision_gt: bool = False,
    is_act_rec: bool = False,
    prompts: Sequence[str] = ACTION_PROMPTS,
    max_txt_l: int = 32,
) -> RetrievalAnnotations:
    """Retrieval / zero-shot classification evaluation JSON (official ``VidTxtRetEvalDataset``).

    Args:
        paragraph: DiDeMo/ANet paragraph retrieval: a caption list is joined with single spaces into one text.
        multi_vision_gt: each row is one caption with one or several videos (``media_key`` a str or a list).
        is_act_rec: ``{"video", "caption": class name}`` rows; texts are every class x every prompt. Classes
            are sorted by name (the official ``list(set(...))`` order changes from run to run; labels do not).
        max_txt_l: the dataset's own text length (DiDeMo 64, ANet 150, LSMDC 96, MSVD 64, otherwise 32); only
            carried along for the tokenizer.

    Broken rows always raise (an evaluation set with holes gives wrong metrics).
    """
    path = Path(path)
    data = _load_json_list(path)
    root = _root(path, data_root)
    col = _Collector(str(path), "raise")
    media: list[str] = []
    texts: list[str] = []
    txt2vid: list = []
    vid2txt: list = []
    rows: list[int] = []
    parsed: list[tuple[int, Any, list[str]]] = []
    for i, row in enumerate(data):
        try:
            row = _check_dict(row)
            if multi_vision_gt:
                m = row.get(media_key)
                if isinstance(m, str) and m.strip():
                    m = [m]
                elif not (isinstance(m, list) and m and all(isinstance(x, str) and x.strip() for x in m)):
                    raise _RowProblem(f"field {media_key!r} must be a path or a non-empty list of paths")
            else:
                m = _req_str(row, media_key)
            _, caps = _captions(row, ("caption",))
            if is_act_rec and (len(caps) != 1 or not isinstance(row["caption"], str)):
                raise _RowProblem("field 'caption' must be one class name for action recognition")
            if multi_vision_gt and len(caps) != 1:
                raise _RowProblem("field 'caption' must be one string with multi_vision_gt")
            parsed.append((i, m, caps))
        except _RowProblem as e:
            col.add(i, str(e))
    col.finish()

    if is_act_rec:
        classes = sorted({caps[0] for _, _, caps in parsed})
        cid = {c: k for k, c in enumerate(classes)}
        txt2vid = [[] for _ in classes]
        for v, (i, m, caps) in enumerate(parsed):
            media.append(resolve_path(root, m))
            vid2txt.append(cid[caps[0]])
            txt2vid[cid[caps[0]]].append(v)
            rows.append(i)
        texts = [pre_text(p.format(c)) for c in classes for p in prompts]
        return RetrievalAnnotations(str(path), media, texts, txt2vid, vid2txt, max_txt_l, classes,
                                    len(prompts), rows)
    if multi_vision_gt:
        for t, (i, m, caps) in enumerate(parsed):
            texts.append(pre_text(caps[0]))
            txt2vid.append([])
            for p in m:
                txt2vid[t].append(len(media))
                vid2txt.append(t)
                media.append(resolve_path(root, p))
                rows.append(i)
        return RetrievalAnnotations(str(path), media, texts, txt2vid, vid2txt, max_txt_l, rows=rows)
    for v, (i, m, caps) in enumerate(parsed):
        media.append(resolve_path(root, m))
        rows.append(i)
        if paragraph:
            caps = [" ".join(caps)]
        vid2txt.append([])
        for c in caps:
            vid2txt[v].append(len(texts))
            txt2vid.append(v)
            texts.append(pre_text(c))
    return RetrievalAnnotations(str(path), media, texts, txt2vid, vid2txt, max_txt_l, rows=rows)


# ---------------------------------------------------------------------------------------------------------
# classification lists
# ---------------------------------------------------------------------------------------------------------


def _text_lines(path: Path) -> list[str]:
    label = str(path)
    if not path.is_file():
        raise AnnotationError(label, "-", "file not found")
    try:
        return path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as e:
        raise AnnotationError(label, "-", f"not UTF-8 text ({e})") from e


def read_classification(
    path: str | os.PathLike,
    data_root: str | os.PathLike | None = None,
    *,
    sep: str | None = None,
    label_map: dict[str, int] | None = None,
    num_classes: int | None = None,
    on_bad: OnBad = "raise",
) -> Annotations[ClassificationRecord]:
    """Classification list: ``path,label`` CSV, ``path label`` space-separated (Kinetics style, the official
    ``--split ' '``), or a JSON list of ``{"video", "label"}``.

    ``sep=None`` picks ``,`` for ``.csv`` files whose first line has a comma, otherwise whitespace. With a
    whitespace separator the label is the *last* token, so paths may contain spaces. A header line
    (``path,label``/``video,label``) is skipped. Labels are integers, or class names mapped through
    ``label_map``; without a map, names are numbered in sorted order. A record labelled by name keeps the
    name in ``extra['label_name']``. ``num_classes`` checks the range.
    """
    path = Path(path)
    root = _root(path, data_root)
    col = _Collector(str(path), on_bad)
    raw: list[tuple[int, str, str, dict]] = []  # (row, path, label token, extra)
    if path.suffix.lower() == ".json":
        for i, row in enumerate(_load_json_list(path)):
            try:
                row = _check_dict(row)
                key = "video" if "video" in row else "path"
                p = _req_str(row, key)
                if "label" not in row:
                    raise _RowProblem("field 'label' missing")
                start, end = _time_range(row)
                raw.append((i, p, str(row["label"]), {"start": start, "end": end}))
            except _RowProblem as e:
                col.add(i, str(e))
    else:
        lines = _text_lines(path)
        if sep is None:
            first = next((ln for ln in lines if ln.strip()), "")
            sep = "," if (path.suffix.lower() == ".csv" and "," in first) else " "
        for ln_no, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            if sep == ",":
                parts = next(csv.reader([line]))
                parts = [p.strip() for p in parts]
                if len(parts) < 2:
                    col.add(ln_no, f"expected 'path{sep}label', got {line!r:.80}")
                    continue
                p, lab = ",".join(parts[:-1]), parts[-1]
            else:
                parts = line.strip().rsplit(None if sep == " " else sep, 1)
                if len(parts) < 2:
                    col.add(ln_no, f"expected 'path label', got {line!r:.80}")
                    continue
                p, lab = parts[0].strip(), parts[1].strip()
            if ln_no == 1 and lab.lower() in ("label", "target", "class", "label_id") and not lab.isdigit():
                continue  # header
            if not p:
                col.add(ln_no, "field 'path' is empty")
                continue
            raw.append((ln_no, p, lab, {}))

    all_int = all(_is_int(lab) for _, _, lab, _ in raw)
    if label_map is None and not all_int:
        names = sorted({lab for _, _, lab, _ in raw if not _is_int(lab)})
        label_map = {n: k for k, n in enumerate(names)}
    records: list[ClassificationRecord] = []
    rows: list[int | str] = []
    for row_no, p, lab, ex in raw:
        if label_map is not None and lab in label_map:
            y = int(label_map[lab])
        elif _is_int(lab):
            y = int(lab)
        else:
            col.add(row_no, f"field 'label': unknown class {lab!r}")
            continue
        if y < 0 or (num_classes is not None and y >= num_classes):
            col.add(row_no, f"field 'label': {y} out of range [0, {num_classes if num_classes else 'inf'})")
            continue
        extra = {"label_name": lab} if not _is_int(lab) else {}
        records.append(
            ClassificationRecord(resolve_path(root, p), y, ex.get("start"), ex.get("end"), extra=extra)
        )
        rows.append(row_no)
    skipped = col.finish()
    return Annotations(str(path), records, rows, skipped)


def _is_int(s: str) -> bool:
    s = s.strip()
    return s.lstrip("-").isdigit()


def read_videomae_multi(
    path: str | os.PathLike,
    data_root: str | os.PathLike | None = None,
    *,
    sep: str = " ",
    on_bad: OnBad = "raise",
) -> Annotations[VideoMAEMultiRecord]:
    """Stage-1 ``VideoMAE_multi`` list (``datasets/mae_multi.py``): ``source path total_time start_time
    end_time target`` separated by ``sep`` (official ``--split``, default a space). The path may contain the
    separator: the first field is the source and the last four are numbers. -1 times mean "whole video"."""
    path = Path(path)
    root = _root(path, data_root)
    col = _Collector(str(path), on_bad)
    records: list[VideoMAEMultiRecord] = []
    rows: list[int | str] = []
    for ln_no, line in enumerate(_text_lines(path), start=1):
        if not line.strip():
            continue
        parts = line.strip().split(None if sep == " " else sep)
        if len(parts) < 6:
            col.add(ln_no, f"expected 6 fields 'source path total_time start_time end_time target', got "
                           f"{len(parts)}: {line!r:.80}")
            continue
        source, p = parts[0], (" " if sep == " " else sep).join(parts[1:-4])
        names = ("total_time", "start_time", "end_time")
        try:
            nums = []
            for name, tok in zip(names, parts[-4:-1]):
                try:
                    v = float(tok)
                except ValueError:
                    raise _RowProblem(f"field {name!r} is not a number: {tok!r}") from None
                if not math.isfinite(v):
                    raise _RowProblem(f"field {name!r} is not finite: {tok!r}")
                nums.append(v)
            tok = parts[-1]
            if not _is_int(tok) or int(tok) < 0:
                raise _RowProblem(f"field 'target' must be a non-negative integer, got {tok!r}")
            total, start, end = nums
            rec = VideoMAEMultiRecord(source, resolve_path(root, p), total, start, end, int(tok))
            if rec.has_range and not (0 <= start < end and total > 0):
                raise _RowProblem(f"bad time range: start_time={start}, end_time={end}, total_time={total}")
        except _RowProblem as e:
            col.add(ln_no, str(e))
            continue
        records.append(rec)
        rows.append(ln_no)
    skipped = col.finish()
    return Annotations(str(path), records, rows, skipped)


# ---------------------------------------------------------------------------------------------------------
# QA
# ---------------------------------------------------------------------------------------------------------


def read_multiple_choice(
    path: str | os.PathLike,
    data_root: str | os.PathLike | None = None,
    *,
    media_key: str = "video",
    on_bad: OnBad = "raise",
) -> Annotations[MultipleChoiceRecord]:
    """Multiple-choice JSON: MSRVTT-MC ``{"video", "caption": [5 options], "answer": int}`` or
    SSv2/Charades-MC
    ``{"video", "option": [...], "answer": int | [int] | multi-hot [0/1 per option]}``."""
    path = Path(path)
    data = _load_json_list(path)
    root = _root(path, data_root)
    col = _Collector(str(path), on_bad)
    records: list[MultipleChoiceRecord] = []
    rows: list[int | str] = []
    for i, row in enumerate(data):
        try:
            row = _check_dict(row)
            media = _req_str(row, media_key)
            key = "option" if "option" in row else ("options" if "options" in row else "caption")
            opts = row.get(key)
            if not isinstance(opts, list) or len(opts) < 2 or not all(isinstance(o, str) for o in opts):
                raise _RowProblem(
                    f"field {key!r} must be a list of at least 2 option strings, got {opts!r:.80}"
                )
            if "answer" not in row:
                raise _RowProblem("field 'answer' missing")
            ans = row["answer"]
            answer: int | list[int]
            if isinstance(ans, bool):
                raise _RowProblem(f"field 'answer' must be an index, got {ans!r}")
            if isinstance(ans, int) or (isinstance(ans, str) and _is_int(ans)):
                answer = int(ans)
                if not 0 <= answer < len(opts):
                    raise _RowProblem(f"field 'answer': index {answer} out of range for {len(opts)} options")
            elif isinstance(ans, list) and ans and all(isinstance(a, (int, float)) and not isinstance(a, bool)
                                                       for a in ans):
                if len(ans) == len(opts) and set(ans) <= {0, 1} and len(opts) > 1 and any(ans):
                    answer = [k for k, a in enumerate(ans) if a]  # multi-hot
                else:
                    answer = [int(a) for a in ans]
                    if any(a != int(a) or not 0 <= a < len(opts) for a in ans):
                        raise _RowProblem(
                            f"field 'answer': indices {ans!r:.80} out of range for {len(opts)} options"
                        )
            else:
                raise _RowProblem(f"field 'answer' must be an index or a list, got {ans!r:.80}")
            start, end = _time_range(row)
        except _RowProblem as e:
            col.add(i, str(e))
            continue
        records.append(MultipleChoiceRecord(
            resolve_path(root, media), list(opts), answer, start, end,
            {k: v for k, v in row.items() if k not in (media_key, key, "answer", "start", "end")},
        ))
        rows.append(i)
    skipped = col.finish()
    return Annotations(str(path), records, rows, skipped)


def read_instruction(
    path: str | os.PathLike,
    data_root: str | os.PathLike | None = None,
    *,
    on_bad: OnBad = "raise",
) -> Annotations[InstructionRecord]:
    """VideoChat2 instruction JSON: ``{"video"|"image": path, "QA": [{"i", "q", "a"}, ...]}`` with optional
    ``start``/``end`` seconds. ``i`` and ``q`` may be empty strings (captioning items have ``q == ""``);
    ``a`` must be a non-empty string."""
    path = Path(path)
    data = _load_json_list(path)
    root = _root(path, data_root)
    col = _Collector(str(path), on_bad)
    records: list[InstructionRecord] = []
    rows: list[int | str] = []
    for i, row in enumerate(data):
        try:
            row = _check_dict(row)
            if "video" in row:
                mt = "video"
            elif "image" in row:
                mt = "image"
            else:
                raise _RowProblem("field 'video' or 'image' missing")
            media = _req_str(row, mt)
            qa = row.get("QA")
            if not isinstance(qa, list) or not qa:
                raise _RowProblem("field 'QA' must be a non-empty list")
            turns = []
            for k, t in enumerate(qa):
                if not isinstance(t, dict):
                    raise _RowProblem(f"field 'QA[{k}]' must be an object")
                for f in ("i", "q"):
                    if not isinstance(t.get(f, ""), str):
                        raise _RowProblem(f"field 'QA[{k}].{f}' must be a string")
                a = t.get("a")
                if not isinstance(a, str) or not a.strip():
                    raise _RowProblem(f"field 'QA[{k}].a' must be a non-empty string")
                turns.append(QATurn(t.get("i", ""), t.get("q", ""), a))
            start, end = _time_range(row)
        except _RowProblem as e:
            col.add(i, str(e))
            continue
        records.append(
            InstructionRecord(
                resolve_path(root, media),
                mt,
                turns,
                start,
                end,
                {k: v for k, v in row.items() if k not in (mt, "QA", "start", "end")},
            )
        )
        rows.append(i)
    skipped = col.finish()
    return Annotations(str(path), records, rows, skipped)


# ---------------------------------------------------------------------------------------------------------
# generic
# ---------------------------------------------------------------------------------------------------------


def read_json_list(path: str | os.PathLike) -> list:
    """A JSON file holding a list (raises :class:`AnnotationError` otherwise)."""
    return _load_json_list(Path(path))


def read_jsonl(
    path: str | os.PathLike,
    *,
    required: Sequence[str] = (),
    on_bad: OnBad = "raise",
) -> Annotations[dict]:
    """JSON Lines: one object per line (blank lines ignored); every ``required`` field must be present."""
    path = Path(path)
    col = _Collector(str(path), on_bad)
    records: list[dict] = []
    rows: list[int | str] = []
    for ln_no, line in enumerate(_text_lines(path), start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            col.add(ln_no, f"invalid JSON: {e.msg} (column {e.colno})")
            continue
        if not isinstance(obj, dict):
            col.add(ln_no, f"expected an object, got {type(obj).__name__}")
            continue
        missing = [k for k in required if k not in obj]
        if missing:
            col.add(
                ln_no, f"field {missing[0]!r} missing" + (f" (and {missing[1:]})" if len(missing) > 1 else "")
            )
            continue
        records.append(obj)
        rows.append(ln_no)
    skipped = col.finish()
    return Annotations(str(path), records, rows, skipped)


def read_csv(
    path: str | os.PathLike,
    *,
    required: Sequence[str] = (),
    delimiter: str = ",",
    on_bad: OnBad = "raise",
) -> Annotations[dict]:
    """CSV with a header line; rows become dicts (strings). Rows with a different number of fields than the
    header, or an empty ``required`` field, are bad rows. Row numbers are file line numbers."""
    path = Path(path)
    col = _Collector(str(path), on_bad)
    text = "\n".join(_text_lines(path))
    reader = csv.reader(io.StringIO(text), delimiter=delimiter)
    try:
        header = next(reader)
    except StopIteration:
        raise AnnotationError(str(path), 1, "empty file, expected a header line") from None
    header = [h.strip() for h in header]
    missing = [k for k in required if k not in header]
    if missing:
        raise AnnotationError(str(path), 1, f"header lacks field(s) {missing} (has {header})")
    records: list[dict] = []
    rows: list[int | str] = []
    for fields in reader:
        ln_no = reader.line_num
        if not fields or not any(f.strip() for f in fields):
            continue
        if len(fields) != len(header):
            col.add(ln_no, f"{len(fields)} fields, header has {len(header)}")
            continue
        rec = dict(zip(header, fields))
        empty = [k for k in required if not rec[k].strip()]
        if empty:
            col.add(ln_no, f"field {empty[0]!r} is empty")
            continue
        records.append(rec)
        rows.append(ln_no)
    skipped = col.finish()
    return Annotations(str(path), records, rows, skipped)
