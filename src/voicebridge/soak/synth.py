"""Synthetic Contact Lens voice calls for the chaos soak, the benchmarks and the scripted fixtures in ``events/``.

Everything is deterministic by seed: the same arguments always produce the same events, byte for byte once
serialised. The cadence imitates the real-time voice segment stream (contact-lens-stream.md):

- one STARTED, then SEGMENTS events every 1-3 s of stream time, then exactly one COMPLETED or FAILED;
- each turn (1.5-12 s of speech) is announced by 1-3 ``Utterance`` partials (sequential fragments of the
  final text, same ``TranscriptId``) before its final ``Transcript``, so utterance-only SEGMENTS events occur;
- offsets are ints in milliseconds from contact start, with small gaps and the occasional overlap;
- a few ``Categories`` segments and a ``PostContactSummary`` segment near the end.

Every event carries a virtual emission time (seconds since the call's own start), which
:func:`interleave_with_times` uses to merge concurrent calls the way one shard would carry them.
"""

from __future__ import annotations

import heapq
import random
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

ACCOUNT_ID = "123456789012"
LANGUAGE_CODE = "en-US"
AGENT = "AGENT"
CUSTOMER = "CUSTOMER"
END_EVENT_TYPES = ("COMPLETED", "FAILED")
SENTIMENTS = ("POSITIVE", "NEUTRAL", "NEGATIVE")

# Speaking rate of ~2.5-3 words per second; turns are clamped to what Contact Lens emits as one Transcript.
MIN_TURN_MS = 1_500
MAX_TURN_MS = 12_000


@dataclass(frozen=True)
class Turn:
    """One final transcript to render: who speaks, what they say, and optionally how it is analysed.

    ``sentiment`` None lets the renderer pick one; ``issue`` is a substring of ``content`` to report
    in ``IssuesDetected`` (character offsets are computed).
    """

    role: str
    content: str
    sentiment: str | None = None
    issue: str | None = None


@dataclass(frozen=True)
class CategoryMatch:
    """A Categories segment emitted shortly after the transcript of ``turns[after_turn]``.

    Each matched category points at the turns in ``points`` (indexes); an empty tuple gives an empty
    ``PointsOfInterest`` list, which real streams also produce.
    """

    after_turn: int
    names: tuple[str, ...]
    points: tuple[int, ...] = ()


@dataclass(frozen=True)
class SyntheticCall:
    """A rendered call: decoded Contact Lens events in emission order plus what ServiceNow should end up with.

    ``transcripts`` are the final Transcript dicts (the same objects as inside ``events``) in emission order;
    ``event_times`` gives each event's virtual emission time in seconds since the call's start
    (non-decreasing, same length as ``events``).
    """

    contact_id: str
    instance_id: str
    events: list[dict[str, Any]]
    transcripts: list[dict[str, Any]]
    event_times: list[float] = field(default_factory=list)

    @property
    def duration_seconds(self) -> float:
        """Stream time from STARTED to the final COMPLETED/FAILED event."""
        return self.event_times[-1] if self.event_times else 0.0


def new_id(rng: random.Random) -> str:
    """A UUID4-shaped id drawn from ``rng`` (deterministic, unlike :func:`uuid.uuid4`)."""
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def _envelope(contact_id: str, instance_id: str, event_type: str) -> dict[str, Any]:
    return {
        "Version": "1.0.0",
        "Channel": "VOICE",
        "AccountId": ACCOUNT_ID,
        "InstanceId": instance_id,
        "ContactId": contact_id,
        "LanguageCode": LANGUAGE_CODE,
        "EventType": event_type,
    }


def _turn_duration_ms(rng: random.Random, content: str) -> int:
    words = len(content.split())
    return max(MIN_TURN_MS, min(MAX_TURN_MS, int(words * rng.uniform(330, 420))))


def _split_words(rng: random.Random, words: list[str], parts: int) -> list[tuple[int, int]]:
    """Cut ``words`` into ``parts`` contiguous non-empty fragments: [(start, end), ...] word indexes."""
    parts = max(1, min(parts, len(words)))
    cuts = sorted(rng.sample(range(1, len(words)), parts - 1)) if parts > 1 else []
    bounds = [0, *cuts, len(words)]
    return list(zip(bounds, bounds[1:], strict=False))


