"""The committed fixtures in events/ and the loader that reads them (voicebridge.feed.fixtures)."""

from __future__ import annotations

import base64
import json
import runpy
from pathlib import Path
from typing import Any

import pytest

from voicebridge.feed.fixtures import (
    FixtureError,
    StreamRecord,
    build_records,
    kinesis_event,
    load_fixture,
    to_json_line,
)

pytestmark = pytest.mark.unit

EVENTS = Path(__file__).resolve().parents[2] / "events"
# connect/ holds the Amazon Connect stand-in's data for the full call (voicebridge.connect), not Kinesis fixtures.
FIXTURE_FILES = sorted(
    p for p in EVENTS.rglob("*") if p.suffix in (".json", ".jsonl") and p.relative_to(EVENTS).parts[0] != "connect"
)
MALFORMED = EVENTS / "malformed"
CONTACT_ID = "5c3f0c1e-8c1a-4d8e-9b7a-2f1e3d4c5b6a"


def _decoded(path: Path) -> list[Any]:
    return [record.decoded() for record in load_fixture(path)]


def _segments(events: list[Any], kind: str) -> list[dict[str, Any]]:
    return [segment[kind] for event in events for segment in event.get("Segments", []) if kind in segment]


@pytest.fixture(scope="module")
def full_call() -> list[dict[str, Any]]:
    return _decoded(EVENTS / "full-call.kinesis.json")


def test_the_fixture_set_is_complete() -> None:
    names = {str(p.relative_to(EVENTS)) for p in FIXTURE_FILES}
    for name in ("started", "segments", "completed", "failed"):
        assert {f"{name}.json", f"payloads/{name}.json"} <= names
    assert {"full-call.kinesis.json", "full-call.jsonl"} <= names
    kinds = {"not-base64", "not-utf8", "not-json", "chat-v2", "unknown-event-type", "transcript-missing-fields"}
    assert {f"malformed/{kind}.json" for kind in kinds | {"not-an-object"}} <= names


@pytest.mark.parametrize("path", FIXTURE_FILES, ids=lambda p: str(p.relative_to(EVENTS)))
def test_every_fixture_loads_with_increasing_56_digit_sequence_numbers(path: Path) -> None:
    # Given any committed fixture (the malformed ones included: the loader keeps raw data, the handler parks it)
    records = load_fixture(path)

    # Then it yields records whose sequence numbers look like real Kinesis ones
    assert records
    numbers = [record.sequence_number for record in records]
    assert all(len(n) == 56 and n.isdigit() for n in numbers)
    assert [int(n) for n in numbers] == sorted({int(n) for n in numbers})


@pytest.mark.parametrize("path", sorted(EVENTS.glob("*.json*")), ids=lambda p: p.name)
def test_top_level_fixtures_are_lambda_kinesis_events_of_valid_voice_events(path: Path) -> None:
    if path.suffix == ".json":
        document = json.loads(path.read_text(encoding="utf-8"))
        assert set(document) == {"Records"}
        for record in document["Records"]:
            assert record["eventSource"] == "aws:kinesis"
            assert record["eventID"].endswith(":" + record["kinesis"]["sequenceNumber"])
    for event in _decoded(path):
        assert event["Version"] == "1.0.0" and event["Channel"] == "VOICE"
        assert event["ContactId"] == CONTACT_ID
        assert event["EventType"] in {"STARTED", "SEGMENTS", "COMPLETED", "FAILED"}


@pytest.mark.parametrize("name", ["started", "segments", "completed", "failed"])
def test_payloads_are_the_decoded_envelopes(name: str) -> None:
    payload = json.loads((EVENTS / "payloads" / f"{name}.json").read_text(encoding="utf-8"))
    assert _decoded(EVENTS / f"{name}.json") == [payload]
    assert payload["EventType"] == name.upper()


def test_sample_segments_event_shows_every_mid_call_segment_kind() -> None:
    [event] = _decoded(EVENTS / "segments.json")
    kinds = {next(iter(segment)) for segment in event["Segments"]}
    assert kinds == {"Utterance", "Transcript", "Categories"}
    assert {t["ParticipantRole"] for t in _segments([event], "Transcript")} == {"AGENT", "CUSTOMER"}
    assert any(t.get("IssuesDetected") for t in _segments([event], "Transcript"))


