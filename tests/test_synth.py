"""The synthetic video world: determinism, held-out split, real files, annotation formats, motion matters."""
from __future__ import annotations

import csv
import hashlib
import json
import subprocess
import sys
from pathlib import Path

import av
import numpy as np
import pytest

from internvideo2.data.synth import (
    CLASSES,
    HELDOUT_PAIRS,
    ClipSpec,
    SynthConfig,
    SynthWorld,
    caption_uniqueness,
    clip_rng,
    generate_world,
    read_world,
    render_clip,
    reverse_spec,
    sample_clip_spec,
)
from internvideo2.data.synth_language import caption_key, clip_beats, make_captions, make_mc_options, make_qa
from internvideo2.data.synth_world import CLASS_BY_NAME, COLOURS, SHAPES
from internvideo2.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]
SMALL = SynthConfig(num_frames=8, size=32)
PAIRS = [(c.name, c.reverse) for c in CLASSES if CLASS_BY_NAME[c.reverse].label > c.label]


def _decode(path: Path) -> tuple[np.ndarray, np.ndarray, av.AudioStream | None]:
    with av.open(str(path)) as c:
        frames = np.stack([f.to_ndarray(format="rgb24") for f in c.decode(video=0)])
    with av.open(str(path)) as c:
        astream = c.streams.audio[0] if c.streams.audio else None
        rate = astream.sample_rate if astream else None
        audio = np.concatenate([f.to_ndarray() for f in c.decode(audio=0)], axis=1)[0] if astream else None
    return frames, audio, rate


