"""Training objectives of InternVideo2 (official-spec §4.4, §5.3, §5.5).

* :func:`vtc_loss` — video-text contrastive over the *global* batch (features gathered across ranks with
  gradients), positives = equal sample index.
* :func:`vtm_loss` — video-text matching through the BERT fusion layers with hard negatives sampled
  from the similarities (local batch).
* :func:`mlm_mask` / :func:`mlm_loss` — masked language modelling conditioned on video tokens.
* :func:`uta_loss`, :func:`cosine_alignment_loss`, :func:`stage1_loss`, :func:`distill_loss` — the
  ``2 - 2cos`` alignment terms of stage 1, distillation and stage-2 UTA.
* :func:`pool_text` — the sentence feature of text hidden states (what VTC and the ITM head read; the
  models' text paths use the same function).

Random choices take an explicit ``torch.Generator`` so that a resumed run repeats them exactly.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

Gather = Callable[[Tensor], Tensor]


def pool_text(hidden: Tensor, attention_mask: Tensor, mode: str = "cls") -> Tensor:
    """Sentence feature ``[N, H]`` from hidden states ``[N, L, H]``: the [CLS] state (``cls``, official
    stage 2), the mean over real tokens (``mean``, sentence-transformers such as MiniLM) or the last real
    token (``last``, the official LLaMA CLIP tower's EOS)."""
    if mode == "cls":
        return hidden[:, 0]
    if mode == "mean":
        m = attention_mask.unsqueeze(-1).to(hidden.dtype)
        return (hidden * m).sum(1) / m.sum(1).clamp_min(1)
    if mode == "last":
        last = attention_mask.sum(1).clamp_min(1) - 1
        return hidden[torch.arange(hidden.shape[0], device=hidden.device), last]
    raise ValueError(f"unknown text pooling {mode!r}; use cls, mean or last")



def get_sim(v: Tensor, t: Tensor, temp: float | Tensor = 1.0, agg: str = "mean") -> tuple[Tensor, Tensor]:
    """Cosine similarities / temp. ``v [Nv, D]`` (or ``[Nv, K, D]``), ``t [Nt, D]`` (or ``[Nt, K, D]``).

    Returns ``(sim_v2t [Nv, Nt], sim_t2v [Nt, Nv])``. With several vectors per item (3-D input) the
    per-vector similarities are averaged (``agg="mean"``) or maxed over that axis.
    """
    v, t = F.normalize(v, dim=-1), F.normalize(t, dim=-1)
    if v.ndim == 2 and t.ndim == 2:
        s = v @ t.T
    elif v.ndim == 3 and t.ndim == 2:
        s = torch.einsum("vkd,td->vtk", v, t)
        s = s.mean(-1) if agg == "mean" else s.amax(-1)
    elif v.ndim == 2 and t.ndim == 3:
        s = torch.einsum("vd,tkd->vtk", v, t)
        s = s.mean(-1) if agg == "mean" else s.amax(-1)
    else:
        raise ValueError(f"unsupported shapes {tuple(v.shape)} / {tuple(t.shape)}")
    s = s / temp
    return s, s.T


def vtc_loss(v: Tensor, t: Tensor, idx: Tensor, temp: float | Tensor, gather: Gather | None = None) -> Tensor:
    """Video-text contrastive loss (spec §4.4).

    ``v [B, D]``, ``t [B, D]`` projected features (normalised here), ``idx [B]`` sample indices. With
    ``gather`` (a differentiable all-gather) the loss is computed on the global batch N:
    ``Y_ij = 1[idx_i = idx_j] / sum_k 1[idx_i = idx_k]``, ``L = (CE(S, Y) + CE(S^T, Y)) / 2``, mean
    over the N rows.
    """
    if gather is not None:
        v, t = gather(v), gather(t)
        with torch.no_grad():
            idx = gather(idx)
    sim_v2t, sim_t2v = get_sim(v, t, temp)
    pos = (idx[:, None] == idx[None, :]).to(sim_v2t.dtype)
    targets = pos / pos.sum(dim=1, keepdim=True)
    loss_v2t = -(F.log_softmax(sim_v2t, dim=1) * targets).sum(1).mean()
    loss_t2v = -(F.log_softmax(sim_t2v, dim=1) * targets).sum(1).mean()
    return (loss_v2t + loss_t2v) / 2


def sample_negatives(weights: Tensor, positive: Tensor, generator: torch.Generator | None = None,
                     hard: bool = True) -> tuple[Tensor, Tensor]:
    """One negative column per row: ``(columns [B], valid [B])``.

    ``weights [B, B]``: the hard-negative weights (official: the softmax similarities); ``positive [B, B]``
    marks the pairs that share a sample index, never drawn. ``hard``: multinomial on the weights (official
    hard-negative mining); else uniform over every non-positive column. A row whose weights all underflowed
    to zero falls back to uniform over its non-positives; a row without any non-positive column (a batch of
    one video) has no negative: ``valid`` is False there and the caller drops the pair.
    """
    allowed = ~positive
    w = weights.float().clone()
    w[~torch.isfinite(w)] = 0.01  # official: NaN/inf weights replaced by 0.01
    w = w.masked_fill(positive, 0.0)
    if not hard:
        w = allowed.to(w.dtype)
    valid = allowed.any(1)
    dead = (w.sum(1) <= 0) & valid
    w[dead] = allowed[dead].to(w.dtype)
    w[~valid] = 1.0  # anything: the pair is dropped
    return torch.multinomial(w, 1, generator=generator).squeeze(1), valid


def vtm_loss(text_encoder: nn.Module, itm_head: nn.Module, vision_embeds: Tensor, text_embeds: Tensor,
             text_atts: Tensor, v_feat: Tensor, t_feat: Tensor, idx: Tensor, temp: float | Tensor = 1.0,
             hard_neg: bool = True, generator: torch.Generator | None = None,
             vision_atts: Tensor | None = None, pool: str = "cls") -> tuple[Tensor, Tensor, Tensor]:
    """Video-text matching (spec §4.4), on the local batch.

    Args:
        text_encoder: BERT whose ``forward(encoder_embeds=, attention_mask=, encoder_hidden_states=,
            encoder_attention_mask=, mode="fusion")`` runs the cross-attention layers.
        itm_head: ``Linear(H, 2)``; class 1 = match.
        pool: the fused feature the head reads: the [CLS] state (``cls``, official) or the mean over real
            text tokens (``mean``, for towers whose [CLS] state carries no information).
        vision_embeds: ``[B, Nv, Cv]`` vision tokens; text_embeds ``[B, L, H]`` text-mode hidden states;
        text_atts: ``[B, L]``; v_feat / t_feat: ``[B, D]`` projected features for the negative weights.
    Returns:
        ``(loss, logits [3B, 2], labels [3B])`` for the pairs (v_i, t_i)=1, (v_neg(i), t_i)=0, (v_i, t_neg(i))=0
        (fewer rows when some sample has no negative in the batch).
    """
    B = vision_embeds.shape[0]
    with torch.no_grad():
        sim_v2t, sim_t2v = get_sim(v_feat, t_feat, temp)
        positive = idx[:, None] == idx[None, :]
        w_v2t = F.softmax(sim_v2t.float() + 1e-4, dim=1)
        w_t2v = F.softmax(sim_t2v.float() + 1e-4, dim=1)
        neg_video_for_text, ok_t = sample_negatives(w_t2v, positive, generator, hard_neg)  # [B]
        neg_text_for_video, ok_v = sample_negatives(w_v2t, positive, generator, hard_neg)
    vision_all = torch.cat([vision_embeds, vision_embeds[neg_video_for_text], vision_embeds], dim=0)
    text_all = torch.cat([text_embeds, text_embeds, text_embeds[neg_text_for_video]], dim=0)
    atts_all = torch.cat([text_atts, text_atts, text_atts[neg_text_for_video]], dim=0)
    v_atts = None
    if vision_atts is not None:
        v_atts = torch.cat([vision_atts, vision_atts[neg_video_for_text], vision_atts], dim=0)
    labels = torch.cat([torch.ones(B, dtype=torch.long), torch.zeros(2 * B, dtype=torch.long)])
    keep = torch.cat([torch.ones(B, dtype=torch.bool), ok_t.cpu(), ok_v.cpu()])
    if not keep.all():  # pairs without a true negative (every sample of the batch is the same video)
        sel = keep.nonzero().squeeze(1).to(vision_all.device)
        vision_all, text_all, atts_all = vision_all[sel], text_all[sel], atts_all[sel]
        v_atts = v_atts[sel] if v_atts is not None else None
        labels = labels[keep]
    hidden = text_encoder(encoder_embeds=text_all, attention_mask=atts_all, encoder_hidden_states=vision_all,
                          encoder_attention_mask=v_atts, mode="fusion")
    logits = itm_head(pool_text(hidden, atts_all, pool))
    labels = labels.to(logits.device)
    return F.cross_entropy(logits.float(), labels), logits, labels


@dataclass(frozen=True)
class SpecialTokens:
    """BERT uncased ids: pad 0, [CLS] 101, [SEP] 102, [MASK] 103."""

    pad: int = 0
    cls: int = 101
    sep: int = 102
    mask: int = 103


def mlm_mask(input_ids: Tensor, vocab_size: int, prob: float = 0.5, special: SpecialTokens = SpecialTokens(),
             generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
    """Official MLM corruption (spec §4.4): each token is chosen with ``prob`` (released configs 0.5),
    never pad or [CLS] ([SEP] can be); chosen tokens become [MASK] 80%, a random id 10%, unchanged 10%.
    Returns ``(masked_ids, labels)`` with labels -100 where not chosen."""
    dev = input_ids.device
    rand = lambda: torch.rand(input_ids.shape, generator=generator).to(dev)
    chosen = (rand() < prob) & (input_ids != special.pad) & (input_ids != special.cls)
    labels = torch.where(chosen, input_ids, torch.full_like(input_ids, -100))
    ids = input_ids.clone()
    to_mask = chosen & (rand() < 0.8)
    ids[to_mask] = special.mask
    to_random = chosen & ~to_mask & (rand() < 0.5)
    random_ids = torch.randint(vocab_size, input_ids.shape, generator=generator).to(dev)
    ids[to_random] = random_ids[to_random]
    return ids, labels


def mlm_loss(mlm_model: nn.Module, input_ids: Tensor, attention_mask: Tensor, vision_embeds: Tensor,
             prob: float = 0.5, generator: torch.Generator | None = None,
             vision_atts: Tensor | None = None) -> Tensor:
    """MLM conditioned on video: ``h = bert(masked, mode="text")`` then fusion layers + MLM head on
    ``h`` with cross-attention to the vision tokens (spec §4.4). ``mlm_model``: BertForMaskedLM."""
    ids, labels = mlm_mask(input_ids, mlm_model.config.vocab_size, prob, generator=generator)
    if (labels == -100).all():  # nothing chosen (tiny batch): no signal, keep the graph connected
        return vision_embeds.sum() * 0.0
    h = mlm_model.bert(ids, attention_mask, mode="text")
    out = mlm_model(encoder_embeds=h, attention_mask=attention_mask, encoder_hidden_states=vision_embeds,
                    encoder_attention_mask=vision_atts, labels=labels, mode="fusion")
    return out.loss


def cosine_alignment_loss(student: Tensor, target: Tensor) -> Tensor:
    """``mean(2 - 2 <s, t>)`` over all leading dims; both sides unit-norm (squared L2 distance)."""
    return (2 - 2 * (student * target).sum(dim=-1)).mean()


def uta_loss(s_mid: Tensor, t_mid: Tensor, s_final: Tensor | None = None, t_final: Tensor | None = None,
             ratios: tuple[float, float] = (1.0, 1.0)) -> Tensor:
    """Stage-2 teacher alignment (``new_UTA_Loss``): ``r0 L(mid) + r1 L(final)`` (final term optional)."""
    loss = ratios[0] * cosine_alignment_loss(s_mid, t_mid)
    if s_final is not None and t_final is not None and ratios[1]:
        loss = loss + ratios[1] * cosine_alignment_loss(s_final, t_final)
    return loss


def visible_targets(teacher_tokens: Tensor, mask: Tensor) -> Tensor:
    """Restrict teacher tokens ``[K, B, N', C]`` to the student's visible tokens. ``mask [B, N']`` True =
    dropped (use the mask with its cls column for cls-carrying targets, without it otherwise)."""
    K, B, _, C = teacher_tokens.shape
    return teacher_tokens[:, ~mask].view(K, B, -1, C)


def stage1_loss(clip_align: Tensor, clip_target: Tensor, final_align: Tensor | None, final_target: Tensor | None,
                mae_align: Tensor | None = None, mae_target: Tensor | None = None,
                clip_ratio: tuple[float, float] = (1.0, 1.0), mae_ratio: float = 1.0) -> dict[str, Tensor]:
    """Stage-1 objective (spec §5.3). Student outputs and targets are unit-norm and already restricted
    to visible tokens: ``clip_* [K, B, 1+N_vis, D]``, ``final_* [B, D]``, ``mae_* [K', B, N_vis, D']``.
    Returns the weighted terms and their sum under ``loss``."""
    terms = {"loss_clip": clip_ratio[0] * cosine_alignment_loss(clip_align, clip_target)}
    if final_align is not None and final_target is not None and clip_ratio[1]:
        terms["loss_clip_final"] = clip_ratio[1] * cosine_alignment_loss(final_align, final_target)
    if mae_align is not None and mae_target is not None and mae_ratio:
        terms["loss_mae"] = mae_ratio * cosine_alignment_loss(mae_align, mae_target)
    terms["loss"] = sum(terms.values())
    return terms


def distill_loss(clip_align: Tensor, clip_target: Tensor, final_align: Tensor, final_target: Tensor,
                 ratio: tuple[float, float] = (1.0, 1.0)) -> dict[str, Tensor]:
    """Distillation (spec §5.5): middle layers + final feature, no MAE term."""
    return stage1_loss(clip_align, clip_target, final_align, final_target, clip_ratio=ratio)
