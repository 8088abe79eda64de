"""Rasterise a :class:`~internvideo2.data.synth_world.ClipSpec` into frames and an audio track, in numpy.

Frames: frame ``k`` of ``T`` shows clip time ``t_k = (k + 0.5) / T`` (symmetric under t -> 1 - t, so the
time-reversed spec renders the reversed frames). Pixel ``(i, j)`` of an ``S x S`` frame sees scene point
``((j + 0.5) / S, (i + 0.5) / S) + camera offset``. Objects are signed-distance shapes with one pixel of
analytic anti-aliasing, composited in list order with their opacity.

Audio (mono, float32 in [-1, 1]): each event plays a tone while it lasts; the pitch names the colour and
the timbre (harmonics) the shape. Appearing glides the pitch up, disappearing down, growing lowers it,
shrinking raises it, spinning adds a tremolo, and a bounce adds a click at the moment of contact. Silence
otherwise.
"""
from __future__ import annotations

import math

import numpy as np

from .synth_world import COLOURS, ClipSpec, object_state

__all__ = ["PITCH_HZ", "render_frames", "render_audio", "frame_times"]

#: tone frequency per colour (a C-major scale from C4)
PITCH_HZ: dict[str, float] = {"red": 261.63, "yellow": 329.63, "green": 392.0, "blue": 493.88,
                              "pink": 587.33, "white": 698.46}
#: harmonic amplitudes per shape
TIMBRE: dict[str, tuple[float, ...]] = {
    "circle": (1.0,),
    "square": (1.0, 0.0, 1 / 3, 0.0, 1 / 5),
    "triangle": (1.0, 0.0, 1 / 9, 0.0, 1 / 25),
    "cross": (1.0, 0.5),
    "star": (1.0, 0.4, 0.3, 0.2, 0.1),
}
TONE_AMPLITUDE = 0.3
CLICK_AMPLITUDE = 0.5


def _star(n: int = 5, outer: float = 1.15, inner: float = 0.5) -> np.ndarray:
    a = np.deg2rad(-90.0 + 180.0 / n * np.arange(2 * n))
    r = np.where(np.arange(2 * n) % 2 == 0, outer, inner)
    return np.stack([r * np.cos(a), r * np.sin(a)], axis=1)


#: polygon vertices in radii (y down); the triangle points up
SHAPE_POLYS: dict[str, np.ndarray] = {
    "triangle": 1.2 * np.stack([np.cos(np.deg2rad([-90.0, 30.0, 150.0])),
                                np.sin(np.deg2rad([-90.0, 30.0, 150.0]))], axis=1),
    "star": _star(),
}


def _box(px: np.ndarray, py: np.ndarray, hx: float, hy: float) -> np.ndarray:
    qx, qy = np.abs(px) - hx, np.abs(py) - hy
    return np.hypot(np.maximum(qx, 0.0), np.maximum(qy, 0.0)) + np.minimum(np.maximum(qx, qy), 0.0)


