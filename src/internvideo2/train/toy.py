"""``toy_contrastive``: a tiny built-in task that exercises the whole engine on generated tensors.

Two encoders on deterministic synthetic pairs: a small transformer over ``[B, T, Dv]`` "video" tokens (with
``patch_embed``, ``cls_token``, ``pos_embed`` and ``blocks.i`` like the InternVideo2 vision core, so layer
decay, weight-decay exclusions, FSDP2 units and activation checkpointing all apply) and an MLP over
``[B, Dt]`` "text" vectors. The loss is a CLIP-style symmetric InfoNCE over the **gathered** global batch
(each rank computes the same global loss through ``ctx.gather``) plus a cross-entropy classification term
on the local batch.

Sample ``i`` has class ``i % num_classes``; its inputs are the class prototypes plus noise drawn from
``derive_generator(seed, epoch, i)`` (the package's seed rule), so the data is a pure function of (seed,
epoch, index).

Options (``task.options``, :class:`ToyOptions`) also include test hooks: ``nan_at_steps`` makes the loss
(``nan_in: loss``) or only the gradient (``nan_in: grad``) non-finite at those steps, on every rank or only
on ``nan_rank``; ``sleep_s`` slows each step down (for kill/resume tests).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from internvideo2.errors import ConfigError
from internvideo2.train.tasks import StepContext, Task, register_task
from internvideo2.utils.seeding import derive_generator


@dataclass
class ToyOptions:
    """``task.options`` of ``toy_contrastive``."""

    num_samples: int = 256  # training set size
    eval_samples: int = 64  # evaluation set size (a fixed "epoch -1" draw)
    num_classes: int = 8
    tokens: int = 4  # T video tokens per sample
    video_dim: int = 16  # Dv
    text_dim: int = 12  # Dt
    noise: float = 0.5  # std of the per-sample noise around the class prototype
    width: int = 32  # transformer / MLP width
    depth: int = 2  # transformer blocks
    heads: int = 4
    embed_dim: int = 16  # contrastive embedding size
    dropout: float = 0.0
    temperature: float = 0.07  # initial contrastive temperature (learnable, clamped to [0.01, 0.5])
    contrastive_weight: float = 1.0
    cls_weight: float = 1.0
    nan_at_steps: list[int] = field(default_factory=list)  # test hook: steps (0-based) made non-finite
    nan_in: Literal["loss", "grad"] = "loss"
    nan_rank: int | None = None  # inject only on this rank (None: all ranks)
    sleep_s: float = 0.0  # test hook: sleep per training step

    def __post_init__(self):
        for key in ("num_samples", "eval_samples", "num_classes", "tokens", "video_dim", "text_dim", "width",
                    "depth", "heads", "embed_dim"):
            if getattr(self, key) < 1:
                raise ConfigError(key, f"must be an integer >= 1, got {getattr(self, key)!r}")
        if self.width % self.heads:
            raise ConfigError("heads", f"must divide width {self.width}")
        if not 0 <= self.dropout < 1:
            raise ConfigError("dropout", f"must be in [0, 1), got {self.dropout!r}")


class ToyPairs(torch.utils.data.Dataset):
    """Synthetic (video tokens, text vector, label) triples; a pure function of (seed, epoch, index)."""

    def __init__(
        self,
        n: int,
        num_classes: int,
        tokens: int,
        video_dim: int,
        text_dim: int,
        noise: float,
        seed: int,
        epoch: int = 0,
    ):
        self.n, self.c, self.noise, self.seed, self.epoch = n, num_classes, noise, seed, epoch
        g = torch.Generator().manual_seed(seed * 7919 + 17)
        self.video_proto = torch.randn(num_classes, tokens, video_dim, generator=g)
        self.text_proto = torch.randn(num_classes, text_dim, generator=g)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        label = i % self.c
        g = derive_generator(self.seed, self.epoch, i)
        video = self.video_proto[label] + self.noise * torch.randn(self.video_proto.shape[1:], generator=g)
        text = self.text_proto[label] + self.noise * torch.randn(self.text_proto.shape[1:], generator=g)
        return {"video": video, "text": text, "label": torch.tensor(label), "index": torch.tensor(i)}


class _Block(nn.Module):
    def __init__(self, width: int, heads: int, dropout: float):
        super().__init__()
        self.heads = heads
        self.norm1 = nn.LayerNorm(width)
        self.qkv = nn.Linear(width, 3 * width)
        self.proj = nn.Linear(width, width)
        self.norm2 = nn.LayerNorm(width)
        self.mlp = nn.Sequential(
            nn.Linear(width, 2 * width), nn.GELU(), nn.Dropout(dropout), nn.Linear(2 * width, width)
        )
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [B, N, C] -> [B, N, C]
        b, n, c = x.shape
        q, k, v = self.qkv(self.norm1(x)).view(b, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        a = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(b, n, c)
        x = x + self.drop(self.proj(a))
        return x + self.drop(self.mlp(self.norm2(x)))


class ToyVideoText(nn.Module):
    """Tiny two-tower model. ``forward(video [B,T,Dv], text [B,Dt])`` -> (v [B,E] unit, t [B,E] unit,
    class logits [B,K], logit scale [] = 1/temp)."""

    def __init__(self, o: ToyOptions):
        super().__init__()
        w = o.width
        self.patch_embed = nn.Sequential()
        self.patch_embed.add_module("proj", nn.Linear(o.video_dim, w))
        self.cls_token = nn.Parameter(torch.zeros(1, 1, w))
        self.pos_embed = nn.Parameter(0.02 * torch.randn(1, o.tokens + 1, w))
        self.blocks = nn.ModuleList(_Block(w, o.heads, o.dropout) for _ in range(o.depth))
        self.norm = nn.LayerNorm(w)
        self.head = nn.Linear(w, o.num_classes)
        self.vision_proj = nn.Linear(w, o.embed_dim)
        self.text_encoder = nn.Sequential(nn.Linear(o.text_dim, w), nn.GELU(), nn.Linear(w, w))
        self.text_proj = nn.Linear(w, o.embed_dim)
        self.temp = nn.Parameter(torch.tensor([float(o.temperature)]))
        self.grad_checkpointing = False

    def get_num_layers(self) -> int:
        return len(self.blocks)

    def no_weight_decay(self) -> set[str]:
        return {"pos_embed", "cls_token", "temp"}

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        self.grad_checkpointing = bool(enable)

    def forward(self, video: torch.Tensor, text: torch.Tensor):
        x = self.patch_embed(video)
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1) + self.pos_embed
        for blk in self.blocks:
            x = (
                checkpoint(blk, x, use_reentrant=False)
                if self.grad_checkpointing and self.training
                else blk(x)
            )
        feat = self.norm(x)[:, 0]
        v = F.normalize(self.vision_proj(feat), dim=-1)
        t = F.normalize(self.text_proj(self.text_encoder(text)), dim=-1)
        scale = 1.0 / self.temp.clamp(0.01, 0.5).squeeze(0)
        return v, t, self.head(feat), scale


def clip_loss(v: torch.Tensor, t: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """Symmetric InfoNCE on unit vectors ``[N, E]``; pair i is the positive of row i."""
    sim = scale * v @ t.t()
    labels = torch.arange(sim.shape[0], device=sim.device)
    return 0.5 * (F.cross_entropy(sim, labels) + F.cross_entropy(sim.t(), labels))


@register_task("toy_contrastive")
class ToyContrastive(Task):
    """See the module docstring."""

    options_class = ToyOptions

    def build_model(self, cfg) -> nn.Module:
        return ToyVideoText(self.options(cfg))

    def build_train_dataset(self, cfg):
        o = self.options(cfg)
        return ToyPairs(
            o.num_samples,
            o.num_classes,
            o.tokens,
            o.video_dim,
            o.text_dim,
            o.noise,
            cfg.train.seed,
        )

    def training_step(self, model, batch, ctx: StepContext) -> dict[str, torch.Tensor]:
        o = self.options(ctx.cfg)
        if o.sleep_s:
            time.sleep(float(o.sleep_s))
        v, t, logits, scale = model(batch["video"], batch["text"])
        inject = ctx.step in o.nan_at_steps and (o.nan_rank is None or o.nan_rank == ctx.rank)
        if inject and o.nan_in == "grad":
            v = v + 0.0 * v.detach()
            v.register_hook(lambda g: torch.full_like(g, math.nan))
        loss_c = clip_loss(ctx.gather(v), ctx.gather(t), scale)  # same global loss on every rank
        loss_cls = F.cross_entropy(logits.float(), batch["label"])
        loss = o.contrastive_weight * loss_c + o.cls_weight * loss_cls
        if inject and o.nan_in == "loss":
            loss = loss * math.nan
        return {"loss": loss, "loss_contrastive": loss_c.detach(), "loss_cls": loss_cls.detach()}

    @torch.no_grad()
    def evaluate(self, model, ctx: StepContext) -> dict[str, float]:
        o = self.options(ctx.cfg)
        ds = ToyPairs(
            o.eval_samples,
            o.num_classes,
            o.tokens,
            o.video_dim,
            o.text_dim,
            o.noise,
            ctx.cfg.train.seed,
            epoch=-1,
        )
        batch = torch.utils.data.default_collate([ds[i] for i in range(len(ds))])
        v, t, logits, _ = model(batch["video"].to(ctx.device), batch["text"].to(ctx.device))
        labels = batch["label"].to(ctx.device)
        # a retrieval hit: the best text has the same class as the video
        best = (v.float() @ t.float().t()).argmax(dim=1)
        return {
            "v2t_class_r1": float((labels[best] == labels).float().mean()),
            "cls_acc": float((logits.argmax(dim=1) == labels).float().mean()),
        }
