"""The processor starts the contacts with the longest chains of requests first (issue 13: started last, a contact
that still has to be opened is the batch's tail while ServiceNow's semaphores idle), and keeps outcomes in the
stream's order."""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

import pytest

from bridge.directory import ContactDirectory
from bridge.processor import BatchProcessor
from bridge.runner import ContactRunner, RunnerOptions
from tests.events_builder import call_events, envelope, lambda_records, transcript
from tests.fakes import FakeConnect, FakeContactStore, FakeParking, FakeServiceNow
from tests.unit.test_processor import SETTINGS

pytestmark = pytest.mark.unit


class RecordingExecutor:
    """Runs each job at once, in submission order, and remembers which contact came when."""

    def __init__(self) -> None:
        self.submitted: list[str] = []

    def submit(self, fn: Callable[..., Any], events: Any, *args: Any) -> Future[Any]:
        self.submitted.append(events[0].contact_id)
        future: Future[Any] = Future()
        future.set_result(fn(events, *args))
        return future


def test_contacts_still_to_open_start_first_and_outcomes_keep_the_stream_order() -> None:
    store, servicenow = FakeContactStore(), FakeServiceNow()
    runner = ContactRunner(
        servicenow, store, ContactDirectory(SETTINGS, FakeConnect()), RunnerOptions(), sleep=lambda s: None
    )
    opened = BatchProcessor(store, runner, FakeParking())
    opened.process(lambda_records(call_events("c-old", 1)[:-1]), deadline=time.monotonic() + 60)  # open, no close

    executor = RecordingExecutor()
    processor = BatchProcessor(store, runner, FakeParking(), executor)  # type: ignore[arg-type]
    records = lambda_records(
        [
            envelope("c-old", "SEGMENTS", [transcript("c-old-t0009", "more")]),
            *call_events("c-new", 1),  # opens: two requests before its messages, and closes
        ]
    )
    result = processor.process(records, deadline=time.monotonic() + 60)
    assert executor.submitted == ["c-new", "c-old"]
    assert [o.contact_id for o in result.outcomes] == ["c-old", "c-new"]
