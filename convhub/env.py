"""Settings read from environment variables (the Space's limits, the Hub client's deadline, the Hub's URL): an
operator's typo is one clear error naming the variable, not a traceback from int() or a limit that breaks something
later."""

from __future__ import annotations

import math
import os
import re
from urllib.parse import urlsplit

from .errors import ConvHubError

USERINFO = re.compile(r"(?<=://)[^/\s]*@")  # the user:password@ of any URL in a message (a password may hold "@")


def number(name: str, default, *, minimum: float, maximum: float, kind: type = int):
    """The variable ``name`` as ``kind`` (int or float), ``default`` where it is unset or empty; ConvHubError unless
    it is a number from ``minimum`` to ``maximum``."""
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = kind(raw)
    except ValueError:  # "lots", "1.5" for an int, 5,000 digits
        value = None
    if value is None or (kind is float and not math.isfinite(value)) or not minimum <= value <= maximum:
        what = "a whole number" if kind is int else "a number"
        raise ConvHubError(f"{name} must be {what} from {_show(minimum)} to {_show(maximum)}, not {raw[:40]!r}"
                           + ("..." if len(raw) > 40 else ""))
    return value


def _show(bound: float) -> str:
    return f"{int(bound):,}" if float(bound).is_integer() else f"{bound:g}"


def hub_endpoint(default: str = "https://huggingface.co") -> str:
    """HF_ENDPOINT without its trailing "/" (``default`` where unset); ConvHubError unless it is an http(s) URL with a
    host. huggingface_hub parses it once, at its import (`http://[::1` was a traceback there), and takes any other
    string as it comes (`ftp://host` then read as "the Hub cannot be reached", a port of 99999 as a ValueError)."""
    raw = os.environ.get("HF_ENDPOINT")
    if raw is None:
        return default
    url = raw.rstrip("/")
    try:
        parts = urlsplit(url)
        usable = (parts.scheme in ("http", "https") and bool(parts.hostname) and parts.port != 0
                  and not (parts.query or parts.fragment) and url.isprintable() and not any(c.isspace() for c in url))
    except ValueError:  # an unclosed "[", a port that is not a number from 0 to 65535
        usable = False
    if not usable:
        shown = USERINFO.sub("", raw)  # a message reaches logs
        raise ConvHubError(f"HF_ENDPOINT must be the Hub's http(s) URL, such as https://huggingface.co or "
                           f"http://127.0.0.1:8090 (unset it for huggingface.co), not {shown[:80]!r}"
                           + ("..." if len(shown) > 80 else ""))
    return url
