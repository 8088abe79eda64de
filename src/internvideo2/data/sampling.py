"""Frame-index samplers that reproduce the official InternVideo2 protocols.

Every function returns plain ``list[int]`` frame indices (0-based, presentation order) and never touches
a file, so the same policy can be checked on paper, in ``internvideo2 probe --frames`` and in a dataset.

Which sampler the official code uses where:

=========================  ==============================================================  ==============
function                   official origin                                                 spec
=========================  ==============================================================  ==============
``get_frame_indices``      ``multi_modality/dataset/video_utils.py`` (stage 2, CLIP)       §7.3
``get_index``              chat / MVBench inference (``seg/2 + round(seg*i)``)             stage3 §1.6
``train_sparse_indices``   ``kinetics_sparse`` train (fine-tuning)                         §6.2
``test_view_indices``      ``kinetics_sparse`` test, temporal view ``c`` of ``S``          §6.4
``ssv2_test_indices``      ``SSVideoClsDataset`` test (SSv2)                               §6.4
``tsn_segment_indices``    ``VideoMAE_multi`` stage-1 TSN sampling                         §5.1, P4
=========================  ==============================================================  ==============

Randomness: functions that draw take ``rng: random.Random | None``. ``None`` uses the global ``random``
module, as the official code does (its ``rand`` fallback used ``np.random``; we draw that from ``rng`` too
so one seed controls everything).
"""
from __future__ import annotations

import random

import numpy as np

from ..errors import ConfigError

__all__ = [
    "SAMPLE_POLICIES",
    "get_frame_indices",
    "get_index",
    "train_sparse_indices",
    "test_view_indices",
    "ssv2_test_indices",
    "tsn_segment_indices",
    "sample_indices",
]

#: policies accepted by :func:`sample_indices` (``fps{X}`` means e.g. ``fps0.5``, ``fps2``)
SAMPLE_POLICIES = ("rand", "middle", "fps{X}", "uniform", "sparse_train", "sparse_test", "ssv2_test", "tsn")


def _rng(rng: random.Random | None):
    return random if rng is None else rng


def _check_counts(num_frames: int, vlen: int) -> None:
    if int(num_frames) < 1:
        raise ConfigError("num_frames", f"must be >= 1, got {num_frames}")
    if int(vlen) < 1:
        raise ConfigError("vlen", f"the video must have at least one frame, got {vlen}")


