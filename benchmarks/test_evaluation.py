"""pytest-benchmark: ``fastxent.evaluate`` against its peers, and ``fastxent eval`` on a file.

The peers are those of ``fastxent bench --operation evaluate``: fastxent's own forward
(``cross_entropy``, the throughput an evaluation should approach), NumPy and scikit-learn
computing the same metrics. The file case runs the command's blocks in-process on a
256 MB ``.npy`` (memory-mapped, in the page cache after the warm-up) beside ``evaluate``
on the same array in memory.
"""

from __future__ import annotations

import argparse

import numpy as np
import pytest

import fastxent
from fastxent import bench_evaluation, eval_command

PEERS = bench_evaluation.available_peers()


@pytest.mark.parametrize("shape", bench_evaluation.SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("peer", PEERS)
def test_evaluate(benchmark, make_batch, peer, shape):
    logits, labels = make_batch(*shape)
    call = bench_evaluation._calls(logits, labels)[peer]
    call()  # warm-up: compilation, caches
    benchmark.group = f"evaluate {shape[0]}x{shape[1]} float32"
    slow = peer in ("numpy", "sklearn") and logits.size > 2**24
    benchmark.pedantic(call, rounds=3 if slow else 7, iterations=1, warmup_rounds=0)


@pytest.fixture(scope="module")
def saved_logits(tmp_path_factory):
    path = tmp_path_factory.mktemp("eval")
    rng = np.random.default_rng(0)
    logits = (2 * rng.standard_normal((8192, 8192))).astype(np.float32)  # 256 MB
    labels = rng.integers(0, 8192, 8192)
    np.save(path / "logits.npy", logits)
    np.save(path / "labels.npy", labels)
    return path, logits, labels


@pytest.mark.parametrize("source", ["file (fastxent eval)", "memory (evaluate)"])
def test_eval_file_against_memory(benchmark, saved_logits, source):
    path, logits, labels = saved_logits
    if source.startswith("file"):
        args = argparse.Namespace(
            logits=str(path / "logits.npy"), labels=str(path / "labels.npy"), key=None,
            labels_key=None, axis=-1, ignore_index=-100, top_k="1,5", bins=15, shift=False,
            rows_per_chunk=None, per_row=None, json=None, quiet=True,
        )  # fmt: skip

        def call():
            return eval_command.evaluate_files(args)
    else:

        def call():
            return fastxent.evaluate(logits, labels)

    call()
    benchmark.group = "evaluate 8192x8192 float32: .npy file vs memory"
    benchmark.pedantic(call, rounds=7, iterations=1, warmup_rounds=1)
