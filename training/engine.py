"""The training loop and evaluation: whole batches of in-memory uint8 images, augmented on the device."""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from convhub.errors import ConvHubError
from convhub.graph import for_inference, pool_before_activation
from convhub.models import ResBlock
from convhub.preprocessing import normalize_uint8
from tqdm.auto import tqdm

from .data import CIFAR2, Split, crop_and_flip, pad_for_augment
from .recipes import Recipe


def pick_device(requested: str = "auto") -> torch.device:
    """The device named by ``--device``, checked before any work: a typo or a missing GPU is one clear line."""
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(requested)
    except (RuntimeError, TypeError):
        raise ConvHubError(f"unknown device {requested!r}: use auto, cpu, cuda or cuda:N") from None
    if device.type not in ("cpu", "cuda"):
        raise ConvHubError(f"device {requested!r} is not supported: use auto, cpu, cuda or cuda:N")
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ConvHubError(f"device {requested!r}: torch {torch.__version__} sees no CUDA GPU here "
                               "(use --device cpu or auto)")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ConvHubError(f"device {requested!r}: there are only {torch.cuda.device_count()} CUDA GPU(s)")
    return device


def bf16_supported(device: torch.device) -> bool:
    """bf16 autocast pays off on CUDA and on CPUs with native bf16 (AVX512-BF16/AMX); elsewhere it is slower."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    return device.type == "cpu" and torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported()


def resolve_precision(device: torch.device, precision: str) -> str:
    """"bf16" or "fp32": what "auto" means on this hardware (bf16 autocast only where it is native)."""
    return "bf16" if precision == "bf16" or (precision == "auto" and bf16_supported(device)) else "fp32"


def autocast(device: torch.device, precision: str):
    if resolve_precision(device, precision) == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def synchronize(device: torch.device) -> None:
    """Wait for queued GPU work: CUDA runs asynchronously, so a clock read without this measures only the launches."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _prepare(images: torch.Tensor) -> torch.Tensor:
    return normalize_uint8(images).contiguous(memory_format=torch.channels_last)


# Images per forward pass when evaluating. Small batches keep a layer's activations in the CPU's caches: on one AVX2
# thread, batches of 100 ran net_res_deep100 1.6x as fast as batches of 1000, net_width 1.7x (for_inference copies).
EVAL_BATCH = 100


@torch.inference_mode()
def predict_labels(model: torch.nn.Module, images: torch.Tensor, batch_size: int = EVAL_BATCH) -> torch.Tensor:
    """Predicted labels in eval mode (the book forgot eval(); we do not), from the net's inference copy (batch norm
    folded into the convs: graph.for_inference), as the Space serves it."""
    was_training = model.training
    device = next(model.parameters()).device
    served = for_inference(model)
    preds = [served(_prepare(images[i:i + batch_size].to(device))).argmax(1).cpu()
             for i in range(0, len(images), batch_size)]
    model.train(was_training)
    return torch.cat(preds) if preds else torch.empty(0, dtype=torch.int64)


def metrics(model: torch.nn.Module, split: Split, class_names, predictions: torch.Tensor | None = None) -> dict:
    """Accuracy, per-class accuracy and confusion matrix (rows: true class, columns: predicted). ``predictions``:
    the model's labels for ``split`` where they are known already (train's last validation pass)."""
    preds = predict_labels(model, split.images) if predictions is None else predictions
    n = len(class_names)
    confusion = torch.bincount(split.labels * n + preds, minlength=n * n).view(n, n)
    # None (JSON null), not NaN, for a class with no images: `evaluate --json` must stay valid JSON.
    # Counts divided in Python: exact decimals (0.97), not float32's (0.9700000286102295) in `evaluate --json`.
    per_class = {name: int(confusion[i, i]) / int(confusion[i].sum()) if confusion[i].sum() else None
                 for i, name in enumerate(class_names)}
    return {
        "accuracy": int((preds == split.labels).sum()) / len(preds) if len(preds) else None,
        "per_class_accuracy": per_class,
        "confusion_matrix": confusion.tolist(),
        "n_images": len(split),
    }


