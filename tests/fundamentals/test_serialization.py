"""Tests for docs/fundamentals/serialization.md (examples/fundamentals/serialization.py)."""

from __future__ import annotations

import datetime as dt
import json
import pickle
from dataclasses import asdict, replace
from decimal import Decimal

import msgpack
import pytest
from kombu import exceptions as kombu_exceptions
from kombu import serialization as kombu_serialization

from examples.clock import FakeClock
from examples.envelope import MalformedJob, PayloadError, new_job
from examples.fundamentals.serialization import (
    AVRO,
    JSON,
    LIMITS,
    MSGPACK,
    PICKLE,
    ClaimCheck,
    EnvelopeQueue,
    PayloadTooLarge,
    UnknownSchemaVersion,
    UnsafePayload,
    WireMessage,
    binary_client,
    check_size,
    decode,
    encode,
    frame,
    from_floor_job,
    upcast,
)
from handbook_sphinx.tables import example_envelope, size_table

FORMATS = [JSON, MSGPACK, AVRO]


@pytest.mark.parametrize("content_type", FORMATS)
def test_round_trip_keeps_datetimes_decimals_and_bytes(content_type):
    env = example_envelope()
    back = decode(encode(env, content_type))
    assert back == env
    assert isinstance(back.args["amount"], Decimal) and str(back.args["amount"]) == "1499.90"
    assert back.args["due"].tzinfo is not None
    assert back.args["receipt_pdf"] == bytes(range(256)) * 8


@pytest.mark.parametrize("content_type", [JSON, MSGPACK])
def test_non_utc_datetimes_come_back_as_the_same_instant_in_utc(content_type):
    paris = dt.timezone(dt.timedelta(hours=1))
    env = replace(example_envelope(), task="other", args={"at": dt.datetime(2026, 1, 1, 13, 0, tzinfo=paris)})
    back = decode(encode(env, content_type))
    assert back.args["at"] == env.args["at"]  # the same instant
    assert back.args["at"].utcoffset() == dt.timedelta(0)


@pytest.mark.parametrize("content_type", [JSON, MSGPACK])
def test_naive_datetimes_and_odd_types_are_refused_at_encode_time(content_type):
    env = example_envelope()
    with pytest.raises(PayloadError, match="naive datetime 2026-01-01T00:00:00 is ambiguous"):
        encode(replace(env, args={"at": dt.datetime(2026, 1, 1)}), content_type)
    with pytest.raises(PayloadError, match="cannot put a set on the wire"):
        encode(replace(env, args={"tags": {"a"}}), content_type)
    with pytest.raises(PayloadError, match="keys must be strings not starting with '\\$'"):
        encode(replace(env, args={"$datetime": "x"}), content_type)
    with pytest.raises(PayloadError, match="nan is not valid JSON"):
        encode(replace(env, args={"ratio": float("nan")}), content_type)


def test_avro_refuses_args_that_do_not_match_the_schema():
    env = example_envelope()
    with pytest.raises(PayloadError, match="args of task 'charge' do not match its Avro schema"):
        encode(replace(env, args={**env.args, "order_id": "not a number"}), AVRO)
    with pytest.raises(PayloadError, match="no Avro schema for task 'resize'"):
        encode(replace(env, task="resize"), AVRO)


def test_envelope_refuses_a_naive_created_at_and_unknown_trace_keys():
    with pytest.raises(PayloadError, match="created_at of job 'x' is a naive datetime"):
        replace(example_envelope(), id="x", created_at=dt.datetime(2026, 1, 1))
    with pytest.raises(PayloadError, match=r"trace holds only traceparent and tracestate, not \['baggage'\]"):
        replace(example_envelope(), trace={"baggage": "a=b"})


# -- versions -------------------------------------------------------------------------------
def test_a_version_1_floor_job_is_upcast_to_version_2():
    job = new_job(
        "send_email", {"to": "ada@example.com"}, clock=FakeClock(1_700_000_000), job_id="j-1",
        headers={"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", "tenant": "acme"},
    )
    env = decode(WireMessage(JSON, job.to_json().encode()))  # as an old producer sends it
    assert env.v == 2
    assert env.created_at == dt.datetime(2023, 11, 14, 22, 13, 20, tzinfo=dt.timezone.utc)
    assert env.trace == {"traceparent": job.headers["traceparent"]}
    assert env.headers == {"tenant": "acme"}
    assert from_floor_job(job) == env


def test_a_floor_job_of_another_version_is_refused_with_the_reason_even_under_python_O():
    job = replace(new_job("send_email", {}, clock=FakeClock(0), job_id="j-1"), v=2)
    with pytest.raises(MalformedJob, match="^job 'j-1' has envelope version 2; this code reads 1$"):
        from_floor_job(job)


@pytest.mark.parametrize("content_type", [JSON, MSGPACK])
def test_unknown_future_version_is_rejected_with_a_clear_error(content_type):
    data = asdict(example_envelope()) | {"v": 3, "priority": "high"}
    body = json.dumps(data, default=str).encode() if content_type == JSON else msgpack.packb(data, datetime=True, default=str)
    with pytest.raises(UnknownSchemaVersion, match="schema version 3 is newer than this consumer reads \\(up to 2\\); deploy consumers before producers"):
        decode(WireMessage(content_type, body))


