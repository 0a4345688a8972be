"""Authentication (basic, OAuth grants, bearer expiry) and the Table API read-back over real HTTP."""

from __future__ import annotations

import time
from typing import Any

import pytest
import requests

from voicebridge.emulator import RunningEmulator
from voicebridge.emulator.tableclient import read_transcript

from .conftest import API, AUTH, create_interaction, message

pytestmark = pytest.mark.integration

CLIENT = {"client_id": "voicebridge", "client_secret": "voicebridge"}


def token(emulator: RunningEmulator, **form: str) -> requests.Response:
    return requests.post(emulator.url + "/oauth_token.do", data={**CLIENT, **form}, timeout=10)


def bearer(value: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {value}"}


def test_basic_auth(emulator: RunningEmulator) -> None:
    url = emulator.url + API
    none = requests.post(url, json={"userId": "1"})
    assert none.status_code == 401 and none.headers["WWW-Authenticate"] == 'Basic realm="Service-now"'
    assert none.json()["error"] == {
        "message": "User Not Authenticated",
        "detail": "Required to provide Auth information",
    }
    assert none.headers["X-Transaction-ID"]
    wrong = requests.post(url, json={"userId": "1"}, auth=("admin", "nope"))
    assert wrong.status_code == 401 and wrong.json()["error"]["message"] == "User Not Authenticated"
    garbage = requests.post(url, json={"userId": "1"}, headers={"Authorization": "Basic !!!"})
    assert garbage.status_code == 401
    assert requests.post(url, json={"userId": "1"}, auth=AUTH).status_code == 200
    assert emulator.store.count("interaction") == 1


def test_custom_credentials(make_emulator: Any) -> None:
    emulator = make_emulator(user="svc", password="s3cret", client_id="cid", client_secret="csecret")
    assert requests.post(emulator.url + API, json={"userId": "1"}, auth=AUTH).status_code == 401
    assert requests.post(emulator.url + API, json={"userId": "1"}, auth=("svc", "s3cret")).status_code == 200
    form = {"grant_type": "client_credentials", "client_id": "cid", "client_secret": "csecret"}
    assert requests.post(emulator.url + "/oauth_token.do", data=form).status_code == 200


def test_oauth_grants_and_bearer(emulator: RunningEmulator) -> None:
    for form in [
        {"grant_type": "client_credentials"},
        {"grant_type": "password", "username": "admin", "password": "admin"},
    ]:
        response = token(emulator, **form)
        assert response.status_code == 200, response.text
        payload = response.json()
        assert set(payload) == {"access_token", "refresh_token", "scope", "token_type", "expires_in"}
        assert (payload["scope"], payload["token_type"], payload["expires_in"]) == ("useraccount", "Bearer", 1800)
        used = requests.post(emulator.url + API, json={"userId": "1"}, headers=bearer(payload["access_token"]))
        assert used.status_code == 200
    refreshed = token(emulator, grant_type="refresh_token", refresh_token=payload["refresh_token"])
    assert refreshed.status_code == 200 and refreshed.json()["access_token"] != payload["access_token"]
    # client authentication with HTTP basic instead of form fields
    basic = requests.post(
        emulator.url + "/oauth_token.do", data={"grant_type": "client_credentials"}, auth=("voicebridge", "voicebridge")
    )
    assert basic.status_code == 200
    assert requests.post(emulator.url + API, json={"userId": "1"}, headers=bearer("made-up")).status_code == 401


@pytest.mark.parametrize(
    ("form", "status", "error"),
    [
        ({"grant_type": "client_credentials", "client_secret": "wrong"}, 401, "access_denied"),
        ({"grant_type": "client_credentials", "client_id": "other"}, 401, "access_denied"),
        ({"grant_type": "password", "username": "admin", "password": "wrong"}, 401, "access_denied"),
        ({"grant_type": "refresh_token", "refresh_token": "unknown"}, 401, "access_denied"),
        ({"grant_type": "authorization_code"}, 400, "unsupported_grant_type"),
        ({}, 400, "invalid_request"),
    ],
)
def test_oauth_failures(emulator: RunningEmulator, form: dict[str, str], status: int, error: str) -> None:
    response = token(emulator, **form)
    assert response.status_code == status
    assert response.json()["error"] == error and response.json()["error_description"]
    assert response.headers["X-Transaction-ID"]


def test_bearer_expires(make_emulator: Any) -> None:
    emulator = make_emulator(token_ttl=1)
    first = token(emulator, grant_type="client_credentials").json()
    assert first["expires_in"] == 1
    assert (
        requests.post(emulator.url + API, json={"userId": "1"}, headers=bearer(first["access_token"])).status_code
        == 200
    )
    time.sleep(1.1)
    expired = requests.post(emulator.url + API, json={"userId": "1"}, headers=bearer(first["access_token"]))
    assert expired.status_code == 401 and expired.json()["error"]["message"] == "User Not Authenticated"
    renewed = token(emulator, grant_type="refresh_token", refresh_token=first["refresh_token"]).json()
    assert (
        requests.post(emulator.url + API, json={"userId": "1"}, headers=bearer(renewed["access_token"])).status_code
        == 200
    )
    assert emulator.store.count("interaction") == 2


def test_table_api_needs_auth(emulator: RunningEmulator) -> None:
    assert requests.get(emulator.url + "/api/now/table/interaction").status_code == 401
    access = token(emulator, grant_type="client_credentials").json()["access_token"]
    assert requests.get(emulator.url + "/api/now/table/interaction", headers=bearer(access)).status_code == 200


@pytest.fixture
def populated(emulator: RunningEmulator, session: requests.Session) -> dict[str, Any]:
    ids = [create_interaction(session, emulator, clientSessionId=f"contact-{n}") for n in range(3)]
    base = f"{emulator.url}{API}/{ids[0]}"
    body = [
        message("one", "AGENT", 0, 10, sentiment="POSITIVE", isInternalMessage=True),
        message("two", "CUSTOMER", 20, 30, sentiment="NEGATIVE"),
        message("three", "AGENT", 40, 50),
        message("four", "CUSTOMER", 60, 70, sentiment="NEUTRAL"),
    ]
    session.post(base + "/messages", json=body)
    session.patch(f"{emulator.url}{API}/{ids[1]}/state", json={"state": "closed_complete"})
    return {"ids": ids}


def table(session: requests.Session, emulator: RunningEmulator, name: str, **params: str) -> requests.Response:
    return session.get(f"{emulator.url}/api/now/table/{name}", params=params)


def payloads(response: requests.Response) -> list[str]:
    assert response.status_code == 200, response.text
    return [row["payload"] for row in response.json()["result"]]


@pytest.mark.usefixtures("populated")
def test_table_queries(emulator: RunningEmulator, session: requests.Session) -> None:
    get = lambda **params: table(session, emulator, "sys_cs_message", **params)  # noqa: E731
    assert payloads(get(sysparm_query="participant=AGENT^ORDERBYsequence")) == ["one", "three"]
    assert payloads(get(sysparm_query="participant!=AGENT^ORDERBYDESCsequence")) == ["four", "two"]
    assert payloads(get(sysparm_query="participant=AGENT^sentiment=POSITIVE")) == ["one"]
    assert payloads(get(sysparm_query="sentiment=NEGATIVE^ORsentiment=NEUTRAL^ORDERBYsequence")) == ["two", "four"]
    assert payloads(get(sysparm_query="sequenceIN1,3,4^ORDERBYsequence")) == ["one", "three", "four"]
    assert payloads(get(sysparm_query="sentiment=^ORDERBYsequence")) == ["three"]
    assert payloads(get(sysparm_query="is_internal=true")) == ["one"]
    assert payloads(get(sysparm_query="begin_offset_millis=20")) == ["two"]
    paged = get(sysparm_query="ORDERBYsequence", sysparm_limit="2", sysparm_offset="1")
    assert payloads(paged) == ["two", "three"] and paged.headers["X-Total-Count"] == "4"
    fields = get(sysparm_query="ORDERBYsequence", sysparm_fields="sequence,payload,nonexistent", sysparm_limit="1")
    assert fields.json()["result"] == [{"sequence": "1", "payload": "one"}]


def test_table_records_are_strings(emulator: RunningEmulator, session: requests.Session, populated: Any) -> None:
    first = populated["ids"][0]
    record = session.get(f"{emulator.url}/api/now/table/interaction/{first}").json()["result"]
    assert all(isinstance(value, str) for value in record.values())
    assert record["closed_at"] == "" and record["number"] == "IMS0010001"
    interactions = table(session, emulator, "interaction", sysparm_query="state=closed_complete")
    assert [row["sys_id"] for row in interactions.json()["result"]] == [populated["ids"][1]]
    by_session = table(session, emulator, "interaction", sysparm_query="client_session_id=contact-2")
    assert by_session.json()["result"][0]["sys_id"] == populated["ids"][2]
    messages = table(session, emulator, "sys_cs_message", sysparm_query="ORDERBYsequence").json()["result"]
    assert messages[0]["is_agent"] == "true" and messages[0]["sequence"] == "1" and messages[2]["sentiment"] == ""
    conversations = table(session, emulator, "sys_cs_conversation").json()["result"]
    assert conversations[0]["interaction"] == first and set(conversations[0]) >= {"sys_id", "interaction", "state"}
    xml = session.get(f"{emulator.url}/api/now/table/interaction", headers={"Accept": "application/xml"})
    assert xml.content.count(b"<result>") == 3 and xml.headers["X-Total-Count"] == "3"


@pytest.mark.usefixtures("populated")
def test_table_errors(emulator: RunningEmulator, session: requests.Session) -> None:
    unknown = table(session, emulator, "incident")
    assert unknown.status_code == 400 and unknown.json()["error"]["message"] == "Invalid table incident"
    missing = session.get(f"{emulator.url}/api/now/table/interaction/{'f' * 32}")
    assert missing.status_code == 404 and missing.json()["error"]["message"] == "No Record found"
    assert table(session, emulator, "sys_cs_message", sysparm_query="bogus=1").status_code == 400
    assert table(session, emulator, "sys_cs_message", sysparm_limit="-1").status_code == 400
    assert session.post(f"{emulator.url}/api/now/table/interaction", json={}).status_code == 405
    assert session.get(f"{emulator.url}/api/now/v2/table/interaction").status_code == 200


def test_read_transcript_helper(emulator: RunningEmulator, session: requests.Session, populated: Any) -> None:
    rows = read_transcript(emulator.url, AUTH, populated["ids"][0])
    assert [row["payload"] for row in rows] == ["one", "two", "three", "four"]
    assert read_transcript(emulator.url, AUTH, populated["ids"][2]) == []
