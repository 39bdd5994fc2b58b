"""fastxent for PyTorch: drop-in, differentiable cross-entropy on CPU tensors.

``fastxent.torch.cross_entropy`` has the signature and results of
``torch.nn.functional.cross_entropy`` and ``CrossEntropyLoss`` those of
``torch.nn.CrossEntropyLoss``; both work under autograd and ``torch.compile``. PyTorch is
an optional dependency: ``pip install fastxent[torch]``.
"""

try:
    import torch  # noqa: F401
except ImportError as error:  # pragma: no cover - exercised in a subprocess test
    raise ImportError(
        "fastxent.torch needs PyTorch, which is not installed: pip install 'fastxent[torch]'"
    ) from error

from fastxent.torch.functional import cross_entropy
from fastxent.torch.modules import CrossEntropyLoss

__all__ = ["CrossEntropyLoss", "cross_entropy"]
