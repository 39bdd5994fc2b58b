"""Input checks for the public functions, with messages that say what to do.

Every check raises ``TypeError`` (wrong kind of thing) or ``ValueError`` (right kind, wrong
value) before any kernel runs; Numba does no bounds checking, so every index is checked
here. Nothing the caller passed is modified.
"""

from __future__ import annotations

import math
import numbers
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

REDUCTIONS = ("mean", "sum", "none")
_FLOAT_CODES = ("e", "f", "d")  # float16, float32, float64 (dtype.char: a fast check)


def float_array(x: ArrayLike, name: str, *, scalar: bool = False) -> NDArray[Any]:
    """``x`` as a float16/32/64 array with at least one (class) axis, or 0-d if ``scalar``."""
    array = x if type(x) is np.ndarray else np.asarray(x)
    if array.dtype.char not in _FLOAT_CODES:
        raise TypeError(
            f"{name} must be a float16, float32 or float64 array, got dtype {array.dtype}; "
            f"convert it first, e.g. {name}.astype(np.float32)"
        )
    if array.ndim == 0 and not scalar:
        raise ValueError(f"{name} must have at least one axis (the classes), got a 0-d array")
    return array


def class_axis(axis: Any, ndim: int, name: str = "axis", what: str = "an int") -> int:
    """``axis`` as a non-negative axis index of an ``ndim``-dimensional array."""
    if type(axis) is int and -ndim <= axis < ndim:  # the common case, checked quickly
        return axis % ndim
    if isinstance(axis, (bool, np.bool_)) or not isinstance(axis, numbers.Integral):
        raise TypeError(f"{name} must be {what}, got {type(axis).__name__}")
    if not -ndim <= int(axis) < ndim:
        raise ValueError(f"{name}={axis} is out of range for an array with {ndim} dimensions")
    return int(axis) % ndim


def reduction_axes(axis: Any, ndim: int) -> tuple[int, ...]:
    """``axis`` (an int, a tuple of ints or ``None``) as sorted non-negative axes.

    NumPy's rules: ``None`` is every axis, negative axes count from the end, a repeated
    axis is an error. A 0-d array takes axes as a 1-D one does (``-1`` or ``0``) and has
    none to reduce, as in PyTorch.
    """
    if axis is None:
        return tuple(range(ndim))
    items = axis if isinstance(axis, tuple) else (axis,)
    span = max(ndim, 1)
    axes = tuple(class_axis(item, span, what="an int, a tuple of ints or None") for item in items)
    if len(set(axes)) != len(axes):
        raise ValueError(f"axis={axis} repeats an axis; name each axis at most once")
    return tuple(sorted(axes)) if ndim > 0 else ()


def classes(shape: tuple[int, ...], axis: int, name: str) -> int:
    """Number of classes along ``axis``; there must be at least one."""
    n_classes = shape[axis]
    if n_classes == 0:
        raise ValueError(f"{name} has 0 classes along axis {axis}: there must be at least one")
    return n_classes


def reduction_mode(reduction: Any) -> str:
    if reduction == "mean" and type(reduction) is str:  # the common case, checked quickly
        return "mean"
    if not isinstance(reduction, str) or reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of 'mean', 'sum', 'none', got {reduction!r}")
    return reduction


def log_base(base: Any) -> float:
    """``ln(base)``: losses in base ``base`` are natural-log losses divided by it."""
    if base is None:
        return 1.0
    if isinstance(base, (bool, np.bool_)) or not isinstance(base, numbers.Real):
        raise TypeError(f"base must be a real number or None, got {type(base).__name__}")
    value = float(base)
    if not (value > 0.0 and math.isfinite(value)) or value == 1.0:
        raise ValueError(
            f"base must be positive, finite and not 1 (e.g. 2 for bits, 10), got {base!r}"
        )
    return math.log(value)


def real_in_range(value: Any, name: str, low: float, high: float) -> float:
    if type(value) is float and low <= value <= high:  # the common case, checked quickly
        return value
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__}")
    number = float(value)
    if not low <= number <= high:
        raise ValueError(f"{name} must be in [{low}, {high}], got {value!r}")
    return number


def z_loss(value: Any) -> float:
    """The z-loss coefficient: a finite real number >= 0."""
    if type(value) is float and 0.0 <= value < math.inf:
        return value
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(f"z_loss must be a real number, got {type(value).__name__}")
    number = float(value)
    if not (number >= 0.0 and math.isfinite(number)):
        raise ValueError(f"z_loss must be finite and >= 0 (PaLM uses 1e-4), got {value!r}")
    return number


def softcap(value: Any) -> float | None:
    """The logit soft-cap: ``None`` (no cap) or a finite real number > 0."""
    if value is None:
        return None
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(f"softcap must be a real number or None, got {type(value).__name__}")
    number = float(value)
    if not (number > 0.0 and math.isfinite(number)):
        raise ValueError(
            f"softcap must be finite and > 0 (Gemma 2 uses 30.0), or None for no cap, got {value!r}"
        )
    return number


_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1


def integer(value: Any, name: str) -> int:
    """An int that fits in int64 (the kernels' label type)."""
    if type(value) is int and _INT64_MIN <= value <= _INT64_MAX:  # the common case
        return value
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    number = int(value)
    if not _INT64_MIN <= number <= _INT64_MAX:
        raise ValueError(f"{name} must fit in a 64-bit signed integer, got {number}")
    return number


