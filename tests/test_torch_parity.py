"""Parity with PyTorch: the softmax family, ``F.cross_entropy`` (loss and autograd gradient),
``F.binary_cross_entropy_with_logits`` and ``F.kl_div``.

Skipped when PyTorch is not installed, unless ``FASTXENT_REQUIRE_TORCH=1`` (CI) makes that a
failure. Only cases where docs/semantics.md says we follow PyTorch are compared (not
``0 * log 0`` at ``-inf``, where PyTorch gives ``nan``).

The option matrix below covers every combination of dtype, target kind, class weight,
``ignore_index``, label smoothing and reduction, on ``(N, C)`` and ``(N, C, d1, d2)`` logits
with the class axis 1 (PyTorch's layout); odd shapes and one LLM-sized case follow, then the
binary loss (every weight x pos_weight x reduction x dtype combination) and the KL
divergence, and a test that fastxent's float32 loss is at least as accurate as PyTorch's
(against the exact values of ``oracle.py``). The conformance issue's comparisons (class
weights of any sign, multi-axis logsumexp) are in test_conformance.py; the accuracy table of
fastxent, PyTorch and JAX (docs/accuracy.md) in test_accuracy.py.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from conftest import (
    NATIVE_TOLERANCES,
    assert_result,
    import_torch,
    make_binary_inputs,
    make_binary_weight,
    make_labels,
    make_logits,
    make_probabilities,
    result_dtype,
)
from oracle import exact_rows

import fastxent

torch = import_torch()
F = torch.nn.functional

REDUCTIONS = ["mean", "sum", "none"]


def torch_cross_entropy(logits, target, axis=-1, weight=None, **kwargs):
    """PyTorch's loss and d(loss)/d(logits) (of sum(loss) for "none"), classes on ``axis``."""
    z = torch.tensor(np.moveaxis(logits, axis, 1) if logits.ndim > 1 else logits)
    z.requires_grad_(True)
    if np.issubdtype(target.dtype, np.integer):
        t = torch.tensor(target.astype(np.int64))
    else:
        t = torch.tensor(np.moveaxis(target, axis, 1) if target.ndim > 1 else target)
    w = None if weight is None else torch.tensor(np.asarray(weight, dtype=logits.dtype))
    loss = F.cross_entropy(z, t, weight=w, **kwargs)
    (loss.sum() if kwargs.get("reduction") == "none" else loss).backward()
    grad = z.grad.numpy()
    grad = np.moveaxis(grad, 1, axis) if logits.ndim > 1 else grad
    return loss.detach().numpy(), grad


def assert_gradient(grad, expected, rtol, atol):
    """``grad`` equals ``expected`` with ``atol`` relative to the gradient's own scale.

    A ``"mean"`` gradient is divided by the number of rows (or their summed weights), so a
    fixed ``atol`` would accept anything for large batches; it is scaled by ``max |expected|``
    (by 1 when the expected gradient is exactly zero, as for a single class).
    """
    assert grad.shape == expected.shape, (grad.shape, expected.shape)
    scale = float(np.max(np.abs(expected), initial=0.0))
    np.testing.assert_allclose(grad, expected, rtol=rtol, atol=atol * (scale if scale > 0 else 1.0))


def assert_parity(logits, target, rtol, atol, axis=-1, torch_kwargs=None, **kwargs):
    """fastxent's ``cross_entropy`` and ``cross_entropy_with_grad`` against PyTorch.

    ``torch_kwargs`` (default: ``kwargs``) are the options PyTorch is called with, for the
    few options that PyTorch spells differently or rejects.
    """
    torch_kwargs = kwargs if torch_kwargs is None else torch_kwargs
    expected_loss, expected_grad = torch_cross_entropy(logits, target, axis=axis, **torch_kwargs)
    loss = fastxent.cross_entropy(logits, target, axis=axis, **kwargs)
    loss2, grad = fastxent.cross_entropy_with_grad(logits, target, axis=axis, **kwargs)
    result_dtype = np.dtype(logits.dtype)
    for value in (loss, loss2):
        assert np.shape(value) == expected_loss.shape
        assert np.asarray(value).dtype == result_dtype
        np.testing.assert_allclose(value, expected_loss, rtol=rtol, atol=atol)
    assert grad.dtype == result_dtype
    assert_gradient(grad, expected_grad, rtol, atol)


