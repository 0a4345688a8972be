"""Writes the post-call fixtures: bucket/ (Contact Lens analysis files in the real layout and format, a redacted
recording, a chat file) and connect-contacts.json (DescribeContact/DescribeUser answers for --connect).

Deterministic (uuid5 turn ids): running it again rewrites the same bytes. python events/postcall/generate.py
"""

import json
import os
import uuid
from pathlib import Path

HERE = Path(__file__).resolve().parent
root = str(HERE / "bucket")
C1 = "3f1c2b9a-7d4e-4c1a-9e2b-5a6d7c8e9f01"
C2 = "8a2d4e6f-1b3c-4d5e-8f9a-0b1c2d3e4f52"
C3 = "c5e7a9b1-2d4f-4a6c-8e0b-1d3f5a7c9e63"
C4 = "e1f2a3b4-c5d6-4e7f-8a9b-0c1d2e3f4a74"
INSTANCE = "9e8d7c6b-5a49-4382-9170-6f5e4d3c2b1a"
DAY = "2026/03/14"
RECORDINGS = f"example-connect-recordings/connect/example/CallRecordings/{DAY}"


def doc(contact, output, turns, categories=None, summary=None, skipped=None, duration=None):
    d = {
        "Version": "1.1.0",
        "AccountId": "123456789012",
        "Channel": "VOICE",
        "ContentMetadata": {"Output": output}
        if output == "Raw"
        else {
            "Output": "Redacted",
            "RedactionTypes": ["PII"],
            "RedactionTypesMetadata": {"PII": {"RedactionMaskMode": "PII"}},
        },
        "JobStatus": "COMPLETED",
        "LanguageCode": "en-US",
        "Participants": [
            {"ParticipantId": "AGENT", "ParticipantRole": "AGENT"},
            {"ParticipantId": "CUSTOMER", "ParticipantRole": "CUSTOMER"},
        ],
        "Categories": {
            "MatchedCategories": [c for c, _ in (categories or [])],
            "MatchedDetails": {c: {"PointsOfInterest": p} for c, p in (categories or [])},
        },
        "ConversationCharacteristics": {
            "TotalConversationDurationMillis": duration or max(t[3] for t in turns),
            "Sentiment": {"OverallSentiment": {"AGENT": 1.2, "CUSTOMER": 0.4}},
            "Interruptions": {"InterruptionsByInterrupter": {}, "TotalCount": 0, "TotalTimeMillis": 0},
            "NonTalkTime": {"Instances": [], "TotalTimeMillis": 0},
            "TalkSpeed": {
                "DetailsByParticipant": {
                    "AGENT": {"AverageWordsPerMinute": 150},
                    "CUSTOMER": {"AverageWordsPerMinute": 140},
                }
            },
            "TalkTime": {
                "DetailsByParticipant": {"AGENT": {"TotalTimeMillis": 1}, "CUSTOMER": {"TotalTimeMillis": 1}},
                "TotalTimeMillis": 2,
            },
        },
        "CustomModels": [],
        "Transcript": [],
        "CustomerMetadata": {
            "InputS3Uri": f"s3://{RECORDINGS}/{contact}_20260314T10:00_UTC.wav",
            "ContactId": contact,
            "InstanceId": INSTANCE,
        },
    }
    if summary:
        d["ConversationCharacteristics"]["ContactSummary"] = {"PostContactSummary": {"Content": summary}}
    if skipped:
        d["JobDetails"] = {"SkippedAnalysis": skipped}
    for tid, who, content, begin, end, sentiment, loud, extra in turns:
        t = {
            "BeginOffsetMillis": begin,
            "Content": content,
            "EndOffsetMillis": end,
            "Id": tid,
            "LoudnessScore": loud,
            "ParticipantId": who,
            "Sentiment": sentiment,
        }
        t.update(extra)
        d["Transcript"].append(t)
    return d


def ids(contact, n, variant):
    return [str(uuid.uuid5(uuid.NAMESPACE_URL, f"{contact}/{variant}/{i}")) for i in range(n)]


