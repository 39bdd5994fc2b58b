"""Arrays in files as Dask arrays whose tasks read their own slices, by path.

A task graph must not hold the data: a memory-mapped array put in a graph is pickled with
its contents, and a process cluster would ship the whole file through the scheduler.
Here the graph holds a small reader (the path, the key, the shape and the dtype); each
task opens the file where it runs and reads its chunk of rows: a view of a fresh mapping
for ``.npy`` (pages come from the page cache and leave with the task), a sliced read for
``.safetensors`` and HDF5. Zarr stores are Dask's own ``da.from_zarr``. Every worker must
see the file at the same path (a local disk for a local cluster, a shared file system or
object store for a real one).
"""

from __future__ import annotations

import os
import weakref
from typing import Any

import dask
import dask.array as da
import numpy as np
from dask.base import tokenize
from dask.utils import parse_bytes

from fastxent._array_files import ArrayFileError, open_array


class _FileReader:
    """One array in a file, sliced by Dask: small in the graph, the file opened by each task."""

    def __init__(self, path: str, key: str | None, shape: tuple[int, ...], dtype: Any) -> None:
        self.path, self.key = path, key
        self.shape, self.dtype, self.ndim = shape, np.dtype(dtype), len(shape)
        self._version = self._stat()

    def _stat(self) -> tuple[int, int]:
        try:
            stat = os.stat(self.path)
        except FileNotFoundError:
            raise ArrayFileError(
                f"{self.path}: no such file where this task runs (every Dask worker must see "
                "the file at this path)"
            ) from None
        return stat.st_size, stat.st_mtime_ns

    def _check_unchanged(self) -> None:
        """A file rewritten since :func:`from_file` would give other rows than the graph's."""
        if self._stat() != self._version:
            raise ArrayFileError(
                f"{self.path} changed since from_file opened it (size or modification "
                "time): call from_file again"
            )

    def __dask_tokenize__(self) -> Any:
        return (type(self).__name__, self.path, self.key, self._version)

    def __getitem__(self, index: Any) -> np.ndarray:
        self._check_unchanged()
        return np.asarray(open_array(self.path, self.key)._array[index])

    def block(self, block_info: dict[Any, Any]) -> np.ndarray:
        """The chunk of a ``map_blocks`` task, by its location in the array."""
        return self[tuple(slice(start, stop) for start, stop in block_info[None]["array-location"])]


class _HDF5Reader(_FileReader):
    """A dataset of an HDF5 file: the file is opened by each task (h5py handles do not pickle)."""

    def __getitem__(self, index: Any) -> np.ndarray:
        import h5py

        self._check_unchanged()
        with h5py.File(self.path, "r") as handle:
            return np.asarray(handle[self.key][index])


def from_file(
    path: str | os.PathLike[str], key: str | None = None, *, rows_per_chunk: int | None = None
) -> da.Array:
    """An array in a file as a Dask array chunked by rows, each task reading its own rows.

    The task graph holds the file's path, never its data, so it stays small whatever the
    file's size, and a process or distributed cluster reads the file where the tasks run
    (every worker must see it at ``path``).

    ======================================= =================================================
    file                                    each task reads its rows through
    ======================================= =================================================
    ``.npy``                                a memory map (a view: no copy)
    ``.safetensors`` (``key``)              the ``safetensors`` package
    ``.h5``, ``.hdf5`` (``key``: a dataset) ``h5py``
    ``.zarr`` (``key``: a group's array)    ``dask.array.from_zarr`` (its chunks of rows kept
                                            when they hold whole rows)
    ======================================= =================================================

    Parameters
    ----------
    path : str
        The file (a directory for Zarr).
    key : str, optional
        The array in a ``.safetensors``, HDF5 or Zarr group (needed when it holds several).
    rows_per_chunk : int, optional
        Rows (first-axis slices) per chunk; by default as many as fit Dask's
        ``array.chunk-size`` (128 MiB unless configured otherwise): every chunk costs the
        engine a task, so chunks much smaller than that spend more time scheduling.

    Returns
    -------
    dask.array.Array
        Chunked along the first axis only. A task that finds the file changed since this
        call (size or modification time) raises ``ValueError``. A ``.npy`` chunk is a view
        of the file's pages: a chunk kept in memory (``persist``) keeps the file mapped, so
        do not rewrite the file while it is held (or ``map_blocks(np.array)`` to copy).

    Examples
    --------
    >>> import tempfile, os, numpy as np
    >>> from fastxent import dask as fxd
    >>> path = os.path.join(tempfile.mkdtemp(), "logits.npy")
    >>> np.save(path, np.arange(12.0).reshape(6, 2))
    >>> array = fxd.from_file(path, rows_per_chunk=4)
    >>> array.chunks, float(array.sum().compute())
    (((4, 2), (2,)), 66.0)
    """
    # Absolute: the tasks run in the workers' working directories, not this one.
    path = os.path.abspath(os.fspath(path))
    suffix = os.path.splitext(path.rstrip("/"))[1].lower()
    if suffix == ".zarr":
        return _from_zarr(path, key, rows_per_chunk)
    if suffix in (".h5", ".hdf5"):
        reader: _FileReader = _hdf5_reader(path, key)
    elif suffix == ".npz":
        raise ArrayFileError(
            f"{path}: an .npz member can only be read whole, in every task; save the array "
            "as .npy (np.save) to read it in chunks"
        )
    else:
        opened = open_array(path, key)
        reader = _FileReader(path, opened.key, opened.shape, opened.dtype)
    if reader.ndim == 0:
        raise ArrayFileError(f"{path} holds a 0-d array: there are no rows to chunk")
    rows = _rows_per_chunk(reader.shape, reader.dtype, rows_per_chunk)
    chunks = da.core.normalize_chunks((rows,) + reader.shape[1:], reader.shape)
    # A blockwise task per chunk (not ``da.from_array``'s getters): Dask fuses it with the
    # blockwise task that uses the chunk, so the worker that reads it computes with it.
    array = da.map_blocks(
        _read_block, chunks=chunks, dtype=reader.dtype, reader=reader,
        meta=np.empty((0,) * reader.ndim, reader.dtype),
        name=f"from-file-{tokenize(reader, chunks)}",
    )  # fmt: skip
    _READERS[array.name] = reader
    return array


