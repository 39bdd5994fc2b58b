"""Every tuning constant and threshold of fastxent, and the environment variables that set them.

Two kinds, read in two ways:

- **Kernel constants** (block, tile and chain sizes): Numba freezes a global into the
  machine code it compiles, so these are fixed for the life of the process.
- **Thresholds** (:data:`THRESHOLDS`): host-side sizes at which the planner
  (``fastxent._plan``) switches strategy, read at every call. Two environment variables set
  them at import; the tests and tuning tools change them through :func:`overridden`.
"""

from __future__ import annotations

import contextlib
import os
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

# --------------------------------------------------------------------------------------
# Kernel constants (compiled in)
# --------------------------------------------------------------------------------------

#: Rows of at most this many classes are summed down a transposed tile, one lane a row.
SHORT_ROW = 32
#: A tile of short rows holds at most TILE_ROWS rows and TILE_ELEMENTS elements.
TILE_ROWS = 256
TILE_ELEMENTS = 1 << 14
#: Rows summed in one block at most (longer rows from memory go in chains of blocks).
WHOLE_ROW = 1024
#: Elements per iteration of the max's and the exp-sum's vector loops (4 x 16 float32).
MAX_VECTOR = 64
SUM_VECTOR = 64
#: Consecutive rows from memory that one thread takes as a chain.
CHAIN_ROWS = 64
#: Elements per block of a chained row's exp-sum; when prefetching, PREFETCH_BLOCK.
CHAIN_BLOCK = 1024
PREFETCH_BLOCK = 256
#: How far ahead a streaming exp-sum asks for the next row's cache lines.
PREFETCH_AHEAD_BYTES = 2048
CACHE_LINE_BYTES = 64
#: Rows of fewer classes than these go by tiles: softmax; log_softmax and logsumexp; the
#: integer-target cross-entropy forward.
SOFTMAX_TILE_CLASSES = 256
LOG_SOFTMAX_TILE_CLASSES = 128
FORWARD_TILE_CLASSES = 128
#: Positions per task of the integer-target kernels that keep the class axis in the middle.
COLUMN_TILE = 512
# linear_cross_entropy: fewest rows of logits per product before the vocabulary is split
# too (fewer rows make BLAS slow), and the share of the working memory kept for the
# weight gradient's accumulation block.
LINEAR_MIN_ROWS = 32
# Chunks of fewer rows keep their logits class-major, (V, R): BLAS computes W @ h.T for a
# few rows nearly as fast as for many, h @ W.T is up to a quarter slower; the class-major
# sweep is slower than the row kernels, which pays only below this many rows.
LINEAR_CLASS_MAJOR_ROWS = 256
# A forward whose chunks would be class-major takes this many rows at a time against blocks
# of classes instead (no gradient: a block's logits are not needed again).
LINEAR_FORWARD_ROWS = 512
LINEAR_WEIGHT_BLOCK_SHARE = 0.25

# --------------------------------------------------------------------------------------
# Thresholds (read by the planner at every call)
# --------------------------------------------------------------------------------------

#: Environment variables read at import.
PARALLEL_ENV = "FASTXENT_PARALLEL_MIN_ELEMENTS"
STREAMING_ENV = "FASTXENT_STREAMING_MIN_BYTES"


def integer_setting(name: str, meaning: str, fallback: str) -> int | None:
    """The environment variable ``name`` as an integer >= 0, ``None`` if unset or empty.

    An invalid value is reported (a ``RuntimeWarning`` that names the variable, says it
    is not ``meaning`` and that ``fallback`` is used instead) and gives ``None``.
    """
    text = os.environ.get(name, "").strip()
    if not text:
        return None
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        warnings.warn(
            f"{name}={text!r} is not {meaning} (an integer >= 0); using {fallback}",
            RuntimeWarning,
            stacklevel=2,
        )
        return None
    return value


def last_level_cache_bytes() -> int:
    """The CPU's last-level cache in bytes, as Linux reports it (32 MiB where it does not)."""
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    levels = {}
    for index in Path("/sys/devices/system/cpu/cpu0/cache").glob("index*"):
        try:
            level = int((index / "level").read_text())
            size = (index / "size").read_text().strip()
        except (OSError, ValueError):
            continue
        if size[:-1].isdigit() and size[-1] in units:
            levels[level] = int(size[:-1]) * units[size[-1]]
        elif size.isdigit():
            levels[level] = int(size)
    return levels[max(levels)] if levels else 32 << 20


@dataclass(slots=True)
class Thresholds:
    """The sizes at which the planner switches strategy (``fastxent._plan``)."""

    #: Inputs below this many elements run on the calling thread, under every layer...
    parallel_min_elements: int = 1 << 15
    #: ...and below these under the layers whose workers sleep between launches (none
    #: where PARALLEL_ENV sets the threshold of every layer).
    parallel_min_elements_by_layer: dict[str, int] = field(
        default_factory=lambda: {"tbb": 1 << 17, "workqueue": 1 << 17}
    )
    #: Inputs larger than this stream from memory (not from a cache): their long rows
    #: prefetch the next row. The last-level cache's size unless STREAMING_ENV sets it.
    streaming_min_bytes: int = 32 << 20
    streaming_source: str = "last-level cache"
    #: ...but only rows of at least this many classes prefetch.
    prefetch_min_classes: int = 4096
    #: Rows of fewer classes are never chained (tiles take them)...
    chain_min_classes: int = 256
    #: ...nor are rows of up to WHOLE_ROW classes in an input this small (taken in cache).
    cache_resident_bytes: int = 1 << 21


def _from_environment() -> Thresholds:
    thresholds = Thresholds()
    parallel = integer_setting(PARALLEL_ENV, "a number of elements", "fastxent's defaults")
    if parallel is not None:
        thresholds.parallel_min_elements, thresholds.parallel_min_elements_by_layer = parallel, {}
    streaming = integer_setting(STREAMING_ENV, "a number of bytes", "the last-level cache's size")
    if streaming is None:
        thresholds.streaming_min_bytes = last_level_cache_bytes()
    else:
        thresholds.streaming_min_bytes, thresholds.streaming_source = streaming, STREAMING_ENV
    return thresholds


#: The thresholds in force: set from the environment at import.
THRESHOLDS = _from_environment()


@contextlib.contextmanager
def overridden(**values: Any) -> Iterator[Thresholds]:
    """Set some :data:`THRESHOLDS` fields for the duration of a ``with`` block.

    >>> from fastxent import _tuning
    >>> with _tuning.overridden(streaming_min_bytes=0):
    ...     _tuning.THRESHOLDS.streaming_min_bytes
    0
    """
    names = {f.name for f in fields(Thresholds)}
    unknown = set(values) - names
    if unknown:
        raise TypeError(f"no such threshold: {', '.join(sorted(unknown))}")
    saved = {name: getattr(THRESHOLDS, name) for name in values}
    for name, value in values.items():
        setattr(THRESHOLDS, name, value)
    try:
        yield THRESHOLDS
    finally:
        for name, value in saved.items():
            setattr(THRESHOLDS, name, value)
