"""The bad-sample policy of the datasets: a sample whose media raises :class:`MediaError` becomes a
:class:`BadSample` marker (never a silent replacement); :func:`collate_skip_bad` drops the markers from the
batch and reports them in it; a :class:`BadSampleTracker` adds them up and raises :class:`DataQualityError`
past the allowed fraction."""
from __future__ import annotations

import collections
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from ..errors import ConfigError, InternVideo2Error

logger = logging.getLogger("internvideo2.data")

__all__ = ["DataQualityError", "BadSamplePolicy", "BadSample", "BadSampleTracker", "collate_samples",
           "collate_skip_bad"]


class DataQualityError(InternVideo2Error):
    """Too many samples of a data set are unusable: more than ``policy.max_fraction`` after at least
    ``policy.min_samples`` samples. The message gives the counts, the reasons and example files."""

    def __init__(self, name: str, seen: int, bad: int, max_fraction: float, reasons: Mapping[str, int],
                 examples: Sequence[tuple[str, str]]):
        self.name = name
        self.seen = seen
        self.bad = bad
        self.max_fraction = max_fraction
        self.reasons = dict(reasons)
        self.examples = list(examples)
        ex = "; ".join(f"{p}: {r}" for p, r in self.examples[:5])
        super().__init__(
            f"{name}: {bad} of {seen} samples were bad ({bad / max(seen, 1):.1%} > max {max_fraction:.1%}); "
            f"reasons {self.reasons}; e.g. {ex}"
        )


@dataclass
class BadSamplePolicy:
    """How many unusable samples a run tolerates.

    Attributes:
        max_fraction: the largest tolerated fraction of bad samples (0 fails on the first bad sample once
            ``min_samples`` were seen; 1 never fails).
        min_samples: no verdict before this many samples were seen (a few bad files at the start of a
            shuffled epoch are no evidence of a broken data set).
    """

    max_fraction: float = 0.05
    min_samples: int = 20

    def __post_init__(self):
        if not 0.0 <= self.max_fraction <= 1.0:
            raise ConfigError("max_fraction", f"must be in [0, 1], got {self.max_fraction}")
        if self.min_samples < 0:
            raise ConfigError("min_samples", f"must be >= 0, got {self.min_samples}")


@dataclass
class BadSample:
    """Marker a dataset returns instead of a sample it could not load (never a substitute sample)."""

    index: Any
    path: str
    reason: str
    detail: str = ""


def _is_bad(x: Any) -> bool:
    return isinstance(x, BadSample)


class BadSampleTracker:
    """Main-process counter of bad samples; feed it every batch made by :func:`collate_skip_bad`.

    ``update(batch)`` adds the batch's counts, logs the bad files and raises :class:`DataQualityError` when
    the policy is exceeded. ``state_dict()`` / ``load_state_dict()`` keep the counts across a resume.
    """

    def __init__(self, policy: BadSamplePolicy | None = None, name: str = "data", max_examples: int = 50):
        self.policy = policy or BadSamplePolicy()
        self.name = name
        self.max_examples = max_examples
        self.seen = 0
        self.bad = 0
        self.reasons: collections.Counter[str] = collections.Counter()
        self.examples: list[tuple[str, str]] = []

    @property
    def fraction(self) -> float:
        return self.bad / self.seen if self.seen else 0.0

    def add(self, num_samples: int, bad: Sequence[tuple[str, str]] = ()) -> None:
        """Count ``num_samples`` samples (good and bad) of which ``bad`` = ``[(path, reason), ...]``."""
        self.seen += int(num_samples)
        for path, reason in bad:
            self.bad += 1
            self.reasons[reason] += 1
            if len(self.examples) < self.max_examples:
                self.examples.append((path, reason))
            logger.warning("%s: bad sample skipped: %s (%s) [%d bad of %d so far]", self.name, path, reason,
                           self.bad, self.seen)
        self.check()

    def update(self, batch: Mapping) -> int:
        """Count one collated batch; returns the number of good samples in it."""
        n = int(batch.get("num_samples", 0))
        paths = list(batch.get("bad_paths", []))
        reasons = list(batch.get("bad_reasons", ["unknown"] * len(paths)))
        self.add(n, list(zip(paths, reasons)))
        return n - len(paths)

    def check(self) -> None:
        p = self.policy
        if self.seen >= max(p.min_samples, 1) and self.fraction > p.max_fraction:
            raise DataQualityError(
                self.name, self.seen, self.bad, p.max_fraction, self.reasons, self.examples
            )

    def summary(self) -> dict:
        return {"seen": self.seen, "bad": self.bad, "fraction": self.fraction, "reasons": dict(self.reasons)}

    def state_dict(self) -> dict:
        return {
            "seen": self.seen,
            "bad": self.bad,
            "reasons": dict(self.reasons),
            "examples": list(self.examples),
        }

    def load_state_dict(self, state: Mapping) -> None:
        self.seen = int(state["seen"])
        self.bad = int(state["bad"])
        self.reasons = collections.Counter(state.get("reasons", {}))
        self.examples = [tuple(e) for e in state.get("examples", [])]


def collate_samples(items: Sequence[Mapping]) -> dict:
    """Collate sample dicts: tensors of one shape are stacked (``[B, ...]``), numbers become a tensor,
    everything else (strings, lists, ragged tensors, None) becomes a list of length B."""
    out: dict = {}
    if not items:
        return out
    keys = list(items[0].keys())
    for k in keys:
        vals = [it.get(k) for it in items]
        v0 = vals[0]
        if isinstance(v0, torch.Tensor) and all(isinstance(v, torch.Tensor) and v.shape == v0.shape
                                                and v.dtype == v0.dtype for v in vals):
            out[k] = torch.stack(vals)
        elif all(isinstance(v, bool) for v in vals):
            out[k] = torch.tensor(vals, dtype=torch.bool)
        elif all(isinstance(v, int) and not isinstance(v, bool) for v in vals):
            out[k] = torch.tensor(vals, dtype=torch.int64)
        elif all(isinstance(v, float) for v in vals):
            out[k] = torch.tensor(vals, dtype=torch.float32)
        else:
            out[k] = list(vals)
    return out


def collate_skip_bad(batch: Sequence[Any]) -> dict:
    """DataLoader ``collate_fn``: drops :class:`BadSample` markers and records them.

    Adds ``num_samples`` (int: good + bad), ``num_bad`` (int), ``bad_paths`` / ``bad_reasons`` /
    ``bad_indices`` (lists). A batch where every sample was bad holds only these keys. Feed the result to
    :meth:`BadSampleTracker.update`.
    """
    good = [b for b in batch if not _is_bad(b)]
    bad = [b for b in batch if _is_bad(b)]
    out = collate_samples(good)
    out["num_samples"] = len(batch)
    out["num_bad"] = len(bad)
    out["bad_paths"] = [b.path for b in bad]
    out["bad_reasons"] = [b.reason for b in bad]
    out["bad_indices"] = [b.index for b in bad]
    return out
