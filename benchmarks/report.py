"""A full report of fastxent's speed on this machine, beyond the documentation's table.

Usage: ``python benchmarks/report.py [--quick]`` (needs ``pip install -e ".[dev]"`` for
PyTorch and matplotlib; JAX is used when installed). Writes ``benchmarks/report/
results.md`` (peers, threads, class counts, options, start-up) and its charts
``speedup.png`` and ``scaling.png``; each table is the median of interleaved repetitions
measured in this one run. The table of docs/performance.md comes from ``fastxent bench
--json`` instead (the commands are on that page).
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numba
import numpy as np

import fastxent
from fastxent import _threading, bench
from fastxent.cli import _cpu_name

OUT = Path(__file__).resolve().parent / "report"


def _median_time(call, repeats: int) -> float:
    call()
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def scaling_with_classes(total: int, repeats: int) -> list[tuple[int, float, float]]:
    """(C, forward s, forward+grad s) at a fixed number of logits N x C = ``total``."""
    rows = []
    rng = np.random.default_rng(0)
    for n_classes in (10, 100, 1000, 10_000, 100_000):
        n_rows = total // n_classes
        x = rng.standard_normal((n_rows, n_classes), dtype=np.float32)
        y = rng.integers(0, n_classes, n_rows)
        forward = _median_time(lambda x=x, y=y: fastxent.cross_entropy(x, y), repeats)
        both = _median_time(lambda x=x, y=y: fastxent.cross_entropy_with_grad(x, y), repeats)
        rows.append((n_classes, forward, both))
    return rows


def scaling_with_threads(repeats: int) -> list[tuple[int, float, float]]:
    """(threads, forward s, np.sum s) at 4096 x 32000 float32.

    The thread counts alternate within each repetition (after one untimed call at the new
    count), so that a slow spell of this shared machine falls on all of them alike.
    """
    rng = np.random.default_rng(0)
    x = rng.standard_normal((4096, 32000), dtype=np.float32)
    y = rng.integers(0, 32000, 4096)
    counts = list(range(1, numba.config.NUMBA_NUM_THREADS + 1))
    forward: dict[int, list[float]] = {t: [] for t in counts}
    summed: dict[int, list[float]] = {t: [] for t in counts}
    for repeat in range(repeats):
        shift = repeat % len(counts)
        for threads in counts[shift:] + counts[:shift]:
            numba.set_num_threads(threads)
            fastxent.cross_entropy(x, y)
            start = time.perf_counter()
            fastxent.cross_entropy(x, y)
            forward[threads].append(time.perf_counter() - start)
            start = time.perf_counter()
            x.sum()
            summed[threads].append(time.perf_counter() - start)
    numba.set_num_threads(numba.config.NUMBA_NUM_THREADS)
    return [(t, statistics.median(forward[t]), statistics.median(summed[t])) for t in counts]


def roofline(repeats: int) -> list[tuple[str, float, float]]:
    """(shape, fastxent forward GB/s, np.sum GB/s) on the same array, interleaved."""
    rng = np.random.default_rng(0)
    out = []
    for n_rows, n_classes in ((4096, 32000), (1024, 128256)):
        x = rng.standard_normal((n_rows, n_classes), dtype=np.float32)
        y = rng.integers(0, n_classes, n_rows)
        ours, theirs = [], []
        fastxent.cross_entropy(x, y)
        for _ in range(repeats):
            start = time.perf_counter()
            fastxent.cross_entropy(x, y)
            ours.append(time.perf_counter() - start)
            start = time.perf_counter()
            x.sum()
            theirs.append(time.perf_counter() - start)
        out.append(
            (
                f"{n_rows} x {n_classes}",
                x.nbytes / statistics.median(ours) / 1e9,
                x.nbytes / statistics.median(theirs) / 1e9,
            )
        )
    return out


def _plain_and_options_calls(
    function: Callable[..., Any], x: Any, y: Any, ignored: Any, weight: Any
) -> list[Callable[[], Any]]:
    """The plain call and the options call, written as a user writes them.

    (A ``functools.partial`` with keywords builds a new dict on every call: ~0.2-0.4 us,
    a twentieth of a 1 x 10 call, that the options call alone would pay.)
    """

    def plain() -> Any:
        return function(x, y)

    def with_options() -> Any:
        return function(x, ignored, weight=weight, ignore_index=-100, label_smoothing=0.1)

    return [plain, with_options]


def options_overhead(repeats: int) -> list[tuple[str, float, float]]:
    """(shape, forward ratio, forward+grad ratio) of the options call against the plain one.

    The options: class weights, 10 % of the labels ignored, label smoothing 0.1. Calls
    alternate (plain, options) within each repetition; a repetition repeats a small
    call for at least ``bench.SAMPLE_S``.
    """
    rng = np.random.default_rng(0)
    out = []
    for n_rows, n_classes in bench.DEFAULT_SHAPES:
        x = (rng.standard_normal((n_rows, n_classes)) * 2.0).astype(np.float32)
        y = rng.integers(0, n_classes, n_rows)
        ignored = y.copy()
        ignored[::10] = -100
        weight = rng.uniform(0.5, 2.0, n_classes)
        ratios = []
        for function in (fastxent.cross_entropy, fastxent.cross_entropy_with_grad):
            calls = _plain_and_options_calls(function, x, y, ignored, weight)
            loops = [bench._inner_loops_for(bench._time_one_call(c)) for c in calls]
            samples: list[list[float]] = [[], []]
            for _ in range(repeats):
                for i, (call, n) in enumerate(zip(calls, loops, strict=True)):
                    call()
                    start = time.perf_counter()
                    for _ in range(n):
                        call()
                    samples[i].append((time.perf_counter() - start) / n)
            ratios.append(statistics.median(samples[1]) / statistics.median(samples[0]))
        out.append((f"{n_rows} x {n_classes}", ratios[0], ratios[1]))
    return out


# Run in fresh interpreters: how long `import fastxent` takes after `import numba`, and
# the first call of a process whose kernels are already in the on-disk cache.
_IMPORT_SCRIPT = """
import time
start = time.perf_counter()
import numba
middle = time.perf_counter()
import fastxent
print(middle - start, time.perf_counter() - middle)
"""
_FIRST_CALL_SCRIPT = """
import time
import numpy as np
import fastxent
logits = np.random.default_rng(0).standard_normal((64, 1000), dtype=np.float32)
labels = np.random.default_rng(1).integers(0, 1000, 64)
start = time.perf_counter()
fastxent.cross_entropy(logits, labels)
print(time.perf_counter() - start)
"""


def start_up(repeats: int) -> tuple[float, float, float]:
    """Medians over fresh processes: (``import numba`` s, then ``import fastxent`` s,
    first ``cross_entropy`` call s with a warm on-disk cache)."""

    # With Python's bytecode cache, as after an install (PYTHONDONTWRITEBYTECODE would
    # make every start compile fastxent's sources again: ~40 ms more).
    environment = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}

    def run(script: str) -> list[float]:
        result = subprocess.run(
            [sys.executable, "-c", script],
            capture_output=True,
            text=True,
            check=True,
            env=environment,
        )
        return [float(value) for value in result.stdout.split()]

    run(_FIRST_CALL_SCRIPT)  # writes the bytecode, and compiles the kernels if not cached
    imports = [run(_IMPORT_SCRIPT) for _ in range(repeats)]
    first_calls = [run(_FIRST_CALL_SCRIPT)[0] for _ in range(repeats)]
    return (
        statistics.median(numba_s for numba_s, _ in imports),
        statistics.median(fastxent_s for _, fastxent_s in imports),
        statistics.median(first_calls),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    repeats = 5 if args.quick else 9
    OUT.mkdir(exist_ok=True)
    _threading.prepare()
    lines = [
        "# Measured results",
        "",
        f"Generated by `python benchmarks/report.py` on {datetime.date.today()}.",
        "",
        f"- CPU: {_cpu_name()}, {numba.config.NUMBA_NUM_THREADS} threads, layer "
        f"{_threading.describe()['threading layer']}",
        f"- fastxent {fastxent.__version__}, numba {numba.__version__}, numpy {np.__version__}, "
        f"Python {platform.python_version()}",
    ]
    for peer in ("torch", "jax"):
        if bench.available_peers()[peer]:
            module = __import__(peer)
            lines.append(f"- {peer} {module.__version__}")
    lines.append("")
    for dtype in ("float32", "float64"):
        shapes = bench.DEFAULT_SHAPES if dtype == "float32" else ((4096, 32000),)
        results = bench.run(
            shapes, dtype, ["fastxent", "torch", "jax"], quick=args.quick, progress=print
        )
        lines += [f"## Peer comparison, {dtype}", "", "```", bench.format_table(results), "```", ""]
        if dtype == "float32":
            bench.plot(results, str(OUT / "speedup.png"))
    lines += [
        "## Scaling with C at N x C = 2^25 (float32)",
        "",
        "| C | forward ms | forward+grad ms |",
        "|---|---|---|",
    ]
    classes = scaling_with_classes(1 << 25, repeats)
    lines += [f"| {c} | {f * 1e3:.1f} | {b * 1e3:.1f} |" for c, f, b in classes]
    lines += [
        "",
        "## Scaling with threads, 4096 x 32000 float32",
        "",
        "Thread counts alternate within each repetition; speed-up = 1-thread forward median",
        "/ this forward median.",
        "",
        "| threads | forward ms | speed-up | np.sum ms |",
        "|---|---|---|---|",
    ]
    threads = scaling_with_threads(repeats)
    single = threads[0][1]
    lines += [f"| {t} | {f * 1e3:.1f} | {single / f:.2f}x | {s * 1e3:.1f} |" for t, f, s in threads]
    lines += [
        "",
        "## Roofline: forward throughput against np.sum on the same array",
        "",
        "| shape | fastxent forward GB/s | np.sum GB/s | ratio |",
        "|---|---|---|---|",
    ]
    lines += [f"| {s} | {a:.1f} | {b:.1f} | {a / b:.2f} |" for s, a, b in roofline(repeats)]
    lines += [
        "",
        "## Options against the plain call (float32)",
        "",
        "Time with `weight`, `ignore_index` (10 % of the labels) and `label_smoothing=0.1`,",
        "divided by the plain call's time (medians, calls alternated).",
        "",
        "| shape | forward | forward+grad |",
        "|---|---|---|",
    ]
    lines += [f"| {s} | {f:.2f}x | {g:.2f}x |" for s, f, g in options_overhead(repeats)]
    numba_s, fastxent_s, first_call_s = start_up(repeats)
    lines += [
        "",
        "## Start-up (fresh processes with Python's bytecode cached, medians)",
        "",
        "| `import numba` | then `import fastxent` | first call, 64 x 1000, warm cache |",
        "|---|---|---|",
        f"| {numba_s * 1e3:.0f} ms | {fastxent_s * 1e3:.0f} ms | {first_call_s * 1e3:.0f} ms |",
    ]
    (OUT / "results.md").write_text("\n".join(lines) + "\n")
    _plot_scaling(classes, threads)


def _plot_scaling(classes, threads) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    left.plot([c for c, _, _ in classes], [f * 1e3 for _, f, _ in classes], "o-", label="forward")
    left.plot(
        [c for c, _, _ in classes], [b * 1e3 for _, _, b in classes], "s-", label="forward+grad"
    )
    left.set_xscale("log")
    left.set_xlabel("classes C (N x C = 2^25)")
    left.set_ylabel("ms")
    left.legend()
    right.plot([t for t, _, _ in threads], [f * 1e3 for _, f, _ in threads], "o-", label="forward")
    right.set_xlabel("threads (4096 x 32000)")
    right.set_ylabel("ms")
    right.legend()
    figure.tight_layout()
    figure.savefig(OUT / "scaling.png", dpi=110)


if __name__ == "__main__":
    main()
