"""Video transforms in pure torch (no torchvision).

Shapes: the functional ops take ``[T, C, H, W]`` tensors (uint8 or float) and return the same layout;
:class:`VideoTransform` takes decoded frames ``uint8 [T, H, W, 3]`` and returns ``float32 [T, 3, H, W]``
normalised. Geometric ops on uint8 input return uint8 (interpolated in float, rounded and clamped), which
is what the official pipelines do: they resize/crop uint8 tensors and only then divide by 255.

Official recipes (spec §6.4, §7.4; stage3 doc §2.7):

- stage 2 / CLIP test: ``squash_resize(224)`` bicubic (no crop, aspect not kept) -> /255 -> ImageNet norm
  (``build_eval_transform(224, 'squash')``);
- fine-tuning validation: ``resize_short_side(224)`` bilinear -> ``center_crop(224)``
  (``build_eval_transform(224, 'center_crop')``);
- fine-tuning multi-view test: ``resize_short_side`` bilinear -> ``three_crop`` along the long side;
- stage 2 train: ``random_resized_crop(224, scale=(0.5, 1))`` bicubic, the same box for every frame ->
  horizontal flip p=0.5 -> /255 -> normalise (``build_train_transform``).

Antialiasing: resizes default to ``antialias=True`` (what torchvision >= 0.17 does for tensors and PIL
always did). Pass ``antialias=False`` to reproduce the older tensor behaviour.
"""
from __future__ import annotations

import math
import random
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F

from ..errors import ConfigError

__all__ = [
    "IMAGENET_MEAN", "IMAGENET_STD", "CLIP_MEAN", "CLIP_STD",
    "to_tchw", "resize", "resize_short_side", "squash_resize", "center_crop", "crop", "three_crop",
    "spatial_view", "random_resized_crop_params", "random_resized_crop", "hflip", "normalize",
    "VideoTransform", "build_eval_transform", "build_train_transform",
]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# OpenAI CLIP constants, used by the official code only for encoder names containing 'clip' (spec §7.4)
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)

_MODES = {"bilinear": "bilinear", "bicubic": "bicubic", "nearest": "nearest", "area": "area"}


def _check4(x: torch.Tensor, name: str = "frames") -> None:
    if not isinstance(x, torch.Tensor) or x.dim() != 4:
        shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise ConfigError(name, f"expected a [T, C, H, W] tensor, got {shape}")


def _pair(size, name: str = "size") -> tuple[int, int]:
    if isinstance(size, int):
        h = w = size
    else:
        try:
            h, w = int(size[0]), int(size[1])
        except Exception:
            raise ConfigError(name, f"expected an int or (height, width), got {size!r}") from None
    if h <= 0 or w <= 0:
        raise ConfigError(name, f"must be > 0, got {size!r}")
    return h, w


def to_tchw(frames: torch.Tensor) -> torch.Tensor:
    """``[T, H, W, 3]`` (decoder output) -> ``[T, 3, H, W]`` (contiguous)."""
    if not isinstance(frames, torch.Tensor) or frames.dim() != 4 or frames.shape[-1] != 3:
        shape = tuple(frames.shape) if isinstance(frames, torch.Tensor) else type(frames).__name__
        raise ConfigError("frames", f"expected uint8 [T, H, W, 3] frames, got {shape}")
    return frames.permute(0, 3, 1, 2).contiguous()


def resize(x: torch.Tensor, size, interpolation: str = "bilinear", antialias: bool = True) -> torch.Tensor:
    """Resize ``[T, C, H, W]`` to ``size=(h, w)``. uint8 in -> uint8 out (rounded, clamped)."""
    _check4(x)
    h, w = _pair(size)
    if (x.shape[-2], x.shape[-1]) == (h, w):
        return x
    mode = _MODES.get(interpolation)
    if mode is None:
        raise ConfigError("interpolation", f"unknown {interpolation!r}; use one of {sorted(_MODES)}")
    is_int = not x.is_floating_point()
    y = x.float() if is_int else x
    kw = {}
    if mode in ("bilinear", "bicubic"):
        kw = {"align_corners": False, "antialias": bool(antialias)}
    y = F.interpolate(y, size=(h, w), mode=mode, **kw)
    if is_int:
        y = y.round_().clamp_(0, 255).to(x.dtype)
    return y


def resize_short_side(x: torch.Tensor, size: int, interpolation: str = "bilinear",
                      antialias: bool = True) -> torch.Tensor:
    """Scale so the shorter side is ``size``, keeping the aspect ratio (long side ``int(size*long/short)``,
    the convention of the official video transforms)."""
    _check4(x)
    h, w = x.shape[-2:]
    if w <= h:
        nw, nh = int(size), int(size * h / w)
    else:
        nh, nw = int(size), int(size * w / h)
    return resize(x, (nh, nw), interpolation, antialias)


