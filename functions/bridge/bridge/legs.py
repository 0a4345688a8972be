"""The call's lifecycle across transfer legs (pure): one interaction per call, one timeline, one close.

Amazon Connect makes every transfer leg a contact of its own, with its own Contact Lens session (STARTED, SEGMENTS,
COMPLETED) and offsets counted from its own start (``../shared/reference/transfers.md``). ServiceNow keeps one
interaction per call. So:

- **Root.** A leg's call is its ``InitialContactId`` (DescribeContact); empty, or the leg itself, means the leg is
  the root. The interaction is the root's (``clientSessionId`` = the root ContactId), created once under the
  root's contact item, by whichever leg arrives first.
- **Timeline.** Each leg has an *anchor*, the wall-clock moment its offsets count from: ``AgentInfo.
  ConnectedToAgentTimestamp``, else ``InitiationTimestamp``, else the arrival of its first record. A leg's offsets
  move onto the call's timeline by ``leg anchor - root anchor`` (recorded in the leg's item, so a replay or a
  redelivery sends identical messages).
- **Close.** The interaction closes when the leg that ends is the last: every other leg of the call (Connect's
  ListAssociatedContacts, ``MONITOR`` contacts aside) has ended on the stream or, if it never streamed, has
  disconnected. A single-leg call closes at its COMPLETED with no lookup beyond the one at its start.
- ``MONITOR`` contacts (a supervisor listening in) never open or touch an interaction.
Lookup failures fall back to per-leg (the leg is its own root), counted: a transfer then degrades to two
interactions, never to a lost transcript.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from bridge.models import ContactStatus
from bridge.ports import AssociatedContact, ContactDetails

if TYPE_CHECKING:
    from bridge.directory import ContactDirectory
    from bridge.ports import ContactStorePort

MONITOR = "MONITOR"


@dataclass(frozen=True)
class Leg:
    """Where one contact sits in its call."""

    contact_id: str
    root_contact_id: str
    initiation_method: str | None = None
    anchor_ms: int = 0  # epoch milliseconds its offsets count from (0: unknown)
    number: int = 1  # 1 for the root, then in order of initiation
    fallback: bool = False  # the lookups failed: treated as its own root

    @property
    def is_root(self) -> bool:
        return self.root_contact_id == self.contact_id

    @property
    def ignored(self) -> bool:
        return self.initiation_method == MONITOR

    @property
    def label(self) -> str:
        """How its notes name it ("" for the root: a plain call's notes read as before)."""
        return "" if self.is_root else f"leg {self.number}"


def root_of(contact_id: str, details: ContactDetails) -> str:
    initial = (details.initial_contact_id or "").strip()
    return initial or contact_id


def anchor_ms(details: ContactDetails, first_arrival: float | None = None) -> int:
    """The leg's anchor (see the module docstring), epoch milliseconds; 0 when nothing is known."""
    for moment in (details.agent_connected_at, details.initiated_at, first_arrival):
        if moment:
            return round(moment * 1000)
    return 0


def shift_ms(leg_anchor_ms: int, root_anchor_ms: int) -> int:
    """What a leg's offsets move by to sit on the call's timeline (0 when either anchor is unknown: then the leg
    keeps its own offsets, which is what a per-leg interaction would have shown)."""
    if not leg_anchor_ms or not root_anchor_ms:
        return 0
    return max(0, leg_anchor_ms - root_anchor_ms)


def leg_number(contact_id: str, associated: Sequence[AssociatedContact]) -> int:
    """1-based position among the call's legs by initiation time (MONITOR contacts are not legs)."""
    legs = sorted(
        (c for c in associated if c.initiation_method != MONITOR),
        key=lambda c: (c.initiated_at or 0.0, c.contact_id),
    )
    for index, contact in enumerate(legs, start=1):
        if contact.contact_id == contact_id:
            return index
    return max(2, len(legs) + 1)


@dataclass(frozen=True)
class CloseDecision:
    close: bool
    waiting_for: tuple[str, ...] = ()  # legs still live (on the stream, or connected without streaming)


def may_close(
    ending: str,
    associated: Sequence[AssociatedContact],
    ended_on_stream: Mapping[str, bool],
) -> CloseDecision:
    """Whether the leg ``ending`` is the call's last (pure).

    ``associated``: the call's contacts per Connect (empty: a single-leg call, or no lookup possible).
    ``ended_on_stream``: for legs the bridge has an item of, whether their COMPLETED/FAILED was seen.
    A leg the bridge saw start is live until it ends on the stream (its last segments may still be coming even
    after Connect disconnected it); a leg it never saw is live while Connect shows it connected.
    """
    waiting: list[str] = []
    for contact in associated:
        if contact.contact_id == ending or contact.initiation_method == MONITOR:
            continue
        streamed = ended_on_stream.get(contact.contact_id)
        if streamed is None:
            if contact.disconnected_at is None:
                waiting.append(contact.contact_id)
        elif not streamed:
            waiting.append(contact.contact_id)
    return CloseDecision(not waiting, tuple(sorted(waiting)))


def call_may_close(
    directory: ContactDirectory,
    store: ContactStorePort,
    instance_id: str,
    contact_id: str,
    root_contact_id: str,
    fallbacks: list[str],
) -> tuple[CloseDecision, list[AssociatedContact], int]:
    """The close rule with its lookups (the bridge's close and the sweeper's): ListAssociatedContacts of the root,
    then the other legs' contact items (one BatchGetItem) for whether they ended on the stream. Returns the decision,
    the call's other legs, and the furthest offset any of them reached on the call's timeline (where a note at the
    call's end belongs). Without Connect, or on a lookup failure, every contact is a single-leg call."""
    if not directory.knows_calls:
        return CloseDecision(True), [], 0
    associated = directory.associated(instance_id, root_contact_id, fallbacks)
    others = [c for c in associated if c.contact_id != contact_id and c.initiation_method != MONITOR]
    if not others:
        return CloseDecision(True), [], 0
    states = store.load_many([c.contact_id for c in others])
    # Ended means done (its messages delivered), not just closed by its pre-write: a leg still sending is live.
    ended = {cid: s.leg_ended or s.status is ContactStatus.IGNORED for cid, s in states.items()}
    furthest = max((s.max_offset_millis for s in states.values()), default=0)
    return may_close(contact_id, associated, ended), others, furthest
