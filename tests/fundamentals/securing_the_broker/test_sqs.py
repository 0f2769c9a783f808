"""Tests for the SQS part of docs/fundamentals/securing-the-broker.md
(examples/fundamentals/securing_the_broker/sqs.py).

No AWS account is reachable here: moto emulates SQS, KMS and IAM in process. moto can also
check IAM policies: the ``aws`` fixture lets the setup calls through, then switches the
checks on, so that every call a test makes as ``producer`` or ``worker`` is allowed or
denied by the policy :func:`role_policy` wrote.
"""

from __future__ import annotations

import json

import boto3
import moto
import pytest
from botocore.exceptions import ClientError
from moto.core import authorization

from examples.clock import FakeClock
from examples.envelope import new_job
from examples.fundamentals.broker_topology.sqs import SqsWorker, send_job
from examples.fundamentals.securing_the_broker.sqs import (
    ROLE_ACTIONS,
    create_encrypted_queue,
    role_policy,
    tls_only,
)

REGION = "eu-west-1"


@pytest.fixture
def aws(monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")  # moto's fake credentials, not secrets
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setattr(moto.settings, "INITIAL_NO_AUTH_ACTION_COUNT", float("inf"))
    monkeypatch.setattr(authorization.ActionAuthenticatorMixin, "request_count", 0)
    with moto.mock_aws():
        yield boto3.client("sqs", region_name=REGION)


def enforce_iam(monkeypatch) -> None:
    """From now on, every request needs credentials whose policy allows it."""
    done = authorization.ActionAuthenticatorMixin.request_count
    monkeypatch.setattr(moto.settings, "INITIAL_NO_AUTH_ACTION_COUNT", done)


def client_for(role: str, queue_arn: str):
    iam = boto3.client("iam", region_name=REGION)
    iam.create_user(UserName=role)
    iam.put_user_policy(UserName=role, PolicyName="job-queue",
                        PolicyDocument=json.dumps(role_policy(role, queue_arn)))
    key = iam.create_access_key(UserName=role)["AccessKey"]
    return boto3.client("sqs", region_name=REGION, aws_access_key_id=key["AccessKeyId"],
                        aws_secret_access_key=key["SecretAccessKey"])


def arn_of(sqs, url: str) -> str:
    return sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]


def job(i: int):
    return new_job("resize", {"image": i}, clock=FakeClock(0), job_id=f"img-{i}")


# -- encryption and the queue policy ----------------------------------------------------------
def test_the_queue_is_encrypted_with_sqs_owned_keys(aws):
    url = create_encrypted_queue(aws, "images")
    attrs = aws.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    assert attrs["SqsManagedSseEnabled"] == "true"
    assert json.loads(attrs["Policy"]) == tls_only(attrs["QueueArn"])


def test_the_queue_is_encrypted_with_your_kms_key(aws):
    key = boto3.client("kms", region_name=REGION).create_key(Description="job queue")["KeyMetadata"]
    url = create_encrypted_queue(aws, "images", kms_key_id=key["Arn"])
    attrs = aws.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    assert attrs["KmsMasterKeyId"] == key["Arn"]


def test_the_queue_policy_denies_every_request_without_tls():
    [statement] = tls_only("arn:aws:sqs:eu-west-1:123456789012:images")["Statement"]
    assert statement["Effect"] == "Deny" and statement["Principal"] == "*"
    assert statement["Action"] == "sqs:*"
    assert statement["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}


# -- the IAM policies -------------------------------------------------------------------------
@pytest.mark.parametrize("role", ROLE_ACTIONS)
def test_each_policy_allows_named_actions_on_one_queue_only(role):
    arn = "arn:aws:sqs:eu-west-1:123456789012:images"
    policy = role_policy(role, arn)
    assert policy["Version"] == "2012-10-17"
    [statement] = policy["Statement"]
    assert statement["Effect"] == "Allow" and statement["Resource"] == arn
    assert all(action.startswith("sqs:") and "*" not in action for action in statement["Action"])
    assert set(statement) == {"Sid", "Effect", "Action", "Resource"}  # no NotAction, no Principal


def test_the_producer_can_send_and_nothing_else(aws, monkeypatch):
    url = create_encrypted_queue(aws, "images")
    other = aws.create_queue(QueueName="billing")["QueueUrl"]
    producer = client_for("producer", arn_of(aws, url))
    enforce_iam(monkeypatch)
    send_job(producer, url, job(1))
    for call in (
        lambda: producer.receive_message(QueueUrl=url),
        lambda: producer.purge_queue(QueueUrl=url),
        lambda: producer.delete_queue(QueueUrl=url),
        lambda: producer.set_queue_attributes(QueueUrl=url, Attributes={"Policy": ""}),
        lambda: send_job(producer, other, job(2)),
    ):
        with pytest.raises(ClientError) as refused:
            call()
        assert refused.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403


def test_the_worker_can_take_extend_and_ack_and_nothing_else(aws, monkeypatch):
    url = create_encrypted_queue(aws, "images")
    send_job(aws, url, job(1))
    send_job(aws, url, job(2))
    worker = SqsWorker(client_for("worker", arn_of(aws, url)), url)
    enforce_iam(monkeypatch)
    done = []
    assert worker.work_one(lambda j: done.append(j.id))  # receive, delete
    [delivery] = worker.receive()
    worker.extend(delivery, 60)  # ChangeMessageVisibility
    worker.ack(delivery)
    assert done == ["img-1"]
    for call in (
        lambda: send_job(worker.sqs, url, job(3)),  # a compromised worker cannot forge jobs
        lambda: worker.sqs.purge_queue(QueueUrl=url),
        lambda: worker.sqs.delete_queue(QueueUrl=url),
    ):
        with pytest.raises(ClientError) as refused:
            call()
        assert refused.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
