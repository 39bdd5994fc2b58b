"""Numba's on-disk compilation cache, as fastxent uses it (``cache=True`` on every kernel).

Every test runs fresh Python processes, because what matters happens at a process's first
import and first call:

- a read-only installation (no writable ``__pycache__`` next to the sources) still works,
  with or without any writable cache location;
- several processes compiling the same kernels into one empty cache at the same time all get
  correct results, and leave a cache that a later process can use;
- once a kernel is compiled for the kernels' layout (C-contiguous float32 rows, int64 labels),
  other label dtypes, strided, Fortran-ordered, read-only, big-endian or float16 inputs reuse
  that machine code instead of compiling new signatures.

Results are checked against ``fastxent.reference`` inside the child processes; a child that
fails prints why, and the test shows its output.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import parallel_rows

import fastxent
from fastxent._tuning import WHOLE_ROW

# The read-only tests fork (preexec_fn); JAX, when another test has loaded it, warns in its
# at-fork hook, which is harmless here since the child execs at once.
pytestmark = pytest.mark.filterwarnings("ignore:os.fork\\(\\) was called:RuntimeWarning")

#: Where the package under test lives (copied for the read-only tests).
PACKAGE_DIR = Path(fastxent.__file__).resolve().parent
#: Linux capability numbers: root bypasses file permissions through these two.
CAP_DAC_OVERRIDE = 1
CAP_DAC_READ_SEARCH = 2
PR_CAPBSET_DROP = 24
#: What the read-only tests compute.
READ_ONLY_FUNCTIONS = "cross_entropy,cross_entropy_with_grad,softmax"
#: What each of the concurrent processes computes.
CONCURRENT_FUNCTIONS = "cross_entropy,softmax,log_softmax,logsumexp"

#: A child that computes the functions named in FASTXENT_FUNCTIONS (of cross_entropy,
#: cross_entropy_with_grad, softmax, log_softmax, logsumexp) on a small and a large
#: (multi-threaded) float32 input and compares them with the reference. A cold compilation
#: of the cross-entropy kernels takes tens of seconds, so each test names only what it needs.
#: With FASTXENT_EXPECTED_ROOT it first checks that it imported that copy of the package
#: and, with FASTXENT_EXPECT_READ_ONLY=1, exits with 3 if it can write into it.
CHECK_SCRIPT = textwrap.dedent(
    """
    import os, sys
    import numpy as np
    import fastxent
    from fastxent import reference

    expected_root = os.environ.get("FASTXENT_EXPECTED_ROOT")
    if expected_root:
        assert fastxent.__file__.startswith(expected_root), fastxent.__file__
        if os.environ.get("FASTXENT_EXPECT_READ_ONLY") == "1":
            probe = os.path.join(os.path.dirname(fastxent.__file__), "_kernels", "probe")
            try:
                open(probe, "w").close()
            except PermissionError:
                pass
            else:
                os.remove(probe)
                sys.exit(3)  # the package is writable: this process tests nothing

    def close(actual, expected, rtol=1e-5, atol=1e-6):
        actual, expected = np.asarray(actual), np.asarray(expected)
        assert actual.dtype == expected.dtype, (actual.dtype, expected.dtype)
        assert actual.shape == expected.shape, (actual.shape, expected.shape)
        np.testing.assert_allclose(actual, expected, rtol=rtol, atol=atol)

    functions = os.environ["FASTXENT_FUNCTIONS"].split(",")
    rng = np.random.default_rng(int(os.environ.get("FASTXENT_SEED", "0")))
    for shape in CHECK_SHAPES:  # serial kernels, then parallel
        x = (3 * rng.standard_normal(shape)).astype(np.float32)
        y = rng.integers(0, shape[1], shape[0])
        y[::5] = -100
        w = rng.uniform(0.5, 2.0, shape[1])
        if "cross_entropy" in functions:
            close(fastxent.cross_entropy(x, y), reference.cross_entropy(x, y))
            options = dict(weight=w, reduction="none", label_smoothing=0.1)
            close(
                fastxent.cross_entropy(x, y, **options),
                reference.cross_entropy(x, y, **options),
            )
        if "cross_entropy_with_grad" in functions:
            loss, grad = fastxent.cross_entropy_with_grad(x, y, reduction="sum")
            ref_loss, ref_grad = reference.cross_entropy_with_grad(x, y, reduction="sum")
            close(loss, ref_loss)
            close(grad, ref_grad)
        for name in ("softmax", "log_softmax", "logsumexp"):
            if name in functions:
                close(getattr(fastxent, name)(x), getattr(reference, name)(x))
    print("ok")
    """
)


def _copy_package(destination: Path) -> Path:
    """A copy of the fastxent package under ``destination`` (no caches); return its root."""
    shutil.copytree(
        PACKAGE_DIR,
        destination / "fastxent",
        ignore=shutil.ignore_patterns("__pycache__", "*.nbi", "*.nbc", "*.pyc"),
    )
    return destination


def _make_read_only(root: Path) -> None:
    """Directories r-x, files r-- (for everyone: the owner too)."""
    for path in sorted(root.rglob("*"), reverse=True):
        path.chmod(0o555 if path.is_dir() else 0o444)
    root.chmod(0o555)


def _make_writable(root: Path) -> None:
    """Undo :func:`_make_read_only` so that the temporary directory can be removed."""
    root.chmod(0o755)
    for path in root.rglob("*"):
        path.chmod(0o755 if path.is_dir() else 0o644)


def _drop_root_file_privileges() -> Callable[[], None] | None:
    """A ``preexec_fn`` that makes file permissions apply to root as to anyone.

    Root ignores permission bits through ``CAP_DAC_OVERRIDE`` (and ``CAP_DAC_READ_SEARCH``).
    Dropping both from the bounding set before ``exec`` leaves the child running as uid 0
    without them, so a ``0o555`` directory owned by root is read-only to it. ``None`` when
    not running as root (plain permissions work then).
    """
    if os.geteuid() != 0:
        return None
    libc = ctypes.CDLL(None, use_errno=True)

    def drop() -> None:
        for capability in (CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH):
            if libc.prctl(PR_CAPBSET_DROP, capability, 0, 0, 0) != 0:
                raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP) failed")

    return drop


def _can_drop_root_file_privileges() -> bool:
    preexec = _drop_root_file_privileges()
    if preexec is None:
        return True
    probe = subprocess.run(
        [sys.executable, "-c", "pass"], preexec_fn=preexec, capture_output=True, check=False
    )
    return probe.returncode == 0


def _child_env(**overrides: str | None) -> dict[str, str]:
    """This environment without Numba cache settings, with ``overrides`` (None removes)."""
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in ("NUMBA_CACHE_DIR", "NUMBA_CACHE_LOCATOR_CLASSES", "XDG_CACHE_HOME")
    }
    for key, value in overrides.items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    return env


def _run(
    script: str,
    env: dict[str, str],
    preexec: Callable[[], None] | None = None,
    cwd: Path | None = None,
    timeout: float = 600,
) -> subprocess.CompletedProcess[str]:
    """Run ``script`` in a child; ``cwd`` keeps ``python -c`` from importing the checkout."""
    return subprocess.run(
        [sys.executable, "-c", script],
        env=env,
        cwd=cwd,
        preexec_fn=preexec,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def _explain(result: subprocess.CompletedProcess[str]) -> str:
    return f"exit code {result.returncode}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}"


def _cache_files(root: Path) -> tuple[list[Path], list[Path]]:
    return sorted(root.rglob("*.nbi")), sorted(root.rglob("*.nbc"))


#: CHECK_SCRIPT's inputs: the serial kernels, then the multi-threaded ones (the children
#: inherit this suite's FASTXENT_PARALLEL_MIN_ELEMENTS).
CHECK_SHAPES = [(7, 13), (parallel_rows(WHOLE_ROW + 7), WHOLE_ROW + 7)]
CHECK_SCRIPT = CHECK_SCRIPT.replace("CHECK_SHAPES", repr(CHECK_SHAPES))


# --------------------------------------------------------------------------------------
# (a) a read-only installation
# --------------------------------------------------------------------------------------


@pytest.fixture
def read_only_copy(tmp_path: Path):
    """A read-only copy of the package, and the ``preexec_fn`` that makes it read-only to
    the child even when the tests run as root."""
    if not _can_drop_root_file_privileges():
        pytest.skip("running as root without CAP_SETPCAP: cannot make a directory read-only")
    root = _copy_package(tmp_path / "site")
    _make_read_only(root)
    yield root, _drop_root_file_privileges()
    _make_writable(root)


def test_read_only_package_uses_the_user_wide_cache(read_only_copy, tmp_path):
    """Package directory not writable, ``NUMBA_CACHE_DIR`` unset, a writable ``$HOME``.

    Numba cannot put the cache in ``__pycache__`` next to the sources and falls back to its
    user-wide directory (``$HOME/.cache/numba``). fastxent must compute correct results, and
    the compiled kernels must land there (so a read-only install still starts warm).

    The package copy is made read-only with ``chmod`` (dirs 0o555, files 0o444). When the
    tests run as root, the child also drops ``CAP_DAC_OVERRIDE``/``CAP_DAC_READ_SEARCH``
    from its capability bounding set before ``exec``, so the permission bits bind it; the
    child checks that it really cannot create a file in the package.
    """
    root, preexec = read_only_copy
    home = tmp_path / "home"
    home.mkdir()
    env = _child_env(PYTHONPATH=str(root), HOME=str(home), FASTXENT_FUNCTIONS=READ_ONLY_FUNCTIONS)
    env.update(FASTXENT_EXPECTED_ROOT=str(root), FASTXENT_EXPECT_READ_ONLY="1")
    result = _run(CHECK_SCRIPT, env, preexec, cwd=home)
    if result.returncode == 3:
        pytest.skip("the package copy stayed writable to the child process")
    assert result.returncode == 0, _explain(result)
    assert result.stdout.strip().endswith("ok"), _explain(result)
    assert not list(root.rglob("__pycache__")), "the child wrote into the read-only package"
    index_files, code_files = _cache_files(home / ".cache" / "numba")
    assert index_files and code_files, "no kernel was cached in the user-wide cache directory"


def test_read_only_package_without_any_writable_cache_location(read_only_copy, tmp_path):
    """Package directory, ``$HOME`` and ``NUMBA_CACHE_DIR`` all unusable for a cache.

    This is a read-only container or a serverless runtime: nothing but the working memory
    is writable. Numba then finds no cache locator for a ``cache=True`` function; fastxent
    must still import and compute correct results (compiling in memory, without a cache).
    ``NUMBA_CACHE_DIR`` points below a regular file (``/dev/null/numba``), so it can never
    be created, and ``$HOME`` is a read-only directory.
    """
    root, preexec = read_only_copy
    home = tmp_path / "home"
    home.mkdir()
    home.chmod(0o555)
    env = _child_env(PYTHONPATH=str(root), HOME=str(home), NUMBA_CACHE_DIR="/dev/null/numba")
    env.update(FASTXENT_EXPECTED_ROOT=str(root), FASTXENT_EXPECT_READ_ONLY="1")
    env["FASTXENT_FUNCTIONS"] = READ_ONLY_FUNCTIONS
    try:
        result = _run(CHECK_SCRIPT, env, preexec, cwd=tmp_path)
    finally:
        home.chmod(0o755)
    if result.returncode == 3:
        pytest.skip("the package copy stayed writable to the child process")
    assert result.returncode == 0, _explain(result)
    assert result.stdout.strip().endswith("ok"), _explain(result)
    assert not list(home.rglob("*")), "something was written to the read-only home"


def test_unusable_numba_cache_dir_is_not_fatal(tmp_path):
    """``NUMBA_CACHE_DIR`` below a regular file, the package itself writable.

    Numba skips the unusable directory and caches next to the sources; fastxent computes
    correct results (the softmax family: the quickest kernels to compile). The package is
    a copy, so the repository's cache is not touched.
    """
    root = _copy_package(tmp_path / "site")
    env = _child_env(PYTHONPATH=str(root), HOME=str(tmp_path), NUMBA_CACHE_DIR="/dev/null/x")
    env["FASTXENT_EXPECTED_ROOT"] = str(root)
    env["FASTXENT_FUNCTIONS"] = "softmax,log_softmax,logsumexp"
    result = _run(CHECK_SCRIPT, env, cwd=tmp_path)
    assert result.returncode == 0, _explain(result)
    assert result.stdout.strip().endswith("ok"), _explain(result)
    index_files, code_files = _cache_files(root / "fastxent")
    assert index_files and code_files, "nothing was cached next to the (writable) sources"


# --------------------------------------------------------------------------------------
# (b) several processes filling one empty cache at once
# --------------------------------------------------------------------------------------

#: Waits for the parent's signal after importing, so that all children compile together.
BARRIER = textwrap.dedent(
    """
    import os, time
    import fastxent  # importing compiles nothing
    open(os.environ["FASTXENT_READY"], "w").close()
    deadline = time.monotonic() + 120
    while not os.path.exists(os.environ["FASTXENT_GO"]):
        assert time.monotonic() < deadline, "no start signal"
        time.sleep(0.005)
    """
)

#: After the checks: how many kernel signatures came from the cache, how many were compiled.
CACHE_STATS = textwrap.dedent(
    """
    import importlib, pkgutil
    import fastxent._kernels as package
    from fastxent._kernels.dispatch import RowKernel
    hits = misses = 0
    for info in pkgutil.iter_modules(package.__path__):
        module = importlib.import_module("fastxent._kernels." + info.name)
        for value in vars(module).values():
            if isinstance(value, RowKernel):
                for dispatcher in (value.parallel, value.serial):
                    hits += sum(dispatcher.stats.cache_hits.values())
                    misses += sum(dispatcher.stats.cache_misses.values())
    print("cache", hits, misses)
    """
)


@pytest.mark.slow
def test_concurrent_first_compilation_into_one_cache(tmp_path):
    """4 processes compile the same kernels into the same empty ``NUMBA_CACHE_DIR`` at once.

    Each computes cross_entropy and the softmax family on small and multi-threaded inputs
    (serial and parallel kernels, ~30 s of cold compilation per process) and checks
    them against the reference; all must exit 0. Then the cache holds index (``.nbi``) and
    code (``.nbc``) files, and a 5th process that uses it gets correct results too, loading
    at least some kernels from it.
    """
    cache = tmp_path / "numba-cache"
    cache.mkdir()
    children = []
    for number in range(4):
        env = _child_env(NUMBA_CACHE_DIR=str(cache), FASTXENT_SEED=str(number))
        env["FASTXENT_FUNCTIONS"] = CONCURRENT_FUNCTIONS
        env["FASTXENT_READY"] = str(tmp_path / f"ready-{number}")
        env["FASTXENT_GO"] = str(tmp_path / "go")
        children.append(
            subprocess.Popen(
                [sys.executable, "-c", BARRIER + CHECK_SCRIPT],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
        )
    try:
        deadline = time.monotonic() + 120
        while not all((tmp_path / f"ready-{n}").exists() for n in range(4)):
            assert all(child.poll() is None for child in children), "a child died on import"
            assert time.monotonic() < deadline, "the children did not get ready"
            time.sleep(0.01)
        (tmp_path / "go").touch()
        outputs = [child.communicate(timeout=600) for child in children]
    finally:
        for child in children:
            if child.poll() is None:
                child.kill()
                child.wait()
    for child, (stdout, stderr) in zip(children, outputs, strict=True):
        assert child.returncode == 0, f"exit code {child.returncode}\n{stdout}\n{stderr}"
        assert stdout.strip().endswith("ok"), f"{stdout}\n{stderr}"

    index_files, code_files = _cache_files(cache)
    assert index_files, "no .nbi index file in the shared cache"
    assert code_files, "no .nbc code file in the shared cache"

    env = _child_env(NUMBA_CACHE_DIR=str(cache), FASTXENT_SEED="5")
    env["FASTXENT_FUNCTIONS"] = CONCURRENT_FUNCTIONS
    result = _run(CHECK_SCRIPT + CACHE_STATS, env)
    assert result.returncode == 0, _explain(result)
    lines = result.stdout.split()
    assert "ok" in lines, _explain(result)
    hits = int(result.stdout.split("cache")[-1].split()[0])
    assert hits > 0, f"the 5th process loaded no kernel from the populated cache\n{result.stdout}"


# --------------------------------------------------------------------------------------
# (b2) a change in a helper's file invalidates the kernels that inline it
# --------------------------------------------------------------------------------------


def test_an_edited_helper_file_invalidates_the_cached_kernels(tmp_path):
    """The softmax kernels live in ``_kernels/softmax.py`` and inline ``_kernels/reductions.py``.

    Numba stamps a cached function with its own file only: after an edit of ``reductions.py``
    alone it would load kernels built from the old helpers. fastxent stamps every kernel
    with all of its sources (``fastxent._cache``). A copy of the package is run three
    times: cold (compiles), warm (loads from the cache), after appending a comment to
    ``reductions.py`` (compiles again, loads nothing stale).
    """
    root = _copy_package(tmp_path / "site")
    env = _child_env(PYTHONPATH=str(root), HOME=str(tmp_path), FASTXENT_EXPECTED_ROOT=str(root))
    env["FASTXENT_FUNCTIONS"] = "softmax"

    def run() -> tuple[int, int]:
        result = _run(CHECK_SCRIPT + CACHE_STATS, env, cwd=tmp_path)
        assert result.returncode == 0, _explain(result)
        assert "ok" in result.stdout.split(), _explain(result)
        hits, misses = result.stdout.split("cache")[-1].split()[:2]
        return int(hits), int(misses)

    cold_hits, cold_misses = run()
    assert cold_hits == 0 and cold_misses > 0
    warm_hits, warm_misses = run()
    assert warm_hits == cold_misses and warm_misses == 0
    rows = root / "fastxent" / "_kernels" / "reductions.py"
    rows.write_text(rows.read_text() + "# an edit\n")
    edited_hits, edited_misses = run()
    assert edited_hits == 0 and edited_misses == cold_misses


# --------------------------------------------------------------------------------------
# (c) no new signatures for other input types and layouts
# --------------------------------------------------------------------------------------

NO_RECOMPILE_SCRIPT = textwrap.dedent(
    """
    import importlib, pkgutil, sys
    import numpy as np
    import fastxent
    import fastxent._kernels as package
    from fastxent import reference
    from fastxent._kernels.dispatch import RowKernel

    def kernels():
        found = {}
        for info in pkgutil.iter_modules(package.__path__):
            module = importlib.import_module("fastxent._kernels." + info.name)
            for name, value in vars(module).items():
                if isinstance(value, RowKernel):
                    found[info.name + "." + name] = value
        return found

    def signature_counts():
        return {
            name + "." + which: len(getattr(kernel, which).signatures)
            for name, kernel in kernels().items()
            for which in ("parallel", "serial")
        }

    def close(actual, expected):
        np.testing.assert_allclose(actual, expected, rtol=1e-5, atol=1e-6)

    def native(a):  # the reference takes native byte order only
        return np.asarray(a, dtype=a.dtype.newbyteorder("="))

    def cross_entropy(x, y):
        close(fastxent.cross_entropy(x, y), reference.cross_entropy(native(x), native(y)))

    def cross_entropy_with_grad(x, y):
        loss, grad = fastxent.cross_entropy_with_grad(x, y)
        ref_loss, ref_grad = reference.cross_entropy_with_grad(native(x), native(y))
        close(loss, ref_loss)
        close(grad, ref_grad)

    def softmax(x, y):
        close(fastxent.softmax(x), reference.softmax(native(x)))

    def read_only(a):
        a = a.copy()
        a.setflags(write=False)
        return a

    def unaligned(a):
        buffer = np.zeros(a.nbytes + a.itemsize, dtype=np.uint8)
        view = buffer[1 : 1 + a.nbytes].view(a.dtype).reshape(a.shape)
        view[...] = a
        return view

    VARIANTS = {
        "int32 labels": lambda x, y: (x, y.astype(np.int32)),
        "uint8 labels": lambda x, y: (x, y.astype(np.uint8)),
        "int16 labels": lambda x, y: (x, y.astype(np.int16)),
        "big-endian int64 labels": lambda x, y: (x, y.astype(">i8")),
        "strided labels": lambda x, y: (x, np.repeat(y, 2)[::2]),
        "read-only labels": lambda x, y: (x, read_only(y)),
        "rows sliced x[::2]": lambda x, y: (x[::2], y[::2]),
        "columns sliced x[:, :C-1]": lambda x, y: (x[:, :-1], y),  # labels are < C - 1
        "Fortran-order logits": lambda x, y: (np.asfortranarray(x), y),
        "read-only logits": lambda x, y: (read_only(x), y),
        "unaligned logits": lambda x, y: (unaligned(x), y),
        "big-endian float32 logits": lambda x, y: (x.astype(">f4"), y),
        "float16 logits": lambda x, y: (x.astype(np.float16), y),
    }

    function = {"cross_entropy": cross_entropy,
                "cross_entropy_with_grad": cross_entropy_with_grad,
                "softmax": softmax}[sys.argv[1]]
    rng = np.random.default_rng(0)
    inputs = []
    for shape in NO_RECOMPILE_SHAPES:
        x = rng.standard_normal(shape).astype(np.float32)
        y = rng.integers(0, shape[1] - 1, shape[0]).astype(np.int64)
        inputs.append((x, y))
        function(x, y)  # the kernels' own layout: C-contiguous float32, int64 labels
    before = signature_counts()
    assert sum(before.values()) > 0, "no kernel was compiled by the first calls"
    grown = []
    for name, make in VARIANTS.items():
        for x, y in inputs:
            function(*make(x, y))
        after = signature_counts()
        grown += [f"{name}: {k} {before[k]} -> {after[k]}" for k in after if after[k] != before[k]]
        before = after
    assert not grown, "new signatures were compiled:\\n" + "\\n".join(grown)
    print("ok")
    """
)
#: NO_RECOMPILE_SCRIPT's inputs: the serial and the multi-threaded kernels, each with rows
#: summed whole and in chains (two compilations of a kernel, see
#: fastxent._plan.rows_to_chain: rows longer than WHOLE_ROW are chained).
NO_RECOMPILE_SHAPES = [
    (6, 11),
    (12, WHOLE_ROW + 7),
    (parallel_rows(600), 600),
    (parallel_rows(WHOLE_ROW + 7), WHOLE_ROW + 7),
]
NO_RECOMPILE_SCRIPT = NO_RECOMPILE_SCRIPT.replace("NO_RECOMPILE_SHAPES", repr(NO_RECOMPILE_SHAPES))


@pytest.mark.parametrize("function", ["cross_entropy", "cross_entropy_with_grad", "softmax"])
def test_other_input_types_reuse_the_compiled_kernels(function):
    """After one call in the kernels' layout, no variant of the input compiles anything new.

    The first calls (a small and a multi-threaded input, C-contiguous float32 logits, int64
    labels) compile or load each kernel's signature; then int32/uint8/int16/big-endian
    labels, strided and read-only labels, row- and column-sliced, Fortran-ordered, read-only,
    unaligned, big-endian and float16 logits are computed (and checked against the
    reference), and the number of signatures of every ``RowKernel`` dispatcher in
    ``fastxent._kernels`` (``.parallel`` and ``.serial``) must not grow.
    """
    result = subprocess.run(
        [sys.executable, "-c", NO_RECOMPILE_SCRIPT, function],
        env=dict(os.environ),
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, _explain(result)
    assert result.stdout.strip().endswith("ok"), _explain(result)
