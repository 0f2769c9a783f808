"""Sphinx configuration for the handbook *Task Queues & Async Job Processing*.

Build from the repository root with ``-c .``::

    sphinx-build -n -W --keep-going -b html -c . docs _build/html
    python tools/build_pdf.py            # LaTeX + xelatex -> _build/handbook.pdf
"""

from __future__ import annotations

import sys
from importlib.metadata import version as _version
from pathlib import Path

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT / "tools"))  # the handbook's own small Sphinx extensions

# -- Project -----------------------------------------------------------------------------
project = "Task Queues & Async Job Processing"
author = "The handbook's authors"
copyright = "2026, the handbook's authors"
release = _version("task-queues-handbook")  # one version, read from the installed package
version = release

# -- General -----------------------------------------------------------------------------
extensions = [
    "myst_parser",
    "sphinx_design",
    "sphinx_copybutton",
    "sphinx.ext.autodoc",
    "sphinx.ext.doctest",  # renders {doctest} blocks; Sybil (docs/conftest.py) runs them
    "sphinx.ext.intersphinx",
    "sphinx.ext.viewcode",
    "settings_table_ext",  # tools/: the settings-equivalence table, built from data files
]
root_doc = "index"
exclude_patterns = ["_build", "conftest.py", "**/.pytest_cache"]
templates_path = ["docs/_templates"]
pygments_style = "friendly"
pygments_dark_style = "monokai"

# Strict: every cross-reference must resolve (the build runs with -n -W --keep-going).
nitpicky = True
# The build needs no network, so intersphinx cannot fetch the inventories of the standard
# library or redis-py: references into them are left unresolved rather than failing.
nitpick_ignore_regex = [
    (r"py:.*", r"(redis|time|collections\.abc|typing|json|uuid)(\..*)?"),
    # Track 2: the frameworks' own types and the standard library's (no inventories either).
    (r"py:.*", r"(celery|kombu|rq|pathlib|datetime)(\..*)?"),
]
# No network at build time: intersphinx has no inventories to fetch, so it is only kept for
# explicit :external: roles that would fail loudly. Mapping stays empty on purpose.
intersphinx_mapping: dict[str, tuple[str, str | None]] = {}
intersphinx_disabled_reftypes = ["*"]

# -- MyST --------------------------------------------------------------------------------
myst_enable_extensions = ["colon_fence", "deflist", "substitution", "attrs_inline"]
myst_heading_anchors = 3

# -- autodoc -----------------------------------------------------------------------------
autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_default_options = {"members": True, "show-inheritance": True}

# -- copybutton: copy only what the reader types -------------------------------------------
# ">>> " and "... " for doctests, "$ " for shell sessions; output lines are not copied.
copybutton_prompt_text = r">>> |\.\.\. |\$ "
copybutton_prompt_is_regexp = True
copybutton_only_copy_prompt_lines = True
copybutton_remove_prompts = True
copybutton_exclude = ".linenos, .gp, .go"

# -- The PDF, linked from the HTML when it has been built ----------------------------------
PDF_NAME = "handbook.pdf"
_pdf = ROOT / "_build" / PDF_NAME
if _pdf.exists():
    html_extra_path = [str(_pdf)]  # copied to the site root: a stable /handbook.pdf URL
    tags.add("pdf")  # noqa: F821 - `tags` is provided by Sphinx while it reads this file

# -- HTML --------------------------------------------------------------------------------
html_theme = "furo"
html_title = "Task Queues & Async Job Processing"
html_static_path = ["docs/_static"]
html_css_files = ["handbook.css"]
html_context = {"pdf_available": _pdf.exists(), "pdf_name": PDF_NAME}
html_sidebars = {
    "**": [
        "sidebar/brand.html",
        "sidebar/search.html",
        "sidebar/scroll-start.html",
        "sidebar/navigation.html",
        "sidebar/pdf-download.html",
        "sidebar/scroll-end.html",
    ]
}
html_theme_options = {"navigation_with_keys": True}

# -- LaTeX / PDF (xelatex via latexmk; see tools/build_pdf.py) ----------------------------
latex_engine = "xelatex"
latex_use_xindy = False  # Sphinx turns xindy on for xelatex; Debian's TeX lacks it
latex_documents = [(root_doc, "handbook.tex", project.replace("&", r"\&"), author, "manual")]
latex_toplevel_sectioning = "part"
latex_show_urls = "footnote"
latex_table_style = ["booktabs", "colorrows"]
latex_elements = {
    "papersize": "a4paper",
    "extraclassoptions": "openany,oneside",  # no blank pages before parts and chapters
    "pointsize": "10pt",
    "fontpkg": r"""
\setmainfont{FreeSerif}
\setsansfont{FreeSans}
\setmonofont{DejaVu Sans Mono}[Scale=0.82]
""",
    "sphinxsetup": "verbatimforcewraps=true, verbatimmaxunderfull=0, TitleColor={rgb}{0.1,0.2,0.45}",
    "preamble": r"""
% sphinx-design cards arrive as sphinxuseclass environments: give them a frame.
\usepackage{mdframed}
\newenvironment{sphinxclasssd-card}{\begin{mdframed}[linewidth=0.6pt,linecolor=gray]}{\end{mdframed}}
% Let long inline literals (setting names) break after underscores inside tables.
\let\OldSphinxcode\sphinxcode
\renewcommand{\sphinxcode}[1]{\OldSphinxcode{\sphinxbreaksattexescapedchars #1}}
""",
}
