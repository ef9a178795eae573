"""training.data: the three sources (image folder, CIFAR-10 python batches, a `datasets` dataset), the seeded
stratified split and the tensor augmentation. All data is synthetic and written into tmp_path."""

from __future__ import annotations

import dataclasses
import io
import os
import pickle
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import peak_memory, without_root_read_override
from PIL import Image
from safetensors.torch import save_file
from test_training_helpers import (
    CIFAR10_NAMES,
    RunsOnLoad,
    dump_py2,
    make_cifar10_root,
    make_image_folder,
    make_parquet_dataset,
    one_torch_thread,  # noqa: F401 - autouse fixture
    synth_image,
)
from training.data import (
    DataError,
    Split,
    augment,
    crop_and_flip,
    load_cifar2,
    load_decoded,
    load_eval_split,
    load_hub_dataset,
    load_image_folder,
    pad_for_augment,
    save_decoded,
    stratified_split,
)

# --- image folders --------------------------------------------------------------------------------------------------


def test_image_folder_decodes_every_mode_and_size_to_3x32x32_uint8(tmp_path):
    root = tmp_path / "data"
    (root / "airplane").mkdir(parents=True)
    (root / "bird").mkdir()
    rgb = synth_image(0, np.random.default_rng(0))
    Image.fromarray(rgb).save(root / "airplane" / "a_rgb.png")
    Image.new("RGBA", (32, 32), (10, 20, 30, 0)).save(root / "airplane" / "b_transparent.png")  # fully transparent
    Image.new("L", (40, 40), 77).save(root / "airplane" / "c_gray.png")
    palette = Image.new("P", (32, 32), 0)
    palette.putpalette([200, 10, 30] + [0, 0, 0] * 255)
    palette.save(root / "bird" / "a_palette.png")
    # non-square, not 32x32: a red centre square between green side bands; the centre crop keeps only red
    wide = np.zeros((64, 128, 3), np.uint8)
    wide[:, :] = (0, 255, 0)
    wide[:, 32:96] = (255, 0, 0)
    Image.fromarray(wide).save(root / "bird" / "b_wide.png")
    Image.fromarray(rgb).resize((50, 50)).save(root / "bird" / "c_big.jpg", quality=95)
    (root / "bird" / "notes.txt").write_text("not an image, not counted")

    split = load_image_folder(root)

    assert split.images.shape == (6, 3, 32, 32) and split.images.dtype == torch.uint8
    assert split.labels.tolist() == [0, 0, 0, 1, 1, 1]
    assert split.skipped == 0
    assert torch.equal(split.images[0], torch.from_numpy(rgb).permute(2, 0, 1))  # 32x32 RGB: untouched
    assert (split.images[1] == 255).all()  # transparent -> white background
    assert (split.images[2] == 77).all()  # grayscale -> the same value in all three channels
    assert split.images[3].flatten(1).T.unique(dim=0).tolist() == [[200, 10, 30]]  # palette -> its RGB colour
    red = split.images[4].float()
    assert red[0].min() > 250 and red[1].max() < 5 and red[2].max() < 5  # centre square only, no green band
    assert (split.images[5].float() - torch.from_numpy(rgb).permute(2, 0, 1).float()).abs().mean() < 20  # resized jpg


def test_image_folder_with_train_and_test_subfolders_uses_test_as_validation(tmp_path):
    make_image_folder(tmp_path / "d" / "train", 12, seed=1)
    make_image_folder(tmp_path / "d" / "test", 5, seed=2)
    data = load_cifar2(tmp_path / "d")
    assert (len(data.train), len(data.val)) == (24, 10)
    assert data.val.class_counts() == [5, 5]
    assert "test" in data.val_source
    # evaluate takes the --data that trained the net, as it does a CIFAR-10 root's or a dataset's (it wanted class
    # folders here): its test images
    test, source = load_eval_split(tmp_path / "d")
    assert torch.equal(test.images, data.val.images) and source == f"image folder {tmp_path / 'd' / 'test'}"
    shutil.rmtree(tmp_path / "d" / "test")  # train/ alone: the images the net learned from, unless asked for
    with pytest.raises(DataError) as refused:
        load_eval_split(tmp_path / "d")
    assert str(refused.value).startswith(f"{tmp_path / 'd'} holds train/ and no test/: pass {tmp_path / 'd' / 'train'} "
                                         "to evaluate on every image there")


def test_image_folder_without_test_carves_a_stratified_validation_split(tmp_path):
    make_image_folder(tmp_path / "d", 20)
    data = load_cifar2(tmp_path / "d", val_fraction=0.25, seed=3)
    assert data.train.class_counts() == [15, 15] and data.val.class_counts() == [5, 5]
    assert "seed 3" in data.val_source


def test_unreadable_images_are_skipped_and_counted(tmp_path, caplog):
    root = make_image_folder(tmp_path / "d", 6)
    (root / "bird" / "corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0 definitely not a jpeg" * 10)
    (root / "airplane" / "empty.png").write_bytes(b"")
    with caplog.at_level("WARNING"):
        split = load_image_folder(root)
    assert len(split) == 12 and split.skipped == 2
    assert "skipped 2 unreadable" in caplog.text


@pytest.mark.parametrize("layout, message", [
    (None, "no such folder"),
    (["cat", "dog"], "missing airplane, bird"),
    (["airplane"], "missing bird"),
])
def test_image_folder_errors_name_the_problem(tmp_path, layout, message):
    root = tmp_path / "d"
    for name in layout or []:
        (root / name).mkdir(parents=True)
        Image.new("RGB", (8, 8)).save(root / name / "x.png")
    with pytest.raises(DataError, match=message):
        load_image_folder(root)


def test_folder_of_only_unreadable_images_is_an_error(tmp_path):
    for name in ("airplane", "bird"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "x.png").write_bytes(b"")
    with pytest.raises(DataError, match="no readable images"):
        load_image_folder(tmp_path)


# --- CIFAR-10 python batches ----------------------------------------------------------------------------------------


def test_synthetic_batches_have_the_documented_cifar10_format(tmp_path):
    """The fixture itself: what the CIFAR web page's `unpickle` (encoding="bytes") returns for the real files."""
    make_cifar10_root(tmp_path, n_per_batch=20)
    with open(tmp_path / "cifar-10-batches-py" / "data_batch_1", "rb") as f:
        batch = pickle.load(f, encoding="bytes")
    assert batch[b"data"].dtype == np.uint8 and batch[b"data"].shape == (20, 3072)
    assert isinstance(batch[b"labels"], list) and set(batch[b"labels"]) == set(range(10))
    with open(tmp_path / "cifar-10-batches-py" / "batches.meta", "rb") as f:
        assert [n.decode() for n in pickle.load(f, encoding="bytes")[b"label_names"]] == CIFAR10_NAMES


@pytest.mark.parametrize("given", ["root", "batches_folder"])
def test_cifar10_root_keeps_airplanes_and_birds_and_validates_on_test_batch(tmp_path, given):
    expected = make_cifar10_root(tmp_path, n_per_batch=30, n_test=40)
    data = load_cifar2(tmp_path if given == "root" else tmp_path / "cifar-10-batches-py")

    for split, name in ((data.train, "train"), (data.val, "test")):
        images, labels = expected[name]
        assert split.images.dtype == torch.uint8 and split.images.shape[1:] == (3, 32, 32)
        assert torch.equal(split.images, torch.from_numpy(images))  # CHW planes decoded in the right order
        assert split.labels.tolist() == labels.tolist()  # CIFAR-10 0 -> 0, 2 -> 1, in file order
    assert len(data.train) == 5 * 6 and len(data.val) == 8  # labels cycle 0..9: 6 of every 30 are 0 or 2
    assert "test" in data.val_source
    assert data.dataset_id == "uoft-cs/cifar10"  # CIFAR-10 is CIFAR-10, wherever its batches lie

    test, source = load_eval_split(tmp_path)
    assert torch.equal(test.images, data.val.images) and "test batch" in source


