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


# Files: read by the tasks, by path -------------------------------------------------------


@pytest.fixture
def saved(tmp_path):
    """Logits (N_ROWS, N_CLASSES) float32 and labels with padding, saved as .npy."""
    logits, labels = make_case(np.float32)
    np.save(tmp_path / "logits.npy", logits)
    np.save(tmp_path / "labels.npy", labels)
    return tmp_path, logits, labels


def test_from_file_npy_reads_the_file_in_chunks_of_rows(saved, scheduler):
    folder, logits, _ = saved
    array = fxd.from_file(str(folder / "logits.npy"), rows_per_chunk=30)
    assert array.chunks == ((30, 30, 30, 13), (N_CLASSES,))
    assert array.dtype == np.float32
    np.testing.assert_array_equal(array.compute(**scheduler), logits)
    np.testing.assert_array_equal(array[25:64, 3].compute(**scheduler), logits[25:64, 3])


def test_from_file_default_chunks_are_dask_s_chunk_size(tmp_path):
    import dask

    np.save(tmp_path / "wide.npy", np.zeros((200, 2**20 // 4), np.float32))  # 1 MiB rows
    with dask.config.set({"array.chunk-size": "128MiB"}):
        assert fxd.from_file(str(tmp_path / "wide.npy")).chunks[0] == (128, 72)
    with dask.config.set({"array.chunk-size": "48MiB"}):
        assert fxd.from_file(str(tmp_path / "wide.npy")).chunks[0] == (48,) * 4 + (8,)


def test_evaluate_from_files_matches_in_memory(saved, scheduler):
    folder, logits, labels = saved
    expected = fastxent.evaluate(logits, labels, top_k=(1, 3))
    lazy = fxd.evaluate(
        fxd.from_file(str(folder / "logits.npy"), rows_per_chunk=17),
        fxd.from_file(str(folder / "labels.npy"), rows_per_chunk=40),  # rechunked to 17
        top_k=(1, 3),
        compute=False,
    )
    got = lazy.compute(**scheduler)
    assert (got.count, got.ignored, got.hits, got.bin_counts) == (
        expected.count, expected.ignored, expected.hits, expected.bin_counts,
    )  # fmt: skip
    assert math.isclose(got.loss_sum, expected.loss_sum, rel_tol=1e-12)


def test_from_file_safetensors_hdf5_and_zarr(saved, scheduler):
    safetensors_numpy = pytest.importorskip("safetensors.numpy")
    h5py = pytest.importorskip("h5py")
    zarr = pytest.importorskip("zarr")
    folder, logits, labels = saved
    safetensors_numpy.save_file(
        {"logits": logits, "labels": labels}, str(folder / "both.safetensors")
    )
    with h5py.File(folder / "both.h5", "w") as handle:
        handle["eval/logits"] = logits
        handle["eval/labels"] = labels
    with h5py.File(folder / "one.hdf5", "w") as handle:
        handle["logits"] = logits
    stored = zarr.create_array(
        str(folder / "logits.zarr"), shape=logits.shape, chunks=(25, N_CLASSES), dtype="f4"
    )
    stored[:] = logits
    cases = [
        (fxd.from_file(str(folder / "both.safetensors"), "logits", rows_per_chunk=40), logits),
        (fxd.from_file(str(folder / "both.safetensors"), "labels", rows_per_chunk=40), labels),
        (fxd.from_file(str(folder / "both.h5"), "eval/logits", rows_per_chunk=40), logits),
        (fxd.from_file(str(folder / "both.h5"), "eval/labels", rows_per_chunk=40), labels),
        (fxd.from_file(str(folder / "one.hdf5"), rows_per_chunk=40), logits),
        (fxd.from_file(str(folder / "logits.zarr")), logits),
        (fxd.from_file(str(folder / "logits.zarr"), rows_per_chunk=40), logits),
    ]
    for array, expected in cases:
        np.testing.assert_array_equal(array.compute(**scheduler), expected)
    assert cases[0][0].chunks[0] == (40, 40, 23)
    assert cases[5][0].chunks[0] == (25, 25, 25, 25, 3)  # the store's own chunks of rows
    assert cases[6][0].chunks[0] == (40, 40, 23)


def test_from_file_bad_input(saved):
    folder, logits, labels = saved
    np.savez(folder / "both.npz", logits=logits, labels=labels)
    with pytest.raises(ValueError, match="save the array as .npy"):
        fxd.from_file(str(folder / "both.npz"), "logits")
    with pytest.raises(ValueError, match="no such file"):
        fxd.from_file(str(folder / "missing.npy"))
    with pytest.raises(ValueError, match="rows_per_chunk must be at least 1"):
        fxd.from_file(str(folder / "logits.npy"), rows_per_chunk=0)
    np.save(folder / "scalar.npy", np.float32(1.0))
    with pytest.raises(ValueError, match="0-d"):
        fxd.from_file(str(folder / "scalar.npy"))
    h5py = pytest.importorskip("h5py")
    with h5py.File(folder / "two.h5", "w") as handle:
        handle["a"], handle["b"] = logits, labels
    with pytest.raises(ValueError, match="holds 2 datasets: choose one"):
        fxd.from_file(str(folder / "two.h5"))
    with pytest.raises(ValueError, match="no dataset 'c'"):
        fxd.from_file(str(folder / "two.h5"), "c")


def _graph_bytes(delayed_value):
    import cloudpickle

    return len(cloudpickle.dumps(dict(delayed_value.__dask_graph__())))


def test_graph_from_a_npy_is_small_whatever_the_file_size(tmp_path):
    """The graph holds the path, not the data: a 16x larger file, same chunks, same bytes."""
    sizes = {}
    for rows in (64, 1024):
        logits = np.zeros((rows, 4096), np.float32)  # 1 MiB, 16 MiB
        np.save(tmp_path / f"logits{rows}.npy", logits)
        np.save(tmp_path / f"labels{rows}.npy", np.zeros(rows, np.int64))
        lazy = fxd.evaluate(
            fxd.from_file(str(tmp_path / f"logits{rows}.npy"), rows_per_chunk=rows // 16),
            fxd.from_file(str(tmp_path / f"labels{rows}.npy"), rows_per_chunk=rows // 16),
            compute=False,
        )
        sizes[rows] = _graph_bytes(lazy)
    assert sizes[1024] < 100_000
    assert abs(sizes[1024] - sizes[64]) < 200, sizes
    # What the readers avoid: a memory-mapped array in the graph ships its data.
    mapped = np.load(tmp_path / "logits1024.npy", mmap_mode="r")
    naive = fxd.evaluate(da.from_array(mapped, chunks=(64, 4096)), np.zeros(1024, np.int64),
                         compute=False)  # fmt: skip
    assert _graph_bytes(naive) > mapped.nbytes


def _kill_worker_once(block, marker, block_info=None):
    """Kill the worker running the third chunk, once (``marker`` records that it happened)."""
    if block_info[0]["chunk-location"][0] == 2:
        try:
            os.close(os.open(marker, os.O_CREAT | os.O_EXCL))
        except FileExistsError:
            return block
        os._exit(1)  # the worker process dies mid-computation; its nanny starts another
    return block


def test_a_killed_worker_is_retried_and_the_result_is_right(client, saved):
    folder, logits, labels = saved
    marker = str(folder / "killed")
    before = set(client.scheduler_info()["workers"])
    dying = fxd.from_file(str(folder / "logits.npy"), rows_per_chunk=20).map_blocks(
        _kill_worker_once, marker=marker, dtype=np.float32
    )
    got = fxd.evaluate(dying, labels, compute=False).compute(scheduler=client)
    expected = fastxent.evaluate(logits, labels)
    assert os.path.exists(marker)  # a worker did die
    client.wait_for_workers(2, timeout=60)
    assert set(client.scheduler_info()["workers"]) != before  # and was replaced
    assert (got.count, got.hits, got.bin_counts) == (expected.count, expected.hits,
                                                      expected.bin_counts)  # fmt: skip
    assert math.isclose(got.loss_sum, expected.loss_sum, rel_tol=1e-12)


# fastxent eval on a cluster ----------------------------------------------------------------


def run_eval(*arguments, check=True):
    done = subprocess.run(
        ["fastxent", "eval", *map(str, arguments)], capture_output=True, text=True, timeout=300
    )
    if check:
        assert done.returncode == 0, done.stderr
    return done


def _metrics(report):
    """A ``--json`` report without what differs between runs (time, where it ran)."""
    import json

    values = json.loads(report)
    for name in ("seconds", "gb_per_s"):
        values.pop(name)
    for name in ("workers", "scheduler"):
        values["options"].pop(name)
    return values


def test_eval_on_two_workers_gives_the_single_process_output(saved):
    folder, _, _ = saved
    files = (folder / "logits.npy", folder / "labels.npy", "--rows-per-chunk", "20")
    single = run_eval(*files)
    on_cluster = run_eval(*files, "--workers", "2")
    assert on_cluster.stdout == single.stdout  # the table, to the last digit
    assert on_cluster.stderr == ""
    single_json = run_eval(*files, "--json", "-").stdout
    cluster_json = run_eval(*files, "--json", "-", "--workers", "2").stdout
    assert _metrics(cluster_json) == _metrics(single_json)


def test_eval_shifted_sequences_on_a_running_scheduler(tmp_path, client):
    rng = np.random.default_rng(3)
    np.save(tmp_path / "logits.npy", rng.standard_normal((9, 12, 20)).astype(np.float32))
    np.save(tmp_path / "labels.npy", rng.integers(0, 20, (9, 12)))
    files = (tmp_path / "logits.npy", tmp_path / "labels.npy", "--shift", "--json", "-")
    single = run_eval(*files, "--rows-per-chunk", "4").stdout
    address = client.scheduler.address
    on_cluster = run_eval(*files, "--rows-per-chunk", "4", "--scheduler", address).stdout
    assert _metrics(on_cluster) == _metrics(single)


def test_eval_cluster_bad_options(saved):
    folder, _, _ = saved
    files = (folder / "logits.npy", folder / "labels.npy")
    cases = [
        (["--workers", "0"], "--workers must be at least 1"),
        (["--workers", "2", "--per-row", folder / "out.npy"], "--per-row is written by this"),
        (["--scheduler", "tcp://127.0.0.1:9"], "cannot reach a Dask scheduler"),
    ]
    for options, message in cases:
        done = run_eval(*files, *options, check=False)
        assert done.returncode == 1, options
        assert message in done.stderr and "Traceback" not in done.stderr, done.stderr
        assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert not (folder / "out.npy").exists()
    done = run_eval(*files, "--workers", "2", "--scheduler", "tcp://x:1", check=False)
    assert done.returncode == 2 and "not allowed with argument" in done.stderr


def test_from_file_paths_are_absolute_and_a_changed_file_is_refused(saved, monkeypatch):
    folder, logits, _ = saved
    monkeypatch.chdir(folder)
    relative = fxd.from_file("logits.npy", rows_per_chunk=30)  # a str, relative here
    as_path = fxd.from_file(folder / "logits.npy", rows_per_chunk=30)  # a pathlib.Path
    monkeypatch.chdir("/")  # a worker runs elsewhere: the path must not depend on it
    np.testing.assert_array_equal(relative.compute(scheduler="threads"), logits)
    np.testing.assert_array_equal(as_path.compute(scheduler="threads"), logits)
    np.save(folder / "logits.npy", logits[:50])  # rewritten: other rows than the graph's
    with pytest.raises(ValueError, match="changed since from_file opened it"):
        relative.compute(scheduler="threads")
    with pytest.raises(TypeError, match="rows_per_chunk must be an integer"):
        fxd.from_file(folder / "labels.npy", rows_per_chunk="4")


def test_from_file_hdf5_key_with_a_leading_slash(saved):
    h5py = pytest.importorskip("h5py")
    folder, logits, _ = saved
    with h5py.File(folder / "nested.h5", "w") as handle:
        handle["eval/logits"] = logits
    array = fxd.from_file(str(folder / "nested.h5"), "/eval/logits", rows_per_chunk=50)
    np.testing.assert_array_equal(array.compute(scheduler="threads"), logits)


def test_eval_says_so_when_the_local_cluster_cannot_start(saved):
    folder, _, _ = saved
    environment = {**os.environ, "DASK_TEMPORARY_DIRECTORY": "/proc/no-such-directory"}
    done = subprocess.run(
        ["fastxent", "eval", folder / "logits.npy", folder / "labels.npy", "--workers", "2"],
        capture_output=True, text=True, timeout=300, env=environment,
    )  # fmt: skip
    assert done.returncode == 1, done.stderr
    assert "cannot start a local Dask cluster" in done.stderr, done.stderr
    assert "Traceback" not in done.stderr


def test_evaluate_of_files_reads_and_evaluates_a_chunk_in_one_task(saved, client):
    """Straight from from_file, each chunk is one task (and a sliced array still works)."""
    folder, logits, labels = saved
    on_disk = fxd.from_file(str(folder / "logits.npy"), rows_per_chunk=30)
    targets = fxd.from_file(str(folder / "labels.npy"), rows_per_chunk=7)
    lazy = fxd.evaluate(on_disk, targets, compute=False)
    assert len(dict(lazy.__dask_graph__())) == 4 + 1  # 4 chunks, and their sum
    got = lazy.compute(scheduler=client)
    expected = fastxent.evaluate(logits, labels)
    assert (got.count, got.hits, got.bin_counts) == (expected.count, expected.hits,
                                                      expected.bin_counts)  # fmt: skip
    assert math.isclose(got.loss_sum, expected.loss_sum, rel_tol=1e-12)
    sliced = fxd.evaluate(on_disk[10:], targets[10:], compute=False)  # the blockwise path
    assert len(dict(sliced.__dask_graph__())) > 5
    assert (
        sliced.compute(scheduler=client).count == fastxent.evaluate(logits[10:], labels[10:]).count
    )
