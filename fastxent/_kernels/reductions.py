"""Reductions over one row: its max, its sum, its exp-sum, all in SIMD loops.

Each helper takes 1-D contiguous rows and compiles to a vector loop (512-bit registers
where the CPU has them, ``use_512bit_vectors``), then is inlined into the kernels. Sums are
accumulated as accurately as float64: a float32 running sum loses ~1e-5 relative over
262144 classes.
"""

from __future__ import annotations

import numpy as np

from fastxent._config import exact_order, row_helper
from fastxent._simd import (
    exp_clamped,
    fmax_unchecked,
    fmaximum,
    inline_into_callers,
    log_positive,
    prefetch,
    split_for_sum,
    use_512bit_vectors,
)
from fastxent._tuning import (
    CACHE_LINE_BYTES,
    CHAIN_BLOCK,
    MAX_VECTOR,
    PREFETCH_AHEAD_BYTES,
    PREFETCH_BLOCK,
    SUM_VECTOR,
)


@row_helper
def row_max(row):
    """Largest element of ``row``; ``nan`` if the row holds a ``nan`` (its loss is ``nan``).

    LLVM's vector loop takes ``MAX_VECTOR`` elements per iteration and leaves the rest to
    a serial chain of scalar max operations, slow on a short row. A remainder of more
    than 16 is instead taken as one more vector pass over the row's last ``MAX_VECTOR``
    elements: they overlap elements already seen, which a max does not mind. Rows of up
    to ``2 * MAX_VECTOR`` elements read both passes side by side in one loop, with one
    horizontal reduction instead of two. (Narrower windows for shorter rows would not
    help: LLVM leaves loops of 32 or 16 elements scalar.)
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
def row_max_or(row, default):
    """``row_max(row)``, or ``default`` when ``row`` is ``None``."""
    inline_into_callers()
    if row is None:
        return default
    return row_max(row)


@row_helper
def row_sum(row):
    """``sum(row)`` in float64."""
    inline_into_callers()
    use_512bit_vectors()
    total = 0.0
    for c in range(row.size):
        total += np.float64(row[c])
    return total


@exact_order
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
    scalar code, one element at a time, which would be much of a short row's work. A
    remainder is instead summed as one more vector pass over the block's last
    ``SUM_VECTOR`` elements, with the ones already summed masked out.
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
def _block_depth(block, shift, weight):
    """``sum_c weight[c] * (shift - block[c])`` in float64, summed in the block's dtype.

    A remainder after the vector loop is one more masked vector pass over the block's
    last ``SUM_VECTOR`` elements, as in :func:`_block_exp_sum`.
    """
    inline_into_callers()
    size = block.size
    main = size - size % SUM_VECTOR
    zero = block.dtype.type(0.0)
    if size < SUM_VECTOR or main == size:
        return np.float64(_depth_into(block, shift, weight, zero))
    depth = _depth_into(block[:main], shift, weight[:main], zero)
    tail = size - SUM_VECTOR
    return np.float64(_depth_masked_into(block[tail:], shift, weight[tail:], main - tail, depth))


@row_helper
def _depth_into(block, shift, weight, depth):
    """Add ``sum_c weight[c] * (shift - block[c])`` to ``depth``, in the block's dtype."""
    inline_into_callers()
    use_512bit_vectors()
    for c in range(block.size):
        depth -= weight[c] * (block[c] - shift)
    return depth


@row_helper
def _depth_masked_into(block, shift, weight, skip, depth):
    """:func:`_depth_into` of the elements ``block[skip:]``, looping over all of ``block``."""
    inline_into_callers()
    use_512bit_vectors()
    for c in range(block.size):
        term = weight[c] * (block[c] - shift)
        if c < skip:
            term = block.dtype.type(0.0)
        depth -= term
    return depth


@row_helper
def row_depth(row, shift, weight):
    """:func:`row_exp_sum`'s ``depth`` alone, for a whole row (same caveats)."""
    inline_into_callers()
    return _block_depth(row, shift, weight)


