"""Softmax cross-entropy with the language-model terms: logit soft-capping and z-loss.

Soft-capping at ``s`` replaces the logits by ``z'_c = s tanh(z_c / s)``; the z-loss adds
``lam * omega * lse**2`` to a row's loss, where ``lse = log sum_c exp(z'_c)`` and ``omega``
is the row's weight (``w_y`` for a label, 1 for a distribution). With the target masses
``a_c`` of ``xent_terms`` (``A = sum_c a_c``), ``m = max(z')`` and ``S = sum_c exp(z'_c - m)``:

    l = A log(S) + sum_c a_c (m - z'_c) + lam omega lse**2
    dl/dz_c = ((A + 2 lam omega lse) p_c - a_c) (1 - (z'_c / s)**2)

A forward computes ``z'`` on the fly. A forward + gradient first writes ``z'`` (or a copy
of ``z``) into the gradient row, then works there in place: ``exp``, ``tanh`` and the
scaling each run once per element, as vector loops. Plain calls (no soft-cap, no z-loss)
keep the kernels of ``xent_labels`` and ``xent_probs``, which these terms would slow.
"""

from __future__ import annotations

import math

import numpy as np
from numba import prange

from fastxent._config import exact_order, row_helper
from fastxent._kernels.dispatch import row_kernel
from fastxent._kernels.reductions import row_max
from fastxent._kernels.smoothing import weighted_depth
from fastxent._kernels.xent_terms import label_summary, labels_loss, target_gradient
from fastxent._simd import exp_nonpositive, inline_into_callers, tanh


@exact_order
def capped(x, softcap, inverse):
    """``softcap * tanh(x / softcap)`` (``inverse = 1 / softcap``); ``x`` without a cap."""
    if softcap is None:
        return x
    return softcap * tanh(x * inverse)


@row_helper
def capped_exp_sum(row, top, softcap, inverse, weight):
    """``(S, sum_c w_c (top - z'_c))`` of a row's capped logits ``z'``, both in float64.

    ``S = sum_c exp(z'_c - top)``. The second sum is taken only with a ``weight`` (label
    smoothing's), else it is 0.
    """
    inline_into_callers()
    total = 0.0
    depth = 0.0
    top64 = np.float64(top)
    for c in range(row.size):
        z = capped(row[c], softcap, inverse)
        total += np.float64(exp_nonpositive(z - top))
        if weight is not None and weight[c] != 0.0:
            depth += weighted_depth(weight[c], top64, np.float64(z))
    return total, depth


@row_helper
def capped_into(row, out, softcap, inverse):
    """``out = z'`` of ``row`` (a copy without a cap); ``out`` may be ``row``."""
    inline_into_callers()
    for c in range(row.size):
        out[c] = capped(row[c], softcap, inverse)


@row_helper
def gradient_in_place(out, top, coefficient, amounts_scale, weight, softcap, inverse):
    """``out[c] = (coefficient exp(z'_c - top) - amounts_scale w_c) (1 - (z'_c / s)**2)``.

    ``out`` holds ``z'`` on entry. The ``w_c`` term only with a ``weight``; the last factor
    (the derivative of the cap) only with a ``softcap``.
    """
    inline_into_callers()
    one = out.dtype.type(1.0)
    for c in range(out.size):
        z = out[c]
        g = np.float64(exp_nonpositive(z - top)) * coefficient
        if weight is not None:
            g -= amounts_scale * weight[c]
        if softcap is not None:
            t = z * inverse
            g *= one - t * t
        out[c] = g


@row_helper
def cap_derivative(z, softcap, inverse):
    """``1 - (z' / s)**2`` of a capped logit ``z'`` (1 without a cap)."""
    inline_into_callers()
    if softcap is None:
        return 1.0
    t = np.float64(z) * np.float64(inverse)
    return (1.0 - t) * (1.0 + t)


