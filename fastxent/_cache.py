"""Keep Numba's on-disk cache of fastxent's kernels fresh when any of their sources change.

Numba keys a cached function by a hash of the one file that defines it. A fastxent kernel
inlines helpers and primitives from other files (``_kernels/*.py``, ``_simd/*.py``), so
after an edit there (a ``git pull`` into an editable install, say) the kernel's own file
is unchanged and Numba would load machine code built from the old helpers: silently
wrong or slow. Here each fastxent function gets, as its source stamp, one hash of all the
files compiled code comes from (the kernels, the primitives, the compile options).
Other code's caching is untouched.

This uses Numba's cache-locator classes, which are not a public API; with a Numba whose
caching module differs, fastxent falls back to Numba's default (per-file) stamps.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from fastxent._numba_compat import cache_locator, cache_locator_classes

PACKAGE_DIR = Path(__file__).resolve().parent


@functools.lru_cache(maxsize=1)
def package_sources() -> tuple[Path, ...]:
    """The files whose code can end up inside a compiled kernel (and the compile options).

    Listed once per process (each of the ~70 compiled functions asks at import); their
    contents are still stamped by modification time on every call (:func:`sources_stamp`).
    """
    return tuple(
        sorted(
            [
                *PACKAGE_DIR.glob("_kernels/*.py"),
                *PACKAGE_DIR.glob("_simd/*.py"),
                PACKAGE_DIR / "_config.py",
                PACKAGE_DIR / "_tuning.py",  # its constants are compiled in
                PACKAGE_DIR / "_numba_compat.py",  # it emits code for the intrinsics
            ]
        )
    )


def sources_stamp(paths: Sequence[Path]) -> bytes:
    """One SHA-256 over the names and contents of ``paths``, cached by their mtimes and sizes."""
    stats = [(path, path.stat()) for path in paths]
    return _hash_files(tuple((str(path), st.st_mtime_ns, st.st_size) for path, st in stats))


@functools.lru_cache(maxsize=8)
def _hash_files(states: tuple[tuple[str, int, int], ...]) -> bytes:
    digest = hashlib.sha256()
    for name, _, _ in states:
        digest.update(Path(name).relative_to(PACKAGE_DIR).as_posix().encode())
        digest.update(Path(name).read_bytes())
    return digest.digest()


def _is_ours(py_file: str) -> bool:
    try:
        return Path(py_file).resolve().is_relative_to(PACKAGE_DIR)
    except OSError:
        return False


def _package_stamped(locator: type) -> type:
    """A subclass of a Numba locator that serves fastxent's files, with the package stamp."""

    class PackageStamped(locator):  # type: ignore[misc,valid-type]
        @classmethod
        def from_function(cls, py_func: Any, py_file: str) -> Any:
            if not _is_ours(py_file):
                return None
            return super().from_function(py_func, py_file)

        def get_source_stamp(self) -> bytes:
            return sources_stamp(package_sources())

    PackageStamped.__name__ = PackageStamped.__qualname__ = "Fastxent" + locator.__name__
    return PackageStamped


def install_package_stamps() -> bool:
    """Put the package-stamped locators ahead of Numba's own; False where that cannot be done.

    Numba tries its locators in order (``NUMBA_CACHE_DIR``, next to the source, the user's
    cache directory, ...); each of the first three gets a fastxent twin just before it.
    Idempotent.
    """
    classes = cache_locator_classes()
    if classes is None:
        return False
    if any(cls.__name__.startswith("Fastxent") for cls in classes):
        return True
    wanted = ("UserProvidedCacheLocator", "InTreeCacheLocator", "UserWideCacheLocator")
    locators: list[type] = []
    for name in wanted:
        locator = cache_locator(name)
        if locator is None or locator not in classes:
            return False
        locators.append(locator)
    for locator in locators:
        classes.insert(classes.index(locator), _package_stamped(locator))
    return True
