import sys

from convhub import env
from convhub.errors import ConvHubError

from . import starting

try:  # before huggingface_hub is imported: it parses HF_ENDPOINT at import, and a malformed one was a traceback there
    env.hub_endpoint()
except ConvHubError as error:
    print(f"error: {error}", file=sys.stderr)
    sys.exit(2)

with starting.ended_by_ctrl_c():  # a zoo may stop its nets while they load torch
    from .cli import main

sys.exit(main())
