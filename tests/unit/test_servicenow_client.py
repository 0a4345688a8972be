"""ServiceNowClient without sockets: a scripted session, a fake clock and a fake credentials provider.

Each test scripts what "ServiceNow" answers and asserts on the client's classification (servicenow-notes.md,
"Throttling and faults a client must survive"), on what was sent, and on how long it slept.
"""

from __future__ import annotations

import json
import logging
import random
import sys
from dataclasses import dataclass
from http.client import RemoteDisconnected
from typing import Any

import pytest
import requests
from urllib3.exceptions import MaxRetryError, NewConnectionError, ProtocolError

from bridge.adapters.secrets import Credentials
from bridge.adapters.servicenow import MAX_RETRY_AFTER_SECONDS, ServiceNowClient
from bridge.errors import (
    AmbiguousError,
    ConfigurationError,
    PermanentError,
    RetryableError,
    ServiceNowAmbiguousError,
    ServiceNowAuthError,
    ServiceNowReadForbiddenError,
    ServiceNowRejectedError,
    ServiceNowUnavailableError,
)
from bridge.log import logger
from bridge.models import OpenRequest, OutgoingMessage

pytestmark = pytest.mark.unit

BASE = "https://example.service-now.com"
API = f"{BASE}/api/now/v1/cs/voice-interactions"
TABLE = f"{BASE}/api/now/table"
INTERACTION = "0123456789abcdef0123456789abcdef"
CONVERSATION = "fedcba9876543210fedcba9876543210"
SAVED = f"Voice conversation transcript has been successfully saved. Conversation id: {CONVERSATION}"
BASIC = Credentials(username="bridge", password="pw-1")
OAUTH = Credentials(client_id="voicebridge", client_secret="client-secret-1")
OPEN = OpenRequest(user_id="+14155550100", client_session_id="contact-1", agent_id="beth", inbound_id="+18005550100")
# Content a log line must never show (transcript text, with a narrow no-break space the API samples contain).
SECRET_TEXT = "my card number is 4111\u202f1111"
SEQUENCE = "49590338271490256608559692538361571095921575989136588898"


def message(segment_id: str = "seg-1", content: str = SECRET_TEXT, internal: bool = False) -> OutgoingMessage:
    return OutgoingMessage(segment_id, content, "CUSTOMER", 0, 1500, "NEGATIVE", internal, SEQUENCE)


# --- the fakes ----------------------------------------------------------------------------------------------------


def answer(
    status: int = 200,
    body: Any = None,
    *,
    raw: bytes | None = None,
    headers: dict[str, str] | None = None,
    content_type: str = "application/json;charset=UTF-8",
    transaction_id: str = "txn-0001",
) -> requests.Response:
    """A real ``requests.Response`` as the adapter would receive it."""
    response = requests.Response()
    response.status_code = status
    response._content = raw if raw is not None else json.dumps(body).encode("utf-8")
    response.encoding = "utf-8"
    if content_type:
        response.headers["Content-Type"] = content_type
    if transaction_id:
        response.headers["X-Transaction-ID"] = transaction_id
    response.headers.update(headers or {})
    return response


def result(value: Any, **kwargs: Any) -> requests.Response:
    return answer(200, {"result": value}, **kwargs)


def failure(status: int, message: str, detail: str | None = None, **kwargs: Any) -> requests.Response:
    return answer(status, {"error": {"message": message, "detail": detail}, "status": "failure"}, **kwargs)


def token(access: str, expires_in: int = 1800) -> requests.Response:
    body = {"access_token": access, "refresh_token": "r", "token_type": "Bearer", "expires_in": expires_in}
    return answer(200, body, transaction_id="")


@dataclass
class Sent:
    method: str
    url: str
    data: bytes | None
    params: dict[str, str] | None
    headers: dict[str, str]
    timeout: Any
    allow_redirects: bool

    @property
    def json(self) -> Any:
        assert self.data is not None
        return json.loads(self.data)


class FakeSession:
    """Stands in for ``requests.Session``: answers scripted outcomes (responses or exceptions) in order."""

    def __init__(self, *outcomes: requests.Response | BaseException, tokens: tuple[Any, ...] = ()) -> None:
        self.outcomes = list(outcomes)
        self.token_outcomes = list(tokens)
        self.sent: list[Sent] = []
        self.token_forms: list[dict[str, str]] = []
        self.mounted: dict[str, Any] = {}
        self.verify: bool | str = False

    def mount(self, prefix: str, adapter: Any) -> None:
        self.mounted[prefix] = adapter

    def request(
        self,
        method: str,
        url: str,
        *,
        data: bytes | None = None,
        params: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
        timeout: Any = None,
        allow_redirects: bool = True,
    ) -> requests.Response:
        self.sent.append(Sent(method, url, data, params, dict(headers or {}), timeout, allow_redirects))
        return self._next(self.outcomes, f"{method} {url}")

    def post(
        self,
        url: str,
        *,
        data: dict[str, str] | None = None,
        timeout: Any = None,
        headers: dict[str, str] | None = None,
        allow_redirects: bool = True,
    ) -> requests.Response:
        assert url == f"{BASE}/oauth_token.do"
        assert timeout is not None and allow_redirects is False
        self.token_forms.append(dict(data or {}))
        return self._next(self.token_outcomes, "the token endpoint")

    @staticmethod
    def _next(queue: list[Any], what: str) -> requests.Response:
        assert queue, f"unexpected request to {what}"
        outcome = queue.pop(0)
        if isinstance(outcome, BaseException):
            raise outcome
        assert isinstance(outcome, requests.Response)
        return outcome


