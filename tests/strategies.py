"""The Hypothesis strategies and settings of the suite, shared by every property test.

- :func:`logit_arrays`, :func:`index_problems`, :func:`probability_problems`,
  :func:`binary_problems`, :func:`distribution_problems`: valid calls of every public
  function over the whole input space: 0-3 dimensions (sides 0..12, at least one class),
  float16/32/64 in native and big-endian byte order, C and Fortran order, permuted axes,
  slices with positive and negative steps, unaligned buffers, read-only arrays, integer
  target dtypes with ``ignore_index`` rows, probability targets, every option, and special
  values (``inf``, ``-inf``, ``nan``, huge, subnormal) (tests/test_reference_parity.py).
- :func:`logits_strategy`, :func:`problems`, :func:`row_shifts`: finite 2-D logits in
  [-30, 30] with integer labels and options, for the mathematical properties
  (tests/test_properties.py).
- :func:`bad_calls`: a valid call of a random public function made wrong in 1-3 ways
  (tests/test_bad_input.py).

Settings: :data:`FUZZ` for the input-space fuzzing, :data:`PROPERTIES` for the properties;
both derandomized, without an example database.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
from conftest import (
    ALL,
    BINARY,
    INDEX_LOSSES,
    INDEX_TARGETS,
    LOSSES,
    LOSSES_WITH_AXIS,
    SOFTMAX_FAMILY,
    WITH_AXIS,
    WITH_GRAD,
    WITH_TARGET,
    result_dtype,
)
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

#: The input-space fuzzing: many examples, each cheap.
FUZZ = settings(
    max_examples=300,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.filter_too_much,
    ],
)
#: The mathematical properties (some call fastxent once per logit: central differences).
PROPERTIES = settings(
    deadline=None,
    max_examples=60,
    database=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow],
)

#: Logits dtypes: each float width in native and big-endian byte order.
FLOAT_DTYPES = [np.dtype(order + code) for code in ("f2", "f4", "f8") for order in ("=", ">")]
#: Integer target dtypes (native, and big-endian for a few).
INT_DTYPES = [
    np.dtype(code)
    for code in ("i1", "i2", "i4", "i8", "u1", "u2", "u4", "u8", ">i2", ">i4", ">i8", ">u4")
]
LAYOUTS = ("C", "F", "permuted", "strided", "unaligned")
REDUCTIONS = ["mean", "sum", "none"]
BASES = [2, 10, math.e, 0.5, 3, np.float64(2.0), np.float32(10.0)]
#: Class weights and ``pos_weight``: 0 or in [0.01, 4] (a subnormal weight makes 1 / sum(w)
#: overflow; see the report of the test suite).
FACTORS = st.one_of(st.just(0.0), st.floats(0.01, 4.0))
#: Special probabilities: nan, float32's smallest subnormal, and masses that only float64
#: holds (a positive mass on a masked class must still give +inf).
PROBABILITY_SPECIALS = [math.nan, float(np.finfo(np.float32).smallest_subnormal), 1e-30, 1e-300]
#: Bound of the finite logits of :func:`logits_strategy`.
BOUND = 30.0


# --------------------------------------------------------------------------------------
# Valid calls over the whole input space
# --------------------------------------------------------------------------------------


def special_values(dtype: np.dtype[Any], huge: bool) -> list[float]:
    """inf, -inf, nan, +-0, +-subnormal, values beyond exp's range and (optionally) huge."""
    info = np.finfo(dtype)
    tiny = float(info.smallest_subnormal)
    values = [math.inf, -math.inf, math.nan, 0.0, -0.0, tiny, -tiny, 1e4, -1e4]
    if huge:
        big = {2: float(info.max), 4: 1e30, 8: 1e300}[dtype.itemsize]
        values += [big, -big]
    return values


