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
                          ``{"video", "option": [...], "answer": int | multi-hot list}`` (SSv2/Charades-MC);
                          ``parse_mc_answer`` is its answer rule
read_instruction          VideoChat2 ``{"video"|"image", "QA": [{"i", "q", "a"}], "start"?, "end"?}``
read_jsonl / read_csv     generic: list of dicts, with required fields checked
========================  ==========================================================================

Modules: :mod:`.records` (what readers return), :mod:`.rows` (the one reader skeleton: row sources, the bad-row
collector, field checks), :mod:`.readers` (the formats).
"""
from .readers import (
    parse_mc_answer,
    read_classification,
    read_csv,
    read_image_text,
    read_instruction,
    read_json_list,
    read_jsonl,
    read_multiple_choice,
    read_retrieval,
    read_video_text,
    read_videomae_multi,
)
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
from .rows import resolve_path

__all__ = [
    "Annotations",
    "ClassificationRecord",
    "InstructionRecord",
    "MultipleChoiceRecord",
    "QATurn",
    "RetrievalAnnotations",
    "VideoMAEMultiRecord",
    "VideoTextRecord",
    "parse_mc_answer",
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
