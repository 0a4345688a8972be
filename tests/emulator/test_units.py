"""Unit tests of the pure pieces: content negotiation, codecs, validation, the query parser, rules, auth."""

from __future__ import annotations

import json
from typing import Any

import pytest

from voicebridge.emulator import codec, tableapi, validation
from voicebridge.emulator.auth import Authenticator, OAuthError
from voicebridge.emulator.errors import ApiError
from voicebridge.emulator.faults import FaultEngine, parse_rules
from voicebridge.emulator.options import EmulatorOptions, RateLimit, parse_rate_limit

from .conftest import message

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (None, "json"),
        ("", "json"),
        ("*/*", "json"),
        ("application/json", "json"),
        ("application/json; charset=utf-8", "json"),
        ("application/xml", "xml"),
        ("text/xml", "xml"),
        ("text/html, application/xml;q=0.9", "xml"),
        ("application/xml;q=0.5, application/json", "json"),
        ("text/html", None),
        ("image/png, text/plain", None),
        ("application/json;q=0", None),
    ],
)
def test_accept_negotiation(header: str | None, expected: str | None) -> None:
    assert codec.negotiate_accept(header) == expected


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (None, "json"),
        ("application/json", "json"),
        ("application/json; charset=UTF-8", "json"),
        ("Application/XML", "xml"),
        ("text/xml; charset=utf-8", "xml"),
        ("text/plain", None),
        ("application/x-www-form-urlencoded", None),
    ],
)
def test_content_type(header: str | None, expected: str | None) -> None:
    assert codec.request_format(header) == expected


def test_lenient_json_repairs_reference_quirks_outside_strings_only() -> None:
    text = '[\u202f{"a":\u202f"x\u202fy", "b": [1, 2,], },\n]\u2019'
    with pytest.raises(ApiError) as strict:
        codec.parse_json(text.encode())
    assert strict.value.status == 400 and strict.value.message == "Exception while reading request"
    assert codec.parse_json(text.encode(), lenient=True) == [{"a": "x\u202fy", "b": [1, 2]}]


@pytest.mark.parametrize("body", [b"", b"{", b'{"a": NaN}', b"[1] 2", b"\xff\xfe", b"[" * 100000])
def test_bad_json_is_a_read_error(body: bytes) -> None:
    for lenient in (False, True):
        with pytest.raises(ApiError) as error:
            codec.parse_json(body, lenient=lenient)
        assert (error.value.status, error.value.message) == (400, "Exception while reading request")


def test_xml_entries_become_lists_and_leaves_strings() -> None:
    body = (
        b"<request><entry><content>hi</content><beginOffsetMillis>5</beginOffsetMillis>"
        b"<attributes><entry><key>k</key><value>v</value></entry></attributes><sentiment/></entry>"
        b"<entry><content>b</content></entry></request>"
    )
    value = codec.parse_xml(body)
    assert value == [
        {"content": "hi", "beginOffsetMillis": "5", "attributes": [{"key": "k", "value": "v"}], "sentiment": ""},
        {"content": "b"},
    ]
    assert codec.as_object(codec.parse_xml(b"<request><entry><userId>1</userId></entry></request>"), "xml") == {
        "userId": "1"
    }
    assert codec.as_object(codec.parse_xml(b"<request><userId>1</userId></request>"), "xml") == {"userId": "1"}


@pytest.mark.parametrize("body", [b"<request>", b"not xml", b'<!DOCTYPE x [<!ENTITY a "b">]><request/>'])
def test_bad_xml_is_a_read_error(body: bytes) -> None:
    with pytest.raises(ApiError) as error:
        codec.parse_xml(body)
    assert error.value.message == "Exception while reading request"


def test_render_result_and_error_in_both_formats() -> None:
    assert json.loads(codec.render_result({"interactionId": "x"}, "json")) == {"result": {"interactionId": "x"}}
    assert codec.render_result("Success", "xml").endswith(b"<response><result>Success</result></response>")
    assert json.loads(codec.render_error("m", None, "json")) == {
        "error": {"message": "m", "detail": None},
        "status": "failure",
    }
    xml = codec.render_error("m", "d", "xml")
    assert b"<error><detail>d</detail><message>m</message></error><status>failure</status>" in xml


