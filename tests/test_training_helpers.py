"""Synthetic CIFAR-2 data for the training tests (no tests here; helpers shared by tests/test_training_*.py).

The two classes are easy to learn, so a couple of epochs measurably beat chance:
airplane = bluish sky with a bright horizontal bar, bird = brownish background with a dark round blob.
Everything is written into a test's tmp_path in the three supported source formats:
an image folder, a CIFAR-10 python root (pickled exactly like the original Python 2 files) and a
`datasets` dataset in the Hub repo layout (data/{train,test}-00000-of-00001.parquet).
"""

from __future__ import annotations

import contextlib
import io
import pickle
import struct
import sys
from pathlib import Path

import huggingface_hub
import numpy as np
import pytest
import torch
from PIL import Image

# So `from test_training_helpers import ...` works whether or not tests/ is a package (rootdir/importmode agnostic).
if str(Path(__file__).resolve().parent) not in sys.path:
    sys.path.insert(0, str(Path(__file__).resolve().parent))


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():
    """Tiny nets train ~50x faster on one thread when the cores are busy (OpenMP threads fight over them).

    Autouse in every module that imports it: `from test_training_helpers import one_torch_thread  # noqa: F401`.
    """
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture
def no_token(monkeypatch, tmp_path):
    """No Hugging Face token anywhere: not in the environment, not in the token file."""
    for name in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_OIDC_RESOURCE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(huggingface_hub.constants, "HF_TOKEN_PATH", str(tmp_path / "no-token-here"))
    assert huggingface_hub.get_token() is None


CIFAR10_NAMES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
AIRPLANE, BIRD = 0, 1  # CIFAR-2 labels
CIFAR10_AIRPLANE, CIFAR10_BIRD = 0, 2


def scramble_batch_norm_statistics(model: torch.nn.Module) -> torch.nn.Module:
    """Running statistics far from their initial 0 and 1, so that eval mode and batch-norm folding both count."""
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-1, 1)
            module.running_var.uniform_(0.5, 2)
    return model


