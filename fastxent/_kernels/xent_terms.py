"""Per-row terms of the softmax cross-entropy: the loss and gradient of one row from its pieces.

Every loss has the form ``l = sum_c a_c (-log p_c)`` with target masses ``a_c`` and
``A = sum_c a_c``. With ``m = max(z)`` and ``S = sum_c exp(z_c - m)``:

    l = A log(S) + sum_c a_c (m - z_c)     (weights >= 0: both terms >= 0, no cancellation)
    dl/dz_c = A p_c - a_c,   p_c = exp(z_c - m) / S

Integer targets (labels) have ``a_c = (1 - eps) w_y [c == y] + (eps / C) w_c``; probability
targets (probs) ``a_c = w_c ((1 - eps) q_c + eps / C)``.
"""

from __future__ import annotations

import numpy as np

from fastxent._config import exact_order, row_helper
from fastxent._kernels.sweeps import row_scale, row_scale_and_subtract
from fastxent._simd import inline_into_callers


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


@exact_order
def labels_loss(
    log_total, top, target_logit, label_weight, weight_total, depth, smoothing, n_classes
):
    """One row's integer-target loss from its pieces (see the module docstring).

    Compiled without ``reassoc``: LLVM would otherwise rewrite ``log S + (m - z_y)`` as
    ``(log S + m) - z_y``, which loses ``log S`` next to logits of 1e30. ``depth`` is the
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
        loss += smoothing / n_classes * weight_total * log_total + depth
    return loss


@row_helper
def gradient_factor(label_weight, weight_total, smoothing, scale, denominator, n_classes, total):
    """``scale * A / (denominator * S)``: what multiplies a row's ``exp(z - m)`` in its gradient.

    ``A = (1 - eps) w_y + (eps / C) sum_c w_c`` is the row's target mass and ``S`` its
    exp-sum ``total``.
    """
    inline_into_callers()
    mass = (1.0 - smoothing) * label_weight + smoothing / n_classes * weight_total
    return scale * (mass / denominator) / total


@exact_order
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
