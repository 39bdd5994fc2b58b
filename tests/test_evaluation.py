"""``fastxent.evaluate`` and ``Evaluation``.

Against ``fastxent.reference.evaluate`` (the float64 softmax, row by row), scikit-learn's
``log_loss`` and ``top_k_accuracy_score``, an expected calibration error written here
from its definition, and numbers worked by hand; chunked evaluations combined against
the whole; the edge rows (ignored, masked classes, non-finite) and bad input.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from conftest import assert_unchanged, parallel_rows, snapshot
from hypothesis import given, settings
from hypothesis import strategies as st

import fastxent
from fastxent import Evaluation, reference

SHAPES = [(1, 1), (7, 3), (33, 64), (50, 100), (20, 1003), (parallel_rows(257), 257)]


def make_case(rng, shape, dtype, ignored=True):
    logits = (3.0 * rng.standard_normal(shape)).astype(dtype)
    labels = rng.integers(0, shape[-1], shape[:-1])
    if ignored and labels.size > 2:
        labels.reshape(-1)[[0, labels.size // 2]] = -100
    return logits, labels


def assert_same_statistics(got, expected, rtol):
    for name in ("top_k", "bins", "count", "ignored", "nonfinite", "hits"):
        assert getattr(got, name) == getattr(expected, name), name
    for name in ("weight_sum", "loss_sum", "confidence_sum", "entropy_sum"):
        assert math.isclose(
            getattr(got, name), getattr(expected, name), rel_tol=rtol, abs_tol=rtol
        ), name
    np.testing.assert_allclose(got.bin_confidence, expected.bin_confidence, rtol=rtol, atol=rtol)


@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("weighted", [False, True], ids=["", "weighted"])
def test_matches_reference(rng, shape, dtype, weighted):
    logits, labels = make_case(rng, shape, dtype)
    weight = rng.uniform(0.2, 2.0, shape[-1]) if weighted else None
    saved = snapshot(logits, labels)
    got = fastxent.evaluate(logits, labels, weight=weight, top_k=(1, 2, 5), bins=10)
    assert_unchanged(saved)
    expected = reference.evaluate(logits, labels, weight=weight, top_k=(1, 2, 5), bins=10)
    # float32: the kernel's arithmetic against float64's of the same inputs; a row whose
    # confidence lies within rounding of a bin edge may then change bins.
    if dtype == np.float64:
        assert_same_statistics(got, expected, 1e-12)
        assert got.bin_counts == expected.bin_counts and got.bin_hits == expected.bin_hits
    else:
        assert_same_statistics(got, expected, 2e-6)
    for metric in ("nll", "perplexity", "ece", "confidence", "entropy"):
        assert math.isclose(getattr(got, metric), getattr(expected, metric), rel_tol=1e-5)


def test_n_dimensional_logits_with_a_class_axis(rng):
    logits, labels = make_case(rng, (4, 6, 9), np.float64)
    moved = np.moveaxis(logits, -1, 1)  # (4, 9, 6): classes on axis 1, as PyTorch lays them
    got = fastxent.evaluate(moved, labels, axis=1)
    assert_same_statistics(got, reference.evaluate(logits, labels), 1e-12)


def softmax(z):
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def test_matches_scikit_learn(rng):
    metrics = pytest.importorskip("sklearn.metrics")
    logits, labels = make_case(rng, (300, 12), np.float64, ignored=False)
    result = fastxent.evaluate(logits, labels, top_k=(1, 3, 5))
    classes = np.arange(12)
    assert math.isclose(
        result.nll, metrics.log_loss(labels, softmax(logits), labels=classes), rel_tol=1e-12
    )
    for k in (1, 3, 5):
        expected = metrics.top_k_accuracy_score(labels, logits, k=k, labels=classes)
        assert result.accuracy[k] == expected


def test_weighted_nll_is_cross_entropys_mean(rng):
    logits, labels = make_case(rng, (64, 10), np.float64)
    weight = rng.uniform(0.1, 3.0, 10)
    result = fastxent.evaluate(logits, labels, weight=weight)
    expected = fastxent.cross_entropy(logits, labels, weight=weight)
    assert math.isclose(result.nll, float(expected), rel_tol=1e-13)
    assert math.isclose(result.bits, float(expected) / math.log(2), rel_tol=1e-13)


def calibration_error(confidences, correct, bins):
    """Guo et al.'s ECE: bins [b/B, (b+1)/B), the last closed; |accuracy - confidence|."""
    total = 0.0
    for b in range(bins):
        low, high = b / bins, (b + 1) / bins
        inside = (confidences >= low) & ((confidences < high) | (b == bins - 1))
        if inside.any():
            gap = abs(correct[inside].mean() - confidences[inside].mean())
            total += inside.sum() / confidences.size * gap
    return total


