"""The batch processor and contact runner over in-memory fakes: flow, partial failures, crashes between steps."""

from __future__ import annotations

import time
from typing import Any

import pytest

from bridge.config import Settings
from bridge.directory import ContactDirectory
from bridge.errors import (
    ContactStoreUnavailableError,
    ParkingError,
    ServiceNowAmbiguousError,
    ServiceNowRejectedError,
    ServiceNowUnavailableError,
)
from bridge.ports import ContactDetails
from bridge.processor import BatchProcessor, BatchResult
from bridge.runner import ContactRunner, RunnerOptions
from tests.events_builder import call_events, envelope, lambda_records, transcript
from tests.fakes import FakeConnect, FakeContactStore, FakeParking, FakeServiceNow

pytestmark = pytest.mark.unit


class Crash(BaseException):
    """The Lambda runtime dying mid-batch: not an Exception, so nothing in the bridge catches it."""


SETTINGS = Settings(
    "https://example.service-now.com", "arn:secret", "table", "https://sqs/q", connect_instance_alias="example"
)


class World:
    def __init__(self, connect: FakeConnect | None = None) -> None:
        self.servicenow = FakeServiceNow()
        self.store = FakeContactStore()
        self.parking = FakeParking()
        self.connect = connect or FakeConnect(ContactDetails("+14155550100", "agent-1"), usernames={"agent-1": "beth"})
        # No real sleeping: settling after a crash is counted in pauses taken, not waited out in wall time.
        runner = ContactRunner(
            self.servicenow,
            self.store,
            ContactDirectory(SETTINGS, self.connect),
            RunnerOptions(),
            sleep=lambda seconds: None,
        )
        self.processor = BatchProcessor(self.store, runner, self.parking)

    def settling(self, settle_seconds: float) -> list[float]:
        """Rebuild the runner around the current ServiceNow with this settle time; returns the pauses it takes."""
        sleeps: list[float] = []
        runner = ContactRunner(
            self.servicenow,
            self.store,
            ContactDirectory(SETTINGS, self.connect),
            RunnerOptions(settle_seconds=settle_seconds),
            sleep=sleeps.append,
        )
        self.processor = BatchProcessor(self.store, runner, self.parking)
        return sleeps

    def process(self, records: list[dict[str, Any]]) -> BatchResult:
        return self.processor.process(records, deadline=time.monotonic() + 60)

    def deliver(self, records: list[dict[str, Any]], max_attempts: int = 10) -> list[BatchResult]:
        """Kinesis semantics: on failures redeliver from the lowest reported sequence number; on a crash, all."""
        results = []
        pending = records
        for _ in range(max_attempts):
            try:
                result = self.process(pending)
            except Crash:
                continue
            results.append(result)
            if not result.failed_sequence_numbers:
                return results
            lowest = int(result.failed_sequence_numbers[0])
            pending = [r for r in pending if int(r["kinesis"]["sequenceNumber"]) >= lowest]
        raise AssertionError("did not converge")

    def transcript_ids(self, contact_id: str) -> list[str]:
        (interaction,) = self.servicenow.by_contact(contact_id)
        return [m.id for m in interaction.messages if not m.internal]


def test_whole_call_in_one_batch_opens_sends_closes() -> None:
    world = World()
    result = world.process(lambda_records(call_events("c1", 4)))
    assert result.response() == {"batchItemFailures": []}
    (interaction,) = world.servicenow.by_contact("c1")
    assert interaction.closed and interaction.request.user_id == "+14155550100"
    assert interaction.request.agent_id == "beth"
    assert interaction.recording_url == "https://example.my.connect.aws/contact-trace-records/details/c1"
    assert world.transcript_ids("c1") == [f"c1-t{i:04d}" for i in range(4)]
    assert world.servicenow.calls.count("post_messages") == 1
    assert world.store.writes == 3  # claim, the one pre-write, and the close confirmed (out of the sweep index)


def test_same_batch_delivered_twice_sends_nothing_twice() -> None:
    world = World()
    records = lambda_records(call_events("c1", 5))
    world.process(records)
    calls = len(world.servicenow.calls)
    second = world.process(records)
    # The contact's close was confirmed, and a close only follows a successful send: its still-pending segments
    # are stored, so nothing is read back (an ACL'd read-back would look empty) and only the idempotent close is
    # repeated. Nothing is POSTed again.
    assert world.servicenow.calls[calls:] == ["close_interaction"]
    assert second.outcomes[0].reconciled == 5 and second.outcomes[0].resent == 0
    assert len(world.servicenow) == 1 and world.transcript_ids("c1") == [f"c1-t{i:04d}" for i in range(5)]
    third = world.process(lambda_records(call_events("c1", 5), first_sequence_number=10**55))
    assert third.outcomes[0].duplicates >= 5 and world.servicenow.calls[calls + 2 :] == []


