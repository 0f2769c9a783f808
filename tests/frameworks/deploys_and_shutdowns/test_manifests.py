"""Tests for the Kubernetes manifests and the Dockerfile of docs/frameworks/deploys-and-shutdowns.md.

The objects are validated offline against the Kubernetes 1.33 schemas in strict mode (as
tests/frameworks/test_kubernetes_autoscaling.py does); then what the page claims about them: grace periods
that cover each worker's shutdown (the Celery one from the shutdown lab's measurement),
probes that run and fail on a stuck consumer, annotations, the Pod Security Standards'
restricted profile, no secret values, and an image whose PID 1 gets SIGTERM.
"""

from __future__ import annotations

import importlib
import json
import math
import os
import re
import subprocess
import time
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from examples.frameworks.deploys_and_shutdowns import celery_worker, health, worker
from examples.frameworks.horizontal_scaling import DrainingWorker, grace_period_needed
from handbook_sphinx.tables import shutdown_exit_seconds
from labs import shutdown_lab
from tests._support.pod_env import redis_url_problems

ROOT = Path(__file__).resolve().parents[3]
MANIFESTS = ROOT / "examples" / "frameworks" / "deploys_and_shutdowns"
K8S_VERSION = "1.33.0"
CORE = ["celery-worker.yaml", "draining-worker.yaml"]


def documents(name: str) -> list[dict]:
    return [d for d in yaml.safe_load_all((MANIFESTS / name).read_text(encoding="utf-8")) if d]


def one(name: str, kind: str) -> dict:
    [found] = [d for d in documents(name) if d["kind"] == kind]
    return found


def pod_specs() -> list[tuple[str, dict]]:
    return [(name, one(name, "Deployment")["spec"]["template"]) for name in CORE]


def test_every_manifest_in_the_folder_is_checked_here():
    assert sorted(p.name for p in MANIFESTS.glob("*.yaml")) == sorted(CORE)


@pytest.mark.parametrize("name", CORE)
def test_core_objects_pass_the_strict_kubernetes_schema(name):
    for document in documents(name):
        kubernetes_validate.validate(document, K8S_VERSION, strict=True)


# -- grace periods ---------------------------------------------------------------------------
def measured_celery_exit() -> float:
    """The longest time the lab's Celery workers took to exit after their last task finished."""
    return shutdown_exit_seconds(shutdown_lab.RESULTS)["celery"]


