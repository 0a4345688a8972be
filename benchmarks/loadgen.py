"""Load generator: N concurrent synthetic calls on one shard, cut into Kinesis-like batches and fed to the real
Lambda handler (``bridge.handler.lambda_handler``), with the ServiceNow emulator in its own process over HTTP with
``--latency-ms`` (ServiceNow is remote in production) and AWS in process, one of:

- ``moto``: DynamoDB, SQS and Secrets Manager in moto (``mock_aws``). moto's server side runs in this process and
  competes with the handler for the GIL, and ``mock_aws`` also routes every ``requests`` call (ServiceNow's) through
  ``responses``' pass-through: both inflate the handler's CPU;
- ``wire`` (moto-free): DynamoDB is the real boto3 client on an in-process wire (``benchmarks.wire.DynamoWire``)
  that waits ``--dynamodb-ms`` per call (sleep, no CPU); the secret is static; nothing patches ``requests``.

Two modes:
- ``realtime``: records arrive at their stream time mapped to wall time (``approximateArrivalTimestamp`` is that
  wall-clock instant); an event-source-mapping loop invokes the handler when ``batch_size`` records are waiting or
  the oldest has waited ``window_s`` (0: as soon as the previous invocation returns, like
  ``MaximumBatchingWindowInSeconds: 0``; one invocation at a time: ParallelizationFactor 1).
  Lag per transcript = (its ``POST /messages`` returned 200) - (record arrival).
- ``backlog``: the same records already on the stream (stamped with the wall-clock time the run starts), delivered
  as fast as the handler takes them: the sustained throughput of one handler instance.

    .venv/bin/python -m benchmarks.loadgen --calls 300 --seconds 20 --workers 32 --aws wire
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import statistics
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.workload import Stream, batches, stamped, steady
from voicebridge.emulator.process import emulator_subprocess
from voicebridge.feed.replay import (
    ReplayContext,
    ServiceNowTarget,
    ensure_resources,
    environment_overlay,
    offline_handler_environment,
)

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
    aws: str = "moto"
    window_s: float = 0.0
    bridge_lags_ms: list[float] = field(default_factory=list)  # the bridge's own SegmentLag (BatchResult.lag_ms)

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
            f"aws={self.aws}: {self.records} records, "
            f"{self.invocations} invocations in {self.wall_s:.1f}s; {self.segments_per_s:.0f} segments/s, "
            f"{self.transcripts_per_s:.0f} transcripts/s"
        )
        if self.handler_s:  # a window too short to hold a record (tiny sizes) invokes nothing
            text += f"; handler median {statistics.median(self.handler_s):.3f}s max {max(self.handler_s):.3f}s"
        if self.lags_s:
            text += f"; lag p50 {self.lag(0.5):.3f}s p99 {self.lag(0.99):.3f}s over {len(self.lags_s)} transcripts"
        if self.bridge_lags_ms:
            ordered = sorted(self.bridge_lags_ms)
            p99 = ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))]
            text += f"; bridge SegmentLag p50 {statistics.median(ordered):.0f} ms p99 {p99:.0f} ms"
        return text + (f"; {self.failures} batch item failures" if self.failures else "")


def use_store(bridge: Any, store: Any) -> None:
    bridge.store = bridge.processor.store = bridge.processor.runner.store = store


class _NoParking:
    def park(self, items: Sequence[Any]) -> None:
        raise AssertionError(f"the load run parked {len(items)} items")


@dataclass
class Harness:
    """The real handler wired to moto and an emulator, with a hook timing each transcript's POST /messages."""

    workers: int
    store: Any = None  # None: DynamoDB in moto; else the moto-free DynamoContactStore on benchmarks.wire
    arrivals: dict[str, float] = field(default_factory=dict)
    lags_s: list[float] = field(default_factory=list)
    bridge_lags_ms: list[float] = field(default_factory=list)
    measuring: bool = False

    def invoke(self, records: list[dict[str, Any]]) -> dict[str, Any]:
        from bridge.handler import lambda_handler, metrics

        response: dict[str, Any] = lambda_handler({"Records": records}, ReplayContext(60.0))
        # With metrics disabled Powertools never clears its metric set, and once a metric holds 100 values it prints
        # the EMF blob anyway: drop the invocation's metrics (the bench reads BatchResult instead).
        metrics.clear_metrics()
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

        def observe(result: Any) -> None:
            if self.measuring:
                self.bridge_lags_ms.extend(result.lag_ms)

        factory.get_bridge().processor.observers.append(observe)


