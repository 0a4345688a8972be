"""End to end over real HTTP: ``voicebridge backfill`` (a process) -> moto_server (S3, DynamoDB, SQS) and
``voicebridge emulator`` (a process)."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import boto3
import pytest
import requests

pytestmark = pytest.mark.integration
VOICEBRIDGE = str(Path(sys.executable).parent / "voicebridge")
ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "events" / "postcall" / "bucket"
CONNECT = str(ROOT / "events" / "postcall" / "connect-contacts.json")
SAMPLES = Path("/work/shared/reference/samples/postcall")
DAY = "2026/03/14"
C1 = "3f1c2b9a-7d4e-4c1a-9e2b-5a6d7c8e9f01"
C2 = "8a2d4e6f-1b3c-4d5e-8f9a-0b1c2d3e4f52"
C3 = "c5e7a9b1-2d4f-4a6c-8e0b-1d3f5a7c9e63"
C5 = "5b6c7d8e-9f0a-4b1c-8d2e-3f4a5b6c7d85"
FILES = {
    C1: f"Analysis/Voice/Redacted/{DAY}/{C1}_analysis_redacted_2026-03-14T10:09:41Z.json",
    C2: f"Analysis/Voice/Redacted/{DAY}/{C2}_analysis_redacted_2026-03-14T11:31:07Z.json",
    C3: f"Analysis/Voice/Redacted/{DAY}/{C3}_analysis_redacted_2026-03-14T12:02:55Z.json",
    C5: f"Analysis/Voice/{DAY}/{C5}_analysis_2026-03-14T14:45:00Z.json",
}


def backfill(env: dict[str, str], *arguments: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [VOICEBRIDGE, "backfill", *arguments], env=env, capture_output=True, text=True, timeout=180, check=False
    )


def upload_fixtures(bucket: str) -> None:
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket=bucket)
    for path in sorted(FIXTURES.rglob("*")):
        if path.is_file():
            s3.put_object(Bucket=bucket, Key=str(path.relative_to(FIXTURES)), Body=path.read_bytes())


def rows(emulator: str, table: str, query: str) -> list[dict[str, str]]:
    response = requests.get(
        f"{emulator}/api/now/table/{table}", params={"sysparm_query": query}, auth=("admin", "admin"), timeout=10
    )
    response.raise_for_status()
    result: list[dict[str, str]] = response.json()["result"]
    return result


def emulator_counts(emulator: str) -> dict[str, int]:
    return {table: len(rows(emulator, table, "")) for table in ("interaction", "sys_cs_conversation", "sys_cs_message")}


def status_lines(output: str) -> dict[str, str]:
    """contact (or file name) -> the status word(s) of its line."""
    lines = {}
    for line in output.splitlines():
        parts = line.split("  ")
        if len(parts) >= 2 and parts[0].strip() and not line.startswith(("voicebridge", "backfill")):
            lines[parts[0].strip()] = parts[1].strip()
    return lines


def assert_imported_exactly(emulator: str, contact: str) -> dict[str, str]:
    (interaction,) = rows(emulator, "interaction", f"client_session_id={contact}")
    assert interaction["state"] == "closed_complete"
    messages = rows(
        emulator, "sys_cs_message", f"conversation={interaction['channel_metadata_document']}^ORDERBYsequence"
    )
    turns = [m for m in messages if m["is_internal"] != "true"]
    source: list[dict[str, Any]] = json.loads((FIXTURES / FILES[contact]).read_text())["Transcript"]
    assert [(m["source_message_id"], m["payload"], m["participant"]) for m in turns] == [
        (t["Id"], t["Content"], t["ParticipantId"]) for t in source
    ]
    assert [(int(m["begin_offset_millis"]), int(m["end_offset_millis"])) for m in turns] == [
        (t["BeginOffsetMillis"], t["EndOffsetMillis"]) for t in source
    ]
    assert [json.loads(m["loudness_score"]) for m in turns] == [t["LoudnessScore"] for t in source]
    return interaction


def test_done_when_backfill_redacted_then_raw_then_again(aws_env: dict[str, str], emulator_process: str) -> None:
    bucket = f"cl-{uuid.uuid4().hex[:10]}"
    table = f"contacts-{uuid.uuid4().hex[:8]}"
    upload_fixtures(bucket)
    # A file of the next day: outside the range, so never listed (one listing per day, never the whole bucket).
    outside = f"Analysis/Voice/Redacted/2026/03/15/{uuid.uuid4()}_analysis_redacted_2026-03-15T08:00:00Z.json"
    boto3.client("s3").put_object(Bucket=bucket, Key=outside, Body=b"{}")
    common = (
        "--bucket", bucket, "--since", "2026-03-14", "--until", "2026-03-14", "--table", table, "--connect", CONNECT,
        "--servicenow-url", emulator_process, "--user", "admin", "--password", "admin",
    )  # fmt: skip

    env = {**aws_env, "CONNECT_INSTANCE_ALIAS": "example"}  # the default recording URL names the instance
    first = backfill(env, *common)
    assert first.returncode == 0, first.stdout + first.stderr
    assert status_lines(first.stdout) == {
        C1: "imported",
        C2: "imported",
        C3: "imported",
        f"{C1}_call_recording_redacted_2026-03-14T10:09:41Z.wav": "skipped",
    }
    raw = backfill(env, *common, "--variant", "raw")
    assert raw.returncode == 0, raw.stdout + raw.stderr
    assert status_lines(raw.stdout) == {C1: "already imported", C5: "imported"}
    before = emulator_counts(emulator_process)
    again = backfill(env, *common)
    assert again.returncode == 0, again.stdout + again.stderr
    assert set(status_lines(again.stdout).values()) == {"already imported", "skipped"}
    assert emulator_counts(emulator_process) == before  # re-running changes nothing in ServiceNow

    for contact in (C1, C2, C3, C5):
        assert_imported_exactly(emulator_process, contact)
    c1 = assert_imported_exactly(emulator_process, C1)
    assert c1["conversation_started"] == "2026-03-14 10:00:02"  # DescribeContact's agent-connected time
    assert c1["user_id"] == "+14155550101"  # the caller, from Connect as on the live path
    assert c1["assigned_to"] == "anna.agent"
    c3 = assert_imported_exactly(emulator_process, C3)
    assert c3["conversation_started"] == "2026-03-14 11:59:40"  # no agent: the initiation time
    assert c3["user_id"] == "anonymous"
    item = boto3.client("dynamodb").get_item(TableName=table, Key={"contact_id": {"S": C1}})["Item"]
    assert item["postcall_key"]["S"] == FILES[C1] and item["postcall_stage"]["S"] == "done"
    assert item["postcall_etag"]["S"]
    secrets = boto3.client("secretsmanager").list_secrets()["SecretList"]
    assert not any("backfill" in secret["Name"] for secret in secrets)  # credentials never stored anywhere


def test_without_a_servicenow_url_it_imports_into_the_embedded_emulator_and_prints_it(
    aws_env: dict[str, str],
) -> None:
    bucket = f"cl-{uuid.uuid4().hex[:10]}"
    upload_fixtures(bucket)
    result = backfill(
        aws_env, "--bucket", bucket, "--since", "2026-03-14", "--until", "2026-03-14", "--contact", C2,
        "--table", f"contacts-{uuid.uuid4().hex[:8]}",
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert "(embedded emulator)" in result.stdout
    assert "caller anonymous" in result.stdout  # no Amazon Connect to ask offline: the fallback
    assert f"contact {C2}" in result.stdout
    assert "conversation started: 2026-03-14 11:31:07" in result.stdout
    assert "My parcel for [PII] never arrived.   loudness [84.3,86.9,85.1,83.0]" in result.stdout
    assert "[agent only] Post-contact summary: The parcel did not arrive" in result.stdout


def test_a_bad_file_is_parked_and_the_exit_status_is_1(aws_env: dict[str, str]) -> None:
    bucket = f"cl-{uuid.uuid4().hex[:10]}"
    contact = str(uuid.uuid4())
    key = f"Analysis/Voice/Redacted/2026/03/14/{contact}_analysis_redacted_2026-03-14T08:00:00Z.json"
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket=bucket)
    s3.put_object(Bucket=bucket, Key=key, Body=(SAMPLES / "awsdocs-current-original.not-json.txt").read_bytes())
    queue = boto3.client("sqs").create_queue(QueueName=f"parking-{uuid.uuid4().hex[:8]}")["QueueUrl"]
    env = {**aws_env, "PARKING_QUEUE_URL": queue}
    result = backfill(env, "--bucket", bucket, "--since", "2026-03-14", "--table", f"t-{uuid.uuid4().hex[:8]}")
    assert result.returncode == 1, result.stdout + result.stderr
    assert status_lines(result.stdout) == {contact: "parked"}
    (message,) = boto3.client("sqs").receive_message(QueueUrl=queue, MaxNumberOfMessages=10)["Messages"]
    body = json.loads(message["Body"])
    assert body["records"] == [{"bucket": bucket, "key": key, "variant": "redacted"}]
    assert body["reason"].startswith("not valid JSON")
    assert '{"level"' not in result.stdout  # the importer's JSON log lines go to stderr
    assert '"message":"post-call file parked"' in result.stderr
    assert "My name is Peter" not in result.stderr + result.stdout  # never content in a log line


def test_dry_run_maps_and_writes_nothing(aws_env: dict[str, str]) -> None:
    bucket = f"cl-{uuid.uuid4().hex[:10]}"
    table = f"contacts-{uuid.uuid4().hex[:8]}"
    upload_fixtures(bucket)
    result = backfill(
        aws_env, "--bucket", bucket, "--since", "2026-03-14", "--until", "2026-03-14", "--table", table, "--dry-run"
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "dry run: would import" in result.stdout
    assert "Interaction " not in result.stdout
    assert boto3.client("dynamodb").scan(TableName=table)["Items"] == []


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (("--since", "2026-03-15", "--until", "2026-03-14"), "is after --until"),
        (("--since", "14/03/2026"), "--since must be a date YYYY-MM-DD"),
        (("--servicenow-url", "https://x.service-now.com"), "needs --user/--password"),
        (("--connect", "/nonexistent/contacts.json"), "No such file"),
        (("--concurrency", "0"), "--concurrency must be between 1 and 64"),
        (("--servicenow-url", "http://example.com", "--user", "u", "--password", "p"), "https://"),
        (("--servicenow-url", "https://x.service-now.com", "--user", "u", "--password", "p"), "CONNECT_INSTANCE_ALIAS"),
    ],
)
def test_bad_arguments_are_one_line_on_stderr_and_exit_2(
    aws_env: dict[str, str], arguments: tuple[str, ...], message: str
) -> None:
    env = {name: value for name, value in aws_env.items() if name != "CONNECT_INSTANCE_ALIAS"}
    result = backfill(env, "--bucket", "b", "--table", f"t-{uuid.uuid4().hex[:8]}", *arguments)
    assert result.returncode == 2, result.stdout + result.stderr
    assert message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_on_a_terminal_stderr_carries_a_progress_line(aws_env: dict[str, str]) -> None:
    import os
    import pty

    bucket = f"cl-{uuid.uuid4().hex[:10]}"
    upload_fixtures(bucket)
    leader, follower = pty.openpty()
    try:
        result = subprocess.run(
            [VOICEBRIDGE, "backfill", "--bucket", bucket, "--since", "2026-03-14", "--until", "2026-03-14",
             "--table", f"t-{uuid.uuid4().hex[:8]}", "--dry-run"],
            env=aws_env, stdout=subprocess.PIPE, stderr=follower, text=True, timeout=180, check=False,
        )  # fmt: skip
        os.close(follower)
        seen = b""
        while True:
            try:
                chunk = os.read(leader, 4096)
            except OSError:  # the terminal's other end closed: everything was read
                break
            if not chunk:
                break
            seen += chunk
    finally:
        os.close(leader)
    assert result.returncode == 0, result.stdout
    assert b"\rbackfill: 4/4 files" in seen
    assert "backfill: 4/4" not in result.stdout  # progress never mixes into the report


def test_a_servicenow_outage_is_a_failed_line_and_exit_1_and_the_re_run_imports_once(
    aws_env: dict[str, str], emulator_process: str
) -> None:
    bucket = f"cl-{uuid.uuid4().hex[:10]}"
    contact = str(uuid.uuid4())
    source = (FIXTURES / FILES[C3]).read_text().replace(C3, contact)
    key = f"Analysis/Voice/Redacted/2026/03/14/{contact}_analysis_redacted_2026-03-14T12:02:55Z.json"
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket=bucket)
    s3.put_object(Bucket=bucket, Key=key, Body=source.encode())
    rule = {"action": "status", "status": 503, "method": "POST", "path": "/transcript$", "times": 4}
    requests.post(f"{emulator_process}/__emulator/faults", json={"rules": [rule]}, timeout=10).raise_for_status()
    env = {**aws_env, "CONNECT_INSTANCE_ALIAS": "example"}
    common = (
        "--bucket", bucket, "--since", "2026-03-14", "--table", f"t-{uuid.uuid4().hex[:8]}",
        "--servicenow-url", emulator_process, "--user", "admin", "--password", "admin",
    )  # fmt: skip
    failed = backfill(env, *common)
    assert failed.returncode == 1, failed.stdout + failed.stderr
    assert status_lines(failed.stdout) == {contact: "failed"}
    again = backfill(env, *common)
    assert again.returncode == 0, again.stdout + again.stderr
    assert status_lines(again.stdout) == {contact: "imported"}
    (interaction,) = rows(emulator_process, "interaction", f"client_session_id={contact}")
    assert interaction["state"] == "closed_complete"
    messages = rows(emulator_process, "sys_cs_message", f"conversation={interaction['channel_metadata_document']}")
    assert len(messages) == 3  # two turns and the skipped-summary note, once
