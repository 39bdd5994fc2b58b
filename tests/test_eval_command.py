"""``fastxent eval``: the installed command, in a subprocess, on real files.

Its numbers against ``fastxent.evaluate`` of the whole arrays (in blocks that divide
nothing), the three file formats, ``--shift``, ``--per-row``, the JSON, the progress bar's
absence when stderr is not a terminal, every bad file (one line, exit code 1, no
traceback), and the memory bound of a pass over a file.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys

import numpy as np
import pytest

import fastxent


def run(*arguments, check=True):
    done = subprocess.run(
        ["fastxent", "eval", *map(str, arguments)], capture_output=True, text=True
    )
    if check:
        assert done.returncode == 0, done.stderr
    return done


@pytest.fixture
def saved(tmp_path):
    """Logits (1001, 37) float32 and labels with padding, saved as .npy."""
    rng = np.random.default_rng(0)
    logits = (3.0 * rng.standard_normal((1001, 37))).astype(np.float32)
    labels = rng.integers(0, 37, 1001)
    labels[::9] = -100
    np.save(tmp_path / "logits.npy", logits)
    np.save(tmp_path / "labels.npy", labels)
    return tmp_path, logits, labels


def assert_report_matches(report, expected):
    for name, value in expected.as_dict().items():
        if name == "accuracy":
            assert report[name] == {k: pytest.approx(v, rel=1e-12) for k, v in value.items()}
        elif isinstance(value, float):
            assert report[name] == pytest.approx(value, rel=1e-12), name
        else:
            assert report[name] == value, name


@pytest.mark.parametrize("rows_per_chunk", [None, 1, 64, 1000])
def test_matches_evaluate_on_the_whole_arrays(saved, rows_per_chunk):
    path, logits, labels = saved
    options = [] if rows_per_chunk is None else ["--rows-per-chunk", rows_per_chunk]
    done = run(path / "logits.npy", path / "labels.npy", "--top-k", "1,3,5", "--bins", 10,
               "--json", "-", *options)  # fmt: skip
    report = json.loads(done.stdout)
    assert_report_matches(report, fastxent.evaluate(logits, labels, top_k=(1, 3, 5), bins=10))
    assert report["inputs"]["logits"] == {
        "path": str(path / "logits.npy"), "key": None, "shape": [1001, 37], "dtype": "float32",
    }  # fmt: skip
    assert report["inputs"]["labels"]["shape"] == [1001]
    assert done.stderr == ""  # no progress bar: stderr is not a terminal


def test_table_on_stdout(saved):
    path, logits, labels = saved
    done = run(path / "logits.npy", path / "labels.npy")
    expected = fastxent.evaluate(logits, labels)
    lines = dict(line.split(None, 1) for line in done.stdout.splitlines()[1:])
    assert done.stdout.splitlines()[0].split() == ["metric", "value"]
    assert float(lines["nll"]) == pytest.approx(expected.nll, rel=1e-5)
    assert float(lines["accuracy@5"]) == pytest.approx(expected.accuracy[5], rel=1e-5)
    assert lines["count"].strip() == f"{expected.count:,}"


def test_json_file_and_per_row_losses(saved):
    path, logits, labels = saved
    run(path / "logits.npy", path / "labels.npy", "--json", path / "out.json",
        "--per-row", path / "rows.npy", "--rows-per-chunk", 100)  # fmt: skip
    report = json.loads((path / "out.json").read_text())
    assert_report_matches(report, fastxent.evaluate(logits, labels))
    per_row = np.load(path / "rows.npy")
    assert per_row.dtype == np.float32 and per_row.shape == (1001,)
    np.testing.assert_allclose(
        per_row, fastxent.cross_entropy(logits, labels, reduction="none"), rtol=1e-6
    )


def test_npz_and_safetensors(saved):
    path, logits, labels = saved
    np.savez(path / "both.npz", logits=logits, labels=labels)
    expected = fastxent.evaluate(logits, labels)
    done = run(path / "both.npz", path / "both.npz", "--key", "logits", "--labels-key", "labels",
               "--json", "-")  # fmt: skip
    assert_report_matches(json.loads(done.stdout), expected)
    safetensors = pytest.importorskip("safetensors.numpy")
    safetensors.save_file({"logits": logits, "labels": labels}, str(path / "both.safetensors"))
    done = run(path / "both.safetensors", path / "labels.npy", "--key", "logits",
               "--rows-per-chunk", 333, "--json", "-")  # fmt: skip
    assert_report_matches(json.loads(done.stdout), expected)


def test_shift_scores_the_next_label(tmp_path):
    rng = np.random.default_rng(1)
    logits = rng.standard_normal((5, 8, 11)).astype(np.float32)
    tokens = rng.integers(0, 11, (5, 8))
    tokens[4, 5:] = -100  # a padded sequence
    np.save(tmp_path / "logits.npy", logits)
    np.save(tmp_path / "tokens.npy", tokens)
    done = run(tmp_path / "logits.npy", tmp_path / "tokens.npy", "--shift", "--rows-per-chunk", 2,
               "--json", "-", "--per-row", tmp_path / "rows.npy")  # fmt: skip
    expected = fastxent.evaluate(logits[:, :-1], tokens[:, 1:])
    assert_report_matches(json.loads(done.stdout), expected)
    rows = np.load(tmp_path / "rows.npy")
    assert rows.shape == (5, 7)
    reference = fastxent.cross_entropy(logits[:, :-1], tokens[:, 1:], reduction="none")
    np.testing.assert_allclose(rows, reference, rtol=1e-6)


def test_class_axis_in_the_middle(tmp_path):
    rng = np.random.default_rng(2)
    logits = rng.standard_normal((6, 9, 4))  # (N, C, d1), classes on axis 1
    labels = rng.integers(0, 9, (6, 4))
    np.save(tmp_path / "logits.npy", logits)
    np.save(tmp_path / "labels.npy", labels)
    done = run(tmp_path / "logits.npy", tmp_path / "labels.npy", "--axis", 1, "--json", "-",
               "--rows-per-chunk", 4)  # fmt: skip
    assert_report_matches(json.loads(done.stdout), fastxent.evaluate(logits, labels, axis=1))


def test_nonfinite_rows_are_counted_and_reported(tmp_path):
    logits = np.zeros((4, 3), np.float32)
    logits[1, 0] = np.nan
    np.save(tmp_path / "logits.npy", logits)
    np.save(tmp_path / "labels.npy", np.array([0, 1, 2, 0]))
    done = run(tmp_path / "logits.npy", tmp_path / "labels.npy", "--json", tmp_path / "r.json")
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["nonfinite"] == 1 and report["count"] == 3
    assert report["nll"] == pytest.approx(math.log(3))
    assert "1 rows had a loss that is not finite" in done.stderr


def bad_files(tmp_path):
    """(arguments, message) pairs: each must fail with one line naming the problem."""
    rng = np.random.default_rng(3)
    logits = rng.standard_normal((10, 4)).astype(np.float32)
    np.save(tmp_path / "logits.npy", logits)
    np.save(tmp_path / "labels.npy", rng.integers(0, 4, 10))
    np.save(tmp_path / "int_logits.npy", np.zeros((10, 4), np.int32))
    np.save(tmp_path / "float_labels.npy", np.zeros(10, np.float32))
    np.save(tmp_path / "short_labels.npy", np.zeros(9, np.int64))
    bad = np.array([0, 1, 7, 2, -5, 3, 0, 1, 9, 0])
    np.save(tmp_path / "bad_labels.npy", bad)
    (tmp_path / "notes.txt").write_text("not an array")
    (tmp_path / "fake.npy").write_bytes(b"not an npy file at all")
    data = (tmp_path / "logits.npy").read_bytes()
    (tmp_path / "truncated.npy").write_bytes(data[: len(data) - 20])
    np.savez(tmp_path / "arrays.npz", a=logits, b=logits)
    logits_file, labels_file = tmp_path / "logits.npy", tmp_path / "labels.npy"
    return [
        ([tmp_path / "missing.npy", labels_file], "missing.npy: no such file"),
        ([tmp_path / "notes.txt", labels_file], "not an array file"),
        ([tmp_path / "fake.npy", labels_file], "not a valid .npy file"),
        ([tmp_path, labels_file], "is a directory"),
        ([tmp_path / "int_logits.npy", labels_file], "holds int32: logits must be float"),
        ([logits_file, tmp_path / "float_labels.npy"], "holds float32: labels must be integers"),
        (
            [logits_file, tmp_path / "short_labels.npy"],
            r"\(10, 4\) and labels .* \(9,\) do not match",
        ),
        ([tmp_path / "truncated.npy", labels_file], "is truncated: its header says shape (10, 4)"),
        (
            [logits_file, tmp_path / "bad_labels.npy"],
            r"3 labels outside \[0, 4\).*first is 7 at \[2\]",
        ),
        ([tmp_path / "arrays.npz", labels_file], "holds 2 arrays: choose one with --key (a, b)"),
        ([tmp_path / "arrays.npz", labels_file, "--key", "c"], "has no array 'c'; it has: a, b"),
        ([logits_file, labels_file, "--shift"], r"--shift needs logits \(B, T, V\)"),
        ([logits_file, labels_file, "--top-k", "1,x"], "--top-k must be comma-separated integers"),
        ([logits_file, labels_file, "--top-k", "0"], "top_k must be positive ints"),
        ([logits_file, labels_file, "--bins", "0"], "bins must be a positive int"),
        ([logits_file, labels_file, "--axis", "0"], "class axis must not be the first"),
        (
            [logits_file, labels_file, "--rows-per-chunk", "0"],
            "--rows-per-chunk must be at least 1",
        ),
    ]


def test_bad_files_get_one_clear_line(tmp_path):
    import re

    for arguments, message in bad_files(tmp_path):
        done = run(*arguments, check=False)
        assert done.returncode == 1, (arguments, done.stderr)
        assert done.stdout == "", arguments
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1 and "Traceback" not in done.stderr, done.stderr
        assert lines[0].startswith("fastxent eval: error: ")
        pattern = message if any(c in message for c in r"\[*") else re.escape(message)
        assert re.search(pattern, lines[0]), (message, lines[0])


def test_missing_safetensors_package_is_one_line(saved, tmp_path):
    """Without the optional package, a .safetensors input says how to install it."""
    path, _, _ = saved
    (tmp_path / "x.safetensors").write_bytes(b"\x00" * 16)
    code = (
        "import sys; sys.modules['safetensors'] = None\n"
        "from fastxent import cli\n"
        f"sys.exit(cli.main(['eval', {str(tmp_path / 'x.safetensors')!r}, "
        f"{str(path / 'labels.npy')!r}]))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 1
    assert "pip install 'fastxent[safetensors]'" in done.stderr and "Traceback" not in done.stderr


def test_resident_memory_stays_at_one_block(tmp_path):
    """A pass over a 128 MB file in 4 MB blocks: the peak resident memory grows by a
    fraction of the file (the whole file would be 128 MB), measured in a fresh process."""
    rng = np.random.default_rng(4)
    rows, classes = 32768, 1024
    logits = np.lib.format.open_memmap(tmp_path / "big.npy", "w+", np.float32, (rows, classes))
    for start in range(0, rows, 4096):
        logits[start : start + 4096] = rng.standard_normal((4096, classes), dtype=np.float32)
    logits.flush()
    del logits
    np.save(tmp_path / "labels.npy", rng.integers(0, classes, rows))
    code = f"""
