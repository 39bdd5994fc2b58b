"""Side-by-side timing of fastxent against its peers (the ``fastxent bench`` command).

Peers are the NumPy reference (``fastxent.reference``), PyTorch and JAX when installed.
Every peer runs the same call on the same data, interleaved repetition by repetition so
that machine noise hits them alike; the report gives medians and ratios, never one time.
"""

from __future__ import annotations

import importlib.util
import math
import statistics
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

import fastxent
from fastxent import reference

# The shapes of the performance targets (N x C): a large vocabulary, an LLM-sized one,
# ImageNet-sized, many tiny rows, a small batch, and a single sample.
DEFAULT_SHAPES = ((1024, 128256), (4096, 32000), (8192, 1000), (65536, 10), (64, 1000), (1, 10))
QUICK_SHAPES = ((4096, 32000), (8192, 1000), (64, 1000))
OPERATIONS = ("forward", "forward+grad")
# Fused linear cross-entropy (N x H hidden states, V x H weights): an LLM head of 32k
# classes and one of 128k; the BLAS floor is the matrix products alone.
LINEAR_SHAPES = ((2048, 1024, 32000), (512, 2048, 128256))
QUICK_LINEAR_SHAPES = ((1024, 512, 32000),)
LINEAR_OPERATIONS = ("linear forward", "linear forward+grad")
LINEAR_PEERS = ("fastxent", "blas floor", "torch", "torch chunked")

# After a call, PyTorch's and JAX's worker threads (and Numba's) keep spinning for a while,
# waiting for more work; on a 2-core machine that took 8-27 ms off the next peer's 53 ms
# call. So each timed sample repeats its call for at least SAMPLE_S, and each sample of a
# case whose calls take over SETTLE_AFTER_S starts after one untimed call of the same peer,
# which absorbs the previous peer's spinning and wakes this peer's threads. (An untimed
# pause instead left the first call on idle cores: 1024 x 128256 forward after PyTorch,
# 80 ms after a 50 ms pause, 61 ms after a call, while PyTorch's 360 ms moved by 3 %.
# Small cases get neither: their sample is many calls long.)
SAMPLE_S = 0.02
SETTLE_AFTER_S = 1e-3
# Linear cases: a call longer than this is timed without an untimed call first (the
# spinning threads' milliseconds are lost in it, and the case would take twice as long).
LONG_CALL_S = 0.25
# With --quick, the NumPy reference (a correctness oracle, ~0.6 s per 8192 x 1000 call)
# runs on cases up to this many elements only, which keeps --quick under a minute.
QUICK_REFERENCE_ELEMENTS = 1 << 22


@dataclass
class Measurement:
    """Median time of one peer on one case, with its throughput and ratio to fastxent."""

    shape: tuple[int, ...]  # (N, C), or (N, H, V) for the linear operations
    dtype: str
    operation: str
    peer: str
    median_s: float
    times_s: list[float] = field(repr=False)
    gb_per_s: float = 0.0
    speedup: float = 1.0  # peer time / fastxent time: > 1 means fastxent is faster
    loss: float = float("nan")  # the peer's mean loss on this case


def available_peers() -> dict[str, bool]:
    """Which peers can run here (missing ones are reported as absent, not faked)."""
    return {
        "fastxent": True,
        "reference": True,
        "torch": importlib.util.find_spec("torch") is not None,
        "fastxent.torch": importlib.util.find_spec("torch") is not None,
        "jax": importlib.util.find_spec("jax") is not None,
    }


def _fastxent_calls(x: np.ndarray, y: np.ndarray) -> dict[str, Callable[[], Any]]:
    return {
        "forward": lambda: fastxent.cross_entropy(x, y),
        "forward+grad": lambda: fastxent.cross_entropy_with_grad(x, y),
    }


def _reference_calls(x: np.ndarray, y: np.ndarray) -> dict[str, Callable[[], Any]]:
    return {
        "forward": lambda: reference.cross_entropy(x, y),
        "forward+grad": lambda: reference.cross_entropy_with_grad(x, y),
    }


