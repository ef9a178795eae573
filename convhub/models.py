"""The nets of Deep Learning with PyTorch ch. 7-8, as Hub-ready modules.

Every constructor argument is config: PyTorchModelHubMixin writes it to config.json and reads it back.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
import torch.nn.functional as F
from huggingface_hub import PyTorchModelHubMixin
from huggingface_hub.constants import SAFETENSORS_SINGLE_FILE
from PIL import Image
from safetensors import SafetensorError
from safetensors.torch import load_model

from . import __version__
from .card import model_card
from .errors import ConvHubError
from .preprocessing import CIFAR2_CLASSES, CIFAR_MEAN, CIFAR_STD, INPUT_SIZE, build_transforms

# Bump when config.json changes in a way older convhub cannot read.
CONFIG_FORMAT = 1


class ConvHubModel(
    torch.nn.Module,
    PyTorchModelHubMixin,
    library_name="convhub",
    tags=["image-classification", "cifar2", "dlwpt-chapter8", "convhub"],
    pipeline_tag="image-classification",
    license="mit",
    repo_url="https://github.com/convhub/convhub",
):
    """Base of the zoo: Hub save/load, preprocessing and ``predict``.

    Weights are loaded strictly and only from safetensors: nothing from a repo is ever unpickled.
    """

    class_names = CIFAR2_CLASSES

    @property
    def model_name(self) -> str:
        """Zoo name matching this architecture and config (e.g. ``net_res_deep100``)."""
        from .registry import zoo_name_for

        return zoo_name_for(self)

    @property
    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def hub_config(self) -> dict:
        """config.json: constructor arguments + what users need to feed the net correctly."""
        return {
            **(self._hub_mixin_config or {}),
            "architecture": type(self).__name__,
            "model_name": self.model_name,
            "convhub_version": __version__,
            "format_version": CONFIG_FORMAT,
            "num_classes": len(self.class_names),
            "class_names": list(self.class_names),
            "input_size": list(INPUT_SIZE),
            "mean": list(CIFAR_MEAN),
            "std": list(CIFAR_STD),
            "interpolation": "bilinear",
            "crop": "center_square",
        }

    def save_pretrained(self, save_directory, *, config: dict | None = None, **kwargs):
        """``config`` adds keys to ours: replacing it would drop the architecture that convhub.load needs."""
        return super().save_pretrained(save_directory, config={**self.hub_config(), **(config or {})}, **kwargs)

    def generate_model_card(self, *args, training: dict | None = None, **kwargs):
        return model_card(self, training=training)

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *, revision: str | None = None, **kwargs):
        """Like the mixin's, but fails fast offline, refuses other architectures and never unpickles."""
        from .hub import check_config, read_config, resolve

        folder = resolve(pretrained_model_name_or_path, revision=revision,
                         cache_dir=kwargs.get("cache_dir"), token=kwargs.get("token"),
                         force_download=kwargs.get("force_download", False),
                         local_files_only=kwargs.get("local_files_only", False))
        config = check_config(read_config(folder), folder)
        if cls is ConvHubModel:  # the base class: let config.json pick the net, as convhub.load does
            from .registry import ARCHITECTURES

            return ARCHITECTURES[config["architecture"]].from_pretrained(folder, **kwargs)
        if config["architecture"] != cls.__name__:
            raise ConvHubError(
                f"{pretrained_model_name_or_path} holds a {config['architecture']}, not a {cls.__name__}: "
                f"use convhub.load({str(pretrained_model_name_or_path)!r}) to get the right class."
            )
        for key in ("cache_dir", "token", "force_download", "local_files_only", "proxies", "resume_download"):
            kwargs.pop(key, None)
        return super().from_pretrained(str(folder), **kwargs)

    @classmethod
    def _from_pretrained(cls, *, model_id: str, map_location: str = "cpu", strict: bool = True, **kwargs):
        # model_id is always a local folder here: from_pretrained resolved it.
        for key in ("revision", "cache_dir", "force_download", "local_files_only", "token"):
            kwargs.pop(key, None)
        model = cls(**kwargs)
        weights = Path(model_id) / SAFETENSORS_SINGLE_FILE
        if not weights.is_file():
            raise ConvHubError(f"{model_id} has no {SAFETENSORS_SINGLE_FILE}: convhub loads safetensors weights only.")
        try:
            load_model(model, str(weights), strict=strict, device=str(map_location))
        except (RuntimeError, OSError, SafetensorError) as error:  # wrong shapes / truncated or corrupt file
            raise ConvHubError(f"weights in {weights} do not fit {cls.__name__}{json.dumps(kwargs)}: {error}") from error
        model.eval()
        return model

    def transforms(self):
        """The preprocessing these weights expect, as a torchvision v2 transform."""
        return build_transforms(INPUT_SIZE[-1], CIFAR_MEAN, CIFAR_STD)

    @torch.inference_mode()
    def predict(self, image: Image.Image | str | Path) -> dict[str, float]:
        """Class probabilities for one image of any size and mode (path or PIL image)."""
        from .hub import open_image

        tensor = self.transforms()(open_image(image)).unsqueeze(0)
        was_training = self.training
        self.eval()
        try:
            param = next(self.parameters())
            probs = self(tensor.to(param.device, param.dtype)).softmax(dim=1)[0]
        finally:
            self.train(was_training)
        return {name: float(p) for name, p in zip(self.class_names, probs)}


