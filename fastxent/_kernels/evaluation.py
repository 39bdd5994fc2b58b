"""The per-row statistics of an evaluation, from logits and labels in one sweep per row.

For each counted row (label not ``ignore_index``): its loss ``lse - z_y``, the rank of its
label (how many classes score strictly higher), the largest probability ``1 / S`` and the
predictive entropy ``log S + T / S``, where ``S = sum_c exp(z_c - m)`` and
``T = sum_c exp(z_c - m) (m - z_c)``. After the row's max, one vector loop takes ``S``,
``T`` and the rank together. ``S`` is summed as accurately as in float64
(``split_for_sum``), as the loss needs; ``T`` (the entropy's, terms in ``[0, 1/e]``) in
the row's dtype within a block of ``CHAIN_BLOCK`` elements, then in float64. The
rank is counted in the row's float dtype too, in the same vector lanes (an integer
counter of another width splits the loop's vectors): exact up to 2**24 classes in float32.

Rows from memory go in chains (``fastxent._kernels.chains``), each row's loop also taking
the next row's max, as the cross-entropy forward does; long rows are summed in blocks of
``CHAIN_BLOCK`` whose sums are added in float64.
"""

from __future__ import annotations

import math

import numpy as np
from numba import prange

from fastxent._config import row_helper
from fastxent._kernels.chains import chain_span, following_row, row_chains
from fastxent._kernels.dispatch import row_kernel
from fastxent._kernels.reductions import row_max_or
from fastxent._simd import (
    exp_clamped,
    fmax_unchecked,
    inline_into_callers,
    split_for_sum,
    use_512bit_vectors,
)
from fastxent._tuning import CHAIN_BLOCK, SUM_VECTOR


@row_kernel
def evaluation_rows(logits, chained, labels, ignore_index, losses, ranks, confidences, entropies):
    """Fill the four per-row outputs; ignored rows get a ``nan`` loss and rank -1.

    ``chained`` is ``rows_to_chain`` of the logits. Labels must be in range (the caller
    checks). A row holding ``nan``, or whose label's logit is ``-inf``, gets a loss that
    is not finite: the caller counts it apart.
    """
    n_rows = logits.shape[0]
    chain_rows, n_chains = row_chains(n_rows, chained)
    for chain in prange(n_chains):
        start, stop, top = chain_span(logits, chain, chain_rows)
        for i in range(start, stop):
            following = following_row(chained, i, stop)
            label = labels[i]
            if label == ignore_index:
                losses[i] = np.nan
                ranks[i] = -1
                confidences[i] = np.nan
                entropies[i] = np.nan
                top = row_max_or(following, top)
                continue
            row = logits[i]
            target = row[label]
            total, spread, rank, following_top = _row_sums(row, top, target, following)
            log_total = math.log(total)
            losses[i] = (np.float64(top) - np.float64(target)) + log_total
            ranks[i] = rank
            confidences[i] = 1.0 / total
            entropies[i] = log_total + spread / total
            top = following_top


@row_helper
def _row_sums(row, top, target, following):
    """``(S, T, rank, max(following))`` of a row with max ``top`` and label logit ``target``.

    Blocks of ``CHAIN_BLOCK`` elements, their sums added in float64; the last
    ``size % SUM_VECTOR`` elements go through one more masked vector pass over the row's
    last ``SUM_VECTOR`` elements rather than scalar code (as ``_block_exp_sum``).
    ``following`` ``None``: no next row (its max comes back as ``top``).
    """
    inline_into_callers()
    size = row.size
    zero = row.dtype.type(0.0)
    # exp_clamped's clamp, where exp is still a normal number
    lowest = row.dtype.type(-87.0) if row.itemsize == 4 else row.dtype.type(-708.0)
    main = size if size < SUM_VECTOR else size - size % SUM_VECTOR
    total = spread = rank = 0.0
    next_top = top if following is None else following[0]
    for start in range(0, main, CHAIN_BLOCK):
        stop = min(start + CHAIN_BLOCK, main)
        block_following = None if following is None else following[start:stop]
        high, low, block_spread, above, next_top = _sums_into(
            row[start:stop], top, target, lowest, zero, block_following, next_top
        )
        total += np.float64(high) + np.float64(low)
        spread += np.float64(block_spread)
        rank += np.float64(above)
    if main < size:
        tail = size - SUM_VECTOR
        tail_following = None if following is None else following[tail:]
        high, low, block_spread, above, next_top = _sums_masked_into(
            row[tail:], top, target, lowest, zero, main - tail, tail_following, next_top
        )
        total += np.float64(high) + np.float64(low)
        spread += np.float64(block_spread)
        rank += np.float64(above)
    return total, spread, np.int64(rank), next_top


@row_helper
def _terms(value, top, target, lowest, one):
    """One class's terms of ``S`` (split for summing) and ``T``, and whether it ranks above.

    ``z - m`` is clamped where ``exp_clamped`` clamps it before the product with its
    exponential, so that a masked class (``-inf``) adds a vanishing term to ``T``, not
    ``0 * inf``.
    """
    inline_into_callers()
    depth = max(value - top, lowest)
    term = exp_clamped(depth)
    term_high, term_low = split_for_sum(term)
    return term_high, term_low, -term * depth, one if value > target else one - one


@row_helper
def _sums_into(block, top, target, lowest, zero, following, next_top):
    """The terms of ``S``, ``T`` and the rank over ``block``, and ``max(next_top, following)``.

    ``following`` (the next row's same block, or ``None``) is only read for its max,
    which keeps the memory busy while the exponentials compute.
    """
    inline_into_callers()
    use_512bit_vectors()
    one = block.dtype.type(1.0)
    high = low = spread = rank = zero
    for c in range(block.size):
        term_high, term_low, weighted, above = _terms(block[c], top, target, lowest, one)
        high += term_high
        low += term_low
        spread += weighted
        rank += above
        if following is not None:
            next_top = fmax_unchecked(next_top, following[c])
    return high, low, spread, rank, next_top


@row_helper
def _sums_masked_into(block, top, target, lowest, zero, skip, following, next_top):
    """:func:`_sums_into` of ``block[skip:]``, looping over all of ``block``.

    A loop of its own: the mask would cost every element of the main loop.
    """
    inline_into_callers()
    use_512bit_vectors()
    one = block.dtype.type(1.0)
    high = low = spread = rank = zero
    for c in range(block.size):
        term_high, term_low, weighted, above = _terms(block[c], top, target, lowest, one)
        if c < skip:
            term_high = term_low = weighted = above = zero
        high += term_high
        low += term_low
        spread += weighted
        rank += above
        if following is not None:
            next_top = fmax_unchecked(next_top, following[c])
    return high, low, spread, rank, next_top
