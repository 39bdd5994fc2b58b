"""``fastxent.torch``: PyTorch's cross-entropy by fastxent, under autograd and torch.compile.

Parity with ``torch.nn.functional.cross_entropy`` (loss and autograd gradient) over its
options; ``torch.library.opcheck`` and ``gradcheck`` of the custom operators; a model
using the loss under ``torch.compile``; a real training loop whose losses follow
PyTorch's step by step; bad input.
"""

from __future__ import annotations

import pathlib
import subprocess
import sys

import numpy as np
import pytest
from conftest import import_torch

torch = import_torch()
F = torch.nn.functional

import fastxent.torch as fxt  # noqa: E402
from fastxent.torch import _cross_entropy_ops as _ops  # noqa: E402

REDUCTIONS = ["mean", "sum", "none"]


def both(logits, target, **options):
    """Loss and gradient of PyTorch's cross_entropy and of fastxent's, same inputs."""
    results = []
    for function in (F.cross_entropy, fxt.cross_entropy):
        x = logits.detach().clone().requires_grad_(True)
        loss = function(x, target, **options)
        (loss.sum() if loss.dim() else loss).backward()
        results.append((loss.detach(), x.grad))
    return results


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("smoothing", [0.0, 0.1])
@pytest.mark.parametrize("shape", [(7, 11), (11,), (3, 5, 4, 2)], ids=["N,C", "C", "N,C,d1,d2"])
@pytest.mark.parametrize("kind", ["labels", "probabilities"])
def test_matches_torch(dtype, reduction, weighted, smoothing, shape, kind):
    generator = torch.Generator().manual_seed(0)
    logits = 3 * torch.randn(shape, generator=generator, dtype=dtype)
    n_classes = shape[1] if len(shape) > 1 else shape[0]
    batch = (shape[0], *shape[2:]) if len(shape) > 1 else ()
    if kind == "labels":
        target = torch.randint(0, n_classes, batch, generator=generator)
        if target.dim():
            target.view(-1)[0] = -100
    else:
        target = torch.softmax(
            torch.randn(shape, generator=generator, dtype=dtype), dim=min(1, len(shape) - 1)
        )
    weight = torch.rand(n_classes, generator=generator, dtype=dtype) + 0.5 if weighted else None
    options = {"weight": weight, "reduction": reduction, "label_smoothing": smoothing}
    (expected, expected_grad), (loss, grad) = both(logits, target, **options)
    tolerance = (
        {"rtol": 1e-5, "atol": 1e-6} if dtype == torch.float32 else {"rtol": 1e-12, "atol": 1e-14}
    )
    assert loss.dtype == dtype and loss.shape == expected.shape
    torch.testing.assert_close(loss, expected, **tolerance)
    torch.testing.assert_close(grad, expected_grad, **tolerance)


def test_empty_and_all_ignored_batches():
    for target in (torch.full((4,), -100), torch.zeros(0, dtype=torch.long)):
        logits = torch.randn(len(target), 5, dtype=torch.float64)
        for reduction in REDUCTIONS:
            (expected, expected_grad), (loss, grad) = both(logits, target, reduction=reduction)
            torch.testing.assert_close(loss, expected, equal_nan=True)
            torch.testing.assert_close(grad, expected_grad)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precisions_are_computed_in_float32(dtype):
    logits = torch.randn(6, 9).to(dtype)
    target = torch.randint(0, 9, (6,))
    (expected, expected_grad), (loss, grad) = both(logits.float(), target)
    x = logits.clone().requires_grad_(True)
    loss = fxt.cross_entropy(x, target)
    loss.backward()
    assert loss.dtype == dtype and x.grad.dtype == dtype
    torch.testing.assert_close(loss.float(), expected.to(dtype).float())
    torch.testing.assert_close(x.grad.float(), expected_grad.to(dtype).float())


def test_non_contiguous_and_channels_last():
    generator = torch.Generator().manual_seed(1)
    logits = torch.randn(2, 5, 4, 3, generator=generator).to(memory_format=torch.channels_last)
    target = torch.randint(0, 5, (2, 4, 3), generator=generator)
    (expected, expected_grad), (loss, grad) = both(logits, target)
    torch.testing.assert_close(loss, expected)
    torch.testing.assert_close(grad, expected_grad)
    transposed = torch.randn(9, 6, generator=generator).t()  # (6, 9), not contiguous
    (expected, expected_grad), (loss, grad) = both(transposed, torch.randint(0, 9, (6,)))
    torch.testing.assert_close(loss, expected)
    torch.testing.assert_close(grad, expected_grad)


