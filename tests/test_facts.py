"""handbook_sphinx/facts.py: the values the pages substitute, and no page typing them by hand.

Each fact is compared with its library, read another way than facts.py reads it; then every
page is searched for a fact's value typed next to its name, which would go stale on upgrade.
"""

from __future__ import annotations

import json
import time
from importlib.metadata import packages_distributions, version
from pathlib import Path

import botocore
import celery
import fakeredis
import flower
import kombu
import pytest
import redis
import rq
from celery import Celery
from kombu.transport import resolve_transport
from opentelemetry.instrumentation.celery.version import (
    __version__ as otel_celery_version,
)
from opentelemetry.sdk.version import __version__ as otel_sdk_version
from opentelemetry.semconv.version import __version__ as otel_semconv_version
from rq import Queue, SimpleWorker
from rq.registry import FailedJobRegistry
from rq.serializers import JSONSerializer

from handbook_sphinx import facts

ROOT = Path(__file__).resolve().parents[1]
PAGES = sorted((ROOT / "docs").rglob("*.md"))


def installed(module: str) -> str:
    """The version of the distribution that provides the import name ``module``."""
    [dist] = packages_distributions()[module]
    return version(dist)


def rq_failed_job_kept_for() -> float:
    """Run a failing job under RQ's defaults; how long its failed-registry entry is kept."""
    queue = Queue("facts", connection=fakeredis.FakeRedis(), serializer=JSONSerializer)
    job = queue.enqueue("builtins.int", "not a number")  # ValueError: the job fails
    SimpleWorker([queue], connection=queue.connection, serializer=JSONSerializer).work(burst=True)
    expires = queue.connection.zscore(FailedJobRegistry(queue=queue).key, job.id)
    return expires - time.time()


# -- one assertion per fact: the value is the library's -----------------------------------
def test_celery_version():
    assert facts.value("celery_version") == celery.__version__


def test_kombu_version():
    assert facts.value("kombu_version") == kombu.__version__


def test_rq_version():
    assert facts.value("rq_version") == rq.__version__


def test_redis_py_version():
    assert facts.value("redis_py_version") == redis.__version__


def test_amqp_version():
    import amqp

    assert facts.value("amqp_version") == amqp.__version__


def test_flower_version():
    assert facts.value("flower_version") == flower.__version__


def test_prometheus_client_version():
    assert facts.value("prometheus_client_version") == installed("prometheus_client")


def test_botocore_version():
    assert facts.value("botocore_version") == botocore.__version__


def test_moto_version():
    from importlib.metadata import version

    assert facts.value("moto_version") == version("moto")


def test_bullmq_python_version():
    import bullmq

    assert facts.value("bullmq_python_version") == bullmq.__version__


def test_bullmq_version_is_the_one_npm_installs_from_the_lockfile():
    lock = json.loads((facts.BULLMQ_PACKAGE.parent / "package-lock.json").read_text(encoding="utf-8"))
    assert facts.value("bullmq_version") == lock["packages"]["node_modules/bullmq"]["version"]


def test_procrastinate_version():
    assert facts.value("procrastinate_version") == installed("procrastinate")


def test_psycopg_version():
    import psycopg

    assert facts.value("psycopg_version") == psycopg.__version__


def test_opentelemetry_version():
    assert facts.value("opentelemetry_version") == otel_sdk_version


def test_opentelemetry_celery_version():
    assert facts.value("opentelemetry_celery_version") == otel_celery_version


def test_opentelemetry_semconv_version():
    assert facts.value("opentelemetry_semconv_version") == otel_semconv_version


def test_kombu_visibility_timeout_is_the_redis_transports():
    assert facts.value("kombu_visibility_timeout") == resolve_transport("redis").Channel.visibility_timeout


def test_kombu_sqs_visibility_timeout_is_the_sqs_transports():
    assert facts.value("kombu_sqs_visibility_timeout") == resolve_transport("sqs").Channel.default_visibility_timeout


def test_celery_prefetch_multiplier_is_a_new_apps():
    assert facts.value("celery_prefetch_multiplier") == Celery(set_as_current=False).conf.worker_prefetch_multiplier


def test_rq_failure_ttl_is_how_long_a_failed_job_is_kept():
    assert rq_failed_job_kept_for() == pytest.approx(facts.value("rq_failure_ttl"), abs=60)


def test_every_fact_has_its_test():
    tested = {name.removeprefix("test_") for name in globals() if name.startswith("test_")}
    untested = [f.name for f in facts.FACTS if not any(t.startswith(f.name) for t in tested)]
    assert not untested, f"add a test_<fact>... comparing with the library for {untested}"


# -- the substitutions MyST gets ---------------------------------------------------------
def test_substitutions_give_text_and_inline_code():
    subs = facts.substitutions()
    assert subs["kombu_visibility_timeout"] == str(facts.value("kombu_visibility_timeout"))
    assert subs["code"]["kombu_visibility_timeout"] == f"`{facts.value('kombu_visibility_timeout')}`"
    assert facts.render("kombu {{ kombu_version }}: {{code.kombu_visibility_timeout}}") == (
        f"kombu {kombu.__version__}: `{facts.value('kombu_visibility_timeout')}`")


def test_an_unknown_fact_is_an_error_naming_it():
    with pytest.raises(KeyError, match="kombu_verison"):
        facts.render("{{ kombu_verison }}")
    with pytest.raises(KeyError, match="no fact 'nope'"):
        facts.value("nope")


# -- no page types a fact by hand --------------------------------------------------------
@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.relative_to(ROOT / "docs").as_posix())
def test_no_page_types_a_fact_by_hand(page):
    text = page.read_text(encoding="utf-8")
    facts.render(text)  # every {{ name }} on the page is a fact
    found = [f"{page.relative_to(ROOT)}:{n}: write {{{{ {name} }}}} (or {{{{ code.{name} }}}}) instead: {line.strip()}"
             for n, name, line in facts.hand_typed(text)]
    assert not found, "\n".join(found)


TYPED = f"""\
A long task runs again every {facts.value("kombu_visibility_timeout")} s (`visibility_timeout`).
Since Celery {celery.__version__[:3]} the default is unchanged.

```python
visibility_timeout = {facts.value("kombu_visibility_timeout")}  # code: shown verbatim, not checked
```

:::{{admonition}} Note
```{{literalinclude}} x.py
```
kombu {kombu.__version__} inside an admonition is prose.
:::
Prefetch: `worker_prefetch_multiplier` is {{{{ celery_prefetch_multiplier }}}} by default.
Run 4 workers: a 4 on a line that names no fact is not a fact.
"""


def test_the_check_finds_typed_values_in_prose_not_in_code():
    found = [(n, name) for n, name, _ in facts.hand_typed(TYPED)]
    assert found == [(1, "kombu_visibility_timeout"), (2, "celery_version"), (11, "kombu_version")]
