"""Pure-torch video transforms (``internvideo2.data.transforms``): shapes and dtypes, the deterministic
evaluation transforms, the multi-view spatial crops of spec §6.4 on landscape and portrait frames, one
random-resized-crop box per clip, flip, normalisation constants (spec §5.1, §7.4)."""
from __future__ import annotations

import random

import pytest
import torch
from conftest import asset

from internvideo2.data.transforms import (
    CLIP_MEAN,
    CLIP_STD,
    IMAGENET_MEAN,
    IMAGENET_STD,
    VideoTransform,
    build_eval_transform,
    build_train_transform,
    center_crop,
    hflip,
    normalize,
    random_resized_crop,
    random_resized_crop_params,
    resize,
    resize_short_side,
    spatial_view,
    squash_resize,
    three_crop,
    to_tchw,
)
from internvideo2.data.video import read_frames
from internvideo2.errors import ConfigError


def frames_u8(t=3, h=48, w=64, seed=0) -> torch.Tensor:
    """Random decoder-style frames ``uint8 [T, H, W, 3]``."""
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (t, h, w, 3), generator=g, dtype=torch.uint8)


def coords(h: int, w: int, t: int = 2) -> torch.Tensor:
    """``float [T, 3, H, W]``: channel 0 = row, channel 1 = column, channel 2 = frame index."""
    rows = torch.arange(h, dtype=torch.float32).view(h, 1).expand(h, w)
    cols = torch.arange(w, dtype=torch.float32).view(1, w).expand(h, w)
    return torch.stack([torch.stack([rows, cols, torch.full((h, w), float(i))]) for i in range(t)])


# ------------------------------------------------------------------------------------------ shapes, dtypes
def test_shapes_and_dtypes():
    x = to_tchw(frames_u8())
    assert x.shape == (3, 3, 48, 64) and x.dtype == torch.uint8 and x.is_contiguous()
    y = resize(x, (24, 40))
    assert y.shape == (3, 3, 24, 40) and y.dtype == torch.uint8  # uint8 in, uint8 out (rounded, clamped)
    assert resize(x.float() / 255, (24, 40)).dtype == torch.float32
    assert resize(x, (48, 64)) is x  # no-op
    assert resize_short_side(x, 32).shape[-2:] == (32, 42)  # long side int(32 * 64 / 48)
    assert resize_short_side(to_tchw(frames_u8(h=64, w=48)), 32).shape[-2:] == (42, 32)
    assert squash_resize(x, 16).shape[-2:] == (16, 16)
    assert center_crop(x, 32).shape[-2:] == (32, 32)
    n = normalize(x)
    assert n.dtype == torch.float32 and n.shape == x.shape
    for bad in (torch.zeros(3, 4, 4), torch.zeros(2, 4, 4, 4, 3)):
        with pytest.raises(ConfigError):
            to_tchw(bad)
    with pytest.raises(ConfigError):
        resize(x, (0, 4))
    with pytest.raises(ConfigError):
        resize(x, 8, interpolation="lanczos")
    with pytest.raises(ConfigError):
        center_crop(x, 80)


def test_resize_keeps_constant_images_and_rounds_uint8():
    x = torch.full((1, 3, 30, 40), 200, dtype=torch.uint8)
    for mode in ("bilinear", "bicubic", "nearest", "area"):
        assert torch.equal(resize(x, (17, 23), mode), torch.full((1, 3, 17, 23), 200, dtype=torch.uint8))
    # bicubic overshoot on an edge is clamped to [0, 255] for uint8
    edge = torch.zeros(1, 1, 8, 8, dtype=torch.uint8)
    edge[..., 4:] = 255
    up = resize(edge, (32, 32), "bicubic")
    assert up.dtype == torch.uint8 and int(up.max()) == 255 and int(up.min()) == 0
    # antialias matters when shrinking a fine pattern
    stripes = (torch.arange(64) % 2 * 255).to(torch.uint8).view(1, 1, 1, 64).expand(1, 1, 8, 64)
    aa = resize(stripes, (8, 16), "bilinear", antialias=True)
    assert (aa[..., 1:-1].float() - 127.5).abs().max() <= 1  # averaged to grey (borders aside)
    assert not torch.equal(resize(stripes, (8, 16), "bilinear", antialias=False), aa)


