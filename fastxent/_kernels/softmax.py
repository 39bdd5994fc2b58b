"""Kernels for softmax, log-softmax and logsumexp over the rows of a 2-D C-contiguous array.

Every row is processed in two sweeps that stay in cache: its maximum ``m``, then
``exp(x - m)`` and its float64 sum ``S``. Then ``softmax = exp(x - m) / S``,
``log_softmax = x - m - log S`` and ``logsumexp = m + log S``.
"""

from __future__ import annotations

import math

import numpy as np
from numba import prange

from fastxent._kernels.dispatch import row_kernel
from fastxent._kernels.rows import row_exp_into, row_log_softmax_into, row_max, row_scale


@row_kernel
def softmax_rows(logits, out):
    """``out[i] = softmax(logits[i])`` for every row ``i``."""
    n_rows = logits.shape[0]
    for i in prange(n_rows):
        top = row_max(logits[i])
        upcoming = logits[i + 1] if i + 1 < n_rows else logits[i]
        total = row_exp_into(logits[i], top, out[i], upcoming)
        row_scale(out[i], out.dtype.type(1.0 / total))


@row_kernel
def log_softmax_rows(logits, out):
    """``out[i] = log_softmax(logits[i])``; ``out`` doubles as the exp scratch space."""
    n_rows = logits.shape[0]
    for i in prange(n_rows):
        row = logits[i]
        top = row_max(row)
        upcoming = logits[i + 1] if i + 1 < n_rows else row
        total = row_exp_into(row, top, out[i], upcoming)
        row_log_softmax_into(row, top, math.log(total), out[i])


@row_kernel
def logsumexp_rows(logits, out):
    """``out[i] = log(sum(exp(logits[i])))`` in float64."""
    n_rows, n_classes = logits.shape
    n_blocks = min(n_rows, 64)
    for block in prange(n_blocks):
        staging = np.empty(n_classes, logits.dtype)
        stop = (block + 1) * n_rows // n_blocks
        for i in range(block * n_rows // n_blocks, stop):
            top = row_max(logits[i])
            upcoming = logits[i + 1] if i + 1 < stop else logits[i]
            total = row_exp_into(logits[i], top, staging, upcoming)
            out[i] = np.float64(top) + math.log(total)
