"""PostCallFunction through its real handler: S3 (moto) Object Created events -> the emulator over HTTP."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest

from tests.functional.conftest import Stack
from voicebridge.feed.replay import ReplayContext

FIXTURES = Path(__file__).resolve().parents[2] / "events" / "postcall" / "bucket"
SAMPLES = Path("/work/shared/reference/samples/postcall")
BUCKET = "contact-lens-recordings"
DAY = "2026/03/14"
C1 = "3f1c2b9a-7d4e-4c1a-9e2b-5a6d7c8e9f01"  # both variants and a redacted recording
C2 = "8a2d4e6f-1b3c-4d5e-8f9a-0b1c2d3e4f52"
C3 = "c5e7a9b1-2d4f-4a6c-8e0b-1d3f5a7c9e63"
C5 = "5b6c7d8e-9f0a-4b1c-8d2e-3f4a5b6c7d85"  # raw only
C1_REDACTED = f"Analysis/Voice/Redacted/{DAY}/{C1}_analysis_redacted_2026-03-14T10:09:41Z.json"
C1_RAW = f"Analysis/Voice/{DAY}/{C1}_analysis_2026-03-14T10:09:41Z.json"
C5_RAW = f"Analysis/Voice/{DAY}/{C5}_analysis_2026-03-14T14:45:00Z.json"


@dataclass
class PostCall:
    stack: Stack
    keys: list[str]

    def invoke(self, event: dict[str, Any]) -> dict[str, Any]:
        from bridge.postcall_handler import lambda_handler

        response: dict[str, Any] = lambda_handler(event, ReplayContext(60))
        return response

    def created(self, key: str, bucket: str = BUCKET) -> dict[str, Any]:
        return self.invoke(eventbridge(bucket, key))

    def configure(self, monkeypatch: pytest.MonkeyPatch, **values: str) -> None:
        from bridge.postcall import wiring

        for name, value in values.items():
            monkeypatch.setenv(name, value)
        wiring.reset()


def eventbridge(bucket: str, key: str) -> dict[str, Any]:
    return {
        "version": "0",
        "id": "17793124-05d4-b198-2fde-7ededc63b103",
        "detail-type": "Object Created",
        "source": "aws.s3",
        "account": "123456789012",
        "region": "us-east-1",
        "resources": [f"arn:aws:s3:::{bucket}"],
        "detail": {
            "version": "0",
            "bucket": {"name": bucket},
            "object": {"key": key, "size": 1},
            "reason": "PutObject",
        },
    }


def notification(bucket: str, key: str) -> dict[str, Any]:
    return {
        "Records": [
            {
                "eventVersion": "2.1",
                "eventSource": "aws:s3",
                "eventName": "ObjectCreated:Put",
                "s3": {"bucket": {"name": bucket}, "object": {"key": key.replace(":", "%3A"), "eTag": "x"}},
            }
        ]
    }


@pytest.fixture
def postcall(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> Iterator[PostCall]:
    from bridge.postcall import wiring

    s3 = boto3.client("s3")
    s3.create_bucket(Bucket=BUCKET)
    keys = []
    for path in sorted(FIXTURES.rglob("*")):
        if path.is_file():
            key = str(path.relative_to(FIXTURES))
            s3.put_object(Bucket=BUCKET, Key=key, Body=path.read_bytes())
            keys.append(key)
    monkeypatch.setenv("TRANSCRIPT_SOURCE", "postcall")
    monkeypatch.setenv("ANALYSIS_BUCKET", BUCKET)
    wiring.reset()
    yield PostCall(stack, keys)
    wiring.reset()


def fixture(key: str) -> dict[str, Any]:
    document: dict[str, Any] = json.loads((FIXTURES / key).read_text())
    return document


def assert_stored_exactly(stack: Stack, contact: str, key: str) -> dict[str, str]:
    """One closed interaction whose turns are the file's, each once, with content, participant, offsets,
    sentiment and loudness exactly as given; returns the interaction row."""
    (interaction,) = stack.interactions(contact)
    assert interaction["state"] == "closed_complete"
    assert interaction["conversation_started"]
    turns = [m for m in stack.messages(contact) if m["is_internal"] != "true"]
    source = sorted(fixture(key)["Transcript"], key=lambda t: (t["BeginOffsetMillis"], t["EndOffsetMillis"]))
    assert [m["source_message_id"] for m in turns] == [t["Id"] for t in source]
    for stored, turn in zip(turns, source, strict=True):
        assert stored["payload"] == turn["Content"]
        assert stored["participant"] == turn["ParticipantId"]
        assert (int(stored["begin_offset_millis"]), int(stored["end_offset_millis"])) == (
            turn["BeginOffsetMillis"],
            turn["EndOffsetMillis"],
        )
        assert json.loads(stored["loudness_score"]) == turn["LoudnessScore"]
        expected_sentiment = turn["Sentiment"] if turn["Sentiment"] != "MIXED" else ""
        assert (stored["sentiment"] or "").upper() == expected_sentiment
    return interaction


def test_done_when_redacted_then_raw_then_again_through_events(
    postcall: PostCall, monkeypatch: pytest.MonkeyPatch
) -> None:
    stack = postcall.stack
    for key in postcall.keys:  # every object of the bucket, recordings and the chat file included
        postcall.created(key)
    postcall.configure(monkeypatch, ANALYSIS_VARIANT="raw")
    for key in postcall.keys:
        postcall.invoke(notification(BUCKET, key))  # the classic notification shape, URL-encoded keys
    for key in postcall.keys:
        postcall.created(key)

    first = assert_stored_exactly(stack, C1, C1_REDACTED)  # the redacted variant came first and stays
    assert any("[PII]" in m["payload"] for m in stack.messages(C1))
    assert first["conversation_started"] == "2026-03-14 10:09:41"  # no Connect offline: the key's timestamp
    assert_stored_exactly(stack, C2, f"Analysis/Voice/Redacted/{DAY}/{C2}_analysis_redacted_2026-03-14T11:31:07Z.json")
    assert_stored_exactly(stack, C3, f"Analysis/Voice/Redacted/{DAY}/{C3}_analysis_redacted_2026-03-14T12:02:55Z.json")
    assert_stored_exactly(stack, C5, f"Analysis/Voice/{DAY}/{C5}_analysis_2026-03-14T14:45:00Z.json")
    assert len(stack.table("interaction")) == 4  # the chat file and the recording made none
    notes = [m["payload"] for m in stack.messages(C2) if m["is_internal"] == "true"]
    assert notes == [
        "Contact Lens category matched: DeliveryIssue",
        "Contact Lens category matched: NoAgentGreeting",
        "Post-contact summary: The parcel did not arrive; the agent will send a replacement today.",
    ]
    assert stack.parked() == []


def test_a_redelivered_event_is_success_and_changes_nothing(postcall: PostCall) -> None:
    assert postcall.created(C1_REDACTED) == {"files": 1, "imported": 1}
    before = postcall.stack.emulator.store.counts()
    assert postcall.created(C1_REDACTED) == {"files": 1, "already imported": 1}
    assert postcall.stack.emulator.store.counts() == before


def test_transcript_source_realtime_ignores_files(postcall: PostCall, monkeypatch: pytest.MonkeyPatch) -> None:
    postcall.configure(monkeypatch, TRANSCRIPT_SOURCE="realtime")
    assert postcall.created(C1_REDACTED)["ignored"] is True
    assert postcall.stack.table("interaction") == []


def test_a_contact_the_live_path_wrote_is_never_given_a_transcript(postcall: PostCall) -> None:
    from bridge.adapters.dynamodb import DynamoContactStore

    DynamoContactStore(boto3.client("dynamodb"), "contacts").claim(C1, "instance", 1_700_000_000)
    assert postcall.created(C1_REDACTED) == {"files": 1, "skipped": 1}
    assert postcall.stack.table("interaction") == []


def test_an_interaction_with_live_messages_is_left_alone_when_the_item_expired(postcall: PostCall) -> None:
    import requests

    stack = postcall.stack
    url, auth = stack.emulator.url, stack.auth
    api = f"{url}/api/now/v1/cs/voice-interactions"
    interaction = requests.post(api, json={"userId": "x", "clientSessionId": C1}, auth=auth, timeout=10).json()
    live = {"id": "live-1", "content": "hi", "participantId": "AGENT", "beginOffsetMillis": 0, "endOffsetMillis": 1}
    requests.post(f"{api}/{interaction['result']['interactionId']}/messages", json=[live], auth=auth, timeout=10)
    assert postcall.created(C1_REDACTED) == {"files": 1, "skipped": 1}
    assert [m["source_message_id"] for m in stack.messages(C1)] == ["live-1"]


@pytest.mark.parametrize(
    "fault",
    [
        {"action": "status", "status": 503, "method": "POST", "path": "/transcript$", "times": 4},
        {"action": "status", "status": 429, "method": "POST", "path": "/transcript$", "times": 4},
        {"action": "ambiguous_500", "method": "POST", "path": "/transcript$"},
        {"action": "ambiguous_drop", "method": "POST", "path": "/transcript$"},
        {"action": "ambiguous_500", "method": "POST", "path": "voice-interactions$"},
        {"action": "status", "status": 503, "method": "PATCH", "path": "/state$", "times": 4},
    ],
    ids=[
        "503-transcript",
        "429-transcript",
        "500-applied-transcript",
        "drop-applied-transcript",
        "500-create",
        "503-close",
    ],
)
def test_retryable_failures_raise_and_the_retry_imports_once(postcall: PostCall, fault: dict[str, Any]) -> None:
    from bridge.errors import RetryableError

    postcall.stack.emulator.add_fault_rules([fault])
    with pytest.raises(RetryableError):
        postcall.created(C1_REDACTED)
    assert postcall.created(C1_REDACTED) == {"files": 1, "imported": 1}  # the claim was released: at once
    assert_stored_exactly(postcall.stack, C1, C1_REDACTED)
    assert postcall.stack.parked() == []


def test_a_400_from_servicenow_is_parked_with_its_message(postcall: PostCall) -> None:
    postcall.stack.emulator.add_fault_rules(
        [{"action": "status", "status": 400, "method": "POST", "path": "/transcript$"}]
    )
    assert postcall.created(C1_REDACTED) == {"files": 1, "parked": 1}
    (parked,) = postcall.stack.parked()
    assert parked["reason_class"] == "servicenow_rejected"
    assert parked["contact_id"] == C1
    assert parked["records"] == [{"bucket": BUCKET, "key": C1_REDACTED, "variant": "redacted"}]
    assert parked["error"]["status"] == 400 and parked["error"]["message"]


def test_a_bad_file_is_parked_with_its_bucket_key_and_reason(postcall: PostCall) -> None:
    key = f"Analysis/Voice/Redacted/{DAY}/{C2}_analysis_redacted_2026-03-14T09:00:00Z.json"
    boto3.client("s3").put_object(
        Bucket=BUCKET, Key=key, Body=(SAMPLES / "awsdocs-current-original.not-json.txt").read_bytes()
    )
    assert postcall.created(key) == {"files": 1, "parked": 1}
    (parked,) = postcall.stack.parked()
    assert parked["reason_class"] == "postcall_bad_file"
    assert parked["records"] == [{"bucket": BUCKET, "key": key, "variant": "redacted"}]
    assert parked["reason"].startswith("not valid JSON")
    assert postcall.stack.table("interaction") == []


def test_other_buckets_and_the_other_variant_are_skipped(postcall: PostCall) -> None:
    assert postcall.created(C1_REDACTED, bucket="somebody-elses") == {"files": 1, "skipped": 1}
    assert postcall.created(C1_RAW) == {"files": 1, "skipped": 1}
    assert postcall.stack.table("interaction") == []


def test_an_unrecognised_event_is_parked_whole(postcall: PostCall) -> None:
    assert postcall.invoke({"hello": "world"}) == {"imported": 0, "parked": 1}
    (parked,) = postcall.stack.parked()
    assert parked["reason_class"] == "postcall_unrecognised_event"
    assert parked["records"] == [{"hello": "world"}]


def test_the_redacted_variant_closes_with_the_redacted_recording(
    postcall: PostCall, monkeypatch: pytest.MonkeyPatch
) -> None:
    postcall.configure(monkeypatch, RECORDING_URL_TEMPLATE="s3://{recording_location}")
    postcall.created(C1_REDACTED)
    (interaction,) = postcall.stack.interactions(C1)
    assert interaction["recording_url"] == (
        f"s3://{BUCKET}/Analysis/Voice/Redacted/{DAY}/{C1}_call_recording_redacted_2026-03-14T10:09:41Z.wav"
    )


def contact_item(contact: str) -> dict[str, Any]:
    item: dict[str, Any] = boto3.client("dynamodb").get_item(TableName="contacts", Key={"contact_id": {"S": contact}})[
        "Item"
    ]
    return item


def test_an_expired_import_record_is_found_in_servicenow_and_nothing_is_added(postcall: PostCall) -> None:
    postcall.created(C1_REDACTED)
    boto3.client("dynamodb").delete_item(TableName="contacts", Key={"contact_id": {"S": C1}})  # the TTL ran out
    before = postcall.stack.emulator.store.counts()
    assert postcall.created(C1_REDACTED) == {"files": 1, "already imported": 1}
    assert postcall.stack.emulator.store.counts() == before
    assert contact_item(C1)["postcall_stage"]["S"] == "done"


def test_a_held_claim_means_retry_later_and_nothing_is_created(postcall: PostCall) -> None:
    import time

    from bridge.adapters.dynamodb import DynamoContactStore
    from bridge.errors import RetryableError
    from bridge.postcall.record import ImportRecord, ImportStage

    now = int(time.time())
    record = ImportRecord(C1, C1_REDACTED, "etag", "redacted", ImportStage.CLAIMED, 1, lease_until=now + 300)
    DynamoContactStore(boto3.client("dynamodb"), "contacts").claim_import(record)
    with pytest.raises(RetryableError, match="claim held"):
        postcall.created(C1_REDACTED)
    assert postcall.stack.table("interaction") == []


def test_a_stalled_import_is_resumed_from_its_stage_without_a_second_interaction(postcall: PostCall) -> None:
    from bridge.adapters.dynamodb import DynamoContactStore
    from bridge.errors import RetryableError
    from bridge.postcall.record import from_item

    # The first delivery stops after creating the interaction (ServiceNow down for /transcript); its claim is
    # released, or expires if the worker died (set here): the next delivery resumes at "opened".
    postcall.stack.emulator.add_fault_rules(
        [{"action": "status", "status": 503, "method": "POST", "path": "/transcript$", "times": 4}]
    )
    with pytest.raises(RetryableError):
        postcall.created(C1_REDACTED)
    store = DynamoContactStore(boto3.client("dynamodb"), "contacts")
    item = from_item(contact_item(C1))
    assert item.record is not None and item.record.stage.value == "opened"
    store.save_import(item.record.evolve(lease_until=1), item.record.version)  # an expired claim
    assert postcall.created(C1_REDACTED) == {"files": 1, "imported": 1}
    assert_stored_exactly(postcall.stack, C1, C1_REDACTED)


def test_the_live_path_reads_an_import_record_as_a_closed_contact(postcall: PostCall) -> None:
    from bridge.adapters.dynamodb import DynamoContactStore
    from bridge.models import ContactStatus

    postcall.created(C1_REDACTED)
    state = DynamoContactStore(boto3.client("dynamodb"), "contacts").load_many([C1])[C1]
    assert state.status is ContactStatus.CLOSED
    (interaction,) = postcall.stack.interactions(C1)
    assert state.interaction_id == interaction["sys_id"]


def test_an_unknown_redact_content_is_a_configuration_error(
    postcall: PostCall, monkeypatch: pytest.MonkeyPatch
) -> None:
    from bridge.errors import ConfigurationError

    postcall.configure(monkeypatch, REDACT_CONTENT="everything")
    with pytest.raises(ConfigurationError, match="REDACT_CONTENT"):
        postcall.created(C1_REDACTED)


def test_the_raw_variant_closes_with_the_files_recording_when_connect_has_none(
    postcall: PostCall, monkeypatch: pytest.MonkeyPatch
) -> None:
    postcall.configure(monkeypatch, ANALYSIS_VARIANT="raw", RECORDING_URL_TEMPLATE="s3://{recording_location}")
    postcall.created(C5_RAW)
    (interaction,) = postcall.stack.interactions(C5)
    assert interaction["recording_url"] == fixture(C5_RAW)["CustomerMetadata"]["InputS3Uri"]


def test_import_records_outlive_the_live_items(postcall: PostCall) -> None:
    postcall.created(C1_REDACTED)
    item = contact_item(C1)
    assert int(item["expires_at"]["N"]) - int(item["created_at"]["N"]) == 400 * 86400


def test_the_handler_publishes_its_counts_as_metrics(
    postcall: PostCall, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("POWERTOOLS_METRICS_DISABLED", "false")
    postcall.created(C1_REDACTED)
    postcall.created(C1_REDACTED)
    documents = [json.loads(line) for line in capsys.readouterr().out.splitlines() if '"_aws"' in line]
    imported = [d for d in documents if "PostCallImported" in d]
    assert [d["PostCallImported"] for d in imported] == [[1.0], [0.0]]
    assert [d["PostCallAlreadyImported"] for d in imported] == [[0.0], [1.0]]
    assert all(d["_aws"]["CloudWatchMetrics"][0]["Namespace"] == "voicebridge-tests" for d in imported)


def test_with_connect_the_caller_agent_anchor_and_recording_come_from_describe_contact(
    postcall: PostCall, monkeypatch: pytest.MonkeyPatch
) -> None:
    import os

    from bridge.postcall.aws import FileConnectClient
    from bridge.postcall.wiring import build_runtime

    environ = {
        **os.environ,
        "CALLER_LOOKUP": "describe_contact",
        "AGENT_LOOKUP": "describe_user",
        "ANALYSIS_VARIANT": "raw",
        "RECORDING_URL_TEMPLATE": "s3://{recording_location}",
    }
    connect = FileConnectClient.load(str(FIXTURES.parent / "connect-contacts.json"))
    runtime = build_runtime(environ, connect_client=connect)
    outcome = runtime.importer.import_object(BUCKET, C1_RAW)
    assert (outcome.status.value, outcome.anchor) == ("imported", "agent_connected")
    (interaction,) = postcall.stack.interactions(C1)
    assert interaction["user_id"] == "+14155550101"
    assert interaction["assigned_to"] == "anna.agent"
    assert interaction["conversation_started"] == "2026-03-14 10:00:02"
    expected = connect.contacts[C1]["Recordings"][0]["Location"]
    assert interaction["recording_url"] == f"s3://{expected}"


def test_without_a_connect_stand_in_lookups_use_amazon_connect(postcall: PostCall) -> None:
    import os

    from bridge.adapters.connect import ConnectDirectoryClient
    from bridge.postcall.aws import RememberingConnectClient
    from bridge.postcall.wiring import build_runtime

    environ = {**os.environ, "CALLER_LOOKUP": "describe_contact", "AGENT_LOOKUP": "describe_user"}
    connect = build_runtime(environ).importer.directory.connect
    assert isinstance(connect, ConnectDirectoryClient)
    assert isinstance(connect.client, RememberingConnectClient)
    assert connect.client._client.meta.service_model.service_name == "connect"


def test_a_read_timeout_on_transcript_is_retried_and_the_transcript_stored_once(
    postcall: PostCall, monkeypatch: pytest.MonkeyPatch
) -> None:
    from bridge.errors import RetryableError

    postcall.configure(monkeypatch, SERVICENOW_READ_TIMEOUT="0.5")
    postcall.stack.emulator.add_fault_rules(
        [{"action": "delay", "delay_ms": 1500, "method": "POST", "path": "/transcript$"}]
    )
    with pytest.raises(RetryableError):
        postcall.created(C1_REDACTED)  # no answer in time: maybe stored, maybe not
    assert postcall.created(C1_REDACTED) == {"files": 1, "imported": 1}
    assert_stored_exactly(postcall.stack, C1, C1_REDACTED)  # whichever request landed, its turns are there once


def test_no_content_in_any_log_line_even_at_debug(
    postcall: PostCall, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    from voicebridge.feed.replay import bridge_log_level

    postcall.configure(monkeypatch, ANALYSIS_VARIANT="raw")
    postcall.stack.emulator.add_fault_rules(
        [{"action": "status", "status": 503, "method": "POST", "path": "/transcript$"}]
    )
    with bridge_log_level("DEBUG"):
        postcall.created(C1_RAW)  # a retried request, lookups falling back, the import: every log line there is
    out, err = capfd.readouterr()
    assert "post-call file imported" in out + err
    for turn in fixture(C1_RAW)["Transcript"]:
        assert turn["Content"] not in out + err
    assert "Peter Jones" not in out + err and "4111" not in out + err
    assert "The customer paid the bill" not in out + err  # the summary
