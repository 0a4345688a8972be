"""The deliberately naive baseline, kept only here for comparison: records one by one, and for every forwarded
segment one state read, one ServiceNow request and one state write. No grouping, no pool, no batching.

It produces the same ServiceNow content as the bridge on a clean stream (same ids, same mapping, notes included)
so the comparison is like for like; it has none of the bridge's recovery logic. It runs against the same ports
(fakes, or the real DynamoDB store and ServiceNow client) and counts what it does.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from bridge.events import parse_record
from bridge.models import ContactEvent, ContactState, ContactStatus, EventType, OpenRequest, OutgoingMessage
from bridge.planner import note_messages, transcript_message
from bridge.ports import ContactStorePort, ServiceNowPort


@dataclass
class NaiveCounts:
    servicenow_requests: int = 0
    state_reads: int = 0
    state_writes: int = 0
    segments_sent: int = 0


class NaiveBridge:
    def __init__(
        self,
        servicenow: ServiceNowPort,
        store: ContactStorePort,
        forward_notes: bool = True,
        fallback_user_id: str = "anonymous",
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.servicenow = servicenow
        self.store = store
        self.forward_notes = forward_notes
        self.fallback_user_id = fallback_user_id
        self.clock = clock
        self.counts = NaiveCounts()

    def process(self, lambda_records: Sequence[Any]) -> NaiveCounts:
        for lambda_record in lambda_records:
            event = parse_record(lambda_record)
            if isinstance(event, ContactEvent):
                self._event(event)
        return self.counts

    # -- per record, per segment ------------------------------------------------------------------------------

    def _read(self, contact_id: str) -> ContactState | None:
        self.counts.state_reads += 1
        return self.store.load_many([contact_id]).get(contact_id)

    def _write(self, state: ContactState, **changes: Any) -> ContactState:
        self.counts.state_writes += 1
        return self.store.save(state.evolve(updated_at=int(self.clock()), **changes), expected_version=state.version)

    def _open(self, event: ContactEvent) -> ContactState:
        request = OpenRequest(user_id=self.fallback_user_id, client_session_id=event.contact_id)
        self.counts.state_writes += 1
        state = self.store.claim(event.contact_id, event.instance_id, int(self.clock()))
        self.counts.servicenow_requests += 2
        interaction_id = self.servicenow.create_interaction(request)
        conversation_id = self.servicenow.create_conversation(interaction_id, request)
        return self._write(
            state, status=ContactStatus.OPEN, interaction_id=interaction_id, conversation_id=conversation_id
        )

    def _event(self, event: ContactEvent) -> None:
        if event.event_type is EventType.STARTED:
            if self._read(event.contact_id) is None:
                self._open(event)
            return
        sequence_number = event.record.sequence_number
        messages: list[OutgoingMessage] = [transcript_message(t, sequence_number) for t in event.transcripts]
        if self.forward_notes and (event.categories or event.summaries):
            state = self._read(event.contact_id)
            last = max([state.max_offset_millis if state else 0, *(m.end_offset_millis for m in messages)])
            messages.extend(note_messages(event, last))
        for message in messages:
            state = self._read(event.contact_id)
            if state is None or state.interaction_id is None:
                state = self._open(event)
            if message.id in state.sent:
                continue
            self.counts.servicenow_requests += 1
            self.servicenow.post_messages(state.interaction_id or "", [message])
            self.counts.segments_sent += 1
            self._write(
                state,
                sent=state.sent.with_ids([message.id]),
                max_offset_millis=max(state.max_offset_millis, message.end_offset_millis),
            )
        if event.event_type.ends_contact:
            state = self._read(event.contact_id)
            if state is not None and state.status is not ContactStatus.CLOSED and state.interaction_id:
                self.counts.servicenow_requests += 1
                self.servicenow.close_interaction(state.interaction_id, None)
                self._write(state, status=ContactStatus.CLOSED)
