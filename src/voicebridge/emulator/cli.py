"""``voicebridge emulator``: serve the ServiceNow Voice Interaction API emulator until SIGINT/SIGTERM."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from types import FrameType

from voicebridge.emulator.options import EmulatorOptions, parse_rate_limit, parse_statuses
from voicebridge.emulator.server import start_emulator

DEFAULT_PORT = 8080


def _rate(text: str) -> str:
    try:
        parse_rate_limit(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc
    return text


def _statuses(text: str) -> tuple[int, ...]:
    try:
        return parse_statuses(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


def _probability(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1, got {text}")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    defaults = EmulatorOptions()
    add = parser.add_argument
    add("--host", default=defaults.host, help="address to bind (default %(default)s)")
    add("--port", type=int, default=DEFAULT_PORT, help="port; 0 picks a free one (default %(default)s)")
    add("--db", default=None, metavar="PATH", help="SQLite file (default: in memory)")
    add("--user", default=defaults.user, help="basic-auth user (default %(default)s)")
    add("--password", default=defaults.password, help="basic-auth password (default %(default)s)")
    add("--client-id", default=defaults.client_id, help="OAuth client id (default %(default)s)")
    add("--client-secret", default=defaults.client_secret, help="OAuth client secret (default %(default)s)")
    add("--token-ttl", type=float, default=defaults.token_ttl, metavar="SECONDS", help="access token lifetime")
    add("--lenient", action="store_true", help="accept the reference's sample quirks (trailing commas, U+202F)")
    add("--script-style-errors", action="store_true", help="answer 200 with the script API's failure sentence")
    add("--latency-ms", type=float, default=0, metavar="N", help="added latency per /cs/ request (+ seeded jitter)")
    add("--fault-rate", type=_probability, default=0.0, metavar="P", help="probability of a random fault status")
    add(
        "--fault-statuses",
        type=_statuses,
        default=defaults.fault_statuses,
        metavar="LIST",
        help="statuses random faults pick from (default 429,500,502,503)",
    )
    add("--ambiguous-rate", type=_probability, default=0.0, metavar="P", help="apply, then answer 500 or drop")
    add("--rate-limit", type=_rate, default=None, metavar="N/SECONDS", help="rate-limit rule for /cs/ requests")
    add("--seed", type=int, default=None, help="seed for faults and jitter (repeatable runs)")


def options_from_args(args: argparse.Namespace) -> EmulatorOptions:
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
    )


def run(args: argparse.Namespace) -> int:
    """Serve until SIGINT or SIGTERM; exit 0."""
    emulator = start_emulator(options_from_args(args))
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
