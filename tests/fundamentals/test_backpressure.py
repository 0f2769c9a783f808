"""Tests for docs/fundamentals/backpressure.md (examples/fundamentals/backpressure.py)."""

from __future__ import annotations

import heapq
import random
import secrets
import tempfile
import threading

import pytest

from examples.clock import FakeClock
from examples.envelope import new_job
from examples.fundamentals.backpressure import (
    BoundedQueue,
    BrokerOutOfMemory,
    FreshQueue,
    QueueFull,
    QueueTooOld,
    TokenBucket,
    littles_law,
    past_deadline,
    queue_bound,
    with_deadline,
    workers_needed,
)
from examples.fundamentals.delivery_guarantees.queues import ReliableQueue
from labs.versions import server_line

CLOCK = FakeClock(0)


def job(i):
    return new_job("work", {"n": i}, clock=CLOCK, job_id=f"job-{i}")


# -- bounded enqueue ------------------------------------------------------------------------
def test_bounded_queue_never_exceeds_its_bound_under_concurrent_producers(r):
    q = BoundedQueue(r, "ingest", max_pending=50)
    accepted, refused, consumed, peak = [0], [0], [0], [0]
    lock = threading.Lock()
    done = threading.Event()

    def producer(p: int) -> None:
        for i in range(150):
            try:
                q.enqueue(job(f"{p}-{i}"))
                with lock:
                    accepted[0] += 1
            except QueueFull:
                with lock:
                    refused[0] += 1

    def consumer() -> None:
        while not done.is_set() or q.pending():
            if q.work_one("c", lambda j: None):
                consumed[0] += 1

    def monitor() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], q.pending())

    producers = [threading.Thread(target=producer, args=(p,)) for p in range(6)]
    helpers = [threading.Thread(target=consumer), threading.Thread(target=monitor)]
    for t in producers + helpers:
        t.start()
    for t in producers:
        t.join(timeout=60)
    done.set()
    for t in helpers:
        t.join(timeout=60)
    assert accepted[0] + refused[0] == 900
    assert refused[0] > 0  # the bound was reached
    assert accepted[0] == consumed[0]  # nothing accepted was lost
    assert 0 < peak[0] <= 50


def test_check_then_push_from_two_producers_overshoots_the_bound(r):
    """The race the Lua script prevents, replayed step by step: both check, then both push."""
    key, bound = "naive", 3
    r.lpush(key, "a", "b")
    saw = [r.llen(key), r.llen(key)]  # producer 1 checks, producer 2 checks: both see 2 < 3
    for i, depth in enumerate(saw):
        if depth < bound:
            r.lpush(key, f"job-{i}")
    assert r.llen(key) == 4  # over the bound


def test_non_critical_jobs_are_shed_first(r):
    q = BoundedQueue(r, "q", max_pending=5, shed_at=3)
    for i in range(3):
        q.enqueue(job(i))
    with pytest.raises(QueueFull, match="queue 'q' holds 3 or more jobs, the limit for non-critical jobs; job 'job-3'"):
        q.enqueue(job(3))
    assert q.enqueue(job(4), critical=True) == 4
    assert q.enqueue(job(5), critical=True) == 5
    with pytest.raises(QueueFull, match="holds 5 or more jobs, the limit for critical jobs"):
        q.enqueue(job(6), critical=True)


@pytest.mark.parametrize(("kwargs", "message"), [({"max_pending": 0}, "max_pending must be >= 1"),
                                                  ({"max_pending": 5, "shed_at": 6}, "shed_at must be in 1..max_pending")])
def test_bad_bounds_are_refused(r, kwargs, message):
    with pytest.raises(ValueError, match=message):
        BoundedQueue(r, "q", **kwargs)


# -- token bucket ---------------------------------------------------------------------------
def test_token_bucket_admits_the_configured_rate_within_tolerance(r):
    clock = FakeClock(1_000)
    bucket = TokenBucket(r, "producer", rate=5, capacity=10, clock=clock)
    admitted = 0
    for _ in range(1200):  # a producer trying every 50 ms for 60 s: 20 attempts/s
        admitted += bucket.acquire().allowed
        clock.advance(0.05)
    expected = 10 + 5 * 60  # the initial burst, then the rate
    assert admitted == pytest.approx(expected, abs=2)


def test_token_bucket_allows_a_burst_then_says_how_long_to_wait(r):
    clock = FakeClock(0)
    bucket = TokenBucket(r, "b", rate=2, capacity=3, clock=clock)
    assert [bucket.acquire().allowed for _ in range(4)] == [True, True, True, False]
    refused = bucket.acquire()
    assert refused.retry_after == pytest.approx(0.5)  # one token at 2 per second
    clock.advance(0.5)
    assert bucket.acquire().allowed
    clock.advance(100)  # idle: the bucket refills to its capacity, no further
    assert [bucket.acquire().allowed for _ in range(4)] == [True, True, True, False]


