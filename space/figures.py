"""Drawing: the scoreboard (HTML), kernels and feature maps (matplotlib), the explorers and the chapter's size vs
accuracy figure (plotly, interactive). Numbers come from inference.py and anatomy.py; nothing is computed here.
Imports no torch: the first page (its empty scoreboard) is drawn before torch is loaded."""

from __future__ import annotations

import base64
import html
import io

from typing import TYPE_CHECKING

import chapter
import numpy as np
from PIL import Image, ImageDraw

if TYPE_CHECKING:
    import torch
    from anatomy import Stage
    from inference import KernelLayer, Moved, Verdict
    from skips import Gradients

FC_COLOUR, CONV_COLOUR, BOOK_COLOUR = "#d62728", "#1f77b4", "#7f7f7f"
NET_COLOURS = {"fc": "#d62728", "net": "#1f77b4", "net_width": "#2ca02c", "net_dropout": "#9467bd",
               "net_batchnorm": "#8c564b", "net_depth": "#e377c2", "net_res": "#17becf", "net_res_deep": "#ff7f0e",
               "net_res_deep100": "#393b79"}
DIVERGING = "RdBu_r"  # blue negative, white zero, red positive


def data_uri(pixels: np.ndarray) -> str:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def _figure(width: float, height: float, layout: str | None = "constrained"):
    from matplotlib.figure import Figure  # not pyplot: figures are drawn in worker threads, never shown

    return Figure(figsize=(width, height), dpi=100, layout=layout)


# --- classify ------------------------------------------------------------------------------------------------------


def seen_html(pixels: np.ndarray | None, note: str = "") -> str:
    """The 32x32 image the nets see, drawn with visible pixels."""
    if pixels is None:
        return "<div class='seen empty'>The 32×32 image the nets see appears here.</div>"
    return (f"<figure class='seen'><img src='{data_uri(pixels)}' alt='the 32×32 input' width='128' height='128'>"
            "<figcaption>What every net sees: the centre square at 32×32"
            f"{(' — ' + html.escape(note)) if note else ''}</figcaption>"
            "</figure>")


def scoreboard_html(verdict: Verdict, rows: dict[str, dict], repos: dict[str, str], true_label: str | None = None,
                    note: str = "") -> str:
    """The vote first, then one row per net in the chapter's order: what it adds, its size and accuracy, and its
    P(bird) as a bar; nets that disagree with the majority (or with a known true label) are highlighted."""
    winner, votes = verdict.winner, verdict.votes
    total = sum(votes.values())
    truth = (f" <span class='truth'>True label: <b>{html.escape(true_label)}</b>"
             f" ({votes[true_label]} of {total} nets right)</span>" if true_label in votes else "")
    # shown (by style.css) only while the line under the image box says why an image was not classified
    parts = ["<p class='stale'>Still the results for the previous image: the new one was not classified.</p>",
             f"<div class='vote' data-testid='vote'><span class='vote-label'>{votes[winner]} of {total} nets "
             f"say</span> <b class='vote-class'>{winner}</b>{truth}</div>"]
    if note:
        parts.append(f"<p class='note'>{html.escape(note)}</p>")
    parts.append("<table class='scoreboard'><thead><tr><th>net</th><th class='what'>what it adds</th>"
                 "<th class='num'>params</th><th class='num'>val acc</th>"
                 "<th class='bar-head'>airplane ← P(bird) → bird</th></tr></thead><tbody>")
    for net, (p_airplane, p_bird) in verdict.probabilities.items():
        prediction = verdict.prediction(net)
        wrong = prediction != (true_label if true_label in votes else winner)
        info = rows.get(net, {})
        accuracy = info.get("val_accuracy")
        name = html.escape(net).replace("_", "_<wbr>")  # narrow screens break long names at underscores
        link = f"<a href='https://huggingface.co/{html.escape(repos[net])}' target='_blank'>{name}</a>" \
            if net in repos else name
        what = html.escape(chapter.WHAT_CHANGED.get(net, ""))
        parts.append(  # what each net adds: its own column, or under its name where a phone has no room for one
            f"<tr class='{'disagrees' if wrong else 'agrees'}' data-net='{html.escape(net)}'>"
            f"<td class='net'>{link}<span class='what-inline'>{what}</span></td><td class='what'>{what}</td>"
            f"<td class='num'>{info.get('params', 0):,}</td>"
            f"<td class='num'>{'—' if accuracy is None else f'{accuracy:.3f}'}</td>"
            f"<td class='bar-cell'><div class='bar' title='P(bird) = {p_bird:.3f}'>"
            f"<div class='fill {prediction}' style='{_from_the_middle(p_bird)}'></div><div class='mid'></div></div>"
            f"<span class='verdict {prediction}'>{prediction} {max(p_airplane, p_bird):.0%}</span></td></tr>")
    parts.append("</tbody></table>")
    parts.append(f"<p class='timing'>All {total} nets: {verdict.milliseconds:.0f} ms together. "
                 "Highlighted rows disagree with the "
                 f"{'true label' if true_label in votes else 'majority'}. val acc: each net's accuracy on held-out "
                 "images, from its model card.</p>")
    return "".join(parts)


