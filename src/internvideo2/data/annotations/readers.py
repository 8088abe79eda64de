"""The readers of the official annotation formats, each on the skeleton of :mod:`.rows`."""
from __future__ import annotations

import csv
import io
import json
import logging
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

from ...errors import AnnotationError, ConfigError
from ..text import ACTION_PROMPTS, filter_captions, pre_text
from .records import (
    Annotations,
    ClassificationRecord,
    InstructionRecord,
    MultipleChoiceRecord,
    QATurn,
    RetrievalAnnotations,
    VideoMAEMultiRecord,
    VideoTextRecord,
)
from .rows import (
    Collector,
    OnBad,
    RowProblem,
    captions,
    check_dict,
    collect,
    is_int,
    json_items,
    line_items,
    load_json_list,
    opt_int,
    req_str,
    resolve_path,
    root_of,
    text_lines,
    time_range,
)

logger = logging.getLogger("internvideo2.data")


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
    root = root_of(path, data_root)
    filtered = 0

    def parse(row: Any) -> VideoTextRecord | None:
        nonlocal filtered
        row = check_dict(row)
        media = req_str(row, media_key)
        ckey, caps = captions(row)
        start, end = time_range(row)
        sf, ef = opt_int(row, "video_start_frame"), opt_int(row, "video_end_frame")
        if sf is not None and ef is not None and ef < sf:
            raise RowProblem(f"field 'video_end_frame' ({ef}) is before 'video_start_frame' ({sf})")
        bbox = None
        if "crop_bbox" in row and row["crop_bbox"] is not None:
            b = row["crop_bbox"]
            if (not isinstance(b, (list, tuple)) or len(b) != 4
                    or not all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in b)):
                raise RowProblem(f"field 'crop_bbox' must be [x0, y0, x1, y1], got {b!r:.80}")
            if b[2] <= b[0] or b[3] <= b[1]:
                raise RowProblem(f"field 'crop_bbox' is empty: {b!r}")
            bbox = tuple(float(x) for x in b)
        audio = None
        if row.get("audio") is not None and media_key != "audio":
            audio = resolve_path(root, req_str(row, "audio"))
        if min_caption_length > 0:
            caps = filter_captions(caps, min_caption_length)
            if not caps:
                filtered += 1
                return None
        known = {media_key, ckey, "start", "end", "video_start_frame", "video_end_frame", "crop_bbox", "audio"}
        return VideoTextRecord(
            path=resolve_path(root, media), captions=caps, media_type=media_key, start=start, end=end,
            start_frame=sf, end_frame=ef, crop_bbox=bbox, audio=audio,
            extra={k: v for k, v in row.items() if k not in known},
        )

    col = Collector(path, on_bad)
    records, rows = collect(col, json_items(path), parse)
    out = col.annotations(records, rows)
    if filtered:
        logger.info("%s: %d row(s) without a caption of >= %d words dropped (official length filter)",
                    path, filtered, min_caption_length)
    return out


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
    root = root_of(path, data_root)

    def parse(row: Any) -> tuple[Any, list[str]]:
        row = check_dict(row)
        if multi_vision_gt:
            m = row.get(media_key)
            if isinstance(m, str) and m.strip():
                m = [m]
            elif not (isinstance(m, list) and m and all(isinstance(x, str) and x.strip() for x in m)):
                raise RowProblem(f"field {media_key!r} must be a path or a non-empty list of paths")
        else:
            m = req_str(row, media_key)
        _, caps = captions(row, ("caption",))
        if is_act_rec and (len(caps) != 1 or not isinstance(row["caption"], str)):
            raise RowProblem("field 'caption' must be one class name for action recognition")
        if multi_vision_gt and len(caps) != 1:
            raise RowProblem("field 'caption' must be one string with multi_vision_gt")
        return m, caps

    col = Collector(path, "raise")
    items, row_nos = collect(col, json_items(path), parse)
    col.finish_nonempty(items)
    parsed = [(i, m, caps) for i, (m, caps) in zip(row_nos, items)]
    media: list[str] = []
    texts: list[str] = []
    txt2vid: list = []
    vid2txt: list = []
    rows: list[int] = []
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
def read_classification(
    path: str | os.PathLike,
    data_root: str | os.PathLike | None = None,
    *,
    sep: str | None = None,
    label_map: dict[str, int] | None = None,
    num_classes: int | None = None,
    on_bad: OnBad = "raise",
    unmapped_names: Literal["number", "error"] = "number",
) -> Annotations[ClassificationRecord]:
    """Classification list: ``path,label`` CSV, ``path label`` space-separated (Kinetics style, the official
    ``--split ' '``), or a JSON list of ``{"video", "label"}``.

    ``sep=None`` picks ``,`` for ``.csv`` files whose first line has a comma, otherwise whitespace. With a
    whitespace separator the label is the *last* token, so paths may contain spaces. A header line
    (``path,label``/``video,label``) is skipped. Labels are integers, or class names mapped through
    ``label_map``; without a map, names are numbered in sorted order (with a warning), or, with
    ``unmapped_names="error"``, a :class:`ConfigError` on field ``classes`` asks for the class list (a
    model's head has its own order). A record labelled by name keeps the name in ``extra['label_name']``.
    ``num_classes`` checks the range.
    """
    path = Path(path)
    root = root_of(path, data_root)
    col = Collector(path, on_bad)
    # pass 1: (path, label token, extra) per row
    if path.suffix.lower() == ".json":
        def parse_json(row: Any) -> tuple[str, str, dict]:
            row = check_dict(row)
            p = req_str(row, "video" if "video" in row else "path")
            if "label" not in row:
                raise RowProblem("field 'label' missing")
            start, end = time_range(row)
            return p, str(row["label"]), {"start": start, "end": end}

        raw, raw_rows = collect(col, json_items(path), parse_json)
    else:
        if sep is None:
            first = next((ln for ln in text_lines(path) if ln.strip()), "")
            sep = "," if (path.suffix.lower() == ".csv" and "," in first) else " "

        def parse_line(item: tuple[int, str]) -> tuple[str, str, dict] | None:
            ln_no, line = item
            if sep == ",":
                try:
                    parts = [p.strip() for p in next(csv.reader([line]))]
                except csv.Error as e:  # e.g. a field past csv's size limit
                    raise RowProblem(f"not a CSV line ({e})") from None
                if len(parts) < 2:
                    raise RowProblem(f"expected 'path{sep}label', got {line!r:.80}")
                p, lab = ",".join(parts[:-1]), parts[-1]
            else:
                parts = line.strip().rsplit(None if sep == " " else sep, 1)
                if len(parts) < 2:
                    raise RowProblem(f"expected 'path label', got {line!r:.80}")
                p, lab = parts[0].strip(), parts[1].strip()
            if ln_no == 1 and lab.lower() in ("label", "target", "class", "label_id") and not lab.isdigit():
                return None  # header
            if not p:
                raise RowProblem("field 'path' is empty")
            return p, lab, {}

        raw, raw_rows = collect(col, ((n, (n, line)) for n, line in line_items(path)), parse_line)

    # pass 2: labels -> class ids
    first_kind = None
    if label_map is None and raw:
        kinds = {is_int(lab) for _, lab, _ in raw}
        first_kind = is_int(raw[0][1])
        if kinds == {False}:
            if unmapped_names == "error":
                raise ConfigError("classes", f"the labels of {path} are class names: give the class list (the "
                                  "model head's order) so that names map to class ids")
            names = sorted({lab for _, lab, _ in raw})
            label_map = {n: k for k, n in enumerate(names)}
            logger.warning("%s: class names numbered in sorted order of the %d names in this file; give the class "
                           "list (label_map= / --classes) so that ids match a model's head", path, len(names))

    def parse_label(item: tuple[str, str, dict]) -> ClassificationRecord:
        p, lab, ex = item
        if first_kind is not None and is_int(lab) != first_kind:
            raise RowProblem(f"field 'label': {lab!r} is {'an integer' if is_int(lab) else 'a class name'} while "
                             f"the first row's label is {'an integer' if first_kind else 'a class name'}; mixed "
                             "labels need the class list (label_map= / --classes)")
        if label_map is not None and lab in label_map:
            y = int(label_map[lab])
        elif is_int(lab):
            y = int(lab)
        else:
            raise RowProblem(f"field 'label': unknown class {lab!r}")
        if y < 0 or (num_classes is not None and y >= num_classes):
            raise RowProblem(f"field 'label': {y} out of range [0, {num_classes if num_classes else 'inf'})")
        extra = {"label_name": lab} if not is_int(lab) else {}
        return ClassificationRecord(resolve_path(root, p), y, ex.get("start"), ex.get("end"), extra=extra)

    records, rows = collect(col, zip(raw_rows, raw), parse_label)
    return col.annotations(records, rows)


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
    root = root_of(path, data_root)

    def parse(line: str) -> VideoMAEMultiRecord:
        parts = line.strip().split(None if sep == " " else sep)
        if len(parts) < 6:
            raise RowProblem(f"expected 6 fields 'source path total_time start_time end_time target', got "
                             f"{len(parts)}: {line!r:.80}")
        source, p = parts[0], (" " if sep == " " else sep).join(parts[1:-4])
        nums = []
        for name, tok in zip(("total_time", "start_time", "end_time"), parts[-4:-1]):
            try:
                v = float(tok)
            except ValueError:
                raise RowProblem(f"field {name!r} is not a number: {tok!r}") from None
            if not math.isfinite(v):
                raise RowProblem(f"field {name!r} is not finite: {tok!r}")
            nums.append(v)
        tok = parts[-1]
        if not is_int(tok) or int(tok) < 0:
            raise RowProblem(f"field 'target' must be a non-negative integer, got {tok!r}")
        total, start, end = nums
        rec = VideoMAEMultiRecord(source, resolve_path(root, p), total, start, end, int(tok))
        if rec.has_range and not (0 <= start < end and total > 0):
            raise RowProblem(f"bad time range: start_time={start}, end_time={end}, total_time={total}")
        return rec

    col = Collector(path, on_bad)
    records, rows = collect(col, line_items(path), parse)
    return col.annotations(records, rows)


