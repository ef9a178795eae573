"""Pushing saved model folders to the Hub (the local save always happens first, in training.artifacts)."""

from __future__ import annotations

from pathlib import Path

import convhub
import torch
from convhub.errors import ConvHubError
from convhub.hub import endpoint, hub_reachable, offline_mode
from huggingface_hub import HfApi, get_token
from huggingface_hub.errors import HfHubHTTPError

from . import artifacts


class PublishError(ConvHubError):
    """Pushing failed or cannot start; the local save is untouched."""


def check_can_push(token: str | None = None) -> str:
    """Fail before any training when a push cannot work: no token, or no Hub."""
    token = token or get_token()
    if not token:
        raise PublishError("no Hugging Face token: run `hf auth login`, set HF_TOKEN, or pass --token "
                           "(models are still saved locally)")
    if offline_mode() or not hub_reachable():
        raise PublishError(f"the Hub ({endpoint()}) cannot be reached"
                           f"{' (HF_HUB_OFFLINE is set)' if offline_mode() else ''}: nothing can be pushed now; "
                           "save locally and run `python -m training push` later")
    return token


def push(model_dir: str | Path, repo_id: str, *, revision: str | None = None, private: bool | None = None,
         token: str | None = None, commit_message: str | None = None) -> str:
    """Push a saved model folder through PyTorchModelHubMixin.push_to_hub; returns the commit URL."""
    token = check_can_push(token)
    model = convhub.load(model_dir)
    record = artifacts.read_record(model_dir)
    api = HfApi(endpoint=endpoint(), token=token)
    try:
        api.create_repo(repo_id, private=private, exist_ok=True)
        if revision and revision != "main":
            api.create_branch(repo_id, branch=revision, exist_ok=True)
        commit = model.push_to_hub(
            repo_id, token=token, private=private, branch=revision,
            commit_message=commit_message or f"Upload {model.model_name} (convhub {convhub.__version__})",
            model_card_kwargs={"training": record},
        )
    except HfHubHTTPError as error:
        raise PublishError(f"pushing {model_dir} to {repo_id} failed: {error}; the local save is untouched") from None
    return str(getattr(commit, "commit_url", commit))
