"""One source for each fact the pages quote: library versions and defaults.

Every value is read when Sphinx starts, from the installed packages (and, for BullMQ on Node,
from the exact version ``examples/frameworks/bullmq/package.json`` pins), with the expressions
the tests use. ``conf.py`` hands :func:`substitutions` to MyST as ``myst_substitutions``, so a
page writes::

    kombu {{ kombu_version }} keeps a message {{ kombu_visibility_timeout }} s
    | `broker_transport_options.visibility_timeout` | {{ code.kombu_visibility_timeout }} | ...

``{{ name }}`` is the plain value, ``{{ code.name }}`` the value as inline code (MyST does not
substitute inside backticks). After an upgrade the page changes without a prose edit.

MyST does not substitute inside code blocks or in included files either. A data file that
quotes a fact (``examples/frameworks/choosing_a_framework/settings/*.toml``,
``examples/observability/runbook/runbook.toml``) is checked against :func:`value` by the test
that reads it. ``tests/test_facts.py`` asserts every value against its library and fails when
a page types a fact's value next to its name (:func:`hand_typed`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BULLMQ_PACKAGE = ROOT / "examples" / "frameworks" / "bullmq" / "package.json"


@dataclass(frozen=True)
class Fact:
    """A value the pages quote, where it comes from and how a page names it."""

    name: str  #: the substitution's name: ``{{ name }}``
    read: Callable[[], object]  #: reads the value from the installed library
    names: str  #: a regular expression for how a page names it, e.g. ``visibility[_ ]timeout``
    is_version: bool = False  #: a version is hand-typed right after its name ("kombu 5.7")

    def hand_typed(self, value: object, line: str) -> bool:
        """Whether ``line`` types this fact's ``value`` next to its name."""
        if self.is_version:
            major, minor = str(value).split(".")[:2]
            # "kombu 5.7", "kombu 5.7.0", "the SDK (1.45)", "`prometheus_client` 0.26"
            typed = rf"(?:{self.names})`?\s+\(?v?{re.escape(major)}\.{re.escape(minor)}(?!\d)"
            return re.search(typed, line, flags=re.IGNORECASE) is not None
        typed = rf"(?<![\w.]){re.escape(str(value))}(?!\w|\.\d)"
        return re.search(self.names, line) is not None and re.search(typed, line) is not None


def _installed(name: str, dist: str, names: str) -> Fact:
    """The version of the installed distribution ``dist``."""
    return Fact(name, lambda: version(dist), names, is_version=True)


def _bullmq_npm() -> str:
    return str(json.loads(BULLMQ_PACKAGE.read_text(encoding="utf-8"))["dependencies"]["bullmq"])


def _kombu_redis_visibility_timeout() -> int:
    from kombu.transport.redis import Channel

    return Channel.visibility_timeout


def _kombu_sqs_visibility_timeout() -> int:
    from kombu.transport.SQS import (
        Channel,  # imports boto3, which the test extra installs
    )

    return Channel.default_visibility_timeout


def _celery_default(setting: str) -> Callable[[], object]:
    def read() -> object:
        from celery.app.defaults import DEFAULTS

        return DEFAULTS[setting]

    return read


def _rq_failure_ttl() -> int:
    from rq.defaults import DEFAULT_FAILURE_TTL

    return DEFAULT_FAILURE_TTL


