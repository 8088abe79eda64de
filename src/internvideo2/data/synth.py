"""The synthetic video world: the project's embedded default corpus (``internvideo2 synth``).

Short clips of coloured shapes that move, bounce, spin, appear, disappear, grow and shrink, alone or one
after another, over varied backgrounds with a slight camera pan or shake, with an audio track tied to the
events. Each clip comes with paraphrased captions (some with "first ..., then ..."), an action class
defined by motion or event order, and multiple-choice questions. See ``docs/synthetic-world.md``.

Python API::

    cfg = SynthConfig(num_frames=8, size=64)
    spec = sample_clip_spec(clip_rng(seed=0, split="train", index=0), "train")
    clip = render_clip(spec, cfg)            # frames uint8 [T, H, W, 3], audio float32 [n]
    world = SynthWorld(seed=0, split="train", cfg=cfg)
    rec, clip = world.record(5), world.render(5)   # on the fly, no file I/O
    generate_world("data/synth", 1000, seed=0, split="train", cfg=cfg)   # MP4 files + annotations

Determinism: clip ``i`` of ``(seed, split)`` depends only on those three numbers (not on ``num_clips`` or on
the number of workers). Annotation files are byte-identical across runs, and so are the MP4 files with
the bundled encoders (x264 single-threaded, FFmpeg AAC).
"""
from __future__ import annotations

import csv
import io
import json
import logging
import multiprocessing
import os
import time
import zlib
from collections import Counter
from dataclasses import asdict, dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import AnnotationError, ConfigError, MediaError
from ..utils.io import atomic_path, write_text
from .synth_language import caption_key, make_captions, make_mc_options, make_qa
from .synth_render import render_audio, render_frames
from .synth_world import (
    CLASS_BY_NAME,
    CLASSES,
    HELDOUT_PAIRS,
    SPLITS,
    ClipSpec,
    is_heldout_combo,
    reverse_spec,
    sample_clip_spec,
)

logger = logging.getLogger("internvideo2.data.synth")

__all__ = [
    "appearance",
    "SynthConfig",
    "RenderedClip",
    "ClipSpec",
    "CLASSES",
    "HELDOUT_PAIRS",
    "SPLITS",
    "WorldSummary",
    "SynthWorld",
    "clip_rng",
    "sample_clip_spec",
    "reverse_spec",
    "render_clip",
    "make_record",
    "write_clip",
    "generate_world",
    "read_world",
    "caption_uniqueness",
    "classes_table",
    "is_heldout_combo",
    "video_relpath",
    "configure_parser",
    "run",
]

FORMAT_VERSION = 1


@dataclass
class SynthConfig:
    """How clips are rendered and written (the content distribution does not depend on it).

    num_frames: frames per clip (2..64); size: frame side in pixels, even (16..256; 64 by default, 56-128
    is the useful range); fps: frame rate of the written video (the clip lasts num_frames / fps seconds);
    sample_rate: audio rate in Hz; audio: render and write the audio track; crf: x264 quality (lower is
    closer to the rendered frames; 18 keeps the mean error around one or two grey levels).
    """

    num_frames: int = 8
    size: int = 64
    fps: float = 4.0
    sample_rate: int = 16000
    audio: bool = True
    crf: int = 18

    def validate(self) -> SynthConfig:
        if not isinstance(self.num_frames, int) or not 2 <= self.num_frames <= 64:
            raise ConfigError("num_frames", f"must be an int in [2, 64], got {self.num_frames!r}")
        if not isinstance(self.size, int) or not 16 <= self.size <= 256 or self.size % 2:
            raise ConfigError("size", f"must be an even int in [16, 256] (H.264 4:2:0), got {self.size!r}")
        if not (isinstance(self.fps, (int, float)) and 0.5 <= self.fps <= 120):
            raise ConfigError("fps", f"must be in [0.5, 120], got {self.fps!r}")
        if not isinstance(self.sample_rate, int) or not 8000 <= self.sample_rate <= 48000:
            raise ConfigError("sample_rate", f"must be an int in [8000, 48000], got {self.sample_rate!r}")
        if not isinstance(self.crf, int) or not 0 <= self.crf <= 51:
            raise ConfigError("crf", f"must be an int in [0, 51], got {self.crf!r}")
        return self

    @property
    def duration(self) -> float:
        """Clip length in seconds."""
        return self.num_frames / self.fps


