"""Tests for docs/fundamentals/retries.md (examples/fundamentals/retries.py)."""

from __future__ import annotations

import itertools
import random

import pytest

from examples.clock import FakeClock
from examples.envelope import Job, new_job
from examples.fundamentals.retries import (
    STRATEGIES, Backoff, PermanentError, RetryBudget, RetryLater, RetryPolicy, RetryQueue, calls_per_job,
    peak_load, retry_after_seconds, retry_times,
)
from tests._support.celery_probe import autoretry_defaults


def job(i: int = 0) -> Job:
    return new_job("call_api", {"n": i}, clock=FakeClock(0), job_id=f"job-{i}")


# -- backoff -----------------------------------------------------------------------------
def test_no_jitter_doubles_up_to_the_cap():
    assert Backoff("none", base=1, cap=20).schedule(7, random.Random(0)) == [1, 2, 4, 8, 16, 20, 20]


@pytest.mark.parametrize("strategy", ["full", "equal"])
def test_jittered_delays_stay_within_their_bounds(strategy):
    rng = random.Random(1)
    backoff = Backoff(strategy, base=1, cap=60)
    for attempt in range(1, 12):
        ceiling = min(60, 2 ** (attempt - 1))
        low = 0 if strategy == "full" else ceiling / 2
        delays = [backoff.delay(attempt, rng) for _ in range(200)]
        assert all(low <= d <= ceiling for d in delays)


def test_decorrelated_jitter_grows_from_the_previous_delay_and_is_capped():
    rng = random.Random(2)
    delays = Backoff("decorrelated", base=1, cap=30).schedule(50, rng)
    assert all(1 <= d <= 30 for d in delays)
    assert all(d <= 3 * prev for prev, d in itertools.pairwise(delays))


def test_same_seed_same_schedule():
    b = Backoff("full")
    assert b.schedule(5, random.Random(9)) == b.schedule(5, random.Random(9))


def test_jitter_spreads_a_retry_storm():
    """The figure's claim: without jitter all 200 clients retry at the same instant, every time."""
    times = {s: retry_times(Backoff(s, base=1, cap=64), clients=200, retries=6, seed=7) for s in STRATEGIES}
    instant = {s: peak_load(t, window=0.01) for s, t in times.items()}
    assert instant["none"] == 200 and all(instant[s] <= 10 for s in ("full", "equal", "decorrelated"))
    quarter = {s: peak_load(t) for s, t in times.items()}  # what the figure's titles show
    assert quarter["none"] == 200 and max(quarter["full"], quarter["equal"], quarter["decorrelated"]) < 200 * 0.6
    assert quarter["decorrelated"] < quarter["full"] < quarter["equal"]
    assert peak_load([1.0, 1.1, 1.3], window=0.25) == 2


def test_the_figure_is_drawn_from_the_tested_code():
    from handbook_sphinx.figures import retry_storm

    fig = retry_storm(clients=50, retries=3, seed=1)
    titles = [ax.get_title(loc="left") for ax in fig.axes]
    assert titles[0] == "no jitter: at most 50 retries in any 0.25 s" and len(titles) == len(STRATEGIES)


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: Backoff("linear"), "unknown backoff strategy 'linear'"),
        (lambda: Backoff("full", base=-1), "need 0 < base <= cap seconds"),
        (lambda: Backoff("full", base=10, cap=5), "need 0 < base <= cap seconds"),
        (lambda: Backoff().delay(0, random.Random()), "attempt counts retries from 1"),
        (lambda: RetryPolicy(max_attempts=0), "max_attempts must be an integer >= 1"),
        (lambda: RetryBudget(token_ratio=0), "need max_tokens > 0 and 0 < token_ratio <= 1"),
    ],
)
def test_bad_settings_are_refused(make, message):
    with pytest.raises(ValueError, match=message):
        make()


# -- retry budget ------------------------------------------------------------------------
def test_budget_stops_retries_after_a_run_of_failures_and_recovers_with_successes():
    budget = RetryBudget(max_tokens=10, token_ratio=0.1)
    failures = 0
    while budget.allows_retry():
        budget.record_failure()
        failures += 1
    assert failures == 5  # 10 -> 5 tokens: retries stop
    budget.record_success()
    assert budget.allows_retry()  # 5.1 tokens: one retry may go...
    budget.record_failure()
    assert not budget.allows_retry()  # ...but while failures outnumber successes ten to one, no more


# -- retry queue and dead letters ---------------------------------------------------------
@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(0)


def make_queue(r, clock, **kw) -> RetryQueue:
    policy = RetryPolicy(max_attempts=3, backoff=Backoff("none", base=10, cap=100))
    return RetryQueue(r, "api", policy=policy, clock=clock, rng=random.Random(0), **kw)


def always_fails(job: Job) -> None:
    raise ConnectionError("api down")


