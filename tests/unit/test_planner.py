"""The pure planner: what to open, send, reconcile, close and park, from events plus stored state."""

from __future__ import annotations

import pytest

from bridge.events import parse_record
from bridge.models import ContactEvent, ContactState, ContactStatus, PendingEntry, SentSet
from bridge.planner import PlanOptions, plan_contact
from tests.events_builder import envelope, lambda_records, transcript, utterance

pytestmark = pytest.mark.unit
C = "contact-1"


def events_of(payloads: list[dict], first: int = 1000) -> list[ContactEvent]:
    parsed = [parse_record(r) for r in lambda_records(payloads, first_sequence_number=first)]
    assert all(isinstance(p, ContactEvent) for p in parsed)
    return parsed  # type: ignore[return-value]


def open_state(**changes: object) -> ContactState:
    state = ContactState(C, ContactStatus.OPEN, 3, "inst", "i" * 32, "c" * 32)
    return state.evolve(**changes)


def test_first_contact_event_opens_and_sends_transcripts_not_utterances() -> None:
    events = events_of([envelope(C, "STARTED"), envelope(C, "SEGMENTS", [utterance("t1"), transcript("t1")])])
    plan = plan_contact(events, None)
    assert plan.open and [m.id for m in plan.messages] == ["t1"]
    assert plan.utterances == 1 and not plan.close


def test_late_join_without_started_opens() -> None:
    plan = plan_contact(events_of([envelope(C, "SEGMENTS", [transcript("t1")])]), None)
    assert plan.open and len(plan.messages) == 1


def test_completed_closes_after_messages_in_same_batch() -> None:
    events = events_of(
        [
            envelope(C, "SEGMENTS", [transcript("t1")]),
            envelope(C, "COMPLETED"),
            envelope(C, "SEGMENTS", [transcript("t2")]),
        ]
    )
    plan = plan_contact(events, open_state())
    assert plan.close and [m.id for m in plan.messages] == ["t1", "t2"]
    assert plan.close_sequence_number == events[1].record.sequence_number


def test_already_sent_segments_are_duplicates() -> None:
    plan = plan_contact(
        events_of([envelope(C, "SEGMENTS", [transcript("t1"), transcript("t2")])]),
        open_state(sent=SentSet().with_ids(["t1"])),
    )
    assert [m.id for m in plan.messages] == ["t2"] and plan.duplicates == 1


def test_same_segment_twice_in_one_batch_is_sent_once() -> None:
    plan = plan_contact(
        events_of([envelope(C, "SEGMENTS", [transcript("t1")]), envelope(C, "SEGMENTS", [transcript("t1")])]),
        open_state(),
    )
    assert len(plan.messages) == 1 and plan.duplicates == 1


def test_redelivered_pending_segment_is_unconfirmed_not_duplicate() -> None:
    events = events_of([envelope(C, "SEGMENTS", [transcript("t1")])], first=5000)
    state = open_state(sent=SentSet().with_ids(["t1"]), pending=(PendingEntry("t1", "5000"),))
    plan = plan_contact(events, state)
    assert [m.id for m in plan.unconfirmed] == ["t1"] and not plan.messages and plan.writes_state


def test_pending_older_than_batch_is_confirmed_and_dropped() -> None:
    state = open_state(sent=SentSet().with_ids(["t0"]), pending=(PendingEntry("t0", "10"),))
    plan = plan_contact(events_of([envelope(C, "SEGMENTS", [transcript("t1")])], first=5000), state)
    assert plan.keep_pending == () and not plan.unconfirmed


def test_pending_from_another_half_of_a_bisected_batch_is_kept() -> None:
    state = open_state(sent=SentSet().with_ids(["t9"]), pending=(PendingEntry("t9", "99999"),))
    plan = plan_contact(events_of([envelope(C, "SEGMENTS", [transcript("t1")])], first=5000), state)
    assert plan.keep_pending == (PendingEntry("t9", "99999"),)


def test_new_segments_after_close_are_parked_not_sent() -> None:
    state = open_state(status=ContactStatus.CLOSED, close_sequence_number="1", sent=SentSet().with_ids(["t1"]))
    events = events_of([envelope(C, "SEGMENTS", [transcript("t1"), transcript("t2")])])
    plan = plan_contact(events, state)
    assert not plan.messages and plan.after_close == tuple(events) and plan.duplicates == 1
    assert not plan.open


def test_redelivered_closing_record_recloses_other_end_events_are_duplicates() -> None:
    events = events_of([envelope(C, "COMPLETED")], first=777)
    state = open_state(status=ContactStatus.CLOSED, close_sequence_number="777")
    assert plan_contact(events, state).reclose
    other = open_state(status=ContactStatus.CLOSED, close_sequence_number="1")
    plan = plan_contact(events, other)
    assert not plan.reclose and plan.duplicates == 1 and not plan.writes_state


def test_notes_are_internal_deterministic_and_switchable() -> None:
    segment = {
        "Categories": {
            "MatchedCategories": ["Fraud"],
            "MatchedDetails": {"Fraud": {"PointsOfInterest": [{"BeginOffsetMillis": 100, "EndOffsetMillis": 900}]}},
        }
    }
    summary = {"PostContactSummary": {"Status": "COMPLETED", "Content": "Card replaced"}}
    events = events_of([envelope(C, "SEGMENTS", [transcript("t1", end=5000), segment, summary])])
    plan = plan_contact(events, open_state())
    notes = [m for m in plan.messages if m.internal]
    assert len(notes) == 2 and all(n.participant == "AGENT" for n in notes)
    assert notes[0].begin_offset_millis == 100 and notes[1].begin_offset_millis == 5000
    again = plan_contact(
        events_of([envelope(C, "SEGMENTS", [transcript("t1", end=5000), segment, summary])]), open_state()
    )
    assert [n.id for n in notes] == [m.id for m in again.messages if m.internal]
    assert not [m for m in plan_contact(events, open_state(), PlanOptions(forward_notes=False)).messages if m.internal]


def test_only_utterances_on_open_contact_writes_nothing() -> None:
    plan = plan_contact(events_of([envelope(C, "SEGMENTS", [utterance("t1")])]), open_state())
    assert not plan.writes_state and plan.utterances == 1


def test_message_mapping_follows_design() -> None:
    segment = transcript("t1", "Hi", "SYSTEM", begin=5, end=9, sentiment="NEGATIVE")
    segment["Transcript"]["IssuesDetected"] = [{"CharacterOffsets": {"BeginOffsetChar": 0, "EndOffsetChar": 2}}]
    payload = plan_contact(events_of([envelope(C, "SEGMENTS", [segment])]), open_state()).messages[0].to_payload()
    assert payload == {
        "id": "t1",
        "content": "Hi",
        "participantId": "AGENT",
        "beginOffsetMillis": 5,
        "endOffsetMillis": 9,
        "isInternalMessage": False,
        "isEvent": False,
        "sentiment": "NEGATIVE",
        "attributes": [{"key": "participantRole", "value": "SYSTEM"}, {"key": "issuesDetected", "value": "0-2"}],
    }
