"""The fused sweep of ``linear_cross_entropy`` over a class-major chunk of logits ``(V, R)``.

``linear_weight @ input_chunk.T`` (V x R) runs at nearly the speed of the whole product
even for a few rows, where ``input_chunk @ linear_weight.T`` (R x V) is up to a quarter
slower; so the chunk's logits are stored one class per row. The sweep walks the classes
for a tile of positions (rows of the input) at once, vector lanes along the positions,
and turns the logits into the gradient in place. It adds the bias and soft-caps the
logits on its first pass; the z-loss and label smoothing are as in ``xent_softcap_zloss``.
"""

from __future__ import annotations

import math

import numpy as np
from numba import prange

from fastxent._config import row_helper
from fastxent._kernels.dispatch import row_kernel
from fastxent._kernels.xent_softcap_zloss import cap_derivative, capped
from fastxent._kernels.xent_terms import label_summary, labels_loss, target_gradient
from fastxent._simd import exp_nonpositive, fmaximum, inline_into_callers


@row_helper
def _prepare_tile(logits, bias, cap, inverse, start, stop, top):
    """Add the bias and cap the tile's logits in place; ``top`` = each position's max."""
    inline_into_callers()
    top[:] = -np.inf
    for c in range(logits.shape[0]):
        row = logits[c, start:stop]  # 0-based 1-D loops: LLVM vectorises them
        if bias is None:
            shift = logits.dtype.type(0.0)
        else:
            shift = bias[c]
        for j in range(row.size):
            z = capped(row[j] + shift, cap, inverse)
            if bias is not None or cap is not None:
                row[j] = z
            top[j] = fmaximum(top[j], z)


@row_helper
def _exp_sums(logits, weight, start, stop, top, total, depth):
    """Add each position's ``sum_c exp(z_c - m)`` to ``total``.

    With a ``weight`` (label smoothing's), also ``sum_c w_c (m - z_c)`` to ``depth``, zero
    weights contributing 0.
    """
    inline_into_callers()
    for c in range(logits.shape[0]):
        row = logits[c, start:stop]
        for j in range(row.size):
            total[j] += np.float64(exp_nonpositive(row[j] - top[j]))
        if weight is not None and weight[c] != 0.0:
            for j in range(row.size):
                depth[j] += weight[c] * (np.float64(top[j]) - np.float64(row[j]))


@row_helper
def _gradient_in_place(logits, weight, amount, cap, inverse, start, stop, top, coefficient):
    """``z -> (coefficient exp(z - m) - amount w_c) (1 - (z / s)**2)`` over the tile."""
    inline_into_callers()
    one = logits.dtype.type(1.0)
    for c in range(logits.shape[0]):
        row = logits[c, start:stop]
        shift = 0.0 if weight is None else amount * weight[c]
        for j in range(row.size):
            z = row[j]
            g = coefficient[j] * np.float64(exp_nonpositive(z - top[j])) - shift
            if cap is not None:
                t = z * inverse
                g *= one - t * t
            row[j] = g


