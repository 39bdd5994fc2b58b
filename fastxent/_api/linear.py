"""``linear_cross_entropy``: cross-entropy of ``input @ linear_weight.T + bias`` in chunks.

The logits ``(N, V)`` never exist whole. Rows go through one reused buffer, a chunk at a
time: the product by BLAS (``np.matmul(..., out=)``), then one fused Numba sweep that
turns the chunk's logits into losses and, in place, into the gradient ``G``, then the
products ``G @ W`` and ``G.T @ h``. Where even a few rows of logits exceed the working
memory, the vocabulary is split too (:mod:`fastxent._api.linear_blocks`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from fastxent import _validate
from fastxent._api.common import Loss, result_scalar
from fastxent._api.softcap_zloss import language_model_terms
from fastxent._api.xent_problem import per_class_room
from fastxent._blas import accumulates_in_place, add_product
from fastxent._kernels import xent_labels, xent_probs
from fastxent._kernels.linear_columns import class_major_labels
from fastxent._kernels.xent_softcap_zloss import softcap_zloss_labels, softcap_zloss_probs
from fastxent._layout import compute_dtype
from fastxent._plan import LinearPlan, class_major_tile, plan_linear, plan_rows

#: Default bound on the working memory of :func:`linear_cross_entropy` (bytes).
WORKING_MEMORY = 64 * 2**20


@dataclass(slots=True)
class LinearProblem:
    """A validated ``linear_cross_entropy`` call, arrays in the computation's dtype."""

    input: NDArray[Any]  # (N, H)
    linear_weight: NDArray[Any]  # (V, H)
    bias: NDArray[Any] | None  # (V,)
    labels: NDArray[np.int64] | None  # (N,)
    probs: NDArray[Any] | None  # (N, V)
    weight: NDArray[np.float64]  # (V,)
    ignore_index: int
    smoothing: float
    reduction: str
    log_base: float
    z_loss: float
    softcap: float | None
    batched: bool  # False for a single sample, input (H,)
    kept: NDArray[np.intp] | None  # rows not ignored, None when all are kept
    denominator: float  # of "mean": summed weights of the counted rows, or N
    row_scale: NDArray[np.float64] | None = None  # (N,): the upstream gradient of each row

    @property
    def dtype(self) -> np.dtype[Any]:
        return self.input.dtype

    @property
    def terms(self) -> bool:
        return self.z_loss != 0.0 or self.softcap is not None


