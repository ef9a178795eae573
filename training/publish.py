"""Artifacts: save a trained net locally (always first), then optionally push it to the Hub."""

from __future__ import annotations

import platform
from pathlib import Path

import convhub
import torch
from convhub.errors import ConvHubError
from convhub.hub import endpoint, hub_reachable, offline_mode
from convhub.card import training_record as card_training_record
from huggingface_hub import HfApi, get_token
from huggingface_hub.errors import HfHubHTTPError


class PublishError(ConvHubError):
    """Pushing failed or cannot start; the local save is untouched."""


def training_record(model, data, recipe, result, train_metrics: dict, val_metrics: dict, *, seed: int, device) -> dict:
    """Everything the model card reports about a run (also stored as the card's `convhub` metadata)."""
    return {
        "model_name": model.model_name,
        "params": model.num_params,
        "val_accuracy": val_metrics["accuracy"],
        "train_accuracy": train_metrics["accuracy"],
        "per_class_accuracy": val_metrics["per_class_accuracy"],
        "confusion_matrix": val_metrics["confusion_matrix"],
        "epochs": len(result.history),
        "seconds": round(result.seconds, 1),
        "images_per_second": round(result.images_per_second),
        "device": str(device) if str(device) != "cpu" else f"cpu ({platform.processor() or platform.machine()}, "
                                                            f"{torch.get_num_threads()} threads)",
        "dataset": data.source,
        "n_train": len(data.train),
        "n_val": len(data.val),
        "validation": data.val_source,
        "recipe": recipe.name,
        "recipe_description": recipe.describe(),
        "recipe_config": recipe.to_dict(),
        "seed": seed,
        "convhub_version": convhub.__version__,
        "torch_version": str(torch.__version__),
    }


def save(model, out_dir: str | Path, record: dict) -> Path:
    out_dir = Path(out_dir)
    (out_dir / "README.md").unlink(missing_ok=True)  # the mixin never overwrites a card: replace stale ones
    model.save_pretrained(out_dir, model_card_kwargs={"training": record})
    return out_dir


def read_record(model_dir: str | Path) -> dict | None:
    """The training record stored in a saved model's card, or None for an untrained save."""
    return card_training_record(model_dir)


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
    record = read_record(model_dir)
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
