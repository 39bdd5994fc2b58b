"""Helpers shared by the reference implementations: layouts, reductions, stable logs."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from numpy.typing import NDArray

F64 = NDArray[np.float64]
#: The axes a reduction spans: one, several, or ``None`` for all of them.
Axis = int | tuple[int, ...] | None
#: What a loss function returns: an array for ``reduction="none"``, else a NumPy scalar.
Loss = NDArray[np.floating[Any]] | np.floating[Any]


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