def synth_image(label: int, rng: np.random.Generator, size: int = 32) -> np.ndarray:
    """HxWx3 uint8: airplane (0) = bluish + bright horizontal bar, bird (1) = brownish + dark blob."""
    yy, xx = np.mgrid[0:size, 0:size]
    if label == AIRPLANE:
        base = np.array([70, 120, 210]) + rng.integers(-25, 26, 3)
        image = np.broadcast_to(base, (size, size, 3)).astype(np.float64)
        y = rng.integers(size // 4, 3 * size // 4)
        h = max(2, size // 10)
        x0 = rng.integers(0, size // 4)
        image[y:y + h, x0:x0 + size // 2 + size // 4] = 245
    else:
        base = np.array([150, 105, 55]) + rng.integers(-25, 26, 3)
        image = np.broadcast_to(base, (size, size, 3)).astype(np.float64)
        cy, cx = rng.integers(size // 4, 3 * size // 4, 2)
        r = size / 6
        image[(yy - cy) ** 2 + (xx - cx) ** 2 <= r * r] = (40, 30, 20)
    image += rng.normal(0, 8, image.shape)
    return np.clip(image, 0, 255).astype(np.uint8)


def noise_image(rng: np.random.Generator, size: int = 32) -> np.ndarray:
    """Stand-in for the eight CIFAR-10 classes that CIFAR-2 drops."""
    return rng.integers(0, 256, (size, size, 3), dtype=np.uint8)


def make_image_folder(root: Path, n_per_class: int = 40, *, seed: int = 0, suffix: str = ".png",
                      size: int = 32) -> Path:
    """ROOT/airplane/*.png and ROOT/bird/*.png, n_per_class each."""
    rng = np.random.default_rng(seed)
    for label, name in enumerate(("airplane", "bird")):
        folder = Path(root) / name
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(n_per_class):
            Image.fromarray(synth_image(label, rng, size)).save(folder / f"{name}_{i:04d}{suffix}")
    return Path(root)


# --- CIFAR-10 python batches, pickled like the original files --------------------------------------------------------

class Py2Str(bytes):
    """A Python 2 `str`: pickled with the (SHORT_)BINSTRING opcode, as cPickle wrote the CIFAR-10 files.

    Loaded with encoding="bytes" (the CIFAR web page's recipe) it reads back as b"data"; with encoding="latin1"
    (torchvision's) as "data".
    """


class Py2Pickler(pickle._Pickler):  # the pure-Python pickler, whose dispatch table can be extended
    """Pickles as cPickle did: Py2Str and the arrays' raw bytes (Python 2 had no bytes type) as BINSTRING."""
    dispatch = pickle._Pickler.dispatch.copy()

    def save_py2str(self, obj):
        data = bytes(obj)
        if len(data) < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([len(data)]) + data)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", len(data)) + data)
        self.memoize(obj)

    dispatch[Py2Str] = save_py2str
    dispatch[bytes] = save_py2str


def dump_py2(obj, path: Path) -> None:
    """Protocol 2, with numpy's modules named as numpy 1 named them, as in the original files."""
    buffer = io.BytesIO()
    Py2Pickler(buffer, protocol=2).dump(obj)
    path.write_bytes(buffer.getvalue().replace(b"cnumpy._core.multiarray\n", b"cnumpy.core.multiarray\n"))


class RunsOnLoad:
    """Pickled, a call of ``function(*args)`` that pickle.load would make: what a hostile batch holds."""

    def __init__(self, function, *args):
        self.function, self.args = function, args

    def __reduce__(self):
        return self.function, self.args


def cifar10_batch(labels: list[int], rng: np.random.Generator, name: str) -> tuple[dict, np.ndarray]:
    """A batch dict in the CIFAR-10 format and its images (N, 32, 32, 3)."""
    images = np.stack([synth_image(AIRPLANE, rng) if v == CIFAR10_AIRPLANE else
                       synth_image(BIRD, rng) if v == CIFAR10_BIRD else noise_image(rng) for v in labels])
    # rows: 1024 red, then 1024 green, then 1024 blue values, each plane row-major (the CIFAR-10 layout)
    data = np.ascontiguousarray(images.transpose(0, 3, 1, 2).reshape(len(labels), 3072))
    batch = {
        Py2Str(b"batch_label"): Py2Str(name.encode()),
        Py2Str(b"labels"): [int(v) for v in labels],
        Py2Str(b"data"): data,
        Py2Str(b"filenames"): [Py2Str(f"img_{i}.png".encode()) for i in range(len(labels))],
    }
    return batch, images


def make_cifar10_root(root: Path, n_per_batch: int = 30, n_test: int = 30, *, seed: int = 0) -> dict:
    """ROOT/cifar-10-batches-py/{data_batch_1..5,test_batch,batches.meta}; labels cycle through all ten classes.

    Returns the CIFAR-2 images and labels that a correct loader must produce: {"train": (images, labels), "test": ...}.
    """
    rng = np.random.default_rng(seed)
    folder = Path(root) / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)
    expected = {"train": ([], []), "test": ([], [])}
    files = [(f"data_batch_{i}", "train", n_per_batch) for i in range(1, 6)] + [("test_batch", "test", n_test)]
    for filename, split, n in files:
        labels = rng.permutation(np.arange(n) % 10).tolist()
        batch, images = cifar10_batch(labels, rng, f"{filename} of 6")
        dump_py2(batch, folder / filename)
        for image, label in zip(images, labels):
            if label in (CIFAR10_AIRPLANE, CIFAR10_BIRD):
                expected[split][0].append(image.transpose(2, 0, 1))
                expected[split][1].append(AIRPLANE if label == CIFAR10_AIRPLANE else BIRD)
    dump_py2({Py2Str(b"num_cases_per_batch"): n_per_batch,
              Py2Str(b"label_names"): [Py2Str(n.encode()) for n in CIFAR10_NAMES],
              Py2Str(b"num_vis"): 3072}, folder / "batches.meta")
    return {split: (np.stack(images), np.array(labels)) for split, (images, labels) in expected.items()}


# --- a datasets dataset in the Hub repo layout ----------------------------------------------------------------------

def cifar10_dataset(n: int, rng: np.random.Generator, *, image_column: str = "img"):
    """A datasets.Dataset with an Image column and a CIFAR-10 ClassLabel column; returns (dataset, expected)."""
    from datasets import ClassLabel, Dataset, Features
    from datasets import Image as ImageFeature

    labels = rng.permutation(np.arange(n) % 4).tolist()  # airplane, automobile, bird, cat
    arrays = [synth_image(AIRPLANE, rng) if v == CIFAR10_AIRPLANE else synth_image(BIRD, rng) if v == CIFAR10_BIRD
              else noise_image(rng) for v in labels]
    features = Features({image_column: ImageFeature(), "label": ClassLabel(names=CIFAR10_NAMES)})
    dataset = Dataset.from_dict({image_column: [Image.fromarray(a) for a in arrays], "label": labels},
                                features=features)
    keep = [i for i, v in enumerate(labels) if v in (CIFAR10_AIRPLANE, CIFAR10_BIRD)]
    expected = (np.stack([arrays[i].transpose(2, 0, 1) for i in keep]),
                np.array([AIRPLANE if labels[i] == CIFAR10_AIRPLANE else BIRD for i in keep]))
    return dataset, expected


def make_parquet_dataset(root: Path, n_train: int = 40, n_test: int = 20, *, seed: int = 0,
                         with_test: bool = True) -> dict:
    """ROOT/data/train-00000-of-00001.parquet (+ test-...): what `push_to_hub` stores in a dataset repo."""
    rng = np.random.default_rng(seed)
    (Path(root) / "data").mkdir(parents=True, exist_ok=True)
    expected = {}
    for split, n in [("train", n_train)] + ([("test", n_test)] if with_test else []):
        dataset, expected[split] = cifar10_dataset(n, rng)
        dataset.to_parquet(str(Path(root) / "data" / f"{split}-00000-of-00001.parquet"))
    return expected


# --- the CLI, in-process --------------------------------------------------------------------------------------------

def run_cli(*argv) -> tuple[int, str, str]:
    """training.cli.main in-process; returns (exit code, stdout, stderr)."""
    from training import cli

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = cli.main([str(a) for a in argv])
        except SystemExit as exit_:  # argparse
            code = exit_.code
    return code, out.getvalue(), err.getvalue()


def assert_user_error(code: int, stderr: str, *phrases: str) -> None:
    assert code == 2
    assert "Traceback" not in stderr
    for phrase in phrases:
        assert phrase in stderr, stderr
