"""Loops over one row of classes: the building blocks every softmax kernel is made of.

Each helper takes 1-D contiguous rows and compiles to a SIMD loop, vectorised with 512-bit
registers where the CPU has them (``use_512bit_vectors``), then inlined into the kernels.
Sums are accumulated in float64: a float32 running sum loses ~1e-5 relative over 262144
classes.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from fastxent._config import primitive, row_helper
from fastxent._environment import integer_setting
from fastxent._simd import (
    exp_clamped,
    exp_nonpositive,
    fmax_unchecked,
    fmaximum,
    inline_into_callers,
    log_positive,
    prefetch,
    split_for_sum,
    use_512bit_vectors,
)

# Tiles hold at most TILE_ROWS rows and GRADIENT_TILE_ELEMENTS elements (row_tiles).
# Rows of at most SHORT_ROW classes are summed down a transposed tile
# (short_rows_log_sums); the integer-target gradient takes its tiles (short_rows_exp)
# wherever rows are summed whole (rows_to_chain gives None).
SHORT_ROW = 32
TILE_ROWS = 256
GRADIENT_TILE_ELEMENTS = 1 << 14

# Rows from memory (rows_to_chain) are taken in chains, summed in blocks. Rows of fewer
# than CHAIN_MIN_CLASSES classes never are: the tiles take them.
CHAIN_MIN_CLASSES = 256
# Inputs up to this size are taken to be in cache: their rows of up to WHOLE_ROW classes
# are summed in one block. A longer block would put more terms in each float32 lane (16 at
# most here, with 64 lanes), which costs relative accuracy on rows of tiny terms.
CACHE_RESIDENT_BYTES = 1 << 21
WHOLE_ROW = 1024
# Elements per iteration of row_max's vector loop (4 x 16 float32 with AVX-512).
MAX_VECTOR = 64
# Elements per iteration of the exp-sum's vector loop (4 x 16 float32 with AVX-512).
SUM_VECTOR = 64
# Rows from memory are taken in chains of up to CHAIN_ROWS rows, one thread each: the
# exp-sum of each row takes the max of the next one in the same loop
# (row_exp_sum_gap_and_max), in blocks of CHAIN_BLOCK elements (16 terms per float32 lane
# with 64 lanes, as in the rows of up to WHOLE_ROW summed in one block). float32 inputs
# larger than the last-level cache (streams_from_memory) go in blocks of PREFETCH_BLOCK
# elements instead, and ask for the next row's cache lines PREFETCH_AHEAD_BYTES ahead.
CHAIN_ROWS = 64
CHAIN_BLOCK = 1024
PREFETCH_BLOCK = 256
PREFETCH_AHEAD_BYTES = 2048
# Rows of fewer classes never prefetch, even from memory: the hardware prefetcher keeps
# up with them, and the blocks of PREFETCH_BLOCK only add horizontal reductions (forward
# 33554 x 1000 1.27-1.51x the time with prefetching, 16777 x 2000 1.22-1.24x, 8388 x 4000
# 1.02-1.16x; 4096 x 8192 0.87-0.94x, 2048 x 16384 0.86x; in-process A/B, 2 threads,
# on a host with a 32 MiB last-level cache).
PREFETCH_MIN_CLASSES = 4096
CACHE_LINE_BYTES = 64


@row_helper
def row_max(row):
    """Largest element of ``row``; ``nan`` if the row holds a ``nan`` (its loss is ``nan``).

    LLVM's vector loop takes ``MAX_VECTOR`` elements per iteration and leaves the rest to
    a serial chain of scalar max operations (~2.3 ns each). A remainder of more than 16 is
    instead taken as one more vector pass over the row's last ``MAX_VECTOR`` elements: they
    overlap elements already seen, which a max does not mind (100 classes: 143 -> 80 ns).
    Rows of up to ``2 * MAX_VECTOR`` elements read both passes side by side in one loop,
    with one horizontal reduction instead of two (forward+grad of 256 x 100 0.89x the
    time). (Windows of 32 or 16 for shorter rows ran 1.5-1.8x slower: LLVM left those
    loops scalar.)
    """
    inline_into_callers()
    size = row.size
    if size > MAX_VECTOR and size <= 2 * MAX_VECTOR:
        return _max_of_windows(row, MAX_VECTOR)
    main = size - size % MAX_VECTOR
    if size < MAX_VECTOR or size - main <= 16:
        return _max_into(row, row[0])
    return _max_into(row[size - MAX_VECTOR :], _max_into(row[:main], row[0]))


@row_helper
def _max_of_windows(row, width):
    """``max(row)`` for ``width <= row.size <= 2 * width``: its first and last ``width``."""
    inline_into_callers()
    use_512bit_vectors()
    tail = row[row.size - width :]
    largest = row[0]
    for c in range(width):
        largest = fmaximum(largest, fmaximum(row[c], tail[c]))
    return largest


@row_helper
def _max_into(row, largest):
    """``max(largest, max(row))``, ``nan`` if any of them is ``nan``."""
    inline_into_callers()
    use_512bit_vectors()
    for c in range(row.size):
        largest = fmaximum(largest, row[c])
    return largest


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
def short_rows_shift_and_gaps(block, tops, weight, shifted, gaps):
    """For a tile of rows: ``shifted = block - tops``, and label smoothing's gaps.

    ``gaps[r] = sum_c weight[c] * (tops[r] - block[r, c])``, summed as :func:`row_gap`
    sums it (in the tile's dtype, with ``weight`` in it: in float64 lanes, a forward+grad
    of 64 x 1000 took 1.8x the time), in the same sweep as the subtraction. ``shifted``
    (the block's shape, C-contiguous) must not be ``block``: callers check the gaps with
    the logits (:func:`checked_gaps`), then take ``exp`` of ``shifted`` (:func:`exp_into`).
    """
    inline_into_callers()
    use_512bit_vectors()
    for r in range(block.shape[0]):
        row = block[r]
        target = shifted[r]
        top = tops[r]
        gap = block.dtype.type(0.0)
        for c in range(row.size):
            difference = row[c] - top
            target[c] = difference
            gap -= weight[c] * difference
        gaps[r] = gap


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
def row_tiles(n_rows, n_classes):
    """``(tile_rows, n_tiles)``: rows per tile, and how many tiles cover ``n_rows``.

    ``TILE_ROWS`` rows, fewer if that makes more than ``GRADIENT_TILE_ELEMENTS`` elements.
    """
    inline_into_callers()
    tile_rows = max(1, min(TILE_ROWS, GRADIENT_TILE_ELEMENTS // n_classes))
    return tile_rows, (n_rows + tile_rows - 1) // tile_rows


@row_helper
def tile_span(tile, tile_rows, n_rows):
    """``(start, stop)``: the rows of tile number ``tile`` (the last one may be partial)."""
    inline_into_callers()
    start = tile * tile_rows
    return start, min(start + tile_rows, n_rows)


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
def tile_exp_log_sums_and_gaps(block, tops, weight, scratch, log_totals, gaps):
    """:func:`tile_exp_log_sums`, and label smoothing's gaps summed in the same sweep.

    ``gaps`` as from :func:`short_rows_shift_and_gaps` (callers check them with the
    logits): summed row by row in a loop of their own, they made the smoothed forward of
    33 to 127 classes 1.1-1.3x the plain one's time.
    """
    inline_into_callers()
    for r in range(tops.size):
        tops[r] = row_max(block[r])
    short_rows_shift_and_gaps(block, tops, weight, scratch, gaps)
    flat = scratch.reshape(-1)
    _exp_shifted_in_place(flat, flat.dtype.type(0.0))
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
    vector lane per row, with no horizontal reduction and no per-row remainder. On rows of
    10 float32 this took the forward from 42 to 24 ns per row. The sums are float64-accurate
    but run in the block's dtype, split by ``split_for_sum``: float32 terms added into
    float64 lanes made the ``exp`` loop 8 lanes wide instead of 16.
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
def short_rows_gaps(columns, tops, weight, gaps):
    """``gaps[r] = sum_c weight[c] * (tops[r] - columns[c, r])``, down the columns.

    For label smoothing on a tile of short rows, after :func:`short_rows_log_sums` (which
    leaves the tile transposed in ``columns``): one vector lane per row, like the sums.
    As in :func:`row_gap`, the terms (all >= 0, no cancellation) are summed in the tile's
    dtype with ``weight`` in it, then stored in float64 in ``gaps``: in float64 lanes the
    loop ran 8 wide with conversions, and the smoothed forward of 65536 x 10 took 1.05x
    the time (4096 x 32: 1.03-1.09x). A gap comes out ``inf`` or ``nan`` where a term does
    (a zero weight at ``-inf``, a span or a weight beyond the dtype's range); callers then
    use :func:`row_weighted_gap` for that row.
    """
    inline_into_callers()
    use_512bit_vectors()
    sums = np.zeros(gaps.size, columns.dtype)
    for c in range(columns.shape[0]):
        column = columns[c]
        mass = weight[c]
        for r in range(gaps.size):
            sums[r] += mass * (tops[r] - column[r])
    for r in range(gaps.size):
        gaps[r] = sums[r]


@row_helper
def logs_into(values, out):
    """``out = log(values)`` for positive normal float64 ``values`` (or ``nan``), vectorised.

    For a tile's exp-sums: one call of ``math.log`` per short row was a third of the
    forward's time on rows of 10 classes.
    """
    inline_into_callers()
    use_512bit_vectors()
    for r in range(values.size):
        out[r] = log_positive(values[r])


@row_helper
def row_cast_into(values, out):
    """``out[:] = values``, converted to ``out``'s dtype (out of its range: ``inf``)."""
    inline_into_callers()
    for c in range(values.size):
        out[c] = values[c]


@row_helper
def row_sum(row):
    """``sum(row)`` in float64."""
    inline_into_callers()
    use_512bit_vectors()
    total = 0.0
    for c in range(row.size):
        total += np.float64(row[c])
    return total


@primitive
def neumaier_add(total, compensation, term):
    """Add ``term`` to the compensated sum ``total + compensation`` (Neumaier's Kahan).

    Compiled without ``reassoc``, which would cancel the compensation away.
    """
    updated = total + term
    if abs(total) >= abs(term):
        compensation += (total - updated) + term
    else:
        compensation += (term - updated) + total
    return updated, compensation


@row_helper
def _block_exp_sum(block, shift):
    """``sum_c exp(block[c] - shift)`` in float64, summed in lanes of the block's dtype.

    LLVM's vector loop takes ``SUM_VECTOR`` elements per iteration and leaves the rest to
    scalar code (~2.2 ns per element). A remainder is instead summed as one more vector
    pass over the block's last ``SUM_VECTOR`` elements, with the ones already summed
    masked out (rows of 100 float32 classes: 0.71x the forward's time, 1000: 0.94x).
    """
    inline_into_callers()
    size = block.size
    main = size - size % SUM_VECTOR
    zero = block.dtype.type(0.0)
    if size < SUM_VECTOR or main == size:
        high, low = _exp_sum_into(block, shift, zero, zero)
    else:
        high, low = _exp_sum_into(block[:main], shift, zero, zero)
        tail = block[size - SUM_VECTOR :]
        high, low = _exp_sum_masked_into(tail, shift, main + SUM_VECTOR - size, high, low)
    return np.float64(high) + np.float64(low)


@row_helper
def _exp_sum_into(block, shift, high, low):
    """Add ``exp(block - shift)``, split by ``split_for_sum``, to the sums ``high, low``."""
    inline_into_callers()
    use_512bit_vectors()
    for c in range(block.size):
        term_high, term_low = split_for_sum(exp_clamped(block[c] - shift))
        high += term_high
        low += term_low
    return high, low


@row_helper
def _exp_sum_masked_into(block, shift, skip, high, low):
    """:func:`_exp_sum_into` of the elements ``block[skip:]``, looping over all of ``block``.

    A loop of its own: the mask inside :func:`_exp_sum_into` would cost every element.
    """
    inline_into_callers()
    use_512bit_vectors()
    for c in range(block.size):
        term_high, term_low = split_for_sum(exp_clamped(block[c] - shift))
        if c < skip:
            term_high = term_low = block.dtype.type(0.0)
        high += term_high
        low += term_low
    return high, low


@row_helper
def _block_gap(block, shift, weight):
    """``sum_c weight[c] * (shift - block[c])`` in float64, summed in the block's dtype.

    A remainder after the vector loop is one more masked vector pass over the block's
    last ``SUM_VECTOR`` elements, as in :func:`_block_exp_sum`.
    """
    inline_into_callers()
    size = block.size
    main = size - size % SUM_VECTOR
    zero = block.dtype.type(0.0)
    if size < SUM_VECTOR or main == size:
        return np.float64(_gap_into(block, shift, weight, zero))
    gap = _gap_into(block[:main], shift, weight[:main], zero)
    tail = size - SUM_VECTOR
    return np.float64(_gap_masked_into(block[tail:], shift, weight[tail:], main - tail, gap))


@row_helper
def _gap_into(block, shift, weight, gap):
    """Add ``sum_c weight[c] * (shift - block[c])`` to ``gap``, in the block's dtype."""
    inline_into_callers()
    use_512bit_vectors()
    for c in range(block.size):
        gap -= weight[c] * (block[c] - shift)
    return gap


@row_helper
def _gap_masked_into(block, shift, weight, skip, gap):
    """:func:`_gap_into` of the elements ``block[skip:]``, looping over all of ``block``."""
    inline_into_callers()
    use_512bit_vectors()
    for c in range(block.size):
        term = weight[c] * (block[c] - shift)
        if c < skip:
            term = block.dtype.type(0.0)
        gap -= term
    return gap


@row_helper
def row_gap(row, shift, weight):
    """:func:`row_exp_sum_and_gap`'s second sum alone, for a whole row (same caveats)."""
    inline_into_callers()
    return _block_gap(row, shift, weight)


def rows_to_chain(rows: np.ndarray) -> np.ndarray | None:
    """The row kernels' ``chained`` argument: ``rows`` from memory, else ``None``.

    ``rows`` marks rows from memory: the kernels take them in chains (:func:`row_chains`)
    and sum them in blocks (:func:`row_exp_sum_gap_and_max`). ``None`` for rows of fewer
    than ``CHAIN_MIN_CLASSES`` classes (the kernels' tiles take those), and for rows of up
    to ``WHOLE_ROW`` classes small enough in all to stay in cache (``CACHE_RESIDENT_BYTES``):
    each row is then summed whole, in one block. It is an argument, not a test inside the
    kernels, so that Numba compiles the two cases apart (it prunes ``is None`` branches on
    argument types): the code of the path not taken, left in the loop, cost 75-130 ns per
    row of 100 to 1000 classes.
    """
    n_classes = rows.shape[1]
    if n_classes < CHAIN_MIN_CLASSES or (
        n_classes <= WHOLE_ROW and rows.nbytes <= CACHE_RESIDENT_BYTES
    ):
        return None
    return rows


def _last_level_cache_bytes() -> int:
    """The CPU's last-level cache in bytes, as Linux reports it (32 MiB where it does not)."""
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    levels = {}
    for index in Path("/sys/devices/system/cpu/cpu0/cache").glob("index*"):
        try:
            level = int((index / "level").read_text())
            size = (index / "size").read_text().strip()
        except (OSError, ValueError):
            continue
        if size[:-1].isdigit() and size[-1] in units:
            levels[level] = int(size[:-1]) * units[size[-1]]
        elif size.isdigit():
            levels[level] = int(size)
    return levels[max(levels)] if levels else 32 << 20


# Set to a number of bytes to prefetch on inputs larger than that instead (hosts whose
# sysfs misreports the cache, tuning).
STREAMING_ENV = "FASTXENT_STREAMING_MIN_BYTES"
_STREAMING_OVERRIDE = integer_setting(
    STREAMING_ENV, "a number of bytes", "the last-level cache's size"
)
# Inputs larger than this come from memory, not from a cache (streams_from_memory).
if _STREAMING_OVERRIDE is None:
    STREAMING_MIN_BYTES, STREAMING_SOURCE = _last_level_cache_bytes(), "last-level cache"
else:
    STREAMING_MIN_BYTES, STREAMING_SOURCE = _STREAMING_OVERRIDE, STREAMING_ENV


def streams_from_memory(rows: np.ndarray) -> bool:
    """Whether ``rows`` cannot all stay in the caches (:func:`chain_arguments`).

    Then each long row's exp-sum prefetches the next row (:func:`row_exp_sum_gap_and_max`);
    on inputs that a cache holds, the prefetches and the shorter blocks only cost (a
    fifth of the forward's time at 512 x 16384 and 256 x 32000 float32).
    """
    return rows.nbytes > STREAMING_MIN_BYTES


def chain_arguments(rows: np.ndarray) -> tuple[np.ndarray | None, bool]:
    """The chaining kernels' ``chained, streaming`` arguments for ``rows``.

    :func:`rows_to_chain`, and whether the chains prefetch: where rows are chained, of at
    least ``PREFETCH_MIN_CLASSES`` classes, and :func:`streams_from_memory` (rows summed
    whole and shorter rows never prefetch).
    """
    chained = rows_to_chain(rows)
    long_rows = rows.shape[1] >= PREFETCH_MIN_CLASSES
    return chained, chained is not None and long_rows and streams_from_memory(rows)


@row_helper
def row_exp_sum(row, shift):
    """``sum_c exp(row[c] - shift)`` in float64, for ``shift >= max(row)``, the row whole.

    :func:`row_exp_sum_and_gap` without the second sum.
    """
    inline_into_callers()
    return _block_exp_sum(row, shift)


@row_helper
def row_exp_sum_and_gap(row, shift, weight):
    """``sum_c exp(row[c] - shift)`` in float64, and ``sum_c weight[c] * (shift - row[c])``.

    The row whole, in one block: for rows summed whole (:func:`rows_to_chain`), at most
    ``WHOLE_ROW`` classes. The exp terms are summed in vector lanes, split so that float32
    lanes lose nothing a float64 sum would keep (``split_for_sum``).

    The second sum (label smoothing's; 0 and not computed for ``weight=None``, which
    otherwise has the row's dtype) has no cancellation (every term is >= 0), so it is
    summed in the row's dtype, then returned in float64. It comes out ``inf`` or ``nan``
    where that dtype cannot hold a term (a zero weight at a ``-inf`` logit, a span beyond
    its range): callers then use :func:`row_weighted_gap`, which handles both.
    """
    inline_into_callers()
    gap = 0.0 if weight is None else _block_gap(row, shift, weight)
    return _block_exp_sum(row, shift), gap


@row_helper
def row_exp_sum_gap_and_max(row, shift, weight, following, streaming):
    """:func:`row_exp_sum_and_gap` of ``row``, and ``max(following)``, in one sweep.

    ``following`` is the row to process next (same length). Rows from memory were summed
    with the next row prefetched into L2, then its max taken in a pass of its own: here
    that max runs in the exp-sum's vector loop, where it costs 1 of ~21 instructions per 16
    float32, and its loads bring the next row in from memory while the exponentials
    compute. The next exp-sum then finds it in cache.

    If ``following`` holds a ``nan``, its max comes out unspecified (``fmax_unchecked``,
    without the ``nan`` fix-up of ``row_max``): that row's own exp-sum is then ``nan``
    whatever the shift, and so is every output computed from it. Forward 1024 x 128256: 0.84x the
    time, 4096 x 32000: 0.89x, 8192 x 1000: 0.94-0.97x (in-process A/B; see
    :func:`row_chains`).

    The row goes in blocks of ``CHAIN_BLOCK`` elements, each summed in vector lanes as in
    :func:`row_exp_sum_and_gap`; the block sums are added in float64 with compensation
    (:func:`neumaier_add`), so that float64 rows of 2**18 classes sum as accurately as in
    one vector loop. With ``weight`` (label smoothing), the gap is summed in the same loop
    (:func:`_exp_sum_gap_and_max_into`).

    With ``streaming`` (:func:`streams_from_memory`), float32 rows go in blocks of
    ``PREFETCH_BLOCK`` and prefetch ``following`` ``PREFETCH_AHEAD_BYTES`` ahead: the
    loop's loads alone run at the pace of the exponentials, too slowly for the hardware
    prefetcher to keep the memory busy (an exp-sum of rows from memory took as long as
    the same sum over rows in L2 plus a plain read of the rows). Forward 1024 x 128256:
    0.80x the time, 4096 x 32000: 0.88x (in-process A/B). float64 rows, with twice the
    arithmetic per byte, gained nothing and keep the plain blocks.
    """
    inline_into_callers()
    size = row.size
    if size < SUM_VECTOR:
        total, gap = row_exp_sum_and_gap(row, shift, weight)
        return total, gap, row_max(following)
    zero = row.dtype.type(0.0)
    main = size - size % SUM_VECTOR
    total = compensation = gap = 0.0
    top = following[0]
    prefetching = streaming and following.itemsize == 4
    block = PREFETCH_BLOCK if prefetching else CHAIN_BLOCK
    reach = size if prefetching else 0  # where the prefetches stop
    line = CACHE_LINE_BYTES // following.itemsize
    ahead = PREFETCH_AHEAD_BYTES // following.itemsize
    for start in range(0, main, block):
        stop = min(start + block, main)
        for c in range(start + ahead, min(stop + ahead, reach), line):
            prefetch(following, c)
        block_weight = None if weight is None else weight[start:stop]
        high, low, block_gap, top = _exp_sum_gap_and_max_into(
            row[start:stop], shift, block_weight, following[start:stop], zero, top
        )
        gap += np.float64(block_gap)
        block_sum = np.float64(high) + np.float64(low)
        total, compensation = neumaier_add(total, compensation, block_sum)
    if main < size:
        # The remainder as in _block_exp_sum: one more pass over the last SUM_VECTOR.
        tail = size - SUM_VECTOR
        high, low = _exp_sum_masked_into(row[tail:], shift, main - tail, zero, zero)
        block_sum = np.float64(high) + np.float64(low)
        total, compensation = neumaier_add(total, compensation, block_sum)
        top = _max_into(following[tail:], top)
        if weight is not None:
            gap += np.float64(_gap_masked_into(row[tail:], shift, weight[tail:], main - tail, zero))
    return total + compensation, gap, top


@row_helper
def row_exp_sum_and_max(row, shift, following, streaming):
    """``(S, max(following))`` of :func:`row_exp_sum_gap_and_max`, without the gap.

    ``following=None`` (:func:`following_row`: one row per chain) sums the row whole, as
    :func:`row_exp_sum`, and gives ``shift`` back for the max.
    """
    inline_into_callers()
    if following is None:
        return row_exp_sum(row, shift), shift
    total, _, top = row_exp_sum_gap_and_max(row, shift, None, following, streaming)
    return total, top


@row_helper
def row_prefetch(row):
    """Ask for every cache line of ``row`` (into L2) without waiting for them.

    For a row that a kernel skips among rows it reads from memory one after another (an
    ignored label): the gap otherwise breaks the hardware prefetcher's stream, and the rows
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


@row_helper
def row_max_or(row, default):
    """``row_max(row)``, or ``default`` when ``row`` is ``None``."""
    inline_into_callers()
    if row is None:
        return default
    return row_max(row)


@row_helper
def _exp_sum_gap_and_max_into(block, shift, weight, following, zero, top):
    """``(high, low, gap, top)`` of ``block`` in one loop, the sums starting from ``zero``.

    :func:`_exp_sum_into`'s split exp-sum, ``max(top, max(following))`` (``fmax_unchecked``:
    unspecified if ``following`` holds a ``nan``) and, unless ``weight`` is ``None`` (then
    the gap is ``zero`` and the compiled loop holds no code for it), :func:`_gap_into`'s
    sum from the same ``z - m``. Label smoothing's sum in a pass of its own after each
    block kept the memory idle while it ran (the next row's loads are in this loop).
    """
    inline_into_callers()
    use_512bit_vectors()
    high = low = gap = zero
    for c in range(block.size):
        shifted = block[c] - shift
        term_high, term_low = split_for_sum(exp_clamped(shifted))
        high += term_high
        low += term_low
        if weight is not None:
            gap -= weight[c] * shifted
        top = fmax_unchecked(top, following[c])
    return high, low, gap, top


@row_helper
def row_chains(n_rows, rows):
    """``(chain_rows, n_chains)``: how the row kernels split ``n_rows`` among threads.

    ``rows`` is :func:`rows_to_chain` of the input. Rows from memory go in chains of
    up to ``CHAIN_ROWS`` consecutive rows (at least 16 chains, for the threads to share):
    each row's exp-sum takes the next row's max (:func:`row_exp_sum_gap_and_max`), and
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
def row_exp_scaled_into(row, shift, factor, out):
    """``out = exp(row - shift) * factor``, ``factor`` in the row's dtype."""
    inline_into_callers()
    use_512bit_vectors()
    for c in range(row.size):
        out[c] = exp_nonpositive(row[c] - shift) * factor


@row_helper
def row_exp_scaled_in_place(out, shift, factor):
    """:func:`row_exp_scaled_into` with ``out`` as its own input.

    A separate loop because LLVM does not vectorise ``row_exp_scaled_into(x, s, f, x)``:
    its runtime overlap check sends identical input and output to the scalar loop.
    """
    inline_into_callers()
    use_512bit_vectors()
    for c in range(out.size):
        out[c] = exp_nonpositive(out[c] - shift) * factor


@row_helper
def row_exp_scaled_minus_into(row, shift, factor, amounts, out):
    """``out = exp(row - shift) * factor - amounts``, ``amounts`` in ``out``'s dtype.

    The gradient with label smoothing in one sweep: a separate pass subtracting float64
    weights took 1024 x 128256 to 1.35x the time of the plain gradient.
    """
    inline_into_callers()
    use_512bit_vectors()
    for c in range(row.size):
        out[c] = exp_nonpositive(row[c] - shift) * factor - amounts[c]


@row_helper
def row_exp_scaled_minus_in_place(out, shift, factor, amounts):
    """:func:`row_exp_scaled_minus_into` with ``out`` as its own input."""
    inline_into_callers()
    use_512bit_vectors()
    for c in range(out.size):
        out[c] = exp_nonpositive(out[c] - shift) * factor - amounts[c]


@primitive
def row_log_softmax_into(row, top, log_total, out):
    """Write ``(row - top) - log_total`` into ``out``, rounding once (float64 inside).

    Forming ``top + log_total`` first would cost ``ulp(top)`` of accuracy (all of it at
    logits of 1e30), so this loop is compiled without ``reassoc``, which would allow LLVM
    to do exactly that. Inlined like the row helpers (the instructions keep their own
    fast-math flags).
    """
    inline_into_callers()
    use_512bit_vectors()
    top64 = np.float64(top)
    for c in range(row.size):
        out[c] = (np.float64(row[c]) - top64) - log_total


@row_helper
def row_scale(out, factor):
    """Multiply ``out`` by ``factor`` in place."""
    inline_into_callers()
    use_512bit_vectors()
    for c in range(out.size):
        out[c] *= factor


@row_helper
def row_scale_and_subtract(out, factor, amounts):
    """``out[c] = out[c] * factor - amounts[c]`` in place, ``amounts`` in ``out``'s dtype."""
    inline_into_callers()
    use_512bit_vectors()
    for c in range(out.size):
        out[c] = out[c] * factor - amounts[c]


@primitive
def weighted_gap(mass, top, z):
    """``mass * (top - z)``, also where ``top - z`` alone overflows float64 (a span > 1.8e308).

    Compiled without ``reassoc`` so that the halving is not folded away.
    """
    gap = top - z
    if gap != np.inf or z == -np.inf:
        return mass * gap
    return (mass * (0.5 * top - 0.5 * z)) * 2.0


@row_helper
def row_weighted_gap(row, weight, top, factor):
    """``sum_c factor * weight[c] * (top - row[c])`` in float64; zero weights contribute 0.

    ``factor`` (label smoothing's ``eps / C``) is applied per term so that the sum stays
    finite wherever the smoothed loss is, even for logits spanning the float64 range.

    With ``top = max(row)`` every term is >= 0, so the sum has no cancellation. A zero
    weight on a ``-inf`` logit contributes 0 (not ``0 * inf = nan``).
    """
    inline_into_callers()
    use_512bit_vectors()
    top64 = np.float64(top)
    total = 0.0
    for c in range(row.size):
        mass = factor * weight[c]
        total += 0.0 if mass == 0.0 else weighted_gap(mass, top64, np.float64(row[c]))
    return total


@row_helper
def row_target_mass(target, weight, keep, spread):
    """``sum_c weight[c] * (keep * target[c] + spread)``: the total mass ``A`` of a row."""
    inline_into_callers()
    use_512bit_vectors()
    total = 0.0
    for c in range(target.size):
        total += weight[c] * (keep * np.float64(target[c]) + spread)
    return total


@row_helper
def row_target_gap(row, target, weight, keep, spread, top):
    """``sum_c a_c * (top - row[c])`` with ``a_c = weight[c] * (keep * target[c] + spread)``.

    Classes with ``a_c == 0`` contribute 0 even at a ``-inf`` logit (0 log 0 = 0).
    """
    inline_into_callers()
    use_512bit_vectors()
    top64 = np.float64(top)
    total = 0.0
    for c in range(row.size):
        mass = weight[c] * (keep * np.float64(target[c]) + spread)
        total += 0.0 if mass == 0.0 else weighted_gap(mass, top64, np.float64(row[c]))
    return total


@row_helper
def row_subtract_target(out, target, weight, keep, spread, factor):
    """``out[c] -= factor * weight[c] * (keep * target[c] + spread)`` in place."""
    inline_into_callers()
    use_512bit_vectors()
    for c in range(out.size):
        mass = weight[c] * (keep * np.float64(target[c]) + spread)
        out[c] -= factor * mass


@primitive
def row_kl_divergence(row, probabilities, top, log_total):
    """``sum_c q_c (log q_c - log p_c)`` in float64, with ``0 log 0 = 0``.

    Each term uses ``log p_c = (z_c - m) - log S``, so that a row whose ``q`` equals its
    softmax gives terms that cancel one by one (summing ``-H(q)`` and the cross-entropy
    separately would leave ~1e-13 of noise), and the terms are summed with Neumaier's
    compensation. Compiled without ``reassoc``, which would undo both (the loop calls
    ``log`` per element and does not vectorise anyway).
    """
    top64 = np.float64(top)
    total = 0.0
    compensation = 0.0
    for c in range(probabilities.size):
        q = np.float64(probabilities[c])
        if q != 0.0:
            z = np.float64(row[c])
            log_p = (z - top64) - log_total
            if log_p == -np.inf and z != -np.inf:  # z - m overflowed: a span > 1.8e308
                term = q * math.log(q) + weighted_gap(q, top64, z) + q * log_total
            else:
                term = q * (math.log(q) - log_p)
            total, compensation = neumaier_add(total, compensation, term)
    if log_total != log_total:  # a row without a distribution: nan even if no q reads it
        return log_total
    # An infinite term (q > 0 at a -inf logit) makes the compensation nan: the sum is inf.
    return total + compensation if math.isfinite(total) else total
