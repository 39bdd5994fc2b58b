"""The accumulating matrix product ``out += a @ b``, through the BLAS that NumPy uses.

``np.matmul`` always overwrites its ``out`` (BLAS ``beta = 0``): adding a product into an
array with it takes a temporary and a pass of additions over the array. NumPy's wheels
ship OpenBLAS with its CBLAS interface exported under a prefix (``scipy_cblas_sgemm64_``,
64-bit integers); called with ``beta = 1`` it adds the product in as it computes it.
Where that library is not found (NumPy built against another BLAS) or an operand's
memory does not suit BLAS, :func:`add_product` falls back to the temporary, in blocks of
rows so that it stays small.
"""

from __future__ import annotations

import ctypes
import functools
import glob
import os
from typing import Any

import numpy as np
from numpy.typing import NDArray

_ROW_MAJOR, _NO_TRANSPOSE, _TRANSPOSE = 101, 111, 112  # the CBLAS enumerations
# The symbols of NumPy's own OpenBLAS (the scipy-openblas64 build): prefixed, ILP64.
_SYMBOLS = {
    np.dtype(np.float32): "scipy_cblas_sgemm64_",
    np.dtype(np.float64): "scipy_cblas_dgemm64_",
}
_SCALARS = {np.dtype(np.float32): ctypes.c_float, np.dtype(np.float64): ctypes.c_double}


def _library_paths() -> list[str]:
    """Where NumPy's wheels put their OpenBLAS (Linux and Windows; macOS)."""
    root = os.path.dirname(np.__file__)
    patterns = [
        os.path.join(root, os.pardir, "numpy.libs", "*openblas*"),
        os.path.join(root, ".dylibs", "*openblas*"),
    ]
    return sorted(path for pattern in patterns for path in glob.glob(pattern))


@functools.cache
def _gemm(dtype: np.dtype[Any]) -> Any:
    """NumPy's ``cblas_?gemm`` for ``dtype`` as a ctypes function, or ``None``."""
    for path in _library_paths():
        try:
            library = ctypes.CDLL(path)
            function = getattr(library, _SYMBOLS[dtype])
        except (OSError, AttributeError):
            continue
        size, scalar = ctypes.c_int64, _SCALARS[dtype]
        function.restype = None
        function.argtypes = [
            ctypes.c_int, ctypes.c_int, ctypes.c_int, size, size, size, scalar,
            ctypes.c_void_p, size, ctypes.c_void_p, size, scalar, ctypes.c_void_p, size,
        ]  # fmt: skip
        if _works(function, dtype):
            return function
    return None


def accumulates_in_place(dtype: np.dtype[Any]) -> bool:
    """Whether :func:`add_product` needs no temporary for ``dtype`` (NumPy's OpenBLAS)."""
    return dtype in _SYMBOLS and _gemm(dtype) is not None


def _works(function: Any, dtype: np.dtype[Any]) -> bool:
    """Whether ``function`` adds a small known product correctly (the ABI is as assumed)."""
    a = np.arange(6, dtype=dtype).reshape(2, 3)
    b = np.arange(12, dtype=dtype).reshape(3, 4)
    out = np.ones((2, 4), dtype)
    _call(function, a, b, out)
    return bool(np.array_equal(out, a @ b + 1))


def _operand(x: NDArray[Any]) -> tuple[int, int] | None:
    """``(transpose flag, leading dimension)`` of a 2-D operand, or ``None`` if unsuitable."""
    itemsize = x.itemsize
    rows, columns = x.shape
    row_stride, column_stride = x.strides
    if (column_stride == itemsize or columns == 1) and row_stride % itemsize == 0:
        lead = row_stride // itemsize
        if lead >= max(columns, 1) or rows == 1:
            return _NO_TRANSPOSE, max(lead, columns, 1)
    if (row_stride == itemsize or rows == 1) and column_stride % itemsize == 0:
        lead = column_stride // itemsize
        if lead >= max(rows, 1) or columns == 1:
            return _TRANSPOSE, max(lead, rows, 1)
    return None


def _call(function: Any, a: NDArray[Any], b: NDArray[Any], out: NDArray[Any]) -> bool:
    """``out += a @ b`` by one ``gemm`` call with ``beta = 1``; ``False`` if not possible."""
    first, second, target = _operand(a), _operand(b), _operand(out)
    if first is None or second is None or target is None or target[0] != _NO_TRANSPOSE:
        return False
    (m, k), n = a.shape, b.shape[1]
    function(
        _ROW_MAJOR, first[0], second[0], m, n, k, 1.0, a.ctypes.data, first[1],
        b.ctypes.data, second[1], 1.0, out.ctypes.data, target[1],
    )  # fmt: skip
    return True


def add_product(
    a: NDArray[Any], b: NDArray[Any], out: NDArray[Any], block_rows: int, blas: bool = True
) -> None:
    """``out += a @ b`` for 2-D float32/float64 arrays of ``out``'s dtype.

    ``out`` must not overlap ``a`` or ``b``. With ``blas`` (the default), one BLAS call
    adds the product in place when NumPy's OpenBLAS is available; otherwise the product
    goes through a temporary of ``block_rows`` rows of ``out`` at a time.
    """
    if a.shape[1] == 0 or out.size == 0:
        return
    function = _gemm(out.dtype) if blas and a.dtype == b.dtype == out.dtype else None
    if function is not None and _call(function, a, b, out):
        return
    rows = max(1, block_rows)
    part = np.empty((min(rows, out.shape[0]), out.shape[1]), out.dtype)
    for start in range(0, out.shape[0], rows):
        stop = min(start + rows, out.shape[0])
        block = part[: stop - start]
        np.matmul(a[start:stop], b, out=block)
        out[start:stop] += block
