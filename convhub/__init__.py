"""ConvHub: the convnets of Deep Learning with PyTorch ch. 8 for CIFAR-2, as Hugging Face Hub models."""

__version__ = "0.1.0"

from .errors import ConvHubError, HubUnavailableError  # noqa: E402
from .hub import load  # noqa: E402
from .models import (  # noqa: E402
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
from .preprocessing import CIFAR2_CLASSES, CIFAR_MEAN, CIFAR_STD, build_transforms  # noqa: E402
from .registry import ZOO, ModelInfo, create, list_models  # noqa: E402

__all__ = [
    "ZOO", "CIFAR2_CLASSES", "CIFAR_MEAN", "CIFAR_STD", "ConvHubError", "ConvHubModel", "FullyConnected",
    "HubUnavailableError", "ModelInfo", "Net", "NetBatchNorm", "NetDepth", "NetDropout", "NetRes", "NetResDeep",
    "NetWidth", "ResBlock", "build_transforms", "create", "list_models", "load",
]
