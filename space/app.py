"""ConvHub Space: chapter 8 of Deep Learning with PyTorch, taught with every net it builds.

`python space/app.py` serves on 127.0.0.1:7860 (GRADIO_SERVER_NAME / GRADIO_SERVER_PORT override). Spaces' reload
mode imports this module and looks for `demo`, so the page is built at import.

The page is built without torch (~1.4 s to import) from what find_zoo knows of each net; torch and the nets load in
a thread of their own (load_nets) while the server starts, and every handler waits for them.
"""

from __future__ import annotations

import time

STARTED = time.perf_counter()

import functools  # noqa: E402
import hashlib  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import os  # noqa: E402
import re  # noqa: E402
import signal  # noqa: E402
import sys  # noqa: E402
import threading  # noqa: E402
from concurrent.futures import Future  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import TYPE_CHECKING, Callable  # noqa: E402

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent)]  # the convhub package sits next to app.py on Spaces, next to space/ here
os.environ.setdefault("MPLBACKEND", "Agg")  # figures are drawn in worker threads, never shown in a window
# Gradio's analytics ask api.gradio.app for its latest version at every start (offline too) and report the launch:
# the Space calls nothing but the Hub unless its owner sets GRADIO_ANALYTICS_ENABLED=True.
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

from convhub import DataConfig, env  # noqa: E402
from convhub.errors import ConvHubError, shown  # noqa: E402

import uploads  # noqa: E402

# The operator's settings, all checked here, before anything starts (Gradio too, which reads GRADIO_SERVER_PORT with
# int() at import): a typo is one line naming the variable (the Space's log ends with it) instead of a traceback, or
# a page that cannot classify.
try:
    env.hub_endpoint()  # before huggingface_hub's import parses it (`http://[::1` was a traceback there)
    from convhub.hub import check_namespace, check_revision, hub_deadline_s

    # The Hub repos tried for the nets: a typo made them "unavailable" on the Compare tab, the bundled weights served.
    check_namespace(os.environ.get("CONVHUB_NAMESPACE") or None, "CONVHUB_NAMESPACE")
    check_revision(os.environ.get("CONVHUB_REVISION") or None, "CONVHUB_REVISION")
    MAX_UPLOAD = os.environ.get("CONVHUB_MAX_UPLOAD", "10mb")  # Gradio refuses larger uploads with a 413 and a message
    try:
        # Uploads' request bodies (limits.RequestLimits; JSON requests get far less): twice the upload limit, so that
        # an upload somewhat over it still reaches Gradio, whose refusal says what the limit is.
        MAX_BODY = 2 * uploads.size_in_bytes(MAX_UPLOAD) + 2**20
    except ValueError as error:
        raise ConvHubError(f"CONVHUB_MAX_UPLOAD must be {error}") from None
    try:
        # Gradio's upload cache on disk: uploads that would take it over are refused until its files age.
        UPLOAD_CACHE = uploads.size_in_bytes(os.environ.get("CONVHUB_UPLOAD_CACHE", "1gb"))
    except ValueError as error:
        raise ConvHubError(f"CONVHUB_UPLOAD_CACHE must be {error}") from None
    # What one client address may ask (limits.PerClient), so that one cannot take the Space from everyone: requests
    # for work at once, then a second (a visitor clicking through every tab sent 8 in a second, 28 in 10 s; one
    # clicking every 150 ms, 59 in 10 s), at most so many waiting, running or open (answers not yet read, MCP
    # sessions), and bytes of uploads every two minutes (the age under which the upload cache keeps them).
    # CONVHUB_CLIENT_BURST=0: no per-client limits (a proxy in front limits clients). On Spaces a client is the first
    # X-Forwarded-For address.
    CLIENT_BURST = env.number("CONVHUB_CLIENT_BURST", 60, minimum=0, maximum=10**6)
    CLIENT_RATE = env.number("CONVHUB_CLIENT_RATE", 5.0, minimum=0.01, maximum=10**6, kind=float)
    CLIENT_AT_ONCE = env.number("CONVHUB_CLIENT_AT_ONCE", 8, minimum=1, maximum=10**6)
    # Gradio keeps an answer until its client reads it: one left unread this long is forgotten.
    UNREAD_S = env.number("CONVHUB_UNREAD_S", 60.0, minimum=1, maximum=86400, kind=float)
    # Event streams (a page's heartbeat and queue stream, an API call's result) one address may hold open, and all
    # addresses together: each holds a file descriptor, and 20,000 heartbeats took every one the Space had. None:
    # half the process's file descriptors (main raises its soft limit to the hard one), at most 10,000 (~380 MB).
    CLIENT_STREAMS = env.number("CONVHUB_CLIENT_STREAMS", 32, minimum=1, maximum=10**6)
    MAX_STREAMS = env.number("CONVHUB_MAX_STREAMS", None, minimum=1, maximum=10**7)
    try:
        CLIENT_UPLOADS = uploads.size_in_bytes(os.environ.get("CONVHUB_CLIENT_UPLOADS") or
                                               f"{max(UPLOAD_CACHE // 8, 2 * MAX_BODY)}b")
    except ValueError as error:
        raise ConvHubError(f"CONVHUB_CLIENT_UPLOADS must be {error}") from None
    if CLIENT_UPLOADS < 2 * MAX_BODY:  # half of it at once must take the largest upload
        raise ConvHubError(f"CONVHUB_CLIENT_UPLOADS must be at least four times CONVHUB_MAX_UPLOAD and 2 MB "
                           f"({2 * MAX_BODY // 2**20} MB), not {os.environ['CONVHUB_CLIENT_UPLOADS']!r}")
    CLIENT_ADDRESS = os.environ.get("CONVHUB_CLIENT_ADDRESS") or ("x-forwarded-for" if os.environ.get("SPACE_ID")
                                                                  else "connection")
    if CLIENT_ADDRESS not in ("connection", "x-forwarded-for"):
        raise ConvHubError(f"CONVHUB_CLIENT_ADDRESS must be connection or x-forwarded-for, not {CLIENT_ADDRESS[:40]!r}")
    # How long a request may take to arrive (connections.RequestDeadlines): its headers (30 s: nginx gives 60 s
    # between two reads), then its body (an upload's too: a 6 MB photo on a 0.45 Mbit/s uplink takes ~110 s).
    HEADERS_S = env.number("CONVHUB_HEADERS_S", 30.0, minimum=1, maximum=3600, kind=float)
    BODY_S = env.number("CONVHUB_BODY_S", 120.0, minimum=1, maximum=3600, kind=float)
    # ... and how long an answer may wait for its client to read it, once its buffers are full (nginx: 60 s).
    SEND_S = env.number("CONVHUB_SEND_S", 60.0, minimum=1, maximum=3600, kind=float)
    # Requests waiting beyond this get "Queue is full".
    QUEUE_SIZE = env.number("CONVHUB_QUEUE_SIZE", 256, minimum=1, maximum=10**6)
    # Gradio keeps a copy of the page's component configs per session (~120 KB here; every API call is a session of
    # its own), 10,000 sessions by default: up to 1.2 GB. The least recently active sessions beyond this are dropped.
    SESSIONS = env.number("CONVHUB_SESSIONS", 1000, minimum=1, maximum=10**6)
    # Classify requests decode their images side by side, then share one forward pass per net (inference.SharedBatches).
    CLASSIFY_CONCURRENCY = env.number("CONVHUB_CLASSIFY_CONCURRENCY", 16, minimum=1, maximum=1024)
    # Threads per request; None: inference.torch_threads divides the cores.
    TORCH_THREADS = env.number("CONVHUB_TORCH_THREADS", None, minimum=1, maximum=256)
    hub_deadline_s()  # read again at each download
    # The operator's own nets, tried before the Hub: a folder that is not there, or holds none of them (its parent
    # named by mistake), made every net come from the Hub or the bundle, with nothing in the log to say why.
    MODELS_DIR = os.environ.get("CONVHUB_MODELS_DIR") or None
    if MODELS_DIR is not None:
        from convhub.zoo import NETS as ZOO_NETS, saved_nets

        try:
            is_folder = Path(MODELS_DIR).is_dir()
        except OSError as error:  # a name too long for the system, a parent folder not readable: a traceback
            raise ConvHubError(f"CONVHUB_MODELS_DIR {shown(MODELS_DIR, 200)}: {error.strerror or error}") from None
        if not is_folder:
            raise ConvHubError(f"CONVHUB_MODELS_DIR must be a folder of the nets' save_pretrained folders; "
                               f"{shown(MODELS_DIR, 200)} is not a folder")
        if not saved_nets(MODELS_DIR):
            raise ConvHubError(f"CONVHUB_MODELS_DIR {shown(MODELS_DIR, 200)} holds none of the nets: it must hold a "
                               f"save_pretrained folder per net, named as the zoo names it ({', '.join(ZOO_NETS)})")
    SERVER_PORT = env.number("GRADIO_SERVER_PORT", 7860, minimum=1, maximum=65535)  # Gradio's own variable
