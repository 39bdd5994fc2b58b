"""Special values, forward and gradient: +-inf, nan, subnormal and huge logits.

The one home of the numerical edge cases (docs/semantics.md): every public function gets
huge logits (+-1e30, +-3e38, the dtype's largest finite value), subnormal logits and
subnormal results, constant rows, +-inf and nan entries, ``-inf`` masks, one class, 262144
classes, empty and one-sample batches, in float32 and float64. The rule checked everywhere:
never a ``nan`` where the mathematics gives a number, never a number where it gives ``nan``
(a row with a ``nan`` or ``+inf`` entry, or entirely ``-inf``, has no softmax), and the
numbers themselves within a few ulps.

Expected values are worked by hand (``log 2``, ``log C``, exact zeros and infinities) or
come from the exact oracle (``oracle.py``: long double for float64 inputs, float64 for
float32 inputs), rounded once to the result dtype. Nothing expected is computed by
fastxent. The later sections (``-inf`` masks and ``nan`` propagation; binary and
distribution losses by hand) compare with the reference or with values worked by hand.

Tolerances against the exact values, ``|actual - exact| <= ulps * ULP * |exact| + atol``
with ``ULP`` the dtype's spacing at 1 and ``ulps`` = 4 (float64: 4 + log2(C) / 2, for its
float64 sums over C terms):

- softmax: plus ``|z - m| / 2`` ulps for rounding ``z - m`` in the dtype before ``exp``
  (an error of ``|z - m|`` times the unit roundoff in the exponent);
- log-softmax, logsumexp, losses: plus 4 float64 ulps absolute (the log of a float64
  exp-sum near 1 is exact to float64's spacing there, not relative to the result);
- KL divergence, the difference of the cross-entropy and the entropy: plus 4 float64 ulps
  of their size and 4 ulps of the dtype absolute (see :func:`kl_atol`);
- gradients: plus 4 ulps of the row's scale (1: every entry is in [-1, 1]) absolute.

``fastxent.reference`` is held to the same tolerance, plus its own float64 rounding of
``logsumexp`` (``4 * 2**-52 * max |z|``), on the rows where that rounding is small
(``max |z| <= 2**20``); :func:`test_reference_huge_logits` checks it beyond.
"""

from __future__ import annotations

import math
import sys
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from conftest import NATIVE_TOLERANCES, assert_result, parallel_rows
from oracle import (
    EPS64,
    INF,
    LARGEST,
    LD,
    LN2,
    NAN,
    SUBNORMAL,
    TINIEST,
    ULP,
    Exact,
    exact_binary,
    rounded,
)

import fastxent
from fastxent import reference
from fastxent._tuning import SHORT_ROW

DTYPES = [pytest.param(np.float32, id="float32"), pytest.param(np.float64, id="float64")]
#: Largest class count checked: one row of it is 1 MiB in float32.
LARGE_C = 262144
#: Where a lone special value goes in a long row: first, inside the vector body, last (tail).
POSITIONS = [0, 12345, LARGE_C - 1]
#: Rows whose largest finite |logit| is above this are not compared with the reference.
REFERENCE_RANGE = 2.0**20


# --------------------------------------------------------------------------------------
# Comparison with the exact values
# --------------------------------------------------------------------------------------


def check(
    actual: Any,
    exact: Any,
    dtype: Any,
    *,
    ulps: Any = 4.0,
    atol: Any = 0.0,
    rows: np.ndarray | None = None,
    what: str = "",
) -> None:
    """``actual`` has ``dtype``, the shape of ``exact``, and its value rounded to ``dtype``.

    ``nan`` exactly where ``exact`` is ``nan``, infinities equal (sign included), finite
    values within ``ulps * ULP * |exact| + atol`` (``ulps`` and ``atol`` may be arrays).
    ``rows`` (a mask over the first axis) restricts the comparison to those rows.
    """
    what = what or f"check at line {sys._getframe(1).f_lineno}"
    dtype = np.dtype(dtype)
    actual = np.asarray(actual)
    assert actual.dtype == dtype, f"{what}: dtype {actual.dtype} != {dtype}"
    expected = rounded(exact, dtype)
    assert actual.shape == expected.shape, f"{what}: shape {actual.shape} != {expected.shape}"
    a = actual.astype(np.float64)
    e = expected.astype(np.float64)
    tol = np.broadcast_to(np.asarray(ulps) * ULP[dtype] * np.abs(np.nan_to_num(e)) + atol, e.shape)
    if rows is not None:
        a, e, tol = a[rows], e[rows], tol[rows]
    with np.errstate(invalid="ignore"):  # inf - inf: those are compared by ==
        error = np.abs(a - e)
        wrong = np.isnan(a) != np.isnan(e)
        wrong |= (np.isinf(a) | np.isinf(e)) & (a != e) & ~np.isnan(e)
        wrong |= np.isfinite(a) & np.isfinite(e) & ~(error <= tol)
    if wrong.any():
        where = np.argwhere(wrong)[:6]
        lines = [
            f"  {tuple(i)}: actual {a[tuple(i)]!r}, exact {e[tuple(i)]!r}, "
            f"tolerance {tol[tuple(i)]:.3g}"
            for i in where
        ]
        pytest.fail(f"{what}: {wrong.sum()} of {wrong.size} wrong ({dtype})\n" + "\n".join(lines))


