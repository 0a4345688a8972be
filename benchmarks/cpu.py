"""Handler CPU per transcript segment, network excluded: the real BatchProcessor/ContactRunner over in-memory fakes
vs the naive baseline over the same fakes, same records, ``time.process_time()`` (all threads).

Input: 50 concurrent synthetic calls (STARTED .. COMPLETED, utterances, categories, summary) in one shard's order,
delivered in batches of 100 records; CPU includes parsing, planning, the worker pool and INFO log formatting.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass
from typing import Any

from benchmarks.fakeworld import FakeWorld, NaiveWorld
from benchmarks.workload import batches, interleaved


@dataclass
class CpuFigures:
    ours_us: float
    naive_us: float
    transcripts: int
    runs: int

    @property
    def ratio(self) -> float:
        return self.ours_us / self.naive_us


def _cpu(world: Any, groups: list[list[dict[str, Any]]]) -> float:
    started = time.process_time()
    for group in groups:
        world.process(group)
    return time.process_time() - started


def run(runs: int = 5, calls: int = 50, batch_size: int = 100, max_workers: int = 8) -> CpuFigures:
    stream = interleaved(calls)
    groups = batches(stream.records, batch_size)
    transcripts = stream.transcripts()
    ours: list[float] = []
    naive: list[float] = []
    for _ in range(runs):
        world = FakeWorld(max_workers=max_workers)
        ours.append(_cpu(world, groups))
        world.close()
        naive.append(_cpu(NaiveWorld(), groups))
    return CpuFigures(
        statistics.median(ours) / transcripts * 1e6, statistics.median(naive) / transcripts * 1e6, transcripts, runs
    )


def profile_ours(calls: int = 50, batch_size: int = 100) -> str:
    import cProfile
    import io
    import pstats

    groups = batches(interleaved(calls).records, batch_size)
    world = FakeWorld(max_workers=1)
    profiler = cProfile.Profile()
    profiler.enable()
    for group in groups:
        world.process(group)
    profiler.disable()
    out = io.StringIO()
    pstats.Stats(profiler, stream=out).sort_stats("cumulative").print_stats(10)
    return out.getvalue()


if __name__ == "__main__":
    from benchmarks.fakeworld import quiet_logs

    quiet_logs()
    figures = run()
    print(figures, f"ratio {figures.ratio:.3f}")
    print(profile_ours())
