"""promtool checks and unit-tests examples/frameworks/scheduled_jobs/alerts.yml, and the rule
reads exactly the gauges ScheduleCollector exports (docs/frameworks/scheduled-jobs.md)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tests._support.tools import require_tool

HERE = Path(__file__).resolve().parents[3] / "examples" / "frameworks" / "scheduled_jobs"


@pytest.fixture(scope="module")
def promtool() -> str:
    return require_tool("promtool")


def promtool_run(promtool: str, *args: str, cwd: Path = HERE) -> subprocess.CompletedProcess:
    return subprocess.run([promtool, *args], cwd=cwd, capture_output=True, text=True, timeout=60)


def test_rules_check_and_unit_tests_pass(promtool):
    checked = promtool_run(promtool, "check", "rules", "alerts.yml")
    assert "SUCCESS: 2 rules found" in checked.stdout, checked.stdout + checked.stderr
    tested = promtool_run(promtool, "test", "rules", "alerts_test.yml")
    assert tested.returncode == 0, tested.stdout + tested.stderr


def test_the_unit_test_fails_if_the_stalled_schedule_succeeds(promtool, tmp_path):
    """The unit test can fail: with the report schedule succeeding, the expected alert is missing."""
    shutil.copy(HERE / "alerts.yml", tmp_path)
    text = (HERE / "alerts_test.yml").read_text(encoding="utf-8")
    (tmp_path / "alerts_test.yml").write_text(text.replace("values: '0+0x60'", "values: '0+60x60'"))
    failed = promtool_run(promtool, "test", "rules", "alerts_test.yml", cwd=tmp_path)
    assert failed.returncode == 1 and "ScheduledJobMissed" in failed.stdout + failed.stderr


def test_the_rules_read_the_collectors_gauges():
    source = (HERE / "scheduler.py").read_text(encoding="utf-8")
    rules = (HERE / "alerts.yml").read_text(encoding="utf-8")
    for gauge in ("scheduled_job_last_success_timestamp_seconds", "scheduled_job_max_age_seconds"):
        assert f'"{gauge}"' in source and gauge in rules
