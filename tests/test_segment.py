"""Shot-boundary detection (``internvideo2.data.segment``) on real footage: a cut made here by joining two
different real clips, the five hard cuts of ``bikes.mp4`` (checked by eye at frames 30, 76, 137, 187,
242), continuous clips without spurious cuts, and the ``segment`` CLI."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest
from conftest import asset
from test_video_io import encode_video, real_frames

from internvideo2.data.segment import Shot, detect_shots, frame_change_scores
from internvideo2.data.video import probe_video
from internvideo2.errors import ConfigError

SIZE = (72, 128)


@pytest.fixture(scope="module")
def joined(tmp_path_factory):
    """40 frames of Big Buck Bunny then 30 frames of the first shot of bikes.mp4, re-encoded at 25 fps:
    the only cut starts frame 40 (1.6 s)."""
    a = real_frames(str(asset("video/bigbuckbunny.mp4")), 40, SIZE)
    b = real_frames(str(asset("video/bikes.mp4")), 30, SIZE)
    return encode_video(tmp_path_factory.mktemp("seg") / "joined.mp4", a + b, fps=25, codec="mpeg4",
                        options={"qscale": "3"})


def test_cut_between_two_real_clips(joined):
    shots = detect_shots(joined)
    assert len(shots) == 2
    assert abs(shots[1].start_frame - 40) <= 1
    s0, s1 = shots
    assert (s0.start_frame, s0.end_frame, s1.end_frame) == (0, s1.start_frame, 70)
    assert s0.start_s == 0.0 and s1.start_s == pytest.approx(s1.start_frame / 25)
    assert s0.end_s == s1.start_s and s1.end_s == pytest.approx(2.8)
    assert s1.num_frames == 70 - s1.start_frame
    # analysing every 2nd frame places the cut within the step
    assert [abs(s.start_frame - 40) <= 2 for s in detect_shots(joined, step=2)[1:]] == [True]


def test_real_hard_cuts_of_bikes():
    shots = detect_shots(str(asset("video/bikes.mp4")))
    starts = [s.start_frame for s in shots]
    assert len(starts) == 6 and starts[0] == 0
    for got, want in zip(starts[1:], [30, 76, 137, 187, 242]):
        assert abs(got - want) <= 1
    assert shots[-1].end_frame == 250 and shots[-1].end_s == pytest.approx(10.0)
    assert all(a.end_frame == b.start_frame for a, b in zip(shots, shots[1:]))  # contiguous, no gap


@pytest.mark.parametrize("rel", ["video/bigbuckbunny.mp4", "video/example1.mp4"])
def test_continuous_clip_has_no_cut(rel):
    p = str(asset(rel))
    m = probe_video(p)
    shots = detect_shots(p)
    assert shots == [Shot(0, m.num_frames, 0.0, round(m.duration, 6))]


def test_scores_and_options(joined):
    idx, scores = frame_change_scores(joined, step=1)
    assert idx.tolist() == list(range(70)) and scores[0] == 0.0
    assert int(scores.argmax()) in (39, 40, 41) and float(scores.max()) > 5 * float(scores[1:35].mean())
    idx2, _ = frame_change_scores(joined, step=3)
    assert idx2.tolist() == list(range(0, 70, 3))
    # a minimum shot length longer than the video keeps it whole
    assert len(detect_shots(joined, min_shot_s=3.0)) == 1
    for kw in ({"ratio": 1.0}, {"window": 0}, {"step": 0}):
        with pytest.raises(ConfigError):
            detect_shots(joined, **kw)


def test_segment_cli(joined, tmp_path):
    (tmp_path / "bad.mp4").write_bytes(b"\0" * 100)
    cmd = [sys.executable, "-m", "internvideo2.cli", "segment", joined, str(tmp_path / "bad.mp4")]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert p.returncode == 1, p.stderr  # one file failed
    rows = [json.loads(x) for x in p.stdout.splitlines()]
    assert [r.get("shot") for r in rows] == [0, 1, None]
    assert rows[0]["path"] == joined and rows[0]["start_frame"] == 0 and abs(rows[1]["start_frame"] - 40) <= 1
    assert rows[1]["end_s"] == pytest.approx(2.8)
    assert rows[2]["path"] == str(tmp_path / "bad.mp4") and rows[2]["error"] == "invalid_data"
    assert set(rows[2]) == {"path", "error", "detail"}
