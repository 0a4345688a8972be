"""The real Lambda handler, in process: moto for AWS, the ServiceNow emulator over real HTTP."""

from __future__ import annotations

import base64
import json

import pytest

from tests.events_builder import call_events, envelope, lambda_records, transcript, utterance
from tests.functional.conftest import Stack
from voicebridge.emulator import EmulatorOptions
from voicebridge.feed.fixtures import load_fixture

pytestmark = pytest.mark.functional
API = "/api/now/v1/cs/voice-interactions"


def seq(record: dict) -> int:
    return int(record["kinesis"]["sequenceNumber"])


def test_full_recorded_call_lands_in_servicenow_order(stack: Stack) -> None:
    records = [r.to_lambda_record() for r in load_fixture("events/full-call.jsonl")]
    for start in range(0, len(records), 10):
        assert stack.invoke(records[start : start + 10]) == {"batchItemFailures": []}
    (interaction,) = stack.table("interaction")
    assert interaction["state"] == "closed_complete"
    assert interaction["recording_url"].endswith(f"/contact-trace-records/details/{interaction['client_session_id']}")
    messages = stack.messages(interaction["client_session_id"])
    transcripts = [m for m in messages if m["is_internal"] == "false"]
    assert len(transcripts) == 45 and len(messages) == 49
    offsets = [(int(m["begin_offset_millis"]), int(m["end_offset_millis"])) for m in messages]
    assert offsets == sorted(offsets)
    assert {m["participant"] for m in transcripts} == {"AGENT", "CUSTOMER"}
    assert not stack.parked()


def test_same_batch_delivered_twice_creates_nothing_twice(stack: Stack) -> None:
    records = lambda_records(call_events("c-twice", 6))
    stack.invoke(records)
    stack.invoke(records)
    assert len(stack.interactions("c-twice")) == 1
    assert stack.transcript_ids("c-twice") == [f"c-twice-t{i:04d}" for i in range(6)]


def test_batch_retried_from_a_middle_sequence_number(stack: Stack) -> None:
    records = lambda_records(call_events("c-mid", 8))
    stack.invoke(records)
    stack.invoke(records[4:])  # Lambda redelivers everything after a reported failure
    assert stack.transcript_ids("c-mid") == [f"c-mid-t{i:04d}" for i in range(8)]


def test_interleaved_contacts_and_one_batch_lifecycle(stack: Stack) -> None:
    a, b = call_events("c-a", 4), call_events("c-b", 3, end="FAILED")
    merged = [a[0], b[0], a[1], b[1], b[2], a[2], a[3], b[3], a[4], b[4], a[5]]
    assert stack.invoke(lambda_records(merged)) == {"batchItemFailures": []}
    assert stack.transcript_ids("c-a") == [f"c-a-t{i:04d}" for i in range(4)]
    assert stack.transcript_ids("c-b") == [f"c-b-t{i:04d}" for i in range(3)]
    assert {i["state"] for i in stack.table("interaction")} == {"closed_complete"}  # FAILED also closes


def test_late_join_opens_the_interaction_first(stack: Stack) -> None:
    stack.invoke(lambda_records([envelope("c-late", "SEGMENTS", [transcript("x1")]), envelope("c-late", "COMPLETED")]))
    (interaction,) = stack.interactions("c-late")
    assert interaction["state"] == "closed_complete" and stack.transcript_ids("c-late") == ["x1"]


def test_utterances_are_never_stored(stack: Stack) -> None:
    stack.invoke(lambda_records([envelope("c-u", "SEGMENTS", [utterance("t1"), utterance("t1")])]))
    assert stack.transcript_ids("c-u") == []


def test_events_after_close_are_parked_with_payload(stack: Stack) -> None:
    stack.invoke(lambda_records(call_events("c-after", 1)))
    late = lambda_records([envelope("c-after", "SEGMENTS", [transcript("late")])], first_sequence_number=10**55)
    assert stack.invoke(late) == {"batchItemFailures": []}
    (parked,) = stack.parked()
    assert parked["reason_class"] == "after_close" and parked["contact_id"] == "c-after"
    assert json.loads(base64.b64decode(parked["records"][0]["data"]))["Segments"][0]["Transcript"]["Id"] == "late"
    assert stack.transcript_ids("c-after") == ["c-after-t0000"]


