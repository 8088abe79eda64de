"""What decides the numbers of an embed run: the settings dataclass and the vocabularies it accepts."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch

from ..errors import ConfigError

#: file name endings (lower case) taken from folders; files named explicitly are always taken
VIDEO_EXTENSIONS = (".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi", ".mpg", ".mpeg", ".flv", ".wmv",
                    ".ts", ".mts", ".m2ts", ".3gp", ".ogv")
MODES = ("clip", "window", "shots")
FEATURES = ("auto", "proj", "pool", "mean")
RESIZES = ("squash", "center_crop", "decoder")
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
TOKEN_DTYPES = ("float32", "float16")

FORMAT = "internvideo2-embed"
FORMAT_VERSION = 2


@dataclass
class EmbedSettings:
    """Everything that decides the numbers of a run (the resume fingerprint, with the model and inputs).

    Attributes:
        mode: ``clip``, ``window`` or ``shots`` (package doc).
        frames: frames per item (None: the model's ``num_frames``); must divide by its tubelet size.
        window / stride: window length and step in seconds (``window`` mode; stride None = window).
        shot_ratio / shot_min_score / shot_min_len / shot_step: :func:`detect_shots` parameters.
        size: input side (None: the model's ``img_size``); other sizes resample the position tables.
        resize: ``squash`` (default), ``center_crop`` or ``decoder`` (package doc).
        feature: ``auto``, ``proj``, ``pool`` or ``mean`` (package doc).
        normalize: L2-normalise every embedding row.
        tokens: also write the final tokens ``[1+N, C]`` of every item; ``tokens_dtype`` float32/float16.
        batch_size: items per model call (and videos per group, see the package doc).
        chunk_size: videos per committed chunk (the unit of resume).
        dtype: model dtype ``fp32`` / ``bf16`` / ``fp16`` (fp16 only on GPU).
    """

    mode: str = "clip"
    frames: int | None = None
    window: float | None = None
    stride: float | None = None
    shot_ratio: float = 3.0
    shot_min_score: float = 0.12
    shot_min_len: float = 0.5
    shot_step: int = 1
    size: int | None = None
    resize: str = "squash"
    feature: str = "auto"
    normalize: bool = False
    tokens: bool = False
    tokens_dtype: str = "float32"
    batch_size: int = 8
    chunk_size: int = 64
    dtype: str = "fp32"

    def validate(self) -> EmbedSettings:
        def need(ok: bool, name: str, reason: str) -> None:
            if not ok:
                raise ConfigError(name, reason)

        need(self.mode in MODES, "mode", f"unknown mode {self.mode!r}; use one of {', '.join(MODES)}")
        need(self.frames is None or int(self.frames) >= 1, "frames", f"must be >= 1, got {self.frames}")
        if self.mode == "window":
            need(self.window is not None and self.window > 0, "window",
                 f"window mode needs a window length > 0 seconds, got {self.window}")
            if self.stride is None:
                self.stride = self.window
            need(self.stride > 0, "stride", f"must be > 0 seconds, got {self.stride}")
        else:
            need(self.window is None and self.stride is None, "window",
                 f"--window/--stride only apply to --mode window (mode is {self.mode!r})")
        need(self.shot_ratio > 1, "shot_ratio", f"must be > 1, got {self.shot_ratio}")
        need(self.shot_step >= 1, "shot_step", f"must be >= 1, got {self.shot_step}")
        need(self.shot_min_len >= 0, "shot_min_len", f"must be >= 0, got {self.shot_min_len}")
        need(self.size is None or int(self.size) > 0, "size", f"must be > 0, got {self.size}")
        need(self.resize in RESIZES, "resize", f"unknown {self.resize!r}; use one of {', '.join(RESIZES)}")
        need(self.feature in FEATURES, "feature", f"unknown {self.feature!r}; use one of {', '.join(FEATURES)}")
        need(self.tokens_dtype in TOKEN_DTYPES, "tokens_dtype", f"use one of {', '.join(TOKEN_DTYPES)}")
        need(int(self.batch_size) >= 1, "batch_size", f"must be >= 1, got {self.batch_size}")
        need(int(self.chunk_size) >= 1, "chunk_size", f"must be >= 1, got {self.chunk_size}")
        need(self.dtype in DTYPES, "dtype", f"unknown {self.dtype!r}; use one of {', '.join(DTYPES)}")
        return self

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)
