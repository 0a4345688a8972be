"""Capture from a Kinesis stream (moto, in process) into fixtures that replay unchanged; and `voicebridge trace` on a
replayed contact, with the log group emulated (the handler's own JSON log lines evaluated as Logs Insights would)."""

from __future__ import annotations

import base64
import io
import json
import logging
import re
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.stub import ANY, Stubber
from moto import mock_aws

from tests.events_builder import envelope, transcript
from tests.functional.conftest import Stack
from voicebridge.cli import main
from voicebridge.emulator.tableclient import read_transcript
from voicebridge.feed.fixtures import StreamRecord, build_records, load_fixture
from voicebridge.feed.replay import ReplayOptions, bridge_log_level, replay_session
from voicebridge.operate.trace import Clients, Targets, TraceOptions, timeline_query, trace
from voicebridge.soak.synth import SyntheticCall, interleave_calls, synthesize_call

pytestmark = pytest.mark.functional

STREAM = "contact-lens-segments"
POISON = b"\xff\xfe{not json at all"


@pytest.fixture
def calls() -> tuple[SyntheticCall, SyntheticCall]:
    return synthesize_call(seed=11, turns=14), synthesize_call(seed=12, turns=6)


@pytest.fixture
def kinesis() -> Iterator[Any]:
    with mock_aws():
        client = boto3.client("kinesis")
        client.create_stream(StreamName=STREAM, ShardCount=2)
        yield client


def _put(kinesis: Any, payloads: list[tuple[str, bytes]]) -> list[tuple[str, str, bytes]]:
    """put_records in order; returns (sequence number, partition key, data) as the stream stored them."""
    stored = []
    for start in range(0, len(payloads), 500):
        chunk = payloads[start : start + 500]
        response = kinesis.put_records(StreamName=STREAM, Records=[{"PartitionKey": k, "Data": d} for k, d in chunk])
        assert not response.get("FailedRecordCount")
        stored += [(r["SequenceNumber"], k, d) for r, (k, d) in zip(response["Records"], chunk, strict=True)]
    return stored


