"""How accuracy falls as the validation images shift: the chapter's case for convolutions, measured.

A convolution applies the same kernel at every position and pooling forgets where a feature was, so a convnet's
answer barely moves when the object does; the fully connected net has one weight per pixel and sees a shifted image
as a different input. Written next to the trained nets (translation.json), where the Space plots it.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from convhub.preprocessing import translate

from .artifacts import replace_file
from .data import Split
from .engine import _prepare

SHIFTS = tuple(range(-8, 9))
FILE = "translation.json"  # one of artifacts.ZOO_REPORT_FILES: a zoo folder may hold it, publish uploads it


@torch.inference_mode()
def accuracy_vs_shift(model: torch.nn.Module, split: Split, shifts=SHIFTS, batch_size: int = 500) -> list[float]:
    """Accuracy on ``split`` with every image shifted horizontally by each of ``shifts`` pixels."""
    model.eval()
    correct = torch.zeros(len(shifts))
    for start in range(0, len(split), batch_size):
        x = _prepare(split.images[start:start + batch_size])
        labels = split.labels[start:start + batch_size]
        for i, dx in enumerate(shifts):
            correct[i] += (model(translate(x, dx)).argmax(1) == labels).sum()
    return [round(float(c) / max(len(split), 1), 4) for c in correct]


def write(models: dict[str, torch.nn.Module], split: Split, validation: str, out_dir: Path, shifts=SHIFTS) -> Path:
    curves = {name: accuracy_vs_shift(model, split, shifts) for name, model in models.items()}
    path = Path(out_dir) / FILE
    text = json.dumps({"shifts": list(shifts), "direction": "horizontal", "n_images": len(split),
                       "validation": validation, "accuracy": curves}, indent=2) + "\n"
    replace_file(path, lambda file: file.write(text.encode()))
    return path
