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

#: The suite's parallel threshold, under every threading layer (without it, fastxent's
#: default under the tbb and workqueue layers is 4x larger). Its multi-threaded cases are
#: sized from ``THRESHOLDS.parallel_min_elements``, which this sets (:func:`parallel_rows`).
PARALLEL_MIN_ELEMENTS = 1 << 15
os.environ["FASTXENT_PARALLEL_MIN_ELEMENTS"] = str(PARALLEL_MIN_ELEMENTS)

# After the setting above: fastxent._tuning reads it at import.
from fastxent._kernels.dispatch import RowKernel  # noqa: E402
from fastxent._tuning import THRESHOLDS, TILE_ELEMENTS, TILE_ROWS  # noqa: E402

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

#: The public functions, by signature (``ALL`` is every one with logits, ``LINEAR`` the rest).
SOFTMAX_FAMILY = ("softmax", "log_softmax", "logsumexp")
#: The softmax cross-entropy losses: take ``weight``, ``ignore_index``, ``label_smoothing``.
INDEX_LOSSES = ("cross_entropy", "cross_entropy_with_grad")
BINARY = ("binary_cross_entropy", "binary_cross_entropy_with_grad")
WITH_GRAD = ("cross_entropy_with_grad", "binary_cross_entropy_with_grad")
#: Losses whose target may be integer class indices.
INDEX_TARGETS = (*INDEX_LOSSES, "cross_entropy_from_probs", "kl_divergence")
#: Functions with a target argument.
WITH_TARGET = (*INDEX_TARGETS, *BINARY)
#: Functions with a class axis, and the losses among them (one int axis, one class or more).
WITH_AXIS = (*SOFTMAX_FAMILY, *INDEX_TARGETS, "entropy")
LOSSES_WITH_AXIS = (*INDEX_TARGETS, "entropy")
#: Every function that takes ``reduction`` and ``base``.
LOSSES = (*INDEX_TARGETS, *BINARY, "entropy")
ALL = (*WITH_AXIS, *BINARY)
#: ``(input, linear_weight, target)``: the linear cross-entropy, tested in test_linear.py.
LINEAR = ("linear_cross_entropy", "linear_cross_entropy_with_grad")
#: ``evaluate`` and its result, tested in test_evaluation.py.
EVALUATION = ("Evaluation", "evaluate")


# --------------------------------------------------------------------------------------
# Shapes from the tuning constants (fastxent._tuning): each side of a threshold
# --------------------------------------------------------------------------------------


def parallel_rows(n_classes: int) -> int:
    """Fewest rows of ``n_classes`` that take the multi-threaded kernels: at least
    ``THRESHOLDS.parallel_min_elements`` elements (``fastxent._plan.runs_serially``)."""
    return -(-THRESHOLDS.parallel_min_elements // n_classes)


def rows_from_memory(n_classes: int, itemsize: int = 4) -> int:
    """Fewest rows of ``n_classes`` that make an input (``itemsize`` bytes a logit, or more)
    larger than ``THRESHOLDS.cache_resident_bytes``: rows of ``chain_min_classes`` to
    ``WHOLE_ROW`` classes then come from memory, in chains (``fastxent._plan.rows_to_chain``);
    the gradient takes them one by one."""
    return THRESHOLDS.cache_resident_bytes // (n_classes * itemsize) + 1


def tile_rows(n_classes: int) -> int:
    """Rows in a tile of the tile kernels (``fastxent._kernels.tiles.row_tiles``)."""
    return max(1, min(TILE_ROWS, TILE_ELEMENTS // n_classes))


def rows_in_tiles(n_classes: int, full_tiles: int = 2) -> int:
    """Rows of ``n_classes`` that fill ``full_tiles`` tiles and half of one more: several
    tiles and a partial last one."""
    rows = tile_rows(n_classes)
    return full_tiles * rows + rows // 2 + 1


#: Shapes of 2-D logits ``(N, C)``: one class, two classes, primes, one row, and one large
#: enough for the multi-threaded kernels (rows longer than ``WHOLE_ROW``: in chains).
SHAPES_2D = [
    pytest.param((1, 1), id="1x1"),
    pytest.param((4, 1), id="4x1"),
    pytest.param((5, 2), id="5x2"),
    pytest.param((1, 7), id="1x7"),
    pytest.param((7, 13), id="7x13"),
    pytest.param((3, 1009), id="3x1009"),
    pytest.param((parallel_rows(1031), 1031), id=f"{parallel_rows(1031)}x1031-parallel"),
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
    """float64 (either byte order) stays float64; float16 and float32 give float32."""
    return np.dtype(np.float64) if np.dtype(dtype).char == "d" else np.dtype(np.float32)


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


def make_binary_inputs(
    shape: tuple[int, ...], dtype: Any, hard: bool, seed: int = 5
) -> tuple[np.ndarray, np.ndarray]:
    """Binary logits with a spread of magnitudes, and targets in [0, 1] (exactly 0/1 if
    ``hard``)."""
    rng = np.random.default_rng(seed)
    logits = (4.0 * rng.standard_normal(shape)).astype(dtype)
    if hard:
        target = rng.integers(0, 2, size=shape).astype(dtype)
    else:
        target = rng.random(shape).astype(dtype)
        target[rng.random(shape) < 0.2] = 0.0
        target[rng.random(shape) < 0.2] = 1.0
    return np.asarray(logits), np.asarray(target)


def make_binary_weight(kind: str, shape: tuple[int, ...], seed: int = 11) -> Any:
    """``weight`` broadcastable to ``shape``: full, per column, per row, scalar, or None."""
    rng = np.random.default_rng(seed)
    if kind == "none":
        return None
    if kind == "scalar":
        return 1.75
    weight_shape = {
        "full": shape,
        "column": shape[-1:],
        "row": shape[:-1] + (1,),
    }[kind]
    weight = 2.0 * rng.random(weight_shape)
    weight.reshape(-1)[0] = 0.0  # a zero weight removes its element's term
    return weight


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


def snapshot(*values: Any) -> list[tuple[Any, bytes | list[str], tuple[int, ...], bool]]:
    """What the caller's arrays hold now, to check later that nothing was written."""
    saved = []
    for value in values:
        if isinstance(value, np.ndarray):
            content = [repr(v) for v in value.flat] if value.dtype.hasobject else value.tobytes("A")
            saved.append((value, content, value.shape, bool(value.flags.writeable)))
    return saved


def assert_unchanged(saved: list[tuple[Any, Any, tuple[int, ...], bool]]) -> None:
    """Every array of a :func:`snapshot` holds what it held, in its shape and write flag."""
    for value, content, shape, writeable in saved:
        now = [repr(v) for v in value.flat] if value.dtype.hasobject else value.tobytes("A")
        assert now == content, "an input array was modified"
        assert value.shape == shape
        assert bool(value.flags.writeable) == writeable, "an input's write flag changed"


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
