"""Bad input (DESIGN.md section 4): a clear error, nothing lost.

Every public function answers bad input with a ``TypeError`` (wrong kind of thing) or a
``ValueError`` (right kind, wrong value) whose message names the offending argument; never
an ``AssertionError``, a Numba typing error or a crash. The caller's arrays are left exactly
as they were. An empty batch is not an error.

Each kind of bad input by hand, then Hypothesis's random wrong calls of every function
(``strategies.bad_calls``): the answer must be a ``TypeError`` or ``ValueError`` and the
caller's arrays, ``out`` included, must be left as they were.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from conftest import (
    ALL,
    BINARY,
    EVALUATION,
    INDEX_LOSSES,
    INDEX_TARGETS,
    LINEAR,
    LOSSES,
    LOSSES_WITH_AXIS,
    SOFTMAX_FAMILY,
    WITH_AXIS,
    WITH_GRAD,
    WITH_TARGET,
    assert_unchanged,
    snapshot,
)
from hypothesis import given
from strategies import FUZZ, bad_calls

import fastxent
from fastxent import reference

N, C = 4, 3

# Every public name but __version__.
assert sorted((*ALL, *LINEAR, *EVALUATION)) == sorted(set(fastxent.__all__) - {"__version__"})

#: Name of each function's first (array) argument, which its messages must name.
FIRST_ARGUMENT = {
    "softmax": "x",
    "log_softmax": "x",
    "logsumexp": "x",
    "cross_entropy_from_probs": "probs",
    "entropy": "probs",
}


def first_argument(name: str) -> str:
    return FIRST_ARGUMENT.get(name, "logits")


# --------------------------------------------------------------------------------------
# Valid inputs, and the check every bad-input test shares
# --------------------------------------------------------------------------------------


def make_logits(shape: tuple[int, ...] = (N, C), dtype: Any = np.float64) -> np.ndarray:
    rng = np.random.default_rng(1234)
    return rng.standard_normal(shape).astype(dtype)


def make_probs(shape: tuple[int, ...] = (N, C), axis: int = -1) -> np.ndarray:
    rng = np.random.default_rng(99)
    raw = rng.random(shape) + 0.1
    return raw / raw.sum(axis=axis, keepdims=True)


def make_labels(batch_shape: tuple[int, ...] = (N,)) -> np.ndarray:
    return (np.arange(math.prod(batch_shape)) % C).reshape(batch_shape).astype(np.int64)


def make_binary_target(shape: tuple[int, ...] = (N, C)) -> np.ndarray:
    return (np.arange(math.prod(shape)) % 4 / 3.0).reshape(shape)


def valid_call(name: str, dtype: Any = np.float64) -> tuple[list[Any], dict[str, Any]]:
    """Positional and keyword arguments of a valid call of ``fastxent.<name>``."""
    if name in SOFTMAX_FAMILY:
        return [make_logits(dtype=dtype)], {}
    if name in INDEX_LOSSES:
        return [make_logits(dtype=dtype), make_labels()], {}
    if name in BINARY:
        return [make_logits(dtype=dtype), make_binary_target()], {}
    if name == "cross_entropy_from_probs":
        return [make_probs().astype(dtype), make_labels()], {}
    if name == "entropy":
        return [make_probs().astype(dtype)], {}
    assert name == "kl_divergence"
    return [make_logits(dtype=dtype), make_probs()], {}


def _snapshot(values: list[Any]) -> list[tuple[np.ndarray, np.ndarray]]:
    return [(v, v.copy()) for v in values if isinstance(v, np.ndarray)]


def _unchanged(array: np.ndarray, saved: np.ndarray) -> bool:
    if array.dtype != saved.dtype or array.shape != saved.shape:
        return False
    if array.dtype.kind in "fc":
        return bool(np.array_equal(array, saved, equal_nan=True))
    return bool(np.array_equal(array, saved))


def assert_plain_error(error: BaseException) -> None:
    """A ``TypeError``/``ValueError`` of Python's (or the package's), never Numba's."""
    assert isinstance(error, (TypeError, ValueError)), type(error)
    assert not isinstance(error, AssertionError), type(error)
    for cls in type(error).__mro__:
        assert not cls.__module__.startswith("numba"), f"a Numba error leaked: {type(error)}"


def check_raises(
    expected: type[BaseException] | tuple[type[BaseException], ...],
    pattern: str,
    function: Callable[..., Any],
    *args: Any,
    also: tuple[np.ndarray, ...] = (),
    **kwargs: Any,
) -> str:
    """``function(*args, **kwargs)`` raises ``expected`` matching ``pattern``, and leaves
    every array argument (and the arrays in ``also``) unchanged. Returns the message."""
    saved = _snapshot([*args, *kwargs.values(), *also])
    with pytest.raises(expected, match=pattern) as info:
        function(*args, **kwargs)
    assert_plain_error(info.value)
    for array, copy in saved:
        assert _unchanged(array, copy), "an input was modified by a failing call"
    return str(info.value)


