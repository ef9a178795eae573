"""CIFAR-2 in memory: decode once into uint8 tensors, augment whole batches on the training device.

Sources: an image folder ROOT/{airplane,bird}/, a CIFAR-10 python root, or a dataset on the Hub / on disk.
"""

from __future__ import annotations

import difflib
import functools
import io
import itertools
import json
import logging
import os
import re
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
import torch
from convhub import CIFAR2_CLASSES
from convhub.card import CIFAR10_ON_THE_HUB, is_hub_id
from convhub.errors import ConvHubError, one_line, shown
from convhub.preprocessing import open_image, to_uint8
from safetensors import SafetensorError, safe_open
from safetensors.torch import save

from .cifar_batches import read_batch

log = logging.getLogger(__name__)

CIFAR10_TO_CIFAR2 = {0: 0, 2: 1}  # airplane, bird
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff")


class DataError(ConvHubError):
    """The data source is missing or malformed; the message says what was expected."""


@dataclass
class Split:
    """N uint8 images (N, 3, 32, 32) and their int64 labels (0 airplane, 1 bird)."""

    images: torch.Tensor
    labels: torch.Tensor
    skipped: int = 0  # unreadable files left out

    def __len__(self) -> int:
        return len(self.labels)

    def class_counts(self) -> list[int]:
        return torch.bincount(self.labels, minlength=len(CIFAR2_CLASSES)).tolist()


@dataclass
class CIFAR2:
    train: Split
    val: Split
    source: str  # human-readable description, for logs: local paths included
    val_source: str
    # What a model card may say about the data: a card can be published, and a local path would tell the world the
    # trainer's folders (often their user name). A Hub dataset keeps its id; a local folder only its own name.
    public_source: str
    # The Hub dataset the images came from, which a card links: a Hub dataset's id, CIFAR-10's for CIFAR-10's batches;
    # None for a local folder, whose origin nothing here can tell (train --dataset-id names it).
    dataset_id: str | None = None


def decode_image(source) -> torch.Tensor:
    """A path, file object or PIL image as uint8 (3, 32, 32), through convhub's bounded open_image: a file that claims
    more pixels than convhub.preprocessing.MAX_IMAGE_PIXELS is refused before it is decoded."""
    return to_uint8(open_image(source))


def _some(names: list[str], limit: int = 10) -> str:
    """Folder names as a log line or message shows them: quoted (a newline in one forged a log line), at most
    ``limit`` of them (3,000 made one line of 29 KB)."""
    listed = ", ".join(repr(name[:80]) for name in names[:limit])
    return listed + (f" and {len(names) - limit:,} more" if len(names) > limit else "")


