"""Frame-index samplers (``internvideo2.data.sampling``) against the official protocols.

Worked vectors: ../shared/docs/stage3-data-eval.md §1.6 (40-frame clip) and §3.3 / official-spec §6.4
(multi-view test). Semantics: official-spec §7.3 (``get_frame_indices``), §6.2 (fine-tuning train), §5.1
and pitfall P4 (stage-1 TSN).
"""
from __future__ import annotations

import random

import numpy as np
import pytest

from internvideo2.data.sampling import (
    SAMPLE_POLICIES,
    get_frame_indices,
    get_index,
    sample_indices,
    ssv2_test_indices,
    test_view_indices,
    train_sparse_indices,
    tsn_segment_indices,
)
from internvideo2.errors import ConfigError

# ``test_view_indices`` starts with "test": tell pytest it is not a test
test_view_indices.__test__ = False


# ------------------------------------------------------------------------------------------ worked vectors
def test_middle_worked_vectors():
    assert get_frame_indices(4, 40, "middle") == [4, 14, 24, 34]
    assert get_frame_indices(8, 40, "middle") == [2, 7, 12, 17, 22, 27, 32, 37]


def test_get_index_worked_vectors():
    assert get_index(40, 8) == [2, 7, 12, 17, 22, 26, 31, 36]
    assert get_index(40, 16) == [1, 3, 6, 8, 11, 13, 16, 18, 21, 23, 25, 28, 30, 33, 35, 38]
    # the rule: int(seg / 2) + round(seg * i), seg = (n - 1) / k
    seg = 39 / 16
    assert get_index(40, 16) == [int(seg / 2) + int(np.round(seg * i)) for i in range(16)]
    assert sample_indices("uniform", 8, 40) == get_index(40, 8)


def test_multi_view_test_worked_vectors():
    assert test_view_indices(300, 8, 4, 0) == [7, 44, 82, 119, 157, 194, 231, 269]
    assert test_view_indices(300, 8, 4, 3) == [29, 66, 104, 141, 179, 216, 253, 291]
    views = [test_view_indices(300, 8, 4, c) for c in range(4)]
    # views are shifted copies of one grid: every view's frame k lies in segment k
    for k in range(8):
        assert sorted(v[k] for v in views) == [v[k] for v in views]
    assert sample_indices("sparse_test", 8, 300, num_clips=4, clip_idx=3) == views[3]
    # a video shorter than the frame count repeats frames: seg = 0.5, round(0.5 k) half to even, shift 0
    assert test_view_indices(5, 8, 2, 1) == [0, 0, 1, 2, 2, 2, 3, 4]
    for bad in (-1, 4):
        with pytest.raises(ConfigError):
            test_view_indices(300, 8, 4, bad)


def test_ssv2_test_views():
    # tick = 5: {2, 7, ..., 37} U {0, 5, ..., 35}, sorted; view c takes buffer[c::2]
    assert ssv2_test_indices(40, 8, 2, 0) == [0, 5, 10, 15, 20, 25, 30, 35]
    assert ssv2_test_indices(40, 8, 2, 1) == [2, 7, 12, 17, 22, 27, 32, 37]
    three = [ssv2_test_indices(40, 8, 3, c) for c in range(3)]
    assert all(len(v) == 8 for v in three)  # padded with the last index up to 8 * 3
    assert three[2][-1] == 37
    with pytest.raises(ConfigError):
        ssv2_test_indices(40, 8, 2, 2)


# ------------------------------------------------------------------------------------------ 'rand'
def test_rand_never_picks_a_bins_last_frame():
    # 40 frames, 8 bins of 5: official random.choice(range(b_k, b_{k+1} - 1)) -> [5k, 5k + 3]
    seen = [set() for _ in range(8)]
    for seed in range(300):
        idx = get_frame_indices(8, 40, "rand", rng=random.Random(seed))
        for k, i in enumerate(idx):
            seen[k].add(i)
    for k in range(8):
        assert seen[k] == set(range(5 * k, 5 * k + 4))  # never 5k + 4, every other frame reachable


def test_rand_falls_back_to_a_sorted_random_prefix():
    # 12 frames in 8 bins: edges [0, 1, 3, 4, 6, 7, 9, 10, 12]; bins of one frame have nothing to draw
    draws = {tuple(get_frame_indices(8, 12, "rand", rng=random.Random(s))) for s in range(50)}
    assert len(draws) > 10  # random
    for d in draws:
        assert list(d) == sorted(d) and len(set(d)) == 8 and all(0 <= i < 12 for i in d)
    # the fallback draws from the WHOLE video, not bin by bin: some draw has two frames in one bin
    edges = [0, 1, 3, 4, 6, 7, 9, 10, 12]
    assert any(len({np.searchsorted(edges, i, side="right") for i in d}) < 8 for d in draws)


def test_short_clip_repeats_the_last_index():
    assert get_frame_indices(8, 5, "middle") == [0, 1, 2, 3, 4, 4, 4, 4]
    # 'rand' with fewer frames than asked: every frame once (sorted), then the last one repeated
    assert get_frame_indices(8, 5, "rand", rng=random.Random(0)) == [0, 1, 2, 3, 4, 4, 4, 4]
    assert get_frame_indices(4, 1, "middle") == [0, 0, 0, 0]
    assert get_index(3, 8) == sorted(get_index(3, 8))
    assert max(train_sparse_indices(3, 8, random.Random(0))) <= 2


