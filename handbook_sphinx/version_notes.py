"""``{version-note}``: the visible note that a page's claims were tested on an older line.

    ```{version-note} rabbitmq kafka
    ```

renders one admonition with, for each release line named, the version the tests ran (or that
none ran), the current line with its source, and each difference that matters to the
handbook, with its source. The data is ``labs.versions.RELEASE_LINES``, the same that fills
the table on the "Tested against" page, so a page never types these versions itself.
"""

from __future__ import annotations

from docutils import nodes
from sphinx.application import Sphinx
from sphinx.util.docutils import SphinxDirective

from labs import versions

SUMMARY_PAGE = "reference/tested-against"  # shows every line's note
TITLE = "Versions: tested here, and what the current release line changes"


def intro(line: versions.ReleaseLine) -> str:
    """The sentence that opens a line's part of the note (inline Markdown)."""
    current = f"[{line.current}]({line.current_source})"
    if line.tested is None:
        return (f"**{line.name}**: {line.tested_from}; they were checked against the current "
                f"line, {current}:")
    return (f"**{line.name}**: the tests ran {line.name} {line.tested} ({line.tested_from}); "
            f"the current line is {current}, where:")


class VersionNote(SphinxDirective):
    required_arguments = 1
    optional_arguments = 5
    has_content = False

    def inline(self, text: str) -> list[nodes.Node]:
        parsed, messages = self.state.inline_text(text, self.lineno)
        return [*parsed, *messages]

    def run(self) -> list[nodes.Node]:
        self.env.note_dependency(versions.__file__)
        note = nodes.admonition(classes=["version-note", "important"])
        note["handbook_lines"] = list(self.arguments)  # the PDF prints a pointer (see below)
        self.env.note_dependency(__file__)
        self.set_source_info(note)
        note += nodes.title(TITLE, TITLE)
        for key in self.arguments:
            try:
                line = versions.release_line(key)
            except KeyError as exc:
                raise self.error(str(exc.args[0])) from exc
            if self.env.docname not in (*line.pages, SUMMARY_PAGE):
                raise self.error(f"{self.env.docname} carries the {key} note but is not in "
                                 f"the pages of release line {key!r} (labs/versions.py)")
            note += nodes.paragraph("", "", *self.inline(intro(line)))
            items = nodes.bullet_list()
            for change in line.changes:
                text = f"{change.text} ([source]({change.source}))"
                items += nodes.list_item("", nodes.paragraph("", "", *self.inline(text)))
            note += items
        return [note]


#: The section of :data:`SUMMARY_PAGE` that holds every line's note.
SUMMARY_SECTION = "release-lines-tested-here-and-current"


def pointer(keys: list[str]) -> nodes.paragraph:
    """What the PDF prints instead of a chapter's note: the versions tested and current, and
    the page of the "Tested against" chapter that lists what the current lines change (the
    book prints each note once, there)."""
    para = nodes.paragraph("", "", classes=["version-pointer"])
    para += nodes.strong("Versions: ", "Versions: ")
    for number, key in enumerate(keys):
        line = versions.release_line(key)
        if number:
            para += nodes.Text("; ")
        tested = f"tested on {line.tested}" if line.tested else "not run here"
        para += nodes.Text(f"{line.name} {tested}, current line {line.current}")
    para += nodes.Text(". What the current lines change: ")
    title = "Release lines: tested here, and current"
    para += nodes.reference("", title, refuri=f"%{SUMMARY_PAGE}#{SUMMARY_SECTION}", internal=True)
    para += nodes.raw(
        "", rf", p.~\pageref{{\detokenize{{{SUMMARY_PAGE}:{SUMMARY_SECTION}}}}}.", format="latex"
    )
    return para


def notes_once_in_the_book(doctree: nodes.Node) -> None:
    """In the PDF, each chapter's note is one line pointing to the "Tested against" chapter,
    which prints every note in full: the same notes on eleven chapters took five pages."""
    from sphinx import addnodes

    kept = {  # walked downwards: the LaTeX builder does not reparent a file's nodes
        id(note)
        for start in doctree.findall(addnodes.start_of_file)
        if start.get("docname") == SUMMARY_PAGE
        for note in start.findall(nodes.admonition)
    }
    for note in list(doctree.findall(nodes.admonition)):
        if "version-note" in note["classes"] and id(note) not in kept:
            note.replace_self(pointer(note.get("handbook_lines", [])))


def setup(app: Sphinx) -> None:
    app.add_directive("version-note", VersionNote)