def _prepare(
    input: ArrayLike,
    linear_weight: ArrayLike,
    target: ArrayLike,
    linear_bias: ArrayLike | None,
    weight: ArrayLike | None,
    ignore_index: Any,
    reduction: Any,
    label_smoothing: Any,
    z_loss: Any,
    softcap: Any,
    base: Any,
) -> LinearProblem:
    """Validate a call; every shape mismatch names both shapes."""
    hidden = _validate.float_array(input, "input")
    matrix = _validate.float_array(linear_weight, "linear_weight")
    if hidden.ndim > 2:
        raise ValueError(
            f"input must be (N, H) or (H,), got shape {hidden.shape}; flatten the leading "
            "axes first, e.g. input.reshape(-1, input.shape[-1])"
        )
    if matrix.ndim != 2:
        raise ValueError(
            f"linear_weight must be (V, H) (classes, input features), got shape {matrix.shape}"
        )
    if matrix.shape[1] != hidden.shape[-1]:
        raise ValueError(
            f"input has {hidden.shape[-1]} features (shape {hidden.shape}) but linear_weight "
            f"has {matrix.shape[1]} (shape {matrix.shape}); they must match"
        )
    n_classes = matrix.shape[0]
    if n_classes == 0:
        raise ValueError("linear_weight has 0 rows: cross-entropy needs at least one class")
    dtype = compute_dtype(np.result_type(hidden.dtype, matrix.dtype))
    bias = None
    if linear_bias is not None:
        bias = _validate.float_array(linear_bias, "linear_bias")
        if bias.shape != (n_classes,):
            raise ValueError(
                f"linear_bias has shape {bias.shape} but linear_weight has shape "
                f"{matrix.shape}: the bias needs one entry per class, ({n_classes},)"
            )
        dtype = compute_dtype(np.result_type(dtype, bias.dtype))
        bias = np.ascontiguousarray(bias, dtype)
    terms = language_model_terms(z_loss, softcap) or (0.0, None)
    mode = _validate.reduction_mode(reduction)
    log_base = _validate.log_base(base)
    smoothing = _validate.real_in_range(label_smoothing, "label_smoothing", 0.0, 1.0)
    ignore = _validate.integer(ignore_index, "ignore_index")
    weights = _validate.class_weight(weight, n_classes)
    batched = hidden.ndim == 2
    rows = np.ascontiguousarray(hidden if batched else hidden[np.newaxis], dtype)
    n_rows = rows.shape[0]
    target_array = np.asarray(target)
    kind = _validate.target_kind(target_array)
    labels = probs = kept = None
    if kind == "labels":
        batch_shape = (n_rows,) if batched else ()
        if target_array.shape != batch_shape:
            raise ValueError(
                f"target has shape {target_array.shape} but input has shape {hidden.shape}: "
                f"integer targets need one class index per row, shape {batch_shape}"
            )
        _validate.labels_target(target_array, batch_shape, n_classes, ignore)
        labels = np.ascontiguousarray(target_array.reshape(n_rows), np.int64)
        counted = labels != ignore
        denominator = float(weights[labels[counted]].sum())
        if not counted.all():
            kept = np.flatnonzero(counted)
    else:
        expected = (n_rows, n_classes) if batched else (n_classes,)
        if target_array.shape != expected:
            raise ValueError(
                f"target has dtype {target_array.dtype} and shape {target_array.shape}: float "
                f"targets are class probabilities, one per class and row, shape {expected} "
                f"(input {hidden.shape}, linear_weight {matrix.shape}); for class indices "
                "pass target.astype(np.int64)"
            )
        probs = target_array.reshape(n_rows, n_classes)
        if probs.dtype.char not in "fd" or not probs.flags.c_contiguous:
            probs = np.ascontiguousarray(probs, compute_dtype(probs.dtype))
        denominator = float(n_rows)
    return LinearProblem(
        rows, np.ascontiguousarray(matrix, dtype), bias, labels, probs, weights, ignore,
        smoothing, mode, log_base, terms[0], terms[1], batched, kept, denominator,
    )  # fmt: skip


class _Gradients:
    """The three gradients, accumulated over the chunks (into the caller's ``out`` arrays)."""

    def __init__(self, problem: LinearProblem, plan: LinearPlan, out: tuple[Any, Any, Any]) -> None:
        given_input, given_weight, self.given_bias = out
        self.given_input = given_input
        if given_input is None:
            self.input = np.zeros_like(problem.input)
        else:
            self.input = given_input.reshape(problem.input.shape)
            self.input[...] = 0.0  # ignored rows keep a zero gradient
        self.linear_weight = (
            np.empty_like(problem.linear_weight) if given_weight is None else given_weight
        )
        self.bias = None if problem.bias is None else np.zeros(problem.bias.shape)
        self.block_rows = plan.weight_block
        self.started = False

    def add_chunk(
        self, grad: NDArray[Any], rows: NDArray[Any], where: slice | NDArray[np.intp], w: Any
    ) -> None:
        """Add the chunk's ``G`` (``grad``, rows ``where`` of the input, values ``rows``)."""
        if isinstance(where, slice):
            np.matmul(grad, w, out=self.input[where])
        else:
            self.input[where] = grad @ w
        if self.bias is not None:
            self.bias += grad.sum(axis=0, dtype=np.float64)
        if self.started:
            add_product(grad.T, rows, self.linear_weight, self.block_rows)
        else:  # the first chunk writes the weight gradient whole
            np.matmul(grad.T, rows, out=self.linear_weight)
            self.started = True

    def finish(self, problem: LinearProblem) -> tuple[NDArray[Any], NDArray[Any], Any]:
        if not self.started:
            self.linear_weight[...] = 0.0
        grad_input = self.input if problem.batched else self.input[0]
        if self.given_input is not None:
            grad_input = self.given_input
        grad_bias = None
        if self.bias is not None:
            grad_bias = self.bias.astype(problem.dtype)
            if self.given_bias is not None:
                self.given_bias[...] = grad_bias
                grad_bias = self.given_bias
        return grad_input, self.linear_weight, grad_bias


