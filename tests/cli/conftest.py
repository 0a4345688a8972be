"""Command-line tests: ``voicebridge`` as a user runs it (a process, this interpreter), the emulator as a process."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Protocol

import pytest

from tests.events_builder import call_events
from voicebridge.emulator.process import emulator_subprocess
from voicebridge.feed.fixtures import build_records, to_json_line

REPO_ROOT = Path(__file__).resolve().parents[2]


class Voicebridge(Protocol):
    def __call__(self, *argv: str, env: dict[str, str | None] | None = None) -> subprocess.CompletedProcess[str]: ...


@pytest.fixture
def voicebridge() -> Voicebridge:
    """Run ``python -m voicebridge.cli ARGV`` from the repository root with this test's environment (``env``
    overrides it; a None value removes the variable)."""

    def run(*argv: str, env: dict[str, str | None] | None = None) -> subprocess.CompletedProcess[str]:
        environment = {**os.environ, **(env or {})}
        return subprocess.run(
            [sys.executable, "-m", "voicebridge.cli", *argv],
            cwd=REPO_ROOT,
            env={name: value for name, value in environment.items() if value is not None},
            capture_output=True,
            text=True,
            timeout=120,
        )

    return run


@pytest.fixture(scope="session")
def emulator_url() -> Iterator[str]:
    """A ``voicebridge emulator`` process (user admin, password admin)."""
    with emulator_subprocess() as url:
        yield url


@pytest.fixture
def dead_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def write_call(path: Path, contact_id: str, turns: int = 3) -> str:
    """A finished call as a JSON Lines fixture (capture's format)."""
    path.write_text("\n".join(to_json_line(r) for r in build_records(call_events(contact_id, turns))) + "\n")
    return str(path)


def stderr_lines(result: subprocess.CompletedProcess[str]) -> list[str]:
    """What the command said on stderr, without the handler's JSON log lines."""
    return [line for line in result.stderr.splitlines() if line.strip() and not line.startswith("{")]
