"""Softmax cross-entropy with integer targets (labels): forward, and forward + gradient.

The forward reads each row from memory once (its max), then from cache (its exp-sum), and
allocates O(rows) memory. The gradient then writes ``A exp(z - m) / S`` and subtracts
the ``a_c``: for rows of more than ``WHOLE_ROW`` classes in one more ``exp`` sweep; for
shorter rows ``exp`` goes once into the gradient, then is summed and scaled in place
while the row or tile is in cache. Arguments are validated and normalised by the public
wrappers; the kernels start with an O(N) pass over the labels that counts those out of
range (the wrapper then raises before anything is written) and sums the weights of the
counted rows (the denominator of "mean").
"""

from __future__ import annotations

import math

import numpy as np
from numba import prange

from fastxent._config import kernel_part
from fastxent._kernels.chains import chain_span, following_row, row_chains, row_prefetch
from fastxent._kernels.dispatch import row_kernel
from fastxent._kernels.reductions import (
    logs_into,
    row_cast_into,
    row_depth,
    row_max,
    row_max_or,
    row_sum,
)
from fastxent._kernels.smoothing import (
    checked_depth,
    checked_depths,
    exp_sum_and_depth,
    smoothing_amounts_into,
)
from fastxent._kernels.sweeps import (
    row_exp_scaled_in_place,
    row_exp_scaled_into,
    row_exp_scaled_minus_in_place,
    row_exp_scaled_minus_into,
)
from fastxent._kernels.tiles import (
    exp_into,
    row_tiles,
    short_rows_depths,
    short_rows_exp,
    short_rows_log_sums,
    short_rows_shift_and_depths,
    tile_exp_log_sums,
    tile_exp_log_sums_and_depths,
    tile_span,
)
from fastxent._kernels.xent_terms import (
    exps_to_gradient,
    gradient_factor,
    label_summary,
    labels_loss,
    target_gradient,
)
from fastxent._simd import exp_clamped
from fastxent._tuning import FORWARD_TILE_CLASSES, SHORT_ROW, WHOLE_ROW


@row_kernel
def xent_labels_forward(
    logits, chained, streaming, target, weight, row_weight, ignore_index, smoothing, losses
):
    """``losses[i]`` = loss of row ``i`` against class ``target[i]`` (0 where ignored).

    ``chained`` is :func:`rows_to_chain` of the logits; ``row_weight`` room for the
    weights in the logits' dtype with label smoothing (filled here), else ``None`` (see
    :func:`exp_sum_and_depth`).
    Returns ``(n_invalid, counted_weight)`` of :func:`label_summary`; with invalid labels
    nothing else is computed.
    """
    n_rows, n_classes = logits.shape
    n_invalid, counted_weight = label_summary(target, weight, ignore_index, n_classes)
    if n_invalid > 0:
        return n_invalid, counted_weight, 0.0
    weight_total = np.sum(weight)
    if row_weight is not None:
        row_cast_into(weight, row_weight)
    if chained is None and n_classes < FORWARD_TILE_CLASSES:
        _labels_forward_tiles(
            logits, target, weight, row_weight, weight_total, ignore_index, smoothing, losses
        )
        return 0, counted_weight, row_sum(losses.reshape(-1))
    chain_rows, n_chains = row_chains(n_rows, chained)
    for chain in prange(n_chains):
        start, stop, top = chain_span(logits, chain, chain_rows)
        for i in range(start, stop):
            row = logits[i]
            following = following_row(chained, i, stop)
            label = target[i]
            if label == ignore_index:
                losses[i] = 0.0
                top = row_max_or(following, top)
                continue
            total, depth, following_top = exp_sum_and_depth(
                row, top, weight, row_weight, smoothing, following, streaming
            )
            log_total = math.log(total)
            losses[i] = labels_loss(
                log_total, top, row[label], weight[label], weight_total, depth, smoothing, n_classes
            )
            top = following_top
    return 0, counted_weight, row_sum(losses.reshape(-1))


