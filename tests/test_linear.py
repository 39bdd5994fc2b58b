"""``linear_cross_entropy`` and ``linear_cross_entropy_with_grad``.

Against ``fastxent.reference`` (the logits formed whole in float64) on both ways of
chunking, with chunk sizes that divide neither the rows nor the classes; against PyTorch's
``F.linear_cross_entropy``; and for what the chunking must not change: the result at any
working memory, ignored rows that cost and contribute nothing, the memory bound itself.
"""

from __future__ import annotations

import math
import tracemalloc

import numpy as np
import pytest
from conftest import assert_unchanged, import_torch, snapshot
from hypothesis import given, settings
from hypothesis import strategies as st

import fastxent
from fastxent import reference
from fastxent._blas import accumulates_in_place
from fastxent._plan import plan_linear

N_ROWS, HIDDEN, N_CLASSES = 90, 24, 1003
# Budgets that give each way of chunking, by itemsize (test_budgets_take_each_path).
BUDGETS = {
    "one-chunk": {4: 64 * 2**20, 8: 64 * 2**20},
    "row-chunks": {4: 300_000, 8: 600_000},  # 49 to 71 rows of logits per chunk
    "vocabulary-blocks": {4: 2**16, 8: 2**16},  # blocks of 50 to 200 classes
}


FORWARD_ROWS = 40  # the tests' LINEAR_FORWARD_ROWS: two chunks of 43 and 42 rows


def budget(path, dtype):
    return BUDGETS[path][8 if dtype == np.float64 else 4]


LOSS_RTOL = {np.dtype(np.float32): 3e-6, np.dtype(np.float64): 1e-13}
GRAD_RTOL = {np.dtype(np.float32): 2e-5, np.dtype(np.float64): 1e-12}


def make_problem(rng, dtype, probabilities=False, n_rows=N_ROWS, n_classes=N_CLASSES):
    h = rng.standard_normal((n_rows, HIDDEN)).astype(dtype)
    w = (3.0 * rng.standard_normal((n_classes, HIDDEN)) / math.sqrt(HIDDEN)).astype(dtype)
    bias = rng.standard_normal(n_classes).astype(dtype)
    if probabilities:
        target = rng.random((n_rows, n_classes))
        target[target < 0.3] = 0.0
        target = (target / target.sum(axis=1, keepdims=True)).astype(dtype)
    else:
        target = rng.integers(0, n_classes, n_rows)
        target[[i for i in (1, 2, 3, 40, 77) if i < n_rows]] = -100  # alone and in a run
    return h, w, bias, target


def assert_close(actual, expected, rtol):
    assert np.shape(actual) == np.shape(expected)
    expected = np.asarray(expected, dtype=np.float64)
    scale = float(np.max(np.abs(expected), initial=0.0))
    np.testing.assert_allclose(
        np.asarray(actual, np.float64), expected, rtol=rtol, atol=rtol * scale
    )


def assert_matches_reference(h, w, target, budget, **options):
    dtype = np.dtype(np.float64 if h.dtype == np.float64 else np.float32)
    expected = reference.linear_cross_entropy_with_grad(h, w, target, **options)
    saved = snapshot(h, w, target, options.get("linear_bias"), options.get("weight"))
    got = fastxent.linear_cross_entropy_with_grad(h, w, target, working_memory=budget, **options)
    forward = fastxent.linear_cross_entropy(h, w, target, working_memory=budget, **options)
    assert_unchanged(saved)
    for value in (got[0], forward):
        assert np.asarray(value).dtype == dtype
        assert_close(value, expected[0], LOSS_RTOL[dtype])
    for actual, wanted in zip(got[1:], expected[1:], strict=True):
        if wanted is None:
            assert actual is None
            continue
        assert actual.dtype == dtype
        assert_close(actual, wanted, GRAD_RTOL[dtype])