def test_two_contacts_interleaved_each_get_their_own_interaction() -> None:
    a, b = call_events("a", 3), call_events("b", 3)
    merged = [event for pair in zip(a, b, strict=True) for event in pair]
    world = World()
    world.process(lambda_records(merged))
    assert world.transcript_ids("a") == ["a-t0000", "a-t0001", "a-t0002"]
    assert world.transcript_ids("b") == ["b-t0000", "b-t0001", "b-t0002"]


def test_retryable_failure_reports_only_that_contacts_first_record() -> None:
    world = World()
    a, b = call_events("a", 2, end=""), call_events("b", 2, end="")
    records = lambda_records(a + b)
    world.servicenow.fail_next["create_interaction"] = [ServiceNowUnavailableError("503", status=503)]
    result = world.process(records)
    assert result.failed_sequence_numbers == [records[0]["kinesis"]["sequenceNumber"]]
    assert world.servicenow.by_contact("b")  # the other contact completed in the same invocation
    world.deliver(records)
    assert world.transcript_ids("a") == ["a-t0000", "a-t0001"] and len(world.servicenow.by_contact("a")) == 1


def test_permanent_rejection_parks_the_contacts_records_with_error_data() -> None:
    world = World()
    records = lambda_records(call_events("a", 2))
    world.servicenow.fail_next["post_messages"] = [
        ServiceNowRejectedError("Bad request", status=400, detail="content", transaction_id="tx1")
    ]
    result = world.process(records)
    assert result.failed_sequence_numbers == []
    (item,) = world.parking.items
    assert item.reason_class == "servicenow_rejected" and item.error["transaction_id"] == "tx1"
    assert len(item.records) == len(records)
    # after the fix, a redrive of the parked records sends everything and closes
    world.deliver(records)
    assert world.transcript_ids("a") == ["a-t0000", "a-t0001"]
    assert world.servicenow.by_contact("a")[0].closed


def test_poison_record_is_parked_and_the_rest_go_through() -> None:
    world = World()
    records = lambda_records(call_events("a", 98, end="COMPLETED"))
    records.insert(
        50,
        {
            **records[50],
            "kinesis": {
                **records[50]["kinesis"],
                "data": "!!!",
                "sequenceNumber": str(int(records[49]["kinesis"]["sequenceNumber"]) + 1),
            },
        },
    )
    assert len(records) == 101
    result = world.process(records)
    assert result.failed_sequence_numbers == [] and world.parking.reasons() == ["undecodable"]
    assert world.parking.items[0].records[0]["data"] == "!!!"
    assert len(world.transcript_ids("a")) == 98


def test_segments_after_close_are_parked() -> None:
    world = World()
    world.process(lambda_records(call_events("a", 1)))
    late = lambda_records([envelope("a", "SEGMENTS", [transcript("late-1")])], first_sequence_number=10**50)
    result = world.process(late)
    assert world.parking.reasons() == ["after_close"] and result.failed_sequence_numbers == []


def test_parking_failure_reports_records_for_retry() -> None:
    world = World()
    world.parking.fail = ParkingError("SQS down")
    records = lambda_records([b"not json"])
    result = world.process(records)
    assert result.failed_sequence_numbers == [records[0]["kinesis"]["sequenceNumber"]]


def test_state_store_unavailable_reports_every_contact() -> None:
    world = World()
    world.store.load_many = lambda ids: (_ for _ in ()).throw(ContactStoreUnavailableError("throttled"))  # type: ignore[method-assign]
    records = lambda_records(call_events("a", 1) + call_events("b", 1))
    result = world.process(records)
    assert len(result.failed_sequence_numbers) == 2 and not world.servicenow.calls


def test_ambiguous_messages_are_read_back_not_reposted() -> None:
    world = World()
    world.servicenow.apply_then_fail["post_messages"] = [ServiceNowAmbiguousError("500", status=500)]
    world.process(lambda_records(call_events("a", 3)))
    assert world.transcript_ids("a") == ["a-t0000", "a-t0001", "a-t0002"]
    assert "find_messages" in world.servicenow.calls and world.servicenow.calls.count("post_messages") == 1


def test_read_back_forbidden_resends_and_counts_possible_duplicates() -> None:
    world = World()
    world.servicenow.read_forbidden = True
    world.servicenow.apply_then_fail["post_messages"] = [ServiceNowAmbiguousError("500", status=500)]
    result = world.process(lambda_records(call_events("a", 2)))
    assert result.outcomes[0].possible_duplicates == 2
    assert len(world.transcript_ids("a")) == 4  # the documented window, measured


