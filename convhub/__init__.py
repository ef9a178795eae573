"""ConvHub: the convnets of Deep Learning with PyTorch ch. 8 for CIFAR-2, as Hugging Face Hub models.

Layers, each importing only those before it: errors, config (what a config.json may hold), hub (finding and reading
a model folder), preprocessing (images in), card, models (the nets and the zoo), registry (create / load); graph
(exact rewrites that make a net cheaper to run) stands apart, on torch alone.
"""

__version__ = "0.1.0"

from .config import DataConfig  # noqa: E402
from .errors import ConvHubError, HubUnavailableError  # noqa: E402
from .models import (  # noqa: E402
    ZOO,
    ConvHubModel,
    FullyConnected,
    Net,
    NetBatchNorm,
    NetDepth,
    NetDropout,
    NetRes,
    NetResDeep,
    NetWidth,
    ResBlock,
)
from .preprocessing import CIFAR2_CLASSES, CIFAR_MEAN, CIFAR_STD, MAX_IMAGE_PIXELS, build_transforms  # noqa: E402
from .registry import ModelInfo, create, list_models, load, pretrained_repo  # noqa: E402

__all__ = [
    "ZOO", "CIFAR2_CLASSES", "CIFAR_MEAN", "CIFAR_STD", "ConvHubError", "ConvHubModel", "DataConfig", "FullyConnected",
    "HubUnavailableError", "MAX_IMAGE_PIXELS", "ModelInfo", "Net", "NetBatchNorm", "NetDepth", "NetDropout", "NetRes",
    "NetResDeep", "NetWidth", "ResBlock", "build_transforms", "create", "list_models", "load", "pretrained_repo",
]
