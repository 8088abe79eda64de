"""Distributed engine on 2 gloo processes under torchrun: the same losses and gradients as one process
holding the whole global batch (DDP, FSDP2, DeepSpeed ZeRO), and the differentiable all-gather.

This file is also the torchrun worker: ``python -m torch.distributed.run ... tests/test_engine_dist.py MODE``.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
TINY = ROOT / "configs" / "tiny" / "engine.yaml"
QUIET = ["log.progress=false", "log.tensorboard=false", "log.plot=false"]
# 12 steps crossing no epoch boundary, checkpoints off, a log line per step
COMMON = [
    *QUIET,
    "train.max_steps=12",
    "log.every_n_steps=1",
    "checkpoint.save_final=false",
    "train.eval_every_n_steps=0",
]
RTOL = 1e-5

pytestmark = pytest.mark.distributed


# --------------------------------------------------------------------------------------------------------
# worker side
# --------------------------------------------------------------------------------------------------------
def _full(t: torch.Tensor) -> torch.Tensor:
    return t.full_tensor() if hasattr(t, "full_tensor") else t


def _grad_dump_callback(out: Path):
    from internvideo2.train.engine import Callback

    class GradDump(Callback):
        """After the first backward, save every parameter gradient (the averaged, full tensors)."""

        def on_after_backward(self, trainer):
            if trainer.step != 0:
                return
            grads = {
                n: _full(p.grad).detach().clone()
                for n, p in trainer.unwrapped.named_parameters()
                if p.grad is not None
            }  # full_tensor() is a collective: every rank calls it
            if trainer.info.is_main:
                torch.save(grads, out / "grads0.pt")

    return GradDump()


def _run_training(out: Path, overrides: list[str]) -> None:
    from internvideo2.train.config import load_config
    from internvideo2.train.engine import Trainer

    cfg = load_config(TINY, [f"output_dir={out}", *COMMON, *overrides])
    callbacks = [] if cfg.dist.strategy == "deepspeed" else [_grad_dump_callback(out)]
    Trainer(cfg, callbacks=callbacks).fit()


def _gather_worker(out: Path) -> None:
    """Each rank holds half of a global batch; a CLIP-style loss on the gathered features. Compare the
    DDP-averaged gradient with the single-process gradient of the same loss on the whole batch, for our
    all_gather_with_grad and for the official AllGather semantics (local slice of the local gradient)."""
    import torch.distributed as dist

    from internvideo2.train import distributed as D
    from internvideo2.train.toy import clip_loss

    info = D.init_distributed("gloo", "cpu")
    r, w = info.rank, info.world_size
    g = torch.Generator().manual_seed(0)
    x_all, y_all = torch.randn(8, 5, generator=g), torch.randn(8, 5, generator=g)
    wx, wy = torch.randn(5, 3, generator=g), torch.randn(5, 3, generator=g)

    def loss_fn(x, y, wa, wb, gather):
        v = torch.nn.functional.normalize(x @ wa, dim=-1)
        t = torch.nn.functional.normalize(y @ wb, dim=-1)
        return clip_loss(gather(v), gather(t), torch.tensor(10.0))

    # single process, whole batch (computed on every rank, no collectives)
    a, b = wx.clone().requires_grad_(), wy.clone().requires_grad_()
    ref_loss = loss_fn(x_all, y_all, a, b, lambda z: z)
    ref_loss.backward()
    ref = torch.cat([a.grad.flatten(), b.grad.flatten()])

    class OfficialAllGather(torch.autograd.Function):
        @staticmethod
        def forward(ctx, z):
            parts = [torch.empty_like(z) for _ in range(w)]
            dist.all_gather(parts, z)
            ctx.n = z.shape[0]
            return torch.cat(parts)

        @staticmethod
        def backward(ctx, grad):
            return grad[r * ctx.n : (r + 1) * ctx.n]

    res = {"ref_loss": ref_loss.item()}
    sl = slice(r * 4, (r + 1) * 4)
    for name, gather in (("ours", D.all_gather_with_grad), ("official", OfficialAllGather.apply)):
        a, b = wx.clone().requires_grad_(), wy.clone().requires_grad_()
        loss = loss_fn(x_all[sl], y_all[sl], a, b, gather)
        loss.backward()
        grad = torch.cat([a.grad.flatten(), b.grad.flatten()])
        dist.all_reduce(grad)
        grad /= w  # DDP averages gradients over ranks
        res[name] = {
            "loss": loss.item(),
            "grad_err": float((grad - ref).abs().max() / ref.abs().max()),
            "grad_ratio": float(grad.norm() / ref.norm()),
        }
    if r == 0:
        (out / "gather.json").write_text(json.dumps(res))
    D.shutdown(info)


if __name__ == "__main__":
    mode, out_dir = sys.argv[1], Path(sys.argv[2])
    if mode == "gather":
        _gather_worker(out_dir)
    else:
        _run_training(out_dir, sys.argv[3:])
    sys.exit(0)


# --------------------------------------------------------------------------------------------------------
# test side
# --------------------------------------------------------------------------------------------------------
def torchrun(*args: str, nproc: int = 2, timeout: int = 300) -> None:
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore")
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc_per_node={nproc}",
        str(Path(__file__)),
        *args,
    ]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise AssertionError(
            f"torchrun failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}"
        )


def losses(run: Path) -> list[dict]:
    return [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines() if '"loss"' in x]


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """One process, the whole global batch of 16."""
    out = tmp_path_factory.mktemp("ref")
    _run_training(out, ["train.num_workers=0"])
    return out


@pytest.fixture(autouse=True)
def _one_thread():
    """The tiny models are latency-bound: one intra-op thread is faster and immune to busy cores."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _assert_equivalent(
    ref: Path, run: Path, grads: bool = True, keys: tuple[str, ...] = ("loss", "loss_contrastive", "loss_cls")
) -> dict:
    a, b = losses(ref), losses(run)
    assert [r["step"] for r in a] == [r["step"] for r in b] == list(range(1, 13))
    errs = {"loss": 0.0, "grad_norm": 0.0, "grads0": 0.0}
    for x, y in zip(a, b):
        for key in keys:
            err = abs(y[key] - x[key]) / abs(x[key])
            assert err <= RTOL, (x["step"], key, x[key], y[key])
            errs["loss"] = max(errs["loss"], err)
        errs["grad_norm"] = max(errs["grad_norm"], abs(y["grad_norm"] - x["grad_norm"]) / x["grad_norm"])
    assert errs["grad_norm"] <= RTOL
    if grads:
        g1, g2 = torch.load(ref / "grads0.pt"), torch.load(run / "grads0.pt")
        assert sorted(g1) == sorted(g2)
        for k in g1:
            err = float((g2[k] - g1[k]).abs().max() / g1[k].abs().max().clamp_min(1e-12))
            assert err <= RTOL, (k, err)
            errs["grads0"] = max(errs["grads0"], err)
    print(f"max relative errors vs 1 process: {errs}")
    return errs


