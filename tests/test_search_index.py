"""``internvideo2 index`` / ``build_index`` (issue 16): what an index holds (items, vectors, thumbnails, identities,
the model and settings), incremental updates (added, changed, touched, deleted), refusals, unusable files,
SIGKILL at every stage then a rerun, two processes under torchrun (and ``--shard`` + ``--merge``) equal to one,
and search with a small trained model finding described clips.

This file is also the torchrun worker of the distributed test (``python -m torch.distributed.run ...
tests/test_search_index.py ARGS``: it runs ``internvideo2 index ARGS``)."""
from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]

if __name__ == "__main__":  # the torchrun worker
    from internvideo2.cli import main

    sys.exit(main(["index", *sys.argv[1:]]))

import internvideo2  # noqa: E402
from internvideo2.cli import main as cli_main  # noqa: E402
from internvideo2.data.synth import SynthConfig, generate_world  # noqa: E402
from internvideo2.data.video import read_frames  # noqa: E402
from internvideo2.embed import embed_videos  # noqa: E402
from internvideo2.errors import ConfigError  # noqa: E402
from internvideo2.search import Index, IndexStore, model_identity  # noqa: E402
from internvideo2.search.build import KILL_ENV, build_index, encode_jpeg, merge_index  # noqa: E402

FAST = dict(workers=0, threads=1, batch_size=2, chunk_size=2, progress=False)


# ---------------------------------------------------------------------------------------------------------
# fixtures: generated clips, a tiny video-text model (random weights: pipeline tests, not quality tests)
# ---------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    """8 synthetic clips: 8 frames, 64 px, 4 fps (2 s), no audio; 2 more in ``extra/``."""
    out = tmp_path_factory.mktemp("world")
    generate_world(out, 10, seed=3, cfg=SynthConfig(num_frames=8, size=64, audio=False), progress=False)
    vids = out / "videos" / "train"
    (out / "extra").mkdir()
    for p in sorted(vids.glob("*.mp4"))[8:]:
        p.rename(out / "extra" / p.name)
    return vids


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return internvideo2.create_model("tiny", "stage2", text="bert_tiny").eval()


@pytest.fixture(scope="module")
def saved(tmp_path_factory, model) -> Path:
    d = tmp_path_factory.mktemp("model")
    internvideo2.save_pretrained(model, d)
    return d


