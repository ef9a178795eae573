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
from urllib.parse import urlsplit, urlunsplit

import httpx2
from huggingface_hub import HfApi, constants, hf_hub_download, snapshot_download
from huggingface_hub.errors import (
    GatedRepoError,
    HfHubHTTPError,
    HFValidationError,
    LocalEntryNotFoundError,
    RemoteEntryNotFoundError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)
from huggingface_hub.file_download import repo_folder_name
from huggingface_hub.utils import _http, validate_repo_id

from . import env
from .config import parse_config
from .errors import ConvHubError, HubUnavailableError, cannot_read, one_line, shown

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
# huggingface_hub names HF-cache paths after what the Hub answers: a file's ETag (blobs/<etag>) and the commit's id
# (snapshots/<commit>, refs/<revision>). Answers of any other form are refused (_check_answer).
COMMIT = re.compile(r"[0-9a-f]{40}")
FILE_HASH = re.compile(r"[0-9a-f]{40}|[0-9a-f]{64}")  # a git blob's sha1, or an LFS file's sha256
HUB_DOMAINS = ("hf.co", "huggingface.co")  # the Hub's own CDNs, where it redirects downloads of large files
MAX_ANSWER_BYTES = 16 * 2**20  # any answer but a file being downloaded (JSON: a 1,000-file listing page is ~300 KB)
# The Hub operation running in this thread: the bytes a body may have (download) and when it is abandoned
# (within_deadline); both are checked as the body streams in, and a new request past the deadline is refused.
_operation = threading.local()


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


def shown_endpoint() -> str:
    """endpoint() for messages, without any user:password in it (messages reach logs and the Space's page)."""
    parts = urlsplit(endpoint())
    return urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))


TOKEN = re.compile(r"hf_[A-Za-z0-9]{30,}")  # a Hugging Face access token (hf_ and 34 letters and digits)


def error_text(error: BaseException, limit: int = 300) -> str:
    """An error's message for ours, in one printable line: without any user:password (huggingface_hub and httpx put
    the full URL in theirs, and an HF_ENDPOINT may carry credentials) and cut to ``limit`` characters (a server's
    error text is its own to make long)."""
    # ESC and BEL from a server set a terminal's colours and title, and erased the line of our own message; a
    # server may echo the token it was sent
    text = TOKEN.sub("hf_…", env.USERINFO.sub("", one_line(error) or type(error).__name__))
    return text if len(text) <= limit else text[:limit - 1] + "…"


def offline_mode() -> bool:
    return constants.HF_HUB_OFFLINE or os.environ.get("HF_HUB_OFFLINE", "").upper() in ("1", "ON", "YES", "TRUE")


def _bound_timeouts(request: httpx2.Request) -> None:
    """A request hook: every timeout left unset (None: wait forever, which huggingface_hub passes explicitly for its
    API calls) becomes HUB_TIMEOUT_S; no request starts once its operation's deadline has passed."""
    _check_deadline()
    request.headers["Accept-Encoding"] = "identity"  # a body is counted as it arrives: 1 KB of gzip was 600 MB
    timeout = request.extensions.get("timeout") or {}
    request.extensions["timeout"] = {key: HUB_TIMEOUT_S if timeout.get(key) is None else timeout[key]
                                     for key in ("connect", "read", "write", "pool")}


def _check_deadline() -> None:
    deadline = getattr(_operation, "deadline", None)
    if deadline is not None and time.monotonic() > deadline:
        raise HubUnavailableError(_operation.late)


def _refuse(response: httpx2.Response, what: str) -> None:
    request = response.request
    raise ConvHubError(f"the Hub ({shown_endpoint()}) answered {request.method} {request.url.path[:120]} "
                       f"with {what}: refused, nothing was written")


def _bare_etag(etag: str) -> str:
    return etag.removeprefix("W/").strip('"')


def _may_redirect(origin: httpx2.URL, target: httpx2.URL) -> bool:
    """To the same server (scheme, host and port), or to the Hub's own CDNs over https: no other address (another
    machine's, another service on this one) is sent a request on a server's word."""
    host = (target.host or "").lower()
    return (target.scheme, host, target.port) == (origin.scheme, (origin.host or "").lower(), origin.port) or (
        target.scheme == "https" and any(host == d or host.endswith("." + d) for d in HUB_DOMAINS))


