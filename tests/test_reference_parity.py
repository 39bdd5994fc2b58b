"""Parity with ``fastxent.reference``, the executable specification: every public function.

The home of the comparisons of fastxent with its NumPy reference over the input space,
drawn by Hypothesis (``strategies.py``): shapes (0-3 dimensions, sides 0..12, at least one
class), dtypes (float16/32/64 in native and big-endian byte order), memory layouts (C and
Fortran order, permuted axes, slices with positive and negative steps, unaligned buffers,
read-only arrays), integer target dtypes with ``ignore_index`` rows, probability targets,
the options (``weight``, ``label_smoothing``, ``reduction``, ``base``, ``axis``, ``out``)
and special values (``inf``, ``-inf``, ``nan``, huge, subnormal), each checked against the
reference computed on a native, C-ordered copy of the same numbers:

- same result dtype, shape and ``nan`` positions, infinities equal, finite values within
  the dtype's tolerance (float32: rtol 1e-5, atol 1e-6; float64: rtol 1e-12, atol 1e-13;
  float16 is computed in float32). The absolute tolerance grows with the magnitude of the
  logits (the loss of a row is a difference of numbers that large) and with the weights
  that multiply each row's terms;
- invariants: softmax rows without ``nan``/``inf`` sum to 1; losses of finite rows are >= 0;
- the caller's arrays are never modified (only an explicit ``out=``).

The same problems are also stacked until they take the multi-threaded kernels, and finite
float64 problems are held to tighter tolerances (the last section).

Huge logits are at most 1e30 (float32) or 1e300 (float64): far beyond ``exp``'s range, yet a
sum of a few thousand such losses still fits the dtype. The gradient properties stay below
1e4: the reference forms probabilities as ``exp(log_softmax)``, which is exact only while
``ulp(logit) << 1`` in float64, so it cannot be the oracle for gradients at 1e30.

Examples by hand and the kernels' code paths (tiles, chains, in place) are compared with the
reference in the files of each function; special values in test_special_values.py.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
from conftest import assert_unchanged, result_dtype, snapshot
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from strategies import (
    FUZZ,
    PROPERTIES,
    arranged,
    binary_problems,
    distribution_problems,
    gradient_out,
    index_problems,
    logit_arrays,
    logits_strategy,
    probability_problems,
    problems,
)

import fastxent
from fastxent import reference
from fastxent._tuning import THRESHOLDS

#: Tolerances (rtol, atol, unit roundoff) by the dtype a result is computed in.
TOLERANCES = {
    np.dtype(np.float32): (1e-5, 1e-6, float(np.finfo(np.float32).eps)),
    np.dtype(np.float64): (1e-12, 1e-13, float(np.finfo(np.float64).eps)),
}


# --------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------


def native(array: Any) -> Any:
    """A C-ordered copy of ``array`` in native byte order (what the reference gets)."""
    if not isinstance(array, np.ndarray):
        return array
    return np.array(array, dtype=array.dtype.newbyteorder("="), order="C")


def max_abs_finite(*arrays: Any) -> float:
    """Largest finite magnitude in ``arrays`` (0 when there is none)."""
    best = 0.0
    for array in arrays:
        values = np.abs(np.asarray(array, dtype=np.float64))
        values = values[np.isfinite(values)]
        if values.size:
            best = max(best, float(values.max()))
    return best


def log_of_base(base: Any) -> float:
    return 1.0 if base is None else abs(math.log(float(base)))


def call_reference(function: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """The reference on its own terms: float64 arithmetic that may overflow or meet nan."""
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return function(*args, **kwargs)


def assert_close(
    actual: Any, expected: Any, rtol: float, atol: float, what: str, scalar: bool = False
) -> None:
    """Same dtype and shape, ``nan`` where the reference has ``nan``, values within tolerance.

    With ``scalar`` (a ``"mean"`` or ``"sum"`` loss) the result must be a NumPy scalar of the
    result dtype, not a 0-d array or a Python float.
    """
    expected_array = np.asarray(expected)
    if scalar:
        assert type(actual) is expected_array.dtype.type, (
            f"{what}: {type(actual)!r} is not a NumPy {expected_array.dtype} scalar"
        )
    else:  # per-sample results: an array (a 1-D input's single sample may be a 0-d one)
        assert isinstance(actual, (np.ndarray, np.generic)), f"{what}: {type(actual)!r}"
    actual_array = np.asarray(actual)
    assert actual_array.dtype == expected_array.dtype, (
        f"{what}: dtype {actual_array.dtype} != {expected_array.dtype}"
    )
    assert actual_array.shape == expected_array.shape, (
        f"{what}: shape {actual_array.shape} != {expected_array.shape}"
    )
    got = actual_array.astype(np.float64)
    want = expected_array.astype(np.float64)
    assert np.array_equal(np.isnan(got), np.isnan(want)), (
        f"{what}: nan positions differ\n got {got}\nwant {want}"
    )
    np.testing.assert_allclose(got, want, rtol=rtol, atol=atol, err_msg=what)


def reduced_atol(
    unit: float, mass: np.ndarray, reduction: str, denominator: float, log_base: float
) -> float:
    """Absolute tolerance of a loss: ``unit`` per unit of coefficient mass of each row."""
    mass = np.nan_to_num(np.asarray(mass, dtype=np.float64), nan=0.0, posinf=0.0)
    if reduction == "none":
        total = float(mass.max(initial=0.0))
    else:
        total = float(mass.sum())
        if reduction == "mean":
            total = total / denominator if denominator > 0 else 0.0
    return unit * max(total, 1.0) / log_base


def rows_along(array: np.ndarray, axis: int) -> np.ndarray:
    """``array`` with ``axis`` moved last, as 2-D rows."""
    moved = np.moveaxis(array, axis, -1)
    return moved.reshape(-1, moved.shape[-1])


# --------------------------------------------------------------------------------------
# Checks of one call against the reference
# --------------------------------------------------------------------------------------


def check_softmax_family(x: np.ndarray, values: np.ndarray, axis: int, kwargs: dict) -> None:
    rtol, atol, eps = TOLERANCES[result_dtype(x.dtype)]
    magnitude_atol = atol + 8 * eps * max_abs_finite(values)
    saved = snapshot(x)
    for name, tolerance in (
        ("softmax", atol),
        ("log_softmax", magnitude_atol),
        ("logsumexp", magnitude_atol),
    ):
        actual = getattr(fastxent, name)(x, **kwargs)
        expected = call_reference(getattr(reference, name), values, axis=axis)
        assert_close(actual, expected, rtol, tolerance, name)
        if name == "softmax":
            rows = rows_along(actual.astype(np.float64), axis)
            finite = np.all(np.isfinite(rows_along(values.astype(np.float64), axis)), axis=1)
            n_classes = values.shape[axis]
            assert np.all((rows[~np.isnan(rows)] >= 0) & (rows[~np.isnan(rows)] <= 1))
            sums = rows[finite].sum(axis=1)
            assert np.all(np.abs(sums - 1) <= 4 * n_classes * eps + atol), sums
    assert_unchanged(saved)


def _index_mass(
    labels: np.ndarray, n_classes: int, kwargs: dict
) -> tuple[np.ndarray, float, np.ndarray]:
    """Per-sample coefficient mass ``A_i``, the mean's denominator and the counted rows."""
    weight = kwargs.get("weight")
    w = np.ones(n_classes) if weight is None else np.asarray(weight, dtype=np.float64)
    eps = float(kwargs.get("label_smoothing", 0.0))
    y = labels.astype(np.int64).reshape(-1)
    counted = y != kwargs.get("ignore_index", -100)
    y = np.where(counted, y, 0)
    mass = np.where(counted, (1 - eps) * w[y] + eps / n_classes * w.sum(), 0.0)
    return mass, float(np.where(counted, w[y], 0.0).sum()), counted


