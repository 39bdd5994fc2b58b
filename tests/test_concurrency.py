"""Threads and processes: no crash, no deadlock, results identical to single-threaded ones.

Each check runs in a fresh interpreter (Numba chooses its threading layer once per
process), under each layer this machine can load. ``workqueue`` aborts on concurrent
launches and GNU ``omp`` kills forked children unless fastxent's guards work, so these
tests fail loudly if a guard breaks.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).parent / "scripts" / "concurrency_check.py"
LAYERS = ["default", "omp", "workqueue"]


def run_check(kind: str, layer: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    env.pop("NUMBA_THREADING_LAYER", None)
    if layer != "default":
        env["NUMBA_THREADING_LAYER"] = layer
    env["NUMBA_NUM_THREADS"] = "2"
    return subprocess.run(
        [sys.executable, str(SCRIPT), kind],
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )


@pytest.mark.slow
@pytest.mark.parametrize("layer", LAYERS)
def test_many_threads_calling_every_loss(layer):
    result = run_check("threads", layer)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "threads ok" in result.stdout


@pytest.mark.slow
@pytest.mark.parametrize("layer", LAYERS)
def test_child_processes_after_parallel_kernels(layer):
    result = run_check("processes", layer)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "processes ok" in result.stdout