# ------------------------------------------------------------------------------------------ eval transforms
@pytest.mark.parametrize("mode", ["squash", "center_crop"])
def test_eval_transform_is_deterministic(mode):
    tf = build_eval_transform(32, mode)
    assert tf.deterministic
    f = frames_u8(t=4, h=48, w=80)
    a, b = tf(f), tf(f, rng=random.Random(1))
    assert a.shape == (4, 3, 32, 32) and a.dtype == torch.float32
    assert torch.equal(a, b)
    assert mode.split("_")[0] in repr(tf)


def test_eval_modes_follow_the_official_recipes():
    f = frames_u8(t=2, h=48, w=80)
    x = to_tchw(f)
    # stage-2 / CLIP test: bicubic squash to S x S, /255, ImageNet normalisation
    ref = normalize(resize(x, (32, 32), "bicubic"), IMAGENET_MEAN, IMAGENET_STD)
    assert torch.equal(build_eval_transform(32, "squash")(f), ref)
    # fine-tuning validation: bilinear short side to S, central S x S crop
    ref = normalize(center_crop(resize(x, (32, 53), "bilinear"), 32))
    assert torch.equal(build_eval_transform(32, "center_crop")(f), ref)
    # the CLIP constants can be chosen (encoder names containing 'clip')
    assert torch.equal(build_eval_transform(32, "squash", CLIP_MEAN, CLIP_STD)(f),
                       normalize(resize(x, (32, 32), "bicubic"), CLIP_MEAN, CLIP_STD))
    with pytest.raises(ConfigError):
        build_eval_transform(32, "letterbox")
    with pytest.raises(ConfigError):
        build_eval_transform(32)(f.float())  # decoder frames are uint8


def test_normalisation_constants():
    assert IMAGENET_MEAN == (0.485, 0.456, 0.406) and IMAGENET_STD == (0.229, 0.224, 0.225)
    assert CLIP_MEAN == (0.48145466, 0.4578275, 0.40821073)
    assert CLIP_STD == (0.26862954, 0.26130258, 0.27577711)
    x = torch.zeros(1, 3, 2, 2, dtype=torch.uint8)
    x[:, 0], x[:, 1], x[:, 2] = 255, 51, 0
    n = normalize(x)
    want = [(1.0 - 0.485) / 0.229, (0.2 - 0.456) / 0.224, (0.0 - 0.406) / 0.225]
    for c in range(3):
        assert torch.allclose(n[:, c], torch.full((1, 2, 2), want[c]), atol=1e-6)
    # float input is taken as [0, 1] already (no second division)
    assert torch.allclose(normalize(x.float() / 255), n, atol=1e-6)
    with pytest.raises(ConfigError):
        normalize(torch.zeros(1, 4, 2, 2))


# ------------------------------------------------------------------------------------------ spatial views
def test_three_crop_landscape_offsets():
    # after resize_short_side(224): 224 x 398. Offsets int(s * (398 - 224) / 2) = 0, 87, 174 along the width
    x = coords(224, 398)
    crops = three_crop(x)
    assert [c.shape[-2:] for c in crops] == [(224, 224)] * 3
    assert [int(c[0, 1, 0, 0]) for c in crops] == [0, 87, 174]  # first column of each crop
    assert all(int(c[0, 0, 0, 0]) == 0 and int(c[0, 0, -1, 0]) == 223 for c in crops)  # full height


def test_three_crop_portrait_offsets():
    # portrait 300 x 224: the crops move down the height: int(s * 76 / 2) = 0, 38, 76
    x = coords(300, 224)
    crops = three_crop(x)
    assert [int(c[0, 0, 0, 0]) for c in crops] == [0, 38, 76]  # first row of each crop
    assert all(int(c[0, 1, 0, 0]) == 0 and int(c[0, 1, 0, -1]) == 223 for c in crops)  # full width
    # one crop: centred; an explicit crop size smaller than the short side centres the other axis
    assert int(spatial_view(x, 0, 1)[0, 0, 0, 0]) == 38
    v = spatial_view(x, 2, 3, crop_size=200)
    assert v.shape[-2:] == (200, 200) and int(v[0, 0, 0, 0]) == 100 and int(v[0, 1, 0, 0]) == 12
    with pytest.raises(ConfigError):
        spatial_view(x, 3, 3)
    with pytest.raises(ConfigError):
        spatial_view(x, 0, 3, crop_size=300)


