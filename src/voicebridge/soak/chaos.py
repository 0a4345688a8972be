"""``voicebridge chaos``: the soak. Concurrent synthetic calls through the real handler under faults, crashes and
duplicate deliveries, then ServiceNow's state (Table API) compared with what the calls said.

What runs (issue 4 §4):

- ``calls`` synthetic calls of ``segments`` final transcripts each (``voicebridge.soak.synth``), merged the way one
  shard carries concurrent calls, delivered by :class:`~voicebridge.feed.shard.ShardDriver` in batches of
  ``batch_size`` to ``bridge.handler.lambda_handler``, with the environment ``voicebridge replay`` gives it
  (moto in process, the embedded emulator over HTTP, credentials through Secrets Manager).
- ServiceNow faults, ``fault_rate`` of the Voice Interaction API requests in total, split as:
  60 % error statuses (429 with ``Retry-After``, 500, 503: never applied; the bridge must treat 500 as ambiguous),
  30 % ambiguous (applied, then answered 500 or the connection dropped), 10 % read timeouts. Timeouts are scripted
  emulator ``delay`` rules of 0.6-1.5 s against a handler ``SERVICENOW_READ_TIMEOUT`` of 0.5 s: the server still
  applies the request after the client gave up, which is what a slow real instance does. (Emulator latency
  jitter is only ±10 % of a fixed latency, so it cannot time out a few percent of requests.)
- Crashes: in ``crash_rate`` of the invocations the k-th adapter call (ServiceNow client methods, contact store
  ``claim``/``save``) raises :class:`Crash`, a ``BaseException`` nothing in the bridge catches, either before or
  after the real call took effect. From then on every adapter call of that invocation raises too (the process is
  dead: other contact threads must not keep working), the thread pool is drained, and the next invocation gets a
  freshly built bridge (a cold start). The driver sees a function error and redelivers the whole batch.
- Duplicate deliveries: in ``duplicate_rate`` of the deliveries, half the time the batch is delivered twice,
  half the time a random already-checkpointed slice of the stream is delivered again first (a contact's old
  records arriving after its newer ones).

The production profile (``--profile production``, issue 9 §3) adds what a real instance does (the emulator's
real-node behaviours): sessions (``JSESSIONID``, one transaction per session, 202 when a session is busy) plus
scripted ``session_busy`` 202s, applied-then-500 ``/messages`` whose read-backs are throttled (429 on every retry),
an hourly-style quota hit mid-run (``rate_limited`` for :data:`QUOTA_WINDOW_S`, the handler holding the shard as
deployed), and read ACLs that hide a share of the calls' records from the Table API (``filtered_contacts``). For
those calls ServiceNow cannot be read back: the README's window 1, where a re-send may duplicate and is counted
(``PossibleDuplicates``, ``PossibleOrphanInteractions``); the soak checks that every such duplicate was counted.

Goals (the exit status): nothing lost, no duplicate interaction or message and no interaction left open except
inside the README's documented late-apply window (counted apart: the invocation died while a write it carried was
unanswered, in flight or timed out and settling, so ServiceNow may apply it after the redelivery's read-back),
nothing parked, no batch given up, no crash swallowed, no transcript text or the password in any log line (the
handler's log lines and anything else it prints are captured for that check).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import logging
import random
import sys
import threading
import time
import warnings
from collections import Counter
from collections.abc import Callable, Collection, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from voicebridge.feed.fixtures import StreamRecord, build_records, kinesis_event
from voicebridge.feed.shard import DeliveryReport, ShardDriver, progress_printer
from voicebridge.soak.synth import SyntheticCall, interleave_with_times, synthesize_call

# How the total fault rate is split (see the module docstring).
STATUS_SHARE = 0.6
AMBIGUOUS_SHARE = 0.3
TIMEOUT_SHARE = 0.1
FAULT_STATUSES = (429, 500, 503)
# Adapter methods a crash can hit. ServiceNow: every port method; store: the two writes (load_many is a read and
# the processor's own step, not a contact step).
SERVICENOW_METHODS = (
    "create_interaction",
    "create_conversation",
    "post_messages",
    "post_transcript",
    "close_interaction",
    "find_interaction",
    "find_conversation",
    "find_message_ids",
    "conversation_has_messages",
    "find_open_interactions",
)
STORE_METHODS = ("claim", "save")
PROFILES = ("default", "production")
# The production profile (see the module docstring).
FILTERED_CONTACTS = "^[0-1]"  # contact ids are UUIDs: about 1 in 8 calls' records hidden by read ACLs
# Per invocation: an applied-then-500 /messages whose read-backs are throttled (429 on every retry of the client),
# never while an earlier one is still unserved: the 429s match any read-back, so piling them up would starve the
# one contact reconciling instead of exercising the path.
UNCERTAIN_RATE = 0.3
SESSION_BUSY_RATE = 0.03  # per contact and invocation: a 202 from a busy session
QUOTA_AT = 0.4  # the quota is hit when delivery reaches this share of the records
QUOTA_WINDOW_S = 8.0  # a real hourly rule answers minutes; the soak keeps its wall time
PRODUCTION_HOLD_S = 30  # OUTAGE_HOLD_SECONDS as deployed would be the whole invocation
# Transcript fragments shorter than this match ordinary words and ids in log lines (test_privacy does the same).
MIN_LEAK_LENGTH = 12
CLOSED = "closed_complete"


class Crash(BaseException):
    """The Lambda runtime dying mid-invocation: not an ``Exception``, so nothing in the bridge catches it."""


class InvocationDied(Exception):  # noqa: N818 - named for what Lambda reports, not as an error of ours
    """What the shard driver sees when an invocation crashed: a function error, so it redelivers the batch."""


@dataclass(frozen=True)
class SoakOptions:
    calls: int = 200
    segments: int = 60
    batch_size: int = 100
    fault_rate: float = 0.10
    crash_rate: float = 0.05
    duplicate_rate: float = 0.05
    seed: int = 1
    # The template's MaximumRetryAttempts default: a batch the bridge cannot get through in 40 retries is lost.
    max_retries: int = 40
    max_workers: int | None = None  # None: the bridge's own default, as deployed
    read_timeout_s: float = 0.5
    # Longer than the slowest scripted late apply (timeout_delay_ms), as the settle time must be in production.
    settle_s: float = 2.0
    timeout_delay_ms: tuple[float, float] = (600.0, 1500.0)
    timeouts: bool = True  # False: the timeout share goes to the error statuses instead
    log_level: str = "WARNING"
    progress: bool = False
    profile: str = "default"

    @property
    def production(self) -> bool:
        return self.profile == "production"

    @property
    def status_fault_rate(self) -> float:
        return self.fault_rate * (STATUS_SHARE + (0.0 if self.timeouts else TIMEOUT_SHARE))

    @property
    def ambiguous_fault_rate(self) -> float:
        return self.fault_rate * AMBIGUOUS_SHARE

    @property
    def timeout_rate(self) -> float:
        return self.fault_rate * TIMEOUT_SHARE if self.timeouts else 0.0

    def __post_init__(self) -> None:
        for name in ("fault_rate", "crash_rate", "duplicate_rate"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be between 0 and 1, got {value}")
        if self.calls < 1 or self.segments < 1 or self.batch_size < 1:
            raise ValueError("calls, segments and batch_size must be at least 1")
        if self.profile not in PROFILES:
            raise ValueError(f"profile must be one of {', '.join(PROFILES)}, got {self.profile!r}")


@dataclass
class SoakReport:
    options: SoakOptions
    calls: int = 0
    segments: int = 0  # expected final transcripts
    notes: int = 0  # expected agent-only notes (categories, summaries)
    records: int = 0
    # the goals
    lost: int = 0
    lost_notes: int = 0
    duplicate_interactions: int = 0
    duplicate_messages: int = 0
    unclosed: int = 0
    # Of the above, those the README's documented late-apply window explains: the invocation died while a request
    # that ServiceNow had not answered (in flight, or timed out and still settling) carried the message or create.
    window_duplicate_interactions: int = 0
    window_duplicate_messages: int = 0
    window_unclosed: int = 0
    # Of the above, those of calls whose records the read ACLs hide (production profile): README window 1. Each
    # must have been counted by the bridge (possible duplicates, possible orphan interactions).
    filtered_calls: int = 0
    filtered_duplicate_interactions: int = 0
    filtered_duplicate_messages: int = 0
    filtered_unclosed: int = 0
    parked: int = 0
    mismatched: int = 0  # a stored message whose content, speaker or offsets differ from the call's
    given_up: list[tuple[str, str]] = field(default_factory=list)
    swallowed_crashes: int = 0  # a crash fired but the invocation returned normally
    leaked: int = 0  # transcript strings (or the password) found in the handler's log lines
    wall_seconds: float = 0.0
    # extras
    delivery_seconds: float = 0.0
    invocations: int = 0  # every handler call, including the duplicate and stale deliveries
    driver_invocations: int = 0
    function_errors: int = 0
    partial_failures: int = 0
    redelivered_records: int = 0
    crashes: int = 0
    crashes_armed_not_reached: int = 0
    crash_sites: dict[str, int] = field(default_factory=dict)  # "post_messages/after": n
    duplicate_deliveries: int = 0
    stale_slices: int = 0
    stale_records: int = 0
    servicenow_requests: int = 0
    faults: dict[str, int] = field(default_factory=dict)  # emulator stats: random_429, ambiguous_drop, delay, ...
    reconciled: int = 0
    resent: int = 0
    possible_duplicates: int = 0
    possible_orphans: int = 0
    orphans_closed: int = 0
    held_seconds: float = 0.0
    quota_hit: bool = False
    recovered_interactions: int = 0
    contact_retries: int = 0
    duplicates_skipped: int = 0
    parked_reasons: dict[str, int] = field(default_factory=dict)
    parking_queue_messages: int = 0
    log_lines: int = 0
    max_workers: int = 0  # what the handler ran with
    # Which ids are doubled (ids only, never content), to take a failure from the figures to the logs.
    duplicated: list[tuple[str, str, int]] = field(default_factory=list)  # (contact id, message id, copies)
    duplicate_interaction_contacts: list[str] = field(default_factory=list)

    @property
    def unexplained_duplicate_messages(self) -> int:
        return self.duplicate_messages - self.window_duplicate_messages - self.filtered_duplicate_messages

    @property
    def unexplained_duplicate_interactions(self) -> int:
        return self.duplicate_interactions - self.window_duplicate_interactions - self.filtered_duplicate_interactions

    @property
    def unexplained_unclosed(self) -> int:
        return self.unclosed - self.window_unclosed - self.filtered_unclosed

    @property
    def uncounted(self) -> int:
        """Duplicates in window 1 the bridge did not count (every one must show in its metrics)."""
        return max(0, self.filtered_duplicate_messages - self.possible_duplicates) + max(
            0, self.filtered_duplicate_interactions - self.possible_orphans
        )

    @property
    def goals_met(self) -> bool:
        # Duplicates are allowed only inside the documented window (issue 4 §4); everything else must be exact.
        return not (
            self.lost
            or self.lost_notes
            or self.unexplained_duplicate_interactions
            or self.unexplained_duplicate_messages
            or self.unexplained_unclosed
            or self.parked
            or self.mismatched
            or self.given_up
            or self.swallowed_crashes
            or self.leaked
            or self.uncounted
        )

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["goals_met"] = self.goals_met
        data["unexplained_duplicate_messages"] = self.unexplained_duplicate_messages
        data["unexplained_duplicate_interactions"] = self.unexplained_duplicate_interactions
        data["unexplained_unclosed"] = self.unexplained_unclosed
        data["uncounted"] = self.uncounted
        return data


# -- the workload ------------------------------------------------------------------------------------------------


def build_workload(options: SoakOptions) -> tuple[list[SyntheticCall], list[StreamRecord]]:
    """The calls and the shard's records, fully determined by the seed."""
    calls = [
        synthesize_call(seed=options.seed * 100_000 + index, turns=options.segments) for index in range(options.calls)
    ]
    timed = interleave_with_times(calls, seed=options.seed)
    records = build_records([event for _, event in timed])
    if records:
        # Arrival times follow the calls' cadence, so the bridge's lag figures mean something.
        start = records[0].arrival_timestamp
        records = [replace(r, arrival_timestamp=round(start + t, 3)) for r, (t, _) in zip(records, timed, strict=True)]
    return calls, records


