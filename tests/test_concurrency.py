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

from fastxent._tuning import Thresholds

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


# Which compilation runs a call, in a fresh interpreter without the suite's threshold.
THRESHOLD_SCRIPT = """
import warnings, numpy as np, numba, fastxent
from fastxent._kernels import xent_labels
warnings.simplefilter("error")  # a warning about the threshold fails the check

kernel = xent_labels.xent_labels_forward
ran = []
for which in ("parallel", "serial"):  # count the calls of each compilation
    compiled = getattr(kernel, which)
    kernel.__dict__[which] = lambda *args, compiled=compiled, which=which: (
        ran.append(which) or compiled(*args)
    )

def compilation(n_rows, n_classes):
    x = np.random.default_rng(0).standard_normal((n_rows, n_classes)).astype(np.float32)
    fastxent.cross_entropy(x, np.zeros(n_rows, dtype=np.int64))
    return ran.pop()

found = [compilation(n_rows, n_classes) for n_rows, n_classes in SHAPES]
print(numba.threading_layer(), *found)
"""

#: fastxent's default thresholds (without FASTXENT_PARALLEL_MIN_ELEMENTS): under omp, and
#: under the layers whose workers sleep (tbb and workqueue).
DEFAULTS = Thresholds()
SPINNING = DEFAULTS.parallel_min_elements
SLEEPING = DEFAULTS.parallel_min_elements_by_layer["tbb"]
assert SLEEPING == DEFAULTS.parallel_min_elements_by_layer["workqueue"] > SPINNING
#: Inputs at omp's threshold, just under the sleeping layers' and at it.
THRESHOLD_SHAPES = [
    (-(-SPINNING // 512), 512),
    (-(-SLEEPING // 1024) - 1, 1024),
    (-(-SLEEPING // 1024), 1024),
]
THRESHOLD_SCRIPT = THRESHOLD_SCRIPT.replace("SHAPES", repr(THRESHOLD_SHAPES))


def run_threshold_check(layer: str, threshold: str | None) -> list[str]:
    env = dict(os.environ)
    env.pop("NUMBA_THREADING_LAYER", None)
    env.pop("FASTXENT_PARALLEL_MIN_ELEMENTS", None)
    if layer != "default":
        env["NUMBA_THREADING_LAYER"] = layer
    if threshold is not None:
        env["FASTXENT_PARALLEL_MIN_ELEMENTS"] = threshold
    env["NUMBA_NUM_THREADS"] = "2"
    result = subprocess.run(
        [sys.executable, "-c", THRESHOLD_SCRIPT],
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout.split()


@pytest.mark.slow
@pytest.mark.parametrize("layer", LAYERS)
def test_parallel_threshold_follows_the_threading_layer(layer):
    """omp's spinning team pays from SPINNING elements; tbb and workqueue wake theirs: from
    SLEEPING."""
    chosen, *compilations = run_threshold_check(layer, None)
    if layer != "default":
        assert chosen == layer
    if chosen == "omp":
        assert compilations == ["parallel", "parallel", "parallel"]
    else:
        assert compilations == ["serial", "serial", "parallel"]


@pytest.mark.slow
def test_parallel_threshold_from_the_environment():
    """``FASTXENT_PARALLEL_MIN_ELEMENTS`` sets the threshold under every layer."""
    n_rows, n_classes = THRESHOLD_SHAPES[1]
    _, *compilations = run_threshold_check("workqueue", str(n_rows * n_classes))
    assert compilations == ["serial", "parallel", "parallel"]


def test_invalid_parallel_threshold_warns_and_keeps_the_defaults():
    env = dict(os.environ, FASTXENT_PARALLEL_MIN_ELEMENTS="lots", NUMBA_THREADING_LAYER="omp")
    script = THRESHOLD_SCRIPT.replace('warnings.simplefilter("error")', "")
    result = subprocess.run(
        [sys.executable, "-W", "always", "-c", script],
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "FASTXENT_PARALLEL_MIN_ELEMENTS='lots' is not a number of elements" in result.stderr
    assert result.stdout.split() == ["omp", "parallel", "parallel", "parallel"]
