"""The Space as users and clients meet it: `python space/app.py` on a free port, offline, driven by gradio_client
and by headless Chromium (Playwright)."""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import convhub
import numpy as np
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
NETS = ["fc", "net", "net_res_deep"]
STARTUP_LIMIT_S = 180  # generous: a busy 2-core machine imports torch + gradio slowly


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def decompression_bomb() -> bytes:
    """A 69-byte PNG whose header claims 20000x20000 pixels: Pillow refuses it before decoding anything."""
    import io
    import struct
    import zlib

    buffer = io.BytesIO()
    Image.new("RGB", (8, 8)).save(buffer, "PNG")
    data = bytearray(buffer.getvalue())
    data[16:24] = struct.pack(">II", 20000, 20000)  # IHDR width, height
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    return bytes(data)


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    folder = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(folder / "cifar_like.png")
    Image.new("RGBA", (1, 1), (10, 20, 30, 0)).save(folder / "one_pixel.png")
    Image.new("L", (100, 60), 90).save(folder / "gray.png")
    Image.new("P", (64, 64)).save(folder / "palette.gif")
    gradient = np.linspace(0, 255, 8000, dtype=np.uint8)
    Image.fromarray(np.stack([np.broadcast_to(gradient, (8000, 8000))] * 3, axis=-1)).save(folder / "huge.jpg", quality=60)
    (folder / "corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    (folder / "bomb.png").write_bytes(decompression_bomb())
    (folder / "notes.txt").write_text("not an image")
    return folder


@pytest.fixture(scope="module")
def server_log(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("log") / "app.log"


@pytest.fixture(scope="module")
def server(tmp_path_factory, server_log):
    models = tmp_path_factory.mktemp("models")
    for name in NETS:
        convhub.create(name).save_pretrained(models / name)
    port = free_port()
    env = {**os.environ, "GRADIO_SERVER_PORT": str(port), "CONVHUB_MODELS_DIR": str(models),
           "HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(tmp_path_factory.mktemp("hf-cache")),
           "GRADIO_ANALYTICS_ENABLED": "False", "PYTHONUNBUFFERED": "1"}
    log = open(server_log, "w+")
    process = subprocess.Popen([sys.executable, str(ROOT / "space" / "app.py")], env=env, stdout=log,
                               stderr=subprocess.STDOUT, cwd=ROOT)
    url = f"http://127.0.0.1:{port}/"
    started = time.monotonic()
    try:
        while True:
            if process.poll() is not None:
                log.seek(0)
                pytest.fail(f"app exited with {process.returncode}:\n{log.read()}")
            try:
                urllib.request.urlopen(url, timeout=2)
                break
            except OSError:
                if time.monotonic() - started > STARTUP_LIMIT_S:
                    pytest.fail(f"app did not answer within {STARTUP_LIMIT_S} s")
                time.sleep(0.5)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()


@pytest.fixture(scope="module")
def client(server):
    from gradio_client import Client

    return Client(server, verbose=False)


@pytest.fixture(scope="module")
def served_nets(client) -> list[str]:
    """Nets the app could load: the test's folder has NETS; others come from the weights bundled in space/models."""
    table, _, _ = client.predict(api_name="/compare")
    return [row[0] for row in table["data"] if not row[table["headers"].index("source")].startswith("unavailable")]


def confidences(label: dict) -> dict[str, float]:
    return {c["label"]: c["confidence"] for c in label["confidences"]}


def test_offline_start_takes_seconds_and_says_where_the_nets_came_from(server, server_log):
    """HF_HUB_OFFLINE: no Hub calls at all, so loading, warm-up and building the page take seconds (imports aside)."""
    line = next(line for line in server_log.read_text().splitlines() if "Ready in" in line)
    assert float(re.search(r"Ready in ([\d.]+) s", line).group(1)) < 20
    assert "nets loaded" in line and "from local folder" in line and "Hub offline (HF_HUB_OFFLINE)" in line


def test_endpoints_are_named(client):
    assert {"/classify", "/filters", "/feature_maps", "/compare"} <= set(client.view_api(print_info=False, return_format="dict")["named_endpoints"])


@pytest.mark.parametrize("name", ["cifar_like.png", "one_pixel.png", "gray.png", "palette.gif", "huge.jpg"])
def test_classify_any_image(client, served_nets, images, name):
    from gradio_client import handle_file

    *labels, table, seen, summary = client.predict(handle_file(images / name), api_name="/classify")
    assert set(NETS) <= set(served_nets) and len(labels) == len(served_nets)
    for label in labels:
        probs = confidences(label)
        assert set(probs) == {"airplane", "bird"} and sum(probs.values()) == pytest.approx(1, abs=1e-4)
    assert [row[0] for row in table["data"]] == served_nets
    assert Image.open(seen).size == (256, 256)
    assert f"All {len(served_nets)} nets took" in summary


BAD_INPUTS = [("corrupt.jpg", "cannot read corrupt.jpg as an image"), ("notes.txt", "cannot read notes.txt as an image"),
              ("bomb.png", "cannot read bomb.png as an image: Image size .400000000 pixels. exceeds limit")]


@pytest.mark.parametrize("name, message", BAD_INPUTS)
def test_bad_files_get_a_clear_error_and_the_app_keeps_serving(client, served_nets, images, name, message):
    from gradio_client import handle_file
    from gradio_client.exceptions import AppError

    with pytest.raises(AppError, match=message):
        client.predict(handle_file(images / name), api_name="/classify")
    with pytest.raises(AppError, match=message):
        client.predict("net", handle_file(images / name), api_name="/filters")
    with pytest.raises(AppError, match=message):
        client.predict("net", handle_file(images / name), api_name="/feature_maps")
    *labels, _, _, _ = client.predict(handle_file(images / "gray.png"), api_name="/classify")
    assert len(labels) == len(served_nets)


def test_bad_arguments_get_a_clear_error(client, images):
    from gradio_client import handle_file
    from gradio_client.exceptions import AppError

    with pytest.raises(AppError, match="no image"):
        client.predict(None, api_name="/classify")
    with pytest.raises(AppError, match="not in the list of choices"):
        client.predict("resnet50", handle_file(images / "gray.png"), api_name="/feature_maps")
    with pytest.raises(AppError, match="not in the list of choices"):  # fc has no kernels: not offered
        client.predict("fc", handle_file(images / "gray.png"), api_name="/filters")


def test_filters_and_feature_maps(client, images):
    from gradio_client import handle_file

    first, deeper, note, responses = client.predict("net_res_deep", handle_file(images / "cifar_like.png"), api_name="/filters")
    assert Image.open(first).size[0] > 0 and "32 kernels" in note
    assert [d["caption"] for d in deeper][0] == "resblocks.0.conv: 32x32 kernels (first 16x16)"
    assert all(Image.open(d["image"]).size[0] > 0 for d in deeper)
    assert [r["caption"] for r in responses][1:4] == ["hand-made: blur", "hand-made: vertical edges", "hand-made: horizontal edges"]
    first, deeper, note, responses = client.predict("net", None, api_name="/filters")  # kernels need no image
    assert Image.open(first).size[0] > 0 and [d["caption"] for d in deeper] == ["conv2: 8x16 kernels"] and responses == []
    maps = client.predict("net", handle_file(images / "cifar_like.png"), api_name="/feature_maps")
    assert [m["caption"] for m in maps] == ["input 3x32x32", "tanh: 16x32x32", "max_pool2d: 16x16x16", "tanh_1: 8x16x16",
                                            "max_pool2d_1: 8x8x8"]


def test_compare(client):
    table, _, _ = client.predict(api_name="/compare")
    rows = {row[0]: dict(zip(table["headers"], row)) for row in table["data"]}
    counts = {i.name: i.params for i in convhub.list_models()}
    assert set(rows) == set(convhub.ZOO)  # every net, the ones that are unavailable offline too
    assert all(rows[name]["params"] == counts[name] for name in rows)
    assert rows["net"]["source"].startswith("local folder")
    assert rows["net_width"]["source"].startswith(("bundled", "unavailable")) and "Hub offline" in rows["net_width"]["source"]
    assert table["headers"][:4] == ["net", "class", "params", "val_accuracy"]


def test_fifty_concurrent_classify_calls_are_all_answered(client, served_nets, images):
    from gradio_client import handle_file

    jobs = [client.submit(handle_file(images / "cifar_like.png"), api_name="/classify") for _ in range(50)]
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda job: job.result(timeout=120), jobs))
    assert len(results) == 50 and all(len(r) == len(served_nets) + 3 for r in results)


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (.ci/run installs it)")
def test_browser_upload_and_classify(server, served_nets, images, tmp_path):
    playwright = pytest.importorskip("playwright.sync_api")
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run"])
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(server, timeout=60_000)
            upload = page.locator("input[type=file]").first
            upload.wait_for(state="attached", timeout=60_000)
            upload.set_input_files(str(images / "cifar_like.png"))
            page.get_by_role("button", name="Classify").click(timeout=30_000)
            predictions = page.locator("[data-testid='label-output-value']")
            playwright.expect(predictions).to_have_count(len(served_nets), timeout=60_000)
            assert set(predictions.all_inner_texts()) <= {"airplane", "bird"}
            for name in served_nets:  # each net's Label heading and its row in the results table
                playwright.expect(page.get_by_text(f"{name} (", exact=False).first).to_be_visible()
                playwright.expect(page.get_by_text(name, exact=True).filter(visible=True).first).to_be_visible()
            playwright.expect(page.get_by_text(f"All {len(served_nets)} nets took")).to_be_visible()
            playwright.expect(page.get_by_text(f"{len(served_nets)} of {len(convhub.ZOO)} nets loaded")).to_be_visible()
            shot = Path(os.environ.get("CONVHUB_SCREENSHOT_DIR", tmp_path)) / "space_classify.png"
            shot.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(shot), full_page=True)
            assert shot.stat().st_size > 10_000

            # A file that is no image: a clear message on the page, and the page still classifies afterwards.
            page.get_by_role("button", name="Remove Image").first.click(timeout=30_000)
            page.locator("input[type=file]").first.set_input_files(str(images / "corrupt.jpg"))
            page.get_by_role("button", name="Classify").click(timeout=30_000)
            playwright.expect(page.get_by_text("cannot read corrupt.jpg as an image").first).to_be_visible(timeout=60_000)
            page.wait_for_timeout(1000)  # the message slides in
            page.screenshot(path=str(shot.with_name("space_bad_upload.png")))
        finally:
            browser.close()
