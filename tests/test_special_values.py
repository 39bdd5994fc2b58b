"""-inf masks and nan propagation (docs/semantics.md, "-inf masks and nan")."""

from __future__ import annotations

import math

import numpy as np
import pytest
from conftest import NATIVE_TOLERANCES, assert_result

import fastxent
from fastxent import reference

INF = math.inf
NAN = math.nan
REDUCTIONS = ["mean", "sum", "none"]


def both(logits, target, **kwargs):
    """``(loss, grad)`` from fastxent, after checking it matches the reference."""
    dtype = logits.dtype
    rtol, atol = (1e-12, 1e-13) if dtype == np.float64 else (1e-5, 1e-6)
    loss = fastxent.cross_entropy(logits, target, **kwargs)
    loss2, grad = fastxent.cross_entropy_with_grad(logits, target, **kwargs)
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        ref_loss, ref_grad = reference.cross_entropy_with_grad(logits, target, **kwargs)
    assert_result(loss, ref_loss, dtype, rtol, atol)
    assert_result(loss2, ref_loss, dtype, rtol, atol)
    assert_result(grad, ref_grad, dtype, rtol, atol)
    return loss2, grad


# --------------------------------------------------------------------------------------
# softmax family
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize(("dtype", "rtol", "atol"), NATIVE_TOLERANCES)
def test_softmax_masked_class(dtype, rtol, atol):
    x = np.array([[1.0, -INF, 2.0, 0.5], [-INF, 0.0, -INF, 0.0]], dtype)
    p = fastxent.softmax(x)
    assert p[0, 1] == 0 and p[1, 0] == 0 and p[1, 2] == 0
    assert_result(p[0, [0, 2, 3]], reference.softmax(x[0, [0, 2, 3]]), dtype, rtol, atol)
    assert_result(p[1], [0.0, 0.5, 0.0, 0.5], dtype, rtol, atol)
    logp = fastxent.log_softmax(x)
    assert logp[0, 1] == -INF and logp[1, 0] == -INF and logp[1, 2] == -INF
    assert_result(logp[1, [1, 3]], [-math.log(2)] * 2, dtype, rtol, atol)
    assert_result(fastxent.logsumexp(x), reference.logsumexp(x), dtype, rtol, atol)


@pytest.mark.parametrize(("dtype", "rtol", "atol"), NATIVE_TOLERANCES)
@pytest.mark.parametrize(
    "bad_row",
    [
        pytest.param([-INF, -INF, -INF], id="all-minus-inf"),
        pytest.param([0.0, NAN, 1.0], id="nan"),
        pytest.param([NAN, NAN, NAN], id="all-nan"),
        pytest.param([0.0, INF, 1.0], id="plus-inf"),
        pytest.param([-INF, NAN, -INF], id="nan-and-minus-inf"),
    ],
)
def test_softmax_family_bad_row_is_nan_others_unaffected(dtype, rtol, atol, bad_row):
    x = np.array([[1.0, 2.0, 3.0], bad_row, [0.0, -INF, 0.0]], dtype)
    good = x[[0, 2]]
    p = fastxent.softmax(x)
    assert np.all(np.isnan(p[1]))
    assert_result(p[[0, 2]], fastxent.softmax(good), dtype, 0, 0)
    logp = fastxent.log_softmax(x)
    assert np.all(np.isnan(logp[1]))
    assert_result(logp[[0, 2]], fastxent.log_softmax(good), dtype, 0, 0)
    lse = fastxent.logsumexp(x)
    # SciPy's and PyTorch's logsumexp: nan with a nan, else +inf with +inf, else -inf.
    has_nan, has_inf = np.isnan(x[1]).any(), (x[1] == INF).any()
    np.testing.assert_array_equal(lse[1], NAN if has_nan else INF if has_inf else -INF)
    assert_result(lse[[0, 2]], fastxent.logsumexp(good), dtype, 0, 0)
    with np.errstate(invalid="ignore"):
        assert_result(p, reference.softmax(x), dtype, rtol, atol)
        assert_result(logp, reference.log_softmax(x), dtype, rtol, atol)
        assert_result(lse, reference.logsumexp(x), dtype, rtol, atol)


@pytest.mark.parametrize(("dtype", "rtol", "atol"), NATIVE_TOLERANCES)
def test_softmax_family_special_values_parallel_size(dtype, rtol, atol, rng):
    x = rng.standard_normal((40, 1000)).astype(dtype)
    x[::3, ::7] = -INF
    x[5] = -INF
    x[9, 17] = NAN
    x[11, 400] = INF
    with np.errstate(invalid="ignore"):
        expected = (reference.softmax(x), reference.log_softmax(x), reference.logsumexp(x))
    functions = (fastxent.softmax, fastxent.log_softmax, fastxent.logsumexp)
    for function, want in zip(functions, expected, strict=True):
        assert_result(function(x), want, dtype, rtol, atol)


