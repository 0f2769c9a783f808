"""Tests for docs/observability/alerting.md (examples/observability/alerting/alerts.yml, alerts_test.yml).

promtool checks and unit-tests the rules. Without promtool these tests are skipped, naming the
package that installs it, and the run's summary lists them; under HANDBOOK_STRICT=1 (CI) they
fail instead: alert rules nobody ran are not allowed to pass in CI.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
import yaml

from examples.observability import metric_contract as contract
from tests._support.promtool import ALERTING, run_promtool

DOCS = Path(__file__).resolve().parents[2] / "docs"
RULES = yaml.safe_load((ALERTING / "alerts.yml").read_text(encoding="utf-8"))
ALERTS = {rule["alert"]: rule for group in RULES["groups"] for rule in group["rules"]}
UNIT_TESTS = yaml.safe_load((ALERTING / "alerts_test.yml").read_text(encoding="utf-8"))


def test_promtool_check_rules_passes(promtool):
    result = run_promtool(promtool, "check", "rules", "alerts.yml", cwd=ALERTING)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(ALERTS)} rules found" in result.stdout


def test_promtool_unit_tests_pass(promtool):
    result = run_promtool(promtool, "test", "rules", "alerts_test.yml", cwd=ALERTING)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_a_wrong_expectation_makes_promtool_fail(promtool, tmp_path):
    """The harness can fail: an expected alert that does not match is reported."""
    shutil.copy(ALERTING / "alerts.yml", tmp_path)
    text = (ALERTING / "alerts_test.yml").read_text(encoding="utf-8")
    (tmp_path / "alerts_test.yml").write_text(text.replace("{severity: page, queue: stalled}",
                                                           "{severity: page, queue: busy}"), encoding="utf-8")
    result = run_promtool(promtool, "test", "rules", "alerts_test.yml", cwd=tmp_path)
    assert result.returncode == 1
    assert "FAILED" in result.stdout + result.stderr
    assert "alertname: JobQueueNotConsuming" in result.stdout + result.stderr


def test_a_broken_rule_fails_the_check(promtool, tmp_path):
    text = (ALERTING / "alerts.yml").read_text(encoding="utf-8")
    broken = text.replace("max by (queue) (jobqueue_queue_oldest_job_age_seconds) > 300",
                          "max by (queue) (jobqueue_queue_oldest_job_age_seconds > 300")
    assert broken != text
    (tmp_path / "alerts.yml").write_text(broken)
    result = run_promtool(promtool, "check", "rules", "alerts.yml", cwd=tmp_path)
    assert result.returncode == 1
    assert "unclosed left parenthesis" in result.stdout + result.stderr


def test_rules_use_only_contract_metrics_and_its_thresholds():
    for name, rule in ALERTS.items():
        used = set(re.findall(r"\bjobqueue_[a-z_]+", rule["expr"]))
        assert used and used <= contract.SERIES_NAMES, (name, used - contract.SERIES_NAMES)
    assert ALERTS["JobQueueOldestJobTooOld"]["expr"].endswith(f"> {contract.OLDEST_JOB_SLO_SECONDS:g}")
    ratio = ALERTS["JobQueueErrorRatioHigh"]["expr"]
    assert f"> {contract.ERROR_RATIO_THRESHOLD:g}\n" in ratio
    # the traffic guard: enough finished jobs in the same window
    assert ratio.rstrip().endswith(
        f"and on (queue) sum by (queue) (increase(jobqueue_jobs_processed_total[10m]))"
        f" >= {contract.ERROR_RATIO_MIN_JOBS}")
    assert f'min(up{{job="{contract.COLLECTOR_JOB}"}}) == 0' in ALERTS["JobQueueMetricsMissing"]["expr"]


SLO_RULES = yaml.safe_load((ALERTING / "slo.yml").read_text(encoding="utf-8"))
SLO_ALERTS = {rule["alert"]: rule for group in SLO_RULES["groups"] for rule in group["rules"]
              if "alert" in rule}
SLO_UNIT_TESTS = yaml.safe_load((ALERTING / "slo_test.yml").read_text(encoding="utf-8"))


@pytest.mark.parametrize("name", sorted(ALERTS | SLO_ALERTS))
def test_every_alert_waits_has_a_severity_and_a_runbook_that_exists(name):
    rule = (ALERTS | SLO_ALERTS)[name]
    assert re.fullmatch(r"\d+m", rule["for"])
    assert rule["labels"]["severity"] in {"page", "ticket"}
    url = rule["annotations"]["runbook_url"]
    assert url.startswith(contract.HANDBOOK_URL)
    page, anchor = url.removeprefix(contract.HANDBOOK_URL).split("#")
    source = (DOCS / page).with_suffix(".md")
    assert source.is_file(), f"{name}: runbook page {page} has no source {source}"
    headings = re.findall(r"^#{2,4} (.+)$", source.read_text(encoding="utf-8"), flags=re.M)
    assert anchor in {h.strip().lower() for h in headings}, f"{name}: no heading for #{anchor} in {source.name}"


@pytest.mark.parametrize("name", sorted(ALERTS | SLO_ALERTS))
def test_every_alert_has_a_case_that_fires_and_one_that_must_not(name):
    tests = (UNIT_TESTS if name in ALERTS else SLO_UNIT_TESTS)["tests"]
    cases = [case for test in tests for case in test.get("alert_rule_test", [])
             if case["alertname"] == name]
    assert any(case.get("exp_alerts") for case in cases), f"{name}: no test where it fires"
    assert any(not case.get("exp_alerts") for case in cases), f"{name}: no test where it must stay quiet"


def test_no_rule_panel_or_runbook_query_matches_an_le_value():
    """Prometheus 3 stores `le` as a float ("30.0"); a query that matches `le="30"` finds
    nothing there (the Versions note of the page). None of the handbook's queries does."""
    from tests._support.promtool import EXAMPLES

    for path in (ALERTING / "alerts.yml", EXAMPLES / "grafana" / "dashboard.json",
                 EXAMPLES / "runbook" / "runbook.toml"):
        text = path.read_text(encoding="utf-8")
        assert not re.search(r"\ble\s*=~?\s*\\?[\"']", text), f"{path.name} matches an le value"


