"""``internvideo2 embed`` / ``embed_videos``: equality with direct model calls, window and shot timestamps,
corrupt files, the bad-file limit, and resume after SIGKILL in a real subprocess."""
from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import asset

import internvideo2
from internvideo2.data.datasets import DataQualityError
from internvideo2.data.sampling import get_frame_indices
from internvideo2.data.segment import detect_shots
from internvideo2.data.synth import RenderedClip, SynthConfig, SynthWorld, generate_world, write_clip
from internvideo2.data.video import frame_range, probe_video, read_clip, read_frames, sliding_windows
from internvideo2.embed import embed_videos, find_videos
from internvideo2.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]


# ---------------------------------------------------------------------------------------------------------
# fixtures: generated clips and a saved tiny model (random init, explicitly)
# ---------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    """12 synthetic clips: 8 frames, 64 px, 4 fps (2 s), no audio."""
    out = tmp_path_factory.mktemp("world")
    generate_world(out, 12, seed=3, cfg=SynthConfig(num_frames=8, size=64, audio=False), progress=False)
    return out / "videos" / "train"


@pytest.fixture(scope="module")
def tiny_model():
    torch.manual_seed(0)
    return internvideo2.create_model("tiny").eval()  # random weights: a pipeline test, not a quality test


@pytest.fixture(scope="module")
def saved_model(tmp_path_factory, tiny_model) -> Path:
    d = tmp_path_factory.mktemp("model")
    internvideo2.save_pretrained(tiny_model, d)
    return d


@contextlib.contextmanager
def _threads(n: int):
    """Run the direct model calls with the pipeline's thread count (results can differ in the last bits
    between thread counts)."""
    old = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


def _direct(model, path, frames, indices=None):
    """The model called by hand on the frames the pipeline should use: (pooled [D], tokens [1+N, C])."""
    if indices is None:
        clip, indices, _ = read_clip(path, frames, "middle")
    else:
        clip = read_frames(path, indices)
    e = model.encode_video(clip)
    return e.pooled[0].numpy(), e.tokens[0].numpy(), indices


