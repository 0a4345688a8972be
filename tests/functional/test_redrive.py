"""``voicebridge redrive`` through the real handler: moto SQS/DynamoDB in process, the emulator over HTTP."""

from __future__ import annotations

import argparse
import json
from typing import Any

import boto3
import pytest

from tests.events_builder import call_events, envelope, lambda_records, transcript
from tests.functional.conftest import Stack
from voicebridge.feed.fixtures import load_fixture
from voicebridge.operate import redrive

pytestmark = pytest.mark.functional


def run_redrive(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    parser = argparse.ArgumentParser()
    redrive.add_arguments(parser)
    code = redrive.run(parser.parse_args(["--wait-seconds", "1", *argv]))  # the last, empty long poll: 1 s
    return code, capsys.readouterr().out


def report(stack: Stack, **options: Any) -> redrive.RedriveReport:
    options.setdefault("wait_seconds", 1)
    return redrive.redrive(redrive.RedriveOptions(queue_url=stack.environment["PARKING_QUEUE_URL"], **options))


def queue_depth(stack: Stack) -> int:
    attributes = boto3.client("sqs").get_queue_attributes(
        QueueUrl=stack.environment["PARKING_QUEUE_URL"],
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    return int(attributes["ApproximateNumberOfMessages"]) + int(attributes["ApproximateNumberOfMessagesNotVisible"])


def peek(stack: Stack) -> list[str]:
    """The queue's bodies, left in the queue (made visible again)."""
    sqs = boto3.client("sqs")
    queue = stack.environment["PARKING_QUEUE_URL"]
    messages = redrive.receive_all(sqs, queue, 100, wait_seconds=1)
    for message in messages:
        sqs.change_message_visibility(QueueUrl=queue, ReceiptHandle=message["ReceiptHandle"], VisibilityTimeout=0)
    return [m["Body"] for m in messages]


def park_with_servicenow_400(stack: Stack, contact: str, turns: int = 3) -> None:
    stack.emulator.add_fault_rules([{"method": "POST", "path": "/messages$", "action": "status", "status": 400}])
    assert stack.invoke(lambda_records(call_events(contact, turns))) == {"batchItemFailures": []}
    assert stack.transcript_ids(contact) == []  # rejected: nothing stored yet


def test_rejected_contact_is_redriven_once_the_fault_is_cleared(
    stack: Stack, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given a contact parked by a ServiceNow 400 (the one-shot fault is used up: "the fix")
    park_with_servicenow_400(stack, "c-fix")
    assert queue_depth(stack) == 1
    # When redrive runs (the handler configured from the environment, as deployed)
    code, out = run_redrive(capsys)
    # Then the full transcript lands once, the interaction is closed, and the queue is empty
    assert code == 0
    assert stack.transcript_ids("c-fix") == ["c-fix-t0000", "c-fix-t0001", "c-fix-t0002"]
    (interaction,) = stack.interactions("c-fix")
    assert interaction["state"] == "closed_complete" and interaction["recording_url"].endswith("/c-fix")
    assert queue_depth(stack) == 0
    assert "messages read 1 (deleted 1" in out and "succeeded 5" in out and "reparked 0" in out
    assert "turn 1" not in out  # never transcript content


def test_redrive_twice_is_a_no_op_and_the_same_items_again_change_nothing(stack: Stack) -> None:
    park_with_servicenow_400(stack, "c-twice")
    bodies = peek(stack)
    first = report(stack)
    assert (first.messages_read, first.succeeded, first.failed) == (1, 5, 0)
    stored = stack.messages("c-twice")

    # Twice in a row: nothing left to read
    second = report(stack)
    assert (second.messages_read, second.records) == (0, 0)

    # The very same parked items once more (an operator re-queues them): the bridge's dedupe makes it a no-op
    sqs = boto3.client("sqs")
    for body in bodies:
        sqs.send_message(QueueUrl=stack.environment["PARKING_QUEUE_URL"], MessageBody=body)
    third = report(stack)
    assert (third.messages_read, third.succeeded, third.reparked_total, third.failed) == (1, 5, 0, 0)
    assert stack.messages("c-twice") == stored
    assert len(stack.interactions("c-twice")) == 1
    assert queue_depth(stack) == 0


def test_after_close_items_are_reparked_and_counted(stack: Stack, capsys: pytest.CaptureFixture[str]) -> None:
    stack.invoke(lambda_records(call_events("c-late", 1)))
    late = lambda_records([envelope("c-late", "SEGMENTS", [transcript("late-1")])], first_sequence_number=10**55)
    stack.invoke(late)
    (old,) = peek(stack)

    code, out = run_redrive(capsys, "--reason", "after_close")

    assert code == 0  # reparked is not a failure: the item moved
    assert "reparked 1 (after_close=1" in out
    (new,) = peek(stack)  # the old message was deleted, a new one carries the record
    assert new != old
    assert json.loads(new)["reason_class"] == "after_close"
    assert json.loads(new)["records"] == json.loads(old)["records"]
    assert stack.transcript_ids("c-late") == ["c-late-t0000"]


def test_dry_run_changes_nothing(stack: Stack, capsys: pytest.CaptureFixture[str]) -> None:
    park_with_servicenow_400(stack, "c-dry", turns=2)
    before = peek(stack)

    code, out = run_redrive(capsys, "--dry-run")

    assert code == 0
    assert "dry run: 1 messages, 4 records" in out and "servicenow_rejected" in out and "c-dry" in out
    assert "turn" not in out  # counts, never content
    assert sorted(peek(stack)) == sorted(before)
    assert stack.transcript_ids("c-dry") == []


@pytest.mark.parametrize(
    ("name", "reason"),
    [("not-base64", "undecodable"), ("not-json", "invalid_json"), ("not-an-object", "malformed")],
)
def test_poison_is_reparked_with_the_same_reason_and_payload(stack: Stack, name: str, reason: str) -> None:
    records = [r.to_lambda_record() for r in load_fixture(f"events/malformed/{name}.json")]
    stack.invoke(records)
    (old,) = peek(stack)

    result = report(stack)

    parked_records = len(json.loads(old)["records"])
    assert result.reparked == {reason: parked_records} and result.failed == 0 and result.succeeded == 0
    (new,) = peek(stack)
    assert json.loads(new)["reason_class"] == reason
    assert json.loads(new)["records"] == json.loads(old)["records"]  # data and sequence numbers verbatim


def test_filters_keep_other_items_in_the_queue(stack: Stack) -> None:
    park_with_servicenow_400(stack, "c-keep", turns=1)
    park_with_servicenow_400(stack, "c-take", turns=1)

    result = report(stack, contacts=frozenset({"c-take"}))

    assert result.messages_read == 1 and result.messages_skipped == 1
    assert stack.transcript_ids("c-take") == ["c-take-t0000"]
    assert stack.transcript_ids("c-keep") == []
    (left,) = peek(stack)
    assert json.loads(left)["contact_id"] == "c-keep"
    assert report(stack, reasons=frozenset({"after_close"})).messages_read == 0


def test_records_that_still_fail_stay_in_the_queue(stack: Stack, capsys: pytest.CaptureFixture[str]) -> None:
    park_with_servicenow_400(stack, "c-down", turns=1)
    # ServiceNow is down for the whole redrive: every retry answers 503
    stack.emulator.add_fault_rules(
        [{"method": "POST", "path": "/messages$", "action": "status", "status": 503, "times": 100}]
    )

    code, out = run_redrive(capsys, "--max-retries", "1")

    assert code == 1 and "failed 3 (left in the queue)" in out
    assert queue_depth(stack) == 1


def test_without_configuration_redrive_names_what_is_missing(
    stack: Stack, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    park_with_servicenow_400(stack, "c-conf", turns=1)
    monkeypatch.delenv("SERVICENOW_SECRET_ARN")
    parser = argparse.ArgumentParser()
    redrive.add_arguments(parser)
    code = redrive.run(parser.parse_args([]))
    assert code == 2 and "SERVICENOW_SECRET_ARN" in capsys.readouterr().err
    assert queue_depth(stack) == 1
