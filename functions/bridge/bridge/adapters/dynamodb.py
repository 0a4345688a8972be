"""Contact store on DynamoDB (low-level client; the item has a fixed, small shape).

Item: ``contact_id`` (key), ``status``, ``version`` (optimistic lock), ``interaction_id``, ``conversation_id``,
``sent`` (packed 64-bit digests, see models.SentSet), ``pending`` (unconfirmed segment ids with the record that
carried them), ``close_seq``, ``max_offset``, timestamps, and ``expires_at`` (TTL).

Sparse index ``open-idle`` (for the sweeper, ``bridge.sweeper``): ``open_shard`` (partition) and ``active_bucket``
(sort, ``updated_at`` floored to ``ACTIVITY_BUCKET_SECONDS``) exist only while the contact is claimed or open (or a
sweeper close awaits its PATCH), so closed contacts cost the index nothing. Both are derived in :func:`to_item`,
so they are set and removed by the bridge's one PutItem per contact per batch, never by an extra write. Projection
KEYS_ONLY and a bucketed sort key: a write changes the index entry only when the contact opens, closes or enters a
new 5-minute bucket (an index update costs a write only when an indexed or projected attribute changes), so the
index adds about one index write per open call per 5 minutes instead of one per bridge write.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from bridge.errors import (
    ConfigurationError,
    ContactConflictError,
    ContactStoreError,
    ContactStoreUnavailableError,
    PermanentError,
)
from bridge.models import ContactState, ContactStatus, PendingEntry, SentSet, ShardPosition, segment_digest

if TYPE_CHECKING:
    from bridge.postcall.record import ContactItem, ImportRecord

BATCH_GET_LIMIT = 100
OPEN_INDEX = "open-idle"
# A handful of partitions so the index never concentrates every open call's key changes on one partition; the
# sweeper queries each. Only ever grow it (a smaller value would strand entries in the dropped shards).
OPEN_INDEX_SHARDS = 4
ACTIVITY_BUCKET_SECONDS = 300
# ``close_seq`` of a contact the sweeper marked closed whose PATCH is not confirmed yet (it stays in the index so
# the next sweep re-sends the idempotent PATCH), and of one it closed. Never a Kinesis sequence number, so the
# planner never takes a record for the closing one.
SWEEP_PENDING = "sweeper:pending"
# Marker items of parked records share the table (their keys can never be a Connect ContactId, a UUID).
PARKED_PREFIX = "parked#"
# One item per shard: how far the bridge has read it (the sweeper's clock for idleness, bridge.sweeper).
POSITION_PREFIX = "stream#"
SWEPT = "sweeper:closed"
UNAVAILABLE_CODES = frozenset(
    {
        "ProvisionedThroughputExceededException",
        "ThrottlingException",
        "RequestLimitExceeded",
        "InternalServerError",
        "ServiceUnavailable",
        "TransactionConflictException",
    }
)
CONFIGURATION_CODES = frozenset({"ResourceNotFoundException", "AccessDeniedException", "UnrecognizedClientException"})


def translate(exc: Exception, table: str, operation: str) -> Exception:
    """The one place DynamoDB's driver errors become bridge errors."""
    from botocore.exceptions import BotoCoreError, ClientError

    if isinstance(exc, ClientError):
        code = exc.response.get("Error", {}).get("Code", "")
        if code == "ConditionalCheckFailedException":
            return ContactConflictError(f"{operation}: the contact changed concurrently")
        if code in UNAVAILABLE_CODES:
            return ContactStoreUnavailableError(f"{operation}: DynamoDB {code}")
        if code in CONFIGURATION_CODES:
            return ConfigurationError(f"CONTACT_TABLE {table!r}: DynamoDB {code} on {operation}")
        return _PermanentStoreError(f"{operation}: DynamoDB {code}")
    if isinstance(exc, BotoCoreError):
        return ContactStoreUnavailableError(f"{operation}: {type(exc).__name__}")
    return exc


class _PermanentStoreError(ContactStoreError, PermanentError):
    """A request DynamoDB will keep rejecting (ValidationException, item too large)."""


def open_shard(contact_id: str) -> str:
    """The contact's partition of the open index: stable per contact (a digest, not Python's salted hash)."""
    return str(segment_digest(contact_id) % OPEN_INDEX_SHARDS)


def in_open_index(state: ContactState) -> bool:
    return (
        state.status not in (ContactStatus.CLOSED, ContactStatus.IGNORED)
        or state.close_sequence_number == SWEEP_PENDING
        or state.close_pending
    )


