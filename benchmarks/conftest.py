"""Shared data for the benchmark suites (run with ``python -m pytest benchmarks``)."""

from __future__ import annotations

import numpy as np
import pytest


@pytest.fixture(scope="module")
def make_batch():
    """Random float logits and integer labels of a given shape, cached per module."""
    cache: dict[tuple[int, int, str], tuple[np.ndarray, np.ndarray]] = {}

    def make(n_rows: int, n_classes: int, dtype: str = "float32"):
        key = (n_rows, n_classes, dtype)
        if key not in cache:
            rng = np.random.default_rng(0)
            logits = (rng.standard_normal((n_rows, n_classes)) * 2.0).astype(dtype)
            cache.clear()  # keep one large batch in memory at a time
            cache[key] = (logits, rng.integers(0, n_classes, size=n_rows))
        return cache[key]

    return make
