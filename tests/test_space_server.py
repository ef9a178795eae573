"""The Space as users and clients meet it: `python space/app.py` on a free port, offline, driven by gradio_client
and by headless Chromium (Playwright)."""

from __future__ import annotations

import concurrent.futures
import itertools
import json
import os
import re
import sys
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import convhub
import numpy as np
import pytest
from PIL import Image

from conftest import SpaceProcess

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "space"))
NETS = ["fc", "net", "net_res_deep"]
STARTUP_LIMIT_S = 180  # generous: a busy 2-core machine imports torch + gradio slowly


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
    gradient = np.linspace(0, 255, 7000, dtype=np.uint8)  # 49 megapixels: just under convhub's limit
    Image.fromarray(np.stack([np.broadcast_to(gradient, (7000, 7000))] * 3, axis=-1)).save(folder / "huge.jpg", quality=60)
    Image.new("I;16", (13000, 13000)).save(folder / "too_many_pixels.png", compress_level=9)  # 169 MP in ~500 KB
    Image.fromarray(rng.integers(0, 255, (40, 40, 3), dtype=np.uint8)).save(
        folder / "broken_exif.jpg", exif=b"Exif\x00\x00NOT A TIFF HEADER AT ALL")
    (folder / "corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    (folder / "bomb.png").write_bytes(decompression_bomb())
    (folder / "notes.txt").write_text("not an image")
    return folder


@pytest.fixture(scope="module")
def server_log(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("log") / "app.log"


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory) -> Path:
    """Fresh nets for NETS, and a net_width whose weights hold NaN (refused: it must come from the bundle)."""
    from safetensors.torch import save_file

    models = tmp_path_factory.mktemp("models")
    for name in NETS:
        convhub.create(name).save_pretrained(models / name)
    convhub.create("net_width").save_pretrained(models / "net_width")
    state = {k: v.clone().fill_(float("nan")) if k == "fc2.bias" else v for k, v in convhub.create("net_width").state_dict().items()}
    save_file(state, models / "net_width" / "model.safetensors")
    return models


@pytest.fixture(scope="module")
def server(tmp_path_factory, server_log, models_dir):
    space = SpaceProcess(ROOT / "space" / "app.py", server_log, startup_limit_s=STARTUP_LIMIT_S, env={
        "CONVHUB_MODELS_DIR": str(models_dir), "HF_HUB_CACHE": str(tmp_path_factory.mktemp("hf-cache"))})
    yield space.url
    space.stop()


@pytest.fixture(scope="module")
def client(server):
    from gradio_client import Client

    return Client(server, verbose=False)


@pytest.fixture(scope="module")
def served_nets(client) -> list[str]:
    """Nets the app could load: the test's folder has NETS; others come from the weights bundled in space/models."""
    return [row["net"] for row in client.predict(api_name="/compare")["nets"]
            if not row["source"].startswith("unavailable")]


def classify(client, path) -> dict:
    from gradio_client import handle_file

    return client.predict(handle_file(path), api_name="/classify")


def test_offline_start_takes_seconds_and_says_where_the_nets_came_from(server, server_log, served_nets):
    """HF_HUB_OFFLINE: no Hub calls at all, so loading, warm-up and building the page take seconds (imports aside).
    The nets load after the page is up: the line comes when they are loaded (served_nets waited for them)."""
    for _ in range(600):
        line = next((line for line in server_log.read_text().splitlines() if "Ready in" in line), None)
        if line:
            break
        time.sleep(0.1)
    assert float(re.search(r"Ready in ([\d.]+) s", line).group(1)) < 60
    assert "nets loaded" in line and "from local folder" in line and "Hub offline (HF_HUB_OFFLINE)" in line
    assert "**" not in line  # a log is plain text


def test_endpoints_are_named_and_documented(client):
    endpoints = client.view_api(print_info=False, return_format="dict")["named_endpoints"]
    assert {"/classify", "/filters", "/feature_maps", "/translation", "/receptive_field", "/compare",
            "/skip_connections"} <= set(endpoints)
    parameters = {name: [p["parameter_name"] for p in info["parameters"]] for name, info in endpoints.items()}
    assert parameters["/classify"] == ["image"] and parameters["/receptive_field"] == ["net", "stage", "y", "x"]
    assert "airplane or bird" in endpoints["/classify"]["description"]


def test_the_mcp_server_lists_every_endpoint_as_a_described_tool(server):
    tools = {t["name"]: t for t in json.loads(urllib.request.urlopen(f"{server}gradio_api/mcp/schema").read())}
    assert {"classify", "filters", "feature_maps", "translation", "receptive_field", "compare",
            "skip_connections"} <= set(tools)
    properties = tools["receptive_field"]["inputSchema"]["properties"]
    assert list(properties) == ["net", "stage", "y", "x"]  # named as in the function, not param_0...
    assert properties["y"]["type"] == "integer" and "row" in properties["y"]["description"]
    assert "stage of that net" in properties["stage"]["description"]
    assert "image" in tools["classify"]["inputSchema"]["properties"]
    assert all(tool["description"] for tool in tools.values())


@pytest.mark.parametrize("name", ["cifar_like.png", "one_pixel.png", "gray.png", "palette.gif", "huge.jpg"])
def test_classify_any_image(client, served_nets, images, name):
    result = classify(client, images / name)
    assert list(result["nets"]) == served_nets and set(NETS) <= set(served_nets)
    for net in result["nets"].values():
        assert net["airplane"] + net["bird"] == pytest.approx(1, abs=1e-4)
        assert net["prediction"] == ("bird" if net["bird"] > net["airplane"] else "airplane")
    assert sum(result["votes"].values()) == len(served_nets) and result["vote"] in ("airplane", "bird")


def test_classify_agrees_with_the_package(client, models_dir, images):
    result = classify(client, images / "cifar_like.png")
    expected = convhub.load(models_dir / "net").predict(images / "cifar_like.png")
    assert result["nets"]["net"]["bird"] == pytest.approx(expected["bird"], abs=1e-5)
    assert result["nets"]["net"]["params"] == 18090


BAD_INPUTS = [("corrupt.jpg", "cannot read corrupt.jpg as an image"), ("notes.txt", "cannot read notes.txt as an image"),
              ("bomb.png", "cannot read bomb.png as an image: Image size .400000000 pixels. exceeds limit")]


@pytest.mark.parametrize("name, message", BAD_INPUTS)
def test_bad_files_get_a_clear_error_and_the_app_keeps_serving(client, served_nets, images, name, message):
    from gradio_client import handle_file
    from gradio_client.exceptions import AppError

    with pytest.raises(AppError, match=message):
        client.predict(handle_file(images / name), api_name="/classify")
    with pytest.raises(AppError, match=message):
        client.predict("net", handle_file(images / name), api_name="/feature_maps")
    with pytest.raises(AppError, match=message):
        client.predict(handle_file(images / name), api_name="/translation")
    assert len(classify(client, images / "gray.png")["nets"]) == len(served_nets)


def test_bad_arguments_get_a_clear_error(client, images):
    from gradio_client import handle_file
    from gradio_client.exceptions import AppError

    with pytest.raises(AppError, match="unknown or unavailable net 'resnet50'"):
        client.predict("resnet50", handle_file(images / "gray.png"), api_name="/feature_maps")
    with pytest.raises(AppError, match="'fc' has no convolutions, hence no kernels"):
        client.predict("fc", api_name="/filters")
    with pytest.raises(AppError, match="'pool9' is not a stage of this net"):
        client.predict("net", "pool9", 0, 0, api_name="/receptive_field")
    with pytest.raises(AppError, match=r"pool2 is 8×8: unit \(8, 0\) is outside it"):
        client.predict("net", "pool2", 8, 0, api_name="/receptive_field")


@pytest.mark.parametrize("arguments, message", [
    # taken as 1 before; Python's own words for the others; a 300-digit number and a 60 KB name came back whole
    (("net", "pool2", 1.5, 0), "y must be a whole number such as 3 (at most 9 digits), not 1.5"),
    (("net", "pool2", 0, True), "x must be a whole number such as 3 (at most 9 digits), not True"),
    (("net", "pool2", "x", 0), "y must be a whole number such as 3 (at most 9 digits), not 'x'"),
    (("net", "pool2", None, 0), "y must be a whole number such as 3 (at most 9 digits), not None"),
    (("net", "pool2", 1e300, 0), "y must be a whole number such as 3 (at most 9 digits), not 1e+300"),
    (("net", None, 0, 0), "stage must be text, such as 'pool2', not None"),
    (("net", "p" * 60_000, 0, 0), f"'{'p' * 59}... is not a stage of this net"),
    (({"a": 1}, "pool2", 0, 0), "net must be text, such as 'net', not {'a': 1}"),  # "unhashable type: 'dict'"
])
def test_an_api_argument_of_the_wrong_kind_is_named_in_the_error(server, arguments, message):
    kind, payload = call_raw(server, "receptive_field", list(arguments))
    assert (kind, payload["error"].split("; its stages")[0]) == ("error", message)


def test_whole_numbers_sent_as_floats_or_text_are_taken(server):
    """JSON clients send 3.0, and a hand-written curl "3": both mean the unit 3."""
    for y in (3, 3.0, "3"):
        kind, payload = call_raw(server, "receptive_field", ["net", "pool2", y, 2])
        assert kind == "complete" and payload[0]["unit"] == [3, 2]


def test_filters_and_feature_maps(client, images):
    from gradio_client import handle_file

    kernels = client.predict("net_res_deep", api_name="/filters")
    layers = kernels["layers"]
    assert [layer["name"] for layer in layers] == ["conv1", "block 3", "block 7", "block 10"]
    assert layers[0]["shape"] == [32, 3, 3, 3] and layers[0]["out_channels"] == 32 and len(layers[0]["weights"]) == 32
    assert layers[1]["shape"] == [32, 32, 3, 3] and layers[1]["params"] == 9216  # every kernel, never a crop
    assert layers[1]["batch_norm_params"] == 64 and layers[0]["batch_norm_params"] == 0
    maps = client.predict("net", handle_file(images / "cifar_like.png"), api_name="/feature_maps")
    assert [(s["name"], s["shape"]) for s in maps["stages"]] == [
        ("conv1 → tanh", [16, 32, 32]), ("pool1", [16, 16, 16]), ("conv2 → tanh", [8, 16, 16]), ("pool2", [8, 8, 8])]
    assert len(maps["stages"][0]["maps"]) == 4 and len(maps["stages"][0]["maps"][0]) == 32
    # the decimals promised, exactly (float32's rounding read back as -0.20499999821186066)
    weights, values = np.array(layers[0]["weights"]).ravel(), np.array(maps["stages"][0]["maps"]).ravel()
    assert np.any(weights != 0) and all(float(v) == round(float(v), 4) for v in weights)
    assert np.any(values != 0) and all(float(v) == round(float(v), 3) for v in values)


def test_translation_and_receptive_field(client, served_nets, images):
    from gradio_client import handle_file

    result = client.predict(handle_file(images / "cifar_like.png"), api_name="/translation")
    assert result["shifts"] == list(range(-8, 9)) and list(result["nets"]) == served_nets
    assert all(len(curve) == 17 and abs(sum(curve[8]) - 1) < 1e-4 for curve in result["nets"].values())
    conv, dense = result["first_layer"]["net"], result["first_layer"]["fc"]
    assert conv["stage"] == "conv1 → tanh" and conv["agreement"] == [1.0] * 17  # the map moved with the image
    assert dense["stage"] == "fc1 → tanh" and dense["agreement"][8] == 1.0 and max(dense["agreement"][:8]) < 1
    field = client.predict("net", "conv2 → tanh", 5, 5, api_name="/receptive_field")
    assert field["size"] == [8, 8] and field["box"] == {"top": 7, "left": 7, "bottom": 14, "right": 14}
    assert sum(map(sum, field["mask"])) == 64
    assert client.predict("net", "pool2", 2, 2, api_name="/receptive_field")["size"] == [10, 10]


def test_skip_connections(client):
    from gradio_client.exceptions import AppError

    result = client.predict(12, api_name="/skip_connections")
    assert result["blocks"] == 12 and len(result["with_skips"]) == len(result["without_skips"]) == 12
    assert all(value > 0 for value in result["with_skips"] + result["without_skips"])
    assert all(value == float(f"{value:.4g}") for value in result["with_skips"] + result["without_skips"])
    deep = client.predict(api_name="/skip_connections")  # net_res_deep100's depth by default
    spread = {key: max(deep[key]) / min(deep[key]) for key in ("with_skips", "without_skips")}
    assert deep["blocks"] == 100 and spread["without_skips"] > 1000 * spread["with_skips"]
    for blocks, message in ((0, "blocks must be 1 to 100, not 0"), (101, "blocks must be 1 to 100, not 101"),
                            (2.5, "blocks must be a whole number such as 3 (at most 9 digits), not 2.5")):
        with pytest.raises(AppError, match=re.escape(message)):
            client.predict(blocks, api_name="/skip_connections")


def test_compare(client):
    rows = {row["net"]: row for row in client.predict(api_name="/compare")["nets"]}
    counts = {i.name: i.params for i in convhub.list_models()}
    assert list(rows) == list(convhub.ZOO)  # every net, the ones that are unavailable offline too
    assert all(rows[name]["params"] == counts[name] for name in rows)
    assert rows["net"]["source"].startswith("local folder")
    assert rows["net_depth"]["source"].startswith(("bundled", "unavailable")) and "Hub offline" in rows["net_depth"]["source"]
    assert rows["fc"]["book_val_accuracy"] == 0.8


def test_a_hundred_concurrent_classify_calls_are_all_answered(server, served_nets, images):
    """100 clients at once, each uploading and calling over its own HTTP connections. (Through one gradio_client
    2.7.2, a job now and then ends in an empty CancelledError although the Space's answer sits in the client's
    queue: its consumer checks the shared stream's "complete" flag before reading what it already received. That
    race is the client's; benchmarks/space_load.py still counts it.)"""
    def one_client(_):
        uploaded = upload(server, images / "cifar_like.png")
        return call_raw(server, "classify", [{"path": uploaded, "meta": {"_type": "gradio.FileData"}}], timeout=300)

    with ThreadPoolExecutor(100) as pool:
        results = list(pool.map(one_client, range(100)))
    assert [kind for kind, _ in results] == ["complete"] * 100
    assert all(list(payload[0]["nets"]) == served_nets for _, payload in results)


def test_the_load_benchmarks_plain_http_client_speaks_the_spaces_protocol(server):
    """benchmarks/space_load.py's light client (upload, join, event stream over raw sockets): every call answered,
    as new visitors and as returning ones; a refused upload is reported as an error, not as an answer."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    import space_load

    latencies, errors, wall = space_load.raw_http_burst(server, 6)
    assert errors == [] and len(latencies) == 6 and all(0 < t <= wall for t in latencies)
    for _ in range(2):  # the same two visitors, calling again
        latencies, errors, _ = space_load.raw_http_burst(server, 2, visitors=["visitor-a", "visitor-b"])
        assert errors == [] and len(latencies) == 2
    latencies, errors, _ = space_load.raw_http_burst(server, 2, "/no_such_endpoint")
    assert latencies == [] and len(errors) == 2


def test_the_load_benchmarks_threaded_client_counts_failed_calls_instead_of_stopping(client):
    """Its gradio_client threads: the answers a second, and each failed call as an error (one gradio_client race
    stopped the whole benchmark with a traceback)."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    import space_load

    rate, errors = space_load.threaded(client, 2, 4)
    assert rate > 0 and errors == []
    rate, errors = space_load.threaded(client, 2, 3, "/no_such_endpoint")
    assert rate == 0 and len(errors) == 3 and all("no_such_endpoint" in error for error in errors)
    line = space_load.threaded_line(2, 3, rate, errors)
    assert line.startswith("2 gradio_client threads calling in turn: 0.0 answers/s (3 of 3 failed: ")
    assert space_load.error_text(concurrent.futures.CancelledError()) == "CancelledError"  # as gradio_client raises it
    assert space_load.error_text(ValueError("two\nlines")) == "ValueError: two lines"


# --- hostile requests (issue #8) -----------------------------------------------------------------------------------


def call_raw(url: str, endpoint: str, data: list, timeout: float = 60) -> tuple[str, object]:
    """A request as any HTTP client can send it, no gradio_client: POST /gradio_api/call/<endpoint>, then read its
    event stream. Returns ('complete' | 'error', the last data line, parsed)."""
    request = urllib.request.Request(f"{url}gradio_api/call/{endpoint}", data=json.dumps({"data": data}).encode(),
                                     headers={"Content-Type": "application/json"})
    event_id = json.loads(urllib.request.urlopen(request, timeout=timeout).read())["event_id"]
    stream = urllib.request.urlopen(f"{url}gradio_api/call/{endpoint}/{event_id}", timeout=timeout).read().decode()
    events = re.findall(r"^event: (\w+)\ndata: (.*)$", stream, flags=re.M)
    kind, payload = events[-1]
    return kind, json.loads(payload)


IMAGE_ENDPOINTS = {"classify": lambda image: [image], "feature_maps": lambda image: ["net", image],
                   "translation": lambda image: [image]}


@pytest.mark.parametrize("endpoint", list(IMAGE_ENDPOINTS))
def test_server_files_cannot_be_read_through_any_image_endpoint(server, endpoint, tmp_path):
    """A FileData without `meta` skipped Gradio's upload check: server images were classified, other paths told
    apart by their error. With `meta`, Gradio's own check refused them with no message at all (`"error": null`).
    Now every path outside the upload cache gets the same message, either way, and nothing is read."""
    import uploads

    secret = tmp_path / "secret.png"
    Image.fromarray(np.full((32, 32, 3), 200, np.uint8)).save(secret)
    fifo = tmp_path / "pipe.png"
    os.mkfifo(fifo)
    paths = [str(secret), "/etc/passwd", "/etc/hostname", str(tmp_path / "missing.png"), str(fifo), str(tmp_path),
             "/proc/self/environ", str(ROOT / "space" / "models" / "net" / "config.json"),
             f"{ROOT}/space/examples/../models/net/model.safetensors", "http://127.0.0.1:9/x.png", "file:///etc/passwd"]
    answers = []
    for path in paths:
        for marked in ({}, {"meta": {"_type": "gradio.FileData"}}):
            kind, payload = call_raw(server, endpoint, IMAGE_ENDPOINTS[endpoint]({"path": path, **marked}))
            answers.append((path, marked, kind, payload["error"] if kind == "error" else payload))
    assert [answer for answer in answers if answer[2:] != ("error", uploads.NOT_AN_UPLOAD)] == []


def test_a_fifo_path_does_not_block_a_worker(server, served_nets, images, tmp_path):
    """Two such calls used to freeze /classify (two workers blocked opening the FIFO for reading)."""
    from gradio_client import Client, handle_file

    fifo = tmp_path / "pipe.png"
    os.mkfifo(fifo)
    for _ in range(4):
        assert call_raw(server, "classify", [{"path": str(fifo)}], timeout=30)[0] == "error"
    result = Client(server, verbose=False).predict(handle_file(images / "gray.png"), api_name="/classify")
    assert len(result["nets"]) == len(served_nets)


def multipart(data: bytes, filename: str) -> tuple[bytes, str]:
    """An upload's body holding one file, and its Content-Type, as gradio_client and MCP clients send them."""
    import uuid

    boundary = uuid.uuid4().hex
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"files\"; filename=\"{filename}\"\r\n"
            "Content-Type: application/octet-stream\r\n\r\n").encode() + data + f"\r\n--{boundary}--\r\n".encode()
    return body, f"multipart/form-data; boundary={boundary}"


