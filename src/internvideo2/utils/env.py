"""What machine a run happened on (written next to results, so numbers are never compared blind)."""
from __future__ import annotations

import os
import platform


def machine_info() -> dict:
    """Platform, core count, torch version and threads, Python version."""
    import torch

    return {"platform": platform.platform(), "cpu_count": os.cpu_count(), "torch": torch.__version__,
            "torch_threads": torch.get_num_threads(), "python": platform.python_version()}
