"""Common calls that run serially skip Numba's dispatch (``RowKernel.run_typed``)."""

from __future__ import annotations

import numba
import numpy as np
import pytest
from conftest import make_labels, make_logits, rows_from_memory

import fastxent
from fastxent._kernels import xent_labels
from fastxent._numba_compat import compiled_entry_point as _entry_point
from fastxent._plan import plan_rows


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("smoothing", [0.0, 0.2], ids=["plain", "smoothing"])
@pytest.mark.parametrize(
    "shape", [(1, 10), (3, 5), (6, 10), (20, 1000)], ids=["1x10", "3x5", "6x10", "20x1000"]
)
def test_typed_call_matches_the_dispatched_one(dtype, smoothing, shape, rng):
    """The machine code called directly gives bit for bit what Numba's dispatch of the
    same compilation gives, for every key the common forward uses (dtype, rows summed
    whole or by tiles, with and without label smoothing; all below the suite's parallel
    threshold), and the kernel's entry point was found (not the dispatcher fallback,
    which would lose the time this saves)."""
    n_rows, n_classes = shape
    logits = make_logits(rng, shape, dtype)
    target = make_labels(rng, (n_rows,), n_classes)
    weight = rng.uniform(0.5, 2.0, n_classes)
    weight[0] = 0.0
    kwargs = {"weight": weight, "ignore_index": 1, "label_smoothing": smoothing}
    first = fastxent.cross_entropy(logits, target, reduction="sum", **kwargs)  # fills the entry
    typed = fastxent.cross_entropy(logits, target, reduction="sum", **kwargs)
    row_weight = np.empty(n_classes, dtype) if smoothing else None
    losses = np.empty(n_rows)
    args = (logits, None, False, target, weight, row_weight, 1, smoothing, losses)
    dispatched = xent_labels.xent_labels_forward.serial(*args)
    assert first == typed == dtype(dispatched[2])
    entry = _entry_point(xent_labels.xent_labels_forward.serial, args)
    assert entry is not xent_labels.xent_labels_forward.serial
    assert entry in xent_labels.xent_labels_forward._entry_points.values()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(
    "shape", [(64, 1000), (rows_from_memory(1000), 1000)], ids=["in-cache", "chained"]
)
def test_typed_call_of_large_inputs_that_run_serially(dtype, shape, rng):
    """Inputs above the smallest parallel size that still run serially (here: one thread)
    skip the dispatch too, also where rows are chained (another key), and give what the
    dispatched serial compilation gives."""
    n_rows, n_classes = shape
    logits = make_logits(rng, shape, dtype)
    target = make_labels(rng, (n_rows,), n_classes)
    kernel = xent_labels.xent_labels_forward
    before = numba.get_num_threads()
    numba.set_num_threads(1)
    try:
        first = fastxent.cross_entropy(logits, target, reduction="sum")
        typed = fastxent.cross_entropy(logits, target, reduction="sum")
    finally:
        numba.set_num_threads(before)
    chained, streaming = plan_rows(logits)
    assert (chained is None) == (shape[0] == 64)
    weight, losses = np.ones(n_classes), np.empty(n_rows)
    args = (logits, chained, streaming, target, weight, None, -100, 0.0, losses)
    assert first == typed == dtype(kernel.serial(*args)[2])
    assert _entry_point(kernel.serial, args) in kernel._entry_points.values()
