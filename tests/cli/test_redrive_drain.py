"""``voicebridge redrive`` reads the parking queue to its real end: long polls, and an empty answer counts only when
the queue's own count agrees (README "Operating it", redrive)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber

from voicebridge.cli import main
from voicebridge.operate import redrive

pytestmark = pytest.mark.functional

QUEUE_URL = "https://sqs.us-east-1.amazonaws.com/123456789012/voicebridge-parking"


def parked_body(contact_id: str, sequence_number: str) -> str:
    record = {
        "sequenceNumber": sequence_number,
        "partitionKey": contact_id,
        "data": "e30=",
        "approximateArrivalTimestamp": 1,
    }
    return json.dumps({"reason_class": "servicenow_rejected", "contact_id": contact_id, "records": [record]})


def sqs_message(index: int) -> dict[str, str]:
    return {"MessageId": f"m-{index}", "ReceiptHandle": f"r-{index}", "Body": parked_body(f"c-{index}", str(index))}


def receive(stubber: Stubber, messages: list[dict[str, str]], wait: int = redrive.DEFAULT_WAIT_S) -> None:
    expected = {
        "QueueUrl": QUEUE_URL,
        "MaxNumberOfMessages": 10,
        "VisibilityTimeout": redrive.RECEIVE_VISIBILITY_S,
        "WaitTimeSeconds": wait,  # every receive is a long poll
    }
    stubber.add_response("receive_message", {"Messages": messages} if messages else {}, expected)


def count(stubber: Stubber, visible: int) -> None:
    stubber.add_response(
        "get_queue_attributes",
        {"Attributes": {"ApproximateNumberOfMessages": str(visible)}},
        {"QueueUrl": QUEUE_URL, "AttributeNames": ["ApproximateNumberOfMessages"]},
    )


def test_an_empty_answer_while_the_queue_still_counts_messages_does_not_end_the_read() -> None:
    sqs = boto3.client("sqs", region_name="us-east-1")
    stubber = Stubber(sqs)
    receive(stubber, [])  # SQS may answer empty while messages wait (and short polls often do)
    count(stubber, 2)
    receive(stubber, [sqs_message(1), sqs_message(2)])
    receive(stubber, [])
    count(stubber, 0)  # now the queue agrees: read to the end
    with stubber:
        drained = redrive.drain(sqs, QUEUE_URL, limit=100)
        stubber.assert_no_pending_responses()
    assert [m["MessageId"] for m in drained.messages] == ["m-1", "m-2"]
    assert drained.left_in_queue == 0


def test_reading_gives_up_after_consecutive_empty_long_polls_and_says_what_is_left() -> None:
    sqs = boto3.client("sqs", region_name="us-east-1")
    stubber = Stubber(sqs)
    for _ in range(redrive.MAX_EMPTY_POLLS):
        receive(stubber, [], wait=3)
        count(stubber, 4)
    with stubber:
        drained = redrive.drain(sqs, QUEUE_URL, limit=100, wait_seconds=3)
        stubber.assert_no_pending_responses()
    assert drained.messages == [] and drained.left_in_queue == 4
    assert drained.empty_polls == redrive.MAX_EMPTY_POLLS
    report = redrive.RedriveReport(dry_run=True, left_in_queue=4, empty_polls=drained.empty_polls)
    assert "queue still counting 4 visible message(s)" in redrive.format_report(report)


@pytest.fixture
def parking_queue(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    from moto import mock_aws

    with mock_aws():
        url = boto3.client("sqs").create_queue(QueueName="voicebridge-parking")["QueueUrl"]
        monkeypatch.setenv("PARKING_QUEUE_URL", url)
        yield url


def visible(url: str) -> int:
    attributes = boto3.client("sqs").get_queue_attributes(QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages"])
    return int(attributes["Attributes"]["ApproximateNumberOfMessages"])


def test_every_parked_message_is_read_in_many_long_polls(
    parking_queue: str, capsys: pytest.CaptureFixture[str]
) -> None:
    sqs: Any = boto3.client("sqs")
    for index in range(23):  # more than one receive's worth (10)
        sqs.send_message(QueueUrl=parking_queue, MessageBody=parked_body(f"c-{index}", str(index)))

    code = main(["redrive", "--dry-run", "--wait-seconds", "1"])

    out = capsys.readouterr().out
    assert code == 0
    assert out.splitlines()[0] == "dry run: 23 messages, 23 records would be redriven"
    assert "still counting" not in out
    assert visible(parking_queue) == 23  # a dry run gives every message back at once


def test_a_queue_that_does_not_exist_is_an_aws_error_in_one_line(
    parking_queue: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["redrive", "--queue-url", parking_queue + "-gone", "--wait-seconds", "1"])
    err = capsys.readouterr().err.splitlines()
    assert code == 1
    (line,) = err
    assert line.startswith("voicebridge redrive: AWS error: ") and "NonExistentQueue" in line
