"""The real adapters on a stubbed wire: every request's client-side CPU counts, no socket, no waiting.

- ServiceNow: the real ``bridge.adapters.servicenow.ServiceNowClient`` whose ``requests.Session`` transport is
  :class:`CannedServiceNow`, a ``requests.adapters.BaseAdapter`` answering canned ServiceNow responses in process
  (status 200, ``X-Transaction-ID``, the JSON body of each endpoint). Counted: body encoding, request preparation
  (URL, headers, auth, hooks, cookies), response classification, JSON decoding, the log line. Not counted: urllib3's
  pool and ``http.client`` (identical per request for ours and naive, so leaving them out favours naive).
- DynamoDB: the real ``bridge.adapters.dynamodb.DynamoContactStore`` over a real boto3 client whose HTTP send is
  answered by :class:`DynamoWire`, a ``before-send`` handler backed by a dict (the low-level item format,
  ``BatchGetItem``/``PutItem``/``GetItem`` and the store's two condition expressions). Counted: parameter
  validation, serialization, SigV4 signing, retry and event machinery, response parsing. A ``botocore.stub.Stubber``
  would answer *before* serialization and signing (it hooks ``before-call``), so it under-counts the client and is
  not used; moto answers at the same ``before-send`` point but its own server-side CPU is most of what it costs.

Each stub accumulates its own (server-side) CPU in ``cpu_s`` (``time.thread_time`` in the calling thread), which
:mod:`benchmarks.cpu` subtracts. Optional ``latency_s`` on either makes each call wait (sleep, no CPU): the
moto-free load-test variant.
"""

from __future__ import annotations

import json
import re
import threading
import time
import uuid
from collections.abc import Iterator, Mapping
from datetime import timedelta
from typing import Any

import requests
from requests.adapters import BaseAdapter
from requests.structures import CaseInsensitiveDict

from bridge.adapters.dynamodb import DynamoContactStore
from bridge.adapters.secrets import Credentials
from bridge.adapters.servicenow import ServiceNowClient

SERVICENOW_URL = "https://bench.service-now.com"
TABLE = "voicebridge-bench-contacts"
_INTERACTION = re.compile(r"/voice-interactions/([0-9a-f]{32})/(conversation|messages|transcript|state)$")


class StaticCredentials:
    """``CredentialsProvider`` without Secrets Manager (the secret is read once per container anyway)."""

    def get(self, force: bool = False) -> Credentials:
        return Credentials(username="admin", password="admin")


class CannedServiceNow(BaseAdapter):
    """In-process ServiceNow transport: answers every Voice Interaction and Table API call with a canned 200."""

    def __init__(self, latency_s: float = 0.0) -> None:
        super().__init__()
        self.latency_s = latency_s
        self.requests = 0
        self.cpu_s = 0.0  # this stub's own (server-side) CPU, subtracted from the client's by benchmarks.cpu
        self._lock = threading.Lock()
        self._conversations: dict[str, str] = {}

    def send(
        self,
        request: requests.PreparedRequest,
        stream: bool = False,
        timeout: float | tuple[float, float] | tuple[float, None] | None = None,
        verify: bool | str = True,
        cert: bytes | str | tuple[bytes | str, bytes | str] | None = None,
        proxies: Mapping[str, str] | None = None,
    ) -> requests.Response:
        if self.latency_s:
            time.sleep(self.latency_s)
        began = time.thread_time()
        path = (request.path_url or "").split("?", 1)[0]
        body: Any
        with self._lock:
            self.requests += 1
            match = _INTERACTION.search(path)
            if request.method == "GET":
                body = {"result": []}
            elif match is None:
                body = {"result": {"interactionId": uuid.uuid4().hex}}
            elif match.group(2) == "conversation":
                body = {"result": self._conversations.setdefault(match.group(1), uuid.uuid4().hex)}
            elif match.group(2) == "state":
                body = {"result": "Success"}
            else:
                conversation = self._conversations.setdefault(match.group(1), uuid.uuid4().hex)
                body = {"result": f"Messages successfully saved. Conversation id: {conversation}"}
        response = requests.Response()
        response.status_code = 200
        response.reason = "OK"
        response.headers = CaseInsensitiveDict(
            {"Content-Type": "application/json;charset=UTF-8", "X-Transaction-ID": uuid.uuid4().hex}
        )
        response._content = json.dumps(body).encode()
        response.encoding = "utf-8"
        response.url = request.url or ""
        response.request = request
        response.elapsed = timedelta(0)
        with self._lock:
            self.cpu_s += time.thread_time() - began
        return response

    def close(self) -> None:
        pass


