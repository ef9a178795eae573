"""Artifacts: a trained net saved as a save_pretrained folder, without ever losing what was there.

An output folder is checked before any training (so a bad --out costs seconds, not the run), and a model is written
into a temporary folder beside it and renamed into place: a failed save (disk full, Ctrl-C) leaves the previous
model whole, and nothing that is not a convhub model is ever replaced.
"""

from __future__ import annotations

import errno
import os
import re
import shlex
import shutil
import stat
import tempfile
from pathlib import Path

import convhub
import torch
from convhub.card import COMPLETE_RECORD
from convhub.card import training_record as card_training_record
from convhub.config import ConfigError, parse_config
from convhub.errors import ConvHubError
from convhub.hub import MODEL_FILES
from convhub.models import ARCHITECTURES

from .hardware import cpu_model

# What `zoo`, `report` and `translation` write next to the nets (the Space reads them; publish uploads them).
ZOO_REPORT_FILES = ("results.json", "results.md", "accuracy_vs_params.png", "translation.json")


class OutputError(ConvHubError):
    """An output folder that cannot or must not be written; nothing was changed."""


def describe_device(device) -> str:
    """The device a run used, named well enough to read its seconds: the CPU model and threads, or the GPU."""
    device = torch.device(device)
    if device.type == "cuda":
        return f"{device} ({torch.cuda.get_device_name(device)})"
    return f"{device} ({cpu_model()}, {torch.get_num_threads()} threads)"


def training_record(model, data, recipe, result, train_metrics: dict, val_metrics: dict, *, seed: int, device,
                    precision: str = "fp32", dataset_id: str | None = None) -> dict:
    """Everything the model card reports about a run (also stored as the card's `convhub` metadata).
    ``dataset_id``: the Hub dataset the images came from, where known (the card links it)."""
    return {
        "model_name": model.model_name,
        "params": model.num_params,
        "val_accuracy": val_metrics["accuracy"],
        "train_accuracy": train_metrics["accuracy"],
        "per_class_accuracy": val_metrics["per_class_accuracy"],
        "confusion_matrix": val_metrics["confusion_matrix"],
        "epochs": len(result.history),
        "seconds": round(result.seconds, 1),
        "images_per_second": round(result.images_per_second),
        "device": describe_device(device),
        "precision": precision,
        "dataset": data.public_source,  # no local paths: the card may be published
        **({"dataset_id": dataset_id} if dataset_id else {}),
        "n_train": len(data.train),
        "n_val": len(data.val),
        "validation": data.val_source,
        "recipe": recipe.name,
        "recipe_description": recipe.describe(),
        "recipe_config": recipe.to_dict(),
        "seed": seed,
        "convhub_version": convhub.__version__,
        "torch_version": str(torch.__version__),
    }


def read_record(model_dir: str | Path) -> dict | None:
    """The training record stored in a saved model's card, or None for an untrained save. The card must be a regular
    file: through a link, another file's words would go into a results table or a published card."""
    card = Path(model_dir) / "README.md"
    if card.is_symlink() or (card.exists() and not card.is_file()):
        raise OutputError(f"{card} is not a regular file (a link, a FIFO...): not reading it")
    record = card_training_record(model_dir)
    missing = [key for key in COMPLETE_RECORD if record is not None and key not in record]
    if missing:  # a results table and a published card's model-index need each one
        raise ConfigError(f"{card}: the 'convhub' training record lacks {', '.join(map(repr, missing))}")
    return record


def is_model_folder(folder: Path) -> bool:
    """A folder holding a convhub save and nothing else: only a save's files, each a regular file (no link, no
    FIFO, which reading would follow or block on), and a config.json that convhub wrote."""
    try:
        entries = list(folder.iterdir())
        if not entries or not {p.name for p in entries} <= set(MODEL_FILES):
            return False
        if not all(stat.S_ISREG(p.lstat().st_mode) for p in entries):
            return False
        config = parse_config(folder / "config.json")  # bounded in size and strict
    except (OSError, ConvHubError):
        return False
    return config.get("architecture") in ARCHITECTURES and "convhub_version" in config