def render_call(
    turns: Sequence[Turn],
    rng: random.Random,
    contact_id: str,
    instance_id: str,
    utterances_per_turn: tuple[int, int] = (1, 3),
    categories: Sequence[CategoryMatch] = (),
    summary: str | None = None,
    end: str = "COMPLETED",
    event_interval_ms: tuple[int, int] = (1_000, 3_000),
    first_turn_ms: int | None = None,
) -> SyntheticCall:
    """Lay ``turns`` out on a timeline and pack their segments into STARTED/SEGMENTS/COMPLETED|FAILED events.

    ``summary`` adds a PostContactSummary segment after the last transcript (Status FAILED with a
    FailureCode and no Content when ``end`` is FAILED). ``event_interval_ms`` is the range of stream time one
    SEGMENTS event covers.
    """
    if end not in END_EVENT_TYPES:
        raise ValueError(f"end must be one of {END_EVENT_TYPES}, not {end!r}")
    low, high = utterances_per_turn
    if not 0 <= low <= high:
        raise ValueError(f"utterances_per_turn must be (low, high) with 0 <= low <= high, not {utterances_per_turn}")

    # (emission ms, creation order, segment): sorting by both keeps creation order for equal times.
    pending: list[tuple[int, int, dict[str, Any]]] = []
    transcript_spans: list[tuple[int, int, int]] = []  # (begin, end, emission) per turn
    cursor = first_turn_ms if first_turn_ms is not None else rng.randint(1_500, 4_000)
    previous_end = 0
    for turn in turns:
        if turn.role not in (AGENT, CUSTOMER):
            raise ValueError(f"turn role must be AGENT or CUSTOMER, not {turn.role!r}")
        duration = _turn_duration_ms(rng, turn.content)
        if transcript_spans:
            roll = rng.random()
            if roll < 0.1:
                cursor = previous_end - rng.randint(200, 800)  # talk-over: starts before the other finished
            elif roll < 0.2:
                cursor = previous_end + rng.randint(1_200, 3_000)  # a pause (typing, looking something up)
            else:
                cursor = previous_end + rng.randint(100, 900)
        begin, finish = cursor, cursor + duration
        transcript_id = new_id(rng)

        words = turn.content.split()
        for start_word, end_word in _split_words(rng, words, rng.randint(low, high)) if high else []:
            frag_begin = begin + duration * start_word // len(words)
            frag_end = begin + duration * end_word // len(words)
            utterance = {
                "Id": new_id(rng),
                "TranscriptId": transcript_id,
                "ParticipantId": turn.role,
                "ParticipantRole": turn.role,
                "PartialContent": " ".join(words[start_word:end_word]),
                "BeginOffsetMillis": frag_begin,
                "EndOffsetMillis": frag_end,
            }
            # Partials trail speech by a few hundred ms, always ahead of the final (emitted >= 600 ms after).
            pending.append((frag_end + rng.randint(150, 500), len(pending), {"Utterance": utterance}))

        transcript: dict[str, Any] = {
            "Id": transcript_id,
            "ParticipantId": turn.role,
            "ParticipantRole": turn.role,
            "Content": turn.content,
            "BeginOffsetMillis": begin,
            "EndOffsetMillis": finish,
            "Sentiment": turn.sentiment or _pick_sentiment(rng, turn.role),
        }
        if turn.issue is not None:
            start_char = turn.content.find(turn.issue)
            if start_char < 0:
                raise ValueError(f"issue {turn.issue!r} is not part of {turn.content!r}")
            transcript["IssuesDetected"] = [
                {"CharacterOffsets": {"BeginOffsetChar": start_char, "EndOffsetChar": start_char + len(turn.issue)}}
            ]
        emitted = finish + rng.randint(600, 1_400)
        pending.append((emitted, len(pending), {"Transcript": transcript}))
        transcript_spans.append((begin, finish, emitted))
        previous_end = max(previous_end, finish)

    for match in categories:
        if not 0 <= match.after_turn < len(transcript_spans):
            raise ValueError(f"category after_turn {match.after_turn} is outside the call's {len(turns)} turns")
        details = {
            name: {
                "PointsOfInterest": [
                    {"BeginOffsetMillis": transcript_spans[i][0], "EndOffsetMillis": transcript_spans[i][1]}
                    for i in match.points
                ]
            }
            for name in match.names
        }
        segment = {"Categories": {"MatchedCategories": list(match.names), "MatchedDetails": details}}
        pending.append((transcript_spans[match.after_turn][2] + rng.randint(200, 2_000), len(pending), segment))

    last_emission = max((emission for emission, _, _ in pending), default=0)
    if summary is not None:
        post: dict[str, Any] = (
            {"Content": summary, "Status": "COMPLETED"}
            if end == "COMPLETED"
            else {"Status": "FAILED", "FailureCode": "INTERNAL_ERROR"}
        )
        last_emission += rng.randint(3_000, 8_000)
        pending.append((last_emission, len(pending), {"PostContactSummary": post}))

    pending.sort(key=lambda item: (item[0], item[1]))
    events: list[dict[str, Any]] = [_envelope(contact_id, instance_id, "STARTED")]
    times: list[float] = [0.0]
    transcripts: list[dict[str, Any]] = []
    window_end = 0
    index = 0
    while index < len(pending):
        window_end += rng.randint(*event_interval_ms)
        batch = []
        while index < len(pending) and pending[index][0] <= window_end:
            batch.append(pending[index][2])
            index += 1
        if not batch:
            continue  # nothing analysed in this stretch: Contact Lens sends no empty SEGMENTS events
        event = _envelope(contact_id, instance_id, "SEGMENTS")
        event["Segments"] = batch
        events.append(event)
        times.append(window_end / 1000)
        transcripts.extend(segment["Transcript"] for segment in batch if "Transcript" in segment)
    events.append(_envelope(contact_id, instance_id, end))
    times.append((window_end + rng.randint(1_000, 5_000)) / 1000)
    return SyntheticCall(contact_id, instance_id, events, transcripts, times)