@row_kernel
def xent_labels_forward_backward(
    logits,
    chained,
    streaming,
    target,
    weight,
    row_weight,
    amounts,
    ignore_index,
    smoothing,
    mean,
    log_base,
    in_place,
    losses,
    grad,
):
    """Loss per row as in the forward, and the gradient of the reduced loss in ``grad``.

    ``chained`` and ``row_weight`` are as for :func:`xent_labels_forward`; ``amounts``
    (``None`` exactly when ``row_weight`` is) is room in the logits' dtype for label
    smoothing's part of every row's gradient, ``smoothing_amounts_into``.
    The gradient is ``dl/dz`` scaled by ``1 / log_base`` and, with ``mean``, by one over
    the counted weight (0 when nothing is counted); ignored rows get 0. ``in_place`` says
    that ``grad`` is ``logits`` itself: each value is read before its slot is written.
    Returns ``(n_invalid, counted_weight)``; with invalid labels nothing is written.
    """
    n_rows, n_classes = logits.shape
    n_invalid, counted_weight = label_summary(target, weight, ignore_index, n_classes)
    if n_invalid > 0:
        return n_invalid, counted_weight, 0.0
    # Gradient scale 1 / (log_base * denominator), applied as a division so that a tiny
    # (subnormal) denominator does not overflow before it meets the weights above it.
    scale = 1.0 / log_base
    denominator = counted_weight if mean else 1.0
    if denominator == 0.0:
        scale, denominator = 0.0, 1.0
    weight_total = np.sum(weight)
    spread = smoothing / n_classes
    if row_weight is not None:
        row_cast_into(weight, row_weight)
        smoothing_amounts_into(weight, spread, scale, denominator, amounts)
    if chained is None:  # short rows, or all of them in cache
        _labels_forward_backward_tiles(
            logits, target, weight, row_weight, amounts, weight_total, ignore_index,
            smoothing, scale, denominator, losses, grad,
        )  # fmt: skip
        return 0, counted_weight, row_sum(losses.reshape(-1))
    if n_classes <= WHOLE_ROW:
        _labels_forward_backward_rows_once(
            logits, target, weight, row_weight, amounts, weight_total, ignore_index,
            smoothing, scale, denominator, in_place, losses, grad,
        )  # fmt: skip
        return 0, counted_weight, row_sum(losses.reshape(-1))
    chain_rows, n_chains = row_chains(n_rows, chained)
    for chain in prange(n_chains):
        start, stop, top = chain_span(logits, chain, chain_rows)
        for i in range(start, stop):
            label = target[i]
            row = logits[i]
            out = grad[i]
            following = following_row(chained, i, stop)
            if label == ignore_index:
                top = row_max_or(following, top)  # before `out` (`row` in place) is cleared
                losses[i] = 0.0
                out[:] = 0.0
                continue
            target_logit = row[label]
            total, depth, following_top = exp_sum_and_depth(
                row, top, weight, row_weight, smoothing, following, streaming
            )
            # The term of S that belongs to the target, as row_exp_sum computed it.
            target_exp = np.float64(exp_clamped(target_logit - top))
            log_total = math.log(total)
            label_weight = weight[label]
            losses[i] = labels_loss(
                log_total, top, target_logit, label_weight, weight_total, depth, smoothing,
                n_classes,
            )  # fmt: skip
            factor = out.dtype.type(
                gradient_factor(
                    label_weight, weight_total, smoothing, scale, denominator, n_classes, total
                )
            )
            if amounts is None:
                if in_place:
                    row_exp_scaled_in_place(out, top, factor)
                else:
                    row_exp_scaled_into(row, top, factor, out)
            elif in_place:
                row_exp_scaled_minus_in_place(out, top, factor, amounts)
            else:
                row_exp_scaled_minus_into(row, top, factor, amounts, out)
            out[label] = target_gradient(
                total, target_exp, label_weight, weight_total, smoothing, spread, scale,
                denominator,
            )  # fmt: skip
            top = following_top
    return 0, counted_weight, row_sum(losses.reshape(-1))


@kernel_part
def _labels_forward_backward_rows_once(
    logits,
    target,
    weight,
    row_weight,
    amounts,
    weight_total,
    ignore_index,
    smoothing,
    scale,
    denominator,
    in_place,
    losses,
    grad,
):
    """The sparse forward + gradient for rows of at most ``WHOLE_ROW`` classes from memory.

    Row by row, ``exp(z - m)`` is computed once, into the gradient's row, then summed and
    scaled there while the row is in L1. (The long rows' kernel computes it twice, once
    for the sum and once for the gradient: a row of 32000 classes does not stay in L1.)
    """
    n_rows, n_classes = logits.shape
    spread = smoothing / n_classes
    one = grad.dtype.type(1.0)
    for i in prange(n_rows):
        label = target[i]
        out = grad[i]
        row = logits[i]
        if label == ignore_index:
            row_prefetch(row)  # read it anyway: a skipped row breaks the prefetcher's stream
            losses[i] = 0.0
            out[:] = 0.0
            continue
        top = row_max(row)
        target_logit = row[label]
        depth = 0.0
        if row_weight is not None:  # before `out` (maybe the row itself) is written
            depth = checked_depth(row_depth(row, top, row_weight), row, weight, top, spread)
        if in_place:
            row_exp_scaled_in_place(out, top, one)
        else:
            row_exp_scaled_into(row, top, one, out)
        total = row_sum(out)
        label_weight = weight[label]
        losses[i] = labels_loss(
            math.log(total), top, target_logit, label_weight, weight_total, depth, smoothing,
            n_classes,
        )  # fmt: skip
        exps_to_gradient(
            out, total, label, label_weight, weight_total, amounts, smoothing, scale, denominator
        )


