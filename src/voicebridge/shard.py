"""A Kinesis shard as Lambda's event source mapping feeds it (moto cannot run an event source mapping).

Semantics reproduced: batches of ``batch_size`` records in sequence order; with ``ReportBatchItemFailures`` the
checkpoint moves to the lowest reported sequence number and everything after it is delivered again; a function
error redelivers the whole batch; an empty or unknown ``itemIdentifier`` fails the whole batch; after
``max_retries`` retries of the same position the batch is given up (a real deployment sends its sequence range to
the on-failure destination). Used by replay, the chaos soak and the benchmarks.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from voicebridge.fixtures import StreamRecord, kinesis_event


@dataclass
class DeliveryReport:
    records: int = 0
    invocations: int = 0
    redelivered_records: int = 0
    function_errors: int = 0
    partial_failures: int = 0
    given_up: list[tuple[str, str]] = field(default_factory=list)  # (first, last) sequence numbers
    wall_seconds: float = 0.0


def progress_printer(label: str, total: int) -> Callable[[DeliveryReport, int], None]:
    """An ``on_batch`` callback that keeps one progress line up to date on stderr (replay, chaos)."""

    def show(report: DeliveryReport, position: int) -> None:
        sys.stderr.write(
            f"\r{label}: {position}/{total} records, {report.invocations} invocations, "
            f"{report.function_errors} function errors, {report.redelivered_records} redelivered"
        )
        sys.stderr.flush()

    return show


class ShardDriver:
    def __init__(
        self,
        records: Sequence[StreamRecord],
        invoke: Callable[[dict[str, Any]], Any],
        batch_size: int = 100,
        max_retries: int = 5,
        retry_delay_s: float = 0.0,
        pace: Callable[[Sequence[StreamRecord]], None] | None = None,
        on_batch: Callable[[DeliveryReport, int], None] | None = None,
    ) -> None:
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        self.records = list(records)
        self.invoke = invoke
        self.batch_size = batch_size
        self.max_retries = max_retries
        self.retry_delay_s = retry_delay_s
        self.pace = pace
        self.on_batch = on_batch

    def run(self) -> DeliveryReport:
        report = DeliveryReport(records=len(self.records))
        started = time.monotonic()
        position = 0
        retries = 0
        while position < len(self.records):
            batch = self.records[position : position + self.batch_size]
            if self.pace is not None and retries == 0:
                self.pace(batch)
            if retries:
                report.redelivered_records += len(batch)
                if self.retry_delay_s:
                    time.sleep(self.retry_delay_s * retries)
            report.invocations += 1
            advance = self._deliver(batch, report)
            if advance == len(batch) or advance > 0:
                position += advance
                retries = 0 if advance == len(batch) else 1
                if advance < len(batch):
                    report.partial_failures += 1
            else:
                retries += 1
                if retries > self.max_retries:
                    report.given_up.append((batch[0].sequence_number, batch[-1].sequence_number))
                    position += len(batch)
                    retries = 0
            if self.on_batch is not None:
                self.on_batch(report, position)
        report.wall_seconds = time.monotonic() - started
        return report

    def _deliver(self, batch: list[StreamRecord], report: DeliveryReport) -> int:
        """How many records of the batch are checkpointed after this invocation."""
        try:
            response = self.invoke(kinesis_event(batch))
        except Exception:  # noqa: BLE001 - a function error, as Lambda sees it
            report.function_errors += 1
            return 0
        failures = (response or {}).get("batchItemFailures") or [] if isinstance(response, dict) else []
        if not failures:
            return len(batch)
        positions = {record.sequence_number: index for index, record in enumerate(batch)}
        indexes = [positions.get(str(item.get("itemIdentifier") or "")) for item in failures]
        if any(index is None for index in indexes):
            return 0  # an empty or unknown itemIdentifier fails the whole batch
        return min(index for index in indexes if index is not None)