def _copy(files, folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for f in files:
        shutil.copy2(f, folder / Path(f).name)
    return folder


def _content(index: Path) -> dict:
    """Everything an index holds, comparable: items (id order), vectors, thumbnails, videos, meta."""
    s = IndexStore(index, readonly=True)
    try:
        items = s.items()
        ids, vecs = s.embeddings()
        return {"items": [(it.path, it.start_s, it.end_s) for it in items], "ids": [it.id for it in items],
                "vectors": vecs, "thumbs": [s.thumbnail(it.id) for it in items],
                "videos": {p: (v.size, v.mtime_ns, v.sha256, v.status) for p, v in s.videos().items()},
                "meta": {k: v for k, v in s.meta().items() if k != "build"}, "version": s.version}
    finally:
        s.close()


def _same_index(a: dict, b: dict, atol: float = 1e-5, ids: bool = True) -> None:
    assert a["items"] == b["items"]
    if ids:
        assert a["ids"] == b["ids"]
    np.testing.assert_allclose(a["vectors"], b["vectors"], rtol=0, atol=atol)
    assert a["thumbs"] == b["thumbs"]
    assert a["videos"] == b["videos"]
    assert a["meta"] == b["meta"]


def _leftovers(index: Path) -> list[str]:
    """What a finished build must not leave: work areas and plans."""
    return sorted(p.name for p in index.iterdir() if p.name not in ("store.sqlite", "store.sqlite-wal",
                                                                     "store.sqlite-shm", ".lock"))


def _decode_jpeg(data: bytes) -> np.ndarray:
    import av

    with av.open(io.BytesIO(data)) as c:
        return next(c.decode(video=0)).to_ndarray(format="rgb24")


# ---------------------------------------------------------------------------------------------------------
# what an index holds
# ---------------------------------------------------------------------------------------------------------
def test_index_holds_items_vectors_thumbnails_and_identities(tmp_path, world, model, saved):
    out = tmp_path / "index"
    s = build_index([world], saved, out, **FAST)
    assert s["status"] == "built" and s["added"] == 8 and s["videos"] == 8 and s["unusable"] == []
    assert s["embedded_videos"] == 8 and s["items"] == s["embedded_items"] >= 8
    assert _leftovers(out) == []  # the work area is gone once the store holds everything

    ref = embed_videos([world], model, mode="shots", feature="proj", **FAST)  # the embed pipeline, same options
    c = _content(out)
    assert c["items"] == [(os.path.abspath(r["path"]), r["start_s"], r["end_s"]) for r in ref.index]
    np.testing.assert_allclose(c["vectors"], ref.embeddings, rtol=0, atol=1e-6)

    meta = c["meta"]
    assert meta["format"] == "internvideo2-index" and meta["schema"] == 1 and meta["dim"] == model.projection_dim
    assert meta["model"] == model_identity(model, source=os.path.abspath(saved))
    st = meta["settings"]
    assert (st["mode"], st["frames"], st["size"], st["feature"], st["window"]) == ("shots", 4, 56, "proj", None)

    for path, (size, mtime, sha, status) in c["videos"].items():
        p = Path(path)
        assert p.is_absolute() and status == "ok"
        assert (size, mtime) == (p.stat().st_size, p.stat().st_mtime_ns)
        assert sha == hashlib.sha256(p.read_bytes()).hexdigest()

    # a thumbnail is a JPEG of the item's middle frame (JPEG-close to the decoded frame)
    for row, thumb in zip(ref.index, c["thumbs"]):
        assert thumb[:2] == b"\xff\xd8"
        fi = row["frame_indices"]
        mid = (min(fi) + max(fi)) // 2
        frame = read_frames(row["path"], [mid])[0].numpy().astype(np.float32)
        img = _decode_jpeg(thumb).astype(np.float32)
        assert img.shape == frame.shape  # 64 px wide: never enlarged
        assert np.abs(img - frame).mean() < 8.0

    # the index is searchable with the recorded model (the source path is recorded)
    hits = Index(out).search("a red star moving to the left", k=3)
    assert len(hits) == 3 and all(h.path in c["videos"] for h in hits)


def test_thumbnails_are_scaled_down_to_the_width_never_up():
    rng = np.random.default_rng(0)
    big = rng.integers(0, 256, (721, 1281, 3), dtype=np.uint8)
    assert _decode_jpeg(encode_jpeg(big, width=320)).shape == (180, 320, 3)
    assert _decode_jpeg(encode_jpeg(big[:64, :48], width=320)).shape == (64, 48, 3)
    with pytest.raises(ConfigError, match="quality"):
        encode_jpeg(big, quality=40)


def test_window_and_clip_items(tmp_path, world, model):
    files = sorted(world.glob("*.mp4"))[:2]
    s = build_index(files, model, tmp_path / "w", mode="window", window=1.0, stride=0.5, **FAST)
    c = _content(tmp_path / "w")
    spans = sorted({(a, b) for _, a, b in c["items"]})
    assert spans == [(0.0, 1.0), (0.5, 1.5), (1.0, 2.0)] and s["items"] == 6
    assert c["meta"]["settings"]["window"] == 1.0 and c["meta"]["settings"]["shots"] is None
    build_index(files, model, tmp_path / "c", mode="clip", **FAST)
    assert [(a, b) for _, a, b in _content(tmp_path / "c")["items"]] == [(0.0, 2.0), (0.0, 2.0)]


def test_index_overhead_benchmark_reports_both_runs(tmp_path, world, model):
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        from search_index_cost import index_overhead
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    files = [str(p) for p in sorted(world.glob("*.mp4"))[:2]]
    r = index_overhead(files, model, tmp_path, workers=0, repeats=1)
    json.dumps(r)  # JSON-serialisable
    assert r["videos"] == 2 and r["items"] >= 2 and r["embed_s"] > 0 and r["index_s"] > 0
    # with one round the median overhead is that round's (embed_s / index_s are rounded to ms for the JSON, so
    # recomputing the ratio from them is off by up to ~1e-3 / embed_s)
    assert r["overhead_per_round"] and abs(r["overhead_of_medians"] - r["overhead_per_round"][0]) < 2e-4
    assert {"hash", "embed", "thumbs", "sync", "total"} <= set(r["breakdown"])
    assert list(tmp_path.iterdir()) == []  # its folders are removed


# ---------------------------------------------------------------------------------------------------------
# incremental updates
# ---------------------------------------------------------------------------------------------------------
def test_updates_touch_only_what_changed_and_equal_a_fresh_build(tmp_path, world, model, saved, monkeypatch):
    vids = sorted(world.glob("*.mp4"))
    extra = sorted((world.parent.parent / "extra").glob("*.mp4"))
    folder = _copy(vids[:6], tmp_path / "in")
    out = tmp_path / "index"
    build_index([folder], saved, out, **FAST)
    before = _content(out)

    shutil.copy2(extra[0], folder / "new.mp4")  # added
    shutil.copyfile(extra[1], folder / vids[1].name)  # changed: other content
    touched = folder / vids[2].name  # same content, new mtime (and a copy of itself: new inode)
    data = touched.read_bytes()
    touched.unlink()
    touched.write_bytes(data)
    os.utime(touched, ns=(time.time_ns(), time.time_ns() + 10**9))
    (folder / vids[3].name).unlink()  # deleted

    calls = []
    real = model.forward_video
    monkeypatch.setattr(model, "forward_video", lambda x: calls.append(len(x)) or real(x))
    s = build_index([folder], model, out, model_source=saved, **FAST)
    assert s["status"] == "updated"
    assert (s["added"], s["changed"], s["touched"], s["removed"], s["kept"]) == (1, 1, 1, 1, 3)
    assert s["embedded_videos"] == 2 and sum(calls) == s["embedded_items"]  # only the added and the changed
    after = _content(out)
    assert after["version"] == before["version"] + 1  # one transaction
    assert after["videos"][str(touched)][:3] == (touched.stat().st_size, touched.stat().st_mtime_ns,
                                                 before["videos"][str(touched)][2])
    # the touched and kept videos keep their items (same rows, same vectors)
    for path in (str(touched), str(folder / vids[0].name)):
        old = [k for k, it in enumerate(before["items"]) if it[0] == path]
        new = [k for k, it in enumerate(after["items"]) if it[0] == path]
        assert [before["ids"][k] for k in old] == [after["ids"][k] for k in new]
        np.testing.assert_array_equal(before["vectors"][old], after["vectors"][new])

    # the updated index holds what a fresh build of the same files holds (item ids aside: updates append)
    fresh = tmp_path / "fresh"
    build_index([folder], saved, fresh, **FAST)
    got, want = after, _content(fresh)
    order = np.argsort([f"{p}\t{a:012.6f}" for p, a, _ in got["items"]], kind="stable")
    got = {**got, "items": [got["items"][k] for k in order], "vectors": got["vectors"][order],
           "thumbs": [got["thumbs"][k] for k in order]}
    _same_index(got, want, ids=False)

    # nothing changed: no model work, no write
    monkeypatch.setattr(model, "forward_video", lambda x: pytest.fail("the model ran on an unchanged index"))
    s = build_index([folder], model, out, model_source=saved, **FAST)
    assert s["status"] == "unchanged" and s["embedded_videos"] == 0
    assert _content(out)["version"] == after["version"] and _leftovers(out) == []


def test_another_model_or_other_settings_are_refused(tmp_path, world, model, saved):
    files = sorted(world.glob("*.mp4"))[:2]
    out = tmp_path / "index"
    build_index(files, saved, out, **FAST)
    torch.manual_seed(1)
    other = internvideo2.create_model("tiny", "stage2", text="bert_tiny")
    with pytest.raises(ConfigError, match="another model") as e:
        build_index(files, other, out, **FAST)
    assert e.value.field == "model"
    with pytest.raises(ConfigError, match="other item settings.*--overwrite") as e:
        build_index(files, saved, out, mode="window", window=1.0, **FAST)
    assert e.value.field == "mode"
    with pytest.raises(ConfigError) as e:
        build_index(files, saved, out, frames=8, **FAST)
    assert e.value.field == "frames"
    s = build_index(files, saved, out, mode="window", window=1.0, overwrite=True, **FAST)
    assert s["status"] == "built" and _content(out)["meta"]["settings"]["mode"] == "window"

    with pytest.raises(ConfigError, match="no text tower") as e:  # nothing to search it with
        build_index(files, internvideo2.create_model("tiny"), tmp_path / "v", **FAST)
    assert e.value.field == "model"
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    with pytest.raises(ConfigError, match="not empty"):
        build_index(files, saved, foreign, **FAST)


def test_cli_unusable_files_and_usage_errors(tmp_path, world, saved, capsys):
    folder = _copy(sorted(world.glob("*.mp4"))[:3], tmp_path / "in")
    (folder / "random.mp4").write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    (folder / "empty.mp4").write_bytes(b"")
    out = tmp_path / "index"
    args = ["index", str(folder), "--model", str(saved), "-o", str(out), "--workers", "0", "--no-progress"]
    assert cli_main(args) == 1  # finished, but incomplete: like embed
    o = capsys.readouterr()
    assert "5 videos ->" in o.out and "2 unusable (empty_file: 1, invalid_data: 1)" in o.out
    assert f"unusable: {folder / 'random.mp4'}: invalid_data" in o.err
    videos = _content(out)["videos"]
    assert videos[str(folder / "empty.mp4")][3] == "empty_file" and videos[str(folder / "random.mp4")][3] == \
        "invalid_data"
    assert {p for p, _, _ in _content(out)["items"]} == {str(p) for p in folder.glob("0*.mp4")}
    assert cli_main(args) == 1  # a lasting failure on an unchanged file is not retried: nothing to do
    assert "up to date" in capsys.readouterr().out

    for bad, flag in ((["index", str(folder), "-o", str(out)], "--model"),
                      (["index", "--merge", str(out), str(folder)], "--merge"),
                      (args + ["--shard", "2/2"], "--shard"),
                      (args + ["--mode", "window"], "--window"),
                      (["index", str(tmp_path / "missing"), "--model", str(saved), "-o", str(out)], "VIDEO")):
        assert cli_main(bad) == 2, bad
        assert f"error: {flag}" in capsys.readouterr().err
    assert cli_main(["index", "--merge", str(out)]) == 1  # nothing to merge; the index lists its unusable files
    assert "up to date" in capsys.readouterr().out


# ---------------------------------------------------------------------------------------------------------
# SIGKILL at every stage, then the same command again
# ---------------------------------------------------------------------------------------------------------
def _env(**extra):
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore")
    env["PYTHONPATH"] = str(ROOT / "src") + os.pathsep + env.get("PYTHONPATH", "")
    env.pop(KILL_ENV, None)
    env.update(extra)
    return env


def _index_cmd(folder: Path, model: Path, out: Path, workers: int = 0) -> list[str]:
    return [sys.executable, "-m", "internvideo2.cli", "index", str(folder), "--model", str(model), "-o", str(out),
            "--chunk", "2", "--batch", "2", "--workers", str(workers), "--threads", "1", "--no-progress"]


@pytest.mark.slow
def test_killed_at_any_stage_the_rerun_gives_the_uninterrupted_index(tmp_path, world, saved):
    folder = _copy(sorted(world.glob("*.mp4")), tmp_path / "in")
    ref = tmp_path / "ref"
    # (a decoding worker and two thumbnail processes here, none below: neither changes a number or a byte)
    p = subprocess.run(_index_cmd(folder, saved, ref, workers=1), env=_env(), capture_output=True, text=True,
                       timeout=300)
    assert p.returncode == 0, p.stderr
    want = _content(ref)

    def store_items(out: Path) -> int:
        return IndexStore(out, readonly=True).count() if (out / "store.sqlite").is_file() else 0

    # (a) SIGKILL from outside while embedding: after the first committed chunk
    out = tmp_path / "a"
    proc = subprocess.Popen(_index_cmd(folder, saved, out), env=_env(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    first = out / "embed" / "parts" / "000000.json"
    deadline = time.monotonic() + 120
    while not first.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.002)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, proc.stderr.read()
    assert first.exists() and store_items(out) == 0
    killed = {"a": out}

    # (b-e) SIGKILL at a named point: before embedding (plan written), while making thumbnails, inside the store
    # transaction, after its commit (before the work areas are removed)
    for name, point in (("b", "embed"), ("c", "thumbs:3"), ("d", "store:5"), ("e", "cleanup")):
        out = tmp_path / name
        p = subprocess.run(_index_cmd(folder, saved, out), env=_env(**{KILL_ENV: point}), capture_output=True,
                           text=True, timeout=300)
        assert p.returncode == -signal.SIGKILL, (point, p.stderr)
        assert (out / "embed.plan.json").is_file(), point  # unfinished
        assert store_items(out) == (len(want["items"]) if point == "cleanup" else 0), point  # rolled back or done
        killed[name] = out

    for name, out in killed.items():
        p = subprocess.run(_index_cmd(folder, saved, out), env=_env(), capture_output=True, text=True, timeout=300)
        assert p.returncode == 0, (name, p.stderr)
        got = _content(out)
        _same_index(got, want, atol=0)  # the same items, ids, thumbnails; vectors bit for bit (same batches)
        assert len(set(got["items"])) == len(got["items"])  # nothing duplicated
        assert _leftovers(out) == [], name
        if name == "e":
            assert "up to date" in p.stdout  # the commit had happened: the rerun only tidies


# ---------------------------------------------------------------------------------------------------------
# several processes
# ---------------------------------------------------------------------------------------------------------
@pytest.mark.distributed
def test_two_processes_and_merged_shards_equal_one_process(tmp_path, world, saved):
    folder = _copy(sorted(world.glob("*.mp4")), tmp_path / "in")
    one = tmp_path / "one"
    build_index([folder], saved, one, **FAST)
    want = _content(one)

    two = tmp_path / "two"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", str(Path(__file__)),
           str(folder), "--model", str(saved), "-o", str(two), "--chunk", "2", "--batch", "2", "--workers", "0",
           "--threads", "1", "--no-progress"]
    p = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, f"torchrun failed:\n{p.stdout[-3000:]}\n{p.stderr[-6000:]}"
    assert "8 videos ->" in p.stdout and "shard shards/rank1-of-2" in p.stdout
    # same items, ids, thumbnails and identities; vectors to float rounding (other batch compositions)
    _same_index(_content(two), want, atol=1e-5)
    assert _leftovers(two) == []

    # ranks run apart (--shard R/W, e.g. one job per machine), then --merge; a missing shard is named
    apart = tmp_path / "apart"
    s = build_index([folder], saved, apart, shard=(1, 2), **FAST)
    assert s["status"] == "shard_done" and s["videos"] == 4 and s["merge_pending"]
    with pytest.raises(ConfigError, match="rank0-of-2 has not run"):
        merge_index(apart, progress=False)
    build_index([folder], saved, apart, shard=(0, 2), **FAST)
    s = merge_index(apart, progress=False)
    assert s["status"] == "built" and s["added"] == 8
    _same_index(_content(apart), want, atol=1e-5)
    assert merge_index(apart, progress=False)["status"] == "unchanged"  # idempotent
    assert _leftovers(apart) == []


# ---------------------------------------------------------------------------------------------------------
# end to end: a small trained video-text model finds described clips
# ---------------------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_search_finds_the_described_clip_with_a_trained_model(tmp_path):
    """A tiny stage-2 model (VTC only, 300 steps, about 20 s) trained on the 12 clips it then indexes: the test
    checks the index and the query path end to end (a tiny model trained in seconds memorises its clips; it does
    not generalise to unseen ones). Chance of a clip in the top 3 of 12 is 1/4; broken retrieval (wrong vectors,
    misaligned ids, another feature than the text-aligned one) finds about 3 of the 12."""
    from internvideo2.train.config import load_config
    from internvideo2.train.engine import Trainer

    run = tmp_path / "run"
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        cfg = load_config(ROOT / "configs" / "tiny" / "stage2.yaml", [
            f"output_dir={run}", f"data.options.synth_dir={run / 'synth'}", "data.options.synth_train=12",
            "data.options.synth_heldout=4", "log.progress=false", "log.tensorboard=false", "log.plot=false",
            "checkpoint.every_n_steps=0", "train.eval_every_n_steps=0", "train.max_steps=300",
            "train.global_batch_size=12", "task.options.loss_weight.vtm=0", "task.options.loss_weight.mlm=0",
            "schedule.warmup_steps=5", "optim.lr=2e-3", "task.options.eval_num=4"])
        Trainer(cfg).fit()
    finally:
        torch.set_num_threads(old)
    synth = run / "synth"
    records = [json.loads(x) for x in (synth / "train.jsonl").read_text().splitlines()]
    out = tmp_path / "index"
    s = build_index([synth / "videos" / "train"], run / "model", out, **FAST)
    assert s["videos"] == 12 and not s["unusable"]

    index = Index(out)
    found = []
    for r in records:
        hits = index.search(r["caption"][0], k=3)
        found.append(os.path.abspath(synth / r["video"]) in {h.path for h in hits})
    assert sum(found) >= 11, found  # every described clip but at most one is in its caption's top 3
