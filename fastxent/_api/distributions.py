"""Losses on distributions: ``cross_entropy_from_probs``, ``entropy``, ``kl_divergence``."""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from fastxent import _validate
from fastxent._api.common import Loss, reduce_losses
from fastxent._kernels import distributions, xent_labels, xent_probs
from fastxent._layout import compute_dtype, rows_target, rows_view
from fastxent._plan import plan_rows


def _rows_and_axis(
    x: ArrayLike, axis: Any, name: str
) -> tuple[NDArray[Any], NDArray[Any], int, tuple[int, ...]]:
    array = _validate.float_array(x, name)
    class_axis = _validate.class_axis(axis, array.ndim)
    _validate.classes(array.shape, class_axis, name)
    rows = rows_view(array, class_axis, compute_dtype(array.dtype))
    batch_shape = array.shape[:class_axis] + array.shape[class_axis + 1 :]
    return array, rows, class_axis, batch_shape


def cross_entropy_from_probs(
    probs: ArrayLike,
    target: ArrayLike,
    *,
    axis: int = -1,
    eps: float = 1e-7,
    reduction: str = "mean",
    base: float | None = None,
) -> Loss:
    r"""Cross-entropy of probabilities that are already normalised (e.g. a softmax output).

    .. math:: \ell = -\sum_c q_c \log \mathrm{clip}(P_c, \varepsilon, 1)

    The clip keeps ``log(0)`` finite, as TensorFlow/Keras and scikit-learn do. Classes with
    ``q_c = 0`` contribute 0. ``"mean"`` averages over samples; TensorFlow's
    ``-reduce_mean(q * log(P))`` averages over every element, i.e. this mean divided by ``C``.
    Prefer :func:`cross_entropy` on logits when you have them: it is exact where ``P``
    underflows.

    Parameters
    ----------
    probs : array_like of float16, float32 or float64
        Probabilities, classes along ``axis``.
    target : array_like
        Integer class indices (shape of ``probs`` without ``axis``) or probabilities
        (shape of ``probs``).
    axis : int, default -1
        The class axis.
    eps : float in [0, 1), default 1e-7
        Lower clip of ``probs`` before the log (Keras' ``epsilon()``).
    reduction : {"mean", "sum", "none"}, default "mean"
        How per-sample losses combine.
    base : float, optional
        Logarithm base (``None``: natural log; the seed articles use 10).

    Returns
    -------
    numpy.floating or numpy.ndarray
        A scalar of the result dtype, or per-sample losses.

    Examples
    --------
    >>> import numpy as np, fastxent
    >>> p = np.array([[0.5, 0.4, 0.1], [0.8, 0.1, 0.1]])
    >>> fastxent.cross_entropy_from_probs(p, np.array([0, 0]), reduction="none", base=10).round(1)
    array([0.3, 0.1])
    """
    array, rows, class_axis, batch_shape = _rows_and_axis(probs, axis, "probs")
    clip = _validate.real_in_range(eps, "eps", 0.0, 1.0)
    mode = _validate.reduction_mode(reduction)
    log_base = _validate.log_base(base)
    target_array = np.asarray(target)
    losses = np.empty(rows.shape[0], dtype=np.float64)
    if _validate.target_kind(target_array) == "labels":
        n_classes = rows.shape[1]
        _validate.labels_target(target_array, batch_shape, n_classes, ignore_index=None)
        labels = rows_target(target_array)
        # One gather per row: O(N) NumPy, no kernel needed.
        picked = rows[np.arange(rows.shape[0]), labels].astype(np.float64)
        with np.errstate(divide="ignore"):  # eps=0 and P=0: log(0) = -inf, a loss of inf
            losses[:] = -np.log(np.clip(picked, clip, 1.0))
    else:
        _validate.same_shape(target_array, array.shape, "target", "probs")
        targets = rows_view(target_array, class_axis, compute_dtype(target_array.dtype))
        distributions.xent_from_probs_rows(rows.size, rows, targets, clip, losses)
    return reduce_losses(losses, mode, float(rows.shape[0]), log_base, batch_shape, rows.dtype)