@row_kernel
def softcap_zloss_labels(
    logits, target, weight, smoothing_weight, ignore_index, smoothing, cap, inverse, z_loss, mean,
    log_base, with_grad, losses, grad,
):  # fmt: skip
    """Loss per row against class ``target[i]`` (0 where ignored), and its gradient if asked.

    ``cap`` is ``None`` or the cap ``s > 0``, ``inverse`` then ``1 / s`` (both in the
    logits' dtype, else ``None``); ``z_loss`` is the z-loss's ``lam >= 0``.
    ``smoothing_weight`` is ``weight`` with label smoothing, else ``None`` (the kernel then
    compiles without the smoothing sums).
    ``with_grad`` asks for the gradient in ``grad``, an array shaped like ``logits`` (else
    any array of the logits' type, untouched), which may be ``logits`` itself. It receives
    ``dl/dz`` divided by ``log_base`` and, with ``mean``, by the counted weight when that
    is not 0. Ignored rows get 0.
    Returns ``(n_invalid, counted_weight)`` of :func:`label_summary`; with invalid labels
    nothing is written.
    """
    n_rows, n_classes = logits.shape
    n_invalid, counted_weight = label_summary(target, weight, ignore_index, n_classes)
    if n_invalid > 0:
        return n_invalid, counted_weight
    weight_total = np.sum(weight)
    divisor = log_base * counted_weight if mean and counted_weight != 0.0 else log_base
    spread = smoothing / n_classes
    for i in prange(n_rows):
        label = target[i]
        if label == ignore_index:
            losses[i] = 0.0
            if with_grad:
                grad[i, :] = 0.0
            continue
        row = logits[i]
        top = capped(row_max(row), cap, inverse)
        label_weight = weight[label]
        if not with_grad:
            target_logit = capped(row[label], cap, inverse)
            total, depth = capped_exp_sum(row, top, cap, inverse, smoothing_weight)
        else:
            out = grad[i]
            capped_into(row, out, cap, inverse)
            target_logit = out[label]
            total, depth = capped_exp_sum(out, top, None, None, smoothing_weight)
        log_total = math.log(total)
        lse = np.float64(top) + log_total
        loss = labels_loss(
            log_total, top, target_logit, label_weight, weight_total, spread * depth,
            smoothing, n_classes,
        )  # fmt: skip
        z_mass = 2.0 * z_loss * label_weight * lse if z_loss != 0.0 else 0.0
        if z_loss != 0.0 and label_weight != 0.0:
            loss += z_loss * label_weight * lse * lse
        losses[i] = loss
        if not with_grad:
            continue
        mass = (1.0 - smoothing) * label_weight + spread * weight_total
        target_exp = math.exp(np.float64(target_logit) - np.float64(top))
        gradient_in_place(
            out, top, (mass + z_mass) / (total * divisor), spread / divisor, smoothing_weight,
            cap, inverse,
        )  # fmt: skip
        target_part = target_gradient(
            total, target_exp, label_weight, weight_total, smoothing, spread, 1.0, divisor
        )
        out[label] = (target_part + z_mass * (target_exp / total) / divisor) * cap_derivative(
            target_logit, cap, inverse
        )
    return 0, counted_weight


@row_helper
def probs_gradient_in_place(
    out, probs, weight, keep, spread, top, coefficient, scale, softcap, inverse
):
    """``out[c] = (coefficient exp(z'_c - top) - scale a_c) (1 - (z'_c / s)**2)``.

    ``a_c = w_c (keep q_c + spread)``; ``out`` holds ``z'`` on entry.
    """
    inline_into_callers()
    for c in range(out.size):
        z = np.float64(out[c])
        mass = weight[c] * (keep * np.float64(probs[c]) + spread)
        g = np.float64(exp_nonpositive(out[c] - top)) * coefficient - scale * mass
        if softcap is not None:
            t = z * np.float64(inverse)
            g *= (1.0 - t) * (1.0 + t)
        out[c] = g


@row_helper
def probs_mass_and_capped_depth(row, probs, weight, keep, spread, top, softcap, inverse):
    """``(A, sum_c a_c (top - z'_c))`` with ``a_c = w_c (keep q_c + spread)``, float64.

    Classes with ``a_c == 0`` contribute 0 even at a ``-inf`` logit (0 log 0 = 0).
    """
    inline_into_callers()
    top64 = np.float64(top)
    mass_total = 0.0
    depth = 0.0
    for c in range(row.size):
        mass = weight[c] * (keep * np.float64(probs[c]) + spread)
        mass_total += mass
        z = np.float64(capped(row[c], softcap, inverse))
        depth += 0.0 if mass == 0.0 else weighted_depth(mass, top64, z)
    return mass_total, depth


@row_kernel
def softcap_zloss_probs(
    logits, target, weight, smoothing, cap, inverse, z_loss, scale, with_grad, losses, grad
):
    """Loss per row against the distribution ``target[i]``, and its gradient if asked.

    As :func:`softcap_zloss_labels`, with the z-loss unweighted (``omega = 1``) and the
    gradient multiplied by ``scale`` (the wrapper's mean and base).
    """
    n_rows, n_classes = logits.shape
    keep = 1.0 - smoothing
    spread = smoothing / n_classes
    for i in prange(n_rows):
        row = logits[i]
        probs = target[i]
        top = capped(row_max(row), cap, inverse)
        if not with_grad:
            total, _ = capped_exp_sum(row, top, cap, inverse, None)
            mass, depth = probs_mass_and_capped_depth(
                row, probs, weight, keep, spread, top, cap, inverse
            )
        else:
            out = grad[i]
            capped_into(row, out, cap, inverse)
            total, _ = capped_exp_sum(out, top, None, None, None)
            mass, depth = probs_mass_and_capped_depth(
                out, probs, weight, keep, spread, top, None, None
            )
        log_total = math.log(total)
        lse = np.float64(top) + log_total
        loss = mass * log_total + depth
        if z_loss != 0.0:
            loss += z_loss * lse * lse
        losses[i] = loss
        if with_grad:
            z_mass = 2.0 * z_loss * lse if z_loss != 0.0 else 0.0
            probs_gradient_in_place(
                out, probs, weight, keep, spread, top, scale * (mass + z_mass) / total,
                scale, cap, inverse,
            )  # fmt: skip
