"""Conformance with NumPy, SciPy and PyTorch.

Every expected number here comes from SciPy, NumPy, PyTorch or a hand-worked formula, never
from fastxent itself; ``fastxent.reference`` is held to the same expectations as the kernels.

1. ``softmax``, ``log_softmax`` and ``logsumexp`` take ``axis`` as an int, a tuple of ints or
   ``None`` with ``scipy.special``'s meaning (``logsumexp`` also ``keepdims``); bad axes raise.
2. Empty axes and 0-d input: softmax of nothing is nothing, ``logsumexp`` of nothing is
   ``-inf``, and a 0-d input is one class.
3. Class weights of any sign, in ``cross_entropy`` (and its gradient) and in
   ``binary_cross_entropy``, against ``torch.nn.functional`` and autograd, down to the
   ``nan``/``inf`` pattern of PyTorch's ``"mean"`` over weights that sum to exactly 0.
4. ``fastxent.reference`` is imported lazily, on first use; ``import fastxent`` loads none of
   the peers.
5. Error messages name positions as plain integers and say how targets are read.

SciPy comes with the ``test`` extra, not with fastxent: without it the SciPy comparisons
skip, unless ``FASTXENT_REQUIRE_TORCH=1`` (CI: the oracles must be there) makes that a
failure. PyTorch is imported inside the tests through ``conftest.import_torch``.

Measured peer behaviour (SciPy 1.17, PyTorch 2.13) that the tests rely on or leave alone:

- ``scipy.special.logsumexp(x, axis=())`` is ``x`` itself; ``softmax(x, axis=())`` is all
  ones and ``log_softmax(x, axis=())`` all zeros (each element is its own group).
- A group that is entirely ``-inf``: softmax and log_softmax give ``nan`` in SciPy and
  PyTorch, logsumexp ``-inf`` (``log 0``) in both. A group holding ``nan``: ``nan``
  throughout. A group holding ``+inf``: logsumexp ``+inf`` and softmax ``nan`` in both, but
  log_softmax differs (SciPy ``-inf`` at the finite entries and ``nan`` at the ``+inf``,
  PyTorch ``nan`` throughout): that one is not compared.
- Empty axes: ``logsumexp`` gives ``-inf`` in both (SciPy fails with an IndexError for a
  tuple axis or ``None`` over a zero-size array of 2 or more dimensions, PyTorch does not);
  ``softmax`` over an empty axis raises in SciPy but returns an empty array in PyTorch,
  which fastxent follows.
- 0-d input: both give softmax 1, log_softmax 0 and logsumexp the value, in the input's
  dtype, for ``axis`` -1, 0 and ``None`` (PyTorch also for ``()``); ``nan`` and ``+-inf``
  give softmax and log_softmax ``nan``, logsumexp the value. (SciPy's ``logsumexp`` of a 0-d
  array with ``keepdims=True`` or ``axis=()`` has shape ``(1,)``, PyTorch's and NumPy's
  shape ``()``: not compared.)
"""

from __future__ import annotations

import ast
import importlib
import math
import os
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
from conftest import (
    ALL_TOLERANCES,
    NATIVE_TOLERANCES,
    REQUIRE_TORCH_ENV,
    assert_result,
    import_torch,
    make_logits,
    make_probabilities,
    result_dtype,
)

import fastxent
from fastxent import reference

REPO = Path(__file__).resolve().parents[1]
INF = np.inf
NAN = np.nan
REDUCTIONS = ["mean", "sum", "none"]
SMOOTHINGS = [pytest.param(0.0, id="eps0"), pytest.param(0.1, id="eps0.1")]
IMPLEMENTATIONS = [pytest.param(fastxent, id="fastxent"), pytest.param(reference, id="reference")]


def import_scipy_special() -> ModuleType:
    """``scipy.special``; skip without SciPy, unless the peers are required (CI)."""
    try:
        return importlib.import_module("scipy.special")
    except ImportError as error:
        reason = f"SciPy cannot be imported ({type(error).__name__}: {error})"
    if os.environ.get(REQUIRE_TORCH_ENV) == "1":
        pytest.fail(
            f'{reason}, but {REQUIRE_TORCH_ENV}=1 requires the oracles: pip install -e ".[test]"',
            pytrace=False,
        )
    pytest.skip(reason)


def call(module, name, *args, **kwargs):
    """``module.name(*args, **kwargs)``; the NumPy reference may warn on ``inf``/``nan``
    arithmetic, which is not part of its specification (the kernels must not warn)."""
    function = getattr(module, name)
    if module is reference:
        with np.errstate(all="ignore"):
            return function(*args, **kwargs)
    return function(*args, **kwargs)


def assert_same_values(actual, expected, dtype, rtol, atol, scaled_atol=False):
    """``actual`` has ``dtype``, ``expected``'s shape, the same ``nan``/``+inf``/``-inf``
    positions and, on the finite entries, close values.

    With ``scaled_atol`` the absolute tolerance is relative to ``max |expected|`` over the
    finite entries (a ``"mean"`` gradient is divided by the batch's total weight).
    """
    assert np.asarray(actual).dtype == np.dtype(dtype), f"{np.asarray(actual).dtype} != {dtype}"
    actual = np.asarray(actual, dtype=np.float64)
    expected = np.asarray(expected, dtype=np.float64)
    assert actual.shape == expected.shape, f"shape {actual.shape} != {expected.shape}"
    np.testing.assert_array_equal(np.isnan(actual), np.isnan(expected), err_msg="nan positions")
    np.testing.assert_array_equal(
        np.isposinf(actual), np.isposinf(expected), err_msg="+inf positions"
    )
    np.testing.assert_array_equal(
        np.isneginf(actual), np.isneginf(expected), err_msg="-inf positions"
    )
    finite = np.isfinite(expected)
    if scaled_atol:
        scale = float(np.max(np.abs(expected[finite]), initial=0.0))
        atol = atol * (scale if scale > 0 else 1.0)
    np.testing.assert_allclose(actual[finite], expected[finite], rtol=rtol, atol=atol)