def _torch_calls(
    x: np.ndarray, y: np.ndarray, threads: int, dropin: bool = False
) -> dict[str, Callable[[], Any]]:
    """PyTorch's ``F.cross_entropy`` on tensors, or with ``dropin`` fastxent's drop-in for it.

    The gradient through autograd's backward into a leaf tensor, as a training step has it.
    """
    import torch
    import torch.nn.functional as F  # noqa: N812

    import fastxent.torch as fxt

    cross_entropy: Callable[..., Any] = fxt.cross_entropy if dropin else F.cross_entropy

    torch.set_num_threads(threads)
    logits = torch.from_numpy(x)
    labels = torch.from_numpy(y)
    leaf = logits.clone().requires_grad_(True)

    def forward_backward() -> Any:
        leaf.grad = None
        loss = cross_entropy(leaf, labels)
        loss.backward()  # type: ignore[no-untyped-call]
        return loss.item(), leaf.grad

    return {
        "forward": lambda: cross_entropy(logits, labels).item(),
        "forward+grad": forward_backward,
    }


def _jax_calls(x: np.ndarray, y: np.ndarray) -> dict[str, Callable[[], Any]]:
    import jax
    import jax.numpy as jnp

    jax.config.update("jax_enable_x64", x.dtype == np.float64)  # type: ignore[no-untyped-call]

    def loss(logits: Any, labels: Any) -> Any:
        log_p = jax.nn.log_softmax(logits, axis=-1)
        return -jnp.mean(jnp.take_along_axis(log_p, labels[:, None], axis=-1))

    sync: Callable[[Any], Any] = jax.block_until_ready
    forward = jax.jit(loss)
    forward_backward = jax.jit(jax.value_and_grad(loss))
    logits, labels = jax.device_put(x), jax.device_put(y)
    return {
        "forward": lambda: sync(forward(logits, labels)),
        "forward+grad": lambda: sync(forward_backward(logits, labels)),
    }


def _peer_calls(
    peer: str, x: np.ndarray, y: np.ndarray, threads: int
) -> dict[str, Callable[[], Any]]:
    if peer == "fastxent":
        return _fastxent_calls(x, y)
    if peer == "reference":
        return _reference_calls(x, y)
    if peer == "torch":
        return _torch_calls(x, y, threads)
    if peer == "fastxent.torch":
        return _torch_calls(x, y, threads, dropin=True)
    return _jax_calls(x, y)


def _repeats_for(n_elements: int, quick: bool) -> int:
    """More repetitions for small cases, where one call is short and noise is relative."""
    if n_elements >= 1 << 26:
        return 3 if quick else 5
    if n_elements >= 1 << 20:
        return 5 if quick else 9
    return 21 if quick else 51


def _time_one_call(call: Callable[[], Any]) -> float:
    start = time.perf_counter()
    call()
    return time.perf_counter() - start


def _inner_loops_for(seconds_per_call: float) -> int:
    """Calls per timed sample, so that one sample lasts about ``SAMPLE_S`` or more."""
    return max(1, min(20_000, math.ceil(SAMPLE_S / max(seconds_per_call, 1e-9))))