@pytest.mark.parametrize(
    ("name", "reasons"),
    [
        ("not-base64", {"undecodable"}),
        ("not-utf8", {"undecodable"}),
        ("not-json", {"invalid_json"}),
        ("chat-v2", {"unsupported"}),
        ("unknown-event-type", {"unsupported"}),
        ("transcript-missing-fields", {"malformed_segment"}),
        ("not-an-object", {"malformed"}),
    ],
)
def test_each_malformed_input_is_parked_and_the_batch_moves_on(stack: Stack, name: str, reasons: set[str]) -> None:
    records = [r.to_lambda_record() for r in load_fixture(f"events/malformed/{name}.json")]
    assert stack.invoke(records) == {"batchItemFailures": []}
    parked = stack.parked()
    assert {p["reason_class"] for p in parked} == reasons
    raw = {r["kinesis"]["data"] for r in records}
    assert all(p["records"][0]["data"] in raw for p in parked)  # the payload, verbatim


def test_servicenow_400_parks_with_message_detail_and_transaction_id(stack: Stack) -> None:
    stack.emulator.add_fault_rules([{"method": "POST", "path": "/messages$", "action": "status", "status": 400}])
    records = lambda_records(call_events("c-400", 2))
    assert stack.invoke(records) == {"batchItemFailures": []}
    (parked,) = stack.parked()
    assert parked["reason_class"] == "servicenow_rejected"
    assert parked["error"]["status"] == 400 and parked["error"]["transaction_id"]
    assert len(parked["records"]) == len(records)
    # redrive after the fix: everything lands, once
    stack.invoke(lambda_records(call_events("c-400", 2)))
    assert stack.transcript_ids("c-400") == ["c-400-t0000", "c-400-t0001"]
    assert stack.interactions("c-400")[0]["state"] == "closed_complete"


def test_servicenow_404_on_close_parks(stack: Stack) -> None:
    stack.emulator.add_fault_rules([{"method": "PATCH", "path": "/state$", "action": "status", "status": 404}])
    assert stack.invoke(lambda_records(call_events("c-404", 1))) == {"batchItemFailures": []}
    assert [p["reason_class"] for p in stack.parked()] == ["servicenow_rejected"]


def test_servicenow_429_is_retried_within_the_invocation(stack: Stack) -> None:
    stack.emulator.add_fault_rules(
        [{"method": "POST", "path": "/messages$", "action": "status", "status": 429, "retry_after": 0, "times": 2}]
    )
    assert stack.invoke(lambda_records(call_events("c-429", 2))) == {"batchItemFailures": []}
    assert stack.transcript_ids("c-429") == ["c-429-t0000", "c-429-t0001"]


def test_servicenow_503_that_persists_reports_the_contact_for_redelivery(stack: Stack) -> None:
    stack.emulator.add_fault_rules(
        [{"method": "POST", "path": "/messages$", "action": "status", "status": 503, "times": 10}]
    )
    # The healthy contact only opens (no /messages call), so the rule can only hit c-503.
    records = lambda_records(call_events("c-503", 2) + [envelope("c-ok", "STARTED")])
    response = stack.invoke(records)
    assert response == {"batchItemFailures": [{"itemIdentifier": records[0]["kinesis"]["sequenceNumber"]}]}
    assert len(stack.interactions("c-ok")) == 1  # the other contact completed in the same invocation
    stack.emulator.clear_faults()
    assert stack.invoke(records) == {"batchItemFailures": []}
    assert stack.transcript_ids("c-503") == ["c-503-t0000", "c-503-t0001"]
    assert len(stack.interactions("c-ok")) == 1 and len(stack.interactions("c-503")) == 1


