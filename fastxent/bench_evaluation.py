"""``fastxent bench --operation evaluate``: the metrics of a batch of logits, by each peer.

Every peer computes the same numbers (mean NLL, top-1 and top-5 accuracy, the 15-bin
expected calibration error): fastxent's :func:`~fastxent.evaluate` in one sweep; NumPy
written the usual way (a log-softmax, then each metric from it); scikit-learn's
``log_loss`` and ``top_k_accuracy_score`` (with NumPy's calibration error, which it does
not have). fastxent's own ``cross_entropy`` forward is the throughput to compare with: an
evaluation reads the data once, as the loss alone does.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np

import fastxent
from fastxent.bench import Measurement, interleaved_samples, measurements

SHAPES = ((4096, 32000), (8192, 1000))
QUICK_SHAPES = ((8192, 1000),)
PEERS = ("fastxent", "cross_entropy", "numpy", "sklearn")
BINS = 15


def available_peers() -> list[str]:
    """The peers that can run here (scikit-learn is an optional test dependency)."""
    installed = importlib.util.find_spec("sklearn") is not None
    return [p for p in PEERS if p != "sklearn" or installed]


def _calibration_error(confidence: np.ndarray, correct: np.ndarray) -> float:
    slots = np.minimum((confidence * BINS).astype(np.int64), BINS - 1)
    counts = np.bincount(slots, minlength=BINS)
    gaps = np.bincount(slots, correct - confidence, minlength=BINS)
    return float(np.abs(gaps).sum() / counts.sum())


def _numpy_metrics(x: np.ndarray, y: np.ndarray) -> tuple[float, float, float, float]:
    """NLL, top-1, top-5 and ECE as NumPy code usually computes them (N x C temporaries)."""
    shifted = x - x.max(axis=1, keepdims=True)
    log_p = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    rows = np.arange(y.size)
    nll = float(-log_p[rows, y].mean())
    rank = (x > x[rows, y][:, np.newaxis]).sum(axis=1)
    confidence = np.exp(log_p.max(axis=1))
    ece = _calibration_error(confidence, (rank == 0).astype(np.float64))
    return nll, float((rank < 1).mean()), float((rank < 5).mean()), ece


def _sklearn_metrics(x: np.ndarray, y: np.ndarray) -> tuple[float, float, float, float]:
    from sklearn.metrics import log_loss, top_k_accuracy_score

    labels = np.arange(x.shape[1])
    shifted = np.exp(x - x.max(axis=1, keepdims=True))
    p = shifted / shifted.sum(axis=1, keepdims=True)
    nll = float(log_loss(y, p, labels=labels))
    top1 = float(top_k_accuracy_score(y, x, k=1, labels=labels))
    top5 = float(top_k_accuracy_score(y, x, k=5, labels=labels))
    confidence = p.max(axis=1)
    ece = _calibration_error(confidence, (p.argmax(axis=1) == y).astype(np.float64))
    return nll, top1, top5, ece


def _calls(x: np.ndarray, y: np.ndarray) -> dict[str, Callable[[], Any]]:
    return {
        "fastxent": lambda: fastxent.evaluate(x, y, top_k=(1, 5), bins=BINS).nll,
        "cross_entropy": lambda: fastxent.cross_entropy(x, y),
        "numpy": lambda: _numpy_metrics(x, y)[0],
        "sklearn": lambda: _sklearn_metrics(x, y)[0],
    }


def run_evaluate(
    shapes: Iterable[tuple[int, int]] = QUICK_SHAPES,
    dtype: str = "float32",
    peers: Iterable[str] | None = None,
    threads: int | None = None,
    quick: bool = True,
    progress: Callable[[str], None] | None = None,
    seed: int = 0,
) -> list[Measurement]:
    """Time the evaluation of logits ``(N, C)`` by each peer; as :func:`fastxent.bench.run`.

    ``speedup`` is the peer's time over fastxent's: below 1 for ``cross_entropy``, whose
    inverse is the evaluation's share of the forward's throughput.
    """
    import numba

    from fastxent import _threading

    _threading.prepare()
    available = available_peers()
    chosen = [p for p in (peers or available) if p in available]
    if "fastxent" not in chosen:
        chosen.insert(0, "fastxent")
    n_threads = threads or numba.config.NUMBA_NUM_THREADS  # type: ignore[attr-defined]
    numba.set_num_threads(n_threads)
    rng = np.random.default_rng(seed)
    results: list[Measurement] = []
    for n_rows, n_classes in shapes:
        x = (rng.standard_normal((n_rows, n_classes), dtype=np.float64) * 2.0).astype(dtype)
        y = rng.integers(0, n_classes, size=n_rows)
        calls = _calls(x, y)
        if progress:
            progress(f"{n_rows} x {n_classes} {dtype} evaluate")
        losses, samples = interleaved_samples({p: calls[p] for p in chosen}, 3 if quick else 5)
        results += measurements((n_rows, n_classes), dtype, "evaluate", samples, losses, x.nbytes)
    return results
