"""Synthetic calls (voicebridge.soak.synth): deterministic, well-formed, realistic cadence, mergeable."""

from __future__ import annotations

import json
from typing import Any

import pytest

from voicebridge.feed.fixtures import build_records, from_lambda_record, kinesis_event
from voicebridge.soak.synth import SyntheticCall, interleave_calls, interleave_with_times, synthesize_call

pytestmark = pytest.mark.unit

TRANSCRIPT_FIELDS = {"Id", "ParticipantId", "ParticipantRole", "Content", "BeginOffsetMillis", "EndOffsetMillis"}


def _segments(call: SyntheticCall) -> list[dict[str, Any]]:
    return [segment for event in call.events for segment in event.get("Segments", [])]


def _of(call: SyntheticCall, kind: str) -> list[dict[str, Any]]:
    return [segment[kind] for segment in _segments(call) if kind in segment]


@pytest.fixture(scope="module")
def call() -> SyntheticCall:
    return synthesize_call(seed=42)


def test_same_seed_same_call_different_seed_different_call() -> None:
    first, again, other = synthesize_call(7), synthesize_call(7), synthesize_call(8)
    assert first == again
    assert json.dumps(first.events) == json.dumps(again.events)
    assert first.contact_id != other.contact_id and first.events != other.events


@pytest.mark.parametrize("turns", [0, 1, 2, 13, 60])
def test_transcript_count_equals_turns(turns: int) -> None:
    call = synthesize_call(seed=turns, turns=turns)
    assert len(call.transcripts) == turns
    assert _of(call, "Transcript") == call.transcripts
    assert call.events[0]["EventType"] == "STARTED" and call.events[-1]["EventType"] == "COMPLETED"


def test_transcripts_are_well_formed(call: SyntheticCall) -> None:
    for t in call.transcripts:
        assert TRANSCRIPT_FIELDS <= set(t)
        assert t["Content"] and t["ParticipantRole"] in {"AGENT", "CUSTOMER"}
        assert t["ParticipantId"] == t["ParticipantRole"]
        assert t["Sentiment"] in {"POSITIVE", "NEUTRAL", "NEGATIVE"}
        begin, end = t["BeginOffsetMillis"], t["EndOffsetMillis"]
        assert isinstance(begin, int) and isinstance(end, int) and 0 <= begin <= end
        assert 1_500 <= end - begin <= 12_000
        for issue in t.get("IssuesDetected", []):
            offsets = issue["CharacterOffsets"]
            assert 0 <= offsets["BeginOffsetChar"] < offsets["EndOffsetChar"] <= len(t["Content"])


def test_realistic_mix(call: SyntheticCall) -> None:
    roles = [t["ParticipantRole"] for t in call.transcripts]
    assert set(roles) == {"AGENT", "CUSTOMER"}
    assert any(a == b for a, b in zip(roles, roles[1:], strict=False)), "some same-speaker consecutive turns"
    assert sum(a != b for a, b in zip(roles, roles[1:], strict=False)) > len(roles) // 2, "mostly alternating"
    assert {t["Sentiment"] for t in call.transcripts} == {"POSITIVE", "NEUTRAL", "NEGATIVE"}
    assert any(ch.isdigit() for t in call.transcripts for ch in t["Content"])
    assert 2 <= len(_of(call, "Categories")) <= 3
    assert len(_of(call, "PostContactSummary")) == 1
    segment_events = [e for e in call.events if e["EventType"] == "SEGMENTS"]
    assert all(e["Segments"] for e in segment_events)
    assert any(all("Utterance" in s for s in e["Segments"]) for e in segment_events), "utterance-only events"


def test_ids_are_unique_and_uuid_shaped(call: SyntheticCall) -> None:
    ids = [t["Id"] for t in call.transcripts] + [u["Id"] for u in _of(call, "Utterance")]
    ids += [call.contact_id, call.instance_id]
    assert len(ids) == len(set(ids))
    assert all(len(i) == 36 and i[14] == "4" for i in ids)
    assert {e["ContactId"] for e in call.events} == {call.contact_id}


def test_utterances_precede_their_transcript_and_fragment_it(call: SyntheticCall) -> None:
    segments = _segments(call)
    final_at = {s["Transcript"]["Id"]: i for i, s in enumerate(segments) if "Transcript" in s}
    partials: dict[str, list[dict[str, Any]]] = {}
    for index, segment in enumerate(segments):
        if "Utterance" in segment:
            utterance = segment["Utterance"]
            assert index < final_at[utterance["TranscriptId"]]
            partials.setdefault(utterance["TranscriptId"], []).append(utterance)
    for transcript in call.transcripts:
        parts = partials[transcript["Id"]]
        assert 1 <= len(parts) <= 3
        assert " ".join(p["PartialContent"] for p in parts) == transcript["Content"]
        assert all(p["ParticipantRole"] == transcript["ParticipantRole"] for p in parts)
        assert transcript["BeginOffsetMillis"] <= parts[0]["BeginOffsetMillis"]
        assert parts[-1]["EndOffsetMillis"] == transcript["EndOffsetMillis"]


def test_options_shape_the_call() -> None:
    bare = synthesize_call(3, turns=10, with_categories=False, with_summary=False, utterances_per_turn=(0, 0))
    assert not _of(bare, "Categories") and not _of(bare, "PostContactSummary") and not _of(bare, "Utterance")
    failed = synthesize_call(3, turns=10, end="FAILED", contact_id="my-contact")
    assert failed.events[-1]["EventType"] == "FAILED" and failed.contact_id == "my-contact"
    assert _of(failed, "PostContactSummary")[0]["Status"] == "FAILED"
    with pytest.raises(ValueError, match="end"):
        synthesize_call(3, end="PAUSED")


def test_event_times_are_monotonic_and_records_build(call: SyntheticCall) -> None:
    assert len(call.event_times) == len(call.events)
    assert call.event_times == sorted(call.event_times) and call.event_times[0] == 0.0
    assert 120 < call.duration_seconds < 1_200
    records = kinesis_event(build_records(call.events))["Records"]
    assert [from_lambda_record(r).decoded() for r in records] == call.events


def test_interleave_preserves_per_call_order_and_every_event() -> None:
    calls = [synthesize_call(seed, turns=20) for seed in range(4)]
    merged = interleave_with_times(calls, seed=1)

    assert len(merged) == sum(len(c.events) for c in calls)
    times = [t for t, _ in merged]
    assert times == sorted(times) and times[0] == 0.0
    for c in calls:
        mine = [event for _, event in merged if event["ContactId"] == c.contact_id]
        assert len(mine) == len(c.events) and all(a is b for a, b in zip(mine, c.events, strict=True))
    # Calls run concurrently: the first quarter of the stream already mixes contacts, starts are staggered.
    assert len({e["ContactId"] for _, e in merged[: len(merged) // 4]}) > 1
    starts = [t for t, e in merged if e["EventType"] == "STARTED"]
    assert starts == sorted(starts) and len(set(starts)) == len(calls)
    assert interleave_calls(calls, seed=1) == [e for _, e in merged]
    assert interleave_with_times(calls, seed=1) == merged