def write(path, d):
    full = os.path.join(root, path)
    os.makedirs(os.path.dirname(full), exist_ok=True)
    with open(full, "w") as f:
        json.dump(d, f, indent=2)
        f.write("\n")


# C1: both variants (raw and redacted), a redacted recording next to the redacted file
def c1(variant):
    i = ids(C1, 4, variant)
    name = "Peter Jones" if variant == "raw" else "[PII]"
    card = "4111 1111 1111 1111" if variant == "raw" else "[PII]"
    turns = [
        (
            i[0],
            "AGENT",
            "Thank you for calling, this is Anna. How can I help?",
            820,
            3410,
            "POSITIVE",
            [71.2, 74.05, 69.9, 70.31],
            {},
        ),
        (
            i[1],
            "CUSTOMER",
            f"Hi, my name is {name} and I want to pay my bill.",
            3600,
            7290,
            "NEUTRAL",
            [66.56, 72.1, 75.83, 70.02, 68.4],
            {
                "IssuesDetected": [
                    {"CharacterOffsets": {"BeginOffsetChar": 0, "EndOffsetChar": 10}, "Text": "I want to pay my bill"}
                ]
            },
        ),
        (i[2], "CUSTOMER", f"The card is {card}.", 7500, 11020, "NEUTRAL", [70.1, 0, 73.4, 72.95], {}),
        (
            i[3],
            "AGENT",
            "Done, the payment went through. Anything else?",
            11400,
            14980,
            "MIXED",
            [76.3, 77.81, 75.0, 74.12],
            {
                "OutcomesDetected": [
                    {
                        "CharacterOffsets": {"BeginOffsetChar": 6, "EndOffsetChar": 31},
                        "Text": "the payment went through",
                    }
                ]
            },
        ),
    ]
    return doc(
        C1,
        "Raw" if variant == "raw" else "Redacted",
        turns,
        categories=[("Payment", [{"BeginOffsetMillis": 3600, "EndOffsetMillis": 11020}])],
        summary="The customer paid the bill by card; the agent confirmed the payment.",
    )


write(f"Analysis/Voice/{DAY}/{C1}_analysis_2026-03-14T10:09:41Z.json", c1("raw"))
write(f"Analysis/Voice/Redacted/{DAY}/{C1}_analysis_redacted_2026-03-14T10:09:41Z.json", c1("redacted"))
os.makedirs(os.path.join(root, f"Analysis/Voice/Redacted/{DAY}"), exist_ok=True)
with open(
    os.path.join(root, f"Analysis/Voice/Redacted/{DAY}/{C1}_call_recording_redacted_2026-03-14T10:09:41Z.wav"), "wb"
) as f:
    f.write(
        # A 44-byte WAV header with no samples: the recording's presence matters, not its sound.
        b"RIFF\x24\x00\x00\x00WAVEfmt \x10\x00\x00\x00\x01\x00\x01\x00\x40\x1f\x00\x00"
        b"\x80\x3e\x00\x00\x02\x00\x10\x00data\x00\x00\x00\x00"
    )

# C2: redacted only; two categories (one without points of interest), overlapping turns
i = ids(C2, 3, "redacted")
write(
    f"Analysis/Voice/Redacted/{DAY}/{C2}_analysis_redacted_2026-03-14T11:31:07Z.json",
    doc(
        C2,
        "Redacted",
        [
            (
                i[0],
                "AGENT",
                "Good morning, you are through to deliveries.",
                1200,
                3900,
                "NEUTRAL",
                [80.1, 79.4, 81.2],
                {},
            ),
            (
                i[1],
                "CUSTOMER",
                "My parcel for [PII] never arrived.",
                3700,
                6800,
                "NEGATIVE",
                [84.3, 86.9, 85.1, 83.0],
                {},
            ),
            (
                i[2],
                "AGENT",
                "I will send a replacement today.",
                7100,
                9300,
                "POSITIVE",
                [78.2, 77.6, 76.9],
                {
                    "ActionItemsDetected": [
                        {
                            "CharacterOffsets": {"BeginOffsetChar": 0, "EndOffsetChar": 31},
                            "Text": "I will send a replacement today",
                        }
                    ]
                },
            ),
        ],
        categories=[("DeliveryIssue", [{"BeginOffsetMillis": 3700, "EndOffsetMillis": 6800}]), ("NoAgentGreeting", [])],
        summary="The parcel did not arrive; the agent will send a replacement today.",
    ),
)

