"""Issue 9 §2.1: a backlog through a ServiceNow that runs one transaction per session (the emulator's ``sessions``
mode: ``JSESSIONID`` cookies, the rest of a busy session's requests answered 202), against the same backlog straight
to the emulator, and against the naive client that keeps the cookies it is given (one jar for every worker thread),
all measured in the same run through ``voicebridge replay`` (the real handler, moto, the emulator over HTTP)."""

from __future__ import annotations

import contextlib
import http.cookiejar
import time
from collections.abc import Iterator
from dataclasses import dataclass

LATENCY_MS = 50.0


@dataclass(frozen=True)
class SessionFigures:
    calls: int
    direct_s: float
    sessions_s: float
    cookie_jar_s: float
    cookie_jar_202s: int
    sessions_202s: int

    @property
    def ratio(self) -> float:
        return self.sessions_s / self.direct_s

    @property
    def naive_ratio(self) -> float:
        return self.cookie_jar_s / self.direct_s


@contextlib.contextmanager
def _keeping_cookies() -> Iterator[None]:
    """The client as it was before issue 9: a cookie jar that keeps (and sends) what ServiceNow sets."""
    import bridge.adapters.servicenow as servicenow

    real = servicenow._NoCookies
    servicenow._NoCookies = http.cookiejar.DefaultCookiePolicy  # type: ignore[misc, assignment]
    try:
        yield
    finally:
        servicenow._NoCookies = real  # type: ignore[misc]


def _backlog(calls: int, segments: int, sessions: bool) -> tuple[float, int]:
    from voicebridge.emulator import EmulatorOptions, start_emulator
    from voicebridge.feed.replay import ReplayOptions, ServiceNowTarget, replay
    from voicebridge.soak.chaos import SoakOptions, build_workload

    options = SoakOptions(calls=calls, segments=segments, fault_rate=0, crash_rate=0, duplicate_rate=0)
    _calls, records = build_workload(options)
    with start_emulator(EmulatorOptions(sessions=sessions, latency_ms=LATENCY_MS)) as emulator:
        target = ServiceNowTarget(emulator.url, "admin", "admin")
        started = time.perf_counter()
        report = replay(records, ReplayOptions(servicenow=target, max_retries=50))
        wall = time.perf_counter() - started
        if report.delivery.given_up:
            raise RuntimeError(f"the sessions backlog gave batches up: {report.delivery.given_up}")
        busy = int(emulator.stats().get("sessions", {}).get("busy_202", 0))
    return wall, busy


def run(calls: int = 120, segments: int = 8) -> SessionFigures:
    direct, _ = _backlog(calls, segments, sessions=False)
    sessions, sessions_202s = _backlog(calls, segments, sessions=True)
    with _keeping_cookies():
        jar, jar_202s = _backlog(calls, segments, sessions=True)
    return SessionFigures(calls, direct, sessions, jar, jar_202s, sessions_202s)
