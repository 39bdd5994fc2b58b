"""pytest-benchmark: binary (sigmoid) cross-entropy from logits against its peers.

fastxent's forward and forward+grad beside the NumPy reference and PyTorch's
``binary_cross_entropy_with_logits`` (forward, and forward+backward through autograd) on a
multi-label batch, grouped by shape and operation.
"""

from __future__ import annotations

import numpy as np
import pytest

import fastxent
from fastxent import reference

SHAPES = [(8192, 1000), (64, 1000)]


def calls(x, z):
    """The peers' forward and forward+grad on logits ``x`` and targets ``z``."""
    result = {
        "fastxent": {
            "forward": lambda: fastxent.binary_cross_entropy(x, z),
            "forward+grad": lambda: fastxent.binary_cross_entropy_with_grad(x, z),
        },
        "reference": {
            "forward": lambda: reference.binary_cross_entropy(x, z),
            "forward+grad": lambda: reference.binary_cross_entropy_with_grad(x, z),
        },
    }
    try:
        import torch
    except ImportError:
        return result
    torch.set_num_threads(2)
    logits, target = torch.from_numpy(x), torch.from_numpy(z)
    leaf = logits.clone().requires_grad_(True)
    function = torch.nn.functional.binary_cross_entropy_with_logits

    def forward_backward():
        leaf.grad = None
        function(leaf, target).backward()

    result["torch"] = {
        "forward": lambda: function(logits, target),
        "forward+grad": forward_backward,
    }
    return result


@pytest.mark.parametrize("operation", ["forward", "forward+grad"])
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("peer", ["fastxent", "reference", "torch"])
def test_binary_cross_entropy(benchmark, peer, shape, operation):
    rng = np.random.default_rng(0)
    x = (2 * rng.standard_normal(shape)).astype(np.float32)
    z = (rng.random(shape) < 0.1).astype(np.float32)
    peers = calls(x, z)
    if peer not in peers:
        pytest.skip(f"{peer} is not installed")
    call = peers[peer][operation]
    call()
    benchmark.group = f"binary_cross_entropy {shape[0]}x{shape[1]} float32 {operation}"
    benchmark.pedantic(call, rounds=7, iterations=1 if x.size > 2**20 else 20, warmup_rounds=1)