# ======================================================================================
# 1. axis as an int, a tuple of ints or None; keepdims
# ======================================================================================

#: ``(shape, axis)``: every rank from 1 to 4, single axes, adjacent and non-adjacent tuples
#: in any order, negative axes, the empty tuple and None.
AXIS_CASES = [
    ((7,), 0),
    ((7,), (0,)),
    ((7,), (-1,)),
    ((7,), ()),
    ((7,), None),
    ((5, 7), 0),
    ((5, 7), -1),
    ((5, 7), (0, 1)),
    ((5, 7), (1, 0)),
    ((5, 7), (-1, 0)),
    ((5, 7), ()),
    ((5, 7), None),
    ((3, 4, 5), 1),
    ((3, 4, 5), (-2,)),
    ((3, 4, 5), (0, 2)),
    ((3, 4, 5), (2, 0)),
    ((3, 4, 5), (-1, -3)),
    ((3, 4, 5), (0, 1)),
    ((3, 4, 5), (1, 2)),
    ((3, 4, 5), (2, 0, 1)),
    ((3, 4, 5), (-1, 0)),
    ((3, 4, 5), ()),
    ((3, 4, 5), None),
    ((2, 3, 4, 5), -2),
    ((2, 3, 4, 5), (0, 2)),
    ((2, 3, 4, 5), (1, 3)),
    ((2, 3, 4, 5), (0, 3)),
    ((2, 3, 4, 5), (0, -1)),
    ((2, 3, 4, 5), (1, 2)),
    ((2, 3, 4, 5), (3, 1, 0)),
    ((2, 3, 4, 5), (0, 1, 2, 3)),
    ((2, 3, 4, 5), ()),
    ((2, 3, 4, 5), None),
]
AXIS_PARAMS = [pytest.param(shape, axis, id=f"{shape}-axis{axis}") for shape, axis in AXIS_CASES]

#: ``(function name, keyword arguments)``: the three functions, logsumexp both ways.
FUNCTIONS = [
    pytest.param("softmax", {}, id="softmax"),
    pytest.param("log_softmax", {}, id="log_softmax"),
    pytest.param("logsumexp", {}, id="logsumexp"),
    pytest.param("logsumexp", {"keepdims": True}, id="logsumexp-keepdims"),
    pytest.param("logsumexp", {"keepdims": False}, id="logsumexp-no-keepdims"),
]


def scipy_expected(special, name, x, axis, **kwargs):
    """SciPy's answer in float64 for ``x`` (any float dtype)."""
    with np.errstate(all="ignore"):
        return getattr(special, name)(x.astype(np.float64), axis=axis, **kwargs)


@pytest.mark.parametrize("module", IMPLEMENTATIONS)
@pytest.mark.parametrize(("name", "kwargs"), FUNCTIONS)
@pytest.mark.parametrize(("shape", "axis"), AXIS_PARAMS)
@pytest.mark.parametrize(("dtype", "rtol", "atol"), ALL_TOLERANCES)
def test_axes_match_scipy(dtype, rtol, atol, shape, axis, name, kwargs, module, rng):
    special = import_scipy_special()
    x = make_logits(rng, shape, dtype)
    expected = scipy_expected(special, name, x, axis, **kwargs)
    actual = call(module, name, x, axis=axis, **kwargs)
    assert_result(actual, expected, result_dtype(dtype), rtol, atol)


@pytest.mark.parametrize("module", IMPLEMENTATIONS)
@pytest.mark.parametrize(("name", "kwargs"), FUNCTIONS)
@pytest.mark.parametrize("axis", [(0, 2), (2, 0), (1,), (-1, 1)])
@pytest.mark.parametrize(("dtype", "rtol", "atol"), NATIVE_TOLERANCES)
def test_axes_non_contiguous_input(dtype, rtol, atol, axis, name, kwargs, module, rng):
    special = import_scipy_special()
    x = make_logits(rng, (6, 9, 8), dtype)[::2, 1:, ::-1].transpose(2, 0, 1)
    assert not x.flags.c_contiguous and not x.flags.f_contiguous
    expected = scipy_expected(special, name, x, axis, **kwargs)
    assert_result(call(module, name, x, axis=axis, **kwargs), expected, dtype, rtol, atol)


@pytest.mark.parametrize("module", IMPLEMENTATIONS)
@pytest.mark.parametrize(("name", "kwargs"), FUNCTIONS)
@pytest.mark.parametrize("axis", [(0, 2), (2, 0), (-1, 1), None])
@pytest.mark.parametrize(("dtype", "rtol", "atol"), NATIVE_TOLERANCES)
def test_axes_large_parallel(dtype, rtol, atol, axis, name, kwargs, module, rng):
    # 163840 elements (> 2**17): the multi-threaded kernels run, whatever their threshold.
    special = import_scipy_special()
    x = make_logits(rng, (64, 40, 64), dtype)
    assert x.size > 2**17
    expected = scipy_expected(special, name, x, axis, **kwargs)
    assert_result(call(module, name, x, axis=axis, **kwargs), expected, dtype, rtol, atol)


