"""One contact's I/O for one batch: execute the planner's decision in order (open, reconcile, send, close).

State writes per contact and batch: exactly one when anything changes (the *pre-write*, see planner.py), plus
the claim when a contact is first seen. ServiceNow requests: one per step.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TypeVar

from bridge.directory import ContactDirectory
from bridge.errors import (
    PermanentError,
    ServiceNowAmbiguousError,
    ServiceNowReadForbiddenError,
    ServiceNowRejectedError,
    ServiceNowUnavailableError,
    TimeBudgetExceededError,
)
from bridge.log import logger
from bridge.models import (
    ContactEvent,
    ContactState,
    ContactStatus,
    OpenRequest,
    OutgoingMessage,
    PendingEntry,
)
from bridge.planner import ContactPlan, PlanOptions, plan_contact
from bridge.ports import ContactStorePort, ParkedItem, ServiceNowPort
from bridge.redaction import RedactionMode

# ServiceNow rejects bodies over 10 MB; stay far below, and keep one request per contact per batch in practice
# (a 100-record batch of one contact is ~300 KB).
MAX_MESSAGES_PER_REQUEST = 500
MAX_BYTES_PER_REQUEST = 4 * 1024 * 1024
# Do not start a ServiceNow step with less time than a connect + read timeout left: let Kinesis redeliver instead.
MIN_SECONDS_PER_STEP = 3.0
ALREADY_PROCESSED = "already been processed"
T = TypeVar("T")


@dataclass
class ContactOutcome:
    """What happened to one contact in one batch: a value that logs, metrics and tests assert on."""

    contact_id: str
    first_sequence_number: str
    interaction_id: str | None = None
    opened: bool = False
    recovered_interaction: bool = False
    sent: int = 0
    notes_sent: int = 0
    reconciled: int = 0  # unconfirmed segments found already stored (not re-sent)
    resent: int = 0  # unconfirmed segments that were missing and were sent again
    possible_duplicates: int = 0  # re-sent without being able to read back (Table API read forbidden)
    duplicates: int = 0
    utterances: int = 0
    closed: bool = False
    state_writes: int = 0
    servicenow_requests: int = 0
    parked: list[ParkedItem] = field(default_factory=list)
    retry: bool = False
    error_class: str | None = None
    lookup_fallbacks: list[str] = field(default_factory=list)
    redacted: int = 0  # new messages that had anything masked (SegmentsRedacted)


@dataclass(frozen=True)
class RunnerOptions:
    forward_notes: bool = True
    redaction: RedactionMode = RedactionMode.NONE
    contact_ttl_days: int = 7
    historical: bool = False
    # After a read timeout ServiceNow may still apply the request: how long to keep reading back before concluding
    # it was not applied (see README "Reliability", the late-apply window).
    settle_seconds: float = 10.0
    # Read timeout + settle: how long after a send its request may still land in ServiceNow.
    late_apply_seconds: float = 20.0


def _size_bound(message: OutgoingMessage) -> int:
    """An upper bound of the message's JSON size without encoding it (this runs for every message): a character
    takes at most 6 bytes (a \\u escape), and the fixed fields, offsets and attributes far less than 512."""
    attributes = sum(len(key) + len(value) for key, value in message.attributes)
    return 6 * (len(message.content) + len(message.id) + attributes) + 512


def chunk_messages(messages: Sequence[OutgoingMessage]) -> list[list[OutgoingMessage]]:
    """Split only past the size limits: normally one request per contact per batch."""
    chunks: list[list[OutgoingMessage]] = []
    current: list[OutgoingMessage] = []
    size = 0
    for message in messages:
        message_size = _size_bound(message)
        if current and (len(current) >= MAX_MESSAGES_PER_REQUEST or size + message_size > MAX_BYTES_PER_REQUEST):
            chunks.append(current)
            current, size = [], 0
        current.append(message)
        size += message_size
    if current:
        chunks.append(current)
    return chunks


def records_of(events: Sequence[ContactEvent]) -> tuple[dict[str, object], ...]:
    return tuple(event.record.to_parked() for event in events)


class ContactRunner:
    """Runs one contact's plan against the ports. Safe to share across threads (it keeps no per-contact state)."""

    def __init__(
        self,
        servicenow: ServiceNowPort,
        store: ContactStorePort,
        directory: ContactDirectory,
        options: RunnerOptions = RunnerOptions(),
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.servicenow = servicenow
        self.store = store
        self.directory = directory
        self.options = options
        self.clock = clock
        self.monotonic = monotonic
        self.sleep = sleep

    # -- entry point ---------------------------------------------------------------------------------------------

    def run(
        self, events: Sequence[ContactEvent], state: ContactState | None, deadline: float, historical: bool = False
    ) -> ContactOutcome:
        plan = plan_contact(
            events, state, PlanOptions(forward_notes=self.options.forward_notes, redaction=self.options.redaction)
        )
        outcome = ContactOutcome(
            contact_id=plan.contact_id,
            first_sequence_number=plan.first_sequence_number,
            interaction_id=state.interaction_id if state else None,
            duplicates=plan.duplicates,
            utterances=plan.utterances,
            redacted=plan.redacted,
        )
        if plan.after_close:
            # ServiceNow stores nothing after close: keep the segments (parked), never drop them silently.
            outcome.parked.append(
                ParkedItem(
                    reason_class="after_close",
                    reason="new segments arrived after the interaction was closed",
                    records=records_of(plan.after_close),
                    contact_id=plan.contact_id,
                )
            )
            logger.warning("segments after close parked", step="plan", outcome="parked", records=len(plan.after_close))
        if not plan.writes_state and not plan.reclose:
            # DEBUG: utterance-only batches are the commonest case and would be a line per contact per batch.
            logger.debug(
                "nothing new", step="plan", outcome="skipped", duplicates=plan.duplicates, utterances=plan.utterances
            )
            return outcome

        state = self._ensure_open(plan, state, outcome, deadline)
        to_send = self._reconcile(plan, state, outcome, deadline) + list(plan.messages)
        saved = self._pre_write(plan, state, to_send, outcome)
        started = events[0].record.arrival_timestamp or self.clock()
        self._send(plan, saved, to_send, outcome, deadline, started if historical else None)
        if plan.close or plan.reclose:
            self._close(plan, saved, outcome, deadline)
        return outcome

    # -- steps ---------------------------------------------------------------------------------------------------

    def _check_budget(self, deadline: float, step: str) -> None:
        if deadline - self.monotonic() < MIN_SECONDS_PER_STEP:
            raise TimeBudgetExceededError(f"not enough time left to {step}")

    def _ensure_open(
        self, plan: ContactPlan, state: ContactState | None, outcome: ContactOutcome, deadline: float
    ) -> ContactState:
        if not plan.open:
            assert state is not None
            return state
        request: OpenRequest | None = None
        interaction_id = conversation_id = None
        if state is None:
            request, outcome.lookup_fallbacks = self.directory.open_request(plan.instance_id, plan.contact_id)
            # Claim before creating: of two deliveries of STARTED, only one gets past this conditional write.
            state = self.store.claim(plan.contact_id, plan.instance_id, int(self.clock()))
            outcome.state_writes += 1
        else:
            # An earlier attempt claimed the contact and may have created the interaction before dying (or its
            # POST was answered ambiguously): find it by clientSessionId before creating another.
            # A young claim's attempt may have died while its create was still landing: let the lookup settle.
            interaction_id = state.interaction_id or self._find(
                self.servicenow.find_interaction, plan.contact_id, outcome, deadline if self._young(state) else None
            )
            if interaction_id:
                outcome.recovered_interaction = state.interaction_id is None
                conversation_id = state.conversation_id or self._find(
                    self.servicenow.find_conversation, interaction_id, outcome
                )
        if interaction_id is None:
            self._check_budget(deadline, "create the interaction")
            if request is None:
                request, outcome.lookup_fallbacks = self.directory.open_request(plan.instance_id, plan.contact_id)
            outcome.servicenow_requests += 1
            try:
                interaction_id = self.servicenow.create_interaction(request)
                outcome.opened = True
            except ServiceNowAmbiguousError as exc:
                # A timed-out create may still land: wait for it rather than let a redelivery create a second one.
                found = (
                    self._find(self.servicenow.find_interaction, plan.contact_id, outcome, deadline)
                    if exc.timed_out
                    else None
                )
                if found is None:
                    raise
                interaction_id = found
                outcome.recovered_interaction = True
        logger.thread_safe_append_keys(interaction_id=interaction_id)
        outcome.interaction_id = interaction_id
        if conversation_id is None:
            self._check_budget(deadline, "create the conversation")
            if request is None:
                request, outcome.lookup_fallbacks = self.directory.open_request(plan.instance_id, plan.contact_id)
            outcome.servicenow_requests += 1
            conversation_id = self.servicenow.create_conversation(interaction_id, request)
        logger.info(
            "interaction open",
            step="open",
            outcome="recovered" if outcome.recovered_interaction else "opened" if outcome.opened else "conversation",
            lookup_fallbacks=outcome.lookup_fallbacks,
        )
        return state.evolve(interaction_id=interaction_id, conversation_id=conversation_id)

    def _young(self, state: ContactState) -> bool:
        """Whether the state was written so recently (read timeout + settle time) that a request the writing attempt
        made after it may still land in ServiceNow."""
        return self.clock() - state.updated_at < self.options.late_apply_seconds

    def _find(
        self,
        lookup: Callable[[str], str | None],
        key: str,
        outcome: ContactOutcome,
        settle_deadline: float | None = None,
    ) -> str | None:
        """A Table API lookup; with ``settle_deadline``, repeated (see ``_settle``) until the record shows up or
        has settled, because a write may still be landing. None when absent, or when the read is forbidden."""

        def probe() -> str | None:
            outcome.servicenow_requests += 1
            return lookup(key)

        try:
            return probe() if settle_deadline is None else self._settle(probe, settle_deadline)
        except ServiceNowReadForbiddenError:
            # Without Table API read access the bridge cannot tell whether an earlier attempt created the record.
            logger.warning("recovery read forbidden; creating anew", step="recover", outcome="read_forbidden")
            return None

    def _reconcile(
        self, plan: ContactPlan, state: ContactState, outcome: ContactOutcome, deadline: float
    ) -> list[OutgoingMessage]:
        if not plan.unconfirmed:
            return []
        self._check_budget(deadline, "reconcile")
        # Definite failures un-mark their segments (see _send), so a pending segment means the previous attempt died
        # or got an ambiguous answer. If that was recent, its POST may still be landing: let the read-back settle.
        missing = self._missing(state, plan.unconfirmed, outcome, deadline if self._young(state) else None)
        outcome.reconciled += len(plan.unconfirmed) - len(missing)
        outcome.resent += len(missing)
        logger.info(
            "reconciled unconfirmed segments",
            step="reconcile",
            outcome="reconciled",
            found=len(plan.unconfirmed) - len(missing),
            missing=len(missing),
        )
        return missing

    def _missing(
        self,
        state: ContactState,
        messages: Sequence[OutgoingMessage],
        outcome: ContactOutcome,
        settle_deadline: float | None = None,
    ) -> list[OutgoingMessage]:
        """The messages ServiceNow does not have (Table API read-back); with ``settle_deadline``, re-read (see
        ``_settle``) until it has them all or they have settled. A forbidden read leaves the rest missing: they are
        re-sent, and counted as possible duplicates."""
        remaining = list(messages)

        def all_stored() -> bool | None:
            nonlocal remaining
            outcome.servicenow_requests += 1
            present = self.servicenow.find_message_ids(state.conversation_id or "", [m.id for m in remaining])
            remaining = [m for m in remaining if m.id not in present]
            return True if not remaining else None

        try:
            if settle_deadline is None:
                all_stored()
            else:
                self._settle(all_stored, settle_deadline)
        except ServiceNowReadForbiddenError:
            outcome.possible_duplicates += len(remaining)
            logger.warning(
                "read-back forbidden; re-sending", step="reconcile", outcome="read_forbidden", count=len(remaining)
            )
        return remaining

    def _pre_write(
        self, plan: ContactPlan, state: ContactState, to_send: Sequence[OutgoingMessage], outcome: ContactOutcome
    ) -> ContactState:
        now = int(self.clock())
        status = (
            ContactStatus.CLOSED
            if plan.close
            else (ContactStatus.OPEN if state.status is ContactStatus.CLAIMED else state.status)
        )
        new_state = state.evolve(
            status=status,
            instance_id=state.instance_id or plan.instance_id,
            sent=state.sent.with_ids(m.id for m in to_send),
            pending=plan.keep_pending + tuple(PendingEntry(m.id, m.sequence_number) for m in to_send),
            close_sequence_number=plan.close_sequence_number,
            max_offset_millis=max(state.max_offset_millis, plan.max_offset_millis),
            updated_at=now,
            expires_at=now + self.options.contact_ttl_days * 86400,
        )
        saved = self.store.save(new_state, expected_version=state.version)
        outcome.state_writes += 1
        return saved

    def _send(
        self,
        plan: ContactPlan,
        state: ContactState,
        to_send: Sequence[OutgoingMessage],
        outcome: ContactOutcome,
        deadline: float,
        historical_start: float | None,
    ) -> None:
        """POST the messages (``historical_start``: the whole call in one ``/transcript`` request instead)."""
        if not to_send:
            return
        interaction_id = state.interaction_id or ""
        delivered: list[OutgoingMessage] = []
        try:
            if historical_start is not None:
                self._check_budget(deadline, "post the transcript")
                self._post_transcript(interaction_id, to_send, historical_start, outcome)
                delivered.extend(to_send)
            else:
                for chunk in chunk_messages(to_send):
                    self._check_budget(deadline, "send messages")
                    self._post_chunk(state, chunk, outcome, deadline)
                    delivered.extend(chunk)
        except (PermanentError, ServiceNowUnavailableError, TimeBudgetExceededError):
            # Rejected (parked by the caller), or provably not applied (retried later): un-mark what was not
            # delivered, so a redrive or redelivery sends it as new instead of waiting for it to settle.
            undelivered = {m.id for m in to_send if m not in delivered}
            reverted = state.evolve(
                sent=state.sent.without_ids(undelivered),
                pending=tuple(p for p in state.pending if p.segment_id not in undelivered),
                status=ContactStatus.OPEN if plan.close else state.status,
                close_sequence_number=None if plan.close else state.close_sequence_number,
            )
            self.store.save(reverted, expected_version=state.version)
            outcome.state_writes += 1
            raise
        notes = sum(1 for m in delivered if m.internal)
        outcome.notes_sent += notes
        outcome.sent += len(delivered) - notes
        # DEBUG: the adapter's "servicenow call" line already records this send (step, status, count, transaction).
        logger.debug("messages sent", step="send", outcome="sent", count=len(delivered), notes=notes)

    def _settle(self, probe: Callable[[], T | None], deadline: float) -> T | None:
        """Poll ``probe`` (at once, then with growing pauses) until it finds something, ``settle_seconds`` have
        passed, or the invocation runs short of time; returns what it found, or None. An exception from ``probe``
        (a forbidden read) ends the polling: there is nothing to wait for."""
        waited, pause = 0.0, 0.25
        while True:
            found = probe()
            if found or waited >= self.options.settle_seconds:
                return found
            pause = min(pause, self.options.settle_seconds - waited)
            if deadline - self.monotonic() - pause < MIN_SECONDS_PER_STEP:
                return found
            self.sleep(pause)
            waited += pause
            pause *= 2

    def _post_chunk(
        self, state: ContactState, chunk: Sequence[OutgoingMessage], outcome: ContactOutcome, deadline: float
    ) -> None:
        interaction_id = state.interaction_id or ""
        try:
            outcome.servicenow_requests += 1
            self.servicenow.post_messages(interaction_id, chunk)
        except ServiceNowAmbiguousError as exc:
            # Maybe stored, maybe not: read back and send only what is missing, never blindly re-POST.
            logger.warning(
                "ambiguous messages response; reading back",
                step="send",
                outcome="ambiguous",
                status=exc.status,
                transaction_id=exc.transaction_id,
            )
            try:
                # After a timeout ServiceNow may still be applying it: re-read until it shows up or has settled.
                missing = self._missing(state, chunk, outcome, deadline if exc.timed_out else None)
            except ServiceNowAmbiguousError:
                raise exc from None
            outcome.reconciled += len(chunk) - len(missing)
            if missing:
                outcome.servicenow_requests += 1
                self.servicenow.post_messages(interaction_id, missing)

    def _post_transcript(
        self, interaction_id: str, messages: Sequence[OutgoingMessage], started_epoch: float, outcome: ContactOutcome
    ) -> None:
        started = datetime.fromtimestamp(started_epoch, UTC).strftime("%Y-%m-%d %H:%M:%S")
        try:
            outcome.servicenow_requests += 1
            self.servicenow.post_transcript(interaction_id, messages, started)
        except ServiceNowRejectedError as exc:
            if ALREADY_PROCESSED not in exc.message:
                raise
            # The transcript endpoint accepts one call per interaction: an earlier attempt already stored it.
            logger.info("transcript already stored", step="send", outcome="duplicate")

    def _close(self, plan: ContactPlan, state: ContactState, outcome: ContactOutcome, deadline: float) -> None:
        self._check_budget(deadline, "close the interaction")
        url = self.directory.recording_url(state.instance_id or plan.instance_id, plan.contact_id)
        outcome.servicenow_requests += 1
        self.servicenow.close_interaction(state.interaction_id or "", url)
        outcome.closed = True
        logger.info(
            "interaction closed",
            step="close",
            outcome="reclosed" if plan.reclose else "closed",
            has_recording_url=url is not None,
        )