def check_model_out(out: str | Path, *, overwrite: bool = False) -> Path:
    """The folder a model will be saved in, checked before any work: refused when it is a file, not writable, a
    non-empty folder that is not a convhub model, or a model that --overwrite does not allow replacing."""
    if str(out).strip() == "":
        raise OutputError("--out is empty: name the folder to save the model in (it would be the current folder)")
    out = _absolute(out)
    if os.path.ismount(out):
        raise OutputError(f"--out {out} is a mount point, which cannot be replaced: choose a folder inside it")
    if out.exists() or out.is_symlink():
        if not out.is_dir() or out.is_symlink():
            raise OutputError(f"--out {out} is {'a symbolic link' if out.is_symlink() else 'a file'}, not a folder: "
                              "choose another --out")
        if any(out.iterdir()):
            if not is_model_folder(out):
                raise OutputError(f"--out {out} is a folder that holds other files than a convhub model: choose an "
                                  "empty or new folder (nothing was changed)")
            if not overwrite:
                raise OutputError(f"--out {out} already holds a model: pass --overwrite to replace it, or choose "
                                  "another folder")
    _check_writable(out.parent)
    return out


def _absolute(path: str | Path) -> Path:
    """An absolute path without resolving links (a link must be seen as one), so that '.' has a name and a parent."""
    return Path(os.path.abspath(Path(path).expanduser()))


def _check_writable(folder: Path) -> None:
    """Prove, before any training, that ``folder`` can be created or written in: try its nearest existing ancestor
    (creating nothing that stays)."""
    existing = folder.absolute()
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise OutputError(f"cannot save in {folder}: {existing} is a file")
    try:
        Path(tempfile.mkdtemp(dir=existing, prefix=".convhub-check-")).rmdir()
    except OSError as error:
        raise OutputError(f"cannot write in {existing}: {error.strerror or error}") from None