class FullyConnected(ConvHubModel):
    """Ch. 7 baseline: a plain MLP on the flattened 3072 pixels (3.7M parameters)."""

    def __init__(self, hidden: tuple[int, ...] | list[int] = (1024, 512, 128)):
        super().__init__()
        sizes = [3 * 32 * 32, *hidden]
        layers: list[torch.nn.Module] = []
        for n_in, n_out in zip(sizes, sizes[1:]):
            layers += [torch.nn.Linear(n_in, n_out), torch.nn.Tanh()]
        self.layers = torch.nn.Sequential(*layers, torch.nn.Linear(sizes[-1], 2))

    def forward(self, x):
        return self.layers(torch.flatten(x, 1))


class Net(ConvHubModel):
    """The chapter's first convnet: two conv+pool stages and a small classifier."""

    def __init__(self):
        super().__init__()
        self.conv1 = torch.nn.Conv2d(3, 16, kernel_size=3, padding=1)
        self.conv2 = torch.nn.Conv2d(16, 8, kernel_size=3, padding=1)
        self.fc1 = torch.nn.Linear(8 * 8 * 8, 32)
        self.fc2 = torch.nn.Linear(32, 2)

    def forward(self, x):
        out = F.max_pool2d(torch.tanh(self.conv1(x)), 2)
        out = F.max_pool2d(torch.tanh(self.conv2(out)), 2)
        return self.fc2(torch.tanh(self.fc1(torch.flatten(out, 1))))


