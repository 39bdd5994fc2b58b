"""Linear cross-entropy as PyTorch custom operators (see ``_cross_entropy_ops``).

A reduced loss ("mean", "sum") computes its three gradients in the forward's sweep and
saves them; the backward scales them by the upstream scalar. A per-row loss ("none") has
an upstream gradient per row that the weight's and bias's gradients must be weighted by,
so its backward makes a second sweep with it (``grad_output``), as PyTorch's chunked path
does.
"""

from __future__ import annotations

from typing import Any

import torch

import fastxent
from fastxent.torch import _memory
from fastxent.torch._common import (
    NO_CAP,
    by_mode,
    eager_autograd,
    float64_numpy,
    refuse_double_backward,
    scalar_or_array,
    scale_saved,
)


def _options(
    linear_bias: torch.Tensor | None,
    weight: torch.Tensor | None,
    ignore_index: int,
    reduction: str,
    label_smoothing: float,
    z_loss: float,
    softcap: float,
    working_memory: int,
) -> dict[str, Any]:
    return {
        "linear_bias": None if linear_bias is None else linear_bias.detach().numpy(),
        "weight": float64_numpy(weight),
        "ignore_index": ignore_index,
        "reduction": reduction,
        "label_smoothing": label_smoothing,
        "z_loss": z_loss,
        "softcap": None if softcap == NO_CAP else softcap,
        "working_memory": working_memory,
    }


