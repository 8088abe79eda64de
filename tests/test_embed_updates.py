"""``embed`` keeps an output up to date and never makes a failure permanent by accident (issue 18): new,
changed and removed videos, retryable and lasting failures, ``--retry-bad``, exit codes, folders that cannot
be walked, and reading an output back with ``internvideo2.embed.load``."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import foreign, unprivileged

import internvideo2
from internvideo2.data.synth import SynthConfig, generate_world
from internvideo2.embed import embed_videos, load, scan_inputs
from internvideo2.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("world")
    generate_world(out, 6, seed=4, cfg=SynthConfig(num_frames=8, size=48, audio=False), progress=False)
    return out / "videos" / "train"


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return internvideo2.create_model("tiny", num_frames=4, img_size=28).eval()


def _copy(src: list[Path], folder: Path) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for f in src:
        shutil.copy(f, folder / f.name)
        out.append(folder / f.name)
    return out


def _embed(inputs, model, out, **kw):
    return embed_videos(inputs, model, out_dir=out, workers=0, threads=1, batch_size=2, chunk_size=2,
                        progress=False, **kw)


def _rows(res) -> dict[str, np.ndarray]:
    return {r["video"]: np.asarray(res.embeddings[r["row"]]) for r in res.index}


def test_added_changed_and_removed_videos_update_the_output(tmp_path, world, model):
    vids = sorted(world.glob("*.mp4"))
    folder = tmp_path / "in"
    _copy(vids[:3], folder)
    out = tmp_path / "out"
    first = _embed([folder], model, out)
    assert first.status == "complete" and first.meta["counts"]["items"] == 3
    before = _rows(first)

    _copy(vids[3:5], folder)  # two more files
    second = _embed([folder], model, out)
    assert second.status == "updated"
    assert second.meta["timing"]["kept_videos"] == 3 and second.meta["timing"]["videos_this_run"] == 2
    assert [r["video"] for r in second.index] == sorted(f.name for f in vids[:5])  # input order
    after = _rows(second)
    assert all(np.array_equal(after[k], v) for k, v in before.items())  # kept rows are the same numbers
    # the update equals a fresh run on the same inputs (batch size 1 would make it bit-equal; here the new
    # files share a batch, so compare to a fresh run with the same grouping of the new files)
    fresh = embed_videos([folder], model, workers=0, threads=1, batch_size=1, progress=False)
    np.testing.assert_allclose(np.asarray(second.embeddings), fresh.embeddings, rtol=1e-5, atol=1e-6)

    (folder / vids[0].name).unlink()  # a removed file is dropped
    shutil.copy(vids[5], folder / vids[1].name)  # a changed file (another video under the same name)
    third = _embed([folder], model, out)
    assert third.status == "updated" and third.meta["timing"]["videos_this_run"] == 1
    names = [r["video"] for r in third.index]
    assert names == sorted(f.name for f in vids[1:5])
    assert not np.array_equal(_rows(third)[vids[1].name], after[vids[1].name])  # re-embedded
    assert third.meta["counts"]["videos"] == 4
    # and a run with nothing new does nothing
    assert _embed([folder], model, out).status == "already_complete"


def test_lasting_failures_are_kept_retryable_ones_retried(tmp_path, world, model):
    vids = sorted(world.glob("*.mp4"))
    folder = tmp_path / "in"
    _copy(vids[:2], folder)
    (folder / "broken.mp4").write_bytes(b"\x00" * 4096)
    out = tmp_path / "out"
    # a timeout far too short: every video fails with a reason that can change
    res = _embed([folder], model, out, timeout=1e-9)
    assert {e["reason"] for e in res.errors} == {"timeout"} and all(e["retry"] for e in res.errors)
    assert res.meta["counts"]["items"] == 0
    # the next run with a sane timeout retries them (no --overwrite needed): the good files are embedded, the
    # corrupt one now fails for a lasting reason
    res = _embed([folder], model, out)
    assert res.status == "updated" and res.meta["counts"]["items"] == 2
    (err,) = res.errors
    assert err["video"] == "broken.mp4" and err["reason"] == "invalid_data" and err["retry"] is False
    # a lasting failure of an unchanged file is not retried ...
    assert _embed([folder], model, out).status == "already_complete"
    # ... unless asked, or the file changed on disk
    res = _embed([folder], model, out, retry_bad=True)
    assert res.status == "updated" and res.meta["timing"]["videos_this_run"] == 1
    shutil.copy(vids[2], folder / "broken.mp4")
    res = _embed([folder], model, out)
    assert res.status == "updated" and not res.errors and res.meta["counts"]["items"] == 3


def test_a_memory_failure_is_retryable(tmp_path, world, model):
    out = tmp_path / "out"
    res = _embed([sorted(world.glob("*.mp4"))[0]], model, out, frames=4_000_000)  # 4M frames: refused up front
    (err,) = res.errors
    assert err["reason"] == "resource" and err["retry"] and "GiB" in err["detail"]


def _cli(*args):
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    return subprocess.run([sys.executable, "-m", "internvideo2.cli", "embed", *map(str, args)], env=env,
                          capture_output=True, text=True, timeout=300)


def test_cli_exit_codes(tmp_path, world, model):
    internvideo2.save_pretrained(model, tmp_path / "m")
    common = ["--model", tmp_path / "m", "--workers", 0, "--no-progress"]
    folder = tmp_path / "bad"
    folder.mkdir()
    for k in range(3):
        (folder / f"{k}.mp4").write_bytes(os.urandom(2048))
    p = _cli(folder, "-o", tmp_path / "o1", *common)  # every video fails (fewer than --bad-check-after)
    assert p.returncode == 1 and "3 of 3 videos unusable" in p.stderr
    p = _cli(world, "-o", tmp_path / "o2", *common)
    assert p.returncode == 0 and p.stderr == "", p.stderr
    for flag, value in (("--timeout", 0), ("--batch", 0), ("--max-bad-fraction", 2)):
        p = _cli(world, "-o", tmp_path / "o3", *common, flag, value)
        assert p.returncode == 2 and f"error: {flag}" in p.stderr and "Traceback" not in p.stderr, p.stderr
    p = _cli(world, "-o", tmp_path / "o3", *common, "--device", "cuda")
    assert p.returncode == 2 and "--device" in p.stderr and ("no CUDA" in p.stderr or torch.cuda.is_available())
    (tmp_path / "afile").write_text("x")
    p = _cli(world, "-o", tmp_path / "afile", *common)
    assert p.returncode == 2 and "not a folder" in p.stderr and "Traceback" not in p.stderr


def test_symlinked_folders_are_followed_and_loops_listed(tmp_path, world):
    root = tmp_path / "root"
    (root / "real").mkdir(parents=True)
    shutil.copy(sorted(world.glob("*.mp4"))[0], root / "real" / "a.mp4")
    other = tmp_path / "elsewhere"
    other.mkdir()
    shutil.copy(sorted(world.glob("*.mp4"))[1], other / "b.mp4")
    os.symlink(other, root / "linked")  # a folder outside the root, reached through a link: followed
    os.symlink(root, root / "real" / "loop")  # a link to an ancestor: a loop, listed, not followed
    os.symlink(tmp_path / "gone.mp4", root / "dangling.mp4")
    scan = scan_inputs([root])
    assert sorted(v.rel for v in scan.videos) == ["linked/b.mp4", "real/a.mp4"]
    assert {p["reason"] for p in scan.problems} == {"symlink_loop", "broken_link"}
    with pytest.raises(ConfigError, match="does not exist .and 1 more"):
        internvideo2.embed.find_videos([root])


def test_unreadable_folders_are_listed_as_bad(tmp_path, world):
    """Permissions bind (conftest.unprivileged): an unreadable subfolder is listed with its reason, an
    unreadable top folder is not "no video files found"."""
    base = tmp_path / "videos"
    (base / "ok").mkdir(parents=True)
    (base / "secret").mkdir()
    shutil.copy(sorted(world.glob("*.mp4"))[0], base / "ok" / "a.mp4")
    shutil.copy(sorted(world.glob("*.mp4"))[1], base / "secret" / "b.mp4")
    foreign(base / "secret", 0o700)  # another user's folder: cannot be listed
    code = ("import json, sys; from internvideo2.embed import scan_inputs; s = scan_inputs(sys.argv[1:]); "
            "print(json.dumps({'videos': [v.rel for v in s.videos], 'problems': s.problems}))")
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    p = subprocess.run(unprivileged([sys.executable, "-c", code, str(base), str(base / "secret")]), env=env,
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    got = json.loads(p.stdout)
    assert got["videos"] == ["ok/a.mp4"]
    assert [(Path(x["video"]).name, x["reason"]) for x in got["problems"]] == [("secret", "unreadable"),
                                                                              ("secret", "unreadable")]
    assert all("ermission denied" in x["detail"] for x in got["problems"])


def test_load_gives_absolute_paths_and_exports(tmp_path, world, model, monkeypatch):
    monkeypatch.chdir(tmp_path)
    folder = Path("clips")  # a relative input: outputs must not depend on the current directory
    _copy(sorted(world.glob("*.mp4"))[:2], tmp_path / folder)
    _embed([folder], model, tmp_path / "out")
    res = load(tmp_path / "out")
    assert res.meta["inputs"]["roots"] == [str(tmp_path / folder)]
    assert [r["video"] for r in res.index] == sorted(p.name for p in (tmp_path / folder).iterdir())
    assert all(os.path.isabs(r["path"]) and os.path.isfile(r["path"]) for r in res.index)
    assert res.embeddings.shape == (2, 64)
    with pytest.raises(ConfigError, match="no finished embed run"):
        load(tmp_path)
    pq = pytest.importorskip("pyarrow.parquet")
    table = pq.read_table(res.to_parquet(tmp_path / "e.parquet"))
    assert table.num_rows == 2 and np.allclose(np.asarray(table["embedding"][0].as_py()), res.embeddings[0])
