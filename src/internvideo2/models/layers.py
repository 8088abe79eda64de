"""Building blocks of the InternVideo2 vision transformer (official-spec §1.2-1.6).

One attention, one MLP, one block, one attention-pooling head. Every vision model in this package
(students, stage-1/stage-2 encoders, CLIP tower, InternVL-C and VideoMAE-style teachers) is assembled
from these, configured by :class:`~internvideo2.models.config.VisionConfig`; nothing is copied.

Module names reproduce the official state-dict keys (``attn.qkv``, ``attn.q_norm``, ``ls1.gamma``,
``clip_projector.cross_attn.q_bias`` ...), so official checkpoints load without renaming.
"""
from __future__ import annotations

import contextlib
import math

import torch
import torch.nn.functional as F
from torch import nn

_FUSED = True


@contextlib.contextmanager
def fused_kernels(enabled: bool):
    """Switch the fused inference paths (default on).

    On CPU in fp32 or bf16 without autograd: RMSNorm as one norm reduction (fp32 accumulation) and two
    in-place scalings, q/k normalised straight into the head-major layout CPU SDPA runs fastest on, GELU
    applied inside oneDNN's ``fc1`` kernel, the LayerScale product folded into the residual add (in fp32
    also with autograd), and large batches run in groups of samples (:func:`micro_batch_bytes`). Off
    reproduces the official eager code op for op; the encoder benchmark's official-eager baseline runs with
    it off. Outputs agree to float rounding (bf16: bf16 rounding) either way.
    """
    global _FUSED
    old, _FUSED = _FUSED, bool(enabled)
    try:
        yield
    finally:
        _FUSED = old


# 32 MiB: glibc malloc's largest dynamic mmap threshold. Freed blocks up to this size are reused from the
# heap; larger tensors are fresh mmaps whose every page is faulted in and zeroed again on each allocation.
_MICRO_BATCH_BYTES: int | None = 32 * 2 ** 20


@contextlib.contextmanager
def micro_batch_bytes(limit: int | None):
    """Set how many samples a :class:`Block` processes at once on the fused CPU inference path: as many
    as keep its largest intermediate (the MLP hidden ``[g, N, 4C]``) within ``limit`` bytes, at least
    one; ``None`` runs the whole batch at once.

    Default 32 MiB. Under glibc's allocator the fresh page-faulted buffers of a large batch cost more
    than the bigger matrix products gain: for batches of 8 clips at 8x224 on a 2-core CPU, grouping made
    L/14 1.09x and B/14 1.06x faster than running every op on the whole batch
    (``benchmarks/bench_encoder.py --batch 8 --paths sdpa sdpa_whole_batch``). Samples are independent in
    a block, so grouping changes no result beyond float rounding.
    """
    global _MICRO_BATCH_BYTES
    if limit is not None and int(limit) < 1:
        raise ValueError(f"micro_batch_bytes limit must be >= 1 byte or None, got {limit!r}")
    old, _MICRO_BATCH_BYTES = _MICRO_BATCH_BYTES, (None if limit is None else int(limit))
    try:
        yield
    finally:
        _MICRO_BATCH_BYTES = old


def _fast_inference(x: torch.Tensor) -> bool:
    """The no-autograd CPU paths apply to ``x`` (fp32 or bf16; in-place and ``out=`` ops, which autograd
    cannot record)."""
    return (_FUSED and x.dtype in (torch.float32, torch.bfloat16) and x.device.type == "cpu"
            and not torch.is_grad_enabled())


def _rms_rstd(x: torch.Tensor, eps: float) -> torch.Tensor:
    """``1 / sqrt(mean(x^2, -1) + eps)`` ``[..., C] -> [..., 1]`` in ``x``'s dtype; one reduction pass
    (``||x||^2 / C``, accumulated in fp32 also for bf16). In bf16 only this small factor is rounded: CPU ops
    that mix bf16 and fp32 tensors copy the large one through fp32 and run several times slower."""
    norm = torch.linalg.vector_norm(x, dim=-1, keepdim=True)
    return norm.float().square_().div_(x.shape[-1]).add_(eps).rsqrt_().to(x.dtype)


class RMSNorm(nn.Module):
    """``w * x / sqrt(mean(x^2) + eps)``; statistics in fp32, result cast back before the scale (§1.4)."""

    def __init__(self, dim: int, eps: float = 1e-6):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if _fast_inference(x) and self.weight.dtype == x.dtype:
            return torch.mul(x, _rms_rstd(x, self.eps)).mul_(self.weight)
        dtype = x.dtype
        h = x.float()
        h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * h.to(dtype)


