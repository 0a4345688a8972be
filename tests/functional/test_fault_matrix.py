"""Issue 4's fault matrix, each row through the real handler: moto for AWS, the emulator over real HTTP.

Every test ends by checking ServiceNow's final state through the Table API: one interaction, every transcript
turn exactly once, in offset order, closed with its recording URL.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from bridge.errors import ConnectThrottledError, ContactStoreUnavailableError
from tests.events_builder import call_events, envelope, lambda_records, transcript
from tests.fakes import FakeConnect
from tests.functional.conftest import Stack
from voicebridge.feed.fixtures import from_lambda_record
from voicebridge.feed.shard import ShardDriver

pytestmark = pytest.mark.functional
TURNS = 4


class Crash(BaseException):
    """The Lambda runtime dying mid-invocation: nothing in the bridge catches a BaseException."""


def deliver(stack: Stack, records: list[dict[str, Any]], batch_size: int = 100, max_retries: int = 6) -> Any:
    """Kinesis event-source-mapping semantics around the real handler (redelivery from the lowest failure)."""
    driver = ShardDriver(
        [from_lambda_record(r) for r in records],
        lambda event: stack.invoke(event["Records"]),
        batch_size=batch_size,
        max_retries=max_retries,
    )
    report = driver.run()
    assert not report.given_up, report
    return report


def assert_clean(stack: Stack, contact: str, turns: int = TURNS) -> None:
    interactions = stack.interactions(contact)
    assert len(interactions) == 1, f"{len(interactions)} interactions"
    assert stack.transcript_ids(contact) == [f"{contact}-t{i:04d}" for i in range(turns)]
    assert interactions[0]["state"] == "closed_complete"
    assert interactions[0]["recording_url"].endswith(contact)
    assert not stack.parked()


def rule(action: str, path: str = "/messages$", method: str = "POST", **extra: Any) -> dict[str, Any]:
    return {"action": action, "path": path, "method": method, **extra}


# -- ServiceNow answers that were not applied: retried inside the invocation ------------------------------------


@pytest.mark.parametrize(
    "fault",
    [
        rule("status", status=429, retry_after=1),
        rule("status", status=429),  # a full integration semaphore: no Retry-After, exponential backoff
        rule("status", status=502, times=2),
        rule("status", status=503, times=2),
        rule("status", status=504, times=2),
        rule("accepted_202"),  # the session queue dropped it: never a success
        rule("html"),  # a hibernating instance's HTML page
        rule("status", status=503, path="voice-interactions$"),
        rule("status", status=503, path="/state$", method="PATCH"),
    ],
    ids=["429-retry-after", "429-bare", "502", "503", "504", "202", "html", "503-create", "503-close"],
)
def test_not_applied_answers_are_retried_within_the_invocation(stack: Stack, fault: dict[str, Any]) -> None:
    stack.emulator.add_fault_rules([fault])
    contact = "c-retry"
    assert stack.invoke(lambda_records(call_events(contact, TURNS))) == {"batchItemFailures": []}
    assert_clean(stack, contact)
    assert not stack.emulator.pending_faults()  # the fault was served, and survived


# -- ambiguous: maybe applied. Never blindly re-sent ------------------------------------------------------------


@pytest.mark.parametrize(
    "fault",
    [
        rule("ambiguous_500"),
        rule("ambiguous_drop"),
        rule("drop"),  # connection reset before anything was applied
        rule("truncated"),
        rule("failure_sentence"),
        rule("delay", delay_ms=1500),  # read timeout (the handler's is 0.5 s here)
        rule("ambiguous_500", path="voice-interactions$"),
        rule("ambiguous_drop", path="voice-interactions$"),
        rule("truncated", path="voice-interactions$"),
        rule("ambiguous_500", path="/conversation$"),
        rule("ambiguous_drop", path="/conversation$"),
        rule("ambiguous_500", path="/state$", method="PATCH"),
        rule("ambiguous_drop", path="/state$", method="PATCH"),
    ],
    ids=[
        "msg-500",
        "msg-drop",
        "msg-reset",
        "msg-truncated",
        "msg-failure-sentence",
        "msg-read-timeout",
        "create-500",
        "create-drop",
        "create-truncated",
        "conv-500",
        "conv-drop",
        "close-500",
        "close-drop",
    ],
)
def test_ambiguous_answers_end_with_exactly_one_of_everything(
    stack: Stack, monkeypatch: pytest.MonkeyPatch, fault: dict[str, Any]
) -> None:
    monkeypatch.setenv("SERVICENOW_READ_TIMEOUT", "0.5")
    stack.emulator.add_fault_rules([fault])
    contact = "c-ambiguous"
    deliver(stack, lambda_records(call_events(contact, TURNS)))
    assert not stack.emulator.pending_faults()
    assert_clean(stack, contact)
    routes = stack.emulator.stats()["by_route"]
    assert routes.get("POST /cs/voice-interactions", 0) <= 2  # never a third blind create


# -- rejected: parked with the error's data, shard moves on ------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "path"),
    [
        (400, "/messages$"),
        (403, "/messages$"),
        (404, "/messages$"),
        (400, "voice-interactions$"),
        (403, "/conversation$"),
    ],
)
def test_rejections_park_with_message_detail_and_transaction_id(stack: Stack, status: int, path: str) -> None:
    stack.emulator.add_fault_rules([rule("status", path=path, status=status)])
    contact = "c-rejected"
    records = lambda_records(call_events(contact, TURNS))
    assert stack.invoke(records) == {"batchItemFailures": []}
    (parked,) = stack.parked()
    assert parked["reason_class"] == "servicenow_rejected" and parked["contact_id"] == contact
    error = parked["error"]
    assert error["status"] == status and error["message"] and error["transaction_id"]
    assert [r["sequenceNumber"] for r in parked["records"]] == [r["kinesis"]["sequenceNumber"] for r in records]
    # redriving the parked records after the fix completes the call exactly once
    stack.invoke(records)
    assert_clean(stack, contact)


def test_wrong_credentials_are_a_clear_permanent_configuration_error(stack: Stack) -> None:
    import boto3

    boto3.client("secretsmanager").put_secret_value(
        SecretId=stack.environment["SERVICENOW_SECRET_ARN"],
        SecretString=json.dumps({"username": "admin", "password": "x"}),
    )
    assert stack.invoke(lambda_records(call_events("c-creds", 1))) == {"batchItemFailures": []}
    (parked,) = stack.parked()
    assert parked["reason_class"] == "configuration" and "credentials" in parked["reason"]
    assert parked["error"]["status"] == 401


# -- AWS-side faults --------------------------------------------------------------------------------------------


def _wrap_once(target: Any, name: str, make_error: Callable[[], BaseException], times: int = 1) -> None:
    original = getattr(target, name)
    remaining = [times]

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if remaining[0] > 0:
            remaining[0] -= 1
            raise make_error()
        return original(*args, **kwargs)

    setattr(target, name, wrapper)


def _throttled(operation: str) -> BaseException:
    from botocore.exceptions import ClientError

    return ClientError({"Error": {"Code": "ProvisionedThroughputExceededException", "Message": "slow down"}}, operation)


@pytest.mark.parametrize("operation", ["batch_get_item", "put_item"])
def test_dynamodb_throttling_is_reported_and_redelivered(stack: Stack, operation: str) -> None:
    from bridge import factory

    bridge = factory.get_bridge()
    _wrap_once(bridge.store.client, operation, lambda: _throttled(operation), times=2)
    contact = "c-throttled"
    report = deliver(stack, lambda_records(call_events(contact, TURNS)))
    assert report.invocations >= 2
    assert_clean(stack, contact)


def test_conditional_check_conflict_never_creates_a_second_interaction(stack: Stack) -> None:
    """Another delivery claims the contact between our read and our claim: we lose the race and retry."""
    from bridge import factory
    from bridge.models import ContactState, ContactStatus

    bridge = factory.get_bridge()
    original = bridge.store.load_many

    def load_then_race(contact_ids: list[str]) -> dict[str, ContactState]:
        states = original(contact_ids)
        if "c-race" in contact_ids and "c-race" not in states:
            bridge.store.claim("c-race", "instance", 1)  # the other delivery's claim lands first
        return states

    bridge.store.load_many = load_then_race  # type: ignore[method-assign]
    records = lambda_records(call_events("c-race", TURNS))
    first = stack.invoke(records)
    assert first["batchItemFailures"]  # lost the race: redeliver
    bridge.store.load_many = original  # type: ignore[method-assign]
    assert stack.invoke(records) == {"batchItemFailures": []}
    assert_clean(stack, "c-race")
    assert ContactStatus.CLOSED.value == bridge.store.load_many(["c-race"])["c-race"].status.value


def test_connect_throttling_is_reported_then_succeeds(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> None:
    from bridge import factory
    from bridge.ports import ContactDetails

    monkeypatch.setenv("CALLER_LOOKUP", "describe_contact")
    factory.reset()
    bridge = factory.get_bridge()
    connect = FakeConnect(ContactDetails("+14155550100"), error=ConnectThrottledError("DescribeContact: throttled"))
    bridge.processor.runner.directory.connect = connect
    records = lambda_records(call_events("c-connect", TURNS))
    assert stack.invoke(records)["batchItemFailures"]
    assert not stack.interactions("c-connect")  # nothing claimed or created while Connect was throttled
    connect.error = None
    assert stack.invoke(records) == {"batchItemFailures": []}
    assert_clean(stack, "c-connect")
    assert stack.interactions("c-connect")[0]["user_id"] == "+14155550100"


def test_store_unavailable_error_class_is_retryable() -> None:
    from bridge.errors import RetryableError

    assert issubclass(ContactStoreUnavailableError, RetryableError)


# -- the function dies between any two steps ---------------------------------------------------------------------

STEPS = [
    ("after claim", "servicenow", "create_interaction", "before"),
    ("after create", "servicenow", "create_interaction", "after"),
    ("after conversation", "servicenow", "create_conversation", "after"),
    ("before state save", "store", "save", "before"),
    ("after state save", "store", "save", "after"),
    ("after messages", "servicenow", "post_messages", "after"),
    ("before close", "servicenow", "close_interaction", "before"),
    ("after close", "servicenow", "close_interaction", "after"),
]


@pytest.mark.parametrize(("where", "adapter", "method", "when"), STEPS, ids=[s[0] for s in STEPS])
def test_dying_between_steps_ends_like_one_clean_run(
    stack: Stack, where: str, adapter: str, method: str, when: str
) -> None:
    from bridge import factory

    bridge = factory.get_bridge()
    target = getattr(bridge, adapter)
    original = getattr(target, method)
    armed = [True]

    def dying(*args: Any, **kwargs: Any) -> Any:
        if armed[0] and when == "before":
            armed[0] = False
            raise Crash(where)
        result = original(*args, **kwargs)
        if armed[0]:
            armed[0] = False
            raise Crash(where)
        return result

    setattr(target, method, dying)
    contact = "c-crash"
    records = lambda_records(call_events(contact, TURNS))
    try:
        stack.invoke(records)
        raise AssertionError("the crash did not happen")
    except Crash:
        pass
    assert stack.invoke(records) == {"batchItemFailures": []}  # Lambda redelivers the whole batch
    assert_clean(stack, contact)


# -- duplicates and order ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("copies", [2, 3, 5])
def test_the_same_record_delivered_many_times(stack: Stack, copies: int) -> None:
    contact = "c-dup"
    records = lambda_records(call_events(contact, TURNS))
    for _ in range(copies):
        assert stack.invoke(records) == {"batchItemFailures": []}
    for record in records:  # and one by one
        stack.invoke([record])
    assert_clean(stack, contact)


def test_out_of_order_redelivery_keeps_servicenow_order_by_offsets(stack: Stack) -> None:
    contact = "c-order"
    records = lambda_records(call_events(contact, 6, end=""))
    stack.invoke(records[:1])
    for index in (5, 3, 1, 2, 6, 4, 3, 5):  # segments redelivered out of order, some twice
        stack.invoke([records[index]])
    stack.invoke(lambda_records([envelope(contact, "COMPLETED")], first_sequence_number=10**55))
    assert_clean(stack, contact, turns=6)
    offsets = [int(m["begin_offset_millis"]) for m in stack.messages(contact)]
    assert offsets == sorted(offsets)


def test_a_poison_record_in_a_100_record_batch(stack: Stack) -> None:
    contact = "c-poison"
    records = lambda_records(call_events(contact, 97))  # STARTED + 97 SEGMENTS + COMPLETED = 99 records
    poison = json.loads(json.dumps(records[40]))
    poison["kinesis"]["data"] = "not base64 at all!"
    poison["kinesis"]["sequenceNumber"] = str(int(records[40]["kinesis"]["sequenceNumber"]) + 1)
    batch = records[:41] + [poison] + records[41:]
    assert len(batch) == 100
    assert stack.invoke(batch) == {"batchItemFailures": []}
    (parked,) = stack.parked()
    assert parked["reason_class"] == "undecodable" and parked["records"][0]["data"] == "not base64 at all!"
    assert len(stack.transcript_ids(contact)) == 97  # the other 99 went through in that invocation


def test_late_segment_for_a_redelivered_closed_contact_is_parked_not_lost(stack: Stack) -> None:
    contact = "c-late"
    stack.invoke(lambda_records(call_events(contact, TURNS)))
    stack.invoke(lambda_records([envelope(contact, "SEGMENTS", [transcript("after")])], first_sequence_number=10**55))
    (parked,) = stack.parked()
    assert parked["reason_class"] == "after_close"
    assert_clean(stack, contact)
