"""Reference ``evaluate``: the metrics from the whole float64 softmax, row by row."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from fastxent._api.evaluation import Evaluation
from fastxent.reference._common import (
    _check_class_indices,
    _log_softmax_rows,
    _move_class_axis_last,
)


def evaluate(
    logits: ArrayLike,
    target: ArrayLike,
    *,
    axis: int = -1,
    ignore_index: int = -100,
    weight: ArrayLike | None = None,
    top_k: Sequence[int] | int = (1, 5),
    bins: int = 15,
) -> Evaluation:
    """:func:`fastxent.evaluate` through ``log_softmax`` of the whole float64 logits.

    Each row's loss is ``-log_softmax(z)[y]``, its rank the number of classes scoring
    strictly above ``z[y]``, its confidence ``max softmax(z)`` and its entropy
    ``-sum p log p`` (``0 log 0 = 0``); rows whose label is ``ignore_index`` count nowhere,
    rows whose loss is not finite only in ``nonfinite``. The sums are then taken one
    confidence bin and one ``k`` at a time.

    Examples
    --------
    >>> import numpy as np
    >>> from fastxent import reference
    >>> reference.evaluate(np.zeros((2, 4)), np.array([1, -100]), top_k=1).accuracy
    {1: 1.0}
    """
    z = _move_class_axis_last(np.asarray(logits), axis)
    n_classes = z.shape[-1]
    z = z.reshape(-1, n_classes)
    y = np.asarray(target).astype(np.int64).reshape(-1)
    ks = tuple(sorted({int(k) for k in np.atleast_1d(top_k)}))
    w = np.ones(n_classes) if weight is None else np.asarray(weight, dtype=np.float64)
    counted = y != ignore_index
    _check_class_indices(y, n_classes, counted)
    z, y = z[counted], y[counted]
    rows = np.arange(y.size)
    log_p, _ = _log_softmax_rows(z)
    with np.errstate(invalid="ignore"):
        losses = -log_p[rows, y]
        finite = np.isfinite(losses)
        p = np.exp(log_p)
        plogp = np.where(p > 0.0, p * log_p, 0.0)
    z, y, losses, p, plogp = z[finite], y[finite], losses[finite], p[finite], plogp[finite]
    rows = np.arange(y.size)
    ranks = np.sum(z > z[rows, y][:, np.newaxis], axis=1)
    confidences = p.max(axis=1)
    slots = np.minimum(np.floor(confidences * bins).astype(np.int64), bins - 1)
    in_bin: list[Any] = [slots == b for b in range(bins)]
    return Evaluation(
        top_k=ks,
        bins=bins,
        count=int(y.size),
        ignored=int(np.sum(~counted)),
        nonfinite=int(np.sum(~finite)),
        weight_sum=float(np.sum(w[y])),
        loss_sum=float(np.sum(w[y] * losses)),
        hits=tuple(int(np.sum(ranks < k)) for k in ks),
        confidence_sum=float(np.sum(confidences)),
        entropy_sum=float(-np.sum(plogp)),
        bin_counts=tuple(int(np.sum(mask)) for mask in in_bin),
        bin_confidence=tuple(float(np.sum(confidences[mask])) for mask in in_bin),
        bin_hits=tuple(int(np.sum(ranks[mask] == 0)) for mask in in_bin),
    )