def get_frame_indices(
    num_frames: int,
    vlen: int,
    sample: str = "rand",
    fix_start: int | None = None,
    input_fps: float = 1.0,
    max_num_frames: int = -1,
    rng: random.Random | None = None,
) -> list[int]:
    """Official stage-2 sampler (spec §7.3), same results as ``video_utils.get_frame_indices``.

    - ``rand`` / ``middle``: ``a = min(num_frames, vlen)`` bins with integer edges
      ``b = int(linspace(0, vlen, a + 1))``; bin ``k`` covers ``[b_k, b_{k+1} - 1]``.
      ``rand`` draws uniformly from ``[b_k, b_{k+1} - 2]`` (the official ``range(b_k, b_{k+1}-1)``:
      the last frame of a bin is never drawn, P17); when a bin is too short to draw from, it falls back to
      a sorted random subset of ``a`` frames. ``middle`` takes ``(b_k + b_{k+1} - 1) // 2``.
      ``fix_start`` (not with ``rand``) takes ``b_k + fix_start``.
      If ``vlen < num_frames`` the last index is repeated up to ``num_frames`` (official padding).
    - ``fps{X}``: one frame every ``1/X`` s, centred: ``round((delta/2 + j*delta) * input_fps)`` for
      ``j = 0, 1, ...`` while ``< vlen`` (numpy half-to-even rounding), cut to ``max_num_frames`` if > 0.
      The number of frames depends on the duration, not on ``num_frames``.

    Returns ``list[int]``.
    """
    vlen = int(vlen)
    if sample in ("rand", "middle"):
        _check_counts(num_frames, vlen)
        acc = min(int(num_frames), vlen)
        edges = np.linspace(start=0, stop=vlen, num=acc + 1).astype(int)
        ranges = [(int(edges[k]), int(edges[k + 1]) - 1) for k in range(acc)]
        r = _rng(rng)
        if sample == "rand":
            if all(hi > lo for lo, hi in ranges):
                indices = [r.choice(range(lo, hi)) for lo, hi in ranges]
            else:
                # official: np.random.permutation(vlen)[:acc], sorted
                indices = sorted(r.sample(range(vlen), acc))
        elif fix_start is not None:
            indices = [lo + int(fix_start) for lo, _ in ranges]
        else:
            indices = [(lo + hi) // 2 for lo, hi in ranges]
        if len(indices) < num_frames:
            indices = indices + [indices[-1]] * (int(num_frames) - len(indices))
        return [int(i) for i in indices]
    if isinstance(sample, str) and sample.startswith("fps"):
        try:
            out_fps = float(sample[3:])
        except ValueError:
            raise ConfigError("sample", f"{sample!r}: expected fps<number>, e.g. fps0.5") from None
        if not out_fps > 0:
            raise ConfigError("sample", f"{sample!r}: the output rate must be > 0")
        if not input_fps or input_fps <= 0:
            raise ConfigError("input_fps", f"must be > 0 for {sample!r}, got {input_fps}")
        if vlen < 1:
            raise ConfigError("vlen", f"the video must have at least one frame, got {vlen}")
        duration = float(vlen) / float(input_fps)
        delta = 1.0 / out_fps
        secs = np.arange(0 + delta / 2, duration + delta / 2, delta)
        idx = np.around(secs * float(input_fps)).astype(int)
        indices = [int(e) for e in idx if e < vlen]
        if max_num_frames > 0 and len(indices) > max_num_frames:
            indices = indices[:max_num_frames]
        return indices
    raise ConfigError("sample", f"unknown sampling policy {sample!r}; use 'rand', 'middle' or 'fps<X>'")


def get_index(num_frames_total: int, k: int) -> list[int]:
    """Chat-model inference sampler (stage3 doc §1.6): ``int(seg/2) + round(seg*i)``, ``seg=(n-1)/k``.

    ``round`` is numpy's half-to-even (it matters: for n=40, k=8 the sixth entry is round(24.375*...)).
    """
    n, k = int(num_frames_total), int(k)
    _check_counts(k, n)
    seg = float(n - 1) / k
    start = int(seg / 2)
    return [int(start + np.round(seg * i)) for i in range(k)]


def train_sparse_indices(vlen: int, num_frames: int, rng: random.Random | None = None) -> list[int]:
    """Fine-tuning train sampler (``kinetics_sparse``, spec §6.2).

    ``seg = max(0, (vlen-1)/num_frames)``; segment ``k`` draws ``randint(round(seg*k), round(seg*(k+1)))``
    (inclusive both ends, Python ``random.randint``), clipped to ``vlen - 1``. Repeats frames when
    ``vlen < num_frames``.
    """
    _check_counts(num_frames, vlen)
    r = _rng(rng)
    seg = max(0.0, float(vlen - 1) / num_frames)
    last = int(vlen) - 1
    out = []
    for k in range(int(num_frames)):
        lo = int(np.round(seg * k))
        hi = int(np.round(seg * (k + 1)))
        out.append(min(r.randint(lo, hi), last))
    return out


def test_view_indices(vlen: int, num_frames: int, num_clips: int, clip_idx: int) -> list[int]:
    """Sparse multi-view test sampler (``kinetics_sparse``, spec §6.4 / stage3 §3.3).

    Temporal view ``clip_idx`` of ``num_clips``: frame ``k`` is
    ``min(round(seg*k) + int(seg/(num_clips+1) * (clip_idx+1)), vlen-1)`` with ``seg=(vlen-1)/num_frames``.
    Example: vlen=300, 8 frames, 4 clips: clip 0 -> [7, 44, 82, ...], clip 3 -> [29, 66, 104, ...].
    """
    _check_counts(num_frames, vlen)
    if num_clips < 1 or not 0 <= clip_idx < num_clips:
        raise ConfigError("clip_idx", f"must be in [0, {num_clips}), got {clip_idx}")
    seg = max(0.0, float(vlen - 1) / num_frames)
    shift = int(seg / (num_clips + 1) * (clip_idx + 1))
    last = int(vlen) - 1
    return [min(int(np.round(seg * k)) + shift, last) for k in range(int(num_frames))]


def ssv2_test_indices(vlen: int, num_frames: int, num_clips: int = 2, clip_idx: int = 0) -> list[int]:
    """SSv2 test sampler (``SSVideoClsDataset`` test mode, spec §6.4).

    ``tick = vlen/num_frames``; the buffer is ``[int(tick/2 + tick*k)] + [int(tick*k)]`` for
    ``k < num_frames``, padded with its last entry up to ``num_frames*num_clips`` and sorted; view ``c``
    takes ``buffer[c::num_clips]``. The official video reader slices ``[c::2]`` hard-coded, which is the
    same thing for the scripts' ``test_num_segment = 2``; for other values we follow the spec (``::S``),
    which always yields ``num_frames`` indices.
    """
    _check_counts(num_frames, vlen)
    if num_clips < 1 or not 0 <= clip_idx < num_clips:
        raise ConfigError("clip_idx", f"must be in [0, {num_clips}), got {clip_idx}")
    tick = float(vlen) / float(num_frames)
    buf = [int(tick / 2.0 + tick * k) for k in range(num_frames)] + [int(tick * k) for k in range(num_frames)]
    while len(buf) < num_frames * num_clips:
        buf.append(buf[-1])
    buf.sort()
    view = buf[clip_idx::num_clips]
    return [int(i) for i in view[:num_frames]]


def tsn_segment_indices(
    vlen: int, num_segments: int, rng: random.Random | None = None, *, official_offset_bug: bool = False
) -> list[int]:
    """Stage-1 TSN sparse sampler (``VideoMAE_multi``, spec §5.1).

    ``avg = vlen // num_segments``; segment ``k`` reads ``k*avg + randint(avg)`` (``randint`` exclusive of
    ``avg``, as numpy's). A video with fewer frames than segments (``avg == 0``) gives every frame once,
    in order, with frame 0 repeated at the front up to ``num_segments`` (our choice: the VideoMAE-family
    code uses offset 0 for every segment, i.e. one frame repeated; its "sorted random draw" branch needs a
    skip length > 1 and cannot occur with one frame per segment).

    ``official_offset_bug``: the official reader uses frame ``offset - 1`` (P4), so offset 0 reads the LAST
    frame (index -1). It is off by default; set it only to reproduce the released stage-1 data exactly.
    Returns indices in ``[0, vlen)`` either way (``-1`` is mapped to ``vlen - 1``).
    """
    _check_counts(num_segments, vlen)
    r = _rng(rng)
    vlen, n = int(vlen), int(num_segments)
    avg = vlen // n
    if avg > 0:
        idx = [k * avg + r.randrange(avg) for k in range(n)]
    else:
        idx = [0] * (n - vlen) + list(range(vlen))
    if official_offset_bug:
        idx = [(i - 1) % vlen for i in idx]
    return idx


def sample_indices(
    policy: str,
    num_frames: int,
    vlen: int,
    *,
    fps: float = 1.0,
    rng: random.Random | None = None,
    num_clips: int = 1,
    clip_idx: int = 0,
    max_num_frames: int = -1,
) -> list[int]:
    """One entry point for every policy by name (used by ``read_clip`` and ``probe --sample``).

    ``rand`` / ``middle`` / ``fps{X}``: :func:`get_frame_indices`; ``uniform``: :func:`get_index` (chat
    inference); ``sparse_train``: :func:`train_sparse_indices`; ``sparse_test``:
    :func:`test_view_indices` with ``num_clips``/``clip_idx``; ``ssv2_test``: :func:`ssv2_test_indices`;
    ``tsn``: :func:`tsn_segment_indices` (without the official offset bug).
    """
    if policy in ("rand", "middle") or (isinstance(policy, str) and policy.startswith("fps")):
        return get_frame_indices(num_frames, vlen, policy, input_fps=fps, max_num_frames=max_num_frames,
                                 rng=rng)
    if policy == "uniform":
        return get_index(vlen, num_frames)
    if policy == "sparse_train":
        return train_sparse_indices(vlen, num_frames, rng)
    if policy == "sparse_test":
        return test_view_indices(vlen, num_frames, num_clips, clip_idx)
    if policy == "ssv2_test":
        return ssv2_test_indices(vlen, num_frames, max(num_clips, 1), clip_idx)
    if policy == "tsn":
        return tsn_segment_indices(vlen, num_frames, rng)
    raise ConfigError(
        "sample",
        f"unknown sampling policy {policy!r}; choose rand, middle, fps<X>, uniform, sparse_train, "
        "sparse_test, ssv2_test, tsn",
    )
