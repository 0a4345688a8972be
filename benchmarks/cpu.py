"""Handler CPU per transcript, network excluded (no waiting; every request's client-side CPU counts), ours vs naive,
same records, ``time.process_time()`` (all threads), medians of several runs, each on a fresh world.

Two variants:
- ``fakes``: the real BatchProcessor/ContactRunner over in-memory fakes (tests/fakes.py): pure bridge logic. The
  naive baseline's per-segment requests cost nothing here, so the ratio flatters naive;
- ``wire``: the real ``ServiceNowClient`` and ``DynamoContactStore`` (boto3) on a stubbed wire (benchmarks.wire),
  for ours and for naive: each request costs what its client costs, minus the socket (the stubs' own server-side
  CPU is measured per call with ``time.thread_time`` and subtracted).

Two workloads (both delivered in batches of 100 records, arrival timestamps wall-clock):
- ``5 calls``: the issue's scenario, 5 concurrent calls, whole (STARTED .. COMPLETED), ~12 transcripts per contact
  per batch, so per-contact costs are shared by many transcripts;
- ``50 calls``: 50 concurrent calls, ~2 records per contact per batch: per-contact fixed costs (one PutItem, one
  POST, a log line, a pool task) are paid for ~1 transcript each and dominate.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from benchmarks.fakeworld import FakeWorld, NaiveWireWorld, NaiveWorld, WireWorld
from benchmarks.workload import batches, interleaved, stamped

WORKLOADS = {"5 calls": 5, "50 calls": 50}
VARIANTS = ("fakes", "wire")
VARIANT_LABELS = {"fakes": "fakes", "wire": "real clients, stubbed wire"}


@dataclass
class CpuFigures:
    workload: str
    variant: str
    ours_us: float
    naive_us: float
    transcripts: int
    batches: int
    runs: int

    @property
    def ratio(self) -> float:
        return self.ours_us / self.naive_us

    @property
    def met(self) -> bool:
        return self.ours_us <= 50 and self.ratio <= 0.1


def _worlds(variant: str, max_workers: int) -> tuple[Callable[[], Any], Callable[[], Any]]:
    if variant == "fakes":
        return (lambda: FakeWorld(max_workers=max_workers)), NaiveWorld
    return (lambda: WireWorld(max_workers=max_workers)), NaiveWireWorld


def _cpu(world: Any, groups: list[list[dict[str, Any]]]) -> float:
    started = time.process_time()
    for group in groups:
        world.process(group)
    elapsed = time.process_time() - started - getattr(world, "stub_cpu_s", 0.0)  # the stub server's own CPU
    if hasattr(world, "close"):
        world.close()
    return elapsed


def workload(calls: int, batch_size: int = 100, turns: int = 60) -> tuple[list[list[dict[str, Any]]], int]:
    stream = interleaved(calls, turns=turns)
    return batches(stamped(stream.records), batch_size), stream.transcripts()


def measure(
    name: str, variant: str, runs: int, batch_size: int = 100, max_workers: int = 8, turns: int = 60
) -> CpuFigures:
    groups, transcripts = workload(WORKLOADS[name], batch_size, turns)
    make_ours, make_naive = _worlds(variant, max_workers)
    _cpu(make_ours(), groups)  # warm caches (botocore endpoint rules, regexes), not counted
    _cpu(make_naive(), groups[:2])
    ours: list[float] = []
    naive: list[float] = []
    for _ in range(runs):
        ours.append(_cpu(make_ours(), groups))
        naive.append(_cpu(make_naive(), groups))
    return CpuFigures(
        name,
        variant,
        statistics.median(ours) / transcripts * 1e6,
        statistics.median(naive) / transcripts * 1e6,
        transcripts,
        len(groups),
        runs,
    )


def run(runs: int = 5, wire_runs: int = 3, turns: int = 60) -> list[CpuFigures]:
    """``turns``: turns per synthetic call (60: a real call's length; the smoke run uses a few)."""
    return [
        measure(name, variant, runs if variant == "fakes" or name == "5 calls" else wire_runs, turns=turns)
        for name in WORKLOADS
        for variant in VARIANTS
    ]


def profile(name: str = "50 calls", variant: str = "wire", top: int = 10, turns: int = 60) -> str:
    """cProfile of ours with contacts run inline (one thread), plus CPU by component."""
    import cProfile
    import io
    import pstats

    from benchmarks.loadgen import cpu_shares

    groups, _ = workload(WORKLOADS[name], turns=turns)
    make_ours, _ = _worlds(variant, 1)
    _cpu(make_ours(), groups)
    world = make_ours()
    profiler = cProfile.Profile()
    profiler.enable()
    for group in groups:
        world.process(group)
    profiler.disable()
    out = io.StringIO()
    stats = pstats.Stats(profiler, stream=out)
    stats.sort_stats("tottime").print_stats(top)
    return out.getvalue() + "\n" + cpu_shares(stats)


def profile_ours(calls: int = 50) -> str:
    """The fakes variant's profile (kept for ``python -m benchmarks.cpu``)."""
    return profile(f"{calls} calls", "fakes")


if __name__ == "__main__":
    from benchmarks.fakeworld import quiet_logs

    quiet_logs()
    for figures in run():
        print(figures, f"ratio {figures.ratio:.3f}")
    print(profile())