def expected_notes(call: SyntheticCall) -> int:
    """Agent-only notes the bridge forwards for a call: one per matched Categories segment, one per summary."""
    count = 0
    for event in call.events:
        for segment in event.get("Segments") or []:
            if segment.get("Categories", {}).get("MatchedCategories"):
                count += 1
            if "PostContactSummary" in segment:
                count += 1
    return count


def sensitive_strings(calls: Sequence[SyntheticCall], password: str) -> set[str]:
    """Every string that must never reach a log line: transcripts, partials, summaries, the password."""
    texts = {password}
    for call in calls:
        for event in call.events:
            for segment in event.get("Segments") or []:
                texts.add(str(segment.get("Transcript", {}).get("Content", "")))
                texts.add(str(segment.get("Utterance", {}).get("PartialContent", "")))
                texts.add(str(segment.get("PostContactSummary", {}).get("Content", "")))
    return {text for text in texts if len(text) >= MIN_LEAK_LENGTH} | {password}


# -- fault and crash injection -----------------------------------------------------------------------------------


class _Injector:
    """Wraps the bridge's adapters, arms crashes per invocation and delivers duplicates around the real batch."""

    def __init__(self, options: SoakOptions, records: Sequence[StreamRecord], emulator: Any, report: SoakReport):
        self.options = options
        self.records = list(records)
        self.index = {record.sequence_number: position for position, record in enumerate(self.records)}
        self.emulator = emulator
        self.report = report
        self.rng = random.Random(options.seed * 7919 + 1)
        self.lock = threading.Lock()
        self.calls = 0
        self.crash_at = 0  # 0: no crash armed in this invocation
        self.crash_mode = "before"
        self.dead = False
        self.fired = False
        # Late-apply bookkeeping: requests ServiceNow has not answered yet, and those that timed out, this invocation.
        self.in_flight: dict[int, tuple[str, tuple[str, ...]]] = {}
        self.timed_out: list[tuple[str, tuple[str, ...]]] = []
        self.died_in_flight: list[tuple[str, tuple[str, ...]]] = []
        self.window_messages: set[str] = set()  # message ids a late apply after a crash may have doubled
        self.window_contacts: set[str] = set()  # contacts a late create after a crash may have doubled
        self.observe: Callable[[Any], None] = self._observe

    # -- bridge wiring ----------------------------------------------------------------------------------------

    def instrument(self, bridge: Any) -> None:
        for name in SERVICENOW_METHODS:
            setattr(bridge.servicenow, name, self._wrap(name, getattr(bridge.servicenow, name)))
        for name in STORE_METHODS:
            setattr(bridge.store, name, self._wrap(name, getattr(bridge.store, name)))
        bridge.processor.observers.append(self.observe)

    def _wrap(self, site: str, real: Callable[..., Any]) -> Callable[..., Any]:
        from bridge.errors import ServiceNowAmbiguousError

        def call(*args: Any, **kwargs: Any) -> Any:
            mode = self._tick(site)
            if mode == "before":
                self._die(site, mode)
            token = object()
            self._begin(token, site, args)
            try:
                result = real(*args, **kwargs)
            except ServiceNowAmbiguousError as exc:
                if getattr(exc, "timed_out", False):
                    self._late_apply_possible(token)
                raise
            finally:
                with self.lock:
                    self.in_flight.pop(id(token), None)
            if mode == "after":
                self._die(site, mode)
            return result

        return call

    def _begin(self, token: object, site: str, args: tuple[Any, ...]) -> None:
        """Remember what an unanswered write carries: message ids, or the contact of a create."""
        if site == "post_messages" and len(args) >= 2:
            keys = tuple(str(message.id) for message in args[1])
        elif site == "create_interaction" and args:
            keys = (str(getattr(args[0], "client_session_id", "")),)
        else:
            return
        with self.lock:
            self.in_flight[id(token)] = (site, keys)

    def _late_apply_possible(self, token: object) -> None:
        with self.lock:
            entry = self.in_flight.get(id(token))
            if entry is not None:
                self.timed_out.append(entry)

    def _tick(self, site: str) -> str | None:
        with self.lock:
            if self.dead:
                raise Crash("the process is already dead")
            self.calls += 1
            return self.crash_mode if self.calls == self.crash_at else None

    def _die(self, site: str, mode: str) -> None:
        with self.lock:
            self.dead = True
            self.fired = True
            self.died_in_flight = list(self.in_flight.values())
            key = f"{site}/{mode}"
            self.report.crash_sites[key] = self.report.crash_sites.get(key, 0) + 1
        raise Crash(f"injected crash {mode} {site}")

    def _observe(self, result: Any) -> None:
        report = self.report
        for outcome in result.outcomes:
            report.reconciled += outcome.reconciled
            report.resent += outcome.resent
            report.possible_duplicates += outcome.possible_duplicates
            report.possible_orphans += outcome.possible_orphans
            report.orphans_closed += outcome.orphans_closed
            report.recovered_interactions += int(outcome.recovered_interaction)
            report.contact_retries += int(outcome.retry)
            report.duplicates_skipped += outcome.duplicates
        report.held_seconds += result.held_seconds
        for item in result.parked:
            report.parked += len(item.records)
            report.parked_reasons[item.reason_class] = report.parked_reasons.get(item.reason_class, 0) + len(
                item.records
            )

    def _restart(self) -> None:
        """After a crash: let the dead invocation's threads finish dying, then cold-start a new bridge."""
        from bridge import factory

        executor = factory.get_bridge().processor.executor
        if isinstance(executor, ThreadPoolExecutor):
            executor.shutdown(wait=True)
        factory.reset()
        self.instrument(factory.get_bridge())

    # -- deliveries -------------------------------------------------------------------------------------------

    def invoke(self, event: dict[str, Any]) -> Any:
        """The shard driver's invoke: maybe a stale slice first, maybe the batch twice, then the batch."""
        records = event["Records"]
        first = self.index.get(str(records[0]["kinesis"]["sequenceNumber"]), 0) if records else 0
        roll = self.rng.random()
        if roll < self.options.duplicate_rate / 2 and first > 0:
            start = self.rng.randrange(first)
            end = min(first, start + self.rng.randint(1, self.options.batch_size))
            self.report.stale_slices += 1
            self.report.stale_records += end - start
            # Its outcome does not move the checkpoint: those records were checkpointed long ago.
            with contextlib.suppress(InvocationDied):
                self._handler(kinesis_event(self.records[start:end]))
        elif roll < self.options.duplicate_rate:
            self.report.duplicate_deliveries += 1
            self._handler(event)  # a crash here is this delivery's function error, as it would be in Lambda
        return self._handler(event)

    def _handler(self, event: dict[str, Any]) -> Any:
        from bridge.handler import lambda_handler
        from voicebridge.feed.replay import ReplayContext

        records = event["Records"]
        contacts = len({str(r["kinesis"]["partitionKey"]) for r in records})
        self.report.invocations += 1
        with self.lock:
            self.calls = 0
            self.dead = self.fired = False
            self.in_flight.clear()
            self.timed_out, self.died_in_flight = [], []
            self.crash_at = 0
            if self.rng.random() < self.options.crash_rate:
                # Roughly two adapter calls per contact (state write + POST): pick one of them, any step.
                self.crash_at = self.rng.randint(1, max(1, 2 * contacts))
                self.crash_mode = self.rng.choice(("before", "after"))
        self._script_timeouts(contacts)
        if self.options.production:
            self._script_production(contacts, records)
        try:
            response = lambda_handler(event, ReplayContext())
        except Crash:
            self.report.crashes += 1
            self._restart()
            # The process died with these writes unanswered: ServiceNow may apply them after the redelivery's
            # read-back (README "documented windows", the late apply).
            for site, keys in self.died_in_flight + self.timed_out:
                (self.window_messages if site == "post_messages" else self.window_contacts).update(keys)
            raise InvocationDied("the invocation crashed") from None
        finally:
            armed, fired = self.crash_at, self.fired
            with self.lock:
                self.crash_at = 0
        if fired:
            # A crash that fired but did not end the invocation was caught somewhere in the bridge.
            self.report.swallowed_crashes += 1
            self._restart()
        elif armed:
            self.report.crashes_armed_not_reached += 1
        return response

    def _script_production(self, contacts: int, records: Sequence[dict[str, Any]]) -> None:
        """A real instance's answers, about per contact of this invocation (see the module docstring)."""
        rules: list[dict[str, Any]] = []
        pending = any("sys_cs_message" in str(rule.get("path")) for rule in self.emulator.pending_faults())
        if self.rng.random() < UNCERTAIN_RATE and not pending:
            rules += [
                {"path": "/messages$", "method": "POST", "action": "ambiguous_500"},
                {"path": "/table/sys_cs_message", "method": "GET", "action": "status", "status": 429, "times": 4},
            ]
        for _ in range(contacts):
            if self.rng.random() < SESSION_BUSY_RATE:
                rules.append({"path": "/cs/voice-interactions", "action": "session_busy"})
        position = self.index.get(str(records[0]["kinesis"]["sequenceNumber"]), 0) if records else 0
        if not self.report.quota_hit and position >= QUOTA_AT * len(self.records):
            self.report.quota_hit = True
            rules.append({"path": "/cs/", "action": "rate_limited", "retry_after": QUOTA_WINDOW_S})
        if rules:
            self.emulator.add_fault_rules(rules)

    def _script_timeouts(self, contacts: int) -> None:
        """Read timeouts for about ``timeout rate`` of this invocation's ServiceNow requests (~ one per contact)."""
        rate = self.options.timeout_rate
        low, high = self.options.timeout_delay_ms
        rules = [
            {"path": "/cs/voice-interactions", "action": "delay", "delay_ms": round(self.rng.uniform(low, high))}
            for _ in range(contacts)
            if self.rng.random() < rate
        ]
        if rules:
            self.emulator.add_fault_rules(rules)


