"""Tests for the batched reliable queue (examples/frameworks/throughput/batched_queue.py).

The queue is shown on docs/frameworks/throughput.md. Besides the unit tests, a seeded lab
replays 1,000 random crash schedules and checks that no job is ever lost and that each crash
re-runs at most one batch of jobs.
"""

from __future__ import annotations

import json
import random
import re
from collections import Counter

import pytest
import redis
from hypothesis import given, settings
from hypothesis import strategies as st

from examples.clock import FakeClock
from examples.envelope import MAX_MESSAGE_BYTES, Job, MalformedJob, PayloadError, new_job
from examples.frameworks.throughput.batched_queue import MAX_BATCH, BatchedReliableQueue
from examples.frameworks.throughput.wire import MAX_PUSH, dump_batch, parse_batch
from examples.fundamentals.delivery_guarantees.queues import ReliableQueue


class SimulatedCrash(BaseException):
    """Stands for the process dying: not an Exception, so the queue does not catch it."""


def jobs(n: int, prefix: str = "job") -> list[Job]:
    return [new_job("resize", {"i": i}, clock=FakeClock(0), job_id=f"{prefix}-{i}") for i in range(n)]


def test_it_is_the_reliable_queue_with_the_same_keys(r):
    q = BatchedReliableQueue(r, "img")
    plain = ReliableQueue(r, "img")
    assert isinstance(q, ReliableQueue)
    assert (q.pending_key, q.dead.key, q.workers_key, q.processing_key("w")) == (
        plain.pending_key, plain.dead.key, plain.workers_key, plain.processing_key("w"))


def test_drain_runs_every_job_once_in_order_and_leaves_only_the_heartbeat(r):
    q = BatchedReliableQueue(r, "img", batch_size=7, clock=FakeClock(0))
    assert q.enqueue_many(jobs(50)) == 50
    done: list[str] = []
    assert q.drain("w", lambda job: done.append(job.id)) == 50
    assert done == [f"job-{i}" for i in range(50)]
    assert r.keys("*") == [q.workers_key]


def test_a_claimed_batch_waits_in_the_worker_processing_list_until_acknowledged(r):
    q = BatchedReliableQueue(r, "img", batch_size=4, clock=FakeClock(0))
    q.enqueue_many(jobs(10))
    batch = q.claim("w")
    assert [job.id for job in batch.jobs] == ["job-0", "job-1", "job-2", "job-3"]
    assert batch.jobs[0] == jobs(1)[0]  # the fast path builds the same Job as Job(**fields)
    assert (q.pending(), r.llen(q.processing_key("w"))) == (6, 4)
    q.ack_batch(batch)
    assert r.exists(q.processing_key("w")) == 0
    assert q.work_batch("w", lambda job: None) == 4
    assert q.pending() == 2


def test_plain_reliable_queue_workers_share_the_queue(r):
    """Jobs enqueued in a batch can be taken one by one by the page's first queue, and back."""
    q = BatchedReliableQueue(r, "img", batch_size=3, clock=FakeClock(0))
    q.enqueue_many(jobs(4))
    one = ReliableQueue(r, "img").reserve("single")
    assert one.job.id == "job-0"
    assert [job.id for job in q.claim("batcher").jobs] == ["job-1", "job-2", "job-3"]


def test_failed_jobs_are_dead_lettered_with_their_reason_and_the_rest_acknowledged(r):
    q = BatchedReliableQueue(r, "img", batch_size=5, clock=FakeClock(7))
    q.enqueue_many(jobs(5))

    def handler(job: Job) -> None:
        if job.args["i"] in (1, 3):
            raise RuntimeError(f"corrupt image {job.args['i']}")

    assert q.work_batch("w", handler) == 5
    assert q.dead_letters() == [
        {"raw": jobs(5)[3].to_json(), "reason": "RuntimeError('corrupt image 3')", "at": 7},
        {"raw": jobs(5)[1].to_json(), "reason": "RuntimeError('corrupt image 1')", "at": 7},
    ]
    assert r.exists(q.processing_key("w")) == 0


