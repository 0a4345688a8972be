"""Property-based tests of the planner and the whole per-contact flow over fakes (hypothesis).

1. Any parsed input plus any stored state plans without an unhandled exception.
2. Whatever the batching, duplication, reordering and crashes, every transcript turn reaches ServiceNow exactly
   once, in one interaction, closed.
"""

from __future__ import annotations

import random
import time
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bridge.events import parse_record
from bridge.models import ContactEvent, ContactState, ContactStatus, PendingEntry, SentSet
from bridge.planner import PlanOptions, plan_contact
from tests.events_builder import call_events, envelope, lambda_records, transcript, utterance
from tests.unit.test_processor import Crash, World

pytestmark = pytest.mark.unit

segments = st.lists(
    st.one_of(
        st.builds(lambda i, b: transcript(f"t{i}", begin=b, end=b + 10), st.integers(0, 6), st.integers(0, 10**6)),
        st.builds(lambda i: utterance(f"t{i}"), st.integers(0, 6)),
        st.just({"Categories": {"MatchedCategories": ["A"], "MatchedDetails": {}}}),
        st.just({"PostContactSummary": {"Status": "FAILED"}}),
    ),
    max_size=5,
)
event_payloads = st.lists(
    st.one_of(
        st.sampled_from(["STARTED", "COMPLETED", "FAILED"]).map(lambda kind: envelope("c", kind)),
        segments.map(lambda segs: envelope("c", "SEGMENTS", segs)),
    ),
    min_size=1,
    max_size=8,
)
states = st.one_of(
    st.none(),
    st.builds(
        lambda status, ids, pending, inter, close: ContactState(
            "c",
            status,
            3,
            "i",
            inter,
            inter,
            SentSet().with_ids(ids),
            tuple(PendingEntry(i, str(s)) for i, s in pending),
            close,
        ),
        st.sampled_from(list(ContactStatus)),
        st.lists(st.sampled_from([f"t{i}" for i in range(7)]), max_size=7),
        st.lists(st.tuples(st.sampled_from([f"t{i}" for i in range(7)]), st.integers(0, 10**57)), max_size=4),
        st.one_of(st.none(), st.just("a" * 32)),
        st.one_of(st.none(), st.integers(0, 10**57).map(str)),
    ),
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(payloads=event_payloads, state=states, notes=st.booleans(), first=st.integers(0, 10**56))
def test_planner_never_raises_and_never_plans_a_sent_segment(
    payloads: list[dict[str, Any]], state: ContactState | None, notes: bool, first: int
) -> None:
    events = [
        p
        for p in (parse_record(r) for r in lambda_records(payloads, first_sequence_number=first))
        if isinstance(p, ContactEvent)
    ]
    plan = plan_contact(events, state, PlanOptions(forward_notes=notes))
    new_ids = [m.id for m in plan.messages]
    assert len(new_ids) == len(set(new_ids))
    if state is not None:
        assert not any(i in state.sent for i in new_ids)
        if state.status is ContactStatus.CLOSED:
            assert not plan.messages and not plan.close and not plan.open


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**32 - 1), turns=st.integers(1, 12), batch=st.integers(1, 6))
def test_any_delivery_history_ends_with_each_turn_exactly_once(seed: int, turns: int, batch: int) -> None:
    rng = random.Random(seed)
    contact = f"p{seed}"
    records = lambda_records(call_events(contact, turns, per_event=rng.randint(1, 3)))
    world = World()
    operations = ["create_interaction", "create_conversation", "post_messages", "close_interaction"]
    position = 0
    for _ in range(400):
        if position >= len(records):
            break
        chunk = records[position : position + batch]
        if rng.random() < 0.3:  # an earlier slice comes back (at-least-once, out of order)
            start = rng.randrange(0, position + 1)
            world.process(records[start : start + rng.randint(1, batch)])
        if rng.random() < 0.25:  # the runtime dies somewhere in the next call of some step
            target = world.servicenow.apply_then_fail if rng.random() < 0.5 else world.servicenow.fail_next
            target[rng.choice(operations)] = [Crash("chaos")]
        try:
            result = world.processor.process(chunk, deadline=time.monotonic() + 60)
        except Crash:
            continue  # Lambda redelivers the same batch
        world.servicenow.fail_next.clear()
        world.servicenow.apply_then_fail.clear()
        if result.failed_sequence_numbers:
            lowest = int(result.failed_sequence_numbers[0])
            position = next(i for i, r in enumerate(records) if int(r["kinesis"]["sequenceNumber"]) >= lowest)
        else:
            position += len(chunk)
    assert position >= len(records), "did not converge"
    interactions = world.servicenow.by_contact(contact)
    assert len(interactions) == 1
    assert world.transcript_ids(contact) == [f"{contact}-t{i:04d}" for i in range(turns)]
    assert interactions[0].closed


@settings(max_examples=300, deadline=None)
@given(
    content=st.text(min_size=1, max_size=300),
    segment_id=st.text(min_size=1, max_size=60),
    attributes=st.lists(st.tuples(st.text(max_size=20), st.text(max_size=40)), max_size=3),
    internal=st.booleans(),
    offsets=st.tuples(st.integers(0, 2**63 - 1), st.integers(0, 2**63 - 1)),
)
def test_the_chunking_size_bound_is_never_below_the_real_json_size(
    content: str, segment_id: str, attributes: list[tuple[str, str]], internal: bool, offsets: tuple[int, int]
) -> None:
    import json

    from bridge.models import OutgoingMessage
    from bridge.runner import _size_bound

    message = OutgoingMessage(
        segment_id, content, "CUSTOMER", offsets[0], offsets[1], "NEGATIVE", internal, "4" * 56, tuple(attributes)
    )
    encoded = json.dumps(message.to_payload(), ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    assert _size_bound(message) >= len(encoded) + 1