@row_kernel
def class_major_labels(
    logits, bias, target, weight, smoothing_weight, ignore_index, smoothing, cap, inverse,
    z_loss, divisor, with_grad, tile, losses,
):  # fmt: skip
    """Loss of each position ``b`` of ``logits`` (V, R) against class ``target[b]``.

    ``bias`` (``None`` or ``(V,)``) is added to the logits and ``cap``/``inverse`` (as in
    ``softcap_zloss_labels``) soft-cap them, both in place. With ``with_grad`` the logits
    are then replaced by the gradient, divided by ``divisor`` (the whole batch's mean
    denominator times ``ln(base)``). ``tile`` positions go to each parallel task.
    ``smoothing_weight`` is ``weight`` with label smoothing, else ``None``.
    Returns ``(n_invalid, counted_weight)`` of :func:`label_summary`; with invalid labels
    nothing is written.
    """
    n_classes, n_positions = logits.shape
    n_invalid, counted_weight = label_summary(target, weight, ignore_index, n_classes)
    if n_invalid > 0:
        return n_invalid, counted_weight
    weight_total = np.sum(weight)
    spread = smoothing / n_classes
    n_tiles = (n_positions + tile - 1) // tile
    for task in prange(n_tiles):
        start = task * tile
        stop = min(start + tile, n_positions)
        width = stop - start
        top = np.empty(width, logits.dtype)
        total = np.zeros(width)
        depth = np.zeros(width)
        coefficient = np.zeros(width)
        _prepare_tile(logits, bias, cap, inverse, start, stop, top)
        _exp_sums(logits, smoothing_weight, start, stop, top, total, depth)
        target_logit = np.empty(width, logits.dtype)
        for b in range(start, stop):
            label = target[b]
            if label == ignore_index:
                losses[b] = 0.0
                continue
            target_logit[b - start] = logits[label, b]
            label_weight = weight[label]
            log_total = math.log(total[b - start])
            lse = np.float64(top[b - start]) + log_total
            loss = labels_loss(
                log_total, top[b - start], target_logit[b - start], label_weight, weight_total,
                spread * depth[b - start], smoothing, n_classes,
            )  # fmt: skip
            if z_loss != 0.0 and label_weight != 0.0:
                loss += z_loss * label_weight * lse * lse
            losses[b] = loss
            mass = (1.0 - smoothing) * label_weight + spread * weight_total
            z_mass = 2.0 * z_loss * label_weight * lse if z_loss != 0.0 else 0.0
            coefficient[b - start] = (mass + z_mass) / (total[b - start] * divisor)
        if not with_grad:
            continue
        _gradient_in_place(
            logits, smoothing_weight, spread / divisor, cap, inverse, start, stop, top,
            coefficient,
        )  # fmt: skip
        for b in range(start, stop):
            label = target[b]
            if label == ignore_index:
                for c in range(n_classes):
                    logits[c, b] = 0.0
                continue
            label_weight = weight[label]
            zy = target_logit[b - start]
            target_exp = math.exp(np.float64(zy) - np.float64(top[b - start]))
            lse = np.float64(top[b - start]) + math.log(total[b - start])
            z_mass = 2.0 * z_loss * label_weight * lse if z_loss != 0.0 else 0.0
            part = target_gradient(
                total[b - start], target_exp, label_weight, weight_total, smoothing, spread,
                1.0, divisor,
            )  # fmt: skip
            p_target = target_exp / total[b - start]
            logits[label, b] = (part + z_mass * p_target / divisor) * cap_derivative(
                zy, cap, inverse
            )
    return 0, counted_weight


@row_kernel
def class_major_partials(
    logits, bias, target, first_class, smoothing_weight, seen_weight, cap, inverse, tile, top,
    total, depth, target_logit,
):  # fmt: skip
    """Fold a block of classes into each position's running statistics (a forward in blocks).

    ``logits`` (V_b, R) are the classes ``[first_class, first_class + V_b)``, class-major;
    ``bias`` (their part, or ``None``) is added and ``cap`` applied in place. The running
    statistics are float64, one per position: ``top`` the max of ``z'``, ``total`` the
    exp-sum ``sum_c exp(z'_c - top)``, and with a ``smoothing_weight`` (the block's part)
    ``depth = sum_c w_c (top - z'_c)``, where ``seen_weight`` is ``sum_c w_c`` over the
    classes of earlier blocks; ``target_logit`` takes ``z'`` of a target in the block.
    """
    n_classes, n_positions = logits.shape
    n_tiles = (n_positions + tile - 1) // tile
    for task in prange(n_tiles):
        start = task * tile
        stop = min(start + tile, n_positions)
        width = stop - start
        block_top = np.empty(width, logits.dtype)
        _prepare_tile(logits, bias, cap, inverse, start, stop, block_top)
        shift = np.empty(width, logits.dtype)
        for j in range(width):
            old = top[start + j]
            new = max(old, np.float64(block_top[j]))
            if block_top[j] != block_top[j]:
                new = np.nan
            if new != old:  # rescale what earlier blocks summed to the new max
                total[start + j] *= math.exp(old - new) if old > -np.inf else 0.0
                if smoothing_weight is not None and seen_weight != 0.0:
                    depth[start + j] += seen_weight * (new - old)
            top[start + j] = new
            shift[j] = logits.dtype.type(new)
        block_total = np.zeros(width)
        block_depth = np.zeros(width)
        _exp_sums(logits, smoothing_weight, start, stop, shift, block_total, block_depth)
        for j in range(width):
            total[start + j] += block_total[j]
            depth[start + j] += block_depth[j]
            label = target[start + j] - first_class
            if 0 <= label < n_classes:
                target_logit[start + j] = logits[label, start + j]
