"""Tests for docs/observability/grafana.md (examples/observability/grafana/panels.py, dashboard.json).

Every panel query is run through promtool twice: as a recording rule (`promtool check
rules`: it parses) and in a rule unit test fed only with series of the metric contract
(`promtool test rules`: it returns data, so it uses no metric outside the contract).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml

from examples.observability.grafana import panels as grafana
from examples.observability import metric_contract as contract
from tests._support.promtool import GRAFANA, contract_series, run_promtool

DASHBOARD = json.loads((GRAFANA / "dashboard.json").read_text(encoding="utf-8"))
GRAFANA_VARIABLES = {'"$queue"': '".+"', "$__rate_interval": "5m"}


def test_committed_dashboard_is_what_the_generator_writes():
    assert (GRAFANA / "dashboard.json").read_text(encoding="utf-8") == grafana.render()
    assert grafana.main(["--check"]) == 0


def test_dashboard_structure():
    panels = DASHBOARD["panels"]
    assert [p["id"] for p in panels] == list(range(1, len(panels) + 1))
    cells: set[tuple[int, int]] = set()
    for p in panels:
        pos = p["gridPos"]
        assert 0 <= pos["x"] and pos["x"] + pos["w"] <= grafana.GRID_COLUMNS, p["title"]
        mine = {(x, y) for x in range(pos["x"], pos["x"] + pos["w"]) for y in range(pos["y"], pos["y"] + pos["h"])}
        assert not mine & cells, f"{p['title']} overlaps another panel"
        cells |= mine
        assert p["type"] in {"timeseries", "stat"} and p["targets"]
        assert p["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
        assert len({t["refId"] for t in p["targets"]}) == len(p["targets"])
    variables = {v["name"]: v for v in DASHBOARD["templating"]["list"]}
    assert variables["datasource"]["query"] == "prometheus"
    assert variables["queue"]["query"]["query"] == "label_values(jobqueue_queue_depth, queue)"
    titles = " | ".join(p["title"] for p in panels)
    for needed in ("Queue depth", "oldest", "Throughput", "Error ratio", "Time in queue", "Run time", "saturation"):
        assert needed.lower() in titles.lower(), needed


def queries() -> list[tuple[str, str]]:
    """(rule name, PromQL with Grafana's variables replaced) for every panel target."""
    found = []
    for p in DASHBOARD["panels"]:
        for t in p["targets"]:
            expr = t["expr"]
            for variable, value in GRAFANA_VARIABLES.items():
                expr = expr.replace(variable, value)
            found.append((f"dashboard:panel_{p['id']}_{t['refId']}", expr))
    return found


def test_percentile_panels_use_histogram_quantile_over_rate_of_buckets():
    percentile = [t["expr"] for p in DASHBOARD["panels"] if "percentiles" in p["title"] for t in p["targets"]]
    assert len(percentile) == 6
    for expr in percentile:
        assert re.fullmatch(r"histogram_quantile\(0\.\d+, sum by \(\w+, le\) \(rate\(jobqueue_\w+_seconds_bucket\{.*\}\[\$__rate_interval\]\)\)\)", expr)


def test_queries_name_only_contract_metrics():
    for name, expr in queries():
        used = set(re.findall(r"\bjobqueue_[a-z_]+", expr))
        assert used and used <= contract.SERIES_NAMES, (name, used - contract.SERIES_NAMES)


def promtool_files(tmp_path: Path, extra: list[tuple[str, str]] = ()) -> None:
    rules = [{"record": name, "expr": expr} for name, expr in [*queries(), *extra]]
    (tmp_path / "panels.yml").write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    tests = {"rule_files": ["panels.yml"], "evaluation_interval": "1m", "tests": [{
        "interval": "1m",
        "input_series": contract_series(),
        "promql_expr_test": [
            {"expr": f"count({rule['record']}) > bool 0", "eval_time": "15m", "exp_samples": [{"labels": "{}", "value": 1}]}
            for rule in rules
        ],
    }]}
    (tmp_path / "panels_test.yml").write_text(yaml.safe_dump(tests))


def test_every_panel_query_parses_and_returns_data_from_contract_series(promtool, tmp_path):
    promtool_files(tmp_path)
    check = run_promtool(promtool, "check", "rules", "panels.yml", cwd=tmp_path)
    assert check.returncode == 0, check.stdout + check.stderr
    assert f"SUCCESS: {len(queries())} rules found" in check.stdout
    result = run_promtool(promtool, "test", "rules", "panels_test.yml", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_harness_catches_a_query_on_a_metric_outside_the_contract(promtool, tmp_path):
    promtool_files(tmp_path, extra=[("dashboard:intruder", 'sum(celery_queue_length{queue_name=".+"})')])
    result = run_promtool(promtool, "test", "rules", "panels_test.yml", cwd=tmp_path)
    assert result.returncode == 1
    assert "dashboard:intruder" in result.stdout + result.stderr


def test_increase_extrapolates_and_a_quantile_of_no_observations_is_nan(promtool, tmp_path):
    """Two answers of the Grafana page's questions, run by promtool: ``increase()`` over a counter
    that only moves in whole steps returns 2.5 for a window its samples do not fill, and
    ``histogram_quantile`` of buckets whose rate is 0 is NaN, not 0."""
    rules = [
        {"record": "q:increase_150s", "expr": "increase(jobs_done_total[150s])"},
        {"record": "q:p95_idle", "expr": "histogram_quantile(0.95, sum by (le) (rate(job_seconds_bucket[5m])))"},
    ]
    (tmp_path / "q.yml").write_text(yaml.safe_dump({"groups": [{"name": "q", "rules": rules}]}))
    case = {"rule_files": ["q.yml"], "evaluation_interval": "1m", "tests": [{
        "interval": "1m",
        "input_series": [
            {"series": "jobs_done_total", "values": "0+1x20"},  # one job a minute, whole numbers
            {"series": 'job_seconds_bucket{le="1"}', "values": "5+0x20"},  # nothing observed lately
            {"series": 'job_seconds_bucket{le="+Inf"}', "values": "5+0x20"},
        ],
        "promql_expr_test": [
            {"expr": "q:increase_150s", "eval_time": "10m",
             "exp_samples": [{"labels": "q:increase_150s", "value": 2.5}]},
            # NaN is the one value not equal to itself (promtool cannot expect NaN directly)
            {"expr": "count(q:p95_idle != q:p95_idle)", "eval_time": "10m",
             "exp_samples": [{"labels": "{}", "value": 1}]},
        ],
    }]}
    (tmp_path / "q_test.yml").write_text(yaml.safe_dump(case))
    result = run_promtool(promtool, "test", "rules", "q_test.yml", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
