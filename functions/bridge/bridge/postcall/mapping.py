"""A Contact Lens post-call analysis file -> the body of ``POST /cs/voice-interactions/transcript`` (pure).

Decisions (README "Historical import (post-call files)"):
- one message per ``Transcript`` turn; ``id`` = the turn's ``Id``, a missing or repeated one gets a stable derived
  UUID (uuid5 of the contact id and the turn's position), so a re-import sends the same ids;
- ``participantId`` through ``Participants`` (``ParticipantId`` -> ``ParticipantRole``); SYSTEM speaks as AGENT with
  a ``participantRole`` attribute (as on the live path);
- content as given (a redacted file's ``[PII]`` is kept); every text that reaches ServiceNow (turns, detected
  issues/outcomes/action items, the summary) passes through one function, :func:`text_of`, where a redactor applies;
- sentiment as given; ``MIXED`` (not a ServiceNow value) is sent as no sentiment plus ``sentiment=MIXED``;
- ``loudnessScore``: the per-second array as given, as a JSON array string (``"[66.56,40.06]"``);
- categories (one note per matched category, at its first point of interest, else after the last turn), the
  generative summary and skipped analyses as agent-only notes (``isInternalMessage: true``) after the last turn;
- ``conversationStarted`` from an explicit :class:`Anchor`, named in the first turn's ``conversationStartedFrom``.
"""

from __future__ import annotations

import hashlib
import json
import math
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from bridge.errors import PermanentError
from bridge.models import OutgoingMessage
from bridge.postcall.keys import AnalysisKey, AnalysisVariant

Redactor = Callable[[str], str]
PARTICIPANTS = ("AGENT", "CUSTOMER")
SENTIMENTS = frozenset({"POSITIVE", "NEUTRAL", "NEGATIVE"})
DETECTIONS = (
    ("IssuesDetected", "issueDetected"),
    ("OutcomesDetected", "outcomeDetected"),
    ("ActionItemsDetected", "actionItemDetected"),
)
# Turns without a usable Id get uuid5(namespace, "<contact>/<position>"): stable across re-imports.
DERIVED_ID_NAMESPACE = uuid.UUID("6f1d3a52-6c0e-4d55-9a51-3f7b1c2e8d40")
SOURCE = "Amazon Connect"
TIME_FORMAT = "%Y-%m-%d %H:%M:%S"
# Never a sequence number of a Kinesis record (OutgoingMessage carries one; nothing reads it for /transcript).
NO_RECORD = "postcall"


class PostCallFileError(PermanentError):
    """The file cannot be imported as it is (not JSON, not a completed voice analysis, a malformed turn)."""

    reason_class = "postcall_bad_file"


@dataclass(frozen=True)
class PostCallMessage(OutgoingMessage):
    """A ``/transcript`` element: an :class:`OutgoingMessage` plus the per-second loudness the live stream lacks."""

    loudness: str | None = None

    def to_payload(self) -> dict[str, Any]:
        payload = super().to_payload()
        if self.loudness is not None:
            payload["loudnessScore"] = self.loudness
        return payload


@dataclass(frozen=True)
class Anchor:
    """Where ``conversationStarted`` came from: ``agent_connected`` (DescribeContact AgentInfo
    .ConnectedToAgentTimestamp), ``initiation`` (InitiationTimestamp) or ``analysis_file_time`` (the key's
    timestamp, when the analysis was written: later than the real start)."""

    source: str
    at: datetime

    @property
    def text(self) -> str:
        return self.at.astimezone(UTC).strftime(TIME_FORMAT)


def choose_anchor(agent_connected: datetime | None, initiated: datetime | None, key: AnalysisKey) -> Anchor:
    """The first of agent-connected, initiation, the key's timestamp (the key's day at midnight at worst)."""
    if agent_connected is not None:
        return Anchor("agent_connected", agent_connected)
    if initiated is not None:
        return Anchor("initiation", initiated)
    if key.written_at is not None:
        return Anchor("analysis_file_time", key.written_at)
    return Anchor("analysis_file_day", datetime(key.day.year, key.day.month, key.day.day, tzinfo=UTC))


