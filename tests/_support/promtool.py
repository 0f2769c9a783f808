"""Running promtool on the Track 3 files: the alert rules, and queries fed with contract series.

The ``promtool`` fixture (``tests/observability/conftest.py``) finds the program; these helpers
run it and build the input series every family of the metric contract needs.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from examples.observability import metric_contract as contract

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "observability"
ALERTING = EXAMPLES / "alerting"
GRAFANA = EXAMPLES / "grafana"


def run_promtool(promtool: str, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([promtool, *args], cwd=cwd, capture_output=True, text=True, timeout=60)


def contract_series() -> list[dict]:
    """Input series for promtool: one queue, one task, every family of the contract."""
    values = {"counter": "0+10x20", "gauge": "5+0x20"}
    series = []
    for m in contract.METRICS:
        labels = {"queue": "emails", "task": "send_email", "error": "timeout"}
        labelset = ",".join(f'{k}="{labels[k]}"' for k in m.labels)
        if m.kind == "histogram":
            for i, le in enumerate([*map(str, m.buckets), "+Inf"]):
                series.append({"series": f'{m.name}_bucket{{{labelset},le="{le}"}}', "values": f"0+{i + 1}x20"})
            n = len(m.buckets) + 1
            series.append({"series": f"{m.name}_count{{{labelset}}}", "values": f"0+{n}x20"})
            series.append({"series": f"{m.name}_sum{{{labelset}}}", "values": f"0+{n * 3}x20"})
        else:
            series.append({"series": f"{m.name}{{{labelset}}}", "values": values[m.kind]})
    return series
