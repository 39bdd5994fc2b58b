"""Host-side planning: how the kernels take an input. Wrappers ask here; kernels obey.

Every decision is made from sizes before a kernel runs and passed to it as arguments, so
that Numba compiles each case apart (it prunes branches on ``None`` argument types):

- :func:`plan_rows`: whether rows come from memory, taken in chains with each row's
  exp-sum finding the next row's max (``chained``), and whether those chains prefetch
  (``streaming``).
- :func:`plan_linear`: the chunks of ``linear_cross_entropy`` within its working memory.
- :func:`runs_serially`: whether an input is too small to be worth waking threads for,
  or the threading layer cannot run a parallel kernel safely right now.

The thresholds are ``fastxent._tuning.THRESHOLDS``.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from numpy.typing import NDArray

from fastxent._threading import launched_layer, parallel_threads, prepare
from fastxent._tuning import (
    LINEAR_CLASS_MAJOR_ROWS,
    LINEAR_FORWARD_ROWS,
    LINEAR_MIN_ROWS,
    LINEAR_WEIGHT_BLOCK_SHARE,
    THRESHOLDS,
    WHOLE_ROW,
)


class RowPlan(NamedTuple):
    """How the row kernels take a ``(R, C)`` input (the kernels' first two arguments)."""

    #: The rows themselves when taken in chains (from memory), else ``None``.
    chained: NDArray[Any] | None
    #: Whether the chains prefetch the next row (long rows of an input beyond the cache).
    streaming: bool


#: The plan of every input whose rows are not chained.
_IN_CACHE = RowPlan(None, False)


def rows_to_chain(rows: NDArray[Any]) -> NDArray[Any] | None:
    """``rows`` if the kernels take them in chains, else ``None``.

    Rows of fewer than ``chain_min_classes`` classes go by tiles, never chained; rows of
    up to ``WHOLE_ROW`` classes in an input that stays in cache are summed whole.
    """
    n_classes = rows.shape[1]
    if n_classes < THRESHOLDS.chain_min_classes or (
        n_classes <= WHOLE_ROW and rows.nbytes <= THRESHOLDS.cache_resident_bytes
    ):
        return None
    return rows


def streams_from_memory(rows: NDArray[Any]) -> bool:
    """Whether ``rows`` cannot all stay in the caches (larger than ``streaming_min_bytes``)."""
    return rows.nbytes > THRESHOLDS.streaming_min_bytes


def plan_rows(rows: NDArray[Any]) -> RowPlan:
    """The :class:`RowPlan` of ``rows``.

    Chains for rows from memory; prefetching for long chained rows of an input that
    streams from memory.
    """
    chained = rows_to_chain(rows)
    if chained is None:
        return _IN_CACHE  # (built once: a small call would notice building it each time)
    long_rows = rows.shape[1] >= THRESHOLDS.prefetch_min_classes
    return RowPlan(chained, long_rows and streams_from_memory(rows))


def parallel_min_elements(layer: str | None) -> int:
    """Smallest input (in elements) that runs the parallel kernels under ``layer``."""
    by_layer = THRESHOLDS.parallel_min_elements_by_layer
    return by_layer.get(layer or "", THRESHOLDS.parallel_min_elements)


def _layer_threshold() -> int:
    """:func:`parallel_min_elements` of this process's layer (chosen now if not yet)."""
    layer = launched_layer()
    if layer is None:
        prepare()
        layer = launched_layer()
    return parallel_min_elements(layer)


def runs_serially(n_elements: int) -> bool:
    """Whether an input of ``n_elements`` takes the serial compilation of a row kernel."""
    # The size tests first: asking Numba for the thread count costs more than they do.
    return (
        n_elements < THRESHOLDS.parallel_min_elements
        or n_elements < _layer_threshold()
        or parallel_threads() < 2
    )


class LinearPlan(NamedTuple):
    """How ``linear_cross_entropy`` splits its logits ``(N, V)`` within a memory budget."""

    #: Rows of logits computed per product.
    rows_per_chunk: int
    #: Classes per product when the vocabulary is split, else ``None``: for a class-major
    #: forward (many rows against each block), or when even ``LINEAR_MIN_ROWS`` whole rows
    #: exceed the budget (the logits are then computed twice, for the row statistics and
    #: for the gradient).
    vocabulary_block: int | None
    #: Rows of the temporary through which the weight gradient is accumulated (0 without
    #: a gradient).
    weight_block: int
    #: Whether each chunk's logits are stored class-major, ``(V, R)`` (integer targets).
    class_major: bool = False


def plan_linear(
    n_rows: int,
    hidden: int,
    n_classes: int,
    itemsize: int,
    budget: int,
    with_grad: bool,
    gathered: bool = True,
    accumulates: bool = False,
    labels: bool = True,
    bias: bool = True,
) -> LinearPlan:
    """Chunks whose buffers fit in ``budget`` bytes, as few and as even as that allows.

    Per row of a chunk: its logits, its loss, and where ``gathered`` (ignored rows
    dropped in between) a copy of its input row and of that row's gradient. With a
    gradient, ``16 V`` bytes go to the ``bias`` gradient if any, and unless BLAS ``accumulates``
    products in place, a share of the budget to the weight gradient's accumulation block.
    Chunks of equal size: a short last chunk would make a slow product. Chunks of
    ``labels`` (integer targets) of fewer than ``LINEAR_CLASS_MAJOR_ROWS`` rows are
    class-major.
    """
    weight_block = 0
    fixed = 0
    if with_grad:
        share = int(budget * LINEAR_WEIGHT_BLOCK_SHARE) // (hidden * itemsize)
        weight_block = max(1, min(n_classes, share))
        fixed = (16 * n_classes if bias else 0) + (
            0 if accumulates else weight_block * hidden * itemsize
        )
    wanted = max(1, min(n_rows, LINEAR_MIN_ROWS))
    per_row = n_classes * itemsize + 8 + (2 * hidden * itemsize if gathered else 0)
    rows = (budget - fixed) // per_row
    if labels and not with_grad and rows < min(n_rows, LINEAR_CLASS_MAJOR_ROWS):
        forward = _forward_in_blocks(n_rows, hidden, n_classes, itemsize, budget, gathered)
        if forward is not None:
            return forward
    if rows >= wanted:
        n_chunks = -(-max(n_rows, 1) // rows)
        rows = -(-max(n_rows, 1) // n_chunks)
        return LinearPlan(rows, None, weight_block, labels and rows < LINEAR_CLASS_MAJOR_ROWS)
    # The vocabulary in blocks: the logits of each block and a temporary in their dtype,
    # two float64 temporaries, and the block's share of the weight gradient.
    per_class = wanted * (2 * itemsize + 16) + (hidden * itemsize if with_grad else 0) + 16
    room = budget - wanted * (2 * hidden * itemsize + 64)
    block = max(1, min(n_classes, room // per_class))
    return LinearPlan(wanted, block, 0)


def _forward_in_blocks(
    n_rows: int, hidden: int, n_classes: int, itemsize: int, budget: int, gathered: bool
) -> LinearPlan | None:
    """A forward of up to ``LINEAR_FORWARD_ROWS`` rows per chunk against blocks of classes.

    ``None`` if the budget cannot hold a useful block (256 classes) for even one row.
    """
    per_row = 40 + (2 * hidden * itemsize if gathered else 0)  # its statistics, its copy
    smallest_block = min(n_classes, 256) * itemsize
    rows = min(n_rows, LINEAR_FORWARD_ROWS, budget // (per_row + smallest_block))
    if rows < 1:
        return None
    rows = -(-n_rows // -(-n_rows // rows))  # chunks of equal size
    block = max(1, min(n_classes, (budget - rows * per_row) // (rows * itemsize)))
    block = -(-n_classes // -(-n_classes // block))  # blocks of equal size
    return LinearPlan(rows, block, 0, True)


def class_major_tile(n_positions: int) -> int:
    """Positions per task of the class-major sweep: one share per thread, whole vectors."""
    share = -(-n_positions // max(1, parallel_threads()))
    return max(16, -(-share // 16) * 16)
