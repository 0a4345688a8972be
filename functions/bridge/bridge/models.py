"""Typed values that flow through the bridge: stream records, parsed Contact Lens events, contact state, messages.

All frozen dataclasses: the planner is pure, so every value it sees or returns is immutable.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any


@dataclass(frozen=True)
class RawRecord:
    """One Kinesis record as delivered, kept verbatim so it can be parked and redriven unchanged."""

    sequence_number: str
    partition_key: str
    data_b64: str
    arrival_timestamp: float
    shard_id: str = ""  # from the Lambda record's eventID ("shardId-000000000000:<sequence number>")

    @property
    def sequence(self) -> int:
        """Kinesis sequence numbers are decimal strings of up to 128 bits: compare them as integers."""
        try:
            return int(self.sequence_number)
        except ValueError:
            return -1

    def to_parked(self) -> dict[str, Any]:
        return {
            "sequenceNumber": self.sequence_number,
            "partitionKey": self.partition_key,
            "approximateArrivalTimestamp": self.arrival_timestamp,
            "data": self.data_b64,
        }


class EventType(StrEnum):
    STARTED = "STARTED"
    SEGMENTS = "SEGMENTS"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"

    @property
    def ends_contact(self) -> bool:
        return self in (EventType.COMPLETED, EventType.FAILED)


@dataclass(frozen=True)
class TranscriptSegment:
    """A final turn (Contact Lens ``Transcript``): what becomes a ServiceNow message."""

    id: str
    participant: str  # AGENT or CUSTOMER (ServiceNow's participantId)
    role: str  # Contact Lens ParticipantRole as given (AGENT, CUSTOMER, SYSTEM)
    content: str
    begin_offset_millis: int
    end_offset_millis: int
    sentiment: str | None
    issues: tuple[tuple[int, int], ...] = ()


@dataclass(frozen=True)
class CategoriesSegment:
    matched: tuple[str, ...]
    points: tuple[tuple[str, int, int], ...]  # (category, begin, end)


@dataclass(frozen=True)
class SummarySegment:
    status: str
    content: str
    failure_code: str = ""


@dataclass(frozen=True)
class ContactEvent:
    """A parsed voice event. ``invalid_segments`` lists segments that were dropped as malformed (the record is
    parked for them while its valid segments are still processed)."""

    record: RawRecord
    contact_id: str
    instance_id: str
    event_type: EventType
    transcripts: tuple[TranscriptSegment, ...] = ()
    utterances: int = 0
    categories: tuple[CategoriesSegment, ...] = ()
    summaries: tuple[SummarySegment, ...] = ()
    invalid_segments: tuple[str, ...] = ()
    ignored_segments: int = 0


@dataclass(frozen=True)
class RejectedRecord:
    """A record that cannot be processed at all; parked with its raw payload."""

    record: RawRecord
    reason_class: str  # undecodable | invalid_json | unsupported | malformed
    reason: str
    contact_id: str | None = None


# --- outgoing messages -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class OutgoingMessage:
    """One ServiceNow message (``POST /{id}/messages`` element), plus the stream record that carried it."""

    id: str
    content: str
    participant: str
    begin_offset_millis: int
    end_offset_millis: int
    sentiment: str | None
    internal: bool
    sequence_number: str
    attributes: tuple[tuple[str, str], ...] = ()

    def to_payload(self) -> dict[str, Any]:
        """Strict output: real JSON booleans and numbers, no LoudnessScore (Contact Lens has none in real time)."""
        payload: dict[str, Any] = {
            "id": self.id,
            "content": self.content,
            "participantId": self.participant,
            "beginOffsetMillis": self.begin_offset_millis,
            "endOffsetMillis": self.end_offset_millis,
            "isInternalMessage": self.internal,
            "isEvent": False,
        }
        if self.sentiment:
            payload["sentiment"] = self.sentiment
        if self.attributes:
            payload["attributes"] = [{"key": key, "value": value} for key, value in self.attributes]
        return payload


@dataclass(frozen=True)
class OpenRequest:
    """The body of ``POST /cs/voice-interactions`` (and ``/conversation``)."""

    user_id: str
    client_session_id: str
    caller_phone_number: str | None = None
    agent_id: str | None = None
    inbound_id: str | None = None

    def to_payload(self) -> dict[str, str]:
        payload = {"userId": self.user_id, "clientSessionId": self.client_session_id}
        if self.caller_phone_number:
            payload["callerPhoneNumber"] = self.caller_phone_number
        if self.agent_id:
            payload["agentId"] = self.agent_id
        if self.inbound_id:
            payload["inboundId"] = self.inbound_id
        return payload


# --- contact state ---------------------------------------------------------------------------------------------


class ContactStatus(StrEnum):
    CLAIMED = "claimed"  # claimed before creating the interaction; may or may not exist in ServiceNow yet
    OPEN = "open"
    CLOSED = "closed"  # written before PATCH state; a redelivered closing record re-sends the (idempotent) PATCH
    IGNORED = "ignored"  # a MONITOR contact (a supervisor listening in): never opens or touches an interaction


def segment_digest(segment_id: str) -> int:
    """64-bit digest of a segment id: 8 bytes per sent segment keeps an 8-hour call (~10k turns, 80 KB) far below
    DynamoDB's 400 KB item limit, where the UUIDs themselves would not fit. Collision odds at 10k ids: ~3e-12."""
    return int.from_bytes(hashlib.blake2b(segment_id.encode("utf-8"), digest_size=8).digest(), "big")


