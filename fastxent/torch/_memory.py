"""Tensors for the gradients, in transparent huge pages where the system offers them.

A fresh gradient as large as the logits is mostly page faults to first touch: PyTorch's
allocator hands out 4 KiB pages, and filling 0.5 GB of them costs more than the loss
itself. NumPy asks Linux for huge pages (``madvise(MADV_HUGEPAGE)``) on arrays of 4 MiB
and more; the same request on a tensor PyTorch allocated makes it as cheap to fill.
"""

from __future__ import annotations

import ctypes
import sys
from typing import Any

import torch

#: NumPy's threshold for the same request.
HUGE_PAGES_MIN_BYTES = 4 * 2**20
_PAGE = 4096
_MADV_HUGEPAGE = 14


def _load_madvise() -> Any:
    if not sys.platform.startswith("linux"):
        return None
    try:
        madvise = ctypes.CDLL(None, use_errno=True).madvise
    except (OSError, AttributeError):
        return None
    madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    madvise.restype = ctypes.c_int
    return madvise


_madvise = _load_madvise()


def empty(shape: tuple[int, ...] | torch.Size, dtype: torch.dtype) -> torch.Tensor:
    """``torch.empty(shape, dtype=dtype)``, advised into huge pages when large (Linux).

    The advice is only a hint: where it is refused the tensor is the same, only slower
    to fill the first time.
    """
    tensor = torch.empty(shape, dtype=dtype)
    size = tensor.numel() * tensor.element_size()
    if size >= HUGE_PAGES_MIN_BYTES:
        advise_huge_pages(tensor.data_ptr(), size)
    return tensor


def advise_huge_pages(address: int, size: int) -> bool:
    """Ask for huge pages over the whole pages of ``[address, address + size)``.

    Returns whether the system accepted the request.
    """
    if _madvise is None:
        return False
    start = -(-address // _PAGE) * _PAGE  # madvise takes whole pages
    length = (address + size - start) // _PAGE * _PAGE
    return length > 0 and _madvise(start, length, _MADV_HUGEPAGE) == 0
