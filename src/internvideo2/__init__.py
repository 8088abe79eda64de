"""internvideo2: InternVideo2 video foundation models in clean PyTorch.

Quick start::

    import internvideo2
    model = internvideo2.load_model("1B_ft_k710_f8.pth")        # official file, detected, strict
    model = internvideo2.load_model("runs/demo/stage2")          # a folder saved with save_pretrained
    emb = model.encode_video(frames_uint8_THWC)                  # VideoEmbedding: .pooled [1, D], .tokens [1, 1+N, C]
    txt = model.encode_texts(["a red star moves left"])          # TextEmbedding (models with a text tower)
    score = emb.embeds @ txt.embeds.T                            # both unit-norm in the shared space
    tiny = internvideo2.create_model("tiny", "classifier", num_classes=10)   # random init, explicitly

Public names are imported lazily so that ``import internvideo2`` stays cheap.
"""
from __future__ import annotations

import importlib

__version__ = "0.1.0"

_LAZY = {
    "load_model": "internvideo2.checkpoint.loader",
    "create_model": "internvideo2.models.registry",
    "save_pretrained": "internvideo2.checkpoint.pretrained",
    "from_pretrained": "internvideo2.checkpoint.pretrained",
    "vision_config": "internvideo2.models.config",
    "list_presets": "internvideo2.models.config",
    "VisionConfig": "internvideo2.models.config",
    "ClassifierConfig": "internvideo2.models.config",
    "PretrainConfig": "internvideo2.models.config",
    "TeacherConfig": "internvideo2.models.config",
    "load_state_dict_strict": "internvideo2.checkpoint.io",
    "VideoEmbedding": "internvideo2.models.api",
    "TextEmbedding": "internvideo2.models.api",
}

__all__ = sorted(_LAZY) + ["__version__"]


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'internvideo2' has no attribute {name!r}")


def __dir__():
    return __all__