MALFORMED = {
    "{not json": "message is not valid JSON: Expecting property name enclosed in double quotes: line 1 column 2 (char 1)",
    '{"v": 99}': "unsupported envelope version 99 (this code reads 1)",
    "": "message is not valid JSON: Expecting value: line 1 column 1 (char 0)",
    "[1, 2]": "message is a JSON list, not an object",
}


def test_malformed_messages_are_dead_lettered_and_the_good_ones_run(r):
    q = BatchedReliableQueue(r, "img", batch_size=20, clock=FakeClock(0))
    good = jobs(3)
    # Valid jobs the fast path declines (key order, a newline, spaces) still run, via the slow path.
    odd_but_valid = [
        json.dumps({"v": 1, "id": "reordered", "task": "t", "args": {}, "created_at": 0, "attempts": 0, "headers": {}}),
        json.dumps(json.loads(jobs(1, "newline")[0].to_json()), indent=1),
        "  " + jobs(1, "padded")[0].to_json(),
    ]
    q.enqueue_many(good[:1])
    r.lpush(q.pending_key, *MALFORMED, *odd_but_valid)
    q.enqueue_many(good[1:])
    done: list[str] = []
    assert q.drain("w", lambda job: done.append(job.id)) == 6
    assert done == ["job-0", "reordered", "newline-0", "padded-0", "job-1", "job-2"]
    assert {d["raw"]: d["reason"] for d in q.dead_letters()} == MALFORMED
    assert r.exists(q.processing_key("w")) == 0


def test_messages_that_only_spell_jobs_together_are_dead_lettered(r):
    """Two broken halves must not be glued into valid jobs by parsing the batch as one string."""
    q = BatchedReliableQueue(r, "img", batch_size=10, clock=FakeClock(0))
    first, second = jobs(2)
    wire = first.to_json() + "," + second.to_json()
    halves = [wire[: len(first.to_json()) + 20], wire[len(first.to_json()) + 21:]]
    r.lpush(q.pending_key, *halves)
    done: list[str] = []
    q.drain("w", lambda job: done.append(job.id))
    assert done == []
    assert [d["raw"] for d in q.dead_letters()] == halves[::-1]


def test_a_crashed_batch_is_recovered_by_the_inherited_recover(r):
    clock = FakeClock(0)
    q = BatchedReliableQueue(r, "img", batch_size=4, clock=clock)
    q.enqueue_many(jobs(6))
    done: list[str] = []

    def crash_on_third(job: Job) -> None:
        if len(done) == 2:
            raise SimulatedCrash
        done.append(job.id)

    with pytest.raises(SimulatedCrash):
        q.drain("doomed", crash_on_third)
    # the batch being worked on, done jobs included, and the batch fetched ahead
    assert r.llen(q.processing_key("doomed")) == 6
    r.set("after-the-crash", "fine")  # the reply left unread went with the dropped connection
    assert r.get("after-the-crash") == "fine"
    clock.advance(31)
    assert q.recover(dead_after=30) == 6
    assert q.drain("survivor", lambda job: done.append(job.id)) == 6
    assert done == ["job-0", "job-1"] + [f"job-{i}" for i in range(6)]  # two duplicates, none lost


def test_drain_sends_the_next_step_before_running_the_batch_in_hand(r):
    events: list[str] = []

    class Recording(BatchedReliableQueue):
        def _send(self, conn, worker, *, claim, acking=None, holding=None, failures=()):
            events.append(f"send ack={acking.size if acking else 0} claim={claim}")
            return super()._send(conn, worker, claim=claim, acking=acking, holding=holding, failures=failures)

        def _read(self, conn, sent):
            reply = super()._read(conn, sent)
            events.append(f"got {reply[0] if reply else 0}")
            return reply

    q = Recording(r, "img", batch_size=2, clock=FakeClock(0))
    q.enqueue_many(jobs(5))
    assert q.drain("w", lambda job: events.append(job.id)) == 5
    assert events == [
        "send ack=0 claim=2", "got 2",
        "send ack=0 claim=2", "job-0", "job-1", "got 2",
        "send ack=2 claim=2", "job-2", "job-3", "got 1",
        "send ack=2 claim=2", "job-4", "got 0",
        "send ack=1 claim=0", "got 0",
    ]
    assert r.keys("*") == [q.workers_key]


