"""The synthetic video world: vocabulary, clip specifications, sampling and time reversal (its language,
captions and QA, is :mod:`internvideo2.data.synth_language`).

A clip is described by a :class:`ClipSpec`, a JSON-serialisable, resolution-free description: objects
(shape, colour, size, initial pose) and timed events (move, bounce, spin, appear, disappear, grow,
shrink), plus nuisance factors (background, camera). Positions are in *scene units* (the frame side is 1,
``x`` to the right, ``y`` down) and times in *clip units* (0 = start, 1 = end), so one spec renders at any
size and frame count (:mod:`internvideo2.data.synth_render`).

Every animated quantity is ``initial + sum_e delta_e * progress_e(t)`` with a linear progress per event,
so a clip's exact time reversal is again a spec (:func:`reverse_spec`). Classes come in reversal pairs
(moving left / moving right, appearing / disappearing, "moves then spins" / "spins then moves", ...), and
the sampler draws the second class of a pair by reversing a draw of the first: the two classes then have
the same distribution of single frames, so no single frame can tell them apart (motion matters).

Held-out rule: six (colour, shape) pairs (:data:`HELDOUT_PAIRS`) never occur in ``train``/``val`` clips;
every ``heldout`` clip has one of them as an acting object.
"""
from __future__ import annotations

import copy
import math
from dataclasses import asdict, dataclass, field, fields
from typing import Any

import numpy as np

from ..errors import ConfigError

__all__ = [
    "COLOURS",
    "SHAPES",
    "SIZES",
    "HELDOUT_PAIRS",
    "TRAIN_PAIRS",
    "SPLITS",
    "ActionClass",
    "CLASSES",
    "CLASS_BY_NAME",
    "ObjectSpec",
    "EventSpec",
    "BackgroundSpec",
    "CameraSpec",
    "ClipSpec",
    "sample_clip_spec",
    "reverse_spec",
    "object_state",
    "is_heldout_combo",
]

# ---------------------------------------------------------------------------------------------------------
# vocabulary
# ---------------------------------------------------------------------------------------------------------

#: Object colours (RGB). Six hues 60 degrees apart (white instead of cyan) so that they survive 4:2:0
#: chroma subsampling and resizing to 56 px.
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (235, 45, 45),
    "yellow": (245, 215, 40),
    "green": (45, 200, 75),
    "blue": (45, 105, 255),
    "pink": (250, 95, 215),
    "white": (240, 240, 240),
}
SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "cross", "star")
#: Radius (scene units) of "small" and "large" objects; drawn with a +-6 % jitter.
SIZES: dict[str, float] = {"small": 0.095, "large": 0.15}
GROW_RADII = (0.075, 0.16)  # grow: from about the first to about the second

#: (colour, shape) pairs reserved for the held-out split: each colour once, every shape at least once, so
#: every colour and every shape is still seen in training, only never in these combinations.
HELDOUT_PAIRS: tuple[tuple[str, str], ...] = (
    ("red", "star"),
    ("yellow", "cross"),
    ("green", "triangle"),
    ("blue", "square"),
    ("pink", "circle"),
    ("white", "triangle"),
)
ALL_PAIRS: tuple[tuple[str, str], ...] = tuple((c, s) for c in COLOURS for s in SHAPES)
TRAIN_PAIRS: tuple[tuple[str, str], ...] = tuple(p for p in ALL_PAIRS if p not in HELDOUT_PAIRS)

#: train and val share a distribution (val is an i.i.d. check); heldout uses the reserved pairs.
SPLITS: tuple[str, ...] = ("train", "val", "heldout")