def _pick_sentiment(rng: random.Random, role: str) -> str:
    # Agents are mostly neutral; customers swing more.
    weights = (25, 65, 10) if role == AGENT else (20, 45, 35)
    return rng.choices(SENTIMENTS, weights=weights)[0]


_AGENT_LINES = (
    "Thank you for calling Example Bank, my name is {agent}.",
    "How can I help you today?",
    "I'm sorry to hear that.",
    "Let me pull up your account.",
    "Can you confirm the last four digits of your card, please?",
    "Thank you, I can see the account now.",
    "I've placed a temporary hold on the card ending in {last4}.",
    "The replacement should arrive in {days} business days.",
    "Is the mailing address still {number} {street} Street?",
    "I'm going to put you on a brief hold while I check that.",
    "Thanks for holding, I appreciate your patience.",
    "I've issued a credit of {amount} dollars to your account.",
    "Your reference number is {reference}.",
    "Is there anything else I can help you with?",
    "You should receive a confirmation email within {hours} hours.",
    "I completely understand your frustration.",
    "I've updated the phone number on file.",
    "That transaction was declined because the card was locked.",
)
_CUSTOMER_LINES = (
    "Hi, I think I lost my wallet yesterday.",
    "I need to cancel my card right away.",
    "Sure, it's {last4}.",
    "Yes, that's correct.",
    "No, I moved last month, it's {number} {street} Avenue now.",
    "There's a charge of {amount} dollars I don't recognise.",
    "It was at a gas station on {date}.",
    "I've been on hold for {minutes} minutes already.",
    "Okay, that works for me.",
    "Can you send the new card by express mail?",
    "My phone number is {phone}.",
    "That's really frustrating, this is the second time this year.",
    "Great, thank you so much.",
    "How long will that take?",
    "I also wanted to ask about my credit limit.",
    "No, that's everything, thanks.",
    "Hold on, let me find my reading glasses.",
    "I didn't get any text message about it.",
)
_AGENT_NAMES = ("Adam", "Priya", "Marcus", "Elena", "Tom", "Aisha")
_STREETS = ("Maple", "Oak", "Cedar", "Harbor", "Lincoln", "Sunset")
_CATEGORY_NAMES = ("LostOrStolenCard", "FraudConcern", "ReplacementCard", "Escalation", "Politeness", "HoldTime")


def _fill(rng: random.Random, line: str, agent_name: str) -> str:
    return line.format(
        agent=agent_name,
        last4=f"{rng.randint(0, 9999):04d}",
        days=rng.randint(3, 10),
        number=rng.randint(10, 9999),
        street=rng.choice(_STREETS),
        amount=f"{rng.randint(5, 900)}.{rng.randint(0, 99):02d}",
        reference=f"REF{rng.randint(100000, 999999)}",
        hours=rng.choice((2, 12, 24, 48)),
        date=f"{rng.choice(('March', 'June', 'October'))} {rng.randint(1, 28)}",
        minutes=rng.randint(5, 45),
        phone=f"555-{rng.randint(100, 999)}-{rng.randint(1000, 9999)}",
    )


