"""fastxent's functions over Dask arrays, row chunk by row chunk.

Each task calls the in-memory function on one chunk of rows with its own thread count
set to one (``numba.set_num_threads`` is per thread): the worker's threads are the
parallelism, and a worker with ``k`` threads runs ``k`` tasks on ``k`` cores rather than
``k`` times fastxent's threads. The class axis must be whole in every chunk: a chunked
class axis is rechunked (one copy of each row block; a two-level logsumexp would save it
but is not worth its code for rows that fit a chunk).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import contextmanager
from typing import Any

import dask.array as da
import numpy as np
from dask.delayed import delayed
from numpy.typing import ArrayLike

import fastxent
from fastxent._api.evaluation import Evaluation
from fastxent._api.linear import WORKING_MEMORY
from fastxent._validate import reduction_mode
from fastxent.dask._files import file_reader


@contextmanager
def _one_thread() -> Any:
    """Run the calling thread's fastxent kernels on one thread, for the duration of a task."""
    import numba

    previous = numba.get_num_threads()
    numba.set_num_threads(1)
    try:
        yield
    finally:
        numba.set_num_threads(previous)


def _whole(block: Any) -> Any:
    """A block handed over as nested one-element lists (an axis of one chunk) as itself."""
    while isinstance(block, list):
        if len(block) != 1:
            raise ValueError(f"expected one chunk along a contracted axis, got {len(block)}")
        block = block[0]
    return block


def _in_task(function: Callable[..., Any]) -> Callable[..., Any]:
    """``function`` as a task: on one fastxent thread, its array blocks unwrapped.

    The blockwise calls pass ``concatenate=False``: with one chunk along the classes (and
    the features), concatenating would only copy every block (a chunk of logits, and the
    whole output layer for every task of ``linear_cross_entropy``). They also give Dask
    the result's ``meta``, which Dask would otherwise get by calling the task on empty
    arrays.
    """

    def task(*args: Any, **kwargs: Any) -> Any:
        with _one_thread():
            return function(*(_whole(arg) for arg in args), **kwargs)

    task.__name__ = f"fastxent-{function.__name__}"
    return task


def _rows_and_classes(logits: Any, axis: int) -> da.Array:
    """``logits`` as a Dask array, the class axis last and whole in each chunk."""
    array = logits if isinstance(logits, da.Array) else da.asarray(logits)
    if array.ndim == 0:
        raise ValueError("logits must have a class axis; got a 0-d array")
    class_axis = axis % array.ndim if -array.ndim <= axis < array.ndim else None
    if class_axis is None:
        raise ValueError(f"axis {axis} is out of range for logits of shape {array.shape}")
    if class_axis != array.ndim - 1:
        array = da.moveaxis(array, class_axis, -1)
    if len(array.chunks[-1]) > 1:
        array = array.rechunk({array.ndim - 1: -1})
    return array


def _aligned_target(target: ArrayLike, logits: da.Array, probabilities: bool) -> da.Array:
    """``target`` chunked like the logits' rows (and classes, for probabilities)."""
    chunks = logits.chunks if probabilities else logits.chunks[:-1]
    array = target if isinstance(target, da.Array) else da.asarray(np.asarray(target))
    expected = logits.shape if probabilities else logits.shape[:-1]
    if array.shape != expected:
        raise ValueError(
            f"target has shape {array.shape} but logits (classes last) have shape "
            f"{logits.shape}: the target needs shape {expected}"
        )
    return array.rechunk(chunks)


def _is_probabilities(target: ArrayLike) -> bool:
    dtype = target.dtype if hasattr(target, "dtype") else np.asarray(target).dtype
    return np.dtype(dtype).kind == "f"


