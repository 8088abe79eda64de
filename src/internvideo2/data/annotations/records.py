"""The records the annotation readers return (one per valid row)."""
from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Generic, TypeVar

T = TypeVar("T")

__all__ = ["VideoTextRecord", "ClassificationRecord", "VideoMAEMultiRecord", "MultipleChoiceRecord", "QATurn",
           "InstructionRecord", "Annotations", "RetrievalAnnotations"]


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
    """A multiple-choice item: raw ``options``; ``answer`` an index, or a list of distinct indices when
    several options are right (a Charades-MC multi-hot list becomes the indices of its ones, increasing; an
    index list keeps its order). ``answer[0]`` is the "first answer" of first-answer accuracy."""

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
