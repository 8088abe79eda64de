"""Models: the vision core and its variants (this package), text (BERT) and audio (BEATs) towers,
stage-2 / CLIP models and bridges (their own modules, imported on use)."""
from .config import (ClassifierConfig, PretrainConfig, TeacherConfig, VisionConfig, list_presets,
                     vision_config)
from .registry import build_model, create_model, model_types, register_model_type
from .variants import InternVideo2Classifier, InternVideo2Pretrain, PretrainOutput, TeacherModel, TeacherOutput
from .vision import VideoEmbedding, VideoFeatures, VisionTransformer

__all__ = ["ClassifierConfig", "PretrainConfig", "TeacherConfig", "VisionConfig", "list_presets", "vision_config",
           "build_model", "create_model", "model_types", "register_model_type", "InternVideo2Classifier",
           "InternVideo2Pretrain", "PretrainOutput", "TeacherModel", "TeacherOutput", "VideoEmbedding",
           "VideoFeatures", "VisionTransformer"]
