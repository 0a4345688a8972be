"""The pure post-call mapping: every public sample shape, the documented decisions, and properties."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bridge.postcall.keys import AnalysisKey, parse_key
from bridge.postcall.mapping import (
    PostCallFileError,
    build_transcript,
    choose_anchor,
    parse_document,
)

SAMPLES = Path("/work/shared/reference/samples/postcall")
FIXTURES = Path(__file__).resolve().parents[2] / "events" / "postcall" / "bucket"
CONTACT = "7c77422d-f9ba-4111-ad48-b2f5dadf854a"


def key_for(contact: str, redacted: bool = False) -> AnalysisKey:
    if redacted:
        text = f"Analysis/Voice/Redacted/2025/01/23/{contact}_analysis_redacted_2025-01-23T07:20:00Z.json"
    else:
        text = f"Analysis/Voice/2025/01/23/{contact}_analysis_2025-01-23T07:20:00Z.json"
    parsed = parse_key(text)
    assert parsed is not None
    return parsed


def anchor_of(key: AnalysisKey) -> Any:
    return choose_anchor(None, None, key)


def sample_cases() -> list[tuple[str, bool]]:
    return [
        ("scv-postcalltrigger-test.json", False),
        ("zendesk-cl-sample-2023-raw.json", False),
        ("zendesk-cl-sample-2025-redacted.json", True),
    ]


@pytest.mark.parametrize(("name", "redacted"), sample_cases())
def test_every_public_sample_maps_turn_for_turn(name: str, redacted: bool) -> None:
    data = (SAMPLES / name).read_bytes()
    source = json.loads(data)
    key = key_for(source["CustomerMetadata"]["ContactId"], redacted)
    transcript = build_transcript(parse_document(data, key), anchor_of(key))
    turns = [m for m in transcript.messages if not m.internal]
    assert transcript.turns == len(source["Transcript"]) == len(turns)
    roles = {p["ParticipantId"]: p["ParticipantRole"] for p in source["Participants"]}
    for message, turn in zip(turns, source["Transcript"], strict=True):
        payload = message.to_payload()
        assert payload["id"] == turn["Id"]
        assert payload["content"] == turn["Content"]
        assert payload["participantId"] == roles[turn["ParticipantId"]]
        assert (payload["beginOffsetMillis"], payload["endOffsetMillis"]) == (
            turn["BeginOffsetMillis"],
            turn["EndOffsetMillis"],
        )
        assert payload["sentiment"] == turn["Sentiment"]
        assert json.loads(payload["loudnessScore"]) == turn["LoudnessScore"]
        assert payload["isInternalMessage"] is False
    assert transcript.instance_id == source["CustomerMetadata"]["InstanceId"]
    assert transcript.recording_uri == source["CustomerMetadata"]["InputS3Uri"]


def test_the_redacted_sample_keeps_its_summary_and_categories_as_agent_only_notes() -> None:
    data = (SAMPLES / "zendesk-cl-sample-2025-redacted.json").read_bytes()
    key = key_for("0c129ed7-5c5a-42af-ba83-e7c52c6b035e", redacted=True)
    transcript = build_transcript(parse_document(data, key), anchor_of(key))
    notes = [m for m in transcript.messages if m.internal]
    assert [n.content for n in notes] == [
        "Contact Lens category matched: NoAgentGreeting",
        "Contact Lens category matched: DeliveryIssue",
        "Post-contact summary: The customer inquired about their order number 6715, which they placed a couple of "
        "weeks ago but have not received any notification about. The agent investigated the order and confirmed "
        "it's still with the supplier. The agent agreed to investigate the issue further.",
    ]
    # No points of interest: after the last turn (TotalConversationDurationMillis), like the summary.
    assert {(n.begin_offset_millis, n.end_offset_millis) for n in notes} == {(30085, 30085)}
    assert all(n.participant == "AGENT" and n.loudness is None for n in notes)


def test_the_aws_doc_example_as_published_is_a_clear_parse_error() -> None:
    data = (SAMPLES / "awsdocs-current-original.not-json.txt").read_bytes()
    with pytest.raises(PostCallFileError, match=r"not valid JSON: Expecting ',' delimiter at line 17"):
        parse_document(data, key_for(CONTACT))


def repaired_doc_example() -> bytes:
    """The AWS doc example with its comments and comma mistakes fixed (its shape: no CustomerMetadata, one
    placeholder Id for every turn, a trailing closing brace)."""
    text = (SAMPLES / "awsdocs-current-original.not-json.txt").read_text()
    text = re.sub(r"//[^\n]*", "", text)
    text = re.sub(r'("CategoryName": "[^"]+")\n', r"\1,\n", text)
    text = re.sub(r",(\s*[\]}])", r"\1", text)
    return text.rstrip().removesuffix("}").encode()


def test_the_doc_examples_shape_maps_with_derived_ids_for_its_repeated_placeholder() -> None:
    key = key_for(CONTACT)
    transcript = build_transcript(parse_document(repaired_doc_example(), key), anchor_of(key))
    turns = [m for m in transcript.messages if not m.internal]
    assert len(turns) == 10
    ids = [m.id for m in turns]
    assert ids[0] == "the ID of the turn"  # the first keeps it, the repeats get derived ones
    assert len(set(ids)) == 10
    again = build_transcript(parse_document(repaired_doc_example(), key), anchor_of(key))
    assert [m.id for m in again.messages] == [m.id for m in transcript.messages]  # stable across re-imports
    assert transcript.instance_id == ""  # no CustomerMetadata: the key's contact id is the fallback
    assert transcript.contact_id == CONTACT
    notes = {n.attributes[0][1]: n for n in transcript.messages if n.internal}
    assert notes["category"].begin_offset_millis == 7370  # at its first point of interest
    assert notes["category"].content == "Contact Lens category matched: Cancellation"
    skipped = [n.content for n in transcript.messages if dict(n.attributes).get("noteType") == "skippedAnalysis"]
    assert skipped == [
        "Contact Lens skipped CATEGORIZATION: QUOTA_EXCEEDED (PotentialFraud, Refund)",
        "Contact Lens skipped CATEGORIZATION: FAILED_SAFETY_GUIDELINES (ManagerEscalation)",
    ]
    attributes = [dict(m.attributes) for m in turns]
    assert attributes[3]["issueDetected"] == "I need to cancel. I want to cancel my plan subscription"
    assert attributes[6]["outcomeDetected"].startswith("I made all the changes")
    assert attributes[8]["actionItemDetected"].startswith("I will send you all the details")


def minimal(turns: list[dict[str, Any]], **extra: Any) -> bytes:
    return json.dumps(
        {
            "Channel": "VOICE",
            "JobStatus": "COMPLETED",
            "Participants": [
                {"ParticipantId": "spk_0", "ParticipantRole": "CUSTOMER"},
                {"ParticipantId": "spk_1", "ParticipantRole": "AGENT"},
            ],
            "Transcript": turns,
            **extra,
        }
    ).encode()


def turn(**fields: Any) -> dict[str, Any]:
    base = {"Id": "t1", "ParticipantId": "spk_0", "Content": "hello", "BeginOffsetMillis": 0, "EndOffsetMillis": 10}
    return {**base, **fields}


def test_opaque_participant_ids_resolve_through_participants() -> None:
    key = key_for(CONTACT)
    data = minimal([turn(), turn(Id="t2", ParticipantId="spk_1")])
    participants = [m.participant for m in build_transcript(parse_document(data, key), anchor_of(key)).messages]
    assert participants == ["CUSTOMER", "AGENT"]


def test_an_unresolvable_participant_is_a_file_error_naming_the_turn() -> None:
    with pytest.raises(PostCallFileError, match=r"Transcript\[0\]\.ParticipantId"):
        key = key_for(CONTACT)
        build_transcript(parse_document(minimal([turn(ParticipantId="spk_9")]), key), anchor_of(key))


def test_mixed_sentiment_is_sent_as_none_and_kept_as_an_attribute() -> None:
    key = key_for(CONTACT)
    (message,) = build_transcript(parse_document(minimal([turn(Sentiment="MIXED")]), key), anchor_of(key)).messages
    assert "sentiment" not in message.to_payload()
    assert ("sentiment", "MIXED") in message.attributes


@pytest.mark.parametrize(
    ("document", "error"),
    [
        (b"[]", "not a JSON object"),
        (b"\xff\xfe", "not UTF-8"),
        (json.dumps({"Channel": "CHAT", "Transcript": []}).encode(), "not VOICE"),
        (json.dumps({"JobStatus": "FAILED", "Transcript": []}).encode(), "not COMPLETED"),
        (json.dumps({"ContentMetadata": {"Output": "Redacted"}, "Transcript": []}).encode(), "a Raw file"),
        (json.dumps({"CustomerMetadata": {"ContactId": "other"}, "Transcript": []}).encode(), "differs"),
        (json.dumps({"Transcript": {}}).encode(), "Transcript is missing"),
    ],
)
def test_files_that_cannot_be_imported_say_why(document: bytes, error: str) -> None:
    with pytest.raises(PostCallFileError, match=error):
        parse_document(document, key_for(CONTACT))


@pytest.mark.parametrize(
    ("bad", "where"),
    [
        ({"Content": ""}, r"Content"),
        ({"BeginOffsetMillis": -1}, r"BeginOffsetMillis"),
        ({"EndOffsetMillis": "10"}, r"EndOffsetMillis"),
        ({"LoudnessScore": ["loud"]}, r"LoudnessScore"),
        ({"IssuesDetected": {}}, r"IssuesDetected"),
    ],
)
def test_malformed_turns_are_file_errors(bad: dict[str, Any], where: str) -> None:
    key = key_for(CONTACT)
    with pytest.raises(PostCallFileError, match=where):
        build_transcript(parse_document(minimal([turn(**bad)]), key), anchor_of(key))


def test_anchor_order_agent_connected_then_initiation_then_the_key() -> None:
    key = key_for(CONTACT)
    connected = datetime(2025, 1, 23, 7, 1, 2, tzinfo=UTC)
    initiated = datetime(2025, 1, 23, 7, 0, 0, tzinfo=UTC)
    assert choose_anchor(connected, initiated, key).source == "agent_connected"
    assert choose_anchor(None, initiated, key).source == "initiation"
    from_key = choose_anchor(None, None, key)
    assert (from_key.source, from_key.text) == ("analysis_file_time", "2025-01-23 07:20:00")
    transcript = build_transcript(
        parse_document(minimal([turn()]), key), choose_anchor(connected, None, key), key=key.key
    )
    assert transcript.conversation_started == "2025-01-23 07:01:02"
    assert ("conversationStartedFrom", "agent_connected") in transcript.messages[0].attributes
    assert ("analysisFile", key.key) in transcript.messages[0].attributes


def test_every_text_passes_through_the_redactor_but_ids_and_labels_do_not() -> None:
    key = key_for(CONTACT)
    data = minimal(
        [turn(IssuesDetected=[{"Text": "card 4111"}])],
        ConversationCharacteristics={"ContactSummary": {"PostContactSummary": {"Content": "paid with 4111"}}},
        Categories={"MatchedCategories": ["Billing"], "MatchedDetails": {}},
    )
    transcript = build_transcript(parse_document(data, key), anchor_of(key), redact=lambda text: text.upper())
    turn_message, category, summary = transcript.messages
    assert turn_message.content == "HELLO"
    assert ("issueDetected", "CARD 4111") in turn_message.attributes
    assert summary.content == "Post-contact summary: PAID WITH 4111"
    assert category.content == "Contact Lens category matched: Billing"
    assert turn_message.id == "t1"


def test_our_fixtures_are_real_format_files_that_map() -> None:
    files = sorted(FIXTURES.glob("Analysis/Voice/**/*_analysis_*.json"))
    assert len(files) == 5
    for path in files:
        key = parse_key(str(path.relative_to(FIXTURES)))
        assert key is not None
        transcript = build_transcript(parse_document(path.read_bytes(), key), anchor_of(key))
        assert transcript.turns == len(json.loads(path.read_text())["Transcript"])


# -- properties ---------------------------------------------------------------------------------------------------

turns_strategy = st.lists(
    st.fixed_dictionaries(
        {
            "Id": st.one_of(st.none(), st.sampled_from(["a", "b", "c"]), st.uuids().map(str)),
            "ParticipantId": st.sampled_from(["AGENT", "CUSTOMER", "spk_0", "spk_1"]),
            "Content": st.text(min_size=1, max_size=40),
            "BeginOffsetMillis": st.integers(0, 10**9),
            "EndOffsetMillis": st.integers(0, 10**9),
            "Sentiment": st.sampled_from(["POSITIVE", "NEUTRAL", "NEGATIVE", "MIXED"]),
            "LoudnessScore": st.lists(st.floats(0, 100, allow_nan=False).map(lambda f: round(f, 2)), max_size=8),
        }
    ),
    max_size=30,
)


@settings(max_examples=150, deadline=None)
@given(turns_strategy)
def test_property_every_turn_once_with_its_content_offsets_and_loudness(turns: list[dict[str, Any]]) -> None:
    for item in turns:
        if item["Id"] is None:
            del item["Id"]
    key = key_for(CONTACT)
    data = json.dumps(
        {
            "Participants": [
                {"ParticipantId": "spk_0", "ParticipantRole": "CUSTOMER"},
                {"ParticipantId": "spk_1", "ParticipantRole": "AGENT"},
            ],
            "Transcript": turns,
        }
    ).encode()
    transcript = build_transcript(parse_document(data, key), anchor_of(key))
    messages = transcript.messages
    assert len(messages) == len(turns)
    assert len({m.id for m in messages}) == len(messages)  # missing and repeated ids were derived
    for message, source in zip(messages, turns, strict=True):
        assert message.content == source["Content"]
        assert (message.begin_offset_millis, message.end_offset_millis) == (
            source["BeginOffsetMillis"],
            source["EndOffsetMillis"],
        )
        assert message.participant == {"spk_0": "CUSTOMER", "spk_1": "AGENT"}.get(
            source["ParticipantId"], source["ParticipantId"]
        )
        loudness = message.to_payload().get("loudnessScore")
        assert (json.loads(loudness) if loudness else []) == source["LoudnessScore"]
    assert build_transcript(parse_document(data, key), anchor_of(key)) == transcript  # pure and deterministic


def test_system_speaks_as_agent_with_its_role_and_absent_loudness_is_not_sent() -> None:
    key = key_for(CONTACT)
    data = json.dumps(
        {
            "Participants": [{"ParticipantId": "ivr", "ParticipantRole": "SYSTEM"}],
            "Transcript": [turn(ParticipantId="ivr")],
        }
    ).encode()
    (message,) = build_transcript(parse_document(data, key), anchor_of(key)).messages
    assert message.participant == "AGENT"
    assert ("participantRole", "SYSTEM") in message.attributes
    assert "loudnessScore" not in message.to_payload()
