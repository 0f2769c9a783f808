"""``{example}``: a listing from ``examples/`` or ``labs/``, named by one argument.

.. code-block:: markdown

    ```{example} examples/fundamentals/retries.py#backoff
    ```

shows the lines between ``# [start:backoff]`` and ``# [end:backoff]`` of that file (any comment
syntax: ``-- [start:x]`` in Lua, ``// [start:x]`` in JavaScript), highlighted by the file's
language, with the file's path as its caption. Without ``#region`` it shows the whole file;
``:pyobject: Class.method`` shows one class or function instead. ``:dedent:``, ``:class:``,
``:emphasize-lines:`` and ``:name:`` work as for ``literalinclude``, which this directive
extends; ``:lines:`` does not exist here, because line numbers drift silently.

The caption links to the whole file: its highlighted source page (``sphinx.ext.viewcode``) for a
Python module the API reference documents, a download of the file otherwise. A reader who
copies one listing gets the rest in one click. In the PDF the caption is the path.

``:collapsed: SUMMARY`` is for listings that prove the handbook to itself rather than teach:
import-only listings, lab and benchmark harnesses, page-data loaders. On the web the listing
sits closed behind a ``<details>`` whose summary is SUMMARY (or "The listing: PATH"); the PDF
leaves it out, since a book cannot unfold it and the caption's file is on the site.

A missing file, region or end marker stops the strict build with one message at
``page.md:LINE`` that names the regions the file does have.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import ClassVar

from docutils import nodes
from docutils.parsers.rst import directives
from sphinx import addnodes
from sphinx.application import Sphinx
from sphinx.directives.code import LiteralInclude

from handbook_sphinx import root

#: Highlighting language by file suffix.
LANGUAGES = {
    ".py": "python",
    ".lua": "lua",
    ".js": "javascript",
    ".mjs": "javascript",
    ".rb": "ruby",
    ".ru": "ruby",
    ".yml": "yaml",
    ".yaml": "yaml",
    ".toml": "toml",
    ".json": "json",
    ".sh": "bash",
    ".ini": "ini",
    ".conf": "text",
    ".txt": "text",
}
_REGION = re.compile(r"\[start:([\w.-]+)\]")
_BLOCK = re.compile(
    r"^[ \t]*(`{3,}|:{3,}|~{3,})\{example\}[ \t]+(\S+)[^\n]*\n(.*?)^[ \t]*\1[ \t]*$",
    re.MULTILINE | re.DOTALL,
)
_DIRECTIVE = re.compile(r"^[ \t]*(?:`{3,}|:{3,}|~{3,})\{example\}[ \t]+(\S+)", re.MULTILINE)


def regions(text: str) -> list[str]:
    """The names of the ``[start:NAME]`` markers in ``text``, in file order."""
    return _REGION.findall(text)


def examples_in(page: str) -> list[str]:
    """The arguments of the ``{example}`` directives of a page's Markdown, in page order."""
    return _DIRECTIVE.findall(page)


def collapsed_in(page: str) -> list[str]:
    """The arguments of the page's ``{example}`` directives that have ``:collapsed:``."""
    return [m.group(2) for m in _BLOCK.finditer(page) if ":collapsed:" in m.group(3)]


class collapsed(nodes.General, nodes.Element):
    """A listing shown closed on the web (``<details>``) and left out of the PDF."""


def visit_collapsed_html(self, node: collapsed) -> None:
    # Styled inline: the summary reads as a quiet, clickable caption above the closed listing.
    self.body.append('<details class="handbook-collapsed" style="margin: 0 0 1rem">')
    self.body.append(
        '<summary style="cursor: pointer; font-size: var(--font-size--small)">'
        f"{self.encode(node['summary'])}</summary>"
    )


def depart_collapsed_html(self, node: collapsed) -> None:
    self.body.append("</details>")


def skip_collapsed(self, node: collapsed) -> None:
    raise nodes.SkipNode


def first_line(text: str, shown: str, after: int = 0) -> int:
    """The line of ``text`` (1-based) where ``shown`` begins, searching from offset ``after``."""
    head = shown.strip().splitlines()[0].strip() if shown.strip() else ""
    start = text.count("\n", 0, max(after, 0))
    for number, line in enumerate(text.splitlines()[start:], start + 1):
        if line.strip() == head:
            return number
    return 1


