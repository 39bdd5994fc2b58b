"""``fastxent.dask``: the in-memory results from Dask arrays, on real schedulers.

A ``distributed.LocalCluster`` of two worker processes (module-scoped: it takes seconds
to start) and Dask's threaded scheduler; uneven chunks of rows and of classes; weights,
``ignore_index`` (an all-ignored chunk included) and label smoothing.
"""

from __future__ import annotations

import math
import os
import subprocess
import sys

import numpy as np
import pytest

if os.environ.get("FASTXENT_REQUIRE_DASK") == "1":  # CI: the tests must run, not skip
    import dask.array as da
    import distributed
else:
    da = pytest.importorskip("dask.array")
    distributed = pytest.importorskip("distributed")

import fastxent  # noqa: E402
from fastxent import dask as fxd  # noqa: E402

N_ROWS, N_CLASSES = 103, 37
ROW_CHUNKS = (40, 1, 30, 32)  # uneven, one of a single row
CLASS_CHUNKS = (20, 17)  # the class axis split: rechunked


@pytest.fixture(scope="module")
def client():
    with (
        distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
        ) as cluster,
        distributed.Client(cluster) as connection,
    ):
        yield connection


@pytest.fixture(params=["distributed", "threads"])
def scheduler(request, client):
    """Compute on the two-process cluster, or on Dask's threaded scheduler."""
    if request.param == "distributed":
        return {"scheduler": client}
    return {"scheduler": "threads"}


def make_case(dtype=np.float64):
    rng = np.random.default_rng(0)
    logits = (3.0 * rng.standard_normal((N_ROWS, N_CLASSES))).astype(dtype)
    labels = rng.integers(0, N_CLASSES, N_ROWS)
    labels[40] = -100  # the one-row chunk: every row of it ignored
    labels[[0, 7, 77]] = -100
    return logits, labels


def chunked(array, classes=True):
    chunks = (ROW_CHUNKS, CLASS_CHUNKS) if classes and array.ndim == 2 else (ROW_CHUNKS,)
    return da.from_array(array, chunks=chunks)


OPTIONS = [
    pytest.param({}, id="plain"),
    pytest.param({"weight": np.linspace(0.2, 2.0, N_CLASSES)}, id="weight"),
    pytest.param(
        {"label_smoothing": 0.1, "weight": np.linspace(0.2, 2.0, N_CLASSES)}, id="smoothed"
    ),
    pytest.param({"z_loss": 1e-3, "softcap": 5.0, "base": 2}, id="zloss-softcap-bits"),
]


@pytest.mark.parametrize("options", OPTIONS)
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_cross_entropy_matches_in_memory(scheduler, options, reduction):
    logits, labels = make_case()
    expected = fastxent.cross_entropy(logits, labels, reduction=reduction, **options)
    lazy = fxd.cross_entropy(chunked(logits), labels, reduction=reduction, **options)
    assert isinstance(lazy, da.Array)
    got = lazy.compute(**scheduler)
    assert np.shape(got) == np.shape(expected) and got.dtype == np.asarray(expected).dtype
    np.testing.assert_allclose(got, expected, rtol=1e-13, atol=0)
    if reduction == "none":
        assert lazy.chunks == (ROW_CHUNKS,)


def test_probability_targets_and_float32(scheduler):
    rng = np.random.default_rng(1)
    logits = rng.standard_normal((N_ROWS, N_CLASSES)).astype(np.float32)
    probs = rng.random((N_ROWS, N_CLASSES))
    probs /= probs.sum(axis=1, keepdims=True)
    for reduction in ("mean", "none"):
        expected = fastxent.cross_entropy(logits, probs, reduction=reduction)
        got = fxd.cross_entropy(chunked(logits), chunked(probs), reduction=reduction)
        np.testing.assert_allclose(got.compute(**scheduler), expected, rtol=2e-6)


def test_mean_over_only_ignored_rows_is_nan(scheduler):
    logits, labels = make_case()
    labels[:] = -100
    got = fxd.cross_entropy(chunked(logits), labels).compute(**scheduler)
    assert math.isnan(float(got)) and math.isnan(float(fastxent.cross_entropy(logits, labels)))


@pytest.mark.parametrize("name", ["logsumexp", "softmax", "log_softmax"])
@pytest.mark.parametrize("axis", [-1, 0])
def test_softmax_family(scheduler, name, axis):
    logits, _ = make_case()
    x = logits if axis == -1 else np.ascontiguousarray(logits.T)
    chunks = (ROW_CHUNKS, CLASS_CHUNKS) if axis == -1 else (CLASS_CHUNKS, ROW_CHUNKS)
    expected = getattr(fastxent, name)(x, axis=axis)
    got = getattr(fxd, name)(da.from_array(x, chunks=chunks), axis=axis).compute(**scheduler)
    assert got.shape == expected.shape
    np.testing.assert_allclose(got, expected, rtol=1e-14, atol=1e-300)