def make_weight(rng, n_classes):
    """Random positive class weights, exactly representable in float32 (so both libraries
    see the same numbers whatever the dtype)."""
    return (rng.random(n_classes) + 0.1).astype(np.float32).astype(np.float64)


@pytest.mark.parametrize(("dtype", "rtol", "atol"), NATIVE_TOLERANCES)
@pytest.mark.parametrize("axis", [0, 1, -1])
def test_softmax_family(dtype, rtol, atol, axis, rng):
    x = make_logits(rng, (4, 7, 9), dtype)
    t = torch.tensor(x)
    np.testing.assert_allclose(
        fastxent.softmax(x, axis=axis), torch.softmax(t, axis).numpy(), rtol=rtol, atol=atol
    )
    np.testing.assert_allclose(
        fastxent.log_softmax(x, axis=axis),
        torch.log_softmax(t, axis).numpy(),
        rtol=rtol,
        atol=atol,
    )
    np.testing.assert_allclose(
        fastxent.logsumexp(x, axis=axis), torch.logsumexp(t, axis).numpy(), rtol=rtol, atol=atol
    )


@pytest.mark.parametrize(("dtype", "rtol", "atol"), NATIVE_TOLERANCES)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize(
    "options",
    [
        pytest.param({}, id="plain"),
        pytest.param({"weight": "random"}, id="weight"),
        pytest.param({"ignore_index": 2}, id="ignore2"),
        pytest.param({"label_smoothing": 0.1}, id="smooth0.1"),
        pytest.param({"label_smoothing": 1.0}, id="smooth1"),
        pytest.param(
            {"weight": "random", "ignore_index": 1, "label_smoothing": 0.2}, id="all-three"
        ),
    ],
)
def test_integer_targets(dtype, rtol, atol, reduction, options, rng):
    logits = make_logits(rng, (23, 6), dtype)
    labels = make_labels(rng, (23,), 6)
    labels[::5] = -100  # PyTorch's default ignore_index
    options = dict(options)
    if options.get("weight") == "random":
        options["weight"] = make_weight(rng, 6)
    if "ignore_index" in options:
        labels[labels == -100] = 0
    assert_parity(logits, labels, rtol, atol, reduction=reduction, **options)


@pytest.mark.parametrize(("dtype", "rtol", "atol"), NATIVE_TOLERANCES)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize(
    "options",
    [
        pytest.param({}, id="plain"),
        pytest.param({"weight": "random"}, id="weight"),
        pytest.param({"label_smoothing": 0.15}, id="smooth"),
        pytest.param({"weight": "random", "label_smoothing": 0.3}, id="both"),
    ],
)
def test_probability_targets(dtype, rtol, atol, reduction, options, rng):
    logits = make_logits(rng, (17, 5), dtype)
    target = make_probabilities(rng, (17, 5), dtype=dtype)
    options = dict(options)
    if options.get("weight") == "random":
        options["weight"] = make_weight(rng, 5)
    assert_parity(logits, target, rtol, atol, reduction=reduction, **options)


@pytest.mark.parametrize(("dtype", "rtol", "atol"), NATIVE_TOLERANCES)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("kind", ["index", "probability"])
def test_n_dimensional_axis_1(dtype, rtol, atol, reduction, kind, rng):
    logits = make_logits(rng, (3, 5, 4, 2), dtype)
    if kind == "index":
        target = make_labels(rng, (3, 4, 2), 5)
        target[0, 1] = -100
    else:
        target = make_probabilities(rng, (3, 5, 4, 2), axis=1, dtype=dtype)
    assert_parity(
        logits, target, rtol, atol, axis=1, reduction=reduction, weight=make_weight(rng, 5)
    )
    assert_parity(logits, target, rtol, atol, axis=1, reduction=reduction, label_smoothing=0.1)


