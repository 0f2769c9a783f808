"""The incidents lab (labs/incidents_lab.py): its time compression, its promises and its
committed results, and one short incident replayed on the live stack (real-Redis run)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from examples.observability.runbook import entries as rb
from labs import incidents_lab as lab
from labs.incidents import stack
from labs.incidents.scenarios import SCENARIOS
from tests._support.processes import process_tree
from tests._support.tools import require_tool

RESULTS = Path(__file__).resolve().parents[2] / "docs" / "observability" / "_data" / "incidents.json"


def test_rule_time_is_divided_and_nothing_else_changes():
    text, changes = stack.scale_rules((stack.ALERTING / "alerts.yml").read_text(), 30)
    rules = {r["alert"]: r for g in yaml.safe_load(text)["groups"] for r in g["rules"]}
    assert rules["JobQueueBacklogGrowing"]["for"] == "30s"  # 15m / 30
    assert "deriv(jobqueue_queue_depth[30s])" in rules["JobQueueBacklogGrowing"]["expr"]
    assert "> 100" in rules["JobQueueBacklogGrowing"]["expr"]  # a count, not a time: kept
    assert "jobqueue_queue_oldest_job_age_seconds) > 10" in rules["JobQueueOldestJobTooOld"]["expr"]
    assert rules["JobQueueErrorRatioHigh"]["expr"].count("[20s]") == 3  # 10m / 30
    assert {c["name"]: c["for"] for c in changes}["JobQueueNotConsuming"] == ["5m", "10s"]
    with pytest.raises(ValueError, match="single-unit Prometheus duration"):
        stack.seconds("1h30m")


def test_the_lab_alertmanager_keeps_the_handbooks_routes_and_inhibitions():
    handbook = yaml.safe_load(stack.ALERTMANAGER_FILE.read_text())
    config = stack.lab_alertmanager_config("http://127.0.0.1:9", 30)
    assert config["inhibit_rules"] == handbook["inhibit_rules"]
    assert config["route"]["routes"] == handbook["route"]["routes"]
    assert config["route"]["group_wait"] == "1s"
    assert {r["name"]: r["webhook_configs"][0]["url"] for r in config["receivers"]} == {
        "pager": "http://127.0.0.1:9/pager", "tickets": "http://127.0.0.1:9/tickets"}


def test_the_handbooks_alertmanager_config_passes_amtool():
    amtool = shutil.which("amtool")
    if amtool is None:
        require_tool("prometheus-alertmanager")  # amtool ships in the same package
    done = subprocess.run([amtool or "amtool", "check-config", "alertmanager.yml"],
                          cwd=stack.ALERTING, capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "1 inhibit rules" in done.stdout


def test_each_incident_expects_exactly_what_its_runbook_entry_promises():
    by_id = {e.id: e for e in rb.load().entries}
    for sc in SCENARIOS:
        assert sc.runbook in by_id, sc.id
        assert {name for name, _ in sc.expect} == set(by_id[sc.runbook].alerts), sc.id
        assert not {name for name, _ in sc.expect} & set(sc.quiet), sc.id


def test_the_committed_results_keep_every_promise():
    data = json.loads(RESULTS.read_text())
    assert [(i["id"], i["runbook"]) for i in data["incidents"]] == [
        (sc.id, sc.runbook) for sc in SCENARIOS]
    assert data["wall_seconds"] < 15 * 60
    for incident in data["incidents"]:
        fired = {(a["alert"], a["queue"]) for a in incident["alerts"]}
        promised = {tuple(e) for e in incident["expect"]}
        assert promised <= fired, incident["id"]
        assert not {a for a, _ in fired} & set(incident["quiet"]), incident["id"]
        assert incident["violations"] == []
        assert all(a["resolved"] is not None for a in incident["alerts"]), incident["id"]
        titles = [p["title"] for p in incident["panels"]]
        assert titles[:len(lab.panel_queries())] == [p["title"] for p in lab.panel_queries()]


@pytest.mark.real_redis("starts its own redis-server, Prometheus and Alertmanager: a CI stage")
def test_all_workers_dead_pages_and_holds_the_age_alert_back(tmp_path):
    for tool in ("redis-server", "prometheus", "prometheus-alertmanager",
                 "prometheus-redis-exporter"):
        require_tool(tool)
    out = tmp_path / "incidents.json"
    # The suite's own servers (the RabbitMQ node, the server under test) may already be
    # children of this process: the lab must leave nothing of its own behind.
    before = set(process_tree(os.getpid()))
    code = lab.main(["--only", "workers-dead", "--factor", "60", "--timeout", "60",
                     "--out", str(out)])
    incident = json.loads(out.read_text())["incidents"][0]
    assert code == 0, incident["violations"]
    fired = {a["alert"]: a for a in incident["alerts"]}
    assert fired["JobQueueNotConsuming"]["notified"] is not None
    assert {"alert": "JobQueueOldestJobTooOld", "queue": "emails",
            "by": "JobQueueNotConsuming"} in incident["inhibited"]
    assert set(process_tree(os.getpid())) <= before  # every server and worker it started stopped


def test_each_runbook_replay_names_an_incident_that_replays_that_entry():
    by_id = {sc.id: sc for sc in SCENARIOS}
    linked = {}
    for entry in rb.load().entries:
        for incident in entry.replay:
            assert by_id[incident].runbook == entry.id
            linked[incident] = entry.id
    assert set(linked) == set(by_id)  # every incident is linked from its entry
