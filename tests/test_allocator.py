"""keep_freed_memory: freed large blocks stay in the heap, so allocating them again does
not fault in fresh pages; the user's own malloc settings win."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from pni.allocator import keep_freed_memory

PROBE = """
import resource, sys, torch
if sys.argv[1] == "keep":
    from pni.allocator import keep_freed_memory
    assert keep_freed_memory()
torch.empty(64 * 2**20, dtype=torch.uint8).fill_(1)  # warm-up
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(10):
    torch.empty(64 * 2**20, dtype=torch.uint8).fill_(1)  # 64 MB: above glibc's mmap threshold
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def _page_faults(mode: str) -> int:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MALLOC_", "GLIBC_TUNABLES", "PNI_MALLOC"))}
    out = subprocess.run([sys.executable, "-c", PROBE, mode], capture_output=True, text=True, env=env, check=True)
    return int(out.stdout.strip())


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_freed_blocks_are_reused_instead_of_faulted_in_again() -> None:
    default, kept = _page_faults("default"), _page_faults("keep")
    assert default > 10 * 16_000 * 0.9       # every 64 MB block faults in its 16,384 pages again
    assert kept < default / 5, (kept, default)


def test_the_users_malloc_settings_win(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MALLOC_MMAP_THRESHOLD_", "1000000")
    assert keep_freed_memory() is False
    monkeypatch.delenv("MALLOC_MMAP_THRESHOLD_")
    monkeypatch.setenv("PNI_MALLOC", "default")
    assert keep_freed_memory() is False
