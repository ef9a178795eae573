"""Where each net comes from: a local models folder, the Hub (pinned revision), or the weights bundled here.

Sources are tried in that order. The Hub is probed once at start-up, so an offline Space starts in seconds instead
of spending ~23 s of retries per file; offline, a snapshot already in the HF cache is used before the bundled copy.

Two steps, so that the page can be served before torch is imported: find_zoo (no torch) lists each net's candidate
folders and what its page needs to know (its class), then load_found loads the first candidate that works.
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections import Counter
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

import convhub
from convhub.card import plain_markdown, training_record
from convhub.config import ConfigError, parse_config
from convhub.errors import one_line
from convhub.hub import hub_reachable, offline_mode, resolve, shown_endpoint
from convhub.zoo import NETS, WITHOUT_CONVOLUTIONS, saved_nets

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)

HERE = Path(__file__).resolve().parent
BUNDLED_DIR = HERE / "models"
OFFLINE = "Hub offline (HF_HUB_OFFLINE)"
# Written by `python -m training publish` into the uploaded Space: the namespace and revision its nets were pushed
# to, so a user's Space loads their repos with no Space variable set by hand.
PUBLISHED_SETTINGS = HERE / "convhub_space.json"


@dataclass
class LoadedNet:
    name: str
    model: convhub.ConvHubModel | None
    source: str  # where the weights came from, shown in the UI
    record: dict | None = None  # training metrics from the model card; None for untrained weights
    served: torch.nn.Module | None = None  # an inference-only copy (convhub.graph.for_inference); the model itself if None

    @property
    def available(self) -> bool:
        return self.model is not None

    @property
    def forward(self) -> torch.nn.Module | None:
        return self.served if self.served is not None else self.model


@dataclass(frozen=True)
class Candidate:
    folder: Path
    source: str  # LoadedNet.source when this folder loads
    failed: str  # the note when it does not, before the error's text
    last_resort: bool = False  # the bundled copy: its source also says why the others were passed over


@dataclass
class FoundNet:
    """A net's candidate folders in the order they are tried, with notes on the sources that had none."""
    name: str
    steps: list[Candidate | str] = field(default_factory=list)

    @cached_property
    def architecture(self) -> str | None:
        """The class named by the first readable config.json: what the page shows before the net is loaded."""
        for step in self.steps:
            if isinstance(step, Candidate):
                try:
                    architecture = parse_config(step.folder / "config.json").get("architecture")
                except ConfigError:
                    continue
                if isinstance(architecture, str):
                    return architecture
        return None

    @property
    def has_convolutions(self) -> bool:
        return self.architecture not in (None, *WITHOUT_CONVOLUTIONS)


def published_settings(path: Path | None = None) -> dict[str, str]:
    """namespace and revision baked in by publish (strings only; a broken file is ignored with a warning)."""
    path = path or PUBLISHED_SETTINGS
    if not path.is_file():
        return {}
    try:
        settings = json.loads(path.read_text(encoding="utf-8"))
        return {key: settings[key] for key in ("namespace", "revision") if isinstance(settings.get(key), str)}
    except (OSError, ValueError, AttributeError) as error:
        log.warning("ignoring %s: %s", path, error)
        return {}


def hub_repo(name: str, namespace: str | None = None) -> str:
    """The repo of a net: CONVHUB_NAMESPACE, else the published namespace, else convhub's own."""
    return convhub.pretrained_repo(name, namespace or os.environ.get("CONVHUB_NAMESPACE")
                                   or published_settings().get("namespace"))


def _from_folder(name: str, folder: Path, source: str) -> LoadedNet:
    """The net from a folder; a broken card costs only its metrics, never the net."""
    model = convhub.load(folder)
    if tuple(model.class_names) != tuple(convhub.CIFAR2_CLASSES):  # the page reads output 0 as airplane
        raise convhub.ConvHubError(f"its outputs are {', '.join(map(repr, model.class_names))}, not airplane and "
                                   "bird in that order")
    try:
        return LoadedNet(name, model, source, training_record(folder))
    except Exception as error:  # noqa: BLE001
        log.warning("%s: ignoring its model card: %s", name, describe_failure(error))
        return LoadedNet(name, model, f"{source} — model card ignored: {describe_failure(error)}")


def as_plain_text(text: str) -> str:
    """``text`` as Markdown that shows it as it is, on one line: a Hub server's error message is shown on the page,
    and its ![image](url), [link](url) or bare URL would otherwise load or show for every visitor."""
    return plain_markdown(text)


def describe_failure(error: Exception) -> str:
    """What went wrong, shown on the page: convhub's message (anything else by its type), on one printable line, with
    server paths cut to their last part."""
    text = one_line(error if isinstance(error, convhub.ConvHubError) else f"{type(error).__name__}: {error}")
    return re.sub(r"(?:/[^/\s:'\"]+)+/([^/\s:'\"]+)", r"…/\1", text)[:300]


def _unreachable() -> str:
    """A net's note when the Hub did not answer the probe: ours, naming the operator's endpoint."""
    return f"Hub unreachable ({shown_endpoint()})"


class HubFailure(str):
    """A note that the Hub answered without the net the Space was pointed at (a repo or revision that is not there,
    a broken snapshot): the log warns of it, as of a local folder that failed, where the Hub offline is expected."""


