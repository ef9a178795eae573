"""ConvHub: the convnets of Deep Learning with PyTorch ch. 8 for CIFAR-2, as Hugging Face Hub models.

Layers, each importing only those before it: errors, env (numbers from environment variables), config (what a
config.json may hold), zoo (the nets as names and arguments), hub (finding and reading a model folder), preprocessing
(images in), card, models (the nets and the zoo), registry (create / load); graph (exact rewrites that make a net
cheaper to run) stands apart, on torch alone.

The names from preprocessing, models and registry are imported on first use (PEP 562): those modules import torch
(~1.4 s), and the Space serves its first page from the torch-free layers before it loads any net.
"""

__version__ = "0.1.0"

import importlib  # noqa: E402
import sys  # noqa: E402

from . import env  # noqa: E402
from .config import DataConfig  # noqa: E402
from .errors import ConvHubError, HubUnavailableError  # noqa: E402
from .zoo import pretrained_repo  # noqa: E402

_TORCH_NAMES = {
    "models": ("ZOO", "ConvHubModel", "FullyConnected", "Net", "NetBatchNorm", "NetDepth", "NetDropout", "NetRes",
               "NetResDeep", "NetWidth", "ResBlock"),
    "preprocessing": ("CIFAR2_CLASSES", "CIFAR_MEAN", "CIFAR_STD", "MAX_IMAGE_PIXELS", "build_transforms"),
    "registry": ("ModelInfo", "create", "list_models", "load"),
}
_HOME = {name: module for module, names in _TORCH_NAMES.items() for name in names}

__all__ = [
    "ZOO", "CIFAR2_CLASSES", "CIFAR_MEAN", "CIFAR_STD", "ConvHubError", "ConvHubModel", "DataConfig", "FullyConnected",
    "HubUnavailableError", "MAX_IMAGE_PIXELS", "ModelInfo", "Net", "NetBatchNorm", "NetDepth", "NetDropout", "NetRes",
    "NetResDeep", "NetWidth", "ResBlock", "build_transforms", "create", "list_models", "load", "pretrained_repo",
]


def __getattr__(name: str):
    if name not in _HOME:
        raise AttributeError(f"module 'convhub' has no attribute {name!r}")
    if _HOME[name] != "preprocessing" and "huggingface_hub" not in sys.modules:
        env.hub_endpoint()  # huggingface_hub, which models imports, parses it at import: 99999 was a ValueError there
    value = getattr(importlib.import_module(f".{_HOME[name]}", __name__), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_HOME})
