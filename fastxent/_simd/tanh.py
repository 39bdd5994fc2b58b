"""``tanh`` as polynomials and ``exp`` that vectorise (Cephes' coefficients near 0)."""

from __future__ import annotations

import math

import numpy as np
from numba import types
from numba.extending import overload

from fastxent._config import PRIMITIVE_FASTMATH, exact_order
from fastxent._simd.exp import _exp_nonpositive_f32, _exp_nonpositive_f64

# Below it, tanh(x) = x + x**3 P(x**2): 1 - 2 e / (1 + e), e = exp(-2|x|), would cancel.
_SMALL = 0.625


@exact_order
def _tanh_f32(x):
    z = x * x
    # Cephes tanhf.c: minimax for |x| < 0.625.
    p = np.float32(-5.70498872745e-3)
    p = p * z + np.float32(2.06390887954e-2)
    p = p * z + np.float32(-5.37397155531e-2)
    p = p * z + np.float32(1.33314422036e-1)
    p = p * z + np.float32(-3.33332819422e-1)
    small = p * z * x + x
    small = x if z == np.float32(0.0) else small  # keeps -0.0
    # Above 0.625, e <= 0.29: 2e / (1 + e) <= 0.45 and 1 minus it loses no digit.
    a = abs(x)
    e = _exp_nonpositive_f32(np.float32(-2.0) * a)
    large = np.float32(1.0) - np.float32(2.0) * e / (np.float32(1.0) + e)
    large = large if x > np.float32(0.0) else -large  # nan: -nan
    return small if a < np.float32(_SMALL) else large


@exact_order
def _tanh_f64(x):
    z = x * x
    # Cephes tanh.c: x + x z P(z) / Q(z), a rational minimax for |x| < 0.625.
    p = -9.64399179425052238628e-1
    p = p * z + -9.92877231001918586564e1
    p = p * z + -1.61468768441708447952e3
    q = z + 1.12811678491632931402e2
    q = q * z + 2.23548839060100448583e3
    q = q * z + 4.84406305325125486048e3
    small = x + x * (z * p / q)
    small = x if z == 0.0 else small  # keeps -0.0
    a = abs(x)
    e = _exp_nonpositive_f64(-2.0 * a)
    large = 1.0 - 2.0 * e / (1.0 + e)
    large = large if x > 0.0 else -large
    return small if a < _SMALL else large


def tanh(x: float) -> float:
    """``tanh(x)`` for any float32 or float64; vectorises when compiled.

    Near 0 (``|x| < 0.625``) Cephes' minimax polynomial (float32) or rational function
    (float64); elsewhere ``1 - 2e / (1 + e)`` with ``e = exp(-2|x|)`` from
    :func:`exp_nonpositive`, so that no ``exp`` overflows. Within 2 ulp in float32 and
    float64; ``tanh(+-inf) = +-1``, ``nan`` stays ``nan``, ``-0.0`` stays ``-0.0``.
    """
    return math.tanh(x)


@overload(tanh, jit_options={"fastmath": set(PRIMITIVE_FASTMATH)})
def _tanh_jit(x):
    if x == types.float32:
        return lambda x: _tanh_f32(x)
    if x == types.float64:
        return lambda x: _tanh_f64(x)
    return None
