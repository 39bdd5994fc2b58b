"""pytest-benchmark: ``fastxent.dask`` against the in-memory call on the same array.

``evaluate`` and ``cross_entropy`` of a 4096 x 32000 float32 array in 16 chunks of rows,
on Dask's threaded scheduler and on a two-process ``LocalCluster``, beside the in-memory
functions: the overhead of the engine. And a 2 GB ``.npy`` file (16384 x 32000 float32)
evaluated by ``fastxent eval``'s single-process loop and by ``fastxent.dask.evaluate`` of
``fastxent.dask.from_file`` arrays on the two-process cluster (each worker reads its
chunks by path). Skipped without Dask.
"""

from __future__ import annotations

import argparse

import numpy as np
import pytest

da = pytest.importorskip("dask.array")
distributed = pytest.importorskip("distributed")

import fastxent  # noqa: E402
from fastxent import dask as fxd  # noqa: E402


@pytest.fixture(scope="module")
def client():
    with (
        distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, dashboard_address=None
        ) as cluster,
        distributed.Client(cluster) as connection,
    ):
        yield connection


@pytest.mark.parametrize("engine", ["in-memory", "threads", "local cluster"])
@pytest.mark.parametrize("function", ["evaluate", "cross_entropy"])
def test_dask_against_in_memory(benchmark, make_batch, client, engine, function):
    logits, labels = make_batch(4096, 32000)
    if engine == "in-memory":

        def call():
            return getattr(fastxent, function)(logits, labels)
    else:
        scheduler = "threads" if engine == "threads" else client
        chunked = da.from_array(logits, chunks=(256, 32000))
        if engine == "local cluster":
            # Made on the workers, as a cluster's data is (same shape and distribution).
            rng = da.random.default_rng(0)
            chunked = client.persist(
                (2 * rng.standard_normal((4096, 32000), chunks=(256, 32000))).astype("float32")
            )

        def call():
            lazy = getattr(fxd, function)(
                chunked, labels, **({"compute": False} if function == "evaluate" else {})
            )
            return lazy.compute(scheduler=scheduler)

    call()
    benchmark.group = f"dask {function} 4096x32000 float32"
    benchmark.pedantic(call, rounds=5, iterations=1, warmup_rounds=1)


@pytest.fixture(scope="module")
def npy_files(tmp_path_factory):
    """A 2 GB .npy of logits (16384 x 32000 float32) and its labels, written in blocks."""
    folder = tmp_path_factory.mktemp("files")
    rng = np.random.default_rng(0)
    logits = np.lib.format.open_memmap(folder / "logits.npy", "w+", np.float32, (16384, 32000))
    for start in range(0, 16384, 1024):
        logits[start : start + 1024] = 2 * rng.standard_normal((1024, 32000), np.float32)
    logits.flush()
    del logits
    np.save(folder / "labels.npy", rng.integers(0, 32000, 16384))
    return str(folder / "logits.npy"), str(folder / "labels.npy")


@pytest.mark.parametrize("engine", ["fastxent eval", "local cluster"])
def test_dask_evaluate_of_a_npy_file(benchmark, client, npy_files, engine):
    from fastxent.eval_command import add_arguments, evaluate_files

    logits, labels = npy_files
    if engine == "fastxent eval":
        parser = argparse.ArgumentParser()
        add_arguments(parser)
        arguments = parser.parse_args([logits, labels, "--quiet"])

        def call():
            return evaluate_files(arguments)
    else:

        def call():
            lazy = fxd.evaluate(fxd.from_file(logits), fxd.from_file(labels), compute=False)
            return lazy.compute(scheduler=client)

    call()
    benchmark.group = "evaluate a 2 GB .npy (16384x32000 float32)"
    benchmark.pedantic(call, rounds=5, iterations=1, warmup_rounds=1)
