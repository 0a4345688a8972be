"""``make bench``: every figure of issue 5 in one table (``--quick`` for a fast, noisier run).

.venv/bin/python -m benchmarks [--quick] [--workers 64] [--no-profile]
"""

from __future__ import annotations

import argparse
import datetime
import math
import os
import platform
import sys
import time

from benchmarks import coldimport, counts, cpu, loadgen
from benchmarks.fakeworld import quiet_logs


def machine_line() -> str:
    model = platform.processor() or "unknown CPU"
    try:
        with open("/proc/cpuinfo") as info:
            model = next(line.split(":", 1)[1].strip() for line in info if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return (
        f"machine: {model}, {os.cpu_count()} cores, Python {platform.python_version()}, {platform.system()} "
        f"{platform.release()}, {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC"
    )


def real_counts() -> dict[str, int]:
    """The realistic 100-record window through the real handler (moto + emulator, no latency)."""
    from bridge import factory
    from bridge.processor import BatchResult

    before, window = counts.realistic_window()
    with loadgen.harness(8, 0.0) as subject:
        bridge = factory.get_bridge()
        subject.invoke(before)
        seen: list[BatchResult] = []
        bridge.processor.observers.append(seen.append)
        calls = dict(bridge.store.calls)
        subject.invoke(window)
        result = seen[-1]
        return {
            "servicenow": sum(o.servicenow_requests for o in result.outcomes),
            "contacts": len(result.outcomes),
            "writes_touched": sum(1 for o in result.outcomes if o.state_writes),
            "BatchGetItem": bridge.store.calls["BatchGetItem"] - calls["BatchGetItem"],
            "PutItem": bridge.store.calls["PutItem"] - calls["PutItem"],
        }


def verdict(ok: bool) -> str:
    return "met" if ok else "NOT MET"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="shorter runs (~1.5 min), noisier figures")
    parser.add_argument("--workers", type=int, default=64, help="MAX_WORKERS for the lag runs (default 64)")
    parser.add_argument("--no-profile", action="store_true", help="skip the profiles of missed goals")
    args = parser.parse_args(argv)
    os.environ["POWERTOOLS_METRICS_DISABLED"] = "true"  # no EMF blobs on stdout
    quiet_logs()
    quick = args.quick
    began = time.perf_counter()
    rows: list[tuple[str, str, str, str]] = []
    notes: list[str] = []
    missed: list[str] = []

    def row(figure: str, value: str, goal: str, ok: bool | None) -> None:
        rows.append((figure, value, goal, "report" if ok is None else verdict(ok)))

    def progress(text: str) -> None:
        print(f"[{time.perf_counter() - began:5.0f}s] {text}", file=sys.stderr, flush=True)

    progress("counts")
    batch = counts.run()
    real = real_counts()
    for name, measured in batch.items():
        row(
            f"ServiceNow requests / 100-record batch, 5 live calls ({name}: {measured.transcripts} transcripts)",
            f"{measured.ours_requests} vs naive {measured.naive_requests} (1/{1 / measured.ratio:.1f})",
            "<= 1/15 of naive",
            measured.ratio <= 1 / 15,
        )
        if measured.ratio > 1 / 15:
            missed.append("requests")
    row(
        "DynamoDB calls / batch (real handler, moto, realistic window)",
        f"{real['BatchGetItem']} BatchGetItem + {real['PutItem']} PutItem for {real['contacts']} contacts "
        f"(naive {batch['realistic'].naive_reads} reads + {batch['realistic'].naive_writes} writes)",
        "1 read + <= 1 write per touched contact",
        real["BatchGetItem"] == 1 and real["PutItem"] <= real["contacts"],
    )

    progress("handler CPU over fakes")
    figures = cpu.run(runs=3 if quick else 5)
    cpu_ok = figures.ours_us <= 50 and figures.ratio <= 0.1
    row(
        "handler CPU / transcript, network excluded (fakes, 50 calls, batches of 100)",
        f"{figures.ours_us:.0f} us vs naive {figures.naive_us:.0f} us ({figures.ratio:.2f}x)",
        "<= 50 us and <= 1/10 of naive",
        cpu_ok,
    )
    if not cpu_ok:
        missed.append("cpu")

    progress("sustained throughput (backlog)")
    seconds = 5.0 if quick else 10.0
    best: loadgen.LoadResult | None = None
    for workers in (8, 64) if quick else (8, 16, 32, 64):
        result = loadgen.measure("backlog", 300, seconds, workers)
        notes.append(result.summary())
        progress(result.summary())
        if best is None or result.segments_per_s > best.segments_per_s:
            best = result
    assert best is not None
    fake = loadgen.measure("backlog", 300, seconds, 64, store="fake")
    notes.append(fake.summary())
    progress(fake.summary())
    big = loadgen.measure("backlog", 1000, seconds, 64, batch_size=500)
    notes.append(big.summary())
    progress(big.summary())
    for label, result in (("DynamoDB in moto", best), ("DynamoDB fake 5 ms/call", fake), ("DynamoDB in moto", big)):
        row(
            f"segments/s, one instance, 100 ms ServiceNow, backlog {result.calls} calls, batch {result.batch_size}, "
            f"MAX_WORKERS {result.workers} ({label})",
            f"{result.segments_per_s:.0f} segments/s ({result.transcripts_per_s:.0f} transcripts/s)",
            ">= 1000",
            result.segments_per_s >= 1000,
        )
        if result.segments_per_s < 1000:
            missed.append("throughput")

    progress("lag (real time)")
    lag_seconds = 8.0 if quick else 15.0
    for calls in (300, 1000):
        for store in ("moto", "fake"):
            result = loadgen.measure("realtime", calls, lag_seconds, args.workers, store=store)
            notes.append(result.summary())
            progress(result.summary())
            label = "DynamoDB in moto" if store == "moto" else "DynamoDB fake 5 ms/call"
            p99 = result.lag(0.99)
            row(
                f"segment lag p50/p99, {calls} calls, 100 ms, window 1 s, MAX_WORKERS {args.workers} ({label})",
                f"{result.lag(0.5):.2f} s / {p99:.2f} s ({len(result.lags_s)} transcripts)",
                "p99 <= 1 s",
                not math.isnan(p99) and p99 <= 1.0,
            )
            if math.isnan(p99) or p99 > 1.0:
                missed.append(f"lag-{store}")

    progress("cold import")
    imports = coldimport.run(runs=7)
    row(
        "cold import: bridge.handler vs import boto3, requests (fresh interpreter, wall)",
        f"{imports.handler_ms:.0f} ms vs {imports.baseline_ms:.0f} ms ({imports.ratio:.2f}x)",
        "<= 1.3x",
        imports.ratio <= 1.3,
    )

    progress("emulator")
    from benchmarks import emulator_bench

    emulator = emulator_bench.run(duration_s=2.0 if quick else 3.0)
    row(
        "emulator POST /messages req/s (16 keep-alive clients, 10 msgs each; subprocess / in-process)",
        f"{emulator['requests_per_s']:.0f} / {emulator['in_process']['requests_per_s']:.0f} req/s",
        "report",
        None,
    )

    print(machine_line())
    print(f"make bench{' --quick' if quick else ''}: medians of {figures.runs} runs (CPU), 7 runs (import); load runs")
    print("are single runs whose percentiles pool every transcript; ServiceNow = emulator in its own process.")
    widths = [max(len(r[i]) for r in rows + [("figure", "measured", "goal", "")]) for i in range(4)]
    header = ("figure", "measured", "goal", "")
    print("| " + " | ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)) + " |")
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for r in rows:
        print("| " + " | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) + " |")
    print("\nload runs:")
    for note in notes:
        print("  " + note)
    if missed and not args.no_profile:
        print("\nprofiles (cProfile, top 10 by cumulative time) for the goals not met:")
        if "cpu" in missed:
            print("-- handler CPU over fakes (one thread):")
            print(cpu.profile_ours())
        if "throughput" in missed or "lag-moto" in missed:
            print("-- backlog through the real handler with moto (contacts inline, one thread):")
            print(loadgen.profile_backlog(300, 5.0))
    print(f"total {time.perf_counter() - began:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