# ---------------------------------------------------------------------------------------------------------
# QA
# ---------------------------------------------------------------------------------------------------------
AnswerFormat = Literal["auto", "index", "multi_hot"]


def _integral(a: Any) -> bool:
    """An int, or a float with an integral value (JSON writers emit ``1.0``); never a bool."""
    return (isinstance(a, int) and not isinstance(a, bool)) or (isinstance(a, float) and a.is_integer())


def _multi_hot(ans: list, n: int) -> list[int]:
    """The indices of the ones of a multi-hot answer (one 0/1 entry per option, at least one 1)."""
    if len(ans) != n:
        raise RowProblem(f"field 'answer': a multi-hot answer needs one 0/1 entry per option ({n}), got "
                         f"{len(ans)} entries")
    bad = next((k for k, a in enumerate(ans) if not _integral(a) or a not in (0, 1)), None)
    if bad is not None:
        raise RowProblem(f"field 'answer': multi-hot entry {bad} is {ans[bad]!r}, not 0 or 1")
    ones = [k for k, a in enumerate(ans) if a == 1]
    if not ones:
        raise RowProblem("field 'answer': the multi-hot answer marks no option as correct (all zeros)")
    return ones


def _index_list(ans: list, n: int) -> list[int]:
    """Distinct option indices, in the order listed (the first one is the "first answer")."""
    bad = next((k for k, a in enumerate(ans) if not _integral(a) or not 0 <= a < n), None)
    if bad is not None:
        raise RowProblem(f"field 'answer': entry {bad} ({ans[bad]!r}) is not an option index in [0, {n})")
    idx = [int(a) for a in ans]
    if len(set(idx)) != len(idx):
        hint = (f"; a multi-hot answer needs exactly one 0/1 entry per option ({n}), this one has {len(ans)}"
                if set(idx) <= {0, 1} else "")
        raise RowProblem(f"field 'answer': repeated option indices {ans!r:.80}{hint}")
    return idx


