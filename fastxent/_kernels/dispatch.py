"""One kernel source, compiled twice: multi-threaded for large inputs, serial for small ones.

Starting a parallel region costs more than a small batch takes, so small inputs run on the
calling thread (``fastxent._plan.runs_serially``). How small depends on the threading
layer, because its launch cost does (the thresholds are ``fastxent._tuning.THRESHOLDS``;
see ``docs/performance.md``, "Design decisions"):

- ``omp`` keeps its worker threads spinning between launches (burning the other cores'
  time), so a launch is cheap and modest batches already gain from threads.
- ``tbb``'s workers sleep between launches, and Numba's ``tbb`` layer opens a new task
  arena for each one: the other threads join late, later still after a pause between
  calls, so only larger inputs make up for the wait.
- ``workqueue``'s launches are slow too; it has ``tbb``'s larger threshold.

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
