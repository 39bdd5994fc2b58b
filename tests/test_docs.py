"""The examples of the documentation pages (``docs/*.md``, README) run as doctests.

Markdown fences are blank lines to doctest, so an example's expected output ends where
its code block does. Each page runs with ``np`` and ``fastxent`` imported.
"""

from __future__ import annotations

import doctest
import os
import pathlib

import numpy as np
import pytest
from conftest import import_torch

import fastxent

ROOT = pathlib.Path(__file__).resolve().parent.parent
PAGES = sorted((ROOT / "docs").glob("*.md")) + [ROOT / "README.md"]


@pytest.mark.parametrize("page", PAGES, ids=[page.name for page in PAGES])
def test_examples_run(page):
    if ">>> import torch" in page.read_text():
        import_torch()  # the PyTorch pages: skipped without it, unless CI requires it
    if ">>> import dask" in page.read_text() and os.environ.get("FASTXENT_REQUIRE_DASK") != "1":
        pytest.importorskip("dask.array")  # the Dask page, likewise
    text = "\n".join(
        "" if line.lstrip().startswith("```") else line for line in page.read_text().splitlines()
    )
    test = doctest.DocTestParser().get_doctest(
        text, {"np": np, "fastxent": fastxent}, page.name, str(page), 0
    )
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    runner.run(test)
    result = runner.summarize(verbose=False)
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples failed"
