"""Plain-NumPy reference implementations of every public ``fastxent`` function.

This module is the executable specification of ``fastxent``: each function follows the
rules of ``docs/semantics.md`` literally, written for readability rather than speed, and
the tests compare the fast Numba kernels against it.

Conventions shared by every function here:

- All arithmetic is done in float64, whatever the input dtype, so that the reference is
  an accuracy oracle. Results come back in the *result dtype*: float32 for float16 and
  float32 inputs, float64 for float64 inputs.
- The class axis is moved last, so a ``(..., C)`` array of rows is all the code sees.
- ``0 * log 0 = 0``: wherever a target coefficient multiplies a logarithm, a zero
  coefficient gives exactly ``0``, even when the logarithm is ``-inf`` or ``nan``.
- ``base=b`` divides every loss and gradient by ``ln b``; ``base=None`` means natural log.
- Inputs are never modified; only an explicit ``out=`` array is written to.

Validation is kept to the minimum needed to avoid silently wrong numbers (an unknown
``reduction``, a non-float array, a class index out of range); the public API does the
full checking.
"""

from fastxent.reference.binary import binary_cross_entropy, binary_cross_entropy_with_grad
from fastxent.reference.cross_entropy import cross_entropy, cross_entropy_with_grad
from fastxent.reference.distributions import cross_entropy_from_probs, entropy, kl_divergence
from fastxent.reference.evaluation import evaluate
from fastxent.reference.linear import linear_cross_entropy, linear_cross_entropy_with_grad
from fastxent.reference.softmax import log_softmax, logsumexp, softmax

__all__ = [
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
