"""Which S3 keys are analysis files, the day prefixes the backfill lists, and both S3 event shapes."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

import pytest

from bridge.postcall.keys import AnalysisVariant, day_prefixes, normalise_prefix, parse_key
from bridge.postcall.s3events import ObjectRef, UnrecognisedEventError, object_refs

CONTACT = "0c129ed7-5c5a-42af-ba83-e7c52c6b035e"
RAW = f"Analysis/Voice/2025/01/23/{CONTACT}_analysis_2025-01-23T07:20:13Z.json"
REDACTED = f"Analysis/Voice/Redacted/2025/01/23/{CONTACT}_analysis_redacted_2025-01-23T07:20:13Z.json"


def test_raw_and_redacted_keys_parse_with_contact_day_and_timestamp() -> None:
    raw, redacted = parse_key(RAW), parse_key(REDACTED)
    assert raw is not None and redacted is not None
    assert (raw.contact_id, raw.variant, raw.day) == (CONTACT, AnalysisVariant.RAW, date(2025, 1, 23))
    assert redacted.variant is AnalysisVariant.REDACTED
    assert raw.written_at == datetime(2025, 1, 23, 7, 20, 13, tzinfo=UTC)
    assert redacted.redacted_recording_key == (
        f"Analysis/Voice/Redacted/2025/01/23/{CONTACT}_call_recording_redacted_2025-01-23T07:20:13Z.wav"
    )
    assert raw.redacted_recording_key is None


def test_a_prefix_before_analysis_is_accepted() -> None:
    parsed = parse_key("connect/my-instance/" + RAW)
    assert parsed is not None and parsed.prefix == "connect/my-instance/"


@pytest.mark.parametrize(
    "key",
    [
        f"Analysis/Voice/Redacted/2025/01/23/{CONTACT}_call_recording_redacted_2025-01-23T07:20:13Z.wav",
        f"Analysis/Chat/2025/01/23/{CONTACT}_analysis_2025-01-23T07:20:13Z.json",
        f"Analysis/Email/2025/01/23/{CONTACT}_analysis_2025-01-23T07:20:13Z.json",
        f"Analysis/Voice/Redacted/2025/01/23/{CONTACT}_analysis_2025-01-23T07:20:13Z.json",  # folder/name disagree
        f"Analysis/Voice/2025/01/23/{CONTACT}_analysis_redacted_2025-01-23T07:20:13Z.json",
        f"Analysis/Voice/2025/13/45/{CONTACT}_analysis_2025-01-23T07:20:13Z.json",  # no such day
        f"XAnalysis/Voice/2025/01/23/{CONTACT}_analysis_2025-01-23T07:20:13Z.json",
    ],
)
def test_other_keys_are_not_analysis_files(key: str) -> None:
    assert parse_key(key) is None


def test_day_prefixes_list_one_folder_per_day_never_the_bucket() -> None:
    assert day_prefixes("", AnalysisVariant.REDACTED, date(2025, 12, 31), date(2026, 1, 2)) == [
        "Analysis/Voice/Redacted/2025/12/31/",
        "Analysis/Voice/Redacted/2026/01/01/",
        "Analysis/Voice/Redacted/2026/01/02/",
    ]
    assert day_prefixes("/connect/x", AnalysisVariant.RAW, date(2025, 1, 1), date(2025, 1, 1)) == [
        "connect/x/Analysis/Voice/2025/01/01/"
    ]
    assert normalise_prefix("connect/x/Analysis/Voice/") == "connect/x/"
    assert normalise_prefix("") == ""


def test_an_eventbridge_object_created_event_names_its_object() -> None:
    event: dict[str, Any] = {
        "version": "0",
        "detail-type": "Object Created",
        "source": "aws.s3",
        "detail": {"bucket": {"name": "recordings"}, "object": {"key": REDACTED, "etag": "abc", "size": 10}},
    }
    assert object_refs(event) == [ObjectRef("recordings", REDACTED, "abc")]
    encoded = {**event, "detail": {"bucket": {"name": "recordings"}, "object": {"key": REDACTED.replace(":", "%3A")}}}
    assert object_refs(encoded)[0].key == REDACTED


def test_a_classic_s3_notification_is_url_decoded() -> None:
    event = {
        "Records": [
            {
                "eventSource": "aws:s3",
                "eventName": "ObjectCreated:Put",
                "s3": {"bucket": {"name": "recordings"}, "object": {"key": RAW.replace(":", "%3A"), "eTag": "e"}},
            },
            {
                "eventSource": "aws:s3",
                "eventName": "ObjectRemoved:Delete",
                "s3": {"bucket": {"name": "r"}, "object": {"key": "k"}},
            },
        ]
    }
    assert object_refs(event) == [ObjectRef("recordings", RAW, "e")]
    plus = {"Records": [{"s3": {"bucket": {"name": "b"}, "object": {"key": "my+prefix/" + RAW}}}]}
    assert object_refs(plus)[0].key == "my prefix/" + RAW


def test_test_events_and_other_detail_types_name_nothing() -> None:
    assert object_refs({"Event": "s3:TestEvent", "Bucket": "b"}) == []
    assert object_refs({"source": "aws.s3", "detail-type": "Object Deleted", "detail": {}}) == []


@pytest.mark.parametrize(
    "event",
    [
        {"hello": "world"},
        {"Records": [{"kinesis": {}}]},
        {"source": "aws.s3", "detail-type": "Object Created", "detail": {"bucket": {}}},
        ["not", "an", "object"],
    ],
)
def test_unrecognised_events_are_errors(event: Any) -> None:
    with pytest.raises(UnrecognisedEventError):
        object_refs(event)
