"""A Kinesis shard as Lambda's event source mapping feeds it (moto cannot run an event source mapping).

Semantics reproduced: batches of ``batch_size`` records in sequence order; with ``ReportBatchItemFailures`` the
checkpoint moves to the lowest reported sequence number and everything after it is delivered again; a function
error redelivers the whole batch; an empty or unknown ``itemIdentifier`` fails the whole batch; after
``max_retries`` retries of the same position the batch is given up (a real deployment sends its sequence range to
the on-failure destination). Used by replay, the chaos soak and the benchmarks.

Records already on the stream are delivered in full batches. Records that reach the shard over time (``Polling``,
``replay --realtime``/``--speed``) are delivered as the mapping does: it polls the shard about once a second, and
again at once when an invocation returns, and invokes with what has arrived so far (up to the batch size) once the
batching window (``MaximumBatchingWindowInSeconds``, default 0) has passed or the batch is full.
"""

from __future__ import annotations

import argparse
import bisect
import math
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from voicebridge.feed.fixtures import StreamRecord, kinesis_event

MAX_BATCHING_WINDOW_S = 300.0  # the largest MaximumBatchingWindowInSeconds Lambda accepts
POLL_INTERVAL_S = 1.0  # an idle shard is polled about once a second


@dataclass
class DeliveryReport:
    records: int = 0
    invocations: int = 0
    redelivered_records: int = 0
    function_errors: int = 0
    partial_failures: int = 0
    given_up: list[tuple[str, str]] = field(default_factory=list)  # (first, last) sequence numbers
    wall_seconds: float = 0.0


@dataclass(frozen=True)
class Polling:
    """When each record is on the shard, and how the mapping reads it.

    ``arrivals[i]``: seconds after the run starts at which record ``i`` can be read (never before the record ahead
    of it: a shard is read in order). ``clock`` and ``sleep`` are injectable so tests need no real time.
    """

    arrivals: Sequence[float]
    batching_window_s: float = 0.0
    poll_interval_s: float = POLL_INTERVAL_S
    clock: Callable[[], float] = time.monotonic
    sleep: Callable[[float], None] = time.sleep

    def __post_init__(self) -> None:
        if not 0.0 <= self.batching_window_s <= MAX_BATCHING_WINDOW_S:
            raise ValueError(f"batching window must be 0-{MAX_BATCHING_WINDOW_S:g} s, not {self.batching_window_s}")
        if self.poll_interval_s <= 0:
            raise ValueError("poll_interval_s must be positive")
        if any(later < earlier for earlier, later in zip(self.arrivals, self.arrivals[1:], strict=False)):
            raise ValueError("arrivals must not decrease (a shard is read in order)")


def arrival_polling(
    records: Sequence[StreamRecord],
    speed: float = 1.0,
    batching_window_s: float = 0.0,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> Polling:
    """Records reach the shard at their ``approximateArrivalTimestamp`` pace, ``speed`` times faster (the first one
    at once); a record stamped earlier than the one ahead of it is readable only with it."""
    if not (speed > 0 and math.isfinite(speed)):
        raise ValueError(f"speed must be a positive number, not {speed}")
    first = min((record.arrival_timestamp for record in records), default=0.0)
    arrivals: list[float] = []
    latest = 0.0
    for record in records:
        latest = max(latest, (record.arrival_timestamp - first) / speed)
        arrivals.append(latest)
    return Polling(arrivals, batching_window_s, clock=clock, sleep=sleep)


def batching_window_argument(text: str) -> float:
    """argparse type of ``--batching-window``: seconds, 0 to 300 as Lambda accepts them."""
    valid = f"expected a number of seconds from 0 to {MAX_BATCHING_WINDOW_S:g}, got {text!r}"
    try:
        value = float(text.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(valid) from None
    if not (math.isfinite(value) and 0.0 <= value <= MAX_BATCHING_WINDOW_S):
        raise argparse.ArgumentTypeError(valid)
    return value


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
        polling: Polling | None = None,
    ) -> None:
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        if polling is not None and pace is not None:
            raise ValueError("pace and polling are two ways to time delivery: give one")
        if polling is not None and len(polling.arrivals) != len(records):
            raise ValueError("polling needs one arrival time per record")
        self.records = list(records)
        self.invoke = invoke
        self.batch_size = batch_size
        self.max_retries = max_retries
        self.retry_delay_s = retry_delay_s
        self.pace = pace
        self.on_batch = on_batch
        self.polling = polling

    def run(self) -> DeliveryReport:
        report = DeliveryReport(records=len(self.records))
        clock = self.polling.clock if self.polling is not None else time.monotonic
        started = clock()
        position = 0
        retries = 0
        while position < len(self.records):
            if self.polling is not None:
                # A retry goes out at once with what is there; a new batch waits as the mapping's poller does.
                batch = self._arrived(position, clock() - started) if retries else self._poll(position, started)
            else:
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
        report.wall_seconds = clock() - started
        return report

    def _arrived(self, position: int, elapsed: float) -> list[StreamRecord]:
        """The records from ``position`` on the shard ``elapsed`` seconds into the run, at most a batch."""
        assert self.polling is not None
        end = bisect.bisect_right(self.polling.arrivals, elapsed, lo=position)
        return self.records[position : min(end, position + self.batch_size)]

    def _poll(self, position: int, started: float) -> list[StreamRecord]:
        """Wait as the event source mapping does for the next batch from ``position``: poll (at once, then about
        once a second while the shard has nothing new); once records are there, gather until the batch is full or
        the batching window since the first of them was seen has passed."""
        polling = self.polling
        assert polling is not None
        gathering_since: float | None = None
        while True:
            elapsed = polling.clock() - started
            batch = self._arrived(position, elapsed)
            if not batch:
                polling.sleep(polling.poll_interval_s)
                continue
            if gathering_since is None:
                gathering_since = elapsed
            window_ends = gathering_since + polling.batching_window_s
            if len(batch) == self.batch_size or elapsed >= window_ends:
                return batch
            filling = position + self.batch_size - 1  # the record that would fill the batch
            full_at = polling.arrivals[filling] if filling < len(self.records) else math.inf
            polling.sleep(max(0.0, min(window_ends, full_at) - elapsed))

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