def load_image_folder(root: str | Path) -> Split:
    """ROOT/airplane/*, ROOT/bird/*; unreadable files are skipped with a warning and counted."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root} is a file, not a folder of class folders" if root.exists() else
                        f"no such folder: {root}")
    found = sorted(p.name for p in root.iterdir() if p.is_dir())
    missing = [name for name in CIFAR2_CLASSES if name not in found]
    if missing:
        raise DataError(
            f"{root} must hold one subfolder per class, {'/ and '.join(CIFAR2_CLASSES)}/; "
            f"missing {', '.join(missing)} (found: {_some(found) or 'no subfolders'})"
        )
    extra = [name for name in found if name not in CIFAR2_CLASSES]
    if extra:
        log.warning("ignoring subfolders that are not CIFAR-2 classes: %s", _some(extra))

    images, labels, skipped, elsewhere = [], [], [], []
    inside = root.resolve()
    for label, name in enumerate(CIFAR2_CLASSES):
        for path in sorted((root / name).iterdir()):
            if path.suffix.lower() not in IMAGE_SUFFIXES or not path.is_file():
                continue
            if not path.resolve().is_relative_to(inside):
                elsewhere.append(path)
            try:
                images.append(decode_image(path))
                labels.append(label)
            except Exception as error:  # noqa: BLE001 - any undecodable file is skipped, never fatal
                skipped.append(f"{str(path)!r}: {str(error)[:300]!r}")
    if skipped:
        log.warning("skipped %d unreadable image(s), e.g. %s", len(skipped), skipped[0])
    if elsewhere:  # read, as links a user made are meant to be; said, as a downloaded folder's could be anything
        log.warning("%d image(s) are links to files outside %s, e.g. %r -> %r: they are trained on too",
                    len(elsewhere), root, str(elsewhere[0]), str(elsewhere[0].resolve()))
    if not images:
        raise DataError(f"no readable images in {root}/{{{','.join(CIFAR2_CLASSES)}}}")
    return Split(torch.stack(images), torch.tensor(labels), skipped=len(skipped))


CIFAR10_BATCHES = {True: [f"data_batch_{i}" for i in range(1, 6)], False: ["test_batch"]}


def cifar10_root(path: str | Path) -> Path | None:
    """The folder holding cifar-10-batches-py (given it or its parent), else None."""
    path = Path(path)
    if (path / "cifar-10-batches-py").is_dir():
        return path
    if path.name == "cifar-10-batches-py" and path.is_dir():
        return path.parent
    return None


def load_cifar10(root: str | Path, train: bool) -> Split:
    folder = Path(root) / "cifar-10-batches-py"
    missing = [name for name in CIFAR10_BATCHES[train] if not (folder / name).is_file()]
    if missing:
        raise DataError(f"{folder} is incomplete: missing {', '.join(missing)}")
    batches = []
    for name in CIFAR10_BATCHES[train]:
        try:
            batches.append(read_batch(folder / name))
        except Exception as error:  # noqa: BLE001 - unpickling garbage raises many types; all mean 'not CIFAR-10'
            raise DataError(f"{folder / name} is not a CIFAR-10 python batch: {type(error).__name__}: {error}") \
                from None
    return _cifar2_from_arrays(np.concatenate([b[0] for b in batches]), np.concatenate([b[1] for b in batches]))


def _cifar2_from_arrays(images_nhwc: np.ndarray, cifar10_labels: np.ndarray) -> Split:
    keep = np.isin(cifar10_labels, list(CIFAR10_TO_CIFAR2))
    labels = torch.tensor([CIFAR10_TO_CIFAR2[int(v)] for v in cifar10_labels[keep]], dtype=torch.int64)
    images = torch.from_numpy(np.ascontiguousarray(images_nhwc[keep])).permute(0, 3, 1, 2).contiguous()
    return Split(images, labels)


MAX_DATASET_ROWS = 1_000_000  # CIFAR-10 has 60,000; a few KB of parquet can claim a billion rows
MAX_DATASET_BYTES = 2**30  # the image and label columns, decoded (CIFAR-10's PNGs: ~130 MB)
IMAGE_COLUMNS, LABEL_COLUMNS = ("img", "image"), ("label", "labels")


def load_hub_dataset(name: str, revision: str | None = None, split: str = "train") -> Split:
    """A CIFAR-10-style dataset (an image column and a CIFAR-10 label column) from a local folder (parquet files, or
    a save_to_disk folder) or a Hub id (its parquet files, downloaded), read with pyarrow: only the raw columns, never
    the dataset's own feature types (datasets would call the pyarrow function a Value dtype names, and decode an
    Image-typed "label" column by opening the path or URL in it)."""
    folder = Path(name).expanduser()
    try:
        downloaded = not folder.exists()
        if downloaded and not is_hub_id(name):
            raise DataError("no such local folder, and not a Hub dataset id (a name, or namespace/name)")
        if downloaded:
            folder = _download_parquet(name, revision)
        return _read_dataset(folder, split, snapshot=downloaded)
    except DataError as error:
        raise DataError(f"dataset {name!r} (split {split!r}): {error}") from None
    except Exception as error:  # noqa: BLE001 - pyarrow and the Hub client raise many types for a broken dataset
        from convhub.hub import error_text

        raise DataError(f"cannot load dataset {name!r} (split {split!r}): {type(error).__name__}: "
                        f"{error_text(error)}") from None


MAX_HUB_FILES, MAX_HUB_BYTES = 1000, 2 * 2**30  # a dataset repo's parquet files, listed before any is downloaded


@functools.lru_cache(maxsize=8)
def _download_parquet(name: str, revision: str | None) -> Path:
    """The dataset repo's parquet files, downloaded into the HF cache (offline: the copy already there), once the
    repo's listing says how many and how large they are. Its README's `data_files` are not obeyed: the splits are
    found by the files' names, as for a local folder. Listing and download each have a deadline (a server's
    endless listing pages or dripping answers held the command for ever): CONVHUB_HUB_DEADLINE for the listing, and
    as much again plus a second per MB for the files."""
    from convhub.hub import (bound_hub_requests, cached_snapshot, check_revision, download, hub_deadline_s,
                             hub_reachable, offline_mode, within_deadline)

    check_revision(revision, "--data-revision")  # a path in the HF cache: refs/<revision>
    if offline_mode():
        from huggingface_hub.errors import LocalEntryNotFoundError

        try:
            return cached_snapshot(name, ["*.parquet"], repo_type="dataset", revision=revision)
        except LocalEntryNotFoundError:  # its words: "pass 'local_files_only=False' as input"
            raise DataError(f"not a local folder, and HF_HUB_OFFLINE is set while the HF cache holds no copy of it"
                            f"{f' at revision {revision!r}' if revision else ''}: pass a local folder, or unset "
                            "HF_HUB_OFFLINE to download it") from None
    if not hub_reachable():
        try:  # offline mode is worth suggesting only where the cache has a copy to use
            cached_snapshot(name, ["*.parquet"], repo_type="dataset", revision=revision)
            advice = "pass a local folder, or set HF_HUB_OFFLINE=1 to use the copy in the HF cache"
        except Exception:  # noqa: BLE001 - no copy there, or none that can be used
            advice = "pass a local folder (the HF cache holds no copy of it either)"
        raise DataError(f"not a local folder, and the Hub cannot be reached to download it as a dataset; {advice}")
    bound_hub_requests()
    sha, files = within_deadline(hub_deadline_s(), f"listing {name}", _list_parquet, name, revision or "main")
    # By its branch name (so that the cache knows the branch, for offline use), checked to be the commit listed.
    snapshot = within_deadline(hub_deadline_s() + sum(files.values()) / 2**20, f"sending {name}", download, name,
                               dict(sorted(files.items())), repo_type="dataset", revision=revision or "main")
    if snapshot.name != sha:
        raise DataError(f"the repo changed while it was downloaded (listed {sha[:12]}, got {snapshot.name[:12]}); "
                        "run again")
    return snapshot


def _list_parquet(name: str, revision: str) -> tuple[str, dict[str, int]]:
    """The commit a branch is at, and the parquet files there with their sizes, within MAX_HUB_FILES/BYTES."""
    from convhub.hub import COMMIT, endpoint
    from huggingface_hub import HfApi

    api = HfApi(endpoint=endpoint())  # HF_ENDPOINT as it is now (huggingface_hub read it at import)
    sha = api.dataset_info(name, revision=revision).sha  # one commit, listed and downloaded
    if not isinstance(sha, str) or not COMMIT.fullmatch(sha):
        raise DataError(f"the Hub's listing names no commit ({str(sha)[:80]!r})")
    files: dict[str, int] = {}
    for entries, entry in enumerate(api.list_repo_tree(name, repo_type="dataset", revision=sha, recursive=True), 1):
        if entry.path.endswith(".parquet") and isinstance(getattr(entry, "size", None), int):
            files[entry.path] = entry.size  # what each may weigh when it is downloaded
        if entries > 10 * MAX_HUB_FILES or len(files) > MAX_HUB_FILES or sum(files.values()) > MAX_HUB_BYTES:
            raise DataError(f"the repo holds more than {MAX_HUB_FILES:,} parquet files or {MAX_HUB_BYTES:,} bytes of "
                            "them (CIFAR-10: 2 files, ~130 MB); nothing was downloaded")
    if not files:
        raise DataError("the repo holds no parquet files")
    return sha, files


def _read_dataset(folder: Path, split: str, *, snapshot: bool) -> Split:
    """The split's image and label columns from the folder's own files, with pyarrow, batch by batch: each batch
    validated (malformed offsets in an arrow file crashed the process), counted, and decoded before the next."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    if _saved_to_disk(folder) and not snapshot:
        files = _saved_arrow_files(folder, split)
        schemas = [_uncompressed_stream_schema(f) for f in files]
        # Only these two fields are decoded: other columns (of any size) are never inflated.
        columns = _checked_columns(schemas)
        options = pa.ipc.IpcReadOptions(included_fields=[schemas[0].get_field_index(c) for c in columns])
        batches = (b for f in files for b in pa.ipc.open_stream(pa.memory_map(str(f)), options=options))
    else:
        paths = _parquet_files(folder, split, snapshot=snapshot)
        schemas = [pq.ParquetFile(f).schema_arrow for f in paths]
        columns = _checked_columns(schemas)
        # A parquet file may store one value for any number of rows (a dictionary page): read as such, never
        # repeated row by row (a 753-byte file of 200 rows sharing one 8 MB value took 3.5 GB before any count).
        image_type = schemas[0].field(columns[0]).type
        shared = ([f"{columns[0]}.{f.name}" for f in image_type if not pa.types.is_null(f.type)]
                  if pa.types.is_struct(image_type) else [columns[0]])
        parquet = [pq.ParquetFile(f, read_dictionary=shared) for f in paths]
        _check_uncompressed_size(parquet, columns)
        # Batches of 32 rows: what a file's metadata says of its sizes is its own word (a footer claiming 1,000
        # bytes for 1.3 GB of zeros decompressed 256 rows of 8 MB before any count); a batch is counted as it comes.
        batches = (b for f in parquet for b in f.iter_batches(batch_size=32, columns=columns))
    class_names = _class_names(schemas[0], columns[1])
    if class_names and not all(c in class_names for c in CIFAR2_CLASSES):
        # Its own names say what 0 and 2 are: CIFAR-10's numbering would have trained its birds as airplanes.
        raise DataError(f"its label column names its classes {_some(class_names)}: none is called "
                        f"{' or '.join(c for c in CIFAR2_CLASSES if c not in class_names)}")
    to_cifar2 = ({class_names.index(c): i for i, c in enumerate(CIFAR2_CLASSES)} if class_names
                 else CIFAR10_TO_CIFAR2)
    images, kept, skipped = [], [], []
    rows = size = 0
    for batch in batches:
        batch.validate(full=True)
        batch = batch.select(columns)
        rows, size = rows + batch.num_rows, size + _cell_bytes(batch.column(0)) + batch.column(1).nbytes
        if rows > MAX_DATASET_ROWS or size > MAX_DATASET_BYTES:
            raise DataError(f"more than {MAX_DATASET_ROWS:,} rows or {MAX_DATASET_BYTES:,} bytes of images and "
                            "labels (CIFAR-10: 60,000 rows, ~130 MB)")
        labels_array = batch.column(1)
        if labels_array.null_count:
            raise DataError(f"the {columns[1]!r} column must hold one whole number per image, not null")
        labels = labels_array.to_numpy(zero_copy_only=False)
        keep = np.flatnonzero(np.isin(labels, list(to_cifar2)))
        cells = batch.column(0)
        for label, row in zip(labels[keep], keep):
            try:  # one cell at a time: a value shared by many rows is copied out once per row, then let go
                images.append(_decode_cell(cells[int(row)].as_py(), None if snapshot else folder))
                kept.append(to_cifar2[int(label)])
            except ConvHubError as error:
                skipped.append(str(error))
    if skipped:
        log.warning("skipped %d unreadable image(s), e.g. %s", len(skipped), skipped[0])
    stacked = torch.stack(images) if images else torch.empty(0, 3, 32, 32, dtype=torch.uint8)
    return Split(stacked, torch.tensor(kept, dtype=torch.int64), skipped=len(skipped))


