"""Fault injection: scripted one-shot rules, seeded random faults and latency, a rate-limit rule; and stats.

Scripted rules (``POST /__emulator/faults`` or ``RunningEmulator.add_fault_rules``) take precedence over
everything random. A rule matches on ``method`` (absent: any) and ``path`` (a regex, ``re.search`` against
the request path without the query string), fires ``times`` times (default 1) and is then dropped; rules are
tried in the order they were added. Two actions differ: ``filtered_read`` matches Table API reads only, and
``rate_limited`` is a quota window rather than a count: from the first request it refuses, it refuses every
matching request for ``retry_after`` seconds (Retry-After counting down), then it is dropped.
"""

from __future__ import annotations

import math
import random
import re
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from voicebridge.emulator.options import EmulatorOptions

ACTIONS = (
    "status",  # answer `status` with the error envelope, not applied (429: Retry-After when retry_after is given)
    "ambiguous_500",  # apply, then answer 500
    "ambiguous_drop",  # apply, then close the connection without answering
    "drop",  # close the connection without applying or answering
    "delay",  # sleep delay_ms, then handle normally
    "html",  # 200 with an HTML page (a hibernating instance), not applied
    "accepted_202",  # 202 with an empty body (session queue overflow), not applied
    "failure_sentence",  # 200 {"result": "Exception occurred while saving the transcript"}, not applied
    "truncated",  # apply, then send the response body cut in half (Content-Length of what is sent)
    "rate_limited",  # 429 + Retry-After/X-RateLimit-* for every matching request for retry_after s (default 60)
    "filtered_read",  # a Table API read sees no rows (200 [] with X-Total-Count 0; by sys_id: 404)
    "session_busy",  # 202 with the page a busy session's overflow gets (--sessions), not applied
)
DEFAULT_QUOTA_S = 60.0
# The sys_id a rate-limit answer names in X-RateLimit-Rule (a real instance names its sys_rate_limit_rules row).
RATE_LIMIT_RULE_ID = "9c6f1e4e1b2f4210a7d9c0ffee5e7a11"
APPLYING_ACTIONS = ("ambiguous_500", "ambiguous_drop", "delay", "truncated")
FAILURE_SENTENCE = "Exception occurred while saving the transcript"

STATUS_MESSAGES = {
    429: "Rate limit exceeded",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Timeout",
}


def status_message(status: int) -> str:
    return STATUS_MESSAGES.get(status, f"HTTP {status}")


@dataclass
class FaultRule:
    """One scripted fault; ``remaining`` counts down from ``times``."""

    action: str
    path: str = ""
    method: str | None = None
    times: int = 1
    status: int = 503
    retry_after: float | None = None
    delay_ms: float = 0
    result: str | None = None
    remaining: int = 0
    quota_ends: float | None = None  # rate_limited: when its window, started by its first refusal, ends

    def __post_init__(self) -> None:
        if self.action not in ACTIONS:
            raise ValueError(f"unknown fault action {self.action!r}; expected one of {', '.join(ACTIONS)}")
        if self.times < 1:
            raise ValueError(f"times must be >= 1, got {self.times}")
        if not 100 <= self.status <= 599:
            raise ValueError(f"status must be an HTTP status, got {self.status}")
        if self.delay_ms < 0 or (self.retry_after is not None and self.retry_after < 0):
            raise ValueError("delay_ms and retry_after must be >= 0")
        if self.action == "rate_limited" and self.retry_after == 0:
            raise ValueError("a rate_limited rule needs retry_after > 0 (the length of its quota window)")
        self._pattern = re.compile(self.path)
        self.method = self.method.upper() if self.method else None
        self.remaining = self.times

    def matches(self, method: str, path: str, route_kind: str | None = None) -> bool:
        if self.action == "filtered_read" and route_kind not in (None, "table"):
            return False  # only a read can be filtered: leave the rule for the read it is meant for
        return (self.method is None or self.method == method) and self._pattern.search(path) is not None

    def describe(self) -> dict[str, Any]:
        return {
            "action": self.action,
            "path": self.path,
            "method": self.method,
            "times": self.times,
            "remaining": self.remaining,
            "status": self.status,
            "retry_after": self.retry_after,
            "delay_ms": self.delay_ms,
        }