@kernel_part
def _labels_forward_tiles(
    logits, target, weight, row_weight, weight_total, ignore_index, smoothing, losses
):
    """The sparse forward for in-cache rows of fewer than ``FORWARD_TILE_CLASSES`` classes.

    A tile of rows at once: maxima and log-sums from :func:`tile_log_sums` (down the
    columns of the transposed tile for rows of at most 32 classes, else after one flat
    ``exp`` loop over the tile), where row loops would run scalar remainders.

    ``row_weight``: the weights in the logits' dtype with label smoothing (``None``: off).
    """
    n_rows, n_classes = logits.shape
    spread = smoothing / n_classes
    tile_rows, n_tiles = row_tiles(n_rows, n_classes)
    for tile in prange(n_tiles):
        start, stop = tile_span(tile, tile_rows, n_rows)
        block = logits[start:stop]
        tops = np.empty(stop - start, logits.dtype)
        log_totals = np.empty(stop - start)
        depths = np.zeros(stop - start)
        if n_classes <= SHORT_ROW:
            columns = np.empty((n_classes, stop - start), logits.dtype)
            short_rows_log_sums(block, tops, columns, log_totals)
            if row_weight is not None:
                short_rows_depths(columns, tops, row_weight, depths)
        else:
            scratch = np.empty((stop - start, n_classes), logits.dtype)
            if row_weight is None:
                tile_exp_log_sums(block, tops, scratch, log_totals)
            else:
                tile_exp_log_sums_and_depths(block, tops, row_weight, scratch, log_totals, depths)
        if row_weight is not None:
            checked_depths(block, tops, weight, spread, depths)
        for r in range(stop - start):
            label = target[start + r]
            if label == ignore_index:
                losses[start + r] = 0.0
                continue
            losses[start + r] = labels_loss(
                log_totals[r], tops[r], block[r, label], weight[label], weight_total, depths[r],
                smoothing, n_classes,
            )  # fmt: skip


@kernel_part
def _labels_forward_backward_tiles(
    logits,
    target,
    weight,
    row_weight,
    amounts,
    weight_total,
    ignore_index,
    smoothing,
    scale,
    denominator,
    losses,
    grad,
):
    """The sparse forward + gradient, a tile of rows at once; ``grad`` may be ``logits``.

    ``exp(z - m)`` is computed once per element, into ``grad``, then summed and scaled in
    place while the tile is in cache. (For rows from memory a tile of 1000-class rows
    outgrows L1: :func:`_labels_forward_backward_rows_once` takes them one at a time.)
    """
    n_rows, n_classes = logits.shape
    spread = smoothing / n_classes
    tile_rows, n_tiles = row_tiles(n_rows, n_classes)
    for tile in prange(n_tiles):
        start, stop = tile_span(tile, tile_rows, n_rows)
        block = logits[start:stop]
        out = grad[start:stop]
        # Everything read from the logits is read before `out` (maybe the logits) is written.
        target_logits = np.empty(stop - start, logits.dtype)
        depths = np.zeros(stop - start)
        tops = np.empty(stop - start, logits.dtype)
        for r in range(stop - start):
            label = target[start + r]
            target_logits[r] = block[r, 0] if label == ignore_index else block[r, label]
            tops[r] = row_max(block[r])
        if row_weight is None:
            short_rows_exp(block, tops, out)
        else:
            # Label smoothing's depths in the same sweep as the subtraction (a row loop of
            # their own would read the tile again), into scratch so that the logits stay
            # intact for checked_depths (in place too).
            shifted = np.empty((stop - start, n_classes), logits.dtype)
            short_rows_shift_and_depths(block, tops, row_weight, shifted, depths)
            checked_depths(block, tops, weight, spread, depths)
            exp_into(shifted.reshape(-1), out.reshape(-1))
        totals = np.empty(stop - start)
        for r in range(stop - start):
            totals[r] = row_sum(out[r])
        log_totals = np.empty(stop - start)
        logs_into(totals, log_totals)
        for r in range(stop - start):
            label = target[start + r]
            row_out = out[r]
            if label == ignore_index:
                losses[start + r] = 0.0
                row_out[:] = 0.0
                continue
            total = totals[r]
            label_weight = weight[label]
            losses[start + r] = labels_loss(
                log_totals[r], tops[r], target_logits[r], label_weight, weight_total,
                depths[r], smoothing, n_classes,
            )  # fmt: skip
            exps_to_gradient(
                row_out, total, label, label_weight, weight_total, amounts, smoothing, scale,
                denominator,
            )  # fmt: skip