def _joined(response: httpx2.Response, reference: str, what: str) -> httpx2.URL:
    """The URL a header points to, or a refusal where it is not one (httpx's InvalidURL is no HTTPError)."""
    try:
        return response.request.url.join(reference)
    except (httpx2.InvalidURL, ValueError, TypeError):
        _refuse(response, f"{what} to something that is not a URL ({reference[:80]!r})")


def _check_answer(response: httpx2.Response) -> None:
    """A response hook, before huggingface_hub uses an answer: its commit id and file hashes must be of their form
    (they become paths in the HF cache: an ETag of ../../.bashrc wrote that file), a redirect may only go to the same
    host or the Hub's CDNs, and the body is counted as it streams in (a HEAD's size is only a claim)."""
    url = response.request.url
    commit = response.headers.get("X-Repo-Commit")
    if commit is not None and not COMMIT.fullmatch(commit):
        _refuse(response, f"a commit id that is not one ({commit[:80]!r})")
    location = response.headers.get("Location")
    target = _joined(response, location, "a redirect") if location is not None else None
    if target is not None and not _may_redirect(url, target):  # any answer's: a HEAD's is where the GET goes
        _refuse(response, f"a redirect to {str(target)[:120]!r} (another server)")
    # A file's metadata, as huggingface_hub reads it: the last answer to a HEAD (it follows redirects to the same
    # server or the Hub itself, and stops at one to a CDN), which must name a commit; its file hash is the linked one,
    # else the ETag. (Other answers' ETags are never used, and the Hub's own are often weak ones, W/"46f-…".)
    followed = response.has_redirect_location and _http._is_same_or_hub_host(str(url), str(target))
    if response.request.method == "HEAD" and commit is not None and not followed:
        header = "X-Linked-Etag" if response.headers.get("X-Linked-Etag") else "ETag"
        etag = response.headers.get(header)
        if etag is not None and not FILE_HASH.fullmatch(_bare_etag(etag)):
            _refuse(response, f"an {header} that is not a file's hash ({etag[:80]!r})")
    next_page = response.links.get("next", {}).get("url")
    if next_page and not _may_redirect(url, _joined(response, next_page, "a next page")):
        _refuse(response, f"a next page on another server ({next_page[:120]!r})")
    encoding = response.headers.get("Content-Encoding", "identity").strip().lower()
    if encoding != "identity":
        _refuse(response, f"a body encoded as {encoding[:40]!r} (identity was asked for)")
    limit = getattr(_operation, "max_bytes", MAX_ANSWER_BYTES)
    what = getattr(_operation, "what", f"the Hub's answer to {url.path[:120]}")
    declared = response.headers.get("X-Linked-Size") or response.headers.get("Content-Length") or ""
    # "²" is a digit to isdigit() and not to int(), nor are more than 4,300 digits: what is no size is not checked
    if declared.isascii() and declared.isdigit() and len(declared) <= 20 and int(declared) > limit:
        raise ConvHubError(f"{what} is {int(declared):,} bytes; at most {limit:,} are expected: not downloading it")
    response.stream = _CountedBody(response.stream, limit, what)


class _CountedBody(httpx2.SyncByteStream):
    """A response body that stops at ``limit`` bytes, or when its operation's deadline passes."""

    def __init__(self, stream, limit: int, what: str):
        self.stream, self.limit, self.what = stream, limit, what

    def __iter__(self):
        seen = 0
        for chunk in self.stream:
            seen += len(chunk)
            if seen > self.limit:
                raise ConvHubError(f"{self.what} went on past {self.limit:,} bytes: not downloading it")
            _check_deadline()
            yield chunk

    def close(self) -> None:
        self.stream.close()


def _bounded_client() -> httpx2.Client:
    """huggingface_hub's default client, with every request's timeouts bounded and every answer checked."""
    return _with_checks(_http.default_client_factory())


def _with_checks(client: httpx2.Client) -> httpx2.Client:
    hooks = client.event_hooks
    if _check_answer not in hooks.get("response", []):
        client.event_hooks = {"request": [*hooks.get("request", []), _bound_timeouts],
                              "response": [*hooks.get("response", []), _check_answer]}
    return client


