"""``fastxent.torch.linear_cross_entropy`` and ``LinearCrossEntropyLoss``.

Parity with PyTorch's ``F.linear_cross_entropy`` (loss and the gradients of the input,
the weight and the bias, under a random upstream gradient) over its options and with
chunking forced; z-loss and soft-capping against a plain formula; opcheck, gradcheck,
torch.compile and a short training loop; bad input.
"""

from __future__ import annotations

import inspect

import numpy as np
import pytest
from conftest import import_torch

torch = import_torch()
F = torch.nn.functional

import fastxent.torch as fxt  # noqa: E402
from fastxent.torch import _linear_ops  # noqa: E402

REDUCTIONS = ["mean", "sum", "none"]
N_ROWS, HIDDEN, N_CLASSES = 9, 6, 37
SMALL_MEMORY = 2**16  # forces chunks of rows and blocks of classes on these shapes


def make_case(generator, dtype, kind, batched=True, bias=True):
    shape = (N_ROWS, HIDDEN) if batched else (HIDDEN,)
    x = torch.randn(shape, generator=generator, dtype=dtype)
    w = 2 * torch.randn(N_CLASSES, HIDDEN, generator=generator, dtype=dtype) / HIDDEN**0.5
    b = torch.randn(N_CLASSES, generator=generator, dtype=dtype) if bias else None
    if kind == "labels":
        target = torch.randint(0, N_CLASSES, shape[:-1], generator=generator)
        if batched:
            target[[1, 4]] = -100
    else:
        target = torch.softmax(
            torch.randn(*shape[:-1], N_CLASSES, generator=generator, dtype=dtype), -1
        )
    return x, w, b, target


def run(function, x, w, b, target, upstream, **kwargs):
    """The loss and the gradients of (x, w, b) after ``loss.backward(upstream)``."""
    leaves = [t.detach().clone().requires_grad_(True) if t is not None else None for t in (x, w, b)]
    loss = function(leaves[0], leaves[1], target, linear_bias=leaves[2], **kwargs)
    loss.backward(upstream)
    return [loss.detach()] + [t.grad for t in leaves if t is not None]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("options", [{}, {"label_smoothing": 0.1, "weighted": True}])
