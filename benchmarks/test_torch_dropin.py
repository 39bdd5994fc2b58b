"""pytest-benchmark: ``fastxent.torch`` against PyTorch's own losses, through autograd.

Forward and backward of each drop-in (``loss.backward()`` into a leaf tensor) beside
PyTorch's function on the same tensors, grouped by loss and shape; ``fastxent bench
--peers fastxent,torch,fastxent.torch`` prints the cross-entropy ratios. Skipped as a
whole without PyTorch.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")
F = torch.nn.functional
fxt = pytest.importorskip("fastxent.torch")

CROSS_ENTROPY_SHAPES = [(4096, 32000), (1024, 128256), (8192, 1000), (64, 1000)]
BINARY_SHAPES = [(8192, 1000), (64, 1000)]
LINEAR_SHAPES = [(1024, 512, 32000), (64, 512, 32000)]
LIBRARIES = ["torch", "fastxent.torch"]


def forward_backward(loss_of, *leaves):
    """A call of ``loss_of()`` and its backward into fresh gradients of ``leaves``."""

    def call():
        for leaf in leaves:
            leaf.grad = None
        loss = loss_of()
        loss.backward()
        return loss

    return call


def run(benchmark, group, call, large):
    torch.set_num_threads(2)
    call()  # warm-up: compilation, caches
    benchmark.group = group
    benchmark.pedantic(
        call, rounds=5 if large else 9, iterations=1 if large else 20, warmup_rounds=1
    )


@pytest.mark.parametrize("library", LIBRARIES)
@pytest.mark.parametrize("shape", CROSS_ENTROPY_SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_cross_entropy(benchmark, library, shape):
    rng = np.random.default_rng(0)
    logits = torch.from_numpy((2 * rng.standard_normal(shape)).astype(np.float32))
    labels = torch.from_numpy(rng.integers(0, shape[1], shape[0]))
    function = fxt.cross_entropy if library == "fastxent.torch" else F.cross_entropy
    logits.requires_grad_(True)
    call = forward_backward(lambda: function(logits, labels), logits)
    run(
        benchmark,
        f"cross_entropy {shape[0]}x{shape[1]} forward+backward",
        call,
        logits.numel() > 2**22,
    )


@pytest.mark.parametrize("library", LIBRARIES)
@pytest.mark.parametrize("shape", BINARY_SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_binary_cross_entropy_with_logits(benchmark, library, shape):
    rng = np.random.default_rng(0)
    logits = torch.from_numpy((2 * rng.standard_normal(shape)).astype(np.float32))
    target = torch.from_numpy((rng.random(shape) < 0.1).astype(np.float32))
    function = (
        fxt.binary_cross_entropy_with_logits
        if library == "fastxent.torch"
        else F.binary_cross_entropy_with_logits
    )
    logits.requires_grad_(True)
    call = forward_backward(lambda: function(logits, target), logits)
    run(
        benchmark,
        f"bce_with_logits {shape[0]}x{shape[1]} forward+backward",
        call,
        logits.numel() > 2**22,
    )


@pytest.mark.parametrize("library", [*LIBRARIES, "torch chunked"])
@pytest.mark.parametrize("shape", LINEAR_SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_linear_cross_entropy(benchmark, library, shape):
    n_rows, hidden, n_classes = shape
    rng = np.random.default_rng(0)
    h = torch.from_numpy(rng.standard_normal((n_rows, hidden)).astype(np.float32))
    w = torch.from_numpy(
        (rng.standard_normal((n_classes, hidden)) / math.sqrt(hidden)).astype(np.float32)
    )
    labels = torch.from_numpy(rng.integers(0, n_classes, n_rows))
    options = {}
    if library == "torch chunked":
        options["options"] = torch.nn.LinearCrossEntropyOptions()
    function = fxt.linear_cross_entropy if library == "fastxent.torch" else F.linear_cross_entropy
    h.requires_grad_(True)
    w.requires_grad_(True)
    call = forward_backward(lambda: function(h, w, labels, **options), h, w)
    run(benchmark, f"linear_cross_entropy {'x'.join(map(str, shape))} forward+backward", call, True)
