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
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import convhub
import torch

from .hardware import cpu_cores
from .recipes import Recipe

REPO = Path(__file__).resolve().parents[1]
ZOO_PID = "CONVHUB_ZOO_PID"  # set for each net: the zoo process it must not outlive (stop_with_zoo)
PR_SET_PDEATHSIG = 1  # linux/prctl.h


def resolve_jobs(jobs: str, device: torch.device, n_nets: int) -> int:
    """"auto": two nets at a time on a CPU with two cores or more (one at a time on a GPU), never more than nets."""
    if jobs == "auto":
        wanted = 2 if device.type == "cpu" and cpu_cores() >= 2 else 1
    else:
        wanted = int(jobs)
    return max(1, min(wanted, n_nets))


# What a value a layer module writes, and a layer module, cost to train, in multiply-adds: each value is read and
# written again by the backward pass, and each layer costs a few kernel calls whatever its size. Fitted to the nine
# nets' seconds in a zoo run on a 2-core AVX2-only EPYC (fp32, one thread each): each estimate within 12% of them.
PER_OUTPUT_VALUE = 43
PER_LAYER = 300_000


def training_work(name: str) -> dict[str, int]:
    """One image's forward pass through ``name``: its multiply-adds, the values its layers write, and its layers,
    from the layers' output shapes (on the meta device: nothing is allocated or initialised)."""
    work = {"multiply_adds": 0, "outputs": 0, "layers": 0}

    def count(module, inputs, output):
        if isinstance(module, torch.nn.Conv2d):
            per_output = module.in_channels // module.groups * module.kernel_size[0] * module.kernel_size[1]
            work["multiply_adds"] += output.numel() * per_output
        elif isinstance(module, torch.nn.Linear):
            work["multiply_adds"] += output.numel() * module.in_features
        work["outputs"] += output.numel()
        work["layers"] += 1

    with torch.device("meta"):
        model = convhub.create(name).eval()
        for layer in model.modules():
            if next(layer.children(), None) is None:  # a leaf: containers only pass their layers' outputs on
                layer.register_forward_hook(count)
        model(torch.empty(1, 3, 32, 32))
    return work


def longest_first(recipes: dict[str, Recipe]) -> list[str]:
    """Nets by their expected training time, longest first. Multiply-adds alone put `net_batchnorm` (93 s, its batch
    norm outputs as many values as its convs) after three nets of ~65 s, and the zoo's last minute ran on one core."""
    def cost(name: str) -> int:
        work = training_work(name)
        per_image = work["multiply_adds"] + PER_OUTPUT_VALUE * work["outputs"] + PER_LAYER * work["layers"]
        return recipes[name].epochs * per_image

    return sorted(recipes, key=cost, reverse=True)


