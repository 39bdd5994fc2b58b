"""Chains: consecutive rows from memory that one thread takes in turn.

Each row's exp-sum takes the next row's max in the same loop (``row_exp_sum``), so only a
chain's first row has a max pass of its own; which inputs are chained is the planner's
decision (``fastxent._plan``).
"""

from __future__ import annotations

from fastxent._config import row_helper
from fastxent._kernels.reductions import row_max
from fastxent._kernels.tiles import tile_span
from fastxent._simd import inline_into_callers, prefetch
from fastxent._tuning import CACHE_LINE_BYTES, CHAIN_ROWS


@row_helper
def row_chains(n_rows, rows):
    """``(chain_rows, n_chains)``: how the row kernels split ``n_rows`` among threads.

    ``rows`` is :func:`rows_to_chain` of the input. Rows from memory go in chains of
    up to ``CHAIN_ROWS`` consecutive rows (at least 16 chains, for the threads to share):
    each row's exp-sum takes the next row's max (:func:`row_exp_sum`), so the next row
    streams in while the current one computes, and only a chain's first row has a max
    pass of its own. Rows summed whole (``rows`` is ``None``) go one per chain: rows
    already in cache have no memory wait to hide, and chaining them only slows them (see
    ``docs/performance.md``, "Design decisions").
    """
    inline_into_callers()
    if rows is None:
        return 1, n_rows
    chain_rows = max(1, min(CHAIN_ROWS, n_rows // 16))
    return chain_rows, (n_rows + chain_rows - 1) // chain_rows


@row_helper
def chain_span(rows, chain, chain_rows):
    """``(start, stop, top)``: the rows of chain number ``chain`` and its first row's max."""
    inline_into_callers()
    start, stop = tile_span(chain, chain_rows, rows.shape[0])
    return start, stop, row_max(rows[start])


@row_helper
def following_row(rows, i, stop):
    """The row after row ``i`` in its chain ending at ``stop`` (the chain's last: itself).

    ``None`` when ``rows`` is ``None`` (:func:`row_chains`: one row per chain).
    """
    inline_into_callers()
    if rows is None:
        return None
    return rows[min(i + 1, stop - 1)]


@row_helper
def row_prefetch(row):
    """Ask for every cache line of ``row`` (into L2) without waiting for them.

    For a row that a kernel skips among rows it reads from memory one after another (an
    ignored label): a skipped row otherwise breaks the hardware prefetcher's stream, and
    the rows after it wait for memory. Asking for it keeps the stream unbroken.
    """
    inline_into_callers()
    line = CACHE_LINE_BYTES // row.itemsize
    for c in range(0, row.size, line):
        prefetch(row, c)