def test_z_loss_and_softcap_match_a_plain_formula():
    generator = torch.Generator().manual_seed(2)
    logits = 10 * torch.randn(8, 20, generator=generator, dtype=torch.float64)
    target = torch.randint(0, 20, (8,), generator=generator)
    x = logits.clone().requires_grad_(True)
    capped = 5.0 * torch.tanh(x / 5.0)
    expected = F.cross_entropy(capped, target) + 1e-2 * (torch.logsumexp(capped, 1) ** 2).mean()
    expected.backward()
    y = logits.clone().requires_grad_(True)
    loss = fxt.cross_entropy(y, target, z_loss=1e-2, softcap=5.0)
    loss.backward()
    torch.testing.assert_close(loss, expected.detach(), rtol=1e-13, atol=0)
    torch.testing.assert_close(y.grad, x.grad, rtol=1e-12, atol=1e-15)


# PyTorch's fake-tensor machinery reads `.grad` of non-leaf inputs and hides the
# resulting warning with a filter that pytest's `error` filter overrides.
@pytest.mark.filterwarnings("ignore:The .grad attribute of a Tensor that is not a leaf")
def test_opcheck():
    generator = torch.Generator().manual_seed(3)
    logits = torch.randn(5, 7, generator=generator, dtype=torch.float64, requires_grad=True)
    target = torch.randint(0, 7, (5,), generator=generator)
    weight = torch.rand(7, generator=generator, dtype=torch.float64)
    # The forward-only operator serves calls that need no gradient: tensors without grad.
    for op, x in (
        (_ops.cross_entropy_with_grad, logits),
        (_ops.cross_entropy_forward, logits.detach()),
    ):
        for reduction in REDUCTIONS:
            args = (x, target, weight, -100, reduction, 0.1, 1e-3, 0.0)
            torch.library.opcheck(op, args)


def test_gradcheck():
    generator = torch.Generator().manual_seed(4)
    logits = torch.randn(4, 6, generator=generator, dtype=torch.float64, requires_grad=True)
    target = torch.randint(0, 6, (4,), generator=generator)
    for reduction in REDUCTIONS:
        assert torch.autograd.gradcheck(
            lambda x, reduction=reduction: fxt.cross_entropy(
                x, target, reduction=reduction, label_smoothing=0.1, z_loss=1e-2, softcap=3.0
            ),
            (logits,),
        )


def test_double_backward_is_refused():
    x = torch.randn(3, 4, dtype=torch.float64, requires_grad=True)
    loss = fxt.cross_entropy(x, torch.tensor([0, 1, 2]))
    with pytest.raises(RuntimeError, match="double backward"):
        torch.autograd.grad(loss, x, create_graph=True)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # inside PyTorch's inductor
def test_compiled_model_has_no_graph_break():
    torch.manual_seed(5)
    model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 5))
    loss_function = fxt.CrossEntropyLoss(label_smoothing=0.05)

    def step(x, y):
        return loss_function(model(x), y)

    x, y = torch.randn(12, 8), torch.randint(0, 5, (12,))
    expected = F.cross_entropy(model(x), y, label_smoothing=0.05)
    explanation = torch._dynamo.explain(step)(x, y)
    assert explanation.graph_break_count == 0, explanation.break_reasons
    compiled = torch.compile(step, fullgraph=True)
    loss = compiled(x, y)
    loss.backward()
    torch.testing.assert_close(loss, expected)
    assert all(p.grad is not None for p in model.parameters())


def test_training_loop_follows_pytorch():
    """A 2-layer MLP, 200 SGD steps in float64: the same loss at every step."""
    generator = torch.Generator().manual_seed(6)
    x = torch.randn(256, 10, generator=generator, dtype=torch.float64)
    y = (x[:, :3].sum(1) > 0).long() + (x[:, 3] > 1).long()

    def train(loss_function):
        torch.manual_seed(7)
        model = torch.nn.Sequential(
            torch.nn.Linear(10, 32), torch.nn.Tanh(), torch.nn.Linear(32, 3)
        ).double()
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
        losses = []
        for _ in range(200):
            optimizer.zero_grad()
            loss = loss_function(model(x), y)
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
        return np.array(losses)

    expected = train(torch.nn.CrossEntropyLoss())
    got = train(fxt.CrossEntropyLoss())
    np.testing.assert_allclose(got, expected, rtol=1e-10, atol=0)
    assert got[-1] < 0.5 * got[0]  # it trained