def _arrange(values: np.ndarray, layout: str, draw: Callable[[Any], Any]) -> np.ndarray:
    """An array equal to ``values`` (same dtype and byte order) with the memory ``layout``."""
    if layout == "F":
        return values.copy(order="F")
    if layout == "permuted" and values.ndim > 1:
        perm = draw(st.permutations(range(values.ndim)))
        stored = values.transpose(perm).copy(order="C")
        return stored.transpose(np.argsort(perm))
    if layout == "strided" and values.ndim > 0:
        steps = [draw(st.sampled_from([1, 2, 3, -1, -2])) for _ in range(values.ndim)]
        garbage: Any = math.nan if values.dtype.kind == "f" else np.iinfo(values.dtype).max
        big = np.full(
            [side * abs(step) for side, step in zip(values.shape, steps, strict=True)],
            garbage,
            dtype=values.dtype,
        )
        view = big[tuple(slice(None, None, step) for step in steps)]
        view[...] = values
        return view
    if layout == "unaligned" and values.dtype.itemsize > 1:
        buffer = np.zeros(values.nbytes + values.dtype.itemsize, dtype=np.uint8)
        view = buffer[1 : 1 + values.nbytes].view(values.dtype).reshape(values.shape)
        view[...] = values
        return view
    return values.copy(order="C")


@st.composite
def arranged(draw: Callable[[Any], Any], values: np.ndarray) -> np.ndarray:
    """``values`` in a drawn memory layout, sometimes read-only."""
    array = _arrange(values, draw(st.sampled_from(LAYOUTS)), draw)
    if draw(st.integers(0, 4)) == 0:
        array.setflags(write=False)
    return array


@st.composite
def float_values(
    draw: Callable[[Any], Any],
    shape: tuple[int, ...],
    dtype: np.dtype[Any],
    low: float = -30.0,
    high: float = 30.0,
    specials: list[float] | None = None,
) -> np.ndarray:
    """Native ``dtype`` values in [low, high], a few replaced by ``specials``."""
    values = np.array(
        draw(
            hnp.arrays(
                np.float64,
                shape,
                elements=st.floats(low, high, allow_nan=False, allow_infinity=False),
            )
        )
    )
    flat = values.reshape(-1)
    if specials and flat.size and draw(st.booleans()):
        for _ in range(draw(st.integers(1, min(4, flat.size)))):
            flat[draw(st.integers(0, flat.size - 1))] = draw(st.sampled_from(specials))
    return values.astype(dtype.newbyteorder("="))


@st.composite
def logit_arrays(
    draw: Callable[[Any], Any],
    huge: bool = True,
    specials: bool = True,
    min_dims: int = 1,
    max_dims: int = 3,
) -> tuple[np.ndarray, np.ndarray, int, dict[str, Any]]:
    """``(x, native values, class axis, {"axis": ...} or {})``: 1-3 dims, C >= 1."""
    shape = list(
        draw(hnp.array_shapes(min_dims=min_dims, max_dims=max_dims, min_side=0, max_side=12))
    )
    axis = draw(st.integers(-len(shape), len(shape) - 1))
    if shape[axis] == 0:
        shape[axis] = draw(st.integers(1, 12))
    dtype = draw(st.sampled_from(FLOAT_DTYPES))
    values = draw(
        float_values(
            tuple(shape), dtype, specials=special_values(dtype, huge) if specials else None
        )
    )
    x = draw(arranged(values.astype(dtype)))
    kwargs = {} if axis == -1 and draw(st.booleans()) else {"axis": axis}
    return x, values, axis % len(shape), kwargs


@st.composite
def class_weights(draw: Callable[[Any], Any], n_classes: int) -> Any:
    """A ``weight`` argument: float/int arrays in either byte order, a list, or strided."""
    values = np.array(draw(hnp.arrays(np.float64, (n_classes,), elements=FACTORS)))
    kind = draw(st.sampled_from(["float64", "float32", ">f8", "int", "list"]))
    if kind == "list":
        return values.tolist()
    if kind == "int":
        return draw(arranged(np.round(values).astype(np.int64)))
    return draw(arranged(values.astype(kind)))