def upload(server: str, path: Path) -> str:
    """POST a file to the Space's upload endpoint, as gradio_client and MCP clients do; its server path."""
    body, content_type = multipart(path.read_bytes(), path.name)
    request = urllib.request.Request(f"{server}gradio_api/upload", data=body, headers={"Content-Type": content_type})
    [uploaded] = json.loads(urllib.request.urlopen(request, timeout=60).read())
    return uploaded


def test_an_uploaded_image_reaches_the_nets_through_raw_http(server, served_nets, images):
    """The legitimate path, by hand: upload, then name the uploaded file."""
    uploaded = upload(server, images / "gray.png")
    kind, payload = call_raw(server, "classify", [{"path": uploaded, "meta": {"_type": "gradio.FileData"}}])
    assert kind == "complete" and list(payload[0]["nets"]) == served_nets


def test_uploads_over_the_size_limit_get_a_clear_message(server):
    import urllib.error

    body, content_type = multipart(b"\0" * (11 * 2**20), "big.png")
    request = urllib.request.Request(f"{server}gradio_api/upload", data=body, headers={"Content-Type": content_type})
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(request, timeout=60)
    assert info.value.code == 413
    assert "exceeded maximum allowed size of 10485760 bytes" in info.value.read().decode()  # 10 MB