def _corrupt_files(folder: Path, good: Path) -> dict[str, str]:
    """Random bytes, a truncated copy of a good MP4, an empty file: name -> expected reason."""
    rng = np.random.default_rng(0)
    (folder / "random.mp4").write_bytes(rng.integers(0, 256, 4096, dtype=np.uint8).tobytes())
    data = good.read_bytes()
    (folder / "truncated.mp4").write_bytes(data[: len(data) // 2])
    (folder / "empty.mkv").write_bytes(b"")
    return {"random.mp4": "invalid_data", "truncated.mp4": "invalid_data", "empty.mkv": "empty_file"}


# ---------------------------------------------------------------------------------------------------------
# inputs
# ---------------------------------------------------------------------------------------------------------
def test_find_videos_walks_folders_sorted_and_keeps_named_files(tmp_path):
    (tmp_path / "b").mkdir()
    (tmp_path / "a" / "deep").mkdir(parents=True)
    (tmp_path / ".hidden").mkdir()
    for rel in ("b/2.MP4", "b/1.webm", "a/deep/x.mkv", "a/notes.txt", ".hidden/h.mp4", "a/.h.mp4"):
        (tmp_path / rel).write_bytes(b"x")
    named = tmp_path / "clip.bin"
    named.write_bytes(b"x")
    got = find_videos([tmp_path, named, tmp_path / "b" / "1.webm"])
    rel = [os.path.relpath(p, tmp_path) for p in got]
    assert rel == ["a/deep/x.mkv", "b/1.webm", "b/2.MP4", "clip.bin"]  # sorted walk, deduplicated
    with pytest.raises(ConfigError, match="no such file"):
        find_videos([tmp_path / "missing.mp4"])


# ---------------------------------------------------------------------------------------------------------
# numbers: the pipeline equals the model called by hand
# ---------------------------------------------------------------------------------------------------------
def test_clip_mode_equals_direct_model_calls(world, tiny_model):
    files = sorted(world.glob("*.mp4"))[:5]
    # batch 1: the very same computation as encode_video, bit for bit
    r1 = embed_videos(files, tiny_model, batch_size=1, workers=1, threads=1, progress=False, tokens=True)
    with _threads(1):
        for row, f in zip(r1.index, files):
            pooled, tokens, idx = _direct(tiny_model, f, 4)
            assert row["path"] == os.path.abspath(f) and row["video"] == f.name and row["item"] == 0
            assert row["frame_indices"] == idx == get_frame_indices(4, 8, "middle") == [0, 2, 4, 6]
            assert row["start_s"] == 0.0 and row["end_s"] == pytest.approx(2.0)
            np.testing.assert_array_equal(r1.embeddings[row["row"]], pooled)
            np.testing.assert_array_equal(r1.tokens_of(row["row"]), tokens)
    assert r1.embeddings.dtype == np.float32 and r1.embeddings.shape == (5, 64)
    assert r1.tokens.shape == (5, 1 + 4 * 16, 96)
    # batched, two workers: equal to the direct calls up to float rounding, and deterministic
    r4 = embed_videos(files, tiny_model, batch_size=4, workers=2, progress=False)
    np.testing.assert_allclose(r4.embeddings, r1.embeddings, rtol=0, atol=1e-5)
    r4b = embed_videos(files, tiny_model, batch_size=4, workers=1, progress=False)
    np.testing.assert_array_equal(r4.embeddings, r4b.embeddings)
    # --normalize: unit rows
    rn = embed_videos(files[:2], tiny_model, batch_size=1, workers=0, progress=False, normalize=True)
    np.testing.assert_allclose(np.linalg.norm(rn.embeddings, axis=1), 1.0, atol=1e-6)


def test_real_asset_clip_mode_matches_direct_call(tiny_model):
    path = asset("video/example1.mp4")  # mp4v, 640x480, 40 frames
    r = embed_videos([path], tiny_model, frames=8, batch_size=1, workers=1, threads=1, progress=False)
    with _threads(1):
        pooled, _, idx = _direct(tiny_model, path, 8)
    assert r.index[0]["frame_indices"] == idx == get_frame_indices(8, 40, "middle")
    assert r.index[0]["end_s"] == pytest.approx(8.0)
    np.testing.assert_array_equal(r.embeddings[0], pooled)


def test_stage2_model_gives_its_normalised_projected_feature(world):
    from internvideo2.models import PretrainConfig, vision_config
    from internvideo2.models.stage2 import InternVideo2Stage2, Stage2Config
    from internvideo2.models.text import BertConfig

    torch.manual_seed(0)
    vis = PretrainConfig(vision=vision_config("tiny"), clip_teacher_embed_dim=32, clip_teacher_final_dim=16)
    text = BertConfig(vocab_size=500, hidden_size=48, num_hidden_layers=3, num_attention_heads=4,
                      intermediate_size=96, max_position_embeddings=16, fusion_layer=2, encoder_width=96)
    model = InternVideo2Stage2(Stage2Config(vision=vis, text=text, embed_dim=24, max_txt_len=12)).eval()
    files = sorted(world.glob("*.mp4"))[:2]
    r = embed_videos(files, model, batch_size=1, workers=0, threads=1, progress=False)
    rp = embed_videos(files, model, batch_size=1, workers=0, threads=1, progress=False, feature="pool")
    assert r.meta["settings"]["feature_used"] == "proj" and r.embeddings.shape == (2, 24)
    with _threads(1):
        for k, f in enumerate(files):
            clip, _, _ = read_clip(f, 4, "middle")
            emb = model.encode_video(clip)
            np.testing.assert_array_equal(r.embeddings[k], emb.embeds[0].numpy())
            np.testing.assert_array_equal(rp.embeddings[k], emb.pooled[0].numpy())
    np.testing.assert_allclose(np.linalg.norm(r.embeddings, axis=1), 1.0, atol=1e-6)
    with pytest.raises(ConfigError, match="proj"):
        embed_videos(files, internvideo2.create_model("tiny"), feature="proj", progress=False)


# ---------------------------------------------------------------------------------------------------------
# long videos: windows and shots
# ---------------------------------------------------------------------------------------------------------
def _long_clip(path: Path, index: int, frames: int = 32, fps: float = 8.0) -> Path:
    world = SynthWorld(seed=7, split="train", cfg=SynthConfig(num_frames=frames, size=64, fps=fps, audio=False))
    write_clip(path, world.render(index))
    return path


def test_window_mode_timestamps_and_frames(tmp_path, tiny_model):
    path = _long_clip(tmp_path / "long.mp4", 0)  # 32 frames at 8 fps: 4 s
    r = embed_videos([path], tiny_model, mode="window", window=2.0, stride=1.0, batch_size=2, workers=1,
                     threads=1, progress=False)
    assert [(x["start_s"], x["end_s"]) for x in r.index] == [(0.0, 2.0), (1.0, 3.0), (2.0, 4.0)]
    assert [x["item"] for x in r.index] == [0, 1, 2] and [x["row"] for x in r.index] == [0, 1, 2]
    # window [1, 3) s holds frames 8..23; 'middle' picks the centre of 4 equal bins
    assert r.index[1]["frame_indices"] == [9, 13, 17, 21]
    meta = probe_video(path)
    with _threads(1):
        for x in r.index:
            first, stop = frame_range(meta, x["start_s"], x["end_s"])
            assert x["frame_indices"] == [first + i for i in get_frame_indices(4, stop - first, "middle")]
            pooled, _, _ = _direct(tiny_model, path, 4, x["frame_indices"])
            np.testing.assert_allclose(r.embeddings[x["row"]], pooled, rtol=0, atol=1e-5)


def test_window_mode_on_a_real_video(tiny_model):
    path = asset("video/bikes.mp4")  # 250 frames at 25 fps: 10 s
    r = embed_videos([path], tiny_model, mode="window", window=4.0, stride=3.0, workers=1, progress=False)
    meta = probe_video(path)
    assert [(x["start_s"], x["end_s"]) for x in r.index] == sliding_windows(meta, 4.0, 3.0)
    assert [(x["start_s"], x["end_s"]) for x in r.index] == [(0.0, 4.0), (3.0, 7.0), (6.0, 10.0)]
    assert r.index[1]["frame_indices"] == [75 + i for i in get_frame_indices(4, 100, "middle")]


def test_shots_mode_splits_two_concatenated_clips(tmp_path, tiny_model):
    world = SynthWorld(seed=11, split="train", cfg=SynthConfig(num_frames=16, size=64, fps=8.0, audio=False))
    a, b = world.render(0), world.render(1)
    path = tmp_path / "two_shots.mp4"
    write_clip(path, RenderedClip(np.concatenate([a.frames, b.frames]), np.zeros(0, np.float32), 16000, 8.0))
    shots = detect_shots(path)
    assert len(shots) == 2 and shots[1].start_frame == 16  # the generated cut, found by the detector
    r = embed_videos([path], tiny_model, mode="shots", batch_size=4, workers=1, progress=False)
    assert [(x["start_s"], x["end_s"]) for x in r.index] == [(0.0, 2.0), (2.0, 4.0)]
    assert r.index[0]["frame_indices"] == [1, 5, 9, 13] and r.index[1]["frame_indices"] == [17, 21, 25, 29]
    assert r.meta["counts"]["items"] == 2


# ---------------------------------------------------------------------------------------------------------
# bad files
# ---------------------------------------------------------------------------------------------------------
def test_folder_with_corrupt_files_is_embedded_and_bad_files_listed(tmp_path, world, tiny_model):
    folder = tmp_path / "in"
    folder.mkdir()
    good = sorted(world.glob("*.mp4"))[:3]
    for f in good:
        (folder / f.name).write_bytes(f.read_bytes())
    expected = _corrupt_files(folder, good[0])
    out = tmp_path / "out"
    r = embed_videos([folder], tiny_model, out_dir=out, batch_size=2, chunk_size=2, workers=1, progress=False)
    assert sorted(Path(x["video"]).name for x in r.index) == sorted(f.name for f in good)
    got = {Path(e["video"]).name: e["reason"] for e in r.errors}
    assert got == expected
    assert r.meta["counts"] == {"videos": 6, "videos_ok": 3, "videos_bad": 3, "items": 3,
                                "bad_reasons": {"empty_file": 1, "invalid_data": 2}, "chunks": 3}
    lines = (out / "errors.jsonl").read_text().splitlines()
    assert [json.loads(x)["video_index"] for x in lines] == sorted(e["video_index"] for e in r.errors)
    assert np.load(out / "embeddings.npy").shape == (3, 64)
    assert not (out / "parts").exists()
    # the same good files alone give the same numbers (bad neighbours change nothing)
    alone = embed_videos(sorted(folder.glob("0*.mp4")), tiny_model, batch_size=1, workers=0, progress=False)
    ref = embed_videos([folder], tiny_model, batch_size=1, workers=0, progress=False)
    np.testing.assert_array_equal(alone.embeddings, ref.embeddings)


def test_bad_fraction_limit_fails_loudly(tmp_path, world, tiny_model):
    folder = tmp_path / "in"
    folder.mkdir()
    good = sorted(world.glob("*.mp4"))[0]
    (folder / good.name).write_bytes(good.read_bytes())
    _corrupt_files(folder, good)
    with pytest.raises(DataQualityError, match="3 of 4"):
        embed_videos([folder], tiny_model, out_dir=tmp_path / "out", max_bad_fraction=0.5, bad_check_after=4,
                     workers=1, progress=False)
    # the default limit waits for 20 videos before judging
    r = embed_videos([folder], tiny_model, workers=0, progress=False)
    assert r.meta["counts"]["videos_bad"] == 3


# ---------------------------------------------------------------------------------------------------------
# the CLI and resume after SIGKILL
# ---------------------------------------------------------------------------------------------------------
def _cli(*args, **kw) -> list[str]:
    return [sys.executable, "-m", "internvideo2.cli", "embed", *map(str, args)]


def _env():
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT / "src") + os.pathsep + env.get("PYTHONPATH", "")
    return env


def _outputs(out: Path):
    tok = {p.name: np.load(p) for p in sorted((out / "tokens").glob("*.npy"))}
    return (np.load(out / "embeddings.npy"), (out / "index.jsonl").read_text(), (out / "errors.jsonl").read_text(),
            tok)


@pytest.mark.slow
def test_cli_resume_after_sigkill_gives_identical_outputs(tmp_path, saved_model):
    folder = tmp_path / "videos"
    generate_world(tmp_path / "w", 40, seed=5, cfg=SynthConfig(num_frames=8, size=64, audio=False), progress=False)
    os.rename(tmp_path / "w" / "videos" / "train", folder)
    _corrupt_files(folder, folder / "000000.mp4")
    common = ["--model", saved_model, "--chunk", 2, "--batch", 2, "--workers", 1, "--threads", 1, "--tokens",
              "--no-progress"]

    ref = tmp_path / "ref"
    p = subprocess.run(_cli(folder, "-o", ref, *common), env=_env(), capture_output=True, text=True, timeout=300)
    assert p.returncode == 1, p.stderr  # finished, but the output is incomplete: 3 videos are unusable
    assert "43 videos -> 40 embeddings" in p.stdout and "3 unusable" in p.stdout
    assert "the output is incomplete: 3 of 43 videos unusable" in p.stderr

    out = tmp_path / "out"
    proc = subprocess.Popen(_cli(folder, "-o", out, *common), env=_env(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    first = out / "parts" / "000000.json"
    deadline = time.monotonic() + 120
    while not first.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.002)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, proc.stderr.read()
    assert first.exists() and not (out / "meta.json").exists()  # killed after a commit, before the end
    done_before = len(list((out / "parts").glob("*.json")))
    assert 1 <= done_before < 22

    # other settings on the same folder are refused, not mixed in
    p = subprocess.run(_cli(folder, "-o", out, *common, "--frames", 8), env=_env(), capture_output=True, text=True,
                       timeout=300)
    assert p.returncode == 2 and "settings.frames" in p.stderr

    p = subprocess.run(_cli(folder, "-o", out, *common), env=_env(), capture_output=True, text=True, timeout=300)
    assert p.returncode == 1, p.stderr
    assert f"{done_before} of 22 chunks from an earlier run" in p.stdout
    meta = json.loads((out / "meta.json").read_text())
    assert meta["timing"]["resumed_chunks"] == done_before
    assert meta["timing"]["videos_this_run"] == 43 - 2 * done_before  # nothing embedded twice

    emb, index, errors, tok = _outputs(out)
    emb_r, index_r, errors_r, tok_r = _outputs(ref)
    np.testing.assert_array_equal(emb, emb_r)
    assert index == index_r and errors == errors_r
    assert tok.keys() == tok_r.keys() and all(np.array_equal(tok[k], tok_r[k]) for k in tok)

    # a finished run is left alone (its corrupt files are still the same: nothing to retry); --overwrite
    # starts over
    p = subprocess.run(_cli(folder, "-o", out, *common), env=_env(), capture_output=True, text=True, timeout=300)
    assert p.returncode == 1 and "nothing to do" in p.stdout
    p = subprocess.run(_cli(folder, "-o", out, *common, "--overwrite", "--frames", 8), env=_env(),
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 1, p.stderr
    assert json.loads((out / "meta.json").read_text())["settings"]["frames_used"] == 8


def test_output_folder_rules(tmp_path, world, tiny_model):
    files = sorted(world.glob("*.mp4"))[:2]
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    with pytest.raises(ConfigError, match="not empty"):
        embed_videos(files, tiny_model, out_dir=foreign, progress=False)
    out = tmp_path / "out"
    embed_videos(files, tiny_model, out_dir=out, workers=0, progress=False)
    other = internvideo2.create_model("tiny")  # same architecture, other weights
    with pytest.raises(ConfigError, match="model_fingerprint"):
        embed_videos(files, other, out_dir=out, workers=0, progress=False)
    r = embed_videos(files, tiny_model, out_dir=out, workers=0, progress=False)
    assert r.status == "already_complete"


def test_cli_usage_errors(tmp_path, saved_model):
    p = subprocess.run(_cli(tmp_path / "nope.mp4", "--model", saved_model, "-o", tmp_path / "o"), env=_env(),
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 2 and "no such file" in p.stderr
    p = subprocess.run(_cli(tmp_path, "--model", saved_model, "-o", tmp_path / "o", "--mode", "window"),
                       env=_env(), capture_output=True, text=True, timeout=120)
    assert p.returncode == 2 and "window" in p.stderr


def test_second_writer_is_refused(tmp_path, world, tiny_model):
    out = tmp_path / "out"
    out.mkdir()
    holder = subprocess.Popen(
        [sys.executable, "-c", "import fcntl, os, sys, time; fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT); "
         "fcntl.lockf(fd, fcntl.LOCK_EX); print('locked', flush=True); time.sleep(60)", str(out / ".lock")],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(ConfigError, match="another embed process"):
            embed_videos(sorted(world.glob("*.mp4"))[:1], tiny_model, out_dir=out, workers=0, progress=False)
    finally:
        holder.kill()
        holder.wait()
    r = embed_videos(sorted(world.glob("*.mp4"))[:1], tiny_model, out_dir=out, workers=0, progress=False)
    assert r.meta["counts"]["items"] == 1
