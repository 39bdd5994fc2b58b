"""z-loss and logit soft-capping on ``cross_entropy`` and ``cross_entropy_with_grad``.

Compared with ``fastxent.reference`` over every option (float64 NumPy, its own formulas),
with a plain PyTorch formula (``softcap * tanh(z / softcap)`` into ``F.cross_entropy``,
``logsumexp**2`` added, autograd for the gradient), and with values worked by hand.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from conftest import (
    assert_unchanged,
    import_torch,
    make_labels,
    make_logits,
    make_probabilities,
    parallel_rows,
    snapshot,
)

import fastxent
from fastxent import reference

TERMS = [
    pytest.param({"z_loss": 1e-3}, id="zloss"),
    pytest.param({"softcap": 4.0}, id="softcap"),
    pytest.param({"z_loss": 0.05, "softcap": 30.0}, id="both"),
]
SHAPES = [
    pytest.param((7, 13), -1, id="7x13"),
    pytest.param((parallel_rows(1031), 1031), -1, id="parallel-x1031"),
    pytest.param((3, 11, 4, 2), 1, id="3x11x4x2-axis1"),
]
# float32: a few ulps of tanh and exp per element, summed in float64.
LOSS_RTOL = {np.dtype(np.float32): 2e-6, np.dtype(np.float64): 1e-13}
GRAD_RTOL = {np.dtype(np.float32): 1e-5, np.dtype(np.float64): 1e-12}


def assert_matches_reference(logits, target, axis, **options):
    dtype = np.dtype(np.float64 if logits.dtype == np.float64 else np.float32)
    expected_loss, expected_grad = reference.cross_entropy_with_grad(
        logits, target, axis=axis, **options
    )
    saved = snapshot(logits, target)
    loss, grad = fastxent.cross_entropy_with_grad(logits, target, axis=axis, **options)
    forward = fastxent.cross_entropy(logits, target, axis=axis, **options)
    assert_unchanged(saved)
    assert grad.dtype == dtype and grad.shape == logits.shape
    for value in (loss, forward):
        assert np.asarray(value).dtype == dtype
        np.testing.assert_allclose(value, expected_loss, rtol=LOSS_RTOL[dtype], atol=0)
    scale = float(np.max(np.abs(expected_grad)))
    np.testing.assert_allclose(
        grad, expected_grad, rtol=GRAD_RTOL[dtype], atol=GRAD_RTOL[dtype] * scale
    )


@pytest.mark.parametrize("terms", TERMS)
@pytest.mark.parametrize("shape, axis", SHAPES)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("smoothing", [0.0, 0.15])
@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
def test_labels_match_reference(rng, terms, shape, axis, dtype, reduction, smoothing, weighted):
    n_classes = shape[axis]
    logits = make_logits(rng, shape, dtype, scale=6.0)
    batch = shape[: axis % len(shape)] + shape[axis % len(shape) + 1 :]
    labels = make_labels(rng, batch, n_classes)
    labels.reshape(-1)[1] = -100  # an ignored row
    weight = rng.uniform(0.2, 2.0, n_classes) if weighted else None
    assert_matches_reference(
        logits, labels, axis, weight=weight, reduction=reduction, label_smoothing=smoothing,
        **terms,
    )  # fmt: skip


@pytest.mark.parametrize("terms", TERMS)
@pytest.mark.parametrize("shape, axis", SHAPES)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("reduction", ["mean", "none"])
@pytest.mark.parametrize("smoothing", [0.0, 0.15])
def test_probabilities_match_reference(rng, terms, shape, axis, dtype, reduction, smoothing):
    logits = make_logits(rng, shape, dtype, scale=6.0)
    probs = make_probabilities(rng, shape, axis=axis, dtype=dtype)
    weight = rng.uniform(0.2, 2.0, shape[axis])
    assert_matches_reference(
        logits, probs, axis, weight=weight, reduction=reduction, label_smoothing=smoothing,
        **terms,
    )  # fmt: skip


def test_worked_example():
    """Logits (1, 2, 3), target 2: CE = lse - 3; z-loss 0.1 lse**2; cap 2: 2 tanh(z / 2)."""
    lse = math.log(math.exp(1.0) + math.exp(2.0) + math.exp(3.0))
    z = np.array([[1.0, 2.0, 3.0]])
    loss = fastxent.cross_entropy(z, np.array([2]), z_loss=0.1)
    assert loss == pytest.approx((lse - 3.0) + 0.1 * lse**2, rel=1e-15)
    capped = [2.0 * math.tanh(v / 2.0) for v in (1.0, 2.0, 3.0)]
    capped_lse = math.log(sum(math.exp(v) for v in capped))
    loss, grad = fastxent.cross_entropy_with_grad(z, np.array([2]), softcap=2.0, base=2)
    assert loss == pytest.approx((capped_lse - capped[2]) / math.log(2.0), rel=1e-15)
    p = [math.exp(v - capped_lse) for v in capped]
    expected = [
        (p[c] - (c == 2)) * (1.0 - math.tanh(v / 2.0) ** 2) / math.log(2.0)
        for c, v in enumerate((1.0, 2.0, 3.0))
    ]
    np.testing.assert_allclose(grad[0], expected, rtol=1e-14)


def test_zero_options_are_the_plain_call(rng):
    logits = make_logits(rng, (9, 17), np.float32)
    labels = make_labels(rng, (9,), 17)
    plain_loss, plain_grad = fastxent.cross_entropy_with_grad(logits, labels)
    loss, grad = fastxent.cross_entropy_with_grad(logits, labels, z_loss=0, softcap=None)
    assert loss == plain_loss and np.array_equal(grad, plain_grad)


def test_softcap_bounds_the_logits():
    """Huge and infinite logits are capped: the loss stays finite, the cap's gradient 0."""
    z = np.array([[1e30, -np.inf, 0.0, np.inf]], np.float32)
    loss, grad = fastxent.cross_entropy_with_grad(z, np.array([2]), softcap=10.0)
    capped = np.array([10.0, -10.0, 0.0, 10.0])
    lse = math.log(np.exp(capped).sum())
    assert loss == pytest.approx(lse, rel=1e-6)
    np.testing.assert_array_equal(grad[0, [0, 1, 3]], 0.0)  # tanh saturated: no slope
    assert grad[0, 2] == pytest.approx(math.exp(-lse) - 1.0, rel=1e-6)