def test_failed_job_waits_for_its_backoff_then_is_dead_lettered_with_reason_and_attempts(r, clock):
    q = make_queue(r, clock)
    q.enqueue(job())
    assert q.work_one("w", always_fails) is True
    assert q.pending() == 0 and r.zscore(q.delayed_key, job().__class__.from_json(r.zrange(q.delayed_key, 0, 0)[0]).to_json()) == 10
    assert q.work_one("w", always_fails) is False  # not due yet
    clock.advance(10)
    assert q.work_one("w", always_fails) is True  # attempt 2, next retry in 20 s
    clock.advance(20)
    assert q.work_one("w", always_fails) is True  # attempt 3 = max_attempts: dead
    [dead] = q.dead_letters()
    assert {k: dead[k] for k in ("reason", "attempts", "at")} == {
        "reason": "gave up after 3 attempts: ConnectionError('api down')", "attempts": 3, "at": 30,
    }
    job_in_record = Job.from_json(dead["raw"])  # the message as taken for the last attempt
    assert (job_in_record.id, job_in_record.task, job_in_record.attempts) == ("job-0", "call_api", 2)
    assert r.llen(q.processing_key("w")) == 0 and r.zcard(q.delayed_key) == 0


def test_a_job_that_succeeds_on_retry_is_acked(r, clock):
    q = make_queue(r, clock)
    q.enqueue(job())
    calls = []

    def flaky(j: Job) -> None:
        calls.append(j.attempts)
        if len(calls) == 1:
            raise TimeoutError("slow")

    q.work_one("w", flaky)
    clock.advance(10)
    q.work_one("w", flaky)
    assert calls == [0, 1] and q.dead_letters() == [] and r.llen(q.processing_key("w")) == 0


def test_permanent_error_is_not_retried(r, clock):
    q = make_queue(r, clock)
    q.enqueue(job())

    def poison(j: Job) -> None:
        raise PermanentError("customer 42 does not exist")

    q.work_one("w", poison)
    [dead] = q.dead_letters()
    assert dead["reason"].startswith("permanent error, not retried: ") and dead["attempts"] == 1
    assert "customer 42 does not exist" in dead["reason"]


def test_replay_puts_a_dead_letter_back_with_attempts_reset(r, clock):
    q = make_queue(r, clock)
    for i in range(2):
        q.enqueue(job(i))
    for _ in range(2):
        q.work_one("w", lambda j: (_ for _ in ()).throw(PermanentError("bad")))
    assert q.replay(job_id="job-1") == 1
    assert [Job.from_json(d["raw"]).id for d in q.dead_letters()] == ["job-0"]
    done = []
    q.work_one("w", lambda j: done.append((j.id, j.attempts)))
    assert done == [("job-1", 0)]
    assert q.replay() == 1 and q.dead_letters() == []


def test_replay_leaves_malformed_dead_letters_and_names_a_missing_id(r, clock):
    q = make_queue(r, clock)
    r.lpush(q.pending_key, "{broken")
    assert q.work_one("w", lambda j: None) is False  # malformed: dead-lettered by reserve
    assert q.replay() == 0 and len(q.dead_letters()) == 1
    with pytest.raises(LookupError, match="no replayable dead letter with job id 'nope'"):
        q.replay(job_id="nope")


def test_decorrelated_jitter_grows_in_the_retry_queue(r, clock):
    """The queue passes each job's previous delay on, so decorrelated delays grow with the
    attempts as the schedule's do (before, every retry drew from base..3*base)."""
    policy = RetryPolicy(max_attempts=8, backoff=Backoff("decorrelated", base=1, cap=10_000))
    q = RetryQueue(r, "api", policy=policy, clock=clock, rng=random.Random(4))
    for i in range(200):
        q.enqueue(job(i))
    by_attempt: dict[int, list[float]] = {}
    for _ in range(6):  # six failed attempts per job
        while q.work_one("w", always_fails):
            pass
        for raw, due in r.zrange(q.delayed_key, 0, -1, withscores=True):
            retried = Job.from_json(raw)
            by_attempt.setdefault(retried.attempts, []).append(due - clock.now())
        clock.advance(20_000)  # every retry is due
    means = {n: sum(d) / len(d) for n, d in sorted(by_attempt.items())}
    assert sorted(means) == [1, 2, 3, 4, 5, 6] and all(len(d) == 200 for d in by_attempt.values())
    assert 1.7 < means[1] < 2.3  # uniform(1, 3): mean 2
    assert all(later > earlier for earlier, later in itertools.pairwise(means.values()))
    assert means[6] > 5 * means[1]  # about 1.5x per attempt: 2 * 1.5**5 = 15
    # the same distribution as Backoff.schedule, which the figure draws
    schedules = [Backoff("decorrelated", base=1, cap=10_000).schedule(6, random.Random(s)) for s in range(200)]
    assert 0.7 < means[6] / (sum(sch[5] for sch in schedules) / 200) < 1.4