@pytest.mark.parametrize("protocol", range(2, pickle.HIGHEST_PROTOCOL + 1))
def test_cifar10_batches_repacked_by_python3_with_bytes_keys_load_too(tmp_path, protocol):
    """Each protocol pickles arrays its own way (protocol 2 their bytes through _codecs.encode, protocol 5 through
    numpy's _frombuffer), and labels as a numpy array too."""
    expected = make_cifar10_root(tmp_path, n_per_batch=10, n_test=10)
    folder = tmp_path / "cifar-10-batches-py"
    for path in folder.iterdir():
        with open(path, "rb") as f:
            entry = pickle.load(f, encoding="bytes")
        if b"labels" in entry and path.name == "data_batch_2":
            entry[b"labels"] = np.asarray(entry[b"labels"], dtype=np.int64)
        with open(path, "wb") as f:
            pickle.dump(entry, f, protocol=protocol)  # Python 3 pickle: b"data" / b"labels" keys
    data = load_cifar2(tmp_path)
    assert data.train.labels.tolist() == expected["train"][1].tolist()
    assert torch.equal(data.train.images, torch.from_numpy(expected["train"][0]))


@pytest.mark.parametrize("attack", ["os.system", "builtins.exec", "subprocess.call", "inside the data"])
def test_a_cifar10_batch_that_would_run_code_is_refused_without_running_it(tmp_path, attack):
    """The batches are pickles: reading one with pickle.load runs whatever it names. Nothing here may run."""
    import builtins
    import os
    import subprocess

    make_cifar10_root(tmp_path, n_per_batch=10, n_test=10)
    marker = tmp_path / "ran"
    payload = {"os.system": RunsOnLoad(os.system, f"touch {marker}"),
               "builtins.exec": RunsOnLoad(builtins.exec, f"open({str(marker)!r}, 'w').close()"),
               "subprocess.call": RunsOnLoad(subprocess.call, ["touch", str(marker)])}.get(attack)
    batch = tmp_path / "cifar-10-batches-py" / "data_batch_2"
    with open(batch, "rb") as f:
        entry = pickle.load(f, encoding="bytes")
    if payload is None:  # deep inside an otherwise valid batch
        entry[b"filenames"][3] = RunsOnLoad(os.system, f"touch {marker}")
    else:
        entry = payload
    batch.write_bytes(pickle.dumps(entry, protocol=4))
    expected_global = {"builtins.exec": "builtins.exec", "subprocess.call": "subprocess.call"}.get(attack, "system")

    with pytest.raises(DataError, match=rf"data_batch_2 is not a CIFAR-10 python batch: .*{expected_global}.*not "
                                        r"loaded \(a pickle can run code\)"):
        load_cifar2(tmp_path)
    assert not marker.exists()


def _global(module: str, name: str) -> bytes:
    return b"c" + module.encode() + b"\n" + name.encode() + b"\n"


def _pickled(value) -> bytes:  # a value's opcodes, to splice into a hand-written pickle
    return pickle.dumps(value, protocol=2)[2:-1]


def _dtype(code: str) -> bytes:  # numpy.dtype(code), its state as numpy pickles it
    return _global("numpy", "dtype") + _pickled((code, False, True)) + b"R" + _pickled(
        (3, "|", None, None, None, -1, -1, 0)) + b"b"


def test_numpy_in_a_cifar10_batch_is_never_called_with_the_files_arguments(tmp_path):
    """numpy's own pickle functions are not safe with a stranger's arguments: scalar() of an object dtype takes 8
    bytes of the file as an object's address, which the pickle can then call (here os.system, its address found with
    id() as an attacker would through a leak)."""
    import os
    import struct
    import warnings

    make_cifar10_root(tmp_path, n_per_batch=10, n_test=10)
    marker = tmp_path / "ran"
    address = _pickled(struct.pack("<Q", id(os.system)))
    call_at = _global("numpy.core.multiarray", "scalar") + b"(" + _dtype("O") + address + b"tR"
    hostile = b"\x80\x02" + call_at + b"(" + _pickled(f"touch {marker}") + b"tR."
    (tmp_path / "cifar-10-batches-py" / "data_batch_1").write_bytes(hostile)
    with warnings.catch_warnings(), pytest.raises(DataError, match="data_batch_1 is not a CIFAR-10 python batch: "
                                                                   ".*multiarray.scalar"):
        warnings.simplefilter("ignore")
        load_cifar2(tmp_path)
    assert not marker.exists()