def make_norm(kind: str, dim: int, eps: float) -> nn.Module:
    if kind == "rmsnorm":
        return RMSNorm(dim, eps)
    if kind == "layernorm":
        return nn.LayerNorm(dim, eps=eps)
    raise ValueError(f"unknown norm {kind!r}")


class LayerScale(nn.Module):
    """Per-channel scale ``gamma``. With ``force_fp32`` the product is taken in fp32 (official default
    for stage 1/2; identical in fp32, differs only under bf16 autocast)."""

    def __init__(self, dim: int, init_values: float, force_fp32: bool = True):
        super().__init__()
        self.gamma = nn.Parameter(init_values * torch.ones(dim))
        self.force_fp32 = force_fp32

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.force_fp32:
            return (x.float() * self.gamma.float()).to(x.dtype)
        return x * self.gamma


class DropPath(nn.Module):
    """Stochastic depth: drop the whole residual branch per sample with probability ``p``."""

    def __init__(self, p: float = 0.0):
        super().__init__()
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.p == 0.0 or not self.training:
            return x
        keep = 1.0 - self.p
        shape = (x.shape[0],) + (1,) * (x.ndim - 1)
        return x * x.new_empty(shape).bernoulli_(keep).div_(keep)

    def extra_repr(self) -> str:
        return f"p={self.p}"


# activation name -> F.gelu's `approximate`. tanh-approximate GELU is what flash-attn's FusedMLP
# computes, i.e. what the released checkpoints were trained with (spec §1.5, P33); exact erf GELU is
# the official non-fused fallback.
_ACTIVATIONS = {"gelu_tanh": "tanh", "gelu": "none"}


_ONEDNN_GELU: dict[torch.dtype, bool] = {}


def _onednn_gelu_ok(dtype: torch.dtype = torch.float32) -> bool:
    """Whether this torch build runs oneDNN's linear with a fused GELU in ``dtype`` and gets F.gelu's numbers
    (checked once per dtype: builds without oneDNN, or platforms where the fused op is missing, use the
    separate pass)."""
    if dtype not in _ONEDNN_GELU:
        tol = {"rtol": 1e-4, "atol": 1e-5} if dtype == torch.float32 else {"rtol": 2e-2, "atol": 2e-2}
        try:
            g = torch.Generator().manual_seed(0)
            x, w, b = (torch.randn(*shape, generator=g).to(dtype) for shape in ((3, 8), (16, 8), (16,)))
            with torch.no_grad():
                ok = all(torch.allclose(torch.ops.mkldnn._linear_pointwise(x, w, b, "gelu", [], a).float(),
                                        F.gelu(F.linear(x, w, b), approximate=a).float(), **tol)
                         for a in ("tanh", "none"))
            _ONEDNN_GELU[dtype] = bool(torch.backends.mkldnn.is_available() and ok)
        except (RuntimeError, AttributeError, NotImplementedError):
            _ONEDNN_GELU[dtype] = False
    return _ONEDNN_GELU[dtype]


class Mlp(nn.Module):
    """``fc2(act(fc1(x)))``; keys ``fc1.*``, ``fc2.*``."""

    def __init__(self, dim: int, hidden: int, act: str = "gelu_tanh", out_dim: int | None = None):
        super().__init__()
        if act not in _ACTIVATIONS:
            raise ValueError(f"unknown activation {act!r}; choose from {sorted(_ACTIVATIONS)}")
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, out_dim or dim)
        self.act = act
        self._approximate = _ACTIVATIONS[act]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if _fast_inference(x) and _onednn_gelu_ok(x.dtype):
            # GELU inside oneDNN's fc1 kernel, while the rows are in cache: a separate pass over the
            # [B, N, 4C] hidden tensor costs ~5% of a B/14 forward on CPU in fp32, ~12% in bf16.
            h = torch.ops.mkldnn._linear_pointwise(x, self.fc1.weight, self.fc1.bias, "gelu", [], self._approximate)
            return self.fc2(h)
        return self.fc2(F.gelu(self.fc1(x), approximate=self._approximate))


_ATTENTION_IMPL = "sdpa"


