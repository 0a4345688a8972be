"""Deterministic counts per batch: ServiceNow requests and contact-store calls, ours vs the naive baseline.

A 100-record batch over 5 live calls: the calls' earlier records are delivered first (untimed, uncounted), then
the window is delivered as one batch and counted. Two inputs:
- ``realistic``: the synthetic cadence (``synthesize_call``), where many records carry only utterances;
- ``dense``: every record of the window carries one final transcript (plus its utterances), the upper end.
Records carry wall-clock arrival timestamps (delivery time), so the bridge's ``lag_ms`` stays meaningful.
"""

from __future__ import annotations

import base64
import json
from dataclasses import asdict, dataclass
from typing import Any

from benchmarks.fakeworld import FakeWorld, NaiveWorld
from benchmarks.workload import live_window, stamped
from voicebridge.feed.fixtures import FIRST_SEQUENCE_NUMBER, SEQUENCE_STEP, build_records, kinesis_event
from voicebridge.soak.synth import synthesize_call


@dataclass
class BatchCounts:
    records: int
    contacts: int
    transcripts: int
    ours_requests: int
    naive_requests: int
    ours_reads: int
    ours_writes: int
    naive_reads: int
    naive_writes: int

    @property
    def ratio(self) -> float:
        return self.ours_requests / self.naive_requests if self.naive_requests else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "ratio": self.ratio}


def _contact(record: dict[str, Any]) -> str:
    return str(json.loads(base64.b64decode(record["kinesis"]["data"]))["ContactId"])


def realistic_window(calls: int = 5, size: int = 100) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(records before the window, the window): every call live throughout the window."""
    stream, start = live_window(calls, size)
    return stamped(stream.records[:start]), stamped(stream.records[start : start + size])


def dense_window(calls: int = 5, size: int = 100) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Each call's STARTED first, then ``size`` SEGMENTS records round-robin over the calls, one final transcript
    each (with the utterances that announced it)."""
    synthetic = [synthesize_call(900 + index, turns=size // calls + 5) for index in range(calls)]
    started = [call.events[0] for call in synthetic]
    per_call: list[list[dict[str, Any]]] = []
    for call in synthetic:
        records = []
        for event in call.events[1:]:
            segments = event.get("Segments") or []
            for position, segment in enumerate(segments):
                if "Transcript" in segment:
                    utterances = [s for s in segments[:position] if "Utterance" in s]
                    records.append({**event, "Segments": [*utterances, segment]})
        per_call.append(records)
    window = [per_call[index % calls][index // calls] for index in range(size)]
    stream = stamped(kinesis_event(build_records(started + window))["Records"])
    return stream[:calls], stream[calls:]


def measure(before: list[dict[str, Any]], window: list[dict[str, Any]]) -> BatchCounts:
    ours, naive = FakeWorld(max_workers=1), NaiveWorld()
    ours.process(before)
    naive.process(before)
    ours_calls, ours_loads, ours_writes = len(ours.servicenow.calls), ours.store.loads, ours.store.writes
    naive_counts = naive.bridge.counts
    n_requests, n_reads, n_writes = (
        naive_counts.servicenow_requests,
        naive_counts.state_reads,
        naive_counts.state_writes,
    )
    result = ours.process(window)
    naive.process(window)
    assert not result.failed_sequence_numbers and not ours.parking.items, "the benchmark window must go through"
    ours.close()
    return BatchCounts(
        records=len(window),
        contacts=len({_contact(r) for r in window}),
        transcripts=result.transcripts_received,
        ours_requests=len(ours.servicenow.calls) - ours_calls,
        naive_requests=naive_counts.servicenow_requests - n_requests,
        ours_reads=ours.store.loads - ours_loads,
        ours_writes=ours.store.writes - ours_writes,
        naive_reads=naive_counts.state_reads - n_reads,
        naive_writes=naive_counts.state_writes - n_writes,
    )


def run() -> dict[str, BatchCounts]:
    return {"realistic": measure(*realistic_window()), "dense": measure(*dense_window())}


__all__ = [
    "FIRST_SEQUENCE_NUMBER",
    "SEQUENCE_STEP",
    "BatchCounts",
    "dense_window",
    "measure",
    "realistic_window",
    "run",
]
