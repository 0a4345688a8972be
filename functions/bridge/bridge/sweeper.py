"""The sweeper: a second Lambda handler in the bridge's code package that closes interactions nothing else will close.

A call's interaction is normally closed by the bridge when COMPLETED or FAILED comes off the stream. When that event
is lost (the stream trimmed it, Lambda gave a batch up, Connect never sent it), the interaction would stay open in
ServiceNow forever. The sweeper runs on a schedule and closes every contact that has been *idle* for
``IDLE_CLOSE_MINUTES`` (default 90), with the same recording URL the bridge sends (``ContactDirectory``), and marks it
closed in DynamoDB so the bridge treats it as closed from then on (late segments are parked ``after_close``).

Why the contact item's ``updated_at`` is a sound idle signal: the bridge writes the item only when something
changes (open, new final transcript segments or notes, close); batches of utterances (partials) or duplicates
write nothing. So ``updated_at`` is the time of the last *final* turn, not of the last record. On a live call
Contact Lens emits a final ``Transcript`` within seconds of each turn, and even a long hold produces hold-message
or agent turns well within minutes; an hour without a single final turn means the call is over. The threshold
must also exceed how long Kinesis keeps retrying a failing batch (``MaximumRetryAttempts``, minutes) and the worst
iterator age, or a lagging bridge could still be holding the contact's last records when it is swept: both are
far below 60 minutes in a healthy deployment, and the parameter has a floor of 10 minutes.

Idle on the stream's clock too: the bridge records, per shard, how far it has read (``stream#<shard>`` items:
the newest record's arrival and when; a stalled bridge records the record it is stuck on), and each contact item
keeps its last record's arrival and shard. A contact closes only when it is idle on both clocks, so a bridge that is
minutes behind (or holding its shard through a ServiceNow outage) never takes a call whose last turns it has not
read yet for an idle one; this is what lets ``DISCONNECTED`` close early without closing too early.

Finding idle contacts: a sparse GSI (``open-idle``, see ``bridge.adapters.dynamodb``) holds only claimed/open
contacts, keyed by a small shard and the 5-minute bucket of ``updated_at``; a sweep queries the buckets older than
the threshold and re-reads the few candidates consistently. No Scan: at 10k concurrent calls the table holds ~100k
items (7-day TTL) of up to ~80 KB (the sent-id digests), and a Scan is billed on every byte read every 5 minutes.

Each close is ordered so that no outcome leaves an interaction open without a later sweep noticing:
1. a claimed contact without an interaction id is looked up by ``client_session_id`` (it may have been created by
   an attempt that died before saving it); none found means there is nothing to close in ServiceNow;
2. the item is written ``closed`` with ``close_seq = SWEEP_PENDING``, conditional on the version just read: a
   concurrent bridge write wins and the contact is skipped this round. The pending marker keeps it in the index;
3. the idempotent ``PATCH /state`` closes the interaction with the recording URL;
4. the item is rewritten with ``close_seq = SWEPT``, which takes it out of the index.
A crash or a ServiceNow failure between 2 and 4 leaves the marker, and the next sweep re-sends the PATCH. A 400/403/
404 (the interaction is gone or refused) is permanent: the contact is marked swept and the error logged and counted.

Optional, sooner: Amazon Connect ``DISCONNECTED`` contact events (EventBridge) close that one contact, but only when
it has been idle for ``DISCONNECT_GRACE_SECONDS`` (2 minutes). DISCONNECTED can arrive before the call's last
transcript segments are on the stream; a contact with a turn in the last 2 minutes is left to COMPLETED or to the
schedule, so the event never closes an interaction before the final flush.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from aws_lambda_powertools import Metrics
from aws_lambda_powertools.utilities.typing import LambdaContext

from bridge.adapters.dynamodb import SWEEP_PENDING, SWEPT
from bridge.directory import ContactDirectory
from bridge.errors import (
    ConfigurationError,
    ContactConflictError,
    RetryableError,
    ServiceNowReadForbiddenError,
    ServiceNowRejectedError,
)
from bridge.legs import call_may_close
from bridge.log import logger
from bridge.models import ContactState, ContactStatus, ShardPosition
from bridge.ports import ServiceNowPort, SweepStorePort

DEFAULT_IDLE_CLOSE_MINUTES = 90  # above the outage the event source mapping's defaults ride out (70 min)
DEFAULT_TRANSFER_GRACE_SECONDS = 300
DISCONNECT_GRACE_SECONDS = 120
# Bounds one sweep's work; what is left waits for the next run (the index keeps it).
MAX_CONTACTS_PER_SWEEP = 500
# Stop starting closes this long before the Lambda timeout: a close is up to three ServiceNow requests.
SAFETY_MARGIN_SECONDS = 15.0
CONNECT_EVENT = "Amazon Connect Contact Event"

metrics = Metrics()


# --- pure selection ------------------------------------------------------------------------------------------------


def stream_idle(
    state: ContactState, now: float, idle_seconds: int, positions: Mapping[str, ShardPosition] | None
) -> bool:
    """Idle on the stream's clock: the contact's last record is ``idle_seconds`` behind how far the bridge has read
    its shard (``ShardPosition.now``: the shard's last read position, aged by the wall clock at the lag it had).
    A bridge minutes behind is minutes behind for this measure too, so a hang-up it has not read up to yet never
    looks idle. Unknown (no position recorded, an item from before positions were kept): True, the wall-clock
    rule alone decides."""
    position = (positions or {}).get(state.shard_id) if state.shard_id else None
    if position is None or not state.last_arrival:
        return True
    return position.now(now) - state.last_arrival >= idle_seconds


def needs_close(
    state: ContactState,
    now: int,
    idle_seconds: int,
    positions: Mapping[str, ShardPosition] | None = None,
    pending_after: int | None = None,
) -> bool:
    """Whether the sweeper should close this contact now (pure).

    Open or claimed contacts idle for at least ``idle_seconds``; contacts the bridge closed whose PATCH never got
    through (``close_pending``: refused until Kinesis gave up, or parked) once as idle, so the redelivery has tried
    first; and contacts a previous sweep marked closed whose PATCH is not confirmed (retried whatever their age).
    Everything else closed is never touched.
    """
    if state.status is ContactStatus.CLOSED:
        if state.close_sequence_number == SWEEP_PENDING:
            return True
        if not state.close_pending:
            return False
        # Ended on the stream, the call not closed yet: a leg waiting for the call's other legs, or a PATCH that never
        # got through. Looked at again after ``pending_after`` (TransferGraceSeconds), not the idle limit.
        idle_seconds = idle_seconds if pending_after is None else pending_after
    return now - state.updated_at >= idle_seconds and stream_idle(state, now, idle_seconds, positions)


def select_idle(
    states: Iterable[ContactState],
    now: int,
    idle_seconds: int,
    positions: Mapping[str, ShardPosition] | None = None,
    pending_after: int | None = None,
) -> list[ContactState]:
    """The contacts to close, oldest activity first (the index is eventually consistent: re-check fresh items)."""
    chosen = [state for state in states if needs_close(state, now, idle_seconds, positions, pending_after)]
    return sorted(chosen, key=lambda state: (state.updated_at, state.contact_id))


def marked_closing(state: ContactState, interaction_id: str | None) -> ContactState:
    """Step 2: closed for the bridge, still in the index until the PATCH is confirmed. ``updated_at`` is kept: a
    sweep is not activity, and an unchanged bucket keeps the contact in the next sweep's query."""
    return state.evolve(status=ContactStatus.CLOSED, interaction_id=interaction_id, close_sequence_number=SWEEP_PENDING)


def marked_swept(state: ContactState) -> ContactState:
    return state.evolve(close_sequence_number=SWEPT, close_pending=False, leg_ended=True)


# --- the sweep -----------------------------------------------------------------------------------------------------


@dataclass
class SweepOutcome:
    contact_id: str
    action: str  # closed | closed_no_interaction | conflict | error
    interaction_id: str | None = None
    has_recording_url: bool = False
    error_class: str | None = None


@dataclass
class SweepResult:
    candidates: int = 0
    outcomes: list[SweepOutcome] = field(default_factory=list)
    deferred: int = 0  # selected but left for the next run (time budget or a configuration error)

    def count(self, *actions: str) -> int:
        return sum(1 for outcome in self.outcomes if outcome.action in actions)

    @property
    def swept(self) -> int:
        return self.count("closed", "closed_no_interaction")

    @property
    def errors(self) -> int:
        return self.count("error")

    @property
    def conflicts(self) -> int:
        return self.count("conflict")

    def summary(self) -> dict[str, int]:
        return {
            "candidates": self.candidates,
            "swept": self.swept,
            "conflicts": self.conflicts,
            "errors": self.errors,
            "deferred": self.deferred,
        }


class _StopSweep(Exception):
    """A configuration error: every further close would fail the same way."""


class Sweeper:
    def __init__(
        self,
        store: SweepStorePort,
        servicenow: ServiceNowPort,
        directory: ContactDirectory,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = store
        self.servicenow = servicenow
        self.directory = directory
        self.clock = clock
        self.monotonic = monotonic
        # How long a contact that ended on the stream waits for its call's other legs (or for its close to get
        # through) before a sweep looks at it again (TRANSFER_GRACE_SECONDS).
        self.transfer_grace_seconds = DEFAULT_TRANSFER_GRACE_SECONDS

    def sweep(self, idle_seconds: int, deadline: float, limit: int = MAX_CONTACTS_PER_SWEEP) -> SweepResult:
        """Close every contact idle for ``idle_seconds`` (bounded by ``limit`` and the ``deadline``)."""
        now = int(self.clock())
        contact_ids = self.store.idle_contact_ids(now - min(idle_seconds, self.transfer_grace_seconds), limit)
        return self._close_all(contact_ids, now, idle_seconds, deadline)

    def close_if_idle(self, contact_id: str, idle_seconds: int, deadline: float) -> SweepResult:
        """One contact (a DISCONNECTED event): closed only when idle for ``idle_seconds``; else left alone."""
        return self._close_all([contact_id], int(self.clock()), idle_seconds, deadline)

    def _close_all(self, contact_ids: list[str], now: int, idle_seconds: int, deadline: float) -> SweepResult:
        result = SweepResult()
        if not contact_ids:
            return result
        states = list(self.store.load_many(contact_ids).values())
        positions = self.store.positions(sorted({s.shard_id for s in states if s.shard_id}))
        chosen = select_idle(states, now, idle_seconds, positions, self.transfer_grace_seconds)
        result.candidates = len(chosen)
        for index, state in enumerate(chosen):
            if self.monotonic() > deadline:
                result.deferred = len(chosen) - index
                logger.warning("sweep out of time", step="sweep", outcome="deferred", remaining=result.deferred)
                break
            try:
                result.outcomes.append(self.close(state))
            except _StopSweep:
                result.outcomes.append(SweepOutcome(state.contact_id, "error", error_class="ConfigurationError"))
                result.deferred = len(chosen) - index - 1
                break
        return result

    def close(self, state: ContactState) -> SweepOutcome:
        """Close one contact (steps 1-4 of the module docstring)."""
        logger.thread_safe_append_keys(contact_id=state.contact_id, interaction_id=state.interaction_id)
        try:
            return self._close(state)
        except ConfigurationError as exc:
            logger.error("sweeper is misconfigured", step="sweep", outcome="error", error=str(exc))
            raise _StopSweep() from exc
        except Exception as exc:  # noqa: BLE001 - one contact's failure must not stop the sweep
            if isinstance(exc, RetryableError):
                logger.warning(
                    "sweep close failed; retried next run",
                    step="sweep",
                    outcome="error",
                    error_class=type(exc).__name__,
                    error=str(exc),
                )
            else:
                logger.exception("sweep close failed", step="sweep", outcome="error", error_class=type(exc).__name__)
            return SweepOutcome(state.contact_id, "error", state.interaction_id, error_class=type(exc).__name__)
        finally:
            logger.thread_safe_clear_keys()

    def _close(self, state: ContactState) -> SweepOutcome:
        if state.interaction_id and self.directory.knows_calls:
            # The bridge's close rule (bridge.legs): a leg of a transferred call closes the call only as its last.
            decision, _others, _end = call_may_close(
                self.directory,
                self.store,
                state.instance_id,
                state.contact_id,
                state.root_contact_id or state.contact_id,
                [],
            )
            if not decision.close:
                return self._leg_ended(state, decision.waiting_for)
        interaction_id = state.interaction_id or self._recover(state.contact_id)
        try:
            marked = self.store.save(marked_closing(state, interaction_id), expected_version=state.version)
        except ContactConflictError:
            # The bridge wrote the contact since it was read: it is active after all (or just closed). Skip it.
            logger.info("contact changed concurrently; skipped", step="sweep", outcome="conflict")
            return SweepOutcome(state.contact_id, "conflict", interaction_id)
        if interaction_id is None:
            self._finish(marked)
            logger.info("idle contact closed; no interaction existed", step="sweep", outcome="closed_no_interaction")
            return SweepOutcome(state.contact_id, "closed_no_interaction")
        url = self.directory.recording_url(marked.instance_id, marked.contact_id)
        try:
            self.servicenow.close_interaction(interaction_id, url)
        except ServiceNowRejectedError as exc:
            # 400/403/404: the interaction is gone or refuses the close; retrying cannot help. Stop sweeping it.
            self._finish(marked)
            logger.error(
                "sweep close rejected; contact marked closed",
                step="sweep",
                outcome="error",
                interaction_id=interaction_id,
                status=exc.status,
                transaction_id=exc.transaction_id,
                error=exc.message,
            )
            return SweepOutcome(state.contact_id, "error", interaction_id, error_class=type(exc).__name__)
        self._finish(marked)
        logger.info(
            "idle interaction closed",
            step="sweep",
            outcome="closed",
            interaction_id=interaction_id,
            idle_seconds=int(self.clock()) - state.updated_at,
            has_recording_url=url is not None,
        )
        return SweepOutcome(state.contact_id, "closed", interaction_id, has_recording_url=url is not None)

    def _leg_ended(self, state: ContactState, waiting_for: tuple[str, ...]) -> SweepOutcome:
        """An idle leg whose call goes on in another leg: it has ended (so the other leg's close may go ahead), the
        call's interaction stays open. Still in the index (close_pending) until the call is closed."""
        if state.status is not ContactStatus.CLOSED or not state.close_pending or not state.leg_ended:
            try:
                self.store.save(
                    state.evolve(status=ContactStatus.CLOSED, close_pending=True, leg_ended=True),
                    expected_version=state.version,
                )
            except ContactConflictError:
                return SweepOutcome(state.contact_id, "conflict", state.interaction_id)
        logger.info("idle leg ended; its call goes on", step="sweep", outcome="waiting", waiting_for=list(waiting_for))
        return SweepOutcome(state.contact_id, "waiting", state.interaction_id)

    def _recover(self, contact_id: str) -> str | None:
        """A claimed contact without an interaction id: an attempt may have created it and died before saving."""
        try:
            return self.servicenow.find_interaction(contact_id)
        except ServiceNowReadForbiddenError:
            # Cannot tell; nothing the sweeper could close either way. The contact is marked closed.
            logger.warning("recovery read forbidden", step="sweep", outcome="read_forbidden")
            return None

    def _finish(self, marked: ContactState) -> None:
        try:
            self.store.save(marked_swept(marked), expected_version=marked.version)
        except ContactConflictError:
            # The bridge rewrote the (closed) item meanwhile and kept the pending marker: the next sweep re-sends
            # the idempotent PATCH and finishes then.
            logger.info("swept marker not written; next sweep confirms", step="sweep", outcome="conflict")


# --- Lambda wiring -------------------------------------------------------------------------------------------------


def idle_close_minutes(environ: Mapping[str, str]) -> int:
    raw = environ.get("IDLE_CLOSE_MINUTES", "").strip()
    if not raw:
        return DEFAULT_IDLE_CLOSE_MINUTES
    try:
        value = int(raw)
    except ValueError:
        raise ConfigurationError(f"IDLE_CLOSE_MINUTES must be an integer, got {raw!r}") from None
    if not 1 <= value <= 10080:
        raise ConfigurationError(f"IDLE_CLOSE_MINUTES must be between 1 and 10080, got {value}")
    return value


def transfer_grace_seconds(environ: Mapping[str, str]) -> int:
    raw = environ.get("TRANSFER_GRACE_SECONDS", "").strip()
    if not raw:
        return DEFAULT_TRANSFER_GRACE_SECONDS
    try:
        value = int(raw)
    except ValueError:
        raise ConfigurationError(f"TRANSFER_GRACE_SECONDS must be an integer, got {raw!r}") from None
    if not 0 <= value <= 86400:
        raise ConfigurationError(f"TRANSFER_GRACE_SECONDS must be between 0 and 86400, got {value}")
    return value


def disconnect_close_enabled(environ: Mapping[str, str]) -> bool:
    raw = environ.get("DISCONNECT_CLOSE_ENABLED", "true").strip().lower()
    if raw not in {"true", "false"}:
        raise ConfigurationError(f"DISCONNECT_CLOSE_ENABLED must be true or false, got {raw!r}")
    return raw == "true"


@dataclass
class _Wired:
    sweeper: Sweeper
    servicenow: Any
    idle_seconds: int
    disconnect_close: bool = True


_wired: _Wired | None = None
_lock = threading.Lock()


def _build() -> _Wired:
    from bridge import factory
    from bridge.config import load_settings

    environ = dict(os.environ)
    # The sweeper parks nothing; the bridge's settings require the queue, so it gets a placeholder it never uses.
    environ.setdefault("PARKING_QUEUE_URL", "unused-by-the-sweeper")
    settings = load_settings(environ)
    bridge = factory.build_bridge(settings)  # the same adapters and ContactDirectory the bridge uses
    sweeper = Sweeper(bridge.store, bridge.servicenow, bridge.processor.runner.directory)
    sweeper.transfer_grace_seconds = transfer_grace_seconds(environ)
    return _Wired(sweeper, bridge.servicenow, idle_close_minutes(environ) * 60, disconnect_close_enabled(environ))


def get_sweeper() -> _Wired:
    global _wired
    with _lock:
        if _wired is None:
            _wired = _build()
        return _wired


def reset() -> None:
    """Forget the cached wiring (tests change the environment between runs)."""
    global _wired
    with _lock:
        _wired = None


def _publish(result: SweepResult) -> None:
    metrics.add_metric(name="InteractionsSwept", unit="Count", value=result.swept)
    metrics.add_metric(name="SweepErrors", unit="Count", value=result.errors)
    metrics.add_metric(name="SweepConflicts", unit="Count", value=result.conflicts)
    metrics.add_metric(name="SweepCandidates", unit="Count", value=result.candidates)
    # Selected to close but still open after this run (a close failed, or out of time): what the left-open alarm
    # watches. Conflicts are not counted: the bridge wrote the contact, so it is active after all.
    metrics.add_metric(name="SweepLeftOpen", unit="Count", value=result.errors + result.deferred)


@metrics.log_metrics
@logger.inject_lambda_context(clear_state=True)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """Scheduled sweep, or one contact on an Amazon Connect DISCONNECTED event."""
    try:
        wired = get_sweeper()
    except ConfigurationError as exc:
        logger.error("sweeper is not configured", step="configure", outcome="error", error=str(exc))
        metrics.add_metric(name="SweepErrors", unit="Count", value=1)
        raise
    deadline = time.monotonic() + context.get_remaining_time_in_millis() / 1000.0 - SAFETY_MARGIN_SECONDS
    wired.servicenow.deadline = deadline
    detail = event.get("detail") if isinstance(event, dict) else None
    if event.get("detail-type") == CONNECT_EVENT and isinstance(detail, dict):
        contact_id = detail.get("contactId")
        wanted = wired.disconnect_close and detail.get("eventType") == "DISCONNECTED"
        if not wanted or not isinstance(contact_id, str) or not contact_id:
            logger.info("contact event ignored", step="disconnected", outcome="skipped")
            return {"mode": "disconnected", **SweepResult().summary()}
        result = wired.sweeper.close_if_idle(contact_id, DISCONNECT_GRACE_SECONDS, deadline)
        mode = "disconnected"
    else:
        result = wired.sweeper.sweep(wired.idle_seconds, deadline)
        mode = "schedule"
    _publish(result)
    logger.info("sweep done", step="sweep", mode=mode, counts=result.summary())
    return {"mode": mode, **result.summary()}