#: 3x3 grid of places for objects that stay in place (appear, spin, grow, ...): key -> (x, y, phrase)
PLACES: dict[str, tuple[float, float, str]] = {
    "top_left": (0.28, 0.28, "in the top left corner"),
    "top": (0.5, 0.28, "at the top"),
    "top_right": (0.72, 0.28, "in the top right corner"),
    "left": (0.28, 0.5, "on the left"),
    "center": (0.5, 0.5, "in the center"),
    "right": (0.72, 0.5, "on the right"),
    "bottom_left": (0.28, 0.72, "in the bottom left corner"),
    "bottom": (0.5, 0.72, "at the bottom"),
    "bottom_right": (0.72, 0.72, "in the bottom right corner"),
}
#: lanes of a straight move, across the direction of motion: key -> (coordinate, phrase)
LANES: dict[str, tuple[float, str]] = {
    "lane_top": (0.27, "along the top"),
    "lane_middle_h": (0.5, "through the middle"),
    "lane_bottom": (0.73, "along the bottom"),
    "lane_left": (0.27, "on the left side"),
    "lane_middle_v": (0.5, "in the middle"),
    "lane_right": (0.73, "on the right side"),
}
DIRECTIONS: dict[str, tuple[int, int]] = {"left": (-1, 0), "right": (1, 0), "up": (0, -1), "down": (0, 1)}
OPPOSITE = {"left": "right", "right": "left", "up": "down", "down": "up",
            "clockwise": "counterclockwise", "counterclockwise": "clockwise"}
SPEEDS: dict[str, tuple[float, float]] = {"slow": (0.22, 0.28), "fast": (0.44, 0.52)}  # move distance
BOUNCE_PATH: dict[str, tuple[float, float]] = {"slow": (0.30, 0.36), "fast": (0.50, 0.58)}


@dataclass(frozen=True)
class ActionClass:
    """One action class. ``name`` is short (used with prompt templates: "a video of {name}"),
    ``description`` a full phrase for zero-shot prompts; ``reverse`` names the class of the time-reversed
    clip (itself for bouncing and spinning); ``objects`` is 1 or 2."""

    label: int
    name: str
    description: str
    reverse: str
    objects: int


CLASSES: tuple[ActionClass, ...] = (
    ActionClass(0, "moving left", "an object moving to the left", "moving right", 1),
    ActionClass(1, "moving right", "an object moving to the right", "moving left", 1),
    ActionClass(2, "moving up", "an object moving up", "moving down", 1),
    ActionClass(3, "moving down", "an object moving down", "moving up", 1),
    ActionClass(4, "bouncing", "an object bouncing off a wall", "bouncing", 1),
    ActionClass(5, "spinning", "an object spinning in place", "spinning", 1),
    ActionClass(6, "appearing", "an object appearing", "disappearing", 1),
    ActionClass(7, "disappearing", "an object disappearing", "appearing", 1),
    ActionClass(8, "growing", "an object growing bigger", "shrinking", 1),
    ActionClass(9, "shrinking", "an object shrinking", "growing", 1),
    ActionClass(10, "moving then appearing", "one object moves, then another object appears",
                "disappearing then moving", 2),
    ActionClass(11, "disappearing then moving", "one object disappears, then another object moves",
                "moving then appearing", 2),
    ActionClass(12, "moving then spinning", "one object moves, then another object spins",
                "spinning then moving", 2),
    ActionClass(13, "spinning then moving", "one object spins, then another object moves",
                "moving then spinning", 2),
)
CLASS_BY_NAME: dict[str, ActionClass] = {c.name: c for c in CLASSES}

EVENT_KINDS = ("move", "bounce", "spin", "appear", "disappear", "grow", "shrink")
_REVERSE_KIND = {"appear": "disappear", "disappear": "appear", "grow": "shrink", "shrink": "grow"}

# ---------------------------------------------------------------------------------------------------------
# specs
# ---------------------------------------------------------------------------------------------------------


def _check(cond: bool, field_name: str, reason: str) -> None:
    if not cond:
        raise ConfigError(field_name, reason)


@dataclass
class ObjectSpec:
    """One object and its state at t = 0 (scene units; ``angle`` in degrees, clockwise on screen)."""

    shape: str
    colour: str
    size: str | None  # "small" | "large"; None when the size changes during the clip (grow/shrink)
    x: float
    y: float
    radius: float
    angle: float = 0.0
    alpha: float = 1.0  # 0 = not visible yet (it appears later)

    def validate(self, where: str) -> None:
        _check(self.shape in SHAPES, f"{where}.shape", f"unknown shape {self.shape!r}; choose from {SHAPES}")
        _check(self.colour in COLOURS, f"{where}.colour", f"unknown colour {self.colour!r}")
        _check(self.size in (None, "small", "large"), f"{where}.size", f"bad size {self.size!r}")
        _check(0.0 < self.radius < 0.5, f"{where}.radius", f"must be in (0, 0.5), got {self.radius}")
        _check(0.0 <= self.alpha <= 1.0, f"{where}.alpha", f"must be in [0, 1], got {self.alpha}")


