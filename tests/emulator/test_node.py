"""What a real node does, over real HTTP: sessions (cookies, one transaction per session, 202 on overflow), the
capacity model (semaphores, queue, 429 Retry-After 1), per-user hourly rate limits and ACL-filtered reads.

Requests are held in flight with a ``sleep`` that blocks until the test lets go, and the tests wait for the
emulator's own gauges (``/__emulator/stats``) to show them held: nothing here depends on how fast anything runs.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import pytest
import requests

from voicebridge.emulator import EmulatorOptions, RunningEmulator, start_emulator

from .conftest import API, AUTH, create_interaction, message

pytestmark = pytest.mark.integration

TABLE = "/api/now/table"


class Hold:
    """A ``sleep`` that blocks every caller until ``release()``: requests stay in flight as long as a test wants."""

    def __init__(self) -> None:
        self._released = threading.Event()
        self._lock = threading.Lock()
        self.sleeping = 0

    def __call__(self, seconds: float) -> None:
        with self._lock:
            self.sleeping += 1
        self._released.wait(timeout=30)  # a bound only so that a failing test cannot hang the run

    def release(self) -> None:
        self._released.set()


def wait_until(condition: Callable[[], bool], what: str) -> None:
    """Wait for a state the emulator reaches on its own (a request held, a request queued)."""
    deadline = time.monotonic() + 15
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"never reached: {what}")
        time.sleep(0.01)


@pytest.fixture
def held() -> Iterator[tuple[Hold, Callable[..., RunningEmulator]]]:
    """(hold, start): ``start(**options)`` starts an emulator whose latency and delay rules wait on ``hold``."""
    hold = Hold()
    started: list[RunningEmulator] = []

    def start(**options: Any) -> RunningEmulator:
        running = start_emulator(EmulatorOptions(**options), sleep=hold)
        started.append(running)
        return running

    yield hold, start
    hold.release()
    for running in started:
        running.stop()


def post_messages(url: str, interaction_id: str, **kw: Any) -> requests.Response:
    return requests.post(f"{url}{API}/{interaction_id}/messages", json=[message()], auth=AUTH, timeout=30, **kw)


# ---- sessions ----


def test_sessions_set_cookies_a_client_sends_back(make_emulator: Any) -> None:
    emulator = make_emulator(sessions=True)
    with requests.Session() as http:  # keeps cookies, as the bridge's client once did
        http.auth = AUTH
        first = http.post(emulator.url + API, json={"userId": "+1"}, timeout=10)
        assert first.status_code == 200
        cookies = first.raw.headers.getlist("Set-Cookie")
        assert len(cookies) == 2 and cookies[0].startswith("JSESSIONID=") and "HttpOnly" in cookies[0]
        assert cookies[1].startswith("BIGipServer")
        assert set(http.cookies.keys()) == {"JSESSIONID", "BIGipServerpool_voicebridge"}
        again = http.get(emulator.url + TABLE + "/interaction", timeout=10)
        assert again.status_code == 200 and "Set-Cookie" not in again.headers  # the session goes on
    sessions = emulator.stats()["sessions"]
    assert sessions["issued"] == 1 and sessions["requests"] == 1 and sessions["busy_202"] == 0


def test_one_session_runs_one_request_at_a_time_and_overflow_gets_202(held: Any) -> None:
    hold, start = held
    emulator = start(sessions=True, session_queue=1)
    with requests.Session() as http:
        http.auth = AUTH
        interaction_id = create_interaction(http, emulator)
    session = {"Cookie": "JSESSIONID=0123456789ABCDEF0123456789ABCDEF"}
    emulator.add_fault_rules([{"path": "/messages$", "action": "delay", "delay_ms": 1}])  # holds the first
    with ThreadPoolExecutor(2) as pool:
        running = pool.submit(post_messages, emulator.url, interaction_id, headers=session)
        wait_until(lambda: hold.sleeping == 1, "the session's first request is being worked")
        queued = pool.submit(post_messages, emulator.url, interaction_id, headers=session)
        wait_until(lambda: emulator.stats()["sessions"]["waiting"] == 1, "a second request waits for the session")

        overflow = post_messages(emulator.url, interaction_id, headers=session)
        assert overflow.status_code == 202 and overflow.headers["Content-Type"].startswith("text/html")
        assert b'"result"' not in overflow.content and "Set-Cookie" not in overflow.headers
        assert emulator.store.count("sys_cs_message") == 0  # nothing applied: neither the 202 nor the queued one

        free = post_messages(emulator.url, interaction_id)  # no cookie: not serialised behind the session
        assert free.status_code == 200 and free.headers["Set-Cookie"].startswith("JSESSIONID=")
        assert emulator.store.count("sys_cs_message") == 1
        assert emulator.stats()["sessions"]["waiting"] == 1 and not queued.done()

        hold.release()
        assert running.result().status_code == 200 and queued.result().status_code == 200
    assert emulator.store.count("sys_cs_message") == 3
    stats = emulator.stats()
    assert stats["faults"] == {"delay": 1, "session_busy": 1}
    assert stats["by_status"] == {"200": 4, "202": 1}
    sessions = stats["sessions"]
    assert (sessions["requests"], sessions["waited"], sessions["busy_202"], sessions["max_waiting"]) == (2, 1, 1, 1)


def test_session_queue_zero_refuses_any_concurrent_request(held: Any) -> None:
    hold, start = held
    emulator = start(sessions=True, session_queue=0, latency_ms=1)
    session = {"Cookie": "other=1; JSESSIONID=ABC"}
    with ThreadPoolExecutor(1) as pool:
        running: Future[requests.Response] = pool.submit(
            requests.post, emulator.url + API, json={"userId": "1"}, auth=AUTH, headers=session, timeout=30
        )
        wait_until(lambda: hold.sleeping == 1, "the session's request is being worked")
        refused = requests.post(emulator.url + API, json={"userId": "2"}, auth=AUTH, headers=session, timeout=10)
        assert refused.status_code == 202
        hold.release()
        assert running.result().status_code == 200
    assert emulator.store.count("interaction") == 1


def test_nothing_of_a_real_node_is_on_by_default(emulator: RunningEmulator, session: requests.Session) -> None:
    response = session.post(emulator.url + API, json={"userId": "1"}, timeout=10)
    assert response.status_code == 200 and "Set-Cookie" not in response.headers
    stats = emulator.stats()
    assert "sessions" not in stats and "capacity" not in stats


# ---- capacity ----


def test_semaphores_queue_and_refuse_the_rest_at_once(held: Any) -> None:
    hold, start = held
    emulator = start(semaphores=2, queue_depth=2, latency_ms=1)

    def create(n: int) -> requests.Response:
        return requests.post(emulator.url + API, json={"userId": str(n)}, auth=AUTH, timeout=30)

    with ThreadPoolExecutor(4) as pool:
        admitted = [pool.submit(create, n) for n in range(4)]
        wait_until(
            lambda: hold.sleeping == 2 and emulator.stats()["capacity"]["waiting"] == 2,
            "two requests worked and two queued",
        )
        # The server holds these 4 connections and still answers more: each refused at once, nothing applied.
        with ThreadPoolExecutor(3) as extra_pool:
            refused = list(extra_pool.map(create, range(4, 7)))
        read = requests.get(emulator.url + TABLE + "/interaction", auth=AUTH, timeout=10)
        for response in [*refused, read]:
            assert response.status_code == 429 and response.headers["Retry-After"] == "1"
            assert response.json()["status"] == "failure"
        assert emulator.store.count("interaction") == 0
        hold.release()
        assert [future.result().status_code for future in admitted] == [200] * 4
    assert emulator.store.count("interaction") == 4
    capacity = emulator.stats()["capacity"]
    assert (capacity["worked"], capacity["refused"], capacity["max_active"], capacity["max_waiting"]) == (4, 4, 2, 2)
    assert capacity["active"] == 0 and capacity["waiting"] == 0 and capacity["busy_seconds"] > 0
    assert emulator.stats()["faults"] == {"semaphores_exhausted": 4}


def test_capacity_without_a_queue_and_reset(held: Any) -> None:
    hold, start = held
    emulator = start(semaphores=1, queue_depth=0, latency_ms=1)
    with ThreadPoolExecutor(1) as pool:
        running = pool.submit(requests.post, emulator.url + API, json={"userId": "1"}, auth=AUTH, timeout=30)
        wait_until(lambda: hold.sleeping == 1, "the one semaphore is taken")
        assert requests.post(emulator.url + API, json={"userId": "2"}, auth=AUTH, timeout=10).status_code == 429
        hold.release()
        assert running.result().status_code == 200
    assert requests.post(emulator.url + "/__emulator/reset", timeout=10).status_code == 200
    capacity = requests.get(emulator.url + "/__emulator/stats", timeout=10).json()["capacity"]
    assert capacity["refused"] == 0 and capacity["worked"] == 0 and capacity["semaphores"] == 1


# ---- rate limits as ServiceNow has them ----


def bearer_token(emulator: RunningEmulator) -> str:
    form = {"grant_type": "client_credentials", "client_id": "voicebridge", "client_secret": "voicebridge"}
    return str(requests.post(emulator.url + "/oauth_token.do", data=form, timeout=10).json()["access_token"])


def test_hourly_rate_limit_counts_the_user_and_says_when_it_resets(make_emulator: Any) -> None:
    emulator = make_emulator(rate_limit="2/3600")
    token = bearer_token(emulator)
    basic = requests.post(emulator.url + API, json={"userId": "1"}, auth=AUTH, timeout=10)
    oauth = requests.post(
        emulator.url + API, json={"userId": "2"}, headers={"Authorization": f"Bearer {token}"}, timeout=10
    )
    assert [basic.status_code, oauth.status_code] == [200, 200]
    assert basic.headers["X-RateLimit-Remaining"] == "1" and oauth.headers["X-RateLimit-Remaining"] == "0"
    refused = requests.post(emulator.url + API, json={"userId": "3"}, auth=AUTH, timeout=10)
    assert refused.status_code == 429 and refused.json()["error"]["message"] == "Rate limit exceeded"
    retry_after = int(refused.headers["Retry-After"])
    assert 3000 < retry_after <= 3600  # the rest of the hour, not one second
    assert refused.headers["X-RateLimit-Limit"] == "2" and refused.headers["X-RateLimit-Remaining"] == "0"
    assert abs(int(refused.headers["X-RateLimit-Reset"]) - (time.time() + retry_after)) < 60
    assert refused.headers["X-RateLimit-Rule"]
    assert emulator.store.count("interaction") == 2
    assert emulator.stats()["faults"] == {"rate_limit": 1}


def test_rate_limited_rule_is_a_quota_window(emulator: RunningEmulator, session: requests.Session) -> None:
    interaction_id = create_interaction(session, emulator)
    assert post_messages(emulator.url, interaction_id).status_code == 200
    emulator.add_fault_rules([{"path": "/table/sys_cs_message$", "action": "rate_limited", "retry_after": 1800}])
    reads = [session.get(emulator.url + TABLE + "/sys_cs_message", timeout=10) for _ in range(3)]
    for response in reads:  # every read-back in the window is throttled, not just the first
        assert response.status_code == 429 and response.headers["X-RateLimit-Remaining"] == "0"
        assert 1700 < int(response.headers["Retry-After"]) <= 1800
        assert {"X-RateLimit-Limit", "X-RateLimit-Reset", "X-RateLimit-Rule"} <= set(response.headers)
    assert post_messages(emulator.url, interaction_id).status_code == 200  # other paths are not limited
    assert emulator.pending_faults()[0]["action"] == "rate_limited"
    assert emulator.stats()["faults"] == {"rate_limited": 3}


# ---- ACL-filtered reads ----


def test_filtered_reads_answer_200_with_no_rows(make_emulator: Any) -> None:
    emulator = make_emulator(filtered_reads=("sys_cs_message",))
    with requests.Session() as http:
        http.auth = AUTH
        interaction_id = create_interaction(http, emulator)
        assert post_messages(emulator.url, interaction_id).status_code == 200
        assert emulator.store.count("sys_cs_message") == 1  # stored, only invisible
        listed = http.get(emulator.url + TABLE + "/sys_cs_message", params={"sysparm_query": "sequence=1"})
        assert listed.status_code == 200 and listed.json() == {"result": []}
        assert listed.headers["X-Total-Count"] == "0"
        sys_id = emulator.store.rows("sys_cs_message", "")[0]["sys_id"]
        by_id = http.get(f"{emulator.url}{TABLE}/sys_cs_message/{sys_id}")
        assert by_id.status_code == 404 and by_id.json()["error"]["message"] == "No Record found"
        bad = http.get(emulator.url + TABLE + "/sys_cs_message", params={"sysparm_query": "nope=1"})
        assert bad.status_code == 400  # the query is still checked
        other = http.get(emulator.url + TABLE + "/interaction")
        assert other.status_code == 200 and len(other.json()["result"]) == 1
    assert emulator.stats()["faults"] == {"filtered_read": 3}


def test_filtered_read_rule_filters_only_the_reads_it_matches(
    emulator: RunningEmulator, session: requests.Session
) -> None:
    interaction_id = create_interaction(session, emulator)
    emulator.add_fault_rules([{"path": "", "action": "filtered_read"}])  # matches everything...
    assert post_messages(emulator.url, interaction_id).status_code == 200  # ...but only a read is filtered
    assert emulator.pending_faults()[0]["remaining"] == 1
    filtered = session.get(emulator.url + TABLE + "/sys_cs_message", timeout=10)
    assert filtered.status_code == 200 and filtered.json()["result"] == [] and filtered.headers["X-Total-Count"] == "0"
    visible = session.get(emulator.url + TABLE + "/sys_cs_message", timeout=10)
    assert len(visible.json()["result"]) == 1 and visible.headers["X-Total-Count"] == "1"
    assert emulator.pending_faults() == []


def test_filtered_contacts_hide_those_contacts_records_from_every_read() -> None:
    """A row-level read ACL: the matching contact's interaction, conversation and messages read as absent, other
    contacts' as usual; nothing stored is lost."""
    from voicebridge.emulator import EmulatorOptions, start_emulator

    with start_emulator(EmulatorOptions(filtered_contacts="^hidden-")) as emulator:
        auth = ("admin", "admin")
        api = f"{emulator.url}/api/now/v1/cs/voice-interactions"
        for contact in ("hidden-1", "seen-1"):
            interaction = requests.post(
                api, json={"userId": "+14155550100", "clientSessionId": contact}, auth=auth, timeout=10
            ).json()["result"]["interactionId"]
            requests.post(
                f"{api}/{interaction}/conversation",
                json={"userId": "+14155550100", "clientSessionId": contact},
                auth=auth,
                timeout=10,
            ).raise_for_status()
            message = {
                "id": f"{contact}-m1",
                "content": "hello",
                "participantId": "AGENT",
                "beginOffsetMillis": 0,
                "endOffsetMillis": 1,
                "isInternalMessage": False,
                "isEvent": False,
            }
            requests.post(f"{api}/{interaction}/messages", json=[message], auth=auth, timeout=10).raise_for_status()

        def read(table: str, query: str = "") -> list[dict[str, str]]:
            response = requests.get(
                f"{emulator.url}/api/now/table/{table}", params={"sysparm_query": query}, auth=auth, timeout=10
            )
            assert response.status_code == 200
            rows: list[dict[str, str]] = response.json()["result"]
            assert response.headers["X-Total-Count"] == str(len(rows))
            return rows

        assert [row["client_session_id"] for row in read("interaction")] == ["seen-1"]
        assert len(read("sys_cs_conversation")) == 1
        assert [row["source_message_id"] for row in read("sys_cs_message")] == ["seen-1-m1"]
        hidden = emulator.store.rows("interaction", "client_session_id=hidden-1")[0]["sys_id"]
        assert (
            requests.get(f"{emulator.url}/api/now/table/interaction/{hidden}", auth=auth, timeout=10).status_code == 404
        )
        assert emulator.store.count("sys_cs_message") == 2  # stored, only unseen
