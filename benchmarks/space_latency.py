"""The Space's speed on this machine, each figure next to its baseline from the same run.

    python benchmarks/space_latency.py            # in-process: all nets on one image, as built vs as served
    python benchmarks/space_latency.py --serve    # + start-up, /classify round trip and browser click, vs a bare
                                                  #   Gradio app (benchmarks/bare_app.py) started in the same run
    python benchmarks/space_latency.py --url http://127.0.0.1:7860/   # the round trip of a running Space

In-process: the weights the Space loads (CONVHUB_MODELS_DIR, the Hub, or space/models), the app's torch threads per
request, a CIFAR image and a 2400x1600 photo; each net as the book builds it and as the Space serves it
(convhub.graph.for_inference: batch norm folded into the convs, channels-last), then inference.classify, decoding
included. --serve starts `python space/app.py` and the bare app offline, each on a free port, and times: process
start to the first HTTP 200 and to the first answer of /classify (/predict for the bare app), median of --starts
alternating starts (the Space serves its page before its nets load); gradio_client round trips of /classify against the bare app's /predict (the same
image uploaded, one answer back); in headless Chromium, an example click until every net's row shows the new
result. Asserts nothing.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "space"), str(ROOT), str(ROOT / "benchmarks")]

import inference  # noqa: E402
from convhub import env  # noqa: E402
from machine import describe, others_cpu_share  # noqa: E402
from zoo_loader import load_zoo  # noqa: E402

EXAMPLES = ROOT / "space" / "examples"
DEFAULT_IMAGES = [EXAMPLES / "cifar_bird_0001.jpg", EXAMPLES / "large_photo_plane_2400x1600.jpg"]
TARGETS = {"in_process_ms": 15.0, "round_trip_ratio": 1.1, "click_ms": 200.0, "start_ratio": 1.5}


def p90(values: list[float]) -> float:
    return statistics.quantiles(values, n=10)[-1] if len(values) > 1 else values[0]


def timed(fn, runs: int, warmup: int = 5) -> list[float]:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1000)
    return times


def in_process(images: list[Path], runs: int) -> list[str]:
    nets = [net for net in inference.prepare_for_serving(load_zoo()) if net.available]
    print(f"{len(nets)} nets, {runs} runs after 5 warm-up runs, {torch.get_num_threads()} torch thread(s)\n")
    verdicts = []
    with torch.inference_mode():
        for image in images:
            x = inference.load_input(image)
            channels_last = x.contiguous(memory_format=torch.channels_last)
            print(f"## {image.name}\n\n| net | as built, median ms | as served, median ms |\n|---|---:|---:|")
            built_total = served_total = 0.0
            for net in nets:
                built = statistics.median(timed(lambda: net.model(x), runs))
                served = statistics.median(timed(lambda: net.served(channels_last), runs))
                built_total, served_total = built_total + built, served_total + served
                print(f"| {net.name} | {built:.2f} | {served:.2f} |")
            print(f"| **all nets** | **{built_total:.2f}** | **{served_total:.2f}** |")
            whole = timed(lambda: inference.classify(nets, image), runs)
            print(f"\ninference.classify (decode + preprocess + every net as served): median "
                  f"{statistics.median(whole):.2f} ms, p90 {p90(whole):.2f} ms\n")
            verdicts.append(f"{image.name}: all {len(nets)} nets {served_total:.1f} ms as served vs {built_total:.1f} "
                            f"ms as built ({built_total / served_total:.2f}x); with decoding {statistics.median(whole):.1f}"
                            f" ms (target <= {TARGETS['in_process_ms']:.0f} ms for the nets)")
    return verdicts


# --- served: the Space against a bare Gradio app ------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start(script: Path, limit_s: float = 300) -> tuple[subprocess.Popen, str, float]:
    """Start a Gradio app offline; returns the process, its URL and the seconds until its first HTTP 200."""
    port = free_port()
    env = {**os.environ, "GRADIO_SERVER_PORT": str(port), "HF_HUB_OFFLINE": "1", "GRADIO_ANALYTICS_ENABLED": "False"}
    started = time.perf_counter()
    process = subprocess.Popen([sys.executable, str(script)], env=env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, cwd=script.parent)
    url = f"http://127.0.0.1:{port}/"
    while time.perf_counter() - started < limit_s:
        if process.poll() is not None:
            raise SystemExit(f"{script} exited with {process.returncode}")
        try:
            urllib.request.urlopen(url, timeout=2)
            return process, url, time.perf_counter() - started
        except OSError:
            time.sleep(0.05)
    process.kill()
    raise SystemExit(f"{script} did not answer within {limit_s} s")


def start_up(script: Path, api_name: str, image: Path) -> tuple[float, float]:
    """Seconds from process start to the first HTTP 200, and to the first answer of api_name."""
    from gradio_client import Client, handle_file

    process, url, first_page = start(script)
    try:
        page_served = time.perf_counter()
        Client(url, verbose=False).predict(handle_file(image), api_name=api_name)
        return first_page, first_page + time.perf_counter() - page_served
    finally:
        process.terminate()
        process.wait(timeout=60)


def round_trips(url: str, api_name: str, image: Path, runs: int) -> list[float]:
    from gradio_client import Client, handle_file

    client = Client(url, verbose=False)
    return timed(lambda: client.predict(handle_file(image), api_name=api_name), runs, warmup=3)


CLICK_JS = """async ([caption, expected]) => {
    const button = [...document.querySelectorAll('#examples button')].find(b => b.innerText.trim() === caption);
    const done = () => { const truth = document.querySelector('#scoreboard .truth');
        return truth && truth.innerText.includes('True label: ' + expected)
            && document.querySelectorAll('#scoreboard tr[data-net]').length > 0; };
    const start = performance.now();
    button.click();
    await new Promise(resolve => { const check = () => done() ? resolve() : requestAnimationFrame(check); check(); });
    return performance.now() - start;
}"""


def browser_clicks(url: str, runs: int) -> list[float]:
    """Example click until the scoreboard shows the clicked example's result, alternating a bird and an airplane."""
    import shutil

    from playwright.sync_api import sync_playwright

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=["--headless", "--no-sandbox", "--disable-gpu"])
        page = browser.new_page(viewport={"width": 1366, "height": 900})
        page.goto(url)
        page.wait_for_selector("#examples button")
        times = []
        for i in range(runs + 2):
            caption = "bird" if i % 2 else "airplane"
            elapsed = page.evaluate(CLICK_JS, [caption, caption])
            if i >= 2:
                times.append(elapsed)
        browser.close()
    return times


