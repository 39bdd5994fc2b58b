"""Reference ``softmax``, ``log_softmax`` and ``logsumexp``."""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from fastxent.reference._common import (
    Axis,
    _groups,
    _log_softmax_rows,
    _logsumexp_rows,
    _result_dtype,
    _ungroup,
)


def softmax(x: ArrayLike, axis: Axis = -1) -> NDArray[np.floating[Any]]:
    """Softmax over ``axis``: an int, a tuple of ints or ``None`` (every axis).

    ``softmax(x)_c = exp(x_c - m) / sum_k exp(x_k - m)`` with ``m = max_k x_k``, over each
    group of elements that ``axis`` spans (``scipy.special.softmax``'s meaning). A ``-inf``
    entry gets probability ``0``; a group entirely ``-inf``, or holding ``+inf`` or
    ``nan``, gives ``nan``. An empty group gives an empty result; a 0-d ``x`` gives ``1``.

    Parameters
    ----------
    x : array_like
        Float logits of any shape.
    axis : int, tuple of ints or None, optional
        The axes of a group (default ``-1``).

    Returns
    -------
    ndarray
        Same shape as ``x``; float32 for float16/float32 input, float64 for float64.

    Examples
    --------
    >>> import numpy as np
    >>> print(np.round(softmax(np.array([1.0, 2.0, 3.0])), 4))
    [0.09   0.2447 0.6652]
    """
    x = np.asarray(x)
    dtype = _result_dtype(x)
    z, moved_shape, axes = _groups(x, axis)
    if z.size == 0:
        return np.empty(x.shape, dtype)
    m = np.max(z, axis=-1, keepdims=True)
    with np.errstate(invalid="ignore"):
        e = np.exp(z - m)
    p = e / np.sum(e, axis=-1, keepdims=True)
    result: NDArray[np.floating[Any]] = _ungroup(p, x, moved_shape, axes).astype(dtype)
    return result


def log_softmax(x: ArrayLike, axis: Axis = -1) -> NDArray[np.floating[Any]]:
    """Logarithm of the softmax over ``axis`` (an int, a tuple of ints or ``None``).

    ``log_softmax(x)_c = x_c - logsumexp(x)``. A ``-inf`` entry gives ``-inf``; a group
    entirely ``-inf``, or holding ``+inf`` or ``nan``, gives ``nan``. An empty group gives
    an empty result; a 0-d ``x`` gives ``0``.

    Parameters
    ----------
    x : array_like
        Float logits of any shape.
    axis : int, tuple of ints or None, optional
        The axes of a group (default ``-1``).

    Returns
    -------
    ndarray
        Same shape as ``x``; float32 for float16/float32 input, float64 for float64.

    Examples
    --------
    >>> import numpy as np
    >>> print(np.round(log_softmax(np.array([1.0, 2.0, 3.0])), 4))
    [-2.4076 -1.4076 -0.4076]
    """
    x = np.asarray(x)
    dtype = _result_dtype(x)
    z, moved_shape, axes = _groups(x, axis)
    if z.size == 0:
        return np.empty(x.shape, dtype)
    logp, _ = _log_softmax_rows(z)
    result: NDArray[np.floating[Any]] = _ungroup(logp, x, moved_shape, axes).astype(dtype)
    return result


def logsumexp(
    x: ArrayLike, axis: Axis = -1, *, keepdims: bool = False
) -> NDArray[np.floating[Any]]:
    """Stable ``log(sum(exp(x)))`` over ``axis`` (an int, a tuple of ints or ``None``).

    ``logsumexp(x) = m + log(sum_c exp(x_c - m))`` with ``m = max_c x_c``, SciPy's and
    PyTorch's values: a group holding ``nan`` gives ``nan``; otherwise a group holding
    ``+inf`` gives ``+inf``, one entirely ``-inf`` or empty ``-inf``. A 0-d ``x`` gives
    itself.

    Parameters
    ----------
    x : array_like
        Float values of any shape.
    axis : int, tuple of ints or None, optional
        The axes reduced over (default ``-1``; ``None``: all).
    keepdims : bool, optional
        Keep the reduced axes with length 1.

    Returns
    -------
    ndarray
        Shape of ``x`` without the reduced axes (or with them of length 1); float32 for
        float16/float32 input, float64 for float64.

    Examples
    --------
    >>> import numpy as np
    >>> print(np.round(logsumexp(np.array([[1.0, 2.0, 3.0], [0.0, 0.0, 0.0]])), 4))
    [3.4076 1.0986]
    """
    x = np.asarray(x)
    dtype = _result_dtype(x)
    z, moved_shape, axes = _groups(x, axis)
    lse = _logsumexp_rows(z).reshape(moved_shape[: len(moved_shape) - len(axes)])
    if x.ndim == 0:
        lse = lse.reshape(())
    elif keepdims:
        lse = np.expand_dims(lse, axes)
    result: NDArray[np.floating[Any]] = lse.astype(dtype)
    return result