def _random_turns(rng: random.Random, count: int) -> list[Turn]:
    agent_name = rng.choice(_AGENT_NAMES)
    turns: list[Turn] = []
    role = AGENT
    for index in range(count):
        if index > 0 and rng.random() >= 0.12:  # mostly alternating, sometimes the same speaker again
            role = CUSTOMER if role == AGENT else AGENT
        pool = _AGENT_LINES if role == AGENT else _CUSTOMER_LINES
        if index == 0 and role == AGENT:
            sentences = [_fill(rng, pool[0], agent_name), pool[1]]
        else:
            # The greeting only opens the call; no sentence twice in one turn.
            lines = rng.sample(pool[1:] if role == AGENT else pool, rng.choice((1, 1, 2, 2, 3)))
            sentences = [_fill(rng, line, agent_name) for line in lines]
        content = " ".join(sentences)
        issue = sentences[0] if role == CUSTOMER and rng.random() < 0.12 else None
        turns.append(Turn(role, content, issue=issue))
    return turns


def synthesize_call(
    seed: int,
    turns: int = 60,
    contact_id: str | None = None,
    utterances_per_turn: tuple[int, int] = (1, 3),
    with_categories: bool = True,
    with_summary: bool = True,
    end: str = "COMPLETED",
    instance_id: str | None = None,
) -> SyntheticCall:
    """A random but realistic call of ``turns`` final transcripts, fully determined by ``seed``.

    ``contact_id``/``instance_id`` default to UUIDs drawn from the seed. ``end`` is COMPLETED or FAILED.
    With ``with_categories``, 2-3 Categories segments appear at plausible points (when there are turns);
    with ``with_summary``, a PostContactSummary segment follows the last transcript.
    """
    if turns < 0:
        raise ValueError(f"turns must be >= 0, not {turns}")
    rng = random.Random(seed)
    generated_contact = new_id(rng)
    generated_instance = new_id(rng)
    script = _random_turns(rng, turns)
    matches: list[CategoryMatch] = []
    if with_categories and turns:
        names = rng.sample(_CATEGORY_NAMES, 3)
        for position, name in zip((0.15, 0.5, 0.85)[: rng.choice((2, 3))], names, strict=False):
            after = min(turns - 1, int(turns * position))
            points = (after,) if rng.random() < 0.8 else ()
            matches.append(CategoryMatch(after, (name,), points))
    summary = None
    if with_summary:
        summary = (
            f"The customer called about a lost card. The agent locked the card, confirmed the mailing address "
            f"and ordered a replacement that arrives in {rng.randint(3, 10)} business days."
        )
    return render_call(
        script,
        rng,
        contact_id or generated_contact,
        instance_id or generated_instance,
        utterances_per_turn=utterances_per_turn,
        categories=matches,
        summary=summary,
        end=end,
    )


def interleave_with_times(calls: list[SyntheticCall], seed: int) -> list[tuple[float, dict[str, Any]]]:
    """Merge concurrent calls into one shard's order: ``[(virtual seconds since the first call's start, event)]``.

    Calls start staggered (0.5-5 s apart, drawn from ``seed``); events are ordered by their virtual time,
    ties broken by call position, so each call's own order is preserved. The event dicts are the calls' own
    objects, not copies.
    """
    rng = random.Random(seed)
    start = 0.0
    streams = []
    for call_index, call in enumerate(calls):
        if len(call.event_times) != len(call.events):
            raise ValueError(f"call {call.contact_id} has {len(call.events)} events but {len(call.event_times)} times")
        if call_index:
            start += rng.uniform(0.5, 5.0)
        streams.append(
            [
                (round(start + offset, 3), call_index, event_index, event)
                for event_index, (offset, event) in enumerate(zip(call.event_times, call.events, strict=True))
            ]
        )
    return [(time, event) for time, _, _, event in heapq.merge(*streams, key=lambda item: item[:3])]


def interleave_calls(calls: list[SyntheticCall], seed: int) -> list[dict[str, Any]]:
    """The decoded events of concurrent ``calls`` in one shard's order (see :func:`interleave_with_times`)."""
    return [event for _, event in interleave_with_times(calls, seed)]
