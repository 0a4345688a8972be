"""``voicebridge replay --connect`` and ``voicebridge demo``: the recorded call through the real handler with its
lookups on, against the Amazon Connect stand-in and the ServiceNow emulator, both over HTTP."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import requests

from tests.events_builder import call_events, lambda_records
from tests.functional.conftest import Stack
from voicebridge import cli
from voicebridge.connect import load_connect_data, start_connect
from voicebridge.connect.data import parse_connect_data
from voicebridge.connect.session import LOOKUP_ENVIRONMENT
from voicebridge.feed.fixtures import load_fixtures
from voicebridge.feed.replay import ReplayOptions, ServiceNowTarget, replay_session

pytestmark = pytest.mark.functional

EVENTS = Path(__file__).resolve().parents[2] / "events"
FULL_CALL = EVENTS / "full-call.jsonl"
CONTACTS = EVENTS / "connect" / "full-call.json"
CONTACT = "5c3f0c1e-8c1a-4d8e-9b7a-2f1e3d4c5b6a"
INSTANCE = "0f4c2a7e-3b1d-4e5f-8a9b-6c7d8e9f0a1b"


def interaction(target: ServiceNowTarget) -> dict[str, Any]:
    response = requests.get(
        f"{target.url}/api/now/table/interaction",
        params={"sysparm_query": f"client_session_id={CONTACT}"},
        auth=target.basic_auth,
        timeout=10,
    )
    response.raise_for_status()
    (row,) = response.json()["result"]
    result: dict[str, Any] = row
    return result


def test_replay_with_connect_sets_the_callers_number_and_the_agent_as_deployed() -> None:
    # Given the recorded call and what Amazon Connect knows about it; the recording link from DescribeContact
    options = ReplayOptions(
        batch_size=10,
        connect=load_connect_data(CONTACTS),
        extra_environment={"RECORDING_URL_TEMPLATE": "https://recordings.example/{recording_location}"},
    )

    # When it is replayed through the real handler
    with replay_session(load_fixtures([str(FULL_CALL)]), options) as (report, target):
        row = interaction(target)
        # (Contact Lens, meanwhile, holds the segments the stream delivered, and the analysis has ended)
        import boto3

        segments = boto3.client("connect-contact-lens").list_realtime_contact_analysis_segments(
            InstanceId=INSTANCE, ContactId=CONTACT
        )

    # Then the interaction carries the caller's number, the agent's username and the recording
    assert not report.failed and report.contacts[CONTACT].closed
    assert row["user_id"] == row["caller_phone_number"] == "+12025550147"
    assert row["assigned_to"] == "priya.s"
    assert row["recording_url"] == (
        "https://recordings.example/example-connect-recordings/connect/example/CallRecordings/2025/11/27/"
        f"{CONTACT}_20251127T08:00_UTC.wav"
    )
    kinds = [next(iter(segment)) for segment in segments["Segments"]]
    assert (kinds.count("Transcript"), kinds.count("Categories"), kinds.count("PostContactSummary")) == (45, 3, 1)
    assert "NextToken" not in segments


def test_replay_without_connect_keeps_the_fallbacks() -> None:
    with replay_session(load_fixtures([str(FULL_CALL)]), ReplayOptions(batch_size=25)) as (report, target):
        row = interaction(target)

    assert not report.failed
    assert (row["user_id"], row["caller_phone_number"] or None, row["assigned_to"] or None) == ("anonymous", None, None)


def test_replay_with_connect_data_that_lacks_the_contact_falls_back_and_loses_nothing(tmp_path: Path) -> None:
    empty = tmp_path / "contacts.json"
    empty.write_text('{"contacts": {}, "users": {}}', encoding="utf-8")

    with replay_session(
        load_fixtures([str(FULL_CALL)]), ReplayOptions(batch_size=25, connect=load_connect_data(empty))
    ) as (report, target):
        row = interaction(target)

    # ResourceNotFoundException from the stand-in: the fallback caller, every line still sent
    assert not report.failed and report.contacts[CONTACT].sent == 45 and report.contacts[CONTACT].closed
    assert row["user_id"] == "anonymous" and not row["assigned_to"]


def test_demo_prints_the_callers_number_and_the_agent(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["demo"]) == 0

    out = capsys.readouterr().out
    assert "  Amazon Connect: the stand-in, serving " in out
    assert f"· closed_complete · caller +12025550147 · agent priya.s · contact {CONTACT}" in out


def test_demo_without_connect(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["demo", "--no-connect"]) == 0

    out = capsys.readouterr().out
    assert "  Amazon Connect: none" in out
    assert f"· closed_complete · caller anonymous · agent - · contact {CONTACT}" in out


@pytest.mark.parametrize("command", ["replay", "demo"])
def test_a_bad_connect_file_is_one_line_and_exit_2(
    command: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "contacts.json"
    bad.write_text('{"contacts": {"c1": {"InitiationTimestamp": "yesterday"}}}', encoding="utf-8")
    arguments = [command, str(FULL_CALL), "--connect", str(bad)]

    assert cli.main(arguments) == 2

    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        f"voicebridge {command}: --connect {bad}: contacts.c1.InitiationTimestamp: a timestamp must be epoch seconds "
        "(or ISO 8601), got 'yesterday'"
    ]


def test_a_lookup_throttled_past_the_sdks_retries_is_redelivered_then_sets_the_caller(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given the real handler with its lookups on against a stand-in that throttles DescribeContact for now
    from bridge import factory

    data = parse_connect_data(
        {
            "contacts": {
                "c-throttled": {
                    "CustomerEndpoint": {"Type": "TELEPHONE_NUMBER", "Address": "+12025550148"},
                    "AgentInfo": {"Id": "u-1"},
                }
            },
            "users": {"u-1": "marco.r"},
        }
    )
    records = lambda_records(call_events("c-throttled", 2))
    with start_connect(data) as connect:
        for name, value in {**connect.client_environment(), **LOOKUP_ENVIRONMENT}.items():
            monkeypatch.setenv(name, value)
        factory.reset()
        connect.throttle(100, "DescribeContact")

        # When the batch arrives while throttled, and is redelivered once Connect answers again
        first = stack.invoke(records)
        throttled = connect.stats()["DescribeContact"].get(429, 0)
        interactions_while_throttled = stack.interactions("c-throttled")
        connect.clear_throttles()
        second = stack.invoke(records)

    # Then the first delivery is handed back (after the SDK's own retries) without opening anything, and the
    # redelivery opens the interaction with the caller's number and the agent, every line once
    assert first["batchItemFailures"] and throttled > 1 and interactions_while_throttled == []
    assert second == {"batchItemFailures": []}
    (row,) = stack.interactions("c-throttled")
    assert row["user_id"] == "+12025550148" and row["assigned_to"] == "marco.r"
    assert stack.transcript_ids("c-throttled") == ["c-throttled-t0000", "c-throttled-t0001"]
