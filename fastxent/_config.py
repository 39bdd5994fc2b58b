"""Compilation options shared by every kernel: the one place that sets them.

``FASTMATH`` is the set of LLVM fast-math flags the kernels may use. It deliberately leaves
out ``nnan`` and ``ninf`` (both part of ``fastmath=True``): with them LLVM may assume no
``inf``/``nan`` exist and delete the ``-inf`` mask and ``nan`` handling. ``reassoc`` lets
reductions vectorise; ``contract`` allows fused multiply-add; ``afn``, ``nsz``, ``arcp``
are harmless for these formulas.

``PRIMITIVE_FASTMATH`` is for the vector math primitives in ``_simd``: only ``contract``,
because ``reassoc`` would undo the exact Cody-Waite range reduction inside ``exp``.
"""

from __future__ import annotations

import types
from collections.abc import Callable
from typing import Any, TypeVar

import numba

from fastxent._cache import install_package_stamps

F = TypeVar("F", bound=Callable[..., Any])

# Before any kernel is decorated: its on-disk cache is stamped with all of fastxent's
# sources, not only its own file (see fastxent._cache).
install_package_stamps()

FASTMATH = frozenset({"reassoc", "contract", "afn", "nsz", "arcp"})
PRIMITIVE_FASTMATH = frozenset({"contract"})


# Only explicit ``prange`` loops run in parallel. With ``parallel=True`` Numba also turns
# whole-array operations outside them (``np.sum(weight)``, ``astype``, ``out[:] = 0``) into
# parallel loops of their own, each one more launch and join of the threads, which costs
# more than such small operations take (see docs/performance.md, "Design decisions").
PARALLEL_OPTIONS = {
    "prange": True,
    "comprehension": False,
    "reduction": False,
    "inplace_binop": False,
    "setitem": False,
    "numpy": False,
    "stencil": False,
    "fusion": False,
}


def parallel_kernel(function: F) -> F:
    """Compile ``function`` as a multi-threaded kernel (``prange`` over rows), cached on disk."""
    return _compile(function, parallel=dict(PARALLEL_OPTIONS), fastmath=set(FASTMATH))


def serial_kernel(function: F) -> F:
    """Compile ``function`` as a single-threaded kernel for small inputs, cached on disk.

    Numba's on-disk cache keys a function by its qualified name, source line, signature and
    bytecode, not by ``parallel=``: compiled from the same function object, the serial and
    the parallel versions would overwrite and load each other's machine code. The serial
    one is therefore compiled from a renamed copy (``<name>_serial``).
    """
    return _compile(_renamed(function, "_serial"), fastmath=set(FASTMATH))


def _compile(function: F, **options: Any) -> F:
    """``numba.njit`` with the options every kernel shares, cached on disk when possible.

    Numba caches next to the source, else in ``NUMBA_CACHE_DIR`` or the user's cache
    directory; when none of them is writable (a read-only install in a read-only home),
    ``cache=True`` fails at decoration time, and fastxent compiles without a disk cache.
    """
    options.update(nogil=True, error_model="numpy")
    try:
        return numba.njit(cache=True, **options)(function)  # type: ignore[no-any-return]
    except RuntimeError as error:
        if "no locator available" not in str(error):
            raise
        return numba.njit(cache=False, **options)(function)  # type: ignore[no-any-return]


def _renamed(function: F, suffix: str) -> F:
    """A copy of ``function`` (same code and globals) whose name ends in ``suffix``."""
    clone = types.FunctionType(
        function.__code__,
        function.__globals__,
        function.__name__ + suffix,
        function.__defaults__,
        function.__closure__,
    )
    clone.__qualname__ = function.__qualname__ + suffix
    clone.__module__ = function.__module__
    clone.__doc__ = function.__doc__
    return clone  # type: ignore[return-value]


def row_helper(function: F) -> F:
    """Compile a loop over one row that the kernels call.

    Its body starts with ``_simd.inline_into_callers()``, so that LLVM inlines it into the
    kernels (it is compiled and cached once, not once per kernel); a helper without it
    would bring back a call and its atomic reference counting per row, so it is refused.
    """
    if "inline_into_callers" not in function.__code__.co_names:
        raise TypeError(f"row helper {function.__name__} must call inline_into_callers()")
    return _compile(function, fastmath=set(FASTMATH))


def kernel_part(function: F) -> F:
    """A piece of a kernel (with its own ``prange``) inlined into the kernel at Numba's level.

    Inlined before the parallel transformation, its ``prange`` runs threaded inside the
    parallel compilation of the kernel and serially inside the serial one.
    """
    return numba.njit(  # type: ignore[return-value]
        fastmath=set(FASTMATH), nogil=True, error_model="numpy", inline="always"
    )(function)


def exact_order(function: F) -> F:
    """Compile a function in the order its operations are written (fused multiply-add only).

    For the vector math primitives and for the few loops whose accuracy rests on that
    order, which ``reassoc`` would let LLVM change (see ``PRIMITIVE_FASTMATH``).
    """
    return _compile(function, fastmath=set(PRIMITIVE_FASTMATH))
