"""Fine-tuning augmentations of the official single-modality code, in pure torch (spec §6.2).

- :class:`VideoRandAugment`: timm RandAugment driven by a config string (``rand-m7-n4-mstd0.5-inc1`` for
  fine-tuning, ``rand-m5-n2-mstd0.25-inc1`` for probing; :func:`parse_rand_augment`). As in the official
  ``datasets/rand_augment.py``, the ops, their on/off coin, magnitude noise and sign are drawn ONCE per clip
  and applied to every frame (statistics such as AutoContrast's range are still each frame's own, as PIL
  computes them per image).
- :class:`RandomErasing`: the official ``datasets/random_erasing.py`` on a normalised clip ``[T, C, H, W]``.
- :func:`add_augmentation`: puts both into a :class:`~internvideo2.data.transforms.VideoTransform` where the
  official ``_aug_frame`` has them (RandAugment on the decoded frames first, erasing after normalisation).

Frames: the ops take ``[T, C, H, W]`` (the layout inside ``VideoTransform``), uint8 in [0, 255] or float in
[0, 1], and return the same dtype. Levels (thresholds, fill) are on the 0..255 scale for both: float frames
are read as ``value * 255``. uint8 results are truncated/rounded as PIL does for 8-bit images; float results
are not quantised (except Equalize, whose histogram needs 256 levels). Geometric ops fill uncovered pixels
with :data:`RA_FILL` ``(128, 128, 128)`` (timm's ``_FILL``; float: 128/255) and sample as PIL's affine
filters do (bicubic with a = -1, neighbours clamped). On uint8 frames every op matches Pillow (which the
official code calls per frame; checked against 13.0) exactly, or within one grey level on a few pixels of the
geometric ops. Posterize to 0 bits gives black frames, as older Pillow did (Pillow >= 10 refuses it).

Randomness: every draw comes from the ``random.Random`` passed in (the dataset's
``derive_rng(seed, epoch, index, "transform")``); tensor noise uses a ``torch.Generator`` seeded from it, so
a seeded clip is augmented identically in every worker, rank and resume.
"""
from __future__ import annotations

import math
import random
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F

from ..errors import ConfigError
from .transforms import VideoTransform

__all__ = [
    "RA_FILL", "MAX_LEVEL", "RAND_TRANSFORMS", "RAND_INCREASING_TRANSFORMS", "RAND_CHOICE_WEIGHTS",
    "RandAugmentConfig", "parse_rand_augment", "AppliedOp", "VideoRandAugment", "RandomErasing",
    "add_augmentation",
    "auto_contrast", "equalize", "invert", "posterize", "solarize", "solarize_add", "adjust_color",
    "adjust_contrast", "adjust_brightness", "adjust_sharpness", "affine", "rotate", "shear_x", "shear_y",
    "translate_x_rel", "translate_y_rel",
]

RA_FILL = (128, 128, 128)  # timm _FILL: the official create_random_augment passes no img_mean
MAX_LEVEL = 10.0  # timm _MAX_LEVEL: magnitudes are clipped to [0, 10]

# timm's op lists (official datasets/rand_augment.py); `inc1` selects the increasing-severity variants
RAND_TRANSFORMS = (
    "AutoContrast", "Equalize", "Invert", "Rotate", "Posterize", "Solarize", "SolarizeAdd", "Color", "Contrast",
    "Brightness", "Sharpness", "ShearX", "ShearY", "TranslateXRel", "TranslateYRel",
)
RAND_INCREASING_TRANSFORMS = (
    "AutoContrast", "Equalize", "Invert", "Rotate", "PosterizeIncreasing", "SolarizeIncreasing", "SolarizeAdd",
    "ColorIncreasing", "ContrastIncreasing", "BrightnessIncreasing", "SharpnessIncreasing", "ShearX", "ShearY",
    "TranslateXRel", "TranslateYRel",
)
# timm _RAND_CHOICE_WEIGHTS_0 (`w0`), by position in the op list (timm looks them up by the plain names)
RAND_CHOICE_WEIGHTS = (0.025, 0.005, 0.0, 0.3, 0.0, 0.005, 0.005, 0.025, 0.005, 0.005, 0.025, 0.2, 0.2, 0.1, 0.1)

