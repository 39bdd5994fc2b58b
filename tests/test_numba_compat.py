"""The Numba internals fastxent relies on (``fastxent._numba_compat``) still work.

After a Numba upgrade that breaks one, this fails with the hook's name and the Numba
version, instead of fastxent silently slowing down or loading stale machine code.
"""

from __future__ import annotations

import numba
import numpy as np
import pytest

from fastxent import _numba_compat
from fastxent._kernels.xent_labels import xent_labels_forward


def test_every_hook_works():
    _numba_compat.check()


def test_a_broken_hook_names_itself_and_the_numba_version(monkeypatch):
    monkeypatch.setattr(_numba_compat, "thread_counter", lambda: None)
    with pytest.raises(_numba_compat.NumbaCompatibilityError) as error:
        _numba_compat.check()
    assert "thread_counter" in str(error.value) and numba.__version__ in str(error.value)


def test_the_entry_point_is_the_compiled_code_of_the_kernel():
    logits = np.zeros((2, 3), np.float32)
    args = (logits, None, False, np.zeros(2, np.int64), np.ones(3), None, -100, 0.0, np.empty(2))
    expected = xent_labels_forward.serial(*args)
    entry_point = _numba_compat.compiled_entry_point(xent_labels_forward.serial, args)
    assert entry_point is not xent_labels_forward.serial
    assert entry_point(*args) == expected


def test_a_typed_call_whose_key_misses_a_type_is_caught():
    # The suite runs with RowKernel.verify_keys (tests/conftest.py): a key reused for
    # arguments of other types raises instead of calling machine code of other types.
    from fastxent._kernels.dispatch import RowKernel

    assert RowKernel.verify_keys
    float32 = (np.zeros((2, 3), np.float32), None, False, np.zeros(2, np.int64), np.ones(3))
    float64 = (np.zeros((2, 3)), *float32[1:])
    rest = (None, -100, 0.0, np.empty(2))
    xent_labels_forward.run_typed("test-key", 6, *float32, *rest)
    with pytest.raises(AssertionError, match="the key misses a type"):
        xent_labels_forward.run_typed("test-key", 6, *float64, *rest)
