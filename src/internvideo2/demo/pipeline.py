"""The demo: InternVideo2's progressive recipe at toy scale on the built-in synthetic world, on a CPU.

1. generate the synthetic world (MP4 clips with audio, captions, classes, QA);
2. train the two teachers: a per-frame image CLIP on (frame, caption) pairs and a video MAE;
3. stage 1: a student distils both teachers from 20% of its tokens;
4. stage 2 (VTC + VTM + MLM with the real MiniLM text tower) twice per seed, from the stage-1 weights
   and from scratch, at the same budget;
5. evaluate every stage-2 model on the held-out split (unseen colour-shape combinations): text-video
   retrieval under three scorers, zero-shot classification, multiple choice, a linear probe;
6. fine-tune the headline model for action recognition and test it with multiple views;
7. write ``report.md``, ``metrics.json`` and plots.

Every stage is a recipe in ``configs/demo/`` run by the training engine; evaluation calls the same
functions as ``internvideo2 eval``, so the saved checkpoints reproduce the reported numbers.
"""
from __future__ import annotations

import json
import logging
import shutil
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..errors import ConfigError, InternVideo2Error
from ..utils.io import write_text

log = logging.getLogger("internvideo2.demo")

# the synthetic world's held-out split: retrieval over the first 100 clips, classification over all
RETRIEVAL_ITEMS = 100
# ITM re-ranks each text query's top K videos by cosine (the official protocol re-ranks a top k_test)
RERANK_K = 16
# zero-shot classification is averaged over held-out draws of these world seeds (seed 0 is the world's own
# held-out split; every draw has the same rules and size, other clips). Recipe decisions never read them:
# they were made on the val split and on a held-out draw with seed 1000 (experiments/stage2_itm.py)
ZEROSHOT_DRAWS = (0, 1, 2)


class StageInterrupted(InternVideo2Error):
    """A training stage of the demo was stopped (SIGTERM) before its last step: the demo stops too (a
    half-trained stage is never recorded as finished or used by later stages)."""


@dataclass
class DemoOptions:
    """Attributes:
        out: output folder.
        quick: smoke scale (seconds per stage) for CI; the numbers then mean nothing.
        seeds: stage-2 seeds per arm (the comparison reports their spread).
        configs: folder of the demo recipes (default: ``configs/demo`` of the repository).
        fresh: delete ``out`` first; otherwise finished stages with unchanged recipes are reused.
        finetune: run the fine-tuning stage.
        scratch: run the stage-2-from-scratch arm (the comparison).
        steps: train every stage for this many steps instead of its recipe's (None: the recipe's).
    """

    out: Path = Path("runs/demo")
    quick: bool = False
    seeds: tuple[int, ...] = (0, 1, 2)
    configs: Path | None = None
    fresh: bool = False
    finetune: bool = True
    scratch: bool = True
    steps: int | None = None
    timings: dict[str, float] = field(default_factory=dict)


def default_configs() -> Path:
    for cand in (Path.cwd() / "configs" / "demo", Path(__file__).resolve().parents[3] / "configs" / "demo"):
        if (cand / "stage2.yaml").is_file():
            return cand
    raise ConfigError("configs", "the demo recipes (configs/demo/*.yaml) were not found: run the demo from a clone "
                                 "of the repository or pass --configs")


QUICK = {  # smoke scale: a tiny world, a few steps, one seed
    "data.options.synth_train": 48, "data.options.synth_heldout": 24, "train.max_steps": 3,
    "schedule.warmup_steps": 1, "log.every_n_steps": 1, "train.global_batch_size": 8, "data.options.synth_val": 24,
}