def test_rows_without_a_distribution_are_nan():
    z = np.array([[np.nan, 1.0], [1.0, 2.0]])
    losses = fastxent.cross_entropy(z, np.array([0, 1]), reduction="none", z_loss=0.1)
    assert np.isnan(losses[0]) and np.isfinite(losses[1])


def test_ignored_rows_count_nowhere(rng):
    logits = make_logits(rng, (6, 5), np.float64)
    labels = np.array([0, -100, 2, -100, 4, 1])
    loss, grad = fastxent.cross_entropy_with_grad(logits, labels, z_loss=0.2, softcap=3.0)
    kept = labels != -100
    loss_kept, grad_kept = fastxent.cross_entropy_with_grad(
        logits[kept], labels[kept], z_loss=0.2, softcap=3.0
    )
    assert loss == pytest.approx(loss_kept, rel=1e-15)
    np.testing.assert_array_equal(grad[~kept], 0.0)
    np.testing.assert_allclose(grad[kept], grad_kept, rtol=1e-15)
    everything_ignored = fastxent.cross_entropy_with_grad(
        logits, np.full(6, -100), z_loss=0.2, softcap=3.0
    )
    assert np.isnan(everything_ignored[0]) and not everything_ignored[1].any()


def test_mean_over_zero_weight_divides_by_zero():
    """Counted weights summing to 0: the sum of the losses (and gradient) over 0, IEEE."""
    z = np.array([[0.0, 1.0], [2.0, 0.0], [5.0, 5.0]])
    labels = np.array([0, 1, -100])
    weight = np.array([1.0, -1.0])
    total = float(fastxent.cross_entropy(z, labels, weight=weight, reduction="sum", z_loss=0.1))
    loss, grad = fastxent.cross_entropy_with_grad(z, labels, weight=weight, z_loss=0.1)
    assert loss == math.copysign(math.inf, total)
    assert np.all(np.isinf(grad[:2])) and not grad[2].any()
    expected_loss, _ = reference.cross_entropy_with_grad(z, labels, weight=weight, z_loss=0.1)
    assert loss == expected_loss