def _uncompressed_stream_schema(path: Path):
    """An arrow stream's schema, once every batch in it is known to be uncompressed: datasets writes none, and a
    compressed record batch is inflated whole when read, before it can be counted (19 KB of zstd became 400 MB).
    Each message's header is read (its flatbuffer, a few fields) with its body left as it is in the file."""
    import pyarrow as pa

    schema = None
    for message in pa.ipc.MessageReader.open_stream(pa.memory_map(str(path))):
        if message.type == "schema" and schema is None:
            schema = pa.ipc.read_schema(message)
        elif message.type in ("record batch", "dictionary") and _ipc_compressed(message.metadata.to_pybytes()):
            raise DataError(f"{path.name} holds compressed record batches (datasets writes none); not read")
    if schema is None:
        raise DataError(f"{path.name} is not an arrow stream (no schema)")
    return schema


def _ipc_compressed(meta: bytes) -> bool:
    """Whether an arrow IPC message header (Message -> RecordBatch, or DictionaryBatch -> RecordBatch) sets the
    RecordBatch's `compression` field (format/Message.fbs)."""
    import struct

    def field(table: int, index: int) -> int | None:  # a flatbuffer table's field position, None if absent
        vtable = table - struct.unpack_from("<i", meta, table)[0]
        if 4 + 2 * index >= struct.unpack_from("<H", meta, vtable)[0]:
            return None
        offset = struct.unpack_from("<H", meta, vtable + 4 + 2 * index)[0]
        return table + offset if offset else None

    def table_at(position: int) -> int:
        return position + struct.unpack_from("<I", meta, position)[0]

    message = struct.unpack_from("<I", meta, 0)[0]
    kind, header = field(message, 1), field(message, 2)  # header_type (2: DictionaryBatch, 3: RecordBatch), header
    if kind is None or header is None or meta[kind] not in (2, 3):
        return False
    batch = table_at(header)
    if meta[kind] == 2:
        data = field(batch, 1)  # DictionaryBatch.data
        if data is None:
            return False
        batch = table_at(data)
    return field(batch, 3) is not None  # RecordBatch.compression


