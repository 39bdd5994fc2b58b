"""``exp`` of non-positive numbers as a polynomial that vectorises (Cody-Waite reduction)."""

from __future__ import annotations

import math

import numpy as np
from numba import types
from numba.extending import overload

from fastxent._config import PRIMITIVE_FASTMATH, exact_order
from fastxent._simd.llvm import _bits_to_float, _float_to_bits

# Cody-Waite split of ln 2: the high part has 12 significant bits, so n * LN2_HI is exact
# for |n| < 2**12 and x - n * LN2_HI carries no rounding error.
_LN2_HI = 0.693359375
_LN2_LO = -2.12194440054690583e-4
_LOG2E = 1.4426950408889634
# The float64 split of ln 2: 32 significant bits in the high part.
_LN2_HI_F64 = 6.93147180369123816490e-01
_LN2_LO_F64 = 1.90821492927058770002e-10
# Adding 1.5 * 2**23 to a float32 of magnitude < 2**22 rounds it to an integer n and leaves
# n in the low mantissa bits of the sum (1.5 * 2**52 for float64).
_ROUND_F32 = 12582912.0
_ROUND_F64 = 6755399441055744.0
# exp_clamped's lower limits: exp of them is still a normal number (2**-125.5, 2**-1021.4).
_CLAMP_F32 = -87.0
_CLAMP_F64 = -708.0


@exact_order
def _expm1_reduced_f32(r):
    """``exp(r) - 1`` for ``|r| <= ln2 / 2`` as ``r + r**2 q(r)``, q of degree 4.

    Minimax for relative error of ``exp`` (3e-9 before rounding). The callers add the 1
    and scale by ``2**n`` in one fused multiply-add, ``u * 2**n + 2**n``: one operation and
    one rounding fewer than ``(1 + u) * 2**n`` (at most 1.01 ulp over every float32 in
    [-87, 0] that way; see test_primitives for this one).
    """
    q = np.float32(1.3814605e-3)
    q = q * r + np.float32(8.3687106e-3)
    q = q * r + np.float32(4.1668388e-2)
    q = q * r + np.float32(1.6666521e-1)
    q = q * r + np.float32(4.9999993e-1)
    return q * (r * r) + r


@exact_order
def _reduce_f32(t, shifter):
    """Split ``t`` as ``n ln2 + r``: returns ``(t / ln2 + shifter rounded, r)``."""
    shifted = t * np.float32(_LOG2E) + shifter
    n = shifted - shifter
    r = t - n * np.float32(_LN2_HI)
    return shifted, r - n * np.float32(_LN2_LO)


@exact_order
def _exp_nonpositive_f32(x):
    # Below -104, exp(x) < 2**-150 rounds to 0 in float32; -inf lands here too. nan passes.
    lowest = np.float32(-104.0)
    t = lowest if x < lowest else x
    shifted, r = _reduce_f32(t, np.float32(_ROUND_F32))
    u = _expm1_reduced_f32(r)
    # 2**n for n in [-150, 0], built in two halves so that each half is a normal number
    # and the product rounds once into the subnormal range.
    # Read n back from the bits (no float-to-int conversion, defined even for nan, whose
    # garbage scale is harmless: nan * anything is nan). Numba widens int32 arithmetic to
    # int64, hence the casts back before the bitcast.
    k = _float_to_bits(shifted) - np.int32(0x4B400000)
    half = k >> 1
    scale_a = _bits_to_float(np.int32((half + 127) << 23))
    scale_b = _bits_to_float(np.int32((k - half + 127) << 23))
    return (u * scale_a + scale_a) * scale_b


@exact_order
def _exp_clamped_f32(x):
    t = np.float32(_CLAMP_F32) if x < np.float32(_CLAMP_F32) else x
    # With the exponent bias folded into the rounding constant, the low bits of `shifted`
    # are n + 127: shifted left by 23 they are the bits of 2**n (n >= -126, a normal).
    shifted, r = _reduce_f32(t, np.float32(_ROUND_F32 + 127.0))
    scale = _bits_to_float(np.int32(_float_to_bits(shifted) << 23))
    return _expm1_reduced_f32(r) * scale + scale


