"""The chapter's comparison, regenerated from real runs: a results table (markdown + JSON) and a plot."""

from __future__ import annotations

import json
from pathlib import Path
from typing import BinaryIO

from convhub.card import BOOK_VAL_ACCURACY
from convhub.errors import ConvHubError
from convhub.zoo import NETS

from .artifacts import replace_file

COLUMNS = ("model", "params", "val_accuracy", "train_accuracy", "book_val_accuracy", "epochs", "seconds", "recipe")


def result_row(record: dict) -> dict:
    return {
        "model": record["model_name"],
        "params": record["params"],
        "val_accuracy": round(record["val_accuracy"], 4),
        "train_accuracy": round(record["train_accuracy"], 4),
        "book_val_accuracy": BOOK_VAL_ACCURACY.get(record["model_name"]),
        "epochs": record["epochs"],
        "seconds": record["seconds"],
        "recipe": record["recipe"],
    }


def markdown_table(rows: list[dict]) -> str:
    header = "| model | params | val acc | train acc | book val acc | epochs | seconds | recipe |\n|---|---:|---:|---:|---:|---:|---:|---|\n"
    body = "".join(
        f"| {r['model']} | {r['params']:,} | {r['val_accuracy']:.4f} | {r['train_accuracy']:.4f} | "
        f"{'' if r['book_val_accuracy'] is None else format(r['book_val_accuracy'], '.2f')} | {r['epochs']} | "
        f"{r['seconds']:.0f} | {r['recipe']} |\n"
        for r in rows
    )
    return header + body


def plot_accuracy_vs_params(rows: list[dict], path: Path | BinaryIO) -> Path | BinaryIO:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5), dpi=120)
    ax.scatter([r["params"] for r in rows], [r["val_accuracy"] for r in rows], label="ours (val)", zorder=3)
    for r in rows:
        ax.annotate(r["model"], (r["params"], r["val_accuracy"]), textcoords="offset points", xytext=(5, 4), fontsize=8)
    book = [r for r in rows if r["book_val_accuracy"] is not None]
    ax.scatter([r["params"] for r in book], [r["book_val_accuracy"] for r in book], marker="x", color="gray",
               label="book (val)", zorder=2)
    ax.set_xscale("log")
    ax.set_xlabel("parameters (log scale)")
    ax.set_ylabel("validation accuracy")
    ax.set_title("CIFAR-2 (airplane vs bird): accuracy vs parameters")
    ax.grid(True, alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, format="png")
    plt.close(fig)
    return path


def in_zoo_order(records: list[dict]) -> list[dict]:
    """The chapter's order, as the Space shows the nets; a net the zoo does not name comes last."""
    order = list(NETS)
    return sorted(records, key=lambda r: order.index(r["model_name"]) if r["model_name"] in order else len(order))


def write_report(records: list[dict], out_dir: str | Path) -> dict[str, Path]:
    """results.json, results.md and the plot, each replaced whole; the plot first, so that a plot that cannot be
    drawn leaves all three as they were."""
    if not records:
        raise ConvHubError("no trained nets to report: the report in place is kept")
    out_dir = Path(out_dir)
    rows = [result_row(r) for r in records]
    paths = {"json": out_dir / "results.json", "markdown": out_dir / "results.md", "plot": out_dir / "accuracy_vs_params.png"}
    replace_file(paths["plot"], lambda file: plot_accuracy_vs_params(rows, file))
    replace_file(paths["json"], lambda file: file.write((json.dumps(rows, indent=2) + "\n").encode()))
    replace_file(paths["markdown"], lambda file: file.write(markdown_table(rows).encode()))
    return paths
