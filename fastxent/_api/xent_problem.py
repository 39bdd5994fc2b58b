"""A validated cross-entropy call in the kernels' layout, and the fast check of the common one."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from fastxent import _validate
from fastxent._layout import columns_view, compute_dtype, rows_target, rows_view


@dataclass(slots=True)
class Problem:
    """A validated cross-entropy call, in the kernels' layout."""

    logits: NDArray[Any]  # the caller's array (checked, never written unless it is `out`)
    rows: NDArray[Any]  # (R, C), or (A, C, B) when `columns`: C-contiguous float32/64
    columns: bool  # class axis in the middle, kept in place (integer targets only)
    class_axis: int
    batch_shape: tuple[int, ...]
    labels: NDArray[np.int64] | None  # (R,) or (A, B) for integer targets
    probs: NDArray[Any] | None  # (R, C) for probability targets
    weight: NDArray[np.float64]
    ignore_index: int
    smoothing: float
    reduction: str
    log_base: float

    @property
    def dtype(self) -> np.dtype[Any]:
        return self.rows.dtype


def prepare(
    logits: ArrayLike,
    target: ArrayLike,
    axis: Any,
    weight: ArrayLike | None,
    ignore_index: Any,
    reduction: Any,
    label_smoothing: Any,
    base: Any,
    rows_only: bool = False,
) -> Problem:
    """Validate any call and bring it to the kernels' layout (after the common case's checks).

    ``rows_only`` asks for the ``(R, C)`` layout even where the class axis could stay in
    place (for kernels that have no column version).
    """
    array = _validate.float_array(logits, "logits")
    class_axis = _validate.class_axis(axis, array.ndim)
    n_classes = _validate.classes(array.shape, class_axis, "logits")
    mode = _validate.reduction_mode(reduction)
    log_base = _validate.log_base(base)
    smoothing = _validate.real_in_range(label_smoothing, "label_smoothing", 0.0, 1.0)
    ignore = _validate.integer(ignore_index, "ignore_index")
    weights = _validate.class_weight(weight, n_classes)
    target_array = target if type(target) is np.ndarray else np.asarray(target)
    kind = _validate.target_kind(target_array)
    batch_shape = array.shape[:class_axis] + array.shape[class_axis + 1 :]
    dtype = compute_dtype(array.dtype)
    labels = probs = None
    columns = False
    if kind == "labels":
        _validate.labels_shape(target_array, batch_shape)
        columns = (
            not rows_only
            and class_axis < array.ndim - 1
            and array.dtype == dtype
            and array.flags.c_contiguous
        )
        if columns:
            rows = columns_view(array, class_axis)
            labels = rows_target(target_array).reshape(rows.shape[0], rows.shape[2])
        else:
            labels = rows_target(target_array)
    else:
        _validate.probability_shape(target_array, array.shape, batch_shape)
        # Targets keep their own precision (float64 targets with float32 logits stay
        # float64): a mass of 1e-60 on a masked class must still give +inf.
        probs = rows_view(target_array, class_axis, compute_dtype(target_array.dtype))
    if not columns:
        rows = rows_view(array, class_axis, dtype)
    return Problem(
        array, rows, columns, class_axis, batch_shape, labels, probs, weights, ignore,
        smoothing, mode, log_base,
    )  # fmt: skip


_REDUCTIONS = frozenset(_validate.REDUCTIONS)
_FLOAT32 = np.dtype(np.float32)
_FLOAT64 = np.dtype(np.float64)
_INT64 = np.dtype(np.int64)


def is_common_call(
    logits: Any,
    target: Any,
    axis: Any,
    weight: Any,
    ignore_index: Any,
    reduction: Any,
    label_smoothing: Any,
    base: Any,
) -> bool:
    """Whether a call is the most common one, which needs no conversion.

    That call: writable C-contiguous float32/float64 ``(N, C)`` logits, writable contiguous
    int64 ``(N,)`` labels, the last axis, no weight or a writable contiguous float64
    ``(C,)`` one, no base, an int ``ignore_index`` and a float ``label_smoothing``. The
    general path's checks reduce to these (the kernels check the labels' range and that
    the weights are finite and non-negative, before writing anything); on a small batch
    they are most of a call's time.
    """
    return (
        type(logits) is np.ndarray
        and type(target) is np.ndarray
        and base is None
        and type(ignore_index) is int
        and type(label_smoothing) is float
        and type(axis) is int
        and (axis == -1 or axis == 1)
        and type(reduction) is str
        and reduction in _REDUCTIONS
        # Native-byte-order dtypes are singletons: `is` also rules out big-endian arrays.
        and (logits.dtype is _FLOAT32 or logits.dtype is _FLOAT64)
        and target.dtype is _INT64
        and logits.ndim == 2
        and target.ndim == 1
        and len(target) == len(logits)  # (no tuples, unlike `target.shape == logits.shape[:1]`)
        and logits.shape[1] > 0
        and 0.0 <= label_smoothing <= 1.0
        and -(2**63) <= ignore_index < 2**63
        and logits.flags.carray  # C-contiguous, aligned and writeable
        and target.flags.carray
        and (
            weight is None
            or (
                type(weight) is np.ndarray
                and weight.dtype is _FLOAT64
                and weight.ndim == 1
                and len(weight) == logits.shape[1]
                and weight.flags.carray
            )
        )
    )


def common_problem(
    logits: Any, target: Any, weight: Any, ignore_index: int, reduction: str, smoothing: float
) -> Problem:
    """The :class:`Problem` of a call that :func:`is_common_call` accepted."""
    return Problem(
        logits, logits, False, 1, (logits.shape[0],), target, None,
        _validate.class_weight(None, logits.shape[1]) if weight is None else weight,
        ignore_index, smoothing, reduction, 1.0,
    )  # fmt: skip


def per_class_room(
    weight: NDArray[np.float64], smoothing: float, dtype: np.dtype[Any]
) -> NDArray[Any] | None:
    """Room for one value per class in the logits' dtype, or ``None`` without smoothing.

    The sparse kernels' ``row_weight`` (the weights, for label smoothing's sum) and
    ``amounts`` (its part of the gradient), which they fill themselves (weights beyond
    float32's range become ``inf`` there, which they handle, without the overflow warning
    of NumPy's ``astype``). ``None`` without label smoothing: the kernels then compile
    without the smoothing terms.
    """
    return np.empty(len(weight), dtype) if smoothing > 0.0 else None