@pytest.mark.parametrize(
    "call, error, message",
    [
        (
            lambda: fxt.cross_entropy(torch.randn(2, 3), torch.tensor([0, 1]), size_average=True),
            ValueError,
            "size_average and reduce",
        ),
        (
            lambda: fxt.cross_entropy(
                torch.randn(2, 3), torch.tensor([0, 1]), None, None, -100, False
            ),
            ValueError,
            "size_average and reduce",
        ),
        (
            lambda: fxt.cross_entropy(torch.randn(2, 3, device="meta"), torch.tensor([0, 1])),
            ValueError,
            "on the CPU",
        ),
        (
            lambda: fxt.cross_entropy(torch.randn(2, 3), torch.tensor([0, 3])),
            ValueError,
            r"target\[1\] = 3",
        ),
        (
            lambda: fxt.cross_entropy(torch.randn(2, 3), torch.tensor([0, 1]), softcap=0.0),
            ValueError,
            "softcap must be finite and > 0",
        ),
        (
            lambda: fxt.cross_entropy(torch.randn(2, 3), torch.tensor([0, 1]), reduction="avg"),
            ValueError,
            "reduction",
        ),
        (lambda: fxt.CrossEntropyLoss(reduce=False), ValueError, "size_average and reduce"),
    ],
)
def test_bad_input(call, error, message):
    with pytest.raises(error, match=message):
        call()


def test_positional_order_is_pytorchs():
    import inspect

    ours = list(inspect.signature(fxt.cross_entropy).parameters)
    theirs = list(inspect.signature(F.cross_entropy).parameters)
    assert ours[: len(theirs)] == theirs
    ours = list(inspect.signature(fxt.CrossEntropyLoss).parameters)
    theirs = list(inspect.signature(torch.nn.CrossEntropyLoss).parameters)
    assert ours[: len(theirs)] == theirs


def test_import_without_torch_says_how_to_install():
    code = (
        "import sys; sys.modules['torch'] = None\n"
        "try:\n    import fastxent.torch\nexcept ImportError as e:\n    print(e)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert "pip install 'fastxent[torch]'" in done.stdout, done.stderr


@pytest.mark.parametrize("function", ["cross_entropy", "binary", "linear"])
def test_retained_graph_and_scaled_upstream_gradients(function):
    """Backward twice through one graph, scaled once: the saved gradient is never altered."""
    generator = torch.Generator().manual_seed(8)
    x = torch.randn(6, 5, generator=generator, dtype=torch.float64)
    w = torch.randn(7, 5, generator=generator, dtype=torch.float64)
    calls = {
        "cross_entropy": (F.cross_entropy, fxt.cross_entropy, (torch.tensor([0, 1, 2, 3, 4, 0]),)),
        "binary": (
            F.binary_cross_entropy_with_logits,
            fxt.binary_cross_entropy_with_logits,
            (torch.rand(6, 5, generator=generator, dtype=torch.float64),),
        ),
        "linear": (F.linear_cross_entropy, fxt.linear_cross_entropy, (w, torch.arange(6))),
    }
    theirs, ours, rest = calls[function]
    grads = []
    for loss_function in (theirs, ours):
        leaf = x.clone().requires_grad_(True)
        arguments = (leaf, *rest) if function != "linear" else (leaf, rest[0], rest[1])
        loss = loss_function(*arguments)
        (0.5 * loss).backward(retain_graph=True)
        loss.backward()
        grads.append(leaf.grad)
    torch.testing.assert_close(grads[1], grads[0], rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("shape", [(3, 5), (1024, 2048)], ids=["small", "8 MiB"])
def test_gradient_tensors_are_plain_tensors(shape):
    """Large gradients are advised into huge pages; small or large, a tensor like any."""
    from fastxent.torch import _memory

    tensor = _memory.empty(shape, torch.float32)
    assert tensor.shape == shape and tensor.dtype == torch.float32 and tensor.is_contiguous()
    tensor.fill_(2.0)
    assert float(tensor.sum()) == 2.0 * tensor.numel()
    huge_pages = pathlib.Path("/sys/kernel/mm/transparent_hugepage/enabled").exists()
    if sys.platform.startswith("linux") and huge_pages:  # a kernel with them accepts the advice
        assert _memory.advise_huge_pages(tensor.data_ptr(), tensor.numel() * 4) == (
            tensor.numel() * 4 >= 4096
        )