class Demo:
    def __init__(self, opts: DemoOptions):
        self.o = opts
        self.out = Path(opts.out)
        self.cfg_dir = Path(opts.configs) if opts.configs else default_configs()
        self.synth = self.out / "synth"
        self.t0 = time.perf_counter()
        self.timings: dict[str, float] = {}
        self.results: dict[str, Any] = {}
        self.reused_seconds = 0.0  # training time of stages reused from an earlier invocation

    # -------------------------------------------------------------- running recipes
    def overrides(self, stage: str, extra: dict[str, Any]) -> list[str]:
        ov = {"output_dir": str(self.out / stage), "data.options.synth_dir": str(self.synth),
              "checkpoint.resume": "auto", "log.tensorboard": True}
        if self.o.quick:
            ov.update(QUICK)
            if stage.startswith("stage2"):
                ov["task.options.vtm_batch"] = 4
                ov["task.options.mlm_batch"] = 4
                ov["train.eval_every_n_steps"] = 3
                ov["task.options.eval_num"] = 16
            if stage.startswith("finetune"):
                ov["task.options.eval_num"] = 16
        if self.o.steps is not None:
            ov["train.max_steps"] = self.o.steps
        ov.update(extra)
        return [f"{k}={'null' if v is None else v}" for k, v in ov.items()]

    def train(self, recipe: str, stage: str, label: str, **extra: Any) -> dict:
        from ..train.config import config_to_dict, load_config
        from ..train.engine import Trainer

        cfg = load_config(self.cfg_dir / f"{recipe}.yaml", self.overrides(stage, extra))
        folder = self.out / stage
        fingerprint = json.dumps(config_to_dict(cfg), sort_keys=True, default=str)
        done = folder / "demo_done.json"
        if done.is_file() and json.loads(done.read_text()).get("config") == fingerprint \
                and (folder / "model" / "config.json").is_file():
            log.info("[%s] reusing the finished run in %s", label, folder)
            summary = json.loads((folder / "summary.json").read_text())
            self.timings[label] = json.loads(done.read_text())["seconds"]
            self.reused_seconds += self.timings[label]
            return summary
        started = folder / "demo_stage.json"  # the recipe a stage was started with
        same = started.is_file() and json.loads(started.read_text()).get("config") == fingerprint
        if folder.exists() and not same:  # a changed stage starts over
            shutil.rmtree(folder)
        elif same:  # an interrupted stage with the same recipe resumes from its checkpoint
            log.info("[%s] resuming the interrupted run in %s", label, folder)
            print(f"   resuming the interrupted stage in {folder}", flush=True)
        folder.mkdir(parents=True, exist_ok=True)
        write_text(started, json.dumps({"config": fingerprint}))
        self.announce(label)
        t = time.perf_counter()
        summary = Trainer(cfg).fit()
        seconds = time.perf_counter() - t
        if summary.get("interrupted"):
            raise StageInterrupted(
                f"stage '{label}' stopped at step {summary['steps']} of {summary['total_steps']} (SIGTERM); its "
                f"checkpoint is in {folder}: run the demo again to resume it")
        self.timings[label] = seconds
        write_text(done, json.dumps({"config": fingerprint, "seconds": seconds}))
        log.info("[%s] done in %.0f s: %s", label, seconds, {k: round(v, 4) for k, v in summary["final"].items()
                                                            if k.startswith("loss")})
        return summary

    def announce(self, label: str) -> None:
        elapsed = time.perf_counter() - self.t0
        msg = f"== {label}  (demo time {elapsed / 60:.1f} min)"
        log.info(msg)
        print(msg, flush=True)

    # -------------------------------------------------------------- stages
    def world(self) -> None:
        from ..train.common import synth_corpus
        from ..train.config import load_config
        from ..train.tasks import get_task

        self.announce("synthetic world")
        t = time.perf_counter()
        cfg = load_config(self.cfg_dir / "stage2.yaml", self.overrides("stage2", {}))
        opts = get_task(cfg.task.name).data_options(cfg)
        synth_corpus(opts)
        self.draws = self.heldout_draws(opts)
        self.timings["synthetic world"] = time.perf_counter() - t
        meta = (json.loads((self.synth / "heldout_meta.json").read_text())
                if (self.synth / "heldout_meta.json").is_file() else {})
        self.results["world"] = {"train_clips": len(json.loads((self.synth / "train.json").read_text())),
                                 "heldout_clips": len(json.loads((self.synth / "heldout.json").read_text())),
                                 "heldout_caption_uniqueness": meta.get("caption_uniqueness_first_100")
                                 or meta.get("caption_uniqueness")}

    def heldout_draws(self, opts) -> dict[int, Path]:
        """The folders of the held-out draws used for zero-shot classification, generated when missing:
        the world's own held-out split (its seed), then ``synth/draws/seed<N>`` for the other seeds."""
        from ..data.synth import SynthConfig, generate_world

        n = len(json.loads((self.synth / "heldout.json").read_text()))
        cfg = SynthConfig(num_frames=int(opts.synth_frames), size=int(opts.synth_size))
        draws = {}
        for seed in ZEROSHOT_DRAWS:
            if seed == int(opts.synth_seed):
                draws[seed] = self.synth
                continue
            folder = self.synth / "draws" / f"seed{seed}"
            ann = folder / "heldout.json"
            if not (ann.is_file() and len(json.loads(ann.read_text())) == n):
                log.info("generating held-out draw %d (%d clips) for zero-shot classification", seed, n)
                generate_world(folder, n, seed=seed, split="heldout", cfg=cfg, progress=True)
            draws[seed] = folder
        return draws

    def run(self) -> dict:
        if self.o.fresh and self.out.exists():
            shutil.rmtree(self.out)
        self.out.mkdir(parents=True, exist_ok=True)
        self.world()
        ct = self.train("clip_teacher", "clip_teacher", "teacher 1/2: image CLIP on frames")
        mt = self.train("mae_teacher", "mae_teacher", "teacher 2/2: video MAE")
        s1 = self.train("stage1", "stage1", "stage 1: distil both teachers",
                        **{"task.options.clip_teacher": ct["model"], "task.options.mae_teacher": mt["model"]})
        arms = {"stage1": s1["model"]} | ({"scratch": None} if self.o.scratch else {})
        runs: dict[str, dict[int, dict]] = {arm: {} for arm in arms}
        for seed in self.o.seeds:
            for arm, init in arms.items():
                name = f"{arm}_seed{seed}"
                runs[arm][seed] = self.train("stage2", f"stage2/{name}", f"stage 2 ({arm} init, seed {seed})",
                                             **{"model.pretrained": init, "train.seed": seed})
        self.results["stage2"] = self.evaluate_stage2(runs)
        head = runs["stage1"][self.o.seeds[0]]["model"]
        if self.o.finetune:
            ft = self.train("finetune", "finetune", "fine-tuning for action recognition", **{"model.pretrained": head})
            self.results["finetune"] = {"summary_eval": ft["eval"], "model": ft["model"], "init": head}
        # what producing these results cost: this invocation plus the recorded time of the stages it reused
        self.timings["total"] = time.perf_counter() - self.t0 + self.reused_seconds
        from .report import write_report

        return write_report(self)

    # -------------------------------------------------------------- evaluation
    def evaluate_stage2(self, runs: dict[str, dict[int, dict]]) -> dict:
        from ..checkpoint.loader import load_model
        from ..eval.zeroshot import load_videos, mc_from_files, retrieval_from_files, zeroshot_from_files

        self.announce("evaluation of the stage-2 models on the held-out split")
        t = time.perf_counter()
        held = json.loads((self.synth / "heldout.json").read_text())
        train = json.loads((self.synth / "train.json").read_text())
        n_ret = min(RETRIEVAL_ITEMS, len(held))
        n_probe_train = min(1000, len(train))
        probe_videos = {}
        out: dict[str, Any] = {}
        for arm, seeds in runs.items():
            out[arm] = {}
            for seed, summary in seeds.items():
                model = load_model(summary["model"])
                res: dict[str, Any] = {"model": summary["model"], "train_seconds": self.timings.get(
                    f"stage 2 ({arm} init, seed {seed})"), "curve": _eval_curve(Path(summary["output_dir"])),
                    "final_losses": {k: v for k, v in summary["final"].items() if k.startswith("loss")}}
                res["retrieval"] = retrieval_from_files(model, self.synth / "heldout.json", self.synth, num=n_ret,
                                                        captions="first", k_test=RERANK_K)
                res["retrieval_all_captions"] = retrieval_from_files(model, self.synth / "heldout.json", self.synth,
                                                                     num=n_ret, captions="all", use_itm=False)
                res["zeroshot"] = zeroshot_from_files(model, self.synth / "heldout.json", self.synth,
                                                      self.synth / "classes.json")
                res["zeroshot_draws"] = {
                    seed: (res["zeroshot"] if folder == self.synth else zeroshot_from_files(
                        model, folder / "heldout.json", folder, folder / "classes.json"))["top1"]
                    for seed, folder in self.draws.items()}
                res["mc"] = mc_from_files(model, self.synth / "heldout_mc.json", self.synth, num=n_ret)
                if not probe_videos:
                    probe_videos["train"] = load_videos([str(self.synth / r["video"]) for r in train[:n_probe_train]],
                                                        model)
                    probe_videos["held"] = load_videos([str(self.synth / r["video"]) for r in held], model)
                res.update(frozen_probes(model, probe_videos, [r["label"] for r in train[:n_probe_train]],
                                         [r["label"] for r in held]))
                out[arm][seed] = res
                log.info("[eval] %s seed %d: t2v R@1 sim %.1f dsl %.1f match %.1f | zero-shot top1 %.1f (draws %s) | "
                         "probe linear %.1f head %.1f attentive %.1f", arm, seed, res["retrieval"]["sim"]["t2v_r1"],
                         res["retrieval"]["dsl"]["t2v_r1"],
                         res["retrieval"].get("match", {}).get("t2v_r1", float("nan")),
                         res["zeroshot"]["top1"], " / ".join(f"{v:.1f}" for v in res["zeroshot_draws"].values()),
                         res["linear_probe"]["top1"], res["linear_probe_head"]["top1"],
                         res["attentive_probe"]["top1"])
        self.timings["evaluation"] = time.perf_counter() - t
        return out


