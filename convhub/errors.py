class ConvHubError(Exception):
    """A problem the user can fix (bad path, unknown repo, offline Hub, wrong image...), with a message saying how."""


class HubUnavailableError(ConvHubError, ConnectionError):
    """The Hub cannot be reached (offline, HF_HUB_OFFLINE=1) and the HF cache does not hold what was asked for."""


def printable(text) -> str:
    """``text`` with each character that prints nothing (ESC, BEL, U+0085, a right-to-left mark...) but a line break
    as U+FFFD."""
    return "".join(c if c.isprintable() or c == "\n" else "\ufffd" for c in str(text))


def one_line(text) -> str:
    """``text`` on one printable line, as messages, logs and cards show what others wrote: each run of whitespace as
    one space, and characters that print nothing as U+FFFD."""
    return printable(" ".join(str(text).split()))


def cannot_read(path, error: OSError) -> ConvHubError:
    """What a path the system refuses (not readable, a name too long for it) is reported as, in place of the
    OSError's traceback."""
    return ConvHubError(f"cannot read {shown(str(path), 200)}: {error.strerror or error}")


def shown(value, limit: int = 60) -> str:
    """A caller's value as a message quotes it: its repr, on one line, cut at ``limit`` characters (a name of 60 KB
    or a float of 300 digits came back whole in the error)."""
    text = one_line(repr(value))
    return text if len(text) <= limit else text[:limit] + "..."
