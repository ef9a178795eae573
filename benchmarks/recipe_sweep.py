"""Compare recipe variants for one net over several seeds: validation accuracy, epochs and seconds, one JSON line each.

A recipe change is worth keeping only when it wins across seeds, and each seed also draws its own validation split,
so a variant cannot win by fitting the one split the zoo reports on:

    python benchmarks/recipe_sweep.py --model net_res_deep --seeds 1,2 --set "" --set lr=0.1 --set epochs=40,lr=0.1
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import fields
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # a checkout without installing
import convhub  # noqa: E402
from training import engine  # noqa: E402
from training.data import load_cifar2  # noqa: E402
from training.recipes import Recipe, recipe_for  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
FIELD_TYPES = {f.name: f.type for f in fields(Recipe)}


def parse_overrides(spec: str) -> dict:
    """"lr=0.1,epochs=40" -> {"lr": 0.1, "epochs": 40}, typed like the Recipe's fields."""
    overrides = {}
    for item in filter(None, (part.strip() for part in spec.split(","))):
        key, _, value = item.partition("=")
        if key not in FIELD_TYPES or key == "name":
            raise SystemExit(f"error: unknown recipe field {key!r}; fields: {', '.join(sorted(FIELD_TYPES))}")
        kind = FIELD_TYPES[key]
        if "bool" in kind:
            overrides[key] = value.lower() in ("1", "true", "yes")
        elif value.lower() == "none":
            overrides[key] = None
        elif "int" in kind and "float" not in kind:
            overrides[key] = int(value)
        elif "float" in kind:
            overrides[key] = float(value)
        else:
            overrides[key] = value
    return overrides


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, choices=list(convhub.ZOO))
    parser.add_argument("--data", default=str(REPO.parent / "shared" / "data" / "cifar2" / "train"))
    parser.add_argument("--seeds", default="1,2", help="comma-separated; each seed also draws its validation split")
    parser.add_argument("--set", dest="variants", action="append", default=[],
                        help="recipe overrides for one variant, e.g. lr=0.1,epochs=40 (repeatable); \"\" runs the "
                             "recipe as it stands")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--precision", choices=("auto", "fp32", "bf16"))
    parser.add_argument("--target", type=float, default=0.89,
                        help="also report the epoch and seconds at which validation accuracy first reaches this")
    args = parser.parse_args(argv)

    device = engine.pick_device(args.device)
    variants = [parse_overrides(spec) for spec in args.variants] or [{}]
    for seed in [int(s) for s in args.seeds.split(",")]:
        data = load_cifar2(args.data, seed=seed)
        for overrides in variants:
            recipe = recipe_for(args.model, "default", **overrides)
            torch.manual_seed(seed)
            model = convhub.create(args.model)
            started = time.perf_counter()
            result = engine.train(model, data, recipe, device=device, precision=args.precision, seed=seed,
                                  progress=False)
            history = [row["val_accuracy"] for row in result.history]
            print(json.dumps({"model": args.model, "overrides": overrides, "seed": seed,
                              "val_accuracy": history[-1], "best_val_accuracy": max(history),
                              "epochs": recipe.epochs, "seconds": round(time.perf_counter() - started, 1),
                              "target": args.target, "epochs_to_target": result.epochs_to(args.target),
                              "seconds_to_target": result.seconds_to(args.target),
                              "device": str(device)}), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
