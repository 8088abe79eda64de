"""Map-style datasets, the distributed sampler, determinism per (seed, epoch, index), and the bad-sample
policy with real DataLoader workers over real clips mixed with corrupt files."""
from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from internvideo2.data.datasets import (
    BadSample,
    BadSamplePolicy,
    BadSampleTracker,
    ClipDataset,
    DataQualityError,
    DistributedIndexSampler,
    RetrievalEvalDataset,
    VideoClassificationDataset,
    VideoQADataset,
    VideoTextDataset,
    collate_skip_bad,
)
from internvideo2.data.transforms import build_eval_transform, build_train_transform
from internvideo2.errors import ConfigError, InternVideo2Error

N_FRAMES = 16


def frame_value(i: int) -> int:
    """Grey level of frame i of the generated clips (so decoded frames tell which index they are)."""
    return 8 + 15 * i


def make_clip(path, frames: int = N_FRAMES, size: int = 32, fps: int = 8, audio: bool = False) -> str:
    """Tiny MPEG-4 clip whose frame i is uniformly grey ``frame_value(i)``; optional 16 kHz AAC tone."""
    c = av.open(str(path), "w")
    vs = c.add_stream("mpeg4", rate=fps)
    vs.width = vs.height = size
    vs.pix_fmt = "yuv420p"
    if audio:
        a = c.add_stream("aac", rate=16000)
        a.layout = "mono"
    for i in range(frames):
        img = np.full((size, size, 3), frame_value(i), np.uint8)
        for p in vs.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
            c.mux(p)
    for p in vs.encode():
        c.mux(p)
    if audio:
        n = 16000 * frames // fps
        w = (0.3 * np.sin(2 * np.pi * 440 * np.arange(n) / 16000)).astype(np.float32)
        fr = av.AudioFrame.from_ndarray(w[None], format="fltp", layout="mono")
        fr.sample_rate = 16000
        fr.pts = 0
        for p in a.encode(fr):
            c.mux(p)
        for p in a.encode():
            c.mux(p)
    c.close()
    return str(path)


def frame_ids(video: torch.Tensor) -> list[int]:
    """Frame indices of a float [T, 3, H, W] clip in [0, 1] made by :func:`make_clip`."""
    means = (video.mean(dim=(1, 2, 3)) * 255).tolist()
    return [int(round((m - 8) / 15)) for m in means]


