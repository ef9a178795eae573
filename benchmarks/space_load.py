"""The Space under load on this machine: 100 concurrent /classify calls, requests/s from 10 client threads, and
memory over 600 more requests.

    python benchmarks/space_load.py                   # starts `python space/app.py` offline on a free port
    python benchmarks/space_load.py --url URL         # a running Space (no memory or CPU figures)

The client shares the machine's cores with the server, so each burst is sent twice: over plain HTTP from a client
that costs next to nothing (as visitors' browsers, which run elsewhere, cost the server nothing), and from one
gradio_client, which spends about 4x the server's own CPU on the same calls. For each: how many of the 100 calls
were answered (and the errors of the others), latency p50/p95 from submission to answer, requests/s, and the
server's CPU seconds per 100 calls. Then the server's resident memory after warm-up and after every 100 further
requests (it should stay flat). A bare Gradio app (benchmarks/bare_app.py: the same upload, one Label, no nets)
gets the same bursts first: the baseline from the same run. Targets (issue #8): every call answered, p95 <= 3 s
on 2 cores, memory flat after warm-up. Asserts nothing.
"""

from __future__ import annotations

import argparse
import os
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


def error_text(error: BaseException) -> str:
    """One line for a failed call (gradio_client's CancelledError has no message: its name alone)."""
    message = " ".join(str(error).split())
    return f"{type(error).__name__}: {message}"[:200] if message else type(error).__name__


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
            errors.append(error_text(error))
    return latencies, errors, time.perf_counter() - started


async def _http(host: str, port: int, request: bytes, until: bytes | None = None) -> bytes:
    """One HTTP/1.1 exchange on its own connection (`Connection: close`): the response's bytes, read to the end or
    until ``until`` appears in them (the answer's event in an event stream)."""
    import asyncio

    reader, writer = await asyncio.open_connection(host, port)
    try:
        writer.write(request)
        received = b""
        while chunk := await reader.read(65536):
            received += chunk
            if until is not None and until in received:
                break
        return received
    finally:
        writer.close()


def _request(method: str, path: str, host: str, body: bytes = b"", content_type: str | None = None) -> bytes:
    head = f"{method} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n"
    if content_type:
        head += f"Content-Type: {content_type}\r\n"
    return (head + f"Content-Length: {len(body)}\r\n\r\n").encode() + body


def raw_http_burst(url: str, n: int, api_name: str = "/classify", visitors: list[str] | None = None,
                   timeout: float = 600) -> tuple[list[float], list[str], float]:
    """The same n calls as plain HTTP from one asyncio loop, as a browser sends them: upload the image, join the
    queue, read the answer's event stream. The client is a few lines over raw sockets because the cores are shared:
    gradio_client spends about 4x the server's CPU on the same calls (httpx about 2x), and on 2 cores a heavy client
    becomes the server's latency. Visitors' browsers run on their own machines.

    Each call is a new visitor (a Gradio session of its own), unless ``visitors`` names the session ids to take
    in turn: the same visitors coming back. Give at least n of them: Gradio's call API streams a session's answers
    through one queue, so a visitor's second call at the same time is answered "404: Not Found"."""
    import asyncio
    import json
    import urllib.parse

    parsed = urllib.parse.urlsplit(url)
    host, port, where = parsed.hostname, parsed.port, f"{parsed.hostname}:{parsed.port}"
    endpoint, image, boundary = api_name.strip("/"), IMAGE.read_bytes(), "convhubbenchmarkboundary"
    form = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"files\"; filename=\"{IMAGE.name}\"\r\n"
            "Content-Type: image/jpeg\r\n\r\n").encode() + image + f"\r\n--{boundary}--\r\n".encode()

    def body_of(response: bytes):
        head, _, body = response.partition(b"\r\n\r\n")
        if not head.startswith(b"HTTP/1.1 200"):
            raise RuntimeError(head.split(b"\r\n")[0].decode(errors="replace"))
        return json.loads(body)

    async def one(started: float, visitor: str | None) -> float:
        [path] = body_of(await _http(host, port, _request("POST", "/gradio_api/upload", where, form,
                                                          f"multipart/form-data; boundary={boundary}")))
        call = json.dumps({"data": [{"path": path, "meta": {"_type": "gradio.FileData"}}],
                           **({"session_hash": visitor} if visitor else {})}).encode()
        event_id = body_of(await _http(host, port, _request("POST", f"/gradio_api/call/{endpoint}", where, call,
                                                            "application/json")))["event_id"]
        stream = await _http(host, port, _request("GET", f"/gradio_api/call/{endpoint}/{event_id}", where),
                             until=b"event: complete")
        if b"event: complete" not in stream:
            raise RuntimeError("no answer in the event stream" + (" (an error event)" if b"event: error" in stream
                                                                   else ""))
        return time.perf_counter() - started

    async def burst() -> tuple[list[float], list[str], float]:
        started = time.perf_counter()
        calls = (one(started, visitors[i % len(visitors)] if visitors else None) for i in range(n))
        outcomes = await asyncio.gather(*(asyncio.wait_for(call, timeout) for call in calls), return_exceptions=True)
        wall = time.perf_counter() - started
        latencies = [o for o in outcomes if isinstance(o, float)]
        errors = [f"{type(o).__name__}: {o}"[:200] for o in outcomes if isinstance(o, BaseException)]
        return latencies, errors, wall

    return asyncio.run(burst())


