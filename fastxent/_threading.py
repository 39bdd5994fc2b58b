"""Which of Numba's threading layers runs fastxent's parallel kernels, and when it may.

Numba picks a threading layer at the first parallel launch in a process, in the order of
``NUMBA_THREADING_LAYER_PRIORITY`` (default ``tbb omp workqueue``), or the one named by
``NUMBA_THREADING_LAYER``. Two of them are unsafe in situations a library meets:

- ``workqueue`` aborts the process when two threads launch parallel work at once;
- ``omp`` (GNU OpenMP) kills a ``fork()``-ed child that launches parallel work after its
  parent did.

``tbb`` has neither problem, but PyPI's ``tbb`` wheel puts ``libtbb.so.12`` where Numba's
``tbbpool`` extension does not look (it has no RPATH). fastxent therefore:

1. before its first parallel launch, and only if no layer has been chosen yet, loads
   ``libtbb`` from the active environment when the ``tbb`` package is installed
   (``pip install fastxent[tbb]``). Numba's own default order then selects ``tbb``. No Numba
   setting is changed: ``NUMBA_THREADING_LAYER`` and the priority list are honoured as set.
2. guards the unsafe layers instead of crashing: under ``workqueue`` only one thread at a
   time runs a parallel kernel (the others run the serial kernel, same results); under
   ``omp`` a forked child runs the serial kernels.
"""

from __future__ import annotations

import ctypes
import os
import sys
import sysconfig
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

_TBB_LIBRARY = "libtbb.so.12"

_state_lock = threading.Lock()
_prepared = False
_launched_layer: str | None = None  # the layer of this process, once a kernel launched
_forked_from_omp = False  # this process is a fork() child of a parent that used omp
_workqueue_lock = threading.Lock()
_thread_counter: Callable[[], int] | None = None  # Numba's own, once the layer runs


def _tbb_candidates() -> list[str]:
    """Where PyPI's ``tbb`` wheel may have put ``libtbb.so.12`` for this interpreter."""
    roots = [sys.prefix, sysconfig.get_config_var("userbase") or "", sys.base_prefix]
    paths = [os.path.join(root, "lib", _TBB_LIBRARY) for root in roots if root]
    return [p for p in dict.fromkeys(paths) if os.path.exists(p)]


def load_tbb() -> str | None:
    """Load ``libtbb`` globally so that Numba can use its ``tbb`` layer; return its path."""
    for path in _tbb_candidates():
        try:
            ctypes.CDLL(path, mode=ctypes.RTLD_GLOBAL)
        except OSError:
            continue
        return path
    return None


def _layer_already_chosen() -> str | None:
    import numba

    try:
        return str(numba.threading_layer())  # type: ignore[attr-defined]
    except ValueError:  # no parallel region has run in this process yet
        return None


def prepare() -> None:
    """Choose the threading layer, making ``tbb`` loadable first (once per process).

    Numba starts its layer on the first parallel launch or ``numba.get_num_threads()``
    call; this does it here, after loading ``libtbb``, so the choice is known from now on.
    """
    global _prepared, _launched_layer
    if _prepared:
        return
    import numba

    with _state_lock:
        if not _prepared:
            if _layer_already_chosen() is None:
                load_tbb()
            numba.get_num_threads()  # starts the layer
            _launched_layer = _layer_already_chosen()
            _use_numba_thread_counter()
            _prepared = True


def _use_numba_thread_counter() -> None:
    """Find Numba's lock-free thread counter (for :func:`parallel_threads`), once it runs."""
    global _thread_counter
    from fastxent._numba_compat import thread_counter

    _thread_counter = thread_counter()  # None: another Numba, keep the public call


def _after_fork_in_child() -> None:
    global _forked_from_omp, _workqueue_lock
    if _launched_layer == "omp":
        _forked_from_omp = True
    _workqueue_lock = threading.Lock()  # a lock held by another thread does not survive


os.register_at_fork(after_in_child=_after_fork_in_child)


def parallel_threads() -> int:
    """Threads a parallel kernel launched now from this thread would get (1: run serially).

    1 in a forked child of an ``omp`` parent. Called before every large kernel, so it reads
    Numba's thread count directly where Numba has that function:
    ``numba.get_num_threads()`` takes a process-wide lock first.
    """
    if not _prepared:
        prepare()
    if _forked_from_omp:
        return 1
    if _thread_counter is not None:
        return int(_thread_counter())
    import numba

    return int(numba.get_num_threads())


def launched_layer() -> str | None:
    """The threading layer of this process (``None`` before :func:`prepare`)."""
    return _launched_layer


def exclusive_layer() -> bool:
    """Whether only one thread at a time may launch parallel work (``workqueue``)."""
    return _launched_layer == "workqueue"


@contextmanager
def parallel_permission() -> Iterator[bool]:
    """Yield whether the caller may launch a parallel kernel now (else: run it serially).

    Under ``workqueue`` the first thread to ask gets it until it is done; the others get
    ``False``. Elsewhere the answer is :func:`parallel_threads` ``> 1``.
    """
    if parallel_threads() < 2:
        yield False
        return
    if _launched_layer == "workqueue":
        lock = _workqueue_lock
        if not lock.acquire(blocking=False):
            yield False
            return
        try:
            yield True
        finally:
            lock.release()
        return
    yield True


def describe() -> dict[str, str]:
    """The threading facts ``fastxent info`` prints."""
    import numba

    prepare()
    return {
        "threading layer": str(_launched_layer),
        "layer requested": os.environ.get("NUMBA_THREADING_LAYER", "default"),
        "tbb library": (_tbb_candidates() or ["not installed (pip install fastxent[tbb])"])[0],
        "threads": str(numba.get_num_threads()),
        "forked child of omp": str(_forked_from_omp),
    }
