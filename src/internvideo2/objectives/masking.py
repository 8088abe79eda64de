"""Token masks for stage-1 / stage-2 training and distillation (official-spec §4.1, §5.2).

All masks are bool, ``True`` = dropped, with a leading False column for the cls token when
``with_cls`` (the layout the vision encoders take). Every sample drops the same number of tokens.
"""
from __future__ import annotations

import torch
from torch import Tensor


def _with_cls(mask: Tensor, with_cls: bool) -> Tensor:
    if not with_cls:
        return mask
    return torch.cat([torch.zeros(mask.shape[0], 1, dtype=torch.bool, device=mask.device), mask], dim=1)


def random_mask(batch: int, num_tokens: int, ratio: float, generator: torch.Generator | None = None,
                with_cls: bool = True) -> Tensor:
    """Drop ``int(ratio * N)`` tokens per sample, chosen independently per sample (official
    ``RandomMaskingGenerator``; stage 2 uses 0.8 for video, 0.5 for images)."""
    n_drop = int(ratio * num_tokens)
    order = torch.rand(batch, num_tokens, generator=generator).argsort(dim=1)
    mask = torch.zeros(batch, num_tokens, dtype=torch.bool)
    mask.scatter_(1, order[:, :n_drop], True)
    return _with_cls(mask, with_cls)


def tube_mask(batch: int, frames: int, tokens_per_frame: int, ratio: float,
              generator: torch.Generator | None = None, with_cls: bool = True) -> Tensor:
    """The same spatial mask of ``int(ratio * L)`` tokens on every frame (``TubeMaskingGenerator``)."""
    spatial = random_mask(batch, tokens_per_frame, ratio, generator, with_cls=False)
    return _with_cls(spatial.repeat(1, frames), with_cls)


def attention_mask(attn: Tensor, ratio: float, batch: int | None = None, generator: torch.Generator | None = None,
                   with_cls: bool = True, sample: bool = True) -> Tensor:
    """Teacher-attention-guided mask (spec §5.2).

    ``attn`` holds non-negative importance per token: ``[B*T, L]`` per frame (InternVL-C teacher; give
    ``batch=B`` and the result is ``[B, (1+)T*L]``) or ``[B, N]`` over the whole video (distillation).
    ``N_vis = L - int(ratio * L)`` tokens per row stay visible: drawn without replacement with
    probability proportional to the attention (``sample=True``, the official ``multinomial``), or the
    top-attended ones exactly (``sample=False``).
    """
    rows, L = attn.shape
    n_vis = L - int(ratio * L)
    if sample:
        weights = attn.float().clamp_min(0) + 1e-12  # multinomial needs a positive total per row
        keep = torch.multinomial(weights.cpu(), n_vis, replacement=False, generator=generator)
    else:
        keep = attn.float().cpu().topk(n_vis, dim=1).indices
    mask = torch.ones(rows, L, dtype=torch.bool)
    mask.scatter_(1, keep, False)
    if batch is not None:
        mask = mask.reshape(batch, -1)
    return _with_cls(mask, with_cls).to(attn.device)
