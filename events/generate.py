"""Regenerate every fixture in events/ (deterministic: fixed seed, fixed timestamps, byte-identical output).

Usage: ``.venv/bin/python events/generate.py [--out DIR]`` (default: this directory). Tests import
:func:`generate` with runpy and compare a fresh run in a temporary directory against the committed files.
"""

from __future__ import annotations

import argparse
import json
import random
from dataclasses import replace
from pathlib import Path
from typing import Any

from voicebridge.feed.fixtures import (
    FIRST_SEQUENCE_NUMBER,
    SEQUENCE_STEP,
    StreamRecord,
    build_records,
    kinesis_event,
    to_json_line,
)
from voicebridge.soak.synth import AGENT, CUSTOMER, CategoryMatch, SyntheticCall, Turn, render_call

SEED = 20251127
CONTACT_ID = "5c3f0c1e-8c1a-4d8e-9b7a-2f1e3d4c5b6a"
INSTANCE_ID = "0f4c2a7e-3b1d-4e5f-8a9b-6c7d8e9f0a1b"
# The malformed envelopes wrap each poison record between two valid records of a healthy contact, so tests can
# check that one bad record neither blocks nor taints the rest of its batch.
HEALTHY_CONTACT_ID = "7d2e9b40-1a6c-4f3e-9d58-3b7a0c1e2f4d"
POISON_CONTACT_ID = "e1a5c3b7-9d2f-4a8e-b6c4-0f1e2d3c4b5a"
START_TIMESTAMP = 1_764_230_400.0  # 2025-11-27T08:00:00Z, the fixtures module's default
# What Amazon Connect knows about the full call (events/connect/full-call.json, served by voicebridge.connect):
# a 555-01xx number is fictional by convention; the agent is the Priya of the dialogue.
CALLER_NUMBER = "+12025550147"
AGENT_USER_ID = "3d8f6a21-4b7c-4e9a-8f1d-2c6b5a4e3f10"
AGENT_USERNAME = "priya.s"
QUEUE_ID = "9a1e7c3b-5d2f-4b8a-9e6c-1f0d2b3a4c5e"
EVENT_INTERVAL_MS = (1_500, 3_500)

