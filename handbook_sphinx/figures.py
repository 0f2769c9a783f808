"""The handbook's figures: each function returns a matplotlib :class:`~matplotlib.figure.Figure`.

A page shows one with ``{generated-figure} handbook_sphinx.figures:NAME`` (see
``handbook_sphinx/generated.py``). The functions draw results of the tested code of
``examples/`` and ``labs/`` (or a committed results file a lab wrote); any randomness is
seeded there, so every build draws the same picture. They build ``Figure`` objects directly:
no pyplot, no GUI backend, no global state.
"""

from __future__ import annotations

import json
from pathlib import Path

from matplotlib.figure import Figure
from matplotlib.patches import FancyBboxPatch
from matplotlib.ticker import FuncFormatter, NullFormatter

from handbook_sphinx.tables import DASHBOARD


def retry_storm(*, clients: int = 200, retries: int = 6, seed: int = 7) -> Figure:
    """Retries per second of ``clients`` after a shared outage, one panel per backoff strategy."""
    from examples.fundamentals.retries import LABELS, STRATEGIES, Backoff, peak_load, retry_times

    fig = Figure(figsize=(8, 6.4), layout="constrained")
    axes = fig.subplots(len(STRATEGIES), 1, sharex=True)
    backoffs = [Backoff(s, base=1.0, cap=64.0) for s in STRATEGIES]
    horizon = max(
        max(retry_times(b, clients=clients, retries=retries, seed=seed)) for b in backoffs
    )
    for ax, backoff in zip(axes, backoffs, strict=True):
        times = retry_times(backoff, clients=clients, retries=retries, seed=seed)
        ax.hist(
            times,
            bins=[i * 0.25 for i in range(int(horizon * 4) + 2)],
            color="#3b6ea8",
            histtype="stepfilled",
        )  # one shape per panel, not a patch per bin: a small vector PDF
        ax.set_title(
            f"{LABELS[backoff.strategy]}: at most {peak_load(times)} retries in any 0.25 s",
            fontsize=9,
            loc="left",
        )
        ax.set_ylabel("retries", fontsize=8)
    axes[-1].set_xlabel(
        f"seconds after the outage ({clients} clients, {retries} retries each, base 1 s, cap 64 s)"
    )
    return fig


def autoscaling_spike() -> Figure:
    """Arrival rate, queue depth and replicas of the simulator's seeded load spike."""
    from labs.autoscaling_sim import replay_spike

    timeline = replay_spike()
    minutes = [t / 60 for t in timeline.t]
    fig = Figure(figsize=(8, 6.4), layout="constrained")
    axes = fig.subplots(3, 1, sharex=True)
    axes[0].plot(minutes, timeline.arrival_rate, color="#555", lw=1, label="mean rate")
    window = 15
    smoothed = [
        sum(timeline.arrivals[max(0, i - window + 1) : i + 1]) / min(window, i + 1)
        for i in range(len(minutes))
    ]
    axes[0].plot(minutes, smoothed, color="#1f77b4", lw=1, alpha=0.8, label="arrivals (15 s mean)")
    axes[0].set_ylabel("jobs / s")
    axes[0].legend(loc="upper right", fontsize=8)
    axes[1].plot(minutes, timeline.depth, color="#d62728", lw=1.2)
    axes[1].set_ylabel("queue depth")
    axes[2].step(
        minutes,
        timeline.replicas,
        where="post",
        color="#2ca02c",
        lw=1.2,
        label="replicas (desired)",
    )
    axes[2].step(
        minutes,
        timeline.ready,
        where="post",
        color="#9467bd",
        lw=1,
        ls="--",
        label="replicas ready",
    )
    axes[2].set_ylabel("replicas")
    axes[2].set_xlabel("minutes")
    axes[2].legend(loc="upper right", fontsize=8)
    for ax in axes:
        ax.grid(alpha=0.3)
    fig.suptitle(
        "KEDA redis trigger (listLength 10, max 30) + HPA defaults, seeded load spike", fontsize=10
    )
    return fig


def throughput(results: Path) -> Figure:
    """Median enqueue and drain rates, log scale; whiskers from the slowest to the fastest run."""
    data = json.loads(results.read_text(encoding="utf-8"))
    contenders = data["contenders"][::-1]  # first contender on top
    fig = Figure(figsize=(8, 0.55 * len(contenders) + 1.4), layout="constrained")
    ax = fig.subplots()
    height = 0.38
    for offset, key, colour in (
        (height / 2, "enqueue", "#9bb7d4"),
        (-height / 2, "drain", "#1f4e79"),
    ):
        medians = [c[key]["median"] for c in contenders]
        errors = [
            [m - c[key]["min"] for m, c in zip(medians, contenders, strict=True)],
            [c[key]["max"] - m for m, c in zip(medians, contenders, strict=True)],
        ]
        ax.barh(
            [i + offset for i in range(len(contenders))],
            medians,
            height,
            xerr=errors,
            color=colour,
            label=key,
            error_kw={"elinewidth": 0.8, "capsize": 2},
        )
    ax.set_xscale("log")
    ax.set_yticks(range(len(contenders)), [c["label"] for c in contenders])
    ax.set_xlabel("jobs per second (median of runs; whiskers: slowest and fastest run)")
    ax.grid(axis="x", which="major", alpha=0.3)
    ax.legend(loc="lower right")
    return fig