def test_images_with_too_many_pixels_are_refused_before_decoding(client, images):
    from gradio_client import handle_file
    from gradio_client.exceptions import AppError

    with pytest.raises(AppError, match="13000x13000 = 169 megapixels; convhub reads images of at most 50 megapixels"):
        client.predict(handle_file(images / "too_many_pixels.png"), api_name="/classify")


def test_broken_exif_is_classified(client, served_nets, images):
    from gradio_client import handle_file

    assert len(client.predict(handle_file(images / "broken_exif.jpg"), api_name="/classify")["nets"]) == len(served_nets)


def test_nan_weights_are_refused_and_the_bundled_net_serves_instead(client):
    rows = {row["net"]: row for row in client.predict(api_name="/compare")["nets"]}
    assert rows["net_width"]["source"].startswith("bundled") and "NaN or infinite" in rows["net_width"]["source"]


class RecordingProxy:
    """An HTTP(S) proxy on 127.0.0.1 that forwards nothing: it keeps the first line of every request it is sent
    (`CONNECT api.gradio.app:443 ...`) and answers 502."""

    def __init__(self):
        import socket
        import threading

        self.requests: list[str] = []
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:  # closed
                return
            with conn:
                conn.settimeout(5)
                try:
                    self.requests.append(conn.recv(4096).split(b"\r\n")[0].decode("latin-1"))
                    conn.sendall(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                except OSError:
                    pass

    def close(self) -> None:
        self.sock.close()


def test_the_space_sends_nothing_off_the_machine(tmp_path, images, models_dir):
    """Gradio's analytics were on: at start the Space asked api.gradio.app for Gradio's latest version (even with
    HF_HUB_OFFLINE=1) and, online, reported its launch. Every proxy variable here names a proxy that records what it
    is asked; only 127.0.0.1 is reached directly. The Hub (HF_ENDPOINT) is a closed port on this machine."""
    from conftest import free_port

    proxy = RecordingProxy()
    space = SpaceProcess(ROOT / "space" / "app.py", tmp_path / "app.log", startup_limit_s=STARTUP_LIMIT_S, env={
        "CONVHUB_MODELS_DIR": str(models_dir), "GRADIO_ANALYTICS_ENABLED": None, "HF_HUB_OFFLINE": None,
        "HF_ENDPOINT": f"http://127.0.0.1:{free_port()}", "HF_HUB_CACHE": str(tmp_path / "hf-cache"),
        **{name: proxy.url for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy",
                                        "all_proxy")},
        "NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost"})
    try:
        assert call_raw(space.url, "classify", [{"path": upload(space.url, images / "cifar_like.png"),
                                                 "meta": {"_type": "gradio.FileData"}}], timeout=120)[0] == "complete"
        deadline = time.monotonic() + 60
        while "Ready in" not in space.log() and time.monotonic() < deadline:
            time.sleep(0.2)
        time.sleep(3)  # Gradio's checks ran in threads of their own, within a second or two of the start
        config = json.load(urllib.request.urlopen(space.url + "config", timeout=10))
    finally:
        space.stop()
        proxy.close()
    assert "Ready in" in space.log()
    assert proxy.requests == []
    assert config["analytics_enabled"] is False


def test_queue_limit_and_clean_exit(tmp_path, images, models_dir):
    """A full queue answers at once with Gradio's "Queue is full"; SIGTERM removes the Space's own image folder
    (what goes in it, and its bounds, are tested in test_space_unit.py)."""
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    space = SpaceProcess(ROOT / "space" / "app.py", tmp_path / "app.log", startup_limit_s=STARTUP_LIMIT_S, env={
        "CONVHUB_MODELS_DIR": str(models_dir), "CONVHUB_QUEUE_SIZE": "1", "TMPDIR": str(tmp)},
        ignore_sigint=True)  # SIGTERM must still stop it
    try:
        assert len(list(tmp.glob("convhub-space-*"))) == 1  # the folder of the images the page shows
        uploaded = upload(space.url, images / "huge.jpg")

        def one_client(_):  # raw HTTP, one connection each (see the 100-call test)
            try:
                return call_raw(space.url, "classify", [{"path": uploaded, "meta": {"_type": "gradio.FileData"}}],
                                timeout=120)
            except urllib.error.HTTPError as error:  # refused at the door: 503 and why
                return f"HTTP {error.code}", error.read().decode()

        with ThreadPoolExecutor(12) as pool:
            results = list(pool.map(one_client, range(12)))
        errors = [str(payload) for kind, payload in results if kind != "complete"]
        assert errors and all("Queue is full" in e for e in errors), errors
        assert len(errors) < len(results)  # the ones that got in were answered
    finally:
        code = space.stop()
    assert code == 0 and list(tmp.glob("convhub-space-*")) == []
    assert "SIGTERM: closing the server." in space.log() and "Keyboard interruption" not in space.log()


def test_uploads_that_would_fill_the_disk_are_refused_until_the_cache_has_room(tmp_path, images, models_dir):
    """The upload cache was swept once a minute, and a visitor could put GBs on disk in between: an upload that finds
    the cache full of recent uploads now gets a 503 saying when to come back, and the Space serves meanwhile."""
    import urllib.error

    import uploads

    cache = tmp_path / "gradio"
    space = SpaceProcess(ROOT / "space" / "app.py", tmp_path / "app.log", startup_limit_s=STARTUP_LIMIT_S, env={
        "CONVHUB_MODELS_DIR": str(models_dir), "CONVHUB_UPLOAD_CACHE": "2mb", "GRADIO_TEMP_DIR": str(cache)})
    def post(body: bytes, content_type: str = "multipart/form-data; boundary=b") -> tuple[int, str]:
        request = urllib.request.Request(f"{space.url}gradio_api/upload", data=body,
                                         headers={"Content-Type": content_type})
        try:
            with urllib.request.urlopen(request, timeout=60) as answer:
                return answer.status, answer.read().decode()
        except urllib.error.HTTPError as error:
            return error.code, error.read().decode()

    def parts(count: int) -> bytes:  # empty files: no bytes, yet a block and a folder each on disk
        return b"".join(b"--b\r\nContent-Disposition: form-data; name=\"files\"; filename=\"%d.png\"\r\n\r\n\r\n"
                        % i for i in range(count)) + b"--b--\r\n"

    try:
        # what is not a part costs nothing: "--b" 2,000 times over made the cache look full for everyone
        assert post(b"--b" * 2000)[0] == 200
        first = upload(space.url, images / "gray.png")
        # Gradio takes 1000 files per upload; the Space 4 (the page and gradio_client send one), and none without a
        # boundary (Gradio's parser then splits the body on any "--", and no part was counted)
        assert post(parts(1000)) == (413, "An upload request may carry at most 4 files.")  # as text, not JSON
        assert post(parts(4))[0] == 200
        assert post(parts(4), "multipart/form-data; boundary=")[0] == 400
        assert len([f for f in cache.rglob("*") if f.is_file()]) < 20
        noise = tmp_path / "noise.png"
        refusals = []
        for i in range(6):  # 3 MB in all, each file different
            noise.write_bytes(os.urandom(2**19))
            try:
                upload(space.url, noise)
            except urllib.error.HTTPError as error:
                refusals.append((error.code, error.headers["Retry-After"], error.read().decode()))
        on_disk = sum(uploads.disk_bytes(f.lstat()) for f in cache.rglob("*"))
        assert refusals and all(r[:2] == (503, "60") for r in refusals), refusals
        assert all(r[2].startswith("The Space has taken in all the uploads") for r in refusals)  # text, not JSON
        assert "The Space has taken in all the uploads it can hold (2 MB)" in refusals[0][2]
        assert "try again in a minute" in refusals[0][2]
        examples = sum(f.stat().st_size for f in (ROOT / "space" / "examples").iterdir())
        assert on_disk <= 2 * 2**20 + 2**16 + examples  # at most a chunk over, and the examples' copies
        # a refused upload larger than the sockets' buffers: answered before its body was read, the client got a
        # reset instead of the message (the server stopped reading, then closed the connection)
        noise.write_bytes(os.urandom(9 * 2**20))
        with pytest.raises(urllib.error.HTTPError) as refused:
            upload(space.url, noise)
        assert refused.value.code == 503 and "try again in a minute" in refused.value.read().decode()
        kind, payload = call_raw(space.url, "classify", [{"path": first, "meta": {"_type": "gradio.FileData"}}])
        assert kind == "complete" and payload[0]["nets"]  # what is already uploaded still serves
    finally:
        space.stop()


