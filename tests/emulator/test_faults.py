"""Fault injection over real HTTP: scripted rules (every action), random seeded faults, rate limit, control API."""

from __future__ import annotations

import http.client
import json
import socket
import time
from typing import Any

import pytest
import requests

from voicebridge.emulator import RunningEmulator

from .conftest import API, AUTH, create_interaction, message

pytestmark = pytest.mark.integration

MESSAGES_PATH = r"/voice-interactions/[0-9a-f]{32}/messages$"


def post_messages(
    session: requests.Session, emulator: RunningEmulator, interaction_id: str, **kw: Any
) -> requests.Response:
    return session.post(f"{emulator.url}{API}/{interaction_id}/messages", json=[message()], **kw)


def test_status_rule_is_not_applied(emulator: RunningEmulator, session: requests.Session) -> None:
    interaction_id = create_interaction(session, emulator)
    emulator.add_fault_rules([{"method": "POST", "path": MESSAGES_PATH, "action": "status", "status": 503, "times": 2}])
    for _ in range(2):
        response = post_messages(session, emulator, interaction_id)
        assert response.status_code == 503 and response.json()["status"] == "failure"
        assert response.headers["X-Transaction-ID"]
    assert emulator.store.count("sys_cs_message") == 0
    assert post_messages(session, emulator, interaction_id).status_code == 200  # rule used up
    assert emulator.store.count("sys_cs_message") == 1


def test_429_rule_with_and_without_retry_after(emulator: RunningEmulator, session: requests.Session) -> None:
    interaction_id = create_interaction(session, emulator)
    emulator.add_fault_rules(
        [
            {"path": "/messages$", "action": "status", "status": 429, "retry_after": 2},
            {"path": "/messages$", "action": "status", "status": 429},
        ]
    )
    first = post_messages(session, emulator, interaction_id)
    assert first.status_code == 429 and first.headers["Retry-After"] == "2"
    assert first.json()["error"]["message"] == "Rate limit exceeded"
    second = post_messages(session, emulator, interaction_id)
    assert second.status_code == 429 and "Retry-After" not in second.headers  # a semaphore-style 429


def test_method_filter_and_order(emulator: RunningEmulator, session: requests.Session) -> None:
    emulator.add_fault_rules([{"method": "PATCH", "path": "", "action": "status", "status": 500}])
    assert session.post(emulator.url + API, json={"userId": "1"}).status_code == 200
    assert emulator.pending_faults()[0]["remaining"] == 1


def test_ambiguous_500_applies(emulator: RunningEmulator, session: requests.Session) -> None:
    interaction_id = create_interaction(session, emulator)
    emulator.add_fault_rules([{"path": "/messages$", "action": "ambiguous_500"}])
    response = post_messages(session, emulator, interaction_id)
    assert response.status_code == 500 and response.json()["status"] == "failure"
    assert emulator.store.count("sys_cs_message") == 1


@pytest.mark.parametrize(("action", "applied"), [("ambiguous_drop", 1), ("drop", 0)])
def test_drops_close_without_answering(
    emulator: RunningEmulator, session: requests.Session, action: str, applied: int
) -> None:
    interaction_id = create_interaction(session, emulator)
    emulator.add_fault_rules([{"path": "/messages$", "action": action}])
    with pytest.raises(requests.ConnectionError):
        post_messages(session, emulator, interaction_id)
    assert emulator.store.count("sys_cs_message") == applied
    assert emulator.stats()["by_status"]["dropped"] == 1
    assert post_messages(session, emulator, interaction_id).status_code == 200  # a new connection works


def test_delay_lets_a_client_time_out(emulator: RunningEmulator, session: requests.Session) -> None:
    interaction_id = create_interaction(session, emulator)
    emulator.add_fault_rules([{"path": "/messages$", "action": "delay", "delay_ms": 600}])
    with pytest.raises(requests.ReadTimeout):
        post_messages(session, emulator, interaction_id, timeout=0.2)
    deadline = time.monotonic() + 3
    while emulator.store.count("sys_cs_message") == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert emulator.store.count("sys_cs_message") == 1  # handled normally after the delay


@pytest.mark.parametrize(
    ("action", "status", "check"),
    [
        ("html", 200, lambda r: r.headers["Content-Type"].startswith("text/html") and b"<html>" in r.content),
        ("accepted_202", 202, lambda r: r.content == b""),
        ("session_busy", 202, lambda r: r.headers["Content-Type"].startswith("text/html") and b"session" in r.content),
        (
            "failure_sentence",
            200,
            lambda r: r.json() == {"result": "Exception occurred while saving the transcript"},
        ),
    ],
)
def test_unapplied_odd_answers(
    emulator: RunningEmulator, session: requests.Session, action: str, status: int, check: Any
) -> None:
    interaction_id = create_interaction(session, emulator)
    emulator.add_fault_rules([{"path": "/messages$", "action": action}])
    response = post_messages(session, emulator, interaction_id)
    assert response.status_code == status and check(response)
    assert response.headers["X-Transaction-ID"]
    assert emulator.store.count("sys_cs_message") == 0


def test_truncated_body_after_applying(emulator: RunningEmulator, session: requests.Session) -> None:
    interaction_id = create_interaction(session, emulator)
    emulator.add_fault_rules([{"path": "/messages$", "action": "truncated"}])
    response = post_messages(session, emulator, interaction_id)
    assert response.status_code == 200 and int(response.headers["Content-Length"]) == len(response.content)
    with pytest.raises(ValueError):
        response.json()
    assert emulator.store.count("sys_cs_message") == 1