# -- ServiceNow read-back and comparison -------------------------------------------------------------------------


def _table(url: str, auth: tuple[str, str], table: str, fields: str) -> list[dict[str, str]]:
    """Every row of a table through the Table API, page by page (as a reviewer would read a real instance)."""
    import requests

    rows: list[dict[str, str]] = []
    page = 5000
    with requests.Session() as session:
        while True:
            response = session.get(
                f"{url}/api/now/table/{table}",
                params={
                    "sysparm_query": "ORDERBYsys_id",  # unique, so pages neither overlap nor skip
                    "sysparm_fields": fields,
                    "sysparm_limit": str(page),
                    "sysparm_offset": str(len(rows)),
                },
                auth=auth,
                headers={"Accept": "application/json"},
                timeout=60,
            )
            response.raise_for_status()
            batch = response.json()["result"]
            rows.extend(batch)
            if len(batch) < page:
                return rows


def compare(
    report: SoakReport,
    calls: Sequence[SyntheticCall],
    url: str,
    auth: tuple[str, str],
    window_messages: Collection[str] = (),
    window_contacts: Collection[str] = (),
    filtered_contacts: str | None = None,
) -> None:
    """ServiceNow's final state (Table API) against the calls; duplicates the late-apply window explains, and those
    of calls whose records read ACLs hide (window 1), are counted apart."""
    import re

    hidden = re.compile(filtered_contacts) if filtered_contacts else None
    interactions = _table(url, auth, "interaction", "sys_id,client_session_id,state,channel_metadata_document")
    messages = _table(
        url,
        auth,
        "sys_cs_message",
        "conversation,source_message_id,is_internal,payload,participant,begin_offset_millis,end_offset_millis",
    )
    by_contact: dict[str, list[dict[str, str]]] = {}
    for row in interactions:
        by_contact.setdefault(row.get("client_session_id") or "", []).append(row)
    by_conversation: dict[str, list[dict[str, str]]] = {}
    for row in messages:
        by_conversation.setdefault(row.get("conversation") or "", []).append(row)

    for call in calls:
        found = by_contact.get(call.contact_id, [])
        report.duplicate_interactions += max(0, len(found) - 1)
        open_rows = sum(1 for row in found if row.get("state") != CLOSED)
        report.unclosed += open_rows
        filtered = bool(hidden and hidden.search(call.contact_id))
        report.filtered_calls += filtered
        if len(found) > 1:
            report.duplicate_interaction_contacts.append(call.contact_id)
            if filtered:
                report.filtered_duplicate_interactions += len(found) - 1
                report.filtered_unclosed += min(open_rows, len(found) - 1)
            elif call.contact_id in window_contacts:
                # The late second interaction is the one nobody closes.
                report.window_duplicate_interactions += len(found) - 1
                report.window_unclosed += min(open_rows, len(found) - 1)
        stored = [m for row in found for m in by_conversation.get(row.get("channel_metadata_document") or "", [])]
        transcripts = Counter(m["source_message_id"] for m in stored if m.get("is_internal") != "true")
        notes = Counter(m["source_message_id"] for m in stored if m.get("is_internal") == "true")
        for counter in (transcripts, notes):
            doubled = [(call.contact_id, message_id, n) for message_id, n in counter.items() if n > 1]
            report.duplicate_messages += sum(n - 1 for _, _, n in doubled)
            if filtered:
                report.filtered_duplicate_messages += sum(n - 1 for _, _, n in doubled)
            else:
                report.window_duplicate_messages += sum(n - 1 for _, i, n in doubled if i in window_messages)
            report.duplicated.extend(doubled)
        report.lost_notes += max(0, expected_notes(call) - len(notes))
        first_row = {m["source_message_id"]: m for m in reversed(stored)}
        for transcript in call.transcripts:
            found_row = first_row.get(transcript["Id"])
            if found_row is None or found_row.get("is_internal") == "true":
                report.lost += 1
                continue
            if (
                found_row.get("payload") != transcript["Content"]
                or found_row.get("participant") != transcript["ParticipantRole"]
                or found_row.get("begin_offset_millis") != str(transcript["BeginOffsetMillis"])
                or found_row.get("end_offset_millis") != str(transcript["EndOffsetMillis"])
            ):
                report.mismatched += 1
    known = {call.contact_id for call in calls}
    # An interaction for no call at all would be a duplicate under a mangled client_session_id.
    report.duplicate_interactions += sum(len(rows) for contact, rows in by_contact.items() if contact not in known)


