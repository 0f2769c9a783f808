"""What CI installs is pinned (security review, finding 21).

``.ci/run`` installed ``tox>=4.11``, then ``tox==4.67.15``: a pinned version, but whatever file
the index served for it, and whatever versions of tox's dependencies were newest. Now it
installs ``.ci/requirements-tox.txt`` with ``--require-hashes``: every package at one version,
with the sha256 of its files. The Node project already pinned exact versions, with a lockfile
that ``npm ci`` installs. Not pinned by hash: the tox environments' own dependencies.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


REQUIREMENTS = ROOT / ".ci" / "requirements-tox.txt"


def requirements(path: Path) -> dict[str, tuple[str, list[str]]]:
    """name -> (version, sha256 hashes) of a pip requirements file with ``--hash`` options."""
    text = re.sub(r"\\\n", " ", path.read_text(encoding="utf-8"))  # join continued lines
    found: dict[str, tuple[str, list[str]]] = {}
    for line in text.splitlines():
        line = line.split(" #")[0].strip()
        if not line or line.startswith("#"):
            continue
        match = re.fullmatch(r"([A-Za-z0-9_.-]+)==(\d[\w.]*)((?:\s+--hash=sha256:[0-9a-f]{64})+)", line)
        assert match, f"not an exact pin with sha256 hashes: {line!r}"
        name, version, hashes = match.groups()
        found[name.lower()] = (version, re.findall(r"[0-9a-f]{64}", hashes))
    return found


def test_ci_installs_only_hash_pinned_requirements():
    script = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    script = re.sub(r"\s*\\\n\s*", " ", script)  # join continued lines
    installs = [line for line in script.splitlines() if "pip install" in line and not line.lstrip().startswith("#")]
    assert installs == [
        "python3 -m pip install --quiet --disable-pip-version-check --require-hashes -r .ci/requirements-tox.txt"
    ]


def test_the_requirements_file_pins_every_package_with_a_sha256():
    pinned = requirements(REQUIREMENTS)
    assert pinned["tox"][0] == "4.67.15"
    assert all(hashes for _, hashes in pinned.values())
    # what the .in file asks for is what the lock holds
    wanted = [line for line in (ROOT / ".ci" / "requirements-tox.in").read_text().splitlines()
              if line and not line.startswith("#")]
    assert wanted == [f"tox=={pinned['tox'][0]}"]
    # tox's own dependencies (its wheel's metadata, as pip-compile resolved them) are all there
    for dependency in ("virtualenv", "pluggy", "packaging", "filelock", "platformdirs",
                       "pyproject-api", "cachetools", "colorama", "distlib", "python-discovery"):
        assert dependency in pinned, dependency


def test_the_requirements_check_refuses_a_loose_or_unhashed_pin(tmp_path):
    for bad in ("tox==4.67.15\n", "tox>=4.11 --hash=sha256:" + "0" * 64 + "\n",
                "tox==4.67.15 --hash=md5:" + "0" * 32 + "\n"):
        path = tmp_path / "r.txt"
        path.write_text(bad)
        with pytest.raises(AssertionError, match="not an exact pin with sha256 hashes"):
            requirements(path)


def test_the_node_project_pins_exact_versions_and_installs_from_its_lockfile():
    package = json.loads((ROOT / "examples" / "frameworks" / "bullmq" / "package.json").read_text())
    for name, version in {**package.get("dependencies", {}), **package.get("devDependencies", {})}.items():
        assert re.fullmatch(r"\d+\.\d+\.\d+", version), f"{name}: {version} is a range"
    lock = json.loads((ROOT / "examples" / "frameworks" / "bullmq" / "package-lock.json").read_text())
    assert all(entry.get("integrity", "").startswith("sha512-") for path, entry in lock["packages"].items() if path)


def test_every_npm_install_runs_no_install_scripts():
    """Security review, finding 21: ``npm ci`` ran the packages' install scripts
    (msgpackr-extract's). Its prebuilt binary is an optional package that needs no script:
    the BullMQ tests pass on a tree installed with ``--ignore-scripts``."""
    places = {
        "tox.ini": (ROOT / "tox.ini").read_text(encoding="utf-8"),
        "tests/frameworks/conftest.py": (ROOT / "tests" / "frameworks" / "conftest.py").read_text(encoding="utf-8"),
        "labs/throughput.py": (ROOT / "labs" / "throughput.py").read_text(encoding="utf-8"),
    }
    for where, text in places.items():
        calls = re.findall(r"npm --prefix \S+ ci\b[^\n]*|\[npm, \"ci\"[^\]]*\]", text)  # tox.ini; Python
        assert calls, where
        for call in calls:
            assert "--ignore-scripts" in call, f"{where}: {call}"
