"""PyTorch's "mean" over counted rows whose weights sum to 0, repeated in NumPy."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from numpy.typing import NDArray

from fastxent._api.xent_problem import Problem


def counted_weight(problem: Problem) -> float:
    """The "mean" denominator of an integer-target call: ``sum w[y]`` over counted rows.

    ``nan`` where a label is out of range (labels are not checked yet).
    """
    assert problem.labels is not None
    labels = problem.labels.reshape(-1)
    counted = labels[labels != problem.ignore_index]
    if np.any((counted < 0) | (counted >= problem.weight.size)):
        return math.nan  # the kernel finds the bad label and the wrapper raises
    return float(problem.weight[counted].sum()) if counted.size else 0.0


def zero_weight_mean(
    problem: Problem, logits: NDArray[Any], with_grad: bool
) -> tuple[float, NDArray[np.float64] | None] | None:
    """PyTorch's "mean" whose counted rows' weights sum to 0 (``None``: no row counted).

    With weights of both signs (or all zero) the denominator can be 0 while rows are
    counted. PyTorch then divides anyway (``x / 0`` is ``+-inf``, ``0 / 0`` is ``nan``),
    the plain and the smoothed parts of the loss separately, and its gradient follows the
    log-softmax backward; this repeats that arithmetic in float64 NumPy, on the caller's
    ``logits`` (with the class axis ``problem.class_axis``). Returns the loss (natural log
    divided by ``ln(base)``) and, if asked, the gradient in the logits' shape.
    """
    assert problem.labels is not None
    labels = problem.labels.reshape(-1)
    counted = labels != problem.ignore_index
    if not counted.any():
        return None  # nothing counted: nan with a zero gradient, as the kernels give
    n_classes = problem.weight.size
    z = np.moveaxis(logits, problem.class_axis, -1).reshape(-1, n_classes).astype(np.float64)
    weight, smoothing, denominator = problem.weight, problem.smoothing, np.float64(0.0)
    safe_labels = np.where(counted, labels, 0)[:, np.newaxis]
    with np.errstate(all="ignore"):
        top = np.max(z, axis=-1, keepdims=True)
        log_p = z - top - np.log(np.sum(np.exp(z - top), axis=-1, keepdims=True))
        target_log_p = np.take_along_axis(log_p, safe_labels, axis=-1)[:, 0]
        nll = np.sum(np.where(counted, -(target_log_p * weight[safe_labels[:, 0]]), 0.0))
        nll_scale = 1.0 - smoothing
        loss = nll_scale * (nll / denominator) if nll_scale != 0.0 else 0.0  # (0 * inf = 0)
        grad_log_p = np.zeros_like(z)
        rows = np.flatnonzero(counted)
        grad_log_p[rows, labels[rows]] = weight[labels[rows]] * -(nll_scale / denominator)
        if smoothing > 0.0:
            spread = smoothing / n_classes
            smooth = np.sum(np.where(counted[:, np.newaxis], -(log_p * weight), 0.0))
            loss += (smooth / denominator) * spread
            grad_log_p[rows] += weight * -(spread / denominator)
        loss = float(loss / problem.log_base)
        if not with_grad:
            return loss, None
        grad = grad_log_p - np.exp(log_p) * np.sum(grad_log_p, axis=-1, keepdims=True)
        grad[~counted] = 0.0
        grad /= problem.log_base
    moved_shape = problem.batch_shape + (n_classes,)
    return loss, np.moveaxis(grad.reshape(moved_shape), -1, problem.class_axis)
