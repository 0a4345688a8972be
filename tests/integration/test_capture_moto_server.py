"""`voicebridge capture` as a separate process against moto_server (AWS_ENDPOINT_URL), replayable output."""

from __future__ import annotations

import json
import subprocess
import uuid
from pathlib import Path

import boto3
import pytest

from tests.integration.conftest import BIN
from voicebridge.feed.fixtures import build_records, load_fixture
from voicebridge.soak.synth import interleave_calls, synthesize_call

pytestmark = pytest.mark.integration


def test_capture_process_reads_every_shard_and_filters_one_contact(aws_env: dict[str, str], tmp_path: Path) -> None:
    stream = f"segments-{uuid.uuid4().hex[:8]}"
    kinesis = boto3.client("kinesis")
    kinesis.create_stream(StreamName=stream, ShardCount=3)
    kinesis.get_waiter("stream_exists").wait(StreamName=stream, WaiterConfig={"Delay": 1, "MaxAttempts": 20})
    call, other = synthesize_call(seed=31, turns=8), synthesize_call(seed=32, turns=5)
    records = build_records(interleave_calls([call, other], seed=2))
    payloads = [(r.partition_key, r.data) for r in records] + [("poison", b"\x00\x01 not json")]
    entries = [{"PartitionKey": key, "Data": data} for key, data in payloads]
    response = kinesis.put_records(StreamName=stream, Records=entries)
    assert not response.get("FailedRecordCount")

    everything, one = tmp_path / "all.jsonl", tmp_path / "one.jsonl"
    for extra, out in (([], everything), (["--contact", call.contact_id, "--redact"], one)):
        result = subprocess.run(
            [str(BIN / "voicebridge"), "capture", "--stream", stream, "-o", str(out), *extra],
            env=aws_env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == 0, result.stderr
        assert "voicebridge capture:" in result.stderr and "3 shard(s)" in result.stderr

    captured = load_fixture(everything)
    assert sorted(r.data for r in captured) == sorted(data for _, data in payloads)
    assert any("dataBase64" in json.loads(line) for line in everything.read_text().splitlines())
    filtered = [json.loads(r.data) for r in load_fixture(one)]
    assert [e["ContactId"] for e in filtered] == [call.contact_id] * len(call.events)
    assert [e["EventType"] for e in filtered] == [e["EventType"] for e in call.events]
    text = one.read_text()
    for turn in call.transcripts:
        assert turn["Content"] not in text
        assert turn["Id"] in text  # ids survive redaction: the fixture still replays