def test_token_bucket_refuses_bad_arguments(r):
    with pytest.raises(ValueError, match="rate must be > 0"):
        TokenBucket(r, "b", rate=0, capacity=1)
    with pytest.raises(ValueError, match="cost must be in"):
        TokenBucket(r, "b", rate=1, capacity=2).acquire(cost=3)


def test_token_bucket_key_expires_when_idle(r):
    TokenBucket(r, "b", rate=10, capacity=20, clock=FakeClock(0)).acquire()
    assert 0 < r.pttl("bucket:{b}") <= 3000


# -- Little's law ---------------------------------------------------------------------------
def simulate(arrival_rate: float, service_time: float, workers: int, jobs: int, seed: int = 1):
    """A seeded M/M/c queue: returns (mean jobs in system, mean time in system, mean wait)."""
    rng = random.Random(seed)
    t, free = 0.0, [0.0] * workers
    spans, waits = [], []
    for _ in range(jobs):
        t += rng.expovariate(arrival_rate)
        start = max(t, heapq.heappop(free))
        end = start + rng.expovariate(1 / service_time)
        heapq.heappush(free, end)
        spans.append((t, end))
        waits.append(start - t)
    horizon = max(end for _, end in spans)
    mean_in_system = sum(end - start for start, end in spans) / horizon  # area under N(t)
    return mean_in_system, sum(e - s for s, e in spans) / jobs, sum(waits) / jobs, jobs / horizon


def test_littles_law_holds_in_a_simulated_worker_pool():
    n, w, _, rate = simulate(arrival_rate=20, service_time=0.2, workers=6, jobs=50_000)
    assert n == pytest.approx(littles_law(rate, w), rel=0.01)


def test_pool_sized_by_workers_needed_keeps_up_and_an_undersized_one_does_not():
    workers = workers_needed(20, 0.2, utilization=0.7)
    assert workers == 6  # 20/s * 0.2 s = 4 busy workers on average, / 0.7
    _, _, wait_ok, _ = simulate(20, 0.2, workers, 20_000)
    _, _, wait_short, _ = simulate(20, 0.2, 4, 20_000)  # exactly the offered load: no slack
    assert wait_ok < 0.1
    assert wait_short > 10 * wait_ok


def test_queue_bound_from_throughput_and_acceptable_wait():
    assert queue_bound(throughput=30, max_wait=60) == 1800
    with pytest.raises(ValueError, match="must be > 0"):
        queue_bound(0, 60)
    with pytest.raises(ValueError, match="utilization must be between 0 and 1"):
        workers_needed(1, 1, utilization=1)


# -- what Redis does when memory runs out ---------------------------------------------------
def fill_until_full(r, queues: int = 20, jobs_per_queue: int = 10) -> tuple[int, int, bool]:
    """Enqueue jobs, then write cache-like values until maxmemory bites.

    Returns (jobs still queued, evicted keys, whether a write was refused).
    """
    from redis.exceptions import OutOfMemoryError

    for qn in range(queues):
        r.lpush(f"q:{{jobs-{qn}}}:pending", *[job(f"{qn}-{i}").to_json() for i in range(jobs_per_queue)])
    refused = False
    for i in range(3000):  # 3000 * 4 KiB = 12 MiB, three times maxmemory
        try:
            r.set(f"cache:{i}", "x" * 4096)
        except OutOfMemoryError:
            refused = True
            break
    left = sum(r.llen(f"q:{{jobs-{qn}}}:pending") for qn in range(queues))
    return left, int(r.info("stats")["evicted_keys"]), refused


@pytest.mark.real_redis("needs redis-server's maxmemory and eviction, which fakeredis does not model")
@pytest.mark.parametrize("policy", ["allkeys-lru", "noeviction"])
def test_eviction_policy_decides_between_losing_jobs_and_refusing_writes(policy):
    from examples.redis_client import connect
    from labs.with_redis import start_redis, stop

    with tempfile.TemporaryDirectory(prefix="handbook-oom-") as workdir:
        proc, url = start_redis(workdir, secrets.token_urlsafe(12), None, "--maxmemory", "4mb", "--maxmemory-policy", policy)
        try:
            r = connect(url)
            assert r.config_get("maxmemory-policy") == {"maxmemory-policy": policy}
            left, evicted, refused = fill_until_full(r)
            if policy == "allkeys-lru":
                assert not refused  # every write "succeeded" ...
                assert evicted > 0 and left < 200  # ... because Redis deleted keys, queues included
            else:
                assert refused and evicted == 0
                assert left == 200  # every queued job is still there
                with pytest.raises(BrokerOutOfMemory, match="Redis is at maxmemory; job 'job-x' was not enqueued"):
                    BoundedQueue(r, "jobs-0", max_pending=1000).enqueue(job("x"))
            r.close()
        finally:
            stop(proc)