@pytest.mark.parametrize("kind", ["labels", "probabilities"])
@pytest.mark.parametrize("batched", [True, False], ids=["N,H", "H"])
@pytest.mark.parametrize("bias", [True, False], ids=["bias", "no-bias"])
@pytest.mark.parametrize("memory", [None, SMALL_MEMORY], ids=["whole", "chunked"])
def test_matches_torch(dtype, reduction, options, kind, batched, bias, memory):
    generator = torch.Generator().manual_seed(0)
    x, w, b, target = make_case(generator, dtype, kind, batched, bias)
    kwargs = {"reduction": reduction, **options}
    if kwargs.pop("weighted", False):
        kwargs["weight"] = torch.rand(N_CLASSES, generator=generator, dtype=dtype) + 0.5
    loss_shape = (N_ROWS,) if reduction == "none" and batched else ()
    upstream = torch.randn(loss_shape, generator=generator, dtype=dtype)
    expected = run(F.linear_cross_entropy, x, w, b, target, upstream, **kwargs)
    extra = {} if memory is None else {"working_memory": memory}
    got = run(fxt.linear_cross_entropy, x, w, b, target, upstream, **kwargs, **extra)
    tolerance = (
        {"rtol": 2e-5, "atol": 2e-6} if dtype == torch.float32 else {"rtol": 1e-12, "atol": 1e-14}
    )
    for actual, wanted in zip(got, expected, strict=True):
        assert actual.dtype == wanted.dtype and actual.shape == wanted.shape
        torch.testing.assert_close(actual, wanted, **tolerance)


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_z_loss_and_softcap_match_a_plain_formula(reduction):
    generator = torch.Generator().manual_seed(1)
    x, w, b, target = make_case(generator, torch.float64, "labels")
    w = 5 * w  # logits of tens: the cap matters
    upstream = torch.randn(
        (N_ROWS,) if reduction == "none" else (), generator=generator, dtype=torch.float64
    )

    def plain(x, w, target, linear_bias):
        capped = 4.0 * torch.tanh((x @ w.T + linear_bias) / 4.0)
        losses = F.cross_entropy(capped, target, reduction="none")
        losses = losses + torch.where(target == -100, 0.0, 1e-2 * torch.logsumexp(capped, 1) ** 2)
        counted = (target != -100).sum()
        return {"none": losses, "sum": losses.sum(), "mean": losses.sum() / counted}[reduction]

    expected = run(
        lambda x, w, t, linear_bias: plain(x, w, t, linear_bias), x, w, b, target, upstream
    )
    got = run(
        fxt.linear_cross_entropy, x, w, b, target, upstream, reduction=reduction, z_loss=1e-2,
        softcap=4.0, working_memory=SMALL_MEMORY,
    )  # fmt: skip
    for actual, wanted in zip(got, expected, strict=True):
        torch.testing.assert_close(actual, wanted, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precisions_are_computed_in_float32(dtype):
    generator = torch.Generator().manual_seed(2)
    x, w, b, target = make_case(generator, torch.float32, "labels")
    x, w, b = x.to(dtype), w.to(dtype), b.to(dtype)
    expected = run(F.linear_cross_entropy, x.float(), w.float(), b.float(), target, None)
    got = run(fxt.linear_cross_entropy, x, w, b, target, None)
    for actual, wanted in zip(got, expected, strict=True):
        assert actual.dtype == dtype
        torch.testing.assert_close(actual.float(), wanted.to(dtype).float())


def test_module_matches_torch():
    torch.manual_seed(3)
    for bias in (False, True):
        theirs = torch.nn.LinearCrossEntropyLoss(6, 11, bias=bias, label_smoothing=0.1).double()
        ours = fxt.LinearCrossEntropyLoss(
            6, 11, bias=bias, label_smoothing=0.1, dtype=torch.float64
        )
        ours.load_state_dict(theirs.state_dict())  # the same parameters, under the same names
        x = torch.randn(8, 6, dtype=torch.float64)
        y = torch.randint(0, 11, (8,))
        expected, got = theirs(x, y), ours(x, y)
        expected.backward()
        got.backward()
        torch.testing.assert_close(got, expected)
        for mine, pytorchs in zip(ours.parameters(), theirs.parameters(), strict=True):
            torch.testing.assert_close(mine.grad, pytorchs.grad)


# PyTorch's fake-tensor machinery reads `.grad` of non-leaf inputs and hides the
# resulting warning with a filter that pytest's `error` filter overrides.
@pytest.mark.filterwarnings("ignore:The .grad attribute of a Tensor that is not a leaf")
def test_opcheck():
    generator = torch.Generator().manual_seed(4)
    x, w, b, target = make_case(generator, torch.float64, "labels")
    weight = torch.rand(N_CLASSES, generator=generator, dtype=torch.float64)
    leaves = [t.requires_grad_(True) for t in (x, w, b)]
    for reduction in REDUCTIONS:
        options = (-100, reduction, 0.1, 1e-3, 0.0, SMALL_MEMORY)
        torch.library.opcheck(
            _linear_ops.linear_forward, (*leaves[:2], target, leaves[2], weight, *options)
        )
        if reduction != "none":  # per-row losses take their gradients from a second sweep
            torch.library.opcheck(
                _linear_ops.linear_with_grad, (*leaves[:2], target, leaves[2], weight, *options)
            )
        upstream = torch.randn((N_ROWS,) if reduction == "none" else (), dtype=torch.float64)
        torch.library.opcheck(
            _linear_ops.linear_backward,
            (upstream, x.detach(), w.detach(), target, b.detach(), weight, *options),
        )


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_gradcheck(reduction):
    generator = torch.Generator().manual_seed(5)
    x, w, b, target = make_case(generator, torch.float64, "labels")
    leaves = tuple(t.requires_grad_(True) for t in (x, w, b))
    assert torch.autograd.gradcheck(
        lambda x, w, b: fxt.linear_cross_entropy(
            x,
            w,
            target,
            linear_bias=b,
            reduction=reduction,
            label_smoothing=0.1,
            z_loss=1e-2,
            softcap=3.0,
            working_memory=SMALL_MEMORY,
        ),  # fmt: skip
        leaves,
    )


def test_double_backward_is_refused():
    generator = torch.Generator().manual_seed(6)
    x, w, b, target = make_case(generator, torch.float64, "labels")
    for reduction in ("mean", "none"):
        x.requires_grad_(True)
        loss = fxt.linear_cross_entropy(x, w, target, reduction=reduction).sum()
        with pytest.raises(RuntimeError, match="double backward"):
            torch.autograd.grad(loss, x, create_graph=True)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # inside PyTorch's inductor
@pytest.mark.parametrize("reduction", ["mean", "none"])
def test_compiled_language_model_head_has_no_graph_break(reduction):
    torch.manual_seed(7)
    body = torch.nn.Sequential(torch.nn.Embedding(50, 16), torch.nn.Tanh())
    head = fxt.LinearCrossEntropyLoss(16, 50, bias=True, reduction=reduction)

    def step(tokens, labels):
        loss = head(body(tokens), labels)
        return loss.mean() if reduction == "none" else loss

    tokens, labels = torch.randint(0, 50, (24,)), torch.randint(0, 50, (24,))
    expected = F.cross_entropy(head.linear(body(tokens)), labels)
    explanation = torch._dynamo.explain(step)(tokens, labels)
    assert explanation.graph_break_count == 0, explanation.break_reasons
    loss = torch.compile(step, fullgraph=True)(tokens, labels)
    loss.backward()
    torch.testing.assert_close(loss, expected)
    assert all(p.grad is not None for p in [*body.parameters(), *head.parameters()])


def test_training_loop_follows_pytorch():
    """A tiny language-model head, 100 SGD steps in float64: the same loss at every step."""
    generator = torch.Generator().manual_seed(8)
    hidden = torch.randn(128, 12, generator=generator, dtype=torch.float64)
    labels = (hidden[:, :4].argmax(1) * 5 + (hidden[:, 4] > 0).long()).clone()
    labels[::7] = -100  # padding

    def train(head_class):
        torch.manual_seed(9)
        head = head_class(12, 20, bias=True, dtype=torch.float64)
        optimizer = torch.optim.SGD(head.parameters(), lr=0.5)
        losses = []
        for _ in range(100):
            optimizer.zero_grad()
            loss = head(hidden, labels)
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
        return np.array(losses)

    expected = train(torch.nn.LinearCrossEntropyLoss)
    got = train(fxt.LinearCrossEntropyLoss)
    np.testing.assert_allclose(got, expected, rtol=1e-10, atol=0)
    assert got[-1] < 0.5 * got[0]  # it trained


@pytest.mark.parametrize(
    "call, error, message",
    [
        (
            lambda: fxt.linear_cross_entropy(
                torch.randn(2, 3), torch.randn(4, 5, 3), torch.zeros(2, 5, dtype=torch.long)
            ),
            ValueError,
            "K-dimensional",
        ),
        (lambda: fxt.LinearCrossEntropyLoss(3, 4, out_features=(2,)), ValueError, "out_features"),
        (
            lambda: fxt.linear_cross_entropy(
                torch.randn(2, 3, device="meta"), torch.randn(4, 3), torch.tensor([0, 1])
            ),
            ValueError,
            "on the CPU",
        ),
        (
            lambda: fxt.linear_cross_entropy(
                torch.randn(2, 3), torch.randn(4, 2), torch.tensor([0, 1])
            ),
            ValueError,
            "features",
        ),
        (
            lambda: fxt.linear_cross_entropy(
                torch.randn(2, 3), torch.randn(4, 3), torch.tensor([0, 4])
            ),
            ValueError,
            r"target\[1\] = 4",
        ),
        (
            lambda: fxt.linear_cross_entropy(
                torch.randn(2, 3), torch.randn(4, 3), torch.rand(2, 4, requires_grad=True)
            ),
            ValueError,
            "does not differentiate with respect to target",
        ),
        (
            lambda: fxt.linear_cross_entropy(
                torch.randn(2, 3), torch.randn(4, 3), torch.tensor([0, 1]), working_memory=10
            ),
            ValueError,
            "working_memory",
        ),
    ],
)
def test_bad_input(call, error, message):
    with pytest.raises(error, match=message):
        call()


def test_signatures_are_pytorchs():
    for ours, theirs in (
        (fxt.linear_cross_entropy, F.linear_cross_entropy),
        (fxt.LinearCrossEntropyLoss, torch.nn.LinearCrossEntropyLoss),
    ):
        mine = inspect.signature(ours).parameters
        pytorchs = inspect.signature(theirs).parameters
        assert [(p.name, p.kind, p.default) for p in mine.values()][: len(pytorchs)] == [
            (p.name, p.kind, p.default) for p in pytorchs.values()
        ]


def test_non_contiguous_inputs():
    """Transposed hidden states and a strided weight give PyTorch's loss and gradients."""
    generator = torch.Generator().manual_seed(10)
    x = torch.randn(HIDDEN, N_ROWS, generator=generator, dtype=torch.float64).t()
    w = torch.randn(N_CLASSES, 2 * HIDDEN, generator=generator, dtype=torch.float64)[:, ::2]
    target = torch.randint(0, N_CLASSES, (N_ROWS,), generator=generator)
    assert not x.is_contiguous() and not w.is_contiguous()
    expected = run(F.linear_cross_entropy, x, w, None, target, None)
    got = run(fxt.linear_cross_entropy, x, w, None, target, None)
    for actual, wanted in zip(got, expected, strict=True):
        torch.testing.assert_close(actual, wanted, rtol=1e-12, atol=1e-14)