import contextlib, io, os
from fastxent import cli
def status(field):
    with open("/proc/self/status") as handle:
        return next(int(line.split()[1]) for line in handle if line.startswith(field)) * 1024
arguments = ["eval", {str(tmp_path / "big.npy")!r}, {str(tmp_path / "labels.npy")!r},
             "--rows-per-chunk", "1024"]
with contextlib.redirect_stdout(io.StringIO()):  # compiles the kernels this input takes
    cli.main(arguments)
with open("/proc/self/clear_refs", "w") as handle:  # resets the peak (VmHWM) to now
    handle.write("5")
before = status("VmRSS:")
with contextlib.redirect_stdout(io.StringIO()):
    assert cli.main(arguments) == 0
print(status("VmHWM:") - before)
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    growth = int(done.stdout.strip().splitlines()[-1])
    file_bytes = rows * classes * 4
    assert growth < 0.1 * file_bytes, f"peak resident memory grew by {growth / 2**20:.1f} MiB"


def on_a_terminal(*arguments):
    """Run ``fastxent eval`` with stderr on a pseudo-terminal of 100 columns: (code, stderr)."""
    import fcntl
    import os
    import pty
    import struct
    import termios

    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))
    done = subprocess.run(
        ["fastxent", "eval", *map(str, arguments)], stdout=subprocess.PIPE, stderr=follower
    )
    os.close(follower)
    shown = b""
    while True:
        try:
            chunk = os.read(leader, 4096)
        except OSError:  # the terminal closed: everything was read
            break
        if not chunk:
            break
        shown += chunk
    os.close(leader)
    return done.returncode, shown.decode()


def test_progress_bar_on_a_terminal(saved):
    """With stderr on a terminal the bar shows the bytes read, their rate and the rows."""
    path, _, _ = saved
    code, shown = on_a_terminal(path / "logits.npy", path / "labels.npy", "--rows-per-chunk", 50)
    assert code == 0
    assert "reading" in shown and "B/s" in shown and "/1,001 rows" in shown, shown
    code, shown = on_a_terminal(path / "logits.npy", path / "labels.npy", "--quiet")
    assert code == 0 and shown == ""