@pytest.mark.parametrize("bomb", ["ndarray of any shape", "empty array rebuilt", "nested label lists"])
def test_a_small_cifar10_batch_cannot_claim_a_large_allocation(tmp_path, bomb):
    """A few hundred bytes must not become gigabytes: arrays are views of the bytes in the file, labels a flat list."""
    import tracemalloc

    make_cifar10_root(tmp_path, n_per_batch=10, n_test=10)
    n = 2**28 // 3072  # 256 MiB of images
    if bomb == "ndarray of any shape":  # numpy.ndarray(shape, dtype): allocated, never filled
        empty = lambda shape, code: (_global("numpy", "ndarray") + b"(" + _pickled(shape)  # noqa: E731
                                     + _dtype(code) + b"tR")
        data, labels = empty((n, 3072), "u1"), empty((n,), "<i8")
    elif bomb == "empty array rebuilt":  # _reconstruct(ndarray, shape, ...) allocates its shape before any data
        empty = lambda shape, code: (_global("numpy.core.multiarray", "_reconstruct") + b"("  # noqa: E731
                                     + _global("numpy", "ndarray") + _pickled(shape) + _pickled(b"b") + b"tR")
        data, labels = empty((n, 3072), "u1"), empty((n,), "<i8")
    else:  # 200 references to a list of 200 references to a list of 200 labels: 8 million labels from ~2 KB
        level = _pickled([0] * 200)
        for _ in range(2):
            level = b"(" + level + b"p9999\n" + b"g9999\n" * 199 + b"l"
        data, labels = _pickled(np.zeros((1, 3072), np.uint8)), level
    batch = b"\x80\x02}(" + _pickled("data") + data + _pickled("labels") + labels + b"u."
    assert len(batch) < 12_000
    (tmp_path / "cifar-10-batches-py" / "test_batch").write_bytes(batch)
    tracemalloc.start()
    try:
        with pytest.raises(DataError, match="test_batch is not a CIFAR-10 python batch"):
            load_cifar2(tmp_path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 32 * 2**20


def _hostile_opcodes(kind: str) -> bytes:
    """Small pickles whose built-in opcodes (no global at all) crash, stall or bloat the C unpickler."""
    import struct

    if kind == "a tuple nested 200,000 deep, as a dict key":  # hashing it recursed in C until the stack ran out
        return b"\x80\x02}" + b")" + b"\x85" * 200_000 + b"Ns."
    if kind == "200,000 int keys that hash alike":  # every insert compares with all earlier keys (~7 minutes)
        keys = b"".join(pickle.dumps(k * (2**61 - 1), protocol=2)[2:-1] + b"N" for k in range(1, 200_001))
        return b"\x80\x02}(" + keys + b"u."
    if kind == "one memo index of 2**27":  # the memo array grows to the index, zero-filled
        return b"\x80\x02}r" + struct.pack("<I", 2**27) + b"."
    if kind == "8 MB of one-byte empty lists":  # ~60 bytes of list per byte of file
        return b"\x80\x04" + b"]" * (8 * 2**20) + b"."
    raise AssertionError(kind)


@pytest.mark.parametrize("kind", ["a tuple nested 200,000 deep, as a dict key", "200,000 int keys that hash alike",
                                  "one memo index of 2**27", "8 MB of one-byte empty lists"])
def test_a_cifar10_batch_is_checked_opcode_by_opcode_before_anything_is_built(tmp_path, kind):
    """Globals are not the only danger in a pickle: these use none. In a process of its own (one crashed the
    interpreter): one DataError, and memory no more than the file's few megabytes."""
    import subprocess
    import sys

    make_cifar10_root(tmp_path, n_per_batch=10, n_test=10)
    (tmp_path / "cifar-10-batches-py" / "data_batch_3").write_bytes(_hostile_opcodes(kind))
    script = (
        "import resource, sys\n"
        "from training.data import DataError, load_cifar2\n"
        "before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "try:\n"
        f"    load_cifar2({str(tmp_path)!r})\n"
        "except DataError as error:\n"
        "    print('DataError:', error)\n"
        "print('grew KB:', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before)\n")
    result = subprocess.run([sys.executable, "-c", script], cwd=Path(__file__).resolve().parents[1],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    lines = result.stdout.splitlines()
    assert lines[0].startswith("DataError: ") and "data_batch_3 is not a CIFAR-10 python batch" in lines[0]
    assert int(lines[1].removeprefix("grew KB: ")) < 100 * 1024


def test_a_cifar10_batch_cannot_change_how_the_next_one_is_read(tmp_path):
    """BUILD sets the state of whatever it is given: given the function a global stands for, it must not reach one
    shared by every later batch (here it made the next, valid, root fail)."""
    make_cifar10_root(tmp_path / "hostile", n_per_batch=10, n_test=10)
    expected = make_cifar10_root(tmp_path / "valid", n_per_batch=10, n_test=10)
    rebind = b"\x80\x02cnumpy._core.multiarray\n_reconstruct\n(c_codecs\nencode\n)NNtb0}."
    (tmp_path / "hostile" / "cifar-10-batches-py" / "data_batch_1").write_bytes(rebind)
    with pytest.raises(DataError):
        load_cifar2(tmp_path / "hostile")
    assert load_cifar2(tmp_path / "valid").train.labels.tolist() == expected["train"][1].tolist()


def test_a_cifar10_batch_larger_than_any_real_one_is_not_read(tmp_path):
    make_cifar10_root(tmp_path, n_per_batch=10, n_test=10)
    with open(tmp_path / "cifar-10-batches-py" / "data_batch_5", "r+b") as f:
        f.truncate(65 * 2**20)  # sparse: no disk used
    with pytest.raises(DataError, match=r"data_batch_5 is not a CIFAR-10 python batch: .*68,157,440 bytes; a "
                                        r"CIFAR-10 batch is ~31 MB, at most 67,108,864 are read"):
        load_cifar2(tmp_path)


def test_broken_cifar10_root_is_a_data_error(tmp_path):
    make_cifar10_root(tmp_path, n_per_batch=10, n_test=10)
    folder = tmp_path / "cifar-10-batches-py"
    (folder / "data_batch_3").write_bytes(b"garbage, not a pickle")
    with pytest.raises(DataError, match="data_batch_3|CIFAR-10"):
        load_cifar2(tmp_path)
    dump_py2({"labels": [0, 2]}, folder / "data_batch_3")  # no data
    with pytest.raises(DataError, match="CIFAR-10"):
        load_cifar2(tmp_path)
    (folder / "data_batch_3").write_bytes((folder / "data_batch_1").read_bytes())
    (folder / "test_batch").unlink()
    with pytest.raises(DataError, match="missing test_batch"):
        load_cifar2(tmp_path)



@pytest.mark.parametrize("layout", ["image folder", "train and test folders", "CIFAR-10 root", "datasets folder"])
def test_what_a_card_may_say_about_the_data_names_no_local_path(tmp_path, monkeypatch, layout):
    """A card can be published: it names a local source by its folder's own name, never by the path to it."""
    where = tmp_path / "home" / "alice" / "private"
    if layout == "image folder":
        make_image_folder(where / "cifar2", 10)
        source, expected = where / "cifar2", "image folder cifar2"
    elif layout == "train and test folders":
        make_image_folder(where / "cifar2" / "train", 10, seed=1)
        make_image_folder(where / "cifar2" / "test", 5, seed=2)
        source, expected = where / "cifar2", "image folder cifar2/train"
    elif layout == "CIFAR-10 root":
        make_cifar10_root(where, n_per_batch=30, n_test=40)
        source, expected = where, "CIFAR-10 python batches"
    else:
        make_parquet_dataset(where / "ds", n_train=40, n_test=20)
        source, expected = where / "ds", "datasets folder ds"
    data = load_cifar2(source)
    assert data.public_source == expected
    assert "alice" not in data.public_source and "alice" in data.source  # the log line keeps the whole path
    monkeypatch.chdir(tmp_path / "home")  # as `--data ../shared/data/cifar2/train` names ours
    assert load_cifar2(Path("..") / "home" / source.relative_to(tmp_path / "home")).public_source == expected
    (tmp_path / "home" / "data").symlink_to(source)  # a link's own name, not its target's
    assert load_cifar2("data").public_source == expected.replace(source.name, "data")
    monkeypatch.chdir(source)  # `--data .` names no folder, rather than the one the user was in
    assert load_cifar2(".").public_source == expected.replace(f" {source.name}", "").replace("/", " ")


# --- datasets -------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("prefix", ["", "hf:", "hf:~/"])
def test_datasets_parquet_layout_loads_through_load_cifar2(tmp_path, prefix, monkeypatch):
    expected = make_parquet_dataset(tmp_path / "ds", n_train=40, n_test=20)
    if prefix == "hf:~/":  # as the shell would not expand it after hf: (it was "no such local folder")
        monkeypatch.setenv("HOME", str(tmp_path))
        prefix, tmp_path = "hf:", Path("~")
    data = load_cifar2(f"{prefix}{tmp_path / 'ds'}")
    for split, name in ((data.train, "train"), (data.val, "test")):
        images, labels = expected[name]
        assert split.images.dtype == torch.uint8 and split.images.shape == (len(labels), 3, 32, 32)
        assert split.labels.tolist() == labels.tolist()
        # lossless PNG inside the parquet file: the exact pixels come back
        assert torch.equal(split.images, torch.from_numpy(images))
    assert "datasets" in data.source and "test" in data.val_source
    test, _ = load_eval_split(f"{prefix}{tmp_path / 'ds'}")
    assert torch.equal(test.labels, data.val.labels)


def test_a_dataset_image_given_by_path_is_read_only_from_a_regular_file_in_its_folder(tmp_path):
    """A dataset's Image value may hold a path instead of bytes. The path is the dataset's word: it is read only
    relative to the dataset's folder and inside it, and only a regular file there. One naming a photo elsewhere on
    this machine (absolute, or climbing out with ..), a link, a FIFO (which would block for ever), a folder or
    nothing is skipped and counted."""
    import os
    import threading

    import pyarrow.parquet as pq
    from datasets import ClassLabel, Dataset, Features
    from datasets import Image as ImageFeature

    folder = tmp_path / "ds"
    (folder / "images").mkdir(parents=True)
    rng = np.random.default_rng(0)
    Image.fromarray(synth_image(1, rng)).save(folder / "images" / "bird.png")
    Image.fromarray(synth_image(1, rng)).save(tmp_path / "private-photo.png")
    os.mkfifo(folder / "images" / "fifo.png")
    (folder / "images" / "link.png").symlink_to(tmp_path / "private-photo.png")
    paths = ["images/bird.png", str(tmp_path / "private-photo.png"), "../private-photo.png", "images/link.png",
             "images/fifo.png", "images", "images/missing.png"]
    features = Features({"img": ImageFeature(), "label": ClassLabel(names=CIFAR10_NAMES)})
    dataset = Dataset.from_dict({"img": [{"bytes": None, "path": p} for p in paths], "label": [2] * len(paths)},
                                features=features)
    (folder / "data").mkdir()
    # written as it stands (Dataset.to_parquet would embed the files' bytes, as push_to_hub does)
    pq.write_table(dataset.data.table, folder / "data" / "train-00000-of-00001.parquet")

    unblocked = []

    def unblock_a_reader():  # if the loader opened the FIFO, it waits here for a writer: be one, and say so
        fd = os.open(folder / "images" / "fifo.png", os.O_WRONLY)
        unblocked.append(True)
        os.close(fd)

    guard = threading.Timer(30, lambda: threading.Thread(target=unblock_a_reader, daemon=True).start())
    guard.start()
    try:
        train = load_hub_dataset(str(folder))
    finally:
        guard.cancel()
    assert not unblocked
    assert len(train) == 1 and train.skipped == len(paths) - 1
    assert torch.equal(train.images[0], torch.from_numpy(synth_image(1, np.random.default_rng(0))).permute(2, 0, 1))


def test_datasets_without_test_split_carves_validation(tmp_path):
    expected = make_parquet_dataset(tmp_path / "ds", n_train=80, with_test=False)
    data = load_cifar2(tmp_path / "ds", val_fraction=0.25, seed=0)
    assert len(data.train) + len(data.val) == len(expected["train"][1])
    assert data.val.class_counts() == [5, 5]


def test_datasets_save_to_disk_layout_and_cifar2_class_names(tmp_path):
    """A DatasetDict saved with save_to_disk, whose ClassLabel has only the two CIFAR-2 names (bird = 1)."""
    from datasets import ClassLabel, Dataset, DatasetDict, Features
    from datasets import Image as ImageFeature

    rng = np.random.default_rng(0)
    features = Features({"image": ImageFeature(), "label": ClassLabel(names=["airplane", "bird"])})

    def split(n):
        labels = [i % 2 for i in range(n)]
        return Dataset.from_dict({"image": [Image.fromarray(synth_image(v, rng)) for v in labels], "label": labels},
                                 features=features)

    DatasetDict(train=split(20), test=split(10)).save_to_disk(str(tmp_path / "saved"))
    data = load_cifar2(tmp_path / "saved")
    assert data.train.class_counts() == [10, 10] and data.val.class_counts() == [5, 5]


def test_a_dataset_whose_class_names_are_not_ours_is_refused_not_renumbered(tmp_path):
    """Its labels named 0 'bird' and 2 'plane': read with CIFAR-10's numbering, its birds became airplanes."""
    from datasets import ClassLabel, Dataset, Features
    from datasets import Image as ImageFeature

    rng = np.random.default_rng(0)
    features = Features({"img": ImageFeature(), "label": ClassLabel(names=["bird", "cat", "plane"])})
    labels = [0, 1, 2] * 10
    (tmp_path / "ds" / "data").mkdir(parents=True)
    Dataset.from_dict({"img": [Image.fromarray(synth_image(v % 2, rng)) for v in labels], "label": labels},
                      features=features).to_parquet(str(tmp_path / "ds" / "data" / "train-00000-of-00001.parquet"))
    with pytest.raises(DataError, match="names its classes 'bird', 'cat', 'plane': none is called airplane"):
        load_cifar2(tmp_path / "ds")


def _png(array: np.ndarray) -> bytes:
    import io

    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, "PNG")
    return buffer.getvalue()


@pytest.mark.parametrize("layout", ["bytes", "datasets' {bytes, path}"])
def test_parquet_images_stored_once_for_many_rows_load_row_by_row(tmp_path, layout):
    """A parquet dictionary page stores a value once for any number of rows: each row still gets its image."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(0)
    pictures = [_png(synth_image(label, rng)) for label in (0, 1)]
    labels = [0, 2] * 10  # CIFAR-10's airplane and bird
    values = pa.array([pictures[i % 2] for i in range(len(labels))], pa.binary())
    if layout == "bytes":
        column = values
    else:
        column = pa.StructArray.from_arrays([values, pa.nulls(len(labels), pa.string())], names=["bytes", "path"])
    (tmp_path / "ds" / "data").mkdir(parents=True)
    pq.write_table(pa.table({"img": column, "label": labels}), tmp_path / "ds" / "data" / "train-00000-of-00001.parquet",
                   use_dictionary=True)
    data = load_cifar2(tmp_path / "ds", val_fraction=0.2)
    images = torch.cat([data.train.images, data.val.images])
    classes = torch.cat([data.train.labels, data.val.labels])
    assert len(images) == 20 and classes.tolist().count(0) == 10
    for label in (0, 1):
        expected = torch.from_numpy(np.array(Image.open(io.BytesIO(pictures[label])))).permute(2, 0, 1)
        assert all(torch.equal(image, expected) for image in images[classes == label])


def _load_in_a_process_of_its_own(table, folder: Path) -> tuple[str, int]:
    """``table`` written as ``folder``'s one parquet file (zstd, no arrow schema: the column types as parquet has
    them), then loaded in a process of its own: the DataError's message (or ""), and the peak memory in KB."""
    import pyarrow.parquet as pq

    (folder / "data").mkdir(parents=True)
    pq.write_table(table, folder / "data" / "train-00000-of-00001.parquet", compression="zstd", store_schema=False)
    return peak_memory("from training.data import DataError, load_cifar2",
                       "try: load_cifar2(sys.argv[1]); print()\nexcept DataError as error: print(error)", folder)


