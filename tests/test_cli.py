"""The ``fastxent`` command: ``bench`` on a small case, its JSON and table, and ``info``."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import numba
import numpy as np
import pytest
from conftest import PARALLEL_MIN_ELEMENTS, import_torch

from fastxent import bench, cli, reference


def test_bench_table_and_json_of_a_small_case(tmp_path, capsys):
    path = tmp_path / "results.json"
    arguments = ["bench", "--quick", "--shape", "8,10", "--peers", "fastxent,reference"]
    assert cli.main([*arguments, "--operation", "forward", "--json", str(path)]) == 0
    table = capsys.readouterr().out
    assert re.search(r"8 x 10 +float32 +forward +fastxent", table)
    assert re.search(r"8 x 10 +float32 +forward +reference", table)
    report = json.loads(path.read_text())
    assert report["system"]["layer"] in ("tbb", "omp", "workqueue")
    assert report["system"]["numba"] == numba.__version__
    results = report["results"]
    assert [(r["peer"], r["operation"], r["shape"]) for r in results] == [
        ("fastxent", "forward", [8, 10]),
        ("reference", "forward", [8, 10]),
    ]
    fastxent_result, reference_result = results
    assert len(fastxent_result["times_s"]) == bench._repeats_for(80, quick=True)
    assert fastxent_result["median_s"] == np.median(fastxent_result["times_s"])
    assert fastxent_result["speedup"] == 1.0
    assert reference_result["speedup"] == pytest.approx(
        reference_result["median_s"] / fastxent_result["median_s"]
    )
    # The losses are those of the benchmark's data (seed 0), computed independently here.
    rng = np.random.default_rng(0)
    x = (rng.standard_normal((8, 10), dtype=np.float64) * 2.0).astype(np.float32)
    y = rng.integers(0, 10, size=8)
    expected = float(reference.cross_entropy(x, y))
    assert fastxent_result["loss"] == pytest.approx(expected, rel=1e-6)
    assert reference_result["loss"] == pytest.approx(expected, rel=1e-6)


def test_bench_names_absent_peers(monkeypatch, capsys):
    installed = {"fastxent": True, "reference": True, "torch": False, "jax": False}
    monkeypatch.setattr(bench, "available_peers", lambda: installed)
    arguments = ["bench", "--quick", "--shape", "4,3", "--operation", "forward+grad"]
    assert cli.main(arguments) == 0
    out = capsys.readouterr().out
    assert "absent peers (not installed): torch, jax" in out
    assert re.search(r"4 x 3 +float32 +forward\+grad +reference", out)
    assert " torch " not in out


def test_bench_refuses_an_unknown_peer(capsys):
    assert cli.main(["bench", "--peers", "fastxent,tensorflow"]) == 2
    assert "unknown peer(s): tensorflow" in capsys.readouterr().out


@pytest.mark.parametrize("shape", ["8", "0,10", "a,b", "8,10,3,2", "8,0,3"])
def test_bench_refuses_a_bad_shape(shape, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["bench", "--shape", shape])
    assert exit_info.value.code == 2
    assert "--shape" in capsys.readouterr().err


@pytest.mark.parametrize(
    "arguments",
    [["--shape", "8,10,3", "--operation", "forward"], ["--shape", "8,10", "--operation", "linear"]],
)
def test_bench_refuses_a_shape_of_the_other_operation(arguments, capsys):
    assert cli.main(["bench", *arguments]) == 2
    assert "expected N," in capsys.readouterr().err


def test_bench_linear_against_the_blas_floor_and_torch(tmp_path):
    """The installed command: fused linear cross-entropy, its peers, their losses."""
    path = tmp_path / "linear.json"
    peers = "fastxent,blas floor,torch,torch chunked"
    command = ["fastxent", "bench", "--operation", "linear", "--quick", "--shape", "16,8,50"]
    done = subprocess.run(
        [*command, "--peers", peers, "--json", str(path)], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert re.search(r"16 x 8 x 50 +float32 +linear forward\+grad +blas floor", done.stdout)
    results = json.loads(path.read_text())["results"]
    found = {(r["operation"], r["peer"]) for r in results}
    expected_peers = bench.available_linear_peers()
    assert found == {(op, p) for op in bench.LINEAR_OPERATIONS for p in expected_peers}
    rng = np.random.default_rng(0)
    h = rng.standard_normal((16, 8), dtype=np.float64).astype(np.float32)
    w = (rng.standard_normal((50, 8)) / np.sqrt(8)).astype(np.float32)
    y = rng.integers(0, 50, size=16)
    expected = float(reference.linear_cross_entropy(h, w, y))
    for result in results:
        if result["peer"] != "blas floor":
            assert result["loss"] == pytest.approx(expected, rel=1e-5), result["peer"]


def test_info_prints_the_threading_facts(capsys):
    assert cli.main(["info"]) == 0
    out = capsys.readouterr().out
    for fact in ("threading layer", "threads", "SIMD width", "cache directory", "prefetch above"):
        assert f"{fact}: " in out
    # The test suite sets FASTXENT_PARALLEL_MIN_ELEMENTS (conftest.py).
    assert f"parallel from: {PARALLEL_MIN_ELEMENTS} elements" in out


STREAMING_SCRIPT = """
import numpy as np
from fastxent import cli
from fastxent._plan import streams_from_memory
print(streams_from_memory(np.zeros((4, 300), np.float32)))
cli.main(["info"])
"""


def _run_with_streaming_setting(value: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, FASTXENT_STREAMING_MIN_BYTES=value)
    return subprocess.run(
        [sys.executable, "-W", "always", "-c", STREAMING_SCRIPT],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_streaming_threshold_from_the_environment():
    # 4 x 300 float32 is 4800 bytes: streamed above 4799, not above 4800.
    result = _run_with_streaming_setting("4799")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("True\n")
    assert "prefetch above: 0.00457668 MiB inputs (FASTXENT_STREAMING_MIN_BYTES)" in result.stdout
    result = _run_with_streaming_setting("4800")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("False\n")


def test_invalid_streaming_threshold_warns_and_keeps_the_cache_size():
    result = _run_with_streaming_setting("big")
    assert result.returncode == 0, result.stderr
    assert "FASTXENT_STREAMING_MIN_BYTES='big' is not a number of bytes" in result.stderr
    assert result.stdout.startswith("False\n")
    assert "MiB inputs (last-level cache)" in result.stdout


def test_bench_times_the_pytorch_dropin_against_pytorch(tmp_path):
    """The installed command: `--peers ...,fastxent.torch` prints the drop-in's ratio to torch."""
    import_torch()
    path = tmp_path / "dropin.json"
    command = ["fastxent", "bench", "--quick", "--shape", "16,10", "--json", str(path)]
    done = subprocess.run(
        [*command, "--peers", "fastxent,torch,fastxent.torch"], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    for operation in bench.OPERATIONS:
        line = rf"16 x 10 {re.escape(operation)}: fastxent.torch \d+\.\d\dx faster than torch"
        assert re.search(line, done.stdout), done.stdout
    results = json.loads(path.read_text())["results"]
    rng = np.random.default_rng(0)
    x = (rng.standard_normal((16, 10), dtype=np.float64) * 2.0).astype(np.float32)
    expected = float(reference.cross_entropy(x, rng.integers(0, 10, size=16)))
    dropin = [r for r in results if r["peer"] == "fastxent.torch"]
    assert len(dropin) == len(bench.OPERATIONS)
    for result in dropin:
        assert result["loss"] == pytest.approx(expected, rel=1e-6)
