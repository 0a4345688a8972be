"""Small builders of decoded Contact Lens events and Lambda records for tests (the payloads; the envelope comes
from voicebridge.feed.fixtures, the same builder replay and benchmarks use)."""

from __future__ import annotations

import itertools
from typing import Any

from voicebridge.feed.fixtures import build_records, kinesis_event

INSTANCE_ID = "a1b2c3d4-5678-90ab-cdef-111111111111"
_ids = itertools.count(1)


def envelope(contact_id: str, event_type: str, segments: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    event: dict[str, Any] = {
        "Version": "1.0.0",
        "Channel": "VOICE",
        "AccountId": "123456789012",
        "InstanceId": INSTANCE_ID,
        "ContactId": contact_id,
        "LanguageCode": "en-US",
        "EventType": event_type,
    }
    if segments is not None:
        event["Segments"] = segments
    return event


def transcript(
    segment_id: str | None = None,
    content: str = "hello",
    role: str = "CUSTOMER",
    begin: int = 0,
    end: int = 1000,
    sentiment: str = "NEUTRAL",
) -> dict[str, Any]:
    return {
        "Transcript": {
            "Id": segment_id or f"t-{next(_ids):06d}",
            "ParticipantId": role,
            "ParticipantRole": role,
            "Content": content,
            "BeginOffsetMillis": begin,
            "EndOffsetMillis": end,
            "Sentiment": sentiment,
        }
    }


def utterance(transcript_id: str, text: str = "hel", role: str = "CUSTOMER") -> dict[str, Any]:
    return {
        "Utterance": {
            "Id": f"u-{next(_ids):06d}",
            "TranscriptId": transcript_id,
            "ParticipantId": role,
            "ParticipantRole": role,
            "PartialContent": text,
            "BeginOffsetMillis": 0,
            "EndOffsetMillis": 500,
        }
    }


def call_events(contact_id: str, turns: int, end: str = "COMPLETED", per_event: int = 1) -> list[dict[str, Any]]:
    """STARTED, ``turns`` transcripts alternating speakers (``per_event`` per SEGMENTS event), then ``end``."""
    events = [envelope(contact_id, "STARTED")]
    segments = []
    for turn in range(turns):
        role = "AGENT" if turn % 2 == 0 else "CUSTOMER"
        segments.append(
            transcript(f"{contact_id}-t{turn:04d}", f"turn {turn}", role, begin=turn * 2000, end=turn * 2000 + 1500)
        )
    for start in range(0, len(segments), per_event):
        events.append(envelope(contact_id, "SEGMENTS", segments[start : start + per_event]))
    if end:
        events.append(envelope(contact_id, end))
    return events


def lambda_records(events: list[Any], first_sequence_number: int | None = None) -> list[dict[str, Any]]:
    kwargs = {} if first_sequence_number is None else {"first_sequence_number": first_sequence_number}
    return kinesis_event(build_records(events, **kwargs))["Records"]