def _payloads(calls: tuple[SyntheticCall, SyntheticCall]) -> list[tuple[str, bytes]]:
    events = interleave_calls(list(calls), seed=3)
    payloads = [(r.partition_key, r.data) for r in build_records(events)]
    payloads.insert(len(payloads) // 2, ("poison-key", POISON))
    return payloads


def _capture(tmp_path: Path, *extra: str) -> tuple[int, Path]:
    out = tmp_path / "capture.jsonl"
    code = main(["capture", "--stream", STREAM, "-o", str(out), *extra])
    return code, out


def _per_contact(records: list[StreamRecord]) -> dict[str, list[bytes]]:
    grouped: dict[str, list[bytes]] = {}
    for record in records:
        try:
            contact = json.loads(record.data)["ContactId"]
        except ValueError:
            contact = "<not json>"
        grouped.setdefault(contact, []).append(record.data)
    return grouped


def _replayed_transcript(records: list[StreamRecord], contact_id: str) -> list[tuple[str, str]]:
    with replay_session(records, ReplayOptions(batch_size=10)) as (report, target):
        interaction = report.contacts[contact_id].interaction_id
        assert interaction and report.contacts[contact_id].closed
        rows = read_transcript(target.url, target.basic_auth, interaction)
    return [(row["source_message_id"], row["payload"]) for row in rows if row["is_internal"] != "true"]


def test_capture_writes_every_record_of_every_shard_as_put(
    kinesis: Any, calls: tuple[SyntheticCall, SyntheticCall], tmp_path: Path
) -> None:
    stored = _put(kinesis, _payloads(calls))
    code, out = _capture(tmp_path)
    assert code == 0
    captured = load_fixture(out)
    assert sorted((r.sequence_number, r.partition_key, r.data) for r in captured) == sorted(stored)
    # Each contact's records keep stream order; the poison record is kept byte-exact as dataBase64.
    assert _per_contact(captured) == _per_contact([StreamRecord(d, k, s, 0.0) for s, k, d in stored])
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    (poison,) = [line for line in lines if "dataBase64" in line]
    assert base64.b64decode(poison["dataBase64"]) == POISON
    arrivals = [r.arrival_timestamp for r in captured]
    assert arrivals == sorted(arrivals) and arrivals[0] > 1_700_000_000


def test_contact_filter_uses_the_payload_contact_id(
    kinesis: Any, calls: tuple[SyntheticCall, SyntheticCall], tmp_path: Path
) -> None:
    call, other = calls
    payloads = _payloads(calls)
    # A record of `other` under call's partition key: the filter must go by the payload's ContactId.
    payloads.append((call.contact_id, json.dumps(other.events[-1]).encode()))
    _put(kinesis, payloads)
    code, out = _capture(tmp_path, "--contact", call.contact_id)
    assert code == 0
    captured = load_fixture(out)
    assert [json.loads(r.data) for r in captured] == call.events


def test_from_and_until_select_by_arrival_time(
    kinesis: Any, calls: tuple[SyntheticCall, SyntheticCall], tmp_path: Path
) -> None:
    call, other = calls
    _put(kinesis, [(r.partition_key, r.data) for r in build_records(call.events)])
    time.sleep(0.05)
    boundary = time.time()
    time.sleep(0.05)
    _put(kinesis, [(r.partition_key, r.data) for r in build_records(other.events)])
    iso = datetime.fromtimestamp(boundary).astimezone().isoformat()
    code, out = _capture(tmp_path, "--from", iso)
    assert code == 0
    assert {json.loads(r.data)["ContactId"] for r in load_fixture(out)} == {other.contact_id}
    code, out = _capture(tmp_path, "--from", "trim-horizon", "--until", str(boundary))
    assert code == 0
    assert [json.loads(r.data) for r in load_fixture(out)] == call.events


def test_capture_replay_round_trip(calls: tuple[SyntheticCall, SyntheticCall], tmp_path: Path) -> None:
    call, _ = calls
    with mock_aws():
        client = boto3.client("kinesis")
        client.create_stream(StreamName=STREAM, ShardCount=2)
        _put(client, _payloads(calls))
        code, out = _capture(tmp_path)
        assert code == 0
        redacted_out = tmp_path / "redacted.jsonl"
        assert main(["capture", "--stream", STREAM, "--redact", "-o", str(redacted_out)]) == 0
    records = load_fixture(out)
    expected = [(t["Id"], t["Content"]) for t in call.transcripts]
    assert _replayed_transcript(records, call.contact_id) == expected

    # --redact: no content string survives, ids/offsets do, and the capture still replays.
    text = redacted_out.read_text()
    contents = {
        seg[kind][key]
        for event in call.events
        for seg in event.get("Segments", [])
        for kind, key in (("Transcript", "Content"), ("Utterance", "PartialContent"), ("PostContactSummary", "Content"))
        if kind in seg
    }
    assert len(contents) > 10
    for content in contents:
        assert content not in text
    assert "not json" not in text
    redacted = load_fixture(redacted_out)
    assert [r.sequence_number for r in redacted] == [r.sequence_number for r in records]
    assert _replayed_transcript(redacted, call.contact_id) == [(i, "x" * len(c)) for i, c in expected]


# --- trace on a replayed contact, with the log group emulated ----------------------------------------------------


def logs_insights_rows(query: str, log_lines: list[dict[str, Any]]) -> list[list[dict[str, str]]]:
    """A small evaluator of the contact timeline query's shape over JSON log lines: ``fields`` then ``filter
    FIELD = "VALUE"``, ``sort @timestamp asc``, ``limit N`` (anything else fails: the test must then grow)."""
    lines = [line.strip() for line in query.strip().splitlines()]
    assert lines[0].startswith("fields ")
    fields = [name.strip() for name in lines[0][len("fields ") :].split(",")]
    selected = log_lines
    limit = None
    for command in lines[1:]:
        if match := re.fullmatch(r'\| filter (\w+) = "([^"]*)"', command):
            selected = [line for line in selected if str(line.get(match.group(1))) == match.group(2)]
        elif command == "| sort @timestamp asc":
            selected = sorted(selected, key=lambda line: line["timestamp"])
        elif match := re.fullmatch(r"\| limit (\d+)", command):
            limit = int(match.group(1))
        else:
            raise AssertionError(f"the emulated Logs Insights does not know {command!r}")
    rows = []
    for index, line in enumerate(selected[:limit]):
        # Powertools' "2026-11-27 06:59:12,425+0000" is Logs Insights' @timestamp "2026-11-27 06:59:12.425"
        stamp = datetime.strptime(line["timestamp"], "%Y-%m-%d %H:%M:%S,%f%z")
        values = {**line, "@timestamp": stamp.strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]}
        row = [
            {"field": name, "value": v if isinstance(v, str) else json.dumps(v)}
            for name in fields
            if (v := values.get(name)) is not None
        ]
        rows.append(row + [{"field": "@ptr", "value": f"ptr-{index}"}])
    return rows


