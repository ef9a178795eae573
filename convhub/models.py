"""The nets of Deep Learning with PyTorch ch. 7-8, as Hub-ready modules, and the zoo that names them.

Every constructor argument is config: PyTorchModelHubMixin writes it to config.json, and from_pretrained reads it
back after checking every value (convhub.config), so a hostile config cannot allocate without bound.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
from pathlib import Path

import torch
import torch.nn.functional as F
from huggingface_hub import HfApi, PyTorchModelHubMixin
from huggingface_hub.constants import SAFETENSORS_SINGLE_FILE
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file

from . import __version__
from .card import model_card, training_record
from .config import CONFIG_FORMAT, ConfigError, DataConfig, Float, Int, IntList, architecture_of, check_format
from .errors import ConvHubError, cannot_read, one_line, shown
from .hub import bound_hub_requests, endpoint, read_config, resolve
from .preprocessing import DEFAULT_DATA_CONFIG, ImageInput, ImageTransform, as_image_tensor, open_image
from .zoo import NETS

__all__ = ["CONFIG_FORMAT", "ConvHubModel", "FullyConnected", "Net", "NetWidth", "NetDropout", "NetBatchNorm",
           "NetDepth", "NetRes", "ResBlock", "NetResDeep", "ARCHITECTURES", "ZOO", "zoo_name_for"]

MAX_PARAMS = 20_000_000  # the zoo's largest net has 3.7M; a config may vary sizes, not build a giant
FLOAT_DTYPES = ("F16", "BF16", "F32", "F64")


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

    # How each constructor argument may be set from a config.json (see convhub.config); every argument has one.
    config_spec: dict = {}
    # The preprocessing and class names; from_pretrained sets the ones config.json asks for.
    data_config: DataConfig = DEFAULT_DATA_CONFIG
    # The training record of the card these weights were loaded with, and the weights' fingerprint then: a card
    # saved or pushed from them keeps its metrics while the weights are still those (from_pretrained sets it).
    loaded_record: tuple[dict, str] | None = None

    @property
    def class_names(self) -> tuple[str, ...]:
        return self.data_config.class_names

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def model_name(self) -> str:
        """Zoo name matching this architecture and config (e.g. ``net_res_deep100``)."""
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
            **self.data_config.to_config(),
        }

    def save_pretrained(self, save_directory, *, config: dict | None = None, model_card_kwargs: dict | None = None,
                        **kwargs):
        """``config`` adds keys to ours: replacing it would drop the architecture that convhub.load needs. The
        weights are made as readable as the files beside them (safetensors writes them owner-only, 0600)."""
        result = super().save_pretrained(save_directory, config={**self.hub_config(), **(config or {})},
                                         model_card_kwargs={**(model_card_kwargs or {}), "config": config}, **kwargs)
        weights, config_file = Path(save_directory) / SAFETENSORS_SINGLE_FILE, Path(save_directory) / "config.json"
        if weights.is_file() and not weights.is_symlink() and config_file.is_file():
            weights.chmod(config_file.stat().st_mode & 0o666)  # written with open(): the umask's choice
        return result

    def generate_model_card(self, *args, training: dict | None = None, repo_id: str | None = None,
                            config: dict | None = None, **kwargs):
        if training is None and self.loaded_record is not None and self.loaded_record[1] == fingerprint(self, config):
            training = self.loaded_record[0]  # save_pretrained / push_to_hub of a loaded net, unchanged
        return model_card(self, training=training, repo_id=repo_id)

    def push_to_hub(self, repo_id: str, *, config: dict | None = None, commit_message: str | None = None,
                    private: bool | None = None, token: str | None = None, branch: str | None = None,
                    create_pr: bool | None = None, model_card_kwargs: dict | None = None) -> str:
        """As the mixin's, through convhub's Hub client (HF_ENDPOINT as it is now, bounded requests, every answer
        checked), with a card whose snippets name ``repo_id`` (the mixin's said ``<namespace>/convhub-<name>``)."""
        bound_hub_requests()
        api = HfApi(endpoint=endpoint(), token=token)
        repo_id = api.create_repo(repo_id=repo_id, private=private, exist_ok=True).repo_id
        with tempfile.TemporaryDirectory(prefix="convhub-push-") as tmp:
            self.save_pretrained(tmp, config=config,
                                 model_card_kwargs={"repo_id": repo_id, **(model_card_kwargs or {})})
            return str(api.upload_folder(repo_id=repo_id, folder_path=tmp, revision=branch, create_pr=create_pr,
                                         commit_message=commit_message or f"Upload {self.model_name} with convhub"))

    @classmethod
    def init_args(cls, config: dict, source: str) -> dict:
        """The constructor arguments a config asks for, each checked; absent ones keep their defaults."""
        args = {key: spec.check(key, config[key], source) for key, spec in cls.config_spec.items() if key in config}
        with torch.device("meta"):  # count parameters without allocating them
            params = sum(p.numel() for p in cls(**args).parameters())
        if params > MAX_PARAMS:
            raise ConfigError(f"{source} describes a {cls.__name__} of {params:,} parameters; convhub builds nets of "
                              f"at most {MAX_PARAMS:,}")
        return args

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *, revision: str | None = None, map_location="cpu",
                        strict: bool = True, cache_dir=None, token=None, force_download: bool = False,
                        local_files_only: bool = False):
        """Like the mixin's, but fails fast offline, checks every config value and weight, and never unpickles.

        On the base class, config.json picks the net, as convhub.load does. Any other keyword is a TypeError: the
        net's sizes come from its config.json (a typo such as ``revison=`` loaded main's weights without a word).
        """
        if not isinstance(pretrained_model_name_or_path, (str, os.PathLike)):  # None was "no folder 'None'"
            raise TypeError(f"name_or_path is a folder or a Hub repo id, not "
                            f"{type(pretrained_model_name_or_path).__name__}")
        folder = resolve(pretrained_model_name_or_path, revision=revision, cache_dir=cache_dir, token=token,
                         force_download=force_download, local_files_only=local_files_only)
        config = read_config(folder)
        source = f"{folder}/config.json"
        check_format(config, source, __version__)
        net_class = ARCHITECTURES[architecture_of(config, source, ARCHITECTURES)]
        if cls is not ConvHubModel and net_class is not cls:
            raise ConvHubError(
                f"{pretrained_model_name_or_path} holds a {net_class.__name__}, not a {cls.__name__}: "
                f"use convhub.load({str(pretrained_model_name_or_path)!r}) to get the right class."
            )
        data_config = DataConfig.from_config(config, source)
        model = net_class._from_pretrained(model_id=str(folder), map_location=map_location, strict=strict,
                                           **net_class.init_args(config, source))
        model.data_config = data_config
        check_outputs(model, folder)
        record = _card_record(folder)
        model.loaded_record = None if record is None else (record, fingerprint(model))
        return model

    @classmethod
    def _from_pretrained(cls, *, model_id: str, map_location="cpu", strict: bool = True, **kwargs):
        # model_id is always a local folder here: from_pretrained resolved it, and checked kwargs. The net is built
        # on the meta device (no random initialisation to throw away) and takes the stored tensors as its own,
        # in its own dtypes; check_weights has made sure every name, shape and kind matches.
        with torch.device("meta"):
            model = cls(**kwargs)
        weights = Path(model_id) / SAFETENSORS_SINGLE_FILE
        if not weights.is_file():
            raise ConvHubError(f"{model_id} has no {SAFETENSORS_SINGLE_FILE}: convhub loads safetensors weights only.")
        device = _device(map_location)
        try:
            check_weights(model, weights)
            expected = model.state_dict()
            state = {name: tensor.to(expected[name].dtype) for name, tensor in load_file(str(weights)).items()}
            model.load_state_dict(state, strict=strict, assign=True)
        except OSError as error:  # not readable; a truncated file is a SafetensorError
            raise cannot_read(weights, error) from None
        except (RuntimeError, SafetensorError) as error:  # wrong shapes / truncated or corrupt file
            raise ConvHubError(
                f"weights in {weights} do not fit {cls.__name__}{json.dumps(kwargs)}: {error}") from error
        bad = [name for name, t in model.state_dict().items() if t.is_floating_point() and not t.isfinite().all()]
        if bad:
            raise ConvHubError(f"weights in {weights} hold NaN or infinite values ({', '.join(bad[:3])}): refusing "
                               "them, they would turn every prediction into NaN")
        negative = [name for name, t in model.state_dict().items() if name.endswith("running_var") and (t < 0).any()]
        if negative:
            raise ConvHubError(f"weights in {weights} hold a negative batch-norm variance ({', '.join(negative[:3])})"
                               ": refusing them, a variance is never negative and its square root is NaN")
        model.eval()
        try:
            return model.to(device)  # checked on the CPU, then moved: a device's failure is not the weights'
        except (RuntimeError, AssertionError) as error:  # no GPU: torch raises either, by how it was built
            raise ConvHubError(f"cannot put {cls.__name__} on {device}: {one_line(error)}") from None

    def transforms(self) -> ImageTransform:
        """The preprocessing these weights expect (from config.json), as torchvision's ``weights.transforms()``: it
        takes PIL images and tensors (uint8 or float, CHW or NCHW)."""
        return ImageTransform(self.data_config)

    @torch.inference_mode()
    def predict(self, image: ImageInput) -> dict[str, float] | list[dict[str, float]]:
        """Class probabilities for an image of any size and mode (a path, file object or its bytes, a PIL image, a
        uint8 HWC array, a CHW tensor); a batch tensor (NCHW), or a list of images, gives one dict per image."""
        if isinstance(image, list):  # as a pipeline takes them: one forward pass for all
            if not image:
                return []
            batched, tensor = True, torch.stack([self._one_input(i) for i in image])
        elif isinstance(image, torch.Tensor):
            batched = as_image_tensor(image, check_values=False).dim() == 4  # transforms() checks the values
            tensor = self.transforms()(image if batched else image.unsqueeze(0))
        else:
            batched, tensor = False, self.transforms()(open_image(image)).unsqueeze(0)
        was_training = self.training
        self.eval()
        try:
            param = next(self.parameters())
            probs = self(tensor.to(param.device, param.dtype)).softmax(dim=1).cpu()
        finally:
            self.train(was_training)
        if not probs.isfinite().all():  # weights that overflow on this image: check_outputs tries only two
            raise ConvHubError(f"{self.model_name}'s output for this image is not a number: its weights overflow "
                               "on it")
        rows = [{name: float(p) for name, p in zip(self.class_names, row)} for row in probs]
        return rows if batched else rows[0]

    def _one_input(self, image) -> torch.Tensor:
        """One image of a list, preprocessed: (C, H, W)."""
        if isinstance(image, torch.Tensor) and as_image_tensor(image, check_values=False).dim() != 3:
            raise ConvHubError(f"a list's tensors must each be one image (C, H, W), not {tuple(image.shape)}")
        return self.transforms()(image if isinstance(image, torch.Tensor) else open_image(image))


