"""In-memory fakes of the bridge's ports (style: prefer fakes over mocks). Each records what it was asked."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from bridge.errors import ContactConflictError
from bridge.models import ContactState, ContactStatus, OpenRequest, OutgoingMessage, ShardPosition
from bridge.ports import AssociatedContact, ContactDetails, ParkedItem


@dataclass
class FakeInteraction:
    interaction_id: str
    request: OpenRequest
    conversation_id: str | None = None
    messages: list[OutgoingMessage] = field(default_factory=list)
    closed: bool = False
    recording_url: str | None = None


class FakeServiceNow:
    """A ServiceNow that stores everything; ``fail_next`` queues exceptions for the next calls of an operation."""

    def __init__(self) -> None:
        self.interactions: dict[str, FakeInteraction] = {}
        self.calls: list[str] = []
        self.fail_next: dict[str, list[Exception]] = {}
        self.apply_then_fail: dict[str, list[Exception]] = {}
        self.read_forbidden = False
        self.reads_filtered = False  # ACL-filtered: reads answer as if nothing were stored

    def __len__(self) -> int:
        return len(self.interactions)

    def __contains__(self, client_session_id: object) -> bool:
        return any(i.request.client_session_id == client_session_id for i in self.interactions.values())

    def _enter(self, operation: str) -> None:
        self.calls.append(operation)
        queue = self.fail_next.get(operation)
        if queue:
            raise queue.pop(0)

    def _after(self, operation: str) -> None:
        queue = self.apply_then_fail.get(operation)
        if queue:
            raise queue.pop(0)

    def by_contact(self, contact_id: str) -> list[FakeInteraction]:
        return [i for i in self.interactions.values() if i.request.client_session_id == contact_id]

    def create_interaction(self, request: OpenRequest) -> str:
        self._enter("create_interaction")
        interaction_id = uuid.uuid4().hex
        self.interactions[interaction_id] = FakeInteraction(interaction_id, request)
        self._after("create_interaction")
        return interaction_id

    def create_conversation(self, interaction_id: str, request: OpenRequest) -> str:
        self._enter("create_conversation")
        interaction = self.interactions[interaction_id]
        interaction.conversation_id = interaction.conversation_id or uuid.uuid4().hex
        self._after("create_conversation")
        return interaction.conversation_id

    def post_messages(self, interaction_id: str, messages: Sequence[OutgoingMessage]) -> str | None:
        self._enter("post_messages")
        interaction = self.interactions[interaction_id]
        assert not interaction.closed, "messages after close"
        interaction.messages.extend(messages)
        self._after("post_messages")
        return interaction.conversation_id

    def post_transcript(
        self, interaction_id: str, messages: Sequence[OutgoingMessage], conversation_started: str
    ) -> str | None:
        self._enter("post_transcript")
        self.interactions[interaction_id].messages.extend(messages)
        return self.interactions[interaction_id].conversation_id

    def close_interaction(self, interaction_id: str, recording_url: str | None) -> None:
        self._enter("close_interaction")
        self.interactions[interaction_id].closed = True
        self.interactions[interaction_id].recording_url = recording_url
        self._after("close_interaction")

    def find_interaction(self, client_session_id: str) -> str | None:
        self._enter("find_interaction")
        self._forbidden()
        found = self.by_contact(client_session_id)
        return found[0].interaction_id if found and not self.reads_filtered else None

    def find_conversation(self, interaction_id: str) -> str | None:
        self._enter("find_conversation")
        self._forbidden()
        return self.interactions[interaction_id].conversation_id

    def find_message_ids(self, conversation_id: str, segment_ids: Iterable[str]) -> set[str]:
        self._enter("find_messages")
        self._forbidden()
        stored = {m.id for i in self.interactions.values() if i.conversation_id == conversation_id for m in i.messages}
        return set() if self.reads_filtered else stored & set(segment_ids)

    def conversation_has_messages(self, conversation_id: str) -> bool:
        self._enter("probe_messages")
        self._forbidden()
        if self.reads_filtered:
            return False
        return any(i.messages for i in self.interactions.values() if i.conversation_id == conversation_id)

    def find_open_interactions(self, client_session_id: str) -> list[str]:
        self._enter("find_open_interactions")
        self._forbidden()
        if self.reads_filtered:
            return []
        return [i.interaction_id for i in self.by_contact(client_session_id) if not i.closed]

    def _forbidden(self) -> None:
        if self.read_forbidden:
            from bridge.errors import ServiceNowReadForbiddenError

            raise ServiceNowReadForbiddenError("User Not Authorized", status=403)


class FakeContactStore:
    def __init__(self) -> None:
        self.items: dict[str, ContactState] = {}
        self.loads = 0
        self.writes = 0
        self.fail_next_save: list[Exception] = []
        self.parked_markers: set[str] = set()
        self.shard_positions: dict[str, ShardPosition] = {}
        self.position_writes = 0

    def __len__(self) -> int:
        return len(self.items)

    def __contains__(self, contact_id: object) -> bool:
        return contact_id in self.items

    def load_many(self, contact_ids: Sequence[str]) -> dict[str, ContactState]:
        self.loads += 1
        return {cid: self.items[cid] for cid in contact_ids if cid in self.items}

    def claim(self, contact_id: str, instance_id: str, now: int) -> ContactState:
        self.writes += 1
        if contact_id in self.items:
            raise ContactConflictError("claimed already")
        state = ContactState(contact_id, ContactStatus.CLAIMED, 1, instance_id, created_at=now, updated_at=now)
        self.items[contact_id] = state
        return state

    def record_position(self, shard_id: str, position: ShardPosition) -> None:
        self.position_writes += 1  # not a contact state write (those are ``writes``)
        self.shard_positions[shard_id] = position

    def positions(self, shard_ids: Sequence[str]) -> dict[str, ShardPosition]:
        return {s: self.shard_positions[s] for s in shard_ids if s in self.shard_positions}

    def parked_before(self, keys: Sequence[str]) -> set[str]:
        return self.parked_markers & set(keys)

    def remember_parked(self, keys: Sequence[str], expires_at: int) -> None:
        self.writes += 1
        self.parked_markers.update(keys)

    def save(self, state: ContactState, expected_version: int) -> ContactState:
        self.writes += 1
        if self.fail_next_save:
            raise self.fail_next_save.pop(0)
        current = self.items.get(state.contact_id)
        if current is None or current.version != expected_version:
            raise ContactConflictError("version changed")
        saved = state.evolve(version=expected_version + 1)
        self.items[state.contact_id] = saved
        return saved


class FakeConnect:
    def __init__(
        self,
        details: ContactDetails | None = None,
        attributes: Mapping[str, str] | None = None,
        usernames: Mapping[str, str] | None = None,
        error: Exception | None = None,
        contacts: Mapping[str, ContactDetails] | None = None,
    ) -> None:
        self.details = details or ContactDetails()
        self.attributes = dict(attributes or {})
        self.usernames = dict(usernames or {})
        self.error = error
        self.calls: list[str] = []
        # Per contact (a transferred call's legs); a contact not in it answers ``details``.
        self.contacts = dict(contacts or {})

    def describe_contact(self, instance_id: str, contact_id: str) -> ContactDetails:
        self.calls.append("DescribeContact")
        if self.error:
            raise self.error
        return self.contacts.get(contact_id, self.details)

    def associated_contacts(self, instance_id: str, contact_id: str) -> list[AssociatedContact]:
        """Derived from ``contacts`` as Connect derives it: every contact with the same initial contact."""
        self.calls.append("ListAssociatedContacts")
        if self.error:
            raise self.error
        root = self.contacts.get(contact_id, self.details).initial_contact_id or contact_id
        return [
            AssociatedContact(cid, d.initiation_method, d.initiated_at, d.disconnected_at)
            for cid, d in self.contacts.items()
            if (d.initial_contact_id or cid) == root
        ]

    def contact_attributes(self, instance_id: str, contact_id: str) -> Mapping[str, str]:
        self.calls.append("GetContactAttributes")
        if self.error:
            raise self.error
        return self.attributes

    def agent_username(self, instance_id: str, agent_id: str) -> str | None:
        self.calls.append("DescribeUser")
        return self.usernames.get(agent_id)


class FakeParking:
    def __init__(self) -> None:
        self.items: list[ParkedItem] = []
        self.fail: Exception | None = None

    def __len__(self) -> int:
        return len(self.items)

    def park(self, items: Sequence[ParkedItem]) -> None:
        if self.fail:
            raise self.fail
        self.items.extend(items)

    def reasons(self) -> list[str]:
        return [item.reason_class for item in self.items]