@contextlib.contextmanager
def harness(
    workers: int, latency_ms: float, url: str | None = None, aws: str = "moto", dynamodb_ms: float = 5.0
) -> Iterator[Harness]:
    from bridge import factory
    from bridge.config import load_settings

    with contextlib.ExitStack() as stack:
        if url is None:
            url = stack.enter_context(emulator_subprocess(["--latency-ms", str(latency_ms)]))
        stack.enter_context(
            environment_overlay(
                {"AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench", "AWS_DEFAULT_REGION": "us-east-1"}
            )
        )
        if aws == "moto":
            from moto import mock_aws

            stack.enter_context(mock_aws())
            environment = ensure_resources("voicebridge-bench-contacts", ServiceNowTarget(url, "admin", "admin"))
        else:
            from benchmarks.wire import TABLE

            environment = {
                "SERVICENOW_URL": url,
                "SERVICENOW_SECRET_ARN": "arn:aws:secretsmanager:us-east-1:123456789012:secret:bench",
                "CONTACT_TABLE": TABLE,
                "PARKING_QUEUE_URL": "https://sqs.us-east-1.amazonaws.com/123456789012/bench",
            }
        environment.update(offline_handler_environment("voicebridge-bench"), MAX_WORKERS=str(workers))
        stack.enter_context(environment_overlay(environment))
        factory.reset()
        stack.callback(factory.reset)
        subject = Harness(workers)
        if aws != "moto":
            from benchmarks.wire import DynamoWire, StaticCredentials, contact_store

            bridge = factory.get_bridge()
            subject.store = contact_store(DynamoWire(latency_s=dynamodb_ms / 1000))
            use_store(bridge, subject.store)
            bridge.servicenow.credentials = StaticCredentials()
            bridge.parking = bridge.processor.parking = _NoParking()
        subject.hook()
        load_settings()
        yield subject


def warm_up(subject: Harness, warm: Stream) -> None:
    """Open every call begun before the window (untimed), through a wide bridge sharing the same table."""
    from bridge import factory
    from bridge.config import load_settings

    wide = factory.build_bridge(dataclasses.replace(load_settings(), max_workers=64))
    if subject.store is not None:
        from benchmarks.wire import StaticCredentials

        use_store(wide, subject.store)
        wide.servicenow.credentials = StaticCredentials()
    try:
        for group in batches(warm.records, 500):
            group = stamped(group)  # arrives now
            result = wide.process(group, 60_000)
            if result.failed_sequence_numbers:
                raise RuntimeError(f"warm-up failed: {result.response()}")
    finally:
        wide.processor.executor.shutdown()  # type: ignore[union-attr]


def run_backlog(subject: Harness, window: Stream, batch_size: int) -> LoadResult:
    groups = batches(stamped(window.records), batch_size)  # the whole backlog is on the stream when the run starts
    handler_s: list[float] = []
    failures = 0
    subject.measuring = True
    started = time.perf_counter()
    for group in groups:
        began = time.perf_counter()
        failures += len(subject.invoke(group)["batchItemFailures"])
        handler_s.append(time.perf_counter() - began)
    wall = time.perf_counter() - started
    subject.measuring = False
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
        bridge_lags_ms=list(subject.bridge_lags_ms),
    )


def run_realtime(
    subject: Harness,
    window: Stream,
    batch_size: int,
    window_s: float = 0.0,
    lead_s: float = 0.5,
    poll_interval_s: float = 0.0,
) -> LoadResult:
    # ``poll_interval_s``: with nothing to read, the mapping looks again this much later (a standard consumer polls
    # an idle shard about once a second, enhanced fan-out pushes records ~70 ms after they are written); 0: it
    # sees each record the instant it arrives. After an invocation returns it always looks again at once.
    # Each record arrives at wall-clock ``origin + t`` (its stream time): that is its approximateArrivalTimestamp,
    # and the loop below never hands a record to the handler before that instant.
    # ``lead_s``: the stream's time 0 lies this far ahead, so the first records are not already late.
    origin = time.time() + lead_s
    arrivals = [origin + t for t in window.times]
    records = [stamped([record], arrived)[0] for record, arrived in zip(window.records, arrivals, strict=True)]
    for record, arrived in zip(records, arrivals, strict=True):
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
            time.sleep(poll_interval_s if poll_interval_s > 0 else max(0.0, arrivals[position] - now))
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
        bridge_lags_ms=list(subject.bridge_lags_ms),
    )


def measure(
    mode: str,
    calls: int,
    seconds: float,
    workers: int,
    batch_size: int = 100,
    latency_ms: float = 100.0,
    aws: str = "moto",
    window_s: float = 0.0,
    dynamodb_ms: float = 5.0,
    lead_s: float = 0.5,
    url: str | None = None,
    poll_interval_s: float = 0.0,
) -> LoadResult:
    """One load run; ``url``: an emulator already running with ``latency_ms`` (None: a fresh one for this run)."""
    warm, window = steady(calls, seconds)
    with harness(workers, latency_ms, url=url, aws=aws, dynamodb_ms=dynamodb_ms) as subject:
        warm_up(subject, warm)
        if mode == "backlog":
            result = run_backlog(subject, window, batch_size)
        else:
            result = run_realtime(subject, window, batch_size, window_s, lead_s, poll_interval_s)
    result.aws = aws
    result.window_s = window_s
    return result


