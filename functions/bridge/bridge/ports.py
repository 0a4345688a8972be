"""The bridge's boundaries as small Protocols. One real adapter each (``bridge.adapters``), one in-memory fake
each for tests (``tests/fakes.py``)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from bridge.models import ContactState, OpenRequest, OutgoingMessage, ShardPosition


class ServiceNowPort(Protocol):
    """The Voice Interaction API, plus the Table API reads used to recover after an ambiguous failure."""

    def create_interaction(self, request: OpenRequest) -> str: ...

    def create_conversation(self, interaction_id: str, request: OpenRequest) -> str: ...

    def post_messages(self, interaction_id: str, messages: Sequence[OutgoingMessage]) -> str | None: ...

    def post_transcript(
        self, interaction_id: str, messages: Sequence[OutgoingMessage], conversation_started: str
    ) -> str | None: ...

    def close_interaction(self, interaction_id: str, recording_url: str | None) -> None: ...

    def find_interaction(self, client_session_id: str) -> str | None: ...

    def find_conversation(self, interaction_id: str) -> str | None: ...

    def find_message_ids(self, conversation_id: str, segment_ids: Iterable[str]) -> set[str]: ...

    def conversation_has_messages(self, conversation_id: str) -> bool: ...

    def find_open_interactions(self, client_session_id: str) -> list[str]: ...


class ContactStorePort(Protocol):
    """The DynamoDB contact table."""

    def load_many(self, contact_ids: Sequence[str]) -> dict[str, ContactState]: ...

    def claim(self, contact_id: str, instance_id: str, now: int) -> ContactState: ...

    def save(self, state: ContactState, expected_version: int) -> ContactState: ...

    def parked_before(self, keys: Sequence[str]) -> set[str]: ...

    def remember_parked(self, keys: Sequence[str], expires_at: int) -> None: ...

    def record_position(self, shard_id: str, position: ShardPosition) -> None: ...

    def positions(self, shard_ids: Sequence[str]) -> dict[str, ShardPosition]: ...


class SweepStorePort(ContactStorePort, Protocol):
    """What the sweeper needs from the contact table: the contact store plus the idle open contacts."""

    def idle_contact_ids(self, idle_before: int, limit: int) -> list[str]: ...


@dataclass(frozen=True)
class ContactDetails:
    """What DescribeContact tells us (every field optional: the contact may be young or anonymous)."""

    customer_number: str | None = None
    agent_id: str | None = None
    recording_location: str | None = None
    # The call's shape (bridge.legs): which chain the contact belongs to and when things happened (epoch s).
    initial_contact_id: str | None = None
    initiation_method: str | None = None
    initiated_at: float | None = None
    agent_connected_at: float | None = None
    disconnected_at: float | None = None


@dataclass(frozen=True)
class AssociatedContact:
    """One contact of a call's tree (ListAssociatedContacts)."""

    contact_id: str
    initiation_method: str | None = None
    initiated_at: float | None = None
    disconnected_at: float | None = None


class ConnectPort(Protocol):
    """Amazon Connect lookups moto does not implement (DescribeContact, GetContactAttributes, DescribeUser)."""

    def describe_contact(self, instance_id: str, contact_id: str) -> ContactDetails: ...

    def contact_attributes(self, instance_id: str, contact_id: str) -> Mapping[str, str]: ...

    def agent_username(self, instance_id: str, agent_id: str) -> str | None: ...

    def associated_contacts(self, instance_id: str, contact_id: str) -> list[AssociatedContact]: ...


@dataclass(frozen=True)
class ParkedItem:
    """A unit of work that cannot go through now: the raw records, why, and the error's data."""

    reason_class: str
    reason: str
    records: tuple[dict[str, Any], ...]
    contact_id: str | None = None
    error: Mapping[str, Any] = field(default_factory=dict)


class ParkingPort(Protocol):
    """The parking SQS queue."""

    def park(self, items: Sequence[ParkedItem]) -> None: ...
