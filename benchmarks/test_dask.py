"""pytest-benchmark: ``fastxent.dask`` against the in-memory call on the same array.

``evaluate`` and ``cross_entropy`` of a 4096 x 32000 float32 array in 16 chunks of rows,
on Dask's threaded scheduler and on a two-process ``LocalCluster``, beside the in-memory
functions: the overhead of the engine. Skipped without Dask.
"""

from __future__ import annotations

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