def test_fix_start():
    assert get_frame_indices(4, 40, "middle", fix_start=0) == [0, 10, 20, 30]
    assert get_frame_indices(4, 40, "middle", fix_start=3) == [3, 13, 23, 33]


# ------------------------------------------------------------------------------------------ fps{X}
def test_fps_policy():
    # 40 frames at 5 fps = 8 s. fps1: seconds 0.5, 1.5, ..., 7.5 -> frames round(2.5)=2, round(7.5)=8, ...
    # (numpy rounds halves to even, as the official code does)
    assert get_frame_indices(8, 40, "fps1", input_fps=5) == [2, 8, 12, 18, 22, 28, 32, 38]
    assert get_frame_indices(8, 40, "fps0.5", input_fps=5) == [5, 15, 25, 35]
    # the count follows the duration, not num_frames
    assert get_frame_indices(1, 40, "fps2", input_fps=5) == get_frame_indices(64, 40, "fps2", input_fps=5)
    assert len(get_frame_indices(8, 40, "fps2", input_fps=5)) == 16
    assert get_frame_indices(8, 40, "fps2", input_fps=5, max_num_frames=3) == [1, 4, 6]
    assert sample_indices("fps1", 8, 40, fps=5.0) == [2, 8, 12, 18, 22, 28, 32, 38]
    # indices stay inside the video
    assert all(i < 37 for i in get_frame_indices(8, 37, "fps3", input_fps=25))
    for bad in ("fps", "fpsx", "fps0", "fps-1"):
        with pytest.raises(ConfigError):
            get_frame_indices(8, 40, bad, input_fps=5)
    with pytest.raises(ConfigError):
        get_frame_indices(8, 40, "fps1", input_fps=0)


# ------------------------------------------------------------------------------------------ train samplers
def test_train_sparse_segments():
    # seg = 39/8 = 4.875: segment k draws in [round(4.875k), round(4.875(k+1))], inclusive
    bounds = [(int(np.round(4.875 * k)), int(np.round(4.875 * (k + 1)))) for k in range(8)]
    seen = [set() for _ in range(8)]
    for s in range(300):
        for k, i in enumerate(train_sparse_indices(40, 8, random.Random(s))):
            seen[k].add(i)
    for k, (lo, hi) in enumerate(bounds):
        assert seen[k] == set(range(lo, min(hi, 39) + 1)), k


def test_tsn_without_the_offset_bug():
    # avg = 40 // 8 = 5: segment k reads 5k + randrange(5), i.e. inside its own segment
    for s in range(100):
        idx = tsn_segment_indices(40, 8, random.Random(s))
        assert all(5 * k <= i < 5 * k + 5 for k, i in enumerate(idx))
    # P4: the official reader uses frame offset - 1, so offset 0 reads frame -1 = the LAST frame.
    # With one frame per segment every offset is k: the fixed sampler reads 0..7, the official one 7, 0..6.
    assert tsn_segment_indices(8, 8, random.Random(0)) == list(range(8))
    assert tsn_segment_indices(8, 8, random.Random(0), official_offset_bug=True) == [7, 0, 1, 2, 3, 4, 5, 6]
    for s in range(20):
        fixed = tsn_segment_indices(40, 8, random.Random(s))
        bug = tsn_segment_indices(40, 8, random.Random(s), official_offset_bug=True)
        assert bug == [(i - 1) % 40 for i in fixed]
    assert sample_indices("tsn", 8, 40, rng=random.Random(3)) == tsn_segment_indices(40, 8, random.Random(3))
    # fewer frames than segments: every frame once, frame 0 repeated in front
    assert tsn_segment_indices(3, 5, random.Random(0)) == [0, 0, 0, 1, 2]


# ------------------------------------------------------------------------------------------ determinism
@pytest.mark.parametrize("policy", ["rand", "sparse_train", "tsn"])
def test_seeded_rng_is_deterministic(policy):
    a = [sample_indices(policy, 8, 300, rng=random.Random(s)) for s in range(10)]
    b = [sample_indices(policy, 8, 300, rng=random.Random(s)) for s in range(10)]
    assert a == b
    assert len({tuple(x) for x in a}) > 5  # and really random across seeds
    # None draws from the global ``random`` module (as the official code): seeding it reproduces too
    random.seed(11)
    c = sample_indices(policy, 8, 300)
    random.seed(11)
    assert sample_indices(policy, 8, 300) == c


@pytest.mark.parametrize("policy", ["middle", "uniform", "sparse_test", "ssv2_test", "fps1"])
def test_test_policies_do_not_draw(policy):
    r = random.Random(0)
    state = r.getstate()
    first = sample_indices(policy, 8, 300, fps=25.0, rng=r)
    assert r.getstate() == state  # evaluation never consumes randomness
    assert sample_indices(policy, 8, 300, fps=25.0, rng=random.Random(99)) == first


def test_dispatch_and_errors():
    assert set(SAMPLE_POLICIES) == {"rand", "middle", "fps{X}", "uniform", "sparse_train", "sparse_test",
                                    "ssv2_test", "tsn"}
    assert sample_indices("middle", 8, 40) == get_frame_indices(8, 40, "middle")
    assert sample_indices("ssv2_test", 8, 40, num_clips=2, clip_idx=1) == ssv2_test_indices(40, 8, 2, 1)
    with pytest.raises(ConfigError, match="unknown sampling policy"):
        sample_indices("random", 8, 40)
    with pytest.raises(ConfigError):
        sample_indices("middle", 0, 40)
    with pytest.raises(ConfigError):
        sample_indices("middle", 8, 0)
    with pytest.raises(ConfigError):
        get_index(0, 8)
