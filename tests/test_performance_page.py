"""The performance page's table and chart come from the committed ``fastxent bench`` JSON."""

from __future__ import annotations

import importlib.util
import json
import pathlib
import sys

import pytest

FOLDER = pathlib.Path(__file__).resolve().parent.parent / "docs" / "performance"


def _module(name):
    spec = importlib.util.spec_from_file_location(name, FOLDER / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _data():
    with open(FOLDER / "bench.json") as handle:
        return json.load(handle)


def test_page_holds_the_table_of_the_committed_json():
    bench_table = _module("bench_table")
    page = bench_table.PAGE.read_text()
    assert bench_table.page_with_table(page, _data()) == page, (
        "docs/performance.md's table is not that of docs/performance/bench.json: run "
        "python docs/performance/bench_table.py --update"
    )


def test_json_has_every_peer_of_every_case():
    results = _data()["results"]
    cases = {(tuple(m["shape"]), m["operation"]) for m in results}
    peers = {(tuple(m["shape"]), m["operation"], m["peer"]) for m in results}
    for shape, operation in cases:
        for peer in ("fastxent", "reference", "torch", "fastxent.torch"):
            assert (shape, operation, peer) in peers
    assert {operation for _, operation in cases} == {"forward", "forward+grad"}


def test_chart_draws_both_operations(monkeypatch):
    pytest.importorskip("matplotlib")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    monkeypatch.setattr(sys, "argv", [str(FOLDER / "plot_bench.py")])
    figure = _module("plot_bench").draw(_data())
    try:
        titles = [axes.get_title() for axes in figure.axes]
        assert titles == ["forward", "forward+grad"]
        bars = [len(axes.patches) for axes in figure.axes]
        n_shapes = len({tuple(m["shape"]) for m in _data()["results"]})
        assert bars == [3 * n_shapes, 3 * n_shapes]
    finally:
        plt.close(figure)
