"""Unit tests of a real node's pieces: the session and capacity gates, per-user rate-limit windows, the quota
rule's window, the identity auth returns, and the options' checks."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import pytest

from voicebridge.emulator.auth import Authenticator
from voicebridge.emulator.faults import FaultEngine, parse_rules
from voicebridge.emulator.gates import CapacityGate, SessionGate, session_id_of
from voicebridge.emulator.options import EmulatorOptions, parse_tables

pytestmark = pytest.mark.unit


def wait_until(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + 10
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"never reached: {what}")
        time.sleep(0.005)


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (None, None),
        ("", None),
        ("JSESSIONID=ABC", "ABC"),
        ("BIGipServerpool=1.2.0000; JSESSIONID=ABC; glide_user_route=x", "ABC"),
        ("JSESSIONID=", None),
        ("XJSESSIONID=ABC", None),
    ],
)
def test_session_id_of_a_cookie_header(header: str | None, expected: str | None) -> None:
    assert session_id_of(header) == expected


def test_session_gate_admits_one_and_queues_up_to_the_limit() -> None:
    gate = SessionGate(queue_limit=1)
    assert gate.enter("s")  # runs
    waiter_done = threading.Event()

    def waiter() -> None:
        assert gate.enter("s")
        waiter_done.set()
        gate.leave("s")

    thread = threading.Thread(target=waiter)
    thread.start()
    wait_until(lambda: gate.snapshot()["waiting"] == 1, "the second request waits")
    assert not gate.enter("s")  # one running, one waiting: the third is refused
    assert gate.enter("other")  # another session is not affected
    gate.leave("other")
    assert not waiter_done.is_set()
    gate.leave("s")
    thread.join(timeout=10)
    assert waiter_done.is_set()
    snapshot = gate.snapshot()
    assert (snapshot["requests"], snapshot["waited"], snapshot["busy_202"], snapshot["waiting"]) == (3, 1, 1, 0)
    assert gate.enter("s")  # the session's state was released: a fresh start
    gate.leave("s")


def test_session_cookies_name_a_new_session_each_time() -> None:
    gate = SessionGate(queue_limit=10)
    first, second = gate.new_session_cookies(), gate.new_session_cookies()
    assert session_id_of(first[0].split(";")[0]) != session_id_of(second[0].split(";")[0])
    assert gate.snapshot()["issued"] == 2


def test_capacity_gate_hands_a_freed_semaphore_to_the_queue() -> None:
    now = [0.0]
    gate = CapacityGate(semaphores=1, queue_depth=1, clock=lambda: now[0])
    started = gate.enter()
    assert started == 0.0
    entered = threading.Event()

    def queued() -> None:
        assert gate.enter() is not None
        entered.set()

    thread = threading.Thread(target=queued)
    thread.start()
    wait_until(lambda: gate.snapshot()["waiting"] == 1, "a request queues")
    assert gate.enter() is None  # semaphore busy, queue full: refused at once
    now[0] = 2.5
    gate.leave(started)
    thread.join(timeout=10)
    assert entered.is_set()
    snapshot = gate.snapshot()
    assert (snapshot["active"], snapshot["waiting"], snapshot["worked"], snapshot["refused"]) == (1, 0, 2, 1)
    assert snapshot["busy_seconds"] == 2.5 and snapshot["max_active"] == 1 and snapshot["max_waiting"] == 1
    gate.reset()
    assert gate.snapshot()["worked"] == 0 and gate.snapshot()["active"] == 1  # live gauges survive a reset


def test_rate_limit_windows_are_per_user() -> None:
    now = [0.0]
    engine = FaultEngine(EmulatorOptions(rate_limit="2/3600"), clock=lambda: now[0], wall_clock=lambda: 1000.0)
    assert engine.rate_limit("a")[0] and engine.rate_limit("a")[0]
    now[0] = 600.0
    allowed, headers = engine.rate_limit("a")
    assert not allowed and headers["Retry-After"] == "3000" and headers["X-RateLimit-Reset"] == "4000"
    assert engine.rate_limit("b")[0] and engine.rate_limit("b")[0]  # b's own window, from b's first request
    assert engine.rate_limit("b")[1]["Retry-After"] == "3600"
    now[0] = 3600.0
    assert engine.rate_limit("a")[0] and not engine.rate_limit("b")[0]


def test_rate_limited_rule_lasts_for_its_window() -> None:
    now = [100.0]
    engine = FaultEngine(EmulatorOptions(), clock=lambda: now[0], wall_clock=lambda: 1000.0)
    engine.add_rules(parse_rules([{"path": "/table/", "action": "rate_limited", "retry_after": 30}]))
    first = engine.take_rule("GET", "/api/now/table/interaction")  # the first refusal starts the window
    assert first is not None and engine.quota_left(first) == 30.0
    now[0] = 120.0
    rule = engine.take_rule("GET", "/api/now/table/interaction")
    assert rule is not None and engine.quota_left(rule) == 10.0
    assert engine.quota_headers(engine.quota_left(rule))["Retry-After"] == "10"
    now[0] = 130.0
    assert engine.take_rule("GET", "/api/now/table/interaction") is None and engine.pending_rules() == []
    with pytest.raises(ValueError, match="retry_after > 0"):
        parse_rules([{"action": "rate_limited", "retry_after": 0}])
    with pytest.raises(ValueError, match="times does not apply"):
        parse_rules([{"action": "rate_limited", "times": 3}])


def test_filtered_read_rules_pass_over_other_routes() -> None:
    engine = FaultEngine(EmulatorOptions())
    engine.add_rules(parse_rules([{"action": "filtered_read"}]))
    assert engine.take_rule("POST", "/api/now/cs/voice-interactions", "cs") is None
    assert engine.take_rule("POST", "/oauth_token.do", "oauth") is None
    taken = engine.take_rule("GET", "/api/now/table/sys_cs_message", "table")
    assert taken is not None and taken.action == "filtered_read"


def test_auth_says_which_user_a_request_acts_as() -> None:
    auth = Authenticator(user="svc", password="p", client_id="c", client_secret="s", token_ttl=60)
    assert auth.check("Basic c3ZjOnA=") == "svc"  # svc:p
    machine = auth.grant({"grant_type": "client_credentials", "client_id": "c", "client_secret": "s"}, None)
    assert auth.check(f"Bearer {machine['access_token']}") == "svc"  # the OAuth application user
    form = {"grant_type": "refresh_token", "refresh_token": machine["refresh_token"], "client_id": "c"}
    refreshed = auth.grant({**form, "client_secret": "s"}, None)
    assert auth.check(f"Bearer {refreshed['access_token']}") == "svc"


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"port": 99999}, "port must be from 0 to 65535"),
        ({"port": -1}, "port must be from 0 to 65535"),
        ({"session_queue": -1}, "session_queue must be >= 0"),
        ({"semaphores": 0}, "semaphores must be >= 1"),
        ({"queue_depth": -1}, "queue_depth must be >= 0"),
        ({"filtered_reads": ("incident",)}, "unknown: incident"),
        ({"filtered_reads": "sys_cs_message"}, "tuple of table names"),
    ],
)
def test_options_name_what_is_wrong(options: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        EmulatorOptions(**options)  # type: ignore[arg-type]


def test_parse_tables() -> None:
    assert parse_tables("sys_cs_message, interaction,sys_cs_message") == ("sys_cs_message", "interaction")
    with pytest.raises(ValueError, match="comma list of interaction, sys_cs_conversation, sys_cs_message"):
        parse_tables(" , ")


def test_a_real_node_is_off_by_default_and_its_documented_defaults() -> None:
    options = EmulatorOptions()
    assert (options.sessions, options.filtered_reads, options.semaphores, options.rate_limit) == (False, (), None, None)
    assert (options.session_queue, options.queue_depth) == (10, 50)  # README "The emulator on its own"


def test_session_gate_never_lets_more_than_the_limit_wait() -> None:
    gate = SessionGate(queue_limit=2)
    running = [0]
    most_running = [0]
    lock = threading.Lock()

    def hammer() -> None:
        for _ in range(300):
            if gate.enter("s"):
                with lock:
                    running[0] += 1
                    most_running[0] = max(most_running[0], running[0])
                time.sleep(0)
                with lock:
                    running[0] -= 1
                gate.leave("s")

    threads = [threading.Thread(target=hammer) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    snapshot = gate.snapshot()
    assert most_running[0] == 1 and snapshot["max_waiting"] <= 2 and snapshot["waiting"] == 0
    assert snapshot["requests"] + snapshot["busy_202"] == 8 * 300
