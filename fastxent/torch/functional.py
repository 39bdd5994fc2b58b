"""PyTorch's cross-entropy, computed by fastxent: the same signature, the same results.

Replace ``torch.nn.functional.cross_entropy`` by ``fastxent.torch.cross_entropy`` and
nothing else: positional order, defaults and results are PyTorch's (classes on axis 1 of
an ``(N, C, d1, ...)`` input, or a single sample ``(C,)``).
"""

from __future__ import annotations

import torch

from fastxent import _validate
from fastxent.torch import _ops

_NATIVE = (torch.float32, torch.float64)


def _refuse_legacy(size_average: object, reduce: object) -> None:
    if size_average is not None or reduce is not None:
        raise ValueError(
            "size_average and reduce are deprecated in PyTorch and not supported by "
            "fastxent.torch: pass reduction='mean', 'sum' or 'none' instead"
        )


def _refuse_other_devices(*tensors: torch.Tensor | None) -> None:
    for tensor in tensors:
        if tensor is not None and tensor.device.type != "cpu":
            raise ValueError(
                f"fastxent.torch computes on the CPU, got a tensor on {tensor.device}; "
                "use torch.nn.functional.cross_entropy for other devices, or .cpu() first"
            )


def cross_entropy(
    input: torch.Tensor,
    target: torch.Tensor,
    weight: torch.Tensor | None = None,
    size_average: bool | None = None,
    ignore_index: int = -100,
    reduce: bool | None = None,
    reduction: str = "mean",
    label_smoothing: float = 0.0,
    *,
    z_loss: float = 0.0,
    softcap: float | None = None,
) -> torch.Tensor:
    r"""``torch.nn.functional.cross_entropy`` by fastxent's fused kernels, differentiable.

    .. math:: \ell_n = -\sum_c w_c\, q_{n,c} \log \mathrm{softmax}(x_n)_c

    with PyTorch's rules for ``weight``, ``ignore_index``, ``reduction`` and
    ``label_smoothing`` (``q`` the one-hot or probability target, smoothed), plus
    fastxent's ``z_loss`` and ``softcap`` (docs/semantics.md). The gradient is computed
    in the forward's sweep and saved; the backward scales it. CPU tensors; float32 and
    float64 natively, bfloat16 and float16 computed in float32 and returned in their dtype.
    ``size_average`` and ``reduce`` (deprecated in PyTorch) must be ``None``.

    Examples
    --------
    >>> import torch
    >>> from fastxent.torch import cross_entropy
    >>> logits = torch.tensor([[1.4, 3.2, 5.0]], requires_grad=True)
    >>> loss = cross_entropy(logits, torch.tensor([2]))
    >>> loss.backward()
    >>> round(loss.item(), 4), [round(g, 2) for g in logits.grad[0].tolist()]
    (0.1762, [0.02, 0.14, -0.16])
    """
    _refuse_legacy(size_average, reduce)
    _refuse_other_devices(input, target, weight)
    cap = _validate.softcap(softcap)
    compute = input if input.dtype in _NATIVE else input.to(torch.float32)
    if target.is_floating_point() and target.dtype not in _NATIVE:
        target = target.to(compute.dtype)
    arguments = (
        compute, target, weight, ignore_index, reduction, label_smoothing,
        _validate.z_loss(z_loss), _ops._NO_CAP if cap is None else cap,
    )  # fmt: skip
    if torch.is_grad_enabled() and compute.requires_grad:
        loss, _ = _ops.cross_entropy_with_grad(*arguments)
    else:
        loss = _ops.cross_entropy_forward(*arguments)
    result: torch.Tensor = loss if loss.dtype == input.dtype else loss.to(input.dtype)
    return result