def parse_mc_answer(ans: Any, num_options: int, answer_format: AnswerFormat = "auto") -> int | list[int]:
    """One multiple-choice ``answer`` field -> an option index, or a list of indices (several right options).

    - ``int`` (or an integer string): one index in ``[0, num_options)`` (MSR-VTT-MC, SSv2-MC).
    - a list with one 0/1 entry per option: **multi-hot** (official Charades-MC, 157 options; the official
      ``VidTxtRetMCNewEvalDataset`` turns it into the ``torchnet`` mAP target as it is). Returned as the
      indices of its ones, in increasing order. All zeros is malformed (no correct option).
    - any other list: distinct option indices, in the order listed.

    ``answer_format`` = ``"multi_hot"`` or ``"index"`` accepts only that layout (``"auto"``: decided per row as
    above; a list of ``num_options`` zeros and ones is always multi-hot there). A malformed answer raises
    :class:`RowProblem` (the reader turns it into an :class:`AnnotationError` naming file and row).
    """
    if answer_format not in ("auto", "index", "multi_hot"):
        raise ConfigError("answer_format", f"must be 'auto', 'index' or 'multi_hot', got {answer_format!r}")
    if isinstance(ans, bool):
        raise RowProblem(f"field 'answer' must be an index or a list, got {ans!r}")
    if isinstance(ans, int) or (isinstance(ans, str) and is_int(ans)):
        if answer_format == "multi_hot":
            raise RowProblem(f"field 'answer' must be a multi-hot list of {num_options} entries, got {ans!r}")
        answer = int(ans)
        if not 0 <= answer < num_options:
            raise RowProblem(f"field 'answer': index {answer} out of range for {num_options} options")
        return answer
    if not isinstance(ans, list) or not ans:
        raise RowProblem(f"field 'answer' must be an index or a non-empty list, got {ans!r:.80}")
    if answer_format == "multi_hot":
        return _multi_hot(ans, num_options)
    if answer_format == "auto" and len(ans) == num_options and all(_integral(a) and a in (0, 1) for a in ans):
        return _multi_hot(ans, num_options)
    return _index_list(ans, num_options)