def test_a_parquet_value_shared_by_many_rows_is_not_inflated_before_it_is_counted(tmp_path):
    """753 bytes of parquet: 200 rows sharing one 8 MB value, each row made its own copy (3.5 GB) before the size
    was counted."""
    import pyarrow as pa

    shared = pa.DictionaryArray.from_arrays(pa.array([0] * 200, pa.int32()), pa.array([bytes(8 * 2**20)]))
    message, peak_kb = _load_in_a_process_of_its_own(
        pa.table({"img": shared, "label": pa.array([0] * 200, pa.int64())}), tmp_path / "bomb")
    assert (tmp_path / "bomb" / "data" / "train-00000-of-00001.parquet").stat().st_size < 2000
    assert "more than 1,000,000 rows or 1,073,741,824 bytes" in message
    assert peak_kb < 512 * 1024  # it was ~3 GB


def test_a_parquet_path_shared_by_many_rows_is_not_inflated_either(tmp_path):
    """datasets' {bytes, path} cells: 120 rows sharing one 8 MB path in a 1 KB file took 1.9 GB, uncounted."""
    import pyarrow as pa

    path = pa.DictionaryArray.from_arrays(pa.array([0] * 120, pa.int32()), pa.array(["x" * (8 * 2**20)]))
    cells = pa.StructArray.from_arrays([pa.nulls(120, pa.binary()), path], names=["bytes", "path"])
    message, peak_kb = _load_in_a_process_of_its_own(
        pa.table({"img": cells, "label": pa.array([0] * 120, pa.int64())}), tmp_path / "bomb")
    assert "holds no readable airplane or bird image (120 could not be read" in message
    assert peak_kb < 512 * 1024  # it was ~1.9 GB


def test_parquet_pages_that_decompress_past_the_bound_are_refused_from_the_metadata(tmp_path, monkeypatch):
    """The file's own metadata gives each column's size decompressed: a page of zeros compresses 1000-fold."""
    import training.data

    make_parquet_dataset(tmp_path / "ds", 40, with_test=False)
    monkeypatch.setattr(training.data, "MAX_DATASET_BYTES", 20_000)  # a few of these images' worth
    with pytest.raises(DataError, match=r"its image and label columns take [\d,]+ bytes uncompressed; at most 20,000"):
        load_cifar2(tmp_path / "ds")


def test_datasets_without_image_column_is_a_data_error(tmp_path):
    from datasets import Dataset

    (tmp_path / "ds" / "data").mkdir(parents=True)
    Dataset.from_dict({"text": ["a", "b"], "label": [0, 2]}).to_parquet(
        str(tmp_path / "ds" / "data" / "train-00000-of-00001.parquet"))
    with pytest.raises(DataError, match="image column"):
        load_cifar2(tmp_path / "ds")


# --- a datasets folder from a stranger ------------------------------------------------------------------------------


