"""Numbers read from environment variables (the Space's limits, the Hub client's deadline): an operator's typo is one
clear error naming the variable, not a traceback from int() or a limit that breaks something later."""

from __future__ import annotations

import math
import os

from .errors import ConvHubError


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