def read_multiple_choice(
    path: str | os.PathLike,
    data_root: str | os.PathLike | None = None,
    *,
    media_key: str = "video",
    answer_format: AnswerFormat = "auto",
    on_bad: OnBad = "raise",
) -> Annotations[MultipleChoiceRecord]:
    """Multiple-choice JSON: MSRVTT-MC ``{"video", "caption": [5 options], "answer": int}`` or
    SSv2/Charades-MC ``{"video", "option": [...], "answer": int | multi-hot [0/1 per option] | [int]}``.

    The answer is parsed by :func:`parse_mc_answer` (``answer_format`` picks the layout; Charades-MC is
    ``"multi_hot"``). Options are kept raw (the evaluation applies ``pre_text`` as the official datasets do).
    """
    path = Path(path)
    root = root_of(path, data_root)
    if answer_format not in ("auto", "index", "multi_hot"):
        raise ConfigError("answer_format", f"must be 'auto', 'index' or 'multi_hot', got {answer_format!r}")

    def parse(row: Any) -> MultipleChoiceRecord:
        row = check_dict(row)
        media = req_str(row, media_key)
        key = "option" if "option" in row else ("options" if "options" in row else "caption")
        opts = row.get(key)
        if not isinstance(opts, list) or len(opts) < 2 or not all(isinstance(o, str) for o in opts):
            raise RowProblem(f"field {key!r} must be a list of at least 2 option strings, got {opts!r:.80}")
        if "answer" not in row:
            raise RowProblem("field 'answer' missing")
        answer = parse_mc_answer(row["answer"], len(opts), answer_format)
        start, end = time_range(row)
        return MultipleChoiceRecord(
            resolve_path(root, media), list(opts), answer, start, end,
            {k: v for k, v in row.items() if k not in (media_key, key, "answer", "start", "end")},
        )

    col = Collector(path, on_bad)
    records, rows = collect(col, json_items(path), parse)
    return col.annotations(records, rows)


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
    root = root_of(path, data_root)

    def parse(row: Any) -> InstructionRecord:
        row = check_dict(row)
        if "video" in row:
            mt = "video"
        elif "image" in row:
            mt = "image"
        else:
            raise RowProblem("field 'video' or 'image' missing")
        media = req_str(row, mt)
        qa = row.get("QA")
        if not isinstance(qa, list) or not qa:
            raise RowProblem("field 'QA' must be a non-empty list")
        turns = []
        for k, t in enumerate(qa):
            if not isinstance(t, dict):
                raise RowProblem(f"field 'QA[{k}]' must be an object")
            for f in ("i", "q"):
                if not isinstance(t.get(f, ""), str):
                    raise RowProblem(f"field 'QA[{k}].{f}' must be a string")
            a = t.get("a")
            if not isinstance(a, str) or not a.strip():
                raise RowProblem(f"field 'QA[{k}].a' must be a non-empty string")
            turns.append(QATurn(t.get("i", ""), t.get("q", ""), a))
        start, end = time_range(row)
        return InstructionRecord(resolve_path(root, media), mt, turns, start, end,
                                 {k: v for k, v in row.items() if k not in (mt, "QA", "start", "end")})

    col = Collector(path, on_bad)
    records, rows = collect(col, json_items(path), parse)
    return col.annotations(records, rows)


