"""The real ServiceNowClient over real HTTP against the emulator: the flow, each scripted fault, authentication.

Retry waits go through a recording ``sleep`` (the emulator's rules fire a fixed number of times, so no real time
needs to pass); only the token-expiry test really waits (about a second, for the emulator's token TTL).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from bridge.adapters.secrets import Credentials
from bridge.adapters.servicenow import ServiceNowClient
from bridge.errors import (
    ServiceNowAmbiguousError,
    ServiceNowAuthError,
    ServiceNowRejectedError,
    ServiceNowUnavailableError,
)
from bridge.models import OpenRequest, OutgoingMessage
from voicebridge.emulator import EmulatorOptions, RunningEmulator, start_emulator

pytestmark = pytest.mark.functional

BASIC = Credentials(username="admin", password="admin")
OAUTH = Credentials(client_id="voicebridge", client_secret="voicebridge")
RECORDING = "https://example.my.connect.aws/contact-trace-records/details/contact-flow"
MESSAGES_ROUTE = "POST /cs/voice-interactions/{id}/messages"


class StaticCredentials:
    """The secret, fixed; counts forced re-reads (what the client does after a 401)."""

    def __init__(self, credentials: Credentials) -> None:
        self.credentials = credentials
        self.forced = 0

    def get(self, force: bool = False) -> Credentials:
        self.forced += force
        return self.credentials


class RecordingSleep:
    def __init__(self) -> None:
        self.waits: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


@pytest.fixture
def emulator() -> Iterator[RunningEmulator]:
    with start_emulator(EmulatorOptions()) as running:
        yield running


def make_client(
    emulator: RunningEmulator, credentials: Credentials = BASIC, **kwargs: Any
) -> tuple[ServiceNowClient, RecordingSleep]:
    sleep = RecordingSleep()
    kwargs.setdefault("read_timeout_s", 5.0)
    client = ServiceNowClient(
        emulator.url, StaticCredentials(credentials), connect_timeout_s=2.0, sleep=sleep, **kwargs
    )
    return client, sleep


def open_request(contact_id: str) -> OpenRequest:
    return OpenRequest(
        user_id="+14155550100", client_session_id=contact_id, caller_phone_number="+14155550100", agent_id="beth"
    )


def segment(segment_id: str, begin: int, participant: str = "CUSTOMER", internal: bool = False) -> OutgoingMessage:
    return OutgoingMessage(
        segment_id, f"words of {segment_id}", participant, begin, begin + 900, "NEUTRAL", internal, str(begin + 1)
    )


def new_interaction(client: ServiceNowClient, contact_id: str = "contact-1") -> str:
    return client.create_interaction(open_request(contact_id))


def stored_ids(emulator: RunningEmulator, interaction_id: str) -> list[str]:
    return [row["source_message_id"] for row in emulator.store.transcript(interaction_id)]


# --- the whole flow ------------------------------------------------------------------------------------------------


def test_full_flow_create_converse_send_find_close(emulator: RunningEmulator) -> None:
    client, sleep = make_client(emulator)

    interaction = client.create_interaction(open_request("contact-flow"))
    conversation = client.create_conversation(interaction, open_request("contact-flow"))
    assert client.post_messages(interaction, [segment("s2", 2000, "AGENT"), segment("s1", 0)]) == conversation
    assert client.post_messages(interaction, [segment("n1", 2500, "AGENT", internal=True)]) == conversation

    # The recovery reads (Table API) find what was written.
    assert client.find_interaction("contact-flow") == interaction
    assert client.find_interaction("contact-unknown") is None
    assert client.find_conversation(interaction) == conversation
    assert client.find_message_ids(conversation, ["s1", "s2", "n1", "s9"]) == {"s1", "s2", "n1"}

    client.close_interaction(interaction, RECORDING)
    client.close_interaction(interaction, RECORDING)  # closing twice is harmless

    row = emulator.store.get("interaction", interaction)
    assert row is not None
    assert (row["state"], row["recording_url"], row["client_session_id"]) == (
        "closed_complete",
        RECORDING,
        "contact-flow",
    )
    assert (row["user_id"], row["caller_phone_number"], row["assigned_to"]) == ("+14155550100", "+14155550100", "beth")
    messages = emulator.store.transcript(interaction)
    assert [m["source_message_id"] for m in messages] == ["s1", "s2", "n1"]  # ordered by offsets, not arrival
    assert [m["is_internal"] for m in messages] == ["false", "false", "true"]
    assert messages[0]["payload"] == "words of s1" and messages[0]["sentiment"] == "NEUTRAL"
    assert sleep.waits == []


def test_transcript_then_a_second_transcript_is_rejected(emulator: RunningEmulator) -> None:
    client, _ = make_client(emulator)
    interaction = new_interaction(client)

    conversation = client.post_transcript(interaction, [segment("t1", 0), segment("t2", 1000)], "2026-01-05 10:00:00")
    assert conversation == client.find_conversation(interaction)
    with pytest.raises(ServiceNowRejectedError, match="already been processed") as caught:
        client.post_transcript(interaction, [segment("t3", 2000)], "2026-01-05 10:00:00")
    assert caught.value.status == 400 and caught.value.transaction_id
    assert stored_ids(emulator, interaction) == ["t1", "t2"]


def test_script_style_already_processed_200_is_rejected() -> None:
    with start_emulator(EmulatorOptions(script_style_errors=True)) as emulator:
        client, _ = make_client(emulator)
        interaction = new_interaction(client)
        client.post_transcript(interaction, [segment("t1", 0)], "2026-01-05 10:00:00")
        with pytest.raises(ServiceNowRejectedError, match="already been processed") as caught:
            client.post_transcript(interaction, [segment("t2", 1000)], "2026-01-05 10:00:00")
        assert caught.value.status == 200


def test_messages_for_an_unknown_interaction_are_rejected_with_the_envelope(emulator: RunningEmulator) -> None:
    client, _ = make_client(emulator)
    with pytest.raises(ServiceNowRejectedError) as caught:
        client.post_messages("0" * 32, [segment("s1", 0)])
    error = caught.value
    assert (error.status, error.message) == (404, "No Record found")
    assert error.detail and error.transaction_id and len(error.transaction_id) == 32


# --- scripted faults ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("retry_after", [0, 1])
def test_429_with_retry_after_is_retried_transparently(emulator: RunningEmulator, retry_after: int) -> None:
    client, sleep = make_client(emulator)
    interaction = new_interaction(client)
    emulator.add_fault_rules(
        [{"method": "POST", "path": "/messages$", "action": "status", "status": 429, "retry_after": retry_after}]
    )

    client.post_messages(interaction, [segment("s1", 0)])

    assert sleep.waits == [float(retry_after)]
    assert stored_ids(emulator, interaction) == ["s1"]
    assert emulator.stats()["by_status"]["429"] == 1


def test_503_every_time_is_unavailable_and_nothing_is_stored(emulator: RunningEmulator) -> None:
    client, sleep = make_client(emulator)
    interaction = new_interaction(client)
    emulator.add_fault_rules([{"path": "/messages$", "action": "status", "status": 503, "times": 10}])

    with pytest.raises(ServiceNowUnavailableError) as caught:
        client.post_messages(interaction, [segment("s1", 0)])

    assert caught.value.status == 503 and caught.value.message == "Service Unavailable"
    assert emulator.stats()["by_route"][MESSAGES_ROUTE] == client.max_attempts
    assert len(sleep.waits) == client.max_attempts - 1
    assert stored_ids(emulator, interaction) == []


@pytest.mark.parametrize("action", ["ambiguous_500", "ambiguous_drop"])
def test_ambiguous_faults_on_messages_are_ambiguous_and_the_message_is_stored(
    emulator: RunningEmulator, action: str
) -> None:
    client, sleep = make_client(emulator)
    interaction = new_interaction(client)
    emulator.add_fault_rules([{"method": "POST", "path": "/messages$", "action": action}])

    with pytest.raises(ServiceNowAmbiguousError):
        client.post_messages(interaction, [segment("s1", 0)])

    # Applied, and not blindly re-sent: exactly one copy, found by the recovery read.
    assert stored_ids(emulator, interaction) == ["s1"]
    assert emulator.stats()["by_route"][MESSAGES_ROUTE] == 1 and sleep.waits == []
    conversation = client.find_conversation(interaction)
    assert conversation and client.find_message_ids(conversation, ["s1"]) == {"s1"}
    # The connection pool survives the fault.
    client.post_messages(interaction, [segment("s2", 1000)])
    assert stored_ids(emulator, interaction) == ["s1", "s2"]


def test_truncated_create_is_ambiguous_and_the_interaction_exists(emulator: RunningEmulator) -> None:
    client, _ = make_client(emulator)
    emulator.add_fault_rules([{"method": "POST", "path": "/voice-interactions$", "action": "truncated"}])

    with pytest.raises(ServiceNowAmbiguousError, match="truncated"):
        new_interaction(client, "contact-truncated")

    assert len(emulator.store.rows("interaction")) == 1
    assert client.find_interaction("contact-truncated") is not None  # how the caller reconciles


def test_delay_beyond_the_read_timeout_is_ambiguous(emulator: RunningEmulator) -> None:
    client, sleep = make_client(emulator, read_timeout_s=0.5)
    interaction = new_interaction(client)
    emulator.add_fault_rules([{"method": "POST", "path": "/messages$", "action": "delay", "delay_ms": 700}])

    started = time.monotonic()
    with pytest.raises(ServiceNowAmbiguousError, match="ReadTimeout"):
        client.post_messages(interaction, [segment("s1", 0)])

    assert time.monotonic() - started < 0.7 and sleep.waits == []
    assert emulator.pending_faults() == []  # the one delayed POST was sent, and not re-sent


def test_delay_on_an_idempotent_close_is_retried(emulator: RunningEmulator) -> None:
    client, sleep = make_client(emulator, read_timeout_s=0.2)
    interaction = new_interaction(client)
    emulator.add_fault_rules([{"method": "PATCH", "path": "/state$", "action": "delay", "delay_ms": 300}])

    client.close_interaction(interaction, RECORDING)

    assert len(sleep.waits) == 1
    row = emulator.store.get("interaction", interaction)
    assert row is not None and row["state"] == "closed_complete"


@pytest.mark.parametrize("action", ["html", "accepted_202"])
def test_not_applied_200_and_202_are_retried_then_succeed(emulator: RunningEmulator, action: str) -> None:
    client, sleep = make_client(emulator)
    interaction = new_interaction(client)
    emulator.add_fault_rules([{"path": "/messages$", "action": action}])

    client.post_messages(interaction, [segment("s1", 0)])

    assert len(sleep.waits) == 1 and stored_ids(emulator, interaction) == ["s1"]


@pytest.mark.parametrize(("action", "match"), [("html", "HTML page"), ("accepted_202", "202")])
def test_not_applied_answers_every_time_are_unavailable(emulator: RunningEmulator, action: str, match: str) -> None:
    client, _ = make_client(emulator)
    interaction = new_interaction(client)
    emulator.add_fault_rules([{"path": "/messages$", "action": action, "times": 10}])

    with pytest.raises(ServiceNowUnavailableError, match=match):
        client.post_messages(interaction, [segment("s1", 0)])

    assert stored_ids(emulator, interaction) == []


def test_failure_sentence_is_ambiguous(emulator: RunningEmulator) -> None:
    client, sleep = make_client(emulator)
    interaction = new_interaction(client)
    emulator.add_fault_rules([{"method": "POST", "path": "/messages$", "action": "failure_sentence"}])

    with pytest.raises(ServiceNowAmbiguousError, match="Exception occurred while saving") as caught:
        client.post_messages(interaction, [segment("s1", 0)])

    assert caught.value.status == 200 and sleep.waits == []


def test_dropped_connection_before_applying_on_a_read_is_retried(emulator: RunningEmulator) -> None:
    client, sleep = make_client(emulator)
    interaction = new_interaction(client, "contact-drop")
    emulator.add_fault_rules([{"method": "GET", "path": "/table/interaction$", "action": "drop"}])

    assert client.find_interaction("contact-drop") == interaction
    assert len(sleep.waits) == 1


def test_connection_refused_is_unavailable() -> None:
    with start_emulator(EmulatorOptions()) as emulator:
        url = emulator.url
    client = ServiceNowClient(url, StaticCredentials(BASIC), connect_timeout_s=1.0, read_timeout_s=1.0)
    client.sleep = RecordingSleep()
    with pytest.raises(ServiceNowUnavailableError, match="connection refused"):
        client.create_interaction(open_request("contact-refused"))


# --- authentication -------------------------------------------------------------------------------------------------


def test_oauth_token_expiry_gets_one_refresh_then_success() -> None:
    with start_emulator(EmulatorOptions(token_ttl=1)) as emulator:
        # A client clock that never moves: only the emulator knows the token expired, and answers 401.
        client, _ = make_client(emulator, OAUTH, monotonic=lambda: 0.0)
        interaction = new_interaction(client)
        assert emulator.stats()["by_route"]["POST /oauth_token.do"] == 1

        time.sleep(1.05)
        client.post_messages(interaction, [segment("s1", 0)])

        stats = emulator.stats()
        assert stats["by_route"]["POST /oauth_token.do"] == 2
        assert stats["by_route"][MESSAGES_ROUTE] == 2 and stats["by_status"]["401"] == 1
        assert stored_ids(emulator, interaction) == ["s1"]


def test_oauth_password_grant_against_the_emulator(emulator: RunningEmulator) -> None:
    client, _ = make_client(emulator, Credentials("admin", "admin", "voicebridge", "voicebridge"))
    new_interaction(client)
    client.find_interaction("contact-1")
    assert emulator.stats()["by_route"]["POST /oauth_token.do"] == 1


@pytest.mark.parametrize(
    "credentials",
    [
        Credentials(client_id="voicebridge", client_secret="wrong"),
        Credentials("admin", "wrong", "voicebridge", "voicebridge"),
    ],
)
def test_oauth_refused_is_an_auth_error(emulator: RunningEmulator, credentials: Credentials) -> None:
    client, _ = make_client(emulator, credentials)
    with pytest.raises(ServiceNowAuthError, match="OAuth token refused") as caught:
        new_interaction(client)
    assert caught.value.status == 401
    assert emulator.store.rows("interaction") == []


def test_basic_auth_with_a_wrong_password_fails_after_one_refresh(emulator: RunningEmulator) -> None:
    provider = StaticCredentials(Credentials("admin", "wrong"))
    client = ServiceNowClient(emulator.url, provider, sleep=RecordingSleep())

    with pytest.raises(ServiceNowAuthError) as caught:
        new_interaction(client)

    assert caught.value.status == 401 and caught.value.transaction_id
    assert provider.forced == 1
    assert emulator.stats()["by_status"] == {"401": 2}
