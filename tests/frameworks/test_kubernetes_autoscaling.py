"""Tests for docs/frameworks/kubernetes-autoscaling.md.

Covers the manifests in examples/frameworks/kubernetes_autoscaling/ (core objects against the Kubernetes
schemas with kubernetes-validate, strict, offline; KEDA objects against keda-schema.json)
and the replica simulator labs/autoscaling_sim.py.
"""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path

import jsonschema
import kubernetes_validate
import pytest
import yaml

from labs.autoscaling_sim import (
    SPIKE_KEDA,
    HpaSettings,
    KedaSettings,
    Workload,
    hpa_desired_replicas,
    replay_spike,
    simulate,
)
from examples.frameworks.horizontal_scaling import WorkerSettings, grace_period_needed
from tests._support.pod_env import redis_url_problems
from tests._support.pod_security import restricted_violations

MANIFESTS = Path(__file__).resolve().parents[2] / "examples" / "frameworks" / "kubernetes_autoscaling"
KEDA_SCHEMA = Path(__file__).with_name("fixtures") / "keda-schema.json"
K8S_VERSION = "1.33.0"  # the oldest release these manifests promise to work on
CORE = ["worker-deployment.yaml", "worker-hpa.yaml", "worker-pdb.yaml", "namespace.yaml",
        "redis-networkpolicy.yaml", "worker-networkpolicy.yaml"]
#: Every pod template in the folder, and where it sits in its manifest.
POD_TEMPLATES = {
    "worker-deployment.yaml": lambda d: d["spec"]["template"],
    "keda-scaledjob.yaml": lambda d: d["spec"]["jobTargetRef"]["template"],
}
KEDA = ["keda-scaledobject.yaml", "keda-scaledjob.yaml", "keda-triggerauthentication.yaml"]


def load(name: str) -> dict:
    return yaml.safe_load((MANIFESTS / name).read_text(encoding="utf-8"))


def keda_errors(document: dict) -> list[str]:
    schema = json.loads((KEDA_SCHEMA).read_text(encoding="utf-8"))
    validator = jsonschema.Draft202012Validator(schema)
    return sorted({f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(document)})


def k8s_validate(document: dict) -> None:
    kubernetes_validate.validate(document, K8S_VERSION, strict=True)


# -- manifests ------------------------------------------------------------------------------
def test_every_manifest_in_the_folder_is_checked_here():
    assert sorted(p.name for p in MANIFESTS.glob("*.yaml")) == sorted(CORE + KEDA)


@pytest.mark.parametrize("name", CORE)
def test_core_objects_pass_the_strict_kubernetes_schema(name):
    k8s_validate(load(name))


def test_strict_validation_catches_a_misspelled_core_field():
    deployment = load("worker-deployment.yaml")
    spec = deployment["spec"]["template"]["spec"]
    spec["terminationGracePeriodSecond"] = spec.pop("terminationGracePeriodSeconds")
    with pytest.raises(kubernetes_validate.ValidationError, match="terminationGracePeriodSecond"):
        k8s_validate(deployment)


def test_the_keda_schema_is_itself_a_valid_json_schema():
    schema = json.loads((KEDA_SCHEMA).read_text(encoding="utf-8"))
    jsonschema.Draft202012Validator.check_schema(schema)


@pytest.mark.parametrize("name", KEDA)
def test_keda_objects_pass_the_keda_schema(name):
    assert keda_errors(load(name)) == []