@pytest.mark.parametrize("module", IMPLEMENTATIONS)
@pytest.mark.parametrize("keepdims", [False, True])
@pytest.mark.parametrize(
    ("shape", "dims"),
    [
        ((3, 4, 5), (0, 2)),
        ((3, 4, 5), (2, 0)),
        ((3, 4, 5), (-1, 0)),
        ((3, 4, 5), (1,)),
        ((3, 4, 5), (0, 1, 2)),
        ((2, 3, 4, 5), (1, 3)),
        ((2, 3, 4, 5), (3, 0, 2)),
        ((64, 40, 64), (0, 2)),
    ],
)
@pytest.mark.parametrize(("dtype", "rtol", "atol"), NATIVE_TOLERANCES)
def test_logsumexp_matches_torch(dtype, rtol, atol, shape, dims, keepdims, module, rng):
    torch = import_torch()
    x = make_logits(rng, shape, dtype)
    expected = torch.logsumexp(torch.from_numpy(x.astype(np.float64)), dim=dims, keepdim=keepdims)
    actual = call(module, "logsumexp", x, axis=dims, keepdims=keepdims)
    assert_result(actual, expected.numpy(), dtype, rtol, atol)


@pytest.mark.parametrize("module", IMPLEMENTATIONS)
@pytest.mark.parametrize("name", ["softmax", "log_softmax", "logsumexp"])
@pytest.mark.parametrize(
    "axis",
    [np.int64(1), (np.int32(0), 2), (np.int64(-1), np.intp(0))],
    ids=["int64", "tuple-int32", "tuple-int64-intp"],
)
def test_numpy_integer_axes(axis, name, module, rng):
    # NumPy integers are integers for SciPy (operator.index), so they are for fastxent too.
    special = import_scipy_special()
    x = make_logits(rng, (3, 4, 5))
    expected = scipy_expected(special, name, x, axis)
    assert_result(call(module, name, x, axis=axis), expected, np.float64, 1e-12, 1e-13)


@pytest.mark.parametrize("module", IMPLEMENTATIONS)
@pytest.mark.parametrize("name", ["softmax", "log_softmax", "logsumexp"])
@pytest.mark.parametrize(
    ("shape", "axis"),
    [
        ((2, 3, 4), (0, 0)),
        ((2, 3, 4), (1, -2)),
        ((2, 3, 4), (2, 0, -1)),
        ((5, 7), (-1, 1)),
        ((7,), (0, -1)),
    ],
)
def test_repeated_axis_raises_value_error(shape, axis, name, module, rng):
    x = make_logits(rng, shape)
    with pytest.raises(ValueError):  # SciPy: "duplicate value in 'axis'"
        call(module, name, x, axis=axis)


@pytest.mark.parametrize("module", IMPLEMENTATIONS)
@pytest.mark.parametrize("name", ["softmax", "log_softmax", "logsumexp"])
@pytest.mark.parametrize(
    ("shape", "axis"),
    [
        ((2, 3, 4), 3),
        ((2, 3, 4), -4),
        ((2, 3, 4), (0, 3)),
        ((2, 3, 4), (-4, 1)),
        ((5, 7), (2,)),
        ((7,), 1),
    ],
)
def test_out_of_range_axis_raises_value_error(shape, axis, name, module, rng):
    # numpy.exceptions.AxisError (SciPy's error here) is a ValueError too.
    x = make_logits(rng, shape)
    with pytest.raises(ValueError):
        call(module, name, x, axis=axis)


@pytest.mark.parametrize("name", ["softmax", "log_softmax", "logsumexp"])
@pytest.mark.parametrize(
    "axis",
    [1.0, np.float64(1.0), True, False, np.True_, "1", (0.0,), (0, 1.0), (True,), (0, "2")],
    ids=repr,
)
def test_non_integer_axis_raises_type_error(axis, name, rng):
    # fastxent only: the reference validates no more than NumPy does (bools are indices).
    x = make_logits(rng, (2, 3, 4))
    with pytest.raises(TypeError):  # as in SciPy, for each of these
        call(fastxent, name, x, axis=axis)


