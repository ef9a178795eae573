"""Proof that the Space deploys as uploaded: the folder `publish --dry-run` writes, in a clean virtualenv made from
the Space's requirements.txt alone (convhub is not installed there; it travels inside the upload), serves every net
through /classify. Slow (it installs torch and gradio into a new virtualenv; pip's cache and index make it minutes).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import convhub
import pytest
from conftest import SpaceProcess

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.slow


def run(*command, cwd=None, env=None, timeout=1800) -> subprocess.CompletedProcess:
    return subprocess.run([str(c) for c in command], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def deployed(tmp_path_factory) -> Path:
    """The dry-run Space folder, with a virtualenv that has exactly its requirements."""
    root = tmp_path_factory.mktemp("deploy")
    published = run(sys.executable, "-m", "training", "publish", "--namespace", "alice", "--dry-run", root / "out",
                    cwd=ROOT, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert published.returncode == 0, published.stderr
    space = root / "out" / "spaces" / "alice" / "convhub"
    venv = root / "venv"
    made = run(sys.executable, "-m", "venv", venv)
    assert made.returncode == 0, made.stderr
    clean_env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    installed = run(venv / "bin" / "python", "-m", "pip", "install", "-q", "--disable-pip-version-check",
                    "-r", space / "requirements.txt", cwd=root, env=clean_env)
    assert installed.returncode == 0, installed.stderr[-3000:]
    return space


def test_the_venv_has_no_convhub_of_its_own(deployed):
    probe = run(deployed.parents[3] / "venv" / "bin" / "python", "-c", "import convhub", cwd=deployed.parents[3],
                env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"})
    assert probe.returncode != 0 and "No module named 'convhub'" in probe.stderr


def test_the_uploaded_space_serves_every_net(deployed, tmp_path):
    from gradio_client import Client, handle_file

    env = {"HF_HUB_CACHE": str(tmp_path / "hf-cache"), "PYTHONPATH": ""}
    space = SpaceProcess(deployed / "app.py", tmp_path / "space.log", python=str(deployed.parents[3] / "venv" / "bin" / "python"),
                         env=env, startup_limit_s=300)
    try:
        client = Client(space.url, verbose=False)
        result = client.predict(handle_file(deployed / "examples" / "cifar_bird_0001.jpg"), api_name="/classify")
        assert list(result["nets"]) == list(convhub.ZOO)
        assert all(abs(n["airplane"] + n["bird"] - 1) < 1e-4 for n in result["nets"].values())
        sources = {row["net"]: row["source"] for row in client.predict(api_name="/compare")["nets"]}
        # offline, so the bundled copies serve; the repos it would load online are the published ones
        assert all(source.startswith("bundled") for source in sources.values()), sources
        assert json.loads((deployed / "convhub_space.json").read_text())["namespace"] == "alice"
        assert "alice/convhub-net" in (deployed / "README.md").read_text()
    finally:
        space.stop()
    log = space.log()
    assert "9 of 9 nets loaded" in log and "Traceback" not in log