def test_full_call_kinesis_and_jsonl_hold_the_same_records(full_call: list[dict[str, Any]]) -> None:
    kinesis = load_fixture(EVENTS / "full-call.kinesis.json")
    lines = load_fixture(EVENTS / "full-call.jsonl")
    assert [r.decoded() for r in lines] == full_call
    assert [(r.sequence_number, r.partition_key, r.arrival_timestamp) for r in lines] == [
        (r.sequence_number, r.partition_key, r.arrival_timestamp) for r in kinesis
    ]
    assert [r.data for r in lines] == [r.data for r in kinesis]


def test_full_call_is_a_realistic_whole_call(full_call: list[dict[str, Any]]) -> None:
    assert full_call[0]["EventType"] == "STARTED"
    assert full_call[-1]["EventType"] == "COMPLETED"
    assert {e["EventType"] for e in full_call[1:-1]} == {"SEGMENTS"}
    assert 40 <= len(full_call) - 2 <= 80
    transcripts = _segments(full_call, "Transcript")
    assert len(transcripts) >= 40
    assert {t["ParticipantRole"] for t in transcripts} == {"AGENT", "CUSTOMER"}
    assert len({t["Id"] for t in transcripts}) == len(transcripts)
    assert {t["Sentiment"] for t in transcripts} == {"POSITIVE", "NEUTRAL", "NEGATIVE"}
    assert sum(1 for t in transcripts if t.get("IssuesDetected")) >= 2
    for t in transcripts:
        assert 0 <= t["BeginOffsetMillis"] < t["EndOffsetMillis"]
        assert 1_500 <= t["EndOffsetMillis"] - t["BeginOffsetMillis"] <= 12_000
    customer_text = " ".join(t["Content"] for t in transcripts if t["ParticipantRole"] == "CUSTOMER")
    assert "4111 1111 1111 1111" in customer_text and "123-45-6789" in customer_text
    assert 2 <= len(_segments(full_call, "Categories")) <= 3
    [summary] = _segments(full_call, "PostContactSummary")
    assert summary["Status"] == "COMPLETED" and summary["Content"]
    assert "PostContactSummary" in full_call[-2]["Segments"][-1]


def test_full_call_utterances_precede_their_transcript(full_call: list[dict[str, Any]]) -> None:
    # Given the segments in stream order
    segments = [s for event in full_call for s in event.get("Segments", [])]
    final_at = {s["Transcript"]["Id"]: i for i, s in enumerate(segments) if "Transcript" in s}
    utterances = [(i, s["Utterance"]) for i, s in enumerate(segments) if "Utterance" in s]

    # Then every partial names a transcript that arrives later, and each turn has 1-3 partials
    assert utterances
    assert all(u["TranscriptId"] in final_at and i < final_at[u["TranscriptId"]] for i, u in utterances)
    per_turn = {tid: [u for _, u in utterances if u["TranscriptId"] == tid] for tid in final_at}
    assert all(1 <= len(parts) <= 3 for parts in per_turn.values())
    transcripts = {s["Transcript"]["Id"]: s["Transcript"] for s in segments if "Transcript" in s}
    for tid, parts in per_turn.items():
        final = transcripts[tid]
        assert " ".join(u["PartialContent"] for u in parts) == final["Content"]
        assert final["BeginOffsetMillis"] <= parts[0]["BeginOffsetMillis"]
        assert parts[-1]["EndOffsetMillis"] <= final["EndOffsetMillis"]
    assert any(e.get("Segments") and all("Utterance" in s for s in e["Segments"]) for e in full_call)


def test_full_call_arrival_times_follow_stream_time() -> None:
    records = load_fixture(EVENTS / "full-call.kinesis.json")
    times = [r.arrival_timestamp for r in records]
    assert times == sorted(times)
    assert 60 < times[-1] - times[0] < 1_800


def test_malformed_envelopes_wrap_poison_between_valid_records() -> None:
    for path in sorted(MALFORMED.glob("*.json")):
        records = load_fixture(path)
        assert records[0].decoded()["EventType"] == "STARTED", path.name
        assert records[-1].decoded()["EventType"] == "SEGMENTS", path.name


