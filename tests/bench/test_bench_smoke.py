"""``make bench`` keeps working: ``python -m benchmarks --smoke`` (the same steps at tiny sizes) must run to the end
and produce every row of the table, the profiles and the results file. Figures are not checked: at these sizes they
mean nothing, and a timing assertion would make the suite flaky."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]

# Every figure the bench reports (issue 5): the row's opening words and how many rows carry them.
EXPECTED_ROWS = {
    "ServiceNow requests / 100-record batch": 2,  # realistic, dense
    "DynamoDB calls / batch": 1,
    "handler CPU / transcript": 4,  # {5, 50} calls x {fakes, real clients on a stubbed wire}
    "segments/s, one instance": 3,  # backlog: moderate x {moto, wire}, large at batch 500 (64 workers: the default)
    "segment lag p50/p99": 4,  # {moderate, large} x {moto, wire}
    "backlog of ": 1,  # through a one-transaction-per-session ServiceNow (issue 9)
    "full ServiceNow node": 1,  # issue 13: a backlog through a full node, adaptive limit vs gate only
    "calls carried by one ServiceNow node": 1,  # ours vs naive at p99 lag <= 2 s
    "ServiceNow requests per transcript at equal load": 1,
    "transcripts per POST /messages as ServiceNow slows": 1,
    "segment lag with enhanced fan-out": 1,
    "cold import": 1,
    "emulator POST /messages": 1,
}
VERDICTS = {"met", "NOT MET", "report"}


def table_rows(report: str) -> list[list[str]]:
    rows = [line for line in report.splitlines() if line.startswith("| ")]
    cells = [[cell.strip() for cell in line.strip().strip("|").split("|")] for line in rows]
    return [row for row in cells if row[0] != "figure"]


def test_the_bench_smoke_produces_every_row(tmp_path: Path) -> None:
    results = tmp_path / "RESULTS.md"
    environment = {key: value for key, value in os.environ.items() if not key.startswith("AWS_ENDPOINT")}
    finished = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--smoke", "--results", str(results)],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=110,  # a hang guard, not a performance goal
    )
    assert finished.returncode == 0, finished.stderr[-3000:]
    rows = table_rows(finished.stdout)
    found = {prefix: sum(1 for row in rows if row[0].startswith(prefix)) for prefix in EXPECTED_ROWS}
    assert found == EXPECTED_ROWS, finished.stdout
    assert len(rows) == sum(EXPECTED_ROWS.values()), "a row the test does not know: add it to EXPECTED_ROWS"
    for figure, measured, goal, verdict in rows:
        assert measured and goal and verdict in VERDICTS, figure
        assert "nan" not in measured, f"{figure}: no sample at smoke size ({measured})"
    # the steps after the table: every load run's summary, the profiles (the smoke run always profiles), the file
    assert finished.stdout.count("\n  backlog calls=") == 3 and finished.stdout.count("\n  realtime calls=") == 4
    assert finished.stdout.count("\n  node adaptive:") == 1 and finished.stdout.count("\n  node gate only:") == 1
    assert finished.stdout.count("CPU by component (tottime") == 3
    assert finished.stdout.rstrip().splitlines()[-1].startswith("total ")
    saved = results.read_text()
    assert saved.startswith("# `make bench` results") and "make bench ARGS=--smoke" in saved
    assert table_rows(saved) == rows