# -- running -----------------------------------------------------------------------------------------------------


@contextlib.contextmanager
def _captured_logs(level: str) -> Iterator[io.StringIO]:
    """The handler's log lines, exactly as Lambda would ship them, into a buffer instead of stdout."""
    from bridge.log import logger

    sink = io.StringIO()
    capture = logging.StreamHandler(sink)
    capture.setFormatter(logger.registered_formatter)
    inner = logger._logger
    previous_level = inner.level
    silenced = [(handler, handler.level) for handler in inner.handlers]
    for handler, _ in silenced:
        handler.setLevel(logging.CRITICAL + 1)  # keep stdout for the figures (and --json parseable)
    inner.addHandler(capture)
    logger.setLevel(level)
    try:
        yield sink
    finally:
        inner.removeHandler(capture)
        for handler, handler_level in silenced:
            handler.setLevel(handler_level)
        inner.setLevel(previous_level)


def run_soak(options: SoakOptions) -> SoakReport:
    """Run the soak in process (moto, embedded emulator) and compare ServiceNow's final state with the calls."""
    from voicebridge.emulator import EmulatorOptions, start_emulator
    from voicebridge.feed.replay import (
        ServiceNowTarget,
        aws_resources,
        ensure_resources,
        environment_overlay,
        offline_handler_environment,
    )

    started = time.monotonic()
    report = SoakReport(options)
    calls, records = build_workload(options)
    report.calls = len(calls)
    report.segments = sum(len(call.transcripts) for call in calls)
    report.notes = sum(expected_notes(call) for call in calls)
    report.records = len(records)
    # A distinctive password, so the log check can tell whether the secret leaked.
    password = f"chaos-{random.Random(options.seed).getrandbits(64):016x}-pw"
    emulator_options = EmulatorOptions(
        user="chaos",
        password=password,
        fault_rate=options.status_fault_rate,
        fault_statuses=FAULT_STATUSES,
        ambiguous_rate=options.ambiguous_fault_rate,
        seed=options.seed,
        sessions=options.production,
        filtered_contacts=FILTERED_CONTACTS if options.production else None,
    )
    # Whatever else the handler prints goes here too: Powertools flushes EMF metrics to stdout once a metric holds
    # 100 values even with POWERTOOLS_METRICS_DISABLED (cloudwatch.py add_metric), which would garble --json.
    emitted = io.StringIO()
    with start_emulator(emulator_options) as emulator, aws_resources(None) as table:
        target = ServiceNowTarget(emulator.url, emulator_options.user, emulator_options.password)
        environment = ensure_resources(table, target)
        # The environment replay gives the handler, plus the soak's timeout and pool size.
        environment.update(offline_handler_environment("voicebridge-chaos"))
        environment.update(
            FORWARD_NOTES="true",
            SERVICENOW_READ_TIMEOUT=str(options.read_timeout_s),
            SERVICENOW_SETTLE_SECONDS=str(options.settle_s),
        )
        if options.max_workers is not None:
            environment["MAX_WORKERS"] = str(options.max_workers)
        if options.production:
            environment["OUTAGE_HOLD_SECONDS"] = str(PRODUCTION_HOLD_S)
        with (
            environment_overlay(environment),
            _captured_logs(options.log_level) as logs,
            warnings.catch_warnings(),
            contextlib.redirect_stdout(emitted),
        ):
            # Powertools warns on every invocation that published no metric (a crashed one): noise here.
            warnings.filterwarnings("ignore", message="No application metrics to publish")
            injector = _Injector(options, records, emulator, report)
            delivery = _deliver(options, injector, records)
        emulator.clear_faults()  # unfired delay rules must not slow the read-back
        emulator.set_filtered_contacts(None)  # the read-back is an admin's: ACLs hide nothing from it
        _record_delivery(report, delivery)
        stats = emulator.stats()
        report.servicenow_requests = int(stats.get("total", 0))
        report.faults = dict(sorted(stats.get("faults", {}).items()))
        report.parking_queue_messages = _queue_depth(environment["PARKING_QUEUE_URL"])
        compare(
            report,
            calls,
            emulator.url,
            target.basic_auth,
            injector.window_messages,
            injector.window_contacts,
            emulator_options.filtered_contacts,
        )
    logged = logs.getvalue()
    report.log_lines = logged.count("\n")
    logged += emitted.getvalue()
    report.leaked = sum(1 for text in sensitive_strings(calls, password) if text in logged)
    report.wall_seconds = time.monotonic() - started
    return report


