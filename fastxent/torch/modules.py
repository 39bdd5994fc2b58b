"""``torch.nn`` loss modules computed by fastxent, with PyTorch's constructor arguments."""

from __future__ import annotations

from typing import Any

import torch

from fastxent._api.linear import WORKING_MEMORY
from fastxent.torch._common import refuse_legacy
from fastxent.torch.functional import (
    binary_cross_entropy_with_logits,
    cross_entropy,
    linear_cross_entropy,
)


class CrossEntropyLoss(torch.nn.Module):
    """``torch.nn.CrossEntropyLoss`` by fastxent (see :func:`fastxent.torch.cross_entropy`).

    Examples
    --------
    >>> import torch
    >>> from fastxent.torch import CrossEntropyLoss
    >>> loss = CrossEntropyLoss(label_smoothing=0.1)(torch.zeros(2, 3), torch.tensor([0, 2]))
    >>> round(loss.item(), 4)
    1.0986
    """

    weight: torch.Tensor | None

    def __init__(
        self,
        weight: torch.Tensor | None = None,
        size_average: bool | None = None,
        ignore_index: int = -100,
        reduce: bool | None = None,
        reduction: str = "mean",
        label_smoothing: float = 0.0,
        *,
        z_loss: float = 0.0,
        softcap: float | None = None,
    ) -> None:
        super().__init__()
        refuse_legacy(size_average, reduce)
        self.register_buffer("weight", weight)
        self.ignore_index = ignore_index
        self.reduction = reduction
        self.label_smoothing = label_smoothing
        self.z_loss = z_loss
        self.softcap = softcap

    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """The loss of ``input`` against ``target``, as the module was configured."""
        return cross_entropy(
            input, target, weight=self.weight, ignore_index=self.ignore_index,
            reduction=self.reduction, label_smoothing=self.label_smoothing,
            z_loss=self.z_loss, softcap=self.softcap,
        )  # fmt: skip


class BCEWithLogitsLoss(torch.nn.Module):
    """``torch.nn.BCEWithLogitsLoss`` by fastxent.

    See :func:`fastxent.torch.binary_cross_entropy_with_logits`.

    Examples
    --------
    >>> import torch
    >>> from fastxent.torch import BCEWithLogitsLoss
    >>> loss = BCEWithLogitsLoss(pos_weight=torch.tensor([2.0]))
    >>> round(loss(torch.zeros(3, 1), torch.ones(3, 1)).item(), 4)
    1.3863
    """

    weight: torch.Tensor | None
    pos_weight: torch.Tensor | None

    def __init__(
        self,
        weight: torch.Tensor | None = None,
        size_average: bool | None = None,
        reduce: bool | None = None,
        reduction: str = "mean",
        pos_weight: torch.Tensor | None = None,
    ) -> None:
        super().__init__()
        refuse_legacy(size_average, reduce)
        self.register_buffer("weight", weight)
        self.register_buffer("pos_weight", pos_weight)
        self.reduction = reduction

    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """The loss of ``input`` against ``target``, as the module was configured."""
        return binary_cross_entropy_with_logits(
            input, target, self.weight, reduction=self.reduction, pos_weight=self.pos_weight
        )


class LinearCrossEntropyLoss(torch.nn.Module):
    """``torch.nn.LinearCrossEntropyLoss`` by fastxent: a linear layer and its loss, fused.

    Owns ``self.linear`` (a ``torch.nn.Linear(in_features, num_classes, bias=bias)``) as
    PyTorch's module does; the forward is :func:`fastxent.torch.linear_cross_entropy` of
    the input through it. PyTorch's K-dimensional ``out_features`` is not supported.

    Examples
    --------
    >>> import torch
    >>> from fastxent.torch import LinearCrossEntropyLoss
    >>> head = LinearCrossEntropyLoss(4, 10)
    >>> with torch.no_grad():
    ...     _ = head.linear.weight.zero_()
    >>> round(head(torch.ones(2, 4), torch.tensor([3, 7])).item(), 4)  # log(10)
    2.3026
    """

    weight: torch.Tensor | None

    def __init__(
        self,
        in_features: int,
        num_classes: int,
        *,
        out_features: tuple[int, ...] = (),
        bias: bool = False,
        device: Any = None,
        dtype: torch.dtype | None = None,
        reduction: str = "mean",
        weight: torch.Tensor | None = None,
        ignore_index: int | None = None,
        label_smoothing: float = 0.0,
        options: Any = None,
        z_loss: float = 0.0,
        softcap: float | None = None,
        working_memory: int = WORKING_MEMORY,
    ) -> None:
        super().__init__()
        if tuple(out_features) != ():
            raise ValueError(
                f"out_features={tuple(out_features)}: fastxent.torch does not support "
                "K-dimensional linear cross-entropy; use torch.nn.LinearCrossEntropyLoss"
            )
        self.linear = torch.nn.Linear(
            in_features, num_classes, bias=bias, device=device, dtype=dtype
        )
        self.register_buffer("weight", weight)
        self.num_classes = num_classes
        self.out_features = ()
        self.reduction = reduction
        self.ignore_index = ignore_index
        self.label_smoothing = label_smoothing
        self.options = options
        self.z_loss = z_loss
        self.softcap = softcap
        self.working_memory = working_memory

    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """The loss of ``input`` through ``self.linear`` against ``target``."""
        return linear_cross_entropy(
            input, self.linear.weight, target, linear_bias=self.linear.bias,
            weight=self.weight, reduction=self.reduction, ignore_index=self.ignore_index,
            label_smoothing=self.label_smoothing, options=self.options, z_loss=self.z_loss,
            softcap=self.softcap, working_memory=self.working_memory,
        )  # fmt: skip

    def extra_repr(self) -> str:
        """The configuration, shown by ``repr(module)``."""
        return (
            f"in_features={self.linear.in_features}, num_classes={self.num_classes}, "
            f"bias={self.linear.bias is not None}, reduction={self.reduction}, "
            f"ignore_index={self.ignore_index}, label_smoothing={self.label_smoothing}, "
            f"z_loss={self.z_loss}, softcap={self.softcap}"
        )
