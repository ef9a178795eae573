"""Finding a model folder: a local save_pretrained directory or a Hub repo, failing fast when offline.

This layer knows files and repos, not nets: it hands back a folder and its parsed config.json. Every request to
the Hub is bounded in time: huggingface_hub's own client waits forever on a server that accepts a connection and
never answers, and retries a refused one for ~23 s per file.
"""

from __future__ import annotations

import os
import re
import threading
import time
from pathlib import Path

import httpx2
from huggingface_hub import constants, get_hf_file_metadata, hf_hub_url, snapshot_download
from huggingface_hub.errors import (
    EntryNotFoundError,
    GatedRepoError,
    HfHubHTTPError,
    HFValidationError,
    LocalEntryNotFoundError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)
from huggingface_hub.utils import _http, validate_repo_id

from . import env
from .config import parse_config
from .errors import ConvHubError, HubUnavailableError

MODEL_FILES = ["config.json", "model.safetensors", "README.md"]
# What a convhub repo's files may weigh: the nets are at most 20M parameters (80 MB in fp32, 160 in fp64).
MAX_FILE_BYTES = {"config.json": 64 * 1024, "README.md": 256 * 1024, "model.safetensors": 200 * 2**20}
PROBE_TIMEOUT_S = 3.0  # one HTTP request that must be answered (any status) for the Hub to count as reachable
HUB_TIMEOUT_S = 10.0  # connect/read/write timeout of every other request (a download reads in chunks)
# A whole Hub operation (metadata and downloads of one repo): timeouts apply per read, and a server that drips a
# byte every few seconds would hold a request forever. CONVHUB_HUB_DEADLINE overrides (read at each download).
HUB_DEADLINE_S = 120.0
_PROBE_TTL_S = 30.0
_probe_cache: dict[str, tuple[float, bool]] = {}
_client_lock = threading.Lock()


def hub_deadline_s() -> float:
    """Seconds a whole repo's download may take: CONVHUB_HUB_DEADLINE, else HUB_DEADLINE_S."""
    return env.number("CONVHUB_HUB_DEADLINE", HUB_DEADLINE_S, kind=float, minimum=1, maximum=86400)


def endpoint() -> str:
    """HF_ENDPOINT as it is now (huggingface_hub reads it once, at import); ConvHubError where it is not a URL."""
    return env.hub_endpoint(constants.ENDPOINT)


# What git refuses in a branch or tag name (git check-ref-format), and so the Hub: a space, control characters,
# ~ ^ : ? * [ \ anywhere; "..", "//" and "@{" anywhere; a part that starts with "." or ends with ".lock"; "/" or "-"
# first; "/" or "." last.
BAD_REF = re.compile(r"[\x00-\x20\x7f~^:?*\[\\]|\.\.|//|@\{|(^|/)\.|\.lock($|/)|^[/-]|[/.]$")


def check_revision(revision: str | None, setting: str = "revision") -> None:
    """``revision`` is a name git accepts for a branch (a tag or a commit hash is one too): a typo is refused here,
    before any request, rather than by the Hub halfway through."""
    if revision is not None and (revision in ("", "@", "HEAD") or len(revision) > 200 or BAD_REF.search(revision)):
        raise ConvHubError(f"{setting} {revision[:80]!r} is not a branch name git accepts (`git check-ref-format "
                           "--branch`): no spaces, '..' or any of ~^:?*[\\, no part starting with '.'")


def check_namespace(namespace: str | None, setting: str = "namespace") -> None:
    """``namespace`` names the zoo's repos (``<namespace>/convhub-<name>``) as the Hub's ids allow."""
    if namespace is None:
        return
    try:
        validate_repo_id(f"{namespace}/convhub-net")
    except HFValidationError as error:
        raise ConvHubError(f"{setting} {namespace[:80]!r} cannot name a Hub repo: {error}") from None


def offline_mode() -> bool:
    return constants.HF_HUB_OFFLINE or os.environ.get("HF_HUB_OFFLINE", "").upper() in ("1", "ON", "YES", "TRUE")