def fingerprint(model: ConvHubModel, config: dict | None = None) -> str:
    """A hash of every tensor of the state dict (~5 ms for the 100-block net's 4 MB) and of the config.json it would
    be saved with (class names and normalization describe the net as much as its weights do)."""
    digest = hashlib.sha256(json.dumps({**model.hub_config(), **(config or {})}, sort_keys=True, default=repr).encode())
    for name, tensor in model.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def _card_record(folder: Path) -> dict | None:
    """The training record of the card beside the weights, or None: a missing or broken card costs the metrics,
    never the net. A card that is a link is read only where it points into the same HF cache repo (its blobs), never
    elsewhere: another file's words would go into the cards saved from the net."""
    card = folder / "README.md"
    try:
        if card.is_symlink() and not _a_cache_blob(card):
            return None
        return training_record(folder)
    except (ConvHubError, OSError, ValueError):
        return None


def _a_cache_blob(card: Path) -> bool:
    """Whether ``card`` is a link as the HF cache makes them: snapshots/<commit>/README.md -> ../../blobs/<hash>, in
    a repo folder (models--*), none of them a link (a planted `blobs` link to / let a card read any file)."""
    snapshot, target = card.parent, os.readlink(card)
    repo = snapshot.parent.parent
    blob = repo / "blobs" / Path(target).name
    return (re.fullmatch(r"\.\./\.\./blobs/(?:[0-9a-f]{40}|[0-9a-f]{64})", target) is not None
            and snapshot.parent.name == "snapshots" and repo.name.startswith("models--")
            and not any(p.is_symlink() for p in (snapshot, snapshot.parent, repo, repo / "blobs", blob))
            and blob.is_file())


