"""``cross_entropy`` and ``cross_entropy_with_grad`` (softmax cross-entropy from logits)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from fastxent import _validate
from fastxent._api.common import Loss, gradient_scale, reduce_losses, result_scalar
from fastxent._kernels import xent_labels, xent_labels_columns, xent_probs
from fastxent._layout import (
    columns_view,
    compute_dtype,
    from_rows,
    rows_target,
    rows_view,
    same_memory,
)
from fastxent._plan import plan_rows


@dataclass(slots=True)
class _Problem:
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


def _prepare(
    logits: ArrayLike,
    target: ArrayLike,
    axis: Any,
    weight: ArrayLike | None,
    ignore_index: Any,
    reduction: Any,
    label_smoothing: Any,
    base: Any,
) -> _Problem:
    """Validate any call and bring it to the kernels' layout (after the common case's checks)."""
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
        columns = class_axis < array.ndim - 1 and array.dtype == dtype and array.flags.c_contiguous
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
    return _Problem(
        array, rows, columns, class_axis, batch_shape, labels, probs, weights, ignore,
        smoothing, mode, log_base,
    )  # fmt: skip


_REDUCTIONS = frozenset(_validate.REDUCTIONS)
_FLOAT32 = np.dtype(np.float32)
_FLOAT64 = np.dtype(np.float64)
_INT64 = np.dtype(np.int64)


def _is_common_call(
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
        and len(target) == len(logits)  # (a third of `target.shape == logits.shape[:1]`)
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


def _common_problem(
    logits: Any, target: Any, weight: Any, ignore_index: int, reduction: str, smoothing: float
) -> _Problem:
    """The :class:`_Problem` of a call that :func:`_is_common_call` accepted."""
    return _Problem(
        logits, logits, False, 1, (logits.shape[0],), target, None,
        _validate.class_weight(None, logits.shape[1]) if weight is None else weight,
        ignore_index, smoothing, reduction, 1.0,
    )  # fmt: skip


def _common_forward(
    logits: Any,
    target: Any,
    weight: Any,
    ignore_index: int,
    reduction: str,
    label_smoothing: float,
) -> Loss | None:
    """:func:`cross_entropy` of a call that :func:`_is_common_call` accepted.

    ``None`` when a label is out of range or a weight is not finite (the general path then
    raises), and for a "mean" over a zero weight (the general path's
    :func:`_zero_weight_mean`). Without the :class:`_Problem` and the general reduction, a
    1 x 10 call took 4.9 instead of 7.9 us; through the general path, a weight took it
    from 3.8 to 14 us.
    """
    n_rows = logits.shape[0]
    losses: NDArray[np.float64] = np.empty(n_rows)
    if weight is None:
        weight = _validate.class_weight(None, logits.shape[1])
    chained, streaming = plan_rows(logits)
    row_weight = _per_class_room(weight, label_smoothing, logits.dtype)
    # What sets the Numba types of the arguments below (_is_common_call fixed the rest).
    key = (logits.dtype, chained is None, row_weight is None)
    n_invalid, denominator, total = xent_labels.xent_labels_forward.run_typed(
        key, logits.size, logits, chained, streaming, target, weight, row_weight, ignore_index,
        label_smoothing, losses,
    )  # fmt: skip
    if n_invalid or (reduction == "mean" and denominator == 0):
        return None
    if reduction == "none":
        return reduce_losses(losses, reduction, denominator, 1.0, (n_rows,), logits.dtype)
    if reduction == "mean":
        total = total / denominator if denominator != 0 else math.nan
    return result_scalar(total, logits.dtype)


def _per_class_room(
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


def _counted_weight(problem: _Problem) -> float:
    """The "mean" denominator of an integer-target call: ``sum w[y]`` over counted rows.

    ``nan`` where a label is out of range (labels are not checked yet).
    """
    assert problem.labels is not None
    labels = problem.labels.reshape(-1)
    counted = labels[labels != problem.ignore_index]
    if np.any((counted < 0) | (counted >= problem.weight.size)):
        return math.nan  # the kernel finds the bad label and the wrapper raises
    return float(problem.weight[counted].sum()) if counted.size else 0.0


def _zero_weight_mean(
    problem: _Problem, logits: NDArray[Any], with_grad: bool
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


def _raise_for_labels(problem: _Problem, target: ArrayLike) -> None:
    """The kernel counted labels out of range: raise the error that names the first one."""
    n_classes = problem.rows.shape[1]
    _validate.labels_target(
        np.asarray(target), problem.batch_shape, n_classes, problem.ignore_index
    )
    raise AssertionError("unreachable: labels_target raises for the labels the kernel counted")


def cross_entropy(
    logits: ArrayLike,
    target: ArrayLike,
    *,
    axis: int = -1,
    weight: ArrayLike | None = None,
    ignore_index: int = -100,
    reduction: str = "mean",
    label_smoothing: float = 0.0,
    base: float | None = None,
) -> Loss:
    r"""Softmax cross-entropy between logits and class indices or class probabilities.

    For one sample with logits :math:`z`, :math:`\log p = \mathrm{log\_softmax}(z)`, class
    weights :math:`w` and label smoothing :math:`\varepsilon`:

    .. math::

        \ell = (1 - \varepsilon)\, w_y\, (-\log p_y)
               + \frac{\varepsilon}{C} \sum_c w_c\, (-\log p_c)
        \qquad\text{(integer target } y\text{)}

        \ell = -\sum_c w_c\, q_c \log p_c, \quad
        q = (1 - \varepsilon)\, t + \varepsilon / C
        \qquad\text{(probability target } t\text{)}

    The semantics are PyTorch's ``torch.nn.functional.cross_entropy`` (see
    ``docs/semantics.md`` for the few, deliberate differences). One fused pass per row:
    max, exp-sum in float64, log, gather; no ``N x C`` temporary.

    Parameters
    ----------
    logits : array_like of float16, float32 or float64
        Unnormalised scores; the class axis is ``axis``.
    target : array_like
        Integer class indices shaped like ``logits`` without ``axis``, or float class
        probabilities shaped like ``logits``.
    axis : int, default -1
        The class axis (``axis=1`` for PyTorch's ``(N, C, d1, ...)`` layout).
    weight : array_like, shape (C,), optional
        Non-negative weight of each class.
    ignore_index : int, default -100
        Integer targets equal to it contribute nothing (not even to the mean's denominator).
    reduction : {"mean", "sum", "none"}, default "mean"
        ``"mean"`` divides by the summed weights of the counted samples (integer targets)
        or by the number of samples (probability targets).
    label_smoothing : float in [0, 1], default 0
        Mass moved uniformly onto all classes.
    base : float, optional
        Logarithm base of the loss (``None``: natural log; 2: bits).

    Returns
    -------
    numpy.floating or numpy.ndarray
        A scalar of the result dtype (float64 for float64 logits, else float32), or per-sample
        losses for ``reduction="none"``.

    Examples
    --------
    >>> import numpy as np, fastxent
    >>> logits = np.array([[1.4, 3.2, 5.0]])
    >>> round(float(fastxent.cross_entropy(logits, np.array([2]))), 4)
    0.1762
    """
    if _is_common_call(
        logits, target, axis, weight, ignore_index, reduction, label_smoothing, base
    ):
        loss = _common_forward(logits, target, weight, ignore_index, reduction, label_smoothing)
        if loss is not None:
            return loss
    problem = _prepare(logits, target, axis, weight, ignore_index, reduction, label_smoothing, base)
    rows = problem.rows
    if problem.labels is not None:
        losses: NDArray[np.float64] = np.empty(problem.labels.shape)
        if problem.columns:
            n_invalid, denominator, total = xent_labels_columns.xent_columns_forward(
                rows.size, rows, problem.labels, problem.weight, problem.ignore_index,
                problem.smoothing, losses,
            )  # fmt: skip
        else:
            n_invalid, denominator, total = xent_labels.xent_labels_forward(
                rows.size, rows, *plan_rows(rows), problem.labels, problem.weight,
                _per_class_room(problem.weight, problem.smoothing, rows.dtype),
                problem.ignore_index, problem.smoothing, losses,
            )  # fmt: skip
        if n_invalid:
            _raise_for_labels(problem, target)
        if problem.reduction == "mean" and denominator == 0:
            degenerate = _zero_weight_mean(problem, problem.logits, with_grad=False)
            if degenerate is not None:
                return result_scalar(degenerate[0], problem.dtype)
    else:
        losses = np.empty(rows.shape[0])
        denominator, total = rows.shape[0], None
        xent_probs.xent_probs_forward(
            rows.size, rows, *plan_rows(rows), problem.probs, problem.weight,
            problem.smoothing, False, losses,
        )  # fmt: skip
    return reduce_losses(
        losses, problem.reduction, denominator, problem.log_base, problem.batch_shape,
        problem.dtype, total,
    )  # fmt: skip


def cross_entropy_with_grad(
    logits: ArrayLike,
    target: ArrayLike,
    *,
    axis: int = -1,
    weight: ArrayLike | None = None,
    ignore_index: int = -100,
    reduction: str = "mean",
    label_smoothing: float = 0.0,
    base: float | None = None,
    out: NDArray[Any] | None = None,
) -> tuple[Loss, NDArray[np.floating[Any]]]:
    r""":func:`cross_entropy` and its gradient with respect to ``logits``, in one sweep.

    For one sample the gradient is

    .. math:: \frac{\partial \ell}{\partial z_c} = A\, p_c - a_c, \qquad A = \sum_c a_c,

    where :math:`a_c` is the weight :func:`cross_entropy` puts on :math:`-\log p_c`; without
    weights or smoothing this is ``softmax(z) - onehot(y)``. The gradient is that of the
    reduced loss (of ``sum(loss)`` for ``reduction="none"``) and is divided by ``ln(base)``.
    Ignored samples get a zero gradient.

    Parameters
    ----------
    logits, target, axis, weight, ignore_index, reduction, label_smoothing, base
        As for :func:`cross_entropy`.
    out : numpy.ndarray, optional
        Array to write the gradient into: shape of ``logits``, the result dtype. It may be
        ``logits`` itself, which is then overwritten with no extra ``N x C`` memory.

    Returns
    -------
    loss : numpy.floating or numpy.ndarray
        As :func:`cross_entropy` returns.
    grad : numpy.ndarray
        ``d loss / d logits``, shaped like ``logits`` (``out`` when given).

    Examples
    --------
    >>> import numpy as np, fastxent
    >>> loss, grad = fastxent.cross_entropy_with_grad(np.array([[1.4, 3.2, 5.0]]), np.array([2]))
    >>> grad.round(2)
    array([[ 0.02,  0.14, -0.16]])
    """
    problem = (
        _common_problem(logits, target, weight, ignore_index, reduction, label_smoothing)
        if _is_common_call(
            logits, target, axis, weight, ignore_index, reduction, label_smoothing, base
        )
        else _prepare(logits, target, axis, weight, ignore_index, reduction, label_smoothing, base)
    )
    rows = problem.rows
    if out is not None:
        others = (target, weight)
        _validate.out_array(out, problem.logits.shape, problem.dtype, problem.logits, *others)
    grad_rows, in_place = _gradient_rows(out, problem)
    mean = problem.reduction == "mean"
    # A mean over a zero weight is recomputed from the logits, which an in-place gradient
    # overwrites: keep them in that (rare) case.
    kept_logits = (
        problem.logits.copy()
        if in_place and mean and problem.labels is not None and _counted_weight(problem) == 0
        else problem.logits
    )
    if problem.labels is not None:
        losses: NDArray[np.float64] = np.empty(problem.labels.shape)
        if problem.columns:
            n_invalid, denominator, total = xent_labels_columns.xent_columns_forward_backward(
                rows.size, rows, problem.labels, problem.weight, problem.ignore_index,
                problem.smoothing, mean, problem.log_base, in_place, losses, grad_rows,
            )  # fmt: skip
        else:
            n_invalid, denominator, total = xent_labels.xent_labels_forward_backward(
                rows.size, rows, *plan_rows(rows), problem.labels, problem.weight,
                _per_class_room(problem.weight, problem.smoothing, rows.dtype),
                _per_class_room(problem.weight, problem.smoothing, rows.dtype),
                problem.ignore_index, problem.smoothing, mean, problem.log_base, in_place,
                losses, grad_rows,
            )  # fmt: skip
        if n_invalid:  # the general checks raise for a bad weight, then for the labels
            args = (axis, weight, ignore_index, reduction, label_smoothing, base)
            _raise_for_labels(_prepare(logits, target, *args), target)
        degenerate = (
            _zero_weight_mean(problem, kept_logits, with_grad=True)
            if mean and denominator == 0
            else None
        )
    else:
        degenerate = None
        losses = np.empty(rows.shape[0])
        denominator, total = rows.shape[0], None
        scale = gradient_scale(problem.reduction, denominator, problem.log_base)
        xent_probs.xent_probs_forward_backward(
            rows.size, rows, *plan_rows(rows), problem.probs, problem.weight,
            problem.smoothing, scale, in_place, losses, grad_rows,
        )  # fmt: skip
    loss = reduce_losses(
        losses, problem.reduction, denominator, problem.log_base, problem.batch_shape,
        problem.dtype, total,
    )  # fmt: skip
    if problem.columns:
        grad = grad_rows.reshape(problem.logits.shape)
    else:
        grad = from_rows(grad_rows, problem.logits.shape, problem.class_axis)
    if problem.labels is not None and degenerate is not None:
        loss = result_scalar(degenerate[0], problem.dtype)
        grad[...] = degenerate[1]
    if out is None:
        return loss, grad
    if not same_memory(grad, out):
        out[...] = grad
    return loss, out


def _gradient_rows(out: NDArray[Any] | None, problem: _Problem) -> tuple[NDArray[Any], bool]:
    """Where the kernel writes the gradient, and whether that is the logits' own memory.

    ``out`` is used directly when its memory has the kernel's layout; otherwise the
    gradient goes to a fresh array that is copied into ``out`` afterwards.
    """
    rows = problem.rows
    if out is not None:
        moved = out if problem.columns else np.moveaxis(out, problem.class_axis, -1)
        if moved.flags.c_contiguous:
            out_rows = moved.reshape(rows.shape)
            return out_rows, same_memory(out_rows, rows)
    return np.empty_like(rows), False
