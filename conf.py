"""Sphinx configuration for the handbook *Task Queues & Async Job Processing*.

Build from the repository root with ``-c .``::

    sphinx-build -n -W --keep-going -b html -c . docs _build/html
    python -m handbook_sphinx.build_pdf  # LaTeX + xelatex -> _build/handbook.pdf
"""

from __future__ import annotations

import tomllib
from importlib.metadata import PackageNotFoundError, version as _version
from pathlib import Path

import labs.site as _site

ROOT = Path(__file__).resolve().parent

# -- Project -----------------------------------------------------------------------------
project = "Task Queues & Async Job Processing"
author = "The handbook's authors"
copyright = "2026, the handbook's authors"
try:
    release = _version("task-queues-handbook")  # one version, read from the installed package
except PackageNotFoundError:  # a checkout on PYTHONPATH, not installed: the same number, from its source
    release = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]["version"]
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
    "sphinx.ext.graphviz",  # the diagrams: .dot files beside the code they draw, under examples/
    # The handbook's toolkit: {example} listings, generated tables and figures, the
    # page<->code contract (warnings at page.md:LINE), the settings table and the runbook.
    "handbook_sphinx",
]
root_doc = "index"
numfig = True  # "Figure 3", "Listing 2": numbered in HTML and PDF
numfig_format = {"figure": "Figure %s", "table": "Table %s", "code-block": "Listing %s"}
# The PDF starts at parts, so depth 2 numbers figures and listings per chapter ("Figure 11.1").
numfig_secnum_depth = 2
# _front/: the PDF's preface and quick reference, included by index.md ({only} latex).
exclude_patterns = ["_build", "conftest.py", "**/.pytest_cache", "_front"]
templates_path = ["docs/_templates"]
pygments_style = "a11y-high-contrast-light"  # accessible-pygments: WCAG AA contrast
pygments_dark_style = "a11y-high-contrast-dark"

# Strict: every cross-reference must resolve (the build runs with -n -W --keep-going).
nitpicky = True
# The build needs no network, so intersphinx cannot fetch the inventories of the standard
# library or redis-py: references into them are left unresolved rather than failing.
nitpick_ignore_regex = [
    (r"py:.*", r"(redis|time|collections\.abc|typing|json|uuid|sqlite3|pathlib|random)(\..*)?"),
    # Track 3 (tracing): OpenTelemetry's and the standard library's logging types have no
    # inventory offline either; `Tracer` is how autodoc prints the imported annotation.
    (r"py:.*", r"(opentelemetry|logging|contextvars)(\..*)?"),
    (r"py:class", r"Tracer"),
    (r"py:class", r"pathlib\.Path"),  # standard library, no inventory offline (see above)
    # prometheus_client has no inventory offline either; type hints name CollectorRegistry bare.
    (r"py:.*", r"(prometheus_client(\..*)?|CollectorRegistry)"),
    # The PyPI bullmq port publishes no inventory either (examples.frameworks.bullmq.bridge).
    (r"py:.*", r"bullmq(\..*)?"),
    # The same for the standard library and broker clients that Track 1 modules annotate with.
    (r"py:.*", r"(datetime|decimal|pika|msgpack|fastavro)(\..*)?"),
    # Track 2: the frameworks' own types and the standard library's (no inventories either).
    (r"py:.*", r"(celery|kombu|amqp|rq|pathlib|datetime)(\..*)?"),
    # The PostgreSQL queue annotates with psycopg's types; psycopg's inventory is not offline.
    (r"py:.*", r"psycopg(\..*)?"),
    # rq's Job annotates its connection with the bare name Redis; the webhook egress policy
    # annotates with these standard-library modules (no inventory offline either).
    (r"py:class", r"Redis"),
    (r"py:.*", r"(ipaddress|ssl|urllib)(\..*)?"),
    (r"py:class", r"matplotlib\..*"),  # the docs toolkit's figures (handbook_sphinx.figures)
    # The deploys page's modules annotate with these standard-library types (no inventory).
    (r"py:.*", r"(ssl|urllib|subprocess|contextlib)(\..*)?"),
]
# No network at build time: intersphinx has no inventories to fetch, so it is only kept for
# explicit :external: roles that would fail loudly. Mapping stays empty on purpose.
intersphinx_mapping: dict[str, tuple[str, str | None]] = {}
intersphinx_disabled_reftypes = ["*"]

