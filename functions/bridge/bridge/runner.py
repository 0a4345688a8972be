"""One contact's I/O for one batch: execute the planner's decision in order (open, reconcile, send, close).

State writes per contact and batch: exactly one when anything changes (the *pre-write*, see planner.py), plus
the claim when a contact is first seen, and once per call the confirmed close (``close_pending`` cleared after the
PATCH, so a close that never got through stays visible to the sweeper). Failure paths write more (un-marking what
was not applied, marking a refused create). ServiceNow requests: one per step.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import TypeVar

from bridge.directory import ContactDirectory
from bridge.errors import (
    BridgeError,
    ServiceNowAmbiguousError,
    ServiceNowError,
    ServiceNowReadForbiddenError,
    ServiceNowRejectedError,
    ServiceNowUnavailableError,
    SettleIncompleteError,
    TimeBudgetExceededError,
)
from bridge.legs import Leg, anchor_ms, call_may_close, leg_number, root_of, shift_ms
from bridge.log import logger
from bridge.models import (
    ContactEvent,
    ContactState,
    ContactStatus,
    EventType,
    OpenRequest,
    OutgoingMessage,
    PendingEntry,
)
from bridge.planner import ContactPlan, LegPlan, PlanOptions, plan_contact
from bridge.ports import AssociatedContact, ContactDetails, ContactStorePort, ParkedItem, ServiceNowPort
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
    possible_duplicates: int = 0  # re-sent without being able to read back (Table API read forbidden or filtered)
    possible_orphans: int = 0  # interactions created while an earlier attempt's create could not be ruled out
    orphans_closed: int = 0  # other open interactions of the contact found and closed at close
    close_waiting: bool = False  # a leg ended while another leg of its call is live: the call stays open
    duplicates: int = 0
    utterances: int = 0
    closed: bool = False
    state_writes: int = 0
    servicenow_requests: int = 0
    parked: list[ParkedItem] = field(default_factory=list)
    retry: bool = False
    error_class: str | None = None
    retry_after: float | None = None  # ServiceNow asked for more time than the invocation had (Retry-After)
    # The error that made the contact retry or park (processor.error_data: class, status, message, transaction;
    # never a body): what replay's summary and the tests name.
    error: dict[str, object] = field(default_factory=dict)
    lookup_fallbacks: list[str] = field(default_factory=list)
    redacted: int = 0  # new messages that had anything masked (SegmentsRedacted)
    # The contact item as this batch left it, and the segment ids ServiceNow confirmed: the processor clears their
    # pending entries when the batch is redelivered because of another contact (see BatchProcessor).
    final_state: ContactState | None = None
    confirmed_ids: frozenset[str] = frozenset()


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


@dataclass(frozen=True)
class _Placed:
    """Where a first-seen contact sits in its call (ContactRunner._place)."""

    leg: Leg
    details: ContactDetails
    plan: LegPlan | None = None
    root_state: ContactState | None = None
    root_anchor: int = 0


def records_of(events: Sequence[ContactEvent]) -> tuple[dict[str, object], ...]:
    return tuple(event.record.to_parked() for event in events)


class ReadsFiltered(ServiceNowReadForbiddenError):
    """The Table API answered an empty read-back for messages this contact provably stored: the integration user's
    reads are filtered by ACLs (a real instance answers 200 with no rows rather than 403). Handled as forbidden."""


class _PartialDelivery(Exception):
    """A chunk's POST failed after part of it was proven stored: what is delivered, what is still uncertain (kept
    pending for redelivery to reconcile), and the error to hand on. Everything else of the chunk was not applied."""

    def __init__(self, delivered: Sequence[OutgoingMessage], uncertain: set[str], error: BridgeError) -> None:
        super().__init__(str(error))
        self.delivered = list(delivered)
        self.uncertain = uncertain
        self.error = error


_filtered_reads_logged = False


def _warn_filtered_reads_once() -> None:
    """Once per container: the condition is a setting of the instance, not of one contact."""
    global _filtered_reads_logged
    if not _filtered_reads_logged:
        _filtered_reads_logged = True
        logger.warning(
            "Table API read-back returned no rows for stored messages: the integration user's reads are filtered "
            "by ACLs; unconfirmed segments are re-sent and counted as PossibleDuplicates (README window 1)",
            step="reconcile",
            outcome="reads_filtered",
        )


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
        self,
        events: Sequence[ContactEvent],
        state: ContactState | None,
        deadline: float,
        historical: bool = False,
        outcome: ContactOutcome | None = None,
    ) -> ContactOutcome:
        """Run one contact's batch. ``outcome``: the value to count into, so that what happened before a failure
        (a possible duplicate, an orphan) is still counted when the caller catches it."""
        if outcome is None:
            outcome = ContactOutcome(
                contact_id=events[0].contact_id, first_sequence_number=events[0].record.sequence_number
            )
        placed: _Placed | None = None
        leg_plan: LegPlan | None = None
        if state is None and self.directory.knows_calls and events[0].instance_id:
            placed = self._place(events, outcome)
            if placed.leg.ignored:
                return self._ignore(events, outcome)
            leg_plan = placed.plan
        elif state is not None and state.root_contact_id:
            leg_plan = LegPlan(shift_ms=state.offset_shift_ms, label=f"leg {state.leg_number}")
        plan = plan_contact(
            events,
            state,
            PlanOptions(forward_notes=self.options.forward_notes, redaction=self.options.redaction),
            leg_plan,
        )
        outcome.interaction_id = state.interaction_id if state else None
        outcome.duplicates = plan.duplicates
        outcome.utterances = plan.utterances
        outcome.redacted = plan.redacted
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

        late_join = not any(event.event_type is EventType.STARTED for event in events)
        if placed is not None and not placed.leg.is_root and plan.open:
            state = self._join_call(plan, placed, outcome, deadline)
        else:
            state = self._ensure_open(plan, state, outcome, deadline, late_join, placed.details if placed else None)
            if placed is not None and not state.anchor_ms:
                state = state.evolve(anchor_ms=placed.leg.anchor_ms)  # the call's anchor, saved by the pre-write
        to_send = self._reconcile(plan, state, outcome, deadline) + list(plan.messages)
        saved = self._pre_write(plan, state, to_send, outcome)
        started = events[0].record.arrival_timestamp or self.clock()
        self._send(plan, saved, to_send, outcome, deadline, started if historical else None)
        outcome.final_state = saved
        outcome.confirmed_ids = frozenset(m.id for m in to_send)
        if plan.close or plan.reclose:
            self._close(plan, saved, outcome, deadline)
        return outcome

    # -- the call's legs (bridge.legs) ---------------------------------------------------------------------------

    def _place(self, events: Sequence[ContactEvent], outcome: ContactOutcome) -> _Placed:
        """A contact seen for the first time: which call it belongs to, and (a later leg) where on its timeline.
        One DescribeContact (reused for the create's caller and agent); a later leg adds ListAssociatedContacts, the
        root's item, and the root's DescribeContact when the root has not recorded its anchor yet."""
        first = events[0]
        instance, contact = first.instance_id, first.contact_id
        details = self.directory.describe(instance, contact, outcome.lookup_fallbacks)
        root = root_of(contact, details)
        arrival = first.record.arrival_timestamp or None
        leg = Leg(contact, root, details.initiation_method, anchor_ms(details, arrival))
        if leg.ignored or leg.is_root:
            return _Placed(leg, details)
        associated = self.directory.associated(instance, root, outcome.lookup_fallbacks)
        leg = replace(leg, number=leg_number(contact, associated))
        root_state = self.store.load_many([root]).get(root)
        root_anchor = root_state.anchor_ms if root_state and root_state.anchor_ms else 0
        if not root_anchor:
            root_anchor = anchor_ms(self.directory.describe(instance, root, outcome.lookup_fallbacks))
        shift = shift_ms(leg.anchor_ms, root_anchor)
        agent = self.directory.agent_name(instance, details.agent_id)
        text = f"Transferred to {agent or 'the next leg'} \u2014 {details.initiation_method or 'TRANSFER'}"
        note = OutgoingMessage(
            id=f"voicebridge-transfer-{contact}",
            content=text,
            participant="AGENT",
            begin_offset_millis=shift,
            end_offset_millis=shift,
            sentiment=None,
            internal=True,
            sequence_number=first.record.sequence_number,
            attributes=(("noteType", "transfer"), ("leg", str(leg.number)), ("legContactId", contact)),
        )
        plan = LegPlan(shift_ms=shift, label=leg.label, opening_notes=(note,))
        logger.info("transfer leg joins its call", step="open", outcome="leg", leg=leg.number, root_contact_id=root)
        return _Placed(leg, details, plan, root_state, root_anchor)

    def _ignore(self, events: Sequence[ContactEvent], outcome: ContactOutcome) -> ContactOutcome:
        """A MONITOR contact: remembered as ignored (one write, so it is never looked up again), nothing sent."""
        first = events[0]
        now = int(self.clock())
        claimed = self.store.claim(first.contact_id, first.instance_id, now)
        self.store.save(
            claimed.evolve(status=ContactStatus.IGNORED, expires_at=now + self.options.contact_ttl_days * 86400),
            expected_version=claimed.version,
        )
        outcome.state_writes += 2
        outcome.duplicates += sum(len(e.transcripts) for e in events)
        logger.info("monitor contact ignored", step="plan", outcome="ignored")
        return outcome

    def _join_call(self, plan: ContactPlan, placed: _Placed, outcome: ContactOutcome, deadline: float) -> ContactState:
        """A later leg: the call's interaction is the root's. If the root has none yet (this leg's STARTED came
        first), this leg opens it under the root's item, with the root's caller and the first agent there is."""
        leg = placed.leg
        root_state = placed.root_state
        if root_state is None or not root_state.interaction_id or not root_state.conversation_id:
            root_plan = replace(plan, contact_id=leg.root_contact_id, open=True)
            root_details = self.directory.describe(plan.instance_id, leg.root_contact_id, outcome.lookup_fallbacks)
            opened = self._ensure_open(
                root_plan,
                root_state,
                outcome,
                deadline,
                late_join=True,
                details=root_details,
                agent_details=placed.details,
            )
            now = int(self.clock())
            root_state = self.store.save(
                opened.evolve(
                    status=ContactStatus.OPEN if opened.status is ContactStatus.CLAIMED else opened.status,
                    anchor_ms=opened.anchor_ms or placed.root_anchor,
                    updated_at=now,
                    expires_at=now + self.options.contact_ttl_days * 86400,
                ),
                expected_version=opened.version,
            )
            outcome.state_writes += 1
            logger.thread_safe_append_keys(interaction_id=root_state.interaction_id)
        own = self.store.claim(plan.contact_id, plan.instance_id, int(self.clock()))
        outcome.state_writes += 1
        outcome.interaction_id = root_state.interaction_id
        return own.evolve(
            status=ContactStatus.OPEN,
            interaction_id=root_state.interaction_id,
            conversation_id=root_state.conversation_id,
            root_contact_id=leg.root_contact_id,
            offset_shift_ms=placed.plan.shift_ms if placed.plan else 0,
            leg_number=leg.number,
            anchor_ms=leg.anchor_ms,
        )

    # -- steps ---------------------------------------------------------------------------------------------------

    def _check_budget(self, deadline: float, step: str) -> None:
        if deadline - self.monotonic() < MIN_SECONDS_PER_STEP:
            raise TimeBudgetExceededError(f"not enough time left to {step}")

    def _ensure_open(
        self,
        plan: ContactPlan,
        state: ContactState | None,
        outcome: ContactOutcome,
        deadline: float,
        late_join: bool = False,
        details: ContactDetails | None = None,
        agent_details: ContactDetails | None = None,
    ) -> ContactState:
        """Make sure the contact has its interaction and conversation (claim, find, or create). ``details``: its
        DescribeContact answer when already at hand; ``agent_details``: the leg whose agent the call gets when the
        contact has none (a transfer's root opened by a later leg)."""
        if not plan.open:
            assert state is not None
            return state
        request: OpenRequest | None = None
        interaction_id = conversation_id = None
        recovering = False  # an earlier attempt may have created the interaction
        blind = False  # ... and the Table API could not be asked (forbidden)
        if state is None:
            request, fallbacks = self.directory.open_request(plan.instance_id, plan.contact_id, details, agent_details)
            outcome.lookup_fallbacks += fallbacks
            # Before the claim: a claim that never gets its create would make the redelivery wait for nothing.
            self._check_budget(deadline, "create the interaction")
            # Claim before creating: of two deliveries of STARTED, only one gets past this conditional write.
            state = self.store.claim(plan.contact_id, plan.instance_id, int(self.clock()))
            outcome.state_writes += 1
            if late_join:
                # No state and no STARTED: the bridge joined mid-call, or the contact's item expired (TTL) before a
                # redrive of its parked records. The interaction may exist: look once before creating another.
                recovering = True
                interaction_id, blind = self._lookup_interaction(plan.contact_id, outcome, None)
                if interaction_id:
                    outcome.recovered_interaction = True
                    conversation_id = self._find(self.servicenow.find_conversation, interaction_id, outcome)
        else:
            # An earlier attempt claimed the contact and may have created the interaction before dying (or its
            # POST was answered ambiguously): find it by clientSessionId before creating another.
            # A young claim's attempt may have died while its create was still landing: let the lookup settle,
            # unless that attempt's create provably never reached ServiceNow.
            settle = self._young(state) and not state.create_not_applied
            interaction_id = state.interaction_id
            if interaction_id is None:
                recovering = True
                interaction_id, blind = self._lookup_interaction(plan.contact_id, outcome, deadline if settle else None)
            if interaction_id:
                outcome.recovered_interaction = state.interaction_id is None
                conversation_id = state.conversation_id or self._find(
                    self.servicenow.find_conversation, interaction_id, outcome
                )
        if interaction_id is None:
            try:
                self._check_budget(deadline, "create the interaction")
            except TimeBudgetExceededError:
                self._mark_create_not_applied(state, outcome)
                raise
            if request is None:
                request, fallbacks = self.directory.open_request(
                    plan.instance_id, plan.contact_id, details, agent_details
                )
                outcome.lookup_fallbacks += fallbacks
            outcome.servicenow_requests += 1
            try:
                interaction_id = self.servicenow.create_interaction(request)
                outcome.opened = True
            except ServiceNowUnavailableError:
                # Provably not applied: the redelivery creates at once instead of waiting for it to land.
                self._mark_create_not_applied(state, outcome)
                raise
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
            if outcome.opened and recovering:
                state = self._after_recovery_create(plan.contact_id, interaction_id, blind, state, outcome)
        logger.thread_safe_append_keys(interaction_id=interaction_id)
        outcome.interaction_id = interaction_id
        if conversation_id is None:
            self._check_budget(deadline, "create the conversation")
            if request is None:
                request, fallbacks = self.directory.open_request(
                    plan.instance_id, plan.contact_id, details, agent_details
                )
                outcome.lookup_fallbacks += fallbacks
            outcome.servicenow_requests += 1
            conversation_id = self.servicenow.create_conversation(interaction_id, request)
        logger.info(
            "interaction open",
            step="open",
            outcome="recovered" if outcome.recovered_interaction else "opened" if outcome.opened else "conversation",
            lookup_fallbacks=outcome.lookup_fallbacks,
        )
        return state.evolve(interaction_id=interaction_id, conversation_id=conversation_id, create_not_applied=False)

    def _lookup_interaction(
        self, contact_id: str, outcome: ContactOutcome, settle_deadline: float | None
    ) -> tuple[str | None, bool]:
        """(interaction id or None, blind): blind when the Table API read is forbidden."""
        try:
            found = self._find(self.servicenow.find_interaction, contact_id, outcome, settle_deadline, forbid=True)
        except ServiceNowReadForbiddenError:
            logger.warning("recovery read forbidden; creating anew", step="recover", outcome="read_forbidden")
            return None, True
        return found, False

    def _after_recovery_create(
        self, contact_id: str, created: str, blind: bool, state: ContactState, outcome: ContactOutcome
    ) -> ContactState:
        """An interaction was created where an earlier attempt's create may have landed unseen. Never silently:
        remember to close the contact's other open interactions at close (``orphan_check``), and count the create
        when the lookup could not see (forbidden, or filtered: the new interaction itself does not show)."""
        if not blind:
            outcome.servicenow_requests += 1
            try:
                blind = self.servicenow.find_interaction(contact_id) is None  # filtered: not even ours shows
            except ServiceNowError:
                blind = True
        if blind:
            outcome.possible_orphans += 1
            logger.warning(
                "interaction created without being able to rule out an earlier one (Table API read forbidden or "
                "filtered); other open interactions of the contact are closed with it when found",
                step="open",
                outcome="possible_orphan",
                interaction_id=created,
            )
        return state.evolve(orphan_check=True)

    def _mark_create_not_applied(self, state: ContactState, outcome: ContactOutcome) -> ContactState:
        if state.create_not_applied:
            return state
        saved = self.store.save(
            state.evolve(create_not_applied=True, updated_at=int(self.clock())), expected_version=state.version
        )
        outcome.state_writes += 1
        return saved

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
        forbid: bool = False,
    ) -> str | None:
        """A Table API lookup; with ``settle_deadline``, repeated (see ``_settle``) until the record shows up or
        has settled, because a write may still be landing. None when absent, or when the read is forbidden (with
        ``forbid``, a forbidden read raises instead)."""

        def probe() -> str | None:
            outcome.servicenow_requests += 1
            return lookup(key)

        try:
            return probe() if settle_deadline is None else self._settle(probe, settle_deadline)
        except ServiceNowReadForbiddenError:
            if forbid:
                raise
            # Without Table API read access the bridge cannot tell whether an earlier attempt created the record.
            logger.warning("recovery read forbidden; creating anew", step="recover", outcome="read_forbidden")
            return None

    def _reconcile(
        self, plan: ContactPlan, state: ContactState, outcome: ContactOutcome, deadline: float
    ) -> list[OutgoingMessage]:
        if not plan.unconfirmed:
            return []
        if state.status is ContactStatus.CLOSED and not state.close_pending:
            # The close was confirmed, and a close only follows a send that succeeded: every segment marked before
            # it is stored. (Read back, an ACL'd contact would look empty and be re-sent into a closed interaction.)
            outcome.reconciled += len(plan.unconfirmed)
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
        conversation = state.conversation_id or ""
        probed = False

        def all_stored() -> bool | None:
            nonlocal remaining, probed
            outcome.servicenow_requests += 1
            present = self.servicenow.find_message_ids(conversation, [m.id for m in remaining])
            if not present and not probed:
                # Nothing found: are reads filtered (ACL)? Probe what provably exists: a message of this contact
                # (one was confirmed), else its interaction (the bridge holds its id).
                probed = True
                outcome.servicenow_requests += 1
                if _has_confirmed_messages(state):
                    if not self.servicenow.conversation_has_messages(conversation):
                        raise ReadsFiltered("Table API reads of sys_cs_message are filtered", status=200)
                elif (
                    state.interaction_id
                    and self.servicenow.find_interaction(state.root_contact_id or state.contact_id) is None
                ):
                    raise ReadsFiltered("Table API reads of interaction are filtered", status=200)
            remaining = [m for m in remaining if m.id not in present]
            return True if not remaining else None

        try:
            if settle_deadline is None:
                all_stored()
            else:
                self._settle(all_stored, settle_deadline)
        except ServiceNowReadForbiddenError as exc:
            outcome.possible_duplicates += len(remaining)
            if isinstance(exc, ReadsFiltered):
                _warn_filtered_reads_once()
            else:
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
            close_pending=state.close_pending or plan.close,
            instance_id=state.instance_id or plan.instance_id,
            sent=state.sent.with_ids(m.id for m in to_send),
            pending=plan.keep_pending + tuple(PendingEntry(m.id, m.sequence_number) for m in to_send),
            close_sequence_number=plan.close_sequence_number,
            max_offset_millis=max(state.max_offset_millis, plan.max_offset_millis),
            last_arrival=max(state.last_arrival, plan.last_arrival),
            shard_id=plan.shard_id or state.shard_id,
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
        uncertain: set[str] = set()
        try:
            if historical_start is not None:
                self._check_budget(deadline, "post the transcript")
                try:
                    self._post_transcript(interaction_id, to_send, historical_start, outcome)
                except ServiceNowAmbiguousError:
                    uncertain = {m.id for m in to_send}
                    raise
                delivered.extend(to_send)
            else:
                for chunk in chunk_messages(to_send):
                    self._check_budget(deadline, "send messages")
                    try:
                        self._post_chunk(state, chunk, outcome, deadline)
                    except _PartialDelivery as partial:
                        delivered.extend(partial.delivered)
                        uncertain = partial.uncertain
                        raise partial.error from None
                    delivered.extend(chunk)
        except BridgeError:
            # Un-mark what provably did not reach ServiceNow (rejected: parked by the caller; not applied or never
            # sent: retried later), so a redrive or redelivery sends it as new instead of waiting for it to settle.
            # What may have been stored stays *pending*: the redelivery reads it back before re-sending anything.
            # What was proven stored is confirmed (its pending entry dropped).
            delivered_ids = {m.id for m in delivered}
            undelivered = {m.id for m in to_send} - delivered_ids - uncertain
            settled = undelivered | delivered_ids
            reverted = state.evolve(
                sent=state.sent.without_ids(undelivered),
                pending=tuple(p for p in state.pending if p.segment_id not in settled),
                status=ContactStatus.OPEN if plan.close else state.status,
                close_sequence_number=None if plan.close else state.close_sequence_number,
                close_pending=False if plan.close else state.close_pending,
            )
            if reverted != state:
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
                # Concluding "not there" now could re-send or re-create what is still landing: hand it back.
                raise SettleIncompleteError(
                    f"the invocation ran out of time after waiting {waited:.1f} of "
                    f"{self.options.settle_seconds:.0f} s for a write to settle"
                )
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
            return
        except ServiceNowAmbiguousError as exc:
            ambiguous = exc
        # Maybe stored, maybe not: read back and send only what is missing, never blindly re-POST.
        logger.warning(
            "ambiguous messages response; reading back",
            step="send",
            outcome="ambiguous",
            status=ambiguous.status,
            transaction_id=ambiguous.transaction_id,
        )
        try:
            # After a timeout ServiceNow may still be applying it: re-read until it shows up or has settled.
            missing = self._missing(state, chunk, outcome, deadline if ambiguous.timed_out else None)
        except (ServiceNowError, SettleIncompleteError) as read_error:
            # The read-back itself failed (throttled, unavailable, ambiguous) or could not wait the write out: the
            # chunk may be stored, so it stays pending for the redelivery to reconcile; never un-marked here.
            logger.warning(
                "read-back failed; segments stay pending",
                step="reconcile",
                outcome="uncertain",
                error_class=type(read_error).__name__,
                count=len(chunk),
            )
            raise _PartialDelivery([], {m.id for m in chunk}, ambiguous) from None
        missing_ids = {m.id for m in missing}
        found = [m for m in chunk if m.id not in missing_ids]
        outcome.reconciled += len(found)
        if not missing:
            return
        try:
            outcome.servicenow_requests += 1
            self.servicenow.post_messages(interaction_id, missing)
        except ServiceNowAmbiguousError as again:
            raise _PartialDelivery(found, {m.id for m in missing}, again) from None
        except BridgeError as definite:
            raise _PartialDelivery(found, set(), definite) from None

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
        instance = state.instance_id or plan.instance_id
        root = state.root_contact_id or plan.contact_id
        decision, others, furthest = call_may_close(
            self.directory, self.store, instance, plan.contact_id, root, outcome.lookup_fallbacks
        )
        if not decision.close:
            # Another leg is still live: this leg has ended (its item says so), the call has not. The last leg to end
            # closes it; if that never comes, the sweeper does, with the same rule (close_pending keeps it there).
            logger.info(
                "leg ended; the call goes on", step="close", outcome="waiting", waiting_for=list(decision.waiting_for)
            )
            outcome.close_waiting = True
            if not state.leg_ended:
                outcome.final_state = self.store.save(state.evolve(leg_ended=True), expected_version=state.version)
                outcome.state_writes += 1
            return
        url = self.directory.recording_url(instance, root)
        if others and not plan.reclose:  # a redelivered close only re-sends the idempotent PATCH
            legs = [c.contact_id for c in others if c.contact_id != root]
            if plan.contact_id != root:
                legs.append(plan.contact_id)
            end = max(state.max_offset_millis, furthest)
            state = self._note_other_recordings(state, instance, root, sorted(legs), end, outcome)
        outcome.servicenow_requests += 1
        self.servicenow.close_interaction(state.interaction_id or "", url)
        outcome.closed = True
        if others:
            self._confirm_other_legs(others)
        if state.close_pending:
            # Confirmed: out of the sweeper's index. A failure here leaves the flag; the sweeper's idempotent PATCH
            # then confirms it (late, never lost).
            state = self.store.save(state.evolve(close_pending=False, leg_ended=True), expected_version=state.version)
            outcome.state_writes += 1
            outcome.final_state = state
        logger.info(
            "interaction closed",
            step="close",
            outcome="reclosed" if plan.reclose else "closed",
            has_recording_url=url is not None,
        )
        if state.orphan_check:
            self._close_orphans(plan, state, url, outcome)

    def _note_other_recordings(
        self, state: ContactState, instance: str, root: str, legs: Sequence[str], end: int, outcome: ContactOutcome
    ) -> ContactState:
        """The close carries one recording URL (the root's); the later legs' go in one agent-only note, marked sent
        before its POST (a redelivered close never posts it twice)."""
        links = [(leg, self.directory.recording_url(instance, leg)) for leg in legs]
        lines = [f"{contact}: {url}" for contact, url in links if url]
        if not lines:
            return state
        note = OutgoingMessage(
            id=f"voicebridge-recordings-{root}",
            content="Recordings of the call's other legs: " + "; ".join(lines),
            participant="AGENT",
            begin_offset_millis=end,
            end_offset_millis=end,
            sentiment=None,
            internal=True,
            sequence_number=state.close_sequence_number or "0",
            attributes=(("noteType", "recordings"),),
        )
        if note.id in state.sent:
            return state
        state = self.store.save(state.evolve(sent=state.sent.with_ids([note.id])), expected_version=state.version)
        outcome.state_writes += 1
        outcome.servicenow_requests += 1
        self.servicenow.post_messages(state.interaction_id or "", [note])
        outcome.notes_sent += 1
        return state

    def _confirm_other_legs(self, others: Sequence[AssociatedContact]) -> None:
        """The other legs ended before this one and may be waiting (close_pending): the call is closed now, so
        take them out of the sweeper's index too. Best effort: a leftover is re-closed (idempotent) by a sweep."""
        try:
            states = self.store.load_many([c.contact_id for c in others])
            for leg in states.values():
                if leg.close_pending:
                    self.store.save(leg.evolve(close_pending=False), expected_version=leg.version)
        except BridgeError as exc:
            logger.warning("other legs not confirmed", step="close", outcome="skipped", error=str(exc))

    def _close_orphans(self, plan: ContactPlan, state: ContactState, url: str | None, outcome: ContactOutcome) -> None:
        """Close the contact's other open interactions (a create an earlier attempt made that landed unseen).
        Best effort: the contact's own close already happened; a failure here is logged, never retried."""
        try:
            outcome.servicenow_requests += 1
            orphans = [i for i in self.servicenow.find_open_interactions(plan.contact_id) if i != state.interaction_id]
            for orphan in orphans:
                outcome.servicenow_requests += 1
                self.servicenow.close_interaction(orphan, url)
                outcome.orphans_closed += 1
        except ServiceNowError as exc:
            logger.warning("orphan check failed", step="close", outcome="orphan_check_failed", error=str(exc))
            return
        if orphans:
            logger.warning("orphan interactions closed", step="close", outcome="orphans_closed", count=len(orphans))


def _has_confirmed_messages(state: ContactState) -> bool:
    """Whether ServiceNow provably holds a message of this contact: one marked sent and no longer pending (its POST
    was answered, or its record was checkpointed)."""
    return len(state.sent) > len({p.segment_id for p in state.pending})
