"""Vectorisable math primitives shared by the kernels.

LLVM, as shipped with Numba, turns ``math.exp`` into one scalar library call per element
and does not vectorise ``max`` reductions written with ``if`` or ``max()``. The functions
here are written so that a loop calling them compiles to 256/512-bit SIMD code:

- :func:`exp_nonpositive` is a Cody-Waite range reduction plus a minimax polynomial, with
  the power of two assembled from its exponent bits (:func:`_bits_to_float`, an intrinsic).
  The kernels only ever need ``exp`` of a non-positive number (``x - max(x)``,
  ``-|x|``), which keeps the reduction free of overflow checks. :func:`exp_clamped` is
  its cheaper sibling for exp-sums, where results below the smallest normal number do
  not matter.
- :func:`split_for_sum` splits float32 terms so that float32 vector lanes sum them as
  accurately as float64 would.
- :func:`fmaximum` emits ``llvm.maximum``, which LLVM vectorises in reductions;
  :func:`fmax_unchecked` is its cheaper sibling for maxima whose ``nan`` nobody reads.

Each primitive also runs as plain Python (``NUMBA_DISABLE_JIT=1``) with the same meaning.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from llvmlite import ir
from numba import types
from numba.extending import intrinsic, overload

from fastxent._config import PRIMITIVE_FASTMATH, exact_order
from fastxent._numba_compat import (
    add_function_attribute,
    declare_llvm_function,
    element_pointer,
)


@intrinsic
def _bits_to_float(typingctx, bits):
    """Reinterpret int32 bits as float32, or int64 bits as float64 (a free bitcast)."""
    if bits == types.int32:
        result_type = types.float32
    elif bits == types.int64:
        result_type = types.float64
    else:
        return None

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], context.get_value_type(result_type))

    return result_type(bits), codegen


@intrinsic
def _float_to_bits(typingctx, value):
    """Reinterpret float32 as int32 bits, or float64 as int64 bits (a free bitcast)."""
    if value == types.float32:
        result_type = types.int32
    elif value == types.float64:
        result_type = types.int64
    else:
        return None

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], context.get_value_type(result_type))

    return result_type(value), codegen


def _llvm_float_pair_intrinsic(operation: str, flags: tuple[str, ...]) -> Any:
    """An intrinsic calling ``llvm.<operation>`` on two floats of one type, with ``flags``."""

    def typer(typingctx, a, b):
        if not (isinstance(a, types.Float) and a == b):
            return None

        def codegen(context, builder, signature, args):
            value_type = context.get_value_type(a)
            function_type = ir.FunctionType(value_type, [value_type, value_type])
            name = f"llvm.{operation}.{'f32' if a == types.float32 else 'f64'}"
            function = declare_llvm_function(builder, function_type, name)
            return builder.call(function, args, fastmath=flags)

        return a(a, b), codegen

    typer.__name__ = typer.__qualname__ = f"_llvm_{operation}"
    return intrinsic(typer)


# The larger of two floats, nan if either is nan. nsz: the sign of a zero result may be
# either zero's; without it x86 orders -0 below +0 with two more instructions per vector,
# on the loop's dependency chain.
_maximum = _llvm_float_pair_intrinsic("maximum", ("nsz",))
# A bare vmaxps, whatever it makes of a nan (nnan: LLVM may assume there is none).
_maximum_of_numbers = _llvm_float_pair_intrinsic("maxnum", ("nnan", "nsz"))


def fmaximum(a: float, b: float) -> float:
    """Larger of ``a`` and ``b``, ``nan`` if either is ``nan`` (IEEE 754-2019 ``maximum``).

    Of two zeros it may return either (the kernels use a row's max as a shift, where the
    sign of a zero changes nothing). LLVM vectorises a reduction of it into one ``vmaxps``
    plus a ``nan`` fix-up per vector and a tree at the end; ordering ``-0`` below ``+0``
    took two more instructions per vector on the loop's dependency chain (rows of 1000
    float32: 219 -> 125 ns). ``llvm.maxnum`` (which skips ``nan``) vectorised with a bail-out
    to scalar code on ``nan``, a scalar remainder and a 16-step serial horizontal reduction:
    2.7x slower on rows of 1000 float32.
    """
    if math.isnan(a) or math.isnan(b):
        return math.nan
    return a if a > b else b


@overload(fmaximum, jit_options={"fastmath": set(PRIMITIVE_FASTMATH)})
def _fmaximum_jit(a, b):
    if isinstance(a, types.Float) and a == b:
        return lambda a, b: _maximum(a, b)
    return None


def fmax_unchecked(a: float, b: float) -> float:
    """Larger of ``a`` and ``b``; if either is ``nan``, unspecified (either one, or ``nan``).

    :func:`fmaximum` without its ``nan`` fix-up: a reduction of it is one ``vmaxps`` per
    vector, where :func:`fmaximum` adds a compare and a masked move. Only for maxima that
    matter solely when no ``nan`` is present. The row kernels take the next row's max in
    the exp-sum's loop this way (2 of its ~25 instructions per 16 float32; forward
    1024 x 128256 0.97x the time): a ``nan`` in that row makes its own exp-sum ``nan``
    whatever its max, and with it every output of the row.
    """
    return a if a > b else b


@overload(fmax_unchecked, jit_options={"fastmath": set(PRIMITIVE_FASTMATH)})
def _fmax_unchecked_jit(a, b):
    if isinstance(a, types.Float) and a == b:
        return lambda a, b: _maximum_of_numbers(a, b)
    return None


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


@intrinsic
def _prefetch_element(typingctx, array, index):
    """``llvm.prefetch`` of ``array[index]``'s cache line into L2 (a hint, never a fault)."""
    if not isinstance(array, types.Array) or not isinstance(index, types.Integer):
        return None

    def codegen(context, builder, signature, args):
        array_type = signature.args[0]
        struct = context.make_array(array_type)(context, builder, args[0])
        pointer = element_pointer(context, builder, array_type, struct, args[1])
        byte_pointer = ir.IntType(8).as_pointer()
        int32 = ir.IntType(32)
        function_type = ir.FunctionType(ir.VoidType(), [byte_pointer, int32, int32, int32])
        function = declare_llvm_function(builder, function_type, "llvm.prefetch.p0i8")
        # Arguments: address, read (0), locality 1 (x86: prefetcht2, into L2), data cache.
        read, locality, data = ir.Constant(int32, 0), ir.Constant(int32, 1), ir.Constant(int32, 1)
        builder.call(function, [builder.bitcast(pointer, byte_pointer), read, locality, data])
        return context.get_dummy_value()

    return types.none(array, index), codegen


