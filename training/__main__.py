import signal
import sys

from convhub import env
from convhub.errors import ConvHubError

try:  # before huggingface_hub is imported: it parses HF_ENDPOINT at import, and a malformed one was a traceback there
    env.hub_endpoint()
except ConvHubError as error:
    print(f"error: {error}", file=sys.stderr)
    sys.exit(2)

# Ctrl-C while torch loads (a zoo stopping its nets as they start) ends with a line, no traceback. It may arrive
# while an extension module initialises, which can swallow the KeyboardInterrupt, or fail on it another way (numpy:
# "ImportError: cannot load module more than once per process"): so a Ctrl-C is noted, and then nothing else counts.
interrupted = False


def _interrupt(*_):
    global interrupted
    interrupted = True
    raise KeyboardInterrupt


def _stopped_while_starting():
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    print("\ninterrupted while starting: nothing was done", file=sys.stderr)
    sys.exit(130)


watching = signal.getsignal(signal.SIGINT) is signal.default_int_handler
if watching:
    signal.signal(signal.SIGINT, _interrupt)
try:
    from .cli import main  # noqa: E402
except BaseException:
    if not interrupted:
        raise
    _stopped_while_starting()
if interrupted:  # swallowed on the way
    _stopped_while_starting()
if watching:
    signal.signal(signal.SIGINT, signal.default_int_handler)

sys.exit(main())
