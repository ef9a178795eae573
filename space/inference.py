"""The computations behind the Space: images in, numbers out. No Gradio and no drawing here."""

from __future__ import annotations

import collections
import concurrent.futures
import ctypes
import os
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import anatomy
import numpy as np
import torch
from convhub import CIFAR2_CLASSES, CIFAR_MEAN, CIFAR_STD, build_transforms
from convhub.card import BOOK_VAL_ACCURACY
from convhub.errors import ConvHubError
from convhub.preprocessing import CenterSquare, open_image, to_rgb, translate, upright
from PIL import Image

from zoo_loader import LoadedNet, describe_failure

DRAFT_SIZE = (256, 256)
TRANSFORMS = build_transforms()
SHIFTS = tuple(range(-8, 9))
MAX_KERNEL_LAYERS = 4
MAX_MAP_STAGES = 6
MAPS_PER_STAGE = 8


def torch_threads(concurrency: int = 1, override: int | None = None) -> int:
    """Intra-op threads per request: the cores this process may use, shared by `concurrency` requests at a time.

    These nets are small: on 2 cores one thread per request beats two threads fighting over the cores (measured in
    benchmarks/space_latency.py). ``override`` (the app's CONVHUB_TORCH_THREADS) wins.
    """
    if override is not None:
        return max(1, override)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, cores // max(1, concurrency))


class BadImageError(ConvHubError):
    """The upload is not an image we can read; the message is shown as-is in the UI and API."""


# Images decoded at once. A PNG near convhub's 50 MP limit takes a few hundred MB while it decodes, and the Space takes
# 16 classify requests at a time: those that must decode a large image take turns (small ones take microseconds).
_DECODES = threading.BoundedSemaphore(2)
LARGE_PIXELS = 8_000_000


def open_upload(image: Image.Image | str | Path) -> Image.Image:
    """A decoded image from an upload, bounded in time and memory. JPEGs decode at a reduced scale no smaller than
    DRAFT_SIZE (libjpeg's DCT scaling): a 2400x1600 photo in 3 ms instead of 45. Other formats decode in full, within
    convhub's pixel limit, and a large result is at once reduced (box filter) to no less than DRAFT_SIZE, before the
    copies that mode conversions make; the 32x32 the nets see is practically the same."""
    with _DECODES:
        try:
            decoded = open_image(image, draft=DRAFT_SIZE)
        except ConvHubError as error:  # name the file, not the server's temporary path
            name = Path(image).name if isinstance(image, (str, Path)) else "the image"
            message = str(error).replace(str(image), name)
        else:
            message = None
            large = decoded.width * decoded.height > LARGE_PIXELS
            reduced = _reduced(decoded)
            del decoded
            if large:
                _give_memory_back()
    if message is not None:  # raised outside the except block, so that nothing of the failed decode is kept
        raise BadImageError(message)
    return reduced


def _reduced(image: Image.Image) -> Image.Image:
    """A large decode as the centred square the nets see (TRANSFORMS crops it anyway), at most DRAFT_SIZE-ish, in RGB
    where reduce() does not take the mode (1, P, I;16): cut down while the decode is still bounded (_DECODES), not
    later at full size by every request at once. Cropped first: a 255x196,000 image (within the pixel limit) has a
    short side no reduction shrinks, and cost ~1 GB a request, 16 requests at a time."""
    if image.width * image.height <= 4 * DRAFT_SIZE[0] * DRAFT_SIZE[1]:
        return image
    # Cropped, then turned upright: a turn or flip maps the centred square to the centred square (to a pixel, where a
    # flip meets an odd difference of the sides), and exif_transpose copies the whole image even where there is
    # nothing to turn.
    square = upright(CenterSquare()(image))
    if image.mode == "I" and image.getextrema()[1] > 255 >= square.getextrema()[1]:
        # to_rgb scales 32-bit greyscale to 8 bits when the image's values go past 255: the whole image's, not the
        # square's (a square of 200s in a frame of 60,000s was shown 205/255 brighter than predict() sees it)
        square = Image.fromarray((np.asarray(square, dtype=np.int32).clip(0, 255 * 256) >> 8).astype(np.uint8), "L")
    factor = square.width // DRAFT_SIZE[0]
    if factor < 2:
        return square
    try:
        return square.reduce(factor)
    except ValueError:
        return to_rgb(square).reduce(factor)