def call_raises(
    expected: type[BaseException] | tuple[type[BaseException], ...],
    pattern: str,
    name: str,
    args: list[Any],
    kwargs: dict[str, Any],
    also: tuple[np.ndarray, ...] = (),
) -> str:
    return check_raises(expected, pattern, getattr(fastxent, name), *args, also=also, **kwargs)


# --------------------------------------------------------------------------------------
# The check itself must be able to fail
# --------------------------------------------------------------------------------------


def test_check_raises_catches_a_modified_input() -> None:
    def clobber(x: np.ndarray) -> None:
        x[0] = 99.0
        raise ValueError("x is bad")

    with pytest.raises(AssertionError, match="modified"):
        check_raises(ValueError, "x", clobber, np.zeros(3))


def test_check_raises_rejects_numba_errors() -> None:
    from numba.core.errors import NumbaValueError, TypingError

    class NumbaLikeValueError(ValueError, TypingError):
        pass

    def raise_numba() -> None:
        raise NumbaLikeValueError("logits")

    with pytest.raises(AssertionError, match="Numba"):
        check_raises(ValueError, "logits", raise_numba)

    def raise_typing() -> None:
        raise NumbaValueError("logits")

    with pytest.raises(NumbaValueError):  # not a ValueError: pytest.raises lets it through
        check_raises(ValueError, "logits", raise_typing)


# --------------------------------------------------------------------------------------
# Non-float logits
# --------------------------------------------------------------------------------------


def _converted(array: np.ndarray, kind: str) -> np.ndarray:
    if kind == "object":
        return array.astype(object)
    if kind == "str":
        return array.astype(str)
    if kind == "bool":
        return array > 0
    return array.astype(kind)


@pytest.mark.parametrize(
    "kind", ["int64", "int32", "uint8", "bool", "longdouble", "complex128", "object", "str"]
)
@pytest.mark.parametrize("name", ALL)
def test_non_float_logits_is_a_type_error(name: str, kind: str) -> None:
    args, kwargs = valid_call(name)
    args[0] = _converted(args[0] * 3, kind)
    call_raises(TypeError, rf"\b{first_argument(name)}\b", name, args, kwargs)


@pytest.mark.parametrize("name", ALL)
def test_list_of_ints_as_logits_is_a_type_error(name: str) -> None:
    args, kwargs = valid_call(name)
    args[0] = [[1, 2, 3]] * N
    call_raises(TypeError, rf"\b{first_argument(name)}\b", name, args, kwargs)


# --------------------------------------------------------------------------------------
# Targets of the wrong kind
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", INDEX_TARGETS)
def test_bool_target_is_a_type_error(name: str) -> None:
    args, kwargs = valid_call(name)
    args[1] = np.array([True, False, True, True])
    call_raises(TypeError, r"\btarget\b", name, args, kwargs)


@pytest.mark.parametrize("name", INDEX_TARGETS)
def test_bool_target_shaped_like_logits_is_a_type_error(name: str) -> None:
    args, kwargs = valid_call(name)
    args[1] = np.eye(N, C, dtype=bool)  # a one-hot mask is not a probability target
    call_raises(TypeError, r"\btarget\b", name, args, kwargs)


@pytest.mark.parametrize("name", INDEX_TARGETS)
def test_float_class_indices_are_rejected(name: str) -> None:
    # Float targets are probabilities; float "indices" shaped like the batch are an error
    # (this API cannot tell them from a mis-shaped probability target, so either type).
    args, kwargs = valid_call(name)
    args[1] = np.array([0.0, 2.0, 1.0, 1.0])
    call_raises((TypeError, ValueError), r"\btarget\b", name, args, kwargs)


@pytest.mark.parametrize("kind", ["complex128", "object", "str"])
@pytest.mark.parametrize("name", WITH_TARGET)
def test_non_numeric_target_is_a_type_error(name: str, kind: str) -> None:
    args, kwargs = valid_call(name)
    args[1] = _converted(args[1], kind)
    call_raises(TypeError, r"\btarget\b", name, args, kwargs)


# --------------------------------------------------------------------------------------
# Shape mismatch: the message gives both shapes
# --------------------------------------------------------------------------------------


