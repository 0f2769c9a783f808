"""The on-call runbook as data: load and check ``runbook.toml``.

This module is the code behind the page *Runbook: symptom → cause → fix*
(``docs/observability/runbook.md``).
The entries live in ``examples/observability/runbook/runbook.toml``, one source of truth: the
page is rendered from it when the handbook is built (``handbook_sphinx/runbook.py``), and
``tests/observability/test_runbook.py`` checks that every page, alert rule and test it names
exists, that every PromQL query parses with promtool, and that every Redis command runs.

A malformed file fails loudly, naming the entry and the field, instead of rendering a
runbook with a hole in it.
"""

# [start:imports]
from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path
# [end:imports]

RUNBOOK = Path(__file__).with_name("runbook.toml")


# [start:model]
class RunbookError(ValueError):
    """The runbook file is malformed; the message names the entry and the field."""


# What each field must hold, in the order the page shows an entry: what to do now, how to
# confirm it, why it happens, how to fix it for good.
FIELDS = {"id": str, "symptom": str, "mitigate": str, "confirm": list, "cause": str,
          "fix": str, "pages": list, "alerts": list, "frameworks": list, "search": list,
          "tests": list, "sources": list, "replay": list}
# A step says what to look for, and gives exactly one thing to run:
#   promql: a query for Prometheus (contract metrics only);
#   redis:  the arguments of a redis-cli command (shown after REDIS_CLI, below);
#   shell:  another command line (celery inspect, kubectl).
STEP_KINDS = ("promql", "redis", "shell")
# An entry names the frameworks it concerns; each of them needs a confirm step of its own,
# whose text starts with the framework's name ("Celery: ...", "Celery on Redis: ...").
FRAMEWORKS = {"celery": "Celery", "rq": "RQ", "bullmq": "BullMQ", "sidekiq": "Sidekiq"}
# A failure no rule catches, none the suite reproduces, or one outside any framework.
MAY_BE_EMPTY = {"alerts", "tests", "frameworks", "replay"}
# Incidents of the incidents lab (docs/observability/_data/incidents.json) that replay the
# entry on a live Prometheus; an entry without one may leave the field out.
OPTIONAL = {"replay"}
# How the page runs a redis step: TLS with the server's certificate checked, as the on-call
# user, and the password from REDISCLI_AUTH, which redis-cli reads itself (never -a or a
# URL with a password: a process's arguments are visible to every local user).
REDIS_CLI = ('redis-cli --tls --cacert "$REDIS_CA" '
             '-h "$REDIS_HOST" -p "$REDIS_PORT" --user "$REDIS_USER"')
# The page defines that prefix once as a shell function and shows each redis step as
# `rcli COMMAND`, short enough to read on a phone without scrolling sideways.
REDIS_FUNCTION = "rcli"
REDIS_FUNCTION_DEFINITION = f'{REDIS_FUNCTION}() {{ {REDIS_CLI} "$@"; }}'


@dataclass(frozen=True)
class Step:
    says: str  # what the output shows, and what to look for
    kind: str  # one of STEP_KINDS
    command: str

    @property
    def label(self) -> str:
        """What the step is for, before the first colon: "Celery", "Kubernetes" ("" if none)."""
        head, colon, _ = self.says.partition(":")
        return head if colon and len(head) <= 40 and "`" not in head else ""

    @property
    def framework(self) -> str | None:
        """The framework (a key of FRAMEWORKS) whose label starts the step, if any."""
        first = self.label.split(" ")[0]
        return next((k for k, name in FRAMEWORKS.items() if name == first), None)


@dataclass(frozen=True)
class Entry:
    id: str
    symptom: str
    mitigate: str  # what to do first, before the cause is known
    confirm: tuple[Step, ...]
    cause: str
    fix: str  # the fix for good
    pages: tuple[str, ...]  # doc paths, as {doc} links write them: "/fundamentals/retries"
    alerts: tuple[str, ...]  # alert names in alerts.yml
    frameworks: tuple[str, ...]  # keys of FRAMEWORKS: each has a confirm step of its own
    search: tuple[str, ...]  # what a paged engineer types into the site search
    tests: tuple[str, ...]  # pytest node ids that reproduce the failure
    sources: tuple[str, ...]  # URLs: issues that show it, primary docs
    replay: tuple[str, ...] = ()  # incident ids of the incidents lab


@dataclass(frozen=True)
class Runbook:
    entries: tuple[Entry, ...]
    no_entry: dict[str, str]  # alert name -> why it needs no entry of its own