@pytest.mark.parametrize(
    ("name", "mutate", "error"),
    [
        ("keda-scaledobject.yaml", lambda d: d["spec"].__setitem__("cooldownPeriods", 300),
         "spec: Additional properties are not allowed ('cooldownPeriods' was unexpected)"),
        ("keda-scaledobject.yaml", lambda d: d["spec"]["triggers"][0]["metadata"].__setitem__("listLenght", "10"),
         "spec/triggers/0/metadata: Additional properties are not allowed ('listLenght' was unexpected)"),
        ("keda-scaledobject.yaml", lambda d: d["spec"]["triggers"][0]["metadata"].__setitem__("listLength", 10),
         "spec/triggers/0/metadata/listLength: 10 is not of type 'string'"),
        ("keda-scaledobject.yaml", lambda d: d["spec"]["triggers"][0].__setitem__("authRef", {"name": "x"}),
         "spec/triggers/0: Additional properties are not allowed ('authRef' was unexpected)"),
        ("keda-scaledjob.yaml", lambda d: d["spec"]["scalingStrategy"].__setitem__("strategy", "greedy"),
         "spec/scalingStrategy/strategy: 'greedy' is not one of ['default', 'custom', 'accurate', 'eager']"),
        ("keda-triggerauthentication.yaml", lambda d: d["spec"]["secretTargetRef"][0].pop("key"),
         "spec/secretTargetRef/0: 'key' is a required property"),
    ],
)
def test_the_keda_schema_rejects_misspellings_and_wrong_types(name, mutate, error):
    document = copy.deepcopy(load(name))
    mutate(document)
    assert keda_errors(document) == [error]


def test_the_scaled_job_lets_running_jobs_finish_when_it_is_updated():
    """The default rollout strategy terminates running Jobs when the ScaledJob changes (a deploy)."""
    scaled = load("keda-scaledjob.yaml")
    assert scaled["spec"]["rollout"] == {"strategy": "gradual"}
    scaled["spec"]["rollout"]["strategy"] = "gradually"
    assert keda_errors(scaled) == ["spec/rollout/strategy: 'gradually' is not one of ['default', 'gradual']"]