def entropy(
    probs: ArrayLike,
    *,
    axis: int = -1,
    reduction: str = "none",
    base: float | None = None,
) -> Loss:
    r"""Shannon entropy of each distribution along ``axis``.

    .. math:: H = -\sum_c P_c \log P_c, \qquad 0 \log 0 = 0

    Parameters
    ----------
    probs : array_like of float16, float32 or float64
        Probabilities, classes along ``axis``.
    axis : int, default -1
        The class axis.
    reduction : {"none", "mean", "sum"}, default "none"
        How per-sample entropies combine.
    base : float, optional
        Logarithm base (``None``: nats; 2: bits).

    Returns
    -------
    numpy.ndarray or numpy.floating
        Per-sample entropies (``probs.shape`` without ``axis``), or their mean/sum.

    Examples
    --------
    >>> import numpy as np, fastxent
    >>> fastxent.entropy(np.array([[0.5, 0.5], [1.0, 0.0]]), base=2)  # bits
    array([1., 0.])
    """
    array, rows, _, batch_shape = _rows_and_axis(probs, axis, "probs")
    mode = _validate.reduction_mode(reduction)
    log_base = _validate.log_base(base)
    losses = np.empty(rows.shape[0], dtype=np.float64)
    distributions.entropy_rows(rows.size, rows, losses)
    return reduce_losses(losses, mode, float(rows.shape[0]), log_base, batch_shape, rows.dtype)


def kl_divergence(
    logits: ArrayLike,
    target: ArrayLike,
    *,
    axis: int = -1,
    reduction: str = "mean",
    base: float | None = None,
) -> Loss:
    r"""Kullback-Leibler divergence ``KL(target || softmax(logits))``.

    .. math::

        D = \sum_c q_c (\log q_c - \log p_c), \quad p = \mathrm{softmax}(z), \quad 0 \log 0 = 0

    ``"mean"`` averages over samples: PyTorch's ``kl_div(log_softmax(z), q,
    reduction="batchmean")`` (PyTorch's own ``"mean"`` divides by every element).

    Parameters
    ----------
    logits : array_like of float16, float32 or float64
        Logits of the model distribution ``p``, classes along ``axis``.
    target : array_like
        The reference distribution ``q``: probabilities shaped like ``logits``, or integer
        class indices (one-hot ``q``; the divergence then equals the cross-entropy).
    axis : int, default -1
        The class axis.
    reduction : {"mean", "sum", "none"}, default "mean"
        How per-sample divergences combine.
    base : float, optional
        Logarithm base (``None``: natural log).

    Returns
    -------
    numpy.floating or numpy.ndarray
        A scalar of the result dtype, or per-sample divergences.

    Examples
    --------
    >>> import numpy as np, fastxent
    >>> q = np.array([0.25, 0.75])
    >>> round(float(fastxent.kl_divergence(np.log(q), q)), 12)
    0.0
    >>> round(float(fastxent.kl_divergence(np.zeros(2), q)), 4)  # KL(q || uniform)
    0.1308
    """
    array, rows, class_axis, batch_shape = _rows_and_axis(logits, axis, "logits")
    mode = _validate.reduction_mode(reduction)
    log_base = _validate.log_base(base)
    target_array = np.asarray(target)
    n_classes = rows.shape[1]
    ones = np.ones(n_classes)
    losses = np.empty(rows.shape[0], dtype=np.float64)
    if _validate.target_kind(target_array) == "labels":
        _validate.labels_target(target_array, batch_shape, n_classes, ignore_index=None)
        labels = rows_target(target_array)
        xent_labels.xent_labels_forward(
            rows.size, rows, *plan_rows(rows), labels, ones, None, -1, 0.0, losses
        )
    else:
        _validate.same_shape(target_array, array.shape, "target", "logits")
        targets = rows_view(target_array, class_axis, compute_dtype(target_array.dtype))
        xent_probs.xent_probs_forward(
            rows.size, rows, *plan_rows(rows), targets, ones, 0.0, True, losses
        )
    return reduce_losses(losses, mode, float(rows.shape[0]), log_base, batch_shape, rows.dtype)
