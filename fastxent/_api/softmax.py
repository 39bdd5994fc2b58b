"""``softmax``, ``log_softmax`` and ``logsumexp``."""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from fastxent import _validate
from fastxent._kernels import softmax as kernels
from fastxent._kernels.rows import chain_arguments, rows_to_chain
from fastxent._layout import compute_dtype, from_rows, rows_view


def softmax(x: ArrayLike, axis: int = -1) -> NDArray[np.floating[Any]]:
    r"""Softmax along ``axis``: probabilities that sum to 1.

    .. math:: \mathrm{softmax}(x)_c = \frac{e^{x_c - m}}{\sum_k e^{x_k - m}}, \quad m = \max_k x_k

    Subtracting the row maximum ``m`` keeps every exponent <= 0, so nothing overflows.
    ``-inf`` entries get probability 0; a row that is all ``-inf``, or holds ``nan`` or
    ``+inf``, gives ``nan``. Runs in parallel Numba kernels; float16 is computed in float32.

    Parameters
    ----------
    x : array_like of float16, float32 or float64
        Logits, any number of dimensions.
    axis : int, default -1
        The class axis.

    Returns
    -------
    numpy.ndarray
        Same shape as ``x``; float64 for float64 input, else float32.

    Examples
    --------
    >>> import numpy as np, fastxent
    >>> fastxent.softmax(np.array([1.0, 2.0, 3.0])).round(2)
    array([0.09, 0.24, 0.67])
    """
    array = _validate.float_array(x, "x")
    class_axis = _validate.class_axis(axis, array.ndim)
    _validate.classes(array.shape, class_axis, "x")
    rows = rows_view(array, class_axis, compute_dtype(array.dtype))
    out = np.empty_like(rows)
    kernels.softmax_rows(rows.size, rows, rows_to_chain(rows), out)
    return from_rows(out, array.shape, class_axis)


def log_softmax(x: ArrayLike, axis: int = -1) -> NDArray[np.floating[Any]]:
    r"""Logarithm of :func:`softmax`, computed without forming the probabilities.

    .. math:: \log \mathrm{softmax}(x)_c = x_c - m - \log \sum_k e^{x_k - m}

    Exact for very negative values where ``log(softmax(x))`` would give ``-inf``.

    Parameters
    ----------
    x : array_like of float16, float32 or float64
        Logits, any number of dimensions.
    axis : int, default -1
        The class axis.

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
    array = _validate.float_array(x, "x")
    class_axis = _validate.class_axis(axis, array.ndim)
    _validate.classes(array.shape, class_axis, "x")
    rows = rows_view(array, class_axis, compute_dtype(array.dtype))
    out = np.empty_like(rows)
    kernels.log_softmax_rows(rows.size, rows, *chain_arguments(rows), out)
    return from_rows(out, array.shape, class_axis)


def logsumexp(x: ArrayLike, axis: int = -1) -> NDArray[np.floating[Any]]:
    r"""``log(sum(exp(x)))`` along ``axis``, without overflow.

    .. math:: \mathrm{logsumexp}(x) = m + \log \sum_k e^{x_k - m}, \quad m = \max_k x_k

    The sum is accumulated in float64 for every input dtype.

    Parameters
    ----------
    x : array_like of float16, float32 or float64
        Values, any number of dimensions.
    axis : int, default -1
        The axis to reduce.

    Returns
    -------
    numpy.ndarray
        ``x.shape`` without ``axis`` (0-d for 1-D input); float64 for float64 input,
        else float32.

    Examples
    --------
    >>> import numpy as np, fastxent
    >>> float(fastxent.logsumexp(np.array([1000.0, 1000.0])))
    1000.6931471805599
    """
    array = _validate.float_array(x, "x")
    class_axis = _validate.class_axis(axis, array.ndim)
    _validate.classes(array.shape, class_axis, "x")
    dtype = compute_dtype(array.dtype)
    rows = rows_view(array, class_axis, dtype)
    out = np.empty(rows.shape[0], dtype=np.float64)
    kernels.logsumexp_rows(rows.size, rows, *chain_arguments(rows), out)
    batch_shape = array.shape[:class_axis] + array.shape[class_axis + 1 :]
    return out.reshape(batch_shape).astype(dtype)
