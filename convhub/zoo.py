"""The zoo as plain data: each net's name, class name and constructor arguments, in the chapter's order, and the Hub
repo its weights are published to. No torch here, so a page can list the nets before any of them is loaded;
convhub.models maps the class names to the classes."""

from __future__ import annotations

import difflib
import os
from pathlib import Path

from .errors import ConvHubError, cannot_read, shown

NETS: dict[str, tuple[str, dict]] = {
    "fc": ("FullyConnected", {}),
    "net": ("Net", {}),
    "net_width": ("NetWidth", {"n_chans1": 32}),
    "net_dropout": ("NetDropout", {"n_chans1": 32, "p": 0.4}),
    "net_batchnorm": ("NetBatchNorm", {"n_chans1": 32}),
    "net_depth": ("NetDepth", {"n_chans1": 32}),
    "net_res": ("NetRes", {"n_chans1": 32}),
    "net_res_deep": ("NetResDeep", {"n_chans1": 32, "n_blocks": 10}),
    "net_res_deep100": ("NetResDeep", {"n_chans1": 32, "n_blocks": 100}),
}
WITHOUT_CONVOLUTIONS = ("FullyConnected",)  # the ch. 7 baseline: no kernels, no feature maps

DEFAULT_NAMESPACE = "convhub"


def pretrained_repo(name: str, namespace: str | None = None) -> str:
    """The Hub repo of a zoo net's published weights: ``<namespace>/convhub-<name>`` (namespace: the argument,
    then CONVHUB_NAMESPACE, then ``convhub``)."""
    namespace = namespace or os.environ.get("CONVHUB_NAMESPACE") or DEFAULT_NAMESPACE
    return f"{namespace}/convhub-{name.replace('_', '-')}"


def zoo_name(name: str) -> str:
    """A zoo net's name, also as its Hub repo writes it (``net-res-deep``, ``convhub-net-res-deep``); an unknown one
    is a ConvHubError naming the closest."""
    canonical = name.strip().lower().removeprefix("convhub-").replace("-", "_")
    if canonical in NETS:
        return canonical
    close = difflib.get_close_matches(canonical, NETS, n=1, cutoff=0.6)
    raise ConvHubError(f"unknown model {shown(name)}{f' (did you mean {close[0]}?)' if close else ''}; the zoo "
                       f"has: {', '.join(NETS)}")


def saved_nets(folder: str | os.PathLike, names=NETS) -> dict[str, Path]:
    """The zoo's nets (of ``names``) saved in ``folder`` as `zoo` writes them (a save_pretrained folder per net, named
    after it), in the chapter's order: one rule for the Space's CONVHUB_MODELS_DIR and bundle, and training's
    translation and publish, so a folder one of them accepts is never one another ignores. Only ``names`` are looked
    at: an unreadable folder of a net no one asked for is no error."""
    folder = Path(folder)
    found = {}
    for name in NETS:
        if name not in names:
            continue
        try:
            if (folder / name / "config.json").is_file():
                found[name] = folder / name
        except OSError as error:  # unreadable, or a name too long for the system: a traceback from is_file
            raise cannot_read(folder / name, error) from None
    return found

