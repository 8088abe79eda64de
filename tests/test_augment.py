"""Fine-tuning augmentations (``internvideo2.data.augment``, spec §6.2): the timm RandAugment string, the
ops on uint8 and float frames (checked against PIL, which the official code calls per frame), one draw per
clip, RandomErasing (one box per clip, or per frame), determinism under the package's seed rule, repeated
augmentation (``data.num_sample``) and ``open_block_num`` in the ``finetune`` task."""
from __future__ import annotations

import random

import pytest
import torch

from internvideo2.data import augment as A
from internvideo2.data.augment import (
    AppliedOp,
    RandAugmentConfig,
    RandomErasing,
    VideoRandAugment,
    add_augmentation,
    parse_rand_augment,
)
from internvideo2.data.transforms import build_train_transform
from internvideo2.errors import ConfigError
from internvideo2.utils.seeding import derive_rng


@pytest.fixture(autouse=True)
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _frames(T=3, H=17, W=23, seed=0, dtype=torch.uint8) -> torch.Tensor:
    """``[T, 3, H, W]`` noise, with a low-contrast second frame."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(0, 256, (T, 3, H, W), generator=g, dtype=torch.uint8)
    if T > 1:
        x[1] = (x[1].float() * 0.3 + 40).to(torch.uint8)
    return x if dtype == torch.uint8 else x.to(dtype) / 255.0


def _same_frames(T=4, H=20, W=24, seed=0) -> torch.Tensor:
    return _frames(1, H, W, seed).expand(T, 3, H, W).contiguous()


# ---------------------------------------------------------------------------------------------------------
# config strings
# ---------------------------------------------------------------------------------------------------------
def test_official_strings_parse():
    assert parse_rand_augment("rand-m7-n4-mstd0.5-inc1") == RandAugmentConfig(7, 4, 0.5, True, None)
    assert parse_rand_augment("rand-m5-n2-mstd0.25-inc1") == RandAugmentConfig(5, 2, 0.25, True, None)
    c = parse_rand_augment("rand")  # timm defaults: magnitude 10, 2 ops, no noise, the standard op list
    assert c == RandAugmentConfig() and c.ops == A.RAND_TRANSFORMS and len(c.ops) == 15
    assert parse_rand_augment("rand-n3-m9-w0").weight_idx == 0  # any order
    assert parse_rand_augment("rand-m7-inc1").ops == A.RAND_INCREASING_TRANSFORMS


@pytest.mark.parametrize("spec, words", [
    ("", "expected"),
    ("rnd-m7", "must start with 'rand'"),
    ("rand-m7-x3", "unknown part 'x3'"),
    ("rand-m7-foo", "unknown part 'foo'"),
    ("rand-m7--n2", "unknown part ''"),
    ("rand-m", "unknown part 'm'"),
    ("rand-m7-m8", "given twice"),
    ("rand-m7.5", "not m followed by a number"),
    ("rand-m11", "outside [0, 10]"),
    ("rand-mstd0.5.1", "not mstd"),
    ("rand-inc0", "only 'inc1'"),
    ("rand-w1", "only weight set 'w0'"),
    ("rand-w0-n14", "too many"),
])
def test_bad_strings_raise_config_error_naming_the_field(spec, words):
    with pytest.raises(ConfigError) as ei:
        parse_rand_augment(spec, "data.options.rand_augment")
    assert ei.value.field == "data.options.rand_augment" and words in ei.value.reason


# ---------------------------------------------------------------------------------------------------------
# the ops
# ---------------------------------------------------------------------------------------------------------
OPS = {  # every op of both lists at a mid-range argument
    "AutoContrast": (), "Equalize": (), "Invert": (), "Rotate": (17.0,), "Posterize": (3,),
    "PosterizeIncreasing": (2,), "Solarize": (100,), "SolarizeIncreasing": (180,), "SolarizeAdd": (60,),
    "Color": (0.4,), "ColorIncreasing": (1.6,), "Contrast": (0.5,), "ContrastIncreasing": (1.7,),
    "Brightness": (0.6,), "BrightnessIncreasing": (1.4,), "Sharpness": (0.2,), "SharpnessIncreasing": (1.9,),
    "ShearX": (0.2,), "ShearY": (-0.2,), "TranslateXRel": (0.3,), "TranslateYRel": (-0.3,),
}


def test_the_op_table_covers_both_lists():
    assert set(OPS) == set(A.RAND_TRANSFORMS) | set(A.RAND_INCREASING_TRANSFORMS)


@pytest.mark.parametrize("name", sorted(OPS))
@pytest.mark.parametrize("dtype", [torch.uint8, torch.float32])
def test_every_op_keeps_shape_dtype_and_range_and_changes_the_frames(name, dtype):
    x = _frames(dtype=dtype)
    interp = "bicubic" if name in A._GEOMETRIC else None
    y = AppliedOp(name, OPS[name], interp)(x)
    assert y.shape == x.shape and y.dtype == x.dtype
    if dtype == torch.float32:
        assert 0.0 <= y.min() and y.max() <= 1.0
    assert not torch.equal(y, x), name


@pytest.mark.parametrize("name", sorted(OPS))
def test_float_frames_give_the_uint8_result_up_to_quantisation(name):
    """The same op on ``x / 255`` is the uint8 result / 255 up to the 8-bit rounding PIL applies (of the
    result and, for Color/Contrast/Sharpness, of the intermediate grey or blurred frame)."""
    x = _frames()
    interp = "bicubic" if name in A._GEOMETRIC else None
    op = AppliedOp(name, OPS[name], interp)
    diff = (op(x.float() / 255.0) * 255.0 - op(x).float()).abs()
    assert diff.max() < 2.0, name


def test_identities():
    x = _frames()
    assert torch.equal(A.invert(A.invert(x)), x)
    xf = x.float() / 255
    torch.testing.assert_close(A.invert(A.invert(xf)), xf)
    assert torch.equal(A.posterize(x, 8), x) and torch.equal(A.solarize(x, 256), x)
    assert torch.equal(A.solarize_add(x, 0), x)
    for fn in (A.adjust_color, A.adjust_contrast, A.adjust_brightness, A.adjust_sharpness):
        assert torch.equal(fn(x, 1.0), x), fn.__name__
    for fn in (A.rotate, A.shear_x, A.shear_y, A.translate_x_rel, A.translate_y_rel):
        assert fn(x, 0.0) is x, fn.__name__  # magnitude 0 of a geometric op: the frames untouched
    assert A.rotate(x, 360.0) is x


def test_magnitude_zero_is_the_identity_of_the_increasing_ops():
    """timm's increasing ops are 'no change' at level 0 (whatever the random sign); Invert, Equalize and
    AutoContrast have no magnitude."""
    x = _frames()
    rng = random.Random(0)
    for name in A.RAND_INCREASING_TRANSFORMS:
        level = A._LEVELS[name]
        if level is None:
            continue
        args = level(0.0, rng)
        y = AppliedOp(name, args, "bicubic")(x)
        if name == "SolarizeAdd":
            assert args == (0,)
        if name == "PosterizeIncreasing":  # level 0 keeps 4 bits: the one increasing op that still acts
            assert args == (4,) and torch.equal(y, x & 0xF0)
            continue
        assert torch.equal(y, x), name


def test_simple_checkable_effects():
    x = _frames()
    assert torch.equal(A.posterize(x, 2), x & 0xC0)
    assert torch.equal(A.posterize(x, 0), torch.zeros_like(x))
    assert torch.equal(A.solarize(x, 128), torch.where(x >= 128, 255 - x, x))
    assert torch.equal(A.solarize_add(x, 60), torch.where(x < 128, (x.int() + 60).clamp(max=255).to(torch.uint8), x))
    assert torch.equal(A.adjust_brightness(x, 0.0), torch.zeros_like(x))
    grey = A.adjust_color(x, 0.0)
    assert torch.equal(grey[:, 0], grey[:, 1]) and torch.equal(grey[:, 1], grey[:, 2])
    flat = A.adjust_contrast(x, 0.0)  # every pixel of a frame at the frame's mean luma
    assert all(f.unique().numel() == 1 for f in flat)
    ac = A.auto_contrast(x)  # the low-contrast frame is stretched to the full range, per channel
    assert (ac.amin(dim=(-2, -1)) == 0).all() and (ac.amax(dim=(-2, -1)) == 255).all()
    assert x[1].max() < 120 and ac[1].max() == 255
    const = torch.full((1, 3, 5, 5), 77, dtype=torch.uint8)
    assert torch.equal(A.auto_contrast(const), const) and torch.equal(A.equalize(const), const)
    eq = A.equalize(x)
    assert eq[1].float().std() > 2 * x[1].float().std()  # equalisation spreads the low-contrast frame
    # geometry: a quarter turn of a square frame is torch.rot90 (counter-clockwise), exactly
    sq = _frames(H=12, W=12)
    assert torch.equal(A.rotate(sq, 90.0), torch.rot90(sq, 1, dims=(-2, -1)))
    # a translation by whole pixels moves the content and fills the uncovered columns with 128
    t = A.translate_x_rel(x, 5 / 23)  # 5 pixels: output column c reads input column c + 5
    assert torch.equal(t[..., :-5], x[..., 5:]) and (t[..., -5:] == 128).all()
    t = A.translate_y_rel(x.float() / 255, -4 / 17, "bilinear")
    torch.testing.assert_close(t[..., 4:, :], x[..., :-4, :].float() / 255)
    torch.testing.assert_close(t[..., :4, :], torch.full_like(t[..., :4, :], 128 / 255))


def test_ops_match_pil_per_frame():
    """The official video RandAugment calls PIL per frame: the colour ops match it exactly, the geometric
    ones within one grey level on a few pixels."""
    np = pytest.importorskip("numpy")
    Image = pytest.importorskip("PIL.Image")
    from PIL import ImageEnhance, ImageOps

    x = _frames(T=2, H=19, W=26)
    fill = {"fillcolor": (128, 128, 128)}

    def pil(fn):
        frames = [Image.fromarray(f.permute(1, 2, 0).numpy()) for f in x]
        return torch.stack([torch.from_numpy(np.array(fn(im))).permute(2, 0, 1) for im in frames])

    exact = [
        (A.auto_contrast(x), ImageOps.autocontrast), (A.equalize(x), ImageOps.equalize),
        (A.invert(x), ImageOps.invert), (A.posterize(x, 3), lambda im: ImageOps.posterize(im, 3)),
        (A.solarize(x, 90), lambda im: ImageOps.solarize(im, 90)),
        (A.adjust_color(x, 1.6), lambda im: ImageEnhance.Color(im).enhance(1.6)),
        (A.adjust_contrast(x, 0.35), lambda im: ImageEnhance.Contrast(im).enhance(0.35)),
        (A.adjust_brightness(x, 1.3), lambda im: ImageEnhance.Brightness(im).enhance(1.3)),
        (A.adjust_sharpness(x, 1.9), lambda im: ImageEnhance.Sharpness(im).enhance(1.9)),
        (A.rotate(x, 21.0), lambda im: im.rotate(21.0, resample=Image.BICUBIC, **fill)),
        (A.rotate(x, -13.0, "bilinear"), lambda im: im.rotate(-13.0, resample=Image.BILINEAR, **fill)),
    ]
    for i, (ours, fn) in enumerate(exact):
        assert torch.equal(ours, pil(fn)), i
    near = [
        (A.shear_x(x, 0.25), lambda im: im.transform(im.size, Image.AFFINE, (1, 0.25, 0, 0, 1, 0),
                                                      resample=Image.BICUBIC, **fill)),
        (A.shear_y(x, -0.2), lambda im: im.transform(im.size, Image.AFFINE, (1, 0, 0, -0.2, 1, 0),
                                                      resample=Image.BICUBIC, **fill)),
        (A.translate_x_rel(x, 0.31), lambda im: im.transform(im.size, Image.AFFINE, (1, 0, 0.31 * 26, 0, 1, 0),
                                                              resample=Image.BICUBIC, **fill)),
    ]
    for i, (ours, fn) in enumerate(near):
        d = (ours.int() - pil(fn).int()).abs()
        assert d.max() <= 1 and (d > 0).float().mean() < 0.02, i


def test_ops_refuse_what_they_cannot_take():
    with pytest.raises(ConfigError, match="frames"):
        A.invert(torch.zeros(4, 4, 3))
    with pytest.raises(ConfigError, match="frames"):
        A.invert(torch.zeros(1, 3, 4, 4, dtype=torch.int32))
    with pytest.raises(ConfigError, match="interpolation"):
        A.rotate(_frames(), 10.0, "lanczos")


# ---------------------------------------------------------------------------------------------------------
# VideoRandAugment: one draw per clip, deterministic in the seed
# ---------------------------------------------------------------------------------------------------------
def test_one_draw_per_clip_the_same_ops_on_every_frame():
    ra = VideoRandAugment("rand-m7-n4-mstd0.5-inc1")
    x = _same_frames()
    changed = 0
    for seed in range(12):
        y = ra(x, derive_rng(seed, 0, 0, "transform"))
        assert all(torch.equal(y[0], y[t]) for t in range(1, len(y))), seed
        changed += not torch.equal(y, x)
    assert changed >= 8  # 4 ops at p = 0.5 each: nearly every clip is changed


def test_the_draw_follows_timm():
    """Ops drawn with replacement; each applies with p = 0.5; magnitude m + N(0, mstd) clipped to [0, 10]."""
    ra = VideoRandAugment("rand-m7-n4-mstd0.5-inc1")
    counts, plans = {}, [ra.sample(random.Random(s)) for s in range(400)]
    for plan in plans:
        for op in plan:
            counts[op.name] = counts.get(op.name, 0) + 1
            assert op.name in A.RAND_INCREASING_TRANSFORMS
            assert (op.interpolation == "bicubic") == (op.name in A._GEOMETRIC)
            if op.name == "Rotate":
                assert 15.0 < abs(op.args[0]) < 27.0  # 30 * (7 +- a few std) / 10
            if op.name == "ColorIncreasing":
                assert 0.45 < abs(op.args[0] - 1.0) < 0.81
    mean_len = sum(len(p) for p in plans) / len(plans)
    assert 1.7 < mean_len < 2.3  # 4 draws x p 0.5
    assert set(counts) == set(A.RAND_INCREASING_TRANSFORMS)  # all 15 turn up
    assert {op.args[0] > 0 for p in plans for op in p if op.name == "ShearX"} == {True, False}  # both signs
    weighted = VideoRandAugment("rand-n4-w0-m9", prob=1.0)
    for s in range(50):
        names = [op.name for op in weighted.sample(random.Random(s))]
        assert len(names) == len(set(names)) == 4 and not {"Posterize", "Invert"} & set(names)  # weight 0


def test_deterministic_under_the_seed_rule():
    ra = VideoRandAugment("rand-m7-n4-mstd0.5-inc1")
    x = _frames(T=4, H=24, W=28)
    a = ra(x, derive_rng(3, 1, 7, "transform"))
    b = ra(x, derive_rng(3, 1, 7, "transform"))
    assert torch.equal(a, b)
    others = [ra(x, derive_rng(s, 1, 7, "transform")) for s in range(4, 10)]
    assert any(not torch.equal(a, o) for o in others)
    assert len({tuple(map(repr, ra.sample(derive_rng(s, 0, 0, "transform")))) for s in range(20)}) > 15


# ---------------------------------------------------------------------------------------------------------
# RandomErasing
# ---------------------------------------------------------------------------------------------------------
def _normalised(T=4, H=20, W=24):
    return torch.zeros(T, 3, H, W) + 3.0  # a value erasing noise never produces exactly


def test_cube_erasing_one_box_per_clip_fresh_noise_per_frame():
    """The official datasets' RandomErasing (cube=True): one box for all frames, per-pixel N(0, 1) noise
    drawn for every frame."""
    er = RandomErasing(probability=1.0, mode="pixel")
    x = _normalised()
    for seed in range(5):
        y = er(x, random.Random(seed))
        erased = y != 3.0
        assert erased[0].any() and torch.equal(erased, erased[:1].expand_as(erased))  # same box in every frame
        box = erased[0, 0]
        rows, cols = box.any(1).nonzero().flatten(), box.any(0).nonzero().flatten()
        assert box[rows.min():rows.max() + 1, cols.min():cols.max() + 1].all()  # a rectangle
        area = box.float().mean().item()
        assert 0.01 < area < 0.4
        assert not torch.equal(y[0][erased[0]], y[1][erased[1]])  # the noise differs between frames
        assert torch.equal(x, _normalised())  # input untouched


def test_per_frame_erasing_draws_every_frame_independently():
    er = RandomErasing(probability=1.0, mode="const", cube=False)
    boxes = [er(_normalised(T=6), random.Random(s)) != 3.0 for s in range(5)]
    assert all(b[t].any() for b in boxes for t in range(6))  # p = 1: every frame erased, with zeros
    assert any(not torch.equal(b[0], b[t]) for b in boxes for t in range(1, 6))
    half = RandomErasing(probability=0.5, mode="const", cube=False)
    hit = torch.stack([(half(_normalised(T=8), random.Random(s)) != 3.0).flatten(1).any(1) for s in range(10)])
    assert 0.3 < hit.float().mean() < 0.7  # a coin per frame
    assert {bool(h.all()) or not bool(h.any()) for h in hit} != {True}  # frames of one clip differ


def test_erasing_probability_modes_and_determinism():
    x = _normalised()
    assert torch.equal(RandomErasing(probability=0.0)(x, random.Random(0)), x)
    hits = sum(bool((RandomErasing(0.25)(x, random.Random(s)) != 3.0).any()) for s in range(400))
    assert 70 < hits < 130  # p = 0.25
    rand = RandomErasing(1.0, "rand")(x, random.Random(1))
    vals = rand[0, :, rand[0, 0] != 3.0]  # [3, n]: one colour per channel
    assert vals.numel() and (vals == vals[:, :1]).all()
    er = RandomErasing(1.0, "pixel")
    assert torch.equal(er(x, derive_rng(0, 0, 5, "transform")), er(x, derive_rng(0, 0, 5, "transform")))
    assert not torch.equal(er(x, derive_rng(0, 0, 5, "transform")), er(x, derive_rng(0, 0, 6, "transform")))
    with pytest.raises(ConfigError, match="normalised float"):
        er(torch.zeros(2, 3, 8, 8, dtype=torch.uint8), random.Random(0))
    with pytest.raises(ConfigError, match="probability"):
        RandomErasing(1.5)


# ---------------------------------------------------------------------------------------------------------
# the pipeline and the finetune task
# ---------------------------------------------------------------------------------------------------------
def test_pipeline_order_and_one_draw_per_clip():
    base = build_train_transform(16, scale=(0.3, 1.0))
    t = add_augmentation(base, VideoRandAugment("rand-m7-n4-mstd0.5-inc1"), RandomErasing(0.0001))
    names = [n for n, _ in t.steps]
    assert names[0].startswith("VideoRandAugment(rand-m7-n4-mstd0.5-inc1")
    assert names[-2] == "normalize" and names[-1].startswith("random_erasing(p=0.0001, pixel, cube=True)")
    assert not t.deterministic and add_augmentation(base).steps == base.steps
    frames = _same_frames(T=3, H=20, W=24).permute(0, 2, 3, 1).contiguous()  # decoder layout [T, H, W, 3]
    for seed in range(6):
        y = t(frames, derive_rng(seed, 0, 0, "transform"))
        assert y.shape == (3, 3, 16, 16) and y.dtype == torch.float32
        assert torch.equal(y[0], y[1]) and torch.equal(y[0], y[2])  # RandAugment, crop, flip: once per clip
    assert torch.equal(t(frames, derive_rng(1, 0, 0, "transform")), t(frames, derive_rng(1, 0, 0, "transform")))


def _cfg(tmp_path, options=None, data=None, num_sample=1):
    from internvideo2.train.config import config_from_dict

    return config_from_dict({
        "output_dir": str(tmp_path / "run"),
        "task": {"name": "finetune", "options": {"test_num_clips": 1, "test_num_crops": 1, "eval_num": 2,
                                                 **(options or {})}},
        "model": {"preset": "tiny", "overrides": {"drop_path_rate": 0.0}},
        "data": {"options": {"synthetic": True, "num_frames": 2, "image_res": 28, "synth_train": 4,
                             "synth_heldout": 2, **(data or {})}, "num_sample": num_sample},
        "optim": {"lr": 1e-3},
        "train": {"global_batch_size": 2, "max_steps": 1, "device": "cpu", "precision": "fp32"},
        "checkpoint": {"save_final": False, "export_model": False},
        "log": {"tensorboard": False, "plot": False, "progress": False},
    })


def test_data_options_are_typed_and_off_by_default(tmp_path):
    from internvideo2.train.finetune import FinetuneTask

    task = FinetuneTask()
    d = task.data_options(_cfg(tmp_path))
    assert d.rand_augment is None and d.random_erasing == 0.0 and d.random_erasing_cube is True
    for key, value, field in (("rand_augment", "rand-m7-q3", "data.options.rand_augment"),
                              ("random_erasing", 1.5, "data.options.random_erasing"),
                              ("random_erasing_mode", "noise", "data.options.random_erasing_mode"),
                              ("random_erasing_count", 0, "data.options.random_erasing_count"),
                              ("rand_augment_interpolation", "lanczos", "data.options.rand_augment_interpolation")):
        with pytest.raises(ConfigError) as ei:
            task.validate(_cfg(tmp_path, data={key: value}))
        assert ei.value.field == field


def test_num_sample_doubles_the_batch_with_different_augmentations(tmp_path):
    from internvideo2.train.finetune import FinetuneTask

    aug = {"rand_augment": "rand-m7-n4-mstd0.5-inc1", "random_erasing": 0.25}
    task = FinetuneTask()
    ds = task.build_train_dataset(_cfg(tmp_path, data=aug, num_sample=2))
    single = FinetuneTask().build_train_dataset(_cfg(tmp_path, data=aug, num_sample=1))
    items = [ds[i] for i in range(2)]
    assert items[0]["video"].shape == (2, 2, 3, 28, 28)
    for i, it in enumerate(items):
        assert not torch.equal(it["video"][0], it["video"][1])  # two independent augmentations
        assert torch.equal(it["video"][0], single[i]["video"])  # copy 0 = the num_sample=1 stream
        assert torch.equal(it["video"], ds[i]["video"])  # deterministic
    batch = task.collate(items)
    assert batch["video"].shape == (4, 2, 3, 28, 28)
    assert batch["label"].tolist() == [items[0]["label"]] * 2 + [items[1]["label"]] * 2
    assert batch["idx"].tolist() == [0, 0, 1, 1] and batch["path"][0] == batch["path"][1] != batch["path"][2]
    assert torch.equal(batch["video"][1], items[0]["video"][1]) and batch["num_samples"] == 2


def test_engine_run_with_the_official_augmentation_and_repeated_samples(tmp_path):
    """One step of the finetune task with RandAugment, erasing and num_sample 2: the model sees 2 x 2 clips
    and the lr is scaled by num_sample (official rule, lr_scaling linear)."""
    from internvideo2.train.engine import Trainer

    cfg = _cfg(tmp_path, data={"rand_augment": "rand-m7-n4-mstd0.5-inc1", "random_erasing": 0.25},
               num_sample=2)
    cfg.optim.lr_scaling, cfg.optim.lr_scaling_base = "linear", 2
    from internvideo2.train.finetune import FinetuneTask

    seen = []

    class Spy(FinetuneTask):
        def training_step(self, model, batch, ctx):
            seen.append(tuple(batch["video"].shape))
            return super().training_step(model, batch, ctx)

    trainer = Trainer(cfg, task=Spy())
    summary = trainer.fit()
    assert summary["steps"] == 1 and summary["skipped_steps"] == 0
    assert seen == [(4, 2, 3, 28, 28)]
    assert trainer.lr_scale == pytest.approx(2.0)  # global batch 2 x num_sample 2 / base 2


@pytest.mark.parametrize("mode, k", [("linear", 1), ("attentive", 1), ("linear", 2), ("linear", 0)])
def test_open_block_num_unfreezes_exactly_the_last_k_blocks(tmp_path, mode, k):
    from internvideo2.train.finetune import FinetuneTask

    task = FinetuneTask()
    cfg = _cfg(tmp_path, {"mode": mode, "open_block_num": k})
    task.validate(cfg)
    model = task.build_model(cfg)
    depth = len(model.blocks)
    assert depth == 2
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    blocks = {int(n.split(".")[1]) for n in trainable if n.startswith("blocks.")}
    assert blocks == set(range(depth - k, depth))
    for i in blocks:  # the whole block
        assert {n for n, _ in model.blocks[i].named_parameters(prefix=f"blocks.{i}")} <= trainable
    heads = {"fc_norm", "head"} | ({"clip_projector"} if mode == "attentive" else set())
    assert {n.split(".")[0] for n in trainable} == heads | ({"blocks"} if k else set())


def test_open_block_num_is_checked(tmp_path):
    from internvideo2.train.finetune import FinetuneTask

    task = FinetuneTask()
    for options, words in (({"mode": "linear", "open_block_num": 3}, "the model has 2"),
                           ({"mode": "full", "open_block_num": 1}, "only for mode linear or attentive"),
                           ({"mode": "linear", "open_block_num": -1}, ">= 0")):
        with pytest.raises(ConfigError) as ei:
            task.validate(_cfg(tmp_path, options))
        assert ei.value.field == "task.options.open_block_num" and words in ei.value.reason
