"""Binary cross-entropy from logits as PyTorch custom operators (see ``_cross_entropy_ops``).

The gradient is elementwise, so the saved gradient of ``sum(loss)`` times the upstream
gradient is exact for every reduction, ``"none"`` included.
"""

from __future__ import annotations

from typing import Any

import torch

import fastxent
from fastxent.torch import _memory
from fastxent.torch._common import (
    by_mode,
    eager_autograd,
    float64_numpy,
    refuse_double_backward,
    scalar_or_array,
    scale_saved,
)


def _options(
    weight: torch.Tensor | None, pos_weight: torch.Tensor | None, reduction: str
) -> dict[str, Any]:
    return {
        "weight": float64_numpy(weight),
        "pos_weight": float64_numpy(pos_weight),
        "reduction": reduction,
    }


def _loss(
    input: torch.Tensor,
    target: torch.Tensor,
    weight: torch.Tensor | None,
    pos_weight: torch.Tensor | None,
    reduction: str,
) -> torch.Tensor:
    """The loss alone (no gradient is needed)."""
    x = input.detach().numpy()
    options = _options(weight, pos_weight, reduction)
    loss = fastxent.binary_cross_entropy(x, target.detach().numpy(), **options)
    return scalar_or_array(loss, x.dtype)


binary_forward = torch.library.custom_op(
    "fastxent::binary_cross_entropy_with_logits", _loss, mutates_args=(), device_types="cpu"
)


@binary_forward.register_fake
def _(input: Any, target: Any, weight: Any, pos_weight: Any, reduction: str) -> Any:
    return input.new_empty(input.shape if reduction == "none" else ())


def _loss_and_grad(
    input: torch.Tensor,
    target: torch.Tensor,
    weight: torch.Tensor | None,
    pos_weight: torch.Tensor | None,
    reduction: str,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The loss and its gradient with respect to ``input`` (of ``sum(loss)`` for "none")."""
    x = input.detach().numpy()
    grad = _memory.empty(input.shape, input.dtype)
    loss, _ = fastxent.binary_cross_entropy_with_grad(
        x, target.detach().numpy(), out=grad.numpy(), **_options(weight, pos_weight, reduction)
    )
    return scalar_or_array(loss, x.dtype), grad


binary_with_grad = torch.library.custom_op(
    "fastxent::binary_cross_entropy_with_logits_with_grad",
    _loss_and_grad,
    mutates_args=(),
    device_types="cpu",
)


@binary_with_grad.register_fake
def _(input: Any, target: Any, weight: Any, pos_weight: Any, reduction: str) -> Any:
    loss = input.new_empty(input.shape if reduction == "none" else ())
    return loss, torch.empty_like(input, memory_format=torch.contiguous_format)


def _setup_context(ctx: Any, inputs: tuple[Any, ...], output: tuple[Any, ...]) -> None:
    ctx.save_for_backward(output[1])
    ctx.mark_non_differentiable(output[1])
    ctx.set_materialize_grads(False)  # no tensor of zeros for the gradients' own gradient


def _backward(ctx: Any, grad_loss: torch.Tensor, _grad_of_grad: Any) -> tuple[Any, ...]:
    refuse_double_backward("binary_cross_entropy_with_logits")
    (grad,) = ctx.saved_tensors
    return scale_saved(ctx, grad, grad_loss), None, None, None, None


binary_with_grad.register_autograd(_backward, setup_context=_setup_context)
_eager_with_grad = eager_autograd("BinaryWithGrad", _loss_and_grad, _setup_context, _backward)


#: The loss and its saved gradient, differentiable; the loss alone (no gradient needed).
with_grad = by_mode(binary_with_grad, _eager_with_grad)
forward = by_mode(binary_forward, _loss)
