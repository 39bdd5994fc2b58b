"""The worked numbers of the seed articles, at the precision the articles give them.

Seeds 000, 001 and 004 use base-10 logs; seed 002 uses natural logs.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

import fastxent

FLOAT_DTYPES = [np.float32, np.float64]


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
def test_softmax_of_1_2_3(dtype):
    """Seed 002: softmax([1, 2, 3]) = [2.72, 7.39, 20.09] / 30.19 = [0.09, 0.24, 0.67]."""
    p = fastxent.softmax(np.array([1.0, 2.0, 3.0], dtype=dtype))
    np.testing.assert_array_equal(np.round(p.astype(np.float64), 2), [0.09, 0.24, 0.67])
    e = [math.exp(1), math.exp(2), math.exp(3)]
    assert round(sum(e), 2) == 30.19
    np.testing.assert_allclose(p, np.array(e) / sum(e), rtol=1e-6)


W = np.array([[0.1, 0.2, 0.3], [0.4, 0.5, 0.6], [0.7, 0.8, 0.9]])
X = np.array([1.0, 2.0, 3.0])


def test_seed_002_logits():
    """Seed 002: a = W x = [1.4, 3.2, 5.0]."""
    np.testing.assert_allclose(W @ X, [1.4, 3.2, 5.0], rtol=1e-15)


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
def test_seed_002_softmax(dtype):
    """Seed 002: softmax(W x) = [0.02, 0.14, 0.84]."""
    p = fastxent.softmax((W @ X).astype(dtype))
    np.testing.assert_array_equal(np.round(p.astype(np.float64), 2), [0.02, 0.14, 0.84])


def test_seed_002_cross_entropy():
    """Seed 002: L = -log(p_3) for the label "car" (class index 2), natural log.

    The article writes ``-log(0.84) = 0.17``: it takes the log of the *rounded* probability
    0.84. The exact loss is ``-ln(0.83848...) = 0.17615``, which rounds to 0.18; fastxent
    must give the exact value.
    """
    a = W @ X
    p = np.exp(a) / np.sum(np.exp(a))  # by hand, no overflow at these magnitudes
    loss = fastxent.cross_entropy(a, np.array(2))
    assert type(loss) is np.float64
    assert abs(float(loss) - (-math.log(p[2]))) <= 1e-15
    # The article's arithmetic, from its rounded probability.
    assert round(-math.log(round(p[2], 2)), 2) == 0.17
    assert round(float(loss), 2) == 0.18
    # Integer index and the one-hot label vector y = [0, 0, 1] agree.
    loss_onehot = fastxent.cross_entropy(a, np.array([0.0, 0.0, 1.0]))
    assert abs(float(loss_onehot) - float(loss)) <= 1e-15
    # Batch form (one row) gives the same number.
    batch = fastxent.cross_entropy(a[np.newaxis, :], np.array([2]))
    assert abs(float(batch) - float(loss)) <= 1e-15


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
def test_seed_002_gradient(dtype):
    """Seed 002: dL/da = p - y = [0.02, 0.14, -0.16]."""
    a = W @ X
    p = np.exp(a) / np.sum(np.exp(a))
    _, grad = fastxent.cross_entropy_with_grad(a.astype(dtype), np.array(2))
    np.testing.assert_array_equal(np.round(grad.astype(np.float64), 2), [0.02, 0.14, -0.16])
    rtol = 1e-14 if dtype == np.float64 else 1e-6
    np.testing.assert_allclose(grad, p - [0.0, 0.0, 1.0], rtol=rtol, atol=rtol)


SEED_001_CASES = [
    pytest.param((0.5, 0.4, 0.1), 0.3, id="q1"),
    pytest.param((0.8, 0.1, 0.1), 0.1, id="q2"),
]


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
@pytest.mark.parametrize(("probabilities", "rounded"), SEED_001_CASES)
def test_seed_001_base_10(dtype, probabilities, rounded):
    """Seed 001: target (1, 0, 0); outputs (0.5, 0.4, 0.1) -> 0.3, (0.8, 0.1, 0.1) -> 0.1.

    Log-probabilities as logits: softmax recovers the probabilities exactly (they sum to 1).
    """
    logits = np.log(np.array(probabilities)).astype(dtype)
    np.testing.assert_allclose(fastxent.softmax(logits), probabilities, rtol=1e-6)
    exact = -math.log10(probabilities[0])
    by_probability = fastxent.cross_entropy(logits, np.array([1.0, 0.0, 0.0]), base=10)
    by_index = fastxent.cross_entropy(logits, np.array(0), base=10)
    for loss in (by_probability, by_index):
        assert round(float(loss), 1) == rounded
        np.testing.assert_allclose(float(loss), exact, rtol=1e-6)


def test_seed_001_second_output_is_closer():
    """Seed 001: (0.8, 0.1, 0.1) is closer to (1, 0, 0), so its cross-entropy is smaller."""
    losses = [
        float(fastxent.cross_entropy(np.log(np.array(q)), np.array(0), base=10))
        for q, _ in (case.values for case in SEED_001_CASES)
    ]
    assert losses[1] < losses[0]


SEED_000_LOGITS = np.array(
    [[-0.69314718, -1.60943791, -1.2039728], [-0.22314355, -2.30258509, -2.30258509]]
)


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
def test_seed_000_softmax_with_and_without_max_subtraction(dtype):
    """Seeds 000/004: these logits are log(0.5, 0.2, 0.3) and log(0.8, 0.1, 0.1).

    At these magnitudes the naive ``exp(a) / sum(exp(a))`` is exact enough and agrees with
    the max-subtracted softmax.
    """
    a = SEED_000_LOGITS.astype(dtype)
    naive = np.exp(a.astype(np.float64)) / np.sum(np.exp(a.astype(np.float64)), axis=1)[:, None]
    p = fastxent.softmax(a)
    rtol = 1e-14 if dtype == np.float64 else 1e-6
    np.testing.assert_allclose(p, naive, rtol=rtol)
    np.testing.assert_allclose(p, [[0.5, 0.2, 0.3], [0.8, 0.1, 0.1]], rtol=1e-6)


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
def test_seed_000_batch_mean_base_10(dtype):
    """Seeds 000/004: labels [0, 0]; the batch mean in base 10 is 0.2 (0.199)."""
    a = SEED_000_LOGITS.astype(dtype)
    loss = fastxent.cross_entropy(a, np.array([0, 0]), base=10)
    assert round(float(loss), 1) == 0.2
    assert round(float(loss), 3) == 0.199
    exact = (-math.log10(0.5) - math.log10(0.8)) / 2
    np.testing.assert_allclose(float(loss), exact, rtol=1e-6)
    per_row = fastxent.cross_entropy(a, np.array([0, 0]), base=10, reduction="none")
    np.testing.assert_array_equal(np.round(per_row.astype(np.float64), 2), [0.30, 0.10])
    # The one-hot target matrix of the article gives the same mean.
    onehot = np.array([[1.0, 0.0, 0.0], [1.0, 0.0, 0.0]])
    np.testing.assert_allclose(
        float(fastxent.cross_entropy(a, onehot, base=10)), float(loss), rtol=1e-6
    )
