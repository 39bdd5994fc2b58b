"""``fastxent.torch.binary_cross_entropy_with_logits`` and ``BCEWithLogitsLoss``.

Parity with PyTorch's (loss and autograd gradient, under a random upstream gradient) over
weights and ``pos_weight`` of every broadcast, reductions and dtypes; opcheck, gradcheck,
torch.compile; bad input.
"""

from __future__ import annotations

import inspect

import pytest
from conftest import import_torch

torch = import_torch()
F = torch.nn.functional

import fastxent.torch as fxt  # noqa: E402
from fastxent.torch import _binary_ops  # noqa: E402

REDUCTIONS = ["mean", "sum", "none"]
SHAPES = {"N,C": (7, 5), "N,C,d": (3, 4, 2), "C": (6,)}


def factor(kind, shape, generator, dtype):
    """None, a full elementwise factor, one per class (last axis), or one per first axis."""
    if kind == "none":
        return None
    sizes = {
        "full": shape,
        "last": shape[-1:],
        "first": shape[:1] + (1,) * (len(shape) - 1),
    }[kind]
    return 3 * torch.rand(sizes, generator=generator, dtype=dtype)


def both(function_kwargs, logits, target, upstream=None):
    results = []
    for function in (F.binary_cross_entropy_with_logits, fxt.binary_cross_entropy_with_logits):
        x = logits.detach().clone().requires_grad_(True)
        loss = function(x, target, **function_kwargs)
        loss.backward(torch.ones_like(loss) if upstream is None else upstream)
        results.append((loss.detach(), x.grad))
    return results


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("weight_kind", ["none", "full", "last", "first"])
@pytest.mark.parametrize("pos_weight_kind", ["none", "last", "first"])
@pytest.mark.parametrize("shape", list(SHAPES.values()), ids=list(SHAPES))
def test_matches_torch(dtype, reduction, weight_kind, pos_weight_kind, shape):
    generator = torch.Generator().manual_seed(0)
    logits = 4 * torch.randn(shape, generator=generator, dtype=dtype)
    target = torch.rand(shape, generator=generator, dtype=dtype)
    kwargs = {
        "weight": factor(weight_kind, shape, generator, dtype),
        "pos_weight": factor(pos_weight_kind, shape, generator, dtype),
        "reduction": reduction,
    }
    upstream = torch.randn(shape if reduction == "none" else (), generator=generator, dtype=dtype)
    (expected, expected_grad), (loss, grad) = both(kwargs, logits, target, upstream)
    tolerance = (
        {"rtol": 1e-5, "atol": 1e-6} if dtype == torch.float32 else {"rtol": 1e-12, "atol": 1e-14}
    )
    assert loss.dtype == dtype and loss.shape == expected.shape
    torch.testing.assert_close(loss, expected, **tolerance)
    torch.testing.assert_close(grad, expected_grad, **tolerance)


def test_module_matches_torch():
    generator = torch.Generator().manual_seed(1)
    logits = torch.randn(5, 3, generator=generator)
    target = (torch.rand(5, 3, generator=generator) > 0.5).float()
    weight, pos_weight = torch.rand(3, generator=generator), torch.tensor([1.0, 2.0, 0.5])
    for reduction in REDUCTIONS:
        ours = fxt.BCEWithLogitsLoss(weight, reduction=reduction, pos_weight=pos_weight)
        theirs = torch.nn.BCEWithLogitsLoss(weight, reduction=reduction, pos_weight=pos_weight)
        torch.testing.assert_close(ours(logits, target), theirs(logits, target))
    assert set(dict(ours.named_buffers())) == {"weight", "pos_weight"}


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precisions_are_computed_in_float32(dtype):
    logits, target = torch.randn(6, 4).to(dtype), torch.rand(6, 4).to(dtype)
    (expected, expected_grad), _ = both({}, logits.float(), target.float())
    x = logits.clone().requires_grad_(True)
    loss = fxt.binary_cross_entropy_with_logits(x, target)
    loss.backward()
    assert loss.dtype == dtype and x.grad.dtype == dtype
    torch.testing.assert_close(loss.float(), expected.to(dtype).float())
    torch.testing.assert_close(x.grad.float(), expected_grad.to(dtype).float())


def test_result_dtype_is_pytorchs_promotion():
    """float32 logits and float64 targets give a float64 loss, as in PyTorch."""
    logits, target = torch.randn(4, 3), torch.rand(4, 3, dtype=torch.float64)
    (expected, expected_grad), (loss, grad) = both({}, logits, target)
    assert loss.dtype == expected.dtype == torch.float64
    assert grad.dtype == expected_grad.dtype == torch.float32
    torch.testing.assert_close(loss, expected)
    torch.testing.assert_close(grad, expected_grad)


