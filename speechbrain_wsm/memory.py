"""Peak memory: the one place that reads it, for the recipes and the benchmarks.

* :func:`peak_memory_mb`: the peak so far of a device, the CUDA allocator's
  (``torch.cuda.max_memory_allocated``) or this process's peak resident set
  on CPU (``train_cost.json`` of every recipe);
* :func:`peak_rss_bytes`, :func:`reset_peak_rss`, :func:`rss_bytes`: the
  kernel's peak-RSS mark, its reset and the resident set now (the
  benchmarks' per-step measurement in :mod:`speechbrain_wsm.bench.common`).
"""

from __future__ import annotations

import os
import resource
import sys

import torch

__all__ = ["peak_memory_mb", "peak_rss_bytes", "reset_peak_rss", "rss_bytes"]


def rss_bytes() -> int:
    """This process's resident set now, in bytes (Linux)."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def peak_rss_bytes() -> int:
    """This process's peak resident set in bytes: the kernel's mark (VmHWM),
    which :func:`reset_peak_rss` resets; ``ru_maxrss`` where there is no
    ``/proc``."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss if sys.platform == "darwin" else rss * 1024  # bytes on macOS


def reset_peak_rss() -> None:
    """Reset the kernel's peak-RSS mark to the resident set now (Linux)."""
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")


def peak_memory_mb(device: str | torch.device) -> float:
    """Peak memory so far (MiB): the CUDA allocator's peak, or this process's peak RSS."""
    if str(device).startswith("cuda"):
        return torch.cuda.max_memory_allocated(device) / 2**20
    return peak_rss_bytes() / 2**20