def servicenow_client(adapter: CannedServiceNow | None = None, pool_size: int = 8) -> ServiceNowClient:
    """The real client; its constructor mounts an ``HTTPAdapter``, replaced here by the canned transport."""
    client = ServiceNowClient(SERVICENOW_URL, StaticCredentials(), pool_size=pool_size)
    transport = adapter or CannedServiceNow()
    client.session.mount("https://", transport)
    client.session.mount("http://", transport)
    return client


class _Raw:
    def __init__(self, body: bytes) -> None:
        self.body = body

    def stream(self, **_: Any) -> Iterator[bytes]:
        yield self.body


class DynamoWire:
    """A dict-backed DynamoDB answering a real client's signed requests at ``before-send``."""

    def __init__(self, latency_s: float = 0.0) -> None:
        self.latency_s = latency_s
        self.items: dict[str, dict[str, Any]] = {}
        self.calls: dict[str, int] = {}
        self.cpu_s = 0.0  # this stub's own (server-side) CPU
        self._lock = threading.Lock()

    def __call__(self, request: Any, **_: Any) -> Any:
        from botocore.awsrequest import AWSResponse

        if self.latency_s:
            time.sleep(self.latency_s)
        began = time.thread_time()
        target = request.headers["X-Amz-Target"]
        operation = (target.decode() if isinstance(target, bytes) else str(target)).rsplit(".", 1)[-1]
        params = json.loads(request.body)
        with self._lock:
            self.calls[operation] = self.calls.get(operation, 0) + 1
            status, answer = getattr(self, f"_{operation}")(params)
        headers = {"Content-Type": "application/x-amz-json-1.0", "x-amzn-RequestId": uuid.uuid4().hex}
        response = AWSResponse(request.url, status, headers, _Raw(json.dumps(answer).encode()))
        with self._lock:
            self.cpu_s += time.thread_time() - began
        return response

    def _BatchGetItem(self, params: dict[str, Any]) -> tuple[int, dict[str, Any]]:  # noqa: N802 - DynamoDB names
        responses: dict[str, list[dict[str, Any]]] = {}
        for table, request in params["RequestItems"].items():
            found = [self.items[k["contact_id"]["S"]] for k in request["Keys"] if k["contact_id"]["S"] in self.items]
            responses[table] = found
        return 200, {"Responses": responses, "UnprocessedKeys": {}}

    def _GetItem(self, params: dict[str, Any]) -> tuple[int, dict[str, Any]]:  # noqa: N802
        item = self.items.get(params["Key"]["contact_id"]["S"])
        return 200, ({"Item": item} if item else {})

    def _PutItem(self, params: dict[str, Any]) -> tuple[int, dict[str, Any]]:  # noqa: N802
        item = params["Item"]
        key = item["contact_id"]["S"]
        current = self.items.get(key)
        condition = params.get("ConditionExpression", "")
        if condition.startswith("attribute_not_exists"):
            ok = current is None
        elif condition:
            expected = params["ExpressionAttributeValues"][":expected"]["N"]
            ok = current is not None and current["version"]["N"] == expected
        else:
            ok = True
        if not ok:
            error = "com.amazonaws.dynamodb.v20120810#ConditionalCheckFailedException"
            return 400, {"__type": error, "message": "The conditional request failed"}
        self.items[key] = item
        return 200, {}


def dynamodb_client(wire: DynamoWire, production_options: bool = True) -> Any:
    """A real boto3 DynamoDB client whose sends ``wire`` answers: the bridge's config (``bridge.factory``), or for
    the naive baseline botocore's defaults (``production_options=False``)."""
    import boto3
    from botocore.config import Config

    from bridge.factory import DYNAMODB_CLIENT_OPTIONS

    session = boto3.session.Session(aws_access_key_id="bench", aws_secret_access_key="bench", region_name="us-east-1")
    config = Config(retries={"mode": "standard", "max_attempts": 3}, connect_timeout=2, read_timeout=5)
    if production_options:
        config = config.merge(Config(**DYNAMODB_CLIENT_OPTIONS))
    client = session.client("dynamodb", config=config)
    client.meta.events.register_first("before-send.dynamodb", wire)
    return client


def contact_store(wire: DynamoWire | None = None, production_options: bool = True) -> DynamoContactStore:
    return DynamoContactStore(dynamodb_client(wire or DynamoWire(), production_options), TABLE)
