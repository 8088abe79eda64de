"""The one seed-derivation rule (``internvideo2.utils.seeding``) and its users."""
from __future__ import annotations

import hashlib
import random
import subprocess
import sys

import numpy as np
import torch

from internvideo2.utils.seeding import derive_generator, derive_np_rng, derive_rng, derive_seed


def _rule(*parts) -> int:  # the documented rule, written out independently
    digest = hashlib.blake2b("/".join(str(p) for p in parts).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") & ((1 << 63) - 1)


def test_the_rule_and_a_pinned_value():
    assert derive_seed(1, 2, 3, "frames") == _rule(1, 2, 3, "frames") == 8485754206354335571
    for parts in [(0,), (0, 0, -1), (7, 12, 1, 0, "stage2"), (0, 3, "shard-000.tar/key", "caption")]:
        s = derive_seed(*parts)
        assert s == _rule(*parts) and 0 <= s < 1 << 63


def test_neighbouring_coordinates_give_unrelated_streams():
    vals = {derive_seed(0, e, i, p) for e in range(3) for i in range(50) for p in ("frames", "caption", "")}
    assert len(vals) == 450
    a = torch.rand(1000, generator=derive_generator(0, 0, 0))
    b = torch.rand(1000, generator=derive_generator(0, 0, 1))
    assert abs(float(torch.corrcoef(torch.stack([a, b]))[0, 1])) < 0.1


def test_generators_are_seeded_with_the_rule():
    s = derive_seed(5, 6, "x")
    assert torch.equal(torch.rand(4, generator=derive_generator(5, 6, "x")),
                       torch.rand(4, generator=torch.Generator().manual_seed(s)))
    assert derive_rng(5, 6, "x").random() == random.Random(s).random()
    assert derive_np_rng(5, 6, "x").random() == np.random.default_rng(s).random()


def test_the_same_in_another_process():
    """No hash randomisation or process state: a fresh interpreter derives the same seed."""
    code = "from internvideo2.utils.seeding import derive_seed; print(derive_seed(1, 2, 3, 'frames'))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={"PYTHONHASHSEED": "123", "PATH": "/usr/bin:/bin"})
    assert int(out.stdout) == derive_seed(1, 2, 3, "frames")


def test_every_stream_of_a_run_uses_the_rule():
    """The training step draws, the epoch orders and the per-sample streams all come from derive_seed."""
    from internvideo2.train.common import step_generator
    from internvideo2.train.data import epoch_permutation, grouped_permutation

    assert step_generator(3, 10, 1, 0, "stage2").initial_seed() == derive_seed(3, 10, 1, 0, "stage2")
    expected = torch.randperm(20, generator=torch.Generator().manual_seed(derive_seed(4, 2, -1)))
    assert torch.equal(epoch_permutation(20, 4, 2), expected)
    g = torch.Generator().manual_seed(derive_seed(4, 2, -2))
    ids = [0] * 10 + [1] * 10
    out = grouped_permutation(ids, 5, 4, 2)
    members = [torch.nonzero(torch.tensor(ids) == k).flatten() for k in (0, 1)]
    runs = []
    for m in members:
        runs.extend(m[torch.randperm(len(m), generator=g)].split(5))
    order = torch.randperm(len(runs), generator=g).tolist()
    assert torch.equal(out, torch.cat([runs[i] for i in order]))
