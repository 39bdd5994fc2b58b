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
- :func:`tanh` (for soft-capped logits) is Cephes' polynomial near 0 and
  :func:`exp_nonpositive` of ``-2|x|`` elsewhere.
- :func:`fmaximum` emits ``llvm.maximum``, which LLVM vectorises in reductions;
  :func:`fmax_unchecked` is its cheaper sibling for maxima whose ``nan`` nobody reads.

Each primitive also runs as plain Python (``NUMBA_DISABLE_JIT=1``) with the same meaning.
"""

from fastxent._simd.exp import exp_clamped, exp_nonpositive
from fastxent._simd.llvm import (
    fmax_unchecked,
    fmaximum,
    inline_into_callers,
    prefetch,
    use_512bit_vectors,
    vector_width_bits,
)
from fastxent._simd.log import log_positive
from fastxent._simd.split import split_for_sum
from fastxent._simd.tanh import tanh

__all__ = [
    "exp_clamped",
    "exp_nonpositive",
    "fmax_unchecked",
    "fmaximum",
    "inline_into_callers",
    "log_positive",
    "prefetch",
    "split_for_sum",
    "tanh",
    "use_512bit_vectors",
    "vector_width_bits",
]
