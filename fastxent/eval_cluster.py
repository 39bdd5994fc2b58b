"""``fastxent eval --workers N`` / ``--scheduler ADDRESS``: the same evaluation on Dask.

The logits are read by the workers, each task opening the files by path and reading its
own block of rows (:func:`fastxent.dask.from_file`), so they never pass through this
process or the scheduler (this process only checks the labels first, as the
single-process run does). The blocks are the single-process run's and their
statistics are added up in the same order, so the output is the same.
"""

from __future__ import annotations

import argparse
import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


class ClusterError(ValueError):
    """A cluster that cannot be started or reached, or that failed, as one line."""


def evaluate_on_cluster(
    args: argparse.Namespace, class_axis: int, rows_per_block: int, top_k: tuple[int, ...],
    bins: int, bar: Any,
) -> Any:  # fmt: skip
    """The :class:`~fastxent.Evaluation` of the files, computed by a Dask cluster, and seconds."""
    try:
        import distributed

        from fastxent._api.evaluation import Evaluation
        from fastxent.dask import from_file
        from fastxent.dask._functions import evaluation_parts
    except ImportError:
        raise ClusterError(
            "--workers and --scheduler run on Dask, which is not installed: "
            "pip install 'fastxent[dask]'"
        ) from None
    logits = from_file(args.logits, args.key, rows_per_chunk=rows_per_block)
    labels = from_file(args.labels, args.labels_key, rows_per_chunk=rows_per_block)
    # The progress bar counts the file's bytes, before any shift.
    block_bytes = [chunk * logits.nbytes // max(logits.shape[0], 1) for chunk in logits.chunks[0]]
    if args.shift:  # position t scores the label at t + 1, within each sequence
        logits, labels = logits[:, :-1], labels[:, 1:]
    parts = evaluation_parts(
        logits, labels, axis=class_axis, ignore_index=args.ignore_index, top_k=top_k, bins=bins
    )
    with _client(args, distributed) as client:
        started = time.perf_counter()  # the evaluation's time, not the cluster's start
        futures = client.compute(parts)
        sizes = {future.key: size for future, size in zip(futures, block_bytes, strict=True)}
        try:
            for future in distributed.as_completed(futures):
                bar.update(sizes[future.key])
            results = client.gather(futures)
        except (ValueError, TypeError, OSError):
            raise  # bad input found by a task: reported as in a single-process run
        except Exception as error:  # a worker lost for good, a cancelled task
            raise ClusterError(f"the Dask computation failed: {error!r}") from None
        seconds = time.perf_counter() - started
    return Evaluation.combine(results), seconds


@contextmanager
def _client(args: argparse.Namespace, distributed: Any) -> Iterator[Any]:
    """A client of the scheduler at ``--scheduler``, or of a new local cluster of ``--workers``."""
    if args.scheduler is not None:
        try:
            client = distributed.Client(args.scheduler, timeout="10s")
        except (OSError, ValueError) as error:
            raise ClusterError(
                f"--scheduler {args.scheduler}: cannot reach a Dask scheduler there ({error})"
            ) from None
        with client:
            yield client
        return
    try:
        cluster = distributed.LocalCluster(
            n_workers=args.workers, threads_per_worker=1, processes=True,
            dashboard_address=":0", silence_logs=logging.ERROR,  # any free port
        )  # fmt: skip
    except Exception as error:  # Dask's errors of a failed start vary (OSError, RuntimeError)
        raise ClusterError(
            f"--workers {args.workers}: cannot start a local Dask cluster ({error})"
        ) from None
    with cluster, distributed.Client(cluster) as client:
        yield client
