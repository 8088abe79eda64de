"""Audio loading and the Kaldi log-mel filterbank of the official stage-2 audio pipeline, in pure torch.

Official pipeline (``multi_modality/dataset/av_utils.py :: load_audio_av``; see
``../shared/docs/stage3-data-eval.md`` §2.5):

1. decode the audio track (PyAV), average the channels to mono, resample to 16 kHz
   (torchaudio ``Resample``: windowed-sinc with a Hann window, 6 zero crossings, roll-off 0.99);
2. clips of 10 s or more are cropped at random to exactly 160 000 samples;
3. ``x = waveform * 2**15`` and ``torchaudio.compliance.kaldi.fbank(x, num_mel_bins=64,
   sample_frequency=16000, frame_length=25, frame_shift=10)`` with torchaudio's other defaults;
4. ``(fbank - 15.41663) / (2 * 6.55582)`` (the BEATs constants);
5. zero rows appended (after normalisation) or rows cut to 998 frames -> ``[998, 64]``.

:func:`load_audio` does step 1, :func:`random_crop` / :func:`crop_waveform` step 2, :func:`kaldi_fbank` is
step 3 with every torchaudio option it has, and :func:`beats_fbank` does steps 3-5. :func:`load_beats_fbank`
chains all of them. Nothing here imports torchaudio.
"""
from __future__ import annotations

import io
import logging
import math
import os
import random
import time
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import BinaryIO

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import ConfigError, MediaError

logger = logging.getLogger("internvideo2.data")

MediaSource = str | os.PathLike | bytes | BinaryIO

#: BEATs fbank normalisation constants used by the official stage-2 data code.
BEATS_FBANK_MEAN = 15.41663
BEATS_FBANK_STD = 6.55582
#: Fixed number of fbank rows the official audio encoder input has (10 s at a 10 ms shift).
BEATS_TARGET_FRAMES = 998
#: Official ``max_audio_length`` (asserted to be 10 s).
MAX_AUDIO_SECONDS = 10.0

__all__ = [
    "BEATS_FBANK_MEAN",
    "BEATS_FBANK_STD",
    "BEATS_TARGET_FRAMES",
    "AudioInfo",
    "beats_fbank",
    "crop_waveform",
    "kaldi_fbank",
    "load_audio",
    "load_beats_fbank",
    "mel_banks",
    "probe_audio",
    "random_crop",
    "resample",
]


# ---------------------------------------------------------------------------------------------------------
# decoding
# ---------------------------------------------------------------------------------------------------------


@dataclass
class AudioInfo:
    """What the audio track of a file holds (from the container, nothing decoded)."""

    path: str
    codec: str
    sample_rate: int
    channels: int
    sample_format: str
    duration: float | None  # seconds, None when the container does not say


def _label(src: MediaSource) -> str:
    if isinstance(src, (str, os.PathLike)):
        return str(src)
    if isinstance(src, (bytes, bytearray, memoryview)):
        return "<bytes>"
    return getattr(src, "name", None) or "<stream>"


def _open(src: MediaSource):
    """Open a container with PyAV; turns every failure into a :class:`MediaError`."""
    import av

    label = _label(src)
    if isinstance(src, (str, os.PathLike)):
        p = Path(src)
        if not p.exists():
            raise MediaError(label, "not_found")
        if p.is_dir():
            raise MediaError(label, "not_a_file")
        if p.stat().st_size == 0:
            raise MediaError(label, "empty_file")
        target = str(p)
    elif isinstance(src, (bytes, bytearray, memoryview)):
        if len(src) == 0:
            raise MediaError(label, "empty_file")
        target = io.BytesIO(bytes(src))
    else:
        target = src
    try:
        return av.open(target, mode="r", metadata_errors="ignore")
    except av.error.FileNotFoundError as e:  # pragma: no cover - raced with the check above
        raise MediaError(label, "not_found", str(e)) from e
    except (av.error.FFmpegError, ValueError, OSError) as e:
        raise MediaError(label, "open_failed", str(e)) from e