def test_no_query_uses_what_prometheus_3_changed_in_promql():
    """Prometheus 3 lets `.` in a regex match newlines and renames holt_winters (the Versions
    note). The rules and runbook queries use no regex and no holt_winters; the dashboard's only
    regex matcher is `queue=~"$queue"`, and a queue name cannot hold a newline."""
    from examples.fundamentals.delivery_guarantees.queues import ReliableQueue
    from tests._support.promtool import EXAMPLES

    for path in (ALERTING / "alerts.yml", ALERTING / "slo.yml", EXAMPLES / "runbook" / "runbook.toml"):
        assert not re.search(r"[=!]~|holt_winters", path.read_text(encoding="utf-8")), path.name
    dashboard = (EXAMPLES / "grafana" / "dashboard.json").read_text(encoding="utf-8")
    assert "holt_winters" not in dashboard
    assert set(re.findall(r'\w+\s*[=!]~\s*\\"[^\\]*\\"', dashboard)) == {'queue=~\\"$queue\\"'}
    with pytest.raises(ValueError, match="without spaces"):
        ReliableQueue(None, "emails\nurgent")  # type: ignore[arg-type]


# -- error-budget burn-rate alerts (slo.yml, slo_test.yml) -------------------------------------
def slo_rules_without(promtool, tmp_path, clause: str):
    """Run slo_test.yml against slo.yml with one clause of both alerts removed."""
    text = (ALERTING / "slo.yml").read_text(encoding="utf-8")
    assert clause in text
    (tmp_path / "slo.yml").write_text(text.replace(clause, ""), encoding="utf-8")
    shutil.copy(ALERTING / "slo_test.yml", tmp_path)
    return run_promtool(promtool, "test", "rules", "slo_test.yml", cwd=tmp_path)