# --------------------------------------------------------------------------------------
# cross-entropy: -inf masks
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize(("dtype", "rtol", "atol"), NATIVE_TOLERANCES)
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_masked_non_target_class(dtype, rtol, atol, reduction):
    logits = np.array([[1.0, -INF, 2.0, 0.5], [0.3, -INF, -INF, 1.2]], dtype)
    labels = np.array([0, 3])
    loss, grad = both(logits, labels, reduction=reduction)
    assert np.all(np.isfinite(loss))
    # Probability 0 and gradient exactly 0 at the masked classes.
    assert grad[0, 1] == 0 and grad[1, 1] == 0 and grad[1, 2] == 0
    assert np.all(np.isfinite(grad))
    # The same loss as without the masked classes.
    row0 = fastxent.cross_entropy_with_grad(logits[:1, [0, 2, 3]], np.array([0]), reduction="none")
    row1 = fastxent.cross_entropy_with_grad(logits[1:, [0, 3]], np.array([1]), reduction="none")
    per_row, grad_none = fastxent.cross_entropy_with_grad(logits, labels, reduction="none")
    np.testing.assert_allclose(per_row, [row0[0][0], row1[0][0]], rtol=rtol, atol=atol)
    np.testing.assert_allclose(grad_none[0, [0, 2, 3]], row0[1][0], rtol=rtol, atol=atol)
    np.testing.assert_allclose(grad_none[1, [0, 3]], row1[1][0], rtol=rtol, atol=atol)


@pytest.mark.parametrize(("dtype", "rtol", "atol"), NATIVE_TOLERANCES)
def test_masked_class_with_zero_weight_target(dtype, rtol, atol):
    # 0 * inf = 0: a target at -inf whose class weight is 0 adds nothing.
    logits = np.array([[1.0, -INF, 2.0], [0.0, 1.0, 2.0]], dtype)
    loss, grad = both(logits, np.array([1, 2]), weight=[1.0, 0.0, 1.0], reduction="none")
    assert loss[0] == 0
    assert np.all(np.isfinite(grad))


@pytest.mark.parametrize(("dtype", "rtol", "atol"), NATIVE_TOLERANCES)
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_target_at_minus_inf(dtype, rtol, atol, reduction):
    logits = np.array([[1.0, -INF, 2.0], [0.0, 1.0, 2.0]], dtype)
    labels = np.array([1, 0])
    loss, grad = both(logits, labels, reduction=reduction)
    if reduction == "none":
        assert loss[0] == INF and np.isfinite(loss[1])
    else:
        assert loss == INF
    assert np.all(np.isfinite(grad))
    # The gradient of the masked-target row is p - onehot: -1 (scaled) at the target.
    scale = 0.5 if reduction == "mean" else 1.0
    p = reference.softmax(np.array([1.0, 2.0]))
    assert_result(grad[0], scale * np.array([p[0], -1.0, p[1]]), dtype, rtol, atol)


@pytest.mark.parametrize(("dtype", "rtol", "atol"), NATIVE_TOLERANCES)
@pytest.mark.parametrize("kind", ["index", "probability"])
def test_all_minus_inf_row_is_nan(dtype, rtol, atol, kind):
    logits = np.array([[1.0, 2.0, 3.0], [-INF, -INF, -INF], [0.0, -INF, 1.0]], dtype)
    if kind == "index":
        target = np.array([2, 0, 2])
    else:
        target = np.array([[0.2, 0.3, 0.5], [1.0, 0.0, 0.0], [0.5, 0.0, 0.5]])
    loss, grad = both(logits, target, reduction="none")
    assert np.isnan(loss[1])
    assert np.all(np.isfinite(loss[[0, 2]]))
    assert np.all(np.isnan(grad[1]))
    assert np.all(np.isfinite(grad[[0, 2]]))
    # Others unaffected: the same as without the bad row.
    good_target = target[[0, 2]]
    good_loss, good_grad = fastxent.cross_entropy_with_grad(
        logits[[0, 2]], good_target, reduction="none"
    )
    np.testing.assert_array_equal(loss[[0, 2]], good_loss)
    np.testing.assert_array_equal(grad[[0, 2]], good_grad)
    for reduction in ("mean", "sum"):
        reduced, _ = both(logits, target, reduction=reduction)
        assert np.isnan(reduced)