def _give_memory_back() -> None:
    """Return freed heap to the system (glibc keeps it per thread arena otherwise: the Space's memory would stay at
    its peak after one large image)."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


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


def saturation(x: torch.Tensor) -> float:
    """Mean colour saturation (0 grey .. 1 vivid) of a normalized input: the nets lean on colour."""
    rgb = (x[0] * torch.tensor(CIFAR_STD).view(3, 1, 1) + torch.tensor(CIFAR_MEAN).view(3, 1, 1)).clamp(0, 1)
    high, low = rgb.amax(0), rgb.amin(0)
    return float(((high - low) / high.clamp_min(1e-3)).mean())


# --- classify -----------------------------------------------------------------------------------------------------


@dataclass
class Verdict:
    """Every net's probabilities for one image, in the chapter's order."""

    probabilities: dict[str, tuple[float, float]]  # net -> (P(airplane), P(bird))
    milliseconds: float = 0.0

    def prediction(self, net: str) -> str:
        p = self.probabilities[net]
        return CIFAR2_CLASSES[int(p[1] > p[0])]

    @property
    def votes(self) -> dict[str, int]:
        counts = dict.fromkeys(CIFAR2_CLASSES, 0)
        for net in self.probabilities:
            counts[self.prediction(net)] += 1
        return counts

    @property
    def winner(self) -> str:
        """The majority; a tie goes to the mean probability."""
        votes = self.votes
        if votes["airplane"] != votes["bird"]:
            return max(votes, key=votes.get)
        mean_bird = np.mean([p[1] for p in self.probabilities.values()]) if self.probabilities else 0.0
        return CIFAR2_CLASSES[int(mean_bird > 0.5)]


def prepare_for_serving(nets: list[LoadedNet]) -> list[LoadedNet]:
    """Each net with its serving copy, tried once on a blank image; a net that fails either is listed as unavailable,
    so that one broken net never takes the others down."""
    from convhub.graph import for_inference  # torch.fx: not needed before the nets load

    blank = torch.zeros(1, 3, 32, 32)
    prepared = []
    for net in nets:
        if net.available:
            try:
                net.served = for_inference(net.model)
                probabilities([net], blank)
            except Exception as error:  # noqa: BLE001
                net = LoadedNet(net.name, None, f"unavailable — it loaded ({net.source}) but cannot run: "
                                                f"{describe_failure(error)}")
        prepared.append(net)
    return prepared


@torch.inference_mode()
def probabilities(nets: list[LoadedNet], x: torch.Tensor) -> dict[str, torch.Tensor]:
    """Each available net's softmax for a batch x (N, 3, 32, 32): {net: (N, 2)}."""
    channels_last = x.contiguous(memory_format=torch.channels_last)
    return {net.name: _numbers(net.name, net.forward(channels_last).softmax(1)) for net in nets if net.available}


def _numbers(name: str, p: torch.Tensor) -> torch.Tensor:
    """Rows that are not numbers (weights that overflow on this image; convhub's load-time check tries two images)
    become undecided, 0.5 each, and the server's log says so: no visitor sees 'nan%', and the vote stays a vote."""
    bad = ~p.isfinite().all(1)
    if bad.any():
        print(f"{name}: its output for {int(bad.sum())} image(s) is not a number; shown as 0.5 / 0.5",
              file=sys.stderr, flush=True)
        p = p.clone()
        p[bad] = 0.5
    return p


def classify_batch(nets: list[LoadedNet], x: torch.Tensor) -> list[Verdict]:
    """One forward pass per net for the whole batch: concurrent requests share it (Gradio's batching)."""
    started = time.perf_counter()
    probs = probabilities(nets, x)
    milliseconds = (time.perf_counter() - started) * 1000 / max(len(x), 1)
    return [Verdict({name: (float(p[i, 0]), float(p[i, 1])) for name, p in probs.items()}, milliseconds)
            for i in range(len(x))]


