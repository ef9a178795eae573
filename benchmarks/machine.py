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
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # a checkout without installing
from training.hardware import cpu_cores, cpu_features, cpu_model  # noqa: E402

def describe(device: torch.device | str = "cpu") -> tuple[dict, str]:
    """The machine as a dict (for JSON results) and as one line (for logs and tables)."""
    device = torch.device(device)
    features = cpu_features()
    info = {
        "cpu": cpu_model(),
        "cores": cpu_cores(),
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
