"""cross_entropy_from_probs, entropy and kl_divergence.

Compared with ``fastxent.reference`` for float32/float64 and every class axis of a 3-D
input, and with hand-worked values (the seeds' numbers, ``log C`` for a uniform distribution,
the clip at ``eps``). ``nan`` probabilities and masked classes: test_special_values.py;
PyTorch's ``kl_div``: test_torch_parity.py.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest

import fastxent
from fastxent import reference

#: (dtype, rtol, atol) against the float64 reference.
TOLERANCES = [
    pytest.param(np.float32, 1e-5, 1e-6, id="float32"),
    pytest.param(np.float64, 1e-12, 1e-13, id="float64"),
]
REDUCTIONS = ["mean", "sum", "none"]
SHAPE_3D = (3, 4, 5)
AXES = [0, 1, -1]


def result_dtype(dtype: Any) -> np.dtype[Any]:
    return np.dtype(np.float64) if np.dtype(dtype) == np.float64 else np.dtype(np.float32)


def batch_shape(shape: tuple[int, ...], axis: int) -> tuple[int, ...]:
    axis %= len(shape)
    return shape[:axis] + shape[axis + 1 :]


def make_probs(
    shape: tuple[int, ...], axis: int, dtype: Any = np.float64, seed: int = 0, zeros: bool = True
) -> np.ndarray:
    """Rows along ``axis`` that sum to 1, some entries exactly 0 (never a whole row)."""
    rng = np.random.default_rng(seed)
    raw = rng.random(shape)
    if zeros:
        raw[raw < 0.25] = 0.0
    first = [slice(None)] * len(shape)
    first[axis] = slice(0, 1)
    raw[tuple(first)] += 0.01  # every row keeps some mass
    return (raw / raw.sum(axis=axis, keepdims=True)).astype(dtype)


def make_logits(shape: tuple[int, ...], dtype: Any = np.float64, seed: int = 1) -> np.ndarray:
    return (3.0 * np.random.default_rng(seed).standard_normal(shape)).astype(dtype)


def make_labels(shape: tuple[int, ...], n_classes: int, seed: int = 2) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, n_classes, size=shape)


def check_loss(
    loss: Any, expected: Any, dtype: Any, rtol: float, atol: float, shape: Any = None
) -> None:
    """A reduced loss is a scalar of the result dtype; ``"none"`` an array of ``shape``."""
    rdtype = result_dtype(dtype)
    if shape is None:
        assert type(loss) is rdtype.type, type(loss)
    else:
        assert isinstance(loss, np.ndarray), type(loss)
        assert loss.shape == shape and loss.dtype == rdtype, (loss.shape, loss.dtype)
    assert np.shape(loss) == np.shape(expected)
    np.testing.assert_allclose(
        np.asarray(loss, dtype=np.float64),
        np.asarray(expected, dtype=np.float64),
        rtol=rtol,
        atol=atol,
    )


def unchanged(*pairs: tuple[np.ndarray, np.ndarray]) -> None:
    for array, copy in pairs:
        assert np.array_equal(array, copy, equal_nan=True), "an input was modified"


# --------------------------------------------------------------------------------------
# cross_entropy_from_probs
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("base", [None, 10])
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("target_kind", ["index", "probability"])
@pytest.mark.parametrize("axis", AXES)
@pytest.mark.parametrize(("dtype", "rtol", "atol"), TOLERANCES)
def test_from_probs_matches_reference(
    dtype: Any, rtol: float, atol: float, axis: int, target_kind: str, reduction: str, base: Any
) -> None:
    probs = make_probs(SHAPE_3D, axis, dtype)  # exact zeros: the eps clip is exercised
    batch = batch_shape(SHAPE_3D, axis)
    if target_kind == "index":
        target = make_labels(batch, SHAPE_3D[axis])
    else:
        target = make_probs(SHAPE_3D, axis, dtype, seed=7)
    saved = probs.copy(), target.copy()
    kwargs = {"axis": axis, "reduction": reduction, "base": base}
    expected = reference.cross_entropy_from_probs(probs, target, **kwargs)
    loss = fastxent.cross_entropy_from_probs(probs, target, **kwargs)
    check_loss(loss, expected, dtype, rtol, atol, batch if reduction == "none" else None)
    unchanged((probs, saved[0]), (target, saved[1]))


@pytest.mark.parametrize("eps", [0.0, 1e-12, 1e-3, 0.5])
@pytest.mark.parametrize("target_kind", ["index", "probability"])
def test_from_probs_matches_reference_for_any_eps(target_kind: str, eps: float) -> None:
    probs = make_probs((6, 5), -1)
    target = make_labels((6,), 5) if target_kind == "index" else make_probs((6, 5), -1, seed=4)
    if eps == 0.0:  # avoid inf: no target mass on a zero probability
        target = np.argmax(probs, axis=-1) if target_kind == "index" else probs.copy()
    kwargs = {"eps": eps, "reduction": "none"}
    expected = reference.cross_entropy_from_probs(probs, target, **kwargs)
    loss = fastxent.cross_entropy_from_probs(probs, target, **kwargs)
    check_loss(loss, expected, np.float64, 1e-12, 1e-13, (6,))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_from_probs_seed_numbers(dtype: Any) -> None:
    # Seed articles: P = (0.5, 0.4, 0.1) and (0.8, 0.1, 0.1), target class 0, base 10.
    probs = np.array([[0.5, 0.4, 0.1], [0.8, 0.1, 0.1]], dtype=dtype)
    rtol = 1e-12 if dtype == np.float64 else 1e-6
    for target in (np.array([0, 0]), np.array([[1.0, 0.0, 0.0], [1.0, 0.0, 0.0]])):
        loss = fastxent.cross_entropy_from_probs(probs, target, reduction="none", base=10)
        assert np.array_equal(np.round(loss, 1), np.array([0.3, 0.1], dtype=dtype))
        # -log10(0.5) = 0.30103, -log10(0.8) = 0.09691
        check_loss(loss, [math.log10(2.0), -math.log10(0.8)], dtype, rtol, 0.0, (2,))
        mean = fastxent.cross_entropy_from_probs(probs, target, base=10)
        check_loss(mean, (math.log10(2.0) - math.log10(0.8)) / 2.0, dtype, rtol, 0.0)
        total = fastxent.cross_entropy_from_probs(probs, target, reduction="sum", base=10)
        check_loss(total, math.log10(2.0) - math.log10(0.8), dtype, rtol, 0.0)
        nats = fastxent.cross_entropy_from_probs(probs, target, reduction="none")
        check_loss(nats, [math.log(2.0), -math.log(0.8)], dtype, rtol, 0.0, (2,))


def test_from_probs_single_sample() -> None:
    loss = fastxent.cross_entropy_from_probs(np.array([0.5, 0.4, 0.1]), np.array(1))
    check_loss(loss, -math.log(0.4), np.float64, 1e-14, 0.0)
    none = fastxent.cross_entropy_from_probs(
        np.array([0.5, 0.4, 0.1]), np.array(1), reduction="none"
    )
    check_loss(none, -math.log(0.4), np.float64, 1e-14, 0.0, ())


@pytest.mark.parametrize("target_kind", ["index", "probability"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_from_probs_clips_a_zero_probability(dtype: Any, target_kind: str) -> None:
    probs = np.array([[0.0, 0.3, 0.7], [0.0, 0.3, 0.7], [0.2, 0.8, 0.0]], dtype=dtype)
    target: np.ndarray = np.array([0, 0, 2])
    if target_kind == "probability":
        target = np.eye(3)[target]
    rtol = 1e-12 if dtype == np.float64 else 1e-6
    default = fastxent.cross_entropy_from_probs(probs, target, reduction="none")
    # -log(1e-7) = 7 ln 10
    check_loss(default, [7 * math.log(10.0)] * 3, dtype, rtol, 0.0, (3,))
    loose = fastxent.cross_entropy_from_probs(probs, target, eps=1e-3, reduction="none")
    check_loss(loose, [3 * math.log(10.0)] * 3, dtype, rtol, 0.0, (3,))
    with np.errstate(divide="ignore"):
        none = fastxent.cross_entropy_from_probs(probs, target, eps=0.0, reduction="none")
        assert np.all(np.isposinf(none)), none
        assert np.isposinf(fastxent.cross_entropy_from_probs(probs, target, eps=0.0))


def test_from_probs_eps_clips_above_too() -> None:
    # eps=0.3 lifts 0.2 to 0.3; P > 1 is clipped to 1 (loss 0).
    probs = np.array([[0.2, 0.8], [1.5, 0.0]])
    loss = fastxent.cross_entropy_from_probs(probs, np.array([0, 0]), eps=0.3, reduction="none")
    check_loss(loss, [-math.log(0.3), 0.0], np.float64, 1e-14, 0.0, (2,))
    assert loss[1] == 0.0


# --------------------------------------------------------------------------------------
# entropy
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("base", [None, 2])
@pytest.mark.parametrize("reduction", [*REDUCTIONS, None])
@pytest.mark.parametrize("axis", AXES)
@pytest.mark.parametrize(("dtype", "rtol", "atol"), TOLERANCES)
def test_entropy_matches_reference(
    dtype: Any, rtol: float, atol: float, axis: int, reduction: Any, base: Any
) -> None:
    probs = make_probs(SHAPE_3D, axis, dtype)
    saved = probs.copy()
    kwargs: dict[str, Any] = {"axis": axis, "base": base}
    if reduction is not None:  # None: the default, which is "none"
        kwargs["reduction"] = reduction
    expected = reference.entropy(probs, **kwargs)
    loss = fastxent.entropy(probs, **kwargs)
    reduced = reduction in ("mean", "sum")
    check_loss(loss, expected, dtype, rtol, atol, None if reduced else batch_shape(SHAPE_3D, axis))
    unchanged((probs, saved))


@pytest.mark.parametrize("n_classes", [1, 2, 3, 7, 1000, 65537])
def test_entropy_of_uniform_is_log_c(n_classes: int) -> None:
    probs = np.full((3, n_classes), 1.0 / n_classes)
    entropy = fastxent.entropy(probs)
    check_loss(entropy, [math.log(n_classes)] * 3, np.float64, 1e-12, 0.0, (3,))
    if n_classes == 1:
        assert np.all(entropy == 0.0)
    probs32 = probs.astype(np.float32)
    check_loss(fastxent.entropy(probs32), [math.log(n_classes)] * 3, np.float32, 1e-5, 1e-7, (3,))


def test_entropy_of_one_hot_is_zero() -> None:
    probs = np.eye(5)[[0, 3, 4, 1]]
    for dtype in (np.float32, np.float64):
        entropy = fastxent.entropy(probs.astype(dtype))
        assert entropy.shape == (4,) and entropy.dtype == result_dtype(dtype)
        assert np.all(entropy == 0.0), entropy


@pytest.mark.parametrize(
    ("row", "bits"),
    [([0.5, 0.5], 1.0), ([0.5, 0.25, 0.25], 1.5), ([0.125] * 8, 3.0), ([0.5, 0.5, 0.0], 1.0)],
)
def test_entropy_in_bits(row: list[float], bits: float) -> None:
    entropy = fastxent.entropy(np.array([row]), base=2)
    check_loss(entropy, [bits], np.float64, 1e-14, 0.0, (1,))


def test_entropy_zero_log_zero_is_zero() -> None:
    probs = np.array([[0.5, 0.0, 0.5], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    entropy = fastxent.entropy(probs, reduction="none")
    check_loss(entropy, [math.log(2.0), 0.0, 0.0], np.float64, 1e-15, 0.0, (3,))
    check_loss(fastxent.entropy(probs, reduction="sum"), math.log(2.0), np.float64, 1e-15, 0.0)
    check_loss(fastxent.entropy(probs, reduction="mean"), math.log(2.0) / 3, np.float64, 1e-15, 0.0)


def test_entropy_along_each_axis_worked() -> None:
    # Column j of P is uniform over 2**j classes ... laid out along axis 0.
    probs = np.array([[1.0, 0.5, 0.25], [0.0, 0.5, 0.25], [0.0, 0.0, 0.25], [0.0, 0.0, 0.25]])
    check_loss(fastxent.entropy(probs, axis=0, base=2), [0.0, 1.0, 2.0], np.float64, 1e-14, 0.0,
               (3,))  # fmt: skip
    stacked = np.stack([probs, probs[:, ::-1]], axis=1)  # (4, 2, 3), classes on axis 0
    check_loss(
        fastxent.entropy(stacked, axis=0, base=2),
        [[0.0, 1.0, 2.0], [2.0, 1.0, 0.0]], np.float64, 1e-14, 0.0, (2, 3),
    )  # fmt: skip


# --------------------------------------------------------------------------------------
# kl_divergence
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("base", [None, 2])
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("target_kind", ["index", "probability"])
@pytest.mark.parametrize("axis", AXES)
@pytest.mark.parametrize(("dtype", "rtol", "atol"), TOLERANCES)
def test_kl_matches_reference(
    dtype: Any, rtol: float, atol: float, axis: int, target_kind: str, reduction: str, base: Any
) -> None:
    logits = make_logits(SHAPE_3D, dtype)
    batch = batch_shape(SHAPE_3D, axis)
    if target_kind == "index":
        target = make_labels(batch, SHAPE_3D[axis])
    else:
        target = make_probs(SHAPE_3D, axis, dtype, seed=9)
    saved = logits.copy(), target.copy()
    kwargs = {"axis": axis, "reduction": reduction, "base": base}
    expected = reference.kl_divergence(logits, target, **kwargs)
    loss = fastxent.kl_divergence(logits, target, **kwargs)
    check_loss(loss, expected, dtype, rtol, atol, batch if reduction == "none" else None)
    unchanged((logits, saved[0]), (target, saved[1]))


@pytest.mark.parametrize("axis", AXES)
@pytest.mark.parametrize(("dtype", "rtol", "atol"), TOLERANCES)
def test_kl_of_a_distribution_with_itself_is_zero(
    dtype: Any, rtol: float, atol: float, axis: int
) -> None:
    q = make_probs(SHAPE_3D, axis, seed=12)  # zeros in q become -inf logits
    with np.errstate(divide="ignore"):
        logits = np.log(q).astype(dtype)
    q = q.astype(dtype)
    kl = fastxent.kl_divergence(logits, q, axis=axis, reduction="none")
    assert kl.shape == batch_shape(SHAPE_3D, axis)
    assert np.all(np.isfinite(kl))
    np.testing.assert_allclose(kl, 0.0, rtol=0.0, atol=atol)
    # shifting every logit of a row leaves softmax, and so the divergence, unchanged
    shifted = (logits + np.asarray(5.0, dtype=dtype)).astype(dtype)
    np.testing.assert_allclose(
        fastxent.kl_divergence(shifted, q, axis=axis, reduction="none"), 0.0, rtol=0.0, atol=atol
    )


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("axis", AXES)
@pytest.mark.parametrize(("dtype", "rtol", "atol"), TOLERANCES)
def test_kl_with_integer_targets_is_cross_entropy(
    dtype: Any, rtol: float, atol: float, axis: int, reduction: str
) -> None:
    logits = make_logits(SHAPE_3D, dtype, seed=13)
    labels = make_labels(batch_shape(SHAPE_3D, axis), SHAPE_3D[axis], seed=14)
    kl = fastxent.kl_divergence(logits, labels, axis=axis, reduction=reduction)
    expected = reference.cross_entropy(logits, labels, axis=axis, reduction=reduction)
    check_loss(kl, expected, dtype, rtol, atol, None if reduction != "none" else kl.shape)
    one_hot = np.moveaxis(np.eye(SHAPE_3D[axis], dtype=dtype)[labels], -1, axis)
    as_probs = fastxent.kl_divergence(logits, one_hot, axis=axis, reduction=reduction)
    check_loss(as_probs, expected, dtype, rtol, atol, None if reduction != "none" else kl.shape)


@pytest.mark.parametrize(("dtype", "rtol", "atol"), TOLERANCES)
def test_kl_is_non_negative(dtype: Any, rtol: float, atol: float) -> None:
    rng = np.random.default_rng(15)
    logits = (rng.standard_normal((400, 9)) * rng.choice([0.01, 1.0, 10.0], (400, 1))).astype(dtype)
    q = make_probs((400, 9), -1, dtype, seed=16)
    kl = fastxent.kl_divergence(logits, q, reduction="none")
    assert np.all(kl >= 0.0), kl.min()
    assert np.all(kl > 0.0)  # none of these random pairs is equal
