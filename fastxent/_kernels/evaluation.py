"""The per-row statistics of an evaluation, from logits and labels in one sweep per row.

For each counted row (label not ``ignore_index``): its loss ``lse - z_y``, the rank of its
label (how many classes score strictly higher), the largest probability ``1 / S`` and the
predictive entropy ``log S + T / S``, where ``S = sum_c exp(z_c - m)`` and
``T = sum_c exp(z_c - m) (m - z_c)``. After the row's max, one vector loop takes ``S``,
``T`` and the rank together; ``S`` and ``T`` are summed as accurately as in float64
(``split_for_sum``: every term of ``S`` is in ``[0, 1]``, of ``T`` in ``[0, 1/e]``). The
rank is counted in the row's float dtype too, in the same vector lanes (an integer
counter of another width splits the loop's vectors): exact up to 2**24 classes in float32.
"""

from __future__ import annotations

import math

import numpy as np
from numba import prange

from fastxent._config import row_helper
from fastxent._kernels.dispatch import row_kernel
from fastxent._kernels.reductions import row_max
from fastxent._simd import exp_clamped, inline_into_callers, split_for_sum, use_512bit_vectors
from fastxent._tuning import SUM_VECTOR


@row_kernel
def evaluation_rows(logits, labels, ignore_index, losses, ranks, confidences, entropies):
    """Fill the four per-row outputs; ignored rows get a ``nan`` loss and rank -1.

    Labels must be in range (the caller checks). A row holding ``nan``, or whose label's
    logit is ``-inf``, gets a loss that is not finite: the caller counts it apart.
    """
    n_rows = logits.shape[0]
    for i in prange(n_rows):
        label = labels[i]
        if label == ignore_index:
            losses[i] = np.nan
            ranks[i] = -1
            confidences[i] = np.nan
            entropies[i] = np.nan
            continue
        row = logits[i]
        top = row_max(row)
        target = row[label]
        total, spread, rank = _row_sums(row, top, target)
        log_total = math.log(total)
        losses[i] = (np.float64(top) - np.float64(target)) + log_total
        ranks[i] = rank
        confidences[i] = 1.0 / total
        entropies[i] = log_total + spread / total


@row_helper
def _row_sums(row, top, target):
    """``(S, T, rank)`` of a row with max ``top`` and label logit ``target``.

    The last ``size % SUM_VECTOR`` elements go through one more masked vector pass over
    the row's last ``SUM_VECTOR`` elements rather than scalar code (as ``_block_exp_sum``).
    """
    inline_into_callers()
    size = row.size
    main = size - size % SUM_VECTOR
    zero = row.dtype.type(0.0)
    # exp_clamped's clamp, where exp is still a normal number
    lowest = row.dtype.type(-87.0) if row.itemsize == 4 else row.dtype.type(-708.0)
    if size < SUM_VECTOR or main == size:
        sums = _sums_into(row, top, target, lowest, zero, zero, zero, zero, zero)
    else:
        sums = _sums_into(row[:main], top, target, lowest, zero, zero, zero, zero, zero)
        tail = row[size - SUM_VECTOR :]
        sums = _sums_masked_into(tail, top, target, lowest, main + SUM_VECTOR - size, *sums)
    high, low, spread_high, spread_low, rank = sums
    total = np.float64(high) + np.float64(low)
    return total, np.float64(spread_high) + np.float64(spread_low), np.int64(rank)


@row_helper
def _terms(value, top, target, lowest, one):
    """One class's terms of ``S`` and ``T`` (each split for summing) and whether it ranks above.

    ``z - m`` is clamped where ``exp_clamped`` clamps it before the product with its
    exponential, so that a masked class (``-inf``) adds a vanishing term to ``T``, not
    ``0 * inf``.
    """
    inline_into_callers()
    depth = max(value - top, lowest)
    term = exp_clamped(depth)
    term_high, term_low = split_for_sum(term)
    weighted_high, weighted_low = split_for_sum(-term * depth)
    return term_high, term_low, weighted_high, weighted_low, one if value > target else one - one


@row_helper
def _sums_into(block, top, target, lowest, high, low, spread_high, spread_low, rank):
    """Add the terms of ``S``, ``T`` and the rank over ``block`` to the running sums."""
    inline_into_callers()
    use_512bit_vectors()
    one = block.dtype.type(1.0)
    for c in range(block.size):
        term_high, term_low, weighted_high, weighted_low, above = _terms(
            block[c], top, target, lowest, one
        )
        high += term_high
        low += term_low
        spread_high += weighted_high
        spread_low += weighted_low
        rank += above
    return high, low, spread_high, spread_low, rank


@row_helper
def _sums_masked_into(block, top, target, lowest, skip, high, low, spread_high, spread_low, rank):
    """:func:`_sums_into` of ``block[skip:]``, looping over all of ``block``.

    A loop of its own: the mask would cost every element of the main loop.
    """
    inline_into_callers()
    use_512bit_vectors()
    zero = block.dtype.type(0.0)
    one = block.dtype.type(1.0)
    for c in range(block.size):
        term_high, term_low, weighted_high, weighted_low, above = _terms(
            block[c], top, target, lowest, one
        )
        if c < skip:
            term_high = term_low = weighted_high = weighted_low = zero
            above = zero
        high += term_high
        low += term_low
        spread_high += weighted_high
        spread_low += weighted_low
        rank += above
    return high, low, spread_high, spread_low, rank
