"""training.allocator: a training process keeps the blocks its steps free for the next step, rather than mapping
each anew (glibc's own count of its mapped blocks, read in a process of its own: pytest's has long since tuned its
malloc by what it freed)."""

from __future__ import annotations

import subprocess
import sys

import pytest

# The bytes glibc holds in blocks mapped one by one, with a block of 2, 8 and 16 MB alive (a step's activations:
# net_batchnorm's first conv writes 16 MB at batch 128), each freed before the next.
MAPPED_BYTES = """
import ctypes, sys
import torch
from training import allocator

class MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks",
                                                     "fsmblks", "uordblks", "fordblks", "keepcost")]

mallinfo2 = ctypes.CDLL(None).mallinfo2
mallinfo2.restype = MallInfo2
if sys.argv[1] == "reuse":
    assert allocator.reuse_freed_memory()
before = mallinfo2().hblkhd
for megabytes in (2, 8, 16):
    block = torch.empty(megabytes * 2**20, dtype=torch.uint8).fill_(1)
    print(mallinfo2().hblkhd - before)
    del block
"""


def _mapped(mode: str) -> list[int]:
    done = subprocess.run([sys.executable, "-c", MAPPED_BYTES, mode], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return [int(line) for line in done.stdout.split()]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc")
def test_a_training_process_keeps_the_blocks_its_steps_free_on_its_heap():
    sizes = [megabytes * 2**20 for megabytes in (2, 8, 16)]
    # glibc as a process starts with torch: each such block is a mapping of its own, unmapped when freed, so the next
    # step's pages are new ones, each a page fault
    assert all(mapped >= size for mapped, size in zip(_mapped("default"), sizes))
    assert _mapped("reuse") == [0, 0, 0]  # on the heap, where a freed block is there for the next step
