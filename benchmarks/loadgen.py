"""Load generator: N concurrent synthetic calls on one shard, cut into Kinesis-like batches and fed to the real
Lambda handler (``bridge.handler.lambda_handler``), with AWS in process (moto: DynamoDB, SQS, Secrets Manager) and
the ServiceNow emulator in its own process over HTTP with ``--latency-ms`` (ServiceNow is remote in production).

Two modes:
- ``realtime``: records arrive at their stream time mapped to wall time; an event-source-mapping loop invokes the
  handler when ``batch_size`` records are waiting or the oldest has waited ``window_s`` (one invocation at a time:
  ParallelizationFactor 1). Lag per transcript = (its ``POST /messages`` returned 200) - (record arrival).
- ``backlog``: the same records already on the stream, delivered as fast as the handler takes them: the sustained
  throughput of one handler instance.

    .venv/bin/python -m benchmarks.loadgen --calls 300 --seconds 20 --workers 16
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import os
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.workload import Stream, batches, steady
from voicebridge.replay import ReplayContext, ServiceNowTarget, ensure_resources

ROOT = Path(__file__).resolve().parent.parent


@dataclass
class LoadResult:
    mode: str
    calls: int
    workers: int
    batch_size: int
    records: int
    segments: int
    transcripts: int
    wall_s: float
    invocations: int
    lags_s: list[float] = field(default_factory=list)
    handler_s: list[float] = field(default_factory=list)
    failures: int = 0
    store: str = "moto"
    window_s: float = 0.0

    @property
    def segments_per_s(self) -> float:
        return self.segments / self.wall_s

    @property
    def transcripts_per_s(self) -> float:
        return self.transcripts / self.wall_s

    def lag(self, quantile: float) -> float:
        if not self.lags_s:
            return float("nan")
        ordered = sorted(self.lags_s)
        return ordered[min(len(ordered) - 1, int(quantile * len(ordered)))]

    def summary(self) -> str:
        text = (
            f"{self.mode} calls={self.calls} workers={self.workers} batch={self.batch_size} window={self.window_s}s "
            f"store={self.store}: {self.records} records, "
            f"{self.invocations} invocations in {self.wall_s:.1f}s; {self.segments_per_s:.0f} segments/s, "
            f"{self.transcripts_per_s:.0f} transcripts/s; handler median {statistics.median(self.handler_s):.3f}s"
            f" max {max(self.handler_s):.3f}s"
        )
        if self.lags_s:
            text += f"; lag p50 {self.lag(0.5):.3f}s p99 {self.lag(0.99):.3f}s over {len(self.lags_s)} transcripts"
        return text + (f"; {self.failures} batch item failures" if self.failures else "")


@contextlib.contextmanager
def emulator_process(latency_ms: float) -> Iterator[str]:
    """``voicebridge emulator`` in its own process (its CPU does not compete with the handler for the GIL)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT / "src"), os.environ.get("PYTHONPATH")]))}
    command = [sys.executable, "-m", "voicebridge.cli", "emulator", "--port", "0", "--latency-ms", str(latency_ms)]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert process.stdout is not None
        line = process.stdout.readline().strip()
        if not line.startswith("listening on "):
            raise RuntimeError(f"emulator did not start: {line!r}")
        yield line[len("listening on ") :]
    finally:
        process.terminate()
        process.wait(timeout=10)


@contextlib.contextmanager
def _environment(values: dict[str, str]) -> Iterator[None]:
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


class LatentStore:
    """``FakeContactStore`` behind a lock, each call taking ``latency_s`` (a DynamoDB round trip) without CPU."""

    def __init__(self, latency_s: float = 0.005) -> None:
        from tests.fakes import FakeContactStore

        self.fake = FakeContactStore()
        self.latency_s = latency_s
        self.lock = threading.Lock()

    def load_many(self, contact_ids: Sequence[str]) -> Any:
        time.sleep(self.latency_s)
        with self.lock:
            return self.fake.load_many(contact_ids)

    def claim(self, contact_id: str, instance_id: str, now: int) -> Any:
        time.sleep(self.latency_s)
        with self.lock:
            return self.fake.claim(contact_id, instance_id, now)

    def save(self, state: Any, expected_version: int) -> Any:
        time.sleep(self.latency_s)
        with self.lock:
            return self.fake.save(state, expected_version)


def use_store(bridge: Any, store: Any) -> None:
    bridge.store = bridge.processor.store = bridge.processor.runner.store = store


