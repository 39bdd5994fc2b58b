"""One kernel source, compiled twice: multi-threaded for large inputs, serial for small ones.

Starting a parallel region costs more than a small batch takes, so small inputs run on the
calling thread (``fastxent._plan.runs_serially``). How much smaller depends on the
threading layer (measured on 2 cores, rows of 1000 float32 classes):

- ``omp`` keeps its worker threads spinning between launches (and burning the other
  core): a launch costs ~3 us, and 64 x 1000 rows took 25 us in parallel against 36 us
  serially.
- ``tbb``'s workers sleep between launches, and Numba's ``tbb`` layer opens a new task
  arena for each one: the second core joined 20-80 us late. 64 x 1000 rows took 39 us
  in parallel back to back and 55 us with 1 ms between calls, against 36 us serially;
  parallel wins clearly from ~2**17 elements (256 x 1000: 101 us against 138 us).
- ``workqueue`` takes ~90 us per launch.

Where the threading layer cannot run a parallel kernel safely right now (see
``fastxent._threading``) the serial one runs instead: same code, same results. Both
versions compile lazily, on first use, and are cached on disk.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import numba

from fastxent._config import parallel_kernel, serial_kernel
from fastxent._numba_compat import compiled_entry_point
from fastxent._plan import runs_serially
from fastxent._threading import exclusive_layer, parallel_permission


class RowKernel:
    """A row kernel in its parallel and serial compilations, chosen by input size."""

    #: Check at every :meth:`run_typed` call that the key still fixes the argument types.
    verify_keys = False

    def __init__(self, function: Callable[..., Any]) -> None:
        self.__name__ = function.__name__
        self.__doc__ = function.__doc__
        self.function = function
        # The serial compilation's entry points by the caller's key (run_typed), and the
        # argument types each key was first used with.
        self._entry_points: dict[Any, Callable[..., Any]] = {}
        self._signatures: dict[Any, tuple[Any, ...]] = {}

    # Numba dispatchers are created on first use, not at import (that would slow it).
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
        if runs_serially(n_elements):
            return self.serial(*args)
        return self._run_parallel(*args)

    def _run_parallel(self, *args: Any) -> Any:
        """The parallel compilation, or the serial one where the layer cannot run it now."""
        if exclusive_layer():
            with parallel_permission() as allowed:
                return self.parallel(*args) if allowed else self.serial(*args)
        return self.parallel(*args)

    def run_typed(self, key: Any, n_elements: int, *args: Any) -> Any:
        """:meth:`__call__` for a caller that knows its arguments' Numba types by ``key``.

        Inputs that run serially then skip Numba's dispatch (the type of every argument
        looked up before each call, a large part of a small call) and call the machine
        code of the serial compilation directly. ``key`` must determine the Numba type of
        every argument: dtypes, dimensions, layouts, writability, which are ``None``. With
        :attr:`verify_keys` (the test suite sets it) every call checks that it does.
        """
        if not runs_serially(n_elements):
            return self._run_parallel(*args)
        entry_point = self._entry_points.get(key)
        if entry_point is None:
            result = self.serial(*args)
            self._entry_points[key] = compiled_entry_point(self.serial, args)
            self._signatures[key] = _signature(args)
            return result
        if RowKernel.verify_keys and self._signatures[key] != _signature(args):
            raise AssertionError(
                f"{self.__name__}.run_typed: key {key!r} was first used for arguments of types "
                f"{self._signatures[key]}, now for {_signature(args)}: the key misses a type"
            )
        return entry_point(*args)


def _signature(args: tuple[Any, ...]) -> tuple[Any, ...]:
    return tuple(numba.typeof(arg) for arg in args)


def row_kernel(function: Callable[..., Any]) -> RowKernel:
    """Decorate a kernel written with ``numba.prange`` over rows."""
    return RowKernel(function)
