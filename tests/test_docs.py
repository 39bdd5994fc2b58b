"""The code of the documentation pages (``docs/**/*.md``, README) runs, and gives its output.

Each page runs in one namespace of its own, with ``np`` and ``fastxent`` imported, from
top to bottom:

- ``>>>`` examples (in a ```` ```python ```` block, or any other) run as doctests, with
  ELLIPSIS and NORMALIZE_WHITESPACE; Markdown fences are blank lines to doctest, so an
  example's expected output ends where its code block does.
- A ```` ```python ```` block without ``>>>`` prompts is a script: it is executed, and must
  not raise. One that must not run starts with a comment ``# not run: <the reason>``.
- ```` ```{plot} ```` figures are drawn by the Sphinx build, which fails on any error in
  their code (``-W``), not here.

A page that imports ``torch`` or ``dask`` in an example is skipped without them, unless CI
requires them (``FASTXENT_REQUIRE_TORCH``, ``FASTXENT_REQUIRE_DASK``).
"""

from __future__ import annotations

import dataclasses
import doctest
import os
import pathlib
import re

import numpy as np
import pytest
from conftest import import_torch

import fastxent

ROOT = pathlib.Path(__file__).resolve().parent.parent
PAGES = sorted(
    page
    for page in (ROOT / "docs").rglob("*.md")
    if "_build" not in page.relative_to(ROOT / "docs").parts
) + [ROOT / "README.md"]

#: A fence's opening line: its indent, its backticks or tildes, and its info string.
FENCE = re.compile(r"^(?P<indent>\s*)(?P<fence>`{3,}|~{3,})(?P<info>.*)$")
#: Info strings of Python code: ```python, ```py, ```{code-block} python, ```{code} python.
PYTHON_INFO = re.compile(r"(?:\{(?:code-block|code|sourcecode)\}\s*)?(?:python3?|py)\b.*")
NOT_RUN = "# not run:"


@dataclasses.dataclass
class Part:
    """A run of a page's lines: a Python script, or text whose ``>>>`` examples run."""

    script: bool
    lineno: int  # of the part's first line, from 0
    lines: list[str]


def page_parts(text: str) -> list[Part]:
    """A page cut into Python scripts and the text around them, in order."""
    lines = text.splitlines()
    parts = [Part(False, 0, [])]
    index = 0
    while index < len(lines):
        opening = FENCE.match(lines[index])
        if opening is None:
            parts[-1].lines.append(lines[index])
            index += 1
            continue
        fence = opening["fence"]
        closing = re.compile(rf"^\s*{re.escape(fence[0])}{{{len(fence)},}}\s*$")
        end = index + 1
        while end < len(lines) and not closing.match(lines[end]):
            end += 1
        body = lines[index + 1 : end]
        is_python = PYTHON_INFO.fullmatch(opening["info"].strip()) is not None
        if is_python and not any(line.lstrip().startswith(">>>") for line in body):
            parts.append(Part(True, index + 1, body))
            parts.append(Part(False, end + 1, []))
        else:  # fences are blank lines, so that expected output stops at the fence
            parts[-1].lines.extend(["", *body, ""])
        index = end + 1
    return parts


def run_script(part: Part, namespace: dict[str, object], page: pathlib.Path) -> None:
    code = "\n".join(part.lines)
    first = next((line.strip() for line in part.lines if line.strip()), "")
    if first.startswith(NOT_RUN):
        reason = first[len(NOT_RUN) :].strip()
        assert reason, f"{page.name}:{part.lineno}: '{NOT_RUN}' needs a reason"
        return
    # Blank lines before the code keep the traceback's line numbers those of the page.
    source = "\n" * part.lineno + code
    exec(compile(source, str(page), "exec"), namespace)


def test_fences_are_found():
    text = "a\n```python\nx = 1\n```\n>>> x\n1\n\n```bash\nls\n```\n"
    parts = page_parts(text)
    assert [(part.script, part.lineno) for part in parts] == [(False, 0), (True, 2), (False, 4)]
    assert parts[1].lines == ["x = 1"]
    assert parts[2].lines == [">>> x", "1", "", "", "ls", ""]


@pytest.mark.parametrize("page", PAGES, ids=[str(page.relative_to(ROOT)) for page in PAGES])
def test_examples_run(page):
    text = page.read_text()
    if re.search(r"^\s*(>>> )?import torch\b", text, re.MULTILINE):
        import_torch()  # the PyTorch pages: skipped without it, unless CI requires it
    if (
        re.search(r"^\s*(>>> )?(import|from) dask\b", text, re.MULTILINE)
        and os.environ.get("FASTXENT_REQUIRE_DASK") != "1"
    ):
        pytest.importorskip("dask.array")  # the Dask pages, likewise
    namespace: dict[str, object] = {"np": np, "fastxent": fastxent}
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    parser = doctest.DocTestParser()
    for part in page_parts(text):
        if part.script:
            run_script(part, namespace, page)
            continue
        test = parser.get_doctest(
            "\n".join(part.lines), namespace, page.name, str(page), part.lineno
        )
        runner.run(test, clear_globs=False)
    result = runner.summarize(verbose=False)
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples failed"