def cross_entropy(
    logits: Any,
    target: Any,
    *,
    axis: int = -1,
    weight: ArrayLike | None = None,
    ignore_index: int = -100,
    reduction: str = "mean",
    label_smoothing: float = 0.0,
    base: float | None = None,
    z_loss: float = 0.0,
    softcap: float | None = None,
) -> da.Array:
    r""":func:`fastxent.cross_entropy` of a Dask array, lazily.

    ``"none"`` gives the per-row losses chunked like the rows; ``"mean"`` and ``"sum"`` a
    0-d Dask array. A mean is the sum of every chunk's weighted losses over the sum of
    every chunk's counted weights (never a mean of chunk means):

    .. math:: \bar\ell = \frac{\sum_{\text{chunks}} \sum_i w_{y_i} \ell_i}
                              {\sum_{\text{chunks}} \sum_i w_{y_i}}

    A chunk whose rows are all ignored adds 0 to both. ``target`` may be a NumPy array.

    Examples
    --------
    >>> import dask.array as da, numpy as np
    >>> from fastxent import dask as fxd
    >>> logits = da.from_array(np.log(np.array([[0.5, 0.5], [0.25, 0.75], [0.9, 0.1]])), chunks=2)
    >>> loss = fxd.cross_entropy(logits, np.array([0, 1, -100]))
    >>> round(float(loss.compute()), 4)
    0.4904
    """
    reduction = reduction_mode(reduction)
    array = _rows_and_classes(logits, axis)
    probabilities = _is_probabilities(target)
    targets = _aligned_target(target, array, probabilities)
    options = {
        "weight": None if weight is None else np.asarray(weight, dtype=np.float64),
        "ignore_index": ignore_index, "label_smoothing": label_smoothing, "z_loss": z_loss,
        "softcap": softcap,
    }  # fmt: skip
    result_dtype = np.float64 if array.dtype == np.float64 else np.float32
    # Index letters: one per row axis, "z" the classes (one chunk), "w" the two sums.
    rows = "abcdefghijklmnopqrstuvwxy"[: array.ndim - 1]
    target_index = rows + "z" if probabilities else rows
    if reduction == "none":
        return da.blockwise(
            _in_task(_chunk_losses),
            rows,
            array,
            rows + "z",
            targets,
            target_index,
            dtype=result_dtype,
            meta=np.empty((0,) * len(rows), result_dtype),
            concatenate=False,
            probabilities=probabilities,
            base=base,
            options=options,
        )
    parts = da.blockwise(
        _in_task(_chunk_sums),
        rows + "w",
        array,
        rows + "z",
        targets,
        target_index,
        dtype=np.float64,
        meta=np.empty((0,) * (len(rows) + 1)),
        concatenate=False,
        new_axes={"w": 2},
        adjust_chunks={axis_name: 1 for axis_name in rows},
        probabilities=probabilities,
        options=options,
    )
    return _reduced_loss(parts, reduction, base, result_dtype)


def _reduced_loss(parts: da.Array, reduction: str, base: float | None, dtype: Any) -> da.Array:
    """The 0-d loss from every chunk's ``[weighted loss sum, counted weight]`` (last axis)."""
    totals = parts.sum(axis=tuple(range(parts.ndim - 1))).rechunk(-1)
    log_base = 1.0 if base is None else float(np.log(base))
    return da.map_blocks(
        _reduced, totals, mean=reduction == "mean", log_base=log_base, dtype=dtype,
        drop_axis=0, chunks=(), result_dtype=dtype,
    )  # fmt: skip


def _reduced(totals: np.ndarray, *, mean: bool, log_base: float, result_dtype: Any) -> Any:
    """The loss from ``[sum, counted weight]``; a mean over no weight is IEEE's ``x / 0``."""
    with np.errstate(divide="ignore", invalid="ignore"):
        total = totals[0] / totals[1] if mean else totals[0]
        return np.asarray(total / log_base, dtype=result_dtype)


def _chunk_losses(
    block: np.ndarray, target: np.ndarray, *, probabilities: bool, base: float | None,
    options: dict[str, Any],
) -> np.ndarray:  # fmt: skip
    if probabilities:
        options = {k: v for k, v in options.items() if k != "ignore_index"}
    return np.asarray(fastxent.cross_entropy(block, target, reduction="none", base=base, **options))


def _chunk_sums(
    block: np.ndarray, target: np.ndarray, *, probabilities: bool, options: dict[str, Any]
) -> np.ndarray:  # fmt: skip
    """``[sum of weighted losses, sum of counted weights]`` of a chunk, in nats."""
    losses = fastxent.cross_entropy(block, target, reduction="none", **options)
    total = float(np.sum(losses, dtype=np.float64))
    out = np.empty((1,) * (block.ndim - 1) + (2,))
    out.reshape(-1)[:] = (total, _counted_weight(target, probabilities, options))
    return out


def _counted_weight(target: np.ndarray, probabilities: bool, options: dict[str, Any]) -> float:
    """A chunk's share of a mean's denominator: its counted rows' weights.

    For probability targets, its rows.
    """
    if probabilities:
        return float(np.prod(target.shape[:-1]))
    labels = np.asarray(target).reshape(-1)
    kept = labels[labels != options["ignore_index"]]
    weight = options["weight"]
    return float(kept.size if weight is None else weight[kept].sum())