def test_one_client_cannot_take_the_space_from_the_others(tmp_path, models_dir):
    """One address that floods the queue or fills the upload cache got everyone refused ("queue is full", "the Space
    has taken in all the uploads it can hold"). Now each address has its share of requests and of upload bytes, and
    is told when to come back (429, Retry-After); the others are served meanwhile. Clients are told apart here by
    X-Forwarded-For, as uvicorn reads it from a proxy on this machine."""
    import io

    space = SpaceProcess(ROOT / "space" / "app.py", tmp_path / "app.log", startup_limit_s=STARTUP_LIMIT_S, env={
        "CONVHUB_MODELS_DIR": str(models_dir), "GRADIO_TEMP_DIR": str(tmp_path / "gradio"),
        "CONVHUB_CLIENT_BURST": "8", "CONVHUB_CLIENT_RATE": "0.05", "CONVHUB_MAX_UPLOAD": "1mb",
        "CONVHUB_CLIENT_UPLOADS": "6mb", "CONVHUB_CLIENT_AT_ONCE": "100"})

    def upload_as(client: str, data: bytes):
        return post(space.port, "/gradio_api/upload", *multipart(data, "noise.png"), forwarded=client)

    try:
        # a body announced over the upload limit gets its 413 and takes nothing from the share (one such header
        # locked an address out, for 172 years with a Content-Length of 15 digits)
        import http.client

        connection = http.client.HTTPConnection("127.0.0.1", space.port, timeout=60)
        connection.putrequest("POST", "/gradio_api/upload")
        for name, value in {"Content-Type": "multipart/form-data; boundary=b", "Content-Length": "9" * 15,
                            "X-Forwarded-For": "198.51.100.3"}.items():
            connection.putheader(name, value)
        connection.endheaders()
        answer = connection.getresponse()
        assert answer.status == 413 and answer.read().decode().startswith("An upload may be at most")
        connection.close()
        assert upload_as("198.51.100.3", os.urandom(900_000))[0] == 200
        flooder, other = "198.51.100.1", "198.51.100.2"
        answers = [upload_as(flooder, os.urandom(900_000)) for _ in range(4)]
        assert [a[0] for a in answers] == [200, 200, 200, 429]
        status, text, retry_after, content_type = answers[3]
        assert text.startswith("Your uploads have filled your share of the Space's upload room (6 MB every "
                               "2 minutes). Try again in ") and content_type.startswith("text/plain")  # as the toast shows it
        assert 1 <= int(retry_after) <= 120 and text.endswith(f"Try again in {retry_after} s.")
        picture = io.BytesIO()
        Image.fromarray(np.random.default_rng(0).integers(0, 255, (500, 500, 3), dtype=np.uint8)).save(picture, "PNG")
        status, text, _, _ = upload_as(other, picture.getvalue())  # 750 KB
        assert status == 200  # its own share
        other_upload = json.loads(text)[0]
        # 3 uploads counted among the flooder's 8 requests: 5 more, then refused as JSON the page shows
        answers = [classify_as(space.port, other_upload, forwarded=flooder) for _ in range(7)]
        assert [a[0] for a in answers] == [200] * 5 + [429, 429], answers
        status, text, retry_after, _ = answers[-1]
        assert json.loads(text)["detail"] == (f"Too many requests from your address: the Space takes 8 at once from "
                                              f"one address, then 0.05 a second. Try again in {retry_after} s.")
        kind, payload = call_raw(space.url, "classify", [{"path": other_upload, "meta": {"_type": "gradio.FileData"}}])
        assert kind == "complete" and set(payload[0]["nets"]) >= set(NETS)  # the others are served
    finally:
        space.stop()


def test_one_client_cannot_queue_more_work_than_its_share(tmp_path, models_dir):
    """A 160 KB PNG of 49 MP takes ~1.5 s to decode: within its request rate, one address queued such requests faster
    than the Space did them (the page's decodes are two at a time), and everyone waited behind them, until the queue
    was full. Now an address may have so many waiting or running; the others are served meanwhile."""
    import urllib.error

    space = SpaceProcess(ROOT / "space" / "app.py", tmp_path / "app.log", startup_limit_s=STARTUP_LIMIT_S, env={
        "CONVHUB_MODELS_DIR": str(models_dir), "GRADIO_TEMP_DIR": str(tmp_path / "gradio"),
        "CONVHUB_CLIENT_AT_ONCE": "3", "CONVHUB_CLASSIFY_CONCURRENCY": "1"})
    heavy = tmp_path / "heavy.png"
    Image.new("RGB", (7000, 7000), (90, 120, 200)).save(heavy, compress_level=9)  # ~150 KB
    light = tmp_path / "light.png"
    Image.new("RGB", (32, 32), (90, 120, 200)).save(light)

    def classify_from(client: str, path: str) -> int:
        status, text, _, _ = classify_as(space.port, path, forwarded=client)
        if status == 429:
            assert json.loads(text)["detail"].startswith("Your address has 3 requests waiting, running or open")
        return status

    try:
        heavy_upload, light_upload = upload(space.url, heavy), upload(space.url, light)  # from this machine
        flood = [classify_from("198.51.100.1", heavy_upload) for _ in range(8)]
        assert flood[:3] == [200] * 3 and 429 in flood[3:], flood  # the first three are waiting or being decoded
        assert classify_from("198.51.100.2", light_upload) == 200  # another address is taken meanwhile
        kind, payload = call_raw(space.url, "classify", [{"path": light_upload, "meta": {"_type": "gradio.FileData"}}])
        assert kind == "complete" and payload[0]["nets"]

        # MCP tool calls from a client connecting directly (here from 127.0.0.2, which no proxy speaks for), then
        # given up: their tools run on as events Gradio's MCP server queues from 127.0.0.1. They counted as this
        # machine's (never limited), or, with the caller's X-Forwarded-For forwarded, as the address it named.
        # The operator's own work (never charged) is queued first, so that the tools' events wait behind it for
        # seconds, and the calls are given up only once their events are seen charged: a call given up before its
        # event was queued may never run, and an event run at once is charged for well under a second.
        def caller_refused() -> bool:
            """Whether a small upload from the caller is refused for its requests waiting or running (polled at
            4 a second, under the request rate: that refusal would say something else)."""
            status, text, _, _ = post(space.port, "/gradio_api/upload", *multipart(light.read_bytes(), "x.png"),
                                      source="127.0.0.2")
            assert status in (200, 429), (status, text)
            return status == 429 and text.startswith("Your address has 3 requests waiting, running or open")

        heavy_call = json.dumps({"data": [{"path": heavy_upload, "meta": {"_type": "gradio.FileData"}}]}).encode()
        for _ in range(8):  # decoded one at a time here (CONVHUB_CLASSIFY_CONCURRENCY=1)
            assert post(space.port, "/gradio_api/call/classify", heavy_call, "application/json")[0] == 200
        calls = [mcp_call_started(space.port, "127.0.0.2", "198.51.100.9", heavy_upload) for _ in range(3)]
        try:
            assert any(caller_refused() or time.sleep(0.25) for _ in range(240))  # the tools' events are queued
        finally:
            for call in calls:
                call.close()  # given up, the answers unread
        assert caller_refused()  # still waiting behind the operator's work
        assert classify_from("198.51.100.9", light_upload) == 200  # the address it named is not charged
    finally:
        space.stop()


def test_one_client_cannot_hold_open_more_mcp_sessions_than_its_share(server):
    """An MCP session is an event stream its client holds open as long as it likes, ~300 KB of the Space's memory:
    1000 opened from one address took 320 MB. They count among the address's requests waiting, running or open."""
    import http.client
    from urllib.parse import urlparse

    port = urlparse(server).port

    def open_session(client: str) -> tuple[int, http.client.HTTPConnection, str]:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        connection.request("GET", "/gradio_api/mcp/sse", headers={"X-Forwarded-For": client})
        answer = connection.getresponse()
        first = answer.read() if answer.status != 200 else answer.readline()
        return answer.status, connection, first.decode()

    sessions = []
    try:
        for _ in range(8):
            status, connection, first = open_session("198.51.100.40")
            sessions.append(connection)
            assert status == 200 and first.startswith("event: endpoint"), (status, first)
        status, refused, text = open_session("198.51.100.40")
        refused.close()
        assert status == 429 and json.loads(text)["detail"].startswith("Your address has 8 requests waiting, running or open")
        status, other, _ = open_session("198.51.100.41")  # another address is taken meanwhile
        other.close()
        assert status == 200
        sessions.pop().close()  # a session its client closes gives its place back
        assert opens_again(lambda: open_session("198.51.100.40"))
    finally:
        for connection in sessions:
            connection.close()


def opens_again(open_once) -> bool:
    """Whether ``open_once()`` ((status, connection, ...)) gets a 200 within 30 s, once a place is given back (the
    server sees a closed connection when it next writes to it)."""
    for _ in range(60):
        status, connection, *_ = open_once()
        connection.close()
        if status == 200:
            return True
        time.sleep(0.5)
    return False


@pytest.fixture(scope="module")
def tight_server(tmp_path_factory, models_dir):
    """The Space with small limits: 3 requests waiting, running or open, answers forgotten after 3 s unread, 3 event
    streams an address and 5 in all, the page state of 5 sessions, 4 s for a request's headers and 8 s for its
    body, 4 s for a client to read some of an answer whose buffers are full."""
    folder = tmp_path_factory.mktemp("tight")
    space = SpaceProcess(ROOT / "space" / "app.py", folder / "app.log", startup_limit_s=STARTUP_LIMIT_S, env={
        "CONVHUB_MODELS_DIR": str(models_dir), "GRADIO_TEMP_DIR": str(folder / "gradio"),
        "CONVHUB_CLIENT_AT_ONCE": "3", "CONVHUB_UNREAD_S": "3", "CONVHUB_CLIENT_STREAMS": "3",
        "CONVHUB_MAX_STREAMS": "5", "CONVHUB_SESSIONS": "5", "CONVHUB_HEADERS_S": "4", "CONVHUB_BODY_S": "8",
        "CONVHUB_SEND_S": "4"})
    deadline = time.monotonic() + STARTUP_LIMIT_S
    while "Ready in" not in space.log() and time.monotonic() < deadline:  # the nets load after the page is served:
        time.sleep(0.2)  # their lines in the log are not any test's
    yield space
    space.stop()


MARKERS = itertools.count(424_240)  # component ids no test asks for


def log_until_now(space: SpaceProcess, since: int) -> str:
    """The Space's log from ``since`` up to a line it is asked to write now (a request for a component the page does
    not have, whose failure it logs): all that the requests before it wrote, however long that took. A sleep and then
    an absent line passed however late the line would have come."""
    marker = next(MARKERS)
    ask = {"session_hash": "marker", "component_id": marker, "fn_name": "marker", "data": None}
    assert post(space.port, "/gradio_api/component_server", json.dumps(ask).encode(), "application/json")[0] == 500
    deadline = time.monotonic() + 60
    while f"KeyError: {marker}" not in (log := space.log()) and time.monotonic() < deadline:
        time.sleep(0.05)
    end = log.find(f"KeyError: {marker}")
    assert end >= 0, f"the marker {marker} did not reach the log:\n{log[since:]}"
    return log[since:log.rindex("POST /gradio_api/component_server failed", 0, end)]


def page_event(space: SpaceProcess, listener: str, data: list, session: str) -> tuple[bool, object]:
    """One of the page's events, as the page sends it: joined to the queue under the page's ``session``, its answer
    read from the session's stream; (success, output)."""
    config = json.loads(urllib.request.urlopen(f"{space.url}config", timeout=30).read())
    [fn_index] = [i for i, dependency in enumerate(config["dependencies"]) if dependency.get("api_name") == listener]
    request = urllib.request.Request(f"{space.url}gradio_api/queue/join", headers={"Content-Type": "application/json"},
                                     data=json.dumps({"data": data, "fn_index": fn_index, "session_hash": session,
                                                      "event_data": None, "trigger_id": None}).encode())
    event_id = json.loads(urllib.request.urlopen(request, timeout=30).read())["event_id"]
    with urllib.request.urlopen(f"{space.url}gradio_api/queue/data?session_hash={session}", timeout=60) as stream:
        for line in stream:
            message = json.loads(line[5:]) if line.startswith(b"data:") else {}
            if message.get("msg") == "process_completed" and message.get("event_id") == event_id:
                return message["success"], message["output"]
    raise AssertionError(f"no answer to {listener} on its stream")


