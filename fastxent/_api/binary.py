"""``binary_cross_entropy`` and ``binary_cross_entropy_with_grad`` (sigmoid, from logits)."""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from fastxent import _validate
from fastxent._api.common import Loss, gradient_scale, reduce_losses
from fastxent._kernels import binary as kernels
from fastxent._layout import compute_dtype, same_memory


def _as_rows(array: NDArray[Any], shape: tuple[int, ...]) -> NDArray[Any]:
    """``array`` (already of ``shape``) as 2-D rows over the last axis; a view when possible."""
    columns = shape[-1] if shape else 1
    n_rows = int(np.prod(shape[:-1], dtype=np.int64)) if shape else 1
    return array.reshape(n_rows, columns)


def _broadcast_factor(
    factor: ArrayLike | None, shape: tuple[int, ...], name: str
) -> NDArray[np.float64]:
    """A finite float64 ``weight``/``pos_weight`` (any sign) broadcast to ``shape`` (a view)."""
    if factor is None:
        return np.broadcast_to(np.float64(1.0), shape)
    array = np.asarray(factor)
    if array.dtype.kind not in "iuf":
        raise TypeError(f"{name} must be a real (int or float) array, got dtype {array.dtype}")
    try:
        broadcast = np.broadcast_to(array.astype(np.float64, copy=False), shape)
    except ValueError:
        raise ValueError(
            f"{name} of shape {array.shape} does not broadcast to the logits' shape {shape}"
        ) from None
    _validate.finite(array.astype(np.float64), name)
    return broadcast


def _prepare(
    logits: ArrayLike,
    target: ArrayLike,
    weight: ArrayLike | None,
    pos_weight: ArrayLike | None,
    reduction: Any,
    base: Any,
) -> tuple[NDArray[Any], NDArray[Any], NDArray[Any], NDArray[Any], NDArray[Any], str, float]:
    array = np.asarray(logits)
    if array.dtype.char not in "efd":  # float16/32/64, either byte order
        raise TypeError(
            f"logits must be a float16, float32 or float64 array, got dtype {array.dtype}; "
            "convert it first, e.g. logits.astype(np.float32)"
        )
    mode = _validate.reduction_mode(reduction)
    log_base = _validate.log_base(base)
    target_array = np.asarray(target)
    if target_array.dtype.kind not in "iuf" or target_array.dtype.kind == "b":
        raise TypeError(
            f"target must hold numbers in [0, 1] (float or int), got dtype {target_array.dtype}"
        )
    _validate.same_shape(target_array, array.shape, "target", "logits")
    shape = array.shape
    dtype = compute_dtype(array.dtype)
    rows = np.ascontiguousarray(_as_rows(array, shape), dtype=dtype)
    # Targets keep their own precision (float64 targets with float32 logits stay float64).
    target_dtype = compute_dtype(target_array.dtype) if target_array.dtype.kind == "f" else dtype
    targets = np.ascontiguousarray(_as_rows(target_array, shape), dtype=target_dtype)
    weights = _as_rows(_broadcast_factor(weight, shape, "weight"), shape)
    pos_weights = _as_rows(_broadcast_factor(pos_weight, shape, "pos_weight"), shape)
    return array, rows, targets, weights, pos_weights, mode, log_base


