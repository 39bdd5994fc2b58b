"""Tiles: short rows taken a block at a time, so that loops run over the block, not a row.

A row of a few dozen classes would run its vector loops as scalar remainders. Rows of at
most ``SHORT_ROW`` classes are transposed and summed down the columns, one lane per row.
"""

from __future__ import annotations

import numpy as np

from fastxent._config import row_helper
from fastxent._kernels.reductions import logs_into, row_max, row_sum
from fastxent._simd import (
    exp_clamped,
    exp_nonpositive,
    fmaximum,
    inline_into_callers,
    log_positive,
    split_for_sum,
    use_512bit_vectors,
)
from fastxent._tuning import SHORT_ROW, TILE_ELEMENTS, TILE_ROWS


@row_helper
def row_tiles(n_rows, n_classes):
    """``(tile_rows, n_tiles)``: rows per tile, and how many tiles cover ``n_rows``.

    ``TILE_ROWS`` rows, fewer if that makes more than ``TILE_ELEMENTS`` elements.
    """
    inline_into_callers()
    tile_rows = max(1, min(TILE_ROWS, TILE_ELEMENTS // n_classes))
    return tile_rows, (n_rows + tile_rows - 1) // tile_rows


@row_helper
def tile_span(tile, tile_rows, n_rows):
    """``(start, stop)``: the rows of tile number ``tile`` (the last one may be partial)."""
    inline_into_callers()
    start = tile * tile_rows
    return start, min(start + tile_rows, n_rows)


@row_helper
def _exp_shifted_in_place(out, shift):
    inline_into_callers()
    # Loops run over range(size) of slices: with an index Numba cannot prove >= 0 it emits
    # a negative-index wraparound select, and LLVM then falls back to gather/scatter.
    use_512bit_vectors()
    for c in range(out.size):
        out[c] = exp_nonpositive(out[c] - shift)


@row_helper
def short_rows_exp(block, tops, out):
    """For a tile of rows and their maxima ``tops``: ``out = exp(block - tops)``.

    With a few classes per row, a SIMD loop over one row is mostly its scalar remainder.
    Here the subtraction runs row by row, then ``exp`` runs as one vector loop over the
    whole contiguous block. ``out`` (same shape, C-contiguous) may be ``block`` itself.
    Returns nothing; the caller sums each row of ``out``.
    """
    inline_into_callers()
    use_512bit_vectors()
    n_rows = block.shape[0]
    for r in range(n_rows):
        row = block[r]
        target = out[r]
        top = tops[r]
        for c in range(row.size):
            target[c] = row[c] - top
    _exp_shifted_in_place(out.reshape(-1), out.dtype.type(0.0))


@row_helper
def exp_into(values, out):
    """``out = exp(values)`` for ``values <= 0`` (or ``nan``), as one vector loop.

    ``out`` must not be ``values`` (LLVM would then run its scalar loop): in place, see
    :func:`short_rows_exp`.
    """
    inline_into_callers()
    use_512bit_vectors()
    for i in range(out.size):
        out[i] = exp_nonpositive(values[i])


@row_helper
def tile_log_sums(block, tops, scratch, log_totals):
    """``tops[r] = max(block[r])`` and ``log_totals[r]`` the log of its exp-sum, for a tile.

    ``scratch`` is flat room for the tile's elements, left holding the tile transposed for
    rows of at most ``SHORT_ROW`` classes (:func:`short_rows_log_sums`), else its ``exp``
    (:func:`tile_exp_log_sums`).
    """
    inline_into_callers()
    n_rows, n_classes = block.shape
    if n_classes <= SHORT_ROW:
        short_rows_log_sums(block, tops, scratch.reshape((n_classes, n_rows)), log_totals)
    else:
        tile_exp_log_sums(block, tops, scratch.reshape((n_rows, n_classes)), log_totals)


@row_helper
def tile_exp_log_sums(block, tops, scratch, log_totals):
    """For a tile of in-cache rows: ``tops``, ``scratch = exp(block - tops)`` and log-sums.

    ``tops[r] = max(block[r])``, ``log_totals[r] = log(sum(scratch[r]))`` (the sum in
    float64). ``scratch`` (same shape as ``block``, C-contiguous) is the caller's and must
    not be ``block``. The ``exp`` runs as one loop over the whole tile
    (:func:`short_rows_exp`): row by row, rows of a few dozen classes run their loops as
    scalar remainders.
    """
    inline_into_callers()
    for r in range(tops.size):
        tops[r] = row_max(block[r])
    short_rows_exp(block, tops, scratch)
    _row_log_sums(scratch, log_totals)


@row_helper
def _row_log_sums(exps, log_totals):
    """``log_totals[r] = log(sum(exps[r]))``, the sums in float64."""
    inline_into_callers()
    totals = np.empty(log_totals.size)
    for r in range(log_totals.size):
        totals[r] = row_sum(exps[r])
    logs_into(totals, log_totals)


@row_helper
def short_rows_log_sums(block, tops, columns, log_totals):
    """For a tile of short rows: ``tops[r] = max(block[r])`` and the log of its exp-sum.

    The block is first copied transposed into ``columns`` (shape ``(C, R)``, the caller's
    scratch), so that the max, the ``exp`` and the sums all run down the columns, one
    vector lane per row, with no horizontal reduction and no per-row remainder (row by
    row, a 10-class row would be nothing but those). The sums are float64-accurate but
    run in the block's dtype, split by ``split_for_sum``: float32 terms added into float64
    lanes would make the ``exp`` loop 8 lanes wide instead of 16.
    """
    inline_into_callers()
    use_512bit_vectors()
    n_rows, n_classes = block.shape
    # Column by column: contiguous stores, and loads a row apart (faster than the reverse).
    for c in range(n_classes):
        column = columns[c]
        for r in range(n_rows):
            column[r] = block[r, c]
    first = columns[0]
    for r in range(n_rows):
        tops[r] = first[r]
    for c in range(1, n_classes):
        column = columns[c]
        for r in range(n_rows):
            tops[r] = fmaximum(tops[r], column[r])
    high = np.zeros(n_rows, block.dtype)
    low = np.zeros(n_rows, block.dtype)
    for c in range(n_classes):
        column = columns[c]
        for r in range(n_rows):
            term_high, term_low = split_for_sum(exp_clamped(column[r] - tops[r]))
            high[r] += term_high
            low[r] += term_low
    for r in range(n_rows):
        log_totals[r] = log_positive(np.float64(high[r]) + np.float64(low[r]))


@row_helper
def short_rows_shift_and_depths(block, tops, weight, shifted, depths):
    """For a tile of rows: ``shifted = block - tops``, and label smoothing's depths.

    ``depths[r] = sum_c weight[c] * (tops[r] - block[r, c])``, summed as :func:`row_depth`
    sums it (in the tile's dtype, with ``weight`` in it: float64 lanes would be half as
    wide), in the same sweep as the subtraction. ``shifted`` (the block's shape,
    C-contiguous) must not be ``block``: callers check the depths with the logits
    (:func:`checked_depths`), then take ``exp`` of ``shifted`` (:func:`exp_into`).
    """
    inline_into_callers()
    use_512bit_vectors()
    for r in range(block.shape[0]):
        row = block[r]
        target = shifted[r]
        top = tops[r]
        depth = block.dtype.type(0.0)
        for c in range(row.size):
            difference = row[c] - top
            target[c] = difference
            depth -= weight[c] * difference
        depths[r] = depth


@row_helper
def tile_exp_log_sums_and_depths(block, tops, weight, scratch, log_totals, depths):
    """:func:`tile_exp_log_sums`, and label smoothing's depths summed in the same sweep.

    ``depths`` as from :func:`short_rows_shift_and_depths` (callers check them with the
    logits): summed in the sweep that subtracts the maxima, not in a row loop of their
    own, which would read the tile once more.
    """
    inline_into_callers()
    for r in range(tops.size):
        tops[r] = row_max(block[r])
    short_rows_shift_and_depths(block, tops, weight, scratch, depths)
    flat = scratch.reshape(-1)
    _exp_shifted_in_place(flat, flat.dtype.type(0.0))
    _row_log_sums(scratch, log_totals)


@row_helper
def short_rows_depths(columns, tops, weight, depths):
    """``depths[r] = sum_c weight[c] * (tops[r] - columns[c, r])``, down the columns.

    For label smoothing on a tile of short rows, after :func:`short_rows_log_sums` (which
    leaves the tile transposed in ``columns``): one vector lane per row, like the sums.
    As in :func:`row_depth`, the terms (all >= 0, no cancellation) are summed in the tile's
    dtype with ``weight`` in it, then stored in float64 in ``depths``: float64 lanes would
    make the loop half as wide, with conversions. A depth comes out ``inf`` or ``nan``
    where a term does (a zero weight at ``-inf``, a span or a weight beyond the dtype's
    range); callers then use :func:`row_weighted_depth` for that row.
    """
    inline_into_callers()
    use_512bit_vectors()
    sums = np.zeros(depths.size, columns.dtype)
    for c in range(columns.shape[0]):
        column = columns[c]
        mass = weight[c]
        for r in range(depths.size):
            sums[r] += mass * (tops[r] - column[r])
    for r in range(depths.size):
        depths[r] = sums[r]