@dataclass
class EventSpec:
    """A timed change of one object over clip time ``[t0, t1]`` with linear progress.

    ``move``: position += (dx, dy). ``bounce``: position += (dx, dy) over [t0, t_hit], then += (dx2, dy2)
    over [t_hit, t1] (it touches ``direction`` = the wall at t_hit). ``spin``: angle += dangle.
    ``appear``/``disappear``: alpha += dalpha (+1 / -1). ``grow``/``shrink``: radius += dradius.
    ``direction``, ``speed`` and ``place`` are the words the captions use.
    """

    kind: str
    obj: int
    t0: float
    t1: float
    dx: float = 0.0
    dy: float = 0.0
    dx2: float = 0.0
    dy2: float = 0.0
    t_hit: float | None = None
    dangle: float = 0.0
    dradius: float = 0.0
    dalpha: float = 0.0
    direction: str | None = None  # left/right/up/down (move), wall (bounce), clockwise/... (spin)
    speed: str | None = None  # slow / fast (move, bounce)
    place: str | None = None  # a PLACES key (static objects) or LANES key (moves)

    def validate(self, where: str, num_objects: int) -> None:
        _check(self.kind in EVENT_KINDS, f"{where}.kind", f"unknown event {self.kind!r}")
        _check(0 <= self.obj < num_objects, f"{where}.obj", f"no object {self.obj}")
        _check(0.0 <= self.t0 < self.t1 <= 1.0, f"{where}.t0/t1", f"need 0 <= t0 < t1 <= 1, got "
               f"{self.t0}, {self.t1}")
        if self.kind == "bounce":
            _check(self.t_hit is not None and self.t0 < self.t_hit < self.t1, f"{where}.t_hit",
                   "a bounce needs t0 < t_hit < t1")
        sign = {"appear": (self.dalpha, 1), "disappear": (self.dalpha, -1), "grow": (self.dradius, 1),
                "shrink": (self.dradius, -1)}.get(self.kind)
        if sign is not None:
            _check(sign[0] * sign[1] > 0, where, f"a {self.kind} event needs a "
                   f"{'positive' if sign[1] > 0 else 'negative'} delta")


@dataclass
class BackgroundSpec:
    """``plain``: ``colour``; ``gradient``: ``colour`` -> ``colour2`` along ``angle`` (degrees);
    ``texture``: ``colour`` plus luminance gratings ``waves`` = [[kx, ky, phase, amplitude], ...]
    (cycles per scene unit, radians, 8-bit levels)."""

    kind: str
    colour: list[int]
    colour2: list[int] | None = None
    angle: float = 0.0
    waves: list[list[float]] = field(default_factory=list)


