"""``voicebridge connect``: serve the Amazon Connect stand-in until SIGINT/SIGTERM (point a client at it with
``endpoint_url``, or the function with ``AWS_ENDPOINT_URL_CONNECT`` / ``AWS_ENDPOINT_URL_CONNECT_CONTACT_LENS``)."""

from __future__ import annotations

import argparse
import errno
import signal
import sys
import threading
from types import FrameType

from voicebridge import argtypes
from voicebridge.connect.data import ConnectData, ConnectDataError, load_connect_data
from voicebridge.connect.server import ConnectOptions, RunningConnect, start_connect

MAX_PORT = 65535

DEFAULT_PORT = 8081
PROG = "voicebridge connect"


def _bind_error(options: ConnectOptions, exc: OSError) -> str:
    where = f"{options.host}:{options.port}"
    if exc.errno == errno.EADDRINUSE:
        return f"--port {options.port}: {where} is already in use; choose another port (0 picks a free one)"
    reason = exc.strerror or str(exc)
    return f"--host {options.host}: cannot listen on {where} ({reason}); use a local address such as 127.0.0.1"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "data",
        nargs="?",
        metavar="CONTACTS.json",
        type=argtypes.readable_file,
        help="contacts, users, attributes and segments to serve (README: The Amazon Connect stand-in); "
        "default: none (every lookup is ResourceNotFoundException)",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument(
        "--port",
        type=argtypes.bounded_int(0, MAX_PORT),
        default=DEFAULT_PORT,
        help=f"port to listen on; 0 picks a free one (default {DEFAULT_PORT})",
    )
    parser.add_argument(
        "--throttle-every",
        type=argtypes.bounded_int(0),
        default=0,
        metavar="N",
        help="answer every Nth request with ThrottlingException 429 (default 0: never)",
    )


def _start(args: argparse.Namespace) -> RunningConnect | str:
    """The running stand-in, or the one line that says why it cannot start."""
    try:
        data = load_connect_data(args.data) if args.data else ConnectData()
    except ConnectDataError as exc:
        return str(exc)
    options = ConnectOptions(host=args.host, port=args.port, throttle_every=args.throttle_every)
    try:
        return start_connect(data, options)
    except OSError as exc:
        return _bind_error(options, exc)


def run(args: argparse.Namespace) -> int:
    """Serve until SIGINT or SIGTERM; exit 0 (2, with one line on stderr, when it cannot start)."""
    started = _start(args)
    if isinstance(started, str):
        print(f"{PROG}: {started}", file=sys.stderr)
        return 2
    connect = started
    stop = threading.Event()

    def _on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, _on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        print(f"listening on {connect.url}", flush=True)  # the one stdout line scripts wait for
        while not stop.wait(0.5):
            pass
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        connect.stop()
    sys.stdout.flush()
    return 0
