"""``linear_cross_entropy`` over blocks of the vocabulary.

Two uses. A forward of integer targets whose chunks would hold few rows (a large
vocabulary) takes many rows against one block of classes at a time instead, each block's
logits class-major and folded into every row's running max and exp-sum by a fused kernel
(:func:`forward_in_blocks`): products of many rows are faster, and no logit is computed
twice. And where even ``LINEAR_MIN_ROWS`` rows of logits exceed the working memory (a vocabulary of
millions, or a small budget), each chunk of rows is swept over blocks of classes twice:
first for each row's running max and exp-sum (an online log-sum-exp) and the sums that
the loss needs, then, knowing ``lse``, for the gradient, recomputing each block's logits.
Written with NumPy on float64 row statistics: the products dominate its time.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from fastxent._blas import add_product
from fastxent._kernels.linear_columns import class_major_partials
from fastxent._plan import LinearPlan, class_major_tile

if TYPE_CHECKING:
    from fastxent._api.linear import LinearProblem, _Gradients


def forward_in_blocks(
    problem: LinearProblem, plan: LinearPlan, losses: NDArray[np.float64]
) -> None:
    """Per-row losses of integer targets, each chunk of rows swept over blocks of classes."""
    from fastxent._api.linear import _chunk_rows

    assert problem.labels is not None and plan.vocabulary_block is not None
    n_classes = problem.linear_weight.shape[0]
    size = plan.vocabulary_block
    buffer = np.empty(size * plan.rows_per_chunk, problem.dtype)
    dtype = problem.dtype.type
    cap = None if problem.softcap is None else dtype(problem.softcap)
    inverse = None if problem.softcap is None else dtype(1.0 / problem.softcap)
    smoothing = problem.smoothing
    for where in _chunk_rows(problem, plan.rows_per_chunk):
        rows = problem.input[where]
        labels = problem.labels[where]
        n_rows = rows.shape[0]
        top = np.full(n_rows, -np.inf)
        total = np.zeros(n_rows)
        depth = np.zeros(n_rows)
        target_logit = np.zeros(n_rows)
        seen_weight = 0.0
        for start in range(0, n_classes, size):
            stop = min(start + size, n_classes)
            logits = buffer[: (stop - start) * n_rows].reshape(stop - start, n_rows)
            np.matmul(problem.linear_weight[start:stop], rows.T, out=logits)
            weight = problem.weight[start:stop] if smoothing > 0.0 else None
            class_major_partials(
                logits.size, logits, None if problem.bias is None else problem.bias[start:stop],
                labels, start, weight, seen_weight, cap, inverse, class_major_tile(n_rows), top,
                total, depth, target_logit,
            )  # fmt: skip
            if weight is not None:
                seen_weight += float(weight.sum())
        losses[where] = _labels_losses(problem, labels, top, total, depth, target_logit)


def _labels_losses(
    problem: LinearProblem,
    labels: NDArray[np.int64],
    top: NDArray[np.float64],
    total: NDArray[np.float64],
    depth: NDArray[np.float64],
    target_logit: NDArray[np.float64],
) -> NDArray[np.float64]:
    """Each row's loss from its statistics, as ``xent_terms.labels_loss`` forms it."""
    n_classes = problem.weight.size
    label_weight = problem.weight[labels]
    with np.errstate(invalid="ignore", divide="ignore"):
        log_total = np.log(total)
        nll_weight = (1.0 - problem.smoothing) * label_weight
        # A zero weight removes the term even at a -inf target logit; a nan row stays nan.
        loss = np.where(
            nll_weight != 0.0, nll_weight * (log_total + (top - target_logit)), 0.0 * log_total
        )
        if problem.smoothing > 0.0:
            spread = problem.smoothing / n_classes
            loss += spread * problem.weight.sum() * log_total + spread * depth
        if problem.z_loss != 0.0:
            lse = top + log_total
            loss += np.where(label_weight != 0.0, problem.z_loss * label_weight * lse * lse, 0.0)
    return np.asarray(loss, dtype=np.float64)


