"""Ctrl-C while a process is still loading what it needs ends it there, with one line.

Nothing is done yet, so the process ends in the signal handler itself. A KeyboardInterrupt raised while an extension
module loads can land where none can pass: pybind11 aborted inside torch.distributed's start, numpy failed its second
load ("cannot load module more than once per process"), triton swallowed it.
"""
import contextlib
import os
import signal


def _end(*_):
    os.write(2, b"\ninterrupted while starting: nothing was done\n")
    os._exit(130)


@contextlib.contextmanager
def ended_by_ctrl_c():
    """Within the block, Ctrl-C ends the process (exit 130); unless Ctrl-C is ignored or someone else's to handle."""
    if signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
        yield
        return
    signal.signal(signal.SIGINT, _end)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, signal.default_int_handler)