# -- Graphviz: vector diagrams in both outputs (SVG in HTML; the LaTeX builder always uses PDF)
graphviz_output_format = "svg"
graphviz_dot_args = ["-Gfontname=DejaVu Sans", "-Nfontname=DejaVu Sans", "-Efontname=DejaVu Sans"]

# -- MyST --------------------------------------------------------------------------------
myst_enable_extensions = ["colon_fence", "deflist", "substitution", "attrs_inline"]
myst_heading_anchors = 3
# One source for each fact: pages write {{ kombu_version }} or {{ code.kombu_visibility_timeout }}
# instead of typing "5.7.0" or `3600`; the values are read from the installed libraries now
# (handbook_sphinx/facts.py), and tests/test_facts.py fails on a value typed by hand.
from handbook_sphinx import facts  # noqa: E402 - the toolkit package, beside this file

myst_substitutions = facts.substitutions()

# -- autodoc -----------------------------------------------------------------------------
autodoc_member_order = "bysource"
autodoc_preserve_defaults = True  # show `registry=REGISTRY`, not the object's long repr
autodoc_typehints = "description"
autodoc_default_options = {"members": True, "show-inheritance": True}

# -- copybutton: copy only what the reader types -------------------------------------------
# ">>> " and "... " for doctests (a bare "..." ends a block, as pasted into a REPL), "$ " for
# shell sessions; output lines are not copied.
copybutton_prompt_text = r">>> |\.\.\.(?: |$)|\$ "  # no capturing groups: copybutton numbers its own
copybutton_prompt_is_regexp = True
copybutton_only_copy_prompt_lines = True
copybutton_remove_prompts = True
copybutton_exclude = ".linenos"  # keep .gp prompts: the regex above needs them to pick input lines

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
html_favicon = "docs/_static/favicon.svg"
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
# Section titles and the runbook's entries rank above stray words (handbook_sphinx/search_terms.py).
html_search_scorer = str(ROOT / "handbook_sphinx" / "search_scorer.js")

# -- Site conventions, all from ONE base URL (labs/site.py) ------------------------------
# HANDBOOK_BASE_URL is where the built site is published (default: the local address README's
# `python -m http.server` serves _build/html on). The sitemap, the link previews, the 404
# page's links and the runbook links of the downloadable alert rules all start with it.
html_baseurl = _site.base_url()
extensions += [  # noqa: F821 - `extensions` is defined above (the toolkit's list)
    "labs.site",  # the rendered alert rules; fails a build whose pages link a PDF it lacks
    "notfound.extension",  # sphinx-notfound-page: 404.html with absolute links
    "sphinxext.opengraph",  # link previews
    "sphinx_sitemap",  # sitemap.xml
    "sphinx_last_updated_by_git",  # "Last updated on" each page, from git
]
notfound_urls_prefix = _site.base_path(html_baseurl)  # "/" unless the site lives under a path
ogp_site_url = html_baseurl
ogp_site_name = project
ogp_social_cards = {"enable": False}  # no generated images (they need fonts and time)
sitemap_url_scheme = "{link}"  # no language or version segment in the URLs
sitemap_excludes = ["search.html", "genindex.html", "404.html", "py-modindex.html"]
html_last_updated_fmt = "%Y-%m-%d"
git_last_updated_timezone = "UTC"
# Outside a git checkout (an unpacked sdist) pages simply carry no date.
suppress_warnings = ["git.subprocess_error", "git.command_not_found", "git.too_shallow"]
today_fmt = "%Y-%m-%d"  # the build date, on the PDF's title page (SOURCE_DATE_EPOCH pins it)