A, C = AGENT, CUSTOMER
# A lost wallet: card locked, a fraudulent charge disputed, a replacement shipped. Turns 7 and 9 carry a fake
# card number and SSN-like digits on purpose: the privacy tests grep logs for them.
SCRIPT = [
    Turn(A, "Thank you for calling Example Bank, this is Priya. How can I help you today?", "POSITIVE"),
    Turn(
        C,
        "Hi Priya. I lost my wallet at the train station last night and my debit card was in it.",
        "NEGATIVE",
        issue="I lost my wallet at the train station last night",
    ),
    Turn(A, "I'm sorry to hear that. Let's get the card locked right away so nobody can use it.", "NEUTRAL"),
    Turn(C, "Thank you, I've been panicking since this morning.", "NEGATIVE"),
    Turn(A, "Of course. Can I have your full name, please?"),
    Turn(C, "It's Jordan Ellis."),
    Turn(A, "Thanks, Jordan. To verify your identity, can you read me the card number?"),
    Turn(C, "Sure, I wrote it down at home. It's 4111 1111 1111 1111.", "NEUTRAL"),
    Turn(A, "Thank you. And for security, the last four digits of your social security number?"),
    Turn(C, "I'll just give you the whole thing, it's 123-45-6789.", "NEUTRAL"),
    Turn(A, "Thank you, next time the last four is enough. I've verified the account.", "NEUTRAL"),
    Turn(A, "I can see the debit card ending in 1111. I'm placing a lock on it now.", "NEUTRAL"),
    Turn(C, "Okay. Has anyone used it since last night?", "NEGATIVE"),
    Turn(A, "Let me check the recent transactions for you. One moment, please."),
    Turn(
        A,
        "I see two pending transactions from this morning: 4 dollars 50 at a coffee shop, "
        "and 389 dollars at an electronics store.",
        "NEUTRAL",
    ),
    Turn(
        C,
        "The coffee was me, but I definitely did not buy anything at an electronics store.",
        "NEGATIVE",
        issue="I definitely did not buy anything at an electronics store",
    ),
    Turn(A, "Understood. I'll flag the 389 dollar charge as fraud and open a dispute.", "NEUTRAL"),
    Turn(C, "Will I get that money back?", "NEGATIVE"),
    Turn(A, "Yes. You'll get a provisional credit within two business days while we review the dispute.", "POSITIVE"),
    Turn(C, "That's a relief, thank you.", "POSITIVE"),
    Turn(A, "Your dispute reference number is D774021."),
    Turn(C, "Hold on, let me write that down. D774021. Got it."),
    Turn(A, "Now let's order a replacement card. It will have a new number, so the old one can never be used again."),
    Turn(
        C,
        "Good. Can it come quickly? I don't have any other card with me.",
        "NEGATIVE",
        issue="I don't have any other card with me",
    ),
    Turn(
        A,
        "I can send it by express shipping at no charge. It should arrive in two to three business days.",
        "POSITIVE",
    ),
    Turn(C, "Perfect, let's do that.", "POSITIVE"),
    Turn(A, "Is your mailing address still 42 Harbor View Road, Apartment 5B, Springfield?"),
    Turn(C, "No, I moved in March. The new address is 1870 Cedar Lane, Springfield, 62704.", "NEUTRAL"),
    Turn(A, "Thanks, I've updated the address. Can you confirm the phone number on file, ending in 0147?"),
    Turn(C, "Yes, that's my cell, 555 201 0147."),
    Turn(
        A,
        "Great. In the meantime you can add the new card to your mobile wallet as soon as it's issued, "
        "even before the plastic arrives.",
        "POSITIVE",
    ),
    Turn(C, "Oh, I didn't know that. How do I do that?", "NEUTRAL"),
    Turn(
        A,
        "Open the Example Bank app, go to Cards, and tap Add to Wallet next to the new card. "
        "It should show up within the hour.",
    ),
    Turn(C, "Okay, I'll try that tonight.", "POSITIVE"),
    Turn(A, "Also, since your wallet was lost, I'd recommend reporting your driver's license as lost with the DMV."),
    Turn(C, "Right, I'll do that tomorrow.", "NEUTRAL"),
    Turn(C, "Oh, and should I change my online banking password too?", "NEUTRAL"),
    Turn(A, "It's a good precaution, though the card number alone doesn't give access to online banking.", "NEUTRAL"),
    Turn(
        A,
        "I've also turned on text alerts for every transaction, so you'll know right away if anything else happens.",
        "POSITIVE",
    ),
    Turn(C, "That's great. Thank you for being so quick about all this.", "POSITIVE"),
    Turn(
        A,
        "You're welcome. To recap: the old card is locked, the 389 dollar charge is disputed, "
        "and the new card ships express to 1870 Cedar Lane.",
        "POSITIVE",
    ),
    Turn(C, "Yes, that's everything.", "NEUTRAL"),
    Turn(A, "Is there anything else I can help you with today?", "NEUTRAL"),
    Turn(C, "No, that's all. Thanks again, Priya.", "POSITIVE"),
    Turn(A, "Thank you for calling Example Bank, Jordan. Have a good evening.", "POSITIVE"),
]
CATEGORIES = [
    CategoryMatch(after_turn=1, names=("LostOrStolenCard",), points=(1,)),
    CategoryMatch(after_turn=15, names=("FraudConcern", "TransactionDispute"), points=(14, 15)),
    CategoryMatch(after_turn=24, names=("ReplacementCard",), points=(22, 24)),
]
SUMMARY = (
    "The customer reported a lost wallet containing their debit card. The agent verified the customer, locked "
    "the card, disputed an unrecognised 389 dollar electronics store charge (reference D774021), updated the "
    "mailing address and ordered an express replacement card. The customer was advised to report the lost "
    "driver's license and text alerts were enabled."
)


def full_call() -> SyntheticCall:
    """The scripted call behind full-call.*, started.json, segments.json and completed.json."""
    return render_call(
        SCRIPT,
        random.Random(SEED),
        CONTACT_ID,
        INSTANCE_ID,
        categories=CATEGORIES,
        summary=SUMMARY,
        event_interval_ms=EVENT_INTERVAL_MS,
    )


def _timed_records(events: list[Any], times: list[float], first_sequence_number: int) -> list[StreamRecord]:
    """Stream records whose arrival timestamps follow the events' virtual emission times."""
    records = build_records(events, first_sequence_number=first_sequence_number, start_timestamp=START_TIMESTAMP)
    return [
        replace(record, arrival_timestamp=round(START_TIMESTAMP + offset, 3))
        for record, offset in zip(records, times, strict=True)
    ]


