"""Searching an index (``internvideo2.search.Index``, ``.ann``, ``internvideo2 search``): exact ranking on
hand-built stores, the ANN index against exact search at small scale, its on-disk cache (keyed by the store's
state, never trusted when damaged), ITM re-ranking on real decoded synthetic clips, the CLI, and the refusal
of another model than the index's."""
from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import numpy as np
import pytest
import torch

import internvideo2
from internvideo2.cli import main as cli_main
from internvideo2.data.synth import SynthConfig, generate_world
from internvideo2.embed import embed_videos
from internvideo2.embed.settings import EmbedSettings
from internvideo2.errors import ConfigError
from internvideo2.search import Index, IndexStore, model_identity
from internvideo2.search import ann as ann_mod
from internvideo2.search.cli import format_result, format_time
from internvideo2.search.store import VideoState

faiss = pytest.importorskip("faiss", reason="the ANN index needs faiss-cpu (the 'search' extra)")


# ---------------------------------------------------------------------------------------------------------
# helpers: a tiny model with a text tower, stores written by hand
# ---------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def clip_model():
    torch.manual_seed(0)
    return internvideo2.create_model("tiny", "clip").eval()  # random weights: ranking mechanics only


@pytest.fixture(scope="module")
def saved_clip(tmp_path_factory, clip_model) -> Path:
    d = tmp_path_factory.mktemp("clip_model")
    internvideo2.save_pretrained(clip_model, d)
    return d


def _unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


def write_store(folder: Path, model, videos: dict[str, list[tuple[float, float, np.ndarray]]], *,
                source: str | None = None, settings: dict | None = None) -> IndexStore:
    """A store holding ``videos`` (path -> [(start_s, end_s, vector)]), recorded as made by ``model``."""
    store = IndexStore(folder, create=True)
    dim = model.projection_dim
    with store.transaction():
        store.set_meta(format="internvideo2-index", schema=1, model=model_identity(model, source), dim=dim,
                       settings=settings or EmbedSettings().to_dict())
        for path, items in videos.items():
            st = os.stat(path) if os.path.exists(path) else None
            state = VideoState(path, st.st_size if st else 1, st.st_mtime_ns if st else 1, "0" * 64)
            store.put_video(state, [(s, e, v, b"jpeg") for s, e, v in items])
    return store


def clustered(n_videos: int, per_video: int, dim: int, seed: int = 0, topics: int = 8):
    """Vectors shaped like a video library's: topics, videos around them, shots around their video.
    Returns ``({path: items}, video centres [V, D])``."""
    rng = np.random.default_rng(seed)
    t = _unit(rng.standard_normal((topics, dim)))
    centres = _unit(np.sqrt(0.4) * t[rng.integers(0, topics, n_videos)] + np.sqrt(0.6) *
                    _unit(rng.standard_normal((n_videos, dim))))
    videos = {}
    for v in range(n_videos):
        shots = _unit(np.sqrt(0.7) * centres[v] + np.sqrt(0.3) * _unit(rng.standard_normal((per_video, dim))))
        videos[f"/library/v{v:05d}.mp4"] = [(2.0 * i, 2.0 * i + 2.0, shots[i]) for i in range(per_video)]
    return videos, centres