def _names_both_shapes(message: str, target: np.ndarray, logits: np.ndarray, axis: int) -> None:
    batch = logits.shape[:axis] + logits.shape[axis + 1 :] if logits.ndim else ()
    assert str(target.shape) in message, message
    assert str(logits.shape) in message or str(batch) in message, message


@pytest.mark.parametrize("target_shape", [(N + 1,), (N - 1,), (N, 1), (N, C), (1, N), ()], ids=str)
@pytest.mark.parametrize("name", INDEX_TARGETS)
def test_index_target_of_the_wrong_shape(name: str, target_shape: tuple[int, ...]) -> None:
    args, kwargs = valid_call(name)
    args[1] = np.zeros(target_shape, dtype=np.int64)
    message = call_raises(ValueError, r"\btarget\b", name, args, kwargs)
    _names_both_shapes(message, args[1], args[0], 1)


@pytest.mark.parametrize("target_shape", [(N, C + 1), (N + 1, C), (C,), (N, C, 1)], ids=str)
@pytest.mark.parametrize(
    "name", [*INDEX_LOSSES, "cross_entropy_from_probs", "kl_divergence", *BINARY]
)
def test_float_target_of_the_wrong_shape(name: str, target_shape: tuple[int, ...]) -> None:
    args, kwargs = valid_call(name)
    args[1] = np.full(target_shape, 1.0 / target_shape[-1])
    message = call_raises(ValueError, r"\btarget\b", name, args, kwargs)
    _names_both_shapes(message, args[1], args[0], 1)


@pytest.mark.parametrize("name", INDEX_TARGETS)
def test_target_shape_mismatch_with_class_axis_first(name: str) -> None:
    args, kwargs = valid_call(name)
    args[0] = np.ascontiguousarray(args[0].T)  # (C, N) with axis=0: batch shape (N,)
    args[1] = np.zeros((C,), dtype=np.int64)
    message = call_raises(ValueError, r"\btarget\b", name, args, {**kwargs, "axis": 0})
    _names_both_shapes(message, args[1], args[0], 0)


# --------------------------------------------------------------------------------------
# Class indices out of range
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("value", [-1, -7, C, 7, 2**40])
@pytest.mark.parametrize("name", INDEX_TARGETS)
def test_target_index_out_of_range(name: str, value: int) -> None:
    args, kwargs = valid_call(name)
    args[1] = np.array([0, 1, value, 1], dtype=np.int64)  # bad value at position 2
    message = call_raises(ValueError, r"\btarget\b", name, args, kwargs)
    assert re.search(rf"(?<![\d.]){re.escape(str(value))}(?![\d.])", message), message
    assert re.search(r"(?<![\d.-])2(?![\d.])", message), f"position 2 not named: {message}"


@pytest.mark.parametrize("dtype", [np.int8, np.int32, np.uint8, np.uint64])
@pytest.mark.parametrize("name", INDEX_TARGETS)
def test_target_index_out_of_range_any_integer_dtype(name: str, dtype: Any) -> None:
    args, kwargs = valid_call(name)
    args[1] = np.array([0, 1, 1, 100], dtype=dtype)
    message = call_raises(ValueError, r"\btarget\b", name, args, kwargs)
    assert "100" in message, message


@pytest.mark.parametrize("name", INDEX_TARGETS)
def test_target_index_out_of_range_in_a_3d_batch(name: str) -> None:
    logits = make_logits((2, C, 3))
    target = np.zeros((2, 3), dtype=np.int64)
    target[1, 2] = 9
    args, kwargs = valid_call(name)
    args[0] = logits if name != "cross_entropy_from_probs" else make_probs((2, C, 3), axis=1)
    args[1] = target
    message = call_raises(ValueError, r"\btarget\b", name, args, {**kwargs, "axis": 1})
    assert "9" in message, message


@pytest.mark.parametrize("name", INDEX_LOSSES)
def test_default_ignore_index_is_out_of_range_when_another_is_chosen(name: str) -> None:
    args, kwargs = valid_call(name)
    args[1] = np.array([0, -100, 1, 1])
    message = call_raises(ValueError, r"\btarget\b", name, args, {**kwargs, "ignore_index": -1})
    assert "-100" in message, message