def prefetch(array: object, index: int) -> None:
    """Ask the CPU to start loading ``array[index]``'s cache line; a no-op in Python.

    ``index`` must lie inside ``array`` (the address is computed without a bounds check).
    """


@overload(prefetch)
def _prefetch_jit(array, index):
    if isinstance(array, types.Array) and isinstance(index, types.Integer):
        return lambda array, index: _prefetch_element(array, index)
    return None


def vector_width_bits() -> int:
    """Width of the SIMD registers the kernels are compiled for on this CPU (LLVM's view)."""
    import llvmlite.binding as llvm

    features = llvm.get_host_cpu_features()
    if features.get("avx512f"):
        return 512  # with the use_512bit_vectors hint of the row loops
    if features.get("avx2") or features.get("avx"):
        return 256
    return 128


@intrinsic
def use_512bit_vectors(typingctx):
    """Let LLVM vectorise the calling function with 512-bit registers.

    LLVM's tuning for AVX-512 CPUs prefers 256-bit vectors. For the polynomial ``exp`` the
    512-bit ones ran 1.25-1.35x faster with two threads on the reference machine (Xeon,
    AVX-512). The hint is an attribute of the function whose body calls this intrinsic
    (an intrinsic, not an ``overload``, so that it lands there); on CPUs without AVX-512
    LLVM ignores it.
    """

    def codegen(context, builder, signature, args):
        add_function_attribute(builder, '"prefer-vector-width"="512"')
        add_function_attribute(builder, '"min-legal-vector-width"="512"')
        return context.get_dummy_value()

    return types.none(), codegen


@intrinsic
def inline_into_callers(typingctx):
    """Make LLVM inline the calling function into each of its callers (``alwaysinline``).

    Numba compiles every function on its own, and a row helper's vector loop makes it too
    large for LLVM's inliner. Left as a call, each array argument and slice is
    reference-counted with an atomic increment and decrement per call: ~15 of them per
    row, on a counter that all threads share. Inlined, Numba's reference-count pruning
    removes them: the exp-sum of 1000-class rows ran at 0.41 instead of 0.63 ns per
    element. Every ``row_helper`` starts with this call.
    """

    def codegen(context, builder, signature, args):
        add_function_attribute(builder, "alwaysinline")
        return context.get_dummy_value()

    return types.none(), codegen
