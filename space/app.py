"""ConvHub Space: every chapter-8 net on your image, side by side; their filters, feature maps, size and accuracy.

Run `python space/app.py` (serves on 127.0.0.1:7860; GRADIO_SERVER_NAME / GRADIO_SERVER_PORT override).
"""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent)]  # run from a clone: the convhub package sits next to space/
os.environ.setdefault("MPLBACKEND", "Agg")  # figures are drawn in worker threads, never shown in a window

import gradio as gr  # noqa: E402
from gradio.components.plot import PlotData  # noqa: E402
import torch  # noqa: E402
from convhub import CIFAR2_CLASSES  # noqa: E402
from PIL import Image  # noqa: E402

import inference  # noqa: E402
import uploads  # noqa: E402
from zoo_loader import LoadedNet, load_zoo, sources_summary  # noqa: E402

EXAMPLES_DIR = uploads.EXAMPLES_DIR
MAX_UPLOAD = os.environ.get("CONVHUB_MAX_UPLOAD", "10mb")  # Gradio refuses larger uploads with a 413 and a message
QUEUE_SIZE = int(os.environ.get("CONVHUB_QUEUE_SIZE", "256"))  # requests waiting beyond this: "Queue is full"


def guarded_image_input(component: gr.Image) -> gr.Image:
    """Accept only files uploaded to this Space (or our examples), and hand our handlers the path undecoded.

    Gradio skips its own upload-folder check for a file sent without ``meta``, and its preprocessing decodes the
    whole image before any size check (a 360 KB PNG of 13000x13000 pixels cost 3.4 GB). Our handlers open the path
    themselves, through convhub's bounded open_image. (A subclass would not do: the frontend picks components by
    class name.)
    """
    def checked(payload):
        if payload is None:
            return None
        try:
            return str(uploads.checked_upload(payload.path))
        except uploads.UntrustedFileError as error:
            raise gr.Error(str(error), title="Cannot use this input", print_exception=False) from None

    component.preprocess = checked
    return component


STORE = uploads.ImageStore()
as_file = STORE.save


def _ui_errors(fn):
    """Turn our clear error messages into gr.Error, so the UI and the API show them and the app keeps serving."""
    def wrapper(*args):
        try:
            return fn(*args)
        except (inference.BadImageError, inference.ConvHubError, ValueError, OSError) as error:
            raise gr.Error(str(error), title="Cannot use this input", print_exception=False) from None
    wrapper.__name__ = fn.__name__
    wrapper.__doc__ = fn.__doc__
    return wrapper


