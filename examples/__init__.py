"""Runnable, tested code behind the handbook *Task Queues & Async Job Processing*.

The package is organised like the handbook: :mod:`examples.fundamentals`,
:mod:`examples.frameworks` and :mod:`examples.observability` hold one module per page,
and three small modules at the bottom are the floor every page stands on:

* :mod:`examples.redis_client` makes a Redis client from ``REDIS_URL``;
* :mod:`examples.envelope` is the job envelope that goes on the wire;
* :mod:`examples.clock` is the injectable clock that keeps time-based tests exact.
"""
