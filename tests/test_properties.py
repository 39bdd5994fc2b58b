"""Hypothesis properties of softmax and softmax cross-entropy: what the mathematics says.

Rows of probabilities sum to 1, a constant added to a row changes nothing (or shifts
logsumexp by it), losses are non-negative, integer and one-hot targets agree, gradient rows
sum to 0 and match central differences, "none" summed is "sum". The inputs are finite
float64/float32 problems from ``strategies.py``; parity with the reference is
tests/test_reference_parity.py.
"""

from __future__ import annotations

import numpy as np
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from strategies import FACTORS, PROPERTIES, logits_strategy, problems, row_shifts

import fastxent
from fastxent import reference

# --------------------------------------------------------------------------------------
# softmax family
# --------------------------------------------------------------------------------------


@PROPERTIES
@given(logits_strategy(np.float64))
def test_softmax_rows_sum_to_one_float64(x):
    p = fastxent.softmax(x)
    assert np.all(p >= 0) and np.all(p <= 1)
    np.testing.assert_allclose(p.sum(axis=-1), 1.0, rtol=0, atol=1e-13)


@PROPERTIES
@given(logits_strategy(np.float32))
def test_softmax_rows_sum_to_one_float32(x):
    p = fastxent.softmax(x)
    assert p.dtype == np.float32
    assert np.all(p >= 0) and np.all(p <= 1)
    np.testing.assert_allclose(p.astype(np.float64).sum(axis=-1), 1.0, rtol=0, atol=1e-5)


def _exactly_shifted(data):
    """Logits on a 1/64 grid and integer row shifts: ``x + shift`` is exact in float32/64."""
    dtype = data.draw(st.sampled_from([np.float32, np.float64]))
    x = (np.round(data.draw(logits_strategy(np.float64)) * 64) / 64).astype(dtype)
    shift = data.draw(row_shifts(x.shape[0])).astype(dtype)
    tolerance = 1e-12 if dtype == np.float64 else 1e-6
    return x, shift, tolerance


@PROPERTIES
@given(st.data())
def test_log_softmax_unchanged_by_row_constant(data):
    x, shift, tolerance = _exactly_shifted(data)
    np.testing.assert_allclose(
        fastxent.log_softmax(x + shift).astype(np.float64),
        fastxent.log_softmax(x).astype(np.float64),
        rtol=tolerance,
        atol=tolerance,
    )


@PROPERTIES
@given(st.data())
def test_logsumexp_shifts_with_row_constant(data):
    x, shift, tolerance = _exactly_shifted(data)
    np.testing.assert_allclose(
        fastxent.logsumexp(x + shift).astype(np.float64),
        fastxent.logsumexp(x).astype(np.float64) + shift[:, 0].astype(np.float64),
        rtol=tolerance,
        atol=tolerance,
    )


# --------------------------------------------------------------------------------------
# cross-entropy
# --------------------------------------------------------------------------------------


