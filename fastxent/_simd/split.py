"""``split_for_sum``: float32 terms split so that float32 lanes sum them like float64."""

from __future__ import annotations

import numpy as np
from numba import types
from numba.extending import overload

from fastxent._config import PRIMITIVE_FASTMATH, exact_order

# 1.5 * 2**11, whose ulp is 2**-12: (t + M) - M rounds t to a multiple of 2**-12.
_SPLIT_F32 = 3072.0


@exact_order
def _split_f32(t):
    high = (t + np.float32(_SPLIT_F32)) - np.float32(_SPLIT_F32)
    return high, t - high


def split_for_sum(t: float) -> tuple[float, float]:
    """``(h, t - h)`` with ``h`` = float32 ``t`` rounded to a multiple of 2**-12.

    For float32 terms in [0, 1]: sums of up to 2**12 of the ``h`` are exact in float32 in
    any order (multiples of 2**-12 below 2**12 fit in 24 bits), and the ``t - h`` are at
    most 2**-13, so their float32 sum loses nothing next to a large term. Summing both in
    float32 vector lanes costs a fraction of converting every term to float64 and keeps
    the accuracy of a float64 sum (an error-free splitting, as in Rump, Ogita and Oishi's
    AccSum). float64 terms come back as ``(t, 0)``. Compiled without ``reassoc``, which
    would fold ``(t + M) - M`` back to ``t``.
    """
    if isinstance(t, np.float32):
        high = (t + np.float32(_SPLIT_F32)) - np.float32(_SPLIT_F32)
        return high, t - high
    return t, 0.0 * t


@overload(split_for_sum, jit_options={"fastmath": set(PRIMITIVE_FASTMATH)})
def _split_for_sum_jit(t):
    if t == types.float32:
        return lambda t: _split_f32(t)
    if t == types.float64:
        return lambda t: (t, 0.0)
    return None