@pytest.mark.parametrize("module", IMPLEMENTATIONS)
@pytest.mark.parametrize("keepdims", [False, True])
@pytest.mark.parametrize("axis", [(0, 2), (2, 0), None], ids=str)
def test_special_values_in_a_multi_axis_reduction(axis, keepdims, module, rng):
    special = import_scipy_special()
    torch = import_torch()
    # Reduced over (0, 2), the groups are indexed by axis 1:
    x = make_logits(rng, (4, 6, 5))
    x[:, 1][rng.random((4, 5)) < 0.5] = -INF  # 1: a masked half ...
    x[0, 1, 0] = 0.5  # ... that keeps at least one class
    x[:, 2] = -INF  # 2: no class at all
    x[2, 3, 4] = NAN  # 3: one nan poisons its group
    x[:, 4] = -INF  # 4: one class left
    x[3, 4, 4] = -1.5
    x[1, 5, 2] = INF  # 5: one +inf
    expected = {name: scipy_expected(special, name, x, axis) for name in ("softmax", "log_softmax")}
    expected["logsumexp"] = scipy_expected(special, "logsumexp", x, axis, keepdims=keepdims)
    actual = {
        "softmax": call(module, "softmax", x, axis=axis),
        "log_softmax": call(module, "log_softmax", x, axis=axis),
        "logsumexp": call(module, "logsumexp", x, axis=axis, keepdims=keepdims),
    }
    dims = tuple(range(x.ndim)) if axis is None else axis
    lse_torch = torch.logsumexp(torch.from_numpy(x), dim=dims, keepdim=keepdims).numpy()
    # SciPy and PyTorch agree on logsumexp: -inf for group 2 (log 0), nan for group 3,
    # +inf for group 5 (and nan for the single group of axis=None, which holds the nan).
    assert_same_values(lse_torch, expected["logsumexp"], np.float64, 1e-12, 1e-13)
    if axis is None:
        assert np.isnan(expected["logsumexp"])
        assert np.all(np.isnan(expected["softmax"]))
        groups = [slice(None)]
    else:
        groups = [0, 1, 2, 3, 4, 5]
    for name in actual:
        assert np.shape(actual[name]) == np.shape(expected[name]), name
        assert np.asarray(actual[name]).dtype == np.float64, name
        group_axis = 1 if name != "logsumexp" or keepdims else 0
        for group in groups:
            if name == "log_softmax" and group == 5:
                # +inf: SciPy gives -inf for the finite entries and nan for the +inf one,
                # PyTorch nan throughout (docs/semantics.md: nan, as PyTorch). Not compared.
                continue
            index = [slice(None)] * np.ndim(expected[name])
            if axis is not None:
                index[group_axis] = group
            assert_same_values(
                np.asarray(actual[name])[tuple(index)],
                np.asarray(expected[name])[tuple(index)],
                np.float64,
                1e-12,
                1e-13,
            )


# ======================================================================================
# 2. Empty axes and 0-d input
# ======================================================================================

#: ``(shape, axis)`` with no element to reduce over, or no group at all.
EMPTY_CASES = [
    ((3, 0), -1),
    ((3, 0), 1),
    ((3, 0), 0),
    ((0, 5), -1),
    ((0, 5), 0),
    ((0, 5), None),
    ((2, 0, 4), 1),
    ((2, 0, 4), (1, 2)),
    ((2, 0, 4), (2, 1)),
    ((2, 0, 4), (0, 2)),
    ((2, 0, 4), (0, 1, 2)),
    ((2, 0, 4), None),
    ((0,), 0),
    ((0,), None),
    ((3, 0), None),
]
EMPTY_PARAMS = [pytest.param(shape, axis, id=f"{shape}-axis{axis}") for shape, axis in EMPTY_CASES]


@pytest.mark.parametrize("module", IMPLEMENTATIONS)
@pytest.mark.parametrize("name", ["softmax", "log_softmax"])
@pytest.mark.parametrize(("shape", "axis"), EMPTY_PARAMS)
@pytest.mark.parametrize(("dtype", "rtol", "atol"), ALL_TOLERANCES)
def test_softmax_of_an_empty_array_is_empty(dtype, rtol, atol, shape, axis, name, module):
    # PyTorch: softmax(zeros((3, 0)), -1) has shape (3, 0) (SciPy raises instead).
    x = np.zeros(shape, dtype)
    assert_result(call(module, name, x, axis=axis), x, result_dtype(dtype), 0, 0)


def empty_logsumexp_expected(shape, axis, keepdims):
    """``-inf`` (the log of an empty sum) in NumPy's reduced shape."""
    return np.full(np.sum(np.zeros(shape), axis=axis, keepdims=keepdims).shape, -INF)


@pytest.mark.parametrize("module", IMPLEMENTATIONS)
@pytest.mark.parametrize("keepdims", [False, True])
@pytest.mark.parametrize(("shape", "axis"), EMPTY_PARAMS)
@pytest.mark.parametrize(("dtype", "rtol", "atol"), ALL_TOLERANCES)
def test_logsumexp_over_nothing_is_minus_inf(dtype, rtol, atol, shape, axis, keepdims, module):
    x = np.zeros(shape, dtype)
    expected = empty_logsumexp_expected(shape, axis, keepdims)
    actual = call(module, "logsumexp", x, axis=axis, keepdims=keepdims)
    assert_result(actual, expected, result_dtype(dtype), 0, 0)


def test_logsumexp_over_nothing_hand_worked():
    assert_result(fastxent.logsumexp(np.zeros((3, 0))), [-INF] * 3, np.float64, 0, 0)
    assert_result(
        fastxent.logsumexp(np.zeros((3, 0), np.float32), keepdims=True),
        [[-INF]] * 3,
        np.float32,
        0,
        0,
    )
    assert_result(fastxent.logsumexp(np.zeros((0, 5)), axis=0), [-INF] * 5, np.float64, 0, 0)
    assert_result(fastxent.logsumexp(np.zeros((0, 5))), np.zeros(0), np.float64, 0, 0)
    assert_result(fastxent.logsumexp(np.zeros((3, 0)), axis=None), -INF, np.float64, 0, 0)


