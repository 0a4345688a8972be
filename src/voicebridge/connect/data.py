"""What the Amazon Connect stand-in knows: contacts, users, contact attributes, and Contact Lens segments.

The data file (``voicebridge replay --connect CONTACTS.json``, README "The Amazon Connect stand-in")::

    {"instance_id": "...",                      # optional: then requests for another instance are 404
     "contacts": {ContactId: <DescribeContact "Contact" object, timestamps as epoch seconds>},
     "users": {UserId: <DescribeUser "User" object>},
     "attributes": {InitialContactId: {name: value}},
     "segments": {ContactId: [<ListRealtimeContactAnalysisSegments segment>, ...]}}   # optional

Objects are served as given (Connect's own field names), so a file can carry any field botocore models.
Segments come from a pluggable source: the file's, or :class:`DeliveredSegments`, which replay feeds with the
fixture's records as the shard driver hands them to the handler (what Contact Lens holds at that moment).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

# ListRealtimeContactAnalysisSegments' segment kinds (botocore's RealtimeContactAnalysisSegment). The stream's
# Utterance partials are not among them: the API only returns finished segments.
API_SEGMENT_KINDS = ("Transcript", "Categories", "PostContactSummary", "ExtractedInformation")
TOP_LEVEL_KEYS = frozenset({"instance_id", "contacts", "users", "attributes", "segments"})


@dataclass(frozen=True)
class ContactSegments:
    """What Contact Lens holds for a contact: its segments so far, and whether its analysis has ended. While it
    has not, every page carries a NextToken (even the last one: more may come), as the API documents."""

    segments: Sequence[Mapping[str, Any]]
    completed: bool = True


# A contact's segments, or None when Contact Lens never heard of it (then 404).
SegmentSource = Callable[[str], ContactSegments | None]


class ConnectDataError(ValueError):
    """A data file the stand-in cannot serve; the message names the file and the offending entry."""


@dataclass
class ConnectData:
    contacts: dict[str, dict[str, Any]] = field(default_factory=dict)
    users: dict[str, dict[str, Any]] = field(default_factory=dict)
    attributes: dict[str, dict[str, str]] = field(default_factory=dict)
    segments: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    instance_id: str | None = None

    def root_of(self, contact_id: str) -> str:
        """The call's first contact: the leg's InitialContactId, or the leg itself when that is empty."""
        contact = self.contacts.get(contact_id) or {}
        return str(contact.get("InitialContactId") or contact_id)

    def associated(self, contact_id: str) -> list[dict[str, Any]]:
        """ListAssociatedContacts' summaries: every contact of the same call (same root), oldest first."""
        root = self.root_of(contact_id)
        tree = [c for c in self.contacts.values() if self.root_of(str(c["Id"])) == root]
        tree.sort(key=lambda c: (c.get("InitiationTimestamp") or 0, str(c["Id"])))
        return [_summary(contact) for contact in tree]

    def attributes_of(self, contact_id: str) -> dict[str, str] | None:
        """GetContactAttributes: the call's attributes. Connect copies them onto every leg, so a leg's id finds its
        root's; a known contact without any has none; an unknown one is None (404)."""
        if contact_id in self.attributes:
            return self.attributes[contact_id]
        if contact_id in self.contacts:
            return self.attributes.get(self.root_of(contact_id), {})
        return None

    def file_segments(self, contact_id: str) -> ContactSegments | None:
        """The file's segments as a :data:`SegmentSource`, of an analysis that has ended (the file records finished
        calls); a known contact without any has none."""
        if contact_id in self.segments:
            return ContactSegments(tuple(self.segments[contact_id]))
        return ContactSegments(()) if contact_id in self.contacts else None


SUMMARY_FIELDS = (
    "ContactArn",
    "InitiationTimestamp",
    "DisconnectTimestamp",
    "InitialContactId",
    "PreviousContactId",
    "RelatedContactId",
    "InitiationMethod",
    "Channel",
)


def _summary(contact: Mapping[str, Any]) -> dict[str, Any]:
    summary: dict[str, Any] = {"ContactId": contact["Id"]}
    if contact.get("Arn"):
        summary["ContactArn"] = contact["Arn"]
    for name in SUMMARY_FIELDS:
        if name in contact and name != "ContactArn":
            summary[name] = contact[name]
    return summary


def load_connect_data(path: str | Path) -> ConnectData:
    """Read and check a data file; raise :class:`ConnectDataError` with one line naming what is wrong."""
    try:
        document = json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConnectDataError(f"{path}: cannot read it ({exc.strerror or exc})") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConnectDataError(f"{path}: not a JSON document ({exc})") from None
    try:
        return parse_connect_data(document)
    except ConnectDataError as exc:
        raise ConnectDataError(f"{path}: {exc}") from None


def parse_connect_data(document: Any) -> ConnectData:
    if not isinstance(document, dict):
        raise ConnectDataError('expected an object {"contacts": {...}, "users": {...}, "attributes": {...}}')
    unknown = sorted(set(document) - TOP_LEVEL_KEYS)
    if unknown:
        raise ConnectDataError(f"unknown top-level keys {unknown}; allowed: {sorted(TOP_LEVEL_KEYS)}")
    instance_id = document.get("instance_id")
    if instance_id is not None and (not isinstance(instance_id, str) or not instance_id):
        raise ConnectDataError("instance_id must be a non-empty string")
    contacts = {
        key: _epoch_timestamps(_identified(value, key, "contacts"), f"contacts.{key}")
        for key, value in _objects(document, "contacts").items()
    }
    users = {key: _identified(value, key, "users") for key, value in _users(document).items()}
    attributes: dict[str, dict[str, str]] = {}
    for key, values in _objects(document, "attributes").items():
        if not all(isinstance(name, str) and isinstance(value, str) for name, value in values.items()):
            raise ConnectDataError(f"attributes.{key}: every attribute value must be a string")
        attributes[key] = dict(values)
    segments: dict[str, list[dict[str, Any]]] = {}
    listed = document.get("segments")
    if listed is not None and not isinstance(listed, dict):
        raise ConnectDataError("segments must be an object of lists keyed by contact id")
    for key, items in (listed or {}).items():
        if not isinstance(items, list) or not all(_is_segment(item) for item in items):
            raise ConnectDataError(f"segments.{key}: expected a list of segments, each one of {API_SEGMENT_KINDS}")
        segments[key] = items
    return ConnectData(contacts, users, attributes, segments, instance_id)