@pytest.mark.parametrize(("dtype", "rtol", "atol"), NATIVE_TOLERANCES)
@pytest.mark.parametrize("kind", ["index", "probability"])
def test_one_dimensional_logits(dtype, rtol, atol, kind, rng):
    logits = make_logits(rng, (9,), dtype)
    target = np.array(3) if kind == "index" else make_probabilities(rng, (9,), dtype=dtype)
    for reduction in REDUCTIONS:
        assert_parity(logits, target, rtol, atol, reduction=reduction)


@pytest.mark.parametrize(("dtype", "rtol", "atol"), NATIVE_TOLERANCES)
def test_masked_classes_and_all_ignored(dtype, rtol, atol, rng):
    logits = make_logits(rng, (6, 5), dtype)
    logits[:, 3] = -np.inf  # a masked class that is never the target
    labels = np.array([0, 1, 2, 4, 0, 1])
    for reduction in REDUCTIONS:
        assert_parity(logits, labels, rtol, atol, reduction=reduction)
    logits = make_logits(rng, (4, 3), dtype)
    ignored = np.full(4, -100)
    for reduction in REDUCTIONS:
        assert_parity(logits, ignored, rtol, atol, reduction=reduction)


# --------------------------------------------------------------------------------------
# The full option matrix: weight x ignore_index x label_smoothing x reduction
# --------------------------------------------------------------------------------------

#: Logits shapes with the class axis 1: ``(N, C)`` and ``(N, C, d1, d2)``.
LAYOUTS = [
    pytest.param((13, 7), id="2d-13x7"),
    pytest.param((3, 7, 4, 5), id="4d-3x7x4x5"),
]
WEIGHTS = [pytest.param(False, id="no-weight"), pytest.param(True, id="weight")]
SMOOTHINGS = [pytest.param(0.0, id="eps0"), pytest.param(0.1, id="eps0.1")]
#: How ``ignore_index`` meets the integer targets.
IGNORE_CASES = [
    "default-absent",  # ignore_index left at -100, which never occurs
    "default-present",  # ignore_index left at -100, on every 4th sample
    "valid-present",  # ignore_index = 2, a class that also occurs as a target
    "valid-absent",  # ignore_index = C - 1, a valid class that no target names
]