_RULE_FIELDS = {"action", "path", "method", "times", "status", "retry_after", "delay_ms", "result"}


def parse_rules(payload: Any) -> list[FaultRule]:
    """``{"rules": [...]}`` (or a bare list) -> rules; ``ValueError`` names what is wrong."""
    items = payload.get("rules") if isinstance(payload, dict) else payload
    if not isinstance(items, list):
        raise ValueError('expected {"rules": [ {...}, ... ]}')
    rules = []
    for index, item in enumerate(items):
        if not isinstance(item, dict) or "action" not in item:
            raise ValueError(f"rule {index} must be an object with an action")
        unknown = set(item) - _RULE_FIELDS
        if unknown:
            raise ValueError(f"rule {index} has unknown fields: {', '.join(sorted(unknown))}")
        if item["action"] == "rate_limited" and "times" in item:
            raise ValueError(f"rule {index}: a rate_limited rule lasts retry_after seconds; times does not apply")
        try:
            rules.append(
                FaultRule(
                    action=str(item["action"]),
                    path=str(item.get("path") or ""),
                    method=item.get("method"),
                    times=int(item.get("times", 1)),
                    status=int(item.get("status", 503)),
                    retry_after=None if item.get("retry_after") is None else float(item["retry_after"]),
                    delay_ms=float(item.get("delay_ms", 0)),
                    result=None if item.get("result") is None else str(item["result"]),
                )
            )
        except re.error as exc:
            raise ValueError(f"rule {index}: invalid path regex: {exc}") from exc
        except (TypeError, ValueError) as exc:
            raise ValueError(f"rule {index}: {exc}") from exc
    return rules


@dataclass(frozen=True)
class RandomDraw:
    """What the seeded generator decided for one /cs/ request."""

    delay_s: float
    fault_status: int | None
    ambiguous: str | None  # "ambiguous_500" | "ambiguous_drop" | None