def _sample_segments(call: SyntheticCall) -> tuple[dict[str, Any], float]:
    """One SEGMENTS event showing every segment kind a mid-call event carries, with its emission time: the call's
    segments in emission order up to the first Categories segment (utterances, both speakers, an issue)."""
    segments: list[dict[str, Any]] = []
    for event, offset in zip(call.events, call.event_times, strict=True):
        for segment in event.get("Segments", []):
            segments.append(segment)
            if "Categories" in segment:
                return {**event, "Segments": segments}, offset
    raise AssertionError("the scripted call has no Categories segment")


def _envelope(contact_id: str, event_type: str, version: str = "1.0.0") -> dict[str, Any]:
    return {
        "Version": version,
        "Channel": "VOICE",
        "AccountId": "123456789012",
        "InstanceId": INSTANCE_ID,
        "ContactId": contact_id,
        "LanguageCode": "en-US",
        "EventType": event_type,
    }


def _transcript(contact_id: str, transcript_id: str, **fields: Any) -> dict[str, Any]:
    segment = {
        "Id": transcript_id,
        "ParticipantId": "CUSTOMER",
        "ParticipantRole": "CUSTOMER",
        "Content": "I'm calling about my order.",
        "BeginOffsetMillis": 2100,
        "EndOffsetMillis": 4350,
        "Sentiment": "NEUTRAL",
    }
    segment.update(fields)
    return {**_envelope(contact_id, "SEGMENTS"), "Segments": [{"Transcript": segment}]}


def malformed_envelopes() -> dict[str, dict[str, Any]]:
    """One Lambda Kinesis event per poison kind: a valid STARTED, the poison record(s), a valid SEGMENTS."""
    poison_kinds: dict[str, list[Any]] = {
        "not-base64": [b"placeholder: replaced below by text that is not base64"],
        "not-utf8": [
            b'{"Version":"1.0.0","Channel":"VOICE","ContactId":"' + POISON_CONTACT_ID.encode() + b'",'
            b'"EventType":"SEGMENTS","Segments":[{"Transcript":{"Content":"Caf\xe9 au lait \xff\xfe"}}]}'
        ],
        "not-json": [
            b'{"Version":"1.0.0","Channel":"VOICE","ContactId":"' + POISON_CONTACT_ID.encode() + b'",'
            b'"EventType":"SEGMENTS","Segments":[{"Transcript":{"Id":"trunc'
        ],
        "chat-v2": [
            {
                "Version": "2.0.0",
                "Channel": "CHAT",
                "AccountId": "123456789012",
                "InstanceId": INSTANCE_ID,
                "ContactId": POISON_CONTACT_ID,
                "StreamingEventType": "SEGMENTS",
                "StreamingSettings": {"LanguageCode": "en-US", "Output": "Raw", "RedactionTypes": []},
                "Segments": [
                    {
                        "Transcript": {
                            "Id": "0b5d7f3e-2c4a-4e6b-8d1f-3a5c7e9b1d2f",
                            "ParticipantId": "9a4f1c2e-5b7d-4f8a-b3c6-1e2d4f6a8b0c",
                            "ParticipantRole": "CUSTOMER",
                            "DisplayName": "Customer",
                            "Content": "Hi, my card was declined at checkout.",
                            "ContentType": "text/plain",
                            "AbsoluteTime": "2025-11-27T08:00:03.120Z",
                            "Sentiment": "NEGATIVE",
                        }
                    }
                ],
            }
        ],
        "unknown-event-type": [_envelope(POISON_CONTACT_ID, "PAUSED")],
        "transcript-missing-fields": [
            _poison_without_content(),
            _transcript(
                POISON_CONTACT_ID,
                "6f8a0c2e-4b6d-4a8f-9c1e-3d5f7b9a1c3e",
                BeginOffsetMillis=-250,
                EndOffsetMillis=-40,
            ),
        ],
        "not-an-object": [[_envelope(POISON_CONTACT_ID, "STARTED")]],
    }
    envelopes = {}
    for kind, poison in poison_kinds.items():
        events = [
            _envelope(HEALTHY_CONTACT_ID, "STARTED"),
            *poison,
            _transcript(HEALTHY_CONTACT_ID, "2c4e6a8b-0d1f-4e3a-9b5c-7d9f1a3b5c7e"),
        ]
        envelope = kinesis_event(build_records(events, start_timestamp=START_TIMESTAMP))
        if kind == "not-base64":
            # build_records always encodes valid base64, so corrupt the record by hand (a truncated, mangled
            # payload with characters outside the base64 alphabet).
            envelope["Records"][1]["kinesis"]["data"] = "eyJWZXJzaW9uIjoiMS4wLjAi***not base64!***"
            envelope["Records"][1]["kinesis"]["partitionKey"] = POISON_CONTACT_ID
        envelopes[kind] = envelope
    return envelopes


