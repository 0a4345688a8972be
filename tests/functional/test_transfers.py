"""Issue 10 §2-3: a transferred call is one interaction on one timeline, closed once, when its last leg ends.
Through ``voicebridge replay --connect``: the real handler, the Amazon Connect stand-in and the ServiceNow emulator,
all over HTTP."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest
import requests

from tests.events_builder import INSTANCE_ID, envelope, transcript
from tests.functional.conftest import Stack
from voicebridge.connect.data import parse_connect_data
from voicebridge.feed.fixtures import StreamRecord, build_records
from voicebridge.feed.replay import ReplayOptions, ServiceNowTarget, replay_session

pytestmark = pytest.mark.functional

ROOT = "aaaaaaaa-0000-4000-8000-000000000001"
LEG = "aaaaaaaa-0000-4000-8000-000000000002"
PLAIN = "bbbbbbbb-0000-4000-8000-000000000003"
MONITOR = "cccccccc-0000-4000-8000-000000000004"
T0 = 1_764_230_400.0
AGENT1, AGENT2 = "a1a1a1a1-0000-4000-8000-0000000000a1", "a2a2a2a2-0000-4000-8000-0000000000a2"


def contact(
    contact_id: str, method: str, initiated: float, agent: str | None, connected: float | None, **extra: Any
) -> dict[str, Any]:
    item: dict[str, Any] = {
        "Id": contact_id,
        "InitiationMethod": method,
        "Channel": "VOICE",
        "InitiationTimestamp": initiated,
        "CustomerEndpoint": {"Type": "TELEPHONE_NUMBER", "Address": "+12025550147"},
        **extra,
    }
    if agent:
        item["AgentInfo"] = {"Id": agent, "ConnectedToAgentTimestamp": connected}
    return item


CONNECT = parse_connect_data(
    {
        "instance_id": INSTANCE_ID,
        "contacts": {
            # The first agent answers 10 s in; 60 s later (70 s in) the call is warm-transferred to a second agent.
            ROOT: contact(ROOT, "INBOUND", T0, AGENT1, T0 + 10, DisconnectTimestamp=T0 + 90),
            LEG: contact(
                LEG,
                "TRANSFER",
                T0 + 65,
                AGENT2,
                T0 + 70,
                InitialContactId=ROOT,
                PreviousContactId=ROOT,
                DisconnectTimestamp=T0 + 150,
            ),
            PLAIN: contact(PLAIN, "INBOUND", T0, AGENT1, T0 + 5, DisconnectTimestamp=T0 + 60),
            MONITOR: contact(MONITOR, "MONITOR", T0 + 20, None, None, InitialContactId=ROOT),
        },
        "users": {
            AGENT1: {"Id": AGENT1, "Username": "priya.s"},
            AGENT2: {"Id": AGENT2, "Username": "marco.r"},
        },
    }
)


def turns(contact_id: str, count: int, first_begin: int) -> list[dict[str, Any]]:
    return [
        transcript(
            f"{contact_id[-2:]}-t{i}",
            f"line {i} of {contact_id[-2:]}",
            "AGENT" if i % 2 else "CUSTOMER",
            begin=first_begin + i * 5000,
            end=first_begin + i * 5000 + 4000,
        )
        for i in range(count)
    ]


def timed(events: list[tuple[float, dict[str, Any]]]) -> list[StreamRecord]:
    """Records in the given order, each arriving at its own time."""
    records = build_records([event for _, event in events])
    return [replace(record, arrival_timestamp=at) for record, (at, _) in zip(records, events, strict=True)]


def warm_transfer(leg_first: bool = False) -> list[StreamRecord]:
    root_turns, leg_turns = turns(ROOT, 4, 1000), turns(LEG, 3, 500)
    root = [(T0 + 1, envelope(ROOT, "STARTED"))] + [
        (T0 + 12 + 5 * i, envelope(ROOT, "SEGMENTS", [t])) for i, t in enumerate(root_turns)
    ]
    # Leg 2 starts while leg 1 is still on (a warm transfer): its STARTED before leg 1's COMPLETED.
    leg = [(T0 + 66, envelope(LEG, "STARTED"))] + [
        (T0 + 72 + 5 * i, envelope(LEG, "SEGMENTS", [t])) for i, t in enumerate(leg_turns)
    ]
    ends = [(T0 + 91, envelope(ROOT, "COMPLETED")), (T0 + 151, envelope(LEG, "COMPLETED"))]
    plain = [
        (T0 + 2, envelope(PLAIN, "STARTED")),
        (T0 + 8, envelope(PLAIN, "SEGMENTS", turns(PLAIN, 2, 1000))),
        (T0 + 61, envelope(PLAIN, "COMPLETED")),
    ]
    monitor = [(T0 + 21, envelope(MONITOR, "STARTED")), (T0 + 25, envelope(MONITOR, "SEGMENTS", turns(MONITOR, 1, 0)))]
    ordered = sorted(root + leg + ends + plain + monitor, key=lambda pair: pair[0])
    if leg_first:  # leg 2's records reach the bridge first (another shard, or a replayed capture in another order)
        ordered = [pair for pair in ordered if pair[1]["ContactId"] == LEG] + [
            pair for pair in ordered if pair[1]["ContactId"] != LEG
        ]
    records = timed(ordered)
    return records + records[3:8]  # and a slice redelivered


def table(target: ServiceNowTarget, name: str, query: str) -> list[dict[str, str]]:
    response = requests.get(
        f"{target.url}/api/now/table/{name}", params={"sysparm_query": query}, auth=target.basic_auth, timeout=10
    )
    response.raise_for_status()
    rows: list[dict[str, str]] = response.json()["result"]
    return rows


@pytest.mark.parametrize("leg_first", [False, True], ids=["in-order", "leg-2-first"])
def test_a_warm_transferred_call_is_one_interaction_on_one_timeline(leg_first: bool) -> None:
    options = ReplayOptions(batch_size=3, connect=CONNECT)
    with replay_session(warm_transfer(leg_first), options) as (report, target):
        calls = table(target, "interaction", f"client_session_idIN{ROOT},{LEG}")
        plain = table(target, "interaction", f"client_session_id={PLAIN}")
        monitor = table(target, "interaction", f"client_session_id={MONITOR}")
        (call,) = calls
        messages = table(target, "sys_cs_message", f"conversation={call['channel_metadata_document']}^ORDERBYsequence")

    assert not report.failed, report
    # One interaction, keyed by the root contact, with the caller and the first agent
    assert call["client_session_id"] == ROOT and call["state"] == "closed_complete"
    assert call["caller_phone_number"] == "+12025550147" and call["assigned_to"] == "priya.s"
    # Every line once, on the call's timeline: leg 2's offsets moved by its anchor less the root's (70 s - 10 s)
    lines = [m for m in messages if m["is_internal"] == "false"]
    ids = [m["source_message_id"] for m in lines]
    assert sorted(ids) == sorted([f"01-t{i}" for i in range(4)] + [f"02-t{i}" for i in range(3)])
    assert ids == [f"01-t{i}" for i in range(4)] + [f"02-t{i}" for i in range(3)]  # Agent Workspace order
    leg_begins = [int(m["begin_offset_millis"]) for m in lines if m["source_message_id"].startswith("02-")]
    assert leg_begins == [60_000 + 500 + i * 5000 for i in range(3)]
    notes = [m["payload"] for m in messages if m["is_internal"] == "true"]
    assert "Transferred to marco.r \u2014 TRANSFER" in notes
    (recordings,) = [m for m in messages if m["source_message_id"] == f"voicebridge-recordings-{ROOT}"]
    assert LEG in recordings["payload"] and recordings == messages[-1]  # once, at the end of the call
    # A plain call beside it closes at its own COMPLETED; a supervisor listening in opens nothing
    assert [p["state"] for p in plain] == ["closed_complete"]
    assert monitor == []


def test_the_first_legs_completed_does_not_close_the_call() -> None:
    """Leg 1 ends while leg 2 is still on the stream: the interaction stays open until leg 2's COMPLETED."""
    records = warm_transfer()
    cut = next(
        i
        for i, r in enumerate(records)
        if r.decoded().get("ContactId") == LEG and r.decoded().get("EventType") == "COMPLETED"
    )
    with replay_session(records[:cut], ReplayOptions(batch_size=3, connect=CONNECT)) as (report, target):
        (call,) = table(target, "interaction", f"client_session_id={ROOT}")
    assert not report.failed
    assert call["state"] != "closed_complete"  # leg 2 is still live: closing now would strand its last lines


