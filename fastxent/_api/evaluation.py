"""``evaluate``: the metrics of a classifier's logits in one sweep, as combinable statistics.

The kernel computes four numbers per row (loss, rank of the label, largest probability,
entropy, :mod:`fastxent._kernels.evaluation`); they are summed here into an
:class:`Evaluation`, whose fields are sums and counts only. Two evaluations of disjoint
rows add up to the evaluation of their union, which is what makes chunked, streaming and
distributed evaluation give the whole-array numbers.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, fields
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from fastxent._api.xent_problem import prepare
from fastxent._kernels.evaluation import evaluation_rows
from fastxent._plan import rows_to_chain


@dataclass(frozen=True)
class Evaluation:
    r"""Sufficient statistics of an evaluation, and the metrics they give.

    Every field is a count or a sum over the counted rows: rows whose label is not
    ``ignore_index`` and whose loss is finite. Rows with a non-finite loss (a ``nan``
    logit, or a label whose logit is ``-inf``) are counted in ``nonfinite`` and nowhere
    else. ``a + b`` (or :meth:`combine`) gives the statistics of the rows of both.

    Metrics, over the counted rows :math:`i` with label :math:`y_i`, class weight
    :math:`w_{y_i}`, loss :math:`\ell_i = \mathrm{lse}(z_i) - z_{i, y_i}` and largest
    probability :math:`c_i = \max_k \mathrm{softmax}(z_i)_k`:

    - ``nll`` :math:`= \sum_i w_{y_i} \ell_i / \sum_i w_{y_i}` (nats), ``bits`` its base-2
      form and ``perplexity`` :math:`= e^{\mathrm{nll}}`;
    - ``accuracy[k]``: the fraction of rows whose label has fewer than ``k`` classes
      scoring strictly higher (a class tied with the label does not count against it);
    - ``ece`` :math:`= \sum_b |\sum_{i \in B_b} (h_i - c_i)| / n` over ``bins`` equal-width
      bins of :math:`c_i` (:math:`h_i` the top-1 hit), Guo et al. (2017);
    - ``confidence``: the mean :math:`c_i`; ``entropy``: the mean predictive entropy (nats).

    A metric of no counted rows is ``nan``.

    Examples
    --------
    >>> import numpy as np, fastxent
    >>> logits = np.array([[2.0, 1.0, 0.0], [0.0, 3.0, 0.0]])
    >>> result = fastxent.evaluate(logits, np.array([0, 2]), top_k=(1, 2))
    >>> result.count, result.accuracy  # row 2: one class above its label, one tied
    (2, {1: 0.5, 2: 1.0})
    >>> round(result.nll, 4), round(result.ece, 4)
    (1.7513, 0.6221)
    """

    top_k: tuple[int, ...]
    bins: int
    count: int
    ignored: int
    nonfinite: int
    weight_sum: float
    loss_sum: float
    hits: tuple[int, ...]
    confidence_sum: float
    entropy_sum: float
    bin_counts: tuple[int, ...]
    bin_confidence: tuple[float, ...]
    bin_hits: tuple[int, ...]

    @property
    def nll(self) -> float:
        """Weighted mean negative log-likelihood of the label, in nats."""
        return _ratio(self.loss_sum, self.weight_sum)

    @property
    def bits(self) -> float:
        """``nll`` in bits (base 2) per row."""
        return self.nll / math.log(2.0)

    @property
    def perplexity(self) -> float:
        """``exp(nll)``."""
        nll = self.nll
        return math.inf if nll > 709.0 else math.exp(nll)  # exp overflows past 709

    @property
    def accuracy(self) -> dict[int, float]:
        """Top-k accuracy for each ``k`` of ``top_k``."""
        return {k: _ratio(hits, self.count) for k, hits in zip(self.top_k, self.hits, strict=True)}

    @property
    def ece(self) -> float:
        """Expected calibration error of the largest probability (l1, equal-width bins)."""
        if self.count == 0:
            return math.nan
        gaps = (abs(h - c) for h, c in zip(self.bin_hits, self.bin_confidence, strict=True))
        return math.fsum(gaps) / self.count

    @property
    def confidence(self) -> float:
        """Mean largest probability."""
        return _ratio(self.confidence_sum, self.count)

    @property
    def entropy(self) -> float:
        """Mean predictive entropy, in nats."""
        return _ratio(self.entropy_sum, self.count)

    def as_dict(self) -> dict[str, Any]:
        """The metrics and counts as plain numbers (accuracy keyed by ``str(k)``, for JSON)."""
        return {
            "count": self.count,
            "ignored": self.ignored,
            "nonfinite": self.nonfinite,
            "nll": self.nll,
            "bits": self.bits,
            "perplexity": self.perplexity,
            "accuracy": {str(k): value for k, value in self.accuracy.items()},
            "ece": self.ece,
            "confidence": self.confidence,
            "entropy": self.entropy,
        }

    def __add__(self, other: Evaluation) -> Evaluation:
        """The statistics of the rows of both (the same ``top_k`` and ``bins``)."""
        if not isinstance(other, Evaluation):
            return NotImplemented
        if (self.top_k, self.bins) != (other.top_k, other.bins):
            raise ValueError(
                f"cannot combine evaluations with top_k={self.top_k}, bins={self.bins} and "
                f"top_k={other.top_k}, bins={other.bins}: evaluate both with the same options"
            )
        values: dict[str, Any] = {}
        for field in fields(self):
            mine, theirs = getattr(self, field.name), getattr(other, field.name)
            if field.name in ("top_k", "bins"):
                values[field.name] = mine
            elif isinstance(mine, tuple):
                values[field.name] = tuple(a + b for a, b in zip(mine, theirs, strict=True))
            else:
                values[field.name] = mine + theirs
        return Evaluation(**values)

    @classmethod
    def combine(cls, evaluations: Iterable[Evaluation]) -> Evaluation:
        """The sum of one or more evaluations (of disjoint rows)."""
        items = list(evaluations)
        if not items:
            raise ValueError("combine needs at least one Evaluation")
        total = items[0]
        for item in items[1:]:
            total = total + item
        return total


def _ratio(numerator: float, denominator: float) -> float:
    return numerator / denominator if denominator else math.nan


def top_k_values(top_k: Any) -> tuple[int, ...]:
    """``top_k`` as sorted distinct positive ints."""
    values = (top_k,) if isinstance(top_k, (int, np.integer)) else top_k
    try:
        items = list(values)
    except TypeError:
        items = None
    if items is None or not all(
        isinstance(k, (int, np.integer)) and not isinstance(k, bool) and k >= 1 for k in items
    ):
        raise ValueError(f"top_k must be positive ints, e.g. (1, 5), got {top_k!r}")
    return tuple(sorted({int(k) for k in items}))


def bin_count(bins: Any) -> int:
    """``bins`` as a positive int."""
    if isinstance(bins, bool) or not isinstance(bins, (int, np.integer)) or bins < 1:
        raise ValueError(f"bins must be a positive int (15 is usual), got {bins!r}")
    return int(bins)


def labels_out_of_range(
    labels: NDArray[np.integer[Any]], n_classes: int, ignore_index: int
) -> tuple[int, int]:
    """``(count, first)``: labels neither a class index nor ``ignore_index``.

    ``first`` is the flat position of the first of them, -1 if there is none.
    """
    bad = ((labels < 0) | (labels >= n_classes)) & (labels != ignore_index)
    count = int(np.count_nonzero(bad))
    return count, int(np.argmax(bad.reshape(-1))) if count else -1


def check_labels(labels: NDArray[np.int64], n_classes: int, ignore_index: int) -> None:
    """Every label a class index or ``ignore_index``; else say how many are not, and the first."""
    count, first = labels_out_of_range(labels, n_classes, ignore_index)
    if count:
        raise ValueError(
            f"target has {count} labels outside [0, {n_classes}) (nor ignore_index="
            f"{ignore_index}); the first is {int(labels.reshape(-1)[first])}, at row {first}"
        )


@dataclass(frozen=True)
class RowStatistics:
    """The kernel's per-row outputs for rows ``(N, C)`` (``nan``/-1 at ignored rows)."""

    losses: NDArray[np.float64]
    ranks: NDArray[np.int64]
    confidences: NDArray[np.float64]
    entropies: NDArray[np.float64]


