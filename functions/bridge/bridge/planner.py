"""Pure per-contact planning: given a contact's events from one batch and its stored state, decide what to do.

No I/O, no clock, no randomness: every rule of the flow is here and unit-tested on values.

Effectively-once rests on two facts (see README "Reliability"):
1. A segment id is added to ``sent`` *before* its POST, with a ``pending`` entry naming the Kinesis record that
   carried it. If the invocation dies, Kinesis redelivers that record; a redelivered segment that is still pending
   is *unconfirmed* and is reconciled against ServiceNow (Table API read-back) before anything is re-sent.
2. Kinesis checkpoints only past records whose invocation reported success. So a pending entry whose record is
   older than every record of this contact in the current batch was confirmed and can be forgotten.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, replace

from bridge.models import (
    ContactEvent,
    ContactState,
    ContactStatus,
    EventType,
    OutgoingMessage,
    PendingEntry,
    TranscriptSegment,
)
from bridge.redaction import RedactionMode, Redactor, redactor_for


@dataclass(frozen=True)
class PlanOptions:
    forward_notes: bool = True
    redaction: RedactionMode = RedactionMode.NONE  # what to mask in content and notes before it is sent


@dataclass(frozen=True)
class LegPlan:
    """A transfer leg's place on its call's timeline (bridge.legs): what its offsets move by, how its notes name it,
    and the notes that open it (the transfer note), sent once like any message."""

    shift_ms: int = 0
    label: str = ""
    opening_notes: tuple[OutgoingMessage, ...] = ()


def _on_timeline(message: OutgoingMessage, leg: LegPlan | None) -> OutgoingMessage:
    if leg is None or not leg.shift_ms:
        return message
    return replace(
        message,
        begin_offset_millis=message.begin_offset_millis + leg.shift_ms,
        end_offset_millis=message.end_offset_millis + leg.shift_ms,
    )


@dataclass(frozen=True)
class ContactPlan:
    """What one contact needs in this batch. The runner executes it in order: open, reconcile, send, close."""

    contact_id: str
    instance_id: str
    first_sequence_number: str
    open: bool  # no interaction is known yet (STARTED, or a late join)
    messages: tuple[OutgoingMessage, ...]  # new: never handed to ServiceNow before
    unconfirmed: tuple[OutgoingMessage, ...]  # redelivered while pending: read back before re-sending
    keep_pending: tuple[PendingEntry, ...]  # pending entries neither confirmed nor redelivered in this batch
    close: bool  # COMPLETED/FAILED seen for an open contact: close after the messages
    reclose: bool  # the record that closed the contact was redelivered: re-send the idempotent PATCH
    close_sequence_number: str | None
    after_close: tuple[ContactEvent, ...]  # new content for a contact closed in an earlier batch: park it
    duplicates: int  # segments (or lifecycle events) already handled
    utterances: int  # partials, never sent
    max_offset_millis: int
    last_arrival: int = 0  # the newest record's arrival (epoch s): the contact's position on the stream
    shard_id: str = ""
    redacted: int = 0  # new messages (transcript turns and notes) that had anything masked

    @property
    def writes_state(self) -> bool:
        """Whether the contact item changes in this batch (steady state: exactly one write when it does)."""
        return bool(self.open or self.messages or self.unconfirmed or self.close)


def transcript_message(
    segment: TranscriptSegment, sequence_number: str, redactor: Redactor | None = None
) -> OutgoingMessage:
    """design.md mapping: id = Transcript.Id, participant from role/id, sentiment and offsets as given.

    With a redactor the content is masked and the IssuesDetected character offsets move with it (an offset inside
    a masked value snaps to its placeholder's edge, so an issue never cuts a placeholder)."""
    return _transcript_message(segment, sequence_number, redactor)[0]


def _transcript_message(
    segment: TranscriptSegment, sequence_number: str, redactor: Redactor | None
) -> tuple[OutgoingMessage, bool]:
    content, issues = segment.content, segment.issues
    redacted = False
    if redactor is not None:
        result = redactor.redact(content)
        if result.redacted:
            content, redacted = result.text, True
            issues = tuple(result.map_range(begin, end) for begin, end in issues)
    attributes: list[tuple[str, str]] = []
    if segment.role and segment.role != segment.participant:
        attributes.append(("participantRole", segment.role))
    if issues:
        attributes.append(("issuesDetected", ",".join(f"{begin}-{end}" for begin, end in issues)))
    message = OutgoingMessage(
        id=segment.id,
        content=content,
        participant=segment.participant,
        begin_offset_millis=segment.begin_offset_millis,
        end_offset_millis=segment.end_offset_millis,
        sentiment=segment.sentiment,
        internal=False,
        sequence_number=sequence_number,
        attributes=tuple(attributes),
    )
    return message, redacted


def _note_id(contact_id: str, kind: str, text: str) -> str:
    # Deterministic, so a redelivered note dedupes like a transcript does.
    digest = hashlib.blake2b(f"{contact_id}\x00{kind}\x00{text}".encode(), digest_size=10).hexdigest()
    return f"voicebridge-{kind}-{digest}"


def note_messages(event: ContactEvent, last_offset: int, redactor: Redactor | None = None) -> list[OutgoingMessage]:
    """Categories and the post-contact summary as agent-only notes (``isInternalMessage: true``).

    Categories sit at their first point of interest; the summary at the end of the call so far (ServiceNow orders
    by offsets, and a summary belongs after the last turn). With a redactor the text is masked *before* the note id
    is derived from it: the id is sent too, and a digest of a card number is not much better than the number.
    """
    return [message for message, _ in _note_messages(event, last_offset, redactor)]


def _masked(text: str, redactor: Redactor | None) -> tuple[str, bool]:
    if redactor is None:
        return text, False
    result = redactor.redact(text)
    return result.text, result.redacted


def _note_messages(
    event: ContactEvent, last_offset: int, redactor: Redactor | None, label: str = "", shift: int = 0
) -> list[tuple[OutgoingMessage, bool]]:
    """``last_offset`` is on the call's timeline already; category points are the leg's own: moved by ``shift``."""
    notes: list[tuple[OutgoingMessage, bool]] = []
    seq = event.record.sequence_number
    for categories in event.categories:
        if not categories.matched:
            continue
        text, redacted = _masked(label + "Contact Lens categories matched: " + ", ".join(categories.matched), redactor)
        begin, end = (
            (min(p[1] for p in categories.points) + shift, min(p[2] for p in categories.points) + shift)
            if (categories.points)
            else (last_offset, last_offset)
        )
        note = OutgoingMessage(
            id=_note_id(event.contact_id, "categories", text + repr(categories.points)),
            content=text,
            participant="AGENT",
            begin_offset_millis=begin,
            end_offset_millis=max(begin, end),
            sentiment=None,
            internal=True,
            sequence_number=seq,
            attributes=(("noteType", "categories"),),
        )
        notes.append((note, redacted))
    for summary in event.summaries:
        if summary.status == "FAILED" or not summary.content.strip():
            text = f"{label}Contact Lens post-contact summary failed ({summary.failure_code or 'no reason given'})"
        else:
            text = label + "Post-contact summary: " + summary.content
        text, redacted = _masked(text, redactor)
        note = OutgoingMessage(
            id=_note_id(event.contact_id, "summary", text),
            content=text,
            participant="AGENT",
            begin_offset_millis=last_offset,
            end_offset_millis=last_offset,
            sentiment=None,
            internal=True,
            sequence_number=seq,
            attributes=(("noteType", "postContactSummary"),),
        )
        notes.append((note, redacted))
    return notes


def plan_contact(
    events: Sequence[ContactEvent],
    state: ContactState | None,
    options: PlanOptions = PlanOptions(),
    leg: LegPlan | None = None,
) -> ContactPlan:
    """Plan one contact's batch. ``events`` are in stream order and all share one ContactId. ``leg``: a transfer
    leg's shift and label (None, or a zero shift: offsets as given)."""
    if not events:
        raise ValueError("plan_contact needs at least one event")
    contact_id = events[0].contact_id
    if state is not None and state.status is ContactStatus.IGNORED:
        return _ignored(events, state)
    batch_sequences = {event.record.sequence for event in events}
    oldest_in_batch = min(batch_sequences)

    pending_by_id: dict[str, PendingEntry] = {}
    keep: list[PendingEntry] = []
    for entry in state.pending if state else ():
        if entry.sequence < oldest_in_batch:
            continue  # the checkpoint moved past its record: its POST was confirmed
        if entry.sequence in batch_sequences:
            pending_by_id[entry.segment_id] = entry
        else:
            keep.append(entry)  # its record is in another part of a bisected batch

    closed = state is not None and state.status is ContactStatus.CLOSED
    last_offset = state.max_offset_millis if state else 0
    messages: list[OutgoingMessage] = []
    unconfirmed: list[OutgoingMessage] = []
    after_close: list[ContactEvent] = []
    seen: set[str] = set()
    duplicates = utterances = 0
    close = reclose = False
    close_sequence: str | None = state.close_sequence_number if state else None
    redactor = None if options.redaction is RedactionMode.NONE else redactor_for(options.redaction)
    redacted = 0

    label = f"{leg.label[:1].upper()}{leg.label[1:]}: " if leg is not None and leg.label else ""
    for note in leg.opening_notes if leg is not None else ():
        if note.id not in seen and (state is None or note.id not in state.sent):
            seen.add(note.id)
            messages.append(note)
    for event in events:
        utterances += event.utterances
        candidates = [
            (_on_timeline(message, leg), masked)
            for message, masked in (
                _transcript_message(t, event.record.sequence_number, redactor) for t in event.transcripts
            )
        ]
        for candidate, _ in candidates:
            last_offset = max(last_offset, candidate.end_offset_millis)
        if options.forward_notes:
            shift = leg.shift_ms if leg is not None else 0
            candidates.extend(_note_messages(event, last_offset, redactor, label, shift))
        new_after_close = False
        for message, masked in candidates:
            if message.id in seen:
                duplicates += 1
                continue
            seen.add(message.id)
            if state is not None and message.id in state.sent:
                if message.id in pending_by_id:
                    unconfirmed.append(message)
                else:
                    duplicates += 1
            elif closed:
                new_after_close = True
            else:
                messages.append(message)
                redacted += masked  # counted once, when first planned (a redelivery is a duplicate or unconfirmed)
        if new_after_close:
            after_close.append(event)
        if event.event_type.ends_contact:
            if closed:
                if event.record.sequence_number == close_sequence:
                    reclose = True  # the closing record itself came back: its PATCH may not have happened
                else:
                    duplicates += 1
            elif not close:
                close = True
                close_sequence = event.record.sequence_number
            else:
                duplicates += 1  # a second COMPLETED/FAILED in one batch
        elif event.event_type is EventType.STARTED and state is not None:
            duplicates += 1

    needs_open = state is None or state.interaction_id is None or state.conversation_id is None
    return ContactPlan(
        contact_id=contact_id,
        instance_id=events[0].instance_id or (state.instance_id if state else ""),
        first_sequence_number=events[0].record.sequence_number,
        open=needs_open and not closed,
        messages=tuple(messages),
        unconfirmed=tuple(unconfirmed),
        keep_pending=tuple(keep),
        close=close,
        reclose=reclose,
        close_sequence_number=close_sequence,
        after_close=tuple(after_close),
        duplicates=duplicates,
        utterances=utterances,
        max_offset_millis=last_offset,
        last_arrival=int(max(event.record.arrival_timestamp for event in events)),
        shard_id=next((e.record.shard_id for e in reversed(events) if e.record.shard_id), ""),
        redacted=redacted,
    )


def _ignored(events: Sequence[ContactEvent], state: ContactState) -> ContactPlan:
    """A MONITOR contact: nothing of it is sent, opened or closed (every segment counts as skipped)."""
    return ContactPlan(
        contact_id=state.contact_id,
        instance_id=state.instance_id,
        first_sequence_number=events[0].record.sequence_number,
        open=False,
        messages=(),
        unconfirmed=(),
        keep_pending=(),
        close=False,
        reclose=False,
        close_sequence_number=state.close_sequence_number,
        after_close=(),
        duplicates=sum(len(e.transcripts) + len(e.categories) + len(e.summaries) for e in events),
        utterances=sum(e.utterances for e in events),
        max_offset_millis=state.max_offset_millis,
    )
