"""The shard driver delivering records that reach the shard over time (``replay --realtime``) as Lambda's event
source mapping does: polls about once a second and at once after an invocation, invokes with what has arrived (up
to the batch size) after the batching window. A fake clock: no test sleeps."""

from __future__ import annotations

import argparse
import dataclasses
from dataclasses import dataclass, field
from typing import Any

import pytest

from voicebridge.feed.fixtures import StreamRecord, build_records
from voicebridge.feed.shard import Polling, ShardDriver, arrival_polling, batching_window_argument

pytestmark = pytest.mark.unit


@dataclass
class FakeClock:
    now: float = 1000.0
    sleeps: list[float] = field(default_factory=list)

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        assert seconds >= 0
        self.sleeps.append(seconds)
        self.now += seconds


@dataclass
class TimedHandler:
    """Records (start time relative to the run, batch) of each invocation; each takes ``takes_s`` of fake time."""

    clock: FakeClock
    takes_s: float = 0.2
    fail_first: int = 0
    invocations: list[tuple[float, list[str]]] = field(default_factory=list)

    def __call__(self, event: dict[str, Any]) -> dict[str, Any]:
        started = self.clock.now - 1000.0
        self.invocations.append((started, [r["kinesis"]["sequenceNumber"] for r in event["Records"]]))
        self.clock.now += self.takes_s
        if len(self.invocations) <= self.fail_first:
            raise RuntimeError("function error")
        return {"batchItemFailures": []}


def call(seconds_between: float, count: int, start: float = 1_764_230_400.0) -> list[StreamRecord]:
    events = [{"ContactId": "c-1", "EventType": "SEGMENTS", "Segments": [], "n": n} for n in range(count)]
    return build_records(events, start_timestamp=start, seconds_between=seconds_between)


def drive(records: list[StreamRecord], clock: FakeClock, handler: TimedHandler, **options: Any) -> Any:
    batch_size = options.pop("batch_size", 100)
    speed = options.pop("speed", 1.0)
    polling = arrival_polling(records, speed, clock=clock.clock, sleep=clock.sleep, **options)
    return ShardDriver(records, handler, batch_size=batch_size, polling=polling).run()


def test_a_three_minute_call_arrives_in_many_small_invocations_spread_over_the_call() -> None:
    clock = FakeClock()
    handler = TimedHandler(clock)
    records = call(2.0, 91)  # a record every 2 s for 3 minutes
    report = drive(records, clock, handler)
    times = [started for started, _ in handler.invocations]
    # every record in its own invocation, each within a poll interval (+ the handler's own time) of its arrival
    assert report.invocations == len(handler.invocations) == 91
    assert [len(batch) for _, batch in handler.invocations] == [1] * 91
    arrivals = [2.0 * n for n in range(91)]
    assert all(0 <= started - arrived <= 1.0 for started, arrived in zip(times, arrivals, strict=True))
    assert times[0] == 0.0 and times[-1] >= 180.0
    assert sum(1 for started in times if started < 90.0) == 45  # half of them in the first half of the call
    assert report.wall_seconds == pytest.approx(times[-1] + 0.2)
    # every record delivered once, in order
    assert [seq for _, batch in handler.invocations for seq in batch] == [r.sequence_number for r in records]


def test_nothing_is_delivered_before_it_arrives_and_an_idle_shard_is_polled_once_a_second() -> None:
    clock = FakeClock()
    handler = TimedHandler(clock, takes_s=0.0)
    records = call(0.0, 5)
    records[3:] = [dataclasses.replace(r, arrival_timestamp=r.arrival_timestamp + 4.5) for r in records[3:]]
    drive(records, clock, handler)
    # the first three at once; the next two arrive at 4.5 s and are seen by the poll at 5 s
    assert [(started, len(batch)) for started, batch in handler.invocations] == [(0.0, 3), (5.0, 2)]
    assert clock.sleeps == [1.0] * 5


