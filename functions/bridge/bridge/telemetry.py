"""Metrics from a batch's outcome values (Powertools Metrics, EMF). No contact id is ever a dimension."""

from __future__ import annotations

from collections import Counter
from typing import Any

from bridge.processor import BatchResult


def batch_counts(result: BatchResult) -> dict[str, float]:
    """Every count the batch produced, by metric name (also used by replay's summary and the tests)."""
    outcomes = result.outcomes
    counts: dict[str, float] = {
        "RecordsReceived": result.records,
        "SegmentsReceived": result.transcripts_received,
        "SegmentsSent": sum(o.sent for o in outcomes),
        "NotesSent": sum(o.notes_sent for o in outcomes),
        "DuplicatesSkipped": sum(o.duplicates for o in outcomes),
        "UtterancesIgnored": sum(o.utterances for o in outcomes),
        "InteractionsOpened": sum(o.opened for o in outcomes),
        "InteractionsRecovered": sum(o.recovered_interaction for o in outcomes),
        "InteractionsClosed": sum(o.closed for o in outcomes),
        "SegmentsReconciled": sum(o.reconciled for o in outcomes),
        "SegmentsResent": sum(o.resent for o in outcomes),
        "PossibleDuplicates": sum(o.possible_duplicates for o in outcomes),
        "ContactsRetried": sum(o.retry for o in outcomes),
        "RecordsParked": sum(len(item.records) for item in result.parked),
        "ParkingFailed": sum(len(item.records) for item in result.parking_failed),
        "MalformedSegments": result.invalid_segments,
        "ServiceNowRequests": sum(o.servicenow_requests for o in outcomes),
        # Contacts whose ServiceNow step failed in this batch after the client's own retries (the alarm's
        # numerator; the classes are in ContactErrors by error_class).
        "ServiceNowErrors": sum(1 for o in outcomes if (o.error_class or "").startswith("ServiceNow")),
        "StateWrites": sum(o.state_writes for o in outcomes),
        "LookupFallbacks": sum(len(o.lookup_fallbacks) for o in outcomes),
        # Issue 9: what a real instance's behaviour cost (README "Reliability").
        "PossibleOrphanInteractions": sum(o.possible_orphans for o in outcomes),
        "OrphanInteractionsClosed": sum(o.orphans_closed for o in outcomes),
        "RecordsParkedBefore": result.parked_before,
        "PendingConfirmed": result.confirmed_writes,
        "ShardHeldSeconds": round(result.held_seconds, 1),
        # Transcript turns and notes that had a card number, SSN, e-mail or phone masked (RedactContent); what was
        # masked is never logged.
        "SegmentsRedacted": sum(o.redacted for o in outcomes),
    }
    if result.lag_ms:
        ordered = sorted(result.lag_ms)
        counts["SegmentLagMaxMs"] = ordered[-1]
        counts["SegmentLagP50Ms"] = ordered[len(ordered) // 2]
    return counts


def parked_by_reason(result: BatchResult) -> Counter[str]:
    reasons: Counter[str] = Counter()
    for item in result.parked:
        reasons[item.reason_class] += len(item.records)
    return reasons


def errors_by_class(result: BatchResult) -> Counter[str]:
    return Counter(o.error_class for o in result.outcomes if o.error_class)


def publish(metrics: Any, result: BatchResult, duration_ms: float) -> None:
    """Add the batch's metrics to a Powertools ``Metrics`` (flushed by its ``log_metrics`` decorator)."""
    from aws_lambda_powertools.metrics import MetricUnit, single_metric
    from aws_lambda_powertools.metrics.functions import is_metrics_disabled

    # Disabled (replay, tests, the soak): add nothing. log_metrics then never flushes, values pile up across
    # invocations, and Powertools auto-flushes (prints) them at 100 per metric regardless of the switch; single_metric
    # prints regardless too.
    if is_metrics_disabled():
        return
    for name, value in batch_counts(result).items():
        unit = (
            MetricUnit.Milliseconds
            if name.endswith("Ms")
            else MetricUnit.Seconds
            if name.endswith("Seconds")
            else MetricUnit.Count
        )
        metrics.add_metric(name=name, unit=unit, value=value)
    metrics.add_metric(name="BatchDurationMs", unit=MetricUnit.Milliseconds, value=round(duration_ms, 1))
    namespace = metrics.namespace
    for reason, count in parked_by_reason(result).items():
        with single_metric(
            name="RecordsParkedByReason", unit=MetricUnit.Count, value=count, namespace=namespace
        ) as metric:
            metric.add_dimension(name="reason", value=reason)
    for error_class, count in errors_by_class(result).items():
        with single_metric(name="ContactErrors", unit=MetricUnit.Count, value=count, namespace=namespace) as metric:
            metric.add_dimension(name="error_class", value=error_class)