def frozen_probes(model, videos: dict[str, torch.Tensor], train_labels: list[int], test_labels: list[int],
                  batch: int = 64) -> dict[str, dict]:
    """The three frozen-feature probes of a stage-2 / CLIP / vision model's encoder, from one forward pass:

    * ``linear_probe``: logistic regression on the mean of the patch tokens (the backbone's representation;
      the MAE / VideoMAE linear-probing protocol);
    * ``linear_probe_head``: the same on the attention-pool output, i.e. the contrastive head's feature
      before ``vision_proj`` (what VTC shaped; in stage 1 it was trained to match the CLIP teacher);
    * ``attentive_probe``: a new attention pool + linear head trained on the frozen tokens (the paper's
      frozen-backbone protocol).
    ``videos``: {"train": [N, 3, T, H, W], "held": [M, 3, T, H, W]}."""
    from ..eval.classification import attentive_probe, linear_probe

    tokens, pooled = {}, {}
    model.eval()
    for split, v in videos.items():
        embs = [model.encode_video(v[i:i + batch]) for i in range(0, len(v), batch)]
        tokens[split] = torch.cat([e.tokens for e in embs])
        pooled[split] = torch.cat([e.pooled for e in embs])
    return {"linear_probe": linear_probe(tokens["train"][:, 1:].mean(1), train_labels, tokens["held"][:, 1:].mean(1),
                                         test_labels),
            "linear_probe_head": linear_probe(pooled["train"], train_labels, pooled["held"], test_labels),
            "attentive_probe": attentive_probe(tokens["train"], train_labels, tokens["held"], test_labels)}


def _eval_curve(run: Path) -> list[dict]:
    from ..train.logs import read_metrics

    return [{"step": r.get("step"), **{k[5:]: v for k, v in r.items() if k.startswith("eval/")}}
            for r in read_metrics(run) if any(k.startswith("eval/") for k in r)]


def run_demo(opts: DemoOptions) -> int:
    out = Path(opts.out)
    out.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(out / "demo.log")
    handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s: %(message)s"))
    root = logging.getLogger("internvideo2")
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    def on_sigterm(signum, frame):  # outside a training stage (the trainer checkpoints on its own)
        raise StageInterrupted("stopped by SIGTERM between stages; finished stages are kept: run the demo again "
                               "to go on")

    old_handler = signal.signal(signal.SIGTERM, on_sigterm)
    try:
        report = Demo(opts).run()
    except StageInterrupted as e:
        log.error("%s", e)
        print(f"internvideo2 demo: interrupted: {e}", file=sys.stderr, flush=True)
        return 4
    finally:
        signal.signal(signal.SIGTERM, old_handler)
        root.removeHandler(handler)
    print(report["summary_text"], flush=True)
    return 0