def _chunk_rows(problem: LinearProblem, rows_per_chunk: int) -> list[slice | NDArray[np.intp]]:
    """The rows of each chunk: slices of the input, or indices where rows are ignored.

    Ignored rows are dropped before any product, so a padded batch costs what its real
    rows cost.
    """
    if problem.kept is None:
        n_rows = problem.input.shape[0]
        return [
            slice(start, min(start + rows_per_chunk, n_rows))
            for start in range(0, n_rows, rows_per_chunk)
        ]
    chunks: list[slice | NDArray[np.intp]] = []
    for start in range(0, problem.kept.size, rows_per_chunk):
        indices = problem.kept[start : start + rows_per_chunk]
        if indices[-1] - indices[0] == indices.size - 1:  # consecutive rows: a view
            chunks.append(slice(int(indices[0]), int(indices[-1]) + 1))
        else:
            chunks.append(indices)
    return chunks


def _gradient_divisor(problem: LinearProblem) -> float:
    """What the gradient of the summed loss is divided by.

    ``ln(base)``, and the "mean"'s denominator of the whole batch (not the chunk's) unless
    that is 0.
    """
    mean = problem.reduction == "mean" and problem.denominator != 0.0
    return problem.log_base * (problem.denominator if mean else 1.0)


def _sweep_class_major(
    problem: LinearProblem,
    logits: NDArray[Any],
    where: slice | NDArray[np.intp],
    losses: NDArray[np.float64],
    with_grad: bool,
) -> None:
    """Losses of a class-major chunk ``(V, R)``; its gradient in place with ``with_grad``.

    The bias is added here, in the sweep's first pass.
    """
    assert problem.labels is not None
    dtype = logits.dtype
    cap = None if problem.softcap is None else dtype.type(problem.softcap)
    inverse = None if problem.softcap is None else dtype.type(1.0 / problem.softcap)
    smoothing = problem.smoothing
    class_major_labels(
        logits.size, logits, problem.bias, problem.labels[where], problem.weight,
        problem.weight if smoothing > 0.0 else None, problem.ignore_index, smoothing, cap,
        inverse, problem.z_loss, _gradient_divisor(problem), with_grad,
        class_major_tile(logits.shape[1]), losses,
    )  # fmt: skip


def _sweep(
    problem: LinearProblem,
    logits: NDArray[Any],
    where: slice | NDArray[np.intp],
    losses: NDArray[np.float64],
    with_grad: bool,
) -> None:
    """Losses of a row-major chunk ``(R, V)``; with ``with_grad`` its gradient in place.

    The gradient is that of the reduced loss: divided by ``ln(base)`` and, for "mean", by
    the denominator of the whole batch (not the chunk's).
    """
    divisor = problem.log_base * (
        problem.denominator if problem.reduction == "mean" and problem.denominator != 0.0 else 1.0
    )
    dtype = logits.dtype
    cap = None if problem.softcap is None else dtype.type(problem.softcap)
    inverse = None if problem.softcap is None else dtype.type(1.0 / problem.softcap)
    smoothing = problem.smoothing
    if problem.labels is not None:
        labels = problem.labels[where]
        if problem.terms:
            softcap_zloss_labels(
                logits.size, logits, labels, problem.weight,
                problem.weight if smoothing > 0.0 else None, problem.ignore_index, smoothing,
                cap, inverse, problem.z_loss, False, divisor, with_grad, losses, logits,
            )  # fmt: skip
        elif with_grad:
            room = per_class_room(problem.weight, smoothing, dtype)
            xent_labels.xent_labels_forward_backward(
                logits.size, logits, *plan_rows(logits), labels, problem.weight, room,
                per_class_room(problem.weight, smoothing, dtype), problem.ignore_index,
                smoothing, False, divisor, True, losses, logits,
            )  # fmt: skip
        else:
            xent_labels.xent_labels_forward(
                logits.size, logits, *plan_rows(logits), labels, problem.weight,
                per_class_room(problem.weight, smoothing, dtype), problem.ignore_index,
                smoothing, losses,
            )  # fmt: skip
        return
    assert problem.probs is not None
    probs = problem.probs[where]
    if problem.terms:
        softcap_zloss_probs(
            logits.size, logits, probs, problem.weight, smoothing, cap, inverse,
            problem.z_loss, 1.0 / divisor, with_grad, losses, logits,
        )  # fmt: skip
    elif with_grad:
        xent_probs.xent_probs_forward_backward(
            logits.size, logits, *plan_rows(logits), probs, problem.weight, smoothing,
            1.0 / divisor, True, losses, logits,
        )  # fmt: skip
    else:
        xent_probs.xent_probs_forward(
            logits.size, logits, *plan_rows(logits), probs, problem.weight, smoothing, False,
            losses,
        )  # fmt: skip