def _cell_bytes(cells) -> int:
    """What an image column's cells hold, each counted in every row that uses it (a dictionary holds it once)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    def total(values) -> int:
        if pa.types.is_null(values.type):
            return 0
        lengths = (pc.binary_length(values.dictionary).take(values.indices) if pa.types.is_dictionary(values.type)
                   else pc.binary_length(values))
        return pc.sum(lengths).as_py() or 0

    return (sum(total(cells.field(i)) for i in range(cells.type.num_fields)) if pa.types.is_struct(cells.type)
            else total(cells))


def _check_uncompressed_size(parquet_files: list, columns: list[str]) -> None:
    """What the files' own metadata says the two columns' pages take once decompressed, before any is: a page of
    zeros compresses 1000-fold and more."""
    total = 0
    for file in parquet_files:
        metadata = file.metadata
        for group in range(metadata.num_row_groups):
            row_group = metadata.row_group(group)
            total += sum(row_group.column(i).total_uncompressed_size for i in range(row_group.num_columns)
                         if row_group.column(i).path_in_schema.split(".")[0] in columns)
    if total > MAX_DATASET_BYTES:
        raise DataError(f"its image and label columns take {total:,} bytes uncompressed; at most "
                        f"{MAX_DATASET_BYTES:,} are read (CIFAR-10: ~130 MB)")


def _checked_columns(schemas: list) -> list[str]:
    """[image column, label column], the same in every file, of exactly the types a CIFAR dataset has: images as
    bytes or datasets' {bytes, path} (nothing else in it: a dictionary-encoded or extra child inflated gigabytes from
    a KB before any count), labels a plain integer column."""
    import pyarrow as pa

    schema = schemas[0]
    image = next((c for c in IMAGE_COLUMNS if c in schema.names), None)
    label = next((c for c in LABEL_COLUMNS if c in schema.names), None)
    if image is None or label is None:
        raise DataError(f"it needs an image column (img/image) and a label column; it has {schema.names[:20]}")
    image_type, label_type = schema.field(image).type, schema.field(label).type
    binary = (pa.binary(), pa.large_binary())
    plain_struct = (pa.types.is_struct(image_type) and image_type.get_field_index("bytes") >= 0
                    and all((f.name == "bytes" and f.type in binary)
                            or (f.name == "path" and f.type in (pa.string(), pa.large_string(), pa.null()))
                            for f in image_type))
    if image_type not in binary and not plain_struct:
        raise DataError(f"the {image!r} column must hold images (bytes, or datasets' bytes and path), not "
                        f"{str(image_type)[:200]}")
    if not pa.types.is_integer(label_type):
        raise DataError(f"the {label!r} column must hold one whole number per image, not {str(label_type)[:200]}")
    for other in schemas[1:]:
        for column, kind in ((image, "image"), (label, "label")):
            if column not in other.names or other.field(column).type != schema.field(column).type:
                raise DataError(f"its files do not all have the same {kind} column")
    return [image, label]


def _class_names(schema, label: str) -> list[str] | None:
    """The names a datasets ClassLabel gives the labels, from the features datasets keeps in the schema's metadata
    (JSON of at most 1 MB, read as data: nothing in it is built)."""
    raw = (schema.metadata or {}).get(b"huggingface", b"{}")
    if len(raw) > 2**20:
        return None
    try:
        feature = json.loads(raw)["info"]["features"][label]
    except (ValueError, KeyError, TypeError, RecursionError):
        return None
    names = feature.get("names") if isinstance(feature, dict) and feature.get("_type") == "ClassLabel" else None
    if isinstance(names, list) and len(names) <= 1000 and all(isinstance(n, str) for n in names):
        return names
    return None


def _inside(folder: Path, path: Path, *, snapshot: bool = False) -> bool:
    """A regular file within ``folder``, not a link: what a dataset folder's own files are. In a snapshot we
    downloaded into the HF cache, every file is a link into the repo's blobs folder, and may be that."""
    if not path.exists() and not path.is_symlink():
        return False
    if not path.is_symlink():
        return stat.S_ISREG(path.lstat().st_mode) and path.resolve().is_relative_to(folder.resolve())
    blobs = folder.parent.parent / "blobs"  # CACHE/datasets--ns--name/snapshots/<sha>/ -> .../blobs
    return (snapshot and not blobs.is_symlink() and path.resolve().parent == blobs.resolve()
            and path.resolve().is_file())