def to_item(state: ContactState) -> dict[str, Any]:
    item: dict[str, Any] = {
        "contact_id": {"S": state.contact_id},
        "status": {"S": state.status.value},
        "version": {"N": str(state.version)},
        "sent": {"B": state.sent.pack()},
        "sent_count": {"N": str(len(state.sent))},
        "pending": {"L": [{"M": {"id": {"S": p.segment_id}, "seq": {"S": p.sequence_number}}} for p in state.pending]},
        "max_offset": {"N": str(state.max_offset_millis)},
        "created_at": {"N": str(state.created_at)},
        "updated_at": {"N": str(state.updated_at)},
        "expires_at": {"N": str(state.expires_at)},
        "last_arrival": {"N": str(state.last_arrival)},
    }
    for name, count in (("offset_shift", state.offset_shift_ms), ("anchor_ms", state.anchor_ms)):
        if count:
            item[name] = {"N": str(count)}
    if state.leg_number != 1:
        item["leg_number"] = {"N": str(state.leg_number)}
    for name, value in (
        ("instance_id", state.instance_id),
        ("interaction_id", state.interaction_id),
        ("conversation_id", state.conversation_id),
        ("close_seq", state.close_sequence_number),
        ("shard_id", state.shard_id),
        ("root_contact_id", state.root_contact_id),
    ):
        if value:
            item[name] = {"S": value}
    for name, flag in (
        ("create_not_applied", state.create_not_applied),
        ("orphan_check", state.orphan_check),
        ("close_pending", state.close_pending),
        ("leg_ended", state.leg_ended),
    ):
        if flag:
            item[name] = {"BOOL": True}
    if in_open_index(state):
        # Part of the same PutItem: a closed contact's item simply lacks them and leaves the sparse index.
        item["open_shard"] = {"S": open_shard(state.contact_id)}
        item["active_bucket"] = {"N": str(state.updated_at // ACTIVITY_BUCKET_SECONDS)}
    return item


def from_item(item: dict[str, Any]) -> ContactState:
    def text(name: str) -> str | None:
        value = item.get(name)
        return value["S"] if value else None

    def number(name: str) -> int:
        value = item.get(name)
        return int(value["N"]) if value else 0

    sent_blob = item.get("sent", {}).get("B", b"")
    return ContactState(
        contact_id=item["contact_id"]["S"],
        status=ContactStatus(item["status"]["S"]),
        version=number("version"),
        instance_id=text("instance_id") or "",
        interaction_id=text("interaction_id"),
        conversation_id=text("conversation_id"),
        sent=SentSet.unpack(bytes(sent_blob)),
        pending=tuple(
            PendingEntry(entry["M"]["id"]["S"], entry["M"]["seq"]["S"])
            for entry in item.get("pending", {}).get("L", [])
        ),
        close_sequence_number=text("close_seq"),
        max_offset_millis=number("max_offset"),
        created_at=number("created_at"),
        updated_at=number("updated_at"),
        expires_at=number("expires_at"),
        create_not_applied=bool(item.get("create_not_applied", {}).get("BOOL", False)),
        orphan_check=bool(item.get("orphan_check", {}).get("BOOL", False)),
        close_pending=bool(item.get("close_pending", {}).get("BOOL", False)),
        leg_ended=bool(item.get("leg_ended", {}).get("BOOL", False)),
        last_arrival=number("last_arrival"),
        shard_id=text("shard_id") or "",
        root_contact_id=text("root_contact_id") or "",
        offset_shift_ms=number("offset_shift"),
        leg_number=number("leg_number") or 1,
        anchor_ms=number("anchor_ms"),
    )


class DynamoContactStore:
    """Implements ``ContactStorePort``."""

    def __init__(
        self,
        client: Any,
        table: str,
        ttl_days: int = 7,
        sleep: Callable[[float], None] = time.sleep,
        max_unprocessed_rounds: int = 5,
    ) -> None:
        self.client = client
        self.table = table
        self.ttl_days = ttl_days
        self.sleep = sleep
        self.max_unprocessed_rounds = max_unprocessed_rounds
        self.calls: dict[str, int] = {"BatchGetItem": 0, "PutItem": 0}  # counted for benchmarks and tests

    def load_many(self, contact_ids: Sequence[str]) -> dict[str, ContactState]:
        states: dict[str, ContactState] = {}
        unique = list(dict.fromkeys(contact_ids))
        for start in range(0, len(unique), BATCH_GET_LIMIT):
            keys = [{"contact_id": {"S": cid}} for cid in unique[start : start + BATCH_GET_LIMIT]]
            request: dict[str, Any] = {self.table: {"Keys": keys, "ConsistentRead": True}}
            for round_number in range(self.max_unprocessed_rounds + 1):
                try:
                    self.calls["BatchGetItem"] += 1
                    response = self.client.batch_get_item(RequestItems=request)
                except Exception as exc:  # noqa: BLE001 - translated below
                    raise translate(exc, self.table, "BatchGetItem") from exc
                for item in response.get("Responses", {}).get(self.table, []):
                    state = from_item(item)
                    states[state.contact_id] = state
                request = response.get("UnprocessedKeys") or {}
                if not request:
                    break
                if round_number < self.max_unprocessed_rounds:  # no wait before giving up
                    self.sleep(min(1.0, 0.05 * 2**round_number))
            else:
                raise ContactStoreUnavailableError("BatchGetItem: keys still unprocessed after retries (throttled)")
        return states

    def claim(self, contact_id: str, instance_id: str, now: int) -> ContactState:
        state = ContactState(
            contact_id=contact_id,
            status=ContactStatus.CLAIMED,
            version=1,
            instance_id=instance_id,
            created_at=now,
            updated_at=now,
            expires_at=now + self.ttl_days * 86400,
        )
        self._put(state, "attribute_not_exists(contact_id)", {}, "claim")
        return state

    def save(self, state: ContactState, expected_version: int) -> ContactState:
        saved = state.evolve(version=expected_version + 1)
        self._put(saved, "#version = :expected", {":expected": {"N": str(expected_version)}}, "save")
        return saved

    def parked_before(self, keys: Sequence[str]) -> set[str]:
        """Which of these parked-record keys were parked by an earlier delivery (``parked#<key>`` marker items)."""
        found: set[str] = set()
        unique = list(dict.fromkeys(keys))
        for start in range(0, len(unique), BATCH_GET_LIMIT):
            request: dict[str, Any] = {
                self.table: {
                    "Keys": [
                        {"contact_id": {"S": PARKED_PREFIX + key}} for key in unique[start : start + BATCH_GET_LIMIT]
                    ],
                    "ProjectionExpression": "contact_id",
                }
            }
            for _round in range(self.max_unprocessed_rounds + 1):
                try:
                    self.calls["BatchGetItem"] += 1
                    response = self.client.batch_get_item(RequestItems=request)
                except Exception as exc:  # noqa: BLE001 - translated below
                    raise translate(exc, self.table, "BatchGetItem (parked markers)") from exc
                for item in response.get("Responses", {}).get(self.table, []):
                    found.add(item["contact_id"]["S"].removeprefix(PARKED_PREFIX))
                request = response.get("UnprocessedKeys") or {}
                if not request:
                    break
        return found

    def remember_parked(self, keys: Sequence[str], expires_at: int) -> None:
        """Marker items for parked records (no condition: writing one twice is harmless). They carry no
        ``open_shard``, so the sweeper's sparse index never sees them; TTL removes them with the parking retention."""
        for key in dict.fromkeys(keys):
            item = {"contact_id": {"S": PARKED_PREFIX + key}, "expires_at": {"N": str(expires_at)}}
            try:
                self.calls["PutItem"] += 1
                self.client.put_item(TableName=self.table, Item=item)
            except Exception as exc:  # noqa: BLE001 - translated below
                raise translate(exc, self.table, "PutItem (parked marker)") from exc

    def record_position(self, shard_id: str, position: ShardPosition) -> None:
        """How far the bridge has read a shard (no condition: the newest write wins, and positions only grow within
        a shard's single reader; a late write of an older one makes the sweeper more patient, never hasty)."""
        item = {
            "contact_id": {"S": POSITION_PREFIX + shard_id},
            "arrival": {"N": str(position.arrival)},
            "read_at": {"N": str(position.read_at)},
        }
        try:
            # Counted apart from the contacts' writes: at most one per shard per 30 s (processor.POSITION_INTERVAL_S).
            self.calls["PutItem (position)"] = self.calls.get("PutItem (position)", 0) + 1
            self.client.put_item(TableName=self.table, Item=item)
        except Exception as exc:  # noqa: BLE001 - translated below
            raise translate(exc, self.table, "PutItem (stream position)") from exc

    def positions(self, shard_ids: Sequence[str]) -> dict[str, ShardPosition]:
        """The recorded position of each of these shards (absent: never recorded)."""
        wanted = [s for s in dict.fromkeys(shard_ids) if s]
        found: dict[str, ShardPosition] = {}
        for start in range(0, len(wanted), BATCH_GET_LIMIT):
            keys = [{"contact_id": {"S": POSITION_PREFIX + shard}} for shard in wanted[start : start + BATCH_GET_LIMIT]]
            try:
                self.calls["BatchGetItem"] += 1
                response = self.client.batch_get_item(RequestItems={self.table: {"Keys": keys}})
            except Exception as exc:  # noqa: BLE001 - translated below
                raise translate(exc, self.table, "BatchGetItem (stream positions)") from exc
            for item in response.get("Responses", {}).get(self.table, []):
                shard = item["contact_id"]["S"].removeprefix(POSITION_PREFIX)
                found[shard] = ShardPosition(int(item["arrival"]["N"]), int(item["read_at"]["N"]))
        return found

    def idle_contact_ids(self, idle_before: int, limit: int) -> list[str]:
        """Contacts in the open index whose last activity (``updated_at``) is before ``idle_before`` (epoch s).

        Bucketed, so conservative: an entry is returned only when its whole bucket lies before ``idle_before``.
        The index is eventually consistent: callers re-read each item (consistently) before acting on it.
        """
        cutoff_bucket = idle_before // ACTIVITY_BUCKET_SECONDS
        found: list[str] = []
        for shard in range(OPEN_INDEX_SHARDS):
            kwargs: dict[str, Any] = {
                "TableName": self.table,
                "IndexName": OPEN_INDEX,
                "KeyConditionExpression": "open_shard = :shard AND active_bucket < :cutoff",
                "ExpressionAttributeValues": {":shard": {"S": str(shard)}, ":cutoff": {"N": str(cutoff_bucket)}},
            }
            while len(found) < limit:
                kwargs["Limit"] = limit - len(found)
                try:
                    self.calls["Query"] = self.calls.get("Query", 0) + 1
                    response = self.client.query(**kwargs)
                except Exception as exc:  # noqa: BLE001 - translated below
                    raise translate(exc, self.table, "Query") from exc
                found.extend(item["contact_id"]["S"] for item in response.get("Items", []))
                if not response.get("LastEvaluatedKey"):
                    break
                kwargs["ExclusiveStartKey"] = response["LastEvaluatedKey"]
        return found[:limit]

    def _put(self, state: ContactState, condition: str, values: dict[str, Any], operation: str) -> None:
        self._put_item(to_item(state), condition, values, operation)

    def _put_item(self, item: dict[str, Any], condition: str, values: dict[str, Any], operation: str) -> None:
        """One conditional PutItem (``#version`` names the optimistic lock when ``values`` use it)."""
        kwargs: dict[str, Any] = {"TableName": self.table, "Item": item, "ConditionExpression": condition}
        if values:
            kwargs["ExpressionAttributeValues"] = values
            kwargs["ExpressionAttributeNames"] = {"#version": "version"}
        try:
            self.calls["PutItem"] += 1
            self.client.put_item(**kwargs)
        except Exception as exc:  # noqa: BLE001 - translated below
            raise translate(exc, self.table, f"PutItem ({operation})") from exc

    # -- historical import (bridge.postcall): its record on the contact item, written only with a condition ----

    def load_import(self, contact_id: str) -> ContactItem | None:
        """The contact's item as the post-call import sees it (``bridge.postcall.record.ContactItem``), or None."""
        from bridge.postcall.record import from_item as import_from_item

        try:
            self.calls["GetItem"] = self.calls.get("GetItem", 0) + 1
            response = self.client.get_item(
                TableName=self.table, Key={"contact_id": {"S": contact_id}}, ConsistentRead=True
            )
        except Exception as exc:  # noqa: BLE001 - translated below
            raise translate(exc, self.table, "GetItem (import)") from exc
        item = response.get("Item")
        return import_from_item(item) if item else None

    def claim_import(self, record: ImportRecord) -> None:
        """Create the contact's item for an import; ContactConflictError when any item (live or import) exists."""
        from bridge.postcall.record import to_item as import_to_item

        self._put_item(import_to_item(record), "attribute_not_exists(contact_id)", {}, "claim import")

    def save_import(self, record: ImportRecord, expected_version: int) -> ImportRecord:
        """Advance an import's record; ContactConflictError when another worker changed it first."""
        from bridge.postcall.record import to_item as import_to_item

        saved = record.evolve(version=expected_version + 1)
        self._put_item(
            import_to_item(saved),
            "#version = :expected AND attribute_exists(postcall_key)",
            {":expected": {"N": str(expected_version)}},
            "save import",
        )
        return saved
