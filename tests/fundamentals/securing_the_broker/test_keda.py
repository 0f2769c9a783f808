"""Tests for the KEDA part of docs/fundamentals/securing-the-broker.md, which shows the
autoscaling page's TriggerAuthentication (examples/frameworks/kubernetes_autoscaling/): valid
against the KEDA schema that page uses, set up for TLS with a checked certificate and the
read-only ACL user, who may read every list a trigger watches. The parameter names are those of
KEDA v2.20.1's redis scaler (pkg/scalers/redis_scaler.go: ``username``, ``password``, ``tls`` =
``enable``, ``ca``, ``unsafeSsl`` defaulting to false)."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest
import yaml

from examples.fundamentals.securing_the_broker.acl import ROLES

ROOT = Path(__file__).resolve().parents[3]
MANIFESTS = ROOT / "examples" / "frameworks" / "kubernetes_autoscaling"
KEDA_SCHEMA = ROOT / "tests" / "frameworks" / "fixtures" / "keda-schema.json"
TRIGGERS = ["keda-scaledobject.yaml", "keda-scaledjob.yaml"]


def load(name: str) -> dict:
    return yaml.safe_load((MANIFESTS / name).read_text(encoding="utf-8"))


def test_the_trigger_authentication_passes_the_keda_schema():
    validator = jsonschema.Draft202012Validator(json.loads(KEDA_SCHEMA.read_text(encoding="utf-8")))
    assert [e.message for e in validator.iter_errors(load("keda-triggerauthentication.yaml"))] == []


def test_tls_is_on_and_the_certificate_is_checked_against_a_ca():
    auth = load("keda-triggerauthentication.yaml")
    params = {ref["parameter"]: ref for ref in auth["spec"]["secretTargetRef"]}
    assert set(params) == {"username", "password", "tls", "ca"}
    for name in TRIGGERS:
        [trigger] = load(name)["spec"]["triggers"]
        assert "unsafeSsl" not in trigger["metadata"]  # KEDA's default: verify
        assert "enableTLS" not in trigger["metadata"]  # KEDA refuses tls in both places
        assert trigger["metadata"]["address"].endswith(":6380")
        assert trigger["authenticationRef"]["name"] == auth["metadata"]["name"]


@pytest.mark.parametrize("name", TRIGGERS)
def test_the_scaler_user_may_read_the_list_keda_watches(name):
    [trigger] = load(name)["spec"]["triggers"]
    list_name = trigger["metadata"]["listName"]
    queue = list_name.split("{")[1].split("}")[0]
    scaler_keys = [k.replace("QUEUE", queue) for k in ROLES["scaler"].keys]
    assert f"~{list_name}" in scaler_keys  # ~, not %R~: KEDA sends an EVAL (read-write keys)