@pytest.mark.parametrize(
    ("where", "operation", "applied"),
    [
        ("after claim", "create_interaction", False),
        ("after create", "create_interaction", True),
        ("after conversation", "create_conversation", True),
        ("after messages", "post_messages", True),
        ("before messages", "post_messages", False),
        ("before close", "close_interaction", False),
        ("after close", "close_interaction", True),
    ],
)
def test_dying_between_steps_ends_like_one_clean_run(where: str, operation: str, applied: bool) -> None:
    records = lambda_records(call_events("a", 4))
    clean = World()
    clean.deliver(records)
    world = World()
    (world.servicenow.apply_then_fail if applied else world.servicenow.fail_next)[operation] = [Crash(where)]
    world.deliver(records)
    assert len(world.servicenow.by_contact("a")) == 1, where
    assert world.transcript_ids("a") == clean.transcript_ids("a"), where
    assert world.servicenow.by_contact("a")[0].closed


def test_dying_before_the_state_save_ends_like_one_clean_run() -> None:
    world = World()
    world.store.fail_next_save = [Crash("before save")]  # type: ignore[list-item]
    records = lambda_records(call_events("a", 3))
    world.deliver(records)
    assert world.transcript_ids("a") == ["a-t0000", "a-t0001", "a-t0002"]


def test_lookup_failure_falls_back_without_blocking() -> None:
    from bridge.errors import ConnectLookupError

    world = World(FakeConnect(error=ConnectLookupError("AccessDenied")))
    result = world.process(lambda_records(call_events("a", 1)))
    assert world.servicenow.by_contact("a")[0].request.user_id == "anonymous"
    assert "DescribeContact" in result.outcomes[0].lookup_fallbacks


def test_invalid_caller_number_falls_back() -> None:
    world = World(FakeConnect(ContactDetails("anonymous")))
    world.process(lambda_records(call_events("a", 1)))
    request = world.servicenow.by_contact("a")[0].request
    assert request.user_id == "anonymous" and request.caller_phone_number is None


class LateApply(FakeServiceNow):
    """ServiceNow that times out on a request and applies it only after the client has read back ``after`` times."""

    def __init__(self, operation: str, after: int) -> None:
        super().__init__()
        self.operation, self.after, self.late = operation, after, None
        self.reads = 0

    def _enter(self, operation: str) -> None:
        super()._enter(operation)
        if operation.startswith("find"):
            self.reads += 1
            if self.late is not None and self.reads >= self.after:
                apply, self.late = self.late, None
                apply()

    def post_messages(self, interaction_id: str, messages: Any) -> str | None:
        if self.operation == "post_messages" and self.late is None and not self.calls.count("post_messages"):
            self.calls.append("post_messages")
            self.late = lambda: self.interactions[interaction_id].messages.extend(messages)
            self.reads = 0
            error = ServiceNowAmbiguousError("no complete response (ReadTimeout)")
            error.timed_out = True
            raise error
        return super().post_messages(interaction_id, messages)

    def create_interaction(self, request: Any) -> str:
        if self.operation == "create_interaction" and "create_interaction" not in self.calls:
            self.calls.append("create_interaction")
            self.late = lambda: FakeServiceNow.create_interaction(self, request)
            self.reads = 0
            error = ServiceNowAmbiguousError("no complete response (ReadTimeout)")
            error.timed_out = True
            raise error
        return super().create_interaction(request)


@pytest.mark.parametrize("operation", ["post_messages", "create_interaction"])
def test_a_request_applied_after_the_read_timeout_is_waited_for_not_repeated(operation: str) -> None:
    world = World()
    world.servicenow = LateApply(operation, after=3)  # lands only on the third read-back
    sleeps = world.settling(10)
    world.deliver(lambda_records(call_events("late", 3)))
    assert len(world.servicenow.by_contact("late")) == 1
    assert world.transcript_ids("late") == ["late-t0000", "late-t0001", "late-t0002"]
    # it waited (growing pauses) for ServiceNow to settle instead of re-sending at once
    assert sleeps and sleeps[0] == 0.25 and sum(sleeps) < 10


def test_settling_gives_up_after_the_settle_window_and_resends() -> None:
    world = World()
    world.servicenow = LateApply("post_messages", after=10**6)  # never lands
    sleeps = world.settling(2)
    world.deliver(lambda_records(call_events("never", 2)))
    assert world.transcript_ids("never") == ["never-t0000", "never-t0001"]  # re-sent once, after settling
    assert sum(sleeps) == pytest.approx(2.0)


def test_a_forbidden_read_back_ends_settling_at_once_and_counts_each_resend_once() -> None:
    world = World()
    world.servicenow = LateApply("post_messages", after=10**6)
    world.servicenow.read_forbidden = True
    sleeps = world.settling(10)
    (result,) = world.deliver(lambda_records(call_events("forbidden", 3)))
    assert sleeps == []  # nothing can be learnt by waiting: no polling for the settle time
    assert result.outcomes[0].possible_duplicates == 3
    assert world.transcript_ids("forbidden") == [f"forbidden-t{i:04d}" for i in range(3)]