def test_all_gather_with_grad_matches_single_process(tmp_path):
    torchrun("gather", str(tmp_path))
    res = json.loads((tmp_path / "gather.json").read_text())
    assert res["ours"]["loss"] == pytest.approx(res["ref_loss"], rel=1e-6)
    assert res["ours"]["grad_err"] < 1e-6
    # the official backward (local slice, no reduction) gives a different gradient after DDP averaging
    assert res["official"]["loss"] == pytest.approx(res["ref_loss"], rel=1e-6)
    assert res["official"]["grad_ratio"] == pytest.approx(0.5, rel=1e-5)


@pytest.mark.parametrize("strategy", ["ddp", "fsdp2"])
def test_two_process_run_matches_one_process(reference, tmp_path, strategy):
    """12 steps of the tiny recipe (CLIP loss over the gathered batch + classification): per-step losses
    and gradient norms within 1e-5 relative, and every gradient of the first step."""
    torchrun("train", str(tmp_path), f"dist.strategy={strategy}", "train.num_workers=1")
    _assert_equivalent(reference, tmp_path)


def test_ddp_grad_accumulation_uses_no_sync(tmp_path_factory):
    """2 ranks x 2 micro-steps x 4 == 1 x 16 for a per-sample loss (accumulation with no_sync)."""
    ref = tmp_path_factory.mktemp("ref_cls")
    _run_training(ref, ["task.options.contrastive_weight=0"])
    run = tmp_path_factory.mktemp("ddp_accum")
    torchrun(
        "train", str(run), "dist.strategy=ddp", "task.options.contrastive_weight=0", "train.grad_accum=2"
    )
    # the (unweighted, logged) contrastive term is over micro-batches of 8 here, so it is not compared
    _assert_equivalent(ref, run, keys=("loss", "loss_cls"))


@pytest.mark.slow
@pytest.mark.parametrize("stage", [0, 2])
def test_deepspeed_zero_matches_one_process(reference, tmp_path, stage):
    if importlib.util.find_spec("deepspeed") is None:
        pytest.skip("deepspeed is not installed (optional: pip install deepspeed)")
    torchrun(
        "train",
        str(tmp_path),
        "dist.strategy=deepspeed",
        f"dist.zero_stage={stage}",
        "checkpoint.save_final=true",
    )
    _assert_equivalent(reference, tmp_path, grads=False)
    ck = tmp_path / "checkpoints"
    assert (ck / "latest").read_text().strip() == "step_00000012"
    assert (ck / "step_00000012").is_dir()