def test_nested_kubernetes_types_in_keda_objects_are_validated_too():
    job_spec = load("keda-scaledjob.yaml")["spec"]["jobTargetRef"]
    k8s_validate({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "x"}, "spec": job_spec})
    behavior = load("keda-scaledobject.yaml")["spec"]["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]
    hpa = load("worker-hpa.yaml")
    hpa["spec"]["behavior"] = behavior
    k8s_validate(hpa)


def test_the_scaled_object_points_at_the_deployment_and_its_queue():
    scaled, deployment = load("keda-scaledobject.yaml"), load("worker-deployment.yaml")
    assert scaled["spec"]["scaleTargetRef"]["name"] == deployment["metadata"]["name"]
    trigger = scaled["spec"]["triggers"][0]
    env = {e["name"]: e.get("value") for e in deployment["spec"]["template"]["spec"]["containers"][0]["env"]}
    queue = env["WORKER_QUEUE"]
    assert trigger["metadata"]["listName"] == f"q:{{{queue}}}:pending"  # ReliableQueue's key
    auth = load("keda-triggerauthentication.yaml")
    assert trigger["authenticationRef"]["name"] == auth["metadata"]["name"]


@pytest.mark.parametrize("name", ["keda-scaledobject.yaml", "keda-scaledjob.yaml"])
def test_keda_reads_the_queue_over_tls_as_the_read_only_user(name):
    """Security review, finding 4: the triggers spoke plain redis:// on 6379 with the shared
    password. KEDA v2.20.1's redis scaler (pkg/scalers/redis_scaler.go) takes username,
    password, tls=enable and ca from the TriggerAuthentication, and verifies unless unsafeSsl."""
    auth = load("keda-triggerauthentication.yaml")
    params = {ref["parameter"]: ref for ref in auth["spec"]["secretTargetRef"]}
    assert set(params) == {"username", "password", "tls", "ca"}
    assert {ref["name"] for ref in params.values()} == {auth["metadata"]["name"]}  # one Secret
    [trigger] = load(name)["spec"]["triggers"]
    assert trigger["authenticationRef"]["name"] == auth["metadata"]["name"]
    assert trigger["metadata"]["address"].endswith(":6380")
    assert not {"unsafeSsl", "enableTLS", "password", "username"} & set(trigger["metadata"])


def test_the_worker_container_starts_the_module_with_settings_from_its_environment():
    container = load("worker-deployment.yaml")["spec"]["template"]["spec"]["containers"][0]
    assert container["args"] == ["python", "-m", "examples.frameworks.horizontal_scaling"]
    env = {e["name"]: e["value"] for e in container["env"] if "value" in e}
    assert "WORKER_ID" not in env  # each process makes a new id: a restart never reuses one
    settings = WorkerSettings.from_env(env)
    assert (settings.queue, settings.prefetch) == ("images", 1)


def test_the_grace_period_covers_the_drain_budget():
    pod = load("worker-deployment.yaml")["spec"]["template"]["spec"]
    container = pod["containers"][0]
    env = {e["name"]: e.get("value") for e in container["env"]}
    pre_stop = container["lifecycle"]["preStop"]["exec"]["command"]
    assert pre_stop[0] == "sleep"
    needed = grace_period_needed(
        longest_job=float(env["LONGEST_JOB_SECONDS"]), poll_timeout=1.0, pre_stop=float(pre_stop[1])
    )
    assert pod["terminationGracePeriodSeconds"] >= needed


def test_no_manifest_carries_a_secret_value():
    for name in CORE + KEDA:
        text = (MANIFESTS / name).read_text(encoding="utf-8")
        assert not re.search(r"^\s*(password|requirepass)\s*:", text, re.MULTILINE), name
        # no URL with a credential in it; comments may spell the shape with the word PASSWORD
        assert not re.search(r"rediss?://[^:\s\"]*:(?!PASSWORD@)[^@\s\"]+@", text), name


@pytest.mark.parametrize("name", sorted(POD_TEMPLATES))
def test_every_pod_takes_the_whole_redis_url_from_a_secret(name):
    """Security review, finding 16: the password was spliced into REDIS_URL with $(VAR),
    unencoded (tests/_support/pod_env.py says what the check refuses)."""
    assert redis_url_problems(POD_TEMPLATES[name](load(name))) == []


def test_the_url_check_refuses_the_old_splice():
    template = copy.deepcopy(load("worker-deployment.yaml")["spec"]["template"])
    [container] = template["spec"]["containers"]
    container["env"] = [e for e in container["env"] if e["name"] != "REDIS_URL"] + [
        {"name": "REDIS_PASSWORD", "valueFrom": {"secretKeyRef": {"name": "redis-auth", "key": "password"}}},
        {"name": "REDIS_URL", "value": "redis://:$(REDIS_PASSWORD)@redis.jobs.svc.cluster.local:6379/0"},
    ]
    assert redis_url_problems(template) == [
        "worker: REDIS_URL is not the whole URL from a Secret (key: url)",
        "worker: REDIS_PASSWORD splices or holds a credential",
        "worker: REDIS_URL splices or holds a credential",
    ]


# -- Pod Security Standards, restricted (security review, finding 6) -----------------------
@pytest.mark.parametrize("name", sorted(POD_TEMPLATES))
def test_every_pod_template_meets_the_restricted_profile(name):
    template = POD_TEMPLATES[name](load(name))
    assert restricted_violations(template) == []
    assert template["spec"]["automountServiceAccountToken"] is False  # no API token in the pod


def has_containers(node: object) -> bool:
    if isinstance(node, dict):
        return "containers" in node or any(has_containers(v) for v in node.values())
    return isinstance(node, list) and any(has_containers(v) for v in node)


def test_every_pod_template_in_the_folder_is_checked():
    assert {n for n in CORE + KEDA if has_containers(load(n))} == set(POD_TEMPLATES)


@pytest.mark.parametrize(
    ("mutate", "control"),
    [
        # what the manifests lacked before: the worker dropped no capability and named no seccomp
        # profile; the ScaledJob's container had no securityContext at all
        (lambda pod, c: c["securityContext"].pop("capabilities"), 'Capabilities: worker must drop ["ALL"]'),
        (lambda pod, c: pod["securityContext"].pop("seccompProfile"), "Seccomp: pod or worker must set"),
        (lambda pod, c: c.pop("securityContext"), "Privilege Escalation: worker"),
        (lambda pod, c: pod["securityContext"].pop("runAsNonRoot"),
         "Running as Non-root: pod or worker must set runAsNonRoot true"),
        (lambda pod, c: c["securityContext"].__setitem__("runAsUser", 0), "Running as Non-root user: worker"),
        (lambda pod, c: c["securityContext"]["capabilities"].__setitem__("add", ["NET_ADMIN"]),
         "Capabilities: worker may add only NET_BIND_SERVICE"),
        (lambda pod, c: c["securityContext"].__setitem__("privileged", True), "Privileged Containers: worker"),
        (lambda pod, c: pod.__setitem__("hostNetwork", True), "Host Namespaces: spec.hostNetwork"),
        (lambda pod, c: pod.setdefault("volumes", []).append({"name": "docker", "hostPath": {"path": "/var/run"}}),
         "Volume Types: volume 'docker' is ['hostPath']"),
        (lambda pod, c: c.setdefault("ports", []).append({"containerPort": 80, "hostPort": 80}), "Host Ports: worker"),
        (lambda pod, c: pod["securityContext"]["seccompProfile"].__setitem__("type", "Unconfined"),
         "Seccomp: the pod's profile is Unconfined"),
    ],
)
def test_the_restricted_check_catches_each_rule(mutate, control):
    template = copy.deepcopy(load("worker-deployment.yaml")["spec"]["template"])
    mutate(template["spec"], template["spec"]["containers"][0])
    assert any(v.startswith(control) for v in restricted_violations(template)), restricted_violations(template)


def test_the_namespace_enforces_the_restricted_profile():
    labels = load("namespace.yaml")["metadata"]["labels"]
    for mode in ("enforce", "warn", "audit"):
        assert labels[f"pod-security.kubernetes.io/{mode}"] == "restricted"
        assert labels[f"pod-security.kubernetes.io/{mode}-version"] == "v" + K8S_VERSION.rsplit(".", 1)[0]
    namespaces = {load(n)["metadata"].get("namespace") for n in CORE + KEDA} - {None}
    assert namespaces == {load("namespace.yaml")["metadata"]["name"]}


def selects(selector: dict, labels: dict[str, str]) -> bool:
    """A Kubernetes label selector (matchLabels, matchExpressions with In) applied to ``labels``."""
    if any(labels.get(k) != v for k, v in selector.get("matchLabels", {}).items()):
        return False
    for expression in selector.get("matchExpressions", []):
        assert expression["operator"] == "In", "this helper knows In only"
        if labels.get(expression["key"]) not in expression["values"]:
            return False
    return True


def pod_labels(name: str) -> dict[str, str]:
    return POD_TEMPLATES[name](load(name))["metadata"]["labels"]


def test_only_the_job_system_reaches_redis():
    policy = load("redis-networkpolicy.yaml")["spec"]
    assert policy["policyTypes"] == ["Ingress"] and selects(policy["podSelector"], {"app.kubernetes.io/name": "redis"})
    [rule] = policy["ingress"]
    assert rule["ports"] == [{"protocol": "TCP", "port": 6380}]  # the TLS port
    same_namespace = [peer["podSelector"] for peer in rule["from"] if "namespaceSelector" not in peer]
    for name in POD_TEMPLATES:  # both kinds of worker pod are admitted...
        assert any(selects(sel, pod_labels(name)) for sel in same_namespace), name
    # ...and a pod of another application is not
    assert not any(selects(sel, {"app.kubernetes.io/name": "reporting"}) for sel in same_namespace)
    [keda] = [peer for peer in rule["from"] if "namespaceSelector" in peer]
    assert keda["namespaceSelector"]["matchLabels"] == {"kubernetes.io/metadata.name": "keda"}


def test_workers_may_connect_to_redis_and_dns_only():
    policy = load("worker-networkpolicy.yaml")["spec"]
    assert policy["policyTypes"] == ["Egress"]
    for name in POD_TEMPLATES:
        assert selects(policy["podSelector"], pod_labels(name)), name
    redis_rule, dns_rule = policy["egress"]
    assert redis_rule["to"] == [{"podSelector": {"matchLabels": {"app.kubernetes.io/name": "redis"}}}]
    assert redis_rule["ports"] == [{"protocol": "TCP", "port": 6380}]
    assert {p["protocol"] for p in dns_rule["ports"]} == {"UDP", "TCP"} and {p["port"] for p in dns_rule["ports"]} == {53}
    assert all("ipBlock" not in peer for rule in policy["egress"] for peer in rule["to"])  # no address range


# -- defaults the simulator relies on -------------------------------------------------------
def test_hpa_defaults_match_the_kubernetes_api_schema():
    """The API's own field descriptions, shipped with kubernetes-validate, state the defaults."""
    schema_dir = Path(kubernetes_validate.__file__).parent / "kubernetes-json-schema" / "v1.33.0-local-strict"
    rules = json.loads((schema_dir / "hpascalingrules-autoscaling-v2.json").read_text(encoding="utf-8"))["properties"]
    window = rules["stabilizationWindowSeconds"]["description"]
    hpa = HpaSettings()
    assert f"For scale up: {hpa.scale_up_stabilization} " in window
    assert f"For scale down: {hpa.scale_down_stabilization} " in window
    assert f"by default {round(hpa.tolerance * 100)}%" in rules["tolerance"]["description"]
    policies = rules["policies"]["description"]
    assert hpa.scale_up_percent == 100 and "allow doubling the number of pods" in policies
    assert f"an absolute change of {hpa.scale_up_pods} pods in a {hpa.sync_period}s window" in policies


def test_keda_defaults_match_the_schema_kept_in_the_repository():
    schema = json.loads((KEDA_SCHEMA).read_text(encoding="utf-8"))["$defs"]
    spec = schema["scaledObjectSpec"]["properties"]
    keda = KedaSettings()
    assert spec["pollingInterval"]["default"] == keda.polling_interval == 30
    assert spec["cooldownPeriod"]["default"] == keda.cooldown_period == 300
    assert spec["minReplicaCount"]["default"] == keda.min_replica_count == 0
    assert spec["maxReplicaCount"]["default"] == keda.max_replica_count == 100
    redis_meta = schema["trigger"]["allOf"][0]["then"]["properties"]["metadata"]["properties"]
    assert redis_meta["listLength"]["default"] == str(keda.list_length) == "5"
    assert redis_meta["activationListLength"]["default"] == str(keda.activation_list_length) == "0"


# -- the HPA formula ------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("current", "metric", "target", "expected"),
    [
        (4, 40, 10, 4),  # exactly on target
        (4, 44, 10, 4),  # ratio 1.1: on the edge of the tolerance, which is inclusive: no change
        (4, 36, 10, 4),  # ratio 0.9: inside the tolerance
        (4, 45, 10, 5),  # ratio 1.125: ceil(45 / 10)
        (4, 35, 10, 4),  # ratio 0.875: ceil(3.5) = 4
        (4, 200, 10, 20),
        (10, 0, 10, 0),  # the HPA proposes 0; minReplicas (>= 1) then applies
    ],
)
def test_hpa_proposal(current, metric, target, expected):
    assert hpa_desired_replicas(current, metric, target) == expected