@pytest.mark.real_redis("needs redis-server's maxmemory, which fakeredis does not model")
def test_at_maxmemory_acks_work_and_the_reliable_queue_can_still_drain_a_full_redis():
    """noeviction refuses what adds data, not acknowledgements; the queue's claim needs no new memory.

    Before the claim became a script, reserve() ran ZADD (heartbeat) and LMOVE, both refused
    at maxmemory, and fail() ran MULTI, which Redis refuses entirely: a full Redis could not be
    drained by the queue's own workers. The first block below shows those commands refused.
    """
    from redis.exceptions import OutOfMemoryError

    from examples.fundamentals.retries import Backoff, PermanentError, RetryPolicy, RetryQueue
    from examples.redis_client import connect
    from labs.with_redis import start_redis, stop

    with tempfile.TemporaryDirectory(prefix="handbook-oom-") as workdir:
        # latency-tracking off: Redis 7 allocates a latency histogram (about 25 KB) the first
        # time each command runs, which would blur the memory comparisons below.
        proc, url = start_redis(
            workdir, secrets.token_urlsafe(12), None, "--maxmemory", "4mb", "--maxmemory-policy", "noeviction",
            "--latency-tracking", "no",
        )
        try:
            r = connect(url)
            clock = FakeClock(0)
            policy = RetryPolicy(max_attempts=3, backoff=Backoff("none", base=10, cap=10))
            queues = [RetryQueue(r, f"jobs-{n}", policy=policy, clock=clock) for n in range(20)]
            r.lpush(queues[0].pending_key, job("held").to_json())
            held = queues[0].reserve("w-before")  # taken while there was memory
            left, evicted, refused = fill_until_full(r)
            assert refused and evicted == 0 and left == 200
            # Right at the limit, small commands slip in and out of it; set the limit 8 KiB
            # below what is used, so Redis is firmly full (and 200 drained jobs free more).
            r.config_set("maxmemory", r.info("memory")["used_memory"] - 8192)
            used_full = r.info("memory")["used_memory"]
            assert used_full > r.info("memory")["maxmemory"]
            q = queues[0]

            # What Redis refuses at maxmemory: the old take (LMOVE, ZADD heartbeat), any MULTI, new jobs.
            for refused_call in (
                lambda: r.lmove(q.pending_key, q.processing_key("w"), "RIGHT", "LEFT"),
                lambda: r.zadd(q.workers_key, {"w": 1}),
            ):
                with pytest.raises(OutOfMemoryError):
                    refused_call()
            multi_lrem = r.pipeline(transaction=True).lrem(q.processing_key("w"), 1, "x")
            if server_line(r.info("server")) == "Valkey 9.1":
                assert multi_lrem.execute() == [0]  # Valkey 9.1 runs a MULTI that cannot grow memory
            else:  # Redis 7.0 refuses every command queued in MULTI when memory is full
                with pytest.raises(OutOfMemoryError):
                    multi_lrem.execute()
            with pytest.raises(BrokerOutOfMemory):
                BoundedQueue(r, "jobs-0", max_pending=1000).enqueue(job("new"))

            # What still works: the ack, the claim, a retry, a dead letter, recovery of a dead worker.
            q.ack(held)
            assert r.llen(q.processing_key("w-before")) == 0
            q.reserve("w-dead")  # this worker dies holding a job
            clock.advance(60)
            assert q.recover(dead_after=30) == 1

            def flaky(j):
                raise ConnectionError("down")

            def poison(j):
                raise PermanentError("bad input")

            assert q.work_one("w", flaky) and r.zcard(q.delayed_key) == 1
            assert q.work_one("w", poison) and len(q.dead_letters()) == 1
            assert r.llen(q.processing_key("w")) == 0  # nothing stranded in the worker's list
            q.heartbeat("w")  # a known worker's heartbeat is an update: no new memory
            assert r.zscore(q.workers_key, "w") == clock.now()

            # A claim moves bytes from one list to another: no new memory to speak of.
            before = r.info("memory")["used_memory"]
            claimed = [q.reserve("w-claim") for _ in range(5)]
            assert r.info("memory")["used_memory"] - before < 2048
            for delivery in claimed:
                q.ack(delivery)

            # Draining: every worker takes and acknowledges.
            done = 0
            for queue in queues:
                while queue.work_one(f"w-{queue.name}", lambda j: None):
                    done += 1
            assert done == 200 - 2 - 5 and sum(qq.pending() for qq in queues) == 0
            used_drained = r.info("memory")["used_memory"]
            assert used_drained < used_full  # jobs gone, memory back
            # ... and producers get in again.
            assert BoundedQueue(r, "jobs-0", max_pending=1000).enqueue(job("new")) == 1
            r.close()
        finally:
            stop(proc)


