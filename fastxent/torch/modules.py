"""``torch.nn`` loss modules computed by fastxent, with PyTorch's constructor arguments."""

from __future__ import annotations

import torch

from fastxent.torch.functional import cross_entropy


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
        if size_average is not None or reduce is not None:
            raise ValueError(
                "size_average and reduce are deprecated in PyTorch and not supported by "
                "fastxent.torch: pass reduction='mean', 'sum' or 'none' instead"
            )
        self.register_buffer("weight", weight)
        self.weight: torch.Tensor | None
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