class Clock:
    """monotonic() and sleep() that only move when the client sleeps (or a test says so)."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


class FakeCredentials:
    """The secret: ``versions[0]`` until a forced read moves to the next version (a rotation)."""

    def __init__(self, *versions: Credentials) -> None:
        self.versions = list(versions)
        self.reads: list[bool] = []

    def get(self, force: bool = False) -> Credentials:
        self.reads.append(force)
        if force and len(self.versions) > 1:
            self.versions.pop(0)
        return self.versions[0]


@pytest.fixture
def clock() -> Clock:
    return Clock()


def client_for(
    session: FakeSession, clock: Clock, credentials: FakeCredentials | None = None, **kwargs: Any
) -> ServiceNowClient:
    return ServiceNowClient(
        BASE,
        credentials or FakeCredentials(BASIC),
        session=session,  # type: ignore[arg-type]
        sleep=clock.sleep,
        monotonic=clock.monotonic,
        **kwargs,
    )


def connection_refused() -> requests.ConnectionError:
    """What requests raises when nothing listens: ConnectionError(MaxRetryError(reason=NewConnectionError))."""
    reason = NewConnectionError(None, "Failed to establish a new connection: [Errno 111] Connection refused")  # type: ignore[arg-type]
    return requests.ConnectionError(MaxRetryError(None, "/api", reason))  # type: ignore[arg-type]


def connection_dropped() -> requests.ConnectionError:
    """The server closed the connection after the request was sent (no status line came back)."""
    return requests.ConnectionError(
        ProtocolError("Connection aborted.", RemoteDisconnected("Remote end closed connection without response"))
    )


# --- success shapes per endpoint ---------------------------------------------------------------------------------


def test_create_interaction_posts_the_open_request_and_returns_the_interaction_id(clock: Clock) -> None:
    session = FakeSession(result({"interactionId": INTERACTION}))
    client = client_for(session, clock, connect_timeout_s=2.0, read_timeout_s=7.0)

    assert client.create_interaction(OPEN) == INTERACTION

    (sent,) = session.sent
    assert (sent.method, sent.url) == ("POST", API)
    assert sent.json == {
        "userId": "+14155550100",
        "clientSessionId": "contact-1",
        "agentId": "beth",
        "inboundId": "+18005550100",
    }
    assert sent.timeout == (2.0, 7.0)
    assert sent.allow_redirects is False
    assert sent.headers["Accept"] == "application/json"
    assert sent.headers["Content-Type"] == "application/json"
    assert sent.headers["Authorization"] == "Basic YnJpZGdlOnB3LTE="  # bridge:pw-1
    assert session.verify is True and set(session.mounted) == {"https://", "http://"}
    assert clock.sleeps == []


@pytest.mark.parametrize("body", [{"interactionId": "not-a-sys-id"}, {"sys_id": INTERACTION}, INTERACTION, None])
def test_create_interaction_without_a_usable_id_is_ambiguous(clock: Clock, body: Any) -> None:
    client = client_for(FakeSession(result(body)), clock)
    with pytest.raises(ServiceNowAmbiguousError, match="no interactionId"):
        client.create_interaction(OPEN)


@pytest.mark.parametrize("body", [CONVERSATION, {"conversationId": CONVERSATION}, {"sys_id": CONVERSATION}])
def test_create_conversation_accepts_a_bare_string_or_an_object(clock: Clock, body: Any) -> None:
    session = FakeSession(result(body))
    assert client_for(session, clock).create_conversation(INTERACTION, OPEN) == CONVERSATION
    assert session.sent[0].url == f"{API}/{INTERACTION}/conversation"
    assert session.sent[0].json["clientSessionId"] == "contact-1"


@pytest.mark.parametrize("body", ["ERROR: could not create the conversation", {"conversationId": "x"}, 42])
def test_create_conversation_without_an_id_is_ambiguous(clock: Clock, body: Any) -> None:
    with pytest.raises(ServiceNowAmbiguousError):
        client_for(FakeSession(result(body)), clock).create_conversation(INTERACTION, OPEN)


def test_post_messages_sends_strict_json_and_returns_the_conversation_id(clock: Clock) -> None:
    session = FakeSession(result(SAVED))
    messages = [message("seg-1"), message("note-1", "Category matched: Escalation", internal=True)]

    assert client_for(session, clock).post_messages(INTERACTION, messages) == CONVERSATION

    (sent,) = session.sent
    assert (sent.method, sent.url) == ("POST", f"{API}/{INTERACTION}/messages")
    assert isinstance(sent.data, bytes)

    def no_constants(name: str) -> Any:
        raise AssertionError(f"non-RFC 8259 constant {name} in the body")

    body = json.loads(sent.data.decode("utf-8"), parse_constant=no_constants)
    assert body == [
        {
            "id": "seg-1",
            "content": SECRET_TEXT,
            "participantId": "CUSTOMER",
            "beginOffsetMillis": 0,
            "endOffsetMillis": 1500,
            "isInternalMessage": False,
            "isEvent": False,
            "sentiment": "NEGATIVE",
        },
        {
            "id": "note-1",
            "content": "Category matched: Escalation",
            "participantId": "CUSTOMER",
            "beginOffsetMillis": 0,
            "endOffsetMillis": 1500,
            "isInternalMessage": True,
            "isEvent": False,
            "sentiment": "NEGATIVE",
        },
    ]
    # Real booleans and numbers, never the reference's "false"/"True" strings; no invented loudness.
    assert all(type(item["isInternalMessage"]) is bool and type(item["isEvent"]) is bool for item in body)
    assert all(type(item["beginOffsetMillis"]) is int for item in body)
    assert b"loudnessScore" not in sent.data
    assert "\u202f".encode() in sent.data  # UTF-8 on the wire, not \\u escapes


def test_post_messages_with_a_sentence_but_no_conversation_id_returns_none(clock: Clock) -> None:
    session = FakeSession(result("Voice conversation transcript has been successfully saved."))
    assert client_for(session, clock).post_messages(INTERACTION, [message()]) is None


def test_post_transcript_sends_the_id_in_the_body(clock: Clock) -> None:
    session = FakeSession(result(SAVED))
    client = client_for(session, clock)

    assert client.post_transcript(INTERACTION, [message()], "2026-01-05 10:00:00") == CONVERSATION

    (sent,) = session.sent
    assert sent.url == f"{API}/{INTERACTION}/transcript"
    assert sent.json["interactionId"] == INTERACTION
    assert sent.json["conversationStarted"] == "2026-01-05 10:00:00"
    assert [m["id"] for m in sent.json["transcript"]] == ["seg-1"]


def test_close_interaction_patches_the_state_with_the_recording_url(clock: Clock) -> None:
    session = FakeSession(result("Success"), result("Success"))
    client = client_for(session, clock)

    client.close_interaction(INTERACTION, "https://example.my.connect.aws/contact-trace-records/details/c-1")
    client.close_interaction(INTERACTION, None)

    first, second = session.sent
    assert (first.method, first.url) == ("PATCH", f"{API}/{INTERACTION}/state")
    assert first.json == {
        "state": "closed_complete",
        "recordingURL": "https://example.my.connect.aws/contact-trace-records/details/c-1",
    }
    assert second.json == {"state": "closed_complete"}


def test_close_without_success_is_ambiguous(clock: Clock) -> None:
    with pytest.raises(ServiceNowAmbiguousError, match="close did not answer Success"):
        client_for(FakeSession(result("Pending")), clock).close_interaction(INTERACTION, None)


def test_find_interaction_queries_the_table_api_by_client_session_id(clock: Clock) -> None:
    session = FakeSession(result([{"sys_id": INTERACTION}]), result([]))
    client = client_for(session, clock)

    assert client.find_interaction("contact^1") == INTERACTION
    assert client.find_interaction("contact-2") is None

    sent = session.sent[0]
    assert (sent.method, sent.url, sent.data) == ("GET", f"{TABLE}/interaction", None)
    assert sent.params == {
        "sysparm_query": "client_session_id=contact^^1^ORDERBYopened_at",  # a literal ^ is written ^^
        "sysparm_fields": "sys_id",
        "sysparm_limit": "1",
    }


def test_find_conversation_queries_by_interaction(clock: Clock) -> None:
    session = FakeSession(result([{"sys_id": CONVERSATION}]), result([{"sys_id": ""}]))
    client = client_for(session, clock)

    assert client.find_conversation(INTERACTION) == CONVERSATION
    assert client.find_conversation(INTERACTION) is None
    assert session.sent[0].url == f"{TABLE}/sys_cs_conversation"
    assert session.sent[0].params is not None
    assert session.sent[0].params["sysparm_query"] == f"interaction={INTERACTION}"


def test_find_message_ids_reads_back_in_chunks_of_fifty(clock: Clock) -> None:
    wanted = [f"seg-{i:03d}" for i in range(120)]
    session = FakeSession(
        result([{"source_message_id": "seg-000"}, {"source_message_id": "seg-049"}]),
        result([{"source_message_id": "seg-050"}, "not a row"]),
        result([]),
    )

    found = client_for(session, clock).find_message_ids(CONVERSATION, [*wanted, "seg-000", "a,b", "c^d"])

    assert found == {"seg-000", "seg-049", "seg-050"}
    assert [s.url for s in session.sent] == [f"{TABLE}/sys_cs_message"] * 3
    queries = [s.params["sysparm_query"] for s in session.sent if s.params]
    assert queries[0] == f"conversation={CONVERSATION}^source_message_idIN" + ",".join(wanted[:50])
    assert queries[2].endswith(",".join(wanted[100:]))  # ids holding , or ^ cannot be queried: skipped
    assert [s.params["sysparm_fields"] for s in session.sent if s.params] == ["source_message_id"] * 3


def test_table_api_without_a_result_list_is_ambiguous(clock: Clock) -> None:
    with pytest.raises(ServiceNowAmbiguousError, match="without a result list"):
        client_for(FakeSession(result({"sys_id": INTERACTION})), clock).find_interaction("contact-1")


# --- throttling and unavailability: retried ------------------------------------------------------------------------


def test_429_honours_retry_after_then_succeeds(clock: Clock) -> None:
    session = FakeSession(
        failure(429, "Rate limit exceeded", headers={"Retry-After": "2", "X-RateLimit-Limit": "100"}),
        result({"interactionId": INTERACTION}),
    )
    assert client_for(session, clock).create_interaction(OPEN) == INTERACTION  # a 429 was never run: re-POST
    assert clock.sleeps == [2.0]
    assert len(session.sent) == 2 and session.sent[0].data == session.sent[1].data


@pytest.mark.parametrize(
    ("retry_after", "slept"),
    [
        ("120", 120.0),  # minutes are honoured whole (an hourly quota), not cut to a few seconds
        ("100000", MAX_RETRY_AFTER_SECONDS),
        ("0", 0.0),
        ("-5", 0.0),
        ("Wed, 01 Jan garbage", None),
        ("nan", None),
    ],
)
def test_retry_after_is_honoured_up_to_a_day_and_unparseable_values_fall_back_to_backoff(
    clock: Clock, retry_after: str, slept: float | None
) -> None:
    session = FakeSession(failure(429, "Rate limit exceeded", headers={"Retry-After": retry_after}), result(SAVED))
    client_for(session, clock).post_messages(INTERACTION, [message()])
    (delay,) = clock.sleeps
    if slept is None:
        assert 0.0 <= delay <= 0.2
    else:
        assert delay == slept


def test_retry_after_as_an_http_date_is_capped(clock: Clock) -> None:
    session = FakeSession(
        failure(429, "Rate limit exceeded", headers={"Retry-After": "Fri, 31 Dec 2100 23:59:59 GMT"}), result(SAVED)
    )
    client_for(session, clock).post_messages(INTERACTION, [message()])
    assert clock.sleeps == [MAX_RETRY_AFTER_SECONDS]


def test_429_without_retry_after_backs_off_exponentially_with_jitter(clock: Clock) -> None:
    random.seed(7)
    throttled = [failure(429, "Rate limit exceeded", transaction_id=f"txn-{i}") for i in range(4)]
    client = client_for(FakeSession(*throttled), clock)

    with pytest.raises(ServiceNowUnavailableError) as caught:
        client.create_interaction(OPEN)

    assert caught.value.status == 429 and caught.value.transaction_id == "txn-3"
    assert len(clock.sleeps) == 3  # four attempts, three waits
    for attempt, delay in enumerate(clock.sleeps):
        assert 0.0 <= delay <= 0.2 * 2**attempt
    assert len(set(clock.sleeps)) == 3  # jittered, not a fixed schedule


@pytest.mark.parametrize("status", [502, 503, 504])
def test_gateway_errors_are_retried_then_unavailable(clock: Clock, status: int) -> None:
    session = FakeSession(*[failure(status, "Service Unavailable", "maintenance") for _ in range(4)])
    client = client_for(session, clock)

    with pytest.raises(ServiceNowUnavailableError) as caught:
        client.post_messages(INTERACTION, [message()])

    error = caught.value
    assert isinstance(error, RetryableError) and not isinstance(error, AmbiguousError)
    assert (error.status, error.message, error.detail, error.operation) == (
        status,
        "Service Unavailable",
        "maintenance",
        "post_messages",
    )
    assert len(session.sent) == 4 and len(clock.sleeps) == 3


def test_gateway_error_then_success(clock: Clock) -> None:
    session = FakeSession(failure(503, "Service Unavailable"), failure(502, "Bad Gateway"), result(SAVED))
    assert client_for(session, clock).post_messages(INTERACTION, [message()]) == CONVERSATION
    assert len(session.sent) == 3


def test_max_attempts_is_configurable(clock: Clock) -> None:
    session = FakeSession(failure(503, "Service Unavailable"), failure(503, "Service Unavailable"))
    with pytest.raises(ServiceNowUnavailableError):
        client_for(session, clock, max_attempts=2).create_interaction(OPEN)
    assert len(session.sent) == 2


def test_the_deadline_stops_retries_early_and_clamps_every_request(clock: Clock) -> None:
    # A retry needs 3 s left after its wait: after 1 s there are 3.5 s left (one retry), after 2 s only 2.5 s.
    session = FakeSession(*[failure(503, "Service Unavailable", headers={"Retry-After": "1"}) for _ in range(4)])
    client = client_for(session, clock)
    client.deadline = clock.now + 4.5

    with pytest.raises(ServiceNowUnavailableError):
        client.create_interaction(OPEN)

    assert len(session.sent) == 2 and clock.sleeps == [1.0]
    # connect 3.05 + read 10 would outlive the invocation: both are cut to what is left (4.5 s, then 3.5 s).
    assert session.sent[0].timeout == (2.25, 2.25)
    assert session.sent[1].timeout == (1.75, 1.75)


def test_no_request_starts_in_the_last_second(clock: Clock) -> None:
    session = FakeSession(result({"interactionId": INTERACTION}))
    client = client_for(session, clock)
    client.deadline = clock.now + 0.5
    with pytest.raises(ServiceNowUnavailableError, match="no time left"):
        client.create_interaction(OPEN)
    assert session.sent == []


def test_a_request_with_time_to_spare_keeps_the_configured_timeouts(clock: Clock) -> None:
    session = FakeSession(result({"interactionId": INTERACTION}))
    client = client_for(session, clock)
    client.deadline = clock.now + 60
    client.create_interaction(OPEN)
    assert session.sent[0].timeout == (3.05, 10.0)


def test_no_retry_when_the_wait_alone_would_pass_the_deadline(clock: Clock) -> None:
    session = FakeSession(failure(429, "Rate limit exceeded", headers={"Retry-After": "1800"}))
    client = client_for(session, clock)
    client.deadline = clock.now + 20.0

    with pytest.raises(ServiceNowUnavailableError) as caught:
        client.create_interaction(OPEN)
    assert clock.sleeps == []
    assert caught.value.retry_after == 1800.0  # the processor holds the shard with it


def test_retry_after_closes_a_gate_every_worker_honours(clock: Clock) -> None:
    """One thread's 429 stops the others: while the gate is closed nothing is sent, and a wait longer than the
    invocation fails at once (never sent) with the time left to wait."""
    session = FakeSession(failure(429, "Rate limit exceeded", headers={"Retry-After": "1800"}))
    client = client_for(session, clock)
    client.deadline = clock.now + 20.0
    with pytest.raises(ServiceNowUnavailableError):
        client.create_interaction(OPEN)

    clock.now += 600
    client.deadline = clock.now + 20.0
    with pytest.raises(ServiceNowUnavailableError, match="Retry-After") as caught:
        client.post_messages(INTERACTION, [message()])
    assert len(session.sent) == 1  # the second call never reached ServiceNow
    assert caught.value.retry_after == pytest.approx(1200.0)


def test_a_short_gate_is_waited_out_then_the_request_goes(clock: Clock) -> None:
    session = FakeSession(result(SAVED))
    client = client_for(session, clock)
    client.deadline = clock.now + 60
    client._close_gate(5.0)  # another worker's 429 with Retry-After: 5
    client.post_messages(INTERACTION, [message()])
    assert clock.sleeps == [5.0] and len(session.sent) == 1


def test_no_cookie_is_kept_between_requests() -> None:
    """A real instance sets JSESSIONID and runs one transaction at a time per session: a shared jar would make
    every worker thread queue behind one session."""
    client = ServiceNowClient(BASE, FakeCredentials(BASIC))
    jar = client.session.cookies
    response = requests.Response()
    response.status_code = 200
    response.url = f"{BASE}/api/now/table/interaction"
    import http.cookiejar
    import urllib.request

    request = urllib.request.Request(response.url)
    cookie = http.cookiejar.Cookie(
        0,
        "JSESSIONID",
        "abc",
        None,
        False,
        "example.service-now.com",
        True,
        False,
        "/",
        True,
        True,
        None,
        False,
        None,
        None,
        {},
    )
    jar.set_cookie_if_ok(cookie, request)
    assert len(jar) == 0


def test_202_is_never_a_success(clock: Clock) -> None:
    session = FakeSession(answer(202, raw=b"", content_type=""), result({"interactionId": INTERACTION}))
    assert client_for(session, clock).create_interaction(OPEN) == INTERACTION
    assert len(session.sent) == 2


def test_202_every_time_ends_unavailable(clock: Clock) -> None:
    session = FakeSession(*[answer(202, raw=b"") for _ in range(4)])
    with pytest.raises(ServiceNowUnavailableError, match="202") as caught:
        client_for(session, clock).post_messages(INTERACTION, [message()])
    assert caught.value.status == 202


@pytest.mark.parametrize(
    "page",
    [
        answer(200, raw=b"<html><body>Your instance is hibernating</body></html>", content_type="text/html"),
        answer(200, raw=b"  <!DOCTYPE html><html></html>", content_type=""),
    ],
)
def test_an_html_page_is_unavailable_and_retried(clock: Clock, page: requests.Response) -> None:
    session = FakeSession(page, result({"interactionId": INTERACTION}))
    assert client_for(session, clock).create_interaction(OPEN) == INTERACTION
    assert len(session.sent) == 2


def test_an_html_page_every_time_ends_unavailable(clock: Clock) -> None:
    pages = [answer(200, raw=b"<html>hibernating</html>", content_type="text/html") for _ in range(4)]
    with pytest.raises(ServiceNowUnavailableError, match="HTML"):
        client_for(FakeSession(*pages), clock).create_interaction(OPEN)


def test_a_non_json_503_does_not_crash(clock: Clock) -> None:
    pages = [answer(503, raw=b"<html>down</html>", content_type="text/html") for _ in range(4)]
    with pytest.raises(ServiceNowUnavailableError) as caught:
        client_for(FakeSession(*pages), clock).create_interaction(OPEN)
    assert caught.value.message == "HTTP 503 (non-JSON body)"


@pytest.mark.parametrize(
    "error", [requests.ConnectTimeout("connect timed out"), connection_refused(), requests.exceptions.SSLError()]
)
def test_connection_never_established_is_retried_even_for_post(clock: Clock, error: Exception) -> None:
    session = FakeSession(error, result({"interactionId": INTERACTION}))
    assert client_for(session, clock).create_interaction(OPEN) == INTERACTION
    assert len(session.sent) == 2 and len(clock.sleeps) == 1


def test_connection_refused_every_time_ends_unavailable(clock: Clock) -> None:
    session = FakeSession(*[connection_refused() for _ in range(4)])
    with pytest.raises(ServiceNowUnavailableError, match="connection refused") as caught:
        client_for(session, clock).post_messages(INTERACTION, [message()])
    assert caught.value.status is None and len(session.sent) == 4


# --- outcome unknown: never a blind re-POST ------------------------------------------------------------------------


def test_500_on_post_is_ambiguous_and_not_retried(clock: Clock) -> None:
    session = FakeSession(failure(500, "Internal Server Error", "script error", transaction_id="txn-500"))
    with pytest.raises(ServiceNowAmbiguousError) as caught:
        client_for(session, clock).post_messages(INTERACTION, [message()])

    error = caught.value
    assert isinstance(error, AmbiguousError) and isinstance(error, RetryableError)
    assert (error.status, error.message, error.detail, error.transaction_id) == (
        500,
        "Internal Server Error",
        "script error",
        "txn-500",
    )
    assert len(session.sent) == 1 and clock.sleeps == []


def test_500_on_patch_is_retried_because_closing_is_idempotent(clock: Clock) -> None:
    session = FakeSession(failure(500, "Internal Server Error"), result("Success"))
    client_for(session, clock).close_interaction(INTERACTION, None)
    assert [s.method for s in session.sent] == ["PATCH", "PATCH"]


def test_500_on_patch_every_time_ends_ambiguous(clock: Clock) -> None:
    session = FakeSession(*[failure(500, "Internal Server Error") for _ in range(4)])
    with pytest.raises(ServiceNowAmbiguousError):
        client_for(session, clock).close_interaction(INTERACTION, None)
    assert len(session.sent) == 4


def test_truncated_json_200_is_ambiguous(clock: Clock) -> None:
    session = FakeSession(answer(200, raw=b'{"result": {"interactionId": "0123456789ab'))
    with pytest.raises(ServiceNowAmbiguousError, match="truncated or invalid JSON"):
        client_for(session, clock).create_interaction(OPEN)
    assert len(session.sent) == 1


@pytest.mark.parametrize("body", [{"status": "success"}, ["result"]])
def test_a_2xx_without_result_is_ambiguous(clock: Clock, body: Any) -> None:
    with pytest.raises(ServiceNowAmbiguousError, match="without a result"):
        client_for(FakeSession(answer(200, body)), clock).post_messages(INTERACTION, [message()])


@pytest.mark.parametrize(
    "sentence",
    ["Exception occurred while saving the transcript", "", None],
)
def test_a_200_failure_sentence_on_messages_is_ambiguous(clock: Clock, sentence: str | None) -> None:
    session = FakeSession(result(sentence))
    with pytest.raises(ServiceNowAmbiguousError, match="failure sentence") as caught:
        client_for(session, clock).post_messages(INTERACTION, [message()])
    assert caught.value.status == 200 and len(session.sent) == 1


@pytest.mark.parametrize("sentence", ["ERROR: conversation not found", "ERROR: Interaction x is closed; no messages"])
def test_a_200_error_sentence_on_messages_is_a_permanent_rejection(clock: Clock, sentence: str) -> None:
    session = FakeSession(result(sentence))
    with pytest.raises(ServiceNowRejectedError, match="ERROR") as caught:
        client_for(session, clock).post_messages(INTERACTION, [message()])
    assert caught.value.status == 200 and len(session.sent) == 1


def test_already_processed_transcript_is_rejected(clock: Clock) -> None:
    sentence = f"ERROR: Transcript for interaction {INTERACTION} has already been processed"
    with pytest.raises(ServiceNowRejectedError, match="already been processed") as caught:
        client_for(FakeSession(result(sentence)), clock).post_transcript(INTERACTION, [message()], "2026-01-05")
    assert isinstance(caught.value, PermanentError)


@pytest.mark.parametrize(
    "error", [requests.ReadTimeout("read timed out"), connection_dropped(), requests.exceptions.ChunkedEncodingError()]
)
def test_no_complete_response_to_a_post_is_ambiguous_and_not_retried(clock: Clock, error: Exception) -> None:
    session = FakeSession(error)
    with pytest.raises(ServiceNowAmbiguousError) as caught:
        client_for(session, clock).create_interaction(OPEN)
    assert caught.value.status is None and caught.value.__cause__ is error
    assert len(session.sent) == 1 and clock.sleeps == []


@pytest.mark.parametrize("error", [requests.ReadTimeout("read timed out"), connection_dropped()])
def test_no_complete_response_to_a_get_is_retried(clock: Clock, error: Exception) -> None:
    session = FakeSession(error, result([{"sys_id": INTERACTION}]))
    assert client_for(session, clock).find_interaction("contact-1") == INTERACTION
    assert len(session.sent) == 2


# --- rejected: no retry, the error carries what an admin needs -----------------------------------------------------


@pytest.mark.parametrize(
    ("status", "message_text", "detail"),
    [
        (400, "Exception while reading request", "Unexpected character at position 0"),
        (403, "User Not Authorized", "ACL denies create on interaction"),
        (404, "No Record found", "Record doesn't exist or ACL restricts the record retrieval"),
    ],
)
def test_client_errors_are_rejected_with_the_envelope_and_transaction_id(
    clock: Clock, status: int, message_text: str, detail: str
) -> None:
    session = FakeSession(failure(status, message_text, detail, transaction_id="9f8e7d6c"))
    with pytest.raises(ServiceNowRejectedError) as caught:
        client_for(session, clock).post_messages(INTERACTION, [message()])

    error = caught.value
    assert isinstance(error, PermanentError) and not isinstance(error, RetryableError)
    assert (error.status, error.message, error.detail, error.transaction_id, error.operation) == (
        status,
        message_text,
        detail,
        "9f8e7d6c",
        "post_messages",
    )
    assert error.as_dict()["transaction_id"] == "9f8e7d6c"
    assert "transaction=9f8e7d6c" in str(error)
    assert len(session.sent) == 1 and clock.sleeps == []


def test_a_redirect_is_rejected_not_followed(clock: Clock) -> None:
    session = FakeSession(answer(302, raw=b"", headers={"Location": "https://login.example.com/sso"}))
    with pytest.raises(ServiceNowRejectedError, match="redirect to https://login.example.com/sso"):
        client_for(session, clock).create_interaction(OPEN)


def test_table_api_403_is_read_forbidden(clock: Clock) -> None:
    session = FakeSession(failure(403, "User Not Authorized", "ACL on sys_cs_message", transaction_id="txn-acl"))
    with pytest.raises(ServiceNowReadForbiddenError) as caught:
        client_for(session, clock).find_message_ids(CONVERSATION, ["seg-1"])
    error = caught.value
    assert isinstance(error, ServiceNowRejectedError)
    assert (error.status, error.detail, error.transaction_id, error.operation) == (
        403,
        "ACL on sys_cs_message",
        "txn-acl",
        "find_messages",
    )


def test_table_api_404_stays_a_plain_rejection(clock: Clock) -> None:
    session = FakeSession(failure(400, "Invalid table sys_cs_message"))
    with pytest.raises(ServiceNowRejectedError) as caught:
        client_for(session, clock).find_conversation(INTERACTION)
    assert not isinstance(caught.value, ServiceNowReadForbiddenError)


# --- authentication ------------------------------------------------------------------------------------------------


def test_401_refreshes_the_credentials_once_then_succeeds(clock: Clock) -> None:
    credentials = FakeCredentials(BASIC, Credentials(username="bridge", password="pw-2"))
    session = FakeSession(failure(401, "User Not Authenticated"), result({"interactionId": INTERACTION}))

    assert client_for(session, clock, credentials).create_interaction(OPEN) == INTERACTION

    assert credentials.reads == [False, True]  # cached, then one forced re-read of the (rotated) secret
    assert session.sent[0].headers["Authorization"] != session.sent[1].headers["Authorization"]
    assert session.sent[1].headers["Authorization"] == "Basic YnJpZGdlOnB3LTI="  # bridge:pw-2
    assert clock.sleeps == []  # a refresh is not a failure to back off from


def test_401_twice_is_an_auth_error(clock: Clock) -> None:
    credentials = FakeCredentials(BASIC)
    session = FakeSession(
        failure(401, "User Not Authenticated"), failure(401, "User Not Authenticated", transaction_id="txn-401")
    )
    with pytest.raises(ServiceNowAuthError) as caught:
        client_for(session, clock, credentials).post_messages(INTERACTION, [message()])

    error = caught.value
    assert isinstance(error, ConfigurationError) and not isinstance(error, RetryableError)
    assert (error.status, error.transaction_id) == (401, "txn-401")
    assert len(session.sent) == 2 and credentials.reads == [False, True]


def test_credentials_are_read_once_and_cached(clock: Clock) -> None:
    credentials = FakeCredentials(BASIC)
    session = FakeSession(*[result(SAVED) for _ in range(3)])
    client = client_for(session, clock, credentials)
    for _ in range(3):
        client.post_messages(INTERACTION, [message()])
    assert credentials.reads == [False]


def test_oauth_token_is_fetched_once_and_cached(clock: Clock) -> None:
    session = FakeSession(
        result({"interactionId": INTERACTION}), result(SAVED), result("Success"), tokens=(token("tok-1"),)
    )
    client = client_for(session, clock, FakeCredentials(OAUTH))

    client.create_interaction(OPEN)
    client.post_messages(INTERACTION, [message()])
    client.close_interaction(INTERACTION, None)

    assert session.token_forms == [
        {"grant_type": "client_credentials", "client_id": "voicebridge", "client_secret": "client-secret-1"}
    ]
    assert {s.headers["Authorization"] for s in session.sent} == {"Bearer tok-1"}


def test_oauth_token_is_refreshed_on_401(clock: Clock) -> None:
    session = FakeSession(
        failure(401, "User Not Authenticated"), result(SAVED), tokens=(token("tok-1"), token("tok-2"))
    )
    client = client_for(session, clock, FakeCredentials(OAUTH))

    assert client.post_messages(INTERACTION, [message()]) == CONVERSATION

    assert [s.headers["Authorization"] for s in session.sent] == ["Bearer tok-1", "Bearer tok-2"]
    assert len(session.token_forms) == 2


def test_oauth_token_is_refreshed_shortly_before_it_expires(clock: Clock) -> None:
    session = FakeSession(*[result(SAVED) for _ in range(3)], tokens=(token("tok-1", 1800), token("tok-2", 1800)))
    client = client_for(session, clock, FakeCredentials(OAUTH))

    client.post_messages(INTERACTION, [message()])
    clock.now += 1700  # still more than a minute left
    client.post_messages(INTERACTION, [message()])
    clock.now += 41  # inside the last minute
    client.post_messages(INTERACTION, [message()])

    assert [s.headers["Authorization"] for s in session.sent] == ["Bearer tok-1", "Bearer tok-1", "Bearer tok-2"]


def test_oauth_password_grant_when_the_secret_holds_a_user(clock: Clock) -> None:
    credentials = FakeCredentials(Credentials("bridge", "pw-1", "voicebridge", "client-secret-1"))
    session = FakeSession(result(SAVED), tokens=(token("tok-1"),))
    client_for(session, clock, credentials).post_messages(INTERACTION, [message()])
    assert session.token_forms == [
        {
            "grant_type": "password",
            "client_id": "voicebridge",
            "client_secret": "client-secret-1",
            "username": "bridge",
            "password": "pw-1",
        }
    ]


@pytest.mark.parametrize("status", [400, 401, 403])
def test_oauth_token_refused_is_an_auth_error(clock: Clock, status: int) -> None:
    refused = answer(status, {"error": "access_denied", "error_description": "Invalid client credentials"})
    session = FakeSession(tokens=(refused,))
    with pytest.raises(ServiceNowAuthError, match="OAuth token refused: access_denied") as caught:
        client_for(session, clock, FakeCredentials(OAUTH)).create_interaction(OPEN)
    assert caught.value.detail == "Invalid client credentials"
    assert session.sent == []  # nothing was sent to the API


@pytest.mark.parametrize(
    "outcome",
    [requests.ConnectTimeout("connect timed out"), answer(503, raw=b"<html/>"), answer(200, {"token": "x"})],
)
def test_token_endpoint_trouble_is_unavailable_and_retried(clock: Clock, outcome: Any) -> None:
    session = FakeSession(result(SAVED), tokens=(outcome, token("tok-1")))
    assert client_for(session, clock, FakeCredentials(OAUTH)).post_messages(INTERACTION, [message()]) == CONVERSATION
    assert len(session.token_forms) == 2 and len(clock.sleeps) == 1


# --- logging -------------------------------------------------------------------------------------------------------


def test_logs_carry_metadata_and_never_a_body_or_secret(
    clock: Clock, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Powertools' handler kept the stdout it saw at import; capsys swaps sys.stdout per test phase.
    handler = logger.registered_handler
    assert isinstance(handler, logging.StreamHandler)
    monkeypatch.setattr(handler, "stream", sys.stdout)
    credentials = FakeCredentials(Credentials("bridge", "pw-secret", "voicebridge", "client-secret-1"))
    session = FakeSession(
        failure(429, "Rate limit exceeded", headers={"Retry-After": "1"}, transaction_id="txn-throttle"),
        result({"interactionId": INTERACTION}, transaction_id="txn-created"),
        connection_refused(),
        result(SAVED),
        failure(401, "User Not Authenticated"),
        result(SAVED),
        failure(500, "Internal Server Error", "boom"),
        tokens=(token("tok-secret-1"), token("tok-secret-2")),
    )
    client = client_for(session, clock, credentials)

    client.create_interaction(OPEN)
    client.post_messages(INTERACTION, [message()])
    client.post_messages(INTERACTION, [message()])
    with pytest.raises(ServiceNowAmbiguousError):
        client.post_messages(INTERACTION, [message()])

    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.strip()]
    calls = [line for line in lines if line["message"] == "servicenow call"]
    assert {line["operation"] for line in calls} >= {"create_interaction", "post_messages", "oauth_token"}
    assert {"txn-throttle", "txn-created"} <= {line.get("transaction_id") for line in calls}
    assert all({"status", "latency_ms", "attempt", "method"} <= set(line) for line in calls)
    assert any(line["message"] == "servicenow call failed" for line in lines)
    text = json.dumps(lines, ensure_ascii=False)
    for forbidden in (SECRET_TEXT, "4111", "+14155550100", "beth", "pw-secret", "client-secret-1", "tok-secret"):
        assert forbidden not in text, forbidden
