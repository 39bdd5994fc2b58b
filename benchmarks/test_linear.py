"""pytest-benchmark: fused linear cross-entropy against PyTorch's two paths and the BLAS floor.

The peers are those of ``fastxent bench --operation linear``: fastxent, the matrix
products alone (``h @ W.T``; with the gradients also ``G @ W`` and ``G.T @ h``), and
PyTorch's ``F.linear_cross_entropy``, materialised and chunked. Groups line up the peers
of one shape and operation. The z-loss and soft-cap cases compare with the plain call.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

import fastxent
from fastxent import bench

PEERS = bench.available_linear_peers()


def make_head(n_rows, hidden, n_classes, dtype="float32"):
    rng = np.random.default_rng(0)
    h = rng.standard_normal((n_rows, hidden)).astype(dtype)
    w = (rng.standard_normal((n_classes, hidden)) / math.sqrt(hidden)).astype(dtype)
    return h, w, rng.integers(0, n_classes, size=n_rows)


@pytest.mark.parametrize("operation", bench.LINEAR_OPERATIONS)
@pytest.mark.parametrize(
    "shape", bench.LINEAR_SHAPES, ids=["x".join(map(str, s)) for s in bench.LINEAR_SHAPES]
)
@pytest.mark.parametrize("peer", PEERS)
def test_linear_cross_entropy(benchmark, peer, shape, operation):
    h, w, y = make_head(*shape)
    call = bench._linear_calls(peer, h, w, y, threads=2)[operation]
    call()  # warm-up
    benchmark.group = f"{'x'.join(map(str, shape))} float32 {operation}"
    benchmark.pedantic(call, rounds=3, iterations=1, warmup_rounds=0)


@pytest.mark.parametrize("terms", ["plain", "z_loss", "softcap", "z_loss+softcap"])
@pytest.mark.parametrize("function", ["cross_entropy_with_grad", "linear_cross_entropy_with_grad"])
def test_language_model_terms(benchmark, function, terms):
    """The z-loss and soft-capping against the plain call of the same function."""
    options = {
        "plain": {},
        "z_loss": {"z_loss": 1e-4},
        "softcap": {"softcap": 30.0},
        "z_loss+softcap": {"z_loss": 1e-4, "softcap": 30.0},
    }[terms]
    if function == "cross_entropy_with_grad":
        rng = np.random.default_rng(0)
        arguments = (
            (2.0 * rng.standard_normal((4096, 32000))).astype(np.float32),
            rng.integers(0, 32000, size=4096),
        )
        shape = "4096x32000"
    else:
        arguments = make_head(1024, 512, 32000)
        shape = "1024x512x32000"
    call = getattr(fastxent, function)
    call(*arguments, **options)
    benchmark.group = f"{function} {shape} float32 terms"
    benchmark.pedantic(lambda: call(*arguments, **options), rounds=5, warmup_rounds=1)
