"""Request handling without sockets: ``App.handle(Request) -> Response``.

Order for the /cs/ API: [the session gate, then the capacity gate, when on (gates.py)] -> route (unknown
version or path: 400) -> Accept (406) -> auth (401) -> seeded latency -> a scripted fault rule, else the
user's rate-limit rule (429, not applied), else a random fault -> Content-Type (415) -> body (400) ->
validation of the whole body (400) -> one transaction. Every response carries ``X-Transaction-ID``; any
unexpected exception is a 500 envelope, never a stack trace.
"""

from __future__ import annotations

import json
import logging
import re
import time
import urllib.parse
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from voicebridge.emulator import codec, tableapi, validation, web
from voicebridge.emulator.auth import Authenticator, OAuthError
from voicebridge.emulator.codec import Format
from voicebridge.emulator.errors import NO_RECORD, NO_RESOURCE, READ_ERROR, ApiError
from voicebridge.emulator.faults import (
    FAILURE_SENTENCE,
    FaultEngine,
    FaultRule,
    RandomDraw,
    Stats,
    parse_rules,
    status_message,
)
from voicebridge.emulator.gates import CapacityGate, SessionGate, session_id_of
from voicebridge.emulator.options import EmulatorOptions
from voicebridge.emulator.store import Store

logger = logging.getLogger("voicebridge.emulator")

SAVED = "Voice conversation transcript has been successfully saved. Conversation id: {}"
DEFAULT_TABLE_LIMIT = 10000
HIBERNATING_PAGE = (
    b"<!DOCTYPE html><html><head><title>Instance Hibernating page</title></head>"
    b"<body><h1>Your instance is hibernating</h1><p>Sign in to wake it up.</p></body></html>"
)
# What a request gets when too many requests of its session already wait (UNVERIFIED wording: the point is that
# it is a 202 whose body is not the endpoint's result, and that nothing was applied).
SESSION_BUSY_PAGE = (
    b"<!DOCTYPE html><html><head><title>Request not processed</title></head>"
    b"<body><p>Too many transactions are waiting for this session; the request was not processed.</p></body></html>"
)

_API_PATH = re.compile(r"/api/now(?:/(?P<version>v[^/]*))?/(?P<kind>cs|table)/(?P<rest>.*)")


@dataclass
class Request:
    """One HTTP request; header names lower case. ``body_error`` is set when the body could not be read."""

    method: str
    target: str
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    body_error: str | None = None

    @property
    def path(self) -> str:
        return urllib.parse.urlsplit(self.target).path

    @property
    def query(self) -> str:
        return urllib.parse.urlsplit(self.target).query


@dataclass
class Response:
    """What to send. ``drop``: close the connection without answering; ``close``: answer, then close."""

    status: int
    body: bytes = b""
    content_type: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    drop: bool = False
    close: bool = False
    set_cookies: list[str] = field(default_factory=list)  # one Set-Cookie header each


@dataclass(frozen=True)
class Route:
    kind: str  # "cs", "table", "oauth", "control", "web", "none"
    template: str  # for stats, e.g. "POST /cs/voice-interactions/{id}/messages"
    action: str = ""
    params: tuple[str, ...] = ()


def route(method: str, path: str) -> Route:
    """Resolve a request path (no query string) to a route; unknown paths get kind "none"."""
    if path.startswith("/__emulator/"):
        return Route("control", f"{method} {path}", path[len("/__emulator/") :])
    if web.matches(path):  # the live transcript view (web.py): no auth, read-only, not counted in stats
        return Route("web", f"{method} {path}")
    if path == "/oauth_token.do":
        return Route("oauth", f"{method} /oauth_token.do", "token" if method == "POST" else "")
    unmatched = Route("none", f"{method} <unmatched>")
    match = _API_PATH.fullmatch(path)
    if not match:
        return unmatched
    version, kind = match.group("version"), match.group("kind")
    segments = [urllib.parse.unquote(segment) for segment in match.group("rest").split("/")]
    if kind == "table":
        if version not in (None, "v1", "v2") or not 1 <= len(segments) <= 2 or not all(segments):
            return unmatched
        if len(segments) == 1:
            return Route("table", f"{method} /table/{{table}}", "list" if method == "GET" else "", (segments[0],))
        return Route(
            "table", f"{method} /table/{{table}}/{{sys_id}}", "get" if method == "GET" else "", tuple(segments)
        )
    if version not in (None, "v1") or not segments or segments[0] != "voice-interactions":
        return unmatched
    tail = segments[1:]
    if method == "POST" and tail == []:
        return Route("cs", "POST /cs/voice-interactions", "create")
    if method == "POST" and tail == ["transcript"]:
        return Route("cs", "POST /cs/voice-interactions/transcript", "transcript")
    if len(tail) == 2 and tail[0]:
        action = {"POST": {"conversation", "messages", "transcript"}, "PATCH": {"state"}}.get(method, set())
        if tail[1] in action:
            return Route("cs", f"{method} /cs/voice-interactions/{{id}}/{tail[1]}", tail[1], (tail[0],))
    return unmatched


