"""The exact values every test compares against: the suite's one oracle.

Nothing here calls fastxent. Two oracles, each exact far beyond what the tests resolve:

- :class:`Exact` (and :func:`exact_binary`): softmax quantities of rows of logits computed
  from the input values in long double (x87, 64-bit significand) for float64 inputs and in
  float64 for float32 inputs (2**29 times finer than float32), with ``nan`` for rows that
  have no distribution. A test rounds them once to the result dtype (:func:`rounded`): a
  value beyond the dtype's range becomes its infinity, as IEEE rounding does.
- :func:`exact_rows`: the loss and gradient of float32 rows with integer labels in float64,
  each row's exp-sum with ``math.fsum`` (correctly rounded) and ``log1p`` of the other
  classes' mass where the target is the row's maximum (no cancellation): the accuracy
  measurement's oracle (docs/accuracy.md).

Also the dtype facts the tolerances are written in (:data:`ULP`, :data:`TINIEST`, ...).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

INF = math.inf
NAN = math.nan
LD = np.longdouble
LN2 = math.log(2.0)
#: float64's spacing at 1: the absolute accuracy of ``log(S)`` for a float64 sum ``S ~ 1``.
EPS64 = 2.0**-52
#: Spacing of the dtype's numbers just above 1.
ULP = {np.dtype(np.float32): 2.0**-23, np.dtype(np.float64): EPS64}
#: Smallest positive subnormal of each dtype.
TINIEST = {np.dtype(np.float32): 2.0**-149, np.dtype(np.float64): 2.0**-1074}
#: A subnormal logit of each dtype.
SUBNORMAL = {np.dtype(np.float32): 1e-40, np.dtype(np.float64): 5e-320}
#: The dtype's largest finite value (float32: ~3.4028e38; float64: ~1.7977e308).
LARGEST = {d: float(np.finfo(d).max) for d in (np.dtype(np.float32), np.dtype(np.float64))}


# --------------------------------------------------------------------------------------
# Softmax quantities of rows, in long double (float64 inputs) or float64 (float32 inputs)
# --------------------------------------------------------------------------------------


def no_distribution(z: np.ndarray) -> np.ndarray:
    """Rows (last axis) without a softmax: a nan or +inf entry, or every entry -inf."""
    return np.isnan(z).any(-1) | np.isposinf(z).any(-1) | np.isneginf(z).all(-1)


def working_dtype(x: np.ndarray) -> Any:
    """Long double for float64 input; float64 for float32 input (2**29 times finer than it)."""
    return LD if np.asarray(x).dtype == np.float64 else np.float64


def log_of(values: np.ndarray) -> np.ndarray:
    """``log(values)`` (``-inf`` at 0), computed once per distinct value (long double is slow)."""
    unique, inverse = np.unique(values, return_inverse=True)
    with np.errstate(divide="ignore"):
        return np.log(unique)[inverse].reshape(values.shape)


class Exact:
    """Softmax quantities of each row of ``x``, exactly for the dtype; ``nan`` for rows without.

    ``m = max z``, ``e = exp(z - m)`` (0 at ``-inf``), ``s = sum e``, ``p = e / s``,
    ``logp = (z - m) - log s``, ``lse = m + log s``; ``gap = |z - m|`` (0 where ``z = -inf``).
    (``lse`` of a row without a distribution is ``nan``, ``+inf`` or ``-inf``.)
    """

    def __init__(self, x: np.ndarray) -> None:
        self.work = working_dtype(x)
        self.dtype = np.asarray(x).dtype
        z = np.asarray(x).astype(self.work)
        self.bad = no_distribution(z)
        z = np.where(self.bad[..., None], 0.0, z)
        m = z.max(axis=-1, keepdims=True)
        e = np.exp(z - m)
        s = e.sum(axis=-1, keepdims=True)
        bad = self.bad[..., None]
        self.p = np.where(bad, NAN, e / s)
        self.logp = np.where(bad, NAN, (z - m) - np.log(s))
        # logsumexp of a row without a distribution: nan if it holds nan, else +inf if it
        # holds +inf, else (all -inf) -inf: SciPy's and PyTorch's values.
        raw = np.asarray(x).astype(self.work)
        unusual = np.where(np.isnan(raw).any(-1), NAN, np.where((raw == INF).any(-1), INF, -INF))
        self.lse = np.where(self.bad, unusual, m[..., 0] + np.log(s[..., 0]))
        gap = np.minimum(np.abs(z - m), 2.0**64)  # |z - m| may pass float64's range
        self.gap = np.where(np.isneginf(z), 0.0, gap.astype(np.float64))
        finite = np.where(np.isfinite(z), np.abs(z), 0.0).astype(np.float64)
        #: Largest finite |logit| of each row: what the reference's float64 lse rounds at.
        self.magnitude = finite.max(axis=-1)

    def index_loss_grad(self, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``-logp[y]`` and ``p - onehot(y)`` of each row."""
        rows = np.arange(len(y))
        grad = self.p.copy()
        grad[rows, y] -= 1
        return -self.logp[rows, y], grad

    def prob_loss_grad(self, q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``-sum q logp`` (``0 log 0 = 0``) and ``sum(q) p - q`` of each row."""
        q = np.asarray(q).astype(self.work)
        with np.errstate(invalid="ignore"):  # 0 * inf, dropped by the where
            loss = np.where(q == 0, 0.0, q * -self.logp).sum(-1)
        loss = np.where(self.bad, NAN, loss)
        return loss, q.sum(-1, keepdims=True) * self.p - q

    def kl(self, q: np.ndarray) -> np.ndarray:
        """``sum q (log q - logp)`` (``0 log 0 = 0``) of each row."""
        q = np.asarray(q).astype(self.work)
        with np.errstate(invalid="ignore"):  # -inf - -inf where q = 0: dropped
            kl = np.where(q == 0, 0.0, q * (log_of(q) - self.logp)).sum(-1)
        return np.where(self.bad, NAN, kl)


def exact_binary(x: np.ndarray, z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Elementwise ``(1 - z) softplus(x) + z softplus(-x)`` and ``sigmoid(x) - z``.

    A zero coefficient drops its term (``0 * inf = 0``); a nan logit gives nan.
    """
    x = np.asarray(x).astype(LD)
    z = np.asarray(z).astype(LD)
    nan = np.isnan(x)
    x = np.where(nan, LD(0), x)
    small = np.exp(-np.abs(x))  # exp(-|x|) <= 1: never overflows
    softplus_pos = np.maximum(x, LD(0)) + np.log1p(small)  # softplus(x) = -log(1 - sigmoid)
    softplus_neg = np.maximum(-x, LD(0)) + np.log1p(small)  # softplus(-x) = -log(sigmoid)
    with np.errstate(invalid="ignore"):  # 0 * inf, dropped by the where
        loss = np.where(z == 1, LD(0), (1 - z) * softplus_pos)
        loss += np.where(z == 0, LD(0), z * softplus_neg)
    sigmoid = np.where(x >= 0, 1 / (1 + small), small / (1 + small))
    return np.where(nan, LD(NAN), loss), np.where(nan, LD(NAN), sigmoid - z)


def rounded(values: Any, dtype: Any) -> np.ndarray:
    """``values`` rounded once to ``dtype``; beyond its range they become its infinities."""
    with np.errstate(over="ignore"):
        return np.asarray(values).astype(dtype)


# --------------------------------------------------------------------------------------
# float32 rows with integer labels, in float64 with correctly rounded sums
# --------------------------------------------------------------------------------------


@dataclass
class Rows:
    """float32 logits and labels, with the exact float64 loss and gradient of each row."""

    logits: np.ndarray  # (N, C) float32
    labels: np.ndarray  # (N,) int64
    loss: np.ndarray  # (N,) float64
    grad: np.ndarray  # (N, C) float64


def exact_rows(logits: np.ndarray, labels: np.ndarray) -> Rows:
    """Exact loss ``log S + (m - z_y)`` and gradient ``p - onehot(y)`` of float32 rows.

    ``S = sum exp(z - m)`` is summed with ``math.fsum`` (correctly rounded). When the
    target is the row's maximum the loss is ``log1p(S - 1)`` and the target's gradient
    ``-(S - 1) / S``, with ``S - 1`` the fsum of the other classes: no cancellation.
    """
    z = logits.astype(np.float64)
    n_rows = len(z)
    loss = np.empty(n_rows)
    grad = np.empty(z.shape)
    for i in range(n_rows):
        row, y = z[i], int(labels[i])
        top = row.max()
        e = np.exp(row - top)
        others = e.copy()
        others[y] = 0.0
        rest = math.fsum(others)  # sum over c != y
        total = rest + e[y]
        if row[y] == top:
            loss[i] = math.log1p(rest)
        else:
            loss[i] = math.log(math.fsum(e)) + (top - row[y])
        grad[i] = e / total
        grad[i, y] = -rest / total
    return Rows(logits, labels, loss, grad)