def _bound_timeouts(request: httpx2.Request) -> None:
    """A request hook: every timeout left unset (None: wait forever, which huggingface_hub passes explicitly for its
    API calls) becomes HUB_TIMEOUT_S."""
    timeout = request.extensions.get("timeout") or {}
    request.extensions["timeout"] = {key: HUB_TIMEOUT_S if timeout.get(key) is None else timeout[key]
                                     for key in ("connect", "read", "write", "pool")}


def _bounded_client() -> httpx2.Client:
    """huggingface_hub's default client, with every request's timeouts bounded."""
    client = _http.default_client_factory()
    hooks = client.event_hooks
    client.event_hooks = {**hooks, "request": [*hooks.get("request", []), _bound_timeouts]}
    return client


def within_deadline(seconds: float, what: str, fn, *args, **kwargs):
    """fn(*args, **kwargs), or HubUnavailableError after ``seconds``. It runs in a daemon thread that is left behind
    when the deadline passes (Python cannot stop a thread); the process may still exit."""
    outcome: dict = {}

    def run():
        try:
            outcome["value"] = fn(*args, **kwargs)
        except BaseException as error:  # noqa: BLE001 - handed to the caller
            outcome["error"] = error

    worker = threading.Thread(target=run, name=f"convhub-hub: {what}", daemon=True)
    worker.start()
    worker.join(seconds)
    if worker.is_alive():
        raise HubUnavailableError(f"the Hub ({endpoint()}) did not finish {what} within {seconds:.0f} s: it is too "
                                  "slow or not answering; try again later")
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


def bound_hub_requests() -> None:
    """Give huggingface_hub's shared HTTP client timeouts, unless the user installed a client factory of their own."""
    with _client_lock:
        if _http._GLOBAL_CLIENT_FACTORY is _http.default_client_factory:
            _http.set_client_factory(_bounded_client)


def hub_reachable(timeout: float = PROBE_TIMEOUT_S) -> bool:
    """One short HTTP request to the endpoint (cached briefly): any answer means reachable. A refused connection, or
    a server that accepts and never answers, fails within ``timeout`` instead of the client's retries per file."""
    if offline_mode():
        return False
    bound_hub_requests()
    url = endpoint()
    checked_at, reachable = _probe_cache.get(url, (0.0, False))
    if time.monotonic() - checked_at < _PROBE_TTL_S:
        return reachable
    try:
        within_deadline(timeout + 1, "answering a probe", _http.get_session().head, f"{url}/api/models",
                        timeout=timeout, follow_redirects=False)
        reachable = True
    except (httpx2.HTTPError, HubUnavailableError):
        reachable = False
    _probe_cache[url] = (time.monotonic(), reachable)
    return reachable


def unavailable_reason() -> str:
    return "HF_HUB_OFFLINE is set" if offline_mode() else f"the Hub ({endpoint()}) cannot be reached"