def probe_audio(src: MediaSource) -> AudioInfo:
    """Describe the first audio stream of ``src`` without decoding it.

    Raises :class:`MediaError` with reason ``no_audio_stream`` when there is none.
    """
    label = _label(src)
    with _open(src) as container:
        if not container.streams.audio:
            raise MediaError(label, "no_audio_stream")
        st = container.streams.audio[0]
        cc = st.codec_context
        dur = None
        if st.duration is not None and st.time_base is not None:
            dur = float(st.duration * st.time_base)
        elif container.duration is not None:
            dur = container.duration / 1_000_000
        return AudioInfo(
            path=label,
            codec=cc.name,
            sample_rate=int(cc.sample_rate or st.rate or 0),
            channels=int(cc.channels or 0),
            sample_format=cc.format.name if cc.format is not None else "",
            duration=dur,
        )


# Scale of the integer sample formats: float = int / scale (u8 is offset by 128 first), as FFmpeg's
# swresample and torchaudio's loaders do.
_INT_SCALE = {"u8": 128.0, "s16": 32768.0, "s32": 2147483648.0, "s64": 9223372036854775808.0}


def _frame_to_float(frame) -> np.ndarray:
    """One decoded audio frame -> float32 ``[channels, samples]`` in [-1, 1]."""
    fmt = frame.format
    name = fmt.name.rstrip("p")  # planar and packed share the sample type
    arr = frame.to_ndarray()
    ch = len(frame.layout.channels)
    if not fmt.is_planar:
        # packed: [1, samples * channels], interleaved
        arr = arr.reshape(-1, ch).T
    if name in ("flt", "dbl"):
        return np.ascontiguousarray(arr, dtype=np.float32)
    if name == "u8":
        return ((arr.astype(np.float32) - 128.0) / 128.0).astype(np.float32)
    if name in _INT_SCALE:
        return (arr.astype(np.float64) / _INT_SCALE[name]).astype(np.float32)
    raise ValueError(f"unsupported sample format {fmt.name!r}")


def load_audio(
    path: MediaSource,
    sample_rate: int = 16000,
    mono: bool = True,
    start_s: float | None = None,
    end_s: float | None = None,
    timeout: float = 60.0,
    allow_truncated: bool = False,
) -> torch.Tensor:
    """Decode the first audio stream of a video or audio file, mix to mono, resample.

    Args:
        path: a file path, the file's bytes, or a binary file object (PyAV opens all three).
        sample_rate: output rate in Hz (16000 for the official pipeline); ``None`` or 0 keeps the file's rate.
        mono: average all channels (the official code averages stereo; we average any count, e.g. 5.1).
        start_s, end_s: keep only samples whose time stamp lies in ``[start_s, end_s)``, in seconds on the
            stream's time line (the same time line as the video's presentation time stamps).
        timeout: wall-clock limit in seconds for decoding; beyond it the file is given up with reason
            ``timeout``.
        allow_truncated: a decoding error after some samples normally raises ``truncated``; with True the
            samples before the damage are returned (and a warning is logged).

    Returns:
        float32 ``[n]`` when ``mono`` (``[C, n]`` otherwise), values in [-1, 1] before resampling.

    Raises:
        MediaError: ``not_found``, ``empty_file``, ``open_failed``, ``no_audio_stream``, ``decode_failed``,
        ``timeout``, ``no_audio_samples`` (the stream, or the asked time range, holds no samples),
        ``bad_time_range``, ``truncated`` (decoding failed part-way; see ``allow_truncated``).
    """
    label = _label(path)
    if start_s is not None and end_s is not None and end_s <= start_s:
        raise MediaError(label, "bad_time_range", f"start_s={start_s} >= end_s={end_s}")
    t0 = time.monotonic()
    chunks: list[np.ndarray] = []
    container = _open(path)
    try:
        if not container.streams.audio:
            raise MediaError(label, "no_audio_stream")
        stream = container.streams.audio[0]
        ctx = stream.codec_context  # None when the stream's codec is unknown (a damaged header)
        if ctx is None:
            raise MediaError(label, "unsupported_codec", "the audio stream has no decoder")
        in_rate = int(ctx.sample_rate or getattr(stream, "rate", 0) or 0)
        if in_rate <= 0:
            raise MediaError(label, "bad_audio_stream", "sample rate unknown")
        tb = stream.time_base
        if start_s is not None and start_s > 1.0 and tb is not None:
            # seek a little before the start; every audio packet is a key frame, samples are trimmed below
            try:
                container.seek(int((start_s - 0.5) / tb), stream=stream, backward=True)
            except Exception:
                container.seek(0)
        next_t: float | None = None  # running time stamp for frames without pts
        try:
            for frame in container.decode(stream):
                if time.monotonic() - t0 > timeout:
                    raise MediaError(label, "timeout", f"audio decoding took more than {timeout:g} s")
                data = _frame_to_float(frame)
                n = data.shape[1]
                if frame.pts is not None and frame.time_base is not None:
                    t = float(frame.pts * frame.time_base)
                else:
                    t = next_t if next_t is not None else 0.0
                rate = frame.sample_rate or in_rate
                next_t = t + n / rate
                if start_s is None and end_s is None:
                    chunks.append(data)
                    continue
                if end_s is not None and t >= end_s:
                    break
                lo = 0 if start_s is None else max(0, int(round((start_s - t) * rate)))
                hi = n if end_s is None else min(n, int(round((end_s - t) * rate)))
                if hi > lo:
                    chunks.append(data[:, lo:hi])
        except MediaError:
            raise
        except Exception as e:
            if not chunks:
                raise MediaError(label, "decode_failed", f"{type(e).__name__}: {e}") from e
            if not allow_truncated:  # never hand back part of a file as if it were whole
                raise MediaError(label, "truncated", f"decoding failed part-way: {type(e).__name__}: {e}") from e
            logger.warning("%s: audio decoding stopped early, keeping the samples before the damage (%s: %s)",
                           label, type(e).__name__, e)
    finally:
        container.close()
    if not chunks:
        raise MediaError(label, "no_audio_samples")
    # channel counts can change mid-stream in broken files; keep the first layout
    ch = chunks[0].shape[0]
    chunks = [
        c if c.shape[0] == ch else np.broadcast_to(c.mean(0, keepdims=True), (ch, c.shape[1])) for c in chunks
    ]
    wav = torch.from_numpy(np.concatenate(chunks, axis=1))
    if mono:
        wav = wav.mean(dim=0, keepdim=True)
    if sample_rate and sample_rate != in_rate:
        wav = resample(wav, in_rate, sample_rate)
    return wav[0].contiguous() if mono else wav.contiguous()


