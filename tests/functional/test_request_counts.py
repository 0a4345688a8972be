"""The deterministic part of the benchmarks (issue 5): requests and DynamoDB calls per batch. No timings here."""

from __future__ import annotations

import pytest
from benchmarks.counts import dense_window, measure, realistic_window

from tests.functional.conftest import Stack

pytestmark = pytest.mark.functional


def test_realistic_batch_one_request_and_one_write_per_contact() -> None:
    counts = measure(*realistic_window(calls=5, size=100))
    assert counts.records == 100 and counts.contacts == 5
    assert counts.ours_requests == counts.contacts  # one POST /messages per contact: the floor
    assert counts.ours_reads == 1 and counts.ours_writes <= counts.contacts
    # naive: one request, one read and one write per forwarded segment (transcripts and notes)
    assert counts.naive_requests >= counts.transcripts == 60
    assert counts.naive_writes == counts.naive_requests
    assert counts.ours_requests * 13 <= counts.naive_requests


def test_dense_batch_is_at_most_one_fifteenth_of_naive() -> None:
    counts = measure(*dense_window(calls=5, size=100))
    assert counts.transcripts == 100 and counts.contacts == 5
    assert counts.naive_requests == 100
    assert counts.ours_requests * 15 <= counts.naive_requests
    assert counts.ours_reads == 1 and counts.ours_writes <= counts.contacts


def test_real_handler_batch_read_once_and_write_once_per_touched_contact(stack: Stack) -> None:
    from bridge import factory

    before, window = realistic_window(calls=5, size=100)
    assert stack.invoke(before) == {"batchItemFailures": []}
    store = factory.get_bridge().store
    calls = dict(store.calls)
    requests_before = stack.emulator.stats()["total"]
    assert stack.invoke(window) == {"batchItemFailures": []}
    assert store.calls["BatchGetItem"] - calls["BatchGetItem"] == 1
    assert store.calls["PutItem"] - calls["PutItem"] <= 5
    assert stack.emulator.stats()["total"] - requests_before == 5


def test_real_clients_on_the_stubbed_wire_make_the_same_calls() -> None:
    """benchmarks.wire (the CPU benchmark's "real clients, stubbed wire") answers like ServiceNow and DynamoDB:
    ours and naive make exactly the calls counted over the fakes, through the real adapters."""
    from benchmarks.fakeworld import NaiveWireWorld, WireWorld

    before, window = realistic_window(calls=5, size=100)
    expected = measure(before, window)
    ours, naive = WireWorld(max_workers=4), NaiveWireWorld()
    try:
        ours.process(before)
        naive.process(before)
        requests_before, calls_before = ours.transport.requests, dict(ours.wire.calls)
        naive_before = naive.transport.requests
        result = ours.process(window)
        naive.process(window)
    finally:
        ours.close()
    assert result.response() == {"batchItemFailures": []}
    assert ours.transport.requests - requests_before == expected.ours_requests == 5
    assert ours.wire.calls["BatchGetItem"] - calls_before["BatchGetItem"] == 1
    assert ours.wire.calls["PutItem"] - calls_before["PutItem"] == expected.ours_writes
    assert naive.transport.requests - naive_before == expected.naive_requests
