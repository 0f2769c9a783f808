"""Runnable, tested code behind the handbook *Task Queues & Async Job Processing*.

The package mirrors the handbook: for the page ``docs/<track>/<page>.md`` the code it shows is
``examples/<track>/<page>.py``, or a folder ``examples/<track>/<page>/`` when the page shows
several files, and its tests are ``tests/<track>/test_<page>.py`` or ``tests/<track>/<page>/``
(``tests/test_layout.py`` checks this). Every file here is a pattern a reader can copy;
the instruments that measure the patterns (failure lab, benchmarks, experiments, simulators)
live in the separate package ``labs``. Four small modules at the bottom are the floor every
page stands on:

* :mod:`examples.redis_client` makes a Redis client from ``REDIS_URL``;
* :mod:`examples.envelope` is the job envelope that goes on the wire;
* :mod:`examples.clock` is the injectable clock that keeps time-based tests exact;
* :mod:`examples.dead_letters` is the dead-letter list every queue design keeps, in one
  record format, and the check on the names that go into keys.
"""
