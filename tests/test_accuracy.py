"""Accuracy of float32 softmax cross-entropy against exact values, beside PyTorch and JAX.

For random float32 logits (standard normal times s, s in {1, 5, 20}) at C = 1000, 32000 and
262144, the exact per-row loss and gradient are computed in float64 from the float32 logits
(``oracle.exact_rows``: exp in float64, row sums with ``math.fsum``, and ``log1p`` of the
other classes' mass when the target is the row's maximum): float64's rounding is ~1e-16, a
million times below the bounds checked here. Nothing expected is computed by fastxent. The
bounds (docs/accuracy.md):

- loss, reduction="none": relative error ``|l - L| / L <= 2e-7`` on every row;
- "confident" rows (target logit 10..15 above the logsumexp of the others, so ``L < 1e-3``):
  relative error ``<= 1e-6``;
- gradient: ``max_c |g_c - G_c| <= 2e-7 * max_c |G_c|`` on every row (error relative to the
  row's scale).

:func:`test_peers_table` prints the worst errors of fastxent, PyTorch and JAX (float32, when
importable) side by side (``pytest -s`` shows it) and checks that fastxent's worst loss and
gradient errors at C = 262144 are no larger than PyTorch's.
"""

from __future__ import annotations

import importlib
import math
from typing import Any

import numpy as np
import pytest
from conftest import import_torch
from oracle import Rows, exact_rows

import fastxent

#: (C, N): rows per scale kept small, so that the exact float64 sums stay cheap.
SIZES = [(1000, 16), (32000, 8), (262144, 2)]
SCALES = [1.0, 5.0, 20.0]
LOSS_BOUND = 2e-7
CONFIDENT_LOSS_BOUND = 1e-6
CONFIDENT_LOSS = 1e-3
GRAD_BOUND = 2e-7


def random_rows(n_classes: int, n_rows: int, scale: float, seed: int) -> Rows:
    rng = np.random.default_rng(seed)
    logits = (scale * rng.standard_normal((n_rows, n_classes))).astype(np.float32)
    labels = rng.integers(0, n_classes, n_rows)
    return exact_rows(logits, labels)


def confident_rows(n_classes: int, n_rows: int, seed: int) -> Rows:
    """Rows whose target logit is 10..15 above the logsumexp of the others (loss < 1e-3).

    The other logits cycle through the scales 1, 5, 20; for spread-out rows their
    logsumexp is their maximum, so the target is max + 10..15.
    """
    rng = np.random.default_rng(seed)
    scales = np.array([SCALES[i % len(SCALES)] for i in range(n_rows)])[:, None]
    logits = (scales * rng.standard_normal((n_rows, n_classes))).astype(np.float32)
    labels = rng.integers(0, n_classes, n_rows)
    for i, y in enumerate(labels):
        others = np.delete(logits[i], y).astype(np.float64)
        top = others.max()
        lse_others = top + math.log(math.fsum(np.exp(others - top)))
        logits[i, y] = np.float32(lse_others + rng.uniform(10.0, 15.0))
    return exact_rows(logits, labels)


@pytest.fixture(scope="module")
def cases() -> dict[tuple[int, Any], Rows]:
    """Every (C, scale) set of random rows and every C's confident rows, computed once."""
    out: dict[tuple[int, Any], Rows] = {}
    for n_classes, n_rows in SIZES:
        for k, scale in enumerate(SCALES):
            out[n_classes, scale] = random_rows(n_classes, n_rows, scale, seed=n_classes + k)
        out[n_classes, "confident"] = confident_rows(n_classes, n_rows, seed=7 * n_classes)
    return out


def loss_errors(loss: Any, rows: Rows) -> np.ndarray:
    """Relative error of each row's loss."""
    return np.abs(np.asarray(loss, np.float64) - rows.loss) / rows.loss


def grad_errors(grad: Any, rows: Rows) -> np.ndarray:
    """Largest absolute error of each row's gradient, over the row's largest exact entry."""
    error = np.abs(np.asarray(grad, np.float64) - rows.grad).max(axis=1)
    return error / np.abs(rows.grad).max(axis=1)


