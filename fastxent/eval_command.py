"""``fastxent eval LOGITS LABELS``: the metrics of saved logits, read once, in blocks.

The logits are read a block of leading-axis slices at a time (rows, or whole sequences
with ``--shift``); each block is evaluated by :func:`fastxent.evaluate`'s sweep and the
blocks' :class:`~fastxent.Evaluation` statistics are added up, which gives exactly the
whole file's. The labels are checked whole first (in blocks too), so that a bad label
stops the command before any work.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from fastxent._api.evaluation import (
    Evaluation,
    bin_count,
    labels_out_of_range,
    row_statistics,
    summarise,
    top_k_values,
)
from fastxent._array_files import ArrayFile, ArrayFileError, open_array
from fastxent._layout import compute_dtype
from fastxent.eval_cluster import ClusterError, evaluate_on_cluster

#: Default bound on the logits read per block (bytes).
BLOCK_BYTES = 64 * 2**20


class EvalError(ValueError):
    """A problem with the command's inputs, reported as one line."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``fastxent eval``."""
    parser.add_argument("logits", help="logits: .npy (memory-mapped), .npz or .safetensors")
    parser.add_argument("labels", help="integer class indices: .npy, .npz or .safetensors")
    parser.add_argument("--key", help="the logits' array in an .npz or .safetensors file")
    parser.add_argument("--labels-key", help="the labels' array in an .npz or .safetensors file")
    parser.add_argument("--axis", type=int, default=-1, help="class axis of the logits (-1)")
    parser.add_argument("--ignore-index", type=int, default=-100, help="label to skip (-100)")
    parser.add_argument(
        "--top-k", default="1,5", help="comma-separated k of the top-k accuracies (1,5)"
    )
    parser.add_argument("--bins", type=int, default=15, help="calibration bins (15)")
    parser.add_argument(
        "--shift",
        action="store_true",
        help="causal LM: logits (B, T, V) at position t score the label at t + 1 of (B, T)",
    )
    parser.add_argument(
        "--rows-per-chunk",
        type=int,
        default=None,
        help=f"leading-axis slices per block (default: {BLOCK_BYTES // 2**20} MiB of logits)",
    )
    parser.add_argument("--per-row", metavar="OUT.npy", help="write each row's loss (.npy)")
    parser.add_argument("--json", metavar="PATH", help="write the results as JSON ('-': stdout)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    cluster = parser.add_mutually_exclusive_group()
    cluster.add_argument(
        "--workers",
        type=int,
        metavar="N",
        help="run on a local Dask cluster of N worker processes (needs fastxent[dask])",
    )
    cluster.add_argument(
        "--scheduler",
        metavar="ADDRESS",
        help="run on the Dask cluster whose scheduler is at ADDRESS (e.g. tcp://host:8786); "
        "its workers read the files at the same paths",
    )


@dataclass
class Layout:
    """How the logits' blocks meet the labels, per leading-axis slice."""

    class_axis: int  # in a block of logits
    rows_per_slice: int  # labels per leading-axis slice (after the shift)
    loss_shape: tuple[int, ...]  # shape of the per-row losses


def _check_inputs(logits: ArrayFile, labels: ArrayFile, args: argparse.Namespace) -> Layout:
    if logits.dtype.kind != "f" or logits.dtype.itemsize not in (2, 4, 8):
        raise EvalError(
            f"{logits.path} holds {logits.dtype}: logits must be float16, float32 or float64"
        )
    if labels.dtype.kind not in "iu":
        raise EvalError(
            f"{labels.path} holds {labels.dtype}: labels must be integers (class indices)"
        )
    shape, ndim = logits.shape, len(logits.shape)
    if ndim < 2:
        raise EvalError(f"{logits.path} has shape {shape}: logits need a row axis and a class axis")
    if not -ndim <= args.axis < ndim:
        raise EvalError(f"--axis {args.axis} is out of range for logits of shape {shape}")
    axis = args.axis % ndim
    if axis == 0:
        raise EvalError(
            f"--axis {args.axis}: the class axis must not be the first, which is read in blocks"
        )
    if args.shift:
        if ndim != 3 or axis != 2:
            raise EvalError(
                f"--shift needs logits (B, T, V) with classes last, got shape {shape} and "
                f"--axis {args.axis}"
            )
        if labels.shape != shape[:2]:
            raise EvalError(
                f"logits {logits.path} {shape} and labels {labels.path} {labels.shape} do not "
                f"match: --shift needs labels (B, T) = {shape[:2]}"
            )
        batch, steps = shape[:2]
        return Layout(2, max(steps - 1, 0), (batch, max(steps - 1, 0)))
    expected = shape[:axis] + shape[axis + 1 :]
    if labels.shape != expected:
        raise EvalError(
            f"logits {logits.path} {shape} and labels {labels.path} {labels.shape} do not "
            f"match: labels need the logits' shape without the class axis, {expected}"
        )
    return Layout(axis, int(np.prod(expected[1:], dtype=np.int64)), expected)


def _blocks(n: int, size: int) -> Iterator[tuple[int, int]]:
    for start in range(0, n, size):
        yield start, min(start + size, n)


def _check_labels(labels: ArrayFile, n_classes: int, ignore_index: int, size: int) -> None:
    """Every label a class index or ``ignore_index``; else how many are not, and the first."""
    n_bad, first = 0, None
    for start, stop in _blocks(labels.shape[0], size):
        block = labels.block(start, stop)
        count, position = labels_out_of_range(block, n_classes, ignore_index)
        if first is None and count:
            per_slice = int(np.prod(labels.shape[1:], dtype=np.int64))
            index = np.unravel_index(start * per_slice + position, labels.shape)
            first = (tuple(int(i) for i in index), int(block.reshape(-1)[position]))
        n_bad += count
        labels.release(start, stop)
    if first is not None:
        where, value = first
        raise EvalError(
            f"{labels.path}: {n_bad} labels outside [0, {n_classes}) (nor --ignore-index "
            f"{ignore_index}); the first is {value} at {list(where)}"
        )


def _progress(total_bytes: int, quiet: bool) -> Any:
    from tqdm import tqdm

    # disable=None: tqdm turns itself off when stderr is not a terminal.
    return tqdm(
        total=total_bytes, unit="B", unit_scale=True, unit_divisor=1000, desc="reading",
        file=sys.stderr, disable=True if quiet else None, leave=False,
    )  # fmt: skip


def evaluate_files(args: argparse.Namespace) -> dict[str, Any]:
    """Run the evaluation the arguments describe; the JSON-ready report."""
    top_k = top_k_values(_parse_top_k(args.top_k))
    bins = bin_count(args.bins)
    if args.rows_per_chunk is not None and args.rows_per_chunk < 1:
        raise EvalError(f"--rows-per-chunk must be at least 1, got {args.rows_per_chunk}")
    on_cluster = args.workers is not None or args.scheduler is not None
    if args.workers is not None and args.workers < 1:
        raise EvalError(f"--workers must be at least 1, got {args.workers}")
    if on_cluster and args.per_row:
        raise EvalError(
            "--per-row is written by this process: run without --workers or --scheduler"
        )
    logits = open_array(args.logits, args.key)
    labels = open_array(args.labels, args.labels_key)
    layout = _check_inputs(logits, labels, args)
    n_slices = logits.shape[0]
    slice_bytes = logits.nbytes // n_slices if n_slices else 1
    per_block = args.rows_per_chunk or max(1, BLOCK_BYTES // max(slice_bytes, 1))
    n_classes = logits.shape[layout.class_axis]
    _check_labels(labels, n_classes, args.ignore_index, per_block)
    per_row = None
    if args.per_row:
        dtype = np.float64 if logits.dtype == np.float64 else np.float32
        per_row = np.lib.format.open_memmap(args.per_row, "w+", dtype, layout.loss_shape)
    started = time.perf_counter()
    with _progress(logits.nbytes, args.quiet) as bar:
        if on_cluster:
            total, seconds = evaluate_on_cluster(
                args, layout.class_axis, per_block, top_k, bins, bar
            )
        else:
            total = _evaluate_blocks(
                logits, labels, layout, per_block, top_k, bins, per_row, args, bar
            )
    if per_row is not None:
        per_row.flush()
        del per_row
    if not on_cluster:
        seconds = time.perf_counter() - started
    return {
        **total.as_dict(),
        "inputs": {"logits": logits.describe(), "labels": labels.describe()},
        "options": {
            "axis": args.axis,
            "ignore_index": args.ignore_index,
            "top_k": list(top_k),
            "bins": bins,
            "shift": args.shift,
            "rows_per_chunk": per_block,
            "workers": args.workers,
            "scheduler": args.scheduler,
        },  # fmt: skip
        "seconds": seconds,
        "gb_per_s": logits.nbytes / seconds / 1e9 if seconds > 0 else math.nan,
    }


def _evaluate_blocks(
    logits: ArrayFile, labels: ArrayFile, layout: Layout, per_block: int,
    top_k: tuple[int, ...], bins: int, per_row: Any, args: argparse.Namespace, bar: Any,
) -> Evaluation:  # fmt: skip
    """The blocks' statistics added up, in this process."""
    n_slices, slice_bytes = logits.shape[0], logits.nbytes // max(logits.shape[0], 1)
    weight = np.ones(logits.shape[layout.class_axis])
    total = Evaluation(top_k, bins, 0, 0, 0, 0.0, 0.0, (0,) * len(top_k), 0.0, 0.0,
                       (0,) * bins, (0.0,) * bins, (0,) * bins)  # fmt: skip
    for start, stop in _blocks(n_slices, per_block):
        rows, targets = _block_rows(logits, labels, layout, start, stop, args.shift)
        statistics = row_statistics(rows, targets, args.ignore_index)
        total = total + summarise(statistics, targets, weight, top_k, bins)
        if per_row is not None:
            losses = np.where(targets == args.ignore_index, 0.0, statistics.losses)
            per_row[start:stop] = losses.reshape((stop - start, *layout.loss_shape[1:]))
        logits.release(start, stop)
        labels.release(start, stop)
        bar.set_postfix_str(f"{stop:,}/{n_slices:,} rows", refresh=False)
        bar.update(slice_bytes * (stop - start))
    return total


def _parse_top_k(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise EvalError(
            f"--top-k must be comma-separated integers, e.g. 1,5, got {text!r}"
        ) from None


def _block_rows(
    logits: ArrayFile, labels: ArrayFile, layout: Layout, start: int, stop: int, shift: bool
) -> tuple[NDArray[Any], NDArray[np.int64]]:
    """Rows ``(R, C)`` of the block (C-contiguous, float32/64) and their labels ``(R,)``."""
    block = logits.block(start, stop)
    targets = labels.block(start, stop)
    if shift:  # position t scores the label at t + 1, within each sequence
        block, targets = block[:, :-1], targets[:, 1:]
    block = np.moveaxis(block, layout.class_axis, -1)
    rows = np.ascontiguousarray(block.reshape(-1, block.shape[-1]), compute_dtype(block.dtype))
    return rows, np.ascontiguousarray(targets.reshape(-1), np.int64)


def format_table(report: dict[str, Any]) -> str:
    """The metrics as an aligned two-column table."""
    lines = [("count", f"{report['count']:,}"), ("ignored", f"{report['ignored']:,}"),
             ("nonfinite", f"{report['nonfinite']:,}")]  # fmt: skip
    for name in ("nll", "bits", "perplexity"):
        lines.append((name, f"{report[name]:.6g}"))
    for k, value in report["accuracy"].items():
        lines.append((f"accuracy@{k}", f"{value:.6g}"))
    for name in ("ece", "confidence", "entropy"):
        lines.append((name, f"{report[name]:.6g}"))
    width = max(len(name) for name, _ in lines)
    body = [f"{'metric':<{width}}  value"] + [f"{name:<{width}}  {value}" for name, value in lines]
    return "\n".join(body)


def _finite_or_null(value: Any) -> Any:
    """``nan`` and infinities as ``null``: JSON has no such numbers."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: _finite_or_null(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_finite_or_null(item) for item in value]
    return value


def run(args: argparse.Namespace) -> int:
    """The command: the table on stdout (or JSON with ``--json -``); errors as one line."""
    try:
        report = evaluate_files(args)
    except (ArrayFileError, EvalError, ClusterError, ValueError, TypeError, OSError) as error:
        print(f"fastxent eval: error: {error}", file=sys.stderr)
        return 1
    if args.json != "-":
        print(format_table(report))
        if report["nonfinite"]:
            print(
                f"note: {report['nonfinite']:,} rows had a loss that is not finite (nan or "
                "inf logits); they are counted apart and left out of every metric",
                file=sys.stderr,
            )
    if args.json:
        text = json.dumps(_finite_or_null(report), indent=1)
        if args.json == "-":
            print(text)
        else:
            with open(args.json, "w") as handle:
                handle.write(text + "\n")
    return 0
