"""Bad input: every kind gives a :class:`MediaError` naming the file and a reason code, quickly (no hang).

Files are made at run time under ``tmp_path`` (from the real assets where a real container matters).
"""
from __future__ import annotations

import os
import shutil
import time

import numpy as np
import pytest
from conftest import asset
from test_video_io import encode_audio, encode_video, grey_frames

from internvideo2.data.video import REASONS, probe_video, read_clip, read_frames
from internvideo2.errors import ConfigError, MediaError

LIMIT_S = 10.0  # generous on a shared 2-core machine; each case takes well under a second


def expect_error(fn, path, reasons: set[str]) -> MediaError:
    t0 = time.monotonic()
    with pytest.raises(MediaError) as ei:
        fn(path)
    elapsed = time.monotonic() - t0
    e = ei.value
    assert e.reason in reasons, (e.reason, e.detail)
    assert e.reason in REASONS  # documented code
    assert e.path == str(path) and str(path) in str(e)
    assert elapsed < LIMIT_S, f"{path}: {elapsed:.1f} s"
    return e


READERS = {
    "probe": lambda p: probe_video(p),
    "read_frames": lambda p: read_frames(p, [0]),
    "read_clip": lambda p: read_clip(p, 4, "middle"),
}


def _cut(src, dst, n_bytes) -> str:
    data = open(src, "rb").read()
    open(dst, "wb").write(data[:n_bytes] if n_bytes >= 0 else data[:len(data) + n_bytes])
    return str(dst)


@pytest.fixture(scope="module")
def bad(tmp_path_factory):
    d = tmp_path_factory.mktemp("bad")
    files = {}
    files["missing"] = (str(d / "missing.mp4"), {"not_found"})
    os.mkdir(d / "folder.mp4")
    files["directory"] = (str(d / "folder.mp4"), {"not_a_file"})
    (d / "empty.mp4").write_bytes(b"")
    files["zero_bytes"] = (str(d / "empty.mp4"), {"empty_file"})
    (d / "random.mp4").write_bytes(np.random.default_rng(0).integers(0, 256, 20000, dtype=np.uint8).tobytes())
    files["random_bytes"] = (str(d / "random.mp4"), {"invalid_data"})
    (d / "text.mp4").write_text("this is not a video\n" * 50)
    files["text_named_mp4"] = (str(d / "text.mp4"), {"invalid_data"})
    # bikes.mp4 keeps its index (moov) at the end: cut in half, the container cannot be parsed
    files["truncated_mp4"] = (_cut(asset("video/bikes.mp4"), d / "half.mp4", 250_000), {"invalid_data"})
    # a WebM cut after 8 kB: its header still declares 37.1 s, but there is no frame to reach
    files["header_only_webm"] = (_cut(asset("video/display-dual-monitors.webm"), d / "head.webm", 8000),
                                 {"no_frames"})
    # audio only, whatever the extension
    shutil.copy(asset("audio/house_lo.wav"), d / "wav_named.mp4")
    files["wav_named_mp4"] = (str(d / "wav_named.mp4"), {"no_video_stream"})
    files["ogg_audio"] = (str(asset("audio/house_lo.ogg")), {"no_video_stream"})
    files["aac_in_mkv"] = (encode_audio(d / "aac.mkv", codec="aac"), {"no_video_stream"})
    # a header declaring 16000 x 16000 (1 GB per RGB frame): refused before any frame is decoded
    (d / "huge.y4m").write_bytes(b"YUV4MPEG2 W16000 H16000 F25:1 Ip A1:1 C420jpeg\nFRAME\n" + bytes(4096))
    files["absurd_dimensions"] = (str(d / "huge.y4m"), {"dimensions_too_large"})
    return files


CASES = ["missing", "directory", "zero_bytes", "random_bytes", "text_named_mp4", "truncated_mp4",
         "header_only_webm", "wav_named_mp4", "ogg_audio", "aac_in_mkv", "absurd_dimensions"]


@pytest.mark.parametrize("reader", sorted(READERS))
@pytest.mark.parametrize("case", CASES)
def test_bad_file_gives_typed_error(bad, case, reader):
    path, reasons = bad[case]
    e = expect_error(READERS[reader], path, reasons)
    if case == "wav_named_mp4":
        assert "audio(pcm_u8)" in e.detail  # says what the file holds instead
    if case == "header_only_webm":
        assert "37.1" in e.detail


def test_fifo_is_not_opened(tmp_path):
    # opening a FIFO for reading would block until a writer comes: refused from the path alone
    p = tmp_path / "pipe.mp4"
    os.mkfifo(p)
    expect_error(probe_video, p, {"not_a_file"})


