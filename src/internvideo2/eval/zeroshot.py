"""Zero-shot evaluation from files: ``internvideo2 eval retrieval | zeroshot-cls | mc``.

Each reads an annotation file and a video folder, samples frames with the official test policy
(``middle``, the model's frame count), applies the official test transform (squash resize to the model's
size, its mean/std), and runs the protocols of :mod:`internvideo2.eval.retrieval`. The demo calls these
same functions, so ``internvideo2 eval`` on a saved checkpoint reproduces the demo's numbers exactly.
"""
from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path

import torch

from ..errors import ConfigError
from ..utils.io import write_text


def vision_cfg(model):
    """The VisionConfig of any model's vision backbone."""
    return model.vision_backbone.cfg


def load_videos(paths: Sequence[str], model, num_frames: int | None = None, batch_size: int = 64) -> torch.Tensor:
    """Decode ``paths`` with the official test sampling/transform for ``model``: ``[N, 3, T, S, S]``."""
    from ..data.transforms import build_eval_transform
    from ..data.video import read_clip

    v = vision_cfg(model)
    tf = build_eval_transform(v.img_size, mode="squash", mean=v.mean, std=v.std)
    T = num_frames or v.num_frames
    clips = []
    for p in paths:
        frames, _, _ = read_clip(p, T, "middle")
        clips.append(tf(frames).permute(1, 0, 2, 3))
    return torch.stack(clips)


def retrieval_from_files(model, annotation: str | Path, video_root: str | Path | None = None, *, num: int | None = None,
                         captions: str = "all", k_test: int = 128, use_itm: bool = True,
                         num_frames: int | None = None) -> dict:
    """Text-video retrieval on an official retrieval JSON (``{"video", "caption": str | [str]}``).

    ``captions="all"``: every caption is a query (official); ``"first"``: only each video's first caption
    (one query per video, MSR-VTT 1k-A style). ``num`` keeps the first videos.
    """
    from ..data.annotations import read_retrieval
    from .retrieval import evaluate_retrieval

    if captions not in ("all", "first"):
        raise ConfigError("captions", "must be 'all' or 'first'")
    ann = read_retrieval(annotation, video_root)
    n = len(ann.media) if num is None else min(int(num), len(ann.media))
    texts, txt2vid, vid2txt = [], [], [[] for _ in range(n)]
    for v in range(n):
        owned = ann.vid2txt[v] if isinstance(ann.vid2txt[v], list) else [ann.vid2txt[v]]
        for t in owned[:1] if captions == "first" else owned:
            vid2txt[v].append(len(texts))
            txt2vid.append(v)
            texts.append(ann.texts[t])
    videos = load_videos(ann.media[:n], model, num_frames)
    res = evaluate_retrieval(model, videos, texts, txt2vid, vid2txt, k_test=k_test, use_itm=use_itm)
    res.update(annotation=str(annotation), captions=captions)
    return res


def read_classes(classes: str | Path | Sequence[str], key: str = "description") -> list[str]:
    """Class names in label order: a list, a ``classes.json`` (a list of names, or the synthetic world's rows
    ``{"label", "name", "description"}``: ``key`` picks the natural-language ``description`` for zero-shot
    prompts or the ``name``) or a text file with one name per line. A missing, unreadable or empty list, or
    one with duplicate names, raises :class:`ConfigError` naming the file."""
    if not isinstance(classes, (str, Path)):
        names = list(classes)
        where = "classes"
    else:
        p = Path(classes)
        where = str(p)
        try:
            text = p.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise ConfigError("classes", f"{p}: no such file") from None
        except (OSError, UnicodeDecodeError) as e:
            raise ConfigError("classes", f"{p}: cannot be read ({e})") from None
        if p.suffix == ".json":
            try:
                data = json.loads(text)
            except json.JSONDecodeError as e:
                raise ConfigError("classes", f"{p}: invalid JSON ({e})") from None
            if not isinstance(data, list):
                raise ConfigError("classes", f"{p}: expected a JSON list of class names or rows")
            if data and all(isinstance(d, dict) and "label" in d for d in data):
                labels = [d["label"] for d in data]
                if any(isinstance(y, bool) or not isinstance(y, int) for y in labels) or \
                        sorted(labels) != list(range(len(labels))):
                    raise ConfigError("classes", f"{p}: the rows' 'label' values must be the integers "
                                      f"0..{len(data) - 1} once each")
                names = [d.get(key) or d.get("name") for d in sorted(data, key=lambda d: d["label"])]
            else:
                names = data
        else:
            names = [line.strip() for line in text.splitlines() if line.strip()]
    bad = next((n for n in names if not isinstance(n, str) or not n.strip()), 0)
    if bad != 0:
        raise ConfigError("classes", f"{where}: class names must be non-empty strings, got {bad!r:.60}")
    if not names:
        raise ConfigError("classes", f"{where}: the class list is empty")
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise ConfigError("classes", f"{where}: duplicate class names {dup[:5]}")
    return [str(n) for n in names]


