"""Video reading (``internvideo2.data.video``) on the real clips of ``../shared/assets`` and on files
encoded here with PyAV: metadata for every container, frame order, sequential vs seek vs decord
bit-identity, resize during conversion, time ranges, sliding windows, ``read_clip`` with every policy,
decoder threads.

The media helpers at the top (``encode_video``, ``grey``, ...) are imported by the other data-I/O test
files (``from test_video_io import ...``); they write only under pytest's ``tmp_path``.
"""
from __future__ import annotations

import random
import subprocess
import sys
from fractions import Fraction

import av
import numpy as np
import pytest
import torch
from conftest import asset

from internvideo2.data import video as V
from internvideo2.data import video_meta as VM
from internvideo2.data.sampling import SAMPLE_POLICIES, get_frame_indices, sample_indices
from internvideo2.data.transforms import resize, to_tchw
from internvideo2.data.video import (
    decoder_threads,
    frame_range,
    frame_timestamps,
    has_decord,
    probe_video,
    read_clip,
    read_frames,
    sliding_windows,
)
from internvideo2.errors import ConfigError, MediaError


# ----------------------------------------------------------------------------------------------------------
# media made at run time (shared with test_bad_media / test_probe / test_segment)
# ----------------------------------------------------------------------------------------------------------
def grey(i: int) -> int:
    """Grey level of frame ``i`` (0..12) in the generated clips: frames tell which index they are."""
    if not 0 <= i <= 12:
        raise ValueError(f"grey frames exist for indices 0..12, not {i}")
    return 8 + 20 * i


def grey_frames(n: int, h: int = 32, w: int = 48) -> list[np.ndarray]:
    return [np.full((h, w, 3), grey(i), np.uint8) for i in range(n)]


def frame_ids(frames: torch.Tensor) -> list[int]:
    """Indices of uint8 ``[T, H, W, 3]`` frames decoded from a :func:`grey_frames` clip."""
    return [int(round((float(m) - 8) / 20)) for m in frames.float().mean(dim=(1, 2, 3))]


def encode_video(path, frames: list[np.ndarray], *, fps: int = 25, codec: str = "mpeg4",
                 pix_fmt: str = "yuv420p", fmt: str | None = None, pts_ms: list[int] | None = None,
                 audio_s: float = 0.0, options: dict | None = None,
                 container_options: dict | None = None) -> str:
    """Encode RGB ``frames`` (``uint8 [H, W, 3]``) with PyAV.

    ``pts_ms``: explicit presentation times in milliseconds (variable frame rate); ``audio_s``: add that
    many seconds of a 16 kHz mono AAC tone.
    """
    c = av.open(str(path), "w", format=fmt, options=container_options or {})
    vs = c.add_stream(codec, rate=fps, options=options or {})
    vs.height, vs.width = frames[0].shape[:2]
    vs.pix_fmt = pix_fmt
    if pts_ms is not None:
        vs.codec_context.time_base = Fraction(1, 1000)
        vs.time_base = Fraction(1, 1000)
    a = None
    if audio_s:
        a = c.add_stream("aac", rate=16000)
        a.layout = "mono"
    for i, img in enumerate(frames):
        f = av.VideoFrame.from_ndarray(np.ascontiguousarray(img), format="rgb24")
        if pts_ms is not None:
            f.pts = int(pts_ms[i])
            f.time_base = Fraction(1, 1000)
        for p in vs.encode(f):
            c.mux(p)
    for p in vs.encode():
        c.mux(p)
    if a is not None:
        n = int(16000 * audio_s)
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


def encode_audio(path, seconds: float = 0.5, codec: str = "pcm_s16le", rate: int = 16000) -> str:
    """An audio-only file (no video stream)."""
    c = av.open(str(path), "w")
    s = c.add_stream(codec, rate=rate)
    s.layout = "mono"
    n = int(rate * seconds)
    w = (0.3 * np.sin(2 * np.pi * 300 * np.arange(n) / rate)).astype(np.float32)
    if codec == "pcm_s16le":
        fr = av.AudioFrame.from_ndarray((w * 32767).astype(np.int16)[None], format="s16", layout="mono")
    else:
        fr = av.AudioFrame.from_ndarray(w[None], format="fltp", layout="mono")
    fr.sample_rate = rate
    fr.pts = 0
    for p in s.encode(fr):
        c.mux(p)
    for p in s.encode():
        c.mux(p)
    c.close()
    return str(path)