def test_budgets_take_each_path(monkeypatch):
    from fastxent import _plan

    monkeypatch.setattr(_plan, "LINEAR_FORWARD_ROWS", FORWARD_ROWS)
    n_rows = N_ROWS - 5
    for dtype in (np.float32, np.float64):
        itemsize = np.dtype(dtype).itemsize
        flags = {"gathered": True, "accumulates": accumulates_in_place(np.dtype(dtype))}
        args = (n_rows, HIDDEN, N_CLASSES, itemsize)
        for with_grad in (False, True):
            whole = plan_linear(*args, BUDGETS["one-chunk"][itemsize], with_grad, **flags)
            assert whole.rows_per_chunk == n_rows and whole.vocabulary_block is None
            assert whole.class_major  # few rows
            probs = plan_linear(*args, 2**26, with_grad, **flags, labels=False)
            assert not probs.class_major
        rows = plan_linear(*args, BUDGETS["row-chunks"][itemsize], True, **flags)
        assert rows.vocabulary_block is None
        assert 1 < rows.rows_per_chunk < n_rows and n_rows % rows.rows_per_chunk
        for with_grad in (False, True):
            # With the gradient, twice over the classes; a forward, once, class-major.
            blocks = plan_linear(*args, BUDGETS["vocabulary-blocks"][itemsize], with_grad, **flags)
            assert blocks.class_major is not with_grad
            assert 1 < blocks.vocabulary_block < N_CLASSES and N_CLASSES % blocks.vocabulary_block
            assert blocks.rows_per_chunk < n_rows and n_rows % blocks.rows_per_chunk


@pytest.fixture(params=["class-major", "row-major"])
def layout(request, monkeypatch):
    """Both layouts of a chunk of logits, whatever the number of its rows (a class-major
    forward takes FORWARD_ROWS rows against each block of classes)."""
    from fastxent import _plan

    monkeypatch.setattr(
        _plan, "LINEAR_CLASS_MAJOR_ROWS", 2**62 if request.param == "class-major" else 0
    )
    monkeypatch.setattr(_plan, "LINEAR_FORWARD_ROWS", FORWARD_ROWS)
    return request.param


OPTIONS = [
    pytest.param({}, id="plain"),
    pytest.param({"label_smoothing": 0.1, "weighted": True}, id="weighted-smoothed"),
    pytest.param({"z_loss": 1e-2, "softcap": 4.0, "label_smoothing": 0.1}, id="zloss-softcap"),
    pytest.param({"z_loss": 1e-3, "base": 2}, id="zloss-bits"),
]


@pytest.mark.parametrize("path", list(BUDGETS))
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("options", OPTIONS)
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("with_bias", [False, True], ids=["no-bias", "bias"])
def test_labels_match_reference(rng, path, dtype, options, reduction, with_bias, layout):
    h, w, bias, target = make_problem(rng, dtype)
    options = dict(options)
    if options.pop("weighted", False):
        options["weight"] = rng.uniform(0.2, 2.0, N_CLASSES)
    if with_bias:
        options["linear_bias"] = bias
    assert_matches_reference(h, w, target, budget(path, dtype), reduction=reduction, **options)


@pytest.mark.parametrize("path", list(BUDGETS))
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("options", OPTIONS)
def test_probabilities_match_reference(rng, path, dtype, options):
    h, w, bias, target = make_problem(rng, dtype, probabilities=True)
    options = dict(options)
    if options.pop("weighted", False):
        options["weight"] = rng.uniform(0.2, 2.0, N_CLASSES)
    assert_matches_reference(h, w, target, budget(path, dtype), linear_bias=bias, **options)


def test_working_memory_changes_nothing_beyond_rounding(rng):
    h, w, bias, target = make_problem(rng, np.float64)
    results = [
        fastxent.linear_cross_entropy_with_grad(
            h, w, target, linear_bias=bias, label_smoothing=0.05, working_memory=memory
        )
        for memory in (2**16, 300_000, 600_000, 64 * 2**20)
    ]
    for other in results[1:]:
        for a, b in zip(results[0], other, strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-13, atol=1e-16)