def test_non_contiguous_and_channels_last():
    generator = torch.Generator().manual_seed(2)
    logits = torch.randn(2, 3, 4, 5, generator=generator).to(memory_format=torch.channels_last)
    target = torch.rand(2, 3, 4, 5, generator=generator)
    (expected, expected_grad), (loss, grad) = both({}, logits, target)
    torch.testing.assert_close(loss, expected)
    torch.testing.assert_close(grad, expected_grad)
    (expected, expected_grad), (loss, grad) = both(
        {}, logits[:, :, ::2].transpose(0, 3), target[:, :, ::2].transpose(0, 3)
    )
    torch.testing.assert_close(loss, expected)
    torch.testing.assert_close(grad, expected_grad)


# PyTorch's fake-tensor machinery reads `.grad` of non-leaf inputs and hides the
# resulting warning with a filter that pytest's `error` filter overrides.
@pytest.mark.filterwarnings("ignore:The .grad attribute of a Tensor that is not a leaf")
def test_opcheck():
    generator = torch.Generator().manual_seed(3)
    x = torch.randn(5, 4, generator=generator, dtype=torch.float64, requires_grad=True)
    target = torch.rand(5, 4, generator=generator, dtype=torch.float64)
    weight = torch.rand(5, 1, generator=generator, dtype=torch.float64)
    pos_weight = torch.rand(4, generator=generator, dtype=torch.float64)
    for op, logits in ((_binary_ops.binary_with_grad, x), (_binary_ops.binary_forward, x.detach())):
        for reduction in REDUCTIONS:
            torch.library.opcheck(op, (logits, target, weight, pos_weight, reduction))


def test_gradcheck():
    generator = torch.Generator().manual_seed(4)
    x = torch.randn(4, 3, generator=generator, dtype=torch.float64, requires_grad=True)
    target = torch.rand(4, 3, generator=generator, dtype=torch.float64)
    pos_weight = torch.tensor([0.5, 2.0, 1.0], dtype=torch.float64)
    for reduction in REDUCTIONS:
        assert torch.autograd.gradcheck(
            lambda x, reduction=reduction: fxt.binary_cross_entropy_with_logits(
                x, target, reduction=reduction, pos_weight=pos_weight
            ),
            (x,),
        )


def test_double_backward_is_refused():
    x = torch.randn(3, 4, dtype=torch.float64, requires_grad=True)
    loss = fxt.binary_cross_entropy_with_logits(x, torch.rand(3, 4, dtype=torch.float64))
    with pytest.raises(RuntimeError, match="double backward"):
        torch.autograd.grad(loss, x, create_graph=True)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # inside PyTorch's inductor
def test_compiled_multilabel_model_has_no_graph_break():
    torch.manual_seed(5)
    model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 4))
    loss_function = fxt.BCEWithLogitsLoss(pos_weight=torch.tensor([1.0, 2.0, 3.0, 0.5]))

    def step(x, y):
        return loss_function(model(x), y)

    x, y = torch.randn(12, 8), (torch.rand(12, 4) > 0.5).float()
    expected = torch.nn.BCEWithLogitsLoss(pos_weight=loss_function.pos_weight)(model(x), y)
    explanation = torch._dynamo.explain(step)(x, y)
    assert explanation.graph_break_count == 0, explanation.break_reasons
    loss = torch.compile(step, fullgraph=True)(x, y)
    loss.backward()
    torch.testing.assert_close(loss, expected)
    assert all(p.grad is not None for p in model.parameters())


@pytest.mark.parametrize(
    "call, error, message",
    [
        (
            lambda: fxt.binary_cross_entropy_with_logits(torch.randn(2), torch.rand(2), None, True),
            ValueError,
            "size_average and reduce",
        ),
        (lambda: fxt.BCEWithLogitsLoss(reduce=True), ValueError, "size_average and reduce"),
        (
            lambda: fxt.binary_cross_entropy_with_logits(
                torch.randn(2, device="meta"), torch.rand(2)
            ),
            ValueError,
            "on the CPU",
        ),
        (
            lambda: fxt.binary_cross_entropy_with_logits(torch.randn(2, 3), torch.rand(3, 2)),
            ValueError,
            "shape",
        ),
        (
            lambda: fxt.binary_cross_entropy_with_logits(
                torch.randn(2, 3), torch.rand(2, 3), pos_weight=torch.ones(2)
            ),
            ValueError,
            "pos_weight",
        ),
        (
            lambda: fxt.binary_cross_entropy_with_logits(
                torch.randn(2, 3), torch.rand(2, 3, requires_grad=True)
            ),
            ValueError,
            "does not differentiate with respect to target",
        ),
    ],
)
def test_bad_input(call, error, message):
    with pytest.raises(error, match=message):
        call()


def test_signatures_are_pytorchs():
    for ours, theirs in (
        (fxt.binary_cross_entropy_with_logits, F.binary_cross_entropy_with_logits),
        (fxt.BCEWithLogitsLoss, torch.nn.BCEWithLogitsLoss),
    ):
        mine = inspect.signature(ours).parameters
        pytorchs = inspect.signature(theirs).parameters
        assert [(p.name, p.kind, p.default) for p in mine.values()][: len(pytorchs)] == [
            (p.name, p.kind, p.default) for p in pytorchs.values()
        ]
