"""pytest-benchmark: fastxent against its peers on cross-entropy, forward and forward+grad.

Run ``python -m pytest benchmarks`` (groups: shape, dtype and operation, so that
``pytest-benchmark compare`` lines up the peers of one case); the peers are the ones
``fastxent bench`` uses (the NumPy reference, PyTorch and JAX when installed), so both
report the same comparison. Not collected by the default test run.
"""

from __future__ import annotations

import numpy as np
import pytest

import fastxent
from fastxent import bench

PEERS = [p for p, installed in bench.available_peers().items() if installed]
CASES = [(shape, "float32") for shape in bench.DEFAULT_SHAPES] + [((4096, 32000), "float64")]


@pytest.mark.parametrize("operation", bench.OPERATIONS)
@pytest.mark.parametrize(("shape", "dtype"), CASES, ids=[f"{s[0]}x{s[1]}-{d}" for s, d in CASES])
@pytest.mark.parametrize("peer", PEERS)
def test_cross_entropy(benchmark, make_batch, peer, shape, dtype, operation):
    logits, labels = make_batch(*shape, dtype)
    call = bench._peer_calls(peer, logits, labels, threads=2)[operation]
    call()  # warm-up: JIT compilation and caches
    benchmark.group = f"{shape[0]}x{shape[1]} {dtype} {operation}"
    large = logits.size >= 1 << 24
    rounds = 2 if peer == "reference" and large else 7
    benchmark.pedantic(call, rounds=rounds, iterations=1 if large else 20, warmup_rounds=1)


@pytest.mark.parametrize("options", ["plain", "weight+ignore_index+label_smoothing"])
def test_cross_entropy_options(benchmark, make_batch, options):
    """The semantics options against the plain forward (target: within 1.3x)."""
    logits, labels = make_batch(4096, 32000, "float32")
    kwargs = {}
    if options != "plain":
        weight = np.random.default_rng(1).uniform(0.5, 2.0, logits.shape[1])
        labels = labels.copy()
        labels[::10] = -100
        kwargs = {"weight": weight, "ignore_index": -100, "label_smoothing": 0.1}
    fastxent.cross_entropy(logits, labels, **kwargs)
    benchmark.group = "4096x32000 float32 forward options"
    benchmark.pedantic(
        lambda: fastxent.cross_entropy(logits, labels, **kwargs), rounds=9, warmup_rounds=1
    )
