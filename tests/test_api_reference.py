"""The API reference (``docs/api/*.md``) documents every public name, once, and no other.

The public names are the ``__all__`` of ``fastxent``, ``fastxent.reference``,
``fastxent.torch`` and ``fastxent.dask`` (read from their sources, so neither PyTorch nor
Dask is needed here), and the public properties and methods of ``fastxent.Evaluation``.
A name is documented by an autodoc directive (``.. autofunction:: fastxent.softmax``,
``autoclass``, ``autoproperty``, ``automethod``, ...) or a ``py:`` directive, always with
its full dotted name, in a page's ``{eval-rst}`` block; ``autosummary`` tables only link to
those entries and do not count. No Sphinx build is needed: the pages' sources are read.
"""

from __future__ import annotations

import ast
import collections
import dataclasses
import inspect
import pathlib
import re

import fastxent

ROOT = pathlib.Path(__file__).resolve().parent.parent
API_PAGES = sorted((ROOT / "docs" / "api").glob("*.md"))
PUBLIC_MODULES = ("fastxent", "fastxent.reference", "fastxent.torch", "fastxent.dask")

#: ``.. autofunction:: fastxent.softmax`` (reST) or ```` ```{autofunction} fastxent.softmax ````.
DIRECTIVE = re.compile(
    r"^\s*(?:\.\.\s+(?P<rst>[\w:]+)::|```+\{(?P<myst>[\w:]+)\})[ \t]*(?P<name>\S+)",
    re.MULTILINE,
)
#: Directives that document one object (modules and autosummary tables are not entries).
ENTRY_DIRECTIVES = re.compile(
    r"auto(function|class|method|property|attribute|data|exception)"
    r"|py:(function|class|method|property|attribute|data|exception)"
)


def module_all(module: str) -> list[str]:
    """The ``__all__`` of a fastxent module, read from its source without importing it."""
    path = ROOT.joinpath(*module.split("."), "__init__.py")
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.Assign) and any(
            isinstance(target, ast.Name) and target.id == "__all__" for target in node.targets
        ):
            return list(ast.literal_eval(node.value))
    raise AssertionError(f"{path} has no __all__")


def evaluation_members() -> list[str]:
    """The public properties and methods of ``Evaluation`` (its dataclass fields aside)."""
    fields = {field.name for field in dataclasses.fields(fastxent.Evaluation)}
    kinds = (property, classmethod, staticmethod)
    return [
        name
        for name, member in vars(fastxent.Evaluation).items()
        if not name.startswith("_")
        and name not in fields
        and (isinstance(member, kinds) or inspect.isfunction(member))
    ]


def public_names() -> set[str]:
    names = {f"{module}.{name}" for module in PUBLIC_MODULES for name in module_all(module)}
    names |= {f"fastxent.Evaluation.{name}" for name in evaluation_members()}
    return names


def documented_names() -> collections.Counter[str]:
    """Each object an API page documents, with the number of times it does."""
    names: collections.Counter[str] = collections.Counter()
    for page in API_PAGES:
        for match in DIRECTIVE.finditer(page.read_text()):
            directive = match["rst"] or match["myst"]
            if ENTRY_DIRECTIVES.fullmatch(directive):
                names[match["name"]] += 1
    return names


def test_the_pages_are_read():
    documented = documented_names()
    assert "fastxent.cross_entropy" in documented
    assert "fastxent.Evaluation.nll" in documented
    assert len(documented) >= len(module_all("fastxent"))


def test_every_public_name_is_documented():
    missing = sorted(public_names() - set(documented_names()))
    assert not missing, f"public names missing from docs/api/*.md: {missing}"


def test_no_name_is_documented_twice():
    twice = sorted(name for name, count in documented_names().items() if count > 1)
    assert not twice, f"documented more than once in docs/api/*.md: {twice}"


def test_every_documented_name_exists():
    stale = sorted(set(documented_names()) - public_names())
    assert not stale, f"docs/api/*.md documents names that are not public: {stale}"


def test_every_evaluation_field_is_described():
    text = (ROOT / "docs" / "api" / "evaluation.md").read_text()
    missing = [
        field.name
        for field in dataclasses.fields(fastxent.Evaluation)
        if f"| `{field.name}` |" not in text
    ]
    assert not missing, f"Evaluation fields missing from docs/api/evaluation.md: {missing}"