def _probability_mass(target: np.ndarray, axis: int, kwargs: dict) -> np.ndarray:
    n_classes = target.shape[axis]
    weight = kwargs.get("weight")
    w = np.ones(n_classes) if weight is None else np.asarray(weight, dtype=np.float64)
    eps = float(kwargs.get("label_smoothing", 0.0))
    q = (1 - eps) * rows_along(target.astype(np.float64), axis) + eps / n_classes
    return np.nansum(q * w, axis=1)


def check_cross_entropy(
    problem: dict[str, Any], with_grad: bool, out_choice: tuple[str, np.ndarray | None]
) -> None:
    """``cross_entropy`` (or ``_with_grad``) of ``problem`` against the reference."""
    x, values, axis, target = problem["x"], problem["values"], problem["axis"], problem["target"]
    kwargs = dict(problem["kwargs"])
    dtype = result_dtype(x.dtype)
    rtol, atol, eps = TOLERANCES[dtype]
    n_classes = values.shape[axis]
    reduction = kwargs.get("reduction", "mean")
    log_base = log_of_base(kwargs.get("base"))
    reference_kwargs = {key: native(value) for key, value in kwargs.items()}
    reference_kwargs["axis"] = axis
    ignore = kwargs.get("ignore_index", -100)
    if target.dtype.kind in "iu":
        mass, denominator, counted = _index_mass(native(target), n_classes, kwargs)
        finite_rows = counted & np.all(np.isfinite(rows_along(values, axis)), axis=1)
    else:
        mass = _probability_mass(native(target), axis, kwargs)
        denominator = float(mass.size)
        finite_rows = np.all(np.isfinite(rows_along(values, axis)), axis=1) & np.all(
            np.isfinite(rows_along(target.astype(np.float64), axis)), axis=1
        )
    loss_atol = reduced_atol(
        atol + 8 * eps * max_abs_finite(values), mass, reduction, denominator, log_base
    )
    out_name, out = out_choice
    saved = snapshot(x, target, kwargs.get("weight"))
    beyond_int64 = not -(2**63) <= ignore < 2**63
    try:
        if with_grad:
            loss, grad = fastxent.cross_entropy_with_grad(
                x, target, **kwargs, **({} if out is None else {"out": out})
            )
        else:
            loss = fastxent.cross_entropy(x, target, **kwargs)
    except (TypeError, ValueError):
        if beyond_int64:
            return  # an ignore_index no int64 label can equal: an error is an answer too
        raise
    expected_loss, expected_grad = call_reference(
        reference.cross_entropy_with_grad, values, native(target), **reference_kwargs
    )
    assert_close(loss, expected_loss, rtol, loss_atol, "loss", reduction != "none")
    if reduction == "none" and (kwargs.get("base") is None or float(kwargs["base"]) > 1):
        assert np.all(np.asarray(loss, dtype=np.float64).reshape(-1)[finite_rows] >= 0), loss
    if with_grad:
        scale = 1.0 / log_base
        if reduction == "mean":
            scale = scale / denominator if denominator > 0 else 0.0
        max_mass = float(np.nan_to_num(mass, nan=0.0).max(initial=0.0))
        grad_atol = (atol + 8 * eps) * max(max_mass, 1.0) * scale
        if out is not None:
            assert grad is out, f"out={out_name}: the gradient is not returned in out"
        assert_close(grad, expected_grad, rtol, grad_atol, "gradient")
    if out is x:
        saved = [entry for entry in saved if entry[0] is not x]
    assert_unchanged(saved)


