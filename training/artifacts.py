"""Artifacts: a trained net saved as a save_pretrained folder, without ever losing what was there.

An output folder is checked before any training (so a bad --out costs seconds, not the run), and a model is written
into a temporary folder beside it and renamed into place: a failed save (disk full, Ctrl-C) leaves the previous
model whole, and nothing that is not a convhub model is ever replaced.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import tempfile
from pathlib import Path

import convhub
import torch
from convhub.card import training_record as card_training_record
from convhub.errors import ConvHubError
from convhub.hub import MODEL_FILES

ZOO_REPORT_FILES = ("results.json", "results.md", "accuracy_vs_params.png")


class OutputError(ConvHubError):
    """An output folder that cannot or must not be written; nothing was changed."""


def training_record(model, data, recipe, result, train_metrics: dict, val_metrics: dict, *, seed: int, device) -> dict:
    """Everything the model card reports about a run (also stored as the card's `convhub` metadata)."""
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
        "device": str(device) if str(device) != "cpu" else f"cpu ({platform.processor() or platform.machine()}, "
                                                            f"{torch.get_num_threads()} threads)",
        "dataset": data.source,
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
    """The training record stored in a saved model's card, or None for an untrained save."""
    return card_training_record(model_dir)


def is_model_folder(folder: Path) -> bool:
    """A folder holding a convhub save (config.json naming an architecture) and nothing but a save's files."""
    try:
        names = {p.name for p in folder.iterdir()}
        config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return names <= set(MODEL_FILES) and isinstance(config, dict) and "architecture" in config


def check_model_out(out: str | Path, *, overwrite: bool = False) -> Path:
    """The folder a model will be saved in, checked before any work: refused when it is a file, not writable, a
    non-empty folder that is not a convhub model, or a model that --overwrite does not allow replacing."""
    if str(out).strip() == "":
        raise OutputError("--out is empty: name the folder to save the model in (it would be the current folder)")
    out = Path(out).expanduser()
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
    out = Path(out)
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
    if out.exists():
        old = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.old-"))
        os.rmdir(old)
        os.rename(out, old)
    try:
        os.rename(tmp, out)
    except OSError:
        if old is not None:
            os.rename(old, out)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
    os.chmod(out, 0o777 & ~_umask())  # mkdtemp made it private; a saved model is as readable as any folder
    return out


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def save(model, out_dir: str | Path, record: dict | None) -> Path:
    """Save atomically: config.json + model.safetensors + a card holding ``record``."""
    return write_folder_atomically(
        Path(out_dir), lambda tmp: model.save_pretrained(tmp, model_card_kwargs={"training": record}),
        may_replace=is_model_folder)


def _zoo_entry(path: Path) -> bool:
    return (path.name in ZOO_REPORT_FILES and path.is_file()) or (path.name in convhub.ZOO and path.is_dir())


def check_zoo_out(out: str | Path, names: list[str], *, overwrite: bool = False) -> Path:
    """The zoo's parent folder: new, empty, or one that holds only zoo nets and their report; every net's folder is
    checked as check_model_out does, before the first net trains."""
    if str(out).strip() == "":
        raise OutputError("--out is empty: name the folder to save the zoo in (it would be the current folder)")
    out = Path(out).expanduser()
    if out.exists() and (not out.is_dir() or out.is_symlink()):
        raise OutputError(f"--out {out} is not a folder: choose another --out")
    if out.is_dir():
        foreign = sorted(p.name for p in out.iterdir() if not _zoo_entry(p))
        if foreign:
            raise OutputError(f"--out {out} holds files that are not a zoo's ({', '.join(foreign[:5])}): choose an "
                              "empty or new folder (nothing was changed)")
    for name in names:
        check_model_out(out / name, overwrite=overwrite)
    _check_writable(out)
    return out