@contextlib.contextmanager
def attention_impl(name: str):
    """Run :class:`Attention` through ``"sdpa"`` (default: ``scaled_dot_product_attention``, fused kernels) or
    ``"naive"`` (the explicit ``softmax(q k^T / sqrt(d)) v`` with the full attention matrix: how the official
    code runs when flash-attn is absent). Same weights, same result; the benchmark compares the two."""
    global _ATTENTION_IMPL
    if name not in ("sdpa", "naive"):
        raise ValueError(f"attention implementation must be 'sdpa' or 'naive', got {name!r}")
    old, _ATTENTION_IMPL = _ATTENTION_IMPL, name
    try:
        yield
    finally:
        _ATTENTION_IMPL = old


def _attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """``[B, h, N, d]`` x3 -> ``[B, h, N, d]``."""
    if _ATTENTION_IMPL == "naive":
        attn = (q * q.shape[-1] ** -0.5) @ k.transpose(-2, -1)
        return attn.softmax(dim=-1) @ v
    return F.scaled_dot_product_attention(q, k, v)


class Attention(nn.Module):
    """Multi-head self-attention through ``scaled_dot_product_attention``.

    * ``qkv_bias``: ``"none"`` (InternVideo2), ``"qkv"`` (a bias on the fused Linear) or ``"qv"``
      (VideoMAE: separate ``q_bias`` / ``v_bias`` parameters, zero bias for k).
    * ``qk_norm``: RMSNorm over the full width C of q and k, before the head split (§1.4 step 3).
    * ``layout_bug``: reproduce the official VideoMAE teacher's call of flash-attn with
      ``(B, h, N, d)`` tensors where ``(B, N, h, d)`` is expected (spec P1): attention then runs across
      heads for every token and the output is reshaped without transposing. Off by default.
    """

    def __init__(self, dim: int, num_heads: int, qkv_bias: str = "none", qk_norm: bool = True,
                 norm: str = "rmsnorm", norm_eps: float = 1e-6, layout_bug: bool = False):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"embed_dim {dim} is not divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.qkv = nn.Linear(dim, 3 * dim, bias=(qkv_bias == "qkv"))
        if qkv_bias == "qv":
            self.q_bias = nn.Parameter(torch.zeros(dim))
            self.v_bias = nn.Parameter(torch.zeros(dim))
        elif qkv_bias not in ("none", "qkv"):
            raise ValueError(f"qkv_bias must be 'none', 'qkv' or 'qv', got {qkv_bias!r}")
        self.qkv_bias_kind = qkv_bias
        self.q_norm = make_norm(norm, dim, norm_eps) if qk_norm else None
        self.k_norm = make_norm(norm, dim, norm_eps) if qk_norm else None
        self.proj = nn.Linear(dim, dim)
        self.layout_bug = layout_bug

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x [B, N, C] -> [B, N, C]``."""
        B, N, C = x.shape
        if self.qkv_bias_kind == "qv":
            bias = torch.cat([self.q_bias, torch.zeros_like(self.q_bias), self.v_bias])
            qkv = F.linear(x, self.qkv.weight, bias)
        else:
            qkv = self.qkv(x)
        q, k, v = qkv.split(C, dim=-1)  # rows [0:C] q, [C:2C] k, [2C:3C] v
        if (_ATTENTION_IMPL == "sdpa" and not self.layout_bug and _fast_inference(x)
                and (self.q_norm is None or isinstance(self.q_norm, RMSNorm))):
            # CPU SDPA runs ~10% faster on contiguous head-major q/k/v than on strided views of qkv; the
            # relayout copy is where q/k get normalised, so it costs no extra pass.
            q, k, v = (_to_heads(t, norm, self.num_heads) for t, norm in
                       ((q, self.q_norm), (k, self.k_norm), (v, None)))
        else:
            if self.q_norm is not None:
                q, k = self.q_norm(q), self.k_norm(k)
            h, d = self.num_heads, self.head_dim
            q, k, v = (t.view(B, N, h, d).transpose(1, 2) for t in (q, k, v))  # [B, h, N, d]
        if self.layout_bug:
            # flash-attn reads (B, h, N, d) as (B, S=h, H=N, d): attention over the h axis per token.
            o = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2))
            o = o.transpose(1, 2).contiguous().reshape(B, N, C)  # flash output (B, h, N, d), raw reshape
        else:
            o = _attend(q, k, v).transpose(1, 2).reshape(B, N, C)
        return self.proj(o)


def _to_heads(t: torch.Tensor, norm: RMSNorm | None, num_heads: int) -> torch.Tensor:
    """``[B, N, C]`` (any strides) -> contiguous ``[B, h, N, d]``, RMS-normalised over the full width C on
    the way when ``norm`` is given (§1.4 step 3: the statistics span all heads)."""
    B, N, C = t.shape
    out = t.new_empty(B, num_heads, N, C // num_heads)
    dst, src = out.transpose(1, 2), t.view(B, N, num_heads, C // num_heads)  # both [B, N, h, d]
    if norm is None:
        dst.copy_(src)
        return out
    torch.mul(src, norm.weight.view(num_heads, -1), out=dst)
    return out.mul_(_rms_rstd(t, norm.eps).view(B, 1, N, 1))


class Block(nn.Module):
    """Pre-norm transformer block (§1.4): ``x + DropPath(ls1(attn(norm1(x))))``, then the MLP branch.

    The fused (flash-attn) and non-fused official paths are the same maths; only the MLP activation
    differs (tanh vs erf GELU), which is the ``act`` option here.
    """

    def __init__(self, dim: int, num_heads: int, mlp_hidden: int, *, qkv_bias: str = "none",
                 qk_norm: bool = True, norm: str = "rmsnorm", norm_eps: float = 1e-6,
                 init_values: float = 1e-5, layerscale_force_fp32: bool = True, act: str = "gelu_tanh",
                 drop_path: float = 0.0, layout_bug: bool = False):
        super().__init__()
        self.norm1 = make_norm(norm, dim, norm_eps)
        self.attn = Attention(dim, num_heads, qkv_bias, qk_norm, norm, norm_eps, layout_bug)
        self.ls1 = LayerScale(dim, init_values, layerscale_force_fp32) if init_values else nn.Identity()
        self.norm2 = make_norm(norm, dim, norm_eps)
        self.mlp = Mlp(dim, mlp_hidden, act)
        self.ls2 = LayerScale(dim, init_values, layerscale_force_fp32) if init_values else nn.Identity()
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x [B, N, C] -> [B, N, C]``; on the fused CPU inference path in groups of samples (see
        :func:`micro_batch_bytes`)."""
        B = x.shape[0]
        if B > 1 and _MICRO_BATCH_BYTES and _fast_inference(x):
            per_sample = x.shape[1] * self.mlp.fc1.out_features * x.element_size()  # the MLP hidden
            group = max(1, _MICRO_BATCH_BYTES // per_sample)
            if group < B:
                out = torch.empty_like(x)
                for s in range(0, B, group):
                    out[s:s + group] = self._forward(x[s:s + group])
                return out
        return self._forward(x)

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        no_drop = isinstance(self.drop_path, nn.Identity) or not self.training
        if _FUSED and no_drop and isinstance(self.ls1, LayerScale) and (
                x.dtype == torch.float32 or (_fast_inference(x) and self.ls1.gamma.dtype == x.dtype)):
            # x + branch * gamma in one pass (in fp32 LayerScale's fp32 cast is a no-op; in bf16 the sum is
            # rounded once instead of the product and then the sum)
            x = torch.addcmul(x, self.attn(self.norm1(x)), self.ls1.gamma)
            return torch.addcmul(x, self.mlp(self.norm2(x)), self.ls2.gamma)
        x = x + self.drop_path(self.ls1(self.attn(self.norm1(x))))
        return x + self.drop_path(self.ls2(self.mlp(self.norm2(x))))


class CrossAttention(nn.Module):
    """Query/key/value projections without Linear bias, with separate ``{q,k,v}_bias`` parameters
    (official ``CrossAttention`` key layout), then ``proj`` to ``out_dim``."""

    def __init__(self, dim: int, num_heads: int, out_dim: int, qkv_bias: bool = True):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"attention-pool dim {dim} is not divisible by its {num_heads} heads")
        self.num_heads = num_heads
        self.q = nn.Linear(dim, dim, bias=False)
        self.k = nn.Linear(dim, dim, bias=False)
        self.v = nn.Linear(dim, dim, bias=False)
        if qkv_bias:
            self.q_bias = nn.Parameter(torch.zeros(dim))
            self.k_bias = nn.Parameter(torch.zeros(dim))
            self.v_bias = nn.Parameter(torch.zeros(dim))
        else:
            self.q_bias = self.k_bias = self.v_bias = None
        self.proj = nn.Linear(dim, out_dim)

    def forward(self, q_in: torch.Tensor, k_in: torch.Tensor, v_in: torch.Tensor,
                return_attn: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
        B, Nq, C = q_in.shape
        h = self.num_heads
        q = F.linear(q_in, self.q.weight, self.q_bias).view(B, Nq, h, -1).transpose(1, 2)
        k = F.linear(k_in, self.k.weight, self.k_bias).view(B, k_in.shape[1], h, -1).transpose(1, 2)
        v = F.linear(v_in, self.v.weight, self.v_bias).view(B, v_in.shape[1], h, -1).transpose(1, 2)
        attn = None
        if return_attn:
            weights = ((q * q.shape[-1] ** -0.5) @ k.transpose(-2, -1)).softmax(dim=-1)  # [B, h, Nq, Nk]
            o = weights @ v
            attn = weights.mean(dim=1)  # head-averaged, [B, Nq, Nk]
        else:
            o = F.scaled_dot_product_attention(q, k, v)
        return self.proj(o.transpose(1, 2).reshape(B, Nq, C)), attn


class AttentionPool(nn.Module):
    """The ``clip_projector`` (§1.6): one query = LayerNorm(mean of all tokens, cls included) attends
    to LayerNorm'd tokens; no residual, no MLP. ``[B, N, C] -> [B, out_dim]``.

    ``return_attn=True`` also returns the head-averaged attention of the query ``[B, N]`` over all N
    keys (cls included), used by attention-guided masking (teachers, §5.2).
    """

    def __init__(self, dim: int, num_heads: int, out_dim: int, eps: float = 1e-5):
        super().__init__()
        self.norm1_q = nn.LayerNorm(dim, eps=eps)
        self.norm1_k = nn.LayerNorm(dim, eps=eps)
        self.norm1_v = nn.LayerNorm(dim, eps=eps)
        self.cross_attn = CrossAttention(dim, num_heads, out_dim, qkv_bias=True)

    def forward(self, x: torch.Tensor, return_attn: bool = False):
        q = self.norm1_q(x.mean(dim=1, keepdim=True))
        out, attn = self.cross_attn(q, self.norm1_k(x), self.norm1_v(x), return_attn=return_attn)
        out = out.squeeze(1)
        if return_attn:
            return out, attn[:, 0]
        return out


class LinearDecoder(nn.Module):
    """``l2(LayerNorm(Linear(x)))`` (official ``Linear_Decoder``; eps 1e-5)."""

    def __init__(self, in_dim: int, out_dim: int, norm_type: str = "l2"):
        super().__init__()
        self.head = nn.Linear(in_dim, out_dim)
        self.norm = nn.LayerNorm(out_dim, eps=1e-5)
        self.norm_type = _check_norm_type(norm_type)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _maybe_l2(self.norm(self.head(x)), self.norm_type)


class MLPDecoder(nn.Module):
    """``l2(LayerNorm(Linear(GELU(Linear(x)))))`` (official ``MLP_Decoder``; exact GELU)."""

    def __init__(self, in_dim: int, out_dim: int, norm_type: str = "l2"):
        super().__init__()
        self.head = nn.Sequential(nn.Linear(in_dim, in_dim), nn.GELU(), nn.Linear(in_dim, out_dim))
        self.norm = nn.LayerNorm(out_dim, eps=1e-5)
        self.norm_type = _check_norm_type(norm_type)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _maybe_l2(self.norm(self.head(x)), self.norm_type)


DECODERS = {"linear": LinearDecoder, "mlp": MLPDecoder}


def _check_norm_type(norm_type: str) -> str:
    if norm_type not in ("l2", "none"):
        raise ValueError(f"decoder norm type must be 'l2' or 'none', got {norm_type!r}")
    return norm_type


def _maybe_l2(x: torch.Tensor, norm_type: str) -> torch.Tensor:
    return x / x.norm(dim=-1, keepdim=True) if norm_type == "l2" else x


def trunc_normal_(t: torch.Tensor, std: float = 0.02) -> torch.Tensor:
    """Truncated normal in [-2std, 2std] (timm's default bounds are +-2 absolute; with std 0.02 the
    difference is immaterial)."""
    return nn.init.trunc_normal_(t, std=std, a=-2 * std, b=2 * std)


def init_vit_weights(module: nn.Module) -> None:
    """Official init (§1.7): trunc-normal(0.02) Linear weights, zero biases, LayerNorm (1, 0)."""
    for m in module.modules():
        if isinstance(m, nn.Linear):
            trunc_normal_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.LayerNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


def rescale_blocks(blocks: nn.ModuleList) -> None:
    """``fix_init_weight``: divide attn.proj and mlp.fc2 weights of block i (1-based) by sqrt(2i)."""
    with torch.no_grad():
        for i, blk in enumerate(blocks, start=1):
            blk.attn.proj.weight.div_(math.sqrt(2.0 * i))
            blk.mlp.fc2.weight.div_(math.sqrt(2.0 * i))