def _from_the_middle(p_bird: float) -> str:
    """A bar from the middle (undecided) towards the side the net picks, as far as its P(bird): filled from the left
    edge, an airplane at 95% was a bar 5% long."""
    left, right = sorted((50.0, p_bird * 100))
    return f"left:{left:.1f}%;width:{right - left:.1f}%"


def empty_scoreboard_html() -> str:
    return ("<div class='vote empty'>Drop an image or click an example: every net answers at once, in the "
            "chapter's order.</div>")


# --- inside a net --------------------------------------------------------------------------------------------------


OUTLIER_RATIO = 10  # a layer whose largest weight is this many times its median one gets a compressed colour scale


def kernel_colours(weights: torch.Tensor):
    """The layer's one zero-centred colour scale, and its colour bar's ticks (None: matplotlib's). Linear, unless a
    few large weights would wash every other kernel out to white (a whitened first conv scales its faint directions
    up ~25x): then linear up to the median weight and logarithmic beyond, so that every kernel's pattern shows and
    the colour bar still reads true, ticked in plain numbers far enough apart to read."""
    from matplotlib.colors import Normalize, SymLogNorm

    limit = float(weights.abs().max()) or 1.0
    median = float(weights.abs().median())
    if not median or limit <= OUTLIER_RATIO * median:
        return Normalize(vmin=-limit, vmax=limit), None
    powers = [10.0 ** k for k in range(int(np.floor(np.log10(median))) + 1, int(np.ceil(np.log10(limit))))]
    ticks = sorted({0.0, limit, -limit, *powers, *(-t for t in powers)})
    return SymLogNorm(linthresh=median, linscale=0.5, vmin=-limit, vmax=limit), ticks


KERNEL_ROWS = 8


def kernels_figure(layers: list[KernelLayer]):
    """Each conv layer's kernels as a grid, every kernel on its layer's one zero-centred colour scale. The longer of
    (output channels, input channels) runs across, so no layer is a thin column of tiny kernels."""
    full = [(l.weights.shape[1], l.weights.shape[0]) if l.weights.shape[0] > l.weights.shape[1]
            else tuple(l.weights.shape[:2]) for l in layers]
    # At most KERNEL_ROWS rows a layer: the 100-block net's 32x32 grids were a 3,800-pixel wall of kernels.
    shapes = [(min(rows, KERNEL_ROWS), cols) for rows, cols in full]
    # Kernels as large as 8 inches across allow: up to 16 columns 0.42 in each, 32 columns 0.25 in.
    heights = [rows * min(0.42, 8.0 / cols) + 1.3 for rows, cols in shapes]
    fig = _figure(8, sum(heights) + 0.2)
    subfigs = np.atleast_1d(fig.subfigures(len(layers), 1, height_ratios=heights))
    for subfig, layer, (rows, cols), (all_rows, _) in zip(subfigs, layers, shapes, full):
        w = layer.weights.float()
        across_out = (all_rows, cols) != tuple(w.shape[:2])  # output channels run across
        k = w.shape[-1]
        grid = np.full((rows * (k + 1) - 1, cols * (k + 1) - 1), np.nan)  # NaN gaps between kernels
        for r in range(rows):
            for c in range(cols):
                kernel = w[c, r] if across_out else w[r, c]
                grid[r * (k + 1):r * (k + 1) + k, c * (k + 1):c * (k + 1) + k] = kernel.numpy()
        norm, ticks = kernel_colours(w)
        ax = subfig.add_subplot()
        image = ax.imshow(grid, cmap=DIVERGING, norm=norm, interpolation="nearest")
        in_labels = ["R", "G", "B"] if layer.in_channels == 3 else None
        row_labels = (in_labels if across_out and in_labels else [str(r) for r in range(rows)])
        ax.set_xticks([c * (k + 1) + (k - 1) / 2 for c in range(cols)], [str(c) for c in range(cols)], fontsize=7)
        ax.set_yticks([r * (k + 1) + (k - 1) / 2 for r in range(rows)], row_labels, fontsize=7)
        ax.set_xlabel("output channel" if across_out else "input channel", fontsize=8)
        ax.set_ylabel("input channel" if across_out else "output channel", fontsize=8)
        ax.tick_params(length=0)
        for side in ax.spines.values():
            side.set_visible(False)
        bar = subfig.colorbar(image, ax=ax, shrink=0.9, label="weight", aspect=12)
        if ticks is not None:
            bar.set_ticks(ticks, labels=[f"{t:.2g}" for t in ticks])
        shown = "" if rows == all_rows else \
            f" (the first {rows} of {all_rows} {'input' if across_out else 'output'} channels shown)"
        subfig.suptitle(layer.caption + shown, fontsize=9, x=0.01, ha="left")
    return fig


