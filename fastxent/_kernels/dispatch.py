"""One kernel source, compiled twice: multi-threaded for large inputs, serial for small ones.

Starting a parallel region costs microseconds (milliseconds with some threading layers),
more than a whole small batch takes, so inputs below ``PARALLEL_MIN_ELEMENTS`` run on the
calling thread. Where the threading layer cannot run a parallel kernel safely right now
(see ``fastxent._threading``) the serial one runs instead: same code, same results. Both
versions compile lazily, on first use, and are cached on disk.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from fastxent._config import parallel_kernel, serial_kernel
from fastxent._threading import exclusive_layer, parallel_permission, parallel_threads

PARALLEL_MIN_ELEMENTS = 1 << 15


class RowKernel:
    """A row kernel in its parallel and serial compilations, chosen by input size."""

    def __init__(self, function: Callable[..., Any]) -> None:
        self.__name__ = function.__name__
        self.__doc__ = function.__doc__
        self.function = function

    # Numba dispatchers are created on first use: making 26 of them at import took ~20 ms.
    @functools.cached_property
    def parallel(self) -> Any:
        """The ``parallel=True`` compilation (a Numba dispatcher)."""
        return parallel_kernel(self.function)

    @functools.cached_property
    def serial(self) -> Any:
        """The single-threaded compilation (a Numba dispatcher)."""
        return serial_kernel(self.function)

    def __call__(self, n_elements: int, *args: Any) -> Any:
        """Run on ``args``; ``n_elements`` (the logits' size) picks the compilation."""
        if n_elements < PARALLEL_MIN_ELEMENTS or parallel_threads() < 2:
            return self.serial(*args)
        if exclusive_layer():
            with parallel_permission() as allowed:
                return self.parallel(*args) if allowed else self.serial(*args)
        return self.parallel(*args)


def row_kernel(function: Callable[..., Any]) -> RowKernel:
    """Decorate a kernel written with ``numba.prange`` over rows."""
    return RowKernel(function)