def real_frames(path: str, n: int, size: tuple[int, int]) -> list[np.ndarray]:
    """The first ``n`` frames of a real clip, resized to ``size=(h, w)``, as RGB arrays."""
    return list(read_frames(path, list(range(n)), size=size).numpy())


# ----------------------------------------------------------------------------------------------------------
# metadata: the four real clips
# ----------------------------------------------------------------------------------------------------------
# facts from ../shared/assets/README.md. bigbuckbunny: the README's 5.31 s is the container (its audio
# track is longer); the video stream is 132 frames / 25 fps = 5.28 s.
REAL = {
    "video/example1.mp4": dict(container="mov,mp4,m4a,3gp,3g2,mj2", video_codec="mpeg4", width=640,
                               height=480, fps=5.0, num_frames=40, duration=8.0, has_audio=False,
                               audio_codec=None, audio_sample_rate=None, audio_channels=None, keyframes=4,
                               source="stream"),
    "video/bigbuckbunny.mp4": dict(container="mov,mp4,m4a,3gp,3g2,mj2", video_codec="h264", width=1280,
                                   height=720, fps=25.0, num_frames=132, duration=5.28, has_audio=True,
                                   audio_codec="aac", audio_sample_rate=48000, audio_channels=6, keyframes=1,
                                   source="stream"),
    "video/bikes.mp4": dict(container="mov,mp4,m4a,3gp,3g2,mj2", video_codec="h264", width=640, height=272,
                            fps=25.0, num_frames=250, duration=10.0, has_audio=False, audio_codec=None,
                            audio_sample_rate=None, audio_channels=None, keyframes=6, source="stream"),
    # no per-stream count or duration: the count comes from the packets even without scan_packets
    "video/display-dual-monitors.webm": dict(container="matroska,webm", video_codec="vp8", width=1024,
                                             height=768, fps=15.0, num_frames=557, duration=37.1333,
                                             has_audio=False, audio_codec=None, audio_sample_rate=None,
                                             audio_channels=None, keyframes=11, source="packets"),
}


@pytest.mark.parametrize("rel", sorted(REAL))
def test_real_clip_metadata(rel):
    p = str(asset(rel))
    want = REAL[rel]
    m = probe_video(p)
    for k in ("container", "video_codec", "width", "height", "num_frames", "has_audio", "audio_codec",
              "audio_sample_rate", "audio_channels"):
        assert getattr(m, k) == want[k], k
    assert m.fps == pytest.approx(want["fps"], rel=1e-9)
    assert m.duration == pytest.approx(want["duration"], abs=1e-3)
    assert m.frame_count_source == want["source"]
    assert m.path == p and m.stream_index == 0
    assert set(m.to_dict()) >= {"path", "num_frames", "fps", "duration", "frame_count_source"}
    # counting the packets agrees with the header and also counts the keyframes
    scanned = probe_video(p, scan_packets=True)
    assert (scanned.num_frames, scanned.frame_count_source, scanned.num_keyframes) == (
        want["num_frames"], "packets", want["keyframes"])
    assert scanned.duration == pytest.approx(want["duration"], abs=1e-3)
    assert scanned.fps == pytest.approx(want["fps"], rel=1e-9)


def test_webm_stream_really_has_no_count():
    # the premise of the 'packets' row above: the container gives neither a frame count nor a duration
    p = str(asset("video/display-dual-monitors.webm"))
    with av.open(p) as c:
        s = c.streams.video[0]
        assert s.frames == 0 and s.duration is None
    assert probe_video(p, count_frames=True).num_frames == 557