def test_max_batches_claims_nothing_beyond_the_last_batch(r):
    q = BatchedReliableQueue(r, "img", batch_size=3, clock=FakeClock(0))
    q.enqueue_many(jobs(10))
    assert q.drain("w", lambda job: None, max_batches=2) == 6
    assert (q.pending(), r.exists(q.processing_key("w"))) == (4, 0)


def test_a_worker_restarted_after_a_drain_crash_gets_both_batches_back(r):
    q = BatchedReliableQueue(r, "img", batch_size=4, clock=FakeClock(0))
    q.enqueue_many(jobs(10))

    def crash(job: Job) -> None:
        raise SimulatedCrash

    with pytest.raises(SimulatedCrash):
        q.drain("pod-1", crash)
    again = q.claim("pod-1")  # one claim hands back everything the id held, oldest first
    assert [job.id for job in again.jobs] == [f"job-{i}" for i in range(8)]
    q.ack_batch(again)
    assert (q.pending(), r.exists(q.processing_key("pod-1"))) == (2, 0)


def test_a_draining_worker_presumed_dead_runs_the_batch_ahead_before_it_learns(r):
    clock = FakeClock(0)
    q = BatchedReliableQueue(r, "img", batch_size=2, clock=clock)
    q.enqueue_many(jobs(6))
    done: list[str] = []

    def slow_first_job(job: Job) -> None:
        done.append(job.id)
        if job.id == "job-0":
            clock.advance(45)  # no heartbeat for longer than dead_after
            assert q.recover(dead_after=30) == 4  # both batches the worker held

    with pytest.raises(LookupError, match="the 4 jobs worker 'w' held are no longer"):
        q.drain("w", slow_first_job)
    assert done == ["job-0", "job-1", "job-2", "job-3"]  # the batch ahead ran too
    assert (q.pending(), r.exists(q.processing_key("w"))) == (6, 0)  # all of them run again


def test_drain_survives_the_server_forgetting_its_scripts(r):
    q = BatchedReliableQueue(r, "img", batch_size=2, clock=FakeClock(0))
    q.enqueue_many(jobs(7))
    done: list[str] = []

    def handler(job: Job) -> None:
        done.append(job.id)
        if job.id in ("job-0", "job-3"):
            r.script_flush()  # as a restart or a failover to a fresh replica would

    assert q.drain("w", handler) == 7
    assert done == [f"job-{i}" for i in range(7)]
    assert r.keys("*") == [q.workers_key]


def test_a_worker_restarted_under_the_same_id_gets_its_batch_back(r):
    q = BatchedReliableQueue(r, "img", batch_size=3, clock=FakeClock(0))
    q.enqueue_many(jobs(5))
    held = q.claim("pod-1")  # then the pod dies without acknowledging
    again = q.claim("pod-1")
    assert again == held
    assert q.pending() == 2


def test_acknowledging_a_batch_that_recovery_took_back_is_an_error(r):
    clock = FakeClock(0)
    q = BatchedReliableQueue(r, "img", batch_size=3, clock=clock)
    q.enqueue_many(jobs(3))
    batch = q.claim("slow")
    clock.advance(60)  # a job longer than dead_after, without heartbeats
    assert q.recover(dead_after=30) == 3
    with pytest.raises(LookupError, match="the 3 jobs worker 'slow' held are no longer in its processing list"):
        q.ack_batch(batch)
    assert q.pending() == 3  # they will run again


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [
        (lambda q: BatchedReliableQueue(q.r, "q", batch_size=0), ValueError, "batch_size must be an integer from 1 to 1000, got 0"),
        (lambda q: BatchedReliableQueue(q.r, "q", batch_size=MAX_BATCH + 1), ValueError, "got 1001"),
        (lambda q: BatchedReliableQueue(q.r, "q", batch_size=2.5), ValueError, "got 2.5"),
        (lambda q: q.claim("bad worker"), ValueError, "worker id must be a non-empty string"),
    ],
)
def test_bad_arguments_are_refused_with_a_clear_message(r, call, error, message):
    q = BatchedReliableQueue(r, "q", clock=FakeClock(0))
    q.enqueue_many(jobs(2))
    with pytest.raises(error, match=message):
        call(q)


