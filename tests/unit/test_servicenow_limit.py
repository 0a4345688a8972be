"""The ServiceNow client and its adaptive limit (issue 13): a refusal shrinks the limit every worker thread shares,
so when the Retry-After gate reopens only that many requests go; a request that cannot get a permit in time is not
sent."""

from __future__ import annotations

import pytest

from bridge.adapters.concurrency import AdaptiveLimit
from bridge.errors import ServiceNowUnavailableError
from tests.unit.test_servicenow_client import (
    INTERACTION,
    SAVED,
    Clock,
    FakeSession,
    client_for,
    failure,
    message,
    result,
)

pytestmark = pytest.mark.unit


@pytest.fixture
def clock() -> Clock:
    return Clock()


def test_a_429_halves_the_limit_all_workers_share_and_its_retry_after_is_slept(clock: Clock) -> None:
    limiter = AdaptiveLimit(8, initial=8, monotonic=clock.monotonic)
    session = FakeSession(failure(429, "Rate limit exceeded", headers={"Retry-After": "1"}), result(SAVED))
    client = client_for(session, clock, limiter=limiter)
    client.post_messages(INTERACTION, [message()])
    assert clock.sleeps == [1.0] and len(session.sent) == 2
    assert limiter.limit == 4 and limiter.snapshot().in_flight == 0  # every permit given back


def test_a_good_reply_grows_the_limit_in_slow_start(clock: Clock) -> None:
    limiter = AdaptiveLimit(8, initial=2, monotonic=clock.monotonic)
    client = client_for(FakeSession(result(SAVED)), clock, limiter=limiter)
    client.post_messages(INTERACTION, [message()])
    assert limiter.limit == 3


def test_a_request_without_a_permit_before_the_deadline_is_not_sent(clock: Clock) -> None:
    limiter = AdaptiveLimit(1, initial=1, monotonic=clock.monotonic)
    assert limiter.acquire(timeout=0) is not None  # another worker holds the only permit
    session = FakeSession()
    client = client_for(session, clock, limiter=limiter)
    client.deadline = clock.now + 0.5
    with pytest.raises(ServiceNowUnavailableError, match="not sent"):
        client.post_messages(INTERACTION, [message()])
    assert session.sent == []