@exact_order
def _exp_reduced_f64(r):
    """``exp(r)`` for ``|r| <= ln2 / 2``: Taylor polynomial of degree 13, error < 5e-18."""
    p = 1.60590438368216145994e-10
    p = p * r + 2.08767569878680989792e-09
    p = p * r + 2.50521083854417187751e-08
    p = p * r + 2.75573192239858906526e-07
    p = p * r + 2.75573192239858906526e-06
    p = p * r + 2.48015873015873015873e-05
    p = p * r + 1.98412698412698412698e-04
    p = p * r + 1.38888888888888888889e-03
    p = p * r + 8.33333333333333333333e-03
    p = p * r + 4.16666666666666666667e-02
    p = p * r + 1.66666666666666666667e-01
    p = p * r + 0.5
    return p * (r * r) + r + 1.0


@exact_order
def _reduce_f64(t, shifter):
    """Split ``t`` as ``n ln2 + r``: returns ``(t / ln2 + shifter rounded, r)``."""
    shifted = t * _LOG2E + shifter
    n = shifted - shifter
    r = t - n * _LN2_HI_F64  # exact product for |n| < 2**21
    return shifted, r - n * _LN2_LO_F64


@exact_order
def _exp_nonpositive_f64(x):
    # Below -746, exp(x) < 2**-1076 rounds to 0 in float64; -inf lands here too. nan passes.
    lowest = -746.0
    t = lowest if x < lowest else x
    shifted, r = _reduce_f64(t, _ROUND_F64)
    y = _exp_reduced_f64(r)
    k = _float_to_bits(shifted) - np.int64(0x4338000000000000)
    half = k >> 1
    scale_a = _bits_to_float(np.int64((half + 1023) << 52))
    scale_b = _bits_to_float(np.int64((k - half + 1023) << 52))
    return (y * scale_a) * scale_b


@exact_order
def _exp_clamped_f64(x):
    t = _CLAMP_F64 if x < _CLAMP_F64 else x
    shifted, r = _reduce_f64(t, _ROUND_F64 + 1023.0)
    scale = _bits_to_float(np.int64(_float_to_bits(shifted) << 52))
    return _exp_reduced_f64(r) * scale


def exp_nonpositive(x: float) -> float:
    """``exp(x)`` for ``x <= 0``, ``-inf`` or ``nan``; vectorises when compiled.

    Accurate to about 1 ulp in float32 and float64, subnormal results included;
    ``exp(-inf) == 0`` exactly and ``nan`` stays ``nan``. Positive arguments are outside
    the contract (the result overflows the exponent field).
    """
    return math.exp(x)


@overload(exp_nonpositive, jit_options={"fastmath": set(PRIMITIVE_FASTMATH)})
def _exp_nonpositive_jit(x):
    if x == types.float32:
        return lambda x: _exp_nonpositive_f32(x)
    if x == types.float64:
        return lambda x: _exp_nonpositive_f64(x)
    return None


def exp_clamped(x: float) -> float:
    """``exp(max(x, lowest))`` for ``x <= 0``: the cheaper ``exp`` of the row sums.

    ``lowest`` is -87 in float32 and -708 in float64, where ``exp`` is still a normal
    number (1.6e-38, 3.3e-308), so one multiplication by ``2**n`` finishes the job: about
    half the work of :func:`exp_nonpositive` after the polynomial. Same accuracy above
    ``lowest``. Meant for sums that contain ``exp(0) = 1``: each clamped term then moves
    the sum by less than 2e-38 (float32) relative, far below its rounding. ``nan`` stays
    ``nan``; ``-inf`` gives ``exp(lowest)``, not 0.
    """
    if x != x:
        return x
    lowest = _CLAMP_F32 if isinstance(x, np.float32) else _CLAMP_F64
    return math.exp(max(x, lowest))  # type: ignore[call-overload]


@overload(exp_clamped, jit_options={"fastmath": set(PRIMITIVE_FASTMATH)})
def _exp_clamped_jit(x):
    if x == types.float32:
        return lambda x: _exp_clamped_f32(x)
    if x == types.float64:
        return lambda x: _exp_clamped_f64(x)
    return None