def train_side_by_side(order: list[str], out: Path, train_args: list[str], *, jobs: int, threads: int,
                       pass_fds: tuple[int, ...] = ()) -> dict[str, str]:
    """Run `python -m training train --model NAME --out OUT/NAME *train_args` for each net, ``jobs`` at a time, each
    with ``threads`` torch threads and our open files ``pass_fds``; every output line is printed prefixed by its net,
    to our stdout or stderr as the net wrote it. Returns the nets that failed, each with how it ended.

    After a failure no further net starts (the running ones finish and are saved). Ctrl-C, SIGTERM, SIGHUP or any
    error here is passed on to every running net as Ctrl-C, which stops it unsaved as `train` does (one that has not
    stopped after STOP_GRACE_S is killed); then the exception goes on (KeyboardInterrupt for the signals).
    """
    running: dict[str, subprocess.Popen] = {}
    lock, output = threading.Lock(), threading.Lock()
    stop, interrupted = threading.Event(), threading.Event()
    failed: dict[str, str] = {}

    # -X faulthandler: a net that crashes (a segfault in a native library) leaves where it was, not silence
    command = [sys.executable, "-X", "faulthandler", "-m", "training", "train", *train_args, f"--threads={threads}"]
    # Our checkout first, as for this process; the working folder stays ours, so relative --data paths still hold.
    env = {**os.environ, "PYTHONUNBUFFERED": "1", ZOO_PID: str(os.getpid()),
           "PYTHONPATH": os.pathsep.join(filter(None, (str(REPO), os.environ.get("PYTHONPATH"))))}

    def run(name: str) -> None:
        with lock:
            if stop.is_set():
                return
            # A session of its own: a terminal's Ctrl-C reaches only us, and we pass it on exactly once.
            process = running[name] = subprocess.Popen(
                [*command, f"--model={name}", f"--out={out / name}"], stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, errors="replace", env=env,
                start_new_session=True, pass_fds=pass_fds)
        errors = threading.Thread(target=relay, args=(name, process.stderr, sys.stderr), daemon=True)
        errors.start()
        try:
            relay(name, process.stdout, sys.stdout)
            errors.join()
            code = process.wait()
        finally:
            if process.poll() is None:  # this thread failed (our stdout closed?): the net must not train on alone
                _stop(process)
            with lock:
                running.pop(name, None)
        # Ended by a signal (a crash, or killed when Ctrl-C did not stop it): it could not say so. Not a net we
        # stopped that ended by our Ctrl-C: Python can end so even after saying it stopped, and one still starting
        # ends so silently.
        stopped_as_asked = interrupted.is_set() and code == -signal.SIGINT
        if code < 0 and not stopped_as_asked:
            relay(name, [f"ended by {signal.Signals(-code).name}"], sys.stderr)
        if code != 0:
            failed[name] = f"killed by {signal.Signals(-code).name}" if code < 0 else f"exit {code}"
            stop.set()

    def relay(name: str, lines, to) -> None:
        for line in lines:
            with output:
                to.write(f"[{name}] {line.rstrip()}\n")
                to.flush()

    handlers = _interrupt_on_termination()
    pool = ThreadPoolExecutor(max_workers=jobs, thread_name_prefix="zoo")
    try:
        for future in [pool.submit(run, name) for name in order]:
            future.result()
    except BaseException:
        with lock:
            stop.set()
            interrupted.set()
            stopping = list(running.values())
        for process in stopping:
            _stop(process)
        pool.shutdown(wait=True, cancel_futures=True)
        raise
    finally:
        for number, handler in handlers.items():
            signal.signal(number, handler)
    pool.shutdown(wait=True)
    return failed


STOP_GRACE_S = 30.0
STOP_REPEAT_S = 1.0


def stop_with_zoo() -> bool:
    """In a net started by train_side_by_side: Ctrl-C when the zoo's process dies, even by SIGKILL (which the zoo
    cannot pass on), so that no net trains on alone. The kernel sends it when the thread that started the net ends;
    that thread waits for the net (Linux only: prctl). Returns whether a zoo started us."""
    zoo = os.environ.pop(ZOO_PID, None)
    if zoo is None:
        return False
    # Ctrl-C is how the zoo stops us: a zoo started with it ignored (a background job of a script) still
    # stops its nets.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    if not sys.platform.startswith("linux"):
        return True
    import ctypes

    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, int(signal.SIGINT))
    if os.getppid() != int(zoo):  # the zoo died before prctl: nothing to do but stop
        sys.exit("the zoo that started this net is gone")
    return True


def _stop(process: subprocess.Popen) -> None:
    """Ctrl-C to the net's process group, again each STOP_REPEAT_S, then a kill if it is still there after
    STOP_GRACE_S. Once is not enough: a net still starting can lose it (a KeyboardInterrupt raised while an extension
    module initialises is swallowed: seen with triton's, which torch imports when the optimizer is built)."""
    deadline = time.monotonic() + STOP_GRACE_S
    while True:
        left = deadline - time.monotonic()
        number = signal.SIGINT if left > 0 else signal.SIGKILL
        try:
            os.killpg(process.pid, number)
        except (ProcessLookupError, PermissionError):
            return
        try:
            process.wait(timeout=min(STOP_REPEAT_S, left) if number == signal.SIGINT else STOP_GRACE_S)
            return
        except subprocess.TimeoutExpired:
            if number == signal.SIGKILL:
                return


def _interrupt_on_termination() -> dict:
    """SIGTERM and SIGHUP (a `timeout`, a `kill`, a closed terminal) stop us as Ctrl-C does, so that the nets, each in a
    session of its own, are stopped too. Returns the handlers to put back (none off the main thread)."""
    if threading.current_thread() is not threading.main_thread():
        return {}

    def interrupt(*_):
        raise KeyboardInterrupt

    numbers = [getattr(signal, name) for name in ("SIGTERM", "SIGHUP") if hasattr(signal, name)]
    return {number: signal.signal(number, interrupt) for number in numbers}
