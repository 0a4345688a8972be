"""The Voice Interaction API over real HTTP: happy paths (JSON and XML), validation, state rules, routing."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from typing import Any

import pytest
import requests

from voicebridge.emulator import RunningEmulator

from .conftest import API, create_interaction, message

pytestmark = pytest.mark.integration

SAVED = re.compile(r"Voice conversation transcript has been successfully saved\. Conversation id: ([0-9a-f]{32})")
XML = {"Content-Type": "application/xml", "Accept": "application/xml"}


def xml_result(response: requests.Response) -> ET.Element:
    root = ET.fromstring(response.content)
    assert root.tag == "response"
    result = root.find("result")
    assert result is not None
    return result


def assert_error(response: requests.Response, status: int, message: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert re.fullmatch(r"[0-9a-f]{32}", response.headers["X-Transaction-ID"])
    body = response.json()
    assert body["status"] == "failure" and body["error"]["message"].startswith(message), body
    return dict(body["error"])


def test_create_interaction_json(emulator: RunningEmulator, session: requests.Session) -> None:
    body = {
        "userId": "+14089178877",
        "agentId": "beth.anglin",
        "callerPhoneNumber": "+14089178878",
        "clientSessionId": "contact-1",
        "inboundId": "connect",
    }
    response = session.post(emulator.url + API, json=body)
    assert response.status_code == 200
    assert re.fullmatch(r"[0-9a-f]{32}", response.headers["X-Transaction-ID"])
    interaction_id = response.json()["result"]["interactionId"]
    assert re.fullmatch(r"[0-9a-f]{32}", interaction_id)
    row = emulator.store.get("interaction", interaction_id)
    assert row is not None
    assert row["number"] == "IMS0010001" and row["type"] == "phone" and row["state"] == "new"
    assert (row["user_id"], row["assigned_to"], row["caller_phone_number"]) == (
        "+14089178877",
        "beth.anglin",
        "+14089178878",
    )
    assert (row["client_session_id"], row["inbound_id"]) == ("contact-1", "connect")
    assert row["channel_metadata_table"] == "sys_cs_conversation" and row["channel_metadata_document"] == ""
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", row["opened_at"]) and row["closed_at"] == ""
    second = create_interaction(session, emulator)
    assert emulator.store.get("interaction", second)["number"] == "IMS0010002"  # type: ignore[index]


def test_create_interaction_xml(emulator: RunningEmulator, session: requests.Session) -> None:
    body = "<request><entry><userId>+1408</userId><agentId>beth</agentId></entry></request>"
    response = session.post(emulator.url + API, data=body, headers=XML)
    assert response.status_code == 200 and response.headers["Content-Type"].startswith("application/xml")
    interaction_id = xml_result(response).findtext("interactionId")
    assert interaction_id and emulator.store.get("interaction", interaction_id)["assigned_to"] == "beth"  # type: ignore[index]


def test_full_call_json(emulator: RunningEmulator, session: requests.Session) -> None:
    interaction_id = create_interaction(session, emulator)
    base = f"{emulator.url}{API}/{interaction_id}"
    conversation = session.post(base + "/conversation", json={"userId": "+1408"})
    assert conversation.status_code == 200
    conversation_id = conversation.json()["result"]
    assert re.fullmatch(r"[0-9a-f]{32}", conversation_id)
    # a second call is idempotent: the same conversation, nothing new stored
    assert session.post(base + "/conversation", json={"userId": "+1408"}).json()["result"] == conversation_id
    assert emulator.store.count("sys_cs_conversation") == 1
    interaction = emulator.store.get("interaction", interaction_id)
    assert interaction and interaction["state"] == "work_in_progress"
    assert interaction["channel_metadata_document"] == conversation_id and interaction["conversation_started"]

    attributes = [{"key": "k", "value": "v"}]
    sent = session.post(
        base + "/messages",
        json=[
            message("Hi", "AGENT", 0, 900, id="m1", sentiment="neutral", attributes=attributes, isInternalMessage=True),
            message("Hello", "CUSTOMER", 1000, 1900, id="m2", loudnessScore=[0.5], isEvent="false"),
        ],
    )
    assert sent.status_code == 200
    assert SAVED.fullmatch(sent.json()["result"]).group(1) == conversation_id  # type: ignore[union-attr]
    rows = emulator.store.transcript(interaction_id)
    assert [(r["sequence"], r["payload"], r["participant"], r["is_agent"]) for r in rows] == [
        ("1", "Hi", "AGENT", "true"),
        ("2", "Hello", "CUSTOMER", "false"),
    ]
    first = rows[0]
    assert (first["sentiment"], first["is_internal"], first["is_event"], first["source_message_id"]) == (
        "NEUTRAL",
        "true",
        "false",
        "m1",
    )
    assert first["attributes"] == '[{"key": "k", "value": "v"}]' and first["conversation"] == conversation_id
    assert (rows[1]["loudness_score"], rows[1]["sentiment"], rows[1]["begin_offset_millis"]) == ("[0.5]", "", "1000")

    closed = session.patch(base + "/state", json={"state": "closed_complete", "recordingURL": "https://rec/1"})
    assert closed.status_code == 200 and closed.json() == {"result": "Success"}
    interaction = emulator.store.get("interaction", interaction_id)
    assert interaction and interaction["state"] == "closed_complete" and interaction["recording_url"] == "https://rec/1"
    closed_at = interaction["closed_at"]
    assert closed_at
    assert emulator.store.get("sys_cs_conversation", conversation_id)["state"] == "closed"  # type: ignore[index]
    # closing twice is harmless
    again = session.patch(base + "/state", json={"state": "closed_complete"})
    assert again.status_code == 200
    interaction = emulator.store.get("interaction", interaction_id)
    assert interaction and interaction["closed_at"] == closed_at and interaction["recording_url"] == "https://rec/1"


def test_full_call_xml(emulator: RunningEmulator, session: requests.Session) -> None:
    interaction_id = create_interaction(session, emulator)
    base = f"{emulator.url}{API}/{interaction_id}"
    conversation = session.post(base + "/conversation", data="<request><userId>1</userId></request>", headers=XML)
    conversation_id = xml_result(conversation).text
    body = (
        "<request>"
        "<entry><content>second</content><participantId>CUSTOMER</participantId><beginOffsetMillis>2000"
        "</beginOffsetMillis><endOffsetMillis>2500</endOffsetMillis><isEvent>False</isEvent>"
        "<sentiment>POSITIVE</sentiment><loudnessScore>0.3</loudnessScore></entry>"
        "<entry><content>first</content><participantId>AGENT</participantId><beginOffsetMillis>10"
        "</beginOffsetMillis><endOffsetMillis>20</endOffsetMillis><isInternalMessage>true</isInternalMessage>"
        "<attributes><entry><key>k</key><value>v</value></entry></attributes></entry>"
        "</request>"
    )
    sent = session.post(base + "/messages", data=body, headers=XML)
    assert sent.status_code == 200 and SAVED.fullmatch(xml_result(sent).text or "")
    rows = emulator.store.transcript(interaction_id)
    assert [(r["payload"], r["sequence"]) for r in rows] == [("first", "1"), ("second", "2")]
    assert rows[0]["is_internal"] == "true" and rows[0]["attributes"] == '[{"key": "k", "value": "v"}]'
    assert rows[1]["loudness_score"] == "0.3" and rows[1]["conversation"] == conversation_id
    state = "<request><entry><state>closed_complete</state><recordingURL>u</recordingURL></entry></request>"
    closed = session.patch(base + "/state", data=state, headers=XML)
    assert xml_result(closed).text == "Success"


def test_xml_transcript(emulator: RunningEmulator, session: requests.Session) -> None:
    interaction_id = create_interaction(session, emulator)
    body = (
        f"<request><entry><interactionId>{interaction_id}</interactionId><source>Amazon Connect</source>"
        "<conversationStarted>2021-08-06 15:07:51</conversationStarted><transcript>"
        "<entry><content>a</content><participantId>AGENT</participantId><beginOffsetMillis>1</beginOffsetMillis>"
        "<endOffsetMillis>2</endOffsetMillis></entry></transcript></entry></request>"
    )
    response = session.post(f"{emulator.url}{API}/transcript", data=body, headers=XML)
    assert response.status_code == 200 and SAVED.fullmatch(xml_result(response).text or "")
    assert [r["payload"] for r in emulator.store.transcript(interaction_id)] == ["a"]


def test_messages_create_the_conversation(emulator: RunningEmulator, session: requests.Session) -> None:
    interaction_id = create_interaction(session, emulator)
    response = session.post(f"{emulator.url}{API}/{interaction_id}/messages", json=[message()])
    conversation_id = SAVED.fullmatch(response.json()["result"]).group(1)  # type: ignore[union-attr]
    interaction = emulator.store.get("interaction", interaction_id)
    assert interaction and interaction["channel_metadata_document"] == conversation_id
    assert interaction["state"] == "work_in_progress"


@pytest.mark.parametrize("with_path_id", [False, True])
def test_transcript_once(emulator: RunningEmulator, session: requests.Session, with_path_id: bool) -> None:
    interaction_id = create_interaction(session, emulator)
    url = f"{emulator.url}{API}/{interaction_id}/transcript" if with_path_id else f"{emulator.url}{API}/transcript"
    body = {
        "interactionId": interaction_id,
        "source": "AmazonConnect",
        "conversationStarted": "2021-08-06 15:07:51",
        "transcript": [message("late", begin=200000, end=25000), message("early", begin=100000, end=150000)],
    }
    first = session.post(url, json=body)
    assert first.status_code == 200 and SAVED.fullmatch(first.json()["result"])
    assert [r["payload"] for r in emulator.store.transcript(interaction_id)] == ["early", "late"]
    interaction = emulator.store.get("interaction", interaction_id)
    assert interaction and interaction["conversation_started"] == "2021-08-06 15:07:51"
    before = emulator.store.counts()
    second = session.post(url, json=body)
    assert_error(second, 400, "ERROR: Transcript for interaction")
    assert "already been processed" in second.json()["error"]["message"]
    assert emulator.store.counts() == before


def test_transcript_path_id_wins_and_a_different_body_id_is_rejected(
    emulator: RunningEmulator, session: requests.Session
) -> None:
    interaction_id = create_interaction(session, emulator)
    url = f"{emulator.url}{API}/{interaction_id}/transcript"
    assert session.post(url, json={"transcript": [message()]}).status_code == 200
    other = create_interaction(session, emulator)
    before = emulator.store.counts()
    mismatch = session.post(f"{emulator.url}{API}/{other}/transcript", json={"interactionId": "x", "transcript": []})
    assert_error(mismatch, 400, "Invalid value for field: interactionId")
    assert_error(
        session.post(f"{emulator.url}{API}/transcript", json={"transcript": []}), 400, "Missing required field"
    )
    assert emulator.store.counts() == before


def test_script_style_errors(make_emulator: Any, session: requests.Session) -> None:
    emulator = make_emulator(script_style_errors=True)
    interaction_id = create_interaction(session, emulator)
    url = f"{emulator.url}{API}/{interaction_id}/transcript"
    assert session.post(url, json={"transcript": [message()]}).status_code == 200
    second = session.post(url, json={"transcript": [message()]})
    assert second.status_code == 200
    assert second.json()["result"].startswith("ERROR: ") and "already been processed" in second.json()["result"]
    assert emulator.store.count("sys_cs_message") == 1
    # validation errors stay 400 even in script style
    assert session.post(url, json={"transcript": [{}]}).status_code == 400


def test_nothing_is_stored_after_close(emulator: RunningEmulator, session: requests.Session) -> None:
    interaction_id = create_interaction(session, emulator)
    base = f"{emulator.url}{API}/{interaction_id}"
    session.post(base + "/messages", json=[message()])
    assert session.patch(base + "/state", json={"state": "closed_complete"}).status_code == 200
    before = emulator.store.counts()
    assert_error(session.post(base + "/messages", json=[message()]), 400, "ERROR: Interaction")
    assert_error(session.post(base + "/transcript", json={"transcript": [message()]}), 400, "ERROR: Interaction")
    # the conversation call stays idempotent after close
    assert session.post(base + "/conversation", json={"userId": "1"}).status_code == 200
    assert emulator.store.counts() == before
    fresh = create_interaction(session, emulator)
    session.patch(f"{emulator.url}{API}/{fresh}/state", json={"state": "closed_complete"})
    assert session.post(f"{emulator.url}{API}/{fresh}/conversation", json={"userId": "1"}).status_code == 400


def test_unknown_interaction_is_404(emulator: RunningEmulator, session: requests.Session) -> None:
    base = f"{emulator.url}{API}/{'0' * 32}"
    assert_error(session.post(base + "/conversation", json={"userId": "1"}), 404, "No Record found")
    assert_error(session.post(base + "/messages", json=[message()]), 404, "No Record found")
    assert_error(session.post(base + "/transcript", json={"transcript": []}), 404, "No Record found")
    assert_error(session.patch(base + "/state", json={"state": "closed_complete"}), 404, "No Record found")
    assert emulator.store.counts() == {"interaction": 0, "sys_cs_conversation": 0, "sys_cs_message": 0}


@pytest.mark.parametrize(
    ("bad", "error"),
    [
        ({"content": None}, "Missing required field: content"),
        ({"participantId": None}, "Missing required field: participantId"),
        ({"beginOffsetMillis": None}, "Missing required field: beginOffsetMillis"),
        ({"endOffsetMillis": None}, "Missing required field: endOffsetMillis"),
        ({"participantId": "BOT"}, "Invalid value for field: participantId"),
        ({"sentiment": "ANGRY"}, "Invalid value for field: sentiment"),
        ({"isEvent": "maybe"}, "Invalid value for field: isEvent"),
        ({"isInternalMessage": 0}, "Invalid value for field: isInternalMessage"),
        ({"beginOffsetMillis": -1}, "Invalid value for field: beginOffsetMillis"),
        ({"endOffsetMillis": "soon"}, "Invalid value for field: endOffsetMillis"),
        ({"endOffsetMillis": 1.25}, "Invalid value for field: endOffsetMillis"),
        ({"loudnessScore": {"x": 1}}, "Invalid value for field: loudnessScore"),
    ],
)
def test_a_bad_message_rejects_the_whole_request(
    emulator: RunningEmulator, session: requests.Session, bad: dict[str, Any], error: str
) -> None:
    interaction_id = create_interaction(session, emulator)
    before = emulator.store.counts()
    body = [message("ok"), {**message("bad"), **bad}]
    response = session.post(f"{emulator.url}{API}/{interaction_id}/messages", json=body)
    detail = assert_error(response, 400, error)
    assert detail["detail"] and "message[1]" in detail["detail"]
    assert emulator.store.counts() == before
    # the conversation was not created either
    assert emulator.store.get("interaction", interaction_id)["channel_metadata_document"] == ""  # type: ignore[index]


def test_tolerant_values_are_accepted(emulator: RunningEmulator, session: requests.Session) -> None:
    interaction_id = create_interaction(session, emulator)
    body = [
        message(
            begin="10", end=20.0, sentiment="Positive", isEvent="FALSE", isInternalMessage="True", loudnessScore="0.7"
        ),
        message(begin=0, end=0, sentiment=None, loudnessScore=None, attributes=None),
    ]
    assert session.post(f"{emulator.url}{API}/{interaction_id}/messages", json=body).status_code == 200
    rows = emulator.store.transcript(interaction_id)
    assert [(r["begin_offset_millis"], r["sentiment"], r["loudness_score"]) for r in rows] == [
        ("0", "", ""),
        ("10", "POSITIVE", "0.7"),
    ]
    assert rows[1]["is_internal"] == "true" and rows[1]["is_event"] == "false" and rows[0]["attributes"] == ""


@pytest.mark.parametrize(
    ("path", "body", "error"),
    [
        ("", {}, "Missing required field: userId"),
        ("", {"userId": ""}, "Missing required field: userId"),
        ("", {"userId": {"n": 1}}, "Invalid value for field: userId"),
        ("", [], "Invalid request body"),
        ("/{id}/conversation", {}, "Missing required field: userId"),
        ("/{id}/messages", {"content": "x"}, "Invalid request body"),
        ("/{id}/messages", ["x"], "Invalid message"),
        ("/{id}/state", {}, "Missing required field: state"),
        ("/{id}/state", {"state": "closed_abandoned"}, "Invalid value for field: state"),
        ("/transcript", {"interactionId": "{id}"}, "Missing required field: transcript"),
        ("/transcript", {"interactionId": "{id}", "transcript": [], "conversationStarted": "x"}, "Invalid value"),
    ],
)
def test_other_validation_rules(
    emulator: RunningEmulator, session: requests.Session, path: str, body: Any, error: str
) -> None:
    interaction_id = create_interaction(session, emulator)
    before = emulator.store.counts()
    url = emulator.url + API + path.replace("{id}", interaction_id)
    if isinstance(body, dict) and body.get("interactionId") == "{id}":
        body["interactionId"] = interaction_id
    response = session.patch(url, json=body) if path.endswith("/state") else session.post(url, json=body)
    assert_error(response, 400, error)
    assert emulator.store.counts() == before


@pytest.mark.parametrize("body", [b"{", b"[1,]", b"", b"\xff", b'{"userId": NaN}'])
def test_malformed_json(emulator: RunningEmulator, session: requests.Session, body: bytes) -> None:
    response = session.post(emulator.url + API, data=body, headers={"Content-Type": "application/json"})
    assert_error(response, 400, "Exception while reading request")


def test_body_over_10_mb(emulator: RunningEmulator, session: requests.Session) -> None:
    interaction_id = create_interaction(session, emulator)
    big = b"[" + b'{"content": "' + b"x" * (10 * 1024 * 1024) + b'"}]'
    response = session.post(f"{emulator.url}{API}/{interaction_id}/messages", data=big)
    assert_error(response, 400, "Exception while reading request")
    assert emulator.store.count("sys_cs_message") == 0
    # the server is still fine afterwards
    assert session.post(f"{emulator.url}{API}/{interaction_id}/messages", json=[message()]).status_code == 200


@pytest.mark.parametrize(
    ("prefix", "status"),
    [("/api/now/v1/cs", 200), ("/api/now/cs", 200), ("/api/now/v2/cs", 400), ("/api/now/v1.1/cs", 400)],
)
def test_version_routing(emulator: RunningEmulator, session: requests.Session, prefix: str, status: int) -> None:
    response = session.post(emulator.url + prefix + "/voice-interactions", json={"userId": "1"})
    assert response.status_code == status
    if status == 400:
        assert_error(response, 400, "Requested URI does not represent any resource")


@pytest.mark.parametrize(
    ("method", "path"),
    [("GET", API), ("PUT", API + "/x/state"), ("POST", API + "/x/state"), ("POST", API + "/x/y/z"), ("GET", "/")],
)
def test_unknown_resources(emulator: RunningEmulator, session: requests.Session, method: str, path: str) -> None:
    assert_error(session.request(method, emulator.url + path, json={}), 400, "Requested URI does not represent")


def test_content_negotiation(emulator: RunningEmulator, session: requests.Session) -> None:
    url = emulator.url + API
    for accept in ["*/*", "application/json; charset=utf-8", "application/json", ""]:
        assert session.post(url, json={"userId": "1"}, headers={"Accept": accept}).status_code == 200
    assert_error(session.post(url, json={"userId": "1"}, headers={"Accept": "text/html"}), 406, "Not Acceptable")
    unsupported = session.post(url, data="userId=1", headers={"Content-Type": "text/plain"})
    assert_error(unsupported, 415, "Unsupported Media Type")
    as_xml = session.post(url, data="x", headers={"Content-Type": "text/plain", "Accept": "application/xml"})
    assert as_xml.status_code == 415 and b"<status>failure</status>" in as_xml.content
    missing = session.post(url, data=b'{"userId": "1"}', headers={"Content-Type": ""})
    assert missing.status_code == 200
    assert emulator.store.count("interaction") == 5


def test_interleaved_messages_are_renumbered(emulator: RunningEmulator, session: requests.Session) -> None:
    interaction_id = create_interaction(session, emulator)
    url = f"{emulator.url}{API}/{interaction_id}/messages"

    def sequence() -> list[tuple[str, str]]:
        return [(r["payload"], r["sequence"]) for r in emulator.store.transcript(interaction_id)]

    session.post(url, json=[message("c", begin=3000, end=3500), message("a", begin=1000, end=1500)])
    assert sequence() == [("a", "1"), ("c", "2")]
    session.post(url, json=[message("d", begin=4000, end=4100)])  # appended
    assert sequence() == [("a", "1"), ("c", "2"), ("d", "3")]
    session.post(url, json=[message("b", begin=2000, end=2100), message("a2", begin=1000, end=1400)])
    assert sequence() == [("a2", "1"), ("a", "2"), ("b", "3"), ("c", "4"), ("d", "5")]
    session.post(url, json=[message("c-again", begin=3000, end=3500)])  # ties keep arrival order
    assert sequence() == [("a2", "1"), ("a", "2"), ("b", "3"), ("c", "4"), ("c-again", "5"), ("d", "6")]


def test_connection_reuse_and_transaction_ids(emulator: RunningEmulator, session: requests.Session) -> None:
    ids = {session.post(emulator.url + API, json={"userId": str(n)}).headers["X-Transaction-ID"] for n in range(5)}
    assert len(ids) == 5
    assert emulator.stats()["by_route"]["POST /cs/voice-interactions"] == 5