@dataclass
class RenderedClip:
    """frames: uint8 [T, H, W, 3] RGB; audio: float32 [n] in [-1, 1] (empty when audio is off)."""

    frames: np.ndarray
    audio: np.ndarray
    sample_rate: int
    fps: float


def clip_rng(seed: int, split: str, index: int) -> np.random.Generator:
    """The random generator of clip ``index`` of ``split`` under ``seed`` (independent streams)."""
    if split not in SPLITS:
        raise ConfigError("split", f"unknown split {split!r}; choose from {SPLITS}")
    return np.random.default_rng([int(seed), zlib.crc32(split.encode()), int(index)])


def render_clip(spec: ClipSpec, cfg: SynthConfig | None = None) -> RenderedClip:
    """Render a spec in memory (no file I/O)."""
    cfg = (cfg or SynthConfig()).validate()
    frames = render_frames(spec, cfg.num_frames, cfg.size)
    audio = render_audio(spec, cfg.duration, cfg.sample_rate) if cfg.audio else np.zeros(0, np.float32)
    return RenderedClip(frames=frames, audio=audio, sample_rate=cfg.sample_rate, fps=float(cfg.fps))


def video_relpath(split: str, index: int) -> str:
    return f"videos/{split}/{index:06d}.mp4"


def appearance(spec: ClipSpec) -> str:
    """Size, colour and shape of the clip's first (main) object, e.g. ``"small red circle"``: clips that
    share it differ only in motion, place and background (the key of hard-negative batches)."""
    o = spec.objects[0]
    return " ".join(x for x in (o.size, o.colour, o.shape) if x)  # size is None for growing/shrinking


def make_record(spec: ClipSpec, *, seed: int, index: int, cfg: SynthConfig | None = None) -> dict[str, Any]:
    """The full annotation record of one clip (what one line of ``<split>.jsonl`` holds)."""
    cfg = cfg or SynthConfig()
    cls = CLASS_BY_NAME[spec.class_name]
    mc_options, mc_answer = make_mc_options(spec)
    return {
        "id": f"{spec.split}_{index:06d}",
        "video": video_relpath(spec.split, index),
        "caption": make_captions(spec),
        "label": cls.label,
        "label_name": cls.name,
        "class_description": cls.description,
        "appearance": appearance(spec),
        "qa": make_qa(spec),
        "mc": {"caption": mc_options, "answer": mc_answer},
        "split": spec.split,
        "index": index,
        "seed": seed,
        "num_frames": cfg.num_frames,
        "size": cfg.size,
        "fps": cfg.fps,
        "duration": cfg.duration,
        "sample_rate": cfg.sample_rate if cfg.audio else None,
        "spec": spec.to_dict(),
    }


class SynthWorld:
    """Indexable view of one split for on-the-fly training: ``spec(i)``, ``record(i)``, ``render(i)``.
    ``len`` is ``num_clips`` (any index is valid; the length only bounds iteration)."""

    def __init__(self, seed: int = 0, split: str = "train", cfg: SynthConfig | None = None,
                 num_clips: int = 1000):
        clip_rng(seed, split, 0)  # validates split
        self.seed, self.split, self.num_clips = int(seed), split, int(num_clips)
        self.cfg = (cfg or SynthConfig()).validate()

    def __len__(self) -> int:
        return self.num_clips

    def spec(self, index: int) -> ClipSpec:
        return sample_clip_spec(clip_rng(self.seed, self.split, index), self.split)

    def record(self, index: int) -> dict[str, Any]:
        return make_record(self.spec(index), seed=self.seed, index=index, cfg=self.cfg)

    def render(self, index: int) -> RenderedClip:
        return render_clip(self.spec(index), self.cfg)