@pytest.mark.parametrize(
    ("ignore_index", "target"),
    [
        (-100, [0, -100, 2, -100]),
        (-1, [-1, 1, 2, -1]),
        (7, [7, 7, 2, 0]),
        (1, [1, 0, 2, 1]),  # a valid class may be ignored
        (-100, [-100, -100, -100, -100]),  # all ignored: nan mean, not an error
    ],
)
@pytest.mark.parametrize("name", INDEX_LOSSES)
def test_ignore_index_is_not_an_error(name: str, ignore_index: int, target: list[int]) -> None:
    logits = make_logits()
    labels = np.array(target)
    saved = (logits.copy(), labels.copy())
    for reduction in ("mean", "sum", "none"):
        result = getattr(fastxent, name)(
            logits, labels, ignore_index=ignore_index, reduction=reduction
        )
        loss = result[0] if name.endswith("_with_grad") else result
        expected = reference.cross_entropy(
            logits, labels, ignore_index=ignore_index, reduction=reduction
        )
        np.testing.assert_allclose(loss, expected, rtol=1e-12, atol=1e-14)
    assert np.array_equal(logits, saved[0]) and np.array_equal(labels, saved[1])


@pytest.mark.parametrize("bad", [1.5, "x", None, np.float64(-100.0)])
@pytest.mark.parametrize("name", INDEX_LOSSES)
def test_ignore_index_must_be_an_int(name: str, bad: Any) -> None:
    args, kwargs = valid_call(name)
    call_raises(TypeError, "ignore_index", name, args, {**kwargs, "ignore_index": bad})


# --------------------------------------------------------------------------------------
# weight and pos_weight
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("value", [-np.inf, np.inf, np.nan])
@pytest.mark.parametrize("name", INDEX_LOSSES)
def test_bad_class_weight_value(name: str, value: float) -> None:
    args, kwargs = valid_call(name)
    weight = np.array([1.0, value, 2.0])
    call_raises(ValueError, r"\bweight\b", name, args, {**kwargs, "weight": weight})


@pytest.mark.parametrize("value", [-np.inf, np.inf, np.nan])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("labels", ["valid", "out of range"])
def test_bad_class_weight_with_out_logits(value: float, dtype: Any, labels: str) -> None:
    """The kernels check the weights of the common call before writing the gradient: a bad
    weight raises (before a bad label) and the logits given as ``out`` stay as they were."""
    logits, target = make_logits(dtype=dtype), make_labels()
    if labels != "valid":
        target[1] = C
    weight = np.ones(C)
    weight[C - 1] = value
    kwargs = {"weight": weight, "out": logits, "label_smoothing": 0.1}
    call_raises(ValueError, r"\bweight\b", "cross_entropy_with_grad", [logits, target], kwargs)


@pytest.mark.parametrize("value", [-np.inf, np.inf, np.nan])
@pytest.mark.parametrize("weight_shape", [(N, C), (C,), (N, 1), ()], ids=str)
@pytest.mark.parametrize("name", BINARY)
def test_bad_binary_weight_value(name: str, weight_shape: tuple[int, ...], value: float) -> None:
    args, kwargs = valid_call(name)
    weight = np.ones(weight_shape)
    weight[(0,) * len(weight_shape)] = value
    call_raises(ValueError, r"\bweight\b", name, args, {**kwargs, "weight": weight})


@pytest.mark.parametrize("value", [-np.inf, np.inf, np.nan])
@pytest.mark.parametrize("name", BINARY)
def test_bad_pos_weight_value(name: str, value: float) -> None:
    args, kwargs = valid_call(name)
    pos_weight = np.array([1.0, 2.0, value])
    call_raises(ValueError, r"\bpos_weight\b", name, args, {**kwargs, "pos_weight": pos_weight})


@pytest.mark.parametrize("weight", [[1.0, math.nan, 1.0], math.inf], ids=["list", "scalar"])
@pytest.mark.parametrize("name", BINARY)
def test_non_finite_weight_given_as_python_numbers(name: str, weight: Any) -> None:
    args, kwargs = valid_call(name)
    call_raises(ValueError, r"\bweight\b", name, args, {**kwargs, "weight": weight})


@pytest.mark.parametrize("weight_shape", [(C + 1,), (C - 1,), (1,), (), (1, C), (N, C)], ids=str)
@pytest.mark.parametrize("name", INDEX_LOSSES)
def test_class_weight_of_the_wrong_shape(name: str, weight_shape: tuple[int, ...]) -> None:
    args, kwargs = valid_call(name)
    call_raises(ValueError, r"\bweight\b", name, args, {**kwargs, "weight": np.ones(weight_shape)})


@pytest.mark.parametrize("weight_shape", [(C + 1,), (N,), (N + 1, 1), (2, N, C)], ids=str)
@pytest.mark.parametrize("name", BINARY)
def test_binary_weight_of_the_wrong_shape(name: str, weight_shape: tuple[int, ...]) -> None:
    args, kwargs = valid_call(name)
    call_raises(ValueError, r"\bweight\b", name, args, {**kwargs, "weight": np.ones(weight_shape)})


