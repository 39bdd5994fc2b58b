"""What every ``fastxent.torch`` function checks and converts before calling an operator."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch

#: The operators' "no soft-cap" (a schema float cannot be None everywhere).
NO_CAP = 0.0

#: The dtypes the operators compute in; others are converted (half precision to float32).
NATIVE = (torch.float32, torch.float64)


def refuse_legacy(size_average: object, reduce: object) -> None:
    """PyTorch's deprecated ``size_average``/``reduce`` are accepted in place, never set."""
    if size_average is not None or reduce is not None:
        raise ValueError(
            "size_average and reduce are deprecated in PyTorch and not supported by "
            "fastxent.torch: pass reduction='mean', 'sum' or 'none' instead"
        )


def refuse_other_devices(function: str, *tensors: torch.Tensor | None) -> None:
    """Refuse tensors off the CPU: fastxent computes there, and never moves data silently."""
    for tensor in tensors:
        if tensor is not None and tensor.device.type != "cpu":
            raise ValueError(
                f"fastxent.torch computes on the CPU, got a tensor on {tensor.device}; use "
                f"torch.nn.functional.{function} for other devices, or .cpu() first"
            )


def refuse_gradients_of(function: str, **tensors: torch.Tensor | None) -> None:
    """Tensors the operators do not differentiate must not ask for a gradient.

    Otherwise autograd would silently leave their gradient out.
    """
    if not torch.is_grad_enabled():
        return
    for name, tensor in tensors.items():
        if tensor is not None and tensor.requires_grad:
            raise ValueError(
                f"fastxent.torch.{function} does not differentiate with respect to {name}, "
                f"which requires grad: pass {name}.detach(), or use "
                f"torch.nn.functional.{function} for that gradient"
            )


def compute_dtype(*tensors: torch.Tensor | None) -> torch.dtype:
    """float64 if any floating tensor is float64, else float32 (half precision included)."""
    dtypes = [t.dtype for t in tensors if t is not None and t.is_floating_point()]
    return torch.float64 if torch.float64 in dtypes else torch.float32


def float64_numpy(tensor: torch.Tensor | None) -> np.ndarray[Any, Any] | None:
    """A float64 NumPy copy of an optional weight tensor (weights are always float64)."""
    return None if tensor is None else tensor.detach().to(torch.float64).numpy()


def scalar_or_array(value: Any, dtype: np.dtype[Any]) -> torch.Tensor:
    """A NumPy loss (scalar or array) as a tensor of ``dtype``."""
    return torch.from_numpy(np.array(value, dtype=dtype))


def refuse_double_backward(function: str) -> None:
    """``backward(create_graph=True)`` would need the gradient's own graph: refuse it."""
    if torch.is_grad_enabled():
        raise RuntimeError(
            f"fastxent.torch does not support double backward (create_graph=True through "
            f"its losses): use torch.nn.functional.{function} for higher-order gradients"
        )


def compiling() -> bool:
    """Whether ``torch.compile`` is tracing the call (then the custom operators are used)."""
    return bool(torch.compiler.is_compiling())


def by_mode(operator: Callable[..., Any], eager: Callable[..., Any]) -> Callable[..., Any]:
    """A call of ``operator`` under ``torch.compile``, of ``eager`` (its same code) otherwise."""

    def call(*arguments: Any) -> Any:
        return operator(*arguments) if compiling() else eager(*arguments)

    return call


def eager_autograd(
    name: str,
    forward: Callable[..., Any],
    setup_context: Callable[..., None],
    backward: Callable[..., Any],
) -> Callable[..., Any]:
    """``forward`` as a ``torch.autograd.Function`` with the operator's own autograd rules.

    In eager mode a custom operator's dispatch costs about 0.1 ms per call, more than the
    whole loss of a small batch; an ``autograd.Function`` around the same code costs a
    fraction of that. ``torch.compile`` still sees only the operators.
    """

    def forward_with_context(ctx: Any, *inputs: Any) -> Any:
        # The combined form: apply() binds arguments by inspect.signature with setup_context.
        output = forward(*inputs)
        setup_context(ctx, inputs, output)
        ctx.eager = True  # the backward may then skip a product by 1 (scale_saved)
        return output

    function = type(
        name,
        (torch.autograd.Function,),
        {"forward": staticmethod(forward_with_context), "backward": staticmethod(backward)},
    )
    return function.apply  # type: ignore[no-any-return, attr-defined]


def scale_saved(ctx: Any, grad: torch.Tensor, grad_loss: torch.Tensor | None) -> Any:
    """A saved gradient times the upstream gradient (``None`` if there is none).

    ``loss.backward()`` passes 1: in eager mode the saved tensor is then returned as it
    is, and autograd hands it to the leaf without a copy (a product would write a new
    tensor of the logits' size). Traced (the operators' own backward), a plain product.
    """
    if grad_loss is None:  # only the (non-differentiable) gradient output was used
        return None
    if getattr(ctx, "eager", False) and grad_loss.numel() == 1 and grad_loss.item() == 1.0:
        return grad
    return grad * grad_loss
