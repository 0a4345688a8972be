"""The import's trace on the contact item (DynamoDB): which file, which ETag, how far it got.

The item keeps the live path's shape (``status`` closed, ``version``, ``interaction_id``, timestamps), so the live
path reads it as a closed contact, plus ``postcall_*`` attributes. An item without them was written by the live
path: that contact's interaction gets its transcript from ``/messages``, never from a file.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Any


class ImportStage(StrEnum):
    CLAIMED = "claimed"  # the import owns the contact; the interaction may or may not exist yet
    OPENED = "opened"  # the interaction exists (interaction_id set)
    TRANSCRIBED = "transcribed"  # /transcript stored (or ServiceNow answered "already been processed")
    DONE = "done"  # closed with the recording URL


@dataclass(frozen=True)
class ImportRecord:
    contact_id: str
    key: str
    etag: str
    variant: str
    stage: ImportStage
    version: int
    instance_id: str = ""
    interaction_id: str | None = None
    lease_until: int = 0  # epoch s: another worker may resume a stalled import after this
    created_at: int = 0
    updated_at: int = 0
    expires_at: int = 0

    def evolve(self, **changes: Any) -> ImportRecord:
        return replace(self, **changes)


@dataclass(frozen=True)
class ContactItem:
    """What the import finds on the contact table: a live path item (``record`` None) or an import's record."""

    record: ImportRecord | None

    @property
    def live(self) -> bool:
        return self.record is None


def to_item(record: ImportRecord) -> dict[str, Any]:
    item: dict[str, Any] = {
        "contact_id": {"S": record.contact_id},
        "status": {"S": "closed"},
        "version": {"N": str(record.version)},
        "created_at": {"N": str(record.created_at)},
        "updated_at": {"N": str(record.updated_at)},
        "expires_at": {"N": str(record.expires_at)},
        "postcall_key": {"S": record.key},
        "postcall_etag": {"S": record.etag},
        "postcall_variant": {"S": record.variant},
        "postcall_stage": {"S": record.stage.value},
        "postcall_lease_until": {"N": str(record.lease_until)},
    }
    if record.instance_id:
        item["instance_id"] = {"S": record.instance_id}
    if record.interaction_id:
        item["interaction_id"] = {"S": record.interaction_id}
    return item


def from_item(item: dict[str, Any]) -> ContactItem:
    if "postcall_key" not in item:
        return ContactItem(None)

    def text(name: str) -> str:
        value = item.get(name)
        return str(value["S"]) if value else ""

    def number(name: str) -> int:
        value = item.get(name)
        return int(value["N"]) if value else 0

    return ContactItem(
        ImportRecord(
            contact_id=text("contact_id"),
            key=text("postcall_key"),
            etag=text("postcall_etag"),
            variant=text("postcall_variant"),
            stage=ImportStage(text("postcall_stage")),
            version=number("version"),
            instance_id=text("instance_id"),
            interaction_id=text("interaction_id") or None,
            lease_until=number("postcall_lease_until"),
            created_at=number("created_at"),
            updated_at=number("updated_at"),
            expires_at=number("expires_at"),
        )
    )
