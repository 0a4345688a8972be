"""Synthetic shard streams: concurrent Contact Lens calls with a realistic cadence, as Kinesis records.

Every stream is deterministic by seed. Times are virtual seconds; the load generator maps them to wall time.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from voicebridge.feed.fixtures import build_records, kinesis_event
from voicebridge.soak.synth import interleave_with_times, synthesize_call


@dataclass(frozen=True)
class Stream:
    """Lambda Kinesis records in shard order with their virtual arrival times (seconds)."""

    records: tuple[dict[str, Any], ...]
    times: tuple[float, ...]
    calls: int

    def segments(self, start: int = 0, end: int | None = None) -> int:
        return sum(_segment_count(r) for r in self.records[start:end])

    def transcripts(self, start: int = 0, end: int | None = None) -> int:
        return sum(_transcript_count(r) for r in self.records[start:end])


def _payload(record: dict[str, Any]) -> dict[str, Any]:
    import base64
    import json

    payload: dict[str, Any] = json.loads(base64.b64decode(record["kinesis"]["data"]))
    return payload


def _segment_count(record: dict[str, Any]) -> int:
    return len(_payload(record).get("Segments") or [])


def _transcript_count(record: dict[str, Any]) -> int:
    return sum(1 for s in _payload(record).get("Segments") or [] if "Transcript" in s)


def _lambda_records(events: list[dict[str, Any]], times: list[float]) -> tuple[dict[str, Any], ...]:
    stream_records = build_records(events, start_timestamp=0.0, seconds_between=0.0)
    records = kinesis_event(stream_records)["Records"]
    for record, at in zip(records, times, strict=True):
        record["kinesis"]["approximateArrivalTimestamp"] = at
    return tuple(records)


@lru_cache(maxsize=8)
def interleaved(calls: int, seed: int = 7, turns: int = 60) -> Stream:
    """``calls`` whole calls (STARTED .. COMPLETED), staggered starts, merged in one shard's order."""
    synthetic = [synthesize_call(seed * 100_000 + index, turns=turns) for index in range(calls)]
    timed = interleave_with_times(synthetic, seed)
    return Stream(_lambda_records([e for _, e in timed], [t for t, _ in timed]), tuple(t for t, _ in timed), calls)


def live_window(calls: int = 5, records: int = 100, seed: int = 7) -> tuple[Stream, int]:
    """A stream of ``calls`` concurrent calls and the index where a ``records``-long window starts in which every
    call is live (STARTED earlier, no COMPLETED inside): deliver ``[:start]`` first, then measure the window."""
    stream = interleaved(calls, seed)
    started = 0
    for index, record in enumerate(stream.records):
        if _payload(record).get("EventType") == "STARTED":
            started += 1
            if started == calls:
                start = index + 1 + 2 * calls  # past every STARTED and each call's first few segments
                window = stream.records[start : start + records]
                if any(_payload(r).get("EventType") != "SEGMENTS" for r in window):
                    raise RuntimeError("the window is not steady-state; change the seed")
                return stream, start
    raise RuntimeError("not every call started")


@lru_cache(maxsize=8)
def steady(concurrent: int, window_s: float, seed: int = 11, turns: int = 60) -> tuple[Stream, Stream]:
    """``concurrent`` calls live at every instant of ``[0, window_s)`` (seats with calls back to back, 1-5 s
    apart; each seat's first call started up to one call length before 0).

    Returns (warm-up, window): the warm-up holds the STARTED events of calls begun before 0 (delivered untimed so
    their interactions exist), the window every event due in ``[0, window_s)`` in shard order.
    """
    rng = random.Random(seed)
    timed: list[tuple[float, int, int, dict[str, Any]]] = []
    warm: list[tuple[float, int, int, dict[str, Any]]] = []
    call_number = 0
    for seat in range(concurrent):
        start: float | None = None
        while True:
            call = synthesize_call(seed * 1_000_000 + call_number, turns=turns)
            call_number += 1
            if start is None:
                start = -rng.uniform(0.0, call.duration_seconds)
            for index, (offset, event) in enumerate(zip(call.event_times, call.events, strict=True)):
                at = start + offset
                if at < 0:
                    if index == 0:
                        warm.append((at, seat, index, event))
                elif at < window_s:
                    timed.append((at, seat, index, event))
            start += call.duration_seconds + rng.uniform(1.0, 5.0)
            if start >= window_s:
                break
    warm.sort(key=lambda item: item[:3])
    timed.sort(key=lambda item: item[:3])
    warm_stream = Stream(_lambda_records([e for *_, e in warm], [t for t, *_ in warm]), (), concurrent)
    window = Stream(
        _lambda_records([e for *_, e in timed], [t for t, *_ in timed]), tuple(t for t, *_ in timed), concurrent
    )
    # Sequence numbers must grow along the shard: the window follows the warm-up.
    _renumber(warm_stream.records + window.records)
    return warm_stream, window


def _renumber(records: tuple[dict[str, Any], ...]) -> None:
    from voicebridge.feed.fixtures import FIRST_SEQUENCE_NUMBER, SEQUENCE_STEP

    for index, record in enumerate(records):
        number = str(FIRST_SEQUENCE_NUMBER + index * SEQUENCE_STEP)
        record["kinesis"]["sequenceNumber"] = number
        record["eventID"] = record["eventID"].rsplit(":", 1)[0] + ":" + number


def batches(records: tuple[dict[str, Any], ...] | list[dict[str, Any]], size: int) -> list[list[dict[str, Any]]]:
    return [list(records[start : start + size]) for start in range(0, len(records), size)]


def stamped(
    records: tuple[dict[str, Any], ...] | list[dict[str, Any]], at: float | None = None
) -> list[dict[str, Any]]:
    """Copies of ``records`` whose ``approximateArrivalTimestamp`` is a real wall-clock time (``at``, default now).

    The streams above carry virtual seconds (0 = the first call's start), which the bridge would read as 1970 and
    log as epoch-sized ``lag_ms`` / ``SegmentLag``: stamp records when they "arrive" in the simulated stream.
    """
    when = time.time() if at is None else at
    return [dict(record, kinesis=dict(record["kinesis"], approximateArrivalTimestamp=when)) for record in records]