@pytest.mark.parametrize(("dtype", "rtol", "atol"), NATIVE_TOLERANCES)
def test_probability_target_zero_mass_on_masked_class(dtype, rtol, atol):
    # 0 log 0 = 0: a masked class without target mass contributes nothing.
    logits = np.array([[1.0, -INF, 2.0], [-INF, 0.0, 0.0]], dtype)
    target = np.array([[0.25, 0.0, 0.75], [0.0, 0.5, 0.5]])
    loss, grad = both(logits, target, reduction="none")
    assert np.all(np.isfinite(loss))
    assert grad[0, 1] == 0 and grad[1, 0] == 0
    assert np.all(np.isfinite(grad))
    assert_result(loss[1], math.log(2), dtype, rtol, atol)
    unmasked = fastxent.cross_entropy(logits[:1, [0, 2]], target[:1, [0, 2]], reduction="none")
    np.testing.assert_allclose(loss[0], unmasked[0], rtol=rtol, atol=atol)


@pytest.mark.parametrize(("dtype", "rtol", "atol"), NATIVE_TOLERANCES)
def test_probability_target_mass_on_masked_class_is_inf(dtype, rtol, atol):
    logits = np.array([[1.0, -INF, 2.0]], dtype)
    loss, grad = both(logits, np.array([[0.5, 0.25, 0.25]]), reduction="none")
    assert loss[0] == INF
    assert np.all(np.isfinite(grad))


@pytest.mark.parametrize(("dtype", "rtol", "atol"), NATIVE_TOLERANCES)
@pytest.mark.parametrize("kind", ["index", "probability"])
def test_label_smoothing_with_masked_class_is_inf(dtype, rtol, atol, kind):
    logits = np.array([[1.0, -INF, 2.0], [0.0, 1.0, 2.0]], dtype)
    if kind == "index":
        target = np.array([0, 0])
    else:
        target = np.array([[1.0, 0.0, 0.0], [1.0, 0.0, 0.0]])
    loss, grad = both(logits, target, label_smoothing=0.1, reduction="none")
    assert loss[0] == INF and np.isfinite(loss[1])
    assert np.all(np.isfinite(grad))


@pytest.mark.parametrize("n_classes", [3, 600], ids=["short", "long"])
def test_label_smoothing_over_a_span_beyond_float32(n_classes):
    # z - m = -4e38 overflows float32, but the smoothed loss (eps / C) * 4e38 does not: the
    # smoothing sum, taken in float32 for speed, falls back to float64 for such rows.
    logits = np.zeros((3, n_classes), np.float32)
    logits[:, 0], logits[:, 1] = 2e38, -2e38
    weight = np.ones(n_classes)
    weight[2] = 0.0
    logits[2, 2] = -INF  # a zero weight at a -inf logit adds 0, not nan
    loss, grad = both(logits, np.zeros(3, np.int64), label_smoothing=0.1, weight=weight)
    assert np.all(np.isfinite(grad))
    # S = 1 (every other exp underflows), so each row's loss is (eps / C) sum_c w_c (m - z_c)
    # = (0.1 / C) (4e38 + (C - 3) 2e38); the mean divides by w_0 = 1 per row.
    exact = 0.1 / n_classes * (4e38 + (n_classes - 3) * 2e38)
    assert np.isfinite(loss) and loss == pytest.approx(exact, rel=1e-6)


# --------------------------------------------------------------------------------------
# cross-entropy: nan and +inf
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize(("dtype", "rtol", "atol"), NATIVE_TOLERANCES)
@pytest.mark.parametrize("kind", ["index", "probability"])
@pytest.mark.parametrize("column", [0, 1, 3], ids=["at-target", "elsewhere", "last"])
@pytest.mark.parametrize("options", [{}, {"label_smoothing": 0.1, "weight": [1, 2, 0, 1]}])
def test_nan_in_row_propagates_to_that_row_only(dtype, rtol, atol, kind, column, options):
    logits = np.array([[0.5, 1.0, -1.0, 2.0], [0.0, 0.3, 0.2, 0.1], [3.0, -INF, 1.0, 0.0]], dtype)
    logits[1, column] = NAN
    if options:
        logits[2, 1] = -1.5  # with label smoothing a masked class would give +inf
    if kind == "index":
        target = np.array([3, 0, 2])
    else:
        target = np.array([[0.0, 0.0, 0.0, 1.0], [1.0, 0.0, 0.0, 0.0], [0.0, 0.0, 1.0, 0.0]])
    loss, grad = both(logits, target, reduction="none", **options)
    assert np.isnan(loss[1])
    assert np.all(np.isnan(grad[1]))
    assert np.all(np.isfinite(loss[[0, 2]]))
    assert np.all(np.isfinite(grad[[0, 2]]))
    for reduction in ("mean", "sum"):
        reduced, reduced_grad = both(logits, target, reduction=reduction, **options)
        assert np.isnan(reduced)
        assert np.all(np.isfinite(reduced_grad[[0, 2]]))


