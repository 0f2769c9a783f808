"""SQS queues encrypted at rest, reachable over TLS only, and one IAM policy per role.

This module is the code behind the SQS part of the page *Secure the broker*
(``docs/fundamentals/securing-the-broker.md``). It complements
:func:`examples.fundamentals.broker_topology.sqs.create_job_queue` (visibility timeout,
dead-letter queue) with the security attributes; its tests run it against moto's emulation
of SQS and IAM, with moto's IAM checks switched on.

>>> arn = "arn:aws:sqs:eu-west-1:123456789012:images"
>>> role_policy("producer", arn)["Statement"][0]["Action"]
['sqs:SendMessage']
>>> role_policy("admin", arn)
Traceback (most recent call last):
...
ValueError: unknown role 'admin' (producer, worker)
"""

# [start:imports]
from __future__ import annotations

import json
from typing import Any
# [end:imports]


# [start:encrypted-queue]
def create_encrypted_queue(sqs: Any, name: str, *, kms_key_id: str | None = None) -> str:
    """Create queue ``name``, encrypted at rest and refusing requests without TLS; return
    its URL.

    Encryption uses SQS-owned keys (SSE-SQS), or your KMS key if ``kms_key_id`` is given
    (SSE-KMS: the key's policy then decides who may read the queue, per tenant if you like).
    """
    encryption = (
        {"KmsMasterKeyId": kms_key_id} if kms_key_id else {"SqsManagedSseEnabled": "true"}
    )
    url = sqs.create_queue(QueueName=name, Attributes=encryption)["QueueUrl"]
    arn = sqs.get_queue_attributes(
        QueueUrl=url, AttributeNames=["QueueArn"]
    )["Attributes"]["QueueArn"]
    sqs.set_queue_attributes(QueueUrl=url, Attributes={"Policy": json.dumps(tls_only(arn))})
    return url


def tls_only(queue_arn: str) -> dict:
    """A queue policy that denies every request made without TLS, whoever makes it."""
    return {
        "Version": "2012-10-17",
        "Statement": [{
            "Sid": "DenyPlaintext",
            "Effect": "Deny",
            "Principal": "*",
            "Action": "sqs:*",
            "Resource": queue_arn,
            "Condition": {"Bool": {"aws:SecureTransport": "false"}},
        }],
    }
# [end:encrypted-queue]


# [start:iam]
ROLE_ACTIONS = {
    # SqsWorker's calls: receive (the lease), extend it or hide a failed job for its backoff
    # (ChangeMessageVisibility), delete (the ack).
    "producer": ["sqs:SendMessage"],
    "worker": ["sqs:ReceiveMessage", "sqs:ChangeMessageVisibility", "sqs:DeleteMessage"],
}


def role_policy(role: str, queue_arn: str) -> dict:
    """The IAM policy of ``role`` on one queue: nothing else, on no other queue."""
    if role not in ROLE_ACTIONS:
        raise ValueError(f"unknown role {role!r} ({', '.join(ROLE_ACTIONS)})")
    return {
        "Version": "2012-10-17",
        "Statement": [{
            "Sid": f"JobQueue{role.capitalize()}",
            "Effect": "Allow",
            "Action": ROLE_ACTIONS[role],
            "Resource": queue_arn,
        }],
    }
# [end:iam]
