"""The Space under load on this machine: 100 concurrent /classify calls from one gradio_client, then 10 client
threads, then memory over 600 more requests.

    python benchmarks/space_load.py                   # starts `python space/app.py` offline on a free port
    python benchmarks/space_load.py --url URL         # a running Space (no memory figures)

Prints, first for a bare Gradio app (benchmarks/bare_app.py, the same burst: the baseline), then for the Space:
how many of the 100 concurrent calls were answered (and the errors of the others), latency p50/p95 from
submission to answer, requests/s; requests/s with 10 threads each calling in turn; the server's resident memory
after warm-up and after every 100 further requests (it should stay flat). Targets (issue #8): every call answered,
p95 <= 3 s on 2 cores, memory flat after warm-up. Asserts nothing; the client runs on the same cores as the server.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "benchmarks")]

from machine import describe, others_cpu_share  # noqa: E402
from space_latency import start  # noqa: E402

IMAGE = ROOT / "space" / "examples" / "cifar_bird_0001.jpg"


def rss_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def concurrent_burst(client, n: int, api_name: str = "/classify") -> tuple[list[float], list[str], float]:
    """n calls submitted at once; returns the latencies of the answered ones, the errors, and the wall time."""
    from gradio_client import handle_file

    done, lock = {}, threading.Lock()

    def finished(i):
        def callback(*_):
            with lock:
                done.setdefault(i, time.perf_counter())
        return callback

    started = time.perf_counter()
    jobs = [client.submit(handle_file(IMAGE), api_name=api_name, result_callbacks=[finished(i)]) for i in range(n)]
    latencies, errors = [], []
    for i, job in enumerate(jobs):
        try:
            job.result(timeout=600)
            with lock:
                end = done.get(i, time.perf_counter())
            latencies.append(end - started)
        except Exception as error:  # noqa: BLE001 - reported, not raised
            errors.append(f"{type(error).__name__}: {error}"[:200])
    return latencies, errors, time.perf_counter() - started


def threaded(client, threads: int, calls: int, api_name: str = "/classify") -> float:
    from gradio_client import handle_file

    started = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(lambda _: client.predict(handle_file(IMAGE), api_name=api_name), range(calls)))
    return calls / (time.perf_counter() - started)


def burst_line(what: str, n: int, latencies: list[float], errors: list[str], wall: float) -> str:
    line = (f"{what}: {n} concurrent calls, {len(latencies)} answered, {len(errors)} failed"
            f"{' (' + '; '.join(sorted(set(errors))[:3]) + ')' if errors else ''}")
    if latencies:
        line += (f"; p50 {statistics.median(latencies):.2f} s, p95 {percentile(latencies, 0.95):.2f} s, "
                 f"{len(latencies) / wall:.1f} requests/s")
    return line


def bare_baseline(n: int, memory_requests: int) -> str:
    """The same burst, and the same requests for memory, against a bare Gradio app (benchmarks/bare_app.py: the
    same upload, one Label, no nets): what Gradio itself manages on these cores."""
    from gradio_client import Client

    process, url, _ = start(ROOT / "benchmarks" / "bare_app.py")
    try:
        client = Client(url, verbose=False)
        threaded(client, 4, 20, "/predict")  # warm-up
        baseline = rss_mb(process.pid)
        line = burst_line("baseline, bare Gradio app /predict", n, *concurrent_burst(client, n, "/predict"))
        for _ in range(memory_requests // 100):
            concurrent_burst(client, 100, "/predict")
        return line + f"; its memory (RSS) {baseline:.0f} MB after warm-up, {rss_mb(process.pid) - baseline:+.0f} MB " \
                      f"after {n + memory_requests // 100 * 100} requests"
    finally:
        process.terminate()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url")
    parser.add_argument("--concurrent", type=int, default=100)
    parser.add_argument("--memory-requests", type=int, default=600)
    parser.add_argument("--no-baseline", action="store_true", help="skip the bare Gradio app's burst")
    args = parser.parse_args()
    from gradio_client import Client

    print(describe()[1], "\n")
    if args.url is None and not args.no_baseline:
        print(bare_baseline(args.concurrent, args.memory_requests), flush=True)
    process = None
    url = args.url
    if url is None:
        process, url, seconds = start(ROOT / "space" / "app.py")
        print(f"Space started in {seconds:.1f} s at {url}")
    try:
        client = Client(url, verbose=False)
        with others_cpu_share() as load:
            threaded(client, 4, 20)  # warm-up
            baseline = rss_mb(process.pid) if process else None
            latencies, errors, wall = concurrent_burst(client, args.concurrent)
            per_second = threaded(client, 10, 100)
            memory = []
            for _ in range(args.memory_requests // 100):
                concurrent_burst(client, 100)
                memory.append(rss_mb(process.pid) if process else None)
        print(burst_line("the Space /classify", args.concurrent, latencies, errors, wall)
              + " (target: all answered, p95 <= 3 s); latency counted from submission")
        print(f"10 client threads calling in turn: {per_second:.1f} requests/s")
        if baseline is not None:
            steps = ", ".join(f"{m:.0f}" for m in memory if m is not None)
            print(f"server memory (RSS): {baseline:.0f} MB after warm-up; after each further 100 requests: {steps} MB "
                  f"({(memory[-1] or 0) - baseline:+.0f} MB over {args.memory_requests})")
        share = "unknown" if load.share is None else f"{load.share:.0%}"
        print(f"other processes used {share} of the CPUs meanwhile (the client's own share is not counted)")
    finally:
        if process is not None:
            process.terminate()


if __name__ == "__main__":
    main()