@pytest.mark.parametrize(("dtype", "rtol", "atol"), NATIVE_TOLERANCES)
def test_nan_at_zero_weight_class_still_nan(dtype, rtol, atol):
    # The row has no distribution: nan even though the target's term has weight 0.
    logits = np.array([[NAN, 1.0, 2.0], [0.0, 1.0, 2.0]], dtype)
    loss, _ = both(logits, np.array([0, 1]), weight=[0.0, 1.0, 1.0], reduction="none")
    assert np.isnan(loss[0]) and np.isfinite(loss[1])


@pytest.mark.parametrize(("dtype", "rtol", "atol"), NATIVE_TOLERANCES)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("ignore_index", [-100, 1])
def test_nan_in_ignored_row_does_not_reach_the_loss(dtype, rtol, atol, reduction, ignore_index):
    logits = np.array([[0.5, 1.0, -1.0], [NAN, NAN, 0.0], [3.0, 0.0, INF], [0.0, 1.0, 2.0]], dtype)
    labels = np.array([2, ignore_index, ignore_index, 0])
    loss, grad = both(logits, labels, ignore_index=ignore_index, reduction=reduction)
    assert np.all(np.isfinite(loss))
    np.testing.assert_array_equal(grad[[1, 2]], np.zeros((2, 3)))
    assert np.all(np.isfinite(grad))
    kept_loss, kept_grad = fastxent.cross_entropy_with_grad(
        logits[[0, 3]], labels[[0, 3]], reduction=reduction
    )
    np.testing.assert_allclose(
        loss if reduction != "none" else loss[[0, 3]], kept_loss, rtol=rtol, atol=atol
    )
    np.testing.assert_allclose(grad[[0, 3]], kept_grad, rtol=rtol, atol=atol)


@pytest.mark.parametrize(("dtype", "rtol", "atol"), NATIVE_TOLERANCES)
@pytest.mark.parametrize("kind", ["index", "probability"])
def test_plus_inf_logit_gives_nan_row(dtype, rtol, atol, kind):
    logits = np.array([[INF, 1.0, 2.0], [0.0, 1.0, 2.0]], dtype)
    target = np.array([0, 1]) if kind == "index" else np.array([[1.0, 0, 0], [0, 1.0, 0]])
    loss, grad = both(logits, target, reduction="none")
    assert np.isnan(loss[0]) and np.isfinite(loss[1])
    assert np.all(np.isnan(grad[0])) and np.all(np.isfinite(grad[1]))


@pytest.mark.parametrize(("dtype", "rtol", "atol"), NATIVE_TOLERANCES)
def test_nan_probability_target_gives_nan(dtype, rtol, atol):
    logits = np.array([[0.0, 1.0, 2.0], [0.0, 1.0, 2.0]], dtype)
    target = np.array([[NAN, 0.5, 0.5], [0.0, 0.5, 0.5]])
    loss, grad = both(logits, target, reduction="none")
    assert np.isnan(loss[0]) and np.isfinite(loss[1])
    assert np.all(np.isfinite(grad[1]))


@pytest.mark.parametrize(("dtype", "rtol", "atol"), NATIVE_TOLERANCES)
def test_special_values_parallel_size(dtype, rtol, atol, rng):
    logits = rng.standard_normal((50, 700)).astype(dtype)
    labels = rng.integers(0, 700, 50)
    logits[::4, ::9] = -INF
    logits[3, labels[3]] = -INF  # target masked
    logits[7] = -INF  # whole row masked
    logits[10, 5] = NAN
    logits[12, :] = NAN
    labels[12] = -100  # nan row ignored
    for reduction in REDUCTIONS:
        loss, grad = both(logits, labels, reduction=reduction, label_smoothing=0.0)
        if reduction == "none":
            assert loss[3] == INF and np.isnan(loss[7]) and np.isnan(loss[10])
            assert loss[12] == 0
        assert np.all(grad[12] == 0)
        # masked classes that are not the target have gradient exactly 0
        masked = np.isneginf(logits)
        masked[np.arange(50), labels.clip(0)] = False
        masked[[7, 10, 12]] = False
        assert masked.sum() > 100
        assert np.all(grad[masked] == 0)