def _parquet_files(folder: Path, split: str, *, snapshot: bool = False) -> list[Path]:
    """The split's parquet files, found by their names as the Hub finds them (train-00000-of-00001.parquet,
    data/test/...). Not through load_dataset(folder): it also obeys the folder's README.md, whose `data_files` may
    name any path on this machine or any URL."""
    import pyarrow.parquet as pq
    from datasets.data_files import DataFilesDict, get_data_patterns

    patterns = get_data_patterns(str(folder))
    if split not in patterns:
        raise DataError(f"no {split} split in {folder} (its parquet files are named by split, e.g. "
                        f"data/{split}-00000-of-00001.parquet)")
    found = DataFilesDict.from_patterns({split: patterns[split]}, base_path=str(folder))[split]
    files = [Path(f) for f in found if f.endswith(".parquet")]
    outside = [str(f) for f in files if not _inside(folder, f, snapshot=snapshot)]
    if outside:
        raise DataError(f"{outside[0]} is not a regular file inside {folder} (a link, a FIFO...)")
    if not files:
        raise DataError(f"no parquet files for the {split} split in {folder}")
    rows = sum(pq.ParquetFile(f).metadata.num_rows for f in files)  # from the footers: nothing decoded yet
    if rows > MAX_DATASET_ROWS:
        raise DataError(f"{folder}'s {split} split claims {rows:,} rows; at most {MAX_DATASET_ROWS:,} are read "
                        "(CIFAR-10 has 60,000)")
    return files


def _saved_arrow_files(folder: Path, split: str) -> list[Path]:
    """The arrow files of a save_to_disk folder's split, as its state.json names them: each a plain name of a regular
    file in its own folder (load_from_disk opened them as named: an absolute path, `..`, a FIFO that blocks for
    ever)."""
    def read_json(path: Path) -> dict:
        if not _inside(folder, path) or path.stat().st_size > 2**20:
            raise DataError(f"{path} is not a small regular file inside {folder}")
        value = json.loads(path.read_text())
        if not isinstance(value, dict):
            raise DataError(f"{path} is not a JSON object")
        return value

    def plain(name, where: Path) -> Path:
        if not (isinstance(name, str) and name and "/" not in name and "\\" not in name and name not in (".", "..")):
            raise DataError(f"{where} names {str(name)[:100]!r}: only plain file names inside the folder are read")
        return where.parent / name

    part = folder
    if (folder / "dataset_dict.json").exists():
        splits = read_json(folder / "dataset_dict.json").get("splits")
        if not isinstance(splits, list) or split not in splits:
            raise DataError(f"no {split} split in {folder / 'dataset_dict.json'}")
        part = plain(split, folder / "dataset_dict.json")
        if part.is_symlink() or not part.is_dir():
            raise DataError(f"{part} is not a folder inside {folder}")
    elif split != "train":
        raise DataError(f"{folder} holds a single dataset, used as the train split")
    entries = read_json(part / "state.json").get("_data_files")
    if not isinstance(entries, list) or not entries:
        raise DataError(f"{part / 'state.json'} names no data files")
    files = [plain(entry.get("filename") if isinstance(entry, dict) else entry, part / "state.json")
             for entry in entries]
    for file in files:
        if not _inside(folder, file):
            raise DataError(f"{file} is not a regular file inside {folder} (a link, a FIFO...)")
    return files


def _decode_cell(cell, folder: Path | None) -> torch.Tensor:
    """A datasets Image cell ({"bytes", "path"}) or raw bytes. A path is read only in a local folder, relative to it
    and inside it: a downloaded dataset's paths would name files on this machine (the user's photos, into a model
    that may be published)."""
    if isinstance(cell, (bytes, bytearray)) and cell:
        return decode_image(io.BytesIO(cell))
    if not isinstance(cell, dict):
        raise DataError("an empty image cell" if cell is None else f"an image cell of {type(cell).__name__}")
    if isinstance(cell.get("bytes"), (bytes, bytearray)) and cell["bytes"]:
        return decode_image(io.BytesIO(cell["bytes"]))
    path = cell.get("path")
    if not (folder is not None and isinstance(path, str) and 0 < len(path) <= 4096 and not Path(path).is_absolute()
            and ".." not in Path(path).parts and _inside(folder, folder / path)):
        raise DataError(f"an image cell without bytes, whose path {str(path)[:100]!r} is not a regular file inside "
                        "the dataset's folder")
    return decode_image(folder / path)


