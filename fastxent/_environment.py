"""Tuning settings read from environment variables once, at import."""

from __future__ import annotations

import os
import warnings


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