# ---------------------------------------------------------------------------------------------------------
# generic
# ---------------------------------------------------------------------------------------------------------
def read_json_list(path: str | os.PathLike) -> list:
    """A JSON file holding a list (raises :class:`AnnotationError` otherwise)."""
    return load_json_list(Path(path))


def read_jsonl(
    path: str | os.PathLike,
    *,
    required: Sequence[str] = (),
    on_bad: OnBad = "raise",
) -> Annotations[dict]:
    """JSON Lines: one object per line (blank lines ignored); every ``required`` field must be present."""
    path = Path(path)

    def parse(line: str) -> dict:
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            raise RowProblem(f"invalid JSON: {e.msg} (column {e.colno})") from None
        if not isinstance(obj, dict):
            raise RowProblem(f"expected an object, got {type(obj).__name__}")
        missing = [k for k in required if k not in obj]
        if missing:
            raise RowProblem(f"field {missing[0]!r} missing" + (f" (and {missing[1:]})" if len(missing) > 1 else ""))
        return obj

    col = Collector(path, on_bad)
    records, rows = collect(col, line_items(path), parse)
    return col.annotations(records, rows)


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
    col = Collector(path, on_bad)
    reader = csv.reader(io.StringIO("\n".join(text_lines(path))), delimiter=delimiter)
    try:
        header = [h.strip() for h in next(reader)]
    except StopIteration:
        raise AnnotationError(str(path), 1, "empty file, expected a header line") from None
    except csv.Error as e:
        raise AnnotationError(str(path), 1, f"not a CSV header ({e})") from None
    missing = [k for k in required if k not in header]
    if missing:
        raise AnnotationError(str(path), 1, f"header lacks field(s) {missing} (has {header})")

    def parse(fields: list[str]) -> dict | None:
        if not fields or not any(f.strip() for f in fields):
            return None
        if len(fields) != len(header):
            raise RowProblem(f"{len(fields)} fields, header has {len(header)}")
        rec = dict(zip(header, fields))
        empty = [k for k in required if not rec[k].strip()]
        if empty:
            raise RowProblem(f"field {empty[0]!r} is empty")
        return rec

    # csv.reader counts lines as it reads: the row number is known once the row has been read
    try:
        records, rows = collect(col, ((reader.line_num, fields) for fields in reader), parse)
    except csv.Error as e:  # the reader itself gave up (e.g. a field past csv's size limit)
        raise AnnotationError(str(path), reader.line_num, f"not CSV ({e})") from None
    return col.annotations(records, rows)
