"""Checkpoint I/O: official containers and key maps, strict loading, position-table resampling, and
our safetensors format."""
from .detect import Detected, detect_checkpoint
from .io import (
                 LoadReport,
                 adapt_state_dict,
                 inflate_patch_kernel,
                 load_state_dict_strict,
                 read_checkpoint,
                 unwrap_state_dict,
)
from .loader import load_clip_parts, load_model
from .official import OFFICIAL_CLASSES
from .pretrained import from_pretrained, save_pretrained

__all__ = ["LoadReport", "adapt_state_dict", "inflate_patch_kernel", "load_state_dict_strict", "read_checkpoint",
           "unwrap_state_dict", "load_model", "load_clip_parts", "Detected", "OFFICIAL_CLASSES", "detect_checkpoint",
           "from_pretrained", "save_pretrained"]
