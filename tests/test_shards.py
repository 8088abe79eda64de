"""WebDataset-style tar shards: writing, reading, splitting over ranks x workers, decoding, bad samples."""
from __future__ import annotations

import json
import tarfile
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from test_datasets import frame_ids, make_clip
from torch.utils.data import DataLoader

from internvideo2.data.datasets import BadSamplePolicy, BadSampleTracker, collate_skip_bad
from internvideo2.data.shards import ShardedVideoDataset, expand_urls, iter_shard, split_shards, write_shards
from internvideo2.errors import ConfigError, MediaError


@pytest.fixture(scope="module")
def clip_bytes(tmp_path_factory):
    d = tmp_path_factory.mktemp("shardclips")
    return [Path(make_clip(d / f"c{i}.mp4", frames=8)).read_bytes() for i in range(3)]


def _samples(n, clip_bytes):
    return [
        {
            "__key__": f"{i:06d}",
            "mp4": clip_bytes[i % len(clip_bytes)],
            "json": {"caption": [f"Sample {i}: first!", f"sample {i} second"], "label": i % 4},
        }
        for i in range(n)
    ]


def test_write_and_read_shards(tmp_path, clip_bytes):
    paths = write_shards(_samples(7, clip_bytes), tmp_path / "s", samples_per_shard=3)
    assert [p.name for p in paths] == ["shard-000000.tar", "shard-000001.tar", "shard-000002.tar"]
    assert not list((tmp_path / "s").glob(".*partial"))
    with tarfile.open(paths[0]) as tf:
        names = tf.getnames()
    assert names == ["000000.json", "000000.mp4", "000001.json", "000001.mp4", "000002.json", "000002.mp4"]
    got = [s for p in paths for s in iter_shard(p)]
    assert [k for k, _ in got] == [f"{i:06d}" for i in range(7)]
    assert got[4][1]["mp4"] == clip_bytes[1] and json.loads(got[4][1]["json"])["label"] == 0
    # byte-identical on a rewrite (fixed member order and zeroed times)
    again = write_shards(_samples(7, clip_bytes), tmp_path / "t", samples_per_shard=3)
    assert all(a.read_bytes() == b.read_bytes() for a, b in zip(paths, again))
    # the (key, {"key.ext": data}) form and Path / str data
    src = tmp_path / "c.mp4"
    src.write_bytes(clip_bytes[0])
    p2 = write_shards([("a/k1", {"a/k1.mp4": src, "a/k1.txt": "hello"})], tmp_path / "u", 10)
    (key, files), = list(iter_shard(p2[0]))
    assert key == "a/k1" and files == {"mp4": clip_bytes[0], "txt": b"hello"}
    assert expand_urls(str(tmp_path / "s" / "shard-{000000..000002}.tar")) == [str(p) for p in paths]
    assert expand_urls(tmp_path / "s") == [str(p) for p in paths]
    with pytest.raises(ConfigError):
        write_shards([{"__key__": "a.b", "mp4": b"x"}], tmp_path / "v", 2)
    with pytest.raises(ConfigError):
        write_shards([{"__key__": "a", "mp4": b"x"}, {"__key__": "a", "mp4": b"y"}], tmp_path / "w", 2)
    assert not list((tmp_path / "w").glob("*.tar*"))  # the failed shard was not left behind


def test_split_shards_is_a_partition():
    shards = [f"s{i}" for i in range(10)]
    seen = Counter(s for r in range(2) for w in range(3) for s in split_shards(shards, r, 2, w, 3))
    assert set(seen) == set(shards) and set(seen.values()) == {1}


