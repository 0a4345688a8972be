"""End to end over real HTTP: ``voicebridge replay`` (a process) -> moto_server (DynamoDB, SQS, Secrets Manager)
and ``voicebridge emulator`` (a process)."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from pathlib import Path

import boto3
import pytest
import requests

from tests.events_builder import call_events, envelope, transcript
from voicebridge.feed.fixtures import build_records, to_json_line

pytestmark = pytest.mark.integration
VOICEBRIDGE = str(Path(sys.executable).parent / "voicebridge")


def replay(
    env: dict[str, str], emulator: str, table: str, *fixtures: str, extra: tuple[str, ...] = ()
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            VOICEBRIDGE,
            "replay",
            *fixtures,
            "--servicenow-url",
            emulator,
            "--user",
            "admin",
            "--password",
            "admin",
            "--table",
            table,
            "--batch-size",
            "7",
            *extra,
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def table_rows(emulator: str, table: str, query: str) -> list[dict[str, str]]:
    response = requests.get(
        f"{emulator}/api/now/table/{table}", params={"sysparm_query": query}, auth=("admin", "admin"), timeout=10
    )
    response.raise_for_status()
    rows: list[dict[str, str]] = response.json()["result"]
    return rows


def write_jsonl(path: Path, events: list) -> str:
    path.write_text("\n".join(to_json_line(r) for r in build_records(events)) + "\n")
    return str(path)


def test_recorded_call_replays_into_the_emulator_and_is_idempotent(
    aws_env: dict[str, str], emulator_process: str
) -> None:
    table = f"contacts-{uuid.uuid4().hex[:8]}"
    first = replay(aws_env, emulator_process, table, "events/full-call.jsonl")
    assert first.returncode == 0, first.stderr
    contact = "5c3f0c1e-8c1a-4d8e-9b7a-2f1e3d4c5b6a"
    interactions = table_rows(emulator_process, "interaction", f"client_session_id={contact}")
    assert len(interactions) >= 1
    latest = interactions[-1]
    assert latest["state"] == "closed_complete"
    messages = table_rows(
        emulator_process, "sys_cs_message", f"conversation={latest['channel_metadata_document']}^ORDERBYsequence"
    )
    assert len(messages) == 49
    # the contact item lives in the moto server's DynamoDB, created from the template's schema
    item = boto3.client("dynamodb").get_item(TableName=table, Key={"contact_id": {"S": contact}})["Item"]
    assert item["status"]["S"] == "closed" and item["interaction_id"]["S"] == latest["sys_id"]
    assert int(item["sent_count"]["N"]) == 49
    # the same fixture again: the table remembers everything, nothing is sent twice
    again = replay(aws_env, emulator_process, table, "events/full-call.jsonl")
    assert again.returncode == 0, again.stderr
    assert (
        len(table_rows(emulator_process, "sys_cs_message", f"conversation={latest['channel_metadata_document']}")) == 49
    )
    assert len(table_rows(emulator_process, "interaction", f"client_session_id={contact}")) == len(interactions)


def test_poison_is_parked_in_sqs_and_replay_exits_non_zero(
    aws_env: dict[str, str], emulator_process: str, tmp_path: Path
) -> None:
    contact = f"c-{uuid.uuid4().hex[:8]}"
    fixture = write_jsonl(tmp_path / "mixed.jsonl", call_events(contact, 3))
    poison = tmp_path / "poison.json"
    poison.write_text(
        json.dumps(
            {
                "Records": [
                    {
                        "kinesis": {
                            "sequenceNumber": "9" * 56,
                            "partitionKey": "x",
                            "data": "%%%",
                            "approximateArrivalTimestamp": 1.0,
                        }
                    }
                ]
            }
        )
    )
    table = f"contacts-{uuid.uuid4().hex[:8]}"
    result = replay(aws_env, emulator_process, table, fixture, str(poison))
    assert result.returncode == 1, result.stdout
    assert "undecodable=1" in result.stdout
    queue = boto3.client("sqs").get_queue_url(QueueName="voicebridge-replay-parking")["QueueUrl"]
    messages = boto3.client("sqs").receive_message(QueueUrl=queue, MaxNumberOfMessages=10)["Messages"]
    bodies = [json.loads(m["Body"]) for m in messages]
    assert any(b["reason_class"] == "undecodable" and b["records"][0]["data"] == "%%%" for b in bodies)
    rows = table_rows(emulator_process, "interaction", f"client_session_id={contact}")
    assert len(rows) == 1 and rows[0]["state"] == "closed_complete"


def test_historical_replay_posts_one_transcript(aws_env: dict[str, str], emulator_process: str, tmp_path: Path) -> None:
    contact = f"h-{uuid.uuid4().hex[:8]}"
    fixture = write_jsonl(tmp_path / "call.jsonl", call_events(contact, 12, per_event=3))
    result = replay(aws_env, emulator_process, f"contacts-{uuid.uuid4().hex[:8]}", fixture, extra=("--historical",))
    assert result.returncode == 0, result.stderr
    (interaction,) = table_rows(emulator_process, "interaction", f"client_session_id={contact}")
    assert interaction["state"] == "closed_complete" and interaction["conversation_started"]
    messages = table_rows(
        emulator_process, "sys_cs_message", f"conversation={interaction['channel_metadata_document']}"
    )
    assert len(messages) == 12


def test_replay_against_an_unknown_url_fails_clearly(aws_env: dict[str, str], tmp_path: Path) -> None:
    fixture = write_jsonl(tmp_path / "one.jsonl", [envelope("x-1", "SEGMENTS", [transcript("a")])])
    result = replay(aws_env, "http://127.0.0.1:9", f"t-{uuid.uuid4().hex[:6]}", fixture, extra=("--max-retries", "1"))
    assert result.returncode == 1
    assert "given up 1" in result.stdout