def region_text(text: str, region: str) -> str:
    """The lines of ``text`` that ``{example} FILE#region`` shows (the markers' lines excluded)."""
    after = text.split(f"[start:{region}]", 1)[1].split("\n", 1)[1]
    return after.split(f"[end:{region}]", 1)[0].rsplit("\n", 1)[0]


class Example(LiteralInclude):
    """A listing whose caption, language and markers come from its one argument."""

    option_spec: ClassVar[dict] = {
        key: spec
        for key, spec in LiteralInclude.option_spec.items()
        if key
        in {"dedent", "pyobject", "emphasize-lines", "class", "name", "lineno-match", "linenos"}
    } | {"collapsed": directives.unchanged}

    def run(self) -> list[nodes.Node]:
        path, _, region = self.arguments[0].partition("#")
        base = root(self.config)
        file = (base / path).resolve()
        if not any(
            file.is_relative_to(base / folder) for folder in self.config.handbook_listing_roots
        ):
            folders = " or ".join(f"{f}/" for f in self.config.handbook_listing_roots)
            raise self.error(
                f"example {path}: listings come from {folders} "
                "(paths are relative to the repository)"
            )
        if not file.is_file():
            raise self.error(f"example {path}: no such file")
        text = file.read_text(encoding="utf-8")
        if region:
            if "pyobject" in self.options:
                raise self.error(
                    f"example {self.arguments[0]}: give a #region or a :pyobject:, not both"
                )
            start, end = f"[start:{region}]", f"[end:{region}]"
            if start not in text:
                found = ", ".join(regions(text)) or "none"
                raise self.error(
                    f"example {path} has no region {region!r}: no line marks {start} "
                    f"(its regions: {found})"
                )
            if end not in text.split(start, 1)[1]:
                raise self.error(
                    f"example {path}: region {region!r} has no {end} line after its start"
                )
            self.options["start-after"], self.options["end-before"] = start, end
        self.options["language"] = LANGUAGES.get(file.suffix, "text")
        self.options["caption"] = path
        page_dir = Path(self.env.doc2path(self.env.docname)).parent
        self.arguments[0] = os.path.relpath(file, page_dir)  # LiteralInclude reads it from the page
        result = super().run()
        for container in result:
            for block in container.findall(nodes.literal_block):
                block["handbook_example"] = path
                block["handbook_first_line"] = first_line(
                    text, block.astext(), text.find(f"[start:{region}]") if region else 0
                )
            for caption in container.findall(nodes.caption):
                caption.children = []
                caption += self.link(file, path)
        if "collapsed" in self.options:
            box = collapsed(summary=self.options["collapsed"].strip() or f"The listing: {path}")
            box.extend(result)
            self.set_source_info(box)
            return [box]
        return result

    def link(self, file: Path, path: str) -> addnodes.download_reference:
        """The caption's text, a link to the whole file (see :func:`link_source_pages`)."""
        page_dir = Path(self.env.doc2path(self.env.docname)).parent
        ref = addnodes.download_reference(
            path,
            "",
            nodes.Text(path),
            refdoc=self.env.docname,
            refexplicit=True,
            reftarget=os.path.relpath(file, page_dir),
            reftype="download",
            refdomain="",
            classes=["example-source"],
        )
        if file.suffix == ".py":
            ref["handbook_module"] = ".".join(Path(path).with_suffix("").parts).removesuffix(
                ".__init__"
            )
        return ref


def link_source_pages(app: Sphinx, doctree: nodes.document, docname: str) -> None:
    """In HTML, a caption of a Python module links to its highlighted source page, if it has one."""
    if app.builder.format != "html":
        return
    modules = getattr(app.env, "_viewcode_modules", {})
    for ref in list(doctree.findall(addnodes.download_reference)):
        module = ref.get("handbook_module")
        if module and modules.get(module):
            uri = app.builder.get_relative_uri(docname, "_modules/" + module.replace(".", "/"))
            ref.replace_self(
                nodes.reference(
                    ref.rawsource,
                    "",
                    *ref.children,
                    internal=True,
                    refuri=uri,
                    classes=["example-source"],
                    reftitle="the whole file",
                )
            )


def setup(app: Sphinx) -> None:
    app.add_directive("example", Example)
    skip = (skip_collapsed, None)
    app.add_node(
        collapsed,
        html=(visit_collapsed_html, depart_collapsed_html),
        latex=skip,
        text=skip,
        man=skip,
        texinfo=skip,
    )
    app.connect("doctree-resolved", link_source_pages)
