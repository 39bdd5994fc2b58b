"""Softmax cross-entropy with probability targets (probs), and the KL divergence."""

from __future__ import annotations

import math

import numpy as np
from numba import prange

from fastxent._config import exact_order, kernel_part, row_helper
from fastxent._kernels.chains import chain_span, following_row, row_chains
from fastxent._kernels.dispatch import row_kernel
from fastxent._kernels.reductions import neumaier_add, row_exp_sum, row_max, row_sum
from fastxent._kernels.smoothing import weighted_depth
from fastxent._kernels.sweeps import row_exp_scaled_in_place, row_exp_scaled_into, row_scale
from fastxent._simd import inline_into_callers, use_512bit_vectors
from fastxent._tuning import WHOLE_ROW


@row_kernel
def xent_probs_forward(
    logits, chained, streaming, target, weight, smoothing, with_target_entropy, losses
):
    """``losses[i]`` = loss of row ``i`` against the distribution ``target[i]``.

    With ``with_target_entropy`` the row's ``sum_c q_c log q_c`` is added, which turns the
    cross-entropy into the KL divergence ``KL(q || softmax(z))``. ``chained`` is as for
    :func:`xent_labels_forward`.
    """
    n_rows, n_classes = logits.shape
    keep = 1.0 - smoothing
    spread = smoothing / n_classes
    chain_rows, n_chains = row_chains(n_rows, chained)
    for chain in prange(n_chains):
        start, stop, top = chain_span(logits, chain, chain_rows)
        for i in range(start, stop):
            row = logits[i]
            probs = target[i]
            total, _, following_top = row_exp_sum(
                row, top, None, following_row(chained, i, stop), streaming
            )
            log_total = math.log(total)
            if with_target_entropy:
                losses[i] = row_kl_divergence(row, probs, top, log_total)
            else:
                mass, depth = probs_mass_and_depth(row, probs, weight, keep, spread, top)
                losses[i] = mass * log_total + depth
            top = following_top


@row_kernel
def xent_probs_forward_backward(
    logits, chained, streaming, target, weight, smoothing, scale, in_place, losses, grad
):
    """Loss per row as in the dense forward, and ``grad = scale * dl/dz``.

    ``chained`` is as for :func:`xent_labels_forward`: rows from memory of more than
    ``WHOLE_ROW`` classes go in chains (:func:`row_chains`), summed before ``exp`` is
    written scaled; the others are taken one at a time, with ``exp`` computed once.
    """
    n_rows, n_classes = logits.shape
    if chained is None or n_classes <= WHOLE_ROW:
        _probs_forward_backward_rows_once(
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
            probs = target[i]
            mass, depth = probs_mass_and_depth(row, probs, weight, keep, spread, top)
            total, _, following_top = row_exp_sum(
                row, top, None, following_row(chained, i, stop), streaming
            )
            factor = out.dtype.type(scale * mass / total)
            if in_place:
                row_exp_scaled_in_place(out, top, factor)
            else:
                row_exp_scaled_into(row, top, factor, out)
            losses[i] = mass * math.log(total) + depth
            row_subtract_target(out, probs, weight, keep, spread, scale)
            top = following_top


@kernel_part
def _probs_forward_backward_rows_once(
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
        probs = target[i]
        top = row_max(row)
        mass, depth = probs_mass_and_depth(row, probs, weight, keep, spread, top)
        if in_place:
            row_exp_scaled_in_place(out, top, one)
        else:
            row_exp_scaled_into(row, top, one, out)
        total = row_sum(out)
        row_scale(out, out.dtype.type(scale * mass / total))
        losses[i] = mass * math.log(total) + depth
        row_subtract_target(out, probs, weight, keep, spread, scale)


@row_helper
def probs_mass_and_depth(row, probs, weight, keep, spread, top):
    """``(A, depth)`` of a row against ``probs``: its loss is ``A log S + depth``.

    ``A = sum_c a_c`` and ``depth = sum_c a_c (m - z_c)`` for the shift ``m = top``, with
    ``a_c = w_c (keep q_c + spread)`` (label smoothing's ``keep = 1 - eps`` and
    ``spread = eps / C``).
    """
    inline_into_callers()
    mass = row_target_mass(probs, weight, keep, spread)
    return mass, row_target_depth(row, probs, weight, keep, spread, top)


@row_helper
def row_target_mass(target, weight, keep, spread):
    """``sum_c weight[c] * (keep * target[c] + spread)``: the total mass ``A`` of a row."""
    inline_into_callers()
    use_512bit_vectors()
    total = 0.0
    for c in range(target.size):
        total += weight[c] * (keep * np.float64(target[c]) + spread)
    return total


@row_helper
def row_target_depth(row, target, weight, keep, spread, top):
    """``sum_c a_c * (top - row[c])`` with ``a_c = weight[c] * (keep * target[c] + spread)``.

    Classes with ``a_c == 0`` contribute 0 even at a ``-inf`` logit (0 log 0 = 0).
    """
    inline_into_callers()
    use_512bit_vectors()
    top64 = np.float64(top)
    total = 0.0
    for c in range(row.size):
        mass = weight[c] * (keep * np.float64(target[c]) + spread)
        total += 0.0 if mass == 0.0 else weighted_depth(mass, top64, np.float64(row[c]))
    return total


@row_helper
def row_subtract_target(out, target, weight, keep, spread, factor):
    """``out[c] -= factor * weight[c] * (keep * target[c] + spread)`` in place."""
    inline_into_callers()
    use_512bit_vectors()
    for c in range(out.size):
        mass = weight[c] * (keep * np.float64(target[c]) + spread)
        out[c] -= factor * mass


@exact_order
def row_kl_divergence(row, probs, top, log_total):
    """``sum_c q_c (log q_c - log p_c)`` in float64, with ``0 log 0 = 0``.

    Each term uses ``log p_c = (z_c - m) - log S``, so that a row whose ``q`` equals its
    softmax gives terms that cancel one by one (summing ``-H(q)`` and the cross-entropy
    separately would leave ~1e-13 of noise), and the terms are summed with Neumaier's
    compensation. Compiled without ``reassoc``, which would undo both (the loop calls
    ``log`` per element and does not vectorise anyway).
    """
    top64 = np.float64(top)
    total = 0.0
    compensation = 0.0
    for c in range(probs.size):
        q = np.float64(probs[c])
        if q != 0.0:
            z = np.float64(row[c])
            log_p = (z - top64) - log_total
            if log_p == -np.inf and z != -np.inf:  # z - m overflowed: a span > 1.8e308
                term = q * math.log(q) + weighted_depth(q, top64, z) + q * log_total
            else:
                term = q * (math.log(q) - log_p)
            total, compensation = neumaier_add(total, compensation, term)
    if log_total != log_total:  # a row without a distribution: nan even if no q reads it
        return log_total
    # An infinite term (q > 0 at a -inf logit) makes the compensation nan: the sum is inf.
    return total + compensation if math.isfinite(total) else total