def _run(
    problem: LinearProblem,
    working_memory: int,
    with_grad: bool,
    out: tuple[Any, Any, Any] = (None, None, None),
) -> tuple[NDArray[np.float64], Any]:
    """Per-row losses (0 at ignored rows) and, with ``with_grad``, the three gradients."""
    n_rows, hidden = problem.input.shape
    n_classes = problem.linear_weight.shape[0]
    n_counted = n_rows if problem.kept is None else problem.kept.size
    plan = plan_linear(
        n_counted, hidden, n_classes, problem.dtype.itemsize, working_memory, with_grad,
        gathered=problem.kept is not None, accumulates=accumulates_in_place(problem.dtype),
        labels=problem.labels is not None, bias=problem.bias is not None,
    )  # fmt: skip
    losses = np.zeros(n_rows)
    gradients = _Gradients(problem, plan, out) if with_grad else None
    if plan.vocabulary_block is not None:
        from fastxent._api import linear_blocks

        if plan.class_major:
            linear_blocks.forward_in_blocks(problem, plan, losses)
        else:
            linear_blocks.run_in_blocks(problem, plan, losses, gradients)
        return losses, gradients
    buffer = np.empty(plan.rows_per_chunk * n_classes, problem.dtype)
    for where in _chunk_rows(problem, plan.rows_per_chunk):
        rows = problem.input[where]
        chunk_losses = np.empty(rows.shape[0])
        room = buffer[: rows.shape[0] * n_classes]
        if plan.class_major:
            logits = room.reshape(n_classes, rows.shape[0])
            np.matmul(problem.linear_weight, rows.T, out=logits)
            _sweep_class_major(problem, logits, where, chunk_losses, with_grad)
            grad = logits.T
        else:
            grad = logits = room.reshape(rows.shape[0], n_classes)
            np.matmul(rows, problem.linear_weight.T, out=logits)
            if problem.bias is not None:
                logits += problem.bias
            _sweep(problem, logits, where, chunk_losses, with_grad)
        losses[where] = chunk_losses
        if gradients is not None:
            if problem.row_scale is not None:
                grad *= problem.row_scale[where][:, np.newaxis].astype(grad.dtype)
            gradients.add_chunk(grad, rows, where, problem.linear_weight)
    return losses, gradients


def _loss(problem: LinearProblem, losses: NDArray[np.float64]) -> Loss:
    """The reduced loss, in base ``e ** log_base``; a zero "mean" denominator divides by 0."""
    if problem.reduction == "none":
        with np.errstate(over="ignore"):
            scaled = (losses / problem.log_base).astype(problem.dtype)
        return scaled if problem.batched else scaled[0]
    total = float(math.fsum(losses)) if losses.size < 64 else float(losses.sum())
    if problem.reduction == "mean":
        n_counted = losses.size if problem.kept is None else problem.kept.size
        if n_counted == 0:
            total = math.nan
        elif problem.denominator == 0.0:
            with np.errstate(divide="ignore", invalid="ignore"):
                total = float(np.float64(total) / np.float64(0.0))
        else:
            total /= problem.denominator
    return result_scalar(total / problem.log_base, problem.dtype)


def _out_arrays(out: Any, problem: LinearProblem, inputs: tuple[Any, ...]) -> tuple[Any, Any, Any]:
    """Check ``out``: where each gradient may be written (``None``: a new array)."""
    if out is None:
        return None, None, None
    if not isinstance(out, tuple) or len(out) != 3:
        raise TypeError(
            "out must be a tuple (grad_input, grad_linear_weight, grad_linear_bias) whose "
            f"entries are arrays or None, got {type(out).__name__}"
        )
    n_rows, hidden = problem.input.shape
    shapes = (
        (n_rows, hidden) if problem.batched else (hidden,),
        problem.linear_weight.shape,
        None if problem.bias is None else problem.bias.shape,
    )
    names = ("grad_input", "grad_linear_weight", "grad_linear_bias")
    arrays = [np.asarray(x) for x in inputs if x is not None]
    for position, (array, shape, name) in enumerate(zip(out, shapes, names, strict=True)):
        if array is None:
            continue
        if shape is None:
            raise ValueError(f"out[{position}] ({name}) must be None: there is no linear_bias")
        if not isinstance(array, np.ndarray):
            raise TypeError(f"out[{position}] ({name}) must be a NumPy array or None")
        if array.shape != shape or array.dtype != problem.dtype:
            raise ValueError(
                f"out[{position}] ({name}) must have shape {shape} and dtype {problem.dtype}, "
                f"got shape {array.shape} and dtype {array.dtype}"
            )
        if not (array.flags.c_contiguous and array.flags.writeable):
            raise ValueError(f"out[{position}] ({name}) must be C-contiguous and writable")
        others = arrays + [x for x in out if x is not None and x is not array]
        if any(np.may_share_memory(array, other) for other in others):
            raise ValueError(
                f"out[{position}] ({name}) overlaps an input or another out array: pass "
                "separate arrays"
            )
    return out[0], out[1], out[2]