def test_a_smaller_tolerance_reacts_to_smaller_changes():
    assert hpa_desired_replicas(4, 43, 10, tolerance=0.05) == 5


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: hpa_desired_replicas(0, 10, 5), "current must be >= 1, got 0"),
        (lambda: hpa_desired_replicas(2, -1, 5), "metric_total must be >= 0, got -1"),
        (lambda: hpa_desired_replicas(2, 1, 0), "target_per_replica must be > 0, got 0"),
        (lambda: hpa_desired_replicas(2, 1, 5, tolerance=-0.1), "tolerance must be >= 0, got -0.1"),
        (lambda: simulate(lambda t: -1.0, Workload(1), duration=5), r"arrival_rate\(0\) must be >= 0, got -1.0"),
        (lambda: simulate(lambda t: 1.0, Workload(0), duration=5), "per_replica_rate must be > 0, got 0"),
        (lambda: simulate(lambda t: 1.0, Workload(1), duration=5, keda=KedaSettings(polling_interval=0)),
         "polling_interval must be > 0, got 0"),
        (lambda: simulate(lambda t: 1.0, Workload(1), duration=5, keda=KedaSettings(min_replica_count=5, max_replica_count=2)),
         "need 0 <= minReplicaCount <= maxReplicaCount"),
    ],
)
def test_bad_input_is_refused(call, message):
    with pytest.raises(ValueError, match=message):
        call()


