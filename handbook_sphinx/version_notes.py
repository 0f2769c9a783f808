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


def setup(app: Sphinx) -> None:
    app.add_directive("version-note", VersionNote)
