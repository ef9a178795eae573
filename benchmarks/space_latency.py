"""Space inference latency: all nets on one image, after warm-up, on this CPU (target: <= 100 ms in total).

    python benchmarks/space_latency.py [--image PATH ...] [--runs 50] [--threads N]
    python benchmarks/space_latency.py --url http://127.0.0.1:7860/ [--runs 20]    # a running Space, via /classify

In-process (default): the weights the Space would load (CONVHUB_MODELS_DIR, the Hub, or space/models), the same
code path as the /classify endpoint, and the same torch threads per request as the app (CONVHUB_TORCH_THREADS or
--threads override). Prints per-net and total latency for each image, then one line per image with the verdict.
With --url: the time the server reports for all nets, and the client's round trip (HTTP + queue + files included).
Asserts nothing.
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

EXAMPLES = ROOT / "space" / "examples"
DEFAULT_IMAGES = [EXAMPLES / "cifar_bird_0001.jpg", EXAMPLES / "large_photo_plane_2400x1600.jpg"]
BUDGET_MS = 100.0


def p90(values: list[float]) -> float:
    return statistics.quantiles(values, n=10)[-1] if len(values) > 1 else values[0]


def in_process(images: list[Path], runs: int) -> list[str]:
    nets = [net for net in load_zoo() if net.available]
    print(f"{len(nets)} nets, {runs} runs after 5 warm-up runs, {torch.get_num_threads()} torch thread(s)\n")
    verdicts = []
    for image in images:
        per_net: dict[str, list[float]] = {net.name: [] for net in nets}
        preprocess, totals = [], []
        with torch.inference_mode():
            for run in range(runs + 5):
                start = time.perf_counter()
                x = inference.load_input(image)  # decoded and shrunk once, shared by every net
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
        for _ in range(runs):
            inference.classify(nets, image)
        classify_ms = (time.perf_counter() - start) * 1000 / runs

        print(f"## {image.name}\n\n| net | median ms | p90 ms |\n|---|---:|---:|")
        for name, times in per_net.items():
            print(f"| {name} | {statistics.median(times):.2f} | {p90(times):.2f} |")
        nets_only = [t - p for t, p in zip(totals, preprocess)]
        print(f"| all nets | {statistics.median(nets_only):.2f} | {p90(nets_only):.2f} |")
        print(f"| decode + preprocess | {statistics.median(preprocess):.2f} | {p90(preprocess):.2f} |")
        print(f"| **all nets + preprocessing** | **{statistics.median(totals):.2f}** | {p90(totals):.2f} |")
        print(f"\ninference.classify (what /classify runs), mean: {classify_ms:.2f} ms\n")
        verdicts.append(f"{image.name}: all {len(nets)} nets + preprocessing, median {statistics.median(totals):.1f} ms, "
                        f"p90 {p90(totals):.1f} ms — {'within' if p90(totals) <= BUDGET_MS else 'OVER'} "
                        f"the {BUDGET_MS:.0f} ms budget")
    return verdicts


def against_server(url: str, images: list[Path], runs: int) -> list[str]:
    from gradio_client import Client, handle_file

    client = Client(url, verbose=False)
    verdicts = []
    for image in images:
        server_ms, round_trip_ms = [], []
        for run in range(runs + 2):
            start = time.perf_counter()
            *_, table, _, _ = client.predict(handle_file(image), api_name="/classify")
            if run >= 2:
                round_trip_ms.append((time.perf_counter() - start) * 1000)
                server_ms.append(sum(row[table["headers"].index("latency_ms")] for row in table["data"]))
        verdicts.append(f"{image.name} via {url}: all {len(table['data'])} nets in the server, median "
                        f"{statistics.median(server_ms):.1f} ms (p90 {p90(server_ms):.1f}); client round trip median "
                        f"{statistics.median(round_trip_ms):.0f} ms")
    return verdicts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--image", type=Path, action="append", help="repeatable (default: a CIFAR bird, a 2400x1600 photo)")
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: as the app)")
    parser.add_argument("--url", help="measure a running Space through its /classify endpoint instead")
    args = parser.parse_args()
    images = args.image or DEFAULT_IMAGES
    if args.url:
        verdicts = against_server(args.url, images, args.runs)
    else:
        torch.set_num_threads(args.threads or inference.torch_threads(inference.CONCURRENCY))
        verdicts = in_process(images, args.runs)
    print("\n".join(verdicts))


if __name__ == "__main__":
    main()