def build_demo(nets: list[LoadedNet] | None = None) -> gr.Blocks:
    nets = nets if nets is not None else load_zoo()
    by_name = {net.name: net for net in nets}
    available = [net for net in nets if net.available]
    conv_names = [net.name for net in available if inference.conv_layers(net.model)]
    table = inference.compare_table(nets)
    examples = sorted(str(p) for p in EXAMPLES_DIR.glob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png"))

    @_ui_errors
    def classify(image):
        """Classify one image with every net: probabilities per net, a table with latencies, the 32x32 input, and a
        one-line summary (the vote, and how long all nets took together)."""
        probs, rows, preview, timing = inference.classify(available, image)
        return [probs[net.name] for net in available] + [rows, as_file(preview),
                                                         inference.classify_summary(rows, timing)]

    @_ui_errors
    def filters(net_name, image):
        """Learned kernels of one net (first conv in RGB, deeper convs per channel), and the chapter's hand-made
        kernels next to its learned ones on the image (the image is optional)."""
        model = _conv_net(net_name)
        first, deeper, note = inference.filter_images(model)
        responses = inference.kernel_responses(model, image) if image is not None else []
        return (None if first is None else as_file(first), [(as_file(pixels), caption) for pixels, caption in deeper],
                note, [(as_file(pixels), caption) for pixels, caption in responses])

    @_ui_errors
    def feature_maps(net_name, image):
        """Activations of each conv/pool stage of one net for the image."""
        return [(as_file(pixels), caption) for pixels, caption in inference.feature_maps(_conv_net(net_name), image)]

    def _conv_net(net_name):
        if net_name not in conv_names:
            raise gr.Error(f"unknown or unavailable net {net_name!r}; choose one of: {', '.join(conv_names)}")
        return by_name[net_name].model

    def compare():
        """Parameter counts and card accuracies of every net, and where each net was loaded from (drawn once)."""
        return table, PlotData(**params_plot.value), PlotData(**accuracy_plot.value)

    sources_md = "\n".join(f"- `{net.name}`: {net.source}" for net in nets)
    with gr.Blocks(title="ConvHub: convolutions to generalize", delete_cache=(3600, 3600)) as demo:
        gr.Markdown("# ConvHub — airplane or bird?\nThe nets of *Deep Learning with PyTorch*, chapter 8, trained on "
                    "CIFAR-2. Every net sees the same 32x32 version of your image.")
        gr.Markdown(sources_summary(nets), elem_id="sources-summary")
        with gr.Tabs():
            with gr.Tab("Classify"):
                with gr.Row():
                    with gr.Column(scale=1):
                        image = guarded_image_input(gr.Image(type="filepath", image_mode=None, label="Your image",
                                                             height=280, sources=["upload", "webcam", "clipboard"]))
                        classify_button = gr.Button("Classify", variant="primary")
                        examples_slot = gr.Column()
                        seen = gr.Image(label="What the nets see (32x32)", interactive=False, height=200)
                    with gr.Column(scale=2):
                        with gr.Row():
                            labels = [gr.Label(num_top_classes=len(CIFAR2_CLASSES), label=f"{net.name} "
                                               f"({net.model.num_params:,} params)", min_width=160)
                                      for net in available]
                        summary = gr.Markdown()
                        results = gr.Dataframe(label="All nets: probabilities, prediction and latency", interactive=False)
            with gr.Tab("Filters"):
                filter_net = gr.Dropdown(conv_names, value=conv_names[-1] if conv_names else None, label="Net",
                                         info="Kernels need no image; their effect is shown on the Classify tab's image")
                filter_button = gr.Button("Show filters")
                filter_note = gr.Markdown()
                with gr.Row():
                    first_kernels = gr.Image(label="First conv layer: RGB kernels", interactive=False, scale=1)
                    deeper_kernels = gr.Gallery(label="Deeper conv layers: kernels per (output, input) channel",
                                                columns=3, height="auto", scale=2)
                responses = gr.Gallery(label="Hand-made kernels (blur, edges) vs learned kernels on your image",
                                       columns=5, height="auto")
            with gr.Tab("Feature maps"):
                fmap_net = gr.Dropdown(conv_names, value=conv_names[0] if conv_names else None, label="Net",
                                       info="Activations for the image on the Classify tab")
                fmap_button = gr.Button("Show feature maps")
                fmaps = gr.Gallery(label="Activations after each stage (first 16 channels)", columns=4, height="auto")
            with gr.Tab("Compare") as compare_tab:  # static: the figures are drawn once, here
                compare_table = gr.Dataframe(value=table, label="Parameters and accuracy (from the model cards)",
                                             interactive=False)
                with gr.Row():
                    params_plot = gr.Plot(inference.params_figure(table), label="Parameters")
                    accuracy_plot = gr.Plot(inference.accuracy_figure(table), label="Accuracy vs parameters")
                gr.Markdown(inference.why_convolutions(table))
                gr.Markdown(f"### Where each net came from\n{sources_md}")

        classify_outputs = labels + [results, seen, summary]
        classify_button.click(classify, image, classify_outputs, api_name="classify")
        with examples_slot:  # after the button's event, which must own the name /classify
            if examples:  # a click shows the example and classifies it
                gr.Examples(examples, inputs=image, outputs=classify_outputs, fn=classify, run_on_click=True,
                            cache_examples=False, label="Examples: CIFAR airplanes and birds, and others")
        filter_button.click(filters, [filter_net, image], [first_kernels, deeper_kernels, filter_note, responses],
                            api_name="filters")
        fmap_button.click(feature_maps, [fmap_net, image], fmaps, api_name="feature_maps")
        compare_tab.select(compare, None, [compare_table, params_plot, accuracy_plot], api_name="compare")
    return demo


def warm_up(nets: list[LoadedNet], rounds: int = 3) -> None:
    """The /classify path a few times, so the first visitor does not pay for lazy initialisation."""
    image = next(iter(sorted(EXAMPLES_DIR.glob("*.jpg"))), None) or Image.new("RGB", (32, 32))
    available = [net for net in nets if net.available]
    for _ in range(rounds):
        inference.classify(available, image)


def main() -> None:
    started = time.perf_counter()
    torch.set_num_threads(inference.torch_threads(inference.CONCURRENCY))
    nets = load_zoo()
    warm_up(nets)
    demo = build_demo(nets)
    print(f"{sources_summary(nets)} Ready in {time.perf_counter() - started:.1f} s "
          f"({torch.get_num_threads()} torch thread(s) per request).", flush=True)
    # SIGTERM (how Spaces and process managers stop a server) ends the server like Ctrl-C, so that exit handlers
    # run and our image folder is removed.
    signal.signal(signal.SIGTERM, lambda *_: signal.raise_signal(signal.SIGINT))
    try:
        demo.queue(default_concurrency_limit=inference.CONCURRENCY, max_size=QUEUE_SIZE).launch(
            server_name=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"),
            server_port=int(os.environ.get("GRADIO_SERVER_PORT", "7860")),
            max_file_size=MAX_UPLOAD,
        )
    finally:
        STORE.close()


if __name__ == "__main__":
    main()