def test_a_page_whose_session_state_was_dropped_keeps_working(tight_server):
    """Gradio keeps the page state (a layer list set for the net, a slider's range) of the CONVHUB_SESSIONS most
    recently active sessions, and every API call is a session: 1,100 calls from one address, within its limits,
    dropped a visitor's, and every move on its Receptive field tab then failed with "Value: block 50 is not in the
    list of choices: []". The layer and the unit are now checked against the net itself."""
    visitor = "receptive-field-visitor"
    success, output = page_event(tight_server, "rf_controls", ["net"], visitor)  # the tab opens: layers for `net`
    assert success, output
    first = output["data"][0]["choices"][0][0]  # the first conv's map is the largest: 32x32
    assert page_event(tight_server, "rf_sliders", ["net", first], visitor)[0]
    assert page_event(tight_server, "rf_ui", ["net", first, 20, 25, None], visitor)[0]
    for n in range(8):  # other sessions, more than the Space keeps
        assert page_event(tight_server, "rf_controls", ["net"], f"another-page-{n}")[0]
    success, output = page_event(tight_server, "rf_ui", ["net", first, 20, 25, None], visitor)
    assert success, output
    assert "unit (20, 25)" in output["data"][2]
    success, output = page_event(tight_server, "rf_ui", ["net", "block 50", 3, 3, None], visitor)
    assert success and output["data"][2].startswith("⚠️"), output  # a layer the net does not have: said so


def test_a_refused_upload_leaves_the_upload_check_and_the_sliders_lenient_for_the_session(server, tmp_path):
    """A handler's update of a component gives the session a new instance of its class: with the check set on one
    instance, one refused upload (the box set back to the last good image) let the same page then send any server
    path, which was classified and served back; and the Receptive field's sliders, their ranges updated, failed
    again on a value being typed."""
    import types

    space, visitor = types.SimpleNamespace(url=server), "refused-twice"
    corrupt = tmp_path / "corrupt.png"
    corrupt.write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    for _ in range(2):
        sent = {"path": upload(server, corrupt), "orig_name": "corrupt.png", "meta": {"_type": "gradio.FileData"}}
        success, output = page_event(space, "classify_ui", [sent, None], visitor)
        assert success and "cannot read corrupt.png" in output["data"][3], output
    secret = tmp_path / "secret.png"
    Image.new("RGB", (40, 40), (200, 30, 30)).save(secret)
    success, output = page_event(space, "classify_ui", [{"path": str(secret), "orig_name": "x.png"}, None], visitor)
    assert not success and "not uploaded to the Space" in json.dumps(output), output
    success, output = page_event(space, "rf_enter", ["net", None], visitor)  # the tab opens: the sliders' ranges
    assert success, output
    stage = output["data"][0]["value"]
    for typed in (None, "", "-"):
        success, output = page_event(space, "rf_ui", ["net", stage, typed, 3, None], visitor)
        assert success and output["data"] == [{"__type__": "update"}] * 3, output  # the pictures stay
    success, output = page_event(space, "rf_ui", ["net", stage, 99, 3, None], visitor)
    assert success and "unit (15, 3)" in output["data"][2], output  # brought into the map


def open_stream(port: int, path: str, client: str | None, headers: dict | None = None):
    """GET ``path`` as ``client`` (None: this machine itself); (status, connection, the answer, its text if refused)."""
    import http.client

    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    connection.request("GET", path, headers={**({"X-Forwarded-For": client} if client else {}), **(headers or {})})
    answer = connection.getresponse()
    return answer.status, connection, answer, (answer.read() if answer.status != 200 else b"").decode()


def test_one_client_cannot_hold_open_more_event_streams_than_its_share(tight_server):
    """A page's heartbeat is an event stream held as long as its client likes, and any session name opens one:
    20,000 from one address took every file descriptor of the Space, and pages stopped loading. An address holds at
    most so many streams, and all addresses together at most so many (a 503 beyond, this machine's too)."""
    port, held = tight_server.port, []
    try:
        for n in range(3):
            status, connection, _, _ = open_stream(port, f"/gradio_api/heartbeat/page{n}", "198.51.100.80")
            held.append(connection)
            assert status == 200
        status, refused, _, text = open_stream(port, "/gradio_api/heartbeat/page3", "198.51.100.80")
        refused.close()
        assert status == 429 and json.loads(text)["detail"].startswith("Your address has 3 event streams open")
        for client in ("198.51.100.81", "198.51.100.82"):  # other addresses are served, up to 5 streams in all
            status, connection, _, _ = open_stream(port, f"/gradio_api/heartbeat/{client}", client)
            held.append(connection)
            assert status == 200
        for client in ("198.51.100.83", None):
            status, refused, _, text = open_stream(port, "/gradio_api/heartbeat/late", client)
            refused.close()
            assert status == 503 and "as many event streams open as it can keep" in json.loads(text)["detail"]
        assert open_stream(port, "/gradio_api/dev/reload", "198.51.100.83")[0] == 404  # Gradio's development mode
        held.pop(0).close()  # a stream its client closes gives its place back
        assert opens_again(lambda: open_stream(port, "/gradio_api/heartbeat/again", "198.51.100.83"))
    finally:
        for connection in held:
            connection.close()


def test_a_refused_upload_still_sending_is_held_as_one_of_its_clients_streams(tight_server):
    """A refused upload's body is read to its end before the refusal goes out (or its client got a reset instead),
    so a client dripping one holds a connection: it counts as one of the client's event streams while it lasts."""
    import socket

    client, held = "198.51.100.99", []
    upload = socket.create_connection(("127.0.0.1", tight_server.port), timeout=30)
    try:  # no boundary: refused at once, its announced megabyte never sent
        upload.sendall(b"POST /gradio_api/upload HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data\r\n"
                       b"Content-Length: 1000000\r\nX-Forwarded-For: " + client.encode() + b"\r\n\r\n--")
        time.sleep(1)
        statuses = []
        for n in range(3):
            status, connection, _, _ = open_stream(tight_server.port, f"/gradio_api/heartbeat/drip{n}", client)
            held.append(connection)
            statuses.append(status)
        assert statuses == [200, 200, 429], statuses  # 3 streams an address: the upload holds one
        upload.sendall(b"x" * (1_000_000 - 2))  # the rest of the body: read, dropped, then the refusal
        assert b"400" in upload.recv(200).split(b"\r\n")[0]
    finally:
        upload.close()
        for connection in held:
            connection.close()
    assert opens_again(lambda: open_stream(tight_server.port, "/gradio_api/heartbeat/drip-again", client))


def dripped(port: int, opening: bytes, drip: bytes, give_up_s: float = 60.0) -> tuple[bytes, bool]:
    """Sends ``opening``, then ``drip`` every half second, reading what comes back; (the answer, whether the server
    closed the connection before ``give_up_s``)."""
    import select
    import socket

    answer = b""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as connection:
        connection.sendall(opening)
        given_up = time.monotonic() + give_up_s
        while time.monotonic() < given_up:
            try:
                connection.sendall(drip)
                if select.select([connection], [], [], 0.5)[0]:
                    chunk = connection.recv(65536)
                    if not chunk:
                        return answer, True
                    answer += chunk
            except ConnectionError:  # reset: closed too
                return answer, True
    return answer, False


def still_open(connection) -> bool:
    """Whether the server has kept ``connection`` (an http.client one) open."""
    import socket

    try:
        return connection.sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) != b""
    except BlockingIOError:
        return True  # nothing to read, and not closed
    except ConnectionError:
        return False


def test_a_request_that_does_not_arrive_in_time_loses_its_connection(tight_server):
    """uvicorn read a request for as long as bytes kept coming: a header line, or a byte of a body the Space had
    already answered (a 413 for its announced size, the page for a GET), every few seconds held a connection and a
    file descriptor for good, counted nowhere. A request's headers must now arrive within CONVHUB_HEADERS_S, its
    body within CONVHUB_BODY_S of them; event streams, whose requests have arrived, stay open."""
    import socket

    port = tight_server.port
    status, stream, _, _ = open_stream(port, "/gradio_api/heartbeat/patient", "198.51.100.120")
    try:
        assert status == 200
        answer, closed = dripped(port, b"GET / HTTP/1.1\r\nHost: x\r\n", b"X-Drip: 1\r\n")
        assert closed and answer == b""
        answer, closed = dripped(port, b"POST /gradio_api/queue/join HTTP/1.1\r\nHost: x\r\nContent-Type: "
                                       b"application/json\r\nContent-Length: 1000000\r\n\r\n{", b" ")
        assert closed and answer.startswith(b"HTTP/1.1 413 "), answer[:200]
        answer, closed = dripped(port, b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 60000\r\n\r\n", b" ")
        assert closed and answer.startswith(b"HTTP/1.1 200 ") and b"</html>" in answer, answer[:200]
        assert still_open(stream)  # the heartbeat, past both deadlines
    finally:
        stream.close()
    # an upload too slow gets the Space's 408 before its connection goes (the connection's deadline came first)
    answer, closed = dripped(port, b"POST /gradio_api/upload HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data;"
                                   b" boundary=b\r\nContent-Length: 100000\r\n\r\n--b\r\n", b"x" * 100)
    assert closed and answer.startswith(b"HTTP/1.1 408 ") and b"must arrive within 8 s" in answer, answer[:300]
    # a request that arrives slowly, within its time, is served
    body = json.dumps({"data": [], "fn_index": 0, "session_hash": "slow"}).encode()
    with socket.create_connection(("127.0.0.1", port), timeout=30) as connection:
        for part in (b"POST /gradio_api/queue/join HTTP/1.1\r\nHost: x\r\n", b"Content-Type: application/json\r\n",
                     b"Content-Length: %d\r\n\r\n" % len(body), body[:10], body[10:]):
            connection.sendall(part)
            time.sleep(0.75)  # 3 s for the headers, 1.5 s for the body
        assert connection.recv(65536).startswith(b"HTTP/1.1 200 ")


def test_uvicorns_warnings_keep_to_the_logs_budget(tmp_path, models_dir):
    """uvicorn's loggers have handlers of their own: an `Upgrade: foo` header or a broken request line was a warning
    each (two for an upgrade), from anyone, past the budget of 60 records a minute the Space's log keeps to. (A
    Space of its own: the budget spent here would hide other tests' records for the rest of the minute.)"""
    import socket

    space = SpaceProcess(ROOT / "space" / "app.py", tmp_path / "app.log", startup_limit_s=STARTUP_LIMIT_S, env={
        "CONVHUB_MODELS_DIR": str(models_dir), "GRADIO_TEMP_DIR": str(tmp_path / "gradio")})
    try:  # from the first answer on: the server answers before Gradio's launch has returned
        for n in range(150):
            with socket.create_connection(("127.0.0.1", space.port), timeout=30) as connection:
                connection.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: foo\r\n\r\n"
                                   if n % 2 else b"GARBAGE\r\n\r\n")
                connection.recv(100)
        time.sleep(1)
        warned = [line for line in space.log().splitlines() if line.startswith("WARNING:")
                  and any(what in line for what in ("Invalid HTTP request", "upgrade request", "WebSocket library"))]
        assert any("Unsupported upgrade request" in line for line in warned)  # said, within the budget
        assert len(warned) <= 60, len(warned)  # of 225 records: 60 a minute (the rest counted when it ends)
    finally:
        space.stop()


