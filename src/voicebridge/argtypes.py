"""Argument types shared by the ``voicebridge`` subcommands: each checks a value at parse time and says, in one
line, what would be valid (``argument --batch-size: expected an integer from 1 to 10000, got '0'``).

argparse turns an :class:`argparse.ArgumentTypeError` into ``PROG: error: argument FLAG: MESSAGE`` and exit
status 2, so a careless value never reaches code that would answer it with a traceback.
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

from voicebridge.timeparse import parse_moment

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
KINESIS_MAX_BATCH_SIZE = 10_000  # the largest BatchSize a Kinesis event source mapping accepts


def bounded_int(minimum: int, maximum: int | None = None) -> Callable[[str], int]:
    """A type for an integer in ``[minimum, maximum]`` (no upper bound when ``maximum`` is None)."""
    valid = f"an integer from {minimum} to {maximum}" if maximum is not None else f"an integer of at least {minimum}"

    def parse(text: str) -> int:
        try:
            value = int(text.strip())
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {valid}, got {text!r}") from None
        if value < minimum or (maximum is not None and value > maximum):
            raise argparse.ArgumentTypeError(f"expected {valid}, got {text!r}")
        return value

    parse.__name__ = "integer"
    return parse


def bounded_float(
    minimum: float, maximum: float | None = None, *, include_minimum: bool = True
) -> Callable[[str], float]:
    """A type for a finite number above (or at) ``minimum`` and at most ``maximum``."""
    low = f"at least {minimum:g}" if include_minimum else f"greater than {minimum:g}"
    valid = f"a number {low}" + (f" and at most {maximum:g}" if maximum is not None else "")

    def parse(text: str) -> float:
        try:
            value = float(text.strip())
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {valid}, got {text!r}") from None
        too_low = value < minimum if include_minimum else value <= minimum
        if not math.isfinite(value) or too_low:  # float() accepts "nan" and "inf"; neither is a setting
            raise argparse.ArgumentTypeError(f"expected {valid}, got {text!r}")
        if maximum is not None and value > maximum:
            raise argparse.ArgumentTypeError(f"expected {valid}, got {text!r}")
        return value

    parse.__name__ = "number"
    return parse


positive_int = bounded_int(1)
non_negative_int = bounded_int(0)
batch_size = bounded_int(1, KINESIS_MAX_BATCH_SIZE)
positive_float = bounded_float(0.0, include_minimum=False)
non_negative_float = bounded_float(0.0)
fraction = bounded_float(0.0, 1.0)


def http_url(text: str) -> str:
    """An http(s) base URL with a host and nothing after it (``https://dev12345.service-now.com``); no slash at
    the end. Whether plain http is acceptable is the bridge's rule (loopback only), checked when it starts."""
    url = text.strip().rstrip("/")
    expected = f"expected an http(s) URL such as https://dev12345.service-now.com, got {text!r}"
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise argparse.ArgumentTypeError(expected)
    try:
        port_ok = parts.port is None or 0 < parts.port < 65536
    except ValueError:
        port_ok = False
    if not port_ok:
        raise argparse.ArgumentTypeError(f"expected a port from 1 to 65535 in the URL, got {text!r}")
    if parts.path not in ("", "/") or parts.query or parts.fragment or "?" in url or "#" in url:
        raise argparse.ArgumentTypeError(f"expected the instance root URL without a path or query, got {text!r}")
    return url


def readable_file(text: str) -> str:
    """A path to an existing, readable regular file (returned as given)."""
    path = Path(text)
    if not path.exists():
        raise argparse.ArgumentTypeError(f"no such file: {text!r}")
    if not path.is_file():
        raise argparse.ArgumentTypeError(f"not a regular file: {text!r}")
    if not os.access(path, os.R_OK):
        raise argparse.ArgumentTypeError(f"not readable (check its permissions): {text!r}")
    return text


def output_file(text: str) -> str:
    """A file to write, or ``-`` for stdout: its folder must exist and be writable (the file itself may not)."""
    if text == "-":
        return text
    path = Path(text)
    if path.is_dir():
        raise argparse.ArgumentTypeError(f"is a folder, expected a file to write: {text!r}")
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir():
        raise argparse.ArgumentTypeError(f"folder {str(folder)!r} does not exist (create it first): {text!r}")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise argparse.ArgumentTypeError(f"folder {str(folder)!r} is not writable: {text!r}")
    return text


def log_level(text: str) -> str:
    """A logging level name, case-insensitive; returned upper-case."""
    level = text.strip().upper()
    if level not in LOG_LEVELS or not isinstance(logging.getLevelName(level), int):
        raise argparse.ArgumentTypeError(f"expected one of {', '.join(LOG_LEVELS)}, got {text!r}")
    return level


def moment(text: str) -> str:
    """A point in time as :func:`voicebridge.timeparse.parse_moment` reads it; returned as typed (it is
    resolved against "now" when the command runs)."""
    try:
        parse_moment(text, time.time())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a duration back from now (90s, 30m, 24h, 7d), an ISO 8601 time (2026-11-27T06:00:00Z) or "
            f"epoch seconds, got {text!r}"
        ) from None
    return text