FACTS: tuple[Fact, ...] = (
    # -- versions of the libraries whose sources and behaviour the pages describe ---------
    _installed("celery_version", "celery", r"Celery"),
    _installed("kombu_version", "kombu", r"kombu"),
    _installed("rq_version", "rq", r"RQ"),
    _installed("redis_py_version", "redis", r"redis-py"),
    _installed("amqp_version", "amqp", r"py-amqp"),
    _installed("flower_version", "flower", r"Flower"),
    _installed("prometheus_client_version", "prometheus-client", r"prometheus[_-]client"),
    _installed("botocore_version", "botocore", r"botocore"),
    _installed("moto_version", "moto", r"moto"),
    _installed("bullmq_python_version", "bullmq", r"bullmq|PyPI port"),
    Fact("bullmq_version", _bullmq_npm, r"BullMQ|bullmq", is_version=True),
    _installed("opentelemetry_version", "opentelemetry-sdk", r"OpenTelemetry Python|SDK"),
    _installed("opentelemetry_celery_version", "opentelemetry-instrumentation-celery",
               r"opentelemetry-instrumentation-celery"),
    _installed("opentelemetry_semconv_version", "opentelemetry-semantic-conventions",
               r"semconv\S*"),
    _installed("procrastinate_version", "procrastinate", r"procrastinate"),
    _installed("psycopg_version", "psycopg", r"psycopg"),
    # -- defaults quoted on more than one page ---------------------------------------------
    Fact("kombu_visibility_timeout", _kombu_redis_visibility_timeout,
         r"visibility[_ ]timeout|Celery on Redis"),
    Fact("kombu_sqs_visibility_timeout", _kombu_sqs_visibility_timeout,
         r"SQS|default_visibility_timeout"),
    Fact("celery_prefetch_multiplier", _celery_default("worker_prefetch_multiplier"), r"prefetch"),
    Fact("rq_failure_ttl", _rq_failure_ttl, r"failure_ttl|FailedJobRegistry"),
)
BY_NAME = {fact.name: fact for fact in FACTS}


def value(name: str) -> object:
    """The value of the fact ``name``, read from its library now."""
    try:
        fact = BY_NAME[name]
    except KeyError:
        known = sorted(BY_NAME)
        raise KeyError(f"no fact {name!r} in handbook_sphinx/facts.py; known: {known}") from None
    return fact.read()


def values() -> dict[str, object]:
    return {fact.name: fact.read() for fact in FACTS}


def substitutions() -> dict[str, object]:
    """``myst_substitutions``: each fact as text, and under ``code`` as inline code."""
    read = values()
    code = {name: f"`{v}`" for name, v in read.items()}
    return {**{name: str(v) for name, v in read.items()}, "code": code}


SUBSTITUTION = re.compile(r"\{\{\s*(code\.)?(\w+)\s*\}\}")


def render(text: str) -> str:
    """``text`` with its ``{{ name }}`` and ``{{ code.name }}`` substituted, as MyST shows it.

    For tests that read a page's tables: they see the values the reader sees.
    """
    read = values()

    def one(match: re.Match[str]) -> str:
        code, name = match[1], match[2]
        if name not in read:
            raise KeyError(f"{match[0]} names no fact in handbook_sphinx/facts.py")
        return f"`{read[name]}`" if code else str(read[name])

    return SUBSTITUTION.sub(one, text)


_FENCE = re.compile(r"^\s*(`{3,}|~{3,})(.*)$")
# Directives whose content MyST shows verbatim (or hands to another parser): no substitutions.
_VERBATIM_DIRECTIVES = {
    "literalinclude", "example", "doctest", "testcode", "testoutput",
    "code-block", "code", "raw", "eval-rst",
}


def _verbatim(info: str) -> bool:
    directive = re.match(r"\{([\w-]+)\}", info)
    return directive is None or directive[1] in _VERBATIM_DIRECTIVES


def hand_typed(text: str) -> Iterator[tuple[int, str, str]]:
    """(line number, fact, line) for each line of a MyST page that types a fact's value.

    Lines inside verbatim blocks (code, doctests, includes) are skipped: substitutions do not
    reach them, and what they show is tested where it is defined.
    """
    read = values()
    open_fences: list[tuple[str, bool]] = []  # (fence, verbatim) of each enclosing fence
    for number, line in enumerate(text.splitlines(), start=1):
        fence = _FENCE.match(line)
        if fence:
            marks, info = fence[1], fence[2].strip()
            top = open_fences[-1][0] if open_fences else ""
            if not info and top and marks[0] == top[0] and len(marks) >= len(top):
                open_fences.pop()
            elif not (open_fences and open_fences[-1][1]):
                open_fences.append((marks, _verbatim(info)))
            continue
        if open_fences and open_fences[-1][1]:
            continue
        for fact in FACTS:
            if fact.hand_typed(read[fact.name], line):
                yield number, fact.name, line