@dataclass(frozen=True)
class AnalysisDocument:
    """The parts of a parsed, validated file that the mapping needs."""

    contact_id: str
    instance_id: str
    recording_uri: str | None  # CustomerMetadata.InputS3Uri (the original recording)
    raw: Mapping[str, Any]


@dataclass(frozen=True)
class PostCallTranscript:
    """What one file becomes: the ``/transcript`` messages and ``conversationStarted``."""

    contact_id: str
    instance_id: str
    conversation_started: str
    anchor: Anchor
    messages: tuple[PostCallMessage, ...]
    turns: int
    notes: int
    recording_uri: str | None

    def payload(self, interaction_id: str) -> dict[str, Any]:
        """The request body exactly as the ServiceNow adapter sends it."""
        return {
            "interactionId": interaction_id,
            "source": SOURCE,
            "conversationStarted": self.conversation_started,
            "transcript": [m.to_payload() for m in self.messages],
        }


def identity(text: str) -> str:
    return text


def text_of(value: str, redact: Redactor) -> str:
    """The one place content reaches a message: every text sent to ServiceNow goes through here."""
    return redact(value)


def parse_document(data: bytes, key: AnalysisKey) -> AnalysisDocument:
    """Decode and validate a file; raises :class:`PostCallFileError` naming what is wrong (never its content)."""
    try:
        document = json.loads(data.decode("utf-8-sig"))
    except UnicodeDecodeError:
        raise PostCallFileError("the file is not UTF-8 text") from None
    except json.JSONDecodeError as exc:
        raise PostCallFileError(f"not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
    if not isinstance(document, dict):
        raise PostCallFileError("the file is not a JSON object")
    channel = document.get("Channel")
    if channel not in (None, "VOICE"):
        raise PostCallFileError(f"Channel is {str(channel)[:20]!r}, not VOICE")
    status = document.get("JobStatus")
    if status not in (None, "COMPLETED"):
        raise PostCallFileError(f"JobStatus is {str(status)[:20]!r}, not COMPLETED")
    output = _dict(document.get("ContentMetadata"), "ContentMetadata").get("Output")
    expected = "Redacted" if key.variant is AnalysisVariant.REDACTED else "Raw"
    if output is not None and str(output).lower() != expected.lower():
        raise PostCallFileError(f"ContentMetadata.Output is {str(output)[:20]!r} but the key is a {expected} file")
    metadata = _dict(document.get("CustomerMetadata"), "CustomerMetadata")
    contact_id = metadata.get("ContactId")
    if contact_id is not None and (not isinstance(contact_id, str) or contact_id.lower() != key.contact_id.lower()):
        raise PostCallFileError("CustomerMetadata.ContactId differs from the contact id in the key")
    if not isinstance(document.get("Transcript"), list):
        raise PostCallFileError("Transcript is missing or not an array")
    instance = metadata.get("InstanceId")
    recording = metadata.get("InputS3Uri")
    return AnalysisDocument(
        contact_id=key.contact_id,
        instance_id=instance if isinstance(instance, str) else "",
        recording_uri=recording if isinstance(recording, str) and recording else None,
        raw=document,
    )


def build_transcript(
    document: AnalysisDocument, anchor: Anchor, redact: Redactor = identity, key: str = ""
) -> PostCallTranscript:
    """Map a validated document to its ``/transcript`` messages (pure: same input, same output)."""
    raw = document.raw
    roles = _roles(raw.get("Participants"))
    turns: list[PostCallMessage] = []
    seen: set[str] = set()
    for index, turn in enumerate(raw["Transcript"]):
        where = f"Transcript[{index}]"
        message = _turn(turn, where, roles, redact)
        if not message.id or message.id in seen:
            message = _with(message, id=str(uuid.uuid5(DERIVED_ID_NAMESPACE, f"{document.contact_id}/{index}")))
        seen.add(message.id)
        turns.append(message)
    end = max([m.end_offset_millis for m in turns], default=0)
    characteristics = _dict(raw.get("ConversationCharacteristics"), "ConversationCharacteristics")
    duration = _offset_or_none(characteristics.get("TotalConversationDurationMillis"))
    end = max(end, duration or 0)
    notes = [
        *_category_notes(document.contact_id, raw, end),
        *_summary_notes(document.contact_id, raw, characteristics, end, redact),
    ]
    if turns:
        provenance = [("conversationStartedFrom", anchor.source)]
        if key:
            provenance.append(("analysisFile", key))
        turns[0] = _with(turns[0], attributes=(*turns[0].attributes, *provenance))
    return PostCallTranscript(
        contact_id=document.contact_id,
        instance_id=document.instance_id,
        conversation_started=anchor.text,
        anchor=anchor,
        messages=(*turns, *notes),
        turns=len(turns),
        notes=len(notes),
        recording_uri=document.recording_uri,
    )


# -- turns --------------------------------------------------------------------------------------------------------


def _roles(participants: Any) -> dict[str, str]:
    if participants is None:
        return {}
    if not isinstance(participants, list):
        raise PostCallFileError("Participants is not an array")
    roles: dict[str, str] = {}
    for index, participant in enumerate(participants):
        if not isinstance(participant, dict):
            raise PostCallFileError(f"Participants[{index}] is not an object")
        pid, role = participant.get("ParticipantId"), participant.get("ParticipantRole")
        if isinstance(pid, str) and isinstance(role, str):
            roles[pid] = role.strip().upper()
    return roles


def _participant(turn: Mapping[str, Any], where: str, roles: Mapping[str, str]) -> tuple[str, str]:
    pid = turn.get("ParticipantId")
    if not isinstance(pid, str) or not pid:
        raise PostCallFileError(f"{where}.ParticipantId is missing")
    role = roles.get(pid) or pid.strip().upper()
    if role in PARTICIPANTS:
        return role, role
    if role == "SYSTEM":
        return "AGENT", role  # ServiceNow knows only AGENT and CUSTOMER (as on the live path)
    raise PostCallFileError(f"{where}.ParticipantId does not resolve to AGENT or CUSTOMER through Participants")


def _turn(turn: Any, where: str, roles: Mapping[str, str], redact: Redactor) -> PostCallMessage:
    if not isinstance(turn, dict):
        raise PostCallFileError(f"{where} is not an object")
    content = turn.get("Content")
    if not isinstance(content, str) or not content:
        raise PostCallFileError(f"{where}.Content is missing or empty")
    participant, role = _participant(turn, where, roles)
    attributes: list[tuple[str, str]] = []
    if role != participant:
        attributes.append(("participantRole", role))
    sentiment = turn.get("Sentiment")
    sentiment_text = str(sentiment).strip().upper() if isinstance(sentiment, str) else None
    if sentiment_text and sentiment_text not in SENTIMENTS:
        attributes.append(("sentiment", sentiment_text[:20]))  # MIXED: kept, but not as a ServiceNow sentiment
        sentiment_text = None
    for field, name in DETECTIONS:
        for detected in _list(turn.get(field), f"{where}.{field}"):
            text = detected.get("Text") if isinstance(detected, dict) else None
            if isinstance(text, str) and text:
                attributes.append((name, text_of(text, redact)))
    turn_id = turn.get("Id")
    return PostCallMessage(
        id=turn_id if isinstance(turn_id, str) else "",
        content=text_of(content, redact),
        participant=participant,
        begin_offset_millis=_offset(turn.get("BeginOffsetMillis"), f"{where}.BeginOffsetMillis"),
        end_offset_millis=_offset(turn.get("EndOffsetMillis"), f"{where}.EndOffsetMillis"),
        sentiment=sentiment_text or None,
        internal=False,
        sequence_number=NO_RECORD,
        attributes=tuple(attributes),
        loudness=_loudness(turn.get("LoudnessScore"), f"{where}.LoudnessScore"),
    )


def _loudness(value: Any, where: str) -> str | None:
    """The per-second array as given, as JSON text (absent, null or empty: none)."""
    if value is None:
        return None
    values = value if isinstance(value, list) else [value]
    for item in values:
        if isinstance(item, bool) or not isinstance(item, int | float) or not math.isfinite(item):
            raise PostCallFileError(f"{where} is not an array of numbers")
    return json.dumps(values, separators=(",", ":")) if values else None


# -- notes --------------------------------------------------------------------------------------------------------


def _note_id(contact_id: str, kind: str, text: str) -> str:
    digest = hashlib.blake2b(f"{contact_id}\x00{kind}\x00{text}".encode(), digest_size=10).hexdigest()
    return f"voicebridge-postcall-{kind}-{digest}"


def _note(
    contact_id: str, kind: str, text: str, begin: int, end: int, attributes: Sequence[tuple[str, str]]
) -> PostCallMessage:
    return PostCallMessage(
        id=_note_id(contact_id, kind, text),
        content=text,
        participant="AGENT",
        begin_offset_millis=begin,
        end_offset_millis=max(begin, end),
        sentiment=None,
        internal=True,
        sequence_number=NO_RECORD,
        attributes=(("noteType", kind), *attributes),
    )


def _category_notes(contact_id: str, raw: Mapping[str, Any], end: int) -> list[PostCallMessage]:
    categories = _dict(raw.get("Categories"), "Categories")
    details = _dict(categories.get("MatchedDetails"), "Categories.MatchedDetails")
    notes = []
    for name in _list(categories.get("MatchedCategories"), "Categories.MatchedCategories"):
        if not isinstance(name, str) or not name:
            continue
        detail = _dict(details.get(name), f"Categories.MatchedDetails.{name}")
        points = []
        for point in _list(detail.get("PointsOfInterest"), f"Categories.MatchedDetails.{name}.PointsOfInterest"):
            if isinstance(point, dict):
                begin = _offset_or_none(point.get("BeginOffsetMillis"))
                finish = _offset_or_none(point.get("EndOffsetMillis"))
                if begin is not None:
                    points.append((begin, finish if finish is not None else begin))
        begin, finish = min(points) if points else (end, end)
        attributes = [("category", name)]
        if points:
            attributes.append(("pointsOfInterest", ",".join(f"{b}-{e}" for b, e in points)))
        notes.append(_note(contact_id, "category", f"Contact Lens category matched: {name}", begin, finish, attributes))
    return notes


def _summary_notes(
    contact_id: str, raw: Mapping[str, Any], characteristics: Mapping[str, Any], end: int, redact: Redactor
) -> list[PostCallMessage]:
    notes = []
    summary = _dict(characteristics.get("ContactSummary"), "ContactSummary")
    post = _dict(summary.get("PostContactSummary"), "ContactSummary.PostContactSummary")
    content = post.get("Content")
    if isinstance(content, str) and content.strip():
        text = "Post-contact summary: " + text_of(content, redact)
        notes.append(_note(contact_id, "postContactSummary", text, end, end, ()))
    details = _dict(raw.get("JobDetails"), "JobDetails")
    for skipped in _list(details.get("SkippedAnalysis"), "JobDetails.SkippedAnalysis"):
        if not isinstance(skipped, dict):
            continue
        feature = str(skipped.get("Feature") or "analysis")[:60]
        reason = str(skipped.get("ReasonCode") or "no reason given")[:60]
        entities = [
            str(entity.get("CategoryName"))[:60]
            for entity in _list(skipped.get("SkippedEntities"), "SkippedEntities")
            if isinstance(entity, dict) and entity.get("CategoryName")
        ]
        text = f"Contact Lens skipped {feature}: {reason}" + (f" ({', '.join(entities)})" if entities else "")
        notes.append(_note(contact_id, "skippedAnalysis", text, end, end, (("feature", feature),)))
    return notes


# -- small validators ---------------------------------------------------------------------------------------------


def _with(message: PostCallMessage, **changes: Any) -> PostCallMessage:
    return replace(message, **changes)


def _dict(value: Any, where: str) -> Mapping[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise PostCallFileError(f"{where} is not an object")
    return value


def _list(value: Any, where: str) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise PostCallFileError(f"{where} is not an array")
    return value


def _offset(value: Any, where: str) -> int:
    offset = _offset_or_none(value)
    if offset is None:
        raise PostCallFileError(f"{where} is missing or not a non-negative integer")
    return offset


def _offset_or_none(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, int) and 0 <= value < 2**63:
        return value
    return None