def within_deadline(seconds: float, what: str, fn, *args, **kwargs):
    """fn(*args, **kwargs), or HubUnavailableError after ``seconds``. It runs in a daemon thread, whose Hub requests
    stop at the deadline (the next request, chunk of a body or byte of headers fails), though Python cannot stop the
    thread itself."""
    outcome: dict = {}

    late = (f"the Hub ({shown_endpoint()}) did not finish {what} within {seconds:.0f} s: it is too slow or not "
            "answering; try again later")

    def run():
        _operation.deadline, _operation.late = time.monotonic() + seconds, late  # its requests stop too
        try:
            outcome["value"] = fn(*args, **kwargs)
        except BaseException as error:  # noqa: BLE001 - handed to the caller
            outcome["error"] = error

    worker = threading.Thread(target=run, name=f"convhub-hub: {what}", daemon=True)
    worker.start()
    worker.join(seconds)
    if worker.is_alive():
        # A request waiting on an answer that drips its headers (each byte within the read timeout) is past every
        # check: closing the client's connections ends it at its next byte (a new client serves the next request).
        _http.close_session()
        raise HubUnavailableError(late)
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


def bound_hub_requests() -> None:
    """Give huggingface_hub's shared HTTP client timeouts and answer checks. A client factory of the user's own is
    kept, wrapped so that every client it builds gets the checks too (huggingface_hub builds a new one after a
    connection error). Xet is turned off: its Rust client fetches from any server an answer names, with no such
    checks (plain HTTP downloads from the Hub work for every file)."""
    constants.HF_HUB_DISABLE_XET = True
    with _client_lock:
        factory = _http._GLOBAL_CLIENT_FACTORY
        if factory is _http.default_client_factory:
            _http.set_client_factory(_bounded_client)
        elif factory is not _bounded_client and not getattr(factory, "checked_by_convhub", False):
            def checked_factory():
                return _with_checks(factory())

            checked_factory.checked_by_convhub = True
            _http.set_client_factory(checked_factory)
        _with_checks(_http.get_session())


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
    except Exception:  # noqa: BLE001 - a probe that fails in any way is no answer: the caller goes on offline
        reachable = False
    _probe_cache[url] = (time.monotonic(), reachable)
    return reachable


def unavailable_reason() -> str:
    return "HF_HUB_OFFLINE is set" if offline_mode() else f"the Hub ({shown_endpoint()}) cannot be reached"


def repo_name(name_or_path: str | Path) -> str:
    """The name without timm's ``hf-hub:`` prefix; an empty one is refused (it would mean the current folder)."""
    name = os.fspath(name_or_path) if isinstance(name_or_path, os.PathLike) else str(name_or_path)
    name = name.strip().removeprefix("hf-hub:").strip()
    if not name:
        raise ConvHubError("no model named: pass a save_pretrained folder or a Hub repo id ('namespace/name')")
    return name


def _expanded(name: str) -> Path:
    """``name`` as a path, ~ expanded where it names a user who exists (Path.expanduser raises on one who does not)."""
    try:
        return Path(name).expanduser()
    except RuntimeError:
        return Path(name)


