"""``voicebridge connect`` as a user runs it (a subprocess): it prints where it listens and serves the file; a
file it cannot serve or a port in use is one line on stderr and exit status 2."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.connect.conftest import client

pytestmark = pytest.mark.integration

CONTACTS = Path(__file__).resolve().parents[2] / "events" / "connect" / "full-call.json"
CONTACT = "5c3f0c1e-8c1a-4d8e-9b7a-2f1e3d4c5b6a"
INSTANCE = "0f4c2a7e-3b1d-4e5f-8a9b-6c7d8e9f0a1b"
COMMAND = [sys.executable, "-m", "voicebridge.cli", "connect"]


def test_it_prints_its_url_and_serves_the_file() -> None:
    process = subprocess.Popen(
        [*COMMAND, "--port", "0", "--throttle-every", "2", str(CONTACTS)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline().strip()
        assert line.startswith("listening on http://127.0.0.1:")
        url = line.removeprefix("listening on ")
        connect = client("connect", url)
        contact = connect.describe_contact(InstanceId=INSTANCE, ContactId=CONTACT)["Contact"]
        assert contact["CustomerEndpoint"]["Address"] == "+12025550147"
        with pytest.raises(connect.exceptions.ThrottlingException):  # the second request: --throttle-every 2
            connect.describe_contact(InstanceId=INSTANCE, ContactId=CONTACT)
    finally:
        process.terminate()
        assert process.wait(timeout=10) == 0


def run(*arguments: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*COMMAND, *arguments], capture_output=True, text=True, timeout=60, check=False)


def test_a_file_it_cannot_serve_is_one_line_and_exit_2(tmp_path: Path) -> None:
    bad = tmp_path / "contacts.json"
    bad.write_text('{"contacts": {"c1": {"Id": "c2"}}}', encoding="utf-8")

    result = run("--port", "0", str(bad))

    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.splitlines() == [f"voicebridge connect: {bad}: contacts.c1: Id 'c2' differs from its key"]


def test_a_port_in_use_is_one_line_and_exit_2() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]

        result = run("--port", str(port))

    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        f"voicebridge connect: --port {port}: 127.0.0.1:{port} is already in use; choose another port (0 picks a "
        "free one)"
    ]
