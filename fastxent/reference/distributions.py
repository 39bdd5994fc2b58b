"""Reference ``cross_entropy_from_probs``, ``entropy`` and ``kl_divergence``."""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

from fastxent.reference._common import (
    Loss,
    _check_reduction,
    _log_base,
    _log_softmax_rows,
    _move_class_axis_last,
    _reduce,
    _result_dtype,
    _target_distribution,
    _times,
)


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
