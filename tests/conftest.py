"""Shared parameters and helpers for the fastxent test suite.

Tolerances travel with dtypes: every parametrisation over dtypes uses the
``(dtype, rtol, atol)`` triples below. float16 input is computed in float32 and returns
float32, so it is held to float32's tolerance.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Iterator
from types import ModuleType
from typing import Any

import numpy as np
import pytest

# The suite's multi-threaded cases are sized for this threshold (> 32768 elements); without
# it, fastxent's default under the tbb and workqueue layers is 4x larger.
os.environ["FASTXENT_PARALLEL_MIN_ELEMENTS"] = str(1 << 15)

from fastxent._kernels.dispatch import RowKernel  # noqa: E402  (after the setting above)

# Every typed fast call checks that its key still fixes its arguments' Numba types.
RowKernel.verify_keys = True

#: Natively computed dtypes with the tolerance of their results against the float64 reference.
NATIVE_TOLERANCES = [
    pytest.param(np.float32, 1e-5, 1e-6, id="float32"),
    pytest.param(np.float64, 1e-12, 1e-13, id="float64"),
]

#: Every accepted logits dtype (float16 computed in float32).
ALL_TOLERANCES = [
    pytest.param(np.float16, 1e-5, 1e-6, id="float16"),
    *NATIVE_TOLERANCES,
]

#: Shapes of 2-D logits ``(N, C)``: one class, two classes, primes, one row, and one large
#: enough (> 32768 elements) for the multi-threaded kernels.
SHAPES_2D = [
    pytest.param((1, 1), id="1x1"),
    pytest.param((4, 1), id="4x1"),
    pytest.param((5, 2), id="5x2"),
    pytest.param((1, 7), id="1x7"),
    pytest.param((7, 13), id="7x13"),
    pytest.param((3, 1009), id="3x1009"),
    pytest.param((37, 1031), id="37x1031-parallel"),
]


#: Set to ``1`` (as .ci/run does) to make a missing PyTorch a failure instead of a skip.
REQUIRE_TORCH_ENV = "FASTXENT_REQUIRE_TORCH"


def import_torch() -> ModuleType:
    """PyTorch, for the parity tests; skip them when it cannot be imported.

    With ``FASTXENT_REQUIRE_TORCH=1`` in the environment a missing (or broken) PyTorch fails
    instead, so that CI cannot pass by silently skipping every comparison with it. Called at
    module level it skips or fails the whole module (a collection error); inside a test, that
    test.
    """
    try:
        return importlib.import_module("torch")
    except ImportError as error:
        reason = f"PyTorch cannot be imported ({type(error).__name__}: {error})"
    # Outside the except block, so the report is this message, not a chained traceback.
    if os.environ.get(REQUIRE_TORCH_ENV) == "1":
        pytest.fail(
            f"{reason}, but {REQUIRE_TORCH_ENV}=1 requires it: install the `peers` extra "
            "(pip install -e '.[peers]') or unset the variable",
            pytrace=False,
        )
    pytest.skip(
        f"{reason}; set {REQUIRE_TORCH_ENV}=1 to make this a failure", allow_module_level=True
    )


def result_dtype(dtype: Any) -> np.dtype[Any]:
    """float64 stays float64; float16 and float32 give float32."""
    return np.dtype(np.float64) if np.dtype(dtype) == np.float64 else np.dtype(np.float32)


def make_logits(
    rng: np.random.Generator,
    shape: tuple[int, ...],
    dtype: Any = np.float64,
    scale: float = 3.0,
    offset: float = 0.0,
) -> np.ndarray:
    """Normal logits with standard deviation ``scale`` around ``offset``, in ``dtype``."""
    return (offset + scale * rng.standard_normal(shape)).astype(dtype)


def make_labels(
    rng: np.random.Generator, shape: tuple[int, ...], n_classes: int, dtype: Any = np.int64
) -> np.ndarray:
    """Class indices uniform in ``[0, n_classes)``."""
    return rng.integers(0, n_classes, size=shape).astype(dtype)


def make_probabilities(
    rng: np.random.Generator, shape: tuple[int, ...], axis: int = -1, dtype: Any = np.float64
) -> np.ndarray:
    """Random probability rows along ``axis`` (each sums to 1), with some exact zeros."""
    raw = rng.random(shape)
    raw[raw < 0.2] = 0.0
    total = raw.sum(axis=axis, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        probs = np.where(total > 0, raw / total, 1.0 / shape[axis])
    return probs.astype(dtype)


def assert_result(
    actual: Any, expected: Any, dtype: Any, rtol: float, atol: float, shape: Any = None
) -> None:
    """``actual`` has ``dtype``, the shape of ``expected`` (or ``shape``) and its values.

    ``nan`` must match ``nan`` and infinities must match exactly (assert_allclose's rules).
    """
    dtype = np.dtype(dtype)
    assert np.asarray(actual).dtype == dtype, f"dtype {np.asarray(actual).dtype} != {dtype}"
    want_shape = np.shape(expected) if shape is None else shape
    assert np.shape(actual) == want_shape, f"shape {np.shape(actual)} != {want_shape}"
    np.testing.assert_allclose(
        np.asarray(actual, dtype=np.float64),
        np.asarray(expected, dtype=np.float64),
        rtol=rtol,
        atol=atol,
    )


def assert_scalar(value: Any, dtype: Any) -> None:
    """``value`` is a NumPy scalar of exactly ``dtype`` (not a 0-d array, not a Python float)."""
    assert type(value) is np.dtype(dtype).type, f"{type(value)!r} is not {np.dtype(dtype)}"


@pytest.fixture
def rng() -> np.random.Generator:
    """A freshly seeded generator, so every test sees the same numbers on every run."""
    return np.random.default_rng(20240611)


@pytest.fixture(params=[False, True], ids=["cached", "streaming"])
def streaming(request: pytest.FixtureRequest) -> Iterator[bool]:
    """Both ways of taking rows from memory: as if the input fit in the last-level cache,
    and as if it streamed from memory (the exp-sums then prefetch the next row, in shorter
    blocks; ``fastxent._plan.plan_rows``), here whatever the row length."""
    from fastxent import _tuning

    with _tuning.overridden(
        streaming_min_bytes=-1 if request.param else 1 << 62, prefetch_min_classes=0
    ):
        yield bool(request.param)
