"""One Kinesis batch: parse, group by contact, load every contact's state in one read, run contacts concurrently,
park what cannot go through, and answer with the partial batch response.

Failure semantics (Kinesis + ``ReportBatchItemFailures``): Lambda checkpoints at the lowest reported sequence
number and redelivers everything after it. A contact that hit a retryable error reports its first record in this
batch; other contacts' redelivered records are then skipped as duplicates by their state.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Any

from bridge.errors import BridgeError, PermanentError, RetryableError, ServiceNowError
from bridge.events import parse_record
from bridge.log import logger
from bridge.models import ContactEvent, ContactState, RejectedRecord
from bridge.ports import ContactStorePort, ParkedItem, ParkingPort
from bridge.runner import ContactOutcome, ContactRunner, records_of


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
    ) -> None:
        self.store = store
        self.runner = runner
        self.parking = parking
        self.executor = executor
        self.clock = clock
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
        for observer in self.observers:
            observer(result)
        return result

    def _run_all(
        self, groups: dict[str, list[ContactEvent]], states: dict[str, ContactState], deadline: float, historical: bool
    ) -> list[ContactOutcome]:
        jobs = [(events, states.get(contact_id)) for contact_id, events in groups.items()]
        if self.executor is None or len(jobs) == 1:
            return [self._run_one(events, state, deadline, historical) for events, state in jobs]
        futures = [self.executor.submit(self._run_one, events, state, deadline, historical) for events, state in jobs]
        return [future.result() for future in futures]

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
        try:
            return self.runner.run(events, state, deadline, historical)
        except RetryableError as exc:
            logger.warning(
                "contact will be redelivered",
                step="contact",
                outcome="retry",
                error_class=type(exc).__name__,
                error=str(exc),
            )
            return self._failed(events, state, exc, retry=True)
        except PermanentError as exc:
            logger.error(
                "contact parked", step="contact", outcome="parked", error_class=type(exc).__name__, error=str(exc)
            )
            return self._failed(events, state, exc, retry=False)
        except Exception as exc:  # noqa: BLE001 - a bug must park the work (payload kept), not block the shard
            logger.exception(
                "unexpected error; contact parked", step="contact", outcome="parked", error_class=type(exc).__name__
            )
            return self._failed(events, state, exc, retry=False, reason_class="internal_error")
        finally:
            logger.thread_safe_clear_keys()

    def _failed(
        self,
        events: list[ContactEvent],
        state: ContactState | None,
        error: BaseException,
        retry: bool,
        reason_class: str | None = None,
    ) -> ContactOutcome:
        outcome = ContactOutcome(
            contact_id=events[0].contact_id,
            first_sequence_number=events[0].record.sequence_number,
            interaction_id=state.interaction_id if state else None,
            retry=retry,
            error_class=type(error).__name__,
        )
        if not retry:
            klass = reason_class or (error.reason_class if isinstance(error, BridgeError) else "internal_error")
            outcome.parked.append(
                ParkedItem(klass, str(error), records_of(events), events[0].contact_id, error_data(error))
            )
        return outcome

    def _park(self, items: list[ParkedItem], result: BatchResult) -> set[str]:
        """Park everything in one call; if the queue refuses, report those records for retry instead."""
        try:
            self.parking.park(items)
        except BridgeError as exc:  # unreachable or misconfigured queue: keep the records on the stream
            logger.error("parking failed; records will be redelivered", step="park", outcome="retry", error=str(exc))
            result.parking_failed.extend(items)
            return {str(item.records[0]["sequenceNumber"]) for item in items if item.records}
        result.parked.extend(items)
        return set()