# -- LaTeX / PDF (xelatex via latexmk; see handbook_sphinx/build_pdf.py) ------------------
latex_engine = "xelatex"
latex_use_xindy = False  # Sphinx turns xindy on for xelatex; Debian's TeX lacks it
latex_documents = [(root_doc, "handbook.tex", project.replace("&", r"\&"), author, "manual")]
latex_toplevel_sectioning = "part"
# No footnotes for links: a footnote number glued onto "celery/celery#2599" made "#259988" in
# copied text. handbook_sphinx prints each address after its link's text instead, in the line
# and breakable (url_after_link), except an issue link, whose text already names it.
latex_show_urls = "no"
# No Python module index in the PDF: the API reference chapter lists the modules, and the
# book's index is for concepts.
latex_domain_indices = False
latex_table_style = ["booktabs", "colorrows"]
latex_elements = {
    "papersize": "a4paper",
    "extraclassoptions": "openany,oneside",  # no blank pages before parts and chapters
    "pointsize": "10pt",
    "fncychap": "",  # chapter headings: titlesec, in the preamble below
    # The printed contents list parts and chapters: the sections repeat the same template
    # ("How it works", "Failure modes", ...) under every chapter; the PDF's bookmarks keep them.
    "tocdepth": r"\setcounter{tocdepth}{0}",
    "fontpkg": r"""
\setmainfont{FreeSerif}
\setsansfont{FreeSans}
\setmonofont{DejaVu Sans Mono}[Scale=0.73]
""",
    # The index: small, ragged, in three columns (sphinxtheindex in the preamble below).
    "printindex": r"\footnotesize\raggedright\sloppy\printindex",
    # A code line too long for the page wraps at a space or punctuation; it is cut inside a
    # token only when that would leave more than 60 characters of the line empty (or when
    # one token is wider than the line), so a copied command or query keeps its words whole.
    "sphinxsetup": "verbatimforcewraps=true, verbatimmaxunderfull=60, "
    "TitleColor={rgb}{0.1,0.2,0.45}, hmargin={0.75in,0.75in}, vmargin={0.62in,0.67in}, "
    "pre_padding=2pt, verbatimhintsturnover=false",
    # Code is set at the mono font's scaled size (7.3 pt) on an 8.7 pt line, not on the body
    # text's 11 pt line: a listing takes a fifth less height and reads as a block.
    "fvset": r"\fvset{fontsize=\fontsize{10pt}{9.5pt}\selectfont}",
    "preamble": r"""
% sphinx-design cards arrive as sphinxuseclass environments: give them a frame.
\usepackage{mdframed}
\newenvironment{sphinxclasssd-card}{\begin{mdframed}[linewidth=0.6pt,linecolor=gray]}{\end{mdframed}}
% Inline literals (setting and test names) may break after an underscore, so a long name
% wraps instead of running into the margin.
\makeatletter
\newcommand{\handbookbreakableunderscore}{\textunderscore\hspace{0pt}}
\let\handbook@upquote\sphinxupquote
\DeclareRobustCommand{\sphinxupquote}[1]{{\let\_\handbookbreakableunderscore\handbook@upquote{#1}}}
% A long URL in a footnote may break after a hyphen too, not only after / . and the like.
\g@addto@macro{\UrlBreaks}{\do\-}
% A term of a definition list (a failure mode, a glossary entry) starts a page rather than
% end one with its definition on the next: ask for room for the term and two lines.
\usepackage{needspace}
\let\handbook@lineitem\sphinxlineitem
\renewcommand{\sphinxlineitem}[2]{\Needspace*{3\baselineskip}\handbook@lineitem{#1}{#2}}
% Code wraps at spaces and punctuation, not after "_" or "-": those sit inside names
% (jobqueue_jobs_processed_total, maxmemory-policy, --user) and a copied command would break.
\renewcommand*\sphinxbreaksafterlist{\do\PYGZcb\}\do\PYGZca\^\do\PYGZam\&\do\PYGZgt\>\do\PYGZti\~\do\PYGZbs\\}
\linespread{0.92}
% Paragraphs a third of a line apart (the parskip package's half line left a band of white
% between the many one-line paragraphs and listings), captions closer to what they label.
\setlength{\parskip}{0.35\baselineskip plus 1pt}
\setlength{\abovecaptionskip}{5pt}
\renewcommand*\sphinxbelowcaptionspace{.3\sphinxbaselineskip}
% The address printed after a link, and a chapter's list of sources, are set small.
\newcommand{\handbookurlsize}{\small}
\expandafter\def\csname DUrolehandbookurl\endcsname#1{{\handbookurlsize#1}}
% A chapter's sources: footnote size, the items without space between them.
\newenvironment{sphinxclasshandbooksources}{\footnotesize\let\handbookurlsize\scriptsize
  \let\handbook@itemize\itemize
  \def\itemize{\handbook@itemize\setlength{\itemsep}{0pt}\setlength{\parskip}{0pt}}}{}
% Compact openings: a chapter has its number and title on one line (no
% "CHAPTER ONE" banner and half a page of space); a part shares its page with its intro text.
% A chapter follows the previous one on the same page when a third of the page is left
% (a rule above its title marks the start): a new page for each of 30 chapters left
% 15 pages of white at chapter ends.
\titleclass{\chapter}{straight}
% \Needspace* measures the page: needspace's \needspace is a guess that, with the ragged
% bottom Sphinx sets, breaks early before a tall table or listing.
\AtBeginDocument{\let\handbook@chapter\chapter\def\chapter{\Needspace*{0.33\textheight}\handbook@chapter}}
\titleformat{\chapter}[hang]{\titlerule[0.8pt]\vspace{6pt}%
  \py@HeaderFamily\bfseries\huge\py@TitleColor}{\thechapter.}{0.5em}{}
\titlespacing*{\chapter}{0pt}{18pt}{14pt}
\titleclass{\part}{top}
\titleformat{\part}[display]{\centering\py@HeaderFamily\bfseries\Huge\py@TitleColor}{Part \thepart}{10pt}{}
\titlespacing*{\part}{0pt}{24pt}{28pt}
% Large figures (the diagrams) sit on a page with text instead of a float page of their own.
\renewcommand{\topfraction}{0.9}\renewcommand{\bottomfraction}{0.8}
\renewcommand{\textfraction}{0.07}\renewcommand{\floatpagefraction}{0.85}
% Tables are set a point smaller than the text (they are reference matter, and wrap less),
% and sections sit closer to their text.
\g@addto@macro\sphinxattablestart{\small}
\g@addto@macro\sphinxatlongtablestart{\small}
\titlespacing*{\section}{0pt}{2.2ex plus .6ex minus .3ex}{1ex}
\titlespacing*{\subsection}{0pt}{1.8ex plus .5ex minus .3ex}{0.7ex}
\titlespacing*{\subsubsection}{0pt}{1.5ex plus .4ex minus .2ex}{0.5ex}
% A figure is at most 45 % of the page high (the tall diagrams took 60 %); it keeps its
% proportions and stays readable.
\AtBeginDocument{\spx@image@maxheight0.45\textheight}
% Running heads: the chapter on the left of the header, the book on the right; the footer
% keeps the section and the page number.
% A long chapter title leaves the book's title out of the header rather than run into it.
\renewcommand{\chaptermark}[1]{\markboth{\thechapter.\ #1}{}}
\newlength{\handbookheadwidth}
\fancypagestyle{normal}{%
  \fancyhf{}%
  \fancyhead[L]{{\py@HeaderFamily\nouppercase{\leftmark}}}%
  \fancyhead[R]{\settowidth{\handbookheadwidth}{\py@HeaderFamily\nouppercase{\leftmark}}%
    \ifdim\handbookheadwidth<0.55\textwidth{\py@HeaderFamily Task Queues \& Async Job Processing}\fi}%
  \fancyfoot[L]{{\py@HeaderFamily\nouppercase{\rightmark}}}%
  \fancyfoot[R]{{\py@HeaderFamily\thepage}}%
  \renewcommand{\headrulewidth}{0.4pt}\renewcommand{\footrulewidth}{0.4pt}}
% The index follows the last chapter on its page when a third of the page is left, under a
% chapter-style title; three columns of roman type (Sphinx sets every entry in the small
% monospace face) with a short hanging indent and small letter heads.
\usepackage{multicol}
\renewenvironment{sphinxtheindex}{%
  \chapter*{\indexname}\phantomsection\addcontentsline{toc}{chapter}{\indexname}%
  \markboth{\indexname}{\indexname}%
  \parindent\z@ \parskip\z@ \@plus .3\p@\relax
  \renewcommand\@idxitem{\par\hangindent 1.5em}%
  \renewcommand\subitem{\@idxitem\hspace*{0.75em}}%
  \renewcommand\subsubitem{\@idxitem\hspace*{1.5em}}%
  \renewcommand\indexspace{\par\vskip 4\p@ \@plus 2\p@ \@minus 2\p@\relax}%
  \setlength{\columnsep}{1.2em}%
  \begin{multicols}{3}\let\item\@idxitem}{\end{multicols}}
\def\sphinxstyleindexentry#1{#1}
\def\sphinxstyleindexlettergroup#1{{\normalsize\py@HeaderFamily\bfseries#1}\par\nopagebreak\vspace{1pt}}
\makeatother
""",
}
# The PDF's title page: "Release 0.1.0, commit 0123456789ab", then the build date.
latex_elements["preamble"] += f"\\setreleaseinfo{{, commit {_site.build_commit().replace('_', '-')}}}\n"