def _poison_without_content() -> dict[str, Any]:
    event = _transcript(POISON_CONTACT_ID, "4d6f8b0a-2c4e-4f6a-8b0d-2e4a6c8e0b2d")
    del event["Segments"][0]["Transcript"]["Content"]
    return event


def _dump(obj: Any) -> str:
    return json.dumps(obj, indent=2, ensure_ascii=False) + "\n"


def _readme(call: SyntheticCall, record_count: int) -> str:
    segments = [segment for event in call.events for segment in event.get("Segments", [])]
    kinds = {kind: sum(1 for s in segments if kind in s) for kind in ("Utterance", "Transcript", "Categories")}
    kinds["PostContactSummary"] = sum(1 for s in segments if "PostContactSummary" in s)
    segment_events = sum(1 for event in call.events if event["EventType"] == "SEGMENTS")
    return f"""# events/: Contact Lens voice fixtures

Generated by `events/generate.py` (`.venv/bin/python events/generate.py [--out DIR]`): fixed seed {SEED},
fixed timestamps from {START_TIMESTAMP:.0f} (2025-11-27T08:00:00Z), byte-identical on every run. Do not edit
by hand: change the script (dialogue, categories, summary) in `generate.py` and rerun it;
`tests/unit/test_fixtures.py` fails when the committed files and a fresh run differ. Envelopes are built with
`voicebridge.feed.fixtures.build_records` + `kinesis_event`, the calls laid out by `voicebridge.soak.synth.render_call`.

One contact throughout: ContactId `{CONTACT_ID}`, InstanceId `{INSTANCE_ID}`.

- `started.json`, `segments.json`, `completed.json`, `failed.json`: Lambda Kinesis events
  (`{{"Records": [...]}}`, usable with `sam local invoke -e`), one record each. `segments.json` holds the
  call's opening segments up to its first Categories segment (Utterances, both speakers' Transcripts,
  IssuesDetected, Categories); `failed.json` is the FAILED alternative ending (same sequence number as COMPLETED).
- `payloads/*.json`: the decoded Contact Lens event inside each of those four files, pretty-printed.
- `full-call.kinesis.json`: the whole call as one Lambda Kinesis event; arrival timestamps follow stream time.
- `full-call.jsonl`: the same records in capture's JSON Lines form
  (`partitionKey`, `sequenceNumber`, `approximateArrivalTimestamp`, decoded `data`).
- `malformed/*.json`: one Lambda Kinesis event per poison kind (below).
- `connect/full-call.json`: what Amazon Connect knows about the full call (caller `{CALLER_NUMBER}`, agent
  `{AGENT_USERNAME}`, its recording), for `voicebridge replay --connect` and the demo (not a Kinesis fixture).

## The full call
A lost wallet: verification, card locked, a fraudulent charge disputed, address updated, express replacement.
Turns 7 and 9 contain a fake card number (`4111 1111 1111 1111`) and SSN-like digits (`123-45-6789`): the
privacy tests search logs for them.

- {len(call.transcripts)} turns (Transcript segments), both speakers, {kinds["Utterance"]} Utterance partials
- {kinds["Categories"]} Categories segments, {kinds["PostContactSummary"]} PostContactSummary segment near the end
- {len(call.events)} events (STARTED, {segment_events} SEGMENTS, COMPLETED) = {record_count} Kinesis records
- {call.duration_seconds:.1f} s of stream time; sequence numbers step by {SEQUENCE_STEP} from {FIRST_SEQUENCE_NUMBER}

## malformed/
Each file holds a valid STARTED for contact `{HEALTHY_CONTACT_ID}`, the poison record(s) (contact
`{POISON_CONTACT_ID}` where the payload names one), then a valid SEGMENTS with one Transcript for the
healthy contact. The loader keeps raw data; the handler must park the poison and process the rest.

- `not-base64.json`: `kinesis.data` is not base64 (written by hand after building).
- `not-utf8.json`: base64 of JSON-like bytes that are not valid UTF-8 (Latin-1 `é`, `\\xff\\xfe`).
- `not-json.json`: a truncated JSON document.
- `chat-v2.json`: a Version 2.0.0 CHAT event (`StreamingEventType`, no `EventType`): never parse it as voice.
- `unknown-event-type.json`: `EventType` `PAUSED`.
- `transcript-missing-fields.json`: two poison records (4 in all): a Transcript without `Content`, and one
  with negative offsets.
- `not-an-object.json`: a JSON array payload.
"""