def test_a_batch_of_the_largest_size_moves_in_one_call(r):
    q = BatchedReliableQueue(r, "big", batch_size=MAX_BATCH, clock=FakeClock(0))
    q.enqueue_many(jobs(MAX_BATCH + 5))
    assert len(q.claim("w")) == MAX_BATCH


# -- the fast parser never accepts what Job.from_json refuses ---------------------------------
values = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 5) | st.floats(allow_nan=False) | st.text(max_size=3),
    lambda inner: st.lists(inner, max_size=2) | st.dictionaries(st.text(max_size=3), inner, max_size=2),
    max_leaves=4,
)
fields_ = {"id": st.text(max_size=4), "task": st.text(max_size=4), "args": st.dictionaries(st.text(max_size=2), values, max_size=2),
           "created_at": st.integers(0, 9) | st.floats(allow_nan=False), "attempts": st.integers(0, 3),
           "headers": st.dictionaries(st.text(max_size=2), st.text(max_size=2), max_size=1), "v": st.just(1)}
valid = st.fixed_dictionaries(fields_)
anything = st.fixed_dictionaries(fields_, optional={"extra": values}) | st.dictionaries(
    st.sampled_from([*fields_, "extra"]), values, max_size=8
)
canonical = st.one_of(valid, valid, anything).map(lambda d: json.dumps(d, sort_keys=True, separators=(",", ":")))
messages = st.one_of(canonical, canonical, canonical, st.one_of(valid, anything).map(json.dumps), st.text(max_size=12))


@settings(max_examples=300, deadline=None)
@given(st.lists(messages, min_size=1, max_size=4))
def test_fast_parser_agrees_with_job_from_json(batch):
    parsed = parse_batch(len(batch), "\n".join(batch))
    if parsed is None:
        return  # the queue then checks each message with Job.from_json
    assert parsed == [Job.from_json(message) for message in batch]


def test_fast_parser_takes_canonical_jobs_and_declines_the_rest():
    wire = [job.to_json() for job in jobs(3)]
    assert parse_batch(3, "\n".join(wire)) == jobs(3)
    assert parse_batch(2, "\n".join(wire)) is None  # a message holding a newline
    assert parse_batch(3, "\n".join([wire[0], wire[1].replace('"attempts":0', '"attempts":true'), wire[2]])) is None
    assert parse_batch(1, "{nope") is None
    with pytest.raises(MalformedJob):  # ... and Job.from_json gives the reason
        Job.from_json("{nope")


@pytest.mark.parametrize("depth", [2, 31, 33, 40])
def test_fast_parser_refuses_nesting_past_the_limit_as_job_from_json_does(depth):
    """Scalar arguments skip the bracket count; nested ones are counted, message by message
    (at depth 31 the message has 32 brackets, the most the count lets through)."""
    nested: object = 1
    for _ in range(depth - 2):  # the envelope and args are two levels
        nested = [nested]
    batch = [jobs(1)[0].to_json(), json.dumps(
        {"args": {"x": nested}, "attempts": 0, "created_at": 0, "headers": {}, "id": "d", "task": "t", "v": 1},
        separators=(",", ":"))]
    parsed = parse_batch(2, "\n".join(batch))
    if depth > 32:
        assert parsed is None
        with pytest.raises(MalformedJob, match="deeper than 32"):
            Job.from_json(batch[1])
    else:
        assert parsed == [Job.from_json(message) for message in batch]