def binary_cross_entropy(
    logits: ArrayLike,
    target: ArrayLike,
    *,
    weight: ArrayLike | None = None,
    pos_weight: ArrayLike | None = None,
    reduction: str = "mean",
    base: float | None = None,
) -> Loss:
    r"""Sigmoid cross-entropy from logits, elementwise (binary and multi-label targets).

    .. math::

        \ell = w \left[ (1 - z)\,\mathrm{softplus}(x) + p\, z\, \mathrm{softplus}(-x) \right],
        \qquad \mathrm{softplus}(x) = \max(x, 0) + \log(1 + e^{-|x|})

    which is :math:`-w [p z \log \sigma(x) + (1 - z) \log(1 - \sigma(x))]` computed without
    overflow or cancellation. PyTorch's ``binary_cross_entropy_with_logits`` semantics.

    Parameters
    ----------
    logits : array_like of float16, float32 or float64
        Scores, any shape.
    target : array_like
        Targets in [0, 1], same shape as ``logits``.
    weight : array_like, optional
        Finite weights broadcastable to ``logits``, of any sign (PyTorch's results).
    pos_weight : array_like, optional
        Finite weight ``p`` of the positive term broadcastable to ``logits``, of any sign:
        typically one per class along the last axis (PyTorch broadcasts it likewise).
    reduction : {"mean", "sum", "none"}, default "mean"
        ``"mean"`` divides by the number of elements.
    base : float, optional
        Logarithm base of the loss (``None``: natural log).

    Returns
    -------
    numpy.floating or numpy.ndarray
        A scalar of the result dtype, or elementwise losses shaped like ``logits``.

    Examples
    --------
    >>> import numpy as np, fastxent
    >>> round(float(fastxent.binary_cross_entropy(np.array([0.0]), np.array([1.0]))), 4)
    0.6931
    """
    array, rows, targets, weights, pos_weights, mode, log_base = _prepare(
        logits, target, weight, pos_weight, reduction, base
    )
    elements = np.empty(rows.shape if mode == "none" else (0, 0), dtype=np.float64)
    row_sums = np.empty(rows.shape[0], dtype=np.float64)
    kernels.binary_xent_forward(
        rows.size, rows, targets, weights, pos_weights, mode == "none", elements, row_sums
    )
    if mode == "none":
        return reduce_losses(elements.reshape(-1), mode, 1.0, log_base, array.shape, rows.dtype)
    return reduce_losses(row_sums, mode, float(rows.size), log_base, (), rows.dtype)


def binary_cross_entropy_with_grad(
    logits: ArrayLike,
    target: ArrayLike,
    *,
    weight: ArrayLike | None = None,
    pos_weight: ArrayLike | None = None,
    reduction: str = "mean",
    base: float | None = None,
    out: NDArray[Any] | None = None,
) -> tuple[Loss, NDArray[np.floating[Any]]]:
    r""":func:`binary_cross_entropy` and its gradient with respect to ``logits``.

    .. math::

        \frac{\partial \ell}{\partial x} = w \left[ (1 - z)\,\sigma(x) - p\, z\, \sigma(-x) \right]

    which is ``sigmoid(x) - z`` without weights. The gradient is that of the reduced loss
    (of ``sum(loss)`` for ``reduction="none"``), divided by ``ln(base)``.

    Parameters
    ----------
    logits, target, weight, pos_weight, reduction, base
        As for :func:`binary_cross_entropy`.
    out : numpy.ndarray, optional
        Array for the gradient (shape of ``logits``, result dtype); may be ``logits`` itself.

    Returns
    -------
    loss : numpy.floating or numpy.ndarray
        As :func:`binary_cross_entropy` returns.
    grad : numpy.ndarray
        ``d loss / d logits`` (``out`` when given).

    Examples
    --------
    >>> import numpy as np, fastxent
    >>> loss, grad = fastxent.binary_cross_entropy_with_grad(np.array([0.0]), np.array([1.0]))
    >>> grad
    array([-0.5])
    """
    array, rows, targets, weights, pos_weights, mode, log_base = _prepare(
        logits, target, weight, pos_weight, reduction, base
    )
    if out is not None:
        _validate.out_array(out, array.shape, rows.dtype, array, target, weight, pos_weight)
    grad_rows = _gradient_rows(out, rows)
    scale = gradient_scale(mode, float(rows.size), log_base)
    elements = np.empty(rows.shape if mode == "none" else (0, 0), dtype=np.float64)
    row_sums = np.empty(rows.shape[0], dtype=np.float64)
    kernels.binary_xent_forward_backward(
        rows.size, rows, targets, weights, pos_weights, scale, mode == "none", elements,
        row_sums, grad_rows,
    )  # fmt: skip
    if mode == "none":
        loss = reduce_losses(elements.reshape(-1), mode, 1.0, log_base, array.shape, rows.dtype)
    else:
        loss = reduce_losses(row_sums, mode, float(rows.size), log_base, (), rows.dtype)
    grad = grad_rows.reshape(array.shape)
    if out is None:
        return loss, grad
    if not same_memory(grad, out):
        out[...] = grad
    return loss, out


def _gradient_rows(out: NDArray[Any] | None, rows: NDArray[Any]) -> NDArray[Any]:
    """``out`` viewed as rows when its memory allows it (elementwise: aliasing is safe)."""
    if out is not None and out.flags.c_contiguous:
        return out.reshape(rows.shape)
    return np.empty_like(rows)
