"""A batch of more than 2**31 logits: every index into it must be 64-bit.

``16385 x 131072`` float32 logits are ``2**31 + 2**17`` elements (8.6 GB): the last row
starts exactly at element ``2**31``, where a 32-bit element offset would wrap. The logits
are built cheaply (``np.zeros``, then a few entries) so that every loss has a closed form:

- an all-zero row has loss ``log(C)`` whatever its label;
- a row with ``z[t] = a`` at its label ``t`` and ``k`` entries at ``-inf`` (masked) and the
  others 0 except ``z[j] = b``: loss ``log((C - 2 - k) + e^a + e^b) - a``; and so on.

Distinct values sit in the first row, the row before the 2**31 boundary and the last row
(including its last element, the highest address), so reading or writing the wrong row
changes the result.
"""

from __future__ import annotations

import math
import resource

import numpy as np
import pytest

import fastxent

pytestmark = pytest.mark.slow

N_ROWS, N_CLASSES = 16385, 131072
N_ELEMENTS = N_ROWS * N_CLASSES
NBYTES = N_ELEMENTS * np.dtype(np.float32).itemsize
MEMORY_FACTOR = 2.2  # the logits, plus headroom for anything else the process holds

assert N_ELEMENTS > 2**31 and (N_ROWS - 1) * N_CLASSES == 2**31

IGNORED_ROW = N_ROWS - 4
MID_COLUMN = 77777


def _available_memory() -> int | None:
    """``MemAvailable`` from ``/proc/meminfo`` in bytes (None where there is no such file)."""
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


@pytest.fixture
def enough_memory() -> None:
    available = _available_memory()
    needed = MEMORY_FACTOR * NBYTES
    if available is None or available < needed:
        shown = "unknown" if available is None else f"{available / 2**30:.1f} GiB"
        pytest.skip(
            f"needs {needed / 2**30:.1f} GiB of available memory for {NBYTES / 2**30:.1f} GiB "
            f"of logits (MemAvailable: {shown})"
        )


def _problem() -> tuple[np.ndarray, np.ndarray, dict[int, float]]:
    """Logits, labels and the exact loss of each row that is not all-zero with a valid label.

    Rows not in the returned dict have loss ``log(C)`` (all zero), except ``IGNORED_ROW``.
    """
    c = N_CLASSES
    logits = np.zeros((N_ROWS, c), dtype=np.float32)
    labels = np.zeros(N_ROWS, dtype=np.int64)
    losses: dict[int, float] = {}
    # First row: target logit 5 at column 3.
    logits[0, 3] = 5.0
    labels[0] = 3
    losses[0] = math.log(c - 1 + math.exp(5.0)) - 5.0
    # The row just before element 2**31: a low target logit.
    logits[-2, 0] = -3.0
    labels[-2] = 0
    losses[N_ROWS - 2] = math.log(c - 1 + math.exp(-3.0)) + 3.0
    # The last row (from element 2**31 on): target at the very last element, a masked class
    # and one more distinct value.
    logits[-1, -1] = 5.0
    logits[-1, 0] = -np.inf
    logits[-1, MID_COLUMN] = 2.0
    labels[-1] = c - 1
    losses[N_ROWS - 1] = math.log(c - 3 + math.exp(5.0) + math.exp(2.0)) - 5.0
    # An all-zero row with another label, and an ignored row holding a nan (never read).
    labels[-3] = 12345
    labels[IGNORED_ROW] = -100
    logits[IGNORED_ROW, 5] = np.nan
    return logits, labels, losses


def _expected_losses(losses: dict[int, float]) -> np.ndarray:
    expected = np.full(N_ROWS, math.log(N_CLASSES))
    for row, loss in losses.items():
        expected[row] = loss
    expected[IGNORED_ROW] = 0.0
    return expected