# ---------------------------------------------------------------------------------------------------------
# writing
# ---------------------------------------------------------------------------------------------------------


def write_clip(path: str | os.PathLike, clip: RenderedClip, crf: int = 18) -> None:
    """Write an H.264 (yuv420p) MP4 with an AAC mono track (when ``clip.audio`` is not empty).
    Written to a temporary name first, so an interrupted run never leaves a half-written file."""
    import av

    path = Path(path)
    if clip.frames.ndim != 4 or clip.frames.shape[-1] != 3 or clip.frames.dtype != np.uint8:
        raise ConfigError("frames", f"expected uint8 [T, H, W, 3], got {clip.frames.dtype} "
                                    f"{clip.frames.shape}")
    _, h, w, _ = clip.frames.shape
    if h % 2 or w % 2:
        raise ConfigError("frames", f"H.264 4:2:0 needs even height and width, got {h}x{w}")
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        with atomic_path(path) as tmp:
            _encode_mp4(tmp, clip, crf)
    except av.FFmpegError as e:
        raise MediaError(str(path), "encode_failed", str(e)) from e


def _encode_mp4(tmp: Path, clip: RenderedClip, crf: int) -> None:
    import av

    _, h, w, _ = clip.frames.shape
    with av.open(str(tmp), "w", format="mp4") as c:
        vs = c.add_stream("libx264", rate=Fraction(clip.fps).limit_denominator(1000))
        vs.width, vs.height, vs.pix_fmt = w, h, "yuv420p"
        # deterministic bytes: one thread (lookahead included) and no macroblock tree. With x264's
        # defaults about 1 clip in 60 encoded differently from run to run (seen with mbtree on, even
        # single-threaded); both cost nothing measurable on frames this small
        vs.codec_context.thread_count = 1
        vs.options = {"crf": str(crf), "preset": "veryfast",
                      "x264-params": "threads=1:lookahead-threads=1:sliced-threads=0:mbtree=0"}
        a = None
        if clip.audio.size:
            a = c.add_stream("aac", rate=clip.sample_rate)
            a.layout = "mono"
            a.options = {"aac_coder": "fast"}  # the default two-loop coder is 3x slower
        for f in clip.frames:
            for p in vs.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(f), format="rgb24")):
                c.mux(p)
        for p in vs.encode():
            c.mux(p)
        if a is not None:
            fs = a.codec_context.frame_size or 1024
            audio = np.ascontiguousarray(clip.audio, dtype=np.float32)
            for s in range(0, len(audio), fs):
                chunk = audio[None, s:s + fs]
                af = av.AudioFrame.from_ndarray(chunk, format="fltp", layout="mono")
                af.sample_rate, af.pts = clip.sample_rate, s
                for p in a.encode(af):
                    c.mux(p)
            for p in a.encode():
                c.mux(p)


def _ignore_sigint() -> None:
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _work(job: tuple[int, str, int, dict, str, bool]) -> tuple[int, dict[str, Any]]:
    """Render and write one clip; runs in worker processes."""
    seed, split, index, cfg_d, out_dir, write_video = job
    cfg = SynthConfig(**cfg_d)
    spec = sample_clip_spec(clip_rng(seed, split, index), split)
    rec = make_record(spec, seed=seed, index=index, cfg=cfg)
    if write_video:
        write_clip(Path(out_dir) / rec["video"], render_clip(spec, cfg), crf=cfg.crf)
    return index, rec


@dataclass
class WorldSummary:
    """What :func:`generate_world` wrote."""

    out_dir: str
    split: str
    num_clips: int
    seed: int
    seconds: float
    files: dict[str, str] = field(default_factory=dict)
    class_counts: dict[str, int] = field(default_factory=dict)
    caption_unique_fraction: float = 0.0  # among the first min(100, N) clips

    @property
    def clips_per_second(self) -> float:
        return self.num_clips / self.seconds if self.seconds > 0 else float("inf")