except ConvHubError as error:
    sys.exit(f"error: {error}")

import gradio as gr  # noqa: E402
from convhub.zoo import pretrained_repo  # noqa: E402
from gradio import FileData  # noqa: E402
from starlette.middleware import Middleware  # noqa: E402

import chapter  # noqa: E402
import connections  # noqa: E402
import figures  # noqa: E402
import limits  # noqa: E402
import logs  # noqa: E402
from zoo_loader import (FoundNet, LoadedNet, as_plain_text, find_zoo, load_found, published_settings,  # noqa: E402
                        source_details, sources_summary)

if TYPE_CHECKING:
    import torch

# The nets' side, which imports torch: bound by load_nets, in the loading thread. Handlers use them only after
# waiting for that thread (Zoo), so the first page is served before torch is imported.
anatomy = inference = skips = None

EXAMPLES_DIR = uploads.EXAMPLES_DIR
TRANSLATION_FILE = "translation.json"  # written next to the trained nets by `python -m training translation`
STORE = uploads.ImageStore()
CONCURRENCY = 2  # requests the Space computes at once (the queue's default); torch gets the cores divided among them


def input_error(message: str) -> gr.Error:
    """How a bad input is reported: one message at the image on the page, an AppError through the API."""
    return gr.Error(message, title="Cannot use this input", print_exception=False)


class UploadedImage(gr.Image):
    """An image input that accepts only files uploaded to this Space (or our examples), and hands our handlers the
    path undecoded.

    Gradio skips its own upload-folder check for a file sent without ``meta``, and its preprocessing decodes the
    whole image before any size check (a 360 KB PNG of 13000x13000 pixels cost 3.4 GB). Our handlers open the path
    themselves, through convhub's bounded open_image. A class, not a preprocess set on one instance: a handler's
    update of the component (``gr.update(...)``) gives the session a new instance of the component's class, which
    had Gradio's own preprocess (one refused upload switched the check off for the rest of the session). As a
    template (``is_template``) the page draws it with Gradio's Image.
    """
    is_template = True

    def preprocess(self, payload):
        if payload is None:
            return None
        try:
            return str(uploads.checked_upload(payload.path))
        except uploads.UntrustedFileError as error:
            raise input_error(str(error)) from None


class TypedSlider(gr.Slider):
    """A slider whose figure follows what a visitor types into its box: every keystroke is sent, so an empty box,
    a lone "-" or a value on its way to another (1 of 128) reaches the handler as None or out of range, which it
    ignores or brings into range (`within`), instead of Gradio's bounds check failing the event (and with it the
    last value typed, which `always_last` was holding back). A class for the reason UploadedImage is one: the
    Receptive field tab updates its sliders' ranges. Each is made with ``buttons=[]`` (no __init__ here: Gradio reads
    a component's settings from its __init__'s signature): a reset sends no input event, and the box went back to its
    first value under the figure of the last one."""
    is_template = True

    def preprocess(self, payload) -> float | None:
        try:
            number = float(payload)
        except (TypeError, ValueError, OverflowError):
            return None
        return number if math.isfinite(number) else None


MAX_BLOCKS = 100  # the Skip connections tab's deepest stack: net_res_deep100's depth

# The Weight sharing tab's sliders' ranges, which its handler also brings values into: image side, channels, kernel
SIDES, CHANNELS, KERNELS = (1, 256), (1, 64), (1, 7)


def within(value, low: int, high: int) -> int | None:
    """A slider's value as a whole number in [low, high]; None for a value being typed (or NaN)."""
    if value is None or not math.isfinite(value):
        return None
    return min(max(int(round(value)), low), high)


def refuse_url_fetches() -> None:
    """Gradio downloads a file input given as an http(s) URL (with `meta`, or through the MCP server) into its upload
    cache before any handler runs, whatever its size. This Space fetches nothing: a URL that names one of its own
    uploads (`.../gradio_api/file=<path>`, what MCP clients pass after `upload_file_to_gradio`) is resolved to that
    file on disk, and any other URL gets the same answer as any other path that is not an upload."""
    from gradio import processing_utils

    async def own_upload_or_refuse(url: str, cache_dir: str) -> str:
        return local_upload(url)

    def local_upload(url: str) -> str:
        from urllib.parse import unquote, urlparse

        _, marker, named = unquote(urlparse(url).path).partition("/gradio_api/file=")
        if marker:
            try:
                return str(uploads.checked_upload(named))
            except uploads.UntrustedFileError:
                pass
        raise input_error(uploads.NOT_AN_UPLOAD)

    processing_utils.async_ssrf_protected_download = own_upload_or_refuse
    processing_utils.ssrf_protected_download = lambda url, cache_dir: local_upload(url)


def refuse_server_paths_clearly() -> None:
    """A file input marked as an upload (`meta`) that is not in the upload cache is refused by Gradio's own check
    before our preprocessing runs, with an error Gradio does not show (`"error": null` to an API client). It gets
    the message any other path that is not an upload gets."""
    from gradio import processing_utils
    from gradio.exceptions import InvalidPathError

    gradio_check = processing_utils._check_allowed

    def check_allowed(path, check_in_upload_folder: bool):
        try:
            return gradio_check(path, check_in_upload_folder)
        except InvalidPathError:
            if check_in_upload_folder:  # an input's path, before any handler (not a file the Space returns)
                raise input_error(uploads.NOT_AN_UPLOAD) from None
            raise

    processing_utils._check_allowed = check_allowed


refuse_url_fetches()
refuse_server_paths_clearly()


def api_errors(fn):
    """Our clear error messages as gr.Error (the API's AppError), keeping fn's signature and docstring: Gradio
    builds the API docs and the MCP tools' named, typed, described parameters from them."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except (ConvHubError, KeyError, ValueError, OSError, OverflowError, TypeError) as error:
            message = error.args[0] if isinstance(error, KeyError) and error.args else str(error)
            raise input_error(message) from None
    return wrapper


def api_name(value, what: str, example: str) -> str:
    """A name an API caller sends (a net, a stage): text, or an error saying so (a dict was "unhashable type")."""
    if not isinstance(value, str):
        raise ConvHubError(f"{what} must be text, such as {example!r}, not {shown(value)}")
    return value


def api_whole_number(value, what: str) -> int:
    """A whole number an API caller sends: an int, or a float or text holding one. True and 1.5 were taken as 1, and
    "x" or null answered in Python's words."""
    if isinstance(value, str) and re.fullmatch(r"\s*[+-]?\d{1,9}\s*", value):
        return int(value)
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e9:
        return int(value)
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) < 10**9:
        return value
    raise ConvHubError(f"{what} must be a whole number such as 3 (at most 9 digits), not {shown(value)}")