class FaultEngine:
    """Scripted rules, seeded random faults/latency and the fixed-window rate limiter, all thread-safe."""

    def __init__(
        self,
        options: EmulatorOptions,
        *,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self._options = options
        self._rules: list[FaultRule] = []
        self._lock = threading.Lock()
        self._random = random.Random(options.seed)
        self._clock, self._wall_clock = clock, wall_clock
        self._rate_limit = options.parsed_rate_limit
        self._windows: dict[str, list[float]] = {}  # user -> [window start, requests counted in it]

    # scripted
    def add_rules(self, rules: list[FaultRule]) -> int:
        with self._lock:
            self._rules.extend(rules)
            return len(self._rules)

    def clear_rules(self) -> int:
        with self._lock:
            count = len(self._rules)
            self._rules.clear()
            return count

    def pending_rules(self) -> list[dict[str, Any]]:
        with self._lock:
            return [rule.describe() for rule in self._rules]

    def take_rule(self, method: str, path: str, route_kind: str | None = None) -> FaultRule | None:
        """The first pending rule matching the request, consumed once; None when none matches.

        ``route_kind`` ("cs", "table", "oauth") lets a ``filtered_read`` rule pass over non-reads.
        """
        with self._lock:
            if not self._rules:
                return None
            now = self._clock()
            if any(rule.quota_ends is not None and rule.quota_ends <= now for rule in self._rules):
                self._rules = [rule for rule in self._rules if rule.quota_ends is None or rule.quota_ends > now]
            for index, rule in enumerate(self._rules):
                if rule.matches(method, path, route_kind):
                    if rule.action == "rate_limited":
                        if rule.quota_ends is None:
                            rule.quota_ends = now + (DEFAULT_QUOTA_S if rule.retry_after is None else rule.retry_after)
                        return rule  # dropped when its window has passed, not by count
                    rule.remaining -= 1
                    if rule.remaining <= 0:
                        del self._rules[index]
                    return rule
        return None

    def quota_left(self, rule: FaultRule) -> float:
        """Seconds left in a ``rate_limited`` rule's window (0 once it has passed)."""
        return max(0.0, (rule.quota_ends or 0.0) - self._clock())

    # random
    def draw(self) -> RandomDraw:
        """Five draws per request, whatever is enabled, so a seed gives the same sequence of outcomes."""
        options = self._options
        with self._lock:
            fault, pick, ambiguous, kind, jitter = (self._random.random() for _ in range(5))
        delay_ms = options.latency_ms * (1 + 0.1 * jitter) if options.latency_ms else 0.0
        status = None
        if fault < options.fault_rate and options.fault_statuses:
            status = options.fault_statuses[
                min(int(pick * len(options.fault_statuses)), len(options.fault_statuses) - 1)
            ]
        chosen = None
        if status is None and ambiguous < options.ambiguous_rate:
            chosen = "ambiguous_500" if kind < 0.5 else "ambiguous_drop"
        return RandomDraw(delay_s=delay_ms / 1000, fault_status=status, ambiguous=chosen)

    # rate limit
    def rate_limit(self, user: str = "") -> tuple[bool, dict[str, str]]:
        """Count one request of ``user`` against their window: (allowed, X-RateLimit-* headers).

        No rule: (True, {}). Refused: ``Retry-After`` is the whole seconds left in the user's window, which for
        an hourly rule can be most of an hour, as on a real instance.
        """
        limit = self._rate_limit
        if limit is None:
            return True, {}
        with self._lock:
            now = self._clock()
            window = self._windows.setdefault(user, [now, 0])
            elapsed = now - window[0]
            if elapsed >= limit.seconds:
                window[0] += math.floor(elapsed / limit.seconds) * limit.seconds
                window[1] = 0
            allowed = window[1] < limit.requests
            if allowed:
                window[1] += 1
            reset_in = max(0.0, window[0] + limit.seconds - now)
            remaining = limit.requests - int(window[1])
        headers = self._limit_headers(limit.requests, max(0, remaining), reset_in)
        if not allowed:
            headers["Retry-After"] = str(max(1, math.ceil(reset_in)))
        return allowed, headers

    def _limit_headers(self, limit: int, remaining: int, reset_in: float) -> dict[str, str]:
        return {
            "X-RateLimit-Limit": str(limit),
            "X-RateLimit-Remaining": str(remaining),
            "X-RateLimit-Reset": str(math.ceil(self._wall_clock() + reset_in)),
            "X-RateLimit-Rule": RATE_LIMIT_RULE_ID,
        }

    def quota_headers(self, seconds_left: float) -> dict[str, str]:
        """Headers of a 429 from an exhausted quota with ``seconds_left`` in its window."""
        limit = self._rate_limit.requests if self._rate_limit else 1000
        headers = self._limit_headers(limit, 0, seconds_left)
        headers["Retry-After"] = str(max(1, math.ceil(seconds_left)))
        return headers

    def throttle_headers(self) -> dict[str, str]:
        """Headers for a random 429: a rate-limit rule's, one second away."""
        return self.quota_headers(1.0)


class Stats:
    """Request counts by ``METHOD /route/{template}``, by status (``dropped`` for closed connections), faults."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._routes: Counter[str] = Counter()
        self._statuses: Counter[str] = Counter()
        self._faults: Counter[str] = Counter()
        self._total = 0

    def record(self, route: str, status: int | None, fault: str | None = None) -> None:
        with self._lock:
            self._total += 1
            self._routes[route] += 1
            self._statuses["dropped" if status is None else str(status)] += 1
            if fault:
                self._faults[fault] += 1

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {
                "total": self._total,
                "by_route": dict(self._routes),
                "by_status": dict(self._statuses),
                "faults": dict(self._faults),
            }

    def reset(self) -> None:
        with self._lock:
            self._routes.clear()
            self._statuses.clear()
            self._faults.clear()
            self._total = 0