@st.composite
def common_options(draw: Callable[[Any], Any]) -> dict[str, Any]:
    """``reduction`` and ``base``, each sometimes left to its default."""
    kwargs: dict[str, Any] = {}
    reduction = draw(st.sampled_from([None, *REDUCTIONS]))
    if reduction is not None:
        kwargs["reduction"] = reduction
    base = draw(st.sampled_from(["default", None, *BASES]))
    if base != "default":
        kwargs["base"] = base
    return kwargs


@st.composite
def smoothing(draw: Callable[[Any], Any]) -> dict[str, Any]:
    value = draw(st.one_of(st.none(), st.sampled_from([0.0, 0.1, 0.5, 1.0]), st.floats(0, 1)))
    return {} if value is None else {"label_smoothing": value}


@st.composite
def index_problems(
    draw: Callable[[Any], Any], huge: bool = True, min_dims: int = 1, max_dims: int = 3
) -> dict[str, Any]:
    """Logits, integer class indices (some rows ignored) and every option."""
    x, values, axis, kwargs = draw(logit_arrays(huge=huge, min_dims=min_dims, max_dims=max_dims))
    n_classes = values.shape[axis]
    batch = values.shape[:axis] + values.shape[axis + 1 :]
    target_dtype = draw(st.sampled_from(INT_DTYPES))
    info = np.iinfo(target_dtype)
    choice = draw(st.sampled_from(["default", "default", -1, "class", "max", "beyond"]))
    if choice == "default":
        ignore = -100
    elif choice == "class":
        ignore = draw(st.integers(0, n_classes - 1))
    elif choice == "max":
        ignore = min(int(info.max), 2**63 - 1)
    elif choice == "beyond":
        ignore = draw(st.sampled_from([2**63, 2**64, -(2**63) - 1, 2**70]))
    else:
        ignore = choice
    if choice != "default" or draw(st.booleans()):
        kwargs["ignore_index"] = ignore
    labels = np.array(
        draw(hnp.arrays(np.int64, batch, elements=st.integers(0, n_classes - 1))), dtype=np.int64
    )
    # Ignored rows only where the label dtype and int64 (the reference's view) hold the value.
    if info.min <= ignore <= min(int(info.max), 2**63 - 1) and labels.size and draw(st.booleans()):
        mask = draw(hnp.arrays(np.bool_, batch))
        labels[mask] = ignore
    target = draw(arranged(labels.astype(target_dtype)))
    if draw(st.booleans()):
        kwargs["weight"] = draw(class_weights(n_classes))
    kwargs.update(draw(smoothing()))
    kwargs.update(draw(common_options()))
    return {"x": x, "values": values, "axis": axis, "target": target, "kwargs": kwargs}


@st.composite
def probability_values(
    draw: Callable[[Any], Any], shape: tuple[int, ...], axis: int, specials: bool = True
) -> np.ndarray:
    """float64 probabilities in [0, 1] (exact 0 and 1 common), often normalised along ``axis``."""
    elements = st.one_of(st.sampled_from([0.0, 1.0]), st.floats(0.0, 1.0))
    values = np.array(draw(hnp.arrays(np.float64, shape, elements=elements)))
    if values.size and draw(st.booleans()):
        total = values.sum(axis=axis, keepdims=True)
        values = np.where(total > 0, values / np.where(total > 0, total, 1.0), values)
    return _with_tiny_or_nan(draw, values) if specials else values


