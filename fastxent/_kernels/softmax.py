"""Kernels for softmax, log-softmax and logsumexp over the rows of a 2-D C-contiguous array.

Every row is read from memory once, by its maximum ``m`` (for log_softmax and logsumexp
of rows from memory, in the previous row's exp-sum loop: ``row_chains``); then, from
cache, the float64 sum ``S`` of ``exp(x - m)``, and the output: ``softmax = exp(x - m) / S``,
``log_softmax = x - m - log S`` and ``logsumexp = m + log S`` (``m`` itself where it is
not finite). softmax computes ``exp(x - m)`` once, into the output row, then sums and
scales it there while the row is still in cache: rereading the row from cache costs less
than computing ``exp`` twice (once for the sum, once for the output), for rows from
memory too. Each kernel's ``chained`` is ``rows_to_chain(logits)`` (``fastxent._plan``).
"""

from __future__ import annotations

import math

import numpy as np
from numba import prange

from fastxent._config import kernel_part, row_helper
from fastxent._kernels.chains import chain_span, following_row, row_chains
from fastxent._kernels.dispatch import row_kernel
from fastxent._kernels.reductions import row_exp_sum, row_max, row_sum
from fastxent._kernels.sweeps import row_exp_scaled_into, row_log_softmax_into, row_scale
from fastxent._kernels.tiles import row_tiles, short_rows_exp, tile_log_sums, tile_span
from fastxent._simd import inline_into_callers
from fastxent._tuning import LOG_SOFTMAX_TILE_CLASSES, SOFTMAX_TILE_CLASSES


@row_kernel
def softmax_rows(logits, chained, out):
    """``out[i] = softmax(logits[i])`` for every row ``i``."""
    n_rows, n_classes = logits.shape
    if chained is None and n_classes < SOFTMAX_TILE_CLASSES:
        _softmax_tiles(logits, out)
        return
    for i in prange(n_rows):
        row = logits[i]
        top = row_max(row)
        probs = out[i]
        row_exp_scaled_into(row, top, out.dtype.type(1.0), probs)
        row_scale(probs, out.dtype.type(1.0 / row_sum(probs)))


@kernel_part
def _softmax_tiles(logits, out):
    """Softmax of rows shorter than a block, a tile of rows at once: one ``exp`` loop.

    As the gradient's tiles (``fastxent._kernels.xent_labels``): a row of a few dozen
    classes would otherwise run its ``exp`` as the vector loop's scalar remainder. Rows of
    ``SOFTMAX_TILE_CLASSES`` classes or more stay row by row: their loops are mostly
    vector already, and a tile of them outgrows L1.
    """
    n_rows, n_classes = logits.shape
    tile_rows, n_tiles = row_tiles(n_rows, n_classes)
    for tile in prange(n_tiles):
        start, stop = tile_span(tile, tile_rows, n_rows)
        block = logits[start:stop]
        probs = out[start:stop]
        tops = np.empty(stop - start, logits.dtype)
        for r in range(stop - start):
            tops[r] = row_max(block[r])
        short_rows_exp(block, tops, probs)
        for r in range(stop - start):
            row_out = probs[r]
            row_scale(row_out, row_out.dtype.type(1.0 / row_sum(row_out)))


@row_kernel
def log_softmax_rows(logits, chained, streaming, out):
    """``out[i] = log_softmax(logits[i])`` for every row ``i``."""
    n_rows, n_classes = logits.shape
    if chained is None and n_classes < LOG_SOFTMAX_TILE_CLASSES:
        _log_softmax_tiles(logits, out)
        return
    chain_rows, n_chains = row_chains(n_rows, chained)
    for chain in prange(n_chains):
        start, stop, top = chain_span(logits, chain, chain_rows)
        for i in range(start, stop):
            row = logits[i]
            total, _, following_top = row_exp_sum(
                row, top, None, following_row(chained, i, stop), streaming
            )
            row_log_softmax_into(row, top, math.log(total), out[i])
            top = following_top


@kernel_part
def _log_softmax_tiles(logits, out):
    """log_softmax of rows of fewer than ``LOG_SOFTMAX_TILE_CLASSES`` classes, by tiles.

    The maxima and log-sums of a tile come from :func:`tile_log_sums`, as in the
    cross-entropy forward, with the output's tile as its scratch, which the results then
    overwrite. Rows of at most 32 classes are summed down the columns of the transposed
    tile, longer ones after one flat ``exp`` loop over the tile. Tiles pay where a row's
    loops would be mostly scalar remainder; from ``LOG_SOFTMAX_TILE_CLASSES`` classes on
    the row loops' remainders are short or vector, and rows go one by one.
    """
    n_rows, n_classes = logits.shape
    tile_rows, n_tiles = row_tiles(n_rows, n_classes)
    for tile in prange(n_tiles):
        start, stop = tile_span(tile, tile_rows, n_rows)
        block = logits[start:stop]
        tile_out = out[start:stop]
        tops = np.empty(stop - start, logits.dtype)
        log_totals = np.empty(stop - start)
        tile_log_sums(block, tops, tile_out.reshape(-1), log_totals)
        for r in range(stop - start):
            row_log_softmax_into(block[r], tops[r], log_totals[r], tile_out[r])


@row_kernel
def logsumexp_rows(logits, chained, streaming, out):
    """``out[i] = log(sum(exp(logits[i])))`` in float64."""
    n_rows, n_classes = logits.shape
    if chained is None and n_classes < LOG_SOFTMAX_TILE_CLASSES:
        _logsumexp_tiles(logits, out)
        return
    chain_rows, n_chains = row_chains(n_rows, chained)
    for chain in prange(n_chains):
        start, stop, top = chain_span(logits, chain, chain_rows)
        for i in range(start, stop):
            row = logits[i]
            total, _, following_top = row_exp_sum(
                row, top, None, following_row(chained, i, stop), streaming
            )
            out[i] = _row_logsumexp(row, top, total)
            top = following_top


@kernel_part
def _logsumexp_tiles(logits, out):
    """The logsumexp of rows as :func:`_log_softmax_tiles`, with a scratch tile of its own."""
    n_rows, n_classes = logits.shape
    tile_rows, n_tiles = row_tiles(n_rows, n_classes)
    for tile in prange(n_tiles):
        start, stop = tile_span(tile, tile_rows, n_rows)
        tops = np.empty(stop - start, logits.dtype)
        scratch = np.empty((stop - start) * n_classes, logits.dtype)
        log_totals = out[start:stop]
        tile_log_sums(logits[start:stop], tops, scratch, log_totals)
        for r in range(stop - start):
            top = np.float64(tops[r])
            log_totals[r] = log_totals[r] + top if math.isfinite(top) else top


@row_helper
def _row_logsumexp(row, top, total):
    """``top + log(total)``; for a row whose max is not finite, SciPy's and PyTorch's value.

    That is the row's max itself: ``-inf`` for a row entirely ``-inf`` (``log 0``), ``+inf``
    for one holding ``+inf``, ``nan`` for one holding ``nan``. ``top`` of a chained row may
    have skipped a ``nan``: the max is taken again, which :func:`row_max` does exactly.
    """
    inline_into_callers()
    if math.isfinite(top):
        return np.float64(top) + math.log(total)
    return np.float64(row_max(row))
