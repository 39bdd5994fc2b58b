"""cross_entropy and cross_entropy_with_grad against the NumPy reference."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
from conftest import (
    NATIVE_TOLERANCES,
    SHAPES_2D,
    assert_result,
    assert_scalar,
    make_labels,
    make_logits,
    make_probabilities,
    parallel_rows,
    result_dtype,
    rows_from_memory,
    rows_in_tiles,
    tile_rows,
)

import fastxent
from fastxent import reference
from fastxent._tuning import FORWARD_TILE_CLASSES, SHORT_ROW, SUM_VECTOR, THRESHOLDS, WHOLE_ROW

REDUCTIONS = ["mean", "sum", "none"]
#: Rows of at most WHOLE_ROW classes, in an input beyond the in-cache size: from memory.
FROM_MEMORY = (rows_from_memory(1000), 1000)


def _copy(value):
    return value.copy() if isinstance(value, np.ndarray) else value


def _batch_shape(logits: np.ndarray, axis: int) -> tuple[int, ...]:
    axis %= logits.ndim
    return logits.shape[:axis] + logits.shape[axis + 1 :]


def check_loss(loss, expected, dtype, rtol, atol, reduction, batch_shape):
    """A reduced loss is a NumPy scalar of the result dtype; "none" an array shaped like
    the batch."""
    rdtype = result_dtype(dtype)
    if reduction == "none":
        assert isinstance(loss, np.ndarray)
        assert_result(loss, expected, rdtype, rtol, atol, shape=batch_shape)
    else:
        assert_scalar(loss, rdtype)
        assert_result(loss, expected, rdtype, rtol, atol, shape=())


def check(logits, target, dtype, rtol, atol, **kwargs):
    """Loss and gradient of fastxent against the reference; inputs are not modified.

    Returns ``(loss, grad)`` from ``cross_entropy_with_grad``.
    """
    reduction = kwargs.get("reduction", "mean")
    axis = kwargs.get("axis", -1)
    batch_shape = _batch_shape(logits, axis)
    weight = kwargs.get("weight")
    saved = [_copy(v) for v in (logits, target, weight)]

    expected_loss, expected_grad = reference.cross_entropy_with_grad(logits, target, **kwargs)

    loss = fastxent.cross_entropy(logits, target, **kwargs)
    check_loss(loss, expected_loss, dtype, rtol, atol, reduction, batch_shape)

    loss2, grad = fastxent.cross_entropy_with_grad(logits, target, **kwargs)
    check_loss(loss2, expected_loss, dtype, rtol, atol, reduction, batch_shape)
    assert isinstance(grad, np.ndarray)
    assert_result(grad, expected_grad, result_dtype(dtype), rtol, atol, shape=logits.shape)
    # The loss of the forward-only and the fused kernels agree to rounding.
    np.testing.assert_allclose(loss2, loss, rtol=rtol, atol=atol)

    for before, after in zip(saved, (logits, target, weight), strict=True):
        if isinstance(before, np.ndarray):
            np.testing.assert_array_equal(after, before)
            assert after.dtype == before.dtype
    return loss2, grad


# --------------------------------------------------------------------------------------
# Shapes, dtypes and target kinds
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize(("dtype", "rtol", "atol"), NATIVE_TOLERANCES)
@pytest.mark.parametrize("shape", SHAPES_2D)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("kind", ["index", "probability"])
def test_matches_reference(dtype, rtol, atol, shape, reduction, kind, rng):
    logits = make_logits(rng, shape, dtype)
    if kind == "index":
        target = make_labels(rng, shape[:1], shape[1])
    else:
        target = make_probabilities(rng, shape, dtype=dtype)
    check(logits, target, dtype, rtol, atol, reduction=reduction)


@pytest.mark.parametrize(("dtype", "rtol", "atol"), [pytest.param(np.float16, 1e-5, 1e-6)])
@pytest.mark.parametrize("kind", ["index", "probability"])
def test_float16_computed_in_float32(dtype, rtol, atol, kind, rng):
    logits = make_logits(rng, (9, 17), dtype)
    if kind == "index":
        target = make_labels(rng, (9,), 17)
    else:
        target = make_probabilities(rng, (9, 17), dtype=np.float16)
    for reduction in REDUCTIONS:
        check(logits, target, dtype, rtol, atol, reduction=reduction)


@pytest.mark.parametrize(("dtype", "rtol", "atol"), NATIVE_TOLERANCES)
@pytest.mark.parametrize(
    "label_dtype", [np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint64]
)
def test_integer_target_dtypes(dtype, rtol, atol, label_dtype, rng):
    logits = make_logits(rng, (11, 7), dtype)
    labels = make_labels(rng, (11,), 7, label_dtype)
    loss, grad = check(logits, labels, dtype, rtol, atol, reduction="none")
    # every integer dtype gives exactly the int64 answer
    loss64, grad64 = fastxent.cross_entropy_with_grad(
        logits, labels.astype(np.int64), reduction="none"
    )
    np.testing.assert_array_equal(loss, loss64)
    np.testing.assert_array_equal(grad, grad64)


@pytest.mark.parametrize(("dtype", "rtol", "atol"), NATIVE_TOLERANCES)
@pytest.mark.parametrize("label_dtype", [np.int8, np.int32])
def test_signed_small_label_dtype_with_ignore_index(dtype, rtol, atol, label_dtype, rng):
    logits = make_logits(rng, (6, 5), dtype)
    labels = np.array([0, -100, 4, 2, -100, 1], dtype=label_dtype)
    for reduction in REDUCTIONS:
        check(logits, labels, dtype, rtol, atol, reduction=reduction)


@pytest.mark.parametrize(("dtype", "rtol", "atol"), NATIVE_TOLERANCES)
@pytest.mark.parametrize("kind", ["index", "probability"])
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_one_dimensional_logits(dtype, rtol, atol, kind, reduction, rng):
    logits = make_logits(rng, (13,), dtype)
    target = np.array(4) if kind == "index" else make_probabilities(rng, (13,), dtype=dtype)
    loss, grad = check(logits, target, dtype, rtol, atol, reduction=reduction)
    assert np.shape(loss) == ()
    assert grad.shape == (13,)


@pytest.mark.parametrize(("dtype", "rtol", "atol"), NATIVE_TOLERANCES)
@pytest.mark.parametrize("kind", ["index", "probability"])
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("axis", [1, 0, -1, -3, 3])
def test_n_dimensional(dtype, rtol, atol, kind, reduction, axis, rng):
    shape = (4, 5, 3, 6)
    logits = make_logits(rng, shape, dtype)
    n_classes = shape[axis]
    batch_shape = _batch_shape(logits, axis)
    if kind == "index":
        target = make_labels(rng, batch_shape, n_classes)
        target.reshape(-1)[::7] = -100
    else:
        target = make_probabilities(rng, shape, axis=axis, dtype=dtype)
    loss, grad = check(logits, target, dtype, rtol, atol, reduction=reduction, axis=axis)
    if reduction == "none":
        assert loss.shape == batch_shape


@pytest.mark.parametrize(("dtype", "rtol", "atol"), NATIVE_TOLERANCES)
def test_pytorch_layout_axis1(dtype, rtol, atol, rng):
    """(N, C, d1, d2) with targets (N, d1, d2): each pixel is its own sample."""
    logits = make_logits(rng, (2, 4, 3, 5), dtype)
    labels = make_labels(rng, (2, 3, 5), 4)
    loss, grad = check(logits, labels, dtype, rtol, atol, reduction="none", axis=1)
    # Per pixel, the same as the 2-D loss of logits[n, :, i, j].
    rows = np.moveaxis(logits, 1, -1).reshape(-1, 4)
    flat_loss, flat_grad = fastxent.cross_entropy_with_grad(
        rows, labels.reshape(-1), reduction="none"
    )
    np.testing.assert_allclose(loss.reshape(-1), flat_loss, rtol=rtol, atol=atol)
    np.testing.assert_allclose(
        np.moveaxis(grad, 1, -1).reshape(-1, 4), flat_grad, rtol=rtol, atol=atol
    )


@pytest.mark.parametrize(("dtype", "rtol", "atol"), NATIVE_TOLERANCES)
@pytest.mark.parametrize("kind", ["index", "probability"])
def test_non_contiguous_logits(dtype, rtol, atol, kind, rng):
    base = make_logits(rng, (10, 18), dtype)
    fortran = np.asfortranarray(base)
    read_only = base.copy()
    read_only.flags.writeable = False
    cases = [
        (base[:, ::2], -1),
        (base[::2], -1),
        (base[::-1], -1),
        (base.T, 0),
        (fortran, -1),
        (read_only, -1),
    ]
    for logits, axis in cases:
        n_classes = logits.shape[axis]
        if kind == "index":
            target = make_labels(rng, _batch_shape(logits, axis), n_classes)
        else:
            target = make_probabilities(rng, logits.shape, axis=axis, dtype=dtype)
        for reduction in REDUCTIONS:
            check(logits, target, dtype, rtol, atol, reduction=reduction, axis=axis)


@pytest.mark.parametrize(("dtype", "rtol", "atol"), NATIVE_TOLERANCES)
def test_non_contiguous_target_and_weight(dtype, rtol, atol, rng):
    logits = make_logits(rng, (8, 6), dtype)
    labels = make_labels(rng, (16,), 6)[::2]
    weight = rng.random(12)[::2]
    probabilities = np.asfortranarray(make_probabilities(rng, (8, 6), dtype=dtype))
    check(logits, labels, dtype, rtol, atol, weight=weight, reduction="mean")
    check(logits, probabilities, dtype, rtol, atol, weight=weight, reduction="mean")


@pytest.mark.parametrize(("dtype", "rtol", "atol"), NATIVE_TOLERANCES)
def test_non_contiguous_parallel_size(dtype, rtol, atol, rng):
    n_rows = parallel_rows(601)
    base = make_logits(rng, (n_rows, 1202), dtype)
    logits = base[:, ::2]  # n_rows x 601 elements: the multi-threaded kernels
    labels = make_labels(rng, (n_rows,), 601)
    labels[::5] = -100
    check(logits, labels, dtype, rtol, atol, weight=rng.random(601), label_smoothing=0.1)
    check(logits.T, labels, dtype, rtol, atol, axis=0, reduction="none")


# --------------------------------------------------------------------------------------
# Options: base, weight, ignore_index, label_smoothing
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize(("dtype", "rtol", "atol"), NATIVE_TOLERANCES)
@pytest.mark.parametrize("base", [None, 2, 10, math.e, 0.5])
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("kind", ["index", "probability"])
def test_base(dtype, rtol, atol, base, reduction, kind, rng):
    logits = make_logits(rng, (9, 5), dtype)
    if kind == "index":
        target = make_labels(rng, (9,), 5)
    else:
        target = make_probabilities(rng, (9, 5), dtype=dtype)
    loss, grad = check(logits, target, dtype, rtol, atol, reduction=reduction, base=base)
    # base b divides the natural-log loss and gradient by ln b
    ln_b = 1.0 if base is None else math.log(base)
    natural, natural_grad = reference.cross_entropy_with_grad(logits, target, reduction=reduction)
    assert_result(loss, np.asarray(natural, np.float64) / ln_b, result_dtype(dtype), rtol, atol)
    assert_result(grad, natural_grad.astype(np.float64) / ln_b, result_dtype(dtype), rtol, atol)


@pytest.mark.parametrize(("dtype", "rtol", "atol"), NATIVE_TOLERANCES)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("kind", ["index", "probability"])
def test_weight(dtype, rtol, atol, reduction, kind, rng):
    logits = make_logits(rng, (12, 7), dtype)
    weight = rng.random(7) * 3
    weight[3] = 0.0
    if kind == "index":
        target = make_labels(rng, (12,), 7)
        target[:3] = 3  # zero-weight class
    else:
        target = make_probabilities(rng, (12, 7), dtype=dtype)
    check(logits, target, dtype, rtol, atol, weight=weight, reduction=reduction)


@pytest.mark.parametrize(("dtype", "rtol", "atol"), NATIVE_TOLERANCES)
def test_weight_as_list_and_integer_array(dtype, rtol, atol, rng):
    logits = make_logits(rng, (6, 3), dtype)
    labels = np.array([0, 1, 2, 2, 1, 0])
    check(logits, labels, dtype, rtol, atol, weight=[1.0, 2.0, 0.5])
    check(logits, labels, dtype, rtol, atol, weight=np.array([1, 2, 3]))


def test_weighted_mean_hand_worked():
    # docs/semantics.md: (3 * 0.4076 + 1 * 1.0986) / (3 + 1) = 0.5804
    z = np.array([[1.0, 2.0, 3.0], [1.0, 1.0, 1.0]])
    l0 = math.log(math.exp(1) + math.exp(2) + math.exp(3)) - 3.0
    l1 = math.log(3.0)
    none = fastxent.cross_entropy(z, np.array([2, 0]), reduction="none")
    np.testing.assert_allclose(none, [l0, l1], rtol=1e-14)
    loss = fastxent.cross_entropy(z, np.array([2, 0]), weight=np.array([1.0, 1.0, 3.0]))
    np.testing.assert_allclose(loss, (3 * l0 + l1) / 4, rtol=1e-14)
    assert round(float(loss), 4) == 0.5804


@pytest.mark.parametrize(("dtype", "rtol", "atol"), NATIVE_TOLERANCES)
@pytest.mark.parametrize("ignore_index", [-100, 2, 0])
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_ignore_index(dtype, rtol, atol, ignore_index, reduction, rng):
    logits = make_logits(rng, (10, 4), dtype)
    labels = np.array([0, 1, 2, 3, ignore_index, 1, ignore_index, 2, 3, 0])
    loss, grad = check(
        logits, labels, dtype, rtol, atol, ignore_index=ignore_index, reduction=reduction
    )
    ignored = labels == ignore_index
    assert np.all(grad[ignored] == 0)
    if reduction == "none":
        assert np.all(loss[ignored] == 0)
    if reduction == "mean":
        # The denominator counts only the rows that are not ignored.
        kept = fastxent.cross_entropy(logits[~ignored], labels[~ignored], reduction="mean")
        np.testing.assert_allclose(loss, kept, rtol=rtol, atol=atol)


@pytest.mark.parametrize(("dtype", "rtol", "atol"), NATIVE_TOLERANCES)
def test_ignore_index_does_not_apply_to_probability_targets(dtype, rtol, atol, rng):
    logits = make_logits(rng, (5, 4), dtype)
    probabilities = make_probabilities(rng, (5, 4), dtype=dtype)
    loss, _ = check(logits, probabilities, dtype, rtol, atol, ignore_index=0, reduction="none")
    assert np.all(loss > 0)


@pytest.mark.parametrize(("dtype", "rtol", "atol"), NATIVE_TOLERANCES)
@pytest.mark.parametrize("smoothing", [0.0, 0.1, 1.0])
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("kind", ["index", "probability"])
def test_label_smoothing(dtype, rtol, atol, smoothing, reduction, kind, rng):
    logits = make_logits(rng, (9, 6), dtype)
    if kind == "index":
        target = make_labels(rng, (9,), 6)
    else:
        target = make_probabilities(rng, (9, 6), dtype=dtype)
    check(logits, target, dtype, rtol, atol, label_smoothing=smoothing, reduction=reduction)


@pytest.mark.parametrize(("dtype", "rtol", "atol"), NATIVE_TOLERANCES)
def test_full_smoothing_ignores_the_label(dtype, rtol, atol, rng):
    # eps = 1: every class gets 1/C whatever the label, so the labels do not matter.
    logits = make_logits(rng, (7, 5), dtype)
    a = fastxent.cross_entropy(logits, np.zeros(7, np.int64), label_smoothing=1.0, reduction="none")
    b = fastxent.cross_entropy(logits, np.full(7, 4), label_smoothing=1.0, reduction="none")
    np.testing.assert_allclose(a, b, rtol=rtol, atol=atol)
    uniform = -np.mean(reference.log_softmax(logits.astype(np.float64)), axis=-1)
    assert_result(a, uniform, result_dtype(dtype), rtol, atol)


@pytest.mark.parametrize(("dtype", "rtol", "atol"), NATIVE_TOLERANCES)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("ignore_index", [-100, 1])
@pytest.mark.parametrize("base", [None, 2])
def test_weight_ignore_index_and_smoothing_together(
    dtype, rtol, atol, reduction, ignore_index, base, rng
):
    logits = make_logits(rng, (15, 6), dtype)
    labels = make_labels(rng, (15,), 6)
    labels[[2, 5, 11]] = ignore_index
    weight = rng.random(6) + 0.25
    loss, grad = check(
        logits,
        labels,
        dtype,
        rtol,
        atol,
        weight=weight,
        ignore_index=ignore_index,
        label_smoothing=0.1,
        reduction=reduction,
        base=base,
    )
    assert np.all(grad[labels == ignore_index] == 0)


@pytest.mark.parametrize(("dtype", "rtol", "atol"), NATIVE_TOLERANCES)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize(
    "shape", [(8, 5), FROM_MEMORY], ids=["8x5", "{}x{}-from-memory".format(*FROM_MEMORY)]
)
def test_probability_target_weight_and_smoothing(dtype, rtol, atol, reduction, shape, rng):
    """The larger input is over the in-cache size: rows one by one, ``exp`` once per
    element."""
    logits = make_logits(rng, shape, dtype)
    probabilities = make_probabilities(rng, shape, dtype=dtype)
    check(
        logits,
        probabilities,
        dtype,
        rtol,
        atol,
        weight=rng.random(shape[1]) + 0.1,
        label_smoothing=0.2,
        reduction=reduction,
        base=10,
    )


@pytest.mark.parametrize(("dtype", "rtol", "atol"), NATIVE_TOLERANCES)
def test_probability_target_in_other_float_dtype(dtype, rtol, atol, rng):
    logits = make_logits(rng, (6, 4), dtype)
    other = np.float32 if dtype == np.float64 else np.float64
    probabilities = make_probabilities(rng, (6, 4), dtype=other)
    check(logits, probabilities, dtype, rtol, atol, reduction="none")


# --------------------------------------------------------------------------------------
# The gradient's out=
# --------------------------------------------------------------------------------------

OUT_OPTIONS = [
    pytest.param({}, id="plain"),
    pytest.param(
        {"weight": np.array([0.5, 2.0, 1.0, 0.0, 3.0]), "label_smoothing": 0.1}, id="options"
    ),
]


@pytest.mark.parametrize(("dtype", "rtol", "atol"), NATIVE_TOLERANCES)
@pytest.mark.parametrize("options", OUT_OPTIONS)
@pytest.mark.parametrize("kind", ["index", "probability"])
def test_out_empty_like(dtype, rtol, atol, options, kind, rng):
    logits = make_logits(rng, (7, 5), dtype)
    target = make_labels(rng, (7,), 5) if kind == "index" else make_probabilities(rng, (7, 5))
    expected_loss, expected = reference.cross_entropy_with_grad(logits, target, **options)
    out = np.full_like(logits, np.nan)
    saved = logits.copy()
    loss, grad = fastxent.cross_entropy_with_grad(logits, target, out=out, **options)
    assert grad is out
    assert_result(out, expected, dtype, rtol, atol)
    assert_result(loss, expected_loss, dtype, rtol, atol)
    np.testing.assert_array_equal(logits, saved)


@pytest.mark.parametrize(("dtype", "rtol", "atol"), NATIVE_TOLERANCES)
@pytest.mark.parametrize("options", OUT_OPTIONS)
@pytest.mark.parametrize("kind", ["index", "probability"])
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("shape", [(7, 5), (parallel_rows(605), 605)], ids=["small", "parallel"])
def test_out_is_logits(dtype, rtol, atol, options, kind, reduction, shape, rng):
    n_classes = shape[1]
    options = dict(options)
    if "weight" in options:
        options["weight"] = rng.random(n_classes)
    logits = make_logits(rng, shape, dtype)
    if kind == "index":
        target = make_labels(rng, shape[:1], n_classes)
    else:
        target = make_probabilities(rng, shape, dtype=dtype)
    original = logits.copy()
    expected_loss, expected = fastxent.cross_entropy_with_grad(
        original.copy(), target, reduction=reduction, **options
    )
    ref_loss, ref_grad = reference.cross_entropy_with_grad(
        original, target, reduction=reduction, **options
    )
    loss, grad = fastxent.cross_entropy_with_grad(
        logits, target, out=logits, reduction=reduction, **options
    )
    assert grad is logits
    # The loss comes from the original values, the logits now hold the gradient. To the
    # last bits: on a loaded machine the parallel kernel's loss for a row has differed by
    # one ulp between two calls (a wrong loss from overwritten logits would be far off).
    eps = np.finfo(np.asarray(expected_loss).dtype).eps
    np.testing.assert_allclose(loss, expected_loss, rtol=4 * eps, atol=0)
    np.testing.assert_allclose(logits, expected, rtol=rtol, atol=atol)
    assert_result(logits, ref_grad, dtype, rtol, atol)
    check_loss(loss, ref_loss, dtype, rtol, atol, reduction, shape[:1])


@pytest.mark.parametrize(("dtype", "rtol", "atol"), NATIVE_TOLERANCES)
@pytest.mark.parametrize("axis", [0, 1, -1])
def test_out_is_logits_n_dimensional(dtype, rtol, atol, axis, rng):
    logits = make_logits(rng, (3, 4, 5), dtype)
    labels = make_labels(rng, _batch_shape(logits, axis), logits.shape[axis])
    _, expected = reference.cross_entropy_with_grad(logits.copy(), labels, axis=axis)
    _, grad = fastxent.cross_entropy_with_grad(logits, labels, axis=axis, out=logits)
    assert grad is logits
    assert_result(logits, expected, dtype, rtol, atol)


@pytest.mark.parametrize(("dtype", "rtol", "atol"), NATIVE_TOLERANCES)
def test_out_is_logits_non_contiguous(dtype, rtol, atol, rng):
    # Transposed logits (class axis 0, memory not in row layout) overwritten in place.
    storage = make_logits(rng, (6, 9), dtype)
    logits = storage.T  # (9, 6), classes along axis 0 for axis=0
    labels = make_labels(rng, (6,), 9)
    _, expected = reference.cross_entropy_with_grad(logits.copy(), labels, axis=0)
    _, grad = fastxent.cross_entropy_with_grad(logits, labels, axis=0, out=logits)
    assert grad is logits
    assert_result(logits, expected, dtype, rtol, atol)
    assert_result(storage, expected.T, dtype, rtol, atol)


@pytest.mark.parametrize(("dtype", "rtol", "atol"), NATIVE_TOLERANCES)
@pytest.mark.parametrize("kind", ["index", "probability"])
def test_out_non_contiguous_layout(dtype, rtol, atol, kind, rng):
    logits = make_logits(rng, (7, 5), dtype)
    target = make_labels(rng, (7,), 5) if kind == "index" else make_probabilities(rng, (7, 5))
    _, expected = reference.cross_entropy_with_grad(logits, target, reduction="sum")
    layouts = {
        "transposed": np.full((5, 7), np.nan, dtype).T,
        "fortran": np.full((7, 5), np.nan, dtype, order="F"),
        "strided": np.full((7, 10), np.nan, dtype)[:, ::2],
    }
    for name, out in layouts.items():
        assert out.shape == logits.shape and not out.flags.c_contiguous, name
        _, grad = fastxent.cross_entropy_with_grad(logits, target, reduction="sum", out=out)
        assert grad is out, name
        assert_result(out, expected, dtype, rtol, atol)
    # The unused half of the strided buffer is left alone.
    base = np.full((7, 10), -7.0, dtype)
    fastxent.cross_entropy_with_grad(logits, target, reduction="sum", out=base[:, ::2])
    assert np.all(base[:, 1::2] == -7.0)


def test_out_for_float16_logits_is_float32(rng):
    logits = make_logits(rng, (4, 3), np.float16)
    labels = np.array([0, 2, 1, 1])
    _, expected = reference.cross_entropy_with_grad(logits, labels)
    out = np.empty((4, 3), np.float32)
    _, grad = fastxent.cross_entropy_with_grad(logits, labels, out=out)
    assert grad is out
    assert_result(out, expected, np.float32, 1e-5, 1e-6)


# --------------------------------------------------------------------------------------
# Empty batches and all-ignored batches
# --------------------------------------------------------------------------------------


def _loss_of_with_grad(*args, **kwargs):
    return fastxent.cross_entropy_with_grad(*args, **kwargs)[0]


@pytest.mark.parametrize(("dtype", "rtol", "atol"), NATIVE_TOLERANCES)
@pytest.mark.parametrize("kind", ["index", "probability"])
def test_empty_batch(dtype, rtol, atol, kind):
    logits = np.empty((0, 5), dtype)
    target = np.empty((0,), np.int64) if kind == "index" else np.empty((0, 5), dtype)
    for function in (fastxent.cross_entropy, _loss_of_with_grad):
        mean = function(logits, target, reduction="mean")
        assert_scalar(mean, dtype)
        assert np.isnan(mean)
        total = function(logits, target, reduction="sum")
        assert_scalar(total, dtype)
        assert total == 0
        none = function(logits, target, reduction="none")
        assert isinstance(none, np.ndarray)
        assert none.shape == (0,) and none.dtype == dtype
    for reduction in REDUCTIONS:
        _, grad = fastxent.cross_entropy_with_grad(logits, target, reduction=reduction)
        assert grad.shape == (0, 5) and grad.dtype == dtype


@pytest.mark.parametrize(("dtype", "rtol", "atol"), NATIVE_TOLERANCES)
def test_empty_batch_n_dimensional(dtype, rtol, atol):
    logits = np.empty((2, 4, 0), dtype)
    labels = np.empty((2, 0), np.int64)
    none = fastxent.cross_entropy(logits, labels, axis=1, reduction="none")
    assert none.shape == (2, 0) and none.dtype == dtype
    assert np.isnan(fastxent.cross_entropy(logits, labels, axis=1))


@pytest.mark.parametrize(("dtype", "rtol", "atol"), NATIVE_TOLERANCES)
@pytest.mark.parametrize("ignore_index", [-100, 3])
@pytest.mark.parametrize("options", [{}, {"weight": [1.0, 2.0, 3.0, 4.0], "label_smoothing": 0.2}])
def test_all_rows_ignored(dtype, rtol, atol, ignore_index, options, rng):
    logits = make_logits(rng, (5, 4), dtype)
    labels = np.full(5, ignore_index)
    mean, grad = fastxent.cross_entropy_with_grad(
        logits, labels, ignore_index=ignore_index, **options
    )
    assert_scalar(mean, dtype)
    assert np.isnan(mean)
    assert grad.dtype == dtype
    np.testing.assert_array_equal(grad, np.zeros((5, 4)))
    assert np.isnan(fastxent.cross_entropy(logits, labels, ignore_index=ignore_index, **options))
    total, grad = fastxent.cross_entropy_with_grad(
        logits, labels, ignore_index=ignore_index, reduction="sum", **options
    )
    assert_scalar(total, dtype)
    assert total == 0
    np.testing.assert_array_equal(grad, np.zeros((5, 4)))
    none = fastxent.cross_entropy(
        logits, labels, ignore_index=ignore_index, reduction="none", **options
    )
    np.testing.assert_array_equal(none, np.zeros(5))
    check(logits, labels, dtype, rtol, atol, ignore_index=ignore_index, **options)


@pytest.mark.parametrize(("dtype", "rtol", "atol"), NATIVE_TOLERANCES)
def test_zero_total_weight_mean_is_nan(dtype, rtol, atol, rng):
    # PyTorch divides 0 by 0: the loss and, through its log-softmax backward, every
    # entry of the counted rows' gradient are nan (tests/test_conformance.py has more).
    logits = make_logits(rng, (4, 3), dtype)
    labels = np.array([0, 0, 0, -100])
    mean, grad = fastxent.cross_entropy_with_grad(logits, labels, weight=[0.0, 1.0, 1.0])
    assert np.isnan(mean)
    assert np.isnan(grad[:3]).all()
    np.testing.assert_array_equal(grad[3], np.zeros(3))


# --------------------------------------------------------------------------------------
# Return types and hand-worked values
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("dtype", "expected"),
    [(np.float16, np.float32), (np.float32, np.float32), (np.float64, np.float64)],
)
@pytest.mark.parametrize("kind", ["index", "probability"])
def test_return_types(dtype, expected, kind, rng):
    logits = make_logits(rng, (3, 2, 4), dtype)
    target = make_labels(rng, (3, 2), 4) if kind == "index" else make_probabilities(rng, (3, 2, 4))
    for reduction in ("mean", "sum"):
        assert_scalar(fastxent.cross_entropy(logits, target, reduction=reduction), expected)
        loss, grad = fastxent.cross_entropy_with_grad(logits, target, reduction=reduction)
        assert_scalar(loss, expected)
        assert type(grad) is np.ndarray and grad.dtype == expected and grad.shape == (3, 2, 4)
    none = fastxent.cross_entropy(logits, target, reduction="none")
    assert type(none) is np.ndarray and none.dtype == expected and none.shape == (3, 2)


@pytest.mark.parametrize(("dtype", "rtol", "atol"), NATIVE_TOLERANCES)
def test_two_classes_hand_worked(dtype, rtol, atol):
    # logits (0, 0): loss ln 2, gradient (-1/2, 1/2) for label 0
    loss, grad = fastxent.cross_entropy_with_grad(np.zeros((1, 2), dtype), np.array([0]))
    assert_result(loss, math.log(2), dtype, rtol, atol)
    assert_result(grad, [[-0.5, 0.5]], dtype, rtol, atol)
    # base 2: exactly one bit
    loss = fastxent.cross_entropy(np.zeros((1, 2), dtype), np.array([1]), base=2)
    assert_result(loss, 1.0, dtype, rtol, atol)
    # one class: loss 0 and gradient 0 whatever the logit
    loss, grad = fastxent.cross_entropy_with_grad(
        np.array([[5.0], [-3.0]], dtype), np.array([0, 0]), reduction="sum"
    )
    assert loss == 0
    np.testing.assert_array_equal(grad, [[0.0], [0.0]])


def _check_gradient(logits, target, dtype, rtol, atol, in_place, options, rng):
    """The loss and gradient against the reference, fresh or in place, with or without
    class weights and label smoothing (``options``)."""
    n_rows, n_classes = logits.shape
    kwargs = {}
    if options == "options":
        kwargs = {"weight": rng.uniform(0.0, 2.0, n_classes), "label_smoothing": 0.2}
    ref_loss, ref_grad = reference.cross_entropy_with_grad(logits, target, **kwargs)
    out = logits if in_place else None
    loss, grad = fastxent.cross_entropy_with_grad(logits, target, out=out, **kwargs)
    assert (grad is logits) == in_place
    assert_result(grad, ref_grad, dtype, rtol, atol)
    check_loss(loss, ref_loss, dtype, rtol, atol, "mean", (n_rows,))


@pytest.mark.parametrize(("dtype", "rtol", "atol"), NATIVE_TOLERANCES)
@pytest.mark.parametrize("in_place", [False, True], ids=["fresh", "in-place"])
@pytest.mark.parametrize("options", ["plain", "options"])
@pytest.mark.parametrize(
    "shape",
    [
        (rows_in_tiles(600), 600), (rows_in_tiles(100), 100), (3, WHOLE_ROW),
        (rows_in_tiles(3), 3), (20, WHOLE_ROW + 1), FROM_MEMORY,
    ],
    ids=[
        "600-classes", "100-classes", f"{WHOLE_ROW}-classes", "3-classes",
        f"{WHOLE_ROW + 1}-classes", "1000-classes-from-memory",
    ],
)  # fmt: skip
def test_gradient_by_tiles_matches_reference(dtype, rtol, atol, in_place, options, shape, rng):
    """Row counts that leave a partial last tile (``TILE_ELEMENTS`` elements per tile, at
    most ``TILE_ROWS`` rows), C = ``WHOLE_ROW`` (the last to be taken whole) and one more
    (summed in blocks); the 1000-class rows are over the in-cache size
    (``THRESHOLDS.cache_resident_bytes``), so they go one by one, each with its ``exp``
    computed once into the gradient."""
    n_rows, n_classes = shape
    logits = make_logits(rng, shape, dtype)
    target = make_labels(rng, (n_rows,), n_classes)
    target[::7] = -100
    _check_gradient(logits, target, dtype, rtol, atol, in_place, options, rng)


@pytest.mark.parametrize(("dtype", "rtol", "atol"), NATIVE_TOLERANCES)
@pytest.mark.parametrize("options", ["plain", "options"])
@pytest.mark.parametrize(
    "n_classes",
    [SHORT_ROW + 1, 100, FORWARD_TILE_CLASSES - 1, FORWARD_TILE_CLASSES],
    ids=lambda n_classes: f"{n_classes}-classes",
)
def test_forward_by_tiles_matches_reference(dtype, rtol, atol, options, n_classes, rng):
    """In-cache rows of ``SHORT_ROW + 1`` to ``FORWARD_TILE_CLASSES - 1`` classes go by tiles
    (``FORWARD_TILE_CLASSES``: row by row; up to ``SHORT_ROW``: the short-row tiles), over
    several tiles and a partial last one, with ignored rows and special rows in the last
    tile: all ``-inf`` but the target, one ``nan``, one ``+inf``, ``-inf`` entries elsewhere
    (with label smoothing, those under a zero weight add nothing, the others make the loss
    ``inf``)."""
    shape = n_rows, n_classes = rows_in_tiles(n_classes), n_classes
    logits = make_logits(rng, shape, dtype)
    target = make_labels(rng, (n_rows,), n_classes)
    logits[rng.random(shape) < 0.05] = -np.inf
    logits[np.arange(n_rows), target] = rng.standard_normal(n_rows)  # targets stay finite
    logits[n_rows - 1] = -np.inf
    logits[n_rows - 1, target[n_rows - 1]] = 0.0
    logits[n_rows - 2, n_classes // 2] = np.nan
    logits[n_rows - 3, 0] = np.inf
    target[::7] = -100
    kwargs = {}
    if options == "options":
        weight = rng.uniform(0.5, 2.0, n_classes)
        weight[::3] = 0.0
        kwargs = {"weight": weight, "label_smoothing": 0.2}
    before = logits.copy()
    losses = fastxent.cross_entropy(logits, target, reduction="none", **kwargs)
    expected = reference.cross_entropy(logits, target, reduction="none", **kwargs)
    assert np.isnan(losses[n_rows - 2]) == (target[n_rows - 2] != -100)
    check_loss(losses, expected, dtype, rtol, atol, "none", (n_rows,))
    np.testing.assert_array_equal(logits, before)


@pytest.mark.parametrize(("dtype", "rtol", "atol"), NATIVE_TOLERANCES)
@pytest.mark.parametrize("shape", [FROM_MEMORY, (100, 2500)], ids=["1000", "2500"])
def test_smoothing_in_chains_with_masked_classes(dtype, rtol, atol, shape, streaming, rng):
    """Rows from memory sum label smoothing's term in the exp-sum's loop and its remainder
    in a masked pass over the row's last ``SUM_VECTOR`` classes, which overlaps classes already
    summed: ``-inf`` there under a zero weight must add nothing (not ``nan``), under a
    non-zero weight make the loss ``inf``, counted once either way."""
    n_rows, n_classes = shape
    logits = make_logits(rng, shape, dtype)
    target = make_labels(rng, (n_rows,), n_classes)
    target[target >= n_classes - SUM_VECTOR] = 0  # targets stay finite
    weight = rng.uniform(0.5, 2.0, n_classes)
    weight[::3] = 0.0
    main = n_classes - n_classes % SUM_VECTOR
    overlap = n_classes - SUM_VECTOR + 3 * np.arange(4)  # summed by the vector loop, then masked
    tail = main + 3 * np.arange(min(4, (n_classes - main) // 3))  # summed by the masked pass
    for row, columns in enumerate((overlap, tail, overlap[:1], tail[:1])):
        logits[row, columns] = -np.inf  # zero weights (every third class)
        logits[row + 4, columns + 1] = -np.inf  # non-zero weights
    logits[10, main - 1] = np.nan
    target[::7] = -100
    kwargs = {"weight": weight, "label_smoothing": 0.2}
    losses = fastxent.cross_entropy(logits, target, reduction="none", **kwargs)
    expected = reference.cross_entropy(logits, target, reduction="none", **kwargs)
    masked_weight = [weight[logits[r] == -np.inf].sum() for r in range(8)]
    assert [np.isinf(losses[r]) for r in range(8)] == [
        target[r] != -100 and w > 0 for r, w in enumerate(masked_weight)
    ]
    check_loss(losses, expected, dtype, rtol, atol, "none", (n_rows,))


#: The streaming threshold of test_only_long_rows_from_memory_prefetch.
STREAMING_BYTES = 1 << 20


def streamed(n_classes: int, dtype: Any, expected: bool, why: str) -> Any:
    """The fewest rows of ``n_classes`` beyond STREAMING_BYTES (float32), as a case."""
    shape = (STREAMING_BYTES // (4 * n_classes) + 1, n_classes)
    name = np.dtype(dtype).name
    return pytest.param(shape, dtype, expected, id=f"{shape[0]}x{n_classes}-{name}-{why}")


PREFETCH = THRESHOLDS.prefetch_min_classes


@pytest.mark.parametrize(
    ("shape", "dtype", "expected"),
    [
        streamed(PREFETCH // 2, np.float32, False, "chained-too-short"),
        streamed(PREFETCH - 1, np.float32, False, "chained-too-short"),
        streamed(PREFETCH, np.float32, True, "prefetch"),
        streamed(32000, np.float32, True, "prefetch"),
        # The kernels decide by dtype (float32 only).
        streamed(32000, np.float64, True, "prefetch"),
        streamed(THRESHOLDS.chain_min_classes - 1, np.float32, False, "summed-whole"),
    ],
)
def test_only_long_rows_from_memory_prefetch(shape, dtype, expected):
    """Rows from memory (an input beyond the streaming threshold) prefetch when they have
    ``prefetch_min_classes`` classes or more; shorter ones are chained without prefetching,
    and rows of fewer than ``chain_min_classes`` are never chained."""
    from fastxent import _plan, _tuning

    logits = np.zeros(shape, dtype)
    with _tuning.overridden(streaming_min_bytes=STREAMING_BYTES):
        chained, streaming = _plan.plan_rows(logits)
    assert streaming is expected
    assert (chained is None) == (shape[1] < THRESHOLDS.chain_min_classes)
    with _tuning.overridden(streaming_min_bytes=logits.nbytes):  # now in cache
        assert _plan.plan_rows(logits).streaming is False


@pytest.mark.parametrize(("dtype", "rtol", "atol"), NATIVE_TOLERANCES)
@pytest.mark.parametrize("options", ["plain", "options"])
@pytest.mark.parametrize(
    "shape",
    [FROM_MEMORY, (100, 2500), (40, 4100), (17, 3000)],
    ids=["1000-classes-from-memory", "2500-classes", "4100-classes", "chains-of-one-row"],
)
def test_forward_by_chains_matches_reference(dtype, rtol, atol, options, shape, streaming, rng):
    """Rows from memory go in chains, each row's exp-sum taking the next row's max
    (``fastxent._kernels.chains.row_chains``: chains of n_rows // 16 rows, here of dozens,
    of 6 with a partial last one, of 2 and of 1 row). Ignored rows (the first of
    chain 0 among them) skip their sum but not the next max; special rows sit where the
    next row's max is taken in the vector loop and in its remainder: the max at a row's
    last class, ``nan`` and ``+inf`` there and mid-row, a row of ``-inf`` but the target."""
    n_rows, n_classes = shape
    logits = make_logits(rng, shape, dtype)
    target = make_labels(rng, (n_rows,), n_classes)
    # Maxima far above the rest: exp of a row shifted by a smaller one overflows.
    logits[1, 5] = 100.0  # after an ignored row
    logits[2, n_classes - 1] = 100.0  # in the remainder
    logits[3, n_classes - 1] = np.nan
    logits[4, n_classes // 3] = np.nan
    logits[5, n_classes - 2] = np.inf
    logits[6] = -np.inf
    logits[6, target[6]] = 0.0
    logits[8, 10] = np.inf
    logits[n_rows - 1, 0] = 100.0
    target[::7] = -100
    kwargs = {}
    if options == "options":
        weight = rng.uniform(0.5, 2.0, n_classes)
        weight[::3] = 0.0
        kwargs = {"weight": weight, "label_smoothing": 0.2}
    before = logits.copy()
    losses = fastxent.cross_entropy(logits, target, reduction="none", **kwargs)
    expected = reference.cross_entropy(logits, target, reduction="none", **kwargs)
    assert np.isnan(losses[3]) and np.isnan(losses[4])
    check_loss(losses, expected, dtype, rtol, atol, "none", (n_rows,))
    np.testing.assert_array_equal(logits, before)


@pytest.mark.parametrize(("dtype", "rtol", "atol"), NATIVE_TOLERANCES)
@pytest.mark.parametrize("in_place", [False, True], ids=["fresh", "in-place"])
@pytest.mark.parametrize("options", ["plain", "options"])
@pytest.mark.parametrize("n_classes", [1, 10, 17, SHORT_ROW], ids=lambda n_classes: f"{n_classes}")
def test_short_rows_gradient_matches_reference(
    dtype, rtol, atol, in_place, options, n_classes, rng
):
    """Rows of up to ``SHORT_ROW`` classes go by tiles of ``TILE_ROWS`` rows (``exp`` as one
    loop over the tile, label smoothing's gaps summed with the subtraction before it), also
    in place: several tiles and a partial last one, ignored rows (the first and last of a
    tile among them), maxima far above the rest in the first and last class, and a ``-inf``
    logit off the target (without label smoothing, which would make that row's loss ``inf``
    and the mean loss with it, whatever the other rows')."""
    shape = n_rows, n_classes = rows_in_tiles(n_classes), n_classes
    logits = make_logits(rng, shape, dtype)
    target = make_labels(rng, (n_rows,), n_classes)
    logits[1, 0] = 100.0
    logits[2, n_classes - 1] = 100.0
    logits[n_rows - 1, n_classes - 1] = 100.0
    if n_classes > 1 and options == "plain":
        logits[3, (target[3] + 1) % n_classes] = -np.inf
    target[::7] = -100
    first = tile_rows(n_classes)  # the first row of the second tile
    target[[first - 1, first, n_rows - 1]] = -100
    _check_gradient(logits, target, dtype, rtol, atol, in_place, options, rng)


@pytest.mark.parametrize(("dtype", "rtol", "atol"), NATIVE_TOLERANCES)
@pytest.mark.parametrize("in_place", [False, True], ids=["fresh", "in-place"])
@pytest.mark.parametrize("options", ["plain", "options"])
@pytest.mark.parametrize(
    "shape", [(100, 2500), (40, 4100), (17, 3000)], ids=["2500", "4100", "chains-of-one-row"]
)
def test_gradient_by_chains_matches_reference(
    dtype, rtol, atol, in_place, options, shape, streaming, rng
):
    """The gradient of rows of more than ``WHOLE_ROW`` classes goes in chains, each row's exp-sum
    taking the next row's max, also in place (the next row is read before this one is
    overwritten): maxima far above the rest, after an ignored row and in the remainder of
    the vector loop, and ignored rows (the first of chain 0 among them)."""
    n_rows, n_classes = shape
    logits = make_logits(rng, shape, dtype)
    target = make_labels(rng, (n_rows,), n_classes)
    logits[1, 5] = 100.0
    logits[2, n_classes - 1] = 100.0
    logits[n_rows - 1, 0] = 100.0
    target[::7] = -100
    _check_gradient(logits, target, dtype, rtol, atol, in_place, options, rng)


@pytest.mark.parametrize(("dtype", "rtol", "atol"), NATIVE_TOLERANCES)
@pytest.mark.parametrize("in_place", [False, True], ids=["fresh", "in-place"])
@pytest.mark.parametrize("kind", ["index", "probability"])
@pytest.mark.parametrize("shape", [(100, 2500), (64, 1300)], ids=["2500", "1300"])
def test_nan_rows_in_chains_give_nan_gradient_rows_only(
    dtype, rtol, atol, in_place, kind, shape, streaming, rng
):
    """A row of a chain gets its max from the previous row's exp-sum loop, which does not
    check for ``nan`` (``fmax_unchecked``): a ``nan`` there, in the vector loop or in its
    remainder, must still make that row's loss and gradient ``nan``, and leave the other
    rows exact (the next row's max comes from the ``nan`` row's loop too)."""
    n_rows, n_classes = shape
    logits = make_logits(rng, shape, dtype)
    logits[3, n_classes - 1] = np.nan  # in the remainder of the vector loop
    logits[5, n_classes // 3] = np.nan  # mid-row
    logits[6, 0] = np.nan  # where the next row's max starts
    logits[7, 7] = 100.0  # after a nan row: its shift must still be its own max
    if kind == "index":
        target = make_labels(rng, (n_rows,), n_classes)
    else:
        target = make_probabilities(rng, shape, dtype=dtype)
    expected_losses = reference.cross_entropy(logits, target, reduction="none")
    ref_loss, ref_grad = reference.cross_entropy_with_grad(logits, target, reduction="sum")
    losses = fastxent.cross_entropy(logits, target, reduction="none")
    out = logits if in_place else None
    loss, grad = fastxent.cross_entropy_with_grad(logits, target, reduction="sum", out=out)
    bad = [3, 5, 6]
    assert np.isnan(losses[bad]).all() and np.isnan(loss)
    assert np.isnan(grad[bad]).all()
    check_loss(losses, expected_losses, dtype, rtol, atol, "none", (n_rows,))
    assert_result(grad, ref_grad, dtype, rtol, atol)
    assert np.isfinite(np.delete(grad, bad, axis=0)).all()


@pytest.mark.parametrize(("dtype", "rtol", "atol"), NATIVE_TOLERANCES)
@pytest.mark.parametrize("in_place", [False, True], ids=["fresh", "in-place"])
@pytest.mark.parametrize("options", ["plain", "options"])
@pytest.mark.parametrize(
    "shape",
    [(100, 2500), (40, 4100), (17, 3000), FROM_MEMORY],
    ids=["2500", "4100", "chains-of-one-row", "1000-classes-from-memory"],
)
def test_probability_gradient_by_chains_matches_reference(
    dtype, rtol, atol, in_place, options, shape, streaming, rng
):
    """The gradient against probability targets of rows of more than ``WHOLE_ROW`` classes goes in
    chains, as for labels, also in place: maxima far above the rest mid-row and in the
    remainder of the vector loop. Rows from memory of up to ``WHOLE_ROW`` classes go one by one,
    each with its ``exp`` computed once into the gradient."""
    n_rows, n_classes = shape
    logits = make_logits(rng, shape, dtype)
    logits[1, 5] = 100.0
    logits[2, n_classes - 1] = 100.0
    logits[n_rows - 1, 0] = 100.0
    probabilities = make_probabilities(rng, shape, dtype=dtype)
    _check_gradient(logits, probabilities, dtype, rtol, atol, in_place, options, rng)


@pytest.mark.parametrize("in_place", [False, True], ids=["fresh", "in-place"])
@pytest.mark.parametrize(
    "shape",
    [(6, 10), (300, 10), (6, 300), (3, WHOLE_ROW + 1)],
    ids=["10", "300x10", "300", f"{WHOLE_ROW + 1}"],
)
@pytest.mark.parametrize("scale", [1e20, 1e39, 1e300], ids=["1e20", "1e39", "1e300"])
def test_smoothing_gradient_with_large_weights(in_place, shape, scale, rng):
    """float32 logits, label smoothing, weights up to and far beyond float32's range: the
    reference's loss and gradient (the smoothing term of each class is worked out in
    float64 before it is rounded to float32), also in place."""
    n_rows, n_classes = shape
    logits = make_logits(rng, shape, np.float32)
    target = make_labels(rng, (n_rows,), n_classes)
    # Ratios up to 2**16 between the weights, so that the gradient spans many binades.
    weight = np.exp2(rng.integers(-16, 1, n_classes)) * scale
    kwargs = {"weight": weight, "label_smoothing": 0.3}
    ref_loss, ref_grad = reference.cross_entropy_with_grad(logits, target, **kwargs)
    # In place: into the logits themselves (a copy), which the float64 fallback of the
    # smoothing term must still read intact.
    inputs = logits.copy() if in_place else logits
    out = inputs if in_place else None
    loss, grad = fastxent.cross_entropy_with_grad(inputs, target, out=out, **kwargs)
    assert (grad is inputs) == in_place
    assert np.all(np.isfinite(grad))
    assert_result(grad, ref_grad, np.float32, 1e-5, 1e-6)
    check_loss(loss, ref_loss, np.float32, 1e-5, 1e-6, "mean", (n_rows,))
    # The forward alone agrees.
    check_loss(
        fastxent.cross_entropy(logits, target, **kwargs),
        reference.cross_entropy(logits, target, **kwargs),
        np.float32, 1e-5, 1e-6, "mean", (n_rows,),
    )  # fmt: skip