def test_a_datasets_folder_reads_its_own_files_only_whatever_its_readme_says(tmp_path):
    """load_dataset(folder) obeys the folder's README.md `configs: data_files`: any path on this machine, any URL.
    A local folder's data is its own parquet files, found by their names; nothing else is read or fetched."""
    import socket

    make_parquet_dataset(tmp_path / "elsewhere", n_train=60, with_test=False)
    ours = make_parquet_dataset(tmp_path / "ds", n_train=40, with_test=False)
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    (tmp_path / "ds" / "README.md").write_text(
        "---\nconfigs:\n- config_name: default\n  data_files:\n  - split: train\n    path:\n"
        f"    - {tmp_path / 'elsewhere'}/data/*.parquet\n"
        f"    - ftp://127.0.0.1:{listener.getsockname()[1]}/train.parquet\n---\nA card.\n")
    try:
        train = load_hub_dataset(str(tmp_path / "ds"))
        listener.setblocking(False)  # a connection made at any time waits in the backlog: accepted now, or none
        with pytest.raises(BlockingIOError):
            listener.accept()
    finally:
        listener.close()
    assert train.labels.tolist() == ours["train"][1].tolist()  # its own 40 rows' CIFAR-2 images, not 60 more


@pytest.mark.parametrize("named", ["a FIFO", "an absolute path", "a path up and out", "a link out"])
def test_a_save_to_disk_folder_opens_only_its_own_regular_files(tmp_path, named):
    """state.json names the arrow files load_from_disk opens, as named: a FIFO there blocked the loading for ever."""
    import json
    import os

    from datasets import ClassLabel, Dataset, Features
    from datasets import Image as ImageFeature

    rng = np.random.default_rng(0)
    features = Features({"img": ImageFeature(), "label": ClassLabel(names=CIFAR10_NAMES)})
    Dataset.from_dict({"img": [Image.fromarray(synth_image(0, rng)) for _ in range(6)], "label": [0, 2] * 3},
                      features=features).save_to_disk(str(tmp_path / "saved"))
    state_file = tmp_path / "saved" / "state.json"
    state = json.loads(state_file.read_text())
    arrow = tmp_path / "saved" / state["_data_files"][0]["filename"]
    outside = arrow.rename(tmp_path / "outside.arrow")
    name = {"a FIFO": "pipe.arrow", "an absolute path": str(outside), "a path up and out": "../outside.arrow",
            "a link out": "link.arrow"}[named]
    if named == "a FIFO":
        os.mkfifo(tmp_path / "saved" / name)
    elif named == "a link out":
        (tmp_path / "saved" / name).symlink_to(outside)
    state["_data_files"] = [{"filename": name}]
    state_file.write_text(json.dumps(state))
    with pytest.raises(DataError, match="only plain file names|is not a regular file inside"):
        load_cifar2(tmp_path / "saved")


def test_a_datasets_folder_that_claims_more_rows_than_any_cifar_is_refused_before_reading_them(tmp_path):
    """A few KB of parquet can claim millions of rows (a constant column compresses to nothing); datasets would write
    them all into its cache. The footers are read first."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    (tmp_path / "ds" / "data").mkdir(parents=True)
    n = 1_000_001
    table = pa.table({"img": pa.nulls(n, pa.struct([("bytes", pa.binary()), ("path", pa.string())])),
                      "label": pa.array(np.zeros(n, np.int64))})
    pq.write_table(table, tmp_path / "ds" / "data" / "train-00000-of-00001.parquet")
    assert (tmp_path / "ds" / "data" / "train-00000-of-00001.parquet").stat().st_size < 100_000
    with pytest.raises(DataError, match="claims 1,000,001 rows; at most 1,000,000 are read"):
        load_cifar2(tmp_path / "ds")
    assert not list((tmp_path / "ds").glob("**/*.arrow"))


@pytest.mark.parametrize("column, values, message", [
    ("label", [[0, 2]] * 4, "must hold one whole number per image"),
    ("label", ["airplane", "bird"] * 2, "must hold one whole number per image"),
    ("img", [1, 2, 3, 4], "column must hold images"),
])
def test_a_datasets_folder_with_columns_of_the_wrong_kind_is_one_data_error(tmp_path, column, values, message):
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(0)
    cells = {"img": [{"bytes": _png_bytes(synth_image(0, rng)), "path": None} for _ in range(4)],
             "label": [0, 2, 0, 2], column: values}
    (tmp_path / "ds" / "data").mkdir(parents=True)
    pq.write_table(pa.table(cells), tmp_path / "ds" / "data" / "train-00000-of-00001.parquet")
    with pytest.raises(DataError, match=message):
        load_hub_dataset(str(tmp_path / "ds"))


def _parquet_with_features(path: Path, table, features: dict) -> None:
    """A parquet file whose schema metadata carries datasets' features, as push_to_hub writes them."""
    import json

    import pyarrow.parquet as pq

    metadata = {**(table.schema.metadata or {}), b"huggingface": json.dumps({"info": {"features": features}}).encode()}
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table.replace_schema_metadata(metadata), path)


def test_a_datasets_folders_own_feature_types_are_not_obeyed(tmp_path, monkeypatch):
    """datasets builds a folder's features from its metadata: a Value dtype names a pyarrow function it calls
    (`pa.__dict__[dtype]()`: create_library_symlinks writes into site-packages), an Image "label" column is decoded
    by opening the path or URL in it. The raw columns are read instead."""
    import pyarrow as pa

    called = []
    monkeypatch.setattr(pa, "create_library_symlinks", lambda: called.append("create_library_symlinks"))
    rng = np.random.default_rng(0)
    images = [{"bytes": _png_bytes(synth_image(i % 2, rng)), "path": None} for i in range(4)]
    _parquet_with_features(tmp_path / "dtype" / "data" / "train-00000-of-00001.parquet",
                           pa.table({"img": images, "label": [0, 2, 0, 2]}),
                           {"img": {"_type": "Image"}, "label": {"_type": "Value", "dtype": "create_library_symlinks"}})
    assert load_hub_dataset(str(tmp_path / "dtype")).labels.tolist() == [0, 1, 0, 1]
    assert not called

    fifo = tmp_path / "fifo.png"
    os.mkfifo(fifo)  # opening it would wait for ever
    image_type = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
    label_cells = pa.array([{"bytes": None, "path": str(fifo)}] * 4, image_type)
    _parquet_with_features(tmp_path / "image-labels" / "data" / "train-00000-of-00001.parquet",
                           pa.table({"img": pa.array(images, image_type), "label": label_cells}),
                           {"img": {"_type": "Image"}, "label": {"_type": "Image"}})
    with pytest.raises(DataError, match="'label' column must hold one whole number per image"):
        load_hub_dataset(str(tmp_path / "image-labels"))