# --------------------------------------------------------------------------------------
# Properties: valid input agrees with the reference
# --------------------------------------------------------------------------------------


@FUZZ
@given(case=logit_arrays())
def test_softmax_family_matches_reference(case):
    x, values, axis, kwargs = case
    check_softmax_family(x, values, axis, kwargs)


@FUZZ
@given(problem=index_problems())
def test_cross_entropy_index_targets(problem):
    check_cross_entropy(problem, with_grad=False, out_choice=("none", None))


@FUZZ
@given(problem=index_problems(huge=False), data=st.data())
def test_cross_entropy_with_grad_index_targets(problem, data):
    out_choice = gradient_out(data.draw, problem["x"])
    check_cross_entropy(problem, with_grad=True, out_choice=out_choice)


@FUZZ
@given(problem=probability_problems(huge=False), data=st.data())
def test_cross_entropy_probability_targets(problem, data):
    with_grad = data.draw(st.booleans())
    out_choice = gradient_out(data.draw, problem["x"]) if with_grad else ("none", None)
    check_cross_entropy(problem, with_grad=with_grad, out_choice=out_choice)


@FUZZ
@given(problem=binary_problems(), data=st.data())
def test_binary_cross_entropy(problem, data):
    x, values, target = problem["x"], problem["values"], problem["target"]
    kwargs = problem["kwargs"]
    dtype = result_dtype(x.dtype)
    rtol, atol, eps = TOLERANCES[dtype]
    reduction = kwargs.get("reduction", "mean")
    log_base = log_of_base(kwargs.get("base"))
    z = native(target).astype(np.float64)
    w = np.asarray(kwargs.get("weight", 1.0), dtype=np.float64)
    pw = np.asarray(kwargs.get("pos_weight", 1.0), dtype=np.float64)
    mass = np.broadcast_to(w * ((1 - z) + pw * z), values.shape).reshape(-1)
    loss_atol = reduced_atol(
        atol + 8 * eps * max_abs_finite(values), mass, reduction, float(values.size), log_base
    )
    reference_kwargs = {key: native(value) for key, value in kwargs.items()}
    with_grad = data.draw(st.booleans())
    out_name, out = gradient_out(data.draw, x) if with_grad else ("none", None)
    saved = snapshot(x, target, *kwargs.values())
    if with_grad:
        extra = {} if out is None else {"out": out}
        loss, grad = fastxent.binary_cross_entropy_with_grad(x, target, **kwargs, **extra)
    else:
        loss = fastxent.binary_cross_entropy(x, target, **kwargs)
    expected_loss, expected_grad = call_reference(
        reference.binary_cross_entropy_with_grad, values, native(target), **reference_kwargs
    )
    assert_close(loss, expected_loss, rtol, loss_atol, "binary loss", reduction != "none")
    if reduction == "none" and (kwargs.get("base") is None or float(kwargs["base"]) > 1):
        # Loss >= 0 where logits and targets are numbers (a nan target gives nan, checked
        # against the reference above).
        finite = (np.isfinite(values) & ~np.isnan(native(target).astype(np.float64))).reshape(-1)
        assert np.all(np.asarray(loss, dtype=np.float64).reshape(-1)[finite] >= 0), loss
    if with_grad:
        scale = (1.0 / values.size if reduction == "mean" and values.size else 1.0) / log_base
        max_mass = float(np.nan_to_num(mass, nan=0.0, posinf=0.0).max(initial=0.0))
        grad_atol = (atol + 8 * eps) * max(max_mass, 1.0) * scale
        if out is not None:
            assert grad is out, f"out={out_name}: the gradient is not returned in out"
        assert_close(grad, expected_grad, rtol, grad_atol, "binary gradient")
    if out is x:
        saved = [entry for entry in saved if entry[0] is not x]
    assert_unchanged(saved)