def _mask_with_tiny_mass(
    draw: Callable[[Any], Any], logits: np.ndarray, probabilities: np.ndarray
) -> None:
    """One time in four: a ``-inf`` logit where the target holds a tiny positive mass.

    The loss there is ``+inf`` (mass on a masked class), however small the mass; most of
    these masses exist only in float64 (below float32's smallest subnormal).
    """
    if logits.size and draw(st.integers(0, 3)) == 0:
        index = draw(st.integers(0, logits.size - 1))
        logits.reshape(-1)[index] = -math.inf
        probabilities.reshape(-1)[index] = draw(st.sampled_from([1e-300, 1e-60, 1e-46, 1e-30]))


def _with_tiny_or_nan(draw: Callable[[Any], Any], values: np.ndarray) -> np.ndarray:
    """``values`` with, one time in four, one entry replaced by a special probability."""
    flat = values.reshape(-1)
    if flat.size and draw(st.integers(0, 3)) == 0:
        flat[draw(st.integers(0, flat.size - 1))] = draw(st.sampled_from(PROBABILITY_SPECIALS))
    return values


@st.composite
def probability_problems(
    draw: Callable[[Any], Any], huge: bool = True, min_dims: int = 1, max_dims: int = 3
) -> dict[str, Any]:
    """Logits, float probability targets of the same shape, ``weight``, smoothing, options."""
    x, values, axis, kwargs = draw(logit_arrays(huge=huge, min_dims=min_dims, max_dims=max_dims))
    target_dtype = draw(st.sampled_from(FLOAT_DTYPES))
    probabilities = draw(probability_values(values.shape, axis))
    if np.isfinite(values).all():  # x holds these values: rebuild it after masking one
        values = values.copy()
        _mask_with_tiny_mass(draw, values, probabilities)
        x = draw(arranged(values.astype(x.dtype)))
    target = draw(arranged(probabilities.astype(target_dtype)))
    if draw(st.booleans()):
        kwargs["weight"] = draw(class_weights(values.shape[axis]))
    kwargs.update(draw(smoothing()))
    kwargs.update(draw(common_options()))
    return {"x": x, "values": values, "axis": axis, "target": target, "kwargs": kwargs}


def gradient_out(draw: Callable[[Any], Any], x: np.ndarray) -> tuple[str, np.ndarray | None]:
    """``out`` for a ``_with_grad`` call: none, a fresh array, a strided one, or the logits."""
    dtype = result_dtype(x.dtype)
    options = ["none", "fresh", "fortran", "strided"]
    if x.dtype == dtype and x.flags.writeable:
        options.append("logits")
    choice = draw(st.sampled_from(options))
    if choice == "none":
        return choice, None
    if choice == "logits":
        return choice, x
    if choice == "fortran":
        return choice, np.full(x.shape, math.nan, dtype=dtype, order="F")
    if choice == "strided" and x.ndim:
        return choice, np.full((*x.shape[:-1], 2 * x.shape[-1]), math.nan, dtype=dtype)[..., ::2]
    return choice, np.full(x.shape, math.nan, dtype=dtype)


@st.composite
def binary_problems(draw: Callable[[Any], Any]) -> dict[str, Any]:
    """Logits of 0-3 dims, targets in [0, 1] (float or 0/1 int), weight, pos_weight."""
    shape = draw(hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=12))
    dtype = draw(st.sampled_from(FLOAT_DTYPES))
    values = draw(float_values(shape, dtype, specials=special_values(dtype, huge=True)))
    if draw(st.booleans()):
        target_values = np.array(draw(hnp.arrays(np.int64, shape, elements=st.integers(0, 1))))
        target_dtype = draw(st.sampled_from(INT_DTYPES))
    else:
        elements = st.one_of(st.sampled_from([0.0, 1.0]), st.floats(0.0, 1.0))
        target_values = np.array(draw(hnp.arrays(np.float64, shape, elements=elements)))
        target_values = _with_tiny_or_nan(draw, target_values)
        _mask_with_tiny_mass(draw, values, target_values)
        target_dtype = draw(st.sampled_from(FLOAT_DTYPES))
    x = draw(arranged(values.astype(dtype)))
    target = draw(arranged(target_values.astype(target_dtype)))
    kwargs: dict[str, Any] = {}
    if draw(st.booleans()):
        weight_shape = tuple(
            side if draw(st.booleans()) else 1
            for side in shape[len(shape) - draw(st.integers(0, len(shape))) :]
        )
        kwargs["weight"] = draw(
            arranged(np.array(draw(hnp.arrays(np.float64, weight_shape, elements=FACTORS))))
        )
    if draw(st.booleans()):
        pos_shape = tuple(
            side if draw(st.booleans()) else 1
            for side in shape[len(shape) - draw(st.integers(0, len(shape))) :]
        )
        kwargs["pos_weight"] = np.array(draw(hnp.arrays(np.float64, pos_shape, elements=FACTORS)))
    kwargs.update(draw(common_options()))
    return {"x": x, "values": values, "target": target, "kwargs": kwargs}