def test_read_timeout_on_messages_is_read_back_not_reposted(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SERVICENOW_READ_TIMEOUT", "0.5")
    stack.emulator.add_fault_rules([{"method": "POST", "path": "/messages$", "action": "delay", "delay_ms": 1500}])
    assert stack.invoke(lambda_records(call_events("c-slow", 3))) == {"batchItemFailures": []}
    assert stack.transcript_ids("c-slow") == [f"c-slow-t{i:04d}" for i in range(3)]


def test_ambiguous_drop_after_create_recovers_the_interaction(stack: Stack) -> None:
    stack.emulator.add_fault_rules([{"method": "POST", "path": "voice-interactions$", "action": "ambiguous_drop"}])
    records = lambda_records(call_events("c-drop", 2))
    first = stack.invoke(records)
    assert first["batchItemFailures"]  # outcome unknown: redeliver, do not blindly re-create
    assert stack.invoke(records) == {"batchItemFailures": []}
    assert len(stack.interactions("c-drop")) == 1
    assert stack.transcript_ids("c-drop") == ["c-drop-t0000", "c-drop-t0001"]


def test_missing_secret_parks_the_batch_with_a_configuration_reason(stack: Stack, monkeypatch) -> None:
    monkeypatch.setenv("SERVICENOW_SECRET_ARN", "arn:aws:secretsmanager:us-east-1:123456789012:secret:nope-AbCdEf")
    assert stack.invoke(lambda_records(call_events("c-secret", 1))) == {"batchItemFailures": []}
    parked = stack.parked()
    assert {p["reason_class"] for p in parked} == {"configuration"}
    assert "SERVICENOW_SECRET_ARN" in parked[0]["reason"]


def test_malformed_secret_names_what_is_missing_never_the_value(stack: Stack) -> None:
    import boto3

    boto3.client("secretsmanager").put_secret_value(
        SecretId=stack.environment["SERVICENOW_SECRET_ARN"], SecretString=json.dumps({"username": "svc-hunter2"})
    )
    stack.invoke(lambda_records(call_events("c-bad-secret", 1)))
    (parked,) = stack.parked()
    assert parked["reason_class"] == "configuration" and "password" in parked["reason"]
    assert "hunter2" not in json.dumps(parked)


def test_missing_configuration_parks_everything_naming_the_variable(stack: Stack, monkeypatch) -> None:
    monkeypatch.delenv("SERVICENOW_URL")
    records = lambda_records(call_events("c-config", 1))
    assert stack.invoke(records) == {"batchItemFailures": []}
    (parked,) = stack.parked()
    assert parked["reason_class"] == "configuration" and "SERVICENOW_URL" in parked["reason"]
    assert len(parked["records"]) == len(records)


def test_missing_configuration_without_a_parking_queue_fails_the_invocation(stack: Stack, monkeypatch) -> None:
    from bridge.errors import ConfigurationError

    monkeypatch.delenv("SERVICENOW_URL")
    monkeypatch.delenv("PARKING_QUEUE_URL")
    with pytest.raises(ConfigurationError, match="SERVICENOW_URL"):
        stack.invoke(lambda_records(call_events("c-config", 1)))


@pytest.fixture
def oauth_stack(monkeypatch: pytest.MonkeyPatch, stack: Stack) -> Stack:
    import boto3

    boto3.client("secretsmanager").put_secret_value(
        SecretId=stack.environment["SERVICENOW_SECRET_ARN"],
        SecretString=json.dumps({"client_id": "voicebridge", "client_secret": "voicebridge"}),
    )
    return stack


def test_oauth_client_credentials_work(oauth_stack: Stack) -> None:
    assert oauth_stack.invoke(lambda_records(call_events("c-oauth", 2))) == {"batchItemFailures": []}
    assert oauth_stack.transcript_ids("c-oauth") == ["c-oauth-t0000", "c-oauth-t0001"]


@pytest.mark.parametrize("emulator_options", [EmulatorOptions(token_ttl=1)])
def test_expired_oauth_token_is_refreshed_once(oauth_stack: Stack) -> None:
    import time

    oauth_stack.invoke(lambda_records(call_events("c-ttl", 1, end="")))
    time.sleep(1.2)
    later = lambda_records(
        [envelope("c-ttl", "SEGMENTS", [transcript("late-ok", begin=9000, end=9500)]), envelope("c-ttl", "COMPLETED")],
        first_sequence_number=10**55,
    )
    assert oauth_stack.invoke(later) == {"batchItemFailures": []}
    assert oauth_stack.transcript_ids("c-ttl") == ["c-ttl-t0000", "late-ok"]
    token_requests = sum(n for route, n in oauth_stack.emulator.stats()["by_route"].items() if "oauth_token" in route)
    assert token_requests == 2  # one token, then one refresh after it expired
