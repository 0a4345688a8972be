"""The HTTP side: a stdlib ``ThreadingHTTPServer`` (HTTP/1.1 keep-alive, Nagle off, as the ServiceNow emulator's)
and the embedding API, :func:`start_connect`."""

from __future__ import annotations

import logging
import socket
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any

from voicebridge.connect.app import ConnectApp, Reply
from voicebridge.connect.data import ConnectData, SegmentSource

logger = logging.getLogger("voicebridge.connect")

MAX_BODY_BYTES = 1 << 20  # the largest request the bridge sends is a few hundred bytes
IDLE_TIMEOUT_S = 120


@dataclass(frozen=True)
class ConnectOptions:
    host: str = "127.0.0.1"
    port: int = 0  # 0: a free port
    throttle_every: int = 0  # > 0: every Nth request is ThrottlingException 429


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    server_version = "AmazonConnect-stand-in"
    sys_version = ""
    timeout = IDLE_TIMEOUT_S
    app: ConnectApp  # set on the per-server subclass

    def version_string(self) -> str:
        return self.server_version

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the stdlib's signature
        logger.debug("%s " + format, self.address_string(), *args)

    def _dispatch(self) -> None:
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = -1
        if not 0 <= length <= MAX_BODY_BYTES:
            self.close_connection = True
            error = {"x-amzn-ErrorType": "SerializationException", "Content-Type": "application/json"}
            self._send(Reply(400, b'{"Message": "Invalid Content-Length"}', error))
            return
        body = self.rfile.read(length) if length else b""
        self._send(self.app.handle(self.command, self.path, body))

    def _send(self, reply: Reply) -> None:
        try:
            self.send_response(reply.status)
            for name, value in reply.headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(reply.body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(reply.body)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = _dispatch


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128


class _Server6(_Server):
    address_family = socket.AF_INET6


class RunningConnect:
    """A started stand-in: ``url`` (the ``endpoint_url`` for both boto3 clients), ``app`` (data, segments,
    ``throttle``, ``stats``); ``stop()`` or use it as a context manager."""

    def __init__(self, app: ConnectApp, server: _Server, thread: threading.Thread) -> None:
        self.app = app
        self._server = server
        self._thread = thread
        host, port = server.server_address[:2]
        self.host = str(host)
        self.port = int(port)
        self.url = f"http://[{self.host}]:{self.port}" if ":" in self.host else f"http://{self.host}:{self.port}"
        self._stopped = False

    def throttle(self, count: int, operation: str | None = None) -> None:
        """The next ``count`` requests (of ``operation``, e.g. ``"DescribeContact"``, or any) get 429."""
        self.app.throttle(count, operation)

    def clear_throttles(self) -> int:
        return self.app.clear_throttles()

    def stats(self) -> dict[str, dict[int, int]]:
        return self.app.stats()

    def client_environment(self) -> dict[str, str]:
        """The standard per-service endpoint variables (boto3 >= 1.28) that point both clients here."""
        return {"AWS_ENDPOINT_URL_CONNECT": self.url, "AWS_ENDPOINT_URL_CONNECT_CONTACT_LENS": self.url}

    def stop(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> RunningConnect:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.stop()


def start_connect(
    data: ConnectData | None = None, options: ConnectOptions | None = None, segments: SegmentSource | None = None
) -> RunningConnect:
    """Serve the stand-in in a daemon thread; returns once the socket is listening. ``segments``: where
    ListRealtimeContactAnalysisSegments reads (default: the data's own ``segments``)."""
    options = options or ConnectOptions()
    app = ConnectApp(data or ConnectData(), segments, throttle_every=options.throttle_every)
    handler = type("ConnectHandler", (_Handler,), {"app": app})
    server_class = _Server6 if ":" in options.host else _Server
    server = server_class((options.host, options.port), handler)
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.02}, name="voicebridge-connect", daemon=True
    )
    thread.start()
    return RunningConnect(app, server, thread)
