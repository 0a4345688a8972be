"""Parking on SQS: every parked item carries the raw records, the reason class and the error's data, so
``voicebridge redrive`` can re-feed it through the handler after a fix."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Sequence
from typing import Any

from bridge.errors import ConfigurationError, ParkingError
from bridge.ports import ParkedItem

# SQS accepts 256 KiB per message and per batch; stay under with room for the envelope and attributes.
MAX_BODY_BYTES = 200 * 1024
MAX_BATCH_ENTRIES = 10
MAX_BATCH_BYTES = 256 * 1024  # the sum of a batch's bodies and attributes
MAX_ROUNDS = 3
SCHEMA_VERSION = 1


def message_bodies(item: ParkedItem, parked_at: float) -> list[str]:
    """One item as one or more message bodies (records split across parts when they do not fit one message)."""
    envelope: dict[str, Any] = {
        "schema": SCHEMA_VERSION,
        "reason_class": item.reason_class,
        "reason": item.reason[:2000],
        "contact_id": item.contact_id,
        "error": dict(item.error),
        "parked_at": parked_at,
    }
    parts: list[list[dict[str, Any]]] = [[]]
    size = len(json.dumps(envelope))
    for record in item.records:
        record_size = len(json.dumps(record)) + 2
        if parts[-1] and size + record_size > MAX_BODY_BYTES:
            parts.append([])
            size = len(json.dumps(envelope))
        parts[-1].append(record)
        size += record_size
    return [
        json.dumps({**envelope, "part": index + 1, "parts": len(parts), "records": records})
        for index, records in enumerate(parts)
    ]


def _entry_bytes(entry: dict[str, Any]) -> int:
    size = len(entry["MessageBody"].encode("utf-8"))
    for name, attribute in entry["MessageAttributes"].items():
        size += len(name) + len(attribute["DataType"]) + len(attribute["StringValue"].encode("utf-8"))
    return size


def batches(entries: Sequence[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    """SendMessageBatch groups: at most 10 entries and 256 KiB in total (ten ~200 KiB parts never fit one)."""
    groups: list[list[dict[str, Any]]] = []
    size = 0
    for entry in entries:
        entry_size = _entry_bytes(entry)
        if not groups or len(groups[-1]) >= MAX_BATCH_ENTRIES or size + entry_size > MAX_BATCH_BYTES:
            groups.append([])
            size = 0
        groups[-1].append(entry)
        size += entry_size
    return groups


class SqsParking:
    """Implements ``ParkingPort``."""

    def __init__(self, client: Any, queue_url: str) -> None:
        self.client = client
        self.queue_url = queue_url
        self.calls = 0

    def park(self, items: Sequence[ParkedItem]) -> None:
        now = time.time()
        entries: list[dict[str, Any]] = []
        for item in items:
            attributes = {"reason_class": {"DataType": "String", "StringValue": item.reason_class}}
            if item.contact_id:
                attributes["contact_id"] = {"DataType": "String", "StringValue": item.contact_id[:256]}
            entries.extend(
                {"Id": uuid.uuid4().hex, "MessageBody": body, "MessageAttributes": attributes}
                for body in message_bodies(item, now)
            )
        for batch in batches(entries):
            for _ in range(MAX_ROUNDS):
                batch = self._send(batch)
                if not batch:
                    break
            else:
                raise ParkingError(f"SendMessageBatch kept failing for {len(batch)} entries")

    def _send(self, batch: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Send one batch; entries SQS reports as failed by its own fault are returned for one more round."""
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            self.calls += 1
            response = self.client.send_message_batch(QueueUrl=self.queue_url, Entries=batch)
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            if code in {
                "AWS.SimpleQueueService.NonExistentQueue",
                "QueueDoesNotExist",
                "AccessDenied",
                "AccessDeniedException",
            }:
                raise ConfigurationError(f"PARKING_QUEUE_URL: SQS {code}") from exc
            raise ParkingError(f"SendMessageBatch: {code}") from exc
        except BotoCoreError as exc:
            raise ParkingError(f"SendMessageBatch: {type(exc).__name__}") from exc
        failed = response.get("Failed") or []
        if not failed:
            return []
        if any(f.get("SenderFault") for f in failed):
            raise ParkingError(f"SendMessageBatch rejected {len(failed)} entries: {failed[0].get('Code')}")
        retry_ids = {f["Id"] for f in failed}
        return [entry for entry in batch if entry["Id"] in retry_ids]
