"""Space inference latency: all nets on one image, after warm-up, on this CPU (target: <= 100 ms in total).

    python benchmarks/space_latency.py [--image PATH] [--runs 50] [--threads N]

Uses the weights the Space would load (CONVHUB_MODELS_DIR, the Hub, or space/models) and the same code path as the
/classify endpoint (preprocessing included). Prints per-net and total latency; asserts nothing.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "space"), str(ROOT)]

import inference  # noqa: E402
from zoo_loader import load_zoo  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--image", default=str(ROOT / "space" / "examples" / "cifar_bird_0001.jpg"))
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    nets = [net for net in load_zoo() if net.available]
    x = inference.load_input(args.image)
    per_net = {net.name: [] for net in nets}
    totals, preprocess = [], []
    with torch.inference_mode():
        for run in range(args.runs + 5):  # the first 5 are warm-up
            start = time.perf_counter()
            inference.load_input(args.image)
            prep = time.perf_counter() - start
            for net in nets:
                t = time.perf_counter()
                net.model(x)
                if run >= 5:
                    per_net[net.name].append((time.perf_counter() - t) * 1000)
            if run >= 5:
                preprocess.append(prep * 1000)
                totals.append((time.perf_counter() - start) * 1000)
        start = time.perf_counter()
        for _ in range(args.runs):
            inference.classify(nets, args.image)
        classify_ms = (time.perf_counter() - start) * 1000 / args.runs

    print(f"{len(nets)} nets, {args.runs} runs after warm-up, {torch.get_num_threads()} torch threads\n")
    print("| net | median ms | p90 ms |\n|---|---:|---:|")
    for name, times in per_net.items():
        print(f"| {name} | {statistics.median(times):.2f} | {statistics.quantiles(times, n=10)[-1]:.2f} |")
    print(f"| preprocessing | {statistics.median(preprocess):.2f} | {statistics.quantiles(preprocess, n=10)[-1]:.2f} |")
    print(f"| **all nets + preprocessing** | **{statistics.median(totals):.2f}** | {statistics.quantiles(totals, n=10)[-1]:.2f} |")
    print(f"\ninference.classify (what /classify runs), mean: {classify_ms:.2f} ms — target <= 100 ms")


if __name__ == "__main__":
    main()