def zeroshot_from_files(model, annotation: str | Path, video_root: str | Path | None, classes, *,
                        num: int | None = None, templates: Sequence[str] | None = None, mode: str = "softmax_mean",
                        num_frames: int | None = None) -> dict:
    """Zero-shot classification: ``annotation`` is a JSON list with ``video`` and an integer ``label``
    (the synthetic world's ``<split>.json``) or a ``path,label`` CSV; ``classes`` as :func:`read_classes`."""
    from ..data.annotations import read_classification, read_json_list, resolve_path
    from ..data.text import ACTION_PROMPTS
    from .retrieval import evaluate_zeroshot_classification

    names = read_classes(classes)
    annotation = Path(annotation)
    if annotation.suffix == ".json":
        rows = read_json_list(annotation)
        bad = [i for i, r in enumerate(rows) if not isinstance(r, dict) or not isinstance(r.get("label"), int)]
        if bad:
            raise ConfigError(str(annotation), f"row {bad[0]}: needs 'video' and an integer 'label'")
        root = video_root if video_root is not None else annotation.parent
        paths = [resolve_path(root, r["video"]) for r in rows]
        labels = [r["label"] for r in rows]
    else:
        recs = read_classification(annotation, video_root).records
        paths, labels = [r.path for r in recs], [r.label for r in recs]
    n = len(paths) if num is None else min(int(num), len(paths))
    if max(labels[:n]) >= len(names):
        raise ConfigError("classes", f"label {max(labels[:n])} but only {len(names)} class names")
    videos = load_videos(paths[:n], model, num_frames)
    res = evaluate_zeroshot_classification(model, videos, labels[:n], names, templates or ACTION_PROMPTS, mode=mode)
    res.pop("scores")
    res.update(annotation=str(annotation))
    return res


def mc_from_files(model, annotation: str | Path, video_root: str | Path | None = None, *, num: int | None = None,
                  num_frames: int | None = None, answer_format: str = "auto",
                  temperature: float | None = None) -> dict:
    """Multiple-choice retrieval on an MSR-VTT-MC, SSv2-MC or Charades-MC JSON (``read_multiple_choice``;
    ``answer_format="multi_hot"`` insists on Charades-MC's one 0/1 entry per option). Options go through
    ``pre_text`` like the official ``VidTxtRetMC*EvalDataset``; scores are ``softmax(cos / temp)`` per
    question; results as :func:`~internvideo2.eval.retrieval.evaluate_multiple_choice` (accuracy =
    first-answer accuracy, ``any_answer_accuracy``, ``map``)."""
    from ..data.annotations import read_multiple_choice
    from ..data.text import pre_text
    from .retrieval import evaluate_multiple_choice

    recs = read_multiple_choice(annotation, video_root, answer_format=answer_format).records
    n = len(recs) if num is None else min(int(num), len(recs))
    videos = load_videos([r.path for r in recs[:n]], model, num_frames)
    res = evaluate_multiple_choice(model, videos, [[pre_text(o) for o in r.options] for r in recs[:n]],
                                   [r.answer for r in recs[:n]], temperature=temperature)
    res.update(annotation=str(annotation))
    return res


