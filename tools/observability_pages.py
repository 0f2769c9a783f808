"""Sphinx extension: generates the tables and the figure of the observability pages.

At ``builder-inited`` it writes, under ``docs/observability/_generated/`` (not committed):

* ``contract-metrics.inc`` and ``framework-signals.inc``: Markdown tables built from
  :mod:`examples.observability.metric_contract`, the single source of the metric contract;
* ``dashboard-panels.inc``: each dashboard panel with its queries, from ``dashboard.json``;
* ``dashboard-layout.png``: the dashboard's grid drawn with matplotlib from ``dashboard.json``.

The pages include them with ``{include}`` and ``{figure}``, so nothing there is typed by hand.
"""

from __future__ import annotations

import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "docs" / "observability" / "_generated"
DASHBOARD = ROOT / "examples" / "observability" / "grafana" / "dashboard.json"


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def contract_metrics_table() -> str:
    from examples.observability import metric_contract as c

    rows = ["| metric | type | labels | produced by | meaning |", "| --- | --- | --- | --- | --- |"]
    for m in c.METRICS:
        labels = ", ".join(f"`{label}`" for label in m.labels) or "none"
        producer = "worker, as jobs run" if m.producer == "worker" else "collector, at scrape time"
        rows.append(f"| `{m.name}` | {m.kind} | {labels} | {producer} | {_cell(m.help)} |")
    return "\n".join(rows) + "\n"


def framework_tables() -> str:
    from examples.observability import metric_contract as c

    parts = []
    for key, title in c.FRAMEWORKS.items():
        # The source link sits in the wide column: a narrow last column of links pushes the
        # PDF's footnote marks into the margin.
        parts.append(f"**{title}**\n\n| signal | how you get it (source) |\n| --- | --- |")
        for signal in c.SIGNALS:
            provider = c.PROVIDERS[signal.key][key]
            url = c.SOURCES[provider.source]
            parts[-1] += f"\n| {signal.title} | {_cell(provider.text)} ([{url.rsplit('/', 1)[1]}]({url})) |"
    return "\n\n".join(parts) + "\n"


def dashboard_panels_table(dashboard: dict) -> str:
    """Each panel's title, unit and queries. Queries go in code blocks, not table cells:
    long PromQL cannot wrap inside a table cell in the PDF."""
    parts = []
    for panel in dashboard["panels"]:
        exprs = "\n".join(t["expr"] for t in panel["targets"])
        parts.append(
            f"**{panel['title']}** (unit `{panel['fieldConfig']['defaults']['unit']}`)\n\n```text\n{exprs}\n```\n"
        )
    return "\n".join(parts)


def draw_layout(dashboard: dict, path: Path) -> None:
    """A mock-up of the dashboard: each panel's box on Grafana's 24-column grid, with its title."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import FancyBboxPatch

    panels = dashboard["panels"]
    rows = max(p["gridPos"]["y"] + p["gridPos"]["h"] for p in panels)
    fig, ax = plt.subplots(figsize=(10, 10 * rows / 24 * 0.55), dpi=110)
    colors = {"stat": "#dbe9f6", "timeseries": "#f3f6fa"}
    for p in panels:
        g = p["gridPos"]
        ax.add_patch(FancyBboxPatch((g["x"] + 0.15, g["y"] + 0.15), g["w"] - 0.3, g["h"] - 0.3,
                                    boxstyle="round,pad=0,rounding_size=0.3", facecolor=colors[p["type"]],
                                    edgecolor="#4a6a8a", linewidth=1))
        ax.text(g["x"] + 0.6, g["y"] + 0.9, p["title"], fontsize=9, weight="bold", va="top", color="#1a2a45")
        legends = ", ".join(t["legendFormat"].replace("{{", "").replace("}}", "") for t in p["targets"])
        ax.text(g["x"] + 0.6, g["y"] + 2.0, f"{p['type']}: {legends}", fontsize=7.5, va="top", color="#4a5a6a")
    ax.set_xlim(0, 24)
    ax.set_ylim(rows, 0)
    ax.set_xticks(range(0, 25, 6))
    ax.set_yticks([])
    ax.set_title(f"Grafana dashboard \"{dashboard['title']}\": layout of {len(panels)} panels (24-column grid)",
                 fontsize=10)
    for side in ("top", "right", "left"):
        ax.spines[side].set_visible(False)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def generate(app=None) -> None:
    from handbook_generated import EXAMPLES_SOURCES, is_stale, write_if_changed

    OUT.mkdir(parents=True, exist_ok=True)
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    write_if_changed(OUT / "contract-metrics.inc", contract_metrics_table())
    write_if_changed(OUT / "framework-signals.inc", framework_tables())
    write_if_changed(OUT / "dashboard-panels.inc", dashboard_panels_table(dashboard))
    figure = OUT / "dashboard-layout.png"
    if is_stale(figure, DASHBOARD, Path(__file__), *EXAMPLES_SOURCES()):
        draw_layout(dashboard, figure)


def setup(app):
    app.connect("builder-inited", generate)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