def test_a_leg_that_ends_while_another_is_connected_waits_then_the_sweeper_closes_the_call(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Leg 1 ends while Connect still shows leg 2 connected (a leg that never streams): the call stays open; once
    leg 2 has disconnected, the sweeper closes the call after TransferGraceSeconds, with the same rule."""
    from bridge import factory, sweeper
    from bridge.adapters.dynamodb import DynamoContactStore
    from bridge.ports import ContactDetails
    from tests.events_builder import call_events, lambda_records
    from tests.fakes import FakeConnect
    from voicebridge.feed.replay import ReplayContext

    monkeypatch.setenv("CALLER_LOOKUP", "describe_contact")
    monkeypatch.setenv("AGENT_LOOKUP", "describe_user")
    monkeypatch.setenv("TRANSFER_GRACE_SECONDS", "60")
    factory.reset()
    sweeper.reset()
    root = ContactDetails("+12025550147", AGENT1, initiation_method="INBOUND", initiated_at=T0, agent_connected_at=T0)
    quiet_leg = ContactDetails(
        initial_contact_id=ROOT, initiation_method="TRANSFER", initiated_at=T0 + 60, agent_connected_at=T0 + 61
    )
    connect = FakeConnect(contacts={ROOT: root, LEG: quiet_leg}, usernames={AGENT1: "priya.s"})
    factory.get_bridge().processor.runner.directory.connect = connect
    sweeper.get_sweeper().sweeper.directory.connect = connect

    assert stack.invoke(lambda_records(call_events(ROOT, 2))) == {"batchItemFailures": []}
    (call,) = stack.interactions(ROOT)
    assert call["state"] != "closed_complete"  # leg 2 is connected: the call goes on
    assert sweeper.lambda_handler({"detail-type": "Scheduled Event"}, ReplayContext())["swept"] == 0

    connect.contacts[LEG] = replace(quiet_leg, disconnected_at=T0 + 120)  # leg 2 hangs up; it never streamed
    import boto3

    store = DynamoContactStore(boto3.client("dynamodb"), stack.environment["CONTACT_TABLE"])
    waiting = store.load_many([ROOT])[ROOT]
    assert waiting.close_pending
    store.save(
        waiting.evolve(updated_at=waiting.updated_at - 600, last_arrival=waiting.last_arrival - 600),  # 5-min buckets
        expected_version=waiting.version,
    )
    assert sweeper.lambda_handler({"detail-type": "Scheduled Event"}, ReplayContext())["swept"] == 1
    assert stack.interactions(ROOT)[0]["state"] == "closed_complete"
