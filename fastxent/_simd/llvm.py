"""LLVM-level primitives: bitcasts, vectorisable max, prefetch, function attributes.

Each is an intrinsic (code emitted directly) or an ``overload`` of a plain-Python twin
that keeps the same meaning under ``NUMBA_DISABLE_JIT=1``.
"""

from __future__ import annotations

import math
from typing import Any

from llvmlite import ir
from numba import types
from numba.extending import intrinsic, overload

from fastxent._config import PRIMITIVE_FASTMATH
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
    would put two more instructions per vector on the loop's dependency chain.
    ``llvm.maxnum`` (which skips ``nan``) is no substitute: LLVM vectorises it with a
    bail-out to scalar code on ``nan``, a scalar remainder and a 16-step serial horizontal
    reduction.
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
    the exp-sum's loop this way (2 of its ~25 instructions per 16 float32; the fix-up would
    lengthen that loop for nothing): a ``nan`` in that row makes its own exp-sum ``nan``
    whatever its max, and with it every output of the row.
    """
    return a if a > b else b


@overload(fmax_unchecked, jit_options={"fastmath": set(PRIMITIVE_FASTMATH)})
def _fmax_unchecked_jit(a, b):
    if isinstance(a, types.Float) and a == b:
        return lambda a, b: _maximum_of_numbers(a, b)
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

    LLVM's tuning for AVX-512 CPUs prefers 256-bit vectors, which would leave half of each
    register idle in the arithmetic-bound polynomial ``exp`` loops (see
    ``docs/performance.md``, "Design decisions"). The hint is an attribute of the function
    whose body calls this intrinsic (an intrinsic, not an ``overload``, so that it lands
    there); on CPUs without AVX-512 LLVM ignores it.
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
    removes them. Every ``row_helper`` starts with this call.
    """

    def codegen(context, builder, signature, args):
        add_function_attribute(builder, "alwaysinline")
        return context.get_dummy_value()

    return types.none(), codegen