def check_distribution(problem: dict[str, Any]) -> None:
    name, x, values, axis = problem["name"], problem["x"], problem["values"], problem["axis"]
    target, kwargs = problem["target"], problem["kwargs"]
    dtype = result_dtype(x.dtype)
    rtol, atol, eps = TOLERANCES[dtype]
    reduction = kwargs.get("reduction", "none" if name == "entropy" else "mean")
    log_base = log_of_base(kwargs.get("base"))
    rows = rows_along(values.astype(np.float64), axis)
    if target is None:
        q = rows
    elif target.dtype.kind in "iu":
        q = np.eye(rows.shape[1])[native(target).astype(np.int64).reshape(-1)]
    else:
        q = rows_along(native(target).astype(np.float64), axis)
    with np.errstate(all="ignore"):
        if name == "kl_divergence":
            magnitude = max_abs_finite(values, np.log(q))
        else:
            clip = float(kwargs.get("eps", 1e-7)) if name != "entropy" else 0.0
            magnitude = max_abs_finite(np.log(np.clip(rows, clip, None)), np.log(q))
    mass = np.nansum(np.abs(q), axis=1)
    loss_atol = reduced_atol(
        atol + 8 * eps * (1 + magnitude), mass, reduction, float(rows.shape[0]), log_base
    )
    args = (x,) if target is None else (x, target)
    reference_args = tuple(native(arg) for arg in args)
    reference_kwargs = {key: native(value) for key, value in kwargs.items()}
    reference_kwargs["axis"] = axis
    saved = snapshot(*args)
    loss = getattr(fastxent, name)(*args, **kwargs)
    expected = call_reference(getattr(reference, name), *reference_args, **reference_kwargs)
    assert_close(loss, expected, rtol, loss_atol, name, reduction != "none")
    assert_unchanged(saved)


