"""Pushing saved model folders, and the Space, to the Hub through huggingface_hub's HfApi.

The local save always happens first (training.artifacts); here nothing local is changed. The token is checked
with whoami before anything is uploaded, every repo is staged in full first (weights, config, a card naming its
repo), and uploads are commits of whole folders, so running a publish again uploads only what changed.
"""

from __future__ import annotations

import json
import logging
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import convhub
import httpx2
from convhub.card import is_hub_id
from convhub.errors import ConvHubError, HubUnavailableError, shown
from convhub.hub import (COMMIT, bound_hub_requests, check_revision, endpoint, error_text, hub_reachable, offline_mode,
                         shown_endpoint, within_deadline)
from convhub.zoo import saved_nets, zoo_name
from huggingface_hub import HfApi, get_token
from huggingface_hub.errors import HFValidationError, HfHubHTTPError, RepositoryNotFoundError
from huggingface_hub.utils import validate_repo_id

from . import artifacts, space_bundle

DEFAULT_SOURCE = space_bundle.SPACE_SOURCE / "models"
UPLOAD_DEADLINE_S = 600.0  # one repo's upload, whole (fc's weights are 15 MB)
# What an upload can fail with: HTTP errors, network errors, a README the Hub refused (ValueError), the deadline.
UPLOAD_ERRORS = (HfHubHTTPError, httpx2.HTTPError, ValueError, HubUnavailableError)
MANIFEST = "publish.json"


class PublishError(ConvHubError):
    """Pushing failed or cannot start; the local save is untouched."""


def _hub_error(error: Exception) -> str:
    """An HTTP or network error in one line, without credentials (convhub.hub.error_text), with the Hub's reason
    where it gave one (a 403 read "403 Forbidden: None." without it)."""
    if isinstance(error, HfHubHTTPError):
        first = str(error).splitlines()[0] if str(error) else str(type(error).__name__)
        reason = error.server_message if isinstance(error.server_message, str) else ""
        return error_text(f"{first} {reason}" if reason and reason not in first else first)
    if isinstance(error, (ValueError, ConvHubError)):
        return error_text(error)
    return f"{type(error).__name__}: {error_text(error)}" if str(error) else type(error).__name__


def check_can_push(token: str | None = None, namespaces: tuple[str, ...] = (), *,
                   later: str = "run the same command again once it can") -> str:
    """Fail before any training or upload when a push cannot work: no token, no Hub, a token the Hub refuses, or
    ``namespaces`` that are neither the token's user nor one of its organizations. Returns the token. ``later``: what
    to do when the Hub cannot be reached."""
    token = token or get_token()
    if not token:
        raise PublishError("no Hugging Face token: run `hf auth login`, set HF_TOKEN, or pass --token "
                           "(nothing was pushed)")
    if offline_mode() or not hub_reachable():
        raise PublishError(f"the Hub ({shown_endpoint()}) cannot be reached"
                           f"{' (HF_HUB_OFFLINE is set)' if offline_mode() else ''}: nothing can be pushed now; "
                           f"{later}")
    user, orgs = whoami(token)
    mine = {name.lower() for name in (user, *orgs)}  # the Hub's names are case-insensitive
    foreign = sorted({n for n in namespaces if n.lower() not in mine})
    if foreign:  # the Hub would refuse the first upload with a bare 403
        names = [user, *orgs]
        listed = ", ".join(names[:10]) + (f" and {len(names) - 10} more" if len(names) > 10 else "")
        raise PublishError(f"this token is {user}'s, who may push to {listed}, not to {', '.join(foreign)}: pass "
                           "another namespace, or a token of a member of it")
    return token