def test_three_crop_on_a_real_frame():
    f = read_frames(str(asset("video/example1.mp4")), [0, 20])  # 480 x 640
    x = resize_short_side(to_tchw(f), 224, "bilinear")
    assert x.shape == (2, 3, 224, 298)  # int(224 * 640 / 480)
    crops = three_crop(x)
    for c, off in zip(crops, (0, 37, 74)):  # int(s * (298 - 224) / 2)
        assert torch.equal(c, x[..., :, off:off + 224])


def test_center_crop_offsets():
    x = coords(49, 64)
    c = center_crop(x, (32, 32))
    assert (int(c[0, 0, 0, 0]), int(c[0, 1, 0, 0])) == (round(17 / 2), 16)  # int(round((H - h) / 2))


# ------------------------------------------------------------------------------------------ train transforms
def test_random_resized_crop_one_box_per_clip():
    # frames differ by a constant: one shared box keeps exactly that difference after the crop + resize
    x = coords(60, 80, t=4)
    x[:, 2] = 0
    x += torch.arange(4.0).view(4, 1, 1, 1) * 1000  # frame t = the same picture + 1000 t
    y = random_resized_crop(x, 32, scale=(0.2, 0.6), rng=random.Random(0))
    assert y.shape == (4, 3, 32, 32)
    for t in range(1, 4):
        assert torch.allclose(y[t] - y[0], torch.full_like(y[0], 1000.0 * t), atol=1e-2)


def test_random_resized_crop_is_reproducible_and_random():
    x = to_tchw(frames_u8(t=2, h=60, w=80))
    a = random_resized_crop(x, 32, rng=random.Random(7))
    assert a.dtype == torch.uint8 and torch.equal(a, random_resized_crop(x, 32, rng=random.Random(7)))
    boxes = {random_resized_crop_params(60, 80, (0.5, 1.0), rng=random.Random(s)) for s in range(40)}
    assert len(boxes) > 20
    for top, left, h, w in boxes:
        assert 0 <= top and top + h <= 60 and 0 <= left and left + w <= 80
        assert 0.5 * 4800 * 0.9 <= h * w <= 4800  # area fraction in scale (rounding aside)
        assert 3 / 4 * 0.9 <= w / h <= 4 / 3 * 1.1
    # no box can satisfy scale and ratio: the whole frame clamped to the ratio, centred
    box = random_resized_crop_params(10, 100, (1.0, 1.0), (1.0, 1.0), rng=random.Random(0))
    assert box == (0, 45, 10, 10)


def test_flip():
    x = coords(4, 6)
    assert torch.equal(hflip(x)[..., 0], x[..., -1]) and torch.equal(hflip(hflip(x)), x)
    f = frames_u8(t=2, h=40, w=56)
    flip = build_train_transform(24, flip=True)
    plain = build_train_transform(24, flip=False)
    assert not flip.deterministic
    flipped = 0
    for s in range(40):
        a = flip(f, rng=random.Random(s))
        b = plain(f, rng=random.Random(s))  # same crop box (drawn first), no flip
        assert a.shape == (2, 3, 24, 24) and a.dtype == torch.float32
        if torch.equal(a, b):
            continue
        assert torch.equal(a, hflip(b))  # the whole clip flipped together
        flipped += 1
    assert 8 <= flipped <= 32  # p = 0.5
    s1 = flip(f, rng=random.Random(3))
    assert torch.equal(s1, flip(f, rng=random.Random(3)))  # seeded rng: reproducible augmentation
    with pytest.raises(ConfigError):
        build_train_transform(24, scale=(0.0, 1.0))


def test_train_transform_matches_its_parts():
    f = frames_u8(t=2, h=40, w=56)
    r = random.Random(5)
    top, left, h, w = random_resized_crop_params(40, 56, (0.5, 1.0), rng=r)
    do_flip = r.random() < 0.5
    x = resize(to_tchw(f)[..., top:top + h, left:left + w], (24, 24), "bicubic")
    want = normalize(hflip(x) if do_flip else x)
    assert torch.equal(build_train_transform(24)(f, rng=random.Random(5)), want)


def test_video_transform_custom_steps():
    tf = VideoTransform([("half", lambda x, r: resize(x, (x.shape[-2] // 2, x.shape[-1] // 2))),
                         ("norm", lambda x, r: normalize(x))], deterministic=True)
    out = tf(frames_u8(t=1, h=20, w=30))
    assert out.shape == (1, 3, 10, 15) and "half" in repr(tf)
