"""``EmulatorOptions``: the emulator's settings, shared by the CLI and the Python embedding API."""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True)
class RateLimit:
    """At most ``requests`` /cs/ requests per fixed window of ``seconds``."""

    requests: int
    seconds: float


def parse_rate_limit(text: str) -> RateLimit:
    """Parse ``N/SECONDS`` (e.g. ``100/60``); raise ``ValueError`` on anything else."""
    match = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+(?:\.\d+)?)\s*", text)
    if not match or int(match.group(1)) < 1 or float(match.group(2)) <= 0:
        raise ValueError(f"rate limit must look like N/SECONDS with N >= 1 and SECONDS > 0, got {text!r}")
    return RateLimit(int(match.group(1)), float(match.group(2)))


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

    def __post_init__(self) -> None:
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

    @property
    def parsed_rate_limit(self) -> RateLimit | None:
        if self.rate_limit is None or isinstance(self.rate_limit, RateLimit):
            return self.rate_limit
        return parse_rate_limit(self.rate_limit)