def check_stays_private(token: str, repos: list[tuple[str, str]]) -> None:
    """For --private: the Hub keeps an existing repo's visibility (create_repo with exist_ok changes nothing), so a
    public repo of ``repos`` ((repo id, "model" or "space")) would have taken the upload in public. Refused before
    anything is uploaded or trained."""
    api = HfApi(endpoint=endpoint(), token=token)
    public = []
    for repo_id, repo_type in repos:
        try:
            info = within_deadline(30, f"checking {repo_id}", api.repo_info, repo_id, repo_type=repo_type)
        except RepositoryNotFoundError:
            continue  # created private
        except UPLOAD_ERRORS as error:
            raise PublishError(f"checking whether {repo_id} is private failed: {_hub_error(error)}; nothing was "
                               "pushed") from None
        if not info.private:
            public.append(repo_id)
    if public:
        one = len(public) == 1
        raise PublishError(f"--private, but {', '.join(public)} already exist{'s' if one else ''} and "
                           f"{'is' if one else 'are'} public, which the Hub keeps: nothing was pushed. Make "
                           f"{'it' if one else 'them'} private in the repo's settings on the Hub, or push without "
                           "--private")


def _namespace(name) -> bool:
    """A user or organization name as the Hub allows it: letters, digits, -, _ and ., at most 96 characters."""
    return isinstance(name, str) and re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,95}", name) is not None


def check_repo_id(repo_id: str, option: str, *, kind: str = "repo", example: str = "alice") -> None:
    """``namespace/name``, refused before any request otherwise (the Hub created a repo without a namespace under
    the token's user, then the upload to the name as given failed)."""
    if "/" not in repo_id:
        raise PublishError(f"{option} {repo_id!r}: name the {kind} with its namespace, e.g. {example}/{repo_id}")
    try:
        validate_repo_id(repo_id)
    except HFValidationError as error:
        raise PublishError(f"{repo_id!r} is not a valid repo id: {error}") from None


def whoami(token: str) -> tuple[str, list[str]]:
    """The user name the Hub gives this token and the user's organizations (a refused or unchecked token stops
    everything before any upload)."""
    bound_hub_requests()
    try:
        info = within_deadline(30, "checking the token", HfApi(endpoint=endpoint()).whoami, token=token, cache=True)
        # names as the Hub allows them: a server's go into messages (escapes and lines in one retitled the terminal
        # and forged output)
        if not _namespace(info["name"]):
            raise PublishError(f"the Hub ({shown_endpoint()}) named this token's user {shown(info['name'])}, which "
                               "is no Hub user name")
        role = ((info.get("auth") or {}).get("accessToken") or {}).get("role")
        if role == "read":  # the Hub would refuse the first upload with a 403
            raise PublishError(f"this token of {info['name']} can only read: create a write token at "
                               "https://huggingface.co/settings/tokens and pass it with --token or HF_TOKEN")
        orgs = [org["name"] for org in info.get("orgs") or () if isinstance(org, dict) and _namespace(org.get("name"))]
        return info["name"], orgs
    except HfHubHTTPError as error:
        status = error.response.status_code if error.response is not None else None
        if status == 401 and shown_endpoint() != endpoint():
            # httpx sends a URL's user:password as basic auth, in place of the token huggingface_hub gave it
            raise PublishError(f"the Hub ({shown_endpoint()}) refused the request: HF_ENDPOINT carries a "
                               "user:password, which is sent instead of your token; set HF_ENDPOINT without it") \
                from None
        if status == 401:
            raise PublishError(f"the Hub ({shown_endpoint()}) refused this token: create a write token at "
                               "https://huggingface.co/settings/tokens and pass it with --token or HF_TOKEN") from None
        raise PublishError(f"checking the token with the Hub failed: {_hub_error(error)}") from None
    except PublishError:
        raise
    except (httpx2.HTTPError, OSError, KeyError, TypeError, AttributeError, ConvHubError) as error:
        raise PublishError(f"checking the token with the Hub ({shown_endpoint()}) failed: "
                           f"{_hub_error(error)}") from None


def record_for_card(model_dir: str | Path, dataset_id: str | None = None) -> dict | None:
    """The folder's training record as its published card reports it: ``dataset_id`` names the Hub dataset the images
    came from (for a run that did not say so: trained on a folder, or before `--dataset-id` existed)."""
    record = artifacts.read_record(model_dir)
    if dataset_id is None:
        return record
    if not is_hub_id(dataset_id):
        raise PublishError(f"--dataset-id {shown(dataset_id, 100)} is not a Hub dataset id (such as uoft-cs/cifar10)")
    if record is None:
        raise PublishError(f"{shown(str(model_dir), 200)} holds untrained weights: --dataset-id names the data a run "
                           "trained on, and no run trained these")
    return {**record, "dataset_id": dataset_id}