def test_slo_burn_rate_rules_check_and_pass_their_unit_tests(promtool):
    check = run_promtool(promtool, "check", "rules", "slo.yml", cwd=ALERTING)
    assert check.returncode == 0 and "SUCCESS: 14 rules found" in check.stdout, check.stdout + check.stderr
    result = run_promtool(promtool, "test", "rules", "slo_test.yml", cwd=ALERTING)
    assert result.returncode == 0, result.stdout + result.stderr


def test_without_the_short_window_the_page_outlives_the_outage_by_an_hour(promtool, tmp_path):
    result = slo_rules_without(promtool, tmp_path, "\n            and queue:jobqueue_error_ratio:rate5m > 14.4 * 0.01")
    assert result.returncode == 1
    assert "time: 1h30m" in result.stdout + result.stderr  # still paging ten minutes after the last failure


def test_without_the_traffic_floor_a_queue_of_one_job_a_minute_pages(promtool, tmp_path):
    result = slo_rules_without(promtool, tmp_path, "\n            and queue:jobqueue_jobs_processed:increase1h >= 100")
    assert result.returncode == 1
    assert 'queue="rare"' in result.stdout + result.stderr


# -- latency burn-rate alerts (slo.yml: 99 % of jobs start within the contract's SLO) -----------
def test_without_the_short_window_the_latency_page_outlives_the_late_starts(promtool, tmp_path):
    result = slo_rules_without(promtool, tmp_path, "\n            and queue:jobqueue_slow_start_ratio:rate5m > 14.4 * 0.01")
    assert result.returncode == 1
    out = result.stdout + result.stderr
    assert "alertname: JobQueueLatencyBudgetFastBurn, time: 1h30m" in out


def test_without_the_traffic_floor_a_queue_of_one_late_job_in_five_pages(promtool, tmp_path):
    result = slo_rules_without(promtool, tmp_path, "\n            and queue:jobqueue_jobs_started:increase1h >= 100")
    assert result.returncode == 1
    out = result.stdout + result.stderr
    assert 'queue="rare"' in out and "JobQueueLatencyBudgetFastBurn" in out


def test_latency_rules_match_le_as_the_client_writes_the_slo_edge():
    """The SLO edge is matched as prometheus_client exposes it ("300.0"), which is also the form
    Prometheus 3 normalises every `le` to; an integer `le="300"` would match no series."""
    from prometheus_client import CollectorRegistry, Histogram, generate_latest

    registry = CollectorRegistry()
    spec = contract.metric("jobqueue_job_time_in_queue_seconds")
    Histogram(spec.client_name, spec.help, spec.labels, buckets=spec.buckets,
              registry=registry).labels("emails").observe(1.0)
    exposed = set(re.findall(r'le="([^"]+)"', generate_latest(registry).decode()))
    rules = yaml.safe_load((ALERTING / "slo.yml").read_text(encoding="utf-8"))
    exprs = " ".join(rule["expr"] for group in rules["groups"] for rule in group["rules"])
    matched = set(re.findall(r'le="([^"]+)"', exprs))
    assert matched == {f"{contract.OLDEST_JOB_SLO_SECONDS:.1f}"} and matched <= exposed


def test_an_integer_le_makes_the_latency_page_silent(promtool, tmp_path):
    """The Prometheus 3 `le` change as a rule author meets it: `le="300"` selects nothing in a
    store of float-form values, so the ratio is empty and the page that must fire does not."""
    text = (ALERTING / "slo.yml").read_text(encoding="utf-8")
    (tmp_path / "slo.yml").write_text(text.replace('le="300.0"', 'le="300"'), encoding="utf-8")
    shutil.copy(ALERTING / "slo_test.yml", tmp_path)
    result = run_promtool(promtool, "test", "rules", "slo_test.yml", cwd=tmp_path)
    assert result.returncode == 1
    out = result.stdout + result.stderr
    assert "alertname: JobQueueLatencyBudgetFastBurn, time: 1h15m" in out and "got:[]" in out
