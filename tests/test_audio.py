"""Audio loading, resampling, the Kaldi fbank and the official BEATs fbank (fixture ``beats_audio``)."""
from __future__ import annotations

import json
import math
import random

import av
import numpy as np
import pytest
import torch
from conftest import FIXTURES, asset

from internvideo2.data.audio import (
    beats_fbank,
    kaldi_fbank,
    load_audio,
    load_beats_fbank,
    mel_banks,
    probe_audio,
    random_crop,
    resample,
)
from internvideo2.errors import MediaError


def _fixture():
    d = FIXTURES / "beats_audio"
    if not (d / "manifest.json").is_file():
        pytest.skip(f"parity fixture {d} is absent (it is not part of the repository)")
    from safetensors.torch import load_file

    return json.loads((d / "manifest.json").read_text()), load_file(str(d / "tensors.safetensors"))


def test_beats_fbank_matches_official_fixture():
    man, t = _fixture()
    tol = man["tolerances"]["per_output"]["fbank"]
    expected = t["output.fbank"]
    valid = t["output.fbank_valid_frames"]
    for b in range(expected.shape[0]):
        wav = t[f"input.waveform_{b}"]  # [1, n] float32 in [-1, 1], 16 kHz
        got, n_valid = beats_fbank(wav)
        assert got.shape == expected[b].shape and got.dtype == torch.float32
        assert n_valid == int(valid[b]) == 1 + (wav.shape[1] - 400) // 160
        torch.testing.assert_close(got, expected[b], rtol=tol["rtol"], atol=tol["atol"])
        # padding rows are exact zeros, applied after the normalisation
        assert torch.count_nonzero(got[n_valid:]) == 0
        # a [n] waveform gives the same result as [1, n]
        torch.testing.assert_close(beats_fbank(wav[0])[0], got, rtol=0, atol=0)


def test_beats_fbank_cuts_long_input():
    wav = torch.randn(16000 * 11) * 0.1  # 11 s -> 1098 frames, cut to 998
    f, n = beats_fbank(wav)
    assert f.shape == (998, 64) and n == 998
    assert torch.count_nonzero(f[-1]) > 0


