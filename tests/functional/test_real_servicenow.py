"""Issue 9 §2: delivery holds against a ServiceNow that behaves like a real instance (sessions, quotas, filtered
reads, a finite invocation). Each test goes through the real handler, moto and the emulator over HTTP, and would
fail without its fix (the test names say which)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest

from bridge.processor import BatchResult
from tests.events_builder import call_events, envelope, lambda_records, transcript
from tests.functional.conftest import Stack
from voicebridge.emulator import EmulatorOptions
from voicebridge.feed.fixtures import from_lambda_record
from voicebridge.feed.shard import ShardDriver

pytestmark = pytest.mark.functional
MESSAGES_READ = "/api/now/table/sys_cs_message"
INTERACTIONS_READ = "/api/now/table/interaction"


class Crash(BaseException):
    """The Lambda runtime dying mid-invocation."""


def rule(action: str, path: str, method: str = "POST", **extra: Any) -> dict[str, Any]:
    return {"action": action, "path": path, "method": method, **extra}


def deliver(stack: Stack, records: list[dict[str, Any]], timeout_s: float = 60.0, max_retries: int = 10) -> Any:
    driver = ShardDriver(
        [from_lambda_record(r) for r in records],
        lambda event: stack.invoke(event["Records"], timeout_s=timeout_s),
        batch_size=100,
        max_retries=max_retries,
    )
    report = driver.run()
    assert not report.given_up, report
    return report


@pytest.fixture
def results() -> Iterator[list[BatchResult]]:
    """Every BatchResult of the stack's bridge (outcomes as values: counts the metrics are made of)."""
    from bridge import factory

    seen: list[BatchResult] = []
    factory.get_bridge().processor.observers.append(seen.append)
    yield seen


def total(results: list[BatchResult], field: str) -> int:
    return sum(getattr(o, field) for r in results for o in r.outcomes)