def run(
    shapes: Iterable[tuple[int, int]] = QUICK_SHAPES,
    dtype: str = "float32",
    peers: Iterable[str] | None = None,
    operations: Iterable[str] = OPERATIONS,
    threads: int | None = None,
    quick: bool = True,
    progress: Callable[[str], None] | None = None,
    seed: int = 0,
) -> list[Measurement]:
    """Time every peer on every ``(N, C)`` case and return the measurements.

    Parameters
    ----------
    shapes : iterable of (int, int)
        Batch sizes and class counts.
    dtype : {"float32", "float64"}
        Logits dtype.
    peers : iterable of str, optional
        Subset of ``available_peers()``; default: every installed peer.
    operations : iterable of str
        ``"forward"`` and/or ``"forward+grad"``.
    threads : int, optional
        Threads for fastxent (``numba.set_num_threads``) and PyTorch; default: all.
    quick : bool
        Fewer repetitions, and the slow NumPy reference only on cases up to
        ``QUICK_REFERENCE_ELEMENTS`` elements.
    progress : callable, optional
        Called with a short status line before each case.
    seed : int
        Seed of the random logits and labels.

    Returns
    -------
    list of Measurement
        One per (shape, operation, peer), with medians and ratios against fastxent.
    """
    import numba

    from fastxent import _threading

    _threading.prepare()  # let fastxent choose the threading layer before numba starts one
    installed = available_peers()
    chosen = [p for p in (peers or installed) if installed.get(p)]
    if "fastxent" not in chosen:
        chosen.insert(0, "fastxent")
    n_threads = threads or numba.config.NUMBA_NUM_THREADS  # type: ignore[attr-defined]
    numba.set_num_threads(n_threads)
    rng = np.random.default_rng(seed)
    results: list[Measurement] = []
    for n_rows, n_classes in shapes:
        x = (rng.standard_normal((n_rows, n_classes), dtype=np.float64) * 2.0).astype(dtype)
        y = rng.integers(0, n_classes, size=n_rows)
        case_peers = [
            p
            for p in chosen
            if not (p == "reference" and quick and x.size > QUICK_REFERENCE_ELEMENTS)
        ]
        calls = {p: _peer_calls(p, x, y, n_threads) for p in case_peers}
        repeats = _repeats_for(x.size, quick)
        for operation in operations:
            if progress:
                progress(f"{n_rows} x {n_classes} {dtype} {operation}")
            losses, inner, seconds = {}, {}, {}
            for peer in case_peers:
                value = calls[peer][operation]()  # warm-up: compilation, caches, allocator
                losses[peer] = float(value[0] if isinstance(value, tuple) else value)
                seconds[peer] = _time_one_call(calls[peer][operation])
                inner[peer] = _inner_loops_for(seconds[peer])
            settle = seconds["fastxent"] > SETTLE_AFTER_S
            samples: dict[str, list[float]] = {p: [] for p in case_peers}
            for repeat in range(repeats):
                # Each repetition starts with another peer, so that none always runs right
                # after the same one.
                for peer in (
                    case_peers[repeat % len(case_peers) :] + case_peers[: repeat % len(case_peers)]
                ):
                    call, loops = calls[peer][operation], inner[peer]
                    if settle:
                        call()
                    start = time.perf_counter()
                    for _ in range(loops):
                        call()
                    samples[peer].append((time.perf_counter() - start) / loops)
            results += measurements(
                (n_rows, n_classes), dtype, operation, samples, losses, x.nbytes
            )
    return results


def _linear_calls(
    peer: str, h: np.ndarray, w: np.ndarray, y: np.ndarray, threads: int
) -> dict[str, Callable[[], Any]]:
    """The linear cross-entropy calls of one peer: forward, and forward + gradients.

    The BLAS floor is the products alone: ``h @ W.T`` into a preallocated ``(N, V)``
    array, and for the gradients also ``G @ W`` and ``G.T @ h`` (with ``G`` that array).
    fastxent writes its gradients into preallocated arrays too (``out=``); PyTorch
    allocates them, as its autograd does.
    """
    if peer == "fastxent":
        # Gradients into arrays reused from call to call, as a training loop does and as
        # the BLAS floor's products are (fresh ones cost page faults, not computation).
        out = (np.empty_like(h), np.empty_like(w), None)
        return {
            "linear forward": lambda: fastxent.linear_cross_entropy(h, w, y),
            "linear forward+grad": lambda: fastxent.linear_cross_entropy_with_grad(
                h, w, y, out=out
            )[0],
        }
    if peer == "blas floor":
        logits = np.empty((h.shape[0], w.shape[0]), h.dtype)
        grad_h, grad_w = np.empty_like(h), np.empty_like(w)

        def products() -> float:
            np.matmul(h, w.T, out=logits)
            np.matmul(logits, w, out=grad_h)
            np.matmul(logits.T, h, out=grad_w)
            return math.nan

        return {
            "linear forward": lambda: (np.matmul(h, w.T, out=logits), math.nan)[1],
            "linear forward+grad": products,
        }
    import torch
    import torch.nn.functional as F  # noqa: N812

    torch.set_num_threads(threads)
    hidden, weight = torch.from_numpy(h), torch.from_numpy(w)
    labels = torch.from_numpy(y)
    hidden_leaf = hidden.clone().requires_grad_(True)
    weight_leaf = weight.clone().requires_grad_(True)
    options = torch.nn.LinearCrossEntropyOptions() if peer == "torch chunked" else None

    def forward() -> float:
        with torch.no_grad():
            return float(F.linear_cross_entropy(hidden, weight, labels, options=options))

    def forward_backward() -> float:
        hidden_leaf.grad = weight_leaf.grad = None
        loss = F.linear_cross_entropy(hidden_leaf, weight_leaf, labels, options=options)
        loss.backward()  # type: ignore[no-untyped-call]
        return float(loss.detach())

    return {"linear forward": forward, "linear forward+grad": forward_backward}