def test_each_malformed_kind_is_the_poison_it_claims() -> None:
    def poison(name: str) -> StreamRecord:
        return load_fixture(MALFORMED / f"{name}.json")[1]

    raw = json.loads((MALFORMED / "not-base64.json").read_text(encoding="utf-8"))["Records"][1]["kinesis"]["data"]
    with pytest.raises(ValueError):
        base64.b64decode(raw, validate=True)
    with pytest.raises(UnicodeDecodeError):
        poison("not-utf8").data.decode("utf-8")
    with pytest.raises(ValueError):
        poison("not-json").decoded()
    chat = poison("chat-v2").decoded()
    assert chat["Version"] == "2.0.0" and "StreamingEventType" in chat and "EventType" not in chat
    assert poison("unknown-event-type").decoded()["EventType"] == "PAUSED"
    missing = load_fixture(MALFORMED / "transcript-missing-fields.json")[1:3]
    first, second = (_segments([r.decoded()], "Transcript")[0] for r in missing)
    assert "Content" not in first
    assert second["BeginOffsetMillis"] < 0 and second["EndOffsetMillis"] < 0
    assert isinstance(poison("not-an-object").decoded(), list)


def test_generator_is_deterministic_and_matches_the_committed_files(tmp_path: Path) -> None:
    # Given the committed generator, run twice into fresh directories
    generate = runpy.run_path(str(EVENTS / "generate.py"), run_name="events_generate")["generate"]
    first = generate(tmp_path / "a")
    generate(tmp_path / "b")

    # Then both runs and the committed files are byte-identical, and nothing committed is stale
    written = {p.relative_to(tmp_path / "a") for p in first}
    for relative in written:
        assert (tmp_path / "a" / relative).read_bytes() == (tmp_path / "b" / relative).read_bytes()
        assert (tmp_path / "a" / relative).read_bytes() == (EVENTS / relative).read_bytes(), f"rerun: {relative}"
    # Folders with a generator of their own (events/postcall/generate.py) are that generator's to check.
    own = [p.parent for p in EVENTS.rglob("generate.py") if p.parent != EVENTS]
    committed = {
        p.relative_to(EVENTS)
        for p in EVENTS.rglob("*")
        if p.is_file() and p.suffix != ".py" and not any(folder in p.parents for folder in own)
    }
    assert committed - {Path(".gitignore")} <= written


# load_fixture on each accepted format


def _events(count: int) -> list[dict[str, Any]]:
    base = {"Version": "1.0.0", "Channel": "VOICE", "ContactId": CONTACT_ID}
    return [{**base, "EventType": "STARTED"}] + [{**base, "EventType": "SEGMENTS", "Segments": []}] * (count - 1)


def test_load_bare_json_lines(tmp_path: Path) -> None:
    path = tmp_path / "bare.jsonl"
    path.write_text("".join(json.dumps(e) + "\n" for e in _events(3)) + "\n", encoding="utf-8")
    records = load_fixture(path)
    assert [r.decoded() for r in records] == _events(3)
    assert [int(r.sequence_number) for r in records] == sorted(int(r.sequence_number) for r in records)
    assert {r.partition_key for r in records} == {CONTACT_ID}


def test_load_wrapped_json_lines_keeps_metadata(tmp_path: Path) -> None:
    records = build_records(_events(3), first_sequence_number=10**55, start_timestamp=100.0, seconds_between=2.0)
    path = tmp_path / "wrapped.jsonl"
    path.write_text("".join(to_json_line(r) + "\n" for r in records), encoding="utf-8")
    assert load_fixture(path) == records


def test_load_lambda_event_round_trips(tmp_path: Path) -> None:
    records = build_records(_events(4))
    path = tmp_path / "event.json"
    path.write_text(json.dumps(kinesis_event(records), indent=2), encoding="utf-8")
    assert load_fixture(path) == records


def test_bad_line_names_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps(_events(1)[0]) + "\n{not json\n", encoding="utf-8")
    with pytest.raises(FixtureError, match=r"bad\.jsonl:2: not JSON"):
        load_fixture(path)


def test_non_object_line_is_rejected(tmp_path: Path) -> None:
    path = tmp_path / "list.jsonl"
    path.write_text(json.dumps(_events(1)[0]) + "\n[1, 2]\n", encoding="utf-8")
    with pytest.raises(FixtureError, match=r"list\.jsonl:2"):
        load_fixture(path)
