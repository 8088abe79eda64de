"""torch.distributed helpers: process-group setup from torchrun's environment, rank helpers and a
differentiable all-gather whose gradients match one process holding the whole batch.

Without torchrun's variables (``RANK``/``WORLD_SIZE``...) everything runs as a single process and no
process group is created; every helper here then degrades to the identity.
"""

from __future__ import annotations

import datetime
import logging
import os
import socket
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

log = logging.getLogger("internvideo2.train.distributed")

__all__ = [
    "DistInfo",
    "init_distributed",
    "shutdown",
    "is_dist",
    "get_rank",
    "get_world_size",
    "is_main",
    "barrier",
    "all_gather_with_grad",
    "all_gather_nograd",
    "all_reduce_mean",
    "all_reduce_sum",
    "broadcast_object",
    "all_gather_object",
]


@dataclass
class DistInfo:
    """Where this process sits. ``created_group``: the group was created by ``init_distributed``."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")
    backend: str | None = None
    created_group: bool = False

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def init_distributed(
    backend: str = "auto", device: str = "auto", timeout_s: int = 1800, require_group: bool = False
) -> DistInfo:
    """Initialise from torchrun's environment.

    backend: ``auto`` picks nccl when the device is CUDA, gloo otherwise.
    device: ``auto`` (CUDA when available), ``cpu`` or ``cuda``; with CUDA the local rank's GPU is selected.
    require_group: create a one-process group when not launched by torchrun (DeepSpeed needs one).
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = torch.cuda.is_available() if device == "auto" else device == "cuda"
    if use_cuda and not torch.cuda.is_available():
        from internvideo2.errors import ConfigError

        raise ConfigError("train.device", "cuda requested but torch.cuda.is_available() is False")
    if use_cuda:
        torch.cuda.set_device(local_rank % max(1, torch.cuda.device_count()))
        dev = torch.device("cuda", torch.cuda.current_device())
    else:
        dev = torch.device("cpu")
    if backend == "auto":
        backend = "nccl" if use_cuda else "gloo"
    if dist.is_available() and dist.is_initialized():
        return DistInfo(dist.get_rank(), dist.get_world_size(), local_rank, dev, dist.get_backend(), False)
    if world <= 1 and not require_group:
        return DistInfo(0, 1, 0, dev, None, False)
    if "MASTER_ADDR" not in os.environ:  # a single process asked for a group (e.g. DeepSpeed)
        os.environ["MASTER_ADDR"] = "127.0.0.1"
        os.environ["MASTER_PORT"] = str(_free_port())
        os.environ.setdefault("RANK", "0")
        os.environ.setdefault("WORLD_SIZE", "1")
        os.environ.setdefault("LOCAL_RANK", "0")
    kwargs: dict[str, Any] = dict(backend=backend, timeout=datetime.timedelta(seconds=timeout_s))
    if use_cuda:
        kwargs["device_id"] = dev
    dist.init_process_group(**kwargs)
    info = DistInfo(dist.get_rank(), dist.get_world_size(), local_rank, dev, backend, True)
    log.info("process group: rank %d/%d backend %s device %s", info.rank, info.world_size, backend, dev)
    return info


def shutdown(info: DistInfo | None = None, sync: bool = True) -> None:
    """Destroy the process group if ``init_distributed`` created it. ``sync``: barrier first, so nobody tears
    the group down while a peer still uses it (skip it on error paths, where peers may never arrive)."""
    if dist.is_available() and dist.is_initialized() and (info is None or info.created_group):
        try:
            if sync:
                dist.barrier()
        finally:
            dist.destroy_process_group()


def is_dist() -> bool:
    return dist.is_available() and dist.is_initialized()


def get_rank() -> int:
    return dist.get_rank() if is_dist() else 0


def get_world_size() -> int:
    return dist.get_world_size() if is_dist() else 1


def is_main() -> bool:
    return get_rank() == 0


def barrier() -> None:
    if is_dist():
        dist.barrier()


class _AllGatherWithGrad(torch.autograd.Function):
    """Forward: concatenate every rank's tensor along dim 0. Backward: sum the incoming gradients over
    ranks, then keep this rank's slice (reduce-scatter semantics)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        world, rank = dist.get_world_size(), dist.get_rank()
        x = x.contiguous()
        parts = [torch.empty_like(x) for _ in range(world)]
        dist.all_gather(parts, x)
        ctx.rank, ctx.n = rank, x.shape[0]
        return torch.cat(parts, dim=0)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.contiguous().clone()
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)
        return grad[ctx.rank * ctx.n : (ctx.rank + 1) * ctx.n]


def all_gather_with_grad(x: torch.Tensor) -> torch.Tensor:
    """Differentiable all-gather: ``[B, ...]`` per rank -> ``[world*B, ...]`` in rank order (same B on all).

    Gradient contract: if every rank computes a loss ``l_r`` from the gathered tensor and the gradients
    are then averaged over ranks (DDP/FSDP do this), the parameters receive the gradient of
    ``mean_r l_r``. When each rank computes the same global loss (e.g. CLIP over the gathered batch), that
    is exactly the gradient one process holding the whole batch would get. The official ``AllGather``
    returns only the local slice of the local gradient, which after DDP averaging is 1/world_size of it
    for the gathered path.

    Single process (no group): returns ``x`` unchanged.
    """
    if not is_dist() or dist.get_world_size() == 1:
        return x
    return _AllGatherWithGrad.apply(x)


@torch.no_grad()
def all_gather_nograd(x: torch.Tensor) -> torch.Tensor:
    """All-gather without gradient: ``[B, ...]`` -> ``[world*B, ...]``."""
    if not is_dist() or dist.get_world_size() == 1:
        return x
    parts = [torch.empty_like(x) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, x.contiguous())
    return torch.cat(parts, dim=0)


@torch.no_grad()
def all_reduce_sum(x: torch.Tensor) -> torch.Tensor:
    """Sum over ranks (returns a new tensor)."""
    x = x.detach().clone()
    if is_dist():
        dist.all_reduce(x, op=dist.ReduceOp.SUM)
    return x


@torch.no_grad()
def all_reduce_mean(x: torch.Tensor) -> torch.Tensor:
    """Mean over ranks (returns a new tensor)."""
    return all_reduce_sum(x) / get_world_size()


def broadcast_object(obj: Any, src: int = 0) -> Any:
    """Pickle-broadcast a Python object from ``src``."""
    if not is_dist():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def all_gather_object(obj: Any) -> list[Any]:
    """Gather one Python object per rank into a list (rank order)."""
    if not is_dist():
        return [obj]
    out: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out
