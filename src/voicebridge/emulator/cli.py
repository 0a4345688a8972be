"""``voicebridge emulator``: serve the ServiceNow Voice Interaction API emulator until SIGINT/SIGTERM."""

from __future__ import annotations

import argparse
import errno
import math
import re
import signal
import sqlite3
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from types import FrameType

from voicebridge.emulator.options import (
    DEFAULT_QUEUE_DEPTH,
    DEFAULT_SESSION_QUEUE,
    MAX_PORT,
    EmulatorOptions,
    parse_rate_limit,
    parse_statuses,
    parse_tables,
)
from voicebridge.emulator.server import RunningEmulator, start_emulator

DEFAULT_PORT = 8080
PROG = "voicebridge emulator"


def _checked(parse: Callable[[str], object]) -> Callable[[str], object]:
    """An argparse type from a parser that raises ``ValueError`` with a sentence saying what is valid."""

    def check(text: str) -> object:
        try:
            return parse(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    return check


def _integer(minimum: int, maximum: int | None = None) -> Callable[[str], int]:
    valid = f"an integer from {minimum} to {maximum}" if maximum is not None else f"an integer of at least {minimum}"

    def parse(text: str) -> int:
        try:
            value = int(text.strip())
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {valid}, got {text!r}") from None
        if value < minimum or (maximum is not None and value > maximum):
            raise argparse.ArgumentTypeError(f"expected {valid}, got {text!r}")
        return value

    return parse


def _number(minimum: float, maximum: float | None = None, *, above: bool = False) -> Callable[[str], float]:
    valid = f"a number {'greater than' if above else 'at least'} {minimum:g}" + (
        f" and at most {maximum:g}" if maximum is not None else ""
    )

    def parse(text: str) -> float:
        try:
            value = float(text.strip())
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {valid}, got {text!r}") from None
        too_low = value <= minimum if above else value < minimum
        if not math.isfinite(value) or too_low:  # float() accepts "nan" and "inf"; neither is a setting
            raise argparse.ArgumentTypeError(f"expected {valid}, got {text!r}")
        if maximum is not None and value > maximum:
            raise argparse.ArgumentTypeError(f"expected {valid}, got {text!r}")
        return value

    return parse


def _rate(text: str) -> str:
    parse_rate_limit(text)  # raises ValueError saying what the syntax is
    return text


def add_arguments(parser: argparse.ArgumentParser) -> None:
    defaults = EmulatorOptions()
    add = parser.add_argument
    add("--host", default=defaults.host, help="address to bind (default %(default)s)")
    add(
        "--port",
        type=_integer(0, MAX_PORT),
        default=DEFAULT_PORT,
        help="port; 0 picks a free one (default %(default)s)",
    )
    add("--db", default=None, metavar="PATH", help="SQLite file (default: in memory)")
    add("--user", default=defaults.user, help="basic-auth user (default %(default)s)")
    add("--password", default=defaults.password, help="basic-auth password (default %(default)s)")
    add("--client-id", default=defaults.client_id, help="OAuth client id (default %(default)s)")
    add("--client-secret", default=defaults.client_secret, help="OAuth client secret (default %(default)s)")
    add(
        "--token-ttl",
        type=_number(0, above=True),
        default=defaults.token_ttl,
        metavar="SECONDS",
        help="access token lifetime",
    )
    add("--lenient", action="store_true", help="accept the reference's sample quirks (trailing commas, U+202F)")
    add("--script-style-errors", action="store_true", help="answer 200 with the script API's failure sentence")
    add(
        "--latency-ms",
        type=_number(0),
        default=0,
        metavar="N",
        help="added latency per /cs/ request (+ seeded jitter)",
    )
    add("--fault-rate", type=_number(0, 1), default=0.0, metavar="P", help="probability of a random fault status")
    add(
        "--fault-statuses",
        type=_checked(parse_statuses),
        default=defaults.fault_statuses,
        metavar="LIST",
        help="statuses random faults pick from (default 429,500,502,503)",
    )
    add("--ambiguous-rate", type=_number(0, 1), default=0.0, metavar="P", help="apply, then answer 500 or drop")
    add(
        "--rate-limit",
        type=_checked(_rate),
        default=None,
        metavar="N/SECONDS",
        help="rate-limit rule for /cs/ requests, per user (e.g. 1000/3600: 1000 an hour)",
    )
    add("--seed", type=_integer(-(2**63)), default=None, help="seed for faults and jitter (repeatable runs)")
    node = parser.add_argument_group("a real node's behaviour (each off by default)")
    node.add_argument(
        "--sessions",
        action="store_true",
        help="set JSESSIONID/BIGipServer cookies; run requests of one session one at a time",
    )
    node.add_argument(
        "--session-queue",
        type=_integer(0),
        default=None,
        metavar="N",
        help=f"with --sessions: requests that may wait per session before the next gets 202 "
        f"(default {DEFAULT_SESSION_QUEUE})",
    )
    node.add_argument(
        "--filtered-reads",
        type=_checked(parse_tables),
        default=(),
        metavar="TABLE,...",
        help="Table API reads of these tables see no rows (200, empty), as with read ACLs",
    )
    node.add_argument(
        "--filtered-contacts",
        type=_checked(_regex),
        default=None,
        metavar="REGEX",
        help="reads of the records of contacts whose client_session_id matches see nothing (a row-level ACL)",
    )
    node.add_argument(
        "--semaphores",
        type=_integer(1),
        default=None,
        metavar="N",
        help="at most N requests worked at once (work time: --latency-ms); the rest queue or get 429",
    )
    node.add_argument(
        "--queue-depth",
        type=_integer(0),
        default=None,
        metavar="Q",
        help=f"with --semaphores: requests that may wait for one; beyond, 429 Retry-After 1 "
        f"(default {DEFAULT_QUEUE_DEPTH})",
    )


def _regex(text: str) -> str:
    try:
        re.compile(text)
    except re.error as exc:
        raise ValueError(f"not a regular expression: {exc}") from None
    return text


def options_from_args(args: argparse.Namespace) -> EmulatorOptions:
    """The options the arguments describe; ``ValueError`` (naming the flag) for a combination that means nothing."""
    if args.session_queue is not None and not args.sessions:
        raise ValueError("--session-queue needs --sessions (it sizes the per-session queue)")
    if args.queue_depth is not None and args.semaphores is None:
        raise ValueError("--queue-depth needs --semaphores N (it sizes the queue for a semaphore)")
    return EmulatorOptions(
        host=args.host,
        port=args.port,
        db=args.db,
        user=args.user,
        password=args.password,
        client_id=args.client_id,
        client_secret=args.client_secret,
        token_ttl=args.token_ttl,
        lenient=args.lenient,
        latency_ms=args.latency_ms,
        fault_rate=args.fault_rate,
        fault_statuses=tuple(args.fault_statuses),
        ambiguous_rate=args.ambiguous_rate,
        rate_limit=args.rate_limit,
        seed=args.seed,
        script_style_errors=args.script_style_errors,
        sessions=args.sessions,
        session_queue=DEFAULT_SESSION_QUEUE if args.session_queue is None else args.session_queue,
        filtered_reads=tuple(args.filtered_reads),
        filtered_contacts=args.filtered_contacts,
        semaphores=args.semaphores,
        queue_depth=DEFAULT_QUEUE_DEPTH if args.queue_depth is None else args.queue_depth,
    )


def _bind_error(options: EmulatorOptions, exc: OSError) -> str:
    where = f"{options.host}:{options.port}"
    if exc.errno == errno.EADDRINUSE:
        return f"--port {options.port}: {where} is already in use; choose another port (0 picks a free one)"
    if exc.errno == errno.EACCES:
        return f"--port {options.port}: not allowed to listen on {where}; use a port from 1024 to {MAX_PORT} or 0"
    reason = exc.strerror or str(exc)
    return f"--host {options.host}: cannot listen on {where} ({reason}); use a local address such as 127.0.0.1"


def _start(options: EmulatorOptions) -> RunningEmulator | str:
    """The running emulator, or the one line that says why it cannot start."""
    if options.db is not None:
        folder = Path(options.db).expanduser().resolve().parent
        if not folder.is_dir():
            return f"--db {options.db}: the folder {folder} does not exist; create it, or omit --db (in memory)"
    try:
        return start_emulator(options)
    except sqlite3.Error as exc:
        return f"--db {options.db}: cannot open it as an SQLite database ({exc})"
    except OSError as exc:
        return _bind_error(options, exc)


def run(args: argparse.Namespace) -> int:
    """Serve until SIGINT or SIGTERM; exit 0 (2, with one line on stderr, when it cannot start)."""
    try:
        started = _start(options_from_args(args))
    except ValueError as exc:
        started = str(exc)
    if isinstance(started, str):
        print(f"{PROG}: {started}", file=sys.stderr)
        return 2
    emulator = started
    stop = threading.Event()

    def _on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, _on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        print(f"listening on {emulator.url}", flush=True)  # the one stdout line scripts wait for (design.md)
        print(f"live transcript view: {emulator.url}/ui/", file=sys.stderr, flush=True)
        while not stop.wait(0.5):
            pass
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        emulator.stop()
    sys.stdout.flush()
    return 0