def quietly(function: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Call ``function`` with NumPy's overflow/invalid warnings off.

    fastxent's float32 result of a float64 loss beyond float32's range is ``inf`` but comes
    with a RuntimeWarning (see :func:`test_overflow_to_inf_does_not_warn`); the reference's
    NumPy arithmetic warns at infinities.
    """
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        return function(*args, **kwargs)


def reference_rows(exact: Exact) -> np.ndarray:
    """Rows on which the reference's float64 ``logsumexp`` keeps its ``log s``."""
    return exact.magnitude <= REFERENCE_RANGE


def log_atol(exact: Exact, mass: Any = 1.0) -> tuple[Any, Any]:
    """Absolute slack for a log-domain result: ours (a float64 log near 1) and the reference's."""
    ours = 4 * EPS64 * np.asarray(mass)
    theirs = ours + 4 * EPS64 * exact.magnitude * np.asarray(mass)
    return ours, theirs


def as_column(values: np.ndarray) -> np.ndarray:
    return np.asarray(values)[..., None]


def default_ulps(x: np.ndarray) -> float:
    """4 ulps; float64 adds half an ulp per doubling of C for its float64 exp-sum.

    float32 rows are summed in float64, far below float32's ulp, at any C.
    """
    if x.dtype == np.float32:
        return 4.0
    return 4.0 + 0.5 * math.log2(max(x.shape[-1], 1))


# --------------------------------------------------------------------------------------
# Checkers: every function on a 2-D batch of rows
# --------------------------------------------------------------------------------------


def check_softmax_family(x: np.ndarray, exact: Exact | None = None) -> None:
    """softmax, log_softmax and logsumexp of ``x``, and the reference's, against exact values."""
    dtype = x.dtype
    ulps = default_ulps(x)
    exact = Exact(x) if exact is None else exact
    ref = reference_rows(exact)
    ours, theirs = log_atol(exact)
    p_ulps = ulps + exact.gap / 2
    p_atol = 2 * TINIEST[np.dtype(dtype)]
    check(quietly(fastxent.softmax, x), exact.p, dtype, ulps=p_ulps, atol=p_atol, what="softmax")
    check(
        quietly(reference.softmax, x),
        exact.p,
        dtype,
        ulps=p_ulps,
        atol=p_atol,
        rows=ref,
        what="reference.softmax",
    )
    check(fastxent.log_softmax(x), exact.logp, dtype, ulps=ulps, atol=ours, what="log_softmax")
    check(
        quietly(reference.log_softmax, x),
        exact.logp,
        dtype,
        ulps=ulps,
        atol=as_column(theirs),
        rows=ref,
        what="reference.log_softmax",
    )
    check(fastxent.logsumexp(x), exact.lse, dtype, ulps=ulps, atol=ours, what="logsumexp")
    check(
        quietly(reference.logsumexp, x),
        exact.lse,
        dtype,
        ulps=ulps,
        atol=theirs,
        rows=ref,
        what="reference.logsumexp",
    )


def check_loss_and_grad(
    x: np.ndarray,
    target: np.ndarray,
    loss_exact: np.ndarray,
    grad_exact: np.ndarray,
    exact: Exact,
    mass: Any,
) -> None:
    """cross_entropy and cross_entropy_with_grad (reduction="none"), ours and the reference's."""
    dtype = x.dtype
    ulps = default_ulps(x)
    ref = reference_rows(exact)
    ours, theirs = log_atol(exact, mass)
    grad_atol = ulps * ULP[np.dtype(dtype)] * np.maximum(as_column(mass), 1.0)
    loss = quietly(fastxent.cross_entropy, x, target, reduction="none")
    loss2, grad = quietly(fastxent.cross_entropy_with_grad, x, target, reduction="none")
    ref_loss, ref_grad = quietly(reference.cross_entropy_with_grad, x, target, reduction="none")
    check(loss, loss_exact, dtype, ulps=ulps, atol=ours, what="cross_entropy")
    check(loss2, loss_exact, dtype, ulps=ulps, atol=ours, what="cross_entropy_with_grad loss")
    check(grad, grad_exact, dtype, ulps=ulps, atol=grad_atol, what="gradient")
    check(ref_loss, loss_exact, dtype, ulps=ulps, atol=theirs, rows=ref, what="reference loss")
    ref_grad_atol = grad_atol + 4 * EPS64 * as_column(exact.magnitude * mass)
    check(
        ref_grad,
        grad_exact,
        dtype,
        ulps=ulps,
        atol=ref_grad_atol,
        rows=ref,
        what="reference gradient",
    )


def check_index_targets(x: np.ndarray, y: np.ndarray, exact: Exact | None = None) -> None:
    """Integer targets: loss ``-logp[y]``, gradient ``p - onehot(y)``."""
    exact = Exact(x) if exact is None else exact
    loss_exact, grad_exact = exact.index_loss_grad(y)
    check_loss_and_grad(x, y, loss_exact, grad_exact, exact, np.ones(len(x)))


def kl_atol(exact: Exact, q: np.ndarray, loss_exact: Any, kl_exact: Any) -> np.ndarray:
    """Absolute slack of a KL divergence, ``CE - H`` with ``H = -sum q log q``.

    KL is small where the cross-entropy and the entropy nearly cancel, so its error is
    absolute, at their size: float64's rounding of both (4 ulps), and the error of
    ``log S`` from ``exp`` values rounded to the dtype (4 ulps of the dtype, times ``A``).
    """
    mass = q.astype(np.float64).sum(-1)
    with np.errstate(invalid="ignore"):  # inf - inf on rows where KL is inf: not used
        entropy = np.abs(np.asarray(loss_exact - kl_exact, np.float64))
    size = 1.0 + np.abs(np.asarray(loss_exact, np.float64)) + np.nan_to_num(entropy)
    return 4 * ULP[np.dtype(exact.dtype)] * mass + 4 * EPS64 * np.nan_to_num(size)


def check_prob_targets(
    x: np.ndarray, q: np.ndarray, exact: Exact | None = None, kl: bool = True
) -> None:
    """Probability targets, cross-entropy and its gradient, and (``kl``) kl_divergence."""
    dtype = x.dtype
    ulps = default_ulps(x)
    exact = Exact(x) if exact is None else exact
    loss_exact, grad_exact = exact.prob_loss_grad(q)
    mass = q.astype(np.float64).sum(-1)
    check_loss_and_grad(x, q, loss_exact, grad_exact, exact, mass)
    kl_exact = exact.kl(q)
    value = quietly(fastxent.kl_divergence, x, q, reduction="none")
    assert np.array_equal(np.isnan(value), np.isnan(kl_exact.astype(np.float64)))
    if not kl:
        return
    atol = kl_atol(exact, q, loss_exact, kl_exact)
    check(value, kl_exact, dtype, ulps=ulps, atol=atol, what="kl_divergence")
    check(
        quietly(reference.kl_divergence, x, q, reduction="none"),
        kl_exact,
        dtype,
        ulps=ulps,
        atol=atol + 4 * EPS64 * exact.magnitude * mass,
        rows=reference_rows(exact),
        what="reference.kl_divergence",
    )


def every_target(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each row of ``x`` repeated once per class, with that class as its integer target."""
    n_rows, n_classes = x.shape
    return np.repeat(x, n_classes, axis=0), np.tile(np.arange(n_classes), n_rows)


# --------------------------------------------------------------------------------------
# The special rows
# --------------------------------------------------------------------------------------


def special_rows(dtype: Any, wide: bool = True) -> np.ndarray:
    """Rows of four logits that have a distribution, each at an edge of the float range.

    ``wide=False`` leaves out the rows holding both ``+-LARGEST``, whose gaps ``m - z``
    pass float64's range (see :func:`test_logit_span_beyond_float64_range`).
    """
    dtype = np.dtype(dtype)
    big = LARGEST[dtype]
    tiny = SUBNORMAL[dtype]
    rows = [
        [1e30, -1e30, 0.0, 1e30],
        [1e30, 1e30, 1e30, 1e30],
        [-1e30, -1e30, -1e30, -1e30],
        [-1e30, -1e30, -1e30, 0.0],
        [3e38, -3e38, 0.0, 1.0],
        [3e38, 3e38, -3e38, -3e38],
        [-3e38, -3e38, -3e38, -3e38],
        [big, big, big, big],
        [-big, -big, -big, -big],
        [tiny, 0.0, -tiny, 2 * tiny],
        [tiny, tiny, tiny, tiny],
        [-tiny, 0.0, 1.0, 2.0],
        [2.0, 2.0, 2.0, 2.0],
        [0.0, 0.0, 0.0, 0.0],
        [1e4, 1e4 + 1, 1e4 + 2, 1e4 - 3],
        [-INF, 0.0, 0.0, 1.0],
        [-INF, -INF, -INF, 0.0],
        [-INF, -INF, 1e30, -1e30],
        [-INF, tiny, -INF, -INF],
        [-INF, 30.0, 0.0, -30.0],
    ]
    wide_rows = [[big, -big, 0.0, 1.0], [-big, -big, -big, big], [-INF, big, -INF, -big]]
    return np.array(rows + wide_rows if wide else rows, dtype)


def nan_rows(dtype: Any) -> np.ndarray:
    """Rows without a distribution: every result of theirs is ``nan``."""
    big = LARGEST[np.dtype(dtype)]
    rows = [
        [INF, 0.0, 0.0, 0.0],
        [INF, -INF, -INF, -INF],
        [INF, INF, 0.0, 0.0],
        [INF, -big, big, 1e30],
        [-INF, -INF, -INF, -INF],
        [0.0, NAN, 0.0, 0.0],
        [NAN, NAN, NAN, NAN],
        [-INF, NAN, -INF, -INF],
        [NAN, INF, -INF, 0.0],
        [big, NAN, -big, 1e30],
    ]
    return np.array(rows, dtype)


def padded(x: np.ndarray, width: int) -> np.ndarray:
    """``x`` with ``-inf`` (masked) columns appended up to ``width`` classes."""
    out = np.full((x.shape[0], width), -INF, x.dtype)
    out[:, : x.shape[1]] = x
    return out


#: Probability targets for rows of four classes: exact binary fractions, with zeros where
#: the special rows have -inf (0 log 0 = 0) and where they do not, and an unnormalised one.
PROB_TARGETS = [
    [0.25, 0.25, 0.25, 0.25],
    [0.5, 0.0, 0.5, 0.0],
    [0.0, 0.0, 0.0, 1.0],
    [0.0, 1.0, 0.0, 0.0],
    [0.125, 0.375, 0.0, 0.5],
    [0.0, 0.75, 0.0, 0.0],
]


def prob_targets(dtype: Any, width: int = 4) -> list[np.ndarray]:
    """:data:`PROB_TARGETS` and one with a subnormal entry, padded with zeros to ``width``."""
    tiny = SUBNORMAL[np.dtype(dtype)]
    targets = []
    for q in [*PROB_TARGETS, [tiny, 0.0, 0.0, 1.0]]:
        full = np.zeros(width, dtype)
        full[:4] = q
        targets.append(full)
    return targets


#: Row widths for the grids: the short-row kernels (at most SHORT_ROW classes) and the
#: general ones.
WIDTHS = [pytest.param(4, id="C4"), pytest.param(SHORT_ROW + 8, id=f"C{SHORT_ROW + 8}")]


# --------------------------------------------------------------------------------------
# Grids of special rows: every function, every target
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("width", WIDTHS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_softmax_family_special_rows(dtype, width):
    check_softmax_family(padded(special_rows(dtype), width))


@pytest.mark.parametrize("width", WIDTHS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_softmax_family_rows_without_distribution(dtype, width):
    good = special_rows(dtype)[[11, 12, 13, 15]]  # [-tiny, 0, 1, 2], 2s, 0s, [-inf, 0, 0, 1]
    x = padded(np.concatenate([nan_rows(dtype), good]), width)
    n_bad = len(nan_rows(dtype))
    p, logp, lse = fastxent.softmax(x), fastxent.log_softmax(x), fastxent.logsumexp(x)
    assert np.isnan(p[:n_bad]).all() and np.isnan(logp[:n_bad]).all()
    # logsumexp: +inf for the four rows with +inf and no nan, -inf for all -inf, else nan.
    expected = [INF] * 4 + [-INF] + [NAN] * 5
    np.testing.assert_array_equal(lse[:n_bad], np.array(expected, lse.dtype))
    assert not np.isnan(p[n_bad:]).any() and not np.isnan(logp[n_bad:]).any()
    assert not np.isnan(lse[n_bad:]).any()
    check_softmax_family(x)


@pytest.mark.parametrize("width", WIDTHS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_cross_entropy_index_targets_special_rows(dtype, width):
    rows = padded(np.concatenate([special_rows(dtype), nan_rows(dtype)]), width)
    x, y = every_target(rows)
    check_index_targets(x, y)


@pytest.mark.parametrize("width", WIDTHS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_cross_entropy_prob_targets_and_kl_special_rows(dtype, width):
    rows = padded(np.concatenate([special_rows(dtype, wide=False), nan_rows(dtype)]), width)
    x = np.concatenate([rows] * 7)
    q = np.repeat(np.array(prob_targets(dtype, width)), len(rows), axis=0)
    check_prob_targets(x, q)


def subnormal_result_rows(dtype: Any) -> np.ndarray:
    """Rows whose softmax has subnormal (and underflowing) entries.

    float32: exp(-87.3) is just above the smallest normal 1.18e-38, exp(-103.9) ~ 0.6
    subnormal units rounds up to the smallest subnormal, exp(-104.5) rounds to 0. float64:
    exp(-708) is just above the smallest normal, exp(-744) and exp(-745) are a few
    subnormal units, exp(-746) rounds to 0.
    """
    if np.dtype(dtype) == np.float32:
        row = [0.0, -87.3, -88.0, -90.0, -100.0, -103.0, -103.9, -104.5]
    else:
        row = [0.0, -708.0, -709.0, -720.0, -740.0, -744.0, -745.0, -746.0]
    return np.array([row, row[::-1], [r + 0.5 for r in row]], dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_subnormal_results(dtype):
    x = subnormal_result_rows(dtype)
    p = fastxent.softmax(x)
    smallest_normal = np.finfo(dtype).smallest_normal
    # Subnormal results are kept (not flushed to zero); exp below half the smallest
    # subnormal rounds to exactly 0: one entry per row.
    assert np.all(((p > 0) & (p < smallest_normal)).sum(axis=1) == 5), p
    assert np.all((p == 0).sum(axis=1) == 1), p
    if np.dtype(dtype) == np.float32:
        assert p[0, 6] == TINIEST[np.dtype(dtype)]
    check_softmax_family(x)
    check_index_targets(*every_target(x))
    q = np.broadcast_to(np.array([0.0, 0.25, 0.0, 0.25, 0.0, 0.25, 0.0, 0.25], dtype), x.shape)
    check_prob_targets(x, q.copy())


@pytest.mark.parametrize("dtype", DTYPES)
def test_subnormal_logits(dtype):
    tiny = SUBNORMAL[np.dtype(dtype)]
    x = np.array([[tiny, 0.0, -tiny], [tiny, tiny, tiny], [-tiny, 1.0, 2.0]], dtype)
    assert 0 < x[0, 0] < np.finfo(dtype).smallest_normal  # really subnormal
    # Differences of a few subnormals vanish next to 1: the first two rows are uniform.
    third = 1.0 / 3.0
    check(fastxent.softmax(x[:2]), np.full((2, 3), third), dtype)
    check(fastxent.logsumexp(x[:2]), [math.log(3.0)] * 2, dtype)
    loss, grad = fastxent.cross_entropy_with_grad(x[:2], np.array([0, 2]), reduction="none")
    check(loss, [math.log(3.0)] * 2, dtype)
    check(grad, [[third - 1, third, third], [third, third, third - 1]], dtype)
    check_softmax_family(x)
    check_index_targets(*every_target(x))
    check_prob_targets(x, np.array([[tiny, 0.5, 0.5]] * 3, dtype))


# --------------------------------------------------------------------------------------
# Huge logits, worked by hand
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
def test_huge_logits_by_hand(dtype):
    x = np.array([[1e30, -1e30, 0.0], [-1e30, 1e30, 1e30]], dtype)
    big = float(np.asarray(1e30, dtype))  # 1e30 as the dtype holds it; 2 * big is exact
    check(fastxent.softmax(x), [[1.0, 0.0, 0.0], [0.0, 0.5, 0.5]], dtype, ulps=0)
    check(fastxent.log_softmax(x), [[0.0, -2 * big, -big], [-2 * big, -LN2, -LN2]], dtype, ulps=1)
    check(fastxent.logsumexp(x), [big, big], dtype, ulps=0)
    for y, want_loss, want_grad in [
        ([1, 0], [2 * big, 2 * big], [[1.0, -1.0, 0.0], [-1.0, 0.5, 0.5]]),
        ([0, 2], [0.0, LN2], [[0.0, 0.0, 0.0], [0.0, 0.5, -0.5]]),
    ]:
        loss = fastxent.cross_entropy(x, np.array(y), reduction="none")
        check(loss, want_loss, dtype, ulps=1, what=f"cross_entropy, y={y}")
        loss, grad = fastxent.cross_entropy_with_grad(x, np.array(y), reduction="none")
        check(loss, want_loss, dtype, ulps=1, what=f"cross_entropy_with_grad, y={y}")
        check(grad, want_grad, dtype, ulps=0, what=f"gradient, y={y}")
    q = np.array([[0.5, 0.0, 0.5], [0.0, 0.5, 0.5]], dtype)
    loss, grad = fastxent.cross_entropy_with_grad(x, q, reduction="none")
    check(loss, [0.5 * big, LN2], dtype, ulps=1)
    check(grad, [[0.5, 0.0, -0.5], [0.0, 0.0, 0.0]], dtype, ulps=0)
    check(
        fastxent.kl_divergence(x, q, reduction="none"),
        [0.5 * big, 0.0],
        dtype,
        ulps=1,
        atol=4 * EPS64,
    )


@pytest.mark.parametrize("dtype", DTYPES)
def test_float32_range_logits_by_hand(dtype):
    # float32: log p of the -3e38 class is -6e38, beyond float32: it rounds to -inf, and
    # so does a loss of 6e38 to +inf; float64 holds them. The gradient is exact either way.
    x = np.array([[3e38, -3e38, 0.0]], dtype)
    v = float(np.asarray(3e38, dtype))
    overflow = float(rounded(2 * v, dtype))  # 6e38 in the dtype: inf in float32
    assert (overflow == INF) == (np.dtype(dtype) == np.float32)
    check(fastxent.log_softmax(x), [[0.0, -overflow, -v]], dtype, ulps=0)
    check(fastxent.logsumexp(x), [v], dtype, ulps=0)
    for y, want_loss, want_grad in [
        (0, 0.0, [0.0, 0.0, 0.0]),
        (1, overflow, [1.0, -1.0, 0.0]),
        (2, v, [1.0, 0.0, -1.0]),
    ]:
        loss = quietly(fastxent.cross_entropy, x, np.array([y]), reduction="none")
        check(loss, [want_loss], dtype, ulps=0, what=f"cross_entropy, y={y}")
        loss, grad = quietly(fastxent.cross_entropy_with_grad, x, np.array([y]), reduction="none")
        check(loss, [want_loss], dtype, ulps=0, what=f"cross_entropy_with_grad, y={y}")
        check(grad, [want_grad], dtype, ulps=0, what=f"gradient, y={y}")
    # A probability target on the huge gaps: 0.25 * 6e38 + 0.25 * 3e38 = 2.25e38 is finite
    # in float32 even though log p of class 1 is not.
    q = np.array([[0.5, 0.25, 0.25]], dtype)
    loss, grad = fastxent.cross_entropy_with_grad(x, q, reduction="none")
    check(loss, [0.75 * v], dtype, ulps=1)
    check(grad, [[0.5, -0.25, -0.25]], dtype, ulps=0)
    entropy = 0.5 * math.log(0.5) + 0.5 * math.log(0.25)
    check(fastxent.kl_divergence(x, q, reduction="none"), [0.75 * v + entropy], dtype, ulps=1)
    # Label smoothing 0.1 puts 0.1 / 3 on every class: (0.1 / 3) * (0 + 6e38 + 3e38) = 3e37,
    # finite in float32 too.
    loss, grad = fastxent.cross_entropy_with_grad(
        x, np.array([0]), reduction="none", label_smoothing=0.1
    )
    check(loss, [0.1 * v], dtype, ulps=2)
    check(grad, [[0.1 - 0.1 / 3, -0.1 / 3, -0.1 / 3]], dtype, ulps=2, atol=4 * ULP[np.dtype(dtype)])


@pytest.mark.parametrize("dtype", DTYPES)
def test_largest_finite_logits(dtype):
    # +-the dtype's largest finite value: differences overflow; nothing may be nan.
    top = LARGEST[np.dtype(dtype)]
    x = np.array([[top, -top, 0.0], [top, top, top], [-top, -top, -top], [-top, 0.0, -top]], dtype)
    p = fastxent.softmax(x)
    check(p, [[1, 0, 0], [1 / 3] * 3, [1 / 3] * 3, [0, 1, 0]], dtype)
    check(fastxent.logsumexp(x), [top, top, -top, 0.0], dtype, ulps=1)
    check(fastxent.log_softmax(x)[1:3], np.full((2, 3), -math.log(3)), dtype, ulps=1)
    y = np.array([1, 0, 2, 1])
    want_loss = [INF, math.log(3), math.log(3), 0.0]
    check(quietly(fastxent.cross_entropy, x, y, reduction="none"), want_loss, dtype, ulps=2)
    loss, grad = quietly(fastxent.cross_entropy_with_grad, x, y, reduction="none")
    check(loss, want_loss, dtype, ulps=2)
    check(
        grad,
        [[1, -1, 0], [-2 / 3, 1 / 3, 1 / 3], [1 / 3, 1 / 3, -2 / 3], [0, 0, 0]],
        dtype,
        ulps=2,
        atol=ULP[np.dtype(dtype)],
    )
    check_softmax_family(x)
    check_index_targets(*every_target(x))


@pytest.mark.parametrize("dtype", DTYPES)
def test_logit_span_beyond_float64_range(dtype):
    # Logits +-M with M near the dtype's largest value: -log p of the -M class is 2M (beyond
    # float64 for float64 logits), but a small target mass on it gives a finite loss:
    # 2**-10 * 2M ~ 3e305 (float64), and label smoothing 0.1: (0.1 / 2) * 2M.
    m = float(np.asarray(0.9 * LARGEST[np.dtype(dtype)], dtype))
    x = np.array([[m, -m]], dtype)
    q = np.array([[1 - 2.0**-10, 2.0**-10]], dtype)
    loss, grad = fastxent.cross_entropy_with_grad(x, q, reduction="none")
    check(loss, [2.0**-10 * 2 * m], dtype, ulps=2, what="probability-target loss")
    check(grad, [[2.0**-10, -(2.0**-10)]], dtype, ulps=0, what="probability-target gradient")
    check(
        fastxent.cross_entropy(x, q, reduction="none"),
        [2.0**-10 * 2 * m],
        dtype,
        ulps=2,
        what="probability-target cross_entropy",
    )
    kl_exact = Exact(x).kl(q)
    check(
        fastxent.kl_divergence(x, q, reduction="none"),
        kl_exact,
        dtype,
        ulps=2,
        what="kl_divergence",
    )
    loss, grad = fastxent.cross_entropy_with_grad(
        x, np.array([0]), reduction="none", label_smoothing=0.1
    )
    check(loss, [0.05 * 2 * m], dtype, ulps=2, what="smoothed loss")
    check(
        grad,
        [[0.05, -0.05]],
        dtype,
        ulps=2,
        atol=4 * ULP[np.dtype(dtype)],
        what="smoothed gradient",
    )


@pytest.mark.parametrize("offset", [1e4, 1e8, 1e12, 1e30])
@pytest.mark.parametrize("dtype", DTYPES)
def test_large_offset_keeps_log_sum(dtype, offset):
    # Logits all near a large offset: log p = (z - m) - log S keeps log S, whose size does
    # not depend on the offset. Computing m + log S first rounds log S to the spacing of the
    # offset (float64 at 1e4: 1.8e-12; at 1e30 everything), and log p or the loss with it.
    rng = np.random.default_rng(7)
    x = (offset + rng.standard_normal((6, 5))).astype(dtype)
    x[0] = x[0, 0]  # a constant row too: log p = -log 5 at any offset
    y = np.arange(6) % 5
    check(fastxent.log_softmax(x)[0], [-math.log(5)] * 5, dtype, ulps=1, what="log_softmax")
    check(
        fastxent.cross_entropy(x, y, reduction="none")[0],
        math.log(5),
        dtype,
        ulps=1,
        what="cross_entropy",
    )
    check(
        fastxent.cross_entropy_with_grad(x, y, reduction="none")[0][0],
        math.log(5),
        dtype,
        ulps=1,
        what="cross_entropy_with_grad",
    )
    check_softmax_family(x)
    check_index_targets(x, y)
    check_prob_targets(x, np.full(x.shape, 0.2, dtype))


@pytest.mark.parametrize("dtype", DTYPES)
def test_reference_huge_logits(dtype):
    # The executable specification itself at huge logits (beyond REFERENCE_RANGE), by hand.
    x = np.array([[1e30, 1e30], [1e4, 1e4]], dtype)
    check(
        quietly(reference.log_softmax, x),
        np.full((2, 2), -LN2),
        dtype,
        ulps=1,
        what="reference.log_softmax",
    )
    loss, grad = quietly(reference.cross_entropy_with_grad, x, np.array([0, 1]), reduction="none")
    check(loss, [LN2, LN2], dtype, ulps=1, what="reference loss")
    check(grad, [[-0.5, 0.5], [0.5, -0.5]], dtype, ulps=1, what="reference gradient")
    kl = quietly(reference.kl_divergence, x, np.full((2, 2), 0.5, dtype), reduction="none")
    check(kl, [0.0, 0.0], dtype, atol=4 * EPS64, what="reference.kl_divergence")


@pytest.mark.parametrize("dtype", [pytest.param(np.float32, id="float32")])
def test_overflow_to_inf_does_not_warn(dtype):
    # A float32 loss beyond float32's range is +inf, as the rounding of the float64 value;
    # turning it into a float32 must not raise NumPy's "overflow encountered in cast"
    # RuntimeWarning (an exception under -W error, and the result is lost with it).
    x = np.array([[3e38, -3e38, 0.0], [-3e38, 3e38, 0.0]], dtype)
    y = np.array([1, 0])
    calls = {
        "cross_entropy none": lambda: fastxent.cross_entropy(x, y, reduction="none"),
        "cross_entropy sum": lambda: fastxent.cross_entropy(x, np.array([2, 2]), reduction="sum"),
        "cross_entropy_with_grad none": lambda: fastxent.cross_entropy_with_grad(
            x, y, reduction="none"
        )[0],
        "kl_divergence none": lambda: fastxent.kl_divergence(
            x, np.array([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0]], dtype), reduction="none"
        ),
        "binary_cross_entropy sum": lambda: fastxent.binary_cross_entropy(
            x, np.zeros(x.shape, dtype), reduction="sum"
        ),
    }
    for name, call in calls.items():
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            value = np.asarray(call())
        assert np.all(np.isposinf(value) | (value == 0)) and np.isposinf(value).any(), name
        assert not caught, f"{name}: {[str(w.message) for w in caught]}"


# --------------------------------------------------------------------------------------
# Constant rows and one-hot infinities
# --------------------------------------------------------------------------------------


def constant_values(dtype: Any) -> list[float]:
    d = np.dtype(dtype)
    return [0.0, 2.0, -7.25, 1e30, -1e30, 3e38, -3e38, LARGEST[d], -LARGEST[d], SUBNORMAL[d]]


@pytest.mark.parametrize("n_classes", [2, 3, SHORT_ROW + 1, 1000, LARGE_C])
@pytest.mark.parametrize("dtype", DTYPES)
def test_constant_rows(dtype, n_classes):
    d = np.dtype(dtype)
    values = np.array(constant_values(dtype), dtype)
    x = np.repeat(values[:, None], n_classes, axis=1)
    log_c = math.log(n_classes)
    p = 1.0 / n_classes
    check(fastxent.softmax(x), np.full(x.shape, p), dtype, ulps=2, what="softmax")
    check(fastxent.log_softmax(x), np.full(x.shape, -log_c), dtype, ulps=2, what="log_softmax")
    lse_exact = values.astype(LD) + LD(log_c)
    check(fastxent.logsumexp(x), lse_exact, dtype, ulps=2, what="logsumexp")
    y = np.arange(len(values)) * 7919 % n_classes
    want = np.full(len(values), log_c)
    check(fastxent.cross_entropy(x, y, reduction="none"), want, dtype, ulps=2, what="cross_entropy")
    loss, grad = fastxent.cross_entropy_with_grad(x, y, reduction="none")
    check(loss, want, dtype, ulps=2, what="cross_entropy_with_grad")
    grad_exact = np.full(x.shape, p)
    grad_exact[np.arange(len(y)), y] -= 1.0
    check(grad, grad_exact, dtype, ulps=2, what="gradient")
    q = np.full(x.shape, p, dtype)
    # A = sum q = C * round(1 / C) is 1 up to an ulp: the loss is A log C, the gradient
    # A p - q = A / C - q = 0.
    mass = LD(n_classes) * LD(q[0, 0])
    want = np.full(len(values), mass * np.log(LD(n_classes)))
    ulps = default_ulps(x)  # A is a sum of C terms
    loss, grad = fastxent.cross_entropy_with_grad(x, q, reduction="none")
    check(loss, want, dtype, ulps=ulps, what="probability-target loss")
    loss = fastxent.cross_entropy(x, q, reduction="none")
    check(loss, want, dtype, ulps=ulps, what="probability-target cross_entropy")
    check(grad, np.zeros(x.shape), dtype, atol=4 * ULP[d] * p, what="probability-target gradient")
    # kl_divergence of these rows: test_kl_divergence_target_matches_prediction.


@pytest.mark.parametrize("n_classes", [3, 1000, LARGE_C])
@pytest.mark.parametrize("dtype", DTYPES)
def test_kl_divergence_target_matches_prediction(dtype, n_classes):
    # q = softmax(z) (rounded to the dtype): KL(q || p) is ~0, the difference of the
    # cross-entropy and the entropy, two terms of size ~log C. Computed exactly, its error
    # is float64's rounding of those terms, not a relative error of the tiny result. Rows:
    # constant logits with q = 1/C (KL = A log(C q), 0 when 1/C is exact), and random ones.
    constant = np.zeros((2, n_classes), dtype)
    constant[1] = 1e30
    x = np.concatenate([constant, base_rows(dtype, 2, n_classes)])
    exact = Exact(x)
    q = rounded(exact.p, dtype)
    loss_exact, _ = exact.prob_loss_grad(q)
    kl_exact = exact.kl(q)
    assert np.all(np.abs(kl_exact.astype(np.float64)) < 1e-6)
    atol = kl_atol(exact, q, loss_exact, kl_exact)
    kl = fastxent.kl_divergence(x, q, reduction="none")
    check(kl, kl_exact, dtype, atol=atol, what="kl_divergence")
    check(
        quietly(reference.kl_divergence, x, q, reduction="none"),
        kl_exact,
        dtype,
        atol=atol + 4 * EPS64 * exact.magnitude,
        rows=reference_rows(exact),
        what="reference.kl_divergence",
    )


@pytest.mark.parametrize("dtype", DTYPES)
def test_plus_inf_one_hot_is_nan(dtype):
    # [inf, 0, 0]: softmax would need inf - inf: nan for the whole row, every function,
    # whichever class is the target. The second row is untouched.
    x = np.array([[INF, 0.0, 0.0], [0.0, 0.0, LN2]], dtype)
    good = np.array([1.0, 1.0, math.exp(float(np.asarray(LN2, dtype)))])
    good /= good.sum()
    for values in (fastxent.softmax(x), fastxent.log_softmax(x)):
        assert np.isnan(values[0]).all() and not np.isnan(values[1]).any()
    check(fastxent.softmax(x)[1], good, dtype)
    lse = fastxent.logsumexp(x)
    assert lse[0] == INF  # SciPy's and PyTorch's value
    check(lse[1], math.log(4), dtype, ulps=1)
    for y in range(3):
        target = np.array([y, y])
        loss, grad = fastxent.cross_entropy_with_grad(x, target, reduction="none")
        assert np.isnan(loss[0]) and np.isnan(grad[0]).all()
        check(loss[1], -math.log(good[y]), dtype)
        check(grad[1], good - np.eye(3)[y], dtype, atol=ULP[np.dtype(dtype)])
        assert np.isnan(fastxent.cross_entropy(x, target, reduction="none")[0])
    q = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]], dtype)
    loss, grad = fastxent.cross_entropy_with_grad(x, q, reduction="none")
    assert np.isnan(loss[0]) and np.isnan(grad[0]).all()
    check(loss[1], -math.log(good[2]), dtype)
    kl = fastxent.kl_divergence(x, q, reduction="none")
    assert np.isnan(kl[0])
    check(kl[1], -math.log(good[2]), dtype)
    check_index_targets(*every_target(x))
    check_prob_targets(x, q)


@pytest.mark.parametrize("dtype", DTYPES)
def test_minus_inf_one_hot_is_finite(dtype):
    # [-inf, 0, 0]: the -inf class is masked: p = [0, 1/2, 1/2], log p = [-inf, -ln2, -ln2].
    x = np.array([[-INF, 0.0, 0.0]], dtype)
    check(fastxent.softmax(x), [[0.0, 0.5, 0.5]], dtype, ulps=0)
    check(fastxent.log_softmax(x), [[-INF, -LN2, -LN2]], dtype, ulps=1)
    check(fastxent.logsumexp(x), [LN2], dtype, ulps=1)
    for y, want_loss, want_grad in [
        (0, INF, [-1.0, 0.5, 0.5]),
        (1, LN2, [0.0, -0.5, 0.5]),
        (2, LN2, [0.0, 0.5, -0.5]),
    ]:
        loss, grad = fastxent.cross_entropy_with_grad(x, np.array([y]), reduction="none")
        check(loss, [want_loss], dtype, ulps=1)
        check(grad, [want_grad], dtype, ulps=0)
        check(
            fastxent.cross_entropy(x, np.array([y]), reduction="none"), [want_loss], dtype, ulps=1
        )
    check_index_targets(*every_target(x))
    for q, want in [([0.0, 0.5, 0.5], LN2), ([0.0, 1.0, 0.0], LN2), ([0.5, 0.5, 0.0], INF)]:
        q = np.array([q], dtype)
        check(fastxent.cross_entropy(x, q, reduction="none"), [want], dtype, ulps=1)
        check_prob_targets(x, q)


# --------------------------------------------------------------------------------------
# -inf masks, nan entries: short rows and 262144 classes
# --------------------------------------------------------------------------------------


def base_rows(dtype: Any, n_rows: int, n_classes: int) -> np.ndarray:
    """Reproducible ordinary logits (standard normal times 3)."""
    rng = np.random.default_rng(n_classes + 17 * n_rows)
    return (3.0 * rng.standard_normal((n_rows, n_classes))).astype(dtype)


def random_distribution(shape: tuple[int, ...], dtype: Any) -> np.ndarray:
    """Reproducible probability rows (uniform draws, normalised), with a few exact zeros."""
    rng = np.random.default_rng(shape[-1])
    q = rng.random(shape)
    q[q < 0.05] = 0.0
    return (q / q.sum(axis=-1, keepdims=True)).astype(dtype)


MASK_CASES = [
    pytest.param(3, 0, id="C3-first"),
    pytest.param(3, 2, id="C3-last"),
    pytest.param(37, 20, id="C37"),
    pytest.param(LARGE_C, 0, id=f"C{LARGE_C}-first"),
    pytest.param(LARGE_C, LARGE_C - 1, id=f"C{LARGE_C}-last"),
]


@pytest.mark.parametrize(("n_classes", "target"), MASK_CASES)
@pytest.mark.parametrize("dtype", DTYPES)
def test_mask_all_but_target(dtype, n_classes, target):
    # Every class but the target at -inf: p = one-hot, loss exactly 0, gradient exactly 0.
    x = base_rows(dtype, 2, n_classes)
    x[0] = -INF
    x[0, target] = LARGEST[np.dtype(dtype)] if target else -3.5
    y = np.array([target, n_classes - 1 - target])
    p = fastxent.softmax(x)
    assert p[0, target] == 1 and np.count_nonzero(p[0]) == 1
    logp = fastxent.log_softmax(x)
    assert logp[0, target] == 0 and np.isneginf(np.delete(logp[0], target)).all()
    assert fastxent.logsumexp(x)[0] == x[0, target]
    for loss in (
        fastxent.cross_entropy(x, y, reduction="none"),
        fastxent.cross_entropy_with_grad(x, y, reduction="none")[0],
    ):
        assert loss[0] == 0.0 and np.isfinite(loss[1])
    for reduction in ("none", "sum", "mean"):
        _, grad = fastxent.cross_entropy_with_grad(x, y, reduction=reduction)
        assert np.all(grad[0] == 0.0), f"reduction={reduction}: {grad[0][grad[0] != 0]}"
        assert np.isfinite(grad[1]).all()
    q = np.zeros(x.shape, dtype)
    q[0, target] = 1.0
    q[1, y[1]] = 1.0
    loss, grad = fastxent.cross_entropy_with_grad(x, q, reduction="none")
    assert loss[0] == 0.0 and np.all(grad[0] == 0.0)
    assert fastxent.kl_divergence(x, q, reduction="none")[0] == 0.0
    exact = Exact(x)
    check_index_targets(x, y, exact)
    check_prob_targets(x, q, exact)


@pytest.mark.parametrize(("n_classes", "target"), MASK_CASES)
@pytest.mark.parametrize("dtype", DTYPES)
def test_mask_on_target(dtype, n_classes, target):
    # The target at -inf: the model calls it impossible: loss +inf, gradient p - onehot,
    # finite, with p[target] = 0.
    x = base_rows(dtype, 2, n_classes)
    x[0, target] = -INF
    y = np.array([target, target])
    loss, grad = fastxent.cross_entropy_with_grad(x, y, reduction="none")
    assert loss[0] == INF and np.isfinite(loss[1])
    assert np.isfinite(grad).all() and grad[0, target] == -1.0
    assert fastxent.cross_entropy(x, y, reduction="none")[0] == INF
    for reduction in ("sum", "mean"):
        total, grad_r = fastxent.cross_entropy_with_grad(x, y, reduction=reduction)
        assert total == INF and np.isfinite(grad_r).all()
    q = np.zeros(x.shape, dtype)
    q[:, target] = 0.5
    q[:, (target + 1) % n_classes] = 0.5
    loss, grad = fastxent.cross_entropy_with_grad(x, q, reduction="none")
    assert loss[0] == INF and np.isfinite(grad).all()
    assert fastxent.kl_divergence(x, q, reduction="none")[0] == INF
    # Label smoothing puts mass on every class: +inf, finite gradient.
    loss, grad = fastxent.cross_entropy_with_grad(x, y, reduction="none", label_smoothing=0.1)
    assert loss[0] == INF and np.isfinite(grad).all()
    exact = Exact(x)
    check_index_targets(x, y, exact)
    check_prob_targets(x, q, exact)


@pytest.mark.parametrize(("n_classes", "target"), MASK_CASES)
@pytest.mark.parametrize("dtype", DTYPES)
def test_mask_whole_row(dtype, n_classes, target):
    # A row entirely -inf has no distribution: nan in that row, nothing elsewhere.
    x = base_rows(dtype, 2, n_classes)
    x[1] = -INF
    check_row_is_nan_only(x, np.array([n_classes - 1 - target, target]), bad_row=1)


ONE_ELEMENT_CASES = [
    *[
        pytest.param(value, n_classes, position, id=f"{name}-{case_id}")
        for value, name in ((NAN, "nan"), (INF, "plus-inf"))
        for n_classes, position, case_id in ((3, 0, "C3-first"), (3, 2, "C3-last"), (37, 20, "C37"))
    ],
    pytest.param(NAN, LARGE_C, LARGE_C - 1, id=f"nan-C{LARGE_C}-last"),
    pytest.param(INF, LARGE_C, 0, id=f"plus-inf-C{LARGE_C}-first"),
]


@pytest.mark.parametrize(("value", "n_classes", "position"), ONE_ELEMENT_CASES)
@pytest.mark.parametrize("dtype", DTYPES)
def test_nan_or_plus_inf_in_one_element(dtype, value, n_classes, position):
    # One nan (or +inf) entry: that row is nan in every output, whether or not the target
    # is that class; the other row is exact.
    x = base_rows(dtype, 2, n_classes)
    x[0, position] = value
    y = np.array([position, position])
    check_row_is_nan_only(x, y, bad_row=0)
    y[0] = (position + 1) % n_classes
    check_row_is_nan_only(x, y, bad_row=0, full=False)


def check_row_is_nan_only(x: np.ndarray, y: np.ndarray, bad_row: int, full: bool = True) -> None:
    """Every output of row ``bad_row`` is nan; the other rows are free of nan (and exact)."""
    dtype = x.dtype
    good = np.arange(len(x)) != bad_row
    q = random_distribution(x.shape, dtype)
    lse = fastxent.logsumexp(x)
    assert not np.isfinite(lse[bad_row]) and np.isfinite(lse[good]).all()
    np.testing.assert_array_equal(lse[bad_row], Exact(x).lse[bad_row])
    outputs = {
        "softmax": fastxent.softmax(x),
        "log_softmax": fastxent.log_softmax(x),
        "loss": fastxent.cross_entropy(x, y, reduction="none"),
        "kl": fastxent.kl_divergence(x, q, reduction="none"),
        "prob loss": fastxent.cross_entropy(x, q, reduction="none"),
    }
    outputs["loss2"], outputs["grad"] = fastxent.cross_entropy_with_grad(x, y, reduction="none")
    outputs["prob loss2"], outputs["prob grad"] = fastxent.cross_entropy_with_grad(
        x, q, reduction="none"
    )
    for name, values in outputs.items():
        assert np.isnan(values[bad_row]).all(), f"{name}: row {bad_row} not all nan"
        assert not np.isnan(values[good]).any(), f"{name}: nan outside row {bad_row}"
    for reduction in ("sum", "mean"):
        total, grad = fastxent.cross_entropy_with_grad(x, y, reduction=reduction)
        assert np.isnan(total) and np.isnan(grad[bad_row]).all()
        assert not np.isnan(grad[good]).any()
    exact = Exact(x)
    check_index_targets(x, y, exact)
    if full:
        check_softmax_family(x, exact)
        # (kl_divergence over 262144 classes: test_large_row_random_logits.)
        check_prob_targets(x, q, exact, kl=x.shape[1] < LARGE_C)


# --------------------------------------------------------------------------------------
# 262144 classes: single special entries in long rows
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("position", POSITIONS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_large_row_single_huge_logit(dtype, position):
    # Zeros and one 1e30 (one -1e30): p is the one-hot of that class (uniform on the rest).
    x = np.zeros((2, LARGE_C), dtype)
    x[0, position] = 1e30
    x[1, position] = -1e30
    big = float(np.asarray(1e30, dtype))
    rest = math.log(LARGE_C - 1)
    p = fastxent.softmax(x)
    assert p[0, position] == 1 and np.count_nonzero(p[0]) == 1
    check(p[1], np.where(np.arange(LARGE_C) == position, 0.0, 1.0 / (LARGE_C - 1)), dtype)
    check(fastxent.logsumexp(x), [big, rest], dtype, ulps=1)
    other = (position + 1) % LARGE_C
    for y, want_loss in (([position, other], [0.0, rest]), ([other, position], [big, big])):
        target = np.array(y)
        check(
            fastxent.cross_entropy(x, target, reduction="none"),
            want_loss,
            dtype,
            ulps=1,
            what=f"cross_entropy, y={y}",
        )
        loss, grad = fastxent.cross_entropy_with_grad(x, target, reduction="none")
        check(loss, want_loss, dtype, ulps=1, what=f"cross_entropy_with_grad, y={y}")
        want = np.zeros(LARGE_C)
        want[y[0]] -= 1.0
        want[position] += 1.0
        check(grad[0], want, dtype, ulps=0, what=f"gradient, y={y}")
    check_softmax_family(x)


@pytest.mark.parametrize("dtype", DTYPES)
def test_large_row_random_logits(dtype):
    # Two ordinary rows of 262144 classes against the exact values, every function.
    x = base_rows(dtype, 2, LARGE_C)
    exact = Exact(x)
    check_softmax_family(x, exact)
    check_index_targets(x, np.array([0, LARGE_C - 1]), exact)
    check_prob_targets(x, random_distribution(x.shape, dtype), exact)


# --------------------------------------------------------------------------------------
# One class, empty batch, one sample
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
def test_one_class(dtype):
    # C = 1: p = 1, log p = 0, loss 0 and gradient 0 for any finite logit; no distribution
    # (nan) for -inf, +inf and nan.
    d = np.dtype(dtype)
    finite = [0.0, 5.0, -5.0, 1e30, -1e30, LARGEST[d], -LARGEST[d], SUBNORMAL[d]]
    x = np.array([[v] for v in [*finite, -INF, INF, NAN]], dtype)
    n = len(finite)
    zeros = [0.0] * n + [NAN] * 3
    check(fastxent.softmax(x)[:, 0], [1.0] * n + [NAN] * 3, dtype, ulps=0, what="softmax")
    check(fastxent.log_softmax(x)[:, 0], zeros, dtype, ulps=0, what="log_softmax")
    check(fastxent.logsumexp(x), [*x[:n, 0], -INF, INF, NAN], dtype, ulps=0, what="logsumexp")
    y = np.zeros(len(x), np.int64)
    ones = np.ones(x.shape, dtype)
    check(
        fastxent.cross_entropy(x, y, reduction="none"), zeros, dtype, ulps=0, what="cross_entropy"
    )
    check(
        fastxent.cross_entropy(x, ones, reduction="none"),
        zeros,
        dtype,
        ulps=0,
        what="probability-target cross_entropy",
    )
    for target in (y, ones):
        loss, grad = fastxent.cross_entropy_with_grad(x, target, reduction="none")
        check(loss, zeros, dtype, ulps=0, what=f"loss, target {target.dtype}")
        check(grad[:, 0], zeros, dtype, ulps=0, what=f"gradient, target {target.dtype}")
    check(
        fastxent.kl_divergence(x, ones, reduction="none"),
        zeros,
        dtype,
        ulps=0,
        what="kl_divergence",
    )
    # Label smoothing has nowhere to move mass to: still 0.
    loss, grad = fastxent.cross_entropy_with_grad(
        x[:n], y[:n], reduction="none", label_smoothing=0.3
    )
    check(loss, [0.0] * n, dtype, ulps=0, what="smoothed loss")
    check(grad, np.zeros((n, 1)), dtype, atol=ULP[d], what="smoothed gradient")
    check_index_targets(x, y)
    check_prob_targets(x, ones)


@pytest.mark.parametrize("n_classes", [1, 3, LARGE_C])
@pytest.mark.parametrize("dtype", DTYPES)
def test_empty_batch(dtype, n_classes):
    # N = 0: "mean" is nan (0 / 0), "sum" is 0, "none" is empty; gradients are empty.
    d = np.dtype(dtype)
    x = np.zeros((0, n_classes), dtype)
    for function in (fastxent.softmax, fastxent.log_softmax):
        assert function(x).shape == (0, n_classes) and function(x).dtype == d
    assert fastxent.logsumexp(x).shape == (0,) and fastxent.logsumexp(x).dtype == d
    for target in (np.zeros(0, np.int64), np.zeros((0, n_classes), dtype)):
        functions = [fastxent.cross_entropy]
        if target.dtype.kind == "f":
            functions.append(fastxent.kl_divergence)
        for function in functions:
            mean = function(x, target)
            assert type(mean) is d.type and np.isnan(mean)
            total = function(x, target, reduction="sum")
            assert type(total) is d.type and total == 0
            none = function(x, target, reduction="none")
            assert none.shape == (0,) and none.dtype == d
        for reduction, check_loss in (("mean", np.isnan), ("sum", lambda v: v == 0)):
            loss, grad = fastxent.cross_entropy_with_grad(x, target, reduction=reduction)
            assert type(loss) is d.type and check_loss(loss)
            assert grad.shape == (0, n_classes) and grad.dtype == d
        loss, grad = fastxent.cross_entropy_with_grad(x, target, reduction="none")
        assert loss.shape == (0,) and grad.shape == (0, n_classes)
    mean, grad = fastxent.binary_cross_entropy_with_grad(x, x)
    assert np.isnan(mean) and grad.shape == (0, n_classes) and grad.dtype == d
    assert fastxent.binary_cross_entropy(x, x, reduction="sum") == 0
    assert fastxent.binary_cross_entropy(x, x, reduction="none").shape == (0, n_classes)


@pytest.mark.parametrize("dtype", DTYPES)
def test_single_sample(dtype):
    # N = 1, as a 1-D row and as a (1, C) batch: the exact numbers, each with its shape.
    d = np.dtype(dtype)
    row = np.array([1.4, 3.2, 5.0, -INF], dtype)
    exact = Exact(row[None, :])
    loss_exact, grad_exact = exact.index_loss_grad(np.array([2]))
    q_row = np.array([0.0, 0.25, 0.75, 0.0], dtype)
    prob_loss, prob_grad = exact.prob_loss_grad(q_row[None, :])
    atol = 4 * EPS64
    for x, y, q, shape in (
        (row, np.array(2), q_row, ()),
        (row[None], np.array([2]), q_row[None], (1,)),
    ):
        check(fastxent.softmax(x), exact.p.reshape(x.shape), dtype, ulps=8)
        check(fastxent.log_softmax(x), exact.logp.reshape(x.shape), dtype, atol=atol)
        check(fastxent.logsumexp(x), exact.lse.reshape(shape), dtype, atol=atol)
        check(
            fastxent.cross_entropy(x, y, reduction="none"),
            loss_exact.reshape(shape),
            dtype,
            atol=atol,
        )
        loss, grad = fastxent.cross_entropy_with_grad(x, y, reduction="none")
        check(loss, loss_exact.reshape(shape), dtype, atol=atol)
        check(grad, grad_exact.reshape(x.shape), dtype, atol=4 * ULP[d])
        mean, grad = fastxent.cross_entropy_with_grad(x, y)
        assert type(mean) is d.type
        check(mean, loss_exact[0], dtype, atol=atol)
        check(grad, grad_exact.reshape(x.shape), dtype, atol=4 * ULP[d])
        loss, grad = fastxent.cross_entropy_with_grad(x, q, reduction="none")
        check(loss, prob_loss.reshape(shape), dtype, atol=atol)
        check(grad, prob_grad.reshape(x.shape), dtype, atol=4 * ULP[d])
        kl = fastxent.kl_divergence(x, q, reduction="none")
        check(kl, exact.kl(q_row[None]).reshape(shape), dtype, atol=2 * atol)
    # One binary element, 0-d.
    loss, grad = fastxent.binary_cross_entropy_with_grad(np.array(0.0, dtype), np.array(1.0))
    check(loss, LN2, dtype)
    check(grad, -0.5, dtype, ulps=0)


# --------------------------------------------------------------------------------------
# Binary cross-entropy
# --------------------------------------------------------------------------------------


def binary_logits(dtype: Any) -> list[float]:
    d = np.dtype(dtype)
    magnitudes = [
        0.0,
        SUBNORMAL[d],
        1e-20,
        0.5,
        1.0,
        17.0,
        30.0,
        40.0,
        750.0,
        1e30,
        3e38,
        LARGEST[d],
        INF,
    ]
    return [*magnitudes, *[-m for m in magnitudes[1:]], NAN]


BINARY_TARGETS = [0.0, 0.25, 0.5, 0.75, 1.0]


@pytest.mark.parametrize("dtype", DTYPES)
def test_binary_special_values(dtype):
    xs = binary_logits(dtype)
    x = np.repeat(np.array(xs, dtype)[:, None], len(BINARY_TARGETS), axis=1)
    z = np.tile(np.array(BINARY_TARGETS, dtype), (len(xs), 1))
    loss_exact, grad_exact = exact_binary(x, z)
    ref_loss, ref_grad = quietly(reference.binary_cross_entropy_with_grad, x, z, reduction="none")
    loss = quietly(fastxent.binary_cross_entropy, x, z, reduction="none")
    loss2, grad = quietly(fastxent.binary_cross_entropy_with_grad, x, z, reduction="none")
    # float64 arithmetic inside: the loss within 4 ulps of the dtype (plus float64's own
    # rounding near 0); the gradient (in [-1, 1]) within 4 ulps plus 4 float64 ulps.
    for name, actual in (("loss", loss), ("loss2", loss2), ("reference loss", ref_loss)):
        check(actual, loss_exact, dtype, atol=4 * EPS64, what=name)
    for name, actual in (("gradient", grad), ("reference gradient", ref_grad)):
        check(actual, grad_exact, dtype, atol=4 * EPS64, what=name)
    nan_row = len(xs) - 1
    assert np.isnan(loss[nan_row]).all() and np.isnan(grad[nan_row]).all()
    assert not np.isnan(loss[:nan_row]).any() and not np.isnan(grad[:nan_row]).any()


@pytest.mark.parametrize("dtype", DTYPES)
def test_binary_by_hand(dtype):
    d = np.dtype(dtype)
    big = LARGEST[d]
    tiny = SUBNORMAL[d]
    # (logit, target, loss, gradient), worked by hand.
    cases = [
        (-INF, 0.0, 0.0, 0.0),  # masked element: 0 * inf = 0
        (INF, 1.0, 0.0, 0.0),
        (INF, 0.0, INF, 1.0),
        (-INF, 1.0, INF, -1.0),
        (INF, 0.5, INF, 0.5),
        (-INF, 0.25, INF, -0.25),
        (big, 0.0, big, 1.0),
        (big, 1.0, 0.0, 0.0),
        (-big, 1.0, big, -1.0),
        (-big, 0.25, 0.25 * big, -0.25),
        (big, 0.75, 0.25 * big, 0.25),
        (1e30, 0.5, 0.5 * float(np.asarray(1e30, dtype)), 0.5),
        (0.0, 0.0, LN2, 0.5),
        (0.0, 1.0, LN2, -0.5),
        (tiny, 0.5, LN2, tiny / 4),  # sigmoid(x) - 1/2 ~ x / 4
        (NAN, 0.0, NAN, NAN),
        (NAN, 1.0, NAN, NAN),
    ]
    x = np.array([c[0] for c in cases], dtype)
    z = np.array([c[1] for c in cases], dtype)
    loss, grad = fastxent.binary_cross_entropy_with_grad(x, z, reduction="none")
    check(loss, [c[2] for c in cases], dtype, ulps=1, what="loss")
    # x / 4 for a subnormal x is below float64's resolution next to 1/2: allow it as 0.
    check(grad, [c[3] for c in cases], dtype, ulps=0, atol=tiny, what="gradient")
    total, grad = fastxent.binary_cross_entropy_with_grad(x[:6], z[:6], reduction="sum")
    assert total == INF and np.all(grad == np.array([0, 0, 1, -1, 0.5, -0.25], dtype))
    assert fastxent.binary_cross_entropy(x[:2], z[:2], reduction="sum") == 0.0
    assert np.isnan(fastxent.binary_cross_entropy(x, z))


# --------------------------------------------------------------------------------------
# -inf masks and nan propagation, against the reference (docs/semantics.md, "-inf masks
# and nan")
# --------------------------------------------------------------------------------------

REDUCTIONS = ["mean", "sum", "none"]


def both(logits, target, **kwargs):
    """``(loss, grad)`` from fastxent, after checking it matches the reference."""
    dtype = logits.dtype
    rtol, atol = (1e-12, 1e-13) if dtype == np.float64 else (1e-5, 1e-6)
    loss = fastxent.cross_entropy(logits, target, **kwargs)
    loss2, grad = fastxent.cross_entropy_with_grad(logits, target, **kwargs)
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        ref_loss, ref_grad = reference.cross_entropy_with_grad(logits, target, **kwargs)
    assert_result(loss, ref_loss, dtype, rtol, atol)
    assert_result(loss2, ref_loss, dtype, rtol, atol)
    assert_result(grad, ref_grad, dtype, rtol, atol)
    return loss2, grad


# --------------------------------------------------------------------------------------
# -inf masks and nan: the softmax family
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize(("dtype", "rtol", "atol"), NATIVE_TOLERANCES)
def test_softmax_masked_class(dtype, rtol, atol):
    x = np.array([[1.0, -INF, 2.0, 0.5], [-INF, 0.0, -INF, 0.0]], dtype)
    p = fastxent.softmax(x)
    assert p[0, 1] == 0 and p[1, 0] == 0 and p[1, 2] == 0
    assert_result(p[0, [0, 2, 3]], reference.softmax(x[0, [0, 2, 3]]), dtype, rtol, atol)
    assert_result(p[1], [0.0, 0.5, 0.0, 0.5], dtype, rtol, atol)
    logp = fastxent.log_softmax(x)
    assert logp[0, 1] == -INF and logp[1, 0] == -INF and logp[1, 2] == -INF
    assert_result(logp[1, [1, 3]], [-math.log(2)] * 2, dtype, rtol, atol)
    assert_result(fastxent.logsumexp(x), reference.logsumexp(x), dtype, rtol, atol)


@pytest.mark.parametrize(("dtype", "rtol", "atol"), NATIVE_TOLERANCES)
@pytest.mark.parametrize(
    "bad_row",
    [
        pytest.param([-INF, -INF, -INF], id="all-minus-inf"),
        pytest.param([0.0, NAN, 1.0], id="nan"),
        pytest.param([NAN, NAN, NAN], id="all-nan"),
        pytest.param([0.0, INF, 1.0], id="plus-inf"),
        pytest.param([-INF, NAN, -INF], id="nan-and-minus-inf"),
    ],
)
def test_softmax_family_bad_row_is_nan_others_unaffected(dtype, rtol, atol, bad_row):
    x = np.array([[1.0, 2.0, 3.0], bad_row, [0.0, -INF, 0.0]], dtype)
    good = x[[0, 2]]
    p = fastxent.softmax(x)
    assert np.all(np.isnan(p[1]))
    assert_result(p[[0, 2]], fastxent.softmax(good), dtype, 0, 0)
    logp = fastxent.log_softmax(x)
    assert np.all(np.isnan(logp[1]))
    assert_result(logp[[0, 2]], fastxent.log_softmax(good), dtype, 0, 0)
    lse = fastxent.logsumexp(x)
    # SciPy's and PyTorch's logsumexp: nan with a nan, else +inf with +inf, else -inf.
    has_nan, has_inf = np.isnan(x[1]).any(), (x[1] == INF).any()
    np.testing.assert_array_equal(lse[1], NAN if has_nan else INF if has_inf else -INF)
    assert_result(lse[[0, 2]], fastxent.logsumexp(good), dtype, 0, 0)
    with np.errstate(invalid="ignore"):
        assert_result(p, reference.softmax(x), dtype, rtol, atol)
        assert_result(logp, reference.log_softmax(x), dtype, rtol, atol)
        assert_result(lse, reference.logsumexp(x), dtype, rtol, atol)


@pytest.mark.parametrize(("dtype", "rtol", "atol"), NATIVE_TOLERANCES)
def test_softmax_family_special_values_parallel_size(dtype, rtol, atol, rng):
    x = rng.standard_normal((parallel_rows(1000), 1000)).astype(dtype)  # multi-threaded
    x[::3, ::7] = -INF
    x[5] = -INF
    x[9, 17] = NAN
    x[11, 400] = INF
    with np.errstate(invalid="ignore"):
        expected = (reference.softmax(x), reference.log_softmax(x), reference.logsumexp(x))
    functions = (fastxent.softmax, fastxent.log_softmax, fastxent.logsumexp)
    for function, want in zip(functions, expected, strict=True):
        assert_result(function(x), want, dtype, rtol, atol)


# --------------------------------------------------------------------------------------
# -inf masks and nan: cross-entropy with -inf masks
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize(("dtype", "rtol", "atol"), NATIVE_TOLERANCES)
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_masked_non_target_class(dtype, rtol, atol, reduction):
    logits = np.array([[1.0, -INF, 2.0, 0.5], [0.3, -INF, -INF, 1.2]], dtype)
    labels = np.array([0, 3])
    loss, grad = both(logits, labels, reduction=reduction)
    assert np.all(np.isfinite(loss))
    # Probability 0 and gradient exactly 0 at the masked classes.
    assert grad[0, 1] == 0 and grad[1, 1] == 0 and grad[1, 2] == 0
    assert np.all(np.isfinite(grad))
    # The same loss as without the masked classes.
    row0 = fastxent.cross_entropy_with_grad(logits[:1, [0, 2, 3]], np.array([0]), reduction="none")
    row1 = fastxent.cross_entropy_with_grad(logits[1:, [0, 3]], np.array([1]), reduction="none")
    per_row, grad_none = fastxent.cross_entropy_with_grad(logits, labels, reduction="none")
    np.testing.assert_allclose(per_row, [row0[0][0], row1[0][0]], rtol=rtol, atol=atol)
    np.testing.assert_allclose(grad_none[0, [0, 2, 3]], row0[1][0], rtol=rtol, atol=atol)
    np.testing.assert_allclose(grad_none[1, [0, 3]], row1[1][0], rtol=rtol, atol=atol)


@pytest.mark.parametrize(("dtype", "rtol", "atol"), NATIVE_TOLERANCES)
def test_masked_class_with_zero_weight_target(dtype, rtol, atol):
    # 0 * inf = 0: a target at -inf whose class weight is 0 adds nothing.
    logits = np.array([[1.0, -INF, 2.0], [0.0, 1.0, 2.0]], dtype)
    loss, grad = both(logits, np.array([1, 2]), weight=[1.0, 0.0, 1.0], reduction="none")
    assert loss[0] == 0
    assert np.all(np.isfinite(grad))


@pytest.mark.parametrize(("dtype", "rtol", "atol"), NATIVE_TOLERANCES)
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_target_at_minus_inf(dtype, rtol, atol, reduction):
    logits = np.array([[1.0, -INF, 2.0], [0.0, 1.0, 2.0]], dtype)
    labels = np.array([1, 0])
    loss, grad = both(logits, labels, reduction=reduction)
    if reduction == "none":
        assert loss[0] == INF and np.isfinite(loss[1])
    else:
        assert loss == INF
    assert np.all(np.isfinite(grad))
    # The gradient of the masked-target row is p - onehot: -1 (scaled) at the target.
    scale = 0.5 if reduction == "mean" else 1.0
    p = reference.softmax(np.array([1.0, 2.0]))
    assert_result(grad[0], scale * np.array([p[0], -1.0, p[1]]), dtype, rtol, atol)


@pytest.mark.parametrize(("dtype", "rtol", "atol"), NATIVE_TOLERANCES)
@pytest.mark.parametrize("kind", ["index", "probability"])
def test_all_minus_inf_row_is_nan(dtype, rtol, atol, kind):
    logits = np.array([[1.0, 2.0, 3.0], [-INF, -INF, -INF], [0.0, -INF, 1.0]], dtype)
    if kind == "index":
        target = np.array([2, 0, 2])
    else:
        target = np.array([[0.2, 0.3, 0.5], [1.0, 0.0, 0.0], [0.5, 0.0, 0.5]])
    loss, grad = both(logits, target, reduction="none")
    assert np.isnan(loss[1])
    assert np.all(np.isfinite(loss[[0, 2]]))
    assert np.all(np.isnan(grad[1]))
    assert np.all(np.isfinite(grad[[0, 2]]))
    # Others unaffected: the same as without the bad row.
    good_target = target[[0, 2]]
    good_loss, good_grad = fastxent.cross_entropy_with_grad(
        logits[[0, 2]], good_target, reduction="none"
    )
    np.testing.assert_array_equal(loss[[0, 2]], good_loss)
    np.testing.assert_array_equal(grad[[0, 2]], good_grad)
    for reduction in ("mean", "sum"):
        reduced, _ = both(logits, target, reduction=reduction)
        assert np.isnan(reduced)


@pytest.mark.parametrize(("dtype", "rtol", "atol"), NATIVE_TOLERANCES)
def test_probability_target_zero_mass_on_masked_class(dtype, rtol, atol):
    # 0 log 0 = 0: a masked class without target mass contributes nothing.
    logits = np.array([[1.0, -INF, 2.0], [-INF, 0.0, 0.0]], dtype)
    target = np.array([[0.25, 0.0, 0.75], [0.0, 0.5, 0.5]])
    loss, grad = both(logits, target, reduction="none")
    assert np.all(np.isfinite(loss))
    assert grad[0, 1] == 0 and grad[1, 0] == 0
    assert np.all(np.isfinite(grad))
    assert_result(loss[1], math.log(2), dtype, rtol, atol)
    unmasked = fastxent.cross_entropy(logits[:1, [0, 2]], target[:1, [0, 2]], reduction="none")
    np.testing.assert_allclose(loss[0], unmasked[0], rtol=rtol, atol=atol)


@pytest.mark.parametrize(("dtype", "rtol", "atol"), NATIVE_TOLERANCES)
def test_probability_target_mass_on_masked_class_is_inf(dtype, rtol, atol):
    logits = np.array([[1.0, -INF, 2.0]], dtype)
    loss, grad = both(logits, np.array([[0.5, 0.25, 0.25]]), reduction="none")
    assert loss[0] == INF
    assert np.all(np.isfinite(grad))


@pytest.mark.parametrize(("dtype", "rtol", "atol"), NATIVE_TOLERANCES)
@pytest.mark.parametrize("kind", ["index", "probability"])
def test_label_smoothing_with_masked_class_is_inf(dtype, rtol, atol, kind):
    logits = np.array([[1.0, -INF, 2.0], [0.0, 1.0, 2.0]], dtype)
    if kind == "index":
        target = np.array([0, 0])
    else:
        target = np.array([[1.0, 0.0, 0.0], [1.0, 0.0, 0.0]])
    loss, grad = both(logits, target, label_smoothing=0.1, reduction="none")
    assert loss[0] == INF and np.isfinite(loss[1])
    assert np.all(np.isfinite(grad))


@pytest.mark.parametrize("n_classes", [3, 600], ids=["short", "long"])
def test_label_smoothing_over_a_span_beyond_float32(n_classes):
    # z - m = -4e38 overflows float32, but the smoothed loss (eps / C) * 4e38 does not: the
    # smoothing sum, taken in float32 for speed, falls back to float64 for such rows.
    logits = np.zeros((3, n_classes), np.float32)
    logits[:, 0], logits[:, 1] = 2e38, -2e38
    weight = np.ones(n_classes)
    weight[2] = 0.0
    logits[2, 2] = -INF  # a zero weight at a -inf logit adds 0, not nan
    loss, grad = both(logits, np.zeros(3, np.int64), label_smoothing=0.1, weight=weight)
    assert np.all(np.isfinite(grad))
    # S = 1 (every other exp underflows), so each row's loss is (eps / C) sum_c w_c (m - z_c)
    # = (0.1 / C) (4e38 + (C - 3) 2e38); the mean divides by w_0 = 1 per row.
    exact = 0.1 / n_classes * (4e38 + (n_classes - 3) * 2e38)
    assert np.isfinite(loss) and loss == pytest.approx(exact, rel=1e-6)


# --------------------------------------------------------------------------------------
# -inf masks and nan: cross-entropy with nan and +inf
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize(("dtype", "rtol", "atol"), NATIVE_TOLERANCES)
@pytest.mark.parametrize("kind", ["index", "probability"])
@pytest.mark.parametrize("column", [0, 1, 3], ids=["at-target", "elsewhere", "last"])
@pytest.mark.parametrize("options", [{}, {"label_smoothing": 0.1, "weight": [1, 2, 0, 1]}])
def test_nan_in_row_propagates_to_that_row_only(dtype, rtol, atol, kind, column, options):
    logits = np.array([[0.5, 1.0, -1.0, 2.0], [0.0, 0.3, 0.2, 0.1], [3.0, -INF, 1.0, 0.0]], dtype)
    logits[1, column] = NAN
    if options:
        logits[2, 1] = -1.5  # with label smoothing a masked class would give +inf
    if kind == "index":
        target = np.array([3, 0, 2])
    else:
        target = np.array([[0.0, 0.0, 0.0, 1.0], [1.0, 0.0, 0.0, 0.0], [0.0, 0.0, 1.0, 0.0]])
    loss, grad = both(logits, target, reduction="none", **options)
    assert np.isnan(loss[1])
    assert np.all(np.isnan(grad[1]))
    assert np.all(np.isfinite(loss[[0, 2]]))
    assert np.all(np.isfinite(grad[[0, 2]]))
    for reduction in ("mean", "sum"):
        reduced, reduced_grad = both(logits, target, reduction=reduction, **options)
        assert np.isnan(reduced)
        assert np.all(np.isfinite(reduced_grad[[0, 2]]))


@pytest.mark.parametrize(("dtype", "rtol", "atol"), NATIVE_TOLERANCES)
def test_nan_at_zero_weight_class_still_nan(dtype, rtol, atol):
    # The row has no distribution: nan even though the target's term has weight 0.
    logits = np.array([[NAN, 1.0, 2.0], [0.0, 1.0, 2.0]], dtype)
    loss, _ = both(logits, np.array([0, 1]), weight=[0.0, 1.0, 1.0], reduction="none")
    assert np.isnan(loss[0]) and np.isfinite(loss[1])


@pytest.mark.parametrize(("dtype", "rtol", "atol"), NATIVE_TOLERANCES)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("ignore_index", [-100, 1])
def test_nan_in_ignored_row_does_not_reach_the_loss(dtype, rtol, atol, reduction, ignore_index):
    logits = np.array([[0.5, 1.0, -1.0], [NAN, NAN, 0.0], [3.0, 0.0, INF], [0.0, 1.0, 2.0]], dtype)
    labels = np.array([2, ignore_index, ignore_index, 0])
    loss, grad = both(logits, labels, ignore_index=ignore_index, reduction=reduction)
    assert np.all(np.isfinite(loss))
    np.testing.assert_array_equal(grad[[1, 2]], np.zeros((2, 3)))
    assert np.all(np.isfinite(grad))
    kept_loss, kept_grad = fastxent.cross_entropy_with_grad(
        logits[[0, 3]], labels[[0, 3]], reduction=reduction
    )
    np.testing.assert_allclose(
        loss if reduction != "none" else loss[[0, 3]], kept_loss, rtol=rtol, atol=atol
    )
    np.testing.assert_allclose(grad[[0, 3]], kept_grad, rtol=rtol, atol=atol)


@pytest.mark.parametrize(("dtype", "rtol", "atol"), NATIVE_TOLERANCES)
@pytest.mark.parametrize("kind", ["index", "probability"])
def test_plus_inf_logit_gives_nan_row(dtype, rtol, atol, kind):
    logits = np.array([[INF, 1.0, 2.0], [0.0, 1.0, 2.0]], dtype)
    target = np.array([0, 1]) if kind == "index" else np.array([[1.0, 0, 0], [0, 1.0, 0]])
    loss, grad = both(logits, target, reduction="none")
    assert np.isnan(loss[0]) and np.isfinite(loss[1])
    assert np.all(np.isnan(grad[0])) and np.all(np.isfinite(grad[1]))


@pytest.mark.parametrize(("dtype", "rtol", "atol"), NATIVE_TOLERANCES)
def test_nan_probability_target_gives_nan(dtype, rtol, atol):
    logits = np.array([[0.0, 1.0, 2.0], [0.0, 1.0, 2.0]], dtype)
    target = np.array([[NAN, 0.5, 0.5], [0.0, 0.5, 0.5]])
    loss, grad = both(logits, target, reduction="none")
    assert np.isnan(loss[0]) and np.isfinite(loss[1])
    assert np.all(np.isfinite(grad[1]))


@pytest.mark.parametrize(("dtype", "rtol", "atol"), NATIVE_TOLERANCES)
def test_special_values_parallel_size(dtype, rtol, atol, rng):
    n_rows = parallel_rows(700)  # the multi-threaded kernels
    logits = rng.standard_normal((n_rows, 700)).astype(dtype)
    labels = rng.integers(0, 700, n_rows)
    logits[::4, ::9] = -INF
    logits[3, labels[3]] = -INF  # target masked
    logits[7] = -INF  # whole row masked
    logits[10, 5] = NAN
    logits[12, :] = NAN
    labels[12] = -100  # nan row ignored
    for reduction in REDUCTIONS:
        loss, grad = both(logits, labels, reduction=reduction, label_smoothing=0.0)
        if reduction == "none":
            assert loss[3] == INF and np.isnan(loss[7]) and np.isnan(loss[10])
            assert loss[12] == 0
        assert np.all(grad[12] == 0)
        # masked classes that are not the target have gradient exactly 0
        masked = np.isneginf(logits)
        masked[np.arange(n_rows), labels.clip(0)] = False
        masked[[7, 10, 12]] = False
        assert masked.sum() > 100
        assert np.all(grad[masked] == 0)


# --------------------------------------------------------------------------------------
# Binary cross-entropy: infinite, huge and nan logits, worked by hand
# --------------------------------------------------------------------------------------

#: (x, z, loss, d loss / dx): 0 * inf = 0, and no overflow where the loss is finite.
EDGE_VALUES = [
    (-INF, 0.0, 0.0, 0.0),
    (INF, 1.0, 0.0, 0.0),
    (-INF, 1.0, INF, -1.0),
    (INF, 0.0, INF, 1.0),
    (-INF, 0.5, INF, -0.5),
    (INF, 0.25, INF, 0.75),
    (1e4, 0.0, 1e4, 1.0),
    (1e4, 1.0, 0.0, 0.0),
    (-1e4, 0.0, 0.0, 0.0),
    (-1e4, 1.0, 1e4, -1.0),
    (1e4, 0.3, 0.7e4, 0.7),
    (1e30, 0.0, 1e30, 1.0),
    (1e30, 0.5, 5e29, 0.5),
    (-1e30, 0.25, 2.5e29, -0.25),
    (-1e30, 1.0, 1e30, -1.0),
    (3e38, 0.0, 3e38, 1.0),
    (40.0, 0.0, 40.0, 1.0),  # 40 + log1p(e^-40): the e^-40 is below half an ulp of 40
    (-50.0, 0.0, math.exp(-50.0), math.exp(-50.0)),  # log1p(t) = t to double precision
    (50.0, 1.0, math.exp(-50.0), -math.exp(-50.0)),
    (0.0, 0.5, math.log(2.0), 0.0),
]


@pytest.mark.parametrize(("x", "z", "loss", "grad"), EDGE_VALUES, ids=repr)
@pytest.mark.parametrize(("dtype", "rtol", "atol"), NATIVE_TOLERANCES)
def test_binary_edge_values(
    dtype: Any, rtol: float, atol: float, x: float, z: float, loss: float, grad: float
) -> None:
    logits = np.array([x, 0.0], dtype=dtype)
    target = np.array([z, 1.0], dtype=dtype)
    # float32(x) and float32(z) differ from x and z by < 1e-7 relative: within rtol.
    want_loss = loss
    losses = fastxent.binary_cross_entropy(logits, target, reduction="none")
    losses2, grads = fastxent.binary_cross_entropy_with_grad(logits, target, reduction="none")
    for value in (losses, losses2):
        got = float(value[0])
        if want_loss == 0.0 or math.isinf(want_loss):
            assert got == want_loss, got  # exactly
        else:
            assert math.isfinite(got)
            np.testing.assert_allclose(got, want_loss, rtol=rtol, atol=0.0)
        np.testing.assert_allclose(float(value[1]), math.log(2.0), rtol=rtol)
    got_grad = float(grads[0])
    if grad == 0.0:
        assert got_grad == 0.0, got_grad
    else:
        np.testing.assert_allclose(got_grad, grad, rtol=rtol, atol=0.0)
    np.testing.assert_allclose(float(grads[1]), -0.5, rtol=rtol)


@pytest.mark.parametrize(("dtype", "rtol", "atol"), NATIVE_TOLERANCES)
def test_binary_masked_elements_do_not_spoil_the_mean(dtype: Any, rtol: float, atol: float) -> None:
    logits = np.array([[-INF, 0.0], [INF, 0.0]], dtype=dtype)
    target = np.array([[0.0, 1.0], [1.0, 0.0]], dtype=dtype)
    loss, grad = fastxent.binary_cross_entropy_with_grad(logits, target)
    np.testing.assert_allclose(loss, 2.0 * math.log(2.0) / 4.0, rtol=rtol)
    np.testing.assert_allclose(grad, [[0.0, -0.125], [0.0, 0.125]], rtol=rtol, atol=0.0)
    assert grad[0, 0] == 0.0 and grad[1, 0] == 0.0


@pytest.mark.parametrize(("dtype", "rtol", "atol"), NATIVE_TOLERANCES)
def test_binary_edge_values_with_weights(dtype: Any, rtol: float, atol: float) -> None:
    logits = np.array([-INF, -INF, INF, -INF, 1e30], dtype=dtype)
    target = np.array([0.0, 1.0, 1.0, 1.0, 1.0], dtype=dtype)
    weight = np.array([2.0, 2.0, 2.0, 0.0, 2.0])
    pos_weight = np.array([3.0])
    loss, grad = fastxent.binary_cross_entropy_with_grad(
        logits, target, weight=weight, pos_weight=pos_weight, reduction="none"
    )
    assert loss[0] == 0.0 and grad[0] == 0.0  # masked negative: 0 whatever the weights
    assert loss[1] == INF  # a positive at -inf is impossible
    np.testing.assert_allclose(grad[1], -6.0, rtol=rtol)  # -w * p
    assert loss[2] == 0.0 and grad[2] == 0.0
    assert loss[3] == 0.0 and grad[3] == 0.0  # weight 0: no term at all
    assert loss[4] == 0.0 and grad[4] == 0.0


@pytest.mark.parametrize("z", [0.0, 0.5, 1.0])
@pytest.mark.parametrize(("dtype", "rtol", "atol"), NATIVE_TOLERANCES)
def test_binary_nan_logit_gives_nan(dtype: Any, rtol: float, atol: float, z: float) -> None:
    logits = np.array([[np.nan, 1.0], [0.0, 1.0]], dtype=dtype)
    target = np.array([[z, 1.0], [0.0, 1.0]], dtype=dtype)
    for weight in (None, np.array([0.0, 1.0])):
        losses, grad = fastxent.binary_cross_entropy_with_grad(
            logits, target, weight=weight, reduction="none"
        )
        assert np.isnan(losses[0, 0]) and np.isnan(grad[0, 0])
        assert not np.isnan(losses[1]).any() and not np.isnan(grad[1]).any()
        assert not np.isnan(losses[0, 1]) and not np.isnan(grad[0, 1])
    for reduction in ("mean", "sum"):
        loss, grad = fastxent.binary_cross_entropy_with_grad(logits, target, reduction=reduction)
        assert np.isnan(loss) and np.isnan(grad[0, 0])
        assert np.isnan(fastxent.binary_cross_entropy(logits, target, reduction=reduction))


# --------------------------------------------------------------------------------------
# Distributions: nan probabilities and masked classes, worked by hand
# --------------------------------------------------------------------------------------


def check_losses(
    loss: Any, expected: Any, dtype: Any, rtol: float, atol: float, shape: Any
) -> None:
    """Per-sample losses: an array of ``shape`` and the result dtype, close to ``expected``."""
    assert isinstance(loss, np.ndarray), type(loss)
    assert_result(loss, expected, dtype, rtol, atol, shape=shape)


def test_from_probs_zero_target_mass_is_not_read() -> None:
    # 0 * log(0) = 0 even without the clip, and a nan where q = 0 is not read either.
    probs = np.array([[1.0, 0.0, 0.0], [0.5, 0.5, np.nan], [0.5, np.nan, 0.5]])
    target = np.array([[1.0, 0.0, 0.0], [0.5, 0.5, 0.0], [0.5, 0.0, 0.5]])
    loss = fastxent.cross_entropy_from_probs(probs, target, eps=0.0, reduction="none")
    check_losses(loss, [0.0, math.log(2.0), math.log(2.0)], np.float64, 1e-14, 0.0, (3,))
    assert loss[0] == 0.0
    labels = fastxent.cross_entropy_from_probs(
        probs, np.array([0, 1, 2]), eps=0.0, reduction="none"
    )
    check_losses(labels, [0.0, math.log(2.0), math.log(2.0)], np.float64, 1e-14, 0.0, (3,))


@pytest.mark.parametrize("target_kind", ["index", "probability"])
def test_from_probs_nan_probability_gives_nan(target_kind: str) -> None:
    probs = np.array([[np.nan, 0.5, 0.5], [0.2, 0.3, 0.5]])
    target = np.array([0, 1]) if target_kind == "index" else np.eye(3)[[0, 1]]
    loss = fastxent.cross_entropy_from_probs(probs, target, reduction="none")
    assert np.isnan(loss[0]) and not np.isnan(loss[1])
    assert np.isnan(fastxent.cross_entropy_from_probs(probs, target))


def test_entropy_nan_gives_nan() -> None:
    entropy = fastxent.entropy(np.array([[0.5, np.nan], [0.5, 0.5]]))
    assert np.isnan(entropy[0]) and entropy[1] == pytest.approx(math.log(2.0), rel=1e-15)


def test_kl_with_masked_classes_worked() -> None:
    # p = softmax(0, ln 3, -inf) = (1/4, 3/4, 0); q = (1/2, 1/2, 0):
    # KL = 1/2 ln(2) + 1/2 ln(2/3) = 1/2 ln(4/3), finite although a logit is -inf.
    logits = np.array([[0.0, math.log(3.0), -np.inf], [0.0, 0.0, -np.inf]])
    q = np.array([[0.5, 0.5, 0.0], [0.5, 0.5, 0.0]])
    kl = fastxent.kl_divergence(logits, q, reduction="none")
    check_losses(kl, [0.5 * math.log(4.0 / 3.0), 0.0], np.float64, 1e-14, 1e-16, (2,))
    assert kl[1] == 0.0
    for dtype in (np.float32, np.float64):
        kl = fastxent.kl_divergence(logits.astype(dtype), q.astype(dtype), reduction="sum")
        assert np.isfinite(kl)


def test_kl_target_mass_on_a_masked_class_is_infinite() -> None:
    logits = np.array([[0.0, 0.0, -np.inf], [0.0, 1.0, 2.0]])
    q = np.array([[0.5, 0.25, 0.25], [0.2, 0.3, 0.5]])
    kl = fastxent.kl_divergence(logits, q, reduction="none")
    assert np.isposinf(kl[0]) and np.isfinite(kl[1])
    labels = fastxent.kl_divergence(logits, np.array([2, 0]), reduction="none")
    assert np.isposinf(labels[0]) and np.isfinite(labels[1])


def test_kl_nan_logit_gives_nan_even_without_target_mass() -> None:
    logits = np.array([[np.nan, 0.0, 0.0], [0.0, 0.0, 0.0]])
    q = np.array([[0.0, 0.5, 0.5], [0.0, 0.5, 0.5]])
    kl = fastxent.kl_divergence(logits, q, reduction="none")
    assert np.isnan(kl[0])
    check_losses(kl[1:], [math.log(1.5)], np.float64, 1e-14, 0.0, (1,))  # 2 * 1/2 ln(3/2)
    assert np.isnan(fastxent.kl_divergence(logits, q))
    all_masked = np.array([[-np.inf, -np.inf, -np.inf]])
    assert np.isnan(fastxent.kl_divergence(all_masked, q[:1], reduction="none")[0])