def _deliver(options: SoakOptions, injector: _Injector, records: Sequence[StreamRecord]) -> DeliveryReport:
    from bridge import factory

    factory.reset()
    injector.instrument(factory.get_bridge())
    injector.report.max_workers = factory.get_bridge().settings.max_workers
    driver = ShardDriver(
        records,
        injector.invoke,
        batch_size=options.batch_size,
        max_retries=options.max_retries,
        on_batch=progress_printer("chaos", len(records)) if options.progress else None,
    )
    try:
        return driver.run()
    finally:
        if options.progress:
            sys.stderr.write("\n")
        factory.reset()


def _record_delivery(report: SoakReport, delivery: DeliveryReport) -> None:
    report.given_up = list(delivery.given_up)
    report.delivery_seconds = delivery.wall_seconds
    report.driver_invocations = delivery.invocations
    report.function_errors = delivery.function_errors
    report.partial_failures = delivery.partial_failures
    report.redelivered_records = delivery.redelivered_records


def _queue_depth(queue_url: str) -> int:
    import boto3

    attributes = boto3.client("sqs").get_queue_attributes(
        QueueUrl=queue_url, AttributeNames=["ApproximateNumberOfMessages"]
    )["Attributes"]
    return int(attributes.get("ApproximateNumberOfMessages", 0))


