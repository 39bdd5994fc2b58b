"""fastxent on Dask arrays: the same functions, lazily, chunk by chunk, on any scheduler.

``cross_entropy``, ``logsumexp``, ``softmax``, ``log_softmax`` and ``evaluate`` take
``dask.array`` logits chunked along their rows, ``linear_cross_entropy`` hidden states,
and give the numbers of the in-memory call: reductions combine sums and weight totals
across chunks, never means of means. ``from_file`` reads ``.npy``, ``.safetensors``, HDF5
and Zarr files as Dask arrays whose tasks read their own rows by path.
Dask is an optional dependency: ``pip install 'fastxent[dask]'``.
"""

try:
    import dask.array  # noqa: F401
except ImportError as error:  # pragma: no cover - exercised in a subprocess test
    raise ImportError(
        "fastxent.dask needs Dask, which is not installed: pip install 'fastxent[dask]'"
    ) from error

from fastxent.dask._files import from_file
from fastxent.dask._functions import (
    cross_entropy,
    evaluate,
    linear_cross_entropy,
    log_softmax,
    logsumexp,
    softmax,
)

__all__ = [
    "cross_entropy",
    "evaluate",
    "from_file",
    "linear_cross_entropy",
    "log_softmax",
    "logsumexp",
    "softmax",
]
