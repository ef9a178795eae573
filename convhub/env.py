"""Numbers read from environment variables (the Space's limits, the Hub client's deadline): an operator's typo is one
clear error naming the variable, not a traceback from int()."""

from __future__ import annotations

import math
import os

from .errors import ConvHubError


def number(name: str, default, *, kind: type = int, minimum: float = 1):
    """The variable ``name`` as ``kind`` (int or float), ``default`` where it is unset or empty; ConvHubError where
    it is not a finite number of at least ``minimum``."""
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = kind(raw)
    except ValueError:  # "lots", "1.5" for an int, 5,000 digits
        value = None
    if value is None or not math.isfinite(value) or value < minimum:
        what = "a whole number" if kind is int else "a number"
        raise ConvHubError(f"{name} must be {what} >= {minimum:g}, not {raw!r}")
    return value
