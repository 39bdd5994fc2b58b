"""Softmax cross-entropy kernels, forward and forward + gradient, over rows of classes.

Every loss here has the form ``l = sum_c a_c * (-log p_c)`` with target masses ``a_c``
and ``A = sum_c a_c``. With ``m = max(z)`` and ``S = sum_c exp(z_c - m)``:

    l = A * log(S) + sum_c a_c * (m - z_c)    (weights >= 0: both terms >= 0, no cancellation)
    dl/dz_c = A * p_c - a_c,   p_c = exp(z_c - m) / S

Integer targets (``sparse``) have ``a_c = (1 - eps) w_y [c == y] + (eps / C) w_c``;
probability targets (``dense``) have ``a_c = w_c ((1 - eps) q_c + eps / C)``. The forward
kernels read each row from memory once (its max), then again from cache (its exp-sum), and
allocate O(rows) memory only. The gradient kernels then write ``A exp(z - m) / S`` and
subtract the ``a_c``: for rows of more than 1024 classes from memory in one more ``exp``
sweep (recomputing ``exp`` costs less than storing it and scaling it in place once the row
has left L1); for shorter rows, ``exp`` once into the gradient, then summed and scaled in
place while the row or the tile is in cache.

Arguments are already validated and normalised by the public wrappers: C-contiguous 2-D
logits, int64 targets, float64 weights. The integer-target kernels start with an O(N) pass
over the labels that counts those out of range (the wrapper then raises, before anything
was written) and sums the weights of the counted rows (the denominator of "mean").
"""

from __future__ import annotations

import math

import numpy as np
from numba import prange

from fastxent._config import kernel_part, primitive, row_helper
from fastxent._kernels.dispatch import row_kernel
from fastxent._kernels.rows import (
    SHORT_ROW,
    WHOLE_ROW,
    chain_span,
    exp_into,
    following_row,
    logs_into,
    row_cast_into,
    row_chains,
    row_exp_scaled_in_place,
    row_exp_scaled_into,
    row_exp_scaled_minus_in_place,
    row_exp_scaled_minus_into,
    row_exp_sum,
    row_exp_sum_and_gap,
    row_exp_sum_and_max,
    row_exp_sum_gap_and_max,
    row_gap,
    row_kl_divergence,
    row_max,
    row_max_or,
    row_prefetch,
    row_scale,
    row_scale_and_subtract,
    row_subtract_target,
    row_sum,
    row_target_gap,
    row_target_mass,
    row_tiles,
    row_weighted_gap,
    short_rows_exp,
    short_rows_gaps,
    short_rows_log_sums,
    short_rows_shift_and_gaps,
    tile_exp_log_sums,
    tile_exp_log_sums_and_gaps,
    tile_span,
)
from fastxent._simd import exp_clamped, inline_into_callers

# The forward takes in-cache rows of fewer than FORWARD_TILE_CLASSES classes by tiles.
FORWARD_TILE_CLASSES = 128


@row_helper
def label_summary(target, weight, ignore_index, n_classes):
    """Count invalid labels and weights, and sum ``weight[y]`` of the counted rows.

    Invalid: labels outside ``[0, C)`` and not ignored, weights not finite (any sign is
    valid, as in PyTorch).
    Returns ``(n_invalid, counted_weight)``. (The wrappers check the weights of most calls
    themselves; the common call leaves it to this loop, which costs nothing next to a row.)
    """
    inline_into_callers()
    n_invalid = 0
    for c in range(weight.size):
        if not abs(weight[c]) < np.inf:  # also nan
            n_invalid += 1
    counted_weight = 0.0
    for i in range(target.size):
        label = target[i]
        if label == ignore_index:
            continue
        if label < 0 or label >= n_classes:
            n_invalid += 1
        else:
            counted_weight += weight[label]
    return n_invalid, counted_weight


