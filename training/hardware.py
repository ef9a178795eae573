"""What this CPU is and has: the model name and the features that decide training speed (native bf16 or not).

Model cards and benchmarks name the CPU their figures came from: the same step is 2-6x faster with AVX512-BF16/AMX
than with AVX2 only.
"""

from __future__ import annotations

import os
import platform

# Feature name -> CPU flags (Linux /proc/cpuinfo spelling), any of which means the CPU has it.
FEATURE_FLAGS = {
    "AVX2": ("avx2",),
    "AVX512": ("avx512f",),
    "AVX512-BF16": ("avx512_bf16",),
    "AMX": ("amx_bf16", "amx_tile"),
}


CPUINFO = "/proc/cpuinfo"


def _cpuinfo() -> dict[str, str]:
    """The first processor's block of /proc/cpuinfo ({} where there is none: macOS, Windows)."""
    try:
        with open(CPUINFO) as f:
            block = f.read().split("\n\n")[0]
    except OSError:
        return {}
    return {key.strip(): value.strip() for key, _, value in (line.partition(":") for line in block.splitlines())}


def cpu_model() -> str:
    """The CPU's name, with its family and model where the system gives them: a cloud machine may call several
    generations "AMD EPYC" (a Zen 2 and a Zen 5 here), whose speeds differ by 2x or more."""
    info = _cpuinfo()
    name = info.get("model name") or platform.processor() or platform.machine() or "unknown CPU"
    family, model = info.get("cpu family", ""), info.get("model", "")
    return f"{name}, family {family} model {model}" if family.isdigit() and model.isdigit() else name


def cpu_features() -> dict[str, bool | None]:
    """AVX2 / AVX512 / AVX512-BF16 / AMX: True or False from the CPU flags, None where the flags are unreadable."""
    flags = set(_cpuinfo().get("flags", "").split())
    return {name: (any(flag in flags for flag in wanted) if flags else None) for name, wanted in FEATURE_FLAGS.items()}


def cpu_cores() -> int:
    """The cores this process may run on (its affinity, as a container or taskset sets it), not the machine's."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