# -- enqueue: every job in Redis before the call returns, malformed ones refused -------------
def test_enqueued_jobs_are_in_redis_byte_for_byte_when_the_call_returns(r):
    q = BatchedReliableQueue(r, "img", clock=FakeClock(0))
    batch = [*jobs(3), new_job("resize", {"z": [1.5, "é\"\\"], "a": None}, clock=FakeClock(2.5), job_id="odd",
                                headers={"trace": "t-1"})]
    assert q.enqueue_many(batch) == 4
    # read back on a connection of its own: the jobs are in the server, not in a client buffer
    other = r.connection_pool.make_connection()
    other.send_command("LRANGE", q.pending_key, 0, -1)
    assert other.read_response() == [job.to_json() for job in reversed(batch)]
    other.disconnect()
    assert q.enqueue_many([]) == 0


def test_more_jobs_than_one_push_takes_arrive_in_order(r):
    q = BatchedReliableQueue(r, "img", batch_size=MAX_BATCH, clock=FakeClock(0))
    assert q.enqueue_many(jobs(MAX_PUSH + 3)) == MAX_PUSH + 3
    assert [job.id for job in q.claim("w").jobs][:2] == ["job-0", "job-1"]
    assert r.lindex(q.pending_key, 0) == jobs(MAX_PUSH + 3)[-1].to_json()


def test_enqueue_returns_only_after_redis_answered(r, monkeypatch):
    """A push that fails raises: the caller never gets a count for jobs Redis did not take."""
    q = BatchedReliableQueue(r, "img", clock=FakeClock(0))

    def unreachable(*args, **kwargs):
        raise redis.ConnectionError("Connection refused")

    monkeypatch.setattr(q.r, "lpush", unreachable)
    with pytest.raises(redis.ConnectionError):
        q.enqueue_many(jobs(3))


deep: list = []
for _ in range(40):
    deep = [deep]
BAD_JOBS = {
    "not a job": ({"id": "x"}, TypeError, "expected a Job (see new_job), got dict"),
    "newline in id": (Job("a\nb", "t", {}, 0.0), PayloadError, "field 'id' must be 1 to 200 printable"),
    "empty task": (Job("a", "", {}, 0.0), PayloadError, "field 'task' must be 1 to 200 printable"),
    "bytes in args": (Job("a", "t", {"x": b"1"}, 0.0), PayloadError, "not JSON-serialisable"),
    "NaN created_at": (Job("a", "t", {}, float("nan")), PayloadError, "Out of range float values"),
    "infinite arg": (Job("a", "t", {"x": float("inf")}, 0.0), PayloadError, "Out of range float values"),
    "text created_at": (Job("a", "t", {}, "now"), PayloadError, "field 'created_at' is missing or has the wrong type"),  # type: ignore[arg-type]
    "future version": (Job("a", "t", {}, 0.0, v=2), PayloadError, "unsupported envelope version 2"),
    "too large": (Job("a", "t", {"x": "y" * MAX_MESSAGE_BYTES}, 0.0), PayloadError, "over the limit of 1048576"),
    "too deep": (Job("a", "t", {"x": deep}, 0.0), PayloadError, "nests JSON deeper than 32 levels"),
}


@pytest.mark.parametrize(("bad", "error", "message"), BAD_JOBS.values(), ids=BAD_JOBS)
def test_a_malformed_job_refuses_the_whole_batch_with_the_reason_and_enqueues_nothing(r, bad, error, message):
    q = BatchedReliableQueue(r, "img", clock=FakeClock(0))
    with pytest.raises(error, match=f"^job 2 of the batch: .*{re.escape(message)}"):
        q.enqueue_many([*jobs(2), bad, *jobs(2, "after")])
    assert q.pending() == 0


names = st.text(max_size=5) | st.sampled_from(["ok", 'q"uote', "back\\slash", "é", "x" * 201])
odd_jobs = st.builds(
    Job, id=names, task=names, args=st.dictionaries(st.text(max_size=2), values, max_size=2),
    created_at=st.integers(0, 9) | st.floats() | st.booleans(), attempts=st.integers(-1, 3) | st.booleans(),
    headers=st.dictionaries(st.text(max_size=2), st.text(max_size=2), max_size=1), v=st.sampled_from([1, 1, 2, True]),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(odd_jobs, min_size=1, max_size=3), st.integers(0, 2))