def _row_scale(grad_output: Any, problem: LinearProblem) -> NDArray[np.float64] | None:
    """``grad_output`` as one factor per row (``None`` for the default 1)."""
    if grad_output is None:
        return None
    scale = np.asarray(grad_output)
    if scale.dtype.kind not in "fiu" or scale.dtype.kind == "b":
        raise TypeError(f"grad_output must be a real number or array, got dtype {scale.dtype}")
    n_rows = problem.input.shape[0]
    loss_shape = (n_rows,) if problem.reduction == "none" and problem.batched else ()
    if scale.shape not in ((), loss_shape):
        raise ValueError(
            f"grad_output has shape {scale.shape} but the loss has shape {loss_shape}: "
            "pass one value per loss element, or a scalar"
        )
    return np.broadcast_to(scale.astype(np.float64), (n_rows,)).copy()


def _working_memory(value: Any) -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"working_memory must be an int (bytes), got {type(value).__name__}")
    if value < 2**16:
        raise ValueError(f"working_memory must be at least 65536 bytes, got {value}")
    return int(value)


def linear_cross_entropy(
    input: ArrayLike,
    linear_weight: ArrayLike,
    target: ArrayLike,
    *,
    linear_bias: ArrayLike | None = None,
    weight: ArrayLike | None = None,
    ignore_index: int = -100,
    reduction: str = "mean",
    label_smoothing: float = 0.0,
    z_loss: float = 0.0,
    softcap: float | None = None,
    base: float | None = None,
    working_memory: int = WORKING_MEMORY,
) -> Loss:
    r"""Cross-entropy of the logits ``input @ linear_weight.T + linear_bias``, never stored.

    .. math::

        z_i = W h_i + b, \qquad \ell = \mathrm{cross\_entropy}(z, y)

    for hidden states :math:`h` (N x H) and a linear layer :math:`W` (V x H), as
    PyTorch's ``torch.nn.functional.linear_cross_entropy`` (2.13) computes them, with the
    options of :func:`cross_entropy`. The logits are computed a chunk of rows at a time
    into one reused buffer (BLAS) and reduced by a fused sweep while in cache; at most
    ``working_memory`` bytes are used beyond the inputs and outputs. Ignored rows are
    dropped before any product.

    Parameters
    ----------
    input : array_like of float, shape (N, H) or (H,)
        Hidden states, one row per sample (float16 is computed in float32).
    linear_weight : array_like of float, shape (V, H)
        The output layer: one row per class.
    target : array_like
        Integer class indices, shape (N,) (``()`` for a single sample), or float class
        probabilities, shape (N, V) (read chunk by chunk, like the logits).
    linear_bias : array_like of float, shape (V,), optional
        Added to every row of logits.
    weight, ignore_index, reduction, label_smoothing, z_loss, softcap, base
        As for :func:`cross_entropy` (the soft-cap applies to the logits ``z``).
    working_memory : int, default 64 MiB
        Bound in bytes on the memory used beyond the inputs and outputs: the logits
        buffer and the temporaries. The result does not depend on it beyond rounding.

    Returns
    -------
    numpy.floating or numpy.ndarray
        As :func:`cross_entropy` returns: a scalar, or per-row losses (0 for ignored rows)
        for ``reduction="none"``.

    Examples
    --------
    >>> import numpy as np, fastxent
    >>> h = np.array([[1.0, 0.0], [0.0, 2.0]])
    >>> W = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    >>> loss = fastxent.linear_cross_entropy(h, W, np.array([2, 1]))
    >>> round(float(loss), 4)
    0.8103
    """
    problem = _prepare(
        input, linear_weight, target, linear_bias, weight, ignore_index, reduction,
        label_smoothing, z_loss, softcap, base,
    )  # fmt: skip
    losses, _ = _run(problem, _working_memory(working_memory), with_grad=False)
    return _loss(problem, losses)