class _Block:
    """One chunk of rows, and the buffers of its blocks of classes."""

    def __init__(self, problem: LinearProblem, plan: LinearPlan) -> None:
        assert plan.vocabulary_block is not None
        self.problem = problem
        self.size = plan.vocabulary_block
        room = plan.rows_per_chunk * self.size
        self.logits = np.empty(room, problem.dtype)
        self.scratch = np.empty(room, problem.dtype)
        self.scratch64 = np.empty(room)
        self.masses64 = np.empty(room)

    def classes(self) -> list[tuple[int, int]]:
        n_classes = self.problem.linear_weight.shape[0]
        return [(v, min(v + self.size, n_classes)) for v in range(0, n_classes, self.size)]

    def capped_logits(self, rows: NDArray[Any], start: int, stop: int) -> NDArray[Any]:
        """``z'`` of the chunk's rows for classes ``[start, stop)`` (a buffer view)."""
        problem = self.problem
        logits = self.logits[: rows.shape[0] * (stop - start)].reshape(rows.shape[0], -1)
        np.matmul(rows, problem.linear_weight[start:stop].T, out=logits)
        if problem.bias is not None:
            logits += problem.bias[start:stop]
        if problem.softcap is not None:
            logits *= logits.dtype.type(1.0 / problem.softcap)
            np.tanh(logits, out=logits)
            logits *= logits.dtype.type(problem.softcap)
        return logits

    def weighted_sum(self, values: NDArray[Any], weight: NDArray[np.float64]) -> Any:
        """Row sums of ``values * weight`` in float64; a zero weight gives 0 even at ``-inf``.

        (A ``nan`` value also gives 0 here; its row's ``lse`` is ``nan`` and so is its loss.)
        """
        terms = self.scratch64[: values.size].reshape(values.shape)
        with np.errstate(invalid="ignore"):
            np.multiply(values, weight, out=terms)
        np.copyto(terms, 0.0, where=np.isnan(terms))
        return terms.sum(axis=1)

    def masses(self, where: Any, start: int, stop: int, n_rows: int) -> NDArray[np.float64]:
        """The target masses ``a_c`` of the block's classes, float64 (probabilities)."""
        problem = self.problem
        assert problem.probs is not None
        masses = self.masses64[: n_rows * (stop - start)].reshape(n_rows, -1)
        masses[...] = problem.probs[where, start:stop]
        masses *= 1.0 - problem.smoothing
        masses += problem.smoothing / problem.weight.size
        masses *= problem.weight[start:stop]
        return masses


def run_in_blocks(
    problem: LinearProblem,
    plan: LinearPlan,
    losses: NDArray[np.float64],
    gradients: _Gradients | None,
) -> None:
    """Per-row losses into ``losses`` and, with ``gradients``, the gradients accumulated."""
    from fastxent._api.linear import _chunk_rows

    block = _Block(problem, plan)
    for number, where in enumerate(_chunk_rows(problem, plan.rows_per_chunk)):
        rows = problem.input[where]
        lse, row_losses, coefficient = _statistics(block, rows, where)
        losses[where] = row_losses
        if gradients is not None:
            grad_input = _gradients(block, rows, where, lse, coefficient, gradients, number == 0)
            gradients.input[where] = grad_input
    if gradients is not None:
        gradients.started = True


