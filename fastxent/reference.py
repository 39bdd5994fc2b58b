"""Plain-NumPy reference implementations of every public ``fastxent`` function.

This module is the executable specification of ``fastxent``: each function follows the
rules of ``docs/semantics.md`` literally, written for readability rather than speed, and
the tests compare the fast Numba kernels against it.

Conventions shared by every function here:

- All arithmetic is done in float64, whatever the input dtype, so that the reference is
  an accuracy oracle. Results come back in the *result dtype*: float32 for float16 and
  float32 inputs, float64 for float64 inputs.
- The class axis is moved last, so a ``(..., C)`` array of rows is all the code sees.
- ``0 * log 0 = 0``: wherever a target coefficient multiplies a logarithm, a zero
  coefficient gives exactly ``0``, even when the logarithm is ``-inf`` or ``nan``.
- ``base=b`` divides every loss and gradient by ``ln b``; ``base=None`` means natural log.
- Inputs are never modified; only an explicit ``out=`` array is written to.

Validation is kept to the minimum needed to avoid silently wrong numbers (an unknown
``reduction``, a non-float array, a class index out of range); the public API does the
full checking.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

__all__ = [
    "binary_cross_entropy",
    "binary_cross_entropy_with_grad",
    "cross_entropy",
    "cross_entropy_from_probs",
    "cross_entropy_with_grad",
    "entropy",
    "kl_divergence",
    "log_softmax",
    "logsumexp",
    "softmax",
]

F64 = NDArray[np.float64]
#: The axes a reduction spans: one, several, or ``None`` for all of them.
Axis = int | tuple[int, ...] | None
#: What a loss function returns: an array for ``reduction="none"``, else a NumPy scalar.
Loss = NDArray[np.floating[Any]] | np.floating[Any]


# --------------------------------------------------------------------------------------
# Private helpers
# --------------------------------------------------------------------------------------


def _result_dtype(x: NDArray[Any]) -> np.dtype[Any]:
    """float32 for float16/float32 input, float64 for float64 input."""
    if x.dtype == np.float64:
        return np.dtype(np.float64)
    if x.dtype in (np.float16, np.float32):
        return np.dtype(np.float32)
    raise TypeError(f"expected a float16, float32 or float64 array, got dtype {x.dtype}")


def _move_class_axis_last(x: NDArray[Any], axis: int) -> F64:
    """Return a float64 copy of ``x`` with the class axis last (``x`` is never touched)."""
    return np.moveaxis(x, axis, -1).astype(np.float64)


def _groups(x: NDArray[Any], axis: Any) -> tuple[F64, tuple[int, ...], tuple[int, ...]]:
    """``x`` as float64 rows ``(R, K)``, one row per group reduced over ``axis``.

    ``axis`` is an int, a tuple of ints or ``None`` (every axis), as in NumPy; a 0-d ``x``
    is one group of one element. Returns the rows, the shape of ``x`` with the reduced axes
    moved last (to undo the move), and the reduced axes, non-negative.
    """
    work = x.reshape(1) if x.ndim == 0 else x
    axes = tuple(range(work.ndim)) if axis is None else axis
    axes = axes if isinstance(axes, tuple) else (axes,)
    k = len(axes)
    moved = np.moveaxis(work, axes, tuple(range(work.ndim - k, work.ndim)))  # checks axes
    n_groups = math.prod(moved.shape[: work.ndim - k])
    rows: F64 = moved.reshape(n_groups, math.prod(moved.shape[work.ndim - k :]))
    reduced = tuple(int(a) % work.ndim for a in axes) if x.ndim else ()
    return rows.astype(np.float64), moved.shape, reduced


def _ungroup(
    rows: F64, x: NDArray[Any], moved_shape: tuple[int, ...], axes: tuple[int, ...]
) -> F64:
    """Inverse of :func:`_groups`: rows ``(R, K)`` back to the shape of ``x``."""
    k = len(axes)
    ndim = len(moved_shape)
    back = np.moveaxis(rows.reshape(moved_shape), tuple(range(ndim - k, ndim)), axes)
    result: F64 = back.reshape(x.shape)
    return result


def _is_class_indices(target: NDArray[Any]) -> bool:
    """Integer targets are class indices; float targets are class probabilities."""
    if np.issubdtype(target.dtype, np.integer):
        return True
    if np.issubdtype(target.dtype, np.floating):
        return False
    raise TypeError(
        f"target must hold integer class indices or float probabilities, got dtype {target.dtype}"
    )


def _check_class_indices(
    y: NDArray[np.int64], num_classes: int, counted: NDArray[np.bool_]
) -> None:
    """Raise unless every counted class index lies in ``[0, C)`` (NumPy would wrap negatives)."""
    bad = counted & ((y < 0) | (y >= num_classes))
    if np.any(bad):
        raise ValueError(f"target index {y[bad][0]} is outside [0, {num_classes})")


def _one_hot(y: NDArray[np.int64], num_classes: int) -> F64:
    """``(..., C)`` float64 one-hot rows for the class indices ``y`` of shape ``(...)``."""
    one_hot: F64 = (y[..., np.newaxis] == np.arange(num_classes)).astype(np.float64)
    return one_hot


def _target_distribution(target: NDArray[Any], axis: int, num_classes: int) -> F64:
    """Target as ``(..., C)`` float64 probability rows: one-hot for class indices."""
    if _is_class_indices(target):
        y = target.astype(np.int64)
        _check_class_indices(y, num_classes, np.ones(y.shape, dtype=bool))
        return _one_hot(y, num_classes)
    return _move_class_axis_last(target, axis)


def _times(coef: F64, values: F64) -> F64:
    """``coef * values`` with ``0 * anything = 0`` (so ``0 * log 0 = 0``, ``0 * inf = 0``)."""
    with np.errstate(invalid="ignore"):
        return np.where(coef == 0, 0.0, coef * values)


def _logsumexp_rows(z: F64) -> F64:
    """Stable ``log(sum(exp(z)))`` over the last axis: ``m + log(sum(exp(z - m)))``.

    A row holding ``nan`` gives ``nan``; otherwise a row entirely ``-inf`` gives ``-inf``
    (``log 0``), one holding ``+inf`` gives ``+inf``, and an empty row ``-inf`` (SciPy's
    and PyTorch's values).
    """
    if z.shape[-1] == 0:
        return np.full(z.shape[:-1], -np.inf)
    m = np.max(z, axis=-1, keepdims=True)
    with np.errstate(invalid="ignore"):  # -inf - -inf and inf - inf are nan: replaced
        s = np.sum(np.exp(z - m), axis=-1)
    top = m[..., 0]
    lse: F64 = np.where(np.isinf(top), top, np.log(s) + top)
    return lse


def _log_softmax_rows(z: F64) -> tuple[F64, F64]:
    """``(log_softmax(z), logsumexp(z))`` over the last axis.

    ``log_softmax = (z - m) - log(sum(exp(z - m)))``: subtracting ``m`` first keeps
    ``log S`` from being rounded away next to large ``m`` (``z - logsumexp(z)`` would give
    0 for ``z = [1e30, 1e30]``).
    """
    m = np.max(z, axis=-1, keepdims=True)
    with np.errstate(invalid="ignore"):  # -inf - -inf and inf - inf are nan: wanted
        shifted = z - m
        log_s = np.log(np.sum(np.exp(shifted), axis=-1, keepdims=True))
        return shifted - log_s, (log_s + m)[..., 0]


def _log_base(base: float | None) -> float:
    """Return ``ln(base)``, the divisor turning natural-log losses into base-``base`` ones."""
    return 1.0 if base is None else math.log(base)


def _check_reduction(reduction: str) -> None:
    if reduction not in ("none", "sum", "mean"):
        raise ValueError(f"reduction must be 'none', 'sum' or 'mean', got {reduction!r}")


def _reduce(losses: F64, reduction: str, denominator: float, dtype: np.dtype[Any]) -> Loss:
    """Apply ``reduction`` to per-sample losses; ``"mean"`` divides the sum by ``denominator``.

    A zero denominator (empty batch, every row ignored) makes the mean ``nan``.
    """
    _check_reduction(reduction)
    if reduction == "none":
        return losses.astype(dtype)
    total = float(np.sum(losses))
    if reduction == "mean":
        total = total / denominator if denominator != 0 else math.nan
    scalar: np.floating[Any] = dtype.type(total)
    return scalar


def _gradient_scale(reduction: str, denominator: float) -> float:
    """Factor turning the gradient of ``sum(loss)`` into that of the reduced loss.

    ``"none"`` is differentiated as ``sum(loss)``. A ``"mean"`` over a zero denominator
    has a zero gradient (a ``nan`` row still gives ``nan``, since ``nan * 0 = nan``).
    """
    _check_reduction(reduction)
    if reduction == "mean":
        return 1.0 / denominator if denominator != 0 else 0.0
    return 1.0


def _finish_gradient(
    grad: F64, axis: int, dtype: np.dtype[Any], out: NDArray[Any] | None
) -> NDArray[Any]:
    """Put the class axis back, cast to ``dtype``, and write into ``out`` when given."""
    grad = np.moveaxis(grad, -1, axis)
    if out is None:
        return grad.astype(dtype)
    out[...] = grad
    return out


def _softmax_cross_entropy(
    logits: ArrayLike,
    target: ArrayLike,
    axis: int,
    weight: ArrayLike | None,
    ignore_index: int,
    reduction: str,
    label_smoothing: float,
    base: float | None,
) -> tuple[Loss, F64, np.dtype[Any]]:
    """Loss and float64 gradient (class axis last) of softmax cross-entropy.

    Both target kinds are reduced to one coefficient matrix ``a`` (shape ``(..., C)``)
    so that ``l_i = sum_c a[i, c] * (-logp[i, c])``:

    - class indices: ``a[i, c] = (1 - eps) w[y_i] [c == y_i] + (eps / C) w[c]``, with
      ignored rows set to ``0``; the mean divides by ``sum_i w[y_i]`` over counted rows.
    - probabilities: ``a[i, c] = w[c] q[i, c]`` with ``q = (1 - eps) target + eps / C``;
      the mean divides by the number of samples.

    The gradient goes through the log-softmax: with ``g = d loss / d logp = -a / D``
    (``D`` the mean's denominator, else 1), ``d loss / dz = g - p * sum_c g``, which is
    ``(A p - a) / D`` with ``A = sum_c a``. PyTorch divides each part of the loss and of
    ``g`` by ``D`` on its own, the label-index part and the smoothing part; so does this
    function, so that weights of both signs whose counted sum is 0 give PyTorch's
    ``+-inf`` and ``nan`` (``x / 0`` and ``0 / 0``).
    """
    _check_reduction(reduction)
    logits = np.asarray(logits)
    target = np.asarray(target)
    dtype = _result_dtype(logits)
    z = _move_class_axis_last(logits, axis)
    num_classes = z.shape[-1]
    eps = float(label_smoothing)
    w = np.ones(num_classes) if weight is None else np.asarray(weight, dtype=np.float64)

    if _is_class_indices(target):
        y = target.astype(np.int64)
        counted = y != ignore_index
        _check_class_indices(y, num_classes, counted)
        y = np.where(counted, y, 0)  # any valid index; these rows are zeroed below
        at_label = (_one_hot(y, num_classes) == 1) & counted[..., np.newaxis]
        label_part = (np.where(at_label, w, 0.0), at_label)
        in_counted = np.broadcast_to(counted[..., np.newaxis], z.shape)
        smoothing_part = (np.where(in_counted, w, 0.0), in_counted)
        denominator = float(np.sum(np.where(counted, w[y], 0.0)))
    else:
        everywhere = np.ones(z.shape, dtype=bool)
        label_part = (w * _move_class_axis_last(target, axis), everywhere)
        smoothing_part = (np.broadcast_to(w, z.shape), everywhere)
        counted = np.ones(z.shape[:-1], dtype=bool)
        denominator = float(counted.size)
    # (share, coefficients, where they apply) of the label part and the smoothing part.
    parts = [(1.0 - eps, *label_part)]
    if eps > 0.0:
        parts.append((eps / num_classes, *smoothing_part))

    # Ignored rows are never read: replace their logits (maybe nan) by zeros.
    z = np.where(counted[..., np.newaxis], z, 0.0)
    logp, lse = _log_softmax_rows(z)
    a: F64 = np.sum([share * coefficients for share, coefficients, _ in parts], axis=0)
    losses = np.sum(_times(a, -logp), axis=-1)
    # A row without a distribution (nan or all -inf) is nan even if no coefficient reads it.
    losses = np.where(np.isnan(lse), np.nan, losses)
    ln_b = _log_base(base)
    loss = _reduce(losses / ln_b, reduction, denominator, dtype)
    divisor = np.float64(denominator if reduction == "mean" else 1.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        if reduction == "mean" and denominator == 0 and counted.any():
            # Rows counted, weights summing to 0: PyTorch divides each part's sum by 0.
            total = 0.0
            for share, coefficients, _ in parts:
                if share != 0.0:
                    part = np.where(np.isnan(lse), np.nan, np.sum(_times(coefficients, -logp), -1))
                    total += share * (np.sum(part) / divisor)
            loss = dtype.type(total / ln_b)
        grad_logp = sum(np.where(mask, a * -(share / divisor), 0.0) for share, a, mask in parts)
        grad = grad_logp - np.exp(logp) * np.sum(grad_logp, axis=-1, keepdims=True)
    grad = np.where(counted[..., np.newaxis], grad, 0.0)
    return loss, grad / ln_b, dtype


def _sigmoid(x: F64) -> F64:
    """Stable logistic function: never evaluates ``exp`` of a positive number."""
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


def _softplus(x: F64) -> F64:
    """Stable ``log(1 + exp(x)) = max(x, 0) + log1p(exp(-|x|))``."""
    return np.maximum(x, 0.0) + np.log1p(np.exp(-np.abs(x)))


def _sigmoid_cross_entropy(
    logits: ArrayLike,
    target: ArrayLike,
    weight: ArrayLike | None,
    pos_weight: ArrayLike | None,
    reduction: str,
    base: float | None,
) -> tuple[Loss, F64, np.dtype[Any]]:
    """Loss and float64 gradient of elementwise sigmoid cross-entropy from logits."""
    _check_reduction(reduction)
    logits = np.asarray(logits)
    dtype = _result_dtype(logits)
    x = logits.astype(np.float64)
    z = np.asarray(target, dtype=np.float64)
    w = 1.0 if weight is None else np.asarray(weight, dtype=np.float64)
    pw = 1.0 if pos_weight is None else np.asarray(pos_weight, dtype=np.float64)

    negative_coef = np.broadcast_to(w * (1.0 - z), x.shape)
    positive_coef = np.broadcast_to(w * pw * z, x.shape)
    # -log(1 - sigmoid(x)) = softplus(x) and -log(sigmoid(x)) = softplus(-x).
    losses = _times(negative_coef, _softplus(x)) + _times(positive_coef, _softplus(-x))
    # A nan logit gives a nan loss even where both coefficients are 0: nan is never hidden.
    losses = np.where(np.isnan(x), np.nan, losses)
    sig = _sigmoid(x)
    grad = negative_coef * sig - positive_coef * _sigmoid(-x)

    ln_b = _log_base(base)
    denominator = float(x.size)
    loss = _reduce(losses / ln_b, reduction, denominator, dtype)
    grad = grad * (_gradient_scale(reduction, denominator) / ln_b)
    return loss, grad, dtype


# --------------------------------------------------------------------------------------
# Softmax family
# --------------------------------------------------------------------------------------


def softmax(x: ArrayLike, axis: Axis = -1) -> NDArray[np.floating[Any]]:
    """Softmax over ``axis``: an int, a tuple of ints or ``None`` (every axis).

    ``softmax(x)_c = exp(x_c - m) / sum_k exp(x_k - m)`` with ``m = max_k x_k``, over each
    group of elements that ``axis`` spans (``scipy.special.softmax``'s meaning). A ``-inf``
    entry gets probability ``0``; a group entirely ``-inf``, or holding ``+inf`` or
    ``nan``, gives ``nan``. An empty group gives an empty result; a 0-d ``x`` gives ``1``.

    Parameters
    ----------
    x : array_like
        Float logits of any shape.
    axis : int, tuple of ints or None, optional
        The axes of a group (default ``-1``).

    Returns
    -------
    ndarray
        Same shape as ``x``; float32 for float16/float32 input, float64 for float64.

    Examples
    --------
    >>> import numpy as np
    >>> print(np.round(softmax(np.array([1.0, 2.0, 3.0])), 4))
    [0.09   0.2447 0.6652]
    """
    x = np.asarray(x)
    dtype = _result_dtype(x)
    z, moved_shape, axes = _groups(x, axis)
    if z.size == 0:
        return np.empty(x.shape, dtype)
    m = np.max(z, axis=-1, keepdims=True)
    with np.errstate(invalid="ignore"):
        e = np.exp(z - m)
    p = e / np.sum(e, axis=-1, keepdims=True)
    result: NDArray[np.floating[Any]] = _ungroup(p, x, moved_shape, axes).astype(dtype)
    return result


def log_softmax(x: ArrayLike, axis: Axis = -1) -> NDArray[np.floating[Any]]:
    """Logarithm of the softmax over ``axis`` (an int, a tuple of ints or ``None``).

    ``log_softmax(x)_c = x_c - logsumexp(x)``. A ``-inf`` entry gives ``-inf``; a group
    entirely ``-inf``, or holding ``+inf`` or ``nan``, gives ``nan``. An empty group gives
    an empty result; a 0-d ``x`` gives ``0``.

    Parameters
    ----------
    x : array_like
        Float logits of any shape.
    axis : int, tuple of ints or None, optional
        The axes of a group (default ``-1``).

    Returns
    -------
    ndarray
        Same shape as ``x``; float32 for float16/float32 input, float64 for float64.

    Examples
    --------
    >>> import numpy as np
    >>> print(np.round(log_softmax(np.array([1.0, 2.0, 3.0])), 4))
    [-2.4076 -1.4076 -0.4076]
    """
    x = np.asarray(x)
    dtype = _result_dtype(x)
    z, moved_shape, axes = _groups(x, axis)
    if z.size == 0:
        return np.empty(x.shape, dtype)
    logp, _ = _log_softmax_rows(z)
    result: NDArray[np.floating[Any]] = _ungroup(logp, x, moved_shape, axes).astype(dtype)
    return result


def logsumexp(
    x: ArrayLike, axis: Axis = -1, *, keepdims: bool = False
) -> NDArray[np.floating[Any]]:
    """Stable ``log(sum(exp(x)))`` over ``axis`` (an int, a tuple of ints or ``None``).

    ``logsumexp(x) = m + log(sum_c exp(x_c - m))`` with ``m = max_c x_c``, SciPy's and
    PyTorch's values: a group holding ``nan`` gives ``nan``; otherwise a group holding
    ``+inf`` gives ``+inf``, one entirely ``-inf`` or empty ``-inf``. A 0-d ``x`` gives
    itself.

    Parameters
    ----------
    x : array_like
        Float values of any shape.
    axis : int, tuple of ints or None, optional
        The axes reduced over (default ``-1``; ``None``: all).
    keepdims : bool, optional
        Keep the reduced axes with length 1.

    Returns
    -------
    ndarray
        Shape of ``x`` without the reduced axes (or with them of length 1); float32 for
        float16/float32 input, float64 for float64.

    Examples
    --------
    >>> import numpy as np
    >>> print(np.round(logsumexp(np.array([[1.0, 2.0, 3.0], [0.0, 0.0, 0.0]])), 4))
    [3.4076 1.0986]
    """
    x = np.asarray(x)
    dtype = _result_dtype(x)
    z, moved_shape, axes = _groups(x, axis)
    lse = _logsumexp_rows(z).reshape(moved_shape[: len(moved_shape) - len(axes)])
    if x.ndim == 0:
        lse = lse.reshape(())
    elif keepdims:
        lse = np.expand_dims(lse, axes)
    result: NDArray[np.floating[Any]] = lse.astype(dtype)
    return result


# --------------------------------------------------------------------------------------
# Softmax cross-entropy
# --------------------------------------------------------------------------------------


def cross_entropy(
    logits: ArrayLike,
    target: ArrayLike,
    *,
    axis: int = -1,
    weight: ArrayLike | None = None,
    ignore_index: int = -100,
    reduction: str = "mean",
    label_smoothing: float = 0.0,
    base: float | None = None,
) -> Loss:
    """Softmax cross-entropy from logits, with integer or probability targets.

    With ``logp = log_softmax(logits)``, class weights ``w`` (default ones) and label
    smoothing ``eps``, the loss of sample ``i`` is

    - integer targets:
      ``l_i = (1 - eps) w[y_i] (-logp[i, y_i]) + (eps / C) sum_c w[c] (-logp[i, c])``,
      and ``0`` for rows with ``y_i == ignore_index``;
    - probability targets: ``l_i = -sum_c w[c] q[i, c] logp[i, c]`` with
      ``q = (1 - eps) target + eps / C``.

    Terms with a zero coefficient are ``0`` even at a ``-inf`` logit (``0 log 0 = 0``).
    ``"mean"`` is ``sum_i l_i / sum_i w[y_i]`` over non-ignored rows for integer targets
    (PyTorch's rule) and ``sum_i l_i / N`` for probability targets.

    Parameters
    ----------
    logits : array_like
        Float logits; classes along ``axis``.
    target : array_like
        Integer class indices shaped like ``logits`` without ``axis``, or float class
        probabilities shaped like ``logits``.
    axis : int, optional
        The class axis (default ``-1``; pass ``1`` for PyTorch's ``(N, C, ...)`` layout).
    weight : array_like, optional
        Per-class weights, shape ``(C,)``.
    ignore_index : int, optional
        Integer target value whose rows are skipped (default ``-100``).
    reduction : {"mean", "sum", "none"}, optional
        How the per-sample losses are combined.
    label_smoothing : float, optional
        Mass ``eps`` in ``[0, 1]`` spread uniformly over the classes.
    base : float, optional
        Logarithm base; ``None`` means natural log.

    Returns
    -------
    numpy scalar or ndarray
        A scalar of the result dtype for ``"mean"``/``"sum"``; for ``"none"`` an array
        shaped like ``logits`` without ``axis``.

    Examples
    --------
    >>> import numpy as np
    >>> z = np.array([[1.0, 2.0, 3.0], [1.0, 1.0, 1.0]])
    >>> print(np.round(cross_entropy(z, np.array([2, 0]), reduction="none"), 4))
    [0.4076 1.0986]
    >>> print(round(float(cross_entropy(z, np.array([2, 0]), weight=[1.0, 1.0, 3.0])), 4))
    0.5804
    """
    loss, _, _ = _softmax_cross_entropy(
        logits, target, axis, weight, ignore_index, reduction, label_smoothing, base
    )
    return loss


def cross_entropy_with_grad(
    logits: ArrayLike,
    target: ArrayLike,
    *,
    axis: int = -1,
    weight: ArrayLike | None = None,
    ignore_index: int = -100,
    reduction: str = "mean",
    label_smoothing: float = 0.0,
    base: float | None = None,
    out: NDArray[Any] | None = None,
) -> tuple[Loss, NDArray[Any]]:
    """Softmax cross-entropy and its gradient with respect to the logits.

    The loss is that of :func:`cross_entropy`. The gradient of sample ``i``'s loss is
    ``A_i p[i, :] - a[i, :]``, where ``p = softmax(logits)``, ``a[i, c]`` is the coefficient
    of ``-logp[i, c]`` in ``l_i`` and ``A_i = sum_c a[i, c]``:

    - integer targets: ``a[i, c] = (1 - eps) w[y_i] [c == y_i] + (eps / C) w[c]``
      (``0`` for ignored rows);
    - probability targets: ``a[i, c] = w[c] q[i, c]``.

    It is then scaled like the loss: divided by the ``"mean"`` denominator (a zero
    denominator gives a zero gradient), by nothing for ``"sum"`` and ``"none"`` (the
    gradient of ``sum(loss)``), and by ``ln(base)``.

    Parameters
    ----------
    logits, target, axis, weight, ignore_index, reduction, label_smoothing, base
        As in :func:`cross_entropy`.
    out : ndarray, optional
        Array shaped like ``logits`` that receives the gradient; it may be ``logits``
        itself (the loss is computed from the original values first).

    Returns
    -------
    loss : numpy scalar or ndarray
        As returned by :func:`cross_entropy`.
    grad : ndarray
        ``d loss / d logits``, shaped like ``logits``, in the result dtype (or ``out``).

    Examples
    --------
    >>> import numpy as np
    >>> loss, grad = cross_entropy_with_grad(np.array([[0.0, 0.0]]), np.array([1]))
    >>> print(round(float(loss), 4), grad)
    0.6931 [[ 0.5 -0.5]]
    """
    loss, grad, dtype = _softmax_cross_entropy(
        logits, target, axis, weight, ignore_index, reduction, label_smoothing, base
    )
    return loss, _finish_gradient(grad, axis, dtype, out)


# --------------------------------------------------------------------------------------
# Binary (sigmoid) cross-entropy
# --------------------------------------------------------------------------------------


def binary_cross_entropy(
    logits: ArrayLike,
    target: ArrayLike,
    *,
    weight: ArrayLike | None = None,
    pos_weight: ArrayLike | None = None,
    reduction: str = "mean",
    base: float | None = None,
) -> Loss:
    """Elementwise sigmoid cross-entropy from logits (PyTorch's ``BCEWithLogits``).

    ``l = weight * ((1 - z) softplus(x) + pos_weight z softplus(-x))`` for logit ``x`` and
    target ``z`` in ``[0, 1]``; ``softplus(x) = -log(1 - sigmoid(x))`` is computed stably.
    A term with a zero coefficient is ``0`` (``x = -inf, z = 0`` and ``x = +inf, z = 1``
    give ``0``). ``"mean"`` divides by the number of elements.

    Parameters
    ----------
    logits : array_like
        Float logits of any shape.
    target : array_like
        Float targets in ``[0, 1]``, same shape as ``logits``.
    weight : array_like, optional
        Weights broadcastable to ``logits``.
    pos_weight : array_like, optional
        Weights of the positive term, broadcast along the last axis.
    reduction : {"mean", "sum", "none"}, optional
        How the elementwise losses are combined.
    base : float, optional
        Logarithm base; ``None`` means natural log.

    Returns
    -------
    numpy scalar or ndarray
        A scalar of the result dtype for ``"mean"``/``"sum"``; for ``"none"`` an array
        shaped like ``logits``.

    Examples
    --------
    >>> import numpy as np
    >>> print(np.round(binary_cross_entropy(np.array([0.0, 2.0]), np.array([1.0, 0.0]),
    ...                                     reduction="none"), 4))
    [0.6931 2.1269]
    """
    loss, _, _ = _sigmoid_cross_entropy(logits, target, weight, pos_weight, reduction, base)
    return loss


def binary_cross_entropy_with_grad(
    logits: ArrayLike,
    target: ArrayLike,
    *,
    weight: ArrayLike | None = None,
    pos_weight: ArrayLike | None = None,
    reduction: str = "mean",
    base: float | None = None,
    out: NDArray[Any] | None = None,
) -> tuple[Loss, NDArray[Any]]:
    """Sigmoid cross-entropy from logits and its gradient with respect to the logits.

    The loss is that of :func:`binary_cross_entropy`; the gradient of one element is
    ``weight * ((1 - z) sigmoid(x) - pos_weight z (1 - sigmoid(x)))`` (``sigmoid(x) - z``
    without weights), divided by the number of elements for ``"mean"`` and by ``ln(base)``.

    Parameters
    ----------
    logits, target, weight, pos_weight, reduction, base
        As in :func:`binary_cross_entropy`.
    out : ndarray, optional
        Array shaped like ``logits`` that receives the gradient; it may be ``logits``
        itself (the loss is computed from the original values first).

    Returns
    -------
    loss : numpy scalar or ndarray
        As returned by :func:`binary_cross_entropy`.
    grad : ndarray
        ``d loss / d logits``, shaped like ``logits``, in the result dtype (or ``out``).

    Examples
    --------
    >>> import numpy as np
    >>> loss, grad = binary_cross_entropy_with_grad(np.array([0.0, 0.0]), np.array([1.0, 0.0]))
    >>> print(round(float(loss), 4), grad)
    0.6931 [-0.25  0.25]
    """
    logits = np.asarray(logits)
    loss, grad, dtype = _sigmoid_cross_entropy(logits, target, weight, pos_weight, reduction, base)
    if out is None:
        return loss, grad.astype(dtype)
    out[...] = grad
    return loss, out


# --------------------------------------------------------------------------------------
# Probabilities in: cross-entropy, entropy; and KL divergence from logits
# --------------------------------------------------------------------------------------


def cross_entropy_from_probs(
    probs: ArrayLike,
    target: ArrayLike,
    *,
    axis: int = -1,
    eps: float = 1e-7,
    reduction: str = "mean",
    base: float | None = None,
) -> Loss:
    """Cross-entropy of probabilities that are already normalised (the Keras habit).

    ``l_i = -sum_c q[i, c] log(clip(P[i, c], eps, 1))``, where ``q`` is the probability
    target or the one-hot row of an integer target (so ``l_i = -log(clip(P[i, y_i], eps, 1))``).
    Classes with ``q = 0`` contribute ``0`` whatever ``P`` holds. ``"mean"`` averages over
    samples.

    Parameters
    ----------
    probs : array_like
        Float probabilities; classes along ``axis``.
    target : array_like
        Integer class indices shaped like ``probs`` without ``axis``, or float class
        probabilities shaped like ``probs``.
    axis : int, optional
        The class axis (default ``-1``).
    eps : float, optional
        Lower clip applied before the log (default ``1e-7``; ``0`` disables it).
    reduction : {"mean", "sum", "none"}, optional
        How the per-sample losses are combined.
    base : float, optional
        Logarithm base; ``None`` means natural log.

    Returns
    -------
    numpy scalar or ndarray
        A scalar of the result dtype for ``"mean"``/``"sum"``; for ``"none"`` an array
        shaped like ``probs`` without ``axis``.

    Examples
    --------
    >>> import numpy as np
    >>> P = np.array([[0.5, 0.2, 0.3], [0.8, 0.1, 0.1]])
    >>> print(round(float(cross_entropy_from_probs(P, np.array([0, 0]), base=10)), 4))
    0.199
    """
    _check_reduction(reduction)
    probs = np.asarray(probs)
    dtype = _result_dtype(probs)
    p = _move_class_axis_last(probs, axis)
    q = _target_distribution(np.asarray(target), axis, p.shape[-1])
    with np.errstate(divide="ignore"):  # eps=0 allows log(0) = -inf
        log_p = np.log(np.clip(p, eps, 1.0))
    losses = np.sum(_times(q, -log_p), axis=-1) / _log_base(base)
    return _reduce(losses, reduction, float(losses.size), dtype)


def entropy(
    probs: ArrayLike,
    *,
    axis: int = -1,
    reduction: str = "none",
    base: float | None = None,
) -> Loss:
    """Shannon entropy of probability rows.

    ``H_i = -sum_c P[i, c] log P[i, c]`` with ``0 log 0 = 0``. ``"mean"`` averages over
    samples.

    Parameters
    ----------
    probs : array_like
        Float probabilities; classes along ``axis``.
    axis : int, optional
        The class axis (default ``-1``).
    reduction : {"none", "sum", "mean"}, optional
        How the per-sample entropies are combined (default ``"none"``).
    base : float, optional
        Logarithm base; ``None`` means natural log.

    Returns
    -------
    numpy scalar or ndarray
        For ``"none"`` an array shaped like ``probs`` without ``axis``; otherwise a scalar
        of the result dtype.

    Examples
    --------
    >>> import numpy as np
    >>> print(entropy(np.array([[0.5, 0.5], [1.0, 0.0]]), base=2))
    [1. 0.]
    """
    _check_reduction(reduction)
    probs = np.asarray(probs)
    dtype = _result_dtype(probs)
    p = _move_class_axis_last(probs, axis)
    with np.errstate(divide="ignore", invalid="ignore"):
        log_p = np.log(p)
    losses = np.sum(_times(p, -log_p), axis=-1) / _log_base(base)
    return _reduce(losses, reduction, float(losses.size), dtype)


def kl_divergence(
    logits: ArrayLike,
    target: ArrayLike,
    *,
    axis: int = -1,
    reduction: str = "mean",
    base: float | None = None,
) -> Loss:
    """Kullback-Leibler divergence ``KL(target || softmax(logits))``.

    ``KL_i = sum_c q[i, c] (log q[i, c] - logp[i, c])`` with ``logp = log_softmax(logits)``
    and ``0 log 0 = 0``; an integer target is its one-hot row (then ``KL`` equals the
    cross-entropy). A class with ``q > 0`` at a ``-inf`` logit gives ``+inf``. ``"mean"``
    averages over samples (PyTorch's ``kl_div(..., reduction="batchmean")``).

    Parameters
    ----------
    logits : array_like
        Float logits; classes along ``axis``.
    target : array_like
        Float class probabilities shaped like ``logits`` (or integer class indices shaped
        like ``logits`` without ``axis``).
    axis : int, optional
        The class axis (default ``-1``).
    reduction : {"mean", "sum", "none"}, optional
        How the per-sample divergences are combined.
    base : float, optional
        Logarithm base; ``None`` means natural log.

    Returns
    -------
    numpy scalar or ndarray
        A scalar of the result dtype for ``"mean"``/``"sum"``; for ``"none"`` an array
        shaped like ``logits`` without ``axis``.

    Examples
    --------
    >>> import numpy as np
    >>> print(kl_divergence(np.array([0.0, 0.0]), np.array([0.5, 0.5])))
    0.0
    """
    _check_reduction(reduction)
    logits = np.asarray(logits)
    dtype = _result_dtype(logits)
    logp, lse = _log_softmax_rows(_move_class_axis_last(logits, axis))
    q = _target_distribution(np.asarray(target), axis, logp.shape[-1])
    with np.errstate(divide="ignore", invalid="ignore"):
        log_q = np.log(q)
        losses = np.sum(_times(q, log_q - logp), axis=-1)
    # A row without a distribution (nan or all -inf) is nan even if no q reads it.
    losses = np.where(np.isnan(lse), np.nan, losses) / _log_base(base)
    return _reduce(losses, reduction, float(losses.size), dtype)
