"""``EmulatorOptions``: the emulator's settings, shared by the CLI and the Python embedding API."""

from __future__ import annotations

import re
from dataclasses import dataclass

from voicebridge.emulator.tableapi import TABLES

# A node's defaults when only part of a model is given: ServiceNow queues about 10 requests per session
# before answering 202 (community and vendor write-ups of session synchronization), and KB0635398 shows an
# API_INT semaphore pool with a max queue depth of 50.
DEFAULT_SESSION_QUEUE = 10
DEFAULT_QUEUE_DEPTH = 50
MAX_PORT = 65535


@dataclass(frozen=True)
class RateLimit:
    """At most ``requests`` /cs/ requests per user per fixed window of ``seconds`` (ServiceNow: per hour).

    Each authenticated user has their own window, which starts at that user's first counted request.
    """

    requests: int
    seconds: float


def parse_rate_limit(text: str) -> RateLimit:
    """Parse ``N/SECONDS`` (e.g. ``100/60``); raise ``ValueError`` on anything else."""
    match = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+(?:\.\d+)?)\s*", text)
    if not match or int(match.group(1)) < 1 or float(match.group(2)) <= 0:
        raise ValueError(f"rate limit must look like N/SECONDS with N >= 1 and SECONDS > 0, got {text!r}")
    return RateLimit(int(match.group(1)), float(match.group(2)))


def parse_tables(text: str) -> tuple[str, ...]:
    """Parse a comma list of Table API tables (``sys_cs_message,interaction``); unknown names are an error."""
    tables = tuple(dict.fromkeys(part.strip() for part in text.split(",") if part.strip()))
    unknown = [table for table in tables if table not in TABLES]
    if not tables or unknown:
        raise ValueError(
            f"filtered reads must be a comma list of {', '.join(TABLES)}, got {text!r}"
            + (f" (unknown: {', '.join(unknown)})" if unknown else "")
        )
    return tables


def parse_statuses(text: str) -> tuple[int, ...]:
    """Parse a comma list of HTTP statuses (``429,500,502,503``)."""
    statuses = tuple(int(part) for part in text.split(",") if part.strip())
    if not statuses or any(not 400 <= status <= 599 for status in statuses):
        raise ValueError(f"fault statuses must be a comma list of 4xx/5xx codes, got {text!r}")
    return statuses


@dataclass(frozen=True)
class EmulatorOptions:
    """Every ``voicebridge emulator`` option, with the CLI's defaults (except ``port``: 0 picks a free one).

    ``rate_limit`` takes ``"N/SECONDS"`` or a :class:`RateLimit`; ``seed`` makes faults and jitter repeatable.

    What a real node does, each off by default:
    - ``sessions``: answers set ``JSESSIONID`` (+ a ``BIGipServer…`` cookie) when the request carried no
      ``JSESSIONID``; requests carrying one run one at a time per session, at most ``session_queue`` wait
      and the next is answered 202 (not applied).
    - ``filtered_reads``: Table API reads of these tables see no rows (200, empty result, X-Total-Count 0;
      a read by sys_id is 404), as reads filtered by ACLs or before-query business rules.
    - ``filtered_contacts``: a regular expression on ``client_session_id``: reads of those contacts' records
      (their interactions, conversations and messages) see nothing, as a row-level read ACL does; other
      contacts' records read as usual (the chaos soak's "filtered reads for a share of calls").
    - ``semaphores``: at most this many requests worked at once, ``queue_depth`` wait for one, the rest are
      answered 429 with ``Retry-After: 1`` at once (the work time of a /cs/ request is ``latency_ms``).
    """

    host: str = "127.0.0.1"
    port: int = 0
    db: str | None = None
    user: str = "admin"
    password: str = "admin"
    client_id: str = "voicebridge"
    client_secret: str = "voicebridge"
    token_ttl: float = 1800
    lenient: bool = False
    latency_ms: float = 0
    fault_rate: float = 0.0
    fault_statuses: tuple[int, ...] = (429, 500, 502, 503)
    ambiguous_rate: float = 0.0
    rate_limit: str | RateLimit | None = None
    seed: int | None = None
    script_style_errors: bool = False
    sessions: bool = False
    session_queue: int = DEFAULT_SESSION_QUEUE
    filtered_reads: tuple[str, ...] = ()
    filtered_contacts: str | None = None
    semaphores: int | None = None
    queue_depth: int = DEFAULT_QUEUE_DEPTH

    def __post_init__(self) -> None:
        if not 0 <= self.port <= MAX_PORT:
            raise ValueError(f"port must be from 0 to {MAX_PORT} (0 picks a free one), got {self.port}")
        for name in ("fault_rate", "ambiguous_rate"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be between 0 and 1, got {value}")
        if self.latency_ms < 0:
            raise ValueError(f"latency_ms must be >= 0, got {self.latency_ms}")
        if self.token_ttl <= 0:
            raise ValueError(f"token_ttl must be > 0, got {self.token_ttl}")
        if isinstance(self.rate_limit, str):
            parse_rate_limit(self.rate_limit)
        if self.session_queue < 0:
            raise ValueError(f"session_queue must be >= 0, got {self.session_queue}")
        if self.semaphores is not None and self.semaphores < 1:
            raise ValueError(f"semaphores must be >= 1 (or None for no capacity model), got {self.semaphores}")
        if self.queue_depth < 0:
            raise ValueError(f"queue_depth must be >= 0, got {self.queue_depth}")
        if isinstance(self.filtered_reads, str):
            raise ValueError(f"filtered_reads must be a tuple of table names, got the string {self.filtered_reads!r}")
        if self.filtered_reads:
            parse_tables(",".join(self.filtered_reads))
        if self.filtered_contacts is not None:
            try:
                re.compile(self.filtered_contacts)
            except re.error as exc:
                raise ValueError(f"filtered_contacts must be a regular expression: {exc}") from None

    @property
    def parsed_rate_limit(self) -> RateLimit | None:
        if self.rate_limit is None or isinstance(self.rate_limit, RateLimit):
            return self.rate_limit
        return parse_rate_limit(self.rate_limit)