@pytest.mark.parametrize("rel", ["video/example1.mp4", "video/bikes.mp4"])
def test_decoded_count_agrees(rel):
    m = probe_video(str(asset(rel)), count_frames=True)
    assert (m.num_frames, m.frame_count_source, m.num_keyframes) == (REAL[rel]["num_frames"], "decoded",
                                                                    REAL[rel]["keyframes"])


# ----------------------------------------------------------------------------------------------------------
# metadata: files made here
# ----------------------------------------------------------------------------------------------------------
VFR_PTS_MS = [0, 40, 80, 200, 240, 500, 520, 540, 1000, 1040]


@pytest.mark.parametrize("ext", ["mp4", "mkv"])
def test_variable_frame_rate(tmp_path, ext):
    p = encode_video(tmp_path / f"vfr.{ext}", grey_frames(10), pts_ms=VFR_PTS_MS)
    m = probe_video(p)
    assert m.num_frames == 10
    assert m.duration == pytest.approx(1.08, abs=1e-6)  # last pts + one frame
    # the average rate: Matroska's header reports the rate of the first frames (25), not the average
    assert m.fps == pytest.approx(10 / 1.08, rel=1e-6)
    assert frame_timestamps(m, range(10)) == pytest.approx([t / 1000 for t in VFR_PTS_MS], abs=1e-6)
    # time ranges follow the real timestamps, not index / fps
    assert frame_range(m, 0.1, 0.6) == (3, 8)
    assert frame_range(m, 0.55, None) == (8, 10)
    assert frame_ids(read_frames(p, list(range(10)), meta=m)) == list(range(10))
    f, idx, _ = read_clip(p, 2, "middle", start_s=0.9)
    assert idx == [8, 9] and frame_ids(f) == [8, 9]


def test_video_with_audio_track(tmp_path):
    p = encode_video(tmp_path / "av.mp4", grey_frames(12), fps=12, audio_s=1.0)
    m = probe_video(p)
    assert (m.num_frames, m.fps, m.has_audio, m.audio_codec, m.audio_sample_rate, m.audio_channels) == (
        12, 12.0, True, "aac", 16000, 1)
    assert m.duration == pytest.approx(1.0, abs=1e-6)


def test_gif_and_still_images(tmp_path):
    gif = encode_video(tmp_path / "a.gif", grey_frames(6), fps=10, codec="gif", pix_fmt="rgb8")
    m = probe_video(gif)
    assert (m.container, m.video_codec, m.num_frames, m.fps) == ("gif", "gif", 6, 10.0)
    assert m.duration == pytest.approx(0.6)
    assert read_frames(gif, [5, 0]).shape == (2, 32, 48, 3)

    png = encode_video(tmp_path / "a.png", grey_frames(1)[:1], codec="png", pix_fmt="rgb24", fmt="image2")
    m = probe_video(png)
    assert (m.video_codec, m.num_frames, m.width, m.height) == ("png", 1, 48, 32)
    # an image is a one-frame video: the official sampler repeats its only frame
    frames, idx, _ = read_clip(png, 4, "middle")
    assert idx == [0, 0, 0, 0] and frames.shape == (4, 32, 48, 3)
    assert torch.equal(frames[0], torch.full((32, 48, 3), grey(0), dtype=torch.uint8))


def test_other_containers(tmp_path):
    for name, codec, pix in [("a.webm", "libvpx-vp9", "yuv420p"), ("a.avi", "mjpeg", "yuvj420p"),
                             ("a.mkv", "ffv1", "yuv420p")]:
        p = encode_video(tmp_path / name, grey_frames(9), fps=9, codec=codec, pix_fmt=pix)
        m = probe_video(p)
        assert (m.num_frames, m.fps, m.width, m.height) == (9, 9.0, 48, 32), name
        assert m.duration == pytest.approx(1.0, abs=1e-6), name
        assert frame_ids(read_frames(p, [8, 0, 4], meta=m)) == [8, 0, 4], name


