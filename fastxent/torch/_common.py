"""What every ``fastxent.torch`` function checks and converts before calling an operator."""

from __future__ import annotations

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
