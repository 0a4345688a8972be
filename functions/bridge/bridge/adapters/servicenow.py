"""ServiceNow Voice Interaction API client (requests).

- One ``requests.Session`` per container for its keep-alive pool (sized to the worker count), TLS verification on,
  and **no cookie jar**: a real instance answers with ``JSESSIONID`` (+ a load-balancer cookie) and runs one
  transaction at a time per session, so a shared jar would funnel every worker thread through one ServiceNow
  session (measured: a 120-call backlog 10.5x slower). Every request authenticates on its own instead.
- ``(connect, read)`` timeouts on every call, clamped to what the invocation has left; retries only what provably
  was not applied (429, 502/503/504, 202, connection refused, an HTML page), honouring ``Retry-After`` through a
  gate every worker thread shares, bounded by attempts and the invocation's deadline.
- Never a blind re-POST after an ambiguous failure (500, read timeout, connection dropped after sending, a
  truncated or failure-sentence 200): that raises :class:`ServiceNowAmbiguousError` and the caller reconciles.
- Logs method, operation, status, latency and ``X-Transaction-ID``; never a request or response body.
"""

from __future__ import annotations

import base64
import http.cookiejar
import json
import math
import random
import re
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any, Protocol

import requests
from requests.adapters import HTTPAdapter

from bridge.adapters.concurrency import AdaptiveLimit, Outcome
from bridge.adapters.secrets import Credentials
from bridge.errors import (
    ServiceNowAmbiguousError,
    ServiceNowAuthError,
    ServiceNowError,
    ServiceNowReadForbiddenError,
    ServiceNowRejectedError,
    ServiceNowUnavailableError,
)
from bridge.log import logger
from bridge.models import OpenRequest, OutgoingMessage

NOT_APPLIED_STATUSES = frozenset({429, 502, 503, 504})
# Replies that say the node is out of capacity (the adaptive limit backs off): refused, gateway timeouts, dropped 202s.
OVERLOAD_STATUSES = frozenset({202, 429, 502, 503, 504})
# ServiceNow's hourly rate-limit rules answer Retry-After with the rest of the hour: honour it whole (the gate
# below), but never believe more than a day.
MAX_RETRY_AFTER_SECONDS = 86400.0
# No request starts with less than this left before the deadline: it could only time out (and be ambiguous).
MIN_REQUEST_SECONDS = 1.0
SUCCESS_SENTENCE = "successfully saved"
CONVERSATION_ID = re.compile(r"Conversation id:\s*([0-9a-fA-F]{32})")
SYS_ID = re.compile(r"^[0-9a-fA-F]{32}$")
FAILURE_PREFIXES = ("error", "exception", "failed", "failure")
READ_BACK_CHUNK = 50
OPERATION_STEPS = {
    "create_interaction": "open",
    "create_conversation": "open",
    "post_messages": "send",
    "post_transcript": "send",
    "close_interaction": "close",
    "find_interaction": "recover",
    "find_conversation": "recover",
    "find_messages": "reconcile",
    "probe_messages": "reconcile",
    "find_open_interactions": "close",
    "oauth_token": "auth",
}


@dataclass(frozen=True)
class Reply:
    status: int
    result: Any
    transaction_id: str | None


class CredentialsProvider(Protocol):
    """What the client needs from the secret adapter (``SecretCredentials`` satisfies it)."""

    def get(self, force: bool = False) -> Credentials: ...


def _envelope(response: requests.Response) -> tuple[str, str | None]:
    """(message, detail) from the ServiceNow error envelope, tolerating non-JSON bodies."""
    try:
        body = response.json()
    except ValueError:
        return f"HTTP {response.status_code} (non-JSON body)", None
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict):
        message = str(error.get("message") or f"HTTP {response.status_code}")
        detail = error.get("detail")
        return message[:500], (str(detail)[:1000] if detail is not None else None)
    if isinstance(error, str):  # OAuth errors: {"error": "access_denied", "error_description": ...}
        return error[:200], str(body.get("error_description") or "")[:500] or None
    return f"HTTP {response.status_code}", None