def profile_backlog(
    calls: int,
    seconds: float,
    batch_size: int = 100,
    latency_ms: float = 100.0,
    aws: str = "moto",
    top: int = 10,
    url: str | None = None,
) -> str:
    """cProfile of a backlog run with contacts run inline (one thread, so every call is seen), plus moto's share."""
    import cProfile
    import io
    import pstats

    from bridge import factory

    warm, window = steady(calls, seconds)
    with harness(8, latency_ms, url=url, aws=aws) as subject:
        warm_up(subject, warm)
        factory.get_bridge().processor.executor = None
        groups = batches(stamped(window.records), batch_size)
        profiler = cProfile.Profile()
        profiler.enable()
        for group in groups:
            subject.invoke(group)
        profiler.disable()
    stats = pstats.Stats(profiler)
    out = io.StringIO()
    stats.stream = out  # type: ignore[attr-defined]
    stats.sort_stats("tottime").print_stats(top)
    return out.getvalue() + "\n" + cpu_shares(stats)


def _component(filename: str, name: str) -> str | None:
    if filename.endswith("benchmarks/wire.py"):
        return "stubbed wire (server side)"
    if "/moto/" in filename or "/responses/" in filename or "/werkzeug/" in filename:
        return "moto (in-process AWS)"
    if "/bridge/" in filename:
        return "bridge"
    if "/botocore/" in filename or "/boto3/" in filename:
        return "boto3/botocore (client side)"
    if "/requests/" in filename or "/urllib3/" in filename:
        return "requests/urllib3"
    if "/aws_lambda_powertools/" in filename:
        return "powertools/logging"
    if filename == "~" and ("sleep" in name or "acquire" in name or "recv" in name or "poll" in name):
        return "waiting (sleep/locks/sockets)"
    return None  # the standard library and builtins: charged to whoever called them


def cpu_shares(stats: Any) -> str:
    """CPU (not waiting) by component: tottime summed per package; time in the standard library and builtins
    (json, hmac/hashlib, email headers, logging, urllib, ...) is charged to the nearest caller that is a component
    (its most expensive caller, walked up the call graph)."""
    owners: dict[Any, str] = {}

    def owner(func: Any, seen: frozenset[Any] = frozenset()) -> str:
        if func in owners:
            return owners[func]
        filename, _, name = func
        found = _component(filename, name)
        if found is None:
            callers = stats.stats.get(func, (0, 0, 0, 0, {}))[4]
            candidates = [c for c in callers if c not in seen]
            if candidates:
                top = max(candidates, key=lambda c: callers[c][3] if isinstance(callers[c], tuple) else 0)
                found = owner(top, seen | {func})
            else:
                found = "other (entry points)"
        owners[func] = found
        return found

    shares: dict[str, float] = {}
    for func, (_, _, tottime, _, _) in stats.stats.items():
        key = owner(func)
        shares[key] = shares.get(key, 0.0) + tottime
    busy = sum(v for k, v in shares.items() if not k.startswith("waiting"))
    lines = [
        f"  {k:<32} {v:7.2f}s  {100 * v / busy:5.1f}% of CPU" for k, v in sorted(shares.items()) if "waiting" not in k
    ]
    waiting = shares.get("waiting (sleep/locks/sockets)", 0.0)
    return (
        "CPU by component (tottime, single-threaded profile; stdlib time charged to its caller):\n"
        + "\n".join(lines)
        + f"\n  waiting {waiting:.2f}s"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--mode", choices=("realtime", "backlog"), default="realtime")
    parser.add_argument("--calls", type=int, default=300)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--workers", type=int, default=64, help="MAX_WORKERS (template default 64)")
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--latency-ms", type=float, default=100.0)
    parser.add_argument("--aws", choices=("moto", "wire"), default="moto", help="wire: moto-free (see above)")
    parser.add_argument("--dynamodb-ms", type=float, default=5.0, help="wire: DynamoDB latency per call")
    parser.add_argument(
        "--window", type=float, default=0.0, help="batching window (s), realtime mode (template default 0)"
    )
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args(argv)
    from benchmarks.fakeworld import quiet_logs

    quiet_logs()
    if args.profile:
        print(profile_backlog(args.calls, args.seconds, args.batch_size, args.latency_ms, args.aws))
        return 0
    result = measure(
        args.mode,
        args.calls,
        args.seconds,
        args.workers,
        args.batch_size,
        args.latency_ms,
        args.aws,
        args.window,
        args.dynamodb_ms,
    )
    print(result.summary())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