@pytest.mark.parametrize("bins", [1, 10, 15])
def test_expected_calibration_error(rng, bins):
    logits, labels = make_case(rng, (500, 7), np.float64, ignored=False)
    p = softmax(logits)
    correct = (p.argmax(axis=1) == labels).astype(float)
    result = fastxent.evaluate(logits, labels, bins=bins)
    assert math.isclose(result.ece, calibration_error(p.max(axis=1), correct, bins), rel_tol=1e-12)
    assert math.isclose(result.confidence, p.max(axis=1).mean(), rel_tol=1e-13)
    entropy = -(p * np.log(p)).sum(axis=1).mean()
    assert math.isclose(result.entropy, entropy, rel_tol=1e-12)


def test_worked_example():
    """Probabilities [0.5, 0.25, 0.25] and [0.25, 0.25, 0.5], labels 0 and 1."""
    logits = np.log(np.array([[0.5, 0.25, 0.25], [0.25, 0.25, 0.5]]))
    result = fastxent.evaluate(logits, np.array([0, 1]), top_k=(1, 2, 3), bins=4)
    assert result.count == 2
    assert math.isclose(result.nll, (math.log(2) + math.log(4)) / 2, rel_tol=1e-15)
    assert math.isclose(result.perplexity, math.sqrt(8), rel_tol=1e-15)
    assert math.isclose(result.bits, 1.5, rel_tol=1e-15)
    # Row 2's label is tied with class 0 and below class 2: rank 1.
    assert result.accuracy == {1: 0.5, 2: 1.0, 3: 1.0}
    # Both confidences are 0.5, in bin [0.5, 0.75): accuracy 1/2, confidence 1/2.
    assert result.bin_counts == (0, 0, 2, 0) and result.ece == 0.0
    assert math.isclose(result.confidence, 0.5, rel_tol=1e-15)
    assert math.isclose(result.entropy, 1.5 * math.log(2), rel_tol=1e-15)


def test_ties_count_for_the_label():
    logits = np.zeros((3, 4))
    result = fastxent.evaluate(logits, np.array([0, 1, 3]), top_k=(1,))
    assert result.accuracy == {1: 1.0}  # no class strictly above the label
    assert math.isclose(result.nll, math.log(4), rel_tol=1e-15)


@pytest.mark.parametrize("n_chunks", [2, 3, 7])
def test_chunks_combine_to_the_whole(rng, n_chunks):
    logits, labels = make_case(rng, (101, 37), np.float64)
    logits[5, 3] = np.nan  # a non-finite row in one chunk
    whole = fastxent.evaluate(logits, labels)
    bounds = np.linspace(0, 101, n_chunks + 1).astype(int)
    parts = [
        fastxent.evaluate(logits[a:b], labels[a:b])
        for a, b in zip(bounds[:-1], bounds[1:], strict=True)
    ]
    assert_same_statistics(Evaluation.combine(parts), whole, 1e-13)
    assert Evaluation.combine(parts).bin_counts == whole.bin_counts
    assert sum(parts[1:], parts[0]).count == whole.count


def test_ignored_masked_and_nonfinite_rows():
    logits = np.array(
        [
            [0.0, -np.inf, 1.0],  # a masked class: 0 probability, no entropy term
            [np.nan, 0.0, 0.0],  # nan: its loss is nan
            [0.0, -np.inf, 1.0],  # the label's logit -inf: infinite loss
            [2.0, 2.0, 2.0],  # ignored
        ]
    )
    result = fastxent.evaluate(logits, np.array([2, 0, 1, -100]), top_k=(1,))
    assert (result.count, result.nonfinite, result.ignored) == (1, 2, 1)
    expected = reference.evaluate(logits, np.array([2, 0, 1, -100]), top_k=(1,))
    assert_same_statistics(result, expected, 1e-15)
    p = np.array([1.0, math.e]) / (1.0 + math.e)
    assert math.isclose(result.entropy, -(p * np.log(p)).sum(), rel_tol=1e-14)


def test_every_row_ignored_gives_nan_metrics():
    result = fastxent.evaluate(np.zeros((3, 5)), np.full(3, -100))
    assert result.count == 0 and result.ignored == 3
    for value in (result.nll, result.perplexity, result.ece, result.confidence, result.entropy):
        assert math.isnan(value)
    assert all(math.isnan(v) for v in result.accuracy.values())


