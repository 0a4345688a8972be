"""The adaptive limit toward ServiceNow (bridge.adapters.concurrency), on a fake clock."""

from __future__ import annotations

import threading

import pytest

from bridge.adapters.concurrency import AdaptiveLimit, Outcome


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def reply(limit: AdaptiveLimit, clock: Clock, latency_s: float, outcome: Outcome = Outcome.OK) -> None:
    started = limit.acquire(timeout=0)
    assert started is not None, "no permit free"
    clock.now += latency_s
    limit.release(started, outcome)


def test_slow_start_grows_by_one_per_good_reply_up_to_the_maximum() -> None:
    clock = Clock()
    limit = AdaptiveLimit(12, initial=4, monotonic=clock)
    for expected in range(5, 13):
        reply(limit, clock, 0.1)
        assert limit.limit == expected
    reply(limit, clock, 0.1)
    assert limit.limit == 12 and limit.snapshot().slow_start


def test_a_refusal_halves_the_limit_and_ends_slow_start() -> None:
    clock = Clock()
    limit = AdaptiveLimit(32, initial=20, monotonic=clock)
    reply(limit, clock, 0.1, Outcome.OVERLOADED)
    assert limit.limit == 10 and not limit.snapshot().slow_start


def test_after_slow_start_the_limit_grows_by_one_per_round_trip() -> None:
    clock = Clock()
    limit = AdaptiveLimit(32, initial=20, monotonic=clock)
    reply(limit, clock, 0.1, Outcome.OVERLOADED)  # 10, congestion avoidance
    for _ in range(11):  # a round trip's worth of replies at limit 10 (each adds 1/limit)
        reply(limit, clock, 0.1)
    assert limit.limit == 11


def test_refusals_of_requests_sent_before_the_decrease_count_once() -> None:
    """A full queue refuses a whole wave at once: one decrease per round trip, not one per 429."""
    clock = Clock()
    limit = AdaptiveLimit(32, initial=32, monotonic=clock)
    wave = [limit.acquire(timeout=0) for _ in range(20)]
    clock.now += 0.05
    for started in wave:
        assert started is not None
        limit.release(started, Outcome.OVERLOADED)
    assert limit.limit == 16 and limit.snapshot().decreases == 1
    reply(limit, clock, 0.05, Outcome.OVERLOADED)  # sent after the decrease: a new signal
    assert limit.limit == 8


def test_queueing_latency_takes_a_tenth_off_and_a_steady_latency_does_not() -> None:
    clock = Clock()
    limit = AdaptiveLimit(32, initial=10, monotonic=clock)
    for _ in range(5):
        reply(limit, clock, 0.1)  # the uncongested baseline: 100 ms
    assert limit.limit == 15
    for _ in range(10):
        reply(limit, clock, 0.4)  # queued at the node: the smoothed latency climbs past 1.5x
    snapshot = limit.snapshot()
    assert 1 <= snapshot.decreases and limit.limit < 15 and not snapshot.slow_start


def test_a_servicenow_slower_for_good_becomes_the_new_baseline() -> None:
    clock = Clock()
    limit = AdaptiveLimit(32, initial=8, baseline_window_s=30.0, monotonic=clock)
    reply(limit, clock, 0.1)
    for _ in range(400):  # 400 ms from now on, for two whole baseline windows
        reply(limit, clock, 0.4)
        clock.now += 0.2
    snapshot = limit.snapshot()
    assert snapshot.baseline_s == pytest.approx(0.4, rel=0.05)
    grown = limit.limit
    reply(limit, clock, 0.4)
    reply(limit, clock, 0.4)
    assert limit.limit >= grown  # no longer read as congestion


def test_neutral_outcomes_change_nothing_and_the_limit_stays_within_one_and_the_maximum() -> None:
    clock = Clock()
    limit = AdaptiveLimit(4, initial=9, monotonic=clock)
    assert limit.limit == 4
    reply(limit, clock, 5.0, Outcome.NEUTRAL)
    assert limit.limit == 4 and limit.snapshot().decreases == 0
    for _ in range(10):
        reply(limit, clock, 0.1, Outcome.OVERLOADED)
    assert limit.limit == 1


def test_a_request_waits_for_a_permit_and_gets_none_when_its_time_runs_out() -> None:
    limit = AdaptiveLimit(2, initial=2)
    held = [limit.acquire(timeout=0), limit.acquire(timeout=0)]
    assert None not in held
    assert limit.acquire(timeout=0) is None  # both permits out: the caller does not send
    got: list[float | None] = []
    waiter = threading.Thread(target=lambda: got.append(limit.acquire(timeout=30)))
    waiter.start()
    started = held[0]
    assert started is not None
    limit.release(started, Outcome.OK)  # frees one: the waiting thread takes it
    waiter.join(timeout=30)
    assert got and got[0] is not None and limit.snapshot().in_flight == 2


def test_the_maximum_must_be_positive() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        AdaptiveLimit(0)