def linear_cross_entropy(
    input: Any,
    linear_weight: ArrayLike,
    target: Any,
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
) -> da.Array:
    """:func:`fastxent.linear_cross_entropy` of hidden states in a Dask array, lazily.

    ``input`` (N, H) chunked by rows (its feature axis is made one chunk);
    ``linear_weight`` (V, H) and ``linear_bias`` are NumPy arrays that enter the graph
    once, as one key each: a worker fetches them once and every task on it reads the same
    copy. The logits of a chunk exist nowhere, not even in its task (the in-memory
    function's ``working_memory`` bounds each task). Reductions as :func:`cross_entropy`.

    Examples
    --------
    >>> import dask.array as da, numpy as np
    >>> from fastxent import dask as fxd
    >>> h = da.from_array(np.array([[1.0, 0.0], [0.0, 2.0]]), chunks=1)
    >>> W = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    >>> round(float(fxd.linear_cross_entropy(h, W, np.array([2, 1])).compute()), 4)
    0.8103
    """
    reduction = reduction_mode(reduction)
    hidden = input if isinstance(input, da.Array) else da.asarray(input)
    if hidden.ndim != 2:
        raise ValueError(f"input must be (N, H) hidden states, got shape {hidden.shape}")
    hidden = hidden.rechunk({1: -1})
    matrix = np.asarray(linear_weight)
    if matrix.ndim != 2 or matrix.shape[1] != hidden.shape[1]:
        raise ValueError(
            f"linear_weight must be (V, H) with H = {hidden.shape[1]} (input {hidden.shape}), "
            f"got shape {matrix.shape}"
        )
    # One chunk each: a single key in the graph, shipped once to each worker.
    weight_key = da.from_array(matrix, chunks=matrix.shape, name=False)
    arrays: list[Any] = [hidden, "ih", weight_key, "vh"]
    if linear_bias is not None:
        bias = np.asarray(linear_bias)
        arrays += [da.from_array(bias, chunks=bias.shape, name=False), "v"]
    probabilities = _is_probabilities(target)
    labels = target if isinstance(target, da.Array) else da.asarray(np.asarray(target))
    labels = labels.rechunk((hidden.chunks[0], -1) if probabilities else (hidden.chunks[0],))
    arrays += [labels, "iv" if probabilities else "i"]
    options = {
        "weight": None if weight is None else np.asarray(weight, dtype=np.float64),
        "ignore_index": ignore_index, "label_smoothing": label_smoothing, "z_loss": z_loss,
        "softcap": softcap, "working_memory": working_memory,
    }  # fmt: skip
    result_dtype = (
        np.float64 if np.result_type(hidden.dtype, matrix.dtype) == np.float64 else np.float32
    )
    task = _in_task(_linear_chunk)
    with_bias = linear_bias is not None
    if reduction == "none":
        return da.blockwise(
            task,
            "i",
            *arrays,
            dtype=result_dtype,
            meta=np.empty(0, result_dtype),
            concatenate=False,
            with_bias=with_bias,
            probabilities=probabilities,
            sums=False,
            base=base,
            options=options,
        )
    parts = da.blockwise(
        task,
        "iw",
        *arrays,
        dtype=np.float64,
        meta=np.empty((0, 0)),
        concatenate=False,
        new_axes={"w": 2},
        adjust_chunks={"i": 1},
        with_bias=with_bias,
        probabilities=probabilities,
        sums=True,
        base=None,
        options=options,
    )
    return _reduced_loss(parts, reduction, base, result_dtype)


def _linear_chunk(
    hidden: np.ndarray, matrix: np.ndarray, *rest: np.ndarray, with_bias: bool,
    probabilities: bool, sums: bool, base: float | None, options: dict[str, Any],
) -> np.ndarray:  # fmt: skip
    """A chunk's per-row losses, or its ``[[sum of weighted losses, counted weight]]``."""
    bias, target = (rest[0], rest[1]) if with_bias else (None, rest[0])
    losses = fastxent.linear_cross_entropy(
        hidden, matrix, target, linear_bias=bias, reduction="none", base=base, **options
    )
    if not sums:
        return np.asarray(losses)
    total = float(np.sum(losses, dtype=np.float64))
    return np.array([[total, _counted_weight(target, probabilities, options)]])


def _along_rows(function: Callable[..., Any], logits: Any, axis: int, **kwargs: Any) -> da.Array:
    array = _rows_and_classes(logits, axis)
    result = da.map_blocks(
        _in_task(function), array, dtype=np.float64 if array.dtype == np.float64 else np.float32,
        **kwargs,
    )  # fmt: skip
    return result


