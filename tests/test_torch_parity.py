"""Parity with PyTorch's softmax family and ``F.cross_entropy`` (loss and autograd gradient).

Skipped when PyTorch is not installed. Only cases where docs/semantics.md says we follow
PyTorch are compared (not ``0 * log 0`` at ``-inf``, where PyTorch gives ``nan``).
"""

from __future__ import annotations

import numpy as np
import pytest
from conftest import NATIVE_TOLERANCES, make_labels, make_logits, make_probabilities

import fastxent

torch = pytest.importorskip("torch")
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


def assert_parity(logits, target, rtol, atol, axis=-1, **kwargs):
    expected_loss, expected_grad = torch_cross_entropy(logits, target, axis=axis, **kwargs)
    loss = fastxent.cross_entropy(logits, target, axis=axis, **kwargs)
    loss2, grad = fastxent.cross_entropy_with_grad(logits, target, axis=axis, **kwargs)
    np.testing.assert_allclose(loss, expected_loss, rtol=rtol, atol=atol)
    np.testing.assert_allclose(loss2, expected_loss, rtol=rtol, atol=atol)
    assert np.shape(loss) == expected_loss.shape
    assert grad.shape == expected_grad.shape
    np.testing.assert_allclose(grad, expected_grad, rtol=rtol, atol=atol)


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
        options["weight"] = rng.random(6) + 0.1
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
        options["weight"] = rng.random(5) + 0.1
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
        logits, target, rtol, atol, axis=1, reduction=reduction, weight=rng.random(5) + 0.5
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