@row_helper
def row_exp_sum(row, shift, weight, following, streaming):
    """``(S, depth, max(following))``: a row's exp-sum, and what else one sweep can take.

    - ``S = sum_c exp(row[c] - shift)`` in float64, for ``shift >= max(row)``, summed in
      vector lanes split so that float32 lanes lose nothing a float64 sum would keep
      (``split_for_sum``).
    - ``depth = sum_c weight[c] * (shift - row[c])`` (label smoothing's), or 0 and not
      computed for ``weight=None``. It is summed in the row's dtype (with non-negative
      weights its terms are >= 0: no cancellation) and comes out ``inf`` or ``nan`` where
      that dtype cannot hold a term; callers then take it again (``checked_depth``).
    - ``max(following)``, the next row of a chain (``fastxent._kernels.chains``): its
      loads bring that row in from memory while the exponentials compute. ``None`` sums
      the row whole and gives ``shift`` back. If ``following`` holds a ``nan`` its max is
      unspecified (``fmax_unchecked``): that row's own exp-sum is then ``nan`` whatever
      its shift, and so is every output computed from it.

    Every option is an argument whose ``None`` Numba prunes at compile time, so each
    kernel compiles only the loop it uses. A chained row goes in blocks of
    ``CHAIN_BLOCK`` elements whose sums are added in float64 with compensation
    (:func:`neumaier_add`); with ``streaming`` (the planner's: an input beyond the cache)
    float32 rows go in blocks of ``PREFETCH_BLOCK`` and prefetch ``following``
    ``PREFETCH_AHEAD_BYTES`` ahead, which keeps the memory busy while the exponentials
    compute (float64 rows, with twice the arithmetic per byte, do not need it).
    """
    inline_into_callers()
    size = row.size
    if following is None or size < SUM_VECTOR:  # the row whole, in one block
        total = _block_exp_sum(row, shift)
        depth = 0.0 if weight is None else _block_depth(row, shift, weight)
        return total, depth, shift if following is None else row_max(following)
    zero = row.dtype.type(0.0)
    main = size - size % SUM_VECTOR
    total = compensation = depth = 0.0
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
        high, low, block_depth, top = _exp_sum_depth_and_max_into(
            row[start:stop], shift, block_weight, following[start:stop], zero, top
        )
        depth += np.float64(block_depth)
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
            depth += np.float64(
                _depth_masked_into(row[tail:], shift, weight[tail:], main - tail, zero)
            )
    return total + compensation, depth, top


@row_helper
def _exp_sum_depth_and_max_into(block, shift, weight, following, zero, top):
    """``(high, low, depth, top)`` of ``block`` in one loop, the sums starting from ``zero``.

    :func:`_exp_sum_into`'s split exp-sum, ``max(top, max(following))`` (``fmax_unchecked``:
    unspecified if ``following`` holds a ``nan``) and, unless ``weight`` is ``None`` (then
    the depth is ``zero`` and the compiled loop holds no code for it), :func:`_depth_into`'s
    sum from the same ``z - m``. Label smoothing's sum in a pass of its own after each
    block kept the memory idle while it ran (the next row's loads are in this loop).
    """
    inline_into_callers()
    use_512bit_vectors()
    high = low = depth = zero
    for c in range(block.size):
        shifted = block[c] - shift
        term_high, term_low = split_for_sum(exp_clamped(shifted))
        high += term_high
        low += term_low
        if weight is not None:
            depth -= weight[c] * shifted
        top = fmax_unchecked(top, following[c])
    return high, low, depth, top


@row_helper
def logs_into(values, out):
    """``out = log(values)`` for positive normal float64 ``values`` (or ``nan``), vectorised.

    For a tile's exp-sums: ``math.log`` is a library call per row, costly next to the rest
    of a short row's work.
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