def _saved_to_disk(path: Path) -> bool:
    return path.is_dir() and ((path / "dataset_dict.json").is_file() or (path / "state.json").is_file())


def _split_folders(path: Path) -> bool:
    """An image folder laid out ROOT/{train,test}/{airplane,bird} (test/ optional), as train and evaluate read it."""
    return (path / "train").is_dir() and not (path / CIFAR2_CLASSES[0]).is_dir()


def _is_datasets_dir(path: Path) -> bool:
    """Parquet files where a Hub dataset repo keeps them (at most two folders down: data/train/...), or a
    save_to_disk folder; a folder of airplane/ and bird/ images is an image folder, whatever else it holds (a
    notes/stats.parquet in it made it a dataset, and a wrong --data /usr was walked whole)."""
    if all((path / name).is_dir() for name in CIFAR2_CLASSES):
        return False
    return (_saved_to_disk(path) or (path / "dataset_info.json").is_file()
            or any(next(path.glob(pattern), None) for pattern in ("*.parquet", "*/*.parquet", "*/*/*.parquet")))


def stratified_split(data: Split, val_fraction: float, seed: int) -> tuple[Split, Split]:
    """A seeded, class-balanced split: the same fraction of each class goes to validation."""
    generator = torch.Generator().manual_seed(seed)
    train_idx, val_idx = [], []
    for label in range(len(CIFAR2_CLASSES)):
        idx = torch.nonzero(data.labels == label).flatten()
        idx = idx[torch.randperm(len(idx), generator=generator)]
        n_val = round(len(idx) * val_fraction)
        val_idx.append(idx[:n_val])
        train_idx.append(idx[n_val:])
    train_idx, val_idx = torch.cat(train_idx).sort().values, torch.cat(val_idx).sort().values
    return (Split(data.images[train_idx], data.labels[train_idx], skipped=data.skipped),
            Split(data.images[val_idx], data.labels[val_idx]))


def _os_errors_as_data_errors(load):
    """A path the system refuses (too long, no permission) is a DataError naming it, not a traceback."""
    @functools.wraps(load)
    def wrapped(source, *args, **kwargs):
        try:
            return load(source, *args, **kwargs)
        except OSError as error:
            raise DataError(f"cannot read {str(source)[:200]}: {error.strerror or error}") from None

    return wrapped


def _datasets_name(source: str) -> str | None:
    """The name ``datasets`` is given for --data ``source`` (hf:ID, a bare Hub id, hf:FOLDER), or None. A path that
    is not there is a Hub id only where the Hub would take it as one: path/to/images is a missing folder."""
    if source.startswith("hf:"):
        return source.removeprefix("hf:")
    if not Path(source).expanduser().exists() and "/" in source and not source.startswith((".", "/")) \
            and is_hub_id(source):
        return source
    return None


def _local_near_miss(source: str) -> str:
    """What a Hub id that could not be loaded may have been meant as: data/trian is a valid Hub id, and goes to the
    Hub, where the folder data/ is here and holds train/."""
    path = Path(source).expanduser()
    if source.startswith("hf:") or not path.parent.is_dir():
        return ""
    try:  # a folder of a million files: its first thousand folders are enough to name one
        folders = [child.name for child in itertools.islice(path.parent.iterdir(), 1000) if child.is_dir()]
    except OSError:
        return ""
    close = difflib.get_close_matches(path.name, folders, n=1)
    parent = shown(str(path.parent), 200)
    if close:
        return f". {parent} is a local folder: did you mean {shown(str(path.parent / close[0]), 200)}?"
    return f". {parent} is a local folder, with no folder {shown(path.name)} in it"


def _or_near_miss(load, source: str, *args, **kwargs):
    """``load`` of a Hub dataset named by --data ``source``; where that fails, the error also names a local folder
    the user may have meant."""
    try:
        return load(*args, **kwargs)
    except DataError as error:
        if hint := _local_near_miss(source):
            raise DataError(f"{error}{hint}") from None
        raise


@_os_errors_as_data_errors
def load_cifar2(source: str | Path, *, val_fraction: float = 0.1, seed: int = 0, revision: str | None = None) -> CIFAR2:
    """Train and validation splits from any supported source; validation is carved from train when no test split exists."""
    source = str(source)
    path = Path(source).expanduser()
    local = Path(name).expanduser().exists() if (name := _datasets_name(source)) is not None else path.exists()
    if revision is not None and local:  # it was ignored: the folder was read as it is
        raise DataError(f"{shown(source, 200)} is a local folder: --data-revision {shown(revision)} applies to "
                        "Hub datasets only")
    if name is not None:
        if local:
            return _from_datasets(name, _named("datasets folder", name), val_fraction, seed, revision)
        hub_id = name if is_hub_id(name) else None
        return _or_near_miss(_from_datasets, source, name, f"{name} (datasets)", val_fraction, seed, revision,
                             dataset_id=hub_id)
    if not local:
        raise DataError(f"no such data folder: {path}")
    if root := cifar10_root(path):
        return _with_validation(load_cifar10(root, True), load_cifar10(root, False), f"CIFAR-10 batches in {root}",
                                val_fraction, seed, "CIFAR-10 python batches", dataset_id=CIFAR10_ON_THE_HUB)
    if _is_datasets_dir(path):
        # absolute, so that the errors name the folder ("." would name none)
        return _from_datasets(str(path.absolute()), _named("datasets folder", source), val_fraction, seed, revision)
    if _split_folders(path):
        test_dir = path / "test"
        test = load_image_folder(test_dir) if test_dir.is_dir() else None
        return _with_validation(load_image_folder(path / "train"), test, f"image folder {path / 'train'}",
                                val_fraction, seed, _named("image folder", source, "/train"))
    return _with_validation(load_image_folder(path), None, f"image folder {path}", val_fraction, seed,
                            _named("image folder", source))