def test_a_datasets_folder_whose_cells_decode_to_more_than_any_cifar_is_refused(tmp_path, monkeypatch):
    """Parquet's dictionary encoding stores one cell once for any number of rows: a KB-sized file decoded to
    gigabytes. The decoded columns are counted as they are read (the bound lowered here to keep the test small)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from training import data

    monkeypatch.setattr(data, "MAX_DATASET_BYTES", 50 * 2**20)
    blob = _png_bytes(synth_image(0, np.random.default_rng(0))) + b"\0" * 2**20  # PIL ignores the padding
    rows = 200
    cells = pa.DictionaryArray.from_arrays(pa.array([0] * rows, pa.int32()), pa.array([blob], pa.binary()))
    table = pa.table({"img": cells.dictionary_decode(), "label": [0, 2] * (rows // 2)})
    (tmp_path / "ds" / "data").mkdir(parents=True)
    pq.write_table(table, tmp_path / "ds" / "data" / "train-00000-of-00001.parquet", compression="zstd")
    assert (tmp_path / "ds" / "data" / "train-00000-of-00001.parquet").stat().st_size < 200_000
    with pytest.raises(DataError, match="more than 1,000,000 rows or 52,428,800 bytes of images and labels"):
        load_hub_dataset(str(tmp_path / "ds"))


def _saved_to_disk(folder: Path, table, **write_options) -> Path:
    """A save_to_disk folder as datasets writes one: an arrow stream and a state.json naming it."""
    import json

    import pyarrow as pa

    folder.mkdir(parents=True)
    options = pa.ipc.IpcWriteOptions(**write_options) if write_options else None
    with pa.ipc.new_stream(folder / "data-00000-of-00001.arrow", table.schema, options=options) as writer:
        writer.write_table(table)
    (folder / "state.json").write_text(json.dumps({"_data_files": [{"filename": "data-00000-of-00001.arrow"}]}))
    return folder / "data-00000-of-00001.arrow"


def _image_table(n: int, **extra):
    import pyarrow as pa

    rng = np.random.default_rng(0)
    cells = pa.array([_png_bytes(synth_image(i % 2, rng)) for i in range(n)], pa.binary())
    image = pa.StructArray.from_arrays([cells, pa.nulls(n, pa.string())], ["bytes", "path"])
    return pa.table({"img": image, "label": pa.array([0, 2] * (n // 2), pa.int64()), **extra})


@pytest.mark.parametrize("offsets", ["past the end", "negative lengths"])
def test_an_arrow_file_whose_offsets_point_outside_its_data_is_refused_not_followed(tmp_path, offsets):
    """An arrow file's offsets are trusted by whatever reads its arrays: 5 KB with offsets 256 MB past the data
    crashed the process (SIGBUS / SIGSEGV / abort). Every batch is validated first. In a process of its own."""
    import subprocess
    import sys

    table = _image_table(40)
    arrow = _saved_to_disk(tmp_path / "saved", table)
    cells = table.column("img").chunk(0).field("bytes")
    true_offsets = np.frombuffer(cells.buffers()[1], np.int32)[: len(cells) + 1].copy()
    raw = bytearray(arrow.read_bytes())
    at = raw.find(true_offsets.tobytes())
    assert at > 0
    bad = true_offsets + (1 << 28) if offsets == "past the end" else true_offsets[::-1].copy()
    raw[at:at + bad.nbytes] = bad.astype(np.int32).tobytes()
    arrow.write_bytes(raw)
    script = (f"from training.data import DataError, load_cifar2\ntry:\n    load_cifar2({str(tmp_path / 'saved')!r})\n"
              "except DataError as error:\n    print('DataError:', error)\n")
    result = subprocess.run([sys.executable, "-c", script], cwd=Path(__file__).resolve().parents[1],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.startswith("DataError: cannot load dataset") and "ArrowInvalid" in result.stdout


@pytest.mark.parametrize("codec", ["zstd", "lz4"])
def test_a_save_to_disk_file_of_compressed_batches_is_refused_before_any_is_inflated(tmp_path, codec):
    """datasets writes arrow streams uncompressed; a compressed batch is inflated whole before it can be counted
    (19 KB of zstd became 400 MB). Here image cells of 16 MB of zeros each, a few KB on disk."""
    import pyarrow as pa

    n = 4
    cells = pa.array([b"\0" * 2**24] * n, pa.binary())
    image = pa.StructArray.from_arrays([cells, pa.nulls(n, pa.string())], ["bytes", "path"])
    arrow = _saved_to_disk(tmp_path / "saved", pa.table({"img": image, "label": [0, 2] * (n // 2)}),
                           compression=codec)
    assert arrow.stat().st_size < 2**20
    with pytest.raises(DataError, match="holds compressed record batches .datasets writes none.; not read"):
        load_cifar2(tmp_path / "saved")


def test_an_image_column_of_another_shape_is_refused_before_anything_is_read(tmp_path):
    """Only bytes, or datasets' {bytes, path}: a dictionary-encoded bytes child stores one cell for every row (a
    1.2 KB file made gigabytes), an extra child is inflated with the column."""
    import pyarrow as pa

    n = 8
    shared = pa.DictionaryArray.from_arrays(pa.array([0] * n, pa.int32()), pa.array([b"x" * 1000], pa.binary()))
    dictionary = pa.StructArray.from_arrays([shared, pa.nulls(n, pa.string())], ["bytes", "path"])
    _saved_to_disk(tmp_path / "dictionary", pa.table({"img": dictionary, "label": [0, 2] * (n // 2)}))
    table = _image_table(n)
    junk = pa.StructArray.from_arrays([table.column("img").chunk(0).field("bytes"), pa.array([b"j"] * n)],
                                      ["bytes", "junk"])
    _saved_to_disk(tmp_path / "extra", pa.table({"img": junk, "label": table.column("label")}))
    for name in ("dictionary", "extra"):
        with pytest.raises(DataError, match="'img' column must hold images"):
            load_cifar2(tmp_path / name)


def test_a_folder_shaped_like_an_hf_cache_snapshot_gets_no_exception_for_links(tmp_path):
    """Links into a snapshot's blobs folder are how the HF cache stores a download of ours; a folder handed to us
    that looks like one (its blobs a link elsewhere) is a folder like any other: no links."""
    elsewhere = tmp_path / "private"
    make_parquet_dataset(elsewhere, n_train=20, with_test=False)
    repo = tmp_path / "datasets--x--y"
    (repo / "snapshots" / "abc" / "data").mkdir(parents=True)
    (repo / "blobs").symlink_to(elsewhere / "data")
    (repo / "snapshots" / "abc" / "data" / "train-00000-of-00001.parquet").symlink_to(
        Path("../../../blobs/train-00000-of-00001.parquet"))
    with pytest.raises(DataError, match="is not a regular file inside"):
        load_cifar2(repo / "snapshots" / "abc")


def test_a_path_the_system_refuses_is_one_data_error(tmp_path):
    with pytest.raises(DataError, match="cannot read x/x/x.*File name too long"):
        load_cifar2("x/" * 2100)
    with pytest.raises(DataError, match="File name too long"):
        load_eval_split("x/" * 2100)


def test_a_class_folder_the_user_may_not_read_is_one_data_error(tmp_path):
    """A folder of the data that the user may not list was a PermissionError traceback. Root lists any folder: as
    root the load runs without the capabilities that let it (setpriv)."""
    make_image_folder(tmp_path / "data", 8)
    (tmp_path / "data" / "bird").chmod(0)
    drop = without_root_read_override()
    code = ("from training.data import load_cifar2, DataError\n"
            f"try:\n    load_cifar2({str(tmp_path / 'data')!r})\n"
            "except DataError as error:\n    print('DataError:', error)")
    try:
        result = subprocess.run([*drop, sys.executable, "-c", code], cwd=Path(__file__).resolve().parents[1],
                                capture_output=True, text=True, timeout=120)
    finally:
        (tmp_path / "data" / "bird").chmod(0o755)
    assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr[-2000:]
    assert result.stdout.strip() == f"DataError: cannot read {tmp_path / 'data'}: Permission denied"


def test_the_data_names_the_hub_dataset_its_images_came_from_only_where_it_knows(tmp_path, monkeypatch):
    """A card links data.dataset_id: decided as the data is loaded, never guessed from --data afterwards."""
    make_image_folder(tmp_path / "alice" / "birds", 8)
    monkeypatch.chdir(tmp_path)
    for source in ("alice/birds", tmp_path / "alice" / "birds"):  # a relative folder that reads like a Hub id
        assert load_cifar2(source).dataset_id is None
    make_parquet_dataset(tmp_path / "ds", n_train=20, n_test=10)
    assert load_cifar2(f"hf:{tmp_path / 'ds'}").dataset_id is None  # a local datasets folder: origin unknown


def test_an_empty_image_cell_is_skipped_and_counted(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(0)
    cells = [None] + [{"bytes": _png_bytes(synth_image(0, rng)), "path": None} for _ in range(3)]
    (tmp_path / "ds" / "data").mkdir(parents=True)
    pq.write_table(pa.table({"img": cells, "label": [0, 2, 0, 2]}),
                   tmp_path / "ds" / "data" / "train-00000-of-00001.parquet")
    train = load_hub_dataset(str(tmp_path / "ds"))
    assert len(train) == 3 and train.skipped == 1


def _png_bytes(array: np.ndarray) -> bytes:
    import io

    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


# --- stratified split -----------------------------------------------------------------------------------------------


def _identified(n_airplane: int, n_bird: int) -> Split:
    """Images whose first two pixels encode their index, so splits can be traced back."""
    n = n_airplane + n_bird
    images = torch.zeros(n, 3, 32, 32, dtype=torch.uint8)
    images[:, 0, 0, 0] = torch.arange(n) % 256
    images[:, 0, 0, 1] = torch.arange(n) // 256
    order = torch.randperm(n, generator=torch.Generator().manual_seed(9))
    labels = torch.tensor([0] * n_airplane + [1] * n_bird)[order]
    return Split(images, labels, skipped=3)


def _ids(split: Split) -> list[int]:
    return (split.images[:, 0, 0, 0].long() + 256 * split.images[:, 0, 0, 1].long()).tolist()


def test_stratified_split_is_seeded_balanced_disjoint_and_complete():
    data = _identified(120, 80)
    train, val = stratified_split(data, 0.2, seed=0)
    again_train, again_val = stratified_split(data, 0.2, seed=0)
    other_train, other_val = stratified_split(data, 0.2, seed=1)

    assert _ids(val) == _ids(again_val) and _ids(train) == _ids(again_train)  # same seed, same split
    assert _ids(val) != _ids(other_val)  # another seed, another split
    assert val.class_counts() == [24, 16] and train.class_counts() == [96, 64]  # 20 % of each class
    assert not set(_ids(train)) & set(_ids(val))
    assert sorted(_ids(train) + _ids(val)) == list(range(200))
    for split in (train, val):  # labels travel with their images
        assert torch.equal(split.labels, data.labels[torch.tensor(_ids(split))])
    assert train.skipped == 3  # the skipped count is reported with the training data


def test_validation_fraction_out_of_range_or_too_little_data(tmp_path):
    make_image_folder(tmp_path / "d", 4)
    for fraction in (0.0, 1.0, 1.5):
        with pytest.raises(DataError, match="val-fraction"):
            load_cifar2(tmp_path / "d", val_fraction=fraction)
    with pytest.raises(DataError, match="too few images"):
        load_cifar2(tmp_path / "d", val_fraction=0.01)


def test_missing_source_is_a_data_error(tmp_path, monkeypatch):
    with pytest.raises(DataError, match="no such data folder"):
        load_cifar2(tmp_path / "nope")
    with pytest.raises(DataError, match="no such data folder"):
        load_eval_split(tmp_path / "nope")
    # A relative path of three parts that is not there is a typo, not a Hub dataset: offline it was huggingface_hub's
    # "Repo id must be in the form 'repo_name' or 'namespace/repo_name'".
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    for load in (load_cifar2, load_eval_split):
        with pytest.raises(DataError, match=r"^no such data folder: data/cifar2/trian$"):
            load("data/cifar2/trian")
        with pytest.raises(DataError, match=r"'data/cifar2/trian' .*: no such local folder, and not a Hub dataset "
                                            r"id \(a name, or namespace/name\)$"):
            load("hf:data/cifar2/trian")


def test_a_two_part_typo_of_a_local_folder_names_the_folder_it_may_mean(tmp_path, monkeypatch):
    """data/trian is a valid Hub id, so it goes to the Hub; where that fails and data/ is here, the error also says
    which local folder was probably meant (it said only that the Hub could not be reached)."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    make_image_folder(tmp_path / "data" / "train", 4)
    (tmp_path / "data" / "notes.txt").write_text("a file, not a folder to suggest")
    for load in (load_cifar2, load_eval_split):
        with pytest.raises(DataError, match=r"HF cache holds no copy of it.*\. 'data' is a local folder: did you mean "
                                            r"'data/train'\?$"):
            load("data/trian")
        with pytest.raises(DataError, match=r"\. 'data' is a local folder, with no folder 'notes\.tx' in it$"):
            load("data/notes.tx")  # files are not suggested
        with pytest.raises(DataError, match=r"HF cache holds no copy of it[^.]*$"):
            load("dta/train")  # no local folder dta: a Hub id, as before
        with pytest.raises(DataError, match=r"HF cache holds no copy of it[^.]*$"):
            load("hf:data/trian")  # the user asked for the Hub