@PROPERTIES
@given(st.data())
def test_loss_unchanged_by_row_constant(data):
    x, labels, kwargs = data.draw(problems())
    x = np.round(x * 64) / 64
    shift = data.draw(row_shifts(x.shape[0]))
    loss, grad = fastxent.cross_entropy_with_grad(x, labels, reduction="none", **kwargs)
    loss2, grad2 = fastxent.cross_entropy_with_grad(x + shift, labels, reduction="none", **kwargs)
    np.testing.assert_allclose(loss2, loss, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(grad2, grad, rtol=1e-12, atol=1e-14)


@PROPERTIES
@given(problems(options=False))
def test_loss_is_non_negative(problem):
    x, labels, _ = problem
    loss = fastxent.cross_entropy(x, labels, reduction="none")
    assert np.all(loss >= 0), loss


@PROPERTIES
@given(problems())
def test_loss_is_non_negative_with_smoothing_and_weight(problem):
    x, labels, kwargs = problem
    loss = fastxent.cross_entropy(x, labels, reduction="none", **kwargs)
    assert np.all(loss >= 0), loss


@PROPERTIES
@given(problems(dtype=np.float32))
def test_loss_is_non_negative_float32(problem):
    x, labels, kwargs = problem
    loss = fastxent.cross_entropy(x, labels, reduction="none", **kwargs)
    assert loss.dtype == np.float32
    assert np.all(loss >= 0), loss


@PROPERTIES
@given(st.data())
def test_integer_and_one_hot_targets_agree(data):
    x, labels, kwargs = data.draw(problems())
    reduction = data.draw(st.sampled_from(["none", "sum"]))
    if "weight" not in kwargs:
        reduction = data.draw(st.sampled_from(["none", "sum", "mean"]))
    one_hot = np.eye(x.shape[1])[labels]
    loss, grad = fastxent.cross_entropy_with_grad(x, labels, reduction=reduction, **kwargs)
    loss2, grad2 = fastxent.cross_entropy_with_grad(x, one_hot, reduction=reduction, **kwargs)
    np.testing.assert_allclose(loss2, loss, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(grad2, grad, rtol=1e-12, atol=1e-14)


@PROPERTIES
@given(st.data())
def test_gradient_rows_sum_to_zero(data):
    dtype = data.draw(st.sampled_from([np.float32, np.float64]))
    x, labels, kwargs = data.draw(problems(dtype=dtype))
    kwargs.pop("weight", None)
    _, grad = fastxent.cross_entropy_with_grad(x, labels, reduction="sum", **kwargs)
    atol = 1e-13 if dtype == np.float64 else 1e-6
    np.testing.assert_allclose(grad.astype(np.float64).sum(axis=-1), 0.0, rtol=0, atol=atol)
    if kwargs["label_smoothing"] == 0.0:
        # ... and not trivially: a row whose label has p < 0.5 has |grad| summing to > 1.
        p = reference.softmax(x.astype(np.float64))
        uncertain = p[np.arange(len(labels)), labels] < 0.5
        assert np.all(np.abs(grad[uncertain]).sum(axis=-1) > 1.0)


@PROPERTIES
@given(st.data())
def test_gradient_matches_central_differences(data):
    x, labels, kwargs = data.draw(problems(max_rows=4, max_classes=8))
    x = x / 5  # moderate logits: the loss is smooth on the scale of the step
    reduction = data.draw(st.sampled_from(["sum", "mean"]))
    weight = kwargs.get("weight", np.ones(x.shape[1]))
    if np.sum(weight[labels]) == 0:
        reduction = "sum"  # a mean over zero total weight is nan
    kwargs["reduction"] = reduction
    _, grad = fastxent.cross_entropy_with_grad(x, labels, **kwargs)
    step = 1e-6
    numeric = np.zeros_like(x)
    for index in np.ndindex(*x.shape):
        up, down = x.copy(), x.copy()
        up[index] += step
        down[index] -= step
        plus = float(fastxent.cross_entropy(up, labels, **kwargs))
        minus = float(fastxent.cross_entropy(down, labels, **kwargs))
        numeric[index] = (plus - minus) / (up[index] - down[index])
    np.testing.assert_allclose(grad, numeric, rtol=1e-5, atol=1e-7)


@PROPERTIES
@given(st.data())
def test_gradient_matches_central_differences_probability_targets(data):
    x = data.draw(logits_strategy(max_rows=4, max_classes=8)) / 5
    raw = data.draw(hnp.arrays(np.float64, x.shape, elements=st.floats(0.0, 1.0)))
    weight = data.draw(hnp.arrays(np.float64, (x.shape[1],), elements=FACTORS))
    kwargs = {"weight": weight, "label_smoothing": 0.1, "reduction": "mean"}
    _, grad = fastxent.cross_entropy_with_grad(x, raw, **kwargs)  # targets need not sum to 1
    step = 1e-6
    numeric = np.zeros_like(x)
    for index in np.ndindex(*x.shape):
        up, down = x.copy(), x.copy()
        up[index] += step
        down[index] -= step
        plus = float(fastxent.cross_entropy(up, raw, **kwargs))
        minus = float(fastxent.cross_entropy(down, raw, **kwargs))
        numeric[index] = (plus - minus) / (up[index] - down[index])
    np.testing.assert_allclose(grad, numeric, rtol=1e-5, atol=1e-7)


@PROPERTIES
@given(st.data())
def test_none_summed_equals_sum(data):
    x, labels, kwargs = data.draw(problems())
    labels[:: data.draw(st.integers(2, 5))] = -100
    none = fastxent.cross_entropy(x, labels, reduction="none", **kwargs)
    total = fastxent.cross_entropy(x, labels, reduction="sum", **kwargs)
    np.testing.assert_allclose(total, np.sum(none), rtol=1e-12, atol=1e-12)
