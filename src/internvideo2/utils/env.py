"""What machine a run happened on (written next to results, so numbers are never compared blind)."""
from __future__ import annotations

import os
import platform


def machine_info() -> dict:
    """Platform, core count, torch version and threads, Python version."""
    import torch

    return {"platform": platform.platform(), "cpu_count": os.cpu_count(), "torch": torch.__version__,
            "torch_threads": torch.get_num_threads(), "python": platform.python_version()}


def available_memory() -> int | None:
    """Bytes of memory available to a new allocation (Linux ``MemAvailable``), or None where unknown."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def check_memory(nbytes: int, what: str, fraction: float = 0.8) -> None:
    """Raise :class:`~internvideo2.errors.ResourceError` before allocating ``nbytes`` for ``what`` when it is
    more than ``fraction`` of the available memory (an allocation that would swap the machine to a halt)."""
    avail = available_memory()
    if avail is not None and nbytes > fraction * avail:
        from ..errors import ResourceError

        gib = 1 << 30
        raise ResourceError(f"{what} needs {nbytes / gib:.1f} GiB of memory; {avail / gib:.1f} GiB are available")
