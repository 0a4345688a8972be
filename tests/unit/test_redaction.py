"""RedactContent: what is masked, what is left alone, offsets carried over, and the planner/config/metric wiring.

The property tests at the end check the promises the README makes: no Luhn-valid card in a supported form is ever
left in clear text, plain numbers (offsets, prices, dates, times, Luhn-failing order numbers) are untouched, and
redacting twice equals redacting once.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from stdnum import luhn

from bridge.config import load_settings
from bridge.errors import ConfigurationError
from bridge.events import parse_record
from bridge.models import ContactEvent, ContactState, ContactStatus, TranscriptSegment
from bridge.planner import PlanOptions, note_messages, plan_contact, transcript_message
from bridge.processor import BatchResult
from bridge.redaction import PiiKind, RedactionMode, Redactor, redactor_for
from bridge.runner import ContactOutcome
from bridge.telemetry import batch_counts
from tests.events_builder import envelope, lambda_records, transcript

pytestmark = pytest.mark.unit
REPO = Path(__file__).resolve().parents[2]
PCI = Redactor(RedactionMode.PCI)
PII = Redactor(RedactionMode.PII)
C = "contact-1"
DIGIT_NAMES = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]


def masked(text: str, redactor: Redactor = PCI) -> str:
    return redactor.redact(text).text


# --- cards ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "card",
    [
        "4111111111111111",
        "4111 1111 1111 1111",
        "4111-1111-1111-1111",
        "4111 - 1111 - 1111 - 1111",
        "3782 822463 10005",  # American Express, 15 digits in 4-6-5
        "4222222222222",  # 13 digits
        "6011000990139424",
        "4111 1111 1111 1111 003",  # 19 digits (Luhn-valid)
        "four one one one one one one one one one one one one one one one",
        "Four, one, one, one, one, one, one, one, one, one, one, one, one, one, one, one",
        "four-one-one-one-one-one-one-one-one-one-one-one-one-one-one-one",
        "six oh one one zero zero oh nine nine oh one three nine four two four",  # "oh" and "zero" are 0
        "four triple one double one one double one double one one one one one one",  # double/triple
        "4111 one one one one 1111 1111",  # numerals and words mixed
    ],
)
def test_supported_card_forms_are_masked(card: str) -> None:
    assert luhn.is_valid(spelled_digits(card))  # the form is only a test if its digits are a valid card
    result = PCI.redact(f"Sure, it's {card}. Thanks.")
    assert result.text == "Sure, it's [PII:CARD]. Thanks."
    assert result.kinds == {PiiKind.CARD}


def spelled_digits(text: str) -> str:
    """The digits a card form stands for, worked out independently of the redactor."""
    names = {name: str(value) for value, name in enumerate(DIGIT_NAMES)} | {"oh": "0"}
    digits, repeat = [], 1
    for word in text.lower().replace(",", " ").replace("-", " ").split():
        if word in ("double", "triple"):
            repeat = 2 if word == "double" else 3
            continue
        digits.append((names[word] if word in names else word) * repeat)
        repeat = 1
    return "".join(digits)


@pytest.mark.parametrize(
    "text",
    [
        "It's 4111 1111 1111 1112.",  # fails Luhn
        "Order 1234567890123 shipped",  # 13 digits, fails Luhn
        "reference 41111111111111111111 please",  # 20 digits in one group: too long for a card
        "4111 1111 1111 111",  # 15 digits that fail Luhn
        "four one one one",  # too short
        "oneself and someone",  # digit words only as whole words
    ],
)
def test_numbers_that_are_not_cards_stay(text: str) -> None:
    assert masked(text) == text


def test_a_card_next_to_other_numbers_is_masked_whole() -> None:
    # "12345 4111 1111 1111" has 17 digits: if that window happened to pass Luhn, masking only it would leave the
    # card's last group; every window that passes is masked, so the whole card always goes.
    for prefix in ("12345", "7", "99 88"):
        text = f"case {prefix} 4111 1111 1111 1111 2 thanks"
        out = masked(text)
        assert "4111" not in out and "1111" not in out, out


def test_a_card_followed_by_an_ordinal_or_time_is_still_masked() -> None:
    # "5th" is no number token, so it ends the run instead of spoiling it.
    assert masked("it's 4111 1111 1111 1111 5th") == "it's [PII:CARD] 5th"


def test_known_limits_are_as_documented() -> None:
    # README "Redaction": an order number that happens to pass Luhn (1 in 10) is masked like a card ...
    assert masked("order 4111111111111111 shipped") == "order [PII:CARD] shipped"
    # ... digits glued to letters are not a number ...
    assert masked("ref4111111111111111") == "ref4111111111111111"
    # ... and a run of more than 64 number tokens is masked whole without checks (bounded time for any input).
    long_run = " ".join(["7"] * 65)
    assert masked(f"the codes {long_run} done") == "the codes [PII:CARD] done"
    assert masked(" ".join(["7"] * 64)) == " ".join(["7"] * 64)  # 64 sevens: checked, no window passes Luhn


def test_two_cards_in_one_turn() -> None:
    out = masked("old 4111 1111 1111 1111, new 5500-0000-0000-0004.")
    assert out == "old [PII:CARD], new [PII:CARD]."


# --- SSNs -------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("it's 123-45-6789.", "it's [PII:SSN]."),
        ("it's 123 45 6789.", "it's [PII:SSN]."),
        ("my social security number is 123456789", "my social security number is [PII:SSN]"),
        ("SSN: 536904399", "SSN: [PII:SSN]"),
        ("my social is one two three, four five, six seven eight nine", "my social is [PII:SSN]"),
        ("123456789 is my social", "[PII:SSN] is my social"),
    ],
)
def test_ssn_forms_are_masked(text: str, expected: str) -> None:
    result = PCI.redact(text)
    assert result.text == expected and result.kinds == {PiiKind.SSN}


@pytest.mark.parametrize(
    "text",
    [
        "order 123456789 shipped",  # 9 digits without an SSN context
        "123456789",  # the context is the same text: "what is your social?" in the turn before does not count
        "SSN 000-12-3456",  # area 000
        "SSN 666-12-3456",  # area 666
        "SSN 912-34-5678",  # area 9xx
        "SSN 123-00-4567",  # group 00
        "SSN 123-45-0000",  # serial 0000
        "SSN 078-05-1120",  # the published Woolworth wallet number
        "call 123-456-7890",  # 3-3-4 is not 3-2-4
    ],
)
def test_invalid_or_context_free_ssns_stay(text: str) -> None:
    assert masked(text) == text


# --- e-mail and phone (pii only) ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected", "kind"),
    [
        ("mail jordan.ellis+bank@example.co.uk now", "mail [PII:EMAIL] now", PiiKind.EMAIL),
        ("cell 555 201 0147.", "cell [PII:PHONE].", PiiKind.PHONE),
        ("cell 555-201-0147", "cell [PII:PHONE]", PiiKind.PHONE),
        ("cell 555.201.0147", "cell [PII:PHONE]", PiiKind.PHONE),
        ("cell (555) 201-0147", "cell [PII:PHONE]", PiiKind.PHONE),
        ("cell 1-800-555-0199", "cell [PII:PHONE]", PiiKind.PHONE),
        ("cell +1 555 201 0147", "cell [PII:PHONE]", PiiKind.PHONE),
        ("cell +44 20 7946 0958", "cell [PII:PHONE]", PiiKind.PHONE),
        ("cell +15552010147", "cell [PII:PHONE]", PiiKind.PHONE),
    ],
)
def test_pii_adds_email_and_phone(text: str, expected: str, kind: PiiKind) -> None:
    assert masked(text, PCI) == text
    result = PII.redact(text)
    assert result.text == expected and result.kinds == {kind}


@pytest.mark.parametrize(
    "text",
    [
        "order 5552010147",  # a bare 10-digit number: maybe an order number
        "ending in 0147",
        "call 055 201 0147",  # area codes start 2-9
        "call 555 101 0147",  # exchanges start 2-9
        "nine one seven five five five oh one four seven",  # digit words are not phone numbers
        "write to jordan at example dot com",  # spoken e-mail addresses are not detected
        "not@an-address",
    ],
)
def test_things_pii_does_not_call_a_phone_or_address(text: str) -> None:
    assert masked(text, PII) == text


def test_overlapping_finds_leave_no_fragment() -> None:
    # A card number as the local part of an address: one placeholder covers both, nothing of either survives.
    assert masked("x.4111111111111111@example.com", PII) == "[PII:CARD]"


def test_none_changes_nothing() -> None:
    text = "4111 1111 1111 1111, 123-45-6789, a@b.com, 555 201 0147"
    result = Redactor(RedactionMode.NONE).redact(text)
    assert result.text == text and not result.redacted and result.kinds == frozenset()


def test_placeholders_have_one_fixed_form() -> None:
    assert [kind.placeholder for kind in PiiKind] == ["[PII:CARD]", "[PII:SSN]", "[PII:EMAIL]", "[PII:PHONE]"]


# --- offsets ----------------------------------------------------------------------------------------------------


def test_offsets_after_a_masked_value_shift_and_inside_it_snap_to_the_placeholder() -> None:
    text = "It's 4111 1111 1111 1111, locked now."
    result = PCI.redact(text)
    assert result.text == "It's [PII:CARD], locked now."
    begin = text.index("locked")
    assert result.map_range(begin, begin + 6) == (result.text.index("locked"), result.text.index("locked") + 6)
    card = text.index("4111")
    assert result.map_range(card + 2, card + 7) == (5, 15)  # inside: the whole placeholder
    assert result.map_range(0, card + 3) == (0, 15)  # reaching into it: widened to its end
    assert result.map_range(0, 4) == (0, 4)  # before it: unchanged


def test_transcript_message_masks_content_and_moves_issue_offsets() -> None:
    content = "It's 4111 1111 1111 1111 and I am upset about it"
    upset = content.index("upset")
    segment = TranscriptSegment("t1", "CUSTOMER", "CUSTOMER", content, 0, 10, None, ((upset, upset + 5),))
    message = transcript_message(segment, "1", redactor_for(RedactionMode.PCI))
    assert message.content == "It's [PII:CARD] and I am upset about it"
    (attribute,) = [value for key, value in message.attributes if key == "issuesDetected"]
    begin, end = (int(part) for part in attribute.split("-"))
    assert message.content[begin:end] == "upset"
    plain = transcript_message(segment, "1")
    assert plain.content == content and ("issuesDetected", f"{upset}-{upset + 5}") in plain.attributes


# --- planner, notes, metric, config -------------------------------------------------------------------------------


def events_of(payloads: list[dict[str, Any]], first: int = 1000) -> list[ContactEvent]:
    parsed = [parse_record(r) for r in lambda_records(payloads, first_sequence_number=first)]
    assert all(isinstance(p, ContactEvent) for p in parsed)
    return parsed  # type: ignore[return-value]


SUMMARY_WITH_CARD = {"PostContactSummary": {"Status": "COMPLETED", "Content": "Card 4111 1111 1111 1111 locked."}}


def test_plan_masks_turns_and_summary_and_counts_each_masked_message_once() -> None:
    payloads = [
        envelope(C, "STARTED"),
        envelope(C, "SEGMENTS", [transcript("t1", "card 4111-1111-1111-1111"), transcript("t2", "thanks")]),
        envelope(C, "SEGMENTS", [transcript("t3", "SSN 123-45-6789"), SUMMARY_WITH_CARD]),
    ]
    plan = plan_contact(events_of(payloads), None, PlanOptions(redaction=RedactionMode.PCI))
    contents = [m.content for m in plan.messages]
    assert contents == ["card [PII:CARD]", "thanks", "SSN [PII:SSN]", "Post-contact summary: Card [PII:CARD] locked."]
    assert plan.redacted == 3
    # Delivered again: nothing new, nothing counted again.
    state = ContactState(C, ContactStatus.OPEN, 3, "i", "a" * 32, "b" * 32).evolve(
        sent=ContactState(C, ContactStatus.OPEN, 3).sent.with_ids([m.id for m in plan.messages])
    )
    again = plan_contact(events_of(payloads, first=2000), state, PlanOptions(redaction=RedactionMode.PCI))
    assert again.messages == () and again.redacted == 0
    unmasked = plan_contact(events_of(payloads), None)
    assert "4111-1111-1111-1111" in unmasked.messages[0].content and unmasked.redacted == 0


def test_note_id_is_derived_from_the_masked_text() -> None:
    # The id is sent to ServiceNow too: a digest of the card number could be searched for, so it is not taken.
    (event,) = events_of([envelope(C, "SEGMENTS", [SUMMARY_WITH_CARD])])
    other_card = {"PostContactSummary": {"Status": "COMPLETED", "Content": "Card 5500 0000 0000 0004 locked."}}
    (other,) = events_of([envelope(C, "SEGMENTS", [other_card])])
    pci = redactor_for(RedactionMode.PCI)
    (note,) = note_messages(event, 0, pci)
    (other_note,) = note_messages(other, 0, pci)
    assert note.id == other_note.id and note.content == other_note.content
    (plain,) = note_messages(event, 0)
    assert plain.id != note.id


def test_segments_redacted_metric_sums_the_outcomes() -> None:
    outcomes = [ContactOutcome("a", "1", redacted=2), ContactOutcome("b", "2"), ContactOutcome("c", "3", redacted=1)]
    assert batch_counts(BatchResult(outcomes=outcomes))["SegmentsRedacted"] == 3


REQUIRED = {
    "SERVICENOW_URL": "https://example.service-now.com",
    "SERVICENOW_SECRET_ARN": "arn:aws:secretsmanager:us-east-1:123456789012:secret:servicenow-AbCdEf",
    "CONTACT_TABLE": "voicebridge-contacts",
    "PARKING_QUEUE_URL": "https://sqs.us-east-1.amazonaws.com/123456789012/voicebridge-parking",
    "CONNECT_INSTANCE_ALIAS": "example",
}


@pytest.mark.parametrize(("value", "mode"), [("", "none"), ("none", "none"), ("PCI", "pci"), (" pii ", "pii")])
def test_redact_content_setting(value: str, mode: str) -> None:
    assert load_settings({**REQUIRED, "REDACT_CONTENT": value}).redact_content == RedactionMode(mode)
    assert load_settings(REQUIRED).redact_content is RedactionMode.NONE


def test_bad_redact_content_is_named() -> None:
    with pytest.raises(ConfigurationError, match=r"REDACT_CONTENT must be one of none, pci, pii, got 'pan'"):
        load_settings({**REQUIRED, "REDACT_CONTENT": "pan"})


def test_factory_wires_the_setting_to_the_planner(monkeypatch: pytest.MonkeyPatch) -> None:
    from moto import mock_aws

    from bridge import factory
    from bridge.config import Settings

    with mock_aws():
        settings_ = Settings(**{**_settings_fields(), "redact_content": RedactionMode.PII})
        bridge = factory.build_bridge(settings_)
        try:
            assert bridge.processor.runner.options.redaction is RedactionMode.PII
        finally:
            bridge.processor.executor.shutdown(wait=False)  # type: ignore[union-attr]


def _settings_fields() -> dict[str, Any]:
    return {
        "servicenow_url": REQUIRED["SERVICENOW_URL"],
        "servicenow_secret_arn": REQUIRED["SERVICENOW_SECRET_ARN"],
        "contact_table": REQUIRED["CONTACT_TABLE"],
        "parking_queue_url": REQUIRED["PARKING_QUEUE_URL"],
    }


# --- import cost -------------------------------------------------------------------------------------------------


def _modules_after(code: str) -> set[str]:
    script = textwrap.dedent(code) + "\nimport sys\nprint('\\n'.join(sys.modules))\n"
    output = subprocess.run(
        [sys.executable, "-c", script],
        cwd=REPO / "functions" / "bridge",
        capture_output=True,
        text=True,
        check=True,
        env={"PATH": "/usr/bin:/bin", "POWERTOOLS_METRICS_NAMESPACE": "t"},
    ).stdout
    return set(output.split())


def test_stdnum_is_imported_only_when_redaction_is_on() -> None:
    off = _modules_after(
        """
        import bridge.handler, bridge.planner
        from bridge.redaction import Redactor, RedactionMode
        Redactor(RedactionMode.NONE).redact("4111 1111 1111 1111")
        """
    )
    assert "bridge.planner" in off and not any(name.startswith("stdnum") for name in off)
    on = _modules_after(
        """
        from bridge.redaction import Redactor, RedactionMode
        Redactor(RedactionMode.PCI).redact("4111 1111 1111 1111")
        """
    )
    stdnum = {name for name in on if name.startswith("stdnum")}
    # Only the two checks (and the package's own helpers), never the hundreds of other number formats.
    assert stdnum == {"stdnum", "stdnum.exceptions", "stdnum.util", "stdnum.luhn", "stdnum.us", "stdnum.us.ssn"}


# --- properties --------------------------------------------------------------------------------------------------


@st.composite
def luhn_cards(draw: st.DrawFn) -> str:
    length = draw(st.integers(13, 19))
    body = draw(st.text("0123456789", min_size=length - 1, max_size=length - 1))
    return body + luhn.calc_check_digit(body)


@st.composite
def grouped(draw: st.DrawFn, digits: str) -> list[str]:
    groups: list[str] = []
    rest = digits
    while rest:
        size = draw(st.integers(1, min(6, len(rest))))
        groups.append(rest[:size])
        rest = rest[size:]
    return groups


@st.composite
def spoken(draw: st.DrawFn, digits: str) -> str:
    words: list[str] = []
    index = 0
    while index < len(digits):
        digit = digits[index]
        run = len(digits) - index - len(digits[index:].lstrip(digit))
        repeat = draw(st.sampled_from([1, 2, 3])) if run >= 2 else 1
        repeat = min(repeat, run)
        name = draw(st.sampled_from(["zero", "oh"])) if digit == "0" else DIGIT_NAMES[int(digit)]
        name = draw(st.sampled_from([name, name.capitalize(), name.upper()]))
        words.append({1: name, 2: f"double {name}", 3: f"triple {name}"}[repeat])
        index += repeat
    separator = draw(st.sampled_from([" ", ", ", "-", " - "]))
    return separator.join(words)


@st.composite
def card_forms(draw: st.DrawFn) -> tuple[str, str]:
    digits = draw(luhn_cards())
    form = draw(st.sampled_from(["digits", "spaced", "dashes", "words"]))
    if form == "digits":
        return digits, digits
    if form == "words":
        return digits, draw(spoken(digits))
    separator = " " if form == "spaced" else draw(st.sampled_from(["-", " - "]))
    return digits, separator.join(draw(grouped(digits)))


SAFE_WORDS = st.sampled_from(["Sure", "it's", "the", "card", "number", "is", "thanks", "okay", "my", "right."])
prose = st.lists(SAFE_WORDS, max_size=6).map(" ".join)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(card=card_forms(), before=prose, after=prose, mode=st.sampled_from([RedactionMode.PCI, RedactionMode.PII]))
def test_no_luhn_valid_card_in_a_supported_form_is_ever_left_clean(
    card: tuple[str, str], before: str, after: str, mode: RedactionMode
) -> None:
    _, rendered = card
    text = " ".join(part for part in (before, rendered, after) if part)
    result = redactor_for(mode).redact(text)
    begin = len(before) + 1 if before else 0
    covered = [s for s in result.spans if s.begin <= begin and begin + len(rendered) <= s.end]
    assert covered and covered[0].kind is PiiKind.CARD, (text, result.text)
    assert rendered not in result.text


@settings(max_examples=200, deadline=None)
@given(card=card_forms(), neighbour=st.integers(0, 10**8), left=st.booleans())
def test_a_card_beside_another_number_is_still_masked_whole(card: tuple[str, str], neighbour: int, left: bool) -> None:
    _, rendered = card
    text = f"{neighbour} {rendered}" if left else f"{rendered} {neighbour}"
    begin = len(str(neighbour)) + 1 if left else 0
    result = PCI.redact(text)
    assert any(s.begin <= begin and begin + len(rendered) <= s.end for s in result.spans), (text, result.text)


@st.composite
def luhn_failing_order_numbers(draw: st.DrawFn) -> str:
    length = draw(st.integers(13, 19))
    body = draw(st.text("0123456789", min_size=length - 1, max_size=length - 1))
    check = int(luhn.calc_check_digit(body))
    return body + str((check + draw(st.integers(1, 9))) % 10)


plain_numbers = st.one_of(
    st.integers(0, 10**7).map(lambda n: f"at offset {n} ms"),
    st.integers(0, 10**6).map(lambda n: f"BeginOffsetMillis {n}, EndOffsetMillis {n + 1500}"),
    st.builds(lambda d, c: f"that's ${d:,}.{c:02d} today", st.integers(0, 10**7), st.integers(0, 99)),
    st.builds(lambda d, c: f"{d} dollars {c}", st.integers(0, 10**5), st.integers(0, 99)),
    st.dates().map(lambda d: f"on {d.isoformat()}"),
    st.dates().map(lambda d: f"on {d.month}/{d.day}/{d.year}"),
    st.dates().map(lambda d: f"on {d:%B} {d.day}, {d.year}"),
    st.times().map(lambda t: f"at {t:%H:%M} or {t:%H:%M:%S}"),
    luhn_failing_order_numbers().map(lambda n: f"order {n} shipped"),
    st.text("ABCDEFGHJKLMNPQRSTUVWXYZ", min_size=1, max_size=3).flatmap(
        lambda p: st.integers(0, 10**9).map(lambda n: f"reference {p}{n}")
    ),
)


@settings(max_examples=400, deadline=None)
@given(text=plain_numbers, mode=st.sampled_from([RedactionMode.PCI, RedactionMode.PII]))
def test_plain_numbers_are_untouched(text: str, mode: RedactionMode) -> None:
    result = redactor_for(mode).redact(text)
    assert result.text == text and not result.redacted


fragments = st.one_of(
    card_forms().map(lambda card: card[1]),
    st.sampled_from(
        ["123-45-6789", "123 45 6789", "123456789", "SSN", "social", "a@b.co", "x.y@example.com", "555 201 0147"]
    ),
    st.sampled_from(["(555) 201-0147", "+44 20 7946 0958", "oh", "double", "one", "$1,299.00", "2026-12-04"]),
    st.integers(0, 10**20).map(str),
    st.text(max_size=8),
    SAFE_WORDS,
)
joiners = st.sampled_from(["", " ", ", ", ",", ".", "-", " - ", "@", "+", "\n"])


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    parts=st.lists(st.tuples(fragments, joiners), max_size=8),
    mode=st.sampled_from([RedactionMode.PCI, RedactionMode.PII]),
)
def test_redacting_twice_is_redacting_once(parts: list[tuple[str, str]], mode: RedactionMode) -> None:
    text = "".join(fragment + joiner for fragment, joiner in parts)
    redactor = redactor_for(mode)
    once = redactor.redact(text)
    twice = redactor.redact(once.text)
    assert twice.text == once.text and not twice.redacted, (text, once.text, twice.text)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    parts=st.lists(st.tuples(fragments, joiners), max_size=6),
    cuts=st.lists(st.tuples(st.integers(0, 200), st.integers(0, 200)), max_size=4),
)
def test_mapped_offsets_stay_in_range_ordered_and_point_at_the_same_unmasked_text(
    parts: list[tuple[str, str]], cuts: list[tuple[int, int]]
) -> None:
    text = "".join(fragment + joiner for fragment, joiner in parts)
    result = PII.redact(text)
    for a, b in cuts:
        begin, end = sorted((min(a, len(text)), min(b, len(text))))
        new_begin, new_end = result.map_range(begin, end)
        assert 0 <= new_begin <= new_end <= len(result.text)
        if not any(s.begin < end and begin < s.end for s in result.spans):
            assert result.text[new_begin:new_end] == text[begin:end]
        for span in result.spans:  # a range never cuts a placeholder
            assert not (span.new_begin < new_begin < span.new_end or span.new_begin < new_end < span.new_end)
