"""The sweeper over fakes: the pure selection, the close ordering, conflicts and failures; and the index attributes
the bridge's own PutItem sets and removes."""

from __future__ import annotations

import pytest

from bridge.adapters.dynamodb import (
    ACTIVITY_BUCKET_SECONDS,
    OPEN_INDEX_SHARDS,
    SWEEP_PENDING,
    SWEPT,
    open_shard,
    to_item,
)
from bridge.config import Settings
from bridge.directory import ContactDirectory
from bridge.errors import (
    ContactConflictError,
    ServiceNowAuthError,
    ServiceNowReadForbiddenError,
    ServiceNowRejectedError,
    ServiceNowUnavailableError,
)
from bridge.models import ContactState, ContactStatus
from bridge.sweeper import (
    Sweeper,
    disconnect_close_enabled,
    idle_close_minutes,
    marked_closing,
    needs_close,
    select_idle,
)
from tests.fakes import FakeConnect, FakeContactStore, FakeServiceNow

pytestmark = pytest.mark.unit

NOW = 1_800_000_000
HOUR = 3600
SETTINGS = Settings(
    servicenow_url="https://example.service-now.com",
    servicenow_secret_arn="arn:aws:secretsmanager:us-east-1:123456789012:secret:sn-AbCdEf",
    contact_table="contacts",
    parking_queue_url="unused",
    connect_instance_alias="example",
)


def state(
    contact_id: str,
    status: ContactStatus = ContactStatus.OPEN,
    idle: int = 2 * HOUR,
    interaction_id: str | None = "i-1",
    close_seq: str | None = None,
    version: int = 3,
) -> ContactState:
    return ContactState(
        contact_id,
        status,
        version,
        instance_id="inst-1",
        interaction_id=interaction_id,
        conversation_id="conv-1" if interaction_id else None,
        close_sequence_number=close_seq,
        updated_at=NOW - idle,
    )


class IndexedStore(FakeContactStore):
    """The fake contact store plus the sparse index query (computed from the items, as DynamoDB would)."""

    def __init__(self) -> None:
        super().__init__()
        self.saves: list[ContactState] = []

    def idle_contact_ids(self, idle_before: int, limit: int) -> list[str]:
        cutoff = idle_before // ACTIVITY_BUCKET_SECONDS
        return [
            cid
            for cid, item in self.items.items()
            if "open_shard" in to_item(item) and item.updated_at // ACTIVITY_BUCKET_SECONDS < cutoff
        ][:limit]

    def save(self, state: ContactState, expected_version: int) -> ContactState:
        saved = super().save(state, expected_version)
        self.saves.append(saved)
        return saved

    def put(self, *states: ContactState) -> None:
        for item in states:
            self.items[item.contact_id] = item


class World:
    def __init__(self) -> None:
        self.store = IndexedStore()
        self.servicenow = FakeServiceNow()
        self.sweeper = Sweeper(
            self.store, self.servicenow, ContactDirectory(SETTINGS, FakeConnect()), clock=lambda: NOW
        )

    def open_interaction(self, contact_id: str) -> str:
        from bridge.models import OpenRequest

        interaction_id = self.servicenow.create_interaction(OpenRequest("anonymous", contact_id))
        self.servicenow.calls.clear()
        return interaction_id


@pytest.fixture
def world() -> World:
    return World()


def far_deadline() -> float:
    import time

    return time.monotonic() + 60


# --- pure selection --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("item", "expected"),
    [
        (state("open-idle"), True),
        (state("claimed-idle", ContactStatus.CLAIMED, interaction_id=None), True),
        (state("exactly-at-threshold", idle=HOUR), True),
        (state("fresh", idle=HOUR - 1), False),
        (state("closed-by-bridge", ContactStatus.CLOSED, close_seq="4959"), False),
        (state("closed-by-sweep", ContactStatus.CLOSED, close_seq=SWEPT), False),
        (state("sweep-pending", ContactStatus.CLOSED, idle=0, close_seq=SWEEP_PENDING), True),
    ],
)
def test_needs_close(item: ContactState, expected: bool) -> None:
    assert needs_close(item, NOW, HOUR) is expected


def test_select_idle_orders_oldest_first_and_drops_the_rest() -> None:
    chosen = select_idle([state("b", idle=2 * HOUR), state("fresh", idle=60), state("a", idle=3 * HOUR)], NOW, HOUR)
    assert [s.contact_id for s in chosen] == ["a", "b"]


