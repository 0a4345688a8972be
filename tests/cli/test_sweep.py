"""``voicebridge sweep`` as a user runs it: a process, configured like replay (``--servicenow-url/--user/--password
--table``), against moto in server mode and the emulator process, both over real HTTP. The call it closes was
opened by ``voicebridge replay`` (another process) and its COMPLETED never came."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
import requests

from tests.cli.conftest import Voicebridge, stderr_lines
from tests.events_builder import call_events
from voicebridge.feed.fixtures import build_records, to_json_line

pytestmark = pytest.mark.integration
BIN = Path(sys.executable).parent
REFUSE_CLOSE = [{"action": "status", "status": 503, "method": "PATCH", "path": "/state$", "times": 1000}]


@pytest.fixture(scope="module")
def moto_url() -> Iterator[str]:
    """``moto_server`` in its own process; its URL once it answers."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    process = subprocess.Popen(
        [str(BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(200):  # up to 20 s
            try:
                requests.get(url, timeout=1)
                break
            except requests.ConnectionError:
                time.sleep(0.1)
        else:
            raise RuntimeError("moto_server did not come up")
        yield url
    finally:
        process.terminate()
        process.wait(timeout=10)


@pytest.fixture
def aws(moto_url: str, monkeypatch: pytest.MonkeyPatch) -> dict[str, str | None]:
    """The standard AWS configuration pointed at moto_server, for the commands and for this test's reads."""
    env = {"AWS_ENDPOINT_URL": moto_url, "AWS_DEFAULT_REGION": "us-east-1"}
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return dict(env)


@pytest.fixture
def table() -> str:
    return f"contacts-{uuid.uuid4().hex[:8]}"


def configured(emulator_url: str, table: str) -> tuple[str, ...]:
    return ("--servicenow-url", emulator_url, "--user", "admin", "--password", "admin", "--table", table)


def open_call(voicebridge: Voicebridge, aws: dict[str, str | None], emulator: str, table: str, path: Path) -> str:
    """Replay a call whose COMPLETED never came; returns its contact id."""
    contact_id = f"c-{uuid.uuid4().hex[:12]}"
    records = build_records(call_events(contact_id, 3, end=""))
    path.write_text("\n".join(to_json_line(r) for r in records) + "\n")
    replayed = voicebridge("replay", str(path), *configured(emulator, table), env=aws)
    assert replayed.returncode == 0, replayed.stderr
    assert interaction(emulator, contact_id)["state"] != "closed_complete"
    return contact_id


def interaction(emulator: str, contact_id: str) -> dict[str, str]:
    response = requests.get(
        f"{emulator}/api/now/table/interaction",
        params={"sysparm_query": f"client_session_id={contact_id}"},
        auth=("admin", "admin"),
        timeout=10,
    )
    response.raise_for_status()
    (row,) = response.json()["result"]
    found: dict[str, str] = row
    return found


def item(table: str, contact_id: str) -> dict[str, str]:
    """The contact's DynamoDB item in moto_server, its string and number attributes as text."""
    raw = boto3.client("dynamodb").get_item(TableName=table, Key={"contact_id": {"S": contact_id}}, ConsistentRead=True)
    return {name: next(iter(value.values())) for name, value in raw["Item"].items() if {"S", "N"} & set(value)}


def test_a_call_whose_completed_never_came_is_closed_by_sweep_idle_minutes_0(
    voicebridge: Voicebridge, aws: dict[str, str | None], emulator_url: str, table: str, tmp_path: Path
) -> None:
    contact_id = open_call(voicebridge, aws, emulator_url, table, tmp_path / "call.jsonl")
    interaction_id = item(table, contact_id)["interaction_id"]

    swept = voicebridge("sweep", "--idle-minutes", "0", *configured(emulator_url, table), env=aws)

    assert swept.returncode == 0, swept.stderr
    first, *_, summary = swept.stdout.splitlines()
    assert first.split() == [contact_id, interaction_id, "closed"]
    assert summary.startswith("swept (every open contact): closed 1 ")
    closed = interaction(emulator_url, contact_id)
    assert closed["state"] == "closed_complete"
    assert closed["recording_url"].endswith(f"/contact-trace-records/details/{contact_id}")
    assert (item(table, contact_id)["status"], item(table, contact_id)["close_seq"]) == ("closed", "sweeper:closed")
    again = voicebridge("sweep", "--idle-minutes", "0", *configured(emulator_url, table), env=aws)
    assert (again.returncode, again.stdout.splitlines()[0][:38]) == (0, "swept (every open contact): closed 0 (")


def test_dry_run_lists_the_call_and_closes_nothing(
    voicebridge: Voicebridge, aws: dict[str, str | None], emulator_url: str, table: str, tmp_path: Path
) -> None:
    contact_id = open_call(voicebridge, aws, emulator_url, table, tmp_path / "call.jsonl")
    before = item(table, contact_id)

    listed = voicebridge("sweep", "--idle-minutes", "0", "--dry-run", *configured(emulator_url, table), env=aws)

    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.splitlines() == [
        f"{contact_id:<40} {before['interaction_id']:<34} would_close",
        "dry run (every open contact): 1 contact(s) would be closed; nothing was written",
    ]
    assert item(table, contact_id) == before
    assert interaction(emulator_url, contact_id)["state"] != "closed_complete"
    # the function's own rule (IDLE_CLOSE_MINUTES, 90 by default) leaves a call this fresh alone
    default = voicebridge("sweep", *configured(emulator_url, table), env=aws)
    assert default.returncode == 0, default.stderr
    assert default.stdout.splitlines()[0].startswith("swept (idle for at least 90 min): closed 0 ")
    assert item(table, contact_id) == before


def test_a_close_servicenow_refuses_exits_1_and_waits_for_the_next_sweep(
    voicebridge: Voicebridge, aws: dict[str, str | None], emulator_url: str, table: str, tmp_path: Path
) -> None:
    contact_id = open_call(voicebridge, aws, emulator_url, table, tmp_path / "call.jsonl")
    interaction_id = item(table, contact_id)["interaction_id"]
    requests.post(f"{emulator_url}/__emulator/faults", json=REFUSE_CLOSE, timeout=10).raise_for_status()
    try:
        refused = voicebridge("sweep", "--idle-minutes", "0", *configured(emulator_url, table), env=aws)
    finally:
        requests.delete(f"{emulator_url}/__emulator/faults", timeout=10).raise_for_status()

    assert refused.returncode == 1, refused.stderr
    assert refused.stdout.splitlines()[0].split() == [
        contact_id,
        interaction_id,
        "error",
        "(ServiceNowUnavailableError)",
    ]
    assert " failed 1 " in refused.stdout.splitlines()[-1]
    assert interaction(emulator_url, contact_id)["state"] != "closed_complete"
    # closed for the bridge, still in the sweeper's index: the next sweep re-sends the PATCH
    assert (item(table, contact_id)["status"], item(table, contact_id)["close_seq"]) == ("closed", "sweeper:pending")

    retried = voicebridge("sweep", "--idle-minutes", "0", *configured(emulator_url, table), env=aws)

    assert retried.returncode == 0, retried.stderr
    assert retried.stdout.splitlines()[0].split() == [contact_id, interaction_id, "closed"]
    assert interaction(emulator_url, contact_id)["state"] == "closed_complete"
    assert item(table, contact_id)["close_seq"] == "sweeper:closed"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--idle-minutes", "-1"], "argument --idle-minutes: expected an integer from 0 to 10080, got '-1'"),
        (["--idle-minutes", "soon"], "argument --idle-minutes: expected an integer from 0 to 10080, got 'soon'"),
        (["--idle-minutes", "10081"], "argument --idle-minutes: expected an integer from 0 to 10080, got '10081'"),
        (["--max-contacts", "0"], "argument --max-contacts: expected an integer of at least 1, got '0'"),
        (["--servicenow-url", "ftp://example.com", "--table", "t"], "argument --servicenow-url: expected an http(s)"),
        (
            ["--servicenow-url", "http://127.0.0.1:9", "--user", "u", "--password", "p"],
            "--servicenow-url needs --table",
        ),
        (["--servicenow-url", "http://127.0.0.1:9", "--table", "t"], "--servicenow-url needs --user/--password"),
        (["--table", "t"], "--table needs --servicenow-url"),
        ([], "the sweeper is not configured: SERVICENOW_URL is not set"),  # no flags and no function environment
    ],
    ids=[
        "negative",
        "not-a-number",
        "above-a-week",
        "max-contacts-0",
        "ftp",
        "no-table",
        "no-credentials",
        "table-alone",
        "no-environment",
    ],
)
def test_bad_arguments_are_one_line_on_stderr_and_exit_2(
    voicebridge: Voicebridge, argv: list[str], message: str
) -> None:
    result = voicebridge("sweep", *argv, env={"SERVICENOW_URL": None, "CONTACT_TABLE": None})

    assert result.returncode == 2
    (line,) = stderr_lines(result)
    assert line.startswith("voicebridge sweep: ") and message in line, line
    assert result.stdout == ""