# -- the simulator --------------------------------------------------------------------------
@pytest.fixture(scope="module")
def spike():
    return replay_spike()


def first(times, predicate):
    return next(t for t in times if predicate(t))


def test_the_replay_is_seeded_and_conserves_jobs(spike):
    again = replay_spike()
    assert (again.arrivals, again.replicas) == (spike.arrivals, spike.replicas)
    assert sum(spike.arrivals) == sum(spike.served) + spike.depth[-1]


def test_scale_from_zero_waits_for_a_keda_poll(spike):
    first_job = first(spike.t, lambda t: spike.depth[t] > 0)
    woke = first(spike.t, lambda t: spike.replicas[t] > 0)
    assert woke % SPIKE_KEDA.polling_interval == 0  # only KEDA scales 0 -> 1, and only when it polls
    assert first_job <= woke < first_job + SPIKE_KEDA.polling_interval
    assert spike.replicas[woke] == 1


def test_scale_up_is_limited_to_double_or_plus_four_per_period(spike):
    changes = [(t, spike.replicas[t - 1], spike.replicas[t]) for t in spike.t[1:] if spike.replicas[t] > spike.replicas[t - 1]]
    for t, before, after in changes:
        if before:
            assert after <= before + max(before, 4), (t, before, after)
    assert max(spike.replicas) == SPIKE_KEDA.max_replica_count