# --- the zoo's decoded copy ------------------------------------------------------------------------------------------


def test_the_decoded_copy_reads_back_as_the_data_it_was_made_from(tmp_path):
    make_image_folder(tmp_path / "my data", 12)
    (tmp_path / "my data" / "bird" / "broken.png").write_bytes(b"not a png")
    data = load_cifar2(tmp_path / "my data", val_fraction=0.25, seed=4)
    with tempfile.TemporaryFile(dir=tmp_path) as copy:  # as the zoo writes it: a file with no name
        save_decoded(data, copy)
        assert [p.name for p in tmp_path.iterdir()] == ["my data"]
        again = load_decoded(f"/dev/fd/{copy.fileno()}")
    for split in ("train", "val"):
        original, copy = getattr(data, split), getattr(again, split)
        assert torch.equal(copy.images, original.images) and torch.equal(copy.labels, original.labels)
        assert copy.images.dtype == torch.uint8 and copy.labels.dtype == torch.int64
        assert copy.skipped == original.skipped
    assert again.train.skipped == 1
    assert (again.source, again.val_source, again.public_source, again.dataset_id) == \
        (data.source, data.val_source, data.public_source, data.dataset_id) == \
        (f"image folder {tmp_path / 'my data'}", "seeded class-balanced 25% of it (seed 4)", "image folder my data",
         None)
    # a Hub dataset's id travels with the copy: each net's card links it as `train` on the data itself would
    with tempfile.TemporaryFile(dir=tmp_path) as copy:
        save_decoded(dataclasses.replace(data, dataset_id="alice/birds"), copy)
        assert load_decoded(f"/dev/fd/{copy.fileno()}").dataset_id == "alice/birds"


def _decoded(**changes) -> dict:
    tensors = {"train_images": torch.zeros(6, 3, 32, 32, dtype=torch.uint8), "train_labels": torch.tensor([0, 1] * 3),
               "val_images": torch.zeros(2, 3, 32, 32, dtype=torch.uint8), "val_labels": torch.tensor([0, 1])}
    metadata = {"source": "s", "val_source": "v", "public_source": "p", "dataset_id": "", "train_skipped": "0",
                "val_skipped": "0"}
    for name, value in changes.items():
        target = metadata if isinstance(value, str) or name in metadata else tensors
        if value is None:
            target.pop(name)
        else:
            target[name] = value
    return {"tensors": tensors, "metadata": metadata}


@pytest.mark.parametrize("changes, message", [
    ({}, None),
    ({"val_images": torch.zeros(2, 3, 32, 32)}, "val_images is F32"),
    ({"train_images": torch.zeros(6, 3, 16, 16, dtype=torch.uint8)}, "train images of shape [6, 3, 16, 16]"),
    ({"train_images": torch.zeros(6, 3072, dtype=torch.uint8)}, "train_images is U8 of shape [6, 3072]"),
    ({"train_labels": torch.tensor([0, 1, 0])}, "train images of shape [6, 3, 32, 32] with 3 labels"),
    ({"val_labels": torch.tensor([0, 7])}, "val labels other than 2 classes'"),
    ({"val_labels": torch.tensor([0, -1])}, "val labels other than 2 classes'"),
    ({"train_labels": torch.zeros(6, dtype=torch.int64)}, "the training split has no bird images"),
    ({"val_images": torch.zeros(0, 3, 32, 32, dtype=torch.uint8), "val_labels": torch.zeros(0, dtype=torch.int64)},
     "val images of shape [0, 3, 32, 32] with 0 labels"),
    ({"val_labels": None}, "tensors train_images, train_labels, val_images"),
    ({"extra": torch.zeros(1)}, "tensors extra, train_images"),
    ({"source": None}, "metadata dataset_id, public_source, train_skipped, val_skipped, val_source"),
    ({"val_skipped": "-1"}, "skipped counts that are not whole numbers"),
    ({"train_skipped": "9" * 5000}, "skipped counts that are not whole numbers"),  # int() would raise ValueError
])
def test_a_decoded_copy_that_is_not_what_the_zoo_writes_is_one_data_error(tmp_path, changes, message):
    path = tmp_path / "decoded.safetensors"
    parts = _decoded(**changes)
    save_file(parts["tensors"], path, metadata=parts["metadata"])
    if message is None:  # the well-formed file the others are changed from
        assert load_decoded(path).val.labels.tolist() == [0, 1]
        return
    with pytest.raises(DataError) as error:
        load_decoded(path)
    assert message in str(error.value)
    assert "is not decoded data as the zoo writes it" in str(error.value) or "every class needs" in str(error.value)


