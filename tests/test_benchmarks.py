"""The benchmark scripts run end to end on tiny inputs and write the JSON the README summarises (their
timings are not checked here: speed targets live in the benchmarks' own output, never in tests)."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _run(script: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "benchmarks" / script), *args], capture_output=True,
                          text=True, timeout=300, cwd=ROOT)


def test_bench_encoder_writes_every_path_and_comparison(tmp_path):
    out = tmp_path / "enc.json"
    r = _run("bench_encoder.py", "--presets", "tiny", "--frames", "4", "--size", "56", "--repeats", "1",
             "--batch", "2", "--out", str(out))
    assert r.returncode == 0, r.stderr
    data = json.loads(out.read_text())
    row, = data["results"]
    assert row["batch"] == 2 and row["tokens"] == 65
    for path in ("sdpa", "naive", "naive_fused", "sdpa_whole_batch"):
        assert row[path]["seconds"] > 0 and len(row[path]["all_seconds"]) == 1, path
        assert abs(row[path]["clips_per_s"] * row[path]["seconds"] - 2) < 1e-9  # two clips per forward
    for key in ("speedup_sdpa_vs_naive", "speedup_sdpa_vs_naive_fused", "speedup_micro_batching",
                "bound_if_attention_free"):
        assert row[key] > 0, key
    assert set(row["targets"]) == {"sdpa >= 1.8x naive", "achieved >= 70% of matmul"}
    assert data["matmul_gflops"] > 0 and data["precision"] == "fp32"


def test_bench_encoder_rejects_bad_arguments(tmp_path):
    for args, msg in ((["--batch", "0"], "--batch must be >= 1"), (["--paths", "naive"], "must include sdpa")):
        r = _run("bench_encoder.py", "--presets", "tiny", "--out", str(tmp_path / "x.json"), *args)
        assert r.returncode == 2 and msg in r.stderr, r.stderr


def test_bench_embed_ratio_is_what_it_reports(tmp_path):
    out = tmp_path / "embed.json"
    r = _run("bench_embed.py", "--clips", "8", "--repeats", "1", "--no-serial", "--depth", "1",
             "--data", str(tmp_path / "clips"), "--out", str(out))
    assert r.returncode == 0, r.stderr
    d = json.loads(out.read_text())
    c = d["clips_per_s"]
    assert min(c["decode"], c["model"], c["pipeline"]) > 0
    assert abs(d["ratio"] - c["pipeline"] / min(c["decode"], c["model"])) < 0.01
    assert d["meets_target"] == (d["ratio"] >= 0.8) and d["config"]["clips"] == 8


def test_bench_decode_on_the_real_assets(tmp_path, assets):
    """Every decoding method returns the same frames as sequential decoding (the script exits 1 on a
    mismatch) for every real asset, and each gets a timing."""
    out = tmp_path / "decode.json"
    r = _run("bench_decode.py", "--assets", str(assets / "video"), "--repeats", "1", "--size", "56",
             "--policies", "middle", "--out", str(out))
    assert r.returncode == 0, r.stderr
    d = json.loads(out.read_text())
    videos = {p.name for p in (assets / "video").iterdir() if p.suffix in (".mp4", ".webm", ".mkv", ".avi", ".mov")}
    assert {row["asset"] for row in d["results"]} == videos
    assert all(row["seconds_median"] > 0 for row in d["results"])


def test_bench_search_quick_writes_every_size_method_and_companion(tmp_path):
    out = tmp_path / "search.json"
    r = _run("bench_search.py", "--quick", "--work", str(tmp_path / "work"), "--clip-data", str(tmp_path / "clips"),
             "--out", str(out))
    assert r.returncode == 0, r.stdout + r.stderr
    d = json.loads(out.read_text())
    assert [row["items"] for row in d["results"]] == [1000, 5000]
    for row in d["results"]:
        for method in ("exact", "ann"):
            lat = row[method]["latency_ms"]
            assert 0 < lat["p50"] <= lat["p95"] and lat["n"] == 8
            assert {"encode", "search", "assemble", "total"} <= set(row[method]["median_ms"])
        assert set(row["recall_at_10"]) == {"text", "video", "random"}
        assert all(0.0 <= v <= 1.0 for v in row["recall_at_10"].values())
        assert row["auto_method"] == "exact" and row["ann_build_s"] > 0
    assert d["serve_throughput"]["errors"] == 0 and d["serve_throughput"]["items"] == 1000
    assert d["index_overhead"]["overhead"] > -1 and "embed_s" in d["index_overhead"]