def caption_uniqueness(specs: list[ClipSpec]) -> float:
    """Fraction of clips whose caption attributes (:func:`caption_key`) occur once among ``specs``."""
    keys = [caption_key(s) for s in specs]
    cnt = Counter(keys)
    return sum(1 for k in keys if cnt[k] == 1) / max(len(keys), 1)


def _dump_json(obj: Any) -> str:
    return json.dumps(obj, ensure_ascii=False, indent=1) + "\n"


def generate_world(out_dir: str | os.PathLike, num_clips: int, seed: int = 0, split: str = "train",
                   cfg: SynthConfig | None = None, *, workers: int = 1, progress: bool = True,
                   write_videos: bool = True) -> WorldSummary:
    """Write ``num_clips`` clips of ``split`` under ``out_dir``:

    ``videos/<split>/NNNNNN.mp4`` and the annotations ``<split>.json`` (video-text, caption lists, labels,
    QA), ``<split>_cls.csv`` (``path,label`` with a header), ``<split>_cls.json`` (action-recognition
    retrieval format, caption = class name), ``<split>_mc.json`` (MSR-VTT-MC: 5 caption options and the
    answer), ``<split>.jsonl`` (full records with specs), ``<split>_meta.json`` (config and statistics) and
    ``classes.json``. ``workers > 1`` renders and encodes in that many processes (same output).
    """
    cfg = (cfg or SynthConfig()).validate()
    if split not in SPLITS:
        raise ConfigError("split", f"unknown split {split!r}; choose from {SPLITS}")
    if not isinstance(num_clips, int) or num_clips < 1:
        raise ConfigError("num_clips", f"must be a positive int, got {num_clips!r}")
    if not isinstance(workers, int) or workers < 1:
        raise ConfigError("workers", f"must be a positive int, got {workers!r}")
    out = Path(out_dir)
    (out / "videos" / split).mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()
    jobs = [(int(seed), split, i, asdict(cfg), str(out), write_videos) for i in range(num_clips)]
    records: list[dict[str, Any]] = [None] * num_clips  # type: ignore[list-item]
    from tqdm import tqdm

    bar = tqdm(total=num_clips, desc=f"synth {split}", unit="clip", disable=not progress)
    try:
        if workers == 1:
            for job in jobs:
                i, rec = _work(job)
                records[i] = rec
                bar.update(1)
        else:
            # workers ignore Ctrl-C: the parent alone stops the run (one message, no traceback per worker)
            with multiprocessing.get_context().Pool(workers, initializer=_ignore_sigint) as pool:
                for i, rec in pool.imap_unordered(_work, jobs, chunksize=8):
                    records[i] = rec
                    bar.update(1)
    finally:
        bar.close()

    files = {}
    vt = [{"video": r["video"], "caption": r["caption"], "label": r["label"], "label_name": r["label_name"],
           "appearance": r["appearance"], "qa": r["qa"]} for r in records]
    files["video_text"] = _write(out / f"{split}.json", _dump_json(vt))
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["path", "label"])
    for r in records:
        w.writerow([r["video"], r["label"]])
    files["classification"] = _write(out / f"{split}_cls.csv", buf.getvalue())
    files["classification_json"] = _write(out / f"{split}_cls.json", _dump_json(
        [{"video": r["video"], "caption": r["label_name"], "label": r["label"]} for r in records]))
    files["multiple_choice"] = _write(out / f"{split}_mc.json", _dump_json(
        [{"video": r["video"], "caption": r["mc"]["caption"], "answer": r["mc"]["answer"]} for r in records]))
    files["records"] = _write(out / f"{split}.jsonl", "".join(
        json.dumps(r, ensure_ascii=False) + "\n" for r in records))
    files["classes"] = _write(out / "classes.json", _dump_json(classes_table()))
    specs = [ClipSpec.from_dict(r["spec"]) for r in records[:100]]
    counts = Counter(r["label_name"] for r in records)
    uniq = caption_uniqueness(specs)
    meta = {
        "format_version": FORMAT_VERSION,
        "split": split,
        "num_clips": num_clips,
        "seed": int(seed),
        "config": asdict(cfg),
        "videos_written": write_videos,
        "heldout_pairs": [list(p) for p in HELDOUT_PAIRS],
        "heldout_rule": "train/val clips contain no object with a held-out (colour, shape) pair; every "
                        "heldout clip has an acting object with one",
        "class_counts": {c.name: counts.get(c.name, 0) for c in CLASSES},
        "caption_unique_fraction_first100": round(uniq, 4),
    }
    files["meta"] = _write(out / f"{split}_meta.json", _dump_json(meta))
    stale = [p for p in (out / "videos" / split).glob("*.mp4")
             if p.stem.isdigit() and int(p.stem) >= num_clips]
    if stale:
        logger.warning("%s: %d video(s) beyond index %d are left over from an earlier run (not listed in the "
                       "annotations)", out / "videos" / split, len(stale), num_clips - 1)
    seconds = time.perf_counter() - t_start
    return WorldSummary(out_dir=str(out), split=split, num_clips=num_clips, seed=int(seed), seconds=seconds,
                        files=files, class_counts=meta["class_counts"], caption_unique_fraction=uniq)


