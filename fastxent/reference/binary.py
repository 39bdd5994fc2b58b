"""Reference ``binary_cross_entropy`` and ``binary_cross_entropy_with_grad``."""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from fastxent.reference._common import (
    F64,
    Loss,
    _check_reduction,
    _gradient_scale,
    _log_base,
    _reduce,
    _result_dtype,
    _times,
)


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
