"""The zoo: names -> (class, constructor arguments), as timm's registry maps names to entrypoints."""

from __future__ import annotations

from dataclasses import dataclass

from . import models
from .errors import ConvHubError

ZOO: dict[str, tuple[type[models.ConvHubModel], dict]] = {
    "fc": (models.FullyConnected, {}),
    "net": (models.Net, {}),
    "net_width": (models.NetWidth, {"n_chans1": 32}),
    "net_dropout": (models.NetDropout, {"n_chans1": 32, "p": 0.4}),
    "net_batchnorm": (models.NetBatchNorm, {"n_chans1": 32}),
    "net_depth": (models.NetDepth, {"n_chans1": 32}),
    "net_res": (models.NetRes, {"n_chans1": 32}),
    "net_res_deep": (models.NetResDeep, {"n_chans1": 32, "n_blocks": 10}),
    "net_res_deep100": (models.NetResDeep, {"n_chans1": 32, "n_blocks": 100}),
}

ARCHITECTURES: dict[str, type[models.ConvHubModel]] = {cls.__name__: cls for cls, _ in ZOO.values()}


@dataclass(frozen=True)
class ModelInfo:
    name: str
    architecture: str
    params: int
    description: str


def create(name: str, **overrides) -> models.ConvHubModel:
    """A fresh (randomly initialised) zoo net; ``overrides`` change its constructor arguments."""
    if name.startswith("hf-hub:"):
        from .hub import load

        return load(name)
    if name not in ZOO:
        raise ConvHubError(f"unknown model {name!r}; choose one of: {', '.join(ZOO)}")
    cls, kwargs = ZOO[name]
    return cls(**{**kwargs, **overrides})


def list_models() -> list[ModelInfo]:
    """Every zoo net with its class and parameter count, in the chapter's order."""
    infos = []
    for name, (cls, kwargs) in ZOO.items():
        model = cls(**kwargs)
        infos.append(ModelInfo(name, cls.__name__, model.num_params, (cls.__doc__ or "").strip().split("\n")[0]))
    return infos


def _plain(value):
    """Tuples as lists: a config read back from config.json has lists where the constructor had tuples."""
    return list(value) if isinstance(value, tuple) else value


def zoo_name_for(model: models.ConvHubModel) -> str:
    """The zoo name whose class and arguments match ``model``; custom configs get a descriptive name."""
    config = {k: _plain(v) for k, v in (model._hub_mixin_config or {}).items()}
    for name, (cls, kwargs) in ZOO.items():
        defaults = cls._hub_mixin_jsonable_default_values
        if type(model) is cls and all(
            config.get(k, _plain(defaults.get(k))) == _plain(v) for k, v in {**defaults, **kwargs}.items()
        ):
            return name
    args = "_".join(
        f"{k}{'-'.join(map(str, v)) if isinstance(v, list) else v}"
        for k, v in sorted(config.items()) if not isinstance(v, dict)
    )
    return f"{type(model).__name__.lower()}_{args}".rstrip("_")