@pytest.mark.parametrize(
    ("data", "message"),
    [({"id": "x"}, "message has no valid schema version: v=None"), ({"v": "2"}, "v='2'"),
     ({"v": 2, "id": "x"}, "version 2 message does not fit the envelope")],
)
def test_malformed_envelopes_name_the_problem(data, message):
    with pytest.raises(MalformedJob, match=message.replace("(", r"\(")):
        upcast(data)


# -- pickle ---------------------------------------------------------------------------------
class Exploit:
    """What an attacker puts in a queue: unpickling it runs Python source of their choice."""

    def __reduce__(self):
        return (exec, ("import builtins; builtins.handbook_pwned = True",))


def test_pickle_runs_code_on_load_which_is_why_it_is_refused():
    import builtins

    payload = pickle.dumps(Exploit())
    try:
        pickle.loads(payload)  # the demonstration; a real payload would call os.system
        assert builtins.handbook_pwned is True  # the sender's code ran in this process
    finally:
        builtins.__dict__.pop("handbook_pwned", None)

    for content_type in (PICKLE, JSON, "application/octet-stream"):
        with pytest.raises(UnsafePayload, match="refusing to unpickle a .*-byte message: .*remote code execution"):
            decode(WireMessage(content_type, payload))
    assert not hasattr(builtins, "handbook_pwned")  # nothing ran
    with pytest.raises(UnsafePayload, match="pickle is not a wire format"):
        encode(example_envelope(), PICKLE)


def test_kombu_also_refuses_pickle_unless_told_otherwise():
    with pytest.raises(kombu_exceptions.ContentDisallowed):
        kombu_serialization.loads(pickle.dumps(Exploit()), PICKLE, "binary")
    assert kombu_serialization.registry._encoders["msgpack"].content_type == MSGPACK
    assert {PICKLE, MSGPACK, "application/x-yaml"} <= kombu_serialization.registry._disabled_content_types


# -- bad bytes -----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("message", "reason"),
    [
        (WireMessage(JSON, b"{not json"), "application/json body does not decode"),
        (WireMessage(MSGPACK, b"\xc1"), "application/x-msgpack body does not decode"),
        (WireMessage(JSON, b"[1, 2]"), "body is a list, not an envelope object"),
        (WireMessage("text/csv", b"a,b"), "unsupported content type 'text/csv'"),
        (WireMessage(AVRO, b"\x00"), "unsupported content type"),  # no task=...: schema unknown
    ],
)
def test_undecodable_messages_raise_malformed_job(message, reason):
    with pytest.raises(MalformedJob, match=reason):
        decode(message)


def test_msgpack_defaults_this_recipe_relies_on():
    """msgpack >= 1.0: bytes stay bytes, str stays str, non-string map keys are refused."""
    assert msgpack.unpackb(msgpack.packb({"b": b"\x00", "s": "é"})) == {"b": b"\x00", "s": "é"}
    with pytest.raises(ValueError, match="not allowed for map key"):
        msgpack.unpackb(msgpack.packb({1: 2}))
    with pytest.raises(ValueError, match="can not serialize 'datetime.datetime' object where tzinfo=None"):
        msgpack.packb(dt.datetime(2026, 1, 1), datetime=True)
    aware = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)
    with pytest.raises(TypeError):
        msgpack.packb(aware)  # datetime=False by default: refused
    assert isinstance(msgpack.unpackb(msgpack.packb(aware, datetime=True)), msgpack.Timestamp)  # timestamp=0


# -- sizes ----------------------------------------------------------------------------------
def test_size_table_is_computed_and_ranks_the_formats():
    table = size_table()
    header, rows = table.header, table.rows
    assert header[0] == "format" and len(rows) == 4
    sizes = {row[0]: (int(row[2]), int(row[3])) for row in rows}
    assert sizes["Avro"][0] < sizes["MessagePack"][0] < sizes["JSON"][0]
    # JSON pays base64 for bytes: 2 KiB of PDF costs about 4/3 of that
    assert sizes["JSON"][1] - sizes["JSON"][0] == pytest.approx(2048 * 4 / 3, rel=0.02)
    assert sizes["MessagePack"][1] - sizes["MessagePack"][0] == pytest.approx(2048, abs=8)


def test_oversized_message_is_refused_at_enqueue_with_numbers(r):
    q = EnvelopeQueue(r, "big", limit=1024)
    with pytest.raises(PayloadTooLarge, match=r"application/json message is \d+ bytes, over the 1024-byte limit of this Redis queue; .*claim check"):
        q.enqueue(example_envelope())
    assert r.llen(q.pending_key) == 0
    assert LIMITS["sqs"] == 1_048_576
    check_size(WireMessage(JSON, b"x" * 1024), limit=1024)  # exactly at the limit is fine