def _first_values(text: str) -> dict[str, str]:
    return {key: values[0] for key, values in urllib.parse.parse_qs(text, keep_blank_values=True).items()}


class App:
    """The emulator: options, store, authenticator, fault engine and stats behind ``handle``."""

    def __init__(self, options: EmulatorOptions, store: Store, *, sleep: Callable[[float], None] = time.sleep) -> None:
        self.options = options
        self.store = store
        self.auth = Authenticator(
            user=options.user,
            password=options.password,
            client_id=options.client_id,
            client_secret=options.client_secret,
            token_ttl=options.token_ttl,
        )
        self.faults = FaultEngine(options)
        self.stats = Stats()
        self._sleep = sleep
        self._random_enabled = bool(
            options.latency_ms or options.fault_rate or options.ambiguous_rate or options.seed is not None
        )
        self.sessions = SessionGate(options.session_queue) if options.sessions else None
        self.capacity = (
            CapacityGate(options.semaphores, options.queue_depth) if options.semaphores is not None else None
        )
        self._filtered_tables = frozenset(options.filtered_reads)
        self._filtered_contacts = re.compile(options.filtered_contacts) if options.filtered_contacts else None

    # ---- responses ----

    @staticmethod
    def _result(result: Any, fmt: Format, status: int = 200) -> Response:
        return Response(status, codec.render_result(result, fmt), codec.CONTENT_TYPES[fmt])

    @staticmethod
    def _error(error: ApiError, fmt: Format) -> Response:
        body = codec.render_error(error.message, error.detail, fmt)
        return Response(error.status, body, codec.CONTENT_TYPES[fmt], dict(error.headers))

    def _api_error(self, error: ApiError, fmt: Format) -> Response:
        if error.script_style and self.options.script_style_errors:
            return self._result(error.message, fmt)
        return self._error(error, fmt)

    # ---- entry point ----

    def handle(self, request: Request) -> Response:
        """Answer one request. Never raises."""
        transaction_id = uuid.uuid4().hex
        route_info = Route("none", f"{request.method} <unmatched>")
        fault: str | None = None
        try:
            route_info = route(request.method, request.path)
            if route_info.kind == "control":
                response = self._control(request, route_info.action)
            elif route_info.kind == "web":
                reply = web.handle(self.store, request.method, request.path, request.headers)
                response = Response(reply.status, reply.body, reply.content_type, reply.headers)
            elif self.sessions is None and self.capacity is None:
                response, fault = self._dispatch(request, route_info)
            else:
                response, fault = self._through_gates(request, route_info)
        except Exception:  # an emulator bug must still look like ServiceNow, not a traceback
            logger.exception("internal error handling %s %s", request.method, request.path)
            response = self._error(ApiError(500, "Internal Server Error", "Unexpected error in the emulator"), "json")
        if request.body_error is not None:
            response.close = True  # the body may not have been read off the socket
        if not response.drop:
            response.headers["X-Transaction-ID"] = transaction_id
        if route_info.kind not in ("control", "web"):
            self.stats.record(route_info.template, None if response.drop else response.status, fault)
        return response

    # ---- a node's gates (off unless configured) ----

    def _through_gates(self, request: Request, route_info: Route) -> tuple[Response, str | None]:
        """The session gate, then the capacity gate, around ``_dispatch`` (a waiting session holds no semaphore)."""
        sessions = self.sessions
        if sessions is None:
            return self._through_capacity(request, route_info)
        session_id = session_id_of(request.headers.get("cookie"))
        if session_id is None:
            response, fault = self._through_capacity(request, route_info)
            response.set_cookies.extend(sessions.new_session_cookies())
            return response, fault
        if not sessions.enter(session_id):
            return Response(202, SESSION_BUSY_PAGE, "text/html;charset=UTF-8"), "session_busy"
        try:
            return self._through_capacity(request, route_info)
        finally:
            sessions.leave(session_id)

    def _through_capacity(self, request: Request, route_info: Route) -> tuple[Response, str | None]:
        capacity = self.capacity
        if capacity is None:
            return self._dispatch(request, route_info)
        started = capacity.enter()
        if started is None:
            fmt = codec.negotiate_accept(request.headers.get("accept")) or "json"
            detail = "Every API semaphore is busy and the queue is full"
            error = ApiError(429, status_message(429), detail, headers={"Retry-After": "1"})
            return self._error(error, fmt), "semaphores_exhausted"
        try:
            return self._dispatch(request, route_info)
        finally:
            capacity.leave(started)

    def _dispatch(self, request: Request, route_info: Route) -> tuple[Response, str | None]:
        if route_info.kind == "oauth":
            return self._with_rule(request, lambda: self._oauth(request, route_info), "json", kind="oauth")
        fmt = codec.negotiate_accept(request.headers.get("accept"))
        if fmt is None:
            detail = "Supported response types: application/json, application/xml"
            return self._error(ApiError(406, "Not Acceptable", detail), "json"), None
        if route_info.kind == "none":
            return self._error(ApiError(400, NO_RESOURCE, None), fmt), None
        if route_info.kind == "table" and not route_info.action:
            return self._error(
                ApiError(405, "Method not Supported", "The emulator's Table API is read-only"), fmt
            ), None
        try:
            user = self.auth.check(request.headers.get("authorization"))
        except ApiError as error:
            return self._error(error, fmt), None
        if route_info.kind == "table":
            return self._table_with_rule(request, route_info, fmt)
        return self._cs_with_faults(request, route_info, fmt, user)

    # ---- faults ----

    def _with_rule(
        self,
        request: Request,
        run: Callable[[], Response],
        fmt: Format,
        rule: FaultRule | None = None,
        *,
        kind: str | None = None,
    ) -> tuple[Response, str | None]:
        rule = rule or self.faults.take_rule(request.method, request.path, kind)
        if rule is None:
            return run(), None
        return self._apply_rule(rule, run, fmt), rule.action

    def _apply_rule(self, rule: FaultRule, run: Callable[[], Response], fmt: Format) -> Response:
        action = rule.action
        if action == "status":
            headers = {}
            if rule.retry_after is not None:
                seconds = rule.retry_after
                headers["Retry-After"] = str(int(seconds)) if float(seconds).is_integer() else str(seconds)
            detail = "Injected by an emulator fault rule"
            return self._error(ApiError(rule.status, status_message(rule.status), detail, headers=headers), fmt)
        if action == "drop":
            return Response(0, drop=True)
        if action == "html":
            return Response(200, HIBERNATING_PAGE, "text/html;charset=UTF-8")
        if action == "accepted_202":
            return Response(202)
        if action == "session_busy":
            return Response(202, SESSION_BUSY_PAGE, "text/html;charset=UTF-8")
        if action == "rate_limited":
            headers = self.faults.quota_headers(self.faults.quota_left(rule))
            detail = "Injected by an emulator fault rule: the user's hourly quota is used up"
            return self._error(ApiError(429, status_message(429), detail, headers=headers), fmt)
        if action == "filtered_read":
            raise AssertionError("filtered_read is applied by the Table API read, never here")
        if action == "failure_sentence":
            return self._result(rule.result or FAILURE_SENTENCE, fmt)
        if action == "delay":
            self._sleep(rule.delay_ms / 1000)
            return run()
        response = run()  # the applying actions: the request is handled (and stored) first
        return self._after_applied(action, response, fmt)

    def _after_applied(self, action: str, response: Response, fmt: Format) -> Response:
        if action == "ambiguous_drop":
            return Response(0, drop=True)
        if action == "ambiguous_500":
            detail = "Injected by the emulator after the request was applied"
            return self._error(ApiError(500, status_message(500), detail), fmt)
        # truncated: the real body cut in half, with the Content-Length of what is sent
        response.body = response.body[: len(response.body) // 2]
        return response

    def _cs_with_faults(
        self, request: Request, route_info: Route, fmt: Format, user: str
    ) -> tuple[Response, str | None]:
        draw = self.faults.draw() if self._random_enabled else RandomDraw(0.0, None, None)
        if draw.delay_s:
            self._sleep(draw.delay_s)
        rule = self.faults.take_rule(request.method, request.path, "cs")
        allowed, limit_headers = (True, {}) if rule else self.faults.rate_limit(user)

        def run() -> Response:
            return self._cs(request, route_info, fmt)

        if rule is not None:
            response, fault = self._with_rule(request, run, fmt, rule)
        elif not allowed:
            error = ApiError(
                429, status_message(429), "Too many requests for the rate-limit rule", headers=limit_headers
            )
            response, fault = self._error(error, fmt), "rate_limit"
        elif draw.fault_status is not None:
            status = draw.fault_status
            headers = self.faults.throttle_headers() if status == 429 else {}
            error = ApiError(status, status_message(status), "Injected by the emulator (--fault-rate)", headers=headers)
            response, fault = self._error(error, fmt), f"random_{status}"
        elif draw.ambiguous is not None:
            response, fault = self._after_applied(draw.ambiguous, run(), fmt), draw.ambiguous
        else:
            response, fault = run(), None
        for name, value in limit_headers.items():
            response.headers.setdefault(name, value)
        return response, fault

    # ---- the Voice Interaction API ----

    def _body(self, request: Request) -> tuple[Any, Format]:
        in_fmt = codec.request_format(request.headers.get("content-type"))
        if in_fmt is None:
            raise ApiError(415, "Unsupported Media Type", "Supported request types: application/json, application/xml")
        if request.body_error is not None:
            raise ApiError(400, READ_ERROR, request.body_error)
        return codec.parse_body(request.body, in_fmt, lenient=self.options.lenient), in_fmt

    def _cs(self, request: Request, route_info: Route, fmt: Format) -> Response:
        try:
            body, in_fmt = self._body(request)
            result = self._cs_action(route_info, body, in_fmt)
        except ApiError as error:
            return self._api_error(error, fmt)
        return self._result(result, fmt)

    def _cs_action(self, route_info: Route, body: Any, in_fmt: Format) -> Any:
        action, params = route_info.action, route_info.params
        if action == "messages":
            messages = validation.parse_messages(codec.as_list(body, in_fmt))
            return SAVED.format(self.store.add_messages(params[0], messages))
        obj = codec.as_object(body, in_fmt)
        if action == "create":
            return {"interactionId": self.store.create_interaction(validation.parse_new_interaction(obj))}
        if action == "conversation":
            return self.store.create_conversation(params[0], validation.parse_new_interaction(obj))
        if action == "transcript":
            transcript = validation.parse_transcript(obj, params[0] if params else None)
            return SAVED.format(self.store.save_transcript(transcript))
        if action == "state":
            self.store.close_interaction(params[0], validation.parse_state_change(obj))
            return "Success"
        raise AssertionError(f"unrouted action {action}")

    # ---- Table API ----

    def _table_with_rule(self, request: Request, route_info: Route, fmt: Format) -> tuple[Response, str | None]:
        rule = self.faults.take_rule(request.method, request.path, "table")
        filtered = route_info.params[0] in self._filtered_tables
        if rule is None:
            return self._table(request, route_info, fmt, filtered=filtered), "filtered_read" if filtered else None
        if rule.action == "filtered_read":
            return self._table(request, route_info, fmt, filtered=True), rule.action
        return self._apply_rule(
            rule, lambda: self._table(request, route_info, fmt, filtered=filtered), fmt
        ), rule.action

    def set_filtered_contacts(self, pattern: str | None) -> None:
        self._filtered_contacts = re.compile(pattern) if pattern else None

    def _visible(self, table: str, row: dict[str, str]) -> bool:
        """Row-level read ACL of ``filtered_contacts``: whether the row belongs to a contact the user may see."""
        if self._filtered_contacts is None:
            return True
        contact = self.store.client_session_of(table, row)
        return contact is None or not self._filtered_contacts.search(contact)

    def _table(self, request: Request, route_info: Route, fmt: Format, *, filtered: bool = False) -> Response:
        """A read; ``filtered``: the user may see no row of the table, so it answers as if none existed."""
        params = _first_values(request.query)
        try:
            table = route_info.params[0]
            tableapi.check_table(table)
            fields = tableapi.parse_fields(table, params.get("sysparm_fields"))
            if route_info.action == "get":
                record = None if filtered else self.store.get(table, route_info.params[1])
                if record is not None and not self._visible(table, record):
                    record = None
                if record is None:
                    raise ApiError(404, NO_RECORD, "Record doesn't exist or ACL restricts the record retrieval")
                return self._result({name: record[name] for name in fields}, fmt)
            query = tableapi.parse_query(table, params.get("sysparm_query"))
            limit = tableapi.parse_count("sysparm_limit", params.get("sysparm_limit"), DEFAULT_TABLE_LIMIT)
            offset = tableapi.parse_count("sysparm_offset", params.get("sysparm_offset"), 0)
            rows, total = ([], 0) if filtered else self.store.query(table, query, limit=limit, offset=offset)
            if self._filtered_contacts is not None:
                visible = [row for row in rows if self._visible(table, row)]
                total -= len(rows) - len(visible)
                rows = visible
        except ApiError as error:
            return self._error(error, fmt)
        response = self._result([{name: row[name] for name in fields} for row in rows], fmt)
        response.headers["X-Total-Count"] = str(total)
        return response

    # ---- OAuth ----

    def _oauth(self, request: Request, route_info: Route) -> Response:
        if route_info.action != "token":
            payload: dict[str, Any] = {"error": "invalid_request", "error_description": "Use POST"}
            return Response(405, json.dumps(payload).encode(), "application/json")
        form = _first_values(request.body.decode("utf-8", errors="replace"))
        try:
            payload = self.auth.grant(form, request.headers.get("authorization"))
            status = 200
        except OAuthError as error:
            payload, status = error.payload, error.status
        headers = {"Cache-Control": "no-store", "Pragma": "no-cache"}
        return Response(status, json.dumps(payload).encode(), "application/json;charset=UTF-8", headers)

    # ---- test control API ----

    def stats_snapshot(self) -> dict[str, Any]:
        """The request counters, plus ``sessions`` and ``capacity`` when those gates are on."""
        snapshot = self.stats.snapshot()
        if self.sessions is not None:
            snapshot["sessions"] = self.sessions.snapshot()
        if self.capacity is not None:
            snapshot["capacity"] = self.capacity.snapshot()
        return snapshot

    def reset_stats(self) -> None:
        self.stats.reset()
        for gate in (self.sessions, self.capacity):
            if gate is not None:
                gate.reset()

    def control_add_rules(self, payload: Any) -> dict[str, int]:
        rules = parse_rules(payload)
        return {"added": len(rules), "pending": self.faults.add_rules(rules)}

    def _control(self, request: Request, action: str) -> Response:
        def reply(status: int, payload: Any) -> Response:
            return Response(status, json.dumps(payload).encode(), "application/json")

        key = (request.method, action.rstrip("/"))
        if key == ("POST", "faults"):
            try:
                payload = json.loads(request.body.decode("utf-8") or "null")
                return reply(200, self.control_add_rules(payload))
            except (ValueError, UnicodeDecodeError) as exc:
                return Response(400, codec.render_error("Invalid fault rules", str(exc), "json"), "application/json")
        if key == ("DELETE", "faults"):
            return reply(200, {"cleared": self.faults.clear_rules()})
        if key == ("GET", "faults"):
            return reply(200, {"rules": self.faults.pending_rules()})
        if key == ("GET", "stats"):
            return reply(200, self.stats_snapshot())
        if key == ("POST", "reset"):
            self.reset_stats()
            return reply(200, {"reset": True})
        return Response(
            404,
            codec.render_error(NO_RESOURCE, f"No control endpoint {request.method} {action}", "json"),
            "application/json",
        )