# ---------------------------------------------------------------------------------------------------------
# resampling (band-limited windowed sinc, the torchaudio default: sinc_interp_hann, width 6, roll-off 0.99)
# ---------------------------------------------------------------------------------------------------------


@lru_cache(maxsize=16)
def _sinc_kernel(orig: int, new: int, width: int, rolloff: float) -> tuple[torch.Tensor, int]:
    """Polyphase kernel ``[new, 1, 2*pad + orig]`` (float64) for the reduced ratio ``orig -> new``."""
    base = min(orig, new) * rolloff  # cut-off, in units of the reduced rates
    pad = int(math.ceil(width * orig / base))
    # time (in input samples / orig) of every tap, for each of the `new` output phases
    taps = torch.arange(-pad, pad + orig, dtype=torch.float64)[None, :] / orig
    phase = -torch.arange(new, dtype=torch.float64)[:, None] / new
    t = (phase + taps) * base
    t = t.clamp(-width, width)
    window = torch.cos(t * math.pi / width / 2) ** 2  # Hann window over +-width zero crossings
    t = t * math.pi
    sinc = torch.where(t == 0, torch.ones_like(t), torch.sin(t) / torch.where(t == 0, torch.ones_like(t), t))
    kernel = sinc * window * (base / orig)
    return kernel[:, None, :], pad


def resample(
    waveform: torch.Tensor,
    orig_freq: int,
    new_freq: int,
    *,
    lowpass_filter_width: int = 6,
    rolloff: float = 0.99,
) -> torch.Tensor:
    """Band-limited resampling of ``waveform [..., n]`` from ``orig_freq`` to ``new_freq`` Hz.

    The same windowed-sinc interpolation as ``torchaudio.functional.resample`` with its defaults (Hann
    window, 6 zero crossings, roll-off 0.99), so the official ``torchaudio.transforms.Resample`` is
    reproduced. Output length is ``ceil(n * new / orig)``.
    """
    if orig_freq <= 0 or new_freq <= 0:
        raise ConfigError("sample_rate", f"resampling needs positive rates, got {orig_freq} -> {new_freq}")
    if orig_freq == new_freq:
        return waveform
    g = math.gcd(int(orig_freq), int(new_freq))
    orig, new = int(orig_freq) // g, int(new_freq) // g
    kernel, pad = _sinc_kernel(orig, new, int(lowpass_filter_width), float(rolloff))
    shape = waveform.shape
    x = waveform.reshape(-1, 1, shape[-1])
    kernel = kernel.to(dtype=x.dtype, device=x.device)
    n = shape[-1]
    x = F.pad(x, (pad, pad + orig))
    y = F.conv1d(x, kernel, stride=orig)  # [B, new, frames]: output phase p of frame f is sample f*new + p
    y = y.transpose(1, 2).reshape(x.shape[0], -1)
    target = int(math.ceil(new * n / orig))
    return y[..., :target].reshape(*shape[:-1], -1)