def write_folder_atomically(out: Path, write, *, may_replace) -> Path:
    """Run ``write(tmp_folder)`` in a temporary folder beside ``out``, then swap it into place.

    ``may_replace(out)`` decides, at swap time, whether an existing ``out`` may go (it may have changed since the
    checks). If the write fails, the temporary folder is removed and ``out`` is as it was. If ``out`` may not be
    replaced, the new folder is kept and named in the error, so nothing is lost either way.
    """
    out = _absolute(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.tmp-"))
    try:
        write(tmp)
    except BaseException as error:
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(error, OSError):
            kept = "the previous files there are untouched" if out.exists() else "nothing was written"
            raise OutputError(f"could not save {out}: {error.strerror or error}; {kept}") from None
        raise
    if out.exists() and not (out.is_dir() and not out.is_symlink() and (not any(out.iterdir()) or may_replace(out))):
        raise OutputError(f"{out} changed while this ran and is not ours to replace; the new files are in {tmp}")
    old = None
    try:
        if out.exists():
            old = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.old-"))
            os.rmdir(old)
            os.rename(out, old)
        os.rename(tmp, out)
    except OSError as error:
        if old is not None and not out.exists():
            os.rename(old, out)
        raise OutputError(f"could not put the new files in place at {out}: {error.strerror or error}; "
                          f"{out} is as it was and the new files are in {tmp}") from None
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
    os.chmod(out, 0o777 & ~_umask())  # mkdtemp made it private; a saved model is as readable as any folder
    return out


def refuse_linked_folders(parent: Path) -> None:
    """`report`, `translation` and `publish` read the nets in a folder of trained nets: a net's folder that is a link
    would bring in whatever it points to (into a table, or onto the Hub)."""
    linked = sorted(p.name for p in parent.iterdir() if p.is_symlink() and p.is_dir())
    if linked:
        raise OutputError(f"{parent / linked[0]} is a link to a folder: only the folders inside {parent} are read "
                          "(copy the net there instead)")


def copy_regular_file(source: Path, target: Path) -> Path:
    """Copy a file that is what it says: a regular file, not a link (which would copy whatever it points to, a
    secret too, into an upload) nor a FIFO."""
    refused = OutputError(f"{source} is not a regular file (a link, a FIFO...): not copying it")
    try:  # opened without following a link, then checked: the file copied is the file checked
        fd = os.open(source, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError as error:
        if error.errno == errno.ELOOP:
            raise refused from None
        raise
    with open(fd, "rb") as file:
        if not stat.S_ISREG(os.fstat(file.fileno()).st_mode):
            raise refused
        with open(target, "wb") as copy:
            shutil.copyfileobj(file, copy)
    return Path(target)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def save(model, out_dir: str | Path, record: dict | None, *, overwrite: bool = False) -> Path:
    """Save atomically: config.json + model.safetensors + a card holding ``record``. A model found in place at the
    end is replaced only with ``overwrite`` (another run may have saved it meanwhile)."""
    return write_folder_atomically(
        Path(out_dir), lambda tmp: model.save_pretrained(tmp, model_card_kwargs={"training": record}),
        may_replace=lambda folder: overwrite and is_model_folder(folder))


# What a save or a report killed half-way leaves beside its target (write_folder_atomically, replace_file): ours,
# never read, and no reason to refuse the folder for good (a save killed by the OOM killer left the zoo unusable).
_LEFTOVER = re.compile(r"\.(?P<net>[a-z0-9_]+)\.(tmp|old)-[A-Za-z0-9_]+|"
                       rf"\.(?P<file>{'|'.join(map(re.escape, ZOO_REPORT_FILES))})\.[A-Za-z0-9_.]+")


def _zoo_entry(path: Path, *, report_files_of_any_kind: bool = False) -> bool:
    """A zoo folder's own entries: its report files (regular files: a link would be written through, unless
    ``report_files_of_any_kind``, for `report`, which replaces whatever stands there) and nets, and what our own
    saves left of theirs."""
    mode = path.lstat().st_mode
    report_file = report_files_of_any_kind or stat.S_ISREG(mode)
    leftover = _LEFTOVER.fullmatch(path.name)
    return ((path.name in ZOO_REPORT_FILES and report_file)
            or (path.name in convhub.ZOO and stat.S_ISDIR(mode))
            or (leftover is not None and (leftover["net"] in convhub.ZOO and stat.S_ISDIR(mode)
                                          or leftover["file"] in ZOO_REPORT_FILES and report_file)))


def check_report_folder(out: Path) -> list[Path]:
    """A zoo folder's nets, for `report` to read: only a folder holding nothing but a zoo's own entries, since the
    report replaces its results files (a folder's own results.md was replaced without a word)."""
    foreign = sorted(p.name for p in out.iterdir() if not _zoo_entry(p, report_files_of_any_kind=True))
    if foreign:
        raise OutputError(f"{out} holds files that are not a zoo's ({', '.join(map(repr, foreign[:5]))}): `report` "
                          "writes results.json, results.md and the plot only in a folder `zoo` made (nothing was "
                          "changed)")
    return [out / name for name in convhub.ZOO if (out / name).is_dir()]


def check_zoo_out(out: str | Path, names: list[str], *, overwrite: bool = False) -> Path:
    """The zoo's parent folder: new, empty, or one that holds only zoo nets and their report; every net's folder is
    checked as check_model_out does, before the first net trains."""
    if str(out).strip() == "":
        raise OutputError("--out is empty: name the folder to save the zoo in (it would be the current folder)")
    out = _absolute(out)
    if out.exists() and (not out.is_dir() or out.is_symlink()):
        raise OutputError(f"--out {out} is not a folder: choose another --out")
    if out.is_dir():
        foreign = sorted(p.name for p in out.iterdir() if not _zoo_entry(p))
        if foreign:
            raise OutputError(f"--out {out} holds files that are not a zoo's ({', '.join(foreign[:5])}): choose an "
                              "empty or new folder (nothing was changed)")
    saved = [] if overwrite else [name for name in names if is_model_folder(out / name)]
    for name in names:
        if name not in saved:  # the folders of the nets to train are fine, or the advice below would not work
            check_model_out(out / name, overwrite=overwrite)
    if saved:  # an interrupted zoo: --overwrite alone would train again what is already there
        rest = [name for name in names if name not in saved]
        again = f"to train {'them' if len(saved) > 1 else 'it'} again, pass --overwrite"
        raise OutputError(f"--out {out} already holds {', '.join(saved)}: " + (
            f"to train only the rest, run the zoo again with --models {','.join(rest)} (the results table keeps "
            f"the nets already there); {again}" if rest else
            f"{again} (`python -m training report --out {shlex.quote(str(out))}` rebuilds the results table from "
            "the cards)"))
    _check_writable(out)
    return out


def replace_file(path: Path, write) -> None:
    """``write(file)`` into a new sibling file, then rename it over ``path``: whatever stood there (a link too) is
    replaced, never written through, and a failed write leaves the old file. The new file is created under a random
    name (mkstemp), never opened by a name that something in the folder could already stand on."""
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as error:
        raise OutputError(f"cannot write in {path.parent}: {error.strerror or error}") from None
    try:
        os.fchmod(fd, 0o666 & ~_umask())  # as readable as a file written with open()
        with os.fdopen(fd, "wb") as file:
            write(file)
        os.replace(tmp, path)
    except OSError as error:  # a folder standing at that name, a full disk...
        raise OutputError(f"cannot write {path}: {error.strerror or error}") from None
    finally:
        Path(tmp).unlink(missing_ok=True)
