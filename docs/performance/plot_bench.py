"""Chart of a ``fastxent bench --json`` run: speed-ups over PyTorch and NumPy, per shape.

The documentation draws it at build time from ``bench.json`` beside this file (matplotlib's
plot directive runs this script). Run it yourself on another run's JSON::

    python docs/performance/plot_bench.py my-bench.json my-chart.png
"""

from __future__ import annotations

import json
import pathlib
import sys
from typing import Any

import matplotlib.pyplot as plt
from matplotlib.ticker import FuncFormatter

HERE = pathlib.Path(sys.argv[0]).resolve().parent
OPERATIONS = ("forward", "forward+grad")
# (label, numerator peer, denominator peer): each bar is a ratio of median times.
BARS = (
    ("fastxent over PyTorch", "torch", "fastxent"),
    ("fastxent.torch over PyTorch (both through tensors)", "torch", "fastxent.torch"),
    ("fastxent over the NumPy reference", "reference", "fastxent"),
)
COLOURS = ("#1f77b4", "#6baed6", "#ff7f0e")


def load(path: pathlib.Path) -> dict[str, Any]:
    """The JSON that ``fastxent bench --json PATH`` writes."""
    with open(path) as handle:
        data: dict[str, Any] = json.load(handle)
    return data


def draw(data: dict[str, Any]) -> plt.Figure:
    """One panel per operation; per shape, one bar per ratio (slower's time / faster's)."""
    medians = {
        (tuple(m["shape"]), m["operation"], m["peer"]): m["median_s"] for m in data["results"]
    }
    shapes = list(dict.fromkeys(tuple(m["shape"]) for m in data["results"]))
    figure, panels = plt.subplots(len(OPERATIONS), 1, figsize=(7.5, 7.5), sharex=True, sharey=True)
    width = 0.8 / len(BARS)
    for panel, operation in zip(panels, OPERATIONS, strict=True):
        for k, (label, slower, faster) in enumerate(BARS):
            positions, ratios = [], []
            for i, shape in enumerate(shapes):
                numerator = medians.get((shape, operation, slower))
                denominator = medians.get((shape, operation, faster))
                if numerator and denominator:
                    positions.append(i + (k - (len(BARS) - 1) / 2) * width)
                    ratios.append(numerator / denominator)
            panel.bar(positions, ratios, width, label=label, color=COLOURS[k])
        panel.axhline(1.0, color="black", linewidth=0.8)
        panel.set_yscale("log")
        panel.yaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}x"))
        panel.set_title(operation, fontsize=10)
        panel.set_ylabel("speed-up", fontsize=9)
        panel.grid(axis="y", which="major", linewidth=0.4, alpha=0.5)
    bottom = panels[-1]
    bottom.set_xticks(range(len(shapes)))
    bottom.set_xticklabels([f"{n} x {c}" for n, c in shapes], fontsize=8)
    bottom.set_xlabel("N x C (float32 logits, integer labels)", fontsize=9)
    handles, labels = panels[0].get_legend_handles_labels()
    figure.legend(handles, labels, loc="lower center", ncol=1, fontsize=9, frameon=False)
    figure.tight_layout(rect=(0, 0.1, 1, 1))
    return figure


def main(argv: list[str]) -> None:
    """Draw ``argv[1]`` (default: the committed ``bench.json``), saved to ``argv[2]`` if given."""
    source = pathlib.Path(argv[1]) if len(argv) > 1 else HERE / "bench.json"
    figure = draw(load(source))
    if len(argv) > 2:
        figure.savefig(argv[2], dpi=144)


if __name__ == "__main__":
    main(sys.argv)