@pytest.mark.parametrize("keepdims", [False, True])
@pytest.mark.parametrize(("shape", "axis"), EMPTY_PARAMS)
def test_empty_logsumexp_expectation_matches_torch(shape, axis, keepdims):
    # The hand-worked expectation above is PyTorch's (SciPy agrees where it does not fail).
    torch = import_torch()
    dims = tuple(range(len(shape))) if axis is None else axis
    got = torch.logsumexp(torch.zeros(shape, dtype=torch.float64), dim=dims, keepdim=keepdims)
    expected = empty_logsumexp_expected(shape, axis, keepdims)
    assert_result(got.numpy(), expected, np.float64, 0, 0)
    actual = fastxent.logsumexp(np.zeros(shape), axis=axis, keepdims=keepdims)
    assert_result(actual, got.numpy(), np.float64, 0, 0)


@pytest.mark.parametrize("module", IMPLEMENTATIONS)
@pytest.mark.parametrize("axis", ["default", -1, 0, None, ()], ids=repr)
@pytest.mark.parametrize("value", [2.5, -3.0, 0.0, 40.0, NAN, INF, -INF], ids=repr)
@pytest.mark.parametrize(("dtype", "rtol", "atol"), ALL_TOLERANCES)
def test_zero_d_input_is_one_class(dtype, rtol, atol, value, axis, module):
    special = import_scipy_special()
    torch = import_torch()
    x = np.array(value, dtype)
    t = torch.from_numpy(x.astype(np.float64))
    # One class: probability 1, log-probability 0, logsumexp the value; a non-finite value
    # has no distribution (SciPy and PyTorch: softmax and log_softmax nan, logsumexp the
    # value, +-inf or nan).
    finite = math.isfinite(value)
    hand = {"softmax": 1.0 if finite else NAN, "log_softmax": 0.0 if finite else NAN}
    hand["logsumexp"] = float(x)
    kwargs = {} if axis == "default" else {"axis": axis}
    scipy_axis = -1 if axis == "default" else axis
    for name, torch_function in [
        ("softmax", torch.softmax),
        ("log_softmax", torch.log_softmax),
        ("logsumexp", torch.logsumexp),
    ]:
        np.testing.assert_array_equal(torch_function(t, -1).numpy(), hand[name])  # PyTorch
        if not (name == "logsumexp" and axis == ()):  # SciPy: shape (1,) there, a quirk
            expected = scipy_expected(special, name, x, axis=scipy_axis)
            np.testing.assert_array_equal(expected, hand[name])  # SciPy
        actual = call(module, name, x, **kwargs)
        assert_result(actual, hand[name], result_dtype(dtype), 0, 0, shape=())