def _device(map_location) -> torch.device:
    """``map_location`` as a device, or a clear error (a string, a torch.device; 'meta' holds no weights)."""
    try:
        device = torch.device(map_location)
    except (RuntimeError, TypeError):
        raise ConvHubError(f"map_location must name a device ('cpu', 'cuda', 'cuda:1', 'mps'), not "
                           f"{shown(map_location)}") from None
    if device.type == "meta":
        raise ConvHubError("map_location='meta' would load no weights: for a net without them, convhub.create(name) "
                           "under `with torch.device('meta'):`")
    return device


@torch.inference_mode()
def check_outputs(model: "ConvHubModel", folder: Path) -> None:
    """Refuse weights whose predictions are not numbers: finite values can still overflow (a weight of 3e38 after a
    saturated tanh). One black and one white image, through the model as loaded (~20 ms for the 100-block net, a
    millisecond or two for the others): a first look, not a proof (weights can overflow on red images only), so
    predict() and the Space check every output too."""
    size = model.data_config.input_size
    extremes = torch.stack([torch.zeros(size, dtype=torch.uint8), torch.full(size, 255, dtype=torch.uint8)])
    device = next(model.parameters()).device  # map_location may have put it on a GPU
    logits = model(model.transforms()(extremes).to(device))
    if not logits.isfinite().all():
        raise ConvHubError(f"the weights in {folder} give NaN or infinite outputs on a plain black or white image: "
                           "refusing them, their predictions would not be numbers")