def test_truncated_webm_metadata_follows_the_packets(tmp_path):
    # the first third of the WebM: 139 frames survive; the header's 37.1 s must not be believed
    p = _cut(asset("video/display-dual-monitors.webm"), tmp_path / "third.webm", 604210 // 3)
    m = probe_video(p)
    assert (m.num_frames, m.frame_count_source, m.fps) == (139, "packets", 15.0)
    assert m.duration == pytest.approx(139 / 15, abs=2e-3)
    assert read_frames(p, [138, 0]).shape == (2, 768, 1024, 3)
    expect_error(lambda q: read_frames(q, [139]), p, {"index_out_of_range"})


def test_truncated_file_with_index_in_front(tmp_path):
    # 'faststart' MP4: the index promises 60 frames, the data stops near half of them
    full = encode_video(tmp_path / "fs.mp4", [np.random.default_rng(i).integers(0, 256, (48, 64, 3), np.uint8)
                                              for i in range(60)], codec="libx264",
                        container_options={"movflags": "faststart"})
    p = _cut(full, tmp_path / "fs_cut.mp4", os.path.getsize(full) // 2)
    m = probe_video(p)
    assert m.num_frames == 60 and m.frame_count_source == "stream"  # the header's word
    assert probe_video(p, scan_packets=True).num_frames < 60  # the packets tell the truth
    for strategy in ("sequential", "seek"):
        e = expect_error(lambda q, s=strategy: read_frames(q, [0, 59], strategy=s), p, {"truncated"})
        assert "60 declared" in e.detail
    assert read_frames(p, [0, 5]).shape == (2, 48, 64, 3)  # what is there stays readable


def test_dimension_limit(tmp_path):
    p = str(asset("video/example1.mp4"))  # 640 x 480 = 307200 pixels
    e = expect_error(lambda q: probe_video(q, max_pixels=300_000), p, {"dimensions_too_large"})
    assert "640x480" in e.detail
    expect_error(lambda q: read_frames(q, [0], max_pixels=300_000), p, {"dimensions_too_large"})
    meta = probe_video(p)  # a probe made without the limit does not bypass it
    expect_error(lambda q: read_frames(q, [0], meta=meta, max_pixels=300_000), p, {"dimensions_too_large"})
    expect_error(lambda q: read_clip(q, 4, meta=meta, max_pixels=300_000), p, {"dimensions_too_large"})
    assert probe_video(p, max_pixels=None).width == 640
    y4m = tmp_path / "big.y4m"
    y4m.write_bytes(b"YUV4MPEG2 W16000 H16000 F25:1 Ip A1:1 C420jpeg\nFRAME\n" + bytes(4096))
    # without the limit the header is believed, and the missing frame data is what fails
    expect_error(lambda q: probe_video(q, max_pixels=None), str(y4m), {"no_frames"})


def test_clip_shorter_than_requested(tmp_path):
    p = encode_video(tmp_path / "five.mp4", grey_frames(5), fps=5)
    frames, idx, _ = read_clip(p, 8, "middle")  # official: repeat the last index
    assert idx == [0, 1, 2, 3, 4, 4, 4, 4] and frames.shape[0] == 8
    e = expect_error(lambda q: read_clip(q, 8, "middle", strict=True), p, {"too_few_frames"})
    assert "8 frames requested, 5 available" in e.detail
    # also for a time range of a long clip: [0, 1) s of example1 holds 5 frames
    real = str(asset("video/example1.mp4"))
    expect_error(lambda q: read_clip(q, 8, "rand", end_s=1.0, strict=True), real, {"too_few_frames"})
    assert read_clip(real, 5, "middle", end_s=1.0, strict=True)[1] == [0, 1, 2, 3, 4]


def test_index_out_of_range():
    p = str(asset("video/example1.mp4"))
    for idx in ([40], [-1], [0, 39, 40]):
        e = expect_error(lambda q, i=idx: read_frames(q, i), p, {"index_out_of_range"})
        assert "40 frames" in e.detail
    with pytest.raises(ConfigError):
        read_frames(p, [1.5])


def test_time_range_outside_the_video():
    p = str(asset("video/example1.mp4"))
    expect_error(lambda q: read_clip(q, 4, start_s=9.0), p, {"empty_range"})


def test_time_limit():
    p = str(asset("video/display-dual-monitors.webm"))
    e = expect_error(lambda q: read_frames(q, [556], timeout=1e-4), p, {"timeout"})
    assert "time limit" in e.detail
    meta = probe_video(p)
    expect_error(lambda q: read_frames(q, [556], meta=meta, timeout=1e-3, strategy="sequential"), p,
                 {"timeout"})
    with pytest.raises(ConfigError):
        read_frames(p, [0], timeout=0)


def test_every_reason_is_documented():
    for code in ("not_found", "not_a_file", "empty_file", "invalid_data", "no_video_stream",
                 "dimensions_too_large", "no_frames", "index_out_of_range", "too_few_frames", "empty_range",
                 "truncated", "decode_error", "timeout", "unsupported_codec", "bad_dimensions"):
        assert code in REASONS and REASONS[code]