def stage_model(model_dir: str | Path, repo_id: str, out: Path, dataset_id: str | None = None) -> Path:
    """``out`` gets exactly what the repo will hold: config.json and model.safetensors as saved, and a card that
    names ``repo_id``. The folder is loaded first, so a broken save is refused before anything is uploaded."""
    model = convhub.load(model_dir)
    record = record_for_card(model_dir, dataset_id)
    out.mkdir(parents=True, exist_ok=True)
    for name in ("config.json", "model.safetensors"):
        artifacts.copy_regular_file(Path(model_dir) / name, out / name)
    model.generate_model_card(training=record, repo_id=repo_id).save(out / "README.md")
    return out


def _upload(api: HfApi, folder: Path, repo_id: str, *, repo_type: str = "model", revision: str | None,
            private: bool | None, message: str) -> str:
    """One repo: created if missing, the branch too, then one commit of the folder (files that did not change are
    not sent again). Bounded as a whole: the client's timeouts apply per read."""
    return within_deadline(UPLOAD_DEADLINE_S, f"receiving {repo_id}", _upload_now, api, folder, repo_id,
                           repo_type=repo_type, revision=revision, private=private, message=message)


def _upload_now(api: HfApi, folder: Path, repo_id: str, *, repo_type: str, revision: str | None,
                private: bool | None, message: str) -> str:
    kwargs = {"space_sdk": "gradio"} if repo_type == "space" else {}
    api.create_repo(repo_id, repo_type=repo_type, private=private, exist_ok=True, **kwargs)
    if revision and revision != "main":
        api.create_branch(repo_id, repo_type=repo_type, branch=revision, exist_ok=True)
    head = _head(api, repo_id, repo_type, revision)
    said_ourselves, library = _SaidOurselves(), logging.getLogger("huggingface_hub.hf_api")
    library.addFilter(said_ourselves)
    try:
        commit = api.upload_folder(repo_id=repo_id, repo_type=repo_type, folder_path=folder, revision=revision,
                                   commit_message=message)
    finally:
        library.removeFilter(said_ourselves)
    if head is not None and commit.oid == head:  # upload_folder made no commit: the branch holds these files
        return f"{commit.commit_url} (already up to date: nothing was uploaded)"
    return str(commit.commit_url)


def _head(api: HfApi, repo_id: str, repo_type: str, revision: str | None) -> str | None:
    """The branch's commit before the upload, to tell whether it made one; None where the Hub's answer does not say
    (only that note is lost: the upload goes on)."""
    try:
        sha = api.repo_info(repo_id, repo_type=repo_type, revision=revision).sha
    except (*UPLOAD_ERRORS, TypeError, KeyError, AttributeError):
        return None
    return sha if isinstance(sha, str) and COMMIT.fullmatch(sha) else None


class _SaidOurselves(logging.Filter):
    """huggingface_hub's "No files have been modified since last commit. Skipping to prevent empty commit." came
    before a line that said "pushed": _upload_now says it in ours, while it uploads."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("No files have been modified since last commit")


def _rerun(error: Exception) -> str:
    """When running a failed publish again can finish it: a refusal of the token's rights will be refused again."""
    status = getattr(getattr(error, "response", None), "status_code", None)
    return ("Once the token may write there, run the same command again" if status in (401, 403)
            else "Run the same command again")


def check_branch(revision: str | None) -> None:
    """``revision`` is a branch name the Hub takes: refused before any repo is created, not by the Hub halfway
    through a publish."""
    try:
        check_revision(revision, "--revision")
    except ConvHubError as error:
        raise PublishError(str(error)) from None


