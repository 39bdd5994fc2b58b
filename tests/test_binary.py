"""binary_cross_entropy and binary_cross_entropy_with_grad (sigmoid cross-entropy from logits).

Compared with ``fastxent.reference`` on random inputs, with hand-worked values at the
edges (infinite and huge logits, ``nan``), and with PyTorch's
``binary_cross_entropy_with_logits`` and its autograd gradient (every weight x pos_weight x
reduction x dtype combination) when torch is installed; ``FASTXENT_REQUIRE_TORCH=1`` makes a
missing torch a failure instead of a skip.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
from conftest import import_torch

import fastxent
from fastxent import reference

#: (dtype, rtol, atol) against the float64 reference.
TOLERANCES = [
    pytest.param(np.float32, 1e-5, 1e-6, id="float32"),
    pytest.param(np.float64, 1e-12, 1e-13, id="float64"),
]
SHAPES = [
    pytest.param((), id="0d"),
    pytest.param((7,), id="7"),
    pytest.param((5, 4), id="5x4"),
    pytest.param((2, 3, 4), id="2x3x4"),
]
REDUCTIONS = ["mean", "sum", "none"]
BASES = [pytest.param(None, id="e"), pytest.param(2, id="base2"), pytest.param(10, id="base10")]


def result_dtype(dtype: Any) -> np.dtype[Any]:
    return np.dtype(np.float64) if np.dtype(dtype) == np.float64 else np.dtype(np.float32)


def make_inputs(
    shape: tuple[int, ...], dtype: Any, hard: bool, seed: int = 5
) -> tuple[np.ndarray, np.ndarray]:
    """Logits with a spread of magnitudes, and targets in [0, 1] (exactly 0/1 if ``hard``)."""
    rng = np.random.default_rng(seed)
    logits = (4.0 * rng.standard_normal(shape)).astype(dtype)
    if hard:
        target = rng.integers(0, 2, size=shape).astype(dtype)
    else:
        target = rng.random(shape).astype(dtype)
        target[rng.random(shape) < 0.2] = 0.0
        target[rng.random(shape) < 0.2] = 1.0
    return np.asarray(logits), np.asarray(target)


def make_weight(kind: str, shape: tuple[int, ...], seed: int = 11) -> Any:
    """``weight`` broadcastable to ``shape``: full, per column, per row, scalar, or None."""
    rng = np.random.default_rng(seed)
    if kind == "none":
        return None
    if kind == "scalar":
        return 1.75
    weight_shape = {
        "full": shape,
        "column": shape[-1:],
        "row": shape[:-1] + (1,),
    }[kind]
    weight = 2.0 * rng.random(weight_shape)
    weight.reshape(-1)[0] = 0.0  # a zero weight removes its element's term
    return weight


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
@pytest.mark.parametrize(("dtype", "rtol", "atol"), TOLERANCES)
def test_matches_reference(
    dtype: Any, rtol: float, atol: float, shape: Any, reduction: str, base: Any, hard: bool
) -> None:
    logits, target = make_inputs(shape, dtype, hard)
    check(logits, target, dtype, rtol, atol, reduction=reduction, base=base)


@pytest.mark.parametrize("base", [None, 2])
@pytest.mark.parametrize("use_pos_weight", [False, True], ids=["", "pos_weight"])
@pytest.mark.parametrize("weight_kind", ["none", "full", "column", "row", "scalar"])
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("shape", SHAPES[1:])
@pytest.mark.parametrize(("dtype", "rtol", "atol"), TOLERANCES)
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
    logits, target = make_inputs(shape, dtype, hard=False)
    weight = make_weight(weight_kind, shape)
    pos_weight = 3.0 * np.random.default_rng(3).random(shape[-1]) if use_pos_weight else None
    check(
        logits, target, dtype, rtol, atol,
        weight=weight, pos_weight=pos_weight, reduction=reduction, base=base,
    )  # fmt: skip


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize(("dtype", "rtol", "atol"), TOLERANCES)
def test_zero_d_with_scalar_weights(dtype: Any, rtol: float, atol: float, reduction: str) -> None:
    logits = np.array(-1.5, dtype=dtype)
    target = np.array(0.25, dtype=dtype)
    check(
        logits, target, dtype, rtol, atol,
        weight=np.float64(0.5), pos_weight=np.array(3.0), reduction=reduction,
    )  # fmt: skip


@pytest.mark.parametrize(("dtype", "rtol", "atol"), TOLERANCES)
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


@pytest.mark.parametrize(("dtype", "rtol", "atol"), TOLERANCES)
def test_integer_targets_equal_float_targets(dtype: Any, rtol: float, atol: float) -> None:
    logits, target = make_inputs((5, 4), dtype, hard=True)
    as_int = target.astype(np.int64)
    for reduction in REDUCTIONS:
        expected = reference.binary_cross_entropy(logits, target, reduction=reduction)
        loss = fastxent.binary_cross_entropy(logits, as_int, reduction=reduction)
        np.testing.assert_allclose(loss, expected, rtol=rtol, atol=atol)


def test_float16_is_computed_in_float32() -> None:
    logits, target = make_inputs((5, 4), np.float16, hard=False)
    check(logits, target, np.float16, 1e-5, 1e-6, reduction="none")


def test_non_contiguous_inputs() -> None:
    logits, target = make_inputs((6, 8), np.float64, hard=False)
    check(logits[::2, 1::3], target[::2, 1::3], np.float64, 1e-12, 1e-13, reduction="none")
    check(np.asfortranarray(logits), target, np.float64, 1e-12, 1e-13, reduction="sum")


def test_large_batch_uses_the_parallel_kernel_correctly() -> None:
    logits, target = make_inputs((300, 129), np.float64, hard=False)  # > 2**15 elements
    check(logits, target, np.float64, 1e-12, 1e-13, reduction="mean",
          pos_weight=np.linspace(0.0, 2.0, 129))  # fmt: skip


# --------------------------------------------------------------------------------------
# Infinite, huge and nan logits: worked by hand
# --------------------------------------------------------------------------------------

INF = math.inf
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
@pytest.mark.parametrize(("dtype", "rtol", "atol"), TOLERANCES)
def test_edge_values(
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


@pytest.mark.parametrize(("dtype", "rtol", "atol"), TOLERANCES)
def test_masked_elements_do_not_spoil_the_mean(dtype: Any, rtol: float, atol: float) -> None:
    logits = np.array([[-INF, 0.0], [INF, 0.0]], dtype=dtype)
    target = np.array([[0.0, 1.0], [1.0, 0.0]], dtype=dtype)
    loss, grad = fastxent.binary_cross_entropy_with_grad(logits, target)
    np.testing.assert_allclose(loss, 2.0 * math.log(2.0) / 4.0, rtol=rtol)
    np.testing.assert_allclose(grad, [[0.0, -0.125], [0.0, 0.125]], rtol=rtol, atol=0.0)
    assert grad[0, 0] == 0.0 and grad[1, 0] == 0.0


@pytest.mark.parametrize(("dtype", "rtol", "atol"), TOLERANCES)
def test_edge_values_with_weights(dtype: Any, rtol: float, atol: float) -> None:
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
@pytest.mark.parametrize(("dtype", "rtol", "atol"), TOLERANCES)
def test_nan_logit_gives_nan(dtype: Any, rtol: float, atol: float, z: float) -> None:
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
# out=
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize(("dtype", "rtol", "atol"), TOLERANCES)
def test_out_fresh_array(dtype: Any, rtol: float, atol: float, shape: Any, reduction: str) -> None:
    logits, target = make_inputs(shape, dtype, hard=False)
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
@pytest.mark.parametrize(("dtype", "rtol", "atol"), TOLERANCES)
def test_out_is_logits_in_place(
    dtype: Any, rtol: float, atol: float, shape: Any, reduction: str
) -> None:
    logits, target = make_inputs(shape, dtype, hard=False)
    weight = make_weight("column", shape)
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
@pytest.mark.parametrize(("dtype", "rtol", "atol"), TOLERANCES)
def test_out_in_another_layout(dtype: Any, rtol: float, atol: float, layout: str) -> None:
    logits, target = make_inputs((5, 4), dtype, hard=False)
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


@pytest.mark.parametrize(("dtype", "rtol", "atol"), TOLERANCES)
def test_out_is_fortran_logits_in_place(dtype: Any, rtol: float, atol: float) -> None:
    logits, target = make_inputs((5, 4), dtype, hard=False)
    logits = np.asfortranarray(logits)
    expected_loss, expected_grad = reference.binary_cross_entropy_with_grad(logits.copy(), target)
    loss, grad = fastxent.binary_cross_entropy_with_grad(logits, target, out=logits)
    assert grad is logits
    np.testing.assert_allclose(loss, expected_loss, rtol=rtol, atol=atol)
    np.testing.assert_allclose(logits, expected_grad, rtol=rtol, atol=atol)


# --------------------------------------------------------------------------------------
# PyTorch
# --------------------------------------------------------------------------------------


TORCH_WEIGHT_KINDS = [
    pytest.param("none", id="no-weight"),
    pytest.param("full", id="elementwise-weight"),
    pytest.param("column", id="per-class-weight"),
    pytest.param("row", id="per-row-weight"),
    pytest.param("scalar", id="scalar-weight"),
]


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("use_pos_weight", [False, True], ids=["no-pos_weight", "pos_weight"])
@pytest.mark.parametrize("weight_kind", TORCH_WEIGHT_KINDS)
@pytest.mark.parametrize("shape", [(6, 5), (2, 3, 4)], ids=str)
@pytest.mark.parametrize(("dtype", "rtol", "atol"), TOLERANCES)
def test_matches_torch(
    dtype: Any,
    rtol: float,
    atol: float,
    shape: tuple[int, ...],
    weight_kind: str,
    use_pos_weight: bool,
    reduction: str,
) -> None:
    """Every weight x pos_weight x reduction combination against PyTorch, loss and gradient."""
    torch = import_torch()
    logits, target = make_inputs(shape, dtype, hard=False, seed=17)
    # Weights rounded to the logits' dtype, so that both libraries see the same numbers.
    weight = make_weight(weight_kind, shape)
    if weight is not None:
        weight = np.asarray(weight, dtype=dtype)
    pos_weight = None
    if use_pos_weight:
        pos_weight = (3.0 * np.random.default_rng(8).random(shape[-1])).astype(dtype)

    x = torch.tensor(logits, requires_grad=True)
    torch_loss = torch.nn.functional.binary_cross_entropy_with_logits(
        x,
        torch.tensor(target),
        weight=None if weight is None else torch.as_tensor(weight),
        pos_weight=None if pos_weight is None else torch.tensor(pos_weight),
        reduction=reduction,
    )
    torch_loss.sum().backward()
    expected_loss = torch_loss.detach().numpy()
    expected_grad = x.grad.numpy()
    assert expected_loss.dtype == dtype and expected_grad.dtype == dtype

    rdtype = result_dtype(dtype)
    # A "mean" gradient is divided by the element count: atol follows the gradient's scale.
    grad_atol = atol * float(np.max(np.abs(expected_grad)))
    loss, grad = fastxent.binary_cross_entropy_with_grad(
        logits, target, weight=weight, pos_weight=pos_weight, reduction=reduction
    )
    only_loss = fastxent.binary_cross_entropy(
        logits, target, weight=weight, pos_weight=pos_weight, reduction=reduction
    )
    for value in (loss, only_loss):
        assert np.shape(value) == expected_loss.shape
        assert np.asarray(value).dtype == rdtype
        np.testing.assert_allclose(value, expected_loss, rtol=rtol, atol=atol)
    assert grad.shape == expected_grad.shape and grad.dtype == rdtype
    np.testing.assert_allclose(grad, expected_grad, rtol=rtol, atol=grad_atol)


def test_matches_torch_float32() -> None:
    torch = import_torch()
    logits, target = make_inputs((64, 10), np.float32, hard=False, seed=23)
    logits = (logits / 4.0).astype(np.float32)  # |x| of a few units: torch's float32 is tight
    pos_weight = np.linspace(0.5, 2.0, 10)
    x = torch.tensor(logits, requires_grad=True)
    torch_loss = torch.nn.functional.binary_cross_entropy_with_logits(
        x, torch.tensor(target), pos_weight=torch.tensor(pos_weight, dtype=torch.float32)
    )
    torch_loss.backward()
    loss, grad = fastxent.binary_cross_entropy_with_grad(logits, target, pos_weight=pos_weight)
    assert loss.dtype == np.float32 and grad.dtype == np.float32
    np.testing.assert_allclose(loss, torch_loss.item(), rtol=1e-5)
    np.testing.assert_allclose(grad, x.grad.numpy(), rtol=1e-5, atol=1e-8)
