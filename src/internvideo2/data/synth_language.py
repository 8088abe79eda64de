"""The synthetic world's language: the caption-relevant content of a clip (its *beats*), captions with
paraphrases, open QA and multiple-choice options. Everything here is a function of a :class:`ClipSpec`
(its ``phrasing`` seed picks the paraphrases), so annotations are reproducible from the spec alone."""
from __future__ import annotations

from typing import Any

import numpy as np

from .synth_world import (
    _REVERSE_KIND,
    COLOURS,
    DIRECTIONS,
    LANES,
    OPPOSITE,
    PLACES,
    SHAPES,
    ClipSpec,
    _pick,
)

__all__ = ["clip_beats", "caption_key", "make_captions", "make_qa", "make_mc_options"]


def clip_beats(spec: ClipSpec) -> list[dict[str, Any]]:
    """The caption-relevant content of a clip, one *beat* per event in time order: the acting object's
    size/colour/shape and the event's kind/direction/speed/place. Captions are a function of this."""
    beats = []
    for e in sorted(spec.events, key=lambda e: e.t0):
        o = spec.objects[e.obj]
        beats.append({"size": o.size, "colour": o.colour, "shape": o.shape, "kind": e.kind,
                      "direction": e.direction, "speed": e.speed, "place": e.place})
    return beats


def caption_key(spec: ClipSpec) -> tuple:
    """Hashable tuple of everything the captions say (class and beats): two clips with the same key have
    the same captions up to paraphrase choice."""
    return (spec.label,) + tuple(tuple(sorted(b.items(), key=lambda kv: kv[0])) for b in clip_beats(spec))


_MOVE_VERBS = ("moves", "slides", "travels", "glides")
_DIR_PHRASE = {"left": "to the left", "right": "to the right", "up": "up", "down": "down"}
_SPEED_ADV = {"slow": "slowly", "fast": "quickly"}
_APPEAR = ("appears", "shows up", "pops up")
_DISAPPEAR = ("disappears", "vanishes", "fades away")
_GROW = ("grows bigger", "gets larger", "grows")
_SHRINK = ("shrinks", "gets smaller", "shrinks down")
_SPIN = ("spins", "rotates", "turns")
_BOUNCE = (("bounces", "off"), ("bounces back", "from"), ("rebounds", "off"))


def _noun(b: dict, with_size: bool = True) -> str:
    parts = ([b["size"]] if (with_size and b["size"]) else []) + [b["colour"], b["shape"]]
    return " ".join(parts)


def _where(b: dict) -> str:
    if b["place"] in PLACES:
        return PLACES[b["place"]][2]
    if b["place"] in LANES:
        return LANES[b["place"]][1]
    return ""


def _vp(b: dict, v: int = 0, where: bool = True) -> str:
    """Verb phrase of a beat; ``v`` picks the synonym (0 = canonical)."""
    k = b["kind"]
    w = (" " + _where(b)) if (where and _where(b)) else ""
    if k == "move":
        adv = (" " + _SPEED_ADV[b["speed"]]) if b["speed"] else ""
        return f"{_MOVE_VERBS[v % 4]}{adv} {_DIR_PHRASE[b['direction']]}{w}"
    if k == "bounce":
        adv = (" " + _SPEED_ADV[b["speed"]]) if b["speed"] else ""
        verb, prep = _BOUNCE[v % 3]
        return f"{verb}{adv} {prep} the {b['direction']} wall"
    if k == "spin":
        return f"{_SPIN[v % 3]} {b['direction']}{w}"
    table = {"appear": _APPEAR, "disappear": _DISAPPEAR, "grow": _GROW, "shrink": _SHRINK}[k]
    return f"{table[v % 3]}{w}"


