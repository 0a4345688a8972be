"""The stand-in's data file: what it accepts, the one line it says about what it does not, and the demo's file."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from voicebridge.connect import ConnectDataError, load_connect_data
from voicebridge.connect.data import parse_connect_data
from voicebridge.feed.fixtures import load_fixtures

pytestmark = pytest.mark.unit

EVENTS = Path(__file__).resolve().parents[2] / "events"


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ([], 'expected an object {"contacts": {...}, "users": {...}, "attributes": {...}}'),
        ({"contact": {}}, "unknown top-level keys ['contact']"),
        ({"contacts": []}, "contacts must be an object of objects keyed by id"),
        ({"contacts": {"c1": {"Id": "c2"}}}, "contacts.c1: Id 'c2' differs from its key"),
        (
            {"contacts": {"c1": {"AgentInfo": {"ConnectedToAgentTimestamp": True}}}},
            "contacts.c1.AgentInfo.ConnectedToAgentTimestamp: a timestamp must be epoch seconds (or ISO 8601), "
            "got True",
        ),
        ({"attributes": {"c1": {"Tier": 3}}}, "attributes.c1: every attribute value must be a string"),
        ({"segments": {"c1": [{"Utterance": {}}]}}, "segments.c1: expected a list of segments, each one of"),
        ({"instance_id": ""}, "instance_id must be a non-empty string"),
    ],
)
def test_what_it_refuses_is_named(document: Any, message: str) -> None:
    with pytest.raises(ConnectDataError) as raised:
        parse_connect_data(document)

    assert str(raised.value).startswith(message)


def test_a_file_that_is_not_json_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "contacts.json"
    path.write_text("{nope", encoding="utf-8")

    with pytest.raises(ConnectDataError, match=rf"^{path}: not a JSON document"):
        load_connect_data(path)


def test_ids_timestamps_and_bare_usernames_are_normalised() -> None:
    data = parse_connect_data(
        {
            "contacts": {"c1": {"InitiationTimestamp": "2025-11-27T08:00:00Z", "Recordings": [{"StartTimestamp": 5}]}},
            "users": {"u1": "priya.s"},  # voicebridge backfill's file names users this way
        }
    )

    assert data.contacts["c1"] == {
        "Id": "c1",
        "InitiationTimestamp": 1764230400.0,
        "Recordings": [{"StartTimestamp": 5}],
    }
    assert data.users == {"u1": {"Id": "u1", "Username": "priya.s"}}


def test_backfills_contacts_file_loads_too() -> None:
    data = load_connect_data(EVENTS / "postcall" / "connect-contacts.json")

    assert data.contacts and all(isinstance(c["InitiationTimestamp"], float) for c in data.contacts.values())


def test_the_demos_file_describes_the_recorded_call() -> None:
    # Given the recorded call and the stand-in's data for it
    events = [record.decoded() for record in load_fixtures([str(EVENTS / "full-call.jsonl")])]
    data = load_connect_data(EVENTS / "connect" / "full-call.json")
    document = json.loads((EVENTS / "connect" / "full-call.json").read_text(encoding="utf-8"))

    # Then it knows that contact on that instance, its caller, its agent (a user it also knows) and a recording
    contact = data.contacts[events[0]["ContactId"]]
    assert data.instance_id == events[0]["InstanceId"]
    assert contact["CustomerEndpoint"] == {"Type": "TELEPHONE_NUMBER", "Address": "+12025550147"}
    assert data.users[contact["AgentInfo"]["Id"]]["Username"] == "priya.s"
    assert contact["Recordings"][0]["Location"].endswith(f"{events[0]['ContactId']}_20251127T08:00_UTC.wav")
    # the file says epoch seconds, the contract's form, so loading changes nothing
    assert document["contacts"] == data.contacts