def _from_datasets(name: str, public: str, val_fraction: float, seed: int, revision: str | None,
                   dataset_id: str | None = None) -> CIFAR2:
    full = load_hub_dataset(name, revision=revision, split="train")
    try:
        test = load_hub_dataset(name, revision=revision, split="test")
    except DataError:
        test = None
    return _with_validation(full, test, f"{name} (datasets)", val_fraction, seed, public, dataset_id)


def _named(kind: str, given: str, inside: str = "") -> str:
    """``kind`` and the folder's own name as the user gave it ("image folder train" for ../shared/data/cifar2/train):
    symlinks are not followed, and ".", "..", "/" and "~" name no folder (they would only say where the user was)."""
    name = Path(os.path.normpath(given)).name
    # one printable line, as a card's record must be: a folder named with a line break or ESC in it is still named
    name = one_line(name)
    named = name not in ("", ".", "..") and not name.startswith("~")
    return f"{kind} {name}{inside}" if named else f"{kind}{' ' + inside.lstrip('/') if inside else ''}"


def _with_validation(train: Split, test: Split | None, source: str, val_fraction: float, seed: int,
                     public_source: str, dataset_id: str | None = None) -> CIFAR2:
    if test is not None and len(test):
        data = CIFAR2(train, test, source, "the source's test split", public_source, dataset_id)
    else:
        if not 0 < val_fraction < 1:
            raise DataError(f"--val-fraction must be between 0 and 1, got {val_fraction}")
        if not len(train):  # a dataset whose labels are none of CIFAR-10's airplane (0) and bird (2), or named so
            if train.skipped:
                raise DataError(f"{source} holds no readable airplane or bird image ({train.skipped:,} could not be "
                                "read; the log names one)")
            raise DataError(f"{source} holds no airplane or bird image (CIFAR-10's labels 0 and 2, or a label "
                            "column that names them)")
        train, val = stratified_split(train, val_fraction, seed)
        if len(val) == 0 or len(train) == 0:
            raise DataError(f"too few images ({len(train) + len(val)}) to carve a validation split")
        data = CIFAR2(train, val, source, f"seeded class-balanced {val_fraction:.0%} of it (seed {seed})",
                      public_source, dataset_id)
    check_every_class(data)
    return data


def check_every_class(data: CIFAR2) -> None:
    """A class without images in either split would train a one-class model whose accuracy means nothing."""
    for split_name, split in (("training", data.train), ("validation", data.val)):
        counts = split.class_counts()
        missing = [name for name, count in zip(CIFAR2_CLASSES, counts) if count == 0]
        if missing:
            have = ", ".join(f"{n} {c}" for n, c in zip(CIFAR2_CLASSES, counts))
            raise DataError(f"{data.source}: the {split_name} split has no {' and no '.join(missing)} images ({have}); "
                            "every class needs images in both splits")


# The zoo decodes its data once and hands each net's process this file: reading it took 0.05 s where decoding the
# 10,000 JPEGs again took 3.2 s a net (2-core AVX2 EPYC). The zoo writes it to a file with no name; still read as
# any file: checked from the header before a tensor is loaded.
DECODED_PARTS = {"images": ("U8", 4), "labels": ("I64", 1)}
DECODED_METADATA = ("source", "val_source", "public_source", "dataset_id", "train_skipped", "val_skipped")
DECODED_HEADER_LIMIT = 1 << 20  # names, shapes and a few paths: a few KB


def save_decoded(data: CIFAR2, file: BinaryIO) -> None:
    """``data`` written to ``file`` as safetensors, for load_decoded to read back as it was. A file object, not a
    path: safetensors' save_file writes beside its path and renames, and the zoo's file has no name."""
    tensors = {f"{split}_{part}": getattr(getattr(data, split), part).contiguous()
               for split in ("train", "val") for part in DECODED_PARTS}
    metadata = {"source": data.source, "val_source": data.val_source, "public_source": data.public_source,
                "dataset_id": data.dataset_id or "", "train_skipped": str(data.train.skipped),
                "val_skipped": str(data.val.skipped)}
    file.write(save(tensors, metadata=metadata))
    file.flush()


