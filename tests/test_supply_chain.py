"""What CI installs is pinned (security review, finding 21).

``.ci/run`` installed ``tox>=4.11``: any new release, or a malicious one, ran in CI on its next
start. The Node project already pinned exact versions, with a lockfile that ``npm ci`` installs.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_ci_installs_an_exact_tox_version():
    script = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    installs = [line for line in script.splitlines() if "pip install" in line and not line.lstrip().startswith("#")]
    assert installs, "no pip install in .ci/run"
    for line in installs:
        requirements = re.findall(r'"([A-Za-z0-9_.-]+)([<>=!~]=?[^"]*)?"', line)
        assert requirements, line
        for name, spec in requirements:
            assert re.fullmatch(r"==\d+(\.\d+)*", spec or ""), f"{name}{spec} is not an exact pin: {line}"


def test_the_node_project_pins_exact_versions_and_installs_from_its_lockfile():
    package = json.loads((ROOT / "examples" / "frameworks" / "bullmq" / "package.json").read_text())
    for name, version in {**package.get("dependencies", {}), **package.get("devDependencies", {})}.items():
        assert re.fullmatch(r"\d+\.\d+\.\d+", version), f"{name}: {version} is a range"
    lock = json.loads((ROOT / "examples" / "frameworks" / "bullmq" / "package-lock.json").read_text())
    assert all(entry.get("integrity", "").startswith("sha512-") for path, entry in lock["packages"].items() if path)
