"""Stage 2 on mixed image + video corpora, the official ``MetaLoader`` way: one media type per step, the
types interleaved in a seeded shuffled order in proportion to their sizes, the same on every rank, resumable.

References: ``InternVideo2/multi_modality/dataset/dataloader.py::MetaLoader`` (the loader index repeated
``len(loader)`` times, shuffled, broadcast from rank 0), ``dataset/__init__.py::create_dataset("pt_train")``
(one dataset per media type) and ``tasks/pretrain.py`` (steps per epoch = the sum of the loaders' lengths).

This file is also the torchrun worker: ``python -m torch.distributed.run ... tests/test_mixed_corpora.py OUT SYNTH``.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
RECIPE = ROOT / "configs" / "tiny" / "stage2.yaml"
N_IMAGES, N_VIDEOS, GLOBAL_BATCH, STEPS = 8, 12, 4, 7   # 2 image + 3 video steps per epoch; 7 steps cross one
CORPORA = (f"data.options.corpora=[{{corpus: synth, media: image, num: {N_IMAGES}, name: frames}}, "
           f"{{corpus: synth, media: video, num: {N_VIDEOS}, name: clips}}]")
COMMON = ["log.progress=false", "log.tensorboard=false", "log.plot=false", "log.every_n_steps=1",
          "checkpoint.save_final=false", "checkpoint.every_n_steps=0", "train.eval_every_n_steps=0",
          "task.options.eval_split=null", f"train.max_steps={STEPS}", f"train.global_batch_size={GLOBAL_BATCH}",
          f"data.options.synth_train={N_VIDEOS}", "data.options.synth_heldout=0", "task.options.text_dropout=0.0",
          CORPORA]


def _config(out: Path, synth: Path, *overrides: str):
    from internvideo2.train.config import load_config

    return load_config(RECIPE, [f"output_dir={out}", f"data.options.synth_dir={synth}", *COMMON, *overrides])


def _recording_task():
    """Stage 2 that notes what every micro-batch held."""
    from internvideo2.train.stage2 import Stage2Task

    class Recording(Stage2Task):
        def __init__(self):
            self.seen: list[dict] = []

        def training_step(self, model, batch, ctx):
            self.seen.append({"step": ctx.step, "epoch": ctx.epoch, "rank": ctx.rank,
                              "media": sorted(set(batch["media"])), "corpus": sorted(set(batch["corpus"])),
                              "idx": batch["idx"].tolist(), "frames": int(batch["video"].shape[1])})
            return super().training_step(model, batch, ctx)

    return Recording()


def _train(out: Path, synth: Path, *overrides: str, callbacks=(), resume: str | None = None) -> list[dict]:
    from internvideo2.train.engine import Trainer

    task = _recording_task()
    Trainer(_config(out, synth, *overrides), task=task, callbacks=callbacks).fit(resume)
    return task.seen


if __name__ == "__main__":  # torchrun worker: write what this rank saw
    torch.set_num_threads(1)
    seen = _train(Path(sys.argv[1]), Path(sys.argv[2]), *sys.argv[3:])
    rank = int(os.environ.get("RANK", "0"))
    (Path(sys.argv[1]) / f"seen_rank{rank}.json").write_text(json.dumps(seen))
    sys.exit(0)


def _losses(run: Path) -> list[dict]:
    """The logged per-step losses, gradient norms and learning rates (not the timings)."""
    rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines() if '"loss"' in x]
    return [{k: v for k, v in r.items() if k.startswith("loss") or k in ("step", "lr", "grad_norm")} for r in rows]


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    from internvideo2.data.synth import SynthConfig, generate_world

    root = tmp_path_factory.mktemp("synth")
    generate_world(root, N_VIDEOS, seed=0, split="train", cfg=SynthConfig(num_frames=8, size=64), progress=False)
    return root


@pytest.fixture(scope="module")
def reference(tmp_path_factory, synth):
    """One uninterrupted one-process run: (what each step saw, the logged losses)."""
    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("ref")
    return _train(out, synth), _losses(out)


# -------------------------------------------------------------------------------------- the sampler alone

def test_metaloader_order_counts_and_seed():
    from internvideo2.train.data import metaloader_order

    order = metaloader_order([3, 5, 0, 2], seed=7, epoch=0)
    assert Counter(order) == {0: 3, 1: 5, 3: 2} and len(order) == 10
    assert order == metaloader_order([3, 5, 0, 2], seed=7, epoch=0)            # a pure function
    assert {tuple(metaloader_order([3, 5, 0, 2], 7, e)) for e in range(6)} != {tuple(order)}  # reshuffled per epoch
    assert metaloader_order([3, 5, 0, 2], seed=8, epoch=0) != order or metaloader_order([3, 5, 0, 2], 9, 0) != order


@pytest.mark.parametrize("world, accum", [(1, 1), (2, 1), (2, 2)])
def test_sampler_steps_are_single_stream_and_ranks_split_the_global_batch(world, accum):
    from internvideo2.train.data import MetaLoaderSampler

    streams = [list(range(0, 21)), list(range(21, 60))]         # 21 images, 39 videos
    b, seed, epoch = 2, 3, 1
    g = b * world * accum
    one = MetaLoaderSampler(streams, g, 1, 0, 1, seed, epoch, names=["image", "video"])
    assert one.num_batches == [21 // g, 39 // g] and one.steps_per_epoch == 21 // g + 39 // g
    per_rank = [list(MetaLoaderSampler(streams, b, world, r, accum, seed, epoch, names=["image", "video"]))
                for r in range(world)]
    for k, global_batch in enumerate(one):
        s = one.order[k]
        assert set(global_batch) <= set(streams[s])                          # one media type per step
        chunks = [per_rank[r][k * accum + a] for a in range(accum) for r in range(world)]
        assert sorted(sum(chunks, [])) == sorted(global_batch)               # the ranks split that batch
    for s, stream in enumerate(streams):                                     # each sample at most once
        drawn = [i for k, gb in enumerate(one) if one.order[k] == s for i in gb]
        assert len(drawn) == len(set(drawn)) == one.num_batches[s] * g and set(drawn) <= set(stream)


def test_sampler_resumes_at_any_step():
    from internvideo2.train.data import MetaLoaderSampler

    streams = [list(range(10)), list(range(10, 35))]
    full = list(MetaLoaderSampler(streams, 2, 2, 1, 1, 0, 4))
    for k in range(len(full) + 1):
        tail = list(MetaLoaderSampler(streams, 2, 2, 1, 1, 0, 4, start_step=k))
        assert tail == full[k:]


# -------------------------------------------------------------------------------------- tiny stage-2 runs

def test_every_step_holds_one_media_type_in_proportion(reference, synth):
    from internvideo2.train.data import MetaLoaderSampler

    seen, losses = reference
    assert [s["step"] for s in seen] == list(range(STEPS)) and len(losses) == STEPS
    for s in seen:
        assert len(s["media"]) == 1 and len(s["idx"]) == GLOBAL_BATCH
        assert s["frames"] == (1 if s["media"] == ["image"] else 4)         # images take the T = 1 path
        assert s["corpus"] == (["frames"] if s["media"] == ["image"] else ["clips"])
    epoch0 = [s for s in seen if s["epoch"] == 0]
    assert len(epoch0) == N_IMAGES // GLOBAL_BATCH + N_VIDEOS // GLOBAL_BATCH
    # the counts per epoch are the corpus sizes in batches, and no sample repeats within the epoch
    assert Counter(s["media"][0] for s in epoch0) == {"image": N_IMAGES // GLOBAL_BATCH,
                                                      "video": N_VIDEOS // GLOBAL_BATCH}
    idx = [i for s in epoch0 for i in s["idx"]]
    assert sorted(idx) == list(range(N_IMAGES + N_VIDEOS))                  # images 0..7, videos 8..19
    assert all(i < N_IMAGES for s in epoch0 if s["media"] == ["image"] for i in s["idx"])
    # the order is the seeded MetaLoader order of each epoch (streams in sorted media order: image, video)
    for epoch in (0, 1):
        want = MetaLoaderSampler([list(range(N_IMAGES)), list(range(N_IMAGES, N_IMAGES + N_VIDEOS))],
                                 GLOBAL_BATCH, 1, 0, 1, 0, epoch, names=["image", "video"]).order
        got = [["image", "video"].index(s["media"][0]) for s in seen if s["epoch"] == epoch]
        assert got == want[:len(got)]
    assert all(r["loss"] == r["loss"] for r in losses)


def test_resume_mid_epoch_is_exact(reference, synth, tmp_path):
    from internvideo2.train.engine import Callback

    class StopAt(Callback):
        def on_step_end(self, trainer, record):
            if trainer.step == 3:                                           # mid-epoch (5 steps per epoch)
                trainer._stop_requested = True

    # a second process run reproduces the reference run's order and losses bit for bit (CPU), and a run
    # stopped mid-epoch and resumed continues exactly where it stopped
    first = _train(tmp_path, synth, callbacks=[StopAt()])
    assert [s["step"] for s in first] == [0, 1, 2]
    rest = _train(tmp_path, synth, resume="auto")
    seen, losses = reference
    assert first + rest == seen
    assert _losses(tmp_path) == losses


def test_corpora_options_are_checked(synth, tmp_path):
    from internvideo2.errors import ConfigError
    from internvideo2.train.engine import Trainer
    from internvideo2.train.stage2 import Stage2Task

    with pytest.raises(ConfigError) as ei:
        Stage2Task().validate(_config(tmp_path, synth, "data.options.corpora=[{media: audio, annotation: a.json}]"))
    assert ei.value.field == "data.options.corpora[0].media"
    with pytest.raises(ConfigError) as ei:
        Stage2Task().validate(_config(tmp_path, synth, "data.options.corpora=[{media: image}]"))
    assert ei.value.field == "data.options.corpora[0].annotation"
    with pytest.raises(ConfigError) as ei:                                   # 8 images < one global batch of 16
        Trainer(_config(tmp_path, synth, "train.global_batch_size=16")).fit()
    assert ei.value.field == "data.options.corpora" and "image" in ei.value.reason
    # DDP on mixed media needs find_unused_parameters (the image / video position tables train on alternate steps)
    from internvideo2.train.config import resolve_batch
    from internvideo2.train.data import MixedCorpora

    cfg = _config(tmp_path, synth, "dist.strategy=ddp")
    mixed = MixedCorpora([list(range(8)), list(range(12))], ["image", "video"])
    with pytest.raises(ConfigError) as ei:
        Stage2Task().build_batch_sampler(cfg, mixed, resolve_batch(cfg.train, 2), 0, 0, 0)
    assert ei.value.field == "dist.find_unused_parameters"
    cfg = _config(tmp_path, synth, "dist.strategy=ddp", "dist.find_unused_parameters=true")
    assert Stage2Task().build_batch_sampler(cfg, mixed, resolve_batch(cfg.train, 2), 1, 0, 0).steps_per_epoch == 5


@pytest.mark.distributed
def test_two_ranks_take_the_same_media_type_at_every_step(reference, synth, tmp_path):
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", str(Path(__file__)),
           str(tmp_path), str(synth), "dist.strategy=ddp", "dist.backend=gloo",
           "dist.find_unused_parameters=true"]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, f"torchrun failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}"
    ranks = [json.loads((tmp_path / f"seen_rank{r}.json").read_text()) for r in (0, 1)]
    seen, _ = reference
    assert [s["step"] for s in ranks[0]] == [s["step"] for s in ranks[1]] == list(range(STEPS))
    for a, b, one in zip(ranks[0], ranks[1], seen):
        assert a["media"] == b["media"] == one["media"]                     # every rank, the same stream
        assert len(a["idx"]) == len(b["idx"]) == GLOBAL_BATCH // 2
        assert a["idx"] + b["idx"] == one["idx"]                            # together: the one-process batch


def test_synthetic_image_corpus_is_the_clips_middle_frames(synth):
    from internvideo2.data.annotations import read_image_text
    from internvideo2.data.datasets import read_image
    from internvideo2.data.synth import SynthConfig, SynthWorld, write_frame_images

    ann = write_frame_images(synth, "train")
    assert write_frame_images(synth, "train") == ann                         # a repeat is a no-op
    recs = read_image_text(ann).records
    world = SynthWorld(0, "train", SynthConfig(num_frames=8, size=64))
    assert len(recs) == N_VIDEOS and recs[3].media_type == "image"
    assert recs[3].captions == world.record(3)["caption"] and recs[3].extra["frame"] == 4
    assert torch.equal(read_image(recs[3].path)[0], torch.from_numpy(world.render(3).frames[4]))  # lossless PNG
