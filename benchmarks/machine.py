"""What a benchmark ran on: the CPU, the features that decide its speed, torch and its threads.

Every speed figure needs its hardware: the same training step is 2-6x faster on a CPU with native bf16
(AVX512-BF16/AMX) than on one with AVX2 only, and a second process on a 2-core machine can halve it again.

    from benchmarks.machine import describe, others_cpu_share
    info, line = describe()            # a dict for JSON, one line for the log
    with others_cpu_share() as load:   # how much of the CPUs other processes used meanwhile
        run_benchmark()
    print(load.share)                  # 0.0 on a quiet machine, None where /proc/stat is missing
"""

from __future__ import annotations

import contextlib
import os
import platform
import time
from dataclasses import dataclass

import torch

# Feature name -> CPU flags (Linux /proc/cpuinfo spelling), any of which means the CPU has it.
FEATURE_FLAGS = {
    "AVX2": ("avx2",),
    "AVX512": ("avx512f",),
    "AVX512-BF16": ("avx512_bf16",),
    "AMX": ("amx_bf16", "amx_tile"),
}


def _cpuinfo() -> dict[str, str]:
    """The first processor's block of /proc/cpuinfo ({} where there is none: macOS, Windows)."""
    try:
        with open("/proc/cpuinfo") as f:
            block = f.read().split("\n\n")[0]
    except OSError:
        return {}
    return {key.strip(): value.strip() for key, _, value in (line.partition(":") for line in block.splitlines())}


def cpu_model() -> str:
    return _cpuinfo().get("model name") or platform.processor() or platform.machine() or "unknown CPU"


def cpu_features() -> dict[str, bool | None]:
    """AVX2 / AVX512 / AVX512-BF16 / AMX: True or False from the CPU flags, None where the flags are unreadable."""
    flags = set(_cpuinfo().get("flags", "").split())
    return {name: (any(flag in flags for flag in wanted) if flags else None) for name, wanted in FEATURE_FLAGS.items()}


def describe(device: torch.device | str = "cpu") -> tuple[dict, str]:
    """The machine as a dict (for JSON results) and as one line (for logs and tables)."""
    device = torch.device(device)
    features = cpu_features()
    info = {
        "cpu": cpu_model(),
        "cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "features": features,
        "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(),  # the kernels torch dispatches to
        "native_bf16": bool(torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported()),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "device": str(device),
        "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
    }
    has = ", ".join(f"{name} {'yes' if on else 'no'}" for name, on in features.items() if on is not None)
    line = (f"{info['cpu']} ({info['cores']} cores; {has or 'CPU flags unknown'}; torch kernels "
            f"{info['torch_cpu_capability']}), torch {info['torch']}, {info['threads']} threads"
            + (f", GPU {info['gpu']}" if info["gpu"] else ""))
    return info, line


def _busy_and_own_cpu_seconds() -> tuple[float, float] | None:
    """CPU seconds the whole machine has been busy (from /proc/stat), and this process's own CPU seconds."""
    try:
        with open("/proc/stat") as f:
            fields = [int(v) for v in f.readline().split()[1:9]]
    except (OSError, ValueError):
        return None
    busy = (sum(fields) - fields[3] - fields[4]) / os.sysconf("SC_CLK_TCK")  # all but idle and iowait
    own = os.times()
    return busy, own.user + own.system + own.children_user + own.children_system


@dataclass
class OthersLoad:
    share: float | None = None  # of all the cores' time, what other processes used; None where unknown


@contextlib.contextmanager
def others_cpu_share():
    """Measure what share of the CPUs other processes used during the block: timings are comparable only when ~0."""
    load = OthersLoad()
    start, began = _busy_and_own_cpu_seconds(), time.perf_counter()
    yield load
    end, wall = _busy_and_own_cpu_seconds(), time.perf_counter() - began
    if start is not None and end is not None and wall > 0:
        others = (end[0] - start[0]) - (end[1] - start[1])
        load.share = min(1.0, max(0.0, others / (wall * (os.cpu_count() or 1))))
