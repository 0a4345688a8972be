"""``voicebridge emulator`` as a user runs it (a subprocess): a careless value or a port/database it cannot use is
a line on stderr naming the flag and what would be valid, exit status 2, never a traceback."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from voicebridge.emulator.process import emulator_subprocess

pytestmark = pytest.mark.integration


def run_emulator(*arguments: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "voicebridge.cli", "emulator", *arguments]
    return subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)


def refused(*arguments: str) -> str:
    """The last stderr line of a start that must fail with exit status 2 and no traceback."""
    result = run_emulator(*arguments)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr and result.stdout == ""
    return result.stderr.strip().splitlines()[-1]


@pytest.mark.parametrize(
    ("arguments", "expected"),
    [
        (["--port", "99999"], ["--port", "an integer from 0 to 65535", "99999"]),
        (["--port", "http"], ["--port", "an integer from 0 to 65535"]),
        (["--session-queue", "-1"], ["--session-queue", "an integer of at least 0"]),
        (["--semaphores", "0"], ["--semaphores", "an integer of at least 1"]),
        (["--queue-depth", "many"], ["--queue-depth", "an integer of at least 0"]),
        (["--filtered-reads", "incident"], ["--filtered-reads", "sys_cs_message", "unknown: incident"]),
        (["--rate-limit", "100/hour"], ["--rate-limit", "N/SECONDS"]),
        (["--latency-ms", "-5"], ["--latency-ms", "a number at least 0"]),
        (["--token-ttl", "0"], ["--token-ttl", "a number greater than 0"]),
        (["--fault-rate", "2"], ["--fault-rate", "at most 1"]),
    ],
)
def test_bad_values_name_the_flag_and_what_is_valid(arguments: list[str], expected: list[str]) -> None:
    line = refused(*arguments)
    for part in expected:
        assert part in line


@pytest.mark.parametrize(
    ("arguments", "expected"),
    [
        (["--session-queue", "3"], "--session-queue needs --sessions"),
        (["--queue-depth", "3"], "--queue-depth needs --semaphores"),
    ],
)
def test_flags_that_need_another_say_so(arguments: list[str], expected: str) -> None:
    result = run_emulator("--port", "0", *arguments)
    lines = result.stderr.splitlines()
    assert result.returncode == 2 and len(lines) == 1 and lines[0].startswith(f"voicebridge emulator: {expected}")


def test_a_port_in_use() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_emulator("--port", str(port))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.splitlines() == [
        f"voicebridge emulator: --port {port}: 127.0.0.1:{port} is already in use; choose another port "
        "(0 picks a free one)"
    ]


def test_db_in_a_missing_folder(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-folder" / "emulator.db"
    result = run_emulator("--port", "0", "--db", str(missing))
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        f"voicebridge emulator: --db {missing}: the folder {missing.parent} does not exist; create it, "
        "or omit --db (in memory)"
    ]
    assert not missing.parent.exists()


def test_db_that_is_not_a_database(tmp_path: Path) -> None:
    not_a_db = tmp_path / "notes.txt"
    not_a_db.write_text("hello, this is not SQLite\n" * 100)
    result = run_emulator("--port", "0", "--db", str(not_a_db))
    assert result.returncode == 2 and len(result.stderr.splitlines()) == 1
    assert result.stderr.startswith(f"voicebridge emulator: --db {not_a_db}: cannot open it as an SQLite database")


def test_the_new_flags_start_a_node_like_emulator() -> None:
    arguments = ["--sessions", "--session-queue", "2", "--semaphores", "4", "--queue-depth", "8"]
    arguments += ["--filtered-reads", "sys_cs_message", "--rate-limit", "1000/3600"]
    with emulator_subprocess(arguments) as url:
        stats = requests.get(url + "/__emulator/stats", timeout=10).json()
    assert stats["sessions"]["queue_limit"] == 2
    assert (stats["capacity"]["semaphores"], stats["capacity"]["queue_depth"]) == (4, 8)
