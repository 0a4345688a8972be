"""One Kinesis batch: parse, group by contact, load every contact's state in one read, run contacts concurrently,
park what cannot go through, and answer with the partial batch response.

Failure semantics (Kinesis + ``ReportBatchItemFailures``): Lambda checkpoints at the lowest reported sequence
number and redelivers everything after it. A contact that hit a retryable error reports its first record in this
batch; other contacts' redelivered records are then skipped as duplicates by their state (their pending entries
past the lowest failure are cleared first, see ``_confirm``, so nothing of theirs is read back or re-sent).

When ServiceNow is unavailable for every contact of the batch (an outage, or a quota with a long ``Retry-After``),
the processor *holds the shard*: it waits (up to ``outage_hold_seconds`` and what the invocation has left) before
answering, so each of Lambda's bounded retries spends real time instead of being burnt in seconds.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Any

from bridge.errors import (
    BridgeError,
    PermanentError,
    RetryableError,
    ServiceNowError,
    ServiceNowUnavailableError,
)
from bridge.events import parse_record, raw_record
from bridge.log import logger
from bridge.models import ContactEvent, ContactState, RejectedRecord, ShardPosition
from bridge.ports import ContactStorePort, ParkedItem, ParkingPort
from bridge.runner import ContactOutcome, ContactRunner, records_of

# How often a container records a shard's read position (a PutItem): the sweeper's idle limit is an hour or more.
POSITION_INTERVAL_S = 30.0
# The first hold of an outage; each further batch in a row that gets nothing through doubles it.
OUTAGE_BACKOFF_S = 2.0


@dataclass
class BatchResult:
    """Everything a batch did, as values: the handler turns it into metrics and the response."""

    outcomes: list[ContactOutcome] = field(default_factory=list)
    rejected: list[RejectedRecord] = field(default_factory=list)
    parked: list[ParkedItem] = field(default_factory=list)
    parking_failed: list[ParkedItem] = field(default_factory=list)
    failed_sequence_numbers: list[str] = field(default_factory=list)
    records: int = 0
    transcripts_received: int = 0
    invalid_segments: int = 0
    lag_ms: list[float] = field(default_factory=list)
    parked_before: int = 0  # records whose park was skipped: the same record was parked by an earlier delivery
    confirmed_writes: int = 0  # pending entries cleared for contacts redelivered only because of another contact
    held_seconds: float = 0.0  # the shard was held this long because ServiceNow was unavailable (outage hold)

    def response(self) -> dict[str, list[dict[str, str]]]:
        return {"batchItemFailures": [{"itemIdentifier": seq} for seq in self.failed_sequence_numbers]}


def group_by_contact(events: Iterable[ContactEvent]) -> dict[str, list[ContactEvent]]:
    """Events per ContactId (the payload's, never the partition key), in stream order within each contact."""
    groups: dict[str, list[ContactEvent]] = {}
    for event in events:
        groups.setdefault(event.contact_id, []).append(event)
    for contact_events in groups.values():
        contact_events.sort(key=lambda event: event.record.sequence)
    return groups


def error_data(error: BaseException) -> dict[str, Any]:
    if isinstance(error, ServiceNowError):
        return error.as_dict()
    return {"error_class": type(error).__name__, "message": str(error)}


class BatchProcessor:
    def __init__(
        self,
        store: ContactStorePort,
        runner: ContactRunner,
        parking: ParkingPort,
        executor: Executor | None = None,
        clock: Callable[[], float] = time.time,
        outage_hold_seconds: float = 0.0,
        parked_marker_days: int = 14,
        monotonic: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.store = store
        self.runner = runner
        self.parking = parking
        self.executor = executor
        self.clock = clock
        self.outage_hold_seconds = outage_hold_seconds
        self.parked_marker_days = parked_marker_days
        self.monotonic = monotonic
        self.sleep = sleep
        # Skip parking a record already parked for the same reason (live redeliveries); redrive turns it off.
        self.park_once = True
        self._position_written: dict[str, float] = {}  # shard -> when this container last recorded its position
        self._outage_streak = 0  # batches in a row where ServiceNow answered nothing (the hold's backoff)
        # Called with every BatchResult (replay's per-contact summary, benchmarks' counters).
        self.observers: list[Callable[[BatchResult], None]] = []

    def process(self, lambda_records: Sequence[Any], deadline: float, historical: bool = False) -> BatchResult:
        result = BatchResult(records=len(lambda_records))
        events: list[ContactEvent] = []
        to_park: list[ParkedItem] = []
        for lambda_record in lambda_records:
            parsed = parse_record(lambda_record)
            if isinstance(parsed, RejectedRecord):
                result.rejected.append(parsed)
                to_park.append(
                    ParkedItem(parsed.reason_class, parsed.reason, (parsed.record.to_parked(),), parsed.contact_id)
                )
                logger.warning(
                    "record rejected",
                    step="parse",
                    outcome="parked",
                    reason_class=parsed.reason_class,
                    reason=parsed.reason,
                    contact_id=parsed.contact_id,
                    sequence_number=parsed.record.sequence_number,
                )
                continue
            events.append(parsed)
            result.transcripts_received += len(parsed.transcripts)
            if parsed.invalid_segments:
                # The valid segments of the record still go through; the record is parked for the bad ones.
                result.invalid_segments += len(parsed.invalid_segments)
                to_park.append(
                    ParkedItem(
                        "malformed_segment",
                        "; ".join(parsed.invalid_segments),
                        (parsed.record.to_parked(),),
                        parsed.contact_id,
                    )
                )
                logger.warning(
                    "malformed segments parked",
                    step="parse",
                    outcome="parked",
                    contact_id=parsed.contact_id,
                    sequence_number=parsed.record.sequence_number,
                    reasons=list(parsed.invalid_segments),
                )

        groups = group_by_contact(events)
        failed: set[str] = set()
        if groups:
            try:
                states = self.store.load_many(list(groups))
            except RetryableError as exc:
                logger.error("contact states unavailable", step="load", outcome="retry", error=str(exc))
                failed.update(group[0].record.sequence_number for group in groups.values())
                states = None
            except PermanentError as exc:
                # A wrong table name or a role without access: retrying cannot help, keep the records parked.
                logger.error("contact states unreadable", step="load", outcome="parked", error=str(exc))
                for group in groups.values():
                    to_park.append(
                        ParkedItem(exc.reason_class, str(exc), records_of(group), group[0].contact_id, error_data(exc))
                    )
                states = None
            if states is not None:
                result.outcomes = self._run_all(groups, states, deadline, historical)
                now = self.clock()
                for outcome in result.outcomes:
                    to_park.extend(outcome.parked)
                    if outcome.retry:
                        failed.add(outcome.first_sequence_number)
                for group in groups.values():
                    for event in group:
                        if event.record.arrival_timestamp and event.transcripts:
                            result.lag_ms.append(max(0.0, (now - event.record.arrival_timestamp) * 1000))

        if to_park:
            failed.update(self._park(to_park, result))
        result.failed_sequence_numbers = sorted(failed, key=lambda seq: int(seq) if seq.isdigit() else -1)
        self._record_positions(lambda_records, result)
        if result.failed_sequence_numbers:
            self._confirm(result)
            self._hold_if_outage(result, deadline)
        elif any(o.servicenow_requests for o in result.outcomes):
            self._outage_streak = 0  # ServiceNow answered: the next outage starts its backoff afresh
        for observer in self.observers:
            observer(result)
        return result

    def _record_positions(self, lambda_records: Sequence[Any], result: BatchResult) -> None:
        """How far each shard has been read (the sweeper's clock): the newest arrival among the records this
        batch is done with, or, when it reports a failure, the arrival of the record Lambda will redeliver from
        (the bridge is stuck there: a stalled bridge's lag keeps growing in what it records). At most one write per
        shard per ``POSITION_INTERVAL_S`` per container; a failure to write only makes the sweeper more patient."""
        lowest = min((int(s) for s in result.failed_sequence_numbers if s.isdigit()), default=None)
        newest: dict[str, float] = {}
        stuck: dict[str, float] = {}
        for lambda_record in lambda_records:
            record = raw_record(lambda_record)
            if not record.shard_id:
                continue
            if lowest is not None and record.sequence >= lowest:
                if record.sequence == lowest:
                    stuck[record.shard_id] = record.arrival_timestamp
                continue
            newest[record.shard_id] = max(newest.get(record.shard_id, 0.0), record.arrival_timestamp)
        newest.update(stuck)
        now = self.clock()
        for shard, arrival in newest.items():
            if arrival <= 0 or now - self._position_written.get(shard, 0.0) < POSITION_INTERVAL_S:
                continue
            try:
                self.store.record_position(shard, ShardPosition(int(arrival), int(now)))
            except BridgeError as exc:
                logger.warning("stream position not recorded", step="batch", outcome="skipped", error=str(exc))
                continue
            self._position_written[shard] = now

    def _confirm(self, result: BatchResult) -> None:
        """Lambda will redeliver everything from the lowest failure on, including records of contacts that went
        through. Their segments are still *pending* in the contact item (written before the POST), so the
        redelivery would read them back (or, with reads forbidden, re-send them as duplicates): clear the entries
        ServiceNow confirmed, one write per such contact, only in batches that report a failure."""
        lowest = (
            min(int(seq) for seq in result.failed_sequence_numbers if seq.isdigit())
            if any(seq.isdigit() for seq in result.failed_sequence_numbers)
            else None
        )
        if lowest is None:
            return
        for outcome in result.outcomes:
            state = outcome.final_state
            if outcome.retry or outcome.parked or state is None or not outcome.confirmed_ids:
                continue
            if not any(p.sequence >= lowest and p.segment_id in outcome.confirmed_ids for p in state.pending):
                continue
            confirmed = state.evolve(
                pending=tuple(p for p in state.pending if p.segment_id not in outcome.confirmed_ids)
            )
            try:
                self.store.save(confirmed, expected_version=state.version)
            except BridgeError as exc:  # the redelivery then reads them back: slower, never wrong
                logger.warning(
                    "could not confirm pending segments",
                    step="confirm",
                    outcome="skipped",
                    contact_id=outcome.contact_id,
                    error=str(exc),
                )
                continue
            outcome.state_writes += 1
            result.confirmed_writes += 1

    def _hold_if_outage(self, result: BatchResult, deadline: float) -> None:
        """Hold the shard while ServiceNow is unavailable for every contact that asked it anything (no request of
        the batch got through): for its Retry-After when it gave one longer than the client could wait; else for a
        backoff that doubles with each such batch in a row (2, 4, 8 ... s, up to the rest of the invocation), so a
        blip costs seconds and an outage spends each of Lambda's bounded retries in full."""
        if self.outage_hold_seconds <= 0:
            return
        asked = [o for o in result.outcomes if o.servicenow_requests or o.retry]
        if not asked or not all(o.retry and o.error_class == ServiceNowUnavailableError.__name__ for o in asked):
            self._outage_streak = 0
            return
        hints = [o.retry_after for o in asked if o.retry_after is not None]
        if hints:
            hold = min(self.outage_hold_seconds, max(hints))
        else:
            hold = min(self.outage_hold_seconds, OUTAGE_BACKOFF_S * 2**self._outage_streak)
            self._outage_streak += 1
        hold = min(hold, deadline - self.monotonic())
        if hold <= 0:
            return
        logger.warning(
            "ServiceNow unavailable for every contact; holding the shard",
            step="batch",
            outcome="held",
            hold_s=round(hold, 1),
            retry_after_s=round(max(hints), 1) if hints else None,
        )
        self.sleep(hold)
        result.held_seconds = hold

    def _run_all(
        self, groups: dict[str, list[ContactEvent]], states: dict[str, ContactState], deadline: float, historical: bool
    ) -> list[ContactOutcome]:
        jobs = [(events, states.get(contact_id)) for contact_id, events in groups.items()]
        if self.executor is None or len(jobs) == 1:
            return [self._run_one(events, state, deadline, historical) for events, state in jobs]
        # Longest chains of requests first (an open is two requests before the messages, a close one after): started
        # last, they would be the batch's tail while ServiceNow's semaphores idle. Outcomes keep the stream's order.
        order = sorted(range(len(jobs)), key=lambda index: -_chain_length(*jobs[index]))
        futures = {i: self.executor.submit(self._run_one, *jobs[i], deadline, historical) for i in order}
        return [futures[i].result() for i in range(len(jobs))]

    def _run_one(
        self, events: list[ContactEvent], state: ContactState | None, deadline: float, historical: bool
    ) -> ContactOutcome:
        first = events[0]
        arrived = first.record.arrival_timestamp
        logger.thread_safe_append_keys(
            contact_id=first.contact_id,
            sequence_number=first.record.sequence_number,
            interaction_id=state.interaction_id if state else None,
            # How long the contact's first record of this batch waited on the stream (trace's "lag" column).
            lag_ms=round(max(0.0, self.clock() - arrived) * 1000) if arrived else None,
        )
        counted = ContactOutcome(
            contact_id=first.contact_id,
            first_sequence_number=first.record.sequence_number,
            interaction_id=state.interaction_id if state else None,
        )
        try:
            return self.runner.run(events, state, deadline, historical, outcome=counted)
        except RetryableError as exc:
            logger.warning(
                "contact will be redelivered",
                step="contact",
                outcome="retry",
                error_class=type(exc).__name__,
                error=str(exc),
            )
            failed = self._failed(events, state, exc, retry=True, outcome=counted)
            if isinstance(exc, ServiceNowUnavailableError):
                failed.retry_after = exc.retry_after
            return failed
        except PermanentError as exc:
            logger.error(
                "contact parked", step="contact", outcome="parked", error_class=type(exc).__name__, error=str(exc)
            )
            return self._failed(events, state, exc, retry=False, outcome=counted)
        except Exception as exc:  # noqa: BLE001 - a bug must park the work (payload kept), not block the shard
            logger.exception(
                "unexpected error; contact parked", step="contact", outcome="parked", error_class=type(exc).__name__
            )
            return self._failed(events, state, exc, retry=False, reason_class="internal_error", outcome=counted)
        finally:
            logger.thread_safe_clear_keys()

    def _failed(
        self,
        events: list[ContactEvent],
        state: ContactState | None,
        error: BaseException,
        retry: bool,
        reason_class: str | None = None,
        outcome: ContactOutcome | None = None,
    ) -> ContactOutcome:
        """The contact's outcome after ``error``: what it counted before failing is kept (a possible duplicate is
        a possible duplicate even if the batch then failed); nothing of it is confirmed."""
        if outcome is None:
            outcome = ContactOutcome(
                contact_id=events[0].contact_id,
                first_sequence_number=events[0].record.sequence_number,
                interaction_id=state.interaction_id if state else None,
            )
        outcome.retry = retry
        outcome.error_class = type(error).__name__
        outcome.error = {**error_data(error), "reason_class": _reason_class(error)}
        outcome.final_state = None
        outcome.confirmed_ids = frozenset()
        outcome.closed = False
        if not retry:
            klass = reason_class or (error.reason_class if isinstance(error, BridgeError) else "internal_error")
            outcome.parked.append(
                ParkedItem(klass, str(error), records_of(events), events[0].contact_id, error_data(error))
            )
        return outcome

    def _park(self, items: list[ParkedItem], result: BatchResult) -> set[str]:
        """Park everything in one call; if the queue refuses, report those records for retry instead.

        A record is parked once per reason: the same position is redelivered whenever another contact of its batch
        fails, and each redelivery would park it again. Markers in the contact table (``parked#...`` items, read
        only when something is to be parked) remember what went to the queue."""
        keys = {id(item): parked_keys(item) for item in items}
        already: set[str] = set()
        try:
            if self.park_once:
                already = self.store.parked_before(sorted({k for ks in keys.values() for k in ks}))
        except BridgeError as exc:  # cannot tell: park again (a duplicate in the queue, redrive is idempotent)
            logger.warning("parked markers unreadable", step="park", outcome="unchecked", error=str(exc))
        fresh = [item for item in items if not keys[id(item)] or not keys[id(item)] <= already]
        result.parked_before += sum(len(item.records) for item in items if item not in fresh)
        if not fresh:
            return set()
        try:
            self.parking.park(fresh)
        except BridgeError as exc:  # unreachable or misconfigured queue: keep the records on the stream
            logger.error("parking failed; records will be redelivered", step="park", outcome="retry", error=str(exc))
            result.parking_failed.extend(fresh)
            return {str(item.records[0]["sequenceNumber"]) for item in fresh if item.records}
        result.parked.extend(fresh)
        try:
            expires = int(self.clock()) + self.parked_marker_days * 86400
            self.store.remember_parked(sorted({k for item in fresh for k in keys[id(item)]}), expires)
        except BridgeError as exc:  # a later redelivery parks it again: a duplicate in the queue, never a loss
            logger.warning("parked markers not written", step="park", outcome="unmarked", error=str(exc))
        return set()


def _reason_class(error: BaseException) -> str:
    return error.reason_class if isinstance(error, BridgeError) else "internal_error"


def parked_keys(item: ParkedItem) -> frozenset[str]:
    """One key per record and reason: a record parked for its malformed segment and again with its contact's
    records (a 400) are two different things to redrive. Sequence numbers are unique per shard; the partition key
    is part of the key too, so records of two streams (or hand-made fixtures) never collide."""
    return frozenset(
        f"{item.reason_class}:{record.get('partitionKey')}:{record.get('sequenceNumber')}" for record in item.records
    )


def _chain_length(events: list[ContactEvent], state: ContactState | None) -> int:
    """Requests the contact makes one after another in this batch, roughly: open (2), messages (1), close (1)."""
    opening = 2 if state is None or state.interaction_id is None else 0
    return opening + 1 + (1 if any(e.event_type.ends_contact for e in events) else 0)