# ----------------------------------------------------------------------------------------------------------
# decoding
# ----------------------------------------------------------------------------------------------------------
def test_frames_in_requested_order_with_duplicates():
    p = str(asset("video/example1.mp4"))
    everything = read_frames(p, list(range(40)), strategy="sequential")
    assert everything.shape == (40, 480, 640, 3) and everything.dtype == torch.uint8
    # consecutive frames of the real clip differ, so a wrong order would show
    assert all(not torch.equal(everything[i], everything[i + 1]) for i in range(39))
    idx = [39, 0, 5, 5, 20, 0, 38]
    for strategy in ("sequential", "seek", "auto"):
        got = read_frames(p, idx, strategy=strategy)
        assert torch.equal(got, everything[idx]), strategy
    assert read_frames(p, []).shape == (0, 480, 640, 3)


def test_order_on_generated_clip(tmp_path):
    p = encode_video(tmp_path / "g.mkv", grey_frames(12), codec="ffv1")  # lossless: exact grey levels
    idx = [11, 3, 3, 0, 7, 11]
    assert frame_ids(read_frames(p, idx)) == idx
    assert frame_ids(read_frames(p, idx, strategy="seek")) == idx


def _seeks(path: str, targets: list[int]) -> int:
    """How many seeks the forced-seek plan makes (to know the seek path is really exercised)."""
    m = probe_video(path)
    scan = V._get_scan(path, m.stream_index, 30.0, V._deadline(30.0))
    return sum(s for _, s in V._plan(sorted(set(targets)), scan.key_idx, force_seek=True))


@pytest.mark.parametrize("rel", ["video/bikes.mp4", "video/display-dual-monitors.webm"])
def test_sequential_seek_and_decord_bit_identical(rel):
    p = str(asset(rel))
    m = probe_video(p)
    n = m.num_frames
    idx = get_frame_indices(8, n, "middle") + [n - 1, 0, 3, 3] + sorted(random.Random(1).sample(range(n), 4))
    assert _seeks(p, idx) >= 3  # dense keyframes: the seek path really seeks
    seq = read_frames(p, idx, meta=m, strategy="sequential", backend="pyav")
    assert seq.shape == (len(idx), m.height, m.width, 3)
    assert torch.equal(read_frames(p, idx, meta=m, strategy="seek", backend="pyav"), seq)
    assert torch.equal(read_frames(p, idx, meta=m, strategy="auto", backend="pyav"), seq)
    if has_decord():
        assert torch.equal(read_frames(p, idx, meta=m, backend="decord"), seq)