def test_loss_beyond_2_31_elements(enough_memory):
    logits, labels, losses = _problem()
    try:
        expected = _expected_losses(losses)
        counted = N_ROWS - 1  # one ignored row

        per_row = fastxent.cross_entropy(logits, labels, reduction="none")
        assert per_row.dtype == np.float32 and per_row.shape == (N_ROWS,)
        np.testing.assert_allclose(per_row[-4:], expected[-4:], rtol=1e-5, atol=0)
        np.testing.assert_allclose(per_row[:2], expected[:2], rtol=1e-5, atol=0)
        np.testing.assert_allclose(per_row, expected, rtol=1e-5, atol=0)

        mean = fastxent.cross_entropy(logits, labels)
        assert type(mean) is np.float32
        np.testing.assert_allclose(float(mean), expected.sum() / counted, rtol=1e-5)

        total = fastxent.cross_entropy(logits, labels, reduction="sum")
        np.testing.assert_allclose(float(total), expected.sum(), rtol=1e-5)

        lse = fastxent.logsumexp(logits)
        assert lse.shape == (N_ROWS,)
        c = N_CLASSES
        np.testing.assert_allclose(lse[0], math.log(c - 1 + math.exp(5.0)), rtol=1e-6)
        np.testing.assert_allclose(lse[-3], math.log(c), rtol=1e-6)
        np.testing.assert_allclose(lse[-2], math.log(c - 1 + math.exp(-3.0)), rtol=1e-6)
        np.testing.assert_allclose(
            lse[-1], math.log(c - 3 + math.exp(5.0) + math.exp(2.0)), rtol=1e-6
        )
        assert np.isnan(lse[IGNORED_ROW])
    finally:
        del logits


def test_gradient_in_place_beyond_2_31_elements(enough_memory):
    """``out=logits``: the gradient overwrites the logits, with no second N x C array."""
    logits, labels, losses = _problem()
    grad = None
    try:
        expected = _expected_losses(losses)
        counted = N_ROWS - 1
        peak_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024

        loss, grad = fastxent.cross_entropy_with_grad(logits, labels, out=logits)

        peak_after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        assert grad is logits
        np.testing.assert_allclose(float(loss), expected.sum() / counted, rtol=1e-5)

        c = N_CLASSES
        scale = 1.0 / counted  # "mean": the gradient of the mean loss
        # Last row: p = e^z / S, gradient (p - onehot) / counted; the masked class gets 0.
        s_last = (c - 3) + math.exp(5.0) + math.exp(2.0)
        last = grad[-1]
        assert last[0] == 0.0, "a masked class must get a zero gradient"
        np.testing.assert_allclose(last[-1], (math.exp(5.0) / s_last - 1.0) * scale, rtol=1e-5)
        np.testing.assert_allclose(last[MID_COLUMN], math.exp(2.0) / s_last * scale, rtol=1e-5)
        others = np.delete(last, [0, MID_COLUMN, c - 1])
        np.testing.assert_allclose(others, 1.0 / s_last * scale, rtol=1e-5)
        # The row before the boundary, an all-zero row, the first row and the ignored row.
        s_before = (c - 1) + math.exp(-3.0)
        np.testing.assert_allclose(grad[-2, 0], (math.exp(-3.0) / s_before - 1) * scale, rtol=1e-5)
        np.testing.assert_allclose(grad[-2, 1:], 1.0 / s_before * scale, rtol=1e-5)
        zero_row = np.full(c, 1.0 / c * scale)
        zero_row[12345] -= scale
        np.testing.assert_allclose(grad[-3], zero_row, rtol=1e-5, atol=1e-12)
        s_first = (c - 1) + math.exp(5.0)
        np.testing.assert_allclose(grad[0, 3], (math.exp(5.0) / s_first - 1) * scale, rtol=1e-5)
        assert np.all(grad[IGNORED_ROW] == 0), "an ignored row must get a zero gradient"

        # Writing the gradient touches every page of the logits once; a hidden N x C
        # temporary would add another NBYTES to the peak.
        assert peak_after - peak_before < NBYTES * 1.5, (
            f"peak RSS grew by {(peak_after - peak_before) / 2**30:.1f} GiB for "
            f"{NBYTES / 2**30:.1f} GiB of logits"
        )
    finally:
        del logits, grad