@st.composite
def distribution_problems(
    draw: Callable[[Any], Any], min_dims: int = 1, max_dims: int = 3
) -> dict[str, Any]:
    """Inputs of ``entropy``, ``cross_entropy_from_probs`` and ``kl_divergence``."""
    name = draw(st.sampled_from(["entropy", "cross_entropy_from_probs", "kl_divergence"]))
    x, logits, axis, kwargs = draw(logit_arrays(huge=True, min_dims=min_dims, max_dims=max_dims))
    dtype = x.dtype
    if name != "kl_divergence":  # the first argument holds probabilities
        values = draw(probability_values(logits.shape, axis)).astype(logits.dtype)
        x = draw(arranged(values.astype(dtype)))
    else:
        values = logits
    target = None
    if name != "entropy":
        if draw(st.booleans()):
            batch = values.shape[:axis] + values.shape[axis + 1 :]
            labels = draw(
                hnp.arrays(np.int64, batch, elements=st.integers(0, values.shape[axis] - 1))
            )
            target = draw(arranged(np.array(labels).astype(draw(st.sampled_from(INT_DTYPES)))))
        else:
            probabilities = draw(probability_values(values.shape, axis))
            target = draw(arranged(probabilities.astype(draw(st.sampled_from(FLOAT_DTYPES)))))
    if name == "cross_entropy_from_probs":
        eps = draw(st.sampled_from(["default", 0.0, 1e-7, 0.1, 1.0, np.float32(1e-3)]))
        if eps != "default":
            kwargs["eps"] = eps
    kwargs.update(draw(common_options()))
    problem = {"x": x, "values": values, "axis": axis, "target": target, "kwargs": kwargs}
    return {"name": name, **problem}


# --------------------------------------------------------------------------------------
# Finite 2-D problems, for the mathematical properties
# --------------------------------------------------------------------------------------


def logits_strategy(dtype=np.float64, max_rows=8, max_classes=40):
    """Finite logits in [-30, 30], shape (N, C) with 1 <= N <= max_rows, 1 <= C <= max_classes."""
    shapes = hnp.array_shapes(min_dims=2, max_dims=2, min_side=1, max_side=max_classes).filter(
        lambda s: s[0] <= max_rows
    )
    elements = st.floats(-BOUND, BOUND, allow_nan=False, allow_infinity=False, width=64)
    if dtype == np.float32:
        elements = st.floats(-BOUND, BOUND, allow_nan=False, allow_infinity=False, width=32)
    return hnp.arrays(dtype, shapes, elements=elements)


@st.composite
def problems(draw, dtype=np.float64, max_rows=8, max_classes=40, options=True):
    """Logits, integer labels and (optionally) weight, smoothing and ignored rows."""
    logits = draw(logits_strategy(dtype, max_rows, max_classes))
    n_rows, n_classes = logits.shape
    labels = np.array(
        draw(st.lists(st.integers(0, n_classes - 1), min_size=n_rows, max_size=n_rows)),
        dtype=np.int64,
    )
    kwargs = {}
    if options:
        if draw(st.booleans()):
            kwargs["weight"] = draw(hnp.arrays(np.float64, (n_classes,), elements=FACTORS))
        kwargs["label_smoothing"] = draw(st.sampled_from([0.0, 0.1, 0.5, 1.0]))
    return logits, labels, kwargs