_GEOMETRIC = {"Rotate", "ShearX", "ShearY", "TranslateXRel", "TranslateYRel"}
_INTERPOLATIONS = ("bilinear", "bicubic", "nearest")


# ---------------------------------------------------------------------------------------------------------
# config string
# ---------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class RandAugmentConfig:
    """A parsed timm RandAugment string.

    Attributes:
        magnitude: ``m`` (0..10; timm's default 10 when absent).
        num_ops: ``n``, ops drawn per clip (with replacement; without when ``weight_idx`` is set).
        magnitude_std: ``mstd``, std of the Gaussian noise on the magnitude (drawn per op and clip).
        increasing: ``inc1``: the increasing-severity op list.
        weight_idx: ``w0``: timm's op-choice weights (the only set there is).
    """

    magnitude: int = 10
    num_ops: int = 2
    magnitude_std: float = 0.0
    increasing: bool = False
    weight_idx: int | None = None

    @property
    def ops(self) -> tuple[str, ...]:
        return RAND_INCREASING_TRANSFORMS if self.increasing else RAND_TRANSFORMS


_PART = re.compile(r"^([a-z]+)(\d.*)$")


def parse_rand_augment(spec: str, field: str = "rand_augment") -> RandAugmentConfig:
    """``'rand-m7-n4-mstd0.5-inc1'`` -> :class:`RandAugmentConfig` (timm ``rand_augment_transform`` syntax:
    ``rand`` then dash-separated ``m<int>``, ``n<int>``, ``mstd<float>``, ``inc1``, ``w0`` in any order).

    Stricter than timm, which skips what it does not know: an unknown or repeated part, a bad number, a
    magnitude outside [0, 10] raise :class:`ConfigError` naming ``field``. ``inc0`` is refused: timm tests
    ``bool('0')``, which is True, so it would silently select the increasing ops (omit ``inc`` instead)."""
    if not isinstance(spec, str) or not spec:
        raise ConfigError(field, f"expected a RandAugment string such as 'rand-m7-n4-mstd0.5-inc1', got {spec!r}")
    parts = spec.split("-")
    if parts[0] != "rand":
        raise ConfigError(field, f"{spec!r}: must start with 'rand' (only timm's RandAugment is supported)")
    kw: dict = {}
    seen: set[str] = set()
    for part in parts[1:]:
        m = _PART.match(part)
        key, val = (m.group(1), m.group(2)) if m else (part, "")
        if key not in ("m", "n", "mstd", "inc", "w") or not val:
            raise ConfigError(field, f"{spec!r}: unknown part {part!r}; known: m<int>, n<int>, mstd<float>, "
                                     "inc1, w0")
        if key in seen:
            raise ConfigError(field, f"{spec!r}: {key!r} given twice")
        seen.add(key)
        try:
            num = float(val) if key == "mstd" else int(val)
        except ValueError:
            raise ConfigError(field, f"{spec!r}: {part!r} is not {key} followed by a number") from None
        if key == "m":
            if not 0 <= num <= MAX_LEVEL:
                raise ConfigError(field, f"{spec!r}: magnitude {num} outside [0, {MAX_LEVEL:g}]")
            kw["magnitude"] = num
        elif key == "n":
            kw["num_ops"] = num
        elif key == "mstd":
            if not (math.isfinite(num) and num >= 0):
                raise ConfigError(field, f"{spec!r}: mstd must be a finite number >= 0, got {val}")
            kw["magnitude_std"] = num
        elif key == "inc":
            if num != 1:
                raise ConfigError(field, f"{spec!r}: only 'inc1' is meaningful (timm reads any 'inc<digits>' as "
                                         "true); omit it for the standard ops")
            kw["increasing"] = True
        else:
            if num != 0:
                raise ConfigError(field, f"{spec!r}: only weight set 'w0' exists")
            kw["weight_idx"] = 0
    cfg = RandAugmentConfig(**kw)
    if cfg.weight_idx is not None and cfg.num_ops > sum(w > 0 for w in RAND_CHOICE_WEIGHTS):
        raise ConfigError(field, f"{spec!r}: w0 draws without replacement from "
                                 f"{sum(w > 0 for w in RAND_CHOICE_WEIGHTS)} ops; n={cfg.num_ops} is too many")
    return cfg