# [end:model]


# [start:load]
def _step(where: str, raw: object) -> Step:
    if not isinstance(raw, dict):
        raise RunbookError(f"{where}: a confirm step must be a table, got {raw!r}")
    kinds = [k for k in raw if k in STEP_KINDS]
    unknown = set(raw) - {"says", *STEP_KINDS}
    if unknown:
        raise RunbookError(
            f"{where}: unknown key(s) {sorted(unknown)} "
            f"(allowed: says, {', '.join(STEP_KINDS)})"
        )
    if len(kinds) != 1:
        raise RunbookError(
            f"{where}: give exactly one of {', '.join(STEP_KINDS)}, got {kinds or 'none'}"
        )
    for key in ("says", kinds[0]):
        if not isinstance(raw.get(key), str) or not raw[key].strip():
            raise RunbookError(f"{where}: {key!r} must be a non-empty string")
    return Step(raw["says"].strip(), kinds[0], raw[kinds[0]].strip())


def _entry(number: int, raw: object) -> Entry:
    if not isinstance(raw, dict):
        raise RunbookError(f"entry {number}: must be a table, got {raw!r}")
    where = f"entry {number} ({raw.get('id', 'no id')})"
    missing = [f for f in FIELDS if f not in raw and f not in OPTIONAL]
    unknown = sorted(set(raw) - set(FIELDS))
    if missing:
        raise RunbookError(f"{where}: missing field(s) {missing}")
    if unknown:
        raise RunbookError(
            f"{where}: unknown field(s) {unknown} (allowed: {', '.join(FIELDS)})"
        )
    for name, kind in FIELDS.items():
        value = raw.get(name, kind())
        if not isinstance(value, kind) or (not value and name not in MAY_BE_EMPTY):
            raise RunbookError(
                f"{where}: {name!r} must be a non-empty {kind.__name__}, got {value!r}"
            )
        if (kind is list and name != "confirm"
                and not all(isinstance(v, str) and v for v in value)):
            raise RunbookError(f"{where}: every item of {name!r} must be a non-empty string")
    steps = tuple(_step(f"{where} confirm[{i}]", s) for i, s in enumerate(raw["confirm"]))
    unknown = sorted(set(raw["frameworks"]) - set(FRAMEWORKS))
    if unknown:
        raise RunbookError(
            f"{where}: unknown framework(s) {unknown} (allowed: {', '.join(FRAMEWORKS)})"
        )
    uncovered = [FRAMEWORKS[f] for f in raw["frameworks"]
                 if f not in {s.framework for s in steps}]
    if uncovered:
        raise RunbookError(f"{where}: no confirm step starts with {', '.join(uncovered)}")
    return Entry(raw["id"], raw["symptom"].strip(), raw["mitigate"].strip(), steps,
                 raw["cause"].strip(), raw["fix"].strip(),
                 *(tuple(raw.get(f, ())) for f in ("pages", "alerts", "frameworks", "search",
                                                   "tests", "sources", "replay")))


def parse(text: str) -> Runbook:
    """Parse and check the text of a runbook file; raise RunbookError naming what is wrong."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise RunbookError(f"not valid TOML: {exc}") from exc
    unknown = sorted(set(data) - {"entry", "no_entry"})
    if unknown:
        raise RunbookError(f"unknown top-level key(s) {unknown} (allowed: entry, no_entry)")
    entries = tuple(_entry(n, raw) for n, raw in enumerate(data.get("entry", []), 1))
    if not entries:
        raise RunbookError("the runbook has no [[entry]]")
    ids = [e.id for e in entries]
    duplicated = sorted({i for i in ids if ids.count(i) > 1})
    if duplicated:
        raise RunbookError(f"duplicate entry id(s) {duplicated}")
    no_entry = data.get("no_entry", {})
    if not all(isinstance(v, str) and v.strip() for v in no_entry.values()):
        raise RunbookError("every [no_entry] alert needs a reason (a non-empty string)")
    return Runbook(entries, dict(no_entry))
# [end:load]


def load(path: Path = RUNBOOK) -> Runbook:
    """The runbook of this handbook (``runbook.toml`` next to this module)."""
    return parse(path.read_text(encoding="utf-8"))


def entries_for_alert(runbook: Runbook, alert: str) -> list[Entry]:
    """Entries an alert may lead to, in page order (the target of its ``runbook_url``)."""
    return [e for e in runbook.entries if alert in e.alerts]