def _retry_after(response: requests.Response | None) -> float | None:
    if response is None:
        return None
    value = response.headers.get("Retry-After")
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            seconds = parsedate_to_datetime(value).timestamp() - time.time()
        except (TypeError, ValueError):
            return None
    if math.isnan(seconds):  # "nan" parses as a float; time.sleep(nan) raises ValueError
        return None
    return min(max(seconds, 0.0), MAX_RETRY_AFTER_SECONDS)


class _NoCookies(http.cookiejar.DefaultCookiePolicy):
    """Accept no cookie and send none (see the module docstring: one ServiceNow session per cookie)."""

    def set_ok(self, cookie: http.cookiejar.Cookie, request: Any) -> bool:
        return False

    def return_ok(self, cookie: http.cookiejar.Cookie, request: Any) -> bool:
        return False


def _encoded_value(value: str) -> str:
    # Encoded queries separate terms with ^; a literal ^ is written ^^.
    return value.replace("^", "^^")


class ServiceNowClient:
    """Implements ``ServiceNowPort`` over HTTP. Thread-safe: one instance serves every worker thread."""

    def __init__(
        self,
        base_url: str,
        credentials: CredentialsProvider,
        connect_timeout_s: float = 3.05,
        read_timeout_s: float = 10.0,
        pool_size: int = 8,
        max_attempts: int = 4,
        session: requests.Session | None = None,
        sleep: Callable[[float], None] = time.sleep,
        monotonic: Callable[[], float] = time.monotonic,
        limiter: AdaptiveLimit | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.api = f"{self.base_url}/api/now/v1/cs/voice-interactions"
        self.credentials = credentials
        self.timeout = (connect_timeout_s, read_timeout_s)
        self.max_attempts = max_attempts
        self.sleep = sleep
        self.monotonic = monotonic
        self.deadline: float | None = None  # monotonic; set per invocation by the handler
        self.session = session or requests.Session()
        cookies = getattr(self.session, "cookies", None)
        if cookies is not None:  # test doubles of the session have no jar
            cookies.set_policy(_NoCookies())
        adapter = HTTPAdapter(pool_connections=2, pool_maxsize=max(pool_size, 2), max_retries=0)
        self.session.mount("https://", adapter)
        self.session.mount("http://", adapter)
        self.session.verify = True
        self._lock = threading.Lock()
        self._creds: Credentials | None = None
        self._token: str | None = None
        self._token_expiry = 0.0
        # Retry-After is about the instance (or the integration user's quota), not one request: every worker waits
        # for it, so one thread's 429 stops the others from hammering a node that is already full.
        self._gate_until = 0.0  # monotonic
        # How many requests may be at ServiceNow at once, adapted to what the node takes (concurrency.py): after
        # the gate reopens only that many go, not every worker at the same instant.
        self.limiter = limiter or AdaptiveLimit(max(pool_size, 1))

    # -- ServiceNowPort ----------------------------------------------------------------------------------------

    def create_interaction(self, request: OpenRequest) -> str:
        reply = self._call("POST", self.api, "create_interaction", body=request.to_payload())
        interaction = reply.result.get("interactionId") if isinstance(reply.result, dict) else None
        if not isinstance(interaction, str) or not SYS_ID.match(interaction):
            raise ServiceNowAmbiguousError(
                "no interactionId in the response",
                status=reply.status,
                transaction_id=reply.transaction_id,
                operation="create_interaction",
            )
        return interaction

    def create_conversation(self, interaction_id: str, request: OpenRequest) -> str:
        reply = self._call(
            "POST", f"{self.api}/{interaction_id}/conversation", "create_conversation", body=request.to_payload()
        )
        result = reply.result
        if isinstance(result, dict):  # tolerate {"conversationId": ...} (the reference names the field so)
            result = result.get("conversationId") or result.get("sys_id")
        if not isinstance(result, str) or not SYS_ID.match(result):
            raise ServiceNowAmbiguousError(
                "no conversation id in the response",
                status=reply.status,
                transaction_id=reply.transaction_id,
                operation="create_conversation",
            )
        return result

    def post_messages(self, interaction_id: str, messages: Sequence[OutgoingMessage]) -> str | None:
        reply = self._call(
            "POST",
            f"{self.api}/{interaction_id}/messages",
            "post_messages",
            body=[m.to_payload() for m in messages],
            expect_sentence=True,
            count=len(messages),
        )
        return self._conversation_from_sentence(reply)

    def post_transcript(
        self, interaction_id: str, messages: Sequence[OutgoingMessage], conversation_started: str
    ) -> str | None:
        body = {
            "interactionId": interaction_id,
            "source": "Amazon Connect",
            "conversationStarted": conversation_started,
            "transcript": [m.to_payload() for m in messages],
        }
        reply = self._call(
            "POST", f"{self.api}/{interaction_id}/transcript", "post_transcript", body=body, expect_sentence=True
        )
        return self._conversation_from_sentence(reply)

    def close_interaction(self, interaction_id: str, recording_url: str | None) -> None:
        body = {"state": "closed_complete"}
        if recording_url:
            body["recordingURL"] = recording_url
        # Closing is idempotent (closing twice is harmless), so ambiguous failures may be retried.
        reply = self._call(
            "PATCH", f"{self.api}/{interaction_id}/state", "close_interaction", body=body, idempotent=True
        )
        if not (isinstance(reply.result, str) and reply.result.strip().lower() == "success"):
            raise ServiceNowAmbiguousError(
                "close did not answer Success",
                status=reply.status,
                transaction_id=reply.transaction_id,
                operation="close_interaction",
            )

    def find_interaction(self, client_session_id: str) -> str | None:
        rows = self._table(
            "interaction",
            f"client_session_id={_encoded_value(client_session_id)}^ORDERBYopened_at",
            "sys_id",
            1,
            "find_interaction",
        )
        return rows[0].get("sys_id") or None if rows else None

    def find_conversation(self, interaction_id: str) -> str | None:
        rows = self._table(
            "sys_cs_conversation", f"interaction={_encoded_value(interaction_id)}", "sys_id", 1, "find_conversation"
        )
        return rows[0].get("sys_id") or None if rows else None

    def find_message_ids(self, conversation_id: str, segment_ids: Iterable[str]) -> set[str]:
        wanted = [i for i in dict.fromkeys(segment_ids) if "," not in i and "^" not in i]
        found: set[str] = set()
        for start in range(0, len(wanted), READ_BACK_CHUNK):
            chunk = wanted[start : start + READ_BACK_CHUNK]
            query = f"conversation={_encoded_value(conversation_id)}^source_message_idIN{','.join(chunk)}"
            rows = self._table("sys_cs_message", query, "source_message_id", len(chunk) * 4, "find_messages")
            found.update(str(row.get("source_message_id")) for row in rows)
        return found

    def conversation_has_messages(self, conversation_id: str) -> bool:
        """Whether the Table API shows any message of the conversation (the filtered-reads probe)."""
        rows = self._table(
            "sys_cs_message", f"conversation={_encoded_value(conversation_id)}", "sys_id", 1, "probe_messages"
        )
        return bool(rows)

    def find_open_interactions(self, client_session_id: str) -> list[str]:
        """Every interaction of the contact that is not closed (orphans of a blind re-create), oldest first."""
        rows = self._table(
            "interaction",
            f"client_session_id={_encoded_value(client_session_id)}^state!=closed_complete^ORDERBYopened_at",
            "sys_id",
            20,
            "find_open_interactions",
        )
        return [str(row["sys_id"]) for row in rows if row.get("sys_id")]

    # -- HTTP ----------------------------------------------------------------------------------------------------

    def _table(self, table: str, query: str, fields: str, limit: int, operation: str) -> list[dict[str, Any]]:
        params = {"sysparm_query": query, "sysparm_fields": fields, "sysparm_limit": str(limit)}
        try:
            reply = self._call(
                "GET", f"{self.base_url}/api/now/table/{table}", operation, params=params, idempotent=True
            )
        except ServiceNowRejectedError as exc:
            if exc.status in (401, 403):
                raise ServiceNowReadForbiddenError(
                    exc.message,
                    status=exc.status,
                    detail=exc.detail,
                    transaction_id=exc.transaction_id,
                    operation=operation,
                ) from exc
            raise
        if not isinstance(reply.result, list):
            raise ServiceNowAmbiguousError(
                "Table API answered without a result list",
                status=reply.status,
                transaction_id=reply.transaction_id,
                operation=operation,
            )
        return [row for row in reply.result if isinstance(row, dict)]

    @staticmethod
    def _conversation_from_sentence(reply: Reply) -> str | None:
        match = CONVERSATION_ID.search(str(reply.result))
        return match.group(1) if match else None

    def _call(
        self,
        method: str,
        url: str,
        operation: str,
        *,
        body: Any = None,
        params: dict[str, str] | None = None,
        idempotent: bool = False,
        expect_sentence: bool = False,
        count: int | None = None,
    ) -> Reply:
        """One request with the retry policy of the module docstring; ``count`` (messages sent) is only logged."""
        data = json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode("utf-8") if body is not None else None
        refreshed = False
        attempt = 0
        last: ServiceNowError
        waited_for_gate = 0.0  # the gate this thread already slept out (its own Retry-After)
        while True:
            attempt += 1
            self._wait_for_gate(operation, waited_for_gate)
            started = self.monotonic()
            response: requests.Response | None = None
            try:
                headers = self._headers(refreshed)  # may fetch the secret or a token: before the clamp below
                response = self._limited_request(
                    method, url, operation, waited_for_gate, data=data, params=params, headers=headers
                )
                reply = self._classify(response, operation, idempotent, expect_sentence)
                self._log(operation, method, response, started, attempt, count)
                return reply
            except ServiceNowAuthError:
                raise
            except _Unauthorized as exc:
                self._log(operation, method, response, started, attempt, count)
                if refreshed:
                    said = f" ({exc.message})" if exc.message and not exc.message.startswith("HTTP ") else ""
                    raise ServiceNowAuthError(
                        f"ServiceNow rejected the credentials after a refresh{said}: check the secret",
                        status=401,
                        transaction_id=exc.transaction_id,
                        operation=operation,
                    ) from None
                self._invalidate()
                refreshed = True
                attempt -= 1  # the refresh is not a retry of a failure
                continue
            except (ServiceNowUnavailableError, ServiceNowAmbiguousError) as exc:
                self._log(operation, method, response, started, attempt, count)
                if isinstance(exc, ServiceNowAmbiguousError) and not idempotent:
                    raise
                last = exc
            except ServiceNowError:
                self._log(operation, method, response, started, attempt, count)
                raise
            except (requests.ConnectTimeout, requests.exceptions.SSLError) as exc:
                last = ServiceNowUnavailableError(f"cannot connect ({type(exc).__name__})", operation=operation)
            except requests.ConnectionError as exc:
                if _never_sent(exc):
                    last = ServiceNowUnavailableError("connection refused", operation=operation)
                else:
                    ambiguous = ServiceNowAmbiguousError(
                        f"connection dropped ({type(exc).__name__})", operation=operation
                    )
                    if not idempotent:
                        raise ambiguous from exc
                    last = ambiguous
            except requests.RequestException as exc:  # read timeout, chunked/decoding errors
                ambiguous = ServiceNowAmbiguousError(
                    f"no complete response ({type(exc).__name__})", operation=operation
                )
                ambiguous.timed_out = isinstance(exc, requests.Timeout)
                if not idempotent:
                    raise ambiguous from exc
                last = ambiguous
            if response is None:
                logger.warning(
                    "servicenow call failed",
                    step=OPERATION_STEPS.get(operation, operation),
                    outcome="no response",
                    operation=operation,
                    method=method,
                    attempt=attempt,
                    error=last.message,
                    latency_ms=round((self.monotonic() - started) * 1000, 1),
                )
            delay = _retry_after(response)
            if delay is not None:
                waited_for_gate = self._close_gate(delay)
                if isinstance(last, ServiceNowUnavailableError) and not self._has_time_for(delay):
                    last.retry_after = delay  # longer than this invocation can wait: the processor holds the shard
            else:
                delay = random.uniform(0, min(5.0, 0.2 * 2 ** (attempt - 1)))  # noqa: S311 - jitter, not crypto
            if attempt >= self.max_attempts or not self._has_time_for(delay):
                raise last
            self.sleep(delay)

    def _limited_request(
        self, method: str, url: str, operation: str, waited_for_gate: float, **kwargs: Any
    ) -> requests.Response:
        """Send once a permit of the adaptive limit is free (and the gate open), and tell the limit what the reply
        said about the node's capacity."""
        while True:
            left = None if self.deadline is None else self.deadline - self.monotonic() - MIN_REQUEST_SECONDS
            started = self.limiter.acquire(timeout=None if left is None else max(left, 0.0))
            if started is None:
                raise ServiceNowUnavailableError(
                    "no ServiceNow permit free before the invocation's deadline; not sent", operation=operation
                )
            if self._gate_until > self.monotonic() and self._gate_until > waited_for_gate:
                self.limiter.release(started, Outcome.NEUTRAL)  # the gate closed while this thread waited: wait it out
                self._wait_for_gate(operation, waited_for_gate)
                waited_for_gate = self._gate_until  # slept out once: never loop on the same gate
                continue
            break
        outcome = Outcome.NEUTRAL
        try:
            response = self.session.request(
                method, url, timeout=self._request_timeout(operation), allow_redirects=False, **kwargs
            )
            outcome = Outcome.OVERLOADED if response.status_code in OVERLOAD_STATUSES else Outcome.OK
            return response
        except requests.ConnectTimeout:
            raise
        except requests.Timeout:
            outcome = Outcome.OVERLOADED  # a node that does not answer in the read timeout is saturated
            raise
        finally:
            self.limiter.release(started, outcome)

    def _close_gate(self, seconds: float) -> float:
        with self._lock:
            self._gate_until = max(self._gate_until, self.monotonic() + seconds)
            return self._gate_until

    def _wait_for_gate(self, operation: str, already_waited_for: float = 0.0) -> None:
        """Sleep until ServiceNow's last Retry-After has passed, or fail at once (never sent) if the invocation
        ends first: a quota of minutes must not be spent as retries, by this thread or any other."""
        gate = self._gate_until
        wait = gate - self.monotonic()
        if wait <= 0 or gate <= already_waited_for:
            return
        if not self._has_time_for(wait):
            error = ServiceNowUnavailableError(
                f"ServiceNow asked to wait {wait:.0f} s (Retry-After); not sent", status=429, operation=operation
            )
            error.retry_after = wait
            raise error
        self.sleep(wait)

    def _request_timeout(self, operation: str) -> tuple[float, float]:
        """(connect, read) timeouts, clamped so that no request outlives the invocation's deadline."""
        if self.deadline is None:
            return self.timeout
        left = self.deadline - self.monotonic()
        if left < MIN_REQUEST_SECONDS:
            raise ServiceNowUnavailableError(
                "no time left in the invocation for a request; not sent", operation=operation
            )
        connect, read = self.timeout
        if connect + read <= left:
            return self.timeout
        connect = min(connect, left / 2)
        return connect, left - connect

    def _has_time_for(self, delay: float) -> bool:
        if self.deadline is None:
            return True
        # Leave room for the attempt itself after sleeping (a whole one where the deadline allows).
        attempt = min(sum(self.timeout), 3.0)
        return self.monotonic() + delay + max(attempt, MIN_REQUEST_SECONDS) < self.deadline

    def _classify(self, response: requests.Response, operation: str, idempotent: bool, sentence: bool) -> Reply:
        status = response.status_code
        txn = response.headers.get("X-Transaction-ID")

        def error(kind: type[ServiceNowError], message: str, detail: str | None = None) -> ServiceNowError:
            return kind(message, status=status, detail=detail, transaction_id=txn, operation=operation)

        if status == 401:
            message, detail = _envelope(response)
            raise _Unauthorized(txn, f"{message}: {detail}" if detail else message)
        if status in NOT_APPLIED_STATUSES:
            message, detail = _envelope(response)
            raise error(ServiceNowUnavailableError, message, detail)
        if status == 202:  # the session queue overflowed: the request was dropped, never a success
            raise error(ServiceNowUnavailableError, "202 Accepted: request was queued and dropped")
        if status >= 500:
            message, detail = _envelope(response)
            raise error(ServiceNowAmbiguousError, message, detail)
        if 300 <= status < 400:
            raise error(ServiceNowRejectedError, f"unexpected redirect to {response.headers.get('Location', '?')}")
        if status >= 400:
            message, detail = _envelope(response)
            raise error(ServiceNowRejectedError, message, detail)
        content_type = response.headers.get("Content-Type", "")
        text = response.content.lstrip()[:1]
        if "html" in content_type or text == b"<":
            # A hibernating or maintenance instance answers an HTML page: nothing was applied.
            raise error(ServiceNowUnavailableError, "HTML page instead of JSON (instance hibernating?)")
        try:
            body = response.json()
        except ValueError:
            raise error(ServiceNowAmbiguousError, "truncated or invalid JSON in a 2xx response") from None
        if not isinstance(body, dict) or "result" not in body:
            raise error(ServiceNowAmbiguousError, "2xx response without a result")
        result = body["result"]
        if sentence:
            text_result = str(result)
            if "already been processed" in text_result or text_result.lstrip().upper().startswith("ERROR"):
                # The script API's "ERROR: ..." sentences are validation refusals (closed interaction, processed
                # transcript): re-sending cannot help. "Exception occurred ..." stays ambiguous below.
                raise error(ServiceNowRejectedError, text_result[:300])
            if SUCCESS_SENTENCE not in text_result.lower():
                # The script API reports failure as text in a 200 (maybe applied, maybe not).
                raise error(ServiceNowAmbiguousError, f"failure sentence in a 200: {text_result[:200]}")
        elif isinstance(result, str) and result.strip().lower().startswith(FAILURE_PREFIXES):
            raise error(ServiceNowAmbiguousError, f"failure sentence in a 200: {result[:200]}")
        return Reply(status, result, txn)

    def _log(
        self,
        operation: str,
        method: str,
        response: requests.Response | None,
        started: float,
        attempt: int,
        count: int | None = None,
    ) -> None:
        # One INFO line per ServiceNow request is the contact's timeline in steady state (the runner logs its own
        # steps at INFO only when something notable happens): a Powertools line costs ~25 us of CPU.
        if response is None:
            return
        status = response.status_code
        logger.info(
            "servicenow call",
            step=OPERATION_STEPS.get(operation, operation),
            outcome="ok" if 200 <= status < 300 else f"http {status}",
            operation=operation,
            method=method,
            status=status,
            latency_ms=round((self.monotonic() - started) * 1000, 1),
            attempt=attempt,
            count=count,
            transaction_id=response.headers.get("X-Transaction-ID"),
        )

    # -- auth ----------------------------------------------------------------------------------------------------

    def _headers(self, refreshed: bool) -> dict[str, str]:
        headers = {"Accept": "application/json", "Content-Type": "application/json"}
        creds = self._credentials(force=False)
        if creds.oauth:
            headers["Authorization"] = f"Bearer {self._bearer(creds)}"
        else:
            token = base64.b64encode(f"{creds.username}:{creds.password}".encode()).decode("ascii")
            headers["Authorization"] = f"Basic {token}"
        return headers

    def _credentials(self, force: bool) -> Credentials:
        with self._lock:
            if self._creds is None or force:
                self._creds = self.credentials.get(force=force)
            return self._creds

    def _invalidate(self) -> None:
        with self._lock:
            self._token = None
            self._token_expiry = 0.0
        self._credentials(force=True)  # the secret may have been rotated

    def _bearer(self, creds: Credentials) -> str:
        with self._lock:
            if self._token and self.monotonic() < self._token_expiry:
                return self._token
            form = {
                "grant_type": "client_credentials",
                "client_id": creds.client_id,
                "client_secret": creds.client_secret,
            }
            if creds.username and creds.password:
                form.update(grant_type="password", username=creds.username, password=creds.password)
            started = self.monotonic()
            try:
                response = self.session.post(
                    f"{self.base_url}/oauth_token.do",
                    data=form,
                    timeout=self._request_timeout("oauth_token"),
                    headers={"Accept": "application/json"},
                    allow_redirects=False,
                )
            except requests.RequestException as exc:
                raise ServiceNowUnavailableError(
                    f"token endpoint unreachable ({type(exc).__name__})", operation="oauth_token"
                ) from exc
            self._log("oauth_token", "POST", response, started, 1)
            txn = response.headers.get("X-Transaction-ID")
            if response.status_code in (400, 401, 403):
                message, detail = _envelope(response)
                raise ServiceNowAuthError(
                    f"OAuth token refused: {message}",
                    status=response.status_code,
                    detail=detail,
                    transaction_id=txn,
                    operation="oauth_token",
                )
            if response.status_code != 200:
                raise ServiceNowUnavailableError(
                    f"token endpoint answered {response.status_code}",
                    status=response.status_code,
                    transaction_id=txn,
                    operation="oauth_token",
                )
            try:
                body = response.json()
                token = str(body["access_token"])
                expires_in = float(body.get("expires_in", 1800))
            except (ValueError, KeyError, TypeError):
                raise ServiceNowUnavailableError(
                    "token endpoint answered without access_token",
                    status=200,
                    transaction_id=txn,
                    operation="oauth_token",
                ) from None
            # Refresh a minute early (or at half-life for short tokens) rather than meet a 401 mid-batch.
            self._token = token
            self._token_expiry = started + max(expires_in - 60, expires_in / 2)
            return token


class _Unauthorized(Exception):
    def __init__(self, transaction_id: str | None, message: str = "") -> None:
        super().__init__("401")
        self.transaction_id = transaction_id
        self.message = message  # ServiceNow's own words ("User Not Authenticated", "Invalid user name or password")


def _never_sent(exc: BaseException) -> bool:
    """True when the connection failed before the request reached the server (safe to retry any method).

    requests wraps urllib3's ``MaxRetryError(reason=NewConnectionError(...))``: walk args, reasons and causes.
    """
    pending: list[object] = [exc]
    seen: set[int] = set()
    while pending:
        current = pending.pop()
        if not isinstance(current, BaseException) or id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, ConnectionRefusedError) or type(current).__name__ in {
            "NewConnectionError",
            "ConnectTimeoutError",
            "NameResolutionError",
        }:
            return True
        pending.extend([*current.args, getattr(current, "reason", None), current.__cause__, current.__context__])
    return False