def resolve(
    name_or_path: str | Path,
    *,
    revision: str | None = None,
    cache_dir: str | Path | None = None,
    token: str | bool | None = None,
    force_download: bool = False,
    local_files_only: bool = False,
) -> Path:
    """A local folder holding config.json + model.safetensors: the folder itself, or the Hub repo's snapshot.
    ``hf-hub:namespace/name`` is the Hub repo only, as in timm: a folder of that name here is not looked at."""
    name = repo_name(name_or_path)
    hub_only = isinstance(name_or_path, str) and name_or_path.strip().startswith("hf-hub:")
    if hub_only:
        try:
            validate_repo_id(name)
            repo_id = "/" in name
        except HFValidationError:
            repo_id = False
        if not repo_id:
            raise ConvHubError(f"hf-hub:{shown(name, 200)} names no Hub repo: hf-hub: takes a repo id "
                               "('namespace/name'); pass a folder without it")
    local = _expanded(name)
    try:
        is_dir, is_file = (False, False) if hub_only else (local.is_dir(), local.is_file())
    except OSError as error:  # a name too long for the system, a folder not readable: is_dir raises
        raise cannot_read(name, error) from None
    if is_dir:
        if revision is not None:  # ignored, a pinned revision would load whatever the folder holds
            raise ConvHubError(f"{name!r} is a local folder: revision={shown(revision)} applies to Hub repos only")
        return local
    if is_file:
        raise ConvHubError(f"{name!r} is a file: pass the folder that holds config.json and model.safetensors")
    check_revision(revision)  # a path in the HF cache: refs/<revision>
    try:
        validate_repo_id(name)
    except HFValidationError:
        raise ConvHubError(f"no folder {shown(name, 200)}, nor is it a Hub repo id ('namespace/name')") from None
    if "/" not in name and not Path(name).exists():
        raise ConvHubError(f"no folder {name!r}, and convhub repos on the Hub are named 'namespace/name'")

    online = not local_files_only and hub_reachable()
    at_revision = f" at revision {revision!r}" if revision else ""
    # hf-hub: never reads a folder: "is not a local folder" would be wrong where one of that name stands here
    not_local = f"{name!r} is a Hub repo" if hub_only else f"{name!r} is not a local folder"
    try:
        folder = within_deadline(hub_deadline_s(), f"sending {name}", _download, name, revision=revision,
                                 cache_dir=cache_dir, token=token, force_download=force_download, online=online)
    except GatedRepoError:
        raise ConvHubError(f"{name} is gated: accept its terms on the Hub and log in (hf auth login)") from None
    except RepositoryNotFoundError:
        raise ConvHubError(
            f"{not_local}, and repo {name!r} does not exist on {shown_endpoint()} "
            "(or is private: pass token= or log in)"
        ) from None
    except RevisionNotFoundError:
        raise ConvHubError(f"repo {name!r} has no revision {revision!r}") from None
    except (LocalEntryNotFoundError, FileNotFoundError) as error:
        cause = error.__cause__ or error.__context__
        if online and not isinstance(cause, (httpx2.TimeoutException, httpx2.NetworkError)):
            raise ConvHubError(f"could not download {name} (revision {revision or 'main'}): "
                              f"{error_text(error)}") from error
        reason = (f"the Hub ({shown_endpoint()}) did not answer within {HUB_TIMEOUT_S:.0f} s" if online
                  else "local_files_only is set" if local_files_only else unavailable_reason())
        raise HubUnavailableError(
            f"{not_local}, {reason} and the HF cache holds no copy of it{at_revision}. "
            "Connect once to download it, or pass a local save_pretrained folder instead."
        ) from None
    except (httpx2.TimeoutException, httpx2.NetworkError) as error:  # mid-way: the Hub stopped answering
        reason = (f"the Hub did not answer within {HUB_TIMEOUT_S:.0f} s" if isinstance(error, httpx2.TimeoutException)
                  else error_text(error))
        raise HubUnavailableError(f"downloading {name}{at_revision} from {shown_endpoint()} failed: {reason}; "
                                  "try again later") from None
    except HfHubHTTPError as error:  # 5xx after the client's retries, 401/403...
        raise ConvHubError(f"downloading {name}{at_revision} from {shown_endpoint()} failed: "
                           f"{error_text(error)}") from None
    except httpx2.HTTPError as error:  # redirect loops, protocol errors
        raise HubUnavailableError(f"downloading {name}{at_revision} from {shown_endpoint()} failed: "
                                  f"{error_text(error)}") from None
    except (TypeError, KeyError, ValueError, AttributeError, httpx2.InvalidURL) as error:  # an answer of the wrong shape
        raise ConvHubError(f"the Hub's ({shown_endpoint()}) answer about {name} could not be read: "
                           f"{type(error).__name__}: {error_text(error, 200)}") from None
    except ConvHubError:  # ours, already clear (HubUnavailableError is a ConnectionError too)
        raise
    except (OSError, RuntimeError) as error:  # a body longer than it said, a cache that cannot be written
        raise ConvHubError(f"downloading {name}{at_revision} from {shown_endpoint()} failed: "
                           f"{type(error).__name__}: {error_text(error, 200)}") from None
    if not (Path(folder) / "config.json").is_file():
        raise ConvHubError(f"repo {name!r} has no config.json: it is not a convhub model")
    return Path(folder)


def _download(name: str, *, revision, cache_dir, token, force_download: bool, online: bool) -> Path:
    """The repo's model files into the HF cache (online), or the copy already there."""
    if online:
        return download(name, MAX_FILE_BYTES, revision=revision, cache_dir=cache_dir, token=token,
                        force_download=force_download)
    return cached_snapshot(name, MODEL_FILES, required=("config.json", "model.safetensors"), revision=revision,
                           cache_dir=cache_dir)