class SharedBatches:
    """Concurrent requests share one forward pass per net: a request that finds no batch running takes everything
    queued so far (up to max_batch images) and has it computed for all; the others wait for their answers or for
    their turn. Each request decodes its own image first, so a bad upload fails alone. On 2 cores the 100-block net
    costs about half as much per image in a batch of 16 as alone.

    The batches are computed on one thread of their own, whichever request leads: oneDNN keeps native buffers per
    thread and batch size, and batches of changing sizes spread over Gradio's 40 worker threads grew the server by
    300 MB (on one thread: 18 MB, flat)."""

    def __init__(self, compute, max_batch: int = 32):
        self.compute, self.max_batch = compute, max_batch
        self._thread = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="convhub-batches")
        self._queue: list[dict] = []
        self._busy = False
        self.sizes: collections.Counter[int] = collections.Counter()  # batch size -> how many batches had it
        self._turn = threading.Condition()

    def __call__(self, x: torch.Tensor):
        item = {"x": x, "done": False}
        with self._turn:
            self._queue.append(item)
            while self._busy and not item["done"]:
                self._turn.wait()
            if item["done"]:
                return _answer(item)
            self._busy = True
            # The leader's own image always goes in: with more than max_batch waiting, it may not be among the first.
            others = [waiting for waiting in self._queue if waiting is not item]
            batch, self._queue = [item, *others[:self.max_batch - 1]], others[self.max_batch - 1:]
            self.sizes[len(batch)] += 1
        try:
            results = self._thread.submit(self.compute, torch.cat([i["x"] for i in batch])).result()
            for i, result in zip(batch, results):
                i["result"] = result
        except Exception as error:  # noqa: BLE001 - handed to every request of the batch
            for i in batch:
                i["error"] = error
        finally:
            with self._turn:
                for i in batch:
                    i["done"] = True
                self._busy = False
                self._turn.notify_all()
        return _answer(item)


def _answer(item: dict):
    if "error" in item:
        raise item["error"]
    return item["result"]


def classify(nets: list[LoadedNet], image, batches: SharedBatches | None = None) -> tuple[Verdict, torch.Tensor]:
    """Every available net on one image, and the 32x32 input they saw; with ``batches``, in a forward pass
    shared with concurrent requests."""
    x = load_input(image)
    return (batches(x) if batches is not None else classify_batch(nets, x)[0]), x


# --- inside a net ---------------------------------------------------------------------------------------------------


@dataclass
class KernelLayer:
    name: str  # "conv1", "block 3"
    weights: torch.Tensor  # (out, in, k, k): every kernel (the figure shows at most KERNEL_ROWS rows of them)
    out_channels: int
    in_channels: int
    params: int  # the conv's own (kernels and bias)
    batch_norm_params: int = 0  # the batch norm after it, which the layer table counts with it

    @property
    def caption(self) -> str:
        k = self.weights.shape[-1]
        norm = f" (+{self.batch_norm_params:,} in its batch norm)" if self.batch_norm_params else ""
        return (f"{self.name}: {self.out_channels} kernels of {k}×{k} over {self.in_channels} input channels, "
                f"{self.params:,} parameters{norm}")


def _evenly_spaced(items: list, k: int) -> list:
    """At most k items, evenly spaced, always the first and the last."""
    if len(items) <= k:
        return items
    return [items[i] for i in sorted({round(j * (len(items) - 1) / (k - 1)) for j in range(k)})]


def kernel_layers(model: torch.nn.Module) -> list[KernelLayer]:
    """The conv layers' kernels (at most MAX_KERNEL_LAYERS layers, evenly spaced, first and last kept)."""
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    stages = [s for s in anatomy.stages(model) if s.params and s.is_map]
    has_batch_norm = any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())
    layers = []
    for conv, stage in zip(convs, stages):
        params = sum(p.numel() for p in conv.parameters())
        # A stage's parameters past its conv's are its batch norm's: the only other layer with any in these nets
        extra = stage.params - params if has_batch_norm else 0
        layers.append(KernelLayer(stage.name.split(" →")[0], conv.weight.detach(), conv.out_channels,
                                  conv.in_channels, params, extra))
    return _evenly_spaced(layers, MAX_KERNEL_LAYERS)


def unit_templates(model: torch.nn.Module, n: int = 16) -> torch.Tensor:
    """The fully connected net's first-layer weights of n units as 32x32 images (summed over R, G, B)."""
    first = next(m for m in model.modules() if isinstance(m, torch.nn.Linear))
    return first.weight.detach()[:n].view(n, 3, 32, 32).sum(1)


def feature_maps(model: torch.nn.Module, x: torch.Tensor) -> list[tuple[anatomy.Stage, torch.Tensor]]:
    """Each feature-map stage's activations for one image (at most MAX_MAP_STAGES stages, MAPS_PER_STAGE
    channels each). A deep net's maps are of the blocks whose kernels are shown (they were of other blocks)."""
    stages = anatomy.map_stages(model)
    if len(stages) > MAX_MAP_STAGES:
        kernels = {layer.name for layer in kernel_layers(model)}
        stages = [s for s in stages if not s.name.startswith("block ") or s.name in kernels]
    stages = _evenly_spaced(stages, MAX_MAP_STAGES)
    outputs = anatomy.activations(model, x, [s.name for s in stages])
    return [(s, outputs[s.name][0, :MAPS_PER_STAGE]) for s in stages]