def test_an_answer_its_client_stops_reading_loses_its_connection(tight_server):
    """A client that asked for a large file and read none of it held a connection, a file descriptor and megabytes
    of socket buffers for as long as it liked (20 of them held 57 MB). Once an answer's buffers are full, its client
    must read some of it within CONVHUB_SEND_S, or the connection is dropped."""
    import socket

    path = "/static/ffmpeg/ffmpeg-core.wasm"  # one of Gradio's own files, ~30 MB
    with urllib.request.urlopen(f"{tight_server.url}{path[1:]}", timeout=30) as answer:
        size = int(answer.headers["Content-Length"])
    assert size > 10 * 2**20
    with socket.socket() as connection:
        connection.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        connection.settimeout(30)
        connection.connect(("127.0.0.1", tight_server.port))
        connection.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        time.sleep(12)  # reading nothing, past the 4 s
        received = b""
        try:
            while chunk := connection.recv(2**20):
                received += chunk
        except ConnectionError:
            pass  # dropped, its buffered answer with it
    assert received.startswith(b"HTTP/1.1 200 ")
    assert len(received.partition(b"\r\n\r\n")[2]) < size  # the connection ended before the whole file came


def test_result_streams_of_sessions_gradio_does_not_know_get_its_answer_without_a_traceback(tight_server):
    """Gradio's routes send "session not found" and then raise: two ~40-line tracebacks in the log (~7 KB) for every
    such stream, from anyone who asks. The Space sends the same answer itself, and the log stays quiet."""
    logged = len(tight_server.log())
    for client in ("198.51.100.85", None):  # a visitor, and this machine (never charged)
        _, connection, answer, _ = open_stream(tight_server.port, "/gradio_api/queue/data?session_hash=nobody", client)
        message = json.loads(answer.read().decode().removeprefix("data: "))
        connection.close()
        assert message["msg"] == "unexpected_error" and message["session_not_found"] is True, message
        for route in ("/gradio_api/call/filters/", "/gradio_api/call/v2/filters/"):
            _, connection, answer, _ = open_stream(tight_server.port, route + "no-such-event", client)
            assert answer.read().decode().splitlines()[:2] == ["event: error", 'data: "404: Not Found"'], route
            connection.close()
    _, connection, _, text = open_stream(tight_server.port, "/gradio_api/queue/data", "198.51.100.85")
    connection.close()
    assert "Field required" in text  # no session named: Gradio's own answer, a 422
    assert "Traceback" not in log_until_now(tight_server, logged)


def test_a_request_gradio_fails_on_gets_a_clear_500_and_its_traceback_is_logged_once(tight_server):
    """An unknown API name was a 500 and ~5 KB of traceback in the log, from anyone, as fast as they could ask. The
    answer now names the failure, and a failure's traceback is logged the first time it comes from its place, then
    one line each time (here a component function asked of a component the page does not have: Gradio's KeyError)."""
    logged = len(tight_server.log())
    ask = {"session_hash": "page-1", "component_id": 99999, "fn_name": "anything", "data": None}
    for n in range(3):
        status, text, _, _ = post(tight_server.port, "/gradio_api/component_server", json.dumps(ask).encode(),
                                  "application/json", forwarded=f"198.51.100.9{n}")
        assert status == 500 and "could not handle this request: KeyError: 99999" in json.loads(text)["detail"], text
    log = log_until_now(tight_server, logged)
    repeats = r"^POST /gradio_api/component_server failed: KeyError: 99999 \(\S+:\d+\)$"
    assert len(re.findall(repeats, log, flags=re.M)) >= 2, log
    assert log.count("written in full once") <= 1 and len(log) < 8_000, log


def test_a_v2_call_whose_arguments_do_not_fit_is_a_422_naming_the_argument(tight_server):
    """Gradio's v2 route fits a call's named arguments to its endpoint and raises where they do not fit: a 500 "could
    not handle this request" and a line in the log, for the caller's mistake."""
    logged = len(tight_server.log())
    tail = ". GET /gradio_api/info lists its parameters."
    for body, reason in ((b"{}", "No value provided for required argument: image"),
                         (b'{"image": null, "colour": 1}', "Parameter `colour` is not a valid key-word argument"),
                         (json.dumps({"x" * 5000: 1}).encode(), "Parameter `" + "x" * 187),
                         (b'{"a Please click b": 1}', "Parameter `a Please click b` is not a valid key-word argument")):
        status, text, _, _ = post(tight_server.port, "/gradio_api/call/v2/classify", body, "application/json",
                                  forwarded="198.51.100.96")
        assert status == 422, (status, text)
        detail = json.loads(text)["detail"]
        assert detail.startswith(f"The arguments do not fit /classify: {reason}") and detail.endswith(tail), detail
        assert len(detail) < 400, detail
    image = {"path": upload(tight_server.url, ROOT / "space" / "examples" / "cifar_bird_0001.jpg"),
             "meta": {"_type": "gradio.FileData"}}
    status, text, _, _ = post(tight_server.port, "/gradio_api/call/v2/classify", json.dumps({"image": image}).encode(),
                              "application/json", forwarded="198.51.100.96")
    assert status == 200, text  # a call that fits is queued, and answered
    event = json.loads(text)["event_id"]
    _, connection, answer, _ = open_stream(tight_server.port, f"/gradio_api/call/classify/{event}", "198.51.100.96")
    result = answer.read().decode()
    connection.close()
    assert result.startswith("event: complete") and '"net_res_deep100"' in result, result[:300]
    # read again: Gradio keeps the event's message queue, and the stream waited for ever on heartbeats (every 15 s)
    _, connection, answer, _ = open_stream(tight_server.port, f"/gradio_api/call/classify/{event}", "198.51.100.96")
    assert answer.readline() == b"event: error\n" and answer.readline() == b'data: "404: Not Found"\n'
    connection.close()
    assert "failed" not in log_until_now(tight_server, logged)


def test_an_endpoint_or_event_the_space_does_not_have_is_a_404_that_says_where_to_look(tight_server):
    """An unknown API name or event number is the caller's mistake; Gradio's lookup raised, and it was a 500 "could
    not handle this request" and a line in the log for each."""
    logged = len(tight_server.log())
    for route in ("/gradio_api/call/no_such_api", "/gradio_api/run/no_such_api"):
        status, text, _, _ = post(tight_server.port, route, b'{"data": []}', "application/json",
                                  forwarded="198.51.100.95")
        assert status == 404, (status, text)
        assert json.loads(text)["detail"] == ("This Space has no API endpoint /no_such_api: GET /gradio_api/info lists "
                                              "its endpoints.")
    for session in ("page-999", None):  # a page's session, and none
        join = {"data": [], "fn_index": 999, **({"session_hash": session} if session else {})}
        status, text, _, _ = post(tight_server.port, "/gradio_api/queue/join" if session else "/gradio_api/run/predict",
                                  json.dumps(join).encode(), "application/json", forwarded="198.51.100.95")
        assert (status, json.loads(text)["detail"]) == (404, "This Space has no event number 999: GET /config lists its "
                                                             "events."), text
    # a name's characters that print nothing (a right-to-left mark) come back as U+FFFD, and not in the log
    status, text, _, _ = post(tight_server.port, "/gradio_api/call/a%E2%80%AEb", b'{"data": []}', "application/json",
                              forwarded="198.51.100.95")
    assert status == 404 and "/a\ufffdb:" in json.loads(text)["detail"], text
    status, text, _, _ = post(tight_server.port, "/gradio_api/call/v2/a%E2%80%AEb%1Bc", b"{}", "application/json",
                              forwarded="198.51.100.95")
    assert status == 400 and json.loads(text)["detail"].startswith("Bad request path or query: InvalidURL"), text
    for route in ("/gradio_api/call/v2/a%E2%80%AEb", "/gradio_api/call/v2/a%E2%80%AEb/"):  # Gradio's KeyError
        status, text, _, _ = post(tight_server.port, route, b"{}", "application/json", forwarded="198.51.100.95")
        assert (status, json.loads(text)["detail"]) == (404, "This Space has no API endpoint /a\ufffdb: GET "
                                                             "/gradio_api/info lists its endpoints."), text
    log = log_until_now(tight_server, logged)
    assert "\u202e" not in log and "\x1b" not in log
    assert "failed" not in log  # the caller's mistakes, not the Space's failures
    assert "no_such_api" not in log and "999" not in log
    logged = len(tight_server.log())
    with urllib.request.urlopen(f"{tight_server.url}gradio_api/info", timeout=30) as listing:
        assert "/classify" in json.loads(listing.read())["named_endpoints"]  # where the answer sends the caller
    log = log_until_now(tight_server, logged)
    assert "no_such_api" not in log and "999" not in log