def upload_path(file: FileData | dict | str | None) -> str | None:
    """The server path of an API file input, which must be an upload of this Space (see uploads.checked_upload)."""
    if file is None:
        return None
    path = file.get("path") if isinstance(file, dict) else getattr(file, "path", file)
    return str(uploads.checked_upload(path))


def example_labels() -> list[tuple[str, str]]:
    """(path, true label) of each example; the label is read from the file name."""
    items = []
    for path in sorted(EXAMPLES_DIR.iterdir()):
        if path.suffix.lower() not in (".jpg", ".jpeg", ".png"):
            continue
        name = path.stem.lower()
        label = "bird" if "bird" in name else "airplane" if ("airplane" in name or "plane" in name) else None
        if label:
            items.append((str(path), label))
    return items


def example_caption(path: str, label: str) -> str:
    name = Path(path).stem
    return f"{label} (drawing)" if "drawing" in name else f"{label} (photo)" if "photo" in name else label


def read_translation_table(names: list[str]) -> dict | None:
    """The validation accuracy-vs-shift curves shipped next to the bundled nets, if any."""
    path = EXAMPLES_DIR.parent / "models" / TRANSLATION_FILE
    try:
        table = json.loads(path.read_text())
        table["accuracy"] = {k: v for k, v in table["accuracy"].items() if k in names}
        return table
    except (OSError, ValueError, KeyError, TypeError):
        return None


NO_NETS = "No net could be loaded here: the Compare tab says why."
TRANSLATION_EXAMPLE = "cifar_bird_0007.jpg"
CSS = (HERE / "style.css").read_text()  # the scoreboard, the tab bar on phones, the previews
# Gradio's 32 px on each side of the page took a sixth of a phone's width from every tab. Gradio scopes the css it is
# given to its container, inside that padding: only a style in the page's head reaches it.
HEAD = ("<style>@media (max-width: 640px) {.gradio-container > .app {padding-left: 12px !important;"
        " padding-right: 12px !important}}</style>")


@dataclass
class Zoo:
    """The loaded nets, and what the handlers need of them, worked out once."""
    nets: list[LoadedNet]
    threads: int  # torch threads per request

    def __post_init__(self):
        self.available = [net for net in self.nets if net.available]
        self.by_name = {net.name: net for net in self.available}
        import torch  # imported by now: this runs in load_nets

        self.conv_names = [net.name for net in self.available
                           if any(isinstance(m, torch.nn.Conv2d) for m in net.model.modules())]
        self.rows = {row["net"]: row for row in inference.compare_rows(self.nets)}
        self.batches = inference.SharedBatches(lambda x: inference.classify_batch(self.available, x))
        # Every move of the Translation slider redraws the same image's curves: 17 shifted copies through every net
        # (~140 ms, the 100-block net most of it). They are computed once per image, for the last 64 (~1 MB).
        self.translation = by_pixels(self._translation, maxsize=64)

    def _translation(self, x) -> tuple[dict, str]:
        """Each net's probabilities for ``x`` at every shift (inference.translation), and the nets' majority on the
        unshifted image, as plotted."""
        curves = inference.translation(self.available, x)
        unshifted = inference.SHIFTS.index(0)
        verdict = inference.Verdict({name: tuple(c[unshifted].tolist()) for name, c in curves.items()})
        return curves, verdict.winner


def by_pixels(compute: Callable, maxsize: int) -> Callable:
    """``compute(x, *args)`` for an image tensor ``x``, remembered for the last ``maxsize`` images by their pixels
    (the same picture sent twice, as a file or an upload, is one image). Arguments after ``x`` must be hashable."""

    @functools.lru_cache(maxsize=maxsize)
    def remembered(pixels: bytes, shape: tuple, dtype: str, *args):
        import torch

        return compute(torch.frombuffer(bytearray(pixels), dtype=getattr(torch, dtype)).view(shape), *args)

    def call(x, *args):
        return remembered(x.contiguous().numpy().tobytes(), tuple(x.shape), str(x.dtype).removeprefix("torch."), *args)

    return call


