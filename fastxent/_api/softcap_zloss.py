"""Cross-entropy calls with soft-capped logits or a z-loss (the language-model terms)."""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray

from fastxent import _validate
from fastxent._api.common import Loss, gradient_scale, reduce_losses, result_scalar
from fastxent._api.xent_problem import Problem
from fastxent._kernels.xent_softcap_zloss import softcap_zloss_labels, softcap_zloss_probs


def language_model_terms(z_loss: Any, softcap: Any) -> tuple[float, float | None] | None:
    """The validated ``(z_loss, softcap)``, or ``None`` when neither term is asked for."""
    if softcap is None and type(z_loss) is float and z_loss == 0.0:
        return None
    terms = _validate.z_loss(z_loss), _validate.softcap(softcap)
    return None if terms == (0.0, None) else terms


def softcap_zloss_forward(
    problem: Problem, z_loss: float, softcap: float | None, grad_rows: NDArray[Any] | None
) -> tuple[Loss, bool]:
    """The loss of ``problem`` (rows layout) with its soft-cap and z-loss, and its gradient.

    With ``grad_rows`` (shaped like ``problem.rows``, maybe the same memory) the gradient
    of the reduced loss is written there. A "mean" whose counted weights sum to 0 divides
    the summed loss and the counted rows' gradient by 0, in IEEE arithmetic.
    Returns ``(loss, labels_ok)``; with ``labels_ok`` false (a label out of range) nothing
    was computed and the caller raises.
    """
    rows = problem.rows
    mean = problem.reduction == "mean"
    scalar = rows.dtype.type
    cap = None if softcap is None else scalar(softcap)
    inverse = None if softcap is None else scalar(1.0 / softcap)
    with_grad = grad_rows is not None
    grad = grad_rows if grad_rows is not None else np.empty((0, rows.shape[1]), rows.dtype)
    if problem.labels is not None:
        labels = problem.labels.reshape(-1)
        losses: NDArray[np.float64] = np.empty(labels.shape)
        n_invalid, denominator = softcap_zloss_labels(
            rows.size, rows, labels, problem.weight,
            problem.weight if problem.smoothing > 0.0 else None, problem.ignore_index,
            problem.smoothing,
            cap, inverse, z_loss, mean, problem.log_base, with_grad, losses, grad,
        )  # fmt: skip
        if n_invalid:
            return None, False
        if mean and denominator == 0:
            return _over_zero_weight(problem, labels, losses, grad_rows), True
    else:
        losses = np.empty(rows.shape[0])
        denominator = rows.shape[0]
        scale = gradient_scale(problem.reduction, denominator, problem.log_base)
        softcap_zloss_probs(
            rows.size, rows, problem.probs, problem.weight, problem.smoothing, cap, inverse, z_loss,
            scale, with_grad, losses, grad,
        )  # fmt: skip
    loss = reduce_losses(
        losses, problem.reduction, denominator, problem.log_base, problem.batch_shape,
        problem.dtype,
    )  # fmt: skip
    return loss, True


def _over_zero_weight(
    problem: Problem,
    labels: NDArray[np.int64],
    losses: NDArray[np.float64],
    grad_rows: NDArray[Any] | None,
) -> Loss:
    """A "mean" over counted weights that sum to 0: the sum divided by 0 (``nan``, ``+-inf``).

    Nothing counted (all rows ignored, or none) gives ``nan`` and a zero gradient, as the
    plain calls do. The kernel left the gradient of the sum in ``grad_rows``.
    """
    counted = labels != problem.ignore_index
    with np.errstate(divide="ignore", invalid="ignore"):
        total = np.float64(losses.sum()) / np.float64(0.0) if counted.any() else np.nan
        if grad_rows is not None and counted.any():
            grad_rows[counted] /= grad_rows.dtype.type(0.0)
    return result_scalar(float(total) / problem.log_base, problem.dtype)