@pytest.mark.parametrize("split_by", ["shard", "sample"])
def test_every_sample_once_over_2_ranks_x_2_workers(tmp_path, clip_bytes, split_by):
    n = 22
    write_shards(_samples(n, clip_bytes), tmp_path / "s", samples_per_shard=3)  # 8 shards, the last short
    keys = []
    per_rank = []
    for rank in range(2):
        ds = ShardedVideoDataset(
            tmp_path / "s", rank=rank, world_size=2, seed=4, split_by=split_by, decode=False
        )
        ds.set_epoch(1)
        dl = DataLoader(ds, batch_size=None, num_workers=2)
        got = [x["key"] for x in dl]
        per_rank.append(len(got))
        keys += got
    assert sorted(keys) == [f"{i:06d}" for i in range(n)]
    if split_by == "sample":
        assert per_rank == [11, 11]


def test_shard_order_depends_on_seed_and_epoch(tmp_path, clip_bytes):
    write_shards(_samples(12, clip_bytes), tmp_path / "s", samples_per_shard=2)
    ds = ShardedVideoDataset(tmp_path / "s", seed=1, decode=False)
    orders = [ds.epoch_shards(e) for e in range(3)]
    assert orders[0] == ShardedVideoDataset(tmp_path / "s", seed=1, decode=False).epoch_shards(0)
    assert len({tuple(o) for o in orders}) > 1 and sorted(orders[0]) == ds.shards


def test_decoding_from_shards_with_bad_samples(tmp_path, clip_bytes):
    samples = _samples(6, clip_bytes)
    samples[2]["mp4"] = np.random.default_rng(1).integers(0, 256, 2000, dtype=np.uint8).tobytes()
    samples[4]["mp4"] = b""
    samples.append({"__key__": "nomedia", "json": {"caption": "no video here"}})
    write_shards(samples, tmp_path / "s", samples_per_shard=2)
    out = {}
    for nw in (0, 2):
        ds = ShardedVideoDataset(tmp_path / "s", num_frames=4, sample="rand", seed=9, rank=0, world_size=1)
        dl = DataLoader(ds, batch_size=3, num_workers=nw, collate_fn=collate_skip_bad)
        tracker = BadSampleTracker(BadSamplePolicy(max_fraction=0.6, min_samples=1))
        items = {}
        for b in dl:
            tracker.update(b)
            for j, k in enumerate(b.get("key", [])):
                items[k] = (b["video"][j], b["caption"][j], int(b["label"][j]))
        assert tracker.seen == 7 and tracker.bad == 3
        assert {r for _, r in tracker.examples} >= {"empty_file", "no_media"}
        assert sorted(p.split("/")[-1] for p, _ in tracker.examples) == ["000002", "000004", "nomedia"]
        out[nw] = items
    assert sorted(out[0]) == ["000000", "000001", "000003", "000005"]
    for k in out[0]:
        v0, c0, l0 = out[0][k]
        v2, c2, l2 = out[2][k]
        assert torch.equal(v0, v2) and c0 == c2 and l0 == l2  # independent of the worker split
        assert v0.shape == (4, 3, 32, 32)
        i = int(k)
        assert c0 in (f"sample {i} first", f"sample {i} second") and l0 == i % 4
        ids = frame_ids(v0)
        assert all(2 * q <= f <= 2 * q for q, f in enumerate(ids))  # 'rand' over 8 frames, 2 per bin


def test_truncated_shard_is_a_bad_sample(tmp_path, clip_bytes):
    (p,) = write_shards(_samples(4, clip_bytes), tmp_path / "s", samples_per_shard=4)
    data = p.read_bytes()
    cut = tmp_path / "cut" / "shard-000000.tar"
    cut.parent.mkdir()
    cut.write_bytes(data[: len(data) // 2 + 700])
    with pytest.raises(MediaError) as ei:
        list(iter_shard(cut))
    assert ei.value.reason == "bad_shard" and ei.value.path == str(cut)
    ds = ShardedVideoDataset(cut.parent, decode=False, rank=0, world_size=1)
    got = list(DataLoader(ds, batch_size=2, collate_fn=collate_skip_bad))
    reasons = [r for b in got for r in b["bad_reasons"]]
    assert sum(b["num_bad"] for b in got) == 1 and reasons == ["bad_shard"]
    assert 0 < sum(b["num_samples"] - b["num_bad"] for b in got) < 4