def load_decoded(path: str | Path) -> CIFAR2:
    """The data save_decoded wrote; anything else is a DataError naming what is wrong."""
    path = Path(path)

    def refuse(what: str) -> DataError:
        return DataError(f"{str(path)[:200]} is not decoded data as the zoo writes it: {what}")

    try:
        with open(path, "rb") as file:
            header = int.from_bytes(file.read(8), "little")
        if header > DECODED_HEADER_LIMIT:
            raise refuse(f"a header of {header:,} bytes (at most {DECODED_HEADER_LIMIT:,})")
        with safe_open(str(path), framework="pt") as stored:
            metadata, names = stored.metadata() or {}, set(stored.keys())
            wanted = {f"{split}_{part}" for split in ("train", "val") for part in DECODED_PARTS}
            if names != wanted or set(metadata) != set(DECODED_METADATA):
                raise refuse(f"tensors {', '.join(sorted(names)[:6]) or 'none'}, metadata "
                             f"{', '.join(sorted(metadata)[:6]) or 'none'}")
            shapes = {}
            for name in sorted(names):
                dtype, dims = DECODED_PARTS[name.split("_", 1)[1]]
                piece = stored.get_slice(name)
                shapes[name] = list(piece.get_shape())
                if piece.get_dtype() != dtype or len(shapes[name]) != dims:
                    raise refuse(f"{name} is {piece.get_dtype()} of shape {shapes[name]}")
            for split in ("train", "val"):
                images, labels = shapes[f"{split}_images"], shapes[f"{split}_labels"]
                if images[1:] != [3, 32, 32] or images[0] != labels[0] or not labels[0]:
                    raise refuse(f"{split} images of shape {images} with {labels[0]} labels")
            tensors = {name: stored.get_tensor(name) for name in names}
    except (OSError, SafetensorError) as error:
        raise refuse(one_line(str(error))[:300]) from None
    if not all(re.fullmatch(r"[0-9]{1,12}", metadata[f"{split}_skipped"]) for split in ("train", "val")):
        raise refuse("skipped counts that are not whole numbers")
    for split in ("train", "val"):
        if not ((tensors[f"{split}_labels"] >= 0) & (tensors[f"{split}_labels"] < len(CIFAR2_CLASSES))).all():
            raise refuse(f"{split} labels other than {len(CIFAR2_CLASSES)} classes' (0-{len(CIFAR2_CLASSES) - 1})")
    train, val = (Split(tensors[f"{split}_images"], tensors[f"{split}_labels"],
                        skipped=int(metadata[f"{split}_skipped"])) for split in ("train", "val"))
    data = CIFAR2(train, val, metadata["source"], metadata["val_source"], metadata["public_source"],
                  metadata["dataset_id"] if is_hub_id(metadata["dataset_id"]) else None)
    check_every_class(data)
    return data


def pad_for_augment(images: torch.Tensor, padding: int = 4) -> torch.Tensor:
    """Reflect-padded copies of uint8 images, made once per run: each step then only gathers its crops."""
    return torch.nn.functional.pad(images.float(), (padding,) * 4, mode="reflect").to(images.dtype)


def crop_and_flip(padded: torch.Tensor, index: torch.Tensor, size: tuple[int, int],
                  generator: torch.Generator | None = None) -> torch.Tensor:
    """For each ``padded[index[i]]`` a random ``size`` crop, mirrored half of the time: the chosen images, then one
    gather along their flattened pixels with the crop offset and the mirror folded into the pixel indices (random
    crop + horizontal flip of a whole batch; 2.8x faster on a CPU than one 4-way advanced index)."""
    n, (h, w), device = len(index), size, padded.device
    channels, height, width = padded.shape[1:]
    dy = torch.randint(0, height - h + 1, (n,), device="cpu", generator=generator).to(device)
    dx = torch.randint(0, width - w + 1, (n,), device="cpu", generator=generator).to(device)
    flip = (torch.rand(n, generator=generator) < 0.5).to(device)[:, None]
    across = torch.arange(w, device=device)
    rows = dy[:, None] + torch.arange(h, device=device)  # (n, h)
    cols = dx[:, None] + torch.where(flip, w - 1 - across, across)  # (n, w)
    pixels = (rows[:, :, None] * width + cols[:, None, :]).view(n, 1, h * w)
    chosen = padded[index.to(device)].view(n, channels, height * width)
    return chosen.gather(2, pixels.expand(n, channels, h * w)).view(n, channels, h, w)


def augment(images: torch.Tensor, padding: int = 4, generator: torch.Generator | None = None) -> torch.Tensor:
    """Per-image random crop (reflect padding) and horizontal flip of a uint8 batch, on its own device."""
    return crop_and_flip(pad_for_augment(images, padding), torch.arange(len(images), device=images.device),
                         tuple(images.shape[-2:]), generator)


@_os_errors_as_data_errors
def load_eval_split(source: str | Path, revision: str | None = None) -> tuple[Split, str]:
    """Everything to evaluate on: a whole image folder, a CIFAR-10 root's test batch, or a dataset's test split."""
    source = str(source)
    path = Path(source).expanduser()
    if (name := _datasets_name(source)) is not None:
        return _or_near_miss(load_hub_dataset, source, name, revision=revision, split="test"), f"{name} test split"
    if not path.exists():
        raise DataError(f"no such data folder: {path}")
    if root := cifar10_root(path):
        return load_cifar10(root, train=False), f"CIFAR-10 test batch in {root}"
    if _is_datasets_dir(path):
        return load_hub_dataset(str(path), split="test"), f"{path} test split"
    if _split_folders(path):
        if not (path / "test").is_dir():
            raise DataError(f"{path} holds train/ and no test/: pass {path / 'train'} to evaluate on every image "
                            "there, the net's training images among them")
        return load_image_folder(path / "test"), f"image folder {path / 'test'}"
    return load_image_folder(path), f"image folder {path}"