# ---------------------------------------------------------------------------------------------------------
# the ops: [T, C, H, W] uint8 or float in [0, 1] -> the same dtype
# ---------------------------------------------------------------------------------------------------------
def _to255(x: torch.Tensor) -> tuple[torch.Tensor, bool]:
    """float32 values on the 0..255 scale, and whether the input was uint8 (then results are quantised)."""
    if not isinstance(x, torch.Tensor) or x.dim() != 4:
        shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise ConfigError("frames", f"expected a [T, C, H, W] tensor, got {shape}")
    if x.dtype == torch.uint8:
        return x.float(), True
    if x.is_floating_point():
        return x.float() * 255.0, False
    raise ConfigError("frames", f"expected uint8 or float frames, got {x.dtype}")


def _back(v: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    if like.dtype == torch.uint8:
        return v.clamp(0, 255).to(torch.uint8)  # callers made v integer-valued
    return (v.clamp(0, 255) / 255.0).to(like.dtype)


def _grey(v: torch.Tensor, quantised: bool) -> torch.Tensor:
    """``[T, 3, H, W]`` -> ``[T, 1, H, W]`` luma: PIL's ``convert('L')`` integer formula for 8-bit frames."""
    if v.shape[1] != 3:
        raise ConfigError("frames", f"colour ops need 3 channels, got {v.shape[1]}")
    if quantised:
        i = v.to(torch.int64)
        return ((i[:, 0:1] * 19595 + i[:, 1:2] * 38470 + i[:, 2:3] * 7471 + 0x8000) >> 16).float()
    return 0.299 * v[:, 0:1] + 0.587 * v[:, 1:2] + 0.114 * v[:, 2:3]


def _blend(degenerate: torch.Tensor, v: torch.Tensor, factor: float, quantised: bool) -> torch.Tensor:
    """PIL ``Image.blend(degenerate, image, factor)``: extrapolates for factor > 1, clips, truncates 8-bit."""
    out = (degenerate + float(factor) * (v - degenerate)).clamp_(0, 255)
    return out.floor_() if quantised else out


def invert(x: torch.Tensor) -> torch.Tensor:
    """``255 - x`` (float: ``1 - x``)."""
    v, _ = _to255(x)
    return _back(255.0 - v, x)


def posterize(x: torch.Tensor, bits: int) -> torch.Tensor:
    """Keep the ``bits`` most significant bits (uint8: ``x & ~(2**(8-bits) - 1)``); 8 or more: unchanged."""
    if bits >= 8:
        return x
    v, _ = _to255(x)
    q = float(2 ** (8 - max(int(bits), 0)))
    return _back(torch.floor(v / q) * q, x)


def solarize(x: torch.Tensor, threshold: float) -> torch.Tensor:
    """Invert the values ``>= threshold`` (0..255 scale; 256 leaves the frame unchanged)."""
    v, _ = _to255(x)
    return _back(torch.where(v >= threshold, 255.0 - v, v), x)


def solarize_add(x: torch.Tensor, add: float, threshold: float = 128) -> torch.Tensor:
    """Add ``add`` (capped at 255) to the values ``< threshold``."""
    v, _ = _to255(x)
    return _back(torch.where(v < threshold, (v + add).clamp(max=255.0), v), x)


def auto_contrast(x: torch.Tensor) -> torch.Tensor:
    """PIL ``ImageOps.autocontrast`` (cutoff 0): stretch each frame's channel from [min, max] to [0, 255];
    constant channels are left alone."""
    v, q = _to255(x)
    d = v.double()  # PIL evaluates ix * scale + offset in double precision, then int()
    lo = d.amin(dim=(-2, -1), keepdim=True)
    hi = d.amax(dim=(-2, -1), keepdim=True)
    flat = hi <= lo
    scale = 255.0 / torch.where(flat, torch.ones_like(hi), hi - lo)
    out = d * scale - lo * scale
    if q:
        out = out.trunc()
    out = torch.where(flat, d, out.clamp(0, 255))
    return _back(out.float(), x)


def equalize(x: torch.Tensor) -> torch.Tensor:
    """PIL ``ImageOps.equalize`` per frame and channel: ``lut[i] = (step // 2 + #pixels below i) // step``
    with ``step = (N - count of the highest occupied level) // 255``; a channel with ``step == 0`` is left
    alone. Float frames are rounded to 256 levels first."""
    v, _ = _to255(x)
    T, C, H, W = v.shape
    idx = v.round().clamp(0, 255).to(torch.int64).view(T * C, H * W)
    hist = torch.zeros(T * C, 256, dtype=torch.int64).scatter_add_(1, idx, torch.ones_like(idx))
    occupied = hist > 0
    top = 255 - occupied.flip(1).to(torch.int64).argmax(1, keepdim=True)  # highest occupied level
    step = (hist.sum(1, keepdim=True) - hist.gather(1, top)) // 255
    below = hist.cumsum(1) - hist
    lut = ((step // 2 + below) // step.clamp(min=1)).clamp(0, 255)
    lut = torch.where(step == 0, torch.arange(256).expand_as(lut), lut)
    return _back(lut.gather(1, idx).view(T, C, H, W).float(), x)


def adjust_color(x: torch.Tensor, factor: float) -> torch.Tensor:
    """PIL ``ImageEnhance.Color``: blend with the frame's greyscale (0: grey, 1: unchanged)."""
    v, q = _to255(x)
    return _back(_blend(_grey(v, q).expand_as(v), v, factor, q), x)


def adjust_contrast(x: torch.Tensor, factor: float) -> torch.Tensor:
    """PIL ``ImageEnhance.Contrast``: blend with a flat frame at the frame's mean luma (rounded for 8-bit)."""
    v, q = _to255(x)
    mean = _grey(v, q).mean(dim=(1, 2, 3), keepdim=True)
    if q:
        mean = torch.floor(mean + 0.5)
    return _back(_blend(mean.expand_as(v), v, factor, q), x)


def adjust_brightness(x: torch.Tensor, factor: float) -> torch.Tensor:
    """PIL ``ImageEnhance.Brightness``: blend with black, i.e. scale by ``factor`` and clip."""
    v, q = _to255(x)
    return _back(_blend(torch.zeros_like(v), v, factor, q), x)


def adjust_sharpness(x: torch.Tensor, factor: float) -> torch.Tensor:
    """PIL ``ImageEnhance.Sharpness``: blend with the frame under PIL's SMOOTH filter (3x3 kernel
    ``[[1,1,1],[1,5,1],[1,1,1]] / 13``; the one-pixel border is not filtered)."""
    v, q = _to255(x)
    T, C, H, W = v.shape
    if H < 3 or W < 3:
        return x
    k = torch.ones(3, 3)
    k[1, 1] = 5.0
    k = (k / 13.0).view(1, 1, 3, 3).expand(C, 1, 3, 3)
    inner = F.conv2d(v, k, groups=C)
    if q:
        inner = inner.round()
    smooth = v.clone()
    smooth[..., 1:-1, 1:-1] = inner.clamp(0, 255)
    return _back(_blend(smooth, v, factor, q), x)


def _cubic(v1, v2, v3, v4, d):
    """PIL's affine BICUBIC (Geometry.c; cubic convolution with a = -1) in its Horner form, which is exact
    on flat neighbourhoods (the differences vanish), so 8-bit truncation agrees with PIL there."""
    return v2 + d * ((v3 - v1) + d * ((2 * (v1 - v2) + v3 - v4) + d * (v2 - v1 + v4 - v3)))


def _sample(v: torch.Tensor, u: torch.Tensor, w: torch.Tensor, interpolation: str) -> torch.Tensor:
    """Read ``v [T, C, H, W]`` at source points ``(u, w)`` (``[H', W']`` float64, pixel-edge coordinates)
    as PIL's Geometry.c does: neighbours clamped to the frame, rows first, then the column."""
    T, C, H, W = v.shape
    # pixels as rows of T*C values: each gather reads contiguous memory
    cl = v.permute(2, 3, 0, 1).reshape(H * W, T * C)
    if interpolation == "nearest":
        xi, yi = u.floor().long().clamp(0, W - 1), w.floor().long().clamp(0, H - 1)
        out = cl[(yi * W + xi).flatten()]
    else:
        xs, ys = (u - 0.5).flatten(), (w - 0.5).flatten()
        x0, y0 = xs.floor(), ys.floor()
        dx, dy = (xs - x0).unsqueeze(1).to(v.dtype), (ys - y0).unsqueeze(1).to(v.dtype)
        x0, y0 = x0.long(), y0.long()
        taps = (0, 1) if interpolation == "bilinear" else (-1, 0, 1, 2)
        cols = [(x0 + k).clamp(0, W - 1) for k in taps]
        lines = []
        for ky in taps:
            row = (y0 + ky).clamp(0, H - 1) * W
            p = [cl[row + cx] for cx in cols]
            lines.append(p[0] + (p[1] - p[0]) * dx if len(p) == 2 else _cubic(*p, dx))
        out = lines[0] + (lines[1] - lines[0]) * dy if len(lines) == 2 else _cubic(*lines, dy)
    return out.view(*u.shape, T, C).permute(2, 3, 0, 1)


def affine(x: torch.Tensor, matrix: Sequence[float], interpolation: str = "bicubic",
           fill: float | Sequence[float] = RA_FILL) -> torch.Tensor:
    """PIL ``Image.transform(size, AFFINE, matrix)``: output pixel ``(x, y)`` (centre ``(x + .5, y + .5)``)
    reads the input at ``(a x + b y + c, d x + e y + f)`` for ``matrix = (a, b, c, d, e, f)``; points outside
    the input take ``fill`` (0..255 scale, one value or one per channel). Sampling follows PIL's affine
    filters (bicubic: a = -1 kernel; neighbours clamped to the frame; 8-bit results clipped and truncated).
    The identity returns ``x``."""
    a, b, c, d, e, f = (float(m) for m in matrix)
    if (a, b, c, d, e, f) == (1.0, 0.0, 0.0, 0.0, 1.0, 0.0):
        return x
    if interpolation not in _INTERPOLATIONS:
        raise ConfigError("interpolation", f"unknown {interpolation!r}; use one of {list(_INTERPOLATIONS)}")
    v, q = _to255(x)
    T, C, H, W = v.shape
    ys = torch.arange(H, dtype=torch.float64) + 0.5
    xs = torch.arange(W, dtype=torch.float64) + 0.5
    yy, xx = torch.meshgrid(ys, xs, indexing="ij")
    u, w = a * xx + b * yy + c, d * xx + e * yy + f  # source points, pixel-edge coordinates
    inside = (u >= 0) & (u < W) & (w >= 0) & (w < H)
    out = _sample(v, u, w, interpolation).clamp(0, 255)
    if q:
        out = out.trunc_()  # PIL: (UINT8) of the clipped value
    fills = torch.as_tensor(fill, dtype=torch.float32).flatten()
    if fills.numel() not in (1, C):
        raise ConfigError("fill", f"{fills.numel()} fill values for {C} channels")
    out = torch.where(inside, out, fills.view(1, -1, 1, 1))
    return _back(out, x)


def rotate(x: torch.Tensor, degrees: float, interpolation: str = "bicubic",
           fill: float | Sequence[float] = RA_FILL) -> torch.Tensor:
    """PIL ``Image.rotate(degrees)``: counter-clockwise about the frame centre ``(W/2, H/2)``, same size."""
    degrees = float(degrees) % 360.0
    if degrees == 0.0:
        return x
    H, W = x.shape[-2:]
    ang = -math.radians(degrees)
    a, b = round(math.cos(ang), 15), round(math.sin(ang), 15)
    d, e = round(-math.sin(ang), 15), round(math.cos(ang), 15)
    cx, cy = W / 2.0, H / 2.0
    c = a * -cx + b * -cy + cx
    f = d * -cx + e * -cy + cy
    return affine(x, (a, b, c, d, e, f), interpolation, fill)


def shear_x(x: torch.Tensor, factor: float, interpolation: str = "bicubic",
            fill: float | Sequence[float] = RA_FILL) -> torch.Tensor:
    """Output ``(x, y)`` reads input ``(x + factor * y, y)``."""
    return affine(x, (1, factor, 0, 0, 1, 0), interpolation, fill)


def shear_y(x: torch.Tensor, factor: float, interpolation: str = "bicubic",
            fill: float | Sequence[float] = RA_FILL) -> torch.Tensor:
    """Output ``(x, y)`` reads input ``(x, factor * x + y)``."""
    return affine(x, (1, 0, 0, factor, 1, 0), interpolation, fill)


def translate_x_rel(x: torch.Tensor, pct: float, interpolation: str = "bicubic",
                    fill: float | Sequence[float] = RA_FILL) -> torch.Tensor:
    """Output ``(x, y)`` reads input ``(x + pct * W, y)`` (positive ``pct`` moves the content left)."""
    return affine(x, (1, 0, pct * x.shape[-1], 0, 1, 0), interpolation, fill)


def translate_y_rel(x: torch.Tensor, pct: float, interpolation: str = "bicubic",
                    fill: float | Sequence[float] = RA_FILL) -> torch.Tensor:
    """Output ``(x, y)`` reads input ``(x, y + pct * H)`` (positive ``pct`` moves the content up)."""
    return affine(x, (1, 0, 0, 0, 1, pct * x.shape[-2]), interpolation, fill)


# ---------------------------------------------------------------------------------------------------------
# magnitude -> op arguments (timm *_level_to_arg); `rng` draws the random sign where timm does
# ---------------------------------------------------------------------------------------------------------
def _negate(v: float, rng) -> float:
    return -v if rng.random() > 0.5 else v


def _signed(scale: float):
    return lambda level, rng: (_negate(level / MAX_LEVEL * scale, rng),)


def _enhance(level, rng):
    return (level / MAX_LEVEL * 1.8 + 0.1,)


def _enhance_increasing(level, rng):
    return (1.0 + _negate(level / MAX_LEVEL * 0.9, rng),)


def _posterize(level, rng):
    return (int(level / MAX_LEVEL * 4),)


def _solarize(level, rng):
    return (int(level / MAX_LEVEL * 256),)


_LEVELS: dict[str, Callable | None] = {
    "AutoContrast": None, "Equalize": None, "Invert": None,
    "Rotate": _signed(30.0),  # degrees in [-30, 30]
    "Posterize": _posterize,  # bits kept in [0, 4]
    "PosterizeIncreasing": lambda level, rng: (4 - _posterize(level, rng)[0],),
    "Solarize": _solarize,  # threshold in [0, 256]
    "SolarizeIncreasing": lambda level, rng: (256 - _solarize(level, rng)[0],),
    "SolarizeAdd": lambda level, rng: (int(level / MAX_LEVEL * 110),),
    "Color": _enhance, "Contrast": _enhance, "Brightness": _enhance, "Sharpness": _enhance,  # [0.1, 1.9]
    "ColorIncreasing": _enhance_increasing, "ContrastIncreasing": _enhance_increasing,
    "BrightnessIncreasing": _enhance_increasing, "SharpnessIncreasing": _enhance_increasing,
    "ShearX": _signed(0.3), "ShearY": _signed(0.3),
    "TranslateXRel": _signed(0.45), "TranslateYRel": _signed(0.45),  # timm translate_pct 0.45
}

_FUNCS: dict[str, Callable] = {
    "AutoContrast": auto_contrast, "Equalize": equalize, "Invert": invert, "Rotate": rotate,
    "Posterize": posterize, "PosterizeIncreasing": posterize, "Solarize": solarize,
    "SolarizeIncreasing": solarize, "SolarizeAdd": solarize_add,
    "Color": adjust_color, "ColorIncreasing": adjust_color, "Contrast": adjust_contrast,
    "ContrastIncreasing": adjust_contrast, "Brightness": adjust_brightness,
    "BrightnessIncreasing": adjust_brightness, "Sharpness": adjust_sharpness,
    "SharpnessIncreasing": adjust_sharpness, "ShearX": shear_x, "ShearY": shear_y,
    "TranslateXRel": translate_x_rel, "TranslateYRel": translate_y_rel,
}


@dataclass(frozen=True)
class AppliedOp:
    """One op of a clip's draw: its timm name, arguments and (geometric ops) interpolation."""

    name: str
    args: tuple
    interpolation: str | None = None

    def __call__(self, x: torch.Tensor, fill: Sequence[float] = RA_FILL) -> torch.Tensor:
        fn = _FUNCS[self.name]
        if self.name in _GEOMETRIC:
            return fn(x, *self.args, interpolation=self.interpolation or "bicubic", fill=fill)
        return fn(x, *self.args)


class VideoRandAugment:
    """Official video RandAugment: ``__call__(x [T, C, H, W] uint8 or float in [0, 1], rng) -> same``.

    One draw per clip (:meth:`sample`): ``n`` ops uniformly with replacement (weighted, without replacement
    with ``w0``); each applies with probability ``prob`` (0.5); its magnitude is ``m`` plus Gaussian noise of
    std ``mstd``, clipped to [0, 10]; signed ops get a random sign. The same ops and arguments then apply to
    every frame. ``interpolation`` (official ``--train_interpolation``, default bicubic) is used by the
    geometric ops; ``'random'`` picks bilinear or bicubic per op and clip (timm: per frame).
    """

    def __init__(self, config: str | RandAugmentConfig, *, interpolation: Literal["bilinear", "bicubic", "random"]
                 = "bicubic", fill: Sequence[float] = RA_FILL, prob: float = 0.5):
        self.config = parse_rand_augment(config) if isinstance(config, str) else config
        if interpolation not in ("bilinear", "bicubic", "random"):
            raise ConfigError("interpolation", f"must be 'bilinear', 'bicubic' or 'random', got {interpolation!r}")
        self.spec = config if isinstance(config, str) else None
        self.interpolation = interpolation
        self.fill = tuple(float(v) for v in fill)
        self.prob = float(prob)

    def sample(self, rng: random.Random | None = None) -> list[AppliedOp]:
        """The clip's ops (those whose coin came up), in order. Draw order follows timm: the op choice, then
        per op its coin, magnitude noise and sign."""
        r = random if rng is None else rng
        cfg = self.config
        names = cfg.ops
        if cfg.weight_idx is None:
            chosen = [names[r.randrange(len(names))] for _ in range(cfg.num_ops)]
        else:
            left = [(n, w) for n, w in zip(names, RAND_CHOICE_WEIGHTS) if w > 0]
            chosen = []
            for _ in range(cfg.num_ops):  # weighted, without replacement (numpy choice(replace=False, p=...))
                i = r.choices(range(len(left)), weights=[w for _, w in left])[0]
                chosen.append(left.pop(i)[0])
        plan = []
        for name in chosen:
            if self.prob < 1.0 and r.random() > self.prob:
                continue
            magnitude = float(cfg.magnitude)
            if cfg.magnitude_std > 0:
                magnitude = r.gauss(magnitude, cfg.magnitude_std)
            magnitude = min(MAX_LEVEL, max(0.0, magnitude))
            level = _LEVELS[name]
            args = level(magnitude, r) if level is not None else ()
            interp = None
            if name in _GEOMETRIC:
                interp = r.choice(("bilinear", "bicubic")) if self.interpolation == "random" else self.interpolation
            plan.append(AppliedOp(name, tuple(args), interp))
        return plan

    def apply(self, x: torch.Tensor, plan: Sequence[AppliedOp]) -> torch.Tensor:
        """Apply a drawn plan to every frame of ``x``."""
        for op in plan:
            x = op(x, self.fill)
        return x

    def __call__(self, x: torch.Tensor, rng: random.Random | None = None) -> torch.Tensor:
        return self.apply(x, self.sample(rng))

    def __repr__(self) -> str:
        return f"VideoRandAugment({self.spec or self.config}, interpolation={self.interpolation})"


# ---------------------------------------------------------------------------------------------------------
# random erasing
# ---------------------------------------------------------------------------------------------------------
@dataclass
class RandomErasing:
    """Official ``RandomErasing`` (timm's, with the video ``cube`` variant) on a normalised clip
    ``[T, C, H, W]`` float -> a new tensor (the input is not modified).

    With probability ``probability`` it erases ``count`` boxes (``min_count``..``max_count``; official
    ``--recount 1``) of area ``uniform(min_area, max_area) * H * W / count`` and aspect (h/w)
    log-uniform in ``[min_aspect, max_aspect or 1/min_aspect]`` (official defaults 0.02, 1/3, 0.3), retried
    until the box fits strictly inside the frame. ``mode``: ``pixel`` = per-pixel N(0, 1) noise (official
    ``--remode pixel``), ``rand`` = one N(0, 1) colour per channel, ``const`` = zeros.

    ``cube=True`` is what the official fine-tuning datasets get (RandomErasing's default, which they do not
    override): one coin and one box for the whole clip (up to 100 tries), fresh noise in every frame.
    ``cube=False`` (timm's per-image behaviour): every frame has its own coin and box (up to 10 tries).
    """

    probability: float = 0.25
    mode: Literal["const", "rand", "pixel"] = "pixel"
    min_area: float = 0.02
    max_area: float = 1 / 3
    min_aspect: float = 0.3
    max_aspect: float | None = None
    min_count: int = 1
    max_count: int | None = None
    cube: bool = True

    def __post_init__(self):
        if not 0.0 <= self.probability <= 1.0:
            raise ConfigError("probability", f"must be in [0, 1], got {self.probability}")
        if self.mode not in ("const", "rand", "pixel"):
            raise ConfigError("mode", f"must be 'const', 'rand' or 'pixel', got {self.mode!r}")
        if not 0.0 < self.min_area <= self.max_area <= 1.0:
            raise ConfigError("min_area", f"expected 0 < min_area <= max_area <= 1, got {self.min_area}, "
                                          f"{self.max_area}")
        if not self.min_aspect > 0:
            raise ConfigError("min_aspect", f"must be > 0, got {self.min_aspect}")
        if self.min_count < 1 or (self.max_count is not None and self.max_count < self.min_count):
            raise ConfigError("max_count", f"expected 1 <= min_count <= max_count, got {self.min_count}, "
                                           f"{self.max_count}")

    def _box(self, r, H: int, W: int, count: int, tries: int) -> tuple[int, int, int, int] | None:
        lo = math.log(self.min_aspect)
        hi = math.log(self.max_aspect or 1.0 / self.min_aspect)
        for _ in range(tries):
            target = r.uniform(self.min_area, self.max_area) * H * W / count
            aspect = math.exp(r.uniform(lo, hi))
            h = int(round(math.sqrt(target * aspect)))
            w = int(round(math.sqrt(target / aspect)))
            if w < W and h < H:
                return r.randint(0, H - h), r.randint(0, W - w), h, w
        return None

    def __call__(self, x: torch.Tensor, rng: random.Random | None = None) -> torch.Tensor:
        if not isinstance(x, torch.Tensor) or x.dim() != 4 or not x.is_floating_point():
            what = f"{x.dtype} {tuple(x.shape)}" if isinstance(x, torch.Tensor) else type(x).__name__
            raise ConfigError("frames", f"random erasing expects a normalised float [T, C, H, W] clip, got {what}")
        r = random if rng is None else rng
        T, C, H, W = x.shape
        out = x.clone()
        gen: list[torch.Generator] = []

        def noise(shape):
            if self.mode == "const":
                return torch.zeros(shape, dtype=x.dtype)
            if not gen:  # seeded from the clip's stream, only when noise is needed
                gen.append(torch.Generator().manual_seed(r.getrandbits(63)))
            if self.mode == "rand":
                shape = (*shape[:-2], 1, 1)
            return torch.randn(shape, generator=gen[0], dtype=x.dtype)

        def counts():
            hi = self.max_count or self.min_count
            return self.min_count if hi == self.min_count else r.randint(self.min_count, hi)

        if self.cube:
            if r.random() > self.probability:
                return out
            n = counts()
            for _ in range(n):
                box = self._box(r, H, W, n, 100)
                if box is not None:
                    top, left, h, w = box
                    out[:, :, top:top + h, left:left + w] = noise((T, C, h, w)).to(out.device)
            return out
        for t in range(T):
            if r.random() > self.probability:
                continue
            n = counts()
            for _ in range(n):
                box = self._box(r, H, W, n, 10)
                if box is not None:
                    top, left, h, w = box
                    out[t, :, top:top + h, left:left + w] = noise((C, h, w)).to(out.device)
        return out


# ---------------------------------------------------------------------------------------------------------
# pipeline
# ---------------------------------------------------------------------------------------------------------
def add_augmentation(transform: VideoTransform, rand_augment: VideoRandAugment | None = None,
                     erasing: RandomErasing | None = None) -> VideoTransform:
    """``transform`` with RandAugment before its first step (on the decoded uint8 frames, as the official
    ``_aug_frame``) and random erasing after its last one (its normalisation). Both draw from the rng the
    transform is called with."""
    steps = list(transform.steps)
    if rand_augment is not None:
        steps.insert(0, (repr(rand_augment), lambda x, r: rand_augment(x, r)))
    if erasing is not None:
        name = f"random_erasing(p={erasing.probability:g}, {erasing.mode}, cube={erasing.cube})"
        steps.append((name, lambda x, r: erasing(x, r)))
    deterministic = transform.deterministic and rand_augment is None and (erasing is None or erasing.probability == 0)
    return VideoTransform(steps, deterministic=deterministic)
