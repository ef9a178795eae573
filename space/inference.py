"""The pure functions behind each tab: image in, arrays/figures/tables out. No Gradio here."""

from __future__ import annotations

import math
import os
import re
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from convhub import CIFAR2_CLASSES, CIFAR_MEAN, CIFAR_STD, build_transforms
from convhub.card import BOOK_VAL_ACCURACY
from convhub.errors import ConvHubError
from convhub.preprocessing import open_image
from PIL import Image
from torchvision.models.feature_extraction import create_feature_extractor, get_graph_node_names
from torchvision.utils import make_grid

from zoo_loader import LoadedNet

MAX_FEATURE_STAGES = 12
MAX_DEEPER_LAYERS = 6
MAX_CHANNELS_SHOWN = 16
DRAFT_SIZE = (256, 256)
TRANSFORMS = build_transforms()


CONCURRENCY = 2  # requests the Space computes at once (app.py's queue); torch gets the cores divided among them


def torch_threads(concurrency: int = 1) -> int:
    """Intra-op threads per request: the cores this process may use, shared by `concurrency` requests at a time.

    These nets are small: on 2 cores one thread per request beats two threads fighting over the cores (measured in
    benchmarks/space_latency.py). CONVHUB_TORCH_THREADS overrides.
    """
    if os.environ.get("CONVHUB_TORCH_THREADS"):
        return max(1, int(os.environ["CONVHUB_TORCH_THREADS"]))
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, cores // max(1, concurrency))


class BadImageError(ConvHubError):
    """The upload is not an image we can read; the message is shown as-is in the UI and API."""


def open_upload(image: Image.Image | str | Path) -> Image.Image:
    """A decoded image from an upload. JPEGs decode at a reduced scale no smaller than DRAFT_SIZE (libjpeg's DCT
    scaling): a 2400x1600 photo in 3 ms instead of 45, an 8000x8000 one in 25 ms instead of 900, and the 32x32 the
    nets see is practically the same. Other formats decode in full."""
    try:
        return open_image(image, draft=DRAFT_SIZE)
    except ConvHubError as error:  # name the file, not the server's temporary path
        raise BadImageError(str(error).replace(str(image), Path(image).name)) from None


def load_input(image: Image.Image | str | Path | None) -> torch.Tensor:
    """Any upload (path or PIL image) -> the normalized (1, 3, 32, 32) tensor every net sees."""
    if image is None:
        raise BadImageError("no image: upload one, paste one, use the webcam or pick an example")
    pil = open_upload(image)
    try:
        return TRANSFORMS(pil).unsqueeze(0)
    except (OSError, ValueError, Image.DecompressionBombError) as error:
        raise BadImageError(f"cannot use this image: {error}") from None


def to_display(tensor: torch.Tensor, scale: int = 8) -> np.ndarray:
    """A normalized (1|3, H, W) tensor back to uint8 pixels, enlarged with nearest-neighbour so pixels stay visible."""
    x = tensor.detach().float()
    x = x[0] if x.dim() == 4 else x
    if x.shape[0] == 1:
        x = x.expand(3, -1, -1)
    else:
        x = x * torch.tensor(CIFAR_STD).view(3, 1, 1) + torch.tensor(CIFAR_MEAN).view(3, 1, 1)
    x = x.clamp(0, 1)
    x = torch.nn.functional.interpolate(x.unsqueeze(0), scale_factor=scale, mode="nearest")[0]
    return (x.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)