def measurements(
    shape: tuple[int, ...],
    dtype: str,
    operation: str,
    samples: dict[str, list[float]],
    losses: dict[str, float],
    n_bytes: int,
) -> list[Measurement]:
    """One :class:`Measurement` per peer of a case, with its ratio to fastxent's median."""
    own = statistics.median(samples["fastxent"])
    results = []
    for peer, times in samples.items():
        median = statistics.median(times)
        results.append(
            Measurement(
                shape,
                dtype,
                operation,
                peer,
                median,
                times,
                n_bytes / median / 1e9,
                median / own,
                losses[peer],
            )  # fmt: skip
        )
    return results


def interleaved_samples(
    calls: dict[str, Callable[[], Any]], repeats: int
) -> tuple[dict[str, float], dict[str, list[float]]]:
    """Each peer's loss (from a warm-up call) and ``repeats`` timings, peers alternated.

    Each repetition starts with another peer; a call shorter than ``LONG_CALL_S`` is
    repeated to fill ``SAMPLE_S`` and preceded by an untimed one.
    """
    peers = list(calls)
    losses = {}
    for peer in peers:  # warm-up: compilation, caches, allocator
        value = calls[peer]()
        losses[peer] = float(value[0] if isinstance(value, tuple) else value)
    inner = {p: _inner_loops_for(_time_one_call(calls[p])) for p in peers}
    samples: dict[str, list[float]] = {p: [] for p in peers}
    for repeat in range(repeats):
        for peer in peers[repeat % len(peers) :] + peers[: repeat % len(peers)]:
            call = calls[peer]
            if inner[peer] > 1 or _time_one_call(call) < LONG_CALL_S:
                call()  # (see SAMPLE_S: the previous peer's threads stop spinning)
            start = time.perf_counter()
            for _ in range(inner[peer]):
                call()
            samples[peer].append((time.perf_counter() - start) / inner[peer])
    return losses, samples


def available_linear_peers() -> list[str]:
    """The linear peers that can run here (PyTorch's need ``F.linear_cross_entropy``)."""
    peers = ["fastxent", "blas floor"]
    if available_peers()["torch"]:
        import torch

        if hasattr(torch.nn.functional, "linear_cross_entropy"):
            peers += ["torch", "torch chunked"]
    return peers


def run_linear(
    shapes: Iterable[tuple[int, int, int]] = QUICK_LINEAR_SHAPES,
    dtype: str = "float32",
    peers: Iterable[str] | None = None,
    threads: int | None = None,
    quick: bool = True,
    progress: Callable[[str], None] | None = None,
    seed: int = 0,
) -> list[Measurement]:
    """Time fused linear cross-entropy against PyTorch's two paths and the BLAS floor.

    Parameters
    ----------
    shapes : iterable of (int, int, int)
        ``(N, H, V)``: rows, hidden features, classes.
    dtype, threads, quick, progress, seed
        As for :func:`run`.
    peers : iterable of str, optional
        Subset of :data:`LINEAR_PEERS` (default: those available).

    Returns
    -------
    list of Measurement
        One per (shape, operation, peer); ``speedup`` is peer time / fastxent time, so
        the BLAS floor's is below 1 (fastxent's overhead over the products alone).
    """
    import numba

    from fastxent import _threading

    _threading.prepare()
    available = available_linear_peers()
    chosen = [p for p in (peers or available) if p in available]
    if "fastxent" not in chosen:
        chosen.insert(0, "fastxent")
    n_threads = threads or numba.config.NUMBA_NUM_THREADS  # type: ignore[attr-defined]
    numba.set_num_threads(n_threads)
    rng = np.random.default_rng(seed)
    results: list[Measurement] = []
    for n_rows, hidden, n_classes in shapes:
        h = rng.standard_normal((n_rows, hidden), dtype=np.float64).astype(dtype)
        w = (rng.standard_normal((n_classes, hidden)) / math.sqrt(hidden)).astype(dtype)
        y = rng.integers(0, n_classes, size=n_rows)
        calls = {p: _linear_calls(p, h, w, y, n_threads) for p in chosen}
        for operation in LINEAR_OPERATIONS:
            if progress:
                progress(f"{n_rows} x {hidden} x {n_classes} {dtype} {operation}")
            losses, samples = interleaved_samples(
                {p: calls[p][operation] for p in chosen}, 3 if quick else 5
            )
            results += measurements(
                (n_rows, hidden, n_classes), dtype, operation, samples, losses,
                h.nbytes + w.nbytes,
            )  # fmt: skip
    return results


