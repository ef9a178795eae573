class ConvHubError(Exception):
    """A problem the user can fix (bad path, unknown repo, offline Hub, wrong image...), with a message saying how."""


class HubUnavailableError(ConvHubError, ConnectionError):
    """The Hub cannot be reached (offline, HF_HUB_OFFLINE=1) and the HF cache does not hold what was asked for."""