def test_claim_check_keeps_large_args_out_of_the_queue(r):
    claims = ClaimCheck(r, threshold=1024)
    env = example_envelope()
    small = replace(env, args={**env.args, "receipt_pdf": b""})
    assert claims.check_in(small) == small  # under the threshold: unchanged
    ticket = claims.check_in(env)
    assert set(ticket.args) == {"claim_check"}
    assert len(encode(ticket).body) < 1024
    assert claims.check_out(decode(encode(ticket))) == env
    binary_client(r).delete(ticket.args["claim_check"]["key"])
    with pytest.raises(MalformedJob, match="claim check claim:[0-9a-f]+ of job '0f8f.*' is gone"):
        claims.check_out(ticket)


def test_claim_check_refuses_a_reference_it_did_not_write(r):
    """The reference comes from the queue: a forged one must not name any key it likes."""
    claims = ClaimCheck(r, threshold=1024)
    claims.max_bytes = 4096
    ticket = claims.check_in(example_envelope())
    ref = ticket.args["claim_check"]
    r.set("session:admin", "secret")
    forged = [
        {**ref, "key": "session:admin"},  # another key: before, read if the sha256 matched
        {**ref, "key": "some:list"},  # before: redis.ResponseError (wrong type), not MalformedJob
        {"sha256": ref["sha256"], "bytes": ref["bytes"]},  # before: KeyError
        {**ref, "sha256": ref["sha256"].upper(), "key": "claim:" + ref["sha256"].upper()},
    ]
    for bad in forged:
        with pytest.raises(MalformedJob, match="is not a reference this code wrote"):
            claims.check_out(replace(ticket, args={"claim_check": bad}))
    for size in (4097, -1, "2"):
        with pytest.raises(MalformedJob, match=r"not a reference this code wrote \(claim:<sha256>, at most 4096 bytes\)"):
            claims.check_out(replace(ticket, args={"claim_check": {**ref, "bytes": size}}))
    with pytest.raises(MalformedJob, match="does not match its size and sha256"):
        claims.check_out(replace(ticket, args={"claim_check": {**ref, "bytes": ref["bytes"] - 1}}))
    assert claims.check_out(ticket) == example_envelope() and ClaimCheck.max_bytes == 32 * 1024 * 1024


@pytest.mark.parametrize("content_type", [JSON, MSGPACK])
def test_decode_refuses_deep_nesting_and_oversized_bodies_as_malformed(content_type):
    deep_json = b'{"v": 2, "args": ' + b"[" * 2000 + b"]" * 2000 + b"}"
    deep_msgpack = b"\x82\xa1v\x02\xa4args" + b"\x91" * 40 + b"\xc0"  # 40 levels: parses, too deep
    body = deep_json if content_type == JSON else deep_msgpack
    reason = "does not decode: maximum recursion depth" if content_type == JSON else "nested at most 32 levels"
    with pytest.raises(MalformedJob, match=reason):
        decode(WireMessage(content_type, body))
    with pytest.raises(MalformedJob, match=r"body is 1048577 bytes, over the limit"):
        decode(WireMessage(content_type, b" " * 1_048_577))


# -- the queue: dead letters with reasons ---------------------------------------------------
def test_queues_and_claim_checks_on_one_client_share_one_bytes_client(r):
    shared = binary_client(r)
    assert shared is not r and shared.connection_pool is not r.connection_pool
    assert EnvelopeQueue(r, "a").r is EnvelopeQueue(r, "b").r is ClaimCheck(r, threshold=1).r is shared
    assert binary_client(shared) is shared  # a client that returns bytes is used as it is


def test_unknown_version_and_pickle_go_to_the_dead_letter_list_with_the_reason(r):
    q = EnvelopeQueue(r, "jobs")
    raw = binary_client(r)
    future = json.dumps(asdict(example_envelope()) | {"v": 7}, default=str).encode()
    raw.lpush(q.pending_key, frame(WireMessage(JSON, future)))
    raw.lpush(q.pending_key, frame(WireMessage(PICKLE, pickle.dumps(Exploit()))))
    q.enqueue(example_envelope(), MSGPACK)
    done = []
    while q.work_one(done.append):
        pass
    assert done == [example_envelope()]
    reasons = [d["reason"] for d in reversed(q.dead_letters())]
    assert reasons[0].startswith("schema version 7 is newer than this consumer reads (up to 2)")
    assert reasons[1].startswith("refused: refusing to unpickle")
    assert raw.llen(q.processing_key) == 0


@pytest.mark.parametrize("content_type", FORMATS)
def test_the_queue_carries_every_format(r, content_type):
    q = EnvelopeQueue(r, "jobs")
    q.enqueue(example_envelope(), content_type)
    done = []
    assert q.work_one(done.append)
    assert done == [example_envelope()]


@pytest.mark.real_redis("CONFIG GET of proto-max-bulk-len: the server's own default")
def test_redis_string_limit_quoted_on_the_page(redis_url):
    from examples.redis_client import connect

    assert connect(redis_url).config_get("proto-max-bulk-len") == {"proto-max-bulk-len": "536870912"}
