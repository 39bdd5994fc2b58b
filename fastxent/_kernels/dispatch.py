"""One kernel source, compiled twice: multi-threaded for large inputs, serial for small ones.

Starting a parallel region costs more than a small batch takes, so inputs below
:func:`parallel_min_elements` run on the calling thread. How much smaller depends on the
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
from fastxent._environment import integer_setting
from fastxent._threading import (
    exclusive_layer,
    launched_layer,
    parallel_permission,
    parallel_threads,
    prepare,
)

# Inputs below this many elements never run in parallel, whatever the layer.
PARALLEL_MIN_ELEMENTS = 1 << 15
# The threshold of layers whose workers must be woken up for each launch (module docstring).
PARALLEL_MIN_ELEMENTS_BY_LAYER = {"tbb": 1 << 17, "workqueue": 1 << 17}
# Set to a number of elements to use that threshold under every layer (tests, tuning).
THRESHOLD_ENV = "FASTXENT_PARALLEL_MIN_ELEMENTS"
_THRESHOLD_OVERRIDE = integer_setting(
    THRESHOLD_ENV, "a number of elements", "fastxent's default thresholds"
)
# Below this size no layer runs in parallel: checked first, before asking for the layer.
_SMALLEST_PARALLEL = PARALLEL_MIN_ELEMENTS if _THRESHOLD_OVERRIDE is None else _THRESHOLD_OVERRIDE


def parallel_min_elements(layer: str | None) -> int:
    """Smallest input (in elements) that runs the parallel kernels under ``layer``."""
    if _THRESHOLD_OVERRIDE is not None:
        return _THRESHOLD_OVERRIDE
    return PARALLEL_MIN_ELEMENTS_BY_LAYER.get(layer or "", PARALLEL_MIN_ELEMENTS)


def _layer_threshold() -> int:
    """:func:`parallel_min_elements` of this process's layer (chosen now if not yet)."""
    layer = launched_layer()
    if layer is None:
        prepare()
        layer = launched_layer()
    return parallel_min_elements(layer)


def _runs_serially(n_elements: int) -> bool:
    """Whether an input of ``n_elements`` takes the serial compilation of a row kernel."""
    # The size tests first: asking Numba for the thread count takes ~0.8 us.
    return (
        n_elements < _SMALLEST_PARALLEL or n_elements < _layer_threshold() or parallel_threads() < 2
    )


class RowKernel:
    """A row kernel in its parallel and serial compilations, chosen by input size."""

    def __init__(self, function: Callable[..., Any]) -> None:
        self.__name__ = function.__name__
        self.__doc__ = function.__doc__
        self.function = function
        # The serial compilation's entry points by the caller's key (run_typed).
        self._entry_points: dict[Any, Callable[..., Any]] = {}

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
        if _runs_serially(n_elements):
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
        looked up before each call: ~0.6 of a 1 x 10 forward's ~4 us, and of a 64 x 1000
        forward's ~18 us) and call the machine code of the serial compilation directly.
        ``key`` must determine the Numba type of every argument: dtypes, dimensions,
        layouts, writability, which are ``None``.
        """
        if not _runs_serially(n_elements):
            return self._run_parallel(*args)
        entry_point = self._entry_points.get(key)
        if entry_point is None:
            result = self.serial(*args)
            self._entry_points[key] = _entry_point(self.serial, args)
            return result
        return entry_point(*args)


def _entry_point(dispatcher: Any, args: tuple[Any, ...]) -> Callable[..., Any]:
    """The compiled function that ``dispatcher`` runs for ``args``, without its dispatch.

    The dispatcher itself where Numba does not expose it (a version without
    ``overloads`` or ``entry_point``).
    """
    signature = tuple(numba.typeof(arg) for arg in args)
    compiled = getattr(dispatcher, "overloads", {}).get(signature)
    entry_point: Callable[..., Any] = getattr(compiled, "entry_point", None) or dispatcher
    return entry_point


def row_kernel(function: Callable[..., Any]) -> RowKernel:
    """Decorate a kernel written with ``numba.prange`` over rows."""
    return RowKernel(function)