def _write(path: Path, text: str) -> str:
    write_text(path, text)
    return str(path)


def classes_table() -> list[dict[str, Any]]:
    """The rows of ``classes.json``: label, name, description (for zero-shot prompts), reverse class and
    the number of objects."""
    return [{"label": c.label, "name": c.name, "description": c.description,
             "reverse": c.reverse, "reverse_label": CLASS_BY_NAME[c.reverse].label, "objects": c.objects}
            for c in CLASSES]


def read_world(out_dir: str | os.PathLike, split: str) -> list[dict[str, Any]]:
    """Read ``<split>.jsonl`` back: full records, each with its ``spec`` parsed to a :class:`ClipSpec`
    under ``"spec_obj"``. Raises :class:`AnnotationError` naming the line of a broken record."""
    path = Path(out_dir) / f"{split}.jsonl"
    if not path.is_file():
        raise AnnotationError(str(path), 0, "file not found")
    out = []
    with open(path, encoding="utf-8") as f:
        for ln, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
                rec["spec_obj"] = ClipSpec.from_dict(rec["spec"])
            except (json.JSONDecodeError, KeyError, TypeError, ConfigError) as e:
                raise AnnotationError(str(path), ln, f"bad record: {e}") from None
            out.append(rec)
    return out


def image_relpath(split: str, index: int) -> str:
    return f"images/{split}/{index:06d}.png"


def encode_png(frame: np.ndarray) -> bytes:
    """Lossless PNG bytes of one uint8 ``[H, W, 3]`` RGB frame (PyAV's PNG encoder: no extra dependency)."""
    import av

    if frame.ndim != 3 or frame.shape[-1] != 3 or frame.dtype != np.uint8:
        raise ConfigError("frame", f"expected uint8 [H, W, 3], got {frame.dtype} {frame.shape}")
    buf = io.BytesIO()
    with av.open(buf, "w", format="image2pipe") as c:
        s = c.add_stream("png")
        s.width, s.height, s.pix_fmt = frame.shape[1], frame.shape[0], "rgb24"
        for pkt in s.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")):
            c.mux(pkt)
        for pkt in s.encode():
            c.mux(pkt)
    return buf.getvalue()


