"""Reductions shared by the public losses."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
from numpy.typing import NDArray

Loss = Any  # a NumPy scalar of the result dtype, or an array for reduction="none"

_LARGEST = {"f": float(np.finfo(np.float32).max), "d": math.inf}
# A Python float to the result scalar. NumPy 2's ``np.float32(x)`` is slow next to a small
# call; ``np.float32(1) * x`` gives the same float32 (the "weak" Python scalar is rounded
# to float32, then multiplied exactly by 1) far faster. NumPy 1 computes that product in
# float64, so there the constructor stays.
_FLOAT32_ONE = np.float32(1.0)
_TO_RESULT: dict[str, Callable[[float], Any]] = {
    "f": _FLOAT32_ONE.__mul__ if type(_FLOAT32_ONE * 0.5) is np.float32 else np.float32,
    "d": np.float64,
}


def reduce_losses(
    losses: NDArray[np.float64],
    reduction: str,
    denominator: float,
    log_base: float,
    batch_shape: tuple[int, ...],
    dtype: np.dtype[Any],
    total: float | None = None,
) -> Loss:
    """Per-sample float64 losses to the requested reduction, in base ``e ** log_base``.

    ``"mean"`` divides the sum by ``denominator``; a zero denominator (empty batch, every
    row ignored) gives ``nan``. Sums are taken in float64 (NumPy's pairwise summation).
    """
    if reduction == "none":
        scaled = losses if log_base == 1.0 else losses / log_base
        # A loss beyond float32's range is +inf: the cast may say so, but must not warn.
        with np.errstate(over="ignore"):
            return scaled.reshape(batch_shape).astype(dtype)
    total = float(losses.sum()) if total is None else total
    if reduction == "mean":
        total = total / denominator if denominator != 0 else math.nan
    return result_scalar(total / log_base, dtype)


def result_scalar(value: float, dtype: np.dtype[Any]) -> Loss:
    """A float64 loss as the result scalar of ``dtype`` (float32 or float64).

    Beyond float32's range it becomes ``inf``, without NumPy's overflow warning.
    """
    if abs(value) > _LARGEST[dtype.char]:  # (false for nan)
        value = math.copysign(math.inf, value)
    return _TO_RESULT[dtype.char](value)


def gradient_scale(reduction: str, denominator: float, log_base: float) -> float:
    """Factor turning ``d sum(loss) / dz`` (natural log) into the reduced loss's gradient.

    ``"none"`` is differentiated as ``sum(loss)``; a ``"mean"`` over a zero denominator has a
    zero gradient.
    """
    if reduction == "mean":
        return 0.0 if denominator == 0 else 1.0 / (denominator * log_base)
    return 1.0 / log_base
