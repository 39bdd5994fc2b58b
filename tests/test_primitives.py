"""The vector math primitives (``fastxent._simd``) and the row exp-sum, against float64.

``exp`` is checked in float32 ulps against ``math.exp`` of the same float32 argument (a
float64 result, ~1e-16 relative, far below the 1.02-ulp bound); the exp-sum against
``math.fsum`` of the very terms it adds, so that only the summation is under test.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from numba import njit

from fastxent._kernels.reductions import row_exp_sum, row_max
from fastxent._simd import (
    exp_clamped,
    exp_nonpositive,
    fmax_unchecked,
    log_positive,
    split_for_sum,
    tanh,
)
from fastxent._tuning import CHAIN_BLOCK, MAX_VECTOR, PREFETCH_BLOCK, SUM_VECTOR

FLOAT32_TINY = float(np.finfo(np.float32).tiny)


@njit
def _exp_both(x):
    plain = np.empty(x.size)
    clamped = np.empty(x.size)
    for i in range(x.size):
        plain[i] = exp_nonpositive(x[i])
        clamped[i] = exp_clamped(x[i])
    return plain, clamped


@njit
def _logs(x):
    out = np.empty_like(x)
    for i in range(x.size):
        out[i] = log_positive(x[i])
    return out


@njit
def _terms(row, shift):
    out = np.empty(row.size)
    for c in range(row.size):
        out[c] = np.float64(exp_clamped(row[c] - shift))
    return out


@njit(fastmath={"reassoc", "nsz"})
def _unchecked_max(values, start):
    # As the kernels use it: a reduction LLVM vectorises (reassoc), start included.
    largest = start
    for i in range(values.size):
        largest = fmax_unchecked(largest, values[i])
    return largest


@njit
def _tanhs(x):
    out = np.empty_like(x)
    for i in range(x.size):
        out[i] = tanh(x[i])
    return out


@njit
def _split(values):
    high = np.empty_like(values)
    low = np.empty_like(values)
    for i in range(values.size):
        high[i], low[i] = split_for_sum(values[i])
    return high, low


def float32_ulps(actual: np.ndarray, exact: np.ndarray) -> np.ndarray:
    """``|actual - exact|`` in float32 ulps of ``exact`` (subnormal ulp below the normals)."""
    exponent = np.frexp(np.maximum(exact, FLOAT32_TINY))[1]
    ulp = np.ldexp(1.0, exponent - 24)
    return np.abs(actual - exact) / ulp


def test_exp_float32_within_1_02_ulp():
    rng = np.random.default_rng(0)
    x = np.concatenate(
        [-rng.uniform(0.0, 104.0, 1_000_000), -rng.uniform(0.0, 1.0, 100_000)]
    ).astype(np.float32)
    plain, clamped = _exp_both(x)
    exact = np.exp(x.astype(np.float64))
    assert float32_ulps(plain, exact).max() <= 1.02
    # exp_clamped is exp(max(x, -87)): the same accuracy, a floor at exp(-87).
    exact_clamped = np.exp(np.maximum(x, np.float32(-87.0)).astype(np.float64))
    assert float32_ulps(clamped, exact_clamped).max() <= 1.02


def test_exp_float64_close_to_math_exp():
    x = -np.random.default_rng(1).uniform(0.0, 745.0, 200_000)
    plain, clamped = _exp_both(x)
    exact = np.exp(x)
    normal = exact > np.finfo(np.float64).tiny
    assert np.all(np.abs(plain - exact)[normal] <= 2.3e-16 * exact[normal])
    floor = np.exp(np.maximum(x, -708.0))
    assert np.all(np.abs(clamped - floor) <= 2.3e-16 * floor)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_exp_special_values(dtype):
    x = np.array([0.0, -0.0, -np.inf, np.nan], dtype)
    plain, clamped = _exp_both(x)
    assert plain[0] == plain[1] == 1.0 and plain[2] == 0.0 and np.isnan(plain[3])
    lowest = -87.0 if dtype == np.float32 else -708.0
    assert clamped[0] == 1.0 and clamped[2] == pytest.approx(math.exp(lowest), rel=1e-6)
    assert np.isnan(clamped[3])


def test_split_for_sum_is_exact():
    t = np.random.default_rng(2).random(200_000).astype(np.float32)
    high, low = _split(t)
    assert np.all(high.astype(np.float64) + low.astype(np.float64) == t.astype(np.float64))
    assert np.all(np.abs(low) <= 2.0**-13)
    assert np.all((high.astype(np.float64) * 4096.0) % 1.0 == 0.0)  # multiples of 2**-12
    high64, low64 = _split(t.astype(np.float64))
    assert np.all(high64 == t) and np.all(low64 == 0.0)


def _chain_exp_sums(row, top):
    """The exp-sums of a row of a chain (in blocks), the row itself following: with and
    without the prefetching blocks of inputs from memory (``streaming``)."""
    return [row_exp_sum(row, top, None, row, streaming)[0] for streaming in (False, True)]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(
    "size", [1, 15, PREFETCH_BLOCK - 1, PREFETCH_BLOCK, PREFETCH_BLOCK + 1, 1000, 5000, 40000]
)
def test_row_exp_sum_has_float64_accuracy(dtype, size):
    # A float32 running sum would be ~1e-7 off here; with the split, the float32 lanes sum
    # like float64. Both ways: the row whole (row_exp_sum), and in a chain's blocks (of
    # PREFETCH_BLOCK elements when prefetching, else CHAIN_BLOCK).
    rng = np.random.default_rng(size)
    for scale in (0.1, 1.0, 5.0, 30.0):
        row = (scale * rng.standard_normal(size)).astype(dtype)
        top = row_max(row)
        exact = math.fsum(_terms(row, top))
        assert abs(row_exp_sum(row, top, None, None, False)[0] - exact) <= 1e-14 * exact
        for total in _chain_exp_sums(row, top):
            assert abs(total - exact) <= 1e-14 * exact


def test_row_exp_sum_of_a_confident_row():
    # S = 1 + (tiny terms): their float32 lanes must not be absorbed by the 1.
    rng = np.random.default_rng(3)
    row = (rng.standard_normal(30000) - 25.0).astype(np.float32)
    row[123] = 0.0
    rest = math.fsum(np.delete(_terms(row, np.float32(0.0)), 123))
    assert 1e-8 < rest < 1e-5
    for total in (
        row_exp_sum(row, np.float32(0.0), None, None, False)[0],
        *_chain_exp_sums(row, np.float32(0.0)),
    ):
        assert abs((total - 1.0) - rest) <= 1e-6 * rest


@pytest.mark.parametrize("streaming", [False, True])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(
    "size",
    [
        1, SUM_VECTOR - 1, SUM_VECTOR, SUM_VECTOR + 1, 1000, CHAIN_BLOCK, CHAIN_BLOCK + 1, 5000,
        40000,
    ],
)  # fmt: skip
def test_row_exp_sum(dtype, size, streaming):
    # The exp-sum as accurate as row_exp_sum's, the depth as row_depth's, and the max of the
    # following row, taken in the blocks' loop and in the remainder's: the max and a nan
    # anywhere must come out of each (with `streaming`, float32 rows go in the shorter
    # blocks that prefetch the following row).
    rng = np.random.default_rng(size)
    row = (5.0 * rng.standard_normal(size)).astype(dtype)
    weight = rng.uniform(0.0, 2.0, size).astype(dtype)
    following = rng.standard_normal(size).astype(dtype)
    top = row_max(row)
    exact = math.fsum(_terms(row, top))
    exact_gap = math.fsum(weight.astype(np.float64) * (np.float64(top) - row))
    for position in sorted({0, size // 2, max(0, size - 40), size - 1}):
        peaked = following.copy()
        peaked[position] = 50.0
        total, depth, largest = row_exp_sum(row, top, weight, peaked, streaming)
        assert abs(total - exact) <= 1e-14 * exact
        assert depth == pytest.approx(exact_gap, rel=1e-5 if dtype == np.float32 else 1e-12)
        assert largest == 50.0
        # A nan in the following row leaves its max unspecified: that row's own exp-sum
        # with it must be nan.
        spoiled = following.copy()
        spoiled[position] = np.nan
        shift = row_exp_sum(row, top, None, spoiled, streaming)[2]
        assert math.isnan(row_exp_sum(spoiled, shift, None, row, streaming)[0])
    lowest = np.full(size, -np.inf, dtype)
    total, depth, largest = row_exp_sum(row, top, None, lowest, streaming)
    assert abs(total - exact) <= 1e-14 * exact and depth == 0.0 and largest == -np.inf


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(
    "size",
    [
        1, 7, 16, MAX_VECTOR - 1, MAX_VECTOR, MAX_VECTOR + 1, 100, 2 * MAX_VECTOR - 1,
        2 * MAX_VECTOR, 2 * MAX_VECTOR + 1, 1000, 1024, 4099,
    ],
)  # fmt: skip
def test_row_max_matches_numpy_and_propagates_nan(dtype, size):
    # The vector body, its remainder and the tree reduction (and for MAX_VECTOR + 1 to
    # 2 * MAX_VECTOR elements the two overlapping windows): the maximum and a nan anywhere
    # must come out of each of them (np.max propagates nan, like the row's loss).
    rng = np.random.default_rng(size)
    row = rng.standard_normal(size).astype(dtype)
    vector = MAX_VECTOR
    edges = {
        min(vector - 1, size - 1), min(vector, size - 1),
        max(0, size - vector), max(0, size - vector - 1),
    }  # fmt: skip
    for position in sorted({0, size // 2, size - 1} | edges):
        peaked = row.copy()
        peaked[position] = 50.0
        assert row_max(peaked) == peaked.max() == 50.0
        spoiled = row.copy()
        spoiled[position] = np.nan
        assert math.isnan(row_max(spoiled))
    assert row_max(np.full(size, -np.inf, dtype)) == -np.inf


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("size", [0, 1, 15, 16, 17, 64, 100, 1000, 4099])
def test_fmax_unchecked_reduction_matches_numpy(dtype, size):
    # The vector body, its remainder and the tree reduction, for numbers (with a nan the
    # result is unspecified): the maximum wherever it sits, and +-inf.
    rng = np.random.default_rng(size)
    row = rng.standard_normal(size).astype(dtype)
    start = dtype(-np.inf)
    assert _unchecked_max(row, start) == (row.max() if size else start)
    for position in sorted({0, size // 2, max(0, size - 1)} if size else set()):
        peaked = row.copy()
        peaked[position] = 50.0
        assert _unchecked_max(peaked, start) == 50.0
        peaked[position] = np.inf
        assert _unchecked_max(peaked, start) == np.inf
    assert _unchecked_max(np.full(size, -np.inf, dtype), dtype(-5.0)) == -5.0
    assert fmax_unchecked(dtype(2.0), dtype(-3.0)) == 2.0  # the plain Python version


def test_log_positive_within_1_ulp_of_extended_precision():
    rng = np.random.default_rng(7)
    x = np.concatenate(
        [
            rng.uniform(1.0, 262144.0, 200_000),  # the kernels' exp-sums: [1, C]
            1.0 + rng.uniform(0.0, 1e-9, 50_000),  # log ~ x - 1: relative accuracy near 1
            1.0 - rng.uniform(0.0, 1e-9, 50_000),
            np.exp(rng.uniform(-708.0, 709.0, 200_000)),
            np.ldexp(1.0, np.arange(-1022, 1024)),
            [math.sqrt(0.5), math.sqrt(2.0), np.nextafter(math.sqrt(2.0), 0.0)],
            [float(np.finfo(np.float64).tiny), float(np.finfo(np.float64).max)],
        ]
    )
    exact = np.log(x.astype(np.longdouble))  # x87 extended: 11 more bits than float64
    error = np.abs(_logs(x).astype(np.longdouble) - exact)
    ulps = error / np.spacing(np.abs(exact.astype(np.float64)))
    assert float(ulps.max()) <= 1.0
    assert _logs(np.array([1.0]))[0] == 0.0
    assert np.isnan(_logs(np.array([np.nan]))[0])


def test_tanh_float32_within_1_5_ulp():
    """Every 97th positive float32 (and its negative), against long double ``tanh``."""
    x = np.arange(0, 0x7F800000, 97, dtype=np.uint32).view(np.float32)
    x = np.concatenate([x, -x])
    exact = np.tanh(x.astype(np.longdouble))
    ulp = np.spacing(np.abs(exact.astype(np.float32))).astype(np.longdouble)
    error = np.abs(_tanhs(x).astype(np.longdouble) - exact) / ulp
    assert float(error.max()) <= 1.5


def test_tanh_float64_within_1_5_ulp():
    rng = np.random.default_rng(8)
    x = np.concatenate(
        [
            rng.uniform(-20.0, 20.0, 400_000),
            rng.uniform(-0.7, 0.7, 400_000),  # both sides of the switch at 0.625
            np.exp(rng.uniform(-700.0, 0.0, 100_000)),  # tanh(x) ~ x
        ]
    )
    exact = np.tanh(x.astype(np.longdouble))
    ulp = np.spacing(np.abs(exact.astype(np.float64))).astype(np.longdouble)
    error = np.abs(_tanhs(x).astype(np.longdouble) - exact) / ulp
    assert float(error.max()) <= 1.5


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_tanh_special_values(dtype):
    x = np.array([0.0, -0.0, np.inf, -np.inf, np.nan, 1e-30, 20.0, -20.0], dtype)
    result = _tanhs(x)
    assert result[0] == 0.0 and not np.signbit(result[0])
    assert result[1] == 0.0 and np.signbit(result[1])
    assert result[2] == 1.0 and result[3] == -1.0 and np.isnan(result[4])
    assert result[5] == dtype(1e-30)
    assert result[6] == 1.0 and result[7] == -1.0
    assert tanh(0.5) == math.tanh(0.5)  # the plain Python version
