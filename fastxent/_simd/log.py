"""``log`` of positive normal float64 numbers as a polynomial that vectorises (fdlibm's)."""

from __future__ import annotations

import math

import numpy as np
from numba import types
from numba.extending import overload

from fastxent._config import PRIMITIVE_FASTMATH, exact_order
from fastxent._simd.exp import _LN2_HI_F64, _LN2_LO_F64
from fastxent._simd.llvm import _bits_to_float, _float_to_bits

# log_positive: the coefficients of fdlibm's log (e_log.c), a minimax polynomial in s**2
# for log((1 + s) / (1 - s)) = 2s + s**3 R(s**2), |s| <= 0.1716, error below 2**-58.
_LG = (
    6.666666666666735130e-01,
    3.999999999940941908e-01,
    2.857142874366239149e-01,
    2.222219843214978396e-01,
    1.818357216161805012e-01,
    1.531383769920937332e-01,
    1.479819860511658591e-01,
)
# The bits of sqrt(1/2): subtracting them moves the mantissa of every float64 into
# [sqrt(1/2), sqrt(2)) and leaves the matching power of two in the exponent field.
_SQRT_HALF_BITS = 0x3FE6A09E667F3BCD


@exact_order
def _log_positive_f64(x):
    bits = _float_to_bits(x)
    k = (bits - np.int64(_SQRT_HALF_BITS)) >> 52  # x = 2**k * z, z in [sqrt(1/2), sqrt(2))
    z = _bits_to_float(np.int64(bits - (k << 52)))
    f = z - 1.0  # exact (Sterbenz)
    # log(1 + f) = 2 atanh(s) = 2s + s**3 R(s**2), s = f / (2 + f), |s| <= 0.1716; written
    # as f - (f**2 / 2 - s (f**2 / 2 + s**2 R)), as fdlibm does, to keep f's bits exact.
    s = f / (2.0 + f)
    s2 = s * s
    s4 = s2 * s2
    odd = s4 * (_LG[1] + s4 * (_LG[3] + s4 * _LG[5]))
    even = s2 * (_LG[0] + s4 * (_LG[2] + s4 * (_LG[4] + s4 * _LG[6])))
    half_f2 = 0.5 * f * f
    dk = np.float64(k)
    result = dk * _LN2_HI_F64 - ((half_f2 - (s * (half_f2 + (even + odd)) + dk * _LN2_LO_F64)) - f)
    return result if x == x else x


def log_positive(x: float) -> float:
    """``log(x)`` for a positive normal float64 (``x >= 2**-1022``, finite) or ``nan``.

    Vectorises when compiled, unlike ``math.log`` (a library call per element): the kernels
    take the log of a tile's exp-sums (each in ``[1, C]``, or ``nan``) as one vector loop.
    fdlibm's algorithm (``x = 2**k (1 + f)``, ``log(1 + f) = 2 atanh(f / (2 + f))``):
    within 1 ulp; relative accuracy holds next to ``x = 1`` too. Zero, negative,
    subnormal and infinite ``x`` are outside the contract (finite nonsense comes back).
    """
    return math.log(x)


@overload(log_positive, jit_options={"fastmath": set(PRIMITIVE_FASTMATH)})
def _log_positive_jit(x):
    if x == types.float64:
        return lambda x: _log_positive_f64(x)
    return None