def squash_resize(x: torch.Tensor, size, interpolation: str = "bicubic", antialias: bool = True) -> torch.Tensor:
    """Official stage-2 test resize: straight to ``(S, S)`` (or ``(h, w)``), aspect not kept, no crop."""
    return resize(x, _pair(size), interpolation, antialias)


def crop(x: torch.Tensor, top: int, left: int, height: int, width: int) -> torch.Tensor:
    _check4(x)
    H, W = x.shape[-2:]
    if top < 0 or left < 0 or top + height > H or left + width > W:
        raise ConfigError("crop", f"box top={top} left={left} {height}x{width} outside a {H}x{W} frame")
    return x[..., top:top + height, left:left + width]


def center_crop(x: torch.Tensor, size) -> torch.Tensor:
    """Central ``size`` crop; offsets ``int(round((H - h) / 2))`` as in the official transforms."""
    _check4(x)
    h, w = _pair(size)
    H, W = x.shape[-2:]
    if h > H or w > W:
        raise ConfigError("size", f"crop {h}x{w} larger than the frame {H}x{W}; resize first")
    return crop(x, int(round((H - h) / 2.0)), int(round((W - w) / 2.0)), h, w)


def spatial_view(x: torch.Tensor, crop_idx: int, num_crops: int = 3, crop_size: int | None = None) -> torch.Tensor:
    """Spatial test view ``crop_idx`` of ``num_crops`` (spec §6.4): a ``crop_size`` square taken along the
    long side at offset ``int(crop_idx * (long - crop_size) / (num_crops - 1))``; centred when
    ``num_crops == 1``. ``crop_size`` defaults to the short side (the official case, after
    ``resize_short_side``); the short side is centre-cropped if it is longer than ``crop_size``."""
    _check4(x)
    if num_crops < 1 or not 0 <= crop_idx < num_crops:
        raise ConfigError("crop_idx", f"must be in [0, {num_crops}), got {crop_idx}")
    H, W = x.shape[-2:]
    short, long_ = min(H, W), max(H, W)
    s = short if crop_size is None else int(crop_size)
    if s > short:
        raise ConfigError("crop_size", f"{s} larger than the short side {short}; resize first")
    if num_crops == 1:
        off = int(round((long_ - s) / 2.0))
    else:
        step = 1.0 * (long_ - s) / (num_crops - 1)  # same float order as the official code
        off = int(crop_idx * step)
    other = int(round((short - s) / 2.0))
    if H >= W:  # long side is the height
        return crop(x, off, other, s, s)
    return crop(x, other, off, s, s)


def three_crop(x: torch.Tensor, crop_size: int | None = None, num_crops: int = 3) -> list[torch.Tensor]:
    """All ``num_crops`` spatial views (see :func:`spatial_view`): left/centre/right for landscape frames,
    top/centre/bottom for portrait ones."""
    return [spatial_view(x, i, num_crops, crop_size) for i in range(num_crops)]


def random_resized_crop_params(height: int, width: int, scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3),
                               rng: random.Random | None = None) -> tuple[int, int, int, int]:
    """Box ``(top, left, h, w)`` of the standard RandomResizedCrop: up to 10 tries of a random area
    fraction in ``scale`` and log-uniform aspect ratio in ``ratio``; else the whole frame clamped to
    ``ratio``, centred."""
    r = random if rng is None else rng
    area = height * width
    log_lo, log_hi = math.log(ratio[0]), math.log(ratio[1])
    for _ in range(10):
        target = area * r.uniform(scale[0], scale[1])
        aspect = math.exp(r.uniform(log_lo, log_hi))
        w = int(round(math.sqrt(target * aspect)))
        h = int(round(math.sqrt(target / aspect)))
        if 0 < w <= width and 0 < h <= height:
            return r.randint(0, height - h), r.randint(0, width - w), h, w
    in_ratio = width / height
    if in_ratio < min(ratio):
        w = width
        h = int(round(w / min(ratio)))
    elif in_ratio > max(ratio):
        h = height
        w = int(round(h * max(ratio)))
    else:
        w, h = width, height
    return (height - h) // 2, (width - w) // 2, h, w


