"""Record parsing: every accepted shape, every rejected one (parked, never raised)."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bridge.events import parse_record
from bridge.models import ContactEvent, EventType, RejectedRecord
from tests.events_builder import envelope, lambda_records, transcript, utterance

pytestmark = pytest.mark.unit


def record_with_data(data: str) -> dict[str, Any]:
    record = lambda_records([envelope("c-1", "STARTED")])[0]
    record["kinesis"]["data"] = data
    return record


def parse_event(event: Any) -> ContactEvent | RejectedRecord:
    return parse_record(lambda_records([event])[0])


def test_started_event_parses() -> None:
    parsed = parse_event(envelope("c-1", "STARTED"))
    assert isinstance(parsed, ContactEvent)
    assert parsed.contact_id == "c-1" and parsed.event_type is EventType.STARTED


def test_segments_keep_transcripts_and_count_utterances() -> None:
    event = envelope("c-1", "SEGMENTS", [utterance("t1"), utterance("t1"), transcript("t1", "Hi there", "AGENT")])
    parsed = parse_event(event)
    assert isinstance(parsed, ContactEvent)
    assert [t.id for t in parsed.transcripts] == ["t1"]
    assert parsed.transcripts[0].participant == "AGENT"
    assert parsed.utterances == 2


def test_post_contact_summary_beside_segments_is_accepted() -> None:
    event = envelope("c-1", "SEGMENTS", [])
    event["PostContactSummary"] = {"Status": "COMPLETED", "Content": "Card replaced"}
    parsed = parse_event(event)
    assert isinstance(parsed, ContactEvent) and parsed.summaries[0].content == "Card replaced"


def test_tolerant_input_numeric_strings_lower_case_and_system_role() -> None:
    segment = transcript("t1", role="SYSTEM")
    segment["Transcript"].update(BeginOffsetMillis="10", EndOffsetMillis=20.0, Sentiment="positive")
    parsed = parse_event(envelope("c-1", "segments", [segment]))
    assert isinstance(parsed, ContactEvent)
    t = parsed.transcripts[0]
    assert (t.begin_offset_millis, t.end_offset_millis, t.sentiment, t.participant, t.role) == (
        10,
        20,
        "POSITIVE",
        "AGENT",
        "SYSTEM",
    )


@pytest.mark.parametrize(
    ("data", "reason_class"),
    [
        ("%%% not base64 %%%", "undecodable"),
        (base64.b64encode(b"\xff\xfe\xfa").decode(), "undecodable"),
        (base64.b64encode(b"{not json").decode(), "invalid_json"),
        (base64.b64encode(b"[1, 2]").decode(), "malformed"),
        (
            base64.b64encode(
                json.dumps({"Version": "2.0.0", "ContactId": "c", "StreamingEventType": "X"}).encode()
            ).decode(),
            "unsupported",
        ),
        (
            base64.b64encode(json.dumps({**envelope("c", "STARTED"), "EventType": "PAUSED"}).encode()).decode(),
            "unsupported",
        ),
        (
            base64.b64encode(json.dumps({**envelope("c", "STARTED"), "Channel": "CHAT"}).encode()).decode(),
            "unsupported",
        ),
        (base64.b64encode(json.dumps({"Version": "1.0.0", "EventType": "STARTED"}).encode()).decode(), "malformed"),
    ],
)
def test_unusable_records_are_rejected_with_a_reason(data: str, reason_class: str) -> None:
    parsed = parse_record(record_with_data(data))
    assert isinstance(parsed, RejectedRecord)
    assert parsed.reason_class == reason_class
    assert parsed.record.data_b64 == data  # the raw payload is kept for parking


def test_bad_transcript_is_listed_while_good_ones_survive() -> None:
    bad = transcript("t2")
    del bad["Transcript"]["Content"]
    negative = transcript("t3", begin=-5)
    parsed = parse_event(envelope("c-1", "SEGMENTS", [transcript("t1"), bad, negative]))
    assert isinstance(parsed, ContactEvent)
    assert [t.id for t in parsed.transcripts] == ["t1"]
    assert len(parsed.invalid_segments) == 2
    assert "Content" in parsed.invalid_segments[0] and "BeginOffsetMillis" in parsed.invalid_segments[1]


def test_reject_reason_never_contains_content() -> None:
    bad = transcript("t9", content="my card is 4111 1111 1111 1111", role="NOBODY")
    parsed = parse_event(envelope("c-1", "SEGMENTS", [bad]))
    assert isinstance(parsed, ContactEvent)
    assert "4111" not in " ".join(parsed.invalid_segments)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=5),
    max_leaves=25,
)
segment_like = st.fixed_dictionaries(
    {},
    optional={
        "Transcript": st.dictionaries(
            st.sampled_from(
                [
                    "Id",
                    "Content",
                    "ParticipantId",
                    "ParticipantRole",
                    "BeginOffsetMillis",
                    "EndOffsetMillis",
                    "Sentiment",
                    "IssuesDetected",
                ]
            ),
            json_values,
            max_size=8,
        ),
        "Utterance": json_values,
        "Categories": json_values,
        "PostContactSummary": json_values,
    },
)
event_like = st.fixed_dictionaries(
    {},
    optional={
        "Version": st.sampled_from(["1.0.0", "2.0.0", 1, None]),
        "Channel": st.sampled_from(["VOICE", "CHAT", 3]),
        "ContactId": st.text(max_size=10) | st.integers(),
        "InstanceId": json_values,
        "EventType": st.sampled_from(["STARTED", "SEGMENTS", "COMPLETED", "FAILED", "OTHER", 5]),
        "Segments": st.lists(segment_like | json_values, max_size=5) | json_values,
        "PostContactSummary": json_values,
    },
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(payload=event_like | json_values)
def test_parser_never_raises_on_any_json(payload: Any) -> None:
    parsed = parse_event(payload)
    assert isinstance(parsed, ContactEvent | RejectedRecord)


@settings(max_examples=200, deadline=None)
@given(data=st.binary(max_size=64))
def test_parser_never_raises_on_any_bytes(data: bytes) -> None:
    parsed = parse_record(record_with_data(base64.b64encode(data).decode()))
    assert isinstance(parsed, ContactEvent | RejectedRecord)
