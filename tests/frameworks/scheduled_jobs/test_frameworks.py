"""What the frameworks' own schedulers do in the situations of docs/frameworks/scheduled-jobs.md,
run against the installed packages: RQ 3.0's cron (``rq/cron.py``) and Celery 5's beat
(``celery/beat.py``, ``celery/schedules.py``). BullMQ's job schedulers: test_bullmq_schedulers.py."""

from __future__ import annotations

import datetime as dt
import dbm
import pickletools
import shelve
import time
from zoneinfo import ZoneInfo

import pytest
import rq.cron
from celery import Celery, beat
from celery.schedules import crontab
from rq import Queue

UTC = dt.UTC
BERLIN = ZoneInfo("Europe/Berlin")


def utc(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text).replace(tzinfo=UTC)


@pytest.fixture
def rq_now(monkeypatch):
    """Sets the time that rq.cron reads (its module-level ``now``)."""
    def set_now(text: str) -> None:
        monkeypatch.setattr(rq.cron, "now", lambda: utc(text))
    return set_now


def test_rq_two_cron_processes_enqueue_every_slot_twice(r, rq_now):
    rq_now("2026-03-02T09:00:30")
    fleet = [rq.cron.CronScheduler(r, name=f"cron-{i}") for i in range(2)]
    for scheduler in fleet:
        scheduler.register(print, "reports", cron="* * * * *")
    rq_now("2026-03-02T09:01:05")
    for scheduler in fleet:
        assert len(scheduler.enqueue_jobs()) == 1  # no lock, no shared record of the slot
    assert Queue("reports", connection=r).count == 2


def test_rq_cron_runs_a_missed_stretch_once_and_a_restart_skips_it(r, rq_now):
    rq_now("2026-03-02T09:00:30")
    running = rq.cron.CronScheduler(r, name="running")
    running.register(print, "reports", cron="* * * * *")
    rq_now("2026-03-02T09:10:05")  # nine slots passed while the process was stalled
    assert len(running.enqueue_jobs()) == 1
    restarted = rq.cron.CronScheduler(r, name="restarted")  # `rq cron` started again
    restarted.register(print, "reports", cron="* * * * *")
    rq_now("2026-03-02T09:10:30")
    assert restarted.enqueue_jobs() == []  # its first slot is 09:11: the gap is forgotten


@pytest.mark.parametrize(("base", "first", "then"), [
    ("2026-03-28T12:00", "2026-03-29T01:30", "2026-03-30T00:30"),  # 02:30 skipped: 03:30 CEST
    ("2026-10-24T12:00", "2026-10-25T00:30", "2026-10-26T01:30"),  # 02:30 twice: the first only
])
def test_rq_cron_follows_the_process_time_zone_across_dst(monkeypatch, rq_now, base, first, then):
    monkeypatch.setenv("TZ", "Europe/Berlin")  # cron fields match the process's local time
    time.tzset()
    try:
        rq_now(base)
        job = rq.cron.CronJob("reports", func=print, cron="30 2 * * *")
        assert job.next_enqueue_time == utc(first)
        job.set_enqueue_time(utc(first) + dt.timedelta(seconds=5))
        assert job.next_enqueue_time == utc(then)
    finally:
        monkeypatch.delenv("TZ")
        time.tzset()


def celery_app(**conf) -> Celery:
    app = Celery("beat-probe", set_as_current=False)
    app.conf.update(timezone="Europe/Berlin", **conf)
    return app


def test_celery_crontab_runs_a_missed_stretch_once_or_skips_it_past_a_deadline():
    now = utc("2026-03-02T09:10:05")
    last = utc("2026-03-02T07:00:00")  # the 08:00 and 09:00 runs were missed
    hourly = crontab(minute=0, app=celery_app(), nowfun=lambda: now)
    assert hourly.is_due(last).is_due  # once: beat then records now as last_run_at
    assert not hourly.is_due(now).is_due
    strict = crontab(minute=0, app=celery_app(beat_cron_starting_deadline=60), nowfun=lambda: now)
    assert not strict.is_due(last).is_due  # 09:00 is over 60 s old: skipped


@pytest.mark.parametrize(("last", "now", "next_utc"), [
    ("2026-03-28T02:30", "2026-03-29T00:00", "2026-03-29T01:30"),  # 03:30 CEST
    ("2026-10-24T02:30", "2026-10-25T00:00", "2026-10-25T00:30"),  # the first 02:30
    ("2026-10-25T02:30", "2026-10-25T01:45", "2026-10-26T01:30"),  # not the second
])
def test_celery_crontab_in_the_app_time_zone_across_dst(last, now, next_utc):
    moment = utc(now)
    daily = crontab(hour=2, minute=30, app=celery_app(), nowfun=lambda: moment.astimezone(BERLIN))
    remaining = daily.remaining_estimate(dt.datetime.fromisoformat(last).replace(tzinfo=BERLIN))
    assert moment + remaining == utc(next_utc)


def test_celery_beat_schedule_file_is_a_shelve_of_pickles(tmp_path):
    assert beat.PersistentScheduler.persistence is shelve
    path = str(tmp_path / "celerybeat-schedule")
    with shelve.open(path) as store:  # what PersistentScheduler._open_schedule does
        store["entries"] = {"report": "stored by beat"}
    with dbm.open(path) as raw:  # read the opcodes without unpickling (which runs code)
        opcodes = [op.name for op, _, _ in pickletools.genops(raw[b"entries"])]
    assert opcodes[0] == "PROTO" and "SHORT_BINUNICODE" in opcodes