def write_frame_images(out_dir: str | os.PathLike, split: str = "train", *, frame: int | None = None) -> Path:
    """An image-text corpus made of single frames of the world's clips (for mixed image + video training).

    Reads ``<split>.jsonl`` (written by :func:`generate_world`), renders each clip again (exactly the frames
    its MP4 was encoded from) and writes frame ``frame`` (default: the middle one, ``T // 2``) losslessly
    as ``images/<split>/NNNNNN.png``, plus ``<split>_images.json``: the official image pre-training list
    ``[{"image": path, "caption": [the clip's captions], "label", "appearance", "source_video", "frame"}]``
    (the captions describe the whole clip; a frame shows its objects, colours and places, not the motion).
    Files that already hold the right bytes are left alone (a repeated call writes nothing). Returns the
    JSON path.
    """
    from ..utils.io import write_bytes

    out = Path(out_dir)
    records = read_world(out, split)
    ann = out / f"{split}_images.json"
    rows = []
    for r in records:
        t = int(r["num_frames"])
        k = t // 2 if frame is None else int(frame)
        if not 0 <= k < t:
            raise ConfigError("frame", f"frame {k} outside the clips' {t} frames")
        rel = image_relpath(split, int(r["index"]))
        rows.append({"image": rel, "caption": r["caption"], "label": r["label"], "appearance": r["appearance"],
                     "source_video": r["video"], "frame": k})
        dest = out / rel
        png = encode_png(render_frames(r["spec_obj"], t, int(r["size"]))[k])
        if not dest.is_file() or dest.read_bytes() != png:  # a world regenerated in place gets fresh images
            dest.parent.mkdir(parents=True, exist_ok=True)
            write_bytes(dest, png)
    text = _dump_json(rows)
    if not ann.is_file() or ann.read_text(encoding="utf-8") != text:
        write_text(ann, text)
    return ann


# ---------------------------------------------------------------------------------------------------------
# CLI
# ---------------------------------------------------------------------------------------------------------


def configure_parser(parser) -> None:
    parser.add_argument("--out", required=True, help="output folder (videos/ and annotation files)")
    parser.add_argument("--num", default="1000",
                        help="clips per split: one int, or a comma list matching --split (e.g. 2000,100)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--split", default="train",
                        help=f"split(s), comma separated, from {', '.join(SPLITS)} (heldout uses attribute "
                             "combinations never seen in train/val)")
    parser.add_argument("--size", type=int, default=64, help="frame side in pixels (even, 16..256)")
    parser.add_argument("--frames", type=int, default=8, help="frames per clip")
    parser.add_argument("--fps", type=float, default=4.0)
    parser.add_argument("--sample-rate", type=int, default=16000)
    parser.add_argument("--crf", type=int, default=18, help="x264 quality (lower = closer to the render)")
    parser.add_argument("--no-audio", action="store_true", help="write videos without an audio track")
    parser.add_argument("--annotations-only", action="store_true",
                        help="write the annotation files only (no videos), e.g. for on-the-fly rendering")
    parser.add_argument("--workers", type=int, default=1, help="processes for rendering and encoding")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def run(args) -> int:
    from ..utils.paths import output_dir

    splits = [s.strip() for s in str(args.split).split(",") if s.strip()]
    try:
        nums = [int(n) for n in str(args.num).split(",")]
    except ValueError:
        raise ConfigError("num", f"must be an int or a comma list of ints, got {args.num!r}") from None
    bad = [s for s in splits if s not in SPLITS]
    if bad or not splits:
        raise ConfigError("split", f"unknown split(s) {bad or args.split!r}; choose from {', '.join(SPLITS)}")
    if len(nums) == 1:
        nums = nums * len(splits)
    if len(nums) != len(splits):
        raise ConfigError("num", f"{len(nums)} counts for {len(splits)} splits")
    if args.workers is not None and args.workers < 1:
        raise ConfigError("workers", f"must be >= 1, got {args.workers}")
    cfg = SynthConfig(num_frames=args.frames, size=args.size, fps=args.fps, sample_rate=args.sample_rate,
                      audio=not args.no_audio, crf=args.crf).validate()
    output_dir(args.out, "out")
    for split, n in zip(splits, nums):
        s = generate_world(args.out, n, seed=args.seed, split=split, cfg=cfg, workers=args.workers,
                           progress=not args.quiet, write_videos=not args.annotations_only)
        print(json.dumps({"split": split, "num_clips": n, "seconds": round(s.seconds, 2),
                          "clips_per_second": round(s.clips_per_second, 1),
                          "caption_unique_fraction_first100": round(s.caption_unique_fraction, 4),
                          "files": s.files}))
    return 0
