import signal
import sys

from convhub import env
from convhub.errors import ConvHubError

try:  # before huggingface_hub is imported: it parses HF_ENDPOINT at import, and a malformed one was a traceback there
    env.hub_endpoint()
except ConvHubError as error:
    print(f"error: {error}", file=sys.stderr)
    sys.exit(2)

try:
    from .cli import main  # noqa: E402
except KeyboardInterrupt:  # Ctrl-C while torch loads (a zoo stopping its nets as they start): a line, no traceback
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    print("\ninterrupted while starting: nothing was done", file=sys.stderr)
    sys.exit(130)

sys.exit(main())