def test_ignored_rows_cost_and_contribute_nothing(rng, layout):
    h, w, bias, target = make_problem(rng, np.float32)
    ignored = target == -100
    h_padded = h.copy()
    h_padded[ignored] = np.nan  # never read: a product would spread it everywhere
    for path in BUDGETS:
        memory = budget(path, np.float32)
        loss, gh, gw, gb = fastxent.linear_cross_entropy_with_grad(
            h_padded, w, target, linear_bias=bias, working_memory=memory
        )
        kept = fastxent.linear_cross_entropy_with_grad(
            h[~ignored], w, target[~ignored], linear_bias=bias, working_memory=memory
        )
        assert loss == pytest.approx(kept[0], rel=1e-6)
        assert not gh[ignored].any()
        np.testing.assert_allclose(gh[~ignored], kept[1], rtol=1e-5, atol=1e-7)
        np.testing.assert_allclose(gw, kept[2], rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(gb, kept[3], rtol=1e-5, atol=1e-6)


def test_every_row_ignored(rng):
    h, w, _, _ = make_problem(rng, np.float64)
    target = np.full(N_ROWS, -100)
    loss, gh, gw, gb = fastxent.linear_cross_entropy_with_grad(h, w, target, linear_bias=w[:, 0])
    assert math.isnan(loss) and not gh.any() and not gw.any() and not gb.any()
    assert fastxent.linear_cross_entropy(h, w, target, reduction="sum") == 0.0


@pytest.mark.parametrize("path", ["row-chunks", "vocabulary-blocks"])
def test_gradients_into_out_arrays(rng, path):
    h, w, bias, target = make_problem(rng, np.float64)
    expected = fastxent.linear_cross_entropy_with_grad(
        h, w, target, linear_bias=bias, working_memory=budget(path, np.float64)
    )
    out = (np.full_like(h, np.nan), np.full_like(w, np.nan), np.full_like(bias, np.nan))
    got = fastxent.linear_cross_entropy_with_grad(
        h, w, target, linear_bias=bias, working_memory=budget(path, np.float64), out=out
    )
    assert got[0] == expected[0]
    for array, supplied, wanted in zip(got[1:], out, expected[1:], strict=True):
        assert array is supplied
        np.testing.assert_array_equal(array, wanted)
    partial = fastxent.linear_cross_entropy_with_grad(h, w, target, out=(None, out[1], None))
    assert partial[2] is out[1] and partial[3] is None


@pytest.mark.parametrize(
    "out, error, message",
    [
        ([None, None, None], TypeError, "out must be a tuple"),
        ((None, None), TypeError, "out must be a tuple"),
        ((np.zeros((4, 5)), None, None), ValueError, r"out\[0\] \(grad_input\) must have shape"),
        ((None, np.zeros((7, 6), np.float32), None), ValueError, "dtype float64"),
        ((None, np.zeros((6, 7)).T, None), ValueError, "C-contiguous"),
        ((None, None, np.zeros(7)), ValueError, "there is no linear_bias"),
        ((None, "x", None), TypeError, "must be a NumPy array"),
    ],
)
def test_bad_out_arrays_are_refused(out, error, message):
    h, w, target = np.ones((4, 6)), np.ones((7, 6)), np.array([0, 1, 2, 3])
    with pytest.raises(error, match=message):
        fastxent.linear_cross_entropy_with_grad(h, w, target, out=out)


def test_out_must_not_overlap_an_input():
    h, w, target = np.ones((4, 6)), np.ones((7, 6)), np.array([0, 1, 2, 3])
    saved = snapshot(h, w)
    with pytest.raises(ValueError, match="overlaps an input"):
        fastxent.linear_cross_entropy_with_grad(h, w, target, out=(None, w, None))
    assert_unchanged(saved)


def test_single_sample(rng):
    h, w, bias, target = make_problem(rng, np.float64, n_rows=1)
    loss, gh, gw, gb = fastxent.linear_cross_entropy_with_grad(
        h[0], w, np.int64(target[0]), reduction="none", linear_bias=bias
    )
    expected = reference.linear_cross_entropy_with_grad(
        h, w, target, reduction="none", linear_bias=bias
    )
    assert np.shape(loss) == () and gh.shape == (HIDDEN,)
    assert loss == pytest.approx(expected[0][0], rel=1e-14)
    assert_close(gh, expected[1][0], 1e-13)
    assert_close(gw, expected[2], 1e-13)


def test_float16_input_is_computed_in_float32(rng):
    h, w, bias, target = make_problem(rng, np.float16)
    loss, gh, gw, _ = fastxent.linear_cross_entropy_with_grad(h, w, target)
    expected = reference.linear_cross_entropy_with_grad(
        h.astype(np.float32), w.astype(np.float32), target
    )
    assert np.asarray(loss).dtype == np.float32 and gh.dtype == gw.dtype == np.float32
    assert_close(loss, expected[0], 3e-6)
    assert_close(gw, expected[2], 2e-5)


def test_mean_over_zero_weight_divides_by_zero():
    h = np.array([[3.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    w = np.eye(2)
    target = np.array([0, 1, -100])
    weight = np.array([1.0, -1.0])
    total = fastxent.linear_cross_entropy(h, w, target, weight=weight, reduction="sum")
    loss, gh, gw, _ = fastxent.linear_cross_entropy_with_grad(h, w, target, weight=weight)
    assert loss == math.copysign(math.inf, total)
    assert np.all(np.isinf(gh[:2]) | np.isnan(gh[:2])) and not gh[2].any()
    assert loss == reference.linear_cross_entropy(h, w, target, weight=weight)


def test_peak_memory_within_the_budget(rng):
    """Memory allocated beyond the inputs and the outputs stays under the budget."""
    n_rows, n_classes = 512, 20_000
    h, w, bias, target = make_problem(rng, np.float32, n_rows=n_rows, n_classes=n_classes)
    budget = 4 * 2**20  # the logits alone would take 41 MB
    for function in (fastxent.linear_cross_entropy, fastxent.linear_cross_entropy_with_grad):
        function(h, w, target, linear_bias=bias, working_memory=budget)  # compiled first
        tracemalloc.start()
        try:
            before = tracemalloc.get_traced_memory()[0]
            result = function(h, w, target, linear_bias=bias, working_memory=budget)
            peak = tracemalloc.get_traced_memory()[1] - before
        finally:
            tracemalloc.stop()
        parts = result if isinstance(result, tuple) else (result,)
        outputs = sum(np.asarray(part).nbytes for part in parts if part is not None)
        assert peak - outputs <= budget, (function.__name__, peak - outputs)


@pytest.mark.parametrize(
    "change, error, message",
    [
        ({"input": np.zeros((4, 5))}, ValueError, r"input has 5 features \(shape \(4, 5\)\)"),
        ({"input": np.zeros((2, 3, 6))}, ValueError, "input must be"),
        ({"linear_weight": np.zeros(6)}, ValueError, r"linear_weight must be \(V, H\)"),
        ({"input": np.zeros((4, 6), np.int64)}, TypeError, "input must be a float16"),
        ({"target": np.array([0, 1, 2])}, ValueError, r"target has shape \(3,\)"),
        ({"target": np.array([0, 1, 7, 9])}, ValueError, r"target\[2\] = 7"),
        ({"linear_bias": np.zeros(5)}, ValueError, r"linear_bias has shape \(5,\)"),
        ({"weight": np.ones(5)}, ValueError, r"shape \(7,\)"),
        ({"softcap": 0.0}, ValueError, "softcap must be finite and > 0"),
        ({"z_loss": -1.0}, ValueError, "z_loss must be finite and >= 0"),
        ({"z_loss": math.inf}, ValueError, "z_loss must be finite"),
        ({"working_memory": 1000}, ValueError, "working_memory must be at least"),
        ({"working_memory": 1e8}, TypeError, "working_memory must be an int"),
        ({"target": np.zeros((4, 6))}, ValueError, r"shape \(4, 7\)"),
    ],
)
def test_bad_input_is_refused(change, error, message):
    arguments = {
        "input": np.ones((4, 6)),
        "linear_weight": np.ones((7, 6)),
        "target": np.array([0, 1, 2, 3]),
    }
    arguments.update(change)
    positional = [arguments.pop(name) for name in ("input", "linear_weight", "target")]
    saved = snapshot(*positional, *arguments.values())
    for function in (fastxent.linear_cross_entropy, fastxent.linear_cross_entropy_with_grad):
        with pytest.raises(error, match=message):
            function(*positional, **arguments)
    assert_unchanged(saved)


def torch_linear(h, w, target, bias, reduction, **options):
    torch = import_torch()
    th = torch.tensor(h, requires_grad=True)
    tw = torch.tensor(w, requires_grad=True)
    tb = None if bias is None else torch.tensor(bias, requires_grad=True)
    weight = options.pop("weight", None)
    loss = torch.nn.functional.linear_cross_entropy(
        th, tw, torch.tensor(target), linear_bias=tb, reduction=reduction,
        weight=None if weight is None else torch.tensor(weight), **options,
    )  # fmt: skip
    (loss.sum() if reduction == "none" else loss).backward()
    return (
        loss.detach().numpy(), th.grad.numpy(), tw.grad.numpy(),
        None if tb is None else tb.grad.numpy(),
    )  # fmt: skip


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("options", [{}, {"label_smoothing": 0.2, "weighted": True}])
@pytest.mark.parametrize("probabilities", [False, True], ids=["labels", "probabilities"])
@pytest.mark.parametrize("path", ["row-chunks", "vocabulary-blocks"])
def test_matches_torch(rng, reduction, options, probabilities, path, layout):
    h, w, bias, target = make_problem(rng, np.float64, probabilities=probabilities)
    options = dict(options)
    if options.pop("weighted", False):
        options["weight"] = rng.uniform(0.2, 2.0, N_CLASSES)
    expected = torch_linear(h, w, target, bias, reduction, **dict(options))
    got = fastxent.linear_cross_entropy_with_grad(
        h, w, target, linear_bias=bias, reduction=reduction,
        working_memory=budget(path, np.float64), **options,
    )  # fmt: skip
    for actual, wanted in zip(got, expected, strict=True):
        assert_close(actual, wanted, 1e-12)


@pytest.mark.parametrize("path", ["row-chunks", "vocabulary-blocks"])
def test_terms_match_a_plain_torch_formula(rng, path, layout):
    torch = import_torch()
    h, w, bias, target = make_problem(rng, np.float64)
    th = torch.tensor(h, requires_grad=True)
    tw = torch.tensor(w, requires_grad=True)
    logits = torch.nn.functional.linear(th, tw, torch.tensor(bias))
    capped = 15.0 * torch.tanh(logits / 15.0)
    t = torch.tensor(target)
    counted = t != -100
    ce = torch.nn.functional.cross_entropy(capped, t, reduction="none")
    z = torch.where(counted, torch.logsumexp(capped, dim=-1) ** 2, torch.zeros(()))
    loss = (ce + 1e-3 * z).sum() / counted.sum()
    loss.backward()
    got = fastxent.linear_cross_entropy_with_grad(
        h, w, target, linear_bias=bias, z_loss=1e-3, softcap=15.0,
        working_memory=budget(path, np.float64),
    )  # fmt: skip
    assert got[0] == pytest.approx(loss.item(), rel=1e-13)
    assert_close(got[1], th.grad.numpy(), 1e-12)
    assert_close(got[2], tw.grad.numpy(), 1e-12)


ARRAYS = st.sampled_from(
    [
        np.ones((4, 6)),
        np.ones((4, 6), np.float32),
        np.ones(6),
        np.ones((4, 5)),
        np.ones((7, 6)),
        np.ones((2, 4, 6)),
        np.ones((0, 6)),
        np.ones((7, 0)),
        np.ones((4, 6), np.int64),
        np.array([0, 1, 2, 3]),
        np.array([0, 1, 2, 9]),
        np.array([0.5, 1.0]),
        np.full((4, 7), 1.0 / 7),
        np.array(["a", "b"]),
        np.array(3),
        None,
    ]
)


@settings(max_examples=300, deadline=None)
@given(
    input=ARRAYS,
    linear_weight=ARRAYS,
    target=ARRAYS,
    linear_bias=ARRAYS,
    weight=ARRAYS,
    options=st.fixed_dictionaries(
        {},
        optional={
            "reduction": st.sampled_from(["mean", "sum", "none", "avg", 1]),
            "label_smoothing": st.sampled_from([0.0, 0.2, -0.1, 2.0, "x"]),
            "z_loss": st.sampled_from([0.0, 1e-4, -1.0, float("nan")]),
            "softcap": st.sampled_from([None, 5.0, 0.0, -1.0]),
            "ignore_index": st.sampled_from([-100, 3, 1.5]),
            "working_memory": st.sampled_from([2**16, 2**26, 10, 2.0]),
        },
    ),
)
def test_any_call_returns_or_raises_a_clear_error(
    input, linear_weight, target, linear_bias, weight, options
):
    """Fuzzed calls: a result or a TypeError/ValueError, never anything else, inputs intact."""
    saved = snapshot(input, linear_weight, target, linear_bias, weight)
    for function in (fastxent.linear_cross_entropy, fastxent.linear_cross_entropy_with_grad):
        try:
            function(
                input, linear_weight, target, linear_bias=linear_bias, weight=weight, **options
            )
        except (TypeError, ValueError) as error:
            assert str(error)
    assert_unchanged(saved)


@pytest.mark.parametrize("path", list(BUDGETS))
@pytest.mark.parametrize("probabilities", [False, True], ids=["labels", "probabilities"])
@pytest.mark.parametrize("options", [{}, {"z_loss": 1e-2, "softcap": 4.0, "base": 2}])
def test_grad_output_gives_the_vector_jacobian_product(rng, path, probabilities, options, layout):
    """Gradients of sum_i g_i loss_i: the rows of dloss/dlogits scaled by g, then the products."""
    h, w, bias, target = make_problem(rng, np.float64, probabilities=probabilities)
    upstream = rng.uniform(-2.0, 2.0, N_ROWS)
    logits = h @ w.T + bias
    _, per_row = reference.cross_entropy_with_grad(logits, target, reduction="none", **options)
    scaled = per_row * upstream[:, np.newaxis]
    got = fastxent.linear_cross_entropy_with_grad(
        h, w, target, linear_bias=bias, reduction="none", grad_output=upstream,
        working_memory=budget(path, np.float64), **options,
    )  # fmt: skip
    assert_close(
        got[0],
        reference.linear_cross_entropy(h, w, target, linear_bias=bias, reduction="none", **options),
        1e-13,
    )
    for actual, wanted in zip(got[1:], (scaled @ w, scaled.T @ h, scaled.sum(axis=0)), strict=True):
        assert_close(actual, wanted, 1e-12)
    # A scalar upstream gradient of a reduced loss scales every gradient.
    mean = fastxent.linear_cross_entropy_with_grad(
        h, w, target, linear_bias=bias, grad_output=-0.5, working_memory=budget(path, np.float64),
        **options,
    )  # fmt: skip
    plain = reference.linear_cross_entropy_with_grad(h, w, target, linear_bias=bias, **options)
    for actual, wanted in zip(mean[1:], plain[1:], strict=True):
        assert_close(actual, -0.5 * wanted, 1e-12)


@pytest.mark.parametrize(
    ("grad_output", "error", "message"),
    [
        (np.ones(3), ValueError, "grad_output has shape"),
        ("a", TypeError, "grad_output must be a real number"),
    ],
)
def test_bad_grad_output_is_refused(grad_output, error, message):
    h, w = np.ones((4, 2)), np.ones((3, 2))
    with pytest.raises(error, match=message):
        fastxent.linear_cross_entropy_with_grad(
            h, w, np.array([0, 1, 2, 0]), reduction="none", grad_output=grad_output
        )