def _hashes(d: Path) -> dict[str, str]:
    return {str(p.relative_to(d)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(d.rglob("*")) if p.is_file()}


# ---------------------------------------------------------------------------------------------------------
# specs and determinism
# ---------------------------------------------------------------------------------------------------------


def test_same_seed_same_spec_and_frames_other_seed_differs():
    a = SynthWorld(seed=3, split="train", cfg=SMALL)
    b = SynthWorld(seed=3, split="train", cfg=SMALL)
    c = SynthWorld(seed=4, split="train", cfg=SMALL)
    for i in range(5):
        assert a.spec(i).to_dict() == b.spec(i).to_dict()
        assert np.array_equal(a.render(i).frames, b.render(i).frames)
        assert np.array_equal(a.render(i).audio, b.render(i).audio)
        assert json.dumps(a.record(i)) == json.dumps(b.record(i))
    assert [a.spec(i).to_dict() for i in range(5)] != [c.spec(i).to_dict() for i in range(5)]
    # clip i does not depend on how many clips are asked for or on the order of requests
    assert sample_clip_spec(clip_rng(3, "train", 4), "train").to_dict() == a.spec(4).to_dict()


def test_spec_json_round_trip_renders_the_same():
    for i in range(14):
        spec = SynthWorld(seed=1, split="heldout").spec(i)
        back = ClipSpec.from_dict(json.loads(json.dumps(spec.to_dict())))
        assert back.to_dict() == spec.to_dict()
        assert np.array_equal(render_clip(back, SMALL).frames, render_clip(spec, SMALL).frames)


def test_bad_spec_and_config_raise_typed_errors():
    d = SynthWorld(seed=0).spec(0).to_dict()
    d["objects"][0]["colour"] = "mauve"
    with pytest.raises(ConfigError, match=r"spec.objects\[0\].colour"):
        ClipSpec.from_dict(d)
    d = SynthWorld(seed=0).spec(0).to_dict()
    del d["events"]
    with pytest.raises(ConfigError, match="spec.events"):
        ClipSpec.from_dict(d)
    with pytest.raises(ConfigError, match="size"):
        SynthConfig(size=63).validate()
    with pytest.raises(ConfigError, match="split"):
        sample_clip_spec(np.random.default_rng(0), "test")


def test_every_class_renders_with_frames_and_audio_in_range():
    cfg = SynthConfig(num_frames=8, size=56)
    for c in CLASSES:
        spec = sample_clip_spec(np.random.default_rng(c.label), "train", class_name=c.name)
        assert spec.label == c.label and len(spec.objects) == c.objects
        clip = render_clip(spec, cfg)
        assert clip.frames.shape == (8, 56, 56, 3) and clip.frames.dtype == np.uint8
        assert clip.audio.dtype == np.float32 and clip.audio.shape == (32000,)
        assert np.abs(clip.audio).max() <= 1.0 and np.abs(clip.audio).max() > 0.05  # events make sound
        # the objects are visible: some pixels are far from the background of the first frame's corner
        assert (np.abs(clip.frames.astype(int) - clip.frames[:, :1, :1].astype(int)).max(-1) > 60).any()


def test_audio_is_silent_outside_events():
    spec = sample_clip_spec(np.random.default_rng(0), "train", class_name="appearing")
    clip = render_clip(spec, SynthConfig())
    e = spec.events[0]
    n = len(clip.audio)
    before = clip.audio[: int(e.t0 * n) - 1]
    during = clip.audio[int(e.t0 * n) + 400: int(e.t1 * n) - 400]
    assert np.all(before == 0) and np.abs(during).max() > 0.1


# ---------------------------------------------------------------------------------------------------------
# held-out split
# ---------------------------------------------------------------------------------------------------------


def test_heldout_pairs_never_in_train_or_val_and_always_in_heldout():
    held = set(HELDOUT_PAIRS)
    for split in ("train", "val"):
        w = SynthWorld(seed=0, split=split)
        for i in range(400):
            assert not {(o.colour, o.shape) for o in w.spec(i).objects} & held, (split, i)
    w = SynthWorld(seed=0, split="heldout")
    labels = set()
    for i in range(400):
        spec = w.spec(i)
        labels.add(spec.label)
        acting = {(spec.objects[e.obj].colour, spec.objects[e.obj].shape) for e in spec.events}
        assert acting & held, i
    assert labels == {c.label for c in CLASSES}  # every class occurs in the held-out split
    # every colour and every shape still occurs in training (only the combinations are new)
    train = [SynthWorld(seed=0, split="train").spec(i) for i in range(300)]
    assert {o.colour for s in train for o in s.objects} == set(COLOURS)
    assert {o.shape for s in train for o in s.objects} == set(SHAPES)


def test_heldout_captions_mostly_unique_among_100():
    fracs = [caption_uniqueness([SynthWorld(seed=s, split="heldout").spec(i) for i in range(100)])
             for s in range(3)]
    assert min(fracs) >= 0.85, fracs


# ---------------------------------------------------------------------------------------------------------
# captions and QA
# ---------------------------------------------------------------------------------------------------------


def test_captions_name_the_attributes():
    w = SynthWorld(seed=2, split="train")
    for i in range(60):
        spec = w.spec(i)
        caps = make_captions(spec)
        assert len(caps) >= 3 and len(set(caps)) == len(caps)
        assert any(c.startswith(("first", "at first")) for c in caps)  # temporal phrasing
        for b in clip_beats(spec):
            for c in caps:
                assert b["colour"] in c and b["shape"] in c, (c, b)
                if b["size"]:
                    assert b["size"] in c, (c, b)
                if b["kind"] == "move":
                    assert b["direction"] in c, (c, b)
                if b["kind"] in ("spin", "bounce"):
                    assert b["direction"] in c, (c, b)
        if len(spec.objects) == 2:  # order captions name the first event before "then"/"before"
            a, b = clip_beats(spec)
            c0 = caps[0]
            assert c0.index(f"{a['colour']} {a['shape']}") < c0.index(f"{b['colour']} {b['shape']}")


def test_qa_and_mc_are_well_formed_and_correct():
    w = SynthWorld(seed=5, split="heldout")
    types = set()
    for i in range(60):
        spec = w.spec(i)
        for q in make_qa(spec):
            types.add(q["type"])
            assert 2 <= len(q["options"]) <= 5 and len(set(q["options"])) == len(q["options"])
            assert 0 <= q["answer"] < len(q["options"])
            ans = q["options"][q["answer"]]
            if q["type"] == "count":
                assert ans == ("one", "two")[len(spec.objects) - 1]
            if q["type"] == "colour":
                assert ans == clip_beats(spec)[0]["colour"]
            if q["type"] == "direction" and spec.events[0].kind == "move" and len(spec.objects) == 1:
                assert ans == spec.events[0].direction
        opts, ans = make_mc_options(spec)
        assert len(opts) == 5 and len(set(opts)) == 5 and opts[ans] == make_captions(spec)[0]
        # the time-reversed clip's caption is a distractor (except for bounces, which reverse to bounces)
        if spec.class_name != "bouncing":
            assert make_captions(reverse_spec(spec))[0] in opts
    assert types == {"event", "direction", "order", "colour", "shape", "count"}


# ---------------------------------------------------------------------------------------------------------
# motion matters
# ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name,reverse", PAIRS)
def test_reversal_pairs_have_the_same_frames_in_reverse_order(name, reverse):
    """For each class pair (left/right, up/down, appear/disappear, grow/shrink, A-then-B/B-then-A), a clip
    of one class, played backwards, is exactly a clip of the other class, and the sampler draws the second
    class by reversing a draw of the first. So both classes have the same distribution of single frames
    (and of unordered frame sets): only the order of frames tells them apart."""
    cfg = SynthConfig(num_frames=8, size=48)
    for k in range(4):
        a = sample_clip_spec(np.random.default_rng([k, 7]), "train", class_name=name)
        b = sample_clip_spec(np.random.default_rng([k, 7]), "train", class_name=reverse)
        assert b.to_dict() == reverse_spec(a).to_dict()
        fa, fb = render_clip(a, cfg).frames, render_clip(b, cfg).frames
        assert np.abs(fa.astype(int) - fb[::-1].astype(int)).max() <= 1
        assert not np.array_equal(fa, fb)  # but they are different clips
        assert caption_key(a) != caption_key(b) and make_captions(a)[0] != make_captions(b)[0]


def test_single_frame_cannot_tell_left_from_right_but_two_frames_can():
    """A classifier on one frame (the object's horizontal position) is at chance on moving left vs right;
    the displacement between the first and last frames solves it."""
    cfg = SynthConfig(num_frames=8, size=32)
    xs_single, ys_single, disp, ys = [], [], [], []
    rng = np.random.default_rng(0)
    for k in range(120):
        name = ("moving left", "moving right")[k % 2]
        spec = sample_clip_spec(np.random.default_rng([k, 11]), "train", class_name=name)
        spec.camera.kind, spec.camera.pan_x, spec.camera.pan_y, spec.camera.shake = "static", 0.0, 0.0, []
        spec.camera.x0 = spec.camera.y0 = 0.0
        spec.background.kind = "plain"
        fr = render_clip(spec, cfg).frames.astype(float)
        mass = np.abs(fr - fr[:, :1, :1]).sum(-1)  # object pixels
        cx = (mass.sum(1) * np.arange(32)).sum(1) / mass.sum((1, 2))
        t = int(rng.integers(8))
        xs_single.append(cx[t])
        ys_single.append(k % 2)
        disp.append(cx[-1] - cx[0])
        ys.append(k % 2)
    xs_single, ys_single, disp, ys = map(np.asarray, (xs_single, ys_single, disp, ys))
    # best threshold on the single-frame feature, fitted on the first half and tested on the second
    tr, te = slice(0, 60), slice(60, 120)
    best = max(((xs_single[tr] > th) == ys_single[tr]).mean() for th in np.unique(xs_single[tr]))
    ths = np.unique(xs_single[tr])
    th = ths[np.argmax([((xs_single[tr] > t) == ys_single[tr]).mean() for t in ths])]
    single_test = ((xs_single[te] > th) == ys_single[te]).mean()
    assert best < 0.8 and single_test < 0.7, (best, single_test)
    assert ((disp > 0) == ys).mean() == 1.0


# ---------------------------------------------------------------------------------------------------------
# files
# ---------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    out = tmp_path_factory.mktemp("synth")
    cfg = SynthConfig(num_frames=8, size=64)
    s = generate_world(out, 6, seed=9, split="heldout", cfg=cfg, progress=False)
    return out, s, cfg


def test_written_mp4s_decode_to_the_rendered_clips(world):
    out, summary, cfg = world
    w = SynthWorld(seed=9, split="heldout", cfg=cfg)
    for i in range(6):
        path = out / "videos" / "heldout" / f"{i:06d}.mp4"
        with av.open(str(path)) as c:
            assert c.streams.video[0].codec_context.name == "h264"
            assert c.streams.audio[0].codec_context.name == "aac"
        frames, audio, rate = _decode(path)
        clip = w.render(i)
        assert frames.shape == (8, 64, 64, 3)
        assert np.abs(frames.astype(float) - clip.frames).mean() < 4.0
        assert rate == 16000 and audio is not None
        assert abs(len(audio) - len(clip.audio)) <= 1024
        n = min(len(audio), len(clip.audio))
        assert np.abs(audio[:n] - clip.audio[:n]).mean() < 0.01
    from internvideo2.utils.io import is_tmp_name

    assert not [p for p in out.rglob("*") if is_tmp_name(p.name)]  # every temporary file was committed


def test_annotation_files_parse_and_agree(world):
    out, summary, cfg = world
    vt = json.loads((out / "heldout.json").read_text())
    recs = read_world(out, "heldout")
    classes = json.loads((out / "classes.json").read_text())
    assert [c["name"] for c in classes] == [c.name for c in CLASSES]
    assert all(c["description"] for c in classes)
    with open(out / "heldout_cls.csv", newline="") as f:
        rows = list(csv.reader(f))
    mc = json.loads((out / "heldout_mc.json").read_text())
    cls_json = json.loads((out / "heldout_cls.json").read_text())
    meta = json.loads((out / "heldout_meta.json").read_text())
    assert rows[0] == ["path", "label"] and len(rows) == 7
    assert len(vt) == len(recs) == len(mc) == len(cls_json) == 6 == meta["num_clips"]
    for i, (v, r, row, m, cj) in enumerate(zip(vt, recs, rows[1:], mc, cls_json)):
        assert v["video"] == r["video"] == row[0] == m["video"] == cj["video"]
        assert v["video"] == f"videos/heldout/{i:06d}.mp4"
        assert (out / v["video"]).is_file()
        assert isinstance(v["caption"], list) and len(v["caption"]) >= 3
        assert v["label"] == r["label"] == int(row[1]) and classes[v["label"]]["name"] == v["label_name"]
        assert cj["caption"] == v["label_name"]
        assert len(m["caption"]) == 5 and m["caption"][m["answer"]] == v["caption"][0]
        assert v["qa"] and all({"question", "options", "answer", "type"} <= set(q) for q in v["qa"])
        spec = r["spec_obj"]
        assert make_captions(spec) == v["caption"]  # the stored spec regenerates the annotations
        assert spec.split == "heldout"


def test_generation_is_byte_identical_and_independent_of_workers(tmp_path, world):
    out, _, cfg = world
    a = tmp_path / "a"
    generate_world(a, 6, seed=9, split="heldout", cfg=cfg, progress=False, workers=2)
    assert _hashes(a) == _hashes(out)


def test_cli_writes_a_world(tmp_path):
    out = tmp_path / "w"
    cmd = [sys.executable, "-m", "internvideo2.cli", "synth", "--out", str(out)]
    r = subprocess.run(cmd + ["--num", "3,2", "--seed", "1", "--split", "train,heldout", "--size", "32",
                              "--frames", "4", "--quiet"], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert r.returncode == 0, r.stderr
    lines = [json.loads(x) for x in r.stdout.splitlines()]
    assert [x["split"] for x in lines] == ["train", "heldout"]
    frames, audio, _ = _decode(out / "videos" / "train" / "000002.mp4")
    assert frames.shape == (4, 32, 32, 3) and audio is not None
    assert len(json.loads((out / "heldout.json").read_text())) == 2
    bad = subprocess.run(cmd + ["--size", "33"], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert bad.returncode == 2 and "size" in bad.stderr