def interleaved(*contacts: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Events of several calls, round-robin, as a shard carries concurrent calls."""
    out: list[dict[str, Any]] = []
    for index in range(max(len(c) for c in contacts)):
        out.extend(c[index] for c in contacts if index < len(c))
    return out


def ids(stack: Stack, contact: str) -> list[str]:
    return stack.transcript_ids(contact)


def expected(contact: str, turns: int) -> list[str]:
    return [f"{contact}-t{i:04d}" for i in range(turns)]


# -- 1. no shared session -------------------------------------------------------------------------------------


@pytest.mark.parametrize("emulator_options", [EmulatorOptions(sessions=True, session_queue=0, latency_ms=20)])
def test_concurrent_contacts_never_queue_behind_one_servicenow_session(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With one session per cookie and no queue, any request sharing a session with a running one is answered 202:
    a client keeping the JSESSIONID it was given would see 202s from the second wave on."""
    monkeypatch.setenv("MAX_WORKERS", "16")
    calls = [call_events(f"c-s{i:02d}", 3) for i in range(16)]
    deliver(stack, lambda_records(interleaved(*calls)))
    for i in range(16):
        assert ids(stack, f"c-s{i:02d}") == expected(f"c-s{i:02d}", 3)
    sessions = stack.emulator.stats()["sessions"]
    assert sessions["busy_202"] == 0 and sessions["waited"] == 0


# -- 2. an uncertain POST stays uncertain ---------------------------------------------------------------------


@pytest.mark.parametrize("read_status", [429, 503])
def test_applied_then_500_with_a_throttled_read_back_duplicates_nothing(stack: Stack, read_status: int) -> None:
    stack.emulator.add_fault_rules(
        [
            rule("ambiguous_500", "/messages$"),
            rule("status", MESSAGES_READ, method="GET", status=read_status, times=4),  # every retry of the client
        ]
    )
    deliver(stack, lambda_records(call_events("c-unsure", 10)))
    assert ids(stack, "c-unsure") == expected("c-unsure", 10)  # each line once: the 10 stayed pending
    assert stack.interactions("c-unsure")[0]["state"] == "closed_complete"


def test_messages_the_read_back_found_are_not_resent_when_the_second_post_fails(stack: Stack) -> None:
    """Applied-then-500 for a chunk, the read-back proves it stored; nothing is re-sent, nothing duplicated."""
    stack.invoke(lambda_records([envelope("c-half", "STARTED")]))
    stack.emulator.add_fault_rules([rule("ambiguous_500", "/messages$")])
    deliver(stack, lambda_records(call_events("c-half", 6)[1:], first_sequence_number=10**50))
    assert ids(stack, "c-half") == expected("c-half", 6)


# -- 3. pending entries are cleared once confirmed -------------------------------------------------------------


def test_a_contact_redelivered_only_for_another_contacts_failure_is_not_read_back(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Reads forbidden: before the fix every such contact's lines were re-sent as duplicates."""
    from bridge import factory

    monkeypatch.setenv("MAX_WORKERS", "1")  # contacts in stream order: the first create gets all four 503s
    factory.reset()
    results: list[BatchResult] = []
    factory.get_bridge().processor.observers.append(results.append)
    stack.emulator.add_fault_rules(
        [
            rule("status", "/api/now/table/", method="GET", status=403, times=1000),
            rule("status", "voice-interactions$", status=503, times=4),  # the first contact's create, once
        ]
    )
    failing = call_events("c-fails", 2)
    fine = call_events("c-fine", 6)
    deliver(stack, lambda_records([failing[0], *fine, *failing[1:]]))
    stack.emulator.clear_faults()
    assert ids(stack, "c-fine") == expected("c-fine", 6)
    assert ids(stack, "c-fails") == expected("c-fails", 2)
    assert total(results, "possible_duplicates") == 0 and total(results, "resent") == 0
    assert sum(r.confirmed_writes for r in results) == 1


# -- 4. filtered reads are detected; orphans counted and closed --------------------------------------------------


@pytest.mark.parametrize("emulator_options", [EmulatorOptions(filtered_reads=("sys_cs_message",))])
def test_filtered_read_backs_count_possible_duplicates_and_warn_once(stack: Stack, results: list[BatchResult]) -> None:
    import io
    import logging

    import bridge.runner
    from bridge.log import logger

    bridge.runner._filtered_reads_logged = False
    sink = io.StringIO()
    handler = logging.StreamHandler(sink)
    handler.setFormatter(logger.registered_formatter)
    logger._logger.addHandler(handler)
    events = call_events("c-acl", 4)
    deliver(stack, lambda_records(events[:3]))  # STARTED + two turns, confirmed
    stack.emulator.add_fault_rules([rule("ambiguous_500", "/messages$", times=2)])
    deliver(stack, lambda_records(events[3:4], first_sequence_number=10**56))
    deliver(stack, lambda_records(events[4:], first_sequence_number=10**57))
    # The empty read-back is not taken for "missing": the probe shows no message of this conversation at all.
    assert total(results, "possible_duplicates") == 2
    logger._logger.removeHandler(handler)
    warnings = [line for line in sink.getvalue().splitlines() if '"reads_filtered"' in line]
    assert len(warnings) == 1


@pytest.mark.parametrize("emulator_options", [EmulatorOptions(filtered_reads=("interaction",))])
def test_a_blind_recreate_after_a_crash_is_counted(stack: Stack, results: list[BatchResult]) -> None:
    from bridge import factory

    bridge = factory.get_bridge()
    real = bridge.store.save

    def dies(*args: object, **kwargs: object) -> object:  # the function dies right after ServiceNow created it
        bridge.store.save = real
        raise Crash

    bridge.store.save = dies
    records = lambda_records(call_events("c-orphan", 2))
    with pytest.raises(Crash):
        stack.invoke(records)
    deliver(stack, records)
    assert total(results, "possible_orphans") == 1
    assert len(stack.emulator.store.rows("interaction", "client_session_id=c-orphan")) == 2  # documented window


def test_a_late_create_found_at_close_is_closed_too(
    stack: Stack, results: list[BatchResult], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A create that lands after the settle time: the bridge created a second one; at close it finds the late one
    (orphan check) and closes it, so no interaction stays open."""
    monkeypatch.setenv("SERVICENOW_READ_TIMEOUT", "0.5")
    monkeypatch.setenv("SERVICENOW_SETTLE_SECONDS", "0.5")
    from bridge import factory

    factory.reset()
    factory.get_bridge().processor.observers.append(results.append)
    stack.emulator.add_fault_rules([rule("delay", "voice-interactions$", delay_ms=2500)])
    events = call_events("c-late", 2)
    deliver(stack, lambda_records(events[:-1]))
    time.sleep(2.5)  # the first create lands
    deliver(stack, lambda_records(events[-1:], first_sequence_number=10**56))
    interactions = stack.interactions("c-late")
    assert len(interactions) == 2
    assert {i["state"] for i in interactions} == {"closed_complete"}
    assert total(results, "orphans_closed") == 1


# -- 5. every request is bounded by the invocation's time ----------------------------------------------------------


def test_no_request_outlives_the_invocation(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> None:
    from bridge import factory

    bridge = factory.get_bridge()
    session = bridge.servicenow.session
    real = session.request
    budgets: list[tuple[float, float]] = []  # (connect + read timeout, time left to the deadline)

    def recording(*args: Any, **kwargs: Any) -> Any:
        connect, read = kwargs["timeout"]
        budgets.append((connect + read, bridge.servicenow.deadline - time.monotonic()))
        return real(*args, **kwargs)

    monkeypatch.setattr(session, "request", recording)
    stack.invoke(lambda_records(call_events("c-short", 3)), timeout_s=6.0)  # 4 s after the safety margin
    assert budgets and all(timeout <= left + 0.01 for timeout, left in budgets)
    assert any(timeout < 13.0 for timeout, _left in budgets)  # 3.05 + 10 would not have fitted


# -- 6. settling is not cut short ------------------------------------------------------------------------------


def test_a_settle_cut_short_by_the_deadline_hands_the_contact_back(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The POST times out (0.5 s) and lands at 3 s; an invocation with ~4.5 s cannot wait 10 s for it. Before the
    fix it concluded "not applied" and re-sent: a duplicate once the first landed."""
    monkeypatch.setenv("SERVICENOW_READ_TIMEOUT", "0.5")
    monkeypatch.setenv("SERVICENOW_SETTLE_SECONDS", "10")
    from bridge import factory

    factory.reset()
    stack.invoke(lambda_records([envelope("c-cut", "STARTED")]))
    stack.emulator.add_fault_rules([rule("delay", "/messages$", delay_ms=3000)])
    records = lambda_records([envelope("c-cut", "SEGMENTS", [transcript("t1")])], first_sequence_number=10**50)
    response = stack.invoke(records, timeout_s=6.5)
    assert response["batchItemFailures"]  # handed back, still pending
    deliver(stack, records, timeout_s=6.5, max_retries=30)
    time.sleep(3)
    assert [m["source_message_id"] for m in stack.messages("c-cut")] == ["t1"]


# -- 7. a definite create failure is not waited for -------------------------------------------------------------


def test_a_create_refused_with_503_is_retried_without_waiting_for_it(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    from bridge import factory

    monkeypatch.setenv("SERVICENOW_SETTLE_SECONDS", "10")
    factory.reset()
    bridge = factory.get_bridge()
    lookups: list[float] = []
    real = bridge.servicenow.find_interaction

    def counting(contact: str) -> str | None:
        lookups.append(time.monotonic())
        return real(contact)

    bridge.servicenow.find_interaction = counting
    stack.emulator.add_fault_rules([rule("status", "voice-interactions$", status=503, times=4)])
    records = lambda_records(call_events("c-refused", 2))
    assert stack.invoke(records)["batchItemFailures"]
    assert stack.invoke(records) == {"batchItemFailures": []}
    # One lookup before the create and one after it (the orphan probe); before the fix the young claim was
    # polled for the whole settle time (0, 0.25, 0.75, 1.75, 3.75, 7.75 s...).
    assert len(lookups) == 2
    assert ids(stack, "c-refused") == expected("c-refused", 2)


# -- 8. long quotas and outages hold the shard instead of burning the retries ------------------------------------


@pytest.fixture
def holds(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[float]]:
    """The processor's hold, recorded instead of slept (the hold itself is what is asserted)."""
    from bridge import factory

    monkeypatch.setenv("OUTAGE_HOLD_SECONDS", "900")
    factory.reset()
    held: list[float] = []
    factory.get_bridge().processor.sleep = held.append
    yield held


def test_an_hourly_quota_holds_the_shard_for_the_invocation(stack: Stack, holds: list[float]) -> None:
    stack.emulator.add_fault_rules([rule("rate_limited", "/cs/", method=None, retry_after=1800)])
    started = time.monotonic()
    response = stack.invoke(lambda_records(call_events("c-quota", 2)), timeout_s=30)
    assert response["batchItemFailures"]
    assert time.monotonic() - started < 10  # no in-invocation retries against a 30-minute Retry-After
    (hold,) = holds
    assert 25 < hold <= 28  # the rest of the invocation (30 s less the 2 s safety margin)
    # The next invocation does not even ask: the gate is closed for every worker.
    before = stack.emulator.stats()["total"]
    stack.invoke(lambda_records(call_events("c-quota", 2)), timeout_s=30)
    assert stack.emulator.stats()["total"] == before and len(holds) == 2


def test_an_outage_holds_the_shard_but_a_partial_failure_does_not(stack: Stack, holds: list[float]) -> None:
    stack.invoke(lambda_records([envelope("c-up", "STARTED"), envelope("c-down", "STARTED")]))
    (down,) = stack.interactions("c-down")
    stack.emulator.add_fault_rules([rule("status", f"{down['sys_id']}/messages$", status=503, times=4)])
    assert holds == []
    records = lambda_records(
        [envelope("c-down", "SEGMENTS", [transcript("d1")]), envelope("c-up", "SEGMENTS", [transcript("u1")])],
        first_sequence_number=10**50,
    )
    stack.invoke(records)  # c-down's POST refused 4 times, c-up's went through: no hold
    assert holds == []
    stack.emulator.add_fault_rules([rule("status", f"{down['sys_id']}/messages$", status=503, times=4)])
    stack.invoke(lambda_records([envelope("c-down", "SEGMENTS", [transcript("d2")])], first_sequence_number=10**51))
    assert holds == [2.0]  # everything with work was refused: an outage begins, the hold backs off from 2 s
    for sequence in (52, 53, 54):  # it goes on: each batch in a row that gets nothing through holds twice as long
        stack.emulator.add_fault_rules([rule("status", f"{down['sys_id']}/messages$", status=503, times=4)])
        redelivered = [envelope("c-down", "SEGMENTS", [transcript(f"d{sequence}")])]
        stack.invoke(lambda_records(redelivered, first_sequence_number=10**sequence))
    assert holds == [2.0, 4.0, 8.0, 16.0]
    stack.invoke(lambda_records([envelope("c-down", "SEGMENTS", [transcript("d9")])], first_sequence_number=10**55))
    stack.emulator.add_fault_rules([rule("status", f"{down['sys_id']}/messages$", status=503, times=4)])
    stack.invoke(lambda_records([envelope("c-down", "SEGMENTS", [transcript("d10")])], first_sequence_number=10**56))
    assert holds[-1] == 2.0  # ServiceNow answered in between: the next outage starts afresh


# -- 9. bad DynamoDB configuration parks ---------------------------------------------------------------------------


def test_a_missing_contact_table_parks_the_batch_with_reason_configuration(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    from bridge import factory

    monkeypatch.setenv("CONTACT_TABLE", "no-such-table")
    factory.reset()
    records = lambda_records(call_events("c-conf", 2))
    assert stack.invoke(records) == {"batchItemFailures": []}
    (parked,) = stack.parked()
    assert parked["reason_class"] == "configuration" and "no-such-table" in parked["reason"]
    assert [r["sequenceNumber"] for r in parked["records"]] == [r["kinesis"]["sequenceNumber"] for r in records]


# -- 10. a poison record is parked once -----------------------------------------------------------------------------


def test_a_poison_record_is_parked_once_across_redeliveries(stack: Stack) -> None:
    call = lambda_records(call_events("c-later", 2), first_sequence_number=10**50)
    poison = json.loads(json.dumps(call[1]))
    poison["kinesis"]["data"] = "bm90IGpzb24="  # "not json"
    poison["kinesis"]["sequenceNumber"] = str(10**50 + 1)
    records = [call[0], poison, *call[1:]]
    for index, record in enumerate(records[2:], start=2):
        record["kinesis"]["sequenceNumber"] = str(10**50 + index)
    stack.emulator.add_fault_rules([rule("status", "voice-interactions$", status=503, times=8)])
    report = deliver(stack, records)
    assert report.invocations == 3  # the contact's create failed twice: the poison's position came back twice
    parked = stack.parked()
    assert [p["reason_class"] for p in parked] == ["invalid_json"]
    assert parked[0]["records"][0]["sequenceNumber"] == str(10**50 + 1)
    assert ids(stack, "c-later") == expected("c-later", 2)


# -- issue 10 §3: a late join (no state, no STARTED) finds the interaction that exists -----------------------------


def test_records_of_a_contact_whose_item_expired_find_its_interaction(stack: Stack, results: list[BatchResult]) -> None:
    """A redrive after the contact item's TTL (7 days) but within the parking retention (14 days) used to open a
    second interaction: with no state and no STARTED the bridge now looks the contact up once before creating."""
    import boto3

    events = call_events("c-expired", 4)
    deliver(stack, lambda_records(events[:3]))
    boto3.client("dynamodb").delete_item(
        TableName=stack.environment["CONTACT_TABLE"], Key={"contact_id": {"S": "c-expired"}}
    )
    deliver(stack, lambda_records(events[3:], first_sequence_number=10**56))
    (interaction,) = stack.interactions("c-expired")
    assert interaction["state"] == "closed_complete"
    assert ids(stack, "c-expired") == expected("c-expired", 4)
    assert total(results, "recovered_interaction") == 1
