"""Worker programs of the shutdown lab (:mod:`labs.shutdown_lab`), one per framework.

Each runs the framework's real worker with the handbook's settings and one job, ``lab``, that
records its start and its end in Redis (hashes ``lab:starts`` and ``lab:finishes``, keyed by
job id) and in between works for the number of seconds it was given, times
``LAB_TIME_SCALE`` (1 during the rollout, 0 for the next pod that drains what is left).
"""

STARTS = "lab:starts"
FINISHES = "lab:finishes"
QUEUE = "lab"