@dataclass
class Harness:
    """The real handler wired to moto and an emulator, with a hook timing each transcript's POST /messages."""

    workers: int
    store: Any = None  # None: DynamoDB in moto; else a LatentStore
    arrivals: dict[str, float] = field(default_factory=dict)
    lags_s: list[float] = field(default_factory=list)
    measuring: bool = False

    def invoke(self, records: list[dict[str, Any]]) -> dict[str, Any]:
        from bridge.handler import lambda_handler

        response: dict[str, Any] = lambda_handler({"Records": records}, ReplayContext(60.0))
        return response

    def hook(self) -> None:
        from bridge import factory

        client = factory.get_bridge().servicenow
        original = client.post_messages
        lock = threading.Lock()

        def timed(interaction_id: str, messages: Sequence[Any]) -> Any:
            result = original(interaction_id, messages)
            done = time.time()
            if self.measuring:
                with lock:
                    for message in messages:
                        arrived = self.arrivals.get(message.sequence_number)
                        if arrived is not None and not message.internal:
                            self.lags_s.append(done - arrived)
            return result

        client.post_messages = timed


@contextlib.contextmanager
def harness(workers: int, latency_ms: float, url: str | None = None, store: str = "moto") -> Iterator[Harness]:
    from moto import mock_aws

    from bridge import factory
    from bridge.config import load_settings

    with contextlib.ExitStack() as stack:
        if url is None:
            url = stack.enter_context(emulator_process(latency_ms))
        stack.enter_context(
            _environment(
                {"AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench", "AWS_DEFAULT_REGION": "us-east-1"}
            )
        )
        stack.enter_context(mock_aws())
        environment = ensure_resources("voicebridge-bench-contacts", ServiceNowTarget(url, "admin", "admin"))
        environment.update(
            POWERTOOLS_SERVICE_NAME="voicebridge",
            POWERTOOLS_METRICS_NAMESPACE="voicebridge-bench",
            POWERTOOLS_METRICS_DISABLED="true",
            CALLER_LOOKUP="none",
            AGENT_LOOKUP="none",
            CONNECT_INSTANCE_ALIAS="example",
            MAX_WORKERS=str(workers),
        )
        stack.enter_context(_environment(environment))
        factory.reset()
        stack.callback(factory.reset)
        subject = Harness(workers, LatentStore() if store == "fake" else None)
        if subject.store is not None:
            use_store(factory.get_bridge(), subject.store)
        subject.hook()
        load_settings()
        yield subject


def warm_up(subject: Harness, warm: Stream) -> None:
    """Open every call begun before the window (untimed), through a wide bridge sharing the same table."""
    from bridge import factory
    from bridge.config import load_settings

    wide = factory.build_bridge(dataclasses.replace(load_settings(), max_workers=64))
    if subject.store is not None:
        use_store(wide, subject.store)
    try:
        for group in batches(warm.records, 500):
            result = wide.process(group, 60_000)
            if result.failed_sequence_numbers:
                raise RuntimeError(f"warm-up failed: {result.response()}")
    finally:
        wide.processor.executor.shutdown()  # type: ignore[union-attr]


def run_backlog(subject: Harness, window: Stream, batch_size: int) -> LoadResult:
    groups = batches(window.records, batch_size)
    handler_s: list[float] = []
    failures = 0
    started = time.perf_counter()
    for group in groups:
        began = time.perf_counter()
        failures += len(subject.invoke(group)["batchItemFailures"])
        handler_s.append(time.perf_counter() - began)
    wall = time.perf_counter() - started
    return LoadResult(
        "backlog",
        window.calls,
        subject.workers,
        batch_size,
        len(window.records),
        window.segments(),
        window.transcripts(),
        wall,
        len(groups),
        handler_s=handler_s,
        failures=failures,
    )