@pytest.mark.parametrize("function", ["cross_entropy", "cross_entropy_with_grad"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_cross_entropy_with_zero_classes_raises(function, dtype):
    logits = np.zeros((4, 0), dtype)
    with pytest.raises(ValueError, match="0 classes"):
        getattr(fastxent, function)(logits, np.zeros(4, np.int64))


# ======================================================================================
# 3. Class weights of any sign
# ======================================================================================


def torch_cross_entropy(logits, target, weight=None, **kwargs):
    """PyTorch's loss and its autograd gradient (of ``sum(loss)`` for ``"none"``), with the
    class axis 1 (PyTorch's layout) and every input in the logits' dtype."""
    torch = import_torch()
    functional = torch.nn.functional
    z = torch.from_numpy(logits.copy()).requires_grad_(True)
    if np.issubdtype(target.dtype, np.integer):
        t = torch.from_numpy(target.astype(np.int64))
    else:
        t = torch.from_numpy(target.astype(logits.dtype))
    w = None if weight is None else torch.from_numpy(np.asarray(weight, dtype=logits.dtype))
    loss = functional.cross_entropy(z, t, weight=w, **kwargs)
    (loss.sum() if kwargs.get("reduction") == "none" else loss).backward()
    return loss.detach().numpy(), z.grad.numpy()


def assert_cross_entropy_matches_torch(module, logits, target, rtol, atol, **kwargs):
    """``module.cross_entropy`` and ``module.cross_entropy_with_grad`` (class axis 1) give
    PyTorch's loss and gradient, ``nan``/``inf`` pattern included."""
    expected_loss, expected_grad = torch_cross_entropy(logits, target, **kwargs)
    dtype = logits.dtype
    loss = call(module, "cross_entropy", logits, target, axis=1, **kwargs)
    loss2, grad = call(module, "cross_entropy_with_grad", logits, target, axis=1, **kwargs)
    if kwargs.get("reduction", "mean") != "none":
        assert np.ndim(loss) == 0 and np.ndim(loss2) == 0
    assert_same_values(loss, expected_loss, dtype, rtol, atol)
    assert_same_values(loss2, expected_loss, dtype, rtol, atol)
    assert_same_values(grad, expected_grad, dtype, rtol, atol, scaled_atol=True)


#: Class weights of mixed sign, exact in float32 (both libraries see the same numbers).
WEIGHT_SETS = [
    pytest.param(np.array([0.5, -1.25, 2.0, -0.75, 1.5]), id="mixed"),
    pytest.param(np.array([-0.5, -1.25, 0.25, -2.0, -1.0]), id="mostly-negative"),
    pytest.param(np.array([1.0, 0.0, -1.0, 0.0, 2.0]), id="with-zeros"),
]
#: Fixed labels for 12 samples of 5 classes, every class present.
LABELS = np.array([0, 1, 2, 3, 4, 0, 4, 1, 3, 2, 4, 0])


def integer_target(ignore_case):
    """Labels for ``LABELS``'s 12 samples and the ``ignore_index`` option, if any."""
    labels = LABELS.copy()
    if ignore_case == "none":
        return labels, {}
    if ignore_case == "default":
        labels[[2, 7]] = -100
        return labels, {}
    return labels, {"ignore_index": 4}  # a valid class that occurs


@pytest.mark.parametrize("module", IMPLEMENTATIONS)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("label_smoothing", SMOOTHINGS)
@pytest.mark.parametrize("ignore_case", ["none", "default", "class4"])
@pytest.mark.parametrize("weight", WEIGHT_SETS)
def test_negative_weights_integer_targets(
    weight, ignore_case, label_smoothing, reduction, module, rng
):
    logits = make_logits(rng, (12, 5))
    labels, options = integer_target(ignore_case)
    counted = labels != options.get("ignore_index", -100)
    assert abs(weight[labels[counted]].sum()) >= 0.5  # a well-conditioned "mean"
    assert_cross_entropy_matches_torch(
        module,
        logits,
        labels,
        1e-10,
        1e-12,
        weight=weight,
        reduction=reduction,
        label_smoothing=label_smoothing,
        **options,
    )


@pytest.mark.parametrize("module", IMPLEMENTATIONS)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("label_smoothing", SMOOTHINGS)
@pytest.mark.parametrize("weight", WEIGHT_SETS)
def test_negative_weights_probability_targets(weight, label_smoothing, reduction, module, rng):
    logits = make_logits(rng, (9, 5))
    target = make_probabilities(rng, (9, 5), axis=1)
    assert_cross_entropy_matches_torch(
        module,
        logits,
        target,
        1e-10,
        1e-12,
        weight=weight,
        reduction=reduction,
        label_smoothing=label_smoothing,
    )


@pytest.mark.parametrize("module", IMPLEMENTATIONS)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("label_smoothing", SMOOTHINGS)
@pytest.mark.parametrize("kind", ["index", "index-ignored", "probability"])
def test_negative_weights_n_dimensional_axis_1(kind, label_smoothing, reduction, module, rng):
    # PyTorch's (N, C, d1, d2) layout, fastxent's axis=1.
    weight = np.array([0.5, -1.25, 2.0, -0.75, 1.5])
    logits = make_logits(rng, (3, 5, 4, 2))
    if kind == "probability":
        target = make_probabilities(rng, logits.shape, axis=1)
    else:
        target = np.resize(LABELS, (3, 4, 2))
        if kind == "index-ignored":
            target[0, 1, :] = -100
            target[2, 3, 1] = -100
        assert abs(weight[target[target >= 0]].sum()) >= 0.5
    assert_cross_entropy_matches_torch(
        module,
        logits,
        target,
        1e-10,
        1e-12,
        weight=weight,
        reduction=reduction,
        label_smoothing=label_smoothing,
    )


@pytest.mark.parametrize("module", IMPLEMENTATIONS)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("label_smoothing", SMOOTHINGS)
@pytest.mark.parametrize("kind", ["index", "probability"])
def test_negative_weights_float32_matches_torch_float32(
    kind, label_smoothing, reduction, module, rng
):
    weight = np.array([0.5, -1.25, 2.0, -0.75, 1.5], np.float32)
    logits = make_logits(rng, (12, 5), np.float32)
    if kind == "probability":
        target = make_probabilities(rng, (12, 5), axis=1, dtype=np.float32)
    else:
        target, _ = integer_target("default")
    assert_cross_entropy_matches_torch(
        module,
        logits,
        target,
        1e-5,
        1e-6,
        weight=weight,
        reduction=reduction,
        label_smoothing=label_smoothing,
    )


#: Logits for the degenerate "mean" whose counted weights ``[1, -2, 1][labels]`` sum to 0.
#: The first case's weighted losses sum to a positive number (PyTorch: +inf without
#: smoothing), the second's to a negative one (-inf); the third has an ignored row (whose
#: gradient stays 0).
DEGENERATE_CASES = [
    pytest.param(
        np.array([[0.5, -1.0, 2.0], [1.0, 0.0, -0.5], [0.2, 0.3, 0.1]]),
        np.array([0, 1, 2]),
        id="positive-sum",
    ),
    pytest.param(
        np.array([[3.0, 0.0, -1.0], [2.0, -4.0, 1.0], [-1.0, 0.5, 2.5]]),
        np.array([0, 1, 2]),
        id="negative-sum",
    ),
    pytest.param(
        np.array([[0.5, -1.0, 2.0], [1.0, 0.0, -0.5], [0.7, 0.2, 0.1], [0.2, 0.3, 0.1]]),
        np.array([0, 1, -100, 2]),
        id="with-ignored-row",
    ),
]


@pytest.mark.parametrize("module", IMPLEMENTATIONS)
@pytest.mark.parametrize("label_smoothing", SMOOTHINGS)
@pytest.mark.parametrize(("logits", "labels"), DEGENERATE_CASES)
def test_mean_over_weights_summing_to_zero(logits, labels, label_smoothing, module):
    weight = np.array([1.0, -2.0, 1.0])
    counted = labels != -100
    assert weight[labels[counted]].sum() == 0.0
    expected_loss, expected_grad = torch_cross_entropy(
        logits, labels, weight=weight, label_smoothing=label_smoothing
    )
    assert not np.isfinite(expected_loss)  # the point of the case: PyTorch divides by 0
    assert not np.all(np.isfinite(expected_grad))
    assert_cross_entropy_matches_torch(
        module, logits, labels, 1e-10, 1e-12, weight=weight, label_smoothing=label_smoothing
    )


@pytest.mark.parametrize("module", IMPLEMENTATIONS)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("label_smoothing", SMOOTHINGS)
@pytest.mark.parametrize("kind", ["index", "probability"])
def test_all_zero_weights(kind, label_smoothing, reduction, module, rng):
    # PyTorch: "mean" over integer targets is 0 / 0 = nan with an all-nan gradient; the
    # other cases are plain zeros.
    logits = make_logits(rng, (6, 4))
    if kind == "probability":
        target = make_probabilities(rng, (6, 4), axis=1)
    else:
        target = np.array([0, 1, 2, 3, -100, 1])
    assert_cross_entropy_matches_torch(
        module,
        logits,
        target,
        1e-10,
        1e-12,
        weight=np.zeros(4),
        reduction=reduction,
        label_smoothing=label_smoothing,
    )


@pytest.mark.parametrize("module", IMPLEMENTATIONS)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("label_smoothing", SMOOTHINGS)
@pytest.mark.parametrize(
    "weight",
    [None, np.array([1.0, -2.0, 0.5, 1.5])],
    ids=["no-weight", "negative-weight"],
)
def test_all_rows_ignored(weight, label_smoothing, reduction, module, rng):
    # PyTorch: "mean" is nan, and the gradient all zeros (no row reaches the loss).
    logits = make_logits(rng, (5, 4))
    labels = np.full(5, 3)
    expected_loss, expected_grad = torch_cross_entropy(
        logits,
        labels,
        weight=weight,
        ignore_index=3,
        reduction=reduction,
        label_smoothing=label_smoothing,
    )
    np.testing.assert_array_equal(expected_grad, 0.0)
    assert_cross_entropy_matches_torch(
        module,
        logits,
        labels,
        1e-10,
        1e-12,
        weight=weight,
        ignore_index=3,
        reduction=reduction,
        label_smoothing=label_smoothing,
    )


@pytest.mark.parametrize("function", ["cross_entropy", "cross_entropy_with_grad"])
@pytest.mark.parametrize("bad", [NAN, INF, -INF], ids=repr)
@pytest.mark.parametrize("position", [0, 2])
@pytest.mark.parametrize("kind", ["index", "probability"])
def test_non_finite_class_weight_raises(kind, position, bad, function, rng):
    logits = make_logits(rng, (4, 3))
    target = np.array([0, 1, 2, 1]) if kind == "index" else make_probabilities(rng, (4, 3))
    weight = np.array([1.0, -2.0, 0.5])
    weight[position] = bad
    with pytest.raises(ValueError):
        getattr(fastxent, function)(logits, target, weight=weight)


def torch_binary_cross_entropy(logits, target, weight, pos_weight, reduction):
    """PyTorch's ``binary_cross_entropy_with_logits`` and its autograd gradient."""
    torch = import_torch()
    dtype = logits.dtype

    def tensor(array):
        return None if array is None else torch.from_numpy(np.asarray(array, dtype=dtype))

    z = torch.from_numpy(logits.copy()).requires_grad_(True)
    loss = torch.nn.functional.binary_cross_entropy_with_logits(
        z, tensor(target), weight=tensor(weight), pos_weight=tensor(pos_weight), reduction=reduction
    )
    (loss.sum() if reduction == "none" else loss).backward()
    return loss.detach().numpy(), z.grad.numpy()


BCE_WEIGHTS = [
    pytest.param(None, id="no-weight"),
    pytest.param(np.array([0.5, -1.25, 2.0, -0.75]), id="weight-per-class"),
    pytest.param(np.array([[1.0], [-0.5], [2.0], [-1.5], [0.25], [-3.0]]), id="weight-per-row"),
    pytest.param("full", id="weight-full"),
]
BCE_POS_WEIGHTS = [
    pytest.param(None, id="no-pos-weight"),
    pytest.param(np.array([-2.0, 0.5, -0.25, 3.0]), id="pos-weight"),
    pytest.param(np.array([-1.5]), id="pos-weight-one"),
]


@pytest.mark.parametrize("module", IMPLEMENTATIONS)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("pos_weight", BCE_POS_WEIGHTS)
@pytest.mark.parametrize("weight", BCE_WEIGHTS)
@pytest.mark.parametrize(("dtype", "rtol", "atol"), NATIVE_TOLERANCES)
def test_binary_negative_weights_match_torch(
    dtype, rtol, atol, weight, pos_weight, reduction, module, rng
):
    logits = make_logits(rng, (6, 4), dtype)
    target = rng.random((6, 4)).astype(dtype)
    target[0] = [0.0, 1.0, 0.0, 1.0]
    if isinstance(weight, str):
        weight = (rng.random((6, 4)) * 4.0 - 2.0).astype(np.float32).astype(np.float64)
    rtol = max(rtol, 1e-10)  # PyTorch's float64 formula rounds differently
    expected_loss, expected_grad = torch_binary_cross_entropy(
        logits, target, weight, pos_weight, reduction
    )
    options = {"weight": weight, "pos_weight": pos_weight, "reduction": reduction}
    loss = call(module, "binary_cross_entropy", logits, target, **options)
    loss2, grad = call(module, "binary_cross_entropy_with_grad", logits, target, **options)
    assert_same_values(loss, expected_loss, dtype, rtol, atol)
    assert_same_values(loss2, expected_loss, dtype, rtol, atol)
    assert_same_values(grad, expected_grad, dtype, rtol, atol, scaled_atol=True)


@pytest.mark.parametrize("function", ["binary_cross_entropy", "binary_cross_entropy_with_grad"])
@pytest.mark.parametrize("bad", [NAN, INF, -INF], ids=repr)
@pytest.mark.parametrize("option", ["weight", "pos_weight"])
def test_binary_non_finite_weight_raises(option, bad, function, rng):
    logits = make_logits(rng, (3, 4))
    target = rng.random((3, 4))
    factor = np.array([1.0, -2.0, 0.5, 1.0])
    factor[1] = bad
    with pytest.raises(ValueError):
        getattr(fastxent, function)(logits, target, **{option: factor})


# ======================================================================================
# 4. fastxent.reference: lazily imported
# ======================================================================================

#: Modules that ``import fastxent`` must not load (beyond what Numba itself loads).
PEERS = ("torch", "scipy", "dask", "matplotlib")


def run_python(code: str) -> str:
    """Run ``code`` in a fresh interpreter; return its standard output."""
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def loaded_peers(import_line: str) -> set[str]:
    """The modules of ``PEERS`` (and their submodules) in sys.modules after ``import_line``."""
    code = (
        f"import sys\n{import_line}\n"
        f"print(sorted(m for m in sys.modules if m.split('.')[0] in {PEERS!r}))"
    )
    return set(ast.literal_eval(run_python(code).strip().splitlines()[-1]))


def test_reference_usable_without_importing_it():
    code = (
        "import numpy as np\nimport fastxent\n"
        "print(repr(float(fastxent.reference.cross_entropy("
        "np.array([[1.4, 3.2, 5.0]]), np.array([2])))))"
    )
    value = float(run_python(code).strip().splitlines()[-1])
    expected = math.log(math.exp(1.4) + math.exp(3.2) + math.exp(5.0)) - 5.0
    assert value == pytest.approx(0.1762, abs=5e-5)
    assert value == pytest.approx(expected, rel=1e-12)


def test_import_fastxent_does_not_import_reference():
    code = (
        "import sys\nimport fastxent\n"
        "print('fastxent.reference' in sys.modules)\n"
        "print('reference' in dir(fastxent))"
    )
    lines = run_python(code).strip().splitlines()
    assert lines[-2:] == ["False", "True"], lines


def test_import_fastxent_does_not_import_peers():
    # Numba imports scipy itself (numba/__init__.py checks its version) when it is
    # installed: only what fastxent adds to Numba's own imports counts.
    baseline = loaded_peers("import numba")
    loaded = loaded_peers("import fastxent")
    assert loaded <= baseline, sorted(loaded - baseline)
    assert not {m for m in loaded if m.split(".")[0] in ("torch", "dask", "matplotlib")}
    assert "scipy.special" not in loaded


# ======================================================================================
# 5. Error messages
# ======================================================================================


@pytest.mark.parametrize("function", ["cross_entropy", "cross_entropy_with_grad"])
@pytest.mark.parametrize(("position", "bad"), [(0, NAN), (2, INF)], ids=["nan-at-0", "inf-at-2"])
def test_weight_error_names_the_position_plainly(position, bad, function):
    weight = np.array([1.0, 1.0, 1.0])
    weight[position] = bad
    with pytest.raises(ValueError) as info:
        getattr(fastxent, function)(np.zeros((2, 3)), np.array([0, 1]), weight=weight)
    message = str(info.value)
    assert f"weight[{position}]" in message, message
    assert "np.int64" not in message, message
    assert not re.search(r"np\.\w+\(", message), message  # no NumPy scalar reprs


@pytest.mark.parametrize("function", ["cross_entropy", "cross_entropy_with_grad"])
def test_label_error_names_the_position_plainly(function):
    logits = np.zeros((1, 3, 2))
    with pytest.raises(ValueError) as info:
        getattr(fastxent, function)(logits, np.array([[0, 7]]), axis=1)
    message = str(info.value)
    assert "target[0, 1]" in message, message
    assert "7" in message, message
    assert "np.int64" not in message, message
    assert not re.search(r"np\.\w+\(", message), message  # no NumPy scalar reprs


@pytest.mark.parametrize("function", ["cross_entropy", "cross_entropy_with_grad"])
@pytest.mark.parametrize(
    ("shape", "axis", "target"),
    [
        ((4, 3), -1, np.array([0.0, 1.0, 2.0, 1.0])),
        ((2, 3, 4), 1, np.zeros((2, 4))),
        ((4, 3), -1, np.array([0.0, 1.0, 2.0, 1.0], np.float32)),
    ],
    ids=["2d", "3d-axis1", "float32"],
)
def test_float_target_of_index_shape_explains_target_kinds(shape, axis, target, function):
    with pytest.raises(ValueError) as info:
        getattr(fastxent, function)(np.zeros(shape), target, axis=axis)
    message = str(info.value)
    assert "probabilities" in message, message
    assert "integer" in message, message
