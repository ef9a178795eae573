import os
import signal
import sys

from convhub import env
from convhub.errors import ConvHubError

try:  # before huggingface_hub is imported: it parses HF_ENDPOINT at import, and a malformed one was a traceback there
    env.hub_endpoint()
except ConvHubError as error:
    print(f"error: {error}", file=sys.stderr)
    sys.exit(2)

# Ctrl-C while torch loads (a zoo stopping its nets as they start) ends with a line, no traceback. Nothing is done
# before the CLI is loaded, so the process ends right in the handler: an exception raised there could land where
# none can pass (seen: pybind11 aborting inside torch.distributed's start; numpy failing "cannot load module more
# than once per process"; an extension swallowing it).
def _stopped_while_starting(*_):
    os.write(2, b"\ninterrupted while starting: nothing was done\n")
    os._exit(130)


watching = signal.getsignal(signal.SIGINT) is signal.default_int_handler
if watching:
    signal.signal(signal.SIGINT, _stopped_while_starting)
from .cli import main  # noqa: E402

if watching:
    signal.signal(signal.SIGINT, signal.default_int_handler)

sys.exit(main())