@pytest.mark.parametrize("shape", [(C + 1,), (2,), (N, C, 2)], ids=str)
@pytest.mark.parametrize("name", BINARY)
def test_pos_weight_of_the_wrong_shape(name: str, shape: tuple[int, ...]) -> None:
    args, kwargs = valid_call(name)
    call_raises(ValueError, r"\bpos_weight\b", name, args, {**kwargs, "pos_weight": np.ones(shape)})


@pytest.mark.parametrize("kind", ["complex128", "str", "object"])
@pytest.mark.parametrize("name", [*INDEX_LOSSES, *BINARY])
def test_non_numeric_weight_is_a_type_error(name: str, kind: str) -> None:
    args, kwargs = valid_call(name)
    weight = _converted(np.ones(C), kind)
    call_raises(TypeError, r"\bweight\b", name, args, {**kwargs, "weight": weight})


# --------------------------------------------------------------------------------------
# Scalars: label_smoothing, eps, reduction, base
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("value", [-0.1, -1e-12, 1.1, 1.0 + 1e-9, np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("name", INDEX_LOSSES)
def test_label_smoothing_out_of_range(name: str, value: float) -> None:
    args, kwargs = valid_call(name)
    call_raises(ValueError, "label_smoothing", name, args, {**kwargs, "label_smoothing": value})


@pytest.mark.parametrize("value", ["0.1", None, [0.1], np.array([0.1]), 0.1j, True])
@pytest.mark.parametrize("name", INDEX_LOSSES)
def test_label_smoothing_not_a_number(name: str, value: Any) -> None:
    args, kwargs = valid_call(name)
    call_raises(TypeError, "label_smoothing", name, args, {**kwargs, "label_smoothing": value})


@pytest.mark.parametrize("value", [0.0, 1.0, np.float32(0.25), 1])
@pytest.mark.parametrize("name", INDEX_LOSSES)
def test_label_smoothing_at_the_ends_is_accepted(name: str, value: Any) -> None:
    args, kwargs = valid_call(name)
    result = getattr(fastxent, name)(*args, label_smoothing=value)
    loss = result[0] if name.endswith("_with_grad") else result
    expected = reference.cross_entropy(*args, label_smoothing=float(value))
    np.testing.assert_allclose(loss, expected, rtol=1e-12)


@pytest.mark.parametrize("value", [-1e-7, -1.0, 1.5, np.nan])
def test_eps_out_of_range(value: float) -> None:
    args, kwargs = valid_call("cross_entropy_from_probs")
    call_raises(ValueError, r"\beps\b", "cross_entropy_from_probs", args, {"eps": value})


@pytest.mark.parametrize("value", ["1e-7", [1e-7], 1e-7j])
def test_eps_not_a_number(value: Any) -> None:
    args, kwargs = valid_call("cross_entropy_from_probs")
    call_raises(TypeError, r"\beps\b", "cross_entropy_from_probs", args, {"eps": value})


@pytest.mark.parametrize(
    "reduction", ["avg", "Mean", "SUM", "", " sum", "batchmean", "elementwise"]
)
@pytest.mark.parametrize("name", LOSSES)
def test_unknown_reduction(name: str, reduction: str) -> None:
    args, kwargs = valid_call(name)
    call_raises(ValueError, "reduction", name, args, {**kwargs, "reduction": reduction})


@pytest.mark.parametrize("reduction", [None, 1, ["mean"]])
@pytest.mark.parametrize("name", LOSSES)
def test_reduction_not_a_string(name: str, reduction: Any) -> None:
    args, kwargs = valid_call(name)
    call_raises(
        (TypeError, ValueError), "reduction", name, args, {**kwargs, "reduction": reduction}
    )


@pytest.mark.parametrize(
    "base", [0, 0.0, -2.0, 1, 1.0, np.float64(1.0), np.nan, np.inf, -np.inf], ids=repr
)
@pytest.mark.parametrize("name", LOSSES)
def test_bad_base_value(name: str, base: Any) -> None:
    args, kwargs = valid_call(name)
    call_raises(ValueError, r"\bbase\b", name, args, {**kwargs, "base": base})


@pytest.mark.parametrize("base", ["2", [2], 2j, True, np.array([2.0])], ids=repr)
@pytest.mark.parametrize("name", LOSSES)
def test_base_not_a_number(name: str, base: Any) -> None:
    args, kwargs = valid_call(name)
    call_raises(TypeError, r"\bbase\b", name, args, {**kwargs, "base": base})


# --------------------------------------------------------------------------------------
# Shapes of logits: no classes, no axis, bad axis
# --------------------------------------------------------------------------------------


def _call_with_logits_shape(
    name: str, shape: tuple[int, ...], axis: int
) -> tuple[list[Any], dict[str, Any]]:
    """Valid-looking arguments around logits of ``shape`` with classes on ``axis``."""
    batch = shape[:axis] + shape[axis + 1 :] if shape else ()
    kwargs: dict[str, Any] = {} if name in BINARY else {"axis": axis}
    logits = np.zeros(shape)
    if name in SOFTMAX_FAMILY or name == "entropy":
        return [logits], kwargs
    if name in BINARY:
        return [logits, np.zeros(shape)], kwargs
    if name == "kl_divergence":
        return [logits, np.zeros(shape)], kwargs
    return [logits, np.zeros(batch, dtype=np.int64)], kwargs


@pytest.mark.parametrize(
    ("shape", "axis"), [((N, 0), -1), ((0, N), 0), ((2, 0, 3), 1), ((0,), 0), ((0, 0), 1)]
)
@pytest.mark.parametrize("name", LOSSES_WITH_AXIS)
def test_zero_classes(name: str, shape: tuple[int, ...], axis: int) -> None:
    # (softmax, log_softmax and logsumexp accept empty axes: tests/test_conformance.py)
    args, kwargs = _call_with_logits_shape(name, shape, axis)
    call_raises(ValueError, rf"\b{first_argument(name)}\b", name, args, kwargs)


@pytest.mark.parametrize("name", INDEX_TARGETS)
def test_zero_classes_with_probability_target(name: str) -> None:
    args = [np.zeros((N, 0)), np.zeros((N, 0))]
    call_raises(ValueError, rf"\b{first_argument(name)}\b", name, args, {})


@pytest.mark.parametrize("name", LOSSES_WITH_AXIS)
def test_zero_d_logits(name: str) -> None:
    # (a 0-d input to softmax, log_softmax or logsumexp is one class: test_conformance.py)
    args, kwargs = _call_with_logits_shape(name, (), 0)
    kwargs = {}
    if name == "kl_divergence":
        args[1] = np.array(1.0)
    call_raises(ValueError, rf"\b{first_argument(name)}\b", name, args, kwargs)


@pytest.mark.parametrize("axis", [1.0, np.float64(0.0), "1", [1], (0, 1.0), True], ids=repr)
@pytest.mark.parametrize("name", SOFTMAX_FAMILY)
def test_axis_neither_int_nor_tuple_of_ints(name: str, axis: Any) -> None:
    args, kwargs = valid_call(name)
    call_raises(TypeError, r"\baxis\b", name, args, {**kwargs, "axis": axis})


@pytest.mark.parametrize("axis", [2, -3, 10, -100])
@pytest.mark.parametrize("name", WITH_AXIS)
def test_axis_out_of_range(name: str, axis: int) -> None:
    args, kwargs = valid_call(name)
    message = call_raises(ValueError, r"\baxis\b", name, args, {**kwargs, "axis": axis})
    assert str(axis) in message, message


@pytest.mark.parametrize("axis", [1.0, np.float64(0.0), "1", None, [1], (0, 1)], ids=repr)
@pytest.mark.parametrize("name", LOSSES_WITH_AXIS)
def test_axis_not_an_int(name: str, axis: Any) -> None:
    args, kwargs = valid_call(name)
    call_raises(TypeError, r"\baxis\b", name, args, {**kwargs, "axis": axis})


# --------------------------------------------------------------------------------------
# out=
# --------------------------------------------------------------------------------------


def _grad_call(name: str, probability_target: bool = False) -> tuple[list[Any], dict[str, Any]]:
    args, kwargs = valid_call(name)
    if probability_target and name == "cross_entropy_with_grad":
        args[1] = make_probs()
    return args, kwargs


@pytest.mark.parametrize("shape", [(N, C + 1), (N + 1, C), (C, N), (N * C,), (1, N, C)], ids=str)
@pytest.mark.parametrize("name", WITH_GRAD)
def test_out_of_the_wrong_shape(name: str, shape: tuple[int, ...]) -> None:
    args, kwargs = _grad_call(name)
    out = np.full(shape, 7.0)
    call_raises(ValueError, r"\bout\b", name, args, {**kwargs, "out": out})


@pytest.mark.parametrize(
    ("logits_dtype", "out_dtype"),
    [
        (np.float64, np.float32),
        (np.float32, np.float64),
        (np.float64, np.int64),
        (np.float64, np.complex128),
        (np.float32, np.float16),
        (np.float64, object),
    ],
    ids=str,
)
@pytest.mark.parametrize("name", WITH_GRAD)
def test_out_of_the_wrong_dtype(name: str, logits_dtype: Any, out_dtype: Any) -> None:
    args, kwargs = valid_call(name, dtype=logits_dtype)
    out = np.zeros((N, C), dtype=out_dtype)
    call_raises(ValueError, r"\bout\b", name, args, {**kwargs, "out": out})


@pytest.mark.parametrize(
    "make_out",
    [lambda: [[0.0] * C] * N, lambda: tuple([0.0] * C for _ in range(N)), lambda: 0.0],
    ids=["list", "tuple", "float"],
)
@pytest.mark.parametrize("name", WITH_GRAD)
def test_out_not_an_array(name: str, make_out: Callable[[], Any]) -> None:
    args, kwargs = _grad_call(name)
    call_raises(TypeError, r"\bout\b", name, args, {**kwargs, "out": make_out()})


@pytest.mark.parametrize("name", WITH_GRAD)
def test_out_read_only(name: str) -> None:
    args, kwargs = _grad_call(name)
    out = np.full((N, C), 5.0)
    out.flags.writeable = False
    call_raises(ValueError, r"\bout\b", name, args, {**kwargs, "out": out})


@pytest.mark.parametrize("name", WITH_GRAD)
def test_out_read_only_logits_in_place(name: str) -> None:
    args, kwargs = _grad_call(name)
    args[0].flags.writeable = False
    call_raises(ValueError, r"\bout\b", name, args, {**kwargs, "out": args[0]})


@pytest.mark.parametrize("view", [False, True], ids=["same", "view"])
@pytest.mark.parametrize("name", WITH_GRAD)
def test_out_is_the_target(name: str, view: bool) -> None:
    args, kwargs = _grad_call(name, probability_target=True)
    out = args[1][...] if view else args[1]
    call_raises(ValueError, r"\bout\b", name, args, {**kwargs, "out": out})


@pytest.mark.parametrize("name", WITH_GRAD)
def test_out_overlaps_part_of_the_target(name: str) -> None:
    args, kwargs = _grad_call(name, probability_target=True)
    buffer = np.concatenate([args[1], args[1][:1]])  # (N + 1, C)
    args[1] = buffer[:N]
    out = buffer[1:]
    call_raises(ValueError, r"\bout\b", name, args, {**kwargs, "out": out}, also=(buffer,))


def test_out_is_the_binary_weight() -> None:
    args, _ = _grad_call("binary_cross_entropy_with_grad")
    weight = np.full((N, C), 2.0)
    call_raises(
        ValueError, r"\bout\b", "binary_cross_entropy_with_grad", args,
        {"weight": weight, "out": weight},
    )  # fmt: skip


def test_out_is_the_class_weight() -> None:
    logits = make_logits((C,))  # one sample: the gradient has the weight's shape
    weight = np.array([1.0, 2.0, 3.0])
    call_raises(
        ValueError, r"\bout\b", "cross_entropy_with_grad", [logits, np.array(1)],
        {"weight": weight, "out": weight},
    )  # fmt: skip


def test_out_is_the_pos_weight() -> None:
    logits = make_logits((C,))
    pos_weight = np.array([1.0, 2.0, 3.0])
    call_raises(
        ValueError, r"\bout\b", "binary_cross_entropy_with_grad", [logits, np.ones(C)],
        {"pos_weight": pos_weight, "out": pos_weight},
    )  # fmt: skip


@pytest.mark.parametrize("name", WITH_GRAD)
def test_out_overlaps_part_of_logits(name: str) -> None:
    args, kwargs = _grad_call(name)
    buffer = make_logits((N + 1, C))
    args[0] = buffer[:N]
    out = buffer[1:]
    call_raises(ValueError, r"\bout\b", name, args, {**kwargs, "out": out}, also=(buffer,))


@pytest.mark.parametrize(
    "make_out",
    [lambda z: z[::-1], lambda z: z[:, ::-1], lambda z: z.T],
    ids=["rows-reversed", "columns-reversed", "transposed"],
)
@pytest.mark.parametrize("name", WITH_GRAD)
def test_out_is_logits_in_another_layout(name: str, make_out: Callable[..., Any]) -> None:
    args, kwargs = valid_call(name)
    square = make_logits((C, C))  # so that the transpose has the logits' shape
    args[0] = square
    args[1] = args[1][:C]
    call_raises(ValueError, r"\bout\b", name, args, {**kwargs, "out": make_out(square)})


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("probability_target", [False, True], ids=["index", "probability"])
@pytest.mark.parametrize("name", WITH_GRAD)
def test_out_is_logits_is_allowed(name: str, probability_target: bool, dtype: Any) -> None:
    args, kwargs = _grad_call(name, probability_target)
    args[0] = args[0].astype(dtype)
    ref = getattr(reference, name)
    expected_loss, expected_grad = ref(args[0].copy(), args[1])
    target = args[1].copy()
    loss, grad = getattr(fastxent, name)(args[0], args[1], out=args[0])
    assert grad is args[0]
    rtol = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(loss, expected_loss, rtol=rtol)
    np.testing.assert_allclose(args[0], expected_grad, rtol=rtol, atol=rtol / 10)
    assert np.array_equal(args[1], target)


def test_out_is_logits_with_class_axis_first_is_allowed() -> None:
    logits = make_logits((C, N))
    labels = make_labels((N,))
    expected_loss, expected_grad = reference.cross_entropy_with_grad(logits.copy(), labels, axis=0)
    loss, grad = fastxent.cross_entropy_with_grad(logits, labels, axis=0, out=logits)
    assert grad is logits
    np.testing.assert_allclose(loss, expected_loss, rtol=1e-12)
    np.testing.assert_allclose(logits, expected_grad, rtol=1e-12, atol=1e-14)


# --------------------------------------------------------------------------------------
# Empty batch: not an error
# --------------------------------------------------------------------------------------


def _result_dtype(dtype: Any) -> np.dtype[Any]:
    return np.dtype(np.float64) if np.dtype(dtype) == np.float64 else np.dtype(np.float32)


EMPTY_CASES = [
    # (name, logits shape, axis or None, target: "index" / "probability" / None)
    *[(n, (0, C), -1, "index") for n in INDEX_TARGETS],
    *[(n, (0, C), -1, "probability") for n in INDEX_TARGETS],
    *[(n, (2, 0, C), -1, "index") for n in INDEX_TARGETS],
    *[(n, (C, 0), 0, "index") for n in INDEX_TARGETS],
    *[(n, (0, C, 5), 1, "probability") for n in INDEX_TARGETS],
    *[(n, (0, C), None, "binary") for n in BINARY],
    *[(n, (0,), None, "binary") for n in BINARY],
    *[(n, (2, 0), None, "binary") for n in BINARY],
    ("entropy", (0, C), -1, None),
    ("entropy", (C, 0), 0, None),
]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize(("name", "shape", "axis", "target_kind"), EMPTY_CASES, ids=str)
def test_empty_batch(
    name: str,
    shape: tuple[int, ...],
    axis: int | None,
    target_kind: str | None,
    reduction: str,
    dtype: Any,
) -> None:
    logits = np.zeros(shape, dtype=dtype)
    if axis is None:  # binary: elementwise
        batch = shape
        kwargs: dict[str, Any] = {}
    else:
        batch = shape[: axis % len(shape)] + shape[axis % len(shape) + 1 :]
        kwargs = {"axis": axis}
    args: list[Any] = [logits]
    if target_kind == "index":
        args.append(np.zeros(batch, dtype=np.int64))
    elif target_kind in ("probability", "binary"):
        args.append(np.zeros(shape, dtype=dtype))
    result = getattr(fastxent, name)(*args, reduction=reduction, **kwargs)
    rdtype = _result_dtype(dtype)
    if name.endswith("_with_grad"):
        loss, grad = result
        assert isinstance(grad, np.ndarray) and grad.shape == shape and grad.dtype == rdtype
    else:
        loss = result
    if reduction == "none":
        assert isinstance(loss, np.ndarray)
        assert loss.shape == batch and loss.dtype == rdtype
    else:
        assert type(loss) is rdtype.type, type(loss)
        if reduction == "mean":
            assert np.isnan(loss)
        else:
            assert loss == 0


@pytest.mark.parametrize("name", SOFTMAX_FAMILY)
@pytest.mark.parametrize(("shape", "axis"), [((0, C), -1), ((C, 0), 0), ((2, 0, C), 2)])
def test_empty_batch_softmax_family(name: str, shape: tuple[int, ...], axis: int) -> None:
    x = np.zeros(shape)
    result = getattr(fastxent, name)(x, axis=axis)
    expected_shape = shape[: axis % len(shape)] + shape[axis % len(shape) + 1 :]
    assert result.shape == (expected_shape if name == "logsumexp" else shape)
    assert result.dtype == np.float64


# --------------------------------------------------------------------------------------
# Random wrong calls: TypeError or ValueError, nothing modified
# --------------------------------------------------------------------------------------


@FUZZ
@given(call=bad_calls())
def test_bad_input_raises_type_or_value_error(call):
    function = getattr(fastxent, call["name"])
    saved = snapshot(*call["args"], *call["kwargs"].values())
    with pytest.raises((TypeError, ValueError)):
        function(*call["args"], **call["kwargs"])
    assert_unchanged(saved)