def test_a_malformed_retry_delay_header_is_ignored(r, clock):
    from examples.fundamentals.retries import RETRY_DELAY_HEADER, last_delay

    assert last_delay(job()) is None
    for bad in ("soon", "nan", "-3", "inf"):
        assert last_delay(Job.from_json(job().to_json().replace('"headers":{}', f'"headers":{{"{RETRY_DELAY_HEADER}":"{bad}"}}'))) is None
    assert last_delay(Job.from_json(job().to_json().replace('"headers":{}', f'"headers":{{"{RETRY_DELAY_HEADER}":"2.5"}}'))) == 2.5


def test_a_spent_budget_parks_retries_at_the_cap(r, clock):
    budget = RetryBudget(max_tokens=4, token_ratio=0.1)
    q = make_queue(r, clock, budget=budget)
    for i in range(3):
        q.enqueue(job(i))
    for _ in range(3):
        q.work_one("w", always_fails)
    due = sorted(score for _, score in r.zrange(q.delayed_key, 0, -1, withscores=True))
    assert due == [10, 100, 100]  # the first retry is normal; then the budget is spent


# -- facts quoted on the page, asserted against the installed libraries --------------------
def test_celery_retry_defaults():
    from celery.app.task import Task
    from celery.utils.time import get_exponential_backoff_interval

    assert (Task.max_retries, Task.default_retry_delay) == (3, 180)
    observed = autoretry_defaults()  # what autoretry_for does when the task sets no backoff options
    assert observed["retry_backoff_max"] == 600
    assert observed["retry_jitter"] is True
    assert get_exponential_backoff_interval(factor=1, retries=20, maximum=600) == 600
    rng_values = {get_exponential_backoff_interval(1, 3, 600, full_jitter=True) for _ in range(200)}
    assert rng_values <= set(range(0, 9)) and len(rng_values) > 1  # full jitter: 0..2**3


def test_rq_retry_has_no_backoff_by_default():
    from rq import Retry

    retry = Retry(max=3)
    assert retry.intervals == [0]


# -- retry amplification and Retry-After ------------------------------------------------------
def run_until_dead(q, clock, handler) -> None:
    q.enqueue(job())
    while not q.dead_letters():
        q.work_one("w", handler)
        clock.advance(100)


@pytest.mark.parametrize(("client_attempts", "calls"), [(3, 9), (1, 3)])
def test_retries_in_the_handler_and_in_the_queue_multiply_calls(r, clock, client_attempts, calls):
    seen = []

    def dependency() -> None:  # down for the whole test
        seen.append(clock.now())
        raise ConnectionError("503 from the payment API")

    def handler(job: Job) -> None:  # an HTTP client that retries on its own, as many do
        for attempt in range(client_attempts):
            try:
                return dependency()
            except ConnectionError:
                if attempt == client_attempts - 1:
                    raise

    run_until_dead(make_queue(r, clock), clock, handler)  # the queue: 3 attempts
    assert len(seen) == calls == calls_per_job([client_attempts, 3])
    assert calls_per_job([3, 3, 3]) == 27  # a third layer (the caller's own retries)


def test_retry_after_is_honoured_over_a_shorter_backoff(r, clock):
    q = make_queue(r, clock)  # backoff without jitter: 10 s before the first retry
    q.enqueue(job())
    q.work_one("w", lambda j: (_ for _ in ()).throw(RetryLater(120, "429 Too Many Requests")))
    clock.advance(119)
    assert q.work_one("w", always_fails) is False  # the backoff's 10 s would have retried
    clock.advance(1)
    assert q.work_one("w", lambda j: None) is True and q.dead_letters() == []


def test_a_retry_after_beyond_the_limit_dead_letters_the_job(r, clock):
    q = RetryQueue(r, "api", policy=RetryPolicy(max_retry_after=600), clock=clock)
    q.enqueue(job())
    q.work_one("w", lambda j: (_ for _ in ()).throw(RetryLater(86400)))
    [dead] = q.dead_letters()
    assert dead["reason"].startswith("dependency asked to wait more than 600 s: RetryLater")


def test_retry_after_parses_seconds_and_http_dates():
    assert retry_after_seconds("120", now=0) == 120
    # an HTTP date (IMF-fixdate); 30 s before it, the header means "in 30 s"
    assert retry_after_seconds("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412450) == 30
    assert retry_after_seconds("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412490) == 0  # past
    for bad in ("soon", "-5", "1.5", "Wed, 21 Oct 2015 07:28:00", "１２"):
        assert retry_after_seconds(bad, now=0) is None
    with pytest.raises(ValueError, match="finite number of seconds"):
        RetryLater(float("nan"))
    with pytest.raises(ValueError, match="one or more layers"):
        calls_per_job([3, 0])
