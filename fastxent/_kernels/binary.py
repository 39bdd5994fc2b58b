"""Sigmoid (binary) cross-entropy from logits, elementwise over ``(R, C)`` arrays.

With ``a = w (1 - z)`` and ``b = w * pos_weight * z``:

    l = a * softplus(x) + b * softplus(-x),  softplus(x) = max(x, 0) + log1p(exp(-|x|))
    dl/dx = a * sigmoid(x) - b * sigmoid(-x)

With weights >= 0 both loss terms are >= 0, so nothing cancels (PyTorch's
``(1 - z) x + ...`` form can).
A zero coefficient drops its term, so a ``-inf`` logit with target 0 costs exactly 0.
``weight`` and ``pos_weight`` arrive already broadcast to ``(R, C)`` (zero-stride views).
"""

from __future__ import annotations

import math

import numpy as np
from numba import prange

from fastxent._config import row_helper
from fastxent._kernels.dispatch import row_kernel
from fastxent._simd import exp_nonpositive, inline_into_callers


@row_helper
def _binary_terms(x, z, w, pos_w):
    """Coefficients ``(a, b)`` of one element, and its ``exp(-|x|)``."""
    inline_into_callers()
    x64 = np.float64(x)
    z64 = np.float64(z)
    return w * (1.0 - z64), w * pos_w * z64, x64, exp_nonpositive(-abs(x64))


@row_helper
def _binary_loss(a, b, x, small):
    inline_into_callers()
    log_term = math.log1p(small)
    loss = 0.0
    if a != 0.0:
        loss += a * (max(x, 0.0) + log_term)
    if b != 0.0:
        loss += b * (max(-x, 0.0) + log_term)
    return loss if x == x else x


@row_helper
def _binary_gradient(a, b, x, small):
    inline_into_callers()
    # sigmoid(x) and sigmoid(-x) without exp of a positive number.
    if x >= 0.0:
        sig_pos = 1.0 / (1.0 + small)
        sig_neg = small / (1.0 + small)
    else:
        sig_pos = small / (1.0 + small)
        sig_neg = 1.0 / (1.0 + small)
    gradient = a * sig_pos - b * sig_neg
    return gradient if x == x else x


@row_kernel
def binary_xent_forward(logits, target, weight, pos_weight, write_elements, elements, row_sums):
    """``row_sums[i]`` = float64 sum of row ``i``'s losses; also ``elements`` if asked."""
    n_rows, n_columns = logits.shape
    for i in prange(n_rows):
        total = 0.0
        for c in range(n_columns):
            a, b, x, small = _binary_terms(
                logits[i, c], target[i, c], weight[i, c], pos_weight[i, c]
            )
            loss = _binary_loss(a, b, x, small)
            total += loss
            if write_elements:
                elements[i, c] = loss
        row_sums[i] = total


@row_kernel
def binary_xent_forward_backward(
    logits, target, weight, pos_weight, scale, write_elements, elements, row_sums, grad
):
    """As :func:`binary_xent_forward`, and ``grad = scale * dl/dx`` (may alias ``logits``)."""
    n_rows, n_columns = logits.shape
    for i in prange(n_rows):
        total = 0.0
        for c in range(n_columns):
            a, b, x, small = _binary_terms(
                logits[i, c], target[i, c], weight[i, c], pos_weight[i, c]
            )
            loss = _binary_loss(a, b, x, small)
            total += loss
            if write_elements:
                elements[i, c] = loss
            grad[i, c] = scale * _binary_gradient(a, b, x, small)
        row_sums[i] = total