def format_report(report: SoakReport) -> str:
    o = report.options
    goal = "met" if report.goals_met else "NOT met"
    given_up = ", ".join(f"{first}..{last}" for first, last in report.given_up) or "none"
    sites = ", ".join(f"{site} {n}" for site, n in sorted(report.crash_sites.items())) or "none"
    faults = ", ".join(f"{name} {n}" for name, n in report.faults.items()) or "none"
    reasons = ", ".join(f"{name} {n}" for name, n in sorted(report.parked_reasons.items())) or "none"
    return "\n".join(
        [
            f"chaos soak ({o.profile}): {o.calls} calls x {o.segments} segments, batch {o.batch_size}, "
            f"faults {o.fault_rate:.0%}, "
            f"crashes {o.crash_rate:.0%}, duplicates {o.duplicate_rate:.0%}, seed {o.seed}, "
            f"MAX_WORKERS {report.max_workers}, read timeout {o.read_timeout_s}s"
            f"{'' if o.timeouts else ' (no timeouts)'}, max retries {o.max_retries}",
            f"calls                  {report.calls}",
            f"segments               {report.segments} (+ {report.notes} notes) in {report.records} records",
            f"lost                   {report.lost} (notes {report.lost_notes})",
            f"duplicate interactions {report.duplicate_interactions}{_window(report.window_duplicate_interactions)}",
            f"duplicate messages     {report.duplicate_messages}{_window(report.window_duplicate_messages)}",
            f"unclosed interactions  {report.unclosed}{_window(report.window_unclosed)}",
            *(
                [
                    f"reads filtered (ACL)   {report.filtered_calls} calls: {report.filtered_duplicate_messages} "
                    f"duplicate messages, {report.filtered_duplicate_interactions} duplicate interactions "
                    f"({report.filtered_unclosed} open) in window 1; counted by the bridge: possible duplicates "
                    f"{report.possible_duplicates}, possible orphans {report.possible_orphans}; uncounted "
                    f"{report.uncounted}",
                    f"quota and outages      quota hit {'yes' if report.quota_hit else 'no'}, shard held "
                    f"{report.held_seconds:.1f}s, orphans closed {report.orphans_closed}",
                ]
                if o.production
                else []
            ),
            f"parked                 {report.parked} ({reasons}; queue holds {report.parking_queue_messages})",
            f"mismatched messages    {report.mismatched}",
            f"given up               {len(report.given_up)} ({given_up})",
            f"wall time              {report.wall_seconds:.1f}s (delivery {report.delivery_seconds:.1f}s)",
            f"invocations            {report.invocations} (driver {report.driver_invocations}, function errors "
            f"{report.function_errors}, partial failures {report.partial_failures}, redelivered records "
            f"{report.redelivered_records})",
            f"crashes injected       {report.crashes} ({sites}); armed but not reached "
            f"{report.crashes_armed_not_reached}; swallowed {report.swallowed_crashes}",
            f"duplicate deliveries   {report.duplicate_deliveries} batches twice, {report.stale_slices} stale slices "
            f"({report.stale_records} records)",
            f"faults served          {faults} (of {report.servicenow_requests} ServiceNow requests)",
            f"bridge outcomes        reconciled {report.reconciled}, resent {report.resent}, possible duplicates "
            f"{report.possible_duplicates}, interactions recovered {report.recovered_interactions}, contact retries "
            f"{report.contact_retries}, duplicates skipped {report.duplicates_skipped}",
            f"log lines              {report.log_lines} at {o.log_level}, transcript strings or password in them: "
            f"{report.leaked}",
            *(
                [f"doubled                {_doubled(report)}"]
                if report.duplicated or report.duplicate_interaction_contacts
                else []
            ),
            f"goal                   {goal}",
        ]
    )


