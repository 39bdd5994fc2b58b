"""Reference ``cross_entropy`` and ``cross_entropy_with_grad``."""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from fastxent.reference._common import (
    F64,
    Loss,
    _check_class_indices,
    _check_reduction,
    _finish_gradient,
    _is_class_indices,
    _log_base,
    _log_softmax_rows,
    _move_class_axis_last,
    _one_hot,
    _reduce,
    _result_dtype,
    _times,
)


def _softmax_cross_entropy(
    logits: ArrayLike,
    target: ArrayLike,
    axis: int,
    weight: ArrayLike | None,
    ignore_index: int,
    reduction: str,
    label_smoothing: float,
    base: float | None,
    z_loss: float = 0.0,
    softcap: float | None = None,
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

    With ``softcap`` the logits are first replaced by ``s tanh(z / s)``, and the gradient
    gains the factor ``1 - tanh(z / s)**2``. The z-loss adds ``z_loss * omega * lse**2`` to
    each row (``omega``: ``w[y]`` for class indices, 0 when ignored; 1 for probabilities)
    and ``2 z_loss omega lse p`` to its gradient. With either term, a "mean" whose counted
    weights sum to 0 is the sum divided by 0.
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
    if softcap is not None:
        z = softcap * np.tanh(z / softcap)
    logp, lse = _log_softmax_rows(z)
    a: F64 = np.sum([share * coefficients for share, coefficients, _ in parts], axis=0)
    losses = np.sum(_times(a, -logp), axis=-1)
    omega = np.where(counted, w[y], 0.0) if _is_class_indices(target) else np.ones(lse.shape)
    if z_loss != 0.0:
        losses = losses + _times(z_loss * omega, lse * lse)
    # A row without a distribution (nan or all -inf) is nan even if no coefficient reads it.
    losses = np.where(np.isnan(lse), np.nan, losses)
    ln_b = _log_base(base)
    loss = _reduce(losses / ln_b, reduction, denominator, dtype)
    divisor = np.float64(denominator if reduction == "mean" else 1.0)
    terms = z_loss != 0.0 or softcap is not None
    with np.errstate(divide="ignore", invalid="ignore"):
        if reduction == "mean" and denominator == 0 and counted.any() and terms:
            loss = dtype.type(np.sum(losses) / divisor / ln_b)
        elif reduction == "mean" and denominator == 0 and counted.any():
            # Rows counted, weights summing to 0: PyTorch divides each part's sum by 0.
            total = 0.0
            for share, coefficients, _ in parts:
                if share != 0.0:
                    part = np.where(np.isnan(lse), np.nan, np.sum(_times(coefficients, -logp), -1))
                    total += share * (np.sum(part) / divisor)
            loss = dtype.type(total / ln_b)
        grad_logp = sum(np.where(mask, a * -(share / divisor), 0.0) for share, a, mask in parts)
        grad = grad_logp - np.exp(logp) * np.sum(grad_logp, axis=-1, keepdims=True)
        if z_loss != 0.0:
            grad = grad + np.exp(logp) * (2.0 * z_loss * omega * lse / divisor)[..., np.newaxis]
        if softcap is not None:
            grad = grad * (1.0 - (z / softcap) ** 2)
    grad = np.where(counted[..., np.newaxis], grad, 0.0)
    return loss, grad / ln_b, dtype


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
    z_loss: float = 0.0,
    softcap: float | None = None,
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
    z_loss : float, optional
        Coefficient of the z-loss ``z_loss * omega_i * lse_i**2`` added to each sample's
        loss (``omega_i = w[y_i]`` for class indices, 1 for probabilities).
    softcap : float, optional
        Soft-cap ``s``: the logits become ``s * tanh(logits / s)`` first.

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
        logits,
        target,
        axis,
        weight,
        ignore_index,
        reduction,
        label_smoothing,
        base,
        z_loss,
        softcap,
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
    z_loss: float = 0.0,
    softcap: float | None = None,
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
    logits, target, axis, weight, ignore_index, reduction, label_smoothing, base, z_loss, softcap
        As in :func:`cross_entropy`. The z-loss adds ``2 z_loss omega_i lse_i p[i, :]`` to
        the gradient; soft-capping multiplies it by ``1 - tanh(logits / s)**2``.
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
        logits,
        target,
        axis,
        weight,
        ignore_index,
        reduction,
        label_smoothing,
        base,
        z_loss,
        softcap,
    )
    return loss, _finish_gradient(grad, axis, dtype, out)
