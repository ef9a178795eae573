import sys

from convhub import env
from convhub.errors import ConvHubError

try:  # before huggingface_hub is imported: it parses HF_ENDPOINT at import, and a malformed one was a traceback there
    env.hub_endpoint()
except ConvHubError as error:
    print(f"error: {error}", file=sys.stderr)
    sys.exit(2)

from .cli import main  # noqa: E402

sys.exit(main())