def _poly(px: np.ndarray, py: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Exact signed distance to a closed polygon (negative inside)."""
    d = (px - v[0, 0]) ** 2 + (py - v[0, 1]) ** 2
    s = np.ones_like(px)
    for i in range(len(v)):
        j = i - 1
        ex, ey = v[j, 0] - v[i, 0], v[j, 1] - v[i, 1]
        wx, wy = px - v[i, 0], py - v[i, 1]
        h = np.clip((wx * ex + wy * ey) / (ex * ex + ey * ey), 0.0, 1.0)
        bx, by = wx - ex * h, wy - ey * h
        d = np.minimum(d, bx * bx + by * by)
        c1, c2, c3 = py >= v[i, 1], py < v[j, 1], ex * wy > ey * wx
        s = np.where((c1 & c2 & c3) | (~c1 & ~c2 & ~c3), -s, s)
    return s * np.sqrt(d)


def shape_sdf(shape: str, px: np.ndarray, py: np.ndarray) -> np.ndarray:
    """Signed distance (in radii) of local point (px, py) (in radii) to ``shape``; negative inside."""
    if shape == "circle":
        return np.hypot(px, py) - 1.0
    if shape == "square":
        return _box(px, py, 0.82, 0.82)
    if shape == "cross":
        return np.minimum(_box(px, py, 1.0, 0.34), _box(px, py, 0.34, 1.0))
    return _poly(px, py, SHAPE_POLYS[shape])


def frame_times(num_frames: int) -> np.ndarray:
    """Clip time of each frame, [T]."""
    return (np.arange(num_frames, dtype=np.float64) + 0.5) / num_frames


def _background(spec: ClipSpec, ox: np.ndarray, oy: np.ndarray, size: int) -> np.ndarray:
    """[T, S, S, 3] float64 in 0..255."""
    bg = spec.background
    t = len(ox)
    u = (np.arange(size, dtype=np.float64) + 0.5) / size
    base = np.asarray(bg.colour, dtype=np.float64)
    if bg.kind == "plain":
        return np.broadcast_to(base, (t, size, size, 3)).copy()
    X = u[None, None, :] + ox[:, None, None]  # [T, 1, S]
    Y = u[None, :, None] + oy[:, None, None]  # [T, S, 1]
    if bg.kind == "gradient":
        a = math.radians(bg.angle)
        s = np.clip(0.5 + (X - 0.5) * math.cos(a) + (Y - 0.5) * math.sin(a), 0.0, 1.0)[..., None]
        c2 = np.asarray(bg.colour2, dtype=np.float64)
        return base * (1.0 - s) + c2 * s
    tex = np.zeros((t, size, size))
    for kx, ky, ph, amp in bg.waves:
        tex = tex + amp * np.sin(2.0 * math.pi * (kx * X + ky * Y) + ph)
    return base + tex[..., None]


def render_frames(spec: ClipSpec, num_frames: int, size: int) -> np.ndarray:
    """Frames uint8 [T, S, S, 3] (RGB)."""
    t = frame_times(num_frames)
    ox, oy = spec.camera.offset(t)
    img = _background(spec, ox, oy, size)
    for i, o in enumerate(spec.objects):
        st = object_state(spec, i, t)
        col = np.asarray(COLOURS[o.colour], dtype=np.float64)
        for k in range(num_frames):
            alpha = float(st["alpha"][k])
            r = float(st["radius"][k])
            if alpha <= 0.0 or r <= 0.0:
                continue
            # object centre in pixel coordinates, and a box that holds it (1.2 radii + AA margin)
            cj = (st["x"][k] - ox[k]) * size - 0.5
            ci = (st["y"][k] - oy[k]) * size - 0.5
            ext = 1.2 * r * size + 2.0
            j0, j1 = max(int(math.floor(cj - ext)), 0), min(int(math.ceil(cj + ext)) + 1, size)
            i0, i1 = max(int(math.floor(ci - ext)), 0), min(int(math.ceil(ci + ext)) + 1, size)
            if j0 >= j1 or i0 >= i1:
                continue
            dx = ((np.arange(j0, j1) + 0.5) / size + ox[k] - st["x"][k])[None, :]
            dy = ((np.arange(i0, i1) + 0.5) / size + oy[k] - st["y"][k])[:, None]
            th = math.radians(float(st["angle"][k]))
            c, s = math.cos(th), math.sin(th)
            px = (c * dx + s * dy) / r  # rotate by -angle: local coordinates, in radii
            py = (-s * dx + c * dy) / r
            sdf_px = shape_sdf(o.shape, px, py) * r * size
            a = (alpha * np.clip(0.5 - sdf_px, 0.0, 1.0))[..., None]
            region = img[k, i0:i1, j0:j1]
            img[k, i0:i1, j0:j1] = region * (1.0 - a) + col * a
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


def _tone(freq: np.ndarray, harmonics: tuple[float, ...], sample_rate: int) -> np.ndarray:
    phase = 2.0 * math.pi * np.cumsum(freq) / sample_rate
    w = np.zeros_like(phase)
    for h, amp in enumerate(harmonics, start=1):
        if amp:
            w += amp * np.sin(h * phase)
    return w / sum(abs(a) for a in harmonics)


def render_audio(spec: ClipSpec, duration: float, sample_rate: int) -> np.ndarray:
    """Mono audio float32 [round(duration * sample_rate)] in [-1, 1]."""
    n = int(round(duration * sample_rate))
    out = np.zeros(n, dtype=np.float64)
    fade = int(0.015 * sample_rate)
    for e in spec.events:
        o = spec.objects[e.obj]
        i0 = min(n, int(math.ceil(e.t0 * duration * sample_rate)))
        i1 = min(n, int(math.floor(e.t1 * duration * sample_rate)))
        m = i1 - i0
        if m <= 2:
            continue
        p = np.linspace(0.0, 1.0, m)
        f0 = PITCH_HZ[o.colour]
        glide = {"appear": 1.0 + 0.5 * p, "disappear": 1.5 - 0.5 * p, "grow": 1.0 - 0.25 * p,
                 "shrink": 0.75 + 0.25 * p}.get(e.kind)
        freq = f0 * glide if glide is not None else np.full(m, f0)
        env = np.ones(m)
        f = min(fade, m // 2)
        if f > 0:
            ramp = 0.5 - 0.5 * np.cos(np.pi * np.arange(f) / f)
            env[:f] *= ramp
            env[m - f:] *= ramp[::-1]
        if e.kind == "spin":
            env *= 0.75 + 0.25 * np.cos(2.0 * math.pi * 6.0 * np.arange(m) / sample_rate)
        out[i0:i1] += TONE_AMPLITUDE * env * _tone(freq, TIMBRE[o.shape], sample_rate)
        if e.kind == "bounce":
            h0 = int(round(e.t_hit * duration * sample_rate))
            k = np.arange(min(int(0.06 * sample_rate), max(n - h0, 0)))
            out[h0:h0 + len(k)] += CLICK_AMPLITUDE * np.exp(-k / (0.012 * sample_rate)) * np.sin(
                2.0 * math.pi * 1800.0 * k / sample_rate)
    return np.clip(out, -1.0, 1.0).astype(np.float32)