def random_resized_crop(x: torch.Tensor, size, scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3),
                        interpolation: str = "bicubic", antialias: bool = True,
                        rng: random.Random | None = None) -> torch.Tensor:
    """RandomResizedCrop with ONE box for all frames (the official transform acts on the whole clip)."""
    _check4(x)
    top, left, h, w = random_resized_crop_params(x.shape[-2], x.shape[-1], scale, ratio, rng)
    return resize(crop(x, top, left, h, w), _pair(size), interpolation, antialias)


def hflip(x: torch.Tensor) -> torch.Tensor:
    """Mirror left-right (last dimension)."""
    return x.flip(-1)


def normalize(x: torch.Tensor, mean: Sequence[float] = IMAGENET_MEAN,
              std: Sequence[float] = IMAGENET_STD) -> torch.Tensor:
    """``(x - mean) / std`` per channel of ``[T, 3, H, W]``; uint8 input is divided by 255 first, float
    input is assumed to be in [0, 1]. Returns float32."""
    _check4(x)
    if x.shape[1] != len(mean) or len(mean) != len(std):
        raise ConfigError("mean", f"{len(mean)} means / {len(std)} stds for {x.shape[1]} channels")
    y = x.float().div_(255.0) if not x.is_floating_point() else x.float()
    m = torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1)
    s = torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1)
    return (y - m) / s


Step = Callable[[torch.Tensor, "random.Random | None"], torch.Tensor]


class VideoTransform:
    """A pipeline of steps applied to the whole clip.

    ``__call__(frames uint8 [T, H, W, 3], rng=None) -> float32 [T, 3, H, W]``. Each step is
    ``fn(x [T, C, H, W], rng) -> x``; random steps draw from ``rng`` (``random.Random``; None = the global
    ``random`` module), so a seeded ``rng`` makes training augmentation reproducible. ``deterministic``
    is True when no step draws.
    """

    def __init__(self, steps: Sequence[tuple[str, Step]], *, deterministic: bool):
        self.steps = list(steps)
        self.deterministic = deterministic

    def __call__(self, frames: torch.Tensor, rng: random.Random | None = None) -> torch.Tensor:
        if frames.dtype != torch.uint8:
            raise ConfigError("frames", f"expected uint8 [T, H, W, 3] frames, got {frames.dtype}")
        x = to_tchw(frames)
        for _name, fn in self.steps:
            x = fn(x, rng)
        return x

    def __repr__(self) -> str:
        return f"VideoTransform([{', '.join(n for n, _ in self.steps)}])"


def build_eval_transform(size: int, mode: str = "squash", mean=IMAGENET_MEAN, std=IMAGENET_STD,
                         *, antialias: bool = True) -> VideoTransform:
    """Deterministic evaluation transform.

    ``'squash'``: official stage-2/CLIP test, bicubic resize to ``(size, size)``;
    ``'center_crop'``: fine-tuning validation, bilinear short side to ``size`` then a central square.
    """
    if mode == "squash":
        steps = [(f"squash_resize({size}, bicubic)",
                  lambda x, r: squash_resize(x, size, "bicubic", antialias))]
    elif mode == "center_crop":
        steps = [(f"resize_short_side({size}, bilinear)",
                  lambda x, r: resize_short_side(x, size, "bilinear", antialias)),
                 (f"center_crop({size})", lambda x, r: center_crop(x, size))]
    else:
        raise ConfigError("mode", f"unknown eval mode {mode!r}; use 'squash' or 'center_crop'")
    steps.append(("normalize", lambda x, r: normalize(x, mean, std)))
    return VideoTransform(steps, deterministic=True)


def build_train_transform(size: int, scale=(0.5, 1.0), flip: bool = True, mean=IMAGENET_MEAN,
                          std=IMAGENET_STD, *, ratio=(3 / 4, 4 / 3), antialias: bool = True) -> VideoTransform:
    """Official stage-2 train transform: RandomResizedCrop(size, scale, bicubic; one box per clip) ->
    horizontal flip with p=0.5 (``flip=False`` for SSv2-like data) -> /255 -> normalise."""
    if not (0 < scale[0] <= scale[1] <= 1.0):
        raise ConfigError("scale", f"expected 0 < lo <= hi <= 1, got {scale}")
    steps: list[tuple[str, Step]] = [(
        f"random_resized_crop({size}, scale={tuple(scale)})",
        lambda x, r: random_resized_crop(x, size, scale, ratio, "bicubic", antialias, r),
    )]
    if flip:
        def _flip(x, r):
            return hflip(x) if (random if r is None else r).random() < 0.5 else x
        steps.append(("hflip(p=0.5)", _flip))
    steps.append(("normalize", lambda x, r: normalize(x, mean, std)))
    return VideoTransform(steps, deterministic=False)