def integer_case(rng, shape, ignore_case):
    """Integer targets for ``(N, C, ...)`` logits and the ``ignore_index`` option, if any."""
    n_classes = shape[1]
    target_shape = shape[:1] + shape[2:]
    labels = make_labels(rng, target_shape, n_classes)
    flat = labels.reshape(-1)  # a view: writes go into ``labels``
    if ignore_case == "default-absent":
        return labels, {}
    if ignore_case == "default-present":
        flat[::4] = -100
        return labels, {}
    if ignore_case == "valid-present":
        flat[::3] = 2
        flat[1::5] = 0  # other classes stay, so some samples count
        assert (labels == 2).any() and (labels != 2).any()
        return labels, {"ignore_index": 2}
    labels = make_labels(rng, target_shape, n_classes - 1)  # never C - 1
    assert not (labels == n_classes - 1).any()
    return labels, {"ignore_index": n_classes - 1}


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("label_smoothing", SMOOTHINGS)
@pytest.mark.parametrize("ignore_case", IGNORE_CASES)
@pytest.mark.parametrize("weighted", WEIGHTS)
@pytest.mark.parametrize("shape", LAYOUTS)
@pytest.mark.parametrize(("dtype", "rtol", "atol"), NATIVE_TOLERANCES)
def test_integer_target_matrix(
    dtype, rtol, atol, shape, weighted, ignore_case, label_smoothing, reduction, rng
):
    logits = make_logits(rng, shape, dtype)
    labels, options = integer_case(rng, shape, ignore_case)
    if weighted:
        options["weight"] = make_weight(rng, shape[1])
    assert_parity(
        logits, labels, rtol, atol, axis=1,
        reduction=reduction, label_smoothing=label_smoothing, **options,
    )  # fmt: skip


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("label_smoothing", SMOOTHINGS)
@pytest.mark.parametrize("ignore_index", [None, 2], ids=["default-ignore", "ignore2"])
@pytest.mark.parametrize("weighted", WEIGHTS)
@pytest.mark.parametrize("shape", LAYOUTS)
@pytest.mark.parametrize(("dtype", "rtol", "atol"), NATIVE_TOLERANCES)
def test_probability_target_matrix(
    dtype, rtol, atol, shape, weighted, ignore_index, label_smoothing, reduction, rng
):
    logits = make_logits(rng, shape, dtype)
    target = make_probabilities(rng, shape, axis=1, dtype=dtype)
    options = {"reduction": reduction, "label_smoothing": label_smoothing}
    if weighted:
        options["weight"] = make_weight(rng, shape[1])
    torch_options = dict(options)
    if ignore_index is not None:
        # PyTorch raises for an ignore_index other than -100 with probability targets;
        # fastxent documents that ignore_index does not apply to them, so the loss is
        # PyTorch's without it.
        with pytest.raises(RuntimeError, match="ignore_index"):
            torch_cross_entropy(logits, target, axis=1, ignore_index=ignore_index, **options)
        options["ignore_index"] = ignore_index
    assert_parity(logits, target, rtol, atol, axis=1, torch_kwargs=torch_options, **options)


# --------------------------------------------------------------------------------------
# Odd shapes
# --------------------------------------------------------------------------------------

#: Logits shapes, classes on axis 1: N-D with C = 423 (960 samples), a prime C, one row of
#: two classes, and a single class in 2-D and N-D.
ODD_SHAPES = [
    pytest.param((3, 423, 320), id="3x423x320"),
    pytest.param((5, 1009), id="5x1009"),
    pytest.param((1, 2), id="1x2"),
    pytest.param((6, 1), id="C1-2d"),
    pytest.param((2, 1, 3), id="C1-3d"),
]


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("all_options", [False, True], ids=["plain", "weight-ignore-smooth"])
@pytest.mark.parametrize("shape", ODD_SHAPES)
@pytest.mark.parametrize(("dtype", "rtol", "atol"), NATIVE_TOLERANCES)
def test_odd_shapes_integer_targets(dtype, rtol, atol, shape, all_options, reduction, rng):
    n_classes = shape[1]
    logits = make_logits(rng, shape, dtype)
    labels = make_labels(rng, shape[:1] + shape[2:], n_classes)
    options = {"reduction": reduction}
    if all_options:
        # The last class is ignored (or -100 with a single class, where class 0 is every
        # target); it is put on every third sample from the second on.
        ignore = n_classes - 1 if n_classes > 1 else -100
        labels.reshape(-1)[1::3] = ignore
        options.update(weight=make_weight(rng, n_classes), ignore_index=ignore)
        options["label_smoothing"] = 0.1
    assert_parity(logits, labels, rtol, atol, axis=1, **options)


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("all_options", [False, True], ids=["plain", "weight-smooth"])
@pytest.mark.parametrize("shape", ODD_SHAPES)
@pytest.mark.parametrize(("dtype", "rtol", "atol"), NATIVE_TOLERANCES)
def test_odd_shapes_probability_targets(dtype, rtol, atol, shape, all_options, reduction, rng):
    logits = make_logits(rng, shape, dtype)
    target = make_probabilities(rng, shape, axis=1, dtype=dtype)
    options = {"reduction": reduction}
    if all_options:
        options.update(weight=make_weight(rng, shape[1]), label_smoothing=0.1)
    assert_parity(logits, target, rtol, atol, axis=1, **options)


