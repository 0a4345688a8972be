"""The two gates a real ServiceNow node puts in front of every transaction (each off unless configured).

``SessionGate`` (session synchronization): a request carrying a ``JSESSIONID`` waits until the session's
previous transaction has finished; when ``queue_limit`` requests already wait for that session, the next one
is answered 202 and dropped. A request without the cookie is not serialised and gets a new session's cookies
(``JSESSIONID`` plus the load balancer's ``BIGipServer…`` pin), which a cookie-keeping client sends back.

``CapacityGate`` (the API semaphores): at most ``semaphores`` requests are worked at once, ``queue_depth``
wait for a semaphore, and the rest are refused at once (429 with ``Retry-After: 1``).

Session state lives only while requests of that session are in flight, so an emulator serving millions of
cookie-less requests holds no session table. Any ``JSESSIONID`` value counts as a session (a real instance
would start a new session for an unknown or expired id; here it is serialised like a known one).
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

SESSION_COOKIE = "JSESSIONID"
# An F5 BIG-IP persistence cookie: "<IPv4 as a little-endian integer>.<port byte-swapped>.0000".
LOAD_BALANCER_COOKIE = "BIGipServerpool_voicebridge=2936077834.36895.0000; path=/; Httponly"


def session_id_of(cookie_header: str | None) -> str | None:
    """The ``JSESSIONID`` value of a ``Cookie`` header, or None when it carries none."""
    if not cookie_header:
        return None
    for part in cookie_header.split(";"):
        name, equals, value = part.strip().partition("=")
        if equals and name == SESSION_COOKIE and value.strip():
            return value.strip()
    return None


@dataclass
class _Session:
    lock: threading.Lock = field(default_factory=threading.Lock)
    holders: int = 0  # the running request plus those waiting


class SessionGate:
    """One transaction at a time per session; beyond ``queue_limit`` waiting, 202."""

    def __init__(self, queue_limit: int) -> None:
        self._queue_limit = queue_limit
        self._lock = threading.Lock()
        self._sessions: dict[str, _Session] = {}
        self._waiting = 0
        self._reset_counters()

    def _reset_counters(self) -> None:
        self._issued = self._requests = self._waited = self._busy = 0
        self._max_waiting = self._waiting

    def new_session_cookies(self) -> list[str]:
        """``Set-Cookie`` values for a response to a request that carried no session."""
        with self._lock:
            self._issued += 1
        return [f"{SESSION_COOKIE}={uuid.uuid4().hex.upper()}; Path=/; HttpOnly", LOAD_BALANCER_COOKIE]

    def enter(self, session_id: str) -> bool:
        """Wait for the session (True), or False at once when its queue is full (answer 202, apply nothing)."""
        with self._lock:
            session = self._sessions.get(session_id)
            if session is None:
                session = self._sessions[session_id] = _Session()
            if session.holders > self._queue_limit:  # one running and queue_limit waiting
                self._busy += 1
                return False
            session.holders += 1
            self._requests += 1
            if session.holders > 1:
                self._waited += 1
                self._waiting += 1
                self._max_waiting = max(self._max_waiting, self._waiting)
        session.lock.acquire()
        return True

    def leave(self, session_id: str) -> None:
        """End the transaction ``enter`` admitted; the session's next waiting request runs."""
        with self._lock:
            session = self._sessions[session_id]
            session.holders -= 1
            if session.holders:
                self._waiting -= 1  # counted here, not when the waiter wakes, so the gauge never overshoots
            else:
                del self._sessions[session_id]
        session.lock.release()

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {
                "queue_limit": self._queue_limit,
                "issued": self._issued,  # responses that set a new JSESSIONID
                "requests": self._requests,  # requests that carried a session and were run
                "waited": self._waited,  # of those, how many waited for another request of their session
                "busy_202": self._busy,  # answered 202: the session's queue was full
                "waiting": self._waiting,  # waiting right now
                "max_waiting": self._max_waiting,  # most waiting at once (over all sessions)
            }

    def reset(self) -> None:
        with self._lock:
            self._reset_counters()


class CapacityGate:
    """At most ``semaphores`` requests worked at once, ``queue_depth`` waiting, the rest refused.

    A semaphore freed while requests wait is handed to one of them directly, so a newcomer never overtakes
    the queue and "fewer than ``semaphores`` active" always means "nobody waiting".
    """

    def __init__(self, semaphores: int, queue_depth: int, *, clock: Callable[[], float] = time.perf_counter) -> None:
        self._semaphores, self._queue_depth = semaphores, queue_depth
        self._clock = clock
        self._condition = threading.Condition()
        self._active = self._waiting = self._handed_over = 0
        self._reset_counters()

    def _reset_counters(self) -> None:
        self._worked = self._refused = 0
        self._busy_seconds = 0.0
        self._max_active, self._max_waiting = self._active, self._waiting

    def enter(self) -> float | None:
        """Take a semaphore, waiting in the queue if need be: the start time, or None when refused."""
        with self._condition:
            if self._active < self._semaphores:
                self._active += 1
            elif self._waiting < self._queue_depth:
                self._waiting += 1
                self._max_waiting = max(self._max_waiting, self._waiting)
                while not self._handed_over:
                    self._condition.wait()
                self._handed_over -= 1  # `leave` already counted this request as active
            else:
                self._refused += 1
                return None
            self._worked += 1
            self._max_active = max(self._max_active, self._active)
        return self._clock()

    def leave(self, started: float) -> None:
        """Give the semaphore back (to a waiting request if there is one)."""
        elapsed = self._clock() - started
        with self._condition:
            self._busy_seconds += elapsed
            if self._waiting:
                self._waiting -= 1
                self._handed_over += 1
                self._condition.notify()
            else:
                self._active -= 1

    def snapshot(self) -> dict[str, Any]:
        with self._condition:
            return {
                "semaphores": self._semaphores,
                "queue_depth": self._queue_depth,
                "worked": self._worked,  # requests that got a semaphore
                "refused": self._refused,  # answered 429 at once: every semaphore busy and the queue full
                "busy_seconds": round(self._busy_seconds, 6),  # semaphore-seconds worked (utilisation's numerator)
                "active": self._active,
                "waiting": self._waiting,
                "max_active": self._max_active,
                "max_waiting": self._max_waiting,
            }

    def reset(self) -> None:
        with self._condition:
            self._reset_counters()