# --------------------------------------------------------------------------------------------------------
# CLI (registered in internvideo2.eval.cli.TASKS)
# --------------------------------------------------------------------------------------------------------
def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, help="a saved model folder or checkpoint (internvideo2.load_model)")
    parser.add_argument("--data", required=True, help="annotation file")
    parser.add_argument("--videos", default=None, help="folder the annotation's video paths are relative to")
    parser.add_argument("--num", type=int, default=None, help="evaluate the first N items only")
    parser.add_argument("--frames", type=int, default=None, help="frames per video (default: the model's)")
    parser.add_argument("-o", "--out", default=None, help="write the results as JSON here")
    parser.add_argument("--tokenizer", default=None,
                        help="the text tower's tokenizer files when the checkpoint does not name them: a BERT "
                             "vocab.txt, the CLIP BPE (bpe_simple_vocab_16e6.txt.gz or a vocab.json + merges.txt "
                             "folder) or the LLaMA tokenizer folder")


def load_text_model(args: argparse.Namespace, task: str):
    """The model of ``--model`` for a task that embeds texts, checked before any video is decoded: it has a
    text tower and its tokenizer files are there."""
    from ..checkpoint.loader import load_model

    model = load_model(args.model, text_tokenizer=args.tokenizer)
    if not getattr(model, "has_text", False):
        raise ConfigError("model", f"{args.model}: a {getattr(model, 'model_type', '?')} model has no text tower; "
                                   f"{task} needs a video-text model (stage 2 or CLIP)")
    model.tokenizer  # noqa: B018  (builds it: missing tokenizer files fail here, naming them)
    return model


def _finish(res: dict, out: str | None) -> int:
    text = json.dumps(res, indent=2, default=float)
    print(text)
    if out:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        write_text(out, text)
    return 0


class RetrievalCLI:
    @staticmethod
    def configure_cli(parser):
        _common(parser)
        parser.add_argument("--captions", choices=["all", "first"], default="all")
        parser.add_argument("--k-test", type=int, default=128, help="ITM re-ranks each query's top k (official 128)")
        parser.add_argument("--no-itm", action="store_true", help="skip the ITM re-ranking scorer")

    @staticmethod
    def run_cli(args) -> int:
        model = load_text_model(args, "retrieval")
        res = retrieval_from_files(model, args.data, args.videos, num=args.num, captions=args.captions,
                                   k_test=args.k_test, use_itm=not args.no_itm, num_frames=args.frames)
        return _finish(res, args.out)


class ZeroShotCLI:
    @staticmethod
    def configure_cli(parser):
        _common(parser)
        parser.add_argument("--classes", required=True, help="class names: classes.json or one name per line")
        parser.add_argument("--mode", choices=["softmax_mean", "cosine_mean"], default="softmax_mean")

    @staticmethod
    def run_cli(args) -> int:
        model = load_text_model(args, "zero-shot classification")
        res = zeroshot_from_files(model, args.data, args.videos, args.classes, num=args.num, mode=args.mode,
                                  num_frames=args.frames)
        return _finish(res, args.out)


class MultipleChoiceCLI:
    @staticmethod
    def configure_cli(parser):
        _common(parser)
        parser.add_argument("--answers", dest="answer_format", choices=["auto", "index", "multi_hot"],
                            default="auto", help="answer layout: an index (list) or Charades-MC's multi-hot list "
                                                 "(one 0/1 per option); auto decides per row")
        parser.add_argument("--temperature", type=float, default=None,
                            help="softmax temperature of the option scores (default: the model's learned temp)")

    @staticmethod
    def run_cli(args) -> int:
        if args.temperature is not None and not args.temperature > 0:
            raise ConfigError("temperature", f"must be > 0, got {args.temperature}")
        return _finish(mc_from_files(load_text_model(args, "multiple choice"), args.data, args.videos, num=args.num,
                                     num_frames=args.frames, answer_format=args.answer_format,
                                     temperature=args.temperature), args.out)