# ---------------------------------------------------------------------------------------------------------
# exact search
# ---------------------------------------------------------------------------------------------------------
def test_exact_search_ranks_by_cosine_on_a_hand_built_store(tmp_path, clip_model):
    q = clip_model.encode_texts(["a red star moving to the left"]).embeds[0].numpy()
    rng = np.random.default_rng(1)
    other = _unit(rng.standard_normal((1, q.size)))[0]
    other = _unit(other - (other @ q) * q)  # orthogonal to the query
    # cosines by construction: 1, 0.8, 0.5, 0.5 (a tie: by id), 0, -0.6
    vec = {c: _unit(c * q + np.sqrt(max(0.0, 1 - c * c)) * other) for c in (1.0, 0.8, 0.5, 0.0, -0.6)}
    write_store(tmp_path / "idx", clip_model, {
        "/a.mp4": [(0.0, 2.0, vec[0.0]), (2.0, 4.0, vec[0.8])],
        "/b.mp4": [(0.0, 1.5, vec[0.5]), (1.5, 3.0, vec[-0.6]), (3.0, 4.5, vec[1.0])],
        "/c.mp4": [(10.0, 12.5, vec[0.5])],
    }).close()
    with Index(tmp_path / "idx", model=clip_model) as index:
        res = index.search_result("a red star moving to the left", k=4)
        assert res.method == "exact" and not res.reranked and res.skipped == []
        got = [(h.path, h.start_s, round(h.score, 4)) for h in res.hits]
        assert got == [("/b.mp4", 3.0, 1.0), ("/a.mp4", 2.0, 0.8), ("/b.mp4", 0.0, 0.5), ("/c.mp4", 10.0, 0.5)]
        assert set(res.seconds) == {"encode", "search", "assemble", "total"}
        assert len(index.search("a red star moving to the left", k=50)) == 6  # k past the count: all
        assert index.search("a red star moving to the left", k=1, exact=True)[0].path == "/b.mp4"
        assert index.is_indexed("/a.mp4") and not index.is_indexed("/elsewhere.mp4")
        assert index.thumbnail(res.hits[0].id) == b"jpeg" and index.item(res.hits[0].id).path == "/b.mp4"
        # "more like this": search by an item's own vector
        ids, scores, method = index.search_vectors(vec[0.8], k=2)
        assert method == "exact" and ids.shape == (1, 2) and index.item(int(ids[0, 0])).start_s == 2.0
        assert scores[0, 0] == pytest.approx(1.0, abs=1e-5)
        with pytest.raises(ConfigError, match=r"expected \[Q, "):
            index.search_vectors(np.ones(3))
        for bad, field in ((dict(k=0), "k"), (dict(k=2.0), "k"), (dict(k=True), "k"), (dict(exact="yes"), "exact"),
                           (dict(rerank_k=20), "rerank_k")):
            with pytest.raises(ConfigError) as e:
                index.search("a red star", **bad)
            assert e.value.field == field
        for q_bad in ("", "   ", "x" * 5000):
            with pytest.raises(ConfigError, match="query"):
                index.search(q_bad)


def test_empty_index_returns_nothing(tmp_path, clip_model):
    write_store(tmp_path / "idx", clip_model, {}).close()
    with Index(tmp_path / "idx", model=clip_model, ann_threshold=0) as index:
        assert index.search("anything") == [] and len(index) == 0


def test_another_model_is_refused(tmp_path, clip_model):
    write_store(tmp_path / "idx", clip_model, {"/a.mp4": [(0, 1, np.ones(clip_model.projection_dim))]}).close()
    torch.manual_seed(1)
    other = internvideo2.create_model("tiny", "clip").eval()  # same architecture, other weights
    with pytest.raises(ConfigError, match="not the model this index was built with") as e:
        Index(tmp_path / "idx", model=other)
    assert e.value.field == "model"
    with pytest.raises(ConfigError, match="no text tower"):
        Index(tmp_path / "idx", model=internvideo2.create_model("tiny"))
    with pytest.raises(ConfigError, match="not an index"):
        Index(tmp_path / "nothing_here", model=clip_model)


# ---------------------------------------------------------------------------------------------------------
# the ANN index
# ---------------------------------------------------------------------------------------------------------
def test_exact_search_helper_orders_ties_by_id_and_batches():
    rng = np.random.default_rng(0)
    vecs = _unit(rng.standard_normal((500, 16)))
    vecs[10] = vecs[3]  # a duplicate: equal scores, smaller id first
    ids = np.arange(1000, 1500, dtype=np.int64)
    q = np.stack([vecs[3], vecs[7]])
    got_ids, got_scores = ann_mod.exact_search(vecs, ids, q, 5)
    assert got_ids.shape == (2, 5) and list(got_ids[0][:2]) == [1003, 1010] and got_ids[1][0] == 1007
    full = q @ vecs.T
    for r in range(2):
        np.testing.assert_allclose(got_scores[r], np.sort(full[r])[::-1][:5], rtol=1e-6)
    assert ann_mod.exact_search(vecs, ids, q[0], 900)[0].shape == (1, 500)


def test_ann_params_scale_with_size():
    p = ann_mod.AnnParams.for_size(1_000_000)
    assert p.nlist == 2000 and p.nprobe == 60 and p.train_size == 100_000
    small = ann_mod.AnnParams.for_size(2000)
    assert small.nlist == 51 and small.nprobe == 16 and small.train_size == 2000
    assert ann_mod.AnnParams.for_size(5).nlist == 1