def test_top_k_at_least_the_classes_is_a_perfect_score(rng):
    logits, labels = make_case(rng, (20, 4), np.float32)
    assert fastxent.evaluate(logits, labels, top_k=(4, 10)).accuracy == {4: 1.0, 10: 1.0}


def test_float16_is_computed_in_float32(rng):
    logits, labels = make_case(rng, (30, 11), np.float16)
    got = fastxent.evaluate(logits, labels)
    assert_same_statistics(got, reference.evaluate(logits.astype(np.float32), labels), 2e-6)


def test_as_dict_and_algebra(rng):
    logits, labels = make_case(rng, (10, 6), np.float64)
    result = fastxent.evaluate(logits, labels, top_k=(1, 5))
    values = result.as_dict()
    assert set(values) == {
        "count", "ignored", "nonfinite", "nll", "bits", "perplexity", "accuracy", "ece",
        "confidence", "entropy",
    }  # fmt: skip
    assert values["accuracy"] == {"1": result.accuracy[1], "5": result.accuracy[5]}
    with pytest.raises(ValueError, match="same options"):
        _ = result + fastxent.evaluate(logits, labels, top_k=(1,))
    with pytest.raises(ValueError, match="at least one"):
        Evaluation.combine([])
    with pytest.raises(AttributeError):
        result.count = 3  # type: ignore[misc]


@pytest.mark.parametrize(
    ("change", "error", "message"),
    [
        (
            {"target": np.array([0, 5, 9, -1])},
            ValueError,
            r"3 labels outside \[0, 5\).*first is 5, at row 1",
        ),
        ({"target": np.zeros((4, 5))}, TypeError, "integer class indices"),
        ({"logits": np.zeros((4, 5), np.int64)}, TypeError, "logits"),
        ({"target": np.zeros(3, np.int64)}, ValueError, "shape"),
        ({"top_k": (0, 1)}, ValueError, "top_k must be positive ints"),
        ({"top_k": ("a",)}, ValueError, "top_k must be positive ints"),
        ({"bins": 0}, ValueError, "bins must be a positive int"),
        ({"bins": 2.5}, ValueError, "bins must be a positive int"),
        ({"weight": np.ones(4)}, ValueError, "weight"),
    ],
)
def test_bad_input_is_refused(change, error, message):
    arguments = {"logits": np.zeros((4, 5)), "target": np.array([0, 1, 2, 3]), **change}
    logits, target = arguments.pop("logits"), arguments.pop("target")
    with pytest.raises(error, match=message):
        fastxent.evaluate(logits, target, **arguments)


@settings(max_examples=200, deadline=None)
@given(
    shape=st.lists(st.integers(0, 5), min_size=0, max_size=3).map(tuple),
    dtype=st.sampled_from(["float16", "float32", "float64", "int32", "bool"]),
    label_dtype=st.sampled_from(["int64", "int8", "uint16", "float32"]),
    label_range=st.integers(-3, 8),
    axis=st.integers(-4, 3),
    top_k=st.sampled_from([1, (1, 5), (), (0,), [2, 2], "5"]),
    bins=st.sampled_from([1, 15, 0, -2, 3.0]),
    special=st.sampled_from([None, np.nan, np.inf, -np.inf]),
)
def test_any_call_returns_or_raises_a_clear_error(
    shape, dtype, label_dtype, label_range, axis, top_k, bins, special
):
    """Any mix of shapes, dtypes, labels and options: an Evaluation, or a TypeError/ValueError."""
    rng = np.random.default_rng(0)
    logits = rng.standard_normal(shape).astype(dtype)
    if special is not None and logits.size and dtype.startswith("float"):
        logits.reshape(-1)[0] = special
    batch = shape[:axis] + shape[axis + 1 :] if -len(shape) <= axis < len(shape) else shape[:-1]
    labels = rng.integers(-1, max(label_range, 0) + 1, batch).astype(label_dtype)
    try:
        result = fastxent.evaluate(logits, labels, axis=axis, top_k=top_k, bins=bins)
    except (TypeError, ValueError) as error:
        assert str(error)  # a message, not a bare exception
        return
    assert isinstance(result, Evaluation)
    assert result.count + result.nonfinite + result.ignored == labels.size


def test_rank_is_exact_on_a_large_vocabulary():
    """The label below every other class of 100000: rank 99999, counted exactly in float32."""
    logits = np.arange(100000, dtype=np.float32)[np.newaxis].repeat(2, axis=0) / 1000
    result = fastxent.evaluate(logits, np.array([0, 99999]), top_k=(1, 99999, 100000))
    assert result.hits == (1, 1, 2)