def threaded(client, threads: int, calls: int, api_name: str = "/classify") -> tuple[float, list[str]]:
    """Answers a second from ``threads`` threads sharing one client, and the errors of the calls that failed:
    counted, not raised (on a fast CPU gradio_client 2.7.2 now and then ends a call in an empty CancelledError when
    its shared event stream closes under another thread's call, and one such call stopped the whole benchmark)."""
    from gradio_client import handle_file

    def one(_) -> str | None:
        try:
            client.predict(handle_file(IMAGE), api_name=api_name)
        except Exception as error:  # noqa: BLE001 - reported, not raised
            return error_text(error)
        return None

    started = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        errors = [error for error in pool.map(one, range(calls)) if error is not None]
    return (calls - len(errors)) / (time.perf_counter() - started), errors


def threaded_line(threads: int, calls: int, answered_per_second: float, errors: list[str]) -> str:
    failed = f" ({len(errors)} of {calls} failed: {'; '.join(sorted(set(errors))[:3])})" if errors else ""
    return f"{threads} gradio_client threads calling in turn: {answered_per_second:.1f} answers/s{failed}"


def burst_line(what: str, n: int, latencies: list[float], errors: list[str], wall: float) -> str:
    line = (f"{what}: {n} concurrent calls, {len(latencies)} answered, {len(errors)} failed"
            f"{' (' + '; '.join(sorted(set(errors))[:3]) + ')' if errors else ''}")
    if latencies:
        line += (f"; p50 {statistics.median(latencies):.2f} s, p95 {percentile(latencies, 0.95):.2f} s, "
                 f"{len(latencies) / wall:.1f} requests/s")
    return line


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds a process has used so far (Linux /proc)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measured(what: str, n: int, burst, pid: int | None) -> str:
    """One burst's line, with the server's CPU seconds it took where the server is a local process."""
    before = cpu_seconds(pid) if pid else None
    line = burst_line(what, n, *burst())
    if before is not None:
        line += f", server CPU {cpu_seconds(pid) - before:.1f} s"
    return line


def under_load(url: str, api_name: str, n: int, memory_requests: int, pid: int | None) -> list[str]:
    """The bursts, requests/s and memory figures for one server: what the baseline and the Space both get."""
    from gradio_client import Client

    client = Client(url, verbose=False)
    threaded(client, 4, 20, api_name)  # warm-up: both clients' paths
    raw_http_burst(url, 20, api_name)
    lines = [measured("plain HTTP", n, lambda: raw_http_burst(url, n, api_name), pid),
             measured("gradio_client", n, lambda: concurrent_burst(client, n, api_name), pid),
             threaded_line(10, 100, *threaded(client, 10, 100, api_name))]
    if pid and rss_mb(pid) is not None:
        # 100 visitors coming back: memory per request, apart from Gradio's per-session copy of the page's config
        # (the Space bounds the sessions it keeps: CONVHUB_SESSIONS in space/app.py).
        visitors = [f"visitor{i:03d}" for i in range(100)]
        raw_http_burst(url, 100, api_name, visitors)
        baseline = rss_mb(pid)
        memory = []
        for _ in range(memory_requests // 100):
            raw_http_burst(url, 100, api_name, visitors)
            memory.append(rss_mb(pid))
        steps = ", ".join(f"{m:.0f}" for m in memory if m is not None)
        lines.append(f"memory (RSS), 100 visitors calling again: {baseline:.0f} MB after their first calls; after "
                     f"each further 100 requests: {steps} MB ({(memory[-1] or 0) - baseline:+.0f} MB over "
                     f"{memory_requests})")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url")
    parser.add_argument("--concurrent", type=int, default=100)
    parser.add_argument("--memory-requests", type=int, default=600)
    parser.add_argument("--no-baseline", action="store_true", help="skip the bare Gradio app")
    args = parser.parse_args()

    print(describe()[1], "\n")
    with others_cpu_share() as load:
        if args.url is None and not args.no_baseline:
            process, url, seconds = start(ROOT / "benchmarks" / "bare_app.py")
            try:
                print(f"baseline: a bare Gradio app, /predict (started in {seconds:.1f} s)", flush=True)
                for line in under_load(url, "/predict", args.concurrent, args.memory_requests, process.pid):
                    print("  " + line, flush=True)
            finally:
                process.terminate()
        process, url = None, args.url
        if url is None:
            process, url, seconds = start(ROOT / "space" / "app.py")
        print(f"\nthe Space, /classify" + (f" (started in {seconds:.1f} s)" if process else f" at {url}"), flush=True)
        try:
            for line in under_load(url, "/classify", args.concurrent, args.memory_requests,
                                   process.pid if process else None):
                print("  " + line, flush=True)
        finally:
            if process is not None:
                process.terminate()
    print("\ntargets: all answered, p95 <= 3 s, memory flat after warm-up; latency counted from submission")
    share = "unknown" if load.share is None else f"{load.share:.0%}"
    print(f"other processes (the servers included) used {share} of the CPUs meanwhile")


if __name__ == "__main__":
    main()
