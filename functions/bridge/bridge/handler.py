"""Lambda entry point: Powertools wiring around one call into the bridge. Reads no environment variable and
touches no client itself; everything heavy is built lazily by ``bridge.factory``."""

from __future__ import annotations

import time
from typing import Any

from aws_lambda_powertools import Metrics
from aws_lambda_powertools.utilities.typing import LambdaContext

from bridge import factory, telemetry
from bridge.errors import ConfigurationError
from bridge.log import logger

metrics = Metrics()


@metrics.log_metrics
@logger.inject_lambda_context(clear_state=True)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    started = time.monotonic()
    records = event.get("Records") or []
    try:
        bridge = factory.get_bridge()
    except ConfigurationError as exc:
        logger.error("bridge is not configured", step="configure", outcome="parked", error=str(exc))
        metrics.add_metric(name="ConfigurationErrors", unit="Count", value=1)
        if factory.park_everything(records, exc):
            return {"batchItemFailures": []}
        raise
    result = bridge.process(records, context.get_remaining_time_in_millis())
    telemetry.publish(metrics, result, (time.monotonic() - started) * 1000)
    response = result.response()
    logger.info(
        "batch done",
        step="batch",
        records=len(records),
        contacts=len(result.outcomes),
        parked=sum(len(item.records) for item in result.parked),
        failures=len(response["batchItemFailures"]),
    )
    return response
