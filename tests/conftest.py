"""Fixtures shared by the convhub tests (tests/test_models.py, test_hub.py, test_predict.py).

Nothing here is autouse: the training and Space tests are unaffected unless they ask for a fixture.

- `hub_env`: every Hugging Face setting a test could leak through, pointed into the test's tmp_path: the HF cache,
  no token, not offline, HF_ENDPOINT at a closed port on 127.0.0.1, convhub's reachability probe cache emptied, and
  any connection to a host other than the loopback interface fails the test (nothing may reach huggingface.co).
- `OlahHub` / `olah_hub`: a real Hub-compatible server, olah (pinned in requirements.txt), run as a subprocess on
  127.0.0.1 in offline mode, serving local git repositories from its mirrors path through the Hub's download API.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import convhub.hub
import pytest
import torch
from huggingface_hub import constants

LOOPBACK = {"127.0.0.1", "::1", "localhost"}


@pytest.fixture(scope="module")
def one_thread():
    """The nets here are tiny: one thread avoids OpenMP threads fighting over the 2 cores."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def peak_memory(setup: str, statement: str, *argv) -> tuple[str, int]:
    """Python ``statement`` run in a process of its own after ``setup`` (its imports), from the checkout, with
    ``argv`` as sys.argv[1:]: what it printed, and its peak memory over its memory after ``setup``, in KB. VmHWM, the
    peak of the process image: ru_maxrss after an exec counts the parent's (pytest's) peak too."""
    probe = (f"import sys\n{setup}\n"
             "def kb(key): return int(next(l for l in open('/proc/self/status') if l.startswith(key)).split()[1])\n"
             f"before = kb('VmRSS:')\n{statement}\nprint(kb('VmHWM:') - before)")
    done = subprocess.run([sys.executable, "-c", probe, *map(str, argv)], capture_output=True, text=True, timeout=300,
                          cwd=Path(__file__).resolve().parents[1])
    assert done.returncode == 0, done.stderr[-2000:]
    *printed, peak_kb = done.stdout.splitlines()
    return "\n".join(printed), int(peak_kb)


def without_root_read_override() -> list[str]:
    """The command prefix that runs a process without root's right to read any file or folder (setpriv dropping
    those two capabilities), so that a permission test means what it says as root too; nothing as another user.
    Skips where root has no setpriv (util-linux)."""
    if os.geteuid() != 0:
        return []
    if not shutil.which("setpriv"):
        pytest.skip("running as root, and no setpriv (util-linux) to drop root's right to read any folder")
    caps = "-dac_override,-dac_read_search"
    return ["setpriv", f"--inh-caps={caps}", f"--bounding-set={caps}"]


def free_port() -> int:
    """A port nothing listens on (the OS picked it and we closed it again)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def loopback_only(monkeypatch):
    """Any attempt to resolve or connect to a non-loopback host fails the test (pytest.fail is no Exception)."""
    real_connect, real_getaddrinfo = socket.socket.connect, socket.getaddrinfo

    def connect(sock, address, *args, **kwargs):
        if sock.family in (socket.AF_INET, socket.AF_INET6) and address[0] not in LOOPBACK:
            pytest.fail(f"a test tried to connect to {address}: only 127.0.0.1 is allowed")
        return real_connect(sock, address, *args, **kwargs)

    def getaddrinfo(host, *args, **kwargs):
        if host not in LOOPBACK and host is not None:
            pytest.fail(f"a test tried to resolve {host!r}: only 127.0.0.1 is allowed")
        return real_getaddrinfo(host, *args, **kwargs)

    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)


@pytest.fixture
def hub_env(monkeypatch, tmp_path, loopback_only) -> Path:
    """Isolated Hugging Face environment; returns the HF cache folder (empty)."""
    home = tmp_path / "hf-home"  # everything of ours in one folder: tests may use tmp_path itself as a model folder
    home.mkdir()
    cache = home / "hub"
    # huggingface_hub reads HF_HUB_CACHE / HF_HUB_OFFLINE once at import: patch its constants as well as the env.
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    for name in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(home / "no-token"))
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{free_port()}")  # closed: nothing listens there
    # convhub reads HF_ENDPOINT at call time and passes it to the client as endpoint=. huggingface_hub itself read it
    # at import into constants.ENDPOINT (huggingface.co here) and uses that for one request of its own: the first time it
    # builds request headers it fetches an "agent harness" registry from constants.ENDPOINT unless a copy younger than
    # a day is cached in the file below. Give it a fresh, empty copy so nothing tries huggingface.co.
    registry = home / "agent_harnesses.json"
    registry.write_text(json.dumps({"standardEnvVars": [], "harnesses": {}}))
    monkeypatch.setattr(constants, "AGENT_HARNESSES_PATH", str(registry), raising=False)
    convhub.hub._probe_cache.clear()
    yield cache
    convhub.hub._probe_cache.clear()


def git(*args: str, cwd: Path) -> str:
    command = ["git", "-c", "user.name=convhub tests", "-c", "user.email=tests@convhub.invalid",
               "-c", "commit.gpgsign=false", "-c", "tag.gpgsign=false", *args]
    env = {**os.environ, "GIT_CONFIG_GLOBAL": os.devnull, "GIT_CONFIG_NOSYSTEM": "1"}
    return subprocess.run(command, cwd=cwd, env=env, check=True, capture_output=True, text=True).stdout.strip()


class OlahHub:
    """olah serving `root/mirrors/models/<namespace>/<name>` git repositories on http://127.0.0.1:<port>."""

    def __init__(self, root: Path):
        self.root = root
        self.mirrors = root / "mirrors"
        (self.mirrors / "models").mkdir(parents=True)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen | None = None

    def start(self, timeout: float = 60.0) -> OlahHub:
        config = self.root / "olah.toml"
        config.write_text(
            "[basic]\n"
            f'host = "127.0.0.1"\nport = {self.port}\n'
            f'repos-path = "{self.root / "olah-cache"}"\n'
            f'mirrors-path = ["{self.mirrors}"]\n'
            "metadata-cache-ttl = 0\n"  # a new commit is visible at once
            "[accessibility]\noffline = true\n"  # never ask huggingface.co
        )
        log = open(self.root / "olah.out", "wb")
        # HOME in tmp: olah keeps a database under ~/.olah.
        env = {**os.environ, "HOME": str(self.root), "HF_HUB_OFFLINE": "0"}
        self.process = subprocess.Popen(
            [sys.executable, "-c", "from olah.server import main; main()", "--config", str(config),
             "--log-path", str(self.root / "logs")],
            cwd=self.root, env=env, stdout=log, stderr=subprocess.STDOUT,
        )
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"olah exited with {self.process.returncode}:\n{self.log()}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return self
            except OSError:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"olah did not listen on port {self.port} within {timeout} s:\n{self.log()}")

    def log(self) -> str:
        path = self.root / "olah.out"
        return path.read_text(errors="replace")[-4000:] if path.exists() else ""

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)

    def repo(self, repo_id: str) -> Path:
        return self.mirrors / "models" / repo_id

    def publish(self, folder: Path, repo_id: str, message: str = "upload", tag: str | None = None) -> str:
        """Commit the files of a save_pretrained `folder` to the repo (created on first use); returns the sha."""
        repo = self.repo(repo_id)
        if not (repo / ".git").exists():
            repo.mkdir(parents=True)
            git("init", "-q", "-b", "main", cwd=repo)
        for path in folder.iterdir():
            (repo / path.name).write_bytes(path.read_bytes())
        git("add", "-A", cwd=repo)
        git("commit", "-q", "-m", message, cwd=repo)
        if tag:
            git("tag", tag, cwd=repo)
        return git("rev-parse", "HEAD", cwd=repo)


