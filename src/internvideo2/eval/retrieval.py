"""Zero-shot evaluation protocols of the stage-2 model (official-spec §7.5-7.6, P23-P24).

* Retrieval (text->video and video->text) under three scorers reported side by side:
  ``sim`` (cosine of the projected features, temperature 1), ``dsl`` (dual softmax, transductive over
  the test set) and ``match`` (the ITM head re-scores each query's top ``k_test`` candidates chosen by
  cosine; the ITM logit of class 1 *replaces* the score, -100 elsewhere).
* Zero-shot classification: class names x prompt templates, per-row-softmax probabilities averaged
  over templates (stage-2 behaviour) or raw cosines averaged (CLIP behaviour).
* Multiple-choice retrieval: ``softmax(cos / temp)`` over each item's options; first-answer and any-answer
  accuracy, and the Charades-MC mean average precision (``torchnet`` mAPMeter).

Inputs are in-memory: ``videos`` is a float tensor ``[N, 3, T, H, W]`` (already normalised) or an
iterable of such batches; texts are strings.
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from ..data.text import ACTION_PROMPTS, pre_text
from ..errors import ConfigError
from .metrics import dual_softmax, ensemble_templates, itm_eval, itm_rerank_merge, mean_class_accuracy, topk_accuracy

# The 16 prompts of the official zero-shot action recognition (``kinetics_templates_action_clip``).
KINETICS_TEMPLATES = ACTION_PROMPTS


@dataclass
class VideoBank:
    """Encoded videos: normalised features ``[Nv, D]`` and vision tokens ``[Nv, 1+N, C]`` (for ITM)."""

    feats: Tensor
    tokens: Tensor | None


@dataclass
class TextBank:
    """Encoded texts: normalised features ``[Nt, D]``, text-mode hidden states and attention masks."""

    feats: Tensor
    hidden: Tensor | None
    atts: Tensor | None


def _batches(videos: Tensor | Iterable[Tensor], batch_size: int):
    if isinstance(videos, Tensor):
        for i in range(0, videos.shape[0], batch_size):
            yield videos[i:i + batch_size]
    else:
        yield from videos


def _check_text_side(model) -> None:
    if not model.has_text:
        raise TypeError(f"{type(model).__name__} ({model.model_type!r}) has no text side; video-text protocols "
                        "need a stage-2 or CLIP model")


@torch.no_grad()
def encode_videos(model, videos: Tensor | Iterable[Tensor], batch_size: int = 32,
                  keep_tokens: bool = True) -> VideoBank:
    """The video side of a video-text model (``model.encode_video``) over normalised videos ``[N, 3, T, H, W]``
    (unmasked, eval mode). Tokens are kept for ITM re-ranking when the model has an ITM head."""
    _check_text_side(model)
    model.eval()
    keep_tokens = keep_tokens and model.has_itm
    feats, tokens = [], []
    for x in _batches(videos, batch_size):
        emb = model.encode_video(x)
        feats.append(emb.embeds.float().cpu())
        if keep_tokens:
            tokens.append(emb.tokens.cpu())
    return VideoBank(torch.cat(feats), torch.cat(tokens) if tokens else None)


@torch.no_grad()
def encode_texts(model, texts: Sequence[str], batch_size: int = 256, keep_hidden: bool = True) -> TextBank:
    """The text side (``model.encode_texts``: text-only layers, the model's own tokenizer) over strings."""
    _check_text_side(model)
    model.eval()
    keep_hidden = keep_hidden and model.has_itm
    feats, hidden, atts = [], [], []
    for i in range(0, len(texts), batch_size):
        emb = model.encode_texts(list(texts[i:i + batch_size]))
        feats.append(emb.embeds.float().cpu())
        if keep_hidden:
            hidden.append(emb.hidden.cpu())
            atts.append(emb.attention_mask.cpu())
    return TextBank(torch.cat(feats), torch.cat(hidden) if hidden else None, torch.cat(atts) if atts else None)


@torch.no_grad()
def itm_topk_scores(model, vbank: VideoBank, tbank: TextBank, sim: Tensor, k: int, query: str,
                    batch_size: int = 64) -> Tensor:
    """ITM logit (class 1) for each query's top-k candidates by ``sim``. ``query="video"``: rows of
    ``sim`` are videos and candidates texts; ``"text"``: the transpose. Returns ``[Nq, k']``."""
    dev = next(model.parameters()).device
    k = min(k, sim.shape[1])
    top = sim.topk(k, dim=1).indices
    rows = torch.arange(sim.shape[0])[:, None].expand(-1, k).reshape(-1)
    cols = top.reshape(-1)
    vid, txt = (rows, cols) if query == "video" else (cols, rows)
    scores = []
    for i in range(0, len(vid), batch_size):
        v = vbank.tokens[vid[i:i + batch_size]].to(dev)
        h = tbank.hidden[txt[i:i + batch_size]].to(dev)
        a = tbank.atts[txt[i:i + batch_size]].to(dev)
        scores.append(model.itm_logits(v, h, a)[:, 1].float().cpu())
    return torch.cat(scores).view(sim.shape[0], k)


def retrieval_scores(model, vbank: VideoBank, tbank: TextBank, k_test: int = 128,
                     use_itm: bool = True) -> dict[str, tuple[Tensor, Tensor]]:
    """Score matrices ``{scorer: (v2t [Nv, Nt], t2v [Nt, Nv])}`` for ``sim``, ``dsl`` and ``match``."""
    sim = vbank.feats @ tbank.feats.T
    out = {"sim": (sim, sim.T.contiguous())}
    out["dsl"] = dual_softmax(sim)
    if use_itm and model.has_itm and vbank.tokens is not None and tbank.hidden is not None:
        v2t = itm_rerank_merge(sim, itm_topk_scores(model, vbank, tbank, sim, k_test, "video"), k_test)
        t2v = itm_rerank_merge(sim.T, itm_topk_scores(model, vbank, tbank, sim.T.contiguous(), k_test, "text"), k_test)
        out["match"] = (v2t, t2v)
    return out


def evaluate_retrieval(model, videos: Tensor | Iterable[Tensor], texts: Sequence[str], txt2vid: Sequence,
                       vid2txt: Sequence, k_test: int = 128, use_itm: bool = True, batch_size: int = 32) -> dict:
    """Text-video retrieval, all three scorers side by side.

    Returns ``{"sim": metrics, "dsl": metrics, "match": metrics, "num_videos", "num_texts", "k_test"}`` where
    metrics are the official ``itm_eval`` keys (``t2v_r1`` ... in percent) plus MdR/MnR.
    """
    vbank = encode_videos(model, videos, batch_size, keep_tokens=use_itm)
    tbank = encode_texts(model, texts, keep_hidden=use_itm)
    result: dict = {"num_videos": len(vbank.feats), "num_texts": len(tbank.feats), "k_test": k_test}
    for name, (v2t, t2v) in retrieval_scores(model, vbank, tbank, k_test, use_itm).items():
        result[name] = itm_eval(v2t, t2v, list(txt2vid), list(vid2txt), round_digits=None)
    return result


def class_texts(class_names: Sequence[str], templates: Sequence[str] = KINETICS_TEMPLATES) -> list[str]:
    """Class-major prompt list: text ``c * len(templates) + t`` is class ``c`` in template ``t``."""
    return [pre_text(t.format(c)) for c in class_names for t in templates]


def evaluate_zeroshot_classification(model, videos: Tensor | Iterable[Tensor], labels: Sequence[int],
                                     class_names: Sequence[str], templates: Sequence[str] = KINETICS_TEMPLATES,
                                     mode: str = "softmax_mean", batch_size: int = 32,
                                     vbank: VideoBank | None = None) -> dict:
    """Zero-shot action recognition: top-1/top-5 and mean-class accuracy (percent).

    ``mode="softmax_mean"`` averages per-row-softmax probabilities over templates (stage-2
    ``retrieval_utils``); ``"cosine_mean"`` averages raw cosines (``tasks_clip``).
    """
    vbank = vbank or encode_videos(model, videos, batch_size, keep_tokens=False)
    tbank = encode_texts(model, class_texts(class_names, templates), keep_hidden=False)
    scores = ensemble_templates(vbank.feats @ tbank.feats.T, len(templates), mode=mode)
    acc = topk_accuracy(scores, list(labels), ks=(1, 5))
    return {"top1": acc["top1"], "top5": acc["top5"],
            "mean_class_accuracy": mean_class_accuracy(scores, list(labels), len(class_names)),
            "num_videos": len(labels), "num_classes": len(class_names), "num_templates": len(templates),
            "mode": mode, "chance_top1": 100.0 / len(class_names), "scores": scores}


def model_temperature(model) -> float:
    """The learned contrastive temperature of a video-text model (``model.temp``, the VTC temperature of
    the stage-2 and CLIP families), as the official ``get_sim_for_each_question`` divides by it."""
    temp = getattr(model, "temp", None)
    if temp is None:
        raise ConfigError("temperature", f"{type(model).__name__} has no learned temperature 'temp'; give one")
    return float(temp.detach().float().item() if isinstance(temp, Tensor) else temp)


def multiple_choice_scores(vfeats: Tensor, tfeats: Tensor, option_rows: Sequence[Sequence[int]],
                           temperature: float) -> list[Tensor]:
    """Per question, ``softmax(cos(video, options) / temperature)`` over its options (official
    ``get_sim_for_each_question``, fp32). ``vfeats`` ``[N, D]`` and ``tfeats`` ``[M, D]`` are L2-normalised;
    ``option_rows[i]`` lists the rows of ``tfeats`` holding question i's options in order. Returns N
    tensors ``[n_options_i]``."""
    if not temperature > 0:
        raise ConfigError("temperature", f"must be > 0, got {temperature}")
    out = []
    for v, rows in zip(vfeats.float(), option_rows):
        sim = tfeats[list(rows)].float() @ v                      # [n_options]
        out.append(torch.softmax(sim / temperature, dim=0))
    return out


def evaluate_multiple_choice(model, videos: Tensor | Iterable[Tensor], options: Sequence[Sequence[str]],
                             answers: Sequence[int | Sequence[int]], batch_size: int = 32,
                             temperature: float | None = None) -> dict:
    """Multiple-choice retrieval (official ``tasks_clip/retrieval_mc.py`` and ``retrieval_mc2.py``).

    Each video's options are scored ``softmax(cos / temp)`` (``temperature``; None: the model's learned
    ``temp``); the prediction is the argmax (first maximum on ties). ``answers[i]`` is an option index or a
    list of them (Charades-MC: several right options; the first listed is the "first answer").
    Options are encoded as given (apply ``pre_text`` first to match the official datasets); repeated option
    strings are encoded once.

    Returns ``accuracy`` (= ``first_answer_accuracy``: argmax == the first answer; the official accuracy
    with one answer per question), ``any_answer_accuracy`` (argmax is any right option), ``map`` (the
    official Charades-MC mean average precision, ``torchnet`` mAPMeter over the ``[N, K]`` scores, in percent;
    None when the questions have different option counts), ``options_shared`` (every question has the same
    option list, i.e. the score columns are classes and ``map`` is a per-class mAP), ``num_items``,
    ``num_multi_answer``, ``temperature`` and ``chance`` (mean of 1 / options).
    """
    from .metrics import multiple_choice_metrics

    if len(options) != len(answers):
        raise ConfigError("answers", f"{len(answers)} answers for {len(options)} questions")
    temp = model_temperature(model) if temperature is None else float(temperature)
    vbank = encode_videos(model, videos, batch_size, keep_tokens=False)
    if len(vbank.feats) != len(options):
        raise ConfigError("videos", f"{len(vbank.feats)} videos for {len(options)} questions")
    unique: dict[str, int] = {}
    rows = [[unique.setdefault(o, len(unique)) for o in opts] for opts in options]
    tfeats = encode_texts(model, list(unique), keep_hidden=False).feats
    scores = multiple_choice_scores(vbank.feats, tfeats, rows, temp)
    m = multiple_choice_metrics([s.numpy() for s in scores], answers)
    n = m.num_items
    return {"accuracy": m.first_answer_accuracy, "first_answer_accuracy": m.first_answer_accuracy,
            "any_answer_accuracy": m.any_answer_accuracy, "map": m.map,
            "options_shared": all(list(o) == list(options[0]) for o in options),
            "num_items": n, "num_multi_answer": m.num_multi_answer, "temperature": temp,
            "chance": 100.0 * sum(1.0 / len(o) for o in options) / n}
