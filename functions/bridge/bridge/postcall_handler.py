"""Lambda entry point of ``PostCallFunction``: S3 Object Created (EventBridge, or a classic S3 notification) for
Contact Lens post-call analysis files -> ``bridge.postcall.importer``. Thin: parse, import, count, log.

A retryable failure raises, so Lambda's asynchronous retries (then the on-failure destination) keep the event; a
bad file or a ServiceNow rejection is parked by the importer; an unrecognised event is parked whole.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from aws_lambda_powertools import Metrics
from aws_lambda_powertools.utilities.typing import LambdaContext

from bridge.log import logger
from bridge.postcall import wiring
from bridge.postcall.importer import ImportOutcome, ImportStatus, import_all
from bridge.postcall.s3events import UnrecognisedEventError, object_refs

metrics = Metrics()
METRIC_NAMES = {
    ImportStatus.IMPORTED: "PostCallImported",
    ImportStatus.ALREADY_IMPORTED: "PostCallAlreadyImported",
    ImportStatus.SKIPPED: "PostCallSkipped",
    ImportStatus.PARKED: "PostCallParked",
    ImportStatus.FAILED: "PostCallFailed",
}


def _publish(outcomes: list[ImportOutcome]) -> None:
    from aws_lambda_powertools.metrics.functions import is_metrics_disabled

    if is_metrics_disabled():
        return
    counts = Counter(outcome.status for outcome in outcomes)
    for status, name in METRIC_NAMES.items():
        metrics.add_metric(name=name, unit="Count", value=counts.get(status, 0))


@metrics.log_metrics
@logger.inject_lambda_context(clear_state=True)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    runtime = wiring.get_runtime()
    if not runtime.postcall.transcript_source.imports_files:
        logger.info("post-call import is off (TRANSCRIPT_SOURCE=realtime)", step="import", outcome="ignored")
        return {"imported": 0, "ignored": True}
    try:
        refs = object_refs(event)
    except UnrecognisedEventError as exc:
        from bridge.ports import ParkedItem

        logger.error("unrecognised event parked", step="import", outcome="parked", error=str(exc))
        runtime.parking.park([ParkedItem("postcall_unrecognised_event", str(exc), (event,))])
        return {"imported": 0, "parked": 1}
    runtime.start_invocation(context.get_remaining_time_in_millis())
    outcomes: list[ImportOutcome] = []
    try:
        outcomes = import_all(runtime.importer, [(ref.bucket, ref.key) for ref in refs])
    except Exception:
        _publish([ImportOutcome("", "", ImportStatus.FAILED)])
        raise
    _publish(outcomes)
    for outcome in outcomes:
        logger.info(
            "post-call file",
            step="import",
            outcome=outcome.status.value,
            contact_id=outcome.contact_id,
            key=outcome.key,
            reason=outcome.reason or None,
        )
    counts = Counter(outcome.status.value for outcome in outcomes)
    return {"files": len(outcomes), **counts}