def check_weights(model: torch.nn.Module, weights: Path) -> None:
    """Refuse, from the file's header alone, weights whose tensors are not the model's: missing or extra names,
    other shapes, or integers where the model holds floats (int8 weights would load as a constant net)."""
    expected = model.state_dict()
    # The header is JSON, parsed whole by safe_open (up to 100 MB: 83 MB of it took 1.3 GB and 8 s). A convhub net's
    # is at most ~600 bytes per tensor: 58 KB for net_res_deep100.
    limit = 1024 + 600 * len(expected)
    with open(weights, "rb") as file:
        header = int.from_bytes(file.read(8), "little")
    if header > limit:
        raise ConvHubError(f"weights in {weights}: a safetensors header of {header:,} bytes, for a net of "
                           f"{len(expected)} tensors (at most {limit:,} bytes)")
    with safe_open(str(weights), framework="pt") as stored:
        names = set(stored.keys())
        if names != set(expected):
            missing, extra = sorted(set(expected) - names), sorted(names - set(expected))
            raise ConvHubError(f"weights in {weights} do not fit {type(model).__name__}: "
                               + "; ".join(part for part in (f"missing {', '.join(missing[:5])}" if missing else "",
                                                             f"unexpected {', '.join(extra[:5])}" if extra else "")
                                           if part))
        for name in sorted(names):
            tensor = stored.get_slice(name)
            dtype, shape = tensor.get_dtype(), list(tensor.get_shape())
            if shape != list(expected[name].shape):
                raise ConvHubError(f"weights in {weights} do not fit {type(model).__name__}: {name} is {shape}, "
                                   f"the model's is {list(expected[name].shape)}")
            if expected[name].is_floating_point() != (dtype in FLOAT_DTYPES):
                kind = "floating-point" if expected[name].is_floating_point() else "integer"
                raise ConvHubError(f"weights in {weights}: {name} is stored as {dtype}; convhub loads {kind} values "
                                   f"there ({', '.join(FLOAT_DTYPES)} for weights)")