def _window(count: int) -> str:
    return f" ({count} in the documented late-apply window: died with the write unanswered)" if count else ""


def _doubled(report: SoakReport, limit: int = 5) -> str:
    """A few doubled ids to grep the logs for (``contact_id``); the JSON report has them all."""
    items = [f"interaction of {contact}" for contact in report.duplicate_interaction_contacts[:limit]]
    items += [f"{message_id} x{copies} ({contact})" for contact, message_id, copies in report.duplicated[:limit]]
    more = len(report.duplicated) + len(report.duplicate_interaction_contacts) - len(items)
    return "; ".join(items) + (f"; {more} more" if more > 0 else "")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from voicebridge import argtypes

    defaults = SoakOptions()
    count, rate = argtypes.positive_int, argtypes.fraction
    parser.add_argument("--calls", type=count, default=defaults.calls, help="concurrent synthetic calls (default 200)")
    parser.add_argument("--segments", type=count, default=defaults.segments, help="final transcripts per call (60)")
    parser.add_argument(
        "--batch-size", type=argtypes.batch_size, default=defaults.batch_size, help="records per invocation (100)"
    )
    parser.add_argument("--fault-rate", type=rate, default=defaults.fault_rate, help="ServiceNow faults, 0-1 (0.10)")
    parser.add_argument("--crash-rate", type=rate, default=defaults.crash_rate, help="crashed invocations, 0-1 (0.05)")
    parser.add_argument(
        "--duplicate-rate", type=rate, default=defaults.duplicate_rate, help="duplicated deliveries, 0-1 (0.05)"
    )
    parser.add_argument("--seed", type=int, default=defaults.seed, help="seed of calls, faults and crashes (1)")
    parser.add_argument(
        "--max-retries",
        type=argtypes.non_negative_int,
        default=defaults.max_retries,
        help="retries before a batch is given up (40, the template's default)",
    )
    parser.add_argument(
        "--max-workers", type=argtypes.bounded_int(1, 64), help="the handler's MAX_WORKERS, 1-64 (the bridge's default)"
    )
    parser.add_argument(
        "--read-timeout",
        type=argtypes.positive_float,
        default=defaults.read_timeout_s,
        help="SERVICENOW_READ_TIMEOUT seconds (0.5)",
    )
    parser.add_argument(
        "--no-timeouts", action="store_true", help="no read timeouts (their share of faults goes to the statuses)"
    )
    parser.add_argument(
        "--log-level", type=argtypes.log_level, default=defaults.log_level, help="the handler's log level (WARNING)"
    )
    parser.add_argument(
        "--profile",
        choices=PROFILES,
        default=defaults.profile,
        help="production: sessions, throttled read-backs, busy-session 202s, a quota mid-run, read ACLs (default)",
    )
    parser.add_argument("--json", action="store_true", help="print the report as JSON")


def run(args: argparse.Namespace) -> int:
    try:
        options = SoakOptions(
            calls=args.calls,
            segments=args.segments,
            batch_size=args.batch_size,
            fault_rate=args.fault_rate,
            crash_rate=args.crash_rate,
            duplicate_rate=args.duplicate_rate,
            seed=args.seed,
            max_retries=args.max_retries,
            max_workers=args.max_workers,
            read_timeout_s=args.read_timeout,
            timeouts=not args.no_timeouts,
            log_level=args.log_level.upper(),
            progress=sys.stderr.isatty(),
            profile=args.profile,
        )
    except ValueError as exc:
        print(f"voicebridge chaos: {exc}", file=sys.stderr)
        return 2
    report = run_soak(options)
    print(json.dumps(report.to_dict(), indent=2) if args.json else format_report(report))
    return 0 if report.goals_met else 1


if __name__ == "__main__":  # pragma: no cover
    parser = argparse.ArgumentParser(prog="voicebridge chaos")
    add_arguments(parser)
    raise SystemExit(run(parser.parse_args()))