def test_rules_over_http_and_stats(emulator: RunningEmulator, session: requests.Session) -> None:
    control = emulator.url + "/__emulator"
    rules = {
        "rules": [{"method": "POST", "path": "voice-interactions$", "times": 2, "action": "status", "status": 502}]
    }
    added = requests.post(control + "/faults", json=rules)
    assert added.status_code == 200 and added.json() == {"added": 1, "pending": 1}
    assert requests.get(control + "/faults").json()["rules"][0]["remaining"] == 2
    bad = requests.post(control + "/faults", json={"rules": [{"action": "nope"}]})
    assert bad.status_code == 400 and bad.json()["status"] == "failure"
    assert session.post(emulator.url + API, json={"userId": "1"}).status_code == 502
    assert requests.delete(control + "/faults").json() == {"cleared": 1}
    assert session.post(emulator.url + API, json={"userId": "1"}).status_code == 200
    stats = requests.get(control + "/stats").json()
    assert stats["total"] == 2 and stats["by_route"] == {"POST /cs/voice-interactions": 2}
    assert stats["by_status"] == {"502": 1, "200": 1} and stats["faults"] == {"status": 1}
    assert stats == emulator.stats()
    assert requests.post(control + "/reset").status_code == 200
    assert emulator.stats()["total"] == 0 and emulator.store.count("interaction") == 1  # data kept
    assert requests.get(control + "/nope").status_code == 404


def test_rules_apply_to_the_token_endpoint(emulator: RunningEmulator) -> None:
    emulator.add_fault_rules([{"path": "^/oauth_token.do$", "action": "status", "status": 503}])
    form = {"grant_type": "client_credentials", "client_id": "voicebridge", "client_secret": "voicebridge"}
    assert requests.post(emulator.url + "/oauth_token.do", data=form).status_code == 503
    assert requests.post(emulator.url + "/oauth_token.do", data=form).status_code == 200


def test_unauthenticated_requests_do_not_consume_rules(emulator: RunningEmulator) -> None:
    emulator.add_fault_rules([{"path": "", "action": "status", "status": 503}])
    assert requests.post(emulator.url + API, json={"userId": "1"}).status_code == 401
    assert emulator.pending_faults()[0]["remaining"] == 1


def outcomes(emulator: RunningEmulator, count: int) -> list[Any]:
    results: list[Any] = []
    with requests.Session() as http:
        http.auth = AUTH
        for n in range(count):
            try:
                results.append(http.post(emulator.url + API, json={"userId": str(n)}, timeout=5).status_code)
            except requests.ConnectionError:
                results.append("dropped")
    return results


def test_random_faults_are_deterministic_with_a_seed(make_emulator: Any) -> None:
    options = {"seed": 42, "fault_rate": 0.3, "ambiguous_rate": 0.2, "latency_ms": 1}
    first, second = make_emulator(**options), make_emulator(**options)
    seen = outcomes(first, 40)
    assert seen == outcomes(second, 40)
    assert {429, 500, 502, 503} & set(seen) and 200 in seen and "dropped" in seen
    # applied = successes + ambiguous outcomes; the random status faults stored nothing
    stats = first.stats()["faults"]
    applied = seen.count(200) + stats.get("ambiguous_500", 0) + stats.get("ambiguous_drop", 0)
    assert first.store.count("interaction") == applied
    throttled = make_emulator(seed=1, fault_rate=1.0, fault_statuses=(429,))
    with requests.Session() as http:
        response = http.post(throttled.url + API, json={"userId": "1"}, auth=AUTH)
    assert response.status_code == 429 and response.headers["Retry-After"] == "1"
    assert {"X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset"} <= set(response.headers)


def test_random_faults_spare_table_and_token(make_emulator: Any) -> None:
    emulator = make_emulator(seed=3, fault_rate=1.0)
    with requests.Session() as http:
        http.auth = AUTH
        assert http.get(emulator.url + "/api/now/table/interaction").status_code == 200
        form = {"grant_type": "client_credentials", "client_id": "voicebridge", "client_secret": "voicebridge"}
        assert requests.post(emulator.url + "/oauth_token.do", data=form).status_code == 200
        assert http.post(emulator.url + API, json={"userId": "1"}).status_code in (429, 500, 502, 503)


def test_latency(make_emulator: Any) -> None:
    emulator = make_emulator(latency_ms=150, seed=1)
    with requests.Session() as http:
        start = time.perf_counter()
        assert http.post(emulator.url + API, json={"userId": "1"}, auth=AUTH).status_code == 200
        assert 0.15 <= time.perf_counter() - start < 1.0


def test_rate_limit_rule(make_emulator: Any) -> None:
    emulator = make_emulator(rate_limit="3/60")
    statuses = []
    with requests.Session() as http:
        http.auth = AUTH
        for n in range(5):
            response = http.post(emulator.url + API, json={"userId": str(n)})
            statuses.append(response.status_code)
            assert response.headers["X-RateLimit-Limit"] == "3"
    assert statuses == [200, 200, 200, 429, 429]
    assert response.headers["X-RateLimit-Remaining"] == "0" and 1 <= int(response.headers["Retry-After"]) <= 60
    assert int(response.headers["X-RateLimit-Reset"]) > time.time()
    assert emulator.store.count("interaction") == 3


def test_malformed_http_gets_an_envelope(emulator: RunningEmulator) -> None:
    with socket.create_connection((emulator.host, emulator.port), timeout=5) as raw:
        raw.sendall(b"BREW /pot HTCPCP/1.0\r\n\r\n")
        data = b""
        while chunk := raw.recv(65536):  # the server closes the connection after answering
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400") and b"X-Transaction-ID" in head
    assert json.loads(body)["status"] == "failure"
    connection = http.client.HTTPConnection(emulator.host, emulator.port, timeout=5)
    connection.request("FROB", API)
    assert connection.getresponse().status == 400
