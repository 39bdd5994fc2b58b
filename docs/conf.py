"""Sphinx configuration of fastxent's documentation site.

Build it from the repository's root::

    pip install -e ".[docs]" && sphinx-build -W --keep-going -b html docs docs/_build/html

Pages are MyST Markdown; the API reference is generated from the numpydoc docstrings.
"""

from __future__ import annotations

import fastxent

project = "fastxent"
author = "the fastxent developers"
copyright = "the fastxent developers"
version = release = fastxent.__version__

extensions = [
    "myst_parser",
    "numpydoc",
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.mathjax",
    "matplotlib.sphinxext.plot_directive",
]

# Sources: the Markdown pages under docs/, nothing else (no build output, no images).
source_suffix = {".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build", "**/_build", "Thumbs.db", ".DS_Store"]

# MyST: $inline$ and $$display$$ math, LaTeX environments, ::: fences, anchors for ## titles
# (so that links such as semantics.md#reductions resolve).
myst_enable_extensions = ["dollarmath", "amsmath", "colon_fence", "deflist"]
myst_heading_anchors = 3
myst_dmath_double_inline = True

# API reference: members in source order, type hints in the text rather than the signature
# (the docstrings' Parameters sections already give the types), full names (the same name
# is in fastxent, fastxent.reference, fastxent.torch and fastxent.dask).
autodoc_member_order = "bysource"
autodoc_typehints = "none"
autosummary_generate = False
add_module_names = True
toc_object_entries_show_parents = "hide"

# numpydoc: the docstrings' sections; no automatic member tables (the API pages list the
# members they document) and no cross-reference guessing for the types in prose.
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False
numpydoc_xref_param_type = False
numpydoc_validation_checks: set[str] = set()

# matplotlib's plot directive: figures drawn when the site is built, the code not shown.
plot_include_source = False
plot_html_show_source_link = False
plot_html_show_formats = False
plot_formats = [("png", 144)]
plot_rcparams = {"figure.figsize": (6.4, 3.6), "font.size": 10}

# No network at build time: no intersphinx.
html_theme = "pydata_sphinx_theme"
html_title = f"fastxent {release}"
html_show_sourcelink = False
html_theme_options = {
    "navigation_depth": 2,
    "show_toc_level": 2,
    "navbar_align": "left",
    "header_links_before_dropdown": 5,
    "secondary_sidebar_items": ["page-toc"],
    "footer_start": ["copyright"],
    "footer_end": [],
}
# No section navigation on the pages that have no section: the home page and the design notes.
html_sidebars = {"index": [], "design": []}
html_static_path = ["_static"]
html_css_files = ["fastxent.css"]