def test_trace_prints_the_timeline_of_a_replayed_contact(stack: Stack) -> None:
    from bridge.log import logger

    call = synthesize_call(seed=21, turns=10)
    other = synthesize_call(seed=22, turns=4)
    records = build_records(interleave_calls([call, other], seed=5))
    # A new segment after COMPLETED, in a later batch: parked (after_close), so trace has a parked item to show.
    after = envelope(call.contact_id, "SEGMENTS", [transcript("late-turn", "one more thing", begin=90_000)])
    late = build_records([after], first_sequence_number=int(records[-1].sequence_number) + 1000)
    sink = io.StringIO()
    handler = logging.StreamHandler(sink)
    handler.setFormatter(logger.registered_formatter)
    logger._logger.addHandler(handler)
    try:
        with bridge_log_level("INFO"):  # the deployed default, whatever this process's logger was set to
            lambda_records = [r.to_lambda_record() for r in records]
            for start in range(0, len(records), 10):
                stack.invoke(lambda_records[start : start + 10])
            stack.invoke([late[0].to_lambda_record()])
    finally:
        logger._logger.removeHandler(handler)
    log_lines = [json.loads(line) for line in sink.getvalue().splitlines() if line.strip()]
    query = timeline_query(call.contact_id)
    rows = logs_insights_rows(query, log_lines)
    assert rows

    logs = boto3.client("logs")
    stubber = Stubber(logs)
    log_group = "/aws/lambda/voicebridge-bridge"
    stubber.add_response(
        "start_query",
        {"queryId": "q-1"},
        {"logGroupName": log_group, "startTime": ANY, "endTime": ANY, "queryString": query, "limit": 10000},
    )
    stubber.add_response("get_query_results", {"status": "Running", "results": []}, {"queryId": "q-1"})
    stubber.add_response(
        "get_query_results",
        {"status": "Complete", "results": rows, "statistics": {"recordsMatched": float(len(rows))}},
        {"queryId": "q-1"},
    )
    clients = Clients(logs=logs, dynamodb=boto3.client("dynamodb"), sqs=boto3.client("sqs"))
    targets = Targets(log_group, stack.environment["CONTACT_TABLE"], stack.environment["PARKING_QUEUE_URL"])
    with stubber:
        output = trace(call.contact_id, targets, clients, TraceOptions(poll_s=0, peek_wait_s=0), sleep=lambda _: None)
        stubber.assert_no_pending_responses()

    timeline = output.split("DynamoDB state")[0]
    steps = [line.split()[2] for line in timeline.splitlines()[4:] if line.strip()]
    assert steps.index("open") < steps.index("send") < steps.index("close"), timeline
    assert "plan" in steps  # the late segment after close, parked
    transaction_ids = {
        line["transaction_id"]
        for line in log_lines
        if line.get("contact_id") == call.contact_id and line.get("transaction_id")
    }
    assert len(transaction_ids) >= 4  # create interaction, conversation, messages, close
    for transaction_id in transaction_ids:
        assert transaction_id in timeline
    assert "POST create_interaction 200" in timeline and "PATCH close_interaction 200" in timeline
    assert other.contact_id not in output
    item = output.split("DynamoDB state")[1].split("Parked items")[0]
    assert re.search(r"status\s+closed", item) and re.search(r"sent\s+\d+ segments", item)
    parked = output.split("Parked items")[1]
    assert "after_close" in parked and late[0].sequence_number in parked
    for turn in call.transcripts:
        assert turn["Content"] not in output
    assert "one more thing" not in output
    # Peeking deleted nothing: the parked message is still there for redrive.
    assert len(stack.parked()) == 1