def find_net(name: str, *, models_dir: Path | None, hub_online: bool, namespace: str | None,
             revision: str) -> FoundNet:
    """Where a net may be loaded from, without torch: the folders that hold a config.json (a Hub snapshot is
    downloaded here), in the order they are tried."""
    found = FoundNet(name)
    if models_dir is not None:
        if saved_nets(models_dir, [name]):
            found.steps.append(Candidate(models_dir / name, f"local folder (CONVHUB_MODELS_DIR)/{name}",
                                         "local folder failed"))
        else:
            found.steps.append("not in CONVHUB_MODELS_DIR")
    repo = hub_repo(name, namespace)
    if hub_online:
        try:
            found.steps.append(Candidate(resolve(f"hf-hub:{repo}", revision=revision), f"Hub {repo}@{revision}",
                                         "Hub"))  # hf-hub: the repo, never a folder of its name beside the app
        except Exception as error:  # noqa: BLE001
            found.steps.append(HubFailure(f"Hub {repo}@{revision}: {describe_failure(error)}"))
    else:
        # No request at all: only a snapshot an earlier online start left in the HF cache.
        offline = OFFLINE if offline_mode() else _unreachable()
        try:
            folder = resolve(f"hf-hub:{repo}", revision=revision, local_files_only=True)
            found.steps.append(Candidate(folder, f"HF cache {repo}@{revision} — {offline}",
                                         f"{offline}; HF cache copy failed"))
        except convhub.HubUnavailableError:
            found.steps.append(offline)
        except Exception as error:  # noqa: BLE001
            found.steps.append(f"{offline}; HF cache copy failed: {describe_failure(error)}")
    if saved_nets(BUNDLED_DIR, [name]):
        found.steps.append(Candidate(BUNDLED_DIR / name, "bundled (space/models)", "bundled copy failed",
                                     last_resort=True))
    else:
        found.steps.append("no bundled copy")
    return found


def load_found(found: FoundNet) -> LoadedNet:
    """The net from its first candidate that loads; one that fails is noted and the next one tried, so one broken
    net never keeps the Space from starting."""
    notes, failed = [], []
    for step in found.steps:
        if isinstance(step, str):
            notes.append(step)
            if isinstance(step, HubFailure):
                failed.append(step)
            continue
        try:
            net = _from_folder(found.name, step.folder, step.source)
        except Exception as error:  # noqa: BLE001
            notes.append(f"{step.failed}: {describe_failure(error)}")
            failed.append(notes[-1])
            continue
        if step.last_resort and notes:
            net.source += f" — {'; '.join(notes)}"
        if failed:  # the operator's folder or Hub repo refused: said in the log, not only on the Compare tab
            log.warning("%s: %s; loaded from %s instead", found.name, "; ".join(failed), step.source)
        return net
    log.warning("%s is unavailable: %s", found.name, "; ".join(notes))
    return LoadedNet(found.name, None, "unavailable — " + "; ".join(notes))


def find_zoo(names=None, *, models_dir: str | Path | None = None, namespace: str | None = None,
             revision: str | None = None) -> list[FoundNet]:
    """Every zoo net's candidate folders (see module docstring); imports no torch."""
    names = list(names or NETS)
    models_dir = models_dir or os.environ.get("CONVHUB_MODELS_DIR")
    models_dir = Path(models_dir) if models_dir else None
    revision = revision or os.environ.get("CONVHUB_REVISION") or published_settings().get("revision") or "main"
    online = hub_reachable()
    return [find_net(name, models_dir=models_dir, hub_online=online, namespace=namespace, revision=revision)
            for name in names]


def load_zoo(names=None, **where) -> list[LoadedNet]:
    """Every zoo net, each from the first source that has it: find_zoo, then load_found."""
    return [load_found(found) for found in find_zoo(names, **where)]


def source_kind(source: str) -> str:
    """'local folder', 'Hub', 'bundled' or 'unavailable': the first word(s) of a LoadedNet.source."""
    for kind in ("local folder", "Hub", "HF cache", "bundled", "unavailable"):
        if source.startswith(kind):
            return kind
    return source


def sources_summary(nets: list[LoadedNet], pointer: str = " Details on the Compare tab.",
                    markdown: bool = True) -> str:
    """One line for the page (Markdown) or the log (``markdown=False``: a log shows `**` as it is), and ``pointer`` to
    where the details are: how many nets came from where, and why the Hub was not used."""
    bold, code = ("**", "`") if markdown else ("", "")
    counts = Counter(source_kind(net.source) for net in nets)
    parts = [f"{count} from {kind if kind != 'bundled' else 'the weights bundled with this Space'}"
             for kind, count in counts.items() if kind != "unavailable"]
    line = f"{bold}{sum(n.available for n in nets)} of {len(nets)} nets loaded{bold}" + (
        f": {', '.join(parts)}" if parts else "")
    if counts.get("unavailable"):
        missing = ", ".join(f"{code}{n.name}{code}" for n in nets if not n.available)
        line += f". Unavailable: {missing}"
    notes = {note for n in nets for joined in n.source.split(" — ", 1)[1:] for note in joined.split("; ")}
    # Only our own words, exactly: a Hub server's, a card's or a config's text can hold "; Hub unreachable <img ...>"
    reasons = sorted(notes & {OFFLINE, _unreachable()})
    if reasons:  # ours, and the operator's endpoint (a URL, checked at start)
        line += f" — {'; '.join(reasons)}"
    return line + "." + pointer


def source_details(net: LoadedNet) -> str:
    """Where ``net`` came from, less why the Hub was not used, which sources_summary says once for all nets."""
    where, *notes = net.source.split(" — ", 1)
    kept = [note for joined in notes for note in joined.split("; ") if note not in {OFFLINE, _unreachable()}]
    return " — ".join([where, "; ".join(kept)] if kept else [where])