@row_kernel
def xent_sparse_forward(
    logits, chained, streaming, target, weight, row_weight, ignore_index, smoothing, losses
):
    """``losses[i]`` = loss of row ``i`` against class ``target[i]`` (0 where ignored).

    ``chained`` is :func:`rows_to_chain` of the logits; ``row_weight`` room for the
    weights in the logits' dtype with label smoothing (filled here), else ``None`` (see
    :func:`exp_sum_and_gap`).
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
        _sparse_forward_tiles(
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
            total, gap, following_top = exp_sum_gap_and_max(
                row, top, weight, row_weight, smoothing, following, streaming
            )
            log_total = math.log(total)
            losses[i] = sparse_loss(
                log_total, top, row[label], weight[label], weight_total, gap, smoothing, n_classes
            )
            top = following_top
    return 0, counted_weight, row_sum(losses.reshape(-1))


@row_kernel
def xent_sparse_forward_backward(
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

    ``chained`` and ``row_weight`` are as for :func:`xent_sparse_forward`; ``amounts``
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
        _sparse_forward_backward_tiles(
            logits, target, weight, row_weight, amounts, weight_total, ignore_index,
            smoothing, scale, denominator, losses, grad,
        )  # fmt: skip
        return 0, counted_weight, row_sum(losses.reshape(-1))
    if n_classes <= WHOLE_ROW:
        _sparse_forward_backward_rows_once(
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
            total, gap, following_top = exp_sum_gap_and_max(
                row, top, weight, row_weight, smoothing, following, streaming
            )
            # The term of S that belongs to the target, as row_exp_sum computed it.
            target_exp = np.float64(exp_clamped(target_logit - top))
            log_total = math.log(total)
            label_weight = weight[label]
            losses[i] = sparse_loss(
                log_total, top, target_logit, label_weight, weight_total, gap, smoothing,
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
def _sparse_forward_backward_rows_once(
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
            row_prefetch(row)  # read it anyway: a gap slows the rows after it
            losses[i] = 0.0
            out[:] = 0.0
            continue
        top = row_max(row)
        target_logit = row[label]
        gap = 0.0
        if row_weight is not None:  # before `out` (maybe the row itself) is written
            gap = checked_gap(row_gap(row, top, row_weight), row, weight, top, spread)
        if in_place:
            row_exp_scaled_in_place(out, top, one)
        else:
            row_exp_scaled_into(row, top, one, out)
        total = row_sum(out)
        label_weight = weight[label]
        losses[i] = sparse_loss(
            math.log(total), top, target_logit, label_weight, weight_total, gap, smoothing,
            n_classes,
        )  # fmt: skip
        exps_to_gradient(
            out, total, label, label_weight, weight_total, amounts, smoothing, scale, denominator
        )


@kernel_part
def _sparse_forward_tiles(
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
        gaps = np.zeros(stop - start)
        if n_classes <= SHORT_ROW:
            columns = np.empty((n_classes, stop - start), logits.dtype)
            short_rows_log_sums(block, tops, columns, log_totals)
            if row_weight is not None:
                short_rows_gaps(columns, tops, row_weight, gaps)
        else:
            scratch = np.empty((stop - start, n_classes), logits.dtype)
            if row_weight is None:
                tile_exp_log_sums(block, tops, scratch, log_totals)
            else:
                tile_exp_log_sums_and_gaps(block, tops, row_weight, scratch, log_totals, gaps)
        if row_weight is not None:
            checked_gaps(block, tops, weight, spread, gaps)
        for r in range(stop - start):
            label = target[start + r]
            if label == ignore_index:
                losses[start + r] = 0.0
                continue
            losses[start + r] = sparse_loss(
                log_totals[r], tops[r], block[r, label], weight[label], weight_total, gaps[r],
                smoothing, n_classes,
            )  # fmt: skip


@kernel_part
def _sparse_forward_backward_tiles(
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
    outgrows L1: :func:`_sparse_forward_backward_rows_once` takes them one at a time.)
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
        gaps = np.zeros(stop - start)
        tops = np.empty(stop - start, logits.dtype)
        for r in range(stop - start):
            label = target[start + r]
            target_logits[r] = block[r, 0] if label == ignore_index else block[r, label]
            tops[r] = row_max(block[r])
        if row_weight is None:
            short_rows_exp(block, tops, out)
        else:
            # Label smoothing's gaps in the same sweep as the subtraction, into scratch so
            # that the logits stay intact for checked_gaps (in place too). Summed in a row
            # loop of their own, they made the smoothed call ~1.2-1.3x the plain one's
            # time (now ~1.05-1.15x).
            shifted = np.empty((stop - start, n_classes), logits.dtype)
            short_rows_shift_and_gaps(block, tops, row_weight, shifted, gaps)
            checked_gaps(block, tops, weight, spread, gaps)
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
            losses[start + r] = sparse_loss(
                log_totals[r], tops[r], target_logits[r], label_weight, weight_total,
                gaps[r], smoothing, n_classes,
            )  # fmt: skip
            exps_to_gradient(
                row_out, total, label, label_weight, weight_total, amounts, smoothing, scale,
                denominator,
            )  # fmt: skip


@row_kernel
def xent_dense_forward(
    logits, chained, streaming, target, weight, smoothing, with_target_entropy, losses
):
    """``losses[i]`` = loss of row ``i`` against the distribution ``target[i]``.

    With ``with_target_entropy`` the row's ``sum_c q_c log q_c`` is added, which turns the
    cross-entropy into the KL divergence ``KL(q || softmax(z))``. ``chained`` is as for
    :func:`xent_sparse_forward`.
    """
    n_rows, n_classes = logits.shape
    keep = 1.0 - smoothing
    spread = smoothing / n_classes
    chain_rows, n_chains = row_chains(n_rows, chained)
    for chain in prange(n_chains):
        start, stop, top = chain_span(logits, chain, chain_rows)
        for i in range(start, stop):
            row = logits[i]
            probabilities = target[i]
            total, following_top = row_exp_sum_and_max(
                row, top, following_row(chained, i, stop), streaming
            )
            log_total = math.log(total)
            if with_target_entropy:
                losses[i] = row_kl_divergence(row, probabilities, top, log_total)
            else:
                mass, gap = dense_mass_and_gap(row, probabilities, weight, keep, spread, top)
                losses[i] = mass * log_total + gap
            top = following_top


@row_kernel
def xent_dense_forward_backward(
    logits, chained, streaming, target, weight, smoothing, scale, in_place, losses, grad
):
    """Loss per row as in the dense forward, and ``grad = scale * dl/dz``.

    ``chained`` is as for :func:`xent_sparse_forward`: rows from memory of more than
    ``WHOLE_ROW`` classes go in chains (:func:`row_chains`), summed before ``exp`` is
    written scaled; the others are taken one at a time, with ``exp`` computed once.
    """
    n_rows, n_classes = logits.shape
    if chained is None or n_classes <= WHOLE_ROW:
        _dense_forward_backward_rows_once(
            logits, target, weight, smoothing, scale, in_place, losses, grad
        )
        return
    keep = 1.0 - smoothing
    spread = smoothing / n_classes
    chain_rows, n_chains = row_chains(n_rows, chained)
    for chain in prange(n_chains):
        start, stop, top = chain_span(logits, chain, chain_rows)
        for i in range(start, stop):
            row = logits[i]
            out = grad[i]
            probabilities = target[i]
            mass, gap = dense_mass_and_gap(row, probabilities, weight, keep, spread, top)
            total, following_top = row_exp_sum_and_max(
                row, top, following_row(chained, i, stop), streaming
            )
            factor = out.dtype.type(scale * mass / total)
            if in_place:
                row_exp_scaled_in_place(out, top, factor)
            else:
                row_exp_scaled_into(row, top, factor, out)
            losses[i] = mass * math.log(total) + gap
            row_subtract_target(out, probabilities, weight, keep, spread, scale)
            top = following_top


@kernel_part
def _dense_forward_backward_rows_once(
    logits, target, weight, smoothing, scale, in_place, losses, grad
):
    """The dense forward + gradient of rows that stay in cache from ``exp`` to scaling.

    ``exp(z - m)`` is computed once, into the gradient row, then summed and scaled there.
    """
    n_rows, n_classes = logits.shape
    keep = 1.0 - smoothing
    spread = smoothing / n_classes
    one = grad.dtype.type(1.0)
    for i in prange(n_rows):
        row = logits[i]
        out = grad[i]
        probabilities = target[i]
        top = row_max(row)
        mass, gap = dense_mass_and_gap(row, probabilities, weight, keep, spread, top)
        if in_place:
            row_exp_scaled_in_place(out, top, one)
        else:
            row_exp_scaled_into(row, top, one, out)
        total = row_sum(out)
        row_scale(out, out.dtype.type(scale * mass / total))
        losses[i] = mass * math.log(total) + gap
        row_subtract_target(out, probabilities, weight, keep, spread, scale)


@row_helper
def dense_mass_and_gap(row, probabilities, weight, keep, spread, top):
    """``(A, gap)`` of a row against ``probabilities``: its loss is ``A log S + gap``.

    ``A = sum_c a_c`` and ``gap = sum_c a_c (m - z_c)`` for the shift ``m = top``, with
    ``a_c = w_c (keep q_c + spread)`` (label smoothing's ``keep = 1 - eps`` and
    ``spread = eps / C``).
    """
    inline_into_callers()
    mass = row_target_mass(probabilities, weight, keep, spread)
    return mass, row_target_gap(row, probabilities, weight, keep, spread, top)


@row_helper
def exps_to_gradient(
    out, total, label, label_weight, weight_total, amounts, smoothing, scale, denominator
):
    """Turn a row's ``out = exp(z - m)``, which sums to ``total``, into its gradient in place.

    ``scale * (A exp(z - m) / S - a_c) / denominator``, with label smoothing's part of
    ``a_c`` given by ``amounts`` (``None``: no smoothing) and the target's entry from
    :func:`target_gradient`.
    """
    inline_into_callers()
    spread = smoothing / out.size
    target_exp = np.float64(out[label])
    factor = out.dtype.type(
        gradient_factor(label_weight, weight_total, smoothing, scale, denominator, out.size, total)
    )
    if amounts is None:
        row_scale(out, factor)
    else:
        row_scale_and_subtract(out, factor, amounts)
    out[label] = target_gradient(
        total, target_exp, label_weight, weight_total, smoothing, spread, scale, denominator
    )


@row_helper
def exp_sum_and_gap(row, top, weight, row_weight, smoothing):
    """``(S, gap)``: the row's exp-sum and label smoothing's ``(eps / C) sum_c w_c (m - z_c)``.

    One sweep computes both, with the weights in the row's dtype (``row_weight``); where
    that dtype cannot hold the gap's terms, :func:`row_weighted_gap` recomputes it in
    float64 from ``weight``. Without smoothing (``row_weight=None``) the gap is 0 and not
    computed: the kernels are then compiled without its code (left in the row loop, it cost
    ~90 ns per row of 100 classes).
    """
    inline_into_callers()
    if row_weight is None:
        return row_exp_sum(row, top), 0.0
    spread = smoothing / row.size
    total, gap = row_exp_sum_and_gap(row, top, row_weight)
    return total, checked_gap(gap, row, weight, top, spread)


@row_helper
def exp_sum_gap_and_max(row, top, weight, row_weight, smoothing, following, streaming):
    """:func:`exp_sum_and_gap`, and the max of ``following`` taken in the same sweep.

    ``following``: the next row of the chain (:func:`row_chains`); ``None`` sums the row
    whole and gives ``top`` back for the max. ``streaming``: as for
    :func:`row_exp_sum_gap_and_max`.
    """
    inline_into_callers()
    if following is None:
        total, gap = exp_sum_and_gap(row, top, weight, row_weight, smoothing)
        return total, gap, top
    if row_weight is None:
        total, _, following_top = row_exp_sum_gap_and_max(row, top, None, following, streaming)
        return total, 0.0, following_top
    spread = smoothing / row.size
    total, gap, following_top = row_exp_sum_gap_and_max(row, top, row_weight, following, streaming)
    return total, checked_gap(gap, row, weight, top, spread), following_top


@row_helper
def checked_gap(gap, row, weight, top, spread):
    """Label smoothing's ``spread * gap``, from a gap summed the fast way.

    The fast sums (in the row's dtype, or down a tile's columns) come out ``inf`` or
    ``nan`` where a term does; the gap is then taken again by :func:`row_weighted_gap`.
    """
    inline_into_callers()
    if math.isfinite(gap):
        return spread * gap
    return row_weighted_gap(row, weight, top, spread)


@row_helper
def checked_gaps(block, tops, weight, spread, gaps):
    """:func:`checked_gap` for each row of a tile, in place in ``gaps``.

    A loop of its own, after the one that sums the gaps, and the row's view taken only in
    the rare branch that needs it: with the fallback inside the summing loop the gradient
    of 65536 x 10 with label smoothing took 2.5x the time; with the view taken for every
    row (``checked_gap(gaps[r], block[r], ...)``), 1.6x.
    """
    inline_into_callers()
    # Each gap is finite, inf or nan: their sum is finite only if every one is. Tested
    # first, so that the common case is a vector loop (the smoothed forward of
    # 65536 x 10 took 0.96x the time).
    total = 0.0
    for r in range(gaps.size):
        total += gaps[r]
    if math.isfinite(total):
        for r in range(gaps.size):
            gaps[r] *= spread
        return
    for r in range(gaps.size):
        if math.isfinite(gaps[r]):
            gaps[r] *= spread
        else:
            gaps[r] = row_weighted_gap(block[r], weight, tops[r], spread)


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


@row_helper
def gradient_factor(label_weight, weight_total, smoothing, scale, denominator, n_classes, total):
    """``scale * A / (denominator * S)``: what multiplies a row's ``exp(z - m)`` in its gradient.

    ``A = (1 - eps) w_y + (eps / C) sum_c w_c`` is the row's target mass and ``S`` its
    exp-sum ``total``.
    """
    inline_into_callers()
    mass = (1.0 - smoothing) * label_weight + smoothing / n_classes * weight_total
    return scale * (mass / denominator) / total


@primitive
def target_gradient(
    total, target_exp, label_weight, weight_total, smoothing, spread, scale, denominator
):
    """The gradient at the target class, ``scale * (A p_y - a_y) / denominator``, in float64.

    Written with ``1 - p_y = (S - e_y) / S``: on a confident row ``p_y`` rounds to 1 in
    float32 and ``p_y - 1`` computed there would keep no correct digit.
    """
    p_target = target_exp / total
    nll_part = -(1.0 - smoothing) * label_weight * ((total - target_exp) / total)
    smooth_part = spread * (weight_total * p_target - label_weight)
    return scale * ((nll_part + smooth_part) / denominator)


@primitive
def sparse_loss(
    log_total, top, target_logit, label_weight, weight_total, gap, smoothing, n_classes
):
    """One row's integer-target loss from its pieces (see the module docstring).

    Compiled without ``reassoc``: LLVM would otherwise rewrite ``log S + (m - z_y)`` as
    ``(log S + m) - z_y``, which loses ``log S`` next to logits of 1e30. ``gap`` is the
    smoothing term's ``(eps / C) sum_c w_c (m - z_c)``, already scaled.
    """
    nll_weight = (1.0 - smoothing) * label_weight
    # A zero weight removes the term even when the target logit is -inf (0 * inf = 0), but
    # a nan row (nan log_total) still gives nan.
    if nll_weight != 0.0:
        loss = nll_weight * (log_total + (np.float64(top) - np.float64(target_logit)))
    else:
        loss = 0.0 * log_total
    if smoothing > 0.0:
        loss += smoothing / n_classes * weight_total * log_total + gap
    return loss