def row_statistics(
    rows: NDArray[Any], labels: NDArray[np.int64], ignore_index: int
) -> RowStatistics:
    """Run the fused sweep over ``rows`` (float32/64, C-contiguous) with checked ``labels``."""
    n_rows = rows.shape[0]
    statistics = RowStatistics(
        np.empty(n_rows), np.empty(n_rows, np.int64), np.empty(n_rows), np.empty(n_rows)
    )
    evaluation_rows(
        rows.size, rows, rows_to_chain(rows), labels, ignore_index, statistics.losses,
        statistics.ranks, statistics.confidences, statistics.entropies,
    )  # fmt: skip
    return statistics


def summarise(
    statistics: RowStatistics,
    labels: NDArray[np.int64],
    weight: NDArray[np.float64],
    top_k: tuple[int, ...],
    bins: int,
) -> Evaluation:
    """The :class:`Evaluation` of per-row statistics."""
    counted = statistics.ranks >= 0
    finite = counted & np.isfinite(statistics.losses)
    losses = statistics.losses[finite]
    ranks = statistics.ranks[finite]
    confidences = statistics.confidences[finite]
    weights = weight[labels[finite]]
    slots = np.minimum((confidences * bins).astype(np.int64), bins - 1)
    hit = ranks == 0
    n_counted = int(finite.sum())
    return Evaluation(
        top_k=top_k,
        bins=bins,
        count=n_counted,
        ignored=int(counted.size - counted.sum()),
        nonfinite=int(counted.sum()) - n_counted,
        weight_sum=float(weights.sum()),
        loss_sum=float(weights @ losses),
        hits=tuple(int(np.count_nonzero(ranks < k)) for k in top_k),
        confidence_sum=float(confidences.sum()),
        entropy_sum=float(statistics.entropies[finite].sum()),
        bin_counts=tuple(int(n) for n in np.bincount(slots, minlength=bins)),
        bin_confidence=tuple(float(s) for s in np.bincount(slots, confidences, minlength=bins)),
        bin_hits=tuple(int(n) for n in np.bincount(slots[hit], minlength=bins)),
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
    r"""Loss, perplexity, top-k accuracy and calibration of logits, in one sweep.

    For each row the sweep takes the max :math:`m`, the exp-sum
    :math:`S = \sum_c e^{z_c - m}`, the label's logit and rank, and
    :math:`\sum_c e^{z_c - m}(m - z_c)`; everything below follows from those:

    .. math::

        \ell = m + \log S - z_y, \qquad \max_c p_c = 1 / S, \qquad
        H(p) = \log S + \frac{1}{S} \sum_c e^{z_c - m} (m - z_c)

    No ``N x C`` temporary is made. See :class:`Evaluation` for the metrics and
    docs/evaluation.md for their definitions and sources.

    Parameters
    ----------
    logits : array_like of float16, float32 or float64
        Scores, classes along ``axis``.
    target : array_like of int
        Class indices, the shape of ``logits`` without ``axis``; ``ignore_index`` marks rows
        that count nowhere (padding).
    axis : int, default -1
        The class axis.
    ignore_index : int, default -100
        Label value of rows to skip.
    weight : array_like of float, shape (C,), optional
        Class weights of the mean negative log-likelihood (as in :func:`cross_entropy`'s
        ``"mean"``); the other metrics count rows unweighted.
    top_k : int or sequence of int, default (1, 5)
        The ``k`` of the top-k accuracies.
    bins : int, default 15
        Equal-width confidence bins of the expected calibration error.

    Returns
    -------
    Evaluation
        Sums and counts (combinable with ``+``) and the metrics as properties.

    Examples
    --------
    >>> import numpy as np, fastxent
    >>> logits = np.log(np.array([[0.7, 0.2, 0.1], [0.1, 0.6, 0.3]]))
    >>> result = fastxent.evaluate(logits, np.array([0, 2]), top_k=(1, 2))
    >>> round(result.perplexity, 4), result.accuracy[1], round(result.confidence, 2)
    (2.1822, 0.5, 0.65)
    """
    problem = prepare(logits, target, axis, weight, ignore_index, "none", 0.0, None, True)
    if problem.labels is None:
        raise TypeError(
            "evaluate needs integer class indices as target, got floats: pass "
            "target.astype(np.int64) if they are indices"
        )
    ks, n_bins = top_k_values(top_k), bin_count(bins)
    check_labels(problem.labels, problem.rows.shape[1], problem.ignore_index)
    statistics = row_statistics(problem.rows, problem.labels, problem.ignore_index)
    return summarise(statistics, problem.labels, problem.weight, ks, n_bins)