#: The reader of each array :func:`from_file` made, by the array's name, while it lives.
_READERS: weakref.WeakValueDictionary[str, _FileReader] = weakref.WeakValueDictionary()


def file_reader(array: Any) -> _FileReader | None:
    """The reader of ``array`` if it is a :func:`from_file` array as made (not sliced)."""
    if not isinstance(array, da.Array):
        return None
    reader = _READERS.get(array.name)
    return reader if reader is not None and reader.shape == array.shape else None


def _read_block(reader: _FileReader, block_info: dict[Any, Any]) -> np.ndarray:
    return reader.block(block_info)


def _rows_per_chunk(shape: tuple[int, ...], dtype: Any, rows: int | None) -> int:
    if rows is not None:
        if isinstance(rows, bool) or not isinstance(rows, (int, np.integer)):
            raise TypeError(f"rows_per_chunk must be an integer, got {rows!r}")
        if rows < 1:
            raise ValueError(f"rows_per_chunk must be at least 1, got {rows}")
        return rows
    row_bytes = int(np.prod(shape[1:], dtype=np.int64)) * np.dtype(dtype).itemsize
    chunk_bytes = parse_bytes(dask.config.get("array.chunk-size"))
    return max(1, chunk_bytes // max(row_bytes, 1))


def _hdf5_reader(path: str, key: str | None) -> _FileReader:
    try:
        import h5py
    except ImportError:
        raise ArrayFileError(f"{path}: reading HDF5 needs h5py: pip install h5py") from None
    if not os.path.isfile(path):
        raise ArrayFileError(f"{path}: no such file")
    try:
        with h5py.File(path, "r") as handle:
            names: list[str] = []
            handle.visititems(
                lambda name, item: names.append(name) if isinstance(item, h5py.Dataset) else None
            )
            if key is None and len(names) != 1:
                raise ArrayFileError(
                    f"{path} holds {len(names)} datasets: choose one with key ({', '.join(names)})"
                )
            name = key.lstrip("/") if key is not None else names[0]
            if name not in names:
                raise ArrayFileError(f"{path} has no dataset {name!r}; it has: {', '.join(names)}")
            dataset = handle[name]
            return _HDF5Reader(path, name, tuple(dataset.shape), dataset.dtype)
    except OSError as error:
        raise ArrayFileError(f"{path}: not a valid HDF5 file ({error})") from None


def _from_zarr(path: str, key: str | None, rows: int | None) -> da.Array:
    try:
        import zarr  # noqa: F401
    except ImportError:
        raise ArrayFileError(f"{path}: reading Zarr needs zarr: pip install zarr") from None
    array = da.from_zarr(path, component=key)
    if array.ndim == 0:
        raise ArrayFileError(f"{path} holds a 0-d array: there are no rows to chunk")
    whole_rows = all(len(chunks) == 1 for chunks in array.chunks[1:])
    if rows is None and whole_rows:
        return array
    return array.rechunk(
        (_rows_per_chunk(array.shape, array.dtype, rows),) + tuple(-1 for _ in array.shape[1:])
    )