def test_records_arriving_faster_than_the_handler_form_growing_batches_up_to_the_batch_size() -> None:
    clock = FakeClock()
    handler = TimedHandler(clock, takes_s=1.0)
    records = call(0.1, 300)  # 10 records/s, an invocation takes 1 s
    drive(records, clock, handler, batch_size=25)
    sizes = [len(batch) for _, batch in handler.invocations]
    assert sizes[0] == 1  # the first poll finds one record and delivers it at once (window 0)
    assert max(sizes) <= 25 and 9 <= sizes[1] <= 11  # then about what arrived during the previous invocation
    assert sum(sizes) == 300


def test_the_batching_window_gathers_until_it_passes_or_the_batch_is_full() -> None:
    clock = FakeClock()
    handler = TimedHandler(clock, takes_s=0.0)
    drive(call(1.0, 12), clock, handler, batching_window_s=5.0)
    # gathered from the first record seen for 5 s: 0..5 then 6..11 (the window passes at 11 s)
    assert [(started, len(batch)) for started, batch in handler.invocations] == [(5.0, 6), (11.0, 6)]

    clock = FakeClock()
    handler = TimedHandler(clock, takes_s=0.0)
    drive(call(1.0, 12), clock, handler, batching_window_s=5.0, batch_size=4)
    # a full batch goes as soon as its last record is there
    assert [(started, len(batch)) for started, batch in handler.invocations] == [(3.0, 4), (7.0, 4), (11.0, 4)]


def test_speed_scales_the_arrival_pace() -> None:
    clock = FakeClock()
    handler = TimedHandler(clock, takes_s=0.0)
    drive(call(2.0, 11), clock, handler, speed=4.0)  # 20 s of stream in 5 s: 2 records per poll
    assert [len(batch) for _, batch in handler.invocations] == [1, 2, 2, 2, 2, 2]


def test_a_failed_batch_is_redelivered_at_once_from_its_position() -> None:
    clock = FakeClock()
    handler = TimedHandler(clock, takes_s=0.5, fail_first=2)
    records = call(2.0, 3)
    report = drive(records, clock, handler)
    assert [(started, batch) for started, batch in handler.invocations[:3]] == [
        (0.0, [records[0].sequence_number]),
        (0.5, [records[0].sequence_number]),
        (1.0, [records[0].sequence_number]),
    ]
    assert report.function_errors == 2 and report.redelivered_records == 2 and not report.given_up
    assert [seq for _, batch in handler.invocations[2:] for seq in batch] == [r.sequence_number for r in records]


def test_an_out_of_order_timestamp_is_read_with_the_record_ahead_of_it() -> None:
    records = call(10.0, 3)
    records[1] = dataclasses.replace(records[1], arrival_timestamp=records[0].arrival_timestamp - 5.0)
    assert list(arrival_polling(records).arrivals) == [5.0, 5.0, 25.0]  # the first arrival stamp is the origin


def test_invalid_polling_settings_are_refused() -> None:
    records = call(1.0, 2)
    with pytest.raises(ValueError, match="speed"):
        arrival_polling(records, speed=0.0)
    with pytest.raises(ValueError, match="batching window"):
        arrival_polling(records, batching_window_s=301.0)
    with pytest.raises(ValueError, match="in order"):
        Polling([1.0, 0.0])
    with pytest.raises(ValueError, match="one arrival time per record"):
        ShardDriver(records, lambda event: None, polling=Polling([0.0]))
    with pytest.raises(ValueError, match="give one"):
        ShardDriver(records, lambda event: None, pace=lambda batch: None, polling=Polling([0.0, 0.0]))


@pytest.mark.parametrize("text", ["-1", "301", "nan", "inf", "soon"])
def test_the_batching_window_argument_says_what_is_valid(text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError, match=r"from 0 to 300"):
        batching_window_argument(text)
    assert batching_window_argument(" 2.5 ") == 2.5