def test_message_canonicalisation() -> None:
    parsed = validation.parse_message(
        message(
            begin="100",
            end=200.0,
            sentiment="negative",
            isEvent="True",
            isInternalMessage=False,
            loudnessScore=[0.1, 0.2],
            attributes={"k": "v"},
            id="m1",
        ),
        "message[0]",
    )
    assert parsed.begin_offset_millis == 100 and parsed.end_offset_millis == 200
    assert parsed.sentiment == "NEGATIVE" and parsed.is_event and not parsed.is_internal
    assert parsed.loudness_score == "[0.1, 0.2]" and parsed.attributes == '{"k": "v"}'
    assert validation.parse_message(message(loudnessScore="null"), "m").loudness_score is None
    assert validation.parse_message(message(loudnessScore=0.5), "m").loudness_score == "0.5"
    assert validation.parse_message(message(sentiment=None), "m").sentiment is None


@pytest.mark.parametrize(
    ("override", "field"),
    [
        ({"content": None}, "content"),
        ({"content": ""}, "content"),
        ({"participantId": None}, "participantId"),
        ({"beginOffsetMillis": None}, "beginOffsetMillis"),
        ({"endOffsetMillis": None}, "endOffsetMillis"),
    ],
)
def test_missing_required_fields_are_named(override: dict[str, Any], field: str) -> None:
    with pytest.raises(ApiError) as error:
        validation.parse_message({**message(), **override}, "message[3]")
    assert error.value.message == f"Missing required field: {field}"
    assert error.value.detail == "message[3]"


@pytest.mark.parametrize(
    "override",
    [
        {"participantId": "agent"},
        {"participantId": "SUPERVISOR"},
        {"sentiment": "MIXED"},
        {"sentiment": 1},
        {"isEvent": "yes"},
        {"isInternalMessage": 1},
        {"beginOffsetMillis": -1},
        {"beginOffsetMillis": "-5"},
        {"beginOffsetMillis": 1.5},
        {"endOffsetMillis": "abc"},
        {"endOffsetMillis": True},
        {"endOffsetMillis": 2**63},
        {"loudnessScore": {"a": 1}},
        {"loudnessScore": True},
        {"content": {"text": "x"}},
        {"id": ["x"]},
    ],
)
def test_invalid_values_are_400(override: dict[str, Any]) -> None:
    with pytest.raises(ApiError) as error:
        validation.parse_message({**message(), **override}, "message[0]")
    assert error.value.status == 400
    assert next(iter(override)) in error.value.message


def test_transcript_ids_and_dates() -> None:
    body = {"interactionId": "a", "transcript": [message()], "conversationStarted": "2021-08-06 15:07:51"}
    assert validation.parse_transcript(body, None).interaction_id == "a"
    assert validation.parse_transcript(body, "a").conversation_started == "2021-08-06 15:07:51"
    assert validation.parse_transcript({"transcript": []}, "p").interaction_id == "p"
    bad_bodies: list[tuple[dict[str, Any], str | None]] = [
        ({**body, "interactionId": "b"}, "a"),
        ({"transcript": []}, None),
        ({"interactionId": "a"}, None),
        ({**body, "conversationStarted": "yesterday"}, None),
        ({**body, "transcript": {"content": "x"}}, None),
    ]
    for bad, path_id in bad_bodies:
        with pytest.raises(ApiError):
            validation.parse_transcript(bad, path_id)


def test_state_change() -> None:
    change = validation.parse_state_change({"state": "closed_complete", "recordingURL": "https://r"})
    assert change.recording_url == "https://r"
    for bad in [{}, {"state": "closed"}, {"state": "CLOSED_COMPLETE"}]:
        with pytest.raises(ApiError):
            validation.parse_state_change(bad)


def test_query_parser_binds_or_to_the_previous_condition() -> None:
    query = tableapi.parse_query("sys_cs_message", "participant=AGENT^ORsequence=2^is_agent=true^ORDERBYDESCsequence")
    assert [[c.field for c in group] for group in query.groups] == [["participant", "sequence"], ["is_agent"]]
    assert query.order == [("sequence", True)]
    where, params = tableapi.where_sql("sys_cs_message", query)
    assert where.count(" OR ") == 1 and params == ["AGENT", "2", 1]
    in_query = tableapi.parse_query("interaction", "stateINnew,closed_complete^inbound_id!=x^ORDERBYnumber")
    assert in_query.groups[0][0].operator == "IN" and in_query.groups[1][0].operator == "!="


