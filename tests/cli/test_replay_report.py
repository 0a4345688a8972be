"""``voicebridge replay`` through the real handler over real HTTP: the summary says why contacts were given up or
parked, and a replay that would open a second interaction for a contact says so before it does."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
import requests

from tests.cli.conftest import Voicebridge, stderr_lines, write_call

pytestmark = pytest.mark.integration


def why_lines(stdout: str) -> list[str]:
    lines = stdout.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("why "))
    return lines[start + 1 :]


def interactions(emulator_url: str, contact_id: str) -> list[dict[str, str]]:
    response = requests.get(
        f"{emulator_url}/api/now/table/interaction",
        params={"sysparm_query": f"client_session_id={contact_id}"},
        auth=("admin", "admin"),
        timeout=10,
    )
    response.raise_for_status()
    rows: list[dict[str, str]] = response.json()["result"]
    return rows


def test_a_dead_servicenow_is_named_as_the_reason_for_giving_up(
    voicebridge: Voicebridge, tmp_path: Path, dead_port: int
) -> None:
    fixture = write_call(tmp_path / "call.jsonl", "c-dead", turns=2)
    url = f"http://127.0.0.1:{dead_port}"
    result = voicebridge(
        "replay", fixture, "--servicenow-url", url, "--user", "u", "--password", "p", "--max-retries", "1"
    )
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "given up 1" in result.stdout
    (why,) = why_lines(result.stdout)
    assert why.startswith("  servicenow_unavailable x")
    assert "ServiceNow unreachable: connection refused (create_interaction)" in why
    # The check for existing interactions could not be made either: one line, and the replay went on.
    assert stderr_lines(result) == [
        "voicebridge replay: could not check for existing interactions: ServiceNow unreachable: connection refused "
        "(find_interaction)"
    ]


def test_wrong_credentials_are_named_as_the_reason_for_parking(
    voicebridge: Voicebridge, tmp_path: Path, emulator_url: str
) -> None:
    contact = f"c-401-{uuid.uuid4().hex[:8]}"
    fixture = write_call(tmp_path / "call.jsonl", contact, turns=2)
    result = voicebridge("replay", fixture, "--servicenow-url", emulator_url, "--user", "admin", "--password", "wrong")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "parked 4 (configuration=4)" in result.stdout
    (why,) = why_lines(result.stdout)
    assert why.startswith("  configuration x1: 401 ")
    assert "rejected the credentials" in why and "(create_interaction, transaction " in why
    assert "(User Not Authenticated: Invalid user name or password)" in why  # ServiceNow's own words
    assert "wrong" not in why  # never a secret
    # The check for existing interactions could not read either; it says so and the replay went on.
    (line,) = stderr_lines(result)
    assert line.startswith("voicebridge replay: could not check for existing interactions: 401 ")
    assert interactions(emulator_url, contact) == []


def test_a_second_replay_without_table_warns_before_it_duplicates(
    voicebridge: Voicebridge, tmp_path: Path, emulator_url: str
) -> None:
    contact = f"c-again-{uuid.uuid4().hex[:8]}"
    fixture = write_call(tmp_path / "call.jsonl", contact, turns=2)
    target = ["--servicenow-url", emulator_url, "--user", "admin", "--password", "admin"]

    first = voicebridge("replay", fixture, *target)
    assert first.returncode == 0, first.stderr
    assert first.stderr == ""  # nothing there yet: no warning
    (existing,) = interactions(emulator_url, contact)

    second = voicebridge("replay", fixture, *target)
    assert second.returncode == 0, second.stderr
    (warning,) = stderr_lines(second)
    assert warning.startswith("voicebridge replay: warning: ServiceNow already has an interaction for 1 of 1 ")
    assert f"{contact} ({existing['sys_id']})" in warning and "pass --table" in warning
    # What the warning announces is what happens (the reason for it): a second interaction for the contact.
    assert len(interactions(emulator_url, contact)) == 2


def test_the_embedded_emulator_is_not_checked(voicebridge: Voicebridge, tmp_path: Path) -> None:
    # A fresh emulator per replay has nothing to duplicate: no lookup, no line.
    fixture = write_call(tmp_path / "call.jsonl", "c-embedded", turns=2)
    result = voicebridge("replay", fixture, "--log-level", "INFO")
    assert result.returncode == 0
    assert "find_interaction" not in result.stderr
