"""The code of the page *Secure the broker* (``docs/fundamentals/securing-the-broker.md``):
Redis ACL users per role, TLS with certificate verification, Celery's control plane and
message signing, RabbitMQ permissions, SQS encryption and IAM, a protected Sidekiq Web UI
and a metrics endpoint that listens where it should.
"""
