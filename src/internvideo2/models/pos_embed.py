"""Position-embedding tables and their resampling in time and space (official-spec §1.3).

Token layout everywhere: ``[extra tokens (cls), then t-major, then row-major (row i, column j)]``.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def sincos_1d(dim: int, positions: torch.Tensor) -> torch.Tensor:
    """``[sin(p w_0..w_{D/2-1}) | cos(p w_0..)]`` with ``w_k = 10000^(-k/(D/2))``. ``[P] -> [P, dim]``."""
    if dim % 2:
        raise ValueError(f"sin-cos embedding needs an even dim, got {dim}")
    omega = torch.arange(dim // 2, dtype=torch.float64) / (dim / 2.0)
    omega = 1.0 / 10000**omega
    out = positions.reshape(-1).to(torch.float64)[:, None] * omega[None]
    return torch.cat([out.sin(), out.cos()], dim=1)


def sincos_2d(dim: int, grid_hw: tuple[int, int]) -> torch.Tensor:
    """2D table ``[H*W, dim]``: the first half encodes the *column* (w) index, the second the row (h)
    index (the official meshgrid(w, h) order)."""
    gh, gw = grid_hw
    rows = torch.arange(gh).repeat_interleave(gw)
    cols = torch.arange(gw).repeat(gh)
    return torch.cat([sincos_1d(dim // 2, cols), sincos_1d(dim // 2, rows)], dim=1)


def sincos_3d(dim: int, grid_thw: tuple[int, int, int], cls_token: bool = True) -> torch.Tensor:
    """Joint 3D table ``[(1+)T*H*W, dim]``: ``[temporal (dim/4) | column | row (3dim/8 each)]``; cls row 0."""
    if dim % 16:
        raise ValueError(f"the joint 3D sin-cos table needs embed_dim divisible by 16, got {dim}")
    t, gh, gw = grid_thw
    d_t, d_s = dim // 4, dim // 4 * 3
    temporal = sincos_1d(d_t, torch.arange(t)).repeat_interleave(gh * gw, dim=0)
    spatial = sincos_2d(d_s, (gh, gw)).repeat(t, 1)
    table = torch.cat([temporal, spatial], dim=1)
    if cls_token:
        table = torch.cat([torch.zeros(1, dim, dtype=table.dtype), table], dim=0)
    return table.float()


def sincos_1d_interleaved(dim: int, n_positions: int) -> torch.Tensor:
    """VideoMAE table over the flattened token index: angle ``p / 10000^(2*(j//2)/dim)``, sin on even
    and cos on odd channels (interleaved). ``[n_positions, dim]``."""
    pos = torch.arange(n_positions, dtype=torch.float64)[:, None]
    j = torch.arange(dim, dtype=torch.float64)[None]
    angle = pos / torch.pow(10000.0, 2 * torch.div(j, 2, rounding_mode="floor") / dim)
    table = torch.empty_like(angle)
    table[:, 0::2] = angle[:, 0::2].sin()
    table[:, 1::2] = angle[:, 1::2].cos()
    return table.float()


def resample_pos_embed(pos_embed: torch.Tensor, old_grid: tuple[int, int, int],
                       new_grid: tuple[int, int, int], num_extra: int = 1) -> torch.Tensor:
    """Resample ``[1, num_extra + T*H*W, C]`` from grid ``(T, H, W)`` to another, as the official
    loaders do: temporal first (``linear``, align_corners=False, per spatial position), then spatial
    (``bicubic``, align_corners=False, per frame). The extra (cls) rows are kept unchanged."""
    if tuple(old_grid) == tuple(new_grid):
        return pos_embed
    t0, h0, w0 = old_grid
    t1, h1, w1 = new_grid
    C = pos_embed.shape[-1]
    if pos_embed.shape[-2] != num_extra + t0 * h0 * w0:
        raise ValueError(f"pos_embed has {pos_embed.shape[-2]} rows, grid {old_grid} needs "
                         f"{num_extra + t0 * h0 * w0}")
    extra, tokens = pos_embed[:, :num_extra], pos_embed[:, num_extra:]
    dtype = tokens.dtype
    tokens = tokens.float()
    if t0 != t1:
        x = tokens.reshape(t0, h0 * w0, C).permute(1, 2, 0)  # [HW, C, T]
        x = F.interpolate(x, size=t1, mode="linear", align_corners=False)
        tokens = x.permute(2, 0, 1).reshape(1, t1 * h0 * w0, C)
    if (h0, w0) != (h1, w1):
        x = tokens.reshape(t1, h0, w0, C).permute(0, 3, 1, 2)  # [T, C, H, W]
        x = F.interpolate(x, size=(h1, w1), mode="bicubic", align_corners=False)
        tokens = x.permute(0, 2, 3, 1).reshape(1, t1 * h1 * w1, C)
    return torch.cat([extra, tokens.to(dtype)], dim=1)


def infer_grid(num_rows: int, num_extra: int, ref_grid: tuple[int, int, int],
               hint_frames: int | None = None, hint_hw: tuple[int, int] | None = None) -> tuple[int, int, int]:
    """Guess the ``(T, H, W)`` grid a stored table was made for.

    Preference: an explicit hint; else the reference model's spatial grid (only the frame count
    differs); else its frame count (only the resolution differs, square grid). Raises ValueError
    when the row count fits neither, asking for an explicit hint.
    """
    n = num_rows - num_extra
    t_ref, h_ref, w_ref = ref_grid
    if hint_frames is not None and hint_hw is not None:
        grid = (hint_frames, *hint_hw)
    elif hint_frames is not None:
        side = round((n / hint_frames) ** 0.5)
        grid = (hint_frames, side, side)
    elif hint_hw is not None:
        grid = (n // (hint_hw[0] * hint_hw[1]), *hint_hw)
    elif n % (h_ref * w_ref) == 0:
        grid = (n // (h_ref * w_ref), h_ref, w_ref)
    else:
        side = round((n / t_ref) ** 0.5) if n % t_ref == 0 else 0
        grid = (t_ref, side, side)
    if grid[0] * grid[1] * grid[2] != n or min(grid) <= 0:
        raise ValueError(f"cannot tell the (frames, rows, cols) grid of a table with {n} token rows "
                         f"(model grid {ref_grid}); pass the checkpoint's frame count / image size")
    return grid
