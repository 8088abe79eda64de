"""Caption pre-processing exactly as the official data code does it, and caption sampling helpers.

``pre_text`` follows ``multi_modality/dataset/utils.py::pre_text`` (spec §7.2, stage3 doc §2.6):
lower-case; delete ``, . ' ! ? " ( ) * # : ; ~``; replace ``-`` and ``/`` with a space and ``<person>`` with
``person``; replace runs of 2+ whitespace characters with one space; strip; optionally keep the first
``max_l`` words.
"""
from __future__ import annotations

import random
import re
from collections.abc import Sequence

from ..errors import ConfigError

__all__ = [
    "ACTION_PROMPTS",
    "action_texts",
    "caption_length",
    "filter_captions",
    "pre_text",
    "sample_caption",
]

_DELETE = re.compile(r"[,.'!?\"()*#:;~]")
_SPACES = re.compile(r"\s{2,}")

#: ``kinetics_templates_action_clip`` of ``dataset/text_prompt.py`` (16 prompts, in the official order),
#: used for zero-shot action recognition (each class name is formatted into every prompt).
ACTION_PROMPTS: tuple[str, ...] = (
    "a photo of action {}",
    "a picture of action {}",
    "Human action of {}",
    "{}, an action",
    "{} this is an action",
    "{}, a video of action",
    "Playing action of {}",
    "{}",
    "Playing a kind of action, {}",
    "Doing a kind of action, {}",
    "Look, the human is {}",
    "Can you recognize the action of {}?",
    "Video classification of {}",
    "A video of {}",
    "The man is {}",
    "The woman is {}",
)


def pre_text(text: str, max_l: int | None = None) -> str:
    """Official caption normalisation. ``"A Man's dog-walk: (fun)!"`` -> ``"a mans dog walk fun"``.

    Note the official quirks kept on purpose: a *single* tab or newline inside the text is not turned into a
    space (only runs of two or more whitespace characters are), and ``max_l`` counts words split on single
    spaces.
    """
    if not isinstance(text, str):
        raise ConfigError("caption", f"expected a string, got {type(text).__name__}")
    text = _DELETE.sub("", text.lower())
    text = text.replace("-", " ").replace("/", " ").replace("<person>", "person")
    text = _SPACES.sub(" ", text)
    text = text.rstrip("\n").strip(" ")
    if max_l:
        words = text.split(" ")
        if len(words) > max_l:
            text = " ".join(words[:max_l])
    return text


def caption_length(text: str) -> int:
    """Number of words of the pre-processed caption (the official ``len(pre_text(c).split())``)."""
    return len(pre_text(text).split())


def filter_captions(captions: Sequence[str], min_caption_length: int = 2) -> list[str]:
    """Keep the captions whose pre-processed form has at least ``min_caption_length`` words (official
    training filter, ``min_caption_length=2``). Returns the raw captions that pass, in order."""
    if min_caption_length <= 0:
        return list(captions)
    return [c for c in captions if caption_length(c) >= min_caption_length]


def sample_caption(captions: Sequence[str] | str, rng: random.Random | None = None) -> str:
    """One caption of several: uniform choice with ``rng`` (official ``caption_sample_type='uniform'``), the
    first one without ``rng`` (deterministic evaluation)."""
    if isinstance(captions, str):
        return captions
    if len(captions) == 0:
        raise ConfigError("captions", "no caption to sample from")
    if rng is None:
        return captions[0]
    return captions[rng.randrange(len(captions))]


def action_texts(class_names: Sequence[str], prompts: Sequence[str] = ACTION_PROMPTS) -> list[str]:
    """Zero-shot classification texts: for every class (outer loop) every prompt (inner loop), formatted
    and passed through :func:`pre_text`. Text ``c * len(prompts) + p`` is class ``c`` with prompt ``p``."""
    return [pre_text(p.format(c)) for c in class_names for p in prompts]
