"""binary_cross_entropy and binary_cross_entropy_with_grad (sigmoid cross-entropy from logits).

Compared with ``fastxent.reference`` on random inputs (weights, ``pos_weight``, shapes,
layouts, ``out=``) and with hand-worked values. Infinite, huge and ``nan`` logits:
test_special_values.py; PyTorch's ``binary_cross_entropy_with_logits``: test_torch_parity.py.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
from conftest import (
    NATIVE_TOLERANCES,
    make_binary_inputs,
    make_binary_weight,
    parallel_rows,
    result_dtype,
)

import fastxent
from fastxent import reference

SHAPES = [
    pytest.param((), id="0d"),
    pytest.param((7,), id="7"),
    pytest.param((5, 4), id="5x4"),
    pytest.param((2, 3, 4), id="2x3x4"),
]
REDUCTIONS = ["mean", "sum", "none"]
BASES = [pytest.param(None, id="e"), pytest.param(2, id="base2"), pytest.param(10, id="base10")]


def check_loss(loss: Any, expected: Any, dtype: Any, rtol: float, atol: float, shape: Any) -> None:
    rdtype = result_dtype(dtype)
    if shape is None:  # reduced
        assert type(loss) is rdtype.type, type(loss)
    else:
        assert isinstance(loss, np.ndarray), type(loss)
        assert loss.shape == shape, loss.shape
        assert loss.dtype == rdtype, loss.dtype
    assert np.shape(expected) == np.shape(loss)
    np.testing.assert_allclose(
        np.asarray(loss, dtype=np.float64),
        np.asarray(expected, dtype=np.float64),
        rtol=rtol,
        atol=atol,
    )


def check(
    logits: np.ndarray, target: np.ndarray, dtype: Any, rtol: float, atol: float, **kwargs: Any
) -> tuple[Any, np.ndarray]:
    """fastxent against the reference, loss and gradient; the inputs are not modified."""
    reduction = kwargs.get("reduction", "mean")
    inputs = [v for v in (logits, target, kwargs.get("weight"), kwargs.get("pos_weight"))]
    saved = [np.array(v, copy=True) for v in inputs]
    with np.errstate(invalid="ignore", over="ignore"):
        expected_loss, expected_grad = reference.binary_cross_entropy_with_grad(
            logits, target, **kwargs
        )
    shape = logits.shape if reduction == "none" else None

    loss = fastxent.binary_cross_entropy(logits, target, **kwargs)
    check_loss(loss, expected_loss, dtype, rtol, atol, shape)
    loss2, grad = fastxent.binary_cross_entropy_with_grad(logits, target, **kwargs)
    check_loss(loss2, expected_loss, dtype, rtol, atol, shape)
    assert isinstance(grad, np.ndarray)
    assert grad.shape == logits.shape and grad.dtype == result_dtype(dtype)
    np.testing.assert_allclose(grad, expected_grad, rtol=rtol, atol=atol)

    for value, copy in zip(inputs, saved, strict=True):
        if value is not None:
            assert np.array_equal(np.asarray(value), copy, equal_nan=True), "input modified"
    return loss2, grad


# --------------------------------------------------------------------------------------
# Against the reference
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("hard", [False, True], ids=["soft", "hard"])
@pytest.mark.parametrize("base", BASES)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize(("dtype", "rtol", "atol"), NATIVE_TOLERANCES)
def test_matches_reference(
    dtype: Any, rtol: float, atol: float, shape: Any, reduction: str, base: Any, hard: bool
) -> None:
    logits, target = make_binary_inputs(shape, dtype, hard)
    check(logits, target, dtype, rtol, atol, reduction=reduction, base=base)


@pytest.mark.parametrize("base", [None, 2])
@pytest.mark.parametrize("use_pos_weight", [False, True], ids=["", "pos_weight"])
@pytest.mark.parametrize("weight_kind", ["none", "full", "column", "row", "scalar"])
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("shape", SHAPES[1:])
@pytest.mark.parametrize(("dtype", "rtol", "atol"), NATIVE_TOLERANCES)
def test_weights_match_reference(
    dtype: Any,
    rtol: float,
    atol: float,
    shape: Any,
    reduction: str,
    weight_kind: str,
    use_pos_weight: bool,
    base: Any,
) -> None:
    logits, target = make_binary_inputs(shape, dtype, hard=False)
    weight = make_binary_weight(weight_kind, shape)
    pos_weight = 3.0 * np.random.default_rng(3).random(shape[-1]) if use_pos_weight else None
    check(
        logits, target, dtype, rtol, atol,
        weight=weight, pos_weight=pos_weight, reduction=reduction, base=base,
    )  # fmt: skip


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize(("dtype", "rtol", "atol"), NATIVE_TOLERANCES)
def test_zero_d_with_scalar_weights(dtype: Any, rtol: float, atol: float, reduction: str) -> None:
    logits = np.array(-1.5, dtype=dtype)
    target = np.array(0.25, dtype=dtype)
    check(
        logits, target, dtype, rtol, atol,
        weight=np.float64(0.5), pos_weight=np.array(3.0), reduction=reduction,
    )  # fmt: skip


@pytest.mark.parametrize(("dtype", "rtol", "atol"), NATIVE_TOLERANCES)
def test_worked_values(dtype: Any, rtol: float, atol: float) -> None:
    # l = w * (p z softplus(-x) + (1 - z) softplus(x)), worked by hand.
    logits = np.array([0.0, 2.0, -1.0], dtype=dtype)
    target = np.array([1.0, 0.0, 0.5], dtype=dtype)
    sp = lambda v: math.log1p(math.exp(v))  # noqa: E731  softplus of a small value
    expected = [math.log(2.0), sp(2.0), 0.5 * sp(1.0) + 0.5 * sp(-1.0)]
    loss = fastxent.binary_cross_entropy(logits, target, reduction="none")
    check_loss(loss, expected, dtype, rtol, atol, (3,))
    sig = lambda v: 1.0 / (1.0 + math.exp(-v))  # noqa: E731
    _, grad = fastxent.binary_cross_entropy_with_grad(logits, target, reduction="sum")
    np.testing.assert_allclose(grad, [sig(0.0) - 1.0, sig(2.0), sig(-1.0) - 0.5], rtol, atol)
    # weight 2 and pos_weight 3 on the last element: 2 * (3 * 0.5 sp(1) + 0.5 sp(-1))
    loss = fastxent.binary_cross_entropy(
        logits[2:], target[2:], weight=2.0, pos_weight=np.array([3.0]), reduction="sum"
    )
    check_loss(loss, 2.0 * (1.5 * sp(1.0) + 0.5 * sp(-1.0)), dtype, rtol, atol, None)
    # base 2: one bit for x = 0
    loss = fastxent.binary_cross_entropy(logits[:1], target[:1], base=2)
    check_loss(loss, 1.0, dtype, rtol, atol, None)


@pytest.mark.parametrize(("dtype", "rtol", "atol"), NATIVE_TOLERANCES)
def test_integer_targets_equal_float_targets(dtype: Any, rtol: float, atol: float) -> None:
    logits, target = make_binary_inputs((5, 4), dtype, hard=True)
    as_int = target.astype(np.int64)
    for reduction in REDUCTIONS:
        expected = reference.binary_cross_entropy(logits, target, reduction=reduction)
        loss = fastxent.binary_cross_entropy(logits, as_int, reduction=reduction)
        np.testing.assert_allclose(loss, expected, rtol=rtol, atol=atol)


def test_float16_is_computed_in_float32() -> None:
    logits, target = make_binary_inputs((5, 4), np.float16, hard=False)
    check(logits, target, np.float16, 1e-5, 1e-6, reduction="none")


def test_non_contiguous_inputs() -> None:
    logits, target = make_binary_inputs((6, 8), np.float64, hard=False)
    check(logits[::2, 1::3], target[::2, 1::3], np.float64, 1e-12, 1e-13, reduction="none")
    check(np.asfortranarray(logits), target, np.float64, 1e-12, 1e-13, reduction="sum")


def test_large_batch_uses_the_parallel_kernel_correctly() -> None:
    shape = (parallel_rows(129), 129)
    logits, target = make_binary_inputs(shape, np.float64, hard=False)
    check(logits, target, np.float64, 1e-12, 1e-13, reduction="mean",
          pos_weight=np.linspace(0.0, 2.0, 129))  # fmt: skip


# --------------------------------------------------------------------------------------
# out=
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize(("dtype", "rtol", "atol"), NATIVE_TOLERANCES)
def test_out_fresh_array(dtype: Any, rtol: float, atol: float, shape: Any, reduction: str) -> None:
    logits, target = make_binary_inputs(shape, dtype, hard=False)
    saved = logits.copy(), target.copy()
    expected_loss, expected_grad = reference.binary_cross_entropy_with_grad(
        logits, target, reduction=reduction, pos_weight=np.array(2.0)
    )
    out = np.full(shape, np.nan, dtype=result_dtype(dtype))
    loss, grad = fastxent.binary_cross_entropy_with_grad(
        logits, target, reduction=reduction, pos_weight=np.array(2.0), out=out
    )
    assert grad is out
    np.testing.assert_allclose(loss, expected_loss, rtol=rtol, atol=atol)
    np.testing.assert_allclose(out, expected_grad, rtol=rtol, atol=atol)
    assert np.array_equal(logits, saved[0]) and np.array_equal(target, saved[1])


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("shape", SHAPES[1:])
@pytest.mark.parametrize(("dtype", "rtol", "atol"), NATIVE_TOLERANCES)
def test_out_is_logits_in_place(
    dtype: Any, rtol: float, atol: float, shape: Any, reduction: str
) -> None:
    logits, target = make_binary_inputs(shape, dtype, hard=False)
    weight = make_binary_weight("column", shape)
    expected_loss, expected_grad = reference.binary_cross_entropy_with_grad(
        logits.copy(), target, weight=weight, reduction=reduction
    )
    loss, grad = fastxent.binary_cross_entropy_with_grad(
        logits, target, weight=weight, reduction=reduction, out=logits
    )
    assert grad is logits
    np.testing.assert_allclose(loss, expected_loss, rtol=rtol, atol=atol)
    np.testing.assert_allclose(logits, expected_grad, rtol=rtol, atol=atol)


@pytest.mark.parametrize("layout", ["fortran", "strided"])
@pytest.mark.parametrize(("dtype", "rtol", "atol"), NATIVE_TOLERANCES)
def test_out_in_another_layout(dtype: Any, rtol: float, atol: float, layout: str) -> None:
    logits, target = make_binary_inputs((5, 4), dtype, hard=False)
    expected_loss, expected_grad = reference.binary_cross_entropy_with_grad(logits, target)
    rdtype = result_dtype(dtype)
    if layout == "fortran":
        out = np.asfortranarray(np.zeros((5, 4), dtype=rdtype))
        big = out
    else:
        big = np.zeros((5, 9), dtype=rdtype)
        out = big[:, ::2][:, :4]
    loss, grad = fastxent.binary_cross_entropy_with_grad(logits, target, out=out)
    assert grad is out
    np.testing.assert_allclose(loss, expected_loss, rtol=rtol, atol=atol)
    np.testing.assert_allclose(out, expected_grad, rtol=rtol, atol=atol)
    if layout == "strided":
        assert np.all(big[:, 1::2] == 0.0)  # the gaps are untouched


@pytest.mark.parametrize(("dtype", "rtol", "atol"), NATIVE_TOLERANCES)
def test_out_is_fortran_logits_in_place(dtype: Any, rtol: float, atol: float) -> None:
    logits, target = make_binary_inputs((5, 4), dtype, hard=False)
    logits = np.asfortranarray(logits)
    expected_loss, expected_grad = reference.binary_cross_entropy_with_grad(logits.copy(), target)
    loss, grad = fastxent.binary_cross_entropy_with_grad(logits, target, out=logits)
    assert grad is logits
    np.testing.assert_allclose(loss, expected_loss, rtol=rtol, atol=atol)
    np.testing.assert_allclose(logits, expected_grad, rtol=rtol, atol=atol)
