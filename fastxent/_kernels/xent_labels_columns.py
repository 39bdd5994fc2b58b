"""Integer-target cross-entropy with the class axis in the middle, ``(A, C, B)``, read in place.

PyTorch's ``(N, C, d1, ...)`` layout: a copy into rows would cost a pass over the logits,
so these kernels walk the classes down the middle axis for a tile of positions at once.
"""

from __future__ import annotations

import math

import numpy as np
from numba import prange

from fastxent._config import row_helper
from fastxent._kernels.dispatch import row_kernel
from fastxent._kernels.reductions import row_sum
from fastxent._kernels.xent_terms import (
    gradient_factor,
    label_summary,
    labels_loss,
    target_gradient,
)
from fastxent._simd import exp_nonpositive, fmaximum, inline_into_callers
from fastxent._tuning import COLUMN_TILE


@row_helper
def _tile_max(logits, a, start, stop, top):
    inline_into_callers()
    n_classes = logits.shape[1]
    for b in range(start, stop):
        top[b - start] = logits[a, 0, b]
    for c in range(1, n_classes):
        for b in range(start, stop):
            top[b - start] = fmaximum(top[b - start], logits[a, c, b])


@row_kernel
def xent_columns_forward(logits, target, weight, ignore_index, smoothing, losses):
    """``losses[a, b]`` = loss at sample ``a``, position ``b``; see ``xent_labels_forward``.

    Returns ``(n_invalid, counted_weight)``; with invalid labels nothing else is computed.
    """
    n_outer, n_classes, n_inner = logits.shape
    n_invalid, counted_weight = label_summary(target.reshape(-1), weight, ignore_index, n_classes)
    if n_invalid > 0:
        return n_invalid, counted_weight, 0.0
    weight_total = np.sum(weight)
    spread = smoothing / n_classes
    n_tiles = (n_inner + COLUMN_TILE - 1) // COLUMN_TILE
    for task in prange(n_outer * n_tiles):
        a = task // n_tiles
        start = (task % n_tiles) * COLUMN_TILE
        stop = min(start + COLUMN_TILE, n_inner)
        top = np.empty(stop - start, logits.dtype)
        total = np.zeros(stop - start)
        depth = np.zeros(stop - start)
        _tile_max(logits, a, start, stop, top)
        for c in range(n_classes):
            for b in range(start, stop):
                total[b - start] += exp_nonpositive(logits[a, c, b] - top[b - start])
        if smoothing > 0.0:
            for c in range(n_classes):
                if weight[c] != 0.0:
                    for b in range(start, stop):
                        depth[b - start] += (
                            spread
                            * weight[c]
                            * (np.float64(top[b - start]) - np.float64(logits[a, c, b]))
                        )
        for b in range(start, stop):
            label = target[a, b]
            if label == ignore_index:
                losses[a, b] = 0.0
                continue
            losses[a, b] = labels_loss(
                math.log(total[b - start]), top[b - start], logits[a, label, b],
                weight[label], weight_total, depth[b - start], smoothing, n_classes,
            )  # fmt: skip
    return 0, counted_weight, row_sum(losses.reshape(-1))


@row_kernel
def xent_columns_forward_backward(
    logits, target, weight, ignore_index, smoothing, mean, log_base, in_place, losses, grad
):
    """Loss as in the forward, and the gradient of the reduced loss in ``grad`` (A, C, B).

    Same contract as ``xent_labels_forward_backward``; ``grad`` may be ``logits`` itself
    (``in_place``), every value being read before it is overwritten.
    """
    n_outer, n_classes, n_inner = logits.shape
    n_invalid, counted_weight = label_summary(target.reshape(-1), weight, ignore_index, n_classes)
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
    n_tiles = (n_inner + COLUMN_TILE - 1) // COLUMN_TILE
    for task in prange(n_outer * n_tiles):
        a = task // n_tiles
        start = (task % n_tiles) * COLUMN_TILE
        stop = min(start + COLUMN_TILE, n_inner)
        width = stop - start
        top = np.empty(width, logits.dtype)
        total = np.zeros(width)
        depth = np.zeros(width)
        target_logit = np.empty(width, logits.dtype)
        _tile_max(logits, a, start, stop, top)
        for b in range(start, stop):
            label = target[a, b]
            target_logit[b - start] = (
                top[b - start] if label == ignore_index else logits[a, label, b]
            )
        if smoothing > 0.0:
            for c in range(n_classes):
                if weight[c] != 0.0:
                    for b in range(start, stop):
                        depth[b - start] += (
                            spread
                            * weight[c]
                            * (np.float64(top[b - start]) - np.float64(logits[a, c, b]))
                        )
        for c in range(n_classes):  # logits are read before grad (maybe the same) is written
            for b in range(start, stop):
                value = exp_nonpositive(logits[a, c, b] - top[b - start])
                grad[a, c, b] = value
                total[b - start] += np.float64(value)
        factor = np.empty(width, grad.dtype)
        active = np.empty(width, grad.dtype)
        target_exp = np.zeros(width)
        for b in range(start, stop):
            label = target[a, b]
            if label == ignore_index:
                losses[a, b] = 0.0
                factor[b - start] = 0.0
                active[b - start] = 0.0
                continue
            target_exp[b - start] = np.float64(grad[a, label, b])
            log_total = math.log(total[b - start])
            label_weight = weight[label]
            losses[a, b] = labels_loss(
                log_total, top[b - start], target_logit[b - start], label_weight,
                weight_total, depth[b - start], smoothing, n_classes,
            )  # fmt: skip
            factor[b - start] = gradient_factor(
                label_weight, weight_total, smoothing, scale, denominator, n_classes,
                total[b - start],
            )  # fmt: skip
            active[b - start] = 1.0
        for c in range(n_classes):
            shift = scale * spread * weight[c] / denominator
            for b in range(start, stop):
                grad[a, c, b] = grad[a, c, b] * factor[b - start] - shift * active[b - start]
        for b in range(start, stop):
            label = target[a, b]
            if label == ignore_index:
                for c in range(n_classes):
                    grad[a, c, b] = 0.0
            else:
                grad[a, label, b] = target_gradient(
                    total[b - start], target_exp[b - start], weight[label], weight_total,
                    smoothing, spread, scale, denominator,
                )  # fmt: skip
    return 0, counted_weight, row_sum(losses.reshape(-1))
