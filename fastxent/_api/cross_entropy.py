"""``cross_entropy`` and ``cross_entropy_with_grad`` (softmax cross-entropy from logits)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from fastxent import _validate
from fastxent._api.common import Loss, gradient_scale, reduce_losses, result_scalar
from fastxent._api.softcap_zloss import language_model_terms, softcap_zloss_forward
from fastxent._api.xent_problem import (
    Problem,
    common_problem,
    is_common_call,
    per_class_room,
    prepare,
)
from fastxent._api.zero_weight_mean import counted_weight, zero_weight_mean
from fastxent._kernels import xent_labels, xent_labels_columns, xent_probs
from fastxent._layout import (
    from_rows,
    same_memory,
)
from fastxent._plan import plan_rows


def _common_forward(
    logits: Any,
    target: Any,
    weight: Any,
    ignore_index: int,
    reduction: str,
    label_smoothing: float,
) -> Loss | None:
    """:func:`cross_entropy` of a call that :func:`is_common_call` accepted.

    ``None`` when a label is out of range or a weight is not finite (the general path then
    raises), and for a "mean" over a zero weight (the general path's
    :func:`zero_weight_mean`). It skips the :class:`Problem` and the general reduction:
    their checks and bookkeeping (costlier still with a weight) are most of a small
    call's time (see ``docs/performance.md``, "Design decisions").
    """
    n_rows = logits.shape[0]
    losses: NDArray[np.float64] = np.empty(n_rows)
    if weight is None:
        weight = _validate.class_weight(None, logits.shape[1])
    chained, streaming = plan_rows(logits)
    row_weight = per_class_room(weight, label_smoothing, logits.dtype)
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


def _raise_for_labels(problem: Problem, target: ArrayLike) -> None:
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
    z_loss: float = 0.0,
    softcap: float | None = None,
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
    z_loss : float, default 0
        Coefficient :math:`\lambda \ge 0` of PaLM's z-loss: each counted row's loss gains
        :math:`\lambda\, \omega\, \mathrm{lse}(z)^2`, with :math:`\omega` the row's
        weight (:math:`w_y` for an integer target, 1 for probabilities); it is reduced
        (and divided by ``ln(base)``) with the rest of the loss.
    softcap : float, optional
        Gemma 2's logit soft-capping: the logits are replaced by
        :math:`s \tanh(z / s)` (``s = softcap > 0``) before everything else.

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
    terms = language_model_terms(z_loss, softcap)
    if terms is not None:
        return _with_terms(
            terms, None, logits, target, axis, weight, ignore_index, reduction,
            label_smoothing, base,
        )[0]  # fmt: skip
    if is_common_call(logits, target, axis, weight, ignore_index, reduction, label_smoothing, base):
        loss = _common_forward(logits, target, weight, ignore_index, reduction, label_smoothing)
        if loss is not None:
            return loss
    problem = prepare(logits, target, axis, weight, ignore_index, reduction, label_smoothing, base)
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
                per_class_room(problem.weight, problem.smoothing, rows.dtype),
                problem.ignore_index, problem.smoothing, losses,
            )  # fmt: skip
        if n_invalid:
            _raise_for_labels(problem, target)
        if problem.reduction == "mean" and denominator == 0:
            degenerate = zero_weight_mean(problem, problem.logits, with_grad=False)
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
    z_loss: float = 0.0,
    softcap: float | None = None,
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
    logits, target, axis, weight, ignore_index, reduction, label_smoothing, base, z_loss, softcap
        As for :func:`cross_entropy`. With them the gradient is
        :math:`((A + 2 \lambda \omega\, \mathrm{lse})\, p_c - a_c)
        (1 - (z'_c / s)^2)`, with :math:`p` the softmax of the capped logits :math:`z'`.
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
    terms = language_model_terms(z_loss, softcap)
    if terms is not None:
        loss, grad = _with_terms(
            terms, out, logits, target, axis, weight, ignore_index, reduction, label_smoothing,
            base, with_grad=True,
        )  # fmt: skip
        assert grad is not None
        return loss, grad
    problem = (
        common_problem(logits, target, weight, ignore_index, reduction, label_smoothing)
        if is_common_call(
            logits, target, axis, weight, ignore_index, reduction, label_smoothing, base
        )
        else prepare(logits, target, axis, weight, ignore_index, reduction, label_smoothing, base)
    )
    rows = problem.rows
    if out is not None:
        others = (target, weight)
        _validate.out_array(out, problem.logits.shape, problem.dtype, problem.logits, *others)
    grad_rows, in_place, into_out = _gradient_rows(out, problem)
    mean = problem.reduction == "mean"
    # A mean over a zero weight is recomputed from the logits, which an in-place gradient
    # overwrites: keep them in that (rare) case.
    kept_logits = (
        problem.logits.copy()
        if in_place and mean and problem.labels is not None and counted_weight(problem) == 0
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
                per_class_room(problem.weight, problem.smoothing, rows.dtype),
                per_class_room(problem.weight, problem.smoothing, rows.dtype),
                problem.ignore_index, problem.smoothing, mean, problem.log_base, in_place,
                losses, grad_rows,
            )  # fmt: skip
        if n_invalid:  # the general checks raise for a bad weight, then for the labels
            args = (axis, weight, ignore_index, reduction, label_smoothing, base)
            _raise_for_labels(prepare(logits, target, *args), target)
        degenerate = (
            zero_weight_mean(problem, kept_logits, with_grad=True)
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
    if not into_out:
        out[...] = grad
    return loss, out


def _with_terms(
    terms: tuple[float, float | None],
    out: NDArray[Any] | None,
    logits: ArrayLike,
    target: ArrayLike,
    axis: Any,
    weight: Any,
    ignore_index: Any,
    reduction: Any,
    label_smoothing: Any,
    base: Any,
    with_grad: bool = False,
) -> tuple[Loss, NDArray[Any] | None]:
    """A call with a z-loss or soft-capped logits: its loss and, if asked, its gradient."""
    args = (axis, weight, ignore_index, reduction, label_smoothing, base)
    problem = prepare(logits, target, *args, rows_only=True)
    grad_rows = None
    if with_grad:
        if out is not None:
            _validate.out_array(
                out, problem.logits.shape, problem.dtype, problem.logits, target, weight
            )
        grad_rows, _, into_out = _gradient_rows(out, problem)
    loss, labels_ok = softcap_zloss_forward(problem, *terms, grad_rows)
    if not labels_ok:
        _raise_for_labels(problem, target)
    if grad_rows is None:
        return loss, None
    grad = from_rows(grad_rows, problem.logits.shape, problem.class_axis)
    if out is None:
        return loss, grad
    if not into_out:
        out[...] = grad
    return loss, out


def _gradient_rows(out: NDArray[Any] | None, problem: Problem) -> tuple[NDArray[Any], bool, bool]:
    """Where the kernel writes the gradient; whether that is the logits' memory, and ``out``'s.

    ``out`` is used directly when its memory has the kernel's layout; otherwise the
    gradient goes to a fresh array that is copied into ``out`` afterwards.
    """
    rows = problem.rows
    if out is not None:
        moved = out if problem.columns else np.moveaxis(out, problem.class_axis, -1)
        if moved.flags.c_contiguous:
            out_rows = moved.reshape(rows.shape)
            # may_share_memory (a bounds check) first: the exact test costs microseconds.
            in_place = np.may_share_memory(out_rows, rows) and same_memory(out_rows, rows)
            return out_rows, in_place, True
    return np.empty_like(rows), False, False