@torch.inference_mode()
def classify(nets: list[LoadedNet], image) -> tuple[dict[str, dict[str, float]], pd.DataFrame, np.ndarray, dict]:
    """Every available net on one image: probabilities per net, a comparison table, the 32x32 input, and timings.

    The image is decoded and preprocessed once; every net gets the same tensor.
    """
    started = time.perf_counter()
    x = load_input(image)
    preprocess_ms = (time.perf_counter() - started) * 1000
    probs_by_net, rows = {}, []
    for net in nets:
        if not net.available:
            continue
        start = time.perf_counter()
        probs = net.model(x).softmax(1)[0]
        latency_ms = (time.perf_counter() - start) * 1000
        probs_by_net[net.name] = {name: float(p) for name, p in zip(CIFAR2_CLASSES, probs)}
        rows.append({"net": net.name, **{name: round(float(p), 4) for name, p in zip(CIFAR2_CLASSES, probs)},
                     "prediction": CIFAR2_CLASSES[int(probs.argmax())], "latency_ms": round(latency_ms, 2)})
    table = pd.DataFrame(rows, columns=["net", *CIFAR2_CLASSES, "prediction", "latency_ms"])
    timing = {"preprocess_ms": preprocess_ms, "nets_ms": float(table["latency_ms"].sum()),
              "total_ms": (time.perf_counter() - started) * 1000}
    return probs_by_net, table, to_display(x[0]), timing


def classify_summary(table: pd.DataFrame, timing: dict) -> str:
    """One line under the results: the vote and how long all nets took together."""
    if table.empty:
        return "No net is available: see *Where each net came from* on the Compare tab."
    votes = table["prediction"].value_counts()
    vote = ", ".join(f"**{label}** by {count} of {len(table)} nets" for label, count in votes.items())
    return (f"{vote}. All {len(table)} nets took {timing['nets_ms']:.1f} ms together "
            f"(+ {timing['preprocess_ms']:.1f} ms to decode and shrink the image to 32x32).")


def _kernel_grid(weights: torch.Tensor, nrow: int, scale: int) -> np.ndarray:
    """(N, C, k, k) kernels as a grid; each kernel min-max normalized on its own so its pattern is visible."""
    w = weights.detach().float()
    lo = w.amin(dim=(1, 2, 3), keepdim=True)
    hi = w.amax(dim=(1, 2, 3), keepdim=True)
    w = (w - lo) / (hi - lo).clamp_min(1e-8)
    w = torch.nn.functional.interpolate(w, scale_factor=scale, mode="nearest")
    grid = make_grid(w, nrow=nrow, padding=2, pad_value=1.0)
    return (grid.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)


def conv_layers(model: torch.nn.Module) -> list[tuple[str, torch.nn.Conv2d]]:
    return [(name, m) for name, m in model.named_modules() if isinstance(m, torch.nn.Conv2d)]


def _evenly_spaced(items: list, k: int) -> list:
    """At most k items, evenly spaced, always the first and the last."""
    if len(items) <= k:
        return items
    return [items[i] for i in sorted({round(j * (len(items) - 1) / (k - 1)) for j in range(k)})]


def filter_images(model: torch.nn.Module | None) -> tuple[np.ndarray | None, list[tuple[np.ndarray, str]], str]:
    """First conv's kernels as RGB tiles; deeper convs' kernels as one grey tile per (output, input) channel pair.

    Deep nets show at most MAX_DEEPER_LAYERS of their deeper convs, evenly spaced (the second conv and the last
    always among them).
    """
    if model is None:
        return None, [], "this net is unavailable."
    convs = conv_layers(model)
    if not convs:
        return None, [], "this net has no convolutions: the fully connected baseline looks at all 3,072 pixels at once."
    name, first = convs[0]
    first_grid = _kernel_grid(first.weight, nrow=8, scale=12)
    note = f"`{name}`: {first.out_channels} kernels of 3x3 over RGB (each normalized to its own range)."
    deeper = []
    for name2, conv in _evenly_spaced(convs[1:], MAX_DEEPER_LAYERS):
        w = conv.weight[:MAX_CHANNELS_SHOWN, :MAX_CHANNELS_SHOWN]
        tiles = w.reshape(-1, 1, *w.shape[2:])  # one grey tile per (output, input) channel pair
        shown = f" (first {w.shape[0]}x{w.shape[1]})" if tuple(w.shape[:2]) != (conv.out_channels, conv.in_channels) else ""
        deeper.append((_kernel_grid(tiles, nrow=w.shape[1], scale=8),
                       f"{name2}: {conv.out_channels}x{conv.in_channels} kernels{shown}"))
    if deeper:
        note += (f" Deeper layers ({len(deeper)} of {len(convs) - 1} shown): one row per output channel, one grey"
                 " 3x3 tile per input channel.")
    return first_grid, deeper, note