# --------------------------------------------------------------------------------------
# One LLM-sized case: 3 x 423 tokens over a 32000-word vocabulary, float32 (~160 MB)
# --------------------------------------------------------------------------------------

LARGE_SHAPE = (3, 423, 32000)
LARGE_IGNORE = 7
#: float32's usual tolerance still holds at C = 32000: the largest difference from PyTorch
#: is ~0.4 of it (PyTorch's own float32 loss error there is ~2e-6 relative, see
#: test_float32_loss_not_less_accurate_than_torch).
LARGE_RTOL, LARGE_ATOL = 1e-5, 1e-6


@pytest.fixture(scope="module")
def large_case():
    """float32 logits ``(3, 423, 32000)`` (classes last), targets, weights, ignore_index."""
    rng = np.random.default_rng(32000)
    logits = rng.standard_normal(LARGE_SHAPE, dtype=np.float32)
    logits *= np.float32(3.0)
    labels = rng.integers(0, LARGE_SHAPE[-1], size=LARGE_SHAPE[:-1])
    labels[:, ::10] = LARGE_IGNORE  # every tenth token is padding
    weight = make_weight(rng, LARGE_SHAPE[-1])
    return logits, labels, weight


@pytest.mark.slow
@pytest.mark.parametrize("reduction", ["mean", "none"])
def test_large_vocabulary_float32(large_case, reduction):
    logits, labels, weight = large_case
    n_classes = LARGE_SHAPE[-1]
    options = {
        "weight": weight,
        "ignore_index": LARGE_IGNORE,
        "label_smoothing": 0.1,
        "reduction": reduction,
    }
    # PyTorch sees the same memory as (1269, 32000) rows: no transposed copy.
    z = torch.from_numpy(logits.reshape(-1, n_classes)).requires_grad_(True)
    torch_loss = F.cross_entropy(
        z,
        torch.from_numpy(labels.reshape(-1)),
        weight=torch.from_numpy(weight.astype(np.float32)),
        ignore_index=LARGE_IGNORE,
        label_smoothing=0.1,
        reduction=reduction,
    )
    (torch_loss.sum() if reduction == "none" else torch_loss).backward()
    expected_loss = torch_loss.detach().numpy().reshape(labels.shape if reduction == "none" else ())
    expected_grad = z.grad.numpy().reshape(LARGE_SHAPE)
    del z, torch_loss
    saved = logits.copy()

    loss = fastxent.cross_entropy(logits, labels, axis=-1, **options)
    np.testing.assert_allclose(loss, expected_loss, rtol=LARGE_RTOL, atol=LARGE_ATOL)
    loss, grad = fastxent.cross_entropy_with_grad(logits, labels, axis=-1, **options)
    assert np.shape(loss) == expected_loss.shape
    assert grad.dtype == np.float32 and grad.shape == LARGE_SHAPE
    np.testing.assert_allclose(loss, expected_loss, rtol=LARGE_RTOL, atol=LARGE_ATOL)
    if reduction == "none":
        assert np.all(loss[labels == LARGE_IGNORE] == 0.0)
    assert np.all(grad[labels == LARGE_IGNORE] == 0.0)
    assert_gradient(grad, expected_grad, LARGE_RTOL, LARGE_ATOL)
    assert np.array_equal(logits, saved)  # the module-scoped input is shared by both tests


# --------------------------------------------------------------------------------------
# binary_cross_entropy: F.binary_cross_entropy_with_logits
# --------------------------------------------------------------------------------------