@pytest.mark.parametrize("content", [b"", b"not safetensors at all", (2**40).to_bytes(8, "little") + b"{}",
                                     (20).to_bytes(8, "little") + b'{"a": {"dtype": "U8"'])
def test_a_file_that_is_not_safetensors_is_one_data_error_read_no_further(tmp_path, content):
    (tmp_path / "decoded.safetensors").write_bytes(content)
    with pytest.raises(DataError, match="is not decoded data as the zoo writes it"):
        load_decoded(tmp_path / "decoded.safetensors")
    with pytest.raises(DataError, match="is not decoded data as the zoo writes it: .*No such file"):
        load_decoded(tmp_path / "missing.safetensors")


# --- augmentation ---------------------------------------------------------------------------------------------------


def _crops_of(image: torch.Tensor, padding: int) -> list[torch.Tensor]:
    """Every crop of the reflect-padded image and of its mirror image."""
    padded = F.pad(image[None].float(), (padding,) * 4, mode="reflect")[0].to(image.dtype)
    h, w = image.shape[1:]
    crops = [padded[:, dy:dy + h, dx:dx + w] for dy in range(2 * padding + 1) for dx in range(2 * padding + 1)]
    return crops + [c.flip(2) for c in crops]


def test_augment_crops_reflect_padded_images_and_mirrors_them():
    images = torch.randint(0, 256, (48, 3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    out = augment(images, generator=torch.Generator().manual_seed(1))

    assert out.shape == images.shape and out.dtype == torch.uint8
    used = []
    for image, result in zip(images, out):
        matches = [i for i, crop in enumerate(_crops_of(image, 4)) if torch.equal(crop, result)]
        assert len(matches) == 1, "each output is exactly one crop of the padded input or of its mirror"
        used.append(matches[0])
    assert len(set(used)) > 10  # random per image, not one transform for the batch
    assert any(i >= 81 for i in used) and any(i < 81 for i in used)  # some flipped, some not


def test_augment_is_deterministic_with_a_seeded_generator():
    images = torch.randint(0, 256, (32, 3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    first = augment(images, generator=torch.Generator().manual_seed(5))
    second = augment(images, generator=torch.Generator().manual_seed(5))
    third = augment(images, generator=torch.Generator().manual_seed(6))
    assert torch.equal(first, second)
    assert not torch.equal(first, third)


def test_crops_from_the_padded_dataset_are_the_batch_augmented():
    """The training loop pads the data once and gathers each batch's crops from it: the same pixels as padding and
    cropping the batch, for the same random draws."""
    images = torch.randint(0, 256, (40, 3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    index = torch.tensor([7, 3, 3, 39, 0, 12])
    gathered = crop_and_flip(pad_for_augment(images), index, (32, 32), torch.Generator().manual_seed(2))
    assert torch.equal(gathered, augment(images[index], generator=torch.Generator().manual_seed(2)))


@pytest.mark.parametrize("size", [(32, 32), (24, 28)])
def test_each_crop_is_its_padded_image_cut_at_the_drawn_offset_and_mirrored(size):
    """Slice by slice, image by image: what the one-gather crop must equal (the same draws: offsets, then mirrors)."""
    images = torch.randint(0, 256, (20, 3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    padded = pad_for_augment(images)
    index = torch.tensor([5, 0, 19, 5, 11, 2, 7, 13])
    out = crop_and_flip(padded, index, size, torch.Generator().manual_seed(3))
    (h, w), n = size, len(index)
    draws = torch.Generator().manual_seed(3)
    dy = torch.randint(0, 40 - h + 1, (n,), generator=draws)
    dx = torch.randint(0, 40 - w + 1, (n,), generator=draws)
    flip = torch.rand(n, generator=draws) < 0.5
    assert out.shape == (n, 3, h, w) and 0 < int(flip.sum()) < n
    for i, k in enumerate(index):
        crop = padded[k, :, dy[i]:dy[i] + h, dx[i]:dx[i] + w]
        assert torch.equal(out[i], crop.flip(-1) if flip[i] else crop)


def test_augment_padding_zero_only_flips():
    images = torch.randint(0, 256, (16, 3, 8, 8), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    out = augment(images, padding=0, generator=torch.Generator().manual_seed(0))
    for image, result in zip(images, out):
        assert torch.equal(result, image) or torch.equal(result, image.flip(2))



# --- hostile or incomplete data (issue #8) -------------------------------------------------------------------------


@pytest.mark.parametrize("empty", ["bird", "airplane"])
def test_a_class_without_images_is_refused_by_name(tmp_path, empty):
    root = make_image_folder(tmp_path / "d", 10)
    for path in (root / empty).iterdir():
        path.unlink()
    with pytest.raises(DataError, match=f"the training split has no {empty} images"):
        load_cifar2(root)


def test_a_class_missing_from_the_test_split_is_refused(tmp_path):
    make_image_folder(tmp_path / "d" / "train", 10)
    test = make_image_folder(tmp_path / "d" / "test", 4)
    for path in (test / "bird").iterdir():
        path.unlink()
    with pytest.raises(DataError, match=r"the validation split has no bird images \(airplane 4, bird 0\)"):
        load_cifar2(tmp_path / "d")


def test_a_class_too_small_to_reach_validation_is_refused(tmp_path):
    root = make_image_folder(tmp_path / "d", 10)
    for path in sorted((root / "bird").iterdir())[1:]:
        path.unlink()  # one bird: 10% of it rounds to none in validation
    with pytest.raises(DataError, match="the validation split has no bird images"):
        load_cifar2(root)


def test_images_with_too_many_pixels_are_skipped_before_decoding(tmp_path, caplog):
    root = make_image_folder(tmp_path / "d", 6)
    Image.new("I;16", (7200, 7200)).save(root / "bird" / "bomb.png", compress_level=9)  # 52 MP in ~100 KB
    with caplog.at_level("WARNING"):
        split = load_image_folder(root)
    assert len(split) == 12 and split.skipped == 1
    assert "megapixels" in caplog.text


def test_a_fifo_in_the_folder_is_skipped_without_blocking(tmp_path):
    import os

    root = make_image_folder(tmp_path / "d", 6)
    os.mkfifo(root / "bird" / "pipe.png")
    split = load_image_folder(root)
    assert len(split) == 12  # not a regular file: left out (is_file() is False for a FIFO)


def test_dataset_images_with_too_many_pixels_are_skipped(tmp_path, caplog):
    import io as bytes_io

    from datasets import Dataset, Features, Image as ImageFeature, Value

    def png(image) -> bytes:
        buffer = bytes_io.BytesIO()
        image.save(buffer, "PNG", compress_level=9)
        return buffer.getvalue()

    rows = [{"bytes": png(Image.new("RGB", (32, 32), (i, 0, 0))), "path": None} for i in range(20)]
    rows.append({"bytes": png(Image.new("L", (7200, 7200))), "path": None})
    labels = [0, 2] * 10 + [2]
    (tmp_path / "ds" / "data").mkdir(parents=True)
    Dataset.from_dict({"img": rows, "label": labels}, features=Features({"img": ImageFeature(), "label": Value("int64")})
                      ).to_parquet(str(tmp_path / "ds" / "data" / "train-00000-of-00001.parquet"))
    with caplog.at_level("WARNING"):
        data = load_cifar2(tmp_path / "ds", val_fraction=0.2)
    assert len(data.train) + len(data.val) == 20 and data.train.skipped == 1
    assert "megapixels" in caplog.text
