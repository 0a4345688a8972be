"""The HTTP side: a stdlib ``ThreadingHTTPServer`` (HTTP/1.1 keep-alive, Nagle off) and the embedding API.

Without ``protocol_version = "HTTP/1.1"`` and ``disable_nagle_algorithm`` the stdlib server manages ~23
requests/s on loopback (Nagle + delayed ACK); with them, ~1100 (shared/reference/tooling-notes.md).
"""

from __future__ import annotations

import logging
import socket
import threading
import time
import uuid
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any

from voicebridge.emulator import codec
from voicebridge.emulator.app import App, Request, Response
from voicebridge.emulator.codec import MAX_BODY_BYTES
from voicebridge.emulator.options import EmulatorOptions
from voicebridge.emulator.store import Store

logger = logging.getLogger("voicebridge.emulator")

MAX_DRAIN_BYTES = 64 * 1024 * 1024  # read (and discard) oversized bodies up to this, so the 400 reaches the client
IDLE_TIMEOUT_S = 120


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    server_version = "ServiceNow-emulator"
    sys_version = ""

    def version_string(self) -> str:
        return self.server_version

    timeout = IDLE_TIMEOUT_S
    app: App  # set on the per-server subclass

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the stdlib's signature
        logger.debug("%s " + format, self.address_string(), *args)

    def _drain(self, length: int) -> None:
        while length > 0:
            chunk = self.rfile.read(min(length, 1 << 20))
            if not chunk:
                return
            length -= len(chunk)

    def _read_chunked(self) -> tuple[bytes, str | None]:
        parts: list[bytes] = []
        total = 0
        while True:
            line = self.rfile.readline(1024)
            try:
                size = int(line.split(b";", 1)[0].strip(), 16)
            except ValueError:
                return b"", "Malformed chunked body"
            if size == 0:
                while self.rfile.readline(1024) not in (b"\r\n", b"\n", b""):
                    pass  # trailers
                return b"".join(parts), None
            total += size
            if total > MAX_BODY_BYTES:
                return b"", f"Request body exceeds {MAX_BODY_BYTES} bytes"
            parts.append(self.rfile.read(size))
            self.rfile.readline(1024)

    def _read_body(self) -> tuple[bytes, str | None]:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            return self._read_chunked()
        length_text = self.headers.get("Content-Length")
        if length_text is None:
            return b"", None
        try:
            length = int(length_text)
            if length < 0:
                raise ValueError(length_text)
        except ValueError:
            return b"", "Invalid Content-Length"
        if length > MAX_BODY_BYTES:
            if length <= MAX_DRAIN_BYTES:
                self._drain(length)
            return b"", f"Request body exceeds {MAX_BODY_BYTES} bytes"
        body = self.rfile.read(length)
        if len(body) < length:
            return body, "Request body shorter than Content-Length"
        return body, None

    def _dispatch(self) -> None:
        body, body_error = self._read_body()
        headers = {name.lower(): value for name, value in self.headers.items()}
        request = Request(self.command, self.path, headers, body, body_error)
        self._send(self.app.handle(request))

    def _send(self, response: Response) -> None:
        if response.drop:
            self.close_connection = True
            try:
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            return
        try:
            self.send_response(response.status)
            if response.content_type:
                self.send_header("Content-Type", response.content_type)
            for name, value in response.headers.items():
                self.send_header(name, value)
            for cookie in response.set_cookies:
                self.send_header("Set-Cookie", cookie)
            self.send_header("Content-Length", str(len(response.body)))
            if response.close:
                self.send_header("Connection", "close")
            self.end_headers()
            if response.body and self.command != "HEAD":
                self.wfile.write(response.body)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True  # the client gave up (e.g. its read timeout during a delay rule)

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """Malformed HTTP (bad request line, huge headers, unknown method): the envelope, not an HTML page."""
        short = message or self.responses.get(code, ("Error",))[0]
        if getattr(self, "request_version", "HTTP/0.9") == "HTTP/0.9":
            self.request_version = "HTTP/1.0"  # answer with a status line and headers even to garbage
        if code == 501:
            code, short = 400, "Requested URI does not represent any resource"
        response = Response(code, codec.render_error(short, explain, "json"), "application/json", close=True)
        response.headers["X-Transaction-ID"] = uuid.uuid4().hex
        self.close_connection = True
        self._send(response)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = _dispatch


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256

    def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler]) -> None:
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        super().__init__(address, handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._connections_lock:
            self._connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._connections_lock:
            self._connections.discard(request)
        super().shutdown_request(request)

    def close_connections(self) -> None:
        """Cut keep-alive connections too, so a stopped emulator answers nothing more."""
        with self._connections_lock:
            connections = list(self._connections)
        for connection in connections:
            try:
                connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


class _Server6(_Server):
    address_family = socket.AF_INET6


class RunningEmulator:
    """A started emulator: ``url``, ``store``, fault/stat controls; ``stop()`` or use it as a context manager."""

    def __init__(self, app: App, server: _Server, thread: threading.Thread) -> None:
        self.app = app
        self._server = server
        self._thread = thread
        host, port = server.server_address[:2]
        self.host = str(host)
        self.port = int(port)
        self.url = f"http://[{self.host}]:{self.port}" if ":" in self.host else f"http://{self.host}:{self.port}"
        self._stopped = False

    @property
    def options(self) -> EmulatorOptions:
        return self.app.options

    @property
    def store(self) -> Store:
        """Direct read access to what the emulator stored (``rows``, ``get``, ``counts``, ``transcript``)."""
        return self.app.store

    def add_fault_rules(self, rules: list[dict[str, Any]]) -> int:
        """Append scripted fault rules (same shape as ``POST /__emulator/faults``); returns the pending count."""
        return self.app.control_add_rules({"rules": rules})["pending"]

    def clear_faults(self) -> int:
        return self.app.faults.clear_rules()

    def set_filtered_contacts(self, pattern: str | None) -> None:
        """Change the row-level read ACL (``EmulatorOptions.filtered_contacts``); None lifts it, e.g. for an admin's
        read-back after a soak."""
        self.app.set_filtered_contacts(pattern)

    def pending_faults(self) -> list[dict[str, Any]]:
        return self.app.faults.pending_rules()

    def stats(self) -> dict[str, Any]:
        """``{"total", "by_route": {"POST /cs/voice-interactions/{id}/messages": n}, "by_status", "faults"}``,
        plus ``"sessions"`` (``--sessions``) and ``"capacity"`` (``--semaphores``) when those are on."""
        return self.app.stats_snapshot()

    def reset_stats(self) -> None:
        self.app.reset_stats()

    def stop(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        self._server.shutdown()
        self._server.close_connections()
        self._server.server_close()
        self._thread.join(timeout=5)
        self.app.store.close()

    def __enter__(self) -> RunningEmulator:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.stop()


def start_emulator(
    options: EmulatorOptions | None = None, *, sleep: Callable[[float], None] = time.sleep
) -> RunningEmulator:
    """Serve the emulator in a daemon thread; returns once the socket is listening.

    ``sleep`` is what latency and ``delay`` rules wait with: a test can pass one that blocks until it lets go,
    to hold requests in flight (in a session, on a semaphore) without depending on timing.
    """
    options = options or EmulatorOptions()
    store = Store(options.db)
    app = App(options, store, sleep=sleep)
    handler = type("EmulatorHandler", (_Handler,), {"app": app})
    server_class = _Server6 if ":" in options.host else _Server
    try:
        server = server_class((options.host, options.port), handler)
    except OSError:
        store.close()
        raise
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.02}, name="voicebridge-emulator", daemon=True
    )
    thread.start()
    return RunningEmulator(app, server, thread)
