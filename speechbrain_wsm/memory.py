"""Peak memory: the one place that reads it, for the recipes and the benchmarks.

* :func:`peak_memory_mb`: the peak so far of a device, the CUDA allocator's
  (``torch.cuda.max_memory_allocated``) or this process's peak resident set
  on CPU (``train_cost.json`` of every recipe);
* :func:`peak_rss_bytes`, :func:`reset_peak_rss`, :func:`rss_bytes`: the
  kernel's peak-RSS mark, its reset and the resident set now (the
  benchmarks' per-step measurement in :mod:`speechbrain_wsm.bench.common`);
* :func:`keep_freed_memory`, :func:`release_freed_memory`: how glibc's
  allocator treats the large blocks that freed CPU tensors leave: kept for
  the next step (training and timing on CPU) or handed back to the kernel
  at once (the benchmarks' resident-set measurement).
"""

from __future__ import annotations

import os
import resource
import sys

import torch

__all__ = [
    "keep_freed_memory",
    "peak_memory_mb",
    "peak_rss_bytes",
    "release_freed_memory",
    "reset_peak_rss",
    "rss_bytes",
]

#: glibc's ``mallopt`` parameters (malloc.h)
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
#: the largest mmap threshold glibc takes on a 64-bit system (HEAP_MAX_SIZE / 2)
_MMAP_THRESHOLD_MAX = 32 * 2**20
#: the environment variables by which a user sets these thresholds
_GLIBC_VARIABLES = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_")


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


def _mallopt(mmap_threshold: int, trim_threshold: int) -> bool:
    """Set glibc's mmap and trim thresholds; False where there is no glibc."""
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6")
        return bool(
            libc.mallopt(_M_MMAP_THRESHOLD, mmap_threshold)
            and libc.mallopt(_M_TRIM_THRESHOLD, trim_threshold)
        )
    except (OSError, AttributeError):
        return False


def keep_freed_memory() -> bool:
    """Keep freed CPU blocks of up to 32 MiB in the heap for reuse (glibc only).

    By default glibc serves a large block (a ``[B, T, D]`` activation) by
    ``mmap`` and unmaps it on free, or trims the heap's free top back to the
    kernel; the next training step then faults every page of its new
    tensors in again, zero-filled by the kernel. A step that allocates many
    temporaries, such as the memory-lean SM / WSM backward, pays it most:
    measured (WSM, window 32, 120 s, batch 2, d_model 256, one thread, 2-core
    AMD EPYC) the lean layer took 1.23-1.36x the plain autograd layer's time
    with glibc's defaults and 1.07-1.10x with freed blocks kept; a training
    step of the demo's 4 x 144 Conformers 1-11 % less time alone (no
    measurable change with three side by side on 2 cores). The price is a
    resident set that stays at its peak (what a training step needs anyway).
    The recipes call this on CPU (``load_hparams``), as do the CPU timings
    of the benchmarks. A user who sets glibc's own ``MALLOC_MMAP_THRESHOLD_``
    or ``MALLOC_TRIM_THRESHOLD_`` keeps that choice (nothing is changed).
    Returns whether the allocator took the setting.
    """
    if any(os.environ.get(k) for k in _GLIBC_VARIABLES):
        return False
    return _mallopt(_MMAP_THRESHOLD_MAX, 2**31 - 1)  # a C int


def release_freed_memory() -> bool:
    """Serve blocks of 64 KiB and more by ``mmap`` and hand them back on free.

    The benchmarks' resident-set measurement needs it: with freed pages kept
    for reuse, a second step's allocations would not show in the resident set.
    """
    return _mallopt(64 * 1024, 128 * 1024)