def test_dump_batch_writes_what_to_json_writes_and_refuses_what_workers_refuse(batch, usual):
    """The fast serialiser against the envelope's own methods, on jobs built with any fields."""
    batch = [*jobs(usual), *batch]
    expected: list[str] = []
    for position, job in enumerate(batch):
        try:
            raw = job.to_json()
            Job.from_json(raw)
        except (PayloadError, MalformedJob):
            with pytest.raises(PayloadError, match=f"^job {position} of the batch: "):
                dump_batch(batch)
            return
        expected.append(raw)
    assert dump_batch(batch) == expected


# -- the crash lab ---------------------------------------------------------------------------
def run_schedule(r, seed: int, *, drain: bool = False) -> tuple[int, int, Counter, int]:
    """Drive workers through one random schedule of crashes; return (jobs, batch size, runs, incidents).

    Workers take one batch at a time with ``work_batch``, or with ``drain=True`` run
    ``drain`` for a few batches, which keeps the next batch on its way while one runs.
    """
    rng = random.Random(seed)
    r.flushdb()
    clock = FakeClock(0)
    size = rng.randint(1, 5)
    q = BatchedReliableQueue(r, "lab", batch_size=size, clock=clock)
    n = rng.randint(1, 14)
    q.enqueue_many(jobs(n))
    runs: Counter = Counter()
    incidents = 0
    generation = 0
    worker = "w0"
    for _ in range(60):  # bounded: a schedule ends well before this
        if q.pending() == 0 and not r.keys("q:{lab}:processing:*"):
            break
        plan = rng.choice(["healthy", "healthy", "crash-before", "crash-after", "lost-reply", "declared-dead"])
        batches = rng.randint(1, 3) if drain else 1
        victim = rng.randrange(size * batches)
        seen = []

        # this iteration's plan, victim and list, bound now (the handler runs in this iteration)
        def handler(job: Job, plan: str = plan, seen: list[str] = seen, victim: int = victim) -> None:
            seen.append(job.id)
            if plan == "crash-before" and len(seen) - 1 == victim:
                raise SimulatedCrash
            runs[job.id] += 1  # the job's effect
            if plan == "crash-after" and len(seen) - 1 == victim:
                raise SimulatedCrash
            if plan == "declared-dead" and len(seen) == 1:
                clock.advance(45)  # a long job without heartbeats: presumed dead mid-batch
                q.recover(dead_after=30)

        try:
            if plan == "lost-reply":
                q.claim(worker)  # the jobs moved, then the worker died before reading them
                raise SimulatedCrash
            if drain:
                q.drain(worker, handler, max_batches=batches)
            else:
                q.work_batch(worker, handler)
        except SimulatedCrash:
            incidents += 1
            if rng.random() < 0.5:  # the orchestrator starts a new worker with a new id
                generation += 1
                worker = f"w{generation}"
        except LookupError:  # declared dead: the batch went back to the queue
            assert plan == "declared-dead"
            incidents += 1
        clock.advance(rng.choice([1, 40]))
        q.recover(dead_after=30)
    clock.advance(100)
    q.recover(dead_after=30)
    q.drain("cleanup", lambda job: runs.update([job.id]))
    return n, size, runs, incidents


@pytest.mark.slow
@pytest.mark.parametrize(
    ("drain", "held"),
    [(False, 1), (True, 2)],
    ids=["work_batch holds one batch", "drain holds two"],
)
def test_a_thousand_crash_schedules_lose_nothing_and_repeat_at_most_the_batches_held(r, drain, held):
    worst = 0.0  # the most duplicates seen per crash, in batches
    for seed in range(1000):
        n, size, runs, incidents = run_schedule(r, seed, drain=drain)
        assert set(runs) == {f"job-{i}" for i in range(n)}, f"seed {seed}: a job was lost"
        duplicates = sum(runs.values()) - n
        assert duplicates <= incidents * size * held, f"seed {seed}: {duplicates} duplicates from {incidents} crashes"
        if incidents:
            worst = max(worst, duplicates / (incidents * size))
    # the schedules did exercise redelivery, and with drain, the batch fetched ahead
    assert worst > held - 1