class NetWidth(ConvHubModel):
    """Net with more channels: width buys capacity."""

    def __init__(self, n_chans1: int = 32):
        super().__init__()
        self.n_chans1 = n_chans1
        self.conv1 = torch.nn.Conv2d(3, n_chans1, kernel_size=3, padding=1)
        self.conv2 = torch.nn.Conv2d(n_chans1, n_chans1 // 2, kernel_size=3, padding=1)
        self.fc1 = torch.nn.Linear(8 * 8 * (n_chans1 // 2), 32)
        self.fc2 = torch.nn.Linear(32, 2)

    def forward(self, x):
        out = F.max_pool2d(torch.tanh(self.conv1(x)), 2)
        out = F.max_pool2d(torch.tanh(self.conv2(out)), 2)
        return self.fc2(torch.tanh(self.fc1(torch.flatten(out, 1))))


class NetDropout(ConvHubModel):
    """NetWidth with Dropout2d after each pooled conv: regularization by zeroing whole channels."""

    def __init__(self, n_chans1: int = 32, p: float = 0.4):
        super().__init__()
        self.n_chans1 = n_chans1
        self.conv1 = torch.nn.Conv2d(3, n_chans1, kernel_size=3, padding=1)
        self.conv1_dropout = torch.nn.Dropout2d(p=p)
        self.conv2 = torch.nn.Conv2d(n_chans1, n_chans1 // 2, kernel_size=3, padding=1)
        self.conv2_dropout = torch.nn.Dropout2d(p=p)
        self.fc1 = torch.nn.Linear(8 * 8 * (n_chans1 // 2), 32)
        self.fc2 = torch.nn.Linear(32, 2)

    def forward(self, x):
        out = self.conv1_dropout(F.max_pool2d(torch.tanh(self.conv1(x)), 2))
        out = self.conv2_dropout(F.max_pool2d(torch.tanh(self.conv2(out)), 2))
        return self.fc2(torch.tanh(self.fc1(torch.flatten(out, 1))))


class NetBatchNorm(ConvHubModel):
    """NetWidth with BatchNorm2d after each conv: steadier activations, faster training."""

    def __init__(self, n_chans1: int = 32):
        super().__init__()
        self.n_chans1 = n_chans1
        self.conv1 = torch.nn.Conv2d(3, n_chans1, kernel_size=3, padding=1)
        self.conv1_batchnorm = torch.nn.BatchNorm2d(n_chans1)
        self.conv2 = torch.nn.Conv2d(n_chans1, n_chans1 // 2, kernel_size=3, padding=1)
        self.conv2_batchnorm = torch.nn.BatchNorm2d(n_chans1 // 2)
        self.fc1 = torch.nn.Linear(8 * 8 * (n_chans1 // 2), 32)
        self.fc2 = torch.nn.Linear(32, 2)

    def forward(self, x):
        out = F.max_pool2d(torch.tanh(self.conv1_batchnorm(self.conv1(x))), 2)
        out = F.max_pool2d(torch.tanh(self.conv2_batchnorm(self.conv2(out))), 2)
        return self.fc2(torch.tanh(self.fc1(torch.flatten(out, 1))))


class NetDepth(ConvHubModel):
    """Three conv stages with ReLU: depth widens the receptive field."""

    def __init__(self, n_chans1: int = 32):
        super().__init__()
        self.n_chans1 = n_chans1
        self.conv1 = torch.nn.Conv2d(3, n_chans1, kernel_size=3, padding=1)
        self.conv2 = torch.nn.Conv2d(n_chans1, n_chans1 // 2, kernel_size=3, padding=1)
        self.conv3 = torch.nn.Conv2d(n_chans1 // 2, n_chans1 // 2, kernel_size=3, padding=1)
        self.fc1 = torch.nn.Linear(4 * 4 * (n_chans1 // 2), 32)
        self.fc2 = torch.nn.Linear(32, 2)

    def forward(self, x):
        out = F.max_pool2d(torch.relu(self.conv1(x)), 2)
        out = F.max_pool2d(torch.relu(self.conv2(out)), 2)
        out = F.max_pool2d(torch.relu(self.conv3(out)), 2)
        return self.fc2(torch.relu(self.fc1(torch.flatten(out, 1))))


class NetRes(NetDepth):
    """NetDepth with a skip connection around conv3: the first step towards ResNets."""

    def forward(self, x):
        out = F.max_pool2d(torch.relu(self.conv1(x)), 2)
        out = F.max_pool2d(torch.relu(self.conv2(out)), 2)
        out = F.max_pool2d(torch.relu(self.conv3(out)) + out, 2)
        return self.fc2(torch.relu(self.fc1(torch.flatten(out, 1))))


class ResBlock(torch.nn.Module):
    """conv (no bias) -> BN -> ReLU, plus the input. Kaiming init and BN weight 0.5 keep deep stacks trainable."""

    def __init__(self, n_chans: int):
        super().__init__()
        self.conv = torch.nn.Conv2d(n_chans, n_chans, kernel_size=3, padding=1, bias=False)
        self.batch_norm = torch.nn.BatchNorm2d(n_chans)
        torch.nn.init.kaiming_normal_(self.conv.weight, nonlinearity="relu")
        torch.nn.init.constant_(self.batch_norm.weight, 0.5)
        torch.nn.init.zeros_(self.batch_norm.bias)

    def forward(self, x):
        return torch.relu(self.batch_norm(self.conv(x))) + x


class NetResDeep(ConvHubModel):
    """A deep residual stack. Unlike the book's notebook, every block has its own weights."""

    def __init__(self, n_chans1: int = 32, n_blocks: int = 10):
        super().__init__()
        self.n_chans1 = n_chans1
        self.conv1 = torch.nn.Conv2d(3, n_chans1, kernel_size=3, padding=1)
        self.resblocks = torch.nn.Sequential(*(ResBlock(n_chans1) for _ in range(n_blocks)))
        self.fc1 = torch.nn.Linear(8 * 8 * n_chans1, 32)
        self.fc2 = torch.nn.Linear(32, 2)

    def forward(self, x):
        out = F.max_pool2d(torch.relu(self.conv1(x)), 2)
        out = F.max_pool2d(self.resblocks(out), 2)
        return self.fc2(torch.relu(self.fc1(torch.flatten(out, 1))))
