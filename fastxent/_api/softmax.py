"""``softmax``, ``log_softmax`` and ``logsumexp``, over one axis, several, or all."""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from fastxent import _validate
from fastxent._kernels import softmax as kernels
from fastxent._layout import compute_dtype, from_groups, from_rows, groups_view, rows_view
from fastxent._plan import plan_rows, rows_to_chain

#: The axes a reduction spans: one, several, or ``None`` for all of them (NumPy's meaning).
Axis = int | tuple[int, ...] | None


def _as_groups(
    x: ArrayLike, axis: Axis
) -> tuple[NDArray[Any], NDArray[Any], int | tuple[int, ...]]:
    """Validated ``x``, its groups as ``(R, K)`` kernel rows, and where the groups lie.

    An int ``axis`` (the common call) keeps the class-axis layout of the losses; a tuple,
    ``None`` or a 0-d ``x`` moves the reduced axes last and flattens them into one.
    """
    array = _validate.float_array(x, "x", scalar=True)
    dtype = compute_dtype(array.dtype)
    if type(axis) is int and array.ndim > 0:
        class_axis = _validate.class_axis(axis, array.ndim)
        return array, rows_view(array, class_axis, dtype), class_axis
    axes = _validate.reduction_axes(axis, array.ndim)
    return array, groups_view(array, axes, dtype), axes


def _from_groups(
    rows: NDArray[Any], shape: tuple[int, ...], where: int | tuple[int, ...]
) -> NDArray[Any]:
    """Inverse of :func:`_as_groups`: kernel rows back to ``shape``."""
    if isinstance(where, int):
        return from_rows(rows, shape, where)
    return from_groups(rows, shape, where)


def softmax(x: ArrayLike, axis: Axis = -1) -> NDArray[np.floating[Any]]:
    r"""Softmax over ``axis``: probabilities that sum to 1 over each group.

    .. math:: \mathrm{softmax}(x)_c = \frac{e^{x_c - m}}{\sum_k e^{x_k - m}}, \quad m = \max_k x_k

    Subtracting the maximum ``m`` keeps every exponent <= 0, so nothing overflows. A
    group is the elements that ``axis`` spans with every other index fixed
    (``scipy.special.softmax``'s meaning). ``-inf`` entries get probability 0; a group that
    is all ``-inf``, or holds ``nan`` or ``+inf``, gives ``nan``. An empty axis gives an
    empty result, a 0-d ``x`` gives 1. Runs in parallel Numba kernels; float16 is computed
    in float32.

    Parameters
    ----------
    x : array_like of float16, float32 or float64
        Logits, any number of dimensions.
    axis : int, tuple of ints or None, default -1
        The class axis, or the axes of a group (``None``: all of them).

    Returns
    -------
    numpy.ndarray
        Same shape as ``x``; float64 for float64 input, else float32.

    Examples
    --------
    >>> import numpy as np, fastxent
    >>> fastxent.softmax(np.array([1.0, 2.0, 3.0])).round(2)
    array([0.09, 0.24, 0.67])
    >>> fastxent.softmax(np.zeros((2, 2)), axis=None)
    array([[0.25, 0.25],
           [0.25, 0.25]])
    """
    array, rows, where = _as_groups(x, axis)
    out = np.empty_like(rows)
    if rows.size:
        kernels.softmax_rows(rows.size, rows, rows_to_chain(rows), out)
    return _from_groups(out, array.shape, where)


def log_softmax(x: ArrayLike, axis: Axis = -1) -> NDArray[np.floating[Any]]:
    r"""Logarithm of :func:`softmax`, computed without forming the probabilities.

    .. math:: \log \mathrm{softmax}(x)_c = x_c - m - \log \sum_k e^{x_k - m}

    Exact for very negative values where ``log(softmax(x))`` would give ``-inf``. Groups,
    empty axes and 0-d input as for :func:`softmax` (a 0-d ``x`` gives 0).

    Parameters
    ----------
    x : array_like of float16, float32 or float64
        Logits, any number of dimensions.
    axis : int, tuple of ints or None, default -1
        The class axis, or the axes of a group (``None``: all of them).

    Returns
    -------
    numpy.ndarray
        Same shape as ``x``; float64 for float64 input, else float32.

    Examples
    --------
    >>> import numpy as np, fastxent
    >>> fastxent.log_softmax(np.array([0.0, 0.0])).round(4)
    array([-0.6931, -0.6931])
    """
    array, rows, where = _as_groups(x, axis)
    out = np.empty_like(rows)
    if rows.size:
        kernels.log_softmax_rows(rows.size, rows, *plan_rows(rows), out)
    return _from_groups(out, array.shape, where)


def logsumexp(
    x: ArrayLike, axis: Axis = -1, *, keepdims: bool = False
) -> NDArray[np.floating[Any]]:
    r"""``log(sum(exp(x)))`` over ``axis``, without overflow.

    .. math:: \mathrm{logsumexp}(x) = m + \log \sum_k e^{x_k - m}, \quad m = \max_k x_k

    The sum is accumulated in float64 for every input dtype. The values of
    ``scipy.special.logsumexp`` and ``torch.logsumexp``: a group holding ``nan`` gives
    ``nan``; otherwise one holding ``+inf`` gives ``+inf``, one that is all ``-inf`` or
    empty gives ``-inf`` (``log 0``). A 0-d ``x`` gives itself.

    Parameters
    ----------
    x : array_like of float16, float32 or float64
        Values, any number of dimensions.
    axis : int, tuple of ints or None, default -1
        The axis or axes to reduce (``None``: all of them).
    keepdims : bool, default False
        Keep the reduced axes, with length 1 (NumPy's ``keepdims``, PyTorch's ``keepdim``).

    Returns
    -------
    numpy.ndarray
        ``x.shape`` without the reduced axes (0-d for 1-D input), or with them of length 1
        for ``keepdims=True``; float64 for float64 input, else float32.

    Examples
    --------
    >>> import numpy as np, fastxent
    >>> float(fastxent.logsumexp(np.array([1000.0, 1000.0])))
    1000.6931471805599
    >>> fastxent.logsumexp(np.zeros((2, 3, 4)), axis=(0, 2), keepdims=True).shape
    (1, 3, 1)
    """
    array, rows, where = _as_groups(x, axis)
    if rows.size:
        out = np.empty(rows.shape[0], dtype=np.float64)
        kernels.logsumexp_rows(rows.size, rows, *plan_rows(rows), out)
    else:  # no groups, or empty ones: log 0
        out = np.full(rows.shape[0], -np.inf)
    shape = array.shape
    if type(where) is int and not keepdims:  # the common call
        return out.reshape(shape[:where] + shape[where + 1 :]).astype(rows.dtype)
    axes = (where,) if isinstance(where, int) else where
    if keepdims:
        kept_shape = tuple(1 if i in axes else n for i, n in enumerate(shape))
        return out.reshape(kept_shape).astype(rows.dtype)
    return out.reshape(tuple(n for i, n in enumerate(shape) if i not in axes)).astype(rows.dtype)