def logsumexp(x: Any, *, axis: int = -1) -> da.Array:
    """:func:`fastxent.logsumexp` over one axis of a Dask array (chunked like the others).

    Examples
    --------
    >>> import dask.array as da, numpy as np
    >>> from fastxent import dask as fxd
    >>> fxd.logsumexp(da.zeros((4, 3), chunks=2, dtype=np.float32)).compute().round(4)
    array([1.0986, 1.0986, 1.0986, 1.0986], dtype=float32)
    """
    array = _rows_and_classes(x, axis)
    return da.map_blocks(
        _in_task(lambda block: fastxent.logsumexp(block, axis=-1)), array,
        dtype=np.float64 if array.dtype == np.float64 else np.float32,
        drop_axis=array.ndim - 1, chunks=array.chunks[:-1],
    )  # fmt: skip


def softmax(x: Any, *, axis: int = -1) -> da.Array:
    """:func:`fastxent.softmax` over one axis of a Dask array, chunked like ``x``'s rows.

    The class axis comes back where it was, as one chunk.
    """
    array = _along_rows(lambda block: fastxent.softmax(block, axis=-1), x, axis)
    return _class_axis_back(array, x, axis)


def log_softmax(x: Any, *, axis: int = -1) -> da.Array:
    """:func:`fastxent.log_softmax` over one axis of a Dask array, chunked like ``x``'s rows."""
    array = _along_rows(lambda block: fastxent.log_softmax(block, axis=-1), x, axis)
    return _class_axis_back(array, x, axis)


def _class_axis_back(result: da.Array, x: Any, axis: int) -> da.Array:
    ndim = result.ndim
    class_axis = axis % ndim
    return result if class_axis == ndim - 1 else da.moveaxis(result, -1, class_axis)


def evaluate(
    logits: Any,
    target: Any,
    *,
    axis: int = -1,
    ignore_index: int = -100,
    weight: ArrayLike | None = None,
    top_k: Sequence[int] | int = (1, 5),
    bins: int = 15,
    compute: bool = True,
) -> Any:
    """:func:`fastxent.evaluate` of a Dask array: one ``Evaluation`` per chunk of rows, summed.

    Returns the :class:`~fastxent.Evaluation` (``compute=True``), or a ``Delayed`` of it.

    Examples
    --------
    >>> import dask.array as da, numpy as np
    >>> from fastxent import dask as fxd
    >>> logits = da.from_array(np.eye(4) * 5.0, chunks=3)
    >>> fxd.evaluate(logits, np.array([0, 1, 2, 0]), top_k=1).accuracy
    {1: 0.75}
    """
    parts = evaluation_parts(
        logits, target, axis=axis, ignore_index=ignore_index, weight=weight, top_k=top_k,
        bins=bins,
    )  # fmt: skip
    total = delayed(Evaluation.combine, pure=True)(parts)
    return total.compute() if compute else total


def evaluation_parts(logits: Any, target: Any, *, axis: int, **options: Any) -> list[Any]:
    """One ``Delayed`` per chunk of rows, in row order, of its :class:`~fastxent.Evaluation`.

    Logits and labels straight from :func:`~fastxent.dask.from_file` are read by the task
    that evaluates them, one task per chunk; other arrays take a task per block of each
    and one to evaluate them (Dask does not fuse a task of two inputs with the tasks that
    read them: three tasks per chunk, each a round trip to the scheduler).
    """
    if options.get("weight") is not None:
        options["weight"] = np.asarray(options["weight"], dtype=np.float64)
    from_files = _parts_from_files(logits, target, axis, options)
    if from_files is not None:
        return from_files
    array = _rows_and_classes(logits, axis)
    targets = _aligned_target(target, array, probabilities=False)
    task = delayed(_in_task(fastxent.evaluate), pure=True)
    return [
        task(block, labels, **options)
        for block, labels in zip(
            array.to_delayed().reshape(-1), targets.to_delayed().reshape(-1), strict=True
        )
    ]


def _parts_from_files(logits: Any, target: Any, axis: int, options: Any) -> list[Any] | None:
    """One task per chunk of rows reading both files, or ``None`` if they are not files."""
    logits_file, target_file = file_reader(logits), file_reader(target)
    if logits_file is None or target_file is None or logits.ndim < 2:
        return None
    if axis % logits.ndim != logits.ndim - 1 or target.shape != logits.shape[:-1]:
        return None
    task = delayed(_in_task(_rows_evaluation), pure=True)
    bounds = np.cumsum((0, *logits.chunks[0])).tolist()
    return [
        task(logits_file, target_file, start, stop, options=options)
        for start, stop in zip(bounds[:-1], bounds[1:], strict=True)
    ]


def _rows_evaluation(
    logits_file: Any, target_file: Any, start: int, stop: int, *, options: Any
) -> Evaluation:
    return fastxent.evaluate(logits_file[start:stop], target_file[start:stop], **options)