def test_the_celery_grace_covers_the_soft_shutdown_and_the_measured_exit():
    deployment = one("celery-worker.yaml", "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    [container] = pod["containers"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["REMAP_SIGTERM"] == "SIGQUIT"  # without it SIGTERM is a warm shutdown, unbounded
    soft = importlib.reload(celery_worker).app.conf.worker_soft_shutdown_timeout  # set on import
    assert soft == celery_worker.SOFT_SHUTDOWN_TIMEOUT == 60.0
    needed = grace_period_needed(longest_job=soft, poll_timeout=0, margin=math.ceil(measured_celery_exit()) + 5)
    assert needed <= pod["terminationGracePeriodSeconds"] <= needed + 15


def test_the_draining_worker_grace_covers_its_drain():
    pod = one("draining-worker.yaml", "Deployment")["spec"]["template"]["spec"]
    [container] = pod["containers"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    poll = DrainingWorker.__init__.__kwdefaults__["poll_timeout"]
    needed = grace_period_needed(longest_job=float(env["LONGEST_JOB_SECONDS"]), poll_timeout=poll)
    assert pod["terminationGracePeriodSeconds"] >= needed
    assert "lifecycle" not in container  # no preStop: the grace has nothing else to cover


# -- who is PID 1 ----------------------------------------------------------------------------
def test_no_container_starts_through_a_shell_or_dumb_init():
    for name, template in pod_specs():
        for container in template["spec"]["containers"]:
            command = container["command"]
            assert command[0] not in {"sh", "/bin/sh", "bash", "/bin/bash", "dumb-init"}, name
            assert "-c" not in command, name


def test_the_celery_command_loads_the_app_with_the_soft_shutdown():
    [container] = one("celery-worker.yaml", "Deployment")["spec"]["template"]["spec"]["containers"]
    command = container["command"]
    assert command[:3] == ["celery", "-A", celery_worker.__name__] and "worker" in command


def test_the_draining_worker_gets_what_its_main_reads():
    template = one("draining-worker.yaml", "Deployment")["spec"]["template"]
    [container] = template["spec"]["containers"]
    assert container["command"] == ["tini", "--", "python", "-m", worker.__name__]
    env = {e["name"]: e for e in container["env"]}
    assert env["POD_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    assert env["POD_NAMESPACE"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.namespace"
    assert {"QUEUE", "HEARTBEAT_FILE", "REDIS_URL"} <= set(env)
    # the service account may patch pods, which is what setting a deletion cost takes
    assert template["spec"]["serviceAccountName"] == one("draining-worker.yaml", "ServiceAccount")["metadata"]["name"]
    binding, role = one("draining-worker.yaml", "RoleBinding"), one("draining-worker.yaml", "Role")
    assert binding["roleRef"]["name"] == role["metadata"]["name"]
    assert binding["subjects"][0]["name"] == template["spec"]["serviceAccountName"]
    assert role["rules"] == [{"apiGroups": [""], "resources": ["pods"], "verbs": ["patch"]}]


def test_the_annotations_are_the_ones_kubernetes_and_the_cluster_autoscaler_read():
    for name, template in pod_specs():
        annotations = template["metadata"]["annotations"]
        assert annotations["cluster-autoscaler.kubernetes.io/safe-to-evict"] == "false", name
    cost = one("draining-worker.yaml", "Deployment")["spec"]["template"]["metadata"]["annotations"]
    assert cost[worker.DELETION_COST] == "0"  # a string holding an integer


# -- probes ----------------------------------------------------------------------------------
def probe(name: str, kind: str) -> list[str]:
    [container] = one(name, "Deployment")["spec"]["template"]["spec"]["containers"]
    return container[kind]["exec"]["command"]


def test_the_celery_probes_check_the_queue_the_worker_consumes():
    [container] = one("celery-worker.yaml", "Deployment")["spec"]["template"]["spec"]["containers"]
    queue = container["command"][container["command"].index("-Q") + 1]
    for kind in ("livenessProbe", "readinessProbe"):
        assert probe("celery-worker.yaml", kind) == ["python", "-m", health.__name__, "celery", queue]
        assert container[kind]["timeoutSeconds"] >= 10  # the check starts Python and asks the broker


def test_the_health_command_refuses_bad_arguments_with_its_usage(capsys):
    assert health.main(["redis"]) == 2
    assert "usage: python -m examples.frameworks.deploys_and_shutdowns.health celery QUEUE" in capsys.readouterr().err


def run_heartbeat_probe(command: list[str], path: Path) -> int:
    return subprocess.run(command, env={**os.environ, "HEARTBEAT_FILE": str(path)}, capture_output=True).returncode


@pytest.mark.parametrize("kind", ["livenessProbe", "readinessProbe"])
def test_the_heartbeat_probe_passes_on_a_fresh_file_and_fails_on_a_stale_or_missing_one(tmp_path, kind):
    command = probe("draining-worker.yaml", kind)
    beat = tmp_path / "worker-heartbeat"
    assert run_heartbeat_probe(command, beat) != 0  # the loop never beat
    beat.touch()
    assert run_heartbeat_probe(command, beat) == 0
    limit = int(re.search(r"-lt (\d+)", command[-1]).group(1))
    old = time.time() - limit - 1
    os.utime(beat, (old, old))
    assert run_heartbeat_probe(command, beat) == 1


def test_the_heartbeat_limit_exceeds_the_longest_job_plus_a_fetch():
    pod = one("draining-worker.yaml", "Deployment")["spec"]["template"]["spec"]
    [container] = pod["containers"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    limit = int(re.search(r"-lt (\d+)", probe("draining-worker.yaml", "livenessProbe")[-1]).group(1))
    assert limit > float(env["LONGEST_JOB_SECONDS"]) + DrainingWorker.__init__.__kwdefaults__["poll_timeout"]


# -- security --------------------------------------------------------------------------------
@pytest.mark.parametrize(("name", "template"), pod_specs(), ids=[n for n, _ in pod_specs()])
def test_pods_fit_the_restricted_pod_security_standard(name, template):
    spec = template["spec"]
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert not {"hostNetwork", "hostPID", "hostIPC"} & set(spec)
    assert all("hostPath" not in v for v in spec.get("volumes", []))
    for container in spec["containers"]:
        context = container["securityContext"]
        assert context["allowPrivilegeEscalation"] is False
        assert context["capabilities"] == {"drop": ["ALL"]}
        assert context["readOnlyRootFilesystem"] is True
        assert not context.get("privileged")


def test_no_manifest_carries_a_secret_value():
    for name in CORE:
        text = (MANIFESTS / name).read_text(encoding="utf-8")
        assert not re.search(r"^\s*(password|requirepass)\s*:", text, re.MULTILINE), name
        # no URL with a credential in it; comments may spell the shape with the word PASSWORD
        assert not re.search(r"rediss?://[^:\s\"]*:(?!PASSWORD@)[^@\s\"]+@", text), name


@pytest.mark.parametrize("name", CORE)
def test_every_pod_takes_the_whole_redis_url_from_a_secret(name):
    """Security review, finding 16: no $(REDIS_PASSWORD) spliced into a URL (tests/_support/pod_env.py)."""
    assert redis_url_problems(one(name, "Deployment")["spec"]["template"]) == []


# -- the image -------------------------------------------------------------------------------
def dockerfile_instruction(name: str) -> list[str]:
    text = (MANIFESTS / "Dockerfile").read_text(encoding="utf-8")
    [line] = [line for line in text.splitlines() if line.startswith(name + " ")]
    return json.loads(line.removeprefix(name + " "))  # exec form: a JSON array, or this fails


def test_the_image_starts_tini_then_the_entry_point_then_the_command():
    entrypoint, cmd = dockerfile_instruction("ENTRYPOINT"), dockerfile_instruction("CMD")
    assert entrypoint == ["tini", "--", "/bin/sh", "/app/entrypoint.sh"]
    assert cmd == ["python", "-m", worker.__name__]
    script = (MANIFESTS / "entrypoint.sh").read_text(encoding="utf-8")
    assert script.rstrip().splitlines()[-1] == 'exec "$@"'
    assert "COPY entrypoint.sh /app/entrypoint.sh" in (MANIFESTS / "Dockerfile").read_text(encoding="utf-8")