def test_evaluate_matches_the_whole_array(scheduler):
    logits, labels = make_case()
    logits[5, 2] = np.nan  # a non-finite row in one chunk
    weight = np.linspace(0.5, 1.5, N_CLASSES)
    expected = fastxent.evaluate(logits, labels, weight=weight, top_k=(1, 3), bins=10)
    lazy = fxd.evaluate(chunked(logits), chunked(labels, classes=False), weight=weight,
                        top_k=(1, 3), bins=10, compute=False)  # fmt: skip
    got = lazy.compute(**scheduler)
    for name in ("count", "ignored", "nonfinite", "hits", "bin_counts", "bin_hits"):
        assert getattr(got, name) == getattr(expected, name), name
    for name in ("loss_sum", "weight_sum", "confidence_sum", "entropy_sum"):
        assert math.isclose(getattr(got, name), getattr(expected, name), rel_tol=1e-13)
    assert math.isclose(got.ece, expected.ece, rel_tol=1e-12)


def test_tasks_run_fastxent_on_one_thread(client):
    """A worker's task sets fastxent's (numba's) threads to one, and restores them after."""
    from fastxent.dask._functions import _in_task

    def threads_seen():
        import numba

        return numba.get_num_threads()

    inside = client.submit(_in_task(threads_seen), pure=False).result()
    assert inside == 1


def test_bad_input():
    logits, labels = make_case()
    with pytest.raises(ValueError, match="target needs shape"):
        fxd.cross_entropy(chunked(logits), labels[:-1])
    with pytest.raises(ValueError, match="reduction"):
        fxd.cross_entropy(chunked(logits), labels, reduction="avg")
    with pytest.raises(ValueError, match="out of range"):
        fxd.logsumexp(chunked(logits), axis=2)


def test_import_without_dask_says_how_to_install():
    code = (
        "import sys; sys.modules['dask'] = None; sys.modules['dask.array'] = None\n"
        "try:\n    import fastxent.dask\nexcept ImportError as e:\n    print(e)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert "pip install 'fastxent[dask]'" in done.stdout, done.stderr


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("with_bias", [False, True], ids=["", "bias"])
def test_linear_cross_entropy_matches_in_memory(scheduler, reduction, with_bias):
    rng = np.random.default_rng(2)
    hidden = rng.standard_normal((N_ROWS, 16))
    matrix = rng.standard_normal((N_CLASSES, 16)) / 4
    bias = rng.standard_normal(N_CLASSES) if with_bias else None
    _, labels = make_case()
    options = {"linear_bias": bias, "reduction": reduction, "label_smoothing": 0.05,
               "weight": np.linspace(0.5, 1.5, N_CLASSES)}  # fmt: skip
    expected = fastxent.linear_cross_entropy(hidden, matrix, labels, **options)
    lazy = fxd.linear_cross_entropy(da.from_array(hidden, chunks=(ROW_CHUNKS, 16)), matrix,
                                    labels, **options)  # fmt: skip
    np.testing.assert_allclose(lazy.compute(**scheduler), expected, rtol=1e-13, atol=0)


def test_linear_weight_enters_the_graph_once():
    """One task holds the output layer, however many chunks read it."""
    rng = np.random.default_rng(3)
    matrix = rng.standard_normal((500, 16))
    hidden = da.from_array(rng.standard_normal((400, 16)), chunks=(25, 16))  # 16 chunks
    lazy = fxd.linear_cross_entropy(hidden, matrix, rng.integers(0, 500, 400))
    graph = dict(lazy.__dask_graph__())
    holders = [
        key for key, task in graph.items()
        if any(isinstance(a, np.ndarray) and a.nbytes >= matrix.nbytes
               for a in _arrays_in(task))
    ]  # fmt: skip
    assert len(holders) == 1, holders


def _arrays_in(task):
    """Every ndarray inside a task of a Dask graph (tasks nest tuples, lists and objects)."""
    seen, stack = [], [task]
    while stack:
        item = stack.pop()
        if isinstance(item, np.ndarray):
            seen.append(item)
        elif isinstance(item, (tuple, list)):
            stack.extend(item)
        elif isinstance(item, dict):
            stack.extend(item.values())
        else:
            for name in ("args", "kwargs", "value", "func"):
                value = getattr(item, name, None)
                if value is not None and value is not item:
                    stack.append(value)
    return seen


def test_every_task_reads_one_copy_of_the_output_layer(monkeypatch):
    """On the threaded scheduler all tasks get the same output-layer array (one key, no
    per-task concatenation that would copy it), and each chunk of rows whole."""
    from fastxent.dask import _functions

    rng = np.random.default_rng(4)
    matrix = rng.standard_normal((N_CLASSES, 16))
    hidden = rng.standard_normal((N_ROWS, 16))
    _, labels = make_case()
    seen = []
    original = _functions._linear_chunk

    def spy(block, weight, *rest, **options):
        seen.append((id(weight), block.shape))
        return original(block, weight, *rest, **options)

    monkeypatch.setattr(_functions, "_linear_chunk", spy)
    rows = da.from_array(hidden, chunks=(ROW_CHUNKS, 8))  # features split: made whole
    fxd.linear_cross_entropy(rows, matrix, labels).compute(scheduler="threads")
    assert len({identity for identity, _ in seen}) == 1
    assert sorted(shape for _, shape in seen) == sorted((n, 16) for n in ROW_CHUNKS)
