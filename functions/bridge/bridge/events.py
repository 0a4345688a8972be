"""Decode and validate Kinesis records carrying Contact Lens real-time voice events.

Tolerant on input (numeric strings for offsets, any case for enums, PostContactSummary beside Segments, SYSTEM
speakers), strict about what cannot be a voice event (chat's Version 2.x, unknown EventType). Never raises:
every record ends as a :class:`ContactEvent` or a :class:`RejectedRecord` (fuzzed in the tests).
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

from bridge.models import (
    CategoriesSegment,
    ContactEvent,
    EventType,
    RawRecord,
    RejectedRecord,
    SummarySegment,
    TranscriptSegment,
)

PARTICIPANTS = frozenset({"AGENT", "CUSTOMER"})
SENTIMENTS = frozenset({"POSITIVE", "NEUTRAL", "NEGATIVE"})
MAX_SEGMENT_ID_LENGTH = 256
EVENT_TYPES = {kind.value: kind for kind in EventType}


class SegmentError(ValueError):
    """One segment is malformed; the message names the field (never its content)."""


def raw_record(lambda_record: Any) -> RawRecord:
    """The Kinesis part of a Lambda record, verbatim (missing pieces become empty values, never an exception)."""
    kinesis = lambda_record.get("kinesis") if isinstance(lambda_record, dict) else None
    kinesis = kinesis if isinstance(kinesis, dict) else {}
    try:
        arrival = float(kinesis.get("approximateArrivalTimestamp") or 0.0)
    except (TypeError, ValueError):
        arrival = 0.0
    event_id = lambda_record.get("eventID") if isinstance(lambda_record, dict) else None
    shard = event_id.split(":", 1)[0] if isinstance(event_id, str) and event_id.startswith("shardId-") else ""
    return RawRecord(
        sequence_number=str(kinesis.get("sequenceNumber", "")),
        partition_key=str(kinesis.get("partitionKey", "")),
        data_b64=str(kinesis.get("data", "")),
        arrival_timestamp=arrival,
        shard_id=shard,
    )


def _offset(segment: dict[str, Any], name: str) -> int:
    value = segment.get(name)
    if isinstance(value, bool) or value is None:
        raise SegmentError(f"{name} is missing")
    if isinstance(value, str):
        try:
            value = int(value.strip())
        except ValueError:
            raise SegmentError(f"{name} is not an integer") from None
    if isinstance(value, float):
        if not value.is_integer():
            raise SegmentError(f"{name} is not an integer")
        value = int(value)
    if not isinstance(value, int) or value < 0:
        raise SegmentError(f"{name} must be a non-negative integer")
    return value


def _participant(segment: dict[str, Any]) -> tuple[str, str]:
    role = str(segment.get("ParticipantRole") or "").strip().upper()
    participant_id = str(segment.get("ParticipantId") or "").strip().upper()
    if role in PARTICIPANTS:
        return role, role
    if participant_id in PARTICIPANTS:
        return participant_id, role or participant_id
    if role == "SYSTEM":
        # ServiceNow knows only AGENT and CUSTOMER; system prompts (IVR) are on the contact centre's side.
        return "AGENT", role
    raise SegmentError("ParticipantRole/ParticipantId is neither AGENT, CUSTOMER nor SYSTEM")


def parse_transcript(segment: Any) -> TranscriptSegment:
    if not isinstance(segment, dict):
        raise SegmentError("Transcript is not an object")
    segment_id = segment.get("Id")
    if not isinstance(segment_id, str) or not segment_id.strip() or len(segment_id) > MAX_SEGMENT_ID_LENGTH:
        raise SegmentError("Transcript.Id is missing or not 1-256 characters")
    content = segment.get("Content")
    if not isinstance(content, str) or not content.strip():
        raise SegmentError("Transcript.Content is missing or empty")
    participant, role = _participant(segment)
    sentiment = str(segment.get("Sentiment") or "").strip().upper() or None
    issues = []
    for issue in segment.get("IssuesDetected") or ():
        offsets = issue.get("CharacterOffsets") if isinstance(issue, dict) else None
        if isinstance(offsets, dict):
            try:
                issues.append((_offset(offsets, "BeginOffsetChar"), _offset(offsets, "EndOffsetChar")))
            except SegmentError:
                continue  # issue markers are decoration: a bad one is dropped, the turn is kept
    return TranscriptSegment(
        id=segment_id,
        participant=participant,
        role=role,
        content=content,
        begin_offset_millis=_offset(segment, "BeginOffsetMillis"),
        end_offset_millis=_offset(segment, "EndOffsetMillis"),
        sentiment=sentiment if sentiment in SENTIMENTS else None,
        issues=tuple(issues),
    )


def parse_categories(segment: Any) -> CategoriesSegment:
    if not isinstance(segment, dict):
        raise SegmentError("Categories is not an object")
    matched = segment.get("MatchedCategories") or []
    if not isinstance(matched, list) or not all(isinstance(name, str) for name in matched):
        raise SegmentError("Categories.MatchedCategories is not a list of names")
    details = segment.get("MatchedDetails") or {}
    points: list[tuple[str, int, int]] = []
    if isinstance(details, dict):
        for name, detail in details.items():
            for point in (detail or {}).get("PointsOfInterest") or () if isinstance(detail, dict) else ():
                if isinstance(point, dict):
                    try:
                        points.append(
                            (str(name), _offset(point, "BeginOffsetMillis"), _offset(point, "EndOffsetMillis"))
                        )
                    except SegmentError:
                        continue
    return CategoriesSegment(matched=tuple(matched), points=tuple(points))


def parse_summary(segment: Any) -> SummarySegment:
    if not isinstance(segment, dict):
        raise SegmentError("PostContactSummary is not an object")
    status = str(segment.get("Status") or "").upper()
    content = segment.get("Content")
    return SummarySegment(
        status=status,
        content=content if isinstance(content, str) else "",
        failure_code=str(segment.get("FailureCode") or ""),
    )


def _decode(record: RawRecord) -> Any:
    """base64 -> UTF-8 -> JSON; raises ValueError subclasses that name the stage."""
    try:
        data = base64.b64decode(record.data_b64, validate=True)
    except (binascii.Error, ValueError):
        raise _Reject("undecodable", "data is not valid base64") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise _Reject("undecodable", "data is not UTF-8") from None
    try:
        return json.loads(text)
    except (json.JSONDecodeError, RecursionError):
        raise _Reject("invalid_json", "data is not valid JSON") from None


class _Reject(Exception):
    def __init__(self, reason_class: str, reason: str, contact_id: str | None = None) -> None:
        super().__init__(reason)
        self.reason_class = reason_class
        self.reason = reason
        self.contact_id = contact_id


def _envelope(payload: Any) -> tuple[str, str, EventType]:
    if not isinstance(payload, dict):
        raise _Reject("malformed", "payload is not a JSON object")
    contact_id = payload.get("ContactId")
    contact = (contact_id.strip() or None) if isinstance(contact_id, str) else None
    version = payload.get("Version")
    if version is not None and not str(version).startswith("1."):
        raise _Reject("unsupported", f"Version {str(version)[:20]!r} is not a voice event (chat uses 2.x)", contact)
    channel = payload.get("Channel")
    if channel is not None and str(channel).upper() != "VOICE":
        raise _Reject("unsupported", f"Channel {str(channel)[:20]!r} is not VOICE", contact)
    if contact is None or len(contact) > 256:
        raise _Reject("malformed", "ContactId is missing")
    event_type = str(payload.get("EventType") or "").strip().upper()
    kind = EVENT_TYPES.get(event_type)  # a dict lookup: Enum's constructor costs ~1 us per record
    if kind is None:
        raise _Reject("unsupported", f"unknown EventType {event_type[:40]!r}", contact)
    instance = payload.get("InstanceId")
    return contact, instance.strip() if isinstance(instance, str) else "", kind


def parse_record(lambda_record: Any) -> ContactEvent | RejectedRecord:
    """Decode one Lambda Kinesis record into a voice event, or say why it cannot be one."""
    record = raw_record(lambda_record)
    try:
        payload = _decode(record)
        contact_id, instance_id, event_type = _envelope(payload)
    except _Reject as reject:
        return RejectedRecord(record, reject.reason_class, reject.reason, reject.contact_id)

    transcripts: list[TranscriptSegment] = []
    categories: list[CategoriesSegment] = []
    summaries: list[SummarySegment] = []
    invalid: list[str] = []
    utterances = ignored = 0
    segments = payload.get("Segments")
    if segments is not None and not isinstance(segments, list):
        return RejectedRecord(record, "malformed", "Segments is not a list", contact_id)
    items: list[Any] = list(segments or [])
    if "PostContactSummary" in payload:  # the data model also shows it beside Segments
        items.append({"PostContactSummary": payload["PostContactSummary"]})
    for index, item in enumerate(items):
        try:
            if not isinstance(item, dict):
                raise SegmentError("segment is not an object")
            if "Transcript" in item:
                transcripts.append(parse_transcript(item["Transcript"]))
            elif "Utterance" in item:
                utterances += 1
            elif "Categories" in item:
                categories.append(parse_categories(item["Categories"]))
            elif "PostContactSummary" in item:
                summaries.append(parse_summary(item["PostContactSummary"]))
            else:
                ignored += 1  # a kind voice does not define (chat's Issues/Event/Attachments): nothing to forward
        except SegmentError as exc:
            invalid.append(f"segment {index}: {exc}")
    return ContactEvent(
        record=record,
        contact_id=contact_id,
        instance_id=instance_id,
        event_type=event_type,
        transcripts=tuple(transcripts),
        utterances=utterances,
        categories=tuple(categories),
        summaries=tuple(summaries),
        invalid_segments=tuple(invalid),
        ignored_segments=ignored,
    )
