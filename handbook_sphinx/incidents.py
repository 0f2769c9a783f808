"""Tables and figures of the incidents lab, drawn from its committed results file
(``docs/observability/_data/incidents.json``, written by ``tox -e incidents``).

Pages use them through ``{generated-table}`` and ``{generated-figure}`` with
``:data: _data/incidents.json``; nothing here measures or types a number.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from handbook_sphinx.generated import Table

ALERT_COLOURS = ("#d35400", "#8e44ad", "#16a085", "#c0392b", "#2c3e50", "#b7950b", "#7f8c8d")
SERIES_COLOURS = ("#1f4e79", "#e67e22", "#27ae60", "#8e44ad", "#7f8c8d", "#c0392b")


def _load(results: Path) -> dict:
    return json.loads(results.read_text(encoding="utf-8"))


def _incident(data: dict, incident: str) -> dict:
    for found in data["incidents"]:
        if found["id"] == incident:
            return found
    known = ", ".join(i["id"] for i in data["incidents"])
    raise KeyError(f"no incident {incident!r} in the results; known: {known}")


def _short(alert: str) -> str:
    return alert.removeprefix("JobQueue")


def _seconds(value: float | None, factor: float) -> str:
    """Lab seconds, and the production minutes they stand for."""
    if value is None:
        return "–"
    return f"{value:.0f} s (≈ {value * factor / 60:.0f} min)"


def replay(results: Path, incident: str) -> Figure:
    """The dashboard's time-series panels over one incident, with the fault, the fix and
    each alert's firing marked."""
    data = _load(results)
    found = _incident(data, incident)
    panels = [p for p in found["panels"] if p["series"]]
    columns = 4
    rows = -(-len(panels) // columns)
    fig = Figure(figsize=(10, 2.1 * rows + 0.6), layout="constrained")
    axes = fig.subplots(rows, columns, sharex=True, squeeze=False).ravel()
    step = data["step_seconds"]
    colours = {a["alert"]: ALERT_COLOURS[i % len(ALERT_COLOURS)]
               for i, a in enumerate(found["alerts"])}
    for ax, panel in zip(axes, panels, strict=False):
        for i, series in enumerate(panel["series"][:6]):
            ts = [found["start"] + n * step for n in range(len(series["values"]))]
            ax.plot(ts, [float("nan") if v is None else v for v in series["values"]],
                    lw=1.1, color=SERIES_COLOURS[i % len(SERIES_COLOURS)],
                    label=series["legend"])
        ax.set_title(panel["title"], fontsize=8, loc="left")
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.25)
        ax.axvline(0, color="#c0392b", lw=1.4)
        ax.axvline(found["fix_at"], color="#27ae60", lw=1.4, ls="--")
        for alert in found["alerts"]:
            ax.axvline(alert["fired"], color=colours[alert["alert"]], lw=1, ls=":")
        if len(panel["series"]) > 1 or panel["series"][0]["legend"] != "value":
            ax.legend(fontsize=6, loc="upper left", frameon=False)
    for ax in axes[len(panels):]:
        ax.set_visible(False)
    for ax in axes[-columns:]:
        ax.set_xlabel(f"seconds after the fault (× {data['factor']:g} in production)",
                      fontsize=7)
    keys = [Line2D([], [], color="#c0392b", lw=1.4, label="fault"),
            Line2D([], [], color="#27ae60", lw=1.4, ls="--", label="fix")]
    keys += [Line2D([], [], color=colours[a["alert"]], lw=1, ls=":",
                    label=f"{_short(a['alert'])} fires ({a['queue'] or 'all'})")
             for a in found["alerts"]]
    fig.legend(handles=keys, loc="outside upper center", ncols=min(len(keys), 5), fontsize=7,
               frameon=False)
    return fig


def alerts_table(results: Path) -> Table:
    """Per incident: the alerts that fired, when, when they were notified and resolved."""
    data = _load(results)
    factor = data["factor"]
    rows = []
    for found in data["incidents"]:
        inhibited = {(i["alert"], i["queue"]): i["by"] for i in found["inhibited"]}
        alerts = found["alerts"] or [None]
        for n, alert in enumerate(alerts):
            first = [found["title"], f"`{found['runbook']}`"]
            if n:
                first = ["", ""]
            if alert is None:
                refused = found["refused_writes"]
                what = "none"
                if any(refused.values()):
                    what += (f" (enqueues refused: {refused['reliable']} to the reliable queue, "
                             f"{refused['celery']} to Celery)")
                rows.append([*first, what, "–", "–", "–"])
                continue
            key = (alert["alert"], alert["queue"])
            notified = _seconds(alert["notified"], factor) if alert["notified"] else ""
            if key in inhibited:  # Alertmanager held it back while its cause fired
                held = f"held back by {_short(inhibited[key])}"
                notified = f"{notified}, then {held}" if notified else held
            notified = notified or "–"
            resolved = ("still firing" if alert["resolved"] is None
                        else f"{alert['resolved'] - found['fix_at']:.0f} s after the fix")
            rows.append([*first, f"{alert['alert']} ({alert['queue'] or 'all queues'})",
                         _seconds(alert["fired"], factor), notified, resolved])
    versions = data["versions"]
    note = (f"Measured by `tox -e incidents` in {data['wall_seconds']} s: Prometheus "
            f"{versions['prometheus']}, Alertmanager {versions['alertmanager']}, "
            f"redis_exporter {versions['redis_exporter']}, Redis {versions['redis']}, Celery "
            f"{versions['celery']}, prometheus_client {versions['prometheus_client']}; "
            f"scrape and evaluation every {data['scrape_interval_seconds']} s, rule time "
            f"divided by {data['factor']:g}. Delays are from the fault, in lab seconds, with "
            "the production time they stand for.")
    return Table(["Incident", "Runbook entry", "Alert", "Fired after", "Notified after",
                  "Resolved"], rows, note=note)


def rules_table(results: Path) -> Table:
    """Each alert's ``for:`` in production and in the lab, and the lab's range windows."""
    data = _load(results)
    rows = []
    for r in data["rules"]:
        if not r["for"][0]:
            continue
        windows = ", ".join(f"`{w}`" for w in dict.fromkeys(re.findall(r"\[(\w+)\]", r["expr"])))
        rows.append([f"`{r['name']}`", f"`{r['for'][0]}`", f"`{r['for'][1]}`", windows or "–"])
    return Table(["Alert", "`for:` in production", "in the lab", "range windows in the lab"],
                 rows)


def incidents_table(results: Path) -> Table:
    """Each incident: its fault, its fix and the runbook entry it replays."""
    data = _load(results)
    rows = [[i["title"], i["fault"], i["fix"], f"{{ref}}`runbook-{i['runbook']}`"]
            for i in data["incidents"]]
    return Table(["Incident", "Fault", "Fix", "Runbook entry"], rows)
