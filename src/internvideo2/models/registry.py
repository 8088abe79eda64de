"""Registry of model types (for our saved format and ``create_model``) and preset-based builders."""
from __future__ import annotations

import importlib
import inspect
from dataclasses import fields
from typing import Any

from torch import nn

from ..errors import ConfigError
from ..utils.typed import build_dataclass
from .config import ClassifierConfig, PretrainConfig, TeacherConfig, VisionConfig, vision_config

# model_type -> "module:Class"; imported lazily so text/audio/stage-2 models cost nothing until used
_MODEL_TYPES: dict[str, str] = {
    "vision": "internvideo2.models.vision:VisionTransformer",
    "classifier": "internvideo2.models.variants:InternVideo2Classifier",
    "pretrain": "internvideo2.models.variants:InternVideo2Pretrain",
    "teacher": "internvideo2.models.variants:TeacherModel",
    "stage2": "internvideo2.models.stage2:InternVideo2Stage2",
    "stage2_av": "internvideo2.models.stage2_av:InternVideo2Stage2AV",
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
    """Instantiate a model type from its config object or a plain dict of it (e.g. a saved ``config.json``:
    typed, unknown or misspelt keys raise :class:`ConfigError` naming ``config.<field>``)."""
    cls = model_class(model_type)
    if isinstance(config, dict):
        config = build_dataclass(cls.config_class, config, "config")
    return cls(config)


def create_model(preset: str = "tiny", model_type: str = "vision", **overrides: Any) -> nn.Module:
    """A randomly initialised model of a preset (explicit: this never pretends to be pretrained).

    Every registered model type is built around the preset's vision backbone by its config's
    ``from_vision``, with documented defaults (e.g. the stage-2 model's text tower: the released BERT-large
    beside the InternVideo2 presets, a test-scale BERT beside ``tiny`` / ``toy``). Vision overrides
    (``num_frames``, ``img_size`` ...) go to the backbone; the others to the model's config. Examples::

        create_model("internvideo2-1b", "classifier", num_classes=400, num_frames=16)
        create_model("tiny", "pretrain", clip_teacher_embed_dim=48, mae_return_layer=2)
        create_model("tiny", "stage2", text="bert_tiny", embed_dim=64)
        create_model("tiny", "stage2_av", audio="beats_tiny", loss_atc=1.0)
    """
    cls = model_class(model_type)
    vision_fields = {f.name for f in fields(VisionConfig)}
    v_over = {k: v for k, v in overrides.items() if k in vision_fields}
    rest = {k: v for k, v in overrides.items() if k not in vision_fields}
    vis = vision_config(preset, **v_over)
    if cls.config_class is VisionConfig:
        if rest:
            raise ConfigError(sorted(rest)[0], "not a field of VisionConfig")
        return cls(vis)
    builder = getattr(cls.config_class, "from_vision", None)
    if builder is None:
        raise ConfigError("model_type", f"{model_type!r}: {cls.config_class.__name__} has no from_vision builder")
    params = set(inspect.signature(builder).parameters) - {"vision", "overrides"}
    known = {f.name for f in fields(cls.config_class)} | params
    unknown = sorted(set(rest) - known)
    if unknown:
        raise ConfigError(unknown[0], f"not a field of {cls.config_class.__name__} or VisionConfig")
    return cls(builder(vis, **rest))


__all__ = ["register_model_type", "model_class", "model_types", "build_model", "create_model",
           "ClassifierConfig", "PretrainConfig", "TeacherConfig"]
