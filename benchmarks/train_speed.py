"""Training speed on this machine: the book's recipe vs ours for `net`, time to a target validation accuracy,
then the throughput of every zoo net under our recipe.

    .venv/bin/python benchmarks/train_speed.py                       # ../shared/data/cifar2/train, target 0.89
    .venv/bin/python benchmarks/train_speed.py --data DIR --max-seconds 120 --skip-per-net

0. The book's own notebook loop, as chapter 8 writes it: a DataLoader over normalized float tensors, batch 64,
   shuffled, plain SGD lr 1e-2, one epoch of `net`; images/s only (the baseline a reader of the book starts from).
1. `net` with the book's recipe (recipe_for("net", "book"): plain SGD lr 1e-2, batch 64, no augmentation, fp32 as
   the book ran it) until validation accuracy reaches --target, at most its 100 epochs or --max-seconds.
2. `net` with our default recipe (precision auto: bf16 autocast where the hardware has it), stopping at --target.
3. Unless --skip-per-net: one epoch of our default recipe for each zoo net, images/s.

Both runs use the same data and the same seeded, class-balanced validation split as `python -m training train`
(--val-fraction 0.1, --seed 0), and the same initial weights (torch.manual_seed(seed) before the net is built).
Seconds are wall-clock from the first training step, and include the per-epoch validation pass; images/s counts
training steps only (engine.TrainResult.images_per_second).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
for path in (REPO, REPO / "benchmarks"):  # runs from a checkout without installing
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

import convhub  # noqa: E402
import torch  # noqa: E402
from training import engine  # noqa: E402
from training.data import load_cifar2  # noqa: E402
from machine import describe, others_cpu_share  # noqa: E402
from training.recipes import recipe_for  # noqa: E402


def notebook_run(data, *, seed: int) -> float:
    """One epoch of the book's own training loop for `net` (DataLoader, batch 64, SGD 1e-2, fp32): images/s."""
    from convhub.preprocessing import normalize_uint8
    from torch.utils.data import DataLoader, TensorDataset

    torch.manual_seed(seed)
    model = convhub.create("net").train()
    loader = DataLoader(TensorDataset(normalize_uint8(data.train.images), data.train.labels), batch_size=64,
                        shuffle=True)
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-2)
    loss_fn = torch.nn.CrossEntropyLoss()
    started, seen = time.perf_counter(), 0
    for imgs, labels in loader:
        loss = loss_fn(model(imgs), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        seen += len(imgs)
    return seen / (time.perf_counter() - started)


def book_run(data, *, target: float, max_seconds: float, seed: int, device, progress: bool):
    """The book's recipe, one engine.train call per epoch so that --max-seconds can stop it between epochs.

    Splitting the run into one-epoch calls changes nothing for this recipe: plain SGD without momentum or weight
    decay keeps no optimizer state, its learning rate is constant and it does not augment, so consecutive calls
    continue the same run (each epoch's shuffle is drawn from its own seed, seed + epoch).
    """
    recipe = recipe_for("net", "book")
    if recipe.momentum or recipe.weight_decay or recipe.schedule != "constant" or recipe.augment:
        raise SystemExit(f"the book recipe changed ({recipe.describe()}): it can no longer be run epoch by epoch")
    torch.manual_seed(seed)
    model = convhub.create("net")
    one_epoch = replace(recipe, epochs=1)
    images_per_epoch = (len(data.train) // recipe.batch_size) * recipe.batch_size
    result = engine.TrainResult()
    train_seconds = 0.0
    for epoch in range(1, recipe.epochs + 1):
        part = engine.train(model, data, one_epoch, device=device, precision="fp32", seed=seed + epoch,
                            progress=False)
        row = {**part.history[0], "epoch": epoch, "seconds": result.seconds + part.history[0]["seconds"]}
        result.history.append(row)
        result.seconds += part.seconds
        train_seconds += images_per_epoch / part.images_per_second
        if progress:
            print(f"  book epoch {epoch:3d}  loss {row['train_loss']:.4f}  val {row['val_accuracy']:.4f}  "
                  f"{row['seconds']:.1f}s", flush=True)
        if row["val_accuracy"] >= target or result.seconds >= max_seconds:
            break
    result.images_per_second = len(result.history) * images_per_epoch / max(train_seconds, 1e-9)
    return recipe, result


def our_run(data, *, target: float, seed: int, device, precision: str, progress: bool):
    """Our default recipe in one engine.train call (its one-cycle schedule spans the whole run), stopping at target."""
    recipe = recipe_for("net", "default")
    torch.manual_seed(seed)
    model = convhub.create("net")
    result = engine.train(model, data, recipe, device=device, precision=precision, seed=seed, progress=progress,
                          stop_at=target)
    return recipe, result


def per_net(data, names, *, seed: int, device, precision: str) -> list[dict]:
    rows = []
    for name in names:
        recipe = recipe_for(name, "default", epochs=1)
        torch.manual_seed(seed)
        model = convhub.create(name)
        result = engine.train(model, data, recipe, device=device, precision=precision, seed=seed, progress=False)
        rows.append({"model": name, "params": model.num_params, "images_per_second": result.images_per_second,
                     "epoch_seconds": result.seconds, "val_accuracy_after_1_epoch": result.history[-1]["val_accuracy"]})
        print(f"  {name}: {rows[-1]['images_per_second']:,.0f} images/s ({result.seconds:.1f} s)", flush=True)
    return rows


def summary(label: str, recipe, precision: str, result, target: float) -> dict:
    return {
        "run": label,
        "recipe": recipe.describe(),
        "precision": precision,
        "reached": result.seconds_to(target) is not None,
        "seconds_to_target": result.seconds_to(target),
        "epochs_to_target": result.epochs_to(target),
        "epochs_run": len(result.history),
        "seconds_run": result.seconds,
        "best_val_accuracy": max(row["val_accuracy"] for row in result.history),
        "images_per_second": result.images_per_second,
    }


def markdown(env: dict, target: float, runs: list[dict], ratio: str, nets: list[dict]) -> str:
    lines = [
        f"### Training speed: `net` to {target:.2f} validation accuracy",
        "",
        f"{env['device']}; torch {env['torch']}; {env['n_train']:,} train / {env['n_val']:,} val images "
        f"({env['data']})",
        "",
        f"| run | precision | reached {target:.2f} | seconds to {target:.2f} | epochs to {target:.2f} | "
        "epochs run | best val acc | images/s |",
        "|---|---|---|---:|---:|---:|---:|---:|",
    ]
    for r in runs:
        seconds = f"{r['seconds_to_target']:.1f}" if r["reached"] else f"> {r['seconds_run']:.1f}"
        epochs = str(r["epochs_to_target"]) if r["reached"] else f"> {r['epochs_run']}"
        lines.append(f"| {r['run']} | {r['precision']} | {'yes' if r['reached'] else 'no'} | {seconds} | {epochs} | "
                     f"{r['epochs_run']} | {r['best_val_accuracy']:.4f} | {r['images_per_second']:,.0f} |")
    lines += ["", f"Time to {target:.2f}, book / ours: **{ratio}**; images/s, ours / book recipe: "
              f"**{throughput_ratio(*runs)}**"]
    if env.get("notebook_images_per_second"):
        lines += ["", f"The book's own notebook loop (DataLoader, batch 64, fp32), same images: "
                      f"{env['notebook_images_per_second']:,.0f} images/s"]
    if (env.get("others_cpu_share") or 0) >= 0.005:
        lines += ["", f"Other processes used {env['others_cpu_share']:.0%} of the CPUs during the runs."]
    if nets:
        lines += ["", "| model | params | images/s (1 epoch, default recipe) | val acc after 1 epoch |",
                  "|---|---:|---:|---:|"]
        lines += [f"| {n['model']} | {n['params']:,} | {n['images_per_second']:,.0f} | "
                  f"{n['val_accuracy_after_1_epoch']:.4f} |" for n in nets]
    return "\n".join(lines) + "\n"


def speed_ratio(book: dict, ours: dict) -> str:
    if not ours["reached"]:
        return f"n/a (ours did not reach the target in {ours['epochs_run']} epochs)"
    if book["reached"]:
        return f"{book['seconds_to_target'] / ours['seconds_to_target']:.1f}x"
    return f">= {book['seconds_run'] / ours['seconds_to_target']:.1f}x (the book's run stopped before the target)"


def throughput_ratio(book: dict, ours: dict) -> str:
    return f"{ours['images_per_second'] / book['images_per_second']:.2f}x" if book["images_per_second"] else "n/a"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default=str(REPO.parent / "shared" / "data" / "cifar2" / "train"),
                        help="any source `python -m training train --data` accepts "
                             "(default: ../shared/data/cifar2/train)")
    parser.add_argument("--target", type=float, default=0.89, help="validation accuracy to reach (the book's `net`)")
    parser.add_argument("--max-seconds", type=float, default=600.0,
                        help="stop the book's run after the epoch that crosses this many seconds (it also stops "
                             "after its 100 epochs)")
    parser.add_argument("--skip-per-net", action="store_true", help="skip the images/s of every zoo net")
    parser.add_argument("--models", default=",".join(convhub.ZOO), help="zoo nets for the per-net throughput")
    parser.add_argument("--device", default="cpu", help="cpu (default: this benchmark is about the CPU), cuda, auto")
    parser.add_argument("--precision", choices=("auto", "fp32", "bf16"), default="auto", help="for our recipe")
    parser.add_argument("--threads", type=int, help="torch.set_num_threads (default: torch's choice)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--val-fraction", type=float, default=0.1)
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--quiet", action="store_true", help="no per-epoch lines")
    args = parser.parse_args(argv)

    if args.threads:
        torch.set_num_threads(args.threads)
    device = engine.pick_device(args.device)
    names = [n.strip() for n in args.models.split(",") if n.strip()]
    unknown = [n for n in names if n not in convhub.ZOO]
    if unknown:
        parser.error(f"unknown model(s) {', '.join(unknown)}; the zoo has: {', '.join(convhub.ZOO)}")
    if not Path(args.data).exists() and not args.data.startswith("hf:"):
        parser.error(f"no data at {args.data} (pass --data)")

    started = time.perf_counter()
    try:
        data = load_cifar2(args.data, val_fraction=args.val_fraction, seed=args.seed)
    except convhub.ConvHubError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    machine, machine_line = describe(device)
    env = {
        "device": machine_line, "machine": machine,
        "torch": torch.__version__, "data": data.source, "n_train": len(data.train), "n_val": len(data.val),
        "validation": data.val_source, "bf16": engine.bf16_supported(device),
    }
    print(f"data: {data.source}: {len(data.train)} train, {len(data.val)} val ({data.val_source}), "
          f"loaded in {time.perf_counter() - started:.1f} s", flush=True)
    print(f"device: {env['device']}; our precision {args.precision} (bf16 native: {env['bf16']})", flush=True)

    with others_cpu_share() as load:
        notebook = notebook_run(data, seed=args.seed) if device.type == "cpu" else None
        book_recipe, book, our_recipe, ours = timed_runs(data, args, device)
    runs = [summary("book", book_recipe, "fp32", book, args.target),
            summary("ours (default)", our_recipe, args.precision, ours, args.target)]
    env["notebook_images_per_second"] = notebook
    env["others_cpu_share"] = load.share
    for r in runs:
        when = (f"{r['seconds_to_target']:.1f} s, epoch {r['epochs_to_target']}" if r["reached"]
                else f"not reached in {r['epochs_run']} epochs / {r['seconds_run']:.1f} s")
        print(f"{r['run']}: {args.target} val accuracy: {when}; {r['images_per_second']:,.0f} images/s", flush=True)
    ratio = speed_ratio(*runs)
    print(f"time to {args.target}, book / ours: {ratio}; images/s, ours / book recipe: {throughput_ratio(*runs)}",
          flush=True)
    if notebook:
        print(f"the book's notebook loop (DataLoader, batch 64): {notebook:,.0f} images/s", flush=True)
    if (load.share or 0) >= 0.05:
        print(f"warning: other processes used {load.share:.0%} of the CPUs meanwhile: figures are low", flush=True)

    nets = []
    if not args.skip_per_net:
        print("\nimages/s, one epoch of our default recipe per zoo net", flush=True)
        nets = per_net(data, names, seed=args.seed, device=device, precision=args.precision)

    table = markdown(env, args.target, runs, ratio, nets)
    print("\n" + table)
    if args.json:
        args.json.write_text(json.dumps({"env": env, "target": args.target, "runs": runs, "ratio": ratio,
                                         "per_net": nets}, indent=2) + "\n")
    return 0


def timed_runs(data, args, device):
    print(f"\nbook recipe, fp32, until {args.target} (at most 100 epochs / {args.max_seconds:.0f} s)", flush=True)
    book_recipe, book = book_run(data, target=args.target, max_seconds=args.max_seconds, seed=args.seed,
                                 device=device, progress=not args.quiet)
    print(f"\nour default recipe, precision {args.precision}, until {args.target}", flush=True)
    our_recipe, ours = our_run(data, target=args.target, seed=args.seed, device=device, precision=args.precision,
                               progress=not args.quiet)
    return book_recipe, book, our_recipe, ours


if __name__ == "__main__":
    sys.exit(main())