def format_table(results: list[Measurement], absent: Iterable[str] = ()) -> str:
    """A plain-text table of medians, throughput and ratios (peer time / fastxent time)."""
    lines = [
        f"{'shape':>20} {'dtype':>7} {'operation':>19} {'peer':>14} "
        f"{'median ms':>10} {'GB/s':>7} {'fastxent speed-up':>18}"
    ]
    for m in results:
        shape = " x ".join(map(str, m.shape))
        ratio = "-" if m.peer == "fastxent" else f"{m.speedup:.2f}x"
        lines.append(
            f"{shape:>20} {m.dtype:>7} {m.operation:>19} {m.peer:>14} "
            f"{m.median_s * 1e3:>10.3f} {m.gb_per_s:>7.2f} {ratio:>18}"
        )
    missing = list(absent)
    if missing:
        lines.append(f"absent peers (not installed): {', '.join(missing)}")
    return "\n".join(lines)


def format_dropin(results: list[Measurement]) -> str:
    """PyTorch's own loss against fastxent's drop-in for it, both through tensors.

    The ratio a PyTorch user sees on replacing ``F.cross_entropy`` by
    ``fastxent.torch.cross_entropy`` (the adapter's overhead included).
    """
    medians = {(m.shape, m.operation, m.peer): m.median_s for m in results}
    lines = []
    for (shape, operation, peer), median in medians.items():
        if peer != "fastxent.torch" or (shape, operation, "torch") not in medians:
            continue
        ratio = medians[shape, operation, "torch"] / median
        size = " x ".join(map(str, shape))
        lines.append(f"{size} {operation}: fastxent.torch {ratio:.2f}x faster than torch")
    return "\n".join(lines)


def format_agreement(results: list[Measurement]) -> str:
    """How far each peer's loss is from fastxent's, relative, per case and operation."""
    lines = []
    for m in results:
        if m.peer == "fastxent":
            own = m.loss
            continue
        if math.isnan(m.loss) and m.peer == "blas floor":
            continue  # the products alone have no loss
        relative = abs(m.loss - own) / abs(own) if own else abs(m.loss)
        shape = " x ".join(map(str, m.shape))
        lines.append(
            f"{shape} {m.operation}: {m.peer} loss {m.loss:.7g} vs fastxent "
            f"{own:.7g} (relative difference {relative:.1e})"
        )
    return "\n".join(lines)


def to_json(results: list[Measurement]) -> list[dict[str, Any]]:
    """Measurements as plain dictionaries, for ``--json``."""
    return [asdict(m) for m in results]


def plot(results: list[Measurement], path: str) -> None:
    """Bar chart of fastxent's speed-up over each peer, per case (needs matplotlib)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cases = sorted({(m.shape, m.operation) for m in results}, key=lambda c: (c[1], c[0]))
    peers = sorted({m.peer for m in results if m.peer != "fastxent"})
    figure, axes = plt.subplots(figsize=(max(6, 1.4 * len(cases)), 4))
    width = 0.8 / max(len(peers), 1)
    for k, peer in enumerate(peers):
        values = [
            next((m.speedup for m in results if (m.shape, m.operation) == c and m.peer == peer), 0)
            for c in cases
        ]
        positions = [i + k * width for i in range(len(cases))]
        axes.bar(positions, values, width, label=peer)
    axes.axhline(1.0, color="black", linewidth=0.8)
    axes.set_xticks([i + 0.4 - width / 2 for i in range(len(cases))])
    axes.set_xticklabels(["x".join(map(str, s)) + f"\n{op}" for s, op in cases], fontsize=8)
    axes.set_yscale("log")
    axes.set_ylabel("fastxent speed-up (peer time / fastxent time)")
    axes.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def progress_printer(total: int) -> Callable[[str], None]:
    """A progress bar on stderr (``tqdm``; silent when stderr is not a terminal).

    Each call names the case starting and counts it.
    """
    from tqdm import tqdm

    bar = tqdm(total=total, file=sys.stderr, disable=None, leave=False, unit="case")

    def report(message: str) -> None:
        bar.set_description_str(message, refresh=False)
        bar.update(1)
        if bar.n >= total:
            bar.close()

    return report
