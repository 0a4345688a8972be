"""Cold import: ``import bridge.handler`` vs bare ``import boto3, requests``, each in a fresh interpreter (wall time
of the whole ``python -c``, medians of alternating runs)."""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HANDLER = "import bridge.handler"
BASELINE = "import boto3, requests"
NOTHING = "pass"


@dataclass
class ImportFigures:
    handler_ms: float
    baseline_ms: float
    interpreter_ms: float
    runs: int

    @property
    def ratio(self) -> float:
        return self.handler_ms / self.baseline_ms


def _once(code: str) -> float:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "functions" / "bridge"), "POWERTOOLS_METRICS_DISABLED": "true"}
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], check=True, env=env, cwd=ROOT)
    return (time.perf_counter() - started) * 1000


def run(runs: int = 7) -> ImportFigures:
    for code in (HANDLER, BASELINE):
        _once(code)  # warm the file-system cache and .pyc files
    samples: dict[str, list[float]] = {HANDLER: [], BASELINE: [], NOTHING: []}
    for _ in range(runs):
        for code in samples:
            samples[code].append(_once(code))
    return ImportFigures(
        statistics.median(samples[HANDLER]),
        statistics.median(samples[BASELINE]),
        statistics.median(samples[NOTHING]),
        runs,
    )


def importtime_top(code: str = HANDLER, top: int = 12) -> str:
    """``-X importtime``: the heaviest modules by cumulative microseconds (what to make lazy)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT / "functions" / "bridge")}
    result = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", code], env=env, cwd=ROOT, capture_output=True, text=True, check=True
    )
    rows = []
    for line in result.stderr.splitlines():
        parts = line.split("|")
        if len(parts) == 3 and parts[1].strip().isdigit():
            rows.append((int(parts[1]), parts[2].rstrip()))
    rows.sort(reverse=True)
    return "\n".join(f"  {cumulative / 1000:8.1f} ms {name}" for cumulative, name in rows[:top])


if __name__ == "__main__":
    figures = run()
    print(figures, f"ratio {figures.ratio:.2f}")
    print(importtime_top())
