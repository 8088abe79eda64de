"""The package's one seed-derivation rule.

Every random stream that must be reproducible (sample augmentation, epoch orders, masks, hard negatives,
MLM corruption, mixing) is seeded by :func:`derive_seed` from the run seed and the coordinates that identify
the draw, e.g. ``derive_seed(seed, epoch, index, "frames")`` or ``derive_seed(seed, step, rank, micro,
"stage2")``. The rule: the parts are written with ``str`` and joined with ``/``, hashed with BLAKE2b
(8-byte digest), and the digest read little-endian and cut to 63 bits (a valid seed for torch, numpy and
``random`` alike). A stream is therefore the same in every process, on every rank and machine and after a
resume, and neighbouring coordinates give unrelated streams (unlike ``seed + index``).

Conventions: the run seed comes first, then the coordinates from the coarsest to the finest, then a purpose
word; only one part may contain ``/`` (e.g. a shard sample id), so that the joined string stays unambiguous.
Users: ``derive_rng(seed, epoch, index, purpose)`` for a dataset sample (frames, transform, caption, audio),
``derive_generator(seed, epoch, -1 | -2)`` for an epoch's order, ``derive_generator(seed, epoch, index)`` for
generated samples, ``derive_generator(seed, step, rank, micro, purpose)`` for the draws of a training step
(``train.common.step_generator``). The synthetic world's *content* (which clip has which objects) is part of
its specification, not a stream of a run: it is seeded by numpy ``SeedSequence`` s of (seed, split, index) as
docs/synthetic-world.md documents.
"""
from __future__ import annotations

import hashlib
import random

import numpy as np
import torch

__all__ = ["derive_seed", "derive_generator", "derive_rng", "derive_np_rng"]

_MASK63 = (1 << 63) - 1


def derive_seed(*parts: object) -> int:
    """A 63-bit seed that is a pure function of ``parts`` (see the module doc for the rule)."""
    h = hashlib.blake2b("/".join(str(p) for p in parts).encode(), digest_size=8).digest()
    return int.from_bytes(h, "little") & _MASK63


def derive_generator(*parts: object) -> torch.Generator:
    """A CPU ``torch.Generator`` seeded with :func:`derive_seed`."""
    return torch.Generator().manual_seed(derive_seed(*parts))


def derive_rng(*parts: object) -> random.Random:
    """A ``random.Random`` seeded with :func:`derive_seed`."""
    return random.Random(derive_seed(*parts))


def derive_np_rng(*parts: object) -> np.random.Generator:
    """A numpy ``Generator`` seeded with :func:`derive_seed`."""
    return np.random.default_rng(derive_seed(*parts))