@pytest.mark.parametrize("rel", ["video/bikes.mp4", "video/display-dual-monitors.webm"])
def test_one_container_per_call_gives_the_same_frames(rel, caplog):
    # without ``meta`` the probe, the packet scan and the decode share one container, which is rewound
    # after the scan (the WebM probe itself demuxes every packet); the rewind must land on frame 0
    p = str(asset(rel))
    m = probe_video(p)
    n = m.num_frames
    ref = read_frames(p, [0, 1, n // 2, n - 1], meta=m, strategy="sequential")
    caplog.set_level("DEBUG", logger="internvideo2.data.video")
    for strategy in ("auto", "seek", "sequential"):
        VM._SCAN_CACHE.clear()
        assert torch.equal(read_frames(p, [0, 1, n // 2, n - 1], strategy=strategy), ref), strategy
    VM._SCAN_CACHE.clear()
    frames, idx, _ = read_clip(p, 4, "middle", start_s=m.duration / 2)
    assert torch.equal(frames, read_frames(p, idx, meta=m, strategy="sequential"))
    assert not [r for r in caplog.records if "gave up" in r.getMessage()]  # no silent slow path


def test_single_keyframe_never_seeks():
    # bigbuckbunny has ONE keyframe: every target must be reached by decoding forward
    p = str(asset("video/bigbuckbunny.mp4"))
    assert _seeks(p, [10, 60, 120]) == 0
    idx = [120, 7, 60]
    assert torch.equal(read_frames(p, idx, strategy="seek", size=(36, 64)),
                       read_frames(p, idx, strategy="sequential", size=(36, 64)))


def test_decord_backend_is_optional():
    # the package never imports decord unless asked: 'auto' stays on PyAV
    code = ("import sys; from internvideo2.data.video import read_frames; "
            f"read_frames({str(asset('video/example1.mp4'))!r}, [0], backend='auto'); "
            "print('decord' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"
    if not has_decord():
        with pytest.raises(ConfigError, match="decord"):
            read_frames(str(asset("video/example1.mp4")), [0], backend="decord")
    with pytest.raises(ConfigError):
        read_frames(str(asset("video/example1.mp4")), [0], backend="opencv")
    with pytest.raises(ConfigError):
        read_frames(str(asset("video/example1.mp4")), [0], strategy="random-access")


@pytest.mark.parametrize("rel", ["video/example1.mp4", "video/bikes.mp4"])
def test_resize_during_conversion_close_to_resize_after(rel):
    p = str(asset(rel))
    idx = [0, 17, 33]
    native = read_frames(p, idx)
    during = read_frames(p, idx, size=(224, 224))  # swscale bicubic inside the RGB conversion
    assert during.shape == (3, 224, 224, 3) and during.dtype == torch.uint8
    after = resize(to_tchw(native), (224, 224), "bicubic").permute(0, 2, 3, 1)
    d = (during.float() - after.float()).abs()
    assert d.mean() < 1.5  # measured ~0.9 grey levels
    assert torch.quantile(d.flatten()[::7], 0.99) <= 6
    # and it is a real resize of the same frames, not of other ones
    other = resize(to_tchw(read_frames(p, [5, 25, 38])), (224, 224), "bicubic").permute(0, 2, 3, 1)
    assert (during.float() - other.float()).abs().mean() > 2 * d.mean()
    with pytest.raises(ConfigError):
        read_frames(p, [0], size=(0, 10))


def test_time_range_reading():
    p = str(asset("video/example1.mp4"))  # 5 fps: frame i at i / 5 s
    m = probe_video(p)
    assert frame_range(m) == (0, 40)
    assert frame_range(m, 2.0, 4.0) == (10, 20)  # [2, 4) s: frames 10..19
    assert frame_range(m, 2.1, 4.0) == (11, 20)
    assert frame_range(m, None, 1.0) == (0, 5)
    assert frame_range(m, 7.5, 100.0) == (38, 40)
    frames, idx, meta = read_clip(p, 4, "middle", start_s=2.0, end_s=4.0)
    assert idx == [10, 13, 15, 18]  # 'middle' of 4 inside the 10 frames, offset by the first one
    assert torch.equal(frames, read_frames(p, idx, meta=meta))
    assert frame_timestamps(m, idx) == pytest.approx([2.0, 2.6, 3.0, 3.6])
    with pytest.raises(MediaError) as ei:
        frame_range(m, 8.5, 9.0)
    assert ei.value.reason == "empty_range" and ei.value.path == p
    with pytest.raises(ConfigError):
        frame_range(m, 3.0, 2.0)
    with pytest.raises(ConfigError):
        frame_range(m, -1.0, 2.0)


def test_sliding_windows():
    m = probe_video(str(asset("video/display-dual-monitors.webm")))  # 37.133 s
    w = sliding_windows(m, 10.0, 5.0)
    assert w[:-1] == [(0.0, 10.0), (5.0, 15.0), (10.0, 20.0), (15.0, 25.0), (20.0, 30.0), (25.0, 35.0)]
    assert w[-1] == pytest.approx((27.133333, 37.133333))  # aligned to the end: the tail is covered
    assert all(e - s == pytest.approx(10.0) for s, e in w)
    covered = set()
    for s, e in w:
        first, stop = frame_range(m, s, e)
        covered.update(range(first, stop))
    assert covered == set(range(m.num_frames))
    assert sliding_windows(m, 40.0, 5.0) == [(0.0, pytest.approx(37.133333))]
    assert len(sliding_windows(m, 37.133333, 1.0)) == 1
    for bad in [(0.0, 1.0), (1.0, 0.0), (-1.0, 1.0)]:
        with pytest.raises(ConfigError):
            sliding_windows(m, *bad)


def _policies() -> list[str]:
    return [p if p != "fps{X}" else "fps1" for p in SAMPLE_POLICIES]


@pytest.mark.parametrize("policy", _policies())
def test_read_clip_every_policy(policy):
    p = str(asset("video/example1.mp4"))
    kw = dict(num_clips=3, clip_idx=2) if policy in ("sparse_test", "ssv2_test") else {}
    f1, idx1, m = read_clip(p, 8, policy, size=(24, 32), rng=random.Random(5), **kw)
    f2, idx2, _ = read_clip(p, 8, policy, size=(24, 32), rng=random.Random(5), **kw)
    assert idx1 == idx2 and torch.equal(f1, f2)  # a seeded rng reproduces random policies
    assert idx1 == sample_indices(policy, 8, 40, fps=5.0, rng=random.Random(5), **kw)
    assert len(idx1) == 8 and all(0 <= i < 40 for i in idx1)  # fps1 on 8 s: one frame per second
    assert f1.shape == (len(idx1), 24, 32, 3) and f1.dtype == torch.uint8
    assert torch.equal(f1, read_frames(p, idx1, size=(24, 32), meta=m))


def test_read_clip_fps_policy_counts_seconds():
    p = str(asset("video/example1.mp4"))
    _, idx, _ = read_clip(p, 8, "fps0.5", size=(24, 32))
    assert idx == [5, 15, 25, 35]  # one frame every 2 s, centred: 1 s, 3 s, 5 s, 7 s at 5 fps
    _, idx, _ = read_clip(p, 8, "fps2", size=(24, 32), max_num_frames=5)
    assert idx == [1, 4, 6, 9, 11]  # round(5 * (0.25 + 0.5 j)), cut to max_num_frames
    with pytest.raises(MediaError) as ei:  # a range too short to hold one sample
        read_clip(p, 8, "fps0.1", end_s=2.0)
    assert ei.value.reason == "too_few_frames"


# ----------------------------------------------------------------------------------------------------------
# decoder threads
# ----------------------------------------------------------------------------------------------------------
def test_decoder_threads_give_identical_frames():
    p = str(asset("video/bikes.mp4"))
    idx = [0, 100, 249, 100]
    ref = read_frames(p, idx, threads=1)
    for t in (0, 2):
        assert torch.equal(read_frames(p, idx, threads=t), ref)
    _, i1, _ = read_clip(p, 4, "middle", threads=1)
    assert i1 == get_frame_indices(4, 250, "middle")
    for bad in (-1, 1.5, True):
        with pytest.raises(ConfigError):
            read_frames(p, [0], threads=bad)


def test_pooled_rgb_conversion_gives_identical_frames(tmp_path):
    """With more than one thread, sampled frames are converted on a thread pool (each thread reusing one
    swscale context): the pixels must equal the one-thread path and PyAV's own per-frame conversion."""
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 255, (48, 64, 3), dtype=np.uint8) for _ in range(12)]
    p = encode_video(tmp_path / "noise.mp4", frames)
    idx = [11, 0, 3, 4, 5, 7, 3, 9]
    one = read_frames(p, idx, size=(24, 40), threads=1, backend="pyav")
    with av.open(p) as c:
        ref = [f.to_ndarray(format="rgb24", width=40, height=24, interpolation="BICUBIC") for f in c.decode(video=0)]
    assert torch.equal(one, torch.from_numpy(np.stack([ref[i] for i in idx])))
    for t in (0, 2, 3):
        assert torch.equal(read_frames(p, idx, size=(24, 40), threads=t, backend="pyav"), one)


class _ThreadsSeen(torch.utils.data.Dataset):
    def __len__(self):
        return 2

    def __getitem__(self, i):
        return decoder_threads()


def test_decoder_threads_in_dataloader_workers():
    # main process: FFmpeg's default (one per core); in W workers: cores // W each, at least 1
    assert decoder_threads() == 0 and decoder_threads(3) == 3
    cores = V._usable_cpus()
    loader = torch.utils.data.DataLoader(_ThreadsSeen(), batch_size=None, num_workers=2)
    assert sorted(int(x) for x in loader) == [max(1, cores // 2)] * 2