def fastxent_errors(rows: Rows) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-row errors of fastxent's float32 loss (forward, and with gradient) and gradient."""
    loss = fastxent.cross_entropy(rows.logits, rows.labels, reduction="none")
    loss2, grad = fastxent.cross_entropy_with_grad(rows.logits, rows.labels, reduction="none")
    assert loss.dtype == np.float32 and grad.dtype == np.float32
    return loss_errors(loss, rows), loss_errors(loss2, rows), grad_errors(grad, rows)


SIZE_IDS = [pytest.param(c, id=f"C{c}") for c, _ in SIZES]
SCALE_IDS = [pytest.param(s, id=f"s{s:g}") for s in SCALES]


# --------------------------------------------------------------------------------------
# fastxent against the exact values
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("scale", SCALE_IDS)
@pytest.mark.parametrize("n_classes", SIZE_IDS)
def test_loss_relative_error(cases, n_classes, scale):
    rows = cases[n_classes, scale]
    forward, with_grad, _ = fastxent_errors(rows)
    worst_forward, worst_with_grad = float(forward.max()), float(with_grad.max())
    assert worst_forward <= LOSS_BOUND, f"cross_entropy: worst relative error {worst_forward:.3g}"
    assert worst_with_grad <= LOSS_BOUND, (
        f"cross_entropy_with_grad: worst relative error {worst_with_grad:.3g}"
    )


@pytest.mark.parametrize("n_classes", SIZE_IDS)
def test_confident_loss_relative_error(cases, n_classes):
    rows = cases[n_classes, "confident"]
    assert rows.loss.max() < CONFIDENT_LOSS, rows.loss  # the rows are what they claim
    forward, with_grad, _ = fastxent_errors(rows)
    worst_forward, worst_with_grad = float(forward.max()), float(with_grad.max())
    assert worst_forward <= CONFIDENT_LOSS_BOUND, (
        f"cross_entropy: worst relative error {worst_forward:.3g} (losses {rows.loss})"
    )
    assert worst_with_grad <= CONFIDENT_LOSS_BOUND, (
        f"cross_entropy_with_grad: worst relative error {worst_with_grad:.3g}"
    )


@pytest.mark.parametrize("scale", SCALE_IDS)
@pytest.mark.parametrize("n_classes", SIZE_IDS)
def test_gradient_error(cases, n_classes, scale):
    rows = cases[n_classes, scale]
    _, _, grad = fastxent_errors(rows)
    error = float(grad.max())
    assert error <= GRAD_BOUND, f"worst gradient error / row scale {error:.3g}"


@pytest.mark.parametrize("n_classes", SIZE_IDS)
def test_confident_gradient_error(cases, n_classes):
    # The target's entry is p_y - 1 ~ -L, tiny: rounding p_y to float32 before subtracting
    # 1 costs up to 2**-25 absolute, far above 2e-7 * L. Computing it as -(S - e_y) / S in
    # float64 (S - e_y: the exp-sum of the other classes) would not.
    rows = cases[n_classes, "confident"]
    _, _, grad = fastxent_errors(rows)
    row = int(np.argmax(grad))
    error = float(grad[row])
    assert error <= GRAD_BOUND, (
        f"worst gradient error / row scale {error:.3g} (row {row}, loss "
        f"{rows.loss[row]:.3g}, target entry {rows.grad[row, rows.labels[row]]:.3g})"
    )


def test_bounds_can_fail(cases):
    # The metric resolves float32 ulps: fastxent's losses moved up by 5 ulps (>= 4.5 ulps of
    # error, >= 2.7e-7 relative) fail the loss bound on some row.
    rows = cases[1000, 5.0]
    loss = fastxent.cross_entropy(rows.logits, rows.labels, reduction="none")
    for _ in range(5):
        loss = np.nextafter(loss, np.float32(np.inf))
    assert loss_errors(loss, rows).min() > LOSS_BOUND


