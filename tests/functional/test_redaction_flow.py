"""RedactContent through the real handler: moto for AWS, the ServiceNow emulator over real HTTP, sys_cs_message read
back through the Table API. The recorded demo call holds a card number and an SSN (events/full-call.jsonl)."""

from __future__ import annotations

import io
import json
import logging
import re

import pytest

from tests.events_builder import envelope, lambda_records
from tests.functional.conftest import Stack
from voicebridge import cli
from voicebridge.feed.fixtures import load_fixture

pytestmark = pytest.mark.functional
FIXTURE = "events/full-call.jsonl"
# What the demo call says aloud, as Contact Lens transcribed it (events/full-call.jsonl).
CARD, SSN, PHONE = "4111 1111 1111 1111", "123-45-6789", "555 201 0147"


def digits_of(text: str) -> str:
    return re.sub(r"\D", "", text)


def run_full_call(stack: Stack) -> list[dict[str, str]]:
    records = [r.to_lambda_record() for r in load_fixture(FIXTURE)]
    for start in range(0, len(records), 10):
        assert stack.invoke(records[start : start + 10]) == {"batchItemFailures": []}
    (interaction,) = stack.table("interaction")
    return stack.messages(interaction["client_session_id"])


def test_fixture_really_carries_the_card_and_the_ssn() -> None:
    # Without this the tests below would pass vacuously if the fixture changed.
    contents = " ".join(r.data.decode() for r in load_fixture(FIXTURE))
    assert CARD in contents and SSN in contents and PHONE in contents


def test_pci_leaves_no_card_number_or_ssn_in_sys_cs_message(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REDACT_CONTENT", "pci")
    messages = run_full_call(stack)
    assert len(messages) == 49  # nothing dropped: every turn and note is still there
    payloads = [m["payload"] for m in messages]
    for payload in payloads:
        assert "4111111111111111" not in digits_of(payload), payload
        assert "123456789" not in digits_of(payload), payload
    assert "Sure, I wrote it down at home. It's [PII:CARD]." in payloads
    assert "I'll just give you the whole thing, it's [PII:SSN]." in payloads
    # pci masks only cards and SSNs: the phone number and the plain numbers of the call are as spoken.
    joined = "\n".join(payloads)
    assert PHONE in joined and "389 dollars" in joined and "D774021" in joined and "ending in 1111" in joined
    assert "1870 Cedar Lane, Springfield, 62704" in joined and "4 dollars 50" in joined


def test_pii_also_masks_the_phone_number(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REDACT_CONTENT", "pii")
    payloads = [m["payload"] for m in run_full_call(stack)]
    assert "Yes, that's my cell, [PII:PHONE]." in payloads
    assert not any(PHONE in p or CARD in p or SSN in p for p in payloads)


def test_none_is_todays_behaviour(stack: Stack) -> None:
    joined = "\n".join(m["payload"] for m in run_full_call(stack))
    assert CARD in joined and SSN in joined and "[PII:" not in joined


def test_summary_note_and_issue_offsets_are_masked_consistently(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REDACT_CONTENT", "pci")
    content = "My card 4111-1111-1111-1111 was charged twice and I am really upset"
    upset = content.index("really upset")
    turn = {
        "Transcript": {
            "Id": "t-issue",
            "ParticipantId": "CUSTOMER",
            "ParticipantRole": "CUSTOMER",
            "Content": content,
            "BeginOffsetMillis": 10,
            "EndOffsetMillis": 900,
            "Sentiment": "NEGATIVE",
            "IssuesDetected": [{"CharacterOffsets": {"BeginOffsetChar": upset, "EndOffsetChar": upset + 12}}],
        }
    }
    summary = {"PostContactSummary": {"Status": "COMPLETED", "Content": "Customer gave SSN 123 45 6789 to verify."}}
    events = [envelope("c-red", "STARTED"), envelope("c-red", "SEGMENTS", [turn, summary])]
    assert stack.invoke(lambda_records(events)) == {"batchItemFailures": []}
    turn_row, note_row = stack.messages("c-red")
    assert turn_row["payload"] == "My card [PII:CARD] was charged twice and I am really upset"
    attributes = {item["key"]: item["value"] for item in json.loads(turn_row["attributes"])}
    begin, end = (int(part) for part in attributes["issuesDetected"].split("-"))
    assert turn_row["payload"][begin:end] == "really upset"
    assert note_row["payload"] == "Post-contact summary: Customer gave SSN [PII:SSN] to verify."
    assert note_row["is_internal"] == "true"


def test_segments_redacted_is_published_and_nothing_masked_is_logged(
    stack: Stack, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from bridge.log import logger

    monkeypatch.setenv("REDACT_CONTENT", "pci")
    monkeypatch.setenv("POWERTOOLS_METRICS_DISABLED", "false")
    sink = io.StringIO()
    handler = logging.StreamHandler(sink)
    handler.setFormatter(logger.registered_formatter)
    logger._logger.addHandler(handler)
    previous = logger.log_level
    logger.setLevel("DEBUG")
    try:
        run_full_call(stack)
        records = [r.to_lambda_record() for r in load_fixture(FIXTURE)]
        stack.invoke(records[:20])  # delivered again: duplicates, nothing masked a second time
    finally:
        logger.setLevel(previous)
        logger._logger.removeHandler(handler)
    output = capsys.readouterr().out
    documents = [json.loads(line) for line in output.splitlines() if '"_aws"' in line]
    redacted = [value for d in documents for value in d.get("SegmentsRedacted", [])]
    assert sum(redacted) == 2  # the card turn and the SSN turn, counted once
    logged = sink.getvalue() + output
    assert '"message":"messages sent"' in logged  # the capture saw the bridge's DEBUG lines
    for secret in (CARD, SSN, "4111111111111111", "[PII:"):
        assert secret not in logged
    assert not re.search(r"(?<!\d)123456789(?!\d)", logged)  # the SSN alone, not inside the account id 123456789012


@pytest.mark.parametrize(("mode", "masked", "clear"), [("pci", ["[PII:CARD]", "[PII:SSN]"], [PHONE])])
def test_demo_redact_flag_prints_what_servicenow_stored(
    capsys: pytest.CaptureFixture[str], mode: str, masked: list[str], clear: list[str]
) -> None:
    # `voicebridge demo --redact pci`: the real handler against the embedded emulator; the transcript printed is
    # the one read back from sys_cs_message through the Table API.
    assert cli.main(["demo", "--redact", mode]) == 0
    out = capsys.readouterr().out
    assert f"RedactContent={mode}" in out
    transcript = out[out.index("in sys_cs_message") :]
    assert CARD not in transcript and SSN not in transcript
    assert all(placeholder in transcript for placeholder in masked)
    assert all(value in transcript for value in clear)


def test_demo_rejects_an_unknown_mode(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        cli.main(["demo", "--redact", "pan"])
    assert exited.value.code == 2
    assert "invalid choice: 'pan'" in capsys.readouterr().err
