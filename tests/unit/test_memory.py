"""How the allocator treats freed CPU tensors (speechbrain_wsm.memory)."""

import subprocess
import sys

import pytest

# Allocates and frees a 12 MiB tensor 20 times (a [2, 6000, 256] fp32
# activation) and prints the page faults that took.
FAULTS = """
import resource, sys, torch
from speechbrain_wsm import memory
assert getattr(memory, sys.argv[1])()
x = torch.ones(2, 6000, 256)  # first touch, not counted
del x
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(20):
    x = torch.ones(2, 6000, 256)
    del x
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def _faults(setting: str) -> int:
    out = subprocess.run(
        [sys.executable, "-c", FAULTS, setting],
        capture_output=True,
        text=True,
        check=True,
    )
    return int(out.stdout.split()[-1])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_kept_blocks_are_reused_and_released_ones_fault_in_again():
    pages = 2 * 6000 * 256 * 4 // 4096  # of one tensor
    kept, released = _faults("keep_freed_memory"), _faults("release_freed_memory")
    # released: every new tensor faults all its pages in again
    assert released >= 19 * pages, (released, pages)
    # kept: most new tensors reuse pages already faulted in (measured on
    # glibc 2.41: 5 to 8 of the 20 tensors' worth of faults, not 20)
    assert kept < released / 2, (kept, released)


def test_a_users_own_glibc_setting_is_left_alone(monkeypatch):
    from speechbrain_wsm.memory import keep_freed_memory

    monkeypatch.setenv("MALLOC_TRIM_THRESHOLD_", "131072")
    assert keep_freed_memory() is False
