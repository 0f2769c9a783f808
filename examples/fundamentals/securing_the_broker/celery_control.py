"""Who may command Celery workers through the broker, and how a worker tells a genuine message.

This module is the code behind the Celery part of the page *Secure the broker*
(``docs/fundamentals/securing-the-broker.md``). By default (Celery 5.7) every worker listens
on a broadcast queue for remote-control commands (``shutdown``, ``revoke``, ``rate_limit``,
``time_limit``, ``add_consumer``...) and obeys any well-formed one: whoever can publish to the
broker commands the whole fleet. Two answers, which combine:

* :func:`without_remote_control`: the worker does not consume the broadcast queue at all.
  Stop workers with your process manager (SIGTERM) instead, and check liveness with a
  heartbeat file rather than ``celery inspect ping``.
* :func:`sign_messages`: the worker accepts only messages signed with a private key whose
  certificate is in its store. This covers task messages, remote-control commands and
  events; it does not encrypt them.
"""

# [start:imports]
from __future__ import annotations

from celery import Celery
# [end:imports]


# [start:no-remote-control]
def without_remote_control(app: Celery) -> None:
    """Workers that take no orders over the broker: no shutdown, revoke or rate_limit."""
    app.conf.worker_enable_remote_control = False
# [end:no-remote-control]


# [start:sign-messages]
def sign_messages(app: Celery, *, key: str, certificate: str, cert_store: str) -> None:
    """Sign what this process sends, and accept only what a trusted certificate signed.

    ``key`` and ``certificate`` are this process's RSA private key and certificate (files,
    mounted from your secret store); ``cert_store`` is a directory or glob of the
    certificates of every process allowed to send.
    """
    app.conf.update(
        task_serializer="auth",  # tasks and remote-control commands
        result_serializer="auth",
        event_serializer="auth",
        accept_content=["auth"],  # unsigned messages are refused
        result_accept_content=["auth"],
        security_key=key,
        security_certificate=certificate,
        security_cert_store=cert_store,
        security_digest="sha256",
    )
    app.setup_security()  # registers "auth"; disables every other serializer for decoding
# [end:sign-messages]
