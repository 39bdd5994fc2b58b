"""The performance page's table, made from a ``fastxent bench --json`` run.

``python docs/performance/bench_table.py`` prints the Markdown table of ``bench.json``
beside this file; ``--update`` writes it into ``docs/performance.md`` between its two
marker comments. The test suite checks that the page holds the table of the committed
JSON, so the page and the JSON cannot drift apart.
"""

from __future__ import annotations

import json
import math
import pathlib
import sys
from typing import Any

HERE = pathlib.Path(__file__).resolve().parent
JSON = HERE / "bench.json"
PAGE = HERE.parent / "performance.md"
BEGIN = "% Generated from performance/bench.json by docs/performance/bench_table.py --update."
END = "% End of the generated table."


def _significant(value: float, digits: int = 3) -> str:
    """``value`` with about ``digits`` significant digits, never in exponent notation."""
    if value <= 0 or not math.isfinite(value):
        return "-"
    decimals = max(0, digits - 1 - math.floor(math.log10(value)))
    return f"{value:.{decimals}f}"


def table(data: dict[str, Any]) -> str:
    """Per case: fastxent's time, the peers' times over it, PyTorch's over the drop-in's."""
    medians = {
        (tuple(m["shape"]), m["operation"], m["peer"]): m["median_s"] for m in data["results"]
    }
    cases = list(dict.fromkeys((tuple(m["shape"]), m["operation"]) for m in data["results"]))
    lines = [
        "| N x C | operation | fastxent ms | vs NumPy | vs PyTorch | drop-in vs PyTorch |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for shape, operation in cases:
        own = medians[shape, operation, "fastxent"]
        reference = medians.get((shape, operation, "reference"), math.nan)
        torch = medians.get((shape, operation, "torch"), math.nan)
        dropin = medians.get((shape, operation, "fastxent.torch"), math.nan)
        cells = [
            " x ".join(map(str, shape)),
            operation,
            _significant(own * 1e3),
            _significant(reference / own) + "x",
            _significant(torch / own) + "x",
            _significant(torch / dropin) + "x",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def page_with_table(page: str, data: dict[str, Any]) -> str:
    """``page`` with the text between the markers replaced by the table of ``data``."""
    start = page.index(BEGIN) + len(BEGIN)
    end = page.index(END)
    return page[:start] + "\n\n" + table(data) + "\n\n" + page[end:]


def main(argv: list[str]) -> None:
    """Print the table, or with ``--update`` write it into the performance page."""
    with open(JSON) as handle:
        data = json.load(handle)
    if "--update" in argv:
        PAGE.write_text(page_with_table(PAGE.read_text(), data))
    else:
        print(table(data))


if __name__ == "__main__":
    main(sys.argv[1:])
