"""Adaptive concurrency toward ServiceNow: one limit per container, shared by every worker thread.

A ServiceNow node works a handful of REST requests at once (its API semaphores), queues a few more and refuses the
rest (429 with ``Retry-After``). ``MAX_WORKERS`` threads that each send as soon as they can keep a full node's queue
overflowing, and every refusal closes the shared ``Retry-After`` gate for a second in which the node idles. So each
request first takes a permit from an AIMD limit (as TCP does with its window):

- **slow start**: the limit starts low and grows by one per good reply (it doubles every round trip) until the first
  sign of congestion (a refusal, or one reply slower than ``slow_start_tolerance`` x the baseline);
- **additive increase**: then by one per ``limit`` good replies (one per round trip);
- **multiplicative decrease**: a refusal (429, 503, a dropped 202, a read timeout) halves it; queueing (the
  smoothed latency above ``tolerance`` x the uncongested baseline) takes a tenth off. At most one decrease per round
  trip: a reply to a request sent before the last decrease says nothing about the new limit;
- bounded by ``1 .. maximum`` (``MAX_WORKERS``).

The baseline is the lowest smoothed latency of the last two windows (``baseline_window_s`` each), so a ServiceNow
that got slower for good becomes the new normal instead of being read as congestion forever.
"""

from __future__ import annotations

import enum
import itertools
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass


class Outcome(enum.Enum):
    OK = "ok"  # a reply that says the node worked the request (any 2xx/4xx): its latency is a signal
    OVERLOADED = "overloaded"  # refused or dropped for capacity (429, 503, 202, read timeout)
    NEUTRAL = "neutral"  # says nothing about capacity (a 500, a connection refused, an error before sending)


@dataclass(frozen=True)
class LimitSnapshot:
    limit: float
    in_flight: int
    slow_start: bool
    baseline_s: float | None
    smoothed_s: float | None
    decreases: int


class AdaptiveLimit:
    """An AIMD permit count (module docstring). Thread-safe; ``monotonic`` is injectable for tests."""

    def __init__(
        self,
        maximum: int,
        initial: int = 8,
        *,
        tolerance: float = 2.0,
        slow_start_tolerance: float = 1.5,
        overload_factor: float = 0.5,
        queueing_factor: float = 0.9,
        smoothing: float = 0.2,
        baseline_window_s: float = 30.0,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        if maximum < 1:
            raise ValueError("maximum must be at least 1")
        self.maximum = maximum
        # 2x for the smoothed latency: a busy client's own CPU (GIL, TLS) lifts latency by a few tens of percent
        # without the node queueing (measured at 64 in flight: 1.5x cut the limit 10 times in 15 s, 2x once).
        self.tolerance = tolerance
        self.slow_start_tolerance = slow_start_tolerance
        self.overload_factor = overload_factor
        self.queueing_factor = queueing_factor
        self.smoothing = smoothing
        self.baseline_window_s = baseline_window_s
        self.monotonic = monotonic
        self._limit = float(max(1, min(initial, maximum)))
        self._in_flight = 0
        self._slow_start = True
        self._smoothed: float | None = None
        self._window_start = monotonic()
        self._window_min: float | None = None  # lowest smoothed latency of the current window
        self._previous_min: float | None = None  # ... and of the window before
        self._last_decrease = float("-inf")  # monotonic instant of the last decrease
        self._decreases = 0
        self._condition = threading.Condition()
        # Permits go first come, first served: the processor submits the contacts with the longest chains of
        # requests first, and a random wake-up order would start them last (the batch's tail, the node idle).
        self._waiting: deque[int] = deque()
        self._tickets = itertools.count()

    @property
    def limit(self) -> int:
        return max(1, int(self._limit))

    def acquire(self, timeout: float | None = None) -> float | None:
        """Wait for a permit; returns the instant the request starts (pass it to ``release``), or None when
        ``timeout`` (seconds) passed first: the caller did not send."""
        with self._condition:
            ticket = next(self._tickets)
            self._waiting.append(ticket)
            granted = self._condition.wait_for(
                lambda: self._waiting[0] == ticket and self._in_flight < self.limit, timeout=timeout
            )
            self._waiting.remove(ticket)
            if not granted:
                self._condition.notify_all()  # the next in line may be free to go now
                return None
            self._in_flight += 1
            if self._waiting and self._in_flight < self.limit:
                self._condition.notify_all()
            return self.monotonic()

    def release(self, started: float, outcome: Outcome) -> None:
        """Give the permit back with what the reply said about the node's capacity."""
        with self._condition:
            self._in_flight -= 1
            now = self.monotonic()
            if outcome is Outcome.OVERLOADED:
                self._decrease(started, now, self.overload_factor)
            elif outcome is Outcome.OK:
                self._observe(started, now)
            self._condition.notify_all()

    def snapshot(self) -> LimitSnapshot:
        with self._condition:
            return LimitSnapshot(
                self._limit, self._in_flight, self._slow_start, self._baseline(), self._smoothed, self._decreases
            )

    # -- AIMD (under the condition's lock) ------------------------------------------------------------------------

    def _observe(self, started: float, now: float) -> None:
        latency = max(0.0, now - started)
        smoothed = latency if self._smoothed is None else self._smoothed + self.smoothing * (latency - self._smoothed)
        self._smoothed = smoothed
        if now - self._window_start >= self.baseline_window_s:
            self._previous_min, self._window_min, self._window_start = self._window_min, None, now
        self._window_min = smoothed if self._window_min is None else min(self._window_min, smoothed)
        baseline = self._baseline()
        # In slow start the limit doubles every round trip: one reply that queued already says stop (the smoothed
        # latency would let a whole doubling more reach the node, and a full queue refuses it).
        signal, tolerance = (latency, self.slow_start_tolerance) if self._slow_start else (smoothed, self.tolerance)
        if baseline is not None and signal > tolerance * baseline:
            self._decrease(started, now, self.queueing_factor)
        elif self._slow_start:
            self._limit = min(float(self.maximum), self._limit + 1.0)
        else:
            self._limit = min(float(self.maximum), self._limit + 1.0 / self._limit)

    def _decrease(self, started: float, now: float, factor: float) -> None:
        self._slow_start = False
        if started < self._last_decrease:
            return  # sent before the last decrease: already accounted for
        self._limit = max(1.0, self._limit * factor)
        self._last_decrease = now
        self._decreases += 1

    def _baseline(self) -> float | None:
        known = [m for m in (self._window_min, self._previous_min) if m is not None]
        return min(known) if known else None
