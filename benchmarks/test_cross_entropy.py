"""pytest-benchmark: fastxent against its peers on cross-entropy, forward and forward+grad.

Run ``python -m pytest benchmarks --benchmark-group-by=param:shape,param:operation`` (the
default grouping below does the same); the peers are the ones ``fastxent bench`` uses, so
both report the same comparison. Not collected by the default test run.
"""

from __future__ import annotations

import pytest

from fastxent import bench

SHAPES = [(8192, 1000), (4096, 32000)]
PEERS = [p for p, installed in bench.available_peers().items() if installed and p != "jax"]


@pytest.mark.parametrize("operation", bench.OPERATIONS)
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: f"{s[0]}x{s[1]}")
@pytest.mark.parametrize("peer", PEERS)
def test_cross_entropy(benchmark, make_batch, peer, shape, operation):
    logits, labels = make_batch(*shape)
    call = bench._peer_calls(peer, logits, labels, threads=2)[operation]
    call()  # warm-up: JIT compilation and caches
    benchmark.group = f"{shape[0]}x{shape[1]} {operation}"
    rounds = 2 if peer == "reference" else 7
    benchmark.pedantic(call, rounds=rounds, iterations=1, warmup_rounds=1)
