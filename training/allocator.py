"""Training's memory reused within the process, not handed back to the kernel after every step.

glibc's malloc gives each block over 128 KB its own mapping and unmaps it when it is freed, so every step's
activations and gradients came back as fresh pages, each a page fault. glibc raises that limit by itself once a
large block is freed, which decoding a JPEG folder happened to do; a net that read the zoo's decoded copy did not, and
trained `net_batchnorm` 1.17x slower (2 epochs: 9.7-10.1 s against 8.3-8.9 s, ~1.5 million page faults against
0.16-0.7 million, alternated three times on a 2-core Zen 2 EPYC).
"""

from __future__ import annotations

import ctypes
import sys

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # malloc.h
# The largest limit glibc takes on 64-bit (HEAP_MAX_SIZE / 2), and what it would raise the trim threshold to with it:
# a net's largest blocks in a step are its first layers' activations (16 MB at batch 128 for net_batchnorm's and
# net_res_deep's); the padded images, ~43 MB for CIFAR-2, stay a mapping of their own.
MMAP_THRESHOLD = 32 * 1024 * 1024
TRIM_THRESHOLD = 2 * MMAP_THRESHOLD


def reuse_freed_memory() -> bool:
    """Keep freed blocks of up to 32 MB for the next step; returns whether glibc took it (False elsewhere)."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):  # not glibc (musl has no mallopt)
        return False
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))
