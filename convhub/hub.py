"""Finding a model folder: a local save_pretrained directory or a Hub repo, failing fast when offline."""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path
from urllib.parse import urlparse

from huggingface_hub import constants, snapshot_download
from huggingface_hub.errors import (
    GatedRepoError,
    HFValidationError,
    LocalEntryNotFoundError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)
from huggingface_hub.utils import validate_repo_id
from PIL import Image, UnidentifiedImageError

from .errors import ConvHubError, HubUnavailableError

MODEL_FILES = ["config.json", "model.safetensors", "README.md"]
_PROBE_TTL_S = 30.0
_probe_cache: dict[str, tuple[float, bool]] = {}


def endpoint() -> str:
    """HF_ENDPOINT as it is now (huggingface_hub reads it once, at import)."""
    return os.environ.get("HF_ENDPOINT", constants.ENDPOINT).rstrip("/")


def offline_mode() -> bool:
    return constants.HF_HUB_OFFLINE or os.environ.get("HF_HUB_OFFLINE", "").upper() in ("1", "ON", "YES", "TRUE")


def hub_reachable(timeout: float = 2.0) -> bool:
    """One short TCP probe of the endpoint (cached briefly), instead of the client's ~23 s of retries per file."""
    if offline_mode():
        return False
    url = endpoint()
    checked_at, reachable = _probe_cache.get(url, (0.0, False))
    if time.monotonic() - checked_at < _PROBE_TTL_S:
        return reachable
    parsed = urlparse(url)
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    try:
        socket.create_connection((parsed.hostname, port), timeout=timeout).close()
        reachable = True
    except OSError:
        reachable = False
    _probe_cache[url] = (time.monotonic(), reachable)
    return reachable


def resolve(
    name_or_path: str | Path,
    *,
    revision: str | None = None,
    cache_dir: str | Path | None = None,
    token: str | bool | None = None,
    force_download: bool = False,
    local_files_only: bool = False,
) -> Path:
    """A local folder holding config.json + model.safetensors: the folder itself, or the Hub repo's snapshot."""
    name = str(name_or_path).removeprefix("hf-hub:")
    if Path(name).expanduser().is_dir():
        return Path(name).expanduser()
    try:
        validate_repo_id(name)
    except HFValidationError as error:
        raise ConvHubError(f"{name!r} is neither a local folder nor a valid Hub repo id ('namespace/name'): {error}") from None
    if "/" not in name and not Path(name).exists():
        raise ConvHubError(f"no folder {name!r}, and convhub repos on the Hub are named 'namespace/name'")

    online = not local_files_only and hub_reachable()
    try:
        folder = snapshot_download(
            name, revision=revision, cache_dir=cache_dir, token=token, allow_patterns=MODEL_FILES,
            force_download=force_download, local_files_only=not online, endpoint=endpoint(),
        )
    except (LocalEntryNotFoundError, FileNotFoundError) as error:
        if online:
            raise ConvHubError(f"could not download {name} (revision {revision or 'main'}): {error}") from error
        reason = "HF_HUB_OFFLINE is set" if offline_mode() else f"the Hub ({endpoint()}) cannot be reached"
        raise HubUnavailableError(
            f"{name!r} is not a local folder, {reason} and the HF cache holds no copy of it"
            f"{f' at revision {revision!r}' if revision else ''}. Connect once to download it, or pass a local "
            "save_pretrained folder instead."
        ) from None
    except GatedRepoError:
        raise ConvHubError(f"{name} is gated: accept its terms on the Hub and log in (hf auth login)") from None
    except RepositoryNotFoundError:
        raise ConvHubError(
            f"{name!r} is not a local folder, and repo {name!r} does not exist on {endpoint()} "
            "(or is private: pass token= or log in)"
        ) from None
    except RevisionNotFoundError:
        raise ConvHubError(f"repo {name!r} has no revision {revision!r}") from None
    if not (Path(folder) / "config.json").is_file():
        raise ConvHubError(f"repo {name!r} has no config.json: it is not a convhub model")
    return Path(folder)


def read_config(folder: str | Path) -> dict:
    path = Path(folder) / "config.json"
    if not path.is_file():
        raise ConvHubError(f"{folder} has no config.json: not a convhub model folder (save one with save_pretrained)")
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ConvHubError(f"{path} is not valid JSON: {error}") from None
    if not isinstance(config, dict):
        raise ConvHubError(f"{path} must hold a JSON object")
    return config


def check_config(config: dict, folder: str | Path) -> dict:
    """Refuse configs this version cannot honour, naming the fix."""
    from . import __version__
    from .models import CONFIG_FORMAT
    from .registry import ARCHITECTURES

    architecture = config.get("architecture")
    if architecture is None:
        raise ConvHubError(f"{folder}/config.json names no 'architecture': not a convhub model config")
    fmt = config.get("format_version", 1)
    if not isinstance(fmt, int) or fmt > CONFIG_FORMAT:
        raise ConvHubError(
            f"{folder} was saved by convhub {config.get('convhub_version', '?')} (config format {fmt}); this is convhub "
            f"{__version__} (format {CONFIG_FORMAT}): upgrade with `pip install -U convhub`"
        )
    if architecture not in ARCHITECTURES:
        raise ConvHubError(
            f"unknown architecture {architecture!r} in {folder}/config.json; known: {', '.join(sorted(ARCHITECTURES))}"
        )
    return config


def load(name_or_path: str | Path, *, revision: str | None = None, map_location: str = "cpu", **kwargs):
    """Load any convhub model from a folder or a Hub repo; the config picks the class (timm's ``hf-hub:`` idea)."""
    from .registry import ARCHITECTURES

    folder = resolve(name_or_path, revision=revision, **kwargs)
    config = check_config(read_config(folder), folder)
    return ARCHITECTURES[config["architecture"]].from_pretrained(folder, map_location=map_location)


def open_image(image: Image.Image | str | Path, draft: tuple[int, int] | None = None) -> Image.Image:
    """A decoded PIL image from a path or image, with a clear error for anything that is not one.

    ``draft`` lets JPEGs decode at a reduced scale no smaller than that size (libjpeg's DCT scaling): far faster
    for large photos that will be shrunk to 32x32 anyway. Other formats ignore it.
    """
    if isinstance(image, Image.Image):
        return image
    try:
        with Image.open(image) as opened:
            if draft is not None:
                opened.draft(None, draft)
            opened.load()
            return opened.copy()
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError) as error:
        raise ConvHubError(f"cannot read {image} as an image: {error}") from None