def _temporal_single(b: dict) -> str:
    n, k, w = _noun(b), b["kind"], _where(b)
    adv = _SPEED_ADV.get(b["speed"], "")
    if k == "move":
        start = {"left": "on the right", "right": "on the left", "up": "at the bottom", "down": "at the top"}
        d = b["direction"]
        return f"first the {n} is {start[d]}, then it moves {adv} {_DIR_PHRASE[d]} {w}"
    if k == "bounce":
        return f"first the {n} moves {adv} toward the {b['direction']} wall, then it bounces back"
    if k == "spin":
        return f"first the {n} {w} starts to turn {b['direction']}, then it keeps spinning"
    if k == "appear":
        return f"at first the scene is empty, then a {n} appears {w}"
    if k == "disappear":
        return f"first a {n} is visible {w}, then it disappears"
    nn = _noun(b, with_size=False)
    if k == "grow":
        return f"first the {nn} {w} is small, then it grows large"
    return f"first the {nn} {w} is large, then it shrinks until it is small"


def _caption_list(beats: list[dict], rng: np.random.Generator) -> list[str]:
    v = [int(x) for x in rng.integers(0, 12, size=4)]
    if len(beats) == 1:
        b = beats[0]
        n = _noun(b)
        w = _where(b)
        caps = [f"a {n} {_vp(b)}",
                f"the video shows a {n} that {_vp(b, 1 + v[0] % 2)}"]
        if w and b["kind"] != "move":
            caps.append(f"{w}, a {n} {_vp(b, v[1], where=False)}")
        else:
            caps.append(f"in this clip a {n} {_vp(b, v[1])}")
        caps.append(_temporal_single(b))
    else:
        a, b = beats
        na, nb = _noun(a), _noun(b)
        caps = [f"first the {na} {_vp(a)}, then the {nb} {_vp(b)}",
                f"the {na} {_vp(a, v[0])} and after that the {nb} {_vp(b, v[1])}",
                f"the {nb} {_vp(b, v[2])} after the {na} {_vp(a, v[3])}",
                f"a {na} {_vp(a, 1 + v[0] % 3)} before a {nb} {_vp(b, 1 + v[1] % 2)}"]
    return [" ".join(c.split()) for c in caps]


def make_captions(spec: ClipSpec) -> list[str]:
    """Four captions: a canonical one (first), two paraphrases and one with temporal phrasing
    ("first ..., then ..."). Every caption names every attribute in :func:`caption_key`."""
    return _caption_list(clip_beats(spec), np.random.default_rng([spec.phrasing, 1]))


def _canonical_caption(beats: list[dict]) -> str:
    return _caption_list(beats, np.random.default_rng(0))[0]


def _event_phrase(b: dict) -> str:
    """Short event phrase without speed or place, so that QA options share one surface form."""
    return _vp({**b, "speed": None}, 0, where=False)


_OTHER_EVENTS = [
    {"kind": "move", "direction": d, "speed": None, "place": None} for d in DIRECTIONS
] + [{"kind": k, "direction": None, "speed": None, "place": None} for k in ("appear", "disappear", "grow",
                                                                             "shrink")] + [
    {"kind": "spin", "direction": d, "speed": None, "place": None} for d in ("clockwise", "counterclockwise")
] + [{"kind": "bounce", "direction": w, "speed": None, "place": None} for w in ("left", "right", "top",
                                                                                 "bottom")]


def _reverse_beat(b: dict) -> dict:
    r = dict(b)
    r["kind"] = _REVERSE_KIND.get(b["kind"], b["kind"])
    if b["kind"] in ("move", "spin"):
        r["direction"] = OPPOSITE[b["direction"]]
    return r


def _options(rng, correct: str, distractors: list[str], n: int = 4) -> tuple[list[str], int]:
    seen, opts = {correct}, [correct]
    for d in distractors:
        if d not in seen:
            seen.add(d)
            opts.append(d)
        if len(opts) == n:
            break
    order = rng.permutation(len(opts))
    opts = [opts[i] for i in order]
    return opts, int(np.where(order == 0)[0][0])