def served(runs: int, starts: int) -> list[str]:
    image = DEFAULT_IMAGES[0]
    bare_starts, space_starts = [], []
    for _ in range(starts):
        bare_starts.append(start_up(ROOT / "benchmarks" / "bare_app.py", "/predict", image))
        space_starts.append(start_up(ROOT / "space" / "app.py", "/classify", image))
    (bare_page, bare_answer), (space_page, space_answer) = (
        [statistics.median(column) for column in zip(*times)] for times in (bare_starts, space_starts))
    bare, bare_url, _ = start(ROOT / "benchmarks" / "bare_app.py")
    try:
        bare_trips = round_trips(bare_url, "/predict", image, runs)
    finally:
        bare.terminate()
    space, space_url, _ = start(ROOT / "space" / "app.py")
    try:
        space_trips = round_trips(space_url, "/classify", image, runs)
        clicks = browser_clicks(space_url, max(10, runs // 2))
    finally:
        space.terminate()
    trip_ratio = statistics.median(space_trips) / statistics.median(bare_trips)
    return [
        f"start-up to first HTTP 200 (offline), median of {starts}: Space {space_page:.2f} s vs bare Gradio app "
        f"{bare_page:.2f} s: {space_page / bare_page:.2f}x (target <= {TARGETS['start_ratio']}x)",
        f"start-up to the first answer (gradio_client, /classify vs /predict): Space {space_answer:.2f} s vs bare "
        f"Gradio app {bare_answer:.2f} s: {space_answer / bare_answer:.2f}x",
        f"gradio_client round trip, {image.name}: /classify median {statistics.median(space_trips):.0f} ms (p90 "
        f"{p90(space_trips):.0f}) vs bare /predict {statistics.median(bare_trips):.0f} ms (p90 {p90(bare_trips):.0f}): "
        f"{trip_ratio:.2f}x (target <= {TARGETS['round_trip_ratio']}x)",
        f"browser, example click -> every net's result shown: median {statistics.median(clicks):.0f} ms, p90 "
        f"{p90(clicks):.0f} ms over {len(clicks)} clicks (target <= {TARGETS['click_ms']:.0f} ms)",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--image", type=Path, action="append", help="repeatable (default: a CIFAR bird, a 2400x1600 photo)")
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--starts", type=int, default=5, help="alternating starts of each app (--serve)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: as the app)")
    parser.add_argument("--serve", action="store_true", help="also time the served Space against a bare Gradio app")
    parser.add_argument("--url", help="only the /classify round trip of a running Space")
    args = parser.parse_args()
    threads = env.number("CONVHUB_TORCH_THREADS", None, minimum=1, maximum=256)  # as the app reads it
    torch.set_num_threads(args.threads or inference.torch_threads(2, threads))  # as the app: 2 requests at a time
    print(describe()[1], "\n")
    if args.url:
        trips = round_trips(args.url, "/classify", (args.image or DEFAULT_IMAGES)[0], args.runs)
        print(f"/classify round trip via {args.url}: median {statistics.median(trips):.0f} ms, p90 {p90(trips):.0f} ms")
        return
    with others_cpu_share() as load:
        verdicts = in_process(args.image or DEFAULT_IMAGES, args.runs)
        if args.serve:
            verdicts += served(args.runs, args.starts)
    print("\n".join(verdicts))
    share = "unknown" if load.share is None else f"{load.share:.0%}"
    print(f"other processes used {share} of the CPUs meanwhile (figures are comparable only near 0%)")


if __name__ == "__main__":
    main()