def connect_data(call: SyntheticCall) -> dict[str, Any]:
    """The ``voicebridge replay --connect`` data for the full call: its DescribeContact, the agent's DescribeUser and
    its attributes, as Connect returns them (timestamps as epoch seconds). One inbound leg, so no InitialContactId
    (contact records of a first leg leave it empty)."""
    ended = round(START_TIMESTAMP + call.duration_seconds, 3)
    day = "2025/11/27"
    recording = f"example-connect-recordings/connect/example/CallRecordings/{day}/{CONTACT_ID}_20251127T08:00_UTC.wav"
    contact = {
        "Arn": f"arn:aws:connect:us-east-1:123456789012:instance/{INSTANCE_ID}/contact/{CONTACT_ID}",
        "Id": CONTACT_ID,
        "InitiationMethod": "INBOUND",
        "Channel": "VOICE",
        "InitiationTimestamp": START_TIMESTAMP - 42,
        "ConnectedToSystemTimestamp": START_TIMESTAMP - 41,
        "DisconnectTimestamp": ended,
        "LastUpdateTimestamp": ended,
        "CustomerEndpoint": {"Type": "TELEPHONE_NUMBER", "Address": CALLER_NUMBER},
        "SystemEndpoint": {"Type": "TELEPHONE_NUMBER", "Address": "+18005550100"},
        "QueueInfo": {"Id": QUEUE_ID, "EnqueueTimestamp": START_TIMESTAMP - 30},
        "AgentInfo": {"Id": AGENT_USER_ID, "ConnectedToAgentTimestamp": START_TIMESTAMP},
        "Recordings": [
            {
                "StorageType": "S3",
                "Location": recording,
                "MediaStreamType": "AUDIO",
                "ParticipantType": "ALL",
                "StartTimestamp": START_TIMESTAMP,
                "StopTimestamp": ended,
                "Status": "AVAILABLE",
            }
        ],
    }
    user = {
        "Arn": f"arn:aws:connect:us-east-1:123456789012:instance/{INSTANCE_ID}/agent/{AGENT_USER_ID}",
        "Id": AGENT_USER_ID,
        "Username": AGENT_USERNAME,
        "IdentityInfo": {"FirstName": "Priya", "LastName": "Shah", "Email": "priya.s@example.com"},
    }
    return {
        "instance_id": INSTANCE_ID,
        "contacts": {CONTACT_ID: contact},
        "users": {AGENT_USER_ID: user},
        "attributes": {CONTACT_ID: {"CustomerType": "retail", "CallReason": "lost_card"}},
    }


def generate(out_dir: str | Path) -> list[Path]:
    """Write every fixture under ``out_dir``; return the paths written."""
    out = Path(out_dir)
    written: dict[Path, str] = {}
    call = full_call()
    started, *_, completed = call.events
    failed = {**completed, "EventType": "FAILED"}
    singles = {
        "started": (started, 0.0),
        "segments": _sample_segments(call),
        "completed": (completed, call.duration_seconds),
        "failed": (failed, call.duration_seconds),  # the alternative ending: same sequence number as completed
    }
    for index, (name, (event, offset)) in enumerate(singles.items()):
        records = _timed_records([event], [offset], FIRST_SEQUENCE_NUMBER + min(index, 2) * SEQUENCE_STEP)
        written[out / f"{name}.json"] = _dump(kinesis_event(records))
        written[out / "payloads" / f"{name}.json"] = _dump(event)

    records = _timed_records(call.events, call.event_times, FIRST_SEQUENCE_NUMBER)
    written[out / "full-call.kinesis.json"] = _dump(kinesis_event(records))
    written[out / "full-call.jsonl"] = "".join(to_json_line(record) + "\n" for record in records)
    for kind, envelope in malformed_envelopes().items():
        written[out / "malformed" / f"{kind}.json"] = _dump(envelope)
    written[out / "connect" / "full-call.json"] = _dump(connect_data(call))
    written[out / "README.md"] = _readme(call, len(records))

    for path, text in written.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8", newline="\n")
    return list(written)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent, help="output directory")
    args = parser.parse_args()
    for path in generate(args.out):
        print(path)


if __name__ == "__main__":
    main()
