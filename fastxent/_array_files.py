"""Arrays in files, read in blocks along their first axis: ``.npy``, ``.npz``, ``.safetensors``.

``.npy`` files are memory-mapped and never read whole; after each block the pages it
touched are handed back (``MADV_DONTNEED``: they stay in the page cache, not in this
process), so the resident memory of a pass over a file larger than memory stays at one
block. ``.safetensors`` tensors are sliced through the ``safetensors`` package, which
reads only the slice. An ``.npz`` member is read whole when opened (NumPy decompresses
members whole): fine for labels, not for logits larger than memory.

Every problem with a file is an :class:`ArrayFileError` whose message names the file and
says what is wrong, for the command line to print as one line.
"""

from __future__ import annotations

import mmap
import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

_PAGE = mmap.PAGESIZE


class ArrayFileError(ValueError):
    """A file that cannot be read as the array it should hold."""


@dataclass
class ArrayFile:
    """One array in a file: its shape and dtype, and blocks of it along the first axis."""

    path: str
    key: str | None
    shape: tuple[int, ...]
    dtype: np.dtype[Any]
    _array: Any = field(repr=False)  # an ndarray view of a mapping, or a safetensors slice
    _mapping: mmap.mmap | None = field(default=None, repr=False)
    _offset: int = 0  # where the data starts in the mapping

    @property
    def nbytes(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64)) * self.dtype.itemsize

    def block(self, start: int, stop: int) -> NDArray[Any]:
        """``array[start:stop]`` along the first axis: a view of the mapping for ``.npy``.

        A view of a mapping is valid until :meth:`release` of its rows, which only drops
        the pages from this process: reading it again faults them back in from the cache.
        """
        return np.asarray(self._array[start:stop])

    def release(self, start: int, stop: int) -> None:
        """Hand back the pages of ``array[start:stop]`` (a mapped ``.npy`` only)."""
        if self._mapping is None or not hasattr(mmap, "MADV_DONTNEED"):
            return
        row_bytes = self.nbytes // self.shape[0] if self.shape and self.shape[0] else 0
        first = self._offset + start * row_bytes
        last = self._offset + stop * row_bytes
        first -= first % _PAGE
        if last > first:
            self._mapping.madvise(mmap.MADV_DONTNEED, first, last - first)

    def describe(self) -> dict[str, Any]:
        """Path, key, shape and dtype, for reports."""
        return {
            "path": self.path,
            "key": self.key,
            "shape": list(self.shape),
            "dtype": str(self.dtype),
        }


def open_array(path: str, key: str | None = None) -> ArrayFile:
    """The array in ``path`` (``key`` chooses one of an ``.npz``'s or ``.safetensors``'s)."""
    if not os.path.exists(path):
        raise ArrayFileError(f"{path}: no such file")
    if os.path.isdir(path):
        raise ArrayFileError(f"{path} is a directory, not an array file")
    suffix = os.path.splitext(path)[1].lower()
    if suffix == ".npy":
        if key is not None:
            raise ArrayFileError(
                f"{path}: an .npy file holds one array; --key is for .npz and .safetensors"
            )
        return _open_npy(path)
    if suffix == ".npz":
        return _open_npz(path, key)
    if suffix == ".safetensors":
        return _open_safetensors(path, key)
    raise ArrayFileError(f"{path}: not an array file (expected .npy, .npz or .safetensors)")


def _open_npy(path: str) -> ArrayFile:
    with open(path, "rb") as handle:
        try:
            version = np.lib.format.read_magic(handle)
            # Format 3.0 differs from 2.0 only by a UTF-8 header, which 2.0's reader takes.
            read = np.lib.format.read_array_header_1_0
            if version != (1, 0):
                read = np.lib.format.read_array_header_2_0
            shape, fortran_order, dtype = read(handle)
        except (ValueError, EOFError, OSError, SyntaxError) as error:
            raise ArrayFileError(f"{path}: not a valid .npy file ({error})") from None
        offset = handle.tell()
    if dtype.hasobject:
        raise ArrayFileError(f"{path} holds Python objects (dtype {dtype}), not numbers")
    expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    size = os.path.getsize(path)
    if size < offset + expected:
        raise ArrayFileError(
            f"{path} is truncated: its header says shape {tuple(shape)} of {dtype} "
            f"({expected} bytes of data) but the file holds {size - offset}"
        )
    if expected == 0:
        return ArrayFile(path, None, tuple(shape), dtype, np.zeros(shape, dtype))
    with open(path, "rb") as handle:
        mapping = mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ)
    array = np.ndarray(
        shape, dtype, buffer=mapping, offset=offset, order="F" if fortran_order else "C"
    )
    return ArrayFile(path, None, tuple(shape), dtype, array, mapping, offset)


def _choose_key(path: str, key: str | None, keys: list[str]) -> str:
    if key is None:
        if len(keys) == 1:
            return keys[0]
        raise ArrayFileError(
            f"{path} holds {len(keys)} arrays: choose one with --key ({', '.join(keys)})"
        )
    if key not in keys:
        raise ArrayFileError(f"{path} has no array {key!r}; it has: {', '.join(keys) or 'none'}")
    return key


def _open_npz(path: str, key: str | None) -> ArrayFile:
    try:
        archive = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as error:
        raise ArrayFileError(f"{path}: not a valid .npz file ({error})") from None
    with archive:
        name = _choose_key(path, key, list(archive.files))
        try:
            array = archive[name]
        except (ValueError, OSError, EOFError) as error:
            raise ArrayFileError(f"{path}: array {name!r} cannot be read ({error})") from None
    return ArrayFile(path, name, array.shape, array.dtype, array)


#: safetensors' dtype names that NumPy holds.
_SAFETENSORS_DTYPES = {
    "F16": np.float16, "F32": np.float32, "F64": np.float64, "I8": np.int8, "I16": np.int16,
    "I32": np.int32, "I64": np.int64, "U8": np.uint8, "U16": np.uint16, "U32": np.uint32,
    "U64": np.uint64, "BOOL": np.bool_,
}  # fmt: skip


def _open_safetensors(path: str, key: str | None) -> ArrayFile:
    try:
        from safetensors import safe_open
    except ImportError:
        raise ArrayFileError(
            f"{path}: reading .safetensors needs the safetensors package: "
            "pip install 'fastxent[safetensors]'"
        ) from None
    try:
        handle: Any = safe_open(path, framework="numpy")
        name = _choose_key(path, key, sorted(handle.keys()))
        tensor = handle.get_slice(name)
        shape, dtype_name = tuple(tensor.get_shape()), tensor.get_dtype()
    except ArrayFileError:
        raise
    except Exception as error:  # the package's own error types differ by version
        raise ArrayFileError(f"{path}: not a valid .safetensors file ({error})") from None
    if dtype_name not in _SAFETENSORS_DTYPES:
        raise ArrayFileError(
            f"{path}: array {name!r} is {dtype_name}, which NumPy cannot hold; save it as "
            "float32 (e.g. tensor.float())"
        )
    return ArrayFile(path, name, shape, np.dtype(_SAFETENSORS_DTYPES[dtype_name]), tensor)