def _objects(document: Mapping[str, Any], key: str) -> dict[str, dict[str, Any]]:
    value = document.get(key)
    value = {} if value is None else value
    if not isinstance(value, dict) or not all(isinstance(item, dict) for item in value.values()):
        raise ConnectDataError(f"{key} must be an object of objects keyed by id")
    return value


def _users(document: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Users as DescribeUser objects; a bare username string (``voicebridge backfill``'s file) stands for
    ``{"Username": ...}``."""
    value = document.get("users")
    if isinstance(value, dict):
        value = {key: {"Username": item} if isinstance(item, str) else item for key, item in value.items()}
    return _objects({"users": value}, "users")


def _identified(value: dict[str, Any], key: str, section: str) -> dict[str, Any]:
    """The object with its ``Id``: filled in from the key when absent; a different one is a mistake."""
    if value.get("Id", key) != key:
        raise ConnectDataError(f"{section}.{key}: Id {value['Id']!r} differs from its key")
    return {**value, "Id": key}


def _epoch_timestamps(value: Any, where: str) -> Any:
    """The value with every ``...Timestamp`` field as epoch seconds, the form Connect's REST-JSON bodies carry
    (botocore turns them into datetimes). ISO 8601 strings are converted (``voicebridge backfill``'s contacts
    file uses them); anything else is a mistake worth a clear line."""
    if isinstance(value, dict):
        return {
            name: _epoch(item, f"{where}.{name}")
            if name.endswith("Timestamp")
            else _epoch_timestamps(item, f"{where}.{name}")
            for name, item in value.items()
        }
    if isinstance(value, list):
        return [_epoch_timestamps(item, f"{where}[{index}]") for index, item in enumerate(value)]
    return value


def _epoch(value: Any, where: str) -> float | int | None:
    if value is None or (isinstance(value, int | float) and not isinstance(value, bool)):
        return value
    if isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value)
        except ValueError:
            pass
        else:
            return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()
    raise ConnectDataError(f"{where}: a timestamp must be epoch seconds (or ISO 8601), got {value!r}")


def _is_segment(item: Any) -> bool:
    return isinstance(item, dict) and len(item) == 1 and next(iter(item)) in API_SEGMENT_KINDS


def api_segments(event: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The segments of one Contact Lens stream event that ListRealtimeContactAnalysisSegments returns."""
    segments = [
        dict(segment)
        for segment in event.get("Segments") or []
        if isinstance(segment, dict) and len(segment) == 1 and next(iter(segment)) in API_SEGMENT_KINDS
    ]
    summary = event.get("PostContactSummary")  # the data model also allows it beside Segments
    if isinstance(summary, dict) and not any("PostContactSummary" in s for s in segments):
        segments.append({"PostContactSummary": summary})
    return segments


class DeliveredSegments:
    """A :data:`SegmentSource` fed as records reach the stream: each record counts once (a redelivered batch adds
    nothing), a contact is known from its first record on, and its analysis has ended once its COMPLETED or
    FAILED arrived. Thread-safe: the stand-in answers from its own threads while replay feeds it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._seen: set[str] = set()
        self._by_contact: dict[str, list[dict[str, Any]]] = {}
        self._ended: set[str] = set()

    def deliver(self, record_key: str, event: Any) -> None:
        """Add one decoded stream event (``record_key``: its sequence number); anything not an object is ignored
        (the bridge parks it; Contact Lens never held it)."""
        if not isinstance(event, dict) or not event.get("ContactId"):
            return
        with self._lock:
            if record_key in self._seen:
                return
            self._seen.add(record_key)
            contact_id = str(event["ContactId"])
            self._by_contact.setdefault(contact_id, []).extend(api_segments(event))
            if event.get("EventType") in ("COMPLETED", "FAILED"):
                self._ended.add(contact_id)

    def deliver_kinesis(self, records: Iterable[Mapping[str, Any]]) -> None:
        """Add the records of a Lambda Kinesis event (``event["Records"]``)."""
        import base64

        for record in records:
            kinesis = record.get("kinesis") or {}
            try:
                event = json.loads(base64.b64decode(kinesis.get("data", ""), validate=True).decode("utf-8"))
            except (ValueError, UnicodeDecodeError):
                continue  # poison: Contact Lens never produced it
            self.deliver(str(kinesis.get("sequenceNumber", "")), event)

    def __call__(self, contact_id: str) -> ContactSegments | None:
        with self._lock:
            segments = self._by_contact.get(contact_id)
            if segments is None:
                return None
            return ContactSegments(tuple(segments), completed=contact_id in self._ended)


def combined(*sources: SegmentSource) -> SegmentSource:
    """The first source that knows the contact answers (e.g. replay's delivered segments, then the file's)."""

    def source(contact_id: str) -> ContactSegments | None:
        for candidate in sources:
            found = candidate(contact_id)
            if found is not None:
                return found
        return None

    return source
