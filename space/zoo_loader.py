"""Where each net comes from: a local models folder, the Hub (pinned revision), or the weights bundled here.

Sources are tried in that order. The Hub is probed once at start-up, so an offline Space starts in seconds instead
of spending ~23 s of retries per file.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import convhub
from convhub.card import training_record
from convhub.hub import endpoint, hub_reachable, offline_mode, resolve

log = logging.getLogger(__name__)

BUNDLED_DIR = Path(__file__).resolve().parent / "models"
DEFAULT_NAMESPACE = "convhub"


@dataclass
class LoadedNet:
    name: str
    model: convhub.ConvHubModel | None
    source: str  # where the weights came from, shown in the UI
    record: dict | None = None  # training metrics from the model card; None for untrained weights

    @property
    def available(self) -> bool:
        return self.model is not None


def hub_repo(name: str, namespace: str | None = None) -> str:
    return f"{namespace or os.environ.get('CONVHUB_NAMESPACE') or DEFAULT_NAMESPACE}/convhub-{name.replace('_', '-')}"


def _from_folder(name: str, folder: Path, source: str) -> LoadedNet:
    return LoadedNet(name, convhub.load(folder), source, training_record(folder))


def load_net(name: str, *, models_dir: Path | None, hub_online: bool, namespace: str | None, revision: str) -> LoadedNet:
    notes = []
    if models_dir is not None:
        if (models_dir / name / "config.json").is_file():
            try:
                return _from_folder(name, models_dir / name, f"local folder {models_dir / name}")
            except convhub.ConvHubError as error:
                notes.append(f"local folder failed: {error}")
        else:
            notes.append(f"not in {models_dir}")
    if hub_online:
        repo = hub_repo(name, namespace)
        try:
            folder = resolve(repo, revision=revision)
            return _from_folder(name, folder, f"Hub {repo}@{revision}")
        except convhub.ConvHubError as error:
            notes.append(f"Hub: {error}")
    else:
        notes.append("Hub offline" if offline_mode() else f"Hub unreachable ({endpoint()})")
    if (BUNDLED_DIR / name / "config.json").is_file():
        try:
            net = _from_folder(name, BUNDLED_DIR / name, "bundled (space/models)")
            if notes:
                net.source += f" — {'; '.join(notes)}"
            return net
        except convhub.ConvHubError as error:
            notes.append(f"bundled copy failed: {error}")
    log.warning("%s is unavailable: %s", name, "; ".join(notes))
    return LoadedNet(name, None, "unavailable — " + "; ".join(notes))


def load_zoo(names=None, *, models_dir: str | Path | None = None, namespace: str | None = None,
             revision: str | None = None) -> list[LoadedNet]:
    """Every zoo net, each from the first source that has it (see module docstring)."""
    names = list(names or convhub.ZOO)
    models_dir = models_dir or os.environ.get("CONVHUB_MODELS_DIR")
    models_dir = Path(models_dir) if models_dir else None
    revision = revision or os.environ.get("CONVHUB_REVISION", "main")
    online = hub_reachable()
    return [load_net(name, models_dir=models_dir, hub_online=online, namespace=namespace, revision=revision)
            for name in names]