def linear_cross_entropy_with_grad(
    input: ArrayLike,
    linear_weight: ArrayLike,
    target: ArrayLike,
    *,
    linear_bias: ArrayLike | None = None,
    weight: ArrayLike | None = None,
    ignore_index: int = -100,
    reduction: str = "mean",
    label_smoothing: float = 0.0,
    z_loss: float = 0.0,
    softcap: float | None = None,
    base: float | None = None,
    working_memory: int = WORKING_MEMORY,
    out: tuple[Any, Any, Any] | None = None,
    grad_output: ArrayLike | None = None,
) -> tuple[Loss, NDArray[Any], NDArray[Any], NDArray[Any] | None]:
    r""":func:`linear_cross_entropy` and its gradients, the logits never stored.

    With :math:`G = \partial \ell / \partial z` (N x V, one chunk at a time, as
    :func:`cross_entropy_with_grad` computes it):

    .. math::

        \frac{\partial \ell}{\partial h} = G W, \qquad
        \frac{\partial \ell}{\partial W} = G^\top h, \qquad
        \frac{\partial \ell}{\partial b} = \textstyle\sum_i G_i

    Parameters
    ----------
    input, linear_weight, target, linear_bias, weight, ignore_index, reduction
        As for :func:`linear_cross_entropy`.
    label_smoothing, z_loss, softcap, base, working_memory
        As for :func:`linear_cross_entropy`.
    out : tuple of three arrays or None, optional
        ``(grad_input, grad_linear_weight, grad_linear_bias)`` to write the gradients
        into (an entry may be ``None``): C-contiguous, writable, of the gradient's shape
        and the result dtype, overlapping no input. A training loop that reuses them saves
        the operating system's zeroing of fresh memory on every step, which on a large
        ``linear_weight`` costs as much as a quarter of a product.
    grad_output : float or array_like, optional
        The gradient :math:`g` of what follows with respect to the loss, shaped like the
        loss (one value per row for ``reduction="none"``) or a scalar: the gradients
        returned are those of :math:`\sum_i g_i \ell_i` (a vector-Jacobian product, as an
        autograd backward needs; the loss itself is unchanged). Default 1.

    Returns
    -------
    loss : numpy.floating or numpy.ndarray
        As :func:`linear_cross_entropy` returns.
    grad_input : numpy.ndarray
        Shaped like ``input``; zero at ignored rows.
    grad_linear_weight : numpy.ndarray
        Shaped like ``linear_weight``.
    grad_linear_bias : numpy.ndarray or None
        Shaped like ``linear_bias``; ``None`` without a bias.

    Examples
    --------
    >>> import numpy as np, fastxent
    >>> h = np.array([[1.0, 0.0]])
    >>> W = np.array([[1.0, 0.0], [0.0, 1.0]])
    >>> loss, grad_h, grad_W, grad_b = fastxent.linear_cross_entropy_with_grad(h, W, np.array([0]))
    >>> grad_h.round(4)
    array([[-0.2689,  0.2689]])
    >>> grad_W.round(4)
    array([[-0.2689,  0.    ],
           [ 0.2689,  0.    ]])
    """
    problem = _prepare(
        input, linear_weight, target, linear_bias, weight, ignore_index, reduction,
        label_smoothing, z_loss, softcap, base,
    )  # fmt: skip
    targets = _out_arrays(out, problem, (input, linear_weight, target, linear_bias, weight))
    problem.row_scale = _row_scale(grad_output, problem)
    losses, gradients = _run(problem, _working_memory(working_memory), True, targets)
    loss = _loss(problem, losses)
    grad_input, grad_weight, grad_bias = gradients.finish(problem)
    if problem.reduction == "mean" and problem.denominator == 0.0:
        counted = losses.size if problem.kept is None else problem.kept.size
        if counted:  # weights summing to 0: the gradient of the sum over 0, as the loss
            zero = problem.dtype.type(0.0)
            rows = slice(None) if problem.kept is None else problem.kept
            with np.errstate(divide="ignore", invalid="ignore"):
                grad_input.reshape(-1, grad_input.shape[-1])[rows] /= zero
                grad_weight /= zero
                if grad_bias is not None:
                    grad_bias /= zero
    return loss, grad_input, grad_weight, grad_bias
