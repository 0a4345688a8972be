"""Issue 13 §2: a backlog through one full ServiceNow node (the emulator's capacity model: ``semaphores`` requests
worked at once, ``queue_depth`` waiting, the rest 429 with Retry-After 1), through ``voicebridge replay`` (the real
handler, moto, the emulator over HTTP), with the adaptive limit and without it (every worker sends as soon as the
shared Retry-After gate lets it: the client before issue 13), measured in the same run.

Figures: requests the node was sent (worked + refused), the refused share, the node's utilisation (semaphore-seconds
worked / (semaphores x wall)) and the wall time against what the node's capacity allows for the requests it worked
(worked / (semaphores / latency)).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

SEMAPHORES = 8
QUEUE_DEPTH = 16
LATENCY_MS = 100.0


@dataclass(frozen=True)
class NodeFigures:
    calls: int
    workers: int
    wall_s: float
    worked: int
    refused: int
    busy_s: float
    messages: int  # transcripts and notes the calls carry
    stored: int  # messages ServiceNow holds at the end (== messages: nothing lost, nothing doubled)

    @property
    def lost(self) -> int:
        return max(0, self.messages - self.stored)

    @property
    def sent(self) -> int:
        return self.worked + self.refused

    @property
    def refused_share(self) -> float:
        return self.refused / self.sent if self.sent else 0.0

    @property
    def capacity_s(self) -> float:
        """The wall time the node's capacity allows for the requests it worked."""
        return self.worked / (SEMAPHORES / (LATENCY_MS / 1000))

    @property
    def over_capacity(self) -> float:
        return self.wall_s / self.capacity_s if self.capacity_s else float("nan")

    @property
    def utilisation(self) -> float:
        return self.busy_s / (SEMAPHORES * self.wall_s) if self.wall_s else 0.0

    def summary(self, label: str) -> str:
        return (
            f"node {label}: {self.calls} calls, MAX_WORKERS {self.workers}: {self.sent} requests, {self.refused} "
            f"refused ({100 * self.refused_share:.1f} %), {self.wall_s:.1f} s vs capacity {self.capacity_s:.1f} s "
            f"({self.over_capacity:.2f}x), utilisation {100 * self.utilisation:.0f} %, {self.stored}/{self.messages} "
            "messages stored"
        )


@contextlib.contextmanager
def _gate_only() -> Iterator[None]:
    """The client before issue 13: no adaptive limit (every worker may send at once), only the Retry-After gate."""
    import bridge.adapters.servicenow as servicenow
    from bridge.adapters.concurrency import AdaptiveLimit

    real = servicenow.AdaptiveLimit

    def fixed(maximum: int) -> AdaptiveLimit:
        return AdaptiveLimit(maximum, initial=maximum, overload_factor=1.0, queueing_factor=1.0)

    servicenow.AdaptiveLimit = fixed  # type: ignore[misc, assignment]
    try:
        yield
    finally:
        servicenow.AdaptiveLimit = real  # type: ignore[misc]


def _get(url: str, path: str, **params: str) -> Any:
    import requests

    response = requests.get(f"{url}{path}", params=params, auth=("admin", "admin"), timeout=60)
    response.raise_for_status()
    return response.json()


def backlog(calls: int, segments: int, workers: int = 64, adaptive: bool = True) -> NodeFigures:
    """Whole calls already on the shard, through the real handler (``loadgen.harness``: moto-free, DynamoDB 5 ms
    per call) and the shard's redelivery semantics (``ShardDriver``); the node in its own process, as ServiceNow is
    remote (its HTTP server does not compete with the handler for this interpreter's CPU)."""
    import time

    from benchmarks import loadgen
    from voicebridge.emulator.process import emulator_subprocess
    from voicebridge.feed.shard import ShardDriver
    from voicebridge.soak.chaos import SoakOptions, build_workload, expected_notes

    options = SoakOptions(calls=calls, segments=segments, fault_rate=0, crash_rate=0, duplicate_rate=0)
    synthetic, records = build_workload(options)
    expected = calls * segments + sum(expected_notes(call) for call in synthetic)
    node = ["--semaphores", str(SEMAPHORES), "--queue-depth", str(QUEUE_DEPTH), "--latency-ms", str(LATENCY_MS)]
    with (
        emulator_subprocess(node) as url,
        contextlib.nullcontext() if adaptive else _gate_only(),
        loadgen.harness(workers, LATENCY_MS, url=url, aws="wire") as subject,
    ):
        driver = ShardDriver(records, lambda event: subject.invoke(event["Records"]), batch_size=100, max_retries=50)
        started = time.perf_counter()
        report = driver.run()
        wall = time.perf_counter() - started
        if report.given_up:
            raise RuntimeError(f"the full-node backlog gave batches up: {report.given_up}")
        capacity = _get(url, "/__emulator/stats")["capacity"]
        stored = _get(url, "/api/now/table/sys_cs_message", sysparm_fields="sys_id", sysparm_limit="10000000")
    return NodeFigures(
        calls,
        workers,
        wall,
        int(capacity["worked"]),
        int(capacity["refused"]),
        float(capacity["busy_seconds"]),
        expected,
        len(stored["result"]),
    )


