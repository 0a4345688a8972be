"""The check a replay without --table makes before its first batch: which contacts already have an interaction
(the check against a real emulator over HTTP is in test_replay_report.py; this is its bound and its wording)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest

from tests.events_builder import envelope, transcript
from voicebridge.feed import replay
from voicebridge.feed.fixtures import build_records

pytestmark = pytest.mark.unit


@dataclass
class LookupsOnly:
    """The one ServiceNow call the check makes, answered from a dict; every lookup recorded."""

    interactions: dict[str, str]
    looked_up: list[str] = field(default_factory=list)
    deadline: float | None = None

    def find_interaction(self, client_session_id: str) -> str | None:
        self.looked_up.append(client_session_id)
        return self.interactions.get(client_session_id)


@dataclass
class BridgeWith:
    servicenow: Any


def records_of(contacts: list[str]) -> list[Any]:
    return build_records([envelope(contact, "SEGMENTS", [transcript(f"{contact}-t")]) for contact in contacts])


def test_at_most_the_first_50_contacts_are_looked_up_and_the_warning_says_so(
    capsys: pytest.CaptureFixture[str],
) -> None:
    contacts = [f"c-{index:03d}" for index in range(60)]
    servicenow = LookupsOnly({"c-001": "sys-1", "c-049": "sys-49", "c-055": "sys-55"})

    replay.warn_existing_interactions(BridgeWith(servicenow), records_of(contacts))  # type: ignore[arg-type]

    assert servicenow.looked_up == contacts[: replay.EXISTING_CHECK_LIMIT] == contacts[:50]
    (line,) = capsys.readouterr().err.splitlines()
    assert "for 2 of 50 contact(s) checked (the first 50 of 60): c-001 (sys-1), c-049 (sys-49);" in line
    assert servicenow.deadline is None  # the replay's own requests get the invocation's deadline again


def test_nothing_found_says_nothing(capsys: pytest.CaptureFixture[str]) -> None:
    replay.warn_existing_interactions(BridgeWith(LookupsOnly({})), records_of(["c-1", "c-2"]))  # type: ignore[arg-type]
    assert capsys.readouterr().err == ""


def test_the_lookups_stop_when_their_time_is_up(capsys: pytest.CaptureFixture[str]) -> None:
    contacts = [f"c-{index}" for index in range(10)]
    servicenow = LookupsOnly({contact: f"sys-{contact}" for contact in contacts})
    ticks = iter(range(0, 1000, 4))  # each look at the clock: 4 s later (a slow instance)

    replay.warn_existing_interactions(
        BridgeWith(servicenow),  # type: ignore[arg-type]
        records_of(contacts),
        monotonic=lambda: float(next(ticks)),
    )

    assert replay.EXISTING_CHECK_SECONDS == 10.0
    assert servicenow.looked_up == ["c-0", "c-1"]  # started at 0; looked at 4 and 8; 12 is past the 10 s
    (line,) = capsys.readouterr().err.splitlines()
    assert "for 2 of 2 contact(s) checked (the first 2 of 10)" in line
