"""Reference ``linear_cross_entropy`` and ``linear_cross_entropy_with_grad``: logits stored."""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from fastxent.reference._common import F64, Loss, _is_class_indices, _result_dtype
from fastxent.reference.cross_entropy import _softmax_cross_entropy


def _linear(
    input: ArrayLike,
    linear_weight: ArrayLike,
    target: ArrayLike,
    linear_bias: ArrayLike | None,
    weight: ArrayLike | None,
    ignore_index: int,
    reduction: str,
    label_smoothing: float,
    z_loss: float,
    softcap: float | None,
    base: float | None,
) -> tuple[Loss, F64, F64, F64 | None, F64, np.dtype[Any]]:
    """Loss and the float64 gradients by way of the whole float64 logits ``h W^T + b``."""
    h = np.asarray(input)
    w = np.asarray(linear_weight)
    dtype = _result_dtype(np.empty(0, np.result_type(h.dtype, w.dtype)))
    rows = np.atleast_2d(h.astype(np.float64))
    logits = rows @ w.astype(np.float64).T
    if linear_bias is not None:
        logits = logits + np.asarray(linear_bias, dtype=np.float64)
    y = np.asarray(target)
    y = y.reshape(rows.shape[0]) if _is_class_indices(y) else y.reshape(logits.shape)
    counted = (y != ignore_index) if _is_class_indices(y) else np.ones(len(rows), bool)
    class_weight = np.ones(w.shape[0]) if weight is None else np.asarray(weight, np.float64)
    zero_mean = (
        reduction == "mean"
        and _is_class_indices(y)
        and counted.any()
        and class_weight[y[counted]].sum() == 0.0
    )
    options = (weight, ignore_index, "sum" if zero_mean else reduction, label_smoothing, base)
    loss, grad, _ = _softmax_cross_entropy(logits, y, -1, *options, z_loss, softcap)
    if zero_mean:  # counted weights summing to 0: the sum divided by 0
        with np.errstate(divide="ignore", invalid="ignore"):
            loss = np.float64(loss) / 0.0
            grad = np.where(counted[:, np.newaxis], grad / 0.0, 0.0)
    if reduction == "none":
        loss = np.asarray(loss).reshape(np.shape(target) if _is_class_indices(y) else -1)
        loss = loss.reshape(h.shape[:-1])
    with np.errstate(invalid="ignore"):  # (inf * 0 where the mean divided by 0)
        grad_input = (grad @ w.astype(np.float64)).reshape(h.shape)
        grad_weight = grad.T @ rows
        grad_bias = None if linear_bias is None else grad.sum(axis=0)
    return loss, grad_input, grad_weight, grad_bias, grad, dtype


def linear_cross_entropy(
    input: ArrayLike,
    linear_weight: ArrayLike,
    target: ArrayLike,
    *,
    linear_bias: ArrayLike | None = None,
    weight: ArrayLike | None = None,
    ignore_index: int = -100,
    reduction: str = "mean",
    label_smoothing: float = 0.0,
    z_loss: float = 0.0,
    softcap: float | None = None,
    base: float | None = None,
) -> Loss:
    """:func:`cross_entropy` of the logits ``input @ linear_weight.T + linear_bias``.

    The logits are formed whole, in float64. A ``"mean"`` whose counted weights sum to 0
    is the sum divided by 0.

    Examples
    --------
    >>> import numpy as np
    >>> h = np.array([[1.0, 0.0], [0.0, 2.0]])
    >>> W = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    >>> print(round(float(linear_cross_entropy(h, W, np.array([2, 1]))), 4))
    0.8103
    """
    loss, *_, dtype = _linear(
        input, linear_weight, target, linear_bias, weight, ignore_index, reduction,
        label_smoothing, z_loss, softcap, base,
    )  # fmt: skip
    return np.asarray(loss).astype(dtype)[()]


def linear_cross_entropy_with_grad(
    input: ArrayLike,
    linear_weight: ArrayLike,
    target: ArrayLike,
    *,
    linear_bias: ArrayLike | None = None,
    weight: ArrayLike | None = None,
    ignore_index: int = -100,
    reduction: str = "mean",
    label_smoothing: float = 0.0,
    z_loss: float = 0.0,
    softcap: float | None = None,
    base: float | None = None,
) -> tuple[Loss, NDArray[Any], NDArray[Any], NDArray[Any] | None]:
    """The loss and ``(G W, G^T h, sum_i G_i)`` with ``G`` the logits' gradient.

    Examples
    --------
    >>> import numpy as np
    >>> loss, gh, gw, gb = linear_cross_entropy_with_grad(
    ...     np.array([[1.0, 0.0]]), np.eye(2), np.array([0]), linear_bias=np.zeros(2))
    >>> print(gh.round(4), gb.round(4))
    [[-0.2689  0.2689]] [-0.2689  0.2689]
    """
    loss, grad_input, grad_weight, grad_bias, _, dtype = _linear(
        input, linear_weight, target, linear_bias, weight, ignore_index, reduction,
        label_smoothing, z_loss, softcap, base,
    )  # fmt: skip
    return (
        np.asarray(loss).astype(dtype)[()],
        grad_input.astype(dtype),
        grad_weight.astype(dtype),
        None if grad_bias is None else grad_bias.astype(dtype),
    )
