"""Registry of model types (for our saved format and ``create_model``) and preset-based builders."""
from __future__ import annotations

import importlib
from typing import Any

from torch import nn

from ..errors import ConfigError
from .config import ClassifierConfig, PretrainConfig, TeacherConfig, vision_config

# model_type -> "module:Class"; imported lazily so text/audio/stage-2 models cost nothing until used
_MODEL_TYPES: dict[str, str] = {
    "vision": "internvideo2.models.vision:VisionTransformer",
    "classifier": "internvideo2.models.variants:InternVideo2Classifier",
    "pretrain": "internvideo2.models.variants:InternVideo2Pretrain",
    "teacher": "internvideo2.models.variants:TeacherModel",
    "stage2": "internvideo2.models.stage2:InternVideo2Stage2",
    "clip": "internvideo2.models.clip:InternVideo2CLIP",
    "image_text_teacher": "internvideo2.models.teachers:ImageTextTeacher",
    "videomae_teacher": "internvideo2.models.teachers:VideoMAETeacher",
}


def register_model_type(model_type: str, target: str) -> None:
    """Register ``"package.module:Class"`` under ``model_type`` (the class needs ``config_class``)."""
    _MODEL_TYPES[model_type] = target


def model_class(model_type: str) -> type[nn.Module]:
    if model_type not in _MODEL_TYPES:
        raise ConfigError("model_type", f"unknown model type {model_type!r}; known: {sorted(_MODEL_TYPES)}")
    module, name = _MODEL_TYPES[model_type].split(":")
    return getattr(importlib.import_module(module), name)


def model_types() -> list[str]:
    return sorted(_MODEL_TYPES)


def build_model(model_type: str, config: Any) -> nn.Module:
    """Instantiate a model type from its config object or a plain dict of it."""
    cls = model_class(model_type)
    if isinstance(config, dict):
        config = cls.config_class(**config)
    return cls(config)


def create_model(preset: str = "tiny", model_type: str = "vision", **overrides: Any) -> nn.Module:
    """A randomly initialised model of a preset (explicit: this never pretends to be pretrained).

    Vision overrides (``num_frames``, ``img_size`` ...) go to the backbone; variant overrides
    (``num_classes``, ``clip_return_layer`` ...) to the variant config. Examples::

        create_model("internvideo2-1b", "classifier", num_classes=400, num_frames=16)
        create_model("tiny", "pretrain", clip_teacher_embed_dim=48, mae_return_layer=2)
    """
    cls = model_class(model_type)
    from dataclasses import fields

    vision_fields = {f.name for f in fields(vision_config("tiny"))}
    v_over = {k: v for k, v in overrides.items() if k in vision_fields}
    rest = {k: v for k, v in overrides.items() if k not in vision_fields}
    vis = vision_config(preset, **v_over)
    if cls.config_class.__name__ == "VisionConfig":
        if rest:
            raise ConfigError(sorted(rest)[0], "not a field of VisionConfig")
        return cls(vis)
    known = {f.name for f in fields(cls.config_class)}
    unknown = sorted(set(rest) - known)
    if unknown:
        raise ConfigError(unknown[0], f"not a field of {cls.config_class.__name__} or VisionConfig")
    return cls(cls.config_class(vision=vis, **rest))


__all__ = ["register_model_type", "model_class", "model_types", "build_model", "create_model",
           "ClassifierConfig", "PretrainConfig", "TeacherConfig"]