def test_ann_matches_exact_at_small_scale(tmp_path, clip_model):
    """Recall@10 of the IVF index against exact search on library-shaped vectors, through the ANN module
    and through Index with a lowered threshold."""
    dim = clip_model.projection_dim
    videos, centres = clustered(300, 10, dim)
    rng = np.random.default_rng(5)
    ids = np.arange(3000, dtype=np.int64)
    vecs = np.concatenate([np.stack([v for _, _, v in items]) for items in videos.values()])
    ann = ann_mod.IVFIndex.build(ids, vecs)
    queries = _unit(0.5 * centres[rng.integers(0, 300, 40)] + np.sqrt(0.75) * _unit(rng.standard_normal((40, dim))))
    exact_ids, _ = ann_mod.exact_search(vecs, ids, queries, 10)
    ann_ids, ann_scores = ann.search(queries, 10)
    recall = np.mean([len(set(a) & set(e)) / 10 for a, e in zip(ann_ids, exact_ids)])
    assert recall >= 0.95, recall
    np.testing.assert_allclose(ann_scores, np.einsum("qd,qkd->qk", queries, vecs[ann_ids]), atol=1e-5)  # exact IPs
    # a query asking for more than the probed lists hold is answered completely (every list probed)
    big_ids, _ = ann.search_complete(queries[:1], 2500)
    assert (big_ids >= 0).all() and len(set(big_ids[0])) == 2500

    # through Index: a text query whose neighbours are a cluster built around it
    q = clip_model.encode_texts(["a blue circle jumps"]).embeds[0].numpy()
    near = _unit(np.sqrt(0.8) * q + np.sqrt(0.2) * _unit(rng.standard_normal((12, dim))))
    videos["/library/target.mp4"] = [(float(i), i + 1.0, near[i]) for i in range(12)]
    write_store(tmp_path / "idx", clip_model, videos).close()
    with Index(tmp_path / "idx", model=clip_model, ann_threshold=1000) as index:
        res = index.search_result("a blue circle jumps", k=10)
        exact = index.search("a blue circle jumps", k=10, exact=True)
        assert res.method == "ann" and index.prepare(exact=True) == "exact" and index.prepare() == "ann"
        assert [h.id for h in res.hits] == [h.id for h in exact]
        assert all(h.path == "/library/target.mp4" for h in res.hits)
    with Index(tmp_path / "idx", model=clip_model) as index:  # the default threshold: exact at this size
        assert index.search_result("a blue circle jumps").method == "exact"


def _cache_files(folder: Path) -> list[str]:
    return sorted(p.name for p in (folder / ann_mod.CACHE_DIR).iterdir()) if (folder / "ann").is_dir() else []