@dataclass
class CameraSpec:
    """Scene offset seen by the camera at clip time t: ``(x0, y0) + t * (pan_x, pan_y) +
    sum_i (ax_i, ay_i) * sin(2 pi f_i t + phase_i)`` with ``shake`` = [[ax, ay, f, phase], ...]."""

    kind: str  # static | pan | jitter
    x0: float = 0.0
    y0: float = 0.0
    pan_x: float = 0.0
    pan_y: float = 0.0
    shake: list[list[float]] = field(default_factory=list)

    def offset(self, t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Camera offset at times ``t`` [T] -> (ox [T], oy [T])."""
        ox = self.x0 + t * self.pan_x
        oy = self.y0 + t * self.pan_y
        for ax, ay, f, ph in self.shake:
            s = np.sin(2.0 * math.pi * f * t + ph)
            ox = ox + ax * s
            oy = oy + ay * s
        return ox, oy


@dataclass
class ClipSpec:
    """Resolution-free description of one clip (JSON-serialisable with :meth:`to_dict`)."""

    label: int
    class_name: str
    split: str
    objects: list[ObjectSpec]
    events: list[EventSpec]  # sorted by t0
    background: BackgroundSpec
    camera: CameraSpec
    phrasing: int = 0  # seed for the choice of paraphrases and option order (kept by reverse_spec)
    version: int = 1

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ClipSpec:
        """Inverse of :meth:`to_dict`; raises :class:`ConfigError` naming the bad field."""
        if not isinstance(d, dict):
            raise ConfigError("spec", f"expected an object, got {type(d).__name__}")
        try:
            spec = cls(
                label=int(d["label"]),
                class_name=str(d["class_name"]),
                split=str(d["split"]),
                objects=[_from(ObjectSpec, o, f"spec.objects[{i}]") for i, o in enumerate(d["objects"])],
                events=[_from(EventSpec, e, f"spec.events[{i}]") for i, e in enumerate(d["events"])],
                background=_from(BackgroundSpec, d["background"], "spec.background"),
                camera=_from(CameraSpec, d["camera"], "spec.camera"),
                phrasing=int(d.get("phrasing", 0)),
                version=int(d.get("version", 1)),
            )
        except KeyError as e:
            raise ConfigError(f"spec.{e.args[0]}", "missing") from None
        spec.validate()
        return spec

    def validate(self) -> None:
        _check(self.class_name in CLASS_BY_NAME, "spec.class_name", f"unknown class {self.class_name!r}")
        _check(CLASS_BY_NAME[self.class_name].label == self.label, "spec.label",
               f"{self.label} does not match class {self.class_name!r}")
        _check(self.split in SPLITS, "spec.split", f"unknown split {self.split!r}; choose from {SPLITS}")
        _check(len(self.objects) >= 1, "spec.objects", "needs at least one object")
        for i, o in enumerate(self.objects):
            o.validate(f"spec.objects[{i}]")
        for i, e in enumerate(self.events):
            e.validate(f"spec.events[{i}]", len(self.objects))
        _check(self.background.kind in ("plain", "gradient", "texture"), "spec.background.kind",
               f"unknown background {self.background.kind!r}")


def _from(cls, d: Any, where: str):
    if not isinstance(d, dict):
        raise ConfigError(where, f"expected an object, got {type(d).__name__}")
    names = {f.name for f in fields(cls)}
    extra = set(d) - names
    if extra:
        raise ConfigError(where, f"unknown field(s) {sorted(extra)}")
    try:
        return cls(**d)
    except TypeError as e:
        raise ConfigError(where, str(e)) from None


# ---------------------------------------------------------------------------------------------------------
# state and time reversal
# ---------------------------------------------------------------------------------------------------------


def _progress(t: np.ndarray, t0: float, t1: float) -> np.ndarray:
    return np.clip((t - t0) / (t1 - t0), 0.0, 1.0)


def object_state(spec: ClipSpec, i: int, t: np.ndarray) -> dict[str, np.ndarray]:
    """State of object ``i`` at clip times ``t`` [T]: dict of x, y, radius, angle, alpha, each [T]."""
    o = spec.objects[i]
    t = np.asarray(t, dtype=np.float64)
    st = {k: np.full(t.shape, float(getattr(o, k))) for k in ("x", "y", "radius", "angle", "alpha")}
    for e in spec.events:
        if e.obj != i:
            continue
        if e.kind == "bounce":
            p1 = _progress(t, e.t0, e.t_hit)
            p2 = _progress(t, e.t_hit, e.t1)
            st["x"] = st["x"] + e.dx * p1 + e.dx2 * p2
            st["y"] = st["y"] + e.dy * p1 + e.dy2 * p2
            continue
        p = _progress(t, e.t0, e.t1)
        if e.kind == "move":
            st["x"] = st["x"] + e.dx * p
            st["y"] = st["y"] + e.dy * p
        elif e.kind == "spin":
            st["angle"] = st["angle"] + e.dangle * p
        elif e.kind in ("appear", "disappear"):
            st["alpha"] = st["alpha"] + e.dalpha * p
        elif e.kind in ("grow", "shrink"):
            st["radius"] = st["radius"] + e.dradius * p
    st["alpha"] = np.clip(st["alpha"], 0.0, 1.0)
    return st


def reverse_spec(spec: ClipSpec) -> ClipSpec:
    """The exact time reversal: rendering it gives the frames of ``spec`` in reverse order (up to float
    rounding), and its label is the reverse class (moving left <-> right, appear <-> disappear, ...)."""
    r = copy.deepcopy(spec)
    one = np.array([1.0])
    for i, o in enumerate(r.objects):
        end = object_state(spec, i, one)
        o.x, o.y = float(end["x"][0]), float(end["y"][0])
        o.radius, o.angle, o.alpha = float(end["radius"][0]), float(end["angle"][0]), float(end["alpha"][0])
    for e in r.events:
        e.t0, e.t1 = 1.0 - e.t1, 1.0 - e.t0
        if e.kind == "bounce":
            e.t_hit = 1.0 - e.t_hit
            e.dx, e.dy, e.dx2, e.dy2 = -e.dx2, -e.dy2, -e.dx, -e.dy
        else:
            e.dx, e.dy = -e.dx, -e.dy
        e.dangle, e.dradius, e.dalpha = -e.dangle, -e.dradius, -e.dalpha
        e.kind = _REVERSE_KIND.get(e.kind, e.kind)
        if e.kind in ("move", "spin") and e.direction is not None:
            e.direction = OPPOSITE[e.direction]
    r.events.sort(key=lambda e: e.t0)
    cam = r.camera
    cam.x0, cam.y0 = cam.x0 + cam.pan_x, cam.y0 + cam.pan_y
    cam.pan_x, cam.pan_y = -cam.pan_x, -cam.pan_y
    cam.shake = [[-ax, -ay, f, -(2.0 * math.pi * f) - ph] for ax, ay, f, ph in cam.shake]
    rc = CLASS_BY_NAME[CLASS_BY_NAME[spec.class_name].reverse]
    r.label, r.class_name = rc.label, rc.name
    return r


# ---------------------------------------------------------------------------------------------------------
# sampling
# ---------------------------------------------------------------------------------------------------------

# extent of each shape (in radii) towards left, right, up, down at angle 0; see synth_render.SHAPE_POLYS
_SUPPORT = {
    "circle": (1.0, 1.0, 1.0, 1.0),
    "square": (0.82, 0.82, 0.82, 0.82),
    "cross": (1.0, 1.0, 1.0, 1.0),
    "triangle": (1.04, 1.04, 1.2, 0.6),
    "star": (1.09, 1.09, 1.15, 0.93),
}
_MAX_EXTENT = 1.2  # any shape at any angle fits in 1.2 radii


def _u(rng: np.random.Generator, lo: float, hi: float) -> float:
    return round(float(rng.uniform(lo, hi)), 5)


def _pick(rng: np.random.Generator, seq):
    return seq[int(rng.integers(len(seq)))]


def _background(rng: np.random.Generator) -> BackgroundSpec:
    import colorsys

    def col(h, s, v):
        return [int(round(255 * c)) for c in colorsys.hsv_to_rgb(h % 1.0, s, v)]

    h, s, v = float(rng.uniform()), float(rng.uniform(0.0, 0.3)), float(rng.uniform(0.12, 0.34))
    kind = _pick(rng, ("plain", "gradient", "texture"))
    bg = BackgroundSpec(kind=kind, colour=col(h, s, v))
    if kind == "gradient":
        v2 = float(np.clip(v + rng.choice([-1, 1]) * rng.uniform(0.06, 0.12), 0.06, 0.42))
        bg.colour2 = col(h + rng.uniform(-0.1, 0.1), s, v2)
        bg.angle = _u(rng, 0, 360)
    elif kind == "texture":
        for _ in range(3):
            k, th = float(rng.uniform(2.0, 6.0)), float(rng.uniform(0, 2 * math.pi))
            bg.waves.append([round(k * math.cos(th), 4), round(k * math.sin(th), 4), _u(rng, 0, 2 * math.pi),
                             _u(rng, 3.0, 6.0)])
    return bg


def _camera(rng: np.random.Generator) -> CameraSpec:
    kind = _pick(rng, ("static", "pan", "jitter"))
    cam = CameraSpec(kind=kind)
    if kind == "pan":  # centred on zero so the frame edge moves by at most ~0.03 frame sides
        mag, th = float(rng.uniform(0.03, 0.06)), float(rng.uniform(0, 2 * math.pi))
        cam.pan_x, cam.pan_y = round(mag * math.cos(th), 5), round(mag * math.sin(th), 5)
        cam.x0, cam.y0 = -cam.pan_x / 2, -cam.pan_y / 2
    elif kind == "jitter":
        for _ in range(2):
            cam.shake.append([_u(rng, -0.01, 0.01), _u(rng, -0.01, 0.01), _u(rng, 1.5, 3.5),
                              _u(rng, 0, 2 * math.pi)])
    return cam


class _Pairs:
    """Draws (colour, shape) pairs for a split. In heldout, the first *primary* draw of a clip comes from
    HELDOUT_PAIRS and the others from all pairs; elsewhere everything comes from TRAIN_PAIRS."""

    def __init__(self, rng: np.random.Generator, split: str):
        self.rng, self.split = rng, split

    def draw(self, primary: bool, not_circle: bool = False, avoid: tuple[str, str] | None = None):
        pool = HELDOUT_PAIRS if (self.split == "heldout" and primary) else (
            ALL_PAIRS if self.split == "heldout" else TRAIN_PAIRS)
        cand = [p for p in pool if not (not_circle and p[1] == "circle")
                and not (avoid and (p[0] == avoid[0] or p[1] == avoid[1]))]
        return _pick(self.rng, cand)


def _size(rng: np.random.Generator) -> tuple[str, float]:
    name = _pick(rng, ("small", "large"))
    return name, round(SIZES[name] * float(rng.uniform(0.94, 1.06)), 5)


def _place(rng: np.random.Generator) -> tuple[str, float, float]:
    key = _pick(rng, tuple(PLACES))
    x, y, _ = PLACES[key]
    return key, round(x + float(rng.uniform(-0.03, 0.03)), 5), round(y + float(rng.uniform(-0.03, 0.03)), 5)


def _obj(pair, size: tuple[str | None, float], x: float, y: float, rng, alpha: float = 1.0) -> ObjectSpec:
    return ObjectSpec(shape=pair[1], colour=pair[0], size=size[0], x=x, y=y, radius=size[1],
                      angle=_u(rng, -12, 12), alpha=alpha)


def _straight_move(rng, o: ObjectSpec, direction: str, dist: float, t0: float, t1: float,
                   lane: bool, speed: str | None) -> EventSpec:
    """Place ``o`` so that a straight move of ``dist`` in ``direction`` stays inside the frame, and return
    the event. With ``lane`` the cross coordinate is one of three lanes (named in captions)."""
    sx, sy = DIRECTIONS[direction]
    sup = _SUPPORT[o.shape]
    place = None
    horizontal = sx != 0
    lo_m = (sup[0] if horizontal else sup[2]) * o.radius + 0.03
    hi_m = (sup[1] if horizontal else sup[3]) * o.radius + 0.03
    lo, hi = lo_m, 1.0 - hi_m - dist  # start interval when moving in the + direction
    start = float(rng.uniform(lo, hi))
    if (sx if horizontal else sy) < 0:
        start = start + dist
    if lane:
        keys = ("lane_top", "lane_middle_h", "lane_bottom") if horizontal else (
            "lane_left", "lane_middle_v", "lane_right")
        place = _pick(rng, keys)
        cross = LANES[place][0] + float(rng.uniform(-0.03, 0.03))
    else:
        m = _MAX_EXTENT * o.radius + 0.03
        cross = float(rng.uniform(m, 1.0 - m))
    if horizontal:
        o.x, o.y = round(start, 5), round(cross, 5)
    else:
        o.x, o.y = round(cross, 5), round(start, 5)
    return EventSpec(kind="move", obj=0, t0=t0, t1=t1, dx=round(sx * dist, 5), dy=round(sy * dist, 5),
                     direction=direction, speed=speed, place=place)


def _sample_move(rng, pairs: _Pairs, direction: str) -> tuple[list[ObjectSpec], list[EventSpec]]:
    o = _obj(pairs.draw(True), _size(rng), 0.5, 0.5, rng)
    speed = _pick(rng, ("slow", "fast"))
    ev = _straight_move(rng, o, direction, _u(rng, *SPEEDS[speed]), _u(rng, 0.0, 0.1), _u(rng, 0.9, 1.0),
                        lane=True, speed=speed)
    return [o], [ev]


def _sample_bounce(rng, pairs: _Pairs):
    o = _obj(pairs.draw(True), _size(rng), 0.5, 0.5, rng)
    o.angle = 0.0  # upright, so that the support below is exact and the object just touches the wall
    wall = _pick(rng, tuple(DIRECTIONS))
    speed = _pick(rng, ("slow", "fast"))
    path = float(rng.uniform(*BOUNCE_PATH[speed]))
    t0, t1 = _u(rng, 0.0, 0.08), _u(rng, 0.92, 1.0)
    h = float(rng.uniform(0.35, 0.65))
    t_hit = round(t0 + h * (t1 - t0), 5)
    d_in, d_out = path * h, path * (1.0 - h)
    sx, sy = DIRECTIONS[wall]
    sup = dict(zip(("left", "right", "up", "down"), _SUPPORT[o.shape]))[wall] * o.radius
    # the centre at contact touches the wall (scene edge)
    contact = sup if (sx < 0 or sy < 0) else 1.0 - sup
    m = _MAX_EXTENT * o.radius + 0.03
    cross = float(rng.uniform(m, 1.0 - m))
    if sx != 0:
        o.x, o.y = round(contact - sx * d_in, 5), round(cross, 5)
    else:
        o.x, o.y = round(cross, 5), round(contact - sy * d_in, 5)
    ev = EventSpec(kind="bounce", obj=0, t0=t0, t1=t1, t_hit=t_hit,
                   dx=round(sx * d_in, 5), dy=round(sy * d_in, 5),
                   dx2=round(-sx * d_out, 5), dy2=round(-sy * d_out, 5),
                   direction={"up": "top", "down": "bottom"}.get(wall, wall), speed=speed)
    return [o], [ev]


def _sample_spin(rng, pairs: _Pairs):
    key, x, y = _place(rng)
    o = _obj(pairs.draw(True, not_circle=True), _size(rng), x, y, rng)
    sign = _pick(rng, (1, -1))
    ev = EventSpec(kind="spin", obj=0, t0=_u(rng, 0.0, 0.1), t1=_u(rng, 0.9, 1.0),
                   dangle=round(sign * float(rng.uniform(80, 120)), 4),
                   direction="clockwise" if sign > 0 else "counterclockwise", place=key)
    return [o], [ev]


def _sample_appear(rng, pairs: _Pairs):
    key, x, y = _place(rng)
    o = _obj(pairs.draw(True), _size(rng), x, y, rng, alpha=0.0)
    ta = _u(rng, 0.3, 0.55)
    return [o], [EventSpec(kind="appear", obj=0, t0=ta, t1=round(ta + 0.12, 5), dalpha=1.0, place=key)]


def _sample_grow(rng, pairs: _Pairs):
    key, x, y = _place(rng)
    r0, r1 = _u(rng, GROW_RADII[0] - 0.005, GROW_RADII[0] + 0.005), _u(rng, GROW_RADII[1] - 0.005,
                                                                      GROW_RADII[1] + 0.005)
    o = _obj(pairs.draw(True), (None, r0), x, y, rng)
    ev = EventSpec(kind="grow", obj=0, t0=_u(rng, 0.0, 0.1), t1=_u(rng, 0.9, 1.0),
                   dradius=round(r1 - r0, 5), place=key)
    return [o], [ev]


def _segment_distance(px, py, ax, ay, bx, by) -> float:
    vx, vy = bx - ax, by - ay
    den = vx * vx + vy * vy
    s = 0.0 if den == 0 else min(1.0, max(0.0, ((px - ax) * vx + (py - ay) * vy) / den))
    return math.hypot(px - ax - s * vx, py - ay - s * vy)


def _sample_order(rng, pairs: _Pairs, second: str):
    """Object A moves during the first half, then object B ``second``s ("appear" or "spin")."""
    a_first = bool(rng.integers(2))  # in heldout: which object gets the reserved pair
    need_nc_b = second == "spin"
    if a_first:
        pa = pairs.draw(True)
        pb = pairs.draw(False, not_circle=need_nc_b, avoid=pa)
    else:
        pb = pairs.draw(True, not_circle=need_nc_b)
        pa = pairs.draw(False, avoid=pb)
    a = _obj(pa, _size(rng), 0.5, 0.5, rng)
    direction = _pick(rng, tuple(DIRECTIONS))
    ev_a = _straight_move(rng, a, direction, _u(rng, 0.3, 0.4), _u(rng, 0.02, 0.08), _u(rng, 0.42, 0.48),
                          lane=False, speed=None)
    b = _obj(pb, _size(rng), 0.5, 0.5, rng, alpha=0.0 if second == "appear" else 1.0)
    m = _MAX_EXTENT * b.radius + 0.03
    clearance = _MAX_EXTENT * (a.radius + b.radius) + 0.04
    for _ in range(200):  # rejection sampling; deterministic given rng
        bx, by = float(rng.uniform(m, 1.0 - m)), float(rng.uniform(m, 1.0 - m))
        if _segment_distance(bx, by, a.x, a.y, a.x + ev_a.dx, a.y + ev_a.dy) > clearance:
            break
    b.x, b.y = round(bx, 5), round(by, 5)
    if second == "appear":
        ta = _u(rng, 0.55, 0.7)
        ev_b = EventSpec(kind="appear", obj=1, t0=ta, t1=round(ta + 0.12, 5), dalpha=1.0)
    else:
        sign = _pick(rng, (1, -1))
        ev_b = EventSpec(kind="spin", obj=1, t0=_u(rng, 0.52, 0.58), t1=_u(rng, 0.92, 0.98),
                         dangle=round(sign * float(rng.uniform(60, 90)), 4),
                         direction="clockwise" if sign > 0 else "counterclockwise")
    return [a, b], [ev_a, ev_b]


# class -> (canonical class that is sampled, reverse the draw?)
_CANONICAL = {
    "moving left": ("moving left", False), "moving right": ("moving left", True),
    "moving up": ("moving up", False), "moving down": ("moving up", True),
    "bouncing": ("bouncing", False), "spinning": ("spinning", False),
    "appearing": ("appearing", False), "disappearing": ("appearing", True),
    "growing": ("growing", False), "shrinking": ("growing", True),
    "moving then appearing": ("moving then appearing", False),
    "disappearing then moving": ("moving then appearing", True),
    "moving then spinning": ("moving then spinning", False),
    "spinning then moving": ("moving then spinning", True),
}


def sample_clip_spec(rng: np.random.Generator, split: str = "train",
                     class_name: str | None = None) -> ClipSpec:
    """Draw one clip description. Classes are uniform (or ``class_name``). ``split`` decides which
    (colour, shape) pairs may occur (see :data:`HELDOUT_PAIRS`). Deterministic given the state of ``rng``."""
    if split not in SPLITS:
        raise ConfigError("split", f"unknown split {split!r}; choose from {SPLITS}")
    if class_name is None:
        cls = CLASSES[int(rng.integers(len(CLASSES)))]
    elif class_name in CLASS_BY_NAME:
        cls = CLASS_BY_NAME[class_name]
    else:
        raise ConfigError("class_name", f"unknown class {class_name!r}")
    canonical, reverse = _CANONICAL[cls.name]
    bg, cam = _background(rng), _camera(rng)
    pairs = _Pairs(rng, split)
    if canonical == "moving left":
        objs, evs = _sample_move(rng, pairs, "left")
    elif canonical == "moving up":
        objs, evs = _sample_move(rng, pairs, "up")
    elif canonical == "bouncing":
        objs, evs = _sample_bounce(rng, pairs)
    elif canonical == "spinning":
        objs, evs = _sample_spin(rng, pairs)
    elif canonical == "appearing":
        objs, evs = _sample_appear(rng, pairs)
    elif canonical == "growing":
        objs, evs = _sample_grow(rng, pairs)
    elif canonical == "moving then appearing":
        objs, evs = _sample_order(rng, pairs, "appear")
    else:
        objs, evs = _sample_order(rng, pairs, "spin")
    c = CLASS_BY_NAME[canonical]
    spec = ClipSpec(label=c.label, class_name=c.name, split=split, objects=objs, events=evs, background=bg,
                    camera=cam, phrasing=int(rng.integers(2**31 - 1)))
    if reverse:
        spec = reverse_spec(spec)
    return spec


def is_heldout_combo(spec: ClipSpec) -> bool:
    """True when any object of the clip has a reserved (colour, shape) pair."""
    return any((o.colour, o.shape) in HELDOUT_PAIRS for o in spec.objects)