def row_shifts(n_rows, dtype=np.float64):
    return hnp.arrays(dtype, (n_rows, 1), elements=st.integers(-100, 100).map(float))


# --------------------------------------------------------------------------------------
# Bad calls: a valid call made wrong in 1-3 ways
# --------------------------------------------------------------------------------------


def _wrong_dtype_array(draw: Callable[[Any], Any], shape: tuple[int, ...]) -> Any:
    """An array (or list) of ``shape`` whose dtype no function accepts for floats."""
    kind = draw(
        st.sampled_from(
            ["i8", "i1", "u1", "?", "c8", "c16", "O", "U3", "S2", "M8[s]", "m8[s]", "g", "list"]
        )
    )
    if kind == "list":
        return np.full(shape, "a", dtype="U1").tolist()
    if kind == "O":
        return np.full(shape, 0.5, dtype=object)
    if kind == "g":
        if np.dtype(np.longdouble) == np.float64:
            return np.zeros(shape, dtype=np.complex128)  # no distinct long double here
        return np.zeros(shape, dtype=np.longdouble)
    return np.zeros(shape, dtype=kind)


def _shape(value: Any) -> tuple[int, ...]:
    """``np.shape(value)``; a ragged list counts as (2, 2)."""
    try:
        return tuple(np.shape(value))
    except ValueError:
        return (2, 2)


def _float_dtype(value: Any) -> np.dtype[Any]:
    """The result dtype of ``value``'s dtype, float32 when it is no float array."""
    dtype = getattr(value, "dtype", None)
    return result_dtype(dtype) if dtype is not None and dtype.kind == "f" else np.dtype("f4")


def _batch_shape(call: dict[str, Any]) -> tuple[int, ...]:
    shape = _shape(call["args"][0])
    return shape[:-1] if shape else ()


def _n_classes(call: dict[str, Any]) -> int:
    shape = _shape(call["args"][0])
    return shape[-1] if shape else 1


def _rebuild_for_labels(call: dict[str, Any]) -> tuple[int, int]:
    """Give the call fresh 2-D float64 logits with at least one row; return (N, C)."""
    batch = _batch_shape(call)
    n_rows = max(batch[0] if batch else 1, 1)
    n_classes = max(_n_classes(call), 1)
    call["args"][0] = np.linspace(-1, 1, n_rows * n_classes).reshape(n_rows, n_classes)
    call["kwargs"].pop("axis", None)
    return n_rows, n_classes


