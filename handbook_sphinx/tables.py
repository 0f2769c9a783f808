"""The handbook's computed tables: each function returns a
:class:`~handbook_sphinx.generated.Table`.

A page shows one with ``{generated-table} handbook_sphinx.tables:NAME`` (see
``handbook_sphinx/generated.py``). The functions only lay out results: the numbers come from
the tested code of ``examples/`` and ``labs/``, or from a committed results file that a lab
wrote (``:data:``).
"""

from __future__ import annotations

import datetime as dt
import json
import pickle  # measured to show its size on the serialization page, never used to decode
from dataclasses import asdict, replace
from decimal import Decimal
from pathlib import Path

from examples.fundamentals.serialization import Envelope
from handbook_sphinx import ROOT
from handbook_sphinx.generated import Code, Table


# -- Serialization: the size of one job in each wire format --------------------------------
def example_envelope() -> Envelope:
    """The job the size table measures: a card charge with a decimal, a date and a PDF."""
    return Envelope(
        id="0f8fad5b-d9cb-469f-a165-70867728950e",
        task="charge",
        args={
            "order_id": 918273645,
            "amount": Decimal("1499.90"),
            "currency": "EUR",
            "items": ["sku-1042", "sku-2210", "sku-7781"],
            "due": dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.UTC),
            "receipt_pdf": bytes(range(256)) * 8,  # 2 KiB of binary data
        },
        created_at=dt.datetime(2026, 2, 27, 9, 30, 15, 250000, tzinfo=dt.UTC),
        trace={"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"},
    )


def size_table() -> Table:
    """Bytes on the wire of :func:`example_envelope`, without and with its PDF, per format."""
    from examples.fundamentals.serialization import AVRO, JSON, MSGPACK, PICKLE, encode

    env = example_envelope()
    small = replace(env, args={**env.args, "receipt_pdf": b""})
    rows = [
        [name, f"`{kind}`", str(len(encode(small, kind).body)), str(len(encode(env, kind).body))]
        for name, kind in (("JSON", JSON), ("MessagePack", MSGPACK), ("Avro", AVRO))
    ]
    refused = [pickle.dumps(asdict(e), protocol=pickle.HIGHEST_PROTOCOL) for e in (small, env)]
    rows.append(["pickle (refused)", f"`{PICKLE}`", str(len(refused[0])), str(len(refused[1]))])
    return Table(
        ["format", "content type", "job without the PDF (bytes)", "job with a 2 KiB PDF (bytes)"],
        rows,
    )


# -- The failure lab: lost and duplicated jobs per queue design ----------------------------
def lab_table(which: str = "delivery") -> Table:
    """The lab's counts for one set of rows of the lab's ``TABLE_ROWS``.

    The lab runs on fakeredis: the docs build has no server.
    """
    from labs.failure_lab import TABLE_ROWS, lab_rows
    from examples.redis_client import connect

    results = lab_rows(which, connect=lambda: connect("fakeredis://"))
    rates = [f"{rate:.0%}" for _, rate, _ in TABLE_ROWS[which]]
    return Table(
        [
            "design",
            "kill rate",
            "jobs",
            "workers killed",
            "runs",
            "lost",
            "duplicated",
            "dead-lettered",
        ],
        [
            [
                res.design,
                rate,
                res.jobs,
                res.kills,
                res.runs,
                res.lost,
                res.duplicated,
                res.dead_lettered,
            ]
            for res, rate in zip(results, rates, strict=True)
        ],
    )


# -- Throughput: the benchmark's results file ----------------------------------------------
THROUGHPUT_COLUMNS = [
    "contender",
    "jobs per run",
    "enqueue, jobs/s",
    "drain, jobs/s",
    "drain, slowest–fastest run",
    "drain ÷ ceiling",
    "drain ÷ RQ",
]


def _rate(value: float) -> str:
    return f"{value:,.0f}"


def format_ratio(ratio: float | None) -> str:
    """``0.004`` -> ``0.004×``, ``1.5`` -> ``1.50×``, ``42.3`` -> ``42×``; no ratio -> ``–``."""
    if ratio is None:
        return "–"
    return f"{ratio:.1g}×" if ratio < 0.01 else f"{ratio:,.2f}×" if ratio < 10 else f"{ratio:,.0f}×"


