"""pytest-benchmark: softmax, log_softmax and logsumexp against SciPy and PyTorch.

One class axis (the common call) at a large-vocabulary and a small-batch shape, and a
reduction over two non-adjacent axes (``axis=(0, 2)``), which fastxent runs through the
same fused kernels after one copy into groups. Run with ``python -m pytest benchmarks``.
"""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
import scipy.special

import fastxent

FUNCTIONS = ["softmax", "log_softmax", "logsumexp"]
HAS_TORCH = importlib.util.find_spec("torch") is not None
PEERS = ["fastxent", "scipy"] + (["torch"] if HAS_TORCH else [])
CASES = {"4096x32000": ((4096, 32000), -1), "64x1000": ((64, 1000), -1)}
CASES["256x64x256-axis(0,2)"] = ((256, 64, 256), (0, 2))


def _call(peer: str, name: str, x: np.ndarray, axis):
    if peer == "fastxent":
        function = getattr(fastxent, name)
        return lambda: function(x, axis)
    if peer == "scipy":
        function = getattr(scipy.special, name)
        return lambda: function(x, axis=axis)
    import torch

    torch.set_num_threads(2)
    tensor = torch.from_numpy(x)
    dim = axis if isinstance(axis, int) else tuple(axis)
    if name == "logsumexp":
        return lambda: torch.logsumexp(tensor, dim=dim)
    if isinstance(dim, tuple):  # torch's softmax takes one dim: flatten the group first
        moved = tensor.movedim(dim, (-2, -1))
        function = getattr(torch, name)
        return lambda: function(moved.reshape(*moved.shape[:-2], -1), dim=-1)
    function = getattr(torch, name)
    return lambda: function(tensor, dim=dim)


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("name", FUNCTIONS)
@pytest.mark.parametrize("peer", PEERS)
def test_softmax_family(benchmark, peer, name, case):
    shape, axis = CASES[case]
    x = (np.random.default_rng(0).standard_normal(shape) * 2.0).astype(np.float32)
    call = _call(peer, name, x, axis)
    call()  # warm-up: JIT compilation and caches
    benchmark.group = f"{name} {case} float32"
    large = x.size >= 1 << 22
    benchmark.pedantic(call, rounds=5 if large else 9, iterations=1 if large else 50)