# --- translation, receptive fields, weight sharing ------------------------------------------------------------------


@torch.inference_mode()
def translation(nets: list[LoadedNet], x: torch.Tensor, shifts=SHIFTS) -> dict[str, torch.Tensor]:
    """Each net's probabilities for the image shifted horizontally by each of ``shifts`` pixels: {net: (S, 2)}."""
    batch = torch.cat([translate(x, dx) for dx in shifts])
    return probabilities(nets, batch)


@dataclass
class Moved:
    """A net's first layer on an image and on the image shifted by ``shift`` pixels (+ is right)."""
    stage: str  # as the book names it: "conv1 → tanh", "fc1 → tanh"
    shift: int
    before: torch.Tensor  # (C, H, W) for a conv layer, (units,) for a fully connected one
    after: torch.Tensor
    agreement: float  # Pearson r of after and before: a map's moved back into place first, a unit's as it is
    in_place: float  # the same, a map not moved back: how much the shift changed it position by position

    @property
    def is_map(self) -> bool:
        return self.before.dim() == 3


@torch.inference_mode()
def what_moves(model: torch.nn.Module, x: torch.Tensor, shifts: Sequence[int]) -> list[Moved]:
    """What each shift does inside a net's first layer, in one forward pass. A conv layer applies the same kernels at
    every position, so the shifted image's map is the original's map, moved (equivariance); a fully connected
    layer's units have no positions to move, and respond otherwise."""
    first = anatomy.stages(model)[0]
    batch = torch.cat([x, *(translate(x, shift) for shift in shifts)])
    out = anatomy.activations(model, batch, [first.name])[first.name].float()
    before, width = out[0], out.shape[-1]
    moved = []
    for shift, after in zip(shifts, out[1:]):
        in_place = _correlation(after, before)
        if first.is_map:
            moved_back = after[..., max(shift, 0):width + min(shift, 0)]
            original = before[..., max(-shift, 0):width - max(shift, 0)]
            # Not the columns at either end, where a kernel reads the zero padding on one side and pixels on the other
            agreement = _correlation(moved_back[..., 1:-1], original[..., 1:-1])
        else:
            agreement = in_place
        moved.append(Moved(first.name, shift, before, after, agreement, in_place))
    return moved


def _correlation(a: torch.Tensor, b: torch.Tensor) -> float:
    if torch.allclose(a, b, atol=1e-6):  # also where both are flat (a blank image), whose r is undefined
        return 1.0
    r = torch.corrcoef(torch.stack([a.flatten(), b.flatten()]))[0, 1]
    return float(r) if torch.isfinite(r) else 0.0


def receptive_field(model: torch.nn.Module, stage_name: str, y: int, x: int) -> dict:
    """The input pixels a unit (y, x) of a stage can see: its box, size and 32x32 mask."""
    stage = anatomy.stage(model, stage_name)
    if not stage.is_map:
        raise BadImageError(f"{stage_name} is fully connected: each of its units sees all 32×32 pixels")
    _, height, width = stage.shape
    if not (0 <= y < height and 0 <= x < width):
        raise BadImageError(f"{stage_name} is {height}×{width}: unit ({y}, {x}) is outside it")
    top, left, bottom, right = stage.field.box(y, x)
    return {"stage": stage.name, "stage_shape": list(stage.shape), "unit": [y, x],
            "box": {"top": top, "left": left, "bottom": bottom, "right": right},
            "size": [bottom - top + 1, right - left + 1], "field_size": int(stage.field.size),
            "mask": stage.field.mask(y, x).int().tolist()}


def sharing_counts(side: int, in_channels: int, out_channels: int, kernel: int) -> tuple[int, int]:
    """Parameters of Conv2d(in, out, kernel, padding=kernel//2) on a side x side image, and of the Linear layer
    that maps the same inputs to the same number of outputs (out x side x side)."""
    conv = out_channels * (in_channels * kernel * kernel + 1)
    inputs, outputs = in_channels * side * side, out_channels * side * side
    return conv, inputs * outputs + outputs


# --- compare ---------------------------------------------------------------------------------------------------------


def compare_rows(nets: list[LoadedNet]) -> list[dict]:
    """Size and accuracy of every net (trained or not), from the models and their cards."""
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
    return rows


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(float(value), 4)