def run_realtime(subject: Harness, window: Stream, batch_size: int, window_s: float = 1.0) -> LoadResult:
    records = [dict(r, kinesis=dict(r["kinesis"])) for r in window.records]
    origin = time.time() + 0.5
    arrivals = [origin + t for t in window.times]
    for record, arrived in zip(records, arrivals, strict=True):
        record["kinesis"]["approximateArrivalTimestamp"] = arrived
        subject.arrivals[record["kinesis"]["sequenceNumber"]] = arrived
    subject.measuring = True
    handler_s: list[float] = []
    failures = invocations = position = 0
    while position < len(records):
        now = time.time()
        available = 0
        while position + available < len(records) and arrivals[position + available] <= now:
            available += 1
            if available == batch_size:
                break
        if available == 0:
            time.sleep(max(0.0, arrivals[position] - now))
            continue
        last = position + available >= len(records)
        if available < batch_size and not last and now - arrivals[position] < window_s:
            due = min(arrivals[position] + window_s, arrivals[min(len(records) - 1, position + batch_size - 1)])
            time.sleep(max(0.0, min(due, arrivals[position + available]) - now))
            continue
        group = records[position : position + available]
        began = time.perf_counter()
        failures += len(subject.invoke(group)["batchItemFailures"])
        handler_s.append(time.perf_counter() - began)
        invocations += 1
        position += available
    subject.measuring = False
    wall = time.time() - origin
    return LoadResult(
        "realtime",
        window.calls,
        subject.workers,
        batch_size,
        len(records),
        window.segments(),
        window.transcripts(),
        wall,
        invocations,
        lags_s=list(subject.lags_s),
        handler_s=handler_s,
        failures=failures,
    )


def measure(
    mode: str,
    calls: int,
    seconds: float,
    workers: int,
    batch_size: int = 100,
    latency_ms: float = 100.0,
    store: str = "moto",
    window_s: float = 1.0,
) -> LoadResult:
    warm, window = steady(calls, seconds)
    with harness(workers, latency_ms, store=store) as subject:
        warm_up(subject, warm)
        if mode == "backlog":
            result = run_backlog(subject, window, batch_size)
        else:
            result = run_realtime(subject, window, batch_size, window_s)
    result.store = store
    result.window_s = window_s
    return result


def profile_backlog(calls: int, seconds: float, batch_size: int = 100, latency_ms: float = 100.0) -> str:
    """cProfile of a backlog run with contacts run inline (one thread, so every call is seen), plus moto's share."""
    import cProfile
    import io
    import pstats

    from bridge import factory

    warm, window = steady(calls, seconds)
    with harness(8, latency_ms) as subject:
        warm_up(subject, warm)
        factory.get_bridge().processor.executor = None
        profiler = cProfile.Profile()
        profiler.enable()
        for group in batches(window.records, batch_size):
            subject.invoke(group)
        profiler.disable()
    stats = pstats.Stats(profiler)
    out = io.StringIO()
    stats.stream = out  # type: ignore[attr-defined]
    stats.sort_stats("cumulative").print_stats(10)
    return out.getvalue() + "\n" + cpu_shares(stats)


def cpu_shares(stats: Any) -> str:
    """CPU (not waiting) by component: tottime summed per package."""
    shares: dict[str, float] = {}
    for (filename, _, name), (_, _, tottime, _, _) in stats.stats.items():
        if "/moto/" in filename or "/responses/" in filename or "/werkzeug/" in filename:
            key = "moto (in-process AWS)"
        elif "/bridge/" in filename:
            key = "bridge"
        elif "/botocore/" in filename or "/boto3/" in filename:
            key = "boto3/botocore (client side)"
        elif "/requests/" in filename or "/urllib3/" in filename or "/http/" in filename:
            key = "requests/urllib3/http"
        elif "/aws_lambda_powertools/" in filename or "/logging/" in filename:
            key = "powertools/logging"
        elif filename == "~" and ("sleep" in name or "acquire" in name or "recv" in name or "poll" in name):
            key = "waiting (sleep/locks/sockets)"
        else:
            key = "other"
        shares[key] = shares.get(key, 0.0) + tottime
    busy = sum(v for k, v in shares.items() if not k.startswith("waiting"))
    lines = [
        f"  {k:<32} {v:7.2f}s  {100 * v / busy:5.1f}% of CPU" for k, v in sorted(shares.items()) if "waiting" not in k
    ]
    waiting = shares.get("waiting (sleep/locks/sockets)", 0.0)
    return "CPU by component (tottime, single-threaded profile):\n" + "\n".join(lines) + f"\n  waiting {waiting:.2f}s"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--mode", choices=("realtime", "backlog"), default="realtime")
    parser.add_argument("--calls", type=int, default=300)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--latency-ms", type=float, default=100.0)
    parser.add_argument("--store", choices=("moto", "fake"), default="moto", help="fake: in-memory, 5 ms per call")
    parser.add_argument("--window", type=float, default=1.0, help="batching window (s), realtime mode")
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args(argv)
    from benchmarks.fakeworld import quiet_logs

    quiet_logs()
    if args.profile:
        print(profile_backlog(args.calls, args.seconds, args.batch_size, args.latency_ms))
        return 0
    result = measure(
        args.mode, args.calls, args.seconds, args.workers, args.batch_size, args.latency_ms, args.store, args.window
    )
    print(result.summary())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