def node_arguments() -> list[str]:
    return ["--semaphores", str(SEMAPHORES), "--queue-depth", str(QUEUE_DEPTH), "--latency-ms", str(LATENCY_MS)]


def realtime(
    url: str,
    calls: int,
    seconds: float,
    naive: bool = False,
    lead_s: float = 0.5,
    workers: int = 64,
    poll_interval_s: float = 0.0,
) -> tuple[Any, dict[str, Any]]:
    """One real-time lag run (``loadgen.run_realtime``, batch 100, window 0) against the emulator at ``url``: the
    bridge at its defaults, or the naive bridge (records one by one, one request per segment) on the same clients.
    Returns the LoadResult and the emulator's stats for the measured window (the warm-up's are reset)."""
    import requests

    from benchmarks import loadgen
    from benchmarks.naive import NaiveBridge
    from benchmarks.workload import steady

    warm, window = steady(calls, seconds)
    with loadgen.harness(workers, LATENCY_MS, url=url, aws="wire") as subject:
        loadgen.warm_up(subject, warm)
        if naive:
            from bridge import factory

            bridge = NaiveBridge(factory.get_bridge().servicenow, subject.store)

            def invoke(records: list[dict[str, Any]]) -> dict[str, Any]:
                bridge.process(records)
                return {"batchItemFailures": []}

            subject.invoke = invoke  # type: ignore[method-assign]
        requests.post(f"{url}/__emulator/reset", auth=("admin", "admin"), timeout=10).raise_for_status()
        result = loadgen.run_realtime(subject, window, 100, 0.0, lead_s, poll_interval_s)
        stats: dict[str, Any] = _get(url, "/__emulator/stats")
    result.aws = "wire"
    return result, stats


def message_posts(stats: dict[str, Any]) -> int:
    return sum(n for route, n in stats["by_route"].items() if route.startswith("POST") and route.endswith("/messages"))


@dataclass(frozen=True)
class Carried:
    """The most calls whose lag p99 stayed within ``LAG_GOAL_S`` on the ladder (0: not even the first step), and
    whether the ladder's top step still passed (then the figure is a lower bound)."""

    calls: int
    at_top: bool
    runs: tuple[str, ...]
    measured: dict[int, tuple[Any, dict[str, Any]]]  # calls -> (LoadResult, emulator stats) of each step run


LAG_GOAL_S = 2.0


def calls_carried(url: str, steps: tuple[int, ...], seconds: float, naive: bool, lead_s: float) -> Carried:
    """Walk up ``steps`` until the lag p99 passes ``LAG_GOAL_S`` (each step one real-time run against the node)."""
    import math

    carried = 0
    runs: list[str] = []
    measured: dict[int, tuple[Any, dict[str, Any]]] = {}
    for calls in steps:
        result, stats = measured[calls] = realtime(url, calls, seconds, naive=naive, lead_s=lead_s)
        capacity = stats.get("capacity", {})
        runs.append(
            ("naive " if naive else "")
            + result.summary()
            + f"; node worked {capacity.get('worked')} refused {capacity.get('refused')}"
        )
        p99 = result.lag(0.99)
        if math.isnan(p99) or p99 > LAG_GOAL_S:
            return Carried(carried, False, tuple(runs), measured)
        carried = calls
    return Carried(carried, True, tuple(runs), measured)
