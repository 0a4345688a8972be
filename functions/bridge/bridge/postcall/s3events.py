"""S3 "Object Created" deliveries in both shapes (pure): EventBridge ``Object Created`` events and classic S3 event
notifications (``Records[].s3``). Classic notifications URL-encode keys (the timestamp's colons arrive as ``%3A``,
spaces as ``+``): decoded with ``unquote_plus``. EventBridge keys are decoded only when they contain ``%``."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, unquote_plus


@dataclass(frozen=True)
class ObjectRef:
    bucket: str
    key: str
    etag: str = ""


class UnrecognisedEventError(ValueError):
    """Neither an EventBridge S3 event nor an S3 notification."""


def object_refs(event: Mapping[str, Any]) -> list[ObjectRef]:
    """The created objects an invocation names (an S3 test event names none)."""
    if not isinstance(event, Mapping):
        raise UnrecognisedEventError("the event is not a JSON object")
    if event.get("source") == "aws.s3" or "detail-type" in event:
        if event.get("detail-type") != "Object Created":
            return []
        detail = event.get("detail") or {}
        bucket = (detail.get("bucket") or {}).get("name")
        obj = detail.get("object") or {}
        key = obj.get("key")
        if not isinstance(bucket, str) or not isinstance(key, str) or not key:
            raise UnrecognisedEventError("EventBridge Object Created event without detail.bucket.name/object.key")
        return [ObjectRef(bucket, unquote(key) if "%" in key else key, str(obj.get("etag") or ""))]
    if event.get("Event") == "s3:TestEvent":
        return []
    records = event.get("Records")
    if isinstance(records, list):
        refs = []
        for record in records:
            s3 = record.get("s3") if isinstance(record, dict) else None
            if not isinstance(s3, dict):
                raise UnrecognisedEventError("a record without s3 (not an S3 event notification)")
            if not str(record.get("eventName", "ObjectCreated")).startswith("ObjectCreated"):
                continue
            bucket = (s3.get("bucket") or {}).get("name")
            obj = s3.get("object") or {}
            key = obj.get("key")
            if not isinstance(bucket, str) or not isinstance(key, str) or not key:
                raise UnrecognisedEventError("an S3 notification record without bucket.name/object.key")
            refs.append(ObjectRef(bucket, unquote_plus(key), str(obj.get("eTag") or "")))
        return refs
    raise UnrecognisedEventError("neither an EventBridge S3 event nor an S3 event notification")
