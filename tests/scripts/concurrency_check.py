"""Run fastxent from many threads or in child processes; exit 0 only if every result matches.

Used by tests/test_concurrency.py in a fresh interpreter per threading layer, since Numba
picks its layer once per process. Usage: ``python concurrency_check.py threads|processes``.
"""

from __future__ import annotations

import concurrent.futures
import multiprocessing
import sys
import threading

import numpy as np

import fastxent

N_THREADS = 8
CALLS_PER_THREAD = 200


def make_inputs(seed: int, n_rows: int, n_classes: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    logits = (rng.standard_normal((n_rows, n_classes)) * 3).astype(np.float32)
    return {
        "logits": logits,
        "labels": rng.integers(0, n_classes, n_rows),
        "probs": rng.dirichlet(np.ones(n_classes), n_rows).astype(np.float32),
        "binary": rng.random((n_rows, n_classes)).astype(np.float32),
    }


def every_loss(inputs: dict[str, np.ndarray]) -> list[np.ndarray]:
    """Every public function once; returns all results as arrays."""
    z, y, q, b = inputs["logits"], inputs["labels"], inputs["probs"], inputs["binary"]
    results = [
        fastxent.softmax(z),
        fastxent.log_softmax(z),
        fastxent.logsumexp(z),
        fastxent.cross_entropy(z, y, label_smoothing=0.1),
        *fastxent.cross_entropy_with_grad(z, y),
        *fastxent.cross_entropy_with_grad(z, q),
        fastxent.binary_cross_entropy(z, b),
        *fastxent.binary_cross_entropy_with_grad(z, b),
        fastxent.cross_entropy_from_probs(q, y),
        fastxent.entropy(q),
        fastxent.kl_divergence(z, q),
    ]
    return [np.asarray(r) for r in results]


# Half the workers use inputs large enough for the parallel kernels, half small ones.
SHAPES = [(256, 512), (8, 50)]


def worker_inputs(worker: int) -> dict[str, np.ndarray]:
    return make_inputs(worker, *SHAPES[worker % 2])


def same(a: list[np.ndarray], b: list[np.ndarray]) -> bool:
    return all(np.array_equal(x, y, equal_nan=True) for x, y in zip(a, b, strict=True))


def check_threads() -> None:
    expected = [every_loss(worker_inputs(w)) for w in range(N_THREADS)]
    failures: list[str] = []
    barrier = threading.Barrier(N_THREADS)

    def run(worker: int) -> None:
        inputs = worker_inputs(worker)
        barrier.wait()
        for call in range(CALLS_PER_THREAD):
            if not same(every_loss(inputs), expected[worker]):
                failures.append(f"thread {worker} call {call}")
                return

    threads = [threading.Thread(target=run, args=(w,)) for w in range(N_THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=600)
    if any(t.is_alive() for t in threads):
        sys.exit("deadlock: a thread did not finish")
    if failures:
        sys.exit(f"results differ from the single-threaded ones: {failures[:5]}")
    print(f"threads ok: {N_THREADS} threads x {CALLS_PER_THREAD} calls x 14 results")


def child_task(worker: int) -> list[np.ndarray]:
    return every_loss(worker_inputs(worker))


def check_processes() -> None:
    expected = [every_loss(worker_inputs(w)) for w in range(4)]  # the parent runs kernels
    for method in ("fork", "forkserver", "spawn"):
        context = multiprocessing.get_context(method)
        with context.Pool(2) as pool:
            results = pool.map_async(child_task, range(4)).get(timeout=600)
        if not all(same(r, e) for r, e in zip(results, expected, strict=True)):
            sys.exit(f"{method}: a child computed a different result")
        with concurrent.futures.ProcessPoolExecutor(2, mp_context=context) as executor:
            results = list(executor.map(child_task, range(4), timeout=600))
        if not all(same(r, e) for r, e in zip(results, expected, strict=True)):
            sys.exit(f"{method} executor: a child computed a different result")
    print("processes ok: fork, forkserver, spawn (Pool and ProcessPoolExecutor)")


if __name__ == "__main__":
    {"threads": check_threads, "processes": check_processes}[sys.argv[1]]()