def download(repo_id: str, files: dict[str, int], *, repo_type: str = "model", revision: str | None = None,
             cache_dir: str | Path | None = None, token: str | bool | None = None,
             force_download: bool = False) -> Path:
    """``files`` (each with the most bytes it may have; one the repo lacks is skipped) into the HF cache, all from one
    commit: the first file's answer names it (and the cache learns the branch, for offline use), the others are
    fetched at it. Returns the snapshot folder. File by file with hf_hub_download, not snapshot_download: that one
    also makes cache paths of the listing's commit id, a JSON field no header check sees."""
    bound_hub_requests()
    # Which of them the repo has, from its listing (a missing file's answer varies: 404 on the Hub, 401 on mirrors).
    info = HfApi(endpoint=endpoint()).repo_info(repo_id, repo_type=repo_type, revision=revision or "main", token=token,
                                                timeout=HUB_TIMEOUT_S)
    present = {sibling.rfilename for sibling in info.siblings or []}
    folder, at, first = None, revision, None
    for filename, limit in files.items():
        if filename not in present:
            continue
        _operation.max_bytes, _operation.what = limit, f"{repo_id}'s {filename}"
        try:
            path = hf_hub_download(repo_id, filename, repo_type=repo_type, revision=at, cache_dir=cache_dir,
                                   token=token, force_download=force_download, endpoint=endpoint(),
                                   etag_timeout=HUB_TIMEOUT_S)
        except RemoteEntryNotFoundError:  # not LocalEntryNotFoundError: offline, nothing in the cache
            continue
        finally:
            del _operation.max_bytes, _operation.what
        snapshot = _checked_snapshot(repo_id, repo_type, cache_dir, Path(path), filename)
        if folder is not None and snapshot.name != folder.name:  # asked at the first one's commit, answered another
            raise ConvHubError(f"the Hub's answers about {repo_id!r} came from two commits: {first} from "
                               f"{folder.name[:12]}, {filename} from {snapshot.name[:12]}; try again later")
        folder, at, first = snapshot, snapshot.name, first or filename
    if folder is None:
        raise ConvHubError(f"repo {repo_id!r} has none of {', '.join(files)}")
    return folder


def cached_snapshot(repo_id: str, patterns: list[str], *, required: tuple[str, ...] = (), repo_type: str = "model",
                    revision: str | None = None, cache_dir: str | Path | None = None) -> Path:
    """The snapshot an earlier download left in the HF cache for ``revision``, without any request; checked to be one
    (a cache written by an older client may name a folder anywhere in refs/<revision>) and to hold ``required``."""
    folder = Path(snapshot_download(repo_id, repo_type=repo_type, revision=revision, allow_patterns=patterns,
                                    cache_dir=cache_dir, local_files_only=True))
    for path in folder.rglob("*"):
        _checked_snapshot(repo_id, repo_type, cache_dir, path, path.relative_to(folder).as_posix())
    missing = [name for name in required if not (folder / name).is_file()]
    if missing:
        raise LocalEntryNotFoundError(f"the HF cache's copy of {repo_id} lacks {', '.join(missing)}")
    return _checked_snapshot(repo_id, repo_type, cache_dir, folder / ".", "")


def _checked_snapshot(repo_id: str, repo_type: str, cache_dir, path: Path, filename: str) -> Path:
    """The snapshot folder of ``path`` (``filename`` in it), if it is `<cache>/<repo>/snapshots/<commit>/<filename>`
    and what it links to lies inside `<cache>/<repo>`; ConvHubError otherwise."""
    cache = os.path.realpath(os.path.expanduser(cache_dir or constants.HF_HUB_CACHE))  # as huggingface_hub has it
    repo_cache = Path(cache) / repo_folder_name(repo_id=repo_id, repo_type=repo_type)
    folder = Path(os.path.normpath(path))
    for _ in Path(filename).parts:
        folder = folder.parent
    real = Path(os.path.realpath(folder))
    inside = os.path.realpath(path).startswith(f"{repo_cache}{os.sep}")
    if real.parent != repo_cache / "snapshots" or not COMMIT.fullmatch(real.name) or not inside:
        raise ConvHubError(f"the HF cache's copy of {repo_id} is not where a download puts it ({path}): refused; "
                           f"delete {repo_cache} and download it again")
    return folder


def read_config(folder: str | Path) -> dict:
    """A model folder's config.json, parsed strictly (see convhub.config.parse_config); nothing about nets yet."""
    path = Path(folder) / "config.json"
    try:
        is_file = path.is_file()
    except OSError as error:  # a folder not readable: is_file raises
        raise cannot_read(folder, error) from None
    if not is_file:
        raise ConvHubError(f"{folder} has no config.json: not a convhub model folder (save one with save_pretrained)")
    return parse_config(path)