def _mutate(draw: Callable[[Any], Any], call: dict[str, Any], mutation: str) -> None:
    """Make ``call`` wrong in one more way (each way stays wrong whatever follows)."""
    name, args, kwargs = call["name"], call["args"], call["kwargs"]
    if mutation == "logits-dtype":
        args[0] = _wrong_dtype_array(draw, _shape(args[0]))
    elif mutation == "logits-0d":
        args[0] = draw(st.sampled_from([np.array(1.5), np.float64(1.5), 1.5]))
    elif mutation == "logits-ragged":
        args[0] = [[1.0, 2.0], [3.0]]
    elif mutation == "no-classes":
        args[0] = np.zeros((draw(st.integers(0, 3)), 0), dtype=np.float32)
        kwargs.pop("axis", None)
    elif mutation == "target-dtype":
        shape = _shape(args[1]) if len(args) > 1 else _batch_shape(call)
        args[1] = draw(
            st.sampled_from(
                [
                    np.zeros(shape, dtype=bool),
                    np.zeros(shape, dtype=np.complex128),
                    np.full(shape, "1", dtype="U1"),
                    np.full(shape, 1, dtype=object),
                    np.zeros(shape, dtype="M8[s]"),
                ]
            )
        )
    elif mutation == "target-shape":
        logits_shape = _shape(args[0])
        if name in BINARY:
            args[1] = np.zeros((*logits_shape, 2), dtype=np.float64)
        elif draw(st.booleans()):  # integer labels, one too many
            args[1] = np.zeros((*_batch_shape(call), 2), dtype=np.int64)
        else:  # float labels where indices (batch shape) or probabilities (logits' shape) fit
            args[1] = np.zeros(_batch_shape(call), dtype=np.float64)
            if not _batch_shape(call) and not logits_shape:
                args[1] = np.zeros((2, 2))
    elif mutation == "label-range":
        n_rows, n_classes = _rebuild_for_labels(call)
        dtype = draw(st.sampled_from(INT_DTYPES))
        info = np.iinfo(dtype)
        candidates = [v for v in (n_classes, n_classes + 7, -1, -101, 2**40) if info.min <= v]
        candidates = [v for v in candidates if v <= info.max] + [int(info.max)]
        if info.min < 0:
            candidates.append(int(info.min))
        if dtype.kind == "u" and dtype.itemsize == 8:
            candidates.append(2**64 - 1)  # -1 when read as int64
        labels = np.zeros(n_rows, dtype=dtype)
        labels[draw(st.integers(0, n_rows - 1))] = draw(st.sampled_from(candidates))
        args[1] = labels
    elif mutation == "weight":
        n_classes = _n_classes(call)
        options = [
            np.full(n_classes, -math.inf),  # (finite weights of any sign are valid)
            np.full(n_classes, math.nan),
            np.full(n_classes, math.inf),
            np.ones(n_classes + 1),
            np.full(n_classes, "1"),
            np.ones(n_classes, dtype=np.complex128),
            np.ones(n_classes, dtype=bool),
        ]
        if name in INDEX_LOSSES:
            options += [np.ones((1, n_classes)), np.float64(2.0), [1.0] * (n_classes + 2)]
        else:
            options.append(np.ones((3, 1, 5, 7)))
        kwargs["weight"] = draw(st.sampled_from(options))
    elif mutation == "pos-weight":
        n_classes = _n_classes(call)
        kwargs["pos_weight"] = draw(
            st.sampled_from(
                [
                    np.full(n_classes, -math.inf),
                    np.full(n_classes, math.nan),
                    np.ones(n_classes + 1),
                    np.ones((2, n_classes)),
                    np.full(n_classes, "x"),
                ]
            )
        )
    elif mutation == "reduction":
        kwargs["reduction"] = draw(st.sampled_from(["avg", "Mean", "", None, 0, b"mean", ["sum"]]))
    elif mutation == "base":
        kwargs["base"] = draw(
            st.sampled_from([0, -2, 1, 1.0, np.float64(1.0), math.inf, math.nan, "2", True, 2j])
        )
    elif mutation == "axis":
        ndim = max(len(_shape(args[0])), 1)
        bad_axes = [ndim, -ndim - 1, 1.0, "0", True, np.bool_(False), [0], (0, 0), (0.0,)]
        if name not in SOFTMAX_FAMILY:  # (which reduce over a tuple of axes, or all)
            bad_axes += [None, (0,)]
        kwargs["axis"] = draw(st.sampled_from(bad_axes))
    elif mutation == "smoothing":
        kwargs["label_smoothing"] = draw(
            st.sampled_from([-0.1, 1.5, math.nan, math.inf, "0.1", None, True, 0.1j])
        )
    elif mutation == "ignore-index":
        kwargs["ignore_index"] = draw(st.sampled_from([1.5, "x", None, True, np.float64(1.0)]))
    elif mutation == "eps":
        kwargs["eps"] = draw(st.sampled_from([-1e-3, 1.5, math.nan, "1e-7", None, True]))
    elif mutation == "unknown-keyword":
        kwargs[draw(st.sampled_from(["reduce", "dim", "size_average", "outt"]))] = "mean"
    elif mutation == "out":
        logits = args[0]
        shape = _shape(logits)
        dtype = _float_dtype(logits)
        other = np.dtype(np.float64) if dtype == np.float32 else np.dtype(np.float32)
        options = ["shape", "dtype", "readonly", "list", "byteorder"]
        if isinstance(logits, np.ndarray) and logits.size > 1 and logits.dtype == dtype:
            options.append("part-of-logits")
        if len(args) > 1 and isinstance(args[1], np.ndarray) and args[1].shape == shape:
            options.append("target")
        choice = draw(st.sampled_from(options))
        if choice == "shape":
            out: Any = np.zeros((*shape, 2), dtype=dtype)
        elif choice == "dtype":
            out = np.zeros(shape, dtype=draw(st.sampled_from([other, np.dtype(np.float16)])))
        elif choice == "readonly":
            out = np.zeros(shape, dtype=dtype)
            out.setflags(write=False)
        elif choice == "list":
            out = np.zeros(shape, dtype=dtype).tolist()
        elif choice == "byteorder":
            out = np.zeros(shape, dtype=dtype.newbyteorder(">"))
        elif choice == "part-of-logits":  # the same elements, reversed: overlapping
            out = logits[tuple(slice(None, None, -1) for _ in shape)]
        else:  # overlaps the (probability) target
            target = np.full(shape, 0.5, dtype=dtype)
            args[1] = target
            out = target
        kwargs["out"] = out
    else:  # pragma: no cover - every mutation is listed in MUTATIONS
        raise AssertionError(mutation)


