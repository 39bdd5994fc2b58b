"""Bring arrays to the one layout the kernels compile for, and back.

Kernels see 2-D C-contiguous rows ``(R, C)`` with the class axis last, in float32 or
float64, and int64 targets. Normalising here keeps the number of compiled signatures small:
int32 labels, sliced or read-only logits and Fortran order all reuse the same machine code.
A copy is made only when the input is not already in that layout (class axis not last,
non-contiguous, float16, or another dtype).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from numpy.typing import NDArray

_FLOAT32 = np.dtype(np.float32)
_FLOAT64 = np.dtype(np.float64)


def compute_dtype(dtype: np.dtype[Any]) -> np.dtype[Any]:
    """float64 stays float64; float16 and float32 are computed in float32."""
    return _FLOAT64 if dtype.char == "d" else _FLOAT32


def rows_view(x: NDArray[Any], axis: int, dtype: np.dtype[Any]) -> NDArray[Any]:
    """``x`` as ``(R, C)`` C-contiguous rows of ``dtype``, the class ``axis`` last.

    A view of ``x`` when its memory already has that layout, otherwise a copy. The result
    is never written by the kernels; a read-only ``x`` is presented as writable so that it
    shares the compiled code of writable arrays.
    """
    if x.ndim == 2 and axis == 1 and x.dtype is dtype and x.flags.c_contiguous:
        return x if x.flags.writeable else _writable_alias(x)  # already the kernels' layout
    moved = x if axis == x.ndim - 1 else np.moveaxis(x, axis, -1)
    n_classes = moved.shape[-1]
    if moved.ndim == 2 and moved.dtype == dtype and moved.flags.c_contiguous:
        rows = moved
    else:
        n_rows = math.prod(moved.shape[:-1])  # (not -1: an empty class axis has no rows' size)
        rows = np.ascontiguousarray(moved.reshape(n_rows, n_classes), dtype=dtype)
    if not rows.flags.writeable:
        rows = _writable_alias(rows)
    return rows


def groups_view(x: NDArray[Any], axes: tuple[int, ...], dtype: np.dtype[Any]) -> NDArray[Any]:
    """``x`` as ``(R, K)`` C-contiguous rows of ``dtype``, one row per group over ``axes``.

    ``axes`` (sorted, non-negative; empty for groups of one element) are moved last, in
    order, and flattened into one axis of ``K`` elements; a view when the memory allows.
    """
    n_axes = len(axes)
    moved = np.moveaxis(x, axes, tuple(range(x.ndim - n_axes, x.ndim)))
    n_groups = math.prod(moved.shape[: x.ndim - n_axes])
    rows = np.ascontiguousarray(
        moved.reshape(n_groups, math.prod(moved.shape[x.ndim - n_axes :])), dtype=dtype
    )
    return rows if rows.flags.writeable else _writable_alias(rows)


def from_groups(rows: NDArray[Any], shape: tuple[int, ...], axes: tuple[int, ...]) -> NDArray[Any]:
    """Inverse of :func:`groups_view`: ``(R, K)`` rows back to ``shape``."""
    ndim, n_axes = len(shape), len(axes)
    moved_shape = tuple(n for i, n in enumerate(shape) if i not in axes) + tuple(
        shape[i] for i in axes
    )
    return np.moveaxis(rows.reshape(moved_shape), tuple(range(ndim - n_axes, ndim)), axes)


def columns_view(x: NDArray[Any], axis: int) -> NDArray[Any]:
    """A C-contiguous ``x`` as ``(A, C, B)``: the sizes before, at and after ``axis`` (a view)."""
    outer = int(np.prod(x.shape[:axis], dtype=np.int64))
    inner = int(np.prod(x.shape[axis + 1 :], dtype=np.int64))
    view = x.reshape(outer, x.shape[axis], inner)
    return view if view.flags.writeable else _writable_alias(view)


def rows_target(target: NDArray[Any]) -> NDArray[np.int64]:
    """Integer class indices flattened to one C-contiguous int64 row per sample."""
    if target.ndim == 1 and target.dtype == np.int64 and target.flags.c_contiguous:
        labels = target
    else:
        labels = np.ascontiguousarray(target.reshape(-1), dtype=np.int64)
    return labels if labels.flags.writeable else _writable_alias(labels)


def from_rows(rows: NDArray[Any], shape: tuple[int, ...], axis: int) -> NDArray[Any]:
    """Inverse of :func:`rows_view`: ``(R, C)`` rows back to ``shape`` with classes on ``axis``."""
    if axis == len(shape) - 1:  # classes already last: no axis to move
        return rows if rows.shape == shape else rows.reshape(shape)
    moved_shape = shape[:axis] + shape[axis + 1 :] + (shape[axis],)
    return np.moveaxis(rows.reshape(moved_shape), -1, axis)


def same_memory(a: NDArray[Any], b: NDArray[Any]) -> bool:
    """True when ``a`` and ``b`` are the same elements at the same addresses."""
    return bool(
        a.__array_interface__["data"][0] == b.__array_interface__["data"][0]
        and a.shape == b.shape
        and a.strides == b.strides
    )


class _ArrayInterface:
    """Exposes an array's memory with the read-only flag cleared (see ``rows_view``)."""

    def __init__(self, array: NDArray[Any]) -> None:
        interface = dict(array.__array_interface__)
        interface["data"] = (interface["data"][0], False)
        self.__array_interface__ = interface
        self.base = array  # keeps the memory alive


def _writable_alias(array: NDArray[Any]) -> NDArray[Any]:
    alias: NDArray[Any] = np.asarray(_ArrayInterface(array))
    return alias
