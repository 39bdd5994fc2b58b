"""Label smoothing's depth: ``sum_c w_c (m - z_c)``, how far a row's logits lie below its max.

A row's smoothed loss is ``(eps / C) (W log S + depth)`` with ``W = sum_c w_c``
(``docs/semantics.md``). The fast sums run in the row's dtype; where a term does not fit
there (a zero weight at a ``-inf`` logit, a span beyond the dtype's range) the depth is
taken again in float64 (:func:`checked_depth`).
"""

from __future__ import annotations

import math

import numpy as np

from fastxent._config import exact_order, row_helper
from fastxent._kernels.reductions import (
    row_exp_sum,
)
from fastxent._simd import inline_into_callers, use_512bit_vectors


@exact_order
def weighted_depth(mass, top, z):
    """``mass * (top - z)``, also where ``top - z`` alone overflows float64 (a span > 1.8e308).

    Compiled without ``reassoc`` so that the halving is not folded away.
    """
    depth = top - z
    if depth != np.inf or z == -np.inf:
        return mass * depth
    return (mass * (0.5 * top - 0.5 * z)) * 2.0


@row_helper
def row_weighted_depth(row, weight, top, factor):
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
        total += 0.0 if mass == 0.0 else weighted_depth(mass, top64, np.float64(row[c]))
    return total


@row_helper
def exp_sum_and_depth(row, top, weight, row_weight, smoothing, following, streaming):
    """:func:`row_exp_sum` with label smoothing's depth checked and scaled by ``eps / C``.

    ``row_weight`` is the weights in the row's dtype, which the fast sum takes, or ``None``
    without smoothing (the depth is then 0 and not computed); where that dtype cannot
    hold a term, :func:`checked_depth` takes the depth again in float64 from ``weight``.
    """
    inline_into_callers()
    total, depth, following_top = row_exp_sum(row, top, row_weight, following, streaming)
    if row_weight is None:
        return total, 0.0, following_top
    return total, checked_depth(depth, row, weight, top, smoothing / row.size), following_top


@row_helper
def checked_depth(depth, row, weight, top, spread):
    """Label smoothing's ``spread * depth``, from a depth summed the fast way.

    The fast sums (in the row's dtype, or down a tile's columns) come out ``inf`` or
    ``nan`` where a term does; the depth is then taken again by :func:`row_weighted_depth`.
    """
    inline_into_callers()
    if math.isfinite(depth):
        return spread * depth
    return row_weighted_depth(row, weight, top, spread)


@row_helper
def checked_depths(block, tops, weight, spread, depths):
    """:func:`checked_depth` for each row of a tile, in place in ``depths``.

    A loop of its own, after the one that sums the depths, and the row's view taken only in
    the rare branch that needs it: with the fallback inside the summing loop, or a view
    taken for every row (``checked_depth(depths[r], block[r], ...)``), each row's view
    stays reference-counted, which slows the common case of short rows.
    """
    inline_into_callers()
    # Each depth is finite, inf or nan: their sum is finite only if every one is. Tested
    # first, so that the common case is a vector loop.
    total = 0.0
    for r in range(depths.size):
        total += depths[r]
    if math.isfinite(total):
        for r in range(depths.size):
            depths[r] *= spread
        return
    for r in range(depths.size):
        if math.isfinite(depths[r]):
            depths[r] *= spread
        else:
            depths[r] = row_weighted_depth(block[r], weight, tops[r], spread)


@row_helper
def smoothing_amounts_into(weight, spread, scale, denominator, amounts):
    """Label smoothing's part of each gradient row, ``scale * (eps / C) w[c] / denominator``.

    Worked out once per call in float64 and rounded once into ``amounts`` (the logits'
    dtype), so that every row subtracts it in one vector operation, and weights far beyond
    float32's range still give the float32 gradient that float64 would round to.
    """
    inline_into_callers()
    for c in range(weight.size):
        amounts[c] = scale * (spread * weight[c] / denominator)
