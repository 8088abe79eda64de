"""Hard-negative batches: the grouped epoch order, its sampler across ranks and resumes, and the stage-2
option that builds it from an annotation field (the synthetic world's ``appearance``)."""
from __future__ import annotations

import json
from collections import Counter

import pytest
import torch

from internvideo2.errors import ConfigError
from internvideo2.train.data import GlobalBatchSampler, grouped_permutation


def _groups(n_groups: int = 5, per: int = 12) -> list[int]:
    g = torch.Generator().manual_seed(3)
    ids = [k for k in range(n_groups) for _ in range(per)]
    return [ids[i] for i in torch.randperm(len(ids), generator=g).tolist()]


def test_grouped_permutation_is_a_permutation_made_of_same_group_runs():
    groups = _groups(5, 12)  # 12 per group, runs of 4: every aligned run of 4 is one group
    perm = grouped_permutation(groups, 4, seed=0, epoch=0)
    assert sorted(perm.tolist()) == list(range(len(groups)))
    runs = perm.view(-1, 4).tolist()
    assert all(len({groups[i] for i in run}) == 1 for run in runs)
    # deterministic, and a new order each epoch
    assert torch.equal(perm, grouped_permutation(groups, 4, seed=0, epoch=0))
    assert not torch.equal(perm, grouped_permutation(groups, 4, seed=0, epoch=1))
    assert not torch.equal(perm, grouped_permutation(groups, 4, seed=1, epoch=0))


def test_grouped_permutation_keeps_uneven_groups_whole():
    groups = [0] * 7 + [1] * 3 + [2]
    perm = grouped_permutation(groups, 4, seed=5, epoch=2).tolist()
    assert sorted(perm) == list(range(11))
    # runs: group 0 -> 4 + 3, group 1 -> 3, group 2 -> 1; each run is contiguous in the order
    pos = {i: p for p, i in enumerate(perm)}
    for gid, size in ((1, 3), (2, 1)):
        where = sorted(pos[i] for i, g in enumerate(groups) if g == gid)
        assert where == list(range(where[0], where[0] + size))
    with pytest.raises(ValueError):
        grouped_permutation(groups, 0, seed=0, epoch=0)


def test_grouped_sampler_ranks_and_resume_see_the_one_process_batches():
    groups = _groups(6, 16)  # 96 samples, global batch 16 = 2 ranks x 8
    one = list(GlobalBatchSampler(96, 16, 1, 0, 1, seed=7, epoch=3, groups=groups, group_size=4))
    ranks = [list(GlobalBatchSampler(96, 8, 2, r, 1, seed=7, epoch=3, groups=groups, group_size=4)) for r in (0, 1)]
    assert len(one) == 6
    for k, batch in enumerate(one):
        assert ranks[0][k] + ranks[1][k] == batch
        # 16 samples in runs of 4 of one group: at least 3 other samples share each sample's group
        counts = Counter(groups[i] for i in batch)
        assert all(counts[groups[i]] >= 4 for i in batch)
    resumed = list(GlobalBatchSampler(96, 16, 1, 0, 1, seed=7, epoch=3, start_step=4, groups=groups, group_size=4))
    assert resumed == one[4:]
    with pytest.raises(ValueError, match="groups"):
        GlobalBatchSampler(95, 16, 1, 0, 1, seed=7, epoch=3, groups=groups, group_size=4)


def test_random_batches_rarely_group_by_themselves():
    """The control: without groups, the same data gives far fewer same-group neighbours per batch."""
    groups = _groups(24, 8)
    def shared(sampler):
        tot = 0
        for batch in sampler:
            c = Counter(groups[i] for i in batch)
            tot += sum(v * (v - 1) for v in c.values())
        return tot
    plain = shared(GlobalBatchSampler(192, 32, 1, 0, 1, seed=1, epoch=0))
    grouped = shared(GlobalBatchSampler(192, 32, 1, 0, 1, seed=1, epoch=0, groups=groups, group_size=8))
    assert grouped >= 3 * plain


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    from internvideo2.data.synth import SynthConfig, generate_world

    root = tmp_path_factory.mktemp("world")
    generate_world(root, 24, seed=0, split="train", cfg=SynthConfig(num_frames=8, size=64), progress=False)
    return root


def _stage2(world, tmp_path, *overrides, build: bool = True):
    from internvideo2.train.config import load_config
    from internvideo2.train.tasks import get_task

    cfg = load_config("configs/tiny/stage2.yaml", [f"output_dir={tmp_path}", f"data.options.synth_dir={world}",
                                                   "data.options.synth_train=24", "data.options.synth_heldout=0",
                                                   "train.global_batch_size=8", *overrides])
    task = get_task(cfg.task.name)
    return cfg, task, task.build_train_dataset(cfg) if build else None


def test_synthetic_world_records_the_main_object_appearance(world):
    rows = json.loads((world / "train.json").read_text())
    full = [json.loads(x) for x in (world / "train.jsonl").read_text().splitlines()]
    for row, rec in zip(rows, full):
        o = rec["spec"]["objects"][0]
        assert row["appearance"] == rec["appearance"] == " ".join(x for x in (o["size"], o["colour"], o["shape"]) if x)


def test_stage2_group_by_builds_appearance_batches(world, tmp_path):
    from internvideo2.train.config import resolve_batch

    cfg, task, ds = _stage2(world, tmp_path, "data.options.group_by=appearance", "data.options.group_size=2")
    plan = resolve_batch(cfg.train, 1)
    sampler = task.build_batch_sampler(cfg, ds, plan, 0, 0, 0)
    order = [i for batch in sampler for i in batch]
    assert sorted(order) == list(range(24))
    app = [r["appearance"] for r in json.loads((world / "train.json").read_text())]
    first_seen = list(dict.fromkeys(app))  # group ids follow the order of first appearance
    assert order == grouped_permutation([first_seen.index(a) for a in app], 2, cfg.train.seed, 0).tolist()
    # without the option the engine's plain sampler is used
    cfg2, task2, ds2 = _stage2(world, tmp_path)
    assert task2.build_batch_sampler(cfg2, ds2, plan, 0, 0, 0) is None


def test_stage2_group_by_names_a_missing_field(world, tmp_path):
    from internvideo2.train.config import resolve_batch

    cfg, task, ds = _stage2(world, tmp_path, "data.options.group_by=no_such_field")
    with pytest.raises(ConfigError, match="group_by.*no_such_field"):
        task.build_batch_sampler(cfg, ds, resolve_batch(cfg.train, 1), 0, 0, 0)


def test_stage2_group_size_is_validated_before_training(world, tmp_path):
    cfg, task, _ = _stage2(world, tmp_path, "data.options.group_by=appearance", "data.options.group_size=0",
                           build=False)
    with pytest.raises(ConfigError, match="data.options.group_size"):
        task.validate(cfg)
    with pytest.raises(ConfigError, match="data.options.group_size"):
        task.build_train_dataset(cfg)