@dataclass
class TrainResult:
    history: list[dict] = field(default_factory=list)  # one row per epoch: loss, accuracies, elapsed seconds
    seconds: float = 0.0
    images_per_second: float = 0.0
    # the last validation pass's labels, from the weights training ended with: the card's metrics need not run it
    # again (5.5 s for net_res_deep100 on one AVX2 core)
    val_predictions: torch.Tensor | None = None

    def seconds_to(self, accuracy: float) -> float | None:
        return next((row["seconds"] for row in self.history if row["val_accuracy"] >= accuracy), None)

    def epochs_to(self, accuracy: float) -> int | None:
        return next((row["epoch"] for row in self.history if row["val_accuracy"] >= accuracy), None)


def init_residual_blocks(model: torch.nn.Module, bn_weight: float) -> int:
    """Restart every ResBlock's BN weight at ``bn_weight``; returns how many blocks there were."""
    blocks = [m for m in model.modules() if isinstance(m, ResBlock)]
    for block in blocks:
        torch.nn.init.constant_(block.batch_norm.weight, bn_weight)
    return len(blocks)


WHITENING_IMAGES = 2000  # 1.8 million patches: plenty for a 27x27 covariance, in a fraction of a second


@torch.no_grad()
def whiten_first_conv(model: torch.nn.Module, images: torch.Tensor, pairs: bool = False,
                      eps: float = 5e-4) -> torch.nn.Conv2d | None:
    """Start the first convolution as a whitening of ``images``' patches (uint8, N x C x H x W): its filters are the
    patches' principal directions, the largest variance first, each scaled to unit variance. With ``pairs`` half of
    the filters are directions and the other half their negatives, so that a ReLU after it keeps both signs. Filters
    left over keep their initialisation; the biases centre each output. What the first epochs would otherwise spend
    learning is there from the first step (recipes.py has the measurements). Returns the convolution, or None where
    the net has none that reads the images (fc)."""
    conv = next((m for m in model.modules() if isinstance(m, torch.nn.Conv2d)), None)
    if conv is None or conv.in_channels != images.shape[1] or conv.groups != 1 or not len(images):
        return None
    size = conv.in_channels * conv.kernel_size[0] * conv.kernel_size[1]
    products = torch.zeros(size, size, dtype=torch.float64, device=images.device)
    sums = torch.zeros(size, dtype=torch.float64, device=images.device)
    count = 0
    for start in range(0, min(len(images), WHITENING_IMAGES), 500):  # in chunks: all the patches would take GBs
        patches = F.unfold(normalize_uint8(images[start:start + 500]), conv.kernel_size, dilation=conv.dilation,
                           stride=conv.stride)  # N x size x positions
        products += torch.bmm(patches, patches.transpose(1, 2)).sum(0).double()
        sums += patches.sum((0, 2)).double()
        count += patches.shape[0] * patches.shape[2]
    mean = sums / count
    values, vectors = torch.linalg.eigh(products / count - torch.outer(mean, mean))  # ascending eigenvalues
    n = min(conv.out_channels // 2 if pairs else conv.out_channels, size)
    filters = (vectors[:, -n:] / (values[-n:].clamp(min=0) + eps).sqrt()).T.flip(0)  # the largest first
    weight = torch.cat([filters, -filters]) if pairs else filters
    conv.weight[:len(weight)] = weight.view(len(weight), *conv.weight.shape[1:]).to(conv.weight.dtype)
    if conv.bias is not None:
        conv.bias[:len(weight)] = -(weight @ mean).to(conv.bias.dtype)
    return conv


def one_cycle(optimizer: torch.optim.Optimizer, recipe: Recipe, total_steps: int):
    """Warm up linearly to recipe.lr over recipe.warmup_fraction of the steps, then anneal linearly to ~0. The warm-up
    is at least 2 steps (OneCycleLR divides by zero when it would last exactly one, as 5% of 20 steps does); a run of
    under 3 steps keeps a constant learning rate."""
    if total_steps < 3:
        return None
    warmup = max(recipe.warmup_fraction, 2 / total_steps)
    return torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=recipe.lr, total_steps=total_steps, pct_start=warmup, anneal_strategy="linear",
        cycle_momentum=False, div_factor=10, final_div_factor=100)