def test_marked_closing_keeps_activity_time_and_stays_indexed() -> None:
    marked = marked_closing(state("c"), "i-1")
    assert marked.status is ContactStatus.CLOSED and marked.updated_at == NOW - 2 * HOUR
    assert "open_shard" in to_item(marked)  # the next sweep still finds it until the PATCH is confirmed


# --- index attributes: set and removed by the same PutItem -------------------------------------------------------


def test_index_attributes_exist_only_while_open() -> None:
    for status in (ContactStatus.CLAIMED, ContactStatus.OPEN):
        item = to_item(state("c-1", status))
        assert item["open_shard"] == {"S": open_shard("c-1")}
        assert item["active_bucket"] == {"N": str((NOW - 2 * HOUR) // ACTIVITY_BUCKET_SECONDS)}
    for close_seq in ("4959", SWEPT, None):
        assert "open_shard" not in to_item(state("c-1", ContactStatus.CLOSED, close_seq=close_seq))
        assert "active_bucket" not in to_item(state("c-1", ContactStatus.CLOSED, close_seq=close_seq))


def test_shards_are_stable_and_spread() -> None:
    shards = {open_shard(f"contact-{i}") for i in range(200)}
    assert shards == {str(i) for i in range(OPEN_INDEX_SHARDS)}
    assert open_shard("contact-1") == open_shard("contact-1")


# --- the sweep ---------------------------------------------------------------------------------------------------


def test_idle_open_contact_is_closed_with_the_recording_url(world: World) -> None:
    interaction_id = world.open_interaction("c-idle")
    world.store.put(state("c-idle", interaction_id=interaction_id), state("c-fresh", idle=60))

    result = world.sweeper.sweep(HOUR, far_deadline())

    assert result.summary() == {"candidates": 1, "swept": 1, "conflicts": 0, "errors": 0, "deferred": 0}
    closed = world.servicenow.interactions[interaction_id]
    assert closed.closed and closed.recording_url == (
        "https://example.my.connect.aws/contact-trace-records/details/c-idle"
    )
    item = world.store.items["c-idle"]
    assert item.status is ContactStatus.CLOSED and item.close_sequence_number == SWEPT
    # closing mark first, PATCH, then the swept mark (which leaves the index)
    assert [(s.status, s.close_sequence_number) for s in world.store.saves] == [
        (ContactStatus.CLOSED, SWEEP_PENDING),
        (ContactStatus.CLOSED, SWEPT),
    ]
    assert world.store.items["c-fresh"].status is ContactStatus.OPEN


def test_a_concurrent_bridge_write_wins(world: World) -> None:
    interaction_id = world.open_interaction("c-race")
    world.store.put(state("c-race", interaction_id=interaction_id))
    world.store.fail_next_save.append(ContactConflictError("version changed"))

    result = world.sweeper.sweep(HOUR, far_deadline())

    assert result.conflicts == 1 and result.swept == 0
    assert not world.servicenow.interactions[interaction_id].closed
    assert world.servicenow.calls == []


def test_claimed_without_interaction_recovers_it_by_client_session_id(world: World) -> None:
    interaction_id = world.open_interaction("c-lost")  # created by an attempt that died before saving the id
    world.store.put(state("c-lost", ContactStatus.CLAIMED, interaction_id=None))

    result = world.sweeper.sweep(HOUR, far_deadline())

    assert result.swept == 1
    assert world.servicenow.calls == ["find_interaction", "close_interaction"]
    assert world.servicenow.interactions[interaction_id].closed
    assert world.store.items["c-lost"].interaction_id == interaction_id


@pytest.mark.parametrize("forbidden", [False, True])
def test_claimed_without_any_interaction_is_only_marked_closed(world: World, forbidden: bool) -> None:
    world.servicenow.read_forbidden = forbidden
    world.store.put(state("c-none", ContactStatus.CLAIMED, interaction_id=None))

    result = world.sweeper.sweep(HOUR, far_deadline())

    assert [o.action for o in result.outcomes] == ["closed_no_interaction"]
    assert "close_interaction" not in world.servicenow.calls
    item = world.store.items["c-none"]
    assert item.status is ContactStatus.CLOSED and item.close_sequence_number == SWEPT


def test_servicenow_down_keeps_the_pending_mark_and_the_next_sweep_closes(world: World) -> None:
    interaction_id = world.open_interaction("c-down")
    world.store.put(state("c-down", interaction_id=interaction_id))
    world.servicenow.fail_next["close_interaction"] = [ServiceNowUnavailableError("503", status=503)]

    first = world.sweeper.sweep(HOUR, far_deadline())

    assert first.errors == 1 and first.swept == 0
    pending = world.store.items["c-down"]
    assert pending.status is ContactStatus.CLOSED and pending.close_sequence_number == SWEEP_PENDING
    assert world.store.idle_contact_ids(NOW - HOUR, 10) == ["c-down"]  # still in the index

    second = world.sweeper.sweep(HOUR, far_deadline())

    assert second.swept == 1 and world.servicenow.interactions[interaction_id].closed
    assert world.store.items["c-down"].close_sequence_number == SWEPT
    assert world.store.idle_contact_ids(NOW - HOUR, 10) == []


def test_a_rejected_close_is_final_and_counted(world: World) -> None:
    interaction_id = world.open_interaction("c-gone")
    world.store.put(state("c-gone", interaction_id=interaction_id))
    world.servicenow.fail_next["close_interaction"] = [ServiceNowRejectedError("Not found", status=404)]

    result = world.sweeper.sweep(HOUR, far_deadline())

    assert result.errors == 1
    assert world.store.items["c-gone"].close_sequence_number == SWEPT  # not retried every five minutes


def test_a_configuration_error_stops_the_sweep(world: World) -> None:
    for name in ("c-1", "c-2", "c-3"):
        world.store.put(state(name, interaction_id=world.open_interaction(name)))
    world.servicenow.fail_next["close_interaction"] = [ServiceNowAuthError("User Not Authenticated", status=401)]

    result = world.sweeper.sweep(HOUR, far_deadline())

    assert result.errors == 1 and result.deferred == 2
    assert world.servicenow.calls == ["close_interaction"]


def test_out_of_time_defers_the_rest(world: World) -> None:
    world.store.put(state("c-1"), state("c-2"))
    result = world.sweeper.sweep(HOUR, deadline=0.0)
    assert result.deferred == 2 and result.outcomes == []


def test_disconnected_closes_only_after_the_grace_period(world: World) -> None:
    interaction_id = world.open_interaction("c-hangup")
    world.store.put(state("c-hangup", interaction_id=interaction_id, idle=30))

    assert world.sweeper.close_if_idle("c-hangup", 120, far_deadline()).swept == 0  # final flush may be in flight
    assert world.sweeper.close_if_idle("c-unknown", 120, far_deadline()).candidates == 0

    world.store.put(state("c-hangup", interaction_id=interaction_id, idle=150))
    assert world.sweeper.close_if_idle("c-hangup", 120, far_deadline()).swept == 1
    assert world.servicenow.interactions[interaction_id].closed


# --- settings ----------------------------------------------------------------------------------------------------


def test_settings_name_the_variable() -> None:
    assert idle_close_minutes({}) == 90 and idle_close_minutes({"IDLE_CLOSE_MINUTES": "15"}) == 15
    for bad in ("soon", "0", "-5"):
        with pytest.raises(Exception, match="IDLE_CLOSE_MINUTES"):
            idle_close_minutes({"IDLE_CLOSE_MINUTES": bad})
    assert disconnect_close_enabled({}) and not disconnect_close_enabled({"DISCONNECT_CLOSE_ENABLED": "false"})
    with pytest.raises(Exception, match="DISCONNECT_CLOSE_ENABLED"):
        disconnect_close_enabled({"DISCONNECT_CLOSE_ENABLED": "maybe"})


def test_read_forbidden_is_a_rejected_error() -> None:
    # The recovery path relies on this: a forbidden read is caught before the generic rejected handling.
    assert issubclass(ServiceNowReadForbiddenError, ServiceNowRejectedError)


def test_idleness_is_measured_on_the_stream_clock_when_the_shard_position_is_known() -> None:
    from bridge.models import ShardPosition
    from bridge.sweeper import stream_idle

    now = 1_000_000
    contact = ContactState("c", ContactStatus.OPEN, 1, updated_at=now - 3600, last_arrival=now - 3600, shard_id="s-1")
    caught_up = {"s-1": ShardPosition(arrival=now - 1, read_at=now)}
    behind = {"s-1": ShardPosition(arrival=now - 3590, read_at=now)}  # the bridge is an hour behind on this shard
    assert stream_idle(contact, now, 1800, caught_up)
    assert not stream_idle(contact, now, 1800, behind)
    assert stream_idle(contact, now, 1800, {})  # unknown position: the wall clock alone
    assert not needs_close(contact, now, 1800, behind) and needs_close(contact, now, 1800, caught_up)
    # A quiet stream: the position was recorded 40 minutes ago with a 1 s lag; the stream is at "now - 1 s".
    quiet = {"s-1": ShardPosition(arrival=now - 2401, read_at=now - 2400)}
    assert stream_idle(contact, now, 1800, quiet)
