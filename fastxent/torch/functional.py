"""PyTorch's losses computed by fastxent: the same signatures, the same results.

Replace ``torch.nn.functional.cross_entropy`` (``binary_cross_entropy_with_logits``,
``linear_cross_entropy``) by its namesake here and nothing else: positional order,
defaults and results are PyTorch's. fastxent adds keyword-only options after them.
"""

from __future__ import annotations

from typing import Any

import torch

from fastxent import _validate
from fastxent._api.linear import WORKING_MEMORY
from fastxent.torch import _binary_ops, _linear_ops
from fastxent.torch import _cross_entropy_ops as _ops
from fastxent.torch._common import (
    NATIVE,
    NO_CAP,
    compute_dtype,
    refuse_gradients_of,
    refuse_legacy,
    refuse_other_devices,
)


def _in_dtype(result: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    return result if result.dtype == dtype else result.to(dtype)


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
    fastxent's ``z_loss`` and ``softcap`` (docs/semantics.md). Classes on axis 1 of an
    ``(N, C, d1, ...)`` input, or a single sample ``(C,)``. The gradient with respect to
    ``input`` is computed in the forward's sweep and saved; the backward scales it. CPU
    tensors; float32 and float64 natively, bfloat16 and float16 computed in float32 and
    returned in their dtype. ``size_average`` and ``reduce`` (deprecated in PyTorch) must
    be ``None``.

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
    refuse_legacy(size_average, reduce)
    refuse_other_devices("cross_entropy", input, target, weight)
    refuse_gradients_of("cross_entropy", target=target, weight=weight)
    cap = _validate.softcap(softcap)
    compute = input if input.dtype in NATIVE else input.to(torch.float32)
    if target.is_floating_point() and target.dtype not in NATIVE:
        target = target.to(compute.dtype)
    arguments = (
        compute, target, weight, ignore_index, reduction, label_smoothing,
        _validate.z_loss(z_loss), NO_CAP if cap is None else cap,
    )  # fmt: skip
    if torch.is_grad_enabled() and compute.requires_grad:
        loss, _ = _ops.with_grad(*arguments)
    else:
        loss = _ops.forward(*arguments)
    return _in_dtype(loss, input.dtype)


def binary_cross_entropy_with_logits(
    input: torch.Tensor,
    target: torch.Tensor,
    weight: torch.Tensor | None = None,
    size_average: bool | None = None,
    reduce: bool | None = None,
    reduction: str = "mean",
    pos_weight: torch.Tensor | None = None,
) -> torch.Tensor:
    r"""``torch.nn.functional.binary_cross_entropy_with_logits`` by fastxent, differentiable.

    .. math::

        \ell = w \left[ p\, z \log \sigma(x) + (1 - z) \log (1 - \sigma(x)) \right] \cdot (-1)

    elementwise, computed without overflow or cancellation, with ``weight`` and
    ``pos_weight`` (``p``) broadcast to ``input`` as PyTorch broadcasts them;
    ``"mean"`` divides by the number of elements. Differentiable with respect to
    ``input`` (the gradient computed in the forward's sweep); dtypes and devices as for
    :func:`cross_entropy`, the result in the dtype PyTorch would give (that of ``input``
    and a floating ``target`` promoted together).

    Examples
    --------
    >>> import torch
    >>> from fastxent.torch import binary_cross_entropy_with_logits
    >>> x = torch.tensor([0.0, 2.0], requires_grad=True)
    >>> loss = binary_cross_entropy_with_logits(x, torch.tensor([1.0, 0.0]))
    >>> loss.backward()
    >>> round(loss.item(), 4), [round(g, 4) for g in x.grad.tolist()]
    (1.41, [-0.25, 0.4404])
    """
    refuse_legacy(size_average, reduce)
    function = "binary_cross_entropy_with_logits"
    refuse_other_devices(function, input, target, weight, pos_weight)
    refuse_gradients_of(function, target=target, weight=weight, pos_weight=pos_weight)
    result_dtype = torch.promote_types(input.dtype, target.dtype)
    dtype = result_dtype if result_dtype in NATIVE else torch.float32
    compute = input if input.dtype == dtype else input.to(dtype)
    if target.is_floating_point() and target.dtype not in NATIVE:
        target = target.to(dtype)
    arguments = (compute, target, weight, pos_weight, reduction)
    if torch.is_grad_enabled() and compute.requires_grad:
        loss, _ = _binary_ops.with_grad(*arguments)
    else:
        loss = _binary_ops.forward(*arguments)
    return _in_dtype(loss, result_dtype)


def linear_cross_entropy(
    input: torch.Tensor,
    linear_weight: torch.Tensor,
    target: torch.Tensor,
    *,
    linear_bias: torch.Tensor | None = None,
    weight: torch.Tensor | None = None,
    reduction: str = "mean",
    ignore_index: int | None = None,
    label_smoothing: float = 0.0,
    options: Any = None,
    z_loss: float = 0.0,
    softcap: float | None = None,
    working_memory: int = WORKING_MEMORY,
) -> torch.Tensor:
    r"""``torch.nn.functional.linear_cross_entropy`` by fastxent: the logits never stored.

    .. math:: z = x W^\top + b, \qquad \ell = \mathrm{cross\_entropy}(z, y)

    for ``input`` ``x`` of shape (N, H) or (H,) and ``linear_weight`` ``W`` (C, H), with
    the options of :func:`cross_entropy` (``ignore_index=None`` means -100 as in
    PyTorch). fastxent always works in chunks within ``working_memory`` bytes
    (:func:`fastxent.linear_cross_entropy`), so PyTorch's chunking ``options`` are
    accepted and have nothing to choose. Differentiable with respect to ``input``,
    ``linear_weight`` and ``linear_bias``: a reduced loss computes the gradients in its
    forward sweep, a per-row loss (``"none"``) in a second sweep in the backward.
    PyTorch's K-dimensional ``linear_weight`` (C, d1, ..., H) is not supported.

    Examples
    --------
    >>> import torch
    >>> from fastxent.torch import linear_cross_entropy
    >>> x = torch.tensor([[1.0, 0.0], [0.0, 2.0]], requires_grad=True)
    >>> W = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]], requires_grad=True)
    >>> loss = linear_cross_entropy(x, W, torch.tensor([2, 1]))
    >>> loss.backward()
    >>> round(loss.item(), 4), W.grad.shape
    (0.8103, torch.Size([3, 2]))
    """
    function = "linear_cross_entropy"
    refuse_other_devices(function, input, linear_weight, target, linear_bias, weight)
    refuse_gradients_of(function, target=target, weight=weight)
    if linear_weight.dim() != 2:
        raise ValueError(
            f"linear_weight must be (C, H), got shape {tuple(linear_weight.shape)}: "
            "fastxent.torch does not support PyTorch's K-dimensional linear_weight; use "
            "torch.nn.functional.linear_cross_entropy for it"
        )
    cap = _validate.softcap(softcap)
    dtype = compute_dtype(input, linear_weight, linear_bias)
    tensors = [
        t if t is None or t.dtype == dtype else t.to(dtype)
        for t in (input, linear_weight, linear_bias)
    ]
    if target.is_floating_point() and target.dtype != dtype:
        target = target.to(dtype)
    arguments = (
        tensors[0], tensors[1], target, tensors[2], weight,
        -100 if ignore_index is None else ignore_index, reduction, label_smoothing,
        _validate.z_loss(z_loss), NO_CAP if cap is None else cap, working_memory,
    )  # fmt: skip
    needs_grad = any(t is not None and t.requires_grad for t in tensors)
    if torch.is_grad_enabled() and needs_grad and reduction != "none":
        loss, *_ = _linear_ops.with_grad(*arguments)
    else:
        loss = _linear_ops.forward(*arguments)
    return _in_dtype(loss, input.dtype)