def dashboard_layout() -> Figure:
    """A mock-up of the Grafana dashboard: each panel's box on the 24-column grid, titled."""
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    panels = dashboard["panels"]
    rows = max(p["gridPos"]["y"] + p["gridPos"]["h"] for p in panels)
    fig = Figure(figsize=(10, 10 * rows / 24 * 0.55), layout="tight")
    ax = fig.subplots()
    colors = {"stat": "#dbe9f6", "timeseries": "#f3f6fa"}
    for p in panels:
        g = p["gridPos"]
        ax.add_patch(
            FancyBboxPatch(
                (g["x"] + 0.15, g["y"] + 0.15),
                g["w"] - 0.3,
                g["h"] - 0.3,
                boxstyle="round,pad=0,rounding_size=0.3",
                facecolor=colors[p["type"]],
                edgecolor="#4a6a8a",
                linewidth=1,
            )
        )
        ax.text(
            g["x"] + 0.6,
            g["y"] + 0.9,
            p["title"],
            fontsize=9,
            weight="bold",
            va="top",
            color="#1a2a45",
        )
        legends = ", ".join(
            t["legendFormat"].replace("{{", "").replace("}}", "") for t in p["targets"]
        )
        ax.text(
            g["x"] + 0.6,
            g["y"] + 2.0,
            f"{p['type']}: {legends}",
            fontsize=7.5,
            va="top",
            color="#4a5a6a",
        )
    ax.set_xlim(0, 24)
    ax.set_ylim(rows, 0)
    ax.set_xticks(range(0, 25, 6))
    ax.set_yticks([])
    ax.set_title(
        f'Grafana dashboard "{dashboard["title"]}": '
        f"layout of {len(panels)} panels (24-column grid)",
        fontsize=10,
    )
    for side in ("top", "right", "left"):
        ax.spines[side].set_visible(False)
    return fig


def failover(results: Path) -> Figure:
    """Jobs lost after acknowledgement (left) and seconds without enqueues (right), per
    fault and configuration, from the failover lab's results file."""
    from handbook_sphinx.tables import FAILOVER_CONFIGS, FAILOVER_FAULTS

    data = json.loads(results.read_text(encoding="utf-8"))["sentinel"]
    faults = [f for f in FAILOVER_FAULTS if any(r["fault"] == f for r in data)]
    configs = [c for c in FAILOVER_CONFIGS if any(r["config"] == c for r in data)]
    cell = {(r["fault"], r["config"]): r for r in data}
    fig = Figure(figsize=(9, 4.5), layout="constrained")
    lost_ax, down_ax = fig.subplots(1, 2)
    width = 0.8 / len(configs)
    colours = ("#c0392b", "#1f4e79", "#7f8c8d", "#e59866", "#f5b7b1", "#5dade2", "#7d3c98",
               "#27ae60")
    for i, config in enumerate(configs):
        xs = [n + (i - (len(configs) - 1) / 2) * width for n in range(len(faults))]
        label = FAILOVER_CONFIGS[config].replace("`", "").replace("*", "")
        lost = [cell[(f, config)]["acked_then_lost"] if (f, config) in cell else 0
                for f in faults]
        down = [cell[(f, config)]["unavailable_seconds"] if (f, config) in cell else 0
                for f in faults]
        bars = lost_ax.bar(xs, lost, width, color=colours[i % len(colours)], label=label)
        lost_ax.bar_label(bars, fontsize=7)  # a zero is a result too: say it
        down_ax.bar(xs, down, width, color=colours[i % len(colours)], label=label)
    for ax, title in ((lost_ax, "jobs lost after acknowledgement"),
                      (down_ax, "seconds without an acknowledged enqueue")):
        ax.set_xticks(range(len(faults)),
                      [FAILOVER_FAULTS[f].replace(", ", ",\n").replace(" then", "\nthen")
                       .replace(" with", "\nwith") for f in faults], fontsize=8)
        ax.set_title(title, fontsize=10)
        ax.grid(axis="y", alpha=0.3)
    lost_ax.legend(fontsize=8, loc="upper left")
    return fig


def broker_latency(results: Path) -> Figure:
    """Enqueue→acknowledged latency (p50, p99, p99.9) against load, one panel per contender."""
    data = json.loads(results.read_text(encoding="utf-8"))
    contenders = data["contenders"]
    cols = 3 if len(contenders) > 4 else 2
    rows = -(-len(contenders) // cols)
    fig = Figure(figsize=(9, 2.3 * rows + 0.6), layout="constrained")
    axes = fig.subplots(rows, cols, sharex=True, sharey=True, squeeze=False)
    styles = (("p50", "#9bb7d4", "o"), ("p99", "#3b6ea8", "s"), ("p99.9", "#1f2f4f", "^"))
    for ax, c in zip(axes.flat, contenders, strict=False):
        loads = [p["load"] * 100 for p in c["open_loop"]]
        for q, colour, marker in styles:
            ax.plot(loads, [p["ack_ms"][q] for p in c["open_loop"]], color=colour,
                    marker=marker, markersize=4, label=q)
        ax.set_yscale("log")
        ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _pos: f"{v:g}"))
        ax.yaxis.set_minor_formatter(NullFormatter())
        ax.set_title(f"{c['label']}\n(capacity {c['capacity']:,.0f} jobs/s)", fontsize=8)
        ax.grid(alpha=0.3, which="major")
        ax.tick_params(labelsize=7)
    for ax in axes.flat[len(contenders):]:
        ax.set_visible(False)
    for ax in axes[-1]:
        ax.set_xlabel("load, % of capacity", fontsize=8)
    for ax in axes[:, 0]:
        ax.set_ylabel("ms, log scale", fontsize=8)
    axes.flat[0].legend(fontsize=7, loc="upper left")
    return fig
