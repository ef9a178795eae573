"""`zoo --jobs N`: nets train side by side, each in its own `python -m training train` process.

On a CPU one net does not use two cores well: the small nets are bound by per-op overheads and memory, and a second
torch thread adds little (`net_batchnorm` was even faster on one). Two nets on one core each keep both cores busy.
The longest nets start first, so the last to finish is not a long one started late.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import convhub
import torch

from .recipes import Recipe

REPO = Path(__file__).resolve().parents[1]


def cpu_cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def resolve_jobs(jobs: str, device: torch.device, n_nets: int) -> int:
    """"auto": two nets at a time on a CPU with two cores or more (one at a time on a GPU), never more than nets."""
    if jobs == "auto":
        wanted = 2 if device.type == "cpu" and cpu_cores() >= 2 else 1
    else:
        wanted = int(jobs)
    return max(1, min(wanted, n_nets))


def multiply_adds(name: str) -> int:
    """Multiply-adds of one forward pass of one image, from the layers' output shapes (on the meta device: nothing
    is allocated or initialised)."""
    total = 0

    def count(module, inputs, output):
        nonlocal total
        if isinstance(module, torch.nn.Conv2d):
            total += output.numel() * module.in_channels // module.groups * module.kernel_size[0] * module.kernel_size[1]
        elif isinstance(module, torch.nn.Linear):
            total += output.numel() * module.in_features

    with torch.device("meta"):
        model = convhub.create(name).eval()
        for layer in model.modules():
            layer.register_forward_hook(count)
        model(torch.empty(1, 3, 32, 32))
    return total


def longest_first(recipes: dict[str, Recipe]) -> list[str]:
    """Nets by their training work (epochs x multiply-adds per image), most first."""
    return sorted(recipes, key=lambda name: recipes[name].epochs * multiply_adds(name), reverse=True)


def train_side_by_side(order: list[str], out: Path, train_args: list[str], *, jobs: int, threads: int) -> list[str]:
    """Run `python -m training train --model NAME --out OUT/NAME *train_args` for each net, ``jobs`` at a time, each
    with ``threads`` torch threads; every output line is printed prefixed by its net. Returns the nets that failed.

    After a failure no further net starts (the running ones finish and are saved). Ctrl-C is passed on to every
    running net, which stops unsaved, as `train` does; then KeyboardInterrupt is raised here.
    """
    running: dict[str, subprocess.Popen] = {}
    lock = threading.Lock()
    stop = threading.Event()
    failed: list[str] = []

    command = [sys.executable, "-m", "training", "train", *train_args, "--threads", str(threads)]
    # Our checkout first, as for this process; the working folder stays ours, so relative --data paths still hold.
    env = {**os.environ, "PYTHONUNBUFFERED": "1",
           "PYTHONPATH": os.pathsep.join(filter(None, (str(REPO), os.environ.get("PYTHONPATH"))))}

    def run(name: str) -> None:
        with lock:
            if stop.is_set():
                return
            # A session of its own: a terminal's Ctrl-C reaches only us, and we pass it on exactly once.
            process = running[name] = subprocess.Popen(
                [*command, "--model", name, "--out", str(out / name)], stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT, text=True, env=env, start_new_session=True)
        for line in process.stdout:
            print(f"[{name}] {line.rstrip()}", flush=True)
        if process.wait() != 0:
            failed.append(name)
            stop.set()
        with lock:
            running.pop(name, None)

    pool = ThreadPoolExecutor(max_workers=jobs, thread_name_prefix="zoo")
    futures = [pool.submit(run, name) for name in order]
    try:
        for future in futures:
            future.result()
    except KeyboardInterrupt:
        with lock:
            stop.set()
            for process in running.values():
                process.send_signal(signal.SIGINT)
        pool.shutdown(wait=True, cancel_futures=True)
        raise
    pool.shutdown(wait=True)
    return failed