def handmade_kernels() -> dict[str, torch.Tensor]:
    """The chapter's hand-made 3x3 kernels, applied to all three channels at once."""
    blur = torch.full((3, 3), 1 / 9)
    vertical = torch.tensor([[-1.0, 0.0, 1.0]] * 3)
    return {"blur": blur, "vertical edges": vertical, "horizontal edges": vertical.T.contiguous()}


def _response_image(response: torch.Tensor, scale: int = 6) -> np.ndarray:
    r = response.detach().float()
    r = (r - r.min()) / (r.max() - r.min()).clamp_min(1e-8)
    return to_display(r.unsqueeze(0), scale=scale)


@torch.inference_mode()
def kernel_responses(model: torch.nn.Module | None, image, n_learned: int = 6) -> list[tuple[np.ndarray, str]]:
    """Hand-made kernels' outputs on the 32x32 input, next to the outputs of the net's first learned kernels."""
    x = load_input(image)
    gallery = [(to_display(x[0], scale=6), "input (32x32)")]
    for name, kernel in handmade_kernels().items():
        weight = kernel.expand(1, 3, 3, 3)
        gallery.append((_response_image(torch.nn.functional.conv2d(x, weight, padding=1)[0, 0]), f"hand-made: {name}"))
    convs = conv_layers(model) if model is not None else []
    if convs:
        name, first = convs[0]
        out = first(x)[0]
        for i in range(min(n_learned, out.shape[0])):
            gallery.append((_response_image(out[i]), f"learned: {name}[{i}]"))
    return gallery


STAGE_PATTERN = re.compile(r"^(tanh|relu)(_\d+)?$|^max_pool2d(_\d+)?$|(^|\.)add$")


def feature_stage_names(model: torch.nn.Module) -> list[str]:
    """Graph nodes worth showing: activations after each conv, each pooling, each residual sum."""
    _, eval_nodes = get_graph_node_names(model)
    return [n for n in eval_nodes if STAGE_PATTERN.search(n)]