def push(model_dir: str | Path, repo_id: str, *, revision: str | None = None, private: bool | None = None,
         token: str | None = None, commit_message: str | None = None, dataset_id: str | None = None) -> str:
    """Push one saved model folder (config, weights, a card naming the repo, and ``dataset_id`` where given: see
    record_for_card); returns the commit URL, followed by "(already up to date: nothing was uploaded)" where the
    branch held these files."""
    check_branch(revision)
    check_repo_id(repo_id, "--repo")
    if not Path(model_dir).expanduser().is_dir():  # convhub.load would take a repo id: "nor is it a Hub repo id"
        raise PublishError(f"--from {shown(str(model_dir), 200)} is not a folder: pass a model folder written by "
                           "train or zoo")
    convhub.load(model_dir)  # a folder that is not a model is refused before the Hub is contacted
    record_for_card(model_dir, dataset_id)  # and so is a --dataset-id it cannot take
    token = check_can_push(token, (repo_id.split("/")[0],))
    if private:
        check_stays_private(token, [(repo_id, "model")])
    api = HfApi(endpoint=endpoint(), token=token)
    with tempfile.TemporaryDirectory(prefix="convhub-push-") as tmp:
        staged = stage_model(model_dir, repo_id, Path(tmp) / "repo", dataset_id)
        message = commit_message or f"Upload {convhub.load(staged).model_name} (convhub {convhub.__version__})"
        try:
            return _upload(api, staged, repo_id, revision=revision, private=private, message=message)
        except UPLOAD_ERRORS as error:
            raise PublishError(f"pushing {model_dir} to {repo_id} failed: {_hub_error(error)}; "
                               "the local save is untouched") from None


# --- publish: every trained net and the Space in one command ------------------------------------------------------


@dataclass
class Plan:
    namespace: str
    revision: str
    private: bool | None
    space_id: str
    models: dict[str, Path]  # zoo name -> trained folder
    source: Path
    dataset_id: str | None = None  # named in every card (record_for_card)
    repos: dict[str, str] = field(init=False)

    def __post_init__(self):
        self.repos = {name: convhub.pretrained_repo(name, self.namespace) for name in self.models}


def plan(namespace: str, *, source: str | Path = DEFAULT_SOURCE, only: str | None = None, revision: str | None = None,
         private: bool | None = None, space: str | None = None, dataset_id: str | None = None) -> Plan:
    """What publish will do, checked before anything is written or sent: the trained folders of ``source`` in the
    chapter's order (``only``: a comma-separated subset), each one loaded."""
    check_branch(revision)
    space_id = space or f"{namespace}/convhub"
    check_repo_id(f"{namespace}/convhub-net", "--namespace")
    check_repo_id(space_id, "--space", kind="Space", example=namespace)
    source = Path(source)
    if not source.is_dir():
        raise PublishError(f"no folder {source}: pass --from, a folder of trained nets (as `zoo` writes them)")
    artifacts.refuse_linked_folders(source)
    wanted = None
    if only is not None:
        typed = [n.strip() for n in only.split(",") if n.strip()]
        if not typed:  # an empty $NAMES in a script: not the whole zoo
            raise PublishError(f"--only names no net: pass some of {', '.join(convhub.ZOO)}, or leave --only out")
        wanted, unknown = [], {}
        for name in typed:  # a net's zoo name, or the name its repo writes (`net-res-deep`, as publish names them)
            try:
                wanted.append(zoo_name(name))
            except ConvHubError:
                unknown[shown(name)] = None
    found = saved_nets(source, convhub.ZOO if wanted is None else wanted)  # only those asked for are looked at
    if wanted is not None:
        missing = list(dict.fromkeys(n for n in wanted if n not in found))
        problems = []
        if unknown:
            more = f" and {len(unknown) - 5} more" if len(unknown) > 5 else ""
            problems.append(f"unknown {', '.join(list(unknown)[:5])}{more} (the zoo: {', '.join(convhub.ZOO)})")
        if missing:
            problems.append(f"not trained in {source}: {', '.join(missing)}")
        if problems:
            raise PublishError(f"--only: {'; '.join(problems)}")
    if not found:
        raise PublishError(f"{source} holds no trained nets (folders named after the zoo: {', '.join(convhub.ZOO)})")
    for name, folder in found.items():
        model = convhub.load(folder)
        if model.model_name != name:
            raise PublishError(f"{folder} holds {model.model_name}, not {name}")
        record_for_card(folder, dataset_id)
    return Plan(namespace, revision or "main", private, space_id, found, source, dataset_id)