def held_at_peak(timeline) -> int:
    """Seconds from first reaching maxReplicaCount to the first step down from it."""
    top = SPIKE_KEDA.max_replica_count
    reached = first(timeline.t, lambda t: timeline.replicas[t] == top)
    return first(range(reached, len(timeline.t)), lambda t: timeline.replicas[t] < top) - reached


def test_scale_down_waits_out_the_stabilization_window(spike):
    window = HpaSettings().scale_down_stabilization
    assert held_at_peak(spike) >= window - HpaSettings().sync_period
    flappy = replay_spike(hpa=HpaSettings(scale_down_stabilization=0))
    assert held_at_peak(flappy) < window - HpaSettings().sync_period
    # without the window the fleet saws up and down, and each step down removes busy workers
    steps = lambda tl: sum(1 for t in tl.t[1:] if tl.replicas[t] != tl.replicas[t - 1])
    assert steps(flappy) > 3 * steps(spike)
    assert flappy.busy_replicas_removed > 10 * max(1, spike.busy_replicas_removed)


def test_scale_to_zero_only_after_the_cooldown(spike):
    zeros = [t for t in spike.t[1:] if spike.replicas[t] == 0 and spike.replicas[t - 1] > 0]
    assert zeros, "the fleet never scaled to zero"
    for t in zeros:
        last_active = max(s for s in range(0, t, SPIKE_KEDA.polling_interval) if spike.depth[s] > 0)
        assert t - last_active >= SPIKE_KEDA.cooldown_period


def test_a_queue_its_workers_keep_empty_looks_idle_and_is_scaled_to_zero(spike):
    """The trap of row 25: LLEN is 0 between polls while work still trickles in."""
    trickle = range(560, 900)
    assert any(spike.replicas[t] == 0 for t in trickle) and min(spike.arrival_rate[t] for t in trickle) > 0
    backlog = max(spike.depth[t] for t in trickle)
    kept_warm = replay_spike(keda=KedaSettings(list_length=10, max_replica_count=30, min_replica_count=1))
    assert all(kept_warm.replicas[t] >= 1 for t in trickle)
    assert max(kept_warm.depth[t] for t in trickle) < backlog / 2


def test_activation_threshold_keeps_a_trickle_at_zero():
    quiet = simulate(lambda t: 0.05, Workload(1), duration=600, keda=KedaSettings(activation_list_length=50), seed=3)
    assert max(quiet.replicas) == 0 and quiet.depth[-1] == sum(quiet.arrivals)
