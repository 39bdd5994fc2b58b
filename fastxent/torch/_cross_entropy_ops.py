"""Cross-entropy as PyTorch custom operators, differentiable and ``torch.compile``-safe.

Each loss is one operator that returns the loss and its gradient, computed in the same
sweep (``fastxent.cross_entropy_with_grad`` writes the gradient straight into a tensor
PyTorch allocated); autograd saves the gradient and the backward only scales it by the
upstream gradient. A forward-only operator serves calls that need no gradient. The
operators take float32/float64 CPU tensors; the public functions convert other dtypes.
In eager mode the same code runs as an ``autograd.Function`` (:func:`with_grad`,
:func:`forward`), which costs less per call than the operators' dispatch.
"""

from __future__ import annotations

from typing import Any

import numpy as np
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


def _arrays(logits: torch.Tensor, target: torch.Tensor) -> tuple[np.ndarray, np.ndarray, int]:
    """NumPy views of the tensors and the class axis of ``logits``: PyTorch's axis 1.

    The adapter never copies: fastxent reads contiguous and channels-last layouts in place
    and copies other strides itself. The last axis is named -1 (for (N, C) and (C,)),
    which spares fastxent moving an axis.
    """
    axis = 1 if logits.dim() > 2 else -1
    return logits.detach().numpy(), target.detach().numpy(), axis


def _options(
    weight: torch.Tensor | None,
    ignore_index: int,
    reduction: str,
    label_smoothing: float,
    z_loss: float,
    softcap: float,
) -> dict[str, Any]:
    return {
        "weight": float64_numpy(weight),
        "ignore_index": ignore_index,
        "reduction": reduction,
        "label_smoothing": label_smoothing,
        "z_loss": z_loss,
        "softcap": None if softcap == NO_CAP else softcap,
    }


def _loss(
    logits: torch.Tensor,
    target: torch.Tensor,
    weight: torch.Tensor | None,
    ignore_index: int,
    reduction: str,
    label_smoothing: float,
    z_loss: float,
    softcap: float,
) -> torch.Tensor:
    """The loss alone (no gradient is needed)."""
    x, t, axis = _arrays(logits, target)
    options = _options(weight, ignore_index, reduction, label_smoothing, z_loss, softcap)
    loss = fastxent.cross_entropy(x, t, axis=axis, **options)
    return scalar_or_array(loss, x.dtype)


cross_entropy_forward = torch.library.custom_op(
    "fastxent::cross_entropy", _loss, mutates_args=(), device_types="cpu"
)


@cross_entropy_forward.register_fake
def _(logits: Any, target: Any, *options: Any) -> Any:
    reduction = options[2]
    return logits.new_empty(_loss_shape(logits, target, reduction))


def _loss_and_grad(
    logits: torch.Tensor,
    target: torch.Tensor,
    weight: torch.Tensor | None,
    ignore_index: int,
    reduction: str,
    label_smoothing: float,
    z_loss: float,
    softcap: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The loss and its gradient with respect to ``logits`` (of ``sum(loss)`` for "none")."""
    x, t, axis = _arrays(logits, target)
    options = _options(weight, ignore_index, reduction, label_smoothing, z_loss, softcap)
    grad = _memory.empty(logits.shape, logits.dtype)
    loss, _ = fastxent.cross_entropy_with_grad(x, t, axis=axis, out=grad.numpy(), **options)
    return scalar_or_array(loss, x.dtype), grad


cross_entropy_with_grad = torch.library.custom_op(
    "fastxent::cross_entropy_with_grad", _loss_and_grad, mutates_args=(), device_types="cpu"
)


@cross_entropy_with_grad.register_fake
def _(logits: Any, target: Any, *options: Any) -> Any:
    reduction = options[2]
    loss = logits.new_empty(_loss_shape(logits, target, reduction))
    return loss, torch.empty_like(logits, memory_format=torch.contiguous_format)


def _loss_shape(logits: torch.Tensor, target: torch.Tensor, reduction: str) -> tuple[int, ...]:
    if reduction != "none":
        return ()
    if logits.dim() <= 1:
        return ()
    return (logits.shape[0], *logits.shape[2:])


def _setup_context(ctx: Any, inputs: tuple[Any, ...], output: tuple[Any, ...]) -> None:
    logits = inputs[0]
    ctx.save_for_backward(output[1])
    ctx.class_axis = 1 if logits.dim() > 1 else 0
    ctx.reduction = inputs[4]
    ctx.mark_non_differentiable(output[1])
    ctx.set_materialize_grads(False)  # no tensor of zeros for the gradients' own gradient


def _backward(ctx: Any, grad_loss: torch.Tensor, _grad_of_grad: Any) -> tuple[Any, ...]:
    refuse_double_backward("cross_entropy")
    (grad,) = ctx.saved_tensors
    if ctx.reduction == "none" and grad_loss is not None and grad_loss.dim() > 0:
        grad_loss = grad_loss.unsqueeze(ctx.class_axis)
    return scale_saved(ctx, grad, grad_loss), None, None, None, None, None, None, None


cross_entropy_with_grad.register_autograd(_backward, setup_context=_setup_context)
_eager_with_grad = eager_autograd("CrossEntropyWithGrad", _loss_and_grad, _setup_context, _backward)


#: The loss and its saved gradient, differentiable; the loss alone (no gradient needed).
with_grad = by_mode(cross_entropy_with_grad, _eager_with_grad)
forward = by_mode(cross_entropy_forward, _loss)
