"""``internvideo2 probe FILE... [--frames N --sample POLICY]`` in a real subprocess: one JSON line per file,
error lines for bad files, exit code 1 when any file failed."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest
from conftest import asset
from test_video_io import encode_video, grey_frames


def probe(*args) -> tuple[int, list[dict], str]:
    p = subprocess.run([sys.executable, "-m", "internvideo2.cli", "probe", *map(str, args)],
                       capture_output=True, text=True, timeout=120)
    lines = [json.loads(x) for x in p.stdout.splitlines() if x.strip()]
    return p.returncode, lines, p.stderr


def test_metadata_lines_for_real_files():
    ex, webm = str(asset("video/example1.mp4")), str(asset("video/display-dual-monitors.webm"))
    bbb = str(asset("video/bigbuckbunny.mp4"))
    rc, lines, err = probe(ex, webm, bbb, "--frames", "8")
    assert rc == 0, err
    assert [r["path"] for r in lines] == [ex, webm, bbb]  # one line per file, in order
    a, w, b = lines
    assert (a["container"], a["video_codec"], a["width"], a["height"]) == ("mov,mp4,m4a,3gp,3g2,mj2", "mpeg4",
                                                                         640, 480)
    assert (a["fps"], a["num_frames"], a["duration"], a["has_audio"]) == (5.0, 40, 8.0, False)
    assert (a["frame_count_source"], a["num_keyframes"]) == ("packets", 4)  # default --count packets
    assert a["sample"] == "middle" and a["indices"] == [2, 7, 12, 17, 22, 27, 32, 37]
    assert a["timestamps"] == pytest.approx([i / 5 for i in a["indices"]])
    assert (w["video_codec"], w["num_frames"], w["fps"]) == ("vp8", 557, 15.0)
    assert w["duration"] == pytest.approx(37.1333, abs=1e-3)
    assert (b["has_audio"], b["audio_codec"], b["audio_channels"], b["audio_sample_rate"]) == (
        True, "aac", 6, 48000)
    assert "error" not in a and "error" not in w


def test_bad_files_give_error_lines_and_exit_1(tmp_path):
    good = encode_video(tmp_path / "good.mp4", grey_frames(10), fps=10)
    (tmp_path / "empty.mp4").write_bytes(b"")
    (tmp_path / "junk.webm").write_bytes(bytes(range(256)) * 40)
    wav = str(asset("audio/Front_Left.wav"))
    files = [good, tmp_path / "empty.mp4", tmp_path / "missing.mp4", tmp_path / "junk.webm", wav]
    rc, lines, err = probe(*files, "--frames", "4", "--sample", "rand", "--seed", "3", "--decode")
    assert rc == 1, err
    assert [r["path"] for r in lines] == [str(f) for f in files]
    ok = lines[0]
    assert ok["num_frames"] == 10 and len(ok["indices"]) == 4 and ok["decoded"] == [4, 32, 48, 3]
    assert [r.get("error") for r in lines[1:]] == ["empty_file", "not_found", "invalid_data",
                                                   "no_video_stream"]
    assert all(r["detail"] for r in lines[1:])
    # the seed makes 'rand' reproducible across runs
    rc2, again, _ = probe(good, "--frames", "4", "--sample", "rand", "--seed", "3")
    assert rc2 == 0 and again[0]["indices"] == ok["indices"]


def probe_here(capsys, *args) -> tuple[int, list[dict], str]:
    """The same command in this process (``cli.main``), for the option variants (saves a start-up)."""
    from internvideo2.cli import main

    capsys.readouterr()
    rc = main(["probe", *map(str, args)])
    out = capsys.readouterr()
    return rc, [json.loads(x) for x in out.out.splitlines() if x.strip()], out.err


def test_policies_time_range_and_count_modes(capsys):
    ex = str(asset("video/example1.mp4"))
    rc, lines, err = probe_here(capsys, ex, "--frames", "8", "--sample", "fps1", "--count", "header")
    assert rc == 0, err
    assert lines[0]["indices"] == [2, 8, 12, 18, 22, 28, 32, 38]
    assert lines[0]["frame_count_source"] == "stream"
    rc, lines, _ = probe_here(capsys, ex, "--frames", "4", "--start", "2", "--end", "4")
    assert lines[0]["indices"] == [10, 13, 15, 18]
    rc, lines, _ = probe_here(capsys, ex, "--frames", "8", "--sample", "sparse_test", "--num-clips", "4",
                              "--clip-idx", "3", "--count", "decode")
    assert lines[0]["frame_count_source"] == "decoded"
    # seg = 39/8 = 4.875, shift int(4.875 / 5 * 4) = 3; round(19.5) = 20 (half to even)
    assert lines[0]["indices"] == [3, 8, 13, 18, 23, 27, 32, 37]
    rc, lines, _ = probe_here(capsys, ex, "--frames", "4", "--start", "9")  # past the end: a file error
    assert rc == 1 and lines[0]["error"] == "empty_range"


def test_bad_option_exits_2(capsys):
    ex = str(asset("video/example1.mp4"))
    rc, lines, err = probe_here(capsys, ex, "--frames", "4", "--sample", "sometimes")
    assert rc == 2 and not lines and "unknown sampling policy" in err