_ONES: dict[int, NDArray[np.float64]] = {}


def class_weight(weight: ArrayLike | None, n_classes: int) -> NDArray[np.float64]:
    """Per-class weights as float64 ``(C,)``, finite, of any sign. ``None`` means ones.

    The arrays of ones are shared between calls (the kernels never write weights).
    """
    if weight is None:
        ones = _ONES.get(n_classes)
        if ones is None:
            if len(_ONES) > 64:
                _ONES.clear()
            ones = _ONES[n_classes] = np.ones(n_classes)
        return ones
    array = np.asarray(weight)
    if array.dtype.kind not in "iuf":
        raise TypeError(f"weight must be a real (int or float) array, got dtype {array.dtype}")
    if array.shape != (n_classes,):
        raise ValueError(
            f"weight must have one entry per class, shape ({n_classes},), got {array.shape}"
        )
    values = array.astype(np.float64)
    finite(values, "weight")
    return values


def finite(values: NDArray[np.float64], name: str) -> None:
    """Weights may be negative (reweighting, unlearning) but not ``nan`` or infinite."""
    bad = ~np.isfinite(values)
    if np.any(bad):
        where = tuple(int(i) for i in np.argwhere(bad)[0]) if values.ndim else ()
        position = f"[{', '.join(map(str, where))}]" if where else ""
        raise ValueError(
            f"{name} must be finite; {name}{position} is {values[where]}: replace nan and "
            "inf weights by finite numbers"
        )


def labels_shape(target: NDArray[Any], batch_shape: tuple[int, ...]) -> None:
    """Integer class indices need one index per sample: the logits' shape without the axis."""
    if target.dtype.kind not in "iu":
        raise TypeError(
            f"target must hold integer class indices, got dtype {target.dtype}; "
            "convert with target.astype(np.int64)"
        )
    if target.shape != batch_shape:
        raise ValueError(
            f"target has shape {target.shape} but logits without the class axis have shape "
            f"{batch_shape}: integer targets need one class index per sample"
        )


def labels_target(
    target: NDArray[Any], batch_shape: tuple[int, ...], n_classes: int, ignore_index: int | None
) -> None:
    """Check integer class indices: their shape, and that each is in range or ignored."""
    labels_shape(target, batch_shape)
    bad = (target < 0) | (target >= n_classes)
    if ignore_index is not None:
        bad &= target != ignore_index
    if np.any(bad):
        where = tuple(int(i) for i in np.argwhere(bad)[0])
        also = "" if ignore_index is None else f" (nor ignore_index={ignore_index})"
        position = ", ".join(map(str, where))
        raise ValueError(
            f"target[{position}] = {target[where]} is not a class index in [0, {n_classes}){also}"
        )


def target_kind(target: NDArray[Any]) -> str:
    """``"labels"`` for integer targets (class indices), ``"probs"`` for float ones."""
    if target.dtype.kind in "iu":
        return "labels"
    if target.dtype.kind == "f":
        return "probs"
    raise TypeError(
        f"target must be integer class indices or float class probabilities, got dtype "
        f"{target.dtype}"
    )


def probability_shape(
    target: NDArray[Any], shape: tuple[int, ...], batch_shape: tuple[int, ...]
) -> None:
    """Float targets are class probabilities: one per logit, the logits' shape."""
    if target.shape == shape:
        return
    if target.shape == batch_shape:
        raise ValueError(
            f"target has dtype {target.dtype} and shape {target.shape}, the logits' shape "
            "without the class axis: float targets are read as class probabilities (the "
            f"logits' shape, {shape}) and integer dtypes as class indices; for indices, pass "
            "target.astype(np.int64)"
        )
    same_shape(target, shape, "target", "logits")


def same_shape(array: NDArray[Any], expected: tuple[int, ...], name: str, other: str) -> None:
    if array.shape != expected:
        raise ValueError(
            f"{name} has shape {array.shape} but {other} has shape {expected}; they must match"
        )


def out_array(
    out: Any, shape: tuple[int, ...], dtype: np.dtype[Any], logits: NDArray[Any], *others: Any
) -> NDArray[Any]:
    """``out`` must be a writable array of the gradient's shape and dtype.

    It may be ``logits`` itself (overwritten in place), but must not overlap the target or
    any other input, nor part of ``logits``.
    """
    if not isinstance(out, np.ndarray):
        raise TypeError(f"out must be a NumPy array, got {type(out).__name__}")
    if out.shape != shape or out.dtype != dtype:
        raise ValueError(
            f"out must have the gradient's shape {shape} and dtype {dtype}, got shape "
            f"{out.shape} and dtype {out.dtype}"
        )
    if not out.flags.writeable:
        raise ValueError("out is read-only; pass a writable array")
    for other in others:
        if isinstance(other, np.ndarray) and np.may_share_memory(out, other):
            raise ValueError("out overlaps the target or weights: pass a separate array")
    if np.may_share_memory(out, logits) and not (
        out.__array_interface__["data"][0] == logits.__array_interface__["data"][0]
        and out.strides == logits.strides
    ):
        raise ValueError("out overlaps part of logits: pass logits itself or a separate array")
    return out
