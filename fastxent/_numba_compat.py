"""Every use of a Numba or llvmlite interface that is not public API, behind one door.

Each hook is kept because it pays for itself: the measurements are in
``docs/performance.md``, "Design decisions", and what each hook is for in
``docs/design.md``, "Decisions that rely on Numba internals". Each has a check,
:func:`check`, that the test suite runs: after a Numba upgrade that breaks one, the suite
fails with a message naming the hook and the Numba version, instead of fastxent silently
slowing down or computing with stale machine code.

- :func:`add_function_attribute`: LLVM function attributes from inside an intrinsic
  (``alwaysinline`` for the row helpers, the 512-bit vector width).
- :func:`declare_llvm_function`, :func:`element_pointer`: an ``llvm.*`` intrinsic and an
  element's address, for the float primitives and the prefetch.
- :func:`compiled_entry_point`: the machine code behind a dispatcher, called without its
  per-call type dispatch (small calls).
- :func:`thread_counter`: Numba's lock-free thread count, read before each large call.
- :func:`cache_locator_classes` / :func:`cache_locator`: the on-disk cache's locators,
  which fastxent extends so that a kernel's cache is stamped with all of its sources.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numba


class NumbaCompatibilityError(RuntimeError):
    """A private Numba interface fastxent relies on is missing or changed."""


def _broken(hook: str, detail: str) -> NumbaCompatibilityError:
    return NumbaCompatibilityError(
        f"fastxent's hook {hook!r} does not work with numba {numba.__version__}: {detail}. "
        "Pin the numba version fastxent was released with, or update fastxent._numba_compat."
    )


def add_function_attribute(builder: Any, attribute: str) -> None:
    """Add an LLVM attribute (a keyword, or ``'"key"="value"'``) to the function being built.

    llvmlite validates attribute names on ``add``; string attributes go into its set
    directly.
    """
    set.add(builder.function.attributes, attribute)


def declare_llvm_function(builder: Any, function_type: Any, name: str) -> Any:
    """The declaration of ``name`` (an ``llvm.*`` intrinsic) in the module being built."""
    from numba.core import cgutils

    return cgutils.get_or_insert_function(builder.module, function_type, name)


def element_pointer(context: Any, builder: Any, array_type: Any, array: Any, index: Any) -> Any:
    """The address of ``array[index]`` (a 1-D array, no bounds check) in generated code."""
    from numba.core import cgutils

    return cgutils.get_item_pointer(context, builder, array_type, array, [index], wraparound=False)


def compiled_entry_point(dispatcher: Any, args: tuple[Any, ...]) -> Callable[..., Any]:
    """The compiled function ``dispatcher`` runs for ``args``, callable without dispatch.

    The dispatcher itself where Numba does not expose it (then only the saving is lost).
    """
    signature = tuple(numba.typeof(arg) for arg in args)
    compiled = getattr(dispatcher, "overloads", {}).get(signature)
    entry_point: Callable[..., Any] = getattr(compiled, "entry_point", None) or dispatcher
    return entry_point


def thread_counter() -> Callable[[], int] | None:
    """``numba.get_num_threads`` without its process-wide lock, or ``None`` where missing.

    Valid once the threading layer has started.
    """
    from numba.np.ufunc import parallel

    counter = getattr(parallel, "_get_num_threads", None)
    return counter if counter is not None and counter() >= 1 else None


def cache_locator_classes() -> list[type] | None:
    """Numba's list of on-disk cache locator classes (tried in order), or ``None``."""
    try:
        from numba.core import caching
    except ImportError:
        return None
    impl = getattr(caching, "CacheImpl", None) or getattr(caching, "_CacheImpl", None)
    classes = getattr(impl, "_locator_classes", None)
    return classes if isinstance(classes, list) else None


def cache_locator(name: str) -> type | None:
    """One of Numba's locator classes by name (``InTreeCacheLocator``, ...), or ``None``."""
    from numba.core import caching

    locator = getattr(caching, name, None) or getattr(caching, "_" + name, None)
    return locator if isinstance(locator, type) else None


def check() -> None:
    """Raise :class:`NumbaCompatibilityError` if any hook no longer works as fastxent needs."""
    import numpy as np

    from fastxent import _cache
    from fastxent._simd import fmaximum, inline_into_callers, prefetch, use_512bit_vectors

    @numba.njit
    def probe(x):  # type: ignore[no-untyped-def]
        inline_into_callers()
        use_512bit_vectors()
        return x + 1.0

    @numba.njit
    def llvm_probe(values):  # type: ignore[no-untyped-def]
        prefetch(values, 1)
        return fmaximum(values[0], values[1])

    try:
        largest = llvm_probe(np.array([1.0, np.nan]))
    except Exception as error:  # noqa: BLE001  (any failure to compile is the news)
        raise _broken("declare_llvm_function/element_pointer", repr(error)) from error
    if not np.isnan(largest):
        raise _broken("declare_llvm_function", "llvm.maximum no longer propagates nan")
    args = (np.float64(1.0),)
    probe(*args)
    ir = next(iter(probe.inspect_llvm().values()))
    for attribute in ("alwaysinline", '"prefer-vector-width"="512"'):
        if attribute not in ir:
            raise _broken("add_function_attribute", f"{attribute} is not in the compiled IR")
    entry_point = compiled_entry_point(probe, args)
    if entry_point is probe or entry_point(*args) != 2.0:
        raise _broken("compiled_entry_point", "the dispatcher exposes no entry point")
    numba.get_num_threads()  # starts the threading layer
    counter = thread_counter()
    if counter is None or counter() != numba.get_num_threads():
        raise _broken("thread_counter", "numba.np.ufunc.parallel._get_num_threads is missing")
    if not _cache.install_package_stamps():
        raise _broken("cache_locator_classes", "the cache locators cannot be extended")