# --------------------------------------------------------------------------------------
# The peers: PyTorch and JAX, float32
# --------------------------------------------------------------------------------------


def torch_errors(torch: Any, rows: Rows) -> tuple[np.ndarray, np.ndarray]:
    """Per-row loss and gradient errors of ``torch.nn.functional.cross_entropy``, float32."""
    logits = torch.tensor(rows.logits, requires_grad=True)
    loss = torch.nn.functional.cross_entropy(logits, torch.tensor(rows.labels), reduction="none")
    loss.sum().backward()
    return loss_errors(loss.detach().numpy(), rows), grad_errors(logits.grad.numpy(), rows)


def jax_errors(jax: Any, rows: Rows) -> tuple[np.ndarray, np.ndarray]:
    """Per-row errors of ``-jax.nn.log_softmax(z)[y]`` (optax's formula) and its gradient."""
    jnp = jax.numpy
    labels = jnp.asarray(rows.labels)[:, None]

    def losses(z: Any) -> Any:
        return -jnp.take_along_axis(jax.nn.log_softmax(z, axis=-1), labels, axis=-1)[:, 0]

    z = jnp.asarray(rows.logits)
    loss = losses(z)
    grad = jax.grad(lambda v: losses(v).sum())(z)
    assert loss.dtype == jnp.float32
    return loss_errors(np.asarray(loss), rows), grad_errors(np.asarray(grad), rows)


def import_jax() -> Any | None:
    """JAX, or None when it cannot be imported (its column of the table is then empty)."""
    try:
        return importlib.import_module("jax")
    except ImportError:
        return None


def worst(errors: list[np.ndarray]) -> float:
    return float(max(e.max() for e in errors))


def test_peers_table(cases):
    torch = import_torch()
    jax = import_jax()
    metrics = ("loss", "confident loss", "gradient", "confident grad")
    table: dict[str, dict[int, dict[str, float]]] = {}
    for library in ("fastxent", "torch", "jax"):
        if library == "jax" and jax is None:
            continue
        table[library] = {}
        for n_classes, _ in SIZES:
            random_sets = [cases[n_classes, s] for s in SCALES]
            confident = cases[n_classes, "confident"]
            if library == "fastxent":
                errors = [fastxent_errors(r) for r in random_sets]
                loss = [e[0] for e in errors] + [e[1] for e in errors]
                grad = [e[2] for e in errors]
                *confident_loss, confident_grad = fastxent_errors(confident)
            else:
                errors_of = torch_errors if library == "torch" else jax_errors
                module = torch if library == "torch" else jax
                errors = [errors_of(module, r) for r in random_sets]
                loss, grad = [e[0] for e in errors], [e[1] for e in errors]
                confident_loss, confident_grad = errors_of(module, confident)
                confident_loss = [confident_loss]
            table[library][n_classes] = {
                "loss": worst(loss),
                "confident loss": worst(confident_loss),
                "gradient": worst(grad),
                "confident grad": worst([confident_grad]),
            }
    libraries = list(table)
    header = f"{'C':>7} | " + " | ".join(
        f"{metric:^{11 * len(libraries) - 1}}" for metric in metrics
    )
    names = f"{'':>7} | " + " | ".join(
        " ".join(f"{name:>10}" for name in libraries) for _ in metrics
    )
    lines = [
        "worst error, float32: loss |l - L| / L; gradient max|g - G| / max|G| per row;",
        "random rows (scales 1, 5, 20) and confident rows (L < 1e-3)",
        header,
        names,
    ]
    for n_classes, _ in SIZES:
        cells = [
            " ".join(f"{table[lib][n_classes][metric]:>10.2e}" for lib in libraries)
            for metric in metrics
        ]
        lines.append(f"{n_classes:>7} | " + " | ".join(cells))
    text = "\n".join(lines)
    print("\n" + text)
    ours, theirs = table["fastxent"][262144], table["torch"][262144]
    for metric in ("loss", "confident loss", "gradient"):
        assert ours[metric] <= theirs[metric], f"{metric}: fastxent worse than torch\n{text}"
