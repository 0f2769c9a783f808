"""Seeded traffic for the incidents lab: jobs for the reliable queue and for Celery."""

from __future__ import annotations

import random
import threading
import time
from dataclasses import dataclass, field

import redis

from examples.envelope import new_job
from examples.fundamentals.delivery_guarantees.queues import ReliableQueue


@dataclass
class Producer:
    """Enqueues ``rate`` jobs a second on the reliable queue and ``celery_rate`` on Celery,
    from one thread, until :meth:`stop`. A job takes ``ms`` milliseconds (seeded, 20 to
    80); a ``poison`` share of them fail every time. Enqueues Redis refuses are counted."""

    queue: ReliableQueue
    seed: int
    rate: float = 10.0
    celery_rate: float = 2.0
    poison: float = 0.0
    refused: dict[str, int] = field(default_factory=lambda: {"reliable": 0, "celery": 0})
    sent: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=10)

    def _run(self) -> None:
        from labs.incidents.celery_worker import send_email

        rng = random.Random(self.seed)
        owed = {"reliable": 0.0, "celery": 0.0}
        tick = 0.1
        while not self._stop.wait(tick):
            owed["reliable"] += self.rate * tick
            owed["celery"] += self.celery_rate * tick
            while owed["reliable"] >= 1:
                owed["reliable"] -= 1
                args = {"ms": rng.randint(20, 80), "fail": rng.random() < self.poison}
                try:
                    self.queue.enqueue(new_job("send_email", args))
                    self.sent += 1
                except redis.RedisError:
                    self.refused["reliable"] += 1
            while owed["celery"] >= 1:
                owed["celery"] -= 1
                try:
                    send_email.apply_async(
                        kwargs={"ms": rng.randint(20, 80), "created_at": time.time()},
                        retry=False)
                    self.sent += 1
                except Exception:  # kombu wraps the OOM reply in its own errors
                    self.refused["celery"] += 1
