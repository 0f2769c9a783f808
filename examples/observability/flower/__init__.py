"""Flower for Celery in production: the code behind ``docs/observability/flower.md``.

:mod:`~examples.observability.flower.celery_app` is a minimal Celery app that sends task
events; :mod:`~examples.observability.flower.flowerconfig` is a Flower configuration file
that refuses to start without authentication.
"""