@pytest.fixture(scope="module")
def olah_server(tmp_path_factory):
    server = OlahHub(tmp_path_factory.mktemp("olah")).start()
    yield server
    server.stop()


@pytest.fixture
def olah_hub(olah_server, hub_env, monkeypatch) -> OlahHub:
    """The olah server, with HF_ENDPOINT pointing at it (and the isolated HF environment of hub_env)."""
    monkeypatch.setenv("HF_ENDPOINT", olah_server.url)
    return olah_server


class SilentServer:
    """A listener on 127.0.0.1 that accepts connections and never answers (a hung Hub).

    With ``answer_probe``, the probe (HEAD /api/models) gets an empty 200 (the Hub looks alive) and everything else
    hangs.
    """

    def __init__(self, answer_probe: bool = False):
        import threading

        self.answer_probe = answer_probe
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.connections: list[socket.socket] = []
        self.requests: list[bytes] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        self.sock.settimeout(0.2)
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            self.connections.append(conn)
            if self.answer_probe:
                conn.settimeout(2)
                try:
                    head = conn.recv(65536)
                except OSError:
                    continue
                self.requests.append(head)
                if head.startswith(b"HEAD /api/models "):  # the probe
                    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                    conn.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        for conn in self.connections:
            conn.close()
        self.sock.close()


@pytest.fixture
def silent_hub(monkeypatch):
    """HF_ENDPOINT at a SilentServer; convhub's probe cache emptied."""
    server = SilentServer()
    monkeypatch.setenv("HF_ENDPOINT", server.url)
    convhub.hub._probe_cache.clear()
    yield server
    server.close()
    convhub.hub._probe_cache.clear()


class SpaceProcess:
    """`python app.py` of a Space folder as a real server on a free port of 127.0.0.1, offline by default (``env``
    adds to the environment; a value of None removes a variable)."""

    def __init__(self, app: Path, log: Path, *, env: dict | None = None, python: str = sys.executable,
                 startup_limit_s: float = 180.0, ignore_sigint: bool = False):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/"
        self.log_path = log
        full_env = {**os.environ, "GRADIO_SERVER_PORT": str(self.port), "HF_HUB_OFFLINE": "1",
                    "GRADIO_ANALYTICS_ENABLED": "False", "PYTHONUNBUFFERED": "1", **(env or {})}
        full_env = {name: value for name, value in full_env.items() if value is not None}  # None: unset
        self._log = open(log, "w+")
        import signal

        # ignore_sigint: as a shell script's `python app.py &` starts it
        preexec = (lambda: signal.signal(signal.SIGINT, signal.SIG_IGN)) if ignore_sigint else None
        self.process = subprocess.Popen([python, str(app)], env=full_env, stdout=self._log, stderr=subprocess.STDOUT,
                                        cwd=app.parent, preexec_fn=preexec)
        self._wait_until_up(startup_limit_s)

    def _wait_until_up(self, limit_s: float) -> None:
        import urllib.request

        started = time.monotonic()
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"app exited with {self.process.returncode}:\n{self.log()}")
            try:
                urllib.request.urlopen(self.url, timeout=2)
                return
            except OSError:
                if time.monotonic() - started > limit_s:
                    self.stop()
                    raise RuntimeError(f"app did not answer within {limit_s} s:\n{self.log()}")
                time.sleep(0.3)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> int | None:
        """SIGTERM, as Spaces and process managers stop a server; returns the exit code."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        self._log.close()
        return self.process.returncode