def test_host_headers_gradio_cannot_read_get_a_clear_400_and_queue_no_event(tight_server):
    """Gradio builds its URLs from X-Forwarded-Host (or X-Gradio-Server): one it could not parse made every page a 500
    with ~7 KB of log, and an event queued with it failed before it ran, its client's stream left open unanswered."""
    for headers in ({"X-Forwarded-Host": "[::1"}, {"X-Gradio-Server": "http://a.example:b"}):
        status, connection, _, text = open_stream(tight_server.port, "/config", "198.51.100.94", headers)
        connection.close()
        assert status == 400, (status, text)
        assert json.loads(text)["detail"].startswith("Bad Host, X-Forwarded-Host or X-Gradio-Server header: InvalidURL"), text
    config = json.loads(urllib.request.urlopen(f"{tight_server.url}config", timeout=30).read())
    [fn_index] = [i for i, event in enumerate(config["dependencies"]) if event.get("api_name") == "compare_ui"]
    join = json.dumps({"data": [], "fn_index": fn_index, "session_hash": "bad-host", "event_data": None,
                       "trigger_id": None}).encode()
    status, text, _, _ = post(tight_server.port, "/gradio_api/queue/join", join, "application/json",
                              forwarded="198.51.100.94", headers={"X-Forwarded-Host": "[::1"})
    assert status == 400 and "event_id" not in text, text
    status, connection, _, text = open_stream(tight_server.port, "/config", "198.51.100.94",
                                              {"X-Forwarded-Host": "convhub.example:443, proxy.example"})
    connection.close()
    assert status == 200  # a host Gradio can read, as a proxy sends it
    status, connection, _, text = open_stream(tight_server.port, "/", "198.51.100.94", {"X-Forwarded-Host": "a" * 2000})
    connection.close()
    assert status == 400 and "longer than 1024 bytes" in json.loads(text)["detail"], text  # parsed in ~35 ms per 15 KB
    mcp = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "tools/list"}).encode()
    status, text, _, _ = post(tight_server.port, "/gradio_api/mcp/", mcp, "application/json", forwarded="198.51.100.94",
                              accept="application/json, text/event-stream", headers={"X-Gradio-Server": "http://a:b"})
    assert status == 400 and json.loads(text)["error"]["message"].startswith("Bad Host"), text  # as MCP clients read
    status, text, _, content_type = post(tight_server.port, "/gradio_api/upload", b"--b--", "multipart/form-data; "
                                         "boundary=b", forwarded="198.51.100.94", headers={"X-Forwarded-Host": "[::1"})
    assert status == 400 and text.startswith("Bad Host") and content_type.startswith("text/plain"), text  # as the page


def test_file_ranges_gradio_cannot_split_are_ignored_and_a_range_echoes_no_cookie(tight_server):
    """Gradio splits a file='s Range itself: "bytes=1-2-3" and the like were a 500 and a traceback. Answering a range,
    it copied every request header into its answer, cookies and credentials too."""
    import http.client

    config = json.loads(urllib.request.urlopen(f"{tight_server.url}config", timeout=30).read())
    example = re.search(r'"path": "(/[^"]+\.jpg)"', json.dumps(config)).group(1)  # a file the Space serves
    whole = urllib.request.urlopen(f"{tight_server.url}gradio_api/file={example}", timeout=30).read()

    def fetch(byte_range: str) -> tuple[int, bytes, dict]:
        connection = http.client.HTTPConnection("127.0.0.1", tight_server.port, timeout=30)
        try:
            connection.request("GET", f"/gradio_api/file={example}", headers={
                "Range": byte_range, "Cookie": "session=secret", "Authorization": "Bearer secret",
                "X-Forwarded-For": "198.51.100.95"})
            answer = connection.getresponse()
            return answer.status, answer.read(), {name.lower(): value for name, value in answer.getheaders()}
        finally:
            connection.close()

    logged = len(tight_server.log())
    for byte_range in ("bytes=1-2-3", "bytes=0-1,3-4", "bytes=\u00b2-\u00b3", "bytes=x-y"):
        status, body, _ = fetch(byte_range)
        assert (status, body) == (200, whole), byte_range
    status, body, headers = fetch("bytes=0-9")
    assert (status, body) == (206, whole[:10]) and headers["content-range"] == f"bytes 0-9/{len(whole)}"
    assert "secret" not in json.dumps(headers), headers
    time.sleep(1)
    assert "failed" not in tight_server.log()[logged:]


def test_a_failure_in_gradios_outer_middleware_is_logged_once_too(tight_server):
    """Gradio's CORS middleware, outside the Space's, reads the Host header, which HTTP/1.0 need not send: with an
    Origin and no Host every request was a 500 and uvicorn's 2-7 KB traceback, unlimited (GETs are not charged)."""
    import socket

    def without_host(request: bytes) -> bytes:
        with socket.create_connection(("127.0.0.1", tight_server.port), timeout=30) as connection:
            connection.sendall(request + b"Origin: http://a.example\r\nX-Forwarded-For: 198.51.100.98\r\n\r\n")
            return b"".join(iter(lambda: connection.recv(65536), b""))

    for request in (b"GET /config HTTP/1.0\r\n", b"OPTIONS /config HTTP/1.0\r\nAccess-Control-Request-Method: GET\r\n"):
        without_host(request)  # the first of each may be written in full
        time.sleep(1)
        logged = len(tight_server.log())
        for _ in range(3):
            assert without_host(request).startswith(b"HTTP/1.1 500"), request
        time.sleep(1)
        log = tight_server.log()[logged:]
        assert "Traceback" not in log and 0 < len(log) < 1_500, log


def test_an_event_given_the_wrong_inputs_costs_the_log_no_more_than_a_line(tight_server):
    """Gradio printed the traceback of an event whose inputs it could not take, its message echoing them: 30 KB sent
    were 31.6 KB of log, each time."""
    logged = len(tight_server.log())
    for n in range(3):  # one input where the net and the image are wanted
        success, output = page_event(tight_server, "feature_maps", ["x" * 30_000], f"echo-{n}")
        assert not success, output
    time.sleep(1)
    log = tight_server.log()[logged:]
    assert "x" * 2000 not in log and len(log) < 8_000, len(log)
    assert len(re.findall(r"^an event failed: ValueError: .+ \(\S+:\d+\)$", log, flags=re.M)) >= 2, log


def test_mcp_messages_the_sdk_refuses_cost_the_log_one_line(tight_server):
    """The MCP SDK logged each message it could not validate in ~90 lines (~6 KB), and others whole."""
    logged = len(tight_server.log())
    for n in range(3):
        status, text, _, _ = post(tight_server.port, "/gradio_api/mcp/", json.dumps(
            {"jsonrpc": "2.0", "id": n, "method": "y" * 30_000}).encode(), "application/json",
            forwarded=f"198.51.100.9{4 + n}", accept="application/json, text/event-stream")
        assert status == 200 and '"code":-32602' in text, text
    time.sleep(1)
    log = tight_server.log()[logged:]
    assert 0 < len(log) < 1_500 and len(log.splitlines()) <= 3, log


def test_the_space_fetches_no_url_and_answers_no_route_it_does_not_use(tight_server):
    """GET file=<http(s) URL> had Gradio fetch any public URL for whoever asked and stream it back (an open proxy);
    custom components' route printed each request's path to the log (60 KB for a 60 KB path)."""
    import http.client

    logged = len(tight_server.log())
    for method in ("GET", "HEAD"):
        connection = http.client.HTTPConnection("127.0.0.1", tight_server.port, timeout=30)
        connection.request(method, "/gradio_api/file=https://example.invalid/bird.png",
                           headers={"X-Forwarded-For": "198.51.100.97"})
        answer = connection.getresponse()
        assert answer.status == 403, method
        assert method == "HEAD" or "The Space fetches no URLs" in answer.read().decode()
        connection.close()
    long_id = "c" * 5000
    status, connection, _, _ = open_stream(tight_server.port, f"/gradio_api/custom_component/{long_id}/client/x/y.js",
                                           "198.51.100.97")
    connection.close()
    assert status == 404
    time.sleep(1)
    assert "c" * 100 not in tight_server.log()[logged:]


def test_result_streams_of_events_gradio_does_not_know_are_charged_as_requests(tight_server):
    """Gradio's answer to a result stream of an event it does not know is cheap, but not free, and it may wait
    behind the at-once cap: such streams are charged as requests, as the Space answers them."""
    statuses = []
    for _ in range(100):
        status, connection, _, _ = open_stream(tight_server.port, "/gradio_api/call/filters/no-such-event",
                                               "198.51.100.84")
        connection.close()
        statuses.append(status)
    assert statuses[0] == 200 and statuses[-1] == 429, statuses


def test_a_client_reading_its_answers_gets_its_whole_request_rate(tight_server):
    """Reading an answer opens a stream: charged as a request too, it halved a client's rate, and the stream, refused
    after the request that asked was taken, lost the answer (gradio_client raised a bare CancelledError at its 39th
    call in a row; a page reloads itself). 70 calls in a row, each read, from one address (60 at once, then 5 a
    second) are all answered."""
    from gradio_client import Client

    client = Client(tight_server.url, headers={"X-Forwarded-For": "198.51.100.95"}, verbose=False)
    for _ in range(70):
        assert client.predict("net", api_name="/filters")["net"] == "net"


def test_answers_left_unread_count_against_their_client_and_are_forgotten(tight_server):
    """Gradio keeps an event's answer until its client reads it: /filters of the 100-block net asked again and
    again, never read, took 2 MB each (+530 MB in a minute from one address, within its rate). An unread answer
    counts among its client's requests, and one left unread (here 3 s) is forgotten, so that the client can ask
    again and the memory comes back."""
    import http.client

    port = tight_server.port

    def ask(client: str) -> tuple[int, str]:
        status, text, _, _ = post(port, "/gradio_api/call/filters", json.dumps({"data": ["net"]}).encode(),
                                  "application/json", forwarded=client)
        return status, text

    def read(event_id: str, client: str) -> str:
        """The first event (not a heartbeat) of the event's result stream: complete, or error."""
        status, connection, answer, _ = open_stream(port, f"/gradio_api/call/filters/{event_id}", client)
        try:
            assert status == 200
            for line in answer:
                if line.startswith(b"event:") and line.strip() != b"event: heartbeat":
                    return line.decode().removeprefix("event:").strip()
            return ""
        except http.client.IncompleteRead:  # Gradio ends the stream of a session it does not know with an error
            return "ended early"
        finally:
            connection.close()

    answered = [ask("198.51.100.90") for _ in range(3)]
    assert [status for status, _ in answered] == [200] * 3, answered
    ids = [json.loads(text)["event_id"] for _, text in answered]
    # Another address is served meanwhile. Its answers, asked and read one after the other, come after the first
    # address's three (the queue serves first come, first): those have been answered by then, and are unread.
    for _ in range(2):
        status, text = ask("198.51.100.91")
        assert status == 200 and read(json.loads(text)["event_id"], "198.51.100.91") == "complete"
    status, text = ask("198.51.100.90")
    assert status == 429 and "an answer is open until it is read" in json.loads(text)["detail"], text
    mcp_call = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "filters",
                                                                                         "arguments": {"net": "net"}}})
    status, text, _, _ = post(port, "/gradio_api/mcp/", mcp_call.encode(), "application/json",
                              forwarded="198.51.100.90")  # an MCP client is told the same, as a JSON-RPC error
    assert status == 429 and json.loads(text)["error"]["message"].startswith("Your address has 3 requests"), text
    assert read(ids[0], "198.51.100.90") == "complete"  # an answer read gives its place back
    assert ask("198.51.100.90")[0] == 200
    for _ in range(60):  # the others, left unread for 3 s, are forgotten, and their places with them
        status, _ = ask("198.51.100.90")
        if status == 200:
            break
        time.sleep(0.5)
    assert status == 200
    assert read(ids[1], "198.51.100.90") == "error"  # forgotten: no answer to read


