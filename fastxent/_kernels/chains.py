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
    each row's exp-sum takes the next row's max (:func:`row_exp_sum_depth_and_max`), and
    only a chain's first row has a max pass of its own. Rows summed whole (``rows`` is
    ``None``) go one per chain. Chains of 64 rows ran 0.91-0.98x the time of chains of 16
    at 1024 x 128256, 4096 x 32000 and 8192 x 1000; chains of rows in cache lost
    (forward 64 x 1000 1.18x, 128 x 512 1.36x the time), so those keep a max pass each.
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
    ignored label): the depth otherwise breaks the hardware prefetcher's stream, and the rows
    after it wait for memory. The gradient of 8192 and 16384 rows of 1000 float32 classes
    (into ``out=``, one and two threads) with 15 % of the labels ignored at random took
    1.07-1.17x the time of no label ignored without this, 0.91-1.08x with it; every tenth
    ignored, 1.18-1.26x and 1.00-1.19x. (In a stripped-down copy of the loop, ordinary
    loads of the skipped row did as well as the prefetches; zeroing its gradient with
    ordinary stores instead of ``memset`` changed nothing.)
    """
    inline_into_callers()
    line = CACHE_LINE_BYTES // row.itemsize
    for c in range(0, row.size, line):
        prefetch(row, c)