TORCH_WEIGHT_KINDS = [
    pytest.param("none", id="no-weight"),
    pytest.param("full", id="elementwise-weight"),
    pytest.param("column", id="per-class-weight"),
    pytest.param("row", id="per-row-weight"),
    pytest.param("scalar", id="scalar-weight"),
]


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("pos_weight_kind", ["none", "per-class", "broadcast"])
@pytest.mark.parametrize("weight_kind", TORCH_WEIGHT_KINDS)
@pytest.mark.parametrize("shape", [(6, 5), (2, 3, 4)], ids=str)
@pytest.mark.parametrize(("dtype", "rtol", "atol"), NATIVE_TOLERANCES)
def test_binary_matches_torch(
    dtype: Any,
    rtol: float,
    atol: float,
    shape: tuple[int, ...],
    weight_kind: str,
    pos_weight_kind: str,
    reduction: str,
) -> None:
    """Every weight x pos_weight x reduction combination against PyTorch, loss and gradient."""
    logits, target = make_binary_inputs(shape, dtype, hard=False, seed=17)
    # Weights rounded to the logits' dtype, so that both libraries see the same numbers.
    weight = make_binary_weight(weight_kind, shape)
    if weight is not None:
        weight = np.asarray(weight, dtype=dtype)
    pos_weight = None
    if pos_weight_kind != "none":
        # One per class on the last axis, or on the first axis (PyTorch broadcasts it).
        pos_shape = (
            (shape[-1],)
            if pos_weight_kind == "per-class"
            else (shape[0],) + (1,) * (len(shape) - 1)
        )
        pos_weight = (3.0 * np.random.default_rng(8).random(pos_shape)).astype(dtype)

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


def test_binary_matches_torch_float32() -> None:
    logits, target = make_binary_inputs((64, 10), np.float32, hard=False, seed=23)
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


# --------------------------------------------------------------------------------------
# kl_divergence: F.kl_div of log_softmax, "batchmean"
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("shape", [(6, 5), (1, 7), (64, 3)], ids=str)
def test_kl_matches_torch_batchmean(shape, reduction):
    logits = (3.0 * np.random.default_rng(18).standard_normal(shape)).astype(np.float64)
    # Rows of q that sum to 1 with exact zeros: PyTorch's kl_div uses xlogy, 0 log 0 = 0.
    raw = np.random.default_rng(19).random(shape)
    raw[raw < 0.25] = 0.0
    raw[:, :1] += 0.01  # every row keeps some mass
    q = raw / raw.sum(axis=-1, keepdims=True)
    torch_reduction = {"mean": "batchmean", "sum": "sum", "none": "none"}[reduction]
    expected = F.kl_div(
        torch.log_softmax(torch.tensor(logits), dim=-1), torch.tensor(q), reduction=torch_reduction
    ).numpy()
    if reduction == "none":  # PyTorch's "none" is elementwise: sum over the classes
        expected = expected.sum(axis=-1)
    loss = fastxent.kl_divergence(logits, q, reduction=reduction)
    if reduction == "none":
        assert isinstance(loss, np.ndarray) and loss.shape == shape[:-1]
    else:
        assert type(loss) is np.float64, type(loss)
    assert_result(loss, expected, np.float64, 1e-12, 1e-14)


# --------------------------------------------------------------------------------------
# float32 accuracy: at least as close to the exact loss as PyTorch's float32
# --------------------------------------------------------------------------------------


def test_float32_loss_not_less_accurate_than_torch():
    """Per-row float32 loss error against the exact loss: fastxent's max <= PyTorch's max."""
    n_classes = 32000
    rng = np.random.default_rng(64)
    logits = (5.0 * rng.standard_normal((64, n_classes))).astype(np.float32)
    labels = rng.integers(0, n_classes, size=64)
    # The exact loss of the float32 inputs (independent of both libraries).
    exact = exact_rows(logits, labels).loss

    ours = fastxent.cross_entropy(logits, labels, reduction="none")
    theirs = F.cross_entropy(
        torch.from_numpy(logits), torch.from_numpy(labels), reduction="none"
    ).numpy()
    assert ours.dtype == np.float32 and theirs.dtype == np.float32
    our_error = float(np.max(np.abs(ours.astype(np.float64) - exact)))
    their_error = float(np.max(np.abs(theirs.astype(np.float64) - exact)))
    assert our_error <= their_error, (our_error, their_error)
    # Not a vacuous comparison: both are float32 results of ~20 with a few ulps of error.
    assert their_error < 1e-4