def repo_name(name_or_path: str | Path) -> str:
    """The name without timm's ``hf-hub:`` prefix; an empty one is refused (it would mean the current folder)."""
    name = str(name_or_path).strip()
    name = name.removeprefix("hf-hub:").strip()
    if not name:
        raise ConvHubError("no model named: pass a save_pretrained folder or a Hub repo id ('namespace/name')")
    return name


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
    name = repo_name(name_or_path)
    if Path(name).expanduser().is_dir():
        return Path(name).expanduser()
    try:
        validate_repo_id(name)
    except HFValidationError as error:
        raise ConvHubError(
            f"{name!r} is neither a local folder nor a valid Hub repo id ('namespace/name'): {error}") from None
    if "/" not in name and not Path(name).exists():
        raise ConvHubError(f"no folder {name!r}, and convhub repos on the Hub are named 'namespace/name'")

    online = not local_files_only and hub_reachable()
    at_revision = f" at revision {revision!r}" if revision else ""
    try:
        folder = within_deadline(hub_deadline_s(), f"sending {name}", _download, name, revision=revision,
                                 cache_dir=cache_dir, token=token, force_download=force_download, online=online)
    except GatedRepoError:
        raise ConvHubError(f"{name} is gated: accept its terms on the Hub and log in (hf auth login)") from None
    except RepositoryNotFoundError:
        raise ConvHubError(
            f"{name!r} is not a local folder, and repo {name!r} does not exist on {endpoint()} "
            "(or is private: pass token= or log in)"
        ) from None
    except RevisionNotFoundError:
        raise ConvHubError(f"repo {name!r} has no revision {revision!r}") from None
    except (LocalEntryNotFoundError, FileNotFoundError) as error:
        cause = error.__cause__ or error.__context__
        if online and not isinstance(cause, (httpx2.TimeoutException, httpx2.NetworkError)):
            raise ConvHubError(f"could not download {name} (revision {revision or 'main'}): {error}") from error
        reason = (f"the Hub ({endpoint()}) did not answer within {HUB_TIMEOUT_S:.0f} s" if online
                  else unavailable_reason())
        raise HubUnavailableError(
            f"{name!r} is not a local folder, {reason} and the HF cache holds no copy of it{at_revision}. "
            "Connect once to download it, or pass a local save_pretrained folder instead."
        ) from None
    except (httpx2.TimeoutException, httpx2.NetworkError) as error:  # mid-way: the Hub stopped answering
        reason = (f"the Hub did not answer within {HUB_TIMEOUT_S:.0f} s" if isinstance(error, httpx2.TimeoutException)
                  else str(error) or type(error).__name__)
        raise HubUnavailableError(f"downloading {name}{at_revision} from {endpoint()} failed: {reason}; "
                                  "try again later") from None
    except HfHubHTTPError as error:  # 5xx after the client's retries, 401/403...
        raise ConvHubError(f"downloading {name}{at_revision} from {endpoint()} failed: {error}") from None
    except httpx2.HTTPError as error:  # redirect loops, protocol errors
        raise HubUnavailableError(f"downloading {name}{at_revision} from {endpoint()} failed: "
                                  f"{str(error) or type(error).__name__}") from None
    except (TypeError, KeyError, ValueError, AttributeError) as error:  # an answer of the wrong shape
        raise ConvHubError(f"the Hub's ({endpoint()}) answer about {name} could not be read: "
                           f"{type(error).__name__}: {str(error)[:200]}") from None
    if not (Path(folder) / "config.json").is_file():
        raise ConvHubError(f"repo {name!r} has no config.json: it is not a convhub model")
    return Path(folder)


def _download(name: str, *, revision, cache_dir, token, force_download: bool, online: bool) -> str:
    """The repo's model files into the HF cache, after checking their sizes (online), or the cached snapshot."""
    if online:  # one HEAD per file (no retries), so nothing is downloaded that a convhub model could not be
        for filename, limit in MAX_FILE_BYTES.items():
            url = hf_hub_url(name, filename, revision=revision, endpoint=endpoint())
            try:
                size = get_hf_file_metadata(url, token=token, timeout=HUB_TIMEOUT_S, endpoint=endpoint()).size
            except (EntryNotFoundError, RepositoryNotFoundError, RevisionNotFoundError):
                continue  # not there: snapshot_download says what is missing, and a README may be
            if isinstance(size, int) and size > limit:
                raise ConvHubError(f"{name}'s {filename} is {size:,} bytes; a convhub model's is at most "
                                   f"{limit:,}: not downloading it")
    return snapshot_download(
        name, revision=revision, cache_dir=cache_dir, token=token, allow_patterns=MODEL_FILES,
        force_download=force_download, local_files_only=not online, endpoint=endpoint(), etag_timeout=HUB_TIMEOUT_S)


def read_config(folder: str | Path) -> dict:
    """A model folder's config.json, parsed strictly (see convhub.config.parse_config); nothing about nets yet."""
    path = Path(folder) / "config.json"
    if not path.is_file():
        raise ConvHubError(f"{folder} has no config.json: not a convhub model folder (save one with save_pretrained)")
    return parse_config(path)