def make_corrupt(folder, good_clip: str) -> dict[str, str]:
    """Broken files of the kinds users meet: zero bytes, random bytes, truncated, text named .mp4, missing."""
    data = Path(good_clip).read_bytes()
    out = {
        "empty": folder / "empty.mp4",
        "random": folder / "random.mp4",
        "truncated": folder / "truncated.mp4",
        "text": folder / "text.mp4",
    }
    out["empty"].write_bytes(b"")
    out["random"].write_bytes(np.random.default_rng(0).integers(0, 256, 3000, dtype=np.uint8).tobytes())
    out["truncated"].write_bytes(data[: len(data) // 3])
    out["text"].write_text("this is not a video\n" * 20)
    res = {k: str(v) for k, v in out.items()}
    res["missing"] = str(folder / "missing.mp4")
    return res


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    d = tmp_path_factory.mktemp("clips")
    good = [make_clip(d / f"clip{i}.mp4") for i in range(6)]
    with_audio = make_clip(d / "audio.mp4", audio=True)
    return {"dir": d, "good": good, "audio": with_audio, "bad": make_corrupt(d, good[0])}


def _write(path, rows):
    path.write_text(json.dumps(rows))
    return path


# ------------------------------------------------------------------------------------------ sampler, seeds


def test_sampler_padding_modes_partition_the_data():
    n, r = 10, 3
    per = {}
    for padding in ("repeat", "drop", "none"):
        per[padding] = [list(DistributedIndexSampler(n, r, k, seed=5, padding=padding)) for k in range(r)]
    rep = per["repeat"]
    assert [len(x) for x in rep] == [4, 4, 4] and sorted(set(sum(rep, []))) == list(range(n))
    drop = per["drop"]
    assert [len(x) for x in drop] == [3, 3, 3] and len(set(sum(drop, []))) == 9
    none = per["none"]
    assert [len(x) for x in none] == [4, 3, 3] and sorted(sum(none, [])) == list(range(n))
    # the same permutation on every rank, new one every epoch
    s = DistributedIndexSampler(n, r, 0, seed=5)
    assert list(s) == rep[0]
    s.set_epoch(1)
    assert list(s) != rep[0]
    # resume in mid-epoch: skip what this rank already consumed
    s.set_epoch(1, start=2)
    full = DistributedIndexSampler(n, r, 0, seed=5)
    full.set_epoch(1)
    assert list(s) == list(full)[2:] and len(s) == 2
    s2 = DistributedIndexSampler(n, 2, 1, shuffle=False, with_epoch=True)
    s2.set_epoch(7)
    assert list(s2) == [(1, 7), (3, 7), (5, 7), (7, 7), (9, 7)]
    with pytest.raises(ConfigError):
        DistributedIndexSampler(n, 2, 2)


def test_sample_draws_follow_the_seed_rule(tmp_path):
    """A dataset's per-sample stream is ``derive_rng(seed, epoch, index, purpose)`` (the package's one rule)."""
    from internvideo2.utils.seeding import derive_rng

    ds = ClipDataset.__new__(ClipDataset)
    ds.seed, ds.epoch = 3, 2
    assert ds.rng(5, "frames").random() == derive_rng(3, 2, 5, "frames").random()
    assert ds.rng(5, "frames", epoch=7).random() == derive_rng(3, 7, 5, "frames").random()
    assert ds.rng(5, "frames").random() != ds.rng(5, "caption").random()


# --------------------------------------------------------------------------------------- video-text data


def test_video_text_dataset_items_and_determinism(clips, tmp_path):
    rows = [{"video": os.path.basename(p), "caption": [f"Clip {i}: a dog-walk!", f"second caption {i}"]}
            for i, p in enumerate(clips["good"])]
    ann = _write(tmp_path / "train.json", rows)
    ds = VideoTextDataset(ann, data_root=clips["dir"], num_frames=4, sample="rand", seed=3)
    assert len(ds) == 6
    it = ds[2]
    assert set(it) == {"video", "caption", "idx", "path"}
    assert it["video"].shape == (4, 3, 32, 32) and it["video"].dtype == torch.float32
    assert it["caption"] in ("clip 2 a dog walk", "second caption 2") and it["idx"] == 2
    ids = frame_ids(it["video"])
    # 'rand': one frame per quarter, never the last frame of a bin (official P17)
    assert all(4 * k <= f <= 4 * k + 2 for k, f in enumerate(ids)), ids
    # the same (seed, epoch, index) gives the same sample; other epochs draw again
    again = ds[2]
    assert torch.equal(it["video"], again["video"]) and it["caption"] == again["caption"]
    draws = set()
    for e in range(6):
        ds.set_epoch(e)
        draws.add(tuple(frame_ids(ds[2]["video"])))
    assert len(draws) > 1
    ds.set_epoch(5)
    assert torch.equal(ds[(2, 0)]["video"], it["video"])  # (index, epoch) keys override the epoch
    # captions are sampled uniformly, per sample and epoch
    caps = {ds[(0, e)]["caption"] for e in range(12)}
    assert caps == {"clip 0 a dog walk", "second caption 0"}


def test_dataloader_workers_give_identical_batches(clips, tmp_path):
    rows = [{"video": p, "caption": f"caption number {i}"} for i, p in enumerate(clips["good"])]
    ann = _write(tmp_path / "t.json", rows)
    tf = build_train_transform(24, scale=(0.5, 1.0), flip=True)
    ds = VideoTextDataset(ann, num_frames=4, sample="rand", transform=tf, seed=11)
    out = {}
    for nw in (0, 2):
        sampler = DistributedIndexSampler(ds, 1, 0, seed=11, with_epoch=True)
        sampler.set_epoch(3)
        dl = DataLoader(ds, batch_size=3, sampler=sampler, num_workers=nw, collate_fn=collate_skip_bad)
        out[nw] = list(dl)
    assert len(out[0]) == len(out[2]) == 2
    for a, b in zip(out[0], out[2]):
        assert a["video"].shape == (3, 4, 3, 24, 24)
        assert torch.equal(a["video"], b["video"]) and a["idx"].tolist() == b["idx"].tolist()
        assert a["num_bad"] == 0 and a["num_samples"] == 3


# ---------------------------------------------------------------------------------------- bad samples


@pytest.mark.parametrize("num_workers", [0, 2])
def test_bad_samples_are_skipped_counted_and_logged(clips, tmp_path, caplog, num_workers):
    bad = clips["bad"]
    paths = clips["good"] + list(bad.values())
    rows = [{"video": p, "caption": f"caption {i} here"} for i, p in enumerate(paths)]
    ds = VideoTextDataset(_write(tmp_path / "mix.json", rows), num_frames=4, sample="middle", seed=0)
    dl = DataLoader(ds, batch_size=4, shuffle=False, num_workers=num_workers, collate_fn=collate_skip_bad)
    tracker = BadSampleTracker(BadSamplePolicy(max_fraction=0.5, min_samples=4), name="mix")
    good_idx, good_paths = [], []
    with caplog.at_level(logging.WARNING, logger="internvideo2.data"):
        for batch in dl:
            n_good = tracker.update(batch)
            if n_good:
                assert batch["video"].shape[0] == n_good
                good_idx += batch["idx"].tolist()
                good_paths += batch["path"]
    # nothing replaced: exactly the good clips, once each
    assert sorted(good_idx) == list(range(6)) and sorted(good_paths) == sorted(clips["good"])
    assert tracker.seen == 11 and tracker.bad == 5
    assert sorted(p for p, _ in tracker.examples) == sorted(bad.values())
    reasons = dict(tracker.examples)
    assert reasons[bad["missing"]] == "not_found" and reasons[bad["empty"]] == "empty_file"
    logged = " ".join(r.getMessage() for r in caplog.records)
    for p in bad.values():
        assert p in logged


def test_tracker_fails_loudly_past_max_fraction(clips, tmp_path):
    paths = clips["good"] + list(clips["bad"].values())
    rows = [{"video": p, "caption": f"caption {i} here"} for i, p in enumerate(paths)]
    ds = VideoTextDataset(_write(tmp_path / "mix.json", rows), num_frames=2, sample="middle")
    dl = DataLoader(ds, batch_size=2, num_workers=2, collate_fn=collate_skip_bad)
    tracker = BadSampleTracker(BadSamplePolicy(max_fraction=0.2, min_samples=8))
    with pytest.raises(DataQualityError) as ei:
        for batch in dl:
            tracker.update(batch)
    e = ei.value
    assert isinstance(e, InternVideo2Error) and e.seen >= 8 and e.bad / e.seen > 0.2
    assert "not_found" in str(e) or "empty_file" in str(e)
    # the counts survive a resume
    t2 = BadSampleTracker()
    t2.load_state_dict(tracker.state_dict())
    assert (t2.seen, t2.bad) == (tracker.seen, tracker.bad)
    # with skip_bad=False the typed error surfaces directly
    strict = VideoTextDataset(
        _write(tmp_path / "one.json", [{"video": clips["bad"]["random"], "caption": "a b"}]), skip_bad=False
    )
    with pytest.raises(InternVideo2Error):
        strict[0]
    with pytest.raises(ConfigError):
        BadSamplePolicy(max_fraction=1.5)


def test_min_samples_delays_the_verdict():
    t = BadSampleTracker(BadSamplePolicy(max_fraction=0.05, min_samples=20))
    t.add(10, [("a.mp4", "empty_file")])  # 10 % bad, but only 10 samples seen: no verdict yet
    t.add(10)  # 20 seen, 1 bad = 5 %: not above the limit
    assert t.fraction == 0.05
    with pytest.raises(DataQualityError) as ei:
        t.add(1, [("b.mp4", "invalid_data")])  # 2 of 21 > 5 %
    assert ei.value.reasons == {"empty_file": 1, "invalid_data": 1} and "b.mp4" in str(ei.value)


# ------------------------------------------------------------------------------- other dataset classes


def test_frame_range_and_time_range(clips, tmp_path):
    rows = [
        {
            "video": clips["good"][0],
            "caption": "frames eight on",
            "video_start_frame": 8,
            "video_end_frame": 15,
        },
        {"video": clips["good"][1], "caption": "the first second", "start": 0.0, "end": 1.0},
    ]
    ds = VideoTextDataset(_write(tmp_path / "r.json", rows), num_frames=4, sample="middle")
    assert frame_ids(ds[0]["video"]) == [8, 10, 12, 14]
    assert frame_ids(ds[1]["video"]) == [0, 2, 4, 6]  # 8 fps: frames 0..7


def test_classification_retrieval_and_qa_datasets(clips, tmp_path):
    g = clips["good"]
    csv_p = tmp_path / "cls.csv"
    csv_p.write_text("".join(f"{p},{i % 3}\n" for i, p in enumerate(g)))
    cls = VideoClassificationDataset(csv_p, num_frames=8, sample="middle",
                                     transform=build_eval_transform(16, mode="center_crop"))
    it = cls[4]
    assert it["video"].shape == (8, 3, 16, 16) and it["label"] == 1 and it["path"] == g[4]

    ret_p = _write(tmp_path / "ret.json", [{"video": g[0], "caption": ["A cat.", "a CAT sits"]},
                                           {"video": g[1], "caption": "a dog"}])
    ret = RetrievalEvalDataset(ret_p, num_frames=4)
    assert (
        ret.texts == ["a cat", "a cat sits", "a dog"]
        and ret.txt2vid == [0, 0, 1]
        and ret.vid2txt == [[0, 1], [2]]
    )
    assert len(ret) == 2 and frame_ids(ret[1]["video"]) == [1, 5, 9, 13]  # 'middle' by default

    mc_p = _write(
        tmp_path / "mc.json", [{"video": g[2], "caption": ["A dog.", "A cat!", "Birds"], "answer": 1}]
    )
    qa = VideoQADataset(mc_p, num_frames=2)
    q = qa[0]
    assert q["options"] == ["a dog", "a cat", "birds"] and q["answer"] == 1 and q["video"].shape[0] == 2
    it_p = _write(
        tmp_path / "it.json", [{"video": g[3], "QA": [{"i": "Describe", "q": "", "a": "A grey clip."}]}]
    )
    inst = VideoQADataset(it_p, num_frames=2)
    assert inst[0]["qa"] == [{"i": "Describe", "q": "", "a": "A grey clip."}]
    b = collate_skip_bad([qa[0], qa[0]])
    assert b["answer"].tolist() == [1, 1] and b["options"][1][2] == "birds"


def test_image_records(tmp_path):
    p = tmp_path / "im.png"
    c = av.open(str(p), "w", format="image2")
    s = c.add_stream("png")
    s.width, s.height, s.pix_fmt = 20, 10, "rgb24"
    img = np.zeros((10, 20, 3), np.uint8)
    img[:, 10:] = 200
    for pk in s.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
        c.mux(pk)
    for pk in s.encode():
        c.mux(pk)
    c.close()
    ann = _write(
        tmp_path / "img.json",
        [
            {"image": "im.png", "caption": "a half white image", "crop_bbox": [10, 0, 20, 10]},
            {"image": "im.png", "caption": "whole image"},
        ],
    )
    ds = VideoTextDataset(ann, media_key="image")
    a, b = ds[0], ds[1]
    assert a["video"].shape == (1, 3, 10, 10) and abs(a["video"].mean().item() - 200 / 255) < 1e-6
    assert b["video"].shape == (1, 3, 10, 20)


def test_audio_option(clips, tmp_path):
    rows = [
        {"video": clips["audio"], "caption": "a tone plays"},
        {"video": clips["good"][0], "caption": "no sound"},
    ]
    ann = _write(tmp_path / "av.json", rows)
    ds = VideoTextDataset(ann, num_frames=2, audio=True)
    it = ds[0]
    assert it["audio"].shape == (998, 64) and 190 <= it["audio_valid_frames"] <= 210
    assert torch.count_nonzero(it["audio"][it["audio_valid_frames"]:]) == 0
    bad = ds[1]
    assert isinstance(bad, BadSample) and bad.reason == "no_audio_stream" and bad.path == clips["good"][0]
    lenient = VideoTextDataset(ann, num_frames=2, audio=True, zero_audio_if_missing=True)
    z = lenient[1]
    assert z["audio_valid_frames"] == 0 and torch.count_nonzero(z["audio"]) == 0


def test_cache_gives_the_same_samples_as_decoding(tmp_path):
    """``cache=True`` decodes each clip once and samples from memory: identical items, fewer decodes."""
    clips = [make_clip(tmp_path / f"c{i}.mp4") for i in range(3)]
    ann = tmp_path / "ann.json"
    ann.write_text(json.dumps([{"video": Path(c).name, "caption": f"clip number {i}"} for i, c in enumerate(clips)]))
    plain = VideoTextDataset(ann, tmp_path, num_frames=4, sample="rand", seed=3)
    cached = VideoTextDataset(ann, tmp_path, num_frames=4, sample="rand", seed=3, cache=True)
    for epoch in range(3):
        plain.set_epoch(epoch)
        cached.set_epoch(epoch)
        for i in range(3):
            a, b = plain[i], cached[i]
            assert torch.equal(a["video"], b["video"]) and a["caption"] == b["caption"]
    assert sum(k[0].startswith(str(tmp_path)) for k in ClipDataset._CACHE) == 3
    # a second dataset over the same files reuses the decoded clips
    again = VideoTextDataset(ann, tmp_path, num_frames=4, sample="rand", seed=3, cache=True)
    assert torch.equal(again[(0, 1)]["video"], cached[(0, 1)]["video"])
    assert sum(k[0].startswith(str(tmp_path)) for k in ClipDataset._CACHE) == 3
    bad = tmp_path / "bad.json"
    (tmp_path / "junk.mp4").write_bytes(b"\x00" * 100)
    bad.write_text(json.dumps([{"video": "junk.mp4", "caption": "broken file here"}]))
    assert isinstance(VideoTextDataset(bad, tmp_path, cache=True)[0], BadSample)