@pytest.mark.parametrize("text", ["nofield=1", "sys_id~1", "ORDERBYnope", "sequence>3"])
def test_query_parser_rejects_unknown_fields_and_operators(text: str) -> None:
    with pytest.raises(ApiError) as error:
        tableapi.parse_query("sys_cs_message", text)
    assert error.value.status == 400


def test_unknown_table() -> None:
    with pytest.raises(ApiError) as error:
        tableapi.check_table("incident")
    assert error.value.message == "Invalid table incident"


def test_fault_rules_parse_and_reject() -> None:
    rules = parse_rules({"rules": [{"method": "post", "path": "/messages$", "action": "status", "times": 2}]})
    assert rules[0].method == "POST" and rules[0].remaining == 2
    for bad in [{"rules": [{"action": "explode"}]}, {"rules": [{"action": "status", "path": "("}]}, {"x": 1}]:
        with pytest.raises(ValueError):
            parse_rules(bad)


def test_scripted_rules_are_consumed_in_order() -> None:
    engine = FaultEngine(EmulatorOptions())
    engine.add_rules(parse_rules([{"path": "/messages", "action": "drop", "times": 2}, {"action": "html"}]))
    assert engine.take_rule("GET", "/x") is not None  # the html rule matches everything
    taken = [engine.take_rule("POST", "/a/messages") for _ in range(3)]
    assert [rule.action if rule else None for rule in taken] == ["drop", "drop", None]


def test_random_draws_are_deterministic_with_a_seed() -> None:
    options = EmulatorOptions(seed=7, fault_rate=0.3, ambiguous_rate=0.3, latency_ms=10)
    first = [FaultEngine(options).draw() for _ in range(1)]
    engine_a, engine_b = FaultEngine(options), FaultEngine(options)
    draws_a = [engine_a.draw() for _ in range(50)]
    assert draws_a == [engine_b.draw() for _ in range(50)] and first[0] == draws_a[0]
    assert any(d.fault_status for d in draws_a) and any(d.ambiguous for d in draws_a)
    assert all(0.010 <= d.delay_s <= 0.011 for d in draws_a)


def test_rate_limit_window() -> None:
    now = [100.0]
    engine = FaultEngine(EmulatorOptions(rate_limit="2/10"), clock=lambda: now[0], wall_clock=lambda: 1000.0)
    assert engine.rate_limit()[0] and engine.rate_limit()[0]
    allowed, headers = engine.rate_limit()
    assert not allowed and headers["Retry-After"] == "10" and headers["X-RateLimit-Remaining"] == "0"
    assert headers["X-RateLimit-Limit"] == "2" and headers["X-RateLimit-Reset"] == "1010"
    now[0] = 110.5
    assert engine.rate_limit()[0]
    assert parse_rate_limit("5/1.5") == RateLimit(5, 1.5)
    with pytest.raises(ValueError):
        parse_rate_limit("5 per second")


def test_tokens_expire_and_refresh() -> None:
    now = [0.0]
    auth = Authenticator(user="u", password="p", client_id="c", client_secret="s", token_ttl=10, clock=lambda: now[0])
    token = auth.grant({"grant_type": "client_credentials", "client_id": "c", "client_secret": "s"}, None)
    auth.check(f"Bearer {token['access_token']}")
    now[0] = 11
    with pytest.raises(ApiError) as expired:
        auth.check(f"Bearer {token['access_token']}")
    assert expired.value.status == 401
    form = {
        "grant_type": "refresh_token",
        "refresh_token": token["refresh_token"],
        "client_id": "c",
        "client_secret": "s",
    }
    refreshed = auth.grant(form, None)
    auth.check(f"Bearer {refreshed['access_token']}")
    with pytest.raises(OAuthError) as denied:
        auth.grant({"grant_type": "client_credentials", "client_id": "c", "client_secret": "x"}, None)
    assert denied.value.status == 401 and denied.value.payload["error"] == "access_denied"