def stage(the_plan: Plan, out: Path) -> dict:
    """Write every repo as it will be uploaded: out/models/<repo id>/ and out/spaces/<space id>/, and a manifest."""
    staged = {name: stage_model(folder, the_plan.repos[name], out / "models" / the_plan.repos[name],
                                the_plan.dataset_id)
              for name, folder in the_plan.models.items()}
    space_bundle.build_space(out / "spaces" / the_plan.space_id, namespace=the_plan.namespace,
                             revision=the_plan.revision, model_folders=staged, model_repos=the_plan.repos,
                             report_folder=the_plan.source)
    manifest = {"namespace": the_plan.namespace, "revision": the_plan.revision, "private": the_plan.private,
                "models": the_plan.repos, "space": the_plan.space_id,
                "files": {str(p.relative_to(out)): p.stat().st_size for p in sorted(out.rglob("*")) if p.is_file()}}
    (out / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


def is_publish_folder(folder: Path) -> bool:
    return (folder / MANIFEST).is_file() and {p.name for p in folder.iterdir()} <= {MANIFEST, "models", "spaces"}


def dry_run(the_plan: Plan, out: str | Path, *, overwrite: bool = False) -> Path:
    """Write exactly what publish would upload into ``out``, contacting nothing."""
    out = Path(out)
    if str(out).strip() in ("", "."):
        raise artifacts.OutputError("--dry-run needs a folder to write into (new or empty)")
    if out.exists() and not out.is_dir():
        raise artifacts.OutputError(f"{out} is a file: choose a new or empty folder for --dry-run")
    if out.exists() and any(out.iterdir()):
        if not is_publish_folder(out):
            raise artifacts.OutputError(
                f"{out} is not empty and holds no earlier dry run: choose a new or empty folder")
        if not overwrite:
            raise artifacts.OutputError(f"{out} holds an earlier dry run: pass --overwrite to replace it")
    return artifacts.write_folder_atomically(out, lambda tmp: stage(the_plan, tmp), may_replace=is_publish_folder)


def publish(the_plan: Plan, *, token: str | None = None, log=print) -> dict[str, str]:
    """Upload every model repo, then the Space; returns {repo id: commit URL, as push returns it}.

    Stops at the first failure with a PublishError that lists which repos were pushed and which were not; running
    it again is safe (repos are created only if missing, unchanged files are not uploaded again).
    """
    targets = [(repo, "model") for repo in the_plan.repos.values()] + [(the_plan.space_id, "space")]
    token = check_can_push(token, tuple(repo_id.split("/")[0] for repo_id, _ in targets))
    if the_plan.private:
        check_stays_private(token, targets)
    api = HfApi(endpoint=endpoint(), token=token)
    pushed: dict[str, str] = {}
    with tempfile.TemporaryDirectory(prefix="convhub-publish-") as tmp:
        stage(the_plan, Path(tmp))
        for repo_id, repo_type in targets:
            folder = Path(tmp) / f"{repo_type}s" / repo_id
            try:
                # Spaces run only their main branch: the Space goes there, and loads the nets at --revision
                # (baked into its convhub_space.json).
                revision = the_plan.revision if repo_type == "model" else None
                pushed[repo_id] = _upload(api, folder, repo_id, repo_type=repo_type, revision=revision,
                                          private=the_plan.private,
                                          message=f"Publish with convhub {convhub.__version__}")
            except UPLOAD_ERRORS as error:
                rest = [r for r, _ in targets if r not in pushed]
                raise PublishError(
                    f"pushing {repo_id} failed: {_hub_error(error)}\n"
                    f"  pushed ({len(pushed)}): {', '.join(pushed) or 'none'}\n"
                    f"  not pushed ({len(rest)}): {', '.join(rest)}\n"
                    f"{_rerun(error)} to finish: repos that exist are kept and unchanged files are not uploaded "
                    "again.") from None
            log(f"pushed {repo_type} {repo_id}: {pushed[repo_id]}")
    return pushed