def _gradient_tensors(
    input: torch.Tensor,
    linear_weight: torch.Tensor,
    linear_bias: torch.Tensor | None,
    fake: bool = False,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Tensors for the three gradients; the bias's is empty without a bias.

    ``fake``: the operators' fake implementations (shapes only, no memory to advise).
    """
    dtype = input.dtype

    def new(shape: Any) -> torch.Tensor:
        return input.new_empty(shape) if fake else _memory.empty(shape, dtype)

    return (
        new(input.shape),
        new(linear_weight.shape),
        new((0,)) if linear_bias is None else new(linear_bias.shape),
    )


def _out(grads: tuple[torch.Tensor, ...], has_bias: bool) -> tuple[Any, Any, Any]:
    return grads[0].numpy(), grads[1].numpy(), grads[2].numpy() if has_bias else None


def _loss_shape(input: torch.Tensor, reduction: str) -> tuple[int, ...]:
    return (input.shape[0],) if reduction == "none" and input.dim() == 2 else ()


def _loss(
    input: torch.Tensor,
    linear_weight: torch.Tensor,
    target: torch.Tensor,
    linear_bias: torch.Tensor | None,
    weight: torch.Tensor | None,
    ignore_index: int,
    reduction: str,
    label_smoothing: float,
    z_loss: float,
    softcap: float,
    working_memory: int,
) -> torch.Tensor:
    """The loss alone: no gradient is needed, or a per-row loss's comes from its backward."""
    options = _options(
        linear_bias, weight, ignore_index, reduction, label_smoothing, z_loss, softcap,
        working_memory,
    )  # fmt: skip
    x = input.detach().numpy()
    loss = fastxent.linear_cross_entropy(
        x, linear_weight.detach().numpy(), target.numpy(), **options
    )
    return scalar_or_array(loss, x.dtype)


linear_forward = torch.library.custom_op(
    "fastxent::linear_cross_entropy", _loss, mutates_args=(), device_types="cpu"
)


@linear_forward.register_fake
def _(input: Any, linear_weight: Any, target: Any, *options: Any) -> Any:
    return input.new_empty(_loss_shape(input, options[3]))


def _loss_and_grads(
    input: torch.Tensor,
    linear_weight: torch.Tensor,
    target: torch.Tensor,
    linear_bias: torch.Tensor | None,
    weight: torch.Tensor | None,
    ignore_index: int,
    reduction: str,
    label_smoothing: float,
    z_loss: float,
    softcap: float,
    working_memory: int,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """A reduced loss and the gradients of input, linear_weight and linear_bias (empty without).

    Not for ``reduction="none"``: the backward could not weight the rows' gradients.
    """
    if reduction == "none":
        raise ValueError("linear_cross_entropy_with_grad serves reduced losses: 'mean' or 'sum'")
    options = _options(
        linear_bias, weight, ignore_index, reduction, label_smoothing, z_loss, softcap,
        working_memory,
    )  # fmt: skip
    grads = _gradient_tensors(input, linear_weight, linear_bias)
    loss, *_ = fastxent.linear_cross_entropy_with_grad(
        input.detach().numpy(), linear_weight.detach().numpy(), target.numpy(),
        out=_out(grads, linear_bias is not None), **options,
    )  # fmt: skip
    return scalar_or_array(loss, grads[0].numpy().dtype), *grads


linear_with_grad = torch.library.custom_op(
    "fastxent::linear_cross_entropy_with_grad", _loss_and_grads, mutates_args=(), device_types="cpu"
)


@linear_with_grad.register_fake
def _(input: Any, linear_weight: Any, target: Any, linear_bias: Any, *options: Any) -> Any:
    loss = input.new_empty(_loss_shape(input, options[2]))
    return loss, *_gradient_tensors(input, linear_weight, linear_bias, fake=True)


def _grads(
    grad_loss: torch.Tensor,
    input: torch.Tensor,
    linear_weight: torch.Tensor,
    target: torch.Tensor,
    linear_bias: torch.Tensor | None,
    weight: torch.Tensor | None,
    ignore_index: int,
    reduction: str,
    label_smoothing: float,
    z_loss: float,
    softcap: float,
    working_memory: int,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The gradients of ``sum(grad_loss * loss)``: a second sweep, for per-row losses."""
    options = _options(
        linear_bias, weight, ignore_index, reduction, label_smoothing, z_loss, softcap,
        working_memory,
    )  # fmt: skip
    grads = _gradient_tensors(input, linear_weight, linear_bias)
    fastxent.linear_cross_entropy_with_grad(
        input.numpy(), linear_weight.numpy(), target.numpy(),
        out=_out(grads, linear_bias is not None), grad_output=grad_loss.numpy(), **options,
    )  # fmt: skip
    return grads


linear_backward = torch.library.custom_op(
    "fastxent::linear_cross_entropy_backward", _grads, mutates_args=(), device_types="cpu"
)


@linear_backward.register_fake
def _(
    grad_loss: Any, input: Any, linear_weight: Any, target: Any, linear_bias: Any, *_: Any
) -> Any:
    return _gradient_tensors(input, linear_weight, linear_bias, fake=True)


def _bias_gradient(grad: torch.Tensor, has_bias: bool) -> torch.Tensor | None:
    return grad if has_bias else None


def _setup_with_grad(ctx: Any, inputs: tuple[Any, ...], output: tuple[Any, ...]) -> None:
    ctx.has_bias = inputs[3] is not None
    ctx.save_for_backward(*output[1:])
    ctx.mark_non_differentiable(*output[1:])
    ctx.set_materialize_grads(False)  # no tensor of zeros for the gradients' own gradient


def _backward_with_grad(
    ctx: Any, grad_loss: torch.Tensor, *_grads_of_grads: Any
) -> tuple[Any, ...]:
    refuse_double_backward("linear_cross_entropy")
    grad_input, grad_weight, grad_bias = ctx.saved_tensors
    return (
        scale_saved(ctx, grad_input, grad_loss), scale_saved(ctx, grad_weight, grad_loss), None,
        _bias_gradient(scale_saved(ctx, grad_bias, grad_loss), ctx.has_bias), *(None,) * 7,
    )  # fmt: skip


def _setup_forward(ctx: Any, inputs: tuple[Any, ...], output: Any) -> None:
    input, linear_weight, target, linear_bias, weight = inputs[:5]
    ctx.has_bias = linear_bias is not None
    ctx.options = inputs[5:]
    ctx.save_for_backward(input, linear_weight, target, linear_bias, weight)


def _backward_forward(ctx: Any, grad_loss: torch.Tensor) -> tuple[Any, ...]:
    refuse_double_backward("linear_cross_entropy")
    input, linear_weight, target, linear_bias, weight = ctx.saved_tensors
    backward = _grads if getattr(ctx, "eager", False) else linear_backward
    grad_input, grad_weight, grad_bias = backward(
        grad_loss.to(input.dtype), input, linear_weight, target, linear_bias, weight,
        *ctx.options,
    )  # fmt: skip
    return (
        grad_input, grad_weight, None, _bias_gradient(grad_bias, ctx.has_bias), *(None,) * 7,
    )  # fmt: skip


linear_with_grad.register_autograd(_backward_with_grad, setup_context=_setup_with_grad)
linear_forward.register_autograd(_backward_forward, setup_context=_setup_forward)
_eager_with_grad = eager_autograd(
    "LinearWithGrad", _loss_and_grads, _setup_with_grad, _backward_with_grad
)
_eager_forward = eager_autograd("Linear", _loss, _setup_forward, _backward_forward)


#: A reduced loss and its saved gradients; the loss, differentiable by a second sweep.
with_grad = by_mode(linear_with_grad, _eager_with_grad)
forward = by_mode(linear_forward, _eager_forward)