def templates_figure(templates: torch.Tensor):
    """The fully connected net's first-layer units as 32x32 weight images, on one zero-centred scale."""
    n = templates.shape[0]
    cols = 8
    fig = _figure(9, 1.0 + 1.15 * ((n + cols - 1) // cols))
    limit = float(templates.abs().max()) or 1.0
    axes = fig.subplots((n + cols - 1) // cols, cols)
    for index, ax in enumerate(np.atleast_1d(axes).flat):
        ax.axis("off")
        if index < n:
            image = ax.imshow(templates[index].numpy(), cmap=DIVERGING, vmin=-limit, vmax=limit)
            ax.set_title(f"unit {index}", fontsize=7)
    fig.colorbar(image, ax=axes, shrink=0.8, label="weight")
    fig.suptitle("fc1: each unit's weights over the 32×32 image", fontsize=10, x=0.02, ha="left")
    return fig


def feature_maps_figure(maps: list[tuple[Stage, torch.Tensor]], input_pixels: np.ndarray):
    """One row per stage (named as the book names it, with its shape), one panel per channel. Activations after
    tanh are drawn on a zero-centred scale, after ReLU from zero up; one scale per stage. The panels are coloured
    here and laid out as one picture on one axes: a matplotlib axes per panel (up to 55) took ~0.7 s to build and
    0.3 s to render."""
    from matplotlib import colormaps
    from matplotlib.colors import Normalize

    panel, gap, top = 32, 10, 8  # every map drawn at 32x32 picture pixels, nearest-neighbour, as the input is
    label_width = 2 * panel  # "conv3 → relu + skip" at 8 points
    channels = max(m.shape[0] for _, m in maps)
    rows = len(maps) + 1
    width = label_width + channels * (panel + gap)
    height = top + rows * (panel + gap)
    canvas = np.ones((height, width, 3))

    def place(row: int, left: int, rgb: np.ndarray) -> None:
        y = top + row * (panel + gap)
        rows_at = np.arange(panel) * rgb.shape[0] // panel
        cols_at = np.arange(panel) * rgb.shape[1] // panel
        canvas[y:y + panel, left:left + panel] = rgb[np.ix_(rows_at, cols_at)]

    place(0, 0, input_pixels[..., :3] / 255.0)
    labels = [(0, top - 1, "input 3×32×32", 8, "left", "bottom")]
    for row, (stage, activation) in enumerate(maps, start=1):
        values = activation.float().numpy()
        signed = values.min() < 0
        limit = float(np.abs(values).max()) or 1.0
        colours = colormaps[DIVERGING if signed else "viridis"]
        norm = Normalize(-limit if signed else 0, limit)
        for channel in range(values.shape[0]):
            left = label_width + channel * (panel + gap)
            place(row, left, colours(norm(values[channel]))[..., :3])
            if row == 1:
                labels.append((left + panel / 2, top + panel + gap - 2, f"ch {channel}", 7, "center", "bottom"))
        labels.append((0, top + row * (panel + gap) + panel / 2, f"{stage.name}\n{stage.shape_text}", 8, "left",
                       "center"))
    fig = _figure(9, 9 * height / width, layout=None)  # one axes placed by hand: nothing to lay out
    ax = fig.add_axes((0.01, 0.0, 0.98, 1.0))
    ax.imshow(canvas, interpolation="nearest")
    ax.axis("off")
    for x, y, text, size, ha, va in labels:
        ax.text(x, y, text, fontsize=size, ha=ha, va=va)
    return fig


def layers_markdown(stages: list[Stage], keep: int = 3) -> str:
    """The net layer by layer (anatomy.stages), as the book names them: output shape, parameters and what one unit
    sees. A long run of residual blocks shows its first and last ``keep`` blocks and one line for those between."""
    lines = ["| layer | output (C×H×W) | params | each unit sees |", "|---|---:|---:|---:|",
             "| input | 3×32×32 | | 1×1 |"]
    blocks = [i for i, s in enumerate(stages) if s.name.startswith("block ")]
    hidden = set(blocks[keep:-keep]) if len(blocks) > 2 * keep + 1 else set()
    for i, s in enumerate(stages):
        if i in hidden:
            if i == min(hidden):
                first, last = stages[min(hidden)], stages[max(hidden)]
                lines.append(f"| {first.name} … {last.name.split()[-1]} ({len(hidden)} blocks) | {s.shape_text} "
                             f"each | {sum(stages[j].params for j in hidden):,} | {_field(first)} … {_field(last)} |")
            continue
        lines.append(f"| {s.name} | {s.shape_text} | {s.params:,} | {_field(s)} |")
    lines.append(f"| **total** | | **{sum(s.params for s in stages):,}** | |")
    return "\n".join(lines)


def _field(stage: Stage) -> str:
    if stage.field is None:
        return "all 32×32"
    side = min(int(stage.field.size), 32)
    return f"{side}×{side}"


# --- the explorers -------------------------------------------------------------------------------------------------


def translation_figure(curves: dict[str, np.ndarray], shifts, class_name: str, current: int):
    """P(class) against the shift, one line per net: the fully connected net in red, the convnets in blues."""
    import plotly.graph_objects as go  # imported when first drawn: the first page needs no plotly

    fig = go.Figure()
    for net, probs in curves.items():
        fig.add_trace(go.Scatter(
            x=list(shifts), y=probs, mode="lines+markers", name=net,
            line={"color": NET_COLOURS.get(net, CONV_COLOUR), "width": 4 if net == "fc" else 2,
                  "dash": "solid" if net in ("fc", "net") else "dot"},
            hovertemplate=f"{net}<br>shift %{{x}} px<br>P({class_name}) %{{y:.3f}}<extra></extra>"))
    fig.add_vline(x=current, line={"color": "#444", "width": 1, "dash": "dash"})
    fig.add_hline(y=0.5, line={"color": "#bbb", "width": 1})
    _layout(fig, f"P({class_name}) as the image shifts", "shift (pixels, + is right)", f"P({class_name})", [0, 1])
    return fig


def shift_accuracy_figure(table: dict):
    """Validation accuracy against the shift, per net (from translation.json)."""
    import plotly.graph_objects as go  # imported when first drawn: the first page needs no plotly

    fig = go.Figure()
    for net, accuracy in table["accuracy"].items():
        fig.add_trace(go.Scatter(
            x=table["shifts"], y=accuracy, mode="lines", name=net,
            line={"color": NET_COLOURS.get(net, CONV_COLOUR), "width": 4 if net == "fc" else 2,
                  "dash": "solid" if net in ("fc", "net") else "dot"},
            hovertemplate=f"{net}<br>shift %{{x}} px<br>accuracy %{{y:.3f}}<extra></extra>"))
    n_images = table.get("n_images")
    _layout(fig, f"Accuracy on {n_images:,} validation images, shifted" if isinstance(n_images, int)
            else "Accuracy on the validation images, shifted",
            "shift (pixels, + is right)", "accuracy", None)
    return fig


SKIP_COLOURS = {True: NET_COLOURS["net_res_deep100"], False: "#d62728"}


def skips_figure(gradients: Gradients, extent: tuple[float, float]):
    """The gradient reaching each block of a fresh stack, with and without skips, on a log scale over ``extent``
    (the same for every depth, so that the plain stack's line is seen to climb as it deepens)."""
    import math

    import plotly.graph_objects as go  # imported when first drawn: the first page needs no plotly

    fig = go.Figure()
    blocks = list(range(1, gradients.blocks + 1))
    for skips, norms, name in ((True, gradients.with_skips, "with skip connections (out = block(x) + x)"),
                               (False, gradients.without_skips, "without (out = block(x))")):
        fig.add_trace(go.Scatter(
            x=blocks, y=list(norms), mode="lines+markers" if len(blocks) <= 30 else "lines", name=name,
            line={"color": SKIP_COLOURS[skips], "width": 3, "dash": "solid" if skips else "dot"},
            hovertemplate=f"{'with' if skips else 'without'} skips<br>block %{{x}}<br>gradient %{{y:.3g}}"
                          "<extra></extra>"))
    _layout(fig, "Gradient at each block, before training", "block (1 = nearest the image)",
            "gradient size (log scale)", None)
    low, high = (math.log10(v) for v in extent)
    fig.update_yaxes(type="log", exponentformat="power", dtick=1, range=[math.floor(low), math.ceil(high)])
    fig.update_xaxes(range=[0.5, gradients.blocks + 0.5], dtick=1 if gradients.blocks <= 10 else None)
    return fig


def shifted_preview(x: torch.Tensor, dx: int) -> np.ndarray:
    from convhub.preprocessing import translate
    from inference import to_display

    return to_display(translate(x, dx)[0], scale=4)


def moved_picture(moved: Moved, scale: int = 6, gap: int = 12) -> tuple[np.ndarray, int | None]:
    """The layer before and after the shift, side by side on one zero-centred scale: a conv layer's liveliest channel
    (the one that varies most over the original image), or a fully connected layer's units in a square grid, in the
    order of their values on the original image (a smooth ramp there, and as smooth after the shift only where each
    unit kept its value: the units have no positions). Also the channel shown, if any."""
    from matplotlib import colormaps
    from matplotlib.colors import Normalize

    before, after = moved.before.numpy(), moved.after.numpy()
    channel = None
    if moved.is_map:
        channel = int(before.reshape(len(before), -1).std(1).argmax())
        panels = [before[channel], after[channel]]
    else:
        side = int(np.ceil(np.sqrt(before.size)))
        order = np.argsort(before, kind="stable")
        panels = [np.pad(units[order], (0, side * side - units.size), mode="edge").reshape(side, side)
                  for units in (before, after)]
    limit = max(float(np.abs(panel).max()) for panel in panels) or 1.0
    colours, norm = colormaps[DIVERGING], Normalize(-limit, limit)
    height, width = (cells * scale for cells in panels[0].shape)
    canvas = np.full((height + 2, 2 * (width + 2) + gap, 3), 255, np.uint8)
    for i, panel in enumerate(panels):
        rgb = (colours(norm(panel))[..., :3] * 255).round().astype(np.uint8)
        left = i * (width + 2 + gap)
        canvas[:, left:left + width + 2] = 110  # a frame: a pale band shifted in is not taken for the gap
        canvas[1:-1, left + 1:left + 1 + width] = np.kron(rgb, np.ones((scale, scale, 1), np.uint8))
    return canvas, channel


def receptive_field_images(input_pixels: np.ndarray, stage: Stage, activation: torch.Tensor,
                           y: int, x: int, scale_to: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """The stage's map (mean over channels) with unit (y, x) marked, and the 32x32 input with that unit's receptive
    field outlined and the rest dimmed."""
    _, height, width = stage.shape
    mean = activation.float().mean(0).numpy()
    span = (mean.max() - mean.min()) or 1.0
    grey = ((mean - mean.min()) / span * 200 + 30).astype(np.uint8)
    cell = scale_to // max(height, width)
    map_image = Image.fromarray(np.kron(grey, np.ones((cell, cell), np.uint8))).convert("RGB")
    draw = ImageDraw.Draw(map_image)
    draw.rectangle([x * cell, y * cell, (x + 1) * cell - 1, (y + 1) * cell - 1], outline=(255, 140, 0), width=3)

    top, left, bottom, right = stage.field.box(y, x)
    scale = input_pixels.shape[0] // 32
    dimmed = (input_pixels * 0.3).astype(np.uint8)
    dimmed[top * scale:(bottom + 1) * scale, left * scale:(right + 1) * scale] = \
        input_pixels[top * scale:(bottom + 1) * scale, left * scale:(right + 1) * scale]
    field_image = Image.fromarray(dimmed)
    box = [left * scale, top * scale, (right + 1) * scale - 1, (bottom + 1) * scale - 1]
    ImageDraw.Draw(field_image).rectangle(box, outline=(255, 140, 0), width=3)
    return np.asarray(map_image), np.asarray(field_image)


def sharing_figure(in_channels: int, out_channels: int, kernel: int, side: int):
    """Parameters of a conv layer and of the fully connected layer with the same outputs, as the image grows."""
    import plotly.graph_objects as go  # imported when first drawn: the first page needs no plotly

    from inference import sharing_counts

    sides = [1, 2, 4, 8, 16, 32, 64, 128, 256]
    counts = [sharing_counts(s, in_channels, out_channels, kernel) for s in sides]
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=sides, y=[c for c, _ in counts], name=f"Conv2d({in_channels}, {out_channels}, {kernel})",
                             mode="lines+markers", line={"color": CONV_COLOUR, "width": 3},
                             hovertemplate="%{x}×%{x}: %{y:,} parameters<extra></extra>"))
    fig.add_trace(go.Scatter(x=sides, y=[f for _, f in counts], name="Linear, same inputs and outputs",
                             mode="lines+markers", line={"color": FC_COLOUR, "width": 3},
                             hovertemplate="%{x}×%{x}: %{y:,} parameters<extra></extra>"))
    fig.add_vline(x=side, line={"color": "#444", "width": 1, "dash": "dash"})
    conv, linear = sharing_counts(side, in_channels, out_channels, kernel)
    side_of = "right" if side <= 64 else "left"  # clear of the plot's edge
    for count, colour, position in ((conv, CONV_COLOUR, f"top {side_of}"), (linear, FC_COLOUR, f"bottom {side_of}")):
        # each layer's count at the chosen side, on the plot: the conv line sits under the axis's lowest tick
        fig.add_trace(go.Scatter(x=[side], y=[count], mode="markers+text", text=[f"{count:,}"], showlegend=False,
                                 textposition=position, textfont={"color": colour, "size": 13}, hoverinfo="skip",
                                 marker={"color": colour, "size": 10, "line": {"color": "white", "width": 1}}))
    _layout(fig, "Parameters as the image grows", "image side (pixels)", "parameters (log scale)", None)
    fig.update_xaxes(type="log", tickvals=sides, ticktext=[str(s) for s in sides])
    fig.update_yaxes(type="log", tickformat=",")
    return fig


# --- compare -------------------------------------------------------------------------------------------------------


LABEL_GAP_PX = 17  # pixels between two labels of the Compare plot
LEFT_LABEL_PARAMS = 500_000  # nets over this size are labelled left of their points, so none runs off a phone
MARK_CLEARANCE_PX = 14  # from a mark's centre to the centre of a label passing it: the mark's radius + half a label
LABEL_REACH_DECADES = 1.2  # how far along the log x axis a label's text may run on a phone (~115 px a decade there)
LABEL_START_DECADES = 0.15  # the label's leader line, not its text, passes marks closer than this


def _label_offsets(points: list[tuple[str, int, float]], marks: list[tuple[int, float]], y_range: list[float],
                   plot_px: float) -> dict:
    """Pixel offsets (ax, ay) for each net's label. Labels sit beside their points, right of them (left for nets
    over LEFT_LABEL_PARAMS, so none runs off a phone's screen, and close to the point, so that on a phone the label
    ends before the 38k nets' marks), pushed apart vertically to LABEL_GAP_PX in the order of their points: on a
    phone the x axis is too short to keep any two labels apart by x alone. A label is also kept MARK_CLEARANCE_PX
    above or below every mark (``marks``: parameters, accuracy) its text would run across on a phone."""
    to_px = lambda accuracy: (y_range[1] - accuracy) / (y_range[1] - y_range[0]) * plot_px  # noqa: E731
    column = sorted((to_px(accuracy), name, params) for name, params, accuracy in points)
    if not column:
        return {}
    wanted = [y for y, _, _ in column]
    placed = wanted[:1]
    for y in wanted[1:]:
        placed.append(max(y, placed[-1] + LABEL_GAP_PX))
    shift = (sum(wanted) - sum(placed)) / len(placed)  # centred on where the points are
    placed = [y + shift for y in placed]
    placed[0] = max(placed[0], LABEL_GAP_PX / 2)  # inside the plot, still apart
    for i in range(len(placed)):
        if i:
            placed[i] = max(placed[i], placed[i - 1] + LABEL_GAP_PX)
        placed[i] = _clear_of_marks(placed[i], column[i][2], marks, to_px)
    placed[-1] = min(placed[-1], plot_px - LABEL_GAP_PX / 2)
    for i in range(len(placed) - 2, -1, -1):
        placed[i] = min(placed[i], placed[i + 1] - LABEL_GAP_PX)
    return {name: ((-16 if params > LEFT_LABEL_PARAMS else 48), label_y - y)
            for (y, name, params), label_y in zip(column, placed)}


def _clear_of_marks(label_y: float, params: int, marks: list[tuple[int, float]], to_px) -> float:
    """``label_y`` moved down past any mark the label's text would cover (the column is placed top to bottom)."""
    direction = -1 if params > LEFT_LABEL_PARAMS else 1
    in_the_way = sorted(to_px(accuracy) for mark_params, accuracy in marks
                        if LABEL_START_DECADES <= direction * np.log10(mark_params / params) <= LABEL_REACH_DECADES)
    for mark_y in in_the_way:
        if abs(label_y - mark_y) < MARK_CLEARANCE_PX:
            label_y = mark_y + MARK_CLEARANCE_PX
    return label_y


def compare_figure(rows: list[dict]):
    """Accuracy against parameters: ours (filled) and the book's (hollow), each pair joined; labels that never sit
    on each other; the fc -> net step annotated; a linear/log switch for the x axis."""
    import plotly.graph_objects as go  # imported when first drawn: the first page needs no plotly

    fig = go.Figure()
    book_points: dict[tuple[int, float], list[str]] = {}
    for row in rows:
        colour = NET_COLOURS.get(row["net"], CONV_COLOUR)
        ours, book = row["val_accuracy"], row["book_val_accuracy"]
        if ours is not None and book is not None:
            fig.add_trace(go.Scatter(x=[row["params"], row["params"]], y=[book, ours], mode="lines",
                                     line={"color": colour, "width": 1, "dash": "dot"}, showlegend=False,
                                     hoverinfo="skip"))
        if book is not None:
            book_points.setdefault((row["params"], book), []).append(row["net"])
        if ours is not None:
            fig.add_trace(go.Scatter(
                x=[row["params"]], y=[ours], mode="markers", name=row["net"], marker={"color": colour, "size": 12},
                hovertemplate=f"<b>{row['net']}</b> ({row['class']})<br>%{{x:,}} parameters<br>validation accuracy "
                              f"{ours:.3f}<extra></extra>"))
    for (params, book), names in book_points.items():  # net_depth and net_res share size and book figure
        colour = NET_COLOURS.get(names[0], CONV_COLOUR)
        fig.add_trace(go.Scatter(
            x=[params], y=[book], mode="markers", name=f"{' & '.join(names)} (book)", showlegend=False,
            marker={"color": "white", "size": 11, "line": {"color": colour, "width": 2}},
            hovertemplate=f"<b>{' and '.join(names)}</b> in the book<br>%{{x:,}} parameters<br>validation accuracy "
                          f"{book:.2f}<extra></extra>"))
    accuracies = [v for r in rows for v in (r["val_accuracy"], r["book_val_accuracy"]) if v is not None]
    y_range = [min(accuracies) - 0.02, max(accuracies) + 0.02] if accuracies else [0.5, 1.0]
    height, margin = 440, {"l": 60, "r": 16, "t": 20, "b": 84}
    labelled = [(r["net"], r["params"], r["val_accuracy"]) for r in rows if r["val_accuracy"] is not None]
    marks = [(r["params"], v) for r in rows for v in (r["val_accuracy"], r["book_val_accuracy"]) if v is not None]
    offsets = _label_offsets(labelled, marks, y_range, height - margin["t"] - margin["b"])
    log_x = lambda params: float(np.log10(params))  # noqa: E731 - annotations on a log axis take log10 positions
    by_net = {r["net"]: r for r in rows}
    fc, net = by_net.get("fc"), by_net.get("net")
    if fc and net and fc["val_accuracy"] is not None and net["val_accuracy"] is not None:
        fig.add_annotation(  # the arrow alone, fc -> net
            x=log_x(net["params"]), y=net["val_accuracy"], ax=log_x(fc["params"]), ay=fc["val_accuracy"],
            xref="x", yref="y", axref="x", ayref="y", showarrow=True, arrowhead=3, arrowwidth=2,
            arrowcolor="#444", text="", standoff=8, startstandoff=8)
        fig.add_annotation(  # centred on the plot, on either scale
            x=0.5, y=y_range[0] + 0.012, xref="paper", yref="y", showarrow=False, font={"size": 12},
            text=f"fc → net: {fc['params'] / net['params']:,.0f}× fewer parameters, "
                 f"{(net['val_accuracy'] - fc['val_accuracy']) * 100:+.1f} points")
    for name, params, accuracy in labelled:
        ax, ay = offsets[name]
        fig.add_annotation(x=log_x(params), y=accuracy, xref="x", yref="y", text=name, ax=ax, ay=ay,
                           xanchor="left" if ax > 0 else "right", showarrow=True, arrowhead=0, arrowwidth=1,
                           arrowcolor="#999", standoff=6, font={"size": 11, "color": NET_COLOURS.get(name, "#333")},
                           bgcolor="rgba(255,255,255,0.85)")  # drawn after the fc -> net arrow: over it, legible
    _layout(fig, None, "parameters", "validation accuracy", y_range)
    ticks = [10_000, 20_000, 50_000, 100_000, 200_000, 500_000, 1_000_000, 2_000_000, 5_000_000]
    labels = ["10k", "20k", "50k", "100k", "200k", "500k", "1M", "2M", "5M"]
    fig.update_xaxes(type="log", tickvals=ticks, ticktext=labels)
    # The switch sits under the plot, at its left: above it, Plotly's toolbar covered it on a phone. On a linear axis
    # the range starts at 0 (the labels' room had stretched it to -2,000,000 parameters).
    fig.update_layout(height=height, margin=margin, showlegend=False, updatemenus=[{
        "type": "buttons", "direction": "left", "x": 0, "y": -0.2, "xanchor": "left", "yanchor": "top",
        "pad": {"t": 0, "b": 0}, "font": {"size": 11},
        "buttons": [{"label": "log scale", "method": "relayout",
                     "args": [{"xaxis.type": "log", "xaxis.tickvals": ticks, "xaxis.ticktext": labels,
                               "xaxis.rangemode": "normal", "xaxis.autorange": True}]},
                    {"label": "linear scale", "method": "relayout",
                     "args": [{"xaxis.type": "linear", "xaxis.tickvals": None, "xaxis.ticktext": None,
                               "xaxis.tickformat": ",", "xaxis.rangemode": "nonnegative",
                               "xaxis.autorange": True}]}]}])
    return fig


def compare_markdown(rows: list[dict], repos: dict[str, str] | None = None) -> str:
    """The Compare table; each net's name links to its model repo where ``repos`` names one. Ours and the book's
    accuracies come first, so that a phone, which shows only the first columns before scrolling, shows both."""
    from urllib.parse import quote

    lines = ["| net | ours (val) | book (val) | params | epochs |", "|---|---:|---:|---:|---:|"]
    for r in rows:
        book = "—" if r["book_val_accuracy"] is None else f"{r['book_val_accuracy']:.2f}"
        if r["net"] == "net_res_deep":
            book = "—¹"
        ours = "—" if r["val_accuracy"] is None else f"{r['val_accuracy']:.3f}"
        name = f"`{r['net']}`"
        if repos and r["net"] in repos:
            name = f"[{name}](https://huggingface.co/{quote(repos[r['net']], safe='/-_.')})"
        lines.append(f"| {name} | {ours} | {book} | {r['params']:,} | {r['epochs'] or '—'} |")
    if any(r["net"] == "net_res_deep" for r in rows):
        lines.append("\n¹ The book trained only the 100-block residual net.")
    return "\n".join(lines)


def _layout(fig, title: str, x_title: str, y_title: str, y_range):
    fig.update_layout(
        title={"text": title, "font": {"size": 15}}, template="plotly_white", height=420,
        margin={"l": 60, "r": 20, "t": 70, "b": 50}, hovermode="closest",
        legend={"orientation": "h", "y": -0.22, "font": {"size": 10}},
        xaxis_title=x_title, yaxis_title=y_title)
    if y_range:
        fig.update_yaxes(range=y_range)