def mcp_call_started(port: int, source: str, forwarded: str, path: str):
    """An MCP call of classify on an upload of the Space (by its URL), from ``source``, under way: its answer, an event
    stream, has begun. The open connection is returned for the caller to give up (close) when it likes."""
    import http.client

    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "classify", "arguments": {
        "image": f"http://127.0.0.1:{port}/gradio_api/file={path}"}}}).encode()
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60, source_address=(source, 0))
    try:
        connection.request("POST", "/gradio_api/mcp/", body, {
            "Content-Type": "application/json", "Accept": "application/json, text/event-stream",
            "X-Forwarded-For": forwarded})
        answer = connection.getresponse()
        assert answer.status == 200 and answer.headers["Content-Type"].startswith("text/event-stream")
    except BaseException:
        connection.close()
        raise
    return connection


def post(port: int, path: str, body: bytes, content_type: str, *, source: str = "127.0.0.1",
         forwarded: str | None = None, accept: str | None = None,
         headers: dict | None = None) -> tuple[int, str, str | None, str]:
    """POST to the Space from ``source`` (another loopback address is a client no proxy speaks for), naming the
    client ``forwarded`` as a proxy on this machine would; (status, text, Retry-After, Content-Type)."""
    import http.client

    headers = {"Content-Type": content_type, **({"X-Forwarded-For": forwarded} if forwarded else {}),
               **({"Accept": accept} if accept else {}), **(headers or {})}
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60, source_address=(source, 0))
    try:
        connection.request("POST", path, body, headers)
        answer = connection.getresponse()
        return answer.status, answer.read().decode(), answer.headers["Retry-After"], answer.headers["Content-Type"]
    finally:
        connection.close()


def classify_as(port: int, upload_path: str, *, forwarded: str) -> tuple[int, str, str | None, str]:
    """Queue a classify of an upload of the Space's (POST /gradio_api/call/classify) for the client ``forwarded``."""
    data = json.dumps({"data": [{"path": upload_path, "meta": {"_type": "gradio.FileData"}}]}).encode()
    return post(port, "/gradio_api/call/classify", data, "application/json", forwarded=forwarded)


def test_images_sent_inline_to_mcp_are_counted_into_the_upload_cache(tmp_path, models_dir):
    """Gradio's MCP server writes each data: URI of a tool call into the upload cache, past the upload route's count:
    2,500 calls of 47 KB took a 200 MB cache to 243 MB, and every visitor's uploads were refused meanwhile."""
    import base64

    import uploads

    cache = tmp_path / "gradio"
    space = SpaceProcess(ROOT / "space" / "app.py", tmp_path / "app.log", startup_limit_s=STARTUP_LIMIT_S, env={
        "CONVHUB_MODELS_DIR": str(models_dir), "CONVHUB_UPLOAD_CACHE": "2mb", "GRADIO_TEMP_DIR": str(cache)})

    def feature_maps_inline(data: bytes) -> str:
        image = "data:image/png;base64," + base64.b64encode(data).decode()
        request = urllib.request.Request(f"{space.url}gradio_api/mcp/", data=json.dumps({
            "jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "feature_maps", "arguments": {
                "net": "nope", "image": image}}}).encode(), headers={"Content-Type": "application/json",
                                                                     "Accept": "application/json, text/event-stream"})
        with urllib.request.urlopen(request, timeout=60) as answer:
            return answer.read().decode()

    try:
        answers = [feature_maps_inline(os.urandom(40_000)) for _ in range(60)]  # 2.4 MB in all, each different
        refused = [a for a in answers if "The Space has taken in all the uploads it can hold (2 MB)" in a]
        assert "unknown or unavailable net 'nope'" in answers[0] and len(refused) >= 20, answers[-1]
        on_disk = sum(uploads.disk_bytes(f.lstat()) for f in cache.rglob("*"))
        examples = sum(f.stat().st_size for f in (ROOT / "space" / "examples").iterdir())
        assert on_disk <= 2 * 2**20 + 2**16 + examples
    finally:
        space.stop()


def test_a_url_naming_an_upload_of_this_space_is_read_from_disk(server, served_nets, images, tmp_path):
    """MCP clients upload the file first (upload_file_to_gradio), then pass its URL: it is this Space's own upload,
    read where it lies, never fetched. A URL naming a server file outside the upload cache is refused."""
    import uploads
    from urllib.parse import quote

    uploaded = upload(server, images / "gray.png")
    url = f"{server}gradio_api/file={quote(uploaded)}"
    kind, payload = call_raw(server, "classify", [{"path": url, "url": url, "meta": {"_type": "gradio.FileData"}}])
    assert kind == "complete" and list(payload[0]["nets"]) == served_nets
    secret = tmp_path / "secret.png"
    secret.write_bytes((images / "gray.png").read_bytes())
    for path in (str(secret), "/etc/passwd", f"{uploaded}/../../../../etc/passwd"):
        url = f"{server}gradio_api/file={quote(path)}"
        kind, payload = call_raw(server, "classify", [{"path": url, "url": url, "meta": {"_type": "gradio.FileData"}}])
        assert (kind, payload["error"]) == ("error", uploads.NOT_AN_UPLOAD), path


def test_urls_are_never_fetched(server):
    """With `meta`, Gradio downloaded an http(s) URL into its upload cache before any handler ran (41.9 MB were
    fetched and classified past the 10 MB upload limit). The Space takes uploads only."""
    import uploads

    for endpoint, data in IMAGE_ENDPOINTS.items():
        for url in ("http://127.0.0.1:9/bird.png", "https://example.invalid/bird.jpg"):
            kind, payload = call_raw(server, endpoint, data({"path": url, "url": url,
                                                             "meta": {"_type": "gradio.FileData"}}))
            assert (kind, payload["error"]) == ("error", uploads.NOT_AN_UPLOAD), (endpoint, url)


def test_request_bodies_are_bounded(server):
    """A 200 MB JSON body was accepted; now anything over the upload limit (+1 MB of framing) is refused from its
    Content-Length, before the body is read."""
    import http.client
    from urllib.parse import urlparse

    address = urlparse(server)
    connection = http.client.HTTPConnection(address.hostname, address.port, timeout=60)
    connection.putrequest("POST", "/gradio_api/call/classify")
    connection.putheader("Content-Type", "application/json")
    connection.putheader("Content-Length", str(200 * 2**20))
    connection.endheaders()
    connection.send(b'{"data": ["')  # a start, and no more
    answer = connection.getresponse()
    assert answer.status == 413 and "may be at most 64 KB" in json.loads(answer.read())["detail"]
    connection.close()


def test_json_requests_are_bounded_far_below_uploads(server, images):
    """A queued JSON request holds its body until it runs, several times over: 60 of 20 MB each took the Space from
    0.7 to 5.4 GB. The page's own are under 1 KB; only Gradio's upload route gets the upload-sized bound."""
    import base64
    import urllib.error

    def call(size: int) -> int:
        body = json.dumps({"data": ["net", "x" * size, 0, 0]}).encode()
        request = urllib.request.Request(f"{server}gradio_api/call/receptive_field", data=body,
                                         headers={"Content-Type": "application/json"})
        try:
            return urllib.request.urlopen(request, timeout=60).status
        except urllib.error.HTTPError as error:
            return error.code

    assert call(1000) == 200 and call(100 * 1024) == 413
    # MCP calls too: 100 of 3.7 MB each held 2 GB. A small image sent inline is classified; larger ones are uploaded.
    def mcp_classify(image: str):
        return urllib.request.Request(f"{server}gradio_api/mcp/", data=json.dumps({
            "jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "classify", "arguments": {
                "image": image}}}).encode(), headers={"Content-Type": "application/json",
                                                      "Accept": "application/json, text/event-stream"})

    small = "data:image/png;base64," + base64.b64encode((images / "cifar_like.png").read_bytes()).decode()
    assert len(small) < 10_000 and "'vote': " in urllib.request.urlopen(mcp_classify(small), timeout=120).read().decode()
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(mcp_classify(small + "A" * 100 * 1024), timeout=60)
    assert refused.value.code == 413  # as a JSON-RPC error that says what to do (it was a bare "Content Too Large")
    message = json.loads(refused.value.read())["error"]["message"]
    assert "at most 64 KB" in message and "upload_file_to_gradio" in message
    assert (images / "huge.jpg").stat().st_size > 100 * 1024
    assert upload(server, images / "huge.jpg")  # a file route: a body far larger than any JSON one


def test_out_of_range_numbers_are_clear_errors(server):
    request = urllib.request.Request(
        f"{server}gradio_api/call/receptive_field", headers={"Content-Type": "application/json"},
        data=b'{"data": ["net", "pool2", Infinity, 0]}')
    try:
        event_id = json.loads(urllib.request.urlopen(request, timeout=60).read())["event_id"]
    except urllib.error.HTTPError as error:  # refused as JSON by the server: also fine
        assert error.code in (400, 422)
        return
    stream = urllib.request.urlopen(f"{server}gradio_api/call/receptive_field/{event_id}", timeout=60).read().decode()
    assert "event: error" in stream and '"error": null' not in stream