# ---------------------------------------------------------------------------------------------------------
# cropping
# ---------------------------------------------------------------------------------------------------------


def crop_waveform(waveform: torch.Tensor, max_samples: int, start: int = 0) -> torch.Tensor:
    """Keep at most ``max_samples`` samples of ``waveform [..., n]`` starting at ``start``."""
    return waveform[..., start : start + max_samples]


def random_crop(
    waveform: torch.Tensor,
    max_seconds: float = MAX_AUDIO_SECONDS,
    sample_rate: int = 16000,
    rng: random.Random | None = None,
) -> tuple[torch.Tensor, int]:
    """The official training crop: clips of at least ``max_seconds`` are cut to exactly that length at a
    uniformly random start (``random.randint(0, n - max_len)``); shorter clips are kept whole.

    ``rng`` makes it reproducible (the official code uses the global ``random``); with ``rng=None`` the crop
    starts at 0 (deterministic, for evaluation). Returns ``(waveform, start_sample)``.
    """
    max_len = int(round(max_seconds * sample_rate))
    n = waveform.shape[-1]
    if n < max_len:
        return waveform, 0
    start = rng.randint(0, n - max_len) if rng is not None else 0
    return waveform[..., start : start + max_len], start


# ---------------------------------------------------------------------------------------------------------
# Kaldi filterbank (torchaudio.compliance.kaldi.fbank)
# ---------------------------------------------------------------------------------------------------------


def _mel(f):
    """Kaldi mel scale ``1127 ln(1 + f/700)`` (scalar or tensor)."""
    if isinstance(f, torch.Tensor):
        return 1127.0 * (1.0 + f / 700.0).log()
    return 1127.0 * math.log(1.0 + f / 700.0)


def mel_banks(
    num_bins: int, padded_window_size: int, sample_frequency: float, low_freq: float, high_freq: float
) -> torch.Tensor:
    """Kaldi triangular mel filters ``[num_bins, padded_window_size // 2]`` (float32).

    Filters are triangles in the mel domain with edges equally spaced in mel between ``low_freq`` and
    ``high_freq`` (``high_freq <= 0`` means Nyquist + high_freq). FFT bin k sits at ``k * fs / N``.
    """
    num_fft_bins = padded_window_size // 2
    nyquist = 0.5 * sample_frequency
    if high_freq <= 0.0:
        high_freq += nyquist
    if not (0.0 <= low_freq < nyquist and 0.0 < high_freq <= nyquist and low_freq < high_freq):
        raise ConfigError("low_freq/high_freq", f"need 0 <= low_freq < high_freq <= Nyquist ({nyquist}), "
                          f"got low_freq={low_freq}, high_freq={high_freq}")
    fft_bin_width = sample_frequency / padded_window_size
    mel_lo, mel_hi = _mel(low_freq), _mel(high_freq)
    delta = (mel_hi - mel_lo) / (num_bins + 1)
    b = torch.arange(num_bins).unsqueeze(1)
    left = mel_lo + b * delta
    center = mel_lo + (b + 1.0) * delta
    right = mel_lo + (b + 2.0) * delta
    mel = _mel(fft_bin_width * torch.arange(num_fft_bins)).unsqueeze(0)
    up = (mel - left) / (center - left)
    down = (right - mel) / (right - center)
    return torch.clamp(torch.minimum(up, down), min=0.0).to(torch.float32)


def _povey_window(n: int, dtype: torch.dtype) -> torch.Tensor:
    # Kaldi's "povey" window: a symmetric Hann window raised to 0.85
    return torch.hann_window(n, periodic=False, dtype=dtype).pow(0.85)


def _window(kind: str, n: int, blackman_coeff: float, dtype: torch.dtype) -> torch.Tensor:
    if kind == "povey":
        return _povey_window(n, dtype)
    if kind == "hanning":
        return torch.hann_window(n, periodic=False, dtype=dtype)
    if kind == "hamming":
        return torch.hamming_window(n, periodic=False, alpha=0.54, beta=0.46, dtype=dtype)
    if kind == "rectangular":
        return torch.ones(n, dtype=dtype)
    if kind == "blackman":
        a = 2 * math.pi / (n - 1)
        k = torch.arange(n, dtype=dtype)
        return blackman_coeff - 0.5 * torch.cos(a * k) + (0.5 - blackman_coeff) * torch.cos(2 * a * k)
    raise ConfigError(
        "window_type", f"unknown window {kind!r} (povey, hanning, hamming, rectangular, blackman)"
    )