def test_in_place_gradient(rng):
    logits = make_logits(rng, (parallel_rows(700), 700), np.float32)
    labels = make_labels(rng, (len(logits),), 700)
    expected = fastxent.cross_entropy_with_grad(logits, labels, z_loss=1e-3, softcap=15.0)
    loss, grad = fastxent.cross_entropy_with_grad(
        logits, labels, z_loss=1e-3, softcap=15.0, out=logits
    )
    assert grad is logits and loss == expected[0]
    np.testing.assert_array_equal(grad, expected[1])


@pytest.mark.parametrize(
    "options, error, message",
    [
        ({"z_loss": -1e-4}, ValueError, "z_loss must be finite and >= 0"),
        ({"z_loss": math.nan}, ValueError, "z_loss must be finite"),
        ({"z_loss": math.inf}, ValueError, "z_loss must be finite"),
        ({"z_loss": "1e-4"}, TypeError, "z_loss must be a real number"),
        ({"z_loss": True}, TypeError, "z_loss must be a real number"),
        ({"softcap": 0.0}, ValueError, "softcap must be finite and > 0"),
        ({"softcap": -30.0}, ValueError, "softcap must be finite and > 0"),
        ({"softcap": math.inf}, ValueError, "softcap must be finite"),
        ({"softcap": math.nan}, ValueError, "softcap must be finite"),
        ({"softcap": "30"}, TypeError, "softcap must be a real number or None"),
    ],
)
def test_bad_options_are_refused(rng, options, error, message):
    logits = make_logits(rng, (4, 6), np.float32)
    labels = make_labels(rng, (4,), 6)
    saved = snapshot(logits, labels)
    for function in (fastxent.cross_entropy, fastxent.cross_entropy_with_grad):
        with pytest.raises(error, match=message):
            function(logits, labels, **options)
    assert_unchanged(saved)


def test_label_out_of_range_is_named(rng):
    logits = make_logits(rng, (4, 6), np.float32)
    with pytest.raises(ValueError, match=r"target\[2\]"):
        fastxent.cross_entropy_with_grad(logits, np.array([0, 1, 6, 2]), softcap=5.0)


def torch_formula(logits, target, weight, z_loss, softcap, smoothing, reduction):
    """The plain PyTorch formula of the same loss, and its gradient by autograd."""
    torch = import_torch()
    functional = torch.nn.functional
    z = torch.tensor(logits, requires_grad=True)
    capped = softcap * torch.tanh(z / softcap) if softcap is not None else z
    t = torch.tensor(target)
    w = torch.tensor(weight)
    ce = functional.cross_entropy(capped, t, weight=w, reduction="none", label_smoothing=smoothing)
    counted = t != -100
    row_weight = torch.where(counted, w[t.clamp(min=0)], torch.zeros(()))
    losses = ce + z_loss * row_weight * torch.logsumexp(capped, dim=-1) ** 2
    loss = losses.sum() / row_weight.sum() if reduction == "mean" else losses.sum()
    loss.backward()
    return loss.item(), z.grad.numpy()


@pytest.mark.parametrize("reduction", ["mean", "sum"])
@pytest.mark.parametrize("smoothing", [0.0, 0.1])
@pytest.mark.parametrize("terms", TERMS)
def test_matches_plain_torch_formula(rng, reduction, smoothing, terms):
    logits = make_logits(rng, (40, 300), np.float64, scale=10.0)
    labels = make_labels(rng, (40,), 300)
    labels[[3, 17]] = -100
    weight = rng.uniform(0.5, 1.5, 300)
    z_loss, softcap = terms.get("z_loss", 0.0), terms.get("softcap")
    expected_loss, expected_grad = torch_formula(
        logits, labels, weight, z_loss, softcap, smoothing, reduction
    )
    loss, grad = fastxent.cross_entropy_with_grad(
        logits, labels, weight=weight, reduction=reduction, label_smoothing=smoothing, **terms
    )
    assert loss == pytest.approx(expected_loss, rel=1e-13)
    np.testing.assert_allclose(grad, expected_grad, rtol=1e-11, atol=1e-15)
