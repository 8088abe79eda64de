"""The fuzz suite (:mod:`fuzzing`) at a bounded budget: every parser and reader users feed files to, on
mutated real inputs, ends each input in a result or a typed error, within its timeout, writing no file.

Budget: ``INTERNVIDEO2_FUZZ_SECONDS`` (default 60) over all targets, shared by weight; seed
``INTERNVIDEO2_FUZZ_SEED`` (default 0). A longer run: ``python tests/fuzzing.py --seconds 3600``."""
from __future__ import annotations

import os
import shutil

import pytest
from fuzzing import TARGETS, Worker, budget_shares, fuzz_target, group_findings

BUDGET = float(os.environ.get("INTERNVIDEO2_FUZZ_SECONDS", "60"))
SEED = int(os.environ.get("INTERNVIDEO2_FUZZ_SEED", "0"))
SHARES = budget_shares(list(TARGETS), BUDGET)


@pytest.fixture(scope="module")
def harness(tmp_path_factory):
    work = tmp_path_factory.mktemp("fuzz")
    (work / "cwd").mkdir()
    worker = Worker(work / "cwd")
    yield work, worker
    worker.stop()


@pytest.mark.parametrize("name", list(TARGETS))
def test_fuzz(harness, name):
    work, worker = harness
    keep = work / "findings"
    rep = fuzz_target(TARGETS[name], seconds=SHARES[name], seed=SEED, work=work, keep=keep, worker=worker)
    assert rep.inputs >= 3
    # the mutations reach both sides of the reader: some inputs still parse, others are refused
    assert rep.outcomes.get("typed", 0) > 0, rep.outcomes
    if rep.findings:
        kept = work.parent / f"fuzz-findings-{name}"
        shutil.copytree(keep, kept, dirs_exist_ok=True)
        lines = [f"{len(g)} x {sig}: index {g[0]['index']}: {g[0]['message'][:200]}\n{g[0].get('traceback', '')}"
                 for sig, g in group_findings(rep.findings).items()]
        pytest.fail(f"{len(rep.findings)} of {rep.inputs} inputs failed the oracle (inputs kept in {kept}; "
                    f"reproduce with `python tests/fuzzing.py --target {name} --seed {SEED} --index N`):\n"
                    + "\n".join(lines))