class FullyConnected(ConvHubModel):
    """Ch. 7 baseline: a plain MLP on the flattened 3072 pixels (3.7M parameters)."""

    config_spec = {"hidden": IntList(1, 8, Int(1, 8192))}

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


CHANNELS = Int(2, 512)  # n_chans1; the second conv has half as many


class NetWidth(ConvHubModel):
    """Net with more channels: width buys capacity."""

    config_spec = {"n_chans1": CHANNELS}

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

    config_spec = {"n_chans1": CHANNELS, "p": Float(0.0, 1.0, hi_inclusive=False)}

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

    config_spec = {"n_chans1": CHANNELS}

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

    config_spec = {"n_chans1": CHANNELS}

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
        if self.conv.weight.is_meta:  # built to be loaded (or counted): nothing to draw, and on the meta device
            return  # kaiming_normal_ takes torch's reference path, 1.8 s for the Space's two NetResDeeps
        torch.nn.init.kaiming_normal_(self.conv.weight, nonlinearity="relu")
        torch.nn.init.constant_(self.batch_norm.weight, 0.5)
        torch.nn.init.zeros_(self.batch_norm.bias)

    def forward(self, x):
        return torch.relu(self.batch_norm(self.conv(x))) + x


class NetResDeep(ConvHubModel):
    """A deep residual stack. Unlike the book's notebook, every block has its own weights."""

    config_spec = {"n_chans1": CHANNELS, "n_blocks": Int(1, 1000)}

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


ARCHITECTURES: dict[str, type[ConvHubModel]] = {
    cls.__name__: cls for cls in (FullyConnected, Net, NetWidth, NetDropout, NetBatchNorm, NetDepth, NetRes, NetResDeep)
}
# The zoo: names -> (class, constructor arguments), in the chapter's order (convhub.zoo), as timm's registry maps
# names to entrypoints. convhub.registry builds on it (create, list_models, load).
ZOO: dict[str, tuple[type[ConvHubModel], dict]] = {name: (ARCHITECTURES[arch], dict(kwargs))
                                                  for name, (arch, kwargs) in NETS.items()}


def _plain(value):
    """Tuples as lists: a config read back from config.json has lists where the constructor had tuples."""
    return list(value) if isinstance(value, tuple) else value


def zoo_name_for(model: ConvHubModel) -> str:
    """The zoo name whose class and arguments match ``model``; custom configs get a descriptive name."""
    config = {k: _plain(v) for k, v in (model._hub_mixin_config or {}).items()}
    for name, (cls, kwargs) in ZOO.items():
        defaults = cls._hub_mixin_jsonable_default_values
        if type(model) is cls and all(
            config.get(k, _plain(defaults.get(k))) == _plain(v) for k, v in {**defaults, **kwargs}.items()
        ):
            return name
    args = "_".join(  # n_chans1-8: "n_chans18" read as 18 channels; only what a card's model_name may hold
        f"{k}-{'x'.join(map(str, v)) if isinstance(v, list) else v}"
        for k, v in sorted(config.items()) if not isinstance(v, dict)
    )
    return f"{type(model).__name__.lower()}_{args}".rstrip("_")
