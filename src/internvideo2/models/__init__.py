"""Models: the vision core and its variants (this package), text (BERT) and audio (BEATs) towers,
stage-2 / CLIP models and teachers (their own modules, imported on use). Every family implements the one
embedding API of :mod:`.api` (``encode_video`` / ``encode_texts`` -> :class:`VideoEmbedding` /
:class:`TextEmbedding`, ``encode_audio`` -> :class:`AudioEmbedding` for families with audio,
``vision_backbone``)."""
from .api import AudioEmbedding, EmbeddingModel, TextEmbedding, VideoEmbedding
from .config import ClassifierConfig, PretrainConfig, TeacherConfig, VisionConfig, list_presets, vision_config
from .registry import build_model, create_model, model_types, register_model_type
from .variants import InternVideo2Classifier, InternVideo2Pretrain, PretrainOutput, TeacherModel, TeacherOutput
from .vision import VideoFeatures, VisionTransformer

__all__ = ["ClassifierConfig", "PretrainConfig", "TeacherConfig", "VisionConfig", "list_presets", "vision_config",
           "build_model", "create_model", "model_types", "register_model_type", "InternVideo2Classifier",
           "InternVideo2Pretrain", "PretrainOutput", "TeacherModel", "TeacherOutput", "AudioEmbedding",
           "EmbeddingModel", "TextEmbedding", "VideoEmbedding", "VideoFeatures", "VisionTransformer"]
