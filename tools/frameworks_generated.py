"""Sphinx extension: the generated artefacts of the Track 2 scaling pages.

At ``builder-inited`` it writes into ``docs/frameworks/_generated/`` (ignored by git):

* ``autoscaling-spike.png``: the replica simulator's load-spike replay, drawn with
  matplotlib from :func:`labs.autoscaling_sim.draw_figure` (seeded);
* ``persistence-table.inc``: the table of the persistence experiment, rendered from the
  committed results file ``docs/frameworks/_data/persistence.json`` (produced by
  ``python -m labs.persistence --out ...``), with where and when it ran.

The pages include both, so no number or curve is typed by hand.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the test suite renders the table without Sphinx installed
    from sphinx.application import Sphinx

MODE_NAMES = {
    "none": "no persistence",
    "rdb": "RDB snapshot",
    "aof-no": "AOF, `appendfsync no`",
    "aof-everysec": "AOF, `appendfsync everysec`",
    "aof-always": "AOF, `appendfsync always`",
}


def persistence_table(data: dict) -> str:
    """The experiment's results as a MyST table followed by a sentence saying where it ran."""
    lines = [
        "| mode | redis-server arguments | acknowledged | lost after SIGKILL | enqueue rate (jobs/s) |",
        "| --- | --- | ---: | ---: | ---: |",
    ]
    for row in data["results"]:
        rate = row["acknowledged"] / row["seconds"] if row["seconds"] else float("nan")
        lines.append(
            f"| {MODE_NAMES.get(row['mode'], row['mode'])} | `{row['arguments']}` | {row['acknowledged']} "
            f"| **{row['lost']}** | {rate:,.0f} |"
        )
    machine = data["machine"]
    lines += [
        "",
        f"Measured on {data['date']} with Redis {data['redis_version']} on {machine['os']}, "
        f"{machine['cpu']} ({machine['cpus']} CPUs), data directory on {machine['filesystem']}; "
        f"{data['jobs_per_mode']} jobs per mode, one `LPUSH` at a time over loopback.",
        f"Reproduce with `{data['command']}`.",
        "",
    ]
    return "\n".join(lines)


def generate(app: Sphinx) -> None:
    from handbook_generated import EXAMPLES_SOURCES, is_stale, write_if_changed

    out = Path(app.srcdir) / "frameworks" / "_generated"
    out.mkdir(exist_ok=True)
    figure = out / "autoscaling-spike.png"
    if is_stale(figure, Path(__file__), *EXAMPLES_SOURCES()):
        from labs.autoscaling_sim import draw_figure

        draw_figure(str(figure))
    data = json.loads((Path(app.srcdir) / "frameworks" / "_data" / "persistence.json").read_text(encoding="utf-8"))
    write_if_changed(out / "persistence-table.inc", persistence_table(data))


def setup(app: Sphinx) -> dict:
    app.connect("builder-inited", generate)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
