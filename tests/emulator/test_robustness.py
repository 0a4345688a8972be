"""Property-based fuzzing (no 500 of the server's own, no half-applied request), concurrency, lenient replay
of every request sample in the API reference, and the CLI subprocess."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from voicebridge.emulator import EmulatorOptions, RunningEmulator, start_emulator

from .conftest import API, AUTH, DATA, create_interaction, message

pytestmark = pytest.mark.integration

SAVED = "Voice conversation transcript has been successfully saved. Conversation id: "


@pytest.fixture(scope="module")
def shared() -> Iterator[tuple[RunningEmulator, requests.Session, str]]:
    """One emulator for the fuzzers (hypothesis reruns the test body many times)."""
    with start_emulator(EmulatorOptions()) as emulator, requests.Session() as http:
        http.auth = AUTH
        yield emulator, http, create_interaction(http, emulator)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12,
)
field_values = st.one_of(
    json_values,
    st.sampled_from(["AGENT", "CUSTOMER", "agent", "NEUTRAL", "positive", "true", "False", "null", "-1", "12", "1.0"]),
    st.integers(-5, 10**6),
)
MESSAGE_FIELDS = (
    "content",
    "participantId",
    "beginOffsetMillis",
    "endOffsetMillis",
    "id",
    "isEvent",
    "isInternalMessage",
    "sentiment",
    "loudnessScore",
    "attributes",
)
message_like = st.fixed_dictionaries(
    {},
    optional=dict.fromkeys(MESSAGE_FIELDS, field_values),
)
bodies = st.one_of(
    st.lists(st.one_of(message_like, st.builds(lambda: message())), max_size=5),
    json_values,
    st.binary(max_size=200),
)
headers = st.fixed_dictionaries(
    {},
    optional={
        "Content-Type": st.sampled_from(
            ["application/json", "application/xml", "text/plain", "application/json; charset=utf-8", "", "*/*"]
        ),
        "Accept": st.sampled_from(["application/json", "application/xml", "text/html", "*/*", "", "application/*"]),
    },
)
endpoints = st.sampled_from(["messages", "transcript", "conversation", "state", "create", "transcript-body"])


def _send(
    http: requests.Session,
    emulator: RunningEmulator,
    interaction_id: str,
    endpoint: str,
    body: Any,
    extra: dict[str, str],
) -> requests.Response:
    if isinstance(body, bytes):
        data = body
    elif endpoint == "transcript-body" and isinstance(body, list):
        data = json.dumps({"interactionId": interaction_id, "transcript": body}).encode()
    else:
        data = json.dumps(body).encode()
    url = {
        "messages": f"{API}/{interaction_id}/messages",
        "transcript": f"{API}/{interaction_id}/transcript",
        "conversation": f"{API}/{interaction_id}/conversation",
        "state": f"{API}/{interaction_id}/state",
        "create": API,
        "transcript-body": f"{API}/transcript",
    }[endpoint]
    method = "PATCH" if endpoint == "state" else "POST"
    return http.request(
        method, emulator.url + url, data=data, headers={"Content-Type": "application/json", **extra}, timeout=10
    )


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
)
@given(endpoint=endpoints, body=bodies, extra=headers)
def test_fuzzed_bodies_never_500_nor_half_apply(
    shared: tuple[RunningEmulator, requests.Session, str], endpoint: str, body: Any, extra: dict[str, str]
) -> None:
    emulator, http, interaction_id = shared
    if endpoint == "state" and isinstance(body, dict) and body.get("state") == "closed_complete":
        body = {**body, "state": "closed"}  # keep the shared interaction open
    before = emulator.store.counts()
    response = _send(http, emulator, interaction_id, endpoint, body, extra)
    assert response.status_code != 500, response.text
    assert re.fullmatch(r"[0-9a-f]{32}", response.headers["X-Transaction-ID"])
    after = emulator.store.counts()
    if response.status_code != 200:
        assert after == before, response.text
        if response.headers.get("Content-Type", "").startswith("application/json"):
            assert response.json()["status"] == "failure"
    elif endpoint == "messages":
        assert after["sys_cs_message"] - before["sys_cs_message"] == len(body)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    name=st.sampled_from(["Accept", "Content-Type", "Authorization", "X-Anything", "Transfer-Encoding-X"]),
    value=st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=60),
    path=st.sampled_from([API, "/api/now/table/sys_cs_message", "/oauth_token.do", "/api/now/v9/cs/x"]),
)
def test_fuzzed_headers_never_500(
    shared: tuple[RunningEmulator, requests.Session, str], name: str, value: str, path: str
) -> None:
    emulator, http, _ = shared
    response = http.post(emulator.url + path, data=b'{"userId": "1"}', headers={name: value.strip()}, timeout=10)
    assert response.status_code != 500 and response.headers["X-Transaction-ID"]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(query=st.text(st.sampled_from(list("^=!,ORDERBYDESCINsequencpaytl_01AGENT")), max_size=40))
def test_fuzzed_table_queries_never_500(shared: tuple[RunningEmulator, requests.Session, str], query: str) -> None:
    emulator, http, _ = shared
    response = http.get(emulator.url + "/api/now/table/sys_cs_message", params={"sysparm_query": query}, timeout=10)
    assert response.status_code in (200, 400), response.text


def test_32_concurrent_clients_lose_nothing(emulator: RunningEmulator) -> None:
    clients, requests_each, batch = 32, 8, 5
    with requests.Session() as http:
        http.auth = AUTH
        ids = [create_interaction(http, emulator) for _ in range(clients)]
    failures: list[str] = []

    def client(index: int) -> None:
        with requests.Session() as http:
            http.auth = AUTH
            url = f"{emulator.url}{API}/{ids[index]}/messages"
            # send batches newest-first so every request after the first renumbers
            for n in reversed(range(requests_each)):
                body = [
                    message(f"{index}-{n}-{k}", begin=(n * batch + k) * 100, end=(n * batch + k) * 100 + 50)
                    for k in range(batch)
                ]
                response = http.post(url, json=body, timeout=30)
                if response.status_code != 200:
                    failures.append(response.text)

    threads = [threading.Thread(target=client, args=(index,)) for index in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []
    assert emulator.store.count("sys_cs_message") == clients * requests_each * batch
    for index, interaction_id in enumerate(ids):
        rows = emulator.store.transcript(interaction_id)
        expected = [f"{index}-{n}-{k}" for n in range(requests_each) for k in range(batch)]
        assert [row["payload"] for row in rows] == expected
        assert [row["sequence"] for row in rows] == [str(s) for s in range(1, len(expected) + 1)]


# Every request sample of servicenow-voice-interaction-api.txt, copied verbatim (quirks included) into data/.
SAMPLE_IDS = {
    "messages": "86837a386f0331003b3c498f5d3ee4ca",
    "conversation": "7662cb4721751ea0b6e8dda1b27b131f",
    "transcript": "e67a6c30c7233010967a34c91dc26068",
}
SAMPLES = [
    ("POST", "/api/now/v1/cs/voice-interactions", "ref_create_interaction.json"),
    ("POST", f"/api/now/v1/cs/voice-interactions/{SAMPLE_IDS['conversation']}/conversation", "ref_conversation.json"),
    ("POST", f"/api/now/v1/cs/voice-interactions/{SAMPLE_IDS['messages']}/messages", "ref_messages.json"),
    ("POST", "/api/now/v1/cs/voice-interactions/transcript", "ref_transcript.json"),
    ("PATCH", f"/api/now/v1/cs/voice-interactions/{SAMPLE_IDS['messages']}/state", "ref_state.json"),
]


def _sample_emulator(lenient: bool) -> RunningEmulator:
    from voicebridge.emulator.validation import NewInteraction

    emulator = start_emulator(EmulatorOptions(lenient=lenient))
    for sys_id in SAMPLE_IDS.values():
        emulator.store.create_interaction(NewInteraction(user_id="+14089178877"), sys_id=sys_id)
    return emulator


def test_lenient_mode_replays_every_reference_sample() -> None:
    with _sample_emulator(lenient=True) as emulator, requests.Session() as http:
        http.auth = AUTH
        for method, path, name in SAMPLES:
            body = (DATA / name).read_bytes()
            headers = {"Content-Type": "application/json", "Accept": "application/json"}
            response = http.request(method, emulator.url + path, data=body, headers=headers, timeout=10)
            assert response.status_code == 200, (name, response.text)
        rows = emulator.store.transcript(SAMPLE_IDS["messages"])
        assert (
            len(rows) == 5
            and rows[0]["payload"] == "This\u202fis\u202fJohn.\u202fHow\u202fcan\u202fI\u202fhelp\u202fyou?"
        )
        assert rows[0]["attributes"] and rows[0]["loudness_score"] == "" and rows[4]["is_event"] == "false"
        transcript = emulator.store.transcript(SAMPLE_IDS["transcript"])
        assert [row["begin_offset_millis"] for row in transcript] == ["100000", "200000"]  # begin > end accepted
        interaction = emulator.store.get("interaction", SAMPLE_IDS["messages"])
        assert interaction and interaction["recording_url"] == "https: //zoom_instance/rec/QbF7XmPFHPlX1LG"
        assert emulator.store.count("interaction") == 4


def test_strict_mode_rejects_the_quirky_samples() -> None:
    with _sample_emulator(lenient=False) as emulator, requests.Session() as http:
        http.auth = AUTH
        statuses = {}
        for method, path, name in SAMPLES:
            response = http.request(method, emulator.url + path, data=(DATA / name).read_bytes(), timeout=10)
            statuses[name] = response.status_code
        assert statuses == {
            "ref_create_interaction.json": 200,
            "ref_conversation.json": 400,  # U+202F outside strings
            "ref_messages.json": 400,  # trailing comma
            "ref_transcript.json": 200,
            "ref_state.json": 400,  # a typographic quote after the object
        }


def test_cli_subprocess_prints_the_listening_line(tmp_path: Path) -> None:
    src = Path(__file__).resolve().parents[2] / "src"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(src), os.environ.get("PYTHONPATH")]))}
    db = tmp_path / "emulator.sqlite"
    command = [sys.executable, "-m", "voicebridge.cli", "emulator", "--port", "0", "--db", str(db), "--seed", "1"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        match = re.fullmatch(r"listening on (http://127\.0\.0\.1:\d+)\n", line)
        assert match, line
        response = requests.post(match.group(1) + API, json={"userId": "1"}, auth=AUTH, timeout=10)
        assert response.status_code == 200
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0
        assert process.stdout.read() == ""  # exactly one line
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert db.exists()