@FUZZ
@given(problem=distribution_problems())
def test_entropy_from_probs_and_kl_divergence(problem):
    check_distribution(problem)


# --------------------------------------------------------------------------------------
# The multi-threaded kernels: the same problems, tiled beyond their threshold
# --------------------------------------------------------------------------------------


@settings(FUZZ, max_examples=100)
@given(data=st.data())
def test_parallel_kernels_match_reference(data):
    """2-D problems stacked along the batch axis until they take the multi-threaded kernels."""
    kind = data.draw(st.sampled_from(["softmax", "index", "index-grad", "probability", "kl"]))
    if kind == "softmax":
        x, values, axis, kwargs = data.draw(logit_arrays(min_dims=2, max_dims=2))
        problem = {"x": x, "values": values, "axis": axis, "target": None, "kwargs": kwargs}
    elif kind in ("index", "index-grad"):
        problem = data.draw(index_problems(huge=kind == "index", min_dims=2, max_dims=2))
    elif kind == "probability":
        problem = data.draw(probability_problems(huge=False, min_dims=2, max_dims=2))
    else:
        problem = data.draw(distribution_problems(min_dims=2, max_dims=2))
    values, axis, target = problem["values"], problem["axis"], problem["target"]
    batch_axis = 1 - axis
    copies = -(-THRESHOLDS.parallel_min_elements // max(values.size, 1)) + 1 if values.size else 1
    values = np.concatenate([values] * copies, axis=batch_axis)
    problem["values"] = values
    problem["x"] = data.draw(arranged(values.astype(problem["x"].dtype)))
    if target is not None:
        target_axis = batch_axis if target.ndim == 2 else 0
        tiled = np.concatenate([native(target)] * copies, axis=target_axis)
        problem["target"] = data.draw(arranged(tiled.astype(target.dtype)))
    if kind == "softmax":
        check_softmax_family(problem["x"], values, axis, problem["kwargs"])
    elif kind == "kl":
        check_distribution(problem)
    else:
        with_grad = kind == "index-grad" or (kind == "probability" and data.draw(st.booleans()))
        out_choice = gradient_out(data.draw, problem["x"]) if with_grad else ("none", None)
        check_cross_entropy(problem, with_grad=with_grad, out_choice=out_choice)


# --------------------------------------------------------------------------------------
# Finite float64 problems, to the tighter tolerances of float64
# --------------------------------------------------------------------------------------


@PROPERTIES
@given(logits_strategy(np.float64))
def test_softmax_family_matches_reference_finite_float64(x):
    np.testing.assert_allclose(fastxent.softmax(x), reference.softmax(x), rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(
        fastxent.log_softmax(x), reference.log_softmax(x), rtol=1e-12, atol=1e-13
    )
    np.testing.assert_allclose(
        fastxent.logsumexp(x), reference.logsumexp(x), rtol=1e-13, atol=1e-13
    )
    # exp(log_softmax) is softmax
    np.testing.assert_allclose(
        np.exp(fastxent.log_softmax(x)), fastxent.softmax(x), rtol=1e-12, atol=1e-15
    )


@PROPERTIES
@given(st.data())
def test_cross_entropy_matches_reference_finite_float64(data):
    x, labels, kwargs = data.draw(problems())
    kind = data.draw(st.sampled_from(["index", "probability"]))
    if kind == "index":
        target = labels
        if data.draw(st.booleans()):
            kwargs["ignore_index"] = data.draw(st.integers(0, x.shape[1] - 1))
    else:
        target = data.draw(hnp.arrays(np.float64, x.shape, elements=st.floats(0.0, 1.0)))
    kwargs["reduction"] = data.draw(st.sampled_from(["mean", "sum", "none"]))
    kwargs["base"] = data.draw(st.sampled_from([None, 2, 10]))
    loss, grad = fastxent.cross_entropy_with_grad(x, target, **kwargs)
    expected_loss, expected_grad = reference.cross_entropy_with_grad(x, target, **kwargs)
    np.testing.assert_allclose(loss, expected_loss, rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(grad, expected_grad, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(
        fastxent.cross_entropy(x, target, **kwargs), expected_loss, rtol=1e-12, atol=1e-13
    )