#: Each mutation and the functions it applies to.
MUTATIONS = {
    "logits-dtype": ALL,
    "logits-0d": LOSSES_WITH_AXIS,  # (softmax and co. take 0-d and empty axes)
    "logits-ragged": ALL,
    "no-classes": LOSSES_WITH_AXIS,
    "target-dtype": WITH_TARGET,
    "target-shape": WITH_TARGET,
    "label-range": INDEX_TARGETS,
    "weight": (*INDEX_LOSSES, *BINARY),
    "pos-weight": BINARY,
    "reduction": LOSSES,
    "base": LOSSES,
    "axis": WITH_AXIS,
    "smoothing": INDEX_LOSSES,
    "ignore-index": INDEX_LOSSES,
    "eps": ("cross_entropy_from_probs",),
    "unknown-keyword": ALL,
    "out": WITH_GRAD,
}


@st.composite
def bad_calls(draw: Callable[[Any], Any]) -> dict[str, Any]:
    """A valid call of a random public function, then made wrong in 1-3 ways."""
    name = draw(st.sampled_from(ALL))
    n_rows, n_classes = draw(st.integers(0, 4)), draw(st.integers(1, 4))
    dtype = draw(st.sampled_from([np.float16, np.float32, np.float64]))
    logits = np.linspace(-2, 2, n_rows * n_classes).reshape(n_rows, n_classes).astype(dtype)
    args: list[Any] = [logits]
    if name in BINARY:
        args.append(np.full(logits.shape, 0.25))
    elif name in INDEX_TARGETS:
        args.append(np.arange(n_rows) % n_classes)
    if name in ("entropy", "cross_entropy_from_probs"):
        args[0] = np.full(logits.shape, 1.0 / n_classes, dtype=dtype)
    call = {"name": name, "args": args, "kwargs": {}}
    applicable = [m for m, functions in MUTATIONS.items() if name in functions]
    count = draw(st.sampled_from([1, 1, 1, 2, 3]))  # mostly one fault: each is then seen alone
    for mutation in draw(st.lists(st.sampled_from(applicable), min_size=count, max_size=count)):
        _mutate(draw, call, mutation)
    return call
