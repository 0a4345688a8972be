"""Validate decoded request bodies into typed values, the whole body before anything is stored.

Rules (from the API reference, tolerant on input and canonical on output):
- strings: JSON strings; numbers are accepted and kept as their decimal text; anything else is 400;
- ``participantId``: exactly ``AGENT`` or ``CUSTOMER``;
- ``sentiment``: NEGATIVE/NEUTRAL/POSITIVE in any case (stored upper case); null, absent or "" mean none;
- booleans: JSON booleans or "true"/"false" in any case; null, absent or "" mean false;
- offsets: non-negative integers up to 2**63-1 (a Java long); integral floats and numeric strings accepted;
- ``loudnessScore``: null, number, string or array, stored as text (the string "null" means none);
- ``attributes``: any JSON value, stored as JSON text.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from voicebridge.emulator.errors import ApiError

MAX_LONG = 2**63 - 1
PARTICIPANTS = ("AGENT", "CUSTOMER")
SENTIMENTS = ("NEGATIVE", "NEUTRAL", "POSITIVE")
CLOSED_COMPLETE = "closed_complete"


@dataclass(frozen=True)
class NewInteraction:
    """The body of POST /cs/voice-interactions (and of /conversation, which takes the same fields)."""

    user_id: str
    agent_id: str | None = None
    caller_phone_number: str | None = None
    client_session_id: str | None = None
    inbound_id: str | None = None


@dataclass(frozen=True)
class Message:
    """One transcribed message, ready to store in ``sys_cs_message``."""

    content: str
    participant: str
    begin_offset_millis: int
    end_offset_millis: int
    source_message_id: str | None = None
    is_internal: bool = False
    is_event: bool = False
    sentiment: str | None = None
    loudness_score: str | None = None
    attributes: str | None = None


@dataclass(frozen=True)
class Transcript:
    """The body of POST /cs/voice-interactions[/{id}]/transcript."""

    interaction_id: str | None
    messages: tuple[Message, ...]
    conversation_started: str | None = None
    source: str | None = None


@dataclass(frozen=True)
class StateChange:
    """The body of PATCH /cs/voice-interactions/{id}/state."""

    state: str
    recording_url: str | None = None


def _missing(field: str, where: str | None = None) -> ApiError:
    return ApiError(400, f"Missing required field: {field}", where)


def _invalid(field: str, expected: str, where: str | None = None) -> ApiError:
    detail = f"{field} must be {expected}" + (f" ({where})" if where else "")
    return ApiError(400, f"Invalid value for field: {field}", detail)


def _optional_string(body: dict[str, Any], field: str, where: str | None = None) -> str | None:
    value = body.get(field)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise _invalid(field, "a string", where)
    if isinstance(value, float) and not math.isfinite(value):
        raise _invalid(field, "a string", where)
    return value if isinstance(value, str) else json.dumps(value)


def _required_string(body: dict[str, Any], field: str, where: str | None = None) -> str:
    value = _optional_string(body, field, where)
    if value is None or value == "":
        raise _missing(field, where)
    return value


def _boolean(body: dict[str, Any], field: str, where: str) -> bool:
    value = body.get(field)
    if value is None or value == "":
        return False
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    raise _invalid(field, 'a boolean (true/false or "true"/"false")', where)


_INTEGRAL_TEXT = re.compile(r"\+?(\d{1,19})(?:\.0*)?")


def _offset(body: dict[str, Any], field: str, where: str) -> int:
    value = body.get(field)
    if value is None or value == "":
        raise _missing(field, where)
    number: int | None = None
    if isinstance(value, bool):
        number = None
    elif isinstance(value, int):
        number = value
    elif isinstance(value, float):
        number = int(value) if math.isfinite(value) and value.is_integer() else None
    elif isinstance(value, str):
        match = _INTEGRAL_TEXT.fullmatch(value.strip())
        number = int(match.group(1)) if match else None
    if number is None or number < 0 or number > MAX_LONG:
        raise _invalid(field, "a non-negative integer (milliseconds)", where)
    return number


def _sentiment(body: dict[str, Any], where: str) -> str | None:
    value = body.get("sentiment")
    if value is None or value == "":
        return None
    if isinstance(value, str) and value.strip().upper() in SENTIMENTS:
        return value.strip().upper()
    raise _invalid("sentiment", "one of NEGATIVE, NEUTRAL, POSITIVE", where)


def _loudness(body: dict[str, Any], where: str) -> str | None:
    value = body.get("loudnessScore")
    if value is None:
        return None
    if isinstance(value, bool) or isinstance(value, dict):
        raise _invalid("loudnessScore", "a number, a string, an array or null", where)
    if isinstance(value, str):
        return None if value.strip().lower() in ("", "null") else value
    if isinstance(value, int | float | list):
        return json.dumps(value, ensure_ascii=False)
    raise _invalid("loudnessScore", "a number, a string, an array or null", where)


def parse_message(value: Any, where: str) -> Message:
    """Validate one message object; ``where`` (e.g. ``message[2]``) goes into the error detail."""
    if not isinstance(value, dict):
        raise ApiError(400, "Invalid message", f"{where} must be an object")
    attributes = value.get("attributes")
    return Message(
        content=_required_string(value, "content", where),
        participant=_participant(value, where),
        begin_offset_millis=_offset(value, "beginOffsetMillis", where),
        end_offset_millis=_offset(value, "endOffsetMillis", where),
        source_message_id=_optional_string(value, "id", where),
        is_internal=_boolean(value, "isInternalMessage", where),
        is_event=_boolean(value, "isEvent", where),
        sentiment=_sentiment(value, where),
        loudness_score=_loudness(value, where),
        attributes=None if attributes is None else json.dumps(attributes, ensure_ascii=False),
    )


def _participant(body: dict[str, Any], where: str) -> str:
    value = body.get("participantId")
    if value is None or value == "":
        raise _missing("participantId", where)
    if value not in PARTICIPANTS:
        raise _invalid("participantId", "AGENT or CUSTOMER", where)
    return str(value)


def parse_messages(values: list[Any], name: str = "message") -> tuple[Message, ...]:
    return tuple(parse_message(value, f"{name}[{index}]") for index, value in enumerate(values))


def parse_new_interaction(body: dict[str, Any]) -> NewInteraction:
    return NewInteraction(
        user_id=_required_string(body, "userId"),
        agent_id=_optional_string(body, "agentId"),
        caller_phone_number=_optional_string(body, "callerPhoneNumber"),
        client_session_id=_optional_string(body, "clientSessionId"),
        inbound_id=_optional_string(body, "inboundId"),
    )


def _conversation_started(body: dict[str, Any]) -> str | None:
    value = _optional_string(body, "conversationStarted")
    if value is None or value == "":
        return None
    try:
        parsed = datetime.strptime(value.strip(), "%Y-%m-%d %H:%M:%S")
    except ValueError as exc:
        raise _invalid("conversationStarted", "a date-time YYYY-MM-DD HH:MM:SS") from exc
    return parsed.strftime("%Y-%m-%d %H:%M:%S")


def parse_transcript(body: dict[str, Any], path_id: str | None) -> Transcript:
    """Validate a transcript body; the path id wins, a different body id is a 400."""
    body_id = _optional_string(body, "interactionId") or None
    if path_id is not None and body_id is not None and body_id != path_id:
        raise ApiError(400, "Invalid value for field: interactionId", "interactionId in the body differs from the path")
    interaction_id = path_id or body_id
    if interaction_id is None:
        raise _missing("interactionId")
    transcript = body.get("transcript")
    if transcript is None:
        raise _missing("transcript")
    if transcript == "":  # an empty XML <transcript/>
        transcript = []
    if not isinstance(transcript, list):
        raise _invalid("transcript", "an array of messages")
    return Transcript(
        interaction_id=interaction_id,
        messages=parse_messages(transcript, "transcript"),
        conversation_started=_conversation_started(body),
        source=_optional_string(body, "source"),
    )


def parse_state_change(body: dict[str, Any]) -> StateChange:
    state = _required_string(body, "state")
    if state != CLOSED_COMPLETE:
        raise ApiError(400, "Invalid value for field: state", f"Only supported value: {CLOSED_COMPLETE}, got {state!r}")
    return StateChange(state=state, recording_url=_optional_string(body, "recordingURL") or None)
