"""Tests for the KEDA manifest of docs/fundamentals/securing-the-broker.md
(examples/fundamentals/securing_the_broker/keda-scaler-tls.yaml): valid against the KEDA
schema the Kubernetes autoscaling page uses, and set up for TLS with a checked certificate
and the read-only ACL user. The parameter names are those of KEDA v2.20.1's redis scaler
(pkg/scalers/redis_scaler.go: ``username``, ``password``, ``tls`` = ``enable``, ``ca``,
``unsafeSsl`` defaulting to false)."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest
import yaml

from examples.fundamentals.securing_the_broker.acl import ROLES

ROOT = Path(__file__).resolve().parents[3]
MANIFEST = ROOT / "examples" / "fundamentals" / "securing_the_broker" / "keda-scaler-tls.yaml"
KEDA_SCHEMA = ROOT / "tests" / "frameworks" / "fixtures" / "keda-schema.json"


def documents() -> list[dict]:
    return list(yaml.safe_load_all(MANIFEST.read_text(encoding="utf-8")))


@pytest.mark.parametrize("index", [0, 1])
def test_each_document_passes_the_keda_schema(index):
    validator = jsonschema.Draft202012Validator(json.loads(KEDA_SCHEMA.read_text(encoding="utf-8")))
    assert [e.message for e in validator.iter_errors(documents()[index])] == []


def test_tls_is_on_and_the_certificate_is_checked_against_a_ca():
    auth, scaled = documents()
    params = {ref["parameter"]: ref for ref in auth["spec"]["secretTargetRef"]}
    assert set(params) == {"username", "password", "tls", "ca"}
    [trigger] = scaled["spec"]["triggers"]
    assert "unsafeSsl" not in trigger["metadata"]  # KEDA's default: verify
    assert "enableTLS" not in trigger["metadata"]  # KEDA refuses tls in both places
    assert trigger["metadata"]["address"].endswith(":6380")
    assert trigger["authenticationRef"]["name"] == auth["metadata"]["name"]


def test_the_scaler_user_may_read_the_list_keda_watches():
    [trigger] = documents()[1]["spec"]["triggers"]
    list_name = trigger["metadata"]["listName"]
    scaler_keys = [k.replace("QUEUE", "images") for k in ROLES["scaler"].keys]
    assert f"~{list_name}" in scaler_keys  # ~, not %R~: KEDA sends an EVAL (read-write keys)
