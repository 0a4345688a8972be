"""``voicebridge capture`` shares the shard's read limits with the live event source mapping: it says so on its
first line, and a throttled GetRecords is retried with bounded exponential backoff (botocore Stubber)."""

from __future__ import annotations

import argparse
import io
from datetime import UTC, datetime
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber

from voicebridge.operate import capture

pytestmark = pytest.mark.functional

STREAM = "contact-lens-segments"
SHARD = "shardId-000000000000"


def kinesis_with(throttles: int, records: int = 2) -> tuple[Any, Stubber]:
    """A stubbed client: one shard, ``throttles`` ProvisionedThroughputExceeded answers, then one caught-up page."""
    client = boto3.client("kinesis", region_name="us-east-1")
    stubber = Stubber(client)
    stubber.add_response(
        "list_shards",
        {
            "Shards": [
                {
                    "ShardId": SHARD,
                    "HashKeyRange": {"StartingHashKey": "0", "EndingHashKey": "1"},
                    "SequenceNumberRange": {"StartingSequenceNumber": "1"},
                }
            ]
        },
        {"StreamName": STREAM},
    )
    stubber.add_response(
        "get_shard_iterator",
        {"ShardIterator": "it-1"},
        {"StreamName": STREAM, "ShardId": SHARD, "ShardIteratorType": "TRIM_HORIZON"},
    )
    for _ in range(throttles):
        stubber.add_client_error(
            "get_records",
            service_error_code="ProvisionedThroughputExceededException",
            service_message="Rate exceeded for shard",
            http_status_code=400,
            expected_params={"ShardIterator": "it-1", "Limit": capture.GET_RECORDS_LIMIT},
        )
    page = [
        {
            "SequenceNumber": str(100 + index),
            "ApproximateArrivalTimestamp": datetime(2026, 12, 1, tzinfo=UTC),
            "Data": b'{"ContactId": "c-1", "EventType": "SEGMENTS"}',
            "PartitionKey": "c-1",
        }
        for index in range(records)
    ]
    stubber.add_response(
        "get_records",
        {"Records": page, "NextShardIterator": "it-2", "MillisBehindLatest": 0},
        {"ShardIterator": "it-1", "Limit": capture.GET_RECORDS_LIMIT},
    )
    return client, stubber


def test_throttled_reads_are_retried_with_exponential_backoff() -> None:
    client, stubber = kinesis_with(throttles=3)
    slept: list[float] = []
    out = io.StringIO()
    with stubber:
        report = capture.capture(client, capture.CaptureOptions(STREAM), out, sleep=slept.append)
        stubber.assert_no_pending_responses()
    assert slept == [0.2, 0.4, 0.8]
    assert report.throttled == 3 and report.get_records_calls == 4
    assert report.written == 2 and len(out.getvalue().splitlines()) == 2  # nothing lost to the throttling


def test_backoff_is_bounded_and_a_shard_that_stays_throttled_fails_clearly() -> None:
    client, stubber = kinesis_with(throttles=capture.THROTTLE_RETRIES + 1, records=0)
    slept: list[float] = []
    with stubber, pytest.raises(capture.CaptureFailed, match="throttled 9 times in a row"):
        capture.capture(client, capture.CaptureOptions(STREAM), io.StringIO(), sleep=slept.append)
    assert len(slept) == capture.THROTTLE_RETRIES
    assert max(slept) == capture.THROTTLE_MAX_DELAY_S  # doubling stops at the cap
    assert slept == sorted(slept)


def test_the_first_line_says_the_shard_read_limits_are_shared(capsys: pytest.CaptureFixture[str]) -> None:
    parser = argparse.ArgumentParser()
    capture.add_arguments(parser)
    client, stubber = kinesis_with(throttles=1)  # one real 0.2 s backoff
    with stubber:
        code = capture.run(parser.parse_args(["--stream", STREAM, "-o", "-"]), kinesis=client)
    assert code == 0
    err = capsys.readouterr().err.splitlines()
    assert err[0].startswith("voicebridge capture: reads share each shard's limits")
    assert "5 GetRecords calls/s, 2 MB/s" in err[0] and "live event source mapping" in err[0]
    assert err[-1].endswith("(1 throttled reads retried)")


def test_a_shard_that_stays_throttled_ends_the_command_with_exit_1(
    capsys: pytest.CaptureFixture[str],
) -> None:
    parser = argparse.ArgumentParser()
    capture.add_arguments(parser)
    client, stubber = kinesis_with(throttles=capture.THROTTLE_RETRIES + 1, records=0)
    slept: list[float] = []
    with stubber:
        code = capture.run(parser.parse_args(["--stream", STREAM, "-o", "-"]), kinesis=client, sleep=slept.append)
    assert code == 1
    note, failure = capsys.readouterr().err.splitlines()
    assert note.startswith("voicebridge capture: reads share each shard's limits")
    assert failure.startswith(f"voicebridge capture: {SHARD}: GetRecords throttled 9 times in a row")
    assert slept == [0.2, 0.4, 0.8, 1.6, 3.2, 6.4, 8.0, 8.0]  # README: 0.2 s doubling up to 8 s, 9 attempts