def throughput_rows(data: dict) -> list[list[str]]:
    """One row per contender; the ratios compare medians measured in the same run."""
    from labs.throughput import BASELINE, CEILING

    by_id = {c["id"]: c for c in data["contenders"]}
    rows = []
    for c in data["contenders"]:
        drain = c["drain"]
        ratios = [
            format_ratio(drain["median"] / by_id[ref]["drain"]["median"] if ref in by_id else None)
            for ref in (CEILING, BASELINE)
        ]
        rows.append(
            [
                c["label"],
                f"{c['jobs_per_run']:,}",
                _rate(c["enqueue"]["median"]),
                _rate(drain["median"]),
                f"{_rate(drain['min'])}–{_rate(drain['max'])}",
                *ratios,
            ]
        )
    return rows


def throughput_table(results: Path) -> Table:
    """The benchmark's table, from the JSON file it wrote."""
    return Table(
        THROUGHPUT_COLUMNS, throughput_rows(json.loads(results.read_text(encoding="utf-8")))
    )


# -- Persistence: the experiment's results file --------------------------------------------
PERSISTENCE_MODES = {
    "none": "no persistence",
    "rdb": "RDB snapshot",
    "aof-no": "AOF, `appendfsync no`",
    "aof-everysec": "AOF, `appendfsync everysec`",
    "aof-always": "AOF, `appendfsync always`",
}


def persistence_table(results: Path) -> Table:
    """Acknowledged and lost jobs per persistence mode, with where and when it ran."""
    data = json.loads(results.read_text(encoding="utf-8"))
    rows = []
    for row in data["results"]:
        rate = row["acknowledged"] / row["seconds"] if row["seconds"] else float("nan")
        rows.append(
            [
                PERSISTENCE_MODES.get(row["mode"], row["mode"]),
                f"`{row['arguments']}`",
                str(row["acknowledged"]),
                f"**{row['lost']}**",
                f"{rate:,.0f}",
            ]
        )
    machine = data["machine"]
    note = (
        f"Measured on {data['date']} with Redis {data['redis_version']} on {machine['os']}, "
        f"{machine['cpu']} ({machine['cpus']} CPUs), data directory on {machine['filesystem']}; "
        f"{data['jobs_per_mode']} jobs per mode, one `LPUSH` at a time over loopback. "
        f"Reproduce with `{data['command']}`."
    )
    return Table(
        [
            "mode",
            "redis-server arguments",
            "acknowledged",
            "lost after SIGKILL",
            "enqueue rate (jobs/s)",
        ],
        rows,
        note=note,
    )


# -- Observability: the metric contract and the dashboard ---------------------------------
def contract_metrics() -> Table:
    """Every metric of the contract: type, labels, producer and meaning."""
    from examples.observability import metric_contract as c

    rows = [
        [
            f"`{m.name}`",
            m.kind,
            ", ".join(f"`{label}`" for label in m.labels) or "none",
            "worker, as jobs run" if m.producer == "worker" else "collector, at scrape time",
            m.help,
        ]
        for m in c.METRICS
    ]
    return Table(["metric", "type", "labels", "produced by", "meaning"], rows)


def framework_signals(framework: str) -> Table:
    """How one framework provides each signal of the contract, with the source read."""
    from examples.observability import metric_contract as c

    rows = []
    for signal in c.SIGNALS:
        provider = c.PROVIDERS[signal.key][framework]
        url = c.SOURCES[provider.source]
        # The source link sits in the wide column: a narrow last column of links pushes the
        # PDF's footnote marks into the margin.
        rows.append([signal.title, f"{provider.text} ([{url.rsplit('/', 1)[1]}]({url}))"])
    return Table(["signal", "how you get it (source)"], rows, title=c.FRAMEWORKS[framework])


DASHBOARD = ROOT / "examples" / "observability" / "grafana" / "dashboard.json"


def dashboard_panels() -> Table:
    """Each panel of the dashboard with its unit, and its queries in a code block below (one
    column: long PromQL needs the page's whole width)."""
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    return Table(
        ["panel (unit) and its queries"],
        [
            [
                (
                    f"**{p['title']}** (unit `{p['fieldConfig']['defaults']['unit']}`)",
                    Code("\n".join(t["expr"] for t in p["targets"])),
                )
            ]
            for p in dashboard["panels"]
        ],
    )