def make_qa(spec: ClipSpec) -> list[dict[str, Any]]:
    """Multiple-choice questions (4 options each): ``{"type", "question", "options", "answer"}`` with
    types event (what does X do; the time-reversed event is always an option), direction (moves and
    bounces), order (two-object clips), colour, shape and count."""
    rng = np.random.default_rng([spec.phrasing, 2])
    beats = clip_beats(spec)
    qa: list[dict[str, Any]] = []

    def add(qtype, question, correct, distractors):
        opts, ans = _options(rng, correct, distractors)
        if len(opts) >= 2:
            qa.append({"type": qtype, "question": question, "options": opts, "answer": ans})

    for b in beats:
        nn = _noun(b, with_size=False)
        correct = _event_phrase(b)
        others = [_event_phrase({**b, **o}) for o in rng.permutation(np.array(_OTHER_EVENTS, dtype=object))]
        add("event", f"what does the {nn} do?", correct, [_event_phrase(_reverse_beat(b))] + others)
        if b["kind"] == "move":
            add("direction", f"in which direction does the {nn} move?", b["direction"],
                [d for d in ("left", "right", "up", "down")])
        elif b["kind"] == "bounce":
            add("direction", f"which wall does the {nn} bounce off?", f"the {b['direction']} wall",
                [f"the {w} wall" for w in ("left", "right", "top", "bottom")])
    first = beats[0]
    subject = f"the object that {_event_phrase(first)}"
    add("colour", f"what colour is {subject}?", first["colour"],
        [c for c in rng.permutation(list(COLOURS)) if c != first["colour"]])
    add("shape", f"what shape is the {first['colour']} object?", first["shape"],
        [s for s in rng.permutation(list(SHAPES)) if s != first["shape"]])
    words = ("one", "two", "three", "four")
    add("count", "how many objects can be seen in the video?", words[len(spec.objects) - 1],
        [w for w in words if w != words[len(spec.objects) - 1]])
    if len(beats) == 2:
        a, b = beats
        sa = f"the {_noun(a, False)} {_event_phrase(a)}"
        sb = f"the {_noun(b, False)} {_event_phrase(b)}"
        ra = f"the {_noun(a, False)} {_event_phrase(_reverse_beat(a))}"
        rb = f"the {_noun(b, False)} {_event_phrase(_reverse_beat(b))}"
        add("order", "what happens first?", sa, [sb, rb, ra])
        add("order", "what happens last?", sb, [sa, ra, rb])
    return qa


def make_mc_options(spec: ClipSpec, n: int = 5) -> tuple[list[str], int]:
    """MSR-VTT-MC style caption options: the canonical caption and ``n - 1`` hard negatives (time
    reversal, swapped order or swapped event, another colour, another shape). Returns (options, answer)."""
    rng = np.random.default_rng([spec.phrasing, 3])
    beats = clip_beats(spec)
    true = _canonical_caption(beats)
    negs: list[list[dict]] = [[_reverse_beat(b) for b in reversed(beats)]]  # the time-reversed clip
    if len(beats) == 2:
        negs.append([dict(beats[1]), dict(beats[0])])  # swapped order, same events
    else:
        b = beats[0]
        alt = [o for o in _OTHER_EVENTS if o["kind"] != b["kind"]]
        o = alt[int(rng.integers(len(alt)))]
        negs.append([{**b, **o, "speed": b["speed"] if o["kind"] in ("move", "bounce") else None,
                      "place": b["place"] if o["kind"] not in ("move", "bounce") else None}])
        if b["kind"] == "bounce":  # a bounce reversed is a bounce: use the opposite wall instead
            ow = {"left": "right", "right": "left", "top": "bottom", "bottom": "top"}[b["direction"]]
            negs[0] = [{**b, "direction": ow}]
    i = int(rng.integers(len(beats)))
    for _ in range(4):
        c = [dict(x) for x in beats]
        c[i]["colour"] = _pick(rng, [k for k in COLOURS if k not in (x["colour"] for x in beats)])
        negs.append(c)
        s = [dict(x) for x in beats]
        s[i]["shape"] = _pick(rng, [k for k in SHAPES if k not in (x["shape"] for x in beats)])
        negs.append(s)
    opts, ans = _options(rng, true, [_canonical_caption(nb) for nb in negs], n=n)
    return opts, ans