def _frames(x: torch.Tensor, size: int, shift: int, snip_edges: bool) -> torch.Tensor:
    """Cut ``x [n]`` into frames ``[m, size]`` the Kaldi way."""
    n = x.shape[0]
    if snip_edges:
        if n < size:
            return x.new_empty((0, size))
        m = 1 + (n - size) // shift
        return x.as_strided((m, size), (shift * x.stride(0), x.stride(0)))
    # centred frames (Kaldi without snip-edges): the signal is reflected at both ends
    m = (n + shift // 2) // shift
    if m == 0:
        return x.new_empty((0, size))
    pad = size // 2 - shift // 2
    rev = x.flip(0)
    xp = torch.cat([rev[-pad:], x, rev]) if pad > 0 else torch.cat([x[-pad:], rev])
    if (m - 1) * shift + size > xp.shape[0]:
        raise ConfigError(
            "waveform", f"{n} samples are too few for snip_edges=False with a {size}-sample window"
        )
    return xp.as_strided((m, size), (shift * xp.stride(0), xp.stride(0)))


def kaldi_fbank(
    waveform: torch.Tensor,
    num_mel_bins: int = 64,
    sample_frequency: float = 16000.0,
    frame_length: float = 25.0,
    frame_shift: float = 10.0,
    *,
    dither: float = 0.0,
    preemphasis_coefficient: float = 0.97,
    remove_dc_offset: bool = True,
    window_type: str = "povey",
    blackman_coeff: float = 0.42,
    round_to_power_of_two: bool = True,
    snip_edges: bool = True,
    low_freq: float = 20.0,
    high_freq: float = 0.0,
    use_log_fbank: bool = True,
    use_power: bool = True,
    use_energy: bool = False,
    raw_energy: bool = True,
    energy_floor: float = 1.0,
    htk_compat: bool = False,
    subtract_mean: bool = False,
    channel: int = -1,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Kaldi-compatible log-mel filterbank, as ``torchaudio.compliance.kaldi.fbank`` computes it.

    Args:
        waveform: ``[n]`` or ``[C, n]`` samples (Kaldi expects int16-range values; the official pipeline
            multiplies a [-1, 1] waveform by 2**15). With ``[C, n]``, ``channel`` picks a row (-1 -> 0).
        num_mel_bins .. subtract_mean: torchaudio's arguments; defaults are torchaudio's except
            ``num_mel_bins=64`` (the official audio pipeline's value). ``frame_length``/``frame_shift`` in ms.
        generator: random source for ``dither`` (ignored when ``dither == 0``, the default).

    Returns:
        ``[m, num_mel_bins]`` (``+1`` column of log energy with ``use_energy``), same float dtype as the
        input (integer input is converted to float32). ``m = 1 + (n - window) // shift`` with ``snip_edges``.

    Steps per frame: remove the DC offset, pre-emphasis ``x[i] - 0.97 x[i-1]`` (with ``x[-1] = x[0]``),
    window, zero-pad to a power of two (512 for 25 ms at 16 kHz), power spectrum, mel filters, log with a
    float-epsilon floor.
    """
    x = waveform
    if not torch.is_floating_point(x):
        x = x.to(torch.float32)
    if x.dim() == 2:
        x = x[max(channel, 0)]
    elif x.dim() != 1:
        raise ConfigError("waveform", f"expected [n] or [C, n], got shape {tuple(waveform.shape)}")
    dtype = x.dtype
    window_shift = int(sample_frequency * frame_shift * 0.001)
    window_size = int(sample_frequency * frame_length * 0.001)
    padded = 1 << (window_size - 1).bit_length() if round_to_power_of_two else window_size
    if window_size < 2 or window_shift <= 0:
        raise ConfigError(
            "frame_length/frame_shift", f"window of {window_size} samples, shift {window_shift}"
        )
    if num_mel_bins < 3:
        raise ConfigError("num_mel_bins", f"must be at least 3, got {num_mel_bins}")
    eps = torch.tensor(torch.finfo(dtype).eps, dtype=dtype)

    frames = _frames(x, window_size, window_shift, snip_edges)
    if frames.shape[0] == 0:
        return torch.empty((0, num_mel_bins + int(use_energy)), dtype=dtype)
    if dither != 0.0:
        noise = torch.randn(frames.shape, dtype=dtype, generator=generator)
        frames = frames + dither * noise
    if remove_dc_offset:
        frames = frames - frames.mean(dim=1, keepdim=True)
    log_energy = None
    if raw_energy:
        log_energy = torch.maximum(frames.pow(2).sum(1), eps).log()
    if preemphasis_coefficient != 0.0:
        prev = torch.cat([frames[:, :1], frames[:, :-1]], dim=1)
        frames = frames - preemphasis_coefficient * prev
    frames = frames * _window(window_type, window_size, blackman_coeff, dtype).unsqueeze(0)
    if padded != window_size:
        frames = F.pad(frames, (0, padded - window_size))
    if not raw_energy:
        log_energy = torch.maximum(frames.pow(2).sum(1), eps).log()
    if log_energy is not None and energy_floor > 0.0:
        log_energy = torch.maximum(log_energy, torch.tensor(math.log(energy_floor), dtype=dtype))

    spectrum = torch.fft.rfft(frames).abs()
    if use_power:
        spectrum = spectrum.pow(2.0)
    banks = mel_banks(num_mel_bins, padded, sample_frequency, low_freq, high_freq).to(dtype)
    banks = F.pad(banks, (0, 1))  # the Nyquist bin gets weight 0
    mel = torch.mm(spectrum, banks.T)
    if use_log_fbank:
        mel = torch.maximum(mel, eps).log()
    if use_energy:
        e = log_energy.unsqueeze(1)
        mel = torch.cat([mel, e], dim=1) if htk_compat else torch.cat([e, mel], dim=1)
    if subtract_mean:
        mel = mel - mel.mean(dim=0, keepdim=True)
    return mel


def beats_fbank(
    waveform: torch.Tensor, target_frames: int = BEATS_TARGET_FRAMES, *, num_mel_bins: int = 64
) -> tuple[torch.Tensor, int]:
    """The official audio-encoder input from a 16 kHz waveform in [-1, 1].

    ``waveform`` is ``[n]`` or ``[1, n]``. Computes ``kaldi_fbank(waveform * 2**15)`` (64 bins, 25/10 ms),
    normalises with ``(f - 15.41663) / (2 * 6.55582)``, then appends zero rows (after normalisation) or cuts
    to ``target_frames``.

    Returns:
        ``(fbank [target_frames, num_mel_bins] float32, valid_frames)``; rows ``>= valid_frames`` are padding.
    """
    x = waveform
    if x.dim() == 2:
        if x.shape[0] != 1:
            raise ConfigError("waveform", f"beats_fbank expects a mono waveform, got shape {tuple(x.shape)}")
        x = x[0]
    x = x.to(torch.float32) * 2**15
    f = kaldi_fbank(x, num_mel_bins=num_mel_bins, sample_frequency=16000, frame_length=25, frame_shift=10)
    f = (f - BEATS_FBANK_MEAN) / (BEATS_FBANK_STD * 2)
    valid = min(int(f.shape[0]), int(target_frames))
    pad = int(target_frames) - int(f.shape[0])
    if pad > 0:
        f = F.pad(f, (0, 0, 0, pad))
    elif pad < 0:
        f = f[:target_frames]
    return f.contiguous(), valid


def load_beats_fbank(
    path: MediaSource,
    *,
    rng: random.Random | None = None,
    start_s: float | None = None,
    end_s: float | None = None,
    max_seconds: float = MAX_AUDIO_SECONDS,
    target_frames: int = BEATS_TARGET_FRAMES,
    timeout: float = 60.0,
) -> tuple[torch.Tensor, int]:
    """File -> official ``[998, 64]`` fbank: :func:`load_audio` (mono, 16 kHz), the 10 s crop
    (:func:`random_crop`: random start with ``rng`` as in training, start 0 without), :func:`beats_fbank`.

    Returns ``(fbank, valid_frames)``. Raises :class:`MediaError` (e.g. ``no_audio_stream``).
    """
    wav = load_audio(path, 16000, mono=True, start_s=start_s, end_s=end_s, timeout=timeout)
    wav, _ = random_crop(wav, max_seconds, 16000, rng)
    return beats_fbank(wav, target_frames)