# -- stale work: deadlines, shed-oldest, admission by age -------------------------------------
def fresh_job(clock, i, deadline=None):
    made = new_job("quote", {"n": i}, clock=clock, job_id=f"quote-{i}")
    return made if deadline is None else with_deadline(made, deadline)


def test_a_job_past_its_deadline_is_acknowledged_and_counted_without_running(r):
    clock = FakeClock(1000)
    q = FreshQueue(r, "quotes", max_pending=10, clock=clock)
    q.enqueue(fresh_job(clock, 1, deadline=30))
    q.enqueue(fresh_job(clock, 2, deadline=90))
    clock.advance(31)
    ran: list[str] = []
    while q.work_one("w1", lambda j: ran.append(j.id)):
        pass
    assert ran == ["quote-2"]  # quote-1's caller gave up 1 s ago: not run
    assert q.dropped() == {"shed": 0, "expired": 1}
    assert r.llen(q.processing_key("w1")) == 0 and q.pending() == 0  # acknowledged, not lost


def test_a_full_fresh_queue_drops_its_oldest_jobs_and_keeps_the_newest(r):
    clock = FakeClock(0)
    q = FreshQueue(r, "positions", max_pending=3, clock=clock)
    depths = [q.enqueue(fresh_job(clock, i)) for i in range(5)]
    assert depths == [1, 2, 3, 3, 3]
    taken = []
    while q.work_one("w1", lambda j: taken.append(j.id)):
        pass
    assert taken == ["quote-2", "quote-3", "quote-4"]  # the two oldest were dropped
    assert q.dropped() == {"shed": 2, "expired": 0}


def test_admission_by_age_refuses_work_while_the_oldest_job_is_older_than_the_promise(r):
    clock = FakeClock(0)
    q = FreshQueue(r, "reports", max_pending=100, clock=clock)
    q.admit(fresh_job(clock, 1), max_wait=60)
    clock.advance(61)
    assert q.oldest_age() == 61
    with pytest.raises(QueueTooOld, match="waited 61 s, more than 60 s; job 'quote-2'"):
        q.admit(fresh_job(clock, 2), max_wait=60)
    assert isinstance(QueueTooOld("x"), QueueFull)  # producers handle both the same way
    q.work_one("w1", lambda j: None)
    assert q.admit(fresh_job(clock, 3), max_wait=60) == 1  # drained: accepted again


def test_with_deadline_refuses_a_deadline_that_is_not_in_the_future():
    with pytest.raises(ValueError, match="> 0 seconds"):
        with_deadline(new_job("quote", {}), 0)


def serve_a_burst(r, queue_class, **kwargs):
    """Simulated minute of overload then calm, on a fake clock: 2 jobs/s for 60 s, then
    0.5 job/s for 120 s, one worker that runs one job per second, deadline 30 s.
    Returns (jobs finished within their deadline, jobs finished after it)."""
    clock = FakeClock(0)
    q = queue_class(r, "sim", clock=clock, **kwargs)
    in_time = late = 0

    def run(job):
        nonlocal in_time, late
        if past_deadline(job, clock.now()):
            late += 1
        else:
            in_time += 1

    for second in range(180):
        for k in range(2 if second < 60 else (1 if second % 2 else 0)):
            q.enqueue(fresh_job(clock, f"{second}-{k}", deadline=30))
        ran = in_time + late
        while in_time + late == ran and q.work_one("w1", run):
            pass  # skipping an expired job costs no work time: take the next one
        clock.advance(1)
    return in_time, late


def test_dropping_stale_work_lets_the_queue_recover_after_a_burst(r):
    plain = serve_a_burst(r, ReliableQueue)
    r.flushdb()
    fresh = serve_a_burst(r, FreshQueue, max_pending=1000)
    # 180 jobs arrive. Without deadlines the worker spends 88 of its 180 seconds on jobs
    # whose callers gave up, and the backlog of the burst delays the calm's jobs too.
    assert plain == (92, 88)
    # With them it skips the 30 stale jobs (at no cost) and serves the other 150 in time.
    assert fresh == (150, 0)
    assert FreshQueue(r, "sim", max_pending=1000).dropped() == {"shed": 0, "expired": 30}
