"""fastxent for PyTorch: drop-in, differentiable losses on CPU tensors.

``cross_entropy``, ``binary_cross_entropy_with_logits`` and ``linear_cross_entropy``
have the signatures and results of their namesakes in ``torch.nn.functional``;
``CrossEntropyLoss``, ``BCEWithLogitsLoss`` and ``LinearCrossEntropyLoss`` those of the
``torch.nn`` modules. All work under autograd and ``torch.compile``. PyTorch is an
optional dependency: ``pip install 'fastxent[torch]'``.
"""

try:
    import torch  # noqa: F401
except ImportError as error:  # pragma: no cover - exercised in a subprocess test
    raise ImportError(
        "fastxent.torch needs PyTorch, which is not installed: pip install 'fastxent[torch]'"
    ) from error

from fastxent.torch.functional import (
    binary_cross_entropy_with_logits,
    cross_entropy,
    linear_cross_entropy,
)
from fastxent.torch.modules import BCEWithLogitsLoss, CrossEntropyLoss, LinearCrossEntropyLoss

__all__ = [
    "BCEWithLogitsLoss",
    "CrossEntropyLoss",
    "LinearCrossEntropyLoss",
    "binary_cross_entropy_with_logits",
    "cross_entropy",
    "linear_cross_entropy",
]