# C3: redacted only; the summary was skipped (JobDetails), no categories
i = ids(C3, 2, "redacted")
write(
    f"Analysis/Voice/Redacted/{DAY}/{C3}_analysis_redacted_2026-03-14T12:02:55Z.json",
    doc(
        C3,
        "Redacted",
        [
            (i[0], "CUSTOMER", "Hello? Is anyone there?", 400, 2300, "NEUTRAL", [62.0, 64.7], {}),
            (i[1], "AGENT", "Yes, sorry, go ahead.", 2500, 4100, "NEUTRAL", [70.5, 71.9], {}),
        ],
        skipped=[{"Feature": "POST_CONTACT_SUMMARY", "ReasonCode": "INSUFFICIENT_CONVERSATION_CONTENT"}],
    ),
)

# C4: a chat analysis file (never imported: not Analysis/Voice/)
write(
    f"Analysis/Chat/{DAY}/{C4}_analysis_2026-03-14T13:00:00Z.json",
    {
        "Version": "CHAT-2022-11-30",
        "Channel": "CHAT",
        "Participants": [],
        "Transcript": [],
        "CustomerMetadata": {"ContactId": C4, "InstanceId": INSTANCE},
    },
)

# DescribeContact stand-ins for --connect: C1 and C2 have an agent-connected time, C3 only an initiation time
contacts = {
    "contacts": {
        C1: {
            "Id": C1,
            "InitiationTimestamp": "2026-03-14T09:58:30Z",
            "AgentInfo": {"Id": "agent-anna", "ConnectedToAgentTimestamp": "2026-03-14T10:00:02Z"},
            "CustomerEndpoint": {"Type": "TELEPHONE_NUMBER", "Address": "+14155550101"},
            "Recordings": [{"Location": f"{RECORDINGS}/{C1}_20260314T10:00_UTC.wav"}],
        },
        C2: {
            "Id": C2,
            "InitiationTimestamp": "2026-03-14T11:20:00Z",
            "AgentInfo": {"Id": "agent-bo", "ConnectedToAgentTimestamp": "2026-03-14T11:21:15Z"},
            "CustomerEndpoint": {"Type": "TELEPHONE_NUMBER", "Address": "+14155550102"},
        },
        C3: {
            "Id": C3,
            "InitiationTimestamp": "2026-03-14T11:59:40Z",
            "CustomerEndpoint": {"Type": "TELEPHONE_NUMBER", "Address": "anonymous"},
        },
    },
    "users": {"agent-anna": "anna.agent", "agent-bo": "bo.agent"},
}
with open(HERE / "connect-contacts.json", "w") as f:
    json.dump(contacts, f, indent=2)
    f.write("\n")

# C5: raw only (redaction off for this contact): imported only by a raw run
C5 = "5b6c7d8e-9f0a-4b1c-8d2e-3f4a5b6c7d85"
i = ids(C5, 2, "raw")
write(
    f"Analysis/Voice/{DAY}/{C5}_analysis_2026-03-14T14:45:00Z.json",
    doc(
        C5,
        "Raw",
        [
            (i[0], "AGENT", "Support, how can I help?", 600, 2200, "NEUTRAL", [73.0, 72.4], {}),
            (
                i[1],
                "CUSTOMER",
                "Just checking my order status, thanks.",
                2400,
                5200,
                "POSITIVE",
                [68.8, 69.1, 70.0],
                {},
            ),
        ],
    ),
)
