"""Request handling without sockets: ``ConnectApp.handle(method, target, body) -> Reply``, in Connect's protocol.

Both services are REST-JSON (botocore's ``connect`` 2017-08-08 and ``connect-contact-lens`` 2020-08-21 models):
the operation is the HTTP method and URI, errors are the status plus an ``x-amzn-ErrorType`` header and a
``{"Message": ...}`` body (what botocore's rest-json parser reads into ``Error.Code``/``Error.Message``), and
timestamps in bodies are epoch seconds. Signatures are not checked: any credentials work, as with moto.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import threading
import urllib.parse
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from voicebridge.connect.data import ConnectData, SegmentSource

MAX_RESULTS = 100  # both list operations: MaxResults 1-100 (botocore's models), and their default here


@dataclass(frozen=True)
class Reply:
    status: int
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)


class ConnectError(Exception):
    """One of Connect's modelled errors (code, HTTP status)."""

    def __init__(self, code: str, status: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.status = status


def not_found(message: str) -> ConnectError:
    return ConnectError("ResourceNotFoundException", 404, message)


def invalid(message: str) -> ConnectError:
    return ConnectError("InvalidRequestException", 400, message)


@dataclass
class Throttling:
    """Scripted throttling: the next ``pending`` requests (of ``operation``, or any) get ThrottlingException 429;
    ``every`` > 0 also throttles every Nth request. Deterministic, so a test never depends on timing."""

    every: int = 0
    pending: dict[str | None, int] = field(default_factory=dict)
    seen: int = 0

    def should_throttle(self, operation: str) -> bool:
        self.seen += 1
        for key in (operation, None):
            if self.pending.get(key, 0) > 0:
                self.pending[key] -= 1
                return True
        return self.every > 0 and self.seen % self.every == 0


Route = tuple[str, re.Pattern[str], str]
ROUTES: tuple[Route, ...] = (
    ("GET", re.compile(r"/contacts/(?P<InstanceId>[^/]+)/(?P<ContactId>[^/]+)"), "DescribeContact"),
    ("GET", re.compile(r"/users/(?P<InstanceId>[^/]+)/(?P<UserId>[^/]+)"), "DescribeUser"),
    (
        "GET",
        re.compile(r"/contact/attributes/(?P<InstanceId>[^/]+)/(?P<InitialContactId>[^/]+)"),
        "GetContactAttributes",
    ),
    ("GET", re.compile(r"/contact/associated/(?P<InstanceId>[^/]+)"), "ListAssociatedContacts"),
    ("POST", re.compile(r"/realtime-contact-analysis/analysis-segments"), "ListRealtimeContactAnalysisSegments"),
)


class ConnectApp:
    """The five operations the bridge calls, over ``data`` and a segment source; counts requests per operation and
    status (``stats()``)."""

    def __init__(self, data: ConnectData, segments: SegmentSource | None = None, throttle_every: int = 0) -> None:
        self.data = data
        self.segments: SegmentSource = segments or data.file_segments
        self._lock = threading.Lock()
        self.throttling = Throttling(every=throttle_every)
        self._counts: dict[str, dict[int, int]] = {}
        self._operations: dict[str, Callable[[Mapping[str, str], Mapping[str, Any]], dict[str, Any]]] = {
            "DescribeContact": self.describe_contact,
            "DescribeUser": self.describe_user,
            "GetContactAttributes": self.get_contact_attributes,
            "ListAssociatedContacts": self.list_associated_contacts,
            "ListRealtimeContactAnalysisSegments": self.list_segments,
        }

    # -- controls (the embedding API and tests)

    def throttle(self, count: int, operation: str | None = None) -> None:
        with self._lock:
            self.throttling.pending[operation] = self.throttling.pending.get(operation, 0) + count

    def clear_throttles(self) -> int:
        """Drop the scripted throttles not yet used; returns how many there were."""
        with self._lock:
            pending = sum(self.throttling.pending.values())
            self.throttling.pending.clear()
            return pending

    def stats(self) -> dict[str, dict[int, int]]:
        """``{operation: {status: requests}}`` (unrouted requests under ``"unknown"``)."""
        with self._lock:
            return {operation: dict(statuses) for operation, statuses in self._counts.items()}

    # -- dispatch

    def handle(self, method: str, target: str, body: bytes) -> Reply:
        split = urllib.parse.urlsplit(target)
        path = urllib.parse.unquote(split.path)
        operation = "unknown"
        try:
            operation, params = self._route(method, path)
            with self._lock:
                throttled = self.throttling.should_throttle(operation)
            if throttled:
                raise ConnectError("ThrottlingException", 429, "Rate exceeded")
            query = {k: v[-1] for k, v in urllib.parse.parse_qs(split.query, keep_blank_values=True).items()}
            reply = self._ok(self._operations[operation]({**params, **query}, self._json_body(body)))
        except ConnectError as exc:
            reply = self._error(exc)
        except Exception:  # noqa: BLE001 - Connect answers 500, never a stack trace
            reply = self._error(ConnectError("InternalServiceException", 500, "Request processing failed"))
        with self._lock:
            statuses = self._counts.setdefault(operation, {})
            statuses[reply.status] = statuses.get(reply.status, 0) + 1
        return reply

    def _route(self, method: str, path: str) -> tuple[str, dict[str, str]]:
        for route_method, pattern, operation in ROUTES:
            match = pattern.fullmatch(path)
            if match and route_method == method:
                return operation, match.groupdict()
        raise ConnectError("UnknownOperationException", 404, f"No operation for {method} {path}")

    @staticmethod
    def _json_body(body: bytes) -> Mapping[str, Any]:
        if not body.strip():
            return {}
        try:
            document = json.loads(body)
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise ConnectError("SerializationException", 400, "The request body is not valid JSON") from None
        if not isinstance(document, dict):
            raise ConnectError("SerializationException", 400, "The request body must be a JSON object")
        return document

    @staticmethod
    def _ok(document: Mapping[str, Any]) -> Reply:
        return Reply(200, json.dumps(document).encode(), _headers())

    @staticmethod
    def _error(exc: ConnectError) -> Reply:
        headers = _headers()
        headers["x-amzn-ErrorType"] = exc.code
        return Reply(exc.status, json.dumps({"Message": str(exc)}).encode(), headers)

    def _instance(self, instance_id: str | None) -> str:
        if not instance_id:
            raise invalid("InstanceId is required")
        if self.data.instance_id is not None and instance_id != self.data.instance_id:
            raise not_found(f"Instance not found: {instance_id}")
        return instance_id

    # -- operations

    def describe_contact(self, params: Mapping[str, str], body: Mapping[str, Any]) -> dict[str, Any]:
        self._instance(params["InstanceId"])
        contact = self.data.contacts.get(params["ContactId"])
        if contact is None:
            raise not_found(f"Contact not found: {params['ContactId']}")
        return {"Contact": contact}

    def describe_user(self, params: Mapping[str, str], body: Mapping[str, Any]) -> dict[str, Any]:
        self._instance(params["InstanceId"])
        user = self.data.users.get(params["UserId"])
        if user is None:
            raise not_found(f"User not found: {params['UserId']}")
        return {"User": user}

    def get_contact_attributes(self, params: Mapping[str, str], body: Mapping[str, Any]) -> dict[str, Any]:
        self._instance(params["InstanceId"])
        attributes = self.data.attributes_of(params["InitialContactId"])
        if attributes is None:
            raise not_found(f"Contact not found: {params['InitialContactId']}")
        return {"Attributes": attributes}

    def list_associated_contacts(self, params: Mapping[str, str], body: Mapping[str, Any]) -> dict[str, Any]:
        self._instance(params["InstanceId"])
        contact_id = params.get("contactId")
        if not contact_id:
            raise invalid("ContactId is required")
        if contact_id not in self.data.contacts:
            raise not_found(f"Contact not found: {contact_id}")
        page, token = _page(
            self.data.associated(contact_id), contact_id, params.get("maxResults"), params.get("nextToken")
        )
        return {"ContactSummaryList": page, **({"NextToken": token} if token else {})}

    def list_segments(self, params: Mapping[str, str], body: Mapping[str, Any]) -> dict[str, Any]:
        self._instance(body.get("InstanceId"))
        contact_id = body.get("ContactId")
        if not isinstance(contact_id, str) or not contact_id:
            raise invalid("ContactId is required")
        held = self.segments(contact_id)
        if held is None:
            raise not_found(f"No real-time contact analysis session for contact: {contact_id}")
        page, token = _page(held.segments, contact_id, body.get("MaxResults"), body.get("NextToken"))
        if token is None and not held.completed:
            token = _token(contact_id, len(held.segments))  # nothing more now, but the analysis goes on
        return {"Segments": page, **({"NextToken": token} if token else {})}


def _page(items: Sequence[Any], contact_id: str, max_results: Any, token: Any) -> tuple[list[Any], str | None]:
    """One page and the token of the next. A token names its contact and offset: items only ever grow (a live
    call's segments), so an offset stays valid while the call goes on."""
    try:
        size = MAX_RESULTS if max_results in (None, "") else int(max_results)
    except (TypeError, ValueError):
        raise invalid(f"MaxResults must be an integer, got {max_results!r}") from None
    if not 1 <= size <= MAX_RESULTS:
        raise invalid(f"MaxResults must be between 1 and {MAX_RESULTS}, got {size}")
    start = _offset(str(token), contact_id) if token else 0
    page = list(items[start : start + size])
    end = start + len(page)
    return page, _token(contact_id, end) if end < len(items) else None


def _token(contact_id: str, offset: int) -> str:
    return base64.urlsafe_b64encode(json.dumps({"c": contact_id, "o": offset}).encode()).decode()


def _offset(token: str, contact_id: str) -> int:
    try:
        decoded = json.loads(base64.urlsafe_b64decode(token.encode()))
        offset = decoded["o"]
        valid = decoded["c"] == contact_id and isinstance(offset, int) and offset >= 0
    except (binascii.Error, ValueError, KeyError, TypeError):
        valid = False
    if not valid:
        raise invalid("The NextToken is not valid for this request")
    return int(offset)


def _headers() -> dict[str, str]:
    return {"Content-Type": "application/json", "x-amzn-RequestId": str(uuid.uuid4())}