def train(model: torch.nn.Module, data: CIFAR2, recipe: Recipe, *, device: torch.device | str = "auto",
          precision: str | None = None, seed: int = 0, progress: bool = True, stop_at: float | None = None) -> TrainResult:
    """Train ``model`` in place with ``recipe``; validation accuracy is measured after every epoch.

    ``stop_at`` ends training at the first epoch whose validation accuracy reaches it (for time-to-accuracy runs).
    """
    device = pick_device(device) if isinstance(device, str) else device
    precision = precision or recipe.precision
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    if recipe.residual_init is not None:
        init_residual_blocks(model, recipe.residual_init)
    model.to(device=device, memory_format=torch.channels_last).train()
    forward = pool_before_activation(model)  # the same function, cheaper: it trains the model's own parameters
    images, labels = data.train.images.to(device), data.train.labels.to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=recipe.lr, momentum=recipe.momentum,
                                nesterov=recipe.nesterov and recipe.momentum > 0, weight_decay=recipe.weight_decay)
    steps_per_epoch = max(1, len(images) // recipe.batch_size)  # drop the ragged last batch (BatchNorm needs >1)
    scheduler = one_cycle(optimizer, recipe, recipe.epochs * steps_per_epoch) if recipe.schedule == "onecycle" else None
    # The clock starts here. The whitening is part of the training time; building the optimizer is not: a process's
    # first torch.optim optimizer imports torch._dynamo, 1.6 s of start-up that a second run does not pay.
    started = time.perf_counter()
    if recipe.whiten_first_conv:
        whiten_first_conv(model, images, pairs=recipe.whiten_first_conv == "pairs")
    padded, size = (pad_for_augment(images), tuple(images.shape[-2:])) if recipe.augment else (None, None)

    result = TrainResult()
    train_time = 0.0
    epochs = tqdm(range(1, recipe.epochs + 1), desc=getattr(model, "model_name", "train"), unit="epoch",
                  disable=None if progress else True, leave=False)  # no bar in a log or pipe
    for epoch in epochs:
        epoch_start = time.perf_counter()
        order = torch.randperm(len(images), generator=generator).to(device)
        loss_sum = torch.zeros((), device=device)
        correct = torch.zeros((), device=device, dtype=torch.int64)
        seen = 0
        for step in range(steps_per_epoch):
            idx = order[step * recipe.batch_size:(step + 1) * recipe.batch_size]
            batch = crop_and_flip(padded, idx, size, generator) if recipe.augment else images[idx]
            targets = labels[idx]
            with autocast(device, precision):
                logits = forward(_prepare(batch))
                loss = F.cross_entropy(logits.float(), targets, label_smoothing=recipe.label_smoothing)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if recipe.grad_clip:
                torch.nn.utils.clip_grad_norm_(model.parameters(), recipe.grad_clip)
            optimizer.step()
            if scheduler is not None:
                scheduler.step()
            loss_sum += loss.detach() * len(idx)
            correct += (logits.argmax(1) == targets).sum()
            seen += len(idx)
        synchronize(device)
        train_time += time.perf_counter() - epoch_start
        if not torch.isfinite(loss_sum):
            raise FloatingPointError(f"training diverged at epoch {epoch} (loss is {loss_sum.item()}): lower --lr")
        result.val_predictions = predict_labels(model, data.val.images)
        val_accuracy = int((result.val_predictions == data.val.labels).sum()) / max(len(data.val), 1)
        row = {"epoch": epoch, "train_loss": loss_sum.item() / seen, "train_accuracy_running": correct.item() / seen,
               "val_accuracy": val_accuracy, "seconds": time.perf_counter() - started}
        result.history.append(row)
        epochs.set_postfix(loss=f"{row['train_loss']:.3f}", val=f"{val_accuracy:.3f}")
        if progress:
            tqdm.write(f"  epoch {epoch:3d}/{recipe.epochs}  loss {row['train_loss']:.4f}  "
                       f"train(aug) {row['train_accuracy_running']:.3f}  val {val_accuracy:.4f}  {row['seconds']:.1f}s")
        if stop_at is not None and val_accuracy >= stop_at:
            break
    synchronize(device)
    result.seconds = time.perf_counter() - started
    result.images_per_second = len(result.history) * steps_per_epoch * recipe.batch_size / max(train_time, 1e-9)
    model.eval()
    return result