def build_demo(found: list[FoundNet], ready: Callable[[], Zoo]) -> gr.Blocks:
    """The page, from what find_zoo knows (no torch: a net's class, not its weights); every handler first gets the
    loaded nets from ``ready()``, which waits for them. A listed net that then fails to load is reported as
    unavailable by the handlers."""
    names = [net.name for net in found]
    inside_names = [net.name for net in found if net.architecture]
    conv_names = [net.name for net in found if net.has_convolutions]
    settings = published_settings()
    namespace = os.environ.get("CONVHUB_NAMESPACE") or settings.get("namespace")
    repos = {name: pretrained_repo(name, namespace) for name in names}
    examples = example_labels()
    truth = {hashlib.sha256(Path(p).read_bytes()).hexdigest(): label for p, label in examples}
    translation_table = read_translation_table(names)
    default_example = examples[0][0] if examples else None
    # Translation's own default: a bird the fully connected net loses at a few pixels' shift while every convnet
    # keeps it, as the validation curves below it show on average (the first example, an airplane, keeps fc's
    # confidence over 0.8 at every shift and showed the opposite of the tab's point)
    translation_example = next((p for p, _ in examples if Path(p).name == TRANSLATION_EXAMPLE), default_example)

    def model_of(net_name: str) -> torch.nn.Module | None:
        net = ready().by_name.get(net_name)
        return net.model if net is not None else None

    def stage_of(net_name: str, stage_name: str | None):
        """The named stage of a loaded net; None for an unavailable net or a stage it does not have (one of the
        previous net's, while the Layer list catches up)."""
        model = model_of(net_name)
        if model is None or not stage_name:
            return None
        try:
            return anatomy.stage(model, stage_name)
        except KeyError:
            return None

    def true_label(path: str | None) -> str | None:
        if not path:
            return None
        try:
            return truth.get(hashlib.sha256(Path(path).read_bytes()).hexdigest())
        except OSError:
            return None

    def input_or_default(path, example=default_example):
        """The Classify tab's image, or an example when there is none, so every explorer shows something."""
        return path or example

    # --- UI handlers: never raise; a bad input leaves the results as they were and says why at the image ---

    def classify_shown(path):
        """The 32x32 picture, the scoreboard and a message for an image: the Classify tab's outputs."""
        if path is None:
            return figures.seen_html(None), figures.empty_scoreboard_html(), ""
        zoo = ready()
        if not zoo.available:
            return gr.skip(), gr.skip(), f"⚠️ {NO_NETS}"
        try:
            verdict, x = inference.classify(zoo.available, path, zoo.batches)
        except inference.BadImageError as error:
            return gr.skip(), gr.skip(), f"⚠️ {as_plain_text(str(error))}"
        note = chapter.GREY_NOTE if inference.saturation(x) < 0.08 else ""
        return (figures.seen_html(inference.to_display(x[0], scale=4)),
                figures.scoreboard_html(verdict, zoo.rows, repos, true_label(path), note), "")

    # The Inside tab's pictures took 0.5-1.7 s of CPU a request, 50-100x any other handler (matplotlib, then a PNG),
    # and every visitor first sees the same example. A net's weights do not change, so its kernels are drawn once;
    # the feature maps once per net and image, for the last 32 (~50 KB each).
    drawn = gr.Plot(render=False).postprocess  # a figure as the page's plots receive it (a PNG), to send again

    @functools.lru_cache(maxsize=None)
    def weights_drawn(net_name: str):
        model = model_of(net_name)
        if not anatomy.map_stages(model):  # the fully connected net: its first layer's weights as images
            return drawn(figures.templates_figure(inference.unit_templates(model)))
        return drawn(figures.kernels_figure(inference.kernel_layers(model)))

    def draw_maps(x, net_name: str):
        maps = inference.feature_maps(model_of(net_name), x)
        return drawn(figures.feature_maps_figure(maps, inference.to_display(x[0], scale=2)))

    maps_drawn = by_pixels(draw_maps, maxsize=32)

    def inside_ui(net_name, path):
        model = model_of(net_name)
        if model is None:
            # Not another net's layers and kernels next to this one's name
            return "", None, gr.update(value=None, visible=False), f"⚠️ {net_name} is not available here"
        layers = figures.layers_markdown(anatomy.stages(model))
        if not anatomy.map_stages(model):  # the fully connected net: no maps
            return layers, weights_drawn(net_name), gr.update(value=None, visible=False), chapter.FC_INSIDE
        try:
            x = inference.load_input(input_or_default(path))
        except inference.BadImageError as error:  # the net's own layers and kernels, and no maps of another image
            return (layers, weights_drawn(net_name), gr.update(value=None, visible=False),
                    f"⚠️ {as_plain_text(str(error))}")
        return layers, weights_drawn(net_name), gr.update(value=maps_drawn(x, net_name), visible=True), chapter.INSIDE

    @api_errors
    def translation_ui(path, shift):
        zoo = ready()
        shift = within(shift, inference.SHIFTS[0], inference.SHIFTS[-1])
        if shift is None:  # a value being typed: the figure stays as it is
            return (gr.skip(),) * 7
        try:
            x = inference.load_input(input_or_default(path, translation_example))
        except inference.BadImageError as error:
            return gr.skip(), gr.skip(), f"⚠️ {as_plain_text(str(error))}", *(gr.skip(),) * 4
        curves, winner = zoo.translation(x)
        label = true_label(input_or_default(path, translation_example)) or winner
        column = 0 if label == "airplane" else 1
        figure = figures.translation_figure({n: c[:, column].tolist() for n, c in curves.items()}, inference.SHIFTS,
                                            label, shift)
        whose = "your image" if path else "the example bird"  # no image yet, or the first upload was refused
        return (figure, STORE.save(figures.shifted_preview(x, shift)), "", *first_layer_moved("net", x, shift, whose),
                *first_layer_moved("fc", x, shift, whose))

    def first_layer_moved(net_name: str, x, shift: int, whose: str) -> tuple:
        """A net's first layer on the image and on the shifted image, and the caption above them."""
        model = model_of(net_name)
        if model is None:
            return None, f"`{net_name}` is not available here"
        [moved] = inference.what_moves(model, x, [shift])
        picture, channel = figures.moved_picture(moved)
        where = f"{abs(shift)} px {'right' if shift > 0 else 'left'}" if shift else "not shifted (move the slider)"
        r = "r\u00a0=\u00a0"  # kept on one line with its number
        if moved.is_map:
            caption = (f"**`{net_name}`, {moved.stage}**, its channel {channel} of {len(moved.before)} "
                       f"(blue < 0 < red): {whose} | {where}. Position by position {r}{moved.in_place:.2f}; "
                       f"moved back **{r}{moved.agreement:.3f}**: the same map, moved")
        else:
            caption = (f"**`{net_name}`, {moved.stage}**, its {len(moved.before):,} units in the order of their "
                       f"values on {whose} (blue < 0 < red): {whose} | {where}. No positions to move back: "
                       f"**{r}{moved.agreement:.3f}**")
        return STORE.save(picture), caption

    def rf_controls(net_name):
        model = model_of(net_name)
        stages = anatomy.map_stages(model) if model is not None else []
        if not stages:
            return gr.update(choices=[], value=None)
        middle = stages[min(2, len(stages) - 1)]
        return gr.update(choices=[s.name for s in stages], value=middle.name)

    def rf_enter(net_name, stage_name):
        """Opening the tab again keeps the layer and unit chosen before; the first time, the middle layer's middle
        unit."""
        if stage_name and stage_of(net_name, stage_name) is not None:
            return gr.skip(), gr.skip(), gr.skip()
        controls = rf_controls(net_name)
        return controls, *rf_sliders(net_name, controls.get("value"))

    def rf_sliders(net_name, stage_name):
        stage = stage_of(net_name, stage_name)
        if stage is None:
            return gr.skip(), gr.skip()
        _, height, width = stage.shape
        return (gr.update(maximum=height - 1, value=height // 2), gr.update(maximum=width - 1, value=width // 2))

    @api_errors
    def rf_ui(net_name, stage_name, y, x, path):
        model = model_of(net_name)
        if model is None or not stage_name:
            return None, None, f"⚠️ {net_name} is not available here"
        try:
            stage = anatomy.stage(model, stage_name)
            x_in = inference.load_input(input_or_default(path))
        except (KeyError, inference.BadImageError) as error:
            return gr.skip(), gr.skip(), f"⚠️ {as_plain_text(str(error))}"
        _, height, width = stage.shape
        y, x = within(y, 0, height - 1), within(x, 0, width - 1)
        if y is None or x is None:  # a value being typed: the pictures stay as they are
            return gr.skip(), gr.skip(), gr.skip()
        activation = anatomy.activations(model, x_in, [stage_name])[stage_name][0]
        map_image, field_image = figures.receptive_field_images(inference.to_display(x_in[0], scale=8), stage,
                                                                activation, y, x)
        info = inference.receptive_field(model, stage_name, y, x)
        box = info["box"]
        clipped = tuple(info["size"]) != (info["field_size"], info["field_size"])
        text = (f"**{stage.name}** ({stage.shape_text}): unit ({y}, {x}) sees **{info['size'][0]}×{info['size'][1]}** "
                f"input pixels, rows {box['top']}–{box['bottom']}, columns {box['left']}–{box['right']}"
                + (f" (its full field is {info['field_size']}×{info['field_size']}: at the border the rest is zero "
                   "padding)." if clipped else "."))
        return STORE.save(map_image), STORE.save(field_image), text

    def rf_click(net_name, stage_name, evt: gr.SelectData):
        stage = stage_of(net_name, stage_name)
        if stage is None:
            return gr.skip(), gr.skip()
        _, height, width = stage.shape
        cell = 256 // max(height, width)
        try:  # where the visitor clicked, as the browser says; anything else sent leaves the sliders as they are
            x, y = (int(v) for v in evt.index)
        except (TypeError, ValueError, OverflowError):
            return gr.skip(), gr.skip()
        return min(max(y // cell, 0), height - 1), min(max(x // cell, 0), width - 1)

    @api_errors
    def sharing_ui(side, in_channels, out_channels, kernel):
        values = (within(side, *SIDES), within(in_channels, *CHANNELS), within(out_channels, *CHANNELS),
                  within(kernel, *KERNELS))
        if None in values:  # a value being typed: the figure stays as it is
            return gr.skip(), gr.skip()
        side, cin, cout, k = values
        ready()  # inference is imported with the nets
        conv, linear = inference.sharing_counts(side, cin, cout, k)
        text = (f"On a {side}×{side} image, `Conv2d({cin}, {cout}, {k})` has **{conv:,}** parameters; a `Linear` "
                "layer "
                f"from the same {cin * side * side:,} inputs to the same {cout * side * side:,} outputs has "
                f"**{linear:,}**: "
                + (f"{linear / conv:,.{0 if linear >= 10 * conv else 1}f}× more." if linear >= conv else
                   f"{conv / linear:,.1f}× fewer: on an image this small, the kernel is the larger.")
                + " In the chapter's nets, `Linear(3072, 1024)` (the first "
                "layer of the fully connected net) has 3,146,752 parameters and `Conv2d(3, 16, 3)` 448.")
        return figures.sharing_figure(cin, cout, k, side), text

    def gradients_at(blocks: int):
        """Both stacks' gradients at one depth, on a batch of the examples (every visitor's figure is the same)."""
        if not examples:
            raise ConvHubError("this Space has no example images to measure the gradients on")
        ready()  # torch and skips are imported by now
        return measured_gradients(blocks)

    @functools.lru_cache(maxsize=None)
    def measured_gradients(blocks: int):
        import torch

        x = torch.cat([inference.load_input(path) for path, _ in examples])
        labels = torch.tensor([DataConfig().class_names.index(label) for _, label in examples])
        return skips.measure(blocks, x, labels)

    @api_errors
    def skips_ui(blocks):
        blocks = within(blocks, 1, MAX_BLOCKS)
        if blocks is None:  # a value being typed: the figure stays as it is
            return gr.skip(), gr.skip()
        g = gradients_at(blocks)
        deepest = gradients_at(MAX_BLOCKS)  # one scale for every depth: the red line climbs as the stack deepens
        every = [v for v in deepest.with_skips + deepest.without_skips + g.with_skips + g.without_skips if v > 0]
        every = every or [1.0]  # a log scale has no 0: a block that got none is drawn under it
        return (figures.skips_figure(g, (min(every), max(every))),
                chapter.skips_caption(g.blocks, g.with_skips, g.without_skips))

    # --- API: JSON in and out, errors as AppError; each is also an MCP tool ---

    @api_errors
    def classify(image: FileData) -> dict:
        """Classify an image as airplane or bird with every net of chapter 8.

        Args:
            image: the image to classify, any size and format (it is cropped to a centred square and shrunk to 32x32)

        Returns:
            the vote of the nets, and for each net (in the chapter's order) its probabilities, prediction,
            parameter count and validation accuracy
        """
        zoo = ready()
        if not zoo.available:
            raise gr.Error(NO_NETS, print_exception=False)
        verdict, _ = inference.classify(zoo.available, upload_path(image), zoo.batches)
        rows = zoo.rows
        return {"vote": verdict.winner, "votes": verdict.votes, "milliseconds": round(verdict.milliseconds, 2),
                "nets": {name: {"airplane": round(p[0], 6), "bird": round(p[1], 6),
                                "prediction": verdict.prediction(name), "params": rows[name]["params"],
                                "val_accuracy": rows[name]["val_accuracy"]}
                         for name, p in verdict.probabilities.items()}}

    @api_errors
    def filters(net: str) -> dict:
        """The learned convolution kernels of one net (at most 4 layers, every kernel of each).

        Args:
            net: a convolutional net of the zoo, e.g. "net" or "net_res_deep"

        Returns:
            for each layer: its name as the book gives it, kernel shape, parameters (the conv's, then its batch
            norm's) and weights (out x in x 3 x 3)
        """
        model = _conv_model(net)
        return {"net": net, "layers": [
            {"name": layer.name, "out_channels": layer.out_channels, "in_channels": layer.in_channels,
             "params": layer.params, "batch_norm_params": layer.batch_norm_params,
             "shape": list(layer.weights.shape),
             # rounded in float64: float32's 4 decimals read back as 0.20499999821186066 in the JSON
             "weights": layer.weights.double().round(decimals=4).tolist()} for layer in inference.kernel_layers(model)]}

    @api_errors
    def feature_maps(net: str, image: FileData) -> dict:
        """What each stage of a convolutional net outputs for an image (its feature maps).

        Args:
            net: a convolutional net of the zoo, e.g. "net" or "net_res"
            image: the image to look at

        Returns:
            for each stage (named as the book names it): its C x H x W shape and the first channels' maps
        """
        model = _conv_model(net)
        x = inference.load_input(upload_path(image))
        return {"net": net, "stages": [
            {"name": stage.name, "shape": list(stage.shape), "maps": maps[:4].double().round(decimals=3).tolist()}
            for stage, maps in inference.feature_maps(model, x)]}

    @api_errors
    def translation(image: FileData) -> dict:
        """How each net's answer changes as the image shifts left and right by up to 8 pixels.

        Args:
            image: the image to shift

        Returns:
            the shifts (pixels, + is right); for each net its (P(airplane), P(bird)) at every shift; and for `net`
            and `fc` their first layer's agreement at every shift (r of the layer before and after the shift; a
            conv map moved back first, so 1.0 for `net`)
        """
        zoo = ready()
        x = inference.load_input(upload_path(image))
        curves, _ = zoo.translation(x)
        first_layers = {name: inference.what_moves(model, x, inference.SHIFTS)
                        for name, model in ((name, model_of(name)) for name in ("net", "fc")) if model is not None}
        return {"shifts": list(inference.SHIFTS),
                "nets": {name: [[round(float(a), 5), round(float(b), 5)] for a, b in c] for name, c in curves.items()},
                "first_layer": {name: {"stage": moves[0].stage, "agreement": [round(m.agreement, 4) for m in moves]}
                                for name, moves in first_layers.items()}}

    @api_errors
    def receptive_field(net: str, stage: str, y: int, x: int) -> dict:
        """Which of the 32x32 input pixels one unit of a net's feature map can see.

        Args:
            net: a convolutional net of the zoo, e.g. "net"
            stage: a stage of that net as the book names it, e.g. "conv2 → tanh" or "pool2"
            y: the unit's row on that stage's map
            x: the unit's column on that stage's map

        Returns:
            the stage's shape, the unit's receptive field as a box and a size, and a 32x32 mask (1 = visible)
        """
        model = _conv_model(net)
        return inference.receptive_field(model, api_name(stage, "stage", "pool2"), api_whole_number(y, "y"),
                                         api_whole_number(x, "x"))

    def compare() -> dict:
        """Every net's size and accuracy: parameters, validation accuracy (ours and the book's) and where its
        weights were loaded from.

        Returns:
            one entry per net in the chapter's order
        """
        return {"nets": list(ready().rows.values())}

    @api_errors
    def skip_connections(blocks: int = MAX_BLOCKS) -> dict:
        """The gradient that reaches each residual block of a freshly initialised NetResDeep (the book's init, in
        training mode, on a batch of the Space's examples), with its skip connections and without them.

        Args:
            blocks: how many residual blocks the stack has, 1 to 100

        Returns:
            the gradient's size (L2 norm) on each block's conv weights, block 1 nearest the image, for both stacks
        """
        blocks = api_whole_number(blocks, "blocks")
        if not 1 <= blocks <= MAX_BLOCKS:
            raise ConvHubError(f"blocks must be 1 to {MAX_BLOCKS}, not {blocks}")
        gradients = gradients_at(blocks)
        return {"blocks": blocks, "with_skips": [float(f"{v:.4g}") for v in gradients.with_skips],  # float32 noise
                "without_skips": [float(f"{v:.4g}") for v in gradients.without_skips]}

    def compare_ui():
        zoo = ready()
        rows = list(zoo.rows.values())
        return (figures.compare_figure(rows), figures.compare_markdown(rows, repos),
                sources_summary(zoo.nets, pointer="") + "\n\n"
                + "\n".join(f"- `{n.name}`: {as_plain_text(source_details(n))}" for n in zoo.nets))

    def _conv_model(net: str):
        net = api_name(net, "net", "net")
        zoo = ready()
        if net in zoo.by_name and net not in zoo.conv_names:
            raise inference.BadImageError(f"{net!r} has no convolutions, hence no kernels or feature maps: it is the "
                                          f"fully connected net; choose one of: {', '.join(zoo.conv_names)}")
        if net not in zoo.conv_names:
            raise inference.BadImageError(f"unknown or unavailable net {shown(net)}; choose one of: "
                                          f"{', '.join(zoo.conv_names)}")
        return zoo.by_name[net].model

    # --- the page ---

    with gr.Blocks(title="ConvHub: convolutions to generalize", delete_cache=(300, 900)) as demo:
        gr.Markdown("# ConvHub — airplane or bird?")
        gr.Markdown(chapter.INTRO.format(book=chapter.BOOK), elem_id="intro")
        with gr.Tabs():
            with gr.Tab("Classify", id="classify") as classify_tab:
                with gr.Row(equal_height=False):
                    with gr.Column(scale=2, min_width=280):
                        with gr.Row():
                            image = UploadedImage(
                                type="filepath", image_mode=None, label="Your image", height=240, scale=3,
                                sources=["upload", "webcam", "clipboard"], elem_id="image-input")
                            seen = gr.HTML(figures.seen_html(None), elem_id="seen", min_width=140)
                        status = gr.Markdown("", elem_id="status")
                    with gr.Column(scale=3, min_width=320):
                        scoreboard = gr.HTML(figures.empty_scoreboard_html(), elem_id="scoreboard")
                # A caption above, not Gradio's label and buttons over the first and last pictures' tops
                gr.Markdown("**Examples** with their true label: click one", elem_classes="caption")
                gallery = gr.Gallery([(p, example_caption(p, label)) for p, label in examples],
                                     label="Examples with their true label", show_label=False, buttons=[],
                                     columns=len(examples), allow_preview=False, object_fit="cover",
                                     elem_id="examples")
            with gr.Tab("Inside a net", id="inside") as inside_tab:
                with gr.Row(equal_height=False):
                    inside_net = gr.Dropdown(inside_names, value="net" if "net" in inside_names else None, label="Net",
                                             info="Uses the Classify tab's image (or the first example)", scale=1,
                                             min_width=200, elem_id="inside-net")
                    with gr.Column(scale=3, min_width=320):
                        inside_text = gr.Markdown(chapter.INSIDE)
                with gr.Row(equal_height=False):
                    with gr.Column(scale=2, min_width=300):
                        layer_table = gr.Markdown(elem_id="layers")
                    with gr.Column(scale=3, min_width=300):
                        kernels_plot = gr.Plot(label="Kernels", show_label=False, elem_id="kernels")
                maps_plot = gr.Plot(label="Feature maps for your image", show_label=False, elem_id="feature-maps")
            with gr.Tab("Translation", id="translation") as translation_tab:
                gr.Markdown(chapter.TRANSLATION)
                with gr.Row(equal_height=False):
                    with gr.Column(scale=1, min_width=220):
                        shift = TypedSlider(
                            -8, 8, value=5, step=1, label="Shift (pixels, + is right)", elem_id="shift",
                            info="Uses the Classify tab's image (or an example bird)", buttons=[])
                        shifted = gr.Image(label="What the nets see, shifted", interactive=False, height=160,
                                           elem_id="shifted")
                        translation_status = gr.Markdown("")
                    with gr.Column(scale=3, min_width=300):
                        with gr.Row(equal_height=True, elem_classes="pictures"):
                            with gr.Column(min_width=220):
                                conv_moved_caption = gr.Markdown(elem_id="moved-net-caption", elem_classes="caption")
                                conv_moved = gr.Image(show_label=False, buttons=[], interactive=False, height=150,
                                                      elem_id="moved-net")
                            with gr.Column(min_width=220):
                                fc_moved_caption = gr.Markdown(elem_id="moved-fc-caption", elem_classes="caption")
                                fc_moved = gr.Image(show_label=False, buttons=[], interactive=False, height=150,
                                                    elem_id="moved-fc")
                        gr.Markdown(chapter.TRANSLATION_INSIDE)  # under the pictures: on a phone, near the slider
                translation_plot = gr.Plot(label="Your image", show_label=False, elem_id="translation-plot")
                if translation_table:
                    gr.Markdown(chapter.TRANSLATION_VALIDATION)
                    shift_accuracy = gr.Plot(label="Validation images", show_label=False, elem_id="shift-accuracy")
            with gr.Tab("Receptive field", id="receptive") as rf_tab:
                gr.Markdown(chapter.RECEPTIVE_FIELD)
                with gr.Row():
                    rf_net = gr.Dropdown(conv_names, value="net" if "net" in conv_names else None, label="Net")
                    # The layers and the sliders' ranges follow the net, set by updates Gradio keeps in the
                    # visitor's session; the least recently active sessions beyond CONVHUB_SESSIONS are dropped, and a
                    # page whose session went refused every move ("block 50 is not in the list of choices: []").
                    # So Gradio checks nothing here that only the session knows: rf_ui checks the layer against the
                    # net and clips the unit to its map, whose side is at most the image's.
                    rf_stage = gr.Dropdown([], label="Layer", allow_custom_value=True)
                with gr.Row():
                    _, height, width = DataConfig().input_size
                    rf_y = TypedSlider(0, height - 1, value=8, step=1, label="Unit row (y)", buttons=[])
                    rf_x = TypedSlider(0, width - 1, value=8, step=1, label="Unit column (x)", buttons=[])
                rf_text = gr.Markdown(elem_id="rf-text")
                # Captions above the pictures, not Gradio's label and buttons over them: those covered the map's
                # corner units, which a click then missed.
                with gr.Row(equal_height=True, elem_classes="pictures"):
                    with gr.Column(min_width=150):
                        gr.Markdown("**The layer's map**: its channels' mean, bright = strong (click a unit)",
                                    elem_classes="caption")
                        rf_map = gr.Image(show_label=False, buttons=[], interactive=False, height=280,
                                          elem_id="rf-map")
                    with gr.Column(min_width=150):
                        gr.Markdown("**What that unit sees** of the input", elem_classes="caption")
                        rf_field = gr.Image(show_label=False, buttons=[], interactive=False, height=280,
                                            elem_id="rf-field")
            with gr.Tab("Weight sharing", id="sharing") as sharing_tab:
                gr.Markdown(chapter.SHARING)
                with gr.Row():
                    side = TypedSlider(*SIDES, value=32, step=1, label="Image side (pixels)", buttons=[])
                    cin = TypedSlider(*CHANNELS, value=3, step=1, label="Input channels", buttons=[])
                    cout = TypedSlider(*CHANNELS, value=16, step=1, label="Output channels", elem_id="sharing-out",
                                       buttons=[])
                    kernel = TypedSlider(*KERNELS, value=3, step=2, label="Kernel size", buttons=[])
                sharing_text = gr.Markdown(elem_id="sharing-text")
                sharing_plot = gr.Plot(show_label=False, elem_id="sharing-plot")
            with gr.Tab("Skip connections", id="skips") as skips_tab:
                gr.Markdown(chapter.SKIPS)
                blocks = TypedSlider(1, MAX_BLOCKS, value=MAX_BLOCKS, step=1, label="Blocks in the stack",
                                     elem_id="skip-blocks", buttons=[])
                skips_text = gr.Markdown(elem_id="skips-text")
                skips_plot = gr.Plot(show_label=False, elem_id="skips-plot")
            with gr.Tab("Compare", id="compare") as compare_tab:
                gr.Markdown(chapter.COMPARE)
                compare_plot = gr.Plot(show_label=False, elem_id="compare-plot")
                compare_table = gr.Markdown(elem_id="compare-table")
                with gr.Accordion("Where each net's weights came from", open=False):
                    compare_sources = gr.Markdown(elem_id="compare-sources")

        active_tab = gr.State("classify")
        last_good = gr.State(None)  # the image whose results the Classify tab shows
        inside_outputs = [layer_table, kernels_plot, maps_plot, inside_text]
        translation_inputs = [image, shift]
        translation_outputs = [translation_plot, shifted, translation_status, conv_moved, conv_moved_caption,
                               fc_moved, fc_moved_caption]
        rf_inputs = [rf_net, rf_stage, rf_y, rf_x, image]
        rf_outputs = [rf_map, rf_field, rf_text]
        private = {"api_visibility": "private"}
        # Everything but classify computes in one group, CONCURRENCY at a time: each of ~30 listeners had a limit of
        # its own, and one visitor ran a dozen figure jobs at once on 2 cores (helper's review).
        page = {"concurrency_id": "page", "concurrency_limit": CONCURRENCY}
        # A slider's figure follows every change a visitor makes: dragged, typed or moved with the arrow keys
        # (.release came only on pointer-up or when its number box lost focus), computing only the latest value
        # while one is being drawn.
        live = {"trigger_mode": "always_last"}
        shared = {**private, **page}

        def refresh_active(tab, path, net_name, shift_value, rf_net_name, stage_name, y, x):
            """After the image changes, refresh the explorer tab on screen (the others refresh when opened)."""
            skip = [gr.skip()] * (len(inside_outputs) + len(translation_outputs) + len(rf_outputs))
            if tab == "inside":
                return [*inside_ui(net_name, path), *skip[len(inside_outputs):]]
            if tab == "translation":
                return [*skip[:len(inside_outputs)], *translation_ui(path, shift_value),
                        *skip[len(inside_outputs) + len(translation_outputs):]]
            if tab == "receptive" and rf_net_name and stage_name:
                return [*skip[:len(inside_outputs) + len(translation_outputs)],
                        *rf_ui(rf_net_name, stage_name, y, x, path)]
            return skip

        refresh_inputs = [active_tab, image, inside_net, shift, rf_net, rf_stage, rf_y, rf_x]
        refresh_outputs = inside_outputs + translation_outputs + rf_outputs

        def classify_example(evt: gr.SelectData):
            """An example click: show it and classify it in one round trip."""
            if not isinstance(evt.index, int) or not 0 <= evt.index < len(examples):
                return gr.skip(), gr.skip(), gr.skip(), "⚠️ no such example", gr.skip()
            path = examples[evt.index][0]
            seen_html, board, message = classify_shown(path)
            return path, seen_html, board, message, gr.skip() if board == gr.skip() else path

        # input (not change): user uploads, webcam shots, pastes and clears; an example click sets the image itself
        classifying = {"concurrency_limit": CLASSIFY_CONCURRENCY, "concurrency_id": "classify"}

        def classify_ui(path, last_good):
            """An upload, paste or clear: its results, and no example marked as the one shown. An image that cannot
            be used leaves the image box, the results and the marked example as they were (the box would show a
            broken picture, and the other tabs would have nothing to draw), and says why under the box."""
            seen_html, board, message = classify_shown(path)
            if board == gr.skip():
                kept = last_good if last_good and Path(last_good).is_file() else None  # uploads expire
                return kept, seen_html, board, message, gr.skip(), kept
            return gr.skip(), seen_html, board, message, gr.Gallery(selected_index=None), path

        image.input(classify_ui, [image, last_good], [image, seen, scoreboard, status, gallery, last_good],
                    show_progress="minimal", **classifying, **private).then(
            refresh_active, refresh_inputs, refresh_outputs, show_progress="hidden", **shared)
        gallery.select(classify_example, None, [image, seen, scoreboard, status, last_good], show_progress="minimal",
                       **classifying, **private).then(
            refresh_active, refresh_inputs, refresh_outputs, show_progress="hidden", **shared)
        # The figures of the static tabs are drawn when first opened: the first page needs none of them (nor plotly).
        classify_tab.select(functools.partial(str, "classify"), None, active_tab, **shared)
        sharing_tab.select(functools.partial(str, "sharing"), None, active_tab, **shared).then(
            sharing_ui, [side, cin, cout, kernel], [sharing_plot, sharing_text], **shared)
        compare_tab.select(functools.partial(str, "compare"), None, active_tab, **shared).then(
            compare_ui, None, [compare_plot, compare_table, compare_sources], **shared)
        if translation_table:
            translation_tab.select(lambda: figures.shift_accuracy_figure(translation_table), None, shift_accuracy,
                                   **shared)
        inside_tab.select(functools.partial(str, "inside"), None, active_tab, **shared).then(
            inside_ui, [inside_net, image], inside_outputs, **shared)
        inside_net.change(inside_ui, [inside_net, image], inside_outputs, **shared)
        translation_tab.select(functools.partial(str, "translation"), None, active_tab, **shared).then(
            translation_ui, translation_inputs, translation_outputs, **shared)
        shift.input(translation_ui, translation_inputs, translation_outputs, **live, **shared)
        rf_tab.select(functools.partial(str, "receptive"), None, active_tab, **shared).then(
            rf_enter, [rf_net, rf_stage], [rf_stage, rf_y, rf_x], **shared).then(rf_ui, rf_inputs, rf_outputs,
                                                                                 **shared)
        rf_net.input(rf_controls, rf_net, rf_stage, **shared).then(
            rf_sliders, [rf_net, rf_stage], [rf_y, rf_x], **shared).then(rf_ui, rf_inputs, rf_outputs, **shared)
        rf_stage.input(rf_sliders, [rf_net, rf_stage], [rf_y, rf_x], **shared).then(
            rf_ui, rf_inputs, rf_outputs, **shared)
        # One listener for the sliders of a figure: with one per slider, moves of two sliders in quick succession ran
        # as two jobs at once, and the earlier move's figure could come last and stay.
        gr.on([rf_y.input, rf_x.input], rf_ui, rf_inputs, rf_outputs, **live, **shared)
        rf_map.select(rf_click, [rf_net, rf_stage], [rf_y, rf_x], **shared).then(rf_ui, rf_inputs, rf_outputs,
                                                                                   **shared)
        gr.on([control.input for control in (side, cin, cout, kernel)], sharing_ui, [side, cin, cout, kernel],
              [sharing_plot, sharing_text], **live, **shared)

        skips_tab.select(functools.partial(str, "skips"), None, active_tab, **shared).then(
            skips_ui, blocks, [skips_plot, skips_text], **shared)
        blocks.input(skips_ui, blocks, [skips_plot, skips_text], **live, **shared)

        gr.api(classify, api_name="classify", concurrency_limit=CLASSIFY_CONCURRENCY, concurrency_id="classify")
        gr.api(filters, api_name="filters", **page)
        gr.api(feature_maps, api_name="feature_maps", **page)
        gr.api(translation, api_name="translation", **page)
        gr.api(receptive_field, api_name="receptive_field", **page)
        gr.api(compare, api_name="compare", **page)
        gr.api(skip_connections, api_name="skip_connections", **page)
    return demo


def warm_up(nets: list[LoadedNet], rounds: int = 1) -> None:
    """The classify path a few times, so the first visitor does not pay for lazy initialisation."""
    image = next(iter(sorted(EXAMPLES_DIR.glob("*.jpg"))), None)
    available = [net for net in nets if net.available]
    for _ in range(rounds):
        if image is not None:
            inference.classify(available, image)


def load_nets(found: list[FoundNet]) -> Zoo:
    """Torch, the nets (each from its first source that works), their inference copies and a warm-up: what the
    first page does not need, done in the loading thread while the server starts."""
    global anatomy, inference, skips
    import anatomy
    import inference
    import skips
    import torch

    threads = inference.torch_threads(CONCURRENCY, TORCH_THREADS)
    torch.set_num_threads(threads)
    nets = inference.prepare_for_serving([load_found(net) for net in found])
    warm_up(nets)
    # Each net's anatomy is traced now, before any request: torch.fx's tracing patches nn.Module calls process-wide
    # while it runs, and other visitors' requests (classify too) failed when a first use traced a net meanwhile.
    for net in nets:
        if net.available:
            anatomy.stages(net.model)
    return Zoo(nets, threads)


class Loader:
    """load_nets in a thread of its own, started by main() once the server is up, or else by the first handler that
    needs the nets (Spaces' reload mode imports this module and launches `demo` itself). Calling it waits for the
    Zoo. The thread is a daemon: stopping the Space never waits for it."""

    def __init__(self, found: list[FoundNet]):
        self.found = found
        self._lock = threading.Lock()
        self._loading: Future | None = None

    def start(self) -> Future:
        with self._lock:
            if self._loading is None:
                self._loading = Future()
                threading.Thread(target=self._load, name="convhub-nets", daemon=True).start()
            return self._loading

    def _load(self) -> None:
        try:
            self._loading.set_result(load_nets(self.found))
        except BaseException as error:  # noqa: BLE001 - handed to every caller, and main() stops the server
            self._loading.set_exception(error)

    def __call__(self) -> Zoo:
        loading = self.start()
        error = loading.exception()  # waits; a new message each time (re-raising one error object grows its traceback)
        if error is not None:
            raise gr.Error(f"The nets failed to load ({type(error).__name__}: {error}); the Space must be restarted.",
                           print_exception=False)
        return loading.result()


def report_ready(loading: Future) -> None:
    """The start-up line once the nets are loaded; if loading failed (a bug: a broken net is only unavailable), the
    error, and the server is stopped, so that the Space shows it as failed rather than serving a page that cannot
    classify."""
    error = loading.exception()
    if error is not None:
        print(f"Loading the nets failed: {type(error).__name__}: {error}", file=sys.stderr, flush=True)
        demo.close()  # main() then exits with status 1
        return
    zoo = loading.result()
    print(f"{sources_summary(zoo.nets, markdown=False)} Ready in {time.perf_counter() - STARTED:.1f} s "
          f"({zoo.threads} torch thread(s) per request).", flush=True)


FOUND = find_zoo(models_dir=MODELS_DIR)  # checked with the settings above
NETS = Loader(FOUND)
demo = build_demo(FOUND, NETS)


def _bind_failure(host: str, port: int) -> str | None:
    """Why the system will not let the server listen at ``host``:``port``, in its words: Gradio says "Cannot find
    empty port" for any reason, an address that is not this machine's too. None if it can now."""
    import socket

    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
        with socket.socket(family, kind, proto) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds
            probe.bind(address)
    except OSError as error:
        return error.strerror or str(error)
    return None


def main() -> None:
    # SIGTERM (how Spaces and process managers stop a server) ends the server, so that exit handlers run and our
    # image folder is removed: like Ctrl-C while it starts (_stop), then by closing it (_close).
    signal.signal(signal.SIGTERM, _stop)
    failures = logs.FailureLog()
    logs.install(failures)
    STORE.open()
    stale_progress = limits.StaleUploadProgress(gr.routes.file_upload_statuses)

    def forget(paths: list[str]) -> None:
        for files in demo.temp_file_sets:
            files.difference_update(paths)
        stale_progress()

    cache = limits.UploadCache(
        Path(gr.utils.get_upload_folder()), UPLOAD_CACHE,  # the folder as Gradio names its uploads, for forget
        keep=lambda: {path for block in demo.blocks.values() for path in getattr(block, "keep_in_cache", ())},
        forget=forget)
    cache.sweep_in_background()
    limits.count_inline_files(cache)
    clients = limits.PerClient(CLIENT_BURST, CLIENT_RATE, CLIENT_UPLOADS, cache.min_age_s, at_once=CLIENT_AT_ONCE,
                               streams=CLIENT_STREAMS, unread_s=UNREAD_S,
                               forwarded=CLIENT_ADDRESS == "x-forwarded-for") if CLIENT_BURST else None
    if clients is not None:
        limits.count_queued(demo, clients)
    connections.install(HEADERS_S, BODY_S, SEND_S)
    try:
        host = os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1")
        try:
            demo.queue(default_concurrency_limit=CONCURRENCY, max_size=QUEUE_SIZE).launch(
                server_name=host,
                server_port=SERVER_PORT,
                max_file_size=MAX_UPLOAD, mcp_server=True, css=CSS, head=HEAD, state_session_capacity=SESSIONS,
                app_kwargs={"middleware": [Middleware(logs.Failures, log=failures),
                                           Middleware(limits.RequestLimits, cache=cache, max_file_bytes=MAX_BODY,
                                                      clients=clients, body_s=BODY_S,
                                                      max_streams=MAX_STREAMS or limits.stream_room())]},
                prevent_thread_lock=True,
            )
        except OSError as error:  # the port is taken, or the address is not this machine's
            sys.exit(f"error: cannot listen on {host}:{SERVER_PORT}: {_bind_failure(host, SERVER_PORT) or error}")
        # Around the whole server too, for what Gradio's outer middleware raises (uvicorn reads the app it was given
        # from its config for every new connection)
        server = getattr(demo, "server", None)
        if server is not None:
            server.config.loaded_app = logs.Failures(server.config.loaded_app, log=failures)
        loading = NETS.start()
        loading.add_done_callback(report_ready)
        signal.signal(signal.SIGTERM, _close)  # the server is up: from here on SIGTERM closes it
        demo.block_thread()  # until Ctrl-C, SIGTERM (_close) or a failed load (report_ready)
    finally:
        STORE.close()
    if loading.done() and loading.exception() is not None:
        sys.exit(1)  # the load failed (report_ready)


def _stop(*_) -> None:
    """SIGTERM while the server starts: stop like Ctrl-C, also when the shell that started us in the background made
    the process ignore SIGINT."""
    raise KeyboardInterrupt


def _close(*_) -> None:
    """SIGTERM once the server is up: close it, and block_thread returns. Ctrl-C's way logged Gradio's "Keyboard
    interruption in main thread" each time a Space was stopped or restarted, where no one pressed a key. A second
    SIGTERM while it closes is ignored."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    print("SIGTERM: closing the server.", flush=True)
    try:
        demo.close(verbose=False)
    except Exception as error:  # noqa: BLE001 - still stop: block_thread ends once is_running is False
        print(f"closing the server failed: {type(error).__name__}: {error}", file=sys.stderr, flush=True)
        demo.is_running = False


if __name__ == "__main__":
    main()
