"""The function dies while a timed-out POST is still landing in ServiceNow; the redelivery must wait for it."""

from __future__ import annotations

import time

import pytest

from tests.events_builder import envelope, lambda_records, transcript
from tests.functional.conftest import Stack

pytestmark = pytest.mark.functional


class Crash(BaseException):
    """The Lambda runtime dying mid-invocation."""


def test_a_crash_while_a_timed_out_post_settles_does_not_duplicate(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    from bridge import factory

    monkeypatch.setenv("SERVICENOW_READ_TIMEOUT", "0.5")
    stack.invoke(lambda_records([envelope("c-slow", "STARTED")]))
    # ServiceNow answers the next POST /messages after 1.5 s (the client gave up at 0.5 s) and applies it then.
    stack.emulator.add_fault_rules([{"method": "POST", "path": "/messages$", "action": "delay", "delay_ms": 1500}])
    bridge = factory.get_bridge()
    real = bridge.servicenow.find_message_ids

    def dies(*args: object) -> set[str]:  # the function dies while it settles the timed-out POST
        bridge.servicenow.find_message_ids = real
        raise Crash

    bridge.servicenow.find_message_ids = dies
    records = lambda_records([envelope("c-slow", "SEGMENTS", [transcript("t1")])], first_sequence_number=10**50)
    with pytest.raises(Crash):
        stack.invoke(records)
    # Kinesis redelivers at once: t1 is pending and young, so it is read back until the late write shows up
    assert stack.invoke(records) == {"batchItemFailures": []}
    time.sleep(2)
    assert [m["source_message_id"] for m in stack.messages("c-slow")] == ["t1"]


def test_a_crash_while_a_timed_out_create_settles_does_not_open_a_second_interaction(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    from bridge import factory

    monkeypatch.setenv("SERVICENOW_READ_TIMEOUT", "0.5")
    # ServiceNow creates the interaction 1.5 s after the POST (the client gave up at 0.5 s).
    stack.emulator.add_fault_rules(
        [{"method": "POST", "path": "voice-interactions$", "action": "delay", "delay_ms": 1500}]
    )
    bridge = factory.get_bridge()
    real = bridge.servicenow.find_interaction

    def dies(*args: object) -> str | None:  # the function dies while it waits for the timed-out create
        bridge.servicenow.find_interaction = real
        raise Crash

    bridge.servicenow.find_interaction = dies
    records = lambda_records(
        [envelope("c-late-open", "STARTED"), envelope("c-late-open", "SEGMENTS", [transcript("t1")])]
    )
    with pytest.raises(Crash):
        stack.invoke(records)
    # Kinesis redelivers at once: the claim is young, so the bridge waits for the late interaction and adopts it
    assert stack.invoke(records) == {"batchItemFailures": []}
    time.sleep(2)
    assert len(stack.interactions("c-late-open")) == 1
    assert stack.transcript_ids("c-late-open") == ["t1"]