@torch.inference_mode()
def feature_maps(model: torch.nn.Module | None, image) -> list[tuple[np.ndarray, str]]:
    """CNN-Explainer style: each conv/pool stage's activations for one image, one grid per stage."""
    x = load_input(image)
    if model is None or not conv_layers(model):
        raise BadImageError("the fully connected baseline has no feature maps: pick a convolutional net")
    extractor = create_feature_extractor(model, return_nodes=feature_stage_names(model)).eval()
    outputs = [(name, out) for name, out in extractor(x).items() if out.dim() == 4]
    outputs = _evenly_spaced(outputs, MAX_FEATURE_STAGES)  # deep nets: the first and last stages, and some between
    gallery = [(to_display(x[0], scale=4), "input 3x32x32")]
    for name, out in outputs:
        maps = out[0, :MAX_CHANNELS_SHOWN].unsqueeze(1)  # one grey tile per channel, each on its own range
        image_grid = _kernel_grid(maps, nrow=int(math.ceil(math.sqrt(maps.shape[0]))), scale=max(1, 64 // maps.shape[-1]))
        c, h, w = out.shape[1:]
        gallery.append((image_grid, f"{name}: {c}x{h}x{w}" + (f" (first {MAX_CHANNELS_SHOWN} channels)" if c > MAX_CHANNELS_SHOWN else "")))
    return gallery


def compare_table(nets: list[LoadedNet]) -> pd.DataFrame:
    """Parameter counts for every net (trained or not) and the accuracies their model cards report."""
    import convhub

    rows = []
    for net in nets:
        model = net.model if net.model is not None else convhub.create(net.name)
        record = net.record or {}
        rows.append({
            "net": net.name,
            "class": type(model).__name__,
            "params": model.num_params,
            "val_accuracy": _rounded(record.get("val_accuracy")),
            "train_accuracy": _rounded(record.get("train_accuracy")),
            "book_val_accuracy": BOOK_VAL_ACCURACY.get(net.name),
            "epochs": record.get("epochs"),
            "source": net.source,
        })
    return pd.DataFrame(rows)


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(float(value), 4)


def why_convolutions(table: pd.DataFrame) -> str:
    """The Compare tab's explanation, with this Space's own numbers."""
    rows = table.set_index("net")
    text = """### Why convolutions need so few parameters
- **Locality**: a 3x3 kernel looks at a pixel and its 8 neighbours, not at all 3,072 input values.
- **Weight sharing**: the same kernel slides over every position, so a conv layer's size does not depend on the
  image size: `Conv2d(3, 16, 3)` has 16x3x3x3 + 16 = 448 parameters, while `Linear(3072, 1024)`, the first layer of
  the fully connected baseline, has 3,146,752.
- **Translation invariance**: a bird is a bird wherever it sits; shared kernels and pooling build that in, so the
  net does not have to learn every feature again at every position.
"""
    if {"fc", "net"} <= set(rows.index):
        fc, net = rows.loc["fc"], rows.loc["net"]

        def acc(row):
            value = row["val_accuracy"]
            return "no measured accuracy" if pd.isna(value) else f"{value:.3f} validation accuracy"

        text += (f"\nHere the fully connected baseline has **{fc['params']:,}** parameters ({acc(fc)}); `net` has "
                 f"**{net['params']:,}**, {fc['params'] / net['params']:.0f}x fewer ({acc(net)}).")
    return text


def _figure():
    from matplotlib.figure import Figure  # not pyplot: figures built in worker threads, never registered globally

    fig = Figure(figsize=(8, 4.2), dpi=100)
    return fig, fig.add_subplot()


def params_figure(table: pd.DataFrame):
    fig, ax = _figure()
    ax.barh(table["net"], table["params"], color=["#d62728" if n == "fc" else "#1f77b4" for n in table["net"]])
    ax.set_xscale("log")
    ax.set_xlabel("parameters (log scale)")
    for y, p in enumerate(table["params"]):
        ax.text(p, y, f" {p:,}", va="center", fontsize=8)
    ax.invert_yaxis()
    ax.set_title("Parameters per net: convolutions share weights across positions")
    fig.tight_layout()
    return fig


def accuracy_figure(table: pd.DataFrame):
    fig, ax = _figure()
    ours = table.dropna(subset=["val_accuracy"])
    ax.scatter(ours["params"], ours["val_accuracy"], label="ours (validation)", zorder=3)
    for _, row in ours.iterrows():
        ax.annotate(row["net"], (row["params"], row["val_accuracy"]), textcoords="offset points", xytext=(4, 4), fontsize=8)
    book = table.dropna(subset=["book_val_accuracy"])
    ax.scatter(book["params"], book["book_val_accuracy"], marker="x", color="gray", label="book (validation)")
    ax.set_xscale("log")
    ax.set_xlabel("parameters (log scale)")
    ax.set_ylabel("validation accuracy")
    ax.grid(True, alpha=0.3)
    ax.legend(loc="upper right")
    missing = table.loc[table["val_accuracy"].isna(), "net"].tolist()
    ax.set_title("Accuracy vs parameters (from the model cards)"
                 + (f"\nno measured accuracy: {', '.join(missing)}" if missing else ""), fontsize=10)
    fig.tight_layout()
    return fig