@dataclass(frozen=True)
class SentSet:
    """The set of segment ids already handed to ServiceNow, stored as packed 64-bit digests."""

    digests: frozenset[int] = frozenset()

    def __contains__(self, segment_id: object) -> bool:
        return isinstance(segment_id, str) and segment_digest(segment_id) in self.digests

    def __len__(self) -> int:
        return len(self.digests)

    def with_ids(self, ids: Iterable[str]) -> SentSet:
        return SentSet(self.digests | {segment_digest(i) for i in ids})

    def without_ids(self, ids: Iterable[str]) -> SentSet:
        return SentSet(self.digests - {segment_digest(i) for i in ids})

    def pack(self) -> bytes:
        ordered = sorted(self.digests)
        return struct.pack(f">{len(ordered)}Q", *ordered)

    @classmethod
    def unpack(cls, blob: bytes) -> SentSet:
        if len(blob) % 8:
            raise ValueError("sent-set blob length is not a multiple of 8")
        return cls(frozenset(struct.unpack(f">{len(blob) // 8}Q", blob)))


@dataclass(frozen=True)
class PendingEntry:
    """A segment written as sent *before* its POST: unconfirmed until the checkpoint moves past its record."""

    segment_id: str
    sequence_number: str

    @property
    def sequence(self) -> int:
        return int(self.sequence_number)


@dataclass(frozen=True)
class ContactState:
    """The DynamoDB contact item: the contact -> interaction map plus what was sent and the lifecycle."""

    contact_id: str
    status: ContactStatus
    version: int
    instance_id: str = ""
    interaction_id: str | None = None
    conversation_id: str | None = None
    sent: SentSet = field(default_factory=SentSet)
    pending: tuple[PendingEntry, ...] = ()
    close_sequence_number: str | None = None
    max_offset_millis: int = 0
    created_at: int = 0
    updated_at: int = 0
    expires_at: int = 0
    # The last attempt to create the interaction provably did not reach ServiceNow (429/503/not sent): the next
    # one need not wait for it to land (one lookup, then create).
    create_not_applied: bool = False
    # The interaction was created without proof that an earlier attempt's create had not landed (the lookup was
    # blind, or ServiceNow was late): at close, look for other open interactions of the contact and close them.
    orphan_check: bool = False
    # Closed for the bridge (written before the PATCH), but ServiceNow has not confirmed the close yet: the contact
    # stays in the sweeper's index until it has, so a close that keeps failing is retried by the sweeper.
    close_pending: bool = False
    # The contact's position on the stream: the arrival time (epoch s) of the latest record the bridge wrote the
    # item for, and its shard. Idleness is measured against the shard's position (how far the bridge has read),
    # not against the clock, so a bridge that is behind never takes a live call for an idle one.
    last_arrival: int = 0
    shard_id: str = ""
    # Transfers (bridge.legs): the call's root contact when this contact is a later leg ("" = its own root), the
    # shift onto the call's timeline, its leg number, and its anchor (epoch ms; the root's is the call's).
    root_contact_id: str = ""
    offset_shift_ms: int = 0
    leg_number: int = 1
    anchor_ms: int = 0
    # The leg is done: its COMPLETED/FAILED was read and everything before it delivered (written after the send,
    # never by the pre-write): what the call's other legs wait for before closing the call.
    leg_ended: bool = False

    def evolve(self, **changes: Any) -> ContactState:
        return replace(self, **changes)


@dataclass(frozen=True)
class ShardPosition:
    """How far the bridge has read a shard: the arrival time of the newest record it processed (epoch s), and when
    (wall clock). Its lag (``read_at - arrival``) is the iterator age then."""

    arrival: int
    read_at: int

    def now(self, wall_now: float) -> float:
        """The stream time the bridge is at now, assuming its lag has not changed since it last read."""
        return wall_now - (self.read_at - self.arrival)