def _statistics(
    block: _Block, rows: NDArray[Any], where: Any
) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]:
    """``lse``, the loss of each row, and what multiplies ``p`` in its gradient.

    The sums ``sum_c w_c z'_c`` are taken relative to the first block's max ``r`` (of the
    same order as the logits), so that they keep their digits next to ``lse``.
    """
    problem = block.problem
    n_rows = rows.shape[0]
    top = np.full(n_rows, -np.inf)
    total = np.zeros(n_rows)
    reference = np.zeros(n_rows)
    spread = problem.smoothing / problem.weight.size
    target_logit = np.zeros(n_rows)
    weighted = np.zeros(n_rows)  # labels: sum_c w_c (z'_c - r); probs: sum_c a_c (z'_c - r)
    mass = np.zeros(n_rows)  # probs: A = sum_c a_c
    labels = None if problem.labels is None else problem.labels[where]
    with np.errstate(invalid="ignore", over="ignore"):
        for number, (start, stop) in enumerate(block.classes()):
            logits = block.capped_logits(rows, start, stop)
            block_top = logits.max(axis=1).astype(np.float64)
            if number == 0:
                reference = np.where(np.isfinite(block_top), block_top, 0.0)
            new_top = np.maximum(top, block_top)
            shift = np.where(new_top == -np.inf, 0.0, new_top)
            total *= np.where(top == new_top, 1.0, np.exp(top - shift))
            scratch = block.scratch[: logits.size].reshape(logits.shape)
            np.subtract(logits, shift[:, np.newaxis].astype(logits.dtype), out=scratch)
            np.exp(scratch, out=scratch)
            total += scratch.sum(axis=1, dtype=np.float64)
            top = new_top
            np.subtract(logits, reference[:, np.newaxis].astype(logits.dtype), out=scratch)
            if labels is not None:
                inside = (labels >= start) & (labels < stop)
                target_logit[inside] = logits[np.flatnonzero(inside), labels[inside] - start]
                if problem.smoothing > 0.0:
                    weighted += block.weighted_sum(scratch, problem.weight[start:stop])
            else:
                masses = block.masses(where, start, stop, n_rows)
                mass += masses.sum(axis=1)
                weighted += block.weighted_sum(scratch, masses)
        log_total = np.log(total)
        lse = top + log_total
        above = lse - reference
        if labels is not None:
            label_weight = problem.weight[labels]
            keep = (1.0 - problem.smoothing) * label_weight
            row_losses = np.where(keep == 0.0, 0.0, keep * (lse - target_logit))
            if problem.smoothing > 0.0:
                row_losses += spread * (problem.weight.sum() * above - weighted)
            omega = label_weight
            row_mass = keep + spread * problem.weight.sum()
        else:
            row_losses = mass * above - weighted
            omega = np.ones(n_rows)
            row_mass = mass
        if problem.z_loss != 0.0:
            row_losses += np.where(omega == 0.0, 0.0, problem.z_loss * omega * lse * lse)
        row_losses = np.where(np.isnan(lse), np.nan, row_losses)
    coefficient = row_mass + 2.0 * problem.z_loss * omega * lse
    return lse, row_losses, coefficient


def _gradients(
    block: _Block,
    rows: NDArray[Any],
    where: Any,
    lse: NDArray[np.float64],
    coefficient: NDArray[np.float64],
    gradients: _Gradients,
    first_chunk: bool,
) -> NDArray[Any]:
    """The chunk's gradient block by block; returns its part of ``grad_input``.

    ``G = (coefficient p - a) (1 - (z' / s)**2) / divisor``, written over each block's
    logits, then multiplied into the input's, the weight's and the bias's gradients.
    """
    problem = block.problem
    divisor = problem.log_base * (
        problem.denominator if problem.reduction == "mean" and problem.denominator else 1.0
    )
    spread = problem.smoothing / problem.weight.size
    labels = None if problem.labels is None else problem.labels[where]
    grad_input = np.zeros_like(rows)
    dtype = rows.dtype.type
    for start, stop in block.classes():
        logits = block.capped_logits(rows, start, stop)
        g = block.scratch64[: logits.size].reshape(logits.shape)
        with np.errstate(invalid="ignore", over="ignore"):
            np.subtract(logits, lse[:, np.newaxis], out=g)
            np.exp(g, out=g)
            g *= coefficient[:, np.newaxis]
            if labels is not None:
                if problem.smoothing > 0.0:
                    g -= spread * problem.weight[start:stop]
                inside = np.flatnonzero((labels >= start) & (labels < stop))
                label = labels[inside]
                g[inside, label - start] -= (1.0 - problem.smoothing) * problem.weight[label]
            else:
                g -= block.masses(where, start, stop, rows.shape[0])
            if problem.softcap is not None:
                slope = block.masses64[: logits.size].reshape(logits.shape)
                np.multiply(logits, 1.0 / problem.softcap, out=slope)
                np.square(slope, out=slope)
                np.subtract(1.0, slope, out=slope)
                g *= slope
            if problem.row_scale is not None:
                g *= problem.row_scale[where][:, np.newaxis]
            g /= divisor
        grad = logits  # the block's logits are no longer needed: the gradient goes there
        grad[...] = g
        add_product(grad, problem.linear_weight[start:stop], grad_input, rows.shape[0])
        if first_chunk:
            np.matmul(grad.T, rows, out=gradients.linear_weight[start:stop])
        else:
            add_product(grad.T, rows, gradients.linear_weight[start:stop], block.size)
        if gradients.bias is not None:
            gradients.bias[start:stop] += grad.sum(axis=0, dtype=np.float64)
    return grad_input.astype(dtype, copy=False)
