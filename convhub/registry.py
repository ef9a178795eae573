"""The doors in, as timm's: ``create(name)`` for a zoo net (fresh or pretrained), ``load(folder | repo)`` for a
saved one whose config.json picks the class, and ``list_models()``; ``pretrained_repo`` is convhub.zoo's."""

from __future__ import annotations

import fnmatch
from pathlib import Path

from .errors import ConvHubError
from .models import ZOO, ConvHubModel
from .zoo import pretrained_repo, zoo_name


class ModelInfo(str):
    """A zoo net's name, as timm's list_models gives names (``create(info)``, ``"net" in list_models()`` and JSON
    work on it), carrying its class name, parameter count and one-line description."""

    __slots__ = ("architecture", "params", "description")

    def __new__(cls, name: str, architecture: str, params: int, description: str):
        info = super().__new__(cls, name)
        info.architecture, info.params, info.description = architecture, params, description
        return info

    @property
    def name(self) -> str:
        return str(self)

    def __repr__(self) -> str:
        return (f"ModelInfo(name={self.name!r}, architecture={self.architecture!r}, params={self.params}, "
                f"description={self.description!r})")

    def __reduce__(self):  # pickled (multiprocessing) as what it is, not as a plain str
        return ModelInfo, (self.name, self.architecture, self.params, self.description)


def load(name_or_path: str | Path, *, revision: str | None = None, map_location: str = "cpu", **kwargs) -> ConvHubModel:
    """Load any convhub model from a folder or a Hub repo; the config picks the class (timm's ``hf-hub:`` idea)."""
    return ConvHubModel.from_pretrained(name_or_path, revision=revision, map_location=map_location, **kwargs)


def create(name: str, pretrained: bool = False, *, namespace: str | None = None, revision: str | None = None,
           **overrides) -> ConvHubModel:
    """A zoo net: fresh weights, or with ``pretrained=True`` the published ones (see pretrained_repo), which fail
    as fast and clearly offline as ``load``. ``overrides`` change a fresh net's constructor arguments."""
    if not isinstance(pretrained, bool):  # a folder's path here was taken as True: the Hub's weights, not the folder's
        raise TypeError(f"pretrained is True or False, not {type(pretrained).__name__}; "
                        "convhub.load(folder_or_repo) loads a saved net")
    if not isinstance(name, str):  # create(3) was an AttributeError from inside
        raise TypeError(f"name is a zoo net's name such as 'net' (convhub.list_models() lists them), "
                        f"not {type(name).__name__}")
    if name.startswith("hf-hub:"):
        return load(name, revision=revision)
    if not pretrained and (namespace or revision):
        raise ConvHubError("namespace and revision choose the published weights: pass pretrained=True with them "
                           "(a fresh net has none)")
    name = zoo_name(name)
    cls, kwargs = ZOO[name]
    if pretrained:
        if overrides:
            raise ConvHubError(f"pretrained weights fix the architecture: drop {', '.join(overrides)}")
        return load(f"hf-hub:{pretrained_repo(name, namespace)}", revision=revision)  # never a folder of that name
    unknown = sorted(set(overrides) - set(cls.config_spec))
    if unknown:
        raise ConvHubError(f"{name} ({cls.__name__}) takes no {', '.join(unknown)}; its arguments are: "
                           f"{', '.join(cls.config_spec) or 'none'}")
    # Checked as a config.json's would be (types, ranges, at most MAX_PARAMS): a net create() builds, load() takes.
    return cls(**cls.init_args({**kwargs, **overrides}, f"create({name!r})"))


def list_models(filter: str = "") -> list[ModelInfo]:  # noqa: A002 - timm's name for it
    """Every zoo net with its class and parameter count, in the chapter's order; ``filter`` a shell-style pattern of
    names, as timm's (``"net_res*"``), read as create reads a name (``"convhub-net-res*"`` is the same; a pattern
    with [ranges] keeps its dashes)."""
    pattern = (filter or "").strip().lower().removeprefix("convhub-")
    if "[" not in pattern:
        pattern = pattern.replace("-", "_")
    infos = []
    for name, (cls, kwargs) in ZOO.items():
        if pattern and not fnmatch.fnmatchcase(name, pattern):
            continue
        model = cls(**kwargs)
        infos.append(ModelInfo(name, cls.__name__, model.num_params, (cls.__doc__ or "").strip().split("\n")[0]))
    return infos