def test_ann_cache_is_keyed_by_the_store_state_and_never_trusted(tmp_path, clip_model, caplog):
    dim = clip_model.projection_dim
    videos, _ = clustered(120, 10, dim, seed=2)
    folder = tmp_path / "idx"
    store = write_store(folder, clip_model, videos)
    store.close()

    ro = IndexStore(folder, readonly=True)
    ann, ids, vecs, how = ann_mod.load_or_build(ro)
    assert how == "built" and ids is not None and ann.ntotal == 1200
    files = _cache_files(folder)
    assert len(files) == 2 and {Path(f).suffix for f in files} == {".faiss", ".json"}
    assert ann_mod.load_or_build(ro)[3] == "cached"  # a second reader (another process) loads it
    with Index(folder, model=clip_model, ann_threshold=100) as index:
        first = index.search("a green square", k=5)

        # the store changes (a video added): the version moves, the old file is never used again
        rw = IndexStore(folder)
        new = _unit(np.random.default_rng(9).standard_normal((3, dim)))
        new[0] = clip_model.encode_texts(["a green square"]).embeds[0].numpy()  # the best match from now on
        with rw.transaction():
            rw.put_video(VideoState("/library/new.mp4", 1, 1, "1" * 64), [(0.0, 1.0, v, None) for v in new])
        rw.close()
        after = index.search_result("a green square", k=5)
        assert after.method == "ann" and after.hits[0].path == "/library/new.mp4"
        assert after.hits[0].score == pytest.approx(1.0, abs=1e-5) and first[0].path != "/library/new.mp4"
    files2 = _cache_files(folder)
    assert len(files2) == 2 and files2 != files  # the stale state's files are gone
    key = ann_mod.store_key(ro)
    assert key["version"] == 2 and key["count"] == 1203

    path, side = ann_mod.cache_paths(folder, key)
    good = path.read_bytes()
    caplog.set_level(logging.WARNING, logger="internvideo2.search")

    def rebuilt(reason: str) -> None:
        caplog.clear()
        assert ann_mod.load_or_build(ro)[3] == "built"
        assert reason in caplog.text, caplog.text
        assert ann_mod.load_or_build(ro)[3] == "cached"  # the rebuild rewrote a good file

    # flipped bytes in the middle of the file: the checksum fails
    bad = bytearray(good)
    bad[len(bad) // 2] ^= 0xFF
    path.write_bytes(bytes(bad))
    rebuilt("checksum")
    # truncated, with a sidecar that matches it: FAISS cannot read it
    path.write_bytes(good[: len(good) // 3])
    info = json.loads(side.read_text())
    side.write_text(json.dumps({**info, "size": path.stat().st_size, "blake2b": ann_mod._file_digest(path)}))
    rebuilt("ANN cache not used")
    # a well-formed index of other vectors under this key, with a matching sidecar: the spot check refuses it
    other = ann_mod.IVFIndex.build(np.arange(1203, dtype=np.int64) + 1, _unit(np.random.default_rng(3).standard_normal(
        (1203, dim))), ann_mod.AnnParams.for_size(1203))
    other.write(path)
    side.write_text(json.dumps({**info, "size": path.stat().st_size, "blake2b": ann_mod._file_digest(path)}))
    rebuilt("not in it")
    # a sidecar of another state
    side.write_text(json.dumps({**info, "key": {**info["key"], "version": 1}}))
    rebuilt("another store state")
    # the sidecar missing (killed between the two writes)
    side.unlink()
    rebuilt("ANN cache not used")
    ro.close()


def test_unwritable_index_folder_keeps_the_ann_index_in_memory(tmp_path, clip_model, caplog):
    videos, _ = clustered(60, 10, clip_model.projection_dim, seed=4)
    folder = tmp_path / "idx"
    write_store(folder, clip_model, videos).close()
    (folder / ann_mod.CACHE_DIR).write_text("a file where the cache folder would go")
    caplog.set_level(logging.WARNING, logger="internvideo2.search")
    with Index(folder, model=clip_model, ann_threshold=10) as index:
        assert len(index.search("a cat", k=3)) == 3
    assert "keeping the index in memory only" in caplog.text


# ---------------------------------------------------------------------------------------------------------
# ITM re-ranking on real decoded clips
# ---------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def stage2_world(tmp_path_factory):
    """3 synthetic clips (8 frames at 4 fps: 2 s, 64 px), a tiny stage-2 model saved to disk, and its
    window-mode embed run over the clips (1 s windows: 2 items per clip) with tokens."""
    base = tmp_path_factory.mktemp("s2")
    generate_world(base / "world", 3, seed=11, cfg=SynthConfig(num_frames=8, size=64, audio=False), progress=False)
    torch.manual_seed(0)
    model = internvideo2.create_model("tiny", "stage2").eval()
    internvideo2.save_pretrained(model, base / "model")
    files = sorted((base / "world" / "videos" / "train").glob("*.mp4"))
    res = embed_videos(files, model, mode="window", window=1.0, tokens=True, batch_size=4, workers=0, threads=1,
                       progress=False)
    return base, model, files, res


def _stage2_index(folder: Path, stage2_world, settings: dict | None = None) -> Path:
    base, model, files, res = stage2_world
    videos: dict[str, list] = {}
    for row, emb in zip(res.index, res.embeddings):
        videos.setdefault(row["path"], []).append((row["start_s"], row["end_s"], emb))
    write_store(folder, model, videos, source=str(base / "model"),
                settings=settings or {**res.meta["settings"], "thumbnails": 128}).close()
    return folder


def test_rerank_scores_are_the_itm_probabilities_of_the_indexed_frames(tmp_path, stage2_world):
    _base, model, files, res = stage2_world
    # the settings as ``internvideo2 index`` records them (build.ItemSettings)
    folder = _stage2_index(tmp_path / "idx", stage2_world, settings={
        "mode": "window", "frames": 4, "size": 56, "resize": "squash", "window": 1.0, "stride": 1.0, "shots": None,
        "feature": "proj", "dtype": "fp32", "sample": "middle"})
    query = "a red star moving to the left"
    text = model.encode_texts([query])
    # what ITM says about every item, from the tokens the embed run computed for exactly those frames
    with torch.no_grad():
        tokens = torch.from_numpy(np.asarray(res.tokens))
        n = len(tokens)
        logits = model.itm_logits(tokens, text.hidden.expand(n, -1, -1), text.attention_mask.expand(n, -1))
    expected = {(r["path"], round(r["start_s"], 3)): float(p)
                for r, p in zip(res.index, torch.softmax(logits, -1)[:, 1])}
    with Index(folder) as index:  # the model recorded in the index (a saved folder)
        cos = index.search(query, k=6)
        out = index.search_result(query, k=4, rerank=True)
        assert out.reranked and out.skipped == [] and len(out.hits) == 4 and "rerank" in out.seconds
        scores = [h.score for h in out.hits]
        assert scores == sorted(scores, reverse=True) and all(0.0 <= s <= 1.0 for s in scores)
        for h in out.hits:
            assert h.score == pytest.approx(expected[(h.path, round(h.start_s, 3))], abs=1e-4)
        # the 4 re-ranked are the best by ITM among all 6 candidates (rerank_k = max(4, 16) covers them all)
        best4 = sorted(expected.values(), reverse=True)[:4]
        assert scores == pytest.approx(best4, abs=1e-4)
        assert {h.id for h in cos} >= {h.id for h in out.hits}
        # fewer candidates than k is refused; more is fine
        for bad in (2, 1000):  # fewer candidates than k; more than one re-ranking decodes
            with pytest.raises(ConfigError, match="rerank_k"):
                index.search(query, k=4, rerank=True, rerank_k=bad)
        assert len(index.search(query, k=2, rerank=True, rerank_k=3)) == 2


def test_rerank_skips_and_reports_files_gone_or_changed(tmp_path, stage2_world, caplog):
    base, _model, files, _res = stage2_world
    moved = tmp_path / "clips"
    moved.mkdir()
    copies = []
    for f in files:
        (moved / f.name).write_bytes(f.read_bytes())
        copies.append(moved / f.name)
    # an index over the copies: the same items under the new paths
    b, m, _, res = stage2_world
    res2 = type(res)(res.embeddings, [{**r, "path": str(moved / Path(r["path"]).name)} for r in res.index],
                     res.errors, res.meta, token_arrays=res.token_arrays)
    folder = _stage2_index(tmp_path / "idx", (b, m, copies, res2))
    copies[0].unlink()
    st = copies[1].stat()
    os.utime(copies[1], ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # touched: no longer what was indexed
    caplog.set_level(logging.WARNING, logger="internvideo2.search")
    with Index(folder) as index:
        out = index.search_result("a blue circle", k=6, rerank=True)
        assert "re-ranking skipped" not in caplog.text  # search_result reports them in .skipped
        assert len(index.search("a blue circle", k=6, rerank=True)) == 2  # search (hits only) logs them
        assert caplog.text.count("re-ranking skipped") == 4 and "missing" in caplog.text
    reasons = {(Path(s.path).name, s.reason) for s in out.skipped}
    assert reasons == {(copies[0].name, "missing"), (copies[1].name, "changed")}
    assert len(out.skipped) == 4  # two items per file
    assert [Path(h.path).name for h in out.hits] == [copies[2].name] * 2


def test_rerank_needs_an_itm_head_and_the_item_settings(tmp_path, clip_model, stage2_world):
    write_store(tmp_path / "clip", clip_model, {"/a.mp4": [(0, 1, np.ones(clip_model.projection_dim))]}).close()
    with Index(tmp_path / "clip", model=clip_model) as index:
        with pytest.raises(ConfigError, match="no ITM head") as e:
            index.search("a dog", rerank=True)
        assert e.value.field == "rerank"
    folder = _stage2_index(tmp_path / "s2", stage2_world, settings={
        "unknown": 1, "mode": "shots", "shots": {"ratio": 3.0, "min_score": 0.12, "min_len": 0.5, "step": 1}})
    with Index(folder) as index:  # cut as shots, but the items are 1 s windows: nothing matches
        out = index.search_result("a dog", k=2, rerank=True)
        assert out.hits == [] and {s.reason for s in out.skipped} == {"changed"}
    folder = _stage2_index(tmp_path / "s3", stage2_world, settings={"mode": "window"})  # no window length
    with Index(folder) as index:
        with pytest.raises(ConfigError, match="recorded item settings are not usable") as e:
            index.search("a dog", rerank=True)
        assert e.value.field == "rerank"


# ---------------------------------------------------------------------------------------------------------
# the CLI
# ---------------------------------------------------------------------------------------------------------
def test_format_time():
    assert [format_time(s) for s in (0, 1.25, 59.96, 75.25, 3600, 3725.5)] == [
        "0:00.0", "0:01.2", "1:00.0", "1:15.2", "1:00:00.0", "1:02:05.5"]


def _cli(capsys, *args: str) -> tuple[int, str, str]:
    code = cli_main(["search", *map(str, args)])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_cli_prints_ranked_results_and_json_lines(tmp_path, capsys, clip_model, saved_clip):
    q = clip_model.encode_texts(["a yellow triangle"]).embeds[0].numpy()
    rng = np.random.default_rng(0)
    vid = {f"/videos/clip{i}.mp4": [(60.0 * i, 60.0 * i + 5.5, _unit(q * (1 - 0.2 * i) + 0.1 * rng.standard_normal(
        q.size)))] for i in range(4)}
    write_store(tmp_path / "idx", clip_model, vid, source=str(saved_clip)).close()
    code, out, err = _cli(capsys, tmp_path / "idx", "a yellow triangle", "-k", "3")
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0].split() == ["#", "file", "start\u2013end", "cosine"] and len(lines) == 4
    assert lines[1].split()[:3] == ["1", "/videos/clip0.mp4", "0:00.0\u20130:05.5"]
    assert lines[2].split()[:3] == ["2", "/videos/clip1.mp4", "1:00.0\u20131:05.5"]
    code, out, err = _cli(capsys, tmp_path / "idx", "a yellow triangle", "--json", "-k", "2", "--exact")
    assert code == 0, err
    rows = [json.loads(line) for line in out.splitlines()]
    assert [r["rank"] for r in rows] == [1, 2] and rows[0]["path"] == "/videos/clip0.mp4"
    assert set(rows[0]) == {"rank", "id", "path", "start_s", "end_s", "score"} and rows[0]["end_s"] == 5.5
    assert rows[0]["score"] > rows[1]["score"]
    code, out, _ = _cli(capsys, tmp_path / "idx", "a yellow triangle", "--model", saved_clip)  # the same model
    assert code == 0 and len(out.splitlines()) == 5
    assert format_result(type("R", (), {"hits": [], "reranked": False})()) == ""


def test_cli_errors_are_one_line_naming_the_flag(tmp_path, capsys, clip_model, saved_clip):
    write_store(tmp_path / "idx", clip_model, {"/a.mp4": [(0, 1, np.ones(clip_model.projection_dim))]},
                source=str(saved_clip)).close()
    torch.manual_seed(2)
    other = tmp_path / "other_model"
    internvideo2.save_pretrained(internvideo2.create_model("tiny", "clip"), other)
    cases = [
        ((tmp_path / "idx", "a cat", "-k", "0"), 2, "-k: must be an integer >= 1"),
        ((tmp_path / "missing", "a cat"), 2, "INDEX"),
        ((tmp_path / "idx", " "), 2, "QUERY: must be a non-empty text"),
        ((tmp_path / "idx", "a cat", "--rerank"), 2, "--rerank: a clip model has no ITM head"),
        ((tmp_path / "idx", "a cat", "--rerank-k", "5"), 2, "--rerank-k: only applies with rerank"),
        ((tmp_path / "idx", "a cat", "--model", other), 2, "--model:"),
        ((tmp_path, "a cat"), 2, "not an index"),
    ]
    for args, code, msg in cases:
        got, out, err = _cli(capsys, *args)
        assert got == code and msg in err and out == "", (args, err)
        assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
