"""fastxent: fast, accurate softmax cross-entropy and its relatives on the CPU.

Numba-compiled kernels that fuse max-subtraction, exp-sum, log and label-gather (and the
gradient ``softmax - onehot``) into one sweep over each row. ``fastxent.reference`` holds
plain NumPy implementations of every function: the executable specification; it is
imported on first use of ``fastxent.reference``.
"""

import importlib
from types import ModuleType

from fastxent._api.binary import binary_cross_entropy, binary_cross_entropy_with_grad
from fastxent._api.cross_entropy import cross_entropy, cross_entropy_with_grad
from fastxent._api.distributions import cross_entropy_from_probs, entropy, kl_divergence
from fastxent._api.evaluation import Evaluation, evaluate
from fastxent._api.linear import linear_cross_entropy, linear_cross_entropy_with_grad
from fastxent._api.softmax import log_softmax, logsumexp, softmax

__version__ = "0.1.0"

__all__ = [
    "Evaluation",
    "__version__",
    "binary_cross_entropy",
    "binary_cross_entropy_with_grad",
    "cross_entropy",
    "cross_entropy_from_probs",
    "cross_entropy_with_grad",
    "entropy",
    "evaluate",
    "kl_divergence",
    "linear_cross_entropy",
    "linear_cross_entropy_with_grad",
    "log_softmax",
    "logsumexp",
    "softmax",
]


def __getattr__(name: str) -> ModuleType:
    # ``fastxent.reference`` without an import of its own, loaded only when first used.
    if name == "reference":
        return importlib.import_module("fastxent.reference")
    raise AttributeError(f"module 'fastxent' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*__all__, "reference"])
