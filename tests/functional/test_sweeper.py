"""The sweeper's real handler over moto (the table and its sparse index, created from template.yaml) and the
emulator over HTTP, next to the real bridge handler."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import boto3
import pytest

from bridge import sweeper
from bridge.adapters.dynamodb import SWEPT, DynamoContactStore
from bridge.models import ContactState, ContactStatus
from tests.events_builder import call_events, envelope, lambda_records, transcript
from tests.functional.conftest import Stack
from voicebridge.feed.replay import ReplayContext

pytestmark = pytest.mark.functional
HOUR = 3600


@pytest.fixture(autouse=True)
def _fresh_sweeper() -> Iterator[None]:
    sweeper.reset()
    yield
    sweeper.reset()


def store(stack: Stack) -> DynamoContactStore:
    return DynamoContactStore(boto3.client("dynamodb"), stack.environment["CONTACT_TABLE"])


def state(stack: Stack, contact_id: str) -> ContactState:
    return store(stack).load_many([contact_id])[contact_id]


def age(stack: Stack, contact_id: str, seconds: int, stream: bool = True) -> None:
    """Pretend the contact's last activity was ``seconds`` ago (a rewrite through the bridge's own PutItem): on the
    wall clock (``updated_at``) and, unless ``stream`` is False, on the stream's clock too (its last record's
    arrival, against how far the bridge has read its shard)."""
    current = state(stack, contact_id)
    aged = current.evolve(
        updated_at=current.updated_at - seconds,
        last_arrival=current.last_arrival - seconds if stream else current.last_arrival,
    )
    store(stack).save(aged, expected_version=current.version)


def sweep(event: dict[str, Any] | None = None) -> dict[str, Any]:
    result: dict[str, Any] = sweeper.lambda_handler(event or {"detail-type": "Scheduled Event"}, ReplayContext())
    return result


def open_call(stack: Stack, contact_id: str, turns: int = 2) -> None:
    """A call whose COMPLETED never arrives."""
    assert stack.invoke(lambda_records(call_events(contact_id, turns, end=""))) == {"batchItemFailures": []}
    assert stack.interactions(contact_id)[0]["state"] != "closed_complete"


def test_idle_open_contact_is_closed_with_the_recording_url_and_a_fresh_one_is_not(stack: Stack) -> None:
    open_call(stack, "c-idle")
    open_call(stack, "c-fresh")
    age(stack, "c-idle", 2 * HOUR)

    assert sweep() == {"mode": "schedule", "candidates": 1, "swept": 1, "conflicts": 0, "errors": 0, "deferred": 0}

    (idle,) = stack.interactions("c-idle")
    assert idle["state"] == "closed_complete"
    assert idle["recording_url"] == "https://example.my.connect.aws/contact-trace-records/details/c-idle"
    assert stack.interactions("c-fresh")[0]["state"] != "closed_complete"
    assert state(stack, "c-idle").status is ContactStatus.CLOSED
    assert state(stack, "c-idle").close_sequence_number == SWEPT
    assert state(stack, "c-fresh").status is ContactStatus.OPEN
    # the second run finds nothing: the swept contact left the sparse index
    assert sweep()["candidates"] == 0


def test_the_bridge_treats_a_swept_contact_as_closed(stack: Stack) -> None:
    open_call(stack, "c-late")
    age(stack, "c-late", 2 * HOUR)
    sweep()

    late = lambda_records([envelope("c-late", "SEGMENTS", [transcript("late-1")])], first_sequence_number=10**55)
    assert stack.invoke(late) == {"batchItemFailures": []}
    (parked,) = stack.parked()
    assert parked["reason_class"] == "after_close"
    assert stack.transcript_ids("c-late") == ["c-late-t0000", "c-late-t0001"]
    # a COMPLETED that finally arrives is a duplicate, not a second close
    assert stack.invoke(lambda_records([envelope("c-late", "COMPLETED")], first_sequence_number=10**56)) == {
        "batchItemFailures": []
    }
    assert not stack.parked()


def test_a_concurrent_bridge_write_wins_the_conditional_write(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> None:
    open_call(stack, "c-race")
    age(stack, "c-race", 2 * HOUR)
    wired = sweeper.get_sweeper()
    real_load = wired.sweeper.store.load_many

    def load_then_bridge_writes(contact_ids: list[str]) -> dict[str, ContactState]:
        loaded = real_load(contact_ids)
        # Between the sweeper's read and its write, a new final turn reaches the bridge.
        more = lambda_records(
            [envelope("c-race", "SEGMENTS", [transcript("race-1", begin=10_000, end=11_000)])],
            first_sequence_number=10**55,
        )
        assert stack.invoke(more) == {"batchItemFailures": []}
        return loaded

    monkeypatch.setattr(wired.sweeper.store, "load_many", load_then_bridge_writes)

    result = sweep()

    assert (result["conflicts"], result["swept"]) == (1, 0)
    assert stack.interactions("c-race")[0]["state"] != "closed_complete"
    assert stack.transcript_ids("c-race") == ["c-race-t0000", "c-race-t0001", "race-1"]
    assert state(stack, "c-race").status is ContactStatus.OPEN


def test_closed_contacts_are_untouched(stack: Stack) -> None:
    stack.invoke(lambda_records(call_events("c-done", 1)))
    before = state(stack, "c-done")
    age(stack, "c-done", 2 * HOUR)
    aged = state(stack, "c-done")
    closed_at = stack.interactions("c-done")[0]["closed_at"]
    patches = stack.emulator.stats()

    assert sweep()["candidates"] == 0

    assert stack.emulator.stats() == patches  # not a single request to ServiceNow
    assert state(stack, "c-done") == aged and aged.status is before.status is ContactStatus.CLOSED
    assert stack.interactions("c-done")[0]["closed_at"] == closed_at


def test_claimed_contact_whose_interaction_was_never_created_is_marked_closed(stack: Stack) -> None:
    store(stack).claim("c-claimed", "inst-1", int(time.time()) - 2 * HOUR)

    result = sweep()

    assert (result["swept"], result["errors"]) == (1, 0)
    assert stack.interactions("c-claimed") == []
    assert state(stack, "c-claimed").status is ContactStatus.CLOSED


def test_disconnected_event_closes_an_idle_contact_but_not_one_still_talking(stack: Stack) -> None:
    open_call(stack, "c-hold")
    open_call(stack, "c-talk")
    age(stack, "c-hold", 5 * 60)  # silent (on hold) for five minutes, then hung up

    def disconnected(contact_id: str) -> dict[str, Any]:
        return sweep(
            {
                "source": "aws.connect",
                "detail-type": "Amazon Connect Contact Event",
                "detail": {"eventType": "DISCONNECTED", "contactId": contact_id, "channel": "VOICE"},
            }
        )

    assert disconnected("c-hold")["swept"] == 1
    assert disconnected("c-talk")["swept"] == 0  # its last segments may still be on their way
    assert stack.interactions("c-hold")[0]["state"] == "closed_complete"
    assert stack.interactions("c-talk")[0]["state"] != "closed_complete"


@pytest.mark.parametrize(
    "refusal",
    [
        {"status": 503, "times": 100},  # unavailable until Kinesis gives the batch up
        {"status": 403, "times": 1},  # refused once: the contact is parked
    ],
    ids=["503-until-give-up", "403"],
)
def test_a_close_that_never_got_through_is_closed_by_the_sweeper(stack: Stack, refusal: dict[str, Any]) -> None:
    """Issue 10 §3: the contact is marked closed before the PATCH, but stays in the sweeper's index (close_pending)
    until ServiceNow confirmed the close; before, it dropped out of the index and stayed open forever."""
    from voicebridge.feed.fixtures import from_lambda_record
    from voicebridge.feed.shard import ShardDriver

    stack.emulator.add_fault_rules([{"action": "status", "method": "PATCH", "path": "/state$", **refusal}])
    records = lambda_records(call_events("c-unclosed", 2))
    report = ShardDriver(
        [from_lambda_record(r) for r in records], lambda e: stack.invoke(e["Records"]), batch_size=100, max_retries=2
    ).run()
    assert report.given_up or stack.parked()
    stack.emulator.clear_faults()
    assert stack.interactions("c-unclosed")[0]["state"] != "closed_complete"
    assert state(stack, "c-unclosed").close_pending

    assert sweep()["candidates"] == 0  # the redelivery gets the first chance: not idle yet
    age(stack, "c-unclosed", 2 * HOUR)
    assert sweep()["swept"] == 1
    assert stack.interactions("c-unclosed")[0]["state"] == "closed_complete"
    assert not state(stack, "c-unclosed").close_pending
    assert sweep()["candidates"] == 0  # out of the index


def test_a_confirmed_close_leaves_the_index(stack: Stack) -> None:
    assert stack.invoke(lambda_records(call_events("c-done", 2))) == {"batchItemFailures": []}
    done = state(stack, "c-done")
    assert done.status is ContactStatus.CLOSED and not done.close_pending
    age(stack, "c-done", 2 * HOUR)
    assert sweep()["candidates"] == 0


def test_a_hang_up_while_the_bridge_is_minutes_behind_loses_nothing(stack: Stack) -> None:
    """Issue 10 §3: the bridge stalled for five minutes (wall-clock idle) on records that are still its newest on
    the stream: DISCONNECTED must not close the call, or every later line would be parked after_close."""
    events = call_events("c-behind", 4)
    assert stack.invoke(lambda_records(events[:3])) == {"batchItemFailures": []}
    age(stack, "c-behind", 5 * 60, stream=False)  # the item was last written 5 minutes ago; the shard is there too
    hang_up = {
        "source": "aws.connect",
        "detail-type": "Amazon Connect Contact Event",
        "detail": {"eventType": "DISCONNECTED", "contactId": "c-behind", "channel": "VOICE"},
    }
    assert sweep(hang_up)["swept"] == 0
    assert stack.invoke(lambda_records(events[3:], first_sequence_number=10**56)) == {"batchItemFailures": []}
    (interaction,) = stack.interactions("c-behind")
    assert interaction["state"] == "closed_complete"
    assert stack.transcript_ids("c-behind") == [f"c-behind-t{i:04d}" for i in range(4)]
    assert not stack.parked()