def test_kaldi_fbank_frames_and_mel_filters():
    x = torch.randn(16000) * 1000
    f = kaldi_fbank(x, num_mel_bins=23)
    assert f.shape == (1 + (16000 - 400) // 160, 23)
    # without snip_edges Kaldi centres frames: about n / shift of them
    g = kaldi_fbank(x, num_mel_bins=23, snip_edges=False)
    assert g.shape == ((16000 + 80) // 160, 23)
    assert kaldi_fbank(x[:399]).shape == (0, 64)
    # energy column first (Kaldi), last with htk_compat
    e = kaldi_fbank(x, use_energy=True)
    assert e.shape == (f.shape[0], 65)
    torch.testing.assert_close(e[:, 1:], kaldi_fbank(x))
    banks = mel_banks(64, 512, 16000, 20.0, 0.0)
    assert banks.shape == (64, 256) and banks.min() >= 0 and banks.max() <= 1
    # each triangle peaks near 1 and the centres increase with the bin
    peaks = banks.argmax(1)
    assert torch.all(peaks[1:] >= peaks[:-1])
    # below low_freq (20 Hz = bin 0.64) nothing is picked up
    assert banks[:, 0].sum() == 0


def test_kaldi_fbank_tone_lands_in_its_mel_bin():
    sr, f0 = 16000, 1000.0
    t = torch.arange(sr) / sr
    x = 8000 * torch.sin(2 * math.pi * f0 * t)
    fb = kaldi_fbank(x, num_mel_bins=64)
    mel = lambda f: 1127 * math.log(1 + f / 700)
    lo, hi = mel(20), mel(8000)
    centres = [lo + (k + 1) * (hi - lo) / 65 for k in range(64)]
    expected_bin = min(range(64), key=lambda k: abs(centres[k] - mel(f0)))
    assert abs(int(fb.mean(0).argmax()) - expected_bin) <= 1


def test_resample_is_band_limited_interpolation():
    # a 440 Hz tone resampled from 11025 Hz to 16000 Hz equals the tone sampled at 16000 Hz (away from edges)
    f0 = 440.0
    n = 11025
    x = torch.sin(2 * math.pi * f0 * torch.arange(n, dtype=torch.float64) / 11025)
    y = resample(x, 11025, 16000)
    assert y.shape[-1] == math.ceil(n * 16000 / 11025)
    ref = torch.sin(2 * math.pi * f0 * torch.arange(y.shape[-1], dtype=torch.float64) / 16000)
    assert (y - ref)[200:-200].abs().max() < 2e-3
    # 48 kHz -> 16 kHz removes content above the new Nyquist (a 10 kHz tone nearly vanishes)
    z = torch.sin(2 * math.pi * 10000 * torch.arange(48000, dtype=torch.float64) / 48000)
    assert resample(z, 48000, 16000)[100:-100].abs().max() < 0.02
    # batch dims are kept
    assert resample(torch.zeros(2, 3, 480), 48000, 16000).shape == (2, 3, 160)


def test_load_audio_wav_and_ogg_of_same_clip_agree():
    wav = load_audio(asset("audio/house_lo.wav"))  # PCM u8, 11.025 kHz
    ogg = load_audio(asset("audio/house_lo.ogg"))  # Vorbis, same clip
    info = probe_audio(asset("audio/house_lo.wav"))
    assert (info.sample_rate, info.channels, info.codec) == (11025, 1, "pcm_u8")
    assert wav.dtype == torch.float32 and wav.dim() == 1
    n_expected = math.ceil(78331 * 16000 / 11025)
    assert wav.shape[0] == ogg.shape[0] == n_expected
    assert wav.abs().max() <= 1.1 and wav.abs().max() > 0.5  # u8 was centred and scaled to [-1, 1]
    corr = torch.corrcoef(torch.stack([wav, ogg]))[0, 1]
    assert corr > 0.99
    assert (wav - ogg).abs().mean() < 0.1 * wav.abs().mean()


def test_load_audio_s16_48k_and_time_range():
    w = load_audio(asset("audio/Front_Left.wav"))
    assert w.shape[0] == math.ceil(71042 / 3)
    part = load_audio(asset("audio/Front_Left.wav"), start_s=0.5, end_s=1.0)
    assert part.shape[0] == 8000
    # same samples as the full decode (resampling edges aside)
    assert (part[100:-100] - w[8100:15900]).abs().max() < 1e-3
    native = load_audio(asset("audio/Front_Left.wav"), sample_rate=None)
    assert native.shape[0] == 71042
    assert abs(native.abs().max().item() - 0.5) < 0.01  # s16 scaled by 1/32768


def test_load_audio_six_channel_aac_from_video():
    p = asset("video/bigbuckbunny.mp4")
    info = probe_audio(p)
    assert (info.channels, info.sample_rate, info.codec) == (6, 48000, "aac")
    mono = load_audio(p)
    multi = load_audio(p, mono=False)
    assert multi.shape[0] == 6 and mono.dim() == 1 and multi.shape[1] == mono.shape[0]
    torch.testing.assert_close(mono, multi.mean(0), rtol=1e-5, atol=1e-6)
    assert 5.2 * 16000 < mono.shape[0] < 5.4 * 16000
    f, n = load_beats_fbank(p)
    assert f.shape == (998, 64) and n == 1 + (mono.shape[0] - 400) // 160


def test_video_without_audio_is_a_typed_error():
    p = asset("video/example1.mp4")
    with pytest.raises(MediaError) as ei:
        load_audio(p)
    assert ei.value.reason == "no_audio_stream" and ei.value.path == str(p)


def test_broken_inputs_give_typed_errors(tmp_path):
    empty = tmp_path / "empty.wav"
    empty.write_bytes(b"")
    junk = tmp_path / "junk.wav"
    junk.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    for p, reasons in [(tmp_path / "missing.wav", {"not_found"}), (empty, {"empty_file"}),
                       (junk, {"open_failed", "decode_failed", "no_audio_stream"})]:
        with pytest.raises(MediaError) as ei:
            load_audio(p)
        assert ei.value.reason in reasons and ei.value.path == str(p)


def test_load_audio_from_bytes_and_stereo_average(tmp_path):
    # a stereo 44.1 kHz s16 wav written with PyAV: left = tone, right = 0 -> mono = tone / 2
    p = tmp_path / "stereo.wav"
    sr, n = 44100, 44100
    tone = (0.5 * np.sin(2 * np.pi * 300 * np.arange(n) / sr) * 32767).astype(np.int16)
    inter = np.stack([tone, np.zeros_like(tone)], 1).reshape(1, -1)
    c = av.open(str(p), "w")
    s = c.add_stream("pcm_s16le", rate=sr)
    s.layout = "stereo"
    fr = av.AudioFrame.from_ndarray(inter, format="s16", layout="stereo")
    fr.sample_rate = sr
    for pk in s.encode(fr):
        c.mux(pk)
    for pk in s.encode():
        c.mux(pk)
    c.close()
    w = load_audio(p, sample_rate=None)
    torch.testing.assert_close(w, torch.from_numpy(tone.astype(np.float32) / 32768 / 2), rtol=0, atol=1e-6)
    assert load_audio(p.read_bytes(), sample_rate=None).shape == w.shape
    assert load_audio(p).shape[0] == 16000


def test_random_crop_is_the_official_10s_crop():
    wav = torch.arange(16000 * 12, dtype=torch.float32)
    c1, s1 = random_crop(wav, rng=random.Random(3))
    c2, s2 = random_crop(wav, rng=random.Random(3))
    assert s1 == s2 and c1.shape[0] == 160000 and torch.equal(c1, c2)
    assert 0 <= s1 <= 16000 * 2 and c1[0] == s1
    starts = {random_crop(wav, rng=random.Random(k))[1] for k in range(20)}
    assert len(starts) > 10
    assert random_crop(wav)[1] == 0  # no rng: deterministic start (evaluation)
    short = torch.zeros(16000 * 3)
    assert random_crop(short, rng=random.Random(0))[0].shape[0] == 48000
    # 10 s of audio makes exactly the 998 fbank rows of the official encoder input
    assert beats_fbank(c1 / c1.max())[1] == 998
