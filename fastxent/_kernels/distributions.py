"""Kernels on rows that are already probabilities: cross-entropy from probabilities, entropy.

``log`` has no vectorised form here, so these loops call it per element; they are
memory-light and run in parallel over rows like the softmax kernels.
"""

from __future__ import annotations

import math

import numpy as np
from numba import prange

from fastxent._config import row_helper
from fastxent._kernels.dispatch import row_kernel
from fastxent._simd import inline_into_callers


@row_kernel
def xent_from_probs_rows(probs, target, eps, losses):
    """``losses[i] = -sum_c q_c log(clip(P_c, eps, 1))``; classes with ``q_c == 0`` add 0."""
    n_rows, n_classes = probs.shape
    for i in prange(n_rows):
        total = 0.0
        for c in range(n_classes):
            q = np.float64(target[i, c])
            if q != 0.0:
                total -= q * math.log(_clip(np.float64(probs[i, c]), eps))
        losses[i] = total


@row_kernel
def entropy_rows(probs, losses):
    """``losses[i] = -sum_c P_c log P_c`` with ``0 log 0 = 0``."""
    n_rows, n_classes = probs.shape
    for i in prange(n_rows):
        total = 0.0
        for c in range(n_classes):
            p = np.float64(probs[i, c])
            if p != 0.0:
                total -= p * math.log(p)
        losses[i] = total


@row_helper
def _clip(p, eps):
    """``p`` clipped to ``[eps, 1]``; ``nan`` stays ``nan``."""
    inline_into_callers()
    if p < eps:
        return eps
    if p > 1.0:
        return 1.0
    return p
