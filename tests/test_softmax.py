"""softmax, log_softmax and logsumexp against the NumPy reference and hand-worked values."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
from conftest import (
    ALL_TOLERANCES,
    NATIVE_TOLERANCES,
    SHAPES_2D,
    assert_result,
    make_logits,
    parallel_rows,
    result_dtype,
    rows_from_memory,
    rows_in_tiles,
)

import fastxent
from fastxent import reference
from fastxent._tuning import LOG_SOFTMAX_TILE_CLASSES, SHORT_ROW, SOFTMAX_TILE_CLASSES

FUNCTIONS = [
    pytest.param(fastxent.softmax, reference.softmax, id="softmax"),
    pytest.param(fastxent.log_softmax, reference.log_softmax, id="log_softmax"),
    pytest.param(fastxent.logsumexp, reference.logsumexp, id="logsumexp"),
]


def _expected_shape(function, shape: tuple[int, ...], axis: int) -> tuple[int, ...]:
    if function is fastxent.logsumexp:
        axis %= len(shape)
        return shape[:axis] + shape[axis + 1 :]
    return shape


def check(function, ref, x, axis, dtype, rtol, atol):
    """Call ``function`` and its reference on ``x``; compare values, dtype and shape."""
    before = x.copy()
    actual = function(x, axis=axis)
    expected = ref(x, axis=axis)
    assert_result(
        actual, expected, result_dtype(dtype), rtol, atol, _expected_shape(function, x.shape, axis)
    )
    np.testing.assert_array_equal(x, before)  # the input is never modified
    assert x.dtype == before.dtype
    return actual


@pytest.mark.parametrize(("function", "ref"), FUNCTIONS)
@pytest.mark.parametrize(("dtype", "rtol", "atol"), ALL_TOLERANCES)
@pytest.mark.parametrize("shape", SHAPES_2D)
def test_matches_reference_2d(function, ref, dtype, rtol, atol, shape, rng):
    x = make_logits(rng, shape, dtype)
    check(function, ref, x, -1, dtype, rtol, atol)


def _tiled(n_rows: int, n_classes: int, suffix: str = "") -> Any:
    return pytest.param((n_rows, n_classes), id=f"{n_rows}x{n_classes}{suffix}")


@pytest.mark.parametrize(("function", "ref"), FUNCTIONS)
@pytest.mark.parametrize(("dtype", "rtol", "atol"), NATIVE_TOLERANCES)
@pytest.mark.parametrize(
    "shape",
    [
        _tiled(rows_in_tiles(10), 10),
        _tiled(parallel_rows(10), 10, "-parallel"),
        _tiled(rows_in_tiles(SHORT_ROW), SHORT_ROW),
        _tiled(rows_in_tiles(SHORT_ROW + 1), SHORT_ROW + 1),
        _tiled(rows_in_tiles(100), 100),
        _tiled(rows_in_tiles(LOG_SOFTMAX_TILE_CLASSES - 1), LOG_SOFTMAX_TILE_CLASSES - 1),
        _tiled(rows_in_tiles(SOFTMAX_TILE_CLASSES - 1), SOFTMAX_TILE_CLASSES - 1),
    ],
)
def test_short_rows_by_tiles(function, ref, dtype, rtol, atol, shape, rng):
    """Rows short enough to go by tiles (softmax: fewer than ``SOFTMAX_TILE_CLASSES``
    classes; log_softmax and logsumexp: fewer than ``LOG_SOFTMAX_TILE_CLASSES``; summed down
    the columns up to ``SHORT_ROW``), over several tiles and a partial last one, with
    special rows in the last tile: all ``-inf``, one ``nan``, one ``+inf``, and ``-inf``
    entries scattered elsewhere."""
    x = make_logits(rng, shape, dtype)
    n_rows, n_classes = shape
    x[rng.random(shape) < 0.05] = -np.inf
    x[n_rows - 1] = -np.inf
    x[n_rows - 2, n_classes // 2] = np.nan
    x[n_rows - 3, 0] = np.inf
    check(function, ref, x, -1, dtype, rtol, atol)


@pytest.mark.parametrize(("function", "ref"), FUNCTIONS)
@pytest.mark.parametrize(("dtype", "rtol", "atol"), NATIVE_TOLERANCES)
@pytest.mark.parametrize(
    "shape",
    [(rows_from_memory(1000), 1000), (100, 2500), (17, 3000)],
    ids=["1000-classes-from-memory", "2500-classes", "chains-of-one-row"],
)
def test_rows_from_memory_by_chains(function, ref, dtype, rtol, atol, shape, streaming, rng):
    """Rows from memory go in chains, each row's exp-sum taking the next row's max: maxima
    far above the rest (a wrong shift overflows ``exp``) mid-row and in the remainder of
    the vector loop, ``nan`` there and mid-row, and a chain's last row."""
    n_rows, n_classes = shape
    x = make_logits(rng, shape, dtype)
    x[1, 5] = 100.0
    x[2, n_classes - 1] = 100.0
    x[3, n_classes - 1] = np.nan
    x[4, n_classes // 3] = np.nan
    x[n_rows - 1, 0] = 100.0
    actual = check(function, ref, x, -1, dtype, rtol, atol)
    assert np.all(np.isnan(actual[3])) and np.all(np.isnan(actual[4]))


@pytest.mark.parametrize(("function", "ref"), FUNCTIONS)
@pytest.mark.parametrize(("dtype", "rtol", "atol"), ALL_TOLERANCES)
@pytest.mark.parametrize("n_classes", [1, 2, 13, 1009])
def test_one_dimensional_input(function, ref, dtype, rtol, atol, n_classes, rng):
    x = make_logits(rng, (n_classes,), dtype)
    actual = check(function, ref, x, -1, dtype, rtol, atol)
    if function is fastxent.logsumexp:
        assert np.shape(actual) == ()


@pytest.mark.parametrize(("function", "ref"), FUNCTIONS)
@pytest.mark.parametrize(("dtype", "rtol", "atol"), ALL_TOLERANCES)
@pytest.mark.parametrize("axis", [0, 1, 2, -1, -2, -3])
def test_three_dimensional_any_axis(function, ref, dtype, rtol, atol, axis, rng):
    x = make_logits(rng, (3, 5, 7), dtype)
    check(function, ref, x, axis, dtype, rtol, atol)


@pytest.mark.parametrize(("function", "ref"), FUNCTIONS)
@pytest.mark.parametrize(("dtype", "rtol", "atol"), NATIVE_TOLERANCES)
@pytest.mark.parametrize("axis", [0, 1, -1])
def test_three_dimensional_parallel_size(function, ref, dtype, rtol, atol, axis, rng):
    shape = (parallel_rows(43 * 59), 43, 59)  # the multi-threaded kernels, whatever the axis
    x = make_logits(rng, shape, dtype)
    check(function, ref, x, axis, dtype, rtol, atol)


def _layouts(base: np.ndarray) -> dict[str, tuple[np.ndarray, int]]:
    """Non-contiguous and unusual layouts of logits, each with the class axis to use."""
    fortran = np.asfortranarray(base)
    read_only = base.copy()
    read_only.flags.writeable = False
    return {
        "sliced-columns": (base[:, ::2], -1),
        "sliced-rows": (base[::3], -1),
        "reversed": (base[::-1, ::-1], -1),
        "transposed-axis0": (base.T, 0),
        "transposed-axis-1": (base.T, -1),
        "fortran": (fortran, -1),
        "fortran-axis0": (fortran, 0),
        "read-only": (read_only, -1),
    }


LAYOUTS = list(_layouts(np.zeros((2, 2))))


@pytest.mark.parametrize(("function", "ref"), FUNCTIONS)
@pytest.mark.parametrize(("dtype", "rtol", "atol"), ALL_TOLERANCES)
@pytest.mark.parametrize("layout", LAYOUTS)
def test_non_contiguous_layouts(function, ref, dtype, rtol, atol, layout, rng):
    base = make_logits(rng, (12, 22), dtype)
    x, axis = _layouts(base)[layout]
    check(function, ref, x, axis, dtype, rtol, atol)
    # The same numbers in a fresh C-contiguous copy give the same answer.
    contiguous = function(np.ascontiguousarray(x), axis=axis)
    np.testing.assert_array_equal(function(x, axis=axis), contiguous)


@pytest.mark.parametrize(("function", "ref"), FUNCTIONS)
@pytest.mark.parametrize(("dtype", "rtol", "atol"), NATIVE_TOLERANCES)
def test_non_contiguous_parallel_size(function, ref, dtype, rtol, atol, rng):
    base = make_logits(rng, (parallel_rows(500), 1000), dtype)  # multi-threaded when sliced
    check(function, ref, base[:, ::2], -1, dtype, rtol, atol)
    check(function, ref, base.T, 0, dtype, rtol, atol)


@pytest.mark.parametrize(("function", "ref"), FUNCTIONS)
@pytest.mark.parametrize(("dtype", "rtol", "atol"), ALL_TOLERANCES)
@pytest.mark.parametrize("offset", [1e4, -1e4])
def test_large_magnitudes_are_stable(function, ref, dtype, rtol, atol, offset, rng):
    x = (make_logits(rng, (6, 11), np.float64) + offset).astype(dtype)
    with np.errstate(over="ignore"):  # the naive formula overflows (or underflows to 0)
        naive = np.exp(x.astype(np.float64))
    assert not np.any(np.isfinite(naive) & (naive > 0))
    result = check(function, ref, x, -1, dtype, rtol, atol)
    assert np.all(np.isfinite(result))


@pytest.mark.parametrize(("dtype", "rtol", "atol"), ALL_TOLERANCES)
@pytest.mark.parametrize("offset", [1e4, -1e4])
def test_softmax_unchanged_by_large_offset(dtype, rtol, atol, offset, rng):
    small = make_logits(rng, (6, 11), np.float64)
    x = (small + offset).astype(dtype)
    shifted = x.astype(np.float64) - offset  # exact: the same numbers without the offset
    assert_result(fastxent.softmax(x), reference.softmax(shifted), result_dtype(dtype), rtol, atol)
    assert_result(
        fastxent.logsumexp(x), reference.logsumexp(shifted) + offset, result_dtype(dtype), rtol, 0
    )


@pytest.mark.parametrize(("dtype", "rtol", "atol"), NATIVE_TOLERANCES)
@pytest.mark.parametrize("offset", [0.0, 32.0, 100.0])
def test_log_softmax_accurate_at_moderate_magnitudes(dtype, rtol, atol, offset):
    # log_softmax(offset + [3, 0, 0]) = [0, -3, -3] - ln(1 + 2 e^-3) for every offset.
    x = np.array([offset + 3.0, offset, offset], dtype=dtype)
    expected = np.array([0.0, -3.0, -3.0]) - math.log1p(2.0 * math.exp(-3.0))
    assert_result(fastxent.log_softmax(x), expected, dtype, rtol, atol)
    assert_result(reference.log_softmax(x), expected, dtype, rtol, atol)  # the spec agrees


@pytest.mark.parametrize(("dtype", "rtol", "atol"), NATIVE_TOLERANCES)
def test_hand_worked_values(dtype, rtol, atol):
    # softmax(0, ln 2, ln 3) = (1, 2, 3) / 6
    x = np.array([0.0, math.log(2.0), math.log(3.0)], dtype=dtype)
    assert_result(fastxent.softmax(x), [1 / 6, 2 / 6, 3 / 6], dtype, rtol, atol)
    assert_result(
        fastxent.log_softmax(x), np.log([1 / 6, 2 / 6, 3 / 6]), dtype, rtol, atol, shape=(3,)
    )
    assert_result(fastxent.logsumexp(x), math.log(6.0), dtype, rtol, atol, shape=())
    # logsumexp(1000, 1000) = 1000 + ln 2 without overflow
    big = np.array([1000.0, 1000.0], dtype=dtype)
    assert_result(fastxent.logsumexp(big), 1000.0 + math.log(2.0), dtype, rtol, atol)
    # log_softmax stays exact where log(softmax) underflows to log(0) = -inf
    far = np.array([0.0, -1000.0], dtype=dtype)
    assert_result(fastxent.log_softmax(far), [0.0, -1000.0], dtype, rtol, atol)
    # one class: probability 1, log-probability 0, logsumexp = the value itself
    one = np.array([[-3.5], [7.25]], dtype=dtype)
    np.testing.assert_array_equal(fastxent.softmax(one), [[1.0], [1.0]])
    np.testing.assert_array_equal(fastxent.log_softmax(one), [[0.0], [0.0]])
    np.testing.assert_array_equal(fastxent.logsumexp(one), [-3.5, 7.25])


@pytest.mark.parametrize(("function", "ref"), FUNCTIONS)
@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
def test_result_dtype_and_type(function, ref, dtype):
    x = np.arange(12, dtype=dtype).reshape(3, 4)
    result = function(x)
    assert isinstance(result, np.ndarray)
    assert result.dtype == result_dtype(dtype)
    assert result.shape == ((3,) if function is fastxent.logsumexp else (3, 4))


@pytest.mark.parametrize(("function", "ref"), FUNCTIONS)
def test_accepts_lists(function, ref):
    assert_result(
        function([[1.0, 2.0, 3.0]]), ref(np.array([[1.0, 2.0, 3.0]])), np.float64, 1e-12, 0
    )


@pytest.mark.parametrize(("function", "ref"), FUNCTIONS)
@pytest.mark.parametrize(("dtype", "rtol", "atol"), NATIVE_TOLERANCES)
def test_empty_batch(function, ref, dtype, rtol, atol):
    x = np.empty((0, 5), dtype=dtype)
    result = function(x)
    assert result.dtype == dtype
    assert result.shape == ((0,) if function is fastxent.logsumexp else (0, 5))
